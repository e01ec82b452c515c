//! Ranking ahead (`answer::ahead`) while the publisher waits: after each build, on a thread
//! of its own at a lower CPU priority; stopped when the next build starts, which takes the
//! newest finished result.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::ranking::{Built, Prebuild, Prebuilt, PublishedAnswers, Ranked};
use super::served::{Served, free_aside};
use crate::answer::ahead::rank_ahead;
use crate::answer::build::Before;
use crate::answer::snapshot::{Ahead, Snapshot};
use crate::metrics as m;
use crate::parallel::Background;
use crate::policy::Zone;
use crate::steer::Rankings;

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
    /// Takes what was ranked ahead of answers built elsewhere (`ranking::Prebuilt`) and of
    /// those they were caught up from, to build from and to start the next ranking ahead
    /// from; stops the job running.
    pub(super) fn adopt(&mut self, ahead: Arc<Ahead>, earlier: Option<Arc<Ahead>>) {
        self.running = None;
        freed_aside(self.done.replace(ahead));
        freed_aside(std::mem::replace(&mut self.earlier, earlier));
    }

    fn finished(&mut self, ahead: Arc<Ahead>) {
        let done = self.done.replace(ahead);
        freed_aside(std::mem::replace(&mut self.earlier, done));
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
                crate::parallel::lower_this_threads_priority(Background::Idle);
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

/// Frees a displaced result off the publisher: the last reference to what was ranked ahead
/// of 50 names takes about half a millisecond to free, and a build waits behind it.
fn freed_aside(old: Option<Arc<Ahead>>) {
    if let Some(old) = old {
        free_aside(old);
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
    let Some(built_with) = snapshot.built_with() else {
        return Ahead::default();
    };
    rank_ahead(zones, rankings, built_with, snapshot, before, stopped)
}

/// How many times, at most, answers built from new rankings are built again on the ranking
/// thread because the published states moved on while they were built.
const CATCH_UPS: usize = 4;

/// What builds new rankings' answers on the ranking thread: for the node states of the
/// answers `published` then, signed from their signatures and ranked ahead of from nothing;
/// then again, from those, while the published states move on (at most [`CATCH_UPS`]
/// times): adopting them then builds nothing. The answers they were built from last are
/// kept too, for a change undone right after adoption to take back; when the published
/// answers have answers before them (`published.1`, what the publisher takes back), the
/// first build is for those answers' states, so that undoing the last change is free as
/// well. None when `published` holds another policy's answers (reloaded meanwhile: these
/// rankings are not adopted).
pub(super) fn prebuild(served: Served, published: PublishedAnswers) -> Prebuild {
    Box::new(move |ranked: &Ranked, stopped: &dyn Fn() -> bool| {
        let (answers, before_them) = published;
        let states_of = |snapshot: &Snapshot| {
            let (availability, down_lines) = snapshot.built_with()?;
            let zones = &snapshot.explain.as_deref()?.zones;
            Arc::ptr_eq(zones, &served.zones).then(|| (availability.to_vec(), down_lines.to_vec()))
        };
        let mut built: Option<Built> = None;
        let mut undone: Option<Built> = None;
        let mut first = before_them.load_full().and_then(|b| states_of(&b));
        for _ in 0..=CATCH_UPS + 1 {
            let last = answers.load_full();
            let Some(states) = first.take().or_else(|| states_of(&last)) else {
                break;
            };
            let same = |b: &Built| b.snapshot.built_with() == Some((&states.0[..], &states.1[..]));
            if built.as_ref().is_some_and(same) || stopped() {
                break;
            }
            let before = match &built {
                Some(from) => Before {
                    last: Some(&from.snapshot),
                    undone: undone.as_ref().map(|u| &*u.snapshot),
                    ahead: Some(&from.ahead),
                },
                None => Before {
                    last: Some(&last),
                    ..Before::default()
                },
            };
            let snapshot = served.snapshot(ranked, states, before);
            drop(last);
            let ahead_before: Vec<&Ahead> =
                (built.iter().chain(&undone)).map(|b| &*b.ahead).collect();
            let ahead = ranked_ahead(
                &served.zones,
                &ranked.rankings,
                &snapshot,
                &ahead_before,
                stopped,
            );
            let now = Built {
                snapshot: Arc::new(snapshot),
                ahead: Arc::new(ahead),
            };
            // Off the publisher: the answers before those are freed here.
            undone = built.replace(now);
            #[cfg(debug_assertions)]
            if undone.is_none() && slow_prebuild_injected() {
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
        }
        let built = built?;
        Some(Prebuilt {
            rankings: Arc::clone(&ranked.rankings),
            built,
            undone,
        })
    })
}

/// Debug builds only (what the tests run): `GEOSTEER_FAULT=slow-prebuild` holds the ranking
/// thread two seconds after it first built new rankings' answers, so that a test can change a
/// node before they are caught up.
#[cfg(debug_assertions)]
fn slow_prebuild_injected() -> bool {
    std::env::var("GEOSTEER_FAULT").is_ok_and(|v| v == "slow-prebuild")
}
