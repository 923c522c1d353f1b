//! t95: bookies over mutual TLS (issue 19, item 7): a bookie with a certificate, a trust
//! file and `authorized_roles` serves a ledger client presenting an authorized certificate,
//! and refuses every other caller — a certificate of another role (PERMISSION_DENIED on add,
//! read, fence and delete alike), no certificate (the handshake fails), plain gRPC — so
//! nobody reaching the port can touch a ledger. The refused calls change nothing: the
//! ledger reads back whole afterwards.

use std::time::Duration;

use bookie::client::{ClientConfig, ClientTls, CreateOptions, LedgerClient};
use bytes::Bytes;
use integration_tests::TestCluster;
use integration_tests::tls::{Identity, Pki};

fn tls(pki: &Pki, id: Option<&Identity>) -> Option<ClientTls> {
    Some(ClientTls {
        ca: std::fs::read(pki.ca_file()).unwrap(),
        identity: id.map(|i| {
            (
                std::fs::read(&i.cert).unwrap(),
                std::fs::read(&i.key).unwrap(),
            )
        }),
    })
}

async fn client(cluster: &TestCluster, tls: Option<ClientTls>) -> LedgerClient {
    let config = ClientConfig {
        add_timeout: Duration::from_secs(3),
        read_timeout: Duration::from_secs(3),
        same_bookie_retries: 0,
        tls,
        ..ClientConfig::default()
    };
    LedgerClient::new(cluster.store().await, cluster.keys(), config)
}

fn opts() -> CreateOptions {
    CreateOptions {
        ensemble: 1,
        write_quorum: 1,
        ack_quorum: 1,
        password: Bytes::from_static(b"pw"),
        custom: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_a_bookie_serves_only_authorized_certificates() {
    let dir = integration_tests::process::KeptDir::new("t95-");
    let pki = Pki::new(&dir.path(), "bk");
    let server = pki.issue("localhost", false);
    let broker = pki.issue("broker", false);
    let intruder = pki.issue("intruder", false);
    let ca = pki.ca_file().display().to_string();
    let (cert, key) = (
        server.cert.display().to_string(),
        server.key.display().to_string(),
    );
    let cluster = TestCluster::start_with(
        1,
        &[
            ("MAGNETAR_TLS_CERTIFICATE_FILE", &cert),
            ("MAGNETAR_TLS_KEY_FILE", &key),
            ("MAGNETAR_TLS_TRUST_CERTS_FILE", &ca),
            ("MAGNETAR_AUTHORIZED_ROLES", "broker,admin"),
        ],
    )
    .await
    .unwrap();

    // The authorized client writes and reads.
    let good = client(&cluster, tls(&pki, Some(&broker))).await;
    let writer = good.create(opts()).await.unwrap();
    let id = writer.id();
    for i in 0..20u64 {
        writer
            .append(Bytes::from(format!("entry {i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // Another role's certificate: every call refused.
    let bad = client(&cluster, tls(&pki, Some(&intruder))).await;
    // (Creating writes metadata only; the first add is the bookie's to refuse.)
    let w2 = bad.create(opts()).await.unwrap();
    let added = match w2.append(Bytes::from_static(b"x")).await {
        Ok(pending) => pending.await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(added.is_err(), "an add with the intruder's certificate");
    let e = bad
        .open_reader(id)
        .await
        .unwrap()
        .read(0)
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("authorized"), "{e:?}");
    assert!(bad.recover(id, b"pw").await.is_err(), "fencing refused");
    // The bookie's own DeleteLedger and Fence, called directly with that certificate.
    let addr = cluster.bookies[0].service.unwrap();
    let channel = {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity as Id};
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(pki.ca_file()).unwrap()))
            .identity(Id::from_pem(
                std::fs::read(&intruder.cert).unwrap(),
                std::fs::read(&intruder.key).unwrap(),
            ))
            .domain_name("localhost");
        Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(config)
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let mut raw = proto::bookie::bookie_client::BookieClient::new(channel);
    let e = raw
        .delete_ledger(proto::bookie::DeleteLedgerRequest { ledger_id: id.0 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = raw
        .fence(proto::bookie::FenceRequest {
            ledger_id: id.0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // No certificate, and plain gRPC: no connection at all.
    let anonymous = client(&cluster, tls(&pki, None)).await;
    assert!(
        anonymous
            .open_reader(id)
            .await
            .unwrap()
            .read(0)
            .await
            .is_err()
    );
    let plain = client(&cluster, None).await;
    assert!(plain.open_reader(id).await.unwrap().read(0).await.is_err());

    // Nothing the refused callers did reached the ledger: the writer goes on, and every
    // entry reads back.
    writer
        .append(Bytes::from_static(b"entry 20"))
        .await
        .unwrap()
        .await
        .unwrap();
    let reader = good.open_reader(id).await.unwrap();
    for i in 0..=20u64 {
        let e = reader.read(i).await.unwrap();
        assert_eq!(e.payload, Bytes::from(format!("entry {i}")));
    }
    let log = std::fs::read_to_string(cluster.bookies[0].log()).unwrap();
    assert!(log.contains("bookie call refused"), "refusals are logged");
    // A bookie with a trust file and nobody authorized does not start.
    let mut b =
        integration_tests::BookieProcess::new(&cluster.meta_url(), &dir.path().join("b2"), "b2")
            .with_env("MAGNETAR_TLS_CERTIFICATE_FILE", &cert)
            .with_env("MAGNETAR_TLS_KEY_FILE", &key)
            .with_env("MAGNETAR_TLS_TRUST_CERTS_FILE", &ca);
    let err = b.start_expecting_failure().unwrap();
    assert!(err.contains("authorized_roles"), "{err}");
}
