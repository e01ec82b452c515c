//! Publication: the single writer of snapshots, and the owner of every node's runtime state.
//!
//! Health reports and operator overrides arrive as messages. The publisher applies each one,
//! then drains whatever else is already queued, and rebuilds at most once for the whole burst
//! — and only if some node's availability changed — before storing the new snapshot with one
//! atomic swap. Queries never wait for any of this: they keep reading the previous snapshot
//! until the store. Operator commands are answered after the swap, so a caller that gets its
//! reply knows the next query sees the change.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::{ArcSwap, Guard};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{ExplainView, Snapshot, build};
use crate::geo::CountryTable;
use crate::geo::GeoDb;
use crate::health::{Health, NodeKey, Report};
use crate::latency::feed::{FeedBatch, check_values};
use crate::latency::{ClientGroup, Measurement, ZoneLatency};
use crate::loader::{self, Loaded, Sources};
use crate::metrics as m;
use crate::policy::{AdminStatus, Zone};
use crate::steer::Availability;
use crate::steer::{DampingState, Rankings, rank_all};
use std::collections::HashMap;

/// Read access to the current snapshot, cheap to clone into every serving task.
#[derive(Debug, Clone)]
pub struct SnapshotReader {
    current: Arc<ArcSwap<Snapshot>>,
}

impl SnapshotReader {
    /// The current snapshot: load once per query and use that view throughout.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }
}

/// An operator's run-time decision about a node, overriding policy and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Override {
    /// Take the node out of answers for maintenance.
    Drain,
    /// Answer the node whatever its checks say.
    ForceUp,
    /// Never answer the node.
    ForceDown,
}

/// Requests to the publisher.
#[derive(Debug)]
pub enum Command {
    /// Sets (`Some`) or clears (`None`) a node's override; replies after publication.
    SetOverride {
        /// Zone origin, with or without the trailing dot.
        zone: String,
        /// Node name.
        node: String,
        /// The override.
        set: Option<Override>,
        /// The node's state afterwards, or why the node was not found.
        reply: oneshot::Sender<Result<NodeStatus, String>>,
    },
    /// Every node's state.
    Status {
        /// The answer.
        reply: oneshot::Sender<Vec<NodeStatus>>,
    },
    /// Reloads policy and databases from their files: validated first, swapped in whole,
    /// node health and measurements carried over by zone and node name. On any error the
    /// current state keeps serving.
    Reload {
        /// What was loaded, or every reason it was not.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The policy as loaded, defaults filled in, with the databases' sizes.
    Config {
        /// The answer.
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// The last reload's outcome.
    ReloadStatus {
        /// `None` before any reload; else when it succeeded or why it failed.
        reply: oneshot::Sender<Option<Result<f64, String>>>,
    },
    /// Whether the server is ready: zones loaded and every health-checked node checked at
    /// least once (so answers reflect health, not the optimistic start).
    Ready {
        /// `Ok(())` when ready, else what is still missing.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Explains the current answer of a steered name for a client address.
    Explain {
        /// The steered name.
        name: String,
        /// The client (or ECS subnet) address.
        client: std::net::IpAddr,
        /// The explanation, or why there is none.
        reply: oneshot::Sender<Result<crate::explain::Explanation, String>>,
    },
    /// Applies a batch of latency measurements and load reports: all of it, or (on any
    /// error) none of it. Replies with the number of entries applied, or every error.
    Feed {
        /// The batch.
        batch: FeedBatch,
        /// The outcome.
        reply: oneshot::Sender<Result<usize, Vec<String>>>,
    },
}

/// A node's state, as the admin interface shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Zone origin.
    pub zone: String,
    /// Node name.
    pub node: String,
    /// `core`, `edge` or `backup`.
    pub tier: crate::policy::Tier,
    /// Policy's administrative status.
    pub policy_status: AdminStatus,
    /// Run-time override, if any.
    #[serde(rename = "override")]
    pub override_: Option<Override>,
    /// What the checks say.
    pub health: Health,
    /// Whether answers use the node.
    pub availability: Availability,
    /// The check, `"none"` when the node is not checked.
    pub check: String,
    /// Last probe: passed?
    pub last_ok: Option<bool>,
    /// Last probe: what it saw.
    pub last_detail: Option<String>,
    /// Last probe: latency in milliseconds.
    pub last_latency_ms: Option<f64>,
    /// Seconds since the last probe.
    pub last_check_age_s: Option<f64>,
    /// Seconds since the availability last changed (or since start).
    pub since_s: f64,
    /// Smoothed latency of successful probes, ms.
    pub probe_rtt_ms: Option<f64>,
    /// Smoothed probe failure rate.
    pub probe_loss: f64,
    /// Last reported load (feed), 0..=1.5.
    pub load: Option<f64>,
}

/// Runtime state of one node.
#[derive(Debug, Clone)]
struct NodeRuntime {
    health: Health,
    override_: Option<Override>,
    last: Option<(Report, SystemTime)>,
    availability: Availability,
    since: SystemTime,
    /// Smoothed latency of successful probes, ms.
    probe_rtt_ms: Option<f64>,
    /// Smoothed probe failure rate, 0..=1.
    probe_loss: f64,
    /// `probe_loss` as of the last ranking.
    ranked_loss: f64,
}

/// How often aging measurements and running hold times are looked at.
pub const RERANK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// How often fading measurements alone are worth a re-ranking.
pub const AGING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// A change in a node's reported load that is worth a re-ranking.
const LOAD_STEP: f64 = 0.02;
/// A change in a node's probe loss rate that is worth a re-ranking.
const PROBE_LOSS_STEP: f64 = 0.05;

/// Rankings computed on the ranking thread, and what they were computed from.
struct Reranked {
    generation: u64,
    rankings: Rankings,
    /// Whether they differ from the rankings in use when the ranking started (the only ones
    /// it can be adopted over): compared there, since comparing tens of megabytes on the
    /// publisher would hold up a health change that arrives meanwhile.
    changed: bool,
    damping: Arc<DampingState>,
    challenging: bool,
    latency: Arc<Vec<ZoneLatency>>,
}

/// A ranking in progress, on a thread of its own.
type RankingTask = oneshot::Receiver<Reranked>;

/// Shortest time between two rebuilds: bounds the rebuild rate under a storm of changes.
pub const MIN_REBUILD_GAP: std::time::Duration = std::time::Duration::from_millis(25);

/// A reply to send once the current burst is published.
type PendingReply = Box<dyn FnOnce(&Publisher) + Send>;

/// The single writer. Build with [`Publisher::new`], then move it into [`Publisher::run`].
#[derive(Debug)]
pub struct Publisher {
    zones: Arc<Vec<Zone>>,
    geo: Arc<GeoDb>,
    /// Carrier lookups, when configured.
    asn: Option<Arc<crate::geo::AsnDb>>,
    /// Health-independent rankings; recomputed only when latency inputs change.
    rankings: Arc<Rankings>,
    /// What is measured per zone: feed, loads, probe loss.
    latency: Arc<Vec<ZoneLatency>>,
    /// Each ranking cell's incumbent, for hysteresis; shared with the snapshots' explain
    /// views, so a health-only rebuild does not copy it.
    damping: Arc<DampingState>,
    /// Some cell has a challenger being timed: the periodic look must re-rank. Computed
    /// once per ranking, not per tick (there is a cell per place and name).
    challenging: bool,
    /// Latency inputs changed since the last ranking.
    rerank: bool,
    /// The load of the policy `rankings` were computed for, and the latency inputs they
    /// were computed from (what explain shows beside them).
    ranked_generation: u64,
    ranked_latency: Arc<Vec<ZoneLatency>>,
    /// Rankings taken in since the last build differ from those it used.
    rankings_dirty: bool,
    /// Some node's availability changed since the last build.
    availability_dirty: bool,
    /// When the oldest availability change not yet published was seen.
    changed_at: Option<Instant>,
    /// When measurements were last re-ranked for their age.
    last_aging: Instant,
    /// Which load of the policy is current; health reports carry it.
    generation: u64,
    /// Where to reload from.
    source: Option<Sources>,
    /// The outcome of the last reload: when it succeeded, or why it failed.
    last_reload: Option<Result<SystemTime, String>>,
    /// Health check tasks of the current load.
    checks: tokio::task::JoinSet<()>,
    /// Where checks send their reports.
    report_tx: Option<mpsc::Sender<Report>>,
    /// TLS configurations for HTTPS checks.
    tls: crate::health::TlsConfigs,
    nodes: Vec<Vec<NodeRuntime>>,
    /// Query and answer counters of the current load, shared by its snapshots.
    zone_counters: Arc<Vec<crate::metrics::ZoneCounters>>,
    current: Arc<ArcSwap<Snapshot>>,
}

impl Publisher {
    /// Builds and stores the first snapshot: every node up unless the policy says `down`.
    pub fn new(zones: Vec<Zone>, geo: Arc<GeoDb>, asn: Option<Arc<crate::geo::AsnDb>>) -> Self {
        let now = SystemTime::now();
        let nodes: Vec<Vec<NodeRuntime>> = zones
            .iter()
            .map(|z| {
                z.nodes
                    .iter()
                    .map(|n| NodeRuntime {
                        health: Health::Unknown,
                        override_: None,
                        last: None,
                        availability: availability(n.status, None, Health::Unknown),
                        since: now,
                        probe_rtt_ms: None,
                        probe_loss: 0.0,
                        ranked_loss: 0.0,
                    })
                    .collect()
            })
            .collect();
        let table: Vec<Vec<Availability>> = nodes
            .iter()
            .map(|z| z.iter().map(|n| n.availability).collect())
            .collect();
        let latency: Arc<Vec<ZoneLatency>> =
            Arc::new(zones.iter().map(|_| ZoneLatency::default()).collect());
        let mut damping = DampingState::new();
        let started = Instant::now();
        let rankings = Arc::new(rank_all(&zones, &geo, &latency, &mut damping, now));
        let challenging = damping.any_challenger();
        let damping = Arc::new(damping);
        let mut snapshot = build(&zones, Arc::clone(&geo), &rankings, &table);
        // The first build is a rebuild too: the series exists from the start, before any change.
        metrics::histogram!(m::REBUILD_SECONDS).record(started.elapsed().as_secs_f64());
        snapshot.asn = asn.clone();
        let zone_counters = Arc::new(crate::metrics::ZoneCounters::register(&zones));
        snapshot.zone_counters = Arc::clone(&zone_counters);
        let zones = Arc::new(zones);
        snapshot.explain = Some(Arc::new(ExplainView {
            zones: Arc::clone(&zones),
            latency: Arc::clone(&latency),
            damping: Arc::clone(&damping),
            availability: table,
        }));
        let ranked_latency = Arc::clone(&latency);
        let publisher = Publisher {
            asn,
            zones,
            geo,
            rankings,
            latency,
            damping,
            challenging,
            rerank: false,
            ranked_generation: 0,
            ranked_latency,
            rankings_dirty: false,
            availability_dirty: false,
            changed_at: None,
            last_aging: Instant::now(),
            generation: 0,
            source: None,
            last_reload: None,
            checks: tokio::task::JoinSet::new(),
            report_tx: None,
            tls: crate::health::TlsConfigs::new(),
            nodes,
            zone_counters,
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
        };
        publisher.export_gauges();
        // Both reload series exist from the start, so rates and alerts see a zero first.
        for result in ["ok", "error"] {
            metrics::counter!(m::RELOADS, "result" => result).increment(0);
        }
        publisher
    }

    /// Where `Command::Reload` reads from.
    pub fn with_source(mut self, source: Sources) -> Self {
        self.source = Some(source);
        self
    }

    /// Starts one check task per checked node of the current load (stopping any earlier).
    fn start_checks(&mut self, reports: &mpsc::Sender<Report>) {
        self.checks.abort_all();
        let mut checked = 0;
        for (zi, zone) in self.zones.iter().enumerate() {
            for (ni, node) in zone.nodes.iter().enumerate() {
                if let Some(check) = node.check.clone() {
                    let key = NodeKey {
                        zone: zi,
                        node: ni,
                        generation: self.generation,
                    };
                    self.checks.spawn(crate::health::run_checks(
                        key,
                        check,
                        self.tls.clone(),
                        reports.clone(),
                    ));
                    checked += 1;
                }
            }
        }
        info!(
            nodes = checked,
            generation = self.generation,
            "health checks started"
        );
    }

    /// Installs a newly loaded policy and databases, carrying node state over by zone and
    /// node name, and restarts the checks.
    fn install(
        &mut self,
        mut zones: Vec<Zone>,
        geo: Arc<GeoDb>,
        asn: Option<Arc<crate::geo::AsnDb>>,
    ) -> String {
        let now = SystemTime::now();
        for zone in &mut zones {
            if let Some(previous) = self.zones.iter().find(|z| z.origin == zone.origin) {
                zone.carry_serial_from(previous);
            }
        }
        let old_index: HashMap<(String, String), NodeKey> = self
            .zones
            .iter()
            .enumerate()
            .flat_map(|(zi, z)| {
                z.nodes.iter().enumerate().map(move |(ni, n)| {
                    (
                        (z.origin.to_string(), n.name.clone()),
                        NodeKey {
                            zone: zi,
                            node: ni,
                            generation: 0,
                        },
                    )
                })
            })
            .collect();
        let mut kept = 0;
        let mut nodes = Vec::new();
        let mut latency = Vec::new();
        for zone in &zones {
            let mut runtimes = Vec::new();
            let mut measured = ZoneLatency::default();
            let old_zone = self.zones.iter().position(|z| z.origin == zone.origin);
            for (ni, node) in zone.nodes.iter().enumerate() {
                let old = old_index.get(&(zone.origin.to_string(), node.name.clone()));
                let mut runtime = match old {
                    Some(k) => {
                        kept += 1;
                        self.nodes[k.zone][k.node].clone()
                    }
                    None => NodeRuntime {
                        health: Health::Unknown,
                        override_: None,
                        last: None,
                        availability: Availability::Up,
                        since: now,
                        probe_rtt_ms: None,
                        probe_loss: 0.0,
                        ranked_loss: 0.0,
                    },
                };
                if node.check.is_none() {
                    runtime.health = Health::Unknown;
                }
                let before = runtime.availability;
                runtime.availability = availability(node.status, runtime.override_, runtime.health);
                if runtime.availability != before {
                    runtime.since = now;
                }
                if let Some(k) = old {
                    let old_measured = &self.latency[k.zone];
                    if let Some(load) = old_measured.loads.get(&k.node) {
                        measured.loads.insert(ni, *load);
                    }
                    if let Some(loss) = old_measured.probe_loss.get(&k.node) {
                        measured.probe_loss.insert(ni, *loss);
                    }
                }
                runtimes.push(runtime);
            }
            if let Some(oz) = old_zone {
                let names: HashMap<&str, usize> = zone
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.name.as_str(), i))
                    .collect();
                let old_nodes = &self.zones[oz].nodes;
                measured.measurements = self.latency[oz].measurements.remap(|old| {
                    old_nodes
                        .get(old)
                        .and_then(|n| names.get(n.name.as_str()).copied())
                });
                measured.addresses = self.latency[oz].addresses.clone();
                if let Some(db) = &asn {
                    for group in measured.measurements.column_groups() {
                        if let ClientGroup::Asn(n) = group {
                            measured.asn_networks.insert(n, db.networks_of(n).into());
                        }
                    }
                }
            }
            nodes.push(runtimes);
            latency.push(measured);
        }
        let summary = format!(
            "{} zones, {} nodes ({kept} carried over), {} places",
            zones.len(),
            zones.iter().map(|z| z.nodes.len()).sum::<usize>(),
            geo.places().len()
        );
        self.zone_counters = Arc::new(crate::metrics::ZoneCounters::register(&zones));
        self.zones = Arc::new(zones);
        self.geo = geo;
        self.asn = asn;
        self.nodes = nodes;
        self.latency = Arc::new(latency);
        self.damping = Arc::default();
        self.challenging = false;
        self.generation += 1;
        self.rerank = true;
        self.availability_dirty = true;
        if let Some(tx) = self.report_tx.clone() {
            self.start_checks(&tx);
        }
        self.export_gauges();
        summary
    }

    /// A reader for serving tasks.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            current: Arc::clone(&self.current),
        }
    }

    /// The zones being served (for spawning their checks).
    pub fn zones(&self) -> Arc<Vec<Zone>> {
        Arc::clone(&self.zones)
    }

    /// Applies reports and commands until both channels close.
    pub async fn run(
        mut self,
        report_tx: mpsc::Sender<Report>,
        mut reports: mpsc::Receiver<Report>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        self.report_tx = Some(report_tx.clone());
        self.start_checks(&report_tx);
        let mut replies: Vec<PendingReply> = Vec::new();
        let (mut reports_open, mut commands_open) = (true, true);
        // A change of availability is published at once unless the previous one was
        // published less than MIN_REBUILD_GAP ago; then it waits out the gap, gathering
        // everything that arrives meanwhile into the same rebuild. Isolated failures publish
        // immediately; a storm of changes costs at most one rebuild per gap. New rankings
        // alone wait for MIN_REBUILD_GAP after any publication, so a flood of feed batches
        // costs at most one more rebuild per gap; but they start no gap for availability,
        // or under a latency feed a failure would often wait one out.
        let mut dirty = false;
        let long_ago = tokio::time::Instant::now() - MIN_REBUILD_GAP;
        let (mut last_availability_publish, mut last_publish) = (long_ago, long_ago);
        let due = |availability_changed: bool, last_availability, last| {
            let since = if availability_changed {
                last_availability
            } else {
                last
            };
            since + MIN_REBUILD_GAP
        };
        let mut ranking: Option<RankingTask> = None;
        // Measurements age and challengers' hold times run out without any message arriving:
        // a periodic look re-ranks when latency inputs exist.
        let mut tick = tokio::time::interval(RERANK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ranked = None;
        while reports_open || commands_open || dirty {
            let wake = due(
                self.availability_dirty,
                last_availability_publish,
                last_publish,
            );
            tokio::select! {
                _ = tick.tick() => dirty |= self.latency_due(),
                report = reports.recv(), if reports_open => match report {
                    Some(r) => dirty |= self.apply_report(r),
                    None => reports_open = false,
                },
                command = commands.recv(), if commands_open => match command {
                    Some(c) => dirty |= self.handle(c, &mut replies).await,
                    None => commands_open = false,
                },
                () = tokio::time::sleep_until(wake), if dirty => {}
                reranked = async {
                    match ranking.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                } => ranked = Some(reranked),
            }
            if let Some(reranked) = ranked.take() {
                ranking = None;
                dirty |= self.adopt(reranked) || self.availability_dirty;
                // Inputs that changed while it ran are ranked next.
                dirty |= self.rerank;
            }
            // Coalesce: everything already queued goes into the same rebuild.
            while let Ok(r) = reports.try_recv() {
                dirty |= self.apply_report(r);
            }
            while let Ok(c) = commands.try_recv() {
                dirty |= self.handle(c, &mut replies).await;
            }
            let availability_changed = self.availability_dirty;
            let due = due(
                availability_changed,
                last_availability_publish,
                last_publish,
            );
            if dirty && tokio::time::Instant::now() >= due {
                self.publish(&mut ranking).await;
                last_publish = tokio::time::Instant::now();
                if availability_changed {
                    last_availability_publish = last_publish;
                }
                dirty = false;
            }
            if !dirty {
                for reply in replies.drain(..) {
                    reply(&self);
                }
            }
        }
    }

    /// Applies a command; reloads load their files on the blocking pool first.
    async fn handle(&mut self, command: Command, replies: &mut Vec<PendingReply>) -> bool {
        match command {
            Command::Reload { reply } => {
                let Some(source) = self.source.clone() else {
                    let _ = reply.send(Err("this server has no files to reload from".into()));
                    return false;
                };
                let loaded = tokio::task::spawn_blocking(move || {
                    loader::load(&source).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
                match loaded {
                    Ok(Loaded { zones, geo, asn }) => {
                        let summary = self.install(zones, geo, asn);
                        info!(%summary, "reloaded");
                        metrics::counter!(m::RELOADS, "result" => "ok").increment(1);
                        self.last_reload = Some(Ok(SystemTime::now()));
                        metrics::gauge!(m::RELOAD_OK).set(1.0);
                        replies.push(Box::new(move |_: &Publisher| {
                            let _ = reply.send(Ok(summary));
                        }));
                        true
                    }
                    Err(error) => {
                        warn!(%error, "reload rejected; the previous policy keeps serving");
                        metrics::counter!(m::RELOADS, "result" => "error").increment(1);
                        self.last_reload = Some(Err(error.clone()));
                        metrics::gauge!(m::RELOAD_OK).set(0.0);
                        let _ = reply.send(Err(error));
                        false
                    }
                }
            }
            other => self.apply_command(other, replies),
        }
    }

    fn apply_report(&mut self, report: Report) -> bool {
        let key = report.key;
        if key.generation != self.generation {
            return false; // from a check of a policy that has since been reloaded
        }
        let Some((zone, node)) = self
            .zones
            .get(key.zone)
            .and_then(|z| z.nodes.get(key.node).map(|n| (z, n)))
        else {
            return false;
        };
        let labels = [
            ("zone", zone.origin.to_string()),
            ("node", node.name.clone()),
        ];
        let result_label = if report.result.ok { "ok" } else { "fail" };
        metrics::counter!(
            m::HEALTH_CHECKS,
            &[
                ("zone", labels[0].1.clone()),
                ("node", labels[1].1.clone()),
                ("result", result_label.to_string())
            ]
        )
        .increment(1);
        metrics::histogram!(m::HEALTH_CHECK_SECONDS, &labels)
            .record(report.result.latency.as_secs_f64());
        if let Some((old, new)) = report.transition {
            let level_down = new == Health::Down;
            if level_down {
                warn!(zone = %zone.origin, node = %node.name, from = ?old, to = ?new, check = %report.result.detail, latency_ms = report.result.latency.as_secs_f64() * 1e3, "node health changed");
            } else {
                info!(zone = %zone.origin, node = %node.name, from = ?old, to = ?new, check = %report.result.detail, latency_ms = report.result.latency.as_secs_f64() * 1e3, "node health changed");
            }
            metrics::counter!(
                m::NODE_TRANSITIONS,
                &[
                    ("zone", labels[0].1.clone()),
                    ("node", labels[1].1.clone()),
                    ("to", format!("{new:?}").to_lowercase())
                ]
            )
            .increment(1);
        }
        let status = node.status;
        let runtime = &mut self.nodes[key.zone][key.node];
        runtime.health = report.health;
        // A load reported in a check's body counts like one from the feed.
        if let Some(load) = report.result.load {
            let loads = &mut Arc::make_mut(&mut self.latency)[key.zone].loads;
            if loads
                .get(&key.node)
                .is_none_or(|old| (old - load).abs() > LOAD_STEP)
            {
                loads.insert(key.node, load);
                self.rerank = true;
            }
        }
        let runtime = &mut self.nodes[key.zone][key.node];
        // Smoothed probe latency and loss (EWMA, α = 0.2): the active latency source.
        let failed = if report.result.ok { 0.0 } else { 1.0 };
        runtime.probe_loss = 0.8 * runtime.probe_loss + 0.2 * failed;
        if report.result.ok {
            let ms = report.result.latency.as_secs_f64() * 1e3;
            runtime.probe_rtt_ms =
                Some(runtime.probe_rtt_ms.map_or(ms, |avg| 0.8 * avg + 0.2 * ms));
        }
        runtime.last = Some((report, SystemTime::now()));
        self.refresh(key, status)
    }

    /// At a periodic tick: expires old measurements and decides whether latency inputs call
    /// for a re-ranking (measurements or loads exist, a challenger is being timed, or probe
    /// loss moved materially since the last ranking).
    fn latency_due(&mut self) -> bool {
        let now = SystemTime::now();
        let mut due = false;
        // Measurements fade continuously; re-rank for aging every AGING_INTERVAL only.
        let aging = self.last_aging.elapsed() >= AGING_INTERVAL;
        if aging {
            self.last_aging = Instant::now();
        }
        for (zi, zone) in self.zones.iter().enumerate() {
            // Only touch (and so copy, while a snapshot shares it) the latency state when
            // something changes: expiry on aging ticks, probe loss when it moved.
            if aging {
                let max_age = zone
                    .steered
                    .iter()
                    .map(|s| s.latency.max_age)
                    .max()
                    .unwrap_or_default();
                let measured = &mut Arc::make_mut(&mut self.latency)[zi];
                measured.measurements.expire(now, max_age);
                measured.addresses.expire(now, max_age);
                due |= !measured.measurements.is_empty()
                    || !measured.addresses.is_empty()
                    || !measured.loads.is_empty();
            }
            for (ni, runtime) in self.nodes[zi].iter().enumerate() {
                if (runtime.probe_loss - runtime.ranked_loss).abs() > PROBE_LOSS_STEP {
                    Arc::make_mut(&mut self.latency)[zi]
                        .probe_loss
                        .insert(ni, runtime.probe_loss);
                    due = true;
                }
            }
        }
        due |= self.challenging;
        // Feed batches accepted since the last look.
        due |= self.rerank;
        self.rerank |= due;
        due
    }

    /// Validates a whole feed batch against the served zones; applies it only if all is well.
    fn apply_feed(&mut self, batch: FeedBatch) -> Result<usize, Vec<String>> {
        let now = SystemTime::now();
        let countries = CountryTable::shipped();
        let mut errors = Vec::new();
        let mut staged = Vec::new();
        let zone_of = |named: Option<&String>, what: &str| -> Result<usize, String> {
            match named.or(batch.zone.as_ref()) {
                Some(name) => {
                    let wanted = name.trim_end_matches('.').to_ascii_lowercase();
                    self.zones
                        .iter()
                        .position(|z| z.origin.to_string().trim_end_matches('.') == wanted)
                        .ok_or_else(|| format!("{what}: zone '{name}' is not served here"))
                }
                None if self.zones.len() == 1 => Ok(0),
                None => Err(format!(
                    "{what}: name the zone (`zone`), several are served"
                )),
            }
        };
        let node_of = |zone: usize, name: &str, what: &str| -> Result<usize, String> {
            self.zones[zone]
                .nodes
                .iter()
                .position(|n| n.name == name)
                .ok_or_else(|| {
                    format!(
                        "{what}: unknown node '{name}' in zone {}",
                        self.zones[zone].origin
                    )
                })
        };
        for (i, m) in batch.measurements.iter().enumerate() {
            let what = format!("measurements[{i}]");
            let entry = zone_of(m.zone.as_ref(), &what).and_then(|zone| {
                let node = node_of(zone, &m.node, &what)?;
                let group = ClientGroup::parse(&m.group, countries)
                    .map_err(|e| format!("{what}: group: {e}"))?;
                if let ClientGroup::Asn(asn) = group {
                    let Some(db) = &self.asn else {
                        return Err(format!(
                            "{what}: group {group}: ASN groups need an ASN database (--asn-db)"
                        ));
                    };
                    if db.networks_of(asn).is_empty() {
                        return Err(format!(
                            "{what}: group {group}: the ASN database has no networks for it"
                        ));
                    }
                }
                let max_age = self.zones[zone]
                    .steered
                    .iter()
                    .map(|s| s.latency.max_age)
                    .max()
                    .unwrap_or_default();
                let at = check_values(m.rtt_ms, m.loss, m.at, now, max_age)
                    .map_err(|e| format!("{what}: {e}"))?;
                let address = match &m.address {
                    None => None,
                    Some(text) => {
                        let ip: std::net::IpAddr = text.parse().map_err(|_| {
                            format!("{what}: address '{text}' is not an IP address")
                        })?;
                        if !self.zones[zone].nodes[node].addresses.contains(&ip) {
                            return Err(format!(
                                "{what}: address {ip} is not an address of node '{}'",
                                m.node
                            ));
                        }
                        Some(ip)
                    }
                };
                Ok((
                    zone,
                    node,
                    group,
                    Measurement {
                        rtt_ms: m.rtt_ms,
                        loss: m.loss,
                        at,
                    },
                    address,
                ))
            });
            match entry {
                Ok(e) => staged.push(e),
                Err(e) => errors.push(e),
            }
        }
        let mut loads = Vec::new();
        for (i, l) in batch.loads.iter().enumerate() {
            let what = format!("loads[{i}]");
            let entry = zone_of(l.zone.as_ref(), &what).and_then(|zone| {
                let node = node_of(zone, &l.node, &what)?;
                if !l.load.is_finite() || !(0.0..=1.5).contains(&l.load) {
                    return Err(format!(
                        "{what}: load {} is not a fraction of capacity (expected 0..1.5)",
                        l.load
                    ));
                }
                Ok((zone, node, l.load))
            });
            match entry {
                Ok(e) => loads.push(e),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            warn!(errors = ?errors, "latency feed batch rejected");
            return Err(errors);
        }
        let applied = staged.len() + loads.len();
        for (zone, node, group, m, address) in staged {
            if let (ClientGroup::Asn(asn), Some(db)) = (&group, &self.asn) {
                Arc::make_mut(&mut self.latency)[zone]
                    .asn_networks
                    .entry(*asn)
                    .or_insert_with(|| db.networks_of(*asn).into());
            }
            match address {
                Some(ip) => Arc::make_mut(&mut self.latency)[zone]
                    .addresses
                    .record(ip, group, m),
                None => Arc::make_mut(&mut self.latency)[zone]
                    .measurements
                    .record(node, group, m),
            }
        }
        for (zone, node, load) in loads {
            Arc::make_mut(&mut self.latency)[zone]
                .loads
                .insert(node, load);
        }
        if applied > 0 {
            self.rerank = true;
        }
        Ok(applied)
    }

    fn apply_command(&mut self, command: Command, replies: &mut Vec<PendingReply>) -> bool {
        match command {
            Command::Status { reply } => {
                replies.push(Box::new(move |p: &Publisher| {
                    let _ = reply.send(p.status());
                }));
                false
            }
            Command::Reload { reply } => {
                // Handled (asynchronously) by `handle`; never reaches here.
                let _ = reply.send(Err("reload is handled by the run loop".into()));
                false
            }
            Command::Config { reply } => {
                let _ = reply.send(serde_json::json!({
                    "generation": self.generation,
                    "geo_places": self.geo.places().len(),
                    "asn_db": self.asn.is_some(),
                    "zones": self.zones.iter().map(crate::policy::effective::zone_json).collect::<Vec<_>>(),
                }));
                false
            }
            Command::ReloadStatus { reply } => {
                let now = SystemTime::now();
                let _ =
                    reply.send(self.last_reload.clone().map(|r| {
                        r.map(|t| now.duration_since(t).map_or(0.0, |d| d.as_secs_f64()))
                    }));
                false
            }
            Command::Ready { reply } => {
                let waiting: Vec<String> = self
                    .zones
                    .iter()
                    .zip(&self.nodes)
                    .flat_map(|(zone, runtimes)| {
                        zone.nodes
                            .iter()
                            .zip(runtimes)
                            .filter(|(node, runtime)| {
                                node.check.is_some() && runtime.last.is_none()
                            })
                            .map(|(node, _)| format!("{}/{}", zone.origin, node.name))
                    })
                    .collect();
                let _ = reply.send(if waiting.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "first health round incomplete: {}",
                        waiting.join(", ")
                    ))
                });
                false
            }
            Command::Explain {
                name,
                client,
                reply,
            } => {
                replies.push(Box::new(move |p: &Publisher| {
                    let _ = reply.send(p.explain(&name, client));
                }));
                false
            }
            Command::Feed { batch, reply } => {
                // Accepted batches are re-ranked at the next periodic look (within
                // RERANK_INTERVAL), so a stream of batches costs one re-ranking per interval;
                // the sender need not wait for it.
                let _ = reply.send(self.apply_feed(batch));
                false
            }
            Command::SetOverride {
                zone,
                node,
                set,
                reply,
            } => {
                let Some(key) = self.find(&zone, &node) else {
                    let _ = reply.send(Err(format!("no node '{node}' in zone '{zone}'")));
                    return false;
                };
                let z = &self.zones[key.zone];
                info!(zone = %z.origin, node = %node, set = ?set, "operator override");
                let status = z.nodes[key.node].status;
                self.nodes[key.zone][key.node].override_ = set;
                let dirty = self.refresh(key, status);
                replies.push(Box::new(move |p: &Publisher| {
                    let entry = p.status_of(key);
                    let _ = reply.send(Ok(entry));
                }));
                dirty
            }
        }
    }

    /// Recomputes a node's availability; true when it changed.
    fn refresh(&mut self, key: NodeKey, status: AdminStatus) -> bool {
        let runtime = &mut self.nodes[key.zone][key.node];
        let new = availability(status, runtime.override_, runtime.health);
        if new == runtime.availability {
            return false;
        }
        let zone = &self.zones[key.zone];
        info!(zone = %zone.origin, node = %zone.nodes[key.node].name, from = ?runtime.availability, to = ?new, "node availability changed");
        runtime.availability = new;
        runtime.since = SystemTime::now();
        self.availability_dirty = true;
        self.changed_at.get_or_insert_with(Instant::now);
        self.export_zone_gauges(key.zone);
        true
    }

    fn find(&self, zone: &str, node: &str) -> Option<NodeKey> {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        self.zones.iter().enumerate().find_map(|(zi, z)| {
            (z.origin.to_string().trim_end_matches('.') == zone)
                .then(|| {
                    z.nodes
                        .iter()
                        .position(|n| n.name == node)
                        .map(|ni| NodeKey {
                            zone: zi,
                            node: ni,
                            generation: self.generation,
                        })
                })
                .flatten()
        })
    }

    /// Starts ranking every steered name on a thread of its own, from the current policy and
    /// latency inputs.
    fn start_ranking(&mut self) -> RankingTask {
        self.rerank = false;
        let (zones, geo, latency, damping, previous) = (
            Arc::clone(&self.zones),
            Arc::clone(&self.geo),
            Arc::clone(&self.latency),
            Arc::clone(&self.damping),
            Arc::clone(&self.rankings),
        );
        let generation = self.generation;
        let (done, task) = oneshot::channel();
        // At a lower CPU priority (and so are the threads it splits the work over): answer
        // builds and the query threads come first when the cores are busy.
        let started = std::thread::Builder::new()
            .name("geosteer-rank".into())
            .spawn(move || {
                crate::parallel::lower_this_threads_priority();
                let started = Instant::now();
                let mut damping = Arc::unwrap_or_clone(damping);
                let rankings = rank_all(&zones, &geo, &latency, &mut damping, SystemTime::now());
                metrics::histogram!(m::RANKING_SECONDS).record(started.elapsed().as_secs_f64());
                let changed = rankings != *previous;
                drop(previous);
                let _ = done.send(Reranked {
                    generation,
                    changed,
                    challenging: damping.any_challenger(),
                    rankings,
                    damping: Arc::new(damping),
                    latency,
                });
            });
        if let Err(e) = started {
            // The sender is gone with the closure: the ranking reports as failed.
            tracing::error!(error = %e, "cannot start a ranking thread");
        }
        task
    }

    /// Takes new rankings in if they are of the current policy; whether they differ from
    /// those in use (then `rankings_dirty` is set until they are published).
    fn adopt(&mut self, reranked: Result<Reranked, oneshot::error::RecvError>) -> bool {
        let reranked = match reranked {
            Ok(reranked) if reranked.generation == self.generation => reranked,
            Ok(_) => return false, // ranked for a policy since replaced
            Err(_) => {
                // The ranking thread panicked (a bug) or did not start.
                tracing::error!("re-ranking failed; previous rankings stay in use");
                return false;
            }
        };
        self.damping = reranked.damping;
        self.challenging = reranked.challenging;
        for (zi, runtimes) in self.nodes.iter_mut().enumerate() {
            for (ni, runtime) in runtimes.iter_mut().enumerate() {
                runtime.ranked_loss = reranked
                    .latency
                    .get(zi)
                    .and_then(|z| z.probe_loss.get(&ni).copied())
                    .unwrap_or(0.0);
            }
        }
        let changed = reranked.changed;
        self.rankings = Arc::new(reranked.rankings);
        self.ranked_generation = reranked.generation;
        self.ranked_latency = reranked.latency;
        self.rankings_dirty |= changed;
        changed
    }

    /// Rebuilds every answer table from the current availability and swaps it in. The build
    /// runs on the blocking pool so it never holds up a thread that serves queries.
    ///
    /// New latency inputs are ranked in the background (`ranking`): at 200 nodes against a
    /// city database that takes 0.1-0.4 s, and a health change meanwhile is published from
    /// the rankings in use, in a millisecond or two, instead of waiting for it. A new policy is
    /// ranked here: the old rankings cannot answer for it.
    async fn publish(&mut self, ranking: &mut Option<RankingTask>) {
        let started = Instant::now();
        let table: Vec<Vec<Availability>> = self
            .nodes
            .iter()
            .map(|z| z.iter().map(|n| n.availability).collect())
            .collect();
        if self.ranked_generation != self.generation {
            let reranked = self.start_ranking().await;
            self.adopt(reranked);
            if self.ranked_generation != self.generation {
                return; // not ranked: the previous tables stay published
            }
        } else if self.rerank && ranking.is_none() {
            *ranking = Some(self.start_ranking());
        }
        let availability_changed = std::mem::take(&mut self.availability_dirty);
        let rankings_changed = std::mem::take(&mut self.rankings_dirty);
        if !availability_changed && !rankings_changed {
            return; // same order, same health: the published tables stand
        }
        let (zones, geo, rankings) = (
            Arc::clone(&self.zones),
            Arc::clone(&self.geo),
            Arc::clone(&self.rankings),
        );
        let explain_table = table.clone();
        let built =
            tokio::task::spawn_blocking(move || build(&zones, geo, &rankings, &table)).await;
        let snapshot = match built {
            Ok(mut snapshot) => {
                snapshot.asn = self.asn.clone();
                snapshot.zone_counters = Arc::clone(&self.zone_counters);
                snapshot.explain = Some(Arc::new(ExplainView {
                    zones: Arc::clone(&self.zones),
                    latency: Arc::clone(&self.ranked_latency),
                    damping: Arc::clone(&self.damping),
                    availability: explain_table,
                }));
                snapshot
            }
            Err(e) => {
                // A panic in the builder is a bug; keep serving the last good snapshot.
                tracing::error!(error = %e, "answer table rebuild failed; previous tables stay published");
                return;
            }
        };
        self.current.store(Arc::new(snapshot));
        let elapsed = started.elapsed();
        metrics::histogram!(m::REBUILD_SECONDS).record(elapsed.as_secs_f64());
        if let Some(changed) = self.changed_at.take() {
            metrics::histogram!(m::CHANGE_PUBLISH_SECONDS).record(changed.elapsed().as_secs_f64());
        }
        info!(
            rebuild_ms = elapsed.as_secs_f64() * 1e3,
            "answer tables published"
        );
    }

    /// The explanation of a steered name's answer for a client, with live state.
    fn explain(
        &self,
        name: &str,
        client: std::net::IpAddr,
    ) -> Result<crate::explain::Explanation, String> {
        let availability: Vec<Vec<Availability>> = self
            .nodes
            .iter()
            .map(|z| z.iter().map(|n| n.availability).collect())
            .collect();
        crate::explain::explain(&self.zones, &self.geo, name, client, |zone| {
            crate::explain::LiveState {
                availability: availability.get(zone).map(Vec::as_slice),
                latency: self.latency.get(zone),
                damping: Some((&*self.damping, zone)),
            }
        })
        .map_err(|e| e.to_string())
    }

    /// Sets every node's availability gauge (at start; changes update their own).
    fn export_gauges(&self) {
        for zi in 0..self.zones.len() {
            self.export_zone_gauges(zi);
        }
        let reload_ok = !matches!(self.last_reload, Some(Err(_)));
        metrics::gauge!(m::RELOAD_OK).set(if reload_ok { 1.0 } else { 0.0 });
    }

    /// Node and steered-name availability gauges of one zone.
    fn export_zone_gauges(&self, zi: usize) {
        let (Some(zone), Some(runtimes)) = (self.zones.get(zi), self.nodes.get(zi)) else {
            return;
        };
        let origin = zone.origin.to_string();
        let up = |id: usize| {
            runtimes
                .get(id)
                .is_some_and(|r| r.availability == Availability::Up)
        };
        for (id, node) in zone.nodes.iter().enumerate() {
            let value = if up(id) { 1.0 } else { 0.0 };
            metrics::gauge!(m::NODE_UP, "zone" => origin.clone(), "node" => node.name.clone())
                .set(value);
        }
        for steered in &zone.steered {
            let available = steered
                .candidate_nodes()
                .into_iter()
                .filter(|&id| up(id))
                .count();
            metrics::gauge!(m::NAME_NODES_UP, "zone" => origin.clone(), "name" => steered.name.to_string())
                .set(available as f64);
        }
    }

    fn status(&self) -> Vec<NodeStatus> {
        let mut out = Vec::new();
        for (zi, zone) in self.zones.iter().enumerate() {
            for ni in 0..zone.nodes.len() {
                out.push(self.status_of(NodeKey {
                    zone: zi,
                    node: ni,
                    generation: self.generation,
                }));
            }
        }
        out
    }

    fn status_of(&self, key: NodeKey) -> NodeStatus {
        let zone = &self.zones[key.zone];
        let node = &zone.nodes[key.node];
        let runtime = &self.nodes[key.zone][key.node];
        let now = SystemTime::now();
        let age = |t: SystemTime| now.duration_since(t).map_or(0.0, |d| d.as_secs_f64());
        NodeStatus {
            zone: zone.origin.to_string(),
            node: node.name.clone(),
            tier: node.tier,
            policy_status: node.status,
            override_: runtime.override_,
            health: runtime.health,
            availability: runtime.availability,
            check: node.check.as_ref().map_or_else(
                || "none".to_string(),
                |c| format!("{:?} {}", c.kind, c.target).to_lowercase(),
            ),
            last_ok: runtime.last.as_ref().map(|(r, _)| r.result.ok),
            last_detail: runtime.last.as_ref().map(|(r, _)| r.result.detail.clone()),
            last_latency_ms: runtime
                .last
                .as_ref()
                .map(|(r, _)| r.result.latency.as_secs_f64() * 1e3),
            last_check_age_s: runtime.last.as_ref().map(|(_, t)| age(*t)),
            since_s: age(runtime.since),
            probe_rtt_ms: runtime.probe_rtt_ms,
            probe_loss: runtime.probe_loss,
            load: self.latency[key.zone].loads.get(&key.node).copied(),
        }
    }
}

/// Policy status, then override, then health: who decides whether a node is answered.
fn availability(status: AdminStatus, override_: Option<Override>, health: Health) -> Availability {
    match (override_, status, health) {
        (Some(Override::Drain | Override::ForceDown), _, _) => Availability::AdminDown,
        (Some(Override::ForceUp), _, _) => Availability::Up,
        (None, AdminStatus::Down, _) => Availability::AdminDown,
        (None, AdminStatus::Up, _) => Availability::Up,
        (None, AdminStatus::Obey, Health::Down) => Availability::HealthDown,
        (None, AdminStatus::Obey, _) => Availability::Up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_beat_policy_and_health() {
        use Availability::*;
        assert_eq!(availability(AdminStatus::Obey, None, Health::Unknown), Up);
        assert_eq!(
            availability(AdminStatus::Obey, None, Health::Down),
            HealthDown
        );
        assert_eq!(availability(AdminStatus::Up, None, Health::Down), Up);
        assert_eq!(availability(AdminStatus::Down, None, Health::Up), AdminDown);
        assert_eq!(
            availability(AdminStatus::Down, Some(Override::ForceUp), Health::Down),
            Up
        );
        assert_eq!(
            availability(AdminStatus::Up, Some(Override::Drain), Health::Up),
            AdminDown
        );
        assert_eq!(
            availability(AdminStatus::Obey, Some(Override::ForceDown), Health::Up),
            AdminDown
        );
    }
}
