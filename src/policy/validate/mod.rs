//! Meaning checks: raw policy in, typed `Zone` out, or every error found, each located.
//!
//! Validation never stops at the first problem: an operator fixing a file wants the whole list.
//! Each message names the file, line and column, the path to the offending value
//! (`steer 'ingest': rule 2`), and what was expected.

use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::error::{PolicyError, PolicyErrors};
use super::model::*;
use super::raw::*;
use crate::geo::CountryTable;

mod check;
mod fences;
mod nodes;
mod records;
mod steered;

use check::*;
use fences::*;
use nodes::*;
use records::*;
use steered::*;

/// Default TTL of static records when the file sets none.
pub const DEFAULT_ZONE_TTL: u32 = 300;
/// Default TTL of steered answers: short, so steering changes reach clients within seconds.
pub const DEFAULT_STEER_TTL: u32 = 30;
/// Default number of addresses in a steered answer.
pub const DEFAULT_ANSWERS: u32 = 2;
/// Most addresses a steered answer may hold per family: 64 A records already take most of
/// a 1232-byte EDNS response, and every pick sizes its buffers by this number.
pub const MAX_ANSWERS: u32 = 64;
/// Default time between health checks. With `DEFAULT_RECHECK` and `DEFAULT_FALL`, a refused
/// connection takes a node out in at most interval + 2 × recheck (0.6 s); gdnsd's defaults
/// take 100 s or more, Route 53's 10–30 s × 3.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);
/// Default time between confirming checks after a first failure (NS1-style rapid recheck).
pub const DEFAULT_RECHECK: Duration = Duration::from_millis(50);
/// Default upper bound on one probe; the runner shortens it to the measured round-trip time
/// plus margin (as TCP's retransmission timer does), never below `MIN_TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive failures that take a node down: one lost probe never does.
pub const DEFAULT_FALL: u32 = 3;
/// Consecutive successes that bring a node back.
pub const DEFAULT_RISE: u32 = 2;

/// Collects located errors for one file.
struct Diagnostics<'a> {
    path: &'a Path,
    errors: Vec<PolicyError>,
}

impl Diagnostics<'_> {
    /// An error in another file than the policy (a records file).
    fn error_in(&mut self, path: &Path, line: u64, message: impl Into<String>) {
        self.errors.push(PolicyError {
            path: path.to_path_buf(),
            line,
            column: u64::from(line > 0),
            message: message.into(),
        });
    }

    fn error(&mut self, at: Location, message: impl Into<String>) {
        self.errors.push(PolicyError {
            path: self.path.to_path_buf(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        });
    }
}

fn at<T>(spanned: &Spanned<T>) -> Location {
    spanned.referenced
}

/// Validates one parsed file. `derived_serial` is used when the file sets no SOA serial.
pub fn validate(path: &Path, raw: RawZone, derived_serial: u32) -> Result<Zone, PolicyErrors> {
    let mut diag = Diagnostics {
        path,
        errors: Vec::new(),
    };
    let countries = CountryTable::shipped();

    let origin = match DomainName::parse(&raw.zone.value) {
        Ok(name) if !name.labels().is_empty() => name,
        Ok(_) => {
            diag.error(
                at(&raw.zone),
                "zone: the root zone cannot be served; expected a name like live.example.net",
            );
            DomainName::root()
        }
        Err(e) => {
            diag.error(at(&raw.zone), format!("zone: {e}"));
            DomainName::root()
        }
    };
    let zone_loc = at(&raw.zone);
    let default_ttl = raw.ttl.as_ref().map_or(DEFAULT_ZONE_TTL, |t| t.value);

    let soa = match &raw.soa {
        None => {
            diag.error(
                zone_loc,
                "no SOA: add `soa: {primary: ns1.<zone>., contact: hostmaster.<zone>., minimum: 60}`",
            );
            None
        }
        Some(soa) => {
            let primary = absolute_name(&mut diag, &soa.value.primary, "soa: primary");
            let contact = absolute_name(&mut diag, &soa.value.contact, "soa: contact");
            let minimum = soa.value.minimum.as_ref().map_or(60, |m| m.value);
            match (primary, contact) {
                (Some(primary), Some(contact)) => Some(Soa {
                    primary,
                    contact,
                    serial: soa.value.serial.unwrap_or(derived_serial),
                    refresh: soa.value.refresh.unwrap_or(3600),
                    retry: soa.value.retry.unwrap_or(600),
                    expire: soa.value.expire.unwrap_or(1_209_600),
                    minimum,
                    ttl: soa.value.ttl.unwrap_or(default_ttl),
                }),
                _ => None,
            }
        }
    };

    if raw.ns.is_empty() {
        diag.error(zone_loc, "no NS set: add `ns: [ns1.<zone>., ns2.<zone>.]` naming the servers the parent delegates to");
    }
    let ns: Vec<DomainName> = raw
        .ns
        .iter()
        .filter_map(|n| absolute_name(&mut diag, n, "ns"))
        .collect();

    let records = validate_records(&mut diag, &origin, &raw, default_ttl);
    let (nodes, node_index) = validate_nodes(&mut diag, &raw, countries);
    validate_zone_capacity(&mut diag, &raw);
    if let Some(check) = &raw.check {
        // Zone defaults are checked on their own too, so a mistake is reported once, here,
        // and not for every node that inherits it.
        validate_duration_fields(&mut diag, &check.value, "check");
        refuse_other_kinds_fields(&mut diag, &check.value, at(check), "check");
    }
    let geo_names = GeoNames {
        countries,
        sets: validate_geo_sets(&mut diag, &raw, countries),
    };
    let zone_names = ZoneNames::new(&origin, &records, &nodes, &node_index, &geo_names);
    let steered = validate_steered(&mut diag, &raw, &zone_names);

    let nodes: Vec<Node> = nodes.into_iter().flatten().collect();
    let health_quorum = match raw.health_quorum.as_ref() {
        None => Quorum::default(),
        Some(q) => match &q.value {
            RawQuorum::Word(w) if w.eq_ignore_ascii_case("majority") => Quorum::Majority,
            RawQuorum::Word(w) if w.eq_ignore_ascii_case("any") => Quorum::Any,
            RawQuorum::Count(n) if *n >= 1 && *n <= 1000 => Quorum::AtLeast(*n as u32),
            other => {
                let written = match other {
                    RawQuorum::Word(w) => w.clone(),
                    RawQuorum::Count(n) => n.to_string(),
                };
                diag.error(
                    at(q),
                    format!("health_quorum: '{written}' is not `majority`, `any` or a count from 1 (vantage points that must see a node down)"),
                );
                Quorum::default()
            }
        },
    };
    let dnssec = raw
        .dnssec
        .as_ref()
        .and_then(|d| validate_dnssec(&mut diag, &origin, d));
    match soa {
        Some(soa) if diag.errors.is_empty() => Ok(Zone {
            source: path.to_path_buf(),
            origin,
            default_ttl,
            soa,
            ns,
            records,
            nodes,
            steered,
            // Filled in by the loader, which has the file's text.
            derived_serial_of: None,
            health_quorum,
            dnssec,
        }),
        _ => Err(PolicyErrors(diag.errors)),
    }
}

/// Longest signature lifetime accepted: 90 days (a replayed answer stays valid that long).
const MAX_SIGNATURE_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Shortest: ten seconds (signatures are made again with a quarter left; anything this
/// short is for tests and drills).
const MIN_SIGNATURE_LIFETIME: Duration = Duration::from_secs(10);

/// `dnssec: {keys: DIR}`: the zone's keys read from DIR (relative to the policy file), at
/// least one key-signing key that signs among them.
fn validate_dnssec(
    diag: &mut Diagnostics,
    origin: &DomainName,
    raw: &Spanned<RawDnssec>,
) -> Option<Signing> {
    let lifetime = match &raw.value.signature_lifetime {
        None => Signing::DEFAULT_LIFETIME,
        Some(written) => match &written.value.0 {
            Ok(d) if (MIN_SIGNATURE_LIFETIME..=MAX_SIGNATURE_LIFETIME).contains(d) => {
                d.as_secs() as u32
            }
            Ok(_) => {
                diag.error(
                    at(written),
                    "dnssec: signature_lifetime must be from 10s to 90d (e.g. 14d)",
                );
                return None;
            }
            Err(e) => {
                diag.error(at(written), format!("dnssec: signature_lifetime: {e}"));
                return None;
            }
        },
    };
    let keys_dir = super::zonefile::resolve(diag.path, &raw.value.keys.value);
    let keys = match crate::dnssec::load_keys(&origin.to_string(), &keys_dir) {
        Ok(keys) => keys,
        Err(e) => {
            diag.error(at(&raw.value.keys), format!("dnssec: keys: {e}"));
            return None;
        }
    };
    if !keys
        .iter()
        .any(|k| k.role == crate::dnssec::KeyRole::KeySigning && k.signs())
    {
        diag.error(
            at(&raw.value.keys),
            format!(
                "dnssec: keys: {} holds no key-signing key (flags 257) with its .private file for {origin}; make one with `geosteer dnssec keygen`",
                keys_dir.display()
            ),
        );
        return None;
    }
    Some(Signing {
        keys_dir,
        keys: std::sync::Arc::new(keys),
        lifetime,
    })
}

/// A name that must be written fully qualified (with the trailing dot), as in octoDNS.
fn absolute_name(diag: &mut Diagnostics, text: &Spanned<String>, what: &str) -> Option<DomainName> {
    if !text.value.ends_with('.') {
        diag.error(
            at(text),
            format!(
                "{what}: '{}' must be fully qualified, ending in '.'",
                text.value
            ),
        );
        return None;
    }
    match DomainName::parse(&text.value) {
        Ok(name) => Some(name),
        Err(e) => {
            diag.error(at(text), format!("{what}: {e}"));
            None
        }
    }
}
