//! Secrets never leave the process: with canary values for every password and
//! token the configuration takes, the binary runs at TRACE level, and no
//! output (stdout, stderr, `/metrics`, API answers) holds any of them.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use std::process::Stdio;
use std::time::Duration;

const DATABASE_PASSWORD: &str = "canaryDbPassw0rd7";
const REDIS_PASSWORD: &str = "canaryRedisPassw0rd7";
const KAFKA_PASSWORD: &str = "canaryKafkaPassw0rd7";
const API_TOKEN: &str = "canaryApiT0ken7";
const REGISTRY_PASSWORD: &str = "canaryRegistryPassw0rd7";

fn canaries() -> [&'static str; 5] {
    [
        DATABASE_PASSWORD,
        REDIS_PASSWORD,
        KAFKA_PASSWORD,
        API_TOKEN,
        REGISTRY_PASSWORD,
    ]
}

/// The registry's URL with basic-auth credentials (the local one ignores them).
fn registry_url_with_password(base: &str) -> String {
    base.replacen("://", &format!("://scoutstream:{REGISTRY_PASSWORD}@"), 1)
}

fn read_all(mut file: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    file.rewind().unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    text.push_str(&String::from_utf8_lossy(&bytes));
    text
}

fn assert_no_canary(what: &str, text: &str) {
    for canary in canaries() {
        assert!(
            !text.contains(canary),
            "{what} holds the secret {canary}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_at_trace_level() {
    let deployment = Deployment::new("kafka").await;
    // PostgreSQL here trusts loopback, so any password connects; this Redis has
    // no password, so AUTH fails and the cache runs on its fallback, logging why.
    let database_url =
        deployment
            .database_url
            .replacen("postgres@", &format!("postgres:{DATABASE_PASSWORD}@"), 1);
    let redis_url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:6379");
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[bus.kafka.client]\n\"sasl.username\" = \"scoutstream\"\n\"sasl.password\" = \"{KAFKA_PASSWORD}\"\n"
        ),
    )
    .unwrap();
    // The token comes from a file, as a mounted Secret would.
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), format!("{API_TOKEN}\n")).unwrap();
    let with_secrets = |args: &[&str]| {
        let mut command = deployment.command(args);
        command
            .arg("--config")
            .arg(config.path())
            .env("SCOUTSTREAM__DATABASE__URL", &database_url)
            .env("SCOUTSTREAM__CACHE__REDIS_URL", &redis_url)
            .env("SCOUTSTREAM__JOBS__REDIS_URL", &redis_url)
            .env("SCOUTSTREAM__JOBS__API_TOKEN_FILE", token_file.path())
            .env(
                "SCOUTSTREAM__SCHEMA_REGISTRY__URL",
                registry_url_with_password(&schema_registry_url()),
            )
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "1");
        command
    };

    let mut fixtures = vec!["produce".to_string()];
    fixtures.extend(fixture_paths());
    let args: Vec<&str> = fixtures.iter().map(String::as_str).collect();
    let produced = with_secrets(&args).output().unwrap();
    assert!(produced.status.success());
    assert_no_canary("produce stdout", &String::from_utf8_lossy(&produced.stdout));
    assert_no_canary("produce stderr", &String::from_utf8_lossy(&produced.stderr));

    // TRACE writes megabytes: into files, since a full pipe would block the run.
    let (out, err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let (out_reader, err_reader) = (out.try_clone().unwrap(), err.try_clone().unwrap());
    let mut run = with_secrets(&["run", "--groups", "persist,cache,jobs"])
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    let pool = deployment.pool().await;
    wait_for_at_least(&pool, "SELECT count(*) FROM matches", 2).await;
    let port = deployment.observe_port;
    let enqueue = Some("{\"job_type\":\"refresh_player\"}");
    let answers = [
        http_get(port, "/metrics").1,
        http_get(port, "/readyz").1,
        http(port, "GET", "/jobs", None).1,
        http(port, "POST", "/jobs", enqueue).1,
    ];
    // The file's token (without its newline) is the one the API wants.
    let authorized = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/jobs?status=queued"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 200);
    assert!(answers[2].contains("bearer token"), "{}", answers[2]);
    for (what, answer) in ["metrics", "readyz", "jobs 401", "jobs 401 post"]
        .iter()
        .zip(&answers)
    {
        assert!(!answer.is_empty(), "{what}: no answer");
        assert_no_canary(what, answer);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = run.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(run.wait().unwrap().success(), "run did not exit cleanly");
    let (stdout, stderr) = (read_all(out_reader), read_all(err_reader));
    assert!(stderr.contains("TRACE"), "not at trace level");
    assert_no_canary("run stdout", &stdout);
    assert_no_canary("run stderr", &stderr);

    // A configuration error quotes the field, not the value around a password.
    let failed = with_secrets(&["lag"])
        .env(
            "SCOUTSTREAM__DATABASE__URL",
            format!("mysql://root:{DATABASE_PASSWORD}@db/x"),
        )
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(2));
    assert_no_canary("config error", &String::from_utf8_lossy(&failed.stderr));
    let redis_error = with_secrets(&["lag"])
        .env("SCOUTSTREAM__BUS__BACKEND", "redis-streams")
        .env(
            "SCOUTSTREAM__BUS__REDIS__URL",
            format!("http://:{REDIS_PASSWORD}@x"),
        )
        .output()
        .unwrap();
    assert_eq!(redis_error.status.code(), Some(2));
    assert_no_canary(
        "redis url error",
        &String::from_utf8_lossy(&redis_error.stderr),
    );
    // An unreachable registry: the error names it, without the password.
    let unreachable = with_secrets(&["schemas", "check"])
        .env(
            "SCOUTSTREAM__SCHEMA_REGISTRY__URL",
            registry_url_with_password("http://127.0.0.1:9"),
        )
        .env("SCOUTSTREAM__SCHEMA_REGISTRY__MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success());
    assert!(
        stderr.contains("http://scoutstream:***@127.0.0.1:9"),
        "{stderr}"
    );
    assert_no_canary("registry error", &stderr);
    pool.close().await;
    deployment.drop_database().await;
}
