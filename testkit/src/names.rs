//! Names no other test, or earlier run, uses.

/// `prefix` followed by 12 random hex digits. With a prefix of lower-case
/// letters, digits and `_` it is a valid unquoted PostgreSQL identifier too.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
