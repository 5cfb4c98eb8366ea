//! The start-up check that the brokers accept this client: librdkafka only
//! logs an authentication or TLS refusal and retries forever, so
//! [`super::KafkaBus::check_access`] asks for metadata and watches the error
//! callback for one.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::bus::BusError;

/// How long [`KafkaBus::check_access`] waits for an answer or a refusal.
const ACCESS_CHECK_TIME: Duration = Duration::from_secs(10);

/// Keeps the first authentication or TLS failure librdkafka reports.
#[derive(Default)]
struct RefusalWatch {
    refusal: std::sync::Mutex<Option<String>>,
}

impl ClientContext for RefusalWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_refusal(&error, reason) {
            let mut refusal = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
            refusal.get_or_insert_with(|| reason.to_string());
        } else {
            tracing::debug!(%error, reason, "kafka client error during the access check");
        }
    }
}

impl ConsumerContext for RefusalWatch {}

fn is_refusal(error: &KafkaError, reason: &str) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::SaslAuthenticationFailed
        )
    ) || reason.contains("SSL handshake failed")
        // e.g. the broker's alert when it wants a client certificate.
        || reason.contains("SSL routines")
        || reason.contains("SASL authentication error")
}

pub(super) fn probe(client: ClientConfig, brokers: &str) -> Result<(), BusError> {
    let consumer: BaseConsumer<RefusalWatch> =
        client.create_with_context(RefusalWatch::default())?;
    let deadline = std::time::Instant::now() + ACCESS_CHECK_TIME;
    while std::time::Instant::now() < deadline {
        let answered = consumer
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok();
        // Serves the error callbacks.
        let _ = consumer.poll(Duration::from_millis(100));
        let watch = consumer.context();
        if let Some(reason) = watch
            .refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(BusError::Refused(format!(
                "kafka at {brokers} refused this client: {reason}"
            )));
        }
        if answered {
            return Ok(());
        }
    }
    tracing::warn!(brokers, "no kafka broker answered yet; clients keep trying");
    Ok(())
}
