//! Nanoseconds per `GeoDb::locate` (the per-query GeoIP work) over the load benchmark's
//! sampled /24s against its city database: `locate_bench [DB] [SUBNETS]`.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

use std::net::IpAddr;
use std::time::Instant;

use geosteer::geo::GeoDb;

fn main() {
    let mut args = std::env::args().skip(1);
    let db = args
        .next()
        .unwrap_or_else(|| "target/bench-data/city.mmdb".into());
    let subnets = args
        .next()
        .unwrap_or_else(|| "target/bench-data/subnets.txt".into());
    let geo = GeoDb::open(db.as_ref()).expect("the database opens");
    let text = std::fs::read_to_string(&subnets).expect("the subnet sample");
    let clients: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| l.split(['/', ' ']).next()?.parse().ok())
        .collect();
    let mut located = 0usize;
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        for &ip in &clients {
            located += usize::from(geo.locate(ip).place.is_some());
        }
    }
    let per = started.elapsed().as_nanos() as f64 / (rounds * clients.len()) as f64;
    println!(
        "locate: {per:.0} ns per lookup over {} clients x {rounds} ({located} located)",
        clients.len()
    );
}
