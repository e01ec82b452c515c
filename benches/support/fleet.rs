//! Fleets at scale for benchmarks: policies of many nodes at random places.

use geosteer::random::XorShift;

/// A policy of `nodes` nodes at random places (one steered name, two answers), for the
/// benchmarks at scale.
pub(crate) fn scale_zone(rng: &mut XorShift, nodes: usize) -> String {
    let mut text = String::from(
        "zone: scale.example\nsoa: {primary: ns1.scale.example., contact: h.scale.example.}\nns: [ns1.scale.example.]\ncheck:\n  type: none\nnodes:\n",
    );
    for i in 0..nodes {
        let lat = rng.below(120) as f64 - 60.0;
        let lon = rng.below(360) as f64 - 180.0;
        text += &format!(
            "  n{i}: {{geo: AS-JP, location: [{lat}, {lon}], addresses: [198.51.{}.{}]}}\n",
            i / 250,
            i % 250 + 1
        );
    }
    text + "steer:\n  ingest: {answers: 2}\n"
}
