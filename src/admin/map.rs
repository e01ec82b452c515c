//! The status page's data: where a steered name's clients go now, every node's state, the
//! timeline of what changed, and what-ifs — the answer tables built by the same builder
//! from a copy of the current availability with some nodes taken out, compared with the
//! published ones. A what-if changes nothing live: its tables are never published.
//!
//! Both read the published state view and snapshot, never the publisher. The census behind
//! both walks the database's address space, so it runs on the blocking pool.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::answer::census::{Census, Side, census, moves, steered_table};
use crate::answer::{Snapshot, StateView, build, unix_seconds};
use crate::net::Family;
use crate::policy::Zone;
use crate::steer::Availability;

/// The last census made, for the tables it was made from: a page polling every second
/// walks the database once per published change, not once per poll.
#[derive(Debug, Default)]
pub(crate) struct CensusCache(std::sync::Mutex<Option<CachedCensus>>);

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
    cache: Arc<CensusCache>,
    name: Option<&str>,
    have: Option<u64>,
    family: Family,
    now: SystemTime,
) -> Result<Value, String> {
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
    let made = blocking(move || {
        cache.get_or_make(&snapshot, (zi, si), family, || {
            let table = steered_table(&snapshot, zi, &zones, si)?;
            let side = Side {
                table,
                geo: &snapshot.geo,
                steered: &zones[zi].steered[si],
            };
            Some(census(side, &zones[zi].nodes, family))
        })
    })
    .await?
    .ok_or_else(not_published)?;
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
    /// At capacity.
    Full,
}

impl WhatIfChange {
    fn availability(self) -> Availability {
        match self {
            WhatIfChange::Down => Availability::HealthDown,
            WhatIfChange::Drained => Availability::AdminDown,
            WhatIfChange::Full => Availability::Full(100),
        }
    }

    fn word(self) -> &'static str {
        match self {
            WhatIfChange::Down => "down",
            WhatIfChange::Drained => "drained",
            WhatIfChange::Full => "full",
        }
    }
}

/// A what-if: the tables built from the current availability with `changes` applied,
/// compared with the published ones for one steered name. Nothing is published.
pub(super) async fn what_if(
    view: Arc<StateView>,
    snapshot: Arc<Snapshot>,
    name: Option<&str>,
    changes: Vec<(String, WhatIfChange)>,
    family: Family,
) -> Result<Value, String> {
    let zones = Arc::clone(view.zones());
    let (zi, si) = find_steered(&zones, name)?;
    let mut table = view.availability();
    let mut applied = serde_json::Map::new();
    for (node, change) in &changes {
        let Some(ni) = zones[zi].nodes.iter().position(|n| &n.name == node) else {
            return Err(format!("no node '{node}' in zone {}", zones[zi].origin));
        };
        table[zi][ni] = change.availability();
        applied.insert(node.clone(), json!(change.word()));
    }
    blocking(move || {
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
        Ok(json!({
            "name": steered.name.to_string(),
            "changes": applied,
            "census": census(side(then, &after.geo), nodes, family),
            "moves": moved,
            "total": total,
            "live": "unchanged: a what-if is never published",
        }))
    })
    .await?
}

fn not_published() -> String {
    "the name's table is not published yet".into()
}

/// Runs a census on the blocking pool: it walks the whole database.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the census failed: {e}"))
}
