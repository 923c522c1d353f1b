//! Who serves which topic, when several brokers share one metadata store.
//!
//! - [`bundles`]: a namespace's topics hash into bundles (Pulsar's hash ranges);
//! - [`registry`]: each broker registers `brokers/<id>` under its lease, with a load report;
//! - [`owner`]: a broker serves a bundle only while it holds `ownership/<ns>/<bundle>` under
//!   its live lease (create-if-absent), and answers lookups: Connect when it owns the bundle,
//!   Redirect to the owner, or assign an unowned bundle to the least-loaded live broker.
//!
//! When the lease is lost, the broker drops every topic at once (producers and consumers are
//! told to reconnect, writes fail) — and a new owner fences the old one's ledgers anyway, so
//! nothing the old owner acknowledged is lost and nothing it writes later is acknowledged.

pub mod bundles;
pub mod owner;
pub mod registry;
pub mod storage;

pub use owner::{LookupAnswer, Ownership};
