//! The enrich group on real OpenDota fixtures (`shared/data/opendota/`).
//! Expected values are worked out by hand from the fixture files.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use consumers::enrich::stats::{self, LaneRole};
use consumers::enrich::{EnrichHandler, DEFAULT_INPUT_TOPIC, DEFAULT_OUTPUT_TOPIC};
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::{Bus, BusError, Delivery, Position, Publisher, Record};
use pipeline::runner::{Handler, Runner, RunnerConfig};
use producers::ingest::{ingest_file, shared_data_dir, IngestedEvent};
use schemas::codec::{Codec, Encoding};
use schemas::reference::Reference;
use schemas::{DeadLetter, EnrichedPlayer, MatchCompleted, MatchEnriched};
use tokio_util::sync::CancellationToken;

const PRO: &str = "details_api_pro.json";
const PUB: &str = "details_api.json";
const RETRIEVER: &str = "retriever_match.json";
const ENRICHED_AT_MS: i64 = 1_700_000_000_000;
const GARBAGE: &[u8] = b"definitely not a match";

fn fixture(name: &str) -> MatchCompleted {
    let path = shared_data_dir().join("opendota").join(name);
    let events = ingest_file(&path, 0).unwrap();
    match events.as_slice() {
        [IngestedEvent::Match(m)] => m.clone(),
        other => panic!("{name}: expected one match, got {other:?}"),
    }
}

fn enriched(name: &str) -> MatchEnriched {
    stats::enrich(&fixture(name), Reference::get(), ENRICHED_AT_MS)
}

fn player(m: &MatchEnriched, slot: i32) -> &EnrichedPlayer {
    m.players.iter().find(|p| p.player_slot == slot).unwrap()
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 1e-12,
        "{what}: {actual} != {expected}"
    );
}

fn roles_by_slot(m: &MatchEnriched) -> Vec<(i32, &str)> {
    m.players
        .iter()
        .map(|p| (p.player_slot, p.lane_role.as_str()))
        .collect()
}

#[test]
fn pro_match_team_kills_match_the_scoreboard() {
    let source = fixture(PRO);
    let m = enriched(PRO);
    // Radiant 3+5+1+6+0, dire 1+5+8+7+2: the same as the file's scores.
    assert_eq!((m.radiant_kills, m.dire_kills), (15, 23));
    assert_eq!(
        (source.radiant_score, source.dire_score),
        (Some(15), Some(23))
    );
}

#[test]
fn pro_match_reference_names() {
    let m = enriched(PRO);
    assert_eq!(m.match_id, 3_254_426_673);
    assert_eq!(m.game_mode_name.as_deref(), Some("game_mode_captains_mode"));
    assert_eq!(m.lobby_type_name.as_deref(), Some("lobby_type_practice"));
    // Cluster 225 is region 17 in dotaconstants.
    assert_eq!(m.region.as_deref(), Some("PW TELECOM GUANGDONG"));
    assert_eq!(
        m.radiant_team.as_ref().and_then(|t| t.name.as_deref()),
        Some("Planet Odd")
    );
    assert_eq!(
        m.dire_team.as_ref().and_then(|t| t.name.as_deref()),
        Some("Newbee")
    );
    assert!(m.unknown_ids.is_empty(), "{:?}", m.unknown_ids);
    assert_eq!(m.enriched_at_ms, ENRICHED_AT_MS);
}

#[test]
fn pro_match_players() {
    let m = enriched(PRO);
    assert_eq!(m.players.len(), 10);

    // Slot 0: hero 107, 3/6/5, items 0,0,0,214,181,34.
    let earth_spirit = player(&m, 0);
    assert_eq!(earth_spirit.hero_name.as_deref(), Some("Earth Spirit"));
    assert_eq!(earth_spirit.primary_attr.as_deref(), Some("str"));
    assert!(earth_spirit.hero_roles.iter().any(|r| r == "Initiator"));
    assert!(earth_spirit.is_radiant);
    assert!(!earth_spirit.won, "radiant_win is false");
    assert_close(earth_spirit.kda, 8.0 / 6.0, "kda");
    assert_close(earth_spirit.kill_participation, 8.0 / 15.0, "kp");
    assert_eq!(
        earth_spirit.item_names,
        ["tranquil_boots", "orb_of_venom", "magic_stick"]
    );
    assert_eq!(
        earth_spirit.net_worth_share, None,
        "the file has no net worth"
    );

    // Slot 130: hero 6, 8/1/10.
    let drow = player(&m, 130);
    assert_eq!(drow.hero_name.as_deref(), Some("Drow Ranger"));
    assert!(!drow.is_radiant);
    assert!(drow.won);
    assert_close(drow.kda, 18.0, "kda");
    assert_close(drow.kill_participation, 18.0 / 23.0, "kp");
    assert_eq!(
        drow.item_names,
        [
            "invis_sword",
            "diffusal_blade",
            "hurricane_pike",
            "ring_of_aquila",
            "magic_wand",
            "power_treads"
        ]
    );

    // Slot 4: hero 41, 0/4/7.
    let void = player(&m, 4);
    assert_eq!(void.hero_name.as_deref(), Some("Faceless Void"));
    assert_close(void.kda, 7.0 / 4.0, "kda");

    let won: Vec<(i32, bool)> = m.players.iter().map(|p| (p.player_slot, p.won)).collect();
    assert_eq!(
        won,
        [
            (0, false),
            (1, false),
            (2, false),
            (3, false),
            (4, false),
            (128, true),
            (129, true),
            (130, true),
            (131, true),
            (132, true)
        ]
    );
}

#[test]
fn pro_match_lane_roles_follow_gpm_rank() {
    // Radiant GPM 190, 319, 420, 363, 276; dire 252, 687, 524, 464, 280.
    assert_eq!(
        roles_by_slot(&enriched(PRO)),
        [
            (0, "support"),
            (1, "offlane"),
            (2, "core"),
            (3, "core"),
            (4, "support"),
            (128, "support"),
            (129, "core"),
            (130, "core"),
            (131, "offlane"),
            (132, "support")
        ]
    );
}

#[test]
fn public_match_values() {
    let m = enriched(PUB);
    // Radiant 8+6+9+25+3, dire 2+3+13+3+1.
    assert_eq!((m.radiant_kills, m.dire_kills), (51, 22));
    assert_eq!(m.game_mode_name.as_deref(), Some("game_mode_all_draft"));
    assert_eq!(m.lobby_type_name.as_deref(), Some("lobby_type_ranked"));
    assert_eq!(m.region.as_deref(), Some("EUROPE"));
    // Slot 3: hero 46, 25/2/6.
    let templar = player(&m, 3);
    assert_eq!(templar.hero_name.as_deref(), Some("Templar Assassin"));
    assert!(templar.won);
    assert_close(templar.kda, 15.5, "kda");
    assert_close(templar.kill_participation, 31.0 / 51.0, "kp");
    assert_eq!(templar.lane_role, LaneRole::Core.as_str());
    // Anonymous players stay anonymous.
    assert_eq!(player(&m, 1).account_id, None);
    assert!(m.unknown_ids.is_empty(), "{:?}", m.unknown_ids);
}

#[test]
fn game_coordinator_match_has_net_worth_shares() {
    let m = enriched(RETRIEVER);
    assert_eq!((m.radiant_kills, m.dire_kills), (51, 22));
    // Radiant net worth 13061+32064+17706+25280+8602 = 96713,
    // dire 6960+5856+13468+6712+12079 = 45075.
    assert_close(
        player(&m, 1).net_worth_share.unwrap(),
        32064.0 / 96713.0,
        "alchemist",
    );
    assert_close(
        player(&m, 132).net_worth_share.unwrap(),
        12079.0 / 45075.0,
        "anti-mage",
    );
    for radiant in [true, false] {
        let total: f64 = m
            .players
            .iter()
            .filter(|p| p.is_radiant == radiant)
            .map(|p| p.net_worth_share.unwrap())
            .sum();
        assert_close(total, 1.0, "shares of a side");
    }
}

#[test]
fn net_worth_share_needs_every_teammate() {
    let mut source = fixture(RETRIEVER);
    source.players[0].net_worth = None;
    let m = stats::enrich(&source, Reference::get(), ENRICHED_AT_MS);
    let radiant_shares: Vec<Option<f64>> =
        m.players[..5].iter().map(|p| p.net_worth_share).collect();
    assert_eq!(radiant_shares, [None; 5]);
    assert!(m.players[5..].iter().all(|p| p.net_worth_share.is_some()));
}

#[test]
fn lane_roles_are_unknown_for_a_short_side() {
    let mut source = fixture(PRO);
    source.players.remove(0);
    let m = stats::enrich(&source, Reference::get(), 0);
    let roles = roles_by_slot(&m);
    assert!(
        roles[..4].iter().all(|(_, role)| *role == "unknown"),
        "{roles:?}"
    );
    assert!(
        roles[4..].iter().all(|(_, role)| *role != "unknown"),
        "{roles:?}"
    );
}

/// The pro match with ids the reference does not know.
fn with_unknown_ids() -> MatchCompleted {
    let mut source = fixture(PRO);
    source.game_mode = 99;
    source.lobby_type = 99;
    source.cluster = 999;
    source.players[0].hero_id = 999;
    source.players[0].items[0] = 9999;
    // The same unknown item twice is listed once.
    source.players[5].items[2] = 9999;
    source
}

#[test]
fn unknown_ids_are_enriched_around_and_listed() {
    let m = stats::enrich(&with_unknown_ids(), Reference::get(), ENRICHED_AT_MS);
    assert_eq!(
        m.unknown_ids,
        [
            "game_mode:99",
            "lobby_type:99",
            "cluster:999",
            "hero:999",
            "item:9999"
        ]
    );
    assert_eq!(
        (&m.game_mode_name, &m.lobby_type_name, &m.region),
        (&None, &None, &None)
    );
    assert_eq!(m.players.len(), 10);
    let unknown_hero = player(&m, 0);
    assert_eq!(unknown_hero.hero_id, 999);
    assert_eq!(unknown_hero.hero_name, None);
    assert_eq!(unknown_hero.primary_attr, None);
    assert!(unknown_hero.hero_roles.is_empty());
    assert_close(unknown_hero.kda, 8.0 / 6.0, "stats do not need the hero");
    assert_eq!(
        unknown_hero.item_names,
        ["tranquil_boots", "orb_of_venom", "magic_stick"]
    );
    // Vengeful Spirit kept her other items: 214, 36, _, 254, 92.
    assert_eq!(
        player(&m, 128).item_names,
        [
            "tranquil_boots",
            "magic_wand",
            "glimmer_cape",
            "urn_of_shadows"
        ]
    );
    assert_eq!((m.radiant_kills, m.dire_kills), (15, 23));
}

// --- the handler ---

fn delivery(offset: i64, key: &[u8], payload: Vec<u8>) -> Delivery {
    Delivery {
        topic: DEFAULT_INPUT_TOPIC.into(),
        partition: 0,
        position: Position::Offset(offset),
        key: Some(key.to_vec().into()),
        payload: payload.into(),
        timestamp_ms: None,
    }
}

fn encoded(m: &MatchCompleted) -> Vec<u8> {
    Codec::default().encode(m, Encoding::SingleObject).unwrap()
}

fn fixed_clock() -> i64 {
    ENRICHED_AT_MS
}

struct FailingPublisher;

#[async_trait]
impl Publisher for FailingPublisher {
    async fn publish_batch(&self, _topic: &str, _records: &[Record]) -> Result<(), BusError> {
        Err(BusError::Config("the output topic is away".into()))
    }
}

#[tokio::test]
async fn handler_publishes_what_decodes_and_fails_the_rest_permanently() {
    let bus = MemoryBus::new(1);
    let handler = EnrichHandler::new(bus.publisher().await.unwrap())
        .with_output_topic("enriched.custom")
        .with_clock(fixed_clock);
    let unknown = with_unknown_ids();
    let outcomes = handler
        .handle(&[
            delivery(0, b"a", encoded(&unknown)),
            delivery(1, b"b", GARBAGE.to_vec()),
        ])
        .await;
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    let err = outcomes[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), "decode");
    assert!(!err.is_retriable());

    let mut reader = bus
        .subscribe("reader", &["enriched.custom".into()])
        .await
        .unwrap();
    let got = reader.poll(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1, "only the decodable match is published");
    assert_eq!(got[0].key.as_deref(), Some(b"3254426673".as_slice()));
    let published: MatchEnriched = Codec::default().decode(&got[0].payload).unwrap();
    assert_eq!(
        published,
        stats::enrich(&unknown, Reference::get(), ENRICHED_AT_MS),
        "a match with unknown ids is published, not dropped"
    );
}

#[tokio::test]
async fn publish_failure_is_retriable_for_the_published_deliveries_only() {
    let handler = EnrichHandler::new(Arc::new(FailingPublisher));
    assert_eq!(handler.output_topic(), DEFAULT_OUTPUT_TOPIC);
    let outcomes = handler
        .handle(&[
            delivery(0, b"a", encoded(&fixture(PRO))),
            delivery(1, b"b", GARBAGE.to_vec()),
            delivery(2, b"c", encoded(&fixture(PUB))),
        ])
        .await;
    let kinds: Vec<(&str, bool)> = outcomes
        .iter()
        .map(|o| {
            let err = o.as_ref().unwrap_err();
            (err.kind(), err.is_retriable())
        })
        .collect();
    assert_eq!(
        kinds,
        [("publish", true), ("decode", false), ("publish", true)]
    );
}

// --- end to end on the in-memory bus ---

/// Polls `topic` from its own group until `count` records arrived or time runs out.
async fn read_records(bus: &MemoryBus, topic: &str, count: usize) -> Vec<Delivery> {
    let mut reader = bus
        .subscribe(&format!("reader-{topic}"), &[topic.to_string()])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < count && tokio::time::Instant::now() < deadline {
        got.extend(reader.poll(100, Duration::from_millis(100)).await.unwrap());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_enriches_real_matches_and_dead_letters_garbage() {
    let bus = MemoryBus::new(4);
    let publisher = bus.publisher().await.unwrap();
    let matches = [fixture(PRO), fixture(PUB), fixture(RETRIEVER)];
    let mut input: Vec<Record> = matches
        .iter()
        .map(|m| Record::new(m.match_id.to_string(), encoded(m)))
        .collect();
    input.push(Record::new("garbage", GARBAGE));
    publisher
        .publish_batch(DEFAULT_INPUT_TOPIC, &input)
        .await
        .unwrap();

    let mut config = RunnerConfig::new("enrich");
    config.batch_wait = Duration::from_millis(20);
    let dead_letter_topic = config.dead_letter_topic.clone();
    let handler = EnrichHandler::new(publisher.clone()).with_clock(fixed_clock);
    let runner = Runner::new(config, Arc::new(handler), publisher);
    let subscription = bus
        .subscribe("enrich", &[DEFAULT_INPUT_TOPIC.into()])
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { runner.run(subscription, shutdown).await }
    });

    let outputs = read_records(&bus, DEFAULT_OUTPUT_TOPIC, 3).await;
    let letters = read_records(&bus, &dead_letter_topic, 1).await;
    shutdown.cancel();
    let stats = running.await.unwrap().unwrap();
    assert_eq!((stats.handled, stats.dead_lettered), (3, 1));

    let codec = Codec::default();
    let mut enriched: Vec<(Vec<u8>, MatchEnriched)> = outputs
        .iter()
        .map(|d| {
            (
                d.key.as_deref().unwrap().to_vec(),
                codec.decode(&d.payload).unwrap(),
            )
        })
        .collect();
    assert_eq!(enriched.len(), 3);
    // The two sources of match 1781962623 differ only in net worth (the GC has it).
    enriched.sort_by_key(|(_, m)| (m.match_id, m.players[0].net_worth_share.is_some()));
    let expected: Vec<MatchEnriched> = [&matches[1], &matches[2], &matches[0]]
        .into_iter()
        .map(|m| stats::enrich(m, Reference::get(), ENRICHED_AT_MS))
        .collect();
    for ((key, got), want) in enriched.iter().zip(&expected) {
        assert_eq!(key, want.match_id.to_string().as_bytes());
        assert_eq!(got, want);
    }
    let pro = &enriched[2].1;
    assert_eq!((pro.radiant_kills, pro.dire_kills), (15, 23));
    assert_eq!(player(pro, 130).hero_name.as_deref(), Some("Drow Ranger"));

    assert_eq!(letters.len(), 1);
    let letter: DeadLetter = codec.decode(&letters[0].payload).unwrap();
    assert_eq!(letter.error_kind, "decode");
    assert_eq!(letter.original, GARBAGE);
    assert_eq!(letter.key.as_deref(), Some(b"garbage".as_slice()));
    assert_eq!(letter.topic, DEFAULT_INPUT_TOPIC);
    assert_eq!(letter.consumer_group, "enrich");

    // Everything was acked: the group's committed offsets reach the end of each partition.
    for (partition, len) in bus
        .partition_lengths(DEFAULT_INPUT_TOPIC)
        .into_iter()
        .enumerate()
    {
        let committed = bus.committed("enrich", DEFAULT_INPUT_TOPIC, partition as i32);
        assert_eq!(committed.unwrap_or(0), len as i64, "partition {partition}");
    }
}
