//! Mutated policy files and feed batches, the stable-toolchain companions of the fuzz
//! targets in `fuzz/`: refused with reasons or accepted, never a panic. Bounded: a fixed
//! number of inputs from a fixed seed, so a failure reproduces.

use std::time::{Duration, SystemTime};

use geosteer::latency::ZoneLatency;
use geosteer::latency::feed::FeedBatch;
use geosteer::random::XorShift;

use crate::support::repo;

/// One mutation of `text`: bytes flipped, a slice cut out or repeated, a line swapped, or a
/// value from a list of troublemakers put somewhere.
fn mutate(text: &[u8], rng: &mut XorShift) -> Vec<u8> {
    const TROUBLE: [&str; 12] = [
        "1e300",
        "-1e300",
        "NaN",
        "18446744073709551616",
        "-1",
        "0",
        "4294967296",
        "\"\"",
        "[]",
        "{}",
        "~",
        "*",
    ];
    let mut out = text.to_vec();
    let at = |rng: &mut XorShift, len: usize| rng.below(len as u64 + 1) as usize;
    for _ in 0..=rng.below(3) {
        match rng.below(5) {
            0 => {
                let i = at(rng, out.len().saturating_sub(1));
                if let Some(byte) = out.get_mut(i) {
                    *byte = rng.next_u64() as u8;
                }
            }
            1 => {
                let a = at(rng, out.len());
                let b = (a + at(rng, 40)).min(out.len());
                out.drain(a..b);
            }
            2 => {
                let a = at(rng, out.len());
                let b = (a + at(rng, 40)).min(out.len());
                let copy = out[a..b].to_vec();
                let to = at(rng, out.len());
                out.splice(to..to, copy);
            }
            3 => {
                let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
                if lines.len() > 2 {
                    let (i, j) = (
                        rng.below(lines.len() as u64) as usize,
                        rng.below(lines.len() as u64) as usize,
                    );
                    let mut lines: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                    lines.swap(i, j);
                    out = lines.join(&b'\n');
                }
            }
            _ => {
                let value = TROUBLE[rng.below(TROUBLE.len() as u64) as usize].as_bytes();
                // Replace a number or word after a `: ` with a troublemaker.
                if let Some(colon) = (0..out.len())
                    .skip(at(rng, out.len()))
                    .find(|&i| out[i] == b':')
                {
                    let start = colon + 1;
                    let end = (start..out.len())
                        .find(|&i| matches!(out[i], b',' | b'}' | b'\n' | b']'))
                        .unwrap_or(out.len());
                    out.splice(start..end, value.iter().copied());
                }
            }
        }
    }
    out
}

#[test]
fn mutated_policy_files_are_refused_or_accepted_never_a_panic() {
    let text = std::fs::read(repo("tests/fixtures/zones/test.example.yaml")).expect("policy");
    let mut rng = XorShift::new(0x0bad_cafe);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..1_500 {
        let mutated = mutate(&text, &mut rng);
        let Ok(text) = std::str::from_utf8(&mutated) else {
            continue;
        };
        match geosteer::policy::parse_zone(std::path::Path::new("m.yaml"), text, 1) {
            Ok(_) => accepted += 1,
            Err(errors) => {
                assert!(!errors.0.is_empty());
                refused += 1;
            }
        }
    }
    assert!(
        accepted > 10 && refused > 100,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn mutated_feed_batches_are_refused_or_applied_never_a_panic() {
    let zones = geosteer::policy::load_path(&repo("tests/fixtures/zones")).expect("zones");
    let seeds: [&[u8]; 3] = [
        br#"{"zone": "test.example", "measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 12, "loss": 0.01, "at": 1799999990}], "loads": [{"node": "tokyo", "load": 0.5}]}"#,
        br#"{"measurements": [{"group": "127.1.0.0/24", "node": "singapore", "rtt_ms": 30}]}"#,
        br#"{"measurements": [{"group": "AS-JP", "node": "tokyo", "rtt_ms": 10, "address": "192.0.2.1"}]}"#,
    ];
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut rng = XorShift::new(0xfeed_f00d);
    let (mut applied, mut refused) = (0, 0);
    for i in 0..20_000 {
        let mutated = mutate(seeds[i % seeds.len()], &mut rng);
        let Ok(batch) = serde_json::from_slice::<FeedBatch>(&mutated) else {
            continue;
        };
        match batch.validate(&zones, None, now) {
            Ok(valid) => {
                let mut latency: Vec<ZoneLatency> =
                    zones.iter().map(|_| ZoneLatency::default()).collect();
                valid.apply(&mut latency, None);
                applied += 1;
            }
            Err(errors) => {
                assert!(!errors.reasons().is_empty());
                refused += 1;
            }
        }
    }
    assert!(
        applied > 100 && refused > 100,
        "{applied} applied, {refused} refused"
    );
}

/// Mutated admin requests against the real server (with a token): answered or refused,
/// and the interface and the DNS service keep working.
#[test]
fn mutated_admin_requests_never_stop_the_interface() {
    use std::io::{Read, Write};
    let server = crate::support::Server::start_with_env(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[],
        &[("GEOSTEER_ADMIN_TOKEN", "s3cret")],
    );
    let seeds: [&[u8]; 6] = [
        b"POST /reload HTTP/1.1\r\nHost: rebind.example:8053\r\nOrigin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\nAuthorization: Basic eDpzM2NyZXQ=\r\nConnection: close\r\n\r\n",
        b"GET /nodes HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
        b"POST /latency HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/json\r\nContent-Length: 60\r\nConnection: close\r\n\r\n{\"measurements\": [{\"group\": \"AS-JP\", \"node\": \"tokyo\", \"rtt_ms\": 9}]}",
        b"POST /nodes/test.example/tokyo/drain HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
        b"GET /explain?name=ingest.test.example&client=127.1.0.5 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
        b"GET /config HTTP/1.1\r\nHost: localhost\r\nAuthorization: bearer s3cret\r\nConnection: close\r\n\r\n",
    ];
    let mut rng = XorShift::new(0xad31_0000);
    for i in 0..300 {
        let request = mutate(seeds[i % seeds.len()], &mut rng);
        let Ok(mut stream) = std::net::TcpStream::connect(server.admin) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(&request);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.read_to_end(&mut Vec::new());
    }
    // Both services still answer.
    let (status, _) = crate::support::nodes::http(server.admin, "GET", "/healthz", None);
    assert_eq!(status, 200);
    let (status, _) = crate::support::nodes::http(server.admin, "GET", "/nodes", Some("s3cret"));
    assert_eq!(status, 200);
    let reply = crate::support::udp(
        &server,
        &crate::support::q("www.test.example.", hickory_proto::rr::RecordType::A),
    );
    assert_eq!(
        reply.metadata.response_code,
        hickory_proto::op::ResponseCode::NoError
    );
}
