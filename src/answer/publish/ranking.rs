//! The rankings in use and the ranking of new latency inputs on a thread of its own, so a
//! health change is never held up by a ranking (0.1-0.4 s at 200 nodes on a city
//! database).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::oneshot;

use super::nodes::NodeRuntime;
use crate::answer::snapshot::{Ahead, Snapshot};
use crate::geo::GeoDb;
use crate::latency::ZoneLatency;
use crate::metrics as m;
use crate::parallel::Background;
use crate::policy::Zone;
use crate::steer::{DampingState, Rankings, rank_all};

/// How often aging measurements and running hold times are looked at.
pub(super) const RERANK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// How often fading measurements alone are worth a re-ranking.
pub(super) const AGING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The rankings answers are built from, and what they were ranked from.
#[derive(Debug, Clone)]
pub(super) struct Ranked {
    /// Health-independent rankings; recomputed only when latency inputs change.
    pub rankings: Arc<Rankings>,
    /// Each ranking cell's incumbent, for hysteresis; shared with the snapshots' explain
    /// views, so a health-only rebuild does not copy it.
    pub damping: Arc<DampingState>,
    /// Some cell has a challenger being timed: the periodic look must re-rank. Computed
    /// once per ranking, not per tick (there is a cell per place and name).
    pub challenging: bool,
    /// The load of the policy the rankings were computed for.
    pub generation: u64,
    /// The latency inputs they were computed from (what explain shows beside them).
    pub latency: Arc<Vec<ZoneLatency>>,
}

/// Rankings computed on the ranking thread.
#[derive(Debug)]
pub(super) struct Reranked {
    ranked: Ranked,
    /// Whether they differ from the rankings in use when the ranking started (the only ones
    /// it can be adopted over): compared there, since comparing tens of megabytes on the
    /// publisher would hold up a health change that arrives meanwhile.
    changed: bool,
    /// Their answers, built there too (when they differ and were asked for).
    prebuilt: Option<Prebuilt>,
}

/// Answers built, with what was ranked ahead of them.
#[derive(Debug)]
pub(super) struct Built {
    pub snapshot: Arc<Snapshot>,
    pub ahead: Arc<Ahead>,
}

/// Answers built from new rankings on the ranking thread (`ahead::prebuild`): the
/// publisher builds from them as from published ones, so adopting rankings costs a health
/// change's build (nothing, if no node changed since they were caught up), not a full one
/// that changes would wait behind.
#[derive(Debug)]
pub(super) struct Prebuilt {
    /// The rankings they were built from (by identity: the ones adopted with them).
    pub rankings: Arc<Rankings>,
    /// Built for the states published when last looked at.
    pub built: Built,
    /// What they were caught up from, when the published states moved on meanwhile: the
    /// tables a change undone right after adoption takes back.
    pub undone: Option<Built>,
}

/// The answers published and those before them (`published::Published`), as the ranking
/// thread reads them.
pub(super) type PublishedAnswers = (Arc<ArcSwap<Snapshot>>, Arc<ArcSwapOption<Snapshot>>);

/// Builds a [`Prebuilt`] from new rankings, given whether to stop early (the publisher no
/// longer waits for the ranking); none if it cannot.
pub(super) type Prebuild = Box<dyn FnOnce(&Ranked, &dyn Fn() -> bool) -> Option<Prebuilt> + Send>;

/// A ranking in progress, on a thread of its own.
pub(super) type RankingTask = oneshot::Receiver<Reranked>;

/// The inputs of one ranking.
pub(super) struct RankingInputs {
    pub zones: Arc<Vec<Zone>>,
    pub geo: Arc<GeoDb>,
    pub latency: Arc<Vec<ZoneLatency>>,
    pub generation: u64,
    /// What builds the new rankings' answers there, if they differ (none: ranked in place).
    pub prebuild: Option<Prebuild>,
}

impl Ranked {
    /// Ranks a first load of the policy here and now, with nothing measured.
    pub(super) fn first(
        zones: &[Zone],
        geo: &GeoDb,
        latency: Arc<Vec<ZoneLatency>>,
        now: SystemTime,
    ) -> Self {
        let mut damping = DampingState::new();
        let rankings = rank_all(zones, geo, &latency, &mut damping, now);
        Ranked {
            rankings: Arc::new(rankings),
            challenging: damping.any_challenger(),
            damping: Arc::new(damping),
            generation: 0,
            latency,
        }
    }

    /// Starts ranking every steered name on a thread of its own, at a lower CPU priority
    /// (and so are the threads it splits the work over): answer builds and the query
    /// threads come first when the cores are busy. In the background (answers built there
    /// too), only on CPU time nothing else wants; a reload's, which the publisher waits
    /// for, at nice 10.
    pub(super) fn start(&self, inputs: RankingInputs) -> RankingTask {
        let (damping, previous) = (Arc::clone(&self.damping), Arc::clone(&self.rankings));
        let priority = match inputs.prebuild {
            Some(_) => Background::Idle,
            None => Background::Lower,
        };
        let (done, task) = oneshot::channel();
        metrics::counter!(m::RANKINGS_STARTED).increment(1);
        let started = std::thread::Builder::new()
            .name("geosteer-rank".into())
            .spawn(move || {
                crate::parallel::lower_this_threads_priority(priority);
                // The ranking thread owns its time: damping dates what it sees now.
                #[allow(clippy::disallowed_methods)]
                let (started, now) = (Instant::now(), SystemTime::now());
                let mut damping = Arc::unwrap_or_clone(damping);
                let RankingInputs {
                    zones,
                    geo,
                    latency,
                    generation,
                    prebuild,
                } = inputs;
                #[cfg(debug_assertions)]
                if prebuild.is_some() && slow_ranking_injected() {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                let rankings = rank_all(&zones, &geo, &latency, &mut damping, now);
                metrics::histogram!(m::RANKING_SECONDS).record(started.elapsed().as_secs_f64());
                let changed = rankings != *previous;
                drop(previous);
                let ranked = Ranked {
                    challenging: damping.any_challenger(),
                    rankings: Arc::new(rankings),
                    damping: Arc::new(damping),
                    generation,
                    latency,
                };
                let stopped = || done.is_closed();
                let ranked_ms = started.elapsed().as_secs_f64() * 1e3;
                let prebuilt =
                    (prebuild.filter(|_| changed)).and_then(|build| build(&ranked, &stopped));
                let built_ms = started.elapsed().as_secs_f64() * 1e3 - ranked_ms;
                tracing::debug!(ranked_ms, changed, built_ms, "latency inputs ranked");
                let _ = done.send(Reranked {
                    changed,
                    ranked,
                    prebuilt,
                });
            });
        if let Err(e) = started {
            // The sender is gone with the closure: the ranking reports as failed.
            tracing::error!(error = %e, "cannot start a ranking thread");
        }
        task
    }

    /// Takes new rankings in if they are of the current policy (`generation`); whether
    /// they differ from those in use, and their answers if built where they were ranked.
    /// Rankings equal to those in use for the same policy are not taken in (their damping
    /// and inputs are): the published tables were built from those, by identity, and the
    /// next change keeps every name it does not touch.
    pub(super) fn adopt(
        &mut self,
        reranked: Result<Reranked, oneshot::error::RecvError>,
        generation: u64,
    ) -> (bool, Option<Prebuilt>) {
        match reranked {
            Ok(Reranked {
                mut ranked,
                changed,
                prebuilt,
            }) if ranked.generation == generation => {
                // Only for the policy they were ranked under: a reload's tables answer
                // with its own nodes' addresses, whatever the ranking.
                if !changed && self.generation == generation {
                    ranked.rankings = Arc::clone(&self.rankings);
                }
                *self = ranked;
                (changed, prebuilt)
            }
            Ok(_) => (false, None), // ranked for a policy since replaced
            Err(_) => {
                // The ranking thread panicked (a bug) or did not start.
                tracing::error!("re-ranking failed; previous rankings stay in use");
                (false, None)
            }
        }
    }

    /// The probe loss a node was ranked with.
    pub(super) fn loss(&self, zone: usize, node: usize) -> f64 {
        self.latency
            .get(zone)
            .and_then(|z| z.probe_loss.get(&node).copied())
            .unwrap_or(0.0)
    }
}

/// Debug builds only (what the tests run): `GEOSTEER_FAULT=slow-ranking` holds each ranking
/// in the background for a second before it ranks, so that a test can change a node while
/// one runs.
#[cfg(debug_assertions)]
fn slow_ranking_injected() -> bool {
    std::env::var("GEOSTEER_FAULT").is_ok_and(|v| v == "slow-ranking")
}

/// A change in a node's probe loss rate that is worth a re-ranking.
const PROBE_LOSS_STEP: f64 = 0.05;
/// Below this, a node's probe loss counts as none: a recovered node's smoothed loss only
/// tends to zero, and a step rule alone would freeze the last penalty ranked.
const PROBE_LOSS_FLOOR: f64 = 0.01;

/// The probe loss rate ranking uses for a node now: its smoothed loss, or none below the
/// floor; `Some` when it differs enough from the one ranked to re-rank.
fn loss_to_rank(runtime: &NodeRuntime) -> Option<f64> {
    let loss = if runtime.probe_loss < PROBE_LOSS_FLOOR {
        0.0
    } else {
        runtime.probe_loss
    };
    let moved = (loss - runtime.ranked_loss).abs() > PROBE_LOSS_STEP;
    let recovered = loss == 0.0 && runtime.ranked_loss != 0.0;
    (moved || recovered).then_some(loss)
}

/// At a periodic tick: expires old measurements (when `aging`) and says whether latency
/// inputs call for a re-ranking (measurements or loads exist, or probe loss moved
/// materially since the last ranking). Only touches (and so copies, while a snapshot
/// shares it) the latency state when something changes.
pub(super) fn latency_due(
    zones: &[Zone],
    latency: &mut Arc<Vec<ZoneLatency>>,
    nodes: &[Vec<NodeRuntime>],
    aging: bool,
    now: SystemTime,
) -> bool {
    let mut due = false;
    for (zi, zone) in zones.iter().enumerate() {
        if aging {
            let max_age = zone
                .steered
                .iter()
                .map(|s| s.latency.max_age)
                .max()
                .unwrap_or_default();
            let measured = &mut Arc::make_mut(latency)[zi];
            measured.measurements.expire(now, max_age);
            measured.addresses.expire(now, max_age);
            measured.expire_loads(now, |ni| zone.nodes.get(ni).map(|n| n.capacity.max_age));
            due |= !measured.measurements.is_empty()
                || !measured.addresses.is_empty()
                || !measured.loads.is_empty();
        }
        for (ni, runtime) in nodes.get(zi).into_iter().flatten().enumerate() {
            if let Some(loss) = loss_to_rank(runtime) {
                Arc::make_mut(latency)[zi].probe_loss.insert(ni, loss);
                due = true;
            }
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AdminStatus;

    /// A recovered node's smoothed probe loss only tends to zero: once below the floor it
    /// is ranked as none, however small the last step, so no penalty stays behind.
    #[test]
    fn a_recovered_node_loses_its_probe_loss_penalty() {
        let mut runtime = NodeRuntime::new(AdminStatus::Obey, SystemTime::UNIX_EPOCH);
        runtime.ranked_loss = 0.06;
        runtime.probe_loss = 0.03;
        assert_eq!(
            loss_to_rank(&runtime),
            None,
            "a small step: not worth a re-ranking"
        );
        runtime.probe_loss = 0.009;
        assert_eq!(loss_to_rank(&runtime), Some(0.0), "below the floor: none");
        runtime.ranked_loss = 0.0;
        assert_eq!(loss_to_rank(&runtime), None, "ranked as none already");
        runtime.probe_loss = 0.2;
        assert_eq!(loss_to_rank(&runtime), Some(0.2));
    }
}
