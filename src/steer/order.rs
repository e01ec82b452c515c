//! Ranking candidate nodes for one client place: the policy's idea of "best".
//!
//! Pure functions of the policy and a place; called only while answer tables are built, never
//! per query. Order: primaries (core, edge) before backups; within each, earlier fallback levels
//! first; then nearest first by great-circle distance (or candidate-list order when the client has
//! no coordinates); ties by higher weight, then position in the candidate list, so answers are deterministic.

use serde::Serialize;

use crate::geo::{Coordinates, GeoSet};
use crate::policy::{AdminStatus, AllDown, Candidates, Node, NodeId, Tier, Zone};

/// Whether a node may be answered, as the publisher decided from policy, overrides, health
/// and load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Answerable.
    Up,
    /// Answerable, but giving up this percentage of the client networks it would get (a
    /// staged drain; see `answer::draw`).
    Draining(u8),
    /// At or over its capacity, with its load in percent: gives way like a down node, and
    /// answers (least loaded first) only when every allowed node that is up is full.
    Full(u8),
    /// Its checks fail: skipped, unless every allowed node is down and the name fails open.
    HealthDown,
    /// Administratively down or drained: never answered.
    AdminDown,
}

impl Serialize for Availability {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            Availability::Up => "up",
            Availability::Draining(_) => "draining",
            Availability::Full(_) => "full",
            Availability::HealthDown => "health-down",
            Availability::AdminDown => "admin-down",
        })
    }
}

impl Availability {
    /// Whether answers may use the node (staged drains included: they give up only some
    /// networks, when a client asks).
    pub fn answerable(self) -> bool {
        matches!(self, Availability::Up | Availability::Draining(_))
    }

    /// From the policy alone: administrative `down` is down, everything else up (checks
    /// and operators decide the rest at run time).
    pub fn of_policy(status: AdminStatus) -> Availability {
        match status {
            AdminStatus::Down => Availability::AdminDown,
            AdminStatus::Up | AdminStatus::Obey => Availability::Up,
        }
    }
}

/// Ranks `candidates` by `score` (lower is better; see `latency::score`), keeping the nodes
/// inside every fence in `fences`. Order: primaries before backups, earlier fallback levels
/// first, then score, then higher weight, then position in the candidate list, so rankings
/// are deterministic. Health plays no part here (see [`pick`]).
pub fn rank(
    nodes: &[Node],
    candidates: &Candidates,
    fences: &[&GeoSet],
    score: impl Fn(NodeId, &Node) -> f64,
) -> Vec<(NodeId, f64)> {
    // Sorted by one integer key (tier, fallback level, score, weight, position in the
    // candidate list): ranking sorts every candidate for every place of a city database.
    let mut ranked: Vec<(u128, NodeId, f64)> = candidates
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(position, &(id, level))| nodes.get(id).map(|n| (n, id, level, position)))
        .filter(|(n, ..)| fences.iter().all(|f| f.contains(&n.geo)))
        .map(|(n, id, level, position)| {
            let score = score(id, n);
            (rank_key(n, level, score, position), id, score)
        })
        .collect();
    ranked.sort_unstable_by_key(|entry| entry.0);
    ranked
        .into_iter()
        .map(|(_, id, score)| (id, score))
        .collect()
}

/// Backup tier (1 bit), fallback level (8), score (64), inverted weight (32) and position
/// in the candidate list (23) as one integer, compared in that order.
pub(crate) fn rank_key(node: &Node, level: u8, score: f64, position: usize) -> u128 {
    with_score(rank_key_base(node, level, position), score)
}

/// Bits of [`rank_key`] that hold the score.
const SCORE_BITS: u128 = (u64::MAX as u128) << 55;

/// [`rank_key`] without the score: what a node's keys share at every place.
pub(crate) fn rank_key_base(node: &Node, level: u8, position: usize) -> u128 {
    (u128::from(node.tier == Tier::Backup) << 127)
        | (u128::from(level) << 119)
        | (u128::from(u32::MAX - node.weight) << 23)
        | (position.min((1 << 23) - 1) as u128)
}

/// A key from its [`rank_key_base`] and a score.
pub(crate) fn with_score(base: u128, score: f64) -> u128 {
    (base & !SCORE_BITS) | (u128::from(ordered_bits(score)) << 55)
}

/// A float's bits, mapped so that integer order is the float's total order.
fn ordered_bits(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Scores by great-circle distance from `client` (0 for every node without coordinates, which
/// leaves the candidate-list order).
pub fn by_distance(client: Option<Coordinates>) -> impl Fn(NodeId, &Node) -> f64 {
    move |_, node| client.map_or(0.0, |c| c.distance_km(&node.location))
}

/// The nodes one answer holds, and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pick {
    /// Nodes to answer with, best first.
    pub nodes: Vec<NodeId>,
    /// A node this client would get if all were healthy is down: the answer may use a
    /// shorter TTL, so resolvers come back sooner once it recovers.
    pub degraded: bool,
    /// Every allowed node is down and the name fails closed.
    pub servfail: bool,
}

/// Chooses up to `answers` nodes from a ranking (see [`rank`]), keeping those `eligible`
/// (e.g. having an address of the queried family).
///
/// Available primaries come first. Backups stand in for every primary that is out of the
/// answer, whatever took it out (health, a drain, a forced down, capacity): an answer has as
/// many backups as it lost primaries, so with every primary available, backups idle. A rule
/// that names only backups answers with them. When nothing is available, full nodes answer
/// (they are up, only busy); when health leaves nothing, `all_down` decides: fail open (rank
/// as if every health-checked node were up) or fail closed.
pub fn pick(
    ranked: &[NodeId],
    nodes: &[Node],
    availability: &[Availability],
    answers: usize,
    eligible: fn(&Node) -> bool,
    all_down: AllDown,
) -> Pick {
    let state = |id: NodeId| availability.get(id).copied().unwrap_or(Availability::Up);
    // One pass over the ranking that stops as soon as the answer is settled: with enough
    // available primaries near the top (the usual case), only the top of the list is read.
    let mut top_primaries = Vec::with_capacity(answers); // best primaries fail-open may use
    let mut top_backups = Vec::with_capacity(answers);
    let mut up_primaries = Vec::with_capacity(answers);
    let mut up_backups = Vec::with_capacity(answers);
    let mut full = Vec::new(); // full nodes, with their loads
    let mut primary_count = 0usize; // eligible primaries, in or out of the answer
    let mut health_lost = false; // a primary this client would get is down by health
    for &id in ranked {
        let node = &nodes[id];
        if !eligible(node) {
            continue;
        }
        let backup = node.tier == Tier::Backup;
        if !backup {
            primary_count += 1;
        }
        match state(id) {
            // Administratively down and drained nodes are not allowed at all, not even by
            // fail-open; a primary among them still counts as lost.
            Availability::AdminDown => continue,
            Availability::Full(load) => {
                full.push((load, id));
                continue;
            }
            Availability::HealthDown => {
                health_lost |= !backup && primary_count <= answers;
            }
            Availability::Up | Availability::Draining(_) => {}
        }
        let up = state(id).answerable();
        if backup {
            if top_backups.len() < answers {
                top_backups.push(id);
            }
            if up && up_backups.len() < answers {
                up_backups.push(id);
            }
        } else {
            if top_primaries.len() < answers {
                top_primaries.push(id);
            }
            if up && up_primaries.len() < answers {
                up_primaries.push(id);
                if up_primaries.len() == answers {
                    break; // a full answer of available primaries: no backup can be needed
                }
            }
        }
    }
    let (mut chosen, degraded) = if primary_count == 0 {
        let is_down = |id: &NodeId| state(*id) == Availability::HealthDown;
        (up_backups.clone(), top_backups.iter().any(is_down))
    } else {
        let lost = answers.min(primary_count) - up_primaries.len().min(answers);
        let mut chosen = up_primaries;
        chosen.extend(up_backups.iter().copied().take(lost));
        (chosen, health_lost)
    };
    let mut servfail = false;
    if chosen.is_empty() && !full.is_empty() {
        // Every allowed node that is up is full: the least loaded beat nothing (ties in
        // ranking order: the sort is stable).
        full.sort_by_key(|&(load, _)| load);
        chosen = full.into_iter().take(answers).map(|(_, id)| id).collect();
    } else if chosen.is_empty() && !(top_primaries.is_empty() && top_backups.is_empty()) {
        match all_down {
            AllDown::FailOpen => {
                chosen = if top_primaries.is_empty() {
                    top_backups
                } else {
                    top_primaries
                };
            }
            AllDown::FailClosed => servfail = true,
        }
    }
    Pick {
        nodes: chosen,
        degraded,
        servfail,
    }
}

/// Availability from the policy alone: administrative `down` is down, everything else up.
pub fn policy_availability(zones: &[Zone]) -> Vec<Vec<Availability>> {
    zones
        .iter()
        .map(|z| {
            z.nodes
                .iter()
                .map(|n| Availability::of_policy(n.status))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{CountryTable, GeoCode};
    use crate::policy::AdminStatus;

    fn node(name: &str, tier: Tier, geo: &str, lat: f64, lon: f64) -> Node {
        Node {
            name: name.into(),
            tier,
            geo: GeoCode::parse(geo, CountryTable::shipped()).unwrap(),
            location: Coordinates::new(lat, lon).unwrap(),
            addresses: vec!["192.0.2.1".parse().unwrap()],
            weight: 1,
            status: AdminStatus::Obey,
            check: None,
            carriers: Vec::new(),
            capacity: Default::default(),
        }
    }

    fn ids(ranked: Vec<(NodeId, f64)>) -> Vec<NodeId> {
        ranked.into_iter().map(|(id, _)| id).collect()
    }

    fn all(n: usize) -> Candidates {
        Candidates {
            nodes: (0..n).map(|i| (i, 0)).collect(),
        }
    }

    #[test]
    fn nearest_first_backups_last() {
        let nodes = vec![
            node("tokyo", Tier::Core, "AS-JP", 35.68, 139.69),
            node("frankfurt", Tier::Core, "EU-DE", 50.11, 8.68),
            node("osaka-b", Tier::Backup, "AS-JP", 34.69, 135.50),
            node("london", Tier::Edge, "EU-GB", 51.5, -0.12),
        ];
        let berlin = Coordinates::new(52.52, 13.40);
        assert_eq!(
            ids(rank(&nodes, &all(4), &[], by_distance(berlin))),
            vec![1, 3, 0, 2]
        );
        let seoul = Coordinates::new(37.56, 126.97);
        assert_eq!(
            ids(rank(&nodes, &all(4), &[], by_distance(seoul))),
            vec![0, 1, 3, 2]
        );
    }

    #[test]
    fn fences_and_down_nodes_are_excluded() {
        let nodes = vec![
            node("tokyo", Tier::Core, "AS-JP", 35.68, 139.69),
            node("frankfurt", Tier::Core, "EU-DE", 50.11, 8.68),
            node("london", Tier::Core, "EU-GB", 51.5, -0.12),
        ];
        let eu = GeoSet::union(vec![GeoCode::parse("EU", CountryTable::shipped()).unwrap()]);
        let tokyo = Coordinates::new(35.0, 139.0);
        assert_eq!(
            ids(rank(&nodes, &all(3), &[&eu], by_distance(tokyo))),
            vec![1, 2]
        );
        // Administratively down nodes are out; health-down ones stay ranked (for fail-open).
        let availability = [
            Availability::Up,
            Availability::AdminDown,
            Availability::HealthDown,
        ];
        // Availability plays no part in ranking; pick() drops administratively down nodes and
        // skips health-down ones unless failing open.
        let ranked = ids(rank(&nodes, &all(3), &[&eu], by_distance(tokyo)));
        let open = pick(
            &ranked,
            &nodes,
            &availability,
            2,
            |_| true,
            AllDown::FailOpen,
        );
        assert_eq!(
            open.nodes,
            vec![2],
            "fail-open brings back the health-down node only"
        );
    }

    #[test]
    fn fallback_levels_then_candidate_order_without_coordinates() {
        let nodes = vec![
            node("a", Tier::Core, "EU-DE", 50.0, 8.0),
            node("b", Tier::Core, "EU-DE", 50.0, 8.0),
            node("c", Tier::Core, "AS-JP", 35.0, 139.0),
        ];
        let chain = Candidates {
            nodes: vec![(2, 0), (1, 1), (0, 1)],
        };
        assert_eq!(
            ids(rank(&nodes, &chain, &[], by_distance(None))),
            vec![2, 1, 0]
        );
        let frankfurt = Coordinates::new(50.0, 8.0);
        assert_eq!(
            ids(rank(&nodes, &chain, &[], by_distance(frankfurt))),
            vec![2, 1, 0]
        );
    }
}

#[cfg(test)]
mod pick_tests {
    use super::*;
    use crate::geo::{CountryTable, GeoCode};
    use crate::policy::AdminStatus;
    use Availability::{HealthDown, Up};

    fn node(tier: Tier) -> Node {
        Node {
            name: "n".into(),
            tier,
            geo: GeoCode::parse("EU-DE", CountryTable::shipped()).unwrap(),
            location: Coordinates::new(50.0, 8.0).unwrap(),
            addresses: vec!["192.0.2.1".parse().unwrap()],
            weight: 1,
            status: AdminStatus::Obey,
            check: None,
            carriers: Vec::new(),
            capacity: Default::default(),
        }
    }

    fn any(_: &Node) -> bool {
        true
    }

    /// Two primaries (0, 1) then two backups (2, 3), already ranked.
    fn fleet() -> Vec<Node> {
        vec![
            node(Tier::Core),
            node(Tier::Edge),
            node(Tier::Backup),
            node(Tier::Backup),
        ]
    }

    #[test]
    fn backups_idle_while_primaries_are_up() {
        let p = pick(&[0, 1, 2, 3], &fleet(), &[Up; 4], 3, any, AllDown::FailOpen);
        assert_eq!(p.nodes, vec![0, 1]);
        assert!(!p.degraded);
    }

    #[test]
    fn backups_stand_in_for_down_primaries() {
        let p = pick(
            &[0, 1, 2, 3],
            &fleet(),
            &[HealthDown, Up, Up, Up],
            2,
            any,
            AllDown::FailOpen,
        );
        assert_eq!(p.nodes, vec![1, 2]);
        assert!(p.degraded);
        let p = pick(
            &[0, 1, 2, 3],
            &fleet(),
            &[HealthDown, HealthDown, Up, HealthDown],
            2,
            any,
            AllDown::FailOpen,
        );
        assert_eq!(p.nodes, vec![2]);
    }

    #[test]
    fn backups_stand_in_for_drained_and_full_primaries() {
        use Availability::{AdminDown, Full};
        for out in [AdminDown, HealthDown, Full(99)] {
            let p = pick(
                &[0, 1, 2, 3],
                &fleet(),
                &[out, Up, Up, Up],
                2,
                any,
                AllDown::FailOpen,
            );
            assert_eq!(p.nodes, vec![1, 2], "{out:?}");
            assert_eq!(p.degraded, out == HealthDown, "{out:?}");
        }
        // Every node up is full: the least loaded answer rather than nothing, before
        // fail-open.
        let p = pick(
            &[0, 1, 2, 3],
            &fleet(),
            &[Full(120), HealthDown, Full(101), AdminDown],
            1,
            any,
            AllDown::FailClosed,
        );
        assert_eq!(p.nodes, vec![2]);
        assert!(!p.servfail);
    }

    #[test]
    fn all_down_fails_open_or_closed() {
        let down = [HealthDown; 4];
        let open = pick(&[0, 1, 2, 3], &fleet(), &down, 2, any, AllDown::FailOpen);
        assert_eq!(open.nodes, vec![0, 1]);
        assert!(!open.servfail && open.degraded);
        let closed = pick(&[0, 1, 2, 3], &fleet(), &down, 2, any, AllDown::FailClosed);
        assert!(closed.nodes.is_empty() && closed.servfail);
        // Nothing allowed at all (fenced out, or no address of the family): no SERVFAIL.
        let none = pick(&[], &fleet(), &down, 2, any, AllDown::FailClosed);
        assert!(none.nodes.is_empty() && !none.servfail);
    }

    #[test]
    fn degraded_only_when_this_answer_lost_a_node() {
        let four = vec![
            node(Tier::Core),
            node(Tier::Core),
            node(Tier::Core),
            node(Tier::Core),
        ];
        let far_down = pick(
            &[0, 1, 2, 3],
            &four,
            &[Up, Up, Up, HealthDown],
            2,
            any,
            AllDown::FailOpen,
        );
        assert_eq!(far_down.nodes, vec![0, 1]);
        assert!(
            !far_down.degraded,
            "a node this client would not get is down"
        );
        let near_down = pick(
            &[0, 1, 2, 3],
            &four,
            &[HealthDown, Up, Up, Up],
            2,
            any,
            AllDown::FailOpen,
        );
        assert_eq!(near_down.nodes, vec![1, 2]);
        assert!(near_down.degraded);
    }

    #[test]
    fn a_rule_of_only_backups_answers_with_them() {
        let p = pick(&[2, 3], &fleet(), &[Up; 4], 2, any, AllDown::FailOpen);
        assert_eq!(p.nodes, vec![2, 3]);
    }
}
