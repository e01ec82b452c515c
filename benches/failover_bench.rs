//! Failover as an operator feels it, and what the swap costs the query path.
//! Run with `tests/bench/failover.sh` (see tests/bench/README.md).
//!
//! Part 1, failover: three real TCP listeners as nodes, the default check settings, a query
//! every 10 ms from a client whose nearest node is Tokyo. Each trial waits for a steady state,
//! waits a random 0–1 s (so the kill lands at a random point of the probe cycle), kills Tokyo
//! (the listener closes: connections refused) or makes it vanish (the socket stays open but
//! nobody accepts and the accept queue is full: connections time out), measures how long until
//! the first answer without it, restarts it after a random 1–2 s, and measures how long until
//! the first answer with it again. Every failed, timed-out, SERVFAIL or empty response is
//! counted. The same trials run twice in one run: against one instance alone, and against
//! one instance of a fleet of three sharing verdicts through a three-member etcd (the
//! zone's default `majority` quorum), so the two can be compared as a ratio.
//!
//! Part 2, swap cost: dnsperf's saturating query rate against a zone of 1,000 checked nodes,
//! with and without a storm of availability changes (random nodes forced down and back through
//! the admin interface, 200 changes a second), each change rebuilding and swapping every
//! answer table.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

#[path = "support/dnsperf.rs"]
mod dnsperf;

use geosteer::random::XorShift;
use std::time::{Duration, Instant};

use geosteer_harness::etcd::EtcdCluster;
use geosteer_harness::nodes::{Behaviour, FakeNode, http};
use geosteer_harness::*;

/// dnsperf saturates from one address: response-rate limiting, on by default, would
/// measure itself instead of the server.
const NO_RRL: &[&str] = &["--rrl-rate", "0"];

fn stats(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if samples.is_empty() {
        println!("{label:<44} no samples");
        return;
    }
    println!(
        "{label:<44} n={:<3} min {:>6.0} ms  median {:>6.0} ms  max {:>6.0} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}

fn failover(trials: usize, rng: &mut XorShift, fleet: bool) {
    let mut tokyo = FakeNode::start("127.0.0.101", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.102", Behaviour::Tcp);
    let sydney = FakeNode::start("127.0.0.103", Behaviour::Tcp);
    let mut policy = String::from(
        "zone: bench.example\nsoa: {primary: ns1.bench.example., contact: h.bench.example.}\nns: [ns1.bench.example.]\n\
         check: {type: tcp}\nnodes:\n",
    );
    for (name, geo, (lat, lon), node) in [
        ("tokyo", "AS-JP", (35.68, 139.69), &tokyo),
        ("singapore", "AS-SG", (1.35, 103.82), &singapore),
        ("sydney", "OC-AU", (-33.87, 151.21), &sydney),
    ] {
        policy += &format!(
            "  {name}: {{geo: {geo}, location: [{lat}, {lon}], addresses: [{}], check: {{port: {}}}}}\n",
            node.addr.ip(),
            node.addr.port()
        );
    }
    policy += "steer:\n  ingest: {answers: 1}\n";
    let zones = zone_dir("bench-failover", &policy);
    let geo = repo("tests/fixtures/geo-city.mmdb");
    // In fleet mode: three instances and a three-member etcd; instance 0 is measured.
    let etcd = fleet.then(|| {
        EtcdCluster::start(
            &std::env::temp_dir().join(format!("geosteer-failover-etcd-{}", std::process::id())),
            3,
        )
    });
    let servers: Vec<Server> = match &etcd {
        Some(etcd) => (0..3)
            .map(|i| {
                let identity = format!("gs{i}");
                let endpoints = etcd.endpoints();
                Server::start(
                    &zones,
                    &geo,
                    &[
                        "--fleet",
                        &endpoints,
                        "--fleet-prefix",
                        "/failover",
                        "--identity",
                        &identity,
                    ],
                )
            })
            .collect(),
        None => vec![Server::start(&zones, &geo, &[])],
    };
    let server = &servers[0];
    let tokyo_ip = tokyo.addr.ip().to_string();
    // Bounded: each trial takes a few seconds; the stream stops by itself after 30 minutes.
    let stream = QueryLoop::start_for(
        server.addr,
        from("127.1.0.5"),
        "ingest.bench.example.",
        Duration::from_secs(1800),
    );
    let (mut refused, mut vanished, mut back) = (Vec::new(), Vec::new(), Vec::new());
    let mut missed = 0;
    for trial in 0..trials * 2 {
        let vanish = trial % 2 == 1;
        wait_healthy(server, &["tokyo", "singapore", "sydney"]);
        let steady = Instant::now();
        if stream
            .first(
                steady,
                Duration::from_secs(5),
                |s| matches!(s, Seen::Answer(a) if a == std::slice::from_ref(&tokyo_ip)),
            )
            .is_none()
        {
            missed += 1;
            continue;
        }
        std::thread::sleep(Duration::from_secs_f64(rng.unit()));
        let killed = Instant::now();
        if vanish {
            tokyo.vanish();
        } else {
            tokyo.stop();
        }
        match stream.first(
            killed,
            Duration::from_secs(10),
            |s| matches!(s, Seen::Answer(a) if !a.contains(&tokyo_ip)),
        ) {
            Some(t) => (if vanish { &mut vanished } else { &mut refused })
                .push(t.saturating_duration_since(killed)),
            None => missed += 1,
        }
        std::thread::sleep(Duration::from_secs_f64(1.0 + rng.unit()));
        let restarted = Instant::now();
        tokyo.restart();
        match stream.first(
            restarted,
            Duration::from_secs(10),
            |s| matches!(s, Seen::Answer(a) if a.contains(&tokyo_ip)),
        ) {
            Some(t) => back.push(t.saturating_duration_since(restarted)),
            None => missed += 1,
        }
    }
    let log = stream.finish();
    let failed = log
        .iter()
        .filter(|(_, s)| !matches!(s, Seen::Answer(a) if !a.is_empty()))
        .count();
    println!(
        "failover at the default check settings (interval 500ms, recheck 50ms, fall 3, rise 2, timeout 1s), {}:",
        if fleet {
            "one instance of a fleet of 3 (etcd, majority quorum)"
        } else {
            "one instance alone"
        }
    );
    stats(
        "  killed (refused) -> first answer without it",
        &mut refused,
    );
    stats(
        "  vanished (timeouts) -> first answer without it",
        &mut vanished,
    );
    stats("  restarted -> first answer with it again", &mut back);
    println!(
        "  queries: {}  failed/timed out/SERVFAIL/empty: {failed}  trials without a measurement: {missed}",
        log.len()
    );
}

/// Runs dnsperf while a thread sends admin requests every 5 ms: changes (`force-down` and
/// `obey` alternating on random nodes) or no-ops (`obey` only). Returns (queries/s, requests/s).
fn with_admin_traffic(
    server: &Server,
    queries: &std::path::Path,
    rng: &mut XorShift,
    change: bool,
) -> (Option<f64>, f64) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let admin = server.admin;
    let seed = (rng.unit() * 1e9) as u64 | 1;
    let traffic = std::thread::spawn(move || {
        let mut rng = XorShift::new(seed);
        let mut requests = 0u64;
        let started = Instant::now();
        while !flag.load(std::sync::atomic::Ordering::Relaxed)
            && started.elapsed() < Duration::from_secs(30)
        {
            let node = (rng.unit() * 1000.0) as u32;
            let action = if change && rng.unit() < 0.5 {
                "force-down"
            } else {
                "obey"
            };
            http(
                admin,
                "POST",
                &format!("/nodes/storm.example/n{node}/{action}"),
                None,
            );
            requests += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        requests as f64 / started.elapsed().as_secs_f64()
    });
    let qps = dnsperf::dnsperf(server, queries, 10);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (qps, traffic.join().unwrap_or(0.0))
}

fn swap_cost(rng: &mut XorShift) {
    let target = FakeNode::start("127.0.0.110", Behaviour::Tcp);
    let mut policy = format!(
        "zone: storm.example\nsoa: {{primary: ns1.storm.example., contact: h.storm.example.}}\nns: [ns1.storm.example.]\n\
         check: {{type: tcp, address: {}, port: {}}}\nnodes:\n",
        target.addr.ip(),
        target.addr.port()
    );
    for i in 0..1000u32 {
        let lat = -60.0 + f64::from(i % 120);
        let lon = -180.0 + f64::from((i * 7) % 360);
        policy += &format!(
            "  n{i}: {{geo: AS-JP, location: [{lat}, {lon}], addresses: [198.51.{}.{}]}}\n",
            i / 250,
            i % 250 + 1
        );
    }
    policy += "steer:\n  ingest: {answers: 2}\n";
    let dir = zone_dir("bench-storm", &policy);
    let server = Server::start(&dir, &repo("geo/dbip-country.mmdb"), NO_RRL);
    let queries = dir.join("queries.txt");
    std::fs::write(&queries, "ingest.storm.example A\n").expect("write dnsperf input");
    let calm = dnsperf::dnsperf(&server, &queries, 10);
    // The same admin traffic twice: `obey` on nodes that already obey changes nothing (the
    // cost of the requests alone); alternating `force-down`/`obey` rebuilds and swaps.
    let (noisy, noise_rate) = with_admin_traffic(&server, &queries, rng, false);
    let (stormy, rate) = with_admin_traffic(&server, &queries, rng, true);
    let (_, metrics) = http(server.admin, "GET", "/metrics", None);
    let metric = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let (sum, count) = (
        metric("geosteer_answer_rebuild_seconds_sum"),
        metric("geosteer_answer_rebuild_seconds_count"),
    );
    println!(
        "swap cost, 1,000 checked nodes (2,000 probes/s), dnsperf 10 s, 4 clients, 200 in flight:"
    );
    match (calm, noisy, stormy) {
        (Some(c), Some(n), Some(s)) => {
            println!("  no admin traffic:                              {c:>9.0} queries/s");
            println!(
                "  {noise_rate:>5.0} admin requests/s, no state change:    {n:>9.0} queries/s ({:+.1} %)",
                (n / c - 1.0) * 100.0
            );
            println!(
                "  {rate:>5.0} admin requests/s, each a change:       {s:>9.0} queries/s ({:+.1} % vs the same requests without changes)",
                (s / n - 1.0) * 100.0
            );
        }
        _ => println!("  dnsperf not available: install it (apt-get install dnsperf)"),
    }
    if let (Some(sum), Some(count)) = (sum, count) {
        println!(
            "  rebuilds published: {count:.0}, mean rebuild {:.2} ms",
            sum / count.max(1.0) * 1e3
        );
    }
}

fn main() {
    let trials = std::env::var("TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = XorShift::new(seed);
    failover(trials, &mut rng, false);
    failover(trials, &mut rng, true);
    swap_cost(&mut rng);
}
