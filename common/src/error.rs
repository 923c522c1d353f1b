//! The crate's error type.

use std::path::PathBuf;

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `common`: bad ids and bad configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string that should name an id does not parse.
    #[error("invalid {kind} {input:?}: {reason}")]
    InvalidId {
        /// Which id type was expected ("ledger id", "position", …).
        kind: &'static str,
        /// The text that was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file named by `--config`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    ConfigSyntax {
        /// The file named by `--config`.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A config key has a value of the wrong type or an unknown name.
    #[error("config key `{key}`: {message}")]
    ConfigValue {
        /// Dotted path of the key, as written in the TOML file (`journal.max_group_wait`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}
