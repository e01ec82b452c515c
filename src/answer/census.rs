//! Who goes where: a steered name's answers counted over the GeoIP database's address
//! space of one family, by country. The status page colours its map with a census, a
//! what-if compares two, and `geosteer diff` weighs moves between policies by them.
//!
//! A census walks every range of the database (a few hundred thousand for a country
//! database), split where a rule's subnet begins or ends, and selects each range's answer
//! at its first address exactly as a query from there would. It runs on the admin
//! interface's or the command line's time, never on the query path. Measured prefix groups
//! (from feeds) are not split out: a range counts with the answer of its first address.
//! Addresses the database places in no country (reserved, private, unknown) are not
//! counted: shares are of the located space.
//!
//! The families are counted apart, since their sizes do not compare: IPv4 in addresses,
//! IPv6 in /64 networks (a site's LAN; ranges inside one /64 count for nothing), each
//! database range as at most a /32, since databases fill unallocated IPv6 space with
//! ranges of a /4 and more. 6to4 (2002::/16) and Teredo (2001::/32) are not counted: they
//! are IPv4 space seen through IPv6. IPv6 shares therefore say which countries and networks
//! go where more than how many clients do.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::draw::network_of;
use super::snapshot::{AnswerSet, FamilyAnswer, FamilyBodies, NameNode, Snapshot, SteeredTable};
use crate::geo::{GeoDb, census_unit_shift};
use crate::net::Family;
use crate::policy::{Node, SteeredName, Zone};

/// Where a client goes: the first node of its answer (A, else AAAA), or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// The answer's first node.
    Node(usize),
    /// Every allowed node is down and the name fails closed.
    Servfail,
    /// An empty answer.
    Nothing,
}

impl Destination {
    /// Where a client at `ip` goes with `answer`: the first node sent to it (a spread
    /// group's draw for its network, a staged drain's stand-in).
    fn of(answer: &AnswerSet, ip: IpAddr) -> Destination {
        if answer.a.servfail || answer.aaaa.servfail {
            return Destination::Servfail;
        }
        let network = network_of(ip);
        let first = |family: &FamilyAnswer| {
            FamilyBodies::of(family, (0, &family.bodies[..]), network)
                .nodes()
                .next()
        };
        match first(&answer.a).or_else(|| first(&answer.aaaa)) {
            Some(id) => Destination::Node(id),
            None => Destination::Nothing,
        }
    }

    /// Whether where a client goes with `answer` depends on its network, not only on the
    /// answer (a spread group, a staged drain).
    fn drawn(answer: &AnswerSet) -> bool {
        [&answer.a, &answer.aaaa]
            .iter()
            .any(|f| !f.draw.is_empty() || !f.yielding.is_empty())
    }

    /// The node's name, or `SERVFAIL`, or `-` for an empty answer.
    pub fn name(self, nodes: &[Node]) -> &str {
        match self {
            Destination::Node(id) => nodes.get(id).map_or("?", |n| n.name.as_str()),
            Destination::Servfail => "SERVFAIL",
            Destination::Nothing => "-",
        }
    }

    /// [`Destination::name`], owned.
    pub fn label(self, nodes: &[Node]) -> String {
        self.name(nodes).to_string()
    }
}

/// The steered table of policy zone `zone`'s steered name `steered` in a snapshot.
pub fn steered_table<'a>(
    snapshot: &'a Snapshot,
    zone: usize,
    zones: &[Zone],
    steered: usize,
) -> Option<&'a SteeredTable> {
    let name = super::zone::name_key(&zones.get(zone)?.steered.get(steered)?.name);
    let answers = snapshot.zones.iter().find(|z| z.index == zone)?;
    match answers.names.get(&name)? {
        NameNode::Steered(table) => Some(table),
        _ => None,
    }
}

/// Where a client at `ip` goes on one side.
pub fn destination(side: Side<'_>, ip: IpAddr) -> Destination {
    Destination::of(side.table.select(ip, side.geo).answer, ip)
}

/// Networks of a range a census asks where they go, at most, when the range's answer is
/// drawn per network: evenly spaced, so shares come out in proportion.
const DRAWN_SAMPLES: u64 = 64;

/// One steered name's table and what it was built from.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// The table.
    pub table: &'a SteeredTable,
    /// The database it was indexed against.
    pub geo: &'a GeoDb,
    /// The policy's steered name (its rules' subnets split ranges).
    pub steered: &'a SteeredName,
}

/// A country's addresses that go to one destination.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Share {
    /// The destination (node name, `SERVFAIL` or `-`).
    pub node: String,
    /// Addresses, in the census's unit (IPv4 addresses, IPv6 /64s).
    pub addresses: u64,
    /// One network of them, for people to try with `dig +subnet`.
    pub example: String,
}

/// Where the places of one cell of the map (a square of [`CELL_DEGREES`]) go: the node
/// most of its addresses get first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cell {
    /// Southern edge, degrees.
    pub lat: i16,
    /// Western edge, degrees.
    pub lon: i16,
    /// The destination most of the cell's addresses get.
    pub node: String,
}

/// Side of a map cell, in degrees: at the status page's scale, two pixels.
pub const CELL_DEGREES: f64 = 1.0;

/// A steered name's clients by country: where each country's addresses of one family go,
/// most first; and, when the database places addresses at coordinates (a city database), by
/// cell of the map.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Census {
    /// The family counted: 4 or 6.
    pub family: u8,
    /// What one of `addresses` is: `address` (IPv4) or `/64` (IPv6).
    pub unit: &'static str,
    /// Country code → its shares, largest first.
    pub countries: BTreeMap<String, Vec<Share>>,
    /// Map cells holding located places, by the node most of their addresses get (empty for
    /// a database without coordinates, such as a country database).
    pub cells: Vec<Cell>,
    /// Addresses per destination over the whole space.
    pub nodes: BTreeMap<String, u64>,
    /// Every address counted.
    pub total: u64,
}

/// Clients that change destination between two sides.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Move {
    /// Where they went before.
    pub from: String,
    /// Where they go after.
    pub to: String,
    /// Addresses, in the census unit of the family (IPv4 addresses, IPv6 /64s).
    pub addresses: u64,
    /// Share of the family's space counted.
    pub share: f64,
    /// Countries, most addresses first: (code, addresses).
    pub countries: Vec<(String, u64)>,
    /// A few networks that move, for `dig +subnet`.
    pub examples: Vec<String>,
}

/// The family's number: 4 or 6.
pub fn family_number(family: Family) -> u8 {
    match family {
        Family::V4 => 4,
        Family::V6 => 6,
    }
}

/// Bits of a census unit number: 32 (IPv4 addresses) or 64 (IPv6 /64s).
fn unit_bits(family: Family) -> u32 {
    128 - census_unit_shift(family)
}

/// The first address of census unit `unit`.
fn address_of(family: Family, unit: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(unit).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(unit << 64)),
    }
}

/// Census units in one network a draw is by (a /24: 256 IPv4 addresses; a /48: 65,536
/// IPv6 /64s).
fn network_units(family: Family) -> u64 {
    match family {
        Family::V4 => 1 << (32 - super::draw::NETWORK_BITS[0]),
        Family::V6 => 1 << (64 - super::draw::NETWORK_BITS[1]),
    }
}

/// The largest aligned network starting at unit `first` and inside `size` units.
pub(crate) fn network(family: Family, first: u128, size: u64) -> String {
    let width = unit_bits(family);
    let aligned = if first == 0 {
        width
    } else {
        first.trailing_zeros().min(width)
    };
    let fits = 63 - size.max(1).leading_zeros(); // floor(log2(size))
    let host_bits = aligned.min(fits).min(width);
    let prefix = match family {
        Family::V4 => width - host_bits,
        Family::V6 => 64 - host_bits,
    };
    format!("{}/{prefix}", address_of(family, first))
}

/// The most one piece of a range counts for: for IPv6, a /32 (2^32 /64s), the usual
/// allocation to an ISP. Databases fill unallocated IPv6 space with ranges of a /4 or more;
/// counted whole, one such range outweighs every real network of the world.
fn max_weight(family: Family) -> u64 {
    match family {
        Family::V4 => u64::MAX,
        Family::V6 => 1 << 32,
    }
}

/// Unit ranges `[start, end)` not counted: for IPv6, Teredo (2001::/32) and 6to4
/// (2002::/16), IPv4 space seen through IPv6.
fn uncounted(family: Family) -> &'static [(u128, u128)] {
    match family {
        Family::V4 => &[],
        Family::V6 => &[
            (0x2001_0000_0000_0000, 0x2001_0001_0000_0000),
            (0x2002_0000_0000_0000, 0x2003_0000_0000_0000),
        ],
    }
}

/// The ranges' boundaries, in units, that rules' subnets of the family add (and the
/// uncounted ranges), sorted.
fn subnet_cuts(steered: &[&SteeredName], family: Family) -> Vec<u128> {
    let shift = census_unit_shift(family);
    let width = unit_bits(family);
    let mut cuts: Vec<u128> = steered
        .iter()
        .flat_map(|s| s.rules.iter())
        .flat_map(|r| r.subnets.iter())
        .filter(|p| p.family == family)
        .flat_map(|p| {
            let start = p.bits >> shift;
            let size = 1u128 << (width - u32::from(p.len).min(width));
            [start, start + size]
        })
        .chain(uncounted(family).iter().flat_map(|&(a, b)| [a, b]))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// What a walk hands each range: where it starts (in units) and how many units it counts
/// for, its country, the map cell of its place (when it has coordinates), and per side the
/// destination and the whole answer.
pub(crate) struct Range<'r, 'a> {
    /// First unit.
    pub first: u128,
    /// Units counted.
    pub size: u64,
    /// Country code.
    pub country: [u8; 2],
    /// Map cell.
    pub cell: Option<(i16, i16)>,
    /// Per side: where the range's clients go first.
    pub to: &'r [Destination],
    /// Per side: the answer they get.
    pub answers: &'r [&'a AnswerSet],
}

/// Walks one family's space in the first side's database, cut at every side's subnet
/// rules, calling `each` for every range with each side's destination and answer.
pub(crate) fn walk<'a>(sides: &[Side<'a>], family: Family, mut each: impl FnMut(Range<'_, 'a>)) {
    let Some(first_side) = sides.first() else {
        return;
    };
    let shift = census_unit_shift(family);
    let cuts = subnet_cuts(&sides.iter().map(|s| s.steered).collect::<Vec<_>>(), family);
    let skipped = uncounted(family);
    let places = first_side.geo.places();
    let mut destinations = vec![Destination::Nothing; sides.len()];
    let mut answers: Vec<&'a AnswerSet> = Vec::with_capacity(sides.len());
    let mut next_cut = 0;
    for (first_bits, size, place) in first_side.geo.ranges(family) {
        if size == 0 {
            continue; // inside one /64: nothing in IPv6 units
        }
        let place = place.and_then(|p| places.get(p as usize));
        let Some(country) = place.and_then(|p| p.country) else {
            continue;
        };
        let cell = place.and_then(|p| p.coordinates).map(|c| {
            (
                (c.latitude / CELL_DEGREES).floor() as i16,
                (c.longitude / CELL_DEGREES).floor() as i16,
            )
        });
        let start = first_bits >> shift;
        let end = start + u128::from(size);
        let mut at = start;
        while at < end {
            while next_cut < cuts.len() && cuts[next_cut] <= at {
                next_cut += 1;
            }
            let until = cuts.get(next_cut).map_or(end, |&c| c.min(end));
            if !skipped.iter().any(|&(a, b)| (a..b).contains(&at)) {
                // The range's own first address (it may start inside its first unit), else
                // where the cut falls.
                let address = if at == start {
                    match family {
                        Family::V4 => address_of(family, first_bits >> shift),
                        Family::V6 => IpAddr::V6(Ipv6Addr::from(first_bits)),
                    }
                } else {
                    address_of(family, at)
                };
                let mut drawn = false;
                answers.clear();
                for (slot, side) in destinations.iter_mut().zip(sides) {
                    let answer = side.table.select(address, side.geo).answer;
                    drawn |= Destination::drawn(answer);
                    *slot = Destination::of(answer, address);
                    answers.push(answer);
                }
                let units = u64::try_from(until - at).unwrap_or(u64::MAX);
                let weight = units.min(max_weight(family));
                let range = |size, to, answers| Range {
                    first: at,
                    size,
                    country,
                    cell,
                    to,
                    answers,
                };
                if drawn {
                    // Answers drawn per network: the range's networks spread over several
                    // destinations; a few of them, evenly spaced, say in what shares.
                    let networks = units.div_ceil(network_units(family)).max(1);
                    let samples = networks.min(DRAWN_SAMPLES);
                    let mut seen: Vec<(Vec<Destination>, u64)> = Vec::new();
                    for k in 0..samples {
                        let offset = u128::from(units / samples * k);
                        let ip = if k == 0 {
                            address
                        } else {
                            address_of(family, at + offset)
                        };
                        let tuple: Vec<Destination> = (sides.iter())
                            .map(|side| Destination::of(side.table.select(ip, side.geo).answer, ip))
                            .collect();
                        match seen.iter_mut().find(|(t, _)| *t == tuple) {
                            Some((_, n)) => *n += 1,
                            None => seen.push((tuple, 1)),
                        }
                    }
                    for (tuple, n) in &seen {
                        each(range(weight / samples * n, tuple, &answers));
                    }
                } else {
                    each(range(weight, &destinations, &answers));
                }
            }
            at = until;
        }
    }
}

/// A country code as text.
pub(crate) fn country_name(code: [u8; 2]) -> String {
    String::from_utf8_lossy(&code).into_owned()
}

/// Where a steered name's clients of one family go now, by country.
pub fn census(side: Side<'_>, nodes: &[Node], family: Family) -> Census {
    let mut tally: HashMap<([u8; 2], Destination), (u64, u128, u64)> = HashMap::new();
    let mut cells: HashMap<((i16, i16), Destination), u64> = HashMap::new();
    walk(&[side], family, |r| {
        let Range {
            first,
            size,
            country,
            cell,
            to,
            ..
        } = r;
        let entry = tally.entry((country, to[0])).or_insert((0, first, size));
        entry.0 = entry.0.saturating_add(size);
        if size > entry.2 {
            (entry.1, entry.2) = (first, size);
        }
        if let Some(cell) = cell {
            let count = cells.entry((cell, to[0])).or_default();
            *count = count.saturating_add(size);
        }
    });
    let mut out = Census {
        family: family_number(family),
        unit: match family {
            Family::V4 => "address",
            Family::V6 => "/64",
        },
        ..Census::default()
    };
    let mut by_cell: BTreeMap<(i16, i16), (u64, Destination)> = BTreeMap::new();
    for ((cell, to), addresses) in cells {
        let best = by_cell.entry(cell).or_insert((0, to));
        if (addresses, to) > *best {
            *best = (addresses, to);
        }
    }
    out.cells = by_cell
        .into_iter()
        .map(|((lat, lon), (_, to))| Cell {
            lat: lat * CELL_DEGREES as i16,
            lon: lon * CELL_DEGREES as i16,
            node: to.label(nodes),
        })
        .collect();
    for ((country, to), (addresses, example, example_size)) in tally {
        let node = to.label(nodes);
        out.total = out.total.saturating_add(addresses);
        let per_node = out.nodes.entry(node.clone()).or_default();
        *per_node = per_node.saturating_add(addresses);
        out.countries
            .entry(country_name(country))
            .or_default()
            .push(Share {
                node,
                addresses,
                example: network(family, example, example_size),
            });
    }
    for shares in out.countries.values_mut() {
        shares.sort_by(|a, b| b.addresses.cmp(&a.addresses).then(a.node.cmp(&b.node)));
    }
    out
}

/// Examples kept per move.
pub(crate) const EXAMPLES: usize = 3;

/// Which clients of one family change destination from `before` to `after` (each with
/// its own nodes), largest move first; the total counted is returned beside them.
pub fn moves(
    before: Side<'_>,
    before_nodes: &[Node],
    after: Side<'_>,
    after_nodes: &[Node],
    family: Family,
) -> (Vec<Move>, u64) {
    struct Tally {
        addresses: u64,
        countries: HashMap<[u8; 2], u64>,
        examples: Vec<(u64, u128)>,
    }
    let mut tally: HashMap<(Destination, Destination), Tally> = HashMap::new();
    let mut total = 0u64;
    walk(&[before, after], family, |r| {
        let Range {
            first,
            size,
            country,
            to,
            ..
        } = r;
        total = total.saturating_add(size);
        // Compared by name: the two sides may be different policies.
        if to[0].name(before_nodes) == to[1].name(after_nodes) {
            return;
        }
        let entry = tally.entry((to[0], to[1])).or_insert_with(|| Tally {
            addresses: 0,
            countries: HashMap::new(),
            examples: Vec::new(),
        });
        entry.addresses = entry.addresses.saturating_add(size);
        let per_country = entry.countries.entry(country).or_default();
        *per_country = per_country.saturating_add(size);
        entry.examples.push((size, first));
        if entry.examples.len() > EXAMPLES * 4 {
            entry.examples.sort_by_key(|e| std::cmp::Reverse(e.0));
            entry.examples.truncate(EXAMPLES);
        }
    });
    let mut out: Vec<Move> = tally
        .into_iter()
        .map(|((from, to), mut t)| {
            let mut countries: Vec<(String, u64)> = t
                .countries
                .into_iter()
                .map(|(c, n)| (country_name(c), n))
                .collect();
            countries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            t.examples.sort_by_key(|e| std::cmp::Reverse(e.0));
            Move {
                from: from.label(before_nodes),
                to: to.label(after_nodes),
                addresses: t.addresses,
                share: t.addresses as f64 / total.max(1) as f64,
                countries,
                examples: t
                    .examples
                    .iter()
                    .take(EXAMPLES)
                    .map(|&(size, first)| network(family, first, size))
                    .collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.addresses
            .cmp(&a.addresses)
            .then(a.from.cmp(&b.from))
            .then(a.to.cmp(&b.to))
    });
    (out, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_networks_are_aligned_and_inside_the_range() {
        let v4 = |a: Ipv4Addr, size| network(Family::V4, u128::from(u32::from(a)), size);
        assert_eq!(v4(Ipv4Addr::new(126, 0, 0, 0), 1 << 24), "126.0.0.0/8");
        assert_eq!(v4(Ipv4Addr::new(126, 0, 0, 0), 3 << 16), "126.0.0.0/15");
        assert_eq!(v4(Ipv4Addr::new(10, 0, 0, 128), 1 << 20), "10.0.0.128/25");
        assert_eq!(v4(Ipv4Addr::new(0, 0, 0, 0), 1 << 32), "0.0.0.0/0");
        assert_eq!(v4(Ipv4Addr::new(1, 2, 3, 4), 1), "1.2.3.4/32");
        // IPv6 in /64s: 2400:4050::/32 is 2^32 of them.
        let v6 = |a: &str, size| {
            let bits = u128::from(a.parse::<Ipv6Addr>().expect("an address"));
            network(Family::V6, bits >> 64, size)
        };
        assert_eq!(v6("2400:4050::", 1 << 32), "2400:4050::/32");
        assert_eq!(v6("2400:4050::", 3 << 30), "2400:4050::/33");
        assert_eq!(v6("2001:db8:0:1::", 1 << 20), "2001:db8:0:1::/64");
        assert_eq!(v6("2001:db8::", 1), "2001:db8::/64");
    }
}
