//! Builders for the commands the broker sends: the `type` field and the matching
//! sub-message are always set together (pulsar-rs dispatches on the sub-message).

use common::Position;

use super::pb::base_command::Type;
use super::pb::{self, BaseCommand, MessageIdData, ServerError};

fn base(t: Type) -> BaseCommand {
    BaseCommand {
        r#type: t as i32,
        ..Default::default()
    }
}

/// A message id for a position (non-partitioned, not batched).
pub fn message_id(p: Position) -> MessageIdData {
    MessageIdData {
        ledger_id: p.ledger.0,
        entry_id: p.entry.0,
        ..Default::default()
    }
}

/// CONNECTED.
pub fn connected(protocol_version: i32, max_message_size: i32) -> BaseCommand {
    BaseCommand {
        connected: Some(pb::CommandConnected {
            server_version: format!("Magnetar-{}", env!("CARGO_PKG_VERSION")),
            protocol_version: Some(protocol_version),
            max_message_size: Some(max_message_size),
            // Regex consumers may watch topic lists (WATCH_TOPIC_LIST) instead of polling.
            feature_flags: Some(pb::FeatureFlags {
                supports_topic_watchers: Some(true),
                ..Default::default()
            }),
        }),
        ..base(Type::Connected)
    }
}

/// SUCCESS.
pub fn success(request_id: u64) -> BaseCommand {
    BaseCommand {
        success: Some(pb::CommandSuccess {
            request_id,
            schema: None,
        }),
        ..base(Type::Success)
    }
}

/// ERROR.
pub fn error(request_id: u64, error: ServerError, message: String) -> BaseCommand {
    BaseCommand {
        error: Some(pb::CommandError {
            request_id,
            error: error as i32,
            message,
        }),
        ..base(Type::Error)
    }
}

/// PONG.
pub fn pong() -> BaseCommand {
    BaseCommand {
        pong: Some(pb::CommandPong {}),
        ..base(Type::Pong)
    }
}

/// PING.
pub fn ping() -> BaseCommand {
    BaseCommand {
        ping: Some(pb::CommandPing {}),
        ..base(Type::Ping)
    }
}

/// SEND_RECEIPT.
pub fn send_receipt(producer_id: u64, sequence_id: u64, highest: u64, p: Position) -> BaseCommand {
    BaseCommand {
        send_receipt: Some(pb::CommandSendReceipt {
            producer_id,
            sequence_id,
            message_id: Some(message_id(p)),
            highest_sequence_id: Some(highest),
        }),
        ..base(Type::SendReceipt)
    }
}

/// SEND_ERROR.
pub fn send_error(
    producer_id: u64,
    sequence_id: u64,
    error: ServerError,
    message: String,
) -> BaseCommand {
    BaseCommand {
        send_error: Some(pb::CommandSendError {
            producer_id,
            sequence_id,
            error: error as i32,
            message,
        }),
        ..base(Type::SendError)
    }
}

/// The partition index of a partition's topic name (`…-partition-3` → 3), else -1: Pulsar
/// puts it in every message id it delivers.
pub fn partition_of(topic: &str) -> i32 {
    topic
        .rsplit_once("-partition-")
        .and_then(|(_, n)| n.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(-1)
}

/// MESSAGE (the payload follows in the frame); `partition`: see [`partition_of`].
pub fn message(
    consumer_id: u64,
    p: Position,
    partition: i32,
    redelivery_count: u32,
) -> BaseCommand {
    BaseCommand {
        message: Some(pb::CommandMessage {
            consumer_id,
            message_id: MessageIdData {
                partition: Some(partition),
                ..message_id(p)
            },
            redelivery_count: Some(redelivery_count),
            ack_set: Vec::new(),
            consumer_epoch: None,
        }),
        ..base(Type::Message)
    }
}

/// CLOSE_PRODUCER from the broker: the client should look the topic up again and reconnect.
pub fn close_producer(producer_id: u64) -> BaseCommand {
    BaseCommand {
        close_producer: Some(pb::CommandCloseProducer {
            producer_id,
            request_id: 0,
            ..Default::default()
        }),
        ..base(Type::CloseProducer)
    }
}

/// CLOSE_CONSUMER from the broker: the client should look the topic up again and resubscribe.
pub fn close_consumer(consumer_id: u64) -> BaseCommand {
    BaseCommand {
        close_consumer: Some(pb::CommandCloseConsumer {
            consumer_id,
            request_id: 0,
            ..Default::default()
        }),
        ..base(Type::CloseConsumer)
    }
}

/// REACHED_END_OF_TOPIC: the consumer's terminated topic has nothing more for it.
pub fn reached_end_of_topic(consumer_id: u64) -> BaseCommand {
    BaseCommand {
        reached_end_of_topic: Some(pb::CommandReachedEndOfTopic { consumer_id }),
        ..base(Type::ReachedEndOfTopic)
    }
}

/// ACTIVE_CONSUMER_CHANGE (Failover).
pub fn active_consumer_change(consumer_id: u64, is_active: bool) -> BaseCommand {
    BaseCommand {
        active_consumer_change: Some(pb::CommandActiveConsumerChange {
            consumer_id,
            is_active: Some(is_active),
        }),
        ..base(Type::ActiveConsumerChange)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn partitions_of_names() {
        assert_eq!(super::partition_of("persistent://a/b/t-partition-3"), 3);
        assert_eq!(super::partition_of("persistent://a/b/t"), -1);
        assert_eq!(super::partition_of("persistent://a/b/t-partition-x"), -1);
    }
}
