//! Why persisting failed, and whether trying again can help.

use pipeline::runner::HandlerError;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::MigrateError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The URL names no backend this crate speaks. Only the scheme is kept:
    /// URLs may carry passwords.
    #[error("unsupported database url scheme `{0}`: expected postgres:// or sqlite:")]
    UnsupportedUrl(String),
    /// The event can never be stored as it is (e.g. two players in one slot).
    #[error("invalid event: {0}")]
    Invalid(String),
    #[error("migrating the {backend} schema failed: {source}")]
    Migrate {
        backend: &'static str,
        #[source]
        source: MigrateError,
    },
    #[error("database error during {operation}: {source}")]
    Database {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

impl PersistError {
    pub(crate) fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| PersistError::Database { operation, source }
    }

    /// `DeadLetter::error_kind` of the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            PersistError::UnsupportedUrl(_) => "config",
            PersistError::Invalid(_) => "invalid",
            PersistError::Migrate { .. } => "migrate",
            PersistError::Database { .. } => "database",
        }
    }

    /// A store that is away, busy or deadlocked may succeed later; bad data,
    /// constraint violations and decoding bugs will not.
    pub fn is_retriable(&self) -> bool {
        match self {
            PersistError::UnsupportedUrl(_) | PersistError::Invalid(_) => false,
            PersistError::Migrate { source, .. } => match source {
                MigrateError::Execute(err) => is_retriable_sqlx(err),
                _ => false,
            },
            PersistError::Database { source, .. } => is_retriable_sqlx(source),
        }
    }
}

impl From<PersistError> for HandlerError {
    fn from(err: PersistError) -> Self {
        let message = err.to_string();
        if err.is_retriable() {
            HandlerError::retriable(err.kind(), message)
        } else {
            HandlerError::permanent(err.kind(), message)
        }
    }
}

fn is_retriable_sqlx(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => !is_bad_data(db.as_ref()),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Configuration, encode/decode and column errors are bugs: retrying repeats them.
        _ => false,
    }
}

/// SQLite primary result codes that reject the data: a constraint (STRICT
/// type checks included), a value too big, a type mismatch.
const SQLITE_BAD_DATA_CODES: [i32; 3] = [18, 19, 20];

/// Constraint violations, PostgreSQL's data exceptions (class 22: out of
/// range, invalid text) and SQLite's equivalents reject the data itself.
fn is_bad_data(db: &dyn DatabaseError) -> bool {
    let constraint = matches!(
        db.kind(),
        ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation
    );
    let pg_data_exception = db
        .try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|pg| pg.code().starts_with("22"));
    let sqlite_bad_data = db.try_downcast_ref::<SqliteError>().is_some_and(|_| {
        db.code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| SQLITE_BAD_DATA_CODES.contains(&(code & 0xff)))
    });
    constraint || pg_data_exception || sqlite_bad_data
}
