//! `TestCluster`: a real etcd and N `magnetar bookie` processes on ephemeral loopback ports,
//! with helpers to kill, pause, resume and restart bookies, and ledger clients for it.

use std::sync::Arc;
use std::time::Duration;

use bookie::client::{ClientConfig, LedgerClient};
use meta::{BookieRegistry, BookieState, KeyLayout, MetadataStore};

use crate::bookie::BookieProcess;
use crate::process::KeptDir;
use crate::{EtcdServer, wait_for};

/// etcd plus bookies. Everything is killed when dropped; files are kept if the test panics.
#[derive(Debug)]
pub struct TestCluster {
    /// The metadata store process.
    pub etcd: EtcdServer,
    /// Bookie processes, `bookie-0`, `bookie-1`, …
    pub bookies: Vec<BookieProcess>,
    dir: KeptDir,
}

impl TestCluster {
    /// Starts etcd and `n` bookies, and waits until all are registered.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, &[]).await
    }

    /// Like [`TestCluster::start`], with `MAGNETAR_*` settings for every bookie.
    pub async fn start_with(n: usize, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let etcd = EtcdServer::start().await?;
        let dir = KeptDir::new("cluster-");
        let mut bookies = Vec::new();
        for i in 0..n {
            let id = format!("bookie-{i}");
            let mut b = BookieProcess::new(&etcd.url(), &dir.path().join(&id), &id);
            for (k, v) in env {
                b = b.with_env(k, v);
            }
            b.start()?;
            bookies.push(b);
        }
        let cluster = TestCluster { etcd, bookies, dir };
        cluster.wait_writable(n).await;
        Ok(cluster)
    }

    /// A metadata-store client.
    pub async fn store(&self) -> Arc<dyn MetadataStore> {
        Arc::new(self.etcd.store().await.expect("connect to etcd"))
    }

    /// The `--meta-url` of the cluster.
    pub fn meta_url(&self) -> String {
        self.etcd.url()
    }

    /// The cluster's key layout.
    pub fn keys(&self) -> KeyLayout {
        KeyLayout::for_cluster(meta::keys::DEFAULT_CLUSTER)
    }

    /// A ledger client with short timeouts suited to tests.
    pub async fn client(&self) -> LedgerClient {
        let config = ClientConfig {
            add_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(3),
            ..ClientConfig::default()
        };
        LedgerClient::new(self.store().await, self.keys(), config)
    }

    /// Waits until exactly `n` bookies are registered writable.
    pub async fn wait_writable(&self, n: usize) {
        let registry = BookieRegistry::new(self.store().await, self.keys());
        wait_for("bookies to register", Duration::from_secs(30), || {
            let registry = registry.clone();
            async move {
                let listed = registry.list(BookieState::Available).await.ok()?;
                (listed.len() == n).then_some(())
            }
        })
        .await;
    }

    /// The index of the bookie with this id.
    pub fn index_of(&self, id: &str) -> usize {
        self.bookies
            .iter()
            .position(|b| b.id == id)
            .unwrap_or_else(|| panic!("no bookie {id}"))
    }

    /// Where test files live.
    pub fn dir(&self) -> std::path::PathBuf {
        self.dir.path()
    }
}
