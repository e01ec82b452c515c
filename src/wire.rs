//! DNS numbers and record encoding: the leaf that both the snapshot builder and the DNS
//! front end use, so neither has to reach into the other.
//!
//! A record "body" is everything after the owner name: TYPE, CLASS, TTL, RDLENGTH, RDATA.
//! Owners are written per response as compression pointers into the question, which is how the
//! client's spelling of the name survives into the answer. Names inside RDATA are written
//! uncompressed (always legal), so a body can be copied into any response as is.
//!
//! Nothing here knows the policy, the snapshot or hickory: only numbers and bytes.

/// CLASS IN.
pub const CLASS_IN: u16 = 1;
/// CLASS CH (CHAOS): identity queries.
pub const CLASS_CH: u16 = 3;
/// Header flag bits in the third octet: response.
pub const FLAG_QR: u8 = 0x80;
/// Header flag bits in the third octet: authoritative answer.
pub const FLAG_AA: u8 = 0x04;
/// Header flag bits in the third octet: truncated.
pub const FLAG_TC: u8 = 0x02;
/// Header flag bits in the third octet: recursion desired.
pub const FLAG_RD: u8 = 0x01;
/// Header flag bits in the fourth octet: checking disabled.
pub const FLAG_CD: u8 = 0x10;
/// Offset of RDATA within a body.
pub const RDATA_OFFSET: usize = 10;

/// A record type code (RFC 1035 and later), the one table of the numbers geosteer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u16);

impl RecordType {
    /// IPv4 address.
    pub const A: Self = Self(1);
    /// Name server.
    pub const NS: Self = Self(2);
    /// Alias.
    pub const CNAME: Self = Self(5);
    /// Start of authority.
    pub const SOA: Self = Self(6);
    /// Pointer (reverse lookups).
    pub const PTR: Self = Self(12);
    /// Mail exchanger.
    pub const MX: Self = Self(15);
    /// Text.
    pub const TXT: Self = Self(16);
    /// IPv6 address.
    pub const AAAA: Self = Self(28);
    /// Service location.
    pub const SRV: Self = Self(33);
    /// EDNS(0) pseudo-record (RFC 6891): never a question.
    pub const OPT: Self = Self(41);
    /// Delegation signer (held by the parent, at a delegation).
    pub const DS: Self = Self(43);
    /// DNSSEC signature.
    pub const RRSIG: Self = Self(46);
    /// DNSSEC denial: the next owner name and the types at this one.
    pub const NSEC: Self = Self(47);
    /// DNSSEC public key.
    pub const DNSKEY: Self = Self(48);
    /// Child's copy of its DS, for the parent to pick up (RFC 7344).
    pub const CDS: Self = Self(59);
    /// Child's copy of its key-signing DNSKEY (RFC 7344).
    pub const CDNSKEY: Self = Self(60);
    /// Service binding (RFC 9460).
    pub const SVCB: Self = Self(64);
    /// HTTPS service binding (RFC 9460).
    pub const HTTPS: Self = Self(65);
    /// Incremental zone transfer.
    pub const IXFR: Self = Self(251);
    /// Full zone transfer.
    pub const AXFR: Self = Self(252);
    /// Any type (a question only).
    pub const ANY: Self = Self(255);
    /// CA authorization.
    pub const CAA: Self = Self(257);

    /// Types with a mnemonic of their own, in code order.
    pub const NAMED: [(RecordType, &'static str); 22] = [
        (Self::A, "A"),
        (Self::NS, "NS"),
        (Self::CNAME, "CNAME"),
        (Self::SOA, "SOA"),
        (Self::PTR, "PTR"),
        (Self::MX, "MX"),
        (Self::TXT, "TXT"),
        (Self::AAAA, "AAAA"),
        (Self::SRV, "SRV"),
        (Self::OPT, "OPT"),
        (Self::DS, "DS"),
        (Self::RRSIG, "RRSIG"),
        (Self::NSEC, "NSEC"),
        (Self::DNSKEY, "DNSKEY"),
        (Self::CDS, "CDS"),
        (Self::CDNSKEY, "CDNSKEY"),
        (Self::SVCB, "SVCB"),
        (Self::HTTPS, "HTTPS"),
        (Self::IXFR, "IXFR"),
        (Self::AXFR, "AXFR"),
        (Self::ANY, "ANY"),
        (Self::CAA, "CAA"),
    ];

    /// The type's mnemonic (`A`, `MX`, ...), if it has one here.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMED
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, name)| *name)
    }

    /// The type's mnemonic, or `TYPEn` (RFC 3597) for others.
    pub fn mnemonic(self) -> String {
        self.name()
            .map_or_else(|| format!("TYPE{}", self.0), str::to_string)
    }
}

/// Where a query came in: decides the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagram: limited by the client's EDNS buffer (512 without EDNS) and ours.
    Udp,
    /// Stream: up to 65535 bytes.
    Tcp,
}

/// Response codes geosteer sends (RFC 1035, 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Rcode {
    /// Success (including NODATA).
    NoError = 0,
    /// Malformed query.
    FormErr = 1,
    /// Every node allowed for the client is down and the name fails closed.
    ServFail = 2,
    /// Name does not exist.
    NxDomain = 3,
    /// Opcode not supported.
    NotImp = 4,
    /// Not our zone, or a class/type we do not serve.
    Refused = 5,
    /// EDNS version not supported.
    BadVers = 16,
}

impl Rcode {
    /// Every rcode geosteer sends, for pre-registering counters.
    pub const ALL: [Rcode; 7] = [
        Rcode::NoError,
        Rcode::FormErr,
        Rcode::ServFail,
        Rcode::NxDomain,
        Rcode::NotImp,
        Rcode::Refused,
        Rcode::BadVers,
    ];

    /// Position in [`Rcode::ALL`].
    pub fn index(self) -> usize {
        Rcode::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// Name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Rcode::NoError => "NOERROR",
            Rcode::FormErr => "FORMERR",
            Rcode::ServFail => "SERVFAIL",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::NotImp => "NOTIMP",
            Rcode::Refused => "REFUSED",
            Rcode::BadVers => "BADVERS",
        }
    }
}

/// What a response said, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Response code.
    pub rcode: Rcode,
    /// The TC bit was set.
    pub truncated: bool,
    /// Policy index of the zone the question was in, when it was in one of ours.
    pub zone: Option<usize>,
    /// The question's type (0 when there was no question).
    pub qtype: u16,
    /// The question's length in the response, after the header (0: none).
    pub question_len: u16,
    /// The client subnet the query carried: its address and source prefix.
    pub subnet: Option<(std::net::IpAddr, u8)>,
    /// The ECS scope the reply gave (0: the answer holds for every subnet).
    pub ecs_scope: u8,
    /// The query returned a valid server cookie: its source address is proven.
    pub cookie_valid: bool,
    /// What the response is about, for response-rate limiting.
    pub kind: ResponseKind,
}

/// What a response is about, as response-rate limiting counts it: varying what a response
/// is not about (the type of a negative answer, the name under a wildcard) does not make it
/// another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseKind {
    /// Data for the question: its name and type.
    Answer,
    /// No data in the zone (NXDOMAIN, NODATA, a referral): the zone alone.
    Empty,
    /// Synthesized from a wildcard: that wildcard (an identity within the snapshot).
    Wildcard(usize),
    /// Errors and refusals: nothing more.
    #[default]
    Error,
}

/// Appends a record body (type, class IN, TTL, RDLENGTH, RDATA) for `rdata` to `out`.
pub fn push_body(out: &mut Vec<u8>, rtype: RecordType, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&rtype.0.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    // RDATA built here is bounded well below 64 KiB (names ≤ 255, TXT chunked per record).
    out.extend_from_slice(&(rdata.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// Calls `visit` with each option (code, data) of an OPT record's RDATA, in order. `None`
/// when an option runs past the RDATA or `visit` says stop (returns `None`); both query
/// parsers read options through this one walk.
pub fn each_edns_option(
    rdata: &[u8],
    mut visit: impl FnMut(u16, &[u8]) -> Option<()>,
) -> Option<()> {
    let mut at = 0;
    while at < rdata.len() {
        let header = rdata.get(at..at + 4)?;
        let code = u16::from_be_bytes([header[0], header[1]]);
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        visit(code, rdata.get(at + 4..at + 4 + len)?)?;
        at += 4 + len;
    }
    Some(())
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
    fn bodies() {
        let mut out = Vec::new();
        push_body(&mut out, RecordType::A, 30, &[192, 0, 2, 1]);
        assert_eq!(out, [0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        assert_eq!(RecordType::CAA.mnemonic(), "CAA");
        assert_eq!(RecordType(99).mnemonic(), "TYPE99");
    }

    #[test]
    fn label_offsets_walks_names() {
        let mut offsets = [0u8; 128];
        let name = b"\x01a\x02bc\x00";
        assert_eq!(label_offsets(name, &mut offsets), Some(3));
        assert_eq!(&offsets[..3], &[0, 2, 5]);
        assert_eq!(label_offsets(b"\x05ab", &mut offsets), None);
        assert_eq!(label_offsets(b"\x00\x00", &mut offsets), None);
    }
}
