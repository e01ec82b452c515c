//! Carrier lines: a node reached over several networks answers each client with its address on
//! the client's own network, from a MaxMind-format or a CSV ASN database.

use crate::support;

use crate::support::*;
use hickory_proto::rr::RecordType::A;

const POLICY: &str = r#"zone: car.example
soa: {primary: ns1.car.example., contact: h.car.example.}
ns: [ns1.car.example.]
check: {type: none}
nodes:
  tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1, {address: 192.0.2.101, asn: 64500}]}
  singapore: {geo: AS-SG, location: [1.35, 103.82], addresses: [192.0.2.2]}
steer:
  ingest: {answers: 1}
"#;

#[test]
fn clients_get_the_address_on_their_own_carrier() {
    for asn_db in ["tests/fixtures/asn.csv", "tests/fixtures/geo-asn.mmdb"] {
        let asn_path = repo(asn_db);
        let server = Server::start(
            &zone_dir("carriers", POLICY),
            &repo("tests/fixtures/geo-city.mmdb"),
            &["--asn-db", asn_path.to_str().expect("utf-8 path")],
        );
        // A client of AS64500 (Tokyo's half of 127.1/16) gets Tokyo's address on AS64500.
        let reply = udp_from(&server, from("127.1.0.5"), &q("ingest.car.example.", A));
        assert_eq!(a_records(&reply), vec!["192.0.2.101"], "{asn_db}");
        // A client of AS64501 gets Tokyo's default address.
        let reply = udp_from(&server, from("127.1.200.1"), &q("ingest.car.example.", A));
        assert_eq!(a_records(&reply), vec!["192.0.2.1"], "{asn_db}");
        // With ECS: the scope covers the carrier's network too.
        let reply = udp(&server, &q("ingest.car.example.", A).ecs("127.1.0.0", 24));
        assert_eq!(a_records(&reply), vec!["192.0.2.101"]);
        assert_eq!(ecs_scope(&reply), Some((24, 17)), "{asn_db}");
    }
    // Without an ASN database, everyone gets the first address.
    let server = Server::start(
        &zone_dir("carriers-none", POLICY),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let reply = udp_from(&server, from("127.1.0.5"), &q("ingest.car.example.", A));
    assert_eq!(a_records(&reply), vec!["192.0.2.1"]);
}

#[test]
fn asn_groups_steer_a_carrier_s_clients() {
    let policy = POLICY.replace(
        "ingest: {answers: 1}",
        "ingest: {answers: 1, latency: {hold: 500ms}}",
    );
    let asn_path = repo("tests/fixtures/geo-asn.mmdb");
    let server = Server::start(
        &zone_dir("asn-groups", &policy),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--asn-db", asn_path.to_str().expect("utf-8 path")],
    );
    let query = |source: &str| {
        a_records(&udp_from(
            &server,
            from(source),
            &q("ingest.car.example.", A),
        ))
    };
    assert_eq!(query("127.1.0.5"), vec!["192.0.2.101"]);
    // AS64500's customers reach Singapore better than Tokyo (a congested peering).
    let batch = r#"{"measurements": [
        {"group": "AS64500", "node": "tokyo", "rtt_ms": 280},
        {"group": "AS64500", "node": "singapore", "rtt_ms": 30}]}"#;
    let (status, body) = support::nodes::http_json(server.admin, "POST", "/latency", None, batch);
    assert_eq!(status, 200, "{body}");
    support::eventually(
        std::time::Duration::from_secs(5),
        "AS64500's clients moving to Singapore",
        || {
            let got = query("127.1.0.5");
            if got == vec!["192.0.2.2"] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    // AS64501's clients (the other half of the same country) stay on Tokyo.
    assert_eq!(query("127.1.200.1"), vec!["192.0.2.1"]);
    let (_, why) = support::nodes::http(
        server.admin,
        "GET",
        "/explain?name=ingest.car.example.&client=127.1.0.5",
        None,
    );
    assert!(why.contains("group:    AS64500"), "{why}");
    assert!(why.contains("measured AS64500: 30 ms"), "{why}");
    // An AS the database does not know is refused.
    let (status, body) = support::nodes::http_json(
        server.admin,
        "POST",
        "/latency",
        None,
        r#"{"measurements": [{"group": "AS65000", "node": "tokyo", "rtt_ms": 10}]}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("no networks"), "{body}");
}

#[test]
fn without_a_carrier_match_the_best_measured_line_is_answered() {
    let policy = r#"zone: car.example
soa: {primary: ns1.car.example., contact: h.car.example.}
ns: [ns1.car.example.]
check: {type: none}
nodes:
  tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1, 192.0.2.201, {address: 192.0.2.101, asn: 64500}]}
steer:
  ingest: {answers: 1}
"#;
    let server = Server::start(
        &zone_dir("lines", policy),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let query = |source: &str| {
        a_records(&udp_from(
            &server,
            from(source),
            &q("ingest.car.example.", A),
        ))
    };
    assert_eq!(
        query("127.1.0.5"),
        vec!["192.0.2.1"],
        "unmeasured: the first address"
    );
    // For Japanese clients the second line is much faster than the first.
    let batch = r#"{"measurements": [
        {"group": "AS-JP", "node": "tokyo", "address": "192.0.2.1", "rtt_ms": 90},
        {"group": "AS-JP", "node": "tokyo", "address": "192.0.2.201", "rtt_ms": 15},
        {"group": "AS-JP", "node": "tokyo", "address": "192.0.2.101", "rtt_ms": 60}]}"#;
    let (status, body) = support::nodes::http_json(server.admin, "POST", "/latency", None, batch);
    assert_eq!(status, 200, "{body}");
    support::eventually(
        std::time::Duration::from_secs(5),
        "the best line answered",
        || {
            let got = query("127.1.0.5");
            if got == vec!["192.0.2.201"] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    // Clients elsewhere (Brazil) have no measurement: first address.
    assert_eq!(query("127.2.0.5"), vec!["192.0.2.1"]);
    // An address the node does not have is refused.
    let (status, body) = support::nodes::http_json(
        server.admin,
        "POST",
        "/latency",
        None,
        r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "address": "192.0.2.99", "rtt_ms": 5}]}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("is not an address of node 'tokyo'"), "{body}");
}

/// Every carrier line is checked at its own address: a line whose listener stops loses its
/// carrier's clients to the node's other line (and only them), gets them back when it
/// returns, and with every line down the node is down.
#[test]
fn a_dead_carrier_line_moves_its_carrier_s_clients_to_the_node_s_other_line() {
    let mut lines = support::nodes::FakeNode::start_lines(
        &["127.0.0.41", "127.0.0.42"],
        support::nodes::Behaviour::Tcp,
    );
    let singapore = support::nodes::FakeNode::start("127.0.0.43", support::nodes::Behaviour::Tcp);
    let policy = format!(
        r#"zone: lines.example
soa: {{primary: ns1.lines.example., contact: h.lines.example.}}
ns: [ns1.lines.example.]
check: {{type: tcp, interval: 300ms, recheck: 50ms, timeout: 300ms, rise: 2, fall: 2}}
nodes:
  tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [127.0.0.41, {{address: 127.0.0.42, asn: 64500}}], check: {{port: {}}}}}
  singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [127.0.0.43], check: {{port: {}}}}}
steer:
  ingest: {{answers: 1}}
"#,
        lines[0].addr.port(),
        singapore.addr.port()
    );
    let asn_path = repo("tests/fixtures/geo-asn.mmdb");
    let server = Server::start(
        &zone_dir("carrier-lines", &policy),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--asn-db", asn_path.to_str().expect("utf-8 path")],
    );
    wait_healthy(&server, &["tokyo", "singapore"]);
    let query = |source: &str| {
        a_records(&udp_from(
            &server,
            from(source),
            &q("ingest.lines.example.", A),
        ))
    };
    let (carrier, other) = ("127.1.0.5", "127.1.200.1");
    let until = |source: &str, want: &str, what: &str| {
        support::eventually(std::time::Duration::from_secs(5), what, || {
            let got = query(source);
            if got == vec![want.to_string()] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
    };
    until(
        carrier,
        "127.0.0.42",
        "AS64500's clients on their carrier's line",
    );
    assert_eq!(query(other), vec!["127.0.0.41"]);

    // The carrier line's listener stops: only its carrier's clients move, to the other line.
    let stopped = std::time::Instant::now();
    lines[1].stop();
    until(
        carrier,
        "127.0.0.41",
        "AS64500's clients moving to tokyo's other line",
    );
    let moved_after = stopped.elapsed();
    assert_eq!(query(other), vec!["127.0.0.41"]);
    let (_, nodes) = support::nodes::http(server.admin, "GET", "/nodes", None);
    assert!(
        nodes.contains(r#""address":"127.0.0.42","asn":64500,"health":"down""#),
        "{nodes}"
    );
    assert!(
        nodes.contains(r#""address":"127.0.0.41","asn":null,"health":"up""#),
        "{nodes}"
    );
    let metrics =
        support::parse_prometheus(&support::nodes::http(server.admin, "GET", "/metrics", None).1)
            .expect("metrics parse");
    assert_eq!(
        metrics.get(r#"geosteer_line_up{zone="lines.example.",node="tokyo",line="127.0.0.42"}"#),
        Some(&0.0),
        "{metrics:?}"
    );
    let (_, timeline) =
        support::nodes::http(server.admin, "GET", "/map?name=ingest.lines.example.", None);
    assert!(timeline.contains("tokyo via 127.0.0.42"), "{timeline}");
    eprintln!("line failover in {moved_after:?}");
    let (_, why) = support::nodes::http(
        server.admin,
        "GET",
        "/explain?name=ingest.lines.example.&client=127.1.0.5",
        None,
    );
    assert!(
        why.contains("tokyo via 127.0.0.42 (AS64500): down"),
        "{why}"
    );
    assert!(why.contains("tokyo via 127.0.0.41: up"), "{why}");

    // It comes back: its carrier's clients return to it.
    lines[1].restart();
    until(
        carrier,
        "127.0.0.42",
        "AS64500's clients back on their line",
    );

    // Every line down: the node is down, and everyone goes to Singapore.
    lines[0].stop();
    lines[1].stop();
    until(carrier, "127.0.0.43", "tokyo down once both lines are");
    until(other, "127.0.0.43", "tokyo down for everyone");
}
