//! [`ResolveSchemas`]: a handler decorator that makes every Confluent id of a
//! slice decodable before the handler sees it, fetching unknown writer
//! schemas from the schema registry into the codec the handler shares.
//!
//! While the registry cannot be asked, the slice waits (backoff up to 10 s)
//! instead of failing: a registry outage stalls the group, it does not turn
//! good events into dead letters. Ids the registry does not know fail in the
//! handler's decode and become dead letters with that reason.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use schemas::registry::SchemaResolver;
use tokio_util::sync::CancellationToken;

use crate::bus::Delivery;
use crate::internal_events::{InternalEvent, SchemaRegistryUnavailable, SchemasResolved};
use crate::runner::{Handler, HandlerError};

pub struct ResolveSchemas {
    inner: Arc<dyn Handler>,
    resolver: Arc<SchemaResolver>,
    group: String,
    shutdown: CancellationToken,
}

impl ResolveSchemas {
    /// `inner` must decode with the resolver's codec (or a clone of it).
    pub fn new(
        inner: Arc<dyn Handler>,
        resolver: Arc<SchemaResolver>,
        group: impl Into<String>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner,
            resolver,
            group: group.into(),
            shutdown,
        }
    }

    /// Ok once every id of the slice is known or known to be unknown; Err
    /// only at shutdown, with the last registry error.
    async fn resolve(&self, deliveries: &[Delivery]) -> Result<(), String> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .without_max_times()
            .with_jitter()
            .build();
        loop {
            let payloads = deliveries.iter().map(|d| &d.payload[..]);
            let error = match self.resolver.resolve(payloads).await {
                Ok(resolved) => {
                    SchemasResolved {
                        group: &self.group,
                        resolved: &resolved,
                    }
                    .emit();
                    return Ok(());
                }
                Err(error) => error,
            };
            let retry_in = delays.next().unwrap_or(Duration::from_secs(10));
            SchemaRegistryUnavailable {
                group: &self.group,
                error: &error,
                retry_in,
            }
            .emit();
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(error.to_string()),
                _ = tokio::time::sleep(retry_in) => {}
            }
        }
    }
}

#[async_trait]
impl Handler for ResolveSchemas {
    fn takes_whole_batches(&self) -> bool {
        self.inner.takes_whole_batches()
    }

    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        match self.resolve(deliveries).await {
            Ok(()) => self.inner.handle(deliveries).await,
            // Shutting down: unacked, so the next member resolves them.
            Err(message) => deliveries
                .iter()
                .map(|_| Err(HandlerError::retriable("schema_registry", message.clone())))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use schemas::registry::{RegistryClient, RegistryConfig};
    use schemas::Codec;

    use super::*;
    use crate::bus::Position;

    /// Counts the deliveries it is handed; takes whole batches when `.1` is set.
    #[derive(Default)]
    struct Counting(AtomicUsize, bool);

    #[async_trait]
    impl Handler for Counting {
        fn takes_whole_batches(&self) -> bool {
            self.1
        }

        async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
            self.0.fetch_add(deliveries.len(), Ordering::SeqCst);
            deliveries.iter().map(|_| Ok(())).collect()
        }
    }

    fn delivery(payload: &[u8]) -> Delivery {
        Delivery {
            topic: Arc::from("matches"),
            partition: 0,
            position: Position::Offset(0),
            key: None,
            payload: bytes::Bytes::copy_from_slice(payload),
            timestamp_ms: None,
        }
    }

    fn decorated(inner: Arc<Counting>, shutdown: CancellationToken) -> ResolveSchemas {
        // Nothing listens on port 9: every lookup fails as unreachable.
        let config = RegistryConfig {
            url: "http://127.0.0.1:9".into(),
            timeout_ms: 200,
            max_attempts: 1,
        };
        let client = Arc::new(RegistryClient::new(&config).expect("valid config"));
        let resolver = Arc::new(SchemaResolver::new(client, Codec::default()));
        ResolveSchemas::new(inner, resolver, "test", shutdown)
    }

    #[tokio::test]
    async fn passes_on_whether_its_handler_takes_whole_batches() {
        for whole in [false, true] {
            let inner = Arc::new(Counting(AtomicUsize::new(0), whole));
            let handler = decorated(inner, CancellationToken::new());
            assert_eq!(handler.takes_whole_batches(), whole);
        }
    }

    #[tokio::test]
    async fn an_unknown_id_waits_for_the_registry_and_is_never_dead_lettered() {
        let inner = Arc::new(Counting::default());
        let shutdown = CancellationToken::new();
        let handler = decorated(inner.clone(), shutdown.clone());
        let confluent = [0u8, 0, 0, 0, 7, 2];
        let batch = [delivery(&confluent)];
        let waiting = handler.handle(&batch);
        tokio::pin!(waiting);
        let still_waiting =
            tokio::time::timeout(Duration::from_millis(1500), waiting.as_mut()).await;
        assert!(
            still_waiting.is_err(),
            "the slice must wait for the registry"
        );
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);

        shutdown.cancel();
        let results = waiting.await;
        let error = results[0].as_ref().expect_err("not handled at shutdown");
        assert!(error.is_retriable(), "left unacked, not dead-lettered");
        assert_eq!(error.kind(), "schema_registry");
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn slices_without_confluent_ids_never_ask_the_registry() {
        let inner = Arc::new(Counting::default());
        let handler = decorated(inner.clone(), CancellationToken::new());
        let batch = [
            delivery(b"{\"match_id\": 1}"),
            delivery(&[0xC3, 0x01, 0, 0]),
        ];
        let results = tokio::time::timeout(Duration::from_secs(1), handler.handle(&batch))
            .await
            .expect("no registry call");
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }
}
