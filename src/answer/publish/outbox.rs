//! What this instance tells the fleet, as the latest value per key: its policy serials, its
//! own verdict per node, its latest feed batch, and the overrides operators set through it.
//!
//! The publisher changes it in place through a `watch` (never waits, never drops); the
//! fleet task reads the newest value whenever it can and writes what differs from what it
//! last wrote. A slow or absent etcd loses nothing but intermediate values.

use std::collections::BTreeMap;

use super::commands::Override;
use crate::health::Health;
use crate::policy::Zone;

/// A zone as the fleet names it: its origin without the trailing dot, lowercase.
pub fn fleet_zone(zone: &Zone) -> String {
    zone.origin
        .to_string()
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// A (zone, node) pair as the fleet names it.
pub type FleetKey = (String, String);

/// The policy a member serves, as it registers it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetPolicy {
    /// SOA serial by zone, so a fleet shows members that serve different versions.
    pub serials: Vec<(String, u32)>,
    /// Node names by zone, so `geosteer fleet` can refuse a node no member serves.
    pub nodes: Vec<(String, Vec<String>)>,
    /// By signed zone, its keys (`KSK 32072`, `ZSK 13081 published`), so a fleet shows a
    /// member whose key files differ from the others'.
    pub keys: Vec<(String, Vec<String>)>,
}

/// This instance's own state for the fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outbox {
    /// The policy served.
    pub policy: FleetPolicy,
    /// This instance's verdict per node, as its checks last decided.
    pub verdicts: BTreeMap<FleetKey, Health>,
    /// The latest feed batch accepted here (JSON), numbered so a resend is told from a
    /// new batch with the same text.
    pub feed: Option<(u64, String)>,
    /// Overrides set or cleared through this instance, numbered in the order they were
    /// set: the fleet task writes those numbered after the last it wrote.
    pub overrides: BTreeMap<FleetKey, (u64, Option<Override>)>,
    /// The number the next feed batch or override takes.
    pub next: u64,
    /// Who set each override through this instance, and why: written beside it.
    pub audits: BTreeMap<FleetKey, super::commands::Audit>,
}

impl Outbox {
    /// A new override (or its clearing) for the fleet.
    pub fn set_override(&mut self, key: FleetKey, set: Option<Override>) {
        self.next += 1;
        self.overrides.insert(key, (self.next, set));
    }

    /// A new override (or its clearing) for the fleet, with who set it and why.
    pub fn set_override_by(
        &mut self,
        key: FleetKey,
        set: Option<Override>,
        by: super::commands::Audit,
    ) {
        self.audits.insert(key.clone(), by);
        self.set_override(key, set);
    }

    /// A new feed batch for the fleet.
    pub fn set_feed(&mut self, batch: String) {
        self.next += 1;
        self.feed = Some((self.next, batch));
    }

    /// Overrides numbered after `written`, oldest first.
    pub fn overrides_after(
        &self,
        written: u64,
    ) -> impl Iterator<Item = (&FleetKey, u64, Option<Override>)> {
        let mut newer: Vec<_> = self
            .overrides
            .iter()
            .filter(|(_, (n, _))| *n > written)
            .map(|(key, (n, set))| (key, *n, *set))
            .collect();
        newer.sort_by_key(|(_, n, _)| *n);
        newer.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_override_per_node_is_kept_in_order() {
        let mut out = Outbox::default();
        let key = |n: &str| ("z".to_string(), n.to_string());
        out.set_override(key("a"), Some(Override::Drain));
        out.set_override(key("b"), Some(Override::ForceDown));
        out.set_override(key("a"), None);
        let all: Vec<_> = out.overrides_after(0).collect();
        assert_eq!(
            all,
            vec![
                (&key("b"), 2, Some(Override::ForceDown)),
                (&key("a"), 3, None)
            ]
        );
        assert_eq!(out.overrides_after(2).count(), 1);
        assert_eq!(out.overrides_after(3).count(), 0);
    }
}
