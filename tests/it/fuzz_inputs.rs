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
                assert!(!errors.is_empty());
                refused += 1;
            }
        }
    }
    assert!(
        applied > 100 && refused > 100,
        "{applied} applied, {refused} refused"
    );
}
