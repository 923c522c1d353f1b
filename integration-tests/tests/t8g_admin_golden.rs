//! t8g: `magnetar admin`'s outputs, verb by verb, against a golden transcript
//! (`tests/golden/admin.txt`; `MAGNETAR_UPDATE_GOLDEN=1` rewrites it). What varies between
//! runs — ledger ids, publish times — is masked; everything else, JSON included, must match.

use integration_tests::admin::admin;
use integration_tests::golden::golden;
use integration_tests::process::KeptDir;
use integration_tests::standalone::{StandaloneProcess, check, run_scenario};

/// Replaces the digits that follow `prefix` in `line` with `mask`.
fn mask_after(line: &str, prefix: &str, mask: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        let (head, tail) = rest.split_at(i + prefix.len());
        out.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push_str(mask);
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn normalise(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = mask_after(l, "Message ID: ", "L");
            let l = mask_after(&l, "Publish time: ", "T");
            let l = mask_after(&l, "\"ledgerId\": ", "L");
            let l = mask_after(&l, "terminated at ", "L");
            mask_after(&l, "\"timestamp\": ", "T")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs each command and writes `$ magnetar admin …`, its output and, when it fails, its
/// error line and exit.
fn transcript(url: &str, commands: &[&[&str]]) -> String {
    let mut out = String::new();
    for args in commands {
        out.push_str(&format!("$ magnetar admin {}\n", args.join(" ")));
        let (success, stdout, stderr) = admin(url, args);
        out.push_str(&stdout);
        if !success {
            out.push_str(&format!("{}\n[failed]\n", stderr.trim()));
        }
    }
    normalise(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8g_admin_verbs_golden_transcript() {
    let dir = KeptDir::new("t8g-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    let topic = "persistent://acme/app/orders";
    let mut text = transcript(
        url,
        &[
            &["clusters", "list"],
            &["tenants", "create", "acme"],
            &["tenants", "create", "acme"],
            &["tenants", "list"],
            &["tenants", "get", "acme"],
            &["tenants", "get", "nobody"],
            &["namespaces", "create", "acme/app", "-b", "8"],
            &["namespaces", "list", "acme"],
            &[
                "namespaces",
                "set-persistence",
                "acme/app",
                "-e",
                "1",
                "-w",
                "1",
                "-a",
                "1",
            ],
            &["namespaces", "get-persistence", "acme/app"],
            &[
                "namespaces",
                "set-retention",
                "acme/app",
                "--time",
                "3h",
                "--size",
                "1G",
            ],
            &["namespaces", "get-retention", "acme/app"],
            &[
                "namespaces",
                "set-message-ttl",
                "acme/app",
                "--messageTTL",
                "1h",
            ],
            &["namespaces", "get-message-ttl", "acme/app"],
            &["namespaces", "set-deduplication", "acme/app", "--enable"],
            &["namespaces", "get-deduplication", "acme/app"],
            &[
                "namespaces",
                "set-max-producers-per-topic",
                "acme/app",
                "-p",
                "5",
            ],
            &["namespaces", "get-max-producers-per-topic", "acme/app"],
            &[
                "namespaces",
                "set-max-consumers-per-topic",
                "acme/app",
                "-c",
                "6",
            ],
            &[
                "namespaces",
                "set-max-consumers-per-subscription",
                "acme/app",
                "-c",
                "3",
            ],
            &[
                "namespaces",
                "set-max-unacked-messages-per-consumer",
                "acme/app",
                "-c",
                "100",
            ],
            &[
                "namespaces",
                "set-subscription-expiration-time",
                "acme/app",
                "-t",
                "60",
            ],
            &[
                "namespaces",
                "set-backlog-quota",
                "acme/app",
                "-l",
                "10M",
                "-p",
                "producer_request_hold",
            ],
            &["namespaces", "get-backlog-quotas", "acme/app"],
            &[
                "namespaces",
                "set-auto-topic-creation",
                "acme/app",
                "-e",
                "-t",
                "partitioned",
                "-n",
                "2",
            ],
            &["namespaces", "get-auto-topic-creation", "acme/app"],
            &[
                "namespaces",
                "set-schema-compatibility-strategy",
                "acme/app",
                "-c",
                "BACKWARD",
            ],
            &[
                "namespaces",
                "get-schema-compatibility-strategy",
                "acme/app",
            ],
            &["namespaces", "policies", "acme/app"],
            &["topics", "create", topic],
            &["topics", "create", topic],
            &["topics", "list", "acme/app"],
            &["topics", "bundle-range", topic],
            &[
                "topics",
                "create-partitioned-topic",
                "acme/app/parts",
                "-p",
                "3",
            ],
            &[
                "topics",
                "update-partitioned-topic",
                "acme/app/parts",
                "-p",
                "4",
            ],
            &["topics", "get-partitioned-topic-metadata", "acme/app/parts"],
            &["topics", "list-partitioned-topics", "acme/app"],
            &[
                "topics",
                "create-subscription",
                topic,
                "-s",
                "audit",
                "-m",
                "earliest",
            ],
            &["topics", "subscriptions", topic],
            &[
                "topics",
                "set-max-unacked-messages-per-consumer",
                topic,
                "-m",
                "7",
            ],
            &["topics", "get-max-unacked-messages-per-consumer", topic],
        ],
    );
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[topic, "3"]),
        "produce",
    );
    text += &transcript(
        url,
        &[
            &["topics", "peek-messages", topic, "-s", "audit", "-n", "2"],
            &["topics", "examine-messages", topic, "-i", "latest"],
            &["topics", "skip", topic, "-s", "audit", "-n", "1"],
            &["topics", "peek-messages", topic, "-s", "audit"],
            &[
                "topics",
                "reset-cursor",
                topic,
                "-s",
                "audit",
                "-m",
                "earliest",
            ],
            &[
                "topics",
                "expire-messages",
                topic,
                "-s",
                "audit",
                "-t",
                "1h",
            ],
            &["topics", "clear-backlog", topic, "-s", "audit"],
            &["topics", "last-message-id", topic],
            &["topics", "unsubscribe", topic, "-s", "audit"],
            &["topics", "unsubscribe", topic, "-s", "audit"],
            &["topics", "compaction-status", topic],
            &["topics", "terminate", topic],
            &["topics", "delete", topic],
            &["topics", "delete-partitioned-topic", "acme/app/parts"],
            &["namespaces", "delete", "acme/app"],
            &["tenants", "delete", "acme"],
            &["tenants", "list"],
        ],
    );
    golden("admin.txt", &text);
}
