//! The admin interface as operators and monitoring use it: Prometheus text whose counters
//! move with traffic, the effective configuration, the token off loopback, and SOA serials
//! that follow edits across reloads.

use std::collections::HashMap;

use crate::support::nodes::http_json;
use crate::support::*;
use hickory_proto::rr::{RData, RecordType};

#[test]
fn metrics_parse_as_prometheus_text_and_the_counters_move() {
    let server = Server::test_zone();
    // Warm up once so every series exists, then take the baseline.
    udp(&server, &q("ingest.test.example.", RecordType::A));
    let before = scrape(&server);
    // The first build is timed too, so the rebuild series exists before any change.
    assert!(
        before
            .get("geosteer_answer_rebuild_seconds_count")
            .is_some_and(|n| *n >= 1.0),
        "no rebuild recorded at start"
    );
    let a_noerror =
        "geosteer_zone_queries_total{zone=\"test.example.\",qtype=\"A\",rcode=\"NOERROR\"}";
    let nx =
        "geosteer_zone_queries_total{zone=\"test.example.\",qtype=\"AAAA\",rcode=\"NXDOMAIN\"}";
    let tcp_noerror = "geosteer_queries_total{transport=\"tcp\",rcode=\"NOERROR\",ecs=\"yes\"}";
    let refused = "geosteer_queries_total{transport=\"udp\",rcode=\"REFUSED\",ecs=\"no\"}";
    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    for _ in 0..5 {
        let reply = udp_from(
            &server,
            from("127.1.0.9"),
            &q("ingest.test.example.", RecordType::A),
        );
        assert!(!a_records(&reply).is_empty());
    }
    for _ in 0..3 {
        tcp(
            &server,
            &q("ingest.test.example.", RecordType::A).ecs("127.1.0.0", 24),
        );
    }
    udp(&server, &q("nope.test.example.", RecordType::AAAA));
    udp(&server, &q("example.org.", RecordType::A));
    let after = scrape(&server);
    assert_eq!(get(&after, a_noerror) - get(&before, a_noerror), 8.0);
    assert_eq!(get(&after, nx) - get(&before, nx), 1.0);
    assert_eq!(get(&after, tcp_noerror) - get(&before, tcp_noerror), 3.0);
    assert_eq!(get(&after, refused) - get(&before, refused), 1.0);
    // Every answered address is counted against its node: 8 answers of `answers` nodes each.
    let answered = |m: &HashMap<String, f64>| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with("geosteer_node_answers_total{zone=\"test.example.\""))
            .map(|(_, v)| v)
            .sum()
    };
    let moved = answered(&after) - answered(&before);
    assert!(moved >= 8.0, "node answers moved by {moved}");
    // A steered name's available nodes, and reload health, are gauges alerts can use.
    let ingest_up = "geosteer_name_nodes_up{zone=\"test.example.\",name=\"ingest.test.example.\"}";
    assert_eq!(
        get(&after, ingest_up),
        10.0,
        "11 nodes, one of them down by policy"
    );
    assert_eq!(get(&after, "geosteer_reload_ok"), 1.0);
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/test.example/tokyo/drain",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let drained = scrape(&server);
    assert_eq!(get(&drained, ingest_up), 9.0);
    // The drained node's own gauge moves with it; another node's stays.
    let node_up =
        |node: &str| format!("geosteer_node_up{{zone=\"test.example.\",node=\"{node}\"}}");
    assert_eq!(get(&drained, &node_up("tokyo")), 0.0);
    assert_eq!(get(&drained, &node_up("frankfurt")), 1.0);
    // Node states are exported from the start.
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("geosteer_node_up{zone=\"test.example.\"")),
        "{after:?}"
    );
}

#[test]
fn config_shows_the_effective_policy_with_defaults() {
    let server = Server::test_zone();
    let (status, body) = http(server.admin, "GET", "/config", None);
    assert_eq!(status, 200, "{body}");
    let config: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(config["settings"]["max_udp_payload"], 1232);
    assert_eq!(config["settings"]["admin_token_set"], false);
    let zone = &config["policy"]["zones"][0];
    assert_eq!(zone["zone"], "test.example.");
    assert_eq!(zone["soa"]["serial"], 42);
    let steer = zone["steer"].as_array().expect("steered names");
    assert!(!steer.is_empty(), "{zone}");
    // Defaults the file does not write are filled in.
    assert_eq!(steer[0]["latency"]["margin"], 0.2);
    assert_eq!(steer[0]["all_down"], "fail-open");
}

#[test]
fn a_token_is_enforced_on_an_interface_off_loopback() {
    let dir = zone_dir(
        "admin-token-off-loopback",
        "zone: tk.example\nsoa: {primary: ns1.tk.example., contact: h.tk.example.}\nns: [ns1.tk.example.]\nrecords:\n  ns1: {type: A, value: 192.0.2.1}\n",
    );
    let token_file = dir.join("token");
    std::fs::write(&token_file, "t0ken\n").expect("write token");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_geosteer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
        .arg("--zones")
        .arg(&dir)
        .arg("--geo")
        .arg(repo("tests/fixtures/geo-city.mmdb"))
        .arg("--admin-token-file")
        .arg(&token_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start geosteer");
    let stdout = child.stdout.take().expect("piped");
    let admin = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("geosteer admin on http://")
                .map(|a| a.trim().to_string())
        })
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .expect("the admin line");
    assert!(admin.ip().is_unspecified(), "{admin}");
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], admin.port()));
    for path in ["/nodes", "/metrics", "/config", "/status"] {
        assert_eq!(http(local, "GET", path, None).0, 401, "{path}");
        assert_eq!(http(local, "GET", path, Some("wrong")).0, 401, "{path}");
        assert_eq!(http(local, "GET", path, Some("t0ken")).0, 200, "{path}");
    }
    assert_eq!(http(local, "POST", "/reload", None).0, 401);
    // The status page and its data need it too; a browser is asked for it (HTTP Basic,
    // any user name, the token as password).
    for path in ["/", "/map", "/what-if", "/map/shapes.json"] {
        assert_eq!(http(local, "GET", path, None).0, 401, "{path}");
    }
    let basic = |credentials: &str| {
        let encoded = base64_encode(credentials.as_bytes());
        let head = format!("GET / HTTP/1.1\r\nHost: {local}\r\nAuthorization: Basic {encoded}");
        admin_raw(local, &head).1
    };
    let refused = basic("operator:wrong");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused.contains("www-authenticate: Basic realm=\"geosteer admin\""),
        "{refused}"
    );
    let page = basic("operator:t0ken");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("<title>geosteer"),
        "{page}"
    );
    // Probes answer without it (kubelets and route announcers hold no secret).
    assert_eq!(http(local, "GET", "/healthz", None).0, 200);
    assert_eq!(http(local, "GET", "/readyz", None).0, 200);
    let _ = child.kill();
    let _ = child.wait();
}

fn soa_serial(server: &Server, name: &str) -> u32 {
    let reply = udp(server, &q(name, RecordType::SOA));
    reply
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .expect("an SOA answer")
}

#[test]
fn a_derived_serial_stays_for_an_unchanged_file_and_grows_with_every_edit() {
    let policy = |text: &str| {
        format!(
            "zone: sn.example\nsoa: {{primary: ns1.sn.example., contact: h.sn.example.}}\nns: [ns1.sn.example.]\n\
             records:\n  ns1: {{type: A, value: 192.0.2.1}}\n  \"@\": {{type: TXT, value: \"{text}\"}}\n"
        )
    };
    let dir = zone_dir("serial", &policy("one"));
    let file = dir.join("zone.yaml");
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let first = soa_serial(&server, "sn.example.");
    // Unchanged content (even touched): the serial stays.
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .expect("touch");
    assert_eq!(http(server.admin, "POST", "/reload", None).0, 200);
    assert_eq!(soa_serial(&server, "sn.example."), first);
    // Edited, with the modification time set back a day (a restored file): it still grows.
    // Written aside and renamed over, so the file watcher never sees it half done.
    let staged = dir.join("zone.yaml.new");
    std::fs::write(&staged, policy("two")).expect("edit");
    let yesterday = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .and_then(|f| f.set_modified(yesterday))
        .expect("set mtime");
    std::fs::rename(&staged, &file).expect("rename over the policy");
    assert_eq!(http(server.admin, "POST", "/reload", None).0, 200);
    let second = soa_serial(&server, "sn.example.");
    assert_eq!(second, first.wrapping_add(1));
    std::fs::write(&file, policy("three")).expect("edit");
    assert_eq!(http(server.admin, "POST", "/reload", None).0, 200);
    let third = soa_serial(&server, "sn.example.");
    assert!(
        third.wrapping_sub(second) > 0 && third.wrapping_sub(second) < 1 << 31,
        "{second} -> {third}"
    );
}

/// Standard base64 (RFC 4648), for a Basic credential.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A feed batch larger than etcd can carry to the fleet is refused with 413 and a message
/// that says so; one just under the cap is read (and judged on its content).
#[test]
fn a_feed_batch_too_large_to_share_is_refused_with_413() {
    let server = Server::test_zone();
    let cap = geosteer::latency::feed::MAX_BATCH_BYTES;
    let batch = |bytes: usize| {
        let load = r#"{"node": "tokyo", "load": 0.5},"#;
        let mut text = String::from(r#"{"loads": ["#);
        while text.len() + load.len() + 64 < bytes {
            text += load;
        }
        text += r#"{"node": "tokyo", "load": 0.5}]}"#;
        text
    };
    let over = batch(cap + 1024);
    assert!(over.len() > cap);
    let (status, body) = http_json(server.admin, "POST", "/latency", None, &over);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("at most 512 KiB"), "{body}");
    let under = batch(cap - 1024);
    assert!(under.len() <= cap);
    let (status, body) = http_json(server.admin, "POST", "/latency", None, &under);
    assert_eq!(status, 200, "{body}");
}

/// The operator's browser cannot be turned against the admin interface: a cross-site form
/// POST (no token on loopback, the default) changes nothing, a rebinding Host is refused on
/// every route, and with a token a browser's cached Basic login reads but never writes;
/// curl and scripts that mark their writes, and the bearer token, still work.
#[test]
fn cross_site_writes_and_rebinding_are_refused() {
    let server = Server::test_zone();
    let admin = server.admin;
    let drained = || {
        let (_, nodes) = http(admin, "GET", "/nodes", None);
        nodes.contains("\"override\":\"drain\"")
    };
    let form = format!(
        "POST /nodes/test.example/tokyo/drain HTTP/1.1\r\nHost: {admin}\r\n\
         Origin: http://evil.example\r\nContent-Type: application/x-www-form-urlencoded"
    );
    let (status, response) = admin_raw(admin, &form);
    assert_eq!(status, 403, "{response}");
    assert!(response.contains("X-Geosteer"), "{response}");
    // Without an Origin (older browsers, some redirects), a body a script could send: still
    // not a request a page cannot forge.
    let plain = format!("POST /reload HTTP/1.1\r\nHost: {admin}\r\nContent-Type: text/plain");
    assert_eq!(admin_raw(admin, &plain).0, 403);
    let marked_cross_site = format!(
        "POST /nodes/test.example/tokyo/drain HTTP/1.1\r\nHost: {admin}\r\nX-Geosteer: 1\r\nSec-Fetch-Site: cross-site"
    );
    assert_eq!(admin_raw(admin, &marked_cross_site).0, 403);
    assert!(!drained(), "a refused request drained the node");
    // DNS rebinding: a name the attacker owns, pointed at this address.
    for path in ["/config", "/nodes", "/", "/readyz"] {
        let rebound = format!("GET {path} HTTP/1.1\r\nHost: rebind.evil.example:8053");
        let (status, response) = admin_raw(admin, &rebound);
        assert_eq!(status, 421, "{path}: {response}");
    }
    assert_eq!(
        admin_raw(
            admin,
            &format!("GET /config HTTP/1.1\r\nHost: localhost:{}", admin.port())
        )
        .0,
        200
    );
    // What operators do: curl -XPOST (none of a browser's marks), the header, or a JSON
    // body (the harness's requests).
    let curl = format!("POST /nodes/test.example/tokyo/drain HTTP/1.1\r\nHost: {admin}");
    assert_eq!(admin_raw(admin, &curl).0, 200);
    assert!(drained());
    assert_eq!(
        http(admin, "POST", "/nodes/test.example/tokyo/obey", None).0,
        200
    );
    let curl =
        format!("POST /nodes/test.example/tokyo/drain HTTP/1.1\r\nHost: {admin}\r\nX-Geosteer: 1");
    assert_eq!(admin_raw(admin, &curl).0, 200);
    assert!(drained());
    assert_eq!(
        http(admin, "POST", "/nodes/test.example/tokyo/obey", None).0,
        200
    );
    assert!(!drained());
    // With a token: the Basic login a browser caches reads, and never writes.
    let secured = Server::start_with_env(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
        &[("GEOSTEER_ADMIN_TOKEN", "s3cret")],
    );
    let basic = format!("Authorization: Basic {}", base64_encode(b"operator:s3cret"));
    let host = format!("Host: {}", secured.admin);
    assert_eq!(
        admin_raw(
            secured.admin,
            &format!("GET /nodes HTTP/1.1\r\n{host}\r\n{basic}")
        )
        .0,
        200
    );
    let write = format!(
        "POST /nodes/test.example/tokyo/drain HTTP/1.1\r\n{host}\r\n{basic}\r\nX-Geosteer: 1"
    );
    let (status, response) = admin_raw(secured.admin, &write);
    assert_eq!(status, 403, "{response}");
    assert!(response.contains("Bearer"), "{response}");
    let bearer = format!(
        "POST /nodes/test.example/tokyo/drain HTTP/1.1\r\n{host}\r\nAuthorization: Bearer s3cret"
    );
    assert_eq!(admin_raw(secured.admin, &bearer).0, 200);
}

/// An audit trail: with named tokens (`name token` lines), a change records who made it and
/// why — in `/nodes`, the timeline and the log — and a token file that is not one is
/// refused at start with its line.
#[test]
fn overrides_record_who_and_why() {
    let dir = zone_dir(
        "admin-audit",
        "zone: au.example\nsoa: {primary: ns1.au.example., contact: h.au.example.}\nns: [ns1.au.example.]\ncheck: {type: none}\n\
         nodes:\n  tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1]}\n  osaka: {geo: AS-JP, location: [34.69, 135.50], addresses: [192.0.2.2]}\n\
         steer:\n  ingest: {}\n",
    );
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        "# who may change what\nalice s3cret-a\nbob s3cret-b\n",
    )
    .expect("tokens");
    let token_arg = tokens.to_str().expect("UTF-8");
    let server = Server::start(
        &dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--admin-token-file", token_arg],
    );
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/au.example/tokyo/drain?reason=kernel%20upgrade",
        Some("s3cret-a"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""override_by":{"by":"alice","reason":"kernel upgrade"}"#),
        "{body}"
    );
    let (status, _) = http(
        server.admin,
        "POST",
        "/nodes/au.example/osaka/drain",
        Some("wrong"),
    );
    assert_eq!(status, 401);
    let (_, body) = http(
        server.admin,
        "POST",
        "/nodes/au.example/tokyo/obey",
        Some("s3cret-b"),
    );
    assert!(body.contains(r#""override_by":{"by":"bob"}"#), "{body}");
    let (_, map) = page_data_with(server.admin, "/map?name=ingest.au.example.", "s3cret-a");
    assert!(map.contains("drained by alice (kernel upgrade)"), "{map}");
    assert!(map.contains("override cleared by bob"), "{map}");
    drop(server);
    // A token file of three words on a line is refused, with the line.
    std::fs::write(&tokens, "alice s3cret-a extra\n").expect("tokens");
    let (exited, _, stderr) = serve_until_exit(
        &dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--admin-token-file", token_arg],
        std::time::Duration::from_secs(20),
    );
    assert!(exited.is_some_and(|s| !s.success()), "{stderr}");
    assert!(
        stderr.contains("tokens: line 1: expected `name token`"),
        "{stderr}"
    );
}

/// `GET path` with a bearer token, retried while the status page's worker is busy.
fn page_data_with(admin: std::net::SocketAddr, path: &str, token: &str) -> (u16, String) {
    eventually(std::time::Duration::from_secs(30), path, || {
        let (status, body) = http(admin, "GET", path, Some(token));
        if status == 429 {
            Err(body)
        } else {
            Ok((status, body))
        }
    })
}
