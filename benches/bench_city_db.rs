//! Converts DB-IP City Lite (the flat ip-location-db schema, one file per family) into one
//! GeoIP2-City-schema database (nested `continent`, `country`, `location`), which every
//! server in the load benchmark can read (gdnsd's geoip plugin needs that schema), and
//! writes a sample of client subnets with the coordinates the database gives them, for the
//! query streams and the independent correctness check.
//!
//! Usage: bench_city_db V4.mmdb V6.mmdb OUT.mmdb SUBNETS.txt
//! SUBNETS.txt: one line per sampled IPv4 /24, `subnet country latitude longitude`, at most
//! `PER_COUNTRY` per country (drawn evenly from its networks).
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};

#[allow(dead_code)]
use geosteer_harness::geo_fixtures;

use geo_fixtures::{NestedRecord, empty_database};
use geosteer::geo::CountryTable;
use maxminddb::{Reader, WithinOptions};
use maxminddb_writer::paths::IpAddrWithMask;
use serde::Deserialize;

/// Sampled subnets per country.
const PER_COUNTRY: usize = 800;

#[derive(Deserialize)]
struct FlatRecord<'a> {
    country_code: Option<&'a str>,
    latitude: Option<f32>,
    longitude: Option<f32>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [v4, v6, out, subnets] = args.as_slice() else {
        return Err("usage: bench_city_db V4.mmdb V6.mmdb OUT.mmdb SUBNETS.txt".into());
    };
    let countries = CountryTable::shipped();
    let build_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut db = empty_database("GeoIP2-City".into(), build_epoch);
    let mut interned = HashMap::new();
    // Per country: every v4 network that holds at least a /24, as (first /24, lat, lon).
    let mut candidates: HashMap<String, Vec<(u32, f64, f64)>> = HashMap::new();
    let (mut networks, mut skipped) = (0u64, 0u64);
    for (path, is_v4) in [(v4, true), (v6, false)] {
        let reader = Reader::open_readfile(path)?;
        for item in reader.networks(WithinOptions::default())? {
            let lookup = item?;
            let Some(record) = lookup.decode::<FlatRecord>()? else {
                continue;
            };
            let (Some(cc), Some(lat), Some(lon)) = (
                record.country_code,
                record.latitude.map(f64::from),
                record.longitude.map(f64::from),
            ) else {
                skipped += 1;
                continue;
            };
            let Some(country) = countries.get(cc) else {
                skipped += 1;
                continue;
            };
            let continent = String::from_utf8_lossy(&country.continent).into_owned();
            let network = lookup.network()?;
            let (addr, len) = (network.ip(), network.prefix());
            let path = match (addr, is_v4) {
                (IpAddr::V4(a), true) => {
                    IpAddrWithMask::new(IpAddr::V6(a.to_ipv6_compatible()), 96 + len)
                }
                (IpAddr::V6(a), false) if !is_ipv4_alias(a) => IpAddrWithMask::new(addr, len),
                _ => {
                    skipped += 1;
                    continue;
                }
            };
            let key = (cc.to_string(), lat.to_bits(), lon.to_bits());
            let data = match interned.get(&key) {
                Some(data) => *data,
                None => {
                    let data = db.insert_value(NestedRecord::city(
                        &continent,
                        cc,
                        Some((lat, lon)),
                        None,
                    ))?;
                    interned.insert(key, data);
                    data
                }
            };
            db.insert_node(path, data);
            networks += 1;
            if let IpAddr::V4(a) = addr
                && len <= 24
            {
                candidates
                    .entry(cc.to_string())
                    .or_default()
                    .push((u32::from(a), lat, lon));
            }
        }
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    db.write_to(&mut file)?;
    file.flush()?;
    let mut sample = std::io::BufWriter::new(std::fs::File::create(subnets)?);
    let mut codes: Vec<&String> = candidates.keys().collect();
    codes.sort();
    let mut sampled = 0;
    for cc in &codes {
        let list = &candidates[*cc];
        let step = (list.len() / PER_COUNTRY).max(1);
        for &(first, lat, lon) in list.iter().step_by(step).take(PER_COUNTRY) {
            let a = std::net::Ipv4Addr::from(first & 0xFFFF_FF00);
            writeln!(sample, "{a}/24 {cc} {lat} {lon}")?;
            sampled += 1;
        }
    }
    sample.flush()?;
    eprintln!(
        "{networks} networks, {} distinct locations, {skipped} skipped; sampled {sampled} /24s in {} countries",
        interned.len(),
        codes.len()
    );
    Ok(())
}

/// IPv6 ranges that alias IPv4 space (the IPv4-compatible and -mapped prefixes, 6to4):
/// the IPv4 file is authoritative there.
fn is_ipv4_alias(a: Ipv6Addr) -> bool {
    let s = a.segments();
    (s[0..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff)) || s[0] == 0x2002
}
