//! What the deploy files contain: dashboard panels, variables and alert
//! rules, and the metric names they read.

use std::collections::BTreeSet;
use std::path::PathBuf;

use pipeline::observe::names::{self, Origin};
use serde_json::Value;

use crate::{deploy, rules_file, FALLBACK, VARIABLES};

/// Every `targets[].expr` of every panel (rows included) of every dashboard.
pub(crate) fn panel_expressions() -> Vec<(String, String)> {
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
pub(crate) fn variable_expressions() -> Vec<(String, String)> {
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

pub(crate) fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for (name, value) in VARIABLES {
        out = out.replace(name, value);
    }
    assert!(!out.contains('$'), "unknown Grafana variable in {expr}");
    out
}

/// The `scoutstream_*` series an expression reads.
pub(crate) fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.match_indices("scoutstream_")
        .map(|(at, _)| {
            expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

pub(crate) fn alert_count_in_rules_file() -> usize {
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
