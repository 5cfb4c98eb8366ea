//! Events flattened into table rows, checked, and split into rounds a
//! multi-row upsert can take.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use schemas::{MatchCompleted, PlayerPerformance, PlayerProfile, ANONYMOUS_ACCOUNT_ID};

use super::row_def::table_row;
use super::PersistError;

table_row! {
    /// A `matches` row.
    pub struct MatchRow {
        match_id: i64,
        match_seq_num: Option<i64>,
        start_time: i64,
        duration_secs: i32,
        radiant_win: bool,
        game_mode: i32,
        lobby_type: i32,
        league_id: Option<i64>,
        cluster: i32,
        radiant_team_id: Option<i64>,
        radiant_team_name: Option<String>,
        dire_team_id: Option<i64>,
        dire_team_name: Option<String>,
        radiant_score: Option<i32>,
        dire_score: Option<i32>,
        source: String,
        source_rank: i16,
    }
}

/// Defines [`PlayerMatchRow`] and [`player_row`] from the player record's
/// plain numbers (`schemas::with_player_numbers!`, generated from the `.avsc`):
/// each is a column stored as it is, so a new stat in the schema is a new
/// column here without an edit.
macro_rules! player_match_row {
    (numbers: [$($number:ident: $ty:ty),*]) => {
        table_row! {
            /// A `player_matches` row: one player of one match. The one
            /// definition of its columns (see [`super::row_def`]).
            pub struct PlayerMatchRow {
                match_id: i64,
                player_slot: i32,
                /// `None` for anonymous players.
                account_id: Option<i64>,
                $($number: $ty,)*
                /// `None` when the source sent no inventory.
                items: Option<Vec<i32>>,
                backpack: Option<Vec<i32>>,
                persona_name: Option<String>,
                is_radiant: bool,
                won: bool,
                start_time: i64,
                source_rank: i16,
            }
        }

        pub(crate) fn player_row(m: &MatchCompleted, p: &PlayerPerformance) -> PlayerMatchRow {
            let non_empty = |slots: &Vec<i32>| (!slots.is_empty()).then(|| slots.clone());
            PlayerMatchRow {
                match_id: m.match_id,
                player_slot: p.player_slot,
                account_id: known_account(p.account_id),
                $($number: p.$number,)*
                items: non_empty(&p.items),
                backpack: non_empty(&p.backpack),
                persona_name: p.persona_name.clone(),
                is_radiant: p.is_radiant(),
                won: p.is_radiant() == m.radiant_win,
                start_time: m.start_time,
                source_rank: source_rank(&m.source),
            }
        }
    };
}

schemas::with_player_numbers!(player_match_row);

/// A `picks_bans` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PickBanRow {
    pub match_id: i64,
    pub ord: i32,
    pub is_pick: bool,
    pub hero_id: i32,
    pub team: i32,
    pub source_rank: i16,
}

/// A `teams` row, as one match shows the team.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TeamRow {
    pub team_id: i64,
    pub name: Option<String>,
    pub last_match_time: i64,
}

/// A `players` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProfileRow {
    pub account_id: i64,
    pub persona_name: Option<String>,
    pub rank_tier: Option<i32>,
    pub leaderboard_rank: Option<i32>,
    pub country: Option<String>,
    pub last_seen: Option<i64>,
    pub avatar_url: Option<String>,
    pub profile_url: Option<String>,
    pub observed_at_ms: i64,
}

/// How much a source is trusted when two sources of one match disagree.
/// The game coordinator knows account ids and net worth the Steam API hides;
/// unknown sources (`loadgen`, anything new) rank lowest.
pub fn source_rank(source: &str) -> i16 {
    match source {
        "game_coordinator" => 3,
        // OpenDota's match answer is Steam's match details, relayed.
        "steam_api" | "opendota" => 2,
        "json" => 1,
        _ => 0,
    }
}

/// Steam's anonymous marker may still arrive from JSON publishers.
fn known_account(account_id: Option<i64>) -> Option<i64> {
    account_id.filter(|id| *id != ANONYMOUS_ACCOUNT_ID)
}

/// Rejects what the tables cannot hold, before it can fail a whole batch.
pub(crate) fn validate_match(m: &MatchCompleted) -> Result<(), PersistError> {
    let invalid = |what: String| {
        Err(PersistError::Invalid(format!(
            "match {}: {what}",
            m.match_id
        )))
    };
    if let Some(slot) = first_duplicate(m.players.iter().map(|p| p.player_slot)) {
        return invalid(format!("player slot {slot} appears twice"));
    }
    if let Some(order) = first_duplicate(m.picks_bans.iter().map(|p| p.order)) {
        return invalid(format!("pick/ban order {order} appears twice"));
    }
    // PostgreSQL text cannot hold NUL: caught here, it fails one event, not
    // its whole batch (which would then be written event by event).
    let names = m.players.iter().map(|p| p.persona_name.as_deref());
    let teams = [&m.radiant_team, &m.dire_team].into_iter().flatten();
    if names
        .chain(teams.map(|t| t.name.as_deref()))
        .flatten()
        .chain([m.source.as_str()])
        .any(|text| text.contains('\0'))
    {
        return invalid("a name holds a NUL character".to_string());
    }
    Ok(())
}

pub(crate) fn validate_profile(p: &PlayerProfile) -> Result<(), PersistError> {
    let invalid = |what: &str| {
        Err(PersistError::Invalid(format!(
            "profile of account {}: {what}",
            p.account_id
        )))
    };
    if !(0..ANONYMOUS_ACCOUNT_ID).contains(&p.account_id) {
        return invalid("not an individual account");
    }
    let texts = [&p.persona_name, &p.country, &p.avatar_url, &p.profile_url];
    if texts.into_iter().flatten().any(|text| text.contains('\0')) {
        return invalid("a text field holds a NUL character");
    }
    Ok(())
}

fn first_duplicate<T: Eq + Hash + Copy>(mut values: impl Iterator<Item = T>) -> Option<T> {
    let mut seen = HashSet::new();
    values.find(|v| !seen.insert(*v))
}

pub(crate) fn match_row(m: &MatchCompleted) -> MatchRow {
    MatchRow {
        match_id: m.match_id,
        match_seq_num: m.match_seq_num,
        start_time: m.start_time,
        duration_secs: m.duration_secs,
        radiant_win: m.radiant_win,
        game_mode: m.game_mode,
        lobby_type: m.lobby_type,
        // 0 says "no league" and also "not known" (the game coordinator sends 0
        // for league matches): NULL lets a known league survive the merge.
        league_id: (m.league_id != 0).then_some(m.league_id),
        cluster: m.cluster,
        radiant_team_id: m.radiant_team.as_ref().map(|t| t.team_id),
        radiant_team_name: m.radiant_team.as_ref().and_then(|t| t.name.clone()),
        dire_team_id: m.dire_team.as_ref().map(|t| t.team_id),
        dire_team_name: m.dire_team.as_ref().and_then(|t| t.name.clone()),
        radiant_score: m.radiant_score,
        dire_score: m.dire_score,
        source: m.source.clone(),
        source_rank: source_rank(&m.source),
    }
}

/// The `player_matches` rows of `matches`, in event order.
pub fn player_rows(matches: &[MatchCompleted]) -> Vec<PlayerMatchRow> {
    matches
        .iter()
        .flat_map(|m| m.players.iter().map(move |p| player_row(m, p)))
        .collect()
}

fn pick_ban_rows(m: &MatchCompleted) -> impl Iterator<Item = PickBanRow> + '_ {
    m.picks_bans.iter().map(|pb| PickBanRow {
        match_id: m.match_id,
        ord: pb.order,
        is_pick: pb.is_pick,
        hero_id: pb.hero_id,
        team: pb.team,
        source_rank: source_rank(&m.source),
    })
}

fn team_rows(m: &MatchCompleted) -> impl Iterator<Item = TeamRow> + '_ {
    [&m.radiant_team, &m.dire_team]
        .into_iter()
        .flatten()
        .map(|team| TeamRow {
            team_id: team.team_id,
            name: team.name.clone(),
            last_match_time: m.start_time,
        })
}

pub(crate) fn profile_row(p: &PlayerProfile) -> ProfileRow {
    ProfileRow {
        account_id: p.account_id,
        persona_name: p.persona_name.clone(),
        rank_tier: p.rank_tier,
        leaderboard_rank: p.leaderboard_rank,
        country: p.country.clone(),
        last_seen: p.last_seen,
        avatar_url: p.avatar_url.clone(),
        profile_url: p.profile_url.clone(),
        observed_at_ms: p.observed_at_ms,
    }
}

/// One match and everything stored with it.
#[derive(Debug, Default)]
pub(crate) struct MatchRound {
    pub matches: Vec<MatchRow>,
    pub players: Vec<PlayerMatchRow>,
    pub picks_bans: Vec<PickBanRow>,
}

/// A batch of events as rows, ready for one transaction.
///
/// A multi-row `INSERT ... ON CONFLICT DO UPDATE` may not touch one key twice,
/// so rows with a repeated key go to later *rounds*: round k holds the k-th
/// occurrence of each key, and rounds run in order, so the SQL merge sees the
/// versions of one key in delivery order, exactly as if they came one by one.
#[derive(Debug, Default)]
pub(crate) struct BatchRows {
    pub match_rounds: Vec<MatchRound>,
    pub team_rounds: Vec<Vec<TeamRow>>,
    pub profile_rounds: Vec<Vec<ProfileRow>>,
    /// Every match written, sorted: whose counted slots the hero pool moves by.
    pub match_ids: Vec<i64>,
}

impl BatchRows {
    pub fn new<'a>(
        matches: impl IntoIterator<Item = &'a MatchCompleted>,
        profiles: impl IntoIterator<Item = &'a PlayerProfile>,
    ) -> Self {
        let matches: Vec<&MatchCompleted> = matches.into_iter().collect();
        let match_rounds = rounds(matches.iter().copied(), |m| m.match_id)
            .into_iter()
            .map(|round| match_round(&round))
            .collect();
        let teams = matches.iter().flat_map(|m| team_rows(m));
        let profiles = profiles.into_iter().map(profile_row);
        let mut match_ids: Vec<i64> = matches.iter().map(|m| m.match_id).collect();
        match_ids.sort_unstable();
        match_ids.dedup();
        Self {
            match_rounds,
            team_rounds: rounds(teams, |t| t.team_id),
            profile_rounds: rounds(profiles, |p| p.account_id),
            match_ids,
        }
    }

    pub fn match_count(&self) -> usize {
        self.match_rounds.iter().map(|r| r.matches.len()).sum()
    }

    pub fn player_row_count(&self) -> usize {
        self.match_rounds.iter().map(|r| r.players.len()).sum()
    }

    pub fn profile_count(&self) -> usize {
        self.profile_rounds.iter().map(Vec::len).sum()
    }
}

/// Rows of one round sorted by key, so concurrent transactions lock rows in
/// one order and cannot deadlock on them.
fn match_round(matches: &[&MatchCompleted]) -> MatchRound {
    let mut round = MatchRound::default();
    for m in matches {
        round.matches.push(match_row(m));
        round
            .players
            .extend(m.players.iter().map(|p| player_row(m, p)));
        round.picks_bans.extend(pick_ban_rows(m));
    }
    round.matches.sort_by_key(|r| r.match_id);
    round.players.sort_by_key(|r| (r.match_id, r.player_slot));
    round.picks_bans.sort_by_key(|r| (r.match_id, r.ord));
    round
}

/// Splits `items` so no round holds a key twice; round k holds the k-th
/// occurrence of each key, each round sorted by key.
pub(crate) fn rounds<T, K: Ord + Hash + Copy>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<Vec<T>> {
    let mut seen: HashMap<K, usize> = HashMap::new();
    let mut rounds: Vec<Vec<T>> = Vec::new();
    for item in items {
        let occurrence = seen.entry(key(&item)).or_default();
        if rounds.len() == *occurrence {
            rounds.push(Vec::new());
        }
        rounds[*occurrence].push(item);
        *occurrence += 1;
    }
    for round in &mut rounds {
        round.sort_by_key(|item| key(item));
    }
    rounds
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_any_name_is_invalid_before_it_reaches_the_database() {
        let mut m = generated_match();
        assert!(validate_match(&m).is_ok());
        m.players[3].persona_name = Some("a\0b".into());
        let err = validate_match(&m).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("NUL"), "{err}");

        let mut profile = PlayerProfile {
            account_id: 1,
            persona_name: None,
            rank_tier: None,
            leaderboard_rank: None,
            country: Some("S\0E".into()),
            last_seen: None,
            avatar_url: None,
            profile_url: None,
            observed_at_ms: 0,
            source: "json".into(),
        };
        assert_eq!(validate_profile(&profile).unwrap_err().kind(), "invalid");
        profile.country = Some("SE".into());
        assert!(validate_profile(&profile).is_ok());
    }

    fn generated_match() -> MatchCompleted {
        producers::loadgen::generate_matches(1, 7).remove(0)
    }

    #[test]
    fn rounds_hold_each_key_once_in_delivery_order() {
        let items = [(2, 'a'), (1, 'b'), (2, 'c'), (2, 'd'), (3, 'e')];
        let split = rounds(items, |(k, _)| *k);
        assert_eq!(
            split,
            vec![
                vec![(1, 'b'), (2, 'a'), (3, 'e')],
                vec![(2, 'c')],
                vec![(2, 'd')],
            ]
        );
        assert!(rounds(Vec::<(i32, char)>::new(), |(k, _)| *k).is_empty());
    }

    #[test]
    fn sources_rank_game_coordinator_first() {
        assert!(source_rank("game_coordinator") > source_rank("steam_api"));
        assert!(source_rank("steam_api") > source_rank("json"));
        assert!(source_rank("json") > source_rank("loadgen"));
        assert_eq!(source_rank("something new"), 0);
    }

    /// Each column's text is looked up by name in `COLUMNS`' order, so the
    /// line is checked whole, and a column added later is expected NULL here.
    #[test]
    #[allow(clippy::needless_update)]
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
            ..PlayerMatchRow::default()
        };
        let mut out = String::new();
        row.push_copy_line(&mut out);
        let text = [
            ("match_id", "1"),
            ("player_slot", "128"),
            ("hero_id", "2"),
            ("kills", "3"),
            ("deaths", "4"),
            ("assists", "5"),
            ("last_hits", "6"),
            ("denies", "7"),
            ("gold_per_min", "8"),
            ("xp_per_min", "9"),
            ("level", "10"),
            ("hero_damage", "11"),
            ("net_worth", "12"),
            ("items", "[1,0,3]"),
            ("persona_name", "a\\tb\\\\c\\nd"),
            ("is_radiant", "f"),
            ("won", "t"),
            ("start_time", "13"),
            ("source_rank", "3"),
        ];
        let expected: Vec<&str> = PlayerMatchRow::COLUMNS
            .iter()
            .map(|column| {
                text.iter()
                    .find(|(name, _)| name == column)
                    .map_or("\\N", |(_, text)| *text)
            })
            .collect();
        assert_eq!(out, format!("{}\n", expected.join("\t")));
        assert_eq!(
            out.trim_end().split('\t').count(),
            PlayerMatchRow::COLUMNS.len()
        );
    }
}
