//! `geosteer diff OLD NEW`: what a policy change does to clients, for review before it
//! ships. Both sides are loaded and built as `check` builds them (every node up unless the
//! policy says otherwise; `--down` takes nodes of NEW out, a what-if from the command line),
//! and for every steered name the census (`answer::census`) says which share of the
//! located IPv4 space, and apart from it of the IPv6 space (counted in /64s), moves from
//! which node to which, with countries and networks to try; `answers` what else changes in
//! the answers of clients whose first node stays (other positions, addresses, TTLs,
//! fail-closed, carrier lines); and `policy` what changes how names fail over and what the
//! zone serves besides (answer sizes, `all_down`, rules and fallbacks, nodes' tiers, checks
//! and capacity, static records, SOA, NS).
//! A query-log sample, when given, weighs the same moves by real queries. Fences are
//! compared too: which nodes a fence newly allows or forbids, which places it gains or
//! loses.
//!
//! Exit status, for CI pipelines: 0 nothing any client gets or how it fails over changes, 1
//! something does, 2 the comparison could not be made (a policy or database that does not
//! load).

mod answers;
mod policy;

pub use answers::AnswerChange;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::answer::Snapshot;
use crate::answer::census::{Move, Side, destination, moves};
use crate::loader::{self, Loaded, Sources};
use crate::net::Family;
use crate::policy::{SteeredName, Zone};
use crate::steer::{self, Availability};

/// What to compare.
#[derive(Debug, Clone)]
pub struct DiffRequest {
    /// The policy before (file or directory).
    pub old: PathBuf,
    /// The policy after (the same as `old` for a what-if).
    pub new: PathBuf,
    /// GeoIP database(s), the same for both sides.
    pub geo: Vec<PathBuf>,
    /// Nodes taken out of NEW (their checks fail).
    pub down: Vec<String>,
    /// A query log (geosteer's sampled query lines, text or JSON, or one address per line).
    pub queries: Option<PathBuf>,
}

/// The changes of one steered name.
#[derive(Debug, Clone, Serialize)]
pub struct NameDiff {
    /// The name.
    pub name: String,
    /// `changed`, `added` (only in NEW) or `removed` (only in OLD).
    pub status: &'static str,
    /// Share of the located IPv4 space whose first answer changes.
    pub moved_share: f64,
    /// Moves by IPv4 address space, largest first.
    pub moves: Vec<Move>,
    /// Share of the located IPv6 space (in /64s) whose first answer changes.
    pub moved_share_v6: f64,
    /// Moves by IPv6 space, largest first.
    pub moves_v6: Vec<Move>,
    /// Moves by the query sample, when one is given.
    pub query_moves: Option<QueryMoves>,
    /// Fence changes in words.
    pub fences: Vec<String>,
    /// Answers that change while the first node stays, by IPv4 space, largest first.
    pub answers: Vec<AnswerChange>,
    /// The same by IPv6 space.
    pub answers_v6: Vec<AnswerChange>,
    /// Settings that change how the name answers and fails over, in words.
    pub policy: Vec<String>,
}

impl NameDiff {
    /// A name only one side has: everyone moves (`removed`) or no one did before (`added`).
    fn whole(name: &str, status: &'static str) -> NameDiff {
        let share = if status == "removed" { 1.0 } else { 0.0 };
        NameDiff {
            name: name.to_string(),
            status,
            moved_share: share,
            moves: Vec::new(),
            moved_share_v6: share,
            moves_v6: Vec::new(),
            query_moves: None,
            fences: Vec::new(),
            answers: Vec::new(),
            answers_v6: Vec::new(),
            policy: Vec::new(),
        }
    }
}

/// The changes of one zone besides its steered names' answers.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneDiff {
    /// The zone's origin.
    pub zone: String,
    /// `changed`, `added` or `removed`.
    pub status: &'static str,
    /// Its nodes', static records', SOA's, NS's and quorum's changes, in words.
    pub changes: Vec<String>,
}

/// Moves weighted by sampled queries.
#[derive(Debug, Clone, Serialize)]
pub struct QueryMoves {
    /// Queries in the sample for this name.
    pub queries: u64,
    /// Share of them whose first answer changes.
    pub moved_share: f64,
    /// (from, to, queries), largest first.
    pub moves: Vec<(String, String, u64)>,
    /// Queries whose first node stays but whose answer changes otherwise (other
    /// positions, addresses, TTLs, fail-closed, carrier lines).
    pub answer_changes: u64,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Steered names that change (unchanged ones are left out).
    pub names: Vec<NameDiff>,
    /// Steered names compared.
    pub compared: usize,
    /// Zones whose nodes, records or authority change.
    pub zones: Vec<ZoneDiff>,
}

impl Diff {
    /// Whether anything a client gets, or how it fails over, changes.
    pub fn changed(&self) -> bool {
        !self.names.is_empty() || !self.zones.is_empty()
    }

    /// The comparison for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if !self.changed() {
            out += &format!(
                "nothing changes: no client moves, no answer or failover setting changes ({} steered names compared)\n",
                self.compared
            );
            return out;
        }
        for zone in &self.zones {
            out += &format!("zone {}: {}\n", zone.zone, zone.status);
            for change in &zone.changes {
                out += &format!("  {change}\n");
            }
        }
        for name in &self.names {
            match name.status {
                "added" => out += &format!("{}: new steered name\n", name.name),
                "removed" => out += &format!("{}: steered name removed\n", name.name),
                _ if name.moves.is_empty() => out += &format!("{}:\n", name.name),
                _ => {
                    out += &format!(
                        "{}: {} of clients move (by located IPv4 address space)\n",
                        name.name,
                        percent(name.moved_share)
                    );
                }
            }
            out += &moves_text(&name.moves, "  ");
            if !name.moves_v6.is_empty() {
                out += &format!(
                    "  IPv6: {} of the located IPv6 space moves (counted as on the map)\n",
                    percent(name.moved_share_v6)
                );
                out += &moves_text(&name.moves_v6, "    ");
            }
            if let Some(q) = &name.query_moves {
                out += &format!(
                    "  by the query sample: {} of {} queries move\n",
                    percent(q.moved_share),
                    q.queries
                );
                for (from, to, n) in &q.moves {
                    out += &format!("    {from} -> {to}: {n} queries\n");
                }
                if q.answer_changes > 0 {
                    out += &format!(
                        "    and {} queries whose first node stays get another answer\n",
                        q.answer_changes
                    );
                }
            }
            for fence in &name.fences {
                out += &format!("  {fence}\n");
            }
            for (family, changes) in [("", &name.answers), ("IPv6 ", &name.answers_v6)] {
                let (shown, tiny) = visible(changes, |c| c.share);
                for c in shown {
                    out += &format!(
                        "  {family}{} change for {} of clients whose first node stays: {} → {}{}; e.g. {}\n",
                        c.kind,
                        percent(c.share),
                        c.before,
                        c.after,
                        countries_text(&c.countries, c.addresses),
                        c.examples.join(", ")
                    );
                }
                out += &tiny;
            }
            for change in &name.policy {
                out += &format!("  {change}\n");
            }
        }
        out
    }
}

/// The countries of a change, most first, as shares of it; those under 0.1 % left out.
fn countries_text(countries: &[(String, u64)], total: u64) -> String {
    let shown: Vec<String> = countries
        .iter()
        .filter(|(_, n)| n.saturating_mul(1000) >= total.max(1))
        .take(6)
        .map(|(c, n)| format!("{c} {}", percent(*n as f64 / total.max(1) as f64)))
        .collect();
    if shown.is_empty() {
        return String::new();
    }
    let more = if countries.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    format!(" ({}{more})", shown.join(", "))
}

/// One line per move: from, to, share, countries and example networks.
fn moves_text(moves: &[Move], indent: &str) -> String {
    let mut out = String::new();
    let (shown, tiny) = visible(moves, |m| m.share);
    for m in shown {
        out += &format!(
            "{indent}{} -> {}: {}{}; e.g. {}\n",
            m.from,
            m.to,
            percent(m.share),
            countries_text(&m.countries, m.addresses),
            m.examples.join(", ")
        );
    }
    out + &tiny.replace("  ", indent)
}

/// Shares under this are summed up in one line, not listed (`--format json` lists them).
const TINY_SHARE: f64 = 0.000_01;

/// The rows worth a line each, and one line for the rest (empty when there is none).
fn visible<T>(rows: &[T], share: impl Fn(&T) -> f64) -> (Vec<&T>, String) {
    let (shown, tiny): (Vec<&T>, Vec<&T>) = rows.iter().partition(|r| share(r) >= TINY_SHARE);
    let rest = if tiny.is_empty() {
        String::new()
    } else {
        format!(
            "  and {} more, each under 0.001 % of clients (see --format json)\n",
            tiny.len()
        )
    };
    (shown, rest)
}

fn percent(share: f64) -> String {
    if share == 0.0 {
        "0 %".into()
    } else if share < 0.001 {
        format!("{:.3} %", share * 100.0)
    } else {
        format!("{:.1} %", share * 100.0)
    }
}

/// One side loaded and built.
struct Built {
    zones: Vec<Zone>,
    snapshot: Snapshot,
}

/// Why two policies could not be compared; each message is written for an operator.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A side's policy or databases do not load.
    #[error(transparent)]
    Load(#[from] crate::loader::LoadError),
    /// `--down` names a node neither side has.
    #[error("--down {node}: no such node in {}", zones.display())]
    NoSuchNode {
        /// The node named.
        node: String,
        /// The policy it was looked for in.
        zones: PathBuf,
    },
    /// The query log cannot be read, is too large, or holds no client address.
    #[error("{}: {why}", path.display())]
    QueryLog {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// The largest query log read for `--queries`.
const MAX_QUERY_LOG_BYTES: u64 = 256 << 20;

fn build_side(zones_path: &Path, geo: &[PathBuf], down: &[String]) -> Result<Built, DiffError> {
    let sources = Sources {
        zones: zones_path.to_path_buf(),
        geo: geo.to_vec(),
        asn: None,
    };
    let Loaded { zones, geo, .. } = loader::load(&sources)?;
    let mut availability = steer::policy_availability(&zones);
    for name in down {
        let mut found = false;
        for (zi, zone) in zones.iter().enumerate() {
            if let Some(ni) = zone.nodes.iter().position(|n| &n.name == name) {
                availability[zi][ni] = Availability::HealthDown;
                found = true;
            }
        }
        if !found {
            return Err(DiffError::NoSuchNode {
                node: name.clone(),
                zones: zones_path.to_path_buf(),
            });
        }
    }
    let snapshot = crate::service::build_unmeasured(&zones, geo, &availability);
    Ok(Built { zones, snapshot })
}

/// Every steered name of a side: (name, zone index, steered index).
fn steered_names(zones: &[Zone]) -> Vec<(String, usize, usize)> {
    zones
        .iter()
        .enumerate()
        .flat_map(|(zi, z)| {
            z.steered
                .iter()
                .enumerate()
                .map(move |(si, s)| (s.name.to_string().to_ascii_lowercase(), zi, si))
        })
        .collect()
}

fn side<'a>(built: &'a Built, zi: usize, si: usize) -> Option<Side<'a>> {
    let table = crate::answer::census::steered_table(&built.snapshot, zi, &built.zones[..], si)?;
    Some(Side {
        table,
        geo: &built.snapshot.geo,
        steered: &built.zones[zi].steered[si],
    })
}

/// Fence changes of one name, in words.
fn fence_changes(
    old: &SteeredName,
    old_zone: &Zone,
    new: &SteeredName,
    new_zone: &Zone,
) -> Vec<String> {
    let allowed =
        |name: &SteeredName, zone: &Zone, fence: &crate::geo::GeoSet| -> BTreeSet<String> {
            name.candidate_nodes()
                .into_iter()
                .filter_map(|id| zone.nodes.get(id))
                .filter(|n| fence.contains(&n.geo))
                .map(|n| n.name.clone())
                .collect()
        };
    let members = |fence: &crate::geo::GeoSet| -> BTreeSet<String> {
        fence.members.iter().map(ToString::to_string).collect()
    };
    let mut out = Vec::new();
    let names: BTreeSet<&String> = old
        .fences
        .iter()
        .chain(&new.fences)
        .map(|f| &f.name)
        .collect();
    for fence_name in names {
        let before = old.fences.iter().find(|f| &f.name == fence_name);
        let after = new.fences.iter().find(|f| &f.name == fence_name);
        match (before, after) {
            (None, Some(f)) => out.push(format!(
                "fence {fence_name} added: clients in it may only get {}",
                list(&allowed(new, new_zone, f))
            )),
            (Some(_), None) => out.push(format!(
                "fence {fence_name} removed: its clients may now get nodes outside it"
            )),
            (Some(b), Some(a)) => {
                let (was, now) = (allowed(old, old_zone, b), allowed(new, new_zone, a));
                let allows: BTreeSet<_> = now.difference(&was).cloned().collect();
                let forbids: BTreeSet<_> = was.difference(&now).cloned().collect();
                if !allows.is_empty() {
                    out.push(format!("fence {fence_name} newly allows {}", list(&allows)));
                }
                if !forbids.is_empty() {
                    out.push(format!(
                        "fence {fence_name} newly forbids {}",
                        list(&forbids)
                    ));
                }
                let (had, has) = (members(b), members(a));
                let gained: BTreeSet<_> = has.difference(&had).cloned().collect();
                let lost: BTreeSet<_> = had.difference(&has).cloned().collect();
                if !gained.is_empty() {
                    out.push(format!(
                        "fence {fence_name} now also covers {}",
                        list(&gained)
                    ));
                }
                if !lost.is_empty() {
                    out.push(format!(
                        "fence {fence_name} no longer covers {}",
                        list(&lost)
                    ));
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn list(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "no node".into()
    } else {
        items.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The client addresses of a query log: geosteer's sampled query lines (text or JSON: the
/// ECS address when there is one, else the client's) or one address per line, with the
/// query name when the line has one.
pub fn sample_addresses(text: &str) -> Vec<(Option<String>, IpAddr)> {
    fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
        for pattern in [format!("\"{name}\":\""), format!("{name}=")] {
            if let Some(at) = line.find(&pattern) {
                let rest = &line[at + pattern.len()..];
                let end = rest
                    .find(|c: char| c == '"' || c.is_whitespace())
                    .unwrap_or(rest.len());
                let value = &rest[..end];
                if !value.is_empty() {
                    return Some(value);
                }
            }
        }
        None
    }
    let mut out = Vec::new();
    for line in text.lines().take(10_000_000) {
        let line = line.trim();
        if let Ok(ip) = line.parse::<IpAddr>() {
            out.push((None, ip));
            continue;
        }
        let address = field(line, "ecs")
            .and_then(|e| e.split('/').next())
            .and_then(|a| a.parse::<IpAddr>().ok())
            .or_else(|| {
                field(line, "client").and_then(|c| {
                    c.parse::<std::net::SocketAddr>()
                        .map(|s| s.ip())
                        .or_else(|_| c.parse::<IpAddr>())
                        .ok()
                })
            });
        if let Some(ip) = address {
            let qname = field(line, "qname").map(|q| q.to_ascii_lowercase());
            out.push((qname, ip));
        }
    }
    out
}

fn query_moves(
    before: Side<'_>,
    before_zone: &Zone,
    after: Side<'_>,
    after_zone: &Zone,
    name: &str,
    sample: &[(Option<String>, IpAddr)],
) -> QueryMoves {
    let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
    let mut queries = 0u64;
    let mut moved = 0u64;
    let mut answer_changes = 0u64;
    for (qname, ip) in sample {
        if qname
            .as_deref()
            .is_some_and(|q| q.trim_end_matches('.') != name.trim_end_matches('.'))
        {
            continue;
        }
        queries += 1;
        let from = destination(before, *ip).name(&before_zone.nodes);
        let to = destination(after, *ip).name(&after_zone.nodes);
        if from == to
            && answers::answer_changes_for(
                before,
                &before_zone.nodes,
                after,
                &after_zone.nodes,
                *ip,
            )
        {
            answer_changes += 1;
        }
        if from != to {
            moved += 1;
            *counts
                .entry((from.to_string(), to.to_string()))
                .or_default() += 1;
        }
    }
    let mut moves: Vec<(String, String, u64)> =
        counts.into_iter().map(|((f, t), n)| (f, t, n)).collect();
    moves.sort_by_key(|m| std::cmp::Reverse(m.2));
    QueryMoves {
        queries,
        moved_share: moved as f64 / queries.max(1) as f64,
        moves,
        answer_changes,
    }
}

/// Compares two policies (or one with nodes down).
pub fn diff(request: &DiffRequest) -> Result<Diff, DiffError> {
    let old = build_side(&request.old, &request.geo, &[])?;
    let new = build_side(&request.new, &request.geo, &request.down)?;
    let sample = match &request.queries {
        Some(path) => {
            let log = |why: String| DiffError::QueryLog {
                path: path.clone(),
                why,
            };
            let text = crate::policy::read_capped(path, MAX_QUERY_LOG_BYTES, "the query log")
                .map_err(log)?;
            let sample = sample_addresses(&text);
            if sample.is_empty() {
                return Err(log(
                    "no client address in the query log (one address per line, or lines with \
                     client= or ecs=, as geosteer's query log writes them)"
                        .into(),
                ));
            }
            Some(sample)
        }
        None => None,
    };
    let old_names = steered_names(&old.zones);
    let new_names = steered_names(&new.zones);
    let mut names = Vec::new();
    for (name, zi, si) in &old_names {
        let Some((_, nzi, nsi)) = new_names.iter().find(|(n, _, _)| n == name) else {
            names.push(NameDiff::whole(name, "removed"));
            continue;
        };
        let (Some(before), Some(after)) = (side(&old, *zi, *si), side(&new, *nzi, *nsi)) else {
            continue;
        };
        let (old_zone, new_zone) = (&old.zones[*zi], &new.zones[*nzi]);
        let (moved, _) = moves(before, &old_zone.nodes, after, &new_zone.nodes, Family::V4);
        let (moved_v6, _) = moves(before, &old_zone.nodes, after, &new_zone.nodes, Family::V6);
        let fences = fence_changes(
            &old_zone.steered[*si],
            old_zone,
            &new_zone.steered[*nsi],
            new_zone,
        );
        let query = sample
            .as_deref()
            .map(|s| query_moves(before, old_zone, after, new_zone, name, s));
        let query_changed = query
            .as_ref()
            .is_some_and(|q| !q.moves.is_empty() || q.answer_changes > 0);
        let answers =
            answers::answer_changes(before, &old_zone.nodes, after, &new_zone.nodes, Family::V4);
        let answers_v6 =
            answers::answer_changes(before, &old_zone.nodes, after, &new_zone.nodes, Family::V6);
        let policy = policy::name_changes(
            &old_zone.steered[*si],
            old_zone,
            &new_zone.steered[*nsi],
            new_zone,
        );
        if moved.is_empty()
            && moved_v6.is_empty()
            && fences.is_empty()
            && !query_changed
            && answers.is_empty()
            && answers_v6.is_empty()
            && policy.is_empty()
        {
            continue;
        }
        names.push(NameDiff {
            name: name.clone(),
            status: "changed",
            moved_share: moved.iter().map(|m| m.share).sum(),
            moves: moved,
            moved_share_v6: moved_v6.iter().map(|m| m.share).sum(),
            moves_v6: moved_v6,
            query_moves: query,
            fences,
            answers,
            answers_v6,
            policy,
        });
    }
    for (name, _, _) in &new_names {
        if !old_names.iter().any(|(n, _, _)| n == name) {
            names.push(NameDiff::whole(name, "added"));
        }
    }
    Ok(Diff {
        names,
        compared: old_names.len().max(new_names.len()),
        zones: zone_diffs(&old.zones, &new.zones),
    })
}

/// Every zone's changes besides its steered names' answers.
fn zone_diffs(old: &[Zone], new: &[Zone]) -> Vec<ZoneDiff> {
    let mut out = Vec::new();
    for zone in old {
        let (status, changes) = match new.iter().find(|z| z.origin == zone.origin) {
            Some(after) => ("changed", policy::zone_changes(zone, after)),
            None => ("removed", Vec::new()),
        };
        if status == "removed" || !changes.is_empty() {
            out.push(ZoneDiff {
                zone: zone.origin.to_string(),
                status,
                changes,
            });
        }
    }
    for zone in new
        .iter()
        .filter(|z| !old.iter().any(|o| o.origin == z.origin))
    {
        out.push(ZoneDiff {
            zone: zone.origin.to_string(),
            status: "added",
            changes: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_log_lines_give_the_ecs_address_else_the_client() {
        let text = "2026-12-02T10:00:00Z INFO query client=10.0.0.1:5353 transport=Udp ecs=126.0.0.0/24/16 qname=ingest.live.example.net. qtype=A\n\
                    {\"fields\":{\"message\":\"query\",\"client\":\"192.0.2.7:40000\",\"ecs\":\"\",\"qname\":\"INGEST.live.example.net.\"}}\n\
                    198.51.100.9\n\
                    something else\n";
        let got = sample_addresses(text);
        assert_eq!(
            got,
            vec![
                (
                    Some("ingest.live.example.net.".into()),
                    "126.0.0.0".parse().unwrap()
                ),
                (
                    Some("ingest.live.example.net.".into()),
                    "192.0.2.7".parse().unwrap()
                ),
                (None, "198.51.100.9".parse().unwrap()),
            ]
        );
    }
}
