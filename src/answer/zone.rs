//! The zone encoder: a zone's static records, delegations and empty non-terminals, encoded
//! once per snapshot into the bodies responses copy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::snapshot::{Delegation, EncodedRrset, NameNode, ZoneAnswers};
use crate::policy::{DomainName, RecordData, RecordSet, RecordType, Soa, Zone};
use crate::wire::push_body;

/// One record set's bodies, with the addresses `records` hold for the names it points to.
pub(super) fn encode_rrset(set: &RecordSet, records: &[RecordSet]) -> EncodedRrset {
    let rtype = set.record_type();
    EncodedRrset {
        rtype: rtype.0,
        bodies: set
            .data
            .iter()
            .map(|d| {
                let mut body = Vec::new();
                push_body(&mut body, rtype, set.ttl, &rdata(d));
                body.into_boxed_slice()
            })
            .collect(),
        additional: set
            .data
            .iter()
            .map(|d| match d {
                RecordData::Ns(target)
                | RecordData::Mx {
                    exchange: target, ..
                }
                | RecordData::Srv { target, .. } => addresses_of(target, records),
                _ => Vec::new(),
            })
            .collect(),
        signatures: Arc::default(),
    }
}

/// The A and AAAA bodies `records` hold for `name`.
fn addresses_of(name: &DomainName, records: &[RecordSet]) -> Vec<Box<[u8]>> {
    records
        .iter()
        .filter(|r| r.name == *name && matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .flat_map(|r| encode_rrset(r, &[]).bodies)
        .collect()
}

/// A zone's answers without its steered names, which `build` adds from their rankings.
pub(super) fn build_zone(index: usize, zone: &Zone) -> ZoneAnswers {
    let origin = name_key(&zone.origin);
    let soa_rdata = soa_rdata(&zone.soa);
    let mut soa = Vec::new();
    push_body(&mut soa, RecordType::SOA, zone.soa.ttl, &soa_rdata);
    let mut negative_soa = Vec::new();
    push_body(
        &mut negative_soa,
        RecordType::SOA,
        zone.soa.negative_ttl(),
        &soa_rdata,
    );

    let mut static_sets: HashMap<Box<[u8]>, Vec<EncodedRrset>> = HashMap::new();
    let apex_ns = RecordSet {
        name: zone.origin.clone(),
        ttl: zone.default_ttl,
        data: zone.ns.iter().cloned().map(RecordData::Ns).collect(),
    };
    static_sets.entry(origin.clone()).or_default().extend([
        EncodedRrset {
            rtype: RecordType::SOA.0,
            bodies: vec![soa.clone().into_boxed_slice()],
            additional: Vec::new(),
            signatures: Arc::default(),
        },
        encode_rrset(&apex_ns, &zone.records),
    ]);

    let mut delegations = HashMap::new();
    for set in &zone.records {
        if set.record_type() == RecordType::NS {
            let ns = encode_rrset(set, &zone.records);
            delegations.insert(name_key(&set.name), Delegation { ns });
        } else {
            static_sets
                .entry(name_key(&set.name))
                .or_default()
                .push(encode_rrset(set, &zone.records));
        }
    }

    let mut names: HashMap<Box<[u8]>, NameNode> = static_sets
        .into_iter()
        .map(|(k, v)| (k, NameNode::Static(v)))
        .collect();
    // Every name between an existing name and the apex exists too (RFC 8020): NODATA there.
    let mut ancestors = BTreeSet::new();
    let owners: Vec<DomainName> = zone
        .records
        .iter()
        .map(|r| r.name.clone())
        .chain(zone.steered.iter().map(|s| s.name.clone()))
        .collect();
    // Wildcards (static or steered), by the name they are directly below: a first label of
    // exactly `*`.
    let wildcards = owners
        .iter()
        .map(name_key)
        .filter(|key| key.starts_with(&[1, b'*']) && key.len() > 2)
        .map(|key| (key[2..].into(), key))
        .collect();
    for owner in owners {
        let mut current = owner.parent();
        while let Some(name) = current {
            if !name.is_at_or_below(&zone.origin) || name == zone.origin {
                break;
            }
            current = name.parent();
            ancestors.insert(name);
        }
    }
    for name in ancestors {
        names
            .entry(name_key(&name))
            .or_insert(NameNode::EmptyNonTerminal);
    }

    ZoneAnswers {
        index,
        origin,
        names,
        delegations,
        wildcards,
        soa: soa.into_boxed_slice(),
        negative_soa: negative_soa.into_boxed_slice(),
        signed: None,
    }
}

/// The RDATA of a policy record.
pub(super) fn rdata(data: &RecordData) -> Vec<u8> {
    let mut out = Vec::new();
    match data {
        RecordData::A(ip) => out.extend_from_slice(&ip.octets()),
        RecordData::Aaaa(ip) => out.extend_from_slice(&ip.octets()),
        RecordData::Cname(name) | RecordData::Ns(name) => out.extend_from_slice(&name.to_wire()),
        RecordData::Txt(chunks) => {
            for chunk in chunks {
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        RecordData::Mx {
            preference,
            exchange,
        } => {
            out.extend_from_slice(&preference.to_be_bytes());
            out.extend_from_slice(&exchange.to_wire());
        }
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&target.to_wire());
        }
        RecordData::Caa { flags, tag, value } => {
            out.push(*flags);
            out.push(tag.len() as u8);
            out.extend_from_slice(tag.as_bytes());
            out.extend_from_slice(value.as_bytes());
        }
    }
    out
}

/// The RDATA of an SOA record.
pub(super) fn soa_rdata(soa: &Soa) -> Vec<u8> {
    let mut out = soa.primary.to_wire();
    out.extend_from_slice(&soa.contact.to_wire());
    for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// Lowercase wire form of a domain name (for table keys).
pub(crate) fn name_key(name: &DomainName) -> Box<[u8]> {
    name.to_wire().into_boxed_slice()
}
