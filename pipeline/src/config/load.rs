//! Reading the configuration: a TOML file, `K_file` keys read from their
//! files, then `SCOUTSTREAM__SECTION__KEY` environment overrides.

use serde::de::DeserializeOwned;

use super::ConfigError;

pub const ENV_PREFIX: &str = "SCOUTSTREAM__";

/// Reads a TOML file (or nothing, for all defaults), applies `SCOUTSTREAM__`
/// environment overrides and deserializes the result.
pub fn load<T: DeserializeOwned>(
    path: Option<&std::path::Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?,
        None => String::new(),
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
    for (name, value) in env {
        if let Some(path) = name.strip_prefix(ENV_PREFIX) {
            apply_override(&mut table, path, &value)?;
        }
    }
    read_file_keys(&mut table, "")?;
    // serde_path_to_error names the field at fault, e.g. `runner.batch_size`.
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
        field: e.path().to_string(),
        problem: e.inner().to_string(),
    })
}

/// Sets `a__b__c` in the table. The value is read as a TOML value when it is one
/// (numbers, booleans, arrays), else taken as a string.
/// `KEY_file = "/path"`, at any depth, stands for `KEY = "<the file's
/// content>"` (one trailing newline dropped): secrets mounted as files
/// (Kubernetes, Docker) stay out of config files and the environment.
fn read_file_keys(table: &mut toml::Table, at: &str) -> Result<(), ConfigError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let field = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match table.get_mut(&key) {
            Some(toml::Value::Table(inner)) => {
                read_file_keys(inner, &field)?;
                continue;
            }
            // Arrays of tables, e.g. `[[jobs.api_tokens]]` with `token_file`.
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        read_file_keys(inner, &format!("{field}[{i}]"))?;
                    }
                }
                continue;
            }
            _ => {}
        }
        let Some(target) = key.strip_suffix("_file") else {
            continue;
        };
        let Some(toml::Value::String(path)) = table.remove(&key) else {
            return Err(ConfigError::invalid(&field, "must be a file path"));
        };
        if table.contains_key(target) {
            let problem = format!("set either `{target}` or `{key}`, not both");
            return Err(ConfigError::invalid(&field, problem));
        }
        let content = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::invalid(&field, format!("cannot read {path}: {e}")))?;
        let value = content.strip_suffix('\n').unwrap_or(&content);
        let value = value.strip_suffix('\r').unwrap_or(value);
        table.insert(target.to_owned(), toml::Value::String(value.to_owned()));
    }
    Ok(())
}

fn apply_override(table: &mut toml::Table, path: &str, value: &str) -> Result<(), ConfigError> {
    let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    let Some((last, parents)) = keys.split_last() else {
        return Ok(());
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            ConfigError::invalid(&keys.join("."), format!("`{key}` is not a section"))
        })?;
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    current.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod file_key_tests {
    use std::io::Write;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Secrets {
        jobs: Jobs,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Jobs {
        api_token: String,
    }

    fn secret_file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(content.as_bytes()).expect("written");
        file
    }

    fn load_with(env: &[(&str, String)]) -> Result<Secrets, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.clone()));
        load(None, env)
    }

    #[test]
    fn a_file_key_reads_the_secret_without_its_newline() {
        let file = secret_file("s3cret\n");
        let path = file.path().display().to_string();
        let secrets = load_with(&[("SCOUTSTREAM__JOBS__API_TOKEN_FILE", path)]).expect("loads");
        assert_eq!(secrets.jobs.api_token, "s3cret");
    }

    #[test]
    fn a_missing_file_or_both_keys_name_the_file_field() {
        let missing = (
            "SCOUTSTREAM__JOBS__API_TOKEN_FILE",
            "/nonexistent/token".to_string(),
        );
        let err = load_with(std::slice::from_ref(&missing)).expect_err("no such file");
        assert!(err.to_string().contains("`jobs.api_token_file`"), "{err}");
        let file = secret_file("a");
        let both = [
            (
                "SCOUTSTREAM__JOBS__API_TOKEN_FILE",
                file.path().display().to_string(),
            ),
            ("SCOUTSTREAM__JOBS__API_TOKEN", "b".to_string()),
        ];
        let err = load_with(&both).expect_err("ambiguous");
        assert!(err.to_string().contains("not both"), "{err}");
    }
}
