//! Fuzz targets (`common::fuzz`) for the broker's decoders of client bytes: frames and their
//! commands, payload sections with message and batch metadata, compaction's batch parsing,
//! and schema definitions through the compatibility check. Each must answer any input with a
//! value or an error: a panic fails the target and saves the input.

use bytes::{BufMut, BytesMut};
use prost::Message as _;

use crate::protocol::frame::{self, build_payload, inspect_payload};
use crate::protocol::pb::{self, BaseCommand, base_command::Type};

fn frame_seeds() -> Vec<Vec<u8>> {
    let connect = BaseCommand {
        r#type: Type::Connect as i32,
        connect: Some(pb::CommandConnect {
            client_version: "fuzz".into(),
            protocol_version: Some(19),
            ..Default::default()
        }),
        ..Default::default()
    };
    let send = BaseCommand {
        r#type: Type::Send as i32,
        send: Some(pb::CommandSend {
            producer_id: 1,
            sequence_id: 2,
            num_messages: Some(3),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut a = BytesMut::new();
    frame::encode(&connect, &mut a);
    let mut b = BytesMut::new();
    frame::encode_with_payload(&send, &batch_payload(), &mut b);
    vec![a.to_vec(), b.to_vec()]
}

/// A payload section holding an uncompressed batch of three keyed messages.
fn batch_payload() -> Vec<u8> {
    let mut body = BytesMut::new();
    for k in ["a", "b", "c"] {
        let s = pb::SingleMessageMetadata {
            partition_key: Some(k.into()),
            payload_size: 2,
            ..Default::default()
        };
        let m = s.encode_to_vec();
        body.put_u32(m.len() as u32);
        body.put_slice(&m);
        body.put_slice(b"vv");
    }
    build_payload(
        &pb::MessageMetadata {
            producer_name: "p".into(),
            num_messages_in_batch: Some(3),
            publish_time: 1,
            ..Default::default()
        },
        &body,
    )
    .to_vec()
}

#[test]
fn fuzz_frame() {
    common::fuzz::run("frame", &frame_seeds(), |input| {
        let mut buf = BytesMut::from(input);
        while let Ok(f) = frame::decode(&mut buf, 5 << 20) {
            if let Some(p) = f.payload {
                let _ = inspect_payload(&p);
            }
        }
    });
}

#[test]
fn fuzz_payload() {
    common::fuzz::run("payload", &[batch_payload()], |input| {
        if let Ok(info) = inspect_payload(input) {
            let _ = info.messages(input.len());
            let _ = crate::topic::sequence_range(&info.metadata);
            let _ = crate::sticky_key::key_hash(&info.metadata);
        }
        crate::topic::compaction::fuzz_batch(input);
    });
}

#[test]
fn fuzz_schema() {
    let seeds = [
        r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"},{"name":"age","type":["null","int"],"default":null}]}"#,
        r#"[{"type":"record","name":"A","fields":[{"name":"f","type":"B"}]},{"type":"record","name":"B","fields":[{"name":"g","type":{"type":"array","items":"A"}}]}]"#,
        r#"{"type":"enum","name":"C","symbols":["R","G"]}"#,
        r#"{"type":"map","values":{"type":"fixed","name":"F","size":4}}"#,
    ];
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    use crate::schema::compat::{Strategy, check};
    common::fuzz::run("schema", &seeds, |input| {
        // The input against itself and against its halves, both ways, as AVRO and JSON.
        let half = input.len() / 2;
        for (a, b) in [(input, input), (&input[..half], &input[half..])] {
            for t in [2, 4] {
                let _ = check(Strategy::Full, (t, a), (t, b));
                let _ = check(Strategy::FullTransitive, (t, b), (t, a));
            }
        }
    });
}

/// Admin REST: any method, any path under the admin routes (tenants, namespaces and their
/// policies, topics, subscriptions, schemas, brokers, clusters) with any body, against a
/// broker over an embedded store (no bookies: whatever needs a ledger fails with an error).
/// Input: a method byte, a route byte, the path's tail up to a newline, then the body.
#[test]
fn fuzz_admin() {
    use std::sync::Arc;
    use tower::ServiceExt as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let router = rt.block_on(async {
        let service = crate::service::test_service(dir.path()).await;
        crate::admin::routes(Arc::new(service))
    });
    const ROUTES: [&str; 10] = [
        "/admin/v2/tenants/",
        "/admin/v2/namespaces/",
        "/admin/v2/namespaces/public/default/",
        "/admin/v2/persistent/public/default/",
        "/admin/v2/persistent/public/default/t/subscription/s/",
        "/admin/v2/non-persistent/public/default/",
        "/admin/v2/schemas/public/default/",
        "/admin/v2/brokers/",
        "/admin/v2/clusters/",
        "/admin/v2/persistent/public/default/t/",
    ];
    let seeds: Vec<Vec<u8>> = [
        (1u8, 0u8, "t1", r#"{"adminRoles":[],"allowedClusters":["standalone"]}"#),
        (1, 2, "retention", r#"{"retentionTimeInMinutes":10,"retentionSizeInMB":-1}"#),
        (2, 2, "autoTopicCreation", r#"{"allowAutoTopicCreation":true,"topicType":"partitioned","defaultNumPartitions":3}"#),
        (2, 4, "resetcursor", r#"{"ledgerId":1,"entryId":2,"isExcluded":false}"#),
        (2, 6, "x/schema", r#"{"type":"AVRO","schema":"{\"type\":\"record\",\"name\":\"R\",\"fields\":[]}","properties":{}}"#),
        (0, 3, "t/stats", ""),
        (0, 4, "position/1", ""),
        (3, 1, "public/x", ""),
    ]
    .iter()
    .map(|(m, r, path, body)| {
        let mut v = vec![*m, *r];
        v.extend_from_slice(path.as_bytes());
        v.push(b'\n');
        v.extend_from_slice(body.as_bytes());
        v
    })
    .collect();
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new());
    common::fuzz::run("admin", &seeds, |input| {
        let [m, r, rest @ ..] = input else { return };
        let (tail, body) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let method = ["GET", "PUT", "POST", "DELETE"][*m as usize % 4];
        // Paths are URIs: percent-encode whatever a URI may not hold, as a client would.
        let tail: String = tail
            .iter()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                    (*b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let uri = format!("{}{tail}", ROUTES[*r as usize % ROUTES.len()]);
        let Ok(request) = axum::http::Request::builder()
            .method(method)
            .uri(&uri)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_vec()))
        else {
            return;
        };
        let router = router.clone();
        let status = rt.block_on(async move {
            let answer =
                tokio::time::timeout(std::time::Duration::from_secs(2), router.oneshot(request))
                    .await;
            // A server error is a bug to look at, not a crash: only panics fail here.
            answer.map_or(0, |r| r.map_or(1, |r| r.status().as_u16()))
        });
        *statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
    });
    eprintln!(
        "fuzz target admin: answers by status (0: no answer in 2 s) {:?}",
        statuses.lock().unwrap_or_else(|p| p.into_inner())
    );
}
