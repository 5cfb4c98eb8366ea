//! Pure enrichment: a [`MatchCompleted`] joined with [`Reference`] data and
//! derived stats. No I/O and no clock, so every value can be checked by hand.
//!
//! Unknown ids never drop a match: what the reference knows is filled in, the
//! rest stays `None`, and each unknown id is listed in `unknown_ids`.

use schemas::reference::Reference;
use schemas::{EnrichedPlayer, MatchCompleted, MatchEnriched, PlayerPerformance};

/// Players a side needs for [`lane_role`] to mean anything.
const FULL_TEAM: usize = 5;

/// A farm-based guess at a player's position, from their GPM rank in their team
/// (1 = highest): 1-2 `core` (carry, mid), 3 `offlane`, 4-5 `support`.
/// `unknown` when the side does not have exactly five players.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaneRole {
    Core,
    Offlane,
    Support,
    Unknown,
}

impl LaneRole {
    pub fn as_str(self) -> &'static str {
        match self {
            LaneRole::Core => "core",
            LaneRole::Offlane => "offlane",
            LaneRole::Support => "support",
            LaneRole::Unknown => "unknown",
        }
    }

    fn from_rank(rank: usize) -> Self {
        match rank {
            1 | 2 => LaneRole::Core,
            3 => LaneRole::Offlane,
            4 | 5 => LaneRole::Support,
            _ => LaneRole::Unknown,
        }
    }
}

/// Builds the enriched match. `enriched_at_ms` is the caller's clock reading.
///
/// `unknown_ids` holds each unknown id once, match fields first (game mode,
/// lobby type, cluster), then players in order (hero, then items).
pub fn enrich(m: &MatchCompleted, reference: &Reference, enriched_at_ms: i64) -> MatchEnriched {
    let mut unknown = UnknownIds::default();
    let game_mode_name = known(
        reference.game_mode(m.game_mode),
        "game_mode",
        m.game_mode,
        &mut unknown,
    );
    let lobby_type_name = known(
        reference.lobby_type(m.lobby_type),
        "lobby_type",
        m.lobby_type,
        &mut unknown,
    );
    let region = known(
        reference.region_of_cluster(m.cluster),
        "cluster",
        m.cluster,
        &mut unknown,
    );
    let radiant = Side::of(m, true);
    let dire = Side::of(m, false);
    let players = m
        .players
        .iter()
        .map(|p| {
            let side = if p.is_radiant() { &radiant } else { &dire };
            enrich_player(p, side, m.radiant_win, reference, &mut unknown)
        })
        .collect();
    MatchEnriched {
        match_id: m.match_id,
        start_time: m.start_time,
        duration_secs: m.duration_secs,
        radiant_win: m.radiant_win,
        game_mode: m.game_mode,
        game_mode_name,
        lobby_type: m.lobby_type,
        lobby_type_name,
        cluster: m.cluster,
        region,
        league_id: m.league_id,
        radiant_team: m.radiant_team.clone(),
        dire_team: m.dire_team.clone(),
        radiant_kills: radiant.kills,
        dire_kills: dire.kills,
        players,
        unknown_ids: unknown.0,
        enriched_at_ms,
    }
}

/// (kills + assists) / max(deaths, 1).
pub fn kda(kills: i32, deaths: i32, assists: i32) -> f64 {
    // In f64, so absurd counts cannot overflow.
    (f64::from(kills) + f64::from(assists)) / f64::from(deaths.max(1))
}

/// (kills + assists) / team kills; 0 when the team has no kills.
pub fn kill_participation(kills: i32, assists: i32, team_kills: i32) -> f64 {
    if team_kills <= 0 {
        return 0.0;
    }
    (f64::from(kills) + f64::from(assists)) / f64::from(team_kills)
}

/// Lane role per player of one side, in the order given, from their GPM.
/// Equal GPM ranks the lower player slot first, so the result is deterministic.
pub fn lane_roles(side: &[&PlayerPerformance]) -> Vec<LaneRole> {
    if side.len() != FULL_TEAM {
        return vec![LaneRole::Unknown; side.len()];
    }
    let mut by_farm: Vec<usize> = (0..side.len()).collect();
    by_farm.sort_by_key(|&i| (std::cmp::Reverse(side[i].gold_per_min), side[i].player_slot));
    let mut roles = vec![LaneRole::Unknown; side.len()];
    for (rank, &i) in by_farm.iter().enumerate() {
        roles[i] = LaneRole::from_rank(rank + 1);
    }
    roles
}

/// What a player's stats are measured against: their side's totals and roles.
struct Side {
    kills: i32,
    /// `None` unless every player of the side reports a net worth.
    net_worth: Option<i64>,
    /// (player slot, role) of each player of the side.
    roles: Vec<(i32, LaneRole)>,
}

impl Side {
    fn of(m: &MatchCompleted, radiant: bool) -> Self {
        let players: Vec<&PlayerPerformance> = m
            .players
            .iter()
            .filter(|p| p.is_radiant() == radiant)
            .collect();
        let kills = players
            .iter()
            .fold(0i32, |sum, p| sum.saturating_add(p.kills));
        let net_worth = players.iter().try_fold(0i64, |sum, p| {
            p.net_worth.and_then(|nw| sum.checked_add(nw))
        });
        let roles = players
            .iter()
            .map(|p| p.player_slot)
            .zip(lane_roles(&players))
            .collect();
        Self {
            kills,
            net_worth,
            roles,
        }
    }

    fn role_of(&self, slot: i32) -> LaneRole {
        self.roles
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or(LaneRole::Unknown, |(_, role)| *role)
    }

    fn net_worth_share(&self, player: &PlayerPerformance) -> Option<f64> {
        let team = self.net_worth.filter(|total| *total > 0)?;
        Some(player.net_worth? as f64 / team as f64)
    }
}

fn enrich_player(
    p: &PlayerPerformance,
    side: &Side,
    radiant_win: bool,
    reference: &Reference,
    unknown: &mut UnknownIds,
) -> EnrichedPlayer {
    let hero = reference.hero(p.hero_id);
    if hero.is_none() {
        unknown.push("hero", p.hero_id);
    }
    EnrichedPlayer {
        account_id: p.account_id,
        player_slot: p.player_slot,
        is_radiant: p.is_radiant(),
        won: radiant_win == p.is_radiant(),
        hero_id: p.hero_id,
        hero_name: hero.map(|h| h.localized_name.clone()),
        primary_attr: hero.map(|h| h.primary_attr.clone()),
        hero_roles: hero.map(|h| h.roles.clone()).unwrap_or_default(),
        kills: p.kills,
        deaths: p.deaths,
        assists: p.assists,
        gold_per_min: p.gold_per_min,
        xp_per_min: p.xp_per_min,
        kda: kda(p.kills, p.deaths, p.assists),
        kill_participation: kill_participation(p.kills, p.assists, side.kills),
        net_worth_share: side.net_worth_share(p),
        lane_role: side.role_of(p.player_slot).as_str().to_string(),
        item_names: item_names(&p.items, reference, unknown),
    }
}

/// Names of the main inventory, in slot order; 0 is an empty slot. The backpack
/// is left out: it holds what a player is not using.
fn item_names(items: &[i32], reference: &Reference, unknown: &mut UnknownIds) -> Vec<String> {
    items
        .iter()
        .filter(|id| **id != 0)
        .filter_map(|&id| {
            let name = reference.item_name(id);
            if name.is_none() {
                unknown.push("item", id);
            }
            name.map(str::to_string)
        })
        .collect()
}

/// The name the reference gives, or `None` with the id recorded as unknown.
fn known(name: Option<&str>, kind: &str, id: i32, unknown: &mut UnknownIds) -> Option<String> {
    if name.is_none() {
        unknown.push(kind, id);
    }
    name.map(str::to_string)
}

/// Unknown ids as `kind:id`, each once, in the order first met.
#[derive(Default)]
struct UnknownIds(Vec<String>);

impl UnknownIds {
    fn push(&mut self, kind: &str, id: i32) {
        let entry = format!("{kind}:{id}");
        if !self.0.contains(&entry) {
            self.0.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kda_counts_zero_deaths_as_one() {
        assert_eq!(kda(3, 0, 4), 7.0);
        assert_eq!(kda(3, 2, 4), 3.5);
    }

    #[test]
    fn kill_participation_is_zero_without_team_kills() {
        assert_eq!(kill_participation(0, 0, 0), 0.0);
        assert_eq!(kill_participation(1, 2, 6), 0.5);
    }

    fn player(slot: i32, gpm: i32) -> PlayerPerformance {
        PlayerPerformance {
            player_slot: slot,
            hero_id: 1,
            gold_per_min: gpm,
            level: 1,
            ..PlayerPerformance::default()
        }
    }

    #[test]
    fn lane_roles_rank_by_gpm_and_break_ties_by_slot() {
        let side = [
            player(0, 300),
            player(1, 500),
            player(2, 300),
            player(3, 700),
            player(4, 200),
        ];
        let refs: Vec<&PlayerPerformance> = side.iter().collect();
        use LaneRole::*;
        assert_eq!(
            lane_roles(&refs),
            [Offlane, Core, Support, Core, Support],
            "700 and 500 are cores; of the two 300s, slot 0 ranks third"
        );
    }

    #[test]
    fn lane_roles_are_unknown_without_five_players() {
        let side = [player(0, 300), player(1, 500)];
        let refs: Vec<&PlayerPerformance> = side.iter().collect();
        assert_eq!(lane_roles(&refs), [LaneRole::Unknown, LaneRole::Unknown]);
    }

    #[test]
    fn unknown_ids_are_listed_once() {
        let mut unknown = UnknownIds::default();
        unknown.push("item", 9999);
        unknown.push("hero", 999);
        unknown.push("item", 9999);
        assert_eq!(unknown.0, ["item:9999", "hero:999"]);
    }
}
