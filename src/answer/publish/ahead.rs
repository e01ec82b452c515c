//! Ranking ahead (`answer::ahead`) while the publisher waits: after each build, on a thread
//! of its own at a lower CPU priority; stopped when the next build starts, which takes the
//! newest finished result.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::ranking::{Prebuild, Prebuilt, Ranked};
use super::served::Served;
use crate::answer::ahead::rank_ahead;
use crate::answer::build::Before;
use crate::answer::snapshot::{Ahead, Snapshot};
use crate::metrics as m;
use crate::policy::Zone;
use crate::steer::{Availability, Rankings};

/// The ranking ahead in progress, and the newest finished.
#[derive(Debug, Default)]
pub(super) struct RankingAhead {
    /// The result to come of the job running; dropping it stops the job.
    running: Option<oneshot::Receiver<Ahead>>,
    /// The newest finished: for the snapshot published then (its tables tell by identity).
    done: Option<Arc<Ahead>>,
    /// The one finished before it: its tables come back when a change is undone.
    earlier: Option<Arc<Ahead>>,
}

impl RankingAhead {
    /// Takes what was ranked ahead of a snapshot built elsewhere (`ranking::Prebuilt`), to
    /// build from and to start the next ranking ahead from; stops the job running.
    pub(super) fn adopt(&mut self, ahead: Arc<Ahead>) {
        self.running = None;
        self.finished(ahead);
    }

    fn finished(&mut self, ahead: Arc<Ahead>) {
        self.earlier = self.done.replace(ahead);
    }

    /// Before a build: stops the job running (the build needs the cores) and gives what
    /// was last ranked ahead.
    pub(super) fn for_build(&mut self) -> Option<Arc<Ahead>> {
        if let Some(Ok(ahead)) = self.running.take().map(|mut r| r.try_recv()) {
            self.finished(Arc::new(ahead));
        }
        self.done.clone()
    }

    /// After `snapshot` is stored: ranks ahead of its tables on a thread of its own.
    pub(super) fn start(&mut self, served: &Served, ranked: &Ranked, snapshot: Arc<Snapshot>) {
        let before: Vec<Arc<Ahead>> = self
            .for_build()
            .into_iter()
            .chain(self.earlier.clone())
            .collect();
        let (zones, rankings) = (Arc::clone(&served.zones), Arc::clone(&ranked.rankings));
        let (done, result) = oneshot::channel();
        self.running = Some(result);
        let started = std::thread::Builder::new()
            .name("geosteer-ahead".into())
            .spawn(move || {
                crate::parallel::lower_this_threads_priority();
                // Off the publisher: the time a ranking ahead takes, for its histogram.
                #[allow(clippy::disallowed_methods)]
                let started = Instant::now();
                let stopped = || done.is_closed();
                let before: Vec<&Ahead> = before.iter().map(|a| &**a).collect();
                let ahead = ranked_ahead(&zones, &rankings, &snapshot, &before, stopped);
                if !done.is_closed() {
                    metrics::histogram!(m::AHEAD_SECONDS).record(started.elapsed().as_secs_f64());
                }
                let _ = done.send(ahead);
            });
        if let Err(e) = started {
            // Nothing ranked ahead: the next failure ranks what it splits itself.
            tracing::warn!(error = %e, "cannot start a thread to rank ahead");
        }
    }
}

/// What is ranked ahead of `snapshot` (built by `Served::snapshot`, whose explain view says
/// what it was built with) from what was ranked ahead `before`.
fn ranked_ahead(
    zones: &[Zone],
    rankings: &Rankings,
    snapshot: &Snapshot,
    before: &[&Ahead],
    stopped: impl Fn() -> bool,
) -> Ahead {
    let Some(explain) = snapshot.explain.as_deref() else {
        return Ahead::default();
    };
    let built_with = (&explain.availability[..], &explain.down_lines[..]);
    rank_ahead(zones, rankings, built_with, snapshot, before, stopped)
}

/// What builds new rankings' answers on the ranking thread, with `states` (availability and
/// carrier lines down, as the publisher's node table had them when the ranking started):
/// signed from the `published` snapshot's signatures, and ranked ahead of from nothing.
pub(super) fn prebuild(
    served: Served,
    states: (Vec<Vec<Availability>>, Vec<Vec<u64>>),
    published: Arc<Snapshot>,
) -> Prebuild {
    Box::new(move |ranked: &Ranked, stopped: &dyn Fn() -> bool| {
        let before = Before {
            last: Some(&published),
            ..Before::default()
        };
        let snapshot = served.snapshot(ranked, states, before);
        drop(published);
        let ahead = ranked_ahead(&served.zones, &ranked.rankings, &snapshot, &[], stopped);
        Prebuilt {
            rankings: Arc::clone(&ranked.rankings),
            snapshot: Arc::new(snapshot),
            ahead: Arc::new(ahead),
        }
    })
}
