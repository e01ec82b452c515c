//! A latency feeder for benchmarks: feed batches posted to the admin interface at a steady rate.

use std::net::SocketAddr;
use std::time::Duration;

use geosteer::random::XorShift;
use geosteer_harness::nodes;

/// Latency feed batches posted to an admin interface at a steady rate, for benchmarks:
/// each batch has 10 measurements from one of `groups` to one of `nodes` (named `n0`, `n1`,
/// ...). Runs until `stop` is set or `limit` has passed; returns the batches sent, those
/// refused, and the time it ran.
pub(crate) fn feed_latency(
    admin: SocketAddr,
    groups: &[&str],
    nodes: usize,
    per_second: u64,
    stop: &std::sync::atomic::AtomicBool,
    limit: Duration,
) -> (u64, u64, Duration) {
    let mut rng = XorShift::new(0xfeed);
    let started = std::time::Instant::now();
    let (mut batches, mut rejected) = (0u64, 0u64);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < limit {
        let entries: Vec<String> = (0..10)
            .map(|_| {
                format!(
                    r#"{{"group": "{}", "node": "n{}", "rtt_ms": {}}}"#,
                    groups[rng.below(groups.len() as u64) as usize],
                    rng.below(nodes as u64),
                    5 + rng.below(300)
                )
            })
            .collect();
        let batch = format!(r#"{{"measurements": [{}]}}"#, entries.join(","));
        if nodes::http_json(admin, "POST", "/latency", None, &batch).0 != 200 {
            rejected += 1;
        }
        batches += 1;
        let next = started + Duration::from_millis(1000 * batches / per_second.max(1));
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
    (batches, rejected, started.elapsed())
}
