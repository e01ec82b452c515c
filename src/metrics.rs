//! Metric names: an API for dashboards and alerts, so they are constants, defined once; and
//! the query counters, registered once so the query path only increments.

use metrics::Counter;

use crate::dns::{Outcome, Rcode, Transport};

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
/// Queries answered, by transport, rcode and whether ECS was present.
pub const QUERIES: &str = "geosteer_queries_total";
/// Responses truncated (TC) over UDP.
pub const TRUNCATED: &str = "geosteer_truncated_total";
/// TCP connections accepted.
pub const TCP_CONNECTIONS: &str = "geosteer_tcp_connections_total";

/// Counter handles for the query path: looked up once, then only incremented.
#[derive(Clone)]
pub struct QueryCounters {
    /// `[transport][rcode][ecs]`.
    queries: Vec<Counter>,
    truncated: Counter,
    tcp_connections: Counter,
}

impl QueryCounters {
    /// Registers every combination with the installed recorder (no-ops without one).
    pub fn register() -> Self {
        let mut queries = Vec::new();
        for transport in ["udp", "tcp"] {
            for rcode in Rcode::ALL {
                for ecs in ["no", "yes"] {
                    queries.push(metrics::counter!(QUERIES, "transport" => transport, "rcode" => rcode.as_str(), "ecs" => ecs));
                }
            }
        }
        QueryCounters {
            queries,
            truncated: metrics::counter!(TRUNCATED),
            tcp_connections: metrics::counter!(TCP_CONNECTIONS),
        }
    }

    /// Counts one answered query.
    pub fn count(&self, transport: Transport, outcome: Outcome) {
        let t = usize::from(transport == Transport::Tcp);
        let index = (t * Rcode::ALL.len() + outcome.rcode.index()) * 2 + usize::from(outcome.ecs);
        if let Some(counter) = self.queries.get(index) {
            counter.increment(1);
        }
        if outcome.truncated {
            self.truncated.increment(1);
        }
    }

    /// Counts one accepted TCP connection.
    pub fn connection(&self) {
        self.tcp_connections.increment(1);
    }
}
