//! Configuration: defaults and rejected nonsense.

use std::time::Duration;

use consumers::cache::{Cache, CacheConfig, CacheError};

// ---- configuration -----------------------------------------------------

#[tokio::test]
async fn config_has_defaults_and_rejects_nonsense() {
    let parsed: CacheConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(parsed, CacheConfig::default());
    assert_eq!(parsed.key_prefix, "scoutstream:cache:");
    assert_eq!(parsed.match_ttl(), Duration::from_secs(86_400));
    assert_eq!(parsed.player_ttl(), Duration::from_secs(3_600));
    assert_eq!(parsed.scout_ttl(), Duration::from_secs(600));
    assert_eq!(parsed.redis_timeout(), Duration::from_millis(500));

    let parsed: CacheConfig = serde_json::from_str(r#"{"player_ttl_secs": 60}"#).unwrap();
    assert_eq!(parsed.player_ttl_secs, 60);
    assert_eq!(parsed.match_ttl_secs, 86_400);
    assert!(serde_json::from_str::<CacheConfig>(r#"{"player_ttl": 60}"#).is_err());

    let zero = CacheConfig {
        scout_ttl_secs: 0,
        ..CacheConfig::default()
    };
    let err = Cache::connect(zero).await.err().unwrap();
    assert!(
        matches!(
            err,
            CacheError::InvalidConfig {
                field: "scout_ttl_secs",
                ..
            }
        ),
        "{err}"
    );
    let bad_url = CacheConfig {
        redis_url: "not a url".into(),
        ..CacheConfig::default()
    };
    let err = Cache::connect(bad_url).await.err().unwrap();
    assert!(matches!(err, CacheError::InvalidUrl { .. }), "{err}");
}
