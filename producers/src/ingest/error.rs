//! Why a record, a file or a directory could not be ingested.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// An ingest failure. Every message is self-contained (it includes the cause), so
/// a skip report or a log line needs nothing but `to_string()`.
#[derive(Debug, Error)]
pub enum IngestError {
    /// Reading a file or directory failed; the only kind worth retrying.
    #[error("cannot read {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },

    /// The bytes are not JSON. serde's message gives the line and column.
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),

    /// A field is missing, or has the wrong type or an impossible value.
    #[error("field `{field}`: {problem}")]
    Field { field: String, problem: String },

    /// Valid JSON that is not a match or player record this module knows.
    #[error("unrecognised record: {0}")]
    Unrecognised(String),

    /// One of the errors above, with the file and line where it happened.
    #[error("{location}: {error}")]
    At {
        location: Location,
        error: Box<IngestError>,
    },
}

/// Where in the input an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based line where the faulty record starts, or for invalid JSON where parsing stopped.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, line {}", self.path.display(), self.line)
    }
}

impl IngestError {
    /// Only IO errors may go away on retry; bad data stays bad.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Io { .. } => true,
            Self::At { error, .. } => error.is_retriable(),
            Self::Json(_) | Self::Field { .. } | Self::Unrecognised(_) => false,
        }
    }

    /// The file at fault, when known.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Io { path, .. } => Some(path),
            Self::At { location, .. } => Some(&location.path),
            _ => None,
        }
    }

    /// The 1-based line at fault, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::At { location, .. } => Some(location.line),
            _ => None,
        }
    }

    /// The error without its location.
    pub fn cause(&self) -> &IngestError {
        match self {
            Self::At { error, .. } => error.cause(),
            other => other,
        }
    }

    pub(crate) fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn at(self, path: &Path, line: usize) -> Self {
        Self::At {
            location: Location {
                path: path.to_path_buf(),
                line,
            },
            error: Box::new(self),
        }
    }
}
