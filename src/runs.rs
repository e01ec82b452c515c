//! Per-column tables stored as runs of equal values.
//!
//! A steered name keeps several values per column (its rows' classes, geo rule, profile,
//! damping incumbents, each place's head), and a city database has over half a million
//! places. Places are numbered in Morton order of their positions (`geo`), so neighbouring
//! columns are neighbouring places and mostly agree: stored as runs, a row of a city
//! database takes tens of kilobytes instead of megabytes, and a name costs its decisions,
//! not the database's size.

/// Elements per block of the directory: a lookup searches only the runs of one block.
const BLOCK_BITS: u32 = 8;

/// An array of `u32` stored as runs of equal neighbours. Reading an element is a directory
/// read and a short search inside one block; no allocation, no lock.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RunArray {
    /// Elements in all.
    len: u32,
    /// Each run's first element and value, in order (the first run starts at 0).
    runs: Vec<(u32, u32)>,
    /// `blocks[b]`: the run holding element `b << BLOCK_BITS`.
    blocks: Vec<u32>,
}

impl std::fmt::Debug for RunArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunArray")
            .field("len", &self.len)
            .field("runs", &self.runs.len())
            .finish()
    }
}

impl RunArray {
    /// The array of `len` elements made of `pieces` (`(first, count, value)`, disjoint, in
    /// any order), with `gap` wherever no piece is.
    pub fn from_pieces(mut pieces: Vec<(u32, u32, u32)>, len: usize, gap: u32) -> RunArray {
        // Pieces arrive as a few sorted sequences (one per profile ranked, then kept runs):
        // the stable sort merges them rather than sorting afresh.
        if !pieces.is_sorted_by_key(|p| p.0) {
            pieces.sort_by_key(|p| p.0);
        }
        let mut runs = RunBuilder::default();
        for (first, count, value) in pieces {
            runs.push_many(gap, (first as usize).saturating_sub(runs.len));
            runs.push_many(value, count as usize);
        }
        runs.push_many(gap, len.saturating_sub(runs.len));
        runs.finish()
    }

    /// The element at `index`; `None` past the end.
    #[inline]
    pub fn get(&self, index: usize) -> Option<u32> {
        self.run_at(index)
            .and_then(|run| self.runs.get(run))
            .map(|&(_, value)| value)
    }

    /// The element at `index`, or `fallback` past the end.
    #[inline]
    pub fn at_or(&self, index: usize, fallback: u32) -> u32 {
        self.get(index).unwrap_or(fallback)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of runs.
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Each run: its elements' indexes and its value, in order.
    pub fn runs(&self) -> impl Iterator<Item = (std::ops::Range<usize>, u32)> + '_ {
        self.runs.iter().enumerate().map(|(i, &(start, value))| {
            let end = self.runs.get(i + 1).map_or(self.len, |r| r.0);
            (start as usize..end as usize, value)
        })
    }

    /// The runs over `range` of elements, clipped to it, in order.
    pub fn runs_within(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (std::ops::Range<usize>, u32)> + '_ {
        let end = range.end.min(self.len as usize);
        let first = self.run_at(range.start).unwrap_or(self.runs.len());
        self.runs[first.min(self.runs.len())..]
            .iter()
            .enumerate()
            .take_while(move |&(_, &(start, _))| (start as usize) < end)
            .map(move |(i, &(start, value))| {
                let next = self
                    .runs
                    .get(first + i + 1)
                    .map_or(self.len as usize, |r| r.0 as usize);
                ((start as usize).max(range.start)..next.min(end), value)
            })
    }

    /// Index of the run holding element `index`.
    fn run_at(&self, index: usize) -> Option<usize> {
        if index >= self.len as usize {
            return None;
        }
        let block = index >> BLOCK_BITS;
        let from = *self.blocks.get(block)? as usize;
        let to = self
            .blocks
            .get(block + 1)
            .map_or(self.runs.len(), |&r| r as usize + 1);
        let within = self
            .runs
            .get(from..to)?
            .partition_point(|&(start, _)| start as usize <= index);
        Some(from + within.checked_sub(1)?)
    }

    /// Every element, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.runs()
            .flat_map(|(range, value)| std::iter::repeat_n(value, range.len()))
    }

    /// The array with every value replaced by `f(value)` (runs that become equal stay
    /// apart; they still read right).
    pub fn map(&self, f: impl Fn(u32) -> u32) -> RunArray {
        RunArray {
            len: self.len,
            runs: self.runs.iter().map(|&(s, v)| (s, f(v))).collect(),
            blocks: self.blocks.clone(),
        }
    }
}

impl FromIterator<u32> for RunArray {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut builder = RunBuilder::default();
        for value in iter {
            builder.push(value);
        }
        builder.finish()
    }
}

/// Reads a [`RunArray`]'s runs over ranges given in ascending order, each from where the
/// one before left off: a walk over the runs rather than a search per range, for builders
/// that read one array alongside another's runs.
pub struct RunCursor<'a> {
    array: &'a RunArray,
    /// The first run that can overlap the next range.
    run: usize,
}

impl<'a> RunCursor<'a> {
    /// A walk from the array's first element.
    pub fn new(array: &'a RunArray) -> Self {
        RunCursor { array, run: 0 }
    }

    /// Calls `each` with the runs over `range`, clipped to it, in order. `range` must not
    /// start before the end of the range before it.
    pub fn each(
        &mut self,
        range: std::ops::Range<usize>,
        mut each: impl FnMut(std::ops::Range<usize>, u32),
    ) {
        let (runs, len) = (&self.array.runs, self.array.len as usize);
        let end = range.end.min(len);
        if range.start >= end {
            return;
        }
        let run_end = |i: usize| runs.get(i + 1).map_or(len, |r| r.0 as usize);
        while self.run < runs.len() && run_end(self.run) <= range.start {
            self.run += 1;
        }
        while let Some(&(start, value)) = runs.get(self.run) {
            let (start, stop) = (start as usize, run_end(self.run));
            if start >= end {
                break;
            }
            each(start.max(range.start)..stop.min(end), value);
            if stop > end {
                break; // the run goes on into the next range
            }
            self.run += 1;
        }
    }

    /// [`RunCursor::each`] over every range of `ranges` (ascending, disjoint), with `beyond`
    /// as the value of the columns past the array's end.
    pub fn each_in<'r>(
        &mut self,
        ranges: impl IntoIterator<Item = &'r std::ops::Range<usize>>,
        beyond: u32,
        mut each: impl FnMut(std::ops::Range<usize>, u32),
    ) {
        for range in ranges {
            let mut at = range.start;
            self.each(range.clone(), |part, value| {
                at = part.end;
                each(part, value);
            });
            if at < range.end {
                each(at..range.end, beyond);
            }
        }
    }
}

/// Builds a [`RunArray`] element by element.
#[derive(Default)]
pub struct RunBuilder {
    len: usize,
    runs: Vec<(u32, u32)>,
}

impl RunBuilder {
    /// Appends one element.
    #[inline]
    pub fn push(&mut self, value: u32) {
        self.push_many(value, 1);
    }

    /// Elements appended so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was appended yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `count` elements of one value.
    pub fn push_many(&mut self, value: u32, count: usize) {
        if count == 0 {
            return;
        }
        if self.runs.last().is_none_or(|&(_, last)| last != value) {
            self.runs.push((self.len as u32, value));
        }
        self.len += count;
    }

    /// The array. Arrays are indexed by `u32` positions: columns, at most one per place.
    pub fn finish(mut self) -> RunArray {
        let len = u32::try_from(self.len).unwrap_or(u32::MAX);
        self.runs.shrink_to_fit();
        let block_count = (len as usize).div_ceil(1 << BLOCK_BITS);
        let mut blocks = Vec::with_capacity(block_count);
        let mut run = 0usize;
        for block in 0..block_count {
            let first = (block << BLOCK_BITS) as u32;
            while self
                .runs
                .get(run + 1)
                .is_some_and(|&(start, _)| start <= first)
            {
                run += 1;
            }
            blocks.push(run as u32);
        }
        RunArray {
            len,
            runs: self.runs,
            blocks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_stored() {
        let mut values = Vec::new();
        let mut state = 7u32;
        for i in 0..5_000u32 {
            // Long runs, short runs and single elements, across block edges.
            if i % 97 == 0 || (1_000..1_300).contains(&i) {
                state = state.wrapping_mul(31).wrapping_add(i) % 13;
            }
            values.push(state);
        }
        let array: RunArray = values.iter().copied().collect();
        assert_eq!(array.len(), values.len());
        for (i, &v) in values.iter().enumerate() {
            assert_eq!(array.get(i), Some(v), "element {i}");
        }
        assert_eq!(array.get(values.len()), None);
        assert_eq!(array.iter().collect::<Vec<_>>(), values);
        for range in [
            0..5_000,
            1_000..1_001,
            990..1_310,
            4_999..6_000,
            7_000..8_000,
        ] {
            let expanded: Vec<u32> = array
                .runs_within(range.clone())
                .flat_map(|(r, v)| std::iter::repeat_n(v, r.len()))
                .collect();
            let end = range.end.min(values.len());
            assert_eq!(expanded, values[range.start.min(end)..end], "{range:?}");
        }
        assert!(array.run_count() < values.len() / 4);
    }

    #[test]
    fn a_cursor_reads_ascending_ranges_as_runs_within_does() {
        let values: Vec<u32> = (0..5_000u32)
            .map(|i| (i / 37) % 5 + u32::from(i % 1000 == 3))
            .collect();
        let array: RunArray = values.iter().copied().collect();
        let ranges = [
            0..0,
            0..1,
            1..40,
            40..41,
            300..300,
            300..1_004,
            1_004..1_005,
            2_000..4_999,
            4_999..6_000,
        ];
        let mut cursor = RunCursor::new(&array);
        for range in ranges {
            let mut read = Vec::new();
            cursor.each(range.clone(), |r, v| read.push((r, v)));
            let within: Vec<_> = array
                .runs_within(range.clone())
                .filter(|(r, _)| !r.is_empty())
                .collect();
            assert_eq!(read, within, "{range:?}");
        }
    }

    #[test]
    fn empty_and_filled() {
        let empty: RunArray = std::iter::empty().collect();
        assert!(empty.is_empty());
        assert_eq!(empty.get(0), None);
        let filled: RunArray = std::iter::repeat_n(3, 1_000).collect();
        assert_eq!(filled.run_count(), 1);
        assert_eq!(filled.get(999), Some(3));
        assert_eq!(filled.at_or(1_000, 9), 9);
        assert_eq!(filled.map(|v| v + 1).get(500), Some(4));
    }
}
