//! Latency feed batches (measurements and loads), from the admin interface, the feed file
//! or other fleet members: validated against the served policy, then applied whole.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::warn;

use super::served::Served;
use crate::latency::feed::{FeedBatch, FeedRejected, MAX_BATCH_BYTES};
use crate::latency::{Load, ZoneLatency};
use crate::metrics as m;

/// Validates `batch` against the served zones and applies it to `latency` only if all is
/// well: how many entries were applied, or every error.
pub(super) fn apply(
    batch: &FeedBatch,
    served: &Served,
    latency: &mut Arc<Vec<ZoneLatency>>,
    now: SystemTime,
) -> Result<usize, FeedRejected> {
    let valid = batch
        .validate(&served.zones, served.asn.as_deref(), now)
        .inspect_err(|errors| {
            warn!(errors = %errors, "latency feed batch rejected");
            metrics::counter!(m::FEED_BATCHES, "result" => "rejected").increment(1);
        })?;
    metrics::counter!(m::FEED_BATCHES, "result" => "applied").increment(1);
    let applied = valid.len();
    if applied > 0 {
        let evicted = valid.apply(Arc::make_mut(latency).as_mut_slice(), served.asn.as_deref());
        if evicted > 0 {
            warn!(
                evicted,
                "measurements past the cap per zone: the oldest made room"
            );
            metrics::counter!(m::FEED_EVICTED).increment(evicted as u64);
        }
    }
    Ok(applied)
}

/// Debug builds only (what the tests run): `GEOSTEER_FAULT=publisher` makes the publisher
/// panic at its first feed batch, so a test can see supervision end the process. Release
/// builds have no such hook.
#[cfg(debug_assertions)]
pub(super) fn injected_fault() -> bool {
    std::env::var("GEOSTEER_FAULT").is_ok_and(|v| v == "publisher")
}

/// A batch accepted here as the fleet gets it (JSON), unless it grew past what etcd
/// carries (logged).
pub(super) fn shared(batch: &FeedBatch) -> Option<String> {
    let json = serde_json::to_string(batch).ok()?;
    if json.len() > MAX_BATCH_BYTES {
        warn!(
            bytes = json.len(),
            "a feed batch is too large to share with the fleet; applied here only"
        );
        return None;
    }
    Some(json)
}

/// A change in a node's reported load that is worth a re-ranking.
const LOAD_STEP: f64 = 0.02;

/// A load a check reported (it counts like one from the feed): recorded when it moved by
/// more than `LOAD_STEP`, or to keep it from aging out (the held report is a quarter of
/// `max_age` old); whether it moved.
pub(super) fn record_load(
    latency: &mut Arc<Vec<ZoneLatency>>,
    (zone, node): (usize, usize),
    load: f64,
    now: SystemTime,
    max_age: std::time::Duration,
) -> bool {
    let held = latency.get(zone).and_then(|z| z.loads.get(&node).copied());
    let moved = held.is_none_or(|old| (old.value - load).abs() > LOAD_STEP);
    let aging = held.is_some_and(|old| {
        now.duration_since(old.at)
            .is_ok_and(|age| age >= max_age / 4)
    });
    if (moved || aging)
        && let Some(z) = Arc::make_mut(latency).get_mut(zone)
    {
        z.record_load(
            node,
            Load {
                value: load,
                at: now,
            },
        );
    }
    moved
}

/// Other fleet members' feed batches as last applied, by identity: each is applied once.
#[derive(Debug, Default)]
pub(super) struct MemberFeeds(HashMap<String, String>);

impl MemberFeeds {
    /// The batches in `feeds` not applied yet, parsed; a batch that is not JSON is logged
    /// and skipped.
    pub(super) fn unseen(&mut self, feeds: &HashMap<String, String>) -> Vec<(String, FeedBatch)> {
        let mut out = Vec::new();
        for (member, json) in feeds {
            if self.0.get(member) == Some(json) {
                continue;
            }
            match serde_json::from_str::<FeedBatch>(json) {
                Ok(batch) => out.push((member.clone(), batch)),
                Err(e) => {
                    warn!(member = %member, error = %e, "a fleet member's feed batch is not JSON")
                }
            }
            self.0.insert(member.clone(), json.clone());
        }
        out
    }
}
