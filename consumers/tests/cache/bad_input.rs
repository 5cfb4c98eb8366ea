//! Bad input: undecodable or misrouted deliveries fail permanently.

use consumers::cache::keys;
use pipeline::runner::{Handler, HandlerError};
use schemas::topics;

use super::*;

// ---- bad input ---------------------------------------------------------

fn assert_permanent(outcome: &Result<(), HandlerError>, kind: &str) {
    let err = outcome.as_ref().unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(!err.is_retriable(), "{err}");
}

#[tokio::test]
async fn undecodable_or_misrouted_deliveries_fail_permanently() {
    let config = config(&shared_redis_url());
    let handler = handler_on(config.clone()).await;
    let pro = fixture_match(PRO);
    let public = fixture_match(PUB);
    let batch = [
        delivery(topics::MATCHES, &pro),
        raw_delivery(topics::MATCHES, b"definitely not a match".to_vec()),
        delivery(topics::PLAYERS, &pro),
        delivery(topics::MATCHES_ENRICHED, &pro),
        delivery(topics::MATCHES, &public),
    ];

    let outcomes = handler.handle(&batch).await;

    assert_eq!(outcomes.len(), batch.len());
    assert!(outcomes[0].is_ok());
    assert_permanent(&outcomes[1], "decode");
    assert_permanent(&outcomes[2], "decode");
    assert_permanent(&outcomes[3], "unknown_topic");
    assert!(outcomes[4].is_ok(), "a bad delivery does not stop the next");
    let cache = handler.cache();
    assert!(cache.get(&keys::match_key(pro.match_id)).await.is_some());
    assert!(cache.get(&keys::match_key(public.match_id)).await.is_some());
}
