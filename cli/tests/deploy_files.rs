//! The deployment files (Dockerfile, docker-compose.yml, deploy/compose/,
//! deploy/kubernetes/) pass `scripts/validate-deploy.sh`; every config a
//! deployed process would load (file + `SCOUTSTREAM__` variables) loads and
//! validates with the real config code; every health probe they declare
//! answers against the real binary. No container engine or cluster is needed:
//! images are not built and nothing is started but the binary itself.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::config::Backend;
use scoutstream::app::{AppConfig, GroupName};
use serde_json::{json, Value};
use testkit::free_port;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The code's consumer groups and their topics, for the script to hold the files to.
fn group_topics() -> String {
    let groups: serde_json::Map<String, Value> = GroupName::ALL
        .iter()
        .map(|g| (g.as_str().to_string(), json!(g.topics())))
        .collect();
    Value::Object(groups).to_string()
}

#[test]
fn deployment_files_validate_load_and_answer_their_probes() {
    let extract = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deploy-files-{}", uuid::Uuid::new_v4()));
    let output = Command::new("bash")
        .arg(repo().join("scripts/validate-deploy.sh"))
        .env("SCOUTSTREAM_DEPLOY_EXTRACT", &extract)
        .env("SCOUTSTREAM_GROUP_TOPICS", group_topics())
        .stdin(Stdio::null())
        .output()
        .expect("running bash scripts/validate-deploy.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "scripts/validate-deploy.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    let deploy: Value =
        serde_json::from_str(&std::fs::read_to_string(extract.join("deploy.json")).unwrap())
            .unwrap();
    configs_load(&deploy, &extract);
    probes_answer(&deploy, &extract);
    std::fs::remove_dir_all(&extract).ok();
}

/// Each config loads with `pipeline::config::load` (unknown keys and bad values
/// are errors there) and says what the deployment around it assumes.
fn configs_load(deploy: &Value, dir: &Path) {
    let configs = deploy["configs"].as_array().unwrap();
    let mut covered = Vec::new();
    for (i, entry) in configs.iter().enumerate() {
        let origin = entry["origin"].as_str().unwrap();
        let path = match (entry["config_file"].as_str(), entry["config_toml"].as_str()) {
            (Some(file), _) => PathBuf::from(file),
            (None, Some(text)) => {
                let path = dir.join(format!("config-{i}.toml"));
                std::fs::write(&path, text).unwrap();
                path
            }
            (None, None) => panic!("{origin}: no config file"),
        };
        let env: Vec<(String, String)> = entry["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let mut config: AppConfig = pipeline::config::load(Some(&path), env)
            .unwrap_or_else(|err| panic!("{origin}: the config does not load: {err}"));
        let groups: Vec<GroupName> = entry["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                serde_json::from_value(g.clone())
                    .unwrap_or_else(|err| panic!("{origin}: `--groups {g}`: {err}"))
            })
            .collect();
        if !groups.is_empty() {
            config.groups.enabled = groups.clone();
        }
        config
            .validate()
            .unwrap_or_else(|err| panic!("{origin}: the config does not validate: {err}"));

        let expect = &entry["expect"];
        assert_eq!(expect["backend"], "kafka", "{origin}");
        assert_eq!(config.bus.backend, Backend::Kafka, "{origin}: bus.backend");
        if let Some(brokers) = expect["brokers"].as_str() {
            assert_eq!(
                config.bus.kafka.brokers, brokers,
                "{origin}: bus.kafka.brokers"
            );
        }
        if let Some(partitions) = expect["partitions"].as_u64() {
            assert_eq!(
                u64::from(config.bus.partitions),
                partitions,
                "{origin}: bus.partitions vs the topics / maxReplicaCount"
            );
        }
        if let Some(port) = expect["metrics_port"].as_u64() {
            assert!(
                config.observe.bind.ends_with(&format!(":{port}")),
                "{origin}: observe.bind {} is not on port {port}",
                config.observe.bind
            );
        }
        if let Some(ids) = expect["group_ids"].as_object() {
            for group in &groups {
                let want = ids[group.as_str()].as_str().unwrap();
                assert_eq!(config.group_id(*group), want, "{origin}: consumer group id");
            }
        }
        covered.extend(groups);
    }
    for group in GroupName::ALL {
        assert_eq!(
            covered.iter().filter(|g| **g == group).count(),
            2,
            "{} should run in one compose service and one Deployment",
            group.as_str()
        );
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the probe command with its port moved to `port`; true when it succeeds.
fn run_probe(probe: &Value, port: u16) -> bool {
    let declared = probe["port"].as_u64().unwrap();
    let argv: Vec<String> = probe["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace(&format!("/{declared}"), &format!("/{port}"))
        })
        .collect();
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The Dockerfile HEALTHCHECK and compose healthchecks (shell commands) and the
/// Kubernetes httpGet probes, against `scoutstream run` on the embedded bus.
fn probes_answer(deploy: &Value, dir: &Path) {
    let probes = deploy["probes"].as_array().unwrap();
    assert!(!probes.is_empty(), "no probes extracted");
    let port = free_port();

    // Nothing listens yet: a probe that passes now would pass anything.
    for probe in probes.iter().filter(|p| p["argv"].is_array()) {
        assert!(
            !run_probe(probe, port),
            "{} succeeds with no server",
            probe["origin"]
        );
    }

    let work = dir.join("run");
    std::fs::create_dir_all(&work).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_scoutstream"));
    command
        .args(["run", "--groups", "enrich"])
        .current_dir(&work)
        .env("SCOUTSTREAM__OBSERVE__BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("stderr.log")).unwrap());
    for (name, _) in std::env::vars() {
        if name.starts_with("SCOUTSTREAM__") && name != "SCOUTSTREAM__OBSERVE__BIND" {
            command.env_remove(name);
        }
    }
    let _server = Running(command.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(port, "/readyz") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "scoutstream run never became ready on :{port}:\n{}",
            std::fs::read_to_string(work.join("stderr.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    for probe in probes {
        let origin = &probe["origin"];
        if probe["argv"].is_array() {
            assert!(
                run_probe(probe, port),
                "{origin} fails against scoutstream run"
            );
        } else {
            let path = probe["http_get"].as_str().unwrap();
            assert_eq!(
                http_status(port, path),
                Some(200),
                "{origin}: GET {path} against scoutstream run"
            );
        }
    }
}

/// The Kafka version the tests run (scripts/kafka/pom.xml) is the one users deploy.
#[test]
fn compose_runs_the_kafka_version_the_tests_use() {
    let pom = std::fs::read_to_string(repo().join("scripts/kafka/pom.xml")).unwrap();
    let version = pom
        .split_once("<kafka.version>")
        .and_then(|(_, rest)| rest.split_once("</kafka.version>"))
        .map(|(version, _)| version.trim().to_string())
        .unwrap();
    assert!(version.starts_with("4."), "Kafka 4.x: {version}");
    let compose = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let images: Vec<&str> = compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix("image: apache/kafka:"))
        .collect();
    assert!(!images.is_empty(), "docker-compose.yml runs apache/kafka");
    assert!(
        images.iter().all(|tag| *tag == version),
        "compose images {images:?} != tested {version}"
    );
}
