//! The pure builder: validated zones + a GeoIP database → a `Snapshot`.
//!
//! All the work a query must not do happens here: record encoding, rule matching per place,
//! fence filtering, ranking, and interning of identical answers. Building has no side effects,
//! so a snapshot can be built, inspected and thrown away (as `check` and failed reloads do).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::*;
use super::{HEAD_MIXED, HEAD_UNSET};
use crate::dns::wire::{name_key, push_body, rdata, soa_rdata};
use crate::geo::{AddressMap, GeoCode, Place, UnitVector};
use crate::latency::{self, ClientGroup, DampingState, ZoneLatency};
use crate::net::Prefix;
use crate::policy::Tier;
use crate::policy::{
    Candidates, DomainName, Node, RecordData, RecordSet, RecordType, SteeredName, Zone,
};
use crate::scoring::{Availability, Pick, pick, rank};
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
            NameNode::Steered(build_steered(steered, ranking, &zone.nodes, availability)),
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

/// Node rankings of one steered name: `rows[row][column]`, rows being its rules and then the
/// `default` pseudo-rule, columns the database's places and then the unlocated pseudo-place.
/// They depend on policy and geography only, not on health, so they are computed once per
/// load and every health change only re-picks from them — once per distinct ranking (a
/// class), not per cell: a city database has hundreds of thousands of places but a fleet
/// only so many distinct orders of its nodes.
#[derive(Debug, PartialEq)]
struct SteeredRanking {
    /// Distinct (ranking, lines) pairs; lines are the nodes whose best measured line is not
    /// their first address of the family.
    classes: Vec<(Arc<[NodeId]>, Lines)>,
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
    /// Class → its head: classes whose rankings start with the same nodes (and lines),
    /// which nearly always get the same answer.
    head_of_class: Vec<u32>,
    /// The heads.
    heads: Vec<Head>,
    /// Address → the head of the class a client there gets without a subnet rule
    /// or group.
    located_heads: Arc<AddressMap>,
}

/// How many nodes of a ranking beyond the answer size decide its head: enough that
/// losing a couple of the nearest nodes rarely splits a head's answer.
const HEAD_SLACK: usize = 2;

/// What makes cells one class: the order of their nodes, and their lines.
type ClassKey = (Arc<[NodeId]>, *const (NodeId, IpAddr));

/// What makes classes one head: the first eligible nodes of each family, and the lines.
type HeadKey = ([HeadFamily; 2], *const (NodeId, IpAddr));

/// The start of a ranking, shared by classes: what decides most answers.
#[derive(Debug, PartialEq)]
struct Head {
    /// IPv4, then IPv6.
    families: [HeadFamily; 2],
    lines: Lines,
}

/// A head's nodes eligible for one family's answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HeadFamily {
    /// The first eligible nodes, best first.
    nodes: Vec<NodeId>,
    /// Whether these are all the ranking's eligible nodes: then the head decides the answer
    /// whatever is down.
    complete: bool,
}

/// Which nodes can answer each family: those with an address of it.
const FAMILY_ELIGIBLE: [fn(&Node) -> bool; 2] =
    [|n| n.first_v4().is_some(), |n| n.first_v6().is_some()];

/// For one column: nodes answered with another address than their first of the family.
type Lines = Arc<[(NodeId, IpAddr)]>;

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
    Rankings {
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
    }
}

/// Which steered name a ranking belongs to, for damping state keys.
#[derive(Clone, Copy)]
struct Cell {
    zone: usize,
    steered: usize,
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

    // Columns: the database's places, the unlocated pseudo-place, then every measured prefix
    // group, which stands where the database puts its network address.
    let unlocated = Place {
        coordinates: steered.default.location,
        ..Place::default()
    };
    let place_columns = geo.places().len() + 1;
    let groups: Vec<(ClientGroup, Vec<Prefix>)> = measured.group_columns();
    let columns: Vec<(&Place, Option<&ClientGroup>)> = geo
        .places()
        .iter()
        .map(|p| (p, None))
        .chain(std::iter::once((&unlocated, None)))
        .chain(groups.iter().map(|(group, networks)| {
            let located = geo.locate(networks[0].network());
            let place = located
                .place
                .and_then(|id| geo.places().get(id as usize))
                .unwrap_or(&unlocated);
            (place, Some(group))
        }))
        .collect();

    // Node positions once; a place's position once per column.
    let node_vectors: Vec<UnitVector> = nodes.iter().map(|n| UnitVector::of(&n.location)).collect();
    let vector_of = |place: &Place| place.coordinates.map(|c| UnitVector::of(&c));
    let score_of =
        |id: NodeId, node: &Node, at: Option<UnitVector>, keys: &[latency::ClientGroup]| {
            let distance = at.map(|v| v.distance_km(&node_vectors[id]));
            latency::node_score(measured, id, node, distance, keys, now, &steered.latency).1
        };
    let place_scores = |place: &Place| -> Vec<f64> {
        let keys = latency::group_keys(place, None);
        let at = vector_of(place);
        nodes
            .iter()
            .enumerate()
            .map(|(id, node)| score_of(id, node, at, &keys))
            .collect()
    };
    let measured_by_group = measured.measurements.nodes_by_group();
    let mut base_scores: HashMap<*const Place, Arc<Vec<f64>>> = HashMap::new();

    // Identical rankings (common: every place of a region) are one class.
    let mut classes: Vec<(Arc<[NodeId]>, Lines)> = Vec::new();
    // Keys are node orders (hundreds of numbers at a large fleet) built from our own policy
    // and database: a fast hash, no flooding to defend against.
    let mut class_of: FxHashMap<ClassKey, u32> = FxHashMap::default();
    let same_candidates: Vec<usize> = row_candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            row_candidates[..i]
                .iter()
                .position(|earlier| std::ptr::eq(*earlier, *c))
                .unwrap_or(i)
        })
        .collect();
    let mut column_ranks: Vec<(Vec<NodeId>, Vec<f64>)> =
        vec![Default::default(); row_candidates.len()];
    let no_lines: Lines = Arc::from(Vec::new());
    let mut shared_lines: HashMap<Vec<(NodeId, IpAddr)>, Lines> = HashMap::new();
    let mut rows: Vec<Vec<u32>> = vec![Vec::with_capacity(columns.len()); row_candidates.len()];
    let mut geo_rule = Vec::with_capacity(columns.len());
    for (index, (place, prefix)) in columns.iter().enumerate() {
        let is_unlocated = std::ptr::eq(*place, &unlocated);
        let fences: Vec<&GeoCode> = steered
            .fences
            .iter()
            .filter(|f| !is_unlocated && f.matches(place))
            .collect();
        // Scores depend on the column, not the row: computed once per column. A prefix
        // group's column starts from its place's scores and rescoring only the nodes measured
        // for that prefix.
        let column_scores: Vec<f64> = match prefix {
            None => place_scores(place),
            Some(p) => {
                let key = *place as *const Place;
                let mut scores = match base_scores.get(&key) {
                    Some(cached) => Vec::clone(cached),
                    None => {
                        let fresh = Arc::new(place_scores(place));
                        base_scores.insert(key, Arc::clone(&fresh));
                        Vec::clone(&fresh)
                    }
                };
                let keys = latency::group_keys(place, Some(p));
                for &id in measured_by_group.get(*p).into_iter().flatten() {
                    if let Some(node) = nodes.get(id) {
                        scores[id] = score_of(id, node, vector_of(place), &keys);
                    }
                }
                scores
            }
        };
        // Lines: for a node with several addresses of a family, the one measured best for this
        // column (an unmeasured line counts at the node's own expected latency).
        let column_lines = if measured.addresses.is_empty() {
            Arc::clone(&no_lines)
        } else {
            let keys = latency::group_keys(place, *prefix);
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
        for (row_index, (row, candidates)) in rows.iter_mut().zip(&row_candidates).enumerate() {
            let score = |id: NodeId, _: &Node| column_scores.get(id).copied().unwrap_or(f64::MAX);
            // Rows with the same candidates (the default pseudo-rule repeats the catch-all)
            // rank alike before damping: sort once.
            let first = same_candidates[row_index];
            if first == row_index {
                column_ranks[row_index] =
                    rank(nodes, candidates, &fences, score).into_iter().unzip();
            }
            let (mut ranked, scores) = column_ranks[first].clone();
            let key = (cell.zone, cell.steered, row_index, index);
            let mut state = damping.get(key);
            let class = |id: NodeId| {
                let level = candidates
                    .nodes
                    .iter()
                    .find(|(n, _)| *n == id)
                    .map(|(_, l)| *l);
                (nodes[id].tier == Tier::Backup, level)
            };
            latency::damp(
                &mut ranked,
                &scores,
                &mut state,
                |a, b| class(a) == class(b),
                now,
                &steered.latency,
            );
            damping.set(key, state);
            // The map's key and the class share one copy of the order.
            let ranked: Arc<[NodeId]> = Arc::from(ranked);
            let next = classes.len() as u32;
            let class = *class_of
                .entry((Arc::clone(&ranked), column_lines.as_ptr()))
                .or_insert_with(|| {
                    classes.push((ranked, Arc::clone(&column_lines)));
                    next
                });
            row.push(class);
        }
        let first_geo_rule = if is_unlocated {
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
        geo_rule.push(first_geo_rule.min(u16::MAX as usize) as u16);
    }
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
    // Classes grouped into heads by how their rankings start, per family (each family's
    // answer reads its own eligible nodes). Neighbouring places of one head are one range,
    // so a query searches a table a fraction of the places' size, and its ECS scope is the
    // widest block of that head, not of that place.
    let depth = steered.answers + HEAD_SLACK;
    let head_of = |ranked: &[NodeId], eligible: fn(&Node) -> bool| -> HeadFamily {
        let mut all = ranked
            .iter()
            .copied()
            .filter(|&id| nodes.get(id).is_some_and(eligible));
        let first: Vec<NodeId> = all.by_ref().take(depth).collect();
        HeadFamily {
            nodes: first,
            complete: all.next().is_none(),
        }
    };
    let mut head_by_key: FxHashMap<HeadKey, u32> = FxHashMap::default();
    let mut heads: Vec<Head> = Vec::new();
    let head_of_class: Vec<u32> = classes
        .iter()
        .map(|(ranked, lines)| {
            let families = FAMILY_ELIGIBLE.map(|eligible| head_of(ranked, eligible));
            let key = (families.clone(), lines.as_ptr());
            *head_by_key.entry(key).or_insert_with(|| {
                heads.push(Head {
                    families,
                    lines: Arc::clone(lines),
                });
                (heads.len() - 1) as u32
            })
        })
        .collect();
    drop(head_by_key);
    let unlocated_column = place_columns - 1;
    let located_heads = geo.map_places(|place| {
        let column = place.map_or(unlocated_column, |p| (p as usize).min(unlocated_column));
        let rule = geo_rule.get(column).copied().unwrap_or(0) as usize;
        let class = rows
            .get(rule)
            .and_then(|row| row.get(column))
            .copied()
            .unwrap_or(0);
        head_of_class.get(class as usize).copied().unwrap_or(0)
    });
    SteeredRanking {
        classes,
        rows: Arc::new(rows),
        row_classes,
        effective_classes,
        geo_rule: geo_rule.into(),
        subnets: Arc::new(subnets),
        groups: Arc::new(group_table),
        place_columns,
        head_of_class,
        heads,
        located_heads: Arc::new(located_heads),
    }
}

/// Picks answers from precomputed rankings for the current availability: once per class
/// (distinct ranking), so a health change costs the number of classes, not of places.
fn build_steered(
    steered: &SteeredName,
    ranking: &SteeredRanking,
    nodes: &[Node],
    availability: &[Availability],
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
    let up =
        |id: NodeId| availability.get(id).copied().unwrap_or(Availability::Up) == Availability::Up;
    // A head with enough healthy primaries among its first nodes (or with all of them)
    // decides the answer of every class it holds: a pick reads no further than that. So a
    // health change picks once per head, and once per class only where a head runs short.
    let head_decides: Vec<Option<u32>> = ranking
        .heads
        .iter()
        .map(|head| {
            let decided = head.families.iter().all(|family| {
                family.complete
                    || family
                        .nodes
                        .iter()
                        .filter(|&&id| up(id) && nodes[id].tier != Tier::Backup)
                        .count()
                        >= steered.answers
            });
            decided.then(|| {
                let [v4, v6] = &head.families;
                answer_of([&v4.nodes, &v6.nodes], &head.lines)
            })
        })
        .collect();
    let class_answer: Vec<u32> = ranking
        .classes
        .iter()
        .zip(&ranking.head_of_class)
        .map(
            |((ranked, lines), &head)| match head_decides[head as usize] {
                Some(answer) => answer,
                None => answer_of([ranked, ranked], lines),
            },
        )
        .collect();
    // A head answers directly when all its classes agree; otherwise its clients take the
    // place lookup to their own class.
    let mut head_answer: Vec<u32> = Vec::new();
    for (class, &head) in ranking.head_of_class.iter().enumerate() {
        let head = head as usize;
        if head_answer.len() <= head {
            head_answer.resize(head + 1, HEAD_UNSET);
        }
        let answer = class_answer[class];
        head_answer[head] = match head_answer[head] {
            HEAD_UNSET => answer,
            same if same == answer => same,
            _ => HEAD_MIXED,
        };
    }
    // An answer depends on the place when a row varies, or when the rule chosen per place does.
    let varies = |classes: &[u32]| {
        classes
            .windows(2)
            .any(|w| class_answer[w[0] as usize] != class_answer[w[1] as usize])
    };
    let depends_on_place =
        ranking.row_classes.iter().any(|c| varies(c)) || varies(&ranking.effective_classes);
    SteeredTable {
        answers,
        class_answer,
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

    /// The one-lookup path (by head) gives every client the answer its own place and
    /// class give, whatever is down: heads whose classes disagree fall back to the place.
    #[test]
    fn head_lookup_agrees_with_the_place_path_under_failures() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let zones = crate::policy::load_path(&root.join("zones/live.example.net.yaml"))
            .expect("shipped zone");
        let geo = Arc::new(GeoDb::open(&root.join("geo/dbip-country.mmdb")).expect("shipped db"));
        let rankings = rank_all(
            &zones,
            &geo,
            &[],
            &mut DampingState::default(),
            SystemTime::now(),
        );
        let node_count = zones[0].nodes.len();
        let mut mixed_seen = 0;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // All up, and every set of one, two or three nodes down (three down splits heads).
        let mut down_sets: Vec<Vec<usize>> = vec![vec![]];
        for a in 0..node_count {
            down_sets.push(vec![a]);
            for b in a + 1..node_count {
                down_sets.push(vec![a, b]);
                for c in b + 1..node_count {
                    down_sets.push(vec![a, b, c]);
                }
            }
        }
        for down in &down_sets {
            let mut availability = policy_availability(&zones);
            for &id in down {
                availability[0][id] = Availability::HealthDown;
            }
            let snapshot = build(&zones, Arc::clone(&geo), &rankings, &availability);
            let Some(NameNode::Steered(table)) = snapshot.zones[0]
                .names
                .values()
                .find(|n| matches!(n, NameNode::Steered(_)))
            else {
                panic!("the shipped zone has a steered name");
            };
            mixed_seen += table
                .head_answer
                .iter()
                .filter(|&&a| a == HEAD_MIXED)
                .count();
            // Every class's answer is what a pick over its whole ranking gives.
            let zone = &zones[0];
            let steered = &zone.steered[0];
            let ranking = &rankings.zones[0][0];
            for (class, (ranked, lines)) in ranking.classes.iter().enumerate() {
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
                let expected = answer_set(&v4, &v6, &zone.nodes, steered, lines);
                assert_eq!(
                    table.answers[table.class_answer[class] as usize], expected,
                    "class {class} with {down:?} down"
                );
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
        assert!(
            mixed_seen > 0,
            "no failure split a head: the fallback went untested"
        );
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
