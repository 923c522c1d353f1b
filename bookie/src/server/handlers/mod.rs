//! One file per RPC. Each turns a request into an engine call and the result into a response;
//! errors become status codes only through [`BookieError::status`](crate::BookieError::status).

pub mod add_entries;
pub mod bookie_info;
pub mod delete_ledger;
pub mod fence;
pub mod ledger_info;
pub mod list_ledgers;
pub mod read_entry;
pub mod read_lac;
