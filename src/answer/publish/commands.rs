//! The publisher's interface: the commands it takes, the read access serving tasks get, and
//! the node state the admin interface shows.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::answer::snapshot::Snapshot;
use crate::health::Health;
use crate::latency::feed::FeedBatch;
use crate::policy::AdminStatus;
use crate::steer::Availability;

/// Read access to the current snapshot, cheap to clone into every serving task.
#[derive(Debug, Clone)]
pub struct SnapshotReader {
    pub(super) current: Arc<ArcSwap<Snapshot>>,
}

impl SnapshotReader {
    /// The current snapshot: load once per query and use that view throughout.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }
}

/// An operator's run-time decision about a node, overriding policy and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Override {
    /// Take the node out of answers for maintenance.
    Drain,
    /// Answer the node whatever its checks say.
    ForceUp,
    /// Never answer the node.
    ForceDown,
}

/// Requests to the publisher.
#[derive(Debug)]
pub enum Command {
    /// Sets (`Some`) or clears (`None`) a node's override; replies after publication.
    SetOverride {
        /// Zone origin, with or without the trailing dot.
        zone: String,
        /// Node name.
        node: String,
        /// The override.
        set: Option<Override>,
        /// The node's state afterwards, or why the node was not found.
        reply: oneshot::Sender<Result<NodeStatus, String>>,
    },
    /// Every node's state.
    Status {
        /// The answer.
        reply: oneshot::Sender<Vec<NodeStatus>>,
    },
    /// Reloads policy and databases from their files: validated first, swapped in whole,
    /// node health and measurements carried over by zone and node name. On any error the
    /// current state keeps serving.
    Reload {
        /// What was loaded, or every reason it was not.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The policy as loaded, defaults filled in, with the databases' sizes.
    Config {
        /// The answer.
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// The last reload's outcome.
    ReloadStatus {
        /// `None` before any reload; else when it succeeded or why it failed.
        reply: oneshot::Sender<Option<Result<f64, String>>>,
    },
    /// Whether the server is ready: zones loaded and every health-checked node checked at
    /// least once (so answers reflect health, not the optimistic start).
    Ready {
        /// When ready, `Ok` with what degrades the service without stopping it (the fleet
        /// unreachable); else what is still missing.
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
    /// Explains the current answer of a steered name for a client address.
    Explain {
        /// The steered name.
        name: String,
        /// The client (or ECS subnet) address.
        client: std::net::IpAddr,
        /// The explanation, or why there is none.
        reply: oneshot::Sender<Result<crate::explain::Explanation, String>>,
    },
    /// News from the fleet connection.
    Fleet(FleetNews),
    /// The status page's data for a steered name (the first one when `None`): nodes,
    /// timeline, and where every country's clients go.
    Map {
        /// The steered name.
        name: Option<String>,
        /// The census the asker holds (`census_id` of an earlier answer): left out of the
        /// answer when it is still current.
        have: Option<u64>,
        /// The address family counted.
        family: crate::net::Family,
        /// The data, or why there is none.
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// Where a steered name's clients would go with some nodes taken out, compared with
    /// now; nothing live changes.
    WhatIf {
        /// The steered name (the first one when `None`).
        name: Option<String>,
        /// Nodes taken out, and how.
        changes: Vec<(String, WhatIfChange)>,
        /// The address family counted.
        family: crate::net::Family,
        /// The comparison, or why there is none.
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// The fleet connection's state (`None` when not in a fleet).
    FleetStatus {
        /// The answer.
        reply: oneshot::Sender<Option<serde_json::Value>>,
    },
    /// Applies a batch of latency measurements and load reports: all of it, or (on any
    /// error) none of it. Replies with the number of entries applied, or every error.
    Feed {
        /// The batch.
        batch: FeedBatch,
        /// The outcome.
        reply: oneshot::Sender<Result<usize, Vec<String>>>,
    },
}

/// What the fleet (instances and probe agents sharing state through etcd) says, by zone
/// origin (no trailing dot, lowercase) and node name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetState {
    /// Operators' overrides, written once for every instance.
    pub overrides: HashMap<(String, String), Override>,
    /// Other vantage points' health verdicts: (zone, node) → (vantage point, health).
    pub verdicts: HashMap<(String, String), Vec<(String, Health)>>,
    /// Live instances and probe agents, by identity.
    pub members: Vec<String>,
    /// What each member registered: its version and policy serials (JSON), by identity.
    pub member_info: HashMap<String, String>,
    /// Each other member's latest feed batch (JSON), by identity: measurements and loads
    /// posted to any instance, and probe agents' round trips.
    pub feeds: HashMap<String, String>,
}

/// News from the fleet connection.
#[derive(Debug, Clone)]
pub enum FleetNews {
    /// The fleet's state as of now.
    State(FleetState),
    /// etcd cannot be reached: answer from local verdicts and the last state seen.
    Lost(String),
}

/// What the publisher tells the fleet: changes of its own, written to etcd off its loop.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetWrite {
    /// This instance's verdict on a node changed.
    Verdict {
        /// Zone origin (no trailing dot, lowercase).
        zone: String,
        /// Node name.
        node: String,
        /// What its checks say.
        health: Health,
    },
    /// A feed batch accepted here (JSON), or a probe agent's measurements, for the others.
    Feed(String),
    /// The policy this member serves now: SOA serial by zone, so a fleet shows members that
    /// serve different versions.
    Policy(Vec<(String, u32)>),
    /// An operator set or cleared an override through this instance.
    Override {
        /// Zone origin (no trailing dot, lowercase).
        zone: String,
        /// Node name.
        node: String,
        /// The override; `None` clears it.
        set: Option<Override>,
    },
}

/// A node's state, as the admin interface shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Zone origin.
    pub zone: String,
    /// Node name.
    pub node: String,
    /// `core`, `edge` or `backup`.
    pub tier: crate::policy::Tier,
    /// Policy's administrative status.
    pub policy_status: AdminStatus,
    /// Run-time override, if any.
    #[serde(rename = "override")]
    pub override_: Option<Override>,
    /// What the checks say.
    pub health: Health,
    /// Whether answers use the node.
    pub availability: Availability,
    /// The check, `"none"` when the node is not checked.
    pub check: String,
    /// Last probe: passed?
    pub last_ok: Option<bool>,
    /// Last probe: what it saw.
    pub last_detail: Option<String>,
    /// Last probe: latency in milliseconds.
    pub last_latency_ms: Option<f64>,
    /// Seconds since the last probe.
    pub last_check_age_s: Option<f64>,
    /// Seconds since the availability last changed (or since start).
    pub since_s: f64,
    /// Smoothed latency of successful probes, ms.
    pub probe_rtt_ms: Option<f64>,
    /// Smoothed probe failure rate.
    pub probe_loss: f64,
    /// Last reported load (feed), 0..=1.5.
    pub load: Option<f64>,
    /// In a fleet: the health the answers use, decided by the zone's quorum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_health: Option<Health>,
}

/// A node taken out in a what-if, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhatIfChange {
    /// Its checks fail.
    Down,
    /// Drained by an operator.
    Drained,
    /// At capacity.
    Full,
}

impl WhatIfChange {
    pub(super) fn availability(self) -> Availability {
        match self {
            WhatIfChange::Down => Availability::HealthDown,
            WhatIfChange::Drained => Availability::AdminDown,
            WhatIfChange::Full => Availability::Full(100),
        }
    }

    pub(super) fn word(self) -> &'static str {
        match self {
            WhatIfChange::Down => "down",
            WhatIfChange::Drained => "drained",
            WhatIfChange::Full => "full",
        }
    }
}
