//! The shipped example configuration loads, and bad values stop start-up with
//! a message that names the field.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scoutstream::app::{AppConfig, GroupName, PERSIST_MEMBERS};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/scoutstream.toml")
}

#[test]
fn the_example_config_loads_and_validates() {
    let config: AppConfig = pipeline::config::load(Some(&example()), Vec::new()).unwrap();
    config.validate().unwrap();
    assert_eq!(config.bus.backend, pipeline::config::Backend::Kafka);
    assert_eq!(config.bus.partitions, 12);
    assert_eq!(
        config.bus.kafka.client.get("linger.ms").map(String::as_str),
        Some("5")
    );
    assert_eq!(config.groups.enabled, GroupName::ALL.to_vec());
    assert_eq!(config.observe.bind, "0.0.0.0:9464");
    assert_eq!(config.database.writers, None);
    for backend in [
        pipeline::config::Backend::Kafka,
        pipeline::config::Backend::RedisStreams,
        pipeline::config::Backend::Memory,
    ] {
        let mut on = config.clone();
        on.bus.backend = backend;
        assert_eq!(on.persist_writers(), 1, "{backend:?}: two members instead");
        on.database.writers = Some(3);
        assert_eq!(on.persist_writers(), 3, "{backend:?}");
    }
}

/// Unset, `[runner] batch_size` is 2,500 for persist on Kafka and 500 for
/// every other group and bus; set, it is every group's.
#[test]
fn batch_sizes_default_per_group_and_bus() {
    let config: AppConfig = pipeline::config::load(Some(&example()), Vec::new()).unwrap();
    assert_eq!(config.runner.batch_size, None);
    let batch_size = |config: &AppConfig, group: GroupName| {
        config
            .runner
            .for_group("g", config.default_batch_size(group))
            .batch_size
    };
    assert_eq!(batch_size(&config, GroupName::Persist), 2_500);
    for group in [GroupName::Enrich, GroupName::Cache, GroupName::Jobs] {
        assert_eq!(batch_size(&config, group), 500, "{group:?}");
    }
    let mut on_redis = config.clone();
    on_redis.bus.backend = pipeline::config::Backend::RedisStreams;
    assert_eq!(batch_size(&on_redis, GroupName::Persist), 500);
    let mut set = config.clone();
    set.runner.batch_size = Some(100);
    for group in GroupName::ALL {
        assert_eq!(batch_size(&set, group), 100, "{group:?}");
    }
}

/// Unset, `[groups] members` is [`PERSIST_MEMBERS`] for persist on Kafka and
/// Redis Streams and one for every other group and bus; set, it is every group's.
#[test]
fn members_default_per_group_and_bus() {
    let config: AppConfig = pipeline::config::load(Some(&example()), Vec::new()).unwrap();
    assert_eq!(config.groups.members, None);
    let persist = usize::try_from(PERSIST_MEMBERS).unwrap();
    assert!(persist > 1);
    assert_eq!(config.group_members(GroupName::Persist), persist);
    for group in [GroupName::Enrich, GroupName::Cache, GroupName::Jobs] {
        assert_eq!(config.group_members(group), 1, "{group:?}");
    }
    let mut on_redis = config.clone();
    on_redis.bus.backend = pipeline::config::Backend::RedisStreams;
    assert_eq!(on_redis.group_members(GroupName::Persist), persist);
    for group in [GroupName::Enrich, GroupName::Cache, GroupName::Jobs] {
        assert_eq!(on_redis.group_members(group), 1, "{group:?}");
    }
    let mut embedded = config.clone();
    embedded.bus.backend = pipeline::config::Backend::Memory;
    assert_eq!(embedded.group_members(GroupName::Persist), 1, "in memory");
    let mut set = config.clone();
    set.groups.members = Some(3);
    for group in GroupName::ALL {
        assert_eq!(set.group_members(group), 3, "{group:?}");
    }
}

#[test]
fn a_bad_field_stops_start_up_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_scoutstream"))
        .args(["lag", "--config"])
        .arg(example())
        .env("SCOUTSTREAM__RUNNER__BATCH_SIZE", "0")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "configuration errors exit with 2"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("runner.batch_size"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_scoutstream"))
        .args(["lag", "--config"])
        .arg(example())
        .env("SCOUTSTREAM__DATABASE__URL", "mysql://nope")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("database.url"));

    for (variable, value, field) in [
        ("SCOUTSTREAM__JOBS__LEASE_MS", "500", "jobs.lease_ms"),
        ("SCOUTSTREAM__JOBS__WORKERS", "0", "jobs.workers"),
        ("SCOUTSTREAM__DATABASE__WRITERS", "0", "database.writers"),
        ("SCOUTSTREAM__GROUPS__MEMBERS", "0", "groups.members"),
        (
            "SCOUTSTREAM__SCHEMA_REGISTRY__URL",
            "registry:8081",
            "schema_registry.url",
        ),
        (
            "SCOUTSTREAM__SCHEMA_REGISTRY__TIMEOUT_MS",
            "0",
            "schema_registry.timeout_ms",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_scoutstream"))
            .args(["lag", "--config"])
            .arg(example())
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(field), "{variable}={value}: {stderr}");
    }
}

/// `run` serves the jobs API beside `/metrics`: on a non-loopback address
/// without a token it does not start, naming the field; commands that serve
/// nothing (here `schemas check`) still run with the same config.
#[test]
fn run_refuses_an_open_api_on_the_network() {
    let run = |bind: &str, token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scoutstream"));
        command
            .args(["run", "--config"])
            .arg(example())
            .env("SCOUTSTREAM__OBSERVE__BIND", bind);
        if let Some(token) = token {
            command.env("SCOUTSTREAM__JOBS__API_TOKEN", token);
        }
        command.output().unwrap()
    };
    for (bind, token) in [
        ("0.0.0.0:0", None),
        ("10.1.2.3:9464", None),
        ("0.0.0.0:0", Some(" ")),
    ] {
        let output = run(bind, token);
        assert_eq!(output.status.code(), Some(2), "{bind} {token:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("jobs.api_token"), "{bind}: {stderr}");
    }
    let unserved = Command::new(env!("CARGO_BIN_EXE_scoutstream"))
        .args(["schemas", "check", "--offline", "--config"])
        .arg(example())
        .output()
        .unwrap();
    assert!(
        unserved.status.success(),
        "{}",
        String::from_utf8_lossy(&unserved.stderr)
    );
}

/// Only the processes that run the jobs group serve its API (unless
/// `groups.serve_api` says otherwise): an enrich process on the network starts
/// with no API token and an unreachable database, and has no `/jobs`.
#[test]
fn an_enrich_process_needs_neither_the_database_nor_an_api_token() {
    let port = common::free_port();
    let work = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_scoutstream"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("SCOUTSTREAM__")) {
        command.env_remove(name);
    }
    let mut child = command
        .args(["run", "--groups", "enrich"])
        .current_dir(work.path())
        .env("SCOUTSTREAM__OBSERVE__BIND", format!("0.0.0.0:{port}"))
        .env(
            "SCOUTSTREAM__DATABASE__URL",
            "postgres://nobody@127.0.0.1:1/absent",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::http_get(port, "/readyz").0 != 200 {
        if child.try_wait().unwrap().is_some() {
            let output = child.wait_with_output().unwrap();
            panic!(
                "enrich exited ({}) before it was ready: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        assert!(Instant::now() < deadline, "enrich never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (jobs, _) = common::http_get(port, "/jobs");
    let (metrics, _) = common::http_get(port, "/metrics");
    common::stop(child);
    assert_eq!(jobs, 404, "an enrich process serves no jobs API");
    assert_eq!(metrics, 200);
}
