//! A probe agent's reports: every node's smoothed probe round trip and loss, as seen from
//! the agent's vantage point, sent to the fleet as that client group's measurements.
//!
//! It reads the publisher's state view; it never asks the publisher.

use std::time::Duration;

use tokio::time::Instant;

use crate::answer::{ViewReader, fleet_zone};

/// An agent sends its measurements at most this often,
pub const MEASURE_EVERY: Duration = Duration::from_secs(1);
/// and at least this often, so they do not age out.
const MEASURE_REFRESH: Duration = Duration::from_secs(10);

/// A round trip sent: zone, node, milliseconds.
type SentRtt = (String, String, f64);

/// A probe agent at a vantage point (a geo code).
#[derive(Debug)]
pub struct Agent {
    vantage: String,
    view: ViewReader,
    /// What was last sent, and when.
    sent: Option<(Instant, Vec<SentRtt>)>,
}

impl Agent {
    /// An agent at `vantage` that reads node states from `view`.
    pub fn new(vantage: String, view: ViewReader) -> Self {
        Agent {
            vantage,
            view,
            sent: None,
        }
    }

    /// The feed batch (JSON) to send now, if any: when a round trip moved by more than a
    /// tenth (or 2 ms), or every `MEASURE_REFRESH` so they stay fresh; never more often
    /// than `MEASURE_EVERY`.
    pub fn measure(&mut self, now: Instant) -> Option<String> {
        if let Some((at, _)) = &self.sent
            && now.duration_since(*at) < MEASURE_EVERY
        {
            return None;
        }
        let view = self.view.load();
        let mut current = Vec::new();
        let mut entries = Vec::new();
        for (zone, node, rtt, loss) in view.probe_stats() {
            let origin = fleet_zone(zone);
            entries.push(serde_json::json!({
                "zone": origin, "group": self.vantage, "node": node,
                "rtt_ms": rtt.clamp(0.0, crate::latency::MAX_RTT_MS),
                "loss": loss.clamp(0.0, 1.0),
            }));
            current.push((origin, node.to_string(), rtt));
        }
        let moved = match &self.sent {
            None => true,
            Some((at, before)) => {
                now.duration_since(*at) >= MEASURE_REFRESH
                    || before.len() != current.len()
                    || before.iter().zip(&current).any(|(a, b)| {
                        a.0 != b.0 || a.1 != b.1 || (a.2 - b.2).abs() > (0.1 * a.2).max(2.0)
                    })
            }
        };
        if !moved || entries.is_empty() {
            return None;
        }
        self.sent = Some((now, current));
        Some(serde_json::json!({ "measurements": entries }).to_string())
    }
}
