//! Metric names: an API for dashboards and alerts, so they are constants, defined once.

/// Health probes, by zone, node and result (`ok`, `fail`).
pub const HEALTH_CHECKS: &str = "geosteer_health_checks_total";
/// Probe latency in seconds, by zone and node.
pub const HEALTH_CHECK_SECONDS: &str = "geosteer_health_check_seconds";
/// Health transitions, by zone, node and new state.
pub const NODE_TRANSITIONS: &str = "geosteer_node_transitions_total";
/// 1 when a node is answered, 0 when it is down, drained or forced down.
pub const NODE_UP: &str = "geosteer_node_up";
/// Time to rebuild every answer table, seconds.
pub const REBUILD_SECONDS: &str = "geosteer_answer_rebuild_seconds";
/// Reloads of policy and databases, by result (`ok`, `error`).
pub const RELOADS: &str = "geosteer_reloads_total";
