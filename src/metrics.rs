//! Metric names: an API for dashboards and alerts, so they are constants, defined once; and
//! the query counters and availability gauges, registered once per policy load so the query
//! path only increments and a health change only sets.

use metrics::{Counter, Gauge};

use crate::policy::{NodeId, Zone};
use crate::wire::{Outcome, Rcode, RecordType, Transport};

/// Health probes, by zone, node and result (`ok`, `fail`).
pub const HEALTH_CHECKS: &str = "geosteer_health_checks_total";
/// Probe latency in seconds, by zone and node.
pub const HEALTH_CHECK_SECONDS: &str = "geosteer_health_check_seconds";
/// Health transitions, by zone, node and new state.
pub const NODE_TRANSITIONS: &str = "geosteer_node_transitions_total";
/// 1 when a node is answered, 0 when it is down, drained, forced down or full.
pub const NODE_UP: &str = "geosteer_node_up";
/// Per carrier line of a node with carrier addresses: 1 while its own check passes, 0 while
/// it fails (its carrier's clients get the node's other lines), absent while unchecked.
pub const LINE_UP: &str = "geosteer_line_up";
/// 1 while the fleet's etcd is reachable (in a fleet), 0 while answers fall back to local
/// verdicts.
pub const FLEET_CONNECTED: &str = "geosteer_fleet_connected";
/// 1 while a node is full (at or over its capacity, until it falls below `resume`).
pub const NODE_FULL: &str = "geosteer_node_full";
/// Nodes a steered name may answer with that are available now, by zone and name: 0 means
/// the name answers fail-open (or SERVFAIL when it fails closed).
pub const NAME_NODES_UP: &str = "geosteer_name_nodes_up";
/// 1 when the last reload succeeded (or none was tried), 0 while a bad file is being ignored.
pub const RELOAD_OK: &str = "geosteer_reload_ok";
/// Time to rebuild every answer table, seconds.
pub const REBUILD_SECONDS: &str = "geosteer_answer_rebuild_seconds";
/// Time to rank every place for every steered name (policy loads and latency changes),
/// seconds; latency changes are ranked beside the builds, not before them.
pub const RANKING_SECONDS: &str = "geosteer_ranking_seconds";
/// Rankings started (policy loads and latency changes); fewer finish when a reload
/// overtakes one.
pub const RANKINGS_STARTED: &str = "geosteer_rankings_started_total";
/// Time to rank ahead, after a build, the cells one more failure would split, seconds
/// (rankings stopped by the next build are not counted).
pub const AHEAD_SECONDS: &str = "geosteer_ahead_seconds";
/// From a node's availability changing (health or operator) to the answers reflecting it
/// being published: rebuild time plus any wait to coalesce a burst.
pub const CHANGE_PUBLISH_SECONDS: &str = "geosteer_change_publish_seconds";
/// Steered names' tables per build, by how each came to be: `built` anew, `kept` from the
/// last build, or `taken_back` from the one before it (a change undone).
pub const STEERED_TABLES: &str = "geosteer_steered_tables_total";
/// DNSSEC signatures made by answer builds (kept signatures are not counted).
pub const SIGNATURES_MADE: &str = "geosteer_dnssec_signatures_made_total";
/// Reloads of policy and databases, by result (`ok`, `error`).
pub const RELOADS: &str = "geosteer_reloads_total";
/// Long-lived tasks that stopped while serving (the process then exits), by task.
pub const TASK_FAILURES: &str = "geosteer_task_failures_total";
/// UDP responses withheld by response-rate limiting, by action (`dropped`, `slipped`:
/// sent truncated, `would`: log-only mode).
pub const RRL_RESPONSES: &str = "geosteer_rrl_responses_total";
/// Latency feed batches (HTTP and the feed file), by result (`applied`, `rejected`).
pub const FEED_BATCHES: &str = "geosteer_feed_batches_total";
/// Measurements dropped, oldest first, to keep a zone within its cap.
pub const FEED_EVICTED: &str = "geosteer_feed_measurements_evicted_total";
/// Queries answered, by transport, rcode and whether ECS was present.
pub const QUERIES: &str = "geosteer_queries_total";
/// Queries for names in a zone, by zone, query type and rcode.
pub const ZONE_QUERIES: &str = "geosteer_zone_queries_total";
/// Addresses answered for a steered name, by zone and node: where traffic is being sent.
pub const NODE_ANSWERS: &str = "geosteer_node_answers_total";
/// Responses truncated (TC) over UDP.
pub const TRUNCATED: &str = "geosteer_truncated_total";
/// TCP connections accepted.
pub const TCP_CONNECTIONS: &str = "geosteer_tcp_connections_total";

/// Help text for every metric, shown in the Prometheus exposition; called once when the
/// recorder is installed.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        RRL_RESPONSES,
        "UDP responses withheld by response-rate limiting, by action (dropped, slipped, would)."
    );
    describe_counter!(
        TASK_FAILURES,
        "Long-lived tasks that stopped while serving, by task; the process then exits."
    );
    describe_counter!(
        FEED_BATCHES,
        "Latency feed batches (HTTP and the feed file) by result (applied, rejected)."
    );
    describe_counter!(
        FEED_EVICTED,
        "Measurements dropped, oldest first, to keep a zone within its cap (10,000)."
    );
    describe_counter!(
        HEALTH_CHECKS,
        "Health probes by zone, node and result (ok, fail)."
    );
    describe_histogram!(
        HEALTH_CHECK_SECONDS,
        metrics::Unit::Seconds,
        "Health probe duration by zone and node."
    );
    describe_counter!(
        NODE_TRANSITIONS,
        "Node health transitions by zone, node and new state."
    );
    describe_gauge!(
        LINE_UP,
        "Per carrier line (zone, node, line address): 1 while its check passes, 0 while it fails."
    );
    describe_gauge!(
        NODE_UP,
        "1 when a node is answered, 0 when it is down, drained, forced down or full."
    );
    describe_gauge!(
        FLEET_CONNECTED,
        "1 while the fleet's etcd is reachable, 0 while answers fall back to local verdicts (fleet mode only)."
    );
    describe_gauge!(
        NODE_FULL,
        "1 while a node is full: it gives way to the next nodes until its load falls below its resume threshold."
    );
    describe_gauge!(
        NAME_NODES_UP,
        "Nodes a steered name may answer with that are available now."
    );
    describe_gauge!(
        RELOAD_OK,
        "1 when the last reload succeeded (or none was tried), 0 while a bad policy is rejected."
    );
    describe_histogram!(
        REBUILD_SECONDS,
        metrics::Unit::Seconds,
        "Time to rebuild every answer table."
    );
    describe_histogram!(
        RANKING_SECONDS,
        metrics::Unit::Seconds,
        "Time to rank every place for every steered name (policy loads, latency changes)."
    );
    describe_counter!(
        RANKINGS_STARTED,
        "Rankings of every place for every steered name started (policy loads, latency changes)."
    );
    describe_histogram!(
        AHEAD_SECONDS,
        metrics::Unit::Seconds,
        "Time to rank ahead, after a build, the cells one more failure would split."
    );
    describe_histogram!(
        CHANGE_PUBLISH_SECONDS,
        metrics::Unit::Seconds,
        "From a node availability change to the answers reflecting it being published."
    );
    describe_counter!(
        STEERED_TABLES,
        "Steered names' tables per answer build, by how each came to be: built anew, kept from the last build, or taken back from the one before it (a change undone)."
    );
    describe_counter!(
        SIGNATURES_MADE,
        "DNSSEC signatures made by answer builds (signatures kept from the previous build are not counted)."
    );
    describe_counter!(
        RELOADS,
        "Reloads of policy and databases by result (ok, error)."
    );
    describe_counter!(
        QUERIES,
        "Queries answered by transport, rcode and ECS presence."
    );
    describe_counter!(
        ZONE_QUERIES,
        "Queries for names of a zone by zone, query type and rcode."
    );
    describe_counter!(
        NODE_ANSWERS,
        "Steered answers that included a node, by zone and node."
    );
    describe_counter!(TRUNCATED, "UDP responses sent truncated (TC).");
    describe_counter!(TCP_CONNECTIONS, "TCP connections accepted.");
}

/// Counter handles for the query path: looked up once, then only incremented.
#[derive(Clone)]
pub struct QueryCounters {
    /// `[transport][rcode][ecs]`.
    queries: Vec<Counter>,
    truncated: Counter,
    tcp_connections: Counter,
    /// Rate-limited responses: dropped, slipped, would (log-only).
    rate_limited: [Counter; 3],
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
            rate_limited: ["dropped", "slipped", "would"]
                .map(|action| metrics::counter!(RRL_RESPONSES, "action" => action)),
        }
    }

    /// Counts one answered query.
    pub fn count(&self, transport: Transport, outcome: Outcome) {
        let t = usize::from(transport == Transport::Tcp);
        let index = (t * Rcode::ALL.len() + outcome.rcode.index()) * 2
            + usize::from(outcome.subnet.is_some());
        if let Some(counter) = self.queries.get(index) {
            counter.increment(1);
        }
        if outcome.truncated {
            self.truncated.increment(1);
        }
    }

    /// Counts one answered query, and for a name of one of our zones, that zone's counter.
    pub fn count_in(&self, zones: &[ZoneCounters], transport: Transport, outcome: Outcome) {
        self.count(transport, outcome);
        if let Some(zone) = outcome.zone.and_then(|z| zones.get(z)) {
            zone.query(outcome.qtype, outcome.rcode);
        }
    }

    /// Counts one rate-limited response.
    pub fn rate_limited(&self, action: Limited) {
        self.rate_limited[action as usize].increment(1);
    }

    /// Counts one accepted TCP connection.
    pub fn connection(&self) {
        self.tcp_connections.increment(1);
    }
}

/// Query types with a label of their own; every other type counts as `other`.
const QTYPES: [RecordType; 13] = [
    RecordType::A,
    RecordType::NS,
    RecordType::CNAME,
    RecordType::SOA,
    RecordType::PTR,
    RecordType::MX,
    RecordType::TXT,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::SVCB,
    RecordType::HTTPS,
    RecordType::ANY,
    RecordType::CAA,
];

/// What response-rate limiting did with a response it limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Not sent.
    Dropped = 0,
    /// Sent truncated.
    Slipped = 1,
    /// Sent: log-only mode.
    Would = 2,
}

/// Per-zone counters, registered once per policy load (not per rebuild) and carried in every
/// snapshot of that load, so the query path only indexes and increments.
#[derive(Debug, Default)]
pub struct ZoneCounters {
    /// `[qtype][rcode]`, with `other` as the last qtype row.
    queries: Vec<Counter>,
    /// By node id.
    answers: Vec<Counter>,
}

impl ZoneCounters {
    /// Registers the counters of every zone, in policy order (the order of `ZoneAnswers::index`).
    pub fn register(zones: &[Zone]) -> Vec<ZoneCounters> {
        zones
            .iter()
            .map(|zone| {
                let origin = zone.origin.to_string();
                let mut queries = Vec::new();
                let qtypes = QTYPES
                    .iter()
                    .map(|t| t.name().unwrap_or("other"))
                    .chain(["other"]);
                for qtype in qtypes {
                    for rcode in Rcode::ALL {
                        queries.push(metrics::counter!(ZONE_QUERIES, "zone" => origin.clone(), "qtype" => qtype, "rcode" => rcode.as_str()));
                    }
                }
                let answers = zone
                    .nodes
                    .iter()
                    .map(|n| metrics::counter!(NODE_ANSWERS, "zone" => origin.clone(), "node" => n.name.clone()))
                    .collect();
                ZoneCounters { queries, answers }
            })
            .collect()
    }

    /// Counts one query for a name of this zone.
    pub fn query(&self, qtype: u16, rcode: Rcode) {
        let row = QTYPES
            .iter()
            .position(|t| t.0 == qtype)
            .unwrap_or(QTYPES.len());
        if let Some(counter) = self.queries.get(row * Rcode::ALL.len() + rcode.index()) {
            counter.increment(1);
        }
    }

    /// Counts the nodes of one steered answer.
    pub fn answered(&self, nodes: impl Iterator<Item = NodeId>) {
        for node in nodes {
            if let Some(counter) = self.answers.get(node) {
                counter.increment(1);
            }
        }
    }
}

/// A zone's availability gauges, registered once per policy load: a health change sets
/// them through these handles instead of looking every series up by its labels again
/// (for 200 nodes and 50 names, a third of a millisecond before the change's build).
#[derive(Debug, Default)]
pub struct AvailabilityGauges {
    /// By node id: whether it can answer, and whether it is full.
    up: Vec<Gauge>,
    full: Vec<Gauge>,
    /// By steered name: its candidate nodes, and the gauge of how many of them can answer.
    names: Vec<(Vec<NodeId>, Gauge)>,
}

impl AvailabilityGauges {
    /// Registers the gauges of every zone, in policy order.
    pub fn register(zones: &[Zone]) -> Vec<AvailabilityGauges> {
        zones
            .iter()
            .map(|zone| {
                let origin = zone.origin.to_string();
                let node = |name: &'static str| -> Vec<Gauge> {
                    (zone.nodes.iter())
                        .map(|n| metrics::gauge!(name, "zone" => origin.clone(), "node" => n.name.clone()))
                        .collect()
                };
                let names = (zone.steered.iter())
                    .map(|steered| {
                        let gauge = metrics::gauge!(NAME_NODES_UP, "zone" => origin.clone(), "name" => steered.name.to_string());
                        (steered.candidate_nodes(), gauge)
                    })
                    .collect();
                AvailabilityGauges {
                    up: node(NODE_UP),
                    full: node(NODE_FULL),
                    names,
                }
            })
            .collect()
    }

    /// Sets every gauge of the zone from each node's `(answerable, full)`, by node id.
    pub fn set(&self, state: impl Fn(NodeId) -> (bool, bool)) {
        for id in 0..self.up.len() {
            self.set_node_only(id, &state);
        }
        self.set_names(|_| true, &state);
    }

    /// Sets the gauges of node `id` and of the names that can answer with it.
    pub fn set_node(&self, id: NodeId, state: impl Fn(NodeId) -> (bool, bool)) {
        self.set_node_only(id, &state);
        self.set_names(|candidates| candidates.binary_search(&id).is_ok(), &state);
    }

    fn set_node_only(&self, id: NodeId, state: impl Fn(NodeId) -> (bool, bool)) {
        let gauge = |on: bool| if on { 1.0 } else { 0.0 };
        let (answerable, full) = state(id);
        if let (Some(up_gauge), Some(full_gauge)) = (self.up.get(id), self.full.get(id)) {
            up_gauge.set(gauge(answerable));
            full_gauge.set(gauge(full));
        }
    }

    /// Recounts the available candidates of the names `chosen` (by their sorted candidates).
    fn set_names(
        &self,
        chosen: impl Fn(&[NodeId]) -> bool,
        state: impl Fn(NodeId) -> (bool, bool),
    ) {
        for (candidates, gauge) in self.names.iter().filter(|(c, _)| chosen(c)) {
            let available = candidates.iter().filter(|&&id| state(id).0).count();
            gauge.set(available as f64);
        }
    }
}
