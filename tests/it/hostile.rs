//! Input as an attacker (or a broken probe agent) sends it: no value from outside may stop
//! the task that owns node state, so failover keeps working after every refusal.

use std::time::Duration;

use crate::support::nodes::{Behaviour, FakeNode, http, http_json};
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

/// A query for `ingest.test.example.` A with an OPT record carrying `options` (raw).
fn query_with_options(options: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in ["ingest", "test", "example"] {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0]);
    packet.extend_from_slice(&(options.len() as u16).to_be_bytes());
    packet.extend_from_slice(options);
    packet
}

/// An ECS option: family 1, `source` bits, scope 0, then `address` as given.
fn ecs(source: u8, address: &[u8]) -> Vec<u8> {
    let mut option = vec![0, 8];
    option.extend_from_slice(&(4 + address.len() as u16).to_be_bytes());
    option.extend_from_slice(&[0, 1, source, 0]);
    option.extend_from_slice(address);
    option
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0F
}

/// RFC 7871 §6: an ECS address longer than its source prefix needs, or two ECS options, is
/// FORMERR; an unknown opcode is NOTIMP (not FORMERR), as ISC's EDNS compliance test expects.
#[test]
fn malformed_client_subnets_and_unknown_opcodes_get_the_right_rcode() {
    let server = Server::test_zone();
    let ask = |packet: &[u8]| udp_raw(server.addr, from("127.0.0.1"), packet).expect("a reply");
    let good = query_with_options(&ecs(24, &[127, 1, 0]));
    assert_eq!(rcode(&ask(&good)), 0, "a well-formed ECS query is answered");
    let long = query_with_options(&ecs(24, &[127, 1, 0, 0]));
    assert_eq!(
        rcode(&ask(&long)),
        1,
        "an address octet more than /24 needs"
    );
    let short = query_with_options(&ecs(24, &[127, 1]));
    assert_eq!(
        rcode(&ask(&short)),
        1,
        "an address octet fewer than /24 needs"
    );
    let mut twice = ecs(24, &[127, 1, 0]);
    twice.extend(ecs(24, &[127, 2, 0]));
    assert_eq!(
        rcode(&ask(&query_with_options(&twice))),
        1,
        "two ECS options"
    );
    for opcode in [3u8, 7, 15] {
        let mut unknown = good.clone();
        unknown[2] = (unknown[2] & !0x78) | (opcode << 3);
        let reply = ask(&unknown);
        assert_eq!(rcode(&reply), 4, "opcode {opcode}: NOTIMP");
        assert_eq!(&reply[..2], &unknown[..2], "the ID is echoed");
        // A bare header of that opcode (no question) is not implemented either.
        let mut bare = unknown[..12].to_vec();
        bare[5] = 0;
        bare[11] = 0;
        assert_eq!(rcode(&ask(&bare)), 4, "bare opcode {opcode}: NOTIMP");
    }
}

/// Authentication schemes are case-insensitive (RFC 9110 §11.1): `bearer` works as `Bearer`.
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let server = Server::start_with_env(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
        &[("GEOSTEER_ADMIN_TOKEN", "s3cret")],
    );
    let status = |authorization: &str| {
        let head =
            format!("GET /nodes HTTP/1.1\r\nHost: localhost\r\nAuthorization: {authorization}");
        admin_raw(server.admin, &head).0
    };
    assert_eq!(status("Bearer s3cret"), 200);
    assert_eq!(status("bearer s3cret"), 200);
    assert_eq!(status("BEARER s3cret"), 200);
    assert_eq!(status("bearer wrong"), 401);
    assert_eq!(status("Basic s3cret"), 401);
}

/// `geosteer explain ... | head` ends quietly when the reader goes away (here the reader,
/// `true`, is gone before the first write).
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' explain --name ingest.test.example. --client 127.1.0.5 --zones '{}' --geo '{}' | true",
            geosteer_binary().display(),
            repo("tests/fixtures/zones").display(),
            repo("tests/fixtures/geo-city.mmdb").display()
        ))
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

/// A long-lived task that dies takes the process with it, with an error, so that systemd or
/// the kubelet restarts geosteer: never a server that keeps answering from frozen tables
/// while it has stopped failing over. (The fault is injected through an environment
/// variable that only debug builds read.)
#[test]
fn a_panicking_publisher_ends_the_process_with_an_error() {
    let mut server = Server::start_with_env(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
        &[("GEOSTEER_FAULT", "publisher")],
    );
    let (status, _) = crate::support::nodes::http(server.admin, "GET", "/healthz", None);
    assert_eq!(status, 200, "alive before the fault");
    // The batch that sets the fault off; the process may die before it answers, so the
    // request is sent raw and its reply, if any, ignored.
    let batch = r#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 10}]}"#;
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(server.admin).expect("connect");
        let _ = write!(
            stream,
            "POST /latency HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{batch}",
            batch.len()
        );
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.read_to_end(&mut Vec::new());
    }
    let exit = server
        .wait_exit(Duration::from_secs(10))
        .expect("the process exits once its publisher has died");
    assert!(!exit.success(), "{exit:?}");
    assert!(
        std::net::TcpStream::connect(server.admin).is_err(),
        "nothing answers /healthz any more"
    );
}

/// No better amplifier than the zone itself: over UDP, ANY gets one RRset (RFC 8482) and a
/// debug name a truncated reply (the client comes back over TCP, which proves its address);
/// over TCP both are answered in full.
#[test]
fn udp_answers_are_no_larger_than_the_zones_own_rrsets() {
    use hickory_proto::rr::RecordType::{A, ANY, TXT};
    let server = Server::test_zone();
    let client = from("127.1.0.5");
    let measure = |query: &Q| {
        let bytes = query.bytes();
        let reply = udp_raw(server.addr, client, &bytes).expect("a reply");
        (bytes.len(), reply)
    };
    // The apex holds SOA, NS, TXT: ANY over UDP answers one of them.
    let (asked, reply) = measure(&q("test.example.", ANY));
    let message = hickory_proto::op::Message::from_vec(&reply).expect("parses");
    let types: std::collections::BTreeSet<_> =
        message.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "one RRset over UDP: {types:?}");
    assert!(reply.len() <= 3 * asked, "{} for {asked}", reply.len());
    let full = tcp(&server, &q("test.example.", ANY));
    let all: std::collections::BTreeSet<_> = full.answers.iter().map(|r| r.record_type()).collect();
    assert!(all.len() >= 3, "every RRset over TCP: {all:?}");
    // A steered name's ANY: one family's addresses.
    let (asked, reply) = measure(&q("ingest.test.example.", ANY).ecs("127.1.0.0", 24));
    assert!(reply.len() <= 3 * asked, "{} for {asked}", reply.len());
    let message = hickory_proto::op::Message::from_vec(&reply).expect("parses");
    assert!(!message.answers.is_empty() && message.answers.iter().all(|r| r.record_type() == A));
    // A debug name over UDP: truncated, nothing in it; over TCP the explanation.
    let (asked, reply) = measure(&q("_explain.ingest.test.example.", TXT));
    let message = hickory_proto::op::Message::from_vec(&reply).expect("parses");
    assert!(message.metadata.truncation, "TC over UDP");
    assert!(message.answers.is_empty());
    assert!(reply.len() <= asked + 12, "{} for {asked}", reply.len());
    let explained = tcp(&server, &q("_explain.ingest.test.example.", TXT));
    assert_eq!(explained.answers.len(), 1, "the explanation over TCP");
}

/// Opens a TCP connection from `source` to `server` (bound locally, so the server sees it).
fn connect_from(
    source: &str,
    server: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: std::net::SocketAddr = format!("{source}:0").parse().expect("an address");
    socket.bind(&local.into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// One query over an open connection; the reply's rcode, or `None` if the server closed it.
fn ask_over(stream: &mut std::net::TcpStream, query: &[u8]) -> Option<u8> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply).ok()?;
    Some(reply[3] & 0x0F)
}

/// RFC 7766 under abuse: sources that hold the whole table with idle connections (and keep
/// re-opening them) do not keep a new client out, and no source gets more than its share.
#[test]
fn a_full_tcp_table_still_lets_a_new_client_in() {
    let server = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--tcp-max-connections", "16", "--tcp-per-source", "6"],
    );
    let query = q("ingest.test.example.", hickory_proto::rr::RecordType::A).bytes();
    let hoard = |source: &str, tries: usize, held: &mut Vec<std::net::TcpStream>| {
        let mut answered = 0;
        for _ in 0..tries {
            let Ok(mut stream) = connect_from(source, server.addr) else {
                continue;
            };
            if ask_over(&mut stream, &query) == Some(0) {
                answered += 1;
                held.push(stream); // now idle, holding a slot
            }
        }
        answered
    };
    let mut held = Vec::new();
    // One source asking for far more than its share gets its share, while the table has
    // room (no idle connection is closed to make room yet).
    assert_eq!(hoard("127.0.0.31", 20, &mut held), 6, "one source's share");
    // Two more fill the table (18 wanted, 16 slots): idle ones make room as it fills.
    hoard("127.0.0.32", 6, &mut held);
    hoard("127.0.0.33", 6, &mut held);
    assert!(held.len() >= 16, "the hoarders got slots ({})", held.len());
    // The table is full or nearly: a new client still gets an answer, within a second.
    for source in ["127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44"] {
        let started = std::time::Instant::now();
        let mut stream = connect_from(source, server.addr).expect("connects");
        assert_eq!(ask_over(&mut stream, &query), Some(0), "{source} answered");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{source} waited {took:?}");
        held.push(stream);
    }
}

/// A client that pipelines queries and never reads its answers is dropped once a write has
/// waited `TCP_WRITE_TIMEOUT`: it cannot hold its connection open forever.
#[test]
fn a_client_that_never_reads_is_dropped() {
    use std::io::{Read, Write};
    let server = Server::test_zone();
    let mut stream = connect_from("127.0.0.51", server.addr).expect("connects");
    // Big answers (12 TXT strings of 200 octets), many of them, never read.
    let query = q("big.test.example.", hickory_proto::rr::RecordType::TXT).bytes();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.set_nonblocking(true).expect("nonblocking");
    let mut sent = 0usize;
    let started = std::time::Instant::now();
    // 5,000 answers of 2.4 KB are more than the buffers between the two hold (the server
    // stops writing), and fewer than the queries a connection may serve before it closes.
    while sent < 5_000 && started.elapsed() < Duration::from_secs(5) {
        match stream.write(&framed) {
            Ok(n) if n == framed.len() => sent += 1,
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => break,
        }
    }
    assert!(sent > 100, "queries sent: {sent}");
    // Past the write timeout, the server has given up on this client: reading now yields
    // fewer answers than were asked, then the end of the connection.
    let after = geosteer::dns::TCP_WRITE_TIMEOUT + Duration::from_secs(1);
    std::thread::sleep(after);
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut received = Vec::new();
    let ended = loop {
        let mut buf = [0u8; 65536];
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false, // timed out: still open
        }
    };
    let mut answers = 0;
    let mut at = 0;
    while at + 2 <= received.len() {
        at += 2 + u16::from_be_bytes([received[at], received[at + 1]]) as usize;
        answers += 1;
    }
    assert!(
        ended,
        "the connection was closed ({answers} of {sent} answers read)"
    );
    assert!(
        answers < sent,
        "{answers} of {sent} answers: not all were written"
    );
}

/// Response-rate limiting over UDP: a flood of identical queries from one source gets the
/// configured rate with every other limited response slipped (TC); a resolver asking for
/// many client subnets at a realistic rate is not limited; TCP never is.
#[test]
fn a_flood_of_identical_queries_is_rate_limited_but_a_resolver_is_not() {
    use hickory_proto::rr::RecordType::A;
    let server = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--rrl-rate", "20", "--rrl-slip", "2"],
    );
    let socket = std::net::UdpSocket::bind("127.0.0.61:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let query = q("ingest.test.example.", A).bytes();
    // 400 identical queries as fast as they go (well under a second), then every reply.
    let flood = 400;
    for _ in 0..flood {
        socket.send_to(&query, server.addr).expect("send");
    }
    let (mut answered, mut slipped) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok((len, _)) = socket.recv_from(&mut buf) {
        let reply = &buf[..len];
        if reply[2] & 0x02 != 0 {
            assert_eq!(
                u16::from_be_bytes([reply[6], reply[7]]),
                0,
                "a slip has no answer"
            );
            assert!(len <= query.len(), "a slip is no larger than its query");
            slipped += 1;
        } else {
            answered += 1;
        }
    }
    // The burst (20) and what refills while the flood lasts; half the rest slips.
    assert!((20..=60).contains(&answered), "{answered} answered");
    let limited = flood - answered;
    assert!(
        slipped * 2 >= limited - 2 && slipped * 2 <= limited + 2,
        "{slipped} slipped of {limited} limited"
    );
    // The same source over TCP is answered: TCP proves the address.
    let reply = tcp(&server, &q("ingest.test.example.", A));
    assert_eq!(reply.answers.len(), 2);
    // A resolver asking once per client subnet (500 of them, 500 a second): never limited.
    let resolver = std::net::UdpSocket::bind("127.0.0.62:0").expect("bind");
    resolver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut limited = 0;
    for i in 0..500u32 {
        let subnet = format!("127.{}.{}.0", 1 + i % 4, i / 4);
        let query = q("ingest.test.example.", A).ecs(&subnet, 24).bytes();
        resolver.send_to(&query, server.addr).expect("send");
        let (len, _) = resolver.recv_from(&mut buf).expect("every query answered");
        if buf[2] & 0x02 != 0 || len < 12 {
            limited += 1;
        }
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(50)); // about 1,000 a second
        }
    }
    assert_eq!(
        limited, 0,
        "a resolver's per-subnet queries are not limited"
    );
    let (_, metrics) = crate::support::nodes::http(server.admin, "GET", "/metrics", None);
    assert!(
        metrics.contains("geosteer_rrl_responses_total{action=\"slipped\"}"),
        "counted"
    );
}

/// Asks with `dig +cookie[=HEX]` and returns the COOKIE dig printed (client + server, hex).
fn dig_cookie(server: &Server, cookie: Option<&str>) -> String {
    let arg = cookie.map_or("+cookie".to_string(), |c| format!("+cookie={c}"));
    let text = dig_text(server, &["+norec", &arg, "ingest.test.example."]);
    text.lines()
        .find_map(|l| l.trim_start_matches("; ").strip_prefix("COOKIE: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cookie in dig's output:\n{text}"))
        .to_string()
}

/// A query with no question and a client cookie learns the server cookie (RFC 7873 §5.4),
/// as `dig +header-only` asks; without a cookie it is a FORMERR that still carries OPT, so
/// dig does not take the server for one without EDNS.
#[test]
fn a_query_without_a_question_learns_a_server_cookie() {
    let server = Server::test_zone();
    let dig = |args: &[&str]| dig_text(&server, &[args, &["test.example."]].concat());
    for transport in ["+notcp", "+tcp"] {
        let text = dig(&["+header-only", "+cookie", transport]);
        assert!(text.contains("status: NOERROR"), "{transport}: {text}");
        assert!(text.contains("QUERY: 0, ANSWER: 0"), "{text}");
        let cookie = text
            .lines()
            .find_map(|l| l.trim_start_matches("; ").strip_prefix("COOKIE: "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no cookie: {text}"));
        assert_eq!(cookie.len(), 48, "client and server cookie: {cookie}");
        assert_eq!(
            dig_cookie(&server, Some(cookie)),
            cookie,
            "the learned cookie is valid"
        );
    }
    let text = dig(&["+header-only", "+nocookie"]);
    assert!(text.contains("status: FORMERR"), "{text}");
    assert!(text.contains("EDNS: version: 0"), "OPT answered: {text}");
    let text = dig(&["+header-only", "+noedns"]);
    assert!(text.contains("status: FORMERR"), "{text}");
}

/// A query for `ingest.test.example.` A carrying a COOKIE option (hex: client, or client
/// and server).
fn query_with_cookie(hex: &str) -> Vec<u8> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let mut option = vec![0, 10];
    option.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    option.extend_from_slice(&bytes);
    query_with_options(&option)
}

/// DNS Cookies with dig: a server cookie comes back; returned, it is valid (the server
/// keeps it); after the secret rotates it is still valid within the grace; a forged one is
/// replaced; and a valid cookie exempts its client from response-rate limiting.
#[test]
fn dns_cookies_work_with_dig_rotate_and_exempt_from_rate_limiting() {
    let dir = zone_dir(
        "cookies",
        &std::fs::read_to_string(repo("tests/fixtures/zones/test.example.yaml")).expect("policy"),
    );
    let secrets = dir.join("cookie.secret");
    std::fs::write(&secrets, "000102030405060708090a0b0c0d0e0f\n").expect("secret");
    let start = || {
        Server::start(
            &dir,
            &repo("tests/fixtures/geo-city.mmdb"),
            &[
                "--cookie-secret-file",
                secrets.to_str().expect("UTF-8"),
                "--rrl-rate",
                "5",
            ],
        )
    };
    let server = start();
    let first = dig_cookie(&server, None);
    assert_eq!(
        first.len(),
        48,
        "8 octets of client, 16 of server cookie: {first}"
    );
    assert_eq!(&first[16..18], "01", "RFC 9018 version 1");
    assert_eq!(
        dig_cookie(&server, Some(&first)),
        first,
        "a valid cookie is kept"
    );
    let mut forged = first.clone();
    forged.replace_range(46..48, if &first[46..48] == "00" { "01" } else { "00" });
    assert_ne!(
        dig_cookie(&server, Some(&forged)),
        forged,
        "a forged cookie is replaced"
    );
    // A valid cookie proves the address: a flood with it is not rate limited...
    let socket = std::net::UdpSocket::bind("127.0.0.71:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    socket
        .send_to(&query_with_cookie(&first[..16]), server.addr)
        .expect("send");
    let (len, _) = socket.recv_from(&mut buf).expect("a reply");
    let reply = &buf[..len];
    let at = reply
        .windows(4)
        .position(|w| w == [0, 10, 0, 24])
        .expect("a COOKIE option in the reply");
    let full: String = reply[at + 4..at + 28]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let with_cookie = query_with_cookie(&full);
    let mut count_answers = |query: &[u8], n: usize| {
        for _ in 0..n {
            socket.send_to(query, server.addr).expect("send");
        }
        let mut answered = 0;
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        while let Ok((len, _)) = socket.recv_from(&mut buf) {
            if len > 12 && buf[2] & 0x02 == 0 && u16::from_be_bytes([buf[6], buf[7]]) > 0 {
                answered += 1;
            }
        }
        answered
    };
    assert_eq!(
        count_answers(&with_cookie, 100),
        100,
        "a proven client is not limited"
    );
    // ...and the same flood without it is.
    let without = query_with_options(&[]);
    assert!(count_answers(&without, 100) < 30, "an unproven one is");
    drop(server);
    // Rotation: the new secret first, the old one second; the old cookie is still valid.
    std::fs::write(
        &secrets,
        "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n000102030405060708090a0b0c0d0e0f\n",
    )
    .expect("secret");
    let rotated = start();
    assert_eq!(
        dig_cookie(&rotated, Some(&first)),
        first,
        "valid after the rotation"
    );
    drop(rotated);
    // Once the old secret is dropped, it is not.
    std::fs::write(&secrets, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n").expect("secret");
    let renewed = start();
    assert_ne!(
        dig_cookie(&renewed, Some(&first)),
        first,
        "gone with the old secret"
    );
}

/// A connection that keeps asking, one query at a time, is still closed at the end of its
/// lifetime (`--tcp-lifetime`): a slow drip cannot hold a slot forever. Queries up to then
/// are answered.
#[test]
fn a_busy_tcp_connection_ends_at_its_lifetime() {
    let server = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--tcp-lifetime", "1"],
    );
    let query = q("ingest.test.example.", hickory_proto::rr::RecordType::A).bytes();
    let mut stream = connect_from("127.0.0.61", server.addr).expect("connects");
    let started = std::time::Instant::now();
    let mut answered = 0;
    // One query every 100 ms: never idle. Bounded at 8 s, far past lifetime + wind-down.
    while started.elapsed() < Duration::from_secs(8) {
        if ask_over(&mut stream, &query) != Some(0) {
            break;
        }
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let lasted = started.elapsed();
    assert!(
        lasted < Duration::from_secs(4),
        "the connection lasted {lasted:?} ({answered} answers)"
    );
    assert!(
        answered >= 5,
        "queries before the end were answered: {answered}"
    );
}

/// At the process's open-file limit, DNS connections take only what the reserve leaves:
/// with 400 clients hoarding connections under a limit of 300 descriptors, the admin
/// interface answers, a reload (which opens the policy and the database) succeeds, and a new
/// client is still answered over TCP.
#[test]
fn a_reserve_of_descriptors_keeps_admin_and_reload_working() {
    let server = Server::start_with_fd_limit(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--tcp-max-connections", "5000", "--tcp-per-source", "5000"],
        300,
    );
    let query = q("ingest.test.example.", hickory_proto::rr::RecordType::A).bytes();
    let mut held = Vec::new();
    for i in 0..400 {
        let source = format!("127.0.1.{}", 1 + i % 200);
        if let Ok(mut stream) = connect_from(&source, server.addr) {
            use std::io::Write;
            let mut framed = (query.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&query);
            let _ = stream.write_all(&framed);
            held.push(stream);
        }
    }
    assert!(held.len() >= 300, "clients connected: {}", held.len());
    let (status, body) = http(server.admin, "GET", "/nodes", None);
    assert_eq!(status, 200, "admin answers: {body}");
    let (status, body) = http(server.admin, "POST", "/reload", None);
    assert_eq!(status, 200, "reload works: {body}");
    let mut fresh = connect_from("127.0.0.62", server.addr).expect("connects");
    assert_eq!(
        ask_over(&mut fresh, &query),
        Some(0),
        "a new client is answered"
    );
    drop(held);
}

/// A damaged cookie secret file stops the start before anything says it listens, with an
/// error naming the file and the line, never the secret, and never a panic, whatever bytes
/// the file holds.
#[test]
fn a_damaged_cookie_secret_stops_the_start_without_showing_it() {
    let dir = zone_dir(
        "secret-damaged",
        &std::fs::read_to_string(repo("tests/fixtures/zones/test.example.yaml")).expect("policy"),
    );
    let secret = dir.join("cookie.secret");
    let cases: [&[u8]; 3] = [
        "000102030405060708090a0b0c0d0eé\n".as_bytes(),
        b"# rotated\n000102030405060708090a0b0c0d0e0f\nzz0102030405060708090a0b0c0d0e0f\n",
        b"\xff\xfe0102030405060708090a0b0c0d0e0f\n",
    ];
    for (case, line) in cases.iter().zip([1, 3, 1]) {
        std::fs::write(&secret, case).expect("write the secret file");
        let (exited, stdout, stderr) = serve_until_exit(
            &dir,
            &repo("tests/fixtures/geo-city.mmdb"),
            &["--cookie-secret-file", secret.to_str().expect("UTF-8")],
            Duration::from_secs(20),
        );
        assert!(exited.is_some_and(|s| !s.success()), "{exited:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains("cookie.secret") && stderr.contains(&format!("line {line}:")),
            "{stderr}"
        );
        assert!(
            !stderr.contains("0102030405"),
            "the secret is shown: {stderr}"
        );
        assert!(!stdout.contains("listening"), "said it listens: {stdout}");
    }
}

/// A feed of ever new client groups cannot grow memory without bound: past 10,000
/// measurements a zone drops its oldest, and says so in a counter.
#[test]
fn a_feed_of_endless_new_groups_is_capped() {
    let server = Server::test_zone();
    for batch in 0..3 {
        let measurements: Vec<String> = (0..5_000)
            .map(|i| {
                let n = batch * 5_000 + i;
                format!(
                    r#"{{"group": "10.{}.{}.0/24", "node": "tokyo", "rtt_ms": 20}}"#,
                    n / 256,
                    n % 256
                )
            })
            .collect();
        let body = format!(r#"{{"measurements": [{}]}}"#, measurements.join(","));
        let (status, reply) =
            crate::support::nodes::http_json(server.admin, "POST", "/latency", None, &body);
        assert_eq!(status, 200, "{reply}");
    }
    let evicted = metric_sum(&scrape(&server), "geosteer_feed_measurements_evicted_total");
    assert!(
        evicted >= 5_000.0,
        "{evicted} evicted of 15,000 for a cap of 10,000"
    );
}

/// Sends `queries` from one /24 as fast as the server takes them (in bursts of 100, each
/// drained); how many came back as full (untruncated) answers.
fn full_answers(server: &Server, from_ip: &str, queries: &[Vec<u8>]) -> usize {
    let socket = std::net::UdpSocket::bind((from_ip, 0)).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let mut full = 0;
    for burst in queries.chunks(100) {
        for query in burst {
            socket.send_to(query, server.addr).expect("send");
        }
        while let Ok((len, _)) = socket.recv_from(&mut buf) {
            if len >= 12 && buf[2] & 0x02 == 0 {
                full += 1;
            }
        }
    }
    full
}

/// Rate limiting cannot be bypassed by varying what a response is not about: from one
/// /24, 2,000 queries with random types at the apex (mostly NODATA), random ECS subnets on
/// a static name, or random labels under a wildcard get at most 20 % full answers, while
/// the same number of identical-kind answers to a real resolver's per-subnet queries are
/// another matter (see the test above).
#[test]
fn varying_the_query_does_not_bypass_rate_limiting() {
    let policy = std::fs::read_to_string(repo("tests/fixtures/zones/test.example.yaml"))
        .expect("policy")
        .replace(
            "records:\n",
            "records:\n  \"*.edge\": {type: A, value: 192.0.2.9}\n  static: {type: A, value: 192.0.2.10}\n",
        );
    let server = Server::start(
        &zone_dir("rrl-variation", &policy),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
    );
    let mut rng = geosteer::random::XorShift::new(0x5eed_0001);
    let n = 2_000;
    let random_types: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let rtype = loop {
                let t = 1 + rng.below(65_000) as u16;
                if ![41, 251, 252, 255].contains(&t) {
                    break t;
                }
            };
            q("test.example.", hickory_proto::rr::RecordType::from(rtype)).bytes()
        })
        .collect();
    let random_subnets: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let subnet = format!("10.{}.{}.0", (i / 256) % 256, i % 256);
            q("static.test.example.", hickory_proto::rr::RecordType::A)
                .ecs(&subnet, 24)
                .bytes()
        })
        .collect();
    let random_labels: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let name = format!("x{}.edge.test.example.", rng.next_u64());
            q(&name, hickory_proto::rr::RecordType::A).bytes()
        })
        .collect();
    for (what, queries, from_ip) in [
        ("random types at the apex", &random_types, "127.0.0.171"),
        (
            "random ECS subnets on a static name",
            &random_subnets,
            "127.0.1.171",
        ),
        (
            "random labels under a wildcard",
            &random_labels,
            "127.0.2.171",
        ),
    ] {
        let full = full_answers(&server, from_ip, queries);
        eprintln!("{what}: {full} full answers of {n}");
        assert!(full * 5 <= n, "{what}: {full} full answers of {n}");
    }
}

/// No reply over UDP to a source without a valid cookie is more than three times its
/// query, for every name of the test zone (answers, CNAMEs, a delegation, NODATA, NXDOMAIN,
/// a steered name) × query type × EDNS shape (none, small and large buffers, DO, ECS,
/// NSID, a client cookie): ANY gets the smallest RRset, glue only what fits, and what
/// cannot fit is truncated for a retry over TCP.
#[test]
fn no_reply_without_a_cookie_is_more_than_three_times_its_query() {
    use hickory_proto::rr::RecordType::*;
    let server = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--rrl-rate", "0"],
    );
    let names = [
        "test.example.",
        "www.test.example.",
        "ns1.test.example.",
        "ns2.test.example.",
        "mail.test.example.",
        "_rtmp._tcp.test.example.",
        "caa.test.example.",
        "big.test.example.",
        "sub.test.example.",
        "x.sub.test.example.",
        "a.b.deep.test.example.",
        "deep.test.example.",
        "nope.test.example.",
        "ingest.test.example.",
        "alias-out.test.example.",
        "_explain.ingest.test.example.",
    ];
    let types = [A, AAAA, ANY, TXT, MX, SOA, NS, CNAME, SRV, CAA, PTR, DNSKEY];
    let (mut worst, mut checked) = ((0.0f64, String::new()), 0);
    for name in names {
        for rtype in types {
            let shapes: [(&str, Vec<u8>); 7] = [
                ("no EDNS", q(name, rtype).no_edns().bytes()),
                ("EDNS 512", q(name, rtype).payload(512).bytes()),
                ("EDNS 4096", q(name, rtype).bytes()),
                ("ECS", q(name, rtype).ecs("127.1.0.0", 24).bytes()),
                ("NSID", with_option(q(name, rtype).bytes(), 3, &[])),
                (
                    "client cookie",
                    with_option(q(name, rtype).bytes(), 10, &[7; 8]),
                ),
                ("DO", {
                    let mut p = q(name, rtype).bytes();
                    let flags_at = p.len() - 4;
                    p[flags_at] |= 0x80;
                    p
                }),
            ];
            for (shape, query) in shapes {
                let reply = udp_raw(server.addr, from("127.9.0.9"), &query)
                    .unwrap_or_else(|| panic!("no reply to {name} {rtype} {shape}"));
                let ratio = reply.len() as f64 / query.len() as f64;
                checked += 1;
                if ratio > worst.0 {
                    worst = (
                        ratio,
                        format!("{name} {rtype} {shape}: {} / {}", reply.len(), query.len()),
                    );
                }
                assert!(
                    ratio <= 3.0,
                    "{name} {rtype} {shape}: {} bytes for a {}-byte query",
                    reply.len(),
                    query.len()
                );
            }
        }
    }
    eprintln!(
        "{checked} combinations, the largest ratio {:.2} ({})",
        worst.0, worst.1
    );
}
