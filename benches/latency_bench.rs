//! Latency scoring at scale. Run with `tests/bench/latency.sh` (see tests/bench/README.md).
//!
//! Part 1, in process: the time to rank and build every answer table for 200 nodes against
//! every place of the shipped country database, with and without 10,000 measured prefix
//! groups (each with three node measurements), and the time of a health-only rebuild.
//!
//! Part 2, the real server: dnsperf's saturating rate for the steered name, alone and while
//! latency feed batches (10 measurements each) arrive at 100 batches a second.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

#[path = "support/dnsperf.rs"]
mod dnsperf;
#[path = "support/feed.rs"]
mod feed;
#[path = "support/fleet.rs"]
mod fleet;

use geosteer::random::XorShift;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use geosteer::answer::build;
use geosteer::geo::GeoDb;
use geosteer::latency::{ClientGroup, Measurement, ZoneLatency};
use geosteer::net::Prefix;
use geosteer::policy::parse_zone;
use geosteer::steer::{DampingState, policy_availability, rank_all};
use geosteer_harness::*;

const NODES: usize = 200;

/// dnsperf saturates from one address: response-rate limiting, on by default, would
/// measure itself instead of the server.
const NO_RRL: &[&str] = &["--rrl-rate", "0"];

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn rebuild_times(text: &str, rng: &mut XorShift) {
    let zone =
        parse_zone(std::path::Path::new("scale.yaml"), text, 1).expect("generated policy is valid");
    let zones = vec![zone];
    let geo = Arc::new(GeoDb::open(&repo("geo/dbip-country.mmdb")).expect("shipped database"));
    let availability = policy_availability(&zones);
    let now = SystemTime::now();
    let mut measured = ZoneLatency::default();
    for _ in 0..10_000 {
        let prefix: Prefix = format!(
            "{}/24",
            Ipv4Addr::from((rng.next_u64() as u32) & 0xffff_ff00)
        )
        .parse()
        .expect("a /24");
        for _ in 0..3 {
            let node = rng.below(NODES as u64) as usize;
            let m = Measurement {
                rtt_ms: 5.0 + rng.below(300) as f64,
                loss: 0.0,
                at: now,
            };
            measured
                .measurements
                .record(node, ClientGroup::Prefix(prefix), m);
        }
    }
    let groups = measured.group_columns().len();
    let time = |latency: &[ZoneLatency]| {
        let mut samples = Vec::new();
        let mut damping = DampingState::new();
        for _ in 0..5 {
            let started = Instant::now();
            let rankings = rank_all(&zones, &geo, latency, &mut damping, now);
            let ranked = started.elapsed();
            let snapshot = build(&zones, Arc::clone(&geo), &rankings, &availability);
            samples.push((ranked, started.elapsed(), snapshot.zones.len()));
        }
        let rank = median(samples.iter().map(|s| s.0).collect());
        let total = median(samples.iter().map(|s| s.1).collect());
        (rank, total)
    };
    let (rank_plain, total_plain) = time(&[]);
    let (rank_groups, total_groups) = time(std::slice::from_ref(&measured));
    let rankings = rank_all(
        &zones,
        &geo,
        std::slice::from_ref(&measured),
        &mut DampingState::new(),
        now,
    );
    let mut health = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let _ = build(&zones, Arc::clone(&geo), &rankings, &availability);
        health.push(started.elapsed());
    }
    println!(
        "answer tables, {NODES} nodes x {} places of the country database (median of 5):",
        geo.places().len()
    );
    println!(
        "  rank + build, no measurements:             {:>8.1} ms (rank {:.1} ms)",
        ms(total_plain),
        ms(rank_plain)
    );
    println!(
        "  rank + build, {groups} measured prefix groups: {:>8.1} ms (rank {:.1} ms)",
        ms(total_groups),
        ms(rank_groups)
    );
    println!(
        "  health-only rebuild (pick from rankings):  {:>8.1} ms",
        ms(median(health))
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn throughput_under_feeds(text: &str) {
    let dir = zone_dir("bench-latency", text);
    let server = Server::start(&dir, &repo("geo/dbip-country.mmdb"), NO_RRL);
    let queries = dir.join("queries.txt");
    std::fs::write(&queries, "ingest.scale.example A\n").expect("write dnsperf input");
    let quiet = dnsperf::dnsperf(&server, &queries, 10);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let admin = server.admin;
    let feeder = std::thread::spawn(move || {
        let countries = [
            "AS-JP", "AS-SG", "EU-DE", "EU-GB", "NA-US", "SA-BR", "AF-ZA", "AS-IN", "OC-AU",
            "AS-TH",
        ];
        let limit = Duration::from_secs(30);
        let (batches, rejected, ran) =
            feed::feed_latency(admin, &countries, NODES, 100, &flag, limit);
        (batches as f64 / ran.as_secs_f64(), rejected)
    });
    let fed = dnsperf::dnsperf(&server, &queries, 10);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (rate, rejected) = feeder.join().unwrap_or((0.0, 0));
    println!("query throughput, dnsperf 10 s, 4 clients, 200 in flight:");
    match (quiet, fed) {
        (Some(q), Some(f)) => {
            println!("  no feed:                       {q:>9.0} queries/s");
            println!(
                "  {rate:>5.0} feed batches/s ({rejected} rejected): {f:>9.0} queries/s ({:+.1} %)",
                (f / q - 1.0) * 100.0
            );
        }
        _ => println!("  dnsperf not available: install it (apt-get install dnsperf)"),
    }
}

fn main() {
    let mut rng = XorShift::new(0x2545_f491_4f6c_dd1d);
    let text = fleet::scale_zone(&mut rng, NODES, 1);
    rebuild_times(&text, &mut rng);
    throughput_under_feeds(&text);
}
