//! Publication: the one place that stores a new snapshot.
//!
//! `Publisher` is deliberately not `Clone`: whoever owns it is the single writer. Readers get
//! a `SnapshotReader`, whose `load` is one atomic operation with no lock, and see either the
//! old snapshot or the new one, never a mix.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::Snapshot;

/// Owns the right to publish snapshots.
#[derive(Debug)]
pub struct Publisher {
    current: Arc<ArcSwap<Snapshot>>,
}

/// Read access to the current snapshot, cheap to clone into every serving task.
#[derive(Debug, Clone)]
pub struct SnapshotReader {
    current: Arc<ArcSwap<Snapshot>>,
}

impl Publisher {
    /// Starts publication with a first snapshot.
    pub fn new(initial: Snapshot) -> Self {
        Publisher {
            current: Arc::new(ArcSwap::from_pointee(initial)),
        }
    }

    /// A reader for serving tasks.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            current: Arc::clone(&self.current),
        }
    }

    /// Replaces the snapshot atomically; queries already running finish on the old one.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}

impl SnapshotReader {
    /// The current snapshot: load once per query and use that view throughout.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }
}
