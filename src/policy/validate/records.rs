//! Static records: the policy's `records:` and a `records_file`, each value parsed by its
//! type, duplicates and misplaced wildcards refused.

use std::collections::{BTreeMap, HashMap};

use serde_saphyr::{Location, Spanned};

use super::*;

/// Where a record set is written: the policy's `records:`, or a records file and line.
#[derive(Debug, Clone)]
enum Where {
    Policy(Location),
    File(std::path::PathBuf, u64),
}

impl Where {
    /// For ordering: policy entries first, then files, each by line.
    fn key(&self) -> (u8, u64, u64) {
        match self {
            Where::Policy(l) => (0, l.line(), l.column()),
            Where::File(_, line) => (1, *line, 0),
        }
    }

    fn report(&self, diag: &mut Diagnostics, message: String) {
        match self {
            Where::Policy(l) => diag.error(*l, message),
            Where::File(path, line) => diag.error_in(path, *line, message),
        }
    }
}

/// Where each (name, type) set was first defined, to report duplicates.
type Seen = HashMap<(DomainName, RecordType), Where>;

/// The zone's static records: the policy's and its `records_file`'s, checked one by one
/// and then together (CNAME exclusivity, what may sit at or below a delegation).
pub(super) fn validate_records(
    diag: &mut Diagnostics,
    origin: &DomainName,
    raw: &RawZone,
    default_ttl: u32,
) -> Vec<RecordSet> {
    let mut sets: Vec<RecordSet> = Vec::new();
    let mut seen = Seen::new();
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
            let at_name = NameAt {
                origin,
                relative,
                name: &name,
                context: &context,
            };
            if let Some(set) = record_set(diag, at_name, raw_set, default_ttl, &mut seen) {
                sets.push(set);
            }
        }
    }
    if let Some(file) = &raw.records_file {
        records_from_file(diag, origin, file, &mut sets, &mut seen);
    }
    check_names_together(diag, &sets, &seen);
    sets
}

/// A name of the policy's `records:`.
#[derive(Clone, Copy)]
struct NameAt<'a> {
    origin: &'a DomainName,
    relative: &'a Key,
    name: &'a DomainName,
    context: &'a str,
}

/// One record set as written; `None` when it has errors (reported).
fn record_set(
    diag: &mut Diagnostics,
    at_name: NameAt,
    raw_set: &RawRecordSet,
    default_ttl: u32,
    seen: &mut Seen,
) -> Option<RecordSet> {
    let NameAt {
        origin,
        relative,
        name,
        context,
    } = at_name;
    let type_loc = at(&raw_set.record_type);
    let values: Vec<&Spanned<RawValue>> = match (&raw_set.value, &raw_set.values) {
        (Some(v), None) => vec![v],
        (None, Some(vs)) if !vs.is_empty() => vs.iter().collect(),
        (Some(_), Some(_)) => {
            diag.error(
                type_loc,
                format!("{context}: give either `value` or `values`, not both"),
            );
            return None;
        }
        _ => {
            diag.error(type_loc, format!("{context}: no `value` or `values`"));
            return None;
        }
    };
    let type_name = raw_set.record_type.value.to_ascii_uppercase();
    let mut data = Vec::new();
    for value in values {
        match parse_record_value(&type_name, &value.value) {
            Ok(d) => data.push(d),
            Err(message) => diag.error(at(value), format!("{context}: {type_name}: {message}")),
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
        return None;
    };
    if record_type == RecordType::CNAME && data.len() > 1 {
        diag.error(
            type_loc,
            format!("{context}: a CNAME has exactly one value"),
        );
    }
    let misplaced = match record_type {
        RecordType::NS if relative.name.starts_with("*.") => {
            Some("a wildcard cannot delegate (RFC 4592 §4.2); list the delegated names")
        }
        RecordType::NS if name == origin => {
            Some("the apex NS set is written as the zone's `ns:` list")
        }
        RecordType::CNAME if name == origin => Some("a CNAME cannot be at the zone apex"),
        _ => None,
    };
    if let Some(why) = misplaced {
        diag.error(type_loc, format!("{context}: {why}"));
        return None;
    }
    if let Some(first) = seen.get(&(name.clone(), record_type)) {
        diag.error(
            type_loc,
            format!(
                "{context}: second {type_name} set at this name (the first is at line {})",
                first.key().1
            ),
        );
        return None;
    }
    seen.insert((name.clone(), record_type), Where::Policy(type_loc));
    Some(RecordSet {
        name: name.clone(),
        ttl: raw_set.ttl.unwrap_or(default_ttl),
        data,
    })
}

/// CNAME exclusivity and delegation occlusion, over every set of the zone.
fn check_names_together(diag: &mut Diagnostics, sets: &[RecordSet], seen: &Seen) {
    let mut types_at: BTreeMap<&DomainName, Vec<RecordType>> = BTreeMap::new();
    for set in sets {
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
        // Reported where the name's CNAME is written (in the policy or a records file),
        // else where the name first is.
        let at_name = |cname: bool| {
            seen.iter()
                .filter(|((n, t), _)| n == *name && (!cname || *t == RecordType::CNAME))
                .map(|(_, w)| w)
                .min_by_key(|w| w.key())
                .cloned()
        };
        let loc = at_name(false).unwrap_or(Where::Policy(Location::UNKNOWN));
        if types.contains(&RecordType::CNAME) && types.len() > 1 {
            at_name(true).unwrap_or_else(|| loc.clone()).report(
                diag,
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
                loc.report(
                    diag,
                    format!("records at '{name}': only NS and glue (A/AAAA) may be at or below the delegation '{cut}'"),
                );
            }
        }
    }
}

pub(super) const KNOWN_TYPES: [&str; 8] = ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS"];

/// Parses one value of a record set according to its type.
pub(super) fn parse_record_value(type_name: &str, value: &RawValue) -> Result<RecordData, String> {
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
pub(super) struct Fields<'a>(&'a indexmap::IndexMap<String, RawScalar>);

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

/// Adds the static records of a `records_file` to the policy's, with the same rules: no
/// type twice at a name (across both), no CNAME at the apex, wildcards only as a first label
/// and never delegating. Errors name the records file, at the line the parser stopped.
fn records_from_file(
    diag: &mut Diagnostics,
    origin: &DomainName,
    file: &Spanned<String>,
    sets: &mut Vec<RecordSet>,
    seen: &mut Seen,
) {
    let path = super::super::zonefile::resolve(diag.path, &file.value);
    let what = format!("the records file {}", path.display());
    let text = match super::super::read_capped(&path, super::super::MAX_RECORDS_BYTES, &what) {
        Ok(text) => text,
        Err(why) => {
            diag.error(at(file), format!("records_file: {why}"));
            return;
        }
    };
    let parsed = match super::super::zonefile::parse(&path, &text, origin) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for e in errors {
                diag.error_in(&e.file, e.line, e.message);
            }
            return;
        }
    };
    for super::super::zonefile::FileSet { set, file, line } in parsed {
        let here = Where::File(file, line);
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
            here.report(diag, format!("{what}: {message}"));
            continue;
        }
        if record_type == RecordType::NS && relative.starts_with("*.") {
            here.report(
                diag,
                format!("{what}: a wildcard cannot delegate (RFC 4592 §4.2)"),
            );
            continue;
        }
        if record_type == RecordType::CNAME && set.name == *origin {
            here.report(diag, format!("{what}: a CNAME cannot be at the zone apex"));
            continue;
        }
        if let Some(first) = seen.get(&(set.name.clone(), record_type)) {
            let line = first.key().1;
            here.report(
                diag,
                format!("{what}: also in the policy's `records:` (line {line}); keep one"),
            );
            continue;
        }
        seen.insert((set.name.clone(), record_type), here);
        sets.push(set);
    }
}

/// A type's mnemonic, for messages.
pub(super) fn record_type_name(t: RecordType) -> String {
    hickory_proto::rr::RecordType::from(t.0).to_string()
}

/// A `*` makes a wildcard (RFC 4592) only as a whole first label; anywhere else it would be a
/// literal `*` no client means, so it is refused.
pub(super) fn wildcard_placement(relative: &str) -> Result<(), String> {
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
