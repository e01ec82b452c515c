//! "Why did this client get that node?": the steering decision for one client, step by step,
//! computed with the same functions the answer tables are built with (located where, which
//! rule and fences applied, every candidate's distance, expected latency and its source,
//! load, health, score, and why the winners won).
//!
//! Used by `geosteer explain` (policy alone: every node up, nothing measured), by the admin
//! interface and by `_explain` TXT queries (both from the inputs of the published tables:
//! health, measurements and hysteresis), which this file also renders. Never on the
//! ordinary query path.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::geo::{GeoCode, GeoDb, GeoSet, Place};
use crate::latency::{self, ZoneLatency};
use crate::latency::{ClientGroup, Expected};
use crate::net::{Prefix, unmap};
use crate::policy::{Candidates, DomainName, Node, NodeId, SteeredName, Tier, Zone};
use crate::steer::score::node_score;
use crate::steer::table::column_of;
use crate::steer::{Availability, DampingState, Pick, pick, rank};

/// One candidate node, as scored for this client.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateLine {
    /// Node name.
    pub node: String,
    /// Tier.
    pub tier: Tier,
    /// Great-circle distance, km (no client coordinates: none).
    pub distance_km: Option<f64>,
    /// Expected round trip, ms.
    pub expected_ms: f64,
    /// Where the expectation came from: "measured AS-JP 12 s ago" or "distance estimate".
    pub source: String,
    /// Reported load (within its max_age).
    pub load: Option<f64>,
    /// Seconds since that load was measured.
    pub load_age_s: Option<f64>,
    /// A load report that aged out and no longer counts: `(load, seconds since it went
    /// stale)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_load: Option<(f64, f64)>,
    /// The loss rate of geosteer's own probes, as ranked (each point raises the score by
    /// ten per cent).
    pub probe_loss: f64,
    /// The node's weight: it divides the score, or (where the name spreads) sets the
    /// node's share of its group's draw.
    pub weight: u32,
    /// Health-derived availability.
    pub availability: Availability,
    /// Combined score (lower is better).
    pub score: f64,
}

/// The whole decision.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The steered name.
    pub name: String,
    /// The address located: the ECS subnet's, else the source's.
    pub client: String,
    /// Where the database put it.
    pub located: String,
    /// The measured prefix group the client is in, if any.
    pub group: Option<String>,
    /// The rule that matched, and why.
    pub rule: String,
    /// Fences that apply to this client.
    pub fences: Vec<String>,
    /// Candidates, best first.
    pub candidates: Vec<CandidateLine>,
    /// What an A query gets.
    pub answer_v4: Vec<String>,
    /// What an AAAA query gets.
    pub answer_v6: Vec<String>,
    /// Why the first answer is first.
    pub why: String,
    /// Where the answer spreads: the group and what this client's network draws from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<String>,
    /// The carrier lines of the answered nodes that have them, with their verdicts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

/// Why an explanation could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// No steered name of that name is served.
    #[error("'{0}' is not a steered name of any served zone")]
    UnknownName(String),
    /// The answer tables were built without their inputs (`check`, `diff`).
    #[error("these answer tables keep no inputs to explain")]
    NoInputs,
}

/// Live inputs; `None` fields mean "policy alone".
#[derive(Default)]
pub struct LiveState<'a> {
    /// Availability per node of the zone.
    pub availability: Option<&'a [Availability]>,
    /// Measurements of the zone.
    pub latency: Option<&'a ZoneLatency>,
    /// Hysteresis state, and the zone's index in it.
    pub damping: Option<(&'a DampingState, usize)>,
}

/// Explains the answer `name` gets for a client at `client` (an ECS subnet's address when
/// there is one).
// An explanation is of the moment it is asked: measurement ages are counted from now.
#[allow(clippy::disallowed_methods)]
pub fn explain<'a>(
    zones: &[Zone],
    geo: &GeoDb,
    name: &str,
    client: IpAddr,
    live_for: impl Fn(usize) -> LiveState<'a>,
) -> Result<Explanation, ExplainError> {
    let (zone_index, steered_index) = find_steered(zones, name)?;
    let zone = &zones[zone_index];
    let steered = &zone.steered[steered_index];
    let live = live_for(zone_index);
    let empty = ZoneLatency::default();
    let measured = live.latency.unwrap_or(&empty);
    let policy_availability: Vec<Availability> = zone
        .nodes
        .iter()
        .map(|n| Availability::of_policy(n.status))
        .collect();
    let availability = live.availability.unwrap_or(&policy_availability);
    let client = unmap(client);
    let located = geo.locate(client);
    let unlocated = Place {
        coordinates: steered.default.location,
        ..Place::default()
    };
    let place = located
        .place
        .and_then(|p| geo.places().get(p as usize))
        .unwrap_or(&unlocated);
    let case = Case {
        zone,
        steered,
        client,
        place,
        located: located.place.is_some(),
        group: measured.client_group(client),
        measured,
        availability,
        now: SystemTime::now(),
        spreads: false,
    };
    let (rule, rule_text, candidates) = case.rule();
    let case = Case {
        spreads: steered
            .row_spread(rule.unwrap_or(steered.rules.len()))
            .is_some(),
        ..case
    };
    let fences: Vec<&GeoSet> = steered
        .fences
        .iter()
        .filter(|f| case.located && f.matches(place))
        .collect();
    let keys = latency::group_keys(place, case.group.as_ref().map(|(_, g)| g));
    let ranked = rank(&zone.nodes, candidates, &fences, |id, node| {
        case.detail(id, node, &keys).3
    });
    let mut order: Vec<NodeId> = ranked.iter().map(|(id, _)| *id).collect();
    let by_score_top = order.first().copied();
    // Hysteresis, as the live tables hold it (the table's column for this client).
    let held = live.damping.and_then(|(damping, zi)| {
        let column = column_of(
            geo.places().len() + 1,
            located.place,
            case.group.as_ref().map(|(i, _)| *i),
        );
        let key = (
            zi,
            steered_index,
            rule.unwrap_or(steered.rules.len()),
            column,
        );
        let incumbent = damping.get(key)?;
        let at = order.iter().position(|n| *n == incumbent.node)?;
        (at > 0).then(|| {
            order[..=at].rotate_right(1);
            incumbent.node
        })
    });
    let lines: Vec<CandidateLine> = order.iter().map(|&id| case.line(id, &keys)).collect();
    let picks = [
        case.pick(&order, |n| n.first_v4().is_some()),
        case.pick(&order, |n| n.first_v6().is_some()),
    ];
    let why = case.why(held, by_score_top, &lines, &picks);
    let [answer_v4, answer_v6] = picks.map(|p| case.answer(&p));
    let asked = DomainName::parse(name)
        .map(|n| n.to_string())
        .unwrap_or_default();
    Ok(Explanation {
        name: if asked == steered.name.to_string() {
            asked
        } else {
            format!("{asked} (answered by the wildcard {})", steered.name)
        },
        client: client.to_string(),
        located: match located.place {
            Some(_) => format!("{place} (database network /{})", located.prefix_len),
            None => format!(
                "not in the database (network /{}); the `default` applies",
                located.prefix_len
            ),
        },
        group: case.group.as_ref().map(|(_, g)| g.to_string()),
        rule: rule_text,
        fences: fences.iter().map(|f| f.to_string()).collect(),
        candidates: lines,
        answer_v4,
        answer_v6,
        why,
        spread: None,
        lines: Vec::new(),
    })
}

/// The zone and steered-name indices of `name`.
/// The zone and steered-name indices of `name`: the steered name itself, else the steered
/// wildcard (`*.cust`) nearest above it that answers it (RFC 4592: no name of the zone
/// between them).
pub fn find_steered(zones: &[Zone], name: &str) -> Result<(usize, usize), ExplainError> {
    let wanted =
        DomainName::parse(name).map_err(|_| ExplainError::UnknownName(name.to_string()))?;
    let exact = zones.iter().enumerate().find_map(|(zi, z)| {
        z.steered
            .iter()
            .position(|s| s.name == wanted)
            .map(|si| (zi, si))
    });
    exact
        .or_else(|| wildcard_for(zones, &wanted))
        .ok_or_else(|| ExplainError::UnknownName(name.to_string()))
}

/// The steered wildcard answering `name`: `*.` its closest encloser, the nearest ancestor
/// the zone has a name at (or the zone's apex).
fn wildcard_for(zones: &[Zone], name: &DomainName) -> Option<(usize, usize)> {
    let (zi, zone) = zones
        .iter()
        .enumerate()
        .filter(|(_, z)| name.is_at_or_below(&z.origin) && *name != z.origin)
        .max_by_key(|(_, z)| z.origin.labels().len())?;
    let exists = |n: &DomainName| {
        zone.records.iter().any(|r| r.name == *n)
            || zone.steered.iter().any(|s| s.name.is_at_or_below(n))
            || zone.records.iter().any(|r| r.name.is_at_or_below(n))
    };
    let labels = name.labels();
    // Ancestors from the parent up to the apex: the first that exists is the closest
    // encloser.
    for skip in 1..labels.len() {
        let ancestor = DomainName::parse(&format!("{}.", labels[skip..].join("."))).ok()?;
        if ancestor == zone.origin || exists(&ancestor) {
            let wildcard = DomainName::parse(&format!("*.{ancestor}")).ok()?;
            return zone
                .steered
                .iter()
                .position(|s| s.name == wildcard)
                .map(|si| (zi, si));
        }
        if !ancestor.is_at_or_below(&zone.origin) {
            break;
        }
    }
    None
}

/// One client's case: the name, where the client is, and the live inputs.
struct Case<'a> {
    zone: &'a Zone,
    steered: &'a SteeredName,
    client: IpAddr,
    place: &'a Place,
    /// The database located the client.
    located: bool,
    group: Option<(usize, ClientGroup)>,
    measured: &'a ZoneLatency,
    availability: &'a [Availability],
    now: SystemTime,
    /// Whether the client's rule spreads its answers (weight then does not divide scores).
    spreads: bool,
}

impl<'a> Case<'a> {
    /// The rule, as the tables choose it: the first subnet rule, or the first geo rule, or
    /// the default; in words; and its candidates.
    fn rule(&self) -> (Option<usize>, String, &'a Candidates) {
        let steered = self.steered;
        let subnet_rule = steered
            .rules
            .iter()
            .position(|r| r.subnets.iter().any(|p| p.contains(self.client)));
        let geo_rule = match (self.located, &steered.default.candidates) {
            (false, Some(_)) => None,
            (false, None) => steered.rules.iter().rposition(|r| r.is_catch_all()),
            (true, _) => steered
                .rules
                .iter()
                .position(|r| r.is_catch_all() || r.geos.iter().any(|g| g.matches(self.place))),
        };
        let chosen = match (subnet_rule, geo_rule) {
            (Some(s), Some(g)) => Some(s.min(g)),
            (s, g) => s.or(g),
        };
        let Some(i) = chosen else {
            return match &steered.default.candidates {
                Some(c) => (None, "default (client not located)".to_string(), c),
                None => (
                    None,
                    "catch-all".to_string(),
                    &steered.rules[steered.rules.len() - 1].candidates,
                ),
            };
        };
        let r = &steered.rules[i];
        let why = if subnet_rule == Some(i) {
            let subnets: Vec<String> = r.subnets.iter().map(Prefix::to_string).collect();
            format!("client in {}", subnets.join(", "))
        } else if r.is_catch_all() {
            "catch-all".to_string()
        } else {
            let geos: Vec<String> = r.geos.iter().map(GeoCode::to_string).collect();
            format!("client in {}", geos.join(", "))
        };
        (Some(i), format!("rule {} ({why})", i + 1), &r.candidates)
    }

    /// A node's distance, expected round trip, load and score for this client.
    fn detail(
        &self,
        id: NodeId,
        node: &Node,
        keys: &[ClientGroup],
    ) -> (Option<f64>, Expected, Option<f64>, f64) {
        let distance = self
            .place
            .coordinates
            .map(|c| c.distance_km(&node.location));
        let (expected, score) = node_score(
            self.measured,
            id,
            node,
            distance,
            keys,
            self.now,
            (&self.steered.latency, self.spreads),
        );
        (
            distance,
            expected,
            self.measured.load(id, self.now, node.capacity.max_age),
            score,
        )
    }

    /// A candidate as the explanation lists it.
    fn line(&self, id: NodeId, keys: &[ClientGroup]) -> CandidateLine {
        let node = &self.zone.nodes[id];
        let (distance_km, expected, load, score) = self.detail(id, node, keys);
        let source = match &expected.measured {
            Some((group, m, age)) => format!(
                "measured {group}: {:.0} ms, loss {:.0} %, {} s ago",
                m.rtt_ms,
                m.loss * 100.0,
                age.as_secs()
            ),
            None if distance_km.is_some() => "distance estimate".to_string(),
            None => "no coordinates: list order".to_string(),
        };
        let max_age = node.capacity.max_age;
        let stale_load = (self.measured.loads.get(&id))
            .filter(|_| load.is_none())
            .or(self.measured.stale_loads.get(&id))
            .and_then(|l| {
                let went = l.at.checked_add(max_age)?;
                let since = self
                    .now
                    .duration_since(went)
                    .map_or(0.0, |d| d.as_secs_f64());
                Some((l.value, since))
            });
        CandidateLine {
            stale_load,
            node: node.name.clone(),
            tier: node.tier,
            distance_km,
            expected_ms: expected.rtt_ms,
            source,
            load,
            load_age_s: (self.measured.loads.get(&id))
                .filter(|_| load.is_some())
                .map(|l| {
                    self.now
                        .duration_since(l.at)
                        .map_or(0.0, |d| d.as_secs_f64())
                }),
            probe_loss: self.measured.probe_loss.get(&id).copied().unwrap_or(0.0),
            weight: node.weight,
            availability: self.state_of(id),
            score,
        }
    }

    fn state_of(&self, id: NodeId) -> Availability {
        self.availability
            .get(id)
            .copied()
            .unwrap_or(Availability::Up)
    }

    /// What the answer of one family picks from `order`.
    fn pick(&self, order: &[NodeId], eligible: fn(&Node) -> bool) -> Pick {
        let steered = self.steered;
        pick(
            order,
            &self.zone.nodes,
            self.availability,
            steered.answers,
            eligible,
            steered.all_down,
        )
    }

    /// A pick in words.
    fn answer(&self, p: &Pick) -> Vec<String> {
        if p.servfail {
            return vec!["SERVFAIL (all allowed nodes down, fail-closed)".to_string()];
        }
        p.nodes
            .iter()
            .map(|&id| self.zone.nodes[id].name.clone())
            .collect()
    }

    /// Why the first answer is first: the answer as it is, not as the ranking would have
    /// it (the first family that answers).
    fn why(
        &self,
        held: Option<NodeId>,
        by_score_top: Option<NodeId>,
        candidates: &[CandidateLine],
        picks: &[Pick; 2],
    ) -> String {
        let nodes = &self.zone.nodes;
        let first = candidates.first();
        let answered = picks.iter().find(|p| p.servfail || !p.nodes.is_empty());
        if answered.is_none() && !candidates.is_empty() {
            let out: Vec<&str> = (candidates.iter())
                .filter(|c| c.availability == Availability::AdminDown)
                .map(|c| c.node.as_str())
                .collect();
            if out.len() == candidates.len() {
                return format!(
                    "every node allowed for this client is drained or forced down ({}): the answer is empty (NOERROR without records); fail-open never brings back a node an operator took out",
                    out.join(", ")
                );
            }
        }
        let first_state = answered
            .and_then(|p| p.nodes.first())
            .map(|&id| self.state_of(id));
        match (held, by_score_top, first, answered) {
            (_, _, _, Some(p)) if p.servfail => {
                "every allowed node is down and the name fails closed: SERVFAIL".to_string()
            }
            _ if first_state == Some(Availability::HealthDown) => {
                "every allowed node is down; the name fails open, answering as if they were up"
                    .to_string()
            }
            _ if matches!(first_state, Some(Availability::Full(_))) => {
                "every allowed node that is up is full; the least loaded answer".to_string()
            }
            (Some(h), Some(best), _, _) => format!(
                "{} is held by hysteresis: {} scores better but not yet by {:.0} % for {} s",
                nodes[h].name,
                nodes[best].name,
                self.steered.latency.margin * 100.0,
                self.steered.latency.hold.as_secs()
            ),
            (None, _, Some(first), _) if !first.availability.answerable() => {
                let state = match first.availability {
                    Availability::Full(_) => "full",
                    Availability::AdminDown => "drained or administratively down",
                    _ => "down",
                };
                format!("{} is {state}; the answer skips it", first.node)
            }
            (None, _, Some(first), _) => {
                format!("{} has the lowest score ({:.1})", first.node, first.score)
            }
            _ => "no candidate survives the rule and fences".to_string(),
        }
    }
}

impl Explanation {
    /// The explanation in short, as the strings of a TXT record (`_explain.<name>` TXT):
    /// `seen` says which client was explained and how it was known, `instance` which
    /// server answered. Each string fits a TXT string (the encoder cuts at 255 octets).
    pub fn txt_strings(&self, seen: String, instance: &str) -> Vec<String> {
        let mut strings = vec![seen];
        if self.name.contains(" (answered by ") {
            strings.push(self.name.clone());
        }
        strings.extend([
            format!("located {}", self.located),
            format!(
                "{}; fences: {}",
                self.rule,
                if self.fences.is_empty() {
                    "none".into()
                } else {
                    self.fences.join(",")
                }
            ),
        ]);
        for (i, c) in self.candidates.iter().take(5).enumerate() {
            strings.push(format!(
                "{}. {} {:?} expect {:.0} ms ({}) {:?} score {:.1}",
                i + 1,
                c.node,
                c.tier,
                c.expected_ms,
                c.source,
                c.availability,
                c.score
            ));
        }
        strings.push(format!(
            "answer A: {} | AAAA: {}",
            self.answer_v4.join(","),
            self.answer_v6.join(",")
        ));
        strings.push(format!("why: {}", self.why));
        strings.extend(self.spread.iter().map(|s| format!("spread: {s}")));
        strings.extend(self.lines.iter().map(|l| format!("line: {l}")));
        strings.push(format!("instance {instance}"));
        strings
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "name:     {}", self.name)?;
        writeln!(f, "client:   {}", self.client)?;
        writeln!(f, "located:  {}", self.located)?;
        if let Some(g) = &self.group {
            writeln!(f, "group:    {g} (measured group)")?;
        }
        writeln!(f, "rule:     {}", self.rule)?;
        writeln!(
            f,
            "fences:   {}",
            if self.fences.is_empty() {
                "none".to_string()
            } else {
                self.fences.join(", ")
            }
        )?;
        writeln!(f, "candidates (best first):")?;
        for c in &self.candidates {
            let distance = c
                .distance_km
                .map_or("-".to_string(), |d| format!("{d:.0} km"));
            let mut load = match (c.load, c.load_age_s) {
                (Some(l), Some(age)) => format!(", load {:.0} % ({age:.0} s old)", l * 100.0),
                (Some(l), None) => format!(", load {:.0} %", l * 100.0),
                _ => String::new(),
            };
            if let Some((l, since)) = c.stale_load {
                load += &format!(
                    ", load {:.0} % stale {since:.0} s ago (not counted)",
                    l * 100.0
                );
            }
            if c.probe_loss > 0.0 {
                load += &format!(", probe loss {:.1} %", c.probe_loss * 100.0);
            }
            if c.weight != 1 {
                load += &format!(", weight {}", c.weight);
            }
            writeln!(
                f,
                "  {:<16} {:<6} {:>9}  expect {:>6.1} ms ({}{load})  {:?}  score {:.1}",
                c.node,
                format!("{:?}", c.tier).to_lowercase(),
                distance,
                c.expected_ms,
                c.source,
                c.availability,
                c.score
            )?;
        }
        writeln!(f, "answer A:    {}", self.answer_v4.join(", "))?;
        writeln!(f, "answer AAAA: {}", self.answer_v6.join(", "))?;
        if let Some(spread) = &self.spread {
            writeln!(f, "spread:   {spread}")?;
        }
        for line in &self.lines {
            writeln!(f, "line:     {line}")?;
        }
        write!(f, "why:      {}", self.why)
    }
}
