//! Fleets at scale for benchmarks: policies of many nodes at random places.

use geosteer::random::XorShift;

/// A policy of `nodes` nodes at random places and `names` steered names (two answers each),
/// for the benchmarks at scale: `ingest` over every node, then `ingest-N`, each over its own
/// random half of the nodes.
pub(crate) fn scale_zone(rng: &mut XorShift, nodes: usize, names: usize) -> String {
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
    text += "steer:\n  ingest: {answers: 2}\n";
    for n in 1..names {
        let mut chosen: Vec<String> = (0..nodes)
            .filter(|_| rng.below(2) == 0)
            .map(|i| format!("n{i}"))
            .collect();
        if chosen.is_empty() {
            chosen.push("n0".into());
        }
        text += &format!(
            "  ingest-{n}: {{answers: 2, rules: [{{nodes: [{}]}}]}}\n",
            chosen.join(", ")
        );
    }
    text
}
