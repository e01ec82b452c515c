//! The pure builder: validated zones + a GeoIP database → a `Snapshot`.
//!
//! All the work a query must not do happens here: record encoding, rule matching per place,
//! fence filtering, ranking, and interning of identical answers. Building has no side effects,
//! so a snapshot can be built, inspected and thrown away (as `check` and failed reloads do).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::CLASS_SPLIT;
use super::rank::{
    Candidate, RankedStart, Starts, damp_start, points_of, promoted, rank_points,
    release_free_memory, start_at,
};
use super::*;
use crate::dns::wire::{name_key, push_body, rdata, soa_rdata};
use crate::geo::{AddressMap, GeoCode, Place, UnitVector};
use crate::latency::{self, ClientGroup, DampingState, ScoreTerms, ZoneLatency};
use crate::net::Prefix;
use crate::policy::Tier;
use crate::policy::{
    Candidates, DomainName, Node, RecordData, RecordSet, RecordType, SteeredName, Zone,
};
use crate::scoring::{Availability, Pick, pick, rank_key_base};
use std::net::IpAddr;
use std::time::SystemTime;

/// Builds the snapshot for a set of zones against a database, from rankings made by
/// [`rank_all`] for the same zones and database, with each node's availability
/// (`availability[zone][node]`; missing entries count as up).
pub fn build(
    zones: &[Zone],
    geo: Arc<GeoDb>,
    rankings: &Rankings,
    availability: &[Vec<Availability>],
) -> Snapshot {
    let mut built: Vec<ZoneAnswers> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            build_zone(
                i,
                z,
                rankings.zones.get(i).map_or(&[][..], Vec::as_slice),
                availability.get(i).map_or(&[][..], Vec::as_slice),
                &geo,
            )
        })
        .collect();
    built.sort_by_key(|z| std::cmp::Reverse(z.origin.len()));
    Snapshot {
        zones: built,
        geo,
        asn: None,
        explain: None,
        zone_counters: Arc::default(),
    }
}

fn encode_rrset(set: &RecordSet) -> EncodedRrset {
    let rtype = set.record_type();
    EncodedRrset {
        rtype: rtype.0,
        bodies: set
            .data
            .iter()
            .map(|d| {
                let mut body = Vec::new();
                push_body(&mut body, rtype, set.ttl, &rdata(d));
                body.into_boxed_slice()
            })
            .collect(),
    }
}

/// Availability from the policy alone: administrative `down` is down, everything else up.
pub fn policy_availability(zones: &[Zone]) -> Vec<Vec<Availability>> {
    zones
        .iter()
        .map(|z| {
            z.nodes
                .iter()
                .map(|n| match n.status {
                    crate::policy::AdminStatus::Down => Availability::AdminDown,
                    _ => Availability::Up,
                })
                .collect()
        })
        .collect()
}

fn build_zone(
    index: usize,
    zone: &Zone,
    rankings: &[SteeredRanking],
    availability: &[Availability],
    geo: &GeoDb,
) -> ZoneAnswers {
    let origin = name_key(&zone.origin);
    let soa_rdata = soa_rdata(&zone.soa);
    let mut soa = Vec::new();
    push_body(&mut soa, RecordType::SOA, zone.soa.ttl, &soa_rdata);
    let mut negative_soa = Vec::new();
    push_body(
        &mut negative_soa,
        RecordType::SOA,
        zone.soa.negative_ttl(),
        &soa_rdata,
    );

    let mut static_sets: HashMap<Box<[u8]>, Vec<EncodedRrset>> = HashMap::new();
    let apex_ns = RecordSet {
        name: zone.origin.clone(),
        ttl: zone.default_ttl,
        data: zone.ns.iter().cloned().map(RecordData::Ns).collect(),
    };
    static_sets.entry(origin.clone()).or_default().extend([
        EncodedRrset {
            rtype: RecordType::SOA.0,
            bodies: vec![soa.clone().into_boxed_slice()],
        },
        encode_rrset(&apex_ns),
    ]);

    let mut delegations = HashMap::new();
    for set in &zone.records {
        if set.record_type() == RecordType::NS {
            delegations.insert(name_key(&set.name), delegation(set, &zone.records));
        } else {
            static_sets
                .entry(name_key(&set.name))
                .or_default()
                .push(encode_rrset(set));
        }
    }

    let mut names: HashMap<Box<[u8]>, NameNode> = static_sets
        .into_iter()
        .map(|(k, v)| (k, NameNode::Static(v)))
        .collect();
    for (steered, ranking) in zone.steered.iter().zip(rankings) {
        names.insert(
            name_key(&steered.name),
            NameNode::Steered(build_steered(
                steered,
                ranking,
                &zone.nodes,
                availability,
                geo,
            )),
        );
    }

    // Every name between an existing name and the apex exists too (RFC 8020): NODATA there.
    let mut ancestors = BTreeSet::new();
    let owners: Vec<DomainName> = zone
        .records
        .iter()
        .map(|r| r.name.clone())
        .chain(zone.steered.iter().map(|s| s.name.clone()))
        .collect();
    for owner in owners {
        let mut current = owner.parent();
        while let Some(name) = current {
            if !name.is_at_or_below(&zone.origin) || name == zone.origin {
                break;
            }
            current = name.parent();
            ancestors.insert(name);
        }
    }
    for name in ancestors {
        names
            .entry(name_key(&name))
            .or_insert(NameNode::EmptyNonTerminal);
    }

    ZoneAnswers {
        index,
        origin,
        names,
        delegations,
        soa: soa.into_boxed_slice(),
        negative_soa: negative_soa.into_boxed_slice(),
    }
}

/// A referral: the NS set and, for each NS target we hold addresses for, its glue.
fn delegation(ns: &RecordSet, records: &[RecordSet]) -> Delegation {
    let glue = ns
        .data
        .iter()
        .map(|d| match d {
            RecordData::Ns(target) => records
                .iter()
                .filter(|r| {
                    r.name == *target && matches!(r.record_type(), RecordType::A | RecordType::AAAA)
                })
                .flat_map(|r| encode_rrset(r).bodies)
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    Delegation {
        ns: encode_rrset(ns),
        glue,
    }
}

/// Node rankings of one steered name: `rows[row][column]` → class, rows being its rules and
/// then the `default` pseudo-rule, columns the database's places, the unlocated pseudo-place
/// and the measured prefix groups. They depend on policy, geography and measurements, not on
/// health, so they are computed once per load or latency change, and a health change only
/// re-picks from them: once per class, not per cell.
#[derive(Debug, PartialEq)]
struct SteeredRanking {
    /// Distinct (ranking start, lines): a city database has hundreds of thousands of places
    /// but a fleet only so many distinct starts.
    classes: Vec<Class>,
    /// `[row][column]` → index into `classes`; shared with every table built from it.
    rows: Arc<Vec<Vec<u32>>>,
    /// Per row, the classes it uses, once each: whether a row's answer varies by place.
    row_classes: Vec<Vec<u32>>,
    /// The classes of the cells located clients get without a subnet rule
    /// (`rows[geo_rule[column]][column]`), once each.
    effective_classes: Vec<u32>,
    geo_rule: Arc<[u16]>,
    subnets: Arc<SubnetRules>,
    groups: Arc<SubnetRules>,
    place_columns: usize,
    /// Classes grouped by how their starts begin (the first `answers + 2` of each family):
    /// what the address table tells apart, and what decides most answers at once.
    heads: Vec<Class>,
    /// Class → its head.
    head_of_class: Vec<u32>,
    /// Address → the head of the class a client there gets without a subnet rule or group.
    located_heads: Arc<AddressMap>,
    /// What ranks a cell in full, for classes whose start cannot decide.
    full: FullRanking,
}

/// Cells whose rankings start alike: the same answer unless many of those nodes are down.
#[derive(Debug, PartialEq)]
struct Class {
    start: RankedStart,
    lines: Lines,
}

/// How many nodes of each family beyond the answer size a class holds: enough that losing
/// a couple of the nearest rarely leaves a class unable to decide.
const START_SLACK: usize = 2;

/// Rows of at most this many candidates keep whole rankings in their classes, so no number
/// of failures leaves a class unable to decide (a small fleet can lose most of its nodes).
const WHOLE_RANKING_NODES: usize = 16;

/// What a cell's whole ranking comes from when its class's start cannot decide (more of its
/// nodes down than the slack): kept, since that is rare, rather than stored per cell.
#[derive(Debug, PartialEq)]
struct FullRanking {
    /// Row → its candidate group: rows with the same candidates share one.
    row_group: Vec<usize>,
    /// `[group][profile]` → the nodes allowed there, with their scoring terms.
    candidates: Vec<Vec<Vec<Candidate>>>,
    /// Column → profile.
    column_profile: Vec<u32>,
    /// Positions of the columns after the database's places (unlocated, groups).
    extra_positions: Vec<Option<UnitVector>>,
    /// Columns not in the database's Morton order (places without coordinates, and the
    /// columns after the places), which are ranked one by one.
    one_by_one: Vec<usize>,
}

impl FullRanking {
    /// Where the clients of a column are.
    fn position(&self, column: usize, geo: &GeoDb) -> Option<UnitVector> {
        match geo.places().get(column) {
            Some(place) => place.coordinates.map(|c| UnitVector::of(&c)),
            None => self
                .extra_positions
                .get(column - geo.places().len())
                .copied()
                .flatten(),
        }
    }

    fn candidates(&self, row: usize, column: usize) -> &[Candidate] {
        let group = self.row_group.get(row).copied().unwrap_or(0);
        let profile = self.column_profile.get(column).copied().unwrap_or(0) as usize;
        self.candidates
            .get(group)
            .and_then(|g| g.get(profile))
            .map_or(&[], Vec::as_slice)
    }

    /// Each column's start among the healthy nodes only, for the columns in `needed` of one
    /// candidate group: deep enough (`depth`) that with a class's start it holds all of a
    /// cell's ranking a pick reads, whatever is down. Ranked by region like the rankings.
    fn healthy_starts(
        &self,
        group: usize,
        needed: &[bool],
        health: &Health,
        depth: usize,
        geo: &GeoDb,
    ) -> (Starts, Vec<u32>) {
        let healthy: Vec<Vec<Candidate>> = self
            .candidates
            .get(group)
            .map(|profiles| {
                profiles
                    .iter()
                    .map(|list| list.iter().copied().filter(|c| health.up(c.id)).collect())
                    .collect()
            })
            .unwrap_or_default();
        let mut starts = Starts::default();
        let mut out = vec![0u32; needed.len()];
        let points = points_of(geo, &self.column_profile, healthy.len(), Some(needed));
        for (profile, points) in points.iter().enumerate() {
            if !points.is_empty() {
                rank_points(points, &healthy[profile], depth, &mut starts, &mut out);
            }
        }
        for &column in self
            .one_by_one
            .iter()
            .filter(|&&c| needed.get(c) == Some(&true))
        {
            let profile = self.column_profile.get(column).copied().unwrap_or(0) as usize;
            let list = healthy.get(profile).map_or(&[][..], Vec::as_slice);
            let start = start_at(list, self.position(column, geo).as_ref(), depth);
            out[column] = starts.intern(&start);
        }
        (starts, out)
    }
}

/// `head_answer` while it is being built.
const HEAD_UNSET: u32 = u32::MAX - 1;

/// The answer of each (split class, healthy start) pair met so far: cells of one pair have
/// one answer. A dense table when the pairs fit in a few megabytes (the usual case: hundreds
/// of thousands of cells, a few thousand pairs), else a map.
enum PairAnswers {
    Dense {
        /// Class → its row in `answers`, for split classes.
        row_of_class: Vec<u32>,
        healthy_starts: usize,
        answers: Vec<u32>,
    },
    Sparse(FxHashMap<(u32, u32), u32>),
}

impl PairAnswers {
    /// Entries of a dense table at most (4 bytes each).
    const DENSE_ENTRIES: usize = 1 << 20;

    fn new(class_answer: &[u32], healthy_starts: usize) -> Self {
        let mut row_of_class = vec![u32::MAX; class_answer.len()];
        let mut rows = 0usize;
        for (row, &answer) in row_of_class.iter_mut().zip(class_answer) {
            if answer == CLASS_SPLIT {
                *row = rows as u32;
                rows += 1;
            }
        }
        match rows.checked_mul(healthy_starts) {
            Some(entries) if entries <= Self::DENSE_ENTRIES => PairAnswers::Dense {
                row_of_class,
                healthy_starts,
                answers: vec![HEAD_UNSET; entries],
            },
            _ => PairAnswers::Sparse(FxHashMap::default()),
        }
    }

    /// The pair's answer, from `pick` the first time.
    fn get(&mut self, class: u32, healthy_start: u32, pick: impl FnOnce() -> u32) -> u32 {
        match self {
            PairAnswers::Dense {
                row_of_class,
                healthy_starts,
                answers,
            } => {
                let row = row_of_class
                    .get(class as usize)
                    .copied()
                    .unwrap_or(u32::MAX);
                let at = row as usize * *healthy_starts + healthy_start as usize;
                match answers.get_mut(at) {
                    Some(slot) if *slot == HEAD_UNSET => {
                        *slot = pick();
                        *slot
                    }
                    Some(slot) => *slot,
                    None => pick(),
                }
            }
            PairAnswers::Sparse(map) => *map.entry((class, healthy_start)).or_insert_with(pick),
        }
    }
}

/// What a pick reads besides the ranking: the nodes, their availability, the answer size.
struct Health<'a> {
    nodes: &'a [Node],
    availability: &'a [Availability],
    answers: usize,
}

impl Health<'_> {
    fn up(&self, id: NodeId) -> bool {
        self.availability
            .get(id)
            .copied()
            .unwrap_or(Availability::Up)
            == Availability::Up
    }

    fn backup(&self, id: NodeId) -> bool {
        self.nodes.get(id).is_some_and(|n| n.tier == Tier::Backup)
    }

    /// Whether a family's start decides its pick as a pick over the whole ranking would:
    /// it holds every eligible node, or enough healthy primaries to stop a pick early, or
    /// (primaries all being ranked before backups) enough healthy backups after them.
    fn decided_by(&self, start: &RankedStart, family: usize) -> bool {
        let listed = &start.families[family];
        let healthy = |backup: bool| {
            listed
                .iter()
                .filter(|&&id| self.up(id) && self.backup(id) == backup)
                .count()
        };
        start.complete[family]
            || healthy(false) >= self.answers
            || (listed.iter().any(|&id| self.backup(id)) && healthy(true) >= self.answers)
    }
}

/// What makes classes one: a start, and the lines (by identity: they are interned).
type ClassKey = (u32, *const (NodeId, IpAddr));

/// For one column: nodes answered with another address than their first of the family.
type Lines = Arc<[(NodeId, IpAddr)]>;

/// Which nodes can answer each family: those with an address of it.
const FAMILY_ELIGIBLE: [fn(&Node) -> bool; 2] =
    [|n| n.first_v4().is_some(), |n| n.first_v6().is_some()];

/// Rankings of every steered name of every zone, in policy order.
#[derive(Debug, PartialEq)]
pub struct Rankings {
    zones: Vec<Vec<SteeredRanking>>,
}

/// Ranks every candidate list for every place: the expensive part of building, done once per
/// load and again only when latency measurements, loads or their age change it — never for
/// a health change. `latency[zone]` holds what is measured (missing: nothing); `damping`
/// carries each cell's incumbent from one ranking to the next.
pub fn rank_all(
    zones: &[Zone],
    geo: &GeoDb,
    latency: &[ZoneLatency],
    damping: &mut DampingState,
    now: SystemTime,
) -> Rankings {
    let empty = ZoneLatency::default();
    let rankings = Rankings {
        zones: zones
            .iter()
            .enumerate()
            .map(|(zi, z)| {
                let measured = latency.get(zi).unwrap_or(&empty);
                z.steered
                    .iter()
                    .enumerate()
                    .map(|(si, s)| {
                        let cell = Cell {
                            zone: zi,
                            steered: si,
                        };
                        rank_steered(s, &z.nodes, geo, measured, damping, cell, now)
                    })
                    .collect()
            })
            .collect(),
    };
    release_free_memory();
    rankings
}

/// Which steered name a ranking belongs to, for damping state keys.
#[derive(Clone, Copy)]
struct Cell {
    zone: usize,
    steered: usize,
}

/// What a place's candidates and scores depend on besides its position: the fences it is
/// inside, and the groups it belongs to that something is measured for.
type ProfileKey = (Vec<bool>, Vec<ClientGroup>);

/// Places alike in everything but position (see [`ProfileKey`]).
struct Profile {
    /// Indices of the fences its clients are inside.
    fences: Vec<usize>,
    /// The groups of its clients, most specific first.
    keys: Vec<ClientGroup>,
}

fn rank_steered(
    steered: &SteeredName,
    nodes: &[Node],
    geo: &GeoDb,
    measured: &ZoneLatency,
    damping: &mut DampingState,
    cell: Cell,
    now: SystemTime,
) -> SteeredRanking {
    let rule_count = steered.rules.len();
    let catch_all = steered
        .rules
        .iter()
        .rposition(|r| r.is_catch_all())
        .unwrap_or(rule_count.saturating_sub(1));
    let default_candidates: &Candidates = steered
        .default
        .candidates
        .as_ref()
        .unwrap_or(&steered.rules[catch_all].candidates);
    // Rows: the rules, then the `default` pseudo-rule.
    let row_candidates: Vec<&Candidates> = steered
        .rules
        .iter()
        .map(|r| &r.candidates)
        .chain(std::iter::once(default_candidates))
        .collect();
    // Rows with the same candidates (the default pseudo-rule repeats the catch-all) rank
    // alike before damping: ranked once.
    let row_group: Vec<usize> = row_candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            row_candidates[..i]
                .iter()
                .position(|earlier| std::ptr::eq(*earlier, *c))
                .unwrap_or(i)
        })
        .collect();

    // Columns: the database's places, the unlocated pseudo-place, then every measured prefix
    // group, which stands where the database puts its network address.
    let unlocated = Place {
        coordinates: steered.default.location,
        ..Place::default()
    };
    let places = geo.places();
    let place_columns = places.len() + 1;
    let groups: Vec<(ClientGroup, Vec<Prefix>)> = measured.group_columns();
    let extra_columns: Vec<(&Place, Option<&ClientGroup>)> = std::iter::once((&unlocated, None))
        .chain(groups.iter().map(|(group, networks)| {
            let located = geo.locate(networks[0].network());
            let place = located
                .place
                .and_then(|id| places.get(id as usize))
                .unwrap_or(&unlocated);
            (place, Some(group))
        }))
        .collect();
    let column_count = places.len() + extra_columns.len();
    let place_of = |column: usize| -> (&Place, Option<&ClientGroup>) {
        match places.get(column) {
            Some(place) => (place, None),
            None => extra_columns[column - places.len()],
        }
    };
    let head_depth = steered.answers + START_SLACK;
    let widest_row = row_candidates
        .iter()
        .map(|c| c.nodes.len())
        .max()
        .unwrap_or(0);
    let depth = if widest_row <= WHOLE_RANKING_NODES {
        widest_row.max(head_depth)
    } else {
        head_depth
    };

    // Profiles. A place's fences and measured groups follow from its continent, country and
    // subdivision, so they are worked out once per region code, not per place.
    let measured_geo = measured.measurements.geo_groups();
    let mut profiles: Vec<Profile> = Vec::new();
    let mut profile_by_key: HashMap<ProfileKey, u32> = HashMap::new();
    let mut new_profile = |place: &Place, group: Option<&ClientGroup>, located: bool| -> u32 {
        let inside: Vec<bool> = steered
            .fences
            .iter()
            .map(|f| located && f.matches(place))
            .collect();
        let keys = latency::group_keys(place, group);
        let measured_keys: Vec<ClientGroup> = keys
            .iter()
            .filter(|k| !matches!(k, ClientGroup::Geo(_)) || measured_geo.contains(*k))
            .cloned()
            .collect();
        *profile_by_key
            .entry((inside.clone(), measured_keys))
            .or_insert_with(|| {
                profiles.push(Profile {
                    fences: (0..inside.len()).filter(|&i| inside[i]).collect(),
                    keys,
                });
                (profiles.len() - 1) as u32
            })
    };
    // The first rule a located client matches follows from the same codes.
    let rule_of = |place: &Place| -> u16 {
        let rule = if std::ptr::eq(place, &unlocated) {
            if steered.default.candidates.is_some() {
                rule_count
            } else {
                catch_all
            }
        } else {
            steered
                .rules
                .iter()
                .position(|r| r.is_catch_all() || r.geos.iter().any(|g| g.matches(place)))
                .unwrap_or(catch_all)
        };
        rule.min(u16::MAX as usize) as u16
    };
    let mut column_profile: Vec<u32> = Vec::with_capacity(column_count);
    let mut geo_rule: Vec<u16> = Vec::with_capacity(column_count);
    let regions = geo.regions();
    let per_region: Vec<(u32, u16)> = regions
        .example
        .iter()
        .map(|&id| {
            let place = &places[id as usize];
            (new_profile(place, None, true), rule_of(place))
        })
        .collect();
    for &region in &regions.of_place {
        let (profile, rule) = per_region[region as usize];
        column_profile.push(profile);
        geo_rule.push(rule);
    }
    for &(place, group) in &extra_columns {
        let located = !std::ptr::eq(place, &unlocated);
        column_profile.push(new_profile(place, group, located));
        geo_rule.push(rule_of(place));
    }

    // Candidates per (row group, profile), scored alike at every place of the profile.
    let node_vectors: Vec<UnitVector> = nodes.iter().map(|n| UnitVector::of(&n.location)).collect();
    let candidates: Vec<Vec<Vec<Candidate>>> = row_candidates
        .iter()
        .enumerate()
        .map(|(row, row_nodes)| {
            if row_group[row] != row {
                return Vec::new();
            }
            profiles
                .iter()
                .map(|profile| {
                    let fences: Vec<&GeoCode> =
                        profile.fences.iter().map(|&i| &steered.fences[i]).collect();
                    row_nodes
                        .nodes
                        .iter()
                        .enumerate()
                        .filter_map(|(position, &(id, level))| {
                            let node = nodes.get(id)?;
                            let families = u8::from(node.first_v4().is_some())
                                | (u8::from(node.first_v6().is_some()) << 1);
                            let allowed =
                                families != 0 && fences.iter().all(|f| f.contains(&node.geo));
                            allowed.then(|| Candidate {
                                id,
                                base: rank_key_base(node, level, position),
                                families,
                                terms: ScoreTerms::of(
                                    measured,
                                    id,
                                    node,
                                    &profile.keys,
                                    now,
                                    &steered.latency,
                                ),
                                at: node_vectors[id],
                            })
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut one_by_one: Vec<usize> = if geo.sorted_positions().len() == places.len() {
        Vec::new()
    } else {
        places
            .iter()
            .enumerate()
            .filter(|(_, p)| p.coordinates.is_none())
            .map(|(column, _)| column)
            .collect()
    };
    one_by_one.extend(places.len()..column_count);
    let full = FullRanking {
        row_group: row_group.clone(),
        candidates,
        column_profile,
        extra_positions: extra_columns
            .iter()
            .map(|(place, _)| place.coordinates.map(|c| UnitVector::of(&c)))
            .collect(),
        one_by_one,
    };

    // Each candidate group's start at every column, before damping.
    let points_by_profile = points_of(geo, &full.column_profile, profiles.len(), None);
    let mut starts = Starts::default();
    let mut undamped: Vec<Vec<u32>> = vec![Vec::new(); row_candidates.len()];
    for (group, out) in undamped.iter_mut().enumerate() {
        if row_group[group] != group {
            continue;
        }
        *out = vec![0; column_count];
        for (profile, points) in points_by_profile.iter().enumerate() {
            let list = &full.candidates[group][profile];
            rank_points(points, list, depth, &mut starts, out);
        }
        for &column in &full.one_by_one {
            let at = full.position(column, geo);
            let start = start_at(full.candidates(group, column), at.as_ref(), depth);
            out[column] = starts.intern(&start);
        }
    }
    drop(points_by_profile);

    // Lines: for a node with several addresses of a family, the one measured best for a
    // column (an unmeasured line counts at the node's own expected latency).
    let no_lines: Lines = Arc::from(Vec::new());
    let mut shared_lines: HashMap<Vec<(NodeId, IpAddr)>, Lines> = HashMap::new();
    let mut lines_of = |place: &Place, prefix: Option<&ClientGroup>| -> Lines {
        if measured.addresses.is_empty() {
            return Arc::clone(&no_lines);
        }
        let keys = latency::group_keys(place, prefix);
        let mut chosen = Vec::new();
        for (id, node) in nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.addresses.len() > 1)
        {
            let distance = place.coordinates.map(|c| c.distance_km(&node.location));
            let node_ms = latency::expected(
                &measured.measurements,
                id,
                &keys,
                distance,
                now,
                &steered.latency,
            )
            .rtt_ms;
            for v6 in [false, true] {
                let family: Vec<IpAddr> = node
                    .addresses
                    .iter()
                    .copied()
                    .filter(|a| a.is_ipv6() == v6)
                    .collect();
                let best = family
                    .iter()
                    .map(|&ip| {
                        (
                            measured
                                .addresses
                                .expected(ip, &keys, now, &steered.latency)
                                .unwrap_or(node_ms),
                            ip,
                        )
                    })
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                if let (Some((_, ip)), Some(first)) = (best, family.first())
                    && ip != *first
                {
                    chosen.push((id, ip));
                }
            }
        }
        Arc::clone(
            shared_lines
                .entry(chosen)
                .or_insert_with_key(|k| Arc::from(k.as_slice())),
        )
    };
    // Without line measurements every column has none (the common case, kept cheap).
    let column_lines: Option<Vec<Lines>> = (!measured.addresses.is_empty()).then(|| {
        (0..column_count)
            .map(|column| {
                let (place, group) = place_of(column);
                lines_of(place, group)
            })
            .collect()
    });

    // Damping per row and column, then classes: (start, lines).
    let mut classes: Vec<Class> = Vec::new();
    let mut class_of: FxHashMap<ClassKey, u32> = FxHashMap::default();
    // Classes without lines, by start: most cells, found by indexing.
    let mut class_of_start: Vec<u32> = Vec::new();
    let mut rows: Vec<Vec<u32>> = Vec::with_capacity(row_candidates.len());
    // Starts with an incumbent kept on top, by (start, incumbent, group, profile).
    let mut promoted_starts: FxHashMap<(u32, NodeId, usize, usize), u32> = FxHashMap::default();
    // Where each node is in each candidate list, for damping cells one by one.
    let positions: Vec<Vec<Vec<u32>>> = full
        .candidates
        .iter()
        .map(|profiles| {
            profiles
                .iter()
                .map(|list| {
                    let mut position = vec![u32::MAX; nodes.len()];
                    for (i, c) in list.iter().enumerate() {
                        if let Some(slot) = position.get_mut(c.id) {
                            *slot = i as u32;
                        }
                    }
                    position
                })
                .collect()
        })
        .collect();
    for (row_index, candidates_of_row) in row_candidates.iter().enumerate() {
        let group = row_group[row_index];
        // Nodes that may trade places under hysteresis: same tier kind and fallback level.
        let mut level_of: Vec<Option<u8>> = vec![None; nodes.len()];
        for &(id, level) in &candidates_of_row.nodes {
            if let Some(slot) = level_of.get_mut(id) {
                slot.get_or_insert(level);
            }
        }
        let class_of_node = |id: NodeId| {
            let backup = nodes.get(id).is_some_and(|n| n.tier == Tier::Backup);
            (backup, level_of.get(id).copied().flatten())
        };
        let mut incumbents = damping.take_row(cell.zone, cell.steered, row_index);
        incumbents.resize(column_count);
        let mut row = Vec::with_capacity(column_count);
        for column in 0..column_count {
            let mut start_id = undamped[group][column];
            let top = starts.list[start_id as usize].top;
            match incumbents.get(column) {
                Some(held) if Some(held.node) != top => {
                    // The top changed under an incumbent: damp the cell.
                    let profile = full.column_profile.get(column).copied().unwrap_or(0) as usize;
                    let position = positions
                        .get(group)
                        .and_then(|p| p.get(profile))
                        .map_or(&[][..], Vec::as_slice);
                    let at = full.position(column, geo);
                    let candidates = full.candidates(group, column);
                    let (state, kept_on_top) = damp_start(
                        held,
                        &starts.list[start_id as usize],
                        candidates,
                        position,
                        at.as_ref(),
                        |a, b| class_of_node(a) == class_of_node(b),
                        now,
                        &steered.latency,
                    );
                    incumbents.set(column, state);
                    if kept_on_top {
                        let key = (start_id, held.node, group, profile);
                        start_id = match promoted_starts.get(&key) {
                            Some(&id) => id,
                            None => {
                                let start = &starts.list[start_id as usize];
                                let start = promoted(start, held.node, depth, candidates, position);
                                let id = starts.intern(&start);
                                promoted_starts.insert(key, id);
                                id
                            }
                        };
                    }
                }
                _ => {
                    incumbents.set(
                        column,
                        top.map(|node| latency::Incumbent {
                            node,
                            challenger: None,
                        }),
                    );
                }
            }
            let lines = column_lines.as_ref().map_or(&no_lines, |l| &l[column]);
            let mut new_class = || {
                classes.push(Class {
                    start: starts.list[start_id as usize].clone(),
                    lines: Arc::clone(lines),
                });
                (classes.len() - 1) as u32
            };
            let class = if Arc::ptr_eq(lines, &no_lines) {
                let index = start_id as usize;
                if class_of_start.len() <= index {
                    class_of_start.resize(index + 1, u32::MAX);
                }
                if class_of_start[index] == u32::MAX {
                    class_of_start[index] = new_class();
                }
                class_of_start[index]
            } else {
                *class_of
                    .entry((start_id, lines.as_ptr()))
                    .or_insert_with(new_class)
            };
            row.push(class);
        }
        damping.put_row(cell.zone, cell.steered, row_index, incumbents);
        rows.push(row);
    }
    drop((undamped, class_of, starts, column_lines));

    // Heads: classes whose starts begin alike (the first `answers + 2` of each family).
    let mut head_index: FxHashMap<(RankedStart, *const (NodeId, IpAddr)), u32> =
        FxHashMap::default();
    let mut heads: Vec<Class> = Vec::new();
    let head_of_class: Vec<u32> = classes
        .iter()
        .map(|class| {
            let mut start = class.start.clone();
            start.top = None;
            for f in 0..2 {
                if start.families[f].len() > head_depth {
                    start.families[f].truncate(head_depth);
                    start.complete[f] = false;
                }
            }
            *head_index
                .entry((start.clone(), class.lines.as_ptr()))
                .or_insert_with(|| {
                    heads.push(Class {
                        start,
                        lines: Arc::clone(&class.lines),
                    });
                    (heads.len() - 1) as u32
                })
        })
        .collect();
    drop(head_index);

    let mut subnets = SubnetRules::new();
    for (i, rule) in steered.rules.iter().enumerate() {
        for prefix in &rule.subnets {
            subnets.insert(prefix, i as u32);
        }
    }
    let mut group_table = SubnetRules::new();
    for (g, (_, networks)) in groups.iter().enumerate() {
        for prefix in networks {
            group_table.insert(prefix, g as u32);
        }
    }
    let distinct = |cells: &mut dyn Iterator<Item = u32>| {
        let mut seen = vec![false; classes.len()];
        cells
            .filter(|&c| !std::mem::replace(&mut seen[c as usize], true))
            .collect::<Vec<u32>>()
    };
    let row_classes = rows
        .iter()
        .map(|row| distinct(&mut row.iter().copied()))
        .collect();
    let effective_classes = distinct(
        &mut geo_rule
            .iter()
            .enumerate()
            .filter_map(|(column, &rule)| rows.get(rule as usize)?.get(column).copied()),
    );
    // Neighbouring places of one class are one range, so a query searches a table a
    // fraction of the places' size, and its ECS scope is the widest block of that class.
    let place_class: Vec<u32> = (0..place_columns)
        .map(|column| {
            let rule = geo_rule.get(column).copied().unwrap_or(0) as usize;
            rows.get(rule)
                .and_then(|row| row.get(column))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    // Half-width head numbers when they fit: the table is read at random (places are
    // numbered in IPv4 order, not IPv6's), and half the size stays in a core's cache.
    let located_heads = match place_class
        .iter()
        .map(|&c| u16::try_from(head_of_class[c as usize]))
        .collect::<Result<Vec<u16>, _>>()
    {
        Ok(narrow) => located_map(geo, &narrow),
        Err(_) => {
            let heads_of_place: Vec<u32> = place_class
                .iter()
                .map(|&c| head_of_class[c as usize])
                .collect();
            located_map(geo, &heads_of_place)
        }
    };
    drop(place_class);
    SteeredRanking {
        classes,
        rows: Arc::new(rows),
        row_classes,
        effective_classes,
        geo_rule: geo_rule.into(),
        subnets: Arc::new(subnets),
        groups: Arc::new(group_table),
        place_columns,
        heads,
        head_of_class,
        located_heads: Arc::new(located_heads),
        full,
    }
}

/// Address → `class_of_place[place]` (the last entry: unlocated), equal neighbours merged.
fn located_map<T: Copy + Into<u32> + Sync>(geo: &GeoDb, class_of_place: &[T]) -> AddressMap {
    let unlocated = class_of_place.len().saturating_sub(1);
    geo.map_places(|place| {
        let column = place.map_or(unlocated, |p| (p as usize).min(unlocated));
        class_of_place.get(column).map_or(0, |&c| c.into())
    })
}

/// Picks answers from precomputed rankings for the current availability: once per class,
/// so a health change costs the number of classes, not of places; and cell by cell only
/// where a class's start cannot decide.
fn build_steered(
    steered: &SteeredName,
    ranking: &SteeredRanking,
    nodes: &[Node],
    availability: &[Availability],
    geo: &GeoDb,
) -> SteeredTable {
    let mut answers: Vec<AnswerSet> = Vec::new();
    let mut interned: HashMap<(Pick, Pick, Lines), u32> = HashMap::new();
    let mut answer_of = |ranked: [&[NodeId]; 2], lines: &Lines| {
        let [v4, v6] = [0, 1].map(|family| {
            pick(
                ranked[family],
                nodes,
                availability,
                steered.answers,
                FAMILY_ELIGIBLE[family],
                steered.all_down,
            )
        });
        // Picks differing only in lines get different answers.
        let key = (v4, v6, Arc::clone(lines));
        *interned.entry(key).or_insert_with_key(|key| {
            answers.push(answer_set(&key.0, &key.1, nodes, steered, &key.2));
            (answers.len() - 1) as u32
        })
    };
    let health = Health {
        nodes,
        availability,
        answers: steered.answers,
    };
    // A head whose start decides decides every class of it: one pick for them all.
    let decided = |start: &RankedStart| (0..2).all(|f| health.decided_by(start, f));
    let head_decides: Vec<Option<u32>> = ranking
        .heads
        .iter()
        .map(|head| {
            decided(&head.start).then(|| {
                let [v4, v6] = &head.start.families;
                answer_of([v4, v6], &head.lines)
            })
        })
        .collect();
    let class_answer: Vec<u32> = ranking
        .classes
        .iter()
        .zip(&ranking.head_of_class)
        .map(|(class, &head)| match head_decides[head as usize] {
            Some(answer) => answer,
            None if decided(&class.start) => {
                let [v4, v6] = &class.start.families;
                answer_of([v4, v6], &class.lines)
            }
            None => CLASS_SPLIT,
        })
        .collect();
    // The address table answers directly where a head's classes agree.
    let mut head_answer = vec![HEAD_UNSET; ranking.heads.len()];
    for (class, &head) in ranking.head_of_class.iter().enumerate() {
        let answer = class_answer[class];
        let slot = &mut head_answer[head as usize];
        *slot = match *slot {
            HEAD_UNSET => answer,
            same if same == answer => same,
            _ => CLASS_SPLIT,
        };
    }
    // Classes whose start cannot decide: their cells read further, into the healthy nodes
    // ranked for just those cells (a regional outage splits hundreds of thousands).
    let mut split_rows: Vec<Vec<u32>> = vec![Vec::new(); ranking.rows.len()];
    if class_answer.contains(&CLASS_SPLIT) {
        // Whether each class is split, a byte each: read once per cell, a quarter of what
        // `class_answer` would bring into cache.
        let split: Vec<bool> = class_answer.iter().map(|&a| a == CLASS_SPLIT).collect();
        // The healthy start only has to hold the healthy nodes a pick reads past the class's
        // start: at most `answers` (up primaries, then as many up backups as primaries are
        // missing; every primary ranks before every backup). Whether the top is down, and
        // how many primaries there are, the class's start already tells.
        let healthy_depth = steered.answers;
        for group in 0..ranking.rows.len() {
            let rows_of_group: Vec<usize> = (0..ranking.rows.len())
                .filter(|&r| ranking.full.row_group.get(r) == Some(&group))
                .collect();
            // The columns of each row whose class is split, and every column any row needs.
            let mut needed = vec![false; ranking.full.column_profile.len()];
            let split_columns: Vec<Vec<u32>> = rows_of_group
                .iter()
                .map(|&row| {
                    let mut columns = Vec::new();
                    for (column, (needed, &class)) in
                        needed.iter_mut().zip(&ranking.rows[row]).enumerate()
                    {
                        if split.get(class as usize) == Some(&true) {
                            *needed = true;
                            columns.push(column as u32);
                        }
                    }
                    columns
                })
                .collect();
            if split_columns.iter().all(Vec::is_empty) {
                continue;
            }
            let (healthy, healthy_of_column) =
                ranking
                    .full
                    .healthy_starts(group, &needed, &health, healthy_depth, geo);
            // Cells of one class and one healthy start have one answer.
            let mut answer_of_pair = PairAnswers::new(&class_answer, healthy.list.len());
            for (&row, columns) in rows_of_group.iter().zip(&split_columns) {
                let classes = &ranking.rows[row];
                let mut answers_of_row = vec![0u32; classes.len()];
                for &column in columns {
                    let column = column as usize;
                    let class = classes[column];
                    let healthy_start = healthy_of_column[column];
                    answers_of_row[column] = answer_of_pair.get(class, healthy_start, || {
                        let class = &ranking.classes[class as usize];
                        let more = &healthy.list[healthy_start as usize];
                        let [v4, v6] = [0, 1].map(|f| {
                            let listed = &class.start.families[f];
                            let rest = more.families[f].iter().filter(|id| !listed.contains(id));
                            listed.iter().chain(rest).copied().collect::<Vec<NodeId>>()
                        });
                        answer_of([&v4, &v6], &class.lines)
                    });
                }
                if !columns.is_empty() {
                    split_rows[row] = answers_of_row;
                }
            }
        }
    }
    // An answer depends on the place when a row varies, or when the rule chosen per place does.
    let varies = |classes: &[u32]| {
        classes
            .windows(2)
            .any(|w| class_answer[w[0] as usize] != class_answer[w[1] as usize])
    };
    let depends_on_place = split_rows.iter().any(|r| !r.is_empty())
        || ranking.row_classes.iter().any(|c| varies(c))
        || varies(&ranking.effective_classes);
    SteeredTable {
        answers,
        class_answer,
        split_rows,
        table: Arc::clone(&ranking.rows),
        geo_rule: Arc::clone(&ranking.geo_rule),
        subnets: Arc::clone(&ranking.subnets),
        groups: Arc::clone(&ranking.groups),
        place_columns: ranking.place_columns,
        head_answer,
        located_heads: Arc::clone(&ranking.located_heads),
        depends_on_place,
    }
}

fn answer_set(
    v4: &Pick,
    v6: &Pick,
    nodes: &[Node],
    steered: &SteeredName,
    lines: &[(NodeId, IpAddr)],
) -> AnswerSet {
    let family = |pick: &Pick, v6: bool| {
        let ttl = if pick.degraded {
            steered.degraded_ttl.unwrap_or(steered.ttl)
        } else {
            steered.ttl
        };
        let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
        let body = |ip: std::net::IpAddr| {
            let rdata = match ip {
                std::net::IpAddr::V4(a) => a.octets().to_vec(),
                std::net::IpAddr::V6(a) => a.octets().to_vec(),
            };
            let mut body = Vec::new();
            push_body(&mut body, rtype, ttl, &rdata);
            body.into_boxed_slice()
        };
        // The line measured best for this column, else the first address of the family.
        let default_of = |id: NodeId| {
            lines
                .iter()
                .find(|(n, ip)| *n == id && ip.is_ipv6() == v6)
                .map(|(_, ip)| *ip)
                .or_else(|| {
                    if v6 {
                        nodes[id].first_v6().map(IpAddr::V6)
                    } else {
                        nodes[id].first_v4().map(IpAddr::V4)
                    }
                })
        };
        let bodies = pick
            .nodes
            .iter()
            .filter_map(|&id| default_of(id))
            .map(body)
            .collect();
        // One variant per carrier that some answered node has an address on.
        let mut asns: Vec<u32> = pick
            .nodes
            .iter()
            .flat_map(|&id| nodes[id].carriers.iter())
            .filter(|(ip, _)| ip.is_ipv6() == v6)
            .map(|(_, asn)| *asn)
            .collect();
        asns.sort_unstable();
        asns.dedup();
        let carriers = asns
            .into_iter()
            .map(|asn| {
                let bodies = pick
                    .nodes
                    .iter()
                    .filter_map(|&id| nodes[id].on_carrier(asn, v6).or_else(|| default_of(id)))
                    .map(body)
                    .collect();
                (asn, bodies)
            })
            .collect();
        FamilyAnswer {
            nodes: pick.nodes.clone(),
            bodies,
            servfail: pick.servfail,
            carriers,
        }
    };
    AnswerSet {
        a: family(v4, false),
        aaaa: family(v6, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::geo::{Coordinates, CountryTable};
    use crate::policy::{AdminStatus, DefaultAnswer, Rule};

    /// Both forms of the pair table give each pair the answer its first pick gave, and pick
    /// once per pair.
    #[test]
    fn pair_answers_pick_once_per_pair_dense_or_sparse() {
        let class_answer = [0, CLASS_SPLIT, 3, CLASS_SPLIT, CLASS_SPLIT];
        let healthy_starts = 7u32;
        let dense = PairAnswers::new(&class_answer, healthy_starts as usize);
        assert!(matches!(dense, PairAnswers::Dense { .. }));
        for mut table in [dense, PairAnswers::Sparse(FxHashMap::default())] {
            let mut picks = 0;
            let mut seen = HashMap::new();
            for i in 0..200u32 {
                let class = [1, 3, 4][(i % 3) as usize];
                let healthy = (i * 7 + i / 5) % healthy_starts;
                let answer = table.get(class, healthy, || {
                    picks += 1;
                    class * 100 + healthy + i * 10_000
                });
                assert_eq!(*seen.entry((class, healthy)).or_insert(answer), answer);
            }
            assert_eq!(picks, seen.len());
        }
    }

    fn node(addresses: &[&str], carriers: &[(&str, u32)]) -> Node {
        Node {
            name: "n".into(),
            tier: Tier::Core,
            geo: crate::geo::GeoCode::parse("AS-JP", CountryTable::shipped()).unwrap(),
            location: Coordinates::new(35.0, 139.0).unwrap(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            weight: 1,
            status: AdminStatus::Obey,
            check: None,
            carriers: carriers
                .iter()
                .map(|(a, n)| (a.parse().unwrap(), *n))
                .collect(),
        }
    }

    fn steered() -> SteeredName {
        SteeredName {
            name: DomainName::parse("ingest.example.").unwrap(),
            ttl: 30,
            answers: 2,
            rules: vec![Rule {
                geos: vec![],
                subnets: vec![],
                candidates: Candidates {
                    nodes: vec![(0, 0), (1, 0)],
                },
            }],
            fences: vec![],
            default: DefaultAnswer {
                candidates: None,
                location: None,
            },
            all_down: Default::default(),
            degraded_ttl: None,
            latency: Default::default(),
        }
    }

    fn pick_of(nodes: Vec<NodeId>) -> Pick {
        Pick {
            nodes,
            degraded: false,
            servfail: false,
        }
    }

    fn addresses(bodies: &[Box<[u8]>]) -> Vec<[u8; 4]> {
        bodies
            .iter()
            .map(|b| [b[RDATA], b[RDATA + 1], b[RDATA + 2], b[RDATA + 3]])
            .collect()
    }

    const RDATA: usize = crate::dns::wire::RDATA_OFFSET;

    /// Every cell's answer is what a pick over its whole ranking (`scoring::rank`, every
    /// node scored) gives, whatever is down, and the one-lookup path gives every client its
    /// own cell's answer. Returns how many rules had cells answered one by one, and how many
    /// heads were mixed, over all `down_sets`.
    fn cells_agree_with_full_rankings(zones: &[Zone], down_sets: &[Vec<usize>]) -> (usize, usize) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let geo = Arc::new(GeoDb::open(&root.join("geo/dbip-country.mmdb")).expect("shipped db"));
        let rankings = rank_all(
            zones,
            &geo,
            &[],
            &mut DampingState::default(),
            SystemTime::now(),
        );
        let zone = &zones[0];
        let steered = &zone.steered[0];
        let none = ZoneLatency::default();
        // Full rankings of every cell, independently of the tables.
        let unlocated = Place {
            coordinates: steered.default.location,
            ..Place::default()
        };
        let rows: Vec<&Candidates> = steered
            .rules
            .iter()
            .map(|r| &r.candidates)
            .chain([steered
                .default
                .candidates
                .as_ref()
                .unwrap_or(&steered.rules[steered.rules.len() - 1].candidates)])
            .collect();
        let columns: Vec<&Place> = geo.places().iter().chain([&unlocated]).collect();
        let full: Vec<Vec<Vec<NodeId>>> = rows
            .iter()
            .map(|candidates| {
                columns
                    .iter()
                    .map(|place| {
                        let located = !std::ptr::eq(*place, &unlocated);
                        let fences: Vec<&GeoCode> = steered
                            .fences
                            .iter()
                            .filter(|f| located && f.matches(place))
                            .collect();
                        let keys = latency::group_keys(place, None);
                        crate::scoring::rank(&zone.nodes, candidates, &fences, |id, node| {
                            let distance = place.coordinates.map(|c| c.distance_km(&node.location));
                            let now = SystemTime::now();
                            latency::node_score(
                                &none,
                                id,
                                node,
                                distance,
                                &keys,
                                now,
                                &steered.latency,
                            )
                            .1
                        })
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect()
                    })
                    .collect()
            })
            .collect();
        let (mut split_seen, mut mixed_seen) = (0, 0);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let no_lines: Lines = Arc::from(Vec::new());
        for down in down_sets {
            let mut availability = policy_availability(zones);
            for &id in down {
                availability[0][id] = Availability::HealthDown;
            }
            let snapshot = build(zones, Arc::clone(&geo), &rankings, &availability);
            let Some(NameNode::Steered(table)) = snapshot.zones[0]
                .names
                .values()
                .find(|n| matches!(n, NameNode::Steered(_)))
            else {
                panic!("the shipped zone has a steered name");
            };
            split_seen += table.split_rows.iter().filter(|r| !r.is_empty()).count();
            mixed_seen += table
                .head_answer
                .iter()
                .filter(|&&a| a == CLASS_SPLIT)
                .count();
            for (row, by_column) in full.iter().enumerate() {
                for (column, ranked) in by_column.iter().enumerate() {
                    let [v4, v6] = [0, 1].map(|family| {
                        pick(
                            ranked,
                            &zone.nodes,
                            &availability[0],
                            steered.answers,
                            FAMILY_ELIGIBLE[family],
                            steered.all_down,
                        )
                    });
                    let expected = answer_set(&v4, &v6, &zone.nodes, steered, &no_lines);
                    assert_eq!(
                        table.answers[table.cell_answer(row, column) as usize],
                        expected,
                        "rule {row}, column {column} with {down:?} down"
                    );
                }
            }
            for _ in 0..200 {
                let ip = IpAddr::V4(std::net::Ipv4Addr::from(random() as u32));
                let (subnet_rule, _) = table.subnets.lookup(ip);
                let (group, _) = table.groups.longest(ip);
                let by_place = table.select_by_place(ip, &geo, subnet_rule, group).0;
                let selected = table.select(ip, &geo);
                assert!(
                    std::ptr::eq(selected.answer, &table.answers[by_place as usize]),
                    "{ip} with {down:?} down"
                );
            }
        }
        (split_seen, mixed_seen)
    }

    /// Sets of nodes down: none, each one, each pair, `triples` random triples, and outages
    /// of five nodes up to all but one.
    fn down_sets(node_count: usize, triples: usize) -> Vec<Vec<usize>> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        };
        let mut sets: Vec<Vec<usize>> = vec![vec![]];
        for a in 0..node_count {
            sets.push(vec![a]);
            for b in a + 1..node_count {
                sets.push(vec![a, b]);
            }
        }
        let mut shuffled = |size: usize| {
            let mut down: Vec<usize> = (0..node_count).collect();
            for i in 0..node_count {
                down.swap(i, i + random() % (node_count - i));
            }
            down.truncate(size);
            down
        };
        for _ in 0..triples {
            sets.push(shuffled(3));
        }
        for size in 5..node_count {
            for _ in 0..3 {
                sets.push(shuffled(size));
            }
        }
        sets
    }

    /// The shipped zone (a small fleet: classes hold whole rankings): no failure leaves a
    /// class undecided, and heads whose classes disagree send clients to their place.
    #[test]
    fn every_cell_answers_as_its_full_ranking_in_a_small_fleet() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let zones = crate::policy::load_path(&root.join("zones/live.example.net.yaml"))
            .expect("shipped zone");
        let sets = down_sets(zones[0].nodes.len(), 200);
        let (split, mixed) = cells_agree_with_full_rankings(&zones, &sets);
        assert_eq!(split, 0, "whole rankings always decide");
        assert!(
            mixed > 0,
            "no failure mixed a head: the place path went untested"
        );
    }

    /// A fleet of 40 (classes hold starts): failures deeper than a start are answered cell
    /// by cell from the healthy nodes.
    #[test]
    fn every_cell_answers_as_its_full_ranking_in_a_large_fleet() {
        let mut text = String::from(
            "zone: big.example\nsoa: {primary: ns1.big.example., contact: h.big.example.}\nns: [ns1.big.example.]\nnodes:\n",
        );
        for i in 0..40 {
            let (lat, lon) = ((i * 37 % 120) as f64 - 60.0, (i * 83 % 360) as f64 - 180.0);
            let tier = if i % 9 == 4 { "backup" } else { "core" };
            text += &format!(
                "  n{i}: {{tier: {tier}, geo: AS-JP, location: [{lat}, {lon}], addresses: [198.51.100.{}, '2001:db8::{}']}}\n",
                i + 1,
                i + 1
            );
        }
        text += "steer:\n  ingest: {answers: 2}\n";
        let zone = crate::policy::parse_zone(std::path::Path::new("big.yaml"), &text, 1)
            .expect("generated zone");
        let sets = down_sets(40, 100);
        let (split, mixed) = cells_agree_with_full_rankings(&[zone], &sets);
        assert!(
            split > 0,
            "no failure split a class: the cell-by-cell path went untested"
        );
        assert!(mixed > 0, "no failure mixed a head");
    }

    #[test]
    fn carrier_variants_use_each_carrier_address_and_fall_back_to_the_line() {
        let nodes = vec![
            node(&["192.0.2.1", "192.0.2.101"], &[("192.0.2.101", 64500)]),
            node(&["192.0.2.2"], &[]),
        ];
        let lines: Lines = Arc::from(vec![]);
        let set = answer_set(
            &pick_of(vec![0, 1]),
            &pick_of(vec![]),
            &nodes,
            &steered(),
            &lines,
        );
        assert_eq!(
            addresses(&set.a.bodies),
            vec![[192, 0, 2, 1], [192, 0, 2, 2]]
        );
        assert_eq!(set.a.carriers.len(), 1);
        let (asn, carrier) = &set.a.carriers[0];
        assert_eq!(*asn, 64500);
        assert_eq!(addresses(carrier), vec![[192, 0, 2, 101], [192, 0, 2, 2]]);
        // A measured line replaces the first address for everyone else.
        let lines: Lines = Arc::from(vec![(0, "192.0.2.101".parse().unwrap())]);
        let set = answer_set(
            &pick_of(vec![0]),
            &pick_of(vec![]),
            &nodes,
            &steered(),
            &lines,
        );
        assert_eq!(addresses(&set.a.bodies), vec![[192, 0, 2, 101]]);
        assert!(set.aaaa.bodies.is_empty() && set.aaaa.carriers.is_empty());
    }
}
