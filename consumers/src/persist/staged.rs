//! PostgreSQL's upsert of `player_matches` rows through a staging table: the
//! rows go in with one `COPY … FROM STDIN` into a temporary table, then one
//! `INSERT … SELECT … ON CONFLICT` merges them. COPY parses a row for less
//! than the column arrays of an `INSERT … SELECT FROM UNNEST(…)` cost to bind
//! and unpack: 40,366 against 35,953 player rows/s on Redis Streams' batches
//! of up to 6,000 rows, the same (32,900) on Kafka's 500 (README, Benchmarks).

use std::sync::LazyLock;

use sqlx::{Postgres, Transaction};

use super::rows::PlayerMatchRow;
use super::sql::PLAYER_MATCHES;

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

/// Upserts `rows` (each key once) with the merge rule of [`PLAYER_MATCHES`].
pub(crate) async fn upsert_player_matches(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[PlayerMatchRow],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut lines = String::with_capacity(rows.len() * 160);
    for row in rows {
        row.push_copy_line(&mut lines);
    }
    sqlx::query(&CREATE_STAGE).execute(&mut **tx).await?;
    let mut copy = tx.copy_in_raw(&COPY_INTO_STAGE).await?;
    copy.send(lines.as_bytes()).await?;
    copy.finish().await?;
    sqlx::query(&MERGE_STAGE).execute(&mut **tx).await?;
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
}
