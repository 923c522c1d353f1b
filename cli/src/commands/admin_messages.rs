//! `magnetar admin topics` verbs about subscriptions and messages, in `pulsar-admin`'s shape:
//! create-subscription, unsubscribe, skip, clear-backlog, reset-cursor, expire-messages
//! (one subscription or all), peek-messages, examine-messages, get-message-by-id and
//! last-message-id and terminate. A partitioned topic's name applies a subscription verb to every
//! partition, as pulsar-admin does. Messages print as pulsar-admin prints them: `Message ID:`
//! (`Batch Message ID:` for one of a batch), times, properties, then a hex dump.

use anyhow::{Context, bail};
use prost::Message as _;

use super::admin::{Admin, Answer, print_json, topic_path};

#[derive(Debug, clap::Subcommand)]
pub(super) enum Verbs {
    /// Create a durable subscription at the latest message (or -m earliest / L:E).
    CreateSubscription {
        topic: String,
        #[arg(short = 's', long)]
        subscription: String,
        /// latest, earliest or LEDGER:ENTRY.
        #[arg(short = 'm', long = "messageId", default_value = "latest")]
        message_id: String,
    },
    /// Delete a subscription (refused while consumers are connected, unless --force).
    Unsubscribe {
        topic: String,
        #[arg(short = 's', long)]
        subscription: String,
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Skip the next N unacknowledged messages (entries) of a subscription.
    Skip {
        topic: String,
        #[arg(short = 's', long)]
        subscription: String,
        #[arg(short = 'n', long)]
        count: u64,
    },
    /// Acknowledge everything a subscription has not consumed.
    ClearBacklog {
        topic: String,
        #[arg(short = 's', long)]
        subscription: String,
    },
    /// Move a subscription to a time ago (-t 10m) or a message (-m latest|earliest|L:E).
    ResetCursor {
        topic: String,
        #[arg(short = 's', long)]
        subscription: String,
        /// How long ago: 30s, 10m, 3h, 2d, 1w (seconds when bare).
        #[arg(
            short = 't',
            long,
            conflicts_with = "message_id",
            required_unless_present = "message_id"
        )]
        time: Option<String>,
        #[arg(short = 'm', long = "messageId")]
        message_id: Option<String>,
        /// Start after the message rather than at it.
        #[arg(short = 'e', long = "exclude-reset-position")]
        exclude: bool,
    },
    /// Expire a subscription's messages older than -t (or up to message -p L:E).
    ExpireMessages {
        topic: String,
        #[arg(short = 's', long)]
        subscription: String,
        /// 30s, 100m, 3h, 2d, 1w (seconds when bare).
        #[arg(
            short = 't',
            long = "expireTime",
            conflicts_with = "position",
            required_unless_present = "position"
        )]
        expire_time: Option<String>,
        /// LEDGER:ENTRY: expire up to and including it.
        #[arg(short = 'p', long = "position")]
        position: Option<String>,
        /// Keep the message at --position itself.
        #[arg(short = 'e', long = "exclude-reset-position")]
        exclude: bool,
    },
    /// Expire every subscription's messages older than -t.
    ExpireMessagesAllSubscriptions {
        topic: String,
        #[arg(short = 't', long = "expireTime")]
        expire_time: String,
    },
    /// Show a subscription's next N messages without consuming them.
    PeekMessages {
        topic: String,
        #[arg(short = 's', long)]
        subscription: String,
        #[arg(short = 'n', long, default_value_t = 1)]
        count: u64,
    },
    /// Show the N-th message from the start (-i earliest) or the end (-i latest).
    ExamineMessages {
        topic: String,
        #[arg(short = 'i', long = "initialPosition", default_value = "latest")]
        initial_position: String,
        #[arg(short = 'm', long = "messagePosition", default_value_t = 1)]
        message_position: u64,
    },
    /// Show the message at LEDGER:ENTRY.
    GetMessageById {
        topic: String,
        #[arg(short = 'l', long = "ledgerId")]
        ledger: u64,
        #[arg(short = 'e', long = "entryId")]
        entry: u64,
    },
    /// The id of the topic's last message.
    LastMessageId { topic: String },
    /// Terminate a topic: nothing is published to it again; consumers learn they reached its end.
    Terminate { topic: String },
}

/// Seconds in pulsar-admin's relative time: 30s, 10m, 3h, 2d, 1w (seconds when bare).
pub(super) fn seconds(s: &str) -> anyhow::Result<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .with_context(|| format!("time {s:?}: expected e.g. 30s, 10m, 3h, 2d or 1w"))?;
    Ok(n * match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("time {s:?}: unit must be s, m, h, d or w"),
    })
}

/// A message id argument as Pulsar's MessageId JSON: latest, earliest or L:E.
fn message_id_json(s: &str, exclude: bool) -> anyhow::Result<serde_json::Value> {
    let (l, e) = match s {
        "latest" => (i64::MAX, i64::MAX),
        "earliest" => (-1, -1),
        _ => {
            let (l, e) = s
                .split_once(':')
                .with_context(|| format!("message id {s:?}: expected latest, earliest or L:E"))?;
            let l: i64 = l.parse().with_context(|| format!("ledger id in {s:?}"))?;
            let e: i64 = e.parse().with_context(|| format!("entry id in {s:?}"))?;
            (l, e)
        }
    };
    Ok(serde_json::json!({
        "ledgerId": l, "entryId": e, "partitionIndex": -1, "isExcluded": exclude,
    }))
}

/// The topics a subscription verb applies to: each partition of a partitioned topic, else
/// the topic itself.
fn targets(a: &Admin, topic: &str) -> anyhow::Result<Vec<String>> {
    let base = topic_path(topic)?;
    let meta = a.get(&format!("/admin/v2/{base}/partitions"))?;
    let n = meta.get("partitions").and_then(|v| v.as_u64()).unwrap_or(0);
    Ok(if n == 0 {
        vec![base]
    } else {
        (0..n).map(|i| format!("{base}-partition-{i}")).collect()
    })
}

pub(super) fn run(a: &Admin, v: Verbs) -> anyhow::Result<()> {
    match v {
        Verbs::CreateSubscription {
            topic,
            subscription,
            message_id,
        } => {
            let body = message_id_json(&message_id, false)?.to_string();
            for t in targets(a, &topic)? {
                let path = format!("/admin/v2/{t}/subscription/{subscription}");
                a.call("PUT", &path, Some(body.clone()))?;
            }
        }
        Verbs::Unsubscribe {
            topic,
            subscription,
            force,
        } => {
            for t in targets(a, &topic)? {
                let path = format!("/admin/v2/{t}/subscription/{subscription}?force={force}");
                a.call("DELETE", &path, None)?;
            }
        }
        Verbs::Skip {
            topic,
            subscription,
            count,
        } => {
            let path = format!(
                "/admin/v2/{}/subscription/{subscription}/skip/{count}",
                topic_path(&topic)?
            );
            a.call("POST", &path, None)?;
        }
        Verbs::ClearBacklog {
            topic,
            subscription,
        } => {
            for t in targets(a, &topic)? {
                let path = format!("/admin/v2/{t}/subscription/{subscription}/skip_all");
                a.call("POST", &path, None)?;
            }
        }
        Verbs::ResetCursor {
            topic,
            subscription,
            time,
            message_id,
            exclude,
        } => {
            for t in targets(a, &topic)? {
                let base = format!("/admin/v2/{t}/subscription/{subscription}/resetcursor");
                match (&time, &message_id) {
                    (Some(time), _) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)?
                            .as_millis() as u64;
                        let at = now.saturating_sub(seconds(time)? * 1000);
                        a.call("POST", &format!("{base}/{at}"), None)?;
                    }
                    (None, Some(id)) => {
                        let body = message_id_json(id, exclude)?.to_string();
                        a.call("POST", &base, Some(body))?;
                    }
                    (None, None) => bail!("give -t TIME or -m MESSAGE_ID"),
                }
            }
        }
        Verbs::ExpireMessages {
            topic,
            subscription,
            expire_time,
            position,
            exclude,
        } => {
            for t in targets(a, &topic)? {
                let base = format!("/admin/v2/{t}/subscription/{subscription}/expireMessages");
                match (&expire_time, &position) {
                    (Some(time), _) => {
                        a.call("POST", &format!("{base}/{}", seconds(time)?), None)?;
                    }
                    (None, Some(p)) => {
                        let body = message_id_json(p, exclude)?.to_string();
                        a.call("POST", &base, Some(body))?;
                    }
                    (None, None) => bail!("give -t TIME or -p LEDGER:ENTRY"),
                }
            }
        }
        Verbs::ExpireMessagesAllSubscriptions { topic, expire_time } => {
            let secs = seconds(&expire_time)?;
            for t in targets(a, &topic)? {
                let path = format!("/admin/v2/{t}/all_subscription/expireMessages/{secs}");
                a.call("POST", &path, None)?;
            }
        }
        Verbs::PeekMessages {
            topic,
            subscription,
            count,
        } => {
            let base = topic_path(&topic)?;
            let mut shown = 0u64;
            let mut position = 1u64;
            while shown < count {
                let path =
                    format!("/admin/v2/{base}/subscription/{subscription}/position/{position}");
                let answer = match a.call_raw("GET", &path, None) {
                    Ok(answer) => answer,
                    // Fewer messages than asked for: show what there is, as pulsar-admin.
                    Err(e) if shown > 0 && e.to_string().contains("(HTTP 404)") => break,
                    Err(e) => return Err(e),
                };
                for m in messages(&answer)?
                    .into_iter()
                    .take((count - shown) as usize)
                {
                    if shown > 0 {
                        println!(
                            "-------------------------------------------------------------------------\n"
                        );
                    }
                    print!("{m}");
                    shown += 1;
                }
                position += 1;
            }
        }
        Verbs::ExamineMessages {
            topic,
            initial_position,
            message_position,
        } => {
            let path = format!(
                "/admin/v2/{}/examinemessage?initialPosition={initial_position}&messagePosition={message_position}",
                topic_path(&topic)?
            );
            let answer = a.call_raw("GET", &path, None)?;
            if let Some(first) = messages(&answer)?.first() {
                print!("{first}");
            }
        }
        Verbs::GetMessageById {
            topic,
            ledger,
            entry,
        } => {
            let path = format!(
                "/admin/v2/{}/ledger/{ledger}/entry/{entry}",
                topic_path(&topic)?
            );
            let answer = a.call_raw("GET", &path, None)?;
            for m in messages(&answer)? {
                print!("{m}");
            }
        }
        Verbs::Terminate { topic } => {
            let path = format!("/admin/v2/{}/terminate", topic_path(&topic)?);
            let v = serde_json::from_str::<serde_json::Value>(&a.call("POST", &path, None)?)?;
            println!(
                "Topic successfully terminated at {}:{}",
                v["ledgerId"], v["entryId"]
            );
        }
        Verbs::LastMessageId { topic } => {
            print_json(&a.get(&format!("/admin/v2/{}/lastMessageId", topic_path(&topic)?))?)?;
        }
    }
    Ok(())
}

/// The messages of one entry as pulsar-admin prints them: one for a plain entry, one per
/// message of a batch.
fn messages(answer: &Answer) -> anyhow::Result<Vec<String>> {
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .map(str::to_owned)
    };
    let id = header("x-pulsar-message-id").context("the answer has no X-Pulsar-Message-ID")?;
    let publish = header("x-pulsar-publish-time")
        .map(|t| millis(&t))
        .unwrap_or(0);
    let event = header("x-pulsar-event-time")
        .map(|t| millis(&t))
        .unwrap_or(0);
    let props = header("x-pulsar-property")
        .and_then(|p| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&p).ok())
        .unwrap_or_default();
    if let Some(codec) = header("x-pulsar-compression") {
        return Ok(vec![format!(
            "Message ID: {id}\nPublish time: {publish}\nEvent time: {event}\n(body compressed with {codec}: {} bytes, shown as stored)\n{}\n",
            answer.body.len(),
            hex_dump(&answer.body)
        )]);
    }
    let Some(n) = header("x-pulsar-num-batch-message").and_then(|n| n.parse::<usize>().ok()) else {
        return Ok(vec![render(
            &format!("Message ID: {id}"),
            publish,
            event,
            &props,
            &answer.body,
        )]);
    };
    // A batch: [u32 size][SingleMessageMetadata][payload] per message.
    let mut out = Vec::with_capacity(n);
    let mut rest = &answer.body[..];
    for i in 0..n {
        if rest.len() < 4 {
            bail!("batch {id} is truncated at message {i}");
        }
        let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if rest.len() < size {
            bail!("batch {id} is truncated at message {i}");
        }
        let single = broker::protocol::pb::SingleMessageMetadata::decode(&rest[..size])
            .with_context(|| format!("message {i} of batch {id} does not decode"))?;
        rest = &rest[size..];
        let len = single.payload_size.max(0) as usize;
        if rest.len() < len {
            bail!("batch {id} is truncated at message {i}");
        }
        let (payload, after) = rest.split_at(len);
        rest = after;
        let mut p = props.clone();
        for kv in &single.properties {
            p.insert(kv.key.clone(), serde_json::Value::String(kv.value.clone()));
        }
        let event = single.event_time.filter(|t| *t != 0).unwrap_or(event);
        out.push(render(
            &format!("Batch Message ID: {id}:{i}"),
            publish,
            event,
            &p,
            payload,
        ));
    }
    Ok(out)
}

fn render(
    id_line: &str,
    publish: u64,
    event: u64,
    props: &serde_json::Map<String, serde_json::Value>,
    payload: &[u8],
) -> String {
    let mut s = format!("{id_line}\nPublish time: {publish}\nEvent time: {event}\n");
    if !props.is_empty() {
        let v = serde_json::Value::Object(props.clone());
        s.push_str("Properties:\n");
        s.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&hex_dump(payload));
    s.push('\n');
    s
}

/// RFC 3339 (as the broker sends times) → milliseconds since the epoch.
fn millis(t: &str) -> u64 {
    humantime::parse_rfc3339(t)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Netty's `ByteBufUtil.prettyHexDump` layout, which pulsar-admin prints.
pub(super) fn hex_dump(data: &[u8]) -> String {
    if data.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "         +-------------------------------------------------+\n         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |\n+--------+-------------------------------------------------+----------------+",
    );
    for (row, chunk) in data.chunks(16).enumerate() {
        s.push_str(&format!("\n|{:08x}|", row * 16));
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => s.push_str(&format!(" {b:02x}")),
                None => s.push_str("   "),
            }
        }
        s.push_str(" |");
        for i in 0..16 {
            s.push(match chunk.get(i) {
                Some(b) if (0x20..0x7f).contains(b) => *b as char,
                Some(_) => '.',
                None => ' ',
            });
        }
        s.push('|');
    }
    s.push_str("\n+--------+-------------------------------------------------+----------------+");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_is_nettys_layout() {
        let dump = hex_dump(b"hello, world: 0123456789");
        let expected = "         +-------------------------------------------------+
         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |
+--------+-------------------------------------------------+----------------+
|00000000| 68 65 6c 6c 6f 2c 20 77 6f 72 6c 64 3a 20 30 31 |hello, world: 01|
|00000010| 32 33 34 35 36 37 38 39                         |23456789        |
+--------+-------------------------------------------------+----------------+";
        assert_eq!(dump, expected);
    }

    #[test]
    fn relative_times_and_message_ids() {
        assert_eq!(seconds("90").unwrap(), 90);
        assert_eq!(seconds("10m").unwrap(), 600);
        assert_eq!(seconds("2d").unwrap(), 172_800);
        assert!(seconds("3x").is_err());
        assert_eq!(message_id_json("7:3", true).unwrap()["entryId"], 3);
        assert_eq!(message_id_json("earliest", false).unwrap()["ledgerId"], -1);
        assert!(message_id_json("7", false).is_err());
    }
}
