//! Static records from an RFC 1035 master file (`records_file:`), read with hickory's
//! zone-file parser, so operators moving from BIND, Knot or NSD keep their files.
//!
//! The file's SOA and apex NS records are not served: the policy's `soa` and `ns` are (one
//! place says what the zone's authority is). Types geosteer does not serve are refused.

use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, RecordType as HickoryType};
use hickory_proto::serialize::txt::Parser;

use super::model::{DomainName, RecordData, RecordSet};

/// A records file error: a message and the line it is at (0 when the parser cannot say).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneFileError {
    /// Line of the file, from 1; 0 when unknown.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// Where a policy's `records_file` is: relative paths are relative to the policy file.
pub fn resolve(policy_path: &Path, written: &str) -> PathBuf {
    let written = Path::new(written);
    if written.is_absolute() {
        written.to_path_buf()
    } else {
        policy_path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(written)
    }
}

/// The records file a policy names, if any (for the reload watcher, without validating the
/// whole policy).
pub fn named_by(policy_path: &Path) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Reference {
        records_file: Option<String>,
    }
    let text = super::read_capped(policy_path, super::MAX_POLICY_BYTES, "policy").ok()?;
    let reference: Reference = serde_saphyr::from_str(&text).ok()?;
    Some(resolve(policy_path, &reference.records_file?))
}

/// Parses a master file's text for the zone `origin` into record sets geosteer serves.
pub fn parse(
    path: &Path,
    text: &str,
    origin: &DomainName,
) -> Result<Vec<RecordSet>, Vec<ZoneFileError>> {
    let origin_name = Name::from_ascii(origin.to_string()).map_err(|e| {
        vec![ZoneFileError {
            line: 0,
            message: format!("origin: {e}"),
        }]
    })?;
    let (_, sets) = Parser::new(text, Some(path.to_path_buf()), Some(origin_name.clone()))
        .parse()
        .map_err(|e| {
            vec![ZoneFileError {
                line: first_bad_line(path, text, &origin_name),
                message: e.to_string(),
            }]
        })?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for set in sets.values() {
        let owner = set.name().to_ascii();
        let name = match DomainName::parse(&owner) {
            Ok(name) if name.is_at_or_below(origin) => name,
            Ok(_) => {
                errors.push(unlocated(format!("'{owner}' is outside the zone {origin}")));
                continue;
            }
            Err(e) => {
                errors.push(unlocated(format!("'{owner}': {e}")));
                continue;
            }
        };
        let at_apex = name == *origin;
        match set.record_type() {
            HickoryType::SOA => continue,
            HickoryType::NS if at_apex => continue,
            _ => {}
        }
        let mut data = Vec::new();
        for record in set.records_without_rrsigs() {
            match convert(&record.data) {
                Ok(d) => data.push(d),
                Err(message) => errors.push(unlocated(format!(
                    "{owner} {}: {message}",
                    set.record_type()
                ))),
            }
        }
        if !data.is_empty() {
            out.push(RecordSet {
                name,
                ttl: set.ttl(),
                data,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn unlocated(message: String) -> ZoneFileError {
    ZoneFileError { line: 0, message }
}

/// One record's data as geosteer serves it.
fn convert(data: &RData) -> Result<RecordData, String> {
    let name = |n: &Name| DomainName::parse(&n.to_ascii()).map_err(|e| format!("'{n}': {e}"));
    Ok(match data {
        RData::A(a) => RecordData::A(a.0),
        RData::AAAA(aaaa) => RecordData::Aaaa(aaaa.0),
        RData::CNAME(target) => RecordData::Cname(name(&target.0)?),
        RData::NS(target) => RecordData::Ns(name(&target.0)?),
        RData::TXT(txt) => RecordData::Txt(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
        RData::MX(mx) => RecordData::Mx {
            preference: mx.preference,
            exchange: name(&mx.exchange)?,
        },
        RData::SRV(srv) => RecordData::Srv {
            priority: srv.priority,
            weight: srv.weight,
            port: srv.port,
            target: name(&srv.target)?,
        },
        RData::CAA(caa) => RecordData::Caa {
            flags: (u8::from(caa.issuer_critical) << 7) | caa.reserved_flags,
            tag: caa.tag.clone(),
            value: String::from_utf8_lossy(&caa.value).into_owned(),
        },
        other => {
            return Err(format!(
                "type {} is not served (records files may hold A, AAAA, CNAME, TXT, MX, SRV, CAA, NS)",
                other.record_type()
            ));
        }
    })
}

/// The first line at which the file stops parsing: the parser reports no lines, so the
/// longest prefix of whole lines that parses is found by bisection (a record continued in
/// parentheses points at its first line).
fn first_bad_line(path: &Path, text: &str, origin: &Name) -> u64 {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let parses = |count: usize| {
        let prefix: String = lines[..count].concat();
        Parser::new(prefix, Some(path.to_path_buf()), Some(origin.clone()))
            .parse()
            .is_ok()
    };
    let (mut good, mut bad) = (0, lines.len());
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if parses(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    bad as u64
}
