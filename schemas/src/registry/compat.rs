//! Backward compatibility: a consumer on the schema this build carries must
//! read every event written with an earlier version of it, kept under
//! `schemas/avro/v1/` (offline) or registered under the topic's subject.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use super::{TopicSchema, TOPIC_SCHEMAS};

/// One current schema checked against one earlier version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatCheck {
    pub topic: &'static str,
    pub file: &'static str,
    /// What was compared against, e.g. `v1/MatchCompleted.avsc`.
    pub against: String,
    /// `Err` says why the current schema cannot read the earlier one's data.
    pub verdict: Result<(), String>,
}

/// Whether data written with `earlier` reads with `current`, both Avro text.
pub fn backward_compatible(current: &str, earlier: &str) -> Result<(), String> {
    let current = Schema::parse_str(current).map_err(|e| format!("current schema: {e}"))?;
    let earlier = Schema::parse_str(earlier).map_err(|e| format!("earlier schema: {e}"))?;
    SchemaCompatibility::can_read(&earlier, &current).map_err(|e| e.to_string())
}

/// Every current schema against every earlier version kept in the repo.
pub fn check_offline() -> Vec<CompatCheck> {
    TOPIC_SCHEMAS
        .iter()
        .flat_map(|entry: &TopicSchema| {
            entry.earlier.iter().map(|(file, text)| CompatCheck {
                topic: entry.topic,
                file: entry.file,
                against: (*file).to_owned(),
                verdict: backward_compatible(entry.current, text),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"long"}]}"#;

    #[test]
    fn every_kept_version_reads_with_the_current_schema() {
        let checks = check_offline();
        assert_eq!(checks.len(), 3, "{checks:?}");
        for check in checks {
            assert_eq!(check.verdict, Ok(()), "{check:?}");
        }
    }

    #[test]
    fn a_new_field_needs_a_default() {
        let with_default = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"long"},{"name":"b","type":"int","default":0}]}"#;
        let without = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"long"},{"name":"b","type":"int"}]}"#;
        assert_eq!(backward_compatible(with_default, V1), Ok(()));
        let err = backward_compatible(without, V1).expect_err("no default for b");
        assert!(err.contains('b'), "{err}");
    }

    #[test]
    fn a_narrowed_type_is_refused() {
        let narrowed = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"int"}]}"#;
        assert!(backward_compatible(narrowed, V1).is_err());
    }
}
