//! The latency feed: the batch format probe agents, beacons and the watched feed file send,
//! and its validation against the zones served, all or nothing.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{MAX_RTT_MS, age};

/// A feed batch as probe agents and beacons send it (also the watched file's format).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedBatch {
    /// Zone of entries that name none; optional when there is one zone.
    pub zone: Option<String>,
    /// Round trips.
    #[serde(default)]
    pub measurements: Vec<FeedMeasurement>,
    /// Node load reports.
    #[serde(default)]
    pub loads: Vec<FeedLoad>,
}

/// One round-trip report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedMeasurement {
    /// Zone of the node, when the batch names none or another.
    pub zone: Option<String>,
    /// `AS-JP`, `AS4713`, `203.0.113.0/24`.
    pub group: String,
    /// Node name.
    pub node: String,
    /// Round trip, ms.
    pub rtt_ms: f64,
    /// Loss rate 0..=1.
    #[serde(default)]
    pub loss: f64,
    /// When measured, seconds since 1970; now when absent.
    pub at: Option<f64>,
    /// The node address measured, for nodes reached over several lines; the node as a
    /// whole when absent.
    pub address: Option<String>,
}

/// One load report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedLoad {
    /// Zone of the node.
    pub zone: Option<String>,
    /// Node name.
    pub node: String,
    /// Fraction of capacity in use, 0..=1.5.
    pub load: f64,
}

/// Checks the values of a measurement that need no policy to judge.
pub fn check_values(
    rtt_ms: f64,
    loss: f64,
    at: Option<f64>,
    now: SystemTime,
    max_age: Duration,
) -> Result<SystemTime, String> {
    if !rtt_ms.is_finite() || rtt_ms <= 0.0 || rtt_ms > MAX_RTT_MS {
        return Err(format!(
            "rtt_ms {rtt_ms} is not a round trip (expected 0 < rtt_ms ≤ {MAX_RTT_MS})"
        ));
    }
    if !loss.is_finite() || !(0.0..=1.0).contains(&loss) {
        return Err(format!("loss {loss} is not a rate (expected 0..1)"));
    }
    let at = match at {
        None => now,
        Some(secs) if secs.is_finite() && secs >= 0.0 => {
            SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
        }
        Some(secs) => return Err(format!("at {secs} is not a time (seconds since 1970)")),
    };
    if at > now + Duration::from_secs(60) {
        return Err("at is in the future".into());
    }
    if age(now, at) > max_age {
        return Err(format!(
            "measurement is older than {} s and would be ignored",
            max_age.as_secs()
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_800_000_000);

    fn t(secs_before: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + NOW - Duration::from_secs(secs_before)
    }

    #[test]
    fn feed_values_are_checked() {
        let now = t(0);
        let max = Duration::from_secs(600);
        assert!(check_values(25.0, 0.0, None, now, max).is_ok());
        assert!(check_values(-1.0, 0.0, None, now, max).is_err());
        assert!(check_values(f64::NAN, 0.0, None, now, max).is_err());
        assert!(check_values(99_999.0, 0.0, None, now, max).is_err());
        assert!(check_values(25.0, 1.5, None, now, max).is_err());
        let future = NOW.as_secs_f64() + 3600.0;
        assert!(check_values(25.0, 0.0, Some(future), now, max).is_err());
        let old = NOW.as_secs_f64() - 3600.0;
        assert!(check_values(25.0, 0.0, Some(old), now, max).is_err());
    }
}
