//! What a policy change does besides moving clients on a healthy day: how a steered name
//! answers and fails over (its answer size, TTLs, `all_down`, spreading, damping, the nodes
//! and fallbacks of its rules and default), and the zone's nodes (tier, addresses, carrier
//! lines, weight, status, check, capacity), static records, SOA, NS and health quorum. Each
//! change in words, "field: before → after".

use std::collections::BTreeMap;

use crate::policy::{Candidates, Node, RecordSet, SteeredName, Zone};

/// One field's change in words, or nothing when it is the same.
fn field(out: &mut Vec<String>, what: &str, before: String, after: String) {
    if before != after {
        out.push(format!("{what}: {before} → {after}"));
    }
}

/// A candidate list as operators write it: pool members, then `| fallback:` and the next
/// level's.
fn candidates(zone: &Zone, c: &Candidates) -> String {
    let mut out = String::new();
    let mut level = None;
    for &(id, l) in &c.nodes {
        let name = zone.nodes.get(id).map_or("?", |n| n.name.as_str());
        match level {
            None => {}
            Some(prev) if prev == l => out += ", ",
            Some(_) => out += " | fallback: ",
        }
        out += name;
        level = Some(l);
    }
    out
}

/// How a steered name answers and fails over: every setting but its clients' positions.
pub(super) fn name_changes(
    old: &SteeredName,
    old_zone: &Zone,
    new: &SteeredName,
    new_zone: &Zone,
) -> Vec<String> {
    let mut out = Vec::new();
    field(
        &mut out,
        "answers",
        old.answers.to_string(),
        new.answers.to_string(),
    );
    field(&mut out, "ttl", old.ttl.to_string(), new.ttl.to_string());
    let opt = |v: Option<u32>| v.map_or("none".to_string(), |v| v.to_string());
    field(
        &mut out,
        "degraded_ttl",
        opt(old.degraded_ttl),
        opt(new.degraded_ttl),
    );
    field(
        &mut out,
        "all_down",
        format!("{:?}", old.all_down),
        format!("{:?}", new.all_down),
    );
    field(
        &mut out,
        "spread",
        format!("{:?}", old.spread),
        format!("{:?}", new.spread),
    );
    field(
        &mut out,
        "latency",
        format!("{:?}", old.latency),
        format!("{:?}", new.latency),
    );
    let fences = |s: &SteeredName| {
        s.fences
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    field(&mut out, "fences", fences(old), fences(new));
    let rule = |zone: &Zone, r: &crate::policy::Rule| {
        let geos: Vec<String> = r.geos.iter().map(ToString::to_string).collect();
        let subnets: Vec<String> = r.subnets.iter().map(ToString::to_string).collect();
        let when = match (geos.is_empty(), subnets.is_empty()) {
            (true, true) => "every client".to_string(),
            _ => [geos.join(", "), subnets.join(", ")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        };
        let spread = r
            .spread
            .map_or(String::new(), |w| format!(", spread {w:?}"));
        format!("{when} → {}{spread}", candidates(zone, &r.candidates))
    };
    for i in 0..old.rules.len().max(new.rules.len()) {
        let text = |zone, s: &SteeredName| {
            s.rules
                .get(i)
                .map_or("(none)".to_string(), |r| rule(zone, r))
        };
        field(
            &mut out,
            &format!("rule {}", i + 1),
            text(old_zone, old),
            text(new_zone, new),
        );
    }
    let default = |zone: &Zone, s: &SteeredName| {
        let nodes = s
            .default
            .candidates
            .as_ref()
            .map_or("the catch-all's".into(), |c| candidates(zone, c));
        let at = s.default.location.map_or(String::new(), |l| {
            format!(" from [{}, {}]", l.latitude, l.longitude)
        });
        format!("{nodes}{at}")
    };
    field(
        &mut out,
        "default",
        default(old_zone, old),
        default(new_zone, new),
    );
    out
}

/// One node in words, field by field.
fn node_fields(n: &Node) -> Vec<(&'static str, String)> {
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    vec![
        ("tier", format!("{:?}", n.tier).to_lowercase()),
        ("geo", n.geo.to_string()),
        (
            "location",
            format!("[{}, {}]", n.location.latitude, n.location.longitude),
        ),
        (
            "addresses",
            list(n.addresses.iter().map(ToString::to_string).collect()),
        ),
        (
            "carrier lines",
            list(
                n.carriers
                    .iter()
                    .map(|(ip, asn)| format!("{ip} AS{asn}"))
                    .collect(),
            ),
        ),
        ("weight", n.weight.to_string()),
        ("status", format!("{:?}", n.status).to_lowercase()),
        (
            "check",
            n.check
                .as_ref()
                .map_or("none".to_string(), ToString::to_string),
        ),
        (
            "capacity",
            format!(
                "full {}, resume {}, max_age {:?}",
                n.capacity.full, n.capacity.resume, n.capacity.max_age
            ),
        ),
    ]
}

/// A record set in words; its records in a fixed order (an RRset has none, so a file that
/// lists them otherwise changes nothing).
fn set_text(set: &RecordSet) -> String {
    let mut data: Vec<String> = set.data.iter().map(|d| format!("{d:?}")).collect();
    data.sort();
    format!("ttl {} {}", set.ttl, data.join(", "))
}

/// The zone's nodes, static records, SOA (its serial aside: every edit moves it), NS and
/// health quorum.
pub(super) fn zone_changes(old: &Zone, new: &Zone) -> Vec<String> {
    let mut out = Vec::new();
    for node in &old.nodes {
        match new.nodes.iter().find(|n| n.name == node.name) {
            None => out.push(format!("node {}: removed", node.name)),
            Some(after) => {
                for ((what, before), (_, now)) in
                    node_fields(node).into_iter().zip(node_fields(after))
                {
                    field(&mut out, &format!("node {} {what}", node.name), before, now);
                }
            }
        }
    }
    for node in new
        .nodes
        .iter()
        .filter(|n| !old.nodes.iter().any(|o| o.name == n.name))
    {
        out.push(format!("node {}: added", node.name));
    }
    let sets = |z: &Zone| -> BTreeMap<(String, u16), String> {
        z.records
            .iter()
            .map(|s| ((s.name.to_string(), s.record_type().0), set_text(s)))
            .collect()
    };
    let (before, after) = (sets(old), sets(new));
    let type_name = |t: u16| hickory_proto::rr::RecordType::from(t).to_string();
    for (key, text) in &before {
        let what = format!("record {} {}", key.0, type_name(key.1));
        match after.get(key) {
            None => out.push(format!("{what}: removed")),
            Some(now) => field(&mut out, &what, text.clone(), now.clone()),
        }
    }
    for key in after.keys().filter(|k| !before.contains_key(*k)) {
        out.push(format!("record {} {}: added", key.0, type_name(key.1)));
    }
    let soa = |z: &Zone| {
        let s = &z.soa;
        format!(
            "{} {} refresh {} retry {} expire {} minimum {} ttl {}",
            s.primary, s.contact, s.refresh, s.retry, s.expire, s.minimum, s.ttl
        )
    };
    field(&mut out, "soa", soa(old), soa(new));
    let ns = |z: &Zone| {
        z.ns.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    field(&mut out, "ns", ns(old), ns(new));
    field(
        &mut out,
        "health_quorum",
        format!("{:?}", old.health_quorum),
        format!("{:?}", new.health_quorum),
    );
    out
}
