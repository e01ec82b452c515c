//! Nanoseconds per steered UDP response (parse, locate, select, encode: everything between
//! the two system calls) over the load benchmark's ECS stream, in process:
//! `respond_bench [ZONES] [DB] [STREAM]`.
//!
//! Two loops: warm (queries back to back, the tables' hot parts stay cached) and swept (a
//! read over `SWEEP_MIB` MiB of other memory before each query, as the kernel's work between
//! two datagrams evicts the tables in the server), which is what a query costs in the server.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use geosteer::dns::{ServeOptions, Transport, respond};

fn main() {
    let mut args = std::env::args().skip(1);
    let zones: PathBuf = args.next().unwrap_or_else(|| "zones".into()).into();
    let db: PathBuf = args
        .next()
        .unwrap_or_else(|| "target/bench-data/city.mmdb".into())
        .into();
    let stream = args
        .next()
        .unwrap_or_else(|| "target/bench-data/stream-ecs.bin".into());
    let sweep_mib: usize = std::env::var("SWEEP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let sources = geosteer::loader::Sources {
        zones,
        geo: vec![db],
        asn: None,
    };
    let (_, snapshot) = geosteer::service::load(&sources).expect("zones and database load");
    let bytes = std::fs::read(&stream).expect("the query stream (run tests/bench/load.sh once)");
    // dnsperf's binary input: a 2-byte big-endian length, then the message.
    let mut queries = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        let Some(query) = bytes.get(at + 2..at + 2 + len) else {
            break;
        };
        queries.push(query.to_vec());
        at += 2 + len;
    }
    let src = SocketAddr::from((Ipv4Addr::LOCALHOST, 5300));
    let options = ServeOptions::default();
    let mut out = Vec::with_capacity(4096);
    let mut sweep = vec![1u64; sweep_mib * 1024 * 1024 / 8];
    let mut answered = 0usize;
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for query in &queries {
            answered += usize::from(
                respond(&snapshot, query, src, Transport::Udp, &options, &mut out).is_some(),
            );
        }
    }
    let warm = started.elapsed().as_nanos() as f64 / (rounds * queries.len()) as f64;
    let mut sweep_ns = 0u128;
    let mut total_ns = 0u128;
    let mut sink = 0u64;
    for query in &queries {
        let swept = Instant::now();
        for (i, word) in sweep.iter_mut().enumerate().step_by(8) {
            *word = word.wrapping_add(i as u64);
            sink ^= *word;
        }
        let started = Instant::now();
        sweep_ns += (started - swept).as_nanos();
        answered += usize::from(
            respond(&snapshot, query, src, Transport::Udp, &options, &mut out).is_some(),
        );
        total_ns += started.elapsed().as_nanos();
    }
    let swept = total_ns as f64 / queries.len() as f64;
    println!(
        "respond: {} queries x {rounds}: warm {warm:.0} ns/query; after a {sweep_mib} MiB sweep {swept:.0} ns/query ({answered} answered, sweep {:.0} ns, {sink:x})",
        queries.len(),
        sweep_ns as f64 / queries.len() as f64,
        sink = sink & 0xf
    );
}
