//! A MaxMind-format database, opened once and indexed by record.
//!
//! Databases share one data record among many networks (every network of a country points to
//! the same record in a country database). At load, the tree is walked once: every distinct
//! record is decoded once into a `Place` and numbered, and the networks become range tables
//! (`ranges`). A lookup is then a binary search: no decoding, no allocation, no file in
//! memory, and answer tables can be indexed by `PlaceId`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::countries::CountryTable;
use super::mapped::MappedFile;
use super::place::{Coordinates, Place, UnitVector, two_letters};
use super::ranges::{AddressMap, HighBits, NOTHING, RangeBuilder, RangeTable};
use crate::net::{Family, address_bits, mask};

/// A place's position and its Morton code (see [`UnitVector::morton`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacePosition {
    /// Morton code of the position.
    pub code: u64,
    /// The place.
    pub place: PlaceId,
    /// Where it is.
    pub at: UnitVector,
}

/// The positions with coordinates in Morton order, their places alone, and the code of
/// every `CODE_STRIDE`-th of them and of the last.
type SortedPositions = (Vec<PlacePosition>, Vec<PlaceId>, Vec<u64>);

/// Positions per code kept for [`GeoDb::code_bounds`].
const CODE_STRIDE: usize = 64;

/// Index of a distinct place in `GeoDb::places`.
pub type PlaceId = u32;

/// A client's location as the database knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// The place, or `None` when the database has no record for the address.
    pub place: Option<PlaceId>,
    /// Length of the database network that contains the address, in bits of the looked-up
    /// family: the widest range over which the database says the same thing.
    pub prefix_len: u8,
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file is missing, unreadable or not a MaxMind DB.
    #[error("{path}: cannot open GeoIP database: {source}")]
    Open {
        /// The database path.
        path: PathBuf,
        /// What the reader said.
        source: maxminddb::MaxMindDbError,
    },
    /// A CSV database has a bad line.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line (0: the file itself).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The tree's networks are not what a MaxMind DB can hold.
    #[error("{path}: corrupt GeoIP database: {message}")]
    Tree {
        /// The database path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tree or a record is corrupt.
    #[error("{path}: corrupt GeoIP database: {source}")]
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// What the reader said.
        source: maxminddb::MaxMindDbError,
    },
}

impl GeoError {
    /// Maps a reader error on opening `path`.
    pub(super) fn opening(
        path: &Path,
    ) -> impl Fn(maxminddb::MaxMindDbError) -> GeoError + Copy + '_ {
        move |source| GeoError::Open {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Maps a reader error while walking `path`'s tree or records.
    pub(super) fn corrupt_in(
        path: &Path,
    ) -> impl Fn(maxminddb::MaxMindDbError) -> GeoError + Copy + '_ {
        move |source| GeoError::Corrupt {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The record shapes found in the wild, read at once: MaxMind's nested GeoIP2/GeoLite2 schema
/// and the flat schema of DB-IP Lite / ip-location-db. Fields of the other schema are absent.
#[derive(Debug, Default, Deserialize)]
struct RawRecord {
    continent: Option<NestedCode>,
    country: Option<NestedIso>,
    registered_country: Option<NestedIso>,
    location: Option<NestedLocation>,
    subdivisions: Option<Vec<NestedIso>>,
    country_code: Option<String>,
    latitude: Option<Degrees>,
    longitude: Option<Degrees>,
}

/// A coordinate stored as either MaxMind `double` or `float` (the flat databases use the
/// latter); the stock `f64` deserializer accepts only `double`.
#[derive(Debug, Clone, Copy)]
struct Degrees(f64);

impl<'de> Deserialize<'de> for Degrees {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Degrees;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a coordinate in degrees")
            }
            fn visit_f32<E>(self, v: f32) -> Result<Degrees, E> {
                Ok(Degrees(f64::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Degrees, E> {
                Ok(Degrees(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Degrees, E> {
                Ok(Degrees(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Degrees, E> {
                Ok(Degrees(v as f64))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Default, Deserialize)]
struct NestedCode {
    code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct NestedIso {
    iso_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct NestedLocation {
    latitude: Option<Degrees>,
    longitude: Option<Degrees>,
}

impl RawRecord {
    /// Normalizes either schema into a place, filling continent and coordinates from the
    /// country table when the record lacks them.
    fn into_place(self, countries: &CountryTable) -> Place {
        let country = self
            .country
            .and_then(|c| c.iso_code)
            .or(self.country_code)
            .or(self.registered_country.and_then(|c| c.iso_code))
            .and_then(|code| two_letters(&code));
        let table_row = country.and_then(|c| countries.by_code(c));
        let continent = self
            .continent
            .and_then(|c| c.code)
            .and_then(|code| two_letters(&code))
            .or(table_row.map(|row| row.continent));
        let (lat, lon) = match self.location {
            Some(NestedLocation {
                latitude: Some(lat),
                longitude: Some(lon),
            }) => (Some(lat), Some(lon)),
            _ => (self.latitude, self.longitude),
        };
        let coordinates = match (lat, lon) {
            (Some(lat), Some(lon)) => Coordinates::new(lat.0, lon.0),
            _ => None,
        }
        .or(table_row.and_then(|row| row.reference));
        let subdivision = self
            .subdivisions
            .and_then(|subs| subs.into_iter().next())
            .and_then(|s| s.iso_code)
            .map(|s| s.to_ascii_uppercase());
        Place {
            continent,
            country,
            subdivision,
            coordinates,
        }
    }
}

/// One or more databases (consulted in order: DB-IP City Lite, for one, ships IPv4 and IPv6
/// as separate files) as one address → place map, and their distinct places. The files
/// themselves are not kept: everything a lookup needs is in the map.
pub struct GeoDb {
    paths: Vec<PathBuf>,
    /// Address → place ([`NOTHING`]: unlocated), the files overlaid in order.
    map: AddressMap,
    /// Distinct places, numbered in Morton order of their positions ([`in_morton_order`]).
    places: Vec<Place>,
    /// The places' positions, sorted (see [`GeoDb::sorted_positions`]), and their places
    /// alone in the same order.
    positions: std::sync::OnceLock<SortedPositions>,
    /// The places' regions (see [`GeoDb::regions`]).
    regions: std::sync::OnceLock<PlaceRegions>,
}

/// A place's continent, country and subdivision.
type RegionCode<'a> = (Option<[u8; 2]>, Option<[u8; 2]>, Option<&'a str>);

/// Places grouped by continent, country and subdivision: what geo rules, fences and
/// measured groups see of a place, so policy questions are asked once per region.
#[derive(Debug, Default)]
pub struct PlaceRegions {
    /// Place → its region.
    pub of_place: Vec<u32>,
    /// Region → one of its places.
    pub example: Vec<PlaceId>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("paths", &self.paths())
            .field("places", &self.places.len())
            .finish()
    }
}

/// Networks walked between two releases of the mapped file's pages.
const RELEASE_EVERY: usize = 1 << 18;

/// Bucket index widths: IPv4 networks spread over the whole space, IPv6 ones over 2000::/3.
const V4_BUCKET_BITS: u32 = 18;
const V6_BUCKET_BITS: u32 = 20;

impl GeoDb {
    /// Opens a database and decodes each of its records once.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        Self::open_all(&[path.to_path_buf()])
    }

    /// Opens several databases, consulted in the order given.
    pub fn open_all(paths: &[PathBuf]) -> Result<GeoDb, GeoError> {
        let countries = CountryTable::shipped();
        // One place per distinct record while walking; records that say the same thing are
        // merged afterwards, within and across files.
        let mut records: Vec<Place> = Vec::new();
        let mut builders = Vec::new();
        for path in paths {
            builders.push(Self::walk(path, countries, &mut records)?);
        }
        let (places, renumber) = in_morton_order(merge_equal_places(records));
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (mut b4, mut b6) in builders {
            b4.renumber(&renumber);
            b6.renumber(&renumber);
            v4.push(b4.finish(V4_BUCKET_BITS));
            v6.push(b6.finish(V6_BUCKET_BITS));
        }
        let map = AddressMap::new(overlaid(v4), overlaid(v6));
        Ok(GeoDb {
            paths: paths.to_vec(),
            map,
            places,
            positions: std::sync::OnceLock::new(),
            regions: std::sync::OnceLock::new(),
        })
    }

    /// Walks one file's networks into range builders (values: indexes into `records`).
    fn walk(
        path: &Path,
        countries: &CountryTable,
        records: &mut Vec<Place>,
    ) -> Result<(RangeBuilder<u32>, RangeBuilder<u64>), GeoError> {
        let map = MappedFile::open(path)
            .map_err(maxminddb::MaxMindDbError::Io)
            .map_err(GeoError::opening(path))?;
        let reader = Reader::from_source(map.clone()).map_err(GeoError::opening(path))?;
        let corrupt = GeoError::corrupt_in(path);
        let tree = |message: &str| GeoError::Tree {
            path: path.to_path_buf(),
            message: message.to_string(),
        };
        let mut record_by_offset: HashMap<u32, u32> = HashMap::new();
        let mut v4 = RangeBuilder::new(32);
        let mut v6 = RangeBuilder::new(128);
        let networks = reader.networks(WithinOptions::default()).map_err(corrupt)?;
        for (walked, network) in networks.enumerate() {
            if walked % RELEASE_EVERY == RELEASE_EVERY - 1 {
                map.release();
            }
            let network = network.map_err(corrupt)?;
            let Some(offset) = network.offset() else {
                continue;
            };
            let offset = u32::try_from(offset)
                .map_err(|_| tree("a record lies beyond 4 GiB, which is not supported"))?;
            let record = match record_by_offset.get(&offset) {
                Some(&record) => record,
                None => {
                    let raw: RawRecord = network.decode().map_err(corrupt)?.unwrap_or_default();
                    records.push(raw.into_place(countries));
                    let record = (records.len() - 1) as u32;
                    record_by_offset.insert(offset, record);
                    record
                }
            };
            let net = network.network().map_err(corrupt)?;
            let family = Family::of(net.ip());
            let len = net.prefix().min(family.bits());
            let first = address_bits(net.ip()) & mask(len);
            let last = first | !mask(len);
            let in_order = match family {
                Family::V4 => v4.cover(first, last, record),
                Family::V6 => v6.cover(first, last, record),
            };
            if !in_order {
                return Err(tree("networks out of order or overlapping"));
            }
        }
        map.release();
        Ok((v4, v6))
    }

    /// The files this database was read from.
    pub fn paths(&self) -> Vec<&Path> {
        self.paths.iter().map(PathBuf::as_path).collect()
    }

    /// Every range of one family in the database: its first address (left-aligned bits),
    /// its size in census units (IPv4 addresses, IPv6 /64s) and its place (`None`:
    /// unlocated). What a census of clients walks.
    pub fn ranges(
        &self,
        family: crate::net::Family,
    ) -> impl Iterator<Item = (u128, u64, Option<PlaceId>)> + '_ {
        self.map
            .ranges(family)
            .map(|(first, size, v)| (first, size, (v != NOTHING).then_some(v)))
    }

    /// The places' regions, worked out the first time answer tables are ranked.
    pub fn regions(&self) -> &PlaceRegions {
        self.regions.get_or_init(|| {
            let mut regions = PlaceRegions::default();
            let mut index: HashMap<RegionCode, u32> = HashMap::new();
            for (id, place) in self.places.iter().enumerate() {
                let code = (place.continent, place.country, place.subdivision.as_deref());
                let region = *index.entry(code).or_insert_with(|| {
                    regions.example.push(id as PlaceId);
                    (regions.example.len() - 1) as u32
                });
                regions.of_place.push(region);
            }
            regions
        })
    }

    /// The places with coordinates, in Morton order of their positions (places near each
    /// other are near each other in the list, so a region of places is a range of it).
    /// Worked out the first time answer tables are ranked, and kept for every later ranking
    /// against this database.
    pub fn sorted_positions(&self) -> &[PlacePosition] {
        &self.sorted().0
    }

    /// The places of [`GeoDb::sorted_positions`] alone, in its order: a tenth of its size,
    /// for passes that pick some of the positions out.
    pub fn sorted_places(&self) -> &[PlaceId] {
        &self.sorted().1
    }

    /// Bounds on the Morton codes of `places` (a range of place numbers with coordinates,
    /// not empty), read from the code of every 64th position: a few hundred kilobytes where
    /// the positions are tens of megabytes. Every code of the range is within them.
    pub fn code_bounds(&self, places: std::ops::Range<usize>) -> Option<(u64, u64)> {
        let (positions, _, every) = self.sorted();
        if places.is_empty() || places.end > positions.len() {
            return None;
        }
        let low = every.get(places.start / CODE_STRIDE)?;
        let high = every.get((places.end - 1) / CODE_STRIDE + 1)?;
        Some((*low, *high))
    }

    /// The positions of `places` (a range of place numbers) that have coordinates: places
    /// are numbered in Morton order, those with coordinates first, so a range of places is
    /// a range of [`GeoDb::sorted_positions`].
    pub fn positions_of_places(&self, places: std::ops::Range<usize>) -> &[PlacePosition] {
        let sorted = self.sorted_positions();
        let end = places.end.min(sorted.len());
        sorted.get(places.start.min(end)..end).unwrap_or(&[])
    }

    fn sorted(&self) -> &SortedPositions {
        self.positions.get_or_init(|| {
            let chunk = self
                .places
                .len()
                .div_ceil(crate::parallel::workers())
                .max(1);
            let parts = self.places.chunks(chunk).enumerate();
            let mut positions: Vec<PlacePosition> =
                crate::parallel::each(parts, |(part, places)| {
                    places
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| {
                            let at = UnitVector::of(&p.coordinates?);
                            Some(PlacePosition {
                                code: at.morton(),
                                place: (part * chunk + i) as u32,
                                at,
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .into_iter()
                .flatten()
                .collect();
            // Ties by place: the order places are numbered in, so position i is place i.
            positions.sort_unstable_by_key(|p| (p.code, p.place));
            debug_assert!(
                positions
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.place as usize == i)
            );
            let places = positions.iter().map(|p| p.place).collect();
            let every = (positions.iter().step_by(CODE_STRIDE))
                .chain(positions.last())
                .map(|p| p.code)
                .collect();
            (positions, places, every)
        })
    }

    /// Every distinct place in the database; answer tables are indexed by position here.
    pub fn places(&self) -> &[Place] {
        &self.places
    }

    /// Locates an address (callers unmap IPv4-mapped IPv6 first). Never fails: an address the
    /// databases cannot place, or a family they do not cover, is "unlocated". The first file
    /// that places the address wins. The prefix is the widest block around the address over
    /// which the files, so overlaid, say the same thing.
    pub fn locate(&self, ip: IpAddr) -> Located {
        let hit = self.map.lookup(ip);
        Located {
            place: (hit.value != NOTHING).then_some(hit.value),
            prefix_len: hit.prefix_len,
        }
    }
}

/// One file's table as is; several files' overlaid in order.
fn overlaid<K: HighBits>(mut tables: Vec<RangeTable<K>>) -> RangeTable<K> {
    if tables.len() == 1 {
        tables.remove(0)
    } else {
        RangeTable::overlay(&tables)
    }
}

/// Merges records that describe the same place: the distinct places, in order of first
/// appearance, and each record's place. Sorting indexes keeps the peak memory of a city
/// database's load to two numbers per record.
fn merge_equal_places(records: Vec<Place>) -> (Vec<Place>, Vec<u32>) {
    let mut order: Vec<u32> = (0..records.len() as u32).collect();
    let key = |i: u32| PlaceKey::of(&records[i as usize]);
    order.sort_unstable_by(|&a, &b| key(a).cmp(&key(b)).then(a.cmp(&b)));
    // leader[i]: the first record equal to record i.
    let mut leader: Vec<u32> = vec![0; records.len()];
    let mut group_start = 0;
    for at in 0..order.len() {
        if at > 0 && key(order[at]) != key(order[group_start]) {
            group_start = at;
        }
        leader[order[at] as usize] = order[group_start];
    }
    drop(order);
    let mut places = Vec::new();
    let mut renumber = leader;
    for (i, record) in records.into_iter().enumerate() {
        let first = renumber[i] as usize;
        if first == i {
            places.push(record);
            renumber[i] = (places.len() - 1) as u32;
        } else {
            // The first equal record comes earlier and is numbered already.
            renumber[i] = renumber[first];
        }
    }
    places.shrink_to_fit();
    (places, renumber)
}

/// The places renumbered in Morton order of their positions (those without coordinates
/// after them, by region), and each record's new number: places near each other get near
/// numbers, so a steered name's per-place tables are runs of equal values (`runs`).
fn in_morton_order((places, renumber): (Vec<Place>, Vec<u32>)) -> (Vec<Place>, Vec<u32>) {
    let codes: Vec<u64> = places
        .iter()
        .map(|p| {
            p.coordinates
                .map_or(u64::MAX, |c| UnitVector::of(&c).morton())
        })
        .collect();
    let mut order: Vec<u32> = (0..places.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (pa, pb) = (&places[a as usize], &places[b as usize]);
        codes[a as usize]
            .cmp(&codes[b as usize])
            .then_with(|| PlaceKey::of(pa).cmp(&PlaceKey::of(pb)))
    });
    drop(codes);
    let mut new_number = vec![0u32; places.len()];
    for (new, &old) in order.iter().enumerate() {
        new_number[old as usize] = new as u32;
    }
    let mut slots: Vec<Option<Place>> = places.into_iter().map(Some).collect();
    let sorted: Vec<Place> = order
        .iter()
        .filter_map(|&old| slots[old as usize].take())
        .collect();
    let renumber = renumber
        .into_iter()
        .map(|place| new_number.get(place as usize).copied().unwrap_or(place))
        .collect();
    (sorted, renumber)
}

/// What makes two places the same for steering.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct PlaceKey<'a> {
    continent: Option<[u8; 2]>,
    country: Option<[u8; 2]>,
    subdivision: Option<&'a str>,
    coordinates: Option<(u64, u64)>,
}

impl<'a> PlaceKey<'a> {
    fn of(place: &'a Place) -> Self {
        PlaceKey {
            continent: place.continent,
            country: place.country,
            subdivision: place.subdivision.as_deref(),
            coordinates: place
                .coordinates
                .map(|c| (c.latitude.to_bits(), c.longitude.to_bits())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code of a range of places lies within its bounds, whatever the range: the
    /// looks that read no place rely on it.
    #[test]
    fn code_bounds_hold_every_code_of_a_range() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let geo = GeoDb::open(&root.join("geo/dbip-country.mmdb")).expect("shipped db");
        let positions = geo.sorted_positions();
        let n = positions.len();
        assert!(
            n > 3 * CODE_STRIDE,
            "the test needs several strides ({n} places)"
        );
        let mut ranges = 0;
        for start in (0..n).step_by(7) {
            for len in [1, 2, CODE_STRIDE - 1, CODE_STRIDE, CODE_STRIDE + 1, 150, n] {
                let end = (start + len).min(n);
                let (low, high) = geo
                    .code_bounds(start..end)
                    .expect("a range of located places");
                let codes = positions[start..end].iter().map(|p| p.code);
                assert!(
                    codes.clone().all(|c| low <= c && c <= high),
                    "{start}..{end}"
                );
                ranges += 1;
            }
        }
        assert!(ranges > 100);
        assert_eq!(geo.code_bounds(3..3), None);
        assert_eq!(geo.code_bounds(0..n + 1), None);
    }
}
