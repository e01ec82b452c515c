//! Sets of places: unions of geo codes under one name, so a data-sovereignty border of 27
//! countries is written once (`geo_sets:` in a policy) or taken from the well-known sets
//! shipped here, and a fence over a set lets any node inside the union serve any client
//! inside it.

use std::fmt;

use super::{CountryTable, GeoCode, Place};

/// A union of geo codes, under the name a policy gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoSet {
    /// The set's name (`eea`), or its members joined by `+` for an unnamed union.
    pub name: String,
    /// Codes whose union the set is.
    pub members: Vec<GeoCode>,
}

impl GeoSet {
    /// An unnamed union, named after its members.
    pub fn union(members: Vec<GeoCode>) -> GeoSet {
        let name = members
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("+");
        GeoSet { name, members }
    }

    /// True when every place inside `code` is inside the set.
    pub fn contains(&self, code: &GeoCode) -> bool {
        self.members.iter().any(|m| m.contains(code))
    }

    /// True when some place is inside both `code` and the set.
    pub fn overlaps(&self, code: &GeoCode) -> bool {
        self.members
            .iter()
            .any(|m| m.contains(code) || code.contains(m))
    }

    /// True when a located client is inside the set.
    pub fn matches(&self, place: &Place) -> bool {
        self.members.iter().any(|m| m.matches(place))
    }
}

impl fmt::Display for GeoSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A set geosteer ships, with where its list comes from.
#[derive(Debug)]
pub struct WellKnownSet {
    /// The name policies use.
    pub name: &'static str,
    /// What it is, its source and the date the list was taken.
    pub about: &'static str,
    /// ISO 3166-1 alpha-2 codes of its countries.
    pub countries: &'static [&'static str],
}

/// The 27 member states of the European Union.
const EU_27: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// The European Economic Area: the EU 27, Iceland, Liechtenstein and Norway.
const EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO",
];

/// Sets every policy may name in `geos` and `geo_sets`.
pub const WELL_KNOWN: &[WellKnownSet] = &[
    WellKnownSet {
        name: "eu-27",
        about: "member states of the European Union (the GDPR's territory), as listed at \
                european-union.europa.eu, unchanged since the United Kingdom left on \
                2020-02-01; taken 2026-12-02",
        countries: EU_27,
    },
    WellKnownSet {
        name: "eea",
        about: "the European Economic Area: the EU member states plus Iceland, Liechtenstein \
                and Norway (the GDPR applies through the EEA Agreement), as listed at \
                efta.int; taken 2026-12-02",
        countries: EEA,
    },
];

/// A well-known set by name (case-insensitive), its countries placed by the country table.
pub fn well_known(name: &str, countries: &CountryTable) -> Option<GeoSet> {
    let set = WELL_KNOWN
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))?;
    let members = set
        .countries
        .iter()
        .filter_map(|code| {
            let country = countries.get(code)?;
            let continent = String::from_utf8_lossy(&country.continent).into_owned();
            GeoCode::parse(&format!("{continent}-{code}"), countries).ok()
        })
        .collect();
    Some(GeoSet {
        name: set.name.to_string(),
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_sets_place_every_country() {
        let countries = CountryTable::shipped();
        for set in WELL_KNOWN {
            let placed = well_known(set.name, countries).expect("a shipped set");
            assert_eq!(placed.members.len(), set.countries.len(), "{}", set.name);
        }
        let eea = well_known("EEA", countries).expect("case-insensitive");
        let code = |text: &str| GeoCode::parse(text, countries).expect("a code");
        assert!(eea.contains(&code("EU-NO")) && eea.contains(&code("EU-CY")));
        assert!(!eea.contains(&code("EU-GB")) && !eea.contains(&code("EU-CH")));
        assert!(!eea.contains(&code("EU")) && eea.overlaps(&code("EU")));
        let eu = well_known("eu-27", countries).expect("shipped");
        assert!(!eu.contains(&code("EU-NO")));
    }
}
