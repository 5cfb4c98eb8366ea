//! A real Prometheus scraping the runners, and `promtool`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::deploy_files::substitute;
use crate::rules_file;
use testkit::free_port;

pub(crate) fn require_binary(name: &str) -> PathBuf {
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

pub(crate) struct Prometheus {
    child: tokio::process::Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A Prometheus scraping `target` every second and evaluating the repo's rules.
pub(crate) async fn start_prometheus(target: &str) -> Prometheus {
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

    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The `data` of an instant query, or Prometheus' error for it.
    pub(crate) async fn query(&self, expr: &str) -> Result<Value, String> {
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

    pub(crate) async fn rules(&self) -> Vec<Value> {
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

    pub(crate) async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// A non-empty result with at least one finite number: a quantile that is NaN
/// everywhere (no observations in the window) shows nothing on a panel.
pub(crate) fn has_data(data: &Value) -> bool {
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
pub(crate) async fn without_data(
    prometheus: &Prometheus,
    exprs: &[(String, String)],
) -> Vec<String> {
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

pub(crate) fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
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
