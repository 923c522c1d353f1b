//! A `magnetar standalone` process on ephemeral ports, and the official Python client
//! (from the `.venv` that `scripts/setup.sh` creates) to drive it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::{ServerProcess, ready_field};

/// A standalone process (broker + bookie + embedded metadata) over one data directory.
#[derive(Debug)]
pub struct StandaloneProcess {
    data_dir: PathBuf,
    log: PathBuf,
    proc: Option<ServerProcess>,
    /// `pulsar://host:port` of the running process.
    pub service_url: String,
    /// `http://host:port` of the running process.
    pub http_url: String,
    /// `pulsar+ssl://host:port`, when it has a TLS listener (else empty).
    pub tls_url: String,
    /// `https://host:port`, when it has one (else empty).
    pub https_url: String,
    env: Vec<(String, String)>,
}

impl StandaloneProcess {
    /// Starts a standalone storing under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, &[])
    }

    /// Like [`StandaloneProcess::start`], with extra `MAGNETAR_*` settings.
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut s = StandaloneProcess {
            data_dir: dir.join("data"),
            log: dir.join("standalone.log"),
            proc: None,
            service_url: String::new(),
            http_url: String::new(),
            tls_url: String::new(),
            https_url: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.restart()?;
        Ok(s)
    }

    /// Starts it again on the same data (after a kill).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(crate::bin::magnetar());
        cmd.arg("standalone")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
            .env("MAGNETAR_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let p = ServerProcess::spawn(cmd, &self.log, Duration::from_secs(60))?;
        self.service_url = ready_field(&p.ready_line, "service").unwrap_or_default();
        self.http_url = ready_field(&p.ready_line, "http").unwrap_or_default();
        self.tls_url = ready_field(&p.ready_line, "tls").unwrap_or_default();
        self.https_url = ready_field(&p.ready_line, "https").unwrap_or_default();
        self.proc = Some(p);
        Ok(())
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill9();
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(ServerProcess::pid)
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// The Python interpreter of the project's virtualenv.
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let py = root.join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh (it installs the pinned pulsar-client)",
        py.display()
    );
    py
}

/// Path of a compatibility script.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// The stdout of a finished scenario; panics with its output (INFO lines left out) when it
/// failed.
pub fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains(" INFO "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    stdout
}

/// What a `consume_fixed` scenario received: the JSON list on its last line.
pub fn consumed(out: &str) -> Vec<i64> {
    serde_json::from_str(out.trim().lines().last().unwrap_or("[]")).expect("a JSON list")
}

/// Runs a scenario of `python/compat.py` against `url` and returns its output.
pub fn run_scenario(url: &str, scenario: &str, args: &[&str]) -> Output {
    Command::new(python())
        .arg(script("compat.py"))
        .arg(url)
        .arg(scenario)
        .args(args)
        .output()
        .expect("run python")
}

/// A `magnetar broker` process against a cluster's etcd.
#[derive(Debug)]
pub struct BrokerProcess {
    proc: Option<ServerProcess>,
    /// `pulsar://host:port` of the running process.
    pub service_url: String,
    /// `http://host:port` of the running process.
    pub http_url: String,
}

impl BrokerProcess {
    /// Starts a broker with ledgers of quorums (E, Qw, Qa), logging to `log`.
    pub fn start(
        meta_url: &str,
        quorums: (usize, usize, usize),
        log: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with(meta_url, quorums, log, &[])
    }

    /// Like [`BrokerProcess::start`], with extra `MAGNETAR_*` settings.
    pub fn start_with(
        meta_url: &str,
        quorums: (usize, usize, usize),
        log: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(crate::bin::magnetar());
        cmd.envs(env.iter().copied());
        cmd.arg("broker")
            .args(["--meta-url", meta_url])
            .args(["--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
            .args(["--ensemble", &quorums.0.to_string()])
            .args(["--write-quorum", &quorums.1.to_string()])
            .args(["--ack-quorum", &quorums.2.to_string()])
            .env("MAGNETAR_LOG", "info");
        let p = ServerProcess::spawn(cmd, log, Duration::from_secs(60))?;
        let service_url = ready_field(&p.ready_line, "service").unwrap_or_default();
        let http_url = ready_field(&p.ready_line, "http").unwrap_or_default();
        Ok(BrokerProcess {
            proc: Some(p),
            service_url,
            http_url,
        })
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        if let Some(p) = &self.proc {
            p.signal(name);
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(ServerProcess::pid)
    }
}
