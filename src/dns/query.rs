//! What a response depends on in a query, and the allocation-free parser for ordinary
//! queries.
//!
//! [`QueryView`] is the parsed query the responder works from. Two parsers produce it:
//! [`parse_plain`] reads the common shape — one question with an uncompressed name, no answer
//! or authority records, at most an OPT record — straight from the packet, without copying or
//! allocating, and declines (returns `None`) anything else; hickory's `Request` parses what it
//! declines. Both must lead to the same bytes: a test runs a corpus through each; for the
//! second, [`check_wire_options`] reads the EDNS options hickory does not check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cookie::{CookieError, OPTION_COOKIE, QueryCookie};
use super::ecs::{ClientSubnet, EcsError};

/// The parts of a query the response is built from.
#[derive(Debug, Clone, Copy)]
pub struct QueryView<'a> {
    /// The question as sent (QNAME, QTYPE, QCLASS); empty unless there is exactly one.
    pub question: &'a [u8],
    /// Exactly one question.
    pub one_question: bool,
    /// OPCODE is QUERY.
    pub opcode_query: bool,
    /// The OPT record, if any.
    pub edns: Option<EdnsView>,
}

/// The OPT record's fields that shape the response.
#[derive(Debug, Clone, Copy)]
pub struct EdnsView {
    /// The requester's UDP payload size.
    pub max_payload: u16,
    /// EDNS version.
    pub version: u8,
    /// The DO bit.
    pub dnssec_ok: bool,
    /// The client subnet option: absent, valid, or why it makes the query a FORMERR.
    pub subnet: Result<Option<ClientSubnet>, EcsError>,
    /// The COOKIE option: absent, well-formed, or why it makes the query a FORMERR.
    pub cookie: Result<Option<QueryCookie>, CookieError>,
    /// What the query asks the reply to carry (NSID, edns-tcp-keepalive).
    pub asks: OptionAsks,
    /// The option list parses: no option runs past the OPT data and no octets are left
    /// over (else FORMERR).
    pub options_ok: bool,
}

/// Options a query sends to ask the reply for something, read the same way by both
/// parsers.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionAsks {
    /// The NSID option was sent: the reply names this instance (RFC 5001).
    pub nsid: bool,
    /// The edns-tcp-keepalive option (RFC 7828).
    pub keepalive: KeepaliveAsk,
}

impl OptionAsks {
    /// Takes note of one option of the query's OPT record.
    fn note(&mut self, code: u16, data: &[u8]) {
        match code {
            OPTION_NSID => self.nsid = true,
            OPTION_TCP_KEEPALIVE => self.keepalive = KeepaliveAsk::of(data),
            _ => {}
        }
    }
}

/// How a query carried the edns-tcp-keepalive option (RFC 7828).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeepaliveAsk {
    /// Not sent.
    #[default]
    Absent,
    /// Sent empty, as a client asks for the server's idle timeout.
    Asked,
    /// Sent with a timeout, which only a server may send: FORMERR.
    WithTimeout,
}

impl KeepaliveAsk {
    /// The option's data as it was sent.
    fn of(data: &[u8]) -> KeepaliveAsk {
        if data.is_empty() {
            KeepaliveAsk::Asked
        } else {
            KeepaliveAsk::WithTimeout
        }
    }
}

const TYPE_OPT: u16 = crate::wire::RecordType::OPT.0;
const OPTION_ECS: u16 = super::ecs::OPTION_ECS;

/// The EDNS option code of NSID (RFC 5001).
pub(super) const OPTION_NSID: u16 = 3;

/// The EDNS option code of edns-tcp-keepalive (RFC 7828).
pub(super) const OPTION_TCP_KEEPALIVE: u16 = 11;

/// Parses an ordinary query without allocating; `None` for anything it does not handle
/// (compressed or oversized names, several additional records, a non-root or non-OPT
/// additional record, an ECS option of unknown family or inexact length, two ECS options,
/// trailing bytes, an opcode other than QUERY). The caller then parses with hickory.
pub fn parse_plain(packet: &[u8]) -> Option<QueryView<'_>> {
    let count = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
    if packet.len() < 12
        || count(4) != 1
        || count(6) != 0
        || count(8) != 0
        || count(10) > 1
        || (packet[2] >> 3) & 0x0F != 0
    {
        return None;
    }
    let mut at = 12;
    loop {
        let len = *packet.get(at)? as usize;
        if len & 0xC0 != 0 {
            return None;
        }
        at += 1 + len;
        if at - 12 > 255 {
            return None; // longer than a name may be
        }
        if len == 0 {
            break;
        }
    }
    let question_end = at + 4;
    let question = packet.get(12..question_end)?;
    let edns = if count(10) == 1 {
        Some(parse_opt(packet.get(question_end..)?)?)
    } else {
        if packet.len() != question_end {
            return None;
        }
        None
    };
    Some(QueryView {
        question,
        one_question: true,
        opcode_query: true,
        edns,
    })
}

/// Parses an OPT record that must fill `record` exactly.
fn parse_opt(record: &[u8]) -> Option<EdnsView> {
    if record.len() < 11 || record[0] != 0 {
        return None;
    }
    let field = |at: usize| u16::from_be_bytes([record[at], record[at + 1]]);
    if field(1) != TYPE_OPT {
        return None;
    }
    let rdlen = field(9) as usize;
    let rdata = record.get(11..)?;
    if rdata.len() != rdlen {
        return None;
    }
    let mut subnet = Ok(None);
    let mut seen_subnet = false;
    let mut cookie = Ok(None);
    let mut seen_cookie = false;
    let mut asks = OptionAsks::default();
    crate::wire::each_edns_option(rdata, |code, data| {
        asks.note(code, data);
        if code == OPTION_ECS {
            if std::mem::replace(&mut seen_subnet, true) {
                return None;
            }
            subnet = parse_subnet(data)?;
        }
        if code == OPTION_COOKIE {
            if std::mem::replace(&mut seen_cookie, true) {
                return None;
            }
            cookie = QueryCookie::parse(data).map(Some);
        }
        Some(())
    })?;
    Some(EdnsView {
        // hickory reads payloads below 512 as 512 (RFC 6891 §6.2.3); so does this.
        max_payload: field(3).max(512),
        version: record[6],
        dnssec_ok: record[7] & 0x80 != 0,
        subnet,
        cookie,
        asks,
        options_ok: true,
    })
}

/// The ECS option's data; `None` (decline) for an unknown family or an address whose length
/// is not what the source prefix needs.
fn parse_subnet(data: &[u8]) -> Option<Result<Option<ClientSubnet>, EcsError>> {
    let [f0, f1, source, scope, address @ ..] = data else {
        return None;
    };
    let needed = source.div_ceil(8) as usize;
    if address.len() != needed {
        return None;
    }
    let address = match u16::from_be_bytes([*f0, *f1]) {
        1 if needed <= 4 => {
            let mut octets = [0u8; 4];
            octets[..needed].copy_from_slice(address);
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        2 if needed <= 16 => {
            let mut octets = [0u8; 16];
            octets[..needed].copy_from_slice(address);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(ClientSubnet::checked(address, *source, *scope).map(Some))
}

/// What [`check_wire_options`] found in a query's OPT record.
#[derive(Debug)]
pub struct WireOptions {
    /// The ECS option is well-formed, or why not.
    pub ecs: Result<(), EcsError>,
    /// The COOKIE option: absent, well-formed, or why it makes the query a FORMERR.
    pub cookie: Result<Option<QueryCookie>, CookieError>,
    /// What the query asks the reply to carry.
    pub asks: OptionAsks,
    /// The query has an OPT record.
    pub opt: bool,
    /// Its option list parses (no option overruns it, no octets left over).
    pub options_ok: bool,
}

/// Reads the ECS, COOKIE, NSID and edns-tcp-keepalive options of a query's OPT record on the wire, for the
/// general parser, which does not check them (it reads the octets a prefix needs and
/// ignores the rest, keeps the first of several options, and leaves cookies unparsed):
/// exactly the address octets the source prefix needs and at most one ECS option (RFC 7871
/// §6); the cookie, well-formed (RFC 7873 §5.2.2) and alone. `packet` has been parsed
/// already, so a shape this walk cannot follow is left to that parser's verdict.
pub fn check_wire_options(packet: &[u8]) -> WireOptions {
    let mut found = WireOptions {
        ecs: Ok(()),
        cookie: Ok(None),
        asks: OptionAsks::default(),
        opt: false,
        options_ok: true,
    };
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]))
    };
    // A name on the wire: labels up to the root or a compression pointer.
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let len = *packet.get(at)? as usize;
            match len {
                0 => return Some(at + 1),
                l if l & 0xC0 == 0xC0 => return Some(at + 2),
                l if l & 0xC0 != 0 => return None,
                l => at += 1 + l,
            }
        }
    };
    let Some(questions) = u16_at(4) else {
        return found;
    };
    let mut at = 12;
    for _ in 0..questions {
        let Some(end) = skip_name(at) else {
            return found;
        };
        at = end + 4;
    }
    // Answer and authority sections are empty in a query (checked before parsing).
    let additional = u16_at(10).unwrap_or(0);
    let mut seen = false;
    for _ in 0..additional {
        let Some(end) = skip_name(at) else {
            return found;
        };
        let (Some(rtype), Some(rdlen)) = (u16_at(end), u16_at(end + 8)) else {
            return found;
        };
        let rdata_at = end + 10;
        let Some(rdata) = packet.get(rdata_at..rdata_at + rdlen as usize) else {
            return found;
        };
        if rtype == crate::wire::RecordType::OPT.0 {
            found.opt = true;
            // A malformed option list ends the walk, and makes the query a FORMERR.
            let walked = crate::wire::each_edns_option(rdata, |code, data| {
                if code == OPTION_ECS && found.ecs.is_ok() {
                    if std::mem::replace(&mut seen, true) {
                        found.ecs = Err(EcsError::Repeated);
                    } else if let [_, _, source, _, address @ ..] = data
                        && address.len() != source.div_ceil(8) as usize
                    {
                        found.ecs = Err(EcsError::AddressLength);
                    }
                }
                if code == OPTION_COOKIE && found.cookie.is_ok() {
                    found.cookie = match found.cookie {
                        Ok(Some(_)) => Err(CookieError::Repeated),
                        _ => QueryCookie::parse(data).map(Some),
                    };
                }
                found.asks.note(code, data);
                Some(())
            });
            found.options_ok &= walked.is_some();
        }
        at = rdata_at + rdlen as usize;
    }
    found
}
