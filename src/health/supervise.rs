//! Check supervision: one task per checked node of the current load, restarted as a whole
//! when the publisher plans a new load's checks (a reload), and stopped when it goes.
//!
//! The publisher only publishes plans; it never holds a check task. A check task that
//! panicked has stopped checking its node for good, so supervision then ends, and the
//! process with it (the service manager restarts geosteer).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info};

use super::probe::TlsConfigs;
use super::runner::{PlannedCheck, Report, run_checks};

/// Every check of one load of the policy.
#[derive(Debug, Clone, Default)]
pub struct CheckPlan {
    /// Which load the checks belong to.
    pub generation: u64,
    /// One entry per checked node.
    pub checks: Vec<PlannedCheck>,
}

/// Runs the planned checks, sending their reports to `reports`, until the plans' sender is
/// gone (returns) or a check task panicked (returns too, after logging it).
pub async fn supervise(mut plans: watch::Receiver<Arc<CheckPlan>>, reports: mpsc::Sender<Report>) {
    let tls = TlsConfigs::new();
    let mut running = JoinSet::new();
    loop {
        let plan = Arc::clone(&plans.borrow_and_update());
        running.abort_all();
        for check in &plan.checks {
            running.spawn(run_checks(check.clone(), tls.clone(), reports.clone()));
        }
        info!(
            nodes = plan.checks.len(),
            generation = plan.generation,
            "health checks started"
        );
        loop {
            tokio::select! {
                changed = plans.changed() => {
                    if changed.is_err() {
                        return; // the publisher is gone: shutting down
                    }
                    break;
                }
                Some(ended) = running.join_next(), if !running.is_empty() => {
                    if let Err(e) = ended
                        && e.is_panic()
                    {
                        error!("a health check task panicked; health checking stops");
                        return;
                    }
                }
            }
        }
    }
}
