//! Steering by measured latency, end to end: feed batches through the admin interface and a
//! watched file move a client group between nodes after the hysteresis time, and back; bad
//! batches are rejected with their reasons and change nothing.

use hickory_proto::rr::RecordType::A;
use std::time::{Duration, Instant};

use crate::support::nodes::{http, http_json};
use crate::support::*;

const HOLD: Duration = Duration::from_secs(1);
const TOKYO: &str = "192.0.2.1";
const SINGAPORE: &str = "192.0.2.2";
const JP_CLIENT: &str = "127.1.0.5";
/// The third node of `seoul_server`.
const SEOUL: &str = "192.0.2.3";

fn policy() -> String {
    let hold = HOLD.as_millis();
    lat_policy(
        "",
        &format!("{{answers: 1, latency: {{margin: 20%, hold: {hold}ms}}}}"),
    )
}

/// Zone `lat.example`, unchecked: Tokyo, the `more` nodes (lines of YAML), Singapore, and
/// the steered name `ingest` as `ingest` says.
fn lat_policy(more: &str, ingest: &str) -> String {
    format!(
        "zone: lat.example\nsoa: {{primary: ns1.lat.example., contact: h.lat.example.}}\nns: [ns1.lat.example.]\ncheck:\n  type: none\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{TOKYO}]}}\n\
         {more}\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{SINGAPORE}]}}\n\
         steer:\n  ingest: {ingest}\n"
    )
}

fn feed(tokyo_ms: f64, singapore_ms: f64) -> String {
    format!(
        r#"{{"measurements": [
            {{"group": "AS-JP", "node": "tokyo", "rtt_ms": {tokyo_ms}}},
            {{"group": "AS-JP", "node": "singapore", "rtt_ms": {singapore_ms}, "loss": 0.0}}]}}"#
    )
}

fn is(address: &'static str) -> impl Fn(&Seen) -> bool {
    move |seen| matches!(seen, Seen::Answer(a) if a == &[address.to_string()])
}

#[test]
fn feeds_move_clients_after_the_hold_time_and_back() {
    let server = Server::start(
        &zone_dir("latency", &policy()),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let stream = QueryLoop::start(server.addr, from(JP_CLIENT), "ingest.lat.example.");
    assert!(
        stream
            .first(Instant::now(), Duration::from_secs(5), is(TOKYO))
            .is_some(),
        "distance first"
    );

    // Tokyo is slow for Japanese clients tonight; Singapore is fast.
    let posted = Instant::now();
    let (status, body) = http_json(server.admin, "POST", "/latency", None, &feed(250.0, 40.0));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"applied\":2"), "{body}");
    let moved = stream
        .first(posted, HOLD + Duration::from_secs(3), is(SINGAPORE))
        .expect("JP clients move to Singapore");
    eprintln!("moved {:?} after the feed", moved - posted);
    assert!(
        moved - posted >= HOLD,
        "moved after {:?}, before the hold time",
        moved - posted
    );

    // Bad batches: rejected with reasons, nothing applied (the valid first entry included).
    for (batch, reason) in [
        (
            r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 1}, {"group": "AS-JP", "node": "nope", "rtt_ms": 5}]}"#,
            "unknown node 'nope'",
        ),
        (
            r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 1}, {"group": "10.0.0.1/8", "node": "tokyo", "rtt_ms": 5}]}"#,
            "did you mean 10.0.0.0/8",
        ),
        (
            r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 1}, {"group": "AS-JP", "node": "tokyo", "rtt_ms": -3}]}"#,
            "is not a round trip",
        ),
        (
            r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 1, "loss": 7}]}"#,
            "is not a rate",
        ),
        (
            r#"{"loads": [{"node": "tokyo", "load": 9}]}"#,
            "not a fraction of capacity",
        ),
        (
            r#"{"measurements": [{"group": "XX", "node": "tokyo", "rtt_ms": 1}]}"#,
            "unknown continent",
        ),
        (
            r#"{"zone": "not-served.example", "measurements": []}"#,
            "zone 'not-served.example' is not served here",
        ),
    ] {
        let (status, body) = http_json(server.admin, "POST", "/latency", None, batch);
        assert_eq!(status, 400, "{batch}: {body}");
        assert!(body.contains(reason), "{batch}: {body} lacks {reason:?}");
    }
    let (status, _) = http_json(server.admin, "POST", "/latency", None, "{not json");
    assert!((400..500).contains(&status));
    let checked = Instant::now();
    assert!(
        stream
            .first(checked, HOLD * 2 + Duration::from_millis(500), is(TOKYO))
            .is_none(),
        "a rejected batch changed the answers"
    );

    // The evening peak is over: Tokyo is fast again.
    let recovered = Instant::now();
    let (status, body) = http_json(server.admin, "POST", "/latency", None, &feed(20.0, 40.0));
    assert_eq!(status, 200, "{body}");
    let back = stream
        .first(recovered, HOLD + Duration::from_secs(3), is(TOKYO))
        .expect("JP clients return to Tokyo");
    assert!(back - recovered >= HOLD);
    // Noise smaller than the margin never moves them.
    let (status, _) = http_json(server.admin, "POST", "/latency", None, &feed(40.0, 35.0));
    assert_eq!(status, 200);
    let calm = Instant::now();
    assert!(
        stream
            .first(calm, HOLD * 2 + Duration::from_millis(500), is(SINGAPORE))
            .is_none()
    );
    let log = stream.finish();
    assert!(
        log.iter()
            .all(|(_, s)| matches!(s, Seen::Answer(a) if a.len() == 1)),
        "every query answered"
    );
}

#[test]
fn loads_shed_traffic_and_a_watched_file_feeds_too() {
    let dir = zone_dir("latency-file", &policy());
    let feed_file = dir.join("feed.json");
    let server = Server::start(
        &dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--latency-feed", feed_file.to_str().expect("utf-8 path")],
    );
    let stream = QueryLoop::start(server.addr, from(JP_CLIENT), "ingest.lat.example.");
    assert!(
        stream
            .first(Instant::now(), Duration::from_secs(5), is(TOKYO))
            .is_some()
    );
    // Tokyo at 97 % of capacity: traffic sheds to Singapore (after the hold).
    std::fs::write(
        &feed_file,
        r#"{"loads": [{"node": "tokyo", "load": 0.97}]}"#,
    )
    .expect("write feed");
    let written = Instant::now();
    assert!(
        stream
            .first(written, HOLD + Duration::from_secs(4), is(SINGAPORE))
            .is_some(),
        "a loaded node sheds its clients"
    );
    let (_, body) = http(server.admin, "GET", "/nodes", None);
    assert!(body.contains("\"load\":0.97"), "{body}");
    // An invalid file is rejected whole: the load stays.
    std::fs::write(
        &feed_file,
        r#"{"loads": [{"node": "tokyo", "load": 0.1}, {"node": "ghost", "load": 0.1}]}"#,
    )
    .expect("write feed");
    let bad = Instant::now();
    assert!(
        stream
            .first(bad, HOLD * 2 + Duration::from_secs(2), is(TOKYO))
            .is_none(),
        "a rejected file changed answers"
    );
    std::fs::write(&feed_file, r#"{"loads": [{"node": "tokyo", "load": 0.2}]}"#)
        .expect("write feed");
    let good = Instant::now();
    assert!(
        stream
            .first(good, HOLD + Duration::from_secs(4), is(TOKYO))
            .is_some(),
        "load relieved"
    );
}

#[test]
fn prefix_groups_steer_their_own_clients_with_their_own_scope() {
    let server = Server::start(
        &zone_dir("latency-prefix", &policy()),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let query = |subnet: &str| {
        udp(
            &server,
            &q("ingest.lat.example.", hickory_proto::rr::RecordType::A).ecs(subnet, 24),
        )
    };
    assert_eq!(a_records(&query("127.1.0.0")), vec![TOKYO]);
    // One network in Tokyo reaches Singapore better (its carrier's path); the rest of Japan
    // does not.
    let batch = r#"{"measurements": [
        {"group": "127.1.0.0/24", "node": "tokyo", "rtt_ms": 300},
        {"group": "127.1.0.0/24", "node": "singapore", "rtt_ms": 20}]}"#;
    let (status, body) = http_json(server.admin, "POST", "/latency", None, batch);
    assert_eq!(status, 200, "{body}");
    eventually(
        HOLD + Duration::from_secs(4),
        "the measured prefix moving",
        || {
            let got = a_records(&query("127.1.0.0"));
            if got == vec![SINGAPORE] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    let reply = query("127.1.0.0");
    assert_eq!(
        ecs_scope(&reply),
        Some((24, 24)),
        "the group's own prefix is the scope"
    );
    assert_eq!(
        a_records(&query("127.1.1.0")),
        vec![TOKYO],
        "a neighbouring network is unaffected"
    );
    assert_eq!(a_records(&query("127.1.200.0")), vec![TOKYO]);
    // ASN groups need an ASN database: without one they are refused, not silently ignored.
    let (status, body) = http_json(
        server.admin,
        "POST",
        "/latency",
        None,
        r#"{"measurements": [{"group": "AS4713", "node": "tokyo", "rtt_ms": 10}]}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("ASN groups need an ASN database"), "{body}");
}

#[test]
fn http_checks_report_load() {
    use crate::support::nodes::{Behaviour, FakeNode};
    let tokyo = FakeNode::start(
        "127.0.0.91",
        Behaviour::Http(200, r#"{"status": "ok", "load": 0.97}"#),
    );
    let singapore = FakeNode::start("127.0.0.92", Behaviour::Http(200, "ok load=10%"));
    let policy = format!(
        "zone: lat.example\nsoa: {{primary: ns1.lat.example., contact: h.lat.example.}}\nns: [ns1.lat.example.]\n\
         check: {{type: http, interval: 200ms}}\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{port: {}}}}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{}], check: {{port: {}}}}}\n\
         steer:\n  ingest: {{answers: 1, latency: {{hold: {}ms}}}}\n",
        tokyo.addr.ip(),
        tokyo.addr.port(),
        singapore.addr.ip(),
        singapore.addr.port(),
        HOLD.as_millis()
    );
    let server = Server::start(
        &zone_dir("latency-http-load", &policy),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let stream = QueryLoop::start(server.addr, from(JP_CLIENT), "ingest.lat.example.");
    let t = Instant::now();
    assert!(
        stream
            .first(t, HOLD + Duration::from_secs(5), is("127.0.0.92"))
            .is_some(),
        "a node reporting 97 % load in its check sheds its clients"
    );
    let (_, body) = http(server.admin, "GET", "/nodes", None);
    assert!(body.contains("\"load\":0.97"), "{body}");
    assert!(body.contains("\"load\":0.1"), "{body}");
}

/// Capacity: a full node gives way like an unavailable one, across pool fallbacks: a full
/// PoP's clients move to the fallback pool, stay there while its load is between `resume`
/// and `full` (hysteresis), and come back once it drops; with every allowed node full, the
/// least loaded answers rather than nothing.
#[test]
fn a_full_pop_s_clients_move_to_the_fallback_pool_and_come_back() {
    let text = format!(
        "zone: cap.example\nsoa: {{primary: ns1.cap.example., contact: h.cap.example.}}\nns: [ns1.cap.example.]\n\
         check: {{type: none}}\ncapacity: {{full: 95%, resume: 80%}}\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{TOKYO}]}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{SINGAPORE}]}}\n\
         steer:\n  ingest:\n    answers: 1\n    pools:\n      jp: {{nodes: [tokyo], fallback: asia}}\n      asia: {{nodes: [singapore]}}\n\
         \x20   rules:\n      - {{geos: [AS-JP], pool: jp}}\n      - {{}}\n"
    );
    let server = Server::start(
        &zone_dir("capacity", &text),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let answer = || {
        a_records(&udp_from(
            &server,
            from(JP_CLIENT),
            &q("ingest.cap.example.", hickory_proto::rr::RecordType::A),
        ))
    };
    let loads = |tokyo: f64, singapore: f64| {
        let batch = format!(
            r#"{{"loads": [{{"node": "tokyo", "load": {tokyo}}}, {{"node": "singapore", "load": {singapore}}}]}}"#
        );
        let (status, body) = http_json(server.admin, "POST", "/latency", None, &batch);
        assert_eq!(status, 200, "{body}");
    };
    let becomes = |want: &str, what: &str| {
        eventually(Duration::from_secs(5), what, || {
            let got = answer();
            if got == vec![want.to_string()] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        });
    };
    assert_eq!(answer(), vec![TOKYO], "its own pool first");
    // A busy node that is not full keeps its pool's clients: pool level outranks score.
    loads(0.9, 0.1);
    let (_, nodes) = http(server.admin, "GET", "/nodes", None);
    assert!(nodes.contains("\"load\":0.9"), "{nodes}");
    assert_eq!(answer(), vec![TOKYO], "90 % is not full");
    loads(0.97, 0.1);
    becomes(SINGAPORE, "full Tokyo gives way to the fallback pool");
    let (_, why) = http(
        server.admin,
        "GET",
        "/explain?name=ingest.cap.example.&client=127.1.0.5",
        None,
    );
    assert!(why.contains("tokyo is full; the answer skips it"), "{why}");
    let metrics = scrape(&server);
    assert_eq!(
        metrics.get("geosteer_node_full{zone=\"cap.example.\",node=\"tokyo\"}"),
        Some(&1.0),
        "{metrics:?}"
    );
    // Between resume and full: still full (no oscillation around the threshold).
    loads(0.9, 0.1);
    let (_, nodes) = http(server.admin, "GET", "/nodes", None);
    assert!(nodes.contains("\"availability\":\"full\""), "{nodes}");
    assert_eq!(answer(), vec![SINGAPORE], "hysteresis holds");
    loads(0.7, 0.1);
    becomes(TOKYO, "Tokyo back below its resume threshold");
    // Everything full: the least loaded, not nothing.
    loads(1.2, 1.0);
    becomes(SINGAPORE, "the least loaded of the full nodes");
    loads(1.0, 1.3);
    becomes(TOKYO, "the least loaded again");
}

/// Loads age out: a node kept full by a report that is not renewed takes clients again once
/// the report is older than the capacity's `max_age` (here 2 s), and `/nodes` no longer
/// shows it. A report dated older than that is refused, saying why.
#[test]
fn a_load_report_that_is_not_renewed_expires() {
    let text = format!(
        "zone: age.example\nsoa: {{primary: ns1.age.example., contact: h.age.example.}}\nns: [ns1.age.example.]\n\
         check: {{type: none}}\ncapacity: {{full: 95%, resume: 80%, max_age: 2s}}\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{TOKYO}]}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{SINGAPORE}]}}\n\
         steer:\n  ingest: {{answers: 1}}\n"
    );
    let server = Server::start(
        &zone_dir("load-age", &text),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let answer = || {
        a_records(&udp_from(
            &server,
            from(JP_CLIENT),
            &q("ingest.age.example.", hickory_proto::rr::RecordType::A),
        ))
    };
    assert_eq!(answer(), vec![TOKYO]);
    let batch = r#"{"loads": [{"node": "tokyo", "load": 0.99}]}"#;
    let (status, body) = http_json(server.admin, "POST", "/latency", None, batch);
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(2), "full Tokyo gives way", || {
        let got = answer();
        if got == vec![SINGAPORE.to_string()] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    // Its age is shown while it counts: in /nodes and in explain.
    let (_, nodes) = http(server.admin, "GET", "/nodes", None);
    let nodes: serde_json::Value = serde_json::from_str(&nodes).expect("JSON");
    let tokyo = (nodes.as_array().into_iter().flatten())
        .find(|n| n["node"] == "tokyo")
        .expect("tokyo")
        .clone();
    assert!(
        tokyo["load_age_s"].as_f64().is_some_and(|a| a < 2.0),
        "{tokyo}"
    );
    // Explain reads the inputs of the last ranking (within the re-ranking interval).
    eventually(Duration::from_secs(2), "the load's age in explain", || {
        let (_, why) = http(
            server.admin,
            "GET",
            "/explain?name=ingest.age.example.&client=127.1.0.5",
            None,
        );
        if why.contains("load 99 % (") {
            Ok(())
        } else {
            Err(why)
        }
    });
    // Nobody renews the report: within the aging interval (5 s) after it is 2 s old,
    // Tokyo takes its clients back.
    eventually(Duration::from_secs(15), "the load expired", || {
        let got = answer();
        if got == vec![TOKYO.to_string()] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    let (_, nodes) = http(server.admin, "GET", "/nodes", None);
    assert!(!nodes.contains("\"load\":0.99"), "{nodes}");
    // What it said is still shown, as stale, with when it went stale.
    assert!(nodes.contains("\"stale_load\":0.99"), "{nodes}");
    assert!(nodes.contains("\"load_stale_s\":"), "{nodes}");
    let (_, why) = http(
        server.admin,
        "GET",
        "/explain?name=ingest.age.example.&client=127.1.0.5",
        None,
    );
    assert!(why.contains("load 99 % stale"), "{why}");
    let old = r#"{"loads": [{"node": "tokyo", "load": 0.99, "at": 1000000000}]}"#;
    let (status, body) = http_json(server.admin, "POST", "/latency", None, old);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("loads[0]: it is older than 2 s"), "{body}");
}

/// A node that failed for a moment loses its probe-loss penalty once its probes succeed
/// again: explain shows the term while it lasts, and none a while after recovery (the
/// smoothed loss only tends to zero; below 1 % it counts as none).
#[test]
fn a_recovered_node_loses_its_probe_loss_penalty() {
    use crate::support::nodes::{Behaviour, FakeNode};
    let mut tokyo = FakeNode::start("127.0.0.110", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.111", Behaviour::Tcp);
    let text = format!(
        "zone: lp.example\nsoa: {{primary: ns1.lp.example., contact: h.lp.example.}}\nns: [ns1.lp.example.]\n\
         check: {{type: tcp, interval: 100ms, recheck: 50ms, timeout: 300ms, rise: 2, fall: 2}}\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{port: {}}}}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{}], check: {{port: {}}}}}\n\
         steer:\n  ingest: {{answers: 1}}\n",
        tokyo.addr.ip(),
        tokyo.addr.port(),
        singapore.addr.ip(),
        singapore.addr.port()
    );
    let server = Server::start(
        &zone_dir("probe-loss", &text),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let tokyo_line = || {
        let (_, why) = http(
            server.admin,
            "GET",
            "/explain?name=ingest.lp.example.&client=127.1.0.5",
            None,
        );
        why.lines()
            .find(|l| l.trim_start().starts_with("tokyo "))
            .unwrap_or_default()
            .to_string()
    };
    let until_line = |secs: u64, what: &str, holds: &dyn Fn(&str) -> bool| {
        eventually(Duration::from_secs(secs), what, || {
            let line = tokyo_line();
            if holds(&line) { Ok(()) } else { Err(line) }
        });
    };
    until_line(10, "Tokyo up", &|line| line.contains("Up"));
    tokyo.stop();
    until_line(10, "a probe-loss penalty", &|line| {
        line.contains("probe loss")
    });
    tokyo.restart();
    until_line(60, "the penalty gone", &|line| {
        line.contains("Up") && !line.contains("probe loss")
    });
}

/// A server whose steered name answers two of Tokyo, Seoul and Singapore, started with the
/// fault `fault` (debug builds); the answer a Japanese client gets, sorted; and a feed
/// batch that puts Singapore second for Japanese clients (Seoul slow, Singapore fast;
/// Tokyo stays first, so damping holds nothing back).
fn seoul_server(dir: &str, fault: &str) -> (Server, impl Fn(&Server) -> Vec<String>, &'static str) {
    let seoul =
        format!("  seoul: {{geo: AS-KR, location: [37.57, 126.98], addresses: [{SEOUL}]}}\n");
    let policy = lat_policy(&seoul, "{answers: 2}");
    let server = Server::start_with_env(
        &zone_dir(dir, &policy),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
        &[("GEOSTEER_FAULT", fault)],
    );
    let answer = |server: &Server| {
        let mut seen = a_records(&udp_from(
            server,
            from(JP_CLIENT),
            &q("ingest.lat.example.", A),
        ));
        seen.sort();
        seen
    };
    assert_eq!(answer(&server), [TOKYO, SEOUL], "distance first");
    let batch = r#"{"measurements": [
        {"group": "AS-JP", "node": "tokyo", "rtt_ms": 10},
        {"group": "AS-JP", "node": "seoul", "rtt_ms": 250},
        {"group": "AS-JP", "node": "singapore", "rtt_ms": 40}]}"#;
    (server, answer, batch)
}

/// A node that fails while a feed's rankings are being ranked (and their answers built
/// beside them) is out of the answers published from them: the publisher builds from those
/// answers with the availability of now. The fault `slow-ranking` (debug builds) holds each
/// background ranking a second, so the failure lands inside one.
#[test]
fn a_node_down_while_a_feed_is_ranked_stays_out_of_its_answers() {
    let (server, answer, batch) = seoul_server("latency-while-ranked", "slow-ranking");
    let count = |series: &str| metric_sum(&scrape(&server), series);
    let started = count("geosteer_rankings_started_total");
    let finished = count("geosteer_ranking_seconds_count");
    let (status, body) = http_json(server.admin, "POST", "/latency", None, batch);
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(5),
        "a ranking of the feed begins",
        || match count("geosteer_rankings_started_total") > started {
            true => Ok(()),
            false => Err("no ranking started".into()),
        },
    );
    // The feed's ranking runs only on CPU time nothing else wants (SCHED_IDLE, policy 5):
    // a change's threads, woken on its core, take it at once.
    let policies = thread_policies(server.pid(), "geosteer-rank");
    assert!(
        !policies.is_empty() && policies.iter().all(|&p| p == 5),
        "{policies:?}"
    );
    // Singapore fails while that ranking runs (held a second by the fault).
    let path = "/nodes/lat.example/singapore/force-down";
    assert_eq!(http(server.admin, "POST", path, None).0, 200);
    assert_eq!(
        count("geosteer_ranking_seconds_count"),
        finished,
        "the change landed while the feed was being ranked"
    );
    let rebuilds = count("geosteer_answer_rebuild_seconds_count");
    eventually(
        Duration::from_secs(10),
        "the feed's rankings published",
        || {
            let ranked = count("geosteer_ranking_seconds_count") > finished;
            match ranked && count("geosteer_answer_rebuild_seconds_count") > rebuilds {
                true => Ok(()),
                false => Err("not yet adopted and published".into()),
            }
        },
    );
    assert_eq!(answer(&server), [TOKYO, SEOUL], "Singapore is down");
    // Back: the feed's rankings are the ones in use.
    let path = "/nodes/lat.example/singapore/obey";
    assert_eq!(http(server.admin, "POST", path, None).0, 200);
    assert_eq!(answer(&server), [TOKYO, SINGAPORE], "the feed's ranking");
}

/// The scheduling policies (`/proc`, field 41 of a thread's `stat`) of a process's threads
/// named `name`.
fn thread_policies(pid: u32, name: &str) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    let mut policies = Vec::new();
    for task in tasks.flatten() {
        let read = |file: &str| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
        if read("comm").trim() != name {
            continue;
        }
        // After the name in parentheses: state is field 3, policy field 41.
        let stat = read("stat");
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        if let Some(policy) = after
            .split_whitespace()
            .nth(38)
            .and_then(|f| f.parse().ok())
        {
            policies.push(policy);
        }
    }
    policies
}

/// How many steered names' tables the server's builds made `how` (`built`, `kept`,
/// `taken_back`).
fn steered_tables(server: &Server, how: &str) -> f64 {
    let series = format!("geosteer_steered_tables_total{{how=\"{how}\"}}");
    scrape(server).get(&series).copied().unwrap_or(0.0)
}

/// Waits for a publication after the `rebuilds`-th: new rankings adopted.
fn until_adopted(server: &Server, rebuilds: f64) {
    eventually(
        Duration::from_secs(10),
        "the feed's rankings adopted",
        || match metric_sum(&scrape(server), "geosteer_answer_rebuild_seconds_count") > rebuilds {
            true => Ok(()),
            false => Err("not yet adopted and published".into()),
        },
    );
}

/// Brings Singapore back, `built` tables built so far: the feed's ranking answers, and the
/// change undone builds nothing (one table taken back).
fn singapore_back_builds_nothing(
    server: &Server,
    answer: impl Fn(&Server) -> Vec<String>,
    built: f64,
) {
    let taken_back = steered_tables(server, "taken_back");
    let path = "/nodes/lat.example/singapore/obey";
    assert_eq!(http(server.admin, "POST", path, None).0, 200);
    assert_eq!(answer(server), [TOKYO, SINGAPORE], "the feed's ranking");
    let tables = (
        steered_tables(server, "built"),
        steered_tables(server, "taken_back"),
    );
    assert_eq!(
        tables,
        (built, taken_back + 1.0),
        "the change undone builds nothing"
    );
}

/// Answers built from a feed's rankings where they were ranked are built again for a change
/// published meanwhile, before the publisher takes them: adopting the rankings then builds
/// no table, and the change undone right after takes back the tables built before it. The
/// fault `slow-prebuild` (debug builds) holds the ranking thread two seconds after it first
/// built them, so the change lands between.
#[test]
fn answers_built_beside_new_rankings_catch_up_with_a_change_made_meanwhile() {
    let (server, answer, batch) = seoul_server("latency-caught-up", "slow-prebuild");
    let count = |series: &str| metric_sum(&scrape(&server), series);
    let tables = |how: &str| steered_tables(&server, how);
    let (built, kept) = (tables("built"), tables("kept"));
    let (status, body) = http_json(server.admin, "POST", "/latency", None, batch);
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(10),
        "the feed's answers built where it was ranked",
        || match tables("built") > built {
            true => Ok(()),
            false => Err("no table built".into()),
        },
    );
    assert_eq!(tables("built"), built + 1.0, "the one steered name, once");
    // Singapore fails while the ranking thread holds those answers.
    let rebuilds = count("geosteer_answer_rebuild_seconds_count");
    let path = "/nodes/lat.example/singapore/force-down";
    assert_eq!(http(server.admin, "POST", path, None).0, 200);
    assert_eq!(
        count("geosteer_answer_rebuild_seconds_count"),
        rebuilds + 1.0,
        "the change published, the feed's rankings not yet adopted"
    );
    assert_eq!(tables("built"), built + 2.0, "the change's build");
    until_adopted(&server, rebuilds + 1.0);
    assert_eq!(answer(&server), [TOKYO, SEOUL], "Singapore is down");
    assert_eq!(
        (tables("built"), tables("kept")),
        (built + 3.0, kept + 1.0),
        "caught up where they were ranked: adopted as they were"
    );
    // Back: the tables built before the change are taken back, as the feed ranked them.
    singapore_back_builds_nothing(&server, answer, built + 3.0);
}

/// A change made before a feed's rankings and undone right after they are adopted takes
/// back answers built from them for the states before the change: the ranking thread builds
/// those first, then the states published.
#[test]
fn a_change_undone_right_after_new_rankings_are_adopted_builds_nothing() {
    let (server, answer, batch) = seoul_server("latency-undone-after", "none");
    let path = "/nodes/lat.example/singapore/force-down";
    assert_eq!(http(server.admin, "POST", path, None).0, 200);
    let rebuilds = metric_sum(&scrape(&server), "geosteer_answer_rebuild_seconds_count");
    let built = steered_tables(&server, "built");
    let (status, body) = http_json(server.admin, "POST", "/latency", None, batch);
    assert_eq!(status, 200, "{body}");
    until_adopted(&server, rebuilds);
    assert_eq!(answer(&server), [TOKYO, SEOUL], "Singapore is down");
    assert_eq!(
        steered_tables(&server, "built"),
        built + 2.0,
        "built where ranked: for Singapore up, then down; adopted as they were"
    );
    singapore_back_builds_nothing(&server, answer, built + 2.0);
}
