//! The status page's data: where a steered name's clients go now, every node's state, the
//! timeline of what changed, and what-ifs — the answer tables built by the same builder
//! from a copy of the current availability with some nodes taken out, compared with the
//! published ones. A what-if changes nothing live: its tables are never published.
//!
//! Both read the published state view and snapshot, never the publisher. The census behind
//! both walks the database's address space, so it runs on the blocking pool, at most
//! [`WORKERS`] at a time (more wait for nothing: 429), and its results are kept per
//! published snapshot, so a page polling every second, or many pages asking the same
//! what-if, cost one walk per published change.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::answer::census::{Census, Side, census, moves, steered_table};
use crate::answer::{Snapshot, StateView, build, unix_seconds};
use crate::net::Family;
use crate::policy::Zone;
use crate::steer::Availability;

/// Census walks (maps and what-ifs) running at once, at most: each takes a core for a
/// tenth of a second or more, and DNS shares the cores.
pub(crate) const WORKERS: usize = 1;
/// Results kept for one published snapshot, at most.
const KEPT: usize = 32;

/// What the status page's work may cost: a permit per walk, and the results of the
/// current published snapshot (a new one drops them).
#[derive(Debug)]
pub(crate) struct Work {
    permits: Arc<tokio::sync::Semaphore>,
    kept: std::sync::Mutex<Kept>,
}

impl Default for Work {
    fn default() -> Self {
        Work {
            permits: Arc::new(tokio::sync::Semaphore::new(WORKERS)),
            kept: std::sync::Mutex::default(),
        }
    }
}

/// Results for one snapshot.
#[derive(Debug, Default)]
struct Kept {
    snapshot: std::sync::Weak<Snapshot>,
    results: std::collections::HashMap<Asked, Made>,
}

/// What was asked: a census, or a what-if (its changes sorted), of a name and family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Asked {
    Census((usize, usize), Family),
    WhatIf((usize, usize), Family, Vec<(String, &'static str)>),
}

#[derive(Debug, Clone)]
enum Made {
    Census(Arc<Census>),
    WhatIf(Arc<Value>),
}

/// Why the page's work was not done.
#[derive(Debug)]
pub(super) enum WorkError {
    /// No such name or node, or nothing published yet: 404.
    NotFound(String),
    /// Every worker is busy: 429, try again in a second.
    Busy,
}

impl From<String> for WorkError {
    fn from(why: String) -> Self {
        WorkError::NotFound(why)
    }
}

impl Work {
    /// The result for `asked` of `snapshot`, kept or made now on the blocking pool (when a
    /// worker is free).
    async fn get_or_make(
        &self,
        snapshot: &Arc<Snapshot>,
        asked: Asked,
        make: impl FnOnce() -> Result<Made, String> + Send + 'static,
    ) -> Result<Made, WorkError> {
        if let Some(made) = self.kept(snapshot, &asked) {
            return Ok(made);
        }
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| WorkError::Busy)?;
        let made = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            make()
        })
        .await
        .map_err(|e| WorkError::NotFound(format!("the census failed: {e}")))??;
        // A poisoned lock only means a census panicked once: start afresh.
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if !std::ptr::eq(kept.snapshot.as_ptr(), Arc::as_ptr(snapshot))
            || kept.results.len() >= KEPT
        {
            *kept = Kept {
                snapshot: Arc::downgrade(snapshot),
                results: Default::default(),
            };
        }
        kept.results.insert(asked, made.clone());
        Ok(made)
    }

    fn kept(&self, snapshot: &Arc<Snapshot>, asked: &Asked) -> Option<Made> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if !std::ptr::eq(kept.snapshot.as_ptr(), Arc::as_ptr(snapshot)) {
            return None;
        }
        kept.results.get(asked).cloned()
    }
}

/// Finds a steered name (any case, with or without the final dot); the first steered name
/// of the first zone when none is given.
fn find_steered(zones: &[Zone], name: Option<&str>) -> Result<(usize, usize), String> {
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

/// Every steered name served, for the page's chooser.
fn steered_names(zones: &[Zone]) -> Vec<String> {
    zones
        .iter()
        .flat_map(|z| z.steered.iter().map(|s| s.name.to_string()))
        .collect()
}

/// The map of a steered name: nodes and timeline from the view, and the census of the
/// published tables (made once per published change, on the blocking pool).
pub(super) async fn map(
    view: Arc<StateView>,
    snapshot: Arc<Snapshot>,
    work: Arc<Work>,
    name: Option<&str>,
    have: Option<u64>,
    family: Family,
    now: SystemTime,
) -> Result<Value, WorkError> {
    let zones = Arc::clone(view.zones());
    let (zi, si) = find_steered(&zones, name)?;
    let zone = &zones[zi];
    let steered = &zone.steered[si];
    let candidates = steered.candidate_nodes();
    let nodes: Vec<Value> = zone
        .nodes
        .iter()
        .enumerate()
        .map(|(ni, node)| {
            // The node as policy has it (as `/config` shows it), and how it is now.
            let mut out = crate::policy::effective::node_json(node);
            out["state"] = json!(if candidates.contains(&ni) {
                view.state_word(zi, ni)
            } else {
                "fenced-out"
            });
            out["live"] = json!(view.status_of(zi, ni, now));
            out
        })
        .collect();
    let mut out = json!({
        "name": steered.name.to_string(),
        "zone": zone.origin.to_string(),
        "names": steered_names(&zones),
        "nodes": nodes,
        "timeline": view.timeline(),
        "at": unix_seconds(now),
    });
    let published = Arc::clone(&snapshot);
    let made = work
        .get_or_make(&snapshot, Asked::Census((zi, si), family), move || {
            let table = steered_table(&published, zi, &zones, si).ok_or_else(not_published)?;
            let side = Side {
                table,
                geo: &published.geo,
                steered: &zones[zi].steered[si],
            };
            Ok(Made::Census(Arc::new(census(
                side,
                &zones[zi].nodes,
                family,
            ))))
        })
        .await?;
    let Made::Census(made) = made else {
        return Err(WorkError::NotFound(not_published()));
    };
    // Same census, same allocation: its address identifies it while held.
    let id = Arc::as_ptr(&made) as u64;
    out["census_id"] = json!(id.to_string());
    if have != Some(id) {
        out["census"] = json!(*made);
    }
    Ok(out)
}

/// A node taken out in a what-if, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WhatIfChange {
    /// Its checks fail.
    Down,
    /// Drained by an operator.
    Drained,
    /// Half its client networks drained by an operator (a staged drain).
    HalfDrained,
    /// At capacity.
    Full,
}

impl WhatIfChange {
    fn availability(self) -> Availability {
        match self {
            WhatIfChange::Down => Availability::HealthDown,
            WhatIfChange::Drained => Availability::AdminDown,
            WhatIfChange::HalfDrained => Availability::Draining(50),
            WhatIfChange::Full => Availability::Full(100),
        }
    }

    fn word(self) -> &'static str {
        match self {
            WhatIfChange::Down => "down",
            WhatIfChange::Drained => "drained",
            WhatIfChange::HalfDrained => "half drained",
            WhatIfChange::Full => "full",
        }
    }
}

/// A what-if: the tables built from the current availability with `changes` applied,
/// compared with the published ones for one steered name. Nothing is published.
pub(super) async fn what_if(
    view: Arc<StateView>,
    snapshot: Arc<Snapshot>,
    work: Arc<Work>,
    name: Option<&str>,
    changes: Vec<(String, WhatIfChange)>,
    family: Family,
) -> Result<Value, WorkError> {
    let zones = Arc::clone(view.zones());
    let (zi, si) = find_steered(&zones, name)?;
    let mut table = view.availability();
    let mut applied = serde_json::Map::new();
    for (node, change) in &changes {
        let Some(ni) = zones[zi].nodes.iter().position(|n| &n.name == node) else {
            return Err(format!("no node '{node}' in zone {}", zones[zi].origin).into());
        };
        table[zi][ni] = change.availability();
        applied.insert(node.clone(), json!(change.word()));
    }
    let mut key: Vec<(String, &'static str)> = (changes.iter())
        .map(|(node, change)| (node.clone(), change.word()))
        .collect();
    key.sort();
    key.dedup_by(|a, b| a.0 == b.0);
    let published = Arc::clone(&snapshot);
    let made = work
        .get_or_make(&snapshot, Asked::WhatIf((zi, si), family, key), move || {
            let snapshot = published;
            let after = build(&zones, Arc::clone(view.geo()), view.rankings(), &table);
            let (Some(now), Some(then)) = (
                steered_table(&snapshot, zi, &zones, si),
                steered_table(&after, zi, &zones, si),
            ) else {
                return Err(not_published());
            };
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
            Ok(Made::WhatIf(Arc::new(json!({
                "name": steered.name.to_string(),
                "changes": applied,
                "census": census(side(then, &after.geo), nodes, family),
                "moves": moved,
                "total": total,
                "live": "unchanged: a what-if is never published",
            }))))
        })
        .await?;
    match made {
        Made::WhatIf(value) => Ok((*value).clone()),
        Made::Census(_) => Err(WorkError::NotFound(not_published())),
    }
}

fn not_published() -> String {
    "the name's table is not published yet".into()
}
