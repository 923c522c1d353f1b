//! One file per command the broker serves.

pub mod ack;
pub mod close_consumer;
pub mod close_producer;
pub mod connect;
pub mod consumer_stats;
pub mod flow;
pub mod get_last_message_id;
pub mod get_topics;
pub mod lookup;
pub mod non_persistent;
pub mod ping;
pub mod producer;
pub mod redeliver;
pub mod schema;
pub mod seek;
pub mod send;
pub mod subscribe;
pub mod topic_watch;
pub mod unsubscribe;
pub mod unsupported;
