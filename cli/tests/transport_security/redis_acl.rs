//! Redis over TLS: each client's ACL user with only its rights; wrong
//! credentials and hosts are refused.

use crate::common::tls::*;
use crate::roundtrip;

use std::time::Duration;

use consumers::cache::{Cache, CacheConfig, CacheWrite, Layer, VersionAt};
use consumers::jobs::{Decision, JobsConfig, RateLimit, RateLimiter};
use pipeline::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use pipeline::redis_tls::RedisTls;

fn error_of(result: redis::RedisResult<redis::Value>) -> String {
    result.expect_err("redis should refuse this").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_serves_each_client_over_tls_with_only_its_acl_rights() {
    let ca = TestCa::new("scoutstream test CA");
    let redis = TlsRedis::start(&ca);
    let identity = ca.client("scoutstream-cache");
    let tls = RedisTls {
        ca: ca.ca_pem(),
        cert: identity.cert_pem.clone(),
        key: identity.key_pem.clone(),
    };

    let cache = Cache::connect(CacheConfig {
        redis_url: redis.url("scoutstream-cache", "127.0.0.1"),
        redis_tls: tls.clone(),
        ..CacheConfig::default()
    })
    .await
    .unwrap();
    assert!(!cache.is_on_fallback(), "the cache reached Redis");
    assert_eq!(
        cache
            .set("match:1", "{\"match_id\":1}", Duration::from_secs(60))
            .await,
        Layer::Redis
    );
    assert_eq!(
        cache.get("match:1").await.as_deref(),
        Some("{\"match_id\":1}")
    );
    // The cache group's batch path: one pipeline (SET, EVALSHA after SCRIPT
    // LOAD on this new server, DEL), then MGET. A refused pipeline lands in
    // memory (Layer::Memory); a refused MGET reads memory, which holds none.
    let batch = [
        CacheWrite::Set {
            key: "match:2".into(),
            value: "{\"match_id\":2}".into(),
            ttl: Duration::from_secs(60),
        },
        CacheWrite::SetIfNewer {
            key: "player:7:latest_match".into(),
            value: "100".into(),
            version: 100,
            version_at: VersionAt::Value,
            ttl: Duration::from_secs(60),
            invalidate: vec!["scout:player:7".into()],
        },
        CacheWrite::Delete {
            keys: vec!["match:3".into()],
        },
    ];
    assert_eq!(cache.write_all(&batch).await, Layer::Redis);
    assert_eq!(
        cache.get_many(&["match:2", "player:7:latest_match"]).await,
        [Some("{\"match_id\":2}".into()), Some("100".into())]
    );
    assert_eq!(cache.counters().redis_errors(), 0);

    let mut jobs = JobsConfig {
        redis_url: redis.url("scoutstream-jobs", "127.0.0.1"),
        redis_tls: tls.clone(),
        ..JobsConfig::default()
    };
    jobs.rate_limits
        .insert("tls-test".into(), RateLimit::per_second(10));
    let limiter = RateLimiter::new(&jobs).unwrap();
    let decision = limiter.try_acquire("tls-test").await;
    assert!(
        matches!(decision, Decision::Granted { shared: true, .. }),
        "the limiter decided in Redis: {decision:?}"
    );

    let bus = RedisStreamsBus::connect(RedisStreamsConfig {
        url: redis.url("scoutstream-bus", "127.0.0.1"),
        tls: tls.clone(),
        session_timeout: Duration::from_secs(3),
        claim_idle: Duration::from_secs(2),
        ..RedisStreamsConfig::default()
    })
    .await
    .unwrap();
    roundtrip(&bus, "tls-topic").await;

    let client =
        pipeline::redis_tls::client(&redis.url("scoutstream-cache", "127.0.0.1"), &tls).unwrap();
    let mut cache_user = client.get_multiplexed_async_connection().await.unwrap();
    let outside_its_rights = [
        redis::cmd("FLUSHALL"),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        redis::cmd("XADD")
            .arg("scoutstream:cache:stream")
            .arg("*")
            .arg("a")
            .arg("b")
            .clone(),
        redis::cmd("GET")
            .arg("scoutstream:jobs:ratelimit:tls-test")
            .clone(),
    ];
    for command in outside_its_rights {
        let err = error_of(command.query_async(&mut cache_user).await);
        assert!(err.contains("NOPERM"), "{err}");
    }

    let wrong_password = format!("rediss://scoutstream-cache:wrong@127.0.0.1:{}", redis.port);
    let err = pipeline::redis_tls::client(&wrong_password, &tls)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect_err("a wrong password is refused")
        .to_string();
    assert!(err.contains("AuthenticationFailed"), "{err}");

    let no_user = format!("rediss://127.0.0.1:{}", redis.port);
    let mut default_user = pipeline::redis_tls::client(&no_user, &tls)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let err = error_of(redis::cmd("PING").query_async(&mut default_user).await);
    assert!(err.contains("NOAUTH"), "the default user is off: {err}");

    let without_certificate = RedisTls {
        ca: ca.ca_pem(),
        ..RedisTls::default()
    };
    let refused = pipeline::redis_tls::client(
        &redis.url("scoutstream-cache", "127.0.0.1"),
        &without_certificate,
    )
    .unwrap()
    .get_multiplexed_async_connection()
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );

    let other_host = redis.url("scoutstream-cache", "localhost");
    let err = pipeline::redis_tls::client(&other_host, &tls)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect_err("a certificate for another host is refused")
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let plaintext = format!("redis://scoutstream-cache:x@127.0.0.1:{}", redis.port);
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        redis::Client::open(plaintext)
            .unwrap()
            .get_multiplexed_async_connection(),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plaintext connection to the TLS port is refused"
    );
}
