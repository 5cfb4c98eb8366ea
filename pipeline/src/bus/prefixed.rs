//! A bus whose topics all carry a prefix on the wire, so several deployments
//! (or test runs) can share one broker. Handlers keep seeing the logical names.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Bus, BusError, Delivery, PartitionLag, Publisher, Record, ResetPosition, ResetTo, Subscription,
};

pub struct PrefixedBus {
    inner: Arc<dyn Bus>,
    prefix: String,
}

impl PrefixedBus {
    pub fn new(inner: Arc<dyn Bus>, prefix: impl Into<String>) -> Self {
        Self {
            inner,
            prefix: prefix.into(),
        }
    }
}

fn wire_names(prefix: &str, topics: &[String]) -> Vec<String> {
    topics.iter().map(|t| format!("{prefix}{t}")).collect()
}

#[async_trait]
impl Bus for PrefixedBus {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn check_health(&self) -> Result<(), BusError> {
        self.inner.check_health().await
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        self.inner
            .ensure_topic(&format!("{}{topic}", self.prefix), partitions)
            .await
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BusError> {
        Ok(Arc::new(PrefixedPublisher {
            inner: self.inner.publisher().await?,
            prefix: self.prefix.clone(),
        }))
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let inner = self
            .inner
            .subscribe(group, &wire_names(&self.prefix, topics))
            .await?;
        Ok(Box::new(PrefixedSubscription {
            inner,
            prefix: self.prefix.clone(),
        }))
    }

    async fn reset_group(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
    ) -> Result<Vec<ResetPosition>, BusError> {
        let mut moved = self
            .inner
            .reset_group(group, &wire_names(&self.prefix, topics), to)
            .await?;
        for position in &mut moved {
            strip(&self.prefix, &mut position.topic);
        }
        Ok(moved)
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>, BusError> {
        let mut lags = self
            .inner
            .lag(group, &wire_names(&self.prefix, topics))
            .await?;
        for lag in &mut lags {
            strip(&self.prefix, &mut lag.topic);
        }
        Ok(lags)
    }
}

fn strip(prefix: &str, topic: &mut String) {
    if let Some(logical) = topic.strip_prefix(prefix) {
        *topic = logical.to_string();
    }
}

fn strip_shared(prefix: &str, topic: &mut Arc<str>) {
    if let Some(logical) = topic.strip_prefix(prefix) {
        *topic = Arc::from(logical);
    }
}

struct PrefixedPublisher {
    inner: Arc<dyn Publisher>,
    prefix: String,
}

#[async_trait]
impl Publisher for PrefixedPublisher {
    async fn publish_batch(&self, topic: &str, records: &[Record]) -> Result<(), BusError> {
        self.inner
            .publish_batch(&format!("{}{topic}", self.prefix), records)
            .await
    }
}

struct PrefixedSubscription {
    inner: Box<dyn Subscription>,
    prefix: String,
}

#[async_trait]
impl Subscription for PrefixedSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let mut deliveries = self.inner.poll(max, wait).await?;
        for delivery in &mut deliveries {
            strip_shared(&self.prefix, &mut delivery.topic);
        }
        Ok(deliveries)
    }

    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let wire: Vec<Delivery> = deliveries
            .iter()
            .map(|d| Delivery {
                topic: Arc::from(format!("{}{}", self.prefix, d.topic)),
                ..d.clone()
            })
            .collect();
        self.inner.ack(&wire).await
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        let mut owned = self.inner.assignment();
        for (topic, _) in &mut owned {
            strip(&self.prefix, topic);
        }
        owned
    }

    async fn close(self: Box<Self>) -> Result<(), BusError> {
        self.inner.close().await
    }
}
