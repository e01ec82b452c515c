//! Where clients and nodes are: geo codes, coordinates, the country table and GeoIP lookup.
//!
//! `GeoDb` turns an address into a `Place` (continent, country, subdivision, coordinates)
//! with one binary search over range tables built at load; everything that depends on a
//! place is computed when answer tables are built, never per query. This module knows
//! nothing of DNS.

mod asn;
mod code;
mod countries;
mod db;
mod mapped;
mod place;
mod ranges;
mod sets;
pub use asn::{AsnDb, AsnLookup};
pub use countries::{Country, CountryTable};
pub use db::{GeoDb, GeoError, Located, PlaceId, PlacePosition, PlaceRegions};
pub use ranges::{AddressMap, RangeHit, census_unit_shift};
pub use sets::{GeoSet, WELL_KNOWN, WellKnownSet, well_known};

pub use code::{CONTINENTS, GeoCode, GeoCodeError};
pub use place::{Coordinates, MORTON_BITS, Place, UnitVector, morton_cell};
