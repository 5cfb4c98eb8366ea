//! How a bench run prints.

use super::BenchReport;
use crate::app::GroupName;

impl BenchReport {
    pub fn render(&self) -> String {
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.0}{unit}"));
        let ratio = |ours: f64, raw: Option<f64>| {
            raw.map_or("n/a".to_string(), |raw| format!("{:.2}", ours / raw))
        };
        let mut out = format!(
            "bench: {} generated matches (10 players each) on {:?}, {}, groups {}\n",
            self.matches,
            self.backend,
            if self.backlog {
                "backlog (published first, then drained)"
            } else {
                "live (published while consumed)"
            },
            self.groups
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join("+")
        );
        if let Some(rows) = self.history_player_rows {
            out.push_str(&format!(
                "  history           {rows:>10} player rows in the database when the groups started\n"
            ));
        }
        out.push_str(&format!(
            "  publish ({}) {:>10.0} events/s\n",
            if self.backlog {
                "before the groups"
            } else {
                "beside the groups"
            },
            self.publish_per_s
        ));
        out.push_str(&format!("  publish (alone)   {:>10} events/s   raw produce of the same records {:>8}   ratio {}\n", opt(self.publish_alone_per_s, ""), opt(self.raw_produce_per_s, "/s"), self.publish_alone_per_s.map_or("n/a".into(), |ours| ratio(ours, self.raw_produce_per_s))));
        out.push_str(&format!("  end to end        {:>10.0} events/s   raw consume of the same topic {:>10}   ratio {}\n", self.events_per_s, opt(self.raw_consume_per_s, "/s"), ratio(self.events_per_s, self.raw_consume_per_s)));
        if self.groups.contains(&GroupName::Persist) {
            out.push_str(&format!("  player rows       {:>10.0} rows/s     raw COPY of the same rows     {:>10}   ratio {}   (into an empty table)\n", self.player_rows_per_s, opt(self.raw_copy_rows_per_s, "/s"), ratio(self.player_rows_per_s, self.raw_copy_rows_per_s)));
            out.push_str(&format!("                                         raw COPY of the same rows     {:>10}   ratio {}   (into player_matches with its history, rolled back)\n", opt(self.raw_copy_in_place_rows_per_s, "/s"), ratio(self.player_rows_per_s, self.raw_copy_in_place_rows_per_s)));
        } else {
            out.push_str("  player rows              n/a (persist is not among the groups)\n");
        }
        if let Some(peer) = &self.peer {
            out.push_str(&format!(
                "  peer (Python)     {:>10.0} rows/s     ours / peer {:.2}   its CPU {:.3} s per 1000 events, peak RSS {:.1} MiB\n",
                peer.rows_per_s(),
                self.player_rows_per_s / peer.rows_per_s(),
                peer.cpu_s * 1000.0 / peer.events as f64,
                peer.peak_rss_kib / 1024.0
            ));
        }
        out.push_str(&format!(
            "  CPU               {:>10.3} s per 1000 events\n",
            self.cpu_s_per_1000_events
        ));
        out.push_str(&format!(
            "  publish→persisted p50 {} p99 {}\n",
            opt(self.latency_p50_ms, " ms"),
            opt(self.latency_p99_ms, " ms")
        ));
        out.push_str(&format!(
            "  peak RSS          {:>10.1} MiB\n",
            self.peak_rss_mib
        ));
        out
    }
}
