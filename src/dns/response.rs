//! From a query's bytes to a response's bytes, against one snapshot.
//!
//! Ordinary queries are parsed in place (`query`), anything else with hickory-server's
//! `Request` (header, question as the client sent it, EDNS with ECS). The response is written
//! through the answer writer (`writer`, which counts its sections) from record bodies the
//! snapshot already encoded: the question is copied verbatim and every owner name is a
//! pointer into it, so the client's spelling survives; truncation drops whole sections;
//! negative answers carry the SOA at its RFC 2308 TTL. A question is answered in phases:
//! read it, find its zone, then follow the name through the zone — a referral, a steered
//! name (located by ECS or the source), or static records (with the CNAME chase).

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::OpCode;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use super::ecs::ClientSubnet;
use super::options::{ExplainAccess, ServeOptions};
use super::query::{EdnsView, KeepaliveAsk, QueryView, parse_plain};
use super::writer::{HEADER, MAX_POINTER, Section, Writer};
use crate::answer::{
    Delegation, EncodedRrset, NameLookup, NameNode, SignedNsec, Snapshot, SteeredTable,
    ZoneAnswers, ZoneSigned,
};
use crate::net::unmap;
use crate::wire::{
    CLASS_CH, CLASS_IN, FLAG_QR, Outcome, RDATA_OFFSET, Rcode, RecordType, ResponseKind, Transport,
    label_offsets,
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
const QTYPE_DS: u16 = RecordType::DS.0;
const QTYPE_NSEC: u16 = RecordType::NSEC.0;
const QTYPE_RRSIG: u16 = RecordType::RRSIG.0;
/// Bound on CNAME chains followed inside one zone.
const MAX_CNAME_HOPS: usize = 8;

/// EDNS details of the query that shape the response.
#[derive(Default)]
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
        return Err(Some(header_only(packet, rcode, None, out)));
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
    let wire = super::query::check_wire_options(packet);
    let Ok(request) = Request::from_bytes(packet.to_vec(), src, protocol) else {
        // An opcode the parser does not know is not a malformed query: not implemented.
        if opcode(packet) != 0 {
            return Some(header_only(packet, Rcode::NotImp, None, out));
        }
        // A query with an OPT record gets one back, whatever made it unreadable, as a
        // FORMERR for a bad option always does.
        let opt = wire.opt.then_some(options.max_udp_payload);
        return Some(header_only(packet, Rcode::FormErr, opt, out));
    };
    let one_question = request.queries.len() == 1;
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
            options_ok: wire.options_ok,
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
    let mut writer = Writer::start(packet, one_question.then_some(question), out);
    let mut zone = None;
    let mut exchange = Exchange {
        source: src.ip(),
        transport,
        truncate: false,
        cookie_valid: false,
        optional_from: 0,
        wildcard: None,
    };
    let rcode = match edns_rcode(query, &mut edns, &mut exchange, options) {
        Some(rcode) => rcode,
        None if !one_question => {
            // Without a question, a query that brought a cookie learns ours (RFC 7873 §5.4).
            let cookie_only = edns.as_ref().is_some_and(|e| e.cookie.is_some());
            if cookie_only && query.opcode_query {
                Rcode::NoError
            } else {
                Rcode::FormErr
            }
        }
        None if !query.opcode_query => Rcode::NotImp,
        None => {
            let mut asked = Asked {
                snapshot,
                signed: None,
                proofs: [None; MAX_CNAME_HOPS],
                nsec_written: [0; 2 * MAX_CNAME_HOPS],
                exchange: &mut exchange,
                edns: &mut edns,
                options,
                writer: &mut writer,
            };
            answer_question(&mut asked, question, &mut zone)
        }
    };
    if let Some(reply) = edns.as_mut() {
        reply.extended_rcode = ((rcode as u16) >> 4) as u8;
    }
    writer.rcode(rcode);
    let mut limit = size_limit(query, transport, options);
    if transport == Transport::Udp && !exchange.cookie_valid {
        // A source nobody vouched for is sent at most three times what it sent: optional
        // additional data goes first, then the answer is truncated (TC: retry over TCP,
        // or with a cookie).
        limit = limit.min(AMPLIFICATION * packet.len());
    }
    let truncated = fit(&mut writer, &exchange, edns.as_ref(), limit);
    if let Some(reply) = &edns {
        writer.record_with(Section::Additional, |out| {
            push_opt(out, reply, options.max_udp_payload)
        });
    }
    let kind = match rcode {
        _ if zone.is_none() => ResponseKind::Error,
        Rcode::NoError => match exchange.wildcard {
            Some(wildcard) => ResponseKind::Wildcard(wildcard),
            None if writer.count(Section::Answer) > 0 => ResponseKind::Answer,
            None => ResponseKind::Empty,
        },
        Rcode::NxDomain => ResponseKind::Empty,
        _ => ResponseKind::Error,
    };
    writer.finish();
    Outcome {
        rcode,
        truncated,
        zone,
        kind,
        ecs_scope: edns.as_ref().map_or(0, |e| e.scope),
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

/// The largest response the client takes: 64 KiB over TCP; over UDP its EDNS payload
/// size within ours, 512 bytes without EDNS.
fn size_limit(query: &QueryView<'_>, transport: Transport, options: &ServeOptions) -> usize {
    match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => match &query.edns {
            Some(e) => e.max_payload.clamp(512, options.max_udp_payload.max(512)) as usize,
            None => 512,
        },
    }
}

/// What the query's EDNS decides before the question is looked at: the cookie (answered
/// whatever the rcode, RFC 7873 §5.2, even BADVERS), the version, keepalive and ECS; an
/// rcode when the query is refused for them.
fn edns_rcode(
    query: &QueryView<'_>,
    edns: &mut Option<EdnsReply>,
    exchange: &mut Exchange,
    options: &ServeOptions,
) -> Option<Rcode> {
    let (Some(e), Some(reply)) = (&query.edns, edns.as_mut()) else {
        return None;
    };
    if !e.options_ok {
        return Some(Rcode::FormErr);
    }
    let source = exchange.source;
    match e.cookie {
        Ok(Some(cookie)) => {
            exchange.cookie_valid = options.cookies.valid(&cookie, source);
            let server = options
                .cookies
                .answer(&cookie, source, exchange.cookie_valid);
            let mut both = [0u8; 24];
            both[..8].copy_from_slice(&cookie.client());
            both[8..].copy_from_slice(&server);
            reply.cookie = Some(both);
        }
        Ok(None) => {}
        Err(_) => return Some(Rcode::FormErr),
    }
    if e.version > 0 {
        return Some(Rcode::BadVers);
    }
    // RFC 7828 §3.3.1: ignored over UDP; over TCP, empty in a query.
    match (e.asks.keepalive, exchange.transport) {
        (KeepaliveAsk::Absent, _) | (_, Transport::Udp) => {}
        (KeepaliveAsk::Asked, Transport::Tcp) => reply.keepalive = Some(KEEPALIVE),
        (KeepaliveAsk::WithTimeout, Transport::Tcp) => return Some(Rcode::FormErr),
    }
    match e.subnet {
        Ok(subnet) => reply.subnet = subnet,
        Err(_) => return Some(Rcode::FormErr),
    }
    None
}

/// Makes the response fit `limit` with room for the OPT record: first by leaving out
/// optional additional data, else by truncating to whole sections (header, question, OPT)
/// with TC, so the client retries over TCP. Whether it was truncated.
fn fit(writer: &mut Writer, exchange: &Exchange, edns: Option<&EdnsReply>, limit: usize) -> bool {
    let opt_len = edns.map_or(0, opt_len);
    if !exchange.truncate
        && exchange.optional_from > 0
        && writer.len() + opt_len > limit
        && exchange.optional_from + opt_len <= limit
    {
        writer.drop_additional_from(exchange.optional_from);
    }
    if exchange.truncate || writer.len() + opt_len > limit {
        writer.drop_records();
        writer.truncated();
        return true;
    }
    false
}

/// A reply without records (FORMERR, NOTIMP) to a query whose body cannot be parsed, with
/// an empty OPT record offering `payload` when the query had one.
fn header_only(packet: &[u8], rcode: Rcode, payload: Option<u16>, out: &mut Vec<u8>) -> Outcome {
    let mut writer = Writer::start(packet, None, out);
    writer.rcode(rcode);
    if let Some(payload) = payload {
        let empty = EdnsReply::default();
        writer.record_with(Section::Additional, |out| push_opt(out, &empty, payload));
    }
    writer.finish();
    Outcome {
        rcode,
        truncated: false,
        zone: None,
        qtype: 0,
        question_len: 0,
        subnet: None,
        cookie_valid: false,
        ecs_scope: 0,
        kind: ResponseKind::Error,
    }
}

/// The header's OPCODE (0: QUERY).
fn opcode(packet: &[u8]) -> u8 {
    (packet[2] >> 3) & 0x0F
}

fn count(out: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([out[at], out[at + 1]])
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

/// `_explain.<steered name>` TXT: the steering decision for the asking client, in short.
/// `None` when the name is not a debug name (the ordinary lookup then answers).
fn answer_explain(asked: &mut Asked, name: &[u8], access: &ExplainAccess) -> Option<Rcode> {
    let first = name.get(1..1 + *name.first()? as usize)?;
    if !first.eq_ignore_ascii_case(access.label.as_bytes()) {
        return None;
    }
    let target = wire_to_text(&name[1 + first.len()..])?;
    let exchange = &mut *asked.exchange;
    let source = unmap(exchange.source);
    if !access.allowed.is_empty() && !access.allowed.iter().any(|p| p.contains(source)) {
        explain_error(
            asked.edns,
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
    let subnet = asked.edns.as_ref().and_then(|e| e.subnet);
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
    let explanation = asked.snapshot.explain(&target, client).ok()?;
    if let Some(reply) = asked.edns.as_mut()
        && let Some(s) = reply.subnet
    {
        // Specific to this client: never reuse for another.
        reply.scope = s.source_prefix;
    }
    let strings = explanation.txt_strings(seen, &asked.options.identity);
    let mut rdata = Vec::new();
    for text in &strings {
        let bytes = &text.as_bytes()[..text.len().min(255)];
        rdata.push(bytes.len() as u8);
        rdata.extend_from_slice(bytes);
    }
    asked.writer.record_with(Section::Answer, |out| {
        out.extend_from_slice(&0xC00Cu16.to_be_bytes());
        out.extend_from_slice(&RecordType::TXT.0.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    });
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

/// Everything answering a question reads and writes.
struct Asked<'a, 'w> {
    snapshot: &'a Snapshot,
    /// The zone's signatures, when it is signed and the query set DO.
    signed: Option<&'a ZoneSigned>,
    /// Per CNAME hop answered from a wildcard: the NSEC proving the name absent.
    proofs: [Option<&'a SignedNsec>; MAX_CNAME_HOPS],
    /// The NSEC records written so far (addresses; 0: free), so none is written twice.
    nsec_written: [usize; 2 * MAX_CNAME_HOPS],
    exchange: &'a mut Exchange,
    edns: &'a mut Option<EdnsReply<'w>>,
    options: &'a ServeOptions,
    writer: &'a mut Writer<'w>,
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
    /// The wildcard the question was answered from, if one was (its identity).
    wildcard: Option<usize>,
}

/// The most a UDP reply to a source without a valid cookie may be, as a multiple of its
/// query: what a forged source can be made to reflect.
const AMPLIFICATION: usize = 3;

/// The idle timeout a TCP connection is told, in the 100 ms units of RFC 7828.
const KEEPALIVE: u16 = (super::options::TCP_IDLE_TIMEOUT.as_millis() / 100) as u16;

/// Record sets longer than this get additional data for their first records only.
const MAX_ADDITIONAL_TARGETS: usize = 16;

/// Writes the additional data of `set`'s records, whose RDATA start at `targets`, each
/// owned by a pointer to its record's target name.
fn push_additional(writer: &mut Writer, set: &EncodedRrset, targets: &[usize]) {
    let Some(offset) = set.target_offset() else {
        return;
    };
    for (bodies, &rdata_at) in set.additional.iter().zip(targets) {
        if rdata_at + offset > MAX_POINTER {
            break; // past what a compression pointer reaches (TCP only)
        }
        for body in bodies {
            writer.record(Section::Additional, rdata_at + offset, body);
        }
    }
}

/// Writes `set`'s records into `section`, each owned by `owner`; the offsets of the first
/// records' RDATA (where additional data points).
fn push_set(
    writer: &mut Writer,
    section: Section,
    owner: usize,
    set: &EncodedRrset,
) -> [usize; MAX_ADDITIONAL_TARGETS] {
    let mut targets = [0usize; MAX_ADDITIONAL_TARGETS];
    for (i, body) in set.bodies.iter().enumerate() {
        let at = writer.record(section, owner, body);
        if let Some(slot) = targets.get_mut(i) {
            *slot = at;
        }
    }
    targets
}

/// A name in wire form, lowercased, with the offsets of its labels.
struct Name {
    bytes: [u8; 255],
    len: usize,
    labels: [u8; 128],
    label_count: usize,
}

impl Name {
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn labels(&self) -> &[u8] {
        &self.labels[..self.label_count]
    }

    /// Reads a wire name, lowercased, in place (a response is answered without moving
    /// names around); `None` for a compressed or malformed one.
    fn read(&mut self, wire: &[u8]) -> Option<()> {
        let lower = self.bytes.get_mut(..wire.len())?;
        lower.copy_from_slice(wire);
        lower.make_ascii_lowercase();
        self.len = wire.len();
        self.label_count = label_offsets(lower, &mut self.labels)?;
        Some(())
    }
}

/// Answers one question (QNAME, QTYPE, QCLASS): writes answer, authority and additional
/// records after it and returns the rcode. Sets AA for authoritative data, and
/// `zone_index` to the policy index of the zone the question is in.
fn answer_question(asked: &mut Asked, question: &[u8], zone_index: &mut Option<usize>) -> Rcode {
    let n = question.len();
    if n < 5 {
        return Rcode::FormErr;
    }
    let qtype = u16::from_be_bytes([question[n - 4], question[n - 3]]);
    let qclass = u16::from_be_bytes([question[n - 2], question[n - 1]]);
    let mut chase = Chase {
        name: Name {
            bytes: [0; 255],
            len: 0,
            labels: [0; 128],
            label_count: 0,
        },
        origin: 0,
        owner: HEADER,
    };
    if chase.name.read(&question[..n - 4]).is_none() {
        return Rcode::FormErr;
    }
    let name = chase.name.bytes();
    if qtype == TYPE_OPT {
        return Rcode::FormErr;
    }
    if qclass == CLASS_CH {
        return super::chaos::answer_chaos(name, qtype, asked.options, asked.writer);
    }
    let refusal = match (qclass, qtype) {
        // HS and ANY class: never answered with IN data.
        (class, _) if class != CLASS_IN => Some((EDE_NOT_SUPPORTED, "class IN only")),
        (_, QTYPE_AXFR | QTYPE_IXFR) => Some((EDE_PROHIBITED, "no zone transfers")),
        _ => None,
    };
    if let Some((code, text)) = refusal {
        explain_error(asked.edns, code, text);
        return Rcode::Refused;
    }
    let Some((zone, origin_offset)) = asked.snapshot.find_zone(name, chase.name.labels()) else {
        explain_error(asked.edns, EDE_NOT_AUTHORITATIVE, "");
        return Rcode::Refused;
    };
    *zone_index = Some(zone.index);
    asked.writer.authoritative(true);
    if asked.edns.as_ref().is_some_and(|e| e.dnssec_ok) {
        asked.signed = zone.signed.as_ref();
    }
    if let Some(access) = &asked.options.explain
        && matches!(qtype, QTYPE_TXT | QTYPE_ANY)
        && let Some(rcode) = answer_explain(asked, name, access)
    {
        return rcode;
    }
    chase.origin = origin_offset;
    answer_in_zone(asked, zone, qtype, &mut chase)
}

/// The name being answered: the question name, then each in-zone CNAME target in turn.
struct Chase {
    name: Name,
    /// Offset of the zone origin in `name`.
    origin: usize,
    /// Where the name is written in the response (the question, or a CNAME's RDATA).
    owner: usize,
}

/// What one step of the lookup decided.
enum Step {
    /// The response is complete.
    Done(Rcode),
    /// A CNAME was answered and its target is in the zone: look it up next.
    Follow,
    /// The name exists, the type does not (or the chain ended without data).
    NoData,
}

/// Looks the name up, following in-zone CNAMEs; then the proofs that wildcards answered.
fn answer_in_zone(asked: &mut Asked, zone: &ZoneAnswers, qtype: u16, chase: &mut Chase) -> Rcode {
    let rcode = follow_in_zone(asked, zone, qtype, chase);
    for hop in 0..MAX_CNAME_HOPS {
        push_nsec(asked, asked.proofs[hop]);
    }
    rcode
}

/// Looks the name up, following in-zone CNAMEs (at most `MAX_CNAME_HOPS`).
fn follow_in_zone(asked: &mut Asked, zone: &ZoneAnswers, qtype: u16, chase: &mut Chase) -> Rcode {
    for hop in 0..MAX_CNAME_HOPS {
        let mut lookup = zone.lookup(chase.name.bytes(), chase.name.labels(), chase.origin);
        if let NameLookup::Referral(_, 0) = lookup
            && qtype == QTYPE_DS
        {
            // DS lives on the parent's side of a cut (RFC 4035 §3.1.4.1): ours to deny.
            lookup = NameLookup::Found(&NameNode::EmptyNonTerminal);
        }
        let wildcard = match lookup {
            NameLookup::Wildcard(node, name) => {
                if hop == 0 {
                    asked.exchange.wildcard = Some(std::ptr::from_ref(node) as usize);
                }
                Some(name)
            }
            _ => None,
        };
        if let (Some(signed), Some(_)) = (asked.signed, wildcard)
            && let Some(slot) = asked.proofs.get_mut(hop)
        {
            // Answered from a wildcard: the name itself is proven absent (RFC 4035
            // §3.1.3.3), in the authority section once the answers are written.
            *slot = signed.nsec_covering(chase.name.bytes());
        }
        let step = match lookup {
            NameLookup::Referral(delegation, cut) => referral(asked, delegation, chase, cut),
            NameLookup::NxDomain => {
                negative_soa(asked, zone, chase);
                if let Some(signed) = asked.signed {
                    deny_name(asked, zone, signed, chase);
                }
                Step::Done(Rcode::NxDomain)
            }
            NameLookup::Found(node) | NameLookup::Wildcard(node, _) => {
                found(asked, zone, node, qtype, chase)
            }
        };
        match step {
            Step::Done(rcode) => return rcode,
            Step::NoData => {
                // NODATA: the name exists, the type does not, also at the end of a CNAME
                // chain inside the zone (RFC 2308 §2.2: the SOA goes with the CNAMEs).
                negative_soa(asked, zone, chase);
                if let Some(signed) = asked.signed {
                    deny_type(asked, signed, chase, wildcard);
                }
                return Rcode::NoError;
            }
            Step::Follow => {}
        }
    }
    // A chain longer than we follow: the CNAMEs so far, for the resolver to go on with.
    Rcode::NoError
}

/// The SOA of a negative answer, at the zone's origin, with its signatures under DO.
fn negative_soa(asked: &mut Asked, zone: &ZoneAnswers, chase: &Chase) {
    let soa_owner = chase.owner + chase.origin;
    asked
        .writer
        .record(Section::Authority, soa_owner, &zone.negative_soa);
    if let Some(signed) = asked.signed {
        push_signatures(
            asked.writer,
            Section::Authority,
            soa_owner,
            &signed.negative_soa_signatures,
        );
    }
}

/// Writes RRSIG bodies owned by `owner` (an offset in the response).
fn push_signatures(writer: &mut Writer, section: Section, owner: usize, signatures: &[Box<[u8]>]) {
    for signature in signatures {
        writer.record(section, owner, signature);
    }
}

/// Writes an NSEC record and its signatures into the authority section, once.
fn push_nsec(asked: &mut Asked, nsec: Option<&SignedNsec>) {
    let Some(nsec) = nsec else { return };
    let address = std::ptr::from_ref(nsec) as usize;
    if asked.nsec_written.contains(&address) {
        return;
    }
    if let Some(slot) = asked.nsec_written.iter_mut().find(|a| **a == 0) {
        *slot = address;
    }
    let at = asked
        .writer
        .record_named(Section::Authority, &nsec.owner, &nsec.body);
    for signature in nsec.signatures.iter() {
        if at <= MAX_POINTER {
            asked.writer.record(Section::Authority, at, signature);
        } else {
            asked
                .writer
                .record_named(Section::Authority, &nsec.owner, signature);
        }
    }
}

/// NXDOMAIN's proof (RFC 4035 §3.1.3.2): the NSEC covering the name, and the one covering
/// the wildcard its closest encloser would have.
fn deny_name(asked: &mut Asked, zone: &ZoneAnswers, signed: &ZoneSigned, chase: &Chase) {
    let name = chase.name.bytes();
    push_nsec(asked, signed.nsec_covering(name));
    let encloser = zone.closest_encloser(name, chase.name.labels(), chase.origin);
    let mut wildcard = [0u8; 257];
    let Some(ancestor) = name.get(encloser..) else {
        return;
    };
    wildcard[0] = 1;
    wildcard[1] = b'*';
    let end = 2 + ancestor.len();
    let Some(slot) = wildcard.get_mut(2..end) else {
        return;
    };
    slot.copy_from_slice(ancestor);
    push_nsec(asked, signed.nsec_covering(&wildcard[..end]));
}

/// NODATA's proof (RFC 4035 §3.1.3.1): the name's own NSEC, or the one covering it for an
/// empty non-terminal; for a wildcard's NODATA, the wildcard's NSEC and the one covering
/// the name (§3.1.3.4).
fn deny_type(asked: &mut Asked, signed: &ZoneSigned, chase: &Chase, wildcard: Option<&[u8]>) {
    let name = chase.name.bytes();
    match wildcard {
        Some(wildcard) => {
            push_nsec(asked, signed.nsec_at(wildcard));
            push_nsec(asked, signed.nsec_covering(name));
        }
        None => {
            let own = signed.nsec_at(name).or_else(|| signed.nsec_covering(name));
            push_nsec(asked, own);
        }
    }
}

/// The answer from a name's node (its own, or a wildcard's).
fn found(
    asked: &mut Asked,
    zone: &ZoneAnswers,
    node: &NameNode,
    qtype: u16,
    chase: &mut Chase,
) -> Step {
    if qtype == QTYPE_NSEC
        && let Some(nsec) = asked.signed.and_then(|s| s.nsec_at(chase.name.bytes()))
    {
        // The name's own NSEC, asked for by type (a wildcard's is not the name's).
        asked
            .writer
            .record(Section::Answer, chase.owner, &nsec.body);
        push_signatures(asked.writer, Section::Answer, chase.owner, &nsec.signatures);
        return Step::Done(Rcode::NoError);
    }
    if qtype == QTYPE_RRSIG
        && let Some(nsec) = asked.signed.and_then(|s| s.nsec_at(chase.name.bytes()))
    {
        // Every signature at the name (a steered name's are per client: its NSEC's only).
        if let NameNode::Static(sets) = node {
            for set in sets {
                push_signatures(asked.writer, Section::Answer, chase.owner, &set.signatures);
            }
        }
        push_signatures(asked.writer, Section::Answer, chase.owner, &nsec.signatures);
        return Step::Done(Rcode::NoError);
    }
    match node {
        NameNode::EmptyNonTerminal => Step::NoData,
        // Other types at a steered name are NODATA for everyone: no need to locate.
        NameNode::Steered(_) if !matches!(qtype, QTYPE_A | QTYPE_AAAA | QTYPE_ANY) => Step::NoData,
        NameNode::Steered(table) => steered(asked, zone, table, qtype, chase.owner),
        NameNode::Static(sets) => static_sets(asked, zone, sets, qtype, chase),
    }
}

/// A delegation below the zone: the NS records in the authority section, their in-domain
/// glue in the additional section; in a signed zone under DO, the cut's NSEC proving it
/// has no DS (an unsigned delegation). After a CNAME, the resolver follows it itself.
fn referral(asked: &mut Asked, delegation: &Delegation, chase: &Chase, cut: usize) -> Step {
    if asked.writer.count(Section::Answer) > 0 {
        return Step::Done(Rcode::NoError);
    }
    asked.writer.authoritative(false);
    let owner = chase.owner + cut;
    let targets = push_set(asked.writer, Section::Authority, owner, &delegation.ns);
    if let Some(signed) = asked.signed {
        let cut_name = chase.name.bytes().get(cut..).unwrap_or(&[]);
        push_nsec(asked, signed.nsec_at(cut_name));
    }
    // In-domain glue is required: when it does not fit, the referral is truncated (RFC
    // 9471), so it is not marked optional.
    push_additional(asked.writer, &delegation.ns, &targets);
    Step::Done(Rcode::NoError)
}

/// A steered name's addresses for this client (ECS, else the source address), with an
/// honest ECS scope; SERVFAIL when every node allowed for the client is down and the name
/// fails closed.
fn steered(
    asked: &mut Asked,
    zone: &ZoneAnswers,
    table: &SteeredTable,
    qtype: u16,
    owner: usize,
) -> Step {
    let snapshot = asked.snapshot;
    let transport = asked.exchange.transport;
    let subnet = asked.edns.as_ref().and_then(|e| e.subnet);
    let (client, unmapped) = subnet
        .and_then(|s| s.client())
        .unwrap_or((unmap(asked.exchange.source), false));
    let families = match qtype {
        QTYPE_A => [true, false],
        QTYPE_AAAA => [false, true],
        // ANY over UDP gets one RRset (RFC 8482), the addresses of one family.
        _ if transport == Transport::Udp => [true, false],
        _ => [true, true],
    };
    let (geo, asn) = (&snapshot.geo, snapshot.asn.as_deref());
    let mut chosen = table.answer_for(client, geo, asn, families);
    if qtype == QTYPE_ANY
        && transport == Transport::Udp
        && chosen.families[0].is_some_and(|f| f.is_empty())
    {
        chosen = table.answer_for(client, geo, asn, [false, true]);
    }
    if let Some(reply) = asked.edns.as_mut()
        && let Some(subnet) = reply.subnet
        && subnet.client().is_some()
    {
        reply.scope = subnet.response_scope(chosen.scope, unmapped);
    }
    if chosen.servfail() {
        explain_error(
            asked.edns,
            EDE_OTHER,
            "every node allowed for this client is down",
        );
        asked.writer.drop_records();
        asked.writer.authoritative(false);
        return Step::Done(Rcode::ServFail);
    }
    // CNAMEs that led here are already in the answer: NODATA is "nothing added".
    let before = asked.writer.count(Section::Answer);
    for (index, family) in chosen.families.iter().enumerate() {
        let Some(family) = family else { continue };
        for body in family.bodies() {
            asked.writer.record(Section::Answer, owner, body);
        }
        if asked.signed.is_some()
            && !family.is_empty()
            && let Some(signatures) = table.signatures.get(chosen.index)
        {
            let signatures = signatures.of(index, family);
            push_signatures(asked.writer, Section::Answer, owner, signatures);
        }
        if let Some(counters) = snapshot.zone_counters.get(zone.index) {
            counters.answered(family.nodes());
        }
    }
    if asked.writer.count(Section::Answer) == before {
        return Step::NoData;
    }
    Step::Done(Rcode::NoError)
}

/// A static name's record sets of the asked type (with the addresses of in-zone targets
/// as optional additional data), else its CNAME, followed when the target is in the zone.
fn static_sets(
    asked: &mut Asked,
    zone: &ZoneAnswers,
    sets: &[EncodedRrset],
    qtype: u16,
    chase: &mut Chase,
) -> Step {
    // ANY over UDP gets one RRset, the smallest (RFC 8482): the zone cannot be made to
    // reflect everything it holds at a name to a forged source. TCP gets them all.
    let smallest = (qtype == QTYPE_ANY && asked.exchange.transport == Transport::Udp)
        .then(|| {
            (sets.iter())
                .filter(|s| s.rtype != QTYPE_CNAME)
                .min_by_key(|s| s.bodies.iter().map(|b| b.len()).sum::<usize>())
                .map(std::ptr::from_ref)
        })
        .flatten();
    let mut matched = false;
    for set in sets.iter().filter(|s| match smallest {
        Some(chosen) => std::ptr::eq(*s, chosen),
        None => s.rtype == qtype || qtype == QTYPE_ANY,
    }) {
        let targets = push_set(asked.writer, Section::Answer, chase.owner, set);
        if asked.signed.is_some() {
            push_signatures(asked.writer, Section::Answer, chase.owner, &set.signatures);
        }
        matched = true;
        if qtype == set.rtype && set.target_offset().is_some() {
            // The targets' addresses save the resolver a lookup; they are dropped, not
            // truncated for, when they do not fit.
            asked.exchange.optional_from = asked.writer.len();
            push_additional(asked.writer, set, &targets);
        }
    }
    if matched {
        return Step::Done(Rcode::NoError);
    }
    let Some((cname, body)) = sets
        .iter()
        .find(|s| s.rtype == QTYPE_CNAME)
        .and_then(|cname| Some((cname, cname.bodies.first()?)))
    else {
        return Step::NoData;
    };
    let target_at = asked.writer.record(Section::Answer, chase.owner, body);
    if asked.signed.is_some() {
        push_signatures(
            asked.writer,
            Section::Answer,
            chase.owner,
            &cname.signatures,
        );
    }
    // Follow the alias only inside this zone; otherwise the resolver does it.
    let target = &body[RDATA_OFFSET..];
    let Some(count) = label_offsets(target, &mut chase.name.labels) else {
        return Step::Done(Rcode::NoError);
    };
    let origin_at = chase.name.labels[..count]
        .iter()
        .map(|&o| o as usize)
        .find(|&o| target[o..] == *zone.origin);
    match origin_at {
        Some(o) if target_at <= MAX_POINTER && target.len() <= chase.name.bytes.len() => {
            chase.name.bytes[..target.len()].copy_from_slice(target);
            chase.name.len = target.len();
            chase.name.label_count = count;
            chase.origin = o;
            chase.owner = target_at;
            Step::Follow
        }
        _ => Step::Done(Rcode::NoError),
    }
}
