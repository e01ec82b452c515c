//! When to rebuild: a pure scheduler, with time passed in, that coalesces bursts of changes
//! into few publications and decides whether a publication also starts a ranking.
//!
//! A change of availability is published at once unless the previous availability change
//! was published less than [`MIN_REBUILD_GAP`] ago; then it waits out the gap, gathering
//! everything that arrives meanwhile into the same rebuild. Isolated failures publish
//! immediately; a storm of changes costs at most one rebuild per gap. New rankings alone
//! wait for the gap after any publication, so a flood of feed batches costs at most one
//! more rebuild per gap; but they start no gap for availability, or under a latency feed a
//! failure would often wait one out. Latency inputs are ranked at the next periodic look,
//! in the background; while a ranking is in flight, health changes publish from the
//! rankings in use.

use std::time::Duration;

use tokio::time::Instant;

/// Shortest time between two rebuilds: bounds the rebuild rate under a storm of changes.
pub(super) const MIN_REBUILD_GAP: Duration = Duration::from_millis(25);

/// What a publication due now must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Publication {
    /// Start ranking the current latency inputs in the background.
    pub start_ranking: bool,
    /// Some node's availability changed since the last publication.
    pub availability: bool,
    /// Rankings taken in since the last publication differ from those it used.
    pub rankings: bool,
}

/// The scheduler's state: what is pending and when the last publications were.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    /// Something waits to be published (or a ranking to be started).
    dirty: bool,
    /// Pending: an availability change.
    availability: bool,
    /// Pending: new rankings that differ from those published.
    rankings: bool,
    /// Latency inputs changed since the last ranking started.
    rerank: bool,
    /// A ranking runs in the background.
    ranking: bool,
    last_availability_publish: Instant,
    last_publish: Instant,
}

impl Schedule {
    /// Nothing pending; the first change publishes at once.
    pub(super) fn new(now: Instant) -> Self {
        let long_ago = now.checked_sub(MIN_REBUILD_GAP).unwrap_or(now);
        Schedule {
            dirty: false,
            availability: false,
            rankings: false,
            rerank: false,
            ranking: false,
            last_availability_publish: long_ago,
            last_publish: long_ago,
        }
    }

    /// A node's availability changed (health, override or a new policy).
    pub(super) fn availability_changed(&mut self) {
        self.availability = true;
        self.dirty = true;
    }

    /// Latency inputs changed (a feed batch, a load report, a new policy): ranked at the
    /// next periodic look, so a stream of batches costs one ranking per look.
    pub(super) fn latency_changed(&mut self) {
        self.rerank = true;
    }

    /// The periodic look: `due` when aging measurements or a challenger's hold time call
    /// for a ranking; any latency change since the last ranking does too.
    pub(super) fn look(&mut self, due: bool) {
        if due || self.rerank {
            self.rerank = true;
            self.dirty = true;
        }
    }

    /// A ranking of the current inputs was made in place (a new policy cannot be answered
    /// from the old rankings), so the inputs it ranked are no longer pending.
    pub(super) fn ranked_in_place(&mut self) {
        self.rerank = false;
    }

    /// The background ranking ended; `changed` when it was adopted and differs from the
    /// rankings in use. Inputs that changed while it ran are ranked next.
    pub(super) fn ranking_finished(&mut self, changed: bool) {
        self.ranking = false;
        self.rankings |= changed;
        self.dirty |= changed || self.availability || self.rerank;
    }

    /// Whether something waits to be published.
    pub(super) fn pending(&self) -> bool {
        self.dirty
    }

    /// Whether an availability change waits to be published: replies to operators wait
    /// until it is, and only for that (new rankings due next do not hold them).
    pub(super) fn availability_pending(&self) -> bool {
        self.availability
    }

    /// Whether a ranking runs in the background.
    #[cfg(test)]
    pub(super) fn ranking(&self) -> bool {
        self.ranking
    }

    /// When the pending publication is due; `None` when nothing is pending.
    pub(super) fn due(&self) -> Option<Instant> {
        self.dirty.then(|| {
            let since = if self.availability {
                self.last_availability_publish
            } else {
                self.last_publish
            };
            since + MIN_REBUILD_GAP
        })
    }

    /// The publication to make at `now`, if one is due; taking it clears what it covers.
    pub(super) fn take(&mut self, now: Instant) -> Option<Publication> {
        if self.due().is_none_or(|due| now < due) {
            return None;
        }
        let publication = Publication {
            start_ranking: self.rerank && !self.ranking,
            availability: std::mem::take(&mut self.availability),
            rankings: std::mem::take(&mut self.rankings),
        };
        if publication.start_ranking {
            self.rerank = false;
            self.ranking = true;
        }
        self.dirty = false;
        self.last_publish = now;
        if publication.availability {
            self.last_availability_publish = now;
        }
        Some(publication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const MS: Duration = Duration::from_millis(1);

    fn availability_only() -> Publication {
        Publication {
            start_ranking: false,
            availability: true,
            rankings: false,
        }
    }

    /// An isolated change publishes at once; a burst within the gap is one publication,
    /// due when the gap since the last one ends.
    #[tokio::test(start_paused = true)]
    async fn a_burst_is_coalesced_into_one_publication_per_gap() {
        let mut schedule = Schedule::new(Instant::now());
        assert_eq!(schedule.due(), None);
        assert_eq!(schedule.take(Instant::now()), None);
        schedule.availability_changed();
        assert_eq!(schedule.take(Instant::now()), Some(availability_only()));
        let published = Instant::now();
        for _ in 0..10 {
            advance(2 * MS).await;
            schedule.availability_changed();
            assert_eq!(schedule.take(Instant::now()), None, "inside the gap");
        }
        assert_eq!(schedule.due(), Some(published + MIN_REBUILD_GAP));
        advance(published + MIN_REBUILD_GAP - Instant::now()).await;
        assert_eq!(schedule.take(Instant::now()), Some(availability_only()));
        assert!(!schedule.pending());
        assert_eq!(schedule.take(Instant::now() + MIN_REBUILD_GAP), None);
    }

    /// Replies wait for a pending availability change, not for new rankings due after it.
    #[tokio::test(start_paused = true)]
    async fn only_a_pending_availability_change_holds_replies() {
        let mut schedule = Schedule::new(Instant::now());
        schedule.availability_changed();
        assert!(schedule.availability_pending());
        schedule.take(Instant::now()).expect("published at once");
        assert!(!schedule.availability_pending());
        schedule.ranking_finished(true);
        assert!(schedule.pending() && !schedule.availability_pending());
        schedule.availability_changed();
        assert!(schedule.availability_pending(), "inside the gap: held");
    }

    /// New rankings alone wait out the gap after any publication, but start none for
    /// availability: a failure right after a rankings-only publication is published at once.
    #[tokio::test(start_paused = true)]
    async fn rankings_alone_wait_for_any_publication_but_start_no_gap_for_availability() {
        let mut schedule = Schedule::new(Instant::now());
        schedule.availability_changed();
        schedule.take(Instant::now()).expect("published");
        let availability_published = Instant::now();
        advance(5 * MS).await;
        schedule.look(true);
        let ranking = schedule.take(Instant::now());
        assert_eq!(
            ranking, None,
            "a ranking waits for the gap after any publication"
        );
        advance(availability_published + MIN_REBUILD_GAP - Instant::now()).await;
        let started = schedule.take(Instant::now()).expect("due");
        assert!(started.start_ranking && !started.availability && !started.rankings);
        schedule.ranking_finished(true);
        advance(MIN_REBUILD_GAP).await;
        let rankings_published = schedule.take(Instant::now()).expect("new rankings");
        assert!(rankings_published.rankings && !rankings_published.start_ranking);
        // A failure now: the last availability publication is long past.
        advance(MS).await;
        schedule.availability_changed();
        assert_eq!(schedule.take(Instant::now()), Some(availability_only()));
    }

    /// While a ranking is in flight, a health change publishes from the rankings in use
    /// without starting another; the ranking's result is published when it ends.
    #[tokio::test(start_paused = true)]
    async fn a_health_change_during_a_ranking_does_not_wait_for_it() {
        let mut schedule = Schedule::new(Instant::now());
        schedule.latency_changed();
        assert_eq!(schedule.due(), None, "latency waits for the periodic look");
        schedule.look(false);
        let started = schedule.take(Instant::now()).expect("due at once");
        assert!(started.start_ranking);
        assert!(schedule.ranking());
        advance(MIN_REBUILD_GAP).await;
        schedule.latency_changed();
        schedule.look(false);
        schedule.availability_changed();
        let during = schedule.take(Instant::now()).expect("due at once");
        assert_eq!(
            during,
            availability_only(),
            "no second ranking while one runs"
        );
        // The ranking ends unchanged: the inputs that arrived meanwhile are ranked next.
        schedule.ranking_finished(false);
        assert!(schedule.pending());
        advance(MIN_REBUILD_GAP).await;
        let next = schedule.take(Instant::now()).expect("due");
        assert!(next.start_ranking && !next.rankings && !next.availability);
        schedule.ranking_finished(false);
        assert!(
            !schedule.pending(),
            "an unchanged ranking publishes nothing"
        );
    }

    /// A ranking made in place (a new policy) leaves nothing to rank.
    #[tokio::test(start_paused = true)]
    async fn a_ranking_in_place_clears_the_pending_inputs() {
        let mut schedule = Schedule::new(Instant::now());
        schedule.latency_changed();
        schedule.availability_changed();
        schedule.ranked_in_place();
        let publication = schedule.take(Instant::now()).expect("due");
        assert_eq!(publication, availability_only());
        schedule.look(false);
        assert!(!schedule.pending());
    }
}
