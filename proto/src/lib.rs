//! Protobuf records shared by Magnetar's processes.
//!
//! - [`meta`]: values stored in the metadata store (ledger metadata, bookie registration,
//!   cookies, the ledger-id counter). Key layout: `docs/metadata.md`.
//! - [`embedded`]: records of the embedded metadata store's log file;
//! - [`bookie`]: the bookie gRPC service (client and server) and its messages.
//!
//! Code is generated at build time from `protos/` by `protoc`; payload fields are
//! `bytes::Bytes` so values move through the system without copies.

#![allow(missing_docs)] // generated code carries the .proto comments instead

/// Metadata-store values (format version [`meta::FORMAT_VERSION`]).
pub mod meta {
    include!(concat!(env!("OUT_DIR"), "/magnetar.meta.rs"));

    /// The record format version this build writes and the highest it reads.
    pub const FORMAT_VERSION: u32 = 1;
}

/// The embedded metadata store's log records.
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/magnetar.embedded.rs"));
}

/// The bookie service and its messages.
pub mod bookie {
    include!(concat!(env!("OUT_DIR"), "/magnetar.bookie.rs"));
}
