//! Publication: the single writer of snapshots, and the owner of every node's runtime state.
//!
//! This file is the run loop: it applies reports and commands (`commands`) to node state
//! (`nodes`) and latency inputs, asks the scheduler (`schedule`) when to publish, ranks on a
//! thread of its own and builds on the blocking pool.
//!
//! Health reports and operator overrides arrive as messages. The publisher applies each one,
//! then drains whatever else is already queued, and rebuilds at most once for the whole burst
//! — and only if some node's availability changed — before storing the new snapshot with one
//! atomic swap. Queries never wait for any of this: they keep reading the previous snapshot
//! until the store. Operator commands are answered after the swap, so a caller that gets its
//! reply knows the next query sees the change.
// The publisher owns time: it reads the clock and passes it to the pure parts (the
// scheduler, node carry-over, feed validation).
#![allow(clippy::disallowed_methods)]

mod commands;
mod map;
mod nodes;
mod schedule;

pub use commands::{
    Command, FleetNews, FleetState, FleetWrite, NodeStatus, Override, SnapshotReader, WhatIfChange,
};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::build::build;
use super::snapshot::{ExplainView, Snapshot};
use crate::geo::{AsnDb, GeoDb};
use crate::health::{Health, NodeKey, Report};
use crate::latency::ZoneLatency;
use crate::latency::feed::FeedBatch;
use crate::loader::{self, Loaded, Sources};
use crate::metrics as m;
use crate::policy::{AdminStatus, Zone};
use crate::steer::{Availability, DampingState, Rankings, rank_all};
use nodes::{CarriedOver, NodeRuntime, availability, carry_damping, carry_over, load_percent};
use schedule::{Publication, Schedule};

/// A zone as the fleet names it: its origin without the trailing dot.
fn fleet_zone(zone: &Zone) -> String {
    zone.origin
        .to_string()
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// A round trip a probe agent sent: zone, node, milliseconds.
type SentRtt = (String, String, f64);

/// A probe agent sends its measurements at most this often,
const MEASURE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// and at least this often, so they do not age out.
const MEASURE_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// How often aging measurements and running hold times are looked at.
pub(super) const RERANK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// How often fading measurements alone are worth a re-ranking.
pub(super) const AGING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
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

/// Debug builds only (what the tests run): `GEOSTEER_FAULT=publisher` makes the publisher
/// panic at its first feed batch, so a test can see supervision end the process. Release
/// builds have no such hook.
#[cfg(debug_assertions)]
fn injected_fault() -> bool {
    std::env::var("GEOSTEER_FAULT").is_ok_and(|v| v == "publisher")
}

/// A reply to send once the current burst is published.
type PendingReply = Box<dyn FnOnce(&Publisher) + Send>;

/// The single writer. Build with [`Publisher::new`], then move it into [`Publisher::run`].
#[derive(Debug)]
pub struct Publisher {
    zones: Arc<Vec<Zone>>,
    geo: Arc<GeoDb>,
    /// Carrier lookups, when configured.
    asn: Option<Arc<AsnDb>>,
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
    /// The load of the policy `rankings` were computed for, and the latency inputs they
    /// were computed from (what explain shows beside them).
    ranked_generation: u64,
    ranked_latency: Arc<Vec<ZoneLatency>>,
    /// What waits to be published, and when it is due.
    schedule: Schedule,
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
    /// Runtime state per zone and node.
    nodes: Vec<Vec<NodeRuntime>>,
    /// Query and answer counters of the current load, shared by its snapshots.
    zone_counters: Arc<Vec<crate::metrics::ZoneCounters>>,
    /// The published snapshot: stored here and nowhere else.
    current: Arc<ArcSwap<Snapshot>>,
    /// In a fleet: where this instance's own verdicts and overrides go (written to etcd by
    /// the fleet task, never awaited here).
    fleet_out: Option<mpsc::Sender<FleetWrite>>,
    /// The fleet's state as last seen.
    fleet: Option<FleetState>,
    /// Other members' feed batches as last applied, by identity.
    applied_feeds: HashMap<String, String>,
    /// A probe agent's vantage point (a geo code): its probes' round trips go to the fleet as
    /// measurements of that client group.
    vantage: Option<String>,
    /// What the agent last sent, and when.
    measured: Option<(Instant, Vec<SentRtt>)>,
    /// Why etcd cannot be reached, while it cannot: answers then use local verdicts and
    /// the last overrides seen.
    fleet_lost: Option<String>,
    /// The last availability changes and reloads, for the status page.
    timeline: map::Timeline,
    /// The status page's last census.
    census_cache: Arc<map::CensusCache>,
}

impl Publisher {
    /// Builds and stores the first snapshot: every node up unless the policy says `down`.
    pub fn new(zones: Vec<Zone>, geo: Arc<GeoDb>, asn: Option<Arc<AsnDb>>) -> Self {
        let now = SystemTime::now();
        let nodes: Vec<Vec<NodeRuntime>> = zones
            .iter()
            .map(|z| {
                z.nodes
                    .iter()
                    .map(|n| NodeRuntime::new(n.status, now))
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
            ranked_generation: 0,
            ranked_latency,
            schedule: Schedule::new(tokio::time::Instant::now()),
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
            fleet_out: None,
            fleet: None,
            applied_feeds: HashMap::new(),
            vantage: None,
            measured: None,
            fleet_lost: None,
            timeline: map::Timeline::default(),
            census_cache: Arc::default(),
        };
        publisher.export_gauges();
        // Both reload and feed series exist from the start, so rates and alerts see a zero
        // first.
        for result in ["ok", "error"] {
            metrics::counter!(m::RELOADS, "result" => result).increment(0);
        }
        for result in ["applied", "rejected"] {
            metrics::counter!(m::FEED_BATCHES, "result" => result).increment(0);
        }
        publisher
    }

    /// Joins a fleet: own verdicts and overrides go to `writes`, and `Command::Fleet` news
    /// decide overrides and (by each zone's quorum) health.
    pub fn with_fleet(mut self, writes: mpsc::Sender<FleetWrite>) -> Self {
        let _ = writes.try_send(FleetWrite::Policy(self.serials()));
        self.fleet_out = Some(writes);
        self.fleet_lost = Some("not connected yet".into());
        metrics::gauge!(m::FLEET_CONNECTED).set(0.0);
        self
    }

    /// Runs as a probe agent at `vantage` (a geo code): its checks' round trips are sent to
    /// the fleet as that client group's measurements.
    pub fn with_vantage(mut self, vantage: String) -> Self {
        self.vantage = Some(vantage);
        self
    }

    /// A probe agent's measurements for the fleet: every node's smoothed probe round trip
    /// and loss, sent when one moved by more than a tenth (or 2 ms), or every
    /// `MEASURE_REFRESH` so they stay fresh; never more often than `MEASURE_EVERY`.
    fn measure_for_fleet(&mut self) {
        let (Some(out), Some(group)) = (&self.fleet_out, &self.vantage) else {
            return;
        };
        let now = Instant::now();
        if let Some((at, _)) = &self.measured
            && now.duration_since(*at) < MEASURE_EVERY
        {
            return;
        }
        let mut current = Vec::new();
        let mut entries = Vec::new();
        for (zi, zone) in self.zones.iter().enumerate() {
            let origin = fleet_zone(zone);
            for (ni, node) in zone.nodes.iter().enumerate() {
                let runtime = &self.nodes[zi][ni];
                let Some(rtt) = runtime.probe_rtt_ms else {
                    continue;
                };
                current.push((origin.clone(), node.name.clone(), rtt));
                entries.push(serde_json::json!({
                    "zone": origin, "group": group, "node": node.name,
                    "rtt_ms": rtt.clamp(0.0, crate::latency::MAX_RTT_MS),
                    "loss": runtime.probe_loss.clamp(0.0, 1.0),
                }));
            }
        }
        let moved = match &self.measured {
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
            return;
        }
        let batch = serde_json::json!({ "measurements": entries }).to_string();
        let _ = out.try_send(FleetWrite::Feed(batch));
        self.measured = Some((now, current));
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
                        self.nodes
                            .get(zi)
                            .and_then(|runtimes| runtimes.get(ni))
                            .map_or(Health::Unknown, |runtime| runtime.health),
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
        asn: Option<Arc<AsnDb>>,
    ) -> String {
        let now = SystemTime::now();
        for zone in &mut zones {
            if let Some(previous) = self.zones.iter().find(|z| z.origin == zone.origin) {
                zone.carry_serial_from(previous);
            }
        }
        let CarriedOver {
            nodes,
            latency,
            kept,
        } = carry_over(
            &self.zones,
            &self.nodes,
            &self.latency,
            &zones,
            asn.as_deref(),
            now,
        );
        let summary = format!(
            "{} zones, {} nodes ({kept} carried over), {} places",
            zones.len(),
            zones.iter().map(|z| z.nodes.len()).sum::<usize>(),
            geo.places().len()
        );
        // Hysteresis carries over too: a reload must not move clients that would not move.
        let damping = carry_damping(
            &self.zones,
            &self.damping,
            &zones,
            Arc::ptr_eq(&self.geo, &geo) || self.geo.places() == geo.places(),
        );
        self.challenging = damping.any_challenger();
        self.damping = Arc::new(damping);
        self.zone_counters = Arc::new(crate::metrics::ZoneCounters::register(&zones));
        self.zones = Arc::new(zones);
        self.geo = geo;
        self.asn = asn;
        self.nodes = nodes;
        self.latency = Arc::new(latency);
        self.generation += 1;
        self.schedule.latency_changed();
        self.schedule.availability_changed();
        if let Some(tx) = self.report_tx.clone() {
            self.start_checks(&tx);
        }
        if let Some(out) = &self.fleet_out {
            let _ = out.try_send(FleetWrite::Policy(self.serials()));
            // Overrides and verdicts are the fleet's, by zone and node name: the new load's
            // nodes take them too.
            if let (Some(state), None) = (self.fleet.clone(), &self.fleet_lost) {
                self.apply_fleet(FleetNews::State(state));
            }
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
        let mut ranking: Option<RankingTask> = None;
        // Measurements age and challengers' hold times run out without any message arriving:
        // a periodic look re-ranks when latency inputs exist.
        let mut tick = tokio::time::interval(RERANK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ranked = None;
        while reports_open || commands_open || self.schedule.pending() {
            let due = self.schedule.due();
            tokio::select! {
                _ = tick.tick() => {
                    let due = self.latency_due();
                    self.schedule.look(due);
                    self.measure_for_fleet();
                }
                report = reports.recv(), if reports_open => match report {
                    Some(r) => self.apply_report(r),
                    None => reports_open = false,
                },
                command = commands.recv(), if commands_open => match command {
                    Some(c) => self.handle(c, &mut replies).await,
                    None => commands_open = false,
                },
                () = async {
                    match due {
                        Some(due) => tokio::time::sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                } => {}
                reranked = async {
                    match ranking.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                } => ranked = Some(reranked),
                ended = self.checks.join_next(), if !self.checks.is_empty() => {
                    // Check tasks run until aborted (on reload); one that panicked has
                    // stopped checking its node for good: stop, and let the process exit.
                    if let Some(Err(e)) = ended
                        && e.is_panic()
                    {
                        tracing::error!("a health check task panicked; the publisher stops");
                        return;
                    }
                }
            }
            if let Some(reranked) = ranked.take() {
                ranking = None;
                let changed = self.adopt(reranked);
                self.schedule.ranking_finished(changed);
            }
            // Coalesce: everything already queued goes into the same rebuild.
            while let Ok(r) = reports.try_recv() {
                self.apply_report(r);
            }
            while let Ok(c) = commands.try_recv() {
                self.handle(c, &mut replies).await;
            }
            if self.ranked_generation != self.generation {
                // A new policy is ranked before its first build, with the inputs of now.
                self.schedule.ranked_in_place();
            }
            if let Some(publication) = self.schedule.take(tokio::time::Instant::now()) {
                if publication.start_ranking {
                    ranking = Some(self.start_ranking());
                }
                self.publish(publication).await;
            }
            if !self.schedule.pending() {
                for reply in replies.drain(..) {
                    reply(&self);
                }
            }
        }
    }

    /// Applies a command; reloads load their files on the blocking pool first.
    async fn handle(&mut self, command: Command, replies: &mut Vec<PendingReply>) {
        match command {
            Command::Reload { reply } => {
                let Some(source) = self.source.clone() else {
                    let _ = reply.send(Err("this server has no files to reload from".into()));
                    return;
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
                        self.note_reload(Ok(&summary));
                        metrics::gauge!(m::RELOAD_OK).set(1.0);
                        replies.push(Box::new(move |_: &Publisher| {
                            let _ = reply.send(Ok(summary));
                        }));
                    }
                    Err(error) => {
                        warn!(%error, "reload rejected; the previous policy keeps serving");
                        metrics::counter!(m::RELOADS, "result" => "error").increment(1);
                        self.last_reload = Some(Err(error.clone()));
                        self.note_reload(Err(&error));
                        metrics::gauge!(m::RELOAD_OK).set(0.0);
                        let _ = reply.send(Err(error));
                    }
                }
            }
            other => self.apply_command(other, replies),
        }
    }

    fn apply_report(&mut self, report: Report) {
        let key = report.key;
        if key.generation != self.generation {
            return; // from a check of a policy that has since been reloaded
        }
        let Some((zone, node)) = self
            .zones
            .get(key.zone)
            .and_then(|z| z.nodes.get(key.node).map(|n| (z, n)))
        else {
            return;
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
        if let (Some(out), Some((_, new))) = (&self.fleet_out, report.transition) {
            // Never waits: a full queue means the fleet task is behind and will re-send every
            // verdict when it reconnects.
            let _ = out.try_send(FleetWrite::Verdict {
                zone: fleet_zone(zone),
                node: node.name.clone(),
                health: new,
            });
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
                self.schedule.latency_changed();
                self.refresh_fullness(key.zone);
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
        self.refresh(key, status);
    }

    /// At a periodic tick: expires old measurements and decides whether latency inputs call
    /// for a re-ranking (measurements or loads exist, a challenger is being timed, or probe
    /// loss moved materially since the last ranking). Changes since the last ranking call
    /// for one too; the scheduler knows of those.
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
        due | self.challenging
    }

    /// Validates a whole feed batch against the served zones; applies it only if all is well.
    fn apply_feed(&mut self, batch: &FeedBatch) -> Result<usize, Vec<String>> {
        let valid = batch
            .validate(&self.zones, self.asn.as_deref(), SystemTime::now())
            .inspect_err(|errors| {
                warn!(errors = ?errors, "latency feed batch rejected");
                metrics::counter!(m::FEED_BATCHES, "result" => "rejected").increment(1);
            })?;
        metrics::counter!(m::FEED_BATCHES, "result" => "applied").increment(1);
        let applied = valid.len();
        if !valid.is_empty() {
            valid.apply(
                Arc::make_mut(&mut self.latency).as_mut_slice(),
                self.asn.as_deref(),
            );
            self.schedule.latency_changed();
            for zone in 0..self.zones.len() {
                self.refresh_fullness(zone);
            }
        }
        Ok(applied)
    }

    fn apply_command(&mut self, command: Command, replies: &mut Vec<PendingReply>) {
        match command {
            Command::Status { reply } => {
                replies.push(Box::new(move |p: &Publisher| {
                    let _ = reply.send(p.status());
                }));
            }
            Command::Reload { reply } => {
                // Handled (asynchronously) by `handle`; never reaches here.
                let _ = reply.send(Err("reload is handled by the run loop".into()));
            }
            Command::Config { reply } => {
                let _ = reply.send(serde_json::json!({
                    "generation": self.generation,
                    "geo_places": self.geo.places().len(),
                    "asn_db": self.asn.is_some(),
                    "zones": self.zones.iter().map(crate::policy::effective::zone_json).collect::<Vec<_>>(),
                }));
            }
            Command::ReloadStatus { reply } => {
                let now = SystemTime::now();
                let _ =
                    reply.send(self.last_reload.clone().map(|r| {
                        r.map(|t| now.duration_since(t).map_or(0.0, |d| d.as_secs_f64()))
                    }));
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
                // A lost fleet degrades, never blocks: this instance answers from its own
                // verdicts, so it stays ready (and announced) and says why it is degraded.
                let degraded = self
                    .fleet_lost
                    .iter()
                    .map(|why| {
                        format!(
                            "fleet degraded: etcd unreachable ({why}); answering from local health and the last fleet state seen"
                        )
                    })
                    .collect();
                let _ = reply.send(if waiting.is_empty() {
                    Ok(degraded)
                } else {
                    Err(format!(
                        "first health round incomplete: {}",
                        waiting.join(", ")
                    ))
                });
            }
            Command::Explain {
                name,
                client,
                reply,
            } => {
                replies.push(Box::new(move |p: &Publisher| {
                    let _ = reply.send(p.explain(&name, client));
                }));
            }
            Command::Fleet(news) => self.apply_fleet(news),
            // After this round's publication, so a change just made shows.
            Command::Map {
                name,
                have,
                family,
                reply,
            } => {
                replies.push(Box::new(move |p: &Publisher| {
                    map::reply_later(p.map(name.as_deref(), have, family), reply)
                }));
            }
            Command::WhatIf {
                name,
                changes,
                family,
                reply,
            } => {
                replies.push(Box::new(move |p: &Publisher| {
                    map::reply_later(p.what_if(name.as_deref(), changes, family), reply)
                }));
            }
            Command::FleetStatus { reply } => {
                let _ = reply.send(self.fleet_out.as_ref().map(|_| {
                    serde_json::json!({
                        "connected": self.fleet_lost.is_none(),
                        "lost": self.fleet_lost,
                        "members": self.fleet.as_ref().map(|f| {
                            f.member_info
                                .iter()
                                .map(|(member, info)| {
                                    let info = serde_json::from_str(info)
                                        .unwrap_or_else(|_| serde_json::json!(info));
                                    (member.clone(), info)
                                })
                                .collect::<serde_json::Map<_, _>>()
                        }),
                    })
                }));
            }
            Command::Feed { batch, reply } => {
                #[cfg(debug_assertions)]
                if injected_fault() {
                    panic!("fault injected for a supervision test");
                }
                // Accepted batches are re-ranked at the next periodic look (within
                // RERANK_INTERVAL), so a stream of batches costs one re-ranking per interval;
                // the sender need not wait for it.
                let applied = self.apply_feed(&batch);
                // The other instances take it too.
                if applied.is_ok()
                    && let Some(out) = &self.fleet_out
                    && let Ok(json) = serde_json::to_string(&batch)
                {
                    let _ = out.try_send(FleetWrite::Feed(json));
                }
                let _ = reply.send(applied);
            }
            Command::SetOverride {
                zone,
                node,
                set,
                reply,
            } => {
                let Some(key) = self.find(&zone, &node) else {
                    let _ = reply.send(Err(format!("no node '{node}' in zone '{zone}'")));
                    return;
                };
                let z = &self.zones[key.zone];
                info!(zone = %z.origin, node = %node, set = ?set, "operator override");
                let status = z.nodes[key.node].status;
                if let Some(out) = &self.fleet_out {
                    let _ = out.try_send(FleetWrite::Override {
                        zone: fleet_zone(z),
                        node: node.clone(),
                        set,
                    });
                }
                self.nodes[key.zone][key.node].override_ = set;
                self.refresh(key, status);
                replies.push(Box::new(move |p: &Publisher| {
                    let entry = p.status_of(key);
                    let _ = reply.send(Ok(entry));
                }));
            }
        }
    }

    /// Decides which nodes of a zone are full from their loads (with each node's
    /// hysteresis), and refreshes the availability of those that changed.
    fn refresh_fullness(&mut self, zone: usize) {
        let zones = Arc::clone(&self.zones);
        let Some(z) = zones.get(zone) else {
            return;
        };
        for (ni, node) in z.nodes.iter().enumerate() {
            let load = self.latency[zone].loads.get(&ni).copied();
            let runtime = &mut self.nodes[zone][ni];
            let full = load.is_some_and(|load| node.capacity.is_full(load, runtime.full));
            let percent = load_percent(load);
            if full == runtime.full && (!full || percent == runtime.load_percent) {
                continue;
            }
            let was_full = runtime.full;
            runtime.full = full;
            runtime.load_percent = percent;
            let key = NodeKey {
                zone,
                node: ni,
                generation: self.generation,
            };
            if full == was_full {
                // Still full at another load: the order of full nodes may change.
                self.refresh(key, node.status);
                continue;
            }
            if full {
                info!(zone = %z.origin, node = %node.name, load = load.unwrap_or_default(), full_at = node.capacity.full, "node full: it gives way to the next nodes");
            } else {
                info!(zone = %z.origin, node = %node.name, load = load.unwrap_or_default(), resume_below = node.capacity.resume, "node takes new clients again");
            }
            self.refresh(key, node.status);
        }
    }

    /// Every zone's SOA serial, as the fleet shows what policy a member serves.
    fn serials(&self) -> Vec<(String, u32)> {
        self.zones
            .iter()
            .map(|z| (fleet_zone(z), z.soa.serial))
            .collect()
    }

    /// Applies news from the fleet: its overrides replace local ones while it is reachable,
    /// and every node's health is decided again.
    fn apply_fleet(&mut self, news: FleetNews) {
        match news {
            FleetNews::State(state) => {
                if self.fleet_lost.take().is_some() {
                    info!(members = state.members.len(), "fleet state received");
                }
                metrics::gauge!(m::FLEET_CONNECTED).set(1.0);
                for (zi, zone) in self.zones.iter().enumerate() {
                    let origin = fleet_zone(zone);
                    for (ni, node) in zone.nodes.iter().enumerate() {
                        let key = (origin.clone(), node.name.clone());
                        self.nodes[zi][ni].override_ = state.overrides.get(&key).copied();
                    }
                }
                // Feed batches of other members not applied yet: measurements and loads
                // posted to them, probe agents' round trips.
                for (member, json) in &state.feeds {
                    if self.applied_feeds.get(member) == Some(json) {
                        continue;
                    }
                    match serde_json::from_str::<FeedBatch>(json) {
                        Ok(batch) => {
                            if let Err(errors) = self.apply_feed(&batch) {
                                warn!(member = %member, errors = ?errors, "a fleet member's feed batch does not fit this policy");
                            }
                        }
                        Err(e) => {
                            warn!(member = %member, error = %e, "a fleet member's feed batch is not JSON")
                        }
                    }
                    self.applied_feeds.insert(member.clone(), json.clone());
                }
                self.fleet = Some(state);
            }
            FleetNews::Lost(why) => {
                if self.fleet_lost.is_none() {
                    warn!(error = %why, "fleet unreachable: answering from local verdicts and the last overrides seen");
                }
                metrics::gauge!(m::FLEET_CONNECTED).set(0.0);
                self.fleet_lost = Some(why);
            }
        }
        self.refresh_all();
    }

    /// Recomputes every node's availability.
    fn refresh_all(&mut self) {
        for zi in 0..self.zones.len() {
            for ni in 0..self.zones[zi].nodes.len() {
                let status = self.zones[zi].nodes[ni].status;
                let key = NodeKey {
                    zone: zi,
                    node: ni,
                    generation: self.generation,
                };
                self.refresh(key, status);
            }
        }
    }

    /// The health answers use: this instance's own verdict, or in a reachable fleet, the
    /// verdict of the zone's quorum over every live vantage point that checks the node.
    fn effective_health(&self, zone: usize, node: usize) -> Health {
        let own = self.nodes[zone][node].health;
        let (Some(state), None) = (&self.fleet, &self.fleet_lost) else {
            return own;
        };
        let z = &self.zones[zone];
        let Some(others) = state
            .verdicts
            .get(&(fleet_zone(z), z.nodes[node].name.clone()))
        else {
            return own;
        };
        let votes = std::iter::once(own).chain(others.iter().map(|(_, h)| *h));
        let (mut voters, mut down) = (0, 0);
        for vote in votes.filter(|h| *h != Health::Unknown) {
            voters += 1;
            down += usize::from(vote == Health::Down);
        }
        match voters {
            0 => Health::Unknown,
            _ if z.health_quorum.is_down(down, voters) => Health::Down,
            _ => Health::Up,
        }
    }

    /// Recomputes a node's availability, scheduling a publication when it changed.
    fn refresh(&mut self, key: NodeKey, status: AdminStatus) {
        let health = self.effective_health(key.zone, key.node);
        let runtime = &mut self.nodes[key.zone][key.node];
        let new = availability(status, runtime.override_, health, runtime.full_at());
        if new == runtime.availability {
            return;
        }
        let zone = &self.zones[key.zone];
        info!(zone = %zone.origin, node = %zone.nodes[key.node].name, from = ?runtime.availability, to = ?new, "node availability changed");
        runtime.availability = new;
        runtime.since = SystemTime::now();
        self.note_change(key.zone, key.node);
        self.schedule.availability_changed();
        self.changed_at.get_or_insert_with(Instant::now);
        self.export_zone_gauges(key.zone);
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
    /// those in use.
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
        changed
    }

    /// Rebuilds every answer table from the current availability and swaps it in. The build
    /// runs on the blocking pool so it never holds up a thread that serves queries.
    ///
    /// New latency inputs are ranked in the background (`ranking`): at 200 nodes against a
    /// city database that takes 0.1-0.4 s, and a health change meanwhile is published from
    /// the rankings in use, in a millisecond or two, instead of waiting for it. A new policy is
    /// ranked here: the old rankings cannot answer for it.
    async fn publish(&mut self, publication: Publication) {
        let started = Instant::now();
        let table: Vec<Vec<Availability>> = self
            .nodes
            .iter()
            .map(|z| z.iter().map(|n| n.availability).collect())
            .collect();
        let mut rankings_changed = publication.rankings;
        if self.ranked_generation != self.generation {
            let reranked = self.start_ranking().await;
            rankings_changed |= self.adopt(reranked);
            if self.ranked_generation != self.generation {
                return; // not ranked: the previous tables stay published
            }
        }
        if !publication.availability && !rankings_changed {
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
    /// The explanation of a steered name's answer for a client, from the inputs of the
    /// published tables (as `_explain` reads them).
    fn explain(
        &self,
        name: &str,
        client: std::net::IpAddr,
    ) -> Result<crate::explain::Explanation, String> {
        self.current.load().explain(name, client)
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
            let full = runtimes.get(id).is_some_and(|r| r.full);
            metrics::gauge!(m::NODE_FULL, "zone" => origin.clone(), "node" => node.name.clone())
                .set(if full { 1.0 } else { 0.0 });
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
        let load = self.latency[key.zone].loads.get(&key.node).copied();
        let mut status = self.nodes[key.zone][key.node].status(
            &self.zones[key.zone],
            key.node,
            load,
            SystemTime::now(),
        );
        if self.fleet_out.is_some() {
            status.fleet_health = Some(self.effective_health(key.zone, key.node));
        }
        status
    }
}
