//! Proves the dashboards and alert rules of `deploy/` against a real Prometheus:
//! runners on Kafka (the local Apache Kafka broker) and Redis Streams handle a trickle
//! of traffic (garbage included, so dead letters show) with lag reporters, their
//! `/metrics` is scraped every second, and then every panel expression of every
//! dashboard must return data and every alert rule must evaluate. `promtool`
//! lints the scraped page and checks the config and rules (and runs their unit
//! tests). Needs scripts/services.sh: the servers, and `prometheus`/`promtool`.
#![allow(clippy::unwrap_used)]

mod common;
mod observe_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{bus, free_port, numbered_records, unique, Backend, Recorder, PARTITIONS};
use observe_support::{parse_samples, serve, value, Served};
use pipeline::bus::{Publisher, Record};
use pipeline::observe::names::{self, Origin};
use pipeline::observe::readiness::BUS;
use pipeline::observe::{self, Readiness};
use pipeline::runner::{RunStats, Runner, RunnerConfig, RunnerError};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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

// ---- What the deploy files contain -------------------------------------------

/// Every `targets[].expr` of every panel (rows included) of every dashboard.
fn panel_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in dashboards() {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let title = dashboard["title"].as_str().unwrap().to_string();
        collect_exprs(&dashboard["panels"], &title, &mut out);
    }
    assert!(out.len() > 20, "found only {} expressions", out.len());
    out
}

fn dashboards() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(deploy().join("grafana/dashboards"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 3, "pipeline, jobs and cache dashboards");
    paths
}

fn collect_exprs(panels: &Value, dashboard: &str, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap().to_string();
            out.push((format!("{dashboard} / {title} / {}", target["refId"]), expr));
        }
        collect_exprs(&panel["panels"], dashboard, out);
    }
}

/// Template variable queries, `label_values(m, l)` rewritten as the PromQL Grafana
/// would run for them.
fn variable_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in dashboards() {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for var in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let query = var["query"]["query"].as_str().unwrap();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("unexpected variable query {query}"));
            let (metric, label) = inner.rsplit_once(',').unwrap();
            let label = label.trim();
            out.push((
                format!("variable ${}", var["name"].as_str().unwrap()),
                format!("group by ({label}) ({metric})"),
            ));
        }
    }
    out
}

fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for (name, value) in VARIABLES {
        out = out.replace(name, value);
    }
    assert!(!out.contains('$'), "unknown Grafana variable in {expr}");
    out
}

/// The `scoutstream_*` series an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.match_indices("scoutstream_")
        .map(|(at, _)| {
            expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

fn alert_count_in_rules_file() -> usize {
    std::fs::read_to_string(rules_file())
        .unwrap()
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:"))
        .count()
}

/// Without servers: dashboards and rules name only metrics `names.rs` defines, and
/// fall back to 0 exactly where they read metrics other components emit.
#[test]
fn deploy_files_use_only_defined_metrics() {
    let rules: String = std::fs::read_to_string(rules_file())
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect();
    for (what, expr) in panel_expressions()
        .into_iter()
        .chain([("rules file".to_string(), rules)])
    {
        for name in metric_names(&expr) {
            assert!(
                names::spec_of(&name).is_some(),
                "{what}: unknown metric {name}"
            );
        }
    }
    for (panel, expr) in panel_expressions() {
        let later = metric_names(&expr)
            .iter()
            .any(|name| names::spec_of(name).is_some_and(|s| s.origin != Origin::Runtime));
        assert_eq!(
            later,
            expr.ends_with(FALLBACK),
            "{panel}: panels on metrics not every process emits end with `{FALLBACK}`, the others \
             must return real data: {expr}"
        );
        assert!(later || !expr.contains("vector("), "{panel}: {expr}");
    }
}

// ---- The pipeline under observation ------------------------------------------

struct Group {
    name: String,
    shutdown: CancellationToken,
    runner: JoinHandle<Result<RunStats, RunnerError>>,
    feeder: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

/// A runner over a fresh topic with a backlog and a trickle of new events (one in
/// eight of them garbage), and a lag reporter for its group.
async fn start_group(backend: Backend, readiness: &Readiness) -> Group {
    let bus = bus(backend).await;
    let (topic, dlq, name) = (unique("observe"), unique("observe-dlq"), unique("observed"));
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    bus.ensure_topic(&dlq, 1).await.unwrap();
    let publisher = bus.publisher().await.unwrap();
    let mut backlog = numbered_records(40, 8);
    backlog.push(Record::new("key-0", b"\x00garbage".to_vec()));
    publisher.publish_batch(&topic, &backlog).await.unwrap();

    let recorder = Arc::new(Recorder::slow(Duration::from_millis(5)));
    recorder.flaky.lock().unwrap().insert(3, 2);
    let config = RunnerConfig {
        batch_size: 20,
        batch_wait: Duration::from_millis(100),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        dead_letter_topic: dlq,
        ..RunnerConfig::new(name.clone())
    };
    let runner = Runner::new(config, recorder, publisher.clone()).with_readiness(readiness.clone());
    let subscription = bus
        .subscribe(&name, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let runner = tokio::spawn(async move { runner.run(subscription, token).await });
    let feeder = tokio::spawn(feed(publisher, topic.clone(), shutdown.clone()));
    let reporter = observe::spawn_lag_reporter(
        bus,
        name.clone(),
        vec![topic],
        Duration::from_secs(1),
        shutdown.clone(),
    );
    Group {
        name,
        shutdown,
        runner,
        feeder,
        reporter,
    }
}

/// Publishes a record every 250 ms, bounded in count, until shutdown.
async fn feed(publisher: Arc<dyn Publisher>, topic: String, stop: CancellationToken) {
    for i in 1000..1600usize {
        let record = if i % 8 == 0 {
            Record::new(format!("key-{}", i % 8), b"not a numbered record".to_vec())
        } else {
            Record::new(format!("key-{}", i % 8), format!("n:{i}:0"))
        };
        if let Err(err) = publisher.publish_batch(&topic, &[record]).await {
            tracing::warn!(error = %err, "feeder publish failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

impl Group {
    async fn stop(self) -> RunStats {
        self.shutdown.cancel();
        self.feeder.await.unwrap();
        self.reporter.await.unwrap();
        self.runner.await.unwrap().unwrap()
    }
}

// ---- Prometheus ----------------------------------------------------------------

fn require_binary(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: run scripts/services.sh, which installs Prometheus \
             and promtool (apt-get install prometheus)"
        )
    })
}

struct Prometheus {
    child: tokio::process::Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A Prometheus scraping `target` every second and evaluating the repo's rules.
async fn start_prometheus(target: &str) -> Prometheus {
    let binary = require_binary("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: scoutstream\n    static_configs:\n      - targets: [{target:?}]\n",
            rules = rules_file().canonicalize().unwrap(),
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let child = tokio::process::Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let prometheus = Prometheus {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
        _dir: dir,
    };
    prometheus.wait_ready().await;
    prometheus
}

impl Prometheus {
    async fn wait_ready(&self) {
        let url = format!("{}/-/ready", self.base);
        for _ in 0..150 {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("prometheus did not become ready:\n{}", self.log_tail());
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The `data` of an instant query, or Prometheus' error for it.
    async fn query(&self, expr: &str) -> Result<Value, String> {
        let response: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if response["status"] == "success" {
            Ok(response["data"].clone())
        } else {
            Err(format!("{}: {}", response["errorType"], response["error"]))
        }
    }

    async fn rules(&self) -> Vec<Value> {
        let response: Value = reqwest::get(format!("{}/api/v1/rules", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|group| group["rules"].as_array().unwrap().clone())
            .collect()
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// A non-empty result with at least one finite number: a quantile that is NaN
/// everywhere (no observations in the window) shows nothing on a panel.
fn has_data(data: &Value) -> bool {
    let finite = |sample: &Value| {
        sample[1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .is_some_and(|r| r.iter().any(|series| finite(&series["value"]))),
        Some("scalar") => finite(&data["result"]),
        _ => false,
    }
}

/// Expressions that fail to parse or return nothing, with why.
async fn without_data(prometheus: &Prometheus, exprs: &[(String, String)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (what, expr) in exprs {
        let expr = substitute(expr);
        match prometheus.query(&expr).await {
            Ok(data) if has_data(&data) => {}
            Ok(_) => failures.push(format!("{what}: no data for {expr}")),
            Err(err) => failures.push(format!("{what}: {err} in {expr}")),
        }
    }
    failures
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = std::process::Command::new(require_binary("promtool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
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
