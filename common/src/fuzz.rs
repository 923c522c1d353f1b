//! A small mutation fuzzer for the decoders that read bytes from outside (the network, the
//! disk), runnable on the stable toolchain with no external tool.
//!
//! Each target is a test named `fuzz_*` that calls [`run`] with its name, a few seed inputs
//! and the function under test. Inputs are the seeds, the committed corpus
//! (`fuzz/corpus/<target>/`) and mutations of both: bit flips, interesting bytes and lengths,
//! inserted and removed runs, truncation and splices. Every input runs under
//! `catch_unwind`; a panic writes the input to `fuzz/crashes/<target>-<hash>` (to commit under
//! the corpus with its fix, so it is replayed by every later run) and fails the test, naming
//! the file and the seed that reproduces the run.
//!
//! A run is bounded: `MAGNETAR_FUZZ_SECONDS` (what `scripts/fuzz.sh` sets) or, by default,
//! [`DEFAULT_ITERATIONS`] inputs, so the ordinary test suite runs every target briefly.
//! `MAGNETAR_FUZZ_SEED` repeats a run exactly.
//!
//! Not coverage-guided: it finds what random and structure-preserving mutations reach (the
//! seeds are valid inputs, so most mutants get past the first checks).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Inputs a target runs when no time budget is set.
pub const DEFAULT_ITERATIONS: u64 = 3_000;

/// Largest input a mutation grows to.
const MAX_INPUT: usize = 64 << 10;

/// xorshift64*: no dependency, and a run is repeatable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The workspace's `fuzz/` folder (tests run with the crate's folder as working directory).
fn fuzz_dir() -> PathBuf {
    let mut dir = std::env::current_dir().unwrap_or_default();
    for _ in 0..4 {
        if dir.join("fuzz").join("corpus").is_dir() {
            return dir.join("fuzz");
        }
        if !dir.pop() {
            break;
        }
    }
    PathBuf::from("fuzz")
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 0x0e, 0x01, 0x20];

fn mutate(rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = pool[rng.below(pool.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(8) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if data.len() >= 4 => {
                // A length-like field: four bytes set to a big, small or boundary value.
                let i = rng.below(data.len() - 3);
                let v: u32 = [
                    0,
                    1,
                    0x7fff_ffff,
                    0xffff_ffff,
                    0x0100_0000,
                    rng.next() as u32,
                ][rng.below(6)];
                let bytes = if rng.below(2) == 0 {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                data[i..i + 4].copy_from_slice(&bytes);
            }
            3 if data.len() < MAX_INPUT => {
                let i = rng.below(data.len() + 1);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(i..i, fill);
            }
            4 if !data.is_empty() => {
                let i = rng.below(data.len());
                let n = 1 + rng.below((data.len() - i).min(32));
                data.drain(i..i + n);
            }
            5 => data.truncate(rng.below(data.len() + 1)),
            6 => {
                let other = &pool[rng.below(pool.len())];
                let i = rng.below(data.len() + 1);
                let j = rng.below(other.len() + 1);
                data.truncate(i);
                data.extend_from_slice(&other[j..]);
                data.truncate(MAX_INPUT);
            }
            _ if !data.is_empty() => {
                // Duplicate a run (repeated records, nested structures).
                let i = rng.below(data.len());
                let n = 1 + rng.below((data.len() - i).min(64));
                let run = data[i..i + n].to_vec();
                if data.len() + n <= MAX_INPUT {
                    data.splice(i..i, run);
                }
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let dir = fuzz_dir().join("crashes");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{target}-{:08x}", crate::checksum::crc32c(input)));
    let _ = std::fs::write(&path, input);
    path
}

/// Runs target `target` over its seeds, its corpus and their mutations; panics (failing the
/// test) at the first input that makes `f` panic, after saving that input.
pub fn run(target: &str, seeds: &[Vec<u8>], f: impl Fn(&[u8])) {
    run_with(target, seeds, DEFAULT_ITERATIONS, f)
}

/// [`run`], with `iterations` inputs when no time budget is set (a slow target: one that
/// waits for fsync).
pub fn run_with(target: &str, seeds: &[Vec<u8>], iterations: u64, f: impl Fn(&[u8])) {
    let mut pool: Vec<Vec<u8>> = seeds.to_vec();
    pool.extend(corpus(target));
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let seed = std::env::var("MAGNETAR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let budget = std::env::var("MAGNETAR_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let check = |input: &[u8], what: &str| {
        if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
            let path = save_crash(target, input);
            panic!(
                "fuzz target {target}: {what} panicked; input saved in {} (MAGNETAR_FUZZ_SEED={seed})",
                path.display()
            );
        }
    };
    for input in &pool {
        check(input, "a corpus input");
    }
    let mut runs = 0u64;
    loop {
        let done = match budget {
            Some(b) => started.elapsed() >= b,
            None => runs >= iterations,
        };
        if done {
            break;
        }
        let input = mutate(&mut rng, &pool);
        check(&input, "a mutated input");
        runs += 1;
    }
    eprintln!(
        "fuzz target {target}: {runs} inputs in {:.1} s (MAGNETAR_FUZZ_SEED={seed})",
        started.elapsed().as_secs_f64()
    );
}

/// Whether `path` holds a saved crash of `target` (for tests of this module).
pub fn is_crash_file(target: &str, path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(&format!("{target}-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_bounded_and_a_run_is_repeatable() {
        let pool = vec![b"hello world".to_vec(), vec![0u8; 100]];
        let (mut a, mut b) = (Rng(42), Rng(42));
        for _ in 0..1000 {
            let x = mutate(&mut a, &pool);
            assert!(x.len() <= MAX_INPUT);
            assert_eq!(x, mutate(&mut b, &pool));
        }
    }

    #[test]
    fn a_panicking_target_fails_with_its_input_saved() {
        let r = std::panic::catch_unwind(|| {
            run("selftest", &[b"abc".to_vec()], |input| {
                assert!(!input.starts_with(b"abc"), "found it");
            })
        });
        assert!(r.is_err());
        let saved = fuzz_dir().join("crashes");
        let found = std::fs::read_dir(&saved)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| is_crash_file("selftest", &e.path()))
            .expect("the crashing input is saved");
        assert_eq!(std::fs::read(found.path()).unwrap(), b"abc");
        let _ = std::fs::remove_file(found.path());
    }
}
