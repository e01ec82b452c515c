//! Hot reload: policy and database changes are validated first and swapped in whole; a bad
//! file keeps the last good state serving; node state survives.

use std::time::{Duration, Instant};

use crate::support::nodes::{Behaviour, FakeNode, http_json};
use crate::support::*;

fn policy(tokyo: &str) -> String {
    format!(
        "zone: rl.example\nsoa: {{primary: ns1.rl.example., contact: h.rl.example.}}\nns: [ns1.rl.example.]\ncheck:\n  type: none\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{tokyo}]}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [192.0.2.2]}}\n\
         steer:\n  ingest: {{answers: 2}}\n"
    )
}

#[test]
fn two_hundred_reloads_good_and_bad_never_fail_a_query() {
    let dir = zone_dir("reload", &policy("192.0.2.1"));
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let stream = QueryLoop::start(server.addr, from("127.1.0.5"), "ingest.rl.example.");
    let good = |i: usize| {
        policy(if i.is_multiple_of(4) {
            "192.0.2.1"
        } else {
            "192.0.2.101"
        })
    };
    for i in 0..200usize {
        if i.is_multiple_of(2) {
            std::fs::write(dir.join("zone.yaml"), good(i)).expect("write policy");
            let (status, body) = http(server.admin, "POST", "/reload", None);
            assert_eq!(status, 200, "reload {i}: {body}");
        } else {
            std::fs::write(
                dir.join("zone.yaml"),
                policy("192.0.2.1").replace("singapore: {", "singapore: {nope: 1, "),
            )
            .expect("write policy");
            let (status, body) = http(server.admin, "POST", "/reload", None);
            assert_eq!(status, 400, "bad reload {i} accepted: {body}");
            assert!(
                body.contains("zone.yaml:") && body.contains("nope"),
                "{body}"
            );
        }
    }
    let (_, status) = http(server.admin, "GET", "/status", None);
    assert!(
        status.contains("\"ok\":false") && status.contains("nope"),
        "{status}"
    );
    let log = stream.finish();
    assert!(log.len() > 20);
    for (_, seen) in &log {
        match seen {
            Seen::Answer(a) => {
                let complete =
                    a == &["192.0.2.1", "192.0.2.2"] || a == &["192.0.2.101", "192.0.2.2"];
                assert!(complete, "an answer from no good state: {a:?}");
            }
            other => panic!("a query failed during reloads: {other:?}"),
        }
    }
    // The last reload was bad: the last good state (i = 198 → 192.0.2.101) serves.
    let reply = udp_from(
        &server,
        from("127.1.0.5"),
        &q("ingest.rl.example.", hickory_proto::rr::RecordType::A),
    );
    assert_eq!(a_records(&reply), vec!["192.0.2.101", "192.0.2.2"]);
    // Counted: at least the requested ones (the file watcher may add some of its own).
    let (_, metrics) = http(server.admin, "GET", "/metrics", None);
    let count = |result: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("geosteer_reloads_total{{result=\"{result}\"}}")))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(count("ok") >= 100.0 && count("error") >= 100.0, "{metrics}");
}

#[test]
fn overrides_survive_and_a_swapped_geoip_file_is_picked_up() {
    let dir = zone_dir("reload-geo", &policy("192.0.2.1"));
    let geo = dir.join("geo.mmdb");
    std::fs::copy(repo("tests/fixtures/geo-city.mmdb"), &geo).expect("copy database");
    let server = Server::start(&dir, &geo, &[]);
    let query = || {
        a_records(&udp_from(
            &server,
            from("127.1.0.5"),
            &q("ingest.rl.example.", hickory_proto::rr::RecordType::A),
        ))
    };
    assert_eq!(query(), vec!["192.0.2.1", "192.0.2.2"]);
    assert_eq!(
        http(
            server.admin,
            "POST",
            "/nodes/rl.example/singapore/drain",
            None
        )
        .0,
        200
    );
    assert_eq!(query(), vec!["192.0.2.1"]);
    let (status, _) = http(server.admin, "POST", "/reload", None);
    assert_eq!(status, 200);
    assert_eq!(query(), vec!["192.0.2.1"], "the drain survives a reload");
    // Swap the database for one that does not know 127.1/16: the file watcher reloads, and
    // the client becomes unlocated (no default: the catch-all in list order).
    std::fs::copy(repo("tests/fixtures/geo-extra.mmdb"), &geo).expect("swap database");
    eventually(Duration::from_secs(10), "the new database loading", || {
        let (_, why) = http(
            server.admin,
            "GET",
            "/explain?name=ingest.rl.example.&client=127.1.0.5",
            None,
        );
        if why.contains("not in the database") {
            Ok(())
        } else {
            Err(why)
        }
    });
    let (_, body) = http(server.admin, "GET", "/nodes", None);
    assert!(body.contains("\"override\":\"drain\""), "{body}");
}

#[test]
fn systemd_hears_ready_reloading_and_ready_again() {
    use std::os::unix::net::UnixDatagram;
    let dir = zone_dir("notify", &policy("192.0.2.1"));
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind a notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let server = Server::start_with_env(
        &dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8 path"))],
    );
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(next().contains("READY=1"));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("send SIGHUP");
    assert!(status.success());
    let reloading = next();
    assert!(
        reloading.contains("RELOADING=1") && reloading.contains("MONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(next().contains("READY=1"));
    let (_, status) = http(server.admin, "GET", "/status", None);
    assert!(status.contains("\"ok\":true"), "{status}");
}

#[test]
fn sigterm_answers_queries_already_sent_then_exits_cleanly() {
    use std::io::{Read, Write};
    let dir = zone_dir("sigterm", &policy("192.0.2.1"));
    let mut server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let mut idle = std::net::TcpStream::connect(server.addr).expect("an idle connection");
    let mut busy = std::net::TcpStream::connect(server.addr).expect("a busy connection");
    busy.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let queries: Vec<Vec<u8>> = (0..5u16)
        .map(|i| {
            q("ingest.rl.example.", hickory_proto::rr::RecordType::A)
                .id(i)
                .bytes()
        })
        .collect();
    // Both connections are accepted and served before the signal (one query each): a
    // connection still in the kernel's accept queue at shutdown is refused, by design.
    let warm_up = |stream: &mut std::net::TcpStream| {
        let query = q("ingest.rl.example.", hickory_proto::rr::RecordType::A)
            .id(99)
            .bytes();
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed).expect("send a warm-up query");
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).expect("a warm-up response");
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        stream
            .read_exact(&mut reply)
            .expect("the whole warm-up response");
    };
    warm_up(&mut busy);
    warm_up(&mut idle);
    let mut pipelined = Vec::new();
    for query in &queries {
        pipelined.extend_from_slice(&(query.len() as u16).to_be_bytes());
        pipelined.extend_from_slice(query);
    }
    busy.write_all(&pipelined).expect("send queries");
    let sent = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    for i in 0..5u16 {
        let mut len = [0u8; 2];
        busy.read_exact(&mut len)
            .expect("a response to a query sent before SIGTERM");
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        busy.read_exact(&mut reply).expect("the whole response");
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), i);
    }
    // The idle connection is closed, not held until the idle timeout.
    let mut byte = [0u8; 1];
    assert_eq!(
        idle.read(&mut byte)
            .expect("closed, not reset or timed out"),
        0
    );
    let exit = server
        .wait_exit(Duration::from_secs(5))
        .expect("the server exits");
    assert!(exit.success(), "{exit:?}");
    assert!(sent.elapsed() < Duration::from_secs(5));
}

/// Health state carries over a reload without a transition: with one node up and one down,
/// fifty reloads (some after an edited comment) log and count no transition, and the checks
/// go on from the state they had.
#[test]
fn fifty_reloads_with_a_node_down_count_no_transitions() {
    let tokyo = FakeNode::start("127.0.0.71", Behaviour::Tcp);
    let mut singapore = FakeNode::start("127.0.0.72", Behaviour::Tcp);
    singapore.stop();
    let text = format!(
        "zone: rl.example\nsoa: {{primary: ns1.rl.example., contact: h.rl.example.}}\nns: [ns1.rl.example.]\n\
         check: {{type: tcp, interval: 100ms, recheck: 50ms, rise: 2, fall: 2}}\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{port: {}}}}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{}], check: {{port: {}}}}}\n\
         steer:\n  ingest: {{answers: 2}}\n",
        tokyo.addr.ip(),
        tokyo.addr.port(),
        singapore.addr.ip(),
        singapore.addr.port()
    );
    let dir = zone_dir("reload-transitions", &text);
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let transitions = || metric_sum(&scrape(&server), "geosteer_node_transitions_total");
    let checks = || metric_sum(&scrape(&server), "geosteer_health_checks_total");
    // The first results: Unknown → Up and Unknown → Down, real transitions both.
    eventually(Duration::from_secs(10), "both nodes checked", || {
        let seen = transitions();
        if seen == 2.0 {
            Ok(())
        } else {
            Err(format!("{seen} transitions"))
        }
    });
    let query = || {
        a_records(&udp_from(
            &server,
            from("127.1.0.5"),
            &q("ingest.rl.example.", hickory_proto::rr::RecordType::A),
        ))
    };
    let tokyo_only = vec![tokyo.addr.ip().to_string()];
    assert_eq!(query(), tokyo_only);
    for round in 0..50 {
        if round % 5 == 0 {
            let edited = format!("{text}# edit {round}\n");
            std::fs::write(dir.join("zone.yaml"), edited).expect("edit the policy");
        }
        let (status, body) = http(server.admin, "POST", "/reload", None);
        assert_eq!(status, 200, "reload {round}: {body}");
        assert_eq!(
            query(),
            tokyo_only,
            "reload {round}: the down node stays out"
        );
    }
    // The restarted checks have run several rounds since the last reload.
    let before = checks();
    eventually(Duration::from_secs(10), "checks after the reloads", || {
        let seen = checks();
        if seen >= before + 8.0 {
            Ok(())
        } else {
            Err(format!("{seen} checks"))
        }
    });
    assert_eq!(transitions(), 2.0, "reloads are no transitions");
    assert_eq!(query(), tokyo_only);
}

/// Answer damping carries over a reload: a client group held on its incumbent by
/// hysteresis stays on it across a reload that changes nothing about that group.
#[test]
fn a_reload_keeps_clients_held_by_hysteresis() {
    let text = "zone: rl.example\nsoa: {primary: ns1.rl.example., contact: h.rl.example.}\nns: [ns1.rl.example.]\ncheck: {type: none}\nnodes:\n\
         \x20 tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1]}\n\
         \x20 singapore: {geo: AS-SG, location: [1.35, 103.82], addresses: [192.0.2.2]}\n\
         steer:\n  ingest: {answers: 1, latency: {margin: 20%, hold: 3600s}}\n";
    let dir = zone_dir("reload-damping", text);
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let query = || {
        a_records(&udp_from(
            &server,
            from("127.1.0.5"),
            &q("ingest.rl.example.", hickory_proto::rr::RecordType::A),
        ))
    };
    assert_eq!(query(), vec!["192.0.2.1"], "Tokyo is nearest");
    // Singapore measures far better for Japan, but must stay better for an hour first.
    let feed = r#"{"zone": "rl.example", "measurements": [
        {"group": "AS-JP", "node": "tokyo", "rtt_ms": 200},
        {"group": "AS-JP", "node": "singapore", "rtt_ms": 20}]}"#;
    let (status, body) = http_json(server.admin, "POST", "/latency", None, feed);
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(10), "the challenger timed", || {
        let (_, why) = http(
            server.admin,
            "GET",
            "/explain?name=ingest.rl.example.&client=127.1.0.5",
            None,
        );
        if why.contains("held by hysteresis") {
            Ok(())
        } else {
            Err(why)
        }
    });
    assert_eq!(query(), vec!["192.0.2.1"], "held");
    std::fs::write(dir.join("zone.yaml"), format!("{text}# edited\n")).expect("edit");
    let (status, body) = http(server.admin, "POST", "/reload", None);
    assert_eq!(status, 200, "{body}");
    let (_, why) = http(
        server.admin,
        "GET",
        "/explain?name=ingest.rl.example.&client=127.1.0.5",
        None,
    );
    assert!(why.contains("held by hysteresis"), "{why}");
    assert_eq!(query(), vec!["192.0.2.1"], "still held after the reload");
}

/// Reads never queue behind the writer: while a reload loads and ranks a large database
/// (the publisher busy for a while), `/nodes`, `/readyz`, `/status` and `/config` keep
/// answering from the published view, many times over, before the reload replies.
#[test]
fn reads_answer_while_the_writer_reloads() {
    let dir = zone_dir("reload-reads", &policy("192.0.2.1"));
    let db = repo("geo/dbip-country.mmdb");
    let server = Server::start(&dir, &db, &[]);
    let admin = server.admin;
    let reload = std::thread::spawn(move || http(admin, "POST", "/reload", None));
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reload.is_finished() && Instant::now() < deadline {
        for path in ["/nodes", "/readyz", "/status", "/config"] {
            let (status, body) = http(admin, "GET", path, None);
            assert_eq!(status, 200, "{path}: {body}");
        }
        if !reload.is_finished() {
            answered += 1;
        }
    }
    let (status, body) = reload.join().expect("the reload thread");
    assert_eq!(status, 200, "{body}");
    // Queued behind the reload, at most the first round could have been answered before
    // it; from the view, every round is.
    assert!(
        answered >= 5,
        "only {answered} rounds of reads answered during the reload"
    );
    let (_, nodes) = http(admin, "GET", "/nodes", None);
    assert!(nodes.contains("\"tokyo\""), "{nodes}");
}
