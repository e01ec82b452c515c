//! The ranked table of each steered name: every cell's start, damped, grouped into classes
//! and heads, with what ranks a cell in full when its class cannot decide. Made by
//! [`rank_all`] once per policy load or latency change; `answer::build` picks from it at
//! every health change. See the glossary in `steer` for the words.
//!
//! `rank_steered` runs in phases, each a function of its own: lay out the columns and
//! profiles (`Layout`), list the candidates of each (candidate group, profile) with their
//! score terms, rank every column's start by regions, choose carrier lines, damp each cell
//! and intern classes, then group classes into heads and map addresses to heads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use super::damping::{DampingRow, DampingState, Incumbent, damp_start, promoted};
use super::order::{Availability, rank_key_base};
use super::regions::{
    Candidate, Pieces, Point, RankedStart, Rising, Starts, push_piece, rank_slices,
    rank_slices_into, release_free_memory, start_at,
};
use super::score::{ScoreTerms, score_weight};
use super::spread::{Groups, UNSPREAD, draw_weights, group_starts};
use crate::geo::{GeoDb, GeoSet, Place, UnitVector};
use crate::latency::{self, ClientGroup, ZoneLatency};
use crate::net::Prefix;
use crate::net::subnets::SubnetRules;
use crate::policy::{Candidates, Node, NodeId, SpreadWithin, SteeredName, Tier, Zone};
use crate::runs::{RunArray, RunBuilder, RunCursor};

/// Node rankings of one steered name: `rows[row][column]` → class, rows being its rules and
/// then the `default` pseudo-rule, columns the database's places, the unlocated pseudo-place
/// and the measured prefix groups. They depend on policy, geography and measurements, not on
/// health, so they are computed once per load or latency change, and a health change only
/// re-picks from them: once per class, not per cell.
#[derive(Debug, PartialEq)]
pub(crate) struct SteeredRanking {
    /// Distinct (ranking start, lines): a city database has hundreds of thousands of places
    /// but a fleet only so many distinct starts.
    pub(crate) classes: Vec<Class>,
    /// `[row][column]` → index into `classes`, as runs (columns are in Morton order);
    /// shared with every table built from it.
    pub(crate) rows: Arc<Vec<RunArray>>,
    /// Per row, the classes it uses, once each: whether a row's answer varies by place.
    pub(crate) row_classes: Vec<Vec<u32>>,
    /// The classes of the cells located clients get without a subnet rule
    /// (`rows[geo_rule[column]][column]`), once each.
    pub(crate) effective_classes: Vec<u32>,
    /// Column → the row a client there gets without a subnet rule.
    pub(crate) geo_rule: Arc<RunArray>,
    /// Per row, its runs where a query can read it, by class: builds answer no split cell
    /// elsewhere, and walk the runs of split classes alone.
    pub(crate) reachable_runs: Vec<ReachableRuns>,
    pub(crate) subnets: Arc<SubnetRules>,
    pub(crate) groups: Arc<SubnetRules>,
    pub(crate) place_columns: usize,
    /// Classes grouped by how their starts begin (the first `answers + 2` of each family):
    /// what the address table tells apart, and what decides most answers at once.
    pub(crate) heads: Vec<Class>,
    /// Class → its head.
    pub(crate) head_of_class: Vec<u32>,
    /// Place column → the head of the class a client there gets without a subnet rule or
    /// group: with the database's shared address → place map, one lookup for most queries.
    pub(crate) located_heads: Arc<RunArray>,
    /// What ranks a cell in full, for classes whose start cannot decide.
    pub(crate) full: FullRanking,
    /// Per node, its share of a spread group's draw (empty without `spread`).
    pub(crate) draw_weights: Arc<[u32]>,
    /// Per node, the classes whose start holds it: a change of the node's state re-picks
    /// those, and no other.
    pub(crate) classes_of_node: ClassesOfNode,
}

/// Node → the classes whose start holds it, in class order (a table of lists, flat).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ClassesOfNode {
    /// Node `n`'s classes are `classes[first[n]..first[n + 1]]`.
    first: Vec<u32>,
    classes: Vec<u32>,
}

impl ClassesOfNode {
    fn of(classes: &[Class]) -> Self {
        let mut pairs: Vec<(NodeId, u32)> = Vec::new();
        for (c, class) in classes.iter().enumerate() {
            let at = pairs.len();
            for &id in class.start.families.iter().flatten() {
                if !pairs[at..].iter().any(|&(seen, _)| seen == id) {
                    pairs.push((id, c as u32));
                }
            }
        }
        pairs.sort_unstable();
        let nodes = pairs.last().map_or(0, |&(id, _)| id + 1);
        let mut first = Vec::with_capacity(nodes + 1);
        let mut at = 0;
        for node in 0..=nodes {
            while pairs.get(at).is_some_and(|&(id, _)| id < node) {
                at += 1;
            }
            first.push(at as u32);
        }
        ClassesOfNode {
            first,
            classes: pairs.into_iter().map(|(_, c)| c).collect(),
        }
    }

    /// The classes whose start holds `node`.
    pub(crate) fn of_node(&self, node: NodeId) -> &[u32] {
        let from = self.first.get(node).map_or(0, |&f| f as usize);
        let to = self.first.get(node + 1).map_or(from, |&t| t as usize);
        self.classes.get(from..to).unwrap_or(&[])
    }
}

/// Cells whose rankings start alike: the same answer unless many of those nodes are down.
#[derive(Debug, PartialEq)]
pub(crate) struct Class {
    pub(crate) start: RankedStart,
    pub(crate) lines: CarrierChoice,
    /// Where the start's spread groups begin.
    pub(crate) groups: Groups,
}

/// How many nodes of each family beyond the answer size a class holds: enough that losing
/// a couple of the nearest rarely leaves a class unable to decide.
const START_SLACK: usize = 2;

/// Rows of at most this many candidates keep whole rankings in their classes, so no number
/// of failures leaves a class unable to decide (a small fleet can lose most of its nodes).
const WHOLE_RANKING_NODES: usize = 16;

/// How many more nodes a spread name's starts hold in a large fleet: room for a site's
/// servers to form a group beyond the answer size.
const SPREAD_SLACK: usize = 8;

/// What a cell's whole ranking comes from when its class's start cannot decide (more of its
/// nodes down than the slack): kept, since that is rare, rather than stored per cell.
#[derive(Debug, PartialEq)]
pub(crate) struct FullRanking {
    /// Row → its candidate group: rows with the same candidates share one.
    pub(crate) row_group: Vec<usize>,
    /// `[group][profile]` → the nodes allowed there, with their scoring terms.
    pub(crate) candidates: Vec<Vec<Vec<Candidate>>>,
    /// Column → profile.
    pub(crate) column_profile: RunArray,
    /// Positions of the columns after the database's places (unlocated, groups).
    pub(crate) extra_positions: Vec<Option<UnitVector>>,
    /// Columns not in the database's Morton order (places without coordinates, and the
    /// columns after the places), which are ranked one by one.
    pub(crate) one_by_one: Vec<usize>,
}

impl FullRanking {
    /// Where the clients of a column are.
    fn position(&self, column: usize, geo: &GeoDb) -> Option<UnitVector> {
        // Place i with coordinates is position i: worked out once per database.
        if let Some(located) = geo.sorted_positions().get(column) {
            return Some(located.at);
        }
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
        let profile = self.column_profile.at_or(column, 0) as usize;
        self.candidates
            .get(group)
            .and_then(|g| g.get(profile))
            .map_or(&[], Vec::as_slice)
    }

    /// Each of `profiles` profiles' places in the column `ranges` (ascending, disjoint), as
    /// slices of the Morton order: a range of columns is one, so nothing is copied.
    fn profile_slices<'g>(
        &self,
        geo: &'g GeoDb,
        profiles: usize,
        ranges: impl IntoIterator<Item = std::ops::Range<usize>>,
    ) -> Vec<Vec<&'g [Point]>> {
        let mut slices: Vec<Vec<&[Point]>> = vec![Vec::new(); profiles];
        let mut profile_runs = RunCursor::new(&self.column_profile);
        for range in ranges {
            profile_runs.each(range, |columns, profile| {
                let points = geo.positions_of_places(columns);
                if let Some(list) =
                    (slices.get_mut(profile as usize)).filter(|_| !points.is_empty())
                {
                    list.push(points);
                }
            });
        }
        slices
    }

    /// The candidates of one group that are `up`, by profile.
    pub(crate) fn healthy_candidates(
        &self,
        group: usize,
        up: impl Fn(NodeId) -> bool,
    ) -> Vec<Vec<Candidate>> {
        self.candidates
            .get(group)
            .map(|profiles| {
                profiles
                    .iter()
                    .map(|list| list.iter().copied().filter(|c| up(c.id)).collect())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where none of a profile's candidates in `healthy` (from
    /// [`FullRanking::healthy_candidates`]) is up, what a pick falls back to there, by
    /// profile (empty elsewhere): its full nodes if it has any (a pick then takes the least
    /// loaded of them all, so all are listed), else its nodes down by health (failing open
    /// ranks them as if up); never a node taken out by an operator. With the most full
    /// nodes one profile lists (how deep to rank them).
    pub(crate) fn fallback_candidates(
        &self,
        group: usize,
        healthy: &[Vec<Candidate>],
        state: impl Fn(NodeId) -> Availability,
    ) -> (Vec<Vec<Candidate>>, usize) {
        let mut most_full = 0;
        let Some(profiles) = self.candidates.get(group) else {
            return (Vec::new(), 0);
        };
        let lists = (profiles.iter().zip(healthy))
            .map(|(list, up)| {
                if !up.is_empty() {
                    return Vec::new();
                }
                let of = |keep: fn(Availability) -> bool| -> Vec<Candidate> {
                    list.iter().copied().filter(|c| keep(state(c.id))).collect()
                };
                let full = of(|a| matches!(a, Availability::Full(_)));
                if full.is_empty() {
                    return of(|a| a == Availability::HealthDown);
                }
                most_full = most_full.max(full.len());
                full
            })
            .collect();
        (lists, most_full)
    }

    /// Each column's start among `healthy` (from [`FullRanking::healthy_candidates`]), for
    /// the columns in `needed` (ascending, disjoint ranges): deep enough (`depth`) that with
    /// a class's start it holds all of a cell's ranking a pick reads, whatever is down.
    /// Ranked by region like the rankings; each column gets a piece with its start's number
    /// in `starts`.
    pub(crate) fn rank_healthy(
        &self,
        needed: &[std::ops::Range<usize>],
        healthy: &[Vec<Candidate>],
        depth: usize,
        geo: &GeoDb,
        (starts, pieces): (&mut Starts, &mut Pieces),
    ) {
        let slices = self.profile_slices(geo, healthy.len(), needed.iter().cloned());
        for (profile, slices) in slices.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            rank_slices(slices, &healthy[profile], depth, starts, pieces);
        }
        for &column in self.one_by_one.iter().filter(|&&c| {
            let at = needed.partition_point(|r| r.end <= c);
            needed.get(at).is_some_and(|r| r.contains(&c))
        }) {
            let profile = self.column_profile.at_or(column, 0) as usize;
            let list = healthy.get(profile).map_or(&[][..], Vec::as_slice);
            let start = start_at(list, self.position(column, geo).as_ref(), depth);
            pieces.push((column as u32, 1, starts.intern(&start)));
        }
    }

    /// The columns of `kept` (column ranges, each with its start among `before`) now that
    /// `risen` came up: a column's start is then the best `depth` of its start's nodes and
    /// `risen`, and stands wherever no risen node can beat its last (`Rising`), which is
    /// most places; the rest are ranked among those few nodes. `healthy` as for
    /// [`FullRanking::rank_healthy`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rank_with_risen(
        &self,
        kept: &[(std::ops::Range<usize>, u32)],
        before: &[RankedStart],
        risen: &[NodeId],
        healthy: &[Vec<Candidate>],
        depth: usize,
        geo: &GeoDb,
        (starts, pieces): (&mut Starts, &mut Pieces),
    ) {
        let located = geo.sorted_positions().len();
        let empty = RankedStart::default();
        // Per (profile, start before): its number now, and how risen nodes enter it.
        let mut rising: FxHashMap<(u32, u32), (u32, Rising)> = FxHashMap::default();
        let mut profile_runs = RunCursor::new(&self.column_profile);
        for (columns, old) in kept {
            profile_runs.each(columns.clone(), |sub, profile| {
                let (kept_as, rising) = rising.entry((profile, *old)).or_insert_with(|| {
                    let before = before.get(*old as usize).unwrap_or(&empty);
                    let list = healthy.get(profile as usize).map_or(&[][..], Vec::as_slice);
                    (
                        starts.intern(before),
                        Rising::new(list, before, risen, depth),
                    )
                });
                // Most parts are far from every risen node: seen so from the codes that
                // bound them, without reading their places.
                let far = || {
                    let bounds = (sub.end <= located).then(|| geo.code_bounds(sub.clone()));
                    bounds.flatten().is_some_and(|b| rising.excluded_between(b))
                };
                if rising.stands() || far() {
                    let count = u32::try_from(sub.len()).unwrap_or(u32::MAX);
                    push_piece(pieces, sub.start as u32, count, *kept_as);
                    return;
                }
                let points = geo.positions_of_places(sub.clone());
                rising.rank(points, *kept_as, starts, pieces);
                for column in sub.start.max(located)..sub.end {
                    let start = rising.start_at(self.position(column, geo).as_ref());
                    pieces.push((column as u32, 1, starts.intern(&start)));
                }
            });
        }
    }
}

/// What makes classes one: a start, the lines (by identity: they are interned), and where
/// spread groups begin.
type ClassKey = (u32, *const (NodeId, IpAddr), Groups);

/// For one column: nodes answered with another address than their first of the family.
pub(crate) type CarrierChoice = Arc<[(NodeId, IpAddr)]>;

/// Which nodes can answer each family: those with an address of it.
pub(crate) const FAMILY_ELIGIBLE: [fn(&Node) -> bool; 2] =
    [|n| n.first_v4().is_some(), |n| n.first_v6().is_some()];

/// The column of a client: its group's when it is in a measured group, else its place's,
/// else (not in the database) the unlocated pseudo-place. `place_columns` counts the
/// database's places and the unlocated pseudo-place; group columns follow them. The one
/// definition of the column layout, for the tables and for explanations.
pub fn column_of(place_columns: usize, place: Option<u32>, group: Option<usize>) -> usize {
    let unlocated = place_columns.saturating_sub(1);
    match group {
        Some(g) => place_columns.saturating_add(g),
        None => place.map_or(unlocated, |p| (p as usize).min(unlocated)),
    }
}

/// Rankings of every steered name of every zone, in policy order.
#[derive(Debug, PartialEq)]
pub struct Rankings {
    zones: Vec<Vec<SteeredRanking>>,
}

impl Rankings {
    /// The rankings of one zone's steered names, in policy order (none for a zone not ranked).
    pub(crate) fn of_zone(&self, zone: usize) -> &[SteeredRanking] {
        self.zones.get(zone).map_or(&[], Vec::as_slice)
    }
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
    // Every name's own damping rows go with it, so names rank side by side, one per core;
    // each core takes every `workers`-th name, which spreads large and small names evenly.
    let mut names: Vec<(NameIndex, DampingState)> = Vec::new();
    for (zi, z) in zones.iter().enumerate() {
        for si in 0..z.steered.len() {
            names.push((
                NameIndex {
                    zone: zi,
                    steered: si,
                },
                damping.take_name(zi, si),
            ));
        }
    }
    let workers = crate::parallel::workers().min(names.len()).max(1);
    let mut shares: Vec<Vec<(NameIndex, DampingState)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for (i, name) in names.into_iter().enumerate() {
        shares[i % workers].push(name);
    }
    let ranked = crate::parallel::each(shares, |share| {
        share
            .into_iter()
            .map(|(name, mut own)| {
                crate::parallel::yield_to_builds();
                let zone = &zones[name.zone];
                let measured = latency.get(name.zone).unwrap_or(&empty);
                let steered = &zone.steered[name.steered];
                let ranking =
                    rank_steered(steered, &zone.nodes, geo, measured, &mut own, name, now);
                (name, ranking, own)
            })
            .collect::<Vec<_>>()
    });
    let mut by_name: Vec<Vec<Option<SteeredRanking>>> = zones
        .iter()
        .map(|z| z.steered.iter().map(|_| None).collect())
        .collect();
    for (name, ranking, own) in ranked.into_iter().flatten() {
        damping.merge(own);
        by_name[name.zone][name.steered] = Some(ranking);
    }
    let rankings = Rankings {
        zones: by_name
            .into_iter()
            .map(|names| names.into_iter().flatten().collect())
            .collect(),
    };
    release_free_memory();
    rankings
}

/// Which steered name a ranking belongs to (zone and name positions in the policy), for
/// damping state keys.
#[derive(Clone, Copy)]
struct NameIndex {
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

/// Ranks one steered name: the phases below, in order.
fn rank_steered(
    steered: &SteeredName,
    nodes: &[Node],
    geo: &GeoDb,
    measured: &ZoneLatency,
    damping: &mut DampingState,
    name: NameIndex,
    now: SystemTime,
) -> SteeredRanking {
    let rows = Rows::of(steered);
    let columns = Columns::of(steered, geo, measured);
    let head_depth = steered.answers + START_SLACK;
    let depth = if rows.widest <= WHOLE_RANKING_NODES {
        rows.widest.max(head_depth)
    } else if steered.spreads() {
        head_depth + SPREAD_SLACK
    } else {
        head_depth
    };
    let (profiles, column_profile, geo_rule) = profile_columns(steered, geo, measured, &columns);
    let full = FullRanking {
        candidates: candidate_lists(steered, nodes, measured, &rows, &profiles, now),
        row_group: rows.group.clone(),
        column_profile,
        extra_positions: columns
            .extra()
            .map(|(place, _)| place.coordinates.map(|c| UnitVector::of(&c)))
            .collect(),
        one_by_one: columns.one_by_one(geo),
    };
    let (mut starts, undamped) = rank_starts(&full, &rows, geo, depth, profiles.len(), &columns);
    drop(profiles);
    let choices = carrier_choices(steered, nodes, measured, &columns, now);
    let (classes, table) = damp_into_classes(
        Damping {
            steered,
            nodes,
            geo,
            rows: &rows,
            full: &full,
            depth,
            now,
        },
        &mut starts,
        &undamped,
        choices.as_deref(),
        damping,
        name,
        columns.count(),
    );
    drop((undamped, starts, choices));
    let (heads, head_of_class) = heads_of(&classes, head_depth);
    let lookups = Lookups::of(
        steered,
        &columns,
        &classes,
        &table,
        &geo_rule,
        &head_of_class,
    );
    SteeredRanking {
        reachable_runs: (row_reach(steered, table.len(), &geo_rule).iter())
            .zip(table.iter())
            .map(|(reach, cells)| ReachableRuns::of(cells, reach.as_deref(), classes.len()))
            .collect(),
        classes_of_node: ClassesOfNode::of(&classes),
        classes,
        rows: Arc::new(table),
        row_classes: lookups.row_classes,
        effective_classes: lookups.effective_classes,
        geo_rule: Arc::new(geo_rule),
        subnets: Arc::new(lookups.subnets),
        groups: Arc::new(lookups.groups),
        place_columns: columns.place_columns(),
        heads,
        head_of_class,
        located_heads: Arc::new(lookups.located_heads),
        full,
        draw_weights: draw_weights(steered, nodes, measured, now).into(),
    }
}

/// One row's runs where a query can read it (the reach), clipped to it, grouped by class.
/// A rule's row is read where it is the column's geo rule; a row subnet rules lead to,
/// anywhere. Split classes hold few of a row's runs (a tenth on the rebuild benchmark): a
/// build reads theirs alone.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ReachableRuns {
    /// Class `c`'s runs are `runs[first[c]..first[c + 1]]`, in column order.
    first: Vec<u32>,
    /// Column ranges, as (start, end).
    runs: Vec<(u32, u32)>,
}

impl ReachableRuns {
    /// The runs of `cells` within `reach` (`None`: everywhere), for `classes` classes.
    fn of(cells: &RunArray, reach: Option<&[std::ops::Range<usize>]>, classes: usize) -> Self {
        let mut clipped: Vec<(std::ops::Range<usize>, u32)> = Vec::new();
        match reach {
            Some(reach) => {
                (reach.iter()).for_each(|range| clipped.extend(cells.runs_within(range.clone())))
            }
            None => clipped.extend(cells.runs()),
        }
        // Counted, then placed: each class's runs in column order.
        let mut first = vec![0u32; classes + 1];
        for (_, class) in &clipped {
            if let Some(count) = first.get_mut(*class as usize + 1) {
                *count += 1;
            }
        }
        for c in 1..first.len() {
            first[c] += first[c - 1];
        }
        let mut next = first.clone();
        let mut runs = vec![(0, 0); first.last().map_or(0, |&n| n as usize)];
        for (columns, class) in clipped {
            if let Some(at) = next.get_mut(class as usize)
                && let Some(slot) = runs.get_mut(*at as usize)
            {
                *slot = (columns.start as u32, columns.end as u32);
                *at += 1;
            }
        }
        ReachableRuns { first, runs }
    }

    /// Class `class`'s runs, in column order.
    pub(crate) fn of_class(&self, class: u32) -> impl Iterator<Item = std::ops::Range<usize>> {
        let c = class as usize;
        let span = match (self.first.get(c), self.first.get(c + 1)) {
            (Some(&from), Some(&to)) => from as usize..to as usize,
            _ => 0..0,
        };
        (self.runs.get(span).unwrap_or_default().iter())
            .map(|&(start, end)| start as usize..end as usize)
    }
}

/// Per row, where a query can read it: every column for a row subnet rules lead to (a
/// subnet rule is taken where it comes before the column's geo rule), else the columns
/// whose geo rule it is.
fn row_reach(
    steered: &SteeredName,
    rows: usize,
    geo_rule: &RunArray,
) -> Vec<Option<Vec<std::ops::Range<usize>>>> {
    let mut reach: Vec<Option<Vec<std::ops::Range<usize>>>> = (0..rows)
        .map(|row| {
            let by_subnet = (steered.rules.get(row)).is_some_and(|r| !r.subnets.is_empty());
            (!by_subnet).then(Vec::new)
        })
        .collect();
    for (columns, row) in geo_rule.runs() {
        if let Some(Some(ranges)) = reach.get_mut(row as usize) {
            match ranges.last_mut() {
                Some(last) if last.end == columns.start => last.end = columns.end,
                _ => ranges.push(columns),
            }
        }
    }
    reach
}

/// The rows of a steered name's table: its rules, then the `default` pseudo-rule.
struct Rows<'a> {
    /// Each row's candidates.
    candidates: Vec<&'a Candidates>,
    /// Row → its candidate group (the first row with the same candidates).
    group: Vec<usize>,
    /// The catch-all rule (the last one when none is written).
    catch_all: usize,
    /// The most candidates of any row.
    widest: usize,
    /// How each row's answers spread (`None`: they do not).
    spread: Vec<Option<SpreadWithin>>,
}

impl<'a> Rows<'a> {
    fn of(steered: &'a SteeredName) -> Self {
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
        let candidates: Vec<&Candidates> = steered
            .rules
            .iter()
            .map(|r| &r.candidates)
            .chain(std::iter::once(default_candidates))
            .collect();
        let spread: Vec<Option<SpreadWithin>> = (0..candidates.len())
            .map(|row| steered.row_spread(row))
            .collect();
        // Rows with the same candidates and spreading (the default pseudo-rule repeats the
        // catch-all) rank alike before damping: ranked once.
        let group: Vec<usize> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (0..i)
                    .find(|&e| std::ptr::eq(candidates[e], *c) && spread[e] == spread[i])
                    .unwrap_or(i)
            })
            .collect();
        let widest = candidates.iter().map(|c| c.nodes.len()).max().unwrap_or(0);
        Rows {
            candidates,
            group,
            catch_all,
            widest,
            spread,
        }
    }

    /// The row a client at `place` gets without a subnet rule: the first rule whose geos
    /// match, the catch-all, or (not located) the default.
    fn geo_rule(&self, steered: &SteeredName, place: &Place, located: bool) -> u16 {
        let rule = if !located {
            if steered.default.candidates.is_some() {
                steered.rules.len()
            } else {
                self.catch_all
            }
        } else {
            steered
                .rules
                .iter()
                .position(|r| r.is_catch_all() || r.geos.iter().any(|g| g.matches(place)))
                .unwrap_or(self.catch_all)
        };
        rule.min(u16::MAX as usize) as u16
    }
}

/// The columns of a steered name's table: the database's places, the unlocated
/// pseudo-place, then every measured prefix group, which stands where the database puts
/// its network.
struct Columns<'a> {
    places: &'a [Place],
    /// Where clients the database cannot place are taken to be.
    unlocated: Place,
    /// The measured groups, with their networks.
    groups: Vec<(ClientGroup, Vec<Prefix>)>,
    /// Per group, the database place of its network (`None`: not located).
    group_places: Vec<Option<usize>>,
}

impl<'a> Columns<'a> {
    fn of(steered: &SteeredName, geo: &'a GeoDb, measured: &ZoneLatency) -> Self {
        let places = geo.places();
        let groups = measured.group_columns();
        let group_places = groups
            .iter()
            .map(|(_, networks)| {
                geo.locate(networks[0].network())
                    .place
                    .map(|id| id as usize)
                    .filter(|&id| id < places.len())
            })
            .collect();
        Columns {
            places,
            unlocated: Place {
                coordinates: steered.default.location,
                ..Place::default()
            },
            groups,
            group_places,
        }
    }

    /// Columns in all.
    fn count(&self) -> usize {
        self.places.len() + 1 + self.groups.len()
    }

    /// The database's places and the unlocated pseudo-place.
    fn place_columns(&self) -> usize {
        self.places.len() + 1
    }

    /// The columns after the database's places: where their clients are, whether the
    /// database located them, and their group.
    fn extra(&self) -> impl Iterator<Item = (&Place, Option<&ClientGroup>)> + '_ {
        std::iter::once((&self.unlocated, None)).chain(
            self.groups
                .iter()
                .zip(&self.group_places)
                .map(|((group, _), place)| {
                    let place = place.map_or(&self.unlocated, |id| &self.places[id]);
                    (place, Some(group))
                }),
        )
    }

    /// Whether an extra column's clients were located by the database.
    fn extra_located(&self) -> impl Iterator<Item = bool> + '_ {
        std::iter::once(false).chain(self.group_places.iter().map(Option::is_some))
    }

    /// Where a column's clients are, and its group.
    fn at(&self, column: usize) -> (&Place, Option<&ClientGroup>) {
        match self.places.get(column) {
            Some(place) => (place, None),
            None => {
                let extra = column - self.places.len();
                match extra.checked_sub(1) {
                    None => (&self.unlocated, None),
                    Some(g) => {
                        let place =
                            self.group_places[g].map_or(&self.unlocated, |id| &self.places[id]);
                        (place, Some(&self.groups[g].0))
                    }
                }
            }
        }
    }

    /// Columns not in the database's Morton order (places without coordinates, and the
    /// columns after the places): ranked one by one.
    fn one_by_one(&self, geo: &GeoDb) -> Vec<usize> {
        let mut columns: Vec<usize> = if geo.sorted_positions().len() == self.places.len() {
            Vec::new()
        } else {
            self.places
                .iter()
                .enumerate()
                .filter(|(_, p)| p.coordinates.is_none())
                .map(|(column, _)| column)
                .collect()
        };
        columns.extend(self.places.len()..self.count());
        columns
    }
}

/// Profiles, and each column's profile and geo rule. A place's fences and measured groups
/// follow from its continent, country and subdivision, so they are worked out once per
/// region code, not per place; so is the first rule a located client matches.
fn profile_columns(
    steered: &SteeredName,
    geo: &GeoDb,
    measured: &ZoneLatency,
    columns: &Columns,
) -> (Vec<Profile>, RunArray, RunArray) {
    let rows = Rows::of(steered);
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
    let mut column_profile = RunBuilder::default();
    let mut geo_rule = RunBuilder::default();
    let regions = geo.regions();
    let per_region: Vec<(u32, u16)> = regions
        .example
        .iter()
        .map(|&id| {
            let place = &columns.places[id as usize];
            (
                new_profile(place, None, true),
                rows.geo_rule(steered, place, true),
            )
        })
        .collect();
    // Places of one region are mostly neighbours in the order: a run at a time.
    for same in regions.of_place.chunk_by(|a, b| a == b) {
        let (profile, rule) = per_region[same[0] as usize];
        column_profile.push_many(profile, same.len());
        geo_rule.push_many(u32::from(rule), same.len());
    }
    for ((place, group), located) in columns.extra().zip(columns.extra_located()) {
        column_profile.push(new_profile(place, group, located));
        geo_rule.push(u32::from(rows.geo_rule(steered, place, located)));
    }
    (profiles, column_profile.finish(), geo_rule.finish())
}

/// The candidates of each (candidate group, profile): the row's nodes allowed inside the
/// profile's fences that have an address, with the terms they are scored by there.
fn candidate_lists(
    steered: &SteeredName,
    nodes: &[Node],
    measured: &ZoneLatency,
    rows: &Rows,
    profiles: &[Profile],
    now: SystemTime,
) -> Vec<Vec<Vec<Candidate>>> {
    let node_vectors: Vec<UnitVector> = nodes.iter().map(|n| UnitVector::of(&n.location)).collect();
    rows.candidates
        .iter()
        .enumerate()
        .map(|(row, row_nodes)| {
            if rows.group[row] != row {
                return Vec::new();
            }
            let spreads = rows.spread.get(row).is_some_and(Option::is_some);
            profiles
                .iter()
                .map(|profile| {
                    let fences: Vec<&GeoSet> =
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
                                    (id, node, score_weight(node, spreads)),
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
        .collect()
}

/// Each candidate group's start at every column, before damping: by regions for the
/// places in Morton order, one by one for the rest.
fn rank_starts(
    full: &FullRanking,
    rows: &Rows,
    geo: &GeoDb,
    depth: usize,
    profiles: usize,
    columns: &Columns,
) -> (Starts, Vec<Vec<u32>>) {
    let points_by_profile =
        full.profile_slices(geo, profiles.max(1), std::iter::once(0..columns.count()));
    let mut starts = Starts::default();
    let mut undamped: Vec<Vec<u32>> = vec![Vec::new(); rows.candidates.len()];
    for (group, out) in undamped.iter_mut().enumerate() {
        if rows.group[group] != group {
            continue;
        }
        *out = vec![0; columns.count()];
        for (profile, slices) in points_by_profile.iter().enumerate() {
            let list = &full.candidates[group][profile];
            rank_slices_into(slices, list, depth, &mut starts, out);
        }
        for &column in &full.one_by_one {
            let at = full.position(column, geo);
            let start = start_at(full.candidates(group, column), at.as_ref(), depth);
            out[column] = starts.intern(&start);
        }
    }
    (starts, undamped)
}

/// Carrier choices per column: for a node with several addresses of a family, the one
/// measured best for the column's clients (an unmeasured line counts at the node's own
/// expected latency). `None` without line measurements, the common case, kept cheap.
fn carrier_choices(
    steered: &SteeredName,
    nodes: &[Node],
    measured: &ZoneLatency,
    columns: &Columns,
    now: SystemTime,
) -> Option<Vec<CarrierChoice>> {
    if measured.addresses.is_empty() {
        return None;
    }
    let mut shared: HashMap<Vec<(NodeId, IpAddr)>, CarrierChoice> = HashMap::new();
    let mut choice_at = |place: &Place, prefix: Option<&ClientGroup>| -> CarrierChoice {
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
            shared
                .entry(chosen)
                .or_insert_with_key(|k| Arc::from(k.as_slice())),
        )
    };
    Some(
        (0..columns.count())
            .map(|column| {
                let (place, group) = columns.at(column);
                choice_at(place, group)
            })
            .collect(),
    )
}

/// What damping a row reads besides the row itself.
struct Damping<'a> {
    steered: &'a SteeredName,
    nodes: &'a [Node],
    geo: &'a GeoDb,
    rows: &'a Rows<'a>,
    full: &'a FullRanking,
    depth: usize,
    now: SystemTime,
}

/// Damps every cell (an incumbent stays on top until a challenger beats it by the margin
/// for the hold time) and interns the cells' classes: (damped start, carrier choice).
/// Returns the classes and the table (`[row][column]` → class).
#[allow(clippy::too_many_arguments)]
fn damp_into_classes(
    with: Damping,
    starts: &mut Starts,
    undamped: &[Vec<u32>],
    choices: Option<&[CarrierChoice]>,
    damping: &mut DampingState,
    name: NameIndex,
    column_count: usize,
) -> (Vec<Class>, Vec<RunArray>) {
    let positions = node_positions(with.full, with.nodes.len());
    let mut classes = ClassInterner::default();
    let mut promoted_starts = PromotedStarts::default();
    let mut table: Vec<RunArray> = Vec::with_capacity(with.rows.candidates.len());
    for (row_index, candidates_of_row) in with.rows.candidates.iter().enumerate() {
        let group = with.rows.group[row_index];
        let standing = Standing::of_row(with.nodes, candidates_of_row);
        let mut incumbents = damping.take_row(name.zone, name.steered, row_index);
        incumbents.resize(column_count);
        let mut row = RunBuilder::default();
        // Without carrier choices or spread groups, a run of columns of one start whose
        // cells damping leaves as they are (every cell at a policy load) is one class.
        let by_runs = choices.is_none() && with.rows.spread.get(group).copied().flatten().is_none();
        let of_group = undamped.get(group).map_or(&[][..], Vec::as_slice);
        let mut column = 0;
        while column < column_count.min(of_group.len()) {
            crate::parallel::yield_to_builds();
            let start_id = of_group[column];
            let same = of_group[column..]
                .iter()
                .take_while(|&&s| s == start_id)
                .count();
            let run = column..column + same;
            let top = starts.list.get(start_id as usize).and_then(|s| s.top);
            if by_runs && incumbents.settled(run.clone(), top) {
                incumbents.hold_run(run, top);
                row.push_many(classes.class(starts, start_id, None, UNSPREAD), same);
                column += same;
                continue;
            }
            for column in run {
                let cell = Cell {
                    group,
                    column,
                    start: start_id,
                };
                let damped = DampedCell {
                    with: &with,
                    positions: &positions,
                    standing: &standing,
                };
                let start = damped.start(cell, starts, &mut incumbents, &mut promoted_starts);
                let groups = damped.spread_groups(cell, &starts.list[start as usize]);
                row.push(classes.class(starts, start, choices.map(|c| &c[column]), groups));
            }
            column += same;
        }
        damping.put_row(name.zone, name.steered, row_index, incumbents);
        table.push(row.finish());
    }
    (classes.classes, table)
}

/// Where each node is in each candidate list (`[group][profile][node]`), for damping
/// cells one by one.
fn node_positions(full: &FullRanking, node_count: usize) -> Vec<Vec<Vec<u32>>> {
    full.candidates
        .iter()
        .map(|profiles| {
            profiles
                .iter()
                .map(|list| {
                    let mut position = vec![u32::MAX; node_count];
                    for (i, c) in list.iter().enumerate() {
                        if let Some(slot) = position.get_mut(c.id) {
                            *slot = i as u32;
                        }
                    }
                    position
                })
                .collect()
        })
        .collect()
}

/// Starts with an incumbent kept on top, by (start, incumbent, group, profile).
type PromotedStarts = FxHashMap<(u32, NodeId, usize, usize), u32>;

/// Which nodes of a row may trade places under damping: same tier kind and fallback level.
struct Standing<'a> {
    nodes: &'a [Node],
    level_of: Vec<Option<u8>>,
}

impl<'a> Standing<'a> {
    fn of_row(nodes: &'a [Node], candidates: &Candidates) -> Self {
        let mut level_of: Vec<Option<u8>> = vec![None; nodes.len()];
        for &(id, level) in &candidates.nodes {
            if let Some(slot) = level_of.get_mut(id) {
                slot.get_or_insert(level);
            }
        }
        Standing { nodes, level_of }
    }

    fn of(&self, id: NodeId) -> (bool, Option<u8>) {
        let backup = self.nodes.get(id).is_some_and(|n| n.tier == Tier::Backup);
        (backup, self.level_of.get(id).copied().flatten())
    }

    fn same(&self, a: NodeId, b: NodeId) -> bool {
        self.of(a) == self.of(b)
    }
}

/// One cell of a row: its group, its column, and its undamped start.
#[derive(Clone, Copy)]
struct Cell {
    group: usize,
    column: usize,
    start: u32,
}

/// What damping one cell reads.
struct DampedCell<'a, 'w> {
    with: &'a Damping<'w>,
    positions: &'a [Vec<Vec<u32>>],
    standing: &'a Standing<'a>,
}

impl DampedCell<'_, '_> {
    /// Where the spread groups of the cell's (damped) start begin.
    fn spread_groups(&self, cell: Cell, start: &RankedStart) -> Groups {
        let Some(within) = self.with.rows.spread.get(cell.group).copied().flatten() else {
            return UNSPREAD;
        };
        let full = self.with.full;
        let profile = full.column_profile.at_or(cell.column, 0) as usize;
        let position = self
            .positions
            .get(cell.group)
            .and_then(|p| p.get(profile))
            .map_or(&[][..], Vec::as_slice);
        let at = full.position(cell.column, self.with.geo);
        group_starts(
            start,
            within,
            (full.candidates(cell.group, cell.column), position),
            at.as_ref(),
            |a, b| self.standing.same(a, b),
        )
    }

    /// The cell's start after damping: its incumbent kept on top while a challenger has not
    /// beaten it by the margin for the hold time. Records the cell's new incumbent.
    fn start(
        &self,
        cell: Cell,
        starts: &mut Starts,
        incumbents: &mut DampingRow,
        promoted_starts: &mut PromotedStarts,
    ) -> u32 {
        let Cell {
            group,
            column,
            start: start_id,
        } = cell;
        let top = starts.list[start_id as usize].top;
        let held = match incumbents.get(column) {
            Some(held) if Some(held.node) != top => held,
            _ => {
                let state = top.map(|node| Incumbent {
                    node,
                    challenger: None,
                });
                incumbents.set(column, state);
                return start_id;
            }
        };
        // The top changed under an incumbent: damp the cell.
        let full = self.with.full;
        let profile = full.column_profile.at_or(column, 0) as usize;
        let position = self
            .positions
            .get(group)
            .and_then(|p| p.get(profile))
            .map_or(&[][..], Vec::as_slice);
        let at = full.position(column, self.with.geo);
        let candidates = full.candidates(group, column);
        let (state, kept_on_top) = damp_start(
            held,
            &starts.list[start_id as usize],
            candidates,
            position,
            at.as_ref(),
            |a, b| self.standing.same(a, b),
            self.with.now,
            &self.with.steered.latency,
        );
        incumbents.set(column, state);
        if !kept_on_top {
            return start_id;
        }
        let key = (start_id, held.node, group, profile);
        if let Some(&id) = promoted_starts.get(&key) {
            return id;
        }
        let start = &starts.list[start_id as usize];
        let start = promoted(start, held.node, self.with.depth, candidates, position);
        let id = starts.intern(&start);
        promoted_starts.insert(key, id);
        id
    }
}

/// Classes, interned: (start, carrier choice) → class.
#[derive(Default)]
struct ClassInterner {
    /// The one empty carrier choice every class without choices shares (heads group
    /// classes by its address).
    no_choice: CarrierChoice,
    classes: Vec<Class>,
    class_of: FxHashMap<ClassKey, u32>,
    /// Classes without carrier choices, by start: most cells, found by indexing.
    class_of_start: Vec<u32>,
}

impl ClassInterner {
    fn class(
        &mut self,
        starts: &Starts,
        start_id: u32,
        choice: Option<&CarrierChoice>,
        groups: Groups,
    ) -> u32 {
        let classes = &mut self.classes;
        let mut new_class = |lines: CarrierChoice| {
            classes.push(Class {
                start: starts.list[start_id as usize].clone(),
                lines,
                groups,
            });
            (classes.len() - 1) as u32
        };
        match choice {
            None if groups == UNSPREAD => {
                let index = start_id as usize;
                if self.class_of_start.len() <= index {
                    self.class_of_start.resize(index + 1, u32::MAX);
                }
                if self.class_of_start[index] == u32::MAX {
                    self.class_of_start[index] = new_class(Arc::clone(&self.no_choice));
                }
                self.class_of_start[index]
            }
            None => *self
                .class_of
                .entry((start_id, self.no_choice.as_ptr(), groups))
                .or_insert_with(|| new_class(Arc::clone(&self.no_choice))),
            Some(choice) => *self
                .class_of
                .entry((start_id, choice.as_ptr(), groups))
                .or_insert_with(|| new_class(Arc::clone(choice))),
        }
    }
}

/// Heads: classes whose starts begin alike (the first `head_depth` of each family), and
/// each class's head.
fn heads_of(classes: &[Class], head_depth: usize) -> (Vec<Class>, Vec<u32>) {
    let mut head_index: FxHashMap<(RankedStart, *const (NodeId, IpAddr), Groups), u32> =
        FxHashMap::default();
    let mut heads: Vec<Class> = Vec::new();
    let head_of_class: Vec<u32> = classes
        .iter()
        .map(|class| {
            let mut start = class.start.clone();
            start.top = None;
            // A spread group may reach past the head's depth: spread classes are their own
            // heads.
            for f in (0..2).filter(|_| class.groups == UNSPREAD) {
                if start.families[f].len() > head_depth {
                    start.families[f].truncate(head_depth);
                    start.complete[f] = false;
                }
            }
            // Classes of a head share its answer only if they spread alike.
            *head_index
                .entry((start.clone(), class.lines.as_ptr(), class.groups))
                .or_insert_with(|| {
                    heads.push(Class {
                        start,
                        lines: Arc::clone(&class.lines),
                        groups: class.groups,
                    });
                    (heads.len() - 1) as u32
                })
        })
        .collect();
    (heads, head_of_class)
}

/// What a query looks a client up in: the rules' subnets, the measured groups, the address
/// table of heads, and which classes a row or the located cells use.
struct Lookups {
    subnets: SubnetRules,
    groups: SubnetRules,
    row_classes: Vec<Vec<u32>>,
    effective_classes: Vec<u32>,
    located_heads: RunArray,
}

impl Lookups {
    fn of(
        steered: &SteeredName,
        columns: &Columns,
        classes: &[Class],
        table: &[RunArray],
        geo_rule: &RunArray,
        head_of_class: &[u32],
    ) -> Self {
        let mut subnets = SubnetRules::new();
        for (i, rule) in steered.rules.iter().enumerate() {
            for prefix in &rule.subnets {
                subnets.insert(prefix, i as u32);
            }
        }
        let mut groups = SubnetRules::new();
        for (g, (_, networks)) in columns.groups.iter().enumerate() {
            for prefix in networks {
                groups.insert(prefix, g as u32);
            }
        }
        let distinct = |cells: &mut dyn Iterator<Item = u32>| {
            let mut seen = vec![false; classes.len()];
            cells
                .filter(|&c| !std::mem::replace(&mut seen[c as usize], true))
                .collect::<Vec<u32>>()
        };
        let row_classes = table
            .iter()
            .map(|row| distinct(&mut row.runs().map(|(_, class)| class)))
            .collect();
        // The class each column's clients get without a subnet rule (its geo rule's row),
        // run by run.
        let effective = || {
            geo_rule.runs().flat_map(|(columns, rule)| {
                table
                    .get(rule as usize)
                    .into_iter()
                    .flat_map(move |row| row.runs_within(columns.clone()))
            })
        };
        let effective_classes = distinct(&mut effective().map(|(_, class)| class));
        // Heads by place: a query finds its place in the database's shared address map,
        // then its head here.
        let place_columns = columns.place_columns();
        let mut located_heads = RunBuilder::default();
        for (run, class) in effective().take_while(|(run, _)| run.start < place_columns) {
            let head = head_of_class.get(class as usize).copied().unwrap_or(0);
            located_heads.push_many(head, run.end.min(place_columns) - run.start);
        }
        let located_heads = located_heads.finish();
        Lookups {
            subnets,
            groups,
            row_classes,
            effective_classes,
            located_heads,
        }
    }
}
