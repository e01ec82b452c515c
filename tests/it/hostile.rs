//! Input as an attacker (or a broken probe agent) sends it: no value from outside may stop
//! the task that owns node state, so failover keeps working after every refusal.

use std::time::Duration;

use crate::support::nodes::{Behaviour, FakeNode, http_json};
use crate::support::*;

/// A zone of two TCP-checked nodes, Tokyo nearest the test's Japanese client.
fn policy(tokyo: &FakeNode, singapore: &FakeNode) -> String {
    format!(
        "zone: hostile.example\nsoa: {{primary: ns1.hostile.example., contact: h.hostile.example.}}\n\
         ns: [ns1.hostile.example.]\n\
         check: {{type: tcp, interval: 300ms, recheck: 100ms, timeout: 1s, rise: 2, fall: 2}}\n\
         nodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{port: {}}}}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{}], check: {{port: {}}}}}\n\
         steer:\n  ingest: {{answers: 1}}\n",
        tokyo.addr.ip(),
        tokyo.addr.port(),
        singapore.addr.ip(),
        singapore.addr.port()
    )
}

/// Absurd times, round trips and loads from a probe agent with a broken clock are refused
/// (400 over HTTP, a logged rejection from the feed file), and afterwards a node that dies
/// still leaves the answers: the publisher is alive.
#[test]
fn absurd_feed_values_are_refused_and_failover_still_works() {
    let mut tokyo = FakeNode::start("127.0.0.71", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.72", Behaviour::Tcp);
    let dir = zone_dir("hostile-feed", &policy(&tokyo, &singapore));
    let feed = dir.join("feed.json");
    std::fs::write(&feed, r#"{"measurements": []}"#).expect("write feed");
    let server = Server::start(
        &dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--latency-feed", feed.to_str().expect("a UTF-8 path")],
    );
    wait_healthy(&server, &["tokyo", "singapore"]);
    let absurd = [
        r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 10, "at": 1e300}]}"#,
        r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 10, "at": 1.8e19}]}"#,
        r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 10, "at": -1e300}]}"#,
        r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 1e308}]}"#,
        r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 10, "loss": 1e300}]}"#,
        r#"{"loads": [{"node": "tokyo", "load": 1e300}]}"#,
        r#"{"loads": [{"node": "tokyo", "load": -1e300}]}"#,
    ];
    for batch in absurd {
        let (status, body) = http_json(server.admin, "POST", "/latency", None, batch);
        assert_eq!(status, 400, "{batch}: {body}");
    }
    // The same from the watched file: rejected whole, nothing applied.
    std::fs::write(&feed, absurd[0]).expect("write feed");
    let client = from("127.1.0.5");
    let query = || {
        a_records(&udp_from(
            &server,
            client,
            &q("ingest.hostile.example.", hickory_proto::rr::RecordType::A),
        ))
    };
    assert_eq!(query(), vec!["127.0.0.71".to_string()]);
    // The file is polled once a second; its rejection is counted with the HTTP ones.
    let server_admin = server.admin;
    let rejected = |at_least: usize| {
        move || {
            let (_, metrics) = crate::support::nodes::http(server_admin, "GET", "/metrics", None);
            let count = metrics
                .lines()
                .find(|l| l.starts_with("geosteer_feed_batches_total{result=\"rejected\"}"))
                .and_then(|l| l.split_whitespace().last()?.parse::<usize>().ok())
                .unwrap_or(0);
            if count >= at_least {
                Ok(())
            } else {
                Err(format!("{count} rejected"))
            }
        }
    };
    eventually(
        Duration::from_secs(5),
        "the bad feed file rejected",
        rejected(absurd.len() + 1),
    );
    // A file larger than a batch may be is refused before it is read whole.
    let huge = format!(
        r#"{{"measurements": [], "zone": "{}"}}"#,
        "x".repeat(3 * 1024 * 1024)
    );
    std::fs::write(&feed, huge).expect("write feed");
    eventually(
        Duration::from_secs(5),
        "the oversized feed file rejected",
        rejected(absurd.len() + 2),
    );
    tokyo.stop();
    eventually(
        Duration::from_secs(5),
        "failover after the refused feeds",
        || {
            let got = query();
            if got == vec!["127.0.0.72".to_string()] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    let (status, body) = crate::support::nodes::http(server.admin, "GET", "/healthz", None);
    assert_eq!(status, 200, "{body}");
}
