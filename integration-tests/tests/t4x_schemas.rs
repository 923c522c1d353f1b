//! t4x: the schema registry (issue 12, item 6) with the official clients: schema versions on
//! PRODUCER_SUCCESS and on messages, evolution under the namespace's compatibility strategy
//! (a consumer decodes every version: the client fetches each with GET_SCHEMA), refusal of
//! an incompatible schema, JSON and STRING schemas, and `magnetar admin schemas`.

mod support;

use integration_tests::admin::{fails, json, ok};
use integration_tests::process::KeptDir;
use integration_tests::standalone::{StandaloneProcess, check, run_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_schema_versions_evolution_and_refusal() {
    let dir = KeptDir::new("t41-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    assert_eq!(
        ok(
            url,
            &[
                "namespaces",
                "get-schema-compatibility-strategy",
                "public/default"
            ]
        )
        .trim(),
        "UNDEFINED"
    );
    ok(
        url,
        &[
            "namespaces",
            "set-schema-compatibility-strategy",
            "public/default",
            "-c",
            "FORWARD",
        ],
    );
    assert_eq!(
        ok(
            url,
            &[
                "namespaces",
                "get-schema-compatibility-strategy",
                "public/default"
            ]
        )
        .trim(),
        "FORWARD"
    );
    assert!(
        fails(
            url,
            &[
                "namespaces",
                "set-schema-compatibility-strategy",
                "public/default",
                "-c",
                "SIDEWAYS"
            ]
        )
        .contains("unknown schema compatibility strategy \"SIDEWAYS\" (HTTP 400)")
    );
    let topic = "persistent://public/default/evolving";
    let out = check(
        run_scenario(&sa.service_url, "schema_evolve", &[topic]),
        "evolve",
    );
    assert!(out.lines().any(|l| l == "evolved"), "{out}");
    let all = json(url, &["schemas", "get", topic, "--all"]);
    let versions = all["getSchemaResponses"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{all}");
    assert_eq!(versions[1]["version"], 1);
    assert_eq!(versions[1]["type"], "AVRO");
    let latest = json(url, &["schemas", "get", topic]);
    assert_eq!(latest["version"], 1, "{latest}");
    assert!(
        latest["data"].as_str().unwrap().contains("\"age\""),
        "{latest}"
    );

    // Under the default (FULL): a changed field type is refused; JSON and STRING work.
    ok(url, &["namespaces", "create", "public/strict"]);
    let strict = "persistent://public/strict/typed";
    let out = check(
        run_scenario(&sa.service_url, "schema_refused", &[strict]),
        "refused",
    );
    assert!(
        out.contains("refused Pulsar error: IncompatibleSchema"),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "json and string ok"), "{out}");
    assert_eq!(
        json(url, &["schemas", "get", &format!("{strict}-string")])["type"],
        "STRING"
    );

    // Upload through the admin API: a compatible schema is a new version; a bad one is 409.
    let file = dir.path().join("v.json");
    let def = r#"{"type":"record","name":"A","fields":[{"name":"id","type":["null","string"],"default":null},{"name":"note","type":["null","string"],"default":null}]}"#;
    std::fs::write(
        &file,
        serde_json::json!({"type": "AVRO", "schema": def, "properties": {}}).to_string(),
    )
    .unwrap();
    assert_eq!(
        ok(
            url,
            &["schemas", "upload", strict, "-f", file.to_str().unwrap()]
        )
        .trim(),
        "1"
    );
    let bad = dir.path().join("bad.json");
    let def = r#"{"type":"record","name":"A","fields":[{"name":"id","type":"long"}]}"#;
    std::fs::write(
        &bad,
        serde_json::json!({"type": "AVRO", "schema": def}).to_string(),
    )
    .unwrap();
    let e = fails(
        url,
        &["schemas", "upload", strict, "-f", bad.to_str().unwrap()],
    );
    assert!(
        e.contains("incompatible with schema version 1 under FULL") && e.ends_with("(HTTP 409)"),
        "{e}"
    );
    ok(url, &["schemas", "delete", strict]);
    assert_eq!(
        fails(url, &["schemas", "get", strict]),
        "magnetar: Schema not found (HTTP 404)"
    );
}

/// The Rust crate: a producer with a schema gets a version, and its messages carry it; a
/// producer without one gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_rust_producer_schema_version_on_messages() {
    use pulsar::ProducerOptions;
    use pulsar::message::proto::{Schema, schema::Type};
    let dir = KeptDir::new("t42-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let topic = "persistent://public/default/rust-schema";
    let client = support::client(&sa.service_url).await;
    let def = serde_json::json!({"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]});
    let mut consumer = support::consumer(&client, topic, "s", pulsar::SubType::Exclusive).await;
    let mut producer = client
        .producer()
        .with_topic(topic)
        .with_options(ProducerOptions {
            schema: Some(Schema {
                r#type: Type::Json as i32,
                schema_data: serde_json::to_vec(&def).unwrap(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    producer
        .send_non_blocking(b"{\"n\":1}".to_vec())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut plain = client.producer().with_topic(topic).build().await.unwrap();
    plain
        .send_non_blocking(b"raw".to_vec())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut versions = Vec::new();
    for _ in 0..2 {
        let msg = support::next_within(&mut consumer, 20).await.unwrap();
        versions.push(msg.payload.metadata.schema_version.clone());
        consumer.ack(&msg).await.unwrap();
    }
    assert_eq!(versions, [Some(vec![0u8; 8]), None]);
    let latest = json(&sa.http_url, &["schemas", "get", topic]);
    assert_eq!(latest["type"], "JSON", "{latest}");
}
