//! The handler: slices of deliveries, bad deliveries, an unreachable store.

use consumers::persist::{PersistEvent, PersistHandler};
use pipeline::bus::{Delivery, Position};
use pipeline::runner::Handler;
use schemas::codec::{Codec, Encoding};
use schemas::topics;

use super::*;
use crate::tables::*;

// ---------------------------------------------------------------------------
// The handler.

fn delivery(topic: &str, offset: i64, payload: Vec<u8>) -> Delivery {
    Delivery {
        topic: topic.into(),
        partition: 0,
        position: Position::Offset(offset),
        key: None,
        payload: payload.into(),
        timestamp_ms: None,
    }
}

fn encode(event: &PersistEvent) -> (&'static str, Vec<u8>) {
    let codec = Codec::default();
    match event {
        PersistEvent::Match(m) => (
            topics::MATCHES,
            codec.encode(m, Encoding::SingleObject).unwrap(),
        ),
        PersistEvent::Profile(p) => (topics::PLAYERS, codec.encode(p, Encoding::Json).unwrap()),
    }
}

pub(crate) async fn handler_persists_slices_and_rejects_bad_deliveries(env: Env) {
    let store = env.store().await;
    let handler = PersistHandler::new(store.clone(), "persist-test");
    let events = all_fixtures();
    let mut deliveries: Vec<Delivery> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (topic, payload) = encode(e);
            delivery(topic, i as i64, payload)
        })
        .collect();

    let mut duplicate_slot = fixture_match("details_api_pro.json");
    duplicate_slot.match_id = 1;
    duplicate_slot.players[1].player_slot = 0;
    let mut negative_kills = fixture_match("details_api_pro.json");
    negative_kills.match_id = 2;
    negative_kills.players[3].kills = -1;
    let bad = [
        delivery(topics::MATCHES, 10, b"\xC3\x01 not avro".to_vec()),
        delivery(topics::JOBS, 11, encode(&events[0]).1),
        delivery(
            topics::MATCHES,
            12,
            encode(&PersistEvent::Match(duplicate_slot)).1,
        ),
        // Passes the handler's checks; the database's CHECK rejects it.
        delivery(
            topics::MATCHES,
            13,
            encode(&PersistEvent::Match(negative_kills)).1,
        ),
    ];
    deliveries.splice(2..2, bad);

    let outcomes = handler.handle(&deliveries).await;
    assert_eq!(outcomes.len(), deliveries.len());
    let kinds: Vec<Option<(&str, bool)>> = outcomes
        .iter()
        .map(|o| o.as_ref().err().map(|e| (e.kind(), e.is_retriable())))
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            None,
            Some(("decode", false)),
            Some(("unknown_topic", false)),
            Some(("invalid", false)),
            Some(("database", false)),
            None,
            None,
            None,
        ]
    );

    // The good deliveries landed as if written directly.
    let direct = env.store().await;
    direct.write(&events).await.unwrap();
    let expected = dump(&direct).await;
    assert_eq!(dump(&store).await, expected);

    // Redelivered: all good ones succeed again, and nothing changes.
    let again = handler.handle(&deliveries).await;
    let ok: Vec<bool> = again.iter().map(Result::is_ok).collect();
    assert_eq!(
        ok,
        [true, true, false, false, false, false, true, true, true]
    );
    assert_eq!(dump(&store).await, expected);
}

pub(crate) async fn handler_reports_an_unreachable_store_as_retriable(env: Env) {
    let store = env.store().await;
    let handler = PersistHandler::new(store.clone(), "persist-test");
    let deliveries: Vec<Delivery> = all_fixtures()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (topic, payload) = encode(e);
            delivery(topic, i as i64, payload)
        })
        .collect();
    store.close().await;
    let outcomes = handler.handle(&deliveries).await;
    assert_eq!(outcomes.len(), 5);
    for outcome in outcomes {
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), "database");
        assert!(err.is_retriable(), "{err}");
    }
}
