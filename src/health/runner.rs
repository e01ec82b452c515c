//! The check loop of one node: probe, damp, report, sleep; one task per node so a slow or
//! hung target delays nobody else.
//!
//! Timing: the first probe starts at a random point of the first interval so a fleet does not
//! probe in bursts; settled nodes are probed every `interval` (±10 %); while a change is being
//! confirmed (a first failure of an up node, a first success of a down one) the next probe
//! follows after `recheck`, so a hard failure is confirmed in a few tens of milliseconds and a
//! single lost probe still never flips a node. Probe timeouts adapt to the measured round trip
//! like TCP's retransmission timer (RFC 6298): a silently vanished host on a fast path is
//! declared dead in a fraction of the configured timeout, a distant one keeps a longer one.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::flap::{FlapDamping, Health};
use super::probe::{ProbeResult, TlsConfigs, probe};
use crate::metrics as m;
use crate::policy::{HealthCheck, NodeId};

/// The shortest probe timeout the round-trip estimate may set (Linux's minimum RTO).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(200);

/// A node across zones, in one loaded policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// Index of the zone in the loaded policy.
    pub zone: usize,
    /// Index of the node in its zone.
    pub node: NodeId,
    /// Which of the node's carrier lines this check probes (its index among the node's
    /// addresses); 0 also for a node without lines, whose check is its one line.
    pub line: u8,
    /// Which load of the policy the indices refer to: reports of checks started for an
    /// earlier load are ignored after a reload.
    pub generation: u64,
}

/// One probe's outcome as the publisher sees it.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which node.
    pub key: NodeKey,
    /// What the probe saw.
    pub result: ProbeResult,
    /// Health after this result.
    pub health: Health,
    /// `(old, new)` when this result changed the health.
    pub transition: Option<(Health, Health)>,
    /// The node's probe statistics after this result: the one estimate of its round trip
    /// (the same that sets probe timeouts) and its failure rate.
    pub stats: ProbeStats,
}

/// Smoothed probe statistics of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProbeStats {
    /// Smoothed round trip of passing probes (RFC 6298's SRTT), milliseconds; `None`
    /// until one passed.
    pub rtt_ms: Option<f64>,
    /// Smoothed failure rate (EWMA, α = 0.2), 0..=1.
    pub loss: f64,
}

/// Weight of the newest probe in the failure rate.
const LOSS_ALPHA: f64 = 0.2;

/// Round-trip estimate (RFC 6298) that sets probe timeouts.
#[derive(Debug, Clone, Default)]
pub struct RoundTrip {
    /// Smoothed round trip, seconds.
    srtt: Option<f64>,
    /// Round-trip variation, seconds.
    rttvar: f64,
}

impl RoundTrip {
    /// Adds a successful probe's latency.
    pub fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_secs_f64();
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2.0;
            }
            Some(s) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (s - r).abs();
                self.srtt = Some(0.875 * s + 0.125 * r);
            }
        }
    }

    /// The smoothed round trip, once measured.
    pub fn smoothed(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_secs_f64)
    }

    /// The timeout for the next probe: `max` until measured, then srtt + 4·rttvar within
    /// [`MIN_TIMEOUT`, `max`].
    pub fn timeout(&self, max: Duration) -> Duration {
        match self.srtt {
            None => max,
            Some(s) => {
                Duration::from_secs_f64(s + 4.0 * self.rttvar).clamp(MIN_TIMEOUT.min(max), max)
            }
        }
    }
}

/// One node's check as the publisher plans it: what to probe, the node's health before
/// (a reload restarts checks: results that agree with it are no transition), and the names
/// its metrics and logs carry.
#[derive(Debug, Clone)]
pub struct PlannedCheck {
    /// Which node, in which load of the policy.
    pub key: NodeKey,
    /// The node's health when the check starts.
    pub known: Health,
    /// What to probe, and how often.
    pub check: HealthCheck,
    /// The zone's origin, for metrics and logs.
    pub zone: String,
    /// The node's name, for metrics and logs.
    pub node: String,
}

impl PlannedCheck {
    /// The address probed, as metrics and logs name the line.
    fn line(&self) -> String {
        self.check.target.ip().to_string()
    }
}

/// A check's metric handles, registered once per check task so a probe only increments.
struct CheckMetrics {
    ok: metrics::Counter,
    fail: metrics::Counter,
    seconds: metrics::Histogram,
}

impl CheckMetrics {
    fn register(plan: &PlannedCheck) -> Self {
        let counter = |result: &'static str| metrics::counter!(m::HEALTH_CHECKS, "zone" => plan.zone.clone(), "node" => plan.node.clone(), "line" => plan.line(), "result" => result);
        CheckMetrics {
            ok: counter("ok"),
            fail: counter("fail"),
            seconds: metrics::histogram!(m::HEALTH_CHECK_SECONDS, "zone" => plan.zone.clone(), "node" => plan.node.clone(), "line" => plan.line()),
        }
    }
}

/// Logs and counts a change of a node's health: down as a warning, the rest as news.
fn note_transition(plan: &PlannedCheck, (old, new): (Health, Health), result: &ProbeResult) {
    // tracing fixes an event's level where it is written: one event, two levels.
    macro_rules! health_changed {
        ($level:ident) => {
            $level!(zone = %plan.zone, node = %plan.node, line = %plan.line(), from = ?old, to = ?new,
                check = %result.detail, latency_ms = result.latency.as_secs_f64() * 1e3,
                "node health changed")
        };
    }
    let to = match new {
        Health::Down => {
            health_changed!(warn);
            "down"
        }
        Health::Up => {
            health_changed!(info);
            "up"
        }
        Health::Unknown => {
            health_changed!(info);
            "unknown"
        }
    };
    metrics::counter!(m::NODE_TRANSITIONS, "zone" => plan.zone.clone(), "node" => plan.node.clone(), "line" => plan.line(), "to" => to)
        .increment(1);
}

/// Runs a node's checks until the task is dropped, sending every result to `reports`.
pub async fn run_checks(plan: PlannedCheck, tls: TlsConfigs, reports: mpsc::Sender<Report>) {
    let PlannedCheck { key, known, .. } = plan;
    let check = &plan.check;
    // Jitter only needs a seed that differs between runs and nodes.
    #[allow(clippy::disallowed_methods)]
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ ((key.zone as u64) << 32 | key.node as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut jitter = crate::random::XorShift::new(seed);
    let mut flap = FlapDamping::resuming(check.timing.rise, check.timing.fall, known);
    let mut round_trip = RoundTrip::default();
    let mut loss = 0.0;
    let counted = CheckMetrics::register(&plan);
    tokio::time::sleep(check.timing.interval.mul_f64(jitter.unit())).await;
    loop {
        let started = Instant::now();
        let timeout = round_trip.timeout(check.timing.timeout);
        let result = probe(check, timeout, &tls).await;
        if result.ok {
            round_trip.sample(result.latency);
            counted.ok.increment(1);
        } else {
            counted.fail.increment(1);
        }
        counted.seconds.record(result.latency.as_secs_f64());
        loss = (1.0 - LOSS_ALPHA) * loss + LOSS_ALPHA * if result.ok { 0.0 } else { 1.0 };
        let transition = flap.observe(result.ok);
        debug!(zone = key.zone, node = key.node, ok = result.ok, detail = %result.detail, "probe");
        if let Some(change) = transition {
            note_transition(&plan, change, &result);
        }
        let report = Report {
            key,
            result,
            health: flap.state(),
            transition,
            stats: ProbeStats {
                rtt_ms: round_trip.smoothed().map(|d| d.as_secs_f64() * 1e3),
                loss,
            },
        };
        if reports.send(report).await.is_err() {
            return; // the publisher is gone: shutting down
        }
        let next = if flap.confirming() {
            Instant::now() + check.timing.recheck
        } else {
            started + check.timing.interval.mul_f64(0.9 + 0.2 * jitter.unit())
        };
        tokio::time::sleep_until(next.max(Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_the_round_trip_within_bounds() {
        let max = Duration::from_secs(1);
        let mut rt = RoundTrip::default();
        assert_eq!(rt.timeout(max), max, "unmeasured: the configured bound");
        for _ in 0..20 {
            rt.sample(Duration::from_micros(100));
        }
        assert_eq!(rt.timeout(max), MIN_TIMEOUT, "fast path: the floor");
        let mut far = RoundTrip::default();
        for ms in [280, 320, 300, 310, 290] {
            far.sample(Duration::from_millis(ms));
        }
        let t = far.timeout(max);
        assert!(t > Duration::from_millis(300) && t <= max, "{t:?}");
        let mut slow = RoundTrip::default();
        slow.sample(Duration::from_secs(3));
        assert_eq!(slow.timeout(max), max, "never beyond the configured bound");
    }

    #[test]
    fn jitter_is_in_range() {
        let mut j = crate::random::XorShift::new(42);
        for _ in 0..1000 {
            let u = j.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
