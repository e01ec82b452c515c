//! Answer tables: the immutable `Snapshot` that queries read (`snapshot`), how it is built
//! from rankings and availability (`zone`, the static records; `build`, the steered answers)
//! and how it is published (`publish`, the single writer, with a read-only state view
//! beside the snapshot).
//!
//! A snapshot holds everything a query needs — zones, pre-encoded record bodies, steered-name
//! tables (an address-range table per name, and tables indexed by GeoIP place for subnet
//! rules and prefix groups), the GeoIP tables themselves — so one atomic load gives a query a
//! consistent view. Selection is indexing only: ranking happened in `steer`, picking here
//! when the snapshot was built. This folder's face only re-exports.

mod ahead;
mod build;
pub mod census;
pub mod draw;
mod publish;
mod signed;
mod snapshot;
mod zone;

pub use ahead::rank_ahead_of;
pub use build::{Before, build, rebuild};

/// Signs the signed zones of a snapshot built by [`build`] (`zones` as given to it) at
/// `now` (UNIX seconds), as the publisher does after each build; returns the signatures
/// made. For tests and benchmarks that answer from a snapshot built in process.
pub fn sign(snapshot: &mut Snapshot, zones: &[crate::policy::Zone], now: u64) -> usize {
    signed::sign_zones(snapshot, zones, None, now)
}
pub use publish::{
    Audit, Command, CommandError, FleetKey, FleetNews, FleetPolicy, FleetState, NodeStatus,
    NotReady, Outbox, Override, Publisher, SnapshotReader, StateView, Timeline, TimelineEntry,
    ViewReader, drain_share, fleet_zone, unix_seconds,
};
pub use snapshot::{
    Ahead, AnswerSet, AnswerSignatures, CLASS_SPLIT, ClientAnswer, Delegation, EncodedRrset,
    ExplainView, FamilyAnswer, FamilyBodies, NameLookup, NameNode, Selection, Signatures,
    SignedNsec, SignedSubset, Snapshot, SteeredTable, ZoneAnswers, ZoneSigned,
};
