//! The allocation-free query parser against hickory's: for a corpus of queries (steered,
//! static, negative, referral, CHAOS, EDNS variants, ECS variants, truncation) and for
//! mutations of them, both paths produce identical bytes; and the corpus's ordinary queries
//! really take the fast path.

use geosteer::random::XorShift;
use std::net::SocketAddr;

use crate::support::*;
use geosteer::answer::Snapshot;
use geosteer::dns::query::parse_plain;
use geosteer::dns::{ServeOptions, Transport, respond, respond_general};
use hickory_proto::rr::DNSClass;
use hickory_proto::rr::RecordType::{A, AAAA, ANY, CAA, CNAME, MX, NS, SOA, SRV, TXT};

/// Queries an authoritative server sees, in the shapes the fast path must handle.
fn corpus() -> Vec<Vec<u8>> {
    let mut queries = Vec::new();
    for name in [
        "ingest.test.example.",
        "InGeSt.TeSt.ExAmPlE.",
        "fenced.test.example.",
        "nearest.test.example.",
        "www.test.example.",
        "test.example.",
        "mail.test.example.",
        "big.test.example.",
        "nope.test.example.",
        "deep.test.example.",
        "x.sub.test.example.",
        "_rtmp._tcp.test.example.",
        "caa.test.example.",
        "alias-out.test.example.",
        "example.org.",
        "_explain.ingest.test.example.",
    ] {
        for rtype in [A, AAAA, ANY, TXT, MX, SOA, NS, CNAME, SRV, CAA] {
            queries.push(q(name, rtype).bytes());
            queries.push(q(name, rtype).no_edns().bytes());
            queries.push(q(name, rtype).ecs("127.1.0.0", 24).bytes());
            queries.push(q(name, rtype).ecs("127.2.0.0", 16).payload(512).bytes());
            queries.push(q(name, rtype).ecs("2001:db8:1::", 56).bytes());
            queries.push(q(name, rtype).ecs("0.0.0.0", 0).bytes());
            queries.push(q(name, rtype).ecs("::ffff:127.1.0.0", 120).bytes());
            queries.push(q(name, rtype).payload(1232).bytes());
            queries.push(q(name, rtype).payload(100).bytes());
            queries.push(q(name, rtype).edns_version(1).bytes());
        }
    }
    for name in [
        "id.server.",
        "version.bind.",
        "hostname.bind.",
        "nope.bind.",
    ] {
        queries.push(q(name, TXT).class(DNSClass::CH).bytes());
    }
    queries.push(q("ingest.test.example.", A).class(DNSClass::HS).bytes());
    // DO bit set; RD and CD set.
    let mut dnssec = q("ingest.test.example.", A).ecs("127.1.0.0", 24).bytes();
    set_do_bit(&mut dnssec);
    dnssec[2] |= 0x01;
    dnssec[3] |= 0x10;
    queries.push(dnssec);
    // ECS with a non-zero scope, and with address bits past the prefix: FORMERR both ways.
    queries.push(with_ecs_option(&[0, 1, 24, 8, 127, 1, 0]));
    queries.push(with_ecs_option(&[0, 1, 20, 0, 127, 1, 255]));
    // NSID asked (RFC 5001), empty as it should be and with stray content.
    queries.push(with_option(3, &[]));
    queries.push(with_option(3, b"x"));
    // edns-tcp-keepalive (RFC 7828), as a client asks and with a timeout only a server sends.
    queries.push(with_option(11, &[]));
    queries.push(with_option(11, &[0, 100]));
    queries
}

/// Sets the DO bit of a query whose OPT is the last record.
fn set_do_bit(packet: &mut [u8]) {
    let opt = packet.len() - opt_rdlen(packet) - 11;
    packet[opt + 7] |= 0x80;
}

fn opt_rdlen(packet: &[u8]) -> usize {
    // The OPT record is last; find its RDLENGTH by scanning back from a known shape: the
    // test queries' OPT carries at most one option.
    let n = packet.len();
    for rdlen in 0..=n.saturating_sub(23) {
        let at = n - rdlen - 11;
        if packet[at] == 0
            && packet[at + 1..at + 3] == [0, 41]
            && u16::from_be_bytes([packet[at + 9], packet[at + 10]]) as usize == rdlen
        {
            return rdlen;
        }
    }
    panic!("no OPT record at the end of {packet:02x?}");
}

/// An A query for ingest.test.example. with a raw ECS option body (family, source, scope,
/// address).
fn with_ecs_option(option: &[u8]) -> Vec<u8> {
    with_option(8, option)
}

/// An A query for ingest.test.example. whose OPT holds one raw option.
fn with_option(code: u16, option: &[u8]) -> Vec<u8> {
    let mut packet = q("ingest.test.example.", A).bytes();
    let rdlen = opt_rdlen(&packet);
    let opt = packet.len() - rdlen - 11;
    packet.truncate(opt + 11);
    packet.extend_from_slice(&code.to_be_bytes());
    packet.extend_from_slice(&(option.len() as u16).to_be_bytes());
    packet.extend_from_slice(option);
    let rdlen = (option.len() + 4) as u16;
    packet[opt + 9..opt + 11].copy_from_slice(&rdlen.to_be_bytes());
    packet
}

fn both(snapshot: &Snapshot, packet: &[u8], src: SocketAddr, transport: Transport) {
    let options = ServeOptions::default();
    let (mut fast, mut general) = (Vec::new(), Vec::new());
    let a = respond(snapshot, packet, src, transport, &options, &mut fast);
    let b = respond_general(snapshot, packet, src, transport, &options, &mut general);
    assert_eq!(
        a.map(|o| (
            o.rcode,
            o.truncated,
            o.subnet,
            o.zone,
            o.qtype,
            o.question_len,
            o.cookie_valid
        )),
        b.map(|o| (
            o.rcode,
            o.truncated,
            o.subnet,
            o.zone,
            o.qtype,
            o.question_len,
            o.cookie_valid
        )),
        "outcomes differ for {packet:02x?}"
    );
    assert_eq!(
        fast, general,
        "bytes differ for {packet:02x?} over {transport:?}"
    );
}

#[test]
fn both_parsers_give_identical_bytes_for_a_corpus() {
    let snapshot = fixture_snapshot();
    let corpus = corpus();
    let fast = corpus.iter().filter(|p| parse_plain(p).is_some()).count();
    // Every corpus query is an ordinary one: the fast path must take them all.
    assert_eq!(fast, corpus.len(), "queries declined by the fast path");
    let sources: [SocketAddr; 3] = [
        "127.1.0.9:5300".parse().expect("address"),
        "127.3.3.3:5300".parse().expect("address"),
        "[2001:db8:5::1]:5300".parse().expect("address"),
    ];
    for packet in &corpus {
        for src in sources {
            for transport in [Transport::Udp, Transport::Tcp] {
                both(&snapshot, packet, src, transport);
            }
        }
    }
}

#[test]
fn both_parsers_agree_on_mutated_queries() {
    let snapshot = fixture_snapshot();
    let corpus = corpus();
    let src: SocketAddr = "127.1.0.9:5300".parse().expect("address");
    let mut rng = XorShift::new(0x2545_f491_4f6c_dd1d);
    let mut declined = 0;
    for i in 0..40_000usize {
        let mut packet = corpus[rng.below(corpus.len() as u64) as usize].clone();
        for _ in 0..=rng.below(3) {
            match rng.below(3) {
                0 if !packet.is_empty() => {
                    let at = rng.below(packet.len() as u64) as usize;
                    packet[at] = rng.next_u64() as u8;
                }
                1 => packet.truncate(rng.below(packet.len() as u64 + 1) as usize),
                _ => {
                    let at = rng.below(packet.len() as u64 + 1) as usize;
                    packet.insert(at, rng.next_u64() as u8);
                }
            }
        }
        if packet.len() >= 12 && parse_plain(&packet).is_none() {
            declined += 1;
        }
        let transport = if i % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        both(&snapshot, &packet, src, transport);
    }
    assert!(declined > 1_000, "the fallback was exercised: {declined}");
}
