//! The Pulsar binary protocol: generated messages ([`pb`]), framing ([`frame`]), command
//! builders ([`cmd`]) and one handler file per command ([`commands`]).

pub mod cmd;
pub mod commands;
pub mod frame;

/// Pulsar's protocol messages (proto2, Pulsar's field numbers).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/magnetar.pulsar.rs"));
}

/// The highest protocol version this broker speaks; CONNECTED answers min(client, this).
pub const MAX_PROTOCOL_VERSION: i32 = 19;
