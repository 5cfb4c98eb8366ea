//! What happens inside the enrich group, one struct per happening; `emit`
//! writes the log line (and, as metrics arrive, the metric) from one place.

use pipeline::bus::BusError;
use pipeline::internal_events::InternalEvent;

/// A match referenced ids the reference data does not know: the reference
/// data is older than the game. Emitted once per match.
pub struct UnknownReferenceIds<'a> {
    pub match_id: i64,
    pub unknown_ids: &'a [String],
}

impl InternalEvent for UnknownReferenceIds<'_> {
    fn emit(self) {
        tracing::warn!(
            match_id = self.match_id,
            unknown_ids = ?self.unknown_ids,
            "match enriched with unknown reference ids"
        );
    }
}

/// Enriched matches are durable on the output topic.
pub struct MatchesEnriched<'a> {
    pub topic: &'a str,
    pub events: usize,
}

impl InternalEvent for MatchesEnriched<'_> {
    fn emit(self) {
        tracing::debug!(
            topic = self.topic,
            events = self.events,
            "enriched matches published"
        );
    }
}

/// Publishing enriched matches failed; the runner retries their deliveries.
pub struct EnrichedPublishFailed<'a> {
    pub topic: &'a str,
    pub events: usize,
    pub error: &'a BusError,
}

impl InternalEvent for EnrichedPublishFailed<'_> {
    fn emit(self) {
        tracing::error!(
            topic = self.topic,
            events = self.events,
            error = %self.error,
            "publishing enriched matches failed"
        );
    }
}
