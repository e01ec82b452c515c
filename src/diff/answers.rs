//! Answers that change while their first node stays: the other positions, the addresses
//! served, TTLs, fail-closed, carrier lines. Moves of the first node are `census::moves`;
//! this sees everything else a client gets, range by range of the database.

use std::collections::HashMap;

use serde::Serialize;

use crate::answer::census::{EXAMPLES, Range, Side, country_name, network, walk};
use crate::answer::{AnswerSet, FamilyAnswer};
use crate::net::Family;
use crate::policy::Node;
use crate::wire::RDATA_OFFSET;

/// Clients whose answer changes in one way, from one form to another.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnswerChange {
    /// What changes: `nodes` (positions after the first, or how many), `addresses`, `ttl`,
    /// `servfail` or `carrier lines`.
    pub kind: &'static str,
    /// The answer before, in that respect.
    pub before: String,
    /// And after.
    pub after: String,
    /// Addresses (census units) whose answer changes so.
    pub addresses: u64,
    /// Their share of the family's located space.
    pub share: f64,
    /// Countries, most addresses first.
    pub countries: Vec<(String, u64)>,
    /// A few networks to try with `dig +subnet`.
    pub examples: Vec<String>,
}

/// One answer seen in each respect a change is told by, most telling first: the node list
/// whole (its order matters), the rest as items whose difference is told.
struct Described {
    servfail: String,
    nodes: String,
    addresses: Vec<String>,
    ttl: Vec<String>,
    carriers: Vec<String>,
}

fn describe(answer: &AnswerSet, nodes: &[Node]) -> Described {
    let families = [("A", &answer.a), ("AAAA", &answer.aaaa)];
    let answering = || {
        families
            .iter()
            .filter(|(_, a)| !a.nodes.is_empty() || a.servfail)
    };
    let per_family = |f: &dyn Fn(&FamilyAnswer) -> String| -> String {
        answering()
            .map(|(t, a)| format!("{t} {}", f(a)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let items = |f: &dyn Fn(&FamilyAnswer) -> Vec<String>| -> Vec<String> {
        let mut all: Vec<String> = answering()
            .flat_map(|(t, a)| f(a).into_iter().map(move |i| format!("{t} {i}")))
            .collect();
        all.sort();
        all.dedup();
        all
    };
    let name = |id: &usize| nodes.get(*id).map_or("?", |n| n.name.as_str());
    let node_list = |a: &FamilyAnswer| {
        let group = a.draw.len();
        let drawn: Vec<&str> = a.nodes.iter().take(group).map(name).collect();
        let rest: Vec<&str> = a.nodes.iter().skip(group).map(name).collect();
        match (drawn.is_empty(), rest.is_empty()) {
            (true, _) => rest.join(", "),
            (false, true) => format!("{} of [{}]", a.drawn, drawn.join(", ")),
            (false, false) => format!("{} of [{}], {}", a.drawn, drawn.join(", "), rest.join(", ")),
        }
    };
    let rdata = |body: &[u8]| match body.len() - RDATA_OFFSET.min(body.len()) {
        4 => <[u8; 4]>::try_from(&body[RDATA_OFFSET..])
            .map(|o| std::net::Ipv4Addr::from(o).to_string())
            .unwrap_or_default(),
        16 => <[u8; 16]>::try_from(&body[RDATA_OFFSET..])
            .map(|o| std::net::Ipv6Addr::from(o).to_string())
            .unwrap_or_default(),
        _ => "?".into(),
    };
    let ttl = |body: &[u8]| {
        body.get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes)
    };
    let addresses = |a: &FamilyAnswer| {
        (a.nodes.iter().zip(&a.bodies))
            .map(|(id, b)| format!("{} {}", name(id), rdata(b)))
            .collect()
    };
    let ttls = |a: &FamilyAnswer| a.bodies.iter().map(|b| format!("{} s", ttl(b))).collect();
    let carriers = |a: &FamilyAnswer| {
        (a.carriers.iter())
            .map(|(asn, bodies)| {
                let ips: Vec<String> = bodies.iter().map(|b| rdata(b)).collect();
                format!("AS{asn} {}", ips.join(", "))
            })
            .collect()
    };
    Described {
        servfail: per_family(&|a| {
            if a.servfail {
                "SERVFAIL".into()
            } else {
                "answers".into()
            }
        }),
        nodes: per_family(&node_list),
        addresses: items(&addresses),
        ttl: items(&ttls),
        carriers: items(&carriers),
    }
}

/// How the answer of one range changes in ways a first-node move does not say: the whole
/// node list when it changes (which says the rest), else each of addresses, TTLs and
/// carrier lines that differ, by the items that differ ("A tokyo-1 198.51.100.81" → "A
/// tokyo-1 198.51.100.89"), so ranges that change alike group.
fn changes_of(before: &Described, after: &Described) -> Vec<(&'static str, String, String)> {
    let whole = [
        ("servfail", &before.servfail, &after.servfail),
        ("nodes", &before.nodes, &after.nodes),
    ];
    if let Some((kind, b, a)) = whole.into_iter().find(|(_, b, a)| b != a) {
        return vec![(kind, b.clone(), a.clone())];
    }
    let only = |x: &[String], y: &[String]| {
        let items: Vec<&str> = x
            .iter()
            .filter(|i| !y.contains(i))
            .map(String::as_str)
            .collect();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    [
        ("addresses", &before.addresses, &after.addresses),
        ("ttl", &before.ttl, &after.ttl),
        ("carrier lines", &before.carriers, &after.carriers),
    ]
    .into_iter()
    .filter(|(_, b, a)| b != a)
    .map(|(kind, b, a)| (kind, only(b, a), only(a, b)))
    .collect()
}

/// Whether the client at `ip` gets another answer on the two sides in some way besides its
/// first node (which `moves` tells): for weighing by a query sample.
pub(super) fn answer_changes_for(
    before: Side<'_>,
    before_nodes: &[Node],
    after: Side<'_>,
    after_nodes: &[Node],
    ip: std::net::IpAddr,
) -> bool {
    let b = describe(before.table.select(ip, before.geo).answer, before_nodes);
    let a = describe(after.table.select(ip, after.geo).answer, after_nodes);
    !changes_of(&b, &a).is_empty()
}

/// Which clients of one family get another answer while their first node stays, grouped
/// by what changes and how, largest first.
pub(super) fn answer_changes(
    before: Side<'_>,
    before_nodes: &[Node],
    after: Side<'_>,
    after_nodes: &[Node],
    family: Family,
) -> Vec<AnswerChange> {
    struct Tally {
        addresses: u64,
        countries: HashMap<[u8; 2], u64>,
        examples: Vec<(u64, u128)>,
    }
    let mut tally: HashMap<(&'static str, String, String), Tally> = HashMap::new();
    let mut described: HashMap<(*const AnswerSet, bool), Described> = HashMap::new();
    let mut total = 0u64;
    walk(&[before, after], family, |r: Range<'_, '_>| {
        total = total.saturating_add(r.size);
        if r.to[0].name(before_nodes) != r.to[1].name(after_nodes) {
            return; // a move of the first node: told by `moves`
        }
        let (b, a) = (r.answers[0], r.answers[1]);
        for (answer, nodes, after_side) in [(b, before_nodes, false), (a, after_nodes, true)] {
            described
                .entry((std::ptr::from_ref(answer), after_side))
                .or_insert_with(|| describe(answer, nodes));
        }
        let changes = changes_of(
            &described[&(std::ptr::from_ref(b), false)],
            &described[&(std::ptr::from_ref(a), true)],
        );
        for key in changes {
            let entry = tally.entry(key).or_insert_with(|| Tally {
                addresses: 0,
                countries: HashMap::new(),
                examples: Vec::new(),
            });
            entry.addresses = entry.addresses.saturating_add(r.size);
            let per_country = entry.countries.entry(r.country).or_default();
            *per_country = per_country.saturating_add(r.size);
            entry.examples.push((r.size, r.first));
            if entry.examples.len() > EXAMPLES * 4 {
                entry.examples.sort_by_key(|e| std::cmp::Reverse(e.0));
                entry.examples.truncate(EXAMPLES);
            }
        }
    });
    let mut out: Vec<AnswerChange> = tally
        .into_iter()
        .map(|((kind, before, after), mut t)| {
            let mut countries: Vec<(String, u64)> = (t.countries.into_iter())
                .map(|(c, n)| (country_name(c), n))
                .collect();
            countries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            t.examples.sort_by_key(|e| std::cmp::Reverse(e.0));
            AnswerChange {
                kind,
                before,
                after,
                addresses: t.addresses,
                share: t.addresses as f64 / total.max(1) as f64,
                countries,
                examples: (t.examples.iter().take(EXAMPLES))
                    .map(|&(size, first)| network(family, first, size))
                    .collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.addresses.cmp(&a.addresses).then(a.before.cmp(&b.before)));
    out
}
