//! PostgreSQL's fast path for `matches` and `player_matches` rows. Rows whose
//! key is not in the table yet (nearly all of them when history is replayed)
//! go straight in with one `COPY … FROM STDIN`, PostgreSQL's bulk insert. The
//! others are merged with the table's merge rule: matches by the multi-row
//! upsert both backends share, player rows through a staging table (one COPY
//! into a temporary table, then one `INSERT … SELECT … ON CONFLICT`). COPY
//! parses a row for less than the column arrays of an
//! `INSERT … SELECT FROM UNNEST(…)` cost to bind and unpack: 40,366 against
//! 35,953 player rows/s on Redis Streams' batches of up to 6,000 rows, the
//! same (32,900) on Kafka's 500 (README, Benchmarks).
//!
//! Which keys are new is read in the write's transaction, under the match
//! locks every writer takes (`Backend::lock_matches`), so no other writer
//! adds one before the COPY. Should one anyway, the COPY runs in a savepoint
//! and its rows are merged instead.

use std::collections::HashSet;
use std::sync::LazyLock;

use sqlx::error::ErrorKind;
use sqlx::{Acquire, PgConnection, Postgres, Transaction};

use super::backend::PlayerRowsWritten;
use super::row_def::CopyRow;
use super::rows::{MatchRow, PlayerMatchRow};
use super::sql::{MATCHES, PLAYER_MATCHES};

/// Session-local, created by the first write of each connection; emptied by
/// every commit, so a batch sees only its own rows.
const STAGE: &str = "player_matches_stage";

/// `CREATE … IF NOT EXISTS` would send a NOTICE (logged at info) every batch.
static CREATE_STAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DO $$ BEGIN IF to_regclass('pg_temp.{STAGE}') IS NULL THEN \
         CREATE TEMPORARY TABLE {STAGE} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; \
         END IF; END $$",
        PLAYER_MATCHES.table
    )
});

/// Through the primary key: a match has at most ten rows.
const EXISTING_PLAYER_KEYS: &str =
    "SELECT match_id, player_slot FROM player_matches WHERE match_id = ANY($1)";

const EXISTING_MATCHES: &str = "SELECT match_id FROM matches WHERE match_id = ANY($1)";

static COPY_INTO_STAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "COPY {STAGE} ({}) FROM STDIN WITH (FORMAT text)",
        PlayerMatchRow::COLUMNS.join(", ")
    )
});

/// Empties the stage as it merges: a batch with several versions of a row
/// writes them in rounds, all in one transaction. In key order, as every
/// writer takes row locks: two never deadlock.
static MERGE_STAGE: LazyLock<String> = LazyLock::new(|| {
    let columns = PlayerMatchRow::COLUMNS.join(", ");
    format!(
        "WITH staged AS (DELETE FROM {STAGE} RETURNING {columns}) \
         {}SELECT {columns} FROM staged ORDER BY match_id, player_slot{}",
        PLAYER_MATCHES.insert_prefix(),
        PLAYER_MATCHES.on_conflict
    )
});

/// Upserts `rows` (each key once, sorted by key) with the merge rule of
/// [`PLAYER_MATCHES`].
pub(crate) async fn upsert_player_matches(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[PlayerMatchRow],
) -> Result<PlayerRowsWritten, sqlx::Error> {
    if rows.is_empty() {
        return Ok(PlayerRowsWritten::Merged);
    }
    let existing = existing_player_keys(tx, rows).await?;
    let (new, mut known): (Vec<&PlayerMatchRow>, Vec<&PlayerMatchRow>) = rows
        .iter()
        .partition(|row| !existing.contains(&(row.match_id, row.player_slot)));
    let copied = copy_new_rows(tx, PLAYER_MATCHES.table, &new).await?;
    if !copied {
        known.extend(new);
        known.sort_by_key(|row| (row.match_id, row.player_slot));
    }
    merge_through_stage(tx, &known).await?;
    // `existing` holds every row of these matches, whatever its slot.
    Ok(if copied && existing.is_empty() {
        PlayerRowsWritten::OnlyThese
    } else {
        PlayerRowsWritten::Merged
    })
}

/// COPYs the rows of matches not in the table yet (`rows` each key once,
/// sorted by key); returns the others, for the caller to upsert with the
/// merge rule of [`MATCHES`].
pub(crate) async fn copy_new_matches<'r>(
    tx: &mut Transaction<'static, Postgres>,
    rows: &'r [MatchRow],
) -> Result<Vec<&'r MatchRow>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|row| row.match_id).collect();
    let existing: HashSet<i64> = sqlx::query_scalar(EXISTING_MATCHES)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    let (new, mut known): (Vec<&MatchRow>, Vec<&MatchRow>) = rows
        .iter()
        .partition(|row| !existing.contains(&row.match_id));
    if !copy_new_rows(tx, MATCHES.table, &new).await? {
        known.extend(new);
        known.sort_by_key(|row| row.match_id);
    }
    Ok(known)
}

/// The keys of `rows`' matches already in `player_matches`.
async fn existing_player_keys(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[PlayerMatchRow],
) -> Result<HashSet<(i64, i32)>, sqlx::Error> {
    let mut match_ids: Vec<i64> = rows.iter().map(|row| row.match_id).collect();
    match_ids.dedup();
    let keys: Vec<(i64, i32)> = sqlx::query_as(EXISTING_PLAYER_KEYS)
        .bind(match_ids)
        .fetch_all(&mut **tx)
        .await?;
    Ok(keys.into_iter().collect())
}

/// COPYs `rows` into `table` in a savepoint. `false`, with nothing written,
/// when one of their keys turned out to be there already.
async fn copy_new_rows<R: CopyRow>(
    tx: &mut Transaction<'static, Postgres>,
    table: &str,
    rows: &[&R],
) -> Result<bool, sqlx::Error> {
    if rows.is_empty() {
        return Ok(true);
    }
    let statement = format!(
        "COPY {table} ({}) FROM STDIN WITH (FORMAT text)",
        R::COLUMNS.join(", ")
    );
    let mut savepoint = (&mut **tx).begin().await?;
    match copy_lines(&mut savepoint, &statement, rows).await {
        Ok(()) => {
            savepoint.commit().await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(err)) if err.kind() == ErrorKind::UniqueViolation => {
            savepoint.rollback().await?;
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

async fn merge_through_stage(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[&PlayerMatchRow],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(&CREATE_STAGE).execute(&mut **tx).await?;
    copy_lines(tx, &COPY_INTO_STAGE, rows).await?;
    sqlx::query(&MERGE_STAGE).execute(&mut **tx).await?;
    Ok(())
}

async fn copy_lines<R: CopyRow>(
    conn: &mut PgConnection,
    statement: &str,
    rows: &[&R],
) -> Result<(), sqlx::Error> {
    let mut lines = String::with_capacity(rows.len() * 160);
    for row in rows {
        row.push_copy_line(&mut lines);
    }
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(lines.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merge_empties_the_stage_in_key_order_with_the_table_merge_rule() {
        assert!(MERGE_STAGE.starts_with(
            "WITH staged AS (DELETE FROM player_matches_stage RETURNING match_id, player_slot, "
        ));
        assert!(MERGE_STAGE.contains(") INSERT INTO player_matches (match_id, player_slot, "));
        assert!(MERGE_STAGE.contains(" FROM staged ORDER BY match_id, player_slot ON CONFLICT"));
        assert!(MERGE_STAGE.ends_with(&PLAYER_MATCHES.on_conflict));
    }

    /// A key that came in unseen (here: copied earlier in the transaction)
    /// fails the COPY inside its savepoint: nothing of it is written, the
    /// transaction goes on, and the rows can be merged instead.
    /// A fresh database from `#[sqlx::test]`, migrated the way the product does.
    #[sqlx::test(migrations = false)]
    async fn a_key_already_there_fails_only_the_savepoint(pool: sqlx::PgPool) {
        let store = crate::persist::Store::Postgres(pool.clone());
        store.migrate().await.expect("migrated");
        let row = |slot, hero_id| PlayerMatchRow {
            match_id: 7,
            player_slot: slot,
            hero_id,
            ..PlayerMatchRow::default()
        };
        let mut tx = pool.begin().await.expect("begin");
        let first = [row(0, 1), row(1, 2)];
        let table = PLAYER_MATCHES.table;
        let copied = copy_new_rows(&mut tx, table, &[&first[0], &first[1]]).await;
        assert!(copied.expect("copy"));
        let second = [row(2, 3), row(0, 4)];
        let copied = copy_new_rows(&mut tx, table, &[&second[0], &second[1]]).await;
        assert!(!copied.expect("a conflict is not an error"));
        assert_eq!(heroes(&mut tx).await, vec![1, 2]);
        merge_through_stage(&mut tx, &[&second[1], &second[0]])
            .await
            .expect("merge");
        assert_eq!(heroes(&mut tx).await.len(), 3);
        tx.commit().await.expect("commit");
    }

    async fn heroes(tx: &mut Transaction<'static, Postgres>) -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT hero_id FROM player_matches WHERE match_id = 7 ORDER BY player_slot",
        )
        .fetch_all(&mut **tx)
        .await
        .expect("read")
    }
}
