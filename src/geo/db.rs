//! A MaxMind-format database, opened once and indexed by record.
//!
//! Databases share one data record among many networks (every network of a country points to
//! the same record in a country database). At load, every distinct record is decoded once into
//! a `Place` and numbered; a lookup is then a tree walk plus a map from record offset to that
//! number: no decoding, no allocation, and answer tables can be indexed by `PlaceId`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::{Coordinates, CountryTable, Place, two_letters};
use crate::net::Family;

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
    /// The tree or a record is corrupt.
    #[error("{path}: corrupt GeoIP database: {source}")]
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// What the reader said.
        source: maxminddb::MaxMindDbError,
    },
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

/// One database file and the map from its records to places.
struct Source {
    path: PathBuf,
    reader: Reader<Vec<u8>>,
    /// Record offset in this file's data section → place.
    place_by_offset: HashMap<usize, PlaceId>,
}

/// One or more opened databases (consulted in order: DB-IP City Lite, for one, ships IPv4 and
/// IPv6 as separate files) and their distinct places.
pub struct GeoDb {
    sources: Vec<Source>,
    /// Distinct places, numbered by first appearance.
    places: Vec<Place>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("paths", &self.paths())
            .field("places", &self.places.len())
            .finish()
    }
}

impl GeoDb {
    /// Opens a database and decodes each of its records once.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        Self::open_all(&[path.to_path_buf()])
    }

    /// Opens several databases, consulted in the order given.
    pub fn open_all(paths: &[PathBuf]) -> Result<GeoDb, GeoError> {
        let countries = CountryTable::shipped();
        let mut places = Vec::new();
        let mut interned: HashMap<PlaceKey, PlaceId> = HashMap::new();
        let mut sources = Vec::new();
        for path in paths {
            let reader = Reader::open_readfile(path).map_err(|source| GeoError::Open {
                path: path.clone(),
                source,
            })?;
            let corrupt = |source| GeoError::Corrupt {
                path: path.clone(),
                source,
            };
            let mut place_by_offset = HashMap::new();
            let networks = reader.networks(WithinOptions::default()).map_err(corrupt)?;
            for network in networks {
                let network = network.map_err(corrupt)?;
                let Some(offset) = network.offset() else {
                    continue;
                };
                if place_by_offset.contains_key(&offset) {
                    continue;
                }
                let record: RawRecord = network.decode().map_err(corrupt)?.unwrap_or_default();
                let place = record.into_place(countries);
                // Records that say the same thing share a place, within and across files.
                let id = *interned.entry(PlaceKey::of(&place)).or_insert_with(|| {
                    places.push(place);
                    (places.len() - 1) as PlaceId
                });
                place_by_offset.insert(offset, id);
            }
            sources.push(Source {
                path: path.clone(),
                reader,
                place_by_offset,
            });
        }
        places.shrink_to_fit();
        Ok(GeoDb { sources, places })
    }

    /// The files this database was read from.
    pub fn paths(&self) -> Vec<&Path> {
        self.sources.iter().map(|s| s.path.as_path()).collect()
    }

    /// Every distinct place in the database; answer tables are indexed by position here.
    pub fn places(&self) -> &[Place] {
        &self.places
    }

    /// Locates an address (callers unmap IPv4-mapped IPv6 first). Never fails: an address the
    /// databases cannot place, or a family they do not cover, is "unlocated". The first file
    /// that places the address wins; for an unlocated address the prefix is the longest
    /// "nothing here" network, the range over which every file agrees it knows nothing.
    pub fn locate(&self, ip: IpAddr) -> Located {
        let mut unlocated_prefix = 0;
        for source in &self.sources {
            let Ok(result) = source.reader.lookup(ip) else {
                continue;
            };
            let prefix_len = match result.network() {
                Ok(network) if Family::of(network.ip()) == Family::of(ip) => network.prefix(),
                _ => 0,
            };
            if let Some(place) = result
                .offset()
                .and_then(|offset| source.place_by_offset.get(&offset).copied())
            {
                return Located {
                    place: Some(place),
                    prefix_len,
                };
            }
            unlocated_prefix = unlocated_prefix.max(prefix_len);
        }
        Located {
            place: None,
            prefix_len: unlocated_prefix,
        }
    }
}

/// What makes two places the same for steering.
#[derive(PartialEq, Eq, Hash)]
struct PlaceKey {
    continent: Option<[u8; 2]>,
    country: Option<[u8; 2]>,
    subdivision: Option<String>,
    coordinates: Option<(u64, u64)>,
}

impl PlaceKey {
    fn of(place: &Place) -> Self {
        PlaceKey {
            continent: place.continent,
            country: place.country,
            subdivision: place.subdivision.clone(),
            coordinates: place
                .coordinates
                .map(|c| (c.latitude.to_bits(), c.longitude.to_bits())),
        }
    }
}
