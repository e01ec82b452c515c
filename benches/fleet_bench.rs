//! How fast a fleet converges, and what it costs etcd. Run with `benches/fleet.sh`.
//!
//! A three-member etcd cluster on loopback and N geosteer instances in fleet mode (N = 3, 9).
//! Drain: an override through instance 0's admin interface; measured until the last
//! instance answers without the node (every instance queried in turn, as fast as they
//! answer). Failure: the node's listener stopped; measured until the last instance answers
//! without it (health checks at the defaults: 500 ms interval, 50 ms recheck, fall 3), and
//! compared with one instance alone. etcd writes: etcd's own put counter over 10 s of
//! steady state with 3 and 9 instances, then at the scale: 200 nodes in four
//! regions of 50, 9 instances probing each node twice a second, steady state and a regional
//! outage (the 50 listeners of one region stopped at once), second by second.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use geosteer_harness::etcd::EtcdCluster;
use geosteer_harness::nodes::{Behaviour, FakeNode, http};
use geosteer_harness::*;
use hickory_proto::rr::RecordType;

const TRIALS: usize = 20;
/// The benchmark asks as fast as the instances answer, from one address: response-rate
/// limiting would measure itself.
const NO_RRL: &[&str] = &["--rrl-rate", "0"];
const JP_CLIENT: &str = "127.1.0.5";

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1e3
}

fn report(label: &str, samples: &mut [Duration]) {
    println!(
        "{label:<48} n={:<3} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        samples.len(),
        percentile(samples, 0.5),
        percentile(samples, 0.99),
        percentile(samples, 1.0)
    );
}

fn policy(nodes: &[&FakeNode]) -> String {
    let mut text = String::from(
        "zone: fleet.example\nsoa: {primary: ns1.fleet.example., contact: h.fleet.example., serial: 1}\nns: [ns1.fleet.example.]\n\
         check: {type: tcp}\nnodes:\n",
    );
    for (i, node) in nodes.iter().enumerate() {
        let (lat, lon) = if i == 0 {
            (35.68, 139.69)
        } else {
            (1.35 + i as f64 * 0.01, 103.82)
        };
        text += &format!(
            "  n{i}: {{geo: AS-JP, location: [{lat}, {lon}], addresses: [{}], check: {{port: {}}}}}\n",
            node.addr.ip(),
            node.addr.port()
        );
    }
    text + "steer:\n  ingest: {answers: 1}\n"
}

/// One query, waiting at most 100 ms: a lost datagram must not read as seconds of
/// convergence.
fn first_answer(server: &Server) -> Option<String> {
    let query = q("ingest.fleet.example.", RecordType::A).bytes();
    let socket = std::net::UdpSocket::bind((from(JP_CLIENT), 0)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    socket.send_to(&query, server.addr).ok()?;
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    let reply = hickory_proto::op::Message::from_vec(&buf[..len]).ok()?;
    a_records(&reply).into_iter().next()
}

/// Time until every instance answers something other than `gone`.
fn until_all_moved(servers: &[Server], gone: &str, started: Instant) -> Duration {
    let mut pending: Vec<&Server> = servers.iter().collect();
    let deadline = started + Duration::from_secs(20);
    while !pending.is_empty() && Instant::now() < deadline {
        // Moved once it answers, and with another node (no reply is not a move).
        pending.retain(|s| first_answer(s).is_none_or(|a| a == gone));
    }
    started.elapsed()
}

fn until_all_back(servers: &[Server], back: &str) {
    for server in servers {
        eventually(Duration::from_secs(20), "node back", || {
            let got = first_answer(server);
            if got.as_deref() == Some(back) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        });
    }
}

/// A node failure (its listener stopped): the time until the last instance answers
/// without it; then it returns, and is back everywhere.
fn failure_trial(servers: &[Server], node: &mut FakeNode, node_ip: &str) -> Duration {
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    node.stop();
    let took = until_all_moved(servers, node_ip, started);
    node.restart();
    until_all_back(servers, node_ip);
    took
}

/// A drain through instance 0: the time until the last instance answers without the
/// node; then cleared, and back everywhere.
fn drain_trial(servers: &[Server], node_ip: &str) -> Duration {
    let started = Instant::now();
    let (status, _) = http(
        servers[0].admin,
        "POST",
        "/nodes/fleet.example/n0/drain",
        None,
    );
    assert_eq!(status, 200);
    let took = until_all_moved(servers, node_ip, started);
    let (status, _) = http(
        servers[0].admin,
        "POST",
        "/nodes/fleet.example/n0/obey",
        None,
    );
    assert_eq!(status, 200);
    until_all_back(servers, node_ip);
    took
}

fn etcd_puts(etcd: &EtcdCluster) -> f64 {
    // Every member counts the puts it applies: the most any member counts is the
    // cluster's (a member that was stopped counts those it missed as it catches up).
    // Older etcd names the counter etcd_debugging_mvcc_put_total; some versions export both.
    ["etcd_mvcc_put_total", "etcd_debugging_mvcc_put_total"]
        .into_iter()
        .flat_map(|metric| per_member(etcd, |name| name == metric))
        .fold(0.0, f64::max)
}

/// Each member's sum of the samples of the metrics `named` accepts.
fn per_member(etcd: &EtcdCluster, named: impl Fn(&str) -> bool) -> Vec<f64> {
    (etcd.clients.iter())
        .map(|client| {
            let (_, text) = http(*client, "GET", "/metrics", None);
            text.lines()
                .filter(|l| named(l.split([' ', '{']).next().unwrap_or_default()))
                .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .collect()
}

/// Established TCP connections from each instance's process to any etcd member, by
/// instance (from `ss`).
fn etcd_connections(servers: &[Server], etcd: &EtcdCluster) -> Vec<usize> {
    let output = std::process::Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .expect("ss runs (iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    let members: Vec<String> = etcd.clients.iter().map(ToString::to_string).collect();
    servers
        .iter()
        .map(|server| {
            let pid = format!("pid={},", server.pid());
            text.lines()
                .filter(|l| l.contains(&pid))
                .filter(|l| {
                    let peer = l.split_whitespace().nth(3).unwrap_or_default();
                    members.iter().any(|m| m == peer)
                })
                .count()
        })
        .collect()
}

/// A counter of etcd's summed over its members (renewals and proposals are counted by the
/// leader only, and the leader may move).
fn etcd_sum(etcd: &EtcdCluster, metric: &str) -> f64 {
    per_member(etcd, |name| name == metric).into_iter().sum()
}

/// Lease renewals (keep-alives), which are not puts.
fn etcd_renewals(etcd: &EtcdCluster) -> f64 {
    etcd_sum(etcd, "etcd_debugging_lease_renewed_total")
}

/// Raft commits the leader proposed: what a write costs the cluster (a transaction of many
/// puts is one).
fn etcd_commits(etcd: &EtcdCluster) -> f64 {
    etcd_sum(etcd, "etcd_server_proposals_committed_total") / etcd.clients.len() as f64
}

/// 200 nodes in four regions, 9 instances probing each twice a second: etcd's writes at
/// steady state and, second by second, through a regional outage.
fn regional_outage(dir: &std::path::Path, geo: &std::path::Path) {
    const REGIONS: [(&str, f64, f64); 4] = [
        ("AS-JP", 35.68, 139.69),
        ("EU-DE", 50.11, 8.68),
        ("NA-US", 39.04, -77.49),
        ("SA-BR", -23.55, -46.63),
    ];
    let mut nodes: Vec<FakeNode> = Vec::new();
    let mut text = String::from(
        "zone: region.example\nsoa: {primary: ns1.region.example., contact: h.region.example., serial: 1}\nns: [ns1.region.example.]\n\
         check: {type: tcp, interval: 500ms}\nnodes:\n",
    );
    for (r, (geo_code, lat, lon)) in REGIONS.iter().enumerate() {
        for i in 0..50 {
            let node = FakeNode::start(&format!("127.3.{r}.{}", i + 1), Behaviour::Tcp);
            text += &format!(
                "  r{r}n{i}: {{geo: {geo_code}, location: [{lat}, {lon}], addresses: [{}], check: {{port: {}}}}}\n",
                node.addr.ip(),
                node.addr.port()
            );
            nodes.push(node);
        }
    }
    text += "steer:\n  ingest: {answers: 2}\n";
    let zones = zone_dir("fleet-bench-regions", &text);
    let etcd = EtcdCluster::start(&dir.join("etcd-regions"), 3);
    let servers: Vec<Server> = (0..9)
        .map(|i| {
            Server::start(
                &zones,
                geo,
                &[
                    "--fleet",
                    &etcd.endpoints(),
                    "--fleet-prefix",
                    "/regions",
                    "--identity",
                    &format!("gs{i}"),
                    // The benchmark polls from one address: slipped replies are no answer.
                    NO_RRL[0],
                    NO_RRL[1],
                ],
            )
        })
        .collect();
    let every: Vec<String> = (0..4)
        .flat_map(|r| (0..50).map(move |i| format!("r{r}n{i}")))
        .collect();
    let every: Vec<&str> = every.iter().map(String::as_str).collect();
    for s in &servers {
        wait_healthy(s, &every);
    }
    std::thread::sleep(Duration::from_secs(3));
    // Until the last instance's first verdicts are in: 200 × 9 keys.
    eventually(
        Duration::from_secs(60),
        "every first verdict written",
        || {
            let puts = etcd_puts(&etcd);
            if puts >= 1800.0 {
                Ok(())
            } else {
                Err(format!("{puts} puts"))
            }
        },
    );
    let first_commits = etcd_commits(&etcd);
    println!(
        "{:<48} {:.0} puts in {:.0} commits",
        "200 nodes × 9 instances, first verdicts",
        etcd_puts(&etcd),
        first_commits
    );
    std::thread::sleep(Duration::from_secs(2));
    let (puts, renewals, commits) = (etcd_puts(&etcd), etcd_renewals(&etcd), etcd_commits(&etcd));
    std::thread::sleep(Duration::from_secs(10));
    println!(
        "{:<48} {:.1} puts/s, {:.1} commits/s, {:.1} lease renewals/s",
        "200 nodes × 9 instances, steady state",
        (etcd_puts(&etcd) - puts) / 10.0,
        (etcd_commits(&etcd) - commits) / 10.0,
        (etcd_renewals(&etcd) - renewals) / 10.0
    );
    let started = etcd_puts(&etcd);
    let started_commits = etcd_commits(&etcd);
    let mut last = started;
    let mut per_second = Vec::new();
    for node in nodes.iter_mut().take(50) {
        node.stop();
    }
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(1));
        let now = etcd_puts(&etcd);
        per_second.push(format!("{:.0}", now - last));
        last = now;
    }
    println!(
        "{:<48} {:.0} puts in {:.0} commits over 10 s (50 nodes × 9 verdicts = 450); puts per second: {}",
        "regional outage: 50 of 200 nodes refused",
        last - started,
        etcd_commits(&etcd) - started_commits,
        per_second.join(" ")
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("geosteer-fleet-bench-{}", std::process::id()));
    let mut tokyo = FakeNode::start("127.0.0.121", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.122", Behaviour::Tcp);
    let zones = zone_dir("fleet-bench", &policy(&[&tokyo, &singapore]));
    let tokyo_ip = tokyo.addr.ip().to_string();
    let geo = repo("tests/fixtures/geo-city.mmdb");
    // FLEET_BENCH=regions runs the 200-node part alone.
    if std::env::var("FLEET_BENCH").as_deref() == Ok("regions") {
        regional_outage(&dir, &geo);
        return;
    }
    // One instance alone: the single-instance baseline for node failures.
    {
        let alone = vec![Server::start(&zones, &geo, NO_RRL)];
        wait_healthy(&alone[0], &["n0", "n1"]);
        let mut failures = Vec::new();
        for _ in 0..TRIALS {
            until_all_back(&alone, &tokyo_ip);
            std::thread::sleep(Duration::from_millis(300));
            let started = Instant::now();
            tokyo.stop();
            failures.push(until_all_moved(&alone, &tokyo_ip, started));
            tokyo.restart();
        }
        report("node failure, 1 instance alone", &mut failures);
    }
    for size in [3usize, 9] {
        let etcd = EtcdCluster::start(&dir.join(format!("etcd-{size}")), 3);
        let servers: Vec<Server> = (0..size)
            .map(|i| {
                Server::start(
                    &zones,
                    &geo,
                    &[
                        "--fleet",
                        &etcd.endpoints(),
                        "--fleet-prefix",
                        "/bench",
                        "--identity",
                        &format!("gs{i}"),
                        // Polled from one address: slipped replies would count as waits.
                        NO_RRL[0],
                        NO_RRL[1],
                    ],
                )
            })
            .collect();
        for s in &servers {
            wait_healthy(s, &["n0", "n1"]);
        }
        until_all_back(&servers, &tokyo_ip);
        let mut drains = Vec::new();
        for _ in 0..TRIALS {
            drains.push(drain_trial(&servers, &tokyo_ip));
        }
        report(&format!("drain → last of {size} instances"), &mut drains);
        let mut failures: Vec<Duration> = (0..TRIALS)
            .map(|_| failure_trial(&servers, &mut tokyo, &tokyo_ip))
            .collect();
        report(
            &format!("node failure → last of {size} instances"),
            &mut failures,
        );
        let connections = etcd_connections(&servers, &etcd);
        println!(
            "{:<48} {connections:?}",
            format!("etcd connections per instance, {size} instances")
        );
        // The member every instance lists first, stopped (SIGSTOP: its sockets stay open
        // and silent): the same trials once every instance has left it.
        etcd.pause_member(0);
        let paused = Instant::now();
        let stopped = format!("\"via\":\"http://{}\"", etcd.clients[0]);
        for server in &servers {
            eventually(
                Duration::from_secs(30),
                "connected past the stopped member",
                || {
                    let (_, status) = http(server.admin, "GET", "/status", None);
                    if status.contains("\"connected\":true") && !status.contains(&stopped) {
                        Ok(())
                    } else {
                        Err(status)
                    }
                },
            );
        }
        println!(
            "{:<48} {:.0} ms",
            format!("every one of {size} instances past a stopped member"),
            paused.elapsed().as_secs_f64() * 1e3
        );
        let mut failures: Vec<Duration> = (0..TRIALS)
            .map(|_| failure_trial(&servers, &mut tokyo, &tokyo_ip))
            .collect();
        report(
            &format!("node failure → last of {size}, member 0 stopped"),
            &mut failures,
        );
        let mut drains = Vec::new();
        for _ in 0..TRIALS {
            drains.push(drain_trial(&servers, &tokyo_ip));
        }
        report(
            &format!("drain → last of {size}, member 0 stopped"),
            &mut drains,
        );
        etcd.resume_member(0);
        let before = etcd_puts(&etcd);
        std::thread::sleep(Duration::from_secs(10));
        let steady = (etcd_puts(&etcd) - before) / 10.0;
        println!(
            "{:<48} {steady:.1} puts/s (lease keep-alives are not puts)",
            format!("etcd writes, steady state, {size} instances")
        );
    }
    regional_outage(&dir, &geo);
}
