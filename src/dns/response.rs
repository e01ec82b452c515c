//! From a query's bytes to a response's bytes, against one snapshot.
//!
//! The request is parsed with hickory-server's `Request` (header, question as the client sent
//! it, EDNS with ECS). The response is written here, byte by byte, from record bodies the
//! snapshot already encoded: the question is copied verbatim and every owner name is a pointer
//! into it, so the client's spelling survives; truncation drops whole sections and keeps the
//! header counts true; negative answers carry the SOA at its RFC 2308 TTL.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::OpCode;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use super::ecs::ClientSubnet;
use super::options::{ExplainAccess, ServeOptions};
use super::query::{EdnsView, KeepaliveAsk, QueryView, parse_plain};
use crate::answer::{EncodedRrset, NameLookup, NameNode, Snapshot};
use crate::net::unmap;
use crate::wire::{
    CLASS_CH, CLASS_IN, FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, FLAG_TC, Outcome, RDATA_OFFSET, Rcode,
    RecordType, Transport, label_offsets,
};

// Type numbers as patterns, from the one table in `wire`.
const TYPE_OPT: u16 = RecordType::OPT.0;
const QTYPE_TXT: u16 = RecordType::TXT.0;
const QTYPE_A: u16 = RecordType::A.0;
const QTYPE_CNAME: u16 = RecordType::CNAME.0;
const QTYPE_AAAA: u16 = RecordType::AAAA.0;
const QTYPE_IXFR: u16 = RecordType::IXFR.0;
const QTYPE_AXFR: u16 = RecordType::AXFR.0;
const QTYPE_ANY: u16 = RecordType::ANY.0;
/// Bound on CNAME chains followed inside one zone.
const MAX_CNAME_HOPS: usize = 8;
/// Compression pointers address at most this offset.
const MAX_POINTER: usize = 0x3FFF;

/// EDNS details of the query that shape the response.
struct EdnsReply<'a> {
    dnssec_ok: bool,
    subnet: Option<ClientSubnet>,
    scope: u8,
    extended_rcode: u8,
    /// The COOKIE option to answer with: the client cookie, then the server cookie.
    cookie: Option<[u8; 24]>,
    /// The NSID option to answer with: this instance's identity (RFC 5001).
    nsid: Option<&'a [u8]>,
    /// The edns-tcp-keepalive option to answer with: the idle timeout in units of 100 ms.
    keepalive: Option<u16>,
    /// Why the answer is an error, for people reading dig (RFC 8914).
    error: Option<ExtendedError>,
}

/// An Extended DNS Error (RFC 8914): an info-code and words for people.
#[derive(Debug, Clone, Copy)]
struct ExtendedError {
    code: u16,
    text: &'static str,
}

/// RFC 8914 info-codes used here.
const EDE_OTHER: u16 = 0;
const EDE_PROHIBITED: u16 = 18;
const EDE_NOT_AUTHORITATIVE: u16 = 20;
const EDE_NOT_SUPPORTED: u16 = 21;

/// The EDNS option code of Extended DNS Errors.
const OPTION_EDE: u16 = 15;

/// Says why, when the query had EDNS to carry it.
fn explain_error(edns: &mut Option<EdnsReply>, code: u16, text: &'static str) {
    if let Some(reply) = edns.as_mut() {
        reply.error = Some(ExtendedError { code, text });
    }
}

/// Builds the response to `packet` into `out`. Returns `None` when nothing must be sent
/// (responses, runts): the rule for those is silence, never an error. Ordinary queries are
/// parsed in place without allocating ([`parse_plain`]); hickory parses the rest.
pub fn respond(
    snapshot: &Snapshot,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    options: &ServeOptions,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    respond_with(snapshot, packet, src, transport, options, out, parse_plain)
}

/// Like [`respond`], but always through hickory's parser: the general path, which the fast
/// path must match byte for byte (tests compare the two).
pub fn respond_general(
    snapshot: &Snapshot,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    options: &ServeOptions,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    respond_with(snapshot, packet, src, transport, options, out, |_| None)
}

/// Answers with `fast` parsing what it can and hickory the rest.
fn respond_with(
    snapshot: &Snapshot,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    options: &ServeOptions,
    out: &mut Vec<u8>,
    fast: fn(&[u8]) -> Option<QueryView<'_>>,
) -> Option<Outcome> {
    if let Err(early) = precheck(packet, out) {
        return early;
    }
    match fast(packet) {
        Some(view) => Some(respond_to(
            snapshot, packet, &view, src, transport, options, out,
        )),
        None => respond_parsed_by_hickory(snapshot, packet, src, transport, options, out),
    }
}

/// What is decided before parsing: silence for responses and runts; FORMERR for a header no
/// query has.
fn precheck(packet: &[u8], out: &mut Vec<u8>) -> Result<(), Option<Outcome>> {
    out.clear();
    if packet.len() < 12 || packet[2] & FLAG_QR != 0 {
        return Err(None);
    }
    // A query has one question, no answer or authority records, and at most an OPT (and a
    // signature) in the additional section. Anything else is refused before parsing, so a
    // header claiming 65,535 records cannot make the parser allocate for them.
    // No question is a query only to learn a server cookie (RFC 7873 §5.4), so it must
    // carry an OPT record; the parser checks the rest.
    let cookie_only = count(packet, 4) == 0 && opcode(packet) == 0 && count(packet, 10) >= 1;
    if (count(packet, 4) != 1 && !cookie_only)
        || count(packet, 6) != 0
        || count(packet, 8) != 0
        || count(packet, 10) > 2
    {
        // Another opcode's message need not look like a query: whatever its sections, it
        // is not implemented here (ISC's EDNS compliance test sends opcode 15 bare).
        let rcode = if opcode(packet) != 0 {
            Rcode::NotImp
        } else {
            Rcode::FormErr
        };
        return Err(Some(header_only(packet, rcode, out)));
    }
    Ok(())
}

fn respond_parsed_by_hickory(
    snapshot: &Snapshot,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    options: &ServeOptions,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let protocol = match transport {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
    };
    let Ok(request) = Request::from_bytes(packet.to_vec(), src, protocol) else {
        // An opcode the parser does not know is not a malformed query: not implemented.
        let rcode = if opcode(packet) != 0 {
            Rcode::NotImp
        } else {
            Rcode::FormErr
        };
        return Some(header_only(packet, rcode, out));
    };
    let one_question = request.queries.len() == 1;
    let wire = super::query::check_wire_options(packet);
    let view = QueryView {
        question: if one_question {
            request.queries.as_bytes()
        } else {
            &[]
        },
        one_question,
        opcode_query: request.metadata.op_code == OpCode::Query,
        edns: request.edns.as_ref().map(|e| EdnsView {
            max_payload: e.max_payload(),
            version: e.version(),
            dnssec_ok: e.flags().dnssec_ok,
            subnet: wire.ecs.and_then(|()| ClientSubnet::from_edns(e)),
            cookie: wire.cookie,
            asks: wire.asks,
        }),
    };
    Some(respond_to(
        snapshot, packet, &view, src, transport, options, out,
    ))
}

/// Writes the response to a parsed query.
fn respond_to(
    snapshot: &Snapshot,
    packet: &[u8],
    query: &QueryView<'_>,
    src: SocketAddr,
    transport: Transport,
    options: &ServeOptions,
    out: &mut Vec<u8>,
) -> Outcome {
    // Header: ID, opcode, RD and CD copied; QR set; RA clear.
    out.extend_from_slice(&packet[0..2]);
    out.push(FLAG_QR | (packet[2] & (0x78 | FLAG_RD)));
    out.push(packet[3] & FLAG_CD);
    out.extend_from_slice(&[0; 8]);

    let mut edns = query.edns.as_ref().map(|e| EdnsReply {
        dnssec_ok: e.dnssec_ok,
        subnet: None,
        scope: 0,
        extended_rcode: 0,
        cookie: None,
        nsid: e.asks.nsid.then(|| options.nsid()),
        keepalive: None,
        error: None,
    });
    let question = query.question;
    let one_question = query.one_question;
    if one_question {
        out.extend_from_slice(question);
        set_count(out, 4, 1);
    }

    let limit = match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => match &query.edns {
            Some(e) => e.max_payload.clamp(512, options.max_udp_payload.max(512)) as usize,
            None => 512,
        },
    };

    let mut zone = None;
    let mut exchange = Exchange {
        source: src.ip(),
        transport,
        truncate: false,
        cookie_valid: false,
        optional_from: 0,
    };
    let rcode = 'rcode: {
        if let (Some(e), Some(reply)) = (&query.edns, edns.as_mut()) {
            // The cookie is answered whatever the rcode (RFC 7873 §5.2), even BADVERS.
            match e.cookie {
                Ok(Some(cookie)) => {
                    exchange.cookie_valid = options.cookies.valid(&cookie, src.ip());
                    let server = options
                        .cookies
                        .answer(&cookie, src.ip(), exchange.cookie_valid);
                    let mut both = [0u8; 24];
                    both[..8].copy_from_slice(&cookie.client());
                    both[8..].copy_from_slice(&server);
                    reply.cookie = Some(both);
                }
                Ok(None) => {}
                Err(_) => break 'rcode Rcode::FormErr,
            }
            if e.version > 0 {
                break 'rcode Rcode::BadVers;
            }
            // RFC 7828 §3.3.1: ignored over UDP; over TCP, empty in a query.
            match (e.asks.keepalive, transport) {
                (KeepaliveAsk::Absent, _) | (_, Transport::Udp) => {}
                (KeepaliveAsk::Asked, Transport::Tcp) => reply.keepalive = Some(KEEPALIVE),
                (KeepaliveAsk::WithTimeout, Transport::Tcp) => break 'rcode Rcode::FormErr,
            }
            match e.subnet {
                Ok(subnet) => reply.subnet = subnet,
                Err(_) => break 'rcode Rcode::FormErr,
            }
        }
        if !one_question {
            // Without a question, a query that brought a cookie learns ours (RFC 7873 §5.4).
            let cookie_only = edns.as_ref().is_some_and(|e| e.cookie.is_some());
            break 'rcode if cookie_only && query.opcode_query {
                Rcode::NoError
            } else {
                Rcode::FormErr
            };
        }
        if !query.opcode_query {
            break 'rcode Rcode::NotImp;
        }
        answer_question(
            snapshot,
            question,
            &mut exchange,
            &mut edns,
            options,
            &mut zone,
            out,
        )
    };

    if let Some(reply) = edns.as_mut() {
        reply.extended_rcode = ((rcode as u16) >> 4) as u8;
    }
    out[3] |= (rcode as u16 & 0x0F) as u8;
    let mut truncated = false;
    let opt_len = edns.as_ref().map_or(0, opt_len);
    if !exchange.truncate
        && exchange.optional_from > 0
        && out.len() + opt_len > limit
        && exchange.optional_from + opt_len <= limit
    {
        out.truncate(exchange.optional_from);
        set_count(out, 10, 0);
    }
    if exchange.truncate || out.len() + opt_len > limit {
        // Whole sections only: header, question, OPT. The client retries over TCP.
        let keep = 12 + if one_question { question.len() } else { 0 };
        out.truncate(keep);
        out[2] |= FLAG_TC;
        for count_at in [6, 8, 10] {
            set_count(out, count_at, 0);
        }
        truncated = true;
    }
    if let Some(reply) = &edns {
        push_opt(out, reply, options.max_udp_payload);
        let additional = count(out, 10) + 1;
        set_count(out, 10, additional);
    }
    Outcome {
        rcode,
        truncated,
        zone,
        qtype: match question.len() {
            n if one_question && n >= 4 => u16::from_be_bytes([question[n - 4], question[n - 3]]),
            _ => 0,
        },
        question_len: if one_question {
            u16::try_from(question.len()).unwrap_or(0)
        } else {
            0
        },
        subnet: edns
            .as_ref()
            .and_then(|e| e.subnet)
            .map(|s| (s.address, s.source_prefix)),
        cookie_valid: exchange.cookie_valid,
    }
}

/// A header-only FORMERR for a query whose body cannot be parsed.
fn header_only(packet: &[u8], rcode: Rcode, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    out.extend_from_slice(&packet[0..2]);
    out.push(FLAG_QR | (packet[2] & (0x78 | FLAG_RD)));
    out.push((packet[3] & FLAG_CD) | (rcode as u16 & 0x0F) as u8);
    out.extend_from_slice(&[0; 8]);
    Outcome {
        rcode,
        truncated: false,
        zone: None,
        qtype: 0,
        question_len: 0,
        subnet: None,
        cookie_valid: false,
    }
}

/// The header's OPCODE (0: QUERY).
fn opcode(packet: &[u8]) -> u8 {
    (packet[2] >> 3) & 0x0F
}

fn count(out: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([out[at], out[at + 1]])
}

fn set_count(out: &mut [u8], at: usize, value: u16) {
    out[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

fn opt_len(reply: &EdnsReply) -> usize {
    11 + reply
        .subnet
        .map_or(0, |s| 8 + s.source_prefix.div_ceil(8) as usize)
        + reply.cookie.map_or(0, |c| 4 + c.len())
        + reply.nsid.map_or(0, |n| 4 + n.len())
        + reply.keepalive.map_or(0, |_| 6)
        + reply.error.map_or(0, |e| 6 + e.text.len())
}

fn push_opt(out: &mut Vec<u8>, reply: &EdnsReply, payload: u16) {
    out.push(0); // root owner
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&payload.to_be_bytes());
    out.push(reply.extended_rcode);
    out.push(0); // version
    out.push(if reply.dnssec_ok { 0x80 } else { 0 });
    out.push(0);
    let rdlen_at = out.len();
    out.extend_from_slice(&[0, 0]);
    if let Some(subnet) = &reply.subnet {
        subnet.push_option(out, reply.scope);
    }
    if let Some(cookie) = &reply.cookie {
        out.extend_from_slice(&super::cookie::OPTION_COOKIE.to_be_bytes());
        out.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
        out.extend_from_slice(cookie);
    }
    if let Some(timeout) = reply.keepalive {
        out.extend_from_slice(&super::query::OPTION_TCP_KEEPALIVE.to_be_bytes());
        out.extend_from_slice(&2u16.to_be_bytes());
        out.extend_from_slice(&timeout.to_be_bytes());
    }
    if let Some(error) = reply.error {
        out.extend_from_slice(&OPTION_EDE.to_be_bytes());
        out.extend_from_slice(&(2 + error.text.len() as u16).to_be_bytes());
        out.extend_from_slice(&error.code.to_be_bytes());
        out.extend_from_slice(error.text.as_bytes());
    }
    if let Some(nsid) = reply.nsid {
        out.extend_from_slice(&super::query::OPTION_NSID.to_be_bytes());
        out.extend_from_slice(&(nsid.len() as u16).to_be_bytes());
        out.extend_from_slice(nsid);
    }
    let rdlen = (out.len() - rdlen_at - 2) as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
}

/// Appends a record: a pointer to `owner` (an offset in `out`) and a pre-encoded body.
/// Returns the offset of the body's RDATA.
fn push_record(out: &mut Vec<u8>, owner: usize, body: &[u8]) -> usize {
    let pointer = 0xC000 | (owner.min(MAX_POINTER) as u16);
    out.extend_from_slice(&pointer.to_be_bytes());
    let rdata_at = out.len() + RDATA_OFFSET;
    out.extend_from_slice(body);
    rdata_at
}

/// `_explain.<steered name>` TXT: the steering decision for the asking client, in short.
/// `None` when the name is not a debug name (the ordinary lookup then answers).
fn answer_explain(
    snapshot: &Snapshot,
    name: &[u8],
    exchange: &mut Exchange,
    edns: &mut Option<EdnsReply>,
    access: &ExplainAccess,
    options: &ServeOptions,
    out: &mut Vec<u8>,
) -> Option<Rcode> {
    let first = name.get(1..1 + *name.first()? as usize)?;
    if !first.eq_ignore_ascii_case(access.label.as_bytes()) {
        return None;
    }
    let target = wire_to_text(&name[1 + first.len()..])?;
    let source = unmap(exchange.source);
    if !access.allowed.is_empty() && !access.allowed.iter().any(|p| p.contains(source)) {
        explain_error(
            edns,
            EDE_PROHIBITED,
            "debug names are not answered to this network",
        );
        return Some(Rcode::Refused);
    }
    if exchange.transport == Transport::Udp && access.allowed.is_empty() && !exchange.cookie_valid {
        // An explanation is several times its query: over UDP from an address nobody
        // vouched for (`--explain-from`), it would make geosteer a reflection amplifier.
        // The client comes back over TCP, which proves its address.
        exchange.truncate = true;
        return Some(Rcode::NoError);
    }
    let subnet = edns.as_ref().and_then(|e| e.subnet);
    let (client, seen) = match subnet.and_then(|s| s.client().map(|c| (c.0, s))) {
        Some((ip, s)) => (
            ip,
            format!(
                "client {}/{} (ECS, from {source})",
                s.address, s.source_prefix
            ),
        ),
        None => (source, format!("client {source} (no ECS)")),
    };
    let explanation = snapshot.explain(&target, client).ok()?;
    if let Some(reply) = edns.as_mut()
        && let Some(s) = reply.subnet
    {
        // Specific to this client: never reuse for another.
        reply.scope = s.source_prefix;
    }
    let strings = explanation.txt_strings(seen, &options.identity);
    let mut rdata = Vec::new();
    for text in &strings {
        let bytes = &text.as_bytes()[..text.len().min(255)];
        rdata.push(bytes.len() as u8);
        rdata.extend_from_slice(bytes);
    }
    out.extend_from_slice(&0xC00Cu16.to_be_bytes());
    out.extend_from_slice(&RecordType::TXT.0.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(rdata.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    set_count(out, 6, 1);
    Some(Rcode::NoError)
}

/// Presentation form of a lowercase wire name (`\x06ingest\x04test\x00` → `ingest.test.`).
fn wire_to_text(wire: &[u8]) -> Option<String> {
    let mut text = String::new();
    let mut at = 0;
    loop {
        let len = *wire.get(at)? as usize;
        if len == 0 {
            return Some(if text.is_empty() { ".".into() } else { text });
        }
        text.push_str(std::str::from_utf8(wire.get(at + 1..at + 1 + len)?).ok()?);
        text.push('.');
        at += 1 + len;
    }
}

/// Who asked and how, and whether the answer must be truncated whatever its size.
struct Exchange {
    source: IpAddr,
    transport: Transport,
    /// Answer over TCP only: a debug name asked over UDP by a source nobody vouched for.
    truncate: bool,
    /// The query returned a valid server cookie: its source address is proven.
    cookie_valid: bool,
    /// Where optional additional records start (0: none): what is past it is left out,
    /// without TC, when the response would not fit otherwise (RFC 2181 §9).
    optional_from: usize,
}

/// The idle timeout a TCP connection is told, in the 100 ms units of RFC 7828.
const KEEPALIVE: u16 = (super::options::TCP_IDLE_TIMEOUT.as_millis() / 100) as u16;

/// Record sets longer than this get additional data for their first records only.
const MAX_ADDITIONAL_TARGETS: usize = 16;

/// Writes the additional data of `set`'s records, whose RDATA start at `targets`, each
/// owned by a pointer to its record's target name; returns how many were written.
fn push_additional(out: &mut Vec<u8>, set: &EncodedRrset, targets: &[usize]) -> u16 {
    let Some(offset) = set.target_offset() else {
        return 0;
    };
    let mut written = 0u16;
    for (bodies, &rdata_at) in set.additional.iter().zip(targets) {
        if rdata_at + offset > MAX_POINTER {
            break; // past what a compression pointer reaches (TCP only)
        }
        for body in bodies {
            push_record(out, rdata_at + offset, body);
            written = written.saturating_add(1);
        }
    }
    written
}

/// Answers one IN-class question; writes answer, authority and additional records after the
/// question and returns the rcode. Sets AA for authoritative data, and `zone_index` to the
/// policy index of the zone the question is in.
fn answer_question(
    snapshot: &Snapshot,
    question: &[u8],
    exchange: &mut Exchange,
    edns: &mut Option<EdnsReply>,
    options: &ServeOptions,
    zone_index: &mut Option<usize>,
    out: &mut Vec<u8>,
) -> Rcode {
    // The question is QNAME, QTYPE, QCLASS; a compressed QNAME is not a real query.
    if question.len() < 5 {
        return Rcode::FormErr;
    }
    let qname = &question[..question.len() - 4];
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let qclass = u16::from_be_bytes([question[question.len() - 2], question[question.len() - 1]]);
    let mut lower = [0u8; 255];
    let Some(name) = lower.get_mut(..qname.len()) else {
        return Rcode::FormErr;
    };
    name.copy_from_slice(qname);
    name.make_ascii_lowercase();
    let mut labels = [0u8; 128];
    let Some(label_count) = label_offsets(name, &mut labels) else {
        return Rcode::FormErr;
    };
    if qtype == TYPE_OPT {
        return Rcode::FormErr;
    }
    if qclass == CLASS_CH {
        return super::chaos::answer_chaos(name, qtype, options, out);
    }
    if qclass != CLASS_IN {
        // HS and ANY class: never answered with IN data.
        explain_error(edns, EDE_NOT_SUPPORTED, "class IN only");
        return Rcode::Refused;
    }
    if qtype == QTYPE_AXFR || qtype == QTYPE_IXFR {
        explain_error(edns, EDE_PROHIBITED, "no zone transfers");
        return Rcode::Refused;
    }
    let Some((zone, origin_offset)) = snapshot.find_zone(name, &labels[..label_count]) else {
        explain_error(edns, EDE_NOT_AUTHORITATIVE, "");
        return Rcode::Refused;
    };
    *zone_index = Some(zone.index);
    out[2] |= FLAG_AA;

    if let Some(access) = &options.explain
        && matches!(qtype, QTYPE_TXT | QTYPE_ANY)
        && let Some(rcode) = answer_explain(snapshot, name, exchange, edns, access, options, out)
    {
        return rcode;
    }

    // The name being answered: starts as the question name, moves along in-zone CNAMEs.
    let mut current = [0u8; 255];
    let mut current_len = name.len();
    current[..current_len].copy_from_slice(name);
    let mut current_labels = labels;
    let mut current_label_count = label_count;
    let mut current_origin = origin_offset;
    let mut owner = 12usize;
    let mut answers = 0u16;

    for _ in 0..MAX_CNAME_HOPS {
        let name = &current[..current_len];
        match zone.lookup(name, &current_labels[..current_label_count], current_origin) {
            NameLookup::Referral(delegation, cut) => {
                if answers > 0 {
                    // Answer so far is the CNAME; the resolver follows the referral itself.
                    break;
                }
                out[2] &= !FLAG_AA;
                let mut targets = [0usize; MAX_ADDITIONAL_TARGETS];
                for (i, body) in delegation.ns.bodies.iter().enumerate() {
                    let at = push_record(out, owner + cut, body);
                    if let Some(slot) = targets.get_mut(i) {
                        *slot = at;
                    }
                }
                set_count(out, 8, delegation.ns.bodies.len() as u16);
                // In-domain glue is required: when it does not fit, the referral is
                // truncated (RFC 9471), so it is not marked optional.
                let glue = push_additional(out, &delegation.ns, &targets);
                set_count(out, 10, glue);
                return Rcode::NoError;
            }
            NameLookup::NxDomain => {
                push_record(out, owner + current_origin, &zone.negative_soa);
                set_count(out, 6, answers);
                set_count(out, 8, 1);
                return Rcode::NxDomain;
            }
            NameLookup::Found(NameNode::EmptyNonTerminal) => break,
            NameLookup::Found(NameNode::Steered(_))
                if !matches!(qtype, QTYPE_A | QTYPE_AAAA | QTYPE_ANY) =>
            {
                // Other types at a steered name are NODATA for everyone: no need to locate.
                break;
            }
            NameLookup::Found(NameNode::Steered(table)) => {
                let subnet = edns.as_ref().and_then(|e| e.subnet);
                let (client, unmapped) = subnet
                    .and_then(|s| s.client())
                    .unwrap_or((unmap(exchange.source), false));
                let asked = match qtype {
                    QTYPE_A => [true, false],
                    QTYPE_AAAA => [false, true],
                    // ANY over UDP gets one RRset (RFC 8482), the addresses of one family.
                    _ if exchange.transport == Transport::Udp => [true, false],
                    _ => [true, true],
                };
                let mut chosen =
                    table.answer_for(client, &snapshot.geo, snapshot.asn.as_deref(), asked);
                if qtype == QTYPE_ANY
                    && exchange.transport == Transport::Udp
                    && chosen.families[0].is_some_and(|(_, bodies)| bodies.is_empty())
                {
                    let v6 = [false, true];
                    chosen = table.answer_for(client, &snapshot.geo, snapshot.asn.as_deref(), v6);
                }
                if let Some(reply) = edns.as_mut()
                    && let Some(subnet) = reply.subnet
                    && subnet.client().is_some()
                {
                    reply.scope = subnet.response_scope(chosen.scope, unmapped);
                }
                if chosen.servfail() {
                    // Every node allowed for this client is down and the name fails closed.
                    explain_error(
                        edns,
                        EDE_OTHER,
                        "every node allowed for this client is down",
                    );
                    out.truncate(12 + question.len());
                    out[2] &= !FLAG_AA;
                    for at in [6, 8, 10] {
                        set_count(out, at, 0);
                    }
                    return Rcode::ServFail;
                }
                for (family, bodies) in chosen.families.iter().flatten() {
                    for body in *bodies {
                        push_record(out, owner, body);
                        answers += 1;
                    }
                    if let Some(counters) = snapshot.zone_counters.get(zone.index) {
                        counters.answered(&family.nodes);
                    }
                }
                if answers == 0 {
                    break;
                }
                set_count(out, 6, answers);
                return Rcode::NoError;
            }
            NameLookup::Found(NameNode::Static(sets)) => {
                let mut matched = false;
                // ANY over UDP gets one RRset (RFC 8482): the zone cannot be made to reflect
                // everything it holds at a name to a forged source. TCP gets them all.
                let any_sets = match exchange.transport {
                    Transport::Udp => 1,
                    Transport::Tcp => sets.len(),
                };
                for set in sets
                    .iter()
                    .filter(|s| s.rtype == qtype || qtype == QTYPE_ANY)
                    .take(if qtype == QTYPE_ANY {
                        any_sets
                    } else {
                        sets.len()
                    })
                {
                    let mut targets = [0usize; MAX_ADDITIONAL_TARGETS];
                    for (i, body) in set.bodies.iter().enumerate() {
                        let at = push_record(out, owner, body);
                        if let Some(slot) = targets.get_mut(i) {
                            *slot = at;
                        }
                        answers += 1;
                    }
                    matched = true;
                    if qtype == set.rtype && set.target_offset().is_some() {
                        // The targets' addresses save the resolver a lookup; they are
                        // dropped, not truncated for, when they do not fit.
                        exchange.optional_from = out.len();
                        let added = push_additional(out, set, &targets);
                        set_count(out, 10, added);
                    }
                }
                if matched {
                    set_count(out, 6, answers);
                    return Rcode::NoError;
                }
                let Some(cname) = sets.iter().find(|s| s.rtype == QTYPE_CNAME) else {
                    break;
                };
                let Some(body) = cname.bodies.first() else {
                    break;
                };
                let target_at = push_record(out, owner, body);
                answers += 1;
                set_count(out, 6, answers);
                // Follow the alias only inside this zone; otherwise the resolver does it.
                let target = &body[RDATA_OFFSET..];
                let Some(count) = label_offsets(target, &mut current_labels) else {
                    return Rcode::NoError;
                };
                let origin_at = current_labels[..count]
                    .iter()
                    .map(|&o| o as usize)
                    .find(|&o| target[o..] == *zone.origin);
                match origin_at {
                    Some(o) if target_at <= MAX_POINTER && target.len() <= current.len() => {
                        current[..target.len()].copy_from_slice(target);
                        current_len = target.len();
                        current_label_count = count;
                        current_origin = o;
                        owner = target_at;
                    }
                    _ => return Rcode::NoError,
                }
            }
        }
    }
    // NODATA: the name exists, the type does not (or the CNAME chain ended without data).
    set_count(out, 6, answers);
    if answers == 0 {
        push_record(out, owner + current_origin, &zone.negative_soa);
        set_count(out, 8, 1);
    }
    Rcode::NoError
}
