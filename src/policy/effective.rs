//! The effective policy as JSON: every zone as geosteer understood it, with the defaults
//! filled in (check settings, TTLs, latency settings), for `GET /config`. Operators compare
//! it with what they meant to write; it is never read back.

use serde_json::{Value, json};

use super::model::{Candidates, HealthCheck, Node, Probe, Rule, SteeredName, Zone};

/// One zone's effective policy.
pub fn zone_json(zone: &Zone) -> Value {
    json!({
        "zone": zone.origin.to_string(),
        "source": zone.source.display().to_string(),
        "default_ttl": zone.default_ttl,
        "soa": {
            "primary": zone.soa.primary.to_string(),
            "contact": zone.soa.contact.to_string(),
            "serial": zone.soa.serial,
            "refresh": zone.soa.refresh,
            "retry": zone.soa.retry,
            "expire": zone.soa.expire,
            "minimum": zone.soa.minimum,
            "ttl": zone.soa.ttl,
        },
        "ns": zone.ns.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "records": zone.records.iter().map(|r| json!({
            "name": r.name.to_string(),
            "type": r.record_type().mnemonic(),
            "ttl": r.ttl,
            "count": r.data.len(),
        })).collect::<Vec<_>>(),
        "nodes": zone.nodes.iter().map(node_json).collect::<Vec<_>>(),
        "steer": zone.steered.iter().map(|s| steered_json(zone, s)).collect::<Vec<_>>(),
    })
}

/// A node as its policy has it, defaults filled in (also what the status page shows of it).
pub fn node_json(node: &Node) -> Value {
    json!({
        "name": node.name,
        "tier": node.tier,
        "geo": node.geo.to_string(),
        "location": [node.location.latitude, node.location.longitude],
        "addresses": node.addresses,
        "carriers": node.carriers.iter().map(|(ip, asn)| json!({"address": ip, "asn": asn})).collect::<Vec<_>>(),
        "weight": node.weight,
        "status": node.status,
        "check": node.check.as_ref().map(check_json),
    })
}

fn check_json(check: &HealthCheck) -> Value {
    let timing = &check.timing;
    let mut out = json!({
        "type": check.probe.kind(),
        "target": check.target.to_string(),
        "interval_ms": timing.interval.as_millis() as u64,
        "recheck_ms": timing.recheck.as_millis() as u64,
        "timeout_ms": timing.timeout.as_millis() as u64,
        "rise": timing.rise,
        "fall": timing.fall,
    });
    let (http, tls) = match &check.probe {
        Probe::Http(http) => (Some(http), None),
        Probe::Https(http, tls) => (Some(http), Some(tls)),
        Probe::Tcp | Probe::Rtmp => (None, None),
    };
    if let Some(http) = http {
        out["path"] = json!(http.path);
        out["host"] = json!(http.host);
        out["expect"] = json!(http.expect);
        out["body"] = json!(http.body);
    }
    if let Some(tls) = tls {
        out["sni"] = json!(tls.sni);
        out["verify"] = json!(tls.verify);
    }
    out
}

fn candidates_json(zone: &Zone, candidates: &Candidates) -> Value {
    candidates
        .nodes
        .iter()
        .map(|&(id, level)| {
            json!({
                "node": zone.nodes.get(id).map_or("?", |n| n.name.as_str()),
                "fallback_level": level,
            })
        })
        .collect()
}

fn rule_json(zone: &Zone, rule: &Rule) -> Value {
    json!({
        "geos": rule.geos.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "subnets": rule.subnets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "candidates": candidates_json(zone, &rule.candidates),
        "spread": rule.spread.map(spread_json),
    })
}

fn spread_json(within: crate::policy::SpreadWithin) -> Value {
    match within {
        crate::policy::SpreadWithin::Fraction(f) => json!({"within": format!("{}%", f * 100.0)}),
        crate::policy::SpreadWithin::Milliseconds(ms) => json!({"within": format!("{ms}ms")}),
    }
}

fn steered_json(zone: &Zone, steered: &SteeredName) -> Value {
    json!({
        "name": steered.name.to_string(),
        "ttl": steered.ttl,
        "answers": steered.answers,
        "rules": steered.rules.iter().map(|r| rule_json(zone, r)).collect::<Vec<_>>(),
        "fences": steered.fences.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "default": {
            "candidates": steered.default.candidates.as_ref().map(|c| candidates_json(zone, c)),
            "location": steered.default.location.map(|l| [l.latitude, l.longitude]),
        },
        "all_down": steered.all_down,
        "degraded_ttl": steered.degraded_ttl,
        "spread": steered.spread.map(spread_json),
        "latency": {
            "margin": steered.latency.margin,
            "hold_s": steered.latency.hold.as_secs_f64(),
            "half_life_s": steered.latency.half_life.as_secs_f64(),
            "max_age_s": steered.latency.max_age.as_secs_f64(),
        },
    })
}
