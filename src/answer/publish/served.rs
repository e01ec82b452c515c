//! What one load of the policy and databases is, and what follows from it alone: the
//! snapshot built from it, the checks it plans, the serials the fleet sees, its gauges,
//! and the state view of it.

use std::sync::{Arc, OnceLock, mpsc};
use std::time::SystemTime;

use super::nodes::{NodeRuntime, carry_damping, carry_over};
use super::outbox::{FleetPolicy, fleet_zone};
use super::ranking::Ranked;
use super::table::NodeTable;
use super::view::{FleetSummary, StateView};
use crate::answer::build::{Before, build_with_lines};
use crate::answer::snapshot::{ExplainView, NameNode, Snapshot};
use crate::geo::{AsnDb, GeoDb};
use crate::health::{CheckPlan, Health, NodeKey, PlannedCheck};
use crate::latency::ZoneLatency;
use crate::loader::Loaded;
use crate::metrics as m;
use crate::parallel::Background;
use crate::policy::{NodeId, Zone};
use crate::steer::{Availability, DampingState};

/// The policy and databases served.
#[derive(Debug, Clone)]
pub(super) struct Served {
    pub zones: Arc<Vec<Zone>>,
    pub geo: Arc<GeoDb>,
    /// Carrier lookups, when configured.
    pub asn: Option<Arc<AsnDb>>,
    /// Which load of the policy this is; check reports carry it.
    pub generation: u64,
    /// Query and answer counters of this load, shared by its snapshots.
    pub zone_counters: Arc<Vec<m::ZoneCounters>>,
    /// Availability gauges of this load, by zone.
    gauges: Arc<Vec<m::AvailabilityGauges>>,
}

/// A new load taking over from the one served: node state, measurements and hysteresis
/// carried over by zone and node name.
pub(super) struct Takeover {
    pub served: Served,
    pub nodes: Vec<Vec<NodeRuntime>>,
    pub latency: Vec<ZoneLatency>,
    pub damping: DampingState,
    /// What was loaded, in words.
    pub summary: String,
}

/// Frees what the publisher replaced (answers, a state view) on a thread of its own at a
/// lower CPU priority: at scale that takes a while (a view holding the last reference to
/// rankings replaced: 4-9 ms, measured under a latency feed), and neither replies, the next
/// change nor a build should wait for it or share the cores with it. On the blocking pool,
/// the thread woken to free preempted the publisher for 1-4 ms (measured). Freed here if
/// that thread cannot be started. The thread is started by the first call, when the
/// publisher stores its first answers, and so takes its scheduling policy from the
/// publisher's (a thread started from a `SCHED_IDLE` one could not leave that policy).
pub(super) fn free_aside<T: Send + Sync + 'static>(old: Arc<T>) {
    static FREEING: OnceLock<Option<mpsc::Sender<Freed>>> = OnceLock::new();
    let freeing = FREEING.get_or_init(|| {
        let (send, receive) = mpsc::channel::<Freed>();
        let started = std::thread::Builder::new()
            .name("geosteer-free".into())
            .spawn(move || {
                crate::parallel::lower_this_threads_priority(Background::Lower);
                for freed in receive {
                    drop(freed);
                }
            });
        started.ok().map(|_| send)
    });
    let sent = freeing.as_ref().map(|send| send.send(Box::new(old)));
    if let Some(Err(mpsc::SendError(old))) = sent {
        drop(old);
    }
}

/// Something to free on the freeing thread.
type Freed = Box<dyn Send>;

/// The reload and feed series exist from the start, so rates and alerts see a zero first.
pub(super) fn register_series() {
    for result in ["ok", "error"] {
        metrics::counter!(m::RELOADS, "result" => result).increment(0);
    }
    for result in ["applied", "rejected"] {
        metrics::counter!(m::FEED_BATCHES, "result" => result).increment(0);
    }
    for how in ["built", "kept", "taken_back"] {
        metrics::counter!(m::STEERED_TABLES, "how" => how).increment(0);
    }
}

/// Counts the steered tables of `snapshot` by how each came to be: the same answers as a
/// table of the last snapshot (kept), or of the one before it (taken back), else built.
fn count_tables(snapshot: &Snapshot, before: Before) {
    let (mut kept, mut taken_back, mut built) = (0u64, 0u64, 0u64);
    for zone in &snapshot.zones {
        for (owner, node) in &zone.names {
            let NameNode::Steered(table) = node else {
                continue;
            };
            let same_in = |other: Option<&Snapshot>| {
                (other.and_then(|s| s.zone(&zone.origin)))
                    .and_then(|z| z.steered(owner))
                    .is_some_and(|t| Arc::ptr_eq(&t.answers, &table.answers))
            };
            match (same_in(before.last), same_in(before.undone)) {
                (true, _) => kept += 1,
                (false, true) => taken_back += 1,
                (false, false) => built += 1,
            }
        }
    }
    tracing::debug!(built, kept, taken_back, "steered tables");
    for (how, count) in [("built", built), ("kept", kept), ("taken_back", taken_back)] {
        metrics::counter!(m::STEERED_TABLES, "how" => how).increment(count);
    }
}

impl Served {
    /// The first load of the policy.
    pub(super) fn first(zones: Vec<Zone>, geo: Arc<GeoDb>, asn: Option<Arc<AsnDb>>) -> Self {
        Served {
            zone_counters: Arc::new(m::ZoneCounters::register(&zones)),
            gauges: Arc::new(m::AvailabilityGauges::register(&zones)),
            zones: Arc::new(zones),
            geo,
            asn,
            generation: 0,
        }
    }

    /// The next load, from `loaded`, taking over the state kept for this one.
    pub(super) fn take_over(
        &self,
        Loaded {
            mut zones,
            geo,
            asn,
        }: Loaded,
        nodes: &[Vec<NodeRuntime>],
        latency: &[ZoneLatency],
        damping: &DampingState,
        now: SystemTime,
    ) -> Takeover {
        for zone in &mut zones {
            if let Some(previous) = self.zones.iter().find(|z| z.origin == zone.origin) {
                zone.carry_serial_from(previous);
            }
        }
        let carried = carry_over(&self.zones, nodes, latency, &zones, asn.as_deref(), now);
        let summary = format!(
            "{} zones, {} nodes ({} carried over), {} places",
            zones.len(),
            zones.iter().map(|z| z.nodes.len()).sum::<usize>(),
            carried.kept,
            geo.places().len()
        );
        // Hysteresis carries over too: a reload must not move clients that would not move.
        let same_places = Arc::ptr_eq(&self.geo, &geo) || self.geo.places() == geo.places();
        let damping = carry_damping(&self.zones, damping, &zones, same_places);
        let zones = Arc::new(zones);
        Takeover {
            served: Served {
                zone_counters: Arc::new(m::ZoneCounters::register(&zones)),
                gauges: Arc::new(m::AvailabilityGauges::register(&zones)),
                zones,
                geo,
                asn,
                generation: self.generation + 1,
            },
            nodes: carried.nodes,
            latency: carried.latency,
            damping,
            summary,
        }
    }

    /// Its answers, built from `ranked`, `availability` and the carrier lines down, and
    /// from what was built `before` ([`Before`]: tables kept or taken back, starts ranked
    /// ahead carried).
    pub(super) fn snapshot(
        &self,
        ranked: &Ranked,
        (availability, down_lines): (Vec<Vec<Availability>>, Vec<Vec<u64>>),
        before: Before,
    ) -> Snapshot {
        let geo = Arc::clone(&self.geo);
        let rankings = &ranked.rankings;
        let mut snapshot = build_with_lines(
            &self.zones,
            geo,
            rankings,
            &availability,
            &down_lines,
            before,
        );
        count_tables(&snapshot, before);
        let signed = crate::answer::signed::sign_zones(
            &mut snapshot,
            &self.zones,
            before.last,
            super::unix_seconds(std::time::SystemTime::now()) as u64,
        );
        if signed > 0 {
            metrics::counter!(m::SIGNATURES_MADE).increment(signed as u64);
        }
        snapshot.asn = self.asn.clone();
        snapshot.zone_counters = Arc::clone(&self.zone_counters);
        snapshot.explain = Some(Arc::new(ExplainView {
            zones: Arc::clone(&self.zones),
            latency: Arc::clone(&ranked.latency),
            damping: Arc::clone(&ranked.damping),
            availability,
            down_lines,
        }));
        snapshot
    }

    /// One check per checked node, each resuming from the node's known health.
    pub(super) fn check_plan(&self, nodes: &[Vec<NodeRuntime>]) -> CheckPlan {
        let generation = self.generation;
        let mut checks = Vec::new();
        for (zi, zone) in self.zones.iter().enumerate() {
            for (ni, node) in zone.nodes.iter().enumerate() {
                let Some(check) = node.check.clone() else {
                    continue;
                };
                let runtime = &nodes[zi][ni];
                checks.push(PlannedCheck {
                    key: NodeKey {
                        zone: zi,
                        node: ni,
                        line: 0,
                        generation,
                    },
                    known: runtime.lines.first().map_or(runtime.health, |l| l.health),
                    check: check.clone(),
                    zone: zone.origin.to_string(),
                    node: node.name.clone(),
                });
                // Every further carrier line: the node's check at the line's address.
                for (line, &address) in node.checked_lines().iter().enumerate().skip(1) {
                    let mut check = check.clone();
                    check.target.set_ip(address);
                    checks.push(PlannedCheck {
                        key: NodeKey {
                            zone: zi,
                            node: ni,
                            line: u8::try_from(line).unwrap_or(u8::MAX),
                            generation,
                        },
                        known: runtime
                            .lines
                            .get(line)
                            .map_or(Health::Unknown, |l| l.health),
                        check,
                        zone: zone.origin.to_string(),
                        node: node.name.clone(),
                    });
                }
            }
        }
        CheckPlan { generation, checks }
    }

    /// What the fleet is told this member serves: every zone's SOA serial and node names.
    pub(super) fn fleet_policy(&self) -> FleetPolicy {
        FleetPolicy {
            serials: (self.zones.iter())
                .map(|z| (fleet_zone(z), z.soa.serial))
                .collect(),
            nodes: (self.zones.iter())
                .map(|z| {
                    (
                        fleet_zone(z),
                        z.nodes.iter().map(|n| n.name.clone()).collect(),
                    )
                })
                .collect(),
            keys: (self.zones.iter())
                .filter_map(|z| Some((fleet_zone(z), z.dnssec.as_ref()?)))
                .map(|(zone, signing)| {
                    let keys = (signing.keys.iter())
                        .map(|k| {
                            let role = match k.role {
                                crate::dnssec::KeyRole::KeySigning => "KSK",
                                crate::dnssec::KeyRole::ZoneSigning => "ZSK",
                            };
                            let published = if k.signs() { "" } else { " published" };
                            format!("{role} {}{published}", k.key_tag())
                        })
                        .collect();
                    (zone, keys)
                })
                .collect(),
        }
    }

    /// The gauge of one carrier line's verdict.
    pub(super) fn export_line_gauge(
        &self,
        zi: usize,
        ni: usize,
        line: usize,
        nodes: &[Vec<NodeRuntime>],
    ) {
        let (Some(zone), Some(state)) = (
            self.zones.get(zi),
            nodes
                .get(zi)
                .and_then(|n| n.get(ni))
                .and_then(|r| r.lines.get(line)),
        ) else {
            return;
        };
        let value = match state.health {
            Health::Up => 1.0,
            Health::Down => 0.0,
            Health::Unknown => return,
        };
        metrics::gauge!(m::LINE_UP, "zone" => zone.origin.to_string(), "node" => zone.nodes[ni].name.clone(), "line" => state.address.to_string())
            .set(value);
    }

    /// Node and steered-name availability gauges of one zone: of every node, or of node
    /// `only` and the names that can answer with it.
    pub(super) fn export_zone_gauges(
        &self,
        zi: usize,
        only: Option<NodeId>,
        nodes: &[Vec<NodeRuntime>],
    ) {
        let (Some(gauges), Some(runtimes)) = (self.gauges.get(zi), nodes.get(zi)) else {
            return;
        };
        let state = |id: NodeId| {
            runtimes
                .get(id)
                .map_or((false, false), |r| (r.availability.answerable(), r.full))
        };
        match only {
            Some(id) => gauges.set_node(id, state),
            None => gauges.set(state),
        }
    }

    /// The state view of this load with `table`'s node states.
    pub(super) fn view(
        &self,
        table: &NodeTable,
        ranked: &Ranked,
        latency: &Arc<Vec<ZoneLatency>>,
        last_reload: Option<Result<SystemTime, String>>,
    ) -> StateView {
        let fleet = table.fleet().map(|f| FleetSummary {
            lost: f.lost.clone(),
            ready_by: f.ready_by,
            via: f.state.as_ref().and_then(|s| s.via.clone()),
            members: f.state.as_ref().map(|state| {
                let mut members: Vec<_> = state
                    .member_info
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                members.sort();
                members
            }),
            health: (self.zones.iter().enumerate())
                .map(|(zi, zone)| {
                    (0..zone.nodes.len())
                        .map(|ni| table.effective_health(zi, ni))
                        .collect()
                })
                .collect(),
            verdicts: f.state.as_ref().map_or_else(Vec::new, |state| {
                let mut verdicts: Vec<_> = (state.verdicts.iter())
                    .map(|((zone, node), votes)| (format!("{zone}/{node}"), votes.clone()))
                    .collect();
                verdicts.sort_by(|a, b| a.0.cmp(&b.0));
                verdicts
            }),
        });
        StateView {
            generation: self.generation,
            zones: Arc::clone(&self.zones),
            geo: Arc::clone(&self.geo),
            asn: self.asn.is_some(),
            rankings: Arc::clone(&ranked.rankings),
            nodes: Arc::clone(table.nodes()),
            latency: Arc::clone(latency),
            fleet,
            timeline: table.timeline(),
            last_reload,
        }
    }
}

impl super::Publisher {
    /// At a periodic tick: signatures with a quarter of their lifetime left are made again
    /// by the next build (which signs everything afresh), published like a health change.
    pub(super) fn resign_when_due(&mut self) {
        let now = super::unix_seconds(std::time::SystemTime::now()) as u64;
        if crate::answer::signed::signatures_due(&self.published.snapshot.load(), now) {
            self.schedule.availability_changed();
        }
    }
}
