//! The answer builder: rankings + availability → a `Snapshot`.
//!
//! What depends on health happens here, at every health change: picking each class's
//! answer from its start (once per class, not per place), reading on into the healthy nodes
//! where a class's start cannot decide, and encoding and interning the answers. Building is
//! pure, so a snapshot can be built, inspected and thrown away (as `check` and failed
//! reloads do). The words (class, head, split, pair) are defined in `steer`'s glossary.

use std::net::IpAddr;
use std::sync::Arc;

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::draw::{DrawMember, MAX_DRAW, stable_hash};
use super::snapshot::*;
use super::zone::{build_zone, name_key};
use crate::geo::GeoDb;
use crate::policy::{Node, NodeId, RecordType, SteeredName, Tier, Zone};
use crate::runs::{RunArray, RunBuilder, RunCursor};
use crate::steer::regions::{Pieces, RankedStart, Starts};
use crate::steer::spread::{Groups, group_bounds};
use crate::steer::table::{CarrierChoice, FAMILY_ELIGIBLE, SteeredRanking};
use crate::steer::{Availability, Pick, Rankings, pick};
use crate::wire::push_body;

/// Builds the snapshot for a set of zones against a database, from rankings made by
/// [`rank_all`](crate::steer::rank_all) for the same zones and database, with each node's
/// availability (`availability[zone][node]`; missing entries count as up).
pub fn build(
    zones: &[Zone],
    geo: Arc<GeoDb>,
    rankings: &Rankings,
    availability: &[Vec<Availability>],
) -> Snapshot {
    build_with_lines(zones, geo, rankings, availability, &[], Before::default())
}

/// What a build starts from. Tables of the `last` snapshot (built for the same zones) whose
/// nodes' states did not change are kept, and the rest start from theirs and from what was
/// ranked `ahead` of them ([`crate::answer::rank_ahead_of`]). A table of the snapshot
/// before it (`undone`) whose nodes are back in the states it was built for is taken back
/// whole: a change undone (a flap, a drain cancelled) costs no build.
#[derive(Debug, Clone, Copy, Default)]
pub struct Before<'a> {
    /// The snapshot published last.
    pub last: Option<&'a Snapshot>,
    /// The answers `last` was built from (or those before them, when it changed no state):
    /// what a change undone takes back.
    pub undone: Option<&'a Snapshot>,
    /// What was ranked ahead of `last`.
    pub ahead: Option<&'a Ahead>,
}

/// [`build`] after a health change, as the publisher builds, from what was built `before`
/// ([`Before`]). For benchmarks of a change's cost.
pub fn rebuild(
    zones: &[Zone],
    geo: Arc<GeoDb>,
    rankings: &Rankings,
    availability: &[Vec<Availability>],
    before: Before,
) -> Snapshot {
    build_with_lines(zones, geo, rankings, availability, &[], before)
}

/// [`build`], with the carrier lines found down: `down_lines[zone][node]` has bit `i` set
/// when the node's `i`-th address fails its own check (missing entries: every line up).
/// Answers name a node by its lines that are up. A steered name of the last snapshot built
/// from the same ranking and the same states of its nodes is kept, not picked again: a
/// health change rebuilds only the names that can answer with the node; and healthy starts
/// ranked `ahead` of it spare ranking the cells a failure splits.
pub(super) fn build_with_lines<'a>(
    zones: &[Zone],
    geo: Arc<GeoDb>,
    rankings: &Rankings,
    availability: &[Vec<Availability>],
    down_lines: &[Vec<u64>],
    Before {
        last,
        undone,
        ahead,
    }: Before<'a>,
) -> Snapshot {
    let mut built: Vec<ZoneAnswers> = zones
        .iter()
        .enumerate()
        .map(|(i, zone)| {
            let mut answers = build_zone(i, zone);
            let availability = availability.get(i).map_or(&[][..], Vec::as_slice);
            let down_lines = down_lines.get(i).map_or(&[][..], Vec::as_slice);
            let zone_of = |s: &'a Snapshot| s.zone(&answers.origin);
            let (before, undone) = (last.and_then(zone_of), undone.and_then(zone_of));
            let keys = draw_keys(zone);
            // Names to pick again, side by side on every core; the rest are kept.
            let mut tables: Vec<Option<SteeredTable>> = Vec::new();
            let mut stale: Vec<StaleName> = Vec::new();
            for (n, (steered, ranking)) in zone.steered.iter().zip(rankings.of_zone(i)).enumerate()
            {
                let states = node_states(steered, availability, down_lines);
                // The table built last from the same ranking, if any: kept whole when its
                // nodes' states are the same, else the start of the new one; or the one
                // before it, when a change since is undone.
                let key = name_key(&steered.name);
                let table_of = |z: &'a ZoneAnswers| {
                    (z.steered(&key)).filter(|t| Arc::ptr_eq(&t.table, &ranking.rows))
                };
                let before = before.and_then(table_of);
                let kept = (before.into_iter().chain(undone.and_then(table_of)))
                    .find(|t| t.node_states == states);
                if kept.is_none() {
                    let ahead = before.and_then(|t| ahead?.of_table(i, n, t));
                    stale.push((tables.len(), steered, ranking, states, (before, ahead)));
                }
                tables.push(kept.cloned());
            }
            let picked =
                crate::parallel::each_taken(stale, |(at, steered, ranking, states, before)| {
                    let lists = (availability, down_lines, &keys[..]);
                    let health = PickInputs::of(zone, steered, ranking, lists);
                    (
                        at,
                        build_steered(steered, ranking, &health, &geo, states, before),
                    )
                });
            for (at, table) in picked {
                tables[at] = Some(table);
            }
            for (steered, table) in zone.steered.iter().zip(tables) {
                if let Some(table) = table {
                    answers
                        .names
                        .insert(name_key(&steered.name), NameNode::Steered(table));
                }
            }
            answers
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

/// A steered name to pick again: its place among the zone's names, its policy, its ranking,
/// its nodes' states, and its table from before (same ranking) with the healthy starts
/// ranked ahead of it, if any.
type StaleName<'a> = (
    usize,
    &'a SteeredName,
    &'a SteeredRanking,
    Arc<[NodeState]>,
    (Option<&'a SteeredTable>, Option<&'a [HealthyStarts]>),
);

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
        /// Per pair, its answer plus one (0: none yet).
        answers: Vec<u32>,
    },
    Sparse(FxHashMap<(u32, u32), u32>),
}

impl PairAnswers {
    /// Entries of a dense table at most (4 bytes each).
    const DENSE_ENTRIES: usize = 1 << 20;

    /// `split`: by class, whether it is split.
    fn new(split: &[bool], healthy_starts: usize) -> Self {
        let mut row_of_class = vec![u32::MAX; split.len()];
        let mut rows = 0usize;
        for (row, _) in row_of_class.iter_mut().zip(split).filter(|(_, s)| **s) {
            *row = rows as u32;
            rows += 1;
        }
        match rows.checked_mul(healthy_starts) {
            Some(entries) if entries <= Self::DENSE_ENTRIES => PairAnswers::Dense {
                row_of_class,
                healthy_starts,
                // Zeroed memory: pages the pairs met never touch are never written.
                answers: vec![0; entries],
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
                // An answer plus one; 0 while the pair has none.
                match answers.get_mut(at) {
                    Some(slot) if *slot == 0 => {
                        let answer = pick();
                        *slot = answer.saturating_add(1);
                        answer
                    }
                    Some(slot) => *slot - 1,
                    None => pick(),
                }
            }
            PairAnswers::Sparse(map) => *map.entry((class, healthy_start)).or_insert_with(pick),
        }
    }
}

/// Each node's draw key: a hash of the zone's and the node's names, so a network draws the
/// same node on every instance and after restarts.
pub(super) fn draw_keys(zone: &Zone) -> Vec<u64> {
    let origin = zone.origin.to_string().to_ascii_lowercase();
    zone.nodes
        .iter()
        .map(|n| stable_hash(&[origin.as_bytes(), n.name.as_bytes()]))
        .collect()
}

/// What a pick reads besides the ranking: the nodes, their availability, the answer size,
/// and what spread groups draw by.
pub(super) struct PickInputs<'a> {
    nodes: &'a [Node],
    availability: &'a [Availability],
    answers: usize,
    /// Per node, its draw key.
    draw_keys: &'a [u64],
    /// Per node, its share of a draw (empty without `spread`).
    draw_weights: &'a [u32],
    /// Per node, its carrier lines that are down (bit `i`: its `i`-th address).
    down_lines: &'a [u64],
}

impl<'a> PickInputs<'a> {
    /// What picks for `steered` read: the zone's nodes, and per node its availability, its
    /// carrier lines down and its draw key.
    pub(super) fn of(
        zone: &'a Zone,
        steered: &SteeredName,
        ranking: &'a SteeredRanking,
        (availability, down_lines, draw_keys): (&'a [Availability], &'a [u64], &'a [u64]),
    ) -> Self {
        PickInputs {
            nodes: &zone.nodes,
            availability,
            answers: steered.answers,
            draw_keys,
            draw_weights: &ranking.draw_weights,
            down_lines,
        }
    }

    pub(super) fn up(&self, id: NodeId) -> bool {
        self.availability
            .get(id)
            .copied()
            .unwrap_or(Availability::Up)
            .answerable()
    }

    /// Whether node `id`'s line at `ip` is up (an address that is no checked line is).
    fn line_up(&self, id: NodeId, ip: IpAddr) -> bool {
        let Some(&down) = self.down_lines.get(id).filter(|&&d| d != 0) else {
            return true;
        };
        let position = self
            .nodes
            .get(id)
            .and_then(|n| n.addresses.iter().position(|a| *a == ip));
        position.is_none_or(|i| i >= 64 || down & (1u64 << i) == 0)
    }

    fn backup(&self, id: NodeId) -> bool {
        self.nodes.get(id).is_some_and(|n| n.tier == Tier::Backup)
    }

    /// The spread group a family's answer draws from: the up members of the group holding
    /// its first node, where group starts are `starts` over `ranked`. Empty when the answer
    /// does not spread (no group, or one member up).
    fn spread_group(&self, ranked: &[NodeId], starts: u64, pick: &Pick) -> Vec<NodeId> {
        // Without `spread`, no group: a staged drain moves networks to standbys instead.
        let Some(&first) = pick.nodes.first() else {
            return Vec::new();
        };
        if starts == u64::MAX || pick.servfail || !self.up(first) {
            return Vec::new();
        }
        let Some(at) = ranked.iter().position(|&id| id == first) else {
            return Vec::new();
        };
        let (from, to) = group_bounds(starts, at, ranked.len());
        let members: Vec<NodeId> = ranked[from..to]
            .iter()
            .copied()
            .filter(|&id| self.up(id))
            .take(MAX_DRAW)
            .collect();
        if members.len() < 2 {
            Vec::new()
        } else {
            members
        }
    }

    /// A group member as the draw sees it.
    fn draw_member(&self, id: NodeId) -> DrawMember {
        let weight = self.nodes.get(id).map_or(1, |n| n.weight.max(1));
        DrawMember {
            key: self.draw_keys.get(id).copied().unwrap_or(id as u64),
            weight: self
                .draw_weights
                .get(id)
                .copied()
                .unwrap_or(weight.saturating_mul(1000)),
            drained: match self.availability.get(id) {
                Some(Availability::Draining(share)) => *share,
                _ => 0,
            },
        }
    }

    /// Whether a family's start decides its pick as a pick over the whole ranking would:
    /// it holds every eligible node, or enough healthy primaries to stop a pick early, or
    /// (primaries all being ranked before backups) enough healthy backups after them.
    pub(super) fn decided_by(&self, start: &RankedStart, family: usize) -> bool {
        self.decided_unless(start, family, None)
    }

    /// [`PickInputs::decided_by`] with node `fallen`, if any, down too: whether the start
    /// would still decide after that node's failure.
    pub(super) fn decided_unless(
        &self,
        start: &RankedStart,
        family: usize,
        fallen: Option<NodeId>,
    ) -> bool {
        let listed = &start.families[family];
        let healthy = |backup: bool| {
            (listed.iter())
                .filter(|&&id| self.up(id) && Some(id) != fallen && self.backup(id) == backup)
                .count()
        };
        start.complete[family]
            || healthy(false) >= self.answers
            || (listed.iter().any(|&id| self.backup(id)) && healthy(true) >= self.answers)
    }
}

/// Picks answers from precomputed rankings for the current availability: once per class,
/// so a health change costs the number of classes, not of places; and cell by cell only
/// where a class's start cannot decide.
fn build_steered(
    steered: &SteeredName,
    ranking: &SteeredRanking,
    health: &PickInputs,
    geo: &GeoDb,
    node_states: Arc<[NodeState]>,
    (before, ahead): (Option<&SteeredTable>, Option<&[HealthyStarts]>),
) -> SteeredTable {
    let mut answers = Answers::new(steered, health);
    let reuse = before.and_then(|b| Reuse::of(b, &node_states));
    if let Some(reuse) = &reuse {
        answers.seed(reuse);
    }
    let mut class_answer = class_answers(ranking, &mut answers, reuse.as_ref());
    let mut head_answer = head_answers(ranking, &class_answer);
    let (mut split_rows, healthy_starts, split_runs) = split_rows(
        ranking,
        &class_answer,
        &mut answers,
        geo,
        (reuse.as_ref(), ahead),
    );
    if reuse.is_some() {
        answers.keep_used(&mut class_answer, &mut head_answer, &mut split_rows);
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
        answers: answers.sets.into(),
        class_answer: class_answer.into(),
        split_rows: split_rows.into(),
        table: Arc::clone(&ranking.rows),
        geo_rule: Arc::clone(&ranking.geo_rule),
        subnets: Arc::clone(&ranking.subnets),
        groups: Arc::clone(&ranking.groups),
        place_columns: ranking.place_columns,
        head_answer: head_answer.into(),
        located_heads: Arc::clone(&ranking.located_heads),
        depends_on_place,
        node_states,
        answer_keys: Arc::new(answers.keys),
        answer_index: Arc::new(answers.interned),
        healthy_starts: healthy_starts.into(),
        split_runs: split_runs.into(),
        // Signed after the build, when the zone is signed.
        signatures: Arc::default(),
    }
}

/// What a table built before from the same ranking lends a new build: the answers of
/// classes that hold none of the nodes whose state changed since.
struct Reuse<'a> {
    before: &'a SteeredTable,
    /// By node: whether its state changed.
    changed: Vec<bool>,
    /// The nodes whose state changed.
    changed_nodes: Vec<NodeId>,
    /// The nodes that can answer now and could not before.
    risen: Vec<NodeId>,
    /// The nodes that could answer before and cannot now.
    fallen: Vec<NodeId>,
}

impl<'a> Reuse<'a> {
    /// `None` when the tables do not answer with the same nodes (then nothing is lent).
    fn of(before: &'a SteeredTable, states: &[NodeState]) -> Option<Self> {
        if before.answer_keys.len() != before.answers.len() {
            return None;
        }
        let (fallen, risen) = fallen_and_risen(&before.node_states, states)?;
        let size = states.iter().map(|s| s.0 + 1).max().unwrap_or(0);
        let mut changed = vec![false; size];
        let mut changed_nodes = Vec::new();
        for (old, new) in before
            .node_states
            .iter()
            .zip(states)
            .filter(|(o, n)| o != n)
        {
            changed[new.0] = true;
            changed_nodes.push(old.0);
        }
        Some(Reuse {
            before,
            changed,
            changed_nodes,
            risen,
            fallen,
        })
    }

    /// Whether any of `nodes` changed.
    fn touches<'n>(&self, mut nodes: impl Iterator<Item = &'n NodeId>) -> bool {
        nodes.any(|&id| self.changed.get(id).copied().unwrap_or(true))
    }
}

/// The nodes that could answer in `old` and cannot in `new`, and those that can now and
/// could not; `None` when the two are not states of the same nodes.
pub(super) fn fallen_and_risen(
    old: &[NodeState],
    new: &[NodeState],
) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
    if old.len() != new.len() || old.iter().zip(new).any(|(o, n)| o.0 != n.0) {
        return None;
    }
    let (mut fallen, mut risen) = (Vec::new(), Vec::new());
    for (o, n) in old.iter().zip(new) {
        match (o.1.answerable(), n.1.answerable()) {
            (true, false) => fallen.push(n.0),
            (false, true) => risen.push(n.0),
            _ => {}
        }
    }
    Some((fallen, risen))
}

impl<'a> Answers<'a> {
    /// None yet.
    fn new(steered: &'a SteeredName, health: &'a PickInputs<'a>) -> Self {
        Answers {
            steered,
            health,
            sets: Vec::new(),
            keys: AnswerKeys::default(),
            key: Vec::new(),
            interned: AnswerIndex::default(),
            seeded: 0,
            changed: Vec::new(),
        }
    }

    /// Starts from the answers of before: a new pick equal to one of them whose nodes did
    /// not change gets its index (answers holding a changed node may read differently now,
    /// so they are not matched). Their index is taken as it was, not hashed again.
    fn seed(&mut self, reuse: &Reuse) {
        self.sets = reuse.before.answers.to_vec();
        self.keys = (*reuse.before.answer_keys).clone();
        self.interned = (*reuse.before.answer_index).clone();
        self.seeded = self.keys.len();
        self.changed = reuse.changed.clone();
    }

    /// Drops the answers nothing refers to any more (those of before that no class kept),
    /// renumbering the references.
    fn keep_used(
        &mut self,
        class_answer: &mut [u32],
        head_answer: &mut [u32],
        split_rows: &mut [RunArray],
    ) {
        let mut used = vec![false; self.sets.len()];
        let answers = class_answer.iter().chain(head_answer.iter());
        for &a in answers.filter(|&&a| a != CLASS_SPLIT) {
            if let Some(u) = used.get_mut(a as usize) {
                *u = true;
            }
        }
        for row in split_rows.iter() {
            for (_, a) in row.runs() {
                if let Some(u) = used.get_mut(a as usize) {
                    *u = true;
                }
            }
        }
        if used.iter().all(|&u| u) {
            return;
        }
        let mut renumbered = vec![0u32; used.len()];
        let mut next = 0u32;
        for (index, &u) in used.iter().enumerate() {
            if u {
                renumbered[index] = next;
                next += 1;
            }
        }
        self.interned
            .retain(|_, a| used.get(*a as usize) == Some(&true));
        let sets = std::mem::take(&mut self.sets).into_iter().zip(&used);
        self.sets = sets.filter(|&(_, &u)| u).map(|(set, _)| set).collect();
        self.keys.retain(&used);
        let new = |a: u32| match a {
            CLASS_SPLIT => CLASS_SPLIT,
            a => renumbered.get(a as usize).copied().unwrap_or(0),
        };
        for a in (class_answer.iter_mut().chain(head_answer.iter_mut()))
            .chain(self.interned.values_mut())
        {
            *a = new(*a);
        }
        for row in split_rows.iter_mut() {
            *row = row.map(new);
        }
    }
}

/// The states of the nodes a steered name can answer with (its rules' and its default's),
/// in node order: what its table is picked from besides its ranking.
fn node_states(
    steered: &SteeredName,
    availability: &[Availability],
    down_lines: &[u64],
) -> Arc<[NodeState]> {
    let mut ids: Vec<NodeId> = steered
        .rules
        .iter()
        .map(|r| &r.candidates)
        .chain(steered.default.candidates.as_ref())
        .flat_map(|c| c.nodes.iter().map(|&(id, _)| id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let state = availability.get(id).copied().unwrap_or(Availability::Up);
            (id, state, down_lines.get(id).copied().unwrap_or(0))
        })
        .collect()
}

/// A steered name's distinct answers, each made once: picks that agree share an index.
struct Answers<'a> {
    steered: &'a SteeredName,
    health: &'a PickInputs<'a>,
    sets: Vec<AnswerSet>,
    /// What each of `sets` was made from.
    keys: AnswerKeys,
    /// The key of the pick at hand, written here so that a pick met before allocates none.
    key: Vec<u32>,
    interned: AnswerIndex,
    /// How many of `sets` came from the build before; of those, answers holding a node
    /// `changed` (by node) since are not matched.
    seeded: usize,
    changed: Vec<bool>,
}

impl Answers<'_> {
    /// The index of the answer picked from `ranked` (IPv4, IPv6) on carrier `lines`, with
    /// spread groups beginning at `groups`.
    fn of(&mut self, ranked: [&[NodeId]; 2], lines: &CarrierChoice, groups: Groups) -> u32 {
        let (steered, health) = (self.steered, self.health);
        let [v4, v6] = [0, 1].map(|family| {
            pick(
                ranked[family],
                health.nodes,
                health.availability,
                steered.answers,
                FAMILY_ELIGIBLE[family],
                steered.all_down,
            )
        });
        let spread = [(&v4, 0), (&v6, 1)].map(|(pick, f)| {
            let group = health.spread_group(ranked[f], groups[f], pick);
            let standby = self.standby(ranked[f], f, pick, &group);
            Spread { group, standby }
        });
        // Picks differing only in lines get different answers.
        answer_key(&mut self.key, [&v4, &v6], lines, &spread);
        let hash = FxBuildHasher.hash_one(&self.key[..]);
        if let Some(&index) = self.interned.get(&hash)
            && self.keys.get(index as usize) == Some(&self.key[..])
            && (index as usize >= self.seeded || !self.holds_changed([&v4, &v6], &spread))
        {
            return index;
        }
        let index = self.sets.len() as u32;
        self.sets
            .push(answer_set([&v4, &v6], health, steered, lines, &spread));
        self.keys.push(&self.key);
        self.interned.insert(hash, index);
        index
    }

    /// Whether an answer of these picks and spread holds a node whose state changed since
    /// the build before.
    fn holds_changed(&self, [v4, v6]: [&Pick; 2], spread: &[Spread; 2]) -> bool {
        let nodes = (v4.nodes.iter().chain(&v6.nodes))
            .chain(spread.iter().flat_map(|s| s.group.iter().chain(&s.standby)));
        nodes
            .into_iter()
            .any(|&id| self.changed.get(id).copied().unwrap_or(true))
    }

    /// The nodes that stand in for answered nodes after `group` in a staged drain: what
    /// the pick would answer with them drained, beyond what it answers now. Empty (and
    /// nothing computed) when none of them is draining, the usual case.
    fn standby(
        &self,
        ranked: &[NodeId],
        family: usize,
        picked: &Pick,
        group: &[NodeId],
    ) -> Vec<NodeId> {
        let health = self.health;
        let draining = |id: &NodeId| {
            matches!(
                health.availability.get(*id),
                Some(Availability::Draining(_))
            )
        };
        if !picked
            .nodes
            .iter()
            .any(|id| draining(id) && !group.contains(id))
        {
            return Vec::new();
        }
        let mut availability = health.availability.to_vec();
        availability.resize(health.nodes.len().max(availability.len()), Availability::Up);
        for &id in picked
            .nodes
            .iter()
            .filter(|id| draining(id) && !group.contains(id))
        {
            availability[id] = Availability::AdminDown;
        }
        let without = pick(
            ranked,
            health.nodes,
            &availability,
            self.steered.answers,
            FAMILY_ELIGIBLE[family],
            self.steered.all_down,
        );
        without
            .nodes
            .into_iter()
            .filter(|id| !picked.nodes.contains(id) && !group.contains(id))
            .collect()
    }
}

/// Writes into `key` what makes answers one (the [`AnswerKeys`] of a table): per family
/// (IPv4, IPv6) the pick's flags and the lengths of its nodes, spread group and standbys,
/// then those nodes; then each carrier line's node and address. Node ids fit a word: a
/// policy of at most `MAX_POLICY_BYTES` holds far fewer nodes.
fn answer_key(
    key: &mut Vec<u32>,
    picks: [&Pick; 2],
    lines: &[(NodeId, IpAddr)],
    spread: &[Spread; 2],
) {
    let word = |n: usize| n as u32;
    key.clear();
    for (pick, Spread { group, standby }) in picks.into_iter().zip(spread) {
        let flags = u32::from(pick.degraded) | u32::from(pick.servfail) << 1;
        key.extend([
            flags,
            word(pick.nodes.len()),
            word(group.len()),
            word(standby.len()),
        ]);
        key.extend((pick.nodes.iter().chain(group).chain(standby)).map(|&id| word(id)));
    }
    key.push(word(lines.len()));
    for &(id, ip) in lines {
        let (family, octets) = match ip {
            IpAddr::V4(v4) => (4, v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => (6, v6.octets()),
        };
        key.extend([word(id), family]);
        key.extend(
            octets
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
}

/// Each class's answer, or `CLASS_SPLIT` where its start cannot decide. A head whose
/// start decides decides every class of it: one pick for them all. With a build before
/// (same ranking), only the classes whose start holds a node that changed are picked again.
fn class_answers(
    ranking: &SteeredRanking,
    answers: &mut Answers,
    reuse: Option<&Reuse>,
) -> Vec<u32> {
    let health = answers.health;
    let decided = |start: &RankedStart| (0..2).all(|f| health.decided_by(start, f));
    // A head's answer when its start decides, picked the first time a class needs it.
    let mut head_decides: Vec<Option<Option<u32>>> = vec![None; ranking.heads.len()];
    let mut answer_of = |c: usize| {
        let class = &ranking.classes[c];
        let head = ranking.head_of_class.get(c).copied().unwrap_or(u32::MAX);
        let by_head = match head_decides.get_mut(head as usize) {
            Some(Some(known)) => *known,
            Some(slot) => {
                let head = &ranking.heads[head as usize];
                let known = decided(&head.start).then(|| {
                    let [v4, v6] = &head.start.families;
                    answers.of([v4, v6], &head.lines, head.groups)
                });
                *slot = Some(known);
                known
            }
            None => None,
        };
        match by_head {
            Some(answer) => answer,
            None if decided(&class.start) => {
                let [v4, v6] = &class.start.families;
                answers.of([v4, v6], &class.lines, class.groups)
            }
            None => CLASS_SPLIT,
        }
    };
    let reused = reuse.filter(|r| r.before.class_answer.len() == ranking.classes.len());
    let Some(reuse) = reused else {
        return (0..ranking.classes.len()).map(answer_of).collect();
    };
    let mut class_answer = reuse.before.class_answer.to_vec();
    let mut again: Vec<u32> = (reuse.changed_nodes.iter())
        .flat_map(|&id| ranking.classes_of_node.of_node(id))
        .copied()
        .collect();
    again.sort_unstable();
    again.dedup();
    for c in again {
        if let Some(slot) = class_answer.get_mut(c as usize) {
            *slot = answer_of(c as usize);
        }
    }
    class_answer
}

/// Each head's answer where its classes agree (the address table answers directly), else
/// `CLASS_SPLIT`.
fn head_answers(ranking: &SteeredRanking, class_answer: &[u32]) -> Vec<u32> {
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
    head_answer
}

/// Classes whose start cannot decide: their cells read further, into the healthy nodes
/// ranked for just those cells (a regional outage splits hundreds of thousands). The
/// answers of each row's split cells, by row (empty where none is split).
fn split_rows(
    ranking: &SteeredRanking,
    class_answer: &[u32],
    answers: &mut Answers,
    geo: &GeoDb,
    (reuse, ahead): (Option<&Reuse>, Option<&[HealthyStarts]>),
) -> (Vec<RunArray>, Vec<HealthyStarts>, Vec<Vec<SplitRun>>) {
    let rows = ranking.rows.len();
    let mut split_rows: Vec<RunArray> = vec![RunArray::default(); rows];
    if !class_answer.contains(&CLASS_SPLIT) {
        return (split_rows, Vec::new(), Vec::new());
    }
    let mut healthy_starts = vec![HealthyStarts::default(); rows];
    // Whether each class is split, a byte each: read once per cell, a quarter of what
    // `class_answer` would bring into cache.
    let split: Vec<bool> = class_answer.iter().map(|&a| a == CLASS_SPLIT).collect();
    let classes = classes_where(&split);
    let before = reuse.map(|r| r.before);
    let split_runs: Vec<Vec<SplitRun>> = (0..rows)
        .map(|row| split_runs_of_row(ranking, row, (&split, &classes), before))
        .collect();
    for (group, kept) in healthy_starts.iter_mut().enumerate() {
        let rows = rows_of_group(ranking, group);
        let needed = columns_of(rows.iter().map(|&r| split_runs[r].as_slice()));
        if needed.is_empty() {
            continue;
        }
        let cells = SplitCells {
            group,
            rows: &rows,
            split: &split,
            runs: &split_runs,
            needed: &needed,
        };
        let before = reuse.and_then(|r| Some((r.before.healthy_starts.get(group)?, r)));
        let memos = reuse.map(|r| Memos {
            then: before.map(|(then, _)| then),
            ahead: ahead.and_then(|a| a.get(group)),
            fallen: &r.fallen,
            risen: &r.risen,
        });
        let healthy = healthy_of_columns(ranking, &cells, answers, geo, memos);
        let lent = before.map(|(then, r)| LentPairs::of(r, then, &healthy, ranking, &split));
        split_group(ranking, answers, &healthy, cells, lent, &mut split_rows);
        *kept = healthy;
    }
    (split_rows, healthy_starts, split_runs)
}

/// The rows of row group `group`.
pub(super) fn rows_of_group(ranking: &SteeredRanking, group: usize) -> Vec<usize> {
    (0..ranking.rows.len())
        .filter(|&r| ranking.full.row_group.get(r) == Some(&group))
        .collect()
}

/// A range of columns.
pub(super) type Columns = std::ops::Range<usize>;

/// Every column where a row of `rows` holds one of `classes` and a query can read it, as
/// ascending, disjoint ranges.
pub(super) fn split_columns(
    ranking: &SteeredRanking,
    rows: &[usize],
    classes: &[u32],
) -> Vec<Columns> {
    let runs: Vec<Vec<SplitRun>> = (rows.iter())
        .map(|&row| reachable_runs_of(ranking, row, classes))
        .collect();
    columns_of(runs.iter().map(Vec::as_slice))
}

/// The columns of each row's runs (each in column order), as ascending, disjoint ranges:
/// each row's joined where they touch, then the rows' lists merged.
fn columns_of<'r>(rows: impl Iterator<Item = &'r [SplitRun]>) -> Vec<Columns> {
    let mut union: Vec<Columns> = Vec::new();
    for runs in rows {
        let mut own: Vec<Columns> = Vec::new();
        for &(start, end, _) in runs {
            add_range(&mut own, start as usize..end as usize);
        }
        union = if union.is_empty() {
            own
        } else {
            union_of(&union, &own)
        };
    }
    union
}

/// The runs of row `row` whose class is one of `classes`, where a query can read them
/// (`SteeredRanking::reachable_runs`), in column order.
fn reachable_runs_of(ranking: &SteeredRanking, row: usize, classes: &[u32]) -> Vec<SplitRun> {
    let Some(by_class) = ranking.reachable_runs.get(row) else {
        return Vec::new();
    };
    let mut runs: Vec<SplitRun> = (classes.iter())
        .flat_map(|&class| {
            (by_class.of_class(class)).map(move |c| (c.start as u32, c.end as u32, class))
        })
        .collect();
    runs.sort_unstable_by_key(|&(start, _, _)| start);
    runs
}

/// The runs of split classes of row `row` a query can read, in column order: those of a
/// build before (same ranking) whose class is still split, and those of classes split
/// anew; else every split class's.
fn split_runs_of_row(
    ranking: &SteeredRanking,
    row: usize,
    (split, classes): (&[bool], &[u32]),
    before: Option<&SteeredTable>,
) -> Vec<SplitRun> {
    let Some((then, was_split)) = before.and_then(|b| {
        let then = b.split_runs.get(row).map_or(&[][..], Vec::as_slice);
        (b.class_answer.len() == split.len()).then_some((then, &b.class_answer))
    }) else {
        return reachable_runs_of(ranking, row, classes);
    };
    let anew: Vec<u32> = (classes.iter())
        .filter(|&&c| was_split.get(c as usize) != Some(&CLASS_SPLIT))
        .copied()
        .collect();
    let added = reachable_runs_of(ranking, row, &anew);
    let kept = (then.iter()).filter(|r| split.get(r.2 as usize) == Some(&true));
    // Runs of one row never overlap: merged by where they start.
    let mut runs = Vec::with_capacity(then.len() + added.len());
    let (mut kept, mut added) = (kept.peekable(), added.into_iter().peekable());
    loop {
        let next = match (kept.peek(), added.peek()) {
            (Some(k), Some(a)) if k.0 <= a.0 => kept.next().copied(),
            (_, Some(_)) => added.next(),
            (Some(_), None) => kept.next().copied(),
            (None, None) => break,
        };
        runs.extend(next);
    }
    runs
}

/// The classes `chosen`, by number.
pub(super) fn classes_where(chosen: &[bool]) -> Vec<u32> {
    (chosen.iter().enumerate())
        .filter(|&(_, &c)| c)
        .map(|(class, _)| class as u32)
        .collect()
}

/// Appends `range` (starting at or after the last one's start), joined to the last one
/// where they overlap or touch.
pub(super) fn add_range(ranges: &mut Vec<Columns>, range: Columns) {
    match ranges.last_mut() {
        Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
        _ => ranges.push(range),
    }
}

/// The union of two lists of ascending, disjoint ranges, as one.
pub(super) fn union_of(a: &[Columns], b: &[Columns]) -> Vec<Columns> {
    let mut union = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.start <= y.start => a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        if let Some(range) = next {
            add_range(&mut union, range.clone());
        }
    }
    union
}

/// The split cells of one row group.
struct SplitCells<'a> {
    group: usize,
    rows: &'a [usize],
    /// By class: whether it is split.
    split: &'a [bool],
    /// By row, the runs of split classes a query can read.
    runs: &'a [Vec<SplitRun>],
    /// Every column any row of the group needs, as ascending, disjoint ranges.
    needed: &'a [std::ops::Range<usize>],
}

/// What a build before (same ranking) knows of a row group's healthy starts: those its
/// split cells were answered from, and those ranked ahead; and which nodes fell and rose
/// since.
pub(super) struct Memos<'a> {
    pub(super) then: Option<&'a HealthyStarts>,
    pub(super) ahead: Option<&'a HealthyStarts>,
    pub(super) fallen: &'a [NodeId],
    pub(super) risen: &'a [NodeId],
}

/// The healthy start of each column a row group's split cells need, `answers` deep. One
/// and two deeper made a change slower on the rebuild benchmark (200 nodes x 50 names, a
/// third down: p50 9.3 and 9.8 ms against 9.2 in process); that room is made after the
/// build instead, off the change's path (`answer::ahead`).
fn healthy_of_columns(
    ranking: &SteeredRanking,
    cells: &SplitCells,
    answers: &Answers,
    geo: &GeoDb,
    memos: Option<Memos>,
) -> HealthyStarts {
    let health = answers.health;
    // The healthy start only has to hold the healthy nodes a pick reads past the class's
    // start: at most `answers` (up primaries, then as many up backups as primaries are
    // missing; every primary ranks before every backup). Whether the top is down, and how
    // many primaries there are, the class's start already tells.
    let depth = answers.steered.answers;
    let columns = (cells.group, cells.needed);
    let state = |id: NodeId| {
        health
            .availability
            .get(id)
            .copied()
            .unwrap_or(Availability::Up)
    };
    let up = |id| health.up(id);
    rank_healthy_starts(ranking, columns, up, depth, geo, (memos, Some(&state)))
}

/// Node → its availability, for what a pick falls back to where no candidate is up.
type States<'a> = &'a dyn Fn(NodeId) -> Availability;

/// The starts, `depth` deep, among the nodes that are `up`, of the `needed` columns of row
/// group `group`. With the starts of a build before (same ranking), only columns whose
/// start held a node that fell are ranked afresh, and the rest among their start and the
/// nodes that rose. Given the nodes' `states`, columns of profiles where no candidate is up
/// get the start of what a pick falls back to there instead (down or full nodes), afresh.
pub(super) fn rank_healthy_starts(
    ranking: &SteeredRanking,
    (group, needed): (usize, &[Columns]),
    up: impl Fn(NodeId) -> bool,
    depth: usize,
    geo: &GeoDb,
    (memos, states): (Option<Memos>, Option<States>),
) -> HealthyStarts {
    let full = &ranking.full;
    let healthy = full.healthy_candidates(group, up);
    let (fallback, most_full) = match states {
        Some(state) => full.fallback_candidates(group, &healthy, state),
        None => (Vec::new(), 0),
    };
    let falls_back = |profile: u32| {
        fallback
            .get(profile as usize)
            .is_some_and(|l| !l.is_empty())
    };
    let (needed, fallen_back) = match fallback.iter().any(|l| !l.is_empty()) {
        true => apart_by_profile(ranking, needed, falls_back),
        false => (needed.to_vec(), Vec::new()), // some node is up everywhere: the rule
    };
    let mut starts = Starts::default();
    let mut pieces: Pieces = Vec::new();
    match memos {
        None => full.rank_healthy(&needed, &healthy, depth, geo, (&mut starts, &mut pieces)),
        Some(memos) => {
            let (fresh, kept, carried) = kept_starts(&needed, &memos, depth);
            full.rank_healthy(&fresh, &healthy, depth, geo, (&mut starts, &mut pieces));
            let into = (&mut starts, &mut pieces);
            let risen = memos.risen;
            full.rank_with_risen(&kept, &carried, risen, &healthy, depth, geo, into);
        }
    }
    let mut list = starts.list;
    let fallback_from = list.len() as u32;
    if !fallen_back.is_empty() {
        let (mut more, mut placed) = (Starts::default(), Pieces::new());
        let deep = depth.max(most_full);
        full.rank_healthy(&fallen_back, &fallback, deep, geo, (&mut more, &mut placed));
        list.extend(more.list);
        pieces.extend((placed.into_iter()).map(|(c, n, id)| (c, n, id + fallback_from)));
    }
    let columns = full.column_profile.len();
    HealthyStarts {
        list: list.into(),
        of_column: RunArray::from_pieces(pieces, columns, NOT_RANKED),
        fallback_from,
    }
}

/// `columns` (ascending, disjoint ranges) apart: those of profiles not `chosen`, and those
/// of profiles `chosen`.
fn apart_by_profile(
    ranking: &SteeredRanking,
    columns: &[Columns],
    chosen: impl Fn(u32) -> bool,
) -> (Vec<Columns>, Vec<Columns>) {
    let (mut other, mut these) = (Vec::new(), Vec::new());
    let mut profiles = RunCursor::new(&ranking.full.column_profile);
    profiles.each_in(columns, 0, |part, profile| match chosen(profile) {
        true => add_range(&mut these, part),
        false => add_range(&mut other, part),
    });
    (other, these)
}

/// Splits the `needed` columns into those to rank afresh (none before, or a start left with
/// fewer than `least` nodes of a family by the nodes that fell) and those whose start from
/// before carries over, as it was or without the fallen nodes: each with its number in the
/// starts carried over (the third list). Starts ranked ahead come first (they are the
/// deeper), then those of the cells split then.
fn kept_starts(
    needed: &[Columns],
    memos: &Memos,
    least: usize,
) -> (Vec<Columns>, Vec<(Columns, u32)>, Vec<RankedStart>) {
    // Starts alike once carried are one: risen nodes are then ranked in once for them.
    let mut carried = Starts::default();
    let mut kept = Vec::new();
    let mut fresh = needed.to_vec();
    for memo in [memos.ahead, memos.then].into_iter().flatten() {
        // Carried when first met: the columns needed use few of the starts ranked ahead.
        let mut number: Vec<Option<Option<u32>>> = vec![None; memo.list.len()];
        let mut left: Vec<Columns> = Vec::new();
        let mut then = RunCursor::new(&memo.of_column);
        then.each_in(&fresh, NOT_RANKED, |columns, old| {
            let now = number.get_mut(old as usize).and_then(|slot| {
                *slot.get_or_insert_with(|| {
                    // A start of what a pick fell back to (nodes not up) is carried only
                    // into a profile where nodes rose since: `Rising` ranks it among those.
                    let start = carry_start(&memo.list[old as usize], memos.fallen, least);
                    start.map(|start| carried.intern(&start))
                })
            });
            match now {
                Some(now) => kept.push((columns, now)),
                None => add_range(&mut left, columns),
            }
        });
        fresh = left;
    }
    // Risen nodes are ranked in by a forward walk over the columns, a range at a time:
    // neighbours with one start carried are one range.
    kept.sort_unstable_by_key(|(columns, _)| columns.start);
    kept.dedup_by(|next, last| {
        let joins = last.0.end == next.0.start && last.1 == next.1;
        if joins {
            last.0.end = next.0.end;
        }
        joins
    });
    (fresh, kept, carried.list)
}

/// A healthy start without the nodes that fell: still the first healthy nodes of each
/// family, so it stands while it holds `least` of a family (or every one it held, when
/// that was fewer: then it held all the family has). Cut to `least`: starts ranked ahead
/// hold one more to outlast a failure, and a risen node need only beat the `least`-th.
fn carry_start(start: &RankedStart, fallen: &[NodeId], least: usize) -> Option<RankedStart> {
    let deeper = start.families.iter().any(|f| f.len() > least);
    if !deeper
        && !start
            .families
            .iter()
            .flatten()
            .any(|id| fallen.contains(id))
    {
        return Some(start.clone());
    }
    let mut carried = start.clone();
    for (family, complete) in carried.families.iter_mut().zip(&mut carried.complete) {
        let held = family.len();
        family.retain(|id| !fallen.contains(id));
        if held >= least && family.len() < least {
            return None;
        }
        if family.len() > least {
            family.truncate(least);
            *complete = false;
        }
    }
    // What damping holds on to; nothing reads it in a healthy start.
    carried.top = None;
    Some(carried)
}

/// What a build before (same ranking) lends one row group's split cells: the answers of
/// pairs whose class and healthy start hold the same nodes as then, none of which changed
/// state (a pick reads nothing else), so a change costs the pairs it touches.
struct LentPairs<'a> {
    before: &'a SteeredTable,
    /// The group's healthy starts then.
    starts: &'a HealthyStarts,
    /// By start then: the number of the start now with the same nodes, none changed
    /// (`u32::MAX`: none).
    same_now: Vec<u32>,
    /// By class: split then as now, from a start none of whose nodes changed.
    class_kept: Vec<bool>,
}

impl<'a> LentPairs<'a> {
    fn of(
        reuse: &'a Reuse<'a>,
        starts: &'a HealthyStarts,
        now: &HealthyStarts,
        ranking: &SteeredRanking,
        split: &[bool],
    ) -> Self {
        let index: FxHashMap<_, u32> = (now.list.iter().enumerate())
            .map(|(i, start)| ((&start.families, start.complete), i as u32))
            .collect();
        let same_now = (starts.list.iter())
            .map(
                |start| match reuse.touches(start.families.iter().flatten()) {
                    true => u32::MAX,
                    false => (index.get(&(&start.families, start.complete)))
                        .copied()
                        .unwrap_or(u32::MAX),
                },
            )
            .collect();
        let before = reuse.before;
        let class_kept = (ranking.classes.iter().zip(split).enumerate())
            .map(|(c, (class, &split))| {
                split
                    && before.class_answer.get(c) == Some(&CLASS_SPLIT)
                    && !reuse.touches(class.start.families.iter().flatten())
            })
            .collect();
        LentPairs {
            before,
            starts,
            same_now,
            class_kept,
        }
    }

    /// A walk along row `row` then, for its split cells now in column order.
    fn row(&self, row: usize) -> Option<LentRow<'_>> {
        let then = self.before.split_rows.get(row)?;
        Some(LentRow {
            lent: self,
            starts: RunCursor::new(&self.starts.of_column),
            then: RunCursor::new(then),
            len: then.len(),
        })
    }
}

/// One row's answers then, read in column order.
struct LentRow<'a> {
    lent: &'a LentPairs<'a>,
    starts: RunCursor<'a>,
    then: RunCursor<'a>,
    len: usize,
}

impl LentRow<'_> {
    /// Pushes the row's answers then over `columns` (of class `class`, all of healthy start
    /// `now` now) where the class and the start are as then; the rest, by runs, to `fresh`.
    fn lend(
        &mut self,
        class: u32,
        columns: Columns,
        now: u32,
        runs: &mut RunBuilder,
        mut fresh: impl FnMut(&mut RunBuilder, usize),
    ) {
        let lent = self.lent;
        if lent.class_kept.get(class as usize) != Some(&true) || self.len < columns.end {
            fresh(runs, columns.len());
            return;
        }
        let then = &mut self.then;
        self.starts.each(columns, |part, old| {
            if lent.same_now.get(old as usize) == Some(&now) {
                then.each(part, |cells, answer| runs.push_many(answer, cells.len()));
            } else {
                fresh(runs, part.len());
            }
        });
    }
}

/// Answers one row group's split cells from the healthy nodes ranked for their columns.
fn split_group(
    ranking: &SteeredRanking,
    answers: &mut Answers,
    healthy: &HealthyStarts,
    cells: SplitCells,
    lent: Option<LentPairs>,
    split_rows: &mut [RunArray],
) {
    // A pick reads at most `answers` nodes of each family past the class's start: starts
    // alike that far are one for the pairs (healthy starts hold more, for later changes).
    let least = answers.steered.answers;
    let mut read = Starts::default();
    let read_of: Vec<u32> = (healthy.list.iter().enumerate())
        .map(|(number, start)| {
            let mut first = start.clone();
            // What a pick falls back to is read whole (it may list every full node).
            let whole = number as u32 >= healthy.fallback_from;
            (first.families.iter_mut())
                .for_each(|f| f.truncate(if whole { f.len() } else { least }));
            first.top = None;
            read.intern(&first)
        })
        .collect();
    let mut answer_of_pair = PairAnswers::new(cells.split, read.list.len());
    for &row in cells.rows {
        // Built run by run: cells of classes that decide hold 0, never read.
        let mut runs = RunBuilder::default();
        let mut any = false;
        let mut starts = RunCursor::new(&healthy.of_column);
        let mut lent_row = lent.as_ref().and_then(|l| l.row(row));
        for &(start, end, class) in cells.runs.get(row).map_or(&[][..], Vec::as_slice) {
            let columns = start as usize..end as usize;
            // Cells no query reads (or of classes that decide) hold 0.
            runs.push_many(0, columns.start.saturating_sub(runs.len()));
            any = true;
            // Cells of one class and one healthy start have one answer: a run of each.
            starts.each(columns, |columns, healthy_start| {
                let first = read_of
                    .get(healthy_start as usize)
                    .copied()
                    .unwrap_or(u32::MAX);
                let mut fresh = |runs: &mut RunBuilder, count: usize| {
                    let answer = answer_of_pair.get(class, first, || {
                        let class = &ranking.classes[class as usize];
                        let empty = RankedStart::default();
                        let more = read.list.get(first as usize).unwrap_or(&empty);
                        let [v4, v6] = [0, 1].map(|f| {
                            let listed = &class.start.families[f];
                            let rest = more.families[f].iter().filter(|id| !listed.contains(id));
                            listed.iter().chain(rest).copied().collect::<Vec<NodeId>>()
                        });
                        answers.of([&v4, &v6], &class.lines, class.groups)
                    });
                    runs.push_many(answer, count);
                };
                match lent_row.as_mut() {
                    Some(lent) => lent.lend(class, columns, healthy_start, &mut runs, fresh),
                    None => fresh(&mut runs, columns.len()),
                }
            });
        }
        if any {
            let row_len = ranking.rows.get(row).map_or(0, RunArray::len);
            runs.push_many(0, row_len.saturating_sub(runs.len()));
            split_rows[row] = runs.finish();
        }
    }
}

/// The answer of two picks (IPv4, IPv6): record bodies per node and per carrier, and the
/// spread group of each family (its members first, then the picked nodes after them).
fn answer_set(
    [v4, v6]: [&Pick; 2],
    health: &PickInputs,
    steered: &SteeredName,
    lines: &[(NodeId, IpAddr)],
    spread: &[Spread; 2],
) -> AnswerSet {
    let nodes = health.nodes;
    let family = |pick: &Pick, v6: bool| {
        let Spread { group, standby } = &spread[usize::from(v6)];
        let drawn = steered.answers.min(group.len());
        let after_group: Vec<NodeId> = pick
            .nodes
            .iter()
            .filter(|id| !group.contains(id))
            .take(steered.answers - drawn)
            .copied()
            .collect();
        let yielding = if standby.is_empty() {
            Vec::new()
        } else {
            after_group
                .iter()
                .map(|&id| health.draw_member(id))
                .collect()
        };
        let answered: Vec<NodeId> = group
            .iter()
            .chain(&after_group)
            .chain(standby)
            .copied()
            .collect();
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
        // The line measured best for this column, else the first address of the family;
        // lines whose own check fails only when every line of the family does.
        let default_of = |id: NodeId| {
            let measured = lines
                .iter()
                .find(|(n, ip)| *n == id && ip.is_ipv6() == v6)
                .map(|(_, ip)| *ip);
            let family = nodes[id]
                .addresses
                .iter()
                .copied()
                .filter(|a| a.is_ipv6() == v6);
            measured
                .filter(|&ip| health.line_up(id, ip))
                .or_else(|| family.clone().find(|&ip| health.line_up(id, ip)))
                .or(measured)
                .or_else(|| family.clone().next())
        };
        let bodies = answered
            .iter()
            .filter_map(|&id| default_of(id))
            .map(body)
            .collect();
        // One variant per carrier that some answered node has an address on.
        let mut asns: Vec<u32> = answered
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
                let bodies = answered
                    .iter()
                    .filter_map(|&id| {
                        (nodes[id].on_carrier(asn, v6))
                            .filter(|&ip| health.line_up(id, ip))
                            .or_else(|| default_of(id))
                    })
                    .map(body)
                    .collect();
                (asn, bodies)
            })
            .collect();
        FamilyAnswer {
            nodes: answered,
            bodies,
            servfail: pick.servfail,
            carriers,
            draw: group.iter().map(|&id| health.draw_member(id)).collect(),
            drawn: drawn as u8,
            yielding,
        }
    };
    AnswerSet::new(family(v4, false), family(v6, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::SystemTime;

    use crate::geo::{GeoSet, Place};
    use crate::latency::{self, ZoneLatency};
    use crate::policy::{Candidates, DomainName};
    use crate::random::XorShift;
    use crate::steer::policy_availability;
    use crate::steer::score::node_score;
    use crate::steer::spread::UNSPREAD;
    use crate::steer::{DampingState, rank_all};

    use crate::geo::{Coordinates, CountryTable};
    use crate::policy::{AdminStatus, DefaultAnswer, Rule};

    #[test]
    fn column_ranges_join_where_they_touch_and_merge_in_order() {
        let a = [0..3, 5..8, 20..30];
        let b = [3..4, 6..12, 12..13, 40..41];
        assert_eq!(union_of(&a, &b), vec![0..4, 5..13, 20..30, 40..41]);
        assert_eq!(union_of(&[], &b[..1]), vec![3..4]);
        assert_eq!(union_of(&a, &[]), a.to_vec());
    }

    /// Both forms of the pair table give each pair the answer its first pick gave, and pick
    /// once per pair.
    #[test]
    fn pair_answers_pick_once_per_pair_dense_or_sparse() {
        let split = [false, true, false, true, true];
        let healthy_starts = 7u32;
        let dense = PairAnswers::new(&split, healthy_starts as usize);
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
            capacity: Default::default(),
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
                spread: None,
            }],
            fences: vec![],
            default: DefaultAnswer {
                candidates: None,
                location: None,
            },
            all_down: Default::default(),
            degraded_ttl: None,
            latency: Default::default(),
            spread: None,
        }
    }

    /// What a pick reads for `nodes`, all up, without spreading.
    fn all_up(nodes: &[Node]) -> PickInputs<'_> {
        PickInputs {
            nodes,
            availability: &[],
            answers: 2,
            draw_keys: &[],
            draw_weights: &[],
            down_lines: &[],
        }
    }

    const UNSPREAD_GROUPS: [Spread; 2] = [
        Spread {
            group: Vec::new(),
            standby: Vec::new(),
        },
        Spread {
            group: Vec::new(),
            standby: Vec::new(),
        },
    ];

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

    const RDATA: usize = crate::wire::RDATA_OFFSET;

    /// Every cell's answer is what a pick over its whole ranking (`scoring::rank`, every
    /// node scored) gives, whatever is down, and the one-lookup path gives every client its
    /// own cell's answer. Returns how many rules had cells answered one by one, and how many
    /// heads were mixed, and how many starts were ranked ahead, over all `down_sets`.
    fn cells_agree_with_full_rankings(
        zones: &[Zone],
        down_sets: &[Vec<usize>],
    ) -> (usize, usize, usize) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let geo = Arc::new(GeoDb::open(&root.join("geo/dbip-country.mmdb")).expect("shipped db"));
        let rankings = rank_all(
            zones,
            &geo,
            &[],
            &mut DampingState::default(),
            SystemTime::UNIX_EPOCH,
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
                        let fences: Vec<&GeoSet> = steered
                            .fences
                            .iter()
                            .filter(|f| located && f.matches(place))
                            .collect();
                        let keys = latency::group_keys(place, None);
                        crate::steer::rank(&zone.nodes, candidates, &fences, |id, node| {
                            let distance = place.coordinates.map(|c| c.distance_km(&node.location));
                            let now = SystemTime::UNIX_EPOCH;
                            node_score(
                                &none,
                                id,
                                node,
                                distance,
                                &keys,
                                now,
                                (&steered.latency, false),
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
        let (mut split_seen, mut mixed_seen, mut reachable_seen) = (0, 0, 0);
        let mut generator = XorShift::new(0x2545_f491_4f6c_dd1d);
        let mut random = move || generator.next_u64();
        let no_lines: CarrierChoice = Arc::from(Vec::new());
        // Every other build starts from the one before (the answers of classes whose nodes
        // did not change are kept), half of those with starts ranked ahead of it too: all
        // must agree with the full rankings.
        let mut previous: Option<(Snapshot, Vec<Vec<Availability>>)> = None;
        let (mut carried_ahead, mut ahead_before) = (0, None);
        for (n, down) in down_sets.iter().enumerate() {
            let mut availability = policy_availability(zones);
            // Every third node is out by a drain rather than by health: backups stand in
            // for both, and fail-open brings back only the health-down. Some are full:
            // where nothing is up, the least loaded of them answer.
            for (n, &id) in down.iter().enumerate() {
                availability[0][id] = match n % 7 {
                    2 | 5 => Availability::AdminDown,
                    6 => Availability::Full(100 + (id * 37 % 50) as u8),
                    _ => Availability::HealthDown,
                };
            }
            let before = previous.as_ref().filter(|_| n % 2 == 1);
            // Ranked ahead from what was ranked ahead of the build before that, as the
            // publisher does.
            let ahead = before.filter(|_| n % 4 == 3).map(|(snapshot, then)| {
                let from = (snapshot, Vec::from_iter(ahead_before.as_ref()));
                let from = (from.0, &from.1[..]);
                let ahead = crate::answer::rank_ahead_of(zones, &rankings, then, from);
                carried_ahead += ahead.starts();
                ahead
            });
            let snapshot = build_with_lines(
                zones,
                Arc::clone(&geo),
                &rankings,
                &availability,
                &[],
                Before {
                    last: before.map(|(s, _)| s),
                    ahead: ahead.as_ref(),
                    ..Before::default()
                },
            );
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
                // Cells a query can read: a row subnet rules lead to anywhere, else where
                // it is the column's geo rule (no split cell is answered elsewhere).
                let by_subnet = (steered.rules.get(row)).is_some_and(|r| !r.subnets.is_empty());
                for (column, ranked) in by_column.iter().enumerate() {
                    if !by_subnet && table.geo_rule.at_or(column, 0) as usize != row {
                        continue;
                    }
                    reachable_seen += 1;
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
                    let expected = answer_set(
                        [&v4, &v6],
                        &all_up(&zone.nodes),
                        steered,
                        &no_lines,
                        &UNSPREAD_GROUPS,
                    );
                    assert_eq!(
                        table.answers[table.cell_answer(row, column) as usize],
                        expected,
                        "rule {row}, column {column} with {down:?} down"
                    );
                }
            }
            assert!(
                reachable_seen >= (n + 1) * columns.len(),
                "every column's own rule is checked"
            );
            for _ in 0..200 {
                let ip = IpAddr::V4(std::net::Ipv4Addr::from(random() as u32));
                let (subnet_rule, _) = table.subnets.lookup(ip);
                let (group, _) = table.groups.longest(ip);
                let by_place = table.select_by_place(geo.locate(ip), subnet_rule, group).0;
                let selected = table.select(ip, &geo);
                assert!(
                    std::ptr::eq(selected.answer, &table.answers[by_place as usize]),
                    "{ip} with {down:?} down"
                );
            }
            previous = Some((snapshot, availability));
            ahead_before = ahead.or(ahead_before);
        }
        (split_seen, mixed_seen, carried_ahead)
    }

    /// Sets of nodes down: none, each one, each pair, `triples` random triples, and outages
    /// of five nodes up to all but one.
    fn down_sets(node_count: usize, triples: usize) -> Vec<Vec<usize>> {
        let mut generator = XorShift::new(0x9e37_79b9_7f4a_7c15);
        let mut random = move || generator.next_u64() as usize;
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

    /// A third of the nodes down, then one node at a time going down or coming back, as
    /// health changes arrive in an outage: each build differs from the one before by a node.
    fn outage_walk(node_count: usize, steps: usize) -> Vec<Vec<usize>> {
        let mut generator = XorShift::new(0x2545_f491_4f6c_dd1d);
        let mut down: Vec<usize> = (0..node_count).filter(|i| i % 3 == 1).collect();
        let mut sets = vec![down.clone()];
        for _ in 0..steps {
            let node = generator.below(node_count as u64) as usize;
            match down.iter().position(|&d| d == node) {
                Some(at) => {
                    down.remove(at);
                }
                None => down.push(node),
            }
            sets.push(down.clone());
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
        let (split, mixed, _) = cells_agree_with_full_rankings(&zones, &sets);
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
            "zone: big.example\nsoa: {primary: ns1.big.example., contact: h.big.example.}\nns: [ns1.big.example.]\ncheck:\n  type: none\nnodes:\n",
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
        // A subnet rule (its row read at every column), a geo rule (read in Europe only),
        // each over some of the nodes (outages take all of a rule's nodes down while others
        // are up: its cells fall back to down nodes), and everyone else.
        let list = |nodes: std::ops::Range<usize>| {
            nodes
                .map(|i| format!("n{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        text += &format!(
            "steer:\n  ingest:\n    answers: 2\n    rules:\n      - {{subnets: [203.0.113.0/24], nodes: [{}]}}\n      - {{geos: [EU], nodes: [{}]}}\n      - {{}}\n",
            list(0..24),
            list(12..40)
        );
        let zone = crate::policy::parse_zone(std::path::Path::new("big.yaml"), &text, 1)
            .expect("generated zone");
        let mut sets = down_sets(40, 100);
        sets.extend(outage_walk(40, 160));
        // The subnet rule's nodes all out, none full (a node's kind of out is its position
        // in the set: every 7th is full, and those are other nodes here), so its cells fall
        // back to nodes down by health; then, built from that, two back (listed last, so
        // the others keep their kinds): what was fallen back to is not carried.
        for back in [[3, 17], [8, 21], [0, 23]] {
            let mut rule = (0..24).filter(|id| !back.contains(id));
            let mut others = 24..40;
            let mut out = Vec::new();
            while out.len() < 28 {
                let next = match out.len() % 7 {
                    6 => others.next(),
                    _ => rule.next().or_else(|| others.next()),
                };
                out.extend(next);
            }
            assert_eq!(rule.next(), None);
            if sets.len() % 2 == 1 {
                sets.push(Vec::new());
            }
            sets.push(out.iter().copied().chain(back).collect());
            sets.push(out);
        }
        let (split, mixed, ahead) = cells_agree_with_full_rankings(&[zone], &sets);
        assert!(
            split > 0,
            "no failure split a class: the cell-by-cell path went untested"
        );
        assert!(mixed > 0, "no failure mixed a head");
        assert!(
            ahead > 0,
            "nothing was ranked ahead: carrying it went untested"
        );
    }

    /// Picks are one answer only where everything an answer is made from agrees: the same
    /// nodes on other carrier lines (another node's, another address, another family) are
    /// other answers, and the same lines again (in another allocation) the same answer.
    #[test]
    fn picks_on_other_carrier_lines_are_other_answers() {
        let nodes = vec![
            node(&["192.0.2.1", "192.0.2.101"], &[("192.0.2.101", 64500)]),
            node(&["192.0.2.2"], &[]),
        ];
        let (health, steered) = (all_up(&nodes), steered());
        let mut answers = Answers::new(&steered, &health);
        let lines = |lines: &[(NodeId, &str)]| -> Vec<CarrierChoice> {
            let choice = |(id, ip): &(NodeId, &str)| (*id, ip.parse().unwrap());
            vec![lines.iter().map(choice).collect()]
        };
        let choices: Vec<Vec<CarrierChoice>> = vec![
            lines(&[]),
            lines(&[(0, "192.0.2.101")]),
            lines(&[(0, "192.0.2.1")]),
            lines(&[(1, "192.0.2.101")]),
            lines(&[(0, "::ffff:192.0.2.101")]),
            lines(&[(0, "192.0.2.101"), (1, "192.0.2.2")]),
        ];
        let ranked: [&[NodeId]; 2] = [&[0, 1], &[0, 1]];
        let first: Vec<u32> = (choices.iter())
            .map(|c| answers.of(ranked, &c[0], UNSPREAD))
            .collect();
        let distinct: std::collections::HashSet<u32> = first.iter().copied().collect();
        assert_eq!(distinct.len(), choices.len(), "{first:?}");
        let again: Vec<u32> = (choices.iter())
            .map(|c| answers.of(ranked, &c[0].iter().copied().collect(), UNSPREAD))
            .collect();
        assert_eq!(again, first);
        let reversed = answers.of([&[1, 0], &[1, 0]], &choices[0][0], UNSPREAD);
        assert!(
            !first.contains(&reversed),
            "another order is another answer"
        );
        // The same nodes picked, once past a node that is down (degraded: a shorter TTL)
        // and once not, are two answers.
        let nodes = vec![node(&["192.0.2.1"], &[]); 3];
        let availability = [Availability::Up, Availability::HealthDown, Availability::Up];
        let health = PickInputs {
            availability: &availability,
            ..all_up(&nodes)
        };
        let degrading = SteeredName {
            degraded_ttl: Some(5),
            ..steered.clone()
        };
        (answers.health, answers.steered) = (&health, &degrading);
        let past_down = answers.of([&[0, 1, 2], &[]], &choices[0][0], UNSPREAD);
        let not = answers.of([&[0, 2, 1], &[]], &choices[0][0], UNSPREAD);
        let [past_down, not] = [past_down, not].map(|a| &answers.sets[a as usize].a);
        assert_eq!(past_down.nodes, not.nodes);
        assert_ne!(past_down.bodies, not.bodies, "the TTLs differ");
    }

    #[test]
    fn carrier_variants_use_each_carrier_address_and_fall_back_to_the_line() {
        let nodes = vec![
            node(&["192.0.2.1", "192.0.2.101"], &[("192.0.2.101", 64500)]),
            node(&["192.0.2.2"], &[]),
        ];
        let lines: CarrierChoice = Arc::from(vec![]);
        let set = answer_set(
            [&pick_of(vec![0, 1]), &pick_of(vec![])],
            &all_up(&nodes),
            &steered(),
            &lines,
            &UNSPREAD_GROUPS,
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
        let lines: CarrierChoice = Arc::from(vec![(0, "192.0.2.101".parse().unwrap())]);
        let set = answer_set(
            [&pick_of(vec![0]), &pick_of(vec![])],
            &all_up(&nodes),
            &steered(),
            &lines,
            &UNSPREAD_GROUPS,
        );
        assert_eq!(addresses(&set.a.bodies), vec![[192, 0, 2, 101]]);
        assert!(set.aaaa.bodies.is_empty() && set.aaaa.carriers.is_empty());
    }

    /// A build with the previous snapshot keeps the tables of names that cannot answer with
    /// the node that changed, and re-picks the others (which then leave the node out); the
    /// change undone takes the tables before it back, and only then.
    #[test]
    fn a_health_change_rebuilds_only_the_names_of_the_node_and_undone_takes_them_back() {
        let text = "zone: two.example\nsoa: {primary: ns1.two.example., contact: h.two.example.}\nns: [ns1.two.example.]\ncheck: {type: none}\nnodes:\n  a: {geo: EU-DE, location: [50.1, 8.7], addresses: [192.0.2.1]}\n  b: {geo: EU-FR, location: [48.9, 2.3], addresses: [192.0.2.2]}\n  c: {geo: AS-JP, location: [35.7, 139.7], addresses: [192.0.2.3]}\nsteer:\n  one: {answers: 1, rules: [{nodes: [a, b]}]}\n  two: {answers: 1, rules: [{nodes: [c]}]}\n";
        let zones = vec![
            crate::policy::parse_zone(std::path::Path::new("two.yaml"), text, 1).expect("zone"),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let geo = Arc::new(GeoDb::open(&root.join("geo/dbip-country.mmdb")).expect("shipped db"));
        let rankings = rank_all(
            &zones,
            &geo,
            &[],
            &mut DampingState::default(),
            SystemTime::UNIX_EPOCH,
        );
        let mut availability = policy_availability(&zones);
        let build = |availability: &[Vec<Availability>], last, undone| {
            let before = Before {
                last,
                undone,
                ahead: None,
            };
            build_with_lines(
                &zones,
                Arc::clone(&geo),
                &rankings,
                availability,
                &[],
                before,
            )
        };
        let first = build(&availability, None, None);
        availability[0][0] = Availability::HealthDown;
        let second = build(&availability, Some(&first), None);
        let table = |snapshot: &Snapshot, name: &str| -> SteeredTable {
            let key = name_key(&DomainName::parse(name).expect("name"));
            let table = snapshot.zones[0].steered(&key);
            table
                .unwrap_or_else(|| panic!("{name} is not steered"))
                .clone()
        };
        let (one, two) = ("one.two.example.", "two.two.example.");
        assert!(Arc::ptr_eq(
            &table(&first, two).answers,
            &table(&second, two).answers
        ));
        assert!(!Arc::ptr_eq(
            &table(&first, one).answers,
            &table(&second, one).answers
        ));
        let berlin: IpAddr = "193.99.144.80".parse().expect("address");
        let nodes_of = |t: &SteeredTable| t.select(berlin, &geo).answer.a.nodes.clone();
        assert_eq!(nodes_of(&table(&first, one)), vec![0]);
        assert_eq!(nodes_of(&table(&second, one)), vec![1]);
        // Back up: the first build's table again, not a new one.
        availability[0][0] = Availability::Up;
        let third = build(&availability, Some(&second), Some(&first));
        let answers_of = |s: &Snapshot| table(s, one).answers;
        assert!(Arc::ptr_eq(&answers_of(&first), &answers_of(&third)));
        // Another node down instead: neither table before is taken.
        availability[0][1] = Availability::HealthDown;
        for undone in [&first, &second] {
            let other = build(&availability, Some(&third), Some(undone));
            assert!(!Arc::ptr_eq(&answers_of(undone), &answers_of(&other)));
            assert_eq!(nodes_of(&table(&other, one)), vec![0]);
        }
    }
}
