//! JSON written by a client that is not ours: Python's `json.dumps`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use schemas::{Codec, Format, MatchCompleted, PlayerPerformance};

/// Only required fields plus a few optional ones; Python prints with its own
/// spacing, key order and `ensure_ascii` escapes.
const PYTHON: &str = r#"
import json
player = {
    "player_slot": 130, "hero_id": 74, "kills": 9, "deaths": 2, "assists": 14,
    "last_hits": 310, "denies": 12, "gold_per_min": 702, "xp_per_min": 811, "level": 27,
    "items": [1, 116, 0, 48, 63, 50], "persona_name": "Topson \u00e9\u2713",
}
anonymous = dict(player, player_slot=0, hero_id=5, account_id=None, persona_name=None)
match = {
    "source": "json", "match_id": 7912345678, "start_time": 1726000000,
    "duration_secs": 2537, "radiant_win": False, "game_mode": 22, "lobby_type": 7,
    "league_id": 0, "cluster": 156, "dire_score": 41,
    "dire_team": {"team_id": 39, "name": "Evil Geniuses"},
    "players": [anonymous, player],
    "publisher_only_field": {"ignored": True},
}
print(json.dumps(match, indent=1))
"#;

fn python_json() -> Vec<u8> {
    let output = Command::new("python3")
        .args(["-c", PYTHON])
        .output()
        .expect("python3 runs (it is part of the dev environment)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn decodes_a_match_written_by_python() {
    let bytes = python_json();
    assert_eq!(Codec::describe(&bytes), Ok(Format::Json));

    let event: MatchCompleted = Codec::default().decode(&bytes).unwrap();
    assert_eq!(event.match_id, 7_912_345_678);
    assert!(!event.radiant_win);
    assert_eq!(event.game_mode, 22);
    assert_eq!(event.dire_score, Some(41));
    assert_eq!(
        event.dire_team.unwrap().name.as_deref(),
        Some("Evil Geniuses")
    );
    // Left out by the publisher: defaults.
    assert_eq!(event.match_seq_num, None);
    assert_eq!(event.radiant_team, None);
    assert_eq!(event.radiant_score, None);
    assert!(event.picks_bans.is_empty());

    let [anonymous, named]: [PlayerPerformance; 2] = event.players.try_into().unwrap();
    assert_eq!(anonymous.account_id, None);
    assert!(anonymous.is_radiant() && !named.is_radiant());
    assert_eq!(named.persona_name.as_deref(), Some("Topson é✓"));
    assert_eq!(named.items, [1, 116, 0, 48, 63, 50]);
    assert!(named.backpack.is_empty() && named.net_worth.is_none());
}
