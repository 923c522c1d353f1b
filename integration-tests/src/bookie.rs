//! A `magnetar bookie` process, and a thin gRPC client for tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use bookie::Entry;
use bytes::Bytes;
use proto::bookie::bookie_client::BookieClient as Grpc;
use proto::bookie::{
    AddBatch, AddBatchResponse, AddRequest, FenceRequest, ReadRequest, ReadResponse, StatusCode,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::process::{ServerProcess, ready_field};

/// How long a bookie may take to print its ready line.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// One bookie process with its own journal and ledger directories under `root`.
#[derive(Debug)]
pub struct BookieProcess {
    /// The bookie id, fixed so restarts keep their cookie.
    pub id: String,
    root: PathBuf,
    meta_url: String,
    env: Vec<(String, String)>,
    ledger_dir: Option<PathBuf>,
    journal_dir: Option<PathBuf>,
    proc: Option<ServerProcess>,
    /// gRPC address of the running process.
    pub service: Option<SocketAddr>,
    /// HTTP address of the running process.
    pub http: Option<SocketAddr>,
}

impl BookieProcess {
    /// A bookie (not started) storing under `root`.
    pub fn new(meta_url: &str, root: &Path, id: &str) -> Self {
        BookieProcess {
            id: id.to_owned(),
            root: root.to_owned(),
            meta_url: meta_url.to_owned(),
            env: Vec::new(),
            ledger_dir: None,
            journal_dir: None,
            proc: None,
            service: None,
            http: None,
        }
    }

    /// Sets a `MAGNETAR_*` configuration variable for every start.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Puts the ledger directory somewhere else (a small tmpfs, say).
    pub fn with_ledger_dir(mut self, dir: &Path) -> Self {
        self.ledger_dir = Some(dir.to_owned());
        self
    }

    /// Puts the journal directory somewhere else (a small tmpfs, say).
    pub fn with_journal_dir(mut self, dir: &Path) -> Self {
        self.journal_dir = Some(dir.to_owned());
        self
    }

    /// The journal directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.journal_dir
            .clone()
            .unwrap_or_else(|| self.root.join("journal"))
    }

    /// The ledger directory.
    pub fn ledger_dir(&self) -> PathBuf {
        self.ledger_dir
            .clone()
            .unwrap_or_else(|| self.root.join("ledgers"))
    }

    /// The log file (stderr of every start).
    pub fn log(&self) -> PathBuf {
        self.root.join(format!("bookie-{}.log", self.id))
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(crate::bin::magnetar());
        cmd.arg("bookie")
            .arg("--meta-url")
            .arg(&self.meta_url)
            .arg("--journal-dir")
            .arg(self.journal_dir())
            .arg("--ledger-dir")
            .arg(self.ledger_dir())
            .args(["--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
            .arg("--bookie-id")
            .arg(&self.id)
            .env("MAGNETAR_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the process and waits for its ready line.
    pub fn start(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        let p = ServerProcess::spawn(self.command(), &self.log(), START_DEADLINE)?;
        let field = |k: &str| {
            ready_field(&p.ready_line, k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("bad ready line {:?}", p.ready_line))
        };
        self.service = Some(field("service")?);
        self.http = Some(field("http")?);
        anyhow::ensure!(
            ready_field(&p.ready_line, "id").as_deref() == Some(self.id.as_str()),
            "ready line names another id: {}",
            p.ready_line
        );
        self.proc = Some(p);
        Ok(())
    }

    /// Runs the bookie expecting it to fail at start-up; returns its log.
    pub fn start_expecting_failure(&mut self) -> anyhow::Result<String> {
        std::fs::create_dir_all(&self.root)?;
        match ServerProcess::spawn(self.command(), &self.log(), START_DEADLINE) {
            Ok(p) => {
                p.kill9();
                anyhow::bail!("bookie started although it should have refused")
            }
            Err(e) => Ok(e.to_string()),
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill9();
        }
    }

    /// SIGSTOP / SIGCONT.
    pub fn signal(&self, name: &str) {
        if let Some(p) = &self.proc {
            p.signal(name);
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.proc
            .take()
            .and_then(|p| p.terminate(Duration::from_secs(30)))
    }

    /// A client of the running process.
    pub async fn client(&self) -> anyhow::Result<BookieClient> {
        let addr = self
            .service
            .ok_or_else(|| anyhow::anyhow!("bookie not started"))?;
        BookieClient::connect(addr).await
    }
}

/// A gRPC client of one bookie.
#[derive(Debug, Clone)]
pub struct BookieClient {
    /// The generated client, for calls without a helper.
    pub grpc: Grpc<Channel>,
}

impl BookieClient {
    /// Connects (with TCP_NODELAY).
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        Ok(BookieClient {
            grpc: Grpc::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        })
    }

    /// Opens an add stream: send requests on the returned sender, read responses from the
    /// returned stream.
    pub async fn add_stream(
        &mut self,
    ) -> anyhow::Result<(mpsc::Sender<AddBatch>, tonic::Streaming<AddBatchResponse>)> {
        let (tx, rx) = mpsc::channel(1024);
        let responses = self
            .grpc
            .add_entries(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok((tx, responses))
    }

    /// Adds entries over one stream, all in flight at once; returns each status by request
    /// order.
    pub async fn add_all(
        &mut self,
        entries: &[Entry],
        key: &[u8],
        recovery: bool,
    ) -> anyhow::Result<Vec<StatusCode>> {
        let (tx, mut responses) = self.add_stream().await?;
        let requests: Vec<AddRequest> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| AddRequest {
                request_id: i as u64,
                entry: Some(e.to_proto()),
                master_key: Bytes::copy_from_slice(key),
                recovery,
            })
            .collect();
        for chunk in requests.chunks(64) {
            tx.send(AddBatch {
                requests: chunk.to_vec(),
            })
            .await?;
        }
        drop(tx);
        let mut statuses = vec![StatusCode::Io; entries.len()];
        while let Some(batch) = responses.message().await? {
            for r in batch.responses {
                statuses[r.request_id as usize] = r.status();
            }
        }
        Ok(statuses)
    }

    /// Reads one entry.
    pub async fn read(&mut self, ledger: u64, entry: u64) -> anyhow::Result<ReadResponse> {
        Ok(self
            .grpc
            .read_entry(ReadRequest {
                ledger_id: ledger,
                entry_id: entry,
                fence: false,
                master_key: Bytes::new(),
            })
            .await?
            .into_inner())
    }

    /// Fences a ledger; returns the status.
    pub async fn fence(&mut self, ledger: u64, key: &[u8]) -> anyhow::Result<StatusCode> {
        Ok(self
            .grpc
            .fence(FenceRequest {
                ledger_id: ledger,
                master_key: Bytes::copy_from_slice(key),
            })
            .await?
            .into_inner()
            .status())
    }
}
