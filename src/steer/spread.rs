//! Spread groups: which nodes of a cell's start are about as near as the best, so that the
//! answer draws among them by weight instead of always naming the first.
//!
//! A steered name with `spread: {within: …}` ranks by score before weight; nodes in a row of
//! its ranking whose scores stay within the margin of the group's first node, of the same
//! tier and fallback level, form one **spread group**. Which nodes of a group are up is
//! known only when health is; which one a client gets, only when it asks (by its network:
//! see `answer::draw`). Ranking records just where groups begin.

use std::time::SystemTime;

use super::regions::{Candidate, RankedStart};
use crate::geo::UnitVector;
use crate::latency::ZoneLatency;
use crate::policy::{Node, NodeId, SpreadWithin, SteeredName};

/// Per family, the positions of a start that begin a spread group: bit `i` set when
/// position `i` does. Positions from 64 on are groups of their own.
pub type Groups = [u64; 2];

/// Every position its own group: the value without `spread`.
pub const UNSPREAD: Groups = [u64::MAX; 2];

/// The bounds of the group holding position `at` in a family's list of `len` nodes whose
/// group starts are `starts`: `(first, end)`.
pub fn group_bounds(starts: u64, at: usize, len: usize) -> (usize, usize) {
    let starts_at = |i: usize| i >= 64 || starts & (1u64 << i) != 0;
    let first = (0..=at).rev().find(|&i| starts_at(i)).unwrap_or(0);
    let end = (at + 1..len).find(|&i| starts_at(i)).unwrap_or(len);
    (first, end)
}

/// Where the spread groups of `start` begin for clients at `at`: scores read from the
/// cell's `candidates` (`position[node]`: a node's index among them), `same_standing`
/// telling whether two nodes may share a group (tier and fallback level).
pub(crate) fn group_starts(
    start: &RankedStart,
    within: SpreadWithin,
    (candidates, position): (&[Candidate], &[u32]),
    at: Option<&UnitVector>,
    same_standing: impl Fn(NodeId, NodeId) -> bool,
) -> Groups {
    let score = |id: NodeId| {
        let index = *position.get(id)? as usize;
        candidates.get(index).map(|c| c.score(at))
    };
    [0, 1].map(|family| {
        let mut starts = u64::MAX;
        let mut lead: Option<(NodeId, f64)> = None;
        for (i, &id) in start.families[family].iter().enumerate().take(64) {
            let score = score(id);
            match (lead, score) {
                (Some((first, best)), Some(s))
                    if same_standing(first, id) && s <= within.limit(best) =>
                {
                    starts &= !(1u64 << i);
                }
                _ => lead = score.map(|s| (id, s)),
            }
        }
        starts
    })
}

/// Draw weights per node for a spread name: its `weight` in thousandths, times its free
/// capacity when a load is known (a node at 70 % draws 30 % of what it would idle), never
/// below a twentieth so that a busy node keeps the networks it has rather than flapping.
pub fn draw_weights(
    steered: &SteeredName,
    nodes: &[Node],
    measured: &ZoneLatency,
    now: SystemTime,
) -> Vec<u32> {
    if !steered.spreads() {
        return Vec::new();
    }
    nodes
        .iter()
        .enumerate()
        .map(|(id, node)| {
            let free = measured
                .load(id, now, node.capacity.max_age)
                .map_or(1.0, |load| (1.0 - load).clamp(0.05, 1.0));
            (f64::from(node.weight.max(1)) * 1000.0 * free).round() as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_bounds_follow_the_start_bits() {
        // Groups: [0, 1, 2], [3], [4, 5].
        let starts: u64 = !((1 << 1) | (1 << 2) | (1 << 5));
        assert_eq!(group_bounds(starts, 0, 6), (0, 3));
        assert_eq!(group_bounds(starts, 2, 6), (0, 3));
        assert_eq!(group_bounds(starts, 3, 6), (3, 4));
        assert_eq!(group_bounds(starts, 5, 6), (4, 6));
        assert_eq!(group_bounds(u64::MAX, 4, 6), (4, 5));
        assert_eq!(group_bounds(0, 70, 80), (70, 71));
        assert_eq!(group_bounds(0, 63, 80), (0, 64));
    }
}
