//! Power loss, simulated, for the embedded store (issue 9): writers put and delete keys while
//! the log is appended and rewritten as snapshots (a tiny compaction threshold), the power goes
//! out at a random point (unsynced writes and directory changes kept, dropped or torn at
//! random), and the store reopens on what survived. Every acknowledged write must be there —
//! each key holds its last acknowledged value, or the value of a write that was in flight at
//! the cut — and the store must open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::fs::sim::SimFs;
use meta::{EmbeddedOptions, EmbeddedStore, MetadataStore, PutCondition};

/// Per key: the last acknowledged value (`None`: deleted or never written) and the value of a
/// write in flight when the power went out.
#[derive(Debug, Default, Clone)]
struct KeyState {
    acked: Option<Bytes>,
    in_flight: Option<Option<Bytes>>,
}

fn options(fs: &SimFs) -> EmbeddedOptions {
    EmbeddedOptions {
        compact_threshold_bytes: 4 << 10,
        fs: Arc::new(fs.clone()),
        ..Default::default()
    }
}

fn value(writer: usize, n: usize) -> Bytes {
    Bytes::from(format!("w{writer}-n{n}-{}", "v".repeat(n % 300)))
}

async fn run_seed(seed: u64, cuts: usize) {
    let mut fs = SimFs::new();
    let mut keys: BTreeMap<String, KeyState> = BTreeMap::new();
    let mut rng = seed;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    for cut in 0..cuts {
        let ctx = format!("seed {seed}, after {cut} power cuts");
        let store = EmbeddedStore::open("/meta", options(&fs))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: refused to open: {e}"));
        for (k, st) in &mut keys {
            let got = store.get(k).await.unwrap().map(|kv| kv.value);
            let ok = got == st.acked || st.in_flight.as_ref().is_some_and(|v| *v == got);
            assert!(ok, "{ctx}: {k} is {got:?}, acknowledged {:?}", st.acked);
            // Whatever survived is what the key holds from now on.
            st.acked = got;
            st.in_flight = None;
        }
        // Three writers, each on its own keys; the cut comes after `target` acknowledgements.
        let target = (next() % 60 + 1) as usize;
        let done = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for w in 0..3usize {
            let (store, done, reached) = (store.clone(), done.clone(), reached.clone());
            let start = (next() % 1000) as usize;
            tasks.push(tokio::spawn(async move {
                let mut log: Vec<(String, Option<Bytes>, bool)> = Vec::new();
                for n in start..start + 200 {
                    let key = format!("/k/{w}/{}", n % 7);
                    let (val, res) = if n % 5 == 4 {
                        (None, store.delete(&key, None).await.map(|_| ()))
                    } else {
                        let v = value(w, n);
                        let r = store
                            .put(&key, v.clone(), PutCondition::Always, None)
                            .await
                            .map(|_| ());
                        (Some(v), r)
                    };
                    let acked = match res {
                        Ok(()) => true,
                        // Deleting an absent key: nothing changed, nothing to remember.
                        Err(meta::MetaError::NotFound { .. }) => continue,
                        Err(_) => false,
                    };
                    log.push((key, val, acked));
                    if !acked {
                        break; // the power is out
                    }
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == target {
                        reached.notify_one();
                    }
                }
                reached.notify_one();
                log
            }));
        }
        tokio::time::timeout(Duration::from_secs(30), reached.notified())
            .await
            .unwrap_or_else(|_| panic!("{ctx}: no progress"));
        let (survivor, _) = fs.power_loss(next());
        fs = survivor;
        for t in tasks {
            for (key, val, acked) in t.await.unwrap() {
                let st = keys.entry(key).or_default();
                if acked {
                    st.acked = val;
                } else {
                    st.in_flight = Some(val);
                }
            }
        }
        drop(store);
    }
}

/// Seeds that once failed, run every time: 2247 found the test's own model forgetting a
/// write that was in flight at one cut and survived it.
const KEPT_SEEDS: [u64; 1] = [2247];

/// A few hundred cuts in bounded time; more from `scripts/power-loss.sh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_power_loss() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds = env("MAGNETAR_POWER_LOSS_SEEDS").unwrap_or(20);
    let first = env("MAGNETAR_POWER_LOSS_FIRST_SEED").unwrap_or(1);
    let cuts = env("MAGNETAR_POWER_LOSS_CUTS").unwrap_or(15) as usize;
    for seed in KEPT_SEEDS.into_iter().chain(first..first + seeds) {
        run_seed(seed, cuts).await;
    }
}
