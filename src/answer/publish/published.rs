//! What the publisher stores and readers load, and what the next build starts from: the
//! answers published (or built from new rankings on the ranking thread, the first time),
//! the ones before them, for a change undone to take back, and what was ranked ahead.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::ahead::RankingAhead;
use super::ranking::{Prebuilt, PublishedAnswers, Ranked};
use super::served::{self, Served};
use super::view::{Staleness, StateView};
use crate::answer::snapshot::{Ahead, Snapshot};
use crate::steer::Rankings;

/// What the publisher stores, and readers load.
#[derive(Debug)]
pub(super) struct Published {
    /// The answers: stored here and nowhere else.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The state view beside them, how far it is behind, and when it was stored.
    pub view: Arc<ArcSwap<StateView>>,
    pub view_stale: Staleness,
    pub view_stored: Instant,
    /// What is ranked ahead of the snapshot for the next build.
    ahead: RankingAhead,
    /// Answers built where the rankings in use were ranked, not yet built from.
    prebuilt: Option<Prebuilt>,
    /// The answers a change that undoes the last (a flap, a drain cancelled) takes its
    /// tables back from: those the current ones were built from; none after a reload.
    /// Shared with the ranking thread, which builds new rankings' answers for them too.
    undone: Arc<ArcSwapOption<Snapshot>>,
}

/// What a build starts from: the answers it builds from, those before them and what was
/// ranked ahead of the first (`answer::Before`).
pub(super) type BuildFrom = (Arc<Snapshot>, Option<Arc<Snapshot>>, Option<Arc<Ahead>>);

impl Published {
    pub(super) fn new(snapshot: Snapshot, view: StateView) -> Self {
        Published {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            view: Arc::new(ArcSwap::from_pointee(view)),
            view_stale: Staleness::Fresh,
            view_stored: Instant::now(),
            ahead: RankingAhead::default(),
            prebuilt: None,
            undone: Arc::default(),
        }
    }

    /// The answers published and those before them, for the ranking thread.
    pub(super) fn answers(&self) -> PublishedAnswers {
        (Arc::clone(&self.snapshot), Arc::clone(&self.undone))
    }

    /// Keeps answers built from rankings just adopted, for the next build to start from.
    pub(super) fn prebuilt(&mut self, prebuilt: Option<Prebuilt>) {
        self.prebuilt = prebuilt.or(self.prebuilt.take());
    }

    /// Answers of the policy before are never taken back under a new one.
    pub(super) fn forget_undone(&mut self) {
        if let Some(old) = self.undone.swap(None) {
            served::free_aside(old);
        }
    }

    /// What a build with `rankings` starts from: the answers built where they were ranked,
    /// the first time; else the published ones.
    pub(super) fn build_from(&mut self, rankings: &Arc<Rankings>) -> BuildFrom {
        let prebuilt = (self.prebuilt.take()).filter(|p| Arc::ptr_eq(&p.rankings, rankings));
        match prebuilt {
            Some(Prebuilt { built, undone, .. }) => {
                let (undone, earlier) = undone.map(|u| (u.snapshot, u.ahead)).unzip();
                self.ahead.adopt(Arc::clone(&built.ahead), earlier);
                (built.snapshot, undone, Some(built.ahead))
            }
            None => (
                self.snapshot.load_full(),
                self.undone.load_full(),
                self.ahead.for_build(),
            ),
        }
    }

    /// Stores new answers, built `from` the answers and those before them given by
    /// [`Published::build_from`] (none: the first); ranking ahead of them starts, and the
    /// view beside them is due.
    pub(super) fn store(
        &mut self,
        snapshot: Snapshot,
        from: Option<(Arc<Snapshot>, Option<Arc<Snapshot>>)>,
        (served, ranked): (&Served, &Ranked),
    ) {
        // A change undone next takes back the answers this build started from; if it
        // changed no node's state, those they were built from.
        let (undone, unused) = match from {
            Some((from, before)) if snapshot.built_with() == from.built_with() => {
                (before, Some(from))
            }
            Some((from, before)) => (Some(from), before),
            None => (None, None),
        };
        let snapshot = Arc::new(snapshot);
        let replaced = self.snapshot.swap(Arc::clone(&snapshot));
        let undone_before = self.undone.swap(undone);
        for old in [Some(replaced), unused, undone_before]
            .into_iter()
            .flatten()
        {
            served::free_aside(old);
        }
        self.ahead.start(served, ranked, snapshot);
        self.view_stale = Staleness::Changed;
    }
}
