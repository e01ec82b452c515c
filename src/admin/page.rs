//! The status page (`GET /`): one self-contained HTML document (script and style inline,
//! country shapes served from the binary at `/map/shapes.json`; nothing from elsewhere),
//! and the JSON it polls: `GET /map?name=` (where every country's clients go, each node's
//! state, the timeline) and `GET /what-if?name=&down=&drain=&half=&full=` (the same with nodes
//! taken out, on a copy; nothing live changes).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use std::sync::Arc;

use super::AdminState;
use super::map::{WhatIfChange, WorkError};
use crate::net::Family;

/// The page.
const PAGE: &str = include_str!("status.html");
/// Country outlines (Natural Earth via world-atlas; see geo/shapes/make-shapes.py).
const SHAPES: &str = include_str!("../../geo/shapes/countries.json");

pub(super) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything is inline or from this origin; nothing may be loaded from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
        .into_response()
}

pub(super) async fn shapes() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        SHAPES,
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct MapQuery {
    name: Option<String>,
    /// The `census_id` the page already holds: the census is left out while current.
    have: Option<u64>,
    /// The address family counted: 4 (the default) or 6.
    family: Option<u8>,
}

/// The family a `family=` parameter names: 4 (the default) or 6.
fn family(number: Option<u8>) -> Option<Family> {
    match number {
        None | Some(4) => Some(Family::V4),
        Some(6) => Some(Family::V6),
        Some(_) => None,
    }
}

/// The answer to any other `family=`.
fn bad_family() -> Response {
    (StatusCode::BAD_REQUEST, "family is 4 or 6\n").into_response()
}

/// Answers per node from the query path's counters, for one zone (`zone` with its dot).
fn answer_counts(state: &AdminState, zone: &str) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    let Some(handle) = &state.prometheus else {
        return counts;
    };
    let text = handle.render();
    let zone_label = format!("zone=\"{zone}\"");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(crate::metrics::NODE_ANSWERS) else {
            continue;
        };
        if !rest.starts_with('{') || !rest.contains(&zone_label) {
            continue;
        }
        let node = rest
            .split("node=\"")
            .nth(1)
            .and_then(|s| s.split('"').next());
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(node), Some(value)) = (node, value) {
            counts.insert(node.to_string(), value);
        }
    }
    counts
}

pub(super) async fn map(State(state): State<AdminState>, Query(q): Query<MapQuery>) -> Response {
    let Some(family) = family(q.family) else {
        return bad_family();
    };
    let made = super::map::map(
        state.read.view.load(),
        state.read.snapshot.load_full(),
        Arc::clone(&state.work),
        q.name.as_deref(),
        q.have,
        family,
        super::now(),
    )
    .await;
    match made {
        Ok(mut value) => {
            let zone = value["zone"].as_str().unwrap_or_default().to_string();
            value["answers"] = serde_json::json!(answer_counts(&state, &zone));
            axum::Json(value).into_response()
        }
        Err(why) => refused(why),
    }
}

#[derive(Deserialize)]
pub(super) struct WhatIfQuery {
    name: Option<String>,
    /// Nodes whose checks would fail, comma-separated.
    down: Option<String>,
    /// Nodes an operator would drain.
    drain: Option<String>,
    /// Nodes an operator would drain half of (`drain?share=50`).
    half: Option<String>,
    /// Nodes that would be full.
    full: Option<String>,
    /// The address family counted: 4 (the default) or 6.
    family: Option<u8>,
}

pub(super) async fn what_if(
    State(state): State<AdminState>,
    Query(q): Query<WhatIfQuery>,
) -> Response {
    let mut changes = Vec::new();
    for (list, change) in [
        (&q.down, WhatIfChange::Down),
        (&q.drain, WhatIfChange::Drained),
        (&q.half, WhatIfChange::HalfDrained),
        (&q.full, WhatIfChange::Full),
    ] {
        for node in list.iter().flat_map(|l| l.split(',')) {
            let node = node.trim();
            if !node.is_empty() {
                changes.push((node.to_string(), change));
            }
        }
    }
    if changes.len() > 1024 {
        return (StatusCode::BAD_REQUEST, "too many nodes\n").into_response();
    }
    let Some(family) = family(q.family) else {
        return bad_family();
    };
    let made = super::map::what_if(
        state.read.view.load(),
        state.read.snapshot.load_full(),
        Arc::clone(&state.work),
        q.name.as_deref(),
        changes,
        family,
    )
    .await;
    match made {
        Ok(value) => axum::Json(value).into_response(),
        Err(why) => refused(why),
    }
}

fn refused(why: WorkError) -> Response {
    match why {
        WorkError::NotFound(why) => (StatusCode::NOT_FOUND, format!("{why}\n")).into_response(),
        WorkError::Busy => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "busy with another map or what-if; try again in a second\n",
        )
            .into_response(),
    }
}
