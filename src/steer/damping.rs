//! Answer damping (hysteresis on rankings): a cell keeps its incumbent top node until a
//! challenger has scored better by the policy's margin for its hold time, so answers do not
//! oscillate on noisy measurements. `damp` works on a whole ranking; `damp_start` and
//! `promoted` give the same result from a cell's start alone, which is all a table keeps.
//! (Health flap damping is another thing: `health::flap`.)

use std::collections::HashMap;
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use super::regions::{Candidate, RankedStart, family_counts};
use crate::geo::UnitVector;
use crate::latency::age;
use crate::policy::{LatencyPolicy, NodeId};
use crate::runs::RunArray;

/// The answer a client group currently sticks to, and a challenger being timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Incumbent {
    /// The node at the top of the ranking.
    pub node: usize,
    /// A better node, and since when it has been better by the margin.
    pub challenger: Option<(usize, SystemTime)>,
}

/// Applies hysteresis to the top of a ranking. `ranked` is best first with `scores` aligned;
/// `may_trade(a, b)` says two nodes may trade places (same tier kind and fallback level).
/// Keeps the incumbent on top until a challenger has been better by `margin` for `hold`.
pub fn damp(
    ranked: &mut [usize],
    scores: &[f64],
    state: &mut Option<Incumbent>,
    may_trade: impl Fn(usize, usize) -> bool,
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
    if at == 0 || !may_trade(top, current.node) {
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

/// A damped ranking cell: (zone, steered name, row, column).
pub type CellKey = (usize, usize, usize, usize);

/// Where each damped ranking cell stands, per (zone, steered name, row). A city database
/// gives every row hundreds of thousands of columns, so a row is kept as runs of cell
/// states: neighbouring places mostly keep the same incumbent, and challengers that began
/// at one ranking share their start time, so a row has few distinct states. It is dense
/// only while a ranking updates it.
#[derive(Debug, Clone, Default)]
pub struct DampingState {
    rows: HashMap<(usize, usize, usize), KeptRow>,
}

/// One row's cells as kept between rankings.
#[derive(Debug, Clone, Default)]
struct KeptRow {
    /// Column → index into `states`; [`DampingRow::NONE`] for no incumbent.
    cells: RunArray,
    /// The states cells hold, each once.
    states: Vec<Incumbent>,
}

impl KeptRow {
    /// Keeps the states some cell still holds, renumbered.
    fn of(row: DampingRow) -> Self {
        let mut renumbered = vec![DampingRow::NONE; row.states.len()];
        let mut states = Vec::new();
        let cells = (row.cells.iter())
            .map(|&id| {
                let Some(slot) = renumbered.get_mut(id as usize) else {
                    return DampingRow::NONE;
                };
                if *slot == DampingRow::NONE {
                    *slot = states.len() as u32;
                    states.push(row.states[id as usize]);
                }
                *slot
            })
            .collect();
        KeptRow { cells, states }
    }

    fn expanded(self) -> DampingRow {
        DampingRow {
            cells: self.cells.iter().collect(),
            index: (self.states.iter().enumerate())
                .map(|(id, &state)| (state, id as u32))
                .collect(),
            states: self.states,
            recent: DampingRow::NONE,
        }
    }

    fn get(&self, column: usize) -> Option<Incumbent> {
        let id = self.cells.get(column)?;
        self.states.get(id as usize).copied()
    }
}

/// One row's cells, by column, while a ranking updates them.
#[derive(Debug, Clone)]
pub struct DampingRow {
    /// Column → index into `states`; [`DampingRow::NONE`] for no incumbent.
    cells: Vec<u32>,
    /// Every state a cell has held in this ranking, each once.
    states: Vec<Incumbent>,
    /// State → its index in `states`.
    index: FxHashMap<Incumbent, u32>,
    /// The index `id_of` gave last (neighbouring cells mostly take the same state).
    recent: u32,
}

impl Default for DampingRow {
    fn default() -> Self {
        DampingRow {
            cells: Vec::new(),
            states: Vec::new(),
            index: FxHashMap::default(),
            recent: Self::NONE,
        }
    }
}

impl DampingRow {
    /// No incumbent.
    const NONE: u32 = u32::MAX;

    /// A cell's incumbent, if it has one.
    pub fn get(&self, column: usize) -> Option<Incumbent> {
        let id = *self.cells.get(column)?;
        self.states.get(id as usize).copied()
    }

    /// Sets or clears a cell's incumbent.
    pub fn set(&mut self, column: usize, state: Option<Incumbent>) {
        let id = self.id_of(state);
        if self.cells.len() <= column {
            if id == Self::NONE {
                return;
            }
            self.cells.resize(column + 1, Self::NONE);
        }
        self.cells[column] = id;
    }

    /// Whether damping leaves every cell of `columns` as ranked when its start's top is
    /// `top`: no cell has another incumbent (a challenger of a cell whose incumbent is the
    /// top anyway ends, as [`DampingRow::hold_run`] records).
    pub fn settled(&self, columns: std::ops::Range<usize>, top: Option<usize>) -> bool {
        let holds_top = |id: u32| {
            id == Self::NONE || (self.states.get(id as usize)).is_some_and(|s| Some(s.node) == top)
        };
        let Some(cells) = self.cells.get(columns) else {
            return false;
        };
        // Runs of one state are the rule: look each state up once per stretch.
        let mut last = None;
        cells.iter().all(|&id| {
            if last == Some(id) {
                return true;
            }
            last = Some(id);
            holds_top(id)
        })
    }

    /// What [`DampingRow::set`] records cell by cell for a settled run: `top` holds every
    /// cell of `columns`, unchallenged.
    pub fn hold_run(&mut self, columns: std::ops::Range<usize>, top: Option<usize>) {
        let id = self.id_of(top.map(|node| Incumbent {
            node,
            challenger: None,
        }));
        if let Some(cells) = self.cells.get_mut(columns) {
            cells.fill(id);
        }
    }

    /// The index of `state`, added if new.
    fn id_of(&mut self, state: Option<Incumbent>) -> u32 {
        let Some(state) = state else {
            return Self::NONE;
        };
        if self.states.get(self.recent as usize) == Some(&state) {
            return self.recent;
        }
        self.recent = *self.index.entry(state).or_insert_with(|| {
            self.states.push(state);
            (self.states.len() - 1) as u32
        });
        self.recent
    }

    /// Keeps `columns` columns (a database or its groups may have changed).
    pub fn resize(&mut self, columns: usize) {
        self.cells.resize(columns, Self::NONE);
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

    /// Sets or clears a cell's incumbent (rewrites its row: rankings update whole rows
    /// with [`DampingState::take_row`]).
    pub fn set(&mut self, (zone, steered, row, column): CellKey, state: Option<Incumbent>) {
        let mut cells = self.take_row(zone, steered, row);
        cells.set(column, state);
        self.put_row(zone, steered, row, cells);
    }

    /// Takes one steered name's rows out, to rank the name beside others.
    pub fn take_name(&mut self, zone: usize, steered: usize) -> DampingState {
        let keys: Vec<(usize, usize, usize)> = self
            .rows
            .keys()
            .filter(|k| k.0 == zone && k.1 == steered)
            .copied()
            .collect();
        let rows = keys
            .into_iter()
            .filter_map(|k| Some((k, self.rows.remove(&k)?)))
            .collect();
        DampingState { rows }
    }

    /// Puts rows taken out with [`DampingState::take_name`] back.
    pub fn merge(&mut self, other: DampingState) {
        self.rows.extend(other.rows);
    }

    /// Takes one row's incumbents out, dense, to update them in one pass.
    pub fn take_row(&mut self, zone: usize, steered: usize, row: usize) -> DampingRow {
        self.rows
            .remove(&(zone, steered, row))
            .map(KeptRow::expanded)
            .unwrap_or_default()
    }

    /// Puts a row's incumbents (back).
    pub fn put_row(&mut self, zone: usize, steered: usize, row: usize, cells: DampingRow) {
        self.rows.insert((zone, steered, row), KeptRow::of(cells));
    }

    /// The cells of an earlier policy load that still mean the same clients and nodes:
    /// `row_of` gives a row's key in the new load (`None`: the row's cells changed
    /// meaning), `node_of` a node's id in its new zone (`None`: gone, so its cells start
    /// afresh).
    pub fn carried(
        &self,
        row_of: impl Fn((usize, usize, usize)) -> Option<(usize, usize, usize)>,
        node_of: impl Fn(usize, usize) -> Option<usize>,
    ) -> DampingState {
        let mut rows = HashMap::new();
        for (&key, row) in &self.rows {
            let Some(new_key) = row_of(key) else {
                continue;
            };
            let zone = key.0;
            let mut carried = DampingRow::default();
            let ids: Vec<u32> = (row.states.iter())
                .map(|state| {
                    carried.id_of(node_of(zone, state.node).map(|node| {
                        Incumbent {
                            node,
                            challenger: (state.challenger)
                                .and_then(|(c, since)| Some((node_of(zone, c)?, since))),
                        }
                    }))
                })
                .collect();
            // Every kept state is held by some cell, and each maps to one state: all stay held.
            let cells =
                (row.cells).map(|id| ids.get(id as usize).copied().unwrap_or(DampingRow::NONE));
            let states = carried.states;
            rows.insert(new_key, KeptRow { cells, states });
        }
        DampingState { rows }
    }

    /// Whether some cell has a challenger being timed.
    pub fn any_challenger(&self) -> bool {
        (self.rows.values()).any(|r| r.states.iter().any(|s| s.challenger.is_some()))
    }
}

/// Damps one cell whose start's top is not its incumbent (see [`damp`]),
/// from the start alone: hysteresis only compares the top with the incumbent, and keeping
/// the incumbent moves it to the front, so neither the whole ranking nor its scores are
/// needed (a latency change moves the top of hundreds of thousands of cells).
/// `position[node]` is the node's index in `candidates` (`u32::MAX`: not a candidate).
/// Returns the cell's new incumbent state, and whether the incumbent stays on top (its
/// start is then [`promoted`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn damp_start(
    held: Incumbent,
    start: &RankedStart,
    candidates: &[Candidate],
    position: &[u32],
    at: Option<&UnitVector>,
    may_trade: impl Fn(NodeId, NodeId) -> bool,
    now: std::time::SystemTime,
    policy: &LatencyPolicy,
) -> (Option<Incumbent>, bool) {
    let candidate = |id: NodeId| position.get(id).and_then(|&i| candidates.get(i as usize));
    let Some((top, top_candidate)) = start.top.and_then(|t| Some((t, candidate(t)?))) else {
        return (None, false);
    };
    let mut ranked = [top, held.node];
    let mut scores = [top_candidate.score(at), 0.0];
    let listed = match candidate(held.node) {
        Some(c) => {
            scores[1] = c.score(at);
            2
        }
        None => 1, // no longer a candidate here: the top takes over
    };
    let mut state = Some(held);
    damp(
        &mut ranked[..listed],
        &scores[..listed],
        &mut state,
        may_trade,
        now,
        policy,
    );
    (state, ranked[0] != top)
}

/// A start with `node` moved to the front of each of its families, the rest in their order:
/// what keeping an incumbent on top makes of a cell's start. Cells of one start and one
/// incumbent share it, so callers keep it per (start, node).
pub(super) fn promoted(
    start: &RankedStart,
    node: NodeId,
    depth: usize,
    candidates: &[Candidate],
    position: &[u32],
) -> RankedStart {
    let serves = position
        .get(node)
        .and_then(|&i| candidates.get(i as usize))
        .map_or(0, |c| c.families);
    let counts = family_counts(candidates);
    let mut promoted = start.clone();
    promoted.top = Some(node);
    for (f, list) in promoted.families.iter_mut().enumerate() {
        if serves & (1 << f) != 0 {
            list.retain(|&id| id != node);
            list.insert(0, node);
            list.truncate(depth);
        }
        promoted.complete[f] = list.len() >= counts[f];
    }
    promoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::tests::t;
    use crate::random::XorShift;
    use crate::steer::regions::tests::{candidates, random_place};
    use crate::steer::regions::{family_counts, rank_exact, start_at};
    use std::time::Duration;

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

    /// A run is settled where every cell is empty or already held by the top (a challenger
    /// there ends); holding it clears challengers; states no cell holds are not kept.
    #[test]
    fn runs_held_by_the_top_are_settled() {
        let challenged = Incumbent {
            node: 3,
            challenger: Some((5, t(10))),
        };
        let mut row = DampingRow::default();
        row.resize(100);
        row.set(40, Some(challenged));
        row.set(
            60,
            Some(Incumbent {
                node: 4,
                challenger: None,
            }),
        );
        assert!(row.settled(0..40, Some(9)), "empty cells");
        assert!(row.settled(30..50, Some(3)), "held by the top, challenged");
        assert!(!row.settled(30..50, Some(5)), "another incumbent");
        assert!(!row.settled(50..70, Some(3)));
        row.hold_run(30..50, Some(3));
        assert_eq!(
            row.get(40),
            Some(Incumbent {
                node: 3,
                challenger: None
            })
        );
        assert_eq!(row.get(30).map(|i| i.node), Some(3));
        let mut state = DampingState::new();
        state.put_row(0, 0, 0, row);
        assert!(
            !state.any_challenger(),
            "no cell holds the challenged state"
        );
        assert_eq!(state.get((0, 0, 0, 60)).map(|i| i.node), Some(4));
        assert_eq!(state.get((0, 0, 0, 29)), None);
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

    /// Damping a cell from its start alone gives the state and start that damping its
    /// whole ranking gives, whether the incumbent is kept, timed or replaced, or gone.
    #[test]
    fn damping_from_the_start_equals_damping_the_whole_ranking() {
        let mut random = XorShift::new(0x2545_f491_4f6c_dd1d);
        let policy = LatencyPolicy::default();
        let now = t(0);
        let (mut kept, mut replaced) = (0, 0);
        for (nodes, depth) in [(5, 3), (40, 4), (200, 6)] {
            let candidates = candidates(&mut random, nodes);
            // Some nodes are not candidates here (a fence, another row).
            let present: Vec<Candidate> = candidates
                .iter()
                .copied()
                .filter(|c| c.id % 7 != 3)
                .collect();
            let mut position = vec![u32::MAX; nodes + 1];
            for (i, c) in present.iter().enumerate() {
                position[c.id] = i as u32;
            }
            let may_trade = |a: NodeId, b: NodeId| a % 3 == b % 3;
            let counts = family_counts(&present);
            let mut sorted = Vec::new();
            for _ in 0..2_000 {
                let at = random_place(&mut random);
                let start = start_at(&present, Some(&at), depth);
                let node = (random.next_u64() % nodes as u64) as usize;
                if start.top == Some(node) {
                    continue; // undamped: the caller keeps the top
                }
                let challenger = match random.next_u64() % 4 {
                    0 => None,
                    1 => start
                        .top
                        .map(|t| (t, now - std::time::Duration::from_secs(3_600))),
                    2 => start.top.map(|t| (t, now)),
                    _ => Some((node ^ 1, now)),
                };
                let held = Incumbent { node, challenger };
                // The whole ranking, damped.
                rank_exact(&present, Some(&at), &mut sorted);
                let mut ranked: Vec<NodeId> = sorted
                    .iter()
                    .map(|&(_, i)| present[i as usize].id)
                    .collect();
                let scores: Vec<f64> = sorted
                    .iter()
                    .map(|&(_, i)| present[i as usize].score(Some(&at)))
                    .collect();
                let mut expected_state = Some(held);
                damp(
                    &mut ranked,
                    &scores,
                    &mut expected_state,
                    may_trade,
                    now,
                    &policy,
                );
                let families = |id: NodeId| present[position[id] as usize].families;
                let expected =
                    RankedStart::of(ranked.iter().map(|&id| (id, families(id))), depth, counts);
                let (state, kept_on_top) = damp_start(
                    held,
                    &start,
                    &present,
                    &position,
                    Some(&at),
                    may_trade,
                    now,
                    &policy,
                );
                assert_eq!(state, expected_state, "{nodes} nodes, incumbent {node}");
                let start = if kept_on_top {
                    kept += 1;
                    promoted(&start, node, depth, &present, &position)
                } else {
                    replaced += 1;
                    start
                };
                assert_eq!(start, expected, "{nodes} nodes, incumbent {node}");
            }
        }
        assert!(
            kept > 100 && replaced > 100,
            "kept {kept}, replaced {replaced}"
        );
    }
}
