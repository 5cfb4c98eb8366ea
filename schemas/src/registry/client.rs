//! [`RegistryClient`]: the Confluent Schema Registry REST calls this pipeline
//! makes, with a timeout on each request, retries with backoff on network
//! errors and 5xx answers, and caches of what a registry never changes (the
//! schema behind an id, the id of a schema under a subject).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use super::RegistryConfig;

const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry config field `{field}`: {problem}")]
    Config {
        field: &'static str,
        problem: String,
    },

    #[error("schema registry at {url} unreachable: {message}")]
    Unreachable { url: String, message: String },

    /// An answer outside 2xx (a 404 only when it is not the registry's own
    /// "not found", which usually means a wrong base URL).
    #[error("schema registry answered {status} to {request}: {message}")]
    Status {
        status: u16,
        request: String,
        message: String,
    },

    /// The registry refused a new version under its compatibility rule.
    #[error(
        "schema registry refused the schema for subject `{subject}` as incompatible: {message}"
    )]
    Incompatible { subject: String, message: String },

    #[error("schema registry answered {request} with something unexpected: {message}")]
    BadResponse { request: String, message: String },
}

impl RegistryError {
    /// Network errors, timeouts, 5xx, 408 and 429 may pass; the rest will not.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Config { .. } | Self::Incompatible { .. } | Self::BadResponse { .. } => false,
        }
    }
}

/// One version of a subject as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i64,
    pub id: u32,
    pub schema: String,
}

/// The registry's verdict on a schema against a subject's latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compatibility {
    pub is_compatible: bool,
    pub messages: Vec<String>,
}

pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    /// `base` without its password, for messages.
    shown: String,
    backoff: ExponentialBuilder,
    schemas_by_id: Mutex<HashMap<u32, Arc<str>>>,
    ids_by_subject_schema: Mutex<HashMap<(String, String), u32>>,
    requests: AtomicU64,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.shown)
            .finish()
    }
}

impl RegistryClient {
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryError> {
        let invalid = |field, problem: String| RegistryError::Config { field, problem };
        config
            .validate()
            .map_err(|(field, problem)| invalid(field, problem))?;
        // The value is not echoed: it may hold a password.
        let base = Url::parse(config.url.trim_end_matches('/'))
            .map_err(|e| invalid("schema_registry.url", format!("does not parse: {e}")))?;
        let shown = without_password(&base);
        let timeout = Duration::from_millis(config.timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| invalid("schema_registry", e.to_string()))?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(config.max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        Ok(Self {
            http,
            base,
            shown,
            backoff,
            schemas_by_id: Mutex::default(),
            ids_by_subject_schema: Mutex::default(),
            requests: AtomicU64::new(0),
        })
    }

    /// HTTP requests sent so far, retries included: what the caches save shows here.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Registers `schema` (Avro JSON text) under `subject` and returns its id;
    /// the id of an identical schema already registered there comes back as is.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = lock(&self.ids_by_subject_schema).get(&key) {
            return Ok(*id);
        }
        let body = json!({ "schema": schema });
        let answer = self
            .call(
                Method::POST,
                &["subjects", subject, "versions"],
                Some(&body),
            )
            .await
            .map_err(|err| match err {
                RegistryError::Status {
                    status: 409,
                    message,
                    ..
                } => RegistryError::Incompatible {
                    subject: subject.to_owned(),
                    message,
                },
                other => other,
            })?
            .ok_or_else(|| not_found_as_error("register", subject))?;
        let id = field::<u32>(&answer, "id", "register")?;
        lock(&self.ids_by_subject_schema).insert(key, id);
        lock(&self.schemas_by_id).insert(id, Arc::from(schema));
        Ok(id)
    }

    /// The schema text behind `id`, or `None` when the registry does not know it.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<Arc<str>>, RegistryError> {
        if let Some(schema) = lock(&self.schemas_by_id).get(&id) {
            return Ok(Some(Arc::clone(schema)));
        }
        let id_text = id.to_string();
        let Some(answer) = self
            .call(Method::GET, &["schemas", "ids", &id_text], None)
            .await?
        else {
            return Ok(None);
        };
        let schema_type = answer.get("schemaType").and_then(Value::as_str);
        if !matches!(schema_type, None | Some("AVRO")) {
            return Err(RegistryError::BadResponse {
                request: format!("GET schema {id}"),
                message: format!("schema type {schema_type:?}, not AVRO"),
            });
        }
        let schema: Arc<str> = Arc::from(field::<String>(&answer, "schema", "GET schema")?);
        lock(&self.schemas_by_id).insert(id, Arc::clone(&schema));
        Ok(Some(schema))
    }

    /// The latest version under `subject`, or `None` when it has none.
    pub async fn latest(&self, subject: &str) -> Result<Option<SubjectVersion>, RegistryError> {
        let Some(answer) = self
            .call(
                Method::GET,
                &["subjects", subject, "versions", "latest"],
                None,
            )
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_value(answer).map_err(|e| RegistryError::BadResponse {
            request: format!("GET latest of {subject}"),
            message: e.to_string(),
        })
    }

    /// Asks whether `schema` may follow the latest version of `subject` under
    /// the subject's compatibility rule; `None` when the subject has none.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Option<Compatibility>, RegistryError> {
        let body = json!({ "schema": schema });
        let path = ["compatibility", "subjects", subject, "versions", "latest"];
        let Some(answer) = self.call(Method::POST, &path, Some(&body)).await? else {
            return Ok(None);
        };
        let is_compatible = field::<bool>(&answer, "is_compatible", "compatibility")?;
        let messages = answer
            .get("messages")
            .and_then(Value::as_array)
            .map(|all| all.iter().map(|m| m.to_string()).collect())
            .unwrap_or_default();
        Ok(Some(Compatibility {
            is_compatible,
            messages,
        }))
    }

    /// Sets the compatibility rule of `subject` (e.g. `BACKWARD`).
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let body = json!({ "compatibility": level });
        self.call(Method::PUT, &["config", subject], Some(&body))
            .await?
            .ok_or_else(|| not_found_as_error("set compatibility", subject))?;
        Ok(())
    }

    /// One call, retried while the error is retriable. `None` for the
    /// registry's own 404s (unknown subject, version or id).
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Option<Value>, RegistryError> {
        let url = self.url(segments);
        let request = format!("{method} {}", url.path());
        (|| self.send_once(method.clone(), url.clone(), &request, body))
            .retry(self.backoff)
            .when(RegistryError::is_retriable)
            .notify(|err, delay| {
                tracing::debug!(error = %err, retry_in = ?delay, "schema registry call failed")
            })
            .await
    }

    async fn send_once(
        &self,
        method: Method,
        url: Url,
        request: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, RegistryError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut builder = self.http.request(method, url).header(ACCEPT, MEDIA_TYPE);
        if let Some(body) = body {
            builder = builder
                .header(CONTENT_TYPE, MEDIA_TYPE)
                .body(body.to_string());
        }
        // reqwest's messages name the URL; ours is shown without its password.
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            url: self.shown.clone(),
            message: e.without_url().to_string(),
        };
        let response = builder.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| RegistryError::BadResponse {
                    request: request.to_owned(),
                    message: e.to_string(),
                });
        }
        let error = ErrorBody::parse(&text);
        if status == StatusCode::NOT_FOUND && error.is_registry_not_found() {
            return Ok(None);
        }
        Err(RegistryError::Status {
            status: status.as_u16(),
            request: request.to_owned(),
            message: error.message.unwrap_or(text),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

fn without_password(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// The registry's error answer: `{"error_code": 40403, "message": "…"}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

impl ErrorBody {
    fn parse(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// 404xx codes: subject (40401), version (40402) or schema (40403) not
    /// found. A bare 404 is a wrong URL, which must not read as "unknown id".
    fn is_registry_not_found(&self) -> bool {
        matches!(self.error_code, Some(40400..=40499))
    }
}

fn field<T: serde::de::DeserializeOwned>(
    answer: &Value,
    name: &str,
    request: &str,
) -> Result<T, RegistryError> {
    answer
        .get(name)
        .cloned()
        .and_then(|value| serde_json::from_value(value).ok())
        .ok_or_else(|| RegistryError::BadResponse {
            request: request.to_owned(),
            message: format!("no `{name}` in {answer}"),
        })
}

fn not_found_as_error(request: &str, subject: &str) -> RegistryError {
    RegistryError::Status {
        status: 404,
        request: request.to_owned(),
        message: format!("subject `{subject}` not found"),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> RegistryClient {
        let config = RegistryConfig {
            url: url.into(),
            ..RegistryConfig::default()
        };
        RegistryClient::new(&config).expect("valid config")
    }

    #[test]
    fn paths_are_joined_below_the_base_and_escaped() {
        let ccompat = client("http://127.0.0.1:8081/apis/ccompat/v7/");
        assert_eq!(
            ccompat.url(&["subjects", "a/b-value", "versions"]).as_str(),
            "http://127.0.0.1:8081/apis/ccompat/v7/subjects/a%2Fb-value/versions"
        );
        let root = client("http://registry:8081");
        assert_eq!(
            root.url(&["schemas", "ids", "7"]).as_str(),
            "http://registry:8081/schemas/ids/7"
        );
    }

    #[test]
    fn only_the_registry_own_404_means_not_found() {
        assert!(
            ErrorBody::parse(r#"{"error_code":40403,"message":"Schema not found"}"#)
                .is_registry_not_found()
        );
        assert!(!ErrorBody::parse("<html>Not Found</html>").is_registry_not_found());
        assert!(!ErrorBody::parse(r#"{"error_code":50001}"#).is_registry_not_found());
    }

    #[test]
    fn server_errors_and_outages_are_retriable_refusals_are_not() {
        let status = |status| RegistryError::Status {
            status,
            request: "GET".into(),
            message: String::new(),
        };
        assert!(status(503).is_retriable());
        assert!(status(429).is_retriable());
        assert!(!status(401).is_retriable());
        assert!(!status(404).is_retriable());
        let incompatible = RegistryError::Incompatible {
            subject: "s".into(),
            message: String::new(),
        };
        assert!(!incompatible.is_retriable());
    }

    #[test]
    fn messages_show_the_url_without_its_password() {
        let with_password = client("https://app:s3cret@registry:8081/apis/ccompat/v7");
        assert_eq!(
            with_password.shown,
            "https://app:***@registry:8081/apis/ccompat/v7"
        );
        assert!(!format!("{with_password:?}").contains("s3cret"));
    }

    #[test]
    fn bad_config_names_the_field() {
        let config = RegistryConfig {
            url: "registry:8081".into(),
            ..RegistryConfig::default()
        };
        let err = RegistryClient::new(&config).expect_err("no scheme");
        assert!(err.to_string().contains("schema_registry.url"), "{err}");
    }
}
