//! Node runtime state: what the publisher knows of each node beyond the policy (health,
//! override, last check, probe statistics, fullness), the rule that decides whether it is
//! answered, its state word, and how that state carries over a reload (pure functions,
//! tested here). The node table (`table`) applies events to it.

use std::collections::HashMap;
use std::time::SystemTime;

use super::commands::{LineStatus, NodeStatus, Override};
use crate::geo::AsnDb;
use crate::health::{Health, Report};
use crate::latency::{ClientGroup, ZoneLatency};
use crate::policy::{AdminStatus, Zone};
use crate::steer::{Availability, DampingState};

/// Runtime state of one node.
#[derive(Debug, Clone)]
pub(super) struct NodeRuntime {
    /// What the checks say.
    pub health: Health,
    /// The operator's override, if any.
    pub override_: Option<Override>,
    /// Who last set or cleared it, why, and when.
    pub override_by: Option<(super::commands::Audit, SystemTime)>,
    /// The last check's report, and when it arrived.
    pub last: Option<(Report, SystemTime)>,
    /// Whether answers use the node (from policy, override and health).
    pub availability: Availability,
    /// When `availability` last changed.
    pub since: SystemTime,
    /// Smoothed round trip of passing probes, ms (the check's own estimate).
    pub probe_rtt_ms: Option<f64>,
    /// Smoothed probe failure rate, 0..=1 (the check's own estimate).
    pub probe_loss: f64,
    /// `probe_loss` as of the last ranking.
    pub ranked_loss: f64,
    /// At or over its capacity (with hysteresis: until its load falls below `resume`).
    pub full: bool,
    /// Its load in percent, as availability orders full nodes by it.
    pub load_percent: u8,
    /// Its state as the timeline last recorded it (`up`, `drained`, ...).
    pub state: &'static str,
    /// Each carrier line's own verdict, in address order (empty: the node's check is its
    /// one line). The node is up while any line is.
    pub lines: Vec<LineState>,
}

/// One carrier line of a node, as its own check sees it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LineState {
    /// The line's address.
    pub address: std::net::IpAddr,
    /// What its check says.
    pub health: Health,
    /// When `health` last changed.
    pub since: SystemTime,
    /// The last probe's outcome in words.
    pub detail: String,
}

impl LineState {
    fn fresh(address: std::net::IpAddr, now: SystemTime) -> Self {
        LineState {
            address,
            health: Health::Unknown,
            since: now,
            detail: String::new(),
        }
    }
}

/// A node's health from its lines': up while any line is up, down once every line is.
pub(super) fn lines_health(lines: &[LineState]) -> Health {
    if lines.iter().any(|l| l.health == Health::Up) {
        Health::Up
    } else if !lines.is_empty() && lines.iter().all(|l| l.health == Health::Down) {
        Health::Down
    } else {
        Health::Unknown
    }
}

/// The word the page and timeline use for a node's state.
pub(super) fn state_word(availability: Availability, override_: Option<Override>) -> &'static str {
    match (availability, override_) {
        (Availability::Up, _) => "up",
        (Availability::Draining(_), _) => "draining",
        (Availability::Full(_), _) => "full",
        (Availability::HealthDown, _) => "down",
        (Availability::AdminDown, Some(Override::Drain)) => "drained",
        (Availability::AdminDown, _) => "forced-down",
    }
}

/// Policy status, then override, then health, then capacity: who decides whether a node is
/// answered. A forced-up node is answered however busy (the operator said so).
/// `full` is the node's load in percent while it is full.
pub(super) fn availability(
    status: AdminStatus,
    override_: Option<Override>,
    health: Health,
    full: Option<u8>,
) -> Availability {
    let by_state = match (override_, status, health) {
        (Some(Override::Drain | Override::ForceDown), _, _) => Availability::AdminDown,
        (Some(Override::ForceUp), _, _) => return Availability::Up,
        (None | Some(Override::DrainShare(_)), AdminStatus::Down, _) => Availability::AdminDown,
        (None | Some(Override::DrainShare(_)), AdminStatus::Up, _) => Availability::Up,
        (None | Some(Override::DrainShare(_)), AdminStatus::Obey, Health::Down) => {
            Availability::HealthDown
        }
        (None | Some(Override::DrainShare(_)), AdminStatus::Obey, _) => Availability::Up,
    };
    match (full, override_) {
        (Some(load), _) if by_state == Availability::Up => Availability::Full(load),
        (None, Some(Override::DrainShare(share))) if by_state == Availability::Up => {
            Availability::Draining(share)
        }
        _ => by_state,
    }
}

/// A load as a whole percentage, for ordering full nodes (loads are at most 150 %).
pub(super) fn load_percent(load: Option<f64>) -> u8 {
    load.map_or(0, |l| (l * 100.0).round().clamp(0.0, 255.0) as u8)
}

impl NodeRuntime {
    /// Its load in percent while it is full.
    pub(super) fn full_at(&self) -> Option<u8> {
        self.full.then_some(self.load_percent)
    }

    /// Every node of `zones`, not seen before.
    pub(super) fn fresh(zones: &[Zone], now: SystemTime) -> Vec<Vec<NodeRuntime>> {
        zones
            .iter()
            .map(|z| {
                z.nodes
                    .iter()
                    .map(|n| {
                        let mut runtime = NodeRuntime::new(n.status, now);
                        runtime.lines = carry_lines(n, &[], now);
                        runtime
                    })
                    .collect()
            })
            .collect()
    }

    /// A node not seen before: unchecked, no override, answered as its policy says.
    pub(super) fn new(status: AdminStatus, now: SystemTime) -> Self {
        NodeRuntime {
            health: Health::Unknown,
            override_: None,
            override_by: None,
            last: None,
            availability: availability(status, None, Health::Unknown, None),
            since: now,
            probe_rtt_ms: None,
            probe_loss: 0.0,
            ranked_loss: 0.0,
            full: false,
            load_percent: 0,
            state: state_word(availability(status, None, Health::Unknown, None), None),
            lines: Vec::new(),
        }
    }

    /// The node as the admin interface shows it.
    pub(super) fn status(
        &self,
        zone: &Zone,
        node: usize,
        load: Option<crate::latency::Load>,
        now: SystemTime,
    ) -> NodeStatus {
        let spec = &zone.nodes[node];
        let age = |t: SystemTime| now.duration_since(t).map_or(0.0, |d| d.as_secs_f64());
        NodeStatus {
            zone: zone.origin.to_string(),
            node: spec.name.clone(),
            tier: spec.tier,
            policy_status: spec.status,
            override_: self.override_,
            health: self.health,
            availability: self.availability,
            check: spec
                .check
                .as_ref()
                .map_or_else(|| "none".to_string(), ToString::to_string),
            last_ok: self.last.as_ref().map(|(r, _)| r.result.ok),
            last_detail: self.last.as_ref().map(|(r, _)| r.result.detail.clone()),
            last_latency_ms: self
                .last
                .as_ref()
                .map(|(r, _)| r.result.latency.as_secs_f64() * 1e3),
            last_check_age_s: self.last.as_ref().map(|(_, t)| age(*t)),
            since_s: age(self.since),
            probe_rtt_ms: self.probe_rtt_ms,
            probe_loss: self.probe_loss,
            load: load.map(|l| l.value),
            load_age_s: load.map(|l| age(l.at)),
            stale_load: None,
            load_stale_s: None,
            fleet_health: None,
            override_by: self.override_by.as_ref().map(|(a, _)| a.clone()),
            override_age_s: self.override_by.as_ref().map(|(_, t)| age(*t)),
            lines: (self.lines.iter())
                .map(|l| LineStatus {
                    address: l.address,
                    asn: (spec.carriers.iter())
                        .find(|(ip, _)| *ip == l.address)
                        .map(|(_, asn)| *asn),
                    health: l.health,
                    since_s: age(l.since),
                    detail: l.detail.clone(),
                })
                .collect(),
        }
    }
}

/// Node state and measurements for a newly loaded policy.
#[derive(Debug)]
pub(super) struct CarriedOver {
    /// Runtime state per zone and node of the new policy.
    pub nodes: Vec<Vec<NodeRuntime>>,
    /// Measurements, loads and probe loss per zone of the new policy.
    pub latency: Vec<ZoneLatency>,
    /// How many nodes kept their state.
    pub kept: usize,
}

/// Carries node state over a reload: a node of the same zone origin and name keeps its
/// health, override, last check, probe statistics, load and measurements (re-indexed to its
/// new position); a node that is no longer checked forgets its health; every availability
/// is worked out again from the new policy (its `since` moves only when it changed). Nodes
/// not seen before start as [`NodeRuntime::new`]. ASN groups' networks are looked up again
/// in the new ASN database.
/// A node's line states under its policy now: a line whose address it had keeps its
/// state, a new one starts unchecked.
fn carry_lines(node: &crate::policy::Node, old: &[LineState], now: SystemTime) -> Vec<LineState> {
    node.checked_lines()
        .iter()
        .map(|&address| {
            old.iter()
                .find(|l| l.address == address)
                .cloned()
                .unwrap_or_else(|| LineState::fresh(address, now))
        })
        .collect()
}

pub(super) fn carry_over(
    old_zones: &[Zone],
    old_nodes: &[Vec<NodeRuntime>],
    old_latency: &[ZoneLatency],
    zones: &[Zone],
    asn: Option<&AsnDb>,
    now: SystemTime,
) -> CarriedOver {
    let mut kept = 0;
    let mut nodes = Vec::with_capacity(zones.len());
    let mut latency = Vec::with_capacity(zones.len());
    for zone in zones {
        let old_zone = old_zones.iter().position(|z| z.origin == zone.origin);
        let old_index: HashMap<&str, usize> = old_zone
            .map(|oz| {
                old_zones[oz]
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.name.as_str(), i))
                    .collect()
            })
            .unwrap_or_default();
        let mut runtimes = Vec::with_capacity(zone.nodes.len());
        let mut measured = ZoneLatency::default();
        for (ni, node) in zone.nodes.iter().enumerate() {
            let old = old_zone.zip(old_index.get(node.name.as_str()).copied());
            let previous = old.and_then(|(oz, on)| old_nodes.get(oz)?.get(on));
            let mut runtime = match previous {
                Some(previous) => {
                    kept += 1;
                    previous.clone()
                }
                None => NodeRuntime::new(AdminStatus::Obey, now),
            };
            if node.check.is_none() {
                runtime.health = Health::Unknown;
            }
            runtime.lines = carry_lines(node, &runtime.lines, now);
            if let Some(old_measured) = old.and_then(|(oz, _)| old_latency.get(oz))
                && let Some((_, on)) = old
            {
                if let Some(load) = old_measured.loads.get(&on) {
                    measured.loads.insert(ni, *load);
                }
                if let Some(loss) = old_measured.probe_loss.get(&on) {
                    measured.probe_loss.insert(ni, *loss);
                }
            }
            // Full or not under the new capacity, from the load carried over.
            let load = measured.load(ni, now, node.capacity.max_age);
            runtime.full = load.is_some_and(|load| node.capacity.is_full(load, runtime.full));
            runtime.load_percent = load_percent(load);
            let before = runtime.availability;
            runtime.availability = availability(
                node.status,
                runtime.override_,
                runtime.health,
                runtime.full_at(),
            );
            if runtime.availability != before {
                runtime.since = now;
            }
            runtimes.push(runtime);
        }
        if let Some(oz) = old_zone
            && let Some(old_measured) = old_latency.get(oz)
        {
            let names: HashMap<&str, usize> = zone
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.as_str(), i))
                .collect();
            let old_nodes = &old_zones[oz].nodes;
            measured.measurements = old_measured.measurements.remap(|old| {
                old_nodes
                    .get(old)
                    .and_then(|n| names.get(n.name.as_str()).copied())
            });
            measured.addresses = old_measured.addresses.clone();
            if let Some(db) = asn {
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
    CarriedOver {
        nodes,
        latency,
        kept,
    }
}

/// Answer damping carried over a reload: a ranking cell keeps its incumbent when it still
/// means the same clients (same zone origin and steered name, the same rules, default and
/// fences, the same database places) and its nodes still exist (matched by name).
pub(super) fn carry_damping(
    old_zones: &[Zone],
    old_damping: &DampingState,
    zones: &[Zone],
    same_places: bool,
) -> DampingState {
    if !same_places {
        return DampingState::new();
    }
    let zone_of = |old: usize| {
        zones
            .iter()
            .position(|z| Some(&z.origin) == old_zones.get(old).map(|o| &o.origin))
    };
    old_damping.carried(
        |(zone, steered, row)| {
            let old = old_zones.get(zone)?.steered.get(steered)?;
            let new_zone = zone_of(zone)?;
            let new_steered = zones[new_zone].steered.iter().position(|s| {
                s.name == old.name
                    && s.rules == old.rules
                    && s.default == old.default
                    && s.fences == old.fences
            })?;
            Some((new_zone, new_steered, row))
        },
        |zone, node| {
            let name = &old_zones.get(zone)?.nodes.get(node)?.name;
            zones[zone_of(zone)?]
                .nodes
                .iter()
                .position(|n| &n.name == name)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Measurement;
    use std::time::Duration;

    fn zone(origin: &str, nodes: &[(&str, &str)], checked: bool) -> Zone {
        let mut text = format!(
            "zone: {origin}\nsoa: {{primary: ns1.{origin}., contact: h.{origin}.}}\nns: [ns1.{origin}.]\n"
        );
        text += if checked {
            "check: {type: tcp, port: 1935}\n"
        } else {
            "check: {type: none}\n"
        };
        text += "nodes:\n";
        for (i, (name, status)) in nodes.iter().enumerate() {
            text += &format!(
                "  {name}: {{tier: core, geo: AS-JP, location: [35, 139], addresses: [192.0.2.{}], status: {status}}}\n",
                i + 1
            );
        }
        text += "steer:\n  ingest: {}\n";
        crate::policy::parse_zone(std::path::Path::new("z.yaml"), &text, 1).expect("a zone")
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn overrides_beat_policy_and_health() {
        use Availability::*;
        assert_eq!(
            availability(AdminStatus::Obey, None, Health::Unknown, None),
            Up
        );
        // Full only when otherwise up; a forced-up node is answered however busy.
        assert_eq!(
            availability(AdminStatus::Obey, None, Health::Up, Some(99)),
            Full(99)
        );
        assert_eq!(
            availability(AdminStatus::Obey, None, Health::Down, Some(99)),
            HealthDown
        );
        assert_eq!(
            availability(
                AdminStatus::Obey,
                Some(Override::ForceUp),
                Health::Up,
                Some(99)
            ),
            Up
        );
        assert_eq!(
            availability(AdminStatus::Obey, None, Health::Down, None),
            HealthDown
        );
        assert_eq!(availability(AdminStatus::Up, None, Health::Down, None), Up);
        assert_eq!(
            availability(AdminStatus::Down, None, Health::Up, None),
            AdminDown
        );
        assert_eq!(
            availability(
                AdminStatus::Down,
                Some(Override::ForceUp),
                Health::Down,
                None
            ),
            Up
        );
        assert_eq!(
            availability(AdminStatus::Up, Some(Override::Drain), Health::Up, None),
            AdminDown
        );
        assert_eq!(
            availability(
                AdminStatus::Obey,
                Some(Override::ForceDown),
                Health::Up,
                None
            ),
            AdminDown
        );
    }

    /// Nodes keep their state by zone and name wherever they move in the file; new nodes
    /// start fresh, gone nodes are forgotten, and availability follows the new policy.
    #[test]
    fn reload_carries_node_state_by_zone_and_name() {
        let old_zones = vec![
            zone(
                "a.example",
                &[("tokyo", "obey"), ("osaka", "obey"), ("gone", "obey")],
                true,
            ),
            zone("b.example", &[("tokyo", "obey")], true),
        ];
        let mut old_nodes = NodeRuntime::fresh(&old_zones, at(0));
        // a.example/tokyo is down by its checks, osaka drained, b.example/tokyo up.
        old_nodes[0][0].health = Health::Down;
        old_nodes[0][0].availability = Availability::HealthDown;
        old_nodes[0][0].probe_loss = 0.5;
        old_nodes[0][1].override_ = Some(Override::Drain);
        old_nodes[0][1].availability = Availability::AdminDown;
        old_nodes[1][0].health = Health::Up;
        let mut old_latency = vec![ZoneLatency::default(), ZoneLatency::default()];
        let load = crate::latency::Load {
            value: 0.9,
            at: at(30),
        };
        old_latency[0].loads.insert(1, load);
        old_latency[0].probe_loss.insert(0, 0.5);
        let group = ClientGroup::parse("AS-JP", crate::geo::CountryTable::shipped()).unwrap();
        let measured = Measurement {
            rtt_ms: 12.0,
            loss: 0.0,
            at: at(0),
        };
        old_latency[0]
            .measurements
            .record(1, group.clone(), measured);

        // The new file: osaka first, tokyo second, a new node, `gone` removed; b.example's
        // tokyo is now administratively down; a new zone c.example.
        let zones = vec![
            zone(
                "a.example",
                &[("osaka", "obey"), ("tokyo", "obey"), ("new", "obey")],
                true,
            ),
            zone("b.example", &[("tokyo", "down")], true),
            zone("c.example", &[("tokyo", "obey")], true),
        ];
        let carried = carry_over(&old_zones, &old_nodes, &old_latency, &zones, None, at(60));
        assert_eq!(carried.kept, 3);
        let [a, b, c] = &carried.nodes[..] else {
            panic!("three zones");
        };
        // Moved in the file, kept by name.
        assert_eq!(a[0].override_, Some(Override::Drain));
        assert_eq!(a[0].availability, Availability::AdminDown);
        assert_eq!(a[1].health, Health::Down);
        assert_eq!(a[1].availability, Availability::HealthDown);
        assert_eq!(a[1].probe_loss, 0.5);
        assert_eq!(a[1].since, at(0), "unchanged availability keeps its time");
        // New nodes, and a node of another zone with the same name, start fresh.
        assert_eq!(a[2].health, Health::Unknown);
        assert_eq!(a[2].since, at(60));
        assert_eq!(c[0].health, Health::Unknown);
        // The new policy decides: b.example/tokyo is down now, and its change is dated.
        assert_eq!(b[0].health, Health::Up);
        assert_eq!(b[0].availability, Availability::AdminDown);
        assert_eq!(b[0].since, at(60));
        // Loads, probe loss and measurements follow the nodes to their new indices.
        let a_latency = &carried.latency[0];
        assert_eq!(a_latency.loads.get(&0), Some(&load));
        assert_eq!(a_latency.probe_loss.get(&1), Some(&0.5));
        assert_eq!(a_latency.loads.len(), 1);
        let policy = crate::policy::LatencyPolicy::default();
        assert_eq!(
            a_latency
                .measurements
                .best(0, std::slice::from_ref(&group), at(60), &policy)
                .map(|(_, m, _)| m.rtt_ms),
            Some(12.0)
        );
        assert!(
            a_latency
                .measurements
                .best(1, &[group], at(60), &policy)
                .is_none()
        );
        assert!(carried.latency[2].loads.is_empty());
    }

    /// A node whose check was removed forgets what its checks said.
    #[test]
    fn a_node_no_longer_checked_forgets_its_health() {
        let old_zones = vec![zone("a.example", &[("tokyo", "obey")], true)];
        let mut old_nodes = vec![vec![NodeRuntime::new(AdminStatus::Obey, at(0))]];
        old_nodes[0][0].health = Health::Down;
        old_nodes[0][0].availability = Availability::HealthDown;
        let zones = vec![zone("a.example", &[("tokyo", "obey")], false)];
        let carried = carry_over(&old_zones, &old_nodes, &[], &zones, None, at(5));
        assert_eq!(carried.nodes[0][0].health, Health::Unknown);
        assert_eq!(carried.nodes[0][0].availability, Availability::Up);
        assert_eq!(carried.nodes[0][0].since, at(5));
    }
}
