//! Meaning checks: raw policy in, typed `Zone` out, or every error found, each located.
//!
//! Validation never stops at the first problem: an operator fixing a file wants the whole list.
//! Each message names the file, line and column, the path to the offending value
//! (`steer 'ingest': rule 2`), and what was expected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::error::{PolicyError, PolicyErrors};
use super::model::*;
use super::raw::*;
use crate::geo::{Coordinates, CountryTable, GeoCode, GeoSet, WELL_KNOWN, well_known};

use crate::net::Prefix;

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
    let steered = validate_steered(
        &mut diag,
        &origin,
        &raw,
        &records,
        &nodes,
        &node_index,
        &geo_names,
    );

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
        }),
        _ => Err(PolicyErrors(diag.errors)),
    }
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

fn validate_records(
    diag: &mut Diagnostics,
    origin: &DomainName,
    raw: &RawZone,
    default_ttl: u32,
) -> Vec<RecordSet> {
    let mut sets: Vec<RecordSet> = Vec::new();
    // (name, type) → location of the first definition, to report duplicates.
    let mut seen: HashMap<(DomainName, RecordType), Location> = HashMap::new();
    for (relative, sets_at_name) in &raw.records {
        let context = format!("records '{relative}'");
        let name = match origin.child(&relative.name) {
            Ok(name) => name,
            Err(e) => {
                diag.error(relative.at, format!("{context}: {e}"));
                continue;
            }
        };
        if let Err(message) = wildcard_placement(&relative.name) {
            diag.error(relative.at, format!("{context}: {message}"));
            continue;
        }
        for raw_set in sets_at_name.value.iter() {
            let type_loc = at(&raw_set.record_type);
            let values: Vec<&Spanned<RawValue>> = match (&raw_set.value, &raw_set.values) {
                (Some(v), None) => vec![v],
                (None, Some(vs)) if !vs.is_empty() => vs.iter().collect(),
                (Some(_), Some(_)) => {
                    diag.error(
                        type_loc,
                        format!("{context}: give either `value` or `values`, not both"),
                    );
                    continue;
                }
                _ => {
                    diag.error(type_loc, format!("{context}: no `value` or `values`"));
                    continue;
                }
            };
            let type_name = raw_set.record_type.value.to_ascii_uppercase();
            let mut data = Vec::new();
            for value in values {
                match parse_record_value(&type_name, &value.value) {
                    Ok(d) => data.push(d),
                    Err(message) => {
                        diag.error(at(value), format!("{context}: {type_name}: {message}"))
                    }
                }
            }
            let Some(record_type) = data.first().map(RecordData::record_type) else {
                if !KNOWN_TYPES.contains(&type_name.as_str()) {
                    diag.error(
                        type_loc,
                        format!(
                            "{context}: unsupported record type '{}' (expected one of {})",
                            raw_set.record_type.value,
                            KNOWN_TYPES.join(", ")
                        ),
                    );
                }
                continue;
            };
            if record_type == RecordType::CNAME && data.len() > 1 {
                diag.error(
                    type_loc,
                    format!("{context}: a CNAME has exactly one value"),
                );
            }
            if record_type == RecordType::NS && relative.name.starts_with("*.") {
                diag.error(
                    type_loc,
                    format!("{context}: a wildcard cannot delegate (RFC 4592 §4.2); list the delegated names"),
                );
                continue;
            }
            if record_type == RecordType::NS && name == *origin {
                diag.error(
                    type_loc,
                    format!("{context}: the apex NS set is written as the zone's `ns:` list"),
                );
                continue;
            }
            if record_type == RecordType::CNAME && name == *origin {
                diag.error(
                    type_loc,
                    format!("{context}: a CNAME cannot be at the zone apex"),
                );
                continue;
            }
            if let Some(first) = seen.get(&(name.clone(), record_type)) {
                diag.error(
                    type_loc,
                    format!(
                        "{context}: second {type_name} set at this name (the first is at line {})",
                        first.line()
                    ),
                );
                continue;
            }
            seen.insert((name.clone(), record_type), type_loc);
            sets.push(RecordSet {
                name: name.clone(),
                ttl: raw_set.ttl.unwrap_or(default_ttl),
                data,
            });
        }
    }
    if let Some(file) = &raw.records_file {
        records_from_file(diag, origin, file, &mut sets, &mut seen);
    }
    // CNAME exclusivity and delegation occlusion.
    let mut types_at: BTreeMap<&DomainName, Vec<RecordType>> = BTreeMap::new();
    for set in &sets {
        types_at
            .entry(&set.name)
            .or_default()
            .push(set.record_type());
    }
    let delegations: Vec<&DomainName> = sets
        .iter()
        .filter(|s| s.record_type() == RecordType::NS)
        .map(|s| &s.name)
        .collect();
    for (name, types) in &types_at {
        let loc = seen
            .iter()
            .filter(|((n, _), _)| n == *name)
            .map(|(_, l)| *l)
            .min_by_key(|l| (l.line(), l.column()))
            .unwrap_or(Location::UNKNOWN);
        if types.contains(&RecordType::CNAME) && types.len() > 1 {
            diag.error(
                loc,
                format!("records at '{name}': a CNAME cannot share its name with other records"),
            );
        }
        for cut in &delegations {
            let below = name.is_at_or_below(cut) && *name != *cut;
            let at_cut_non_ns = **name == **cut && types.iter().any(|t| *t != RecordType::NS);
            let non_glue = types
                .iter()
                .any(|t| *t != RecordType::A && *t != RecordType::AAAA);
            if (below && non_glue) || at_cut_non_ns {
                diag.error(
                    loc,
                    format!("records at '{name}': only NS and glue (A/AAAA) may be at or below the delegation '{cut}'"),
                );
            }
        }
    }
    sets
}

const KNOWN_TYPES: [&str; 8] = ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS"];

/// Parses one value of a record set according to its type.
fn parse_record_value(type_name: &str, value: &RawValue) -> Result<RecordData, String> {
    let text = |expected: &str| match value {
        RawValue::Text(t) => Ok(t.clone()),
        RawValue::Number(n) => Ok(n.to_string()),
        RawValue::Fields(_) => Err(format!("expected {expected}, got a map")),
    };
    let target = |t: String| -> Result<DomainName, String> {
        if !t.ends_with('.') {
            return Err(format!("'{t}' must be fully qualified, ending in '.'"));
        }
        DomainName::parse(&t).map_err(|e| e.to_string())
    };
    match type_name {
        "A" => text("an IPv4 address")?
            .parse()
            .map(RecordData::A)
            .map_err(|_| {
                format!(
                    "expected an IPv4 address, got '{}'",
                    text("").unwrap_or_default()
                )
            }),
        "AAAA" => text("an IPv6 address")?
            .parse()
            .map(RecordData::Aaaa)
            .map_err(|_| {
                format!(
                    "expected an IPv6 address, got '{}'",
                    text("").unwrap_or_default()
                )
            }),
        "CNAME" => target(text("a target name")?).map(RecordData::Cname),
        "NS" => target(text("a name server name")?).map(RecordData::Ns),
        "TXT" => {
            let t = text("a text string")?;
            let chunks: Vec<Vec<u8>> = if t.is_empty() {
                vec![Vec::new()]
            } else {
                t.as_bytes().chunks(255).map(<[u8]>::to_vec).collect()
            };
            Ok(RecordData::Txt(chunks))
        }
        "MX" => {
            let f = Fields::of(value, "{preference, exchange}")?;
            Ok(RecordData::Mx {
                preference: f.number("preference")?,
                exchange: target(f.text("exchange")?)?,
            })
        }
        "SRV" => {
            let f = Fields::of(value, "{priority, weight, port, target}")?;
            Ok(RecordData::Srv {
                priority: f.number("priority")?,
                weight: f.number("weight")?,
                port: f.number("port")?,
                target: target(f.text("target")?)?,
            })
        }
        "CAA" => {
            let f = Fields::of(value, "{flags, tag, value}")?;
            let tag = f.text("tag")?;
            if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "tag '{tag}' must be letters and digits, like issue or iodef"
                ));
            }
            Ok(RecordData::Caa {
                flags: f.optional_number("flags")?.unwrap_or(0),
                tag,
                value: f.text("value")?,
            })
        }
        other => Err(format!(
            "unsupported record type '{other}' (expected one of {})",
            KNOWN_TYPES.join(", ")
        )),
    }
}

/// Field access for map-shaped record values, with messages that say which field is wrong.
struct Fields<'a>(&'a indexmap::IndexMap<String, RawScalar>);

impl<'a> Fields<'a> {
    fn of(value: &'a RawValue, shape: &str) -> Result<Self, String> {
        match value {
            RawValue::Fields(map) => Ok(Fields(map)),
            _ => Err(format!("expected a map {shape}")),
        }
    }

    fn text(&self, key: &str) -> Result<String, String> {
        match self.0.get(key) {
            Some(RawScalar::Text(t)) => Ok(t.clone()),
            Some(RawScalar::Number(n)) => Ok(n.to_string()),
            None => Err(format!("missing field `{key}`")),
        }
    }

    fn optional_number<T: TryFrom<i64>>(&self, key: &str) -> Result<Option<T>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(RawScalar::Number(n)) => T::try_from(*n)
                .map(Some)
                .map_err(|_| format!("field `{key}`: {n} is out of range")),
            Some(RawScalar::Text(t)) => Err(format!("field `{key}`: expected a number, got '{t}'")),
        }
    }

    fn number<T: TryFrom<i64>>(&self, key: &str) -> Result<T, String> {
        self.optional_number(key)?
            .ok_or_else(|| format!("missing field `{key}`"))
    }
}

fn coordinates(
    diag: &mut Diagnostics,
    spanned: &Spanned<Vec<f64>>,
    context: &str,
) -> Option<Coordinates> {
    match spanned.value.as_slice() {
        [lat, lon] => {
            let c = Coordinates::new(*lat, *lon);
            if c.is_none() {
                diag.error(
                    at(spanned),
                    format!("{context}: [{lat}, {lon}] is not a place: latitude must be within -90..90 and longitude within -180..180"),
                );
            }
            c
        }
        _ => {
            diag.error(
                at(spanned),
                format!("{context}: expected [latitude, longitude]"),
            );
            None
        }
    }
}

/// Nodes in declaration order; `None` for a node with errors (already reported), so ids stay
/// aligned with names and checks that involve a broken node can skip it instead of cascading.
fn validate_nodes(
    diag: &mut Diagnostics,
    raw: &RawZone,
    countries: &CountryTable,
) -> (Vec<Option<Node>>, HashMap<String, NodeId>) {
    let mut nodes = Vec::new();
    let mut index = HashMap::new();
    for (key, node) in &raw.nodes {
        let name = &key.name;
        let context = format!("node '{name}'");
        let n = &node.value;
        let geo = match GeoCode::parse(&n.geo.value, countries) {
            Ok(g) => Some(g),
            Err(e) => {
                diag.error(at(&n.geo), format!("{context}: geo: {e}"));
                None
            }
        };
        let location = coordinates(diag, &n.location, &format!("{context}: location"));
        let mut addresses = Vec::new();
        let mut carriers = Vec::new();
        for a in &n.addresses.value {
            let (text, asn) = match &a.value {
                RawAddress::Plain(text) => (text, None),
                RawAddress::Carrier { address, asn } => (address, Some(*asn)),
            };
            match text.parse::<IpAddr>() {
                Ok(ip) => {
                    addresses.push(ip);
                    if let Some(asn) = asn {
                        carriers.push((ip, asn));
                    }
                }
                Err(_) => diag.error(
                    at(a),
                    format!("{context}: '{text}' is not an IPv4 or IPv6 address"),
                ),
            }
        }
        let addresses_ok = addresses.len() == n.addresses.value.len();
        let capacity = validate_capacity(diag, raw, node, &context);
        let check = validate_check(diag, raw, node, &addresses, &context);
        if n.addresses.value.is_empty() {
            diag.error(at(&n.addresses), format!("{context}: no addresses"));
        }
        let weight = match &n.weight {
            Some(w) if w.value == 0 => {
                diag.error(at(w), format!("{context}: weight must be at least 1"));
                None
            }
            Some(w) => Some(w.value),
            None => Some(1),
        };
        index.insert(name.clone(), index.len());
        nodes.push(match (geo, location, weight, check, capacity) {
            (Some(geo), Some(location), Some(weight), Ok(check), Some(capacity))
                if addresses_ok && !addresses.is_empty() =>
            {
                Some(Node {
                    name: name.clone(),
                    tier: n.tier.unwrap_or(Tier::Core),
                    geo,
                    location,
                    addresses,
                    weight,
                    status: n.status.unwrap_or(AdminStatus::Obey),
                    check,
                    carriers,
                    capacity,
                })
            }
            _ => None,
        });
    }
    (nodes, index)
}

/// A node's capacity: its own fields over the zone's, over the defaults (full at 100 %,
/// taking new clients again below 10 points under that). `None`: errors were reported.
fn validate_capacity(
    diag: &mut Diagnostics,
    raw: &RawZone,
    node: &Spanned<RawNode>,
    context: &str,
) -> Option<Capacity> {
    let own = node.value.capacity.as_ref().map(|c| &c.value);
    let zone = raw.capacity.as_ref().map(|c| &c.value);
    let mut ok = true;
    // A field of the node's own, else the zone's; a bad zone value is reported once, by
    // `validate_zone_capacity`, and only makes the node unusable here.
    let mut field = |pick: fn(&RawCapacity) -> &Option<Spanned<RawPercent>>, name: &str| {
        let (value, own) = match own.and_then(|c| pick(c).as_ref()) {
            Some(value) => (value, true),
            None => (zone.and_then(|c| pick(c).as_ref())?, false),
        };
        match capacity_fraction(value, name) {
            Ok(v) => Some((v, value)),
            Err(message) => {
                if own {
                    diag.error(at(value), format!("{context}: {message}"));
                }
                ok = false;
                None
            }
        }
    };
    let full = field(|c| &c.full, "full");
    let resume = field(|c| &c.resume, "resume");
    let full_value = full.map_or(Capacity::default().full, |(v, _)| v);
    let resume_value = resume.map_or((full_value - 0.1).max(full_value / 2.0), |(v, _)| v);
    if ok && resume_value > full_value {
        diag.error(
            resume.map_or(at(node), |(_, spanned)| at(spanned)),
            format!("{context}: capacity: resume ({:.0}%) must not be above full ({:.0}%), or a full node would never take clients again", resume_value * 100.0, full_value * 100.0),
        );
        ok = false;
    }
    let (full, resume) = (full_value, resume_value);
    ok.then_some(Capacity { full, resume })
}

/// A capacity fraction: above 0, at most 150 % (loads are fractions of capacity).
fn capacity_fraction(value: &Spanned<RawPercent>, name: &str) -> Result<f64, String> {
    match &value.value.0 {
        Ok(v) if *v > 0.0 && *v <= 1.5 => Ok(*v),
        Ok(v) => Err(format!(
            "capacity: {name} {v} must be above 0 and at most 150% (loads are fractions of capacity: 95% or 0.95)"
        )),
        Err(e) => Err(format!("capacity: {name}: {e}")),
    }
}

/// Reports bad values of the zone's capacity defaults, once (not for every node).
fn validate_zone_capacity(diag: &mut Diagnostics, raw: &RawZone) {
    if let Some(capacity) = &raw.capacity {
        for (value, name) in [
            (&capacity.value.full, "full"),
            (&capacity.value.resume, "resume"),
        ] {
            if let Some(value) = value
                && let Err(message) = capacity_fraction(value, name)
            {
                diag.error(at(value), message);
            }
        }
    }
}

/// Reports bad durations of a check block (for zone defaults, checked once).
fn validate_duration_fields(diag: &mut Diagnostics, check: &RawCheck, context: &str) {
    for (field, value) in [
        ("interval", &check.interval),
        ("recheck", &check.recheck),
        ("timeout", &check.timeout),
    ] {
        if let Some(v) = value
            && let Err(e) = &v.value.0
        {
            diag.error(at(v), format!("{context}: {field}: {e}"));
        }
    }
}

/// Refuses fields a check's kind does not have (`path:` on a tcp check), each by name.
fn refuse_other_kinds_fields(
    diag: &mut Diagnostics,
    check: &RawCheck,
    loc: Location,
    context: &str,
) {
    let kind = check.kind();
    for field in check.kind_fields() {
        if !kind.own_fields().contains(&field) {
            let has = match kind.own_fields() {
                [] => "none of its own".to_string(),
                own => own.join(", "),
            };
            diag.error(
                loc,
                format!(
                    "{context}: `{field}` does not apply to a `type: {}` check (its fields: {has})",
                    kind.word()
                ),
            );
        }
    }
}

/// Merges a node's check over the zone's defaults and applies built-in defaults.
/// `Ok(None)`: the node is not health-checked. `Err(())`: errors were reported.
fn validate_check(
    diag: &mut Diagnostics,
    raw: &RawZone,
    node: &Spanned<RawNode>,
    addresses: &[IpAddr],
    context: &str,
) -> Result<Option<HealthCheck>, ()> {
    let zone_default = raw.check.as_ref().map(|c| c.value.clone());
    let (merged, loc) = match (&node.value.check, zone_default) {
        (None, None) => {
            // No silent defaults: an unchecked node is a decision the policy writes down.
            diag.error(
                at(node),
                format!(
                    "{context}: no health check: give it or the zone a `check` \
                     (e.g. `check: {{type: tcp, port: 1935}}`; also http, https, rtmp), \
                     or write `check: {{type: none}}` to answer it unchecked (its `status` decides)"
                ),
            );
            return Err(());
        }
        (Some(own), Some(default)) => (own.value.over(&default), at(own)),
        (Some(own), None) => (own.value.clone(), at(own)),
        (None, Some(default)) => (default, raw.check.as_ref().map_or(at(node), at)),
    };
    let context = format!("{context}: check");
    let kind = merged.kind();
    let errors_before = diag.errors.len();
    if let Some(own) = &node.value.check {
        // Judged against the kind the node ends up with, inherited or its own.
        let own_kind = RawCheck {
            kind: Some(kind),
            ..own.value.clone()
        };
        refuse_other_kinds_fields(diag, &own_kind, at(own), &context);
    }
    if kind == CheckKind::None {
        return if diag.errors.len() == errors_before {
            Ok(None)
        } else {
            Err(())
        };
    }
    if node.value.check.is_some() {
        validate_duration_fields(diag, &merged, &context);
    }
    let duration = |d: &Option<Spanned<RawDuration>>, default: Duration| {
        d.as_ref()
            .and_then(|d| d.value.0.clone().ok())
            .unwrap_or(default)
    };
    let interval = duration(&merged.interval, DEFAULT_INTERVAL);
    let recheck = duration(&merged.recheck, DEFAULT_RECHECK);
    let timeout = duration(&merged.timeout, DEFAULT_TIMEOUT);
    for (field, value, spanned) in [
        ("interval", interval, &merged.interval),
        ("recheck", recheck, &merged.recheck),
        ("timeout", timeout, &merged.timeout),
    ] {
        if value < Duration::from_millis(10) || value > Duration::from_secs(3600) {
            diag.error(
                spanned.as_ref().map_or(loc, at),
                format!("{context}: {field} must be between 10ms and 1h"),
            );
        }
    }
    let port = match merged.port.or(kind.default_port()) {
        Some(0) => {
            diag.error(loc, format!("{context}: port 0 cannot be checked"));
            0
        }
        Some(port) => port,
        None => {
            diag.error(
                loc,
                format!("{context}: a {} check needs a `port`", kind.word()),
            );
            0
        }
    };
    let address = match &merged.address {
        Some(a) => match a.value.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                diag.error(
                    at(a),
                    format!("{context}: address '{}' is not an IP address", a.value),
                );
                None
            }
        },
        None => addresses.first().copied(),
    };
    let count =
        |v: &Option<Spanned<u32>>, default: u32, field: &str, diag: &mut Diagnostics| match v {
            Some(n) if n.value == 0 => {
                diag.error(at(n), format!("{context}: {field} must be at least 1"));
                default
            }
            Some(n) => n.value,
            None => default,
        };
    let rise = count(&merged.rise, DEFAULT_RISE, "rise", diag);
    let fall = count(&merged.fall, DEFAULT_FALL, "fall", diag);
    let path = merged
        .path
        .as_ref()
        .map_or_else(|| "/".to_string(), |p| p.value.clone());
    if let Some(p) = &merged.path
        && (!p.value.starts_with('/')
            || p.value
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()))
    {
        diag.error(
            at(p),
            format!("{context}: path must start with '/' and contain no spaces"),
        );
    }
    let expect = merged
        .expect
        .as_ref()
        .map_or_else(Vec::new, |e| e.value.clone());
    if let Some(e) = &merged.expect
        && e.value.iter().any(|c| !(100..=599).contains(c))
    {
        diag.error(
            at(e),
            format!("{context}: expect: HTTP status codes are 100..599"),
        );
    }
    match address {
        Some(address) if diag.errors.len() == errors_before => {
            let http = || HttpProbe {
                path,
                host: merged.host.clone(),
                expect,
                body: merged.body.clone(),
            };
            let probe = match kind {
                CheckKind::Tcp | CheckKind::None => Probe::Tcp,
                CheckKind::Rtmp => Probe::Rtmp,
                CheckKind::Http => Probe::Http(http()),
                CheckKind::Https => Probe::Https(
                    http(),
                    TlsProbe {
                        sni: merged.sni.clone(),
                        verify: merged.verify.unwrap_or(true),
                    },
                ),
            };
            Ok(Some(HealthCheck {
                probe,
                target: SocketAddr::new(address, port),
                timing: CheckTiming {
                    interval,
                    recheck,
                    timeout,
                    rise,
                    fall,
                },
            }))
        }
        _ => Err(()),
    }
}

/// Latency damping with defaults; errors reported, defaults used in their place.
/// Longest `hold`, `half_life` or `max_age`.
const MAX_LATENCY_DURATION: Duration = Duration::from_secs(24 * 3600);

fn validate_latency(
    diag: &mut Diagnostics,
    raw: Option<&Spanned<RawLatency>>,
    context: &str,
) -> LatencyPolicy {
    let mut policy = LatencyPolicy::default();
    let Some(raw) = raw else {
        return policy;
    };
    if let Some(m) = &raw.value.margin {
        match &m.value.0 {
            Ok(v) if (0.0..1.0).contains(v) => policy.margin = *v,
            Ok(v) => diag.error(
                at(m),
                format!("{context}: latency: margin {v} must be at least 0 and below 1 (e.g. 20%)"),
            ),
            Err(e) => diag.error(at(m), format!("{context}: latency: margin: {e}")),
        }
    }
    for (field, value, slot) in [
        ("hold", &raw.value.hold, &mut policy.hold),
        ("half_life", &raw.value.half_life, &mut policy.half_life),
        ("max_age", &raw.value.max_age, &mut policy.max_age),
    ] {
        if let Some(v) = value {
            match &v.value.0 {
                Ok(d) if field != "hold" && d.is_zero() => diag.error(
                    at(v),
                    format!("{context}: latency: {field} must be longer than 0"),
                ),
                // Measurements older than a day describe another network; a day bounds
                // them all (and a hold longer than that would never let a better node in).
                Ok(d) if *d > MAX_LATENCY_DURATION => diag.error(
                    at(v),
                    format!("{context}: latency: {field} must be at most 24h (e.g. 30s, 2m, 10m)"),
                ),
                Ok(d) => *slot = *d,
                Err(e) => diag.error(at(v), format!("{context}: latency: {field}: {e}")),
            }
        }
    }
    policy
}

/// Resolves node names to ids, reporting unknown ones with the list of known names.
fn node_ids(
    diag: &mut Diagnostics,
    names: &[Spanned<String>],
    index: &HashMap<String, NodeId>,
    context: &str,
) -> Vec<NodeId> {
    let mut ids = Vec::new();
    for n in names {
        match index.get(&n.value) {
            Some(id) if !ids.contains(id) => ids.push(*id),
            Some(_) => diag.error(
                at(n),
                format!("{context}: node '{}' is listed twice", n.value),
            ),
            None => {
                let mut known: Vec<&str> = index.keys().map(String::as_str).collect();
                known.sort_unstable();
                diag.error(
                    at(n),
                    format!(
                        "{context}: unknown node '{}' (nodes of this zone: {})",
                        n.value,
                        known.join(", ")
                    ),
                );
            }
        }
    }
    ids
}

/// Adds the static records of a `records_file` to the policy's, with the same rules: no
/// type twice at a name (across both), no CNAME at the apex, wildcards only as a first label
/// and never delegating. Errors name the records file, at the line the parser stopped.
fn records_from_file(
    diag: &mut Diagnostics,
    origin: &DomainName,
    file: &Spanned<String>,
    sets: &mut Vec<RecordSet>,
    seen: &mut HashMap<(DomainName, RecordType), Location>,
) {
    let path = super::zonefile::resolve(diag.path, &file.value);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            diag.error(
                at(file),
                format!("records_file: cannot read {}: {e}", path.display()),
            );
            return;
        }
    };
    let parsed = match super::zonefile::parse(&path, &text, origin) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for e in errors {
                diag.error_in(&path, e.line, e.message);
            }
            return;
        }
    };
    for set in parsed {
        let record_type = set.record_type();
        let relative = set
            .name
            .to_string()
            .strip_suffix(&origin.to_string())
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_string();
        let what = format!("{} {}", set.name, record_type_name(record_type));
        if let Err(message) = wildcard_placement(&relative) {
            diag.error_in(&path, 0, format!("{what}: {message}"));
            continue;
        }
        if record_type == RecordType::NS && relative.starts_with("*.") {
            diag.error_in(
                &path,
                0,
                format!("{what}: a wildcard cannot delegate (RFC 4592 §4.2)"),
            );
            continue;
        }
        if record_type == RecordType::CNAME && set.name == *origin {
            diag.error_in(
                &path,
                0,
                format!("{what}: a CNAME cannot be at the zone apex"),
            );
            continue;
        }
        if let Some(first) = seen.get(&(set.name.clone(), record_type)) {
            diag.error_in(
                &path,
                0,
                format!(
                    "{what}: also in the policy's `records:` (line {}); keep one",
                    first.line()
                ),
            );
            continue;
        }
        seen.insert((set.name.clone(), record_type), at(file));
        sets.push(set);
    }
}

/// A type's mnemonic, for messages.
fn record_type_name(t: RecordType) -> String {
    hickory_proto::rr::RecordType::from(t.0).to_string()
}

/// A `*` makes a wildcard (RFC 4592) only as a whole first label; anywhere else it would be a
/// literal `*` no client means, so it is refused.
fn wildcard_placement(relative: &str) -> Result<(), String> {
    let misplaced = relative
        .split('.')
        .enumerate()
        .any(|(i, label)| label.contains('*') && (i > 0 || label != "*"));
    if misplaced {
        Err("a `*` makes a wildcard only as the whole first label (`*.edge`); elsewhere it would be a literal `*`".into())
    } else {
        Ok(())
    }
}

/// What a name in a `geos` list may be: a geo code, one of the policy's `geo_sets`, or a
/// well-known set (`eu-27`, `eea`).
struct GeoNames<'a> {
    countries: &'a CountryTable,
    /// The policy's sets, by lowercase name.
    sets: HashMap<String, GeoSet>,
}

/// A resolved name of a `geos` list.
enum GeoName {
    Code(GeoCode),
    Set(GeoSet),
}

impl GeoNames<'_> {
    fn resolve(&self, text: &str) -> Result<GeoName, String> {
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
fn validate_geo_sets(
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

#[allow(clippy::too_many_arguments)]
fn validate_steered(
    diag: &mut Diagnostics,
    origin: &DomainName,
    raw: &RawZone,
    records: &[RecordSet],
    nodes: &[Option<Node>],
    node_index: &HashMap<String, NodeId>,
    geo_names: &GeoNames,
) -> Vec<SteeredName> {
    let static_names: HashSet<&DomainName> = records.iter().map(|r| &r.name).collect();
    let delegations: Vec<&DomainName> = records
        .iter()
        .filter(|s| s.record_type() == RecordType::NS)
        .map(|s| &s.name)
        .collect();
    let mut steered = Vec::new();
    for (relative, steer) in &raw.steer {
        let context = format!("steer '{relative}'");
        let s = &steer.value;
        let name = match origin.child(&relative.name) {
            Ok(n) => n,
            Err(e) => {
                diag.error(relative.at, format!("{context}: {e}"));
                continue;
            }
        };
        if let Err(message) = wildcard_placement(&relative.name) {
            diag.error(relative.at, format!("{context}: {message}"));
            continue;
        }
        if static_names.contains(&name) {
            diag.error(
                relative.at,
                format!("{context}: '{name}' also has static records; a steered name owns its A and AAAA answers, move the other records elsewhere"),
            );
        }
        if delegations.iter().any(|cut| name.is_at_or_below(cut)) {
            diag.error(
                relative.at,
                format!("{context}: '{name}' is inside a delegation to another server"),
            );
        }
        let ttl = s.ttl.as_ref().map_or(DEFAULT_STEER_TTL, |t| t.value);
        let answers = match &s.answers {
            Some(a) if a.value == 0 => {
                diag.error(at(a), format!("{context}: answers must be at least 1"));
                1
            }
            Some(a) if a.value > MAX_ANSWERS => {
                diag.error(
                    at(a),
                    format!(
                        "{context}: answers {} is more than the {MAX_ANSWERS} addresses per family an answer may hold",
                        a.value
                    ),
                );
                MAX_ANSWERS
            }
            Some(a) => a.value,
            None => DEFAULT_ANSWERS,
        } as usize;

        let universe: Vec<NodeId> = match &s.nodes {
            Some(list) => node_ids(diag, list, node_index, &format!("{context}: nodes")),
            None => (0..node_index.len()).collect(),
        };
        if universe.is_empty() {
            diag.error(
                relative.at,
                format!("{context}: no candidate nodes; define `nodes:` in the zone"),
            );
        }

        // Pools and their fallback chains.
        let mut pool_nodes: HashMap<&str, Vec<NodeId>> = HashMap::new();
        for (pool_name, pool) in &s.pools {
            let ids = node_ids(
                diag,
                &pool.value.nodes,
                node_index,
                &format!("{context}: pool '{pool_name}'"),
            );
            if pool.value.nodes.is_empty() {
                diag.error(
                    pool_name.at,
                    format!("{context}: pool '{pool_name}' has no nodes"),
                );
            }
            if let Some(fb) = &pool.value.fallback
                && !s.pools.contains_key(fb.value.as_str())
            {
                diag.error(
                    at(fb),
                    format!(
                        "{context}: pool '{pool_name}': fallback to unknown pool '{}'",
                        fb.value
                    ),
                );
            }
            pool_nodes.insert(pool_name.name.as_str(), ids);
        }
        let chain = |diag: &mut Diagnostics, start: &Spanned<String>| -> Option<Candidates> {
            if !s.pools.contains_key(start.value.as_str()) {
                let known: Vec<&str> = s.pools.keys().map(|k| k.name.as_str()).collect();
                diag.error(
                    at(start),
                    format!(
                        "{context}: unknown pool '{}' (pools: {})",
                        start.value,
                        known.join(", ")
                    ),
                );
                return None;
            }
            let mut visited: Vec<&str> = Vec::new();
            let mut out = Vec::new();
            let mut current = Some(start.value.as_str());
            while let Some(pool) = current {
                if visited.contains(&pool) {
                    diag.error(
                        at(start),
                        format!(
                            "{context}: pool fallback loop: {} -> {pool}",
                            visited.join(" -> ")
                        ),
                    );
                    return None;
                }
                let level = visited.len().min(u8::MAX as usize) as u8;
                visited.push(pool);
                for id in pool_nodes.get(pool).into_iter().flatten() {
                    if !out.iter().any(|(n, _)| n == id) {
                        out.push((*id, level));
                    }
                }
                current = s
                    .pools
                    .get(pool)
                    .and_then(|p| p.value.fallback.as_ref())
                    .map(|f| f.value.as_str())
                    .filter(|f| s.pools.contains_key(*f));
            }
            Some(Candidates { nodes: out })
        };
        let level0 = |ids: Vec<NodeId>| Candidates {
            nodes: ids.into_iter().map(|id| (id, 0)).collect(),
        };

        let mut rules = Vec::new();
        let mut fences: Vec<GeoSet> = Vec::new();
        // (rule, its fence) and (rule, location, geos, candidates), for the fence check below.
        let mut fence_rules: Vec<(usize, usize)> = Vec::new();
        let mut rule_reach: Vec<(usize, Location, Vec<GeoCode>, Candidates)> = Vec::new();
        let rule_count = s.rules.len();
        for (i, rule) in s.rules.iter().enumerate() {
            let rule_ctx = format!("{context}: rule {}", i + 1);
            let r = &rule.value;
            let mut geos = Vec::new();
            let mut written = Vec::new();
            let mut geos_ok = true;
            for g in &r.geos {
                match geo_names.resolve(&g.value) {
                    Ok(GeoName::Code(code)) => {
                        written.push(code.to_string());
                        geos.push(code);
                    }
                    Ok(GeoName::Set(set)) => {
                        written.push(set.name);
                        geos.extend(set.members);
                    }
                    Err(e) => {
                        diag.error(at(g), format!("{rule_ctx}: geos: {e}"));
                        geos_ok = false;
                    }
                }
            }
            let mut subnets = Vec::new();
            for p in &r.subnets {
                match p.value.parse::<Prefix>() {
                    Ok(prefix) => subnets.push(prefix),
                    Err(e) => diag.error(at(p), format!("{rule_ctx}: subnets: {e}")),
                }
            }
            let candidates = match (&r.pool, &r.nodes) {
                (Some(_), Some(n)) => {
                    diag.error(
                        n.first().map_or(at(rule), at),
                        format!("{rule_ctx}: give either `pool` or `nodes`, not both"),
                    );
                    None
                }
                (Some(pool), None) => chain(diag, pool),
                (None, Some(list)) => Some(level0(node_ids(diag, list, node_index, &rule_ctx))),
                (None, None) => Some(level0(universe.clone())),
            };
            let is_catch_all = r.geos.is_empty() && r.subnets.is_empty();
            if is_catch_all && i + 1 < rule_count {
                diag.error(at(rule), format!("{rule_ctx}: matches every client, so rules after it never apply; put it last"));
            }
            if !is_catch_all && i + 1 == rule_count {
                diag.error(at(rule), format!("{rule_ctx}: the last rule must be a catch-all (`{{}}` or one naming only a pool) so every client gets an answer"));
            }
            if let Some(fence_flag) = &r.fence
                && fence_flag.value
            {
                if r.geos.is_empty() {
                    diag.error(at(fence_flag), format!("{rule_ctx}: a fence needs `geos`: it keeps clients in those geos on nodes inside them"));
                }
                // A fence is the union of the rule's geos: any node inside may serve any
                // client inside.
                let fence = GeoSet {
                    name: written.join("+"),
                    members: geos.clone(),
                };
                // A geo in error was reported; judging the fence without it would mislead.
                if let Some(c) = candidates.as_ref().filter(|_| geos_ok) {
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
                        diag.error(at(fence_flag), format!("{rule_ctx}: fenced to {fence} but its nodes include {} outside it, which the fence would never answer", outside.join(", ")));
                    } else if inside == 0 && all_valid && !geos.is_empty() {
                        diag.error(
                            at(fence_flag),
                            format!("{rule_ctx}: fenced to {fence} but has no node inside it"),
                        );
                    }
                }
                if !geos.is_empty() && geos_ok {
                    fence_rules.push((i, fences.len()));
                    fences.push(fence);
                }
            }
            if let Some(c) = &candidates {
                rule_reach.push((i, at(rule), geos.clone(), c.clone()));
            }
            if let Some(candidates) = candidates {
                rules.push(Rule {
                    geos,
                    subnets,
                    candidates,
                });
            }
        }
        // A fence can never be satisfied for clients an earlier rule takes to nodes all
        // outside it: they would get no answer at all.
        for &(fence_rule, fence) in &fence_rules {
            let fence = &fences[fence];
            for (rule, location, geos, candidates) in &rule_reach {
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
        if rules.is_empty() && rule_count == 0 {
            rules.push(Rule {
                geos: Vec::new(),
                subnets: Vec::new(),
                candidates: level0(universe.clone()),
            });
        }

        let default = match &s.default {
            None => DefaultAnswer {
                candidates: None,
                location: None,
            },
            Some(d) => {
                let candidates = match (&d.value.pool, &d.value.nodes) {
                    (Some(_), Some(_)) => {
                        diag.error(
                            at(d),
                            format!("{context}: default: give either `pool` or `nodes`, not both"),
                        );
                        None
                    }
                    (Some(pool), None) => chain(diag, pool),
                    (None, Some(list)) => Some(level0(node_ids(
                        diag,
                        list,
                        node_index,
                        &format!("{context}: default"),
                    ))),
                    (None, None) => None,
                };
                let location =
                    d.value.location.as_ref().and_then(|l| {
                        coordinates(diag, l, &format!("{context}: default: location"))
                    });
                DefaultAnswer {
                    candidates,
                    location,
                }
            }
        };

        let degraded_ttl = match &s.degraded_ttl {
            Some(d) if d.value > ttl => {
                diag.error(
                    at(d),
                    format!(
                        "{context}: degraded_ttl ({}) should be shorter than ttl ({ttl})",
                        d.value
                    ),
                );
                None
            }
            Some(d) => Some(d.value),
            None => None,
        };
        let latency = validate_latency(diag, s.latency.as_ref(), &context);
        steered.push(SteeredName {
            name,
            ttl,
            answers,
            rules,
            fences,
            default,
            all_down: s.all_down.unwrap_or_default(),
            degraded_ttl,
            latency,
        });
    }
    // Two keys may still name the same absolute name (`ingest` and `INGEST`).
    let mut seen = HashSet::new();
    for (s, (relative, _)) in steered.iter().zip(&raw.steer) {
        if !seen.insert(&s.name) {
            diag.error(
                relative.at,
                format!("steer '{relative}': '{}' is steered twice", s.name),
            );
        }
    }
    steered
}
