//! The publisher's interface: the commands that change state, the read access serving
//! tasks and the admin interface get, and the node state the admin interface shows.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::answer::snapshot::Snapshot;
use crate::health::Health;
use crate::latency::feed::{FeedBatch, FeedRejected};
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

    /// The current snapshot, held for longer work (a census) off the query path.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

/// An operator's run-time decision about a node, overriding policy and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Override {
    /// Take the node out of answers for maintenance.
    Drain,
    /// Move this percentage (1 to 99) of the node's client networks elsewhere, chosen by
    /// the draw's hash: a staged drain.
    DrainShare(u8),
    /// Answer the node whatever its checks say.
    ForceUp,
    /// Never answer the node.
    ForceDown,
}

/// Who set (or cleared) an override and why: what the audit trail records — in the log,
/// the timeline, `/nodes` and, in a fleet, beside the override in etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Audit {
    /// Who: the admin token's holder (`admin` for a single token, `local` without one),
    /// or the user of `geosteer fleet`.
    pub by: String,
    /// Why, as they said it (`?reason=`, `--reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Longest reason kept, in characters: a sentence, not a document.
const MAX_REASON: usize = 200;

impl Audit {
    /// An audit entry, the reason cut to [`MAX_REASON`] characters and to printable text
    /// (it goes into logs and etcd as given).
    pub fn new(by: impl Into<String>, reason: Option<&str>) -> Audit {
        let reason = reason
            .map(|r| {
                r.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_REASON)
                    .collect::<String>()
            })
            .filter(|r| !r.trim().is_empty());
        Audit {
            by: by.into(),
            reason,
        }
    }

    /// "by alice (kernel upgrade)", for messages.
    pub fn words(&self) -> String {
        match &self.reason {
            Some(reason) => format!("by {} ({reason})", self.by),
            None => format!("by {}", self.by),
        }
    }
}

/// The override of a drain of `share` percent of a node's networks: a full drain at 100,
/// none at 0 or above 100.
pub fn drain_share(share: u8) -> Option<Override> {
    match share {
        1..=99 => Some(Override::DrainShare(share)),
        100 => Some(Override::Drain),
        _ => None,
    }
}

/// Why a command was refused; each message is written for an operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The zone or node named is not served.
    #[error("no node '{node}' in zone '{zone}'")]
    NoSuchNode {
        /// The zone as asked.
        zone: String,
        /// The node as asked.
        node: String,
    },
    /// The server was started without files (a test or an embedding).
    #[error("this server has no files to reload from")]
    NoFiles,
    /// The new policy or databases are bad: every reason, as the loader reports them.
    #[error("{0}")]
    Rejected(String),
}

/// Requests that change state: everything else is read from the published view.
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
        /// Who, and why.
        by: Audit,
        /// The node's state afterwards, or why the node was not found.
        reply: oneshot::Sender<Result<NodeStatus, CommandError>>,
    },
    /// Reloads policy and databases from their files: validated first, swapped in whole,
    /// node health and measurements carried over by zone and node name. On any error the
    /// current state keeps serving.
    Reload {
        /// What was loaded, or every reason it was not.
        reply: oneshot::Sender<Result<String, CommandError>>,
    },
    /// News from the fleet connection.
    Fleet(FleetNews),
    /// Applies a batch of latency measurements and load reports: all of it, or (on any
    /// error) none of it. Replies with the number of entries applied, or every error.
    Feed {
        /// The batch.
        batch: FeedBatch,
        /// The outcome.
        reply: oneshot::Sender<Result<usize, FeedRejected>>,
    },
}

/// What the fleet (instances and probe agents sharing state through etcd) says, by zone
/// origin (no trailing dot, lowercase) and node name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetState {
    /// Operators' overrides, written once for every instance.
    pub overrides: HashMap<(String, String), Override>,
    /// Who set each override the fleet holds, and why, where it says.
    pub audits: HashMap<(String, String), Audit>,
    /// Other vantage points' health verdicts: (zone, node) → (vantage point, health).
    pub verdicts: HashMap<(String, String), Vec<(String, Health)>>,
    /// Live instances and probe agents, by identity.
    pub members: Vec<String>,
    /// What each member registered: its version and policy serials (JSON), by identity.
    pub member_info: HashMap<String, String>,
    /// Each other member's latest feed batch (JSON), by identity: measurements and loads
    /// posted to any instance, and probe agents' round trips.
    pub feeds: HashMap<String, String>,
    /// The etcd member this instance reads the fleet through.
    pub via: Option<String>,
}

/// News from the fleet connection.
#[derive(Debug, Clone)]
pub enum FleetNews {
    /// The fleet's state as of now.
    State(Box<FleetState>),
    /// etcd cannot be reached: answer from local verdicts and the last state seen.
    Lost(String),
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
    /// Last reported load (feed or check), 0..=1.5, while it counts (within the node's
    /// `capacity.max_age`).
    pub load: Option<f64>,
    /// Seconds since that load was measured.
    pub load_age_s: Option<f64>,
    /// The last load reported, once it stopped counting (older than `capacity.max_age`
    /// with no newer report): what it was...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_load: Option<f64>,
    /// ...and how many seconds ago it went stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_stale_s: Option<f64>,
    /// In a fleet: the health the answers use, decided by the zone's quorum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_health: Option<Health>,
    /// Who set the override (or cleared the last one) and why, and how many seconds ago.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_by: Option<Audit>,
    /// Seconds since the override was set or cleared through this instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_age_s: Option<f64>,
    /// Each carrier line's own verdict (nodes with carrier addresses only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineStatus>,
}

/// One carrier line of a node, as the admin interface shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LineStatus {
    /// The line's address.
    pub address: std::net::IpAddr,
    /// The carrier's AS number, when the address is on one.
    pub asn: Option<u32>,
    /// What the line's own check says.
    pub health: Health,
    /// Seconds since that last changed.
    pub since_s: f64,
    /// The last probe's outcome in words.
    pub detail: String,
}
