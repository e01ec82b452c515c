//! Geo codes as operators write them: a continent (`EU`), a country (`EU-DE`) or a
//! subdivision (`NA-US-CA`), checked against the country table, and whether a place is in one.

use std::fmt;

use super::countries::CountryTable;
use super::place::{Place, two_letters};

/// Continent codes as MaxMind and GeoNames use them.
pub const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// A geo code in octoDNS form: `EU`, `AS-JP`, `NA-US-CA` (continent, country, subdivision).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GeoCode {
    /// Two-letter continent code.
    pub continent: [u8; 2],
    /// ISO 3166-1 alpha-2 country code, if the code is that specific.
    pub country: Option<[u8; 2]>,
    /// ISO 3166-2 subdivision code without the country (`CA` for California), if given.
    pub subdivision: Option<String>,
}

/// Why a geo code is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeoCodeError {
    /// Not one to three dash-separated parts.
    #[error("expected a geo code like EU, AS-JP or NA-US-CA, got '{0}'")]
    Syntax(String),
    /// An unknown continent.
    #[error("unknown continent '{0}' (expected one of AF, AN, AS, EU, NA, OC, SA)")]
    Continent(String),
    /// A country not in the ISO 3166-1 table.
    #[error("unknown country '{0}' (expected an ISO 3166-1 alpha-2 code)")]
    Country(String),
    /// The country is on another continent.
    #[error("country {country} is in {actual}, not {given}; write {actual}-{country}")]
    WrongContinent {
        /// The country given.
        country: String,
        /// The continent given.
        given: String,
        /// The continent the country table puts it in.
        actual: String,
    },
}

impl GeoCode {
    /// Parses and checks a code against the country table.
    pub fn parse(text: &str, countries: &CountryTable) -> Result<Self, GeoCodeError> {
        let parts: Vec<&str> = text.split('-').collect();
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(GeoCodeError::Syntax(text.to_string()));
        }
        let continent_text = parts[0].to_ascii_uppercase();
        if !CONTINENTS.contains(&continent_text.as_str()) {
            return Err(GeoCodeError::Continent(parts[0].to_string()));
        }
        let continent =
            two_letters(&continent_text).ok_or_else(|| GeoCodeError::Syntax(text.to_string()))?;
        let country = match parts.get(1) {
            None => None,
            Some(code) => {
                let upper = code.to_ascii_uppercase();
                let country = countries
                    .get(&upper)
                    .ok_or_else(|| GeoCodeError::Country(code.to_string()))?;
                if country.continent != continent {
                    return Err(GeoCodeError::WrongContinent {
                        country: upper,
                        given: continent_text,
                        actual: String::from_utf8_lossy(&country.continent).into_owned(),
                    });
                }
                Some(country.code)
            }
        };
        let subdivision = parts.get(2).map(|s| s.to_ascii_uppercase());
        Ok(Self {
            continent,
            country,
            subdivision,
        })
    }

    /// True when every place inside `other` is inside `self` (`EU` contains `EU-DE`).
    pub fn contains(&self, other: &GeoCode) -> bool {
        self.continent == other.continent
            && (self.country.is_none() || self.country == other.country)
            && (self.subdivision.is_none() || self.subdivision == other.subdivision)
    }

    /// True when a located client is inside this geo.
    pub fn matches(&self, place: &Place) -> bool {
        place.continent == Some(self.continent)
            && (self.country.is_none() || self.country == place.country)
            && (self.subdivision.is_none()
                || (self.subdivision.as_deref() == place.subdivision.as_deref()))
    }
}

impl fmt::Display for GeoCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.continent))?;
        if let Some(country) = &self.country {
            write!(f, "-{}", String::from_utf8_lossy(country))?;
        }
        if let Some(sub) = &self.subdivision {
            write!(f, "-{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geo_codes_parse_and_nest() {
        let table = CountryTable::shipped();
        let eu = GeoCode::parse("EU", table).unwrap();
        let de = GeoCode::parse("EU-DE", table).unwrap();
        let ca = GeoCode::parse("NA-US-CA", table).unwrap();
        assert!(eu.contains(&de));
        assert!(!de.contains(&eu));
        assert_eq!(ca.to_string(), "NA-US-CA");
        assert!(matches!(
            GeoCode::parse("XX", table),
            Err(GeoCodeError::Continent(_))
        ));
        assert!(matches!(
            GeoCode::parse("EU-ZZ", table),
            Err(GeoCodeError::Country(_))
        ));
        assert!(matches!(
            GeoCode::parse("EU-JP", table),
            Err(GeoCodeError::WrongContinent { .. })
        ));
        assert!(matches!(
            GeoCode::parse("EU--", table),
            Err(GeoCodeError::Syntax(_))
        ));
    }

    #[test]
    fn geo_codes_match_places() {
        let table = CountryTable::shipped();
        let place = Place {
            continent: Some(*b"NA"),
            country: Some(*b"US"),
            subdivision: Some("CA".into()),
            coordinates: None,
        };
        for (code, expected) in [
            ("NA", true),
            ("NA-US", true),
            ("NA-US-CA", true),
            ("NA-US-NY", false),
            ("EU", false),
        ] {
            assert_eq!(
                GeoCode::parse(code, table).unwrap().matches(&place),
                expected,
                "{code}"
            );
        }
    }
}
