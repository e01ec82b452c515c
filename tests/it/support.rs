//! Test support: the shared black-box harness (`geosteer_harness`), and what only tests need.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) use geosteer_harness::nodes::http;
pub(crate) use geosteer_harness::*;

/// Runs `dig` at the server (its port, one try of 3 s) with `args`, and returns what it
/// printed. Operators debug with dig, so the tests that can ask as they would, do.
pub(crate) fn dig_text(server: &Server, args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .arg(format!("@{}", server.addr.ip()))
        .args(["-p", &server.addr.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig runs (CI installs bind9-dnsutils; apt-get install bind9-dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The Extended DNS Error of a reply (RFC 8914): info-code and text.
pub(crate) fn extended_error(reply: &hickory_proto::op::Message) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    match reply.edns.as_ref()?.option(EdnsCode::from(15))? {
        EdnsOption::Unknown(_, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8_lossy(&data[2..]).into_owned(),
        )),
        _ => None,
    }
}

/// The test zone's snapshot against the nested-schema test database, built in process, for
/// tests of the response path without a server.
pub(crate) fn fixture_snapshot() -> geosteer::answer::Snapshot {
    geosteer::service::load(&geosteer::loader::Sources {
        zones: repo("tests/fixtures/zones"),
        geo: vec![repo("tests/fixtures/geo-city.mmdb")],
        asn: None,
    })
    .expect("fixtures load")
    .1
}

/// Parses Prometheus text exposition (format 0.0.4) strictly: every line is a comment
/// (`# HELP`, `# TYPE`) or `name{label="value",...} number`. Returns samples keyed by
/// `name{labels}` as written, or the first line that does not parse.
pub(crate) fn parse_prometheus(text: &str) -> Result<HashMap<String, f64>, String> {
    let mut samples = HashMap::new();
    let metric_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.split_whitespace();
            let kind = words.next();
            let name = words.next().unwrap_or_default();
            match kind {
                Some("HELP") if metric_name(name) => continue,
                Some("TYPE")
                    if metric_name(name)
                        && matches!(
                            words.next(),
                            Some("counter" | "gauge" | "histogram" | "summary" | "untyped")
                        ) =>
                {
                    continue;
                }
                _ => return Err(line.to_string()),
            }
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| line.to_string())?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| line.to_string())?,
        };
        let name = series.split('{').next().unwrap_or_default();
        if !metric_name(name) {
            return Err(line.to_string());
        }
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .ok_or_else(|| line.to_string())?;
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once("=\"").ok_or_else(|| line.to_string())?;
                if !metric_name(key) || value.trim_end_matches('"').contains('"') {
                    return Err(line.to_string());
                }
            }
        }
        samples.insert(series.to_string(), value);
    }
    Ok(samples)
}

pub(crate) fn scrape(server: &Server) -> HashMap<String, f64> {
    let (status, text) = http(server.admin, "GET", "/metrics", None);
    assert_eq!(status, 200, "{text}");
    parse_prometheus(&text).unwrap_or_else(|line| panic!("not Prometheus text: {line:?}"))
}

/// The sum of a metric's series (every label set).
pub(crate) fn metric_sum(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .map(|(_, value)| value)
        .sum()
}

/// GETs a status page path (`/map`, `/what-if`), asking again while the server is busy
/// with another census (429, as a page polling beside it can make it).
pub(crate) fn page_data(admin: std::net::SocketAddr, path: &str) -> (u16, String) {
    eventually(std::time::Duration::from_secs(30), path, || {
        let (status, body) = http(admin, "GET", path, None);
        if status == 429 {
            Err(body)
        } else {
            Ok((status, body))
        }
    })
}

/// The node whose addresses include `address`, from a server's `/map` (the status page's
/// data): what a `dig` answer names.
pub(crate) fn node_with_address(server: &Server, address: &str) -> String {
    let (_, body) = page_data(server.admin, "/map");
    let map: serde_json::Value = serde_json::from_str(&body).expect("map JSON");
    map["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| {
            n["addresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == address))
        })
        .and_then(|n| n["name"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// Sends `head` (request line and headers, without the blank line) and an empty body to
/// an admin interface, raw, so a test controls every header: the status and the whole
/// response.
pub(crate) fn admin_raw(admin: std::net::SocketAddr, head: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = (response.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// Waits until the text of the file at `path` satisfies `holds` (a state file written off
/// the serving task).
pub(crate) fn until_file(path: &std::path::Path, what: &str, holds: impl Fn(&str) -> bool) {
    eventually(std::time::Duration::from_secs(5), what, || {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        if holds(&text) { Ok(()) } else { Err(text) }
    });
}

/// A query with one more EDNS option appended to its (last, empty) OPT record.
pub(crate) fn with_option(mut packet: Vec<u8>, code: u16, data: &[u8]) -> Vec<u8> {
    let rdlen_at = packet.len() - 2;
    assert_eq!(
        &packet[packet.len() - 11..packet.len() - 8],
        &[0, 0, 41],
        "an empty OPT last"
    );
    packet.extend_from_slice(&code.to_be_bytes());
    packet.extend_from_slice(&(data.len() as u16).to_be_bytes());
    packet.extend_from_slice(data);
    let rdlen = (4 + data.len()) as u16;
    packet[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    packet
}

/// A private knotd on a free loopback port, stopped when dropped.
pub(crate) struct Knot {
    child: Child,
    /// Where it answers.
    pub(crate) addr: SocketAddr,
}

impl Knot {
    /// Serves `zone` from the master file `text` (written as `zones/<zone>.zone` under
    /// `dir`), and waits until it answers the zone's SOA. A port another process takes
    /// between choosing and knotd's bind (knotd then exits) is tried again on another.
    pub(crate) fn start(dir: &Path, zone: &str, text: &str) -> Knot {
        for sub in ["zones", "run", "db"] {
            std::fs::create_dir_all(dir.join(sub)).expect("knot directories");
        }
        std::fs::write(dir.join(format!("zones/{zone}.zone")), text).expect("zone file");
        let log = dir.join("knotd.log");
        for _ in 0..5 {
            let port = free_udp_and_tcp_port();
            let d = dir.display();
            let conf = format!(
                "server:\n    rundir: \"{d}/run\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
                 database:\n    storage: \"{d}/db\"\n\
                 template:\n  - id: default\n    storage: \"{d}/zones\"\n\
                 zone:\n  - domain: {zone}\n    file: {zone}.zone\n"
            );
            std::fs::write(dir.join("knot.conf"), conf).expect("knot.conf");
            let child = Command::new("knotd")
                .arg("-c")
                .arg(dir.join("knot.conf"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("knotd log"))
                .spawn()
                .expect("knotd runs (apt-get install knot; .ci/run installs it)");
            let mut knot = Knot {
                child,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            };
            let query = q(&format!("{zone}."), hickory_proto::rr::RecordType::SOA).bytes();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if matches!(knot.child.try_wait(), Ok(Some(_))) {
                    break; // exited: its port was taken; another port
                }
                let reply = udp_raw_once(knot.addr, &query);
                if reply
                    .and_then(|r| hickory_proto::op::Message::from_vec(&r).ok())
                    .is_some_and(|m| !m.answers.is_empty())
                {
                    return knot;
                }
            }
        }
        panic!(
            "knotd did not serve {zone} on any of 5 ports; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

/// A loopback port free for both UDP and TCP at the time of asking (knotd binds both).
fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free UDP port");
        let port = udp.local_addr().expect("bound").port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP in 100 tries");
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One try, short timeout: for polling a server that may not listen yet.
pub(crate) fn udp_raw_once(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    socket.send_to(bytes, server).ok()?;
    let mut buf = vec![0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Some(buf[..len].to_vec())
}

/// What an authoritative answer says, in a form two servers can be compared by: rcode, AA,
/// and the records of each section (the OPT record aside), sorted.
pub(crate) fn summary(raw: &[u8]) -> String {
    let m = hickory_proto::op::Message::from_vec(raw).expect("the reply parses");
    let section = |records: &[hickory_proto::rr::Record]| {
        let mut lines: Vec<String> = records
            .iter()
            .filter(|r| r.record_type() != hickory_proto::rr::RecordType::OPT)
            .map(ToString::to_string)
            .collect();
        lines.sort();
        lines.join(" | ")
    };
    format!(
        "{:?} aa={} answer=[{}] authority=[{}] additional=[{}]",
        m.metadata.response_code,
        m.metadata.authoritative,
        section(&m.answers),
        section(&m.authorities),
        section(&m.additionals)
    )
}
