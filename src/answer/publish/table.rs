//! The node table: every node's runtime state (health, override, the fleet's votes, load
//! and fullness) and the decision whether answers use it. Events go in, changes come out,
//! time is passed in: a plain struct, tested without tokio.
//!
//! It must not publish, rank, log traffic or talk to anything: the run loop (`super`)
//! reacts to the [`Changed`] it returns.

use crate::latency::ZoneLatency;
use std::sync::Arc;
use std::time::SystemTime;

use super::commands::{FleetState, Override};
use super::nodes::{NodeRuntime, availability, lines_health, load_percent, state_word};
use super::outbox::{FleetKey, fleet_zone};
use super::view::{Timeline, TimelineEntry, unix_seconds};
use crate::health::{Health, Report};
use crate::policy::Zone;
use crate::steer::Availability;

/// Something that can change a node's state.
#[derive(Debug)]
pub(super) enum NodeEvent<'a> {
    /// A check's result.
    Checked(Report),
    /// An operator set (`Some`) or cleared (`None`) an override.
    Override {
        /// Zone index.
        zone: usize,
        /// Node index.
        node: usize,
        /// The override.
        set: Option<Override>,
        /// Who, and why (none for one restored from the state file).
        by: Option<super::commands::Audit>,
    },
    /// A zone's loads as they are now (from feeds and checks); those older than their
    /// node's `capacity.max_age` no longer count.
    Loads {
        /// Zone index.
        zone: usize,
        /// What is measured in the zone, loads among it.
        measured: &'a ZoneLatency,
    },
    /// The fleet's state as of now.
    FleetState(FleetState),
    /// etcd cannot be reached, and why.
    FleetLost(String),
}

/// What an event changed.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Changed {
    /// Nodes whose availability changed: `(zone, node, from, to)`.
    pub availability: Vec<(usize, usize, Availability, Availability)>,
    /// This instance's own verdict on a node changed: `(zone, node, health)`.
    pub verdict: Option<(usize, usize, Health)>,
    /// The fleet connection was just made (`Some(true)`) or lost (`Some(false)`).
    pub fleet_connected: Option<bool>,
    /// A node's first check result arrived (readiness waits for them).
    pub first_result: bool,
    /// A carrier line's verdict changed (answers change with it): `(zone, node, line)`.
    pub lines: Vec<(usize, usize, usize)>,
}

impl Changed {
    fn merge(&mut self, other: Changed) {
        self.availability.extend(other.availability);
        self.verdict = other.verdict.or(self.verdict);
        self.first_result |= other.first_result;
        self.lines.extend(other.lines);
        self.fleet_connected = other.fleet_connected.or(self.fleet_connected);
    }
}

/// What the fleet says, as the table uses it.
#[derive(Debug, Clone, Default)]
pub(super) struct FleetInputs {
    /// Why etcd cannot be reached, while it cannot: answers then use local verdicts and
    /// the last overrides seen.
    pub lost: Option<String>,
    /// The fleet's state as last seen.
    pub state: Option<FleetState>,
    /// Until when an instance that has not read the fleet yet is not ready: it answers
    /// from what it kept meanwhile, and stops waiting for a fleet that does not answer.
    pub ready_by: Option<SystemTime>,
    /// Other vantage points' votes, by zone and node of this load, resolved from `state`
    /// once per state (not per node and vote).
    votes: Vec<Vec<Vec<Health>>>,
    /// Their votes on carrier lines, by zone, node and line (as `votes`).
    line_votes: Vec<Vec<Vec<Vec<Health>>>>,
}

/// The fleet's name of a node's carrier line: where its verdicts are kept beside the
/// node's own (`node@address`).
pub(super) fn line_key(node: &str, address: std::net::IpAddr) -> String {
    format!("{node}@{address}")
}

/// Every node's runtime state, by zone and node index of one load of the policy.
#[derive(Debug)]
pub(super) struct NodeTable {
    zones: Arc<Vec<Zone>>,
    /// Shared with the published views; copied only when written after a publication.
    nodes: Arc<Vec<Vec<NodeRuntime>>>,
    /// Each zone's name in the fleet, made once per load.
    fleet_names: Vec<String>,
    /// `Some` in a fleet.
    fleet: Option<FleetInputs>,
    /// The last availability changes and reloads.
    timeline: Arc<Timeline>,
}

impl NodeTable {
    /// A table for `zones` with their nodes' state; `in_fleet` when the fleet decides
    /// overrides and (by quorum) health.
    pub(super) fn new(zones: Arc<Vec<Zone>>, nodes: Vec<Vec<NodeRuntime>>, in_fleet: bool) -> Self {
        let fleet_names = zones.iter().map(fleet_zone).collect();
        let mut table = NodeTable {
            zones,
            nodes: Arc::new(nodes),
            fleet_names,
            fleet: None,
            timeline: Arc::default(),
        };
        if in_fleet {
            table.join_fleet(SystemTime::UNIX_EPOCH);
        }
        table
    }

    /// From now on the fleet decides overrides and (by quorum) health, once connected;
    /// the instance waits for its first read of the fleet until `ready_by`.
    pub(super) fn join_fleet(&mut self, ready_by: SystemTime) {
        self.fleet = Some(FleetInputs {
            lost: Some("not connected yet".into()),
            ready_by: Some(ready_by),
            ..FleetInputs::default()
        });
    }

    /// Takes a new load of the policy with its carried-over node state; the fleet's last
    /// state applies to the new nodes (by zone and node name) while it is reachable.
    pub(super) fn install(
        &mut self,
        zones: Arc<Vec<Zone>>,
        nodes: Vec<Vec<NodeRuntime>>,
        now: SystemTime,
    ) -> Changed {
        self.fleet_names = zones.iter().map(fleet_zone).collect();
        self.zones = zones;
        self.nodes = Arc::new(nodes);
        match self.fleet.as_ref().and_then(|f| match f.lost {
            None => f.state.clone(),
            Some(_) => None,
        }) {
            Some(state) => self.apply(NodeEvent::FleetState(state), now),
            None => Changed::default(),
        }
    }

    /// Applies one event; what changed.
    pub(super) fn apply(&mut self, event: NodeEvent, now: SystemTime) -> Changed {
        match event {
            NodeEvent::Checked(report) => self.checked(report, now),
            NodeEvent::Override {
                zone,
                node,
                set,
                by,
            } => {
                if let Some(runtime) = self.runtime_mut(zone, node) {
                    runtime.override_ = set;
                    runtime.override_by = by.map(|b| (b, now));
                }
                self.refresh(zone, node, now)
            }
            NodeEvent::Loads { zone, measured } => self.loads(zone, measured, now),
            NodeEvent::FleetState(state) => self.fleet_state(state, now),
            NodeEvent::FleetLost(why) => {
                let lines_before = self.down_lines();
                let Some(fleet) = &mut self.fleet else {
                    return Changed::default();
                };
                let was_connected = fleet.lost.is_none();
                fleet.lost = Some(why);
                let mut changed = self.refresh_all(now);
                changed.fleet_connected = was_connected.then_some(false);
                changed.lines.extend(self.line_changes(&lines_before));
                changed
            }
        }
    }

    fn runtime_mut(&mut self, zone: usize, node: usize) -> Option<&mut NodeRuntime> {
        Arc::make_mut(&mut self.nodes).get_mut(zone)?.get_mut(node)
    }

    fn checked(&mut self, report: Report, now: SystemTime) -> Changed {
        let (zone, node, line) = (report.key.zone, report.key.node, report.key.line);
        let mut verdict = report.transition.map(|(_, new)| (zone, node, new));
        let Some(runtime) = self.runtime_mut(zone, node) else {
            return Changed::default();
        };
        let mut line_changed = None;
        if let Some(state) = runtime.lines.get_mut(usize::from(line)) {
            // A node with carrier lines: the line's verdict, and the node's from all of them.
            state.detail.clone_from(&report.result.detail);
            if state.health != report.health {
                state.health = report.health;
                state.since = now;
                line_changed = Some((zone, node, usize::from(line)));
            }
            let health = lines_health(&runtime.lines);
            verdict = (health != runtime.health).then_some((zone, node, health));
            runtime.health = health;
            if line > 0 {
                let mut changed = self.refresh(zone, node, now);
                changed.verdict = verdict;
                changed.lines.extend(line_changed);
                self.note_line(zone, node, usize::from(line), now);
                return changed;
            }
        } else {
            runtime.health = report.health;
        }
        // The node's own check (its first line): its statistics are the node's.
        let first_result = runtime.last.is_none();
        runtime.probe_rtt_ms = report.stats.rtt_ms;
        runtime.probe_loss = report.stats.loss;
        runtime.last = Some((report, now));
        let mut changed = self.refresh(zone, node, now);
        changed.verdict = verdict;
        changed.first_result = first_result;
        if line_changed.is_some() {
            self.note_line(zone, node, usize::from(line), now);
            changed.lines.extend(line_changed);
        }
        changed
    }

    /// Records a carrier line's change in the timeline.
    fn note_line(&mut self, zone: usize, node: usize, line: usize, now: SystemTime) {
        let zones = Arc::clone(&self.zones);
        let (Some(z), Some(state)) = (
            zones.get(zone),
            self.nodes
                .get(zone)
                .and_then(|n| n.get(node))
                .and_then(|r| r.lines.get(line)),
        ) else {
            return;
        };
        let (to, why) = match state.health {
            Health::Up => ("line up", "checks pass".to_string()),
            Health::Down => ("line down", format!("checks fail: {}", state.detail)),
            Health::Unknown => ("line unknown", "no check result yet".to_string()),
        };
        let entry = TimelineEntry {
            at: unix_seconds(now),
            zone: z.origin.to_string(),
            node: format!("{} via {}", z.nodes[node].name, state.address),
            from: "line".into(),
            to: to.into(),
            why,
        };
        Arc::make_mut(&mut self.timeline).push(entry);
    }

    /// Decides which nodes of a zone are full from their loads (with each node's
    /// hysteresis).
    fn loads(&mut self, zone: usize, measured: &ZoneLatency, now: SystemTime) -> Changed {
        let zones = Arc::clone(&self.zones);
        let Some(z) = zones.get(zone) else {
            return Changed::default();
        };
        let mut changed = Changed::default();
        for (ni, spec) in z.nodes.iter().enumerate() {
            let load = measured.load(ni, now, spec.capacity.max_age);
            let Some(runtime) = self.nodes.get(zone).and_then(|n| n.get(ni)) else {
                continue;
            };
            let full = load.is_some_and(|load| spec.capacity.is_full(load, runtime.full));
            let percent = load_percent(load);
            if full == runtime.full && (!full || percent == runtime.load_percent) {
                continue;
            }
            if let Some(runtime) = self.runtime_mut(zone, ni) {
                runtime.full = full;
                runtime.load_percent = percent;
            }
            changed.merge(self.refresh(zone, ni, now));
        }
        changed
    }

    /// The fleet's overrides replace local ones while it is reachable, and every node's
    /// health is decided again.
    fn fleet_state(&mut self, state: FleetState, now: SystemTime) -> Changed {
        let lines_before = self.down_lines();
        let Some(fleet) = &mut self.fleet else {
            return Changed::default();
        };
        let was_lost = fleet.lost.take().is_some();
        let nodes = Arc::make_mut(&mut self.nodes);
        fleet.votes = Vec::with_capacity(self.zones.len());
        fleet.line_votes = Vec::with_capacity(self.zones.len());
        let votes_of = |key: &(String, String)| -> Vec<Health> {
            (state.verdicts.get(key))
                .map(|votes| votes.iter().map(|(_, h)| *h).collect())
                .unwrap_or_default()
        };
        for ((zone, runtimes), name) in self.zones.iter().zip(nodes).zip(&self.fleet_names) {
            let mut zone_votes = Vec::with_capacity(zone.nodes.len());
            let mut zone_line_votes = Vec::with_capacity(zone.nodes.len());
            for (spec, runtime) in zone.nodes.iter().zip(runtimes) {
                let key = (name.clone(), spec.name.clone());
                runtime.override_ = state.overrides.get(&key).copied();
                if let Some(audit) = state.audits.get(&key)
                    && runtime.override_by.as_ref().is_none_or(|(a, _)| a != audit)
                {
                    runtime.override_by = Some((audit.clone(), now));
                }
                zone_votes.push(votes_of(&key));
                zone_line_votes.push(
                    (runtime.lines.iter())
                        .map(|l| votes_of(&(name.clone(), line_key(&spec.name, l.address))))
                        .collect(),
                );
            }
            fleet.votes.push(zone_votes);
            fleet.line_votes.push(zone_line_votes);
        }
        fleet.state = Some(state);
        let mut changed = self.refresh_all(now);
        changed.fleet_connected = was_lost.then_some(true);
        changed.lines.extend(self.line_changes(&lines_before));
        changed
    }

    fn refresh_all(&mut self, now: SystemTime) -> Changed {
        let mut changed = Changed::default();
        for zi in 0..self.zones.len() {
            for ni in 0..self.zones[zi].nodes.len() {
                changed.merge(self.refresh(zi, ni, now));
            }
        }
        changed
    }

    /// The health answers use: this instance's own verdict, or in a reachable fleet, the
    /// verdict of the zone's quorum over every live vantage point that checks the node.
    pub(super) fn effective_health(&self, zone: usize, node: usize) -> Health {
        let own = self
            .nodes
            .get(zone)
            .and_then(|n| n.get(node))
            .map_or(Health::Unknown, |r| r.health);
        let others = match &self.fleet {
            Some(FleetInputs {
                lost: None, votes, ..
            }) => votes.get(zone).and_then(|z| z.get(node)),
            _ => None,
        };
        self.quorum(zone, own, others)
    }

    /// The health answers use for a node's carrier line: as [`Self::effective_health`],
    /// over the line's own verdicts.
    fn effective_line_health(&self, zone: usize, node: usize, line: usize) -> Health {
        let own = (self.nodes.get(zone))
            .and_then(|n| n.get(node))
            .and_then(|r| r.lines.get(line))
            .map_or(Health::Unknown, |l| l.health);
        let others = match &self.fleet {
            Some(FleetInputs {
                lost: None,
                line_votes,
                ..
            }) => line_votes
                .get(zone)
                .and_then(|z| z.get(node))
                .and_then(|n| n.get(line)),
            _ => None,
        };
        self.quorum(zone, own, others)
    }

    /// The zone's quorum over this instance's verdict and the others' votes (none: its own).
    fn quorum(&self, zone: usize, own: Health, others: Option<&Vec<Health>>) -> Health {
        let Some(others) = others.filter(|o| !o.is_empty()) else {
            return own;
        };
        let (mut voters, mut down) = (0, 0);
        for vote in std::iter::once(&own)
            .chain(others)
            .filter(|h| **h != Health::Unknown)
        {
            voters += 1;
            down += usize::from(*vote == Health::Down);
        }
        match voters {
            0 => Health::Unknown,
            _ if self.zones[zone].health_quorum.is_down(down, voters) => Health::Down,
            _ => Health::Up,
        }
    }

    /// Works a node's availability out again; the change, if any, is dated and noted in
    /// the timeline.
    fn refresh(&mut self, zone: usize, node: usize, now: SystemTime) -> Changed {
        let health = self.effective_health(zone, node);
        let zones = Arc::clone(&self.zones);
        let Some(spec) = zones.get(zone).and_then(|z| z.nodes.get(node)) else {
            return Changed::default();
        };
        let Some(runtime) = self.nodes.get(zone).and_then(|n| n.get(node)) else {
            return Changed::default();
        };
        let new = availability(spec.status, runtime.override_, health, runtime.full_at());
        let from = runtime.availability;
        if new == from {
            return Changed::default();
        }
        if let Some(runtime) = self.runtime_mut(zone, node) {
            runtime.availability = new;
            runtime.since = now;
        }
        self.note_change(zone, node, now);
        Changed {
            availability: vec![(zone, node, from, new)],
            ..Changed::default()
        }
    }

    /// Records an availability change in the timeline, with why in words.
    fn note_change(&mut self, zone: usize, node: usize, now: SystemTime) {
        let zones = Arc::clone(&self.zones);
        let (Some(z), Some(runtime)) = (zones.get(zone), self.runtime_mut(zone, node)) else {
            return;
        };
        let from = runtime.state;
        let to = state_word(runtime.availability, runtime.override_);
        runtime.state = to;
        let who = runtime
            .override_by
            .as_ref()
            .map_or("by an operator".to_string(), |(a, _)| a.words());
        let why = match (runtime.availability, runtime.override_) {
            (_, Some(Override::Drain)) => format!("drained {who}"),
            (Availability::Draining(share), _) => {
                format!("{share} % of its networks drained {who}")
            }
            (_, Some(Override::ForceDown)) => format!("forced down {who}"),
            (_, Some(Override::ForceUp)) => format!("forced up {who}"),
            (Availability::Full(load), _) => format!("load {load} % reached its capacity"),
            (Availability::AdminDown, None) => "policy status: down".to_string(),
            _ if matches!(from, "drained" | "forced-down" | "draining") => {
                format!("override cleared {who}")
            }
            _ if from == "full" => "load fell below resume".to_string(),
            _ => match &runtime.last {
                Some((report, _)) if report.result.ok => "checks pass".to_string(),
                Some((report, _)) => format!("checks fail: {}", report.result.detail),
                None => "no check result yet".to_string(),
            },
        };
        Arc::make_mut(&mut self.timeline).push(TimelineEntry {
            at: unix_seconds(now),
            zone: z.origin.to_string(),
            node: z.nodes[node].name.clone(),
            from: from.to_string(),
            to: to.to_string(),
            why,
        });
    }

    /// Records a reload's outcome in the timeline.
    pub(super) fn note_reload(&mut self, outcome: Result<&str, &str>, now: SystemTime) {
        let (to, why) = match outcome {
            Ok(summary) => ("ok", summary.to_string()),
            Err(error) => ("rejected", error.to_string()),
        };
        Arc::make_mut(&mut self.timeline).push(TimelineEntry {
            at: unix_seconds(now),
            zone: String::new(),
            node: String::new(),
            from: "reload".into(),
            to: to.into(),
            why,
        });
    }

    /// Notes the probe loss each node was ranked with.
    pub(super) fn set_ranked_loss(&mut self, loss: impl Fn(usize, usize) -> f64) {
        for (zi, runtimes) in Arc::make_mut(&mut self.nodes).iter_mut().enumerate() {
            for (ni, runtime) in runtimes.iter_mut().enumerate() {
                runtime.ranked_loss = loss(zi, ni);
            }
        }
    }

    /// Every node's state, by zone and node index.
    pub(super) fn nodes(&self) -> &Arc<Vec<Vec<NodeRuntime>>> {
        &self.nodes
    }

    /// Every node's availability, as the builder takes it.
    pub(super) fn availability(&self) -> Vec<Vec<Availability>> {
        self.nodes
            .iter()
            .map(|z| z.iter().map(|n| n.availability).collect())
            .collect()
    }

    /// Per zone and node, its carrier lines found down (bit `i`: its `i`-th address), by
    /// this instance's checks or, in a reachable fleet, the zone's quorum.
    pub(super) fn down_lines(&self) -> Vec<Vec<u64>> {
        (self.nodes.iter().enumerate())
            .map(|(zi, z)| {
                (z.iter().enumerate())
                    .map(|(ni, n)| {
                        (0..n.lines.len().min(64))
                            .filter(|&i| self.effective_line_health(zi, ni, i) == Health::Down)
                            .fold(0u64, |mask, i| mask | (1u64 << i))
                    })
                    .collect()
            })
            .collect()
    }

    /// This instance's own verdict on a carrier line, as the fleet keeps it.
    pub(super) fn line_verdict(
        &self,
        zi: usize,
        ni: usize,
        line: usize,
    ) -> Option<(FleetKey, Health)> {
        let zone = self.zones.get(zi)?;
        let state = self.nodes.get(zi)?.get(ni)?.lines.get(line)?;
        let key = (
            fleet_zone(zone),
            line_key(&zone.nodes.get(ni)?.name, state.address),
        );
        Some((key, state.health))
    }

    /// The lines whose effective health changed since `before` (from [`Self::down_lines`]).
    fn line_changes(&self, before: &[Vec<u64>]) -> Vec<(usize, usize, usize)> {
        let mut changes = Vec::new();
        for (zi, zone) in self.down_lines().iter().enumerate() {
            for (ni, &now) in zone.iter().enumerate() {
                let was = before.get(zi).and_then(|z| z.get(ni)).copied().unwrap_or(0);
                let flipped = now ^ was;
                changes.extend(
                    (0..64)
                        .filter(|i| flipped & (1u64 << i) != 0)
                        .map(|i| (zi, ni, i)),
                );
            }
        }
        changes
    }

    /// What the fleet says, in a fleet.
    pub(super) fn fleet(&self) -> Option<&FleetInputs> {
        self.fleet.as_ref()
    }

    /// The timeline, shared.
    pub(super) fn timeline(&self) -> Arc<Timeline> {
        Arc::clone(&self.timeline)
    }

    /// The zone and node indices of a node named by zone origin (any case, with or without
    /// the final dot) and node name.
    pub(super) fn find(&self, zone: &str, node: &str) -> Option<(usize, usize)> {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let zi = self.fleet_names.iter().position(|name| *name == zone)?;
        let ni = self.zones[zi].nodes.iter().position(|n| n.name == node)?;
        Some((zi, ni))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{NodeKey, ProbeResult, ProbeStats};
    use std::time::Duration;

    fn zones(quorum: &str) -> Arc<Vec<Zone>> {
        let text = format!(
            "zone: t.example\nsoa: {{primary: ns1.t.example., contact: h.t.example.}}\nns: [ns1.t.example.]\n\
             check: {{type: tcp, port: 1935}}\nhealth_quorum: {quorum}\ncapacity: {{full: 90%, resume: 80%}}\nnodes:\n\
             \x20 tokyo: {{tier: core, geo: AS-JP, location: [35, 139], addresses: [192.0.2.1]}}\n\
             \x20 osaka: {{tier: core, geo: AS-JP, location: [34, 135], addresses: [192.0.2.2]}}\n\
             steer:\n  ingest: {{}}\n"
        );
        let zone =
            crate::policy::parse_zone(std::path::Path::new("t.yaml"), &text, 1).expect("a zone");
        Arc::new(vec![zone])
    }

    fn table(quorum: &str, in_fleet: bool) -> NodeTable {
        let zones = zones(quorum);
        let nodes = NodeRuntime::fresh(&zones, at(0));
        NodeTable::new(zones, nodes, in_fleet)
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn report(node: usize, from: Health, to: Health) -> Report {
        Report {
            key: NodeKey {
                zone: 0,
                node,
                line: 0,
                generation: 0,
            },
            result: ProbeResult {
                ok: to == Health::Up,
                latency: Duration::from_millis(3),
                detail: "connect: connection refused".into(),
                load: None,
            },
            health: to,
            transition: (from != to).then_some((from, to)),
            stats: ProbeStats {
                rtt_ms: Some(3.0),
                loss: 0.2,
            },
        }
    }

    #[test]
    fn a_failed_check_takes_a_node_out_and_says_why() {
        let mut table = table("majority", false);
        let changed = table.apply(
            NodeEvent::Checked(report(0, Health::Unknown, Health::Down)),
            at(5),
        );
        assert_eq!(
            changed.availability,
            vec![(0, 0, Availability::Up, Availability::HealthDown)]
        );
        assert_eq!(changed.verdict, Some((0, 0, Health::Down)));
        assert!(changed.first_result, "readiness waits for it");
        let tokyo = &table.nodes()[0][0];
        assert_eq!(tokyo.since, at(5));
        assert_eq!(tokyo.probe_rtt_ms, Some(3.0));
        let entry = table.timeline().entries().back().cloned().expect("noted");
        assert_eq!((entry.from.as_str(), entry.to.as_str()), ("up", "down"));
        assert!(entry.why.contains("connection refused"), "{}", entry.why);
        // The same verdict again changes nothing.
        let again = table.apply(
            NodeEvent::Checked(report(0, Health::Down, Health::Down)),
            at(6),
        );
        assert_eq!(again, Changed::default());
    }

    #[test]
    fn overrides_and_loads_decide_with_hysteresis() {
        let mut table = table("majority", false);
        let drained = table.apply(
            NodeEvent::Override {
                zone: 0,
                node: 1,
                set: Some(Override::Drain),
                by: Some(super::super::commands::Audit::new(
                    "alice",
                    Some("kernel upgrade"),
                )),
            },
            at(1),
        );
        assert_eq!(drained.availability[0].3, Availability::AdminDown);
        let noted = table.timeline();
        assert!(
            noted
                .0
                .iter()
                .any(|e| e.why == "drained by alice (kernel upgrade)"),
            "{noted:?}"
        );
        // A load reported at `secs`, seen `later` seconds after that.
        let mut load_at = |value: f64, secs: u64, later: u64| {
            let mut measured = ZoneLatency::default();
            measured.record_load(
                0,
                crate::latency::Load {
                    value,
                    at: at(secs),
                },
            );
            (table).apply(
                NodeEvent::Loads {
                    zone: 0,
                    measured: &measured,
                },
                at(secs + later),
            )
        };
        let mut set_load = |value: f64, secs: u64| load_at(value, secs, 0);
        let full = set_load(0.95, 2);
        assert_eq!(
            full.availability,
            vec![(0, 0, Availability::Up, Availability::Full(95))]
        );
        // Below `full` but above `resume`: still full.
        let held = set_load(0.85, 3);
        assert_eq!(held.availability[0].3, Availability::Full(85));
        let back = set_load(0.5, 4);
        assert_eq!(back.availability[0].3, Availability::Up);
        // A full node whose reports stopped takes clients again once the last one is older
        // than its capacity's max_age (60 s by default).
        assert_eq!(set_load(0.95, 5).availability[0].3, Availability::Full(95));
        assert!(load_at(0.95, 5, 60).availability.is_empty());
        let expired = load_at(0.95, 5, 61);
        assert_eq!(expired.availability[0].3, Availability::Up);
    }

    #[test]
    fn the_fleet_s_quorum_decides_while_it_is_reachable() {
        let mut table = table("majority", true);
        table.apply(
            NodeEvent::Checked(report(0, Health::Unknown, Health::Up)),
            at(1),
        );
        let key = ("t.example".to_string(), "tokyo".to_string());
        let mut state = FleetState::default();
        state.verdicts.insert(
            key.clone(),
            vec![("b".into(), Health::Down), ("c".into(), Health::Down)],
        );
        state.overrides.insert(
            ("t.example".to_string(), "osaka".to_string()),
            Override::Drain,
        );
        let changed = table.apply(NodeEvent::FleetState(state), at(2));
        assert_eq!(changed.fleet_connected, Some(true));
        assert_eq!(
            table.effective_health(0, 0),
            Health::Down,
            "two of three say down"
        );
        assert_eq!(table.nodes()[0][1].override_, Some(Override::Drain));
        assert_eq!(changed.availability.len(), 2);
        // Lost: this instance's own verdict decides again, the last overrides stay.
        let lost = table.apply(NodeEvent::FleetLost("timed out".into()), at(3));
        assert_eq!(lost.fleet_connected, Some(false));
        assert_eq!(table.effective_health(0, 0), Health::Up);
        assert_eq!(table.nodes()[0][1].override_, Some(Override::Drain));
    }

    /// A node with two carrier lines: each line has its own verdict, sent to the fleet
    /// under `node@address`; the fleet's quorum decides a line like a node; the node is down
    /// only with both lines down.
    #[test]
    fn carrier_lines_have_their_own_verdicts_locally_and_in_the_fleet() {
        let text = "zone: t.example\nsoa: {primary: ns1.t.example., contact: h.t.example.}\nns: [ns1.t.example.]\n\
             check: {type: tcp, port: 1935}\nnodes:\n\
             \x20 tokyo: {geo: AS-JP, location: [35, 139], addresses: [192.0.2.1, {address: 192.0.2.101, asn: 64500}]}\n\
             steer:\n  ingest: {}\n";
        let zone =
            crate::policy::parse_zone(std::path::Path::new("t.yaml"), text, 1).expect("zone");
        let zones = Arc::new(vec![zone]);
        let nodes = NodeRuntime::fresh(&zones, at(0));
        let mut table = NodeTable::new(zones, nodes, true);
        let line = |line: u8, from: Health, to: Health| {
            let mut r = report(0, from, to);
            r.key.line = line;
            NodeEvent::Checked(r)
        };
        table.apply(line(0, Health::Unknown, Health::Up), at(1));
        let changed = table.apply(line(1, Health::Unknown, Health::Up), at(1));
        assert_eq!(changed.lines, vec![(0, 0, 1)]);
        assert_eq!(table.down_lines(), vec![vec![0]]);
        // The carrier line fails: the node stays up, the line is down.
        let changed = table.apply(line(1, Health::Up, Health::Down), at(2));
        assert_eq!(changed.lines, vec![(0, 0, 1)]);
        assert!(changed.availability.is_empty(), "the node is still up");
        assert_eq!(table.down_lines(), vec![vec![0b10]]);
        let key = ("t.example".to_string(), "tokyo@192.0.2.101".to_string());
        assert_eq!(
            table.line_verdict(0, 0, 1),
            Some((key.clone(), Health::Down))
        );
        // Two other members see the line up: the fleet's majority says up.
        let mut state = FleetState::default();
        state.verdicts.insert(
            key,
            vec![("b".into(), Health::Up), ("c".into(), Health::Up)],
        );
        let changed = table.apply(NodeEvent::FleetState(state), at(3));
        assert_eq!(
            changed.lines,
            vec![(0, 0, 1)],
            "the fleet's verdict moved the line"
        );
        assert_eq!(table.down_lines(), vec![vec![0]]);
        // Alone (fleet lost): its own verdict decides the line again; both lines down: the
        // node is down.
        let lost = table.apply(NodeEvent::FleetLost("gone".into()), at(4));
        assert_eq!(lost.lines, vec![(0, 0, 1)]);
        let changed = table.apply(line(0, Health::Up, Health::Down), at(5));
        assert_eq!(changed.verdict, Some((0, 0, Health::Down)));
        assert_eq!(changed.availability.len(), 1);
        assert_eq!(table.nodes()[0][0].availability, Availability::HealthDown);
    }

    #[test]
    fn nodes_are_found_by_zone_and_name() {
        let table = table("majority", false);
        assert_eq!(table.find("T.example.", "osaka"), Some((0, 1)));
        assert_eq!(table.find("t.example", "nagoya"), None);
        assert_eq!(table.find("u.example", "osaka"), None);
    }
}
