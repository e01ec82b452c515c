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

use crate::geo::{CountryTable, GeoCode, Place};
use crate::net::Prefix;
use crate::policy::LatencyPolicy;

pub mod feed;

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
    pub(crate) fn best(
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

pub(crate) fn age(now: SystemTime, at: SystemTime) -> Duration {
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
pub(crate) fn blend_of(m: &Measurement, age: Duration, policy: &LatencyPolicy) -> (f64, f64) {
    let observed = m.rtt_ms * (1.0 + LOSS_PENALTY * m.loss);
    let weight = 0.5f64.powf(age.as_secs_f64() / policy.half_life.as_secs_f64().max(1e-3));
    (observed, weight)
}

/// The one formula behind [`expected`]: the measurement (observed, weight) blended with the
/// estimate from distance.
pub(crate) fn blended_rtt_ms(blend: Option<(f64, f64)>, distance_km: Option<f64>) -> f64 {
    match (blend, distance_km.map(estimate_rtt_ms)) {
        (Some((observed, weight)), Some(e)) => weight * observed + (1.0 - weight) * e,
        (Some((observed, _)), None) => observed,
        (None, Some(e)) => e,
        (None, None) => 0.0,
    }
}

/// Everything measured about one zone's nodes: feed measurements, reported loads, and the
/// loss rate of geosteer's own probes.
#[derive(Debug, Clone, Default)]
pub struct ZoneLatency {
    /// Feed measurements.
    pub measurements: Measurements,
    /// Reported load per node, the newest report's.
    pub loads: HashMap<usize, Load>,
    /// The last load of each node whose report aged out with no newer one since: shown
    /// (with when it went stale), never counted.
    pub stale_loads: HashMap<usize, Load>,
    /// Smoothed failure rate of health probes per node, 0..=1.
    pub probe_loss: HashMap<usize, f64>,
    /// The networks of each measured ASN group (from the ASN database).
    pub asn_networks: HashMap<u32, std::sync::Arc<[Prefix]>>,
    /// Measurements of single addresses of nodes reached over several lines.
    pub addresses: AddressMeasurements,
}

/// Measurements kept per zone at most (each node's groups, and each address's): every
/// prefix or AS group becomes an answer column of its own, so a feed of ever new groups
/// must not grow the tables without bound. Beyond it, the oldest go first.
pub const MAX_MEASUREMENTS: usize = 10_000;

/// Drops the oldest measurements of `map` until at most `keep` remain; how many went.
fn evict_oldest<K: Eq + std::hash::Hash + Clone>(
    map: &mut HashMap<K, HashMap<ClientGroup, Measurement>>,
    keep: usize,
) -> usize {
    let total: usize = map.values().map(HashMap::len).sum();
    if total <= keep {
        return 0;
    }
    let mut all: Vec<(SystemTime, K, ClientGroup)> = (map.iter())
        .flat_map(|(k, groups)| {
            groups
                .iter()
                .map(move |(g, m)| (m.at, k.clone(), g.clone()))
        })
        .collect();
    let excess = total - keep;
    all.select_nth_unstable_by_key(excess - 1, |(at, _, _)| *at);
    for (_, k, group) in &all[..excess] {
        if let Some(groups) = map.get_mut(k) {
            groups.remove(group);
        }
    }
    map.retain(|_, groups| !groups.is_empty());
    excess
}

/// A node's reported load and when it was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Fraction of capacity in use, 0..=1.5.
    pub value: f64,
    /// When it was measured.
    pub at: SystemTime,
}

impl ZoneLatency {
    /// Records a node's load unless a newer report is held (of two equally new ones, the
    /// higher load), so reporters applied in any order leave the same value; whether it
    /// was recorded.
    pub fn record_load(&mut self, node: usize, load: Load) -> bool {
        let newer = self.loads.get(&node).is_none_or(|held| {
            (load.at, load.value.total_cmp(&held.value)) > (held.at, std::cmp::Ordering::Equal)
        });
        if newer {
            self.loads.insert(node, load);
            self.stale_loads.remove(&node);
        }
        newer
    }

    /// Keeps at most [`MAX_MEASUREMENTS`] measurements (nodes' and addresses' together):
    /// past it, the oldest go, down to nine tenths of it, so a stream of new groups evicts
    /// in batches; how many went.
    pub fn bound(&mut self) -> usize {
        let nodes = self
            .measurements
            .by_node
            .values()
            .map(HashMap::len)
            .sum::<usize>();
        let addresses = (self.addresses.by_address.values())
            .map(HashMap::len)
            .sum::<usize>();
        if nodes + addresses <= MAX_MEASUREMENTS {
            return 0;
        }
        let keep = MAX_MEASUREMENTS * 9 / 10;
        // Shared in proportion, each side its oldest.
        let keep_nodes = keep * nodes / (nodes + addresses);
        evict_oldest(&mut self.measurements.by_node, keep_nodes)
            + evict_oldest(&mut self.addresses.by_address, keep - keep_nodes)
    }

    /// Drops loads older than their node's `max_age` (and those of nodes without one).
    pub fn expire_loads(&mut self, now: SystemTime, max_age: impl Fn(usize) -> Option<Duration>) {
        let stale = &mut self.stale_loads;
        self.loads.retain(|node, load| {
            let counts = max_age(*node).is_some_and(|max| age(now, load.at) <= max);
            if !counts && max_age(*node).is_some() {
                stale.insert(*node, *load);
            }
            counts
        });
        stale.retain(|node, _| max_age(*node).is_some());
    }

    /// A node's load as of `now`, if reported within `max_age`.
    pub fn load(&self, node: usize, now: SystemTime, max_age: Duration) -> Option<f64> {
        (self.loads.get(&node))
            .filter(|l| age(now, l.at) <= max_age)
            .map(|l| l.value)
    }
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

#[cfg(test)]
pub(crate) mod tests {
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

    /// A fixed "now" for tests of aging.
    pub(crate) const NOW: Duration = Duration::from_secs(1_800_000_000);

    /// `secs_before` seconds before [`NOW`].
    pub(crate) fn t(secs_before: u64) -> SystemTime {
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

    /// Reporters applied in any order leave the newest load (of two equally new, the
    /// higher); a load past its max_age counts no more and is dropped at expiry.
    #[test]
    fn the_newest_load_wins_and_old_ones_age_out() {
        let (older, newer) = (
            Load {
                value: 0.9,
                at: t(20),
            },
            Load {
                value: 0.3,
                at: t(10),
            },
        );
        for order in [[older, newer], [newer, older]] {
            let mut z = ZoneLatency::default();
            for load in order {
                z.record_load(0, load);
            }
            assert_eq!(z.loads[&0], newer);
        }
        let mut z = ZoneLatency::default();
        z.record_load(
            0,
            Load {
                value: 0.5,
                at: t(10),
            },
        );
        z.record_load(
            0,
            Load {
                value: 0.7,
                at: t(10),
            },
        );
        z.record_load(
            0,
            Load {
                value: 0.6,
                at: t(10),
            },
        );
        assert_eq!(z.loads[&0].value, 0.7);
        let minute = Duration::from_secs(60);
        assert_eq!(z.load(0, t(0), minute), Some(0.7));
        assert_eq!(z.load(0, t(0), Duration::from_secs(5)), None);
        z.expire_loads(t(0), |_| Some(minute));
        assert_eq!(z.loads.len(), 1);
        z.expire_loads(t(0) + minute, |_| Some(minute));
        assert!(z.loads.is_empty());
    }

    /// A feed of ever new groups keeps a zone within its cap: the oldest go first.
    #[test]
    fn measurements_are_capped_oldest_first() {
        let mut z = ZoneLatency::default();
        let total = MAX_MEASUREMENTS + 500;
        for i in 0..total {
            let prefix: Prefix = format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap();
            let m = Measurement {
                rtt_ms: 10.0,
                loss: 0.0,
                at: t(0) + Duration::from_secs(i as u64),
            };
            z.measurements.record(i % 3, ClientGroup::Prefix(prefix), m);
        }
        assert_eq!(z.bound(), total - MAX_MEASUREMENTS * 9 / 10);
        let kept: Vec<SystemTime> = (z.measurements.by_node.values())
            .flat_map(|g| g.values().map(|m| m.at))
            .collect();
        assert_eq!(kept.len(), MAX_MEASUREMENTS * 9 / 10);
        let oldest_kept = kept.iter().min().copied().unwrap();
        assert_eq!(
            oldest_kept,
            t(0) + Duration::from_secs((total - kept.len()) as u64)
        );
        assert_eq!(z.bound(), 0, "within the cap: nothing more goes");
    }
}
