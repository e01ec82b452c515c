//! Answer-table rebuilds at scale: 200 nodes (or `NODES`) against a full city database. Run with
//! `benches/rebuild.sh` (see benches/README.md).
//!
//! Part 1, in process: rank + build (what a policy load or a latency change costs) and
//! build alone (what a health change costs), median of 3, and the process's peak RSS.
//! Part 2, the real server: 40 (`SERVER_CHANGES`) availability changes through the admin interface, each
//! answered only once published; then the server's own `geosteer_change_publish_seconds`
//! (change seen → tables published) and `geosteer_answer_rebuild_seconds`.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

#[path = "support/feed.rs"]
mod feed;
#[path = "support/fleet.rs"]
mod fleet;

use geosteer::random::XorShift;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use geosteer::answer::{Before, build};
use geosteer::geo::GeoDb;
use geosteer::steer::{DampingState, policy_availability, rank_all};

use geosteer::policy::parse_zone;
use geosteer_harness::nodes::http;
use geosteer_harness::*;

/// Fleet size: 200 (the target's), or `NODES` from the environment.
fn node_count() -> usize {
    std::env::var("NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// Steered names: 1, or `NAMES` from the environment (each over its own half of the nodes).
fn name_count() -> usize {
    std::env::var("NAMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Nodes forced down before the server's changes: none, or `DOWN` from the environment.
fn down_count() -> usize {
    std::env::var("DOWN")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Cells of the first zone's steered names whose class's start cannot decide.
fn cells_answered_one_by_one(snapshot: &geosteer::answer::Snapshot) -> usize {
    snapshot.zones[0]
        .names
        .values()
        .map(|n| match n {
            geosteer::answer::NameNode::Steered(t) => t
                .table
                .iter()
                .flat_map(|row| row.iter())
                .filter(|&c| t.class_answer[c as usize] == geosteer::answer::CLASS_SPLIT)
                .count(),
            _ => 0,
        })
        .sum()
}

fn main() {
    let geo_path = std::env::args()
        .nth(1)
        .map_or_else(|| repo("target/bench-data/city.mmdb"), Into::into);
    let mut rng = XorShift::new(0x5eed);
    let nodes = node_count();
    let text = fleet::scale_zone(&mut rng, nodes, name_count());
    if std::env::var("SIGNED").is_ok_and(|v| v == "1") {
        signed_against_unsigned(&text, &geo_path, nodes);
        return;
    }
    let zones =
        vec![parse_zone(std::path::Path::new("scale.yaml"), &text, 1).expect("generated policy")];
    let started = Instant::now();
    let geo = Arc::new(GeoDb::open(&geo_path).expect("the database opens"));
    let load = started.elapsed();
    // Worked out once per database, on the first ranking; kept for every later one.
    let started = Instant::now();
    let _ = (geo.sorted_positions(), geo.regions());
    let place_index = started.elapsed();
    let availability = policy_availability(&zones);
    let now = SystemTime::now();
    let (mut full, mut health, mut outage) = (Vec::new(), Vec::new(), Vec::new());
    let mut damping = DampingState::new();
    // A regional outage: the 10 nodes nearest Frankfurt down at once, which leaves the
    // rankings' starts short across Europe and is answered cell by cell.
    let frankfurt = geosteer::geo::Coordinates::new(50.1, 8.7).expect("in range");
    let mut by_distance: Vec<usize> = (0..zones[0].nodes.len()).collect();
    by_distance.sort_by(|&a, &b| {
        let d = |i: usize| zones[0].nodes[i].location.distance_km(&frankfurt);
        d(a).total_cmp(&d(b))
    });
    let mut region_down = availability.clone();
    for &id in by_distance.iter().take(10) {
        region_down[0][id] = geosteer::steer::Availability::HealthDown;
    }
    // A scattered outage: 4 nodes in 10, at random (where the server part below ends up).
    let mut scattered_down = availability.clone();
    let mut scattered = 0;
    while scattered < nodes * 2 / 5 {
        let id = rng.below(nodes as u64) as usize;
        if scattered_down[0][id] != geosteer::steer::Availability::HealthDown {
            scattered_down[0][id] = geosteer::steer::Availability::HealthDown;
            scattered += 1;
        }
    }
    let part = std::env::var("PART").unwrap_or_default();
    if part == "changes" {
        changes_in_process(&zones, &geo, &availability, &mut rng);
        return;
    }
    if part == "measured" {
        measured_ranking(&zones, &geo, nodes, &mut rng, &mut damping, now);
        return;
    }
    if part == "server" {
        server_parts(&text, &geo_path, nodes, &mut rng);
        return;
    }
    let mut scattered_builds = Vec::new();
    let (mut split_cells, mut scattered_cells) = (0, 0);
    for _ in 0..3 {
        let started = Instant::now();
        let rankings = rank_all(&zones, &geo, &[], &mut damping, now);
        let snapshot = build(&zones, Arc::clone(&geo), &rankings, &availability);
        full.push(started.elapsed());
        drop(snapshot);
        let started = Instant::now();
        let snapshot = build(&zones, Arc::clone(&geo), &rankings, &availability);
        health.push(started.elapsed());
        drop(snapshot);
        let started = Instant::now();
        let snapshot = build(&zones, Arc::clone(&geo), &rankings, &region_down);
        outage.push(started.elapsed());
        split_cells = cells_answered_one_by_one(&snapshot);
        drop(snapshot);
        let started = Instant::now();
        let snapshot = build(&zones, Arc::clone(&geo), &rankings, &scattered_down);
        scattered_builds.push(started.elapsed());
        scattered_cells = cells_answered_one_by_one(&snapshot);
        drop(snapshot);
    }
    println!(
        "answer tables, {nodes} nodes x {} places of {} (load {:.0} ms):",
        geo.places().len(),
        geo_path.display(),
        ms(load)
    );
    println!(
        "  place index (positions in Morton order, regions; once per database): {:.1} ms",
        ms(place_index)
    );
    println!(
        "  rank + build (policy load, latency change): {:>8.1} ms   target <= 100 ms",
        ms(median(full))
    );
    println!(
        "  build from rankings (a health change):      {:>8.1} ms",
        ms(median(health))
    );
    println!(
        "  build with the 10 nodes nearest Frankfurt down: {:>8.1} ms   ({split_cells} cells answered one by one)",
        ms(median(outage))
    );
    println!(
        "  build with {scattered} nodes down at random: {:>8.1} ms   ({scattered_cells} cells answered one by one)",
        ms(median(scattered_builds))
    );
    let measured = measured_latency(nodes, &mut rng, now);
    let mut measured_builds = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let rankings = rank_all(
            &zones,
            &geo,
            std::slice::from_ref(&measured),
            &mut damping,
            now,
        );
        let snapshot = build(&zones, Arc::clone(&geo), &rankings, &availability);
        measured_builds.push(started.elapsed());
        drop(snapshot);
    }
    println!(
        "  rank + build, every node measured from 7 countries: {:>8.1} ms",
        ms(median(measured_builds))
    );
    println!("  peak RSS of this process: {:.0} MiB", peak_rss_mib());

    server_parts(&text, &geo_path, nodes, &mut rng);
}

/// A feed's worth of measurements: every node measured from seven countries.
fn measured_latency(
    nodes: usize,
    rng: &mut XorShift,
    now: SystemTime,
) -> geosteer::latency::ZoneLatency {
    let mut measured = geosteer::latency::ZoneLatency::default();
    for (continent, country) in [
        (*b"AS", *b"JP"),
        (*b"EU", *b"DE"),
        (*b"EU", *b"GB"),
        (*b"NA", *b"US"),
        (*b"SA", *b"BR"),
        (*b"AS", *b"IN"),
        (*b"OC", *b"AU"),
    ] {
        for node in 0..nodes {
            let group = geosteer::latency::ClientGroup::Geo(geosteer::geo::GeoCode {
                continent,
                country: Some(country),
                subdivision: None,
            });
            let m = geosteer::latency::Measurement {
                rtt_ms: 5.0 + rng.below(300) as f64,
                loss: 0.0,
                at: now,
            };
            measured.measurements.record(node, group, m);
        }
    }
    measured
}

/// `PART=measured`: ranking every name with a feed's worth of measurements, alone (time and
/// peak memory of this process; run under heaptrack to see where it goes).
fn measured_ranking(
    zones: &[geosteer::policy::Zone],
    geo: &GeoDb,
    nodes: usize,
    rng: &mut XorShift,
    damping: &mut DampingState,
    now: SystemTime,
) {
    let plain = Instant::now();
    let rankings = rank_all(zones, geo, &[], damping, now);
    let plain = plain.elapsed();
    let plain_rss = peak_rss_mib();
    drop(rankings);
    let measured = measured_latency(nodes, rng, now);
    let started = Instant::now();
    let rankings = rank_all(zones, geo, std::slice::from_ref(&measured), damping, now);
    println!(
        "{} names: ranked without measurements in {:.0} ms (peak RSS {plain_rss:.0} MiB), with a feed's in {:.0} ms (peak RSS {:.0} MiB)",
        name_count(),
        ms(plain),
        ms(started.elapsed()),
        peak_rss_mib()
    );
    drop(rankings);
}

/// The server's changes, alone and under a latency feed (`PART=server` runs only these).
fn server_parts(text: &str, geo_path: &std::path::Path, nodes: usize, rng: &mut XorShift) {
    let dir = zone_dir("rebuild-bench", text);
    server_changes(&dir, geo_path, nodes, rng, false);
    server_changes(&dir, geo_path, nodes, rng, true);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `PART=changes`: the server's changes in process, without the admin round trip: the
/// last `DOWN` nodes down, then 20 times a node down and the same node back, each built from
/// the build before (and the one before it, which the node back takes back) as the
/// publisher builds; the times of each kind.
fn changes_in_process(
    zones: &[geosteer::policy::Zone],
    geo: &Arc<GeoDb>,
    availability: &[Vec<geosteer::steer::Availability>],
    rng: &mut XorShift,
) {
    use geosteer::steer::Availability;
    let nodes = zones[0].nodes.len();
    // `MEASURED=1`: ranked with a feed's measurements (as under a latency feed).
    let now = SystemTime::now();
    let measured = (std::env::var("MEASURED").is_ok_and(|v| v == "1"))
        .then(|| measured_latency(nodes, rng, now));
    let rankings = rank_all(
        zones,
        geo,
        measured.as_slice(),
        &mut DampingState::new(),
        now,
    );
    let mut states = availability.to_vec();
    let down = down_count().min(nodes.saturating_sub(1));
    let mut previous = build(zones, Arc::clone(geo), &rankings, &states);
    // Down one by one, each built from the build before, as the server's set-up goes.
    for node in nodes - down..nodes {
        states[0][node] = Availability::AdminDown;
        let before = Before {
            last: Some(&previous),
            ..Before::default()
        };
        previous = geosteer::answer::rebuild(zones, Arc::clone(geo), &rankings, &states, before);
    }
    if std::env::var("STATS").is_ok() {
        table_stats(&previous);
    }
    let (mut downs, mut ups) = (Vec::new(), Vec::new());
    let changes: usize = (std::env::var("CHANGES").ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    // `AHEAD=0`: without what the publisher ranks ahead between changes (untimed here);
    // `AHEAD=2`: ranked ahead but not used (what ranking it does to the caches alone).
    let ahead_on = std::env::var("AHEAD").map_or(true, |v| v != "0");
    let ahead_unused = std::env::var("AHEAD").is_ok_and(|v| v == "2");
    let mut ahead = None;
    // `UNDONE=0`: without the build before last, so a node back is built as a change of its
    // own rather than taken back (what a node back costs after other changes).
    let undone_on = std::env::var("UNDONE").map_or(true, |v| v != "0");
    let mut undone = None;
    let mut ahead_undone = None;
    for _ in 0..changes {
        // `NODE`: that node every time, to profile one change's cost.
        let node = (std::env::var("NODE").ok().and_then(|n| n.parse().ok()))
            .unwrap_or_else(|| rng.below((nodes - down) as u64) as usize);
        for (state, times) in [
            (Availability::AdminDown, &mut downs),
            (Availability::Up, &mut ups),
        ] {
            let ranking_ahead = Instant::now();
            // From what was ranked ahead of the last two builds, as the publisher does (a
            // node back takes the tables of the build before last back).
            let ranked: Vec<&geosteer::answer::Ahead> = ahead
                .iter()
                .chain(ahead_undone.iter().filter(|_| undone_on))
                .collect();
            let from = (&previous, &ranked[..]);
            let next =
                ahead_on.then(|| geosteer::answer::rank_ahead_of(zones, &rankings, &states, from));
            ahead_undone = std::mem::replace(&mut ahead, next);
            let ahead_ms = ms(ranking_ahead.elapsed());
            states[0][node] = state;
            // `GAP_MS`: idle that long before each change, as the server is between changes
            // (caches and idle cores go cold: a node down 3.0 → 4.2 ms at 150 ms here).
            if let Some(gap) = std::env::var("GAP_MS").ok().and_then(|g| g.parse().ok()) {
                std::thread::sleep(Duration::from_millis(gap));
            }
            let started = Instant::now();
            let before = Before {
                last: Some(&previous),
                undone: undone.as_ref().filter(|_| undone_on),
                ahead: ahead.as_ref().filter(|_| !ahead_unused),
            };
            let snapshot =
                geosteer::answer::rebuild(zones, Arc::clone(geo), &rankings, &states, before);
            times.push(started.elapsed());
            if std::env::var("SHOW_CHANGES").is_ok() {
                eprintln!(
                    "n{node} {state:?}: {:.1} ms (ranked ahead before it: {ahead_ms:.1} ms)",
                    ms(started.elapsed())
                );
            }
            undone = Some(std::mem::replace(&mut previous, snapshot));
        }
    }
    let line = |mut times: Vec<Duration>| {
        times.sort();
        format!(
            "p50 {:.1} ms, slowest {:.1} ms",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        )
    };
    println!(
        "in process, {} names, {down} nodes down, {changes} changes each way: a node down {}; the node back {}",
        name_count(),
        line(downs),
        line(ups)
    );
}

/// `SIGNED=1`: the same changes on the real server with the zone unsigned, then signed
/// (keys made by `geosteer dnssec keygen`), in one run; and the signatures made at start
/// and per change.
fn signed_against_unsigned(text: &str, geo_path: &std::path::Path, nodes: usize) {
    let plain = zone_dir("rebuild-bench-plain", text);
    let signed = zone_dir(
        "rebuild-bench-signed",
        &format!("{text}\ndnssec: {{keys: keys}}\n"),
    );
    let made = std::process::Command::new(geosteer_binary())
        .args(["dnssec", "keygen", "--zone", "scale.example", "--dir"])
        .arg(signed.join("keys"))
        .output()
        .expect("geosteer dnssec keygen runs");
    assert!(made.status.success(), "{made:?}");
    for (dir, what) in [(&plain, "unsigned"), (&signed, "signed")] {
        println!("--- zone {what}");
        let mut rng = XorShift::new(0x5eed);
        server_changes(dir, geo_path, nodes, &mut rng, false);
    }
}

/// The real server: 40 (or `SERVER_CHANGES`) availability changes through the admin interface (each answered once
/// published), alone or while latency feed batches arrive (10 a second, each re-ranking
/// within the re-rank interval); then the server's own change -> published quantiles.
fn server_changes(
    dir: &std::path::Path,
    geo_path: &std::path::Path,
    nodes: usize,
    rng: &mut XorShift,
    with_feed: bool,
) {
    let started = Instant::now();
    let server = Server::start(dir, geo_path, &[]);
    let ready = started.elapsed();
    let signatures = |server: &Server| {
        let (_, text) = http(server.admin, "GET", "/metrics", None);
        metric(&text, "geosteer_dnssec_signatures_made_total").max(0.0)
    };
    let at_start = signatures(&server);
    // The nodes after the first `nodes - DOWN` stay down throughout; the changes below come
    // from the others.
    let down = down_count().min(nodes.saturating_sub(1));
    for node in nodes - down..nodes {
        let path = format!("/nodes/scale.example/n{node}/force-down");
        let (status, body) = http(server.admin, "POST", &path, None);
        assert_eq!(status, 200, "{body}");
    }
    // The burst above leaves the server ranking ahead of its last build from nothing (the
    // job of each build of the burst was stopped by the next): the changes below are timed
    // once that is done (bounded), as in a steady state with a third of the nodes down.
    let ahead_done = |server: &Server| {
        let (_, text) = http(server.admin, "GET", "/metrics", None);
        metric(&text, "geosteer_ahead_seconds_count").max(0.0)
    };
    let (settled, settling) = (ahead_done(&server), Instant::now());
    while ahead_done(&server) <= settled && settling.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before_changes = signatures(&server);
    let nodes = nodes - down;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = with_feed.then(|| {
        let (flag, admin) = (Arc::clone(&stop), server.admin);
        let countries = [
            "AS-JP", "EU-DE", "EU-GB", "NA-US", "SA-BR", "AS-IN", "OC-AU",
        ];
        let limit = Duration::from_secs(60);
        std::thread::spawn(move || feed::feed_latency(admin, &countries, nodes, 10, &flag, limit).0)
    });
    // `SERVER_CHANGES` (default 40, at most 200: the feed stops after a minute): more
    // changes make the p99 a quantile rather than the slowest.
    let changes: u32 = (std::env::var("SERVER_CHANGES").ok())
        .and_then(|v| v.parse().ok())
        .map_or(40, |n: u32| n.clamp(2, 200));
    // An override is answered once the tables holding it are published: the round trip of
    // each change is its change -> published time, for these changes alone (the server's
    // own histogram also holds the set-up force-downs above, sent in a burst, each waiting
    // out the gap between rebuilds).
    let mut round_trips = Vec::with_capacity(changes as usize);
    // Each change changes something: a node taken down, then the same node back (an
    // `obey` of a node already up would publish nothing and count as a fast change).
    let mut node = 0;
    for i in 0..changes {
        let action = if i % 2 == 0 {
            node = rng.below(nodes as u64);
            "force-down"
        } else {
            "obey"
        };
        let sent = Instant::now();
        let (status, body) = http(
            server.admin,
            "POST",
            &format!("/nodes/scale.example/n{node}/{action}"),
            None,
        );
        round_trips.push(sent.elapsed());
        if std::env::var("SHOW_CHANGES").is_ok() {
            eprintln!("change {i}: {action} n{node}: {:.1} ms", ms(sent.elapsed()));
        }
        assert_eq!(status, 200, "{body}");
        // Spaced unevenly, so changes do not keep step with the re-rank interval.
        std::thread::sleep(Duration::from_millis(100 + rng.below(150)));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches = feeder.map(|f| f.join().unwrap_or(0));
    let (_, text) = http(server.admin, "GET", "/metrics", None);
    match batches {
        None => println!("the server, {changes} availability changes through the admin interface:"),
        Some(b) => println!(
            "the server, {changes} availability changes while {b} latency feed batches arrive (10 a second; {:.0} rankings done, the longest {:.0} ms):",
            metric(&text, "geosteer_ranking_seconds_count"),
            1e3 * metric(&text, "geosteer_ranking_seconds{quantile=\"1\"}"),
        ),
    }
    println!(
        "  ready in {:.2} s; signatures made at start {at_start:.0}, per change {:.1}",
        ready.as_secs_f64(),
        (metric(&text, "geosteer_dnssec_signatures_made_total").max(0.0) - before_changes)
            / f64::from(changes),
    );
    round_trips.sort();
    let at = |q: f64| {
        round_trips
            [((q * round_trips.len() as f64).ceil() as usize).clamp(1, round_trips.len()) - 1]
    };
    println!(
        "  these changes, sent -> answered once published: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, the slowest of {changes} {:.1} ms   target p99 <= 10 ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0)),
    );
    println!("  the server's histograms (every change since start, the set-up burst included):");
    for (q, label) in [("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")] {
        println!(
            "  change -> published {label} {:>8.1} ms   (rebuild {label}: {:.1} ms)",
            1e3 * metric(
                &text,
                &format!("geosteer_change_publish_seconds{{quantile=\"{q}\"}}")
            ),
            1e3 * metric(
                &text,
                &format!("geosteer_answer_rebuild_seconds{{quantile=\"{q}\"}}")
            ),
        );
    }
    println!(
        "  ranked ahead after {:.0} builds (the rest stopped by the next one): p50 {:.1} ms, slowest {:.1} ms",
        metric(&text, "geosteer_ahead_seconds_count"),
        1e3 * metric(&text, "geosteer_ahead_seconds{quantile=\"0.5\"}"),
        1e3 * metric(&text, "geosteer_ahead_seconds{quantile=\"1\"}"),
    );
    // What the server holds after the changes (the ranking ahead of the last one included).
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()));
    let mib = |key: &str| -> f64 {
        (status.as_deref().unwrap_or_default().lines())
            .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
            .map_or(f64::NAN, |kib: f64| kib / 1024.0)
    };
    println!(
        "  server memory: peak RSS {:.0} MiB, RSS now {:.0} MiB",
        mib("VmHWM:"),
        mib("VmRSS:")
    );
}

/// `STATS=1`: the shape of each steered table (rows, their runs, classes, split ones).
fn table_stats(snapshot: &geosteer::answer::Snapshot) {
    for (name, node) in &snapshot.zones[0].names {
        if let geosteer::answer::NameNode::Steered(t) = node {
            let runs: Vec<usize> = t.table.iter().map(|r| r.run_count()).collect();
            let split = (t.class_answer.iter())
                .filter(|&&a| a == geosteer::answer::CLASS_SPLIT)
                .count();
            let split_runs: Vec<usize> = t.split_rows.iter().map(|r| r.run_count()).collect();
            eprintln!(
                "{name:?}: rows {} runs {runs:?}, classes {} ({split} split), split rows' runs {split_runs:?}, answers {}",
                t.table.len(),
                t.class_answer.len(),
                t.answers.len()
            );
        }
    }
}
