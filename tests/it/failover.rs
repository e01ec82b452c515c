//! Health checking end to end: real fake nodes on loopback, really stopped and restarted, a
//! steady query stream against the real server, and the admin interface.

use std::time::{Duration, Instant};

use crate::support::nodes::{Behaviour, FakeNode, http};
use crate::support::*;

/// Check settings of these tests: fast, so the suite stays quick.
const INTERVAL: Duration = Duration::from_millis(300);
const RECHECK: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(1);
const RISE: u32 = 3;
const FALL: u32 = 3;

/// A zone whose nodes are `(name, tier, geo, [lat, lon], fake node)`, checked with `check`
/// (YAML flow map without braces), and `steer` (YAML for the `steer:` block).
/// A node of a test zone: name, tier, geo code, location and the fake node behind it.
type NodeSpec<'a> = (&'a str, &'a str, &'a str, (f64, f64), &'a FakeNode);

fn policy(nodes: &[NodeSpec], check: &str, steer: &str) -> String {
    let mut out = format!(
        "zone: hc.example\nsoa: {{primary: ns1.hc.example., contact: h.hc.example.}}\nns: [ns1.hc.example.]\n\
         check: {{{check}, interval: {}ms, recheck: {}ms, timeout: {}ms, rise: {RISE}, fall: {FALL}}}\nnodes:\n",
        INTERVAL.as_millis(),
        RECHECK.as_millis(),
        TIMEOUT.as_millis()
    );
    for (name, tier, geo, (lat, lon), node) in nodes {
        out += &format!(
            "  {name}: {{tier: {tier}, geo: {geo}, location: [{lat}, {lon}], addresses: [{}], check: {{port: {}}}}}\n",
            node.addr.ip(),
            node.addr.port()
        );
    }
    out + "steer:\n" + steer
}

fn start(name: &str, policy: &str) -> Server {
    Server::start(
        &zone_dir(name, policy),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    )
}

const TOKYO_CLIENT: &str = "127.1.0.5";
const GERMAN_CLIENT: &str = "127.3.0.5";

fn answers(seen: &Seen) -> Vec<String> {
    match seen {
        Seen::Answer(a) => a.clone(),
        _ => Vec::new(),
    }
}

fn is(expected: &[&FakeNode]) -> impl Fn(&Seen) -> bool {
    let want: Vec<String> = expected.iter().map(|n| n.addr.ip().to_string()).collect();
    move |seen| answers(seen) == want
}

/// Every query of the run got an answer with at least one address.
fn assert_no_failures(log: &[(Instant, Seen)]) {
    assert!(log.len() > 20, "the query loop ran ({} queries)", log.len());
    let bad: Vec<&(Instant, Seen)> = log
        .iter()
        .filter(|(_, s)| !matches!(s, Seen::Answer(a) if !a.is_empty()))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} queries failed, e.g. {:?}",
        bad.len(),
        log.len(),
        bad.first()
    );
}

#[test]
fn failed_node_leaves_answers_fast_and_returns_after_rise() {
    let mut tokyo = FakeNode::start("127.0.0.11", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.12", Behaviour::Tcp);
    let sydney = FakeNode::start("127.0.0.13", Behaviour::Tcp);
    let server = start(
        "failover",
        &policy(
            &[
                ("tokyo", "core", "AS-JP", (35.68, 139.69), &tokyo),
                ("singapore", "core", "AS-SG", (1.35, 103.82), &singapore),
                ("sydney", "core", "OC-AU", (-33.87, 151.21), &sydney),
            ],
            "type: tcp",
            "  ingest: {answers: 1}\n",
        ),
    );
    wait_healthy(&server, &["tokyo", "singapore", "sydney"]);
    let stream = QueryLoop::start(server.addr, from(TOKYO_CLIENT), "ingest.hc.example.");
    let begin = Instant::now();
    assert!(
        stream
            .first(begin, Duration::from_secs(5), is(&[&tokyo]))
            .is_some(),
        "Tokyo answers first"
    );

    let killed = Instant::now();
    tokyo.stop();
    let bound = INTERVAL * FALL + TIMEOUT + Duration::from_secs(1);
    let gone = stream
        .first(killed, bound, |s| {
            !answers(s).contains(&"127.0.0.11".to_string())
        })
        .unwrap_or_else(|| panic!("Tokyo still answered {bound:?} after it died"));
    eprintln!("refused: out of answers {:?} after the kill", gone - killed);
    assert!(
        stream
            .first(gone, Duration::from_millis(100), is(&[&singapore]))
            .is_some(),
        "the next nearest takes over"
    );

    let restarted = Instant::now();
    tokyo.restart();
    let back = stream
        .first(
            restarted,
            INTERVAL + RECHECK * RISE + Duration::from_secs(2),
            is(&[&tokyo]),
        )
        .expect("Tokyo comes back after it recovers");
    eprintln!("back in answers {:?} after the restart", back - restarted);
    // Not before `rise` successes: they are at least (rise - 1) rechecks apart.
    assert!(
        back - restarted >= RECHECK * (RISE - 1),
        "back after {:?}: too soon for rise={RISE}",
        back - restarted
    );
    let log = stream.finish();
    assert_no_failures(&log);
}

#[test]
fn backups_stand_in_and_fail_open_when_all_are_down() {
    let mut tokyo = FakeNode::start("127.0.0.21", Behaviour::Tcp);
    let mut singapore = FakeNode::start("127.0.0.22", Behaviour::Tcp);
    let mut backup = FakeNode::start("127.0.0.23", Behaviour::Tcp);
    let server = start(
        "backup",
        &policy(
            &[
                ("tokyo", "core", "AS-JP", (35.68, 139.69), &tokyo),
                ("singapore", "edge", "AS-SG", (1.35, 103.82), &singapore),
                ("osaka-b", "backup", "AS-JP", (34.69, 135.50), &backup),
            ],
            "type: tcp",
            "  ingest: {answers: 2, degraded_ttl: 5}\n",
        ),
    );
    wait_healthy(&server, &["tokyo", "singapore", "osaka-b"]);
    let stream = QueryLoop::start(server.addr, from(TOKYO_CLIENT), "ingest.hc.example.");
    let t = Instant::now();
    let within = Duration::from_secs(4);
    assert!(
        stream.first(t, within, is(&[&tokyo, &singapore])).is_some(),
        "backup idles while primaries are up"
    );
    tokyo.stop();
    assert!(
        stream
            .first(t, within, is(&[&singapore, &backup]))
            .is_some(),
        "backup stands in for Tokyo"
    );
    singapore.stop();
    assert!(
        stream.first(t, within, is(&[&backup])).is_some(),
        "backup alone"
    );
    let ttl = udp_from(
        &server,
        from(TOKYO_CLIENT),
        &q("ingest.hc.example.", hickory_proto::rr::RecordType::A),
    );
    assert!(
        ttl.answers.iter().all(|r| r.ttl == 5),
        "degraded TTL while nodes are down"
    );
    backup.stop();
    // Fail-open: every node down, answer as if all were up.
    let open = Instant::now();
    assert!(
        stream
            .first(open, within, is(&[&tokyo, &singapore]))
            .is_some(),
        "fail-open"
    );
    tokyo.restart();
    singapore.restart();
    backup.restart();
    let healed = Instant::now();
    assert!(
        stream
            .first(healed, within, is(&[&tokyo, &singapore]))
            .is_some()
    );
    assert_no_failures(&stream.finish());
}

#[test]
fn fences_hold_during_failover_and_fail_closed_answers_servfail() {
    let mut frankfurt = FakeNode::start("127.0.0.31", Behaviour::Tcp);
    let mut london = FakeNode::start("127.0.0.32", Behaviour::Tcp);
    let tokyo = FakeNode::start("127.0.0.33", Behaviour::Tcp);
    let server = start(
        "fence",
        &policy(
            &[
                ("frankfurt", "core", "EU-DE", (50.11, 8.68), &frankfurt),
                ("london", "core", "EU-GB", (51.51, -0.13), &london),
                ("tokyo", "core", "AS-JP", (35.68, 139.69), &tokyo),
            ],
            "type: tcp",
            "  ingest:\n    answers: 2\n    rules:\n      - {geos: [EU], nodes: [frankfurt, london], fence: true}\n      - {}\n\
             \x20 closed:\n    answers: 2\n    all_down: fail-closed\n    rules:\n      - {geos: [EU], nodes: [frankfurt, london], fence: true}\n      - {}\n",
        ),
    );
    wait_healthy(&server, &["frankfurt", "london", "tokyo"]);
    let stream = QueryLoop::start(server.addr, from(GERMAN_CLIENT), "ingest.hc.example.");
    let t = Instant::now();
    let within = Duration::from_secs(4);
    assert!(
        stream
            .first(t, within, is(&[&frankfurt, &london]))
            .is_some()
    );
    frankfurt.stop();
    assert!(
        stream.first(t, within, is(&[&london])).is_some(),
        "one EU answer, never Tokyo"
    );
    london.stop();
    let all_down = Instant::now();
    // Fail-open inside the fence: the EU nodes as if up, still never Tokyo.
    assert!(
        stream
            .first(all_down, within, is(&[&frankfurt, &london]))
            .is_some()
    );
    // Explain says what the answer is: failing open, not "skips it".
    let explain = |name: &str| {
        http(
            server.admin,
            "GET",
            &format!("/explain?name={name}&client={GERMAN_CLIENT}"),
            None,
        )
        .1
    };
    let why = explain("ingest.hc.example.");
    assert!(
        why.contains("every allowed node is down; the name fails open"),
        "{why}"
    );
    // The fail-closed name answers SERVFAIL once every allowed node is down.
    eventually(within, "fail-closed SERVFAIL", || {
        let reply = udp_from(
            &server,
            from(GERMAN_CLIENT),
            &q("closed.hc.example.", hickory_proto::rr::RecordType::A),
        );
        match reply.metadata.response_code {
            hickory_proto::op::ResponseCode::ServFail => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let why = explain("closed.hc.example.");
    assert!(why.contains("the name fails closed: SERVFAIL"), "{why}");
    // dig says why too: an Extended DNS Error (RFC 8914).
    let reply = udp_from(
        &server,
        from(GERMAN_CLIENT),
        &q("closed.hc.example.", hickory_proto::rr::RecordType::A),
    );
    assert_eq!(
        extended_error(&reply),
        Some((0, "every node allowed for this client is down".to_string()))
    );
    // Outside the fence the same name still answers.
    let reply = udp_from(
        &server,
        from(TOKYO_CLIENT),
        &q("closed.hc.example.", hickory_proto::rr::RecordType::A),
    );
    assert_eq!(a_records(&reply), vec!["127.0.0.33".to_string()]);
    let log = stream.finish();
    for (_, seen) in &log {
        assert!(
            !answers(seen).contains(&"127.0.0.33".to_string()),
            "the fence held for every query"
        );
    }
    assert_no_failures(&log);
}

#[test]
fn operators_drain_and_see_node_state() {
    let tokyo = FakeNode::start("127.0.0.41", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.42", Behaviour::Tcp);
    let server = start(
        "drain",
        &policy(
            &[
                ("tokyo", "core", "AS-JP", (35.68, 139.69), &tokyo),
                ("singapore", "core", "AS-SG", (1.35, 103.82), &singapore),
            ],
            "type: tcp",
            "  ingest: {answers: 1}\n",
        ),
    );
    let query = || {
        a_records(&udp_from(
            &server,
            from(TOKYO_CLIENT),
            &q("ingest.hc.example.", hickory_proto::rr::RecordType::A),
        ))
    };
    assert_eq!(query(), vec!["127.0.0.41"]);
    let (status, body) = http(server.admin, "POST", "/nodes/hc.example/tokyo/drain", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"override\":\"drain\""), "{body}");
    // The reply comes after publication: the very next query no longer gets Tokyo.
    assert_eq!(query(), vec!["127.0.0.42"]);
    let (status, body) = http(server.admin, "GET", "/nodes", None);
    assert_eq!(status, 200);
    let nodes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let tokyo_state = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == "tokyo"))
        .expect("tokyo listed");
    assert_eq!(tokyo_state["availability"], "admin-down");
    assert_eq!(tokyo_state["zone"], "hc.example.");
    assert!(
        tokyo_state["check"]
            .as_str()
            .unwrap_or_default()
            .starts_with("tcp 127.0.0.41:")
    );
    let (status, _) = http(server.admin, "POST", "/nodes/hc.example/tokyo/obey", None);
    assert_eq!(status, 200);
    assert_eq!(query(), vec!["127.0.0.41"]);
    // Force-down and force-up, and bad requests.
    assert_eq!(
        http(
            server.admin,
            "POST",
            "/nodes/hc.example/tokyo/force-down",
            None
        )
        .0,
        200
    );
    assert_eq!(query(), vec!["127.0.0.42"]);
    assert_eq!(
        http(server.admin, "POST", "/nodes/hc.example/tokyo/obey", None).0,
        200
    );
    assert_eq!(
        http(server.admin, "POST", "/nodes/hc.example/nope/drain", None).0,
        404
    );
    assert_eq!(
        http(
            server.admin,
            "POST",
            "/nodes/hc.example/tokyo/explode",
            None
        )
        .0,
        400
    );
    // Checks report latency and results once they have run.
    eventually(Duration::from_secs(5), "checks reporting", || {
        let (_, body) = http(server.admin, "GET", "/nodes", None);
        let nodes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let checked = nodes.as_array().is_some_and(|a| {
            a.iter().all(|n| {
                n["last_ok"] == true
                    && n["last_latency_ms"].as_f64().is_some()
                    && n["health"] == "up"
            })
        });
        if checked { Ok(()) } else { Err(body) }
    });
    let (status, metrics) = http(server.admin, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("geosteer_health_checks_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("geosteer_node_up{zone=\"hc.example.\",node=\"tokyo\"} 1"),
        "{metrics}"
    );
}

#[test]
fn admin_token_is_enforced() {
    let tokyo = FakeNode::start("127.0.0.51", Behaviour::Tcp);
    let policy = policy(
        &[("tokyo", "core", "AS-JP", (35.68, 139.69), &tokyo)],
        "type: tcp",
        "  ingest: {answers: 1}\n",
    );
    let dir = zone_dir("token", &policy);
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write token");
    let server = Server::start(
        &dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &[
            "--admin-token-file",
            token_file.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(http(server.admin, "GET", "/nodes", None).0, 401);
    assert_eq!(http(server.admin, "GET", "/nodes", Some("wrong")).0, 401);
    assert_eq!(http(server.admin, "GET", "/nodes", Some("s3cret")).0, 200);
    // Off loopback without a token, the server refuses to start.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_geosteer"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "0.0.0.0:0",
            "--zones",
        ])
        .arg(&dir)
        .args(["--geo"])
        .arg(repo("tests/fixtures/geo-city.mmdb"))
        .env_remove("GEOSTEER_ADMIN_TOKEN")
        .output()
        .expect("run geosteer");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not on loopback: give it a token"),
        "{stderr}"
    );
}

#[test]
fn a_hung_target_does_not_delay_other_checks() {
    let hung = FakeNode::start("127.0.0.61", Behaviour::Hang);
    let mut tokyo = FakeNode::start("127.0.0.62", Behaviour::Http(200, "ok"));
    let singapore = FakeNode::start("127.0.0.63", Behaviour::Http(200, "ok"));
    let zone = format!(
        "zone: hc.example\nsoa: {{primary: ns1.hc.example., contact: h.hc.example.}}\nns: [ns1.hc.example.]\n\
         check: {{type: http, interval: 300ms, recheck: 100ms, rise: 2, fall: 3}}\nnodes:\n\
         \x20 hung: {{geo: AS-KR, location: [37.56, 126.97], addresses: [{}], check: {{port: {}, timeout: 20s}}}}\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{port: {}}}}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{}], check: {{port: {}}}}}\n\
         steer:\n  ingest: {{answers: 1, nodes: [tokyo, singapore]}}\n",
        hung.addr.ip(),
        hung.addr.port(),
        tokyo.addr.ip(),
        tokyo.addr.port(),
        singapore.addr.ip(),
        singapore.addr.port()
    );
    let server = start("hung", &zone);
    wait_healthy(&server, &["tokyo", "singapore"]);
    let stream = QueryLoop::start(server.addr, from(TOKYO_CLIENT), "ingest.hc.example.");
    let t = Instant::now();
    assert!(
        stream
            .first(t, Duration::from_secs(5), is(&[&tokyo]))
            .is_some()
    );
    // The hung node's probe is stuck for 20 s; Tokyo's failure must be seen at its own pace.
    let killed = Instant::now();
    tokyo.stop();
    let bound = INTERVAL * FALL + TIMEOUT + Duration::from_secs(1);
    assert!(
        stream.first(killed, bound, is(&[&singapore])).is_some(),
        "Tokyo's failure was not seen within {bound:?} while another target hung"
    );
    let (_, body) = http(server.admin, "GET", "/nodes", None);
    let nodes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let hung_state = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == "hung"))
        .expect("listed");
    assert!(
        hung_state["last_ok"].is_null(),
        "the hung probe has not finished: {hung_state}"
    );
    assert_no_failures(&stream.finish());
}

#[test]
fn readyz_waits_for_the_first_health_round() {
    let hung = FakeNode::start("127.0.0.65", Behaviour::Hang);
    let tokyo = FakeNode::start("127.0.0.66", Behaviour::Tcp);
    let zone = format!(
        "zone: hc.example\nsoa: {{primary: ns1.hc.example., contact: h.hc.example.}}\nns: [ns1.hc.example.]\nnodes:\n\
         \x20 hung: {{geo: AS-KR, location: [37.56, 126.97], addresses: [{}], check: {{type: http, port: {}, timeout: 3s}}}}\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{type: tcp, port: {}}}}}\n\
         steer:\n  ingest: {{answers: 1}}\n",
        hung.addr.ip(),
        hung.addr.port(),
        tokyo.addr.ip(),
        tokyo.addr.port()
    );
    let server = start("readyz", &zone);
    assert_eq!(http(server.admin, "GET", "/healthz", None).0, 200);
    let (status, body) = http(server.admin, "GET", "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("hc.example./hung"), "{body}");
    // Once the hung probe times out (3 s), every node has a result: ready.
    eventually(Duration::from_secs(10), "readiness", || {
        let (status, body) = http(server.admin, "GET", "/readyz", None);
        if status == 200 { Ok(()) } else { Err(body) }
    });
}

/// Backups stand in for every primary out of the answer, whatever took it out: a drained or
/// forced-down primary is replaced by the idle backup, as a health failure would be (the
/// shipped example: German clients get frankfurt-1 and london-1, amsterdam-b idles).
#[test]
fn backups_stand_in_for_drained_forced_down_and_full_primaries() {
    let server = Server::start(&repo("zones"), &repo("geo/dbip-country.mmdb"), &[]);
    let german = || {
        let reply = udp(
            &server,
            &q("ingest.live.example.net.", hickory_proto::rr::RecordType::A).ecs("85.214.0.0", 24),
        );
        a_records(&reply)
    };
    let (frankfurt, london, amsterdam) = ("198.51.100.32", "198.51.100.31", "198.51.100.33");
    assert_eq!(german(), vec![frankfurt, london], "every primary in");
    let node = |name: &str, action: &str| {
        let path = format!("/nodes/live.example.net/{name}/{action}");
        let (status, body) = http(server.admin, "POST", &path, None);
        assert_eq!(status, 200, "{path}: {body}");
    };
    // The reply to an override comes after the new tables are published: no waiting.
    node("frankfurt-1", "drain");
    assert_eq!(
        german(),
        vec![london, amsterdam],
        "the backup stands in for a drain"
    );
    node("frankfurt-1", "obey");
    assert_eq!(german(), vec![frankfurt, london], "the backup idles again");
    node("london-1", "force-down");
    assert_eq!(
        german(),
        vec![frankfurt, amsterdam],
        "and for a forced down"
    );
    node("frankfurt-1", "drain");
    assert_eq!(
        german(),
        vec![amsterdam],
        "the backup alone, never outside the fence"
    );
    // Full (the default capacity: a load of 100 %) takes a primary out the same way.
    node("frankfurt-1", "obey");
    node("london-1", "obey");
    let full = r#"{"zone": "live.example.net", "loads": [{"node": "frankfurt-1", "load": 1.0}]}"#;
    let (status, body) =
        crate::support::nodes::http_json(server.admin, "POST", "/latency", None, full);
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(5),
        "the backup standing in for a full node",
        || {
            let got = german();
            if got == vec![london, amsterdam] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
}

const FRENCH_CLIENT: &str = "127.11.0.5";

/// A fence over a set of places: the EU member states (the shipped `eu-27`), served from
/// Germany, France and the Netherlands. Nodes anywhere inside serve clients anywhere inside
/// (a German client may get Paris or Amsterdam), and with all but one of them down, German
/// and French clients get that one, never London or Tokyo: not even German clients matched
/// by an earlier subnet rule that lists London.
#[test]
fn an_eu_27_fence_holds_across_countries_with_all_but_one_node_down() {
    let mut frankfurt = FakeNode::start("127.0.0.34", Behaviour::Tcp);
    let paris = FakeNode::start("127.0.0.35", Behaviour::Tcp);
    let mut amsterdam = FakeNode::start("127.0.0.36", Behaviour::Tcp);
    let london = FakeNode::start("127.0.0.37", Behaviour::Tcp);
    let tokyo = FakeNode::start("127.0.0.38", Behaviour::Tcp);
    let server = start(
        "eu27",
        &policy(
            &[
                ("frankfurt", "core", "EU-DE", (50.11, 8.68), &frankfurt),
                ("paris", "core", "EU-FR", (48.86, 2.35), &paris),
                ("amsterdam", "core", "EU-NL", (52.37, 4.90), &amsterdam),
                ("london", "core", "EU-GB", (51.51, -0.13), &london),
                ("tokyo", "core", "AS-JP", (35.68, 139.69), &tokyo),
            ],
            "type: tcp",
            "  ingest:\n    answers: 2\n    pools:\n      eu: {nodes: [frankfurt, paris, amsterdam]}\n    rules:\n      - {subnets: [\"127.3.0.0/16\"], nodes: [frankfurt, london, amsterdam, paris]}\n      - {geos: [eu-27], pool: eu, fence: true}\n      - {}\n",
        ),
    );
    wait_healthy(
        &server,
        &["frankfurt", "paris", "amsterdam", "london", "tokyo"],
    );
    let german = QueryLoop::start(server.addr, from(GERMAN_CLIENT), "ingest.hc.example.");
    let french = QueryLoop::start(server.addr, from(FRENCH_CLIENT), "ingest.hc.example.");
    let t = Instant::now();
    let within = Duration::from_secs(4);
    assert!(
        german
            .first(t, within, is(&[&frankfurt, &amsterdam]))
            .is_some()
    );
    assert!(french.first(t, within, is(&[&paris, &amsterdam])).is_some());
    frankfurt.stop();
    assert!(
        german.first(t, within, is(&[&amsterdam, &paris])).is_some(),
        "a German client is served from the Netherlands and France"
    );
    amsterdam.stop();
    let one_left = Instant::now();
    assert!(german.first(one_left, within, is(&[&paris])).is_some());
    assert!(french.first(one_left, within, is(&[&paris])).is_some());
    // London is nearer to both clients than Paris is to Berlin: still never given.
    let outside = [london.addr.ip().to_string(), tokyo.addr.ip().to_string()];
    for log in [german.finish(), french.finish()] {
        for (_, seen) in &log {
            assert!(
                !answers(seen).iter().any(|a| outside.contains(a)),
                "an answer left the fence: {seen:?}"
            );
        }
        assert_no_failures(&log);
    }
    // A British client is outside the fence: London first.
    let reply = udp_from(
        &server,
        from("127.6.0.5"),
        &q("ingest.hc.example.", hickory_proto::rr::RecordType::A),
    );
    assert_eq!(a_records(&reply)[0], london.addr.ip().to_string());
}

/// Alone, overrides survive a restart through the state file: the restarted server's very
/// first answer leaves the drained node out (before any check has run), a clearing
/// survives too, and a damaged state file stops the start with an error that names it.
#[test]
fn overrides_survive_a_restart_through_the_state_file() {
    let tokyo = FakeNode::start("127.0.0.67", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.68", Behaviour::Tcp);
    let dir = zone_dir(
        "kept",
        &policy(
            &[
                ("tokyo", "core", "AS-JP", (35.68, 139.69), &tokyo),
                ("singapore", "core", "AS-SG", (1.35, 103.82), &singapore),
            ],
            "type: tcp",
            "  ingest: {answers: 1}\n",
        ),
    );
    let state = dir.join("state.json");
    let state_arg = state.to_str().expect("UTF-8");
    let start = || {
        Server::start(
            &dir,
            &repo("tests/fixtures/geo-city.mmdb"),
            &["--state-file", state_arg],
        )
    };
    let query = |server: &Server| {
        a_records(&udp_from(
            server,
            from(TOKYO_CLIENT),
            &q("ingest.hc.example.", hickory_proto::rr::RecordType::A),
        ))
    };
    let server = start();
    assert_eq!(query(&server), vec!["127.0.0.67"]);
    let (status, body) = http(server.admin, "POST", "/nodes/hc.example/tokyo/drain", None);
    assert_eq!(status, 200, "{body}");
    // Written off the publisher's task: wait until the file holds the drain.
    until_file(&state, "the drain in the state file", |text| {
        text.contains("\"drain\"")
    });
    drop(server);
    let server = start();
    assert_eq!(
        query(&server),
        vec!["127.0.0.68"],
        "the first answer after a restart"
    );
    let (status, _) = http(server.admin, "POST", "/nodes/hc.example/tokyo/obey", None);
    assert_eq!(status, 200);
    until_file(&state, "the clearing in the state file", |text| {
        !text.contains("\"drain\"")
    });
    drop(server);
    let server = start();
    assert_eq!(
        query(&server),
        vec!["127.0.0.67"],
        "cleared, after a restart"
    );
    drop(server);
    // A damaged file: the start fails and says which file and where.
    std::fs::write(&state, "{\"local\": [}").expect("damage the file");
    let (exited, _, stderr) = serve_until_exit(
        &dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--state-file", state_arg],
        Duration::from_secs(20),
    );
    assert!(
        exited.is_some_and(|s| !s.success()),
        "started on a damaged state file: {stderr}"
    );
    assert!(
        stderr.contains("state.json") && stderr.contains("line 1"),
        "{stderr}"
    );
}
