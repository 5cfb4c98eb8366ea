//! Why a job or its bookkeeping failed, and whether trying again can help.

use pipeline::bus::BusError;
use pipeline::runner::HandlerError;

use crate::persist::PersistError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The request can never run as given (unknown subject, bad input).
    #[error("invalid job: {0}")]
    Invalid(String),
    /// The subject does not exist (no persisted data, upstream 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// An upstream HTTP call failed; `retriable` for timeouts, 429 and 5xx.
    #[error("upstream {service}: {message}")]
    Upstream {
        service: &'static str,
        message: String,
        retriable: bool,
    },
    #[error("database error during {operation}: {source}")]
    Database {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("bus error during {operation}: {source}")]
    Bus {
        operation: &'static str,
        #[source]
        source: BusError,
    },
    #[error("encode: {0}")]
    Encode(String),
    /// Publishing what a job made (a fetched match) failed.
    #[error(transparent)]
    Publish(#[from] producers::publish::PublishError),
}

impl JobError {
    pub(crate) fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| JobError::Database { operation, source }
    }

    pub(crate) fn bus(operation: &'static str) -> impl FnOnce(BusError) -> Self {
        move |source| JobError::Bus { operation, source }
    }

    /// Stable name of the failure, for dead letters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            JobError::Invalid(_) => "invalid",
            JobError::NotFound(_) => "not_found",
            JobError::Upstream { .. } => "upstream",
            JobError::Database { .. } => "database",
            JobError::Persist(err) => err.kind(),
            JobError::Bus { .. } => "bus",
            JobError::Encode(_) => "encode",
            JobError::Publish(_) => "publish",
        }
    }

    /// Bad input and missing subjects fail the same way every time; a store,
    /// bus or upstream that is briefly away may not.
    pub fn is_retriable(&self) -> bool {
        match self {
            JobError::Invalid(_) | JobError::NotFound(_) | JobError::Encode(_) => false,
            JobError::Upstream { retriable, .. } => *retriable,
            // Connection-level failures; a bad query is a bug, retried all the same
            // (bounded by max attempts) since the job table cannot tell them apart.
            JobError::Database { source, .. } => !matches!(
                source,
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_)
            ),
            JobError::Persist(err) => err.is_retriable(),
            JobError::Bus { source, .. } => source.is_retriable(),
            JobError::Publish(err) => err.is_retriable(),
        }
    }
}

impl From<JobError> for HandlerError {
    fn from(err: JobError) -> Self {
        let message = err.to_string();
        if err.is_retriable() {
            HandlerError::retriable(err.kind(), message)
        } else {
            HandlerError::permanent(err.kind(), message)
        }
    }
}
