//! DNS latency while the status page's work is hammered. Run with `benches/admin_load.sh`.
//!
//! The shipped example on the shipped country database, release build, rate limiting off
//! (one source address). A client asks `ingest.live.example.net` A with ECS in a closed
//! loop for 10 s with the admin interface idle, then for 10 s while four clients ask
//! `/what-if` with ever different nodes taken out as fast as they are answered (each is
//! a walk of the whole database; one runs at a time, the rest get 429). Latencies are
//! compared as ratios within one run.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use geosteer_harness::nodes::http;
use geosteer_harness::*;
use hickory_proto::rr::RecordType;

const SECONDS: u64 = 10;

/// Closed-loop DNS latencies (µs) for `SECONDS`.
fn dns_latencies(server: &Server) -> Vec<u64> {
    let socket = std::net::UdpSocket::bind("127.1.0.5:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let query = q("ingest.live.example.net.", RecordType::A)
        .ecs("85.214.0.0", 24)
        .bytes();
    let mut buf = [0u8; 1500];
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(SECONDS);
    while Instant::now() < until {
        let sent = Instant::now();
        socket.send_to(&query, server.addr).expect("send");
        if socket.recv_from(&mut buf).is_ok() {
            out.push(sent.elapsed().as_micros() as u64);
        }
    }
    out
}

fn report(label: &str, mut samples: Vec<u64>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize] as f64;
    let (p50, p99) = (at(0.5), at(0.99));
    println!(
        "{label:<40} n={:<7} p50 {p50:>6.0} µs  p99 {p99:>6.0} µs  max {:>7.0} µs",
        samples.len(),
        at(1.0)
    );
    (p50, p99)
}

fn main() {
    let server = Server::start(
        &repo("zones"),
        &repo("geo/dbip-country.mmdb"),
        &["--rrl-rate", "0"],
    );
    let idle = report("DNS, admin idle", dns_latencies(&server));
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, busy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let nodes = [
        "us-west-1",
        "us-east-1",
        "dallas-b",
        "sao-paulo-1",
        "london-1",
        "frankfurt-1",
        "amsterdam-b",
        "dubai-1",
        "riyadh-1",
        "johannesburg-1",
        "mumbai-1",
        "singapore-1",
    ];
    let hammers: Vec<_> = (0..4)
        .map(|h| {
            let (stop, answered, busy) = (stop.clone(), answered.clone(), busy.clone());
            let admin = server.admin;
            std::thread::spawn(move || {
                let mut i = h;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!(
                        "/what-if?drain={},{}&down={}",
                        nodes[i % 12],
                        nodes[(i / 12) % 12],
                        nodes[(i / 144) % 12]
                    );
                    match http(admin, "GET", &path, None).0 {
                        200 => answered.fetch_add(1, Ordering::Relaxed),
                        _ => busy.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 4;
                }
            })
        })
        .collect();
    let loaded = report("DNS, what-if hammered (4 clients)", dns_latencies(&server));
    stop.store(true, Ordering::Relaxed);
    for hammer in hammers {
        let _ = hammer.join();
    }
    println!(
        "what-ifs in {SECONDS} s: {} answered, {} told to retry (429)",
        answered.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed)
    );
    println!(
        "hammered / idle: p50 {:.2}x, p99 {:.2}x",
        loaded.0 / idle.0,
        loaded.1 / idle.1
    );
}
