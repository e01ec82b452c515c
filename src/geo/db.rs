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

/// An opened database and its distinct places.
pub struct GeoDb {
    /// Where it was loaded from, for status and messages.
    path: PathBuf,
    reader: Reader<Vec<u8>>,
    /// Distinct places, numbered by first appearance in the tree.
    places: Vec<Place>,
    /// Record offset in the data section → place.
    place_by_offset: HashMap<usize, PlaceId>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("places", &self.places.len())
            .finish()
    }
}

impl GeoDb {
    /// Opens a database and decodes each of its records once.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let reader = Reader::open_readfile(path).map_err(|source| GeoError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let countries = CountryTable::shipped();
        let corrupt = |source| GeoError::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let mut places = Vec::new();
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
            let id = places.len() as PlaceId;
            places.push(record.into_place(countries));
            place_by_offset.insert(offset, id);
        }
        Ok(GeoDb {
            path: path.to_path_buf(),
            reader,
            places,
            place_by_offset,
        })
    }

    /// The file this database was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every distinct place in the database; answer tables are indexed by position here.
    pub fn places(&self) -> &[Place] {
        &self.places
    }

    /// Locates an address (callers unmap IPv4-mapped IPv6 first). Never fails: an address the
    /// database cannot place, or a family it does not cover, is "unlocated".
    pub fn locate(&self, ip: IpAddr) -> Located {
        let Ok(result) = self.reader.lookup(ip) else {
            return Located {
                place: None,
                prefix_len: 0,
            };
        };
        let prefix_len = match result.network() {
            Ok(network) if Family::of(network.ip()) == Family::of(ip) => network.prefix(),
            _ => 0,
        };
        let place = result
            .offset()
            .and_then(|offset| self.place_by_offset.get(&offset).copied());
        Located { place, prefix_len }
    }
}
