//! Nodes: names, places, addresses, capacity; and node names resolved to ids.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_saphyr::Spanned;

use super::super::model::*;
use super::*;
use crate::geo::{Coordinates, CountryTable, GeoCode};

pub(super) fn coordinates(
    diag: &mut Diagnostics,
    spanned: &Spanned<Vec<f64>>,
    context: &str,
) -> Option<Coordinates> {
    match spanned.value.as_slice() {
        [lat, lon] => {
            let c = Coordinates::new(*lat, *lon);
            if c.is_none() {
                diag.error(
                    at(spanned),
                    format!("{context}: [{lat}, {lon}] is not a place: latitude must be within -90..90 and longitude within -180..180"),
                );
            }
            c
        }
        _ => {
            diag.error(
                at(spanned),
                format!("{context}: expected [latitude, longitude]"),
            );
            None
        }
    }
}

/// Nodes in declaration order; `None` for a node with errors (already reported), so ids stay
/// aligned with names and checks that involve a broken node can skip it instead of cascading.
pub(super) fn validate_nodes(
    diag: &mut Diagnostics,
    raw: &RawZone,
    countries: &CountryTable,
) -> (Vec<Option<Node>>, HashMap<String, NodeId>) {
    let mut nodes = Vec::new();
    let mut index = HashMap::new();
    for (key, node) in &raw.nodes {
        let name = &key.name;
        let context = format!("node '{name}'");
        let n = &node.value;
        let geo = match GeoCode::parse(&n.geo.value, countries) {
            Ok(g) => Some(g),
            Err(e) => {
                diag.error(at(&n.geo), format!("{context}: geo: {e}"));
                None
            }
        };
        let location = coordinates(diag, &n.location, &format!("{context}: location"));
        let mut addresses = Vec::new();
        let mut carriers = Vec::new();
        for a in &n.addresses.value {
            let (text, asn) = match &a.value {
                RawAddress::Plain(text) => (text, None),
                RawAddress::Carrier { address, asn } => (address, Some(*asn)),
            };
            match text.parse::<IpAddr>() {
                Ok(ip) => {
                    addresses.push(ip);
                    if let Some(asn) = asn {
                        carriers.push((ip, asn));
                    }
                }
                Err(_) => diag.error(
                    at(a),
                    format!("{context}: '{text}' is not an IPv4 or IPv6 address"),
                ),
            }
        }
        let addresses_ok = addresses.len() == n.addresses.value.len();
        let capacity = validate_capacity(diag, raw, node, &context);
        let check = validate_check(diag, raw, node, &addresses, &context);
        if n.addresses.value.is_empty() {
            diag.error(at(&n.addresses), format!("{context}: no addresses"));
        }
        let weight = match &n.weight {
            Some(w) if w.value == 0 => {
                diag.error(at(w), format!("{context}: weight must be at least 1"));
                None
            }
            Some(w) => Some(w.value),
            None => Some(1),
        };
        index.insert(name.clone(), index.len());
        nodes.push(match (geo, location, weight, check, capacity) {
            (Some(geo), Some(location), Some(weight), Ok(check), Some(capacity))
                if addresses_ok && !addresses.is_empty() =>
            {
                Some(Node {
                    name: name.clone(),
                    tier: n.tier.unwrap_or(Tier::Core),
                    geo,
                    location,
                    addresses,
                    weight,
                    status: n.status.unwrap_or(AdminStatus::Obey),
                    check,
                    carriers,
                    capacity,
                })
            }
            _ => None,
        });
    }
    (nodes, index)
}

/// A node's capacity: its own fields over the zone's, over the defaults (full at 100 %,
/// taking new clients again below 10 points under that). `None`: errors were reported.
pub(super) fn validate_capacity(
    diag: &mut Diagnostics,
    raw: &RawZone,
    node: &Spanned<RawNode>,
    context: &str,
) -> Option<Capacity> {
    let own = node.value.capacity.as_ref().map(|c| &c.value);
    let zone = raw.capacity.as_ref().map(|c| &c.value);
    let mut ok = true;
    // A field of the node's own, else the zone's; a bad zone value is reported once, by
    // `validate_zone_capacity`, and only makes the node unusable here.
    let mut field = |pick: fn(&RawCapacity) -> &Option<Spanned<RawPercent>>, name: &str| {
        let (value, own) = match own.and_then(|c| pick(c).as_ref()) {
            Some(value) => (value, true),
            None => (zone.and_then(|c| pick(c).as_ref())?, false),
        };
        match capacity_fraction(value, name) {
            Ok(v) => Some((v, value)),
            Err(message) => {
                if own {
                    diag.error(at(value), format!("{context}: {message}"));
                }
                ok = false;
                None
            }
        }
    };
    let full = field(|c| &c.full, "full");
    let resume = field(|c| &c.resume, "resume");
    let full_value = full.map_or(Capacity::default().full, |(v, _)| v);
    let resume_value = resume.map_or((full_value - 0.1).max(full_value / 2.0), |(v, _)| v);
    if ok && resume_value > full_value {
        diag.error(
            resume.map_or(at(node), |(_, spanned)| at(spanned)),
            format!("{context}: capacity: resume ({:.0}%) must not be above full ({:.0}%), or a full node would never take clients again", resume_value * 100.0, full_value * 100.0),
        );
        ok = false;
    }
    let (full, resume) = (full_value, resume_value);
    let max_age = match own.and_then(|c| c.max_age.as_ref()) {
        Some(value) => match load_max_age(value) {
            Ok(d) => d,
            Err(message) => {
                diag.error(at(value), format!("{context}: {message}"));
                return None;
            }
        },
        None => zone
            .and_then(|c| c.max_age.as_ref())
            .and_then(|v| load_max_age(v).ok())
            .unwrap_or(LOAD_MAX_AGE),
    };
    ok.then_some(Capacity {
        full,
        resume,
        max_age,
    })
}

/// How long a load report counts: above 0, at most a day.
fn load_max_age(value: &Spanned<RawDuration>) -> Result<std::time::Duration, String> {
    match &value.value.0 {
        Ok(d) if !d.is_zero() && *d <= super::steered::MAX_LATENCY_DURATION => Ok(*d),
        Ok(_) => Err("capacity: max_age must be above 0 and at most 24h (e.g. 30s, 2m)".into()),
        Err(e) => Err(format!("capacity: max_age: {e}")),
    }
}

/// A capacity fraction: above 0, at most 150 % (loads are fractions of capacity).
pub(super) fn capacity_fraction(value: &Spanned<RawPercent>, name: &str) -> Result<f64, String> {
    match &value.value.0 {
        Ok(v) if *v > 0.0 && *v <= 1.5 => Ok(*v),
        Ok(v) => Err(format!(
            "capacity: {name} {v} must be above 0 and at most 150% (loads are fractions of capacity: 95% or 0.95)"
        )),
        Err(e) => Err(format!("capacity: {name}: {e}")),
    }
}

/// Reports bad values of the zone's capacity defaults, once (not for every node).
pub(super) fn validate_zone_capacity(diag: &mut Diagnostics, raw: &RawZone) {
    if let Some(capacity) = &raw.capacity {
        for (value, name) in [
            (&capacity.value.full, "full"),
            (&capacity.value.resume, "resume"),
        ] {
            if let Some(value) = value
                && let Err(message) = capacity_fraction(value, name)
            {
                diag.error(at(value), message);
            }
        }
        if let Some(value) = &capacity.value.max_age
            && let Err(message) = load_max_age(value)
        {
            diag.error(at(value), message);
        }
    }
}

/// Resolves node names to ids, reporting unknown ones with the list of known names.
pub(super) fn node_ids(
    diag: &mut Diagnostics,
    names: &[Spanned<String>],
    index: &HashMap<String, NodeId>,
    context: &str,
) -> Vec<NodeId> {
    let mut ids = Vec::new();
    for n in names {
        match index.get(&n.value) {
            Some(id) if !ids.contains(id) => ids.push(*id),
            Some(_) => diag.error(
                at(n),
                format!("{context}: node '{}' is listed twice", n.value),
            ),
            None => {
                let mut known: Vec<&str> = index.keys().map(String::as_str).collect();
                known.sort_unstable();
                diag.error(
                    at(n),
                    format!(
                        "{context}: unknown node '{}' (nodes of this zone: {})",
                        n.value,
                        known.join(", ")
                    ),
                );
            }
        }
    }
    ids
}
