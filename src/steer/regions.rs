//! Ranking every place of a database at once: per place, the first nodes of each address
//! family, without scoring every node at every place.
//!
//! A node's score never decreases with distance (`ScoreTerms::score`), so over a region of
//! places within radius `r` of a centre `c` it lies between its scores at `d(c, n) − r` and
//! `d(c, n) + r`. A node whose best case there is worse than the worst case of a family's
//! `depth`-th node is in no place's start of that family; and where the bounds of the first
//! nodes do not overlap, every place of the region has the same start, found once. Other
//! regions split in two until they are small, and then each place ranks the few nodes left
//! by the exact keys `order::rank` sorts by.

use rustc_hash::FxHashMap;

use super::order::with_score;
use super::score::ScoreTerms;
use crate::geo::{MORTON_BITS, PlacePosition, UnitVector, morton_cell};
use crate::policy::NodeId;

/// Regions of at most this many places rank them one by one.
const LEAF_PLACES: usize = 12;
/// Regions of at most this many places measure their extent instead of taking their cell's.
const MEASURED_PLACES: usize = 2048;
/// Slices of fewer places than this on average are ranked as one list.
const GATHER_BELOW: usize = 256;
/// Regions of more places than this are ranked on every core.
const PARALLEL_PLACES: usize = 20_000;

/// One node a row allows at the places of one profile, with what its key there depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    /// The node.
    pub id: NodeId,
    /// Its rank key without the score (`scoring::rank_key_base`).
    pub base: u128,
    /// Bit 0: it has an IPv4 address; bit 1: an IPv6 one.
    pub families: u8,
    /// What its score depends on besides distance.
    pub terms: ScoreTerms,
    /// Where it is.
    pub at: UnitVector,
}

impl Candidate {
    /// Its score for a client at `from` (none: unlocated).
    pub(crate) fn score(&self, from: Option<&UnitVector>) -> f64 {
        self.terms.score(from.map(|v| v.distance_km(&self.at)))
    }

    /// Its rank key for a client at `from`.
    pub(crate) fn key(&self, from: Option<&UnitVector>) -> u128 {
        with_score(self.base, self.score(from))
    }

    /// Whether it may answer family `f` (0: IPv4, 1: IPv6).
    pub(crate) fn serves(&self, f: usize) -> bool {
        self.families & (1 << f) != 0
    }
}

/// How many of `candidates` may answer each family (IPv4, IPv6).
pub(crate) fn family_counts(candidates: &[Candidate]) -> [usize; 2] {
    [0, 1].map(|f| candidates.iter().filter(|c| c.serves(f)).count())
}

/// The start of a ranking: what decides an answer unless many of its nodes are down.
#[derive(Debug, Clone, Eq, Default)]
pub(crate) struct RankedStart {
    /// Per family (IPv4, IPv6), its first `depth` eligible nodes, best first.
    pub families: [Vec<NodeId>; 2],
    /// Per family, whether those are all its eligible nodes.
    pub complete: [bool; 2],
    /// The best node of either family: the one damping holds on to.
    pub top: Option<NodeId>,
}

impl RankedStart {
    /// The start of a ranking given in order (`counts`: eligible nodes per family in all):
    /// what the tests hold region ranking and damping to.
    #[cfg(test)]
    pub(crate) fn of(
        ranked: impl IntoIterator<Item = (NodeId, u8)>,
        depth: usize,
        counts: [usize; 2],
    ) -> Self {
        let mut start = RankedStart::default();
        start.fill(ranked, [depth; 2], counts);
        start
    }

    /// The start for a client at `from` (`counts`: eligible nodes per family; `depth`: how
    /// many of each family), sorting all of `candidates` in `sorted` by `keys`.
    fn fill_at(
        &mut self,
        candidates: &[Candidate],
        from: Option<&UnitVector>,
        depth: [usize; 2],
        counts: [usize; 2],
        sorted: &mut Vec<(u128, u32)>,
        keys: Keys,
    ) {
        let by_chord =
            keys == Keys::Chord && from.is_some_and(|at| rank_by_chord(candidates, at, sorted));
        if !by_chord {
            rank_exact(candidates, from, sorted);
        }
        let ranked = sorted.iter().map(|&(_, i)| {
            let c = &candidates[i as usize];
            (c.id, c.families)
        });
        self.fill(ranked, depth, counts);
    }

    fn fill(
        &mut self,
        ranked: impl IntoIterator<Item = (NodeId, u8)>,
        depth: [usize; 2],
        counts: [usize; 2],
    ) {
        self.families.iter_mut().for_each(Vec::clear);
        self.top = None;
        for (id, families) in ranked {
            self.top.get_or_insert(id);
            for (f, list) in self.families.iter_mut().enumerate() {
                if families & (1 << f) != 0 && list.len() < depth[f] {
                    list.push(id);
                }
            }
            if (0..2).all(|f| self.families[f].len() >= depth[f]) {
                break;
            }
        }
        self.complete = [0, 1].map(|f| self.families[f].len() >= counts[f]);
    }
}

/// Compared node by node: starts are a few nodes long, and ranking compares one per place,
/// where a call to `memcmp` per family cost more than the comparison.
impl PartialEq for RankedStart {
    fn eq(&self, other: &Self) -> bool {
        let same =
            |a: &[NodeId], b: &[NodeId]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y);
        self.top == other.top
            && self.complete == other.complete
            && same(&self.families[0], &other.families[0])
            && same(&self.families[1], &other.families[1])
    }
}

/// Hashes what `eq` compares.
impl std::hash::Hash for RankedStart {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.families.hash(state);
        self.complete.hash(state);
        self.top.hash(state);
    }
}

/// Distinct starts, numbered in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct Starts {
    /// The starts.
    pub list: Vec<RankedStart>,
    index: FxHashMap<RankedStart, u32>,
}

impl Starts {
    /// The number of `start`, given a new one if it is new.
    pub(crate) fn intern(&mut self, start: &RankedStart) -> u32 {
        if let Some(&id) = self.index.get(start) {
            return id;
        }
        let id = self.list.len() as u32;
        self.list.push(start.clone());
        self.index.insert(start.clone(), id);
        id
    }
}

/// A place to rank: its position, with its column as `place`.
pub(crate) type Point = PlacePosition;

/// The start of the ranking of `candidates` for a client at `from`, found by sorting them
/// all: for places ranked one by one.
pub(crate) fn start_at(
    candidates: &[Candidate],
    from: Option<&UnitVector>,
    depth: usize,
) -> RankedStart {
    let counts = family_counts(candidates);
    let mut start = RankedStart::default();
    let keys = Keys::of(candidates);
    start.fill_at(candidates, from, [depth; 2], counts, &mut Vec::new(), keys);
    start
}

/// Returns freed heap memory to the operating system. Ranking a city database allocates
/// and frees hundreds of megabytes on worker threads, and their malloc arenas would keep it
/// resident (measured: 28 MiB on the benchmark's server).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim has no preconditions; it only gives free pages back.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How a place's candidates are put in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// By their rank keys: a distance (an arc sine) and a score each.
    Exact,
    /// By squared chord in place of the score, where every candidate scores by distance
    /// alone through the same terms (so nearer is better for all alike: the rule at start-up,
    /// before any measurement): three products each, and the same order.
    Chord,
}

impl Keys {
    /// The keys that rank `candidates` (and any subset of them) in their exact order.
    pub(crate) fn of(candidates: &[Candidate]) -> Keys {
        let alike = candidates.first().is_some_and(|first| {
            first.terms.by_distance_alone() && candidates.iter().all(|c| c.terms == first.terms)
        });
        if alike { Keys::Chord } else { Keys::Exact }
    }
}

/// Squared chords closer than this are not told apart by chord (see [`rank_by_chord`]).
const CHORD_RESOLUTION: f64 = 1e-9;

/// [`rank_exact`] by squared chord for candidates that score by distance alone through the
/// same terms ([`Keys::Chord`]): equal chords give equal scores, and chords apart by more
/// than [`CHORD_RESOLUTION`] give scores apart by far more than rounding (the arc grows at
/// least a quarter Earth radius per unit of squared chord, the score 0.0147 ms per km), so
/// the order is the scores' order. Where two candidates' chords differ by less, rounding
/// might still tie their scores: returns false, and the caller ranks them exactly.
fn rank_by_chord(candidates: &[Candidate], from: &UnitVector, out: &mut Vec<(u128, u32)>) -> bool {
    out.clear();
    out.extend(
        (candidates.iter().enumerate())
            .map(|(i, c)| (with_score(c.base, from.chord_squared(&c.at)), i as u32)),
    );
    out.sort_unstable_by_key(|e| e.0);
    let chord = |i: u32| from.chord_squared(&candidates[i as usize].at);
    // Near ties between candidates of different tiers cannot reorder them either; checking
    // every neighbouring pair anyway keeps the rule simple and is rare to fail.
    out.windows(2).all(|w| {
        let gap = (chord(w[0].1) - chord(w[1].1)).abs();
        gap == 0.0 || gap > CHORD_RESOLUTION
    })
}

/// Ranks candidates for one client position, best first: `(key, index into candidates)`.
pub(crate) fn rank_exact(
    candidates: &[Candidate],
    from: Option<&UnitVector>,
    out: &mut Vec<(u128, u32)>,
) {
    out.clear();
    out.extend(
        candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key(from), i as u32)),
    );
    out.sort_unstable_by_key(|e| e.0);
}

/// What ranking the places of one (row, profile) produces and shares.
struct Ranker {
    /// How many nodes of each family a start holds (fewer where fewer are eligible).
    depth: [usize; 2],
    counts: [usize; 2],
    /// How a place orders them.
    keys: Keys,
}

/// One worker's results: starts it found, and each place's start among them.
#[derive(Default)]
struct Found {
    starts: Starts,
    pieces: Pieces,
    scratch: RankedStart,
    sorted: Vec<(u128, u32)>,
}

/// Ranks every point (in Morton order) against `candidates` (the nodes a row allows there,
/// scored alike at each), writing each point's start into `out[column]` as a number in
/// `starts`.
#[cfg(test)]
pub(crate) fn rank_points(
    points: &[Point],
    candidates: &[Candidate],
    depth: usize,
    starts: &mut Starts,
    out: &mut [u32],
) {
    rank_slices_into(&[points], candidates, depth, starts, out);
}

/// [`rank_slices`], writing each column's start into `out[column]`.
pub(crate) fn rank_slices_into(
    slices: &[&[Point]],
    candidates: &[Candidate],
    depth: usize,
    starts: &mut Starts,
    out: &mut [u32],
) {
    let mut pieces = Pieces::new();
    rank_slices(slices, candidates, depth, starts, &mut pieces);
    for (first, count, id) in pieces {
        let (first, count) = (first as usize, count as usize);
        if let Some(cells) = out.get_mut(first..first.saturating_add(count)) {
            cells.fill(id);
        }
    }
}

/// Column ranges with the number of their start, `(first column, columns, start)`, in any
/// order: what ranking some of a table's columns yields when the others are kept as runs.
pub(crate) type Pieces = Vec<(u32, u32, u32)>;

/// Adds `count` columns from `first` with start `id` to `pieces`, lengthening the last
/// piece when it ends there with the same start (neighbouring columns mostly share one).
pub(crate) fn push_piece(pieces: &mut Pieces, first: u32, count: u32, id: u32) {
    match pieces.last_mut() {
        Some((from, len, same)) if *same == id && from.saturating_add(*len) == first => {
            *len = len.saturating_add(count);
        }
        _ => pieces.push((first, count, id)),
    }
}

/// [`rank_points`] for points given as slices, each a range of the Morton order (ranges of
/// columns are, so nothing is copied to rank some of them), adding pieces to `pieces`.
pub(crate) fn rank_slices(
    slices: &[&[Point]],
    candidates: &[Candidate],
    depth: usize,
    starts: &mut Starts,
    pieces: &mut Pieces,
) {
    let counts = family_counts(candidates);
    let ranker = Ranker {
        depth: [depth; 2],
        counts,
        keys: Keys::of(candidates),
    };
    let total: usize = slices.iter().map(|s| s.len()).sum();
    // Many short slices rank better as one list: regions then span the gaps between them
    // and are decided once for all (measured, 50 names with 80 nodes of 200 down at random:
    // 85 ms against 98 one slice at a time; 2048 was faster there but slower per change).
    if slices.len() > 1 && total / slices.len() < GATHER_BELOW {
        let gathered = slices.concat();
        return rank_slices(&[&gathered], candidates, depth, starts, pieces);
    }
    let workers = crate::parallel::workers();
    // Consecutive shares of about equal size, one per worker: any range of the order is a
    // region, so slices are cut where a share ends.
    let mut shares: Vec<Vec<&[Point]>> = vec![Vec::new()];
    if total > PARALLEL_PLACES && workers > 1 {
        let size = total.div_ceil(workers);
        let mut room = size;
        for &slice in slices {
            let mut rest = slice;
            while !rest.is_empty() {
                let (part, after) = rest.split_at(rest.len().min(room));
                if let Some(share) = shares.last_mut() {
                    share.push(part);
                }
                (rest, room) = (after, room - part.len());
                if room == 0 {
                    shares.push(Vec::new());
                    room = size;
                }
            }
        }
    } else {
        shares[0].extend_from_slice(slices);
    }
    let rank_share = |share: Vec<&[Point]>| {
        let mut found = Found::default();
        for part in share {
            ranker.region(part, candidates, 0, &mut found);
        }
        found
    };
    let found: Vec<Found> = if shares.len() == 1 {
        shares.into_iter().map(rank_share).collect()
    } else {
        crate::parallel::each(shares, rank_share)
    };
    for part in found {
        let renumber: Vec<u32> = part.starts.list.iter().map(|s| starts.intern(s)).collect();
        for (first, count, id) in part.pieces {
            push_piece(pieces, first, count, renumber[id as usize]);
        }
    }
}

/// A start being filled, and the keys it sorts: kept across places to allocate once.
type Scratch = (RankedStart, Vec<(u128, u32)>);

/// Places whose start among the healthy nodes is known, ranked again now that some nodes
/// came up. Their new start is among the old start's nodes and the risen ones alone; and
/// over a region where no risen node can beat, in its best case, the old start's last node
/// of a family it serves in that node's worst case, the old start stands without a look at
/// any place. So a node coming back costs the regions near it, not every place.
pub(crate) struct Rising {
    /// The old start's nodes and the risen nodes, in the order the profile lists them.
    among: Vec<Candidate>,
    /// Indices into `among` of the risen nodes.
    risen: Vec<usize>,
    /// Per family, the index into `among` of the old start's last node; `None` when the
    /// start holds every healthy node of the family (a risen node of it enters anywhere).
    last: [Option<usize>; 2],
    /// How many nodes of each family the new start holds: as many as the old one, and the
    /// risen ones too where it held every healthy node.
    depth: [usize; 2],
    counts: [usize; 2],
    /// How a place orders `among`.
    keys: Keys,
}

impl Rising {
    /// For places of one profile (`healthy`: its healthy candidates, the risen among them)
    /// whose start among the healthy nodes was `before`: the first nodes of each family, at
    /// least `least` of them unless that is all the family has (then it holds them all).
    pub(crate) fn new(
        healthy: &[Candidate],
        before: &RankedStart,
        risen: &[NodeId],
        least: usize,
    ) -> Self {
        let listed = |id: NodeId| before.families.iter().any(|f| f.contains(&id));
        let among: Vec<Candidate> = (healthy.iter())
            .filter(|c| risen.contains(&c.id) || listed(c.id))
            .copied()
            .collect();
        let risen: Vec<usize> = (among.iter().enumerate())
            .filter(|(_, c)| risen.contains(&c.id))
            .map(|(i, _)| i)
            .collect();
        let whole = |f: usize| before.families[f].len() < least;
        let last = [0, 1].map(|f| {
            let last = before.families[f].last().filter(|_| !whole(f))?;
            among.iter().position(|c| c.id == *last)
        });
        let depth = [0, 1].map(|f| {
            let rising = risen.iter().filter(|&&i| among[i].serves(f)).count();
            before.families[f].len() + if whole(f) { rising } else { 0 }
        });
        let counts = family_counts(&among);
        let keys = Keys::of(&among);
        Rising {
            among,
            risen,
            last,
            depth,
            counts,
            keys,
        }
    }

    /// Whether no risen node can enter the start anywhere.
    pub(crate) fn stands(&self) -> bool {
        self.risen.is_empty()
    }

    /// The new start of a client at `from` (none: unlocated), ranked among the few nodes.
    pub(crate) fn start_at(&self, from: Option<&UnitVector>) -> RankedStart {
        let mut start = RankedStart::default();
        let (depth, counts, keys) = (self.depth, self.counts, self.keys);
        start.fill_at(&self.among, from, depth, counts, &mut Vec::new(), keys);
        start
    }

    /// Ranks `points` (a range of the Morton order, consecutive columns) whose old start is
    /// numbered `kept` in `starts`, adding their pieces to `pieces`.
    pub(crate) fn rank(
        &self,
        points: &[Point],
        kept: u32,
        starts: &mut Starts,
        pieces: &mut Pieces,
    ) {
        let mut scratch: Scratch = (RankedStart::default(), Vec::new());
        self.region(points, 0, kept, (starts, &mut scratch), pieces);
    }

    /// Whether no risen node can enter anywhere in the Morton cell holding every code from
    /// `low` to `high` ([`crate::geo::GeoDb::code_bounds`] of some places): a look that reads no place.
    pub(crate) fn excluded_between(&self, (low, high): (u64, u64)) -> bool {
        let level = common_level_of(low, high);
        let (centre, radius) = UnitVector::enclosing_box(&morton_cell(low, level));
        level < MORTON_BITS && self.excluded(&centre, radius)
    }

    /// [`Rising::excluded`] at one place: by squared chords where they rank the candidates
    /// ([`Keys::Chord`], as [`rank_by_chord`] does), with no arc to work out; exactly where
    /// two chords compared are too near to tell apart.
    fn excluded_at(&self, at: &UnitVector) -> bool {
        if self.keys != Keys::Chord {
            return self.excluded(at, 0.0);
        }
        let key = |c: &Candidate| {
            let chord = at.chord_squared(&c.at);
            (with_score(c.base, chord), chord)
        };
        let worst = self.last.map(|last| Some(key(&self.among[last?])));
        let mut near = false;
        let mut after = |(best, chord): (u128, f64), (worst, other): (u128, f64)| {
            let gap = (chord - other).abs();
            near |= gap != 0.0 && gap <= CHORD_RESOLUTION;
            best > worst
        };
        let excluded = self.risen.iter().all(|&r| {
            let x = &self.among[r];
            let best = key(x);
            (0..2).all(|f| !x.serves(f) || worst[f].is_some_and(|w| after(best, w)))
        });
        match near {
            true => self.excluded(at, 0.0),
            false => excluded,
        }
    }

    /// Whether, within `radius` km of `centre`, every risen node ranks after the old
    /// start's last node of each family it serves.
    fn excluded(&self, centre: &UnitVector, radius: f64) -> bool {
        let key = |c: &Candidate, d: f64| with_score(c.base, c.terms.score(Some(d)));
        let worst = self.last.map(|last| {
            let c = &self.among[last?];
            Some(key(c, centre.distance_km(&c.at) + radius))
        });
        self.risen.iter().all(|&r| {
            let x = &self.among[r];
            let best = key(x, (centre.distance_km(&x.at) - radius).max(0.0));
            (0..2).all(|f| !x.serves(f) || worst[f].is_some_and(|w| best > w))
        })
    }

    fn region(
        &self,
        points: &[Point],
        level: u32,
        kept: u32,
        (starts, scratch): (&mut Starts, &mut Scratch),
        pieces: &mut Pieces,
    ) {
        let Some(first) = points.first() else {
            return;
        };
        crate::parallel::yield_to_builds();
        let level = level.max(common_level(points));
        let count = u32::try_from(points.len()).unwrap_or(u32::MAX);
        // The cell's box first: it costs no pass over the points, and settles the regions
        // far from every risen node, which are most of them.
        let (centre, radius) = UnitVector::enclosing_box(&morton_cell(first.code, level));
        if level < MORTON_BITS && self.excluded(&centre, radius) {
            push_piece(pieces, first.place, count, kept);
            return;
        }
        if points.len() <= LEAF_PLACES || level >= MORTON_BITS {
            let mut previous: Option<u32> = None;
            for point in points {
                let id = if self.excluded_at(&point.at) {
                    kept
                } else {
                    let (start, sorted) = &mut *scratch;
                    let (depth, counts, keys) = (self.depth, self.counts, self.keys);
                    start.fill_at(&self.among, Some(&point.at), depth, counts, sorted, keys);
                    match previous {
                        Some(id) if starts.list.get(id as usize) == Some(start) => id,
                        _ => starts.intern(start),
                    }
                };
                previous = Some(id);
                push_piece(pieces, point.place, 1, id);
            }
            return;
        }
        let (centre, radius) = if points.len() <= MEASURED_PLACES {
            let (centre, radius) = UnitVector::enclosing_box(&bounding_box(points));
            if self.excluded(&centre, radius) {
                push_piece(pieces, first.place, count, kept);
                return;
            }
            (centre, radius)
        } else {
            (centre, radius)
        };
        // Where a risen node enters, the new start may still be one for the whole region.
        let mut bounds = key_bounds(&self.among, &centre, radius);
        bounds.sort_unstable_by_key(|b| b.best);
        let ranker = Ranker {
            depth: self.depth,
            counts: self.counts,
            keys: self.keys,
        };
        let start = &mut scratch.0;
        if ranker.fixed_start(&bounds, &self.among, start) {
            push_piece(pieces, first.place, count, starts.intern(start));
            return;
        }
        for part in sub_cells(points, level) {
            self.region(part, level + 1, kept, (&mut *starts, &mut *scratch), pieces);
        }
    }
}

/// Each candidate's key bounds over the places within `radius` km of `centre`.
fn key_bounds(candidates: &[Candidate], centre: &UnitVector, radius: f64) -> Vec<Bounds> {
    (candidates.iter().enumerate())
        .map(|(i, c)| {
            let d = centre.distance_km(&c.at);
            Bounds {
                best: with_score(c.base, c.terms.score(Some((d - radius).max(0.0)))),
                worst: with_score(c.base, c.terms.score(Some(d + radius))),
                index: i as u32,
            }
        })
        .collect()
}

/// The non-empty ones of the eight sub-cells of a region at `level` (a range of the Morton
/// order), each a range of it, in order.
fn sub_cells(points: &[Point], level: u32) -> impl Iterator<Item = &[Point]> {
    let shift = 3 * (MORTON_BITS - level - 1);
    let mut rest = points;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let child = (first.code >> shift) & 7;
        let end = gallop(rest, |p| (p.code >> shift) & 7 <= child);
        let (part, after) = rest.split_at(end.max(1));
        rest = after;
        Some(part)
    })
}

/// `partition_point` searched outward from the front: a sub-cell ends near where it begins
/// more often than not, and probes there stay in cache (a binary search over the whole
/// range misses it at every step).
fn gallop(points: &[Point], before: impl Fn(&Point) -> bool) -> usize {
    let mut bound = 1;
    while bound < points.len() && before(&points[bound]) {
        bound *= 2;
    }
    let low = bound / 2;
    let high = bound.min(points.len());
    low + points[low..high].partition_point(before)
}

/// The box around points (per coordinate, lowest and highest), in one pass. Compared with
/// `<` rather than `f64::min`, whose care for NaN (never a coordinate) costs instructions:
/// start-up with 500 names 8.35 -> 7.74 s (two runs each).
fn bounding_box(points: &[Point]) -> [(f64, f64); 3] {
    points.iter().fold([(f64::MAX, f64::MIN); 3], |mut b, p| {
        for (axis, (lo, hi)) in b.iter_mut().enumerate() {
            let v = p.at.coordinate(axis);
            if v < *lo {
                *lo = v;
            }
            if v > *hi {
                *hi = v;
            }
        }
        b
    })
}

/// The Morton level of the smallest cell holding every point of a sorted range.
fn common_level(points: &[Point]) -> u32 {
    match (points.first(), points.last()) {
        (Some(a), Some(b)) => common_level_of(a.code, b.code),
        _ => MORTON_BITS,
    }
}

/// The level of the smallest Morton cell holding codes `a` and `b` (and every code
/// between them).
fn common_level_of(a: u64, b: u64) -> u32 {
    // Codes use the low 63 bits, 3 per level.
    let same = (a ^ b).leading_zeros().saturating_sub(1);
    (same / 3).min(MORTON_BITS)
}

/// A candidate's key bounds over a region, and its index.
#[derive(Clone, Copy)]
struct Bounds {
    best: u128,
    worst: u128,
    index: u32,
}

impl Ranker {
    /// Ranks a region's points (a range of the Morton order) against the candidates that
    /// may still be at their starts.
    fn region(&self, points: &[Point], candidates: &[Candidate], level: u32, found: &mut Found) {
        if points.is_empty() {
            return;
        }
        crate::parallel::yield_to_builds();
        let level = level.max(common_level(points));
        if points.len() <= LEAF_PLACES || level >= MORTON_BITS {
            let mut last: Option<u32> = None;
            for point in points {
                let at = Some(&point.at);
                let (depth, counts, keys) = (self.depth, self.counts, self.keys);
                (found.scratch).fill_at(candidates, at, depth, counts, &mut found.sorted, keys);
                // Neighbours in the order mostly share a start: compared before hashed.
                let id = match last {
                    Some(id) if found.starts.list.get(id as usize) == Some(&found.scratch) => id,
                    _ => found.starts.intern(&found.scratch),
                };
                last = Some(id);
                push_piece(&mut found.pieces, point.place, 1, id);
            }
            return;
        }
        // Small regions measure their points (in cache); large ones take their cell's box.
        let within = if points.len() <= MEASURED_PLACES {
            bounding_box(points)
        } else {
            morton_cell(points[0].code, level)
        };
        let (centre, radius) = UnitVector::enclosing_box(&within);
        let mut bounds = key_bounds(candidates, &centre, radius);
        // Per family, the worst case of its `depth`-th node: nothing whose best case is
        // worse can be in that family's start anywhere in the region.
        let mut worst: Vec<u128> = Vec::with_capacity(bounds.len());
        let cutoff = [0, 1].map(|f| {
            worst.clear();
            worst.extend(
                bounds
                    .iter()
                    .filter(|b| candidates[b.index as usize].serves(f))
                    .map(|b| b.worst),
            );
            match self.depth[f] {
                0 => 0,
                depth if worst.len() <= depth => u128::MAX,
                depth => *worst.select_nth_unstable(depth - 1).1,
            }
        });
        bounds.retain(|b| {
            let c = &candidates[b.index as usize];
            (0..2).any(|f| c.serves(f) && b.best <= cutoff[f])
        });
        bounds.sort_unstable_by_key(|b| b.best);
        if self.fixed_start(&bounds, candidates, &mut found.scratch) {
            let id = found.starts.intern(&found.scratch);
            match (points.first(), points.last()) {
                // Consecutive columns (a range of the order): one piece.
                (Some(a), Some(b))
                    if b.place.checked_sub(a.place).map(|d| d as usize + 1)
                        == Some(points.len()) =>
                {
                    push_piece(&mut found.pieces, a.place, points.len() as u32, id)
                }
                _ => (points.iter()).for_each(|p| push_piece(&mut found.pieces, p.place, 1, id)),
            }
            return;
        }
        let left: Vec<Candidate> = bounds
            .iter()
            .map(|b| candidates[b.index as usize])
            .collect();
        for part in sub_cells(points, level) {
            self.region(part, &left, level + 1, found);
        }
    }

    /// Whether the start is the same everywhere in the region (bounds sorted by best case):
    /// each node of it is worse in its worst case than none that follows is in its best.
    /// If so, `start` is that start.
    fn fixed_start(
        &self,
        bounds: &[Bounds],
        candidates: &[Candidate],
        start: &mut RankedStart,
    ) -> bool {
        let need = [0, 1].map(|f| self.counts[f].min(self.depth[f]));
        let mut taken = [0usize; 2];
        let mut end = 0;
        while taken != need {
            let Some(b) = bounds.get(end) else {
                return false;
            };
            let c = &candidates[b.index as usize];
            for f in 0..2 {
                if c.serves(f) && taken[f] < need[f] {
                    taken[f] += 1;
                }
            }
            end += 1;
        }
        // The first `end` must keep their order, and stay ahead of everything after them.
        let mut best_after = u128::MAX;
        let mut ahead = vec![false; end];
        for i in (0..bounds.len()).rev() {
            if i < end {
                ahead[i] = bounds[i].worst < best_after;
            }
            best_after = best_after.min(bounds[i].best);
        }
        if !ahead.iter().all(|&a| a) {
            return false;
        }
        start.fill(
            bounds[..end].iter().map(|b| {
                let c = &candidates[b.index as usize];
                (c.id, c.families)
            }),
            self.depth,
            self.counts,
        );
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::geo::Coordinates;
    use crate::latency::ZoneLatency;
    use crate::policy::LatencyPolicy;
    use crate::random::XorShift;
    use crate::runs::RunArray;

    /// A point on the globe, at random.
    pub(crate) fn random_place(random: &mut XorShift) -> UnitVector {
        let c = Coordinates::new(random.unit() * 140.0 - 70.0, random.unit() * 360.0 - 180.0)
            .expect("in range");
        UnitVector::of(&c)
    }

    /// Candidates of random tiers, families, weights and loads at random places.
    pub(crate) fn candidates(random: &mut XorShift, count: usize) -> Vec<Candidate> {
        let mut latency = ZoneLatency::default();
        (0..count)
            .map(|id| {
                let node = crate::policy::Node {
                    name: format!("n{id}"),
                    tier: match random.next_u64() % 6 {
                        0 => crate::policy::Tier::Backup,
                        1 => crate::policy::Tier::Edge,
                        _ => crate::policy::Tier::Core,
                    },
                    geo: crate::geo::GeoCode::parse("EU-DE", crate::geo::CountryTable::shipped())
                        .expect("a code"),
                    location: Coordinates::new(0.0, 0.0).expect("in range"),
                    addresses: Vec::new(),
                    weight: 1 + (random.next_u64() % 3) as u32,
                    status: crate::policy::AdminStatus::Obey,
                    check: None,
                    carriers: Vec::new(),
                    capacity: Default::default(),
                };
                if random.next_u64().is_multiple_of(4) {
                    let value = 0.8 + random.unit() * 0.3;
                    let at = std::time::SystemTime::UNIX_EPOCH;
                    latency.loads.insert(id, crate::latency::Load { value, at });
                }
                let families = [1, 2, 3, 3][(random.next_u64() % 4) as usize];
                let level = (random.next_u64() % 2) as u8;
                Candidate {
                    id,
                    base: crate::steer::order::rank_key_base(&node, level, id),
                    families,
                    terms: ScoreTerms::of(
                        &latency,
                        (id, &node, node.weight),
                        &[],
                        std::time::SystemTime::UNIX_EPOCH,
                        &LatencyPolicy::default(),
                    ),
                    at: random_place(random),
                }
            })
            .collect()
    }

    /// A node coming back: ranking again from the old starts (`Rising`) gives every place
    /// the start a ranking of all the healthy nodes gives, and decides most places by
    /// region, without a look at them.
    #[test]
    fn risen_nodes_enter_the_starts_they_beat_and_only_those() {
        let mut random = XorShift::new(29);
        for (nodes, depth, risen_count) in [(30, 2, 1), (30, 1, 2), (12, 3, 1), (60, 2, 3)] {
            let all = candidates(&mut random, nodes);
            let risen: Vec<NodeId> = (0..risen_count)
                .map(|_| (random.next_u64() % nodes as u64) as NodeId)
                .collect();
            let before: Vec<Candidate> = (all.iter().copied())
                .filter(|c| !risen.contains(&c.id))
                .collect();
            let mut points: Vec<Point> = (0..20_000)
                .map(|_| {
                    let at = random_place(&mut random);
                    let code = at.morton();
                    Point { code, place: 0, at }
                })
                .collect();
            points.sort_unstable_by_key(|p| p.code);
            for (column, p) in points.iter_mut().enumerate() {
                p.place = column as u32;
            }
            let mut old = Starts::default();
            let mut old_of = vec![u32::MAX; points.len()];
            rank_points(&points, &before, depth, &mut old, &mut old_of);
            let (mut starts, mut pieces) = (Starts::default(), Pieces::new());
            for run in old_of.chunk_by(|a, b| a == b) {
                let first = pieces.iter().map(|p| p.0 + p.1).max().unwrap_or(0) as usize;
                let old_start = &old.list[run[0] as usize];
                let rising = Rising::new(&all, old_start, &risen, depth);
                let kept = starts.intern(old_start);
                rising.rank(
                    &points[first..first + run.len()],
                    kept,
                    &mut starts,
                    &mut pieces,
                );
            }
            let decided_by_region = pieces.len();
            let of_column = RunArray::from_pieces(pieces, points.len(), u32::MAX);
            let (counts, mut sorted) = (family_counts(&all), Vec::new());
            for p in &points {
                rank_exact(&all, Some(&p.at), &mut sorted);
                let ranked = sorted
                    .iter()
                    .map(|&(_, i)| (all[i as usize].id, all[i as usize].families));
                let expected = RankedStart::of(ranked, depth, counts);
                let got = &starts.list[of_column.at_or(p.place as usize, 0) as usize];
                assert_eq!(
                    (&got.families, got.top),
                    (&expected.families, expected.top),
                    "{nodes} nodes, depth {depth}, {risen:?} risen, place {}",
                    p.place
                );
            }
            assert!(
                decided_by_region < points.len() / 4,
                "{decided_by_region} pieces for {} places",
                points.len()
            );
        }
    }

    /// Searching from the front finds every boundary a binary search finds, at every length
    /// (a boundary one off would put a place in its neighbour's sub-cell, whose box may not
    /// hold it).
    #[test]
    fn gallop_finds_the_partition_point() {
        let mut random = XorShift::new(11);
        for len in [0usize, 1, 2, 3, 4, 7, 8, 9, 31, 100, 1000] {
            let mut codes: Vec<u64> = (0..len).map(|_| random.next_u64() % 20).collect();
            codes.sort_unstable();
            let points: Vec<Point> = codes
                .iter()
                .map(|&code| Point {
                    code,
                    place: 0,
                    at: random_place(&mut random),
                })
                .collect();
            for cut in 0..=21 {
                let before = |p: &Point| p.code < cut;
                assert_eq!(
                    gallop(&points, before),
                    points.partition_point(before),
                    "{len} points, cut {cut}"
                );
            }
        }
    }

    /// Candidates whose scores depend on distance alone, through the same terms (ranked by
    /// chord), some of them at one place.
    fn alike(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
        let terms = candidates[0].terms;
        for i in 0..candidates.len() {
            candidates[i].terms = terms;
            if i % 7 == 3 {
                candidates[i].at = candidates[i - 1].at;
            }
        }
        assert_eq!(Keys::of(&candidates), Keys::Chord);
        candidates
    }

    /// Regions, pruning and shared starts give every place the start a full sort gives,
    /// ranked by score or, where scores depend on distance alone, by chord.
    #[test]
    fn region_starts_equal_full_rankings() {
        let mut random = XorShift::new(0x9e37_79b9_7f4a_7c15);
        for (nodes, places, depth, by_chord) in [
            (3, 500, 4, false),
            (40, 30_000, 4, false),
            (200, 50_000, 6, false),
            (200, 3_000, 2, false),
            (3, 500, 4, true),
            (40, 30_000, 2, true),
            (200, 50_000, 6, true),
        ] {
            let candidates = candidates(&mut random, nodes);
            let candidates = if by_chord {
                alike(candidates)
            } else {
                candidates
            };
            let mut at: Vec<UnitVector> = (0..places).map(|_| random_place(&mut random)).collect();
            // Coincident places too.
            for i in 0..places / 10 {
                at[i * 10 + 1] = at[i * 10];
            }
            let mut points: Vec<Point> = at
                .iter()
                .enumerate()
                .map(|(column, at)| Point {
                    code: at.morton(),
                    place: column as u32,
                    at: *at,
                })
                .collect();
            points.sort_unstable_by_key(|p| p.code);
            let expected_at = at;
            let mut starts = Starts::default();
            let mut out = vec![u32::MAX; places];
            rank_points(&points, &candidates, depth, &mut starts, &mut out);
            let counts = family_counts(&candidates);
            let mut sorted = Vec::new();
            for (column, at) in expected_at.iter().enumerate() {
                rank_exact(&candidates, Some(at), &mut sorted);
                let expected = RankedStart::of(
                    sorted.iter().map(|&(_, i)| {
                        let c = &candidates[i as usize];
                        (c.id, c.families)
                    }),
                    depth,
                    counts,
                );
                assert_eq!(
                    starts.list[out[column] as usize], expected,
                    "{nodes} nodes, place {column}"
                );
            }
            assert!(starts.list.len() < places, "starts are shared");
        }
    }

    /// Two nodes nearer a place than rounding can tell apart in score tie there, and the tie
    /// goes to the node listed first, as in a full sort, though its chord is the longer.
    #[test]
    fn chords_too_close_to_tell_apart_rank_by_score() {
        let at =
            |latitude: f64| UnitVector::of(&Coordinates::new(latitude, 0.0).expect("in range"));
        let mut random = XorShift::new(5);
        let mut candidates = alike(candidates(&mut random, 2));
        candidates.iter_mut().for_each(|c| c.families = 3);
        // Listed first and farther: 2e-18 against 1e-18 degrees, 1e-16 km either way.
        (candidates[0].at, candidates[1].at) = (at(2e-18), at(1e-18));
        // Of one tier and weight, listed in this order.
        candidates[1].base = candidates[0].base + 1;
        let client = at(0.0);
        let mut sorted = Vec::new();
        assert!(!rank_by_chord(&candidates, &client, &mut sorted));
        assert_eq!(sorted[0].1, 1, "by chord the nearer one is first");
        let start = start_at(&candidates, Some(&client), 1);
        assert_eq!(start.top, Some(candidates[0].id), "by score they tie");
    }
}
