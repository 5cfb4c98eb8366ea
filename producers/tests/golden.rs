//! Golden tests: the real records of `shared/data/opendota/`, ingested, checked
//! against values read off the files by hand.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use producers::ingest::{
    ingest_dir, ingest_file, shared_data_dir, IngestError, IngestedEvent, SkipReason,
};
use schemas::reference::Reference;
use schemas::{JobType, MatchCompleted, PickBan, PlayerPerformance, PlayerProfile, Team};

/// The ingest time the tests pass in; records without a time of their own get it.
const INGEST_TIME_MS: i64 = 1_700_000_000_000;

fn fixture(name: &str) -> PathBuf {
    shared_data_dir().join("opendota").join(name)
}

fn ingest(name: &str) -> Vec<IngestedEvent> {
    ingest_file(fixture(name), INGEST_TIME_MS).unwrap()
}

fn only_match(name: &str) -> MatchCompleted {
    match ingest(name).as_slice() {
        [IngestedEvent::Match(m)] => m.clone(),
        other => panic!("{name}: expected one match, got {other:?}"),
    }
}

fn only_profile(name: &str) -> PlayerProfile {
    match ingest(name).as_slice() {
        [IngestedEvent::Player(p)] => p.clone(),
        other => panic!("{name}: expected one profile, got {other:?}"),
    }
}

fn slot(m: &MatchCompleted, slot: i32) -> &PlayerPerformance {
    m.players
        .iter()
        .find(|p| p.player_slot == slot)
        .unwrap_or_else(|| panic!("no player in slot {slot}"))
}

/// (kills, deaths, assists, last hits, GPM, XPM)
fn line(p: &PlayerPerformance) -> (i32, i32, i32, i32, i32, i32) {
    (
        p.kills,
        p.deaths,
        p.assists,
        p.last_hits,
        p.gold_per_min,
        p.xp_per_min,
    )
}

#[test]
fn steam_public_match() {
    let m = only_match("details_api.json");
    assert_eq!(m.match_id, 1_781_962_623);
    assert_eq!(m.match_seq_num, Some(1_584_699_503));
    assert_eq!(m.start_time, 1_441_835_947);
    assert_eq!(m.duration_secs, 2220);
    assert!(m.radiant_win);
    assert_eq!(m.game_mode, 22);
    assert_eq!(m.lobby_type, 7);
    assert_eq!(m.league_id, 5399);
    assert_eq!(m.cluster, 132);
    assert_eq!((m.radiant_team.clone(), m.dire_team.clone()), (None, None));
    assert_eq!((m.radiant_score, m.dire_score), (None, None));
    assert!(m.picks_bans.is_empty());
    assert_eq!(m.source, "steam_api");

    let slots: Vec<i32> = m.players.iter().map(|p| p.player_slot).collect();
    assert_eq!(slots, [0, 1, 2, 3, 4, 128, 129, 130, 131, 132]);

    let p0 = slot(&m, 0);
    assert_eq!(p0.account_id, Some(120_269_134));
    assert_eq!(p0.hero_id, 100);
    assert_eq!(line(p0), (8, 6, 11, 69, 443, 527));
    assert_eq!((p0.denies, p0.level), (2, 19));
    assert_eq!(p0.items, [50, 152, 96, 46, 36, 30]);
    assert!(
        p0.backpack.is_empty(),
        "this 2015 match predates the backpack"
    );
    assert_eq!(p0.hero_damage, Some(12_234));
    assert_eq!(p0.tower_damage, Some(537));
    assert_eq!(p0.hero_healing, Some(0));
    assert_eq!(p0.gold, Some(2731));
    assert_eq!(p0.gold_spent, Some(12_505));
    assert_eq!(p0.leaver_status, Some(0));
    assert_eq!(p0.net_worth, None);
    assert_eq!(p0.persona_name, None);

    let p1 = slot(&m, 1);
    assert_eq!(p1.account_id, None, "4294967295 is anonymous");
    assert_eq!(p1.hero_id, 73);
    assert_eq!(line(p1), (6, 6, 5, 304, 944, 801));
    assert_eq!(p1.items, [249, 208, 112, 55, 48, 158]);

    let p132 = slot(&m, 132);
    assert_eq!(p132.account_id, None);
    assert_eq!(p132.hero_id, 1);
    assert_eq!(line(p132), (1, 6, 4, 197, 384, 545));
    assert_eq!(p132.items, [63, 147, 0, 0, 182, 145]);

    let p128 = slot(&m, 128);
    assert_eq!(p128.account_id, Some(44_152_866));
    assert_eq!((p128.hero_id, p128.deaths), (6, 13));

    let anonymous: Vec<i32> = m
        .players
        .iter()
        .filter(|p| p.account_id.is_none())
        .map(|p| p.player_slot)
        .collect();
    assert_eq!(anonymous, [1, 131, 132]);
}

#[test]
fn steam_pro_match() {
    let m = only_match("details_api_pro.json");
    assert_eq!(m.match_id, 3_254_426_673);
    assert_eq!(m.match_seq_num, Some(2_843_189_211));
    assert_eq!(m.start_time, 1_497_678_766);
    assert_eq!(m.duration_secs, 1888);
    assert!(!m.radiant_win);
    assert_eq!(m.game_mode, 2, "captains mode");
    assert_eq!(m.lobby_type, 1);
    assert_eq!(m.league_id, 5399);
    assert_eq!(m.cluster, 225);
    assert_eq!(
        m.radiant_team,
        Some(Team {
            team_id: 4_251_435,
            name: Some("Planet Odd".into())
        })
    );
    assert_eq!(
        m.dire_team,
        Some(Team {
            team_id: 1_375_614,
            name: Some("Newbee".into())
        })
    );
    assert_eq!((m.radiant_score, m.dire_score), (Some(15), Some(23)));

    assert_eq!(m.picks_bans.len(), 20);
    let first = PickBan {
        is_pick: false,
        hero_id: 99,
        team: 1,
        order: 0,
    };
    let last = PickBan {
        is_pick: true,
        hero_id: 101,
        team: 0,
        order: 19,
    };
    assert_eq!(m.picks_bans.first(), Some(&first));
    assert_eq!(m.picks_bans.last(), Some(&last));
    assert_eq!(m.picks_bans.iter().filter(|pb| pb.is_pick).count(), 10);

    // Every picked hero is played by a player of the picking side.
    for pick in m.picks_bans.iter().filter(|pb| pb.is_pick) {
        let player = m
            .players
            .iter()
            .find(|p| p.hero_id == pick.hero_id)
            .unwrap();
        assert_eq!(player.is_radiant(), pick.team == 0, "hero {}", pick.hero_id);
    }

    let p3 = slot(&m, 3);
    assert_eq!(p3.account_id, Some(86_700_461));
    assert_eq!(p3.hero_id, 101);
    assert_eq!(line(p3), (6, 4, 4, 124, 363, 451));
    assert_eq!(p3.denies, 21);
    assert_eq!(p3.items, [206, 1, 36, 40, 29, 232]);
    assert_eq!(p3.backpack, [46, 244, 0]);

    let p129 = slot(&m, 129);
    assert_eq!(p129.account_id, Some(149_486_894));
    assert_eq!(p129.hero_id, 94);
    assert_eq!(line(p129), (5, 2, 5, 361, 687, 804));
    assert_eq!(p129.items, [50, 147, 127, 160, 212, 32]);
    assert_eq!(p129.backpack, [0, 0, 46]);

    assert_eq!(slot(&m, 2).leaver_status, Some(1));
    assert!(m.players.iter().all(|p| p.account_id.is_some()));
}

#[test]
fn game_coordinator_match() {
    let m = only_match("retriever_match.json");
    assert_eq!(
        m.match_id, 1_781_962_623,
        "parsed from the string \"1781962623\""
    );
    assert_eq!(m.match_seq_num, None);
    assert_eq!(m.start_time, 1_441_835_947);
    assert_eq!(m.duration_secs, 2220);
    assert!(m.radiant_win, "k_EMatchOutcome_RadVictory");
    assert_eq!(m.game_mode, 22, "DOTA_GAMEMODE_ALL_DRAFT");
    assert_eq!(
        Reference::get().game_mode(m.game_mode),
        Some("game_mode_all_draft")
    );
    assert_eq!(m.lobby_type, 7);
    assert_eq!(m.league_id, 0);
    assert_eq!(m.cluster, 132);
    assert_eq!(
        Reference::get().region_of_cluster(m.cluster),
        Some("EUROPE")
    );
    assert_eq!((m.radiant_team.clone(), m.dire_team.clone()), (None, None));
    assert_eq!(
        (m.radiant_score, m.dire_score),
        (None, None),
        "the record's 0-0 is a placeholder"
    );
    assert!(m.picks_bans.is_empty());
    assert_eq!(m.source, "game_coordinator");
    assert_eq!(m.players.len(), 10);

    let p0 = slot(&m, 0);
    assert_eq!(p0.account_id, Some(120_269_134));
    assert_eq!(p0.persona_name.as_deref(), Some("Cherno Billy"));
    assert_eq!(p0.hero_id, 100);
    assert_eq!(line(p0), (8, 6, 11, 69, 443, 527));
    assert_eq!(p0.net_worth, Some(13_061));
    assert_eq!(p0.items, [50, 152, 96, 46, 36, 30]);
    assert_eq!(p0.backpack, [0, 0, 0], "item_6..item_8");
    assert_eq!(p0.hero_damage, None);

    let p1 = slot(&m, 1);
    assert_eq!(p1.account_id, Some(109_378_329));
    assert_eq!(p1.persona_name.as_deref(), Some("buffalobill"));
    assert_eq!(p1.net_worth, Some(32_064));

    let p131 = slot(&m, 131);
    assert_eq!(p131.account_id, Some(106_823_512));
    assert_eq!(p131.persona_name.as_deref(), Some("你好"));
    assert_eq!(line(p131), (3, 15, 5, 75, 286, 323));
    assert_eq!(p131.net_worth, Some(6712));

    let p132 = slot(&m, 132);
    assert_eq!(p132.account_id, Some(86_751_979));
    assert_eq!(p132.hero_id, 1);
    assert_eq!(p132.net_worth, Some(12_079));
    assert_eq!(p132.items, [63, 147, 0, 0, 182, 145]);
}

/// The Steam and game coordinator fixtures are the same match: the stats agree,
/// only the anonymity differs (the GC knows every account).
#[test]
fn steam_and_game_coordinator_agree_on_the_same_match() {
    let steam = only_match("details_api.json");
    let gc = only_match("retriever_match.json");
    assert_eq!(steam.match_id, gc.match_id);
    assert_eq!(steam.start_time, gc.start_time);
    assert_eq!(steam.radiant_win, gc.radiant_win);
    assert_eq!(steam.game_mode, gc.game_mode);
    for (s, g) in steam.players.iter().zip(&gc.players) {
        assert_eq!(s.player_slot, g.player_slot);
        assert_eq!(s.hero_id, g.hero_id);
        assert_eq!(line(s), line(g));
        assert_eq!(s.items, g.items);
        if let Some(account) = s.account_id {
            assert_eq!(Some(account), g.account_id);
        }
    }
    assert!(gc.players.iter().all(|p| p.account_id.is_some()));
}

#[test]
fn rank_record() {
    let p = only_profile("retriever_player.json");
    assert_eq!(p.account_id, 120_269_134);
    assert_eq!(p.rank_tier, Some(80));
    assert_eq!(p.leaderboard_rank, Some(1476));
    assert_eq!(p.persona_name, None);
    assert_eq!(
        p.observed_at_ms, INGEST_TIME_MS,
        "the record has no time of its own"
    );
    assert_eq!(p.source, "rank");
}

#[test]
fn steam_player_summaries() {
    let p = only_profile("summaries_api.json");
    // 76561198080534862 - 76561197960265728
    assert_eq!(p.account_id, 120_269_134);
    assert_eq!(p.persona_name.as_deref(), Some("Cherno Billy"));
    assert_eq!(p.last_seen, Some(1_444_167_613));
    assert_eq!(
        p.profile_url.as_deref(),
        Some("http://steamcommunity.com/profiles/76561198080534862/")
    );
    assert_eq!(
        p.avatar_url.as_deref(),
        Some("https://steamcdn-a.akamaihd.net/steamcommunity/public/images/avatars/2c/2c3de10a19eec58c2ddb3f41bd2bbb0faf3d2867_full.jpg")
    );
    assert_eq!(p.country, None, "no loccountrycode in this record");
    assert_eq!((p.rank_tier, p.leaderboard_rank), (None, None));
    assert_eq!(p.observed_at_ms, INGEST_TIME_MS);
    assert_eq!(p.source, "steam_summaries");
}

#[test]
fn job_record_is_a_parse_match_request() {
    let events: [IngestedEvent; 1] = ingest("job.json").try_into().unwrap();
    let [IngestedEvent::Job(request)] = events else {
        panic!("job.json: expected one job request")
    };
    assert_eq!(request.job_type, JobType::ParseMatch);
    // "match_id": 3402873969
    assert_eq!(request.subject_id, 3_402_873_969);
    assert_eq!(request.job_id, "parse_match-3402873969");
    assert_eq!(
        request.idempotency_key.as_deref(),
        Some("parse_match:3402873969")
    );
    assert_eq!(request.requested_at_ms, INGEST_TIME_MS);
    assert_eq!((request.run_at_ms, request.max_attempts), (None, None));
}

#[test]
fn missing_file_is_a_retriable_io_error() {
    let err = ingest_file(fixture("no_such_file.json"), INGEST_TIME_MS).unwrap_err();
    assert!(matches!(err, IngestError::Io { .. }), "{err:?}");
    assert!(err.is_retriable());
    assert!(err.to_string().contains("no_such_file.json"), "{err}");
}

#[test]
fn whole_fixture_directory() {
    let report = ingest_dir(shared_data_dir().join("opendota"), INGEST_TIME_MS).unwrap();
    let names = |paths: Vec<&PathBuf>| -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(report.files.iter().map(|f| &f.path).collect()),
        [
            "details_api.json",
            "details_api_pro.json",
            "job.json",
            "retriever_match.json",
            "retriever_player.json",
            "summaries_api.json"
        ]
    );
    assert_eq!(
        names(report.skipped.iter().map(|s| &s.path).collect()),
        ["LICENSE", "heroes_api.json", "leagues_api.json"]
    );
    for skipped in &report.skipped {
        let is_license = skipped.path.ends_with("LICENSE");
        match &skipped.reason {
            SkipReason::NotJsonFile => assert!(is_license),
            SkipReason::Rejected(err) => {
                assert!(!is_license);
                assert!(matches!(err.cause(), IngestError::Unrecognised(_)), "{err}");
            }
        }
    }
    let matches = report
        .events()
        .filter(|e| matches!(e, IngestedEvent::Match(_)))
        .count();
    assert_eq!((matches, report.events().count()), (3, 6));
}
