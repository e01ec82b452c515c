//! The tiny GeoIP databases of the integration tests, built in code so they can be regenerated
//! (`cargo run --example make_test_geo`) and checked against the committed files.

use std::collections::BTreeMap;
use std::net::IpAddr;

use maxminddb_writer::Database;
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use serde::Serialize;

/// One test place: a network and what the database says about it.
struct Entry {
    network: &'static str,
    country: &'static str,
    continent: &'static str,
    subdivision: Option<&'static str>,
    location: Option<(f64, f64)>,
}

/// Broader networks first: the writer overwrites a subtree when a broader network follows.
const ENTRIES: &[Entry] = &[
    Entry {
        network: "127.1.0.0/16",
        country: "JP",
        continent: "AS",
        subdivision: Some("13"),
        location: Some((35.69, 139.69)),
    },
    Entry {
        network: "127.1.128.0/17",
        country: "JP",
        continent: "AS",
        subdivision: Some("27"),
        location: Some((34.69, 135.50)),
    },
    Entry {
        network: "127.2.0.0/16",
        country: "BR",
        continent: "SA",
        subdivision: Some("SP"),
        location: Some((-23.55, -46.63)),
    },
    Entry {
        network: "127.3.0.0/16",
        country: "DE",
        continent: "EU",
        subdivision: Some("BE"),
        location: Some((52.52, 13.40)),
    },
    Entry {
        network: "127.4.0.0/16",
        country: "US",
        continent: "NA",
        subdivision: Some("CA"),
        location: Some((34.05, -118.24)),
    },
    Entry {
        network: "127.5.0.0/16",
        country: "US",
        continent: "NA",
        subdivision: Some("NY"),
        location: Some((40.71, -74.01)),
    },
    Entry {
        network: "127.6.0.0/16",
        country: "GB",
        continent: "EU",
        subdivision: Some("ENG"),
        location: Some((51.51, -0.13)),
    },
    Entry {
        network: "127.7.0.0/16",
        country: "ZA",
        continent: "AF",
        subdivision: None,
        location: Some((-26.20, 28.05)),
    },
    Entry {
        network: "127.8.0.0/16",
        country: "IN",
        continent: "AS",
        subdivision: None,
        location: Some((19.08, 72.88)),
    },
    Entry {
        network: "127.9.0.0/16",
        country: "AU",
        continent: "OC",
        subdivision: None,
        location: None,
    },
    Entry {
        network: "127.10.0.0/16",
        country: "SG",
        continent: "AS",
        subdivision: None,
        location: Some((1.35, 103.82)),
    },
    Entry {
        network: "127.11.0.0/16",
        country: "FR",
        continent: "EU",
        subdivision: None,
        location: Some((48.86, 2.35)),
    },
    Entry {
        network: "2001:db8:1::/48",
        country: "JP",
        continent: "AS",
        subdivision: None,
        location: Some((35.69, 139.69)),
    },
    Entry {
        network: "2001:db8:3::/48",
        country: "DE",
        continent: "EU",
        subdivision: None,
        location: Some((52.52, 13.40)),
    },
];

#[derive(Serialize)]
struct Code<'a> {
    code: &'a str,
}

#[derive(Serialize)]
struct Iso<'a> {
    iso_code: &'a str,
    names: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
    accuracy_radius: u16,
}

/// MaxMind GeoIP2 City shape.
#[derive(Serialize)]
pub struct NestedRecord<'a> {
    continent: Code<'a>,
    country: Iso<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Location>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subdivisions: Vec<Iso<'a>>,
}

impl<'a> NestedRecord<'a> {
    /// A record in MaxMind's City schema (also what the load benchmark's database uses).
    pub fn city(
        continent: &'a str,
        country: &'a str,
        location: Option<(f64, f64)>,
        subdivision: Option<&'a str>,
    ) -> Self {
        NestedRecord {
            continent: Code { code: continent },
            country: Iso {
                iso_code: country,
                names: BTreeMap::from([("en", country)]),
            },
            location: location.map(|(latitude, longitude)| Location {
                latitude,
                longitude,
                accuracy_radius: 20,
            }),
            subdivisions: subdivision
                .map(|s| Iso {
                    iso_code: s,
                    names: BTreeMap::new(),
                })
                .into_iter()
                .collect(),
        }
    }
}

/// DB-IP Lite / ip-location-db shape.
#[derive(Serialize)]
struct FlatRecord<'a> {
    country_code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    latitude: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    longitude: Option<f32>,
}

/// IPv4 networks live at `::a.b.c.d/(96+len)` in an IPv6 tree.
fn tree_path(network: &str) -> IpAddrWithMask {
    let (addr, len) = network
        .split_once('/')
        .expect("entry networks have a length");
    let addr: IpAddr = addr.parse().expect("entry networks are addresses");
    let len: u8 = len.parse().expect("entry lengths are numbers");
    match addr {
        IpAddr::V4(v4) => IpAddrWithMask::new(IpAddr::V6(v4.to_ipv6_compatible()), 96 + len),
        v6 => IpAddrWithMask::new(v6, len),
    }
}

fn database(kind: &str) -> Database {
    empty_database(format!("geosteer-test-{kind}"), 1_700_000_000)
}

/// An empty IPv6 database (IPv4 at `::a.b.c.d`) with the metadata every reader, libmaxminddb
/// included, accepts.
pub fn empty_database(database_type: String, build_epoch: u64) -> Database {
    let mut db = Database::default();
    db.metadata.binary_format_major_version = 2;
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.database_type = database_type;
    db.metadata.languages = vec!["en".into()];
    db.metadata.build_epoch = build_epoch;
    db
}

/// Builds the fixture databases: `(file name, bytes)` for the nested schema, the flat schema,
/// and a small extra file mapping only 127.12.0.0/16 (AE, Dubai).
pub fn build_all() -> Vec<(&'static str, Vec<u8>)> {
    let mut nested = database("city");
    let mut flat = database("flat");
    for e in ENTRIES {
        let nested_ref = nested
            .insert_value(NestedRecord::city(
                e.continent,
                e.country,
                e.location,
                e.subdivision,
            ))
            .expect("fixture records serialize");
        nested.insert_node(tree_path(e.network), nested_ref);
        let flat_ref = flat
            .insert_value(FlatRecord {
                country_code: e.country,
                latitude: e.location.map(|l| l.0 as f32),
                longitude: e.location.map(|l| l.1 as f32),
            })
            .expect("fixture records serialize");
        flat.insert_node(tree_path(e.network), flat_ref);
    }
    // A third file covering what the others do not, for tests of several databases at once.
    let mut extra = database("extra");
    let dubai = extra
        .insert_value(FlatRecord {
            country_code: "AE",
            latitude: Some(25.20),
            longitude: Some(55.27),
        })
        .expect("fixture records serialize");
    extra.insert_node(tree_path("127.12.0.0/16"), dubai);
    // An ASN database (GeoLite2-ASN schema): Tokyo's half of 127.1/16 on AS64500, Osaka's
    // on AS64501 (the same split as tests/fixtures/asn.csv).
    #[derive(Serialize)]
    struct AsnRecord {
        autonomous_system_number: u32,
        autonomous_system_organization: &'static str,
    }
    let mut asn = database("asn");
    for (network, number, name) in [
        ("127.1.0.0/17", 64500, "Carrier A"),
        ("127.1.128.0/17", 64501, "Carrier B"),
    ] {
        let record = asn
            .insert_value(AsnRecord {
                autonomous_system_number: number,
                autonomous_system_organization: name,
            })
            .expect("fixture records serialize");
        asn.insert_node(tree_path(network), record);
    }
    [
        (nested, "geo-city.mmdb"),
        (flat, "geo-flat.mmdb"),
        (extra, "geo-extra.mmdb"),
        (asn, "geo-asn.mmdb"),
    ]
    .into_iter()
    .map(|(db, name)| {
        (
            name,
            db.write_to(Vec::new())
                .expect("fixture databases serialize"),
        )
    })
    .collect()
}

/// The disaster-recovery drill's database (`deploy/drill/geo.mmdb`, City schema): the client
/// networks of its regions, which are private ranges no real database locates.
pub fn drill() -> Vec<u8> {
    let mut db = database("drill");
    for (network, continent, country, location) in [
        ("10.101.0.0/16", "EU", "DE", (50.11, 8.68)),
        ("10.102.0.0/16", "AS", "JP", (35.69, 139.69)),
        ("10.103.0.0/16", "NA", "US", (40.71, -74.01)),
    ] {
        let record = db
            .insert_value(NestedRecord::city(continent, country, Some(location), None))
            .expect("drill records serialize");
        db.insert_node(tree_path(network), record);
    }
    db.write_to(Vec::new())
        .expect("the drill database serializes")
}
