//! Ranking candidate nodes for one client place: the policy's idea of "best".
//!
//! Pure functions of the policy and a place; called only while answer tables are built, never
//! per query. Order: primaries (core, edge) before backups; within each, earlier fallback levels
//! first; then nearest first by great-circle distance (or candidate-list order when the client has
//! no coordinates); ties by higher weight, then position in the candidate list, so answers are deterministic.

use std::cmp::Ordering;

use crate::geo::{Coordinates, GeoCode};
use crate::policy::{AdminStatus, Candidates, Node, NodeId, Tier};

/// Ranks `candidates` for a client at `client`, keeping only nodes that are answerable and
/// inside every fence in `fences`.
pub fn rank(
    nodes: &[Node],
    candidates: &Candidates,
    client: Option<Coordinates>,
    fences: &[&GeoCode],
) -> Vec<NodeId> {
    // (node, fallback level, distance, position in the candidate list)
    let mut ranked: Vec<(&Node, NodeId, u8, f64, usize)> = candidates
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(position, &(id, level))| nodes.get(id).map(|n| (n, id, level, position)))
        .filter(|(n, ..)| n.status != AdminStatus::Down)
        .filter(|(n, ..)| fences.iter().all(|f| f.contains(&n.geo)))
        .map(|(n, id, level, position)| {
            let distance = client.map_or(0.0, |c| c.distance_km(&n.location));
            (n, id, level, distance, position)
        })
        .collect();
    ranked.sort_by(|a, b| {
        (a.0.tier == Tier::Backup)
            .cmp(&(b.0.tier == Tier::Backup))
            .then(a.2.cmp(&b.2))
            .then(a.3.partial_cmp(&b.3).unwrap_or(Ordering::Equal))
            .then(b.0.weight.cmp(&a.0.weight))
            .then(a.4.cmp(&b.4))
    });
    ranked.into_iter().map(|(_, id, ..)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::CountryTable;

    fn node(name: &str, tier: Tier, geo: &str, lat: f64, lon: f64) -> Node {
        Node {
            name: name.into(),
            tier,
            geo: GeoCode::parse(geo, CountryTable::shipped()).unwrap(),
            location: Coordinates::new(lat, lon).unwrap(),
            addresses: vec!["192.0.2.1".parse().unwrap()],
            weight: 1,
            status: AdminStatus::Obey,
        }
    }

    fn all(n: usize) -> Candidates {
        Candidates {
            nodes: (0..n).map(|i| (i, 0)).collect(),
        }
    }

    #[test]
    fn nearest_first_backups_last() {
        let nodes = vec![
            node("tokyo", Tier::Core, "AS-JP", 35.68, 139.69),
            node("frankfurt", Tier::Core, "EU-DE", 50.11, 8.68),
            node("osaka-b", Tier::Backup, "AS-JP", 34.69, 135.50),
            node("london", Tier::Edge, "EU-GB", 51.5, -0.12),
        ];
        let berlin = Coordinates::new(52.52, 13.40);
        assert_eq!(rank(&nodes, &all(4), berlin, &[]), vec![1, 3, 0, 2]);
        let seoul = Coordinates::new(37.56, 126.97);
        assert_eq!(rank(&nodes, &all(4), seoul, &[]), vec![0, 1, 3, 2]);
    }

    #[test]
    fn fences_and_down_nodes_are_excluded() {
        let mut nodes = vec![
            node("tokyo", Tier::Core, "AS-JP", 35.68, 139.69),
            node("frankfurt", Tier::Core, "EU-DE", 50.11, 8.68),
            node("london", Tier::Core, "EU-GB", 51.5, -0.12),
        ];
        let eu = GeoCode::parse("EU", CountryTable::shipped()).unwrap();
        let tokyo = Coordinates::new(35.0, 139.0);
        assert_eq!(rank(&nodes, &all(3), tokyo, &[&eu]), vec![1, 2]);
        nodes[1].status = AdminStatus::Down;
        assert_eq!(rank(&nodes, &all(3), tokyo, &[&eu]), vec![2]);
    }

    #[test]
    fn fallback_levels_then_candidate_order_without_coordinates() {
        let nodes = vec![
            node("a", Tier::Core, "EU-DE", 50.0, 8.0),
            node("b", Tier::Core, "EU-DE", 50.0, 8.0),
            node("c", Tier::Core, "AS-JP", 35.0, 139.0),
        ];
        let chain = Candidates {
            nodes: vec![(2, 0), (1, 1), (0, 1)],
        };
        assert_eq!(rank(&nodes, &chain, None, &[]), vec![2, 1, 0]);
        let frankfurt = Coordinates::new(50.0, 8.0);
        assert_eq!(rank(&nodes, &chain, frankfurt, &[]), vec![2, 1, 0]);
    }
}
