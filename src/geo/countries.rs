//! The country table shipped in `geo/countries.csv`: continent and reference point per country.
//!
//! Country-level GeoIP databases (the shipped default) carry a country code and nothing else;
//! this table supplies the continent and the point that distances are measured from. It is
//! compiled into the binary so the server cannot start with a table that disagrees with the
//! policy it validated.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::place::{Coordinates, two_letters};

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code.
    pub code: [u8; 2],
    /// Continent code.
    pub continent: [u8; 2],
    /// Where the country's people are: its most populous place. `None` for uninhabited ones.
    pub reference: Option<Coordinates>,
}

/// All countries, by code.
#[derive(Debug)]
pub struct CountryTable {
    by_code: HashMap<[u8; 2], Country>,
}

const SHIPPED_CSV: &str = include_str!("../../geo/countries.csv");

impl CountryTable {
    /// The table compiled from `geo/countries.csv`.
    pub fn shipped() -> &'static CountryTable {
        static TABLE: OnceLock<CountryTable> = OnceLock::new();
        TABLE.get_or_init(|| CountryTable::parse(SHIPPED_CSV))
    }

    /// Parses the CSV: `country,continent,latitude,longitude,...`; malformed rows are skipped
    /// (the shipped file is checked by a unit test).
    fn parse(csv: &str) -> CountryTable {
        let mut by_code = HashMap::new();
        for line in csv.lines().skip(1) {
            let mut fields = line.splitn(5, ',');
            let (Some(code), Some(continent), Some(lat), Some(lon)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (Some(code), Some(continent)) = (two_letters(code), two_letters(continent)) else {
                continue;
            };
            let reference = match (lat.parse::<f64>(), lon.parse::<f64>()) {
                (Ok(lat), Ok(lon)) => Coordinates::new(lat, lon),
                _ => None,
            };
            by_code.insert(
                code,
                Country {
                    code,
                    continent,
                    reference,
                },
            );
        }
        CountryTable { by_code }
    }

    /// Looks a country up by its code, case-insensitively.
    pub fn get(&self, code: &str) -> Option<&Country> {
        two_letters(code).and_then(|c| self.by_code.get(&c))
    }

    /// Looks a country up by its code bytes (uppercase).
    pub fn by_code(&self, code: [u8; 2]) -> Option<&Country> {
        self.by_code.get(&code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_is_complete() {
        let table = CountryTable::shipped();
        assert_eq!(SHIPPED_CSV.lines().count() - 1, table.by_code.len());
        assert!(table.by_code.len() >= 249);
        let jp = table.get("jp").unwrap();
        assert_eq!(&jp.continent, b"AS");
        let tokyo = Coordinates::new(35.69, 139.69).unwrap();
        assert!(jp.reference.unwrap().distance_km(&tokyo) < 50.0);
        assert_eq!(&table.get("DE").unwrap().continent, b"EU");
        assert_eq!(&table.get("BR").unwrap().continent, b"SA");
    }
}
