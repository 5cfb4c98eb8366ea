//! A raw `COPY ... FROM STDIN` of `player_matches` rows: the baseline
//! persist's batched writes are benchmarked against. Into an empty scratch
//! table, and into `player_matches` itself as it stands (its history, its
//! indexes), rolled back: the same work persist's rows cost the database.

use consumers::persist::{PersistError, PlayerMatchRow};
use std::borrow::Borrow;
use std::time::{Duration, Instant};

use sqlx::{PgPool, Postgres, Transaction};

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
    let mut tx = pool.begin().await.map_err(error("begin"))?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {COPY_SCRATCH_TABLE} \
         (LIKE player_matches INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
    ))
    .execute(&mut *tx)
    .await
    .map_err(error("create copy scratch table"))?;
    // Emptied by every run: a vacuum of it would only slow the next measurement.
    sqlx::query(&format!(
        "ALTER TABLE {COPY_SCRATCH_TABLE} SET (autovacuum_enabled = false)"
    ))
    .execute(&mut *tx)
    .await
    .map_err(error("turn autovacuum off for the copy scratch table"))?;
    sqlx::query(&format!("TRUNCATE {COPY_SCRATCH_TABLE}"))
        .execute(&mut *tx)
        .await
        .map_err(error("truncate copy scratch table"))?;
    let loaded = copy_in(&mut tx, COPY_SCRATCH_TABLE, rows.iter()).await?;
    tx.commit().await.map_err(error("commit"))?;
    Ok(loaded)
}

/// Loads `rows` into `player_matches` with one `COPY ... FROM STDIN` and rolls
/// it back; returns the rows loaded and how long the load took. Their match ids
/// move up past the highest of them, so they cannot meet the rows persist
/// wrote, and land at the primary key's right edge as a replay's new matches do.
/// A `VACUUM` then removes what the rollback left (dead rows and index
/// entries, which made each later load slower than the one before: 138,585 to
/// 95,193 rows/s over five runs), outside the time returned.
pub async fn copy_player_rows_in_place(
    pool: &PgPool,
    rows: &[PlayerMatchRow],
) -> Result<(u64, Duration), PersistError> {
    let (Some(low), Some(high)) = (
        rows.iter().map(|r| r.match_id).min(),
        rows.iter().map(|r| r.match_id).max(),
    ) else {
        return Ok((0, Duration::ZERO));
    };
    let shift = high - low + 1;
    let shifted = rows.iter().map(|row| PlayerMatchRow {
        match_id: row.match_id + shift,
        ..row.clone()
    });
    let started = Instant::now();
    let mut tx = pool.begin().await.map_err(error("begin"))?;
    let loaded = copy_in(&mut tx, "player_matches", shifted).await?;
    tx.rollback().await.map_err(error("rollback"))?;
    let took = started.elapsed();
    sqlx::query("VACUUM player_matches")
        .execute(pool)
        .await
        .map_err(error("vacuum after the rolled-back load"))?;
    Ok((loaded, took))
}

fn error(operation: &'static str) -> impl Fn(sqlx::Error) -> PersistError {
    move |source| PersistError::Database { operation, source }
}

async fn copy_in<R: Borrow<PlayerMatchRow>>(
    tx: &mut Transaction<'static, Postgres>,
    table: &str,
    rows: impl Iterator<Item = R>,
) -> Result<u64, PersistError> {
    let statement = format!(
        "COPY {table} ({}) FROM STDIN WITH (FORMAT text)",
        PlayerMatchRow::COLUMNS.join(", ")
    );
    let mut copy = tx.copy_in_raw(&statement).await.map_err(error("copy in"))?;
    let mut buffer = String::with_capacity(SEND_CHUNK_BYTES + 1024);
    for row in rows {
        row.borrow().push_copy_line(&mut buffer);
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
    copy.finish().await.map_err(error("copy in"))
}
