//! A real etcd process for tests: ephemeral loopback ports, a temporary data directory, logs
//! kept (and their path printed) when the test fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::etcd::{EtcdOptions, EtcdStore};

/// A running (or killed) etcd member owned by a test. Killed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdServer {
    /// Starts etcd and waits until it answers. Retries with new ports if one was taken
    /// between choosing it and etcd binding it.
    pub async fn start() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("magnetar-etcd-")
            .tempdir()?;
        let mut last_err = None;
        for _ in 0..5 {
            let mut server = EtcdServer {
                child: None,
                dir: None,
                client_port: free_port()?,
                peer_port: free_port()?,
            };
            server.spawn(dir.path())?;
            match server.wait_ready(Duration::from_secs(30)).await {
                Ok(()) => {
                    server.dir = Some(dir);
                    return Ok(server);
                }
                Err(e) => {
                    server.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("etcd did not start")))
    }

    fn data_dir(base: &Path) -> PathBuf {
        base.join("data")
    }

    fn spawn(&mut self, base: &Path) -> std::io::Result<()> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(base.join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--name=magnetar-test")
            .arg(format!("--data-dir={}", Self::data_dir(base).display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=magnetar-test={peer}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot run `etcd` ({e}); install etcd-server or run scripts/setup.sh"),
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, deadline: Duration) -> std::io::Result<()> {
        let mut opts = EtcdOptions::new([self.endpoint()]);
        opts.connect_timeout = deadline;
        opts.request_timeout = Duration::from_secs(2);
        let connect = EtcdStore::connect(opts);
        tokio::pin!(connect);
        loop {
            tokio::select! {
                res = &mut connect => {
                    return res.map(drop).map_err(|e| std::io::Error::other(e.to_string()));
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                        return Err(std::io::Error::other(format!("etcd exited early: {status}")));
                    }
                }
            }
        }
    }

    /// `127.0.0.1:PORT` of the client listener.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `etcd://127.0.0.1:PORT`, as `--meta-url` takes it.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoint())
    }

    /// Options for a client of this server with short timeouts suited to tests.
    pub fn options(&self) -> EtcdOptions {
        let mut opts = EtcdOptions::new([self.endpoint()]);
        opts.connect_timeout = Duration::from_secs(10);
        opts.request_timeout = Duration::from_secs(2);
        opts
    }

    /// A connected client.
    pub async fn store(&self) -> crate::Result<EtcdStore> {
        EtcdStore::connect(self.options()).await
    }

    /// SIGKILLs etcd (no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data, after [`EtcdServer::kill`].
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let base = self
            .dir
            .as_ref()
            .map(|d| d.path().to_owned())
            .ok_or_else(|| std::io::Error::other("no data dir"))?;
        self.spawn(&base)?;
        self.wait_ready(Duration::from_secs(30)).await
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("etcd logs kept in {}", kept.join("etcd.log").display());
        }
    }
}
