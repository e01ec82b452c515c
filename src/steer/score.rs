//! The score formula: a node's expected round trip for a client, plus its load penalty,
//! inflated by probe loss and divided by weight (lower is better). The expected round trip
//! itself comes from `latency` (measurements blended with the distance estimate).

use std::time::SystemTime;

use crate::latency::{
    ClientGroup, Expected, LOSS_PENALTY, ZoneLatency, blend_of, blended_rtt_ms, expected,
};
use crate::policy::LatencyPolicy;

/// Milliseconds added to a node's expected latency for its reported load: nothing below
/// 80 %, then 10 ms per point up to 200 ms at 100 %, and 1 s beyond. Additive, so a loaded
/// node first sheds the clients that have a near alternative, and at full load nearly all.
pub fn load_penalty_ms(load: Option<f64>) -> f64 {
    match load {
        None => 0.0,
        Some(l) if l < 0.8 => 0.0,
        Some(l) if l < 1.0 => 1000.0 * (l - 0.8),
        Some(_) => 1000.0,
    }
}

/// Combined score, lower is better: expected latency plus the load penalty, inflated by the
/// loss rate of geosteer's own probes, divided by weight.
pub fn score(expected_ms: f64, load: Option<f64>, probe_loss: f64, weight: u32) -> f64 {
    (expected_ms + load_penalty_ms(load)) * loss_factor(probe_loss) / f64::from(weight.max(1))
}

fn loss_factor(probe_loss: f64) -> f64 {
    1.0 + LOSS_PENALTY * probe_loss.clamp(0.0, 1.0)
}

/// A node's expected latency and score for a client `distance_km` away in groups `keys`,
/// under a steered name's latency `policy` and for an answer that `spreads` or not: what
/// explanations show, the same numbers [`ScoreTerms`] ranks by.
pub fn node_score(
    measured: &ZoneLatency,
    id: usize,
    node: &crate::policy::Node,
    distance_km: Option<f64>,
    keys: &[ClientGroup],
    now: SystemTime,
    (policy, spreads): (&LatencyPolicy, bool),
) -> (Expected, f64) {
    let expected = expected(&measured.measurements, id, keys, distance_km, now, policy);
    let score = score(
        expected.rtt_ms,
        measured.load(id, now, node.capacity.max_age),
        measured.probe_loss.get(&id).copied().unwrap_or(0.0),
        score_weight(node, spreads),
    );
    (expected, score)
}

/// What divides a node's score: its weight, except in an answer that spreads, where weight
/// sets the node's share of the draw instead and leaves its score alone (so "about as near
/// as the best" compares distances, not weights).
pub fn score_weight(node: &crate::policy::Node, spreads: bool) -> u32 {
    if spreads { 1 } else { node.weight }
}

/// Everything a node's score for clients in one set of groups depends on except distance:
/// found once per (node, groups), so that ranking a place costs a distance and
/// [`ScoreTerms::score`]. Gives exactly [`node_score`]'s numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreTerms {
    /// The measurement used: observed round trip and its weight against the estimate.
    blend: Option<(f64, f64)>,
    load_penalty_ms: f64,
    loss_factor: f64,
    divisor: f64,
}

impl ScoreTerms {
    /// The terms of node `id` for clients in groups `keys` (see [`group_keys`]), its score
    /// divided by `weight` (see [`score_weight`]).
    pub fn of(
        measured: &ZoneLatency,
        (id, node, weight): (usize, &crate::policy::Node, u32),
        keys: &[ClientGroup],
        now: SystemTime,
        policy: &LatencyPolicy,
    ) -> ScoreTerms {
        ScoreTerms {
            blend: measured
                .measurements
                .best(id, keys, now, policy)
                .map(|(_, m, age)| blend_of(&m, age, policy)),
            load_penalty_ms: load_penalty_ms(measured.load(id, now, node.capacity.max_age)),
            loss_factor: loss_factor(measured.probe_loss.get(&id).copied().unwrap_or(0.0)),
            divisor: f64::from(weight.max(1)),
        }
    }

    /// Whether the score depends on distance alone: no measurement blends into it, so it
    /// grows strictly with distance and nodes of equal terms rank nearest first.
    pub fn by_distance_alone(&self) -> bool {
        self.blend.is_none()
    }

    /// The score for a client `distance_km` away. Never decreases with distance, so scores at
    /// the nearest and farthest possible distances bound a whole region's.
    pub fn score(&self, distance_km: Option<f64>) -> f64 {
        (blended_rtt_ms(self.blend, distance_km) + self.load_penalty_ms) * self.loss_factor
            / self.divisor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_sheds_before_full() {
        assert_eq!(load_penalty_ms(Some(0.5)), 0.0);
        assert!((load_penalty_ms(Some(0.9)) - 100.0).abs() < 1e-9);
        assert_eq!(load_penalty_ms(Some(1.2)), 1000.0);
        // At 85 % only clients with a near alternative move; at 97 % farther ones too.
        assert!(score(20.0, Some(0.85), 0.0, 1) > score(60.0, Some(0.3), 0.0, 1));
        assert!(score(20.0, Some(0.85), 0.0, 1) < score(120.0, Some(0.3), 0.0, 1));
        assert!(score(20.0, Some(0.97), 0.0, 1) > score(120.0, Some(0.3), 0.0, 1));
        assert!(score(20.0, Some(0.5), 0.0, 1) < score(60.0, Some(0.3), 0.0, 1));
        // Weight divides the score; probe loss inflates it.
        assert!((score(100.0, None, 0.0, 2) - 50.0).abs() < 1e-9);
        assert!((score(100.0, None, 0.1, 1) - 200.0).abs() < 1e-9);
    }
}
