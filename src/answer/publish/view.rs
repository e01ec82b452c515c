//! The state view: what the publisher knows beside the answers (every node's state, the
//! timeline, the last reload, the fleet), published as one immutable value next to the
//! snapshot. Readers (the admin interface, the status page, a probe agent) load it with one
//! atomic operation and never queue behind the writer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::{Value, json};

use super::commands::NodeStatus;
use super::nodes::{NodeRuntime, state_word};
use crate::geo::GeoDb;
use crate::health::Health;
use crate::latency::ZoneLatency;
use crate::policy::Zone;
use crate::steer::{Availability, Rankings};

/// Entries the timeline keeps.
const TIMELINE: usize = 100;

/// One thing that changed: a node's availability, or a reload.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// When, in seconds since the Unix epoch.
    pub at: f64,
    /// The zone (empty for a reload).
    pub zone: String,
    /// The node (empty for a reload).
    pub node: String,
    /// State before (a node's state word, or `reload`).
    pub from: String,
    /// State after (`ok` or `rejected` for a reload).
    pub to: String,
    /// Why, in words.
    pub why: String,
}

/// The last changes, oldest first, bounded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline(pub(super) VecDeque<TimelineEntry>);

impl Timeline {
    pub(super) fn push(&mut self, entry: TimelineEntry) {
        if self.0.len() == TIMELINE {
            self.0.pop_front();
        }
        self.0.push_back(entry);
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &VecDeque<TimelineEntry> {
        &self.0
    }
}

/// Seconds since the epoch.
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How far the published view is behind the node table. Each store shares the node
/// table with readers, so the next change to any node copies it: check details alone
/// (last probe, smoothed round trip) are stored at most every `LAZY_VIEW`; a change readers
/// act on (availability, a first check result, an override, a reload, the fleet, new
/// rankings) at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Staleness {
    /// The view is current.
    Fresh,
    /// Check details moved on.
    Details,
    /// Something readers act on changed.
    Changed,
}

/// The longest a view lags behind check details.
pub(super) const LAZY_VIEW: std::time::Duration = std::time::Duration::from_millis(200);

impl Staleness {
    /// Whether to store a new view now, `since` the last store.
    pub(super) fn due(self, since: std::time::Duration) -> bool {
        match self {
            Staleness::Fresh => false,
            Staleness::Details => since >= LAZY_VIEW,
            Staleness::Changed => true,
        }
    }
}

/// Why the server is not ready yet: checked nodes not checked once, or the fleet not
/// read yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not ready: {}", waiting.join("; "))]
pub struct NotReady {
    /// What is still awaited: the first health round (nodes as `zone/node`), the fleet.
    pub waiting: Vec<String>,
}

/// The fleet as the view shows it.
#[derive(Debug, Clone)]
pub(super) struct FleetSummary {
    /// Why etcd cannot be reached, while it cannot.
    pub lost: Option<String>,
    /// What each member registered (JSON), by identity, once the fleet's state was seen.
    pub members: Option<Vec<(String, String)>>,
    /// Until when the fleet's first read is awaited before answering from what was kept.
    pub ready_by: Option<SystemTime>,
    /// The etcd member the fleet is read through.
    pub via: Option<String>,
    /// The health answers use, by zone and node: the zone's quorum while reachable.
    pub health: Vec<Vec<Health>>,
    /// Every other vantage point's verdicts, by "zone/node" (lines as "zone/node@address").
    pub verdicts: Vec<(String, Vec<(String, Health)>)>,
}

/// Everything the publisher knows beside the answers, as of one moment.
#[derive(Debug, Clone)]
pub struct StateView {
    /// Which load of the policy this is.
    pub(super) generation: u64,
    /// The policy.
    pub(super) zones: Arc<Vec<Zone>>,
    /// The GeoIP database.
    pub(super) geo: Arc<GeoDb>,
    /// Whether an ASN database is loaded.
    pub(super) asn: bool,
    /// The rankings the published answers were built from (what-ifs build with them).
    pub(super) rankings: Arc<Rankings>,
    /// Every node's state, by zone and node index.
    pub(super) nodes: Arc<Vec<Vec<NodeRuntime>>>,
    /// What is measured per zone: loads among it.
    pub(super) latency: Arc<Vec<ZoneLatency>>,
    /// In a fleet: its state.
    pub(super) fleet: Option<FleetSummary>,
    /// The last availability changes and reloads.
    pub(super) timeline: Arc<Timeline>,
    /// The outcome of the last reload: when it succeeded, or why it failed.
    pub(super) last_reload: Option<Result<SystemTime, String>>,
}

impl StateView {
    /// The policy served.
    pub fn zones(&self) -> &Arc<Vec<Zone>> {
        &self.zones
    }

    /// The GeoIP database served.
    pub fn geo(&self) -> &Arc<GeoDb> {
        &self.geo
    }

    /// The rankings the published answers were built from.
    pub fn rankings(&self) -> &Arc<Rankings> {
        &self.rankings
    }

    /// The timeline.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Every node's availability, by zone and node index.
    pub fn availability(&self) -> Vec<Vec<Availability>> {
        self.nodes
            .iter()
            .map(|z| z.iter().map(|n| n.availability).collect())
            .collect()
    }

    /// A node's state word (`up`, `drained`, ...).
    pub fn state_word(&self, zone: usize, node: usize) -> &'static str {
        self.nodes
            .get(zone)
            .and_then(|z| z.get(node))
            .map_or("up", |n| state_word(n.availability, n.override_))
    }

    /// Every node's state as of `now`.
    pub fn status(&self, now: SystemTime) -> Vec<NodeStatus> {
        let mut out = Vec::new();
        for (zi, zone) in self.zones.iter().enumerate() {
            for ni in 0..zone.nodes.len() {
                out.extend(self.status_of(zi, ni, now));
            }
        }
        out
    }

    /// One node's state as of `now`.
    pub fn status_of(&self, zone: usize, node: usize, now: SystemTime) -> Option<NodeStatus> {
        let runtime = self.nodes.get(zone)?.get(node)?;
        let spec = self.zones.get(zone)?;
        let max_age = spec.nodes.get(node)?.capacity.max_age;
        let measured = self.latency.get(zone)?;
        // Shown while it counts: a stale report is gone from the node's state.
        let load =
            (measured.load(node, now, max_age)).and_then(|_| measured.loads.get(&node).copied());
        let mut status = runtime.status(spec, node, load, now);
        // A report that aged out: what it said, and since when it no longer counts.
        let stale = (measured.loads.get(&node))
            .filter(|_| load.is_none())
            .or(measured.stale_loads.get(&node));
        if let Some(stale) = stale {
            status.stale_load = Some(stale.value);
            status.load_stale_s = (stale.at.checked_add(max_age))
                .map(|went| now.duration_since(went).map_or(0.0, |d| d.as_secs_f64()));
        }
        status.fleet_health = self
            .fleet
            .as_ref()
            .and_then(|f| f.health.get(zone)?.get(node).copied());
        Some(status)
    }

    /// Whether the server is ready at `now`: every health-checked node checked at least
    /// once (so answers reflect health, not the optimistic start), and in a fleet, the
    /// fleet read once or its wait over (answers then come from the state file's
    /// overrides). When ready, what degrades the service without stopping it (the fleet
    /// unreachable); else what is still missing.
    pub fn ready(&self, now: SystemTime) -> Result<Vec<String>, NotReady> {
        let unchecked: Vec<String> = self
            .zones
            .iter()
            .zip(self.nodes.iter())
            .flat_map(|(zone, runtimes)| {
                zone.nodes
                    .iter()
                    .zip(runtimes)
                    .filter(|(node, runtime)| node.check.is_some() && runtime.last.is_none())
                    .map(|(node, _)| format!("{}/{}", zone.origin, node.name))
            })
            .collect();
        let mut waiting = Vec::new();
        if !unchecked.is_empty() {
            waiting.push(format!(
                "first health round incomplete: {}",
                unchecked.join(", ")
            ));
        }
        if let Some(FleetSummary {
            members: None,
            ready_by: Some(by),
            ..
        }) = &self.fleet
            && now < *by
        {
            waiting.push("the fleet's state not read yet".into());
        }
        if !waiting.is_empty() {
            return Err(NotReady { waiting });
        }
        // A lost fleet degrades, never blocks: this instance answers from its own
        // verdicts, so it stays ready (and announced) and says why it is degraded.
        Ok(self
            .fleet
            .iter()
            .filter_map(|f| f.lost.as_ref())
            .map(|why| {
                format!(
                    "fleet degraded: etcd unreachable ({why}); answering from local health and the last fleet state seen"
                )
            })
            .collect())
    }

    /// The policy as loaded, defaults filled in, with the databases' sizes.
    pub fn config_json(&self) -> Value {
        json!({
            "generation": self.generation,
            "geo_places": self.geo.places().len(),
            "asn_db": self.asn,
            "zones": self.zones.iter().map(crate::policy::effective::zone_json).collect::<Vec<_>>(),
        })
    }

    /// The fleet connection's state (`None` when not in a fleet).
    pub fn fleet_json(&self) -> Option<Value> {
        self.fleet.as_ref().map(|f| {
            let members = f.members.as_ref().map(|members| {
                members
                    .iter()
                    .map(|(member, info)| {
                        let info = serde_json::from_str(info).unwrap_or_else(|_| json!(info));
                        (member.clone(), info)
                    })
                    .collect::<serde_json::Map<String, Value>>()
            });
            json!({
                "connected": f.lost.is_none(),
                "lost": f.lost,
                "via": f.via,
                "members": members,
                "verdicts": (f.verdicts.iter())
                    .map(|(key, votes)| {
                        let votes: serde_json::Map<String, Value> = (votes.iter())
                            .map(|(member, health)| (member.clone(), json!(health)))
                            .collect();
                        (key.clone(), Value::Object(votes))
                    })
                    .collect::<serde_json::Map<String, Value>>(),
            })
        })
    }

    /// The last reload's outcome: `None` before any; else its age in seconds as of `now`,
    /// or why it failed.
    pub fn last_reload(&self, now: SystemTime) -> Option<Result<f64, String>> {
        self.last_reload
            .clone()
            .map(|r| r.map(|t| now.duration_since(t).map_or(0.0, |d| d.as_secs_f64())))
    }

    /// Every node's smoothed probe round trip (ms) and failure rate, by zone and node
    /// name, for nodes that passed a probe: what a probe agent reports.
    pub fn probe_stats(&self) -> Vec<(&Zone, &str, f64, f64)> {
        let mut out = Vec::new();
        for (zone, runtimes) in self.zones.iter().zip(self.nodes.iter()) {
            for (node, runtime) in zone.nodes.iter().zip(runtimes) {
                if let Some(rtt) = runtime.probe_rtt_ms {
                    out.push((zone, node.name.as_str(), rtt, runtime.probe_loss));
                }
            }
        }
        out
    }
}

/// Read access to the published state view, for the admin interface and the fleet.
#[derive(Debug, Clone)]
pub struct ViewReader {
    pub(super) current: Arc<ArcSwap<StateView>>,
}

impl ViewReader {
    /// The current view, whole.
    pub fn load(&self) -> Arc<StateView> {
        self.current.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn check_details_wait_a_little_what_readers_act_on_does_not() {
        assert!(!Staleness::Fresh.due(Duration::from_secs(60)));
        assert!(!Staleness::Details.due(LAZY_VIEW / 2));
        assert!(Staleness::Details.due(LAZY_VIEW));
        assert!(Staleness::Changed.due(Duration::ZERO));
        assert_eq!(
            Staleness::Details.max(Staleness::Changed),
            Staleness::Changed
        );
    }
}
