//! dnsperf runs for benchmarks: a saturating rate against a running server.

use std::process::Command;

use geosteer_harness::Server;

/// Runs dnsperf (4 clients, 200 queries in flight) for `seconds` against `server` and returns
/// its queries per second; `None` without dnsperf.
pub(crate) fn dnsperf(server: &Server, queries: &std::path::Path, seconds: u32) -> Option<f64> {
    let output = Command::new("dnsperf")
        .args([
            "-s",
            &server.addr.ip().to_string(),
            "-p",
            &server.addr.port().to_string(),
        ])
        .args([
            "-d",
            queries.to_str()?,
            "-l",
            &seconds.to_string(),
            "-c",
            "4",
            "-q",
            "200",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|l| l.contains("Queries per second:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
}
