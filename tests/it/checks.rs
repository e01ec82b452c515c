//! Each kind of health check against real listeners that pass or fail it, seen through the
//! admin interface's node state.

use std::time::Duration;

use crate::support::nodes::{Behaviour, FakeNode, http, self_signed_tls};
use crate::support::*;

#[test]
fn every_check_kind_passes_and_fails_for_the_right_reasons() {
    let tls = self_signed_tls("ingest.test");
    let nodes = [
        (
            "http-ok",
            FakeNode::start("127.0.0.71", Behaviour::Http(200, "ok")),
            "{type: http, path: /health}",
        ),
        (
            "http-503",
            FakeNode::start("127.0.0.72", Behaviour::Http(503, "overloaded")),
            "{type: http}",
        ),
        (
            "http-body",
            FakeNode::start("127.0.0.73", Behaviour::Http(200, "status: draining")),
            "{type: http, body: ready}",
        ),
        (
            "http-expect",
            FakeNode::start("127.0.0.74", Behaviour::Http(204, "")),
            "{type: http, expect: [204]}",
        ),
        (
            "rtmp-ok",
            FakeNode::start("127.0.0.75", Behaviour::Rtmp),
            "{type: rtmp}",
        ),
        (
            "rtmp-mute",
            FakeNode::start("127.0.0.76", Behaviour::Tcp),
            "{type: rtmp}",
        ),
        (
            "https-insecure",
            FakeNode::start("127.0.0.77", Behaviour::Https(tls.clone())),
            "{type: https, host: ingest.test, verify: false}",
        ),
        (
            "https-verified",
            FakeNode::start("127.0.0.78", Behaviour::Https(tls)),
            "{type: https, host: ingest.test}",
        ),
        (
            "tcp-ok",
            FakeNode::start("127.0.0.79", Behaviour::Tcp),
            "{type: tcp}",
        ),
    ];
    let mut policy = String::from(
        "zone: hc.example\nsoa: {primary: ns1.hc.example., contact: h.hc.example.}\nns: [ns1.hc.example.]\n\
         check: {interval: 200ms, recheck: 50ms, rise: 1, fall: 1}\nnodes:\n",
    );
    for (name, node, check) in &nodes {
        // The check's port comes from the fake node; the rest from the table above.
        let check = check.replacen('{', &format!("{{port: {}, ", node.addr.port()), 1);
        policy += &format!(
            "  {name}: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {check}}}\n",
            node.addr.ip()
        );
    }
    policy += "  unchecked: {geo: AS-JP, location: [35.0, 139.0], addresses: [127.0.0.80], check: {type: none}}\n";
    policy += "steer:\n  ingest: {answers: 1}\n";
    let server = Server::start(
        &zone_dir("checks", &policy),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );

    let expected = [
        ("http-ok", "up", "HTTP 200"),
        ("http-503", "down", "HTTP 503"),
        ("http-body", "down", "body lacks \"ready\""),
        ("http-expect", "up", "HTTP 204"),
        ("rtmp-ok", "up", "RTMP S0+S1"),
        ("rtmp-mute", "down", "RTMP"),
        ("https-insecure", "up", "HTTP 200"),
        ("https-verified", "down", "TLS"),
        ("tcp-ok", "up", "connected"),
    ];
    let states = eventually(Duration::from_secs(15), "every check reporting", || {
        let (_, body) = http(server.admin, "GET", "/nodes", None);
        let states: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let done = expected.iter().all(|(name, _, _)| {
            states
                .as_array()
                .and_then(|a| a.iter().find(|n| n["node"] == *name))
                .is_some_and(|n| n["health"] != "unknown")
        });
        if done { Ok(states) } else { Err(body) }
    });
    for (name, health, detail) in expected {
        let state = states
            .as_array()
            .and_then(|a| a.iter().find(|n| n["node"] == name))
            .expect("listed");
        assert_eq!(state["health"], health, "{name}: {state}");
        let seen = state["last_detail"].as_str().unwrap_or_default();
        assert!(
            seen.contains(detail),
            "{name}: detail {seen:?} lacks {detail:?}"
        );
    }
    let unchecked = states
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == "unchecked"))
        .expect("listed");
    assert_eq!(unchecked["check"], "none");
    assert_eq!(unchecked["health"], "unknown");
    assert_eq!(
        unchecked["availability"], "up",
        "an unchecked node follows its administrative status"
    );
}
