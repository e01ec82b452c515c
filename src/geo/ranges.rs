//! The in-memory form of a GeoIP database: sorted address ranges, each mapped to a place.
//!
//! A MaxMind tree walk is ~25 dependent loads over a file the size of the database; the
//! query path cannot afford those cache misses, nor the database's memory. At load the tree's
//! networks are merged into maximal ranges of one place (adjacent networks of the same city
//! are one range) and stored as a sorted array of range starts: a lookup is a bucket index
//! and a short binary search. The range around an address also gives the widest aligned
//! block over which the answer cannot change, which is the honest ECS scope.

use crate::net::Family;

/// Value of a range the database says nothing about.
pub(super) const NOTHING: u32 = u32::MAX;

/// The leading bits of a left-aligned address kept in the sorted array: 32 for IPv4, 64 for
/// IPv6 (IPv6 databases rarely split a /64; the few starts that do are kept exactly aside).
pub trait HighBits: Copy + Ord + Default {
    /// The key of a left-aligned address.
    fn of(bits: u128) -> Self;
    /// The left-aligned address the key stands for (its remaining bits zero).
    fn widen(self) -> u128;
}

impl HighBits for u32 {
    fn of(bits: u128) -> Self {
        (bits >> 96) as u32
    }
    fn widen(self) -> u128 {
        u128::from(self) << 96
    }
}

impl HighBits for u64 {
    fn of(bits: u128) -> Self {
        (bits >> 64) as u64
    }
    fn widen(self) -> u128 {
        u128::from(self) << 64
    }
}

/// Ranges covering one family's whole address space, in order; every range's value differs
/// from its neighbours'.
#[derive(PartialEq)]
pub struct RangeTable<K: Copy> {
    /// Each range's first address (key) and value (a place, or [`NOTHING`]) side by side:
    /// the search's last step reads the value from the line it already brought in.
    ranges: Vec<Range<K>>,
    /// `(range, first address)` for the ranges whose first address the key does not hold
    /// exactly, by range.
    exact: Vec<(u32, u128)>,
    /// `buckets[b]`: the first range whose start lies in bucket `b` or later (buckets are
    /// the top `bucket_bits` bits), so a lookup searches one bucket.
    buckets: Vec<u32>,
    bucket_bits: u32,
    /// Address width of the family, in bits.
    width: u8,
}

/// One range of a table: the key of its first address and its value (packed: an IPv6 range
/// takes 12 bytes, not 16).
#[derive(Clone, Copy, PartialEq)]
#[repr(C, packed(4))]
struct Range<K: Copy> {
    start: K,
    value: u32,
}

/// A lookup's result: the range's value and the widest prefix around the address inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeHit {
    /// The place, or [`NOTHING`].
    pub value: u32,
    /// Prefix length, in bits of the family.
    pub prefix_len: u8,
}

impl<K: HighBits> RangeTable<K> {
    /// Finds the range holding a left-aligned address. No allocation, no locks.
    pub fn lookup(&self, bits: u128) -> RangeHit {
        let key = K::of(bits);
        let bucket = (bits >> (128 - self.bucket_bits)) as usize;
        let from = self.buckets[bucket] as usize;
        let to = self.buckets[bucket + 1] as usize;
        let within = self.ranges[from..to].partition_point(|r| { r.start } <= key);
        // The first range starts at address 0, so some range always starts at or before it.
        let mut at = (from + within).saturating_sub(1);
        while at > 0 && { self.ranges[at].start } == key && self.first(at) > bits {
            at -= 1;
        }
        let first = self.first(at);
        let next = (at + 1 < self.ranges.len()).then(|| self.first(at + 1));
        RangeHit {
            value: self.ranges[at].value,
            prefix_len: widest_block(bits, first, next, self.width),
        }
    }

    fn first(&self, at: usize) -> u128 {
        let widened = self.ranges[at].start.widen();
        if self.exact.is_empty() {
            return widened;
        }
        match self.exact.binary_search_by_key(&(at as u32), |e| e.0) {
            Ok(i) => self.exact[i].1,
            Err(_) => widened,
        }
    }

    /// Every range in address order: its first address (left-aligned), the next range's
    /// first address (`None` for the last) and its value.
    pub fn ranges(&self) -> impl Iterator<Item = (u128, Option<u128>, u32)> + '_ {
        (0..self.ranges.len()).map(move |at| {
            let next = (at + 1 < self.ranges.len()).then(|| self.first(at + 1));
            (self.first(at), next, self.ranges[at].value)
        })
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Several tables as one: at every address, the value of the first table that has one
    /// (files consulted in order).
    pub fn overlay(tables: &[RangeTable<K>]) -> RangeTable<K> {
        let Some(first_table) = tables.first() else {
            return RangeBuilder::new(128).finish(1);
        };
        let mut builder = RangeBuilder::new(first_table.width);
        // Per table, the range holding the sweep's position.
        let mut at = vec![0usize; tables.len()];
        let mut position = 0u128;
        loop {
            let value = tables
                .iter()
                .zip(&at)
                .map(|(t, &i)| t.ranges[i].value)
                .find(|&v| v != NOTHING)
                .unwrap_or(NOTHING);
            builder.push(position, value);
            let next = tables
                .iter()
                .zip(&at)
                .filter(|&(t, &i)| i + 1 < t.len())
                .map(|(t, &i)| t.first(i + 1))
                .min();
            let Some(next) = next else { break };
            for (t, i) in tables.iter().zip(at.iter_mut()) {
                if *i + 1 < t.len() && t.first(*i + 1) == next {
                    *i += 1;
                }
            }
            position = next;
        }
        builder.next = None;
        builder.finish(first_table.bucket_bits)
    }
}

/// The prefix length of the widest aligned block around `bits` that contains neither the
/// address before `first` nor `next` (the start of the following range): the block lies
/// inside the range. O(1): a block excludes an address once it is longer than their common
/// prefix.
pub(super) fn widest_block(bits: u128, first: u128, next: Option<u128>, width: u8) -> u8 {
    let excluding = |other: u128| (bits ^ other).leading_zeros() + 1;
    let before = first.checked_sub(1).map_or(0, excluding);
    let after = next.map_or(0, excluding);
    before.max(after).min(u32::from(width)) as u8
}

/// Both families' tables: an address → value map over the whole address space.
#[derive(PartialEq)]
pub struct AddressMap {
    v4: RangeTable<u32>,
    v6: RangeTable<u64>,
}

impl std::fmt::Debug for AddressMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressMap")
            .field("v4_ranges", &self.v4.len())
            .field("v6_ranges", &self.v6.len())
            .finish()
    }
}

impl AddressMap {
    /// Both families' tables as one map.
    pub fn new(v4: RangeTable<u32>, v6: RangeTable<u64>) -> Self {
        AddressMap { v4, v6 }
    }

    /// Every range of one family: its first address (left-aligned bits), its size in
    /// [`census_unit_shift`] units (IPv4: addresses; IPv6: /64 networks, so a range inside
    /// one /64 has size 0) and its value.
    pub fn ranges(&self, family: Family) -> Box<dyn Iterator<Item = (u128, u64, u32)> + '_> {
        let shift = census_unit_shift(family);
        let sized = move |(first, next, value): (u128, Option<u128>, u32)| {
            let end = next.map_or(1u128 << (128 - shift), |n| n >> shift);
            let size = end.saturating_sub(first >> shift);
            (first, u64::try_from(size).unwrap_or(u64::MAX), value)
        };
        match family {
            Family::V4 => Box::new(self.v4.ranges().map(sized)),
            Family::V6 => Box::new(self.v6.ranges().map(sized)),
        }
    }

    /// The value at an address and the widest prefix around it with the same value.
    pub fn lookup(&self, ip: std::net::IpAddr) -> RangeHit {
        let bits = crate::net::address_bits(ip);
        match ip {
            std::net::IpAddr::V4(_) => self.v4.lookup(bits),
            std::net::IpAddr::V6(_) => self.v6.lookup(bits),
        }
    }
}

/// How far an address's left-aligned bits are shifted to count it in census units: IPv4
/// counts addresses, IPv6 counts /64 networks (the unit of its table, and of a site's LAN).
pub fn census_unit_shift(family: Family) -> u32 {
    match family {
        Family::V4 => 96,
        Family::V6 => 64,
    }
}

/// Builds a [`RangeTable`] from covered ranges given in address order, in the table's own
/// compact form (a city database has millions of ranges).
pub(super) struct RangeBuilder<K> {
    starts: Vec<K>,
    exact: Vec<(u32, u128)>,
    values: Vec<u32>,
    /// First address not yet covered (`None` once the end of the space is covered).
    next: Option<u128>,
    width: u8,
}

impl<K: HighBits> RangeBuilder<K> {
    /// An empty builder for a family `width` bits wide (32 or 128).
    pub(super) fn new(width: u8) -> Self {
        RangeBuilder {
            starts: Vec::new(),
            exact: Vec::new(),
            values: Vec::new(),
            next: Some(0),
            width,
        }
    }

    /// Covers left-aligned `[first, last]` with `value`. Ranges must come in order without
    /// overlap (as a tree's networks do); an out-of-order range returns `false` and is
    /// ignored.
    pub(super) fn cover(&mut self, first: u128, last: u128, value: u32) -> bool {
        let Some(next) = self.next else {
            return false;
        };
        if first < next || last < first {
            return false;
        }
        if first > next {
            self.push(next, NOTHING);
        }
        self.push(first, value);
        self.next = last.checked_add(1);
        true
    }

    fn push(&mut self, first: u128, value: u32) {
        if self.values.last() == Some(&value) {
            return;
        }
        let key = K::of(first);
        if key.widen() != first {
            self.exact.push((self.starts.len() as u32, first));
        }
        self.starts.push(key);
        self.values.push(value);
    }

    /// Renumbers the values (`renumber[old] = new`; [`NOTHING`] stays) and merges the
    /// neighbours that become equal, in place.
    pub(super) fn renumber(&mut self, renumber: &[u32]) {
        let mut exact = std::mem::take(&mut self.exact).into_iter().peekable();
        let mut kept = 0;
        for i in 0..self.values.len() {
            let value = renumber
                .get(self.values[i] as usize)
                .copied()
                .unwrap_or(NOTHING);
            let first = exact.next_if(|e| e.0 as usize == i).map(|e| e.1);
            if kept > 0 && self.values[kept - 1] == value {
                continue;
            }
            if let Some(first) = first {
                self.exact.push((kept as u32, first));
            }
            self.starts[kept] = self.starts[i];
            self.values[kept] = value;
            kept += 1;
        }
        self.starts.truncate(kept);
        self.values.truncate(kept);
    }

    /// The finished table: the rest of the space is [`NOTHING`].
    pub(super) fn finish(mut self, bucket_bits: u32) -> RangeTable<K> {
        if let Some(next) = self.next {
            self.push(next, NOTHING);
        }
        let count = self.starts.len();
        let mut buckets = Vec::with_capacity((1 << bucket_bits) + 1);
        for (i, key) in self.starts.iter().enumerate() {
            let bucket = (key.widen() >> (128 - bucket_bits)) as usize;
            while buckets.len() <= bucket {
                buckets.push(i as u32);
            }
        }
        while buckets.len() <= 1 << bucket_bits {
            buckets.push(count as u32);
        }
        self.exact.shrink_to_fit();
        let ranges =
            (self.starts.iter().zip(&self.values)).map(|(&start, &value)| Range { start, value });
        RangeTable {
            ranges: super::mapped::on_huge_pages(count, ranges),
            exact: self.exact,
            buckets: super::mapped::on_huge_pages(buckets.len(), buckets),
            bucket_bits,
            width: self.width,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::address_bits;

    fn v4(s: &str) -> u128 {
        address_bits(s.parse().unwrap())
    }

    fn v4_last(s: &str) -> u128 {
        v4(s) | (u128::MAX >> 32)
    }

    #[test]
    fn ranges_merge_and_gaps_are_nothing() {
        let mut b = RangeBuilder::<u32>::new(32);
        assert!(b.cover(v4("10.0.0.0"), v4_last("10.0.0.255"), 1));
        assert!(b.cover(v4("10.0.1.0"), v4_last("10.0.1.255"), 1));
        assert!(b.cover(v4("10.0.4.0"), v4_last("10.0.7.255"), 2));
        assert!(
            !b.cover(v4("10.0.3.0"), v4_last("10.0.3.255"), 3),
            "out of order"
        );
        let t = b.finish(16);
        // nothing, [10.0.0.0-10.0.1.255]=1, gap, [10.0.4.0/22]=2, nothing.
        assert_eq!(t.len(), 5);
        let hit = |s: &str| t.lookup(v4(s));
        assert_eq!(
            hit("10.0.1.7"),
            RangeHit {
                value: 1,
                prefix_len: 23
            }
        );
        assert_eq!(
            hit("10.0.2.9"),
            RangeHit {
                value: NOTHING,
                prefix_len: 23
            }
        );
        assert_eq!(
            hit("10.0.5.1"),
            RangeHit {
                value: 2,
                prefix_len: 22
            }
        );
        assert_eq!(
            hit("0.0.0.1"),
            RangeHit {
                value: NOTHING,
                prefix_len: 5
            }
        );
        assert_eq!(hit("255.255.255.255").value, NOTHING);
    }

    #[test]
    fn ranges_not_on_a_key_boundary_are_exact() {
        let p = |s: &str| address_bits(s.parse().unwrap());
        let mut b = RangeBuilder::<u64>::new(128);
        b.cover(p("2001:db8::"), p("2001:db8::7fff:ffff:ffff:ffff"), 1);
        b.cover(
            p("2001:db8::8000:0:0:0"),
            p("2001:db8::ffff:ffff:ffff:ffff"),
            2,
        );
        b.cover(
            p("2001:db8:0:1::"),
            p("2001:db8:0:1:ffff:ffff:ffff:ffff"),
            3,
        );
        let t = b.finish(20);
        let hit = |s: &str| t.lookup(p(s));
        assert_eq!(
            hit("2001:db8::1"),
            RangeHit {
                value: 1,
                prefix_len: 65
            }
        );
        assert_eq!(
            hit("2001:db8::9000:0:0:1"),
            RangeHit {
                value: 2,
                prefix_len: 65
            }
        );
        assert_eq!(
            hit("2001:db8:0:1::5"),
            RangeHit {
                value: 3,
                prefix_len: 64
            }
        );
        assert_eq!(hit("2001:db8:0:2::").value, NOTHING);
        assert_eq!(hit("::1").value, NOTHING);
    }

    #[test]
    fn renumbering_merges_neighbours() {
        let mut b = RangeBuilder::<u32>::new(32);
        b.cover(v4("10.0.0.0"), v4_last("10.0.0.255"), 0);
        b.cover(v4("10.0.1.0"), v4_last("10.0.1.255"), 1);
        b.renumber(&[5, 5]);
        let t = b.finish(16);
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.lookup(v4("10.0.1.1")),
            RangeHit {
                value: 5,
                prefix_len: 23
            }
        );
    }

    #[test]
    fn overlay_takes_the_first_table_that_knows() {
        let mut a = RangeBuilder::<u32>::new(32);
        a.cover(v4("10.0.0.0"), v4_last("10.0.0.255"), 1);
        let mut b = RangeBuilder::<u32>::new(32);
        b.cover(v4("10.0.0.0"), v4_last("10.0.3.255"), 2);
        b.cover(v4("10.0.4.0"), v4_last("10.0.4.255"), 2);
        let t = RangeTable::overlay(&[a.finish(16), b.finish(16)]);
        assert_eq!(
            t.lookup(v4("10.0.0.9")),
            RangeHit {
                value: 1,
                prefix_len: 24
            }
        );
        // The second table's range, cut where the first one knows: /23 not /22.
        assert_eq!(
            t.lookup(v4("10.0.2.1")),
            RangeHit {
                value: 2,
                prefix_len: 23
            }
        );
        assert_eq!(
            t.lookup(v4("10.0.4.1")),
            RangeHit {
                value: 2,
                prefix_len: 24
            }
        );
        assert_eq!(t.lookup(v4("10.0.5.1")).value, NOTHING);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_range_gives_its_widest_block() {
        let mut b = RangeBuilder::<u64>::new(128);
        let p = |s: &str| address_bits(s.parse().unwrap());
        b.cover(p("2001:db8::"), p("2001:db8::7fff:ffff:ffff:ffff"), 1);
        b.cover(
            p("2001:db8::8000:0:0:0"),
            p("2001:db8::ffff:ffff:ffff:ffff"),
            2,
        );
        let t = b.finish(20);
        assert_eq!(
            t.lookup(p("2001:db8::1")),
            RangeHit {
                value: 1,
                prefix_len: 65
            }
        );
        assert_eq!(t.lookup(p("2001:db8::8000:0:0:1")).prefix_len, 65);
    }

    #[test]
    fn block_is_the_widest_inside_the_range() {
        // The brute-force definition, against the O(1) one, over a small IPv4 space.
        let width = 32;
        for (first, last) in [(0u32, 255u32), (10, 20), (16, 31), (1, 1), (7, 200)] {
            let f = u128::from(first) << 96;
            let next = (last < u32::MAX).then(|| u128::from(last + 1) << 96);
            for a in first..=last {
                let bits = u128::from(a) << 96;
                let brute = (0..=width)
                    .find(|&len: &u8| {
                        let m = crate::net::mask(len);
                        let start = bits & m;
                        let end = start | (!m & crate::net::mask(width));
                        start >= f && next.is_none_or(|n| end < n)
                    })
                    .unwrap();
                assert_eq!(
                    widest_block(bits, f, next, width),
                    brute,
                    "{a} in {first}..{last}"
                );
            }
        }
    }
}
