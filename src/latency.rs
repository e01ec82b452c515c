//! Latency: what geosteer expects a client group to see from each node, from measurements
//! where it has them and from distance where it does not, and the damping that keeps answers
//! from oscillating on noisy measurements.
//!
//! Everything here is pure: measurements and time are passed in, so scoring and hysteresis are
//! tested without clocks or networks. The publisher owns the state and calls these functions
//! when it re-ranks.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::geo::{CountryTable, GeoCode, Place};
use crate::net::Prefix;

/// Speed of light in fibre, km per millisecond (refractive index ~1.47).
pub const FIBRE_KM_PER_MS: f64 = 204.0;
/// How much longer real fibre routes are than the great circle (typically 1.3–2).
pub const ROUTE_FACTOR: f64 = 1.5;
/// Fixed round-trip overhead: last mile, queuing, serialisation, ms.
pub const FIXED_OVERHEAD_MS: f64 = 5.0;
/// Each unit of loss rate multiplies the latency by this much more (10 % loss → ×2).
pub const LOSS_PENALTY: f64 = 10.0;
/// Largest RTT a measurement may report, ms; anything above is a broken probe.
pub const MAX_RTT_MS: f64 = 10_000.0;

/// Expected round trip from great-circle distance: `2 × distance × ROUTE_FACTOR /
/// FIBRE_KM_PER_MS + FIXED_OVERHEAD_MS`. Tokyo–Singapore (5,300 km) → 83 ms.
pub fn estimate_rtt_ms(distance_km: f64) -> f64 {
    FIXED_OVERHEAD_MS + 2.0 * distance_km * ROUTE_FACTOR / FIBRE_KM_PER_MS
}

/// Who a measurement is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientGroup {
    /// Clients in a continent, country or subdivision, as a geo code (`AS`, `AS-JP`).
    Geo(GeoCode),
    /// Clients in an autonomous system (`AS4713`).
    Asn(u32),
    /// Clients in a prefix (`203.0.113.0/24`).
    Prefix(Prefix),
}

impl ClientGroup {
    /// Parses `AS-JP`, `EU`, `AS13335` or `198.51.100.0/24`.
    pub fn parse(text: &str, countries: &CountryTable) -> Result<ClientGroup, String> {
        if text.contains('/') {
            return text
                .parse()
                .map(ClientGroup::Prefix)
                .map_err(|e| e.to_string());
        }
        if let Some(digits) = text.strip_prefix("AS").or_else(|| text.strip_prefix("as"))
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            return digits
                .parse()
                .map(ClientGroup::Asn)
                .map_err(|_| format!("'{text}': AS number out of range"));
        }
        GeoCode::parse(text, countries)
            .map(ClientGroup::Geo)
            .map_err(|e| format!("{e}; a group is a geo code (AS-JP), an ASN (AS4713) or a prefix (203.0.113.0/24)"))
    }
}

impl fmt::Display for ClientGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientGroup::Geo(g) => write!(f, "{g}"),
            ClientGroup::Asn(n) => write!(f, "AS{n}"),
            ClientGroup::Prefix(p) => write!(f, "{p}"),
        }
    }
}

/// One measured round trip from a client group to a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Round trip, ms.
    pub rtt_ms: f64,
    /// Loss rate, 0..=1.
    pub loss: f64,
    /// When it was measured.
    pub at: SystemTime,
}

/// How measurements age and how answers are damped; per steered name.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyPolicy {
    /// A challenger must be this much better (a fraction: 0.2 = 20 % lower score)...
    pub margin: f64,
    /// ...for this long before a client group switches to it.
    pub hold: Duration,
    /// After this long a measurement counts for half as much (the rest is the estimate).
    pub half_life: Duration,
    /// After this long a measurement is ignored.
    pub max_age: Duration,
}

impl Default for LatencyPolicy {
    fn default() -> Self {
        LatencyPolicy {
            margin: 0.2,
            hold: Duration::from_secs(30),
            half_life: Duration::from_secs(120),
            max_age: Duration::from_secs(600),
        }
    }
}

/// What geosteer expects for one (client group, node), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// Expected round trip, ms, loss already folded in.
    pub rtt_ms: f64,
    /// The estimate from distance, ms (`None` without client coordinates).
    pub estimate_ms: Option<f64>,
    /// The measurement used, its group and its age, if any.
    pub measured: Option<(ClientGroup, Measurement, Duration)>,
}

/// Measurements of one zone, by node then group.
#[derive(Debug, Clone, Default)]
pub struct Measurements {
    by_node: HashMap<usize, HashMap<ClientGroup, Measurement>>,
}

impl Measurements {
    /// Records a measurement, replacing an older one of the same group and node.
    pub fn record(&mut self, node: usize, group: ClientGroup, m: Measurement) {
        let slot = self
            .by_node
            .entry(node)
            .or_default()
            .entry(group)
            .or_insert(m);
        if slot.at <= m.at {
            *slot = m;
        }
    }

    /// Drops measurements older than `max_age`.
    pub fn expire(&mut self, now: SystemTime, max_age: Duration) {
        for groups in self.by_node.values_mut() {
            groups.retain(|_, m| age(now, m.at) <= max_age);
        }
        self.by_node.retain(|_, g| !g.is_empty());
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }

    /// The same measurements with nodes renumbered (after a reload); nodes that map to
    /// `None` are gone and lose theirs.
    pub fn remap(&self, map: impl Fn(usize) -> Option<usize>) -> Measurements {
        Measurements {
            by_node: self
                .by_node
                .iter()
                .filter_map(|(node, groups)| map(*node).map(|n| (n, groups.clone())))
                .collect(),
        }
    }

    /// Every prefix and ASN group measured, sorted (prefixes first): each becomes an answer
    /// column of its own.
    pub fn column_groups(&self) -> Vec<ClientGroup> {
        let mut groups: Vec<ClientGroup> = self
            .by_node
            .values()
            .flat_map(|groups| groups.keys())
            .filter(|g| !matches!(g, ClientGroup::Geo(_)))
            .cloned()
            .collect();
        groups.sort_unstable_by_key(|g| (matches!(g, ClientGroup::Asn(_)), g.clone()));
        groups.dedup();
        groups
    }

    /// Every geo group (continent, country, subdivision) something is measured for.
    pub fn geo_groups(&self) -> std::collections::HashSet<ClientGroup> {
        self.by_node
            .values()
            .flat_map(|groups| groups.keys())
            .filter(|g| matches!(g, ClientGroup::Geo(_)))
            .cloned()
            .collect()
    }

    /// For each measured prefix or ASN group, the nodes measured for it.
    pub fn nodes_by_group(&self) -> HashMap<ClientGroup, Vec<usize>> {
        let mut out: HashMap<ClientGroup, Vec<usize>> = HashMap::new();
        for (&node, groups) in &self.by_node {
            for group in groups.keys().filter(|g| !matches!(g, ClientGroup::Geo(_))) {
                out.entry(group.clone()).or_default().push(node);
            }
        }
        out
    }

    /// The first live measurement of `node` among `keys` (most specific first).
    fn best(
        &self,
        node: usize,
        keys: &[ClientGroup],
        now: SystemTime,
        policy: &LatencyPolicy,
    ) -> Option<(ClientGroup, Measurement, Duration)> {
        let groups = self.by_node.get(&node)?;
        keys.iter().find_map(|key| {
            groups
                .get(key)
                .filter(|m| age(now, m.at) <= policy.max_age)
                .map(|m| (key.clone(), *m, age(now, m.at)))
        })
    }
}

/// The groups a client at `place` (in `group`, for a prefix or ASN column) belongs to, most
/// specific first: the keys measurements are looked up by. Computed once per column.
pub fn group_keys(place: &Place, group: Option<&ClientGroup>) -> Vec<ClientGroup> {
    let mut keys = Vec::with_capacity(4);
    if let Some(g) = group {
        keys.push(g.clone());
    }
    if let Some(continent) = place.continent {
        if let Some(country) = place.country {
            if place.subdivision.is_some() {
                keys.push(ClientGroup::Geo(GeoCode {
                    continent,
                    country: Some(country),
                    subdivision: place.subdivision.clone(),
                }));
            }
            keys.push(ClientGroup::Geo(GeoCode {
                continent,
                country: Some(country),
                subdivision: None,
            }));
        }
        keys.push(ClientGroup::Geo(GeoCode {
            continent,
            country: None,
            subdivision: None,
        }));
    }
    keys
}

fn age(now: SystemTime, at: SystemTime) -> Duration {
    now.duration_since(at).unwrap_or(Duration::ZERO)
}

/// Expected round trip from a client at `place` to a node at `distance_km`: the freshest
/// most specific measurement, weighted by its age against the distance estimate (half the
/// weight per `half_life`); the estimate alone without one.
pub fn expected(
    measurements: &Measurements,
    node: usize,
    keys: &[ClientGroup],
    distance_km: Option<f64>,
    now: SystemTime,
    policy: &LatencyPolicy,
) -> Expected {
    let measured = measurements.best(node, keys, now, policy);
    let blend = measured
        .as_ref()
        .map(|(_, m, age)| blend_of(m, *age, policy));
    Expected {
        rtt_ms: blended_rtt_ms(blend, distance_km),
        estimate_ms: distance_km.map(estimate_rtt_ms),
        measured,
    }
}

/// A measurement as it enters the expected latency: observed round trip with loss folded
/// in, and its weight against the estimate from its age.
fn blend_of(m: &Measurement, age: Duration, policy: &LatencyPolicy) -> (f64, f64) {
    let observed = m.rtt_ms * (1.0 + LOSS_PENALTY * m.loss);
    let weight = 0.5f64.powf(age.as_secs_f64() / policy.half_life.as_secs_f64().max(1e-3));
    (observed, weight)
}

/// The one formula behind [`expected`]: the measurement (observed, weight) blended with the
/// estimate from distance.
fn blended_rtt_ms(blend: Option<(f64, f64)>, distance_km: Option<f64>) -> f64 {
    match (blend, distance_km.map(estimate_rtt_ms)) {
        (Some((observed, weight)), Some(e)) => weight * observed + (1.0 - weight) * e,
        (Some((observed, _)), None) => observed,
        (None, Some(e)) => e,
        (None, None) => 0.0,
    }
}

/// Milliseconds added to a node's expected latency for its reported load: nothing below
/// 80 %, then 10 ms per point up to 200 ms at 100 %, and 1 s beyond. Additive, so a loaded
/// node first sheds the clients that have a near alternative, and at full load nearly all.
pub fn load_penalty_ms(load: Option<f64>) -> f64 {
    match load {
        None => 0.0,
        Some(l) if l < 0.8 => 0.0,
        Some(l) if l < 1.0 => 1000.0 * (l - 0.8),
        Some(_) => 1000.0,
    }
}

/// Combined score, lower is better: expected latency plus the load penalty, inflated by the
/// loss rate of geosteer's own probes, divided by weight.
pub fn score(expected_ms: f64, load: Option<f64>, probe_loss: f64, weight: u32) -> f64 {
    (expected_ms + load_penalty_ms(load)) * loss_factor(probe_loss) / f64::from(weight.max(1))
}

fn loss_factor(probe_loss: f64) -> f64 {
    1.0 + LOSS_PENALTY * probe_loss.clamp(0.0, 1.0)
}

/// A node's expected latency and score for a client `distance_km` away in groups `keys`:
/// what explanations show, the same numbers [`ScoreTerms`] ranks by.
pub fn node_score(
    measured: &ZoneLatency,
    id: usize,
    node: &crate::policy::Node,
    distance_km: Option<f64>,
    keys: &[ClientGroup],
    now: SystemTime,
    policy: &LatencyPolicy,
) -> (Expected, f64) {
    let expected = expected(&measured.measurements, id, keys, distance_km, now, policy);
    let score = score(
        expected.rtt_ms,
        measured.loads.get(&id).copied(),
        measured.probe_loss.get(&id).copied().unwrap_or(0.0),
        node.weight,
    );
    (expected, score)
}

/// Everything a node's score for clients in one set of groups depends on except distance:
/// found once per (node, groups), so that ranking a place costs a distance and
/// [`ScoreTerms::score`]. Gives exactly [`node_score`]'s numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreTerms {
    /// The measurement used: observed round trip and its weight against the estimate.
    blend: Option<(f64, f64)>,
    load_penalty_ms: f64,
    loss_factor: f64,
    divisor: f64,
}

impl ScoreTerms {
    /// The terms of node `id` for clients in groups `keys` (see [`group_keys`]).
    pub fn of(
        measured: &ZoneLatency,
        id: usize,
        node: &crate::policy::Node,
        keys: &[ClientGroup],
        now: SystemTime,
        policy: &LatencyPolicy,
    ) -> ScoreTerms {
        ScoreTerms {
            blend: measured
                .measurements
                .best(id, keys, now, policy)
                .map(|(_, m, age)| blend_of(&m, age, policy)),
            load_penalty_ms: load_penalty_ms(measured.loads.get(&id).copied()),
            loss_factor: loss_factor(measured.probe_loss.get(&id).copied().unwrap_or(0.0)),
            divisor: f64::from(node.weight.max(1)),
        }
    }

    /// The score for a client `distance_km` away. Never decreases with distance, so scores at
    /// the nearest and farthest possible distances bound a whole region's.
    pub fn score(&self, distance_km: Option<f64>) -> f64 {
        (blended_rtt_ms(self.blend, distance_km) + self.load_penalty_ms) * self.loss_factor
            / self.divisor
    }
}

/// The answer a client group currently sticks to, and a challenger being timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incumbent {
    /// The node at the top of the ranking.
    pub node: usize,
    /// A better node, and since when it has been better by the margin.
    pub challenger: Option<(usize, SystemTime)>,
}

/// Applies hysteresis to the top of a ranking. `ranked` is best first with `scores` aligned;
/// `same_class(a, b)` says two nodes may trade places (same tier and fallback level).
/// Keeps the incumbent on top until a challenger has been better by `margin` for `hold`.
pub fn damp(
    ranked: &mut [usize],
    scores: &[f64],
    state: &mut Option<Incumbent>,
    same_class: impl Fn(usize, usize) -> bool,
    now: SystemTime,
    policy: &LatencyPolicy,
) {
    let Some(&top) = ranked.first() else {
        *state = None;
        return;
    };
    let Some(current) = *state else {
        *state = Some(Incumbent {
            node: top,
            challenger: None,
        });
        return;
    };
    let Some(at) = ranked.iter().position(|&n| n == current.node) else {
        *state = Some(Incumbent {
            node: top,
            challenger: None,
        });
        return;
    };
    if at == 0 || !same_class(top, current.node) {
        *state = Some(Incumbent {
            node: top,
            challenger: None,
        });
        return;
    }
    let better_by_margin = scores[0] < scores[at] * (1.0 - policy.margin);
    let next = match (better_by_margin, current.challenger) {
        (true, Some((challenger, since)))
            if challenger == top && age(now, since) >= policy.hold =>
        {
            Incumbent {
                node: top,
                challenger: None,
            }
        }
        (true, Some((challenger, since))) if challenger == top => Incumbent {
            node: current.node,
            challenger: Some((challenger, since)),
        },
        (true, _) => Incumbent {
            node: current.node,
            challenger: Some((top, now)),
        },
        (false, _) => Incumbent {
            node: current.node,
            challenger: None,
        },
    };
    if next.node != top {
        // Keep the incumbent on top; the rest keeps its order.
        ranked[..=at].rotate_right(1);
    }
    *state = Some(next);
}

/// Everything measured about one zone's nodes: feed measurements, reported loads, and the
/// loss rate of geosteer's own probes.
#[derive(Debug, Clone, Default)]
pub struct ZoneLatency {
    /// Feed measurements.
    pub measurements: Measurements,
    /// Reported load per node, 0..=1.5.
    pub loads: HashMap<usize, f64>,
    /// Smoothed failure rate of health probes per node, 0..=1.
    pub probe_loss: HashMap<usize, f64>,
    /// The networks of each measured ASN group (from the ASN database).
    pub asn_networks: HashMap<u32, std::sync::Arc<[Prefix]>>,
    /// Measurements of single addresses of nodes reached over several lines.
    pub addresses: AddressMeasurements,
}

/// Measurements of individual node addresses (one per carrier line), by address then group.
#[derive(Debug, Clone, Default)]
pub struct AddressMeasurements {
    by_address: HashMap<std::net::IpAddr, HashMap<ClientGroup, Measurement>>,
}

impl AddressMeasurements {
    /// Records a measurement of one address, replacing an older one of the same group.
    pub fn record(&mut self, address: std::net::IpAddr, group: ClientGroup, m: Measurement) {
        let slot = self
            .by_address
            .entry(address)
            .or_default()
            .entry(group)
            .or_insert(m);
        if slot.at <= m.at {
            *slot = m;
        }
    }

    /// Drops measurements older than `max_age`.
    pub fn expire(&mut self, now: SystemTime, max_age: Duration) {
        for groups in self.by_address.values_mut() {
            groups.retain(|_, m| age(now, m.at) <= max_age);
        }
        self.by_address.retain(|_, g| !g.is_empty());
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// The expected round trip to `address` for a client in `keys` (most specific first),
    /// loss folded in; `None` without a live measurement.
    pub fn expected(
        &self,
        address: std::net::IpAddr,
        keys: &[ClientGroup],
        now: SystemTime,
        policy: &LatencyPolicy,
    ) -> Option<f64> {
        let groups = self.by_address.get(&address)?;
        keys.iter().find_map(|key| {
            groups
                .get(key)
                .filter(|m| age(now, m.at) <= policy.max_age)
                .map(|m| m.rtt_ms * (1.0 + LOSS_PENALTY * m.loss))
        })
    }
}

impl ZoneLatency {
    /// The answer columns of measured groups, in column order, with their networks (groups
    /// whose networks are unknown — an ASN without an ASN database — have none and are left
    /// out).
    pub fn group_columns(&self) -> Vec<(ClientGroup, Vec<Prefix>)> {
        self.measurements
            .column_groups()
            .into_iter()
            .map(|g| {
                let networks = self.networks_of(&g);
                (g, networks)
            })
            .filter(|(_, networks)| !networks.is_empty())
            .collect()
    }

    /// The group column a client falls in (longest network wins, then the earlier column),
    /// as `(index among group columns, group)`.
    pub fn client_group(&self, ip: std::net::IpAddr) -> Option<(usize, ClientGroup)> {
        self.group_columns()
            .into_iter()
            .enumerate()
            .filter_map(|(i, (g, networks))| {
                networks
                    .iter()
                    .filter(|n| n.contains(ip))
                    .map(|n| n.len)
                    .max()
                    .map(|len| (len, std::cmp::Reverse(i), g))
            })
            .max_by_key(|(len, i, _)| (*len, *i))
            .map(|(_, std::cmp::Reverse(i), g)| (i, g))
    }

    /// The networks a prefix or ASN group covers.
    pub fn networks_of(&self, group: &ClientGroup) -> Vec<Prefix> {
        match group {
            ClientGroup::Prefix(p) => vec![*p],
            ClientGroup::Asn(n) => self
                .asn_networks
                .get(n)
                .map(|n| n.to_vec())
                .unwrap_or_default(),
            ClientGroup::Geo(_) => Vec::new(),
        }
    }
}

/// A damped ranking cell: (zone, steered name, row, column).
pub type CellKey = (usize, usize, usize, usize);

/// Where each damped ranking cell stands. Dense per (zone, steered name, row), since a city
/// database gives every row hundreds of thousands of columns: four bytes per cell, and the
/// rare challengers being timed on the side.
#[derive(Debug, Clone, Default)]
pub struct DampingState {
    rows: HashMap<(usize, usize, usize), DampingRow>,
}

/// One row's incumbents, by column.
#[derive(Debug, Clone, Default)]
pub struct DampingRow {
    /// Column → its incumbent node; [`DampingRow::NONE`] for none.
    incumbents: Vec<u32>,
    /// Columns with a challenger being timed: (node, since).
    challengers: HashMap<usize, (usize, SystemTime)>,
}

impl DampingRow {
    /// No incumbent.
    const NONE: u32 = u32::MAX;

    /// A cell's incumbent, if it has one.
    pub fn get(&self, column: usize) -> Option<Incumbent> {
        let node = *self.incumbents.get(column)?;
        (node != Self::NONE).then(|| Incumbent {
            node: node as usize,
            challenger: self.challengers.get(&column).copied(),
        })
    }

    /// Sets or clears a cell's incumbent.
    pub fn set(&mut self, column: usize, state: Option<Incumbent>) {
        let node = state
            .and_then(|s| u32::try_from(s.node).ok())
            .unwrap_or(Self::NONE);
        if self.incumbents.len() <= column {
            if node == Self::NONE {
                return;
            }
            self.incumbents.resize(column + 1, Self::NONE);
        }
        self.incumbents[column] = node;
        match state.and_then(|s| s.challenger) {
            Some(challenger) => {
                self.challengers.insert(column, challenger);
            }
            None if !self.challengers.is_empty() => {
                self.challengers.remove(&column);
            }
            None => {}
        }
    }

    /// Keeps `columns` columns (a database or its groups may have changed).
    pub fn resize(&mut self, columns: usize) {
        self.incumbents.resize(columns, Self::NONE);
        self.challengers.retain(|&c, _| c < columns);
    }
}

impl DampingState {
    /// No cell has an incumbent yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cell's incumbent, if it has one.
    pub fn get(&self, (zone, steered, row, column): CellKey) -> Option<Incumbent> {
        self.rows.get(&(zone, steered, row))?.get(column)
    }

    /// Sets or clears a cell's incumbent.
    pub fn set(&mut self, (zone, steered, row, column): CellKey, state: Option<Incumbent>) {
        self.rows
            .entry((zone, steered, row))
            .or_default()
            .set(column, state);
    }

    /// Takes one row's incumbents out, to update them in one pass.
    pub fn take_row(&mut self, zone: usize, steered: usize, row: usize) -> DampingRow {
        self.rows.remove(&(zone, steered, row)).unwrap_or_default()
    }

    /// Puts a row's incumbents (back).
    pub fn put_row(&mut self, zone: usize, steered: usize, row: usize, cells: DampingRow) {
        self.rows.insert((zone, steered, row), cells);
    }

    /// Whether some cell has a challenger being timed.
    pub fn any_challenger(&self) -> bool {
        self.rows.values().any(|r| !r.challengers.is_empty())
    }
}

/// A feed batch as probe agents and beacons send it (also the watched file's format).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedBatch {
    /// Zone of entries that name none; optional when there is one zone.
    pub zone: Option<String>,
    /// Round trips.
    #[serde(default)]
    pub measurements: Vec<FeedMeasurement>,
    /// Node load reports.
    #[serde(default)]
    pub loads: Vec<FeedLoad>,
}

/// One round-trip report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedMeasurement {
    /// Zone of the node, when the batch names none or another.
    pub zone: Option<String>,
    /// `AS-JP`, `AS4713`, `203.0.113.0/24`.
    pub group: String,
    /// Node name.
    pub node: String,
    /// Round trip, ms.
    pub rtt_ms: f64,
    /// Loss rate 0..=1.
    #[serde(default)]
    pub loss: f64,
    /// When measured, seconds since 1970; now when absent.
    pub at: Option<f64>,
    /// The node address measured, for nodes reached over several lines; the node as a
    /// whole when absent.
    pub address: Option<String>,
}

/// One load report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedLoad {
    /// Zone of the node.
    pub zone: Option<String>,
    /// Node name.
    pub node: String,
    /// Fraction of capacity in use, 0..=1.5.
    pub load: f64,
}

/// Checks the values of a measurement that need no policy to judge.
pub fn check_values(
    rtt_ms: f64,
    loss: f64,
    at: Option<f64>,
    now: SystemTime,
    max_age: Duration,
) -> Result<SystemTime, String> {
    if !rtt_ms.is_finite() || rtt_ms <= 0.0 || rtt_ms > MAX_RTT_MS {
        return Err(format!(
            "rtt_ms {rtt_ms} is not a round trip (expected 0 < rtt_ms ≤ {MAX_RTT_MS})"
        ));
    }
    if !loss.is_finite() || !(0.0..=1.0).contains(&loss) {
        return Err(format!("loss {loss} is not a rate (expected 0..1)"));
    }
    let at = match at {
        None => now,
        Some(secs) if secs.is_finite() && secs >= 0.0 => {
            SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
        }
        Some(secs) => return Err(format!("at {secs} is not a time (seconds since 1970)")),
    };
    if at > now + Duration::from_secs(60) {
        return Err("at is in the future".into());
    }
    if age(now, at) > max_age {
        return Err(format!(
            "measurement is older than {} s and would be ignored",
            max_age.as_secs()
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{Coordinates, CountryTable};

    fn jp() -> Place {
        Place {
            continent: Some(*b"AS"),
            country: Some(*b"JP"),
            subdivision: None,
            coordinates: Coordinates::new(35.68, 139.69),
        }
    }

    fn group(s: &str) -> ClientGroup {
        ClientGroup::parse(s, CountryTable::shipped()).unwrap()
    }

    const NOW: Duration = Duration::from_secs(1_800_000_000);

    fn t(secs_before: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + NOW - Duration::from_secs(secs_before)
    }

    #[test]
    fn groups_parse() {
        assert!(matches!(group("AS-JP"), ClientGroup::Geo(_)));
        assert!(matches!(group("AS"), ClientGroup::Geo(_)));
        assert_eq!(group("AS4713"), ClientGroup::Asn(4713));
        assert!(matches!(group("203.0.113.0/24"), ClientGroup::Prefix(_)));
        assert!(ClientGroup::parse("XX-YY", CountryTable::shipped()).is_err());
        assert!(ClientGroup::parse("10.0.0.1/8", CountryTable::shipped()).is_err());
    }

    #[test]
    fn measurement_beats_distance() {
        let policy = LatencyPolicy::default();
        let mut m = Measurements::default();
        let now = t(0);
        let estimate = expected(&m, 0, &group_keys(&jp(), None), Some(5300.0), now, &policy);
        assert!((estimate.rtt_ms - 82.9).abs() < 1.0, "{estimate:?}");
        m.record(
            0,
            group("AS-JP"),
            Measurement {
                rtt_ms: 30.0,
                loss: 0.0,
                at: now,
            },
        );
        let fresh = expected(&m, 0, &group_keys(&jp(), None), Some(5300.0), now, &policy);
        assert!((fresh.rtt_ms - 30.0).abs() < 1e-9);
        // A broader measurement does not override a more specific one.
        m.record(
            0,
            group("AS"),
            Measurement {
                rtt_ms: 300.0,
                loss: 0.0,
                at: now,
            },
        );
        assert!(
            (expected(&m, 0, &group_keys(&jp(), None), Some(5300.0), now, &policy).rtt_ms - 30.0)
                .abs()
                < 1e-9
        );
        // Loss counts against a node.
        m.record(
            0,
            group("AS-JP"),
            Measurement {
                rtt_ms: 30.0,
                loss: 0.1,
                at: now,
            },
        );
        assert!(
            (expected(&m, 0, &group_keys(&jp(), None), Some(5300.0), now, &policy).rtt_ms - 60.0)
                .abs()
                < 1e-9
        );
    }

    #[test]
    fn stale_measurements_fade_back_to_distance() {
        let policy = LatencyPolicy::default();
        let mut m = Measurements::default();
        m.record(
            0,
            group("AS-JP"),
            Measurement {
                rtt_ms: 30.0,
                loss: 0.0,
                at: t(120),
            },
        );
        let half = expected(&m, 0, &group_keys(&jp(), None), Some(5300.0), t(0), &policy);
        assert!(
            (half.rtt_ms - (0.5 * 30.0 + 0.5 * estimate_rtt_ms(5300.0))).abs() < 0.01,
            "{half:?}"
        );
        let expired = expected(
            &m,
            0,
            &group_keys(&jp(), None),
            Some(5300.0),
            t(0) + Duration::from_secs(600),
            &policy,
        );
        assert!(expired.measured.is_none());
        assert!((expired.rtt_ms - estimate_rtt_ms(5300.0)).abs() < 1e-9);
        m.expire(t(0) + Duration::from_secs(600), policy.max_age);
        assert!(m.is_empty());
    }

    #[test]
    fn capacity_sheds_before_full() {
        assert_eq!(load_penalty_ms(Some(0.5)), 0.0);
        assert!((load_penalty_ms(Some(0.9)) - 100.0).abs() < 1e-9);
        assert_eq!(load_penalty_ms(Some(1.2)), 1000.0);
        // At 85 % only clients with a near alternative move; at 97 % farther ones too.
        assert!(score(20.0, Some(0.85), 0.0, 1) > score(60.0, Some(0.3), 0.0, 1));
        assert!(score(20.0, Some(0.85), 0.0, 1) < score(120.0, Some(0.3), 0.0, 1));
        assert!(score(20.0, Some(0.97), 0.0, 1) > score(120.0, Some(0.3), 0.0, 1));
        assert!(score(20.0, Some(0.5), 0.0, 1) < score(60.0, Some(0.3), 0.0, 1));
        // Weight divides the score; probe loss inflates it.
        assert!((score(100.0, None, 0.0, 2) - 50.0).abs() < 1e-9);
        assert!((score(100.0, None, 0.1, 1) - 200.0).abs() < 1e-9);
    }

    /// Incumbents are kept per cell, challengers with them, and cleared cells stay clear.
    #[test]
    fn damping_state_keeps_each_cell() {
        let mut state = DampingState::new();
        let held = Incumbent {
            node: 3,
            challenger: Some((5, t(10))),
        };
        state.set((0, 0, 1, 70_000), Some(held));
        state.set(
            (0, 0, 1, 2),
            Some(Incumbent {
                node: 4,
                challenger: None,
            }),
        );
        assert_eq!(state.get((0, 0, 1, 70_000)), Some(held));
        assert_eq!(state.get((0, 0, 1, 2)).map(|i| i.node), Some(4));
        assert_eq!(state.get((0, 0, 1, 3)), None);
        assert_eq!(state.get((0, 0, 0, 2)), None);
        assert!(state.any_challenger());
        let mut row = state.take_row(0, 0, 1);
        row.set(
            70_000,
            Some(Incumbent {
                node: 5,
                challenger: None,
            }),
        );
        state.put_row(0, 0, 1, row);
        assert!(!state.any_challenger());
        assert_eq!(
            state.get((0, 0, 1, 70_000)).map(|i| (i.node, i.challenger)),
            Some((5, None))
        );
        let mut row = state.take_row(0, 0, 1);
        row.resize(10);
        row.set(2, None);
        state.put_row(0, 0, 1, row);
        assert_eq!(state.get((0, 0, 1, 70_000)), None);
        assert_eq!(state.get((0, 0, 1, 2)), None);
    }

    #[test]
    fn hysteresis_prevents_oscillation() {
        let policy = LatencyPolicy {
            hold: Duration::from_secs(30),
            ..LatencyPolicy::default()
        };
        let same = |_: usize, _: usize| true;
        let mut state = None;
        let mut ranked = vec![0, 1];
        damp(
            &mut ranked,
            &[10.0, 11.0],
            &mut state,
            same,
            t(100),
            &policy,
        );
        assert_eq!(state.unwrap().node, 0);
        // Alternating inputs, each flip shorter than the hold: the answer never moves.
        for i in 0..20u64 {
            let (mut ranked, scores) = if i % 2 == 0 {
                (vec![1, 0], [5.0, 10.0])
            } else {
                (vec![0, 1], [10.0, 11.0])
            };
            damp(&mut ranked, &scores, &mut state, same, t(99 - i), &policy);
            assert_eq!(ranked[0], 0, "step {i}");
        }
        // Better by less than the margin: never switches, however long.
        for s in 0..100u64 {
            let mut ranked = vec![1, 0];
            damp(
                &mut ranked,
                &[9.0, 10.0],
                &mut state,
                same,
                t(70 - s.min(70)),
                &policy,
            );
            assert_eq!(ranked[0], 0);
        }
        // Better by the margin for the hold time: switches.
        let mut ranked = vec![1, 0];
        damp(&mut ranked, &[5.0, 10.0], &mut state, same, t(60), &policy);
        assert_eq!(ranked[0], 0, "challenger starts its clock");
        let mut ranked = vec![1, 0];
        damp(&mut ranked, &[5.0, 10.0], &mut state, same, t(30), &policy);
        assert_eq!(ranked[0], 1, "held for 30 s: switch");
        assert_eq!(state.unwrap().node, 1);
    }

    #[test]
    fn feed_values_are_checked() {
        let now = t(0);
        let max = Duration::from_secs(600);
        assert!(check_values(25.0, 0.0, None, now, max).is_ok());
        assert!(check_values(-1.0, 0.0, None, now, max).is_err());
        assert!(check_values(f64::NAN, 0.0, None, now, max).is_err());
        assert!(check_values(99_999.0, 0.0, None, now, max).is_err());
        assert!(check_values(25.0, 1.5, None, now, max).is_err());
        let future = NOW.as_secs_f64() + 3600.0;
        assert!(check_values(25.0, 0.0, Some(future), now, max).is_err());
        let old = NOW.as_secs_f64() - 3600.0;
        assert!(check_values(25.0, 0.0, Some(old), now, max).is_err());
    }
}
