//! PostgreSQL's set-based upserts of the two tables that get a row per player
//! (`player_matches`, the hero-pool deltas): one statement whose parameters are
//! column arrays, `INSERT … SELECT FROM UNNEST(…) ON CONFLICT`. Its text never
//! changes, so it is parsed and planned once per connection; multi-row
//! `VALUES` carry a bind per cell and a new text per row count.

use std::sync::LazyLock;

use sqlx::types::Json;
use sqlx::{Postgres, Transaction};

use super::hero_pool::PoolDelta;
use super::rows::PlayerMatchRow;
use super::sql::{Upsert, HERO_POOL_DELTAS, PLAYER_MATCHES, PLAYER_MATCH_COLUMNS};

/// Each column's array type, in [`PLAYER_MATCH_COLUMNS`] order.
const ARRAY_TYPES: [&str; 26] = [
    "bigint[]",   // match_id
    "integer[]",  // player_slot
    "bigint[]",   // account_id
    "integer[]",  // hero_id
    "integer[]",  // kills
    "integer[]",  // deaths
    "integer[]",  // assists
    "integer[]",  // last_hits
    "integer[]",  // denies
    "integer[]",  // gold_per_min
    "integer[]",  // xp_per_min
    "integer[]",  // level
    "bigint[]",   // hero_damage
    "bigint[]",   // tower_damage
    "bigint[]",   // hero_healing
    "bigint[]",   // gold
    "bigint[]",   // gold_spent
    "bigint[]",   // net_worth
    "integer[]",  // leaver_status
    "jsonb[]",    // items
    "jsonb[]",    // backpack
    "text[]",     // persona_name
    "boolean[]",  // is_radiant
    "boolean[]",  // won
    "bigint[]",   // start_time
    "smallint[]", // source_rank
];

/// `upsert` with its rows read from one array per column.
fn unnest_statement(upsert: &Upsert, array_types: &[&str]) -> String {
    let arrays: Vec<String> = array_types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}", i + 1))
        .collect();
    format!(
        "{}SELECT * FROM UNNEST({}){}",
        upsert.insert_prefix(),
        arrays.join(", "),
        upsert.on_conflict
    )
}

static STATEMENT: LazyLock<String> =
    LazyLock::new(|| unnest_statement(&PLAYER_MATCHES, &ARRAY_TYPES));

static POOL_DELTAS: LazyLock<String> = LazyLock::new(|| {
    unnest_statement(
        &HERO_POOL_DELTAS,
        &["bigint[]", "integer[]", "bigint[]", "bigint[]", "bigint[]"],
    )
});

/// Adds `deltas` (sorted by key) to the hero pools.
pub(crate) async fn upsert_pool_deltas(
    tx: &mut Transaction<'static, Postgres>,
    deltas: &[PoolDelta],
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&PoolDelta) -> i64| deltas.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(&POOL_DELTAS)
        .bind(column(|d| d.account_id))
        .bind(deltas.iter().map(|d| d.hero_id).collect::<Vec<i32>>())
        .bind(column(|d| d.games))
        .bind(column(|d| d.wins))
        .bind(column(|d| d.last_played))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Upserts `rows` (each key once, sorted) with the merge rule of
/// [`PLAYER_MATCHES`].
pub(crate) async fn upsert_player_matches(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[PlayerMatchRow],
) -> Result<(), sqlx::Error> {
    debug_assert_eq!(ARRAY_TYPES.len(), PLAYER_MATCH_COLUMNS.len());
    let column = |f: fn(&PlayerMatchRow) -> i32| rows.iter().map(f).collect::<Vec<i32>>();
    let long =
        |f: fn(&PlayerMatchRow) -> Option<i64>| rows.iter().map(f).collect::<Vec<Option<i64>>>();
    let slots = |f: fn(&PlayerMatchRow) -> &Option<Vec<i32>>| {
        rows.iter()
            .map(|r| f(r).clone().map(Json))
            .collect::<Vec<Option<Json<Vec<i32>>>>>()
    };
    sqlx::query(&STATEMENT)
        .bind(rows.iter().map(|r| r.match_id).collect::<Vec<i64>>())
        .bind(column(|r| r.player_slot))
        .bind(long(|r| r.account_id))
        .bind(column(|r| r.hero_id))
        .bind(column(|r| r.kills))
        .bind(column(|r| r.deaths))
        .bind(column(|r| r.assists))
        .bind(column(|r| r.last_hits))
        .bind(column(|r| r.denies))
        .bind(column(|r| r.gold_per_min))
        .bind(column(|r| r.xp_per_min))
        .bind(column(|r| r.level))
        .bind(long(|r| r.hero_damage))
        .bind(long(|r| r.tower_damage))
        .bind(long(|r| r.hero_healing))
        .bind(long(|r| r.gold))
        .bind(long(|r| r.gold_spent))
        .bind(long(|r| r.net_worth))
        .bind(
            rows.iter()
                .map(|r| r.leaver_status)
                .collect::<Vec<Option<i32>>>(),
        )
        .bind(slots(|r| &r.items))
        .bind(slots(|r| &r.backpack))
        .bind(
            rows.iter()
                .map(|r| r.persona_name.clone())
                .collect::<Vec<Option<String>>>(),
        )
        .bind(rows.iter().map(|r| r.is_radiant).collect::<Vec<bool>>())
        .bind(rows.iter().map(|r| r.won).collect::<Vec<bool>>())
        .bind(rows.iter().map(|r| r.start_time).collect::<Vec<i64>>())
        .bind(rows.iter().map(|r| r.source_rank).collect::<Vec<i16>>())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_array_per_column_in_column_order() {
        assert_eq!(ARRAY_TYPES.len(), PLAYER_MATCH_COLUMNS.len());
        assert!(STATEMENT.contains("UNNEST($1::bigint[], $2::integer[]"));
        assert!(STATEMENT.ends_with(&PLAYER_MATCHES.on_conflict));
    }
}
