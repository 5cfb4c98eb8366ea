//! Files of several records: JSON lines, and documents one after another.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use producers::ingest::{
    ingest_dir, ingest_file, shared_data_dir, IngestError, IngestedEvent, SkipReason,
};
use serde_json::{json, Value};

const INGEST_TIME_MS: i64 = 1_700_000_000_000;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "scoutstream-producers-{test}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A fixture as one compact JSON line.
fn fixture_line(name: &str) -> String {
    let path = shared_data_dir().join("opendota").join(name);
    let value: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    serde_json::to_string(&value).unwrap()
}

/// Summaries stamped with their own observation time.
fn summaries_line_observed_at(observed_at_ms: i64) -> String {
    let mut value: Value = serde_json::from_str(&fixture_line("summaries_api.json")).unwrap();
    value["observed_at_ms"] = json!(observed_at_ms);
    serde_json::to_string(&value).unwrap()
}

fn good_lines() -> Vec<String> {
    vec![
        fixture_line("retriever_player.json"),
        String::new(), // blank lines are allowed
        fixture_line("details_api.json"),
        summaries_line_observed_at(1_234),
        fixture_line("retriever_match.json"),
    ]
}

fn ids(path: &Path) -> Vec<String> {
    ingest_file(path, INGEST_TIME_MS)
        .unwrap()
        .iter()
        .map(|event| match event {
            IngestedEvent::Match(m) => format!("match {} {}", m.match_id, m.source),
            IngestedEvent::Player(p) => {
                format!("player {} {} {}", p.account_id, p.source, p.observed_at_ms)
            }
            IngestedEvent::Job(j) => format!("job {} {:?} {}", j.job_id, j.job_type, j.subject_id),
        })
        .collect()
}

#[test]
fn json_lines_of_every_record_kind() {
    let scratch = Scratch::new("all-kinds");
    let path = scratch.write("records.jsonl", &(good_lines().join("\n") + "\n"));
    assert_eq!(
        ids(&path),
        [
            "player 120269134 rank 1700000000000",
            "match 1781962623 steam_api",
            "player 120269134 steam_summaries 1234",
            "match 1781962623 game_coordinator",
        ]
    );
}

#[test]
fn malformed_line_is_named() {
    let scratch = Scratch::new("malformed");
    let mut lines = good_lines();
    lines.insert(3, r#"{"account_id": 5, "rank_tier": }"#.to_string());
    let path = scratch.write("records.jsonl", &lines.join("\n"));

    let err = ingest_file(&path, INGEST_TIME_MS).unwrap_err();
    assert_eq!(err.line(), Some(4));
    assert_eq!(err.path(), Some(path.as_path()));
    assert!(matches!(err.cause(), IngestError::Json(_)), "{err:?}");
    assert!(!err.is_retriable());
    let message = err.to_string();
    assert!(
        message.contains("records.jsonl, line 4: invalid JSON"),
        "{message}"
    );
}

#[test]
fn bad_field_names_line_and_field() {
    let scratch = Scratch::new("bad-field");
    let mut lines = good_lines();
    lines.insert(2, r#"{"account_id": 7, "rank_tier": "eighty"}"#.to_string());
    let path = scratch.write("records.ndjson", &lines.join("\n"));

    let err = ingest_file(&path, INGEST_TIME_MS).unwrap_err();
    assert_eq!(err.line(), Some(3));
    assert!(matches!(err.cause(), IngestError::Field { field, .. } if field == "rank_tier"));
    assert_eq!(
        err.cause().to_string(),
        r#"field `rank_tier`: expected an integer, found string "eighty""#
    );
}

#[test]
fn pretty_printed_documents_one_after_another() {
    let scratch = Scratch::new("pretty");
    let first = serde_json::to_string_pretty(&json!({"account_id": 1, "rank_tier": 11})).unwrap();
    let second =
        serde_json::to_string_pretty(&json!({"account_id": 2, "players": "none"})).unwrap();
    assert_eq!(first.lines().count(), 4);
    let path = scratch.write("two.json", &format!("{first}\n\n{second}\n"));

    let err = ingest_file(&path, INGEST_TIME_MS).unwrap_err();
    // 4 lines of the first document, a blank line, then the second document.
    assert_eq!(err.line(), Some(6));
    assert!(
        err.to_string().contains("no match or player record shape"),
        "{err}"
    );
}

#[test]
fn empty_file_has_no_events() {
    let scratch = Scratch::new("empty");
    let path = scratch.write("empty.jsonl", "\n\n");
    assert!(ingest_file(&path, INGEST_TIME_MS).unwrap().is_empty());
}

#[test]
fn directory_report_names_skipped_files_and_reasons() {
    let scratch = Scratch::new("dir");
    scratch.write("a_good.jsonl", &good_lines().join("\n"));
    scratch.write(
        "b_bad.jsonl",
        "{\"account_id\": 5, \"rank_tier\": 80}\nnot json\n",
    );
    scratch.write("c_notes.txt", "not a record");
    fs::create_dir(scratch.0.join("d_nested.json")).unwrap();

    let report = ingest_dir(&scratch.0, INGEST_TIME_MS).unwrap();
    assert_eq!(report.files.len(), 1);
    assert!(report.files[0].path.ends_with("a_good.jsonl"));
    assert_eq!(report.files[0].events.len(), 4);

    let skipped: Vec<(String, String)> = report
        .skipped
        .iter()
        .map(|s| {
            let name = s.path.file_name().unwrap().to_string_lossy().into_owned();
            let reason = match &s.reason {
                SkipReason::NotJsonFile => "not json".to_string(),
                SkipReason::Rejected(err) => format!("line {:?}", err.line()),
            };
            (name, reason)
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("b_bad.jsonl".to_string(), "line Some(2)".to_string()),
            ("c_notes.txt".to_string(), "not json".to_string()),
            ("d_nested.json".to_string(), "not json".to_string()),
        ]
    );
}

#[test]
fn missing_directory_is_an_error() {
    let err = ingest_dir("/nonexistent/scoutstream", INGEST_TIME_MS).unwrap_err();
    assert!(err.is_retriable());
    assert_eq!(err.path(), Some(Path::new("/nonexistent/scoutstream")));
}
