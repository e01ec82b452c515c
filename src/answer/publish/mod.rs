//! Publication: the single writer of snapshots, and the owner of every node's runtime state.
//!
//! This file is the run loop: it receives events (check reports, operator commands, fleet
//! news, feed batches), applies them to the node table (`table`, pure) and the latency
//! inputs, asks the scheduler (`schedule`, pure) when to publish, ranks on a thread of its
//! own (`ranking`, which builds new rankings' answers there too: `ahead::prebuild`), builds
//! on the blocking pool (background work yields to it: `parallel::building`), and stores the
//! snapshot (`published`, which also says what the next build starts from) with the state
//! view beside it (`view`); after each build, it ranks ahead for
//! the next (`ahead`). Reloads install in `reload`. It does nothing else: checks are
//! supervised in `health`, the fleet reads the `outbox`, the admin interface and the status
//! page read the view.
//!
//! Bursts coalesce: after each message, whatever else is queued is applied too, and the
//! answers are rebuilt at most once for the whole burst — and only if some node's
//! availability or the rankings changed. Queries never wait: they read the previous
//! snapshot until the store. Commands are answered after the store, so a caller that gets
//! its reply knows the next query (and the next read of the view) sees the change; a reply
//! waits for the availability changes pending, not for new rankings due after them.
// The publisher owns time: it reads the clock and passes it to the pure parts (the node
// table, the scheduler, node carry-over, feed validation).
#![allow(clippy::disallowed_methods)]

mod ahead;
mod commands;
mod feeds;
mod nodes;
mod outbox;
mod published;
mod ranking;
mod reload;
mod schedule;
mod served;
mod start;
mod table;
mod view;

pub use commands::{
    Audit, Command, CommandError, FleetNews, FleetState, NodeStatus, Override, SnapshotReader,
    drain_share,
};
pub use outbox::{FleetKey, FleetPolicy, Outbox, fleet_zone};
pub use view::{NotReady, StateView, Timeline, TimelineEntry, ViewReader, unix_seconds};

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::build::Before;
use super::snapshot::Snapshot;
use crate::geo::{AsnDb, GeoDb};
use crate::health::{CheckPlan, Report};
use crate::latency::ZoneLatency;
use crate::latency::feed::{FeedBatch, FeedRejected};
use crate::loader::Sources;
use crate::metrics as m;
use crate::policy::Zone;
use feeds::MemberFeeds;
use nodes::NodeRuntime;
use published::Published;
use ranking::{Ranked, RankingInputs, RankingTask};
use schedule::{Publication, Schedule};
use served::Served;
use table::{Changed, NodeEvent, NodeTable};
use view::Staleness;

/// A reply to send once the current burst is published.
type PendingReply = Box<dyn FnOnce(&Publisher) + Send>;

/// The single writer. Build with [`Publisher::new`], then move it into [`Publisher::run`].
#[derive(Debug)]
pub struct Publisher {
    served: Served,
    /// Runtime state per zone and node.
    table: NodeTable,
    /// What is measured per zone: feed, loads, probe loss.
    latency: Arc<Vec<ZoneLatency>>,
    /// The rankings in use.
    ranked: Ranked,
    /// What waits to be published, and when it is due.
    schedule: Schedule,
    /// When the oldest availability change not yet published was seen.
    changed_at: Option<Instant>,
    /// When measurements were last re-ranked for their age.
    last_aging: Instant,
    /// Where to reload from, and how the last reload ended.
    source: Option<Sources>,
    last_reload: Option<Result<SystemTime, String>>,
    published: Published,
    /// The checks of the current load, for `health::supervise`.
    plans: watch::Sender<Arc<CheckPlan>>,
    /// What this instance tells the fleet (and keeps across restarts), and the other
    /// members' feed batches as last applied, by identity.
    outbox: watch::Sender<Outbox>,
    member_feeds: MemberFeeds,
}

impl Publisher {
    /// Builds and stores the first snapshot: every node up unless the policy says `down`.
    pub fn new(zones: Vec<Zone>, geo: Arc<GeoDb>, asn: Option<Arc<AsnDb>>) -> Self {
        let now = SystemTime::now();
        let nodes = NodeRuntime::fresh(&zones, now);
        let latency: Arc<Vec<ZoneLatency>> =
            Arc::new(zones.iter().map(|_| ZoneLatency::default()).collect());
        let started = Instant::now();
        let ranked = Ranked::first(&zones, &geo, Arc::clone(&latency), now);
        let served = Served::first(zones, geo, asn);
        let table = NodeTable::new(Arc::clone(&served.zones), nodes, false);
        let states = (table.availability(), table.down_lines());
        let snapshot = served.snapshot(&ranked, states, Before::default());
        // The first build is a rebuild too: the series exists from the start, before any change.
        metrics::histogram!(m::REBUILD_SECONDS).record(started.elapsed().as_secs_f64());
        let (plans, _) = watch::channel(Arc::default());
        let (outbox, _) = watch::channel(Outbox {
            policy: served.fleet_policy(),
            ..Outbox::default()
        });
        let view = served.view(&table, &ranked, &latency, None);
        let mut publisher = Publisher {
            served,
            table,
            latency,
            ranked,
            schedule: Schedule::new(tokio::time::Instant::now()),
            changed_at: None,
            last_aging: Instant::now(),
            source: None,
            last_reload: None,
            published: Published::new(snapshot, view),
            plans,
            outbox,
            member_feeds: MemberFeeds::default(),
        };
        publisher.plan_checks();
        publisher.export_gauges();
        served::register_series();
        publisher
    }

    /// A reader for serving tasks.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            current: Arc::clone(&self.published.snapshot),
        }
    }

    /// A reader of the state view.
    pub fn view_reader(&self) -> ViewReader {
        ViewReader {
            current: Arc::clone(&self.published.view),
        }
    }

    /// The checks to run, for `health::supervise`: a new plan with every reload.
    pub fn check_plans(&self) -> watch::Receiver<Arc<CheckPlan>> {
        self.plans.subscribe()
    }

    /// Plans the current load's checks.
    fn plan_checks(&mut self) {
        let plan = self.served.check_plan(self.table.nodes());
        self.plans.send_replace(Arc::new(plan));
    }

    /// At a periodic tick: whether latency inputs call for a re-ranking, or a challenger's
    /// hold time does. Measurements fade continuously; they are re-ranked for their age
    /// every `ranking::AGING_INTERVAL` only.
    fn latency_due(&mut self) -> bool {
        let aging = self.last_aging.elapsed() >= ranking::AGING_INTERVAL;
        if aging {
            self.last_aging = Instant::now();
        }
        let nodes = Arc::clone(self.table.nodes());
        let zones = &self.served.zones;
        let now = SystemTime::now();
        let due = ranking::latency_due(zones, &mut self.latency, &nodes, aging, now);
        // Loads past their max_age count no more: a node they kept full takes clients.
        for zone in (0..self.served.zones.len()).filter(|_| aging) {
            self.refresh_fullness(zone);
        }
        due | self.ranked.challenging
    }

    /// Sets every node's availability gauge (at start; changes update their own).
    fn export_gauges(&self) {
        for zi in 0..self.served.zones.len() {
            self.served.export_zone_gauges(zi, None, self.table.nodes());
        }
        let reload_ok = !matches!(self.last_reload, Some(Err(_)));
        metrics::gauge!(m::RELOAD_OK).set(if reload_ok { 1.0 } else { 0.0 });
    }

    /// Applies reports and commands until both channels close.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut replies: Vec<PendingReply> = Vec::new();
        let (mut reports_open, mut commands_open) = (true, true);
        let mut ranking: Option<RankingTask> = None;
        // Measurements age and challengers' hold times run out without any message arriving:
        // a periodic look re-ranks when latency inputs exist.
        let mut tick = tokio::time::interval(ranking::RERANK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut view_tick = tokio::time::interval(view::LAZY_VIEW);
        view_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while reports_open || commands_open || self.schedule.pending() {
            let due = self.schedule.due();
            tokio::select! {
                _ = view_tick.tick() => {}
                _ = tick.tick() => {
                    let due = self.latency_due();
                    self.schedule.look(due);
                    self.resign_when_due();
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
                } => {
                    ranking = None;
                    let changed = self.adopt(reranked);
                    self.schedule.ranking_finished(changed);
                }
            }
            // Coalesce: everything already queued goes into the same rebuild.
            while let Ok(r) = reports.try_recv() {
                self.apply_report(r);
            }
            while let Ok(c) = commands.try_recv() {
                self.handle(c, &mut replies).await;
            }
            if self.ranked.generation != self.served.generation {
                // A new policy is ranked before its first build, with the inputs of now.
                self.schedule.ranked_in_place();
            }
            if let Some(publication) = self.schedule.take(tokio::time::Instant::now()) {
                if publication.start_ranking {
                    ranking = Some(self.start_ranking(true));
                }
                self.publish(publication).await;
            }
            self.store_view();
            if !self.schedule.availability_pending() {
                for reply in replies.drain(..) {
                    reply(&self);
                }
            }
        }
    }

    /// Applies a command; reloads load their files on the blocking pool first. Whatever a
    /// command changes, the next read of the view sees once it is answered.
    async fn handle(&mut self, command: Command, replies: &mut Vec<PendingReply>) {
        self.published.view_stale = Staleness::Changed;
        match command {
            Command::Reload { reply } => match self.reload().await {
                Ok(summary) => replies.push(Box::new(move |_: &Publisher| {
                    let _ = reply.send(Ok(summary));
                })),
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Command::Fleet(news) => self.apply_fleet(news),
            Command::Feed { batch, reply } => {
                let batch = batch.dated(SystemTime::now()); // the fleet applies these times
                #[cfg(debug_assertions)]
                if feeds::injected_fault() {
                    panic!("fault injected for a supervision test");
                }
                // Accepted batches are re-ranked at the next periodic look (within
                // RERANK_INTERVAL), so a stream of batches costs one re-ranking per interval;
                // the sender need not wait for it.
                let applied = self.apply_feed(&batch);
                // The other instances take it too.
                if applied.is_ok()
                    && self.table.fleet().is_some()
                    && let Some(json) = feeds::shared(&batch)
                {
                    self.outbox.send_modify(|out| out.set_feed(json));
                }
                self.store_view();
                let _ = reply.send(applied);
            }
            Command::SetOverride {
                zone,
                node,
                set,
                by,
                reply,
            } => {
                let Some((zi, ni)) = self.table.find(&zone, &node) else {
                    let _ = reply.send(Err(CommandError::NoSuchNode { zone, node }));
                    return;
                };
                let z = &self.served.zones[zi];
                info!(zone = %z.origin, node = %node, set = ?set, by = %by.by, reason = by.reason.as_deref().unwrap_or(""), "operator override");
                let key = (fleet_zone(z), node.clone());
                let audit = by.clone();
                self.outbox
                    .send_modify(|out| out.set_override_by(key, set, audit));
                let (zone_index, node_index) = (zi, ni);
                let event = NodeEvent::Override {
                    zone: zone_index,
                    node: node_index,
                    set,
                    by: Some(by),
                };
                let changed = self.table.apply(event, SystemTime::now());
                self.react(changed);
                replies.push(Box::new(move |p: &Publisher| {
                    let status = p.view_reader().load().status_of(zi, ni, SystemTime::now());
                    let _ = reply.send(status.ok_or(CommandError::NoSuchNode { zone, node }));
                }));
            }
        }
    }

    /// Reacts to what the node table says changed: the fleet hears this instance's
    /// verdicts, changed availability is scheduled for publication and logged.
    fn react(&mut self, changed: Changed) {
        let acted_on = changed.first_result
            || changed.verdict.is_some()
            || changed.fleet_connected.is_some()
            || !changed.availability.is_empty()
            || !changed.lines.is_empty();
        let staleness = [Staleness::Details, Staleness::Changed][usize::from(acted_on)];
        self.published.view_stale = self.published.view_stale.max(staleness);
        if let Some((zi, ni, health)) = changed.verdict {
            let zone = &self.served.zones[zi];
            let key = (fleet_zone(zone), zone.nodes[ni].name.clone());
            self.outbox.send_modify(|out| {
                out.verdicts.insert(key, health);
            });
        }
        if let Some(connected) = changed.fleet_connected {
            metrics::gauge!(m::FLEET_CONNECTED).set(if connected { 1.0 } else { 0.0 });
        }
        for &(zi, ni, line) in &changed.lines {
            self.served
                .export_line_gauge(zi, ni, line, self.table.nodes());
            if let Some((key, health)) = self.table.line_verdict(zi, ni, line) {
                self.outbox
                    .send_modify(|out| _ = out.verdicts.insert(key, health));
            }
        }
        if changed.availability.is_empty() && changed.lines.is_empty() {
            return;
        }
        for &(zi, ni, from, to) in &changed.availability {
            let zone = &self.served.zones[zi];
            info!(zone = %zone.origin, node = %zone.nodes[ni].name, from = ?from, to = ?to, "node availability changed");
            self.served
                .export_zone_gauges(zi, Some(ni), self.table.nodes());
        }
        self.schedule.availability_changed();
        self.changed_at.get_or_insert_with(Instant::now);
    }

    fn apply_report(&mut self, report: Report) {
        let key = report.key;
        if key.generation != self.served.generation {
            return; // from a check of a policy that has since been reloaded
        }
        // A load reported in a check's body counts like one from the feed.
        let load = report.result.load;
        let now = SystemTime::now();
        let changed = self.table.apply(NodeEvent::Checked(report), now);
        self.react(changed);
        let max_age = (self.served.zones.get(key.zone))
            .and_then(|z| z.nodes.get(key.node))
            .map(|n| n.capacity.max_age);
        if let (Some(load), Some(max_age)) = (load, max_age)
            && feeds::record_load(&mut self.latency, (key.zone, key.node), load, now, max_age)
        {
            self.schedule.latency_changed();
            self.refresh_fullness(key.zone);
        }
    }

    /// Fullness of a zone's nodes from their loads now.
    fn refresh_fullness(&mut self, zone: usize) {
        let Some(measured) = self.latency.get(zone) else {
            return;
        };
        let changed = (self.table).apply(NodeEvent::Loads { zone, measured }, SystemTime::now());
        self.react(changed);
    }

    /// Validates a whole feed batch against the served zones; applies it only if all is well.
    fn apply_feed(&mut self, batch: &FeedBatch) -> Result<usize, FeedRejected> {
        let applied = feeds::apply(batch, &self.served, &mut self.latency, SystemTime::now())?;
        if applied > 0 {
            self.schedule.latency_changed();
            for zone in 0..self.served.zones.len() {
                self.refresh_fullness(zone);
            }
        }
        Ok(applied)
    }

    /// Applies news from the fleet: its overrides and verdicts go to the node table, and
    /// other members' feed batches not applied yet to the latency inputs.
    fn apply_fleet(&mut self, news: FleetNews) {
        let event = match news {
            FleetNews::State(state) => {
                if self.table.fleet().is_some_and(|f| f.lost.is_some()) {
                    info!(members = state.members.len(), "fleet state received");
                }
                // Other members' batches not applied yet: measurements and loads posted to
                // them, probe agents' round trips.
                for (member, batch) in self.member_feeds.unseen(&state.feeds) {
                    if let Err(errors) = self.apply_feed(&batch) {
                        warn!(member = %member, errors = %errors, "a fleet member's feed batch does not fit this policy");
                    }
                }
                NodeEvent::FleetState(*state)
            }
            FleetNews::Lost(why) => {
                if self.table.fleet().is_some_and(|f| f.lost.is_none()) {
                    warn!(error = %why, "fleet unreachable: answering from local verdicts and the last overrides seen");
                }
                NodeEvent::FleetLost(why)
            }
        };
        let changed = self.table.apply(event, SystemTime::now());
        self.react(changed);
    }

    /// Starts ranking the current policy and latency inputs on a thread of its own; in the
    /// `background`, new rankings' answers are built there too.
    fn start_ranking(&self, background: bool) -> RankingTask {
        let prebuild =
            background.then(|| ahead::prebuild(self.served.clone(), self.published.answers()));
        self.ranked.start(RankingInputs {
            zones: Arc::clone(&self.served.zones),
            geo: Arc::clone(&self.served.geo),
            latency: Arc::clone(&self.latency),
            generation: self.served.generation,
            prebuild,
        })
    }

    /// Takes new rankings in if they are of the current policy; whether they differ.
    fn adopt(&mut self, reranked: Result<ranking::Reranked, oneshot::error::RecvError>) -> bool {
        let (changed, prebuilt) = self.ranked.adopt(reranked, self.served.generation);
        self.published.prebuilt(prebuilt);
        let ranked = &self.ranked;
        self.table.set_ranked_loss(|zi, ni| ranked.loss(zi, ni));
        changed
    }

    /// Rebuilds every answer table from the current availability and swaps it in. The build
    /// runs on the blocking pool so it never holds up a thread that serves queries.
    ///
    /// New latency inputs are ranked in the background (`ranking`), and a health change
    /// meanwhile is published from the rankings in use, in a millisecond or two, instead of
    /// waiting for it. A new policy is ranked here: the old rankings cannot answer for it.
    async fn publish(&mut self, publication: Publication) {
        let started = Instant::now();
        let mut rankings_changed = publication.rankings;
        if self.ranked.generation != self.served.generation {
            let reranked = self.start_ranking(false).await;
            rankings_changed |= self.adopt(reranked);
            if self.ranked.generation != self.served.generation {
                return; // not ranked: the previous tables stay published
            }
        }
        if !publication.availability && !rankings_changed {
            return; // same order, same health: the published tables stand
        }
        let (served, ranked) = (self.served.clone(), self.ranked.clone());
        let states = (self.table.availability(), self.table.down_lines());
        let (previous, undone, ahead) = self.published.build_from(&self.ranked.rankings);
        let built = tokio::task::spawn_blocking(move || {
            let _building = crate::parallel::building();
            let before = Before {
                last: Some(&previous),
                undone: undone.as_deref(),
                ahead: ahead.as_deref(),
            };
            (served.snapshot(&ranked, states, before), (previous, undone))
        })
        .await;
        let (snapshot, from) = match built {
            Ok(built) => built,
            Err(e) => {
                // A panic in the builder is a bug; keep serving the last good snapshot.
                tracing::error!(error = %e, "answer table rebuild failed; previous tables stay published");
                return;
            }
        };
        self.store_snapshot(snapshot, Some(from));
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

    /// Stores new answers, built `from` what `Published::build_from` gave (none: the first).
    fn store_snapshot(
        &mut self,
        snapshot: Snapshot,
        from: Option<(Arc<Snapshot>, Option<Arc<Snapshot>>)>,
    ) {
        let publisher = (&self.served, &self.ranked);
        self.published.store(snapshot, from, publisher);
    }

    /// Stores a new state view when the node table, the rankings or the last reload moved
    /// on since the last one.
    fn store_view(&mut self) {
        let published = &mut self.published;
        if !published.view_stale.due(published.view_stored.elapsed()) {
            return;
        }
        (published.view_stale, published.view_stored) = (Staleness::Fresh, Instant::now());
        let last_reload = self.last_reload.clone();
        let view = (self.served).view(&self.table, &self.ranked, &self.latency, last_reload);
        served::free_aside(self.published.view.swap(Arc::new(view)));
    }
}
