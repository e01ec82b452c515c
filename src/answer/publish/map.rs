//! The status page's data: where a steered name's clients go now, every node's state, the
//! timeline of what changed, and what-ifs — the answer tables built by the same builder
//! from a copy of the current availability with some nodes taken out, compared with the
//! published ones. A what-if changes nothing live: its tables are never published.
//!
//! The census behind both walks the database's address space, so it runs on the blocking
//! pool, after the publisher has handed it shared copies of what it needs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::super::build::build;
use super::super::census::{Census, Side, census, moves, steered_table};
use super::super::snapshot::Snapshot;
use super::Publisher;
use super::commands::{Override, WhatIfChange};
use crate::net::Family;
use crate::policy::Zone;
use crate::steer::Availability;

/// The last census made, for the tables it was made from: a page polling every second
/// walks the database once per published change, not once per poll.
#[derive(Debug, Default)]
pub(super) struct CensusCache(std::sync::Mutex<Option<CachedCensus>>);

#[derive(Debug)]
struct CachedCensus {
    snapshot: std::sync::Weak<Snapshot>,
    name: (usize, usize),
    family: Family,
    census: Arc<Census>,
}

impl CensusCache {
    fn get_or_make(
        &self,
        snapshot: &Arc<Snapshot>,
        name: (usize, usize),
        family: Family,
        make: impl FnOnce() -> Option<Census>,
    ) -> Option<Arc<Census>> {
        // A poisoned cache only means a census panicked once: start afresh.
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached.as_ref()
            && c.name == name
            && c.family == family
            && std::ptr::eq(c.snapshot.as_ptr(), Arc::as_ptr(snapshot))
        {
            return Some(Arc::clone(&c.census));
        }
        let census = Arc::new(make()?);
        *cached = Some(CachedCensus {
            snapshot: Arc::downgrade(snapshot),
            name,
            family,
            census: Arc::clone(&census),
        });
        Some(census)
    }
}

/// Entries the timeline keeps.
const TIMELINE: usize = 100;

/// One thing that changed: a node's availability, or a reload.
#[derive(Debug, Clone, Serialize)]
pub(super) struct TimelineEntry {
    /// When, in seconds since the Unix epoch.
    pub at: f64,
    /// The zone (empty for a reload).
    pub zone: String,
    /// The node (empty for a reload).
    pub node: String,
    /// State before (a node's state word, or `reload`).
    pub from: String,
    /// State after (`ok` or `rejected` for a reload).
    pub to: String,
    /// Why, in words.
    pub why: String,
}

/// The last changes, oldest first, bounded.
#[derive(Debug, Default)]
pub(super) struct Timeline(VecDeque<TimelineEntry>);

impl Timeline {
    pub(super) fn push(&mut self, entry: TimelineEntry) {
        if self.0.len() == TIMELINE {
            self.0.pop_front();
        }
        self.0.push_back(entry);
    }
}

/// Seconds since the epoch.
pub(super) fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The word the page and timeline use for a node's state.
pub(super) fn state_word(availability: Availability, override_: Option<Override>) -> &'static str {
    match (availability, override_) {
        (Availability::Up, _) => "up",
        (Availability::Full(_), _) => "full",
        (Availability::HealthDown, _) => "down",
        (Availability::AdminDown, Some(Override::Drain)) => "drained",
        (Availability::AdminDown, _) => "forced-down",
    }
}

/// Finds a steered name (any case, with or without the final dot); the first steered name
/// of the first zone when none is given.
pub(crate) fn find_steered(zones: &[Zone], name: Option<&str>) -> Result<(usize, usize), String> {
    let wanted = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
    for (zi, zone) in zones.iter().enumerate() {
        for (si, steered) in zone.steered.iter().enumerate() {
            let this = steered.name.to_string();
            let this = this.trim_end_matches('.').to_ascii_lowercase();
            if wanted.as_deref().is_none_or(|w| w == this) {
                return Ok((zi, si));
            }
        }
    }
    Err(match name {
        Some(name) => format!("no steered name '{name}' is served here"),
        None => "no steered name is served here".into(),
    })
}

impl Publisher {
    /// Records an availability change in the timeline, with why in words.
    pub(super) fn note_change(&mut self, zone: usize, node: usize) {
        let Some(z) = self.zones.get(zone) else {
            return;
        };
        let Some(runtime) = self.nodes.get_mut(zone).and_then(|n| n.get_mut(node)) else {
            return;
        };
        let from = runtime.state;
        let to = state_word(runtime.availability, runtime.override_);
        runtime.state = to;
        let why = match (runtime.availability, runtime.override_) {
            (_, Some(Override::Drain)) => "drained by an operator".to_string(),
            (_, Some(Override::ForceDown)) => "forced down by an operator".to_string(),
            (_, Some(Override::ForceUp)) => "forced up by an operator".to_string(),
            (Availability::Full(load), _) => format!("load {load} % reached its capacity"),
            (Availability::AdminDown, None) => "policy status: down".to_string(),
            _ if matches!(from, "drained" | "forced-down") => "override cleared".to_string(),
            _ if from == "full" => "load fell below resume".to_string(),
            _ => match &runtime.last {
                Some((report, _)) if report.result.ok => "checks pass".to_string(),
                Some((report, _)) => format!("checks fail: {}", report.result.detail),
                None => "no check result yet".to_string(),
            },
        };
        self.timeline.push(TimelineEntry {
            at: unix_seconds(SystemTime::now()),
            zone: z.origin.to_string(),
            node: z.nodes[node].name.clone(),
            from: from.to_string(),
            to: to.to_string(),
            why,
        });
    }

    /// Records a reload's outcome in the timeline.
    pub(super) fn note_reload(&mut self, outcome: Result<&str, &str>) {
        let (to, why) = match outcome {
            Ok(summary) => ("ok", summary.to_string()),
            Err(error) => ("rejected", error.to_string()),
        };
        self.timeline.push(TimelineEntry {
            at: unix_seconds(SystemTime::now()),
            zone: String::new(),
            node: String::new(),
            from: "reload".into(),
            to: to.into(),
            why,
        });
    }

    /// Every steered name served, for the page's chooser.
    fn steered_names(&self) -> Vec<String> {
        self.zones
            .iter()
            .flat_map(|z| z.steered.iter().map(|s| s.name.to_string()))
            .collect()
    }

    /// The map of a steered name: nodes and timeline taken now, and the work left for the
    /// blocking pool (the census), or why there is none.
    pub(super) fn map(
        &self,
        name: Option<&str>,
        have: Option<u64>,
        family: Family,
    ) -> Result<Job, String> {
        let (zi, si) = find_steered(&self.zones, name)?;
        let zone = &self.zones[zi];
        let steered = &zone.steered[si];
        let candidates = steered.candidate_nodes();
        let nodes: Vec<Value> = zone
            .nodes
            .iter()
            .enumerate()
            .map(|(ni, node)| {
                let runtime = &self.nodes[zi][ni];
                let status = self.status_of(crate::health::NodeKey {
                    zone: zi,
                    node: ni,
                    generation: self.generation,
                });
                // The node as policy has it (as `/config` shows it), and how it is now.
                let mut out = crate::policy::effective::node_json(node);
                out["state"] = json!(if candidates.contains(&ni) {
                    state_word(runtime.availability, runtime.override_)
                } else {
                    "fenced-out"
                });
                out["live"] = json!(status);
                out
            })
            .collect();
        let header = json!({
            "name": steered.name.to_string(),
            "zone": zone.origin.to_string(),
            "names": self.steered_names(),
            "nodes": nodes,
            "timeline": self.timeline.0,
            "at": unix_seconds(SystemTime::now()),
        });
        let snapshot = self.current.load_full();
        let zones = Arc::clone(&self.zones);
        let cache = Arc::clone(&self.census_cache);
        Ok(Box::new(move || {
            let made = cache.get_or_make(&snapshot, (zi, si), family, || {
                let table = steered_table(&snapshot, zi, &zones, si)?;
                let side = Side {
                    table,
                    geo: &snapshot.geo,
                    steered: &zones[zi].steered[si],
                };
                Some(census(side, &zones[zi].nodes, family))
            });
            made.ok_or_else(not_published).map(|made| {
                let mut out = header;
                // Same census, same allocation: its address identifies it while held.
                let id = Arc::as_ptr(&made) as u64;
                out["census_id"] = json!(id.to_string());
                if have != Some(id) {
                    out["census"] = json!(*made);
                }
                out
            })
        }))
    }

    /// A what-if: the tables built from the current availability with `changes` applied,
    /// compared with the published ones for one steered name, as work for the blocking pool
    /// (or why there is none). Nothing is published.
    pub(super) fn what_if(
        &self,
        name: Option<&str>,
        changes: Vec<(String, WhatIfChange)>,
        family: Family,
    ) -> Result<Job, String> {
        let (zi, si) = find_steered(&self.zones, name)?;
        let mut table: Vec<Vec<Availability>> = self
            .nodes
            .iter()
            .map(|z| z.iter().map(|n| n.availability).collect())
            .collect();
        let mut applied = serde_json::Map::new();
        for (node, change) in &changes {
            let Some(ni) = self.zones[zi].nodes.iter().position(|n| &n.name == node) else {
                return Err(format!(
                    "no node '{node}' in zone {}",
                    self.zones[zi].origin
                ));
            };
            table[zi][ni] = change.availability();
            applied.insert(node.clone(), json!(change.word()));
        }
        let snapshot = self.current.load_full();
        let (zones, geo, rankings) = (
            Arc::clone(&self.zones),
            Arc::clone(&self.geo),
            Arc::clone(&self.rankings),
        );
        Ok(Box::new(move || {
            let after = build(&zones, geo, &rankings, &table);
            match (
                steered_table(&snapshot, zi, &zones, si),
                steered_table(&after, zi, &zones, si),
            ) {
                (Some(now), Some(then)) => {
                    let steered = &zones[zi].steered[si];
                    let nodes = &zones[zi].nodes;
                    let side = |table, geo| Side {
                        table,
                        geo,
                        steered,
                    };
                    let (moved, total) = moves(
                        side(now, &snapshot.geo),
                        nodes,
                        side(then, &after.geo),
                        nodes,
                        family,
                    );
                    Ok(json!({
                        "name": steered.name.to_string(),
                        "changes": applied,
                        "census": census(side(then, &after.geo), nodes, family),
                        "moves": moved,
                        "total": total,
                        "live": "unchanged: a what-if is never published",
                    }))
                }
                _ => Err(not_published()),
            }
        }))
    }
}

/// Work for the blocking pool that makes a reply.
pub(super) type Job = Box<dyn FnOnce() -> Result<Value, String> + Send>;

fn not_published() -> String {
    "the name's table is not published yet".into()
}

/// Replies with a job's result, made on the blocking pool (a census walks the whole
/// database), or at once with why there is no job.
pub(super) fn reply_later(job: Result<Job, String>, reply: oneshot::Sender<Result<Value, String>>) {
    match job {
        Ok(job) => {
            tokio::task::spawn_blocking(move || {
                let _ = reply.send(job());
            });
        }
        Err(why) => {
            let _ = reply.send(Err(why));
        }
    }
}
