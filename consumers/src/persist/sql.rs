//! SQL text shared by both backends: the upsert of each table with its merge
//! rule, the hero-pool deltas, and the full recount the repair job runs.

use std::sync::LazyLock;

use super::rows::{MatchRow, PlayerMatchRow};

/// A multi-row upsert: `INSERT INTO table (columns) VALUES ... ON CONFLICT`.
pub(crate) struct Upsert {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    /// From `ON CONFLICT` to the end of the statement.
    pub on_conflict: String,
}

impl Upsert {
    pub fn insert_prefix(&self) -> String {
        format!("INSERT INTO {} ({}) ", self.table, self.columns.join(", "))
    }
}

/// `column = merged value` for each column. When `incoming_wins`, the incoming
/// value unless it is NULL; otherwise the stored one unless it is NULL. So a
/// known value is never replaced by NULL, and the loser only fills gaps.
fn merge_assignments(table: &str, columns: &[&str], incoming_wins: &str) -> Vec<String> {
    columns
        .iter()
        .map(|c| {
            format!(
                "{c} = CASE WHEN {incoming_wins} \
                 THEN COALESCE(excluded.{c}, {table}.{c}) \
                 ELSE COALESCE({table}.{c}, excluded.{c}) END"
            )
        })
        .collect()
}

/// `column = the larger of stored and incoming`, written without GREATEST,
/// which SQLite lacks.
fn max_assignment(table: &str, column: &str) -> String {
    format!(
        "{column} = CASE WHEN excluded.{column} > {table}.{column} \
         THEN excluded.{column} ELSE {table}.{column} END"
    )
}

fn on_conflict(key: &[&str], assignments: Vec<String>) -> String {
    format!(
        " ON CONFLICT ({}) DO UPDATE SET {}",
        key.join(", "),
        assignments.join(", ")
    )
}

/// The columns of `all` that are not in `skip`.
fn without(all: &[&'static str], skip: &[&str]) -> Vec<&'static str> {
    all.iter().copied().filter(|c| !skip.contains(c)).collect()
}

/// Merge of one match from several sources: the higher `source_rank` wins a
/// conflict, equal ranks let the later delivery win.
fn ranked_upsert(table: &'static str, columns: &'static [&'static str], key: &[&str]) -> Upsert {
    let incoming_wins = format!("excluded.source_rank >= {table}.source_rank");
    let merged = without(columns, &[key, &["source_rank"][..]].concat());
    let mut assignments = merge_assignments(table, &merged, &incoming_wins);
    assignments.push(max_assignment(table, "source_rank"));
    Upsert {
        table,
        columns,
        on_conflict: on_conflict(key, assignments),
    }
}

pub(crate) static MATCHES: LazyLock<Upsert> = LazyLock::new(|| {
    let mut upsert = ranked_upsert("matches", MatchRow::COLUMNS, &["match_id"]);
    upsert
        .on_conflict
        .push_str(", updated_at = CURRENT_TIMESTAMP");
    upsert
});

pub(crate) static PLAYER_MATCHES: LazyLock<Upsert> = LazyLock::new(|| {
    ranked_upsert(
        "player_matches",
        PlayerMatchRow::COLUMNS,
        &["match_id", "player_slot"],
    )
});

pub(crate) static PICKS_BANS: LazyLock<Upsert> = LazyLock::new(|| {
    ranked_upsert(
        "picks_bans",
        &[
            "match_id",
            "ord",
            "is_pick",
            "hero_id",
            "team",
            "source_rank",
        ],
        &["match_id", "ord"],
    )
});

/// A team's name as of its newest match; an older match only fills a gap.
pub(crate) static TEAMS: LazyLock<Upsert> = LazyLock::new(|| {
    let mut assignments = merge_assignments(
        "teams",
        &["name"],
        "excluded.last_match_time >= teams.last_match_time",
    );
    assignments.push(max_assignment("teams", "last_match_time"));
    assignments.push("updated_at = CURRENT_TIMESTAMP".to_string());
    Upsert {
        table: "teams",
        columns: &["team_id", "name", "last_match_time"],
        on_conflict: on_conflict(&["team_id"], assignments),
    }
});

/// A newer (or equally new) profile overwrites the fields it carries; an
/// older one only fills fields still NULL.
pub(crate) static PLAYERS: LazyLock<Upsert> = LazyLock::new(|| {
    const COLUMNS: &[&str] = &[
        "account_id",
        "persona_name",
        "rank_tier",
        "leaderboard_rank",
        "country",
        "last_seen",
        "avatar_url",
        "profile_url",
        "observed_at_ms",
    ];
    let merged = without(COLUMNS, &["account_id", "observed_at_ms"]);
    let mut assignments = merge_assignments(
        "players",
        &merged,
        "excluded.observed_at_ms >= players.observed_at_ms",
    );
    assignments.push(max_assignment("players", "observed_at_ms"));
    assignments.push("updated_at = CURRENT_TIMESTAMP".to_string());
    Upsert {
        table: "players",
        columns: COLUMNS,
        on_conflict: on_conflict(&["account_id"], assignments),
    }
});

/// Head of the hero-pool recompute; the caller pushes the account filter and
/// [`HERO_POOL_RECOMPUTE_TAIL`].
pub(crate) const HERO_POOL_RECOMPUTE_HEAD: &str = "\
    INSERT INTO hero_pool (account_id, hero_id, games, wins, last_played) \
    SELECT account_id, hero_id, COUNT(*), SUM(CASE WHEN won THEN 1 ELSE 0 END), MAX(start_time) \
    FROM player_matches WHERE ";

pub(crate) const HERO_POOL_RECOMPUTE_TAIL: &str = " \
    GROUP BY account_id, hero_id \
    ON CONFLICT (account_id, hero_id) DO UPDATE SET \
    games = excluded.games, wins = excluded.wins, last_played = excluded.last_played";

/// Head of the delete of hero-pool rows no player match backs any more (a
/// slot's hero or account corrected by a better source); the caller pushes the
/// account filter.
pub(crate) const HERO_POOL_STALE_HEAD: &str = "\
    DELETE FROM hero_pool WHERE NOT EXISTS (\
    SELECT 1 FROM player_matches pm \
    WHERE pm.account_id = hero_pool.account_id AND pm.hero_id = hero_pool.hero_id) AND ";

/// Hero-pool deltas: games and wins add up, `last_played` only grows here
/// (a slot that left is handled by [`HERO_POOL_LAST_PLAYED_HEAD`]).
pub(crate) static HERO_POOL_DELTAS: LazyLock<Upsert> = LazyLock::new(|| Upsert {
    table: "hero_pool",
    columns: &["account_id", "hero_id", "games", "wins", "last_played"],
    on_conflict: format!(
        " ON CONFLICT (account_id, hero_id) DO UPDATE SET \
         games = hero_pool.games + excluded.games, \
         wins = hero_pool.wins + excluded.wins, {}",
        max_assignment("hero_pool", "last_played")
    ),
});

/// Head of the read of the slots a hero pool counts, of some matches; the
/// caller pushes the match filter.
pub(crate) const COUNTED_SLOTS_HEAD: &str = "\
    SELECT match_id, player_slot, account_id, hero_id, won, start_time \
    FROM player_matches WHERE account_id IS NOT NULL AND ";

/// Head of the delete of pool rows whose last game left; the caller pushes
/// the account filter.
pub(crate) const HERO_POOL_EMPTIED_HEAD: &str = "DELETE FROM hero_pool WHERE games <= 0 AND ";

/// Head of the recount of `last_played` where a slot left; the caller pushes
/// the account filter.
pub(crate) const HERO_POOL_LAST_PLAYED_HEAD: &str = "\
    UPDATE hero_pool SET last_played = COALESCE((\
    SELECT MAX(pm.start_time) FROM player_matches pm \
    WHERE pm.account_id = hero_pool.account_id AND pm.hero_id = hero_pool.hero_id), \
    last_played) WHERE ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ranks_are_not_merged_as_values() {
        let sql = &PLAYER_MATCHES.on_conflict;
        assert!(sql.starts_with(" ON CONFLICT (match_id, player_slot) DO UPDATE SET "));
        assert!(!sql.contains("player_slot = "), "{sql}");
        assert!(sql.contains("account_id = CASE WHEN excluded.source_rank >= player_matches.source_rank THEN COALESCE(excluded.account_id, player_matches.account_id) ELSE COALESCE(player_matches.account_id, excluded.account_id) END"), "{sql}");
        assert!(
            sql.contains(
                "source_rank = CASE WHEN excluded.source_rank > player_matches.source_rank"
            ),
            "{sql}"
        );
    }

    #[test]
    fn players_merge_by_observation_time() {
        let sql = &PLAYERS.on_conflict;
        assert!(
            sql.contains("rank_tier = CASE WHEN excluded.observed_at_ms >= players.observed_at_ms")
        );
        assert!(sql.contains(
            "observed_at_ms = CASE WHEN excluded.observed_at_ms > players.observed_at_ms"
        ));
        assert!(!sql.contains("account_id ="));
    }
}
