//! Rate limiting: the Redis limiter shared by instances and processes, and its fallback.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use consumers::jobs::{JobsConfig, RateLimit, RateLimiter};
use pipeline::bus::now_ms;

use super::*;

// ---------------------------------------------------------------------------
// Rate limiting.

fn limiter_config(service: &str, limit: RateLimit, redis_url: &str) -> JobsConfig {
    let mut rate_limits = BTreeMap::new();
    rate_limits.insert(service.to_string(), limit);
    JobsConfig {
        rate_limits,
        redis_url: redis_url.to_string(),
        key_prefix: format!("{}:", unique("sstest-limit-")),
        redis_timeout_ms: 300,
        redis_retry_interval_ms: 60_000,
        ..JobsConfig::default()
    }
}

/// Grants per 1-second window, from `start_us`; full windows only.
fn per_window(grants: &[i64], start_us: i64, windows: usize) -> Vec<usize> {
    let mut counts = vec![0usize; windows];
    for at in grants {
        let window = ((at - start_us) / 1_000_000) as usize;
        if window < windows {
            counts[window] += 1;
        }
    }
    counts
}

/// Acquires `service` from `tasks` concurrent callers until `deadline`;
/// returns the grant times (microseconds, the limiter's clock).
async fn hammer(limiter: RateLimiter, service: &str, tasks: usize, deadline: Instant) -> Vec<i64> {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let limiter = limiter.clone();
        let service = service.to_string();
        handles.push(tokio::spawn(async move {
            let mut grants = Vec::new();
            while Instant::now() < deadline {
                let permit = limiter.acquire(&service).await;
                grants.push(permit.at_us);
                assert!(permit.shared, "Redis is up: the shared limit applies");
            }
            grants
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_share_one_limit() {
    const N: usize = 20;
    const SECONDS: usize = 10;
    let config = limiter_config("svc", RateLimit::per_second(N as u32), &redis_url());
    // Two instances with their own Redis connections: two worker processes.
    let a = RateLimiter::new(&config).unwrap();
    let b = RateLimiter::new(&config).unwrap();
    let start_us = now_ms() * 1_000;
    let deadline = Instant::now() + Duration::from_secs(SECONDS as u64);
    let (left, right) = tokio::join!(hammer(a, "svc", 4, deadline), hammer(b, "svc", 4, deadline));
    let mut grants = left.clone();
    grants.extend(&right);
    grants.sort_unstable();
    // Windows from the first grant on the limiter's (Redis's) clock.
    let first = grants[0];
    let counts = per_window(&grants, first, SECONDS - 1);
    println!(
        "per-second grants: {counts:?}; instance a {} b {}; total {} in {SECONDS} s",
        left.len(),
        right.len(),
        grants.len()
    );
    assert!(counts.iter().all(|c| *c <= N), "{counts:?} exceed {N}/s");
    let full: usize = counts.iter().sum();
    assert!(
        full >= (SECONDS - 1) * N * 9 / 10,
        "throughput {full} far below the limit {}",
        (SECONDS - 1) * N
    );
    assert!(
        !left.is_empty() && !right.is_empty(),
        "both instances got permits"
    );
    let _ = start_us;
}

/// The worker process of `two_worker_processes_share_one_limit`: this test
/// binary re-run with `--exact limiter::limiter_worker_process --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of two_worker_processes_share_one_limit"]
async fn limiter_worker_process() {
    let var = |name: &str| std::env::var(name).unwrap();
    let mut config = limiter_config(
        "svc",
        RateLimit::per_second(var("LIMIT_N").parse().unwrap()),
        &redis_url(),
    );
    config.key_prefix = var("LIMIT_PREFIX");
    let limiter = RateLimiter::new(&config).unwrap();
    let until_ms: i64 = var("LIMIT_UNTIL_MS").parse().unwrap();
    let deadline = Instant::now() + Duration::from_millis((until_ms - now_ms()).max(0) as u64);
    let grants = hammer(limiter, "svc", 4, deadline).await;
    let lines: Vec<String> = grants.iter().map(i64::to_string).collect();
    std::fs::write(var("LIMIT_OUT"), lines.join("\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_one_limit() {
    const N: usize = 20;
    const SECONDS: usize = 10;
    let prefix = format!("{}:", unique("sstest-limit-procs-"));
    let until_ms = now_ms() + 1_000 + SECONDS as i64 * 1_000;
    let outputs: Vec<std::path::PathBuf> = (0..2)
        .map(|i| std::env::temp_dir().join(format!("{}-{i}", unique("limit-worker"))))
        .collect();
    let children: Vec<std::process::Child> = outputs
        .iter()
        .map(|out| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "limiter::limiter_worker_process",
                    "--ignored",
                    "--nocapture",
                ])
                .env("LIMIT_N", N.to_string())
                .env("LIMIT_PREFIX", &prefix)
                .env("LIMIT_UNTIL_MS", until_ms.to_string())
                .env("LIMIT_OUT", out)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a worker process failed");
    }
    let per_process: Vec<Vec<i64>> = outputs
        .iter()
        .map(|out| {
            std::fs::read_to_string(out)
                .unwrap()
                .lines()
                .map(|l| l.parse().unwrap())
                .collect()
        })
        .collect();
    let mut grants: Vec<i64> = per_process.concat();
    grants.sort_unstable();
    // Windows on the limiter's (Redis's) clock; the last, partial one is left out.
    let counts = per_window(&grants, grants[0], SECONDS - 1);
    println!(
        "two processes, per-second grants: {counts:?}; per process {:?}",
        per_process.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(counts.iter().all(|c| *c <= N), "{counts:?} exceed {N}/s");
    assert!(
        counts.iter().sum::<usize>() >= (SECONDS - 1) * N * 9 / 10,
        "{counts:?} far below the limit"
    );
    assert!(
        per_process.iter().all(|g| !g.is_empty()),
        "both processes got permits"
    );
    for out in outputs {
        std::fs::remove_file(out).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_falls_back_to_a_fraction_when_redis_is_down() {
    const N: u32 = 20;
    // Nothing listens on a freshly closed port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = JobsConfig {
        rate_limit_fallback_fraction: 0.5,
        ..limiter_config(
            "svc",
            RateLimit::per_second(N),
            &format!("redis://127.0.0.1:{port}"),
        )
    };
    let limiter = RateLimiter::new(&config).unwrap();
    let first = limiter.acquire("svc").await;
    assert!(!first.shared);
    assert!(limiter.is_on_fallback());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut grants = vec![first.at_us];
    while Instant::now() < deadline {
        let permit = limiter.acquire("svc").await;
        assert!(!permit.shared);
        grants.push(permit.at_us);
    }
    let counts = per_window(&grants, grants[0], 2);
    println!("fallback per-second grants: {counts:?}");
    assert!(counts.iter().all(|c| *c <= (N / 2) as usize), "{counts:?}");
    assert!(
        counts.iter().all(|c| *c >= (N / 2 - 2) as usize),
        "{counts:?}"
    );
    // Services without a limit pass at once.
    assert!(limiter.acquire("unlimited").await.waited < Duration::from_millis(5));
}
