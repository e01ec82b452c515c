//! Places in rules: geo codes, the policy's `geo_sets` and well-known sets, and fences.

use std::collections::HashMap;

use serde_saphyr::{Location, Spanned};

use super::*;
use crate::geo::{CountryTable, GeoCode, GeoSet, WELL_KNOWN, well_known};

/// What a name in a `geos` list may be: a geo code, one of the policy's `geo_sets`, or a
/// well-known set (`eu-27`, `eea`).
pub(super) struct GeoNames<'a> {
    pub(super) countries: &'a CountryTable,
    /// The policy's sets, by lowercase name.
    pub(super) sets: HashMap<String, GeoSet>,
}

/// A resolved name of a `geos` list.
pub(super) enum GeoName {
    Code(GeoCode),
    Set(GeoSet),
}

impl GeoNames<'_> {
    pub(super) fn resolve(&self, text: &str) -> Result<GeoName, String> {
        if let Some(set) = self.sets.get(&text.to_ascii_lowercase()) {
            return Ok(GeoName::Set(set.clone()));
        }
        if let Some(set) = well_known(text, self.countries) {
            return Ok(GeoName::Set(set));
        }
        GeoCode::parse(text, self.countries)
            .map(GeoName::Code)
            .map_err(|e| {
                let mut sets: Vec<&str> = WELL_KNOWN.iter().map(|s| s.name).collect();
                sets.extend(self.sets.keys().map(String::as_str));
                sets.sort_unstable();
                format!("{e} (nor is '{text}' a geo set: {})", sets.join(", "))
            })
    }
}

/// The policy's `geo_sets`: each a union of geo codes and well-known sets, under a name that
/// is no geo code and no well-known set's.
pub(super) fn validate_geo_sets(
    diag: &mut Diagnostics,
    raw: &RawZone,
    countries: &CountryTable,
) -> HashMap<String, GeoSet> {
    let mut sets = HashMap::new();
    for (name, members) in &raw.geo_sets {
        let context = format!("geo_sets: '{name}'");
        let lower = name.name.to_ascii_lowercase();
        if GeoCode::parse(&name.name, countries).is_ok() {
            diag.error(
                name.at,
                format!("{context}: is a geo code; give the set another name"),
            );
            continue;
        }
        if well_known(&name.name, countries).is_some() {
            diag.error(
                name.at,
                format!(
                    "{context}: is a set geosteer ships; use it by that name, or give yours another"
                ),
            );
            continue;
        }
        let mut union = Vec::new();
        for member in &members.value {
            if let Some(set) = well_known(&member.value, countries) {
                union.extend(set.members);
                continue;
            }
            match GeoCode::parse(&member.value, countries) {
                Ok(code) => union.push(code),
                Err(e) => diag.error(at(member), format!("{context}: {e}")),
            }
        }
        if union.is_empty() {
            diag.error(at(members), format!("{context}: is empty"));
            continue;
        }
        sets.insert(
            lower.clone(),
            GeoSet {
                name: lower,
                members: union,
            },
        );
    }
    sets
}

/// A rule's `geos`, resolved: the codes, the names as written (for messages), and whether
/// every one resolved.
pub(super) struct RuleGeos {
    pub codes: Vec<GeoCode>,
    written: Vec<String>,
    ok: bool,
}

/// Resolves a rule's `geos`, reporting names that are no geo code and no set.
pub(super) fn rule_geos(
    diag: &mut Diagnostics,
    names: &GeoNames,
    rule: &RawRule,
    context: &str,
) -> RuleGeos {
    let mut geos = RuleGeos {
        codes: Vec::new(),
        written: Vec::new(),
        ok: true,
    };
    for g in &rule.geos {
        match names.resolve(&g.value) {
            Ok(GeoName::Code(code)) => {
                geos.written.push(code.to_string());
                geos.codes.push(code);
            }
            Ok(GeoName::Set(set)) => {
                geos.written.push(set.name);
                geos.codes.extend(set.members);
            }
            Err(e) => {
                diag.error(at(g), format!("{context}: geos: {e}"));
                geos.ok = false;
            }
        }
    }
    geos
}

/// A rule that says `fence: true`.
pub(super) struct FencedRule<'a> {
    pub index: usize,
    pub flag: &'a Spanned<bool>,
    pub geos: &'a RuleGeos,
    pub candidates: Option<&'a Candidates>,
    pub context: &'a str,
}

/// A steered name's fences, and what every rule reaches, to check fences against.
#[derive(Default)]
pub(super) struct Fences {
    /// The fences, in rule order.
    pub sets: Vec<GeoSet>,
    /// (rule, index of its fence in `sets`).
    fenced: Vec<(usize, usize)>,
    /// (rule, where it is, its geos, its candidates).
    reached: Vec<(usize, Location, Vec<GeoCode>, Candidates)>,
}

impl Fences {
    /// A fenced rule: the union of its geos, whose nodes must all be inside it (and at
    /// least one, unless some node has errors of its own).
    pub(super) fn add(
        &mut self,
        diag: &mut Diagnostics,
        nodes: &[Option<Node>],
        rule: FencedRule,
        no_geos_written: bool,
    ) {
        let FencedRule {
            index,
            flag,
            geos,
            candidates,
            context,
        } = rule;
        if no_geos_written {
            diag.error(at(flag), format!("{context}: a fence needs `geos`: it keeps clients in those geos on nodes inside them"));
        }
        // A fence is the union of the rule's geos: any node inside may serve any client
        // inside.
        let fence = GeoSet {
            name: geos.written.join("+"),
            members: geos.codes.clone(),
        };
        // A geo in error was reported; judging the fence without it would mislead.
        if let Some(c) = candidates.filter(|_| geos.ok) {
            // Nodes with errors of their own are left out of this check.
            let valid: Vec<&Node> = c
                .nodes
                .iter()
                .filter_map(|(id, _)| nodes.get(*id).and_then(Option::as_ref))
                .collect();
            let all_valid = valid.len() == c.nodes.len();
            let inside = valid.iter().filter(|n| fence.contains(&n.geo)).count();
            let outside: Vec<String> = valid
                .iter()
                .filter(|n| !fence.contains(&n.geo))
                .map(|n| format!("{} ({})", n.name, n.geo))
                .collect();
            if !outside.is_empty() {
                diag.error(at(flag), format!("{context}: fenced to {fence} but its nodes include {} outside it, which the fence would never answer", outside.join(", ")));
            } else if inside == 0 && all_valid && !geos.codes.is_empty() {
                diag.error(
                    at(flag),
                    format!("{context}: fenced to {fence} but has no node inside it"),
                );
            }
        }
        if !geos.codes.is_empty() && geos.ok {
            self.fenced.push((index, self.sets.len()));
            self.sets.push(fence);
        }
    }

    /// What rule `index` reaches: clients in `geos` go to `candidates`.
    pub(super) fn reach(
        &mut self,
        index: usize,
        at: Location,
        geos: &[GeoCode],
        candidates: &Candidates,
    ) {
        self.reached
            .push((index, at, geos.to_vec(), candidates.clone()));
    }

    /// A fence can never be satisfied for clients an earlier rule takes to nodes all
    /// outside it: they would get no answer at all.
    pub(super) fn check_earlier_rules(
        &self,
        diag: &mut Diagnostics,
        nodes: &[Option<Node>],
        context: &str,
    ) {
        for &(fence_rule, fence) in &self.fenced {
            let fence = &self.sets[fence];
            for (rule, location, geos, candidates) in &self.reached {
                if *rule >= fence_rule {
                    continue;
                }
                let Some(overlap) = geos.iter().find(|g| fence.overlaps(g)) else {
                    continue;
                };
                let inside = candidates.nodes.iter().any(|(id, _)| {
                    nodes
                        .get(*id)
                        .and_then(Option::as_ref)
                        .is_none_or(|n| fence.contains(&n.geo))
                });
                if !inside {
                    diag.error(*location, format!("{context}: rule {}: takes clients in {overlap}, inside the fence {fence} of rule {}, to nodes all outside that fence, so they would never get an answer; give the rule nodes inside {fence}, or narrow its geos", rule + 1, fence_rule + 1));
                }
            }
        }
    }
}
