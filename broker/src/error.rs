//! The broker's error type, and the one place errors become Pulsar `ServerError` codes.

use crate::protocol::pb::ServerError;

/// Result with [`BrokerError`] as the default error.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// Everything the broker can report.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The ledger layer failed (bookies, recovery).
    #[error("storage: {0}")]
    Storage(#[from] bookie::client::ClientError),
    /// The metadata store failed.
    #[error("metadata: {0}")]
    Meta(#[from] meta::MetaError),
    /// Another broker owns the topic (its ledger list moved under us).
    #[error("topic {0} is owned elsewhere; redo the lookup")]
    NotOwner(String),
    /// The topic (or its namespace) does not exist, and may not be created implicitly.
    #[error("{0}")]
    TopicNotFound(String),
    /// A bad topic name.
    #[error("invalid topic name {0:?}")]
    InvalidTopic(String),
    /// A subscription rule was broken (a second exclusive consumer, …).
    #[error("{0}")]
    ConsumerBusy(String),
    /// A Key_Shared consumer's hash ranges or mode do not fit the subscription.
    #[error("{0}")]
    ConsumerAssign(String),
    /// A producer of the same name is attached, or an exclusive one holds the topic.
    #[error("{0}")]
    ProducerBusy(String),
    /// An exclusive producer was refused, or this producer was fenced by one.
    #[error("{0}")]
    ProducerFenced(String),
    /// A de-duplicated send whose original is not durable yet: the client sends it again.
    #[error("{0}")]
    DuplicateInFlight(String),
    /// A schema the topic's compatibility strategy refuses (or that is not valid).
    #[error("{0}")]
    IncompatibleSchema(String),
    /// A schema definition that cannot be stored (too large, too many versions).
    #[error("{0}")]
    InvalidSchema(String),
    /// A limit was reached (Pulsar's `NotAllowedError`: too many topics, subscriptions, …).
    #[error("{0}")]
    NotAllowed(String),
    /// Too many requests of a kind at once (`TooManyRequests`): the client retries later.
    #[error("{0}")]
    TooManyRequests(String),
    /// The topic is terminated: it takes no message again.
    #[error("Topic {0} was already terminated")]
    TopicTerminated(String),
    /// A request named an unknown producer, consumer or subscription.
    #[error("{0}")]
    NotFound(String),
    /// A payload failed its checksum.
    #[error("checksum mismatch")]
    Checksum,
    /// The client broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The broker is shutting down.
    #[error("broker is shutting down")]
    ShuttingDown,
}

impl BrokerError {
    /// The Pulsar error code for this error.
    pub fn server_error(&self) -> ServerError {
        match self {
            BrokerError::Storage(_) => ServerError::PersistenceError,
            BrokerError::Meta(_) => ServerError::MetadataError,
            BrokerError::NotOwner(_) | BrokerError::ShuttingDown => ServerError::ServiceNotReady,
            BrokerError::InvalidTopic(_) => ServerError::InvalidTopicName,
            BrokerError::TopicNotFound(_) => ServerError::TopicNotFound,
            BrokerError::ConsumerBusy(_) => ServerError::ConsumerBusy,
            BrokerError::ConsumerAssign(_) => ServerError::ConsumerAssignError,
            BrokerError::ProducerBusy(_) => ServerError::ProducerBusy,
            BrokerError::ProducerFenced(_) => ServerError::ProducerFenced,
            BrokerError::DuplicateInFlight(_) => ServerError::PersistenceError,
            BrokerError::NotFound(_) => ServerError::ConsumerNotFound,
            BrokerError::TopicTerminated(_) => ServerError::TopicTerminatedError,
            BrokerError::IncompatibleSchema(_) | BrokerError::InvalidSchema(_) => {
                ServerError::IncompatibleSchema
            }
            BrokerError::NotAllowed(_) => ServerError::NotAllowedError,
            BrokerError::TooManyRequests(_) => ServerError::TooManyRequests,
            BrokerError::Checksum => ServerError::ChecksumError,
            BrokerError::Protocol(_) => ServerError::UnknownError,
        }
    }
}
