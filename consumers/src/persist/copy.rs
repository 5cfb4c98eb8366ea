//! A raw `COPY ... FROM STDIN` of `player_matches` rows into a scratch table:
//! the baseline the batched upserts are benchmarked against.

use sqlx::PgPool;

use super::rows::PlayerMatchRow;
use super::PersistError;

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
    let error = PersistError::database;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_escape_text_and_mark_nulls() {
        let row = PlayerMatchRow {
            match_id: 1,
            player_slot: 128,
            account_id: None,
            hero_id: 2,
            kills: 3,
            deaths: 4,
            assists: 5,
            last_hits: 6,
            denies: 7,
            gold_per_min: 8,
            xp_per_min: 9,
            level: 10,
            hero_damage: Some(11),
            tower_damage: None,
            hero_healing: None,
            gold: None,
            gold_spent: None,
            net_worth: Some(12),
            leaver_status: None,
            items: Some(vec![1, 0, 3]),
            backpack: None,
            persona_name: Some("a\tb\\c\nd".to_string()),
            is_radiant: false,
            won: true,
            start_time: 13,
            source_rank: 3,
        };
        let mut out = String::new();
        row.push_copy_line(&mut out);
        assert_eq!(
            out,
            "1\t128\t\\N\t2\t3\t4\t5\t6\t7\t8\t9\t10\t11\t\\N\t\\N\t\\N\t\\N\t12\t\\N\t[1,0,3]\t\\N\ta\\tb\\\\c\\nd\tf\tt\t13\t3\n"
        );
        assert_eq!(
            out.trim_end().split('\t').count(),
            PlayerMatchRow::COLUMNS.len()
        );
    }
}
