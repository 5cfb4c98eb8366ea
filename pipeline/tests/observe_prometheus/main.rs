//! Proves the dashboards and alert rules of `deploy/` against a real Prometheus:
//! runners on Kafka (the local Apache Kafka broker) and Redis Streams handle a trickle
//! of traffic (garbage included, so dead letters show) with lag reporters, their
//! `/metrics` is scraped every second, and then every panel expression of every
//! dashboard must return data and every alert rule must evaluate. `promtool`
//! lints the scraped page and checks the config and rules (and runs their unit
//! tests). Needs scripts/services.sh: the servers, and `prometheus`/`promtool`.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../observe_support/mod.rs"]
mod observe_support;

mod deploy_files;
mod pipeline_group;
mod prometheus;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Backend;
use deploy_files::{
    alert_count_in_rules_file, metric_names, panel_expressions, variable_expressions,
};
use observe_support::{parse_samples, serve, value, Served};
use pipeline::observe::names::{self, Origin};
use pipeline::observe::readiness::BUS;
use pipeline::observe::Readiness;
use pipeline_group::start_group;
use prometheus::{has_data, promtool, require_binary, start_prometheus, without_data, Prometheus};

/// Grafana variables as the test substitutes them.
const VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "30s"),
    ("$__range", "1h"),
    ("$group", ".*"),
];
/// How a panel on metrics that may have no series yet still returns data.
const FALLBACK: &str = " or on() vector(0)";
const WAIT: Duration = Duration::from_secs(120);

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn rules_file() -> PathBuf {
    deploy().join("prometheus/rules/scoutstream.yml")
}
// ---- The test -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_work_on_a_real_prometheus() {
    require_binary("prometheus");
    require_binary("promtool");
    let readiness = Readiness::with_checks([BUS]);
    let served = serve(readiness.clone()).await;
    let kafka = start_group(Backend::Kafka, &readiness).await;
    let redis = start_group(Backend::Redis, &readiness).await;
    readiness.set(BUS, true);
    let prometheus = start_prometheus(&served.addr.to_string()).await;

    let page = wait_for_pipeline_metrics(&served, &[&kafka.name, &redis.name]).await;
    assert!(readiness.is_ready(), "{:?}", readiness.report());

    let panels = panel_expressions();
    let variables = variable_expressions();
    let mut failures = Vec::new();
    for _ in 0..(WAIT.as_secs() / 2) {
        failures = without_data(&prometheus, &panels).await;
        failures.extend(without_data(&prometheus, &variables).await);
        if failures.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        failures.is_empty(),
        "panel expressions without data:\n{}\n\nprometheus log:\n{}",
        failures.join("\n"),
        prometheus.log_tail()
    );
    eprintln!(
        "{} panel and {} variable expressions return data",
        panels.len(),
        variables.len()
    );
    runtime_metrics_have_series(&prometheus, &panels).await;
    rules_parse_and_evaluate(&prometheus).await;
    labels_match_their_specs(&page);
    promtool_accepts(&page);

    let kafka_stats = kafka.stop().await;
    let redis_stats = redis.stop().await;
    assert!(kafka_stats.dead_lettered >= 1 && redis_stats.dead_lettered >= 1);
    prometheus.stop().await;
    served.stop().await;
}

/// Waits until both groups handled events, dead-lettered garbage and had their lag
/// read, and returns the `/metrics` page.
async fn wait_for_pipeline_metrics(served: &Served, groups: &[&str]) -> String {
    let mut page = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        page = observe_support::get_text(&served.url("/metrics")).await.1;
        let samples = parse_samples(&page);
        let ready = groups.iter().all(|group| {
            let g = [("group", *group)];
            [
                names::DEAD_LETTERS_TOTAL,
                names::CONSUMER_LAG_MESSAGES,
                names::CONSUMER_LAG_SECONDS,
                "scoutstream_event_age_seconds_count",
            ]
            .iter()
            .all(|name| value(&samples, name, &g).is_some())
                && value(&samples, names::EVENTS_HANDLED_TOTAL, &g) >= Some(40.0)
        });
        if ready {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the pipeline did not produce its metrics in time; last page:\n{page}");
}

/// Each runtime metric a panel reads is really scraped (no fallback hides it).
async fn runtime_metrics_have_series(prometheus: &Prometheus, panels: &[(String, String)]) {
    let read: BTreeSet<String> = panels.iter().flat_map(|(_, e)| metric_names(e)).collect();
    for name in read {
        let spec = names::spec_of(&name).unwrap();
        if spec.origin == Origin::Runtime {
            let data = prometheus.query(&format!("count({name})")).await.unwrap();
            assert!(has_data(&data), "no series of {name} in prometheus");
        }
    }
}

/// Every rule of the file is loaded, its expression parses, and Prometheus has
/// evaluated it without error.
async fn rules_parse_and_evaluate(prometheus: &Prometheus) {
    let mut rules = prometheus.rules().await;
    for _ in 0..10 {
        if rules.iter().all(|rule| rule["health"] == "ok") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        rules = prometheus.rules().await;
    }
    assert_eq!(
        rules.len(),
        alert_count_in_rules_file(),
        "every rule loaded"
    );
    for rule in &rules {
        let (name, query) = (&rule["name"], rule["query"].as_str().unwrap());
        assert_eq!(rule["health"], "ok", "rule {name}: {}", rule["lastError"]);
        if let Err(err) = prometheus.query(query).await {
            panic!("rule {name} does not parse: {err}: {query}");
        }
    }
}

/// The page holds only metrics of `names.rs`, each with exactly its labels.
fn labels_match_their_specs(page: &str) {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sample in parse_samples(page) {
        let spec = names::spec_of(&sample.name)
            .unwrap_or_else(|| panic!("{} is not in names::METRICS", sample.name));
        let labels: BTreeSet<String> = sample
            .labels
            .keys()
            .filter(|k| *k != "le")
            .cloned()
            .collect();
        let expected: BTreeSet<String> = spec.labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(labels, expected, "labels of {}", sample.name);
        seen.entry(spec.name.to_string())
            .or_default()
            .extend(labels);
    }
    let runtime = names::METRICS
        .iter()
        .filter(|s| s.origin == Origin::Runtime);
    for spec in runtime {
        assert!(
            seen.contains_key(spec.name),
            "{} was never emitted",
            spec.name
        );
    }
}

fn promtool_accepts(page: &str) {
    let (ok, out) = promtool(&["check", "metrics"], Some(page));
    assert!(ok, "promtool check metrics:\n{out}");
    let rules = rules_file();
    let (ok, out) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "promtool check rules:\n{out}");
    let config = deploy().join("prometheus/prometheus.yml");
    let (ok, out) = promtool(&["check", "config", config.to_str().unwrap()], None);
    assert!(ok, "promtool check config:\n{out}");
    let tests = deploy().join("prometheus/tests/scoutstream_test.yml");
    let (ok, out) = promtool(&["test", "rules", tests.to_str().unwrap()], None);
    assert!(ok, "promtool test rules:\n{out}");
}
