//! A reload: the policy and database files read again and installed in place of the ones
//! served, node state, measurements and hysteresis carried over by zone and node name.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::served::Takeover;
use super::view::Staleness;
use super::{CommandError, Publisher};
use crate::loader::{self, Loaded};
use crate::metrics as m;

impl Publisher {
    /// Installs a newly loaded policy and databases, carrying node state over by zone and
    /// node name, and plans the new load's checks.
    pub(super) fn install(&mut self, loaded: Loaded) -> String {
        let now = SystemTime::now();
        let Takeover {
            served,
            nodes,
            latency,
            damping,
            summary,
        } = (self.served).take_over(
            loaded,
            self.table.nodes(),
            &self.latency,
            &self.ranked.damping,
            now,
        );
        self.ranked.challenging = damping.any_challenger();
        self.ranked.damping = Arc::new(damping);
        // Answers of the policy before are never taken back under this one.
        self.published.forget_undone();
        let zones = Arc::clone(&served.zones);
        self.served = served;
        self.latency = Arc::new(latency);
        let changed = self.table.install(zones, nodes, now);
        self.react(changed);
        self.schedule.latency_changed();
        self.schedule.availability_changed();
        self.plan_checks();
        let policy = self.served.fleet_policy();
        self.outbox.send_modify(|out| out.policy = policy);
        self.export_gauges();
        summary
    }

    /// Loads the files again and installs them; the summary, or every reason not.
    pub(super) async fn reload(&mut self) -> Result<String, CommandError> {
        let Some(source) = self.source.clone() else {
            return Err(CommandError::NoFiles);
        };
        let loaded =
            tokio::task::spawn_blocking(move || loader::load(&source).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
        let now = SystemTime::now();
        let outcome = match loaded {
            Ok(loaded) => {
                let summary = self.install(loaded);
                info!(%summary, "reloaded");
                Ok(summary)
            }
            Err(error) => {
                warn!(%error, "reload rejected; the previous policy keeps serving");
                Err(error)
            }
        };
        let (word, ok) = [("error", 0.0), ("ok", 1.0)][usize::from(outcome.is_ok())];
        metrics::counter!(m::RELOADS, "result" => word).increment(1);
        metrics::gauge!(m::RELOAD_OK).set(ok);
        self.table
            .note_reload(outcome.as_deref().map_err(String::as_str), now);
        self.last_reload = Some(outcome.as_ref().map(|_| now).map_err(Clone::clone));
        self.published.view_stale = Staleness::Changed;
        outcome.map_err(CommandError::Rejected)
    }
}
