//! Fences proved against the GeoIP database (what `check`, start-up and every reload do
//! once the database is open): a subnet rule whose nodes are all outside a fence must hold
//! no client the database places inside that fence — unless a geo rule takes those clients
//! first — or they would get NOERROR with no answer. Geo rules are proved without the
//! database, in `validate::fences`.

use crate::geo::{GeoDb, census_unit_shift};
use crate::net::Family;
use crate::policy::{Candidates, Node, PolicyError, SteeredName, Zone};

/// Every subnet rule of every steered name that leaves clients inside a fence with only
/// nodes outside it: one error per (rule, subnet, fence), with a country and a network
/// found there.
pub fn fence_holes(zones: &[Zone], geo: &GeoDb) -> Vec<PolicyError> {
    let mut errors = Vec::new();
    for zone in zones {
        for steered in &zone.steered {
            holes_of(zone, steered, geo, &mut errors);
        }
    }
    errors
}

fn holes_of(zone: &Zone, steered: &SteeredName, geo: &GeoDb, errors: &mut Vec<PolicyError>) {
    let outside = |c: &Candidates, fence: &crate::geo::GeoSet| {
        c.nodes
            .iter()
            .filter_map(|(id, _)| zone.nodes.get(*id))
            .all(|n: &Node| !fence.contains(&n.geo))
    };
    for fence in &steered.fences {
        for (index, rule) in steered.rules.iter().enumerate() {
            if rule.subnets.is_empty() || !outside(&rule.candidates, fence) {
                continue;
            }
            for prefix in &rule.subnets {
                let Some((country, network)) = place_inside(geo, steered, index, prefix, fence)
                else {
                    continue;
                };
                let nodes: Vec<&str> = (rule.candidates.nodes.iter())
                    .filter_map(|(id, _)| zone.nodes.get(*id).map(|n| n.name.as_str()))
                    .collect();
                errors.push(PolicyError {
                    path: zone.source.clone(),
                    line: 0,
                    column: 0,
                    message: format!(
                        "steer '{}': rule {}: subnet {prefix} holds clients the database places in {country} (e.g. {network}), inside the fence {fence}, and sends them only to nodes outside it ({}): they would get no answer; give the rule a node inside {fence}, or narrow the subnet",
                        steered.name,
                        index + 1,
                        nodes.join(", ")
                    ),
                });
            }
        }
    }
}

/// A place inside `fence` among the database's ranges in `prefix` whose clients rule
/// `index` takes (no earlier geo rule matches them): its country and a network of it.
fn place_inside(
    geo: &GeoDb,
    steered: &SteeredName,
    index: usize,
    prefix: &crate::net::Prefix,
    fence: &crate::geo::GeoSet,
) -> Option<(String, String)> {
    let family = prefix.family;
    let shift = census_unit_shift(family);
    // The prefix in the database's 128-bit space (both families left-aligned): it covers
    // 2^(128 - len) of it, all of it for a /0.
    let width = match family {
        Family::V4 => 32,
        Family::V6 => 128,
    };
    let len = u32::from(prefix.len).min(width);
    let start = prefix.bits;
    let end = 1u128
        .checked_shl(128 - len)
        .map_or(u128::MAX, |span| start.saturating_add(span));
    let places = geo.places();
    geo.ranges(family).find_map(|(first, size, place)| {
        let units = u128::from(size).max(1);
        let last = units
            .checked_mul(1u128 << shift)
            .map_or(u128::MAX, |span| first.saturating_add(span - 1));
        if last < start || first >= end {
            return None;
        }
        let place = places.get(place? as usize)?;
        let at = first.max(start);
        let address = match family {
            Family::V4 => std::net::IpAddr::V4(std::net::Ipv4Addr::from((at >> 96) as u32)),
            Family::V6 => std::net::IpAddr::V6(std::net::Ipv6Addr::from(at)),
        };
        // An earlier rule matching these clients (by geo, or by a subnet of its own) takes
        // them first.
        let taken_earlier = steered.rules[..index].iter().any(|r| {
            r.geos.iter().any(|g| g.matches(place)) || r.subnets.iter().any(|p| p.contains(address))
        });
        if !fence.matches(place) || taken_earlier {
            return None;
        }
        let network = match family {
            Family::V4 => format!(
                "{}/24",
                std::net::Ipv4Addr::from(((at >> 96) as u32) & !0xff)
            ),
            Family::V6 => format!("{}/48", std::net::Ipv6Addr::from(at & !((1u128 << 80) - 1))),
        };
        let country = place
            .country
            .map_or("?".into(), |c| String::from_utf8_lossy(&c).into_owned());
        Some((country, network))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole-space subnets (a /0 of either family) are walked, not overflowed: both hold
    /// European clients the fence would leave unanswered.
    #[test]
    fn whole_space_subnets_are_proved_too() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let geo = GeoDb::open(&root.join("geo/dbip-country.mmdb")).expect("shipped database");
        let text = "zone: h.example\nsoa: {primary: ns1.h.example., contact: x.h.example.}\nns: [ns1.h.example.]\ncheck: {type: none}\n\
                    nodes:\n  tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1]}\n  paris: {geo: EU-FR, location: [48.86, 2.35], addresses: [192.0.2.2]}\n\
                    steer:\n  ingest:\n    rules:\n      - {subnets: [\"0.0.0.0/0\", \"::/0\"], nodes: [tokyo]}\n      - {geos: [EU], nodes: [paris], fence: true}\n      - {}\n";
        let zone =
            crate::policy::parse_zone(std::path::Path::new("h.yaml"), text, 1).expect("zone");
        let holes = fence_holes(&[zone], &geo);
        let said: Vec<&str> = holes.iter().map(|e| e.message.as_str()).collect();
        assert!(
            said.iter().any(|m| m.contains("subnet 0.0.0.0/0")),
            "{said:?}"
        );
        assert!(said.iter().any(|m| m.contains("subnet ::/0")), "{said:?}");
    }
}
