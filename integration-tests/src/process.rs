//! A server child process: started with its stdout read until the one `ready:` line, stderr
//! appended to a log file, and signal helpers for fault tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running server process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// The `ready:` line it printed.
    pub ready_line: String,
}

impl ServerProcess {
    /// Spawns `cmd`, logging stderr to `log`, and waits up to `deadline` for a stdout line
    /// containing ` ready: `. Fails with the log's tail if the process exits first.
    pub fn spawn(mut cmd: Command, log: &Path, deadline: Duration) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(" ready: ") {
                    let _ = tx.send(line);
                }
            }
        });
        let started = std::time::Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    return Ok(ServerProcess {
                        child,
                        ready_line: line,
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "process exited with {status} before it was ready; log:\n{}",
                    tail(log)
                );
            }
            if started.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("process not ready within {deadline:?}; log:\n{}", tail(log));
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`).
    ///
    /// `STOP` returns only once every thread of the process is stopped: `kill` returns when
    /// the signal is queued, and a thread busy on the other core (or inside a system call)
    /// can still answer a request that arrives in between — a test that pauses a bookie and
    /// then writes must not see that write acknowledged.
    pub fn signal(&self, name: &str) {
        let pid = self.pid();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        if !status.success() {
            // The process may have exited already: only a live one must take the signal.
            if self.alive() {
                panic!("kill -{name} {pid} failed: {status}");
            }
            return;
        }
        if name == "STOP" {
            let started = std::time::Instant::now();
            while !all_threads_stopped(pid) {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "process {pid} did not stop within 10 s of SIGSTOP"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid())).exists()
    }

    /// SIGTERM and wait for exit (up to `deadline`, then SIGKILL).
    pub fn terminate(mut self, deadline: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let started = std::time::Instant::now();
        while started.elapsed() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 4 KiB of a log file.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_owned()
}

/// Parses `key=value` out of a ready line.
pub fn ready_field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

/// A directory kept (and its path printed) if the test panics.
#[derive(Debug)]
pub struct KeptDir(Option<tempfile::TempDir>);

impl KeptDir {
    /// A fresh temporary directory.
    pub fn new(prefix: &str) -> Self {
        KeptDir(Some(
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("temp dir"),
        ))
    }

    /// Its path.
    pub fn path(&self) -> PathBuf {
        self.0
            .as_ref()
            .map(|d| d.path().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for KeptDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.0.take()
        {
            eprintln!("test files and logs kept in {}", d.keep().display());
        }
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` in `/proc/PID/task/TID/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true; // gone: nothing left to run
    };
    tasks.flatten().all(|t| {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            return true; // the thread exited
        };
        // `pid (comm) S ...`: the state follows the last `)`, as comm may hold spaces.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c == 'T' || c == 't')
    })
}
