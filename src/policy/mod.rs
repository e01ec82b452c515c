//! Zone policy files: reading, validating and the typed model they produce.
//!
//! `load_path` reads a file or a directory of them for `crate::loader`, the one loader that
//! `geosteer check`, start-up and every reload use, so the three can never disagree about
//! what a valid policy is. It returns every error found, across every file, each located as
//! `file:line:column: message` (`error`).

pub mod effective;
mod error;
pub mod holes;
pub mod model;
pub mod raw;
mod recover;
pub mod validate;
pub mod zonefile;

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

pub use error::{PolicyError, PolicyErrors};
pub use model::*;

/// Parses and validates one policy file's text. `derived_serial` is the SOA serial used when
/// the file sets none. Every error is reported at once: shape errors (unknown keys, wrong
/// types, duplicates) are collected by parsing again without the offending entry, and the
/// meaning of what remains is checked too.
pub fn parse_zone(path: &Path, text: &str, derived_serial: u32) -> Result<Zone, PolicyErrors> {
    let recovered = recover::parse_all(path, text);
    let (mut errors, left_out) = (recovered.errors, recovered.left_out);
    let Some(raw) = recovered.raw else {
        return Err(PolicyErrors(errors));
    };
    let set_in_file = raw.soa.as_ref().is_some_and(|s| s.value.serial.is_some());
    let validated = validate::validate(path, raw, derived_serial);
    let mut zone = match validated {
        Ok(zone) if errors.is_empty() => zone,
        Ok(_) => return Err(PolicyErrors(errors)),
        Err(PolicyErrors(meaning)) => {
            // What a shape error left out is not reported again as unknown.
            let repeats = |e: &PolicyError| {
                left_out
                    .iter()
                    .any(|key| e.message.contains(&format!("unknown node '{key}'")))
            };
            errors.extend(meaning.into_iter().filter(|e| !repeats(e)));
            errors.sort_by_key(|e| (e.path != path, e.line, e.column));
            return Err(PolicyErrors(one_per_cause(errors)));
        }
    };
    if !set_in_file {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same text hashes the same in every process.
        let mut hasher = std::hash::DefaultHasher::new();
        text.hash(&mut hasher);
        zone.derived_serial_of = Some(hasher.finish());
    }
    Ok(zone)
}

/// Errors at one place saying one thing once: an inherited value (a zone-wide `check`
/// field) found bad for every node that inherits it is reported at its source, as the
/// zone's own check reports it, not again as each node's.
fn one_per_cause(errors: Vec<PolicyError>) -> Vec<PolicyError> {
    let mut kept: Vec<PolicyError> = Vec::with_capacity(errors.len());
    for e in &errors {
        let repeats = errors.iter().any(|other| {
            !std::ptr::eq(other, e)
                && other.path == e.path
                && (other.line, other.column) == (e.line, e.column)
                && e.message.len() > other.message.len()
                && e.message.ends_with(&format!(": {}", other.message))
        });
        if !repeats && !kept.contains(e) {
            kept.push(e.clone());
        }
    }
    kept
}

/// The parser's message without its rendered source snippet: our own format carries the
/// location, and one line per error keeps `check` output greppable.
pub(crate) fn yaml_message(error: &serde_saphyr::Error) -> String {
    let rendered = error.to_string();
    let mut first = rendered.lines().next().unwrap_or("invalid YAML").trim();
    first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 4 column 6: expected mapping start": we print the location ourselves.
    if first.starts_with("line ")
        && let Some((_, rest)) = first.split_once(": ")
    {
        first = rest;
    }
    // Drop a trailing " at line X, column Y" the parser may add; we print our own.
    let first = match first.find(" at line ") {
        Some(pos) => &first[..pos],
        None => first,
    };
    // The parser's advice names its own options; say what is wrong in the policy's terms.
    if let Some(rest) = first.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set ").next().unwrap_or(rest);
        return format!("'{key}' is given twice here; each key may appear once");
    }
    // "invalid u32": a number was expected.
    if let Some(kind) = first.strip_prefix("invalid ")
        && matches!(kind, "u8" | "u16" | "u32" | "u64" | "i64")
    {
        return "expected a whole number".to_string();
    }
    first.to_string()
}

/// The largest policy file read: far above any real policy, far below what would exhaust
/// memory (a file is parsed whole).
pub const MAX_POLICY_BYTES: u64 = 16 << 20;
/// The largest records (master) file read.
pub const MAX_RECORDS_BYTES: u64 = 64 << 20;

/// Reads at most `limit` bytes of a text file (a device such as `/dev/zero` included):
/// the text, or why not, for an operator (`what` names the file's role).
pub fn read_capped(path: &Path, limit: u64, what: &str) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    let mut bytes = Vec::new();
    (file.take(limit + 1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > limit {
        let size = match limit >> 20 {
            0 => format!("{} KiB", limit >> 10),
            mib => format!("{mib} MiB"),
        };
        return Err(format!("{what} is larger than {size}: not read"));
    }
    String::from_utf8(bytes).map_err(|e| format!("{what} is not UTF-8 text: {e}"))
}

/// Reads and validates one file.
pub fn load_file(path: &Path) -> Result<Zone, PolicyErrors> {
    let text = read_capped(path, MAX_POLICY_BYTES, "the policy file")
        .map_err(|why| PolicyErrors::single(path, why))?;
    // Without an explicit serial, the file's modification time (seconds since 1970, which
    // fits u32 until 2106) gives one that grows whenever the file is edited.
    let serial = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(1, |d| d.as_secs() as u32);
    parse_zone(path, &text, serial)
}

/// Loads a policy file, or every `*.yaml`/`*.yml` file of a directory (sorted by name).
/// All errors of all files are returned together.
pub fn load_path(path: &Path) -> Result<Vec<Zone>, PolicyErrors> {
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| PolicyErrors::single(path, format!("cannot read zone directory: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(PolicyErrors::single(
                path,
                "no zone policy files (*.yaml) in this directory",
            ));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut zones: Vec<Zone> = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match load_file(file) {
            Ok(zone) => {
                if let Some(other) = zones.iter().find(|z| z.origin == zone.origin) {
                    errors.push(PolicyError {
                        path: file.clone(),
                        line: 1,
                        column: 1,
                        message: format!(
                            "zone '{}' is already defined in {}",
                            zone.origin,
                            other.source.display()
                        ),
                    });
                } else {
                    zones.push(zone);
                }
            }
            Err(PolicyErrors(mut errs)) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        Ok(zones)
    } else {
        Err(PolicyErrors(errors))
    }
}
