//! Matches from the Steam Web API (GetMatchDetails) and from the game coordinator.
//!
//! Both carry the same player stats under the same names; they differ in a few
//! match fields (`start_time` vs `starttime`, `radiant_win` vs `match_outcome`,
//! numeric vs named `game_mode`) and in where the backpack lives.

use schemas::reference::Reference;
use schemas::{MatchCompleted, PickBan, PlayerPerformance, Team};
use serde_json::Value;

use super::fields::{Obj, ReadNumber};
use super::IngestError;

type Result<T> = std::result::Result<T, IngestError>;

pub(crate) const STEAM_SOURCE: &str = "steam_api";
pub(crate) const GC_SOURCE: &str = "game_coordinator";

const MAIN_ITEM_KEYS: [&str; 6] = ["item_0", "item_1", "item_2", "item_3", "item_4", "item_5"];
const STEAM_BACKPACK_KEYS: [&str; 3] = ["backpack_0", "backpack_1", "backpack_2"];
/// The game coordinator numbers backpack slots after the main ones (item_9 is the neutral slot).
const GC_BACKPACK_KEYS: [&str; 3] = ["item_6", "item_7", "item_8"];

/// A Steam GetMatchDetails match object (the content of `result`).
pub(crate) fn steam_match(m: &Obj<'_>) -> Result<MatchCompleted> {
    Ok(MatchCompleted {
        match_id: m.int("match_id")?,
        match_seq_num: m.opt_int("match_seq_num")?,
        start_time: m.int("start_time")?,
        duration_secs: m.int32("duration")?,
        radiant_win: m.boolean("radiant_win")?,
        game_mode: m.int32("game_mode")?,
        lobby_type: m.int32("lobby_type")?,
        league_id: league_id(m)?,
        cluster: m.int32("cluster")?,
        radiant_team: team(m, "radiant_team_id", "radiant_name")?,
        dire_team: team(m, "dire_team_id", "dire_name")?,
        radiant_score: m.opt_int32("radiant_score")?,
        dire_score: m.opt_int32("dire_score")?,
        picks_bans: picks_bans(m)?,
        players: players(m, &STEAM_BACKPACK_KEYS)?,
        source: STEAM_SOURCE.to_string(),
    })
}

/// A game coordinator match object (the content of `match`).
pub(crate) fn gc_match(m: &Obj<'_>) -> Result<MatchCompleted> {
    let (radiant_score, dire_score) = gc_scores(m)?;
    Ok(MatchCompleted {
        match_id: m.int("match_id")?,
        match_seq_num: m.opt_int("match_seq_num")?,
        start_time: m.int("starttime")?,
        duration_secs: m.int32("duration")?,
        radiant_win: gc_radiant_win(m)?,
        game_mode: gc_game_mode(m)?,
        lobby_type: m.int32("lobby_type")?,
        league_id: league_id(m)?,
        cluster: m.int32("cluster")?,
        radiant_team: team(m, "radiant_team_id", "radiant_team_name")?,
        dire_team: team(m, "dire_team_id", "dire_team_name")?,
        radiant_score,
        dire_score,
        picks_bans: picks_bans(m)?,
        players: players(m, &GC_BACKPACK_KEYS)?,
        source: GC_SOURCE.to_string(),
    })
}

/// Absent outside leagues; the event uses 0 for "no league".
fn league_id(m: &Obj<'_>) -> Result<i64> {
    Ok(m.opt_int("leagueid")?.unwrap_or(0))
}

/// Both APIs leave the team id out, or send 0, when a side is not a registered team.
fn team(m: &Obj<'_>, id_key: &str, name_key: &str) -> Result<Option<Team>> {
    match m.opt_int(id_key)? {
        None | Some(0) => Ok(None),
        Some(team_id) => Ok(Some(Team {
            team_id,
            name: m.opt_string(name_key)?,
        })),
    }
}

fn picks_bans(m: &Obj<'_>) -> Result<Vec<PickBan>> {
    let entries = m.opt_objects("picks_bans")?;
    (0..)
        .zip(entries)
        .map(|(index, entry)| {
            Ok(PickBan {
                is_pick: entry.boolean("is_pick")?,
                hero_id: entry.int32("hero_id")?,
                team: entry.int32("team")?,
                // The game coordinator lists picks and bans in order without numbering them.
                order: entry.opt_int32("order")?.unwrap_or(index),
            })
        })
        .collect()
}

fn players(m: &Obj<'_>, backpack_keys: &[&str]) -> Result<Vec<PlayerPerformance>> {
    m.objects("players")?
        .iter()
        .map(|p| player(p, backpack_keys))
        .collect()
}

/// Both APIs name the player's numbers as the schema does, so each is read
/// under its own name; only the slot, account, inventory and name are placed
/// by hand.
fn player(p: &Obj<'_>, backpack_keys: &[&str]) -> Result<PlayerPerformance> {
    macro_rules! read_player {
        (numbers: [$($number:ident: $ty:ty),*]) => {
            PlayerPerformance {
                account_id: p.account_id("account_id")?,
                player_slot: p.int32("player_slot")?,
                $($number: <$ty as ReadNumber>::read(p, stringify!($number))?,)*
                items: MAIN_ITEM_KEYS
                    .iter()
                    .map(|key| p.int32(key))
                    .collect::<Result<_>>()?,
                backpack: backpack(p, backpack_keys)?,
                persona_name: p.opt_string("player_name")?,
            }
        };
    }
    Ok(schemas::with_player_numbers!(read_player))
}

/// Older matches predate the backpack: no slot present means no backpack,
/// while a partly present backpack keeps its slot positions (0 = empty).
fn backpack(p: &Obj<'_>, keys: &[&str]) -> Result<Vec<i32>> {
    let slots = keys
        .iter()
        .map(|key| p.opt_int32(key))
        .collect::<Result<Vec<_>>>()?;
    if slots.iter().all(Option::is_none) {
        return Ok(Vec::new());
    }
    Ok(slots.into_iter().map(|slot| slot.unwrap_or(0)).collect())
}

/// From `match_outcome` (`k_EMatchOutcome_RadVictory`, or its enum number 2), or a
/// plain `radiant_win` when a converted record carries one instead.
fn gc_radiant_win(m: &Obj<'_>) -> Result<bool> {
    let Some(outcome) = m.get("match_outcome") else {
        return m.boolean("radiant_win");
    };
    match (outcome.as_str(), outcome.as_i64()) {
        (Some("k_EMatchOutcome_RadVictory"), _) | (_, Some(2)) => Ok(true),
        (Some("k_EMatchOutcome_DireVictory"), _) | (_, Some(3)) => Ok(false),
        _ => Err(m.error(
            "match_outcome",
            format!("{outcome} names no winner (not scored or unknown)"),
        )),
    }
}

/// The game coordinator names the mode (`DOTA_GAMEMODE_ALL_DRAFT`); the event wants its id.
fn gc_game_mode(m: &Obj<'_>) -> Result<i32> {
    match m.get("game_mode") {
        Some(Value::String(name)) => Reference::get()
            .game_mode_id_by_name(name)
            .ok_or_else(|| m.error("game_mode", format!("unknown game mode `{name}`"))),
        _ => m.int32("game_mode"),
    }
}

/// Old game coordinator records carry both scores as 0 whatever the kills were;
/// `None` is truer than a 0–0 that did not happen (a real 0–0 ending is vanishingly rare).
fn gc_scores(m: &Obj<'_>) -> Result<(Option<i32>, Option<i32>)> {
    let radiant = m.opt_int32("radiant_team_score")?;
    let dire = m.opt_int32("dire_team_score")?;
    match (radiant, dire) {
        (Some(0), Some(0)) => Ok((None, None)),
        scores => Ok(scores),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn gc_player(slot: i64) -> Value {
        json!({"account_id": 10 + slot, "player_slot": slot, "hero_id": 1, "kills": 1,
            "deaths": 2, "assists": 3, "last_hits": 4, "denies": 5, "gold_per_min": 6,
            "xp_per_min": 7, "level": 8, "item_0": 1, "item_1": 2, "item_2": 3, "item_3": 4,
            "item_4": 5, "item_5": 6, "item_6": 7, "item_7": 8, "item_8": 9, "item_9": 10})
    }

    fn gc(record: &Value) -> Result<MatchCompleted> {
        gc_match(&Obj::root(record.as_object().unwrap()))
    }

    fn gc_record() -> Value {
        json!({"match_id": "42", "starttime": 100, "duration": 60, "match_outcome": 3,
            "game_mode": 2, "lobby_type": 1, "cluster": 111,
            "radiant_team_id": 7, "radiant_team_name": "Seven", "dire_team_id": 0,
            "radiant_team_score": 0, "dire_team_score": 5,
            "picks_bans": [{"is_pick": false, "hero_id": 5, "team": 0},
                           {"is_pick": true, "hero_id": 6, "team": 1}],
            "players": [gc_player(0)]})
    }

    #[test]
    fn gc_backpack_is_item_6_to_8_not_the_neutral_slot() {
        let m = gc(&gc_record()).unwrap();
        assert_eq!(m.players[0].items, [1, 2, 3, 4, 5, 6]);
        assert_eq!(m.players[0].backpack, [7, 8, 9]);
    }

    #[test]
    fn gc_match_fields() {
        let m = gc(&gc_record()).unwrap();
        assert_eq!(m.match_id, 42);
        assert!(!m.radiant_win, "outcome 3 is a dire victory");
        assert_eq!(m.game_mode, 2, "numeric game modes pass through");
        let radiant = m.radiant_team.unwrap();
        assert_eq!(
            (radiant.team_id, radiant.name.as_deref()),
            (7, Some("Seven"))
        );
        assert_eq!(m.dire_team, None, "team id 0 is no team");
        assert_eq!((m.radiant_score, m.dire_score), (Some(0), Some(5)));
        let orders: Vec<(i32, bool)> = m.picks_bans.iter().map(|p| (p.order, p.is_pick)).collect();
        assert_eq!(
            orders,
            [(0, false), (1, true)],
            "unnumbered entries keep list order"
        );
    }

    #[test]
    fn gc_unknown_game_mode_is_an_error() {
        let mut record = gc_record();
        record["game_mode"] = json!("DOTA_GAMEMODE_NOT_A_MODE");
        let err = gc(&record).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `game_mode`: unknown game mode `DOTA_GAMEMODE_NOT_A_MODE`"
        );
    }

    #[test]
    fn steam_partial_backpack_keeps_slot_positions() {
        let mut player = gc_player(128);
        let fields = player.as_object_mut().unwrap();
        for gc_only in ["item_6", "item_7", "item_8", "item_9"] {
            fields.remove(gc_only);
        }
        fields.insert("backpack_1".into(), json!(33));
        let p = super::player(&Obj::root(fields), &STEAM_BACKPACK_KEYS).unwrap();
        assert_eq!(p.backpack, [0, 33, 0]);
    }

    #[test]
    fn missing_stat_is_an_error_not_a_zero() {
        let mut player = gc_player(0);
        player.as_object_mut().unwrap().remove("deaths");
        let err =
            super::player(&Obj::root(player.as_object().unwrap()), &GC_BACKPACK_KEYS).unwrap_err();
        assert_eq!(err.to_string(), "field `deaths`: missing");
    }
}
