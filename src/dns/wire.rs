//! DNS wire format pieces that geosteer writes itself: record bodies, built once per snapshot,
//! and the small helpers the response writer needs.
//!
//! A record "body" is everything after the owner name: TYPE, CLASS, TTL, RDLENGTH, RDATA.
//! Owners are written per response as compression pointers into the question, which is how the
//! client's spelling of the name survives into the answer. Names inside RDATA are written
//! uncompressed (always legal), so a body can be copied into any response as is.

use crate::policy::{DomainName, RecordData, RecordType, Soa};

/// CLASS IN.
pub const CLASS_IN: u16 = 1;
/// Offset of RDATA within a body.
pub const RDATA_OFFSET: usize = 10;

/// Appends a record body (type, class IN, TTL, RDLENGTH, RDATA) for `rdata` to `out`.
pub fn push_body(out: &mut Vec<u8>, rtype: RecordType, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&rtype.0.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    // RDATA built here is bounded well below 64 KiB (names ≤ 255, TXT chunked per record).
    out.extend_from_slice(&(rdata.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// The RDATA of a policy record.
pub fn rdata(data: &RecordData) -> Vec<u8> {
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
pub fn soa_rdata(soa: &Soa) -> Vec<u8> {
    let mut out = soa.primary.to_wire();
    out.extend_from_slice(&soa.contact.to_wire());
    for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// Lowercase wire form of a domain name (for table keys).
pub fn name_key(name: &DomainName) -> Box<[u8]> {
    name.to_wire().into_boxed_slice()
}

/// Offsets of each label start in an uncompressed wire name, leftmost first, ending with the
/// root label's offset. Returns the count written; `None` if the name is malformed.
pub fn label_offsets(name: &[u8], offsets: &mut [u8; 128]) -> Option<usize> {
    let mut pos = 0usize;
    let mut count = 0usize;
    loop {
        let len = *name.get(pos)? as usize;
        if count >= offsets.len() {
            return None;
        }
        offsets[count] = pos as u8;
        count += 1;
        if len == 0 {
            return if pos + 1 == name.len() {
                Some(count)
            } else {
                None
            };
        }
        if len > 63 {
            return None;
        }
        pos += len + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_rdata() {
        let mut out = Vec::new();
        push_body(&mut out, RecordType::A, 30, &[192, 0, 2, 1]);
        assert_eq!(out, [0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        let mx = RecordData::Mx {
            preference: 10,
            exchange: DomainName::parse("mx.example.").unwrap(),
        };
        assert_eq!(rdata(&mx), b"\x00\x0a\x02mx\x07example\x00");
        let caa = RecordData::Caa {
            flags: 0,
            tag: "issue".into(),
            value: "letsencrypt.org".into(),
        };
        assert_eq!(rdata(&caa), b"\x00\x05issueletsencrypt.org");
    }

    #[test]
    fn label_offsets_walks_names() {
        let mut offsets = [0u8; 128];
        let name = DomainName::parse("a.bc.").unwrap().to_wire();
        assert_eq!(label_offsets(&name, &mut offsets), Some(3));
        assert_eq!(&offsets[..3], &[0, 2, 5]);
        assert_eq!(label_offsets(b"\x05ab", &mut offsets), None);
        assert_eq!(label_offsets(b"\x00\x00", &mut offsets), None);
    }
}
