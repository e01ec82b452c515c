//! Spreading: clients of one site drawn over its equally near servers by weight, each
//! network kept on its server (on re-asking, after a restart, while other servers come
//! and go), and drains that move all or a share of a server's networks.

use std::collections::HashMap;

use crate::support::*;
use hickory_proto::rr::RecordType::A;

/// Four servers at one site, weights 1:1:2:4, and a far site that never shares.
const POLICY: &str = r#"zone: spread.example
soa: {primary: ns1.spread.example., contact: h.spread.example.}
ns: [ns1.spread.example.]
check: {type: none}
nodes:
  fra-1: {geo: EU-DE, location: [50.11, 8.68], addresses: [192.0.2.1], weight: 1}
  fra-2: {geo: EU-DE, location: [50.11, 8.68], addresses: [192.0.2.2], weight: 1}
  fra-3: {geo: EU-DE, location: [50.11, 8.68], addresses: [192.0.2.3], weight: 2}
  fra-4: {geo: EU-DE, location: [50.11, 8.68], addresses: [192.0.2.4], weight: 4}
  syd-1: {geo: OC-AU, location: [-33.87, 151.21], addresses: [192.0.2.9]}
steer:
  ingest: {answers: 1, spread: {within: 10%}, default: {location: [50.0, 8.0]}}
"#;

const NAME: &str = "ingest.spread.example.";

/// `count` distinct /24 networks spread over the unicast IPv4 space (a fixed sequence, so
/// a failure reproduces).
fn networks(count: usize) -> Vec<String> {
    let mut state: u32 = 0x9e37_79b9;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while out.len() < count {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let net = state >> 8;
        let first = net >> 16;
        if !(1..=223).contains(&first) || first == 127 || !seen.insert(net) {
            continue;
        }
        out.push(format!("{}.{}.{}.0", first, (net >> 8) & 0xff, net & 0xff));
    }
    out
}

/// The address each network is answered with, and checks every ECS scope is the /24.
fn answers(server: &Server, networks: &[String]) -> HashMap<String, String> {
    networks
        .iter()
        .map(|net| {
            let reply = udp(server, &q(NAME, A).ecs(net, 24));
            let got = a_records(&reply);
            assert_eq!(got.len(), 1, "{net}: {got:?}");
            assert_eq!(
                ecs_scope(&reply),
                Some((24, 24)),
                "{net}: the draw is by /24"
            );
            (net.clone(), got[0].clone())
        })
        .collect()
}

fn shares(answered: &HashMap<String, String>) -> HashMap<String, f64> {
    let mut counts: HashMap<String, f64> = HashMap::new();
    for address in answered.values() {
        *counts.entry(address.clone()).or_default() += 1.0;
    }
    let total = answered.len() as f64;
    counts.values_mut().for_each(|c| *c /= total);
    counts
}

fn start(dir: &std::path::Path) -> Server {
    Server::start(
        dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--rrl-exempt", "127.0.0.0/8"],
    )
}

#[test]
fn a_site_s_servers_share_its_networks_by_weight_and_keep_them() {
    let dir = zone_dir("spread", POLICY);
    let server = start(&dir);
    let nets = networks(4000);
    let first = answers(&server, &nets);
    let share = shares(&first);
    for (address, expected) in [
        ("192.0.2.1", 0.125),
        ("192.0.2.2", 0.125),
        ("192.0.2.3", 0.25),
        ("192.0.2.4", 0.5),
    ] {
        let got = share.get(address).copied().unwrap_or(0.0);
        assert!(
            (got - expected).abs() <= 0.03,
            "{address}: {got:.3} of the networks, expected {expected} ({share:?})"
        );
    }
    assert!(!share.contains_key("192.0.2.9"), "the far site shared");
    // Asked again: the same server for every network.
    assert_eq!(answers(&server, &nets[..500]), subset(&first, &nets[..500]));
    // Explain names the group and what a network draws, as served.
    let (_, why) = http(
        server.admin,
        "GET",
        &format!("/explain?name={NAME}&client={}", nets[0]),
        None,
    );
    let drawn = match first[&nets[0]].as_str() {
        "192.0.2.1" => "fra-1",
        "192.0.2.2" => "fra-2",
        "192.0.2.3" => "fra-3",
        _ => "fra-4",
    };
    assert!(
        why.contains("spread:   group fra-4, fra-3, fra-1, fra-2 by weight"),
        "{why}"
    );
    assert!(
        why.contains(&format!("this client's /24 draws {drawn}")),
        "{why}"
    );
    assert!(why.contains(&format!("answer A:    {drawn}")), "{why}");
    // Without ECS the source's /24 draws, the same way.
    let own = udp_from(&server, from("127.0.0.1"), &q(NAME, A));
    let again = udp_from(&server, from("127.0.0.200"), &q(NAME, A));
    assert_eq!(a_records(&own), a_records(&again), "one /24, one server");

    // Draining the weight-4 server moves its networks and keeps the others'.
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/spread.example/fra-4/drain",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let drained = answers(&server, &nets);
    let (mut kept, mut others) = (0usize, 0usize);
    for net in &nets {
        let before = &first[net];
        assert_ne!(
            drained[net], "192.0.2.4",
            "{net} still on the drained server"
        );
        if before != "192.0.2.4" {
            others += 1;
            kept += usize::from(drained[net] == *before);
        }
    }
    let kept_share = kept as f64 / others as f64;
    assert!(
        kept_share >= 0.97,
        "only {kept_share:.3} of the other networks kept their server"
    );
    drop(server);

    // After a restart (nothing remembered), every network finds its server again.
    let server = start(&dir);
    assert_eq!(answers(&server, &nets), first);
}

#[test]
fn a_share_drain_moves_about_that_share_of_a_server_s_networks() {
    let server = start(&zone_dir("spread-share", POLICY));
    let nets = networks(3000);
    let first = answers(&server, &nets);
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/spread.example/fra-4/drain?share=50",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let staged = answers(&server, &nets);
    let (mut had, mut moved) = (0usize, 0usize);
    for net in &nets {
        if first[net] == "192.0.2.4" {
            had += 1;
            moved += usize::from(staged[net] != "192.0.2.4");
        } else {
            assert_eq!(
                staged[net], first[net],
                "{net} moved though its server stayed"
            );
        }
    }
    let moved_share = moved as f64 / had as f64;
    assert!(
        (0.4..=0.6).contains(&moved_share),
        "share=50 moved {moved_share:.3} of the server's networks"
    );
    // The status shows the staged drain.
    let (_, nodes) = http(server.admin, "GET", "/nodes", None);
    assert!(nodes.contains("\"drain-share\":50"), "{nodes}");
    // A full drain then moves the rest; obey brings every network back.
    let (status, _) = http(
        server.admin,
        "POST",
        "/nodes/spread.example/fra-4/drain",
        None,
    );
    assert_eq!(status, 200);
    let all = answers(&server, &nets[..1000]);
    assert!(all.values().all(|a| a != "192.0.2.4"));
    let (status, _) = http(
        server.admin,
        "POST",
        "/nodes/spread.example/fra-4/obey",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(answers(&server, &nets), first);
}

fn subset(all: &HashMap<String, String>, nets: &[String]) -> HashMap<String, String> {
    nets.iter().map(|n| (n.clone(), all[n].clone())).collect()
}

/// Without `spread`, a staged drain of the node a whole country gets moves that share of its
/// networks to the next node, and only those.
#[test]
fn a_share_drain_without_spread_hands_networks_to_the_next_node() {
    let policy = POLICY.replace("spread: {within: 10%}, ", "");
    let server = start(&zone_dir("spread-none-share", &policy));
    let nets = networks(2000);
    let first = answers_any_scope(&server, &nets);
    assert!(
        first.values().all(|a| a == "192.0.2.4"),
        "weight 4 ranks first"
    );
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/spread.example/fra-4/drain?share=30",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let staged = answers_any_scope(&server, &nets);
    let moved = staged.values().filter(|a| *a != "192.0.2.4").count();
    assert!(
        staged
            .values()
            .all(|a| a == "192.0.2.4" || a == "192.0.2.3"),
        "the next node stands in"
    );
    let share = moved as f64 / nets.len() as f64;
    assert!((0.25..=0.35).contains(&share), "share=30 moved {share:.3}");
    // Asked again, the same networks are the moved ones.
    assert_eq!(answers_any_scope(&server, &nets), staged);
    let (status, _) = http(
        server.admin,
        "POST",
        "/nodes/spread.example/fra-4/drain?share=0",
        None,
    );
    assert_eq!(status, 400, "share=0 is refused");
}

/// The address each network is answered with, whatever the scope.
fn answers_any_scope(server: &Server, networks: &[String]) -> HashMap<String, String> {
    networks
        .iter()
        .map(|net| {
            let got = a_records(&udp(server, &q(NAME, A).ecs(net, 24)));
            assert_eq!(got.len(), 1, "{net}: {got:?}");
            (net.clone(), got[0].clone())
        })
        .collect()
}

/// The status page's census counts a spread name by draw: the map's shares follow the
/// weights, and a what-if of a half drain moves about half of that node's share.
#[test]
fn the_census_and_a_half_drain_what_if_follow_the_draw() {
    let server = start(&zone_dir("spread-census", POLICY));
    let (status, body) = page_data(server.admin, &format!("/map?name={NAME}"));
    assert_eq!(status, 200, "{body}");
    let live: serde_json::Value = serde_json::from_str(&body).expect("map JSON");
    // Of the site's clients (Asia-Pacific goes to Sydney), by sampled networks.
    let count = |node: &str| live["census"]["nodes"][node].as_f64().unwrap_or(0.0);
    let site: f64 = ["fra-1", "fra-2", "fra-3", "fra-4"]
        .iter()
        .map(|n| count(n))
        .sum();
    let share = |node: &str| count(node) / site;
    for (node, weight) in [
        ("fra-1", 0.125),
        ("fra-2", 0.125),
        ("fra-3", 0.25),
        ("fra-4", 0.5),
    ] {
        assert!(
            (share(node) - weight).abs() < 0.05,
            "{node}: {} ({body})",
            share(node)
        );
    }
    let (status, body) = page_data(server.admin, &format!("/what-if?name={NAME}&half=fra-4"));
    assert_eq!(status, 200, "{body}");
    let what_if: serde_json::Value = serde_json::from_str(&body).expect("what-if JSON");
    let moves = what_if["moves"].as_array().expect("moves");
    assert!(moves.iter().all(|m| m["from"] == "fra-4"), "{moves:?}");
    let moved: f64 = moves.iter().filter_map(|m| m["share"].as_f64()).sum();
    let total = live["census"]["total"].as_f64().expect("a total");
    let half = count("fra-4") / total / 2.0;
    assert!(
        (moved - half).abs() < 0.05,
        "a half drain of fra-4 moved {moved}, not about {half}"
    );
}

/// `spread` on a rule: its clients spread, the other rules' do not (weight divides their
/// scores: the weight-4 server takes them all).
#[test]
fn a_rule_may_spread_on_its_own() {
    let policy = POLICY.replace(
        "ingest: {answers: 1, spread: {within: 10%}, default: {location: [50.0, 8.0]}}",
        "ingest:\n    answers: 1\n    rules:\n      - {geos: [EU-DE], nodes: [fra-1, fra-2, fra-3, fra-4], spread: {within: 10%}}\n      - {}",
    );
    let server = start(&zone_dir("spread-rule", &policy));
    let distinct = |first: u32| {
        (0..200u32)
            .map(|i| {
                let net = format!("127.{first}.{i}.0");
                a_records(&udp(&server, &q(NAME, A).ecs(&net, 24)))
            })
            .collect::<std::collections::HashSet<_>>()
    };
    // 127.3/16 is Germany in the test database, 127.5/16 the United States.
    let german = distinct(3);
    assert_eq!(
        german.len(),
        4,
        "German networks spread over the site: {german:?}"
    );
    let american = distinct(5);
    assert_eq!(
        american.len(),
        1,
        "the catch-all does not spread: {american:?}"
    );
    assert!(
        american.contains(&vec!["192.0.2.4".to_string()]),
        "{american:?}"
    );
    let (_, config) = http(server.admin, "GET", "/config", None);
    assert!(config.contains(r#""spread":{"within":"10%"}"#), "{config}");
}
