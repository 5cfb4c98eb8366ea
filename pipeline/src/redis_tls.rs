//! Trust and client identity for `rediss://` URLs, shared by every Redis
//! client of a process (the Redis Streams bus, the cache, the rate limiter).
//!
//! The fields hold PEM text; in a config file give `ca_file`, `cert_file` and
//! `key_file` instead and the loader reads the files ([`crate::config::load`]).
//! With no `ca`, a `rediss://` URL is checked against the system's roots.

use serde::Deserialize;

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTls {
    /// PEM certificate(s) of the authority that signed the server's certificate.
    pub ca: String,
    /// PEM client certificate, for servers that require one (`tls-auth-clients yes`).
    pub cert: String,
    /// PEM private key of `cert`.
    pub key: String,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &(!self.ca.is_empty()))
            .field("cert", &(!self.cert.is_empty()))
            .field("key", &(!self.key.is_empty()).then_some("***"))
            .finish()
    }
}

impl RedisTls {
    fn is_empty(&self) -> bool {
        self.ca.is_empty() && self.cert.is_empty()
    }
}

/// A Redis client for `url`; `rediss://` URLs trust `tls.ca` and present
/// `tls.cert` when given.
pub fn client(url: &str, tls: &RedisTls) -> redis::RedisResult<redis::Client> {
    if tls.is_empty() || !url.starts_with("rediss://") {
        return redis::Client::open(url);
    }
    let client_tls = (!tls.cert.is_empty()).then(|| redis::ClientTlsConfig {
        client_cert: tls.cert.as_bytes().to_vec(),
        client_key: tls.key.as_bytes().to_vec(),
    });
    let root_cert = (!tls.ca.is_empty()).then(|| tls.ca.as_bytes().to_vec());
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let tls = RedisTls {
            ca: "CA PEM".into(),
            cert: "CERT PEM".into(),
            key: "-----BEGIN PRIVATE KEY----- canary".into(),
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn plain_urls_ignore_the_tls_settings() {
        let tls = RedisTls {
            ca: "not even PEM".into(),
            ..RedisTls::default()
        };
        assert!(client("redis://127.0.0.1:6379", &tls).is_ok());
    }
}
