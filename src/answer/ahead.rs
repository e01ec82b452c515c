//! Healthy starts ranked ahead. A class one failure away from splitting would, at that
//! failure, send all its columns to be ranked among the healthy nodes while the change
//! waits (a class over much of a continent: tens of milliseconds), and so would a failure
//! inside a split cell's healthy start. So after each build, while the publisher waits for
//! the next change, those columns are ranked here, one node deeper than a pick reads; the
//! build after the failure carries their starts without the fallen node instead of
//! ranking them. The words are `steer`'s glossary's.

use std::sync::Arc;

use super::build::{
    Columns, Memos, PickInputs, add_range, classes_where, draw_keys, fallen_and_risen,
    rank_healthy_starts, rows_of_group, split_columns, union_of,
};
use super::snapshot::{
    Ahead, AheadOfTable, BuiltWith, CLASS_SPLIT, HealthyStarts, NOT_RANKED, Snapshot, SteeredTable,
};
use super::zone::name_key;
use crate::geo::GeoDb;
use crate::policy::{SteeredName, Zone};
use crate::runs::RunArray;
use crate::steer::table::SteeredRanking;
use crate::steer::{Availability, Rankings};

/// What the publisher ranks ahead after a build, for a snapshot built by
/// [`crate::answer::build`] or [`crate::answer::rebuild`] (`zones`, `rankings` and
/// `availability` as given to it), from what was ranked ahead `before` (of the last
/// snapshots, newest first): for benchmarks of what it spares the next change.
pub fn rank_ahead_of(
    zones: &[Zone],
    rankings: &Rankings,
    availability: &[Vec<Availability>],
    (snapshot, before): (&Snapshot, &[&Ahead]),
) -> Ahead {
    let built_with = (availability, &[][..]);
    rank_ahead(zones, rankings, built_with, snapshot, before, || false)
}

/// Ranks ahead for the steered tables of `snapshot`, built for `zones` from `rankings` with
/// `built_with`. Tables that one of `before` (what was ranked ahead of the last snapshots,
/// newest first) ranked ahead of are taken from it, as they are when a change undone takes
/// a table back; the others carry from the newest. Stops between names once `stopped` (a
/// change waits to be built), with what it has.
pub(crate) fn rank_ahead(
    zones: &[Zone],
    rankings: &Rankings,
    built_with: BuiltWith,
    snapshot: &Snapshot,
    before: &[&Ahead],
    stopped: impl Fn() -> bool,
) -> Ahead {
    let (availability, down_lines) = built_with;
    let mut ahead = Ahead::default();
    for (i, zone) in zones.iter().enumerate() {
        let origin = name_key(&zone.origin);
        let answers = snapshot.zone(&origin);
        let keys = draw_keys(zone);
        let lists = (
            availability.get(i).map_or(&[][..], Vec::as_slice),
            down_lines.get(i).map_or(&[][..], Vec::as_slice),
            &keys[..],
        );
        let mut names = Vec::with_capacity(zone.steered.len());
        for (n, (steered, ranking)) in zone.steered.iter().zip(rankings.of_zone(i)).enumerate() {
            let table = answers
                .and_then(|z| z.steered(&name_key(&steered.name)))
                .filter(|t| Arc::ptr_eq(&t.table, &ranking.rows));
            let ranked: Vec<&Arc<AheadOfTable>> = (before.iter())
                .filter_map(|b| b.zones.get(i)?.get(n)?.as_ref())
                .collect();
            let then = ranked.first().copied();
            let entry = table.and_then(|table| {
                let kept = (ranked.iter().copied())
                    .find(|e| Arc::ptr_eq(&e.node_states, &table.node_states));
                if let Some(kept) = kept {
                    return Some(Arc::clone(kept));
                }
                if stopped() {
                    return None;
                }
                let health = PickInputs::of(zone, steered, ranking, lists);
                let then = then.filter(|e| Arc::ptr_eq(&e.rows, &ranking.rows));
                let then = then.map(|e| &**e);
                let groups = table_ahead(steered, (ranking, table), &health, then, &snapshot.geo);
                Some(Arc::new(AheadOfTable {
                    node_states: Arc::clone(&table.node_states),
                    rows: Arc::clone(&ranking.rows),
                    groups,
                }))
            });
            names.push(entry);
        }
        ahead.zones.push(names);
    }
    ahead
}

/// Per row group, the healthy starts of the columns where a class is split or one failure
/// away from it, `answers + 1` deep (none where there are no such columns): carried from
/// what was ranked ahead of a table `before` from the same ranking where they hold.
fn table_ahead(
    steered: &SteeredName,
    (ranking, table): (&SteeredRanking, &SteeredTable),
    health: &PickInputs,
    before: Option<&AheadOfTable>,
    geo: &GeoDb,
) -> Vec<HealthyStarts> {
    let near = near_split(ranking, table, health);
    if !near.contains(&true) {
        return Vec::new();
    }
    // What changed since `before`, by answerability (nothing carried: other nodes).
    let moved = before.and_then(|b| fallen_and_risen(&b.node_states, &table.node_states));
    let before = before.filter(|_| moved.is_some());
    let (fallen, risen) = moved.unwrap_or_default();
    let near = classes_where(&near);
    (0..ranking.rows.len())
        .map(|group| {
            let rows = rows_of_group(ranking, group);
            let mut needed = split_columns(ranking, &rows, &near);
            // Columns split already are ranked again, deeper: a failure in their start
            // then carries too.
            if let Some(then) = table.healthy_starts.get(group) {
                needed = union_of(&needed, &ranked_columns(&then.of_column));
            }
            if needed.is_empty() {
                return HealthyStarts::default();
            }
            let memos = before.map(|b| Memos {
                then: None,
                ahead: b.groups.get(group),
                fallen: &fallen,
                risen: &risen,
            });
            let (up, depth) = (|id| health.up(id), steered.answers + 1);
            // Among the nodes up alone: where none is, each build ranks what it falls back to.
            rank_healthy_starts(ranking, (group, &needed), up, depth, geo, (memos, None))
        })
        .collect()
}

/// By class: whether it decides now but would not with one more of its healthy nodes down.
fn near_split(ranking: &SteeredRanking, table: &SteeredTable, health: &PickInputs) -> Vec<bool> {
    (ranking.classes.iter().enumerate())
        .map(|(c, class)| {
            let start = &class.start;
            let decides = |fallen| (0..2).all(|f| health.decided_unless(start, f, fallen));
            table.class_answer.get(c).is_some_and(|&a| a != CLASS_SPLIT)
                && (start.families.iter().flatten()).any(|&id| health.up(id) && !decides(Some(id)))
        })
        .collect()
}

/// The columns `starts` has a start for, as ascending, disjoint ranges.
fn ranked_columns(starts: &RunArray) -> Vec<Columns> {
    let mut ranked = Vec::new();
    for (columns, start) in starts.runs() {
        if start != NOT_RANKED {
            add_range(&mut ranked, columns);
        }
    }
    ranked
}
