//! A raw `COPY ... FROM STDIN` of `player_matches` rows into a scratch table:
//! the baseline persist's batched writes are benchmarked against.

use consumers::persist::{PersistError, PlayerMatchRow};
use sqlx::PgPool;

/// Shaped like `player_matches` (types, NOT NULL, CHECK, primary key) but
/// without the foreign key to `matches`, so rows load on their own.
pub const COPY_SCRATCH_TABLE: &str = "player_matches_copy";

/// Flush to the server in pieces of about this many bytes.
const SEND_CHUNK_BYTES: usize = 1 << 20;

/// Replaces the contents of [`COPY_SCRATCH_TABLE`] with `rows`, loaded with
/// one `COPY ... FROM STDIN` in one transaction. Returns the rows loaded.
/// No merge, no hero pool: the raw cost of getting rows into PostgreSQL.
pub async fn copy_player_rows_raw(
    pool: &PgPool,
    rows: &[PlayerMatchRow],
) -> Result<u64, PersistError> {
    let error = |operation: &'static str| {
        move |source: sqlx::Error| PersistError::Database { operation, source }
    };
    let mut tx = pool.begin().await.map_err(error("begin"))?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {COPY_SCRATCH_TABLE} \
         (LIKE player_matches INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
    ))
    .execute(&mut *tx)
    .await
    .map_err(error("create copy scratch table"))?;
    sqlx::query(&format!("TRUNCATE {COPY_SCRATCH_TABLE}"))
        .execute(&mut *tx)
        .await
        .map_err(error("truncate copy scratch table"))?;
    let statement = format!(
        "COPY {COPY_SCRATCH_TABLE} ({}) FROM STDIN WITH (FORMAT text)",
        PlayerMatchRow::COLUMNS.join(", ")
    );
    let mut copy = tx.copy_in_raw(&statement).await.map_err(error("copy in"))?;
    let mut buffer = String::with_capacity(SEND_CHUNK_BYTES + 1024);
    for row in rows {
        row.push_copy_line(&mut buffer);
        if buffer.len() >= SEND_CHUNK_BYTES {
            copy.send(buffer.as_bytes())
                .await
                .map_err(error("copy in"))?;
            buffer.clear();
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.as_bytes())
            .await
            .map_err(error("copy in"))?;
    }
    let loaded = copy.finish().await.map_err(error("copy in"))?;
    tx.commit().await.map_err(error("commit"))?;
    Ok(loaded)
}
