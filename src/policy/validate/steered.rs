//! Steered names: placement, answers, pools and their fallbacks, rules, the default answer,
//! latency damping.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::Spanned;

use super::super::model::*;
use super::*;
use crate::geo::GeoSet;
use crate::net::Prefix;

/// Longest `hold`, `half_life` or `max_age`.
pub(super) const MAX_LATENCY_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Latency damping with defaults; errors reported, defaults used in their place.
pub(super) fn validate_latency(
    diag: &mut Diagnostics,
    raw: Option<&Spanned<RawLatency>>,
    context: &str,
) -> LatencyPolicy {
    let mut policy = LatencyPolicy::default();
    let Some(raw) = raw else {
        return policy;
    };
    if let Some(m) = &raw.value.margin {
        match &m.value.0 {
            Ok(v) if (0.0..1.0).contains(v) => policy.margin = *v,
            Ok(v) => diag.error(
                at(m),
                format!("{context}: latency: margin {v} must be at least 0 and below 1 (e.g. 20%)"),
            ),
            Err(e) => diag.error(at(m), format!("{context}: latency: margin: {e}")),
        }
    }
    for (field, value, slot) in [
        ("hold", &raw.value.hold, &mut policy.hold),
        ("half_life", &raw.value.half_life, &mut policy.half_life),
        ("max_age", &raw.value.max_age, &mut policy.max_age),
    ] {
        if let Some(v) = value {
            match &v.value.0 {
                Ok(d) if field != "hold" && d.is_zero() => diag.error(
                    at(v),
                    format!("{context}: latency: {field} must be longer than 0"),
                ),
                // Measurements older than a day describe another network; a day bounds
                // them all (and a hold longer than that would never let a better node in).
                Ok(d) if *d > MAX_LATENCY_DURATION => diag.error(
                    at(v),
                    format!("{context}: latency: {field} must be at most 24h (e.g. 30s, 2m, 10m)"),
                ),
                Ok(d) => *slot = *d,
                Err(e) => diag.error(at(v), format!("{context}: latency: {field}: {e}")),
            }
        }
    }
    policy
}

/// What every steered name of a zone is checked against.
pub(super) struct ZoneNames<'a> {
    pub origin: &'a DomainName,
    /// Names with static records.
    pub static_names: HashSet<&'a DomainName>,
    /// Delegation points (names with NS records).
    pub delegations: Vec<&'a DomainName>,
    /// Nodes in declaration order (`None` for a node with errors).
    pub nodes: &'a [Option<Node>],
    pub node_index: &'a HashMap<String, NodeId>,
    pub geo_names: &'a GeoNames<'a>,
}

impl<'a> ZoneNames<'a> {
    pub(super) fn new(
        origin: &'a DomainName,
        records: &'a [RecordSet],
        nodes: &'a [Option<Node>],
        node_index: &'a HashMap<String, NodeId>,
        geo_names: &'a GeoNames<'a>,
    ) -> Self {
        ZoneNames {
            origin,
            static_names: records.iter().map(|r| &r.name).collect(),
            delegations: records
                .iter()
                .filter(|s| s.record_type() == RecordType::NS)
                .map(|s| &s.name)
                .collect(),
            nodes,
            node_index,
            geo_names,
        }
    }
}

/// Every steered name of the zone; each error located and reported.
pub(super) fn validate_steered(
    diag: &mut Diagnostics,
    raw: &RawZone,
    zone: &ZoneNames,
) -> Vec<SteeredName> {
    let steered: Vec<SteeredName> = raw
        .steer
        .iter()
        .filter_map(|(relative, steer)| steered_name(diag, zone, relative, &steer.value))
        .collect();
    // Two keys may still name the same absolute name (`ingest` and `INGEST`).
    let mut seen = HashSet::new();
    for (s, (relative, _)) in steered.iter().zip(&raw.steer) {
        if !seen.insert(&s.name) {
            diag.error(
                relative.at,
                format!("steer '{relative}': '{}' is steered twice", s.name),
            );
        }
    }
    steered
}

/// One steered name, in phases: where it is, how it answers, its pools, rules and fences,
/// its default answer.
fn steered_name(
    diag: &mut Diagnostics,
    zone: &ZoneNames,
    relative: &Key,
    s: &RawSteer,
) -> Option<SteeredName> {
    let context = format!("steer '{relative}'");
    let name = placement(diag, zone, relative, &context)?;
    let ttl = s.ttl.as_ref().map_or(DEFAULT_STEER_TTL, |t| t.value);
    let answers = answer_count(diag, s, &context);
    let universe: Vec<NodeId> = match &s.nodes {
        Some(list) => node_ids(diag, list, zone.node_index, &format!("{context}: nodes")),
        None => (0..zone.node_index.len()).collect(),
    };
    if universe.is_empty() {
        diag.error(
            relative.at,
            format!("{context}: no candidate nodes; define `nodes:` in the zone"),
        );
    }
    let pools = Pools::new(diag, s, zone.node_index, &context);
    let spread = s
        .spread
        .as_ref()
        .and_then(|raw| spread(diag, raw, &context));
    let (rules, fences) = rules(diag, zone, (s, spread), &pools, &universe, &context);
    let default = default_answer(diag, zone, s, &pools, &context);
    let degraded_ttl = match &s.degraded_ttl {
        Some(d) if d.value > ttl => {
            diag.error(
                at(d),
                format!(
                    "{context}: degraded_ttl ({}) should be shorter than ttl ({ttl})",
                    d.value
                ),
            );
            None
        }
        Some(d) => Some(d.value),
        None => None,
    };
    let latency = validate_latency(diag, s.latency.as_ref(), &context);
    Some(SteeredName {
        name,
        ttl,
        answers,
        rules,
        fences,
        default,
        all_down: s.all_down.unwrap_or_default(),
        degraded_ttl,
        latency,
        spread,
    })
}

/// The most a spread margin may be: wider, and "about as near" stops meaning near.
const MAX_SPREAD_FRACTION: f64 = 1.0;
const MAX_SPREAD_MS: f64 = 1000.0;

/// `spread: {within: …}`: a percentage in (0, 100 %] or a time in (0, 1 s].
fn spread(
    diag: &mut Diagnostics,
    raw: &Spanned<crate::policy::raw::RawSpread>,
    context: &str,
) -> Option<SpreadWithin> {
    let within = &raw.value.within;
    match &within.value.0 {
        Ok(w @ SpreadWithin::Fraction(f)) if *f > 0.0 && *f <= MAX_SPREAD_FRACTION => Some(*w),
        Ok(w @ SpreadWithin::Milliseconds(ms)) if *ms > 0.0 && *ms <= MAX_SPREAD_MS => Some(*w),
        Ok(_) => {
            diag.error(
                at(within),
                format!("{context}: spread: within must be above 0 and at most 100% or 1000ms (e.g. 10% or 5ms)"),
            );
            None
        }
        Err(e) => {
            diag.error(at(within), format!("{context}: spread: within: {e}"));
            None
        }
    }
}

/// The steered name's absolute name; refused inside a delegation, beside static records
/// or as a misplaced wildcard.
fn placement(
    diag: &mut Diagnostics,
    zone: &ZoneNames,
    relative: &Key,
    context: &str,
) -> Option<DomainName> {
    let name = match zone.origin.child(&relative.name) {
        Ok(n) => n,
        Err(e) => {
            diag.error(relative.at, format!("{context}: {e}"));
            return None;
        }
    };
    if let Err(message) = wildcard_placement(&relative.name) {
        diag.error(relative.at, format!("{context}: {message}"));
        return None;
    }
    if zone.static_names.contains(&name) {
        diag.error(
            relative.at,
            format!("{context}: '{name}' also has static records; a steered name owns its A and AAAA answers, move the other records elsewhere"),
        );
    }
    if zone.delegations.iter().any(|cut| name.is_at_or_below(cut)) {
        diag.error(
            relative.at,
            format!("{context}: '{name}' is inside a delegation to another server"),
        );
    }
    Some(name)
}

/// Addresses per answer: 1 to `MAX_ANSWERS`.
fn answer_count(diag: &mut Diagnostics, s: &RawSteer, context: &str) -> usize {
    (match &s.answers {
        Some(a) if a.value == 0 => {
            diag.error(at(a), format!("{context}: answers must be at least 1"));
            1
        }
        Some(a) if a.value > MAX_ANSWERS => {
            diag.error(
                at(a),
                format!(
                    "{context}: answers {} is more than the {MAX_ANSWERS} addresses per family an answer may hold",
                    a.value
                ),
            );
            MAX_ANSWERS
        }
        Some(a) => a.value,
        None => DEFAULT_ANSWERS,
    }) as usize
}

/// A steered name's pools, and the candidates of a chain of fallbacks.
struct Pools<'a> {
    raw: &'a IndexMap<Key, Spanned<RawPool>>,
    nodes: HashMap<&'a str, Vec<NodeId>>,
    context: &'a str,
}

impl<'a> Pools<'a> {
    fn new(
        diag: &mut Diagnostics,
        s: &'a RawSteer,
        node_index: &HashMap<String, NodeId>,
        context: &'a str,
    ) -> Self {
        let mut nodes = HashMap::new();
        for (pool_name, pool) in &s.pools {
            let ids = node_ids(
                diag,
                &pool.value.nodes,
                node_index,
                &format!("{context}: pool '{pool_name}'"),
            );
            if pool.value.nodes.is_empty() {
                diag.error(
                    pool_name.at,
                    format!("{context}: pool '{pool_name}' has no nodes"),
                );
            }
            if let Some(fb) = &pool.value.fallback
                && !s.pools.contains_key(fb.value.as_str())
            {
                diag.error(
                    at(fb),
                    format!(
                        "{context}: pool '{pool_name}': fallback to unknown pool '{}'",
                        fb.value
                    ),
                );
            }
            nodes.insert(pool_name.name.as_str(), ids);
        }
        Pools {
            raw: &s.pools,
            nodes,
            context,
        }
    }

    /// The nodes of `start` and of its fallbacks in turn, each at its fallback level.
    fn chain(&self, diag: &mut Diagnostics, start: &Spanned<String>) -> Option<Candidates> {
        let context = self.context;
        if !self.raw.contains_key(start.value.as_str()) {
            let known: Vec<&str> = self.raw.keys().map(|k| k.name.as_str()).collect();
            diag.error(
                at(start),
                format!(
                    "{context}: unknown pool '{}' (pools: {})",
                    start.value,
                    known.join(", ")
                ),
            );
            return None;
        }
        let mut visited: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        let mut current = Some(start.value.as_str());
        while let Some(pool) = current {
            if visited.contains(&pool) {
                diag.error(
                    at(start),
                    format!(
                        "{context}: pool fallback loop: {} -> {pool}",
                        visited.join(" -> ")
                    ),
                );
                return None;
            }
            let level = visited.len().min(u8::MAX as usize) as u8;
            visited.push(pool);
            for id in self.nodes.get(pool).into_iter().flatten() {
                if !out.iter().any(|(n, _)| n == id) {
                    out.push((*id, level));
                }
            }
            current = self
                .raw
                .get(pool)
                .and_then(|p| p.value.fallback.as_ref())
                .map(|f| f.value.as_str())
                .filter(|f| self.raw.contains_key(*f));
        }
        Some(Candidates { nodes: out })
    }

    /// Candidates from a `pool:` or a `nodes:` list.
    fn candidates(
        &self,
        diag: &mut Diagnostics,
        pool: Option<&Spanned<String>>,
        nodes: Option<&Vec<Spanned<String>>>,
        node_index: &HashMap<String, NodeId>,
        context: &str,
    ) -> Chosen {
        match (pool, nodes) {
            (Some(_), Some(_)) => Chosen::Both,
            (Some(pool), None) => self.chain(diag, pool).map_or(Chosen::Bad, Chosen::Nodes),
            (None, Some(list)) => Chosen::Nodes(level0(node_ids(diag, list, node_index, context))),
            (None, None) => Chosen::Neither,
        }
    }
}

/// What a rule or the default answers from.
enum Chosen {
    /// The nodes of a pool chain or a list.
    Nodes(Candidates),
    /// A pool in error (reported).
    Bad,
    /// Both `pool` and `nodes`: an error, not reported yet.
    Both,
    /// Neither.
    Neither,
}

/// Candidates all at the first level.
fn level0(ids: Vec<NodeId>) -> Candidates {
    Candidates {
        nodes: ids.into_iter().map(|id| (id, 0)).collect(),
    }
}

/// The rules, first match wins, ending in a catch-all; and the fences among them, checked
/// against their nodes and against earlier rules.
fn rules(
    diag: &mut Diagnostics,
    zone: &ZoneNames,
    (s, name_spread): (&RawSteer, Option<SpreadWithin>),
    pools: &Pools,
    universe: &[NodeId],
    context: &str,
) -> (Vec<Rule>, Vec<GeoSet>) {
    let mut rules = Vec::new();
    let mut fences = Fences::default();
    let rule_count = s.rules.len();
    for (i, rule) in s.rules.iter().enumerate() {
        let rule_ctx = format!("{context}: rule {}", i + 1);
        let r = &rule.value;
        let geos = rule_geos(diag, zone.geo_names, r, &rule_ctx);
        let mut subnets = Vec::new();
        for p in &r.subnets {
            match p.value.parse::<Prefix>() {
                Ok(prefix) => subnets.push(prefix),
                Err(e) => diag.error(at(p), format!("{rule_ctx}: subnets: {e}")),
            }
        }
        let candidates = match pools.candidates(
            diag,
            r.pool.as_ref(),
            r.nodes.as_ref(),
            zone.node_index,
            &rule_ctx,
        ) {
            Chosen::Both => {
                let first = r.nodes.as_ref().and_then(|n| n.first());
                diag.error(
                    first.map_or(at(rule), at),
                    format!("{rule_ctx}: give either `pool` or `nodes`, not both"),
                );
                None
            }
            Chosen::Bad => None,
            Chosen::Neither => Some(level0(universe.to_vec())),
            Chosen::Nodes(c) => Some(c),
        };
        let is_catch_all = r.geos.is_empty() && r.subnets.is_empty();
        if is_catch_all && i + 1 < rule_count {
            diag.error(
                at(rule),
                format!(
                    "{rule_ctx}: matches every client, so rules after it never apply; put it last"
                ),
            );
        }
        if !is_catch_all && i + 1 == rule_count {
            diag.error(at(rule), format!("{rule_ctx}: the last rule must be a catch-all (`{{}}` or one naming only a pool) so every client gets an answer"));
        }
        if let Some(fence_flag) = r.fence.as_ref().filter(|f| f.value) {
            let fenced = FencedRule {
                index: i,
                flag: fence_flag,
                geos: &geos,
                candidates: candidates.as_ref(),
                context: &rule_ctx,
            };
            fences.add(diag, zone.nodes, fenced, r.geos.is_empty());
        }
        if let Some(candidates) = candidates {
            fences.reach(i, at(rule), &geos.codes, &candidates);
            let own = r
                .spread
                .as_ref()
                .and_then(|raw| spread(diag, raw, &rule_ctx));
            rules.push(Rule {
                geos: geos.codes,
                subnets,
                candidates,
                spread: own.or(name_spread),
            });
        }
    }
    fences.check_earlier_rules(diag, zone.nodes, context);
    if rules.is_empty() && rule_count == 0 {
        rules.push(Rule {
            geos: Vec::new(),
            subnets: Vec::new(),
            candidates: level0(universe.to_vec()),
            spread: name_spread,
        });
    }
    (rules, fences.sets)
}

/// Answer for clients the database cannot locate.
fn default_answer(
    diag: &mut Diagnostics,
    zone: &ZoneNames,
    s: &RawSteer,
    pools: &Pools,
    context: &str,
) -> DefaultAnswer {
    let Some(d) = &s.default else {
        return DefaultAnswer {
            candidates: None,
            location: None,
        };
    };
    let default_ctx = format!("{context}: default");
    let chosen = pools.candidates(
        diag,
        d.value.pool.as_ref(),
        d.value.nodes.as_ref(),
        zone.node_index,
        &default_ctx,
    );
    let candidates = match chosen {
        Chosen::Both => {
            diag.error(
                at(d),
                format!("{default_ctx}: give either `pool` or `nodes`, not both"),
            );
            None
        }
        Chosen::Nodes(c) => Some(c),
        Chosen::Bad | Chosen::Neither => None,
    };
    let location = d
        .value
        .location
        .as_ref()
        .and_then(|l| coordinates(diag, l, &format!("{default_ctx}: location")));
    DefaultAnswer {
        candidates,
        location,
    }
}
