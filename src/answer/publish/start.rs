//! What a publisher starts with beside its policy: where reloads read from, the overrides
//! an instance kept across a restart (applied before its first answer), and the fleet.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::table::NodeEvent;
use super::view::Staleness;
use super::{FleetKey, Outbox, Override, Publisher};
use crate::answer::build::Before;
use crate::loader::Sources;
use crate::metrics as m;

impl Publisher {
    /// Where `Command::Reload` reads from.
    pub fn with_source(mut self, source: Sources) -> Self {
        self.source = Some(source);
        self
    }

    /// Applies overrides kept across a restart, before the first answer: `seen`, as the
    /// fleet last held them, then `local`, set through this instance and not in the fleet
    /// yet (alone: every override), which go to the outbox again to be written (or kept).
    /// Nodes no longer served are skipped.
    pub fn restore(
        mut self,
        seen: &[(FleetKey, Option<Override>)],
        local: &[(FleetKey, Option<Override>)],
    ) -> Self {
        let now = SystemTime::now();
        for ((zone, node), set) in seen.iter().chain(local) {
            let Some((zone, node)) = self.table.find(zone, node) else {
                continue;
            };
            let set = *set;
            let event = NodeEvent::Override {
                zone,
                node,
                set,
                by: None,
            };
            let changed = (self.table).apply(event, now);
            self.react(changed);
        }
        for (key, set) in local {
            (self.outbox).send_modify(|out| out.set_override(key.clone(), *set));
        }
        // The first answers already leave drained and forced-down nodes out.
        let snapshot = self.served.snapshot(
            &self.ranked,
            (self.table.availability(), self.table.down_lines()),
            Before::default(),
        );
        self.store_snapshot(snapshot, None);
        self.store_view();
        self
    }

    /// Joins a fleet: overrides and (by each zone's quorum) health come from
    /// `Command::Fleet` news, once connected or after `wait` (answering meanwhile from
    /// what this instance kept), and what this instance tells the fleet is published
    /// for the fleet task to read.
    pub fn with_fleet(mut self, wait: Duration) -> (Self, watch::Receiver<Outbox>) {
        self.table.join_fleet(SystemTime::now() + wait);
        metrics::gauge!(m::FLEET_CONNECTED).set(0.0);
        self.published.view_stale = Staleness::Changed;
        self.store_view();
        let outbox = self.outbox();
        (self, outbox)
    }

    /// What this instance tells the fleet and keeps across restarts.
    pub fn outbox(&self) -> watch::Receiver<Outbox> {
        self.outbox.subscribe()
    }
}
