//! Authoritative DNS behaviour of the real binary over UDP and TCP: flags, negative answers,
//! referrals, class handling, EDNS, truncation, pipelining, malformed input.

use crate::support::*;
use geosteer::random::XorShift;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType::{self, A, AAAA, ANY, CAA, CNAME, MX, NS, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, RData};
use std::time::Duration;

fn soa_ttl(reply: &Message) -> Option<u32> {
    reply
        .authorities
        .iter()
        .find(|r| r.record_type() == SOA)
        .map(|r| r.ttl)
}

#[test]
fn authoritative_answers_over_udp_and_tcp() {
    let server = Server::test_zone();
    for reply in [
        udp(&server, &q("ingest.test.example.", A)),
        tcp(&server, &q("ingest.test.example.", A)),
    ] {
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative, "AA");
        assert!(!reply.metadata.recursion_available, "RA clear");
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.metadata.id, 0x4242);
        assert_eq!(reply.answers.len(), 2);
        assert!(reply.answers.iter().all(|r| r.ttl == 30));
    }
    // Static records of each type.
    let cases: [(&str, RecordType, usize); 8] = [
        ("test.example.", SOA, 1),
        ("test.example.", NS, 2),
        ("test.example.", TXT, 1),
        ("ns1.test.example.", A, 1),
        ("ns2.test.example.", AAAA, 1),
        ("mail.test.example.", MX, 2),
        ("_rtmp._tcp.test.example.", SRV, 1),
        ("caa.test.example.", CAA, 1),
    ];
    for (name, rtype, count) in cases {
        let reply = udp(&server, &q(name, rtype));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name} {rtype}"
        );
        assert!(reply.metadata.authoritative);
        assert_eq!(reply.answers.len(), count, "{name} {rtype}");
        assert!(reply.answers.iter().all(|r| r.record_type() == rtype));
    }
    let reply = udp(&server, &q("mail.test.example.", MX));
    match &reply.answers[1].data {
        RData::MX(mx) => {
            assert_eq!(mx.preference, 20);
            assert_eq!(mx.exchange.to_ascii(), "mx2.test.example.");
        }
        other => panic!("expected MX, got {other:?}"),
    }
    let reply = udp(&server, &q("test.example.", SOA));
    match &reply.answers[0].data {
        RData::SOA(soa) => {
            assert_eq!(soa.serial, 42);
            assert_eq!(soa.minimum, 120);
        }
        other => panic!("expected SOA, got {other:?}"),
    }
    assert_eq!(reply.answers[0].ttl, 600);
}

#[test]
fn negative_answers_carry_the_soa_at_the_negative_ttl() {
    let server = Server::test_zone();
    // NXDOMAIN: the SOA's TTL is 600 and MINIMUM 120: RFC 2308 says the lesser.
    let reply = udp(&server, &q("nope.test.example.", A));
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.metadata.authoritative);
    assert!(reply.answers.is_empty());
    assert_eq!(soa_ttl(&reply), Some(120));
    assert_eq!(reply.authorities[0].name.to_ascii(), "test.example.");
    // Below an existing name, still NXDOMAIN.
    let reply = udp(&server, &q("x.ns1.test.example.", A));
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    // NODATA: the name exists, the type does not.
    for (name, rtype) in [
        ("ingest.test.example.", MX),
        ("ns1.test.example.", AAAA),
        ("test.example.", A),
    ] {
        let reply = udp(&server, &q(name, rtype));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(reply.answers.is_empty(), "{name}");
        assert!(reply.metadata.authoritative);
        assert_eq!(soa_ttl(&reply), Some(120), "{name}");
    }
    // Empty non-terminals (a.b.deep exists, so b.deep and deep do): NODATA, not NXDOMAIN.
    for name in [
        "b.deep.test.example.",
        "deep.test.example.",
        "_tcp.test.example.",
    ] {
        let reply = udp(&server, &q(name, A));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(reply.answers.is_empty());
        assert_eq!(soa_ttl(&reply), Some(120), "{name}");
    }
}

#[test]
fn query_case_is_preserved() {
    let server = Server::test_zone();
    let reply = udp(&server, &q("InGeSt.TeSt.ExAmPlE.", A));
    assert_eq!(reply.queries[0].name().to_ascii(), "InGeSt.TeSt.ExAmPlE.");
    assert_eq!(reply.answers.len(), 2);
    for r in &reply.answers {
        assert_eq!(r.name.to_ascii(), "InGeSt.TeSt.ExAmPlE.");
    }
    let reply = udp(&server, &q("NoPe.TEST.example.", A));
    assert_eq!(reply.queries[0].name().to_ascii(), "NoPe.TEST.example.");
    assert_eq!(reply.authorities[0].name.to_ascii(), "TEST.example.");
}

#[test]
fn cnames_are_followed_inside_the_zone() {
    let server = Server::test_zone();
    let reply = udp_from(&server, from("127.1.0.1"), &q("www.test.example.", A));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers[0].record_type(), CNAME);
    assert_eq!(reply.answers[0].name.to_ascii(), "www.test.example.");
    assert_eq!(a_records(&reply), vec!["192.0.2.1", "192.0.2.2"]);
    assert_eq!(reply.answers[1].name.to_ascii(), "ingest.test.example.");
    let reply = udp(&server, &q("www.test.example.", CNAME));
    assert_eq!(reply.answers.len(), 1);
    // A chain ending in NODATA inside the zone: the CNAME, and the SOA in the authority
    // section (RFC 2308 §2.2). Over TCP: over UDP without a cookie this reply is more than
    // three times the query, so it comes truncated.
    let reply = tcp(&server, &q("www.test.example.", TXT));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
    assert_eq!(reply.answers[0].record_type(), CNAME);
    assert_eq!(reply.authorities.len(), 1, "{reply:?}");
    assert_eq!(reply.authorities[0].record_type(), SOA);
    assert_eq!(reply.authorities[0].name.to_ascii(), "test.example.");
    // Out of zone: the CNAME alone; the resolver follows it.
    let reply = udp(&server, &q("alias-out.test.example.", A));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].record_type(), CNAME);
}

#[test]
fn delegations_get_referrals_without_aa() {
    let server = Server::test_zone();
    for name in [
        "sub.test.example.",
        "host.sub.test.example.",
        "ns.sub.test.example.",
    ] {
        let reply = udp(&server, &q(name, A));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(
            !reply.metadata.authoritative,
            "{name}: referrals are not authoritative"
        );
        assert!(reply.answers.is_empty());
        let ns: Vec<String> = reply
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(ns.0.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(
            ns,
            vec!["ns.sub.test.example.", "ns.elsewhere.example.org."]
        );
        let glue: Vec<String> = reply
            .additionals
            .iter()
            .filter(|r| r.record_type() == A)
            .map(|r| format!("{} {}", r.name.to_ascii(), r.data))
            .collect();
        assert_eq!(glue, vec!["ns.sub.test.example. 192.0.2.99"]);
    }
}

#[test]
fn outside_our_zones_and_other_classes_are_refused() {
    let server = Server::test_zone();
    // With the Extended DNS Error (RFC 8914) that says why, where there is one.
    for (query, why) in [
        (q("example.com.", A), Some(20)), // Not Authoritative
        (q("example.", A), Some(20)),
        (q("test.example.com.", A), Some(20)),
        (q("ingest.test.example.", A).class(DNSClass::CH), None),
        (q("ingest.test.example.", A).class(DNSClass::ANY), Some(21)), // Not Supported
        (q("ingest.test.example.", TXT).class(DNSClass::CH), None),
        (q("example.com.", TXT).class(DNSClass::CH), None),
        (q("test.example.", RecordType::AXFR), Some(18)), // Prohibited
    ] {
        let reply = udp(&server, &query);
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        assert!(!reply.metadata.authoritative, "no AA outside our data");
        assert!(reply.answers.is_empty(), "never IN data for CH/ANY class");
        assert_eq!(
            extended_error(&reply).map(|e| e.0),
            why,
            "{:?}",
            reply.queries
        );
    }
    // Without EDNS there is nowhere to say it.
    let reply = udp(&server, &q("example.com.", A).no_edns());
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.edns.is_none());
}

#[test]
fn edns_versions_and_buffers() {
    let server = Server::test_zone();
    let reply = udp(&server, &q("ingest.test.example.", A).edns_version(1));
    // BADVERS is 16, split between the header and the OPT record (hickory names 16 BADSIG).
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert_eq!(reply.edns.as_ref().map(|e| e.version()), Some(0));
    assert!(reply.answers.is_empty());
    // EDNS answered with EDNS, plain with plain.
    let reply = udp(&server, &q("ingest.test.example.", A));
    assert_eq!(reply.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    let reply = udp(&server, &q("ingest.test.example.", A).no_edns());
    assert!(reply.edns.is_none());
    assert_eq!(reply.answers.len(), 2);
}

#[test]
fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let server = Server::test_zone();
    for (query, has_edns) in [
        (q("big.test.example.", TXT), true),
        (q("big.test.example.", TXT).no_edns(), false),
        (q("big.test.example.", TXT).payload(600), true),
    ] {
        let raw = udp_raw(server.addr, from("127.0.0.1"), &query.bytes()).expect("a reply");
        // Parsing the whole message checks the header counts match the bytes.
        let reply = Message::from_vec(&raw).expect("a truncated reply is a well-formed message");
        assert!(reply.metadata.truncation, "TC");
        assert!(reply.metadata.authoritative);
        assert!(reply.answers.is_empty());
        assert!(raw.len() <= 1232);
        assert_eq!(reply.queries.len(), 1);
        assert_eq!(
            reply.edns.is_some(),
            has_edns,
            "OPT kept when the query had one"
        );
    }
    let reply = tcp(&server, &q("big.test.example.", TXT));
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 12);
    // Small answers never truncate, even at 512 bytes.
    let reply = udp(&server, &q("ingest.test.example.", A).no_edns());
    assert!(!reply.metadata.truncation);
}

/// Six name servers in the zone, each with an A and an AAAA: the NS set is about 290 bytes,
/// with their addresses about 550.
const MANY_NAME_SERVERS: &str = r#"zone: a.example
ttl: 300
soa: {primary: name-server-number-1.a.example., contact: h.a.example., serial: 1, ttl: 300}
ns: [name-server-number-1.a.example., name-server-number-2.a.example., name-server-number-3.a.example., name-server-number-4.a.example., name-server-number-5.a.example., name-server-number-6.a.example.]
check: {type: none}
records:
  name-server-number-1: [{type: A, value: 192.0.2.1}, {type: AAAA, value: "2001:db8::1"}]
  name-server-number-2: [{type: A, value: 192.0.2.2}, {type: AAAA, value: "2001:db8::2"}]
  name-server-number-3: [{type: A, value: 192.0.2.3}, {type: AAAA, value: "2001:db8::3"}]
  name-server-number-4: [{type: A, value: 192.0.2.4}, {type: AAAA, value: "2001:db8::4"}]
  name-server-number-5: [{type: A, value: 192.0.2.5}, {type: AAAA, value: "2001:db8::5"}]
  name-server-number-6: [{type: A, value: 192.0.2.6}, {type: AAAA, value: "2001:db8::6"}]
nodes:
  tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.100]}
steer:
  ingest: {answers: 1}
"#;

/// The addresses of in-zone NS targets ride along in the additional section; when they do
/// not fit (the size the client takes, or over UDP without a cookie three times the query)
/// they are left out and the answer is not truncated (RFC 2181 §9), since the resolver got
/// the records it asked for.
#[test]
fn additional_data_is_sent_when_it_fits_and_left_out_without_tc_when_not() {
    let dir = zone_dir("many-name-servers", MANY_NAME_SERVERS);
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let addresses = |reply: &Message| {
        reply
            .additionals
            .iter()
            .filter(|r| matches!(r.record_type(), A | AAAA))
            .count()
    };
    for (query, transport) in [
        (q("a.example.", NS), "tcp"),
        (q("a.example.", NS).no_edns(), "tcp"),
    ] {
        let reply = match transport {
            "udp" => udp(&server, &query),
            _ => tcp(&server, &query),
        };
        assert!(!reply.metadata.truncation, "{transport}");
        assert_eq!(reply.answers.len(), 6, "{transport}");
        assert_eq!(
            addresses(&reply),
            12,
            "{transport}: every target's addresses"
        );
        let first = reply
            .additionals
            .iter()
            .find(|r| r.record_type() == A)
            .expect("an A record");
        assert_eq!(first.name.to_ascii(), "name-server-number-1.a.example.");
    }
    // Over UDP without a cookie, six long NS names alone are more than three times the
    // query: truncated, for a retry over TCP (where they came whole above).
    let reply = udp(&server, &q("a.example.", NS));
    assert!(reply.metadata.truncation);
    // A source that proved itself with a cookie (RFC 7873) and takes 512 bytes: the NS
    // set fits, its addresses do not, and there is no TC for them.
    let with_cookie =
        |cookie: &[u8]| with_option(q("a.example.", NS).payload(512).bytes(), 10, cookie);
    let first = udp_raw(server.addr, from("127.0.0.1"), &with_cookie(&[7; 8])).expect("a reply");
    let at = (first.windows(4))
        .position(|w| w == [0, 10, 0, 24])
        .expect("a server cookie in the reply");
    let cookie = first[at + 4..at + 28].to_vec();
    let raw = udp_raw(server.addr, from("127.0.0.1"), &with_cookie(&cookie)).expect("a reply");
    assert!(raw.len() <= 512, "{} bytes", raw.len());
    let reply = Message::from_vec(&raw).expect("the reply parses");
    assert!(!reply.metadata.truncation, "no TC for additional data");
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 6);
    assert_eq!(addresses(&reply), 0);
}

/// edns-tcp-keepalive (RFC 7828), as `dig +keepalive` asks: over TCP the idle timeout is
/// told; over UDP the option is ignored; a query sending a timeout of its own is a FORMERR.
#[test]
fn tcp_keepalive_tells_the_idle_timeout() {
    let server = Server::test_zone();
    let text = dig_text(&server, &["+tcp", "+keepalive", "test.example.", "SOA"]);
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(text.contains("TCP KEEPALIVE: 10.0 secs"), "{text}");
    let text = dig_text(&server, &["+notcp", "+keepalive", "test.example.", "SOA"]);
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(!text.contains("KEEPALIVE"), "not over UDP: {text}");
    let text = dig_text(
        &server,
        &["+tcp", "+ednsopt=11:0064", "test.example.", "SOA"],
    );
    assert!(text.contains("status: FORMERR"), "{text}");
    let text = dig_text(&server, &["+tcp", "test.example.", "SOA"]);
    assert!(!text.contains("KEEPALIVE"), "only when asked: {text}");
}

#[test]
fn pipelined_tcp_queries_are_answered_in_order() {
    let server = Server::test_zone();
    let queries: Vec<Vec<u8>> = (0..20u16)
        .map(|i| {
            let name = if i % 3 == 0 {
                "nope.test.example."
            } else {
                "ingest.test.example."
            };
            q(name, if i % 2 == 0 { A } else { AAAA })
                .id(1000 + i)
                .bytes()
        })
        .collect();
    let replies = tcp_raw(server.addr, &queries);
    assert_eq!(replies.len(), 20);
    for (i, raw) in replies.iter().enumerate() {
        let reply = Message::from_vec(raw).expect("parses");
        assert_eq!(reply.metadata.id, 1000 + i as u16);
        let expected = if i % 3 == 0 {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        assert_eq!(reply.metadata.response_code, expected, "query {i}");
    }
}

/// Queries cut anywhere across TCP segments (the length split, a query in pieces, the next
/// query's first byte with the last one's end) are answered as whole queries; 300 queries
/// in one write are all answered, in order.
#[test]
fn tcp_queries_cut_anywhere_and_in_large_batches_are_answered() {
    use std::io::{Read, Write};
    let server = Server::test_zone();
    let framed = |id: u16| {
        let query = q("ingest.test.example.", A).id(id).bytes();
        let mut out = (query.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&query);
        out
    };
    let read_reply = |stream: &mut std::net::TcpStream| {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).expect("reply length");
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut reply).expect("reply");
        Message::from_vec(&reply).expect("parses")
    };
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    let bytes: Vec<u8> = [framed(1), framed(2)].concat();
    // Cut points: inside the first length, inside the first query, across the boundary.
    for piece in [
        &bytes[..1],
        &bytes[1..7],
        &bytes[7..bytes.len() / 2 + 1],
        &bytes[bytes.len() / 2 + 1..],
    ] {
        stream.write_all(piece).expect("write a piece");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_reply(&mut stream).metadata.id, 1);
    assert_eq!(read_reply(&mut stream).metadata.id, 2);
    let batch: Vec<u8> = (0..300u16).flat_map(|i| framed(1000 + i)).collect();
    stream.write_all(&batch).expect("write the batch");
    for i in 0..300u16 {
        let reply = read_reply(&mut stream);
        assert_eq!(reply.metadata.id, 1000 + i);
        assert!(!reply.answers.is_empty());
    }
}

#[test]
fn malformed_packets_get_formerr_or_silence() {
    let server = Server::test_zone();
    let good = q("ingest.test.example.", A).bytes();
    // A response (QR set) is never answered; neither is a runt.
    let mut response = good.clone();
    response[2] |= 0x80;
    let silent = |bytes: &[u8]| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        socket.send_to(bytes, server.addr).expect("send");
        let mut buf = [0u8; 512];
        socket.recv_from(&mut buf).is_err()
    };
    assert!(silent(&response), "no reply to QR=1");
    assert!(silent(&good[..7]), "no reply to a runt");
    // Header fine, body garbage: FORMERR with the same id.
    let mut garbage = good[..12].to_vec();
    garbage.extend_from_slice(&[0x3f, 0xff, 0xff, 0x01]);
    let raw = udp_raw(server.addr, from("127.0.0.1"), &garbage).expect("a reply");
    assert_eq!(&raw[0..2], &good[0..2]);
    assert_eq!(raw[3] & 0x0F, 1, "FORMERR");
    // Two questions: FORMERR.
    let mut two = good.clone();
    two[5] = 2;
    let raw = udp_raw(server.addr, from("127.0.0.1"), &two).expect("a reply");
    assert_eq!(raw[3] & 0x0F, 1);
    // Non-query opcode: NOTIMP.
    let mut notify = good.clone();
    notify[2] = (notify[2] & !0x78) | (4 << 3);
    let raw = udp_raw(server.addr, from("127.0.0.1"), &notify).expect("a reply");
    assert_eq!(raw[3] & 0x0F, 4, "NOTIMP");
    // Random junk of many lengths never kills the server.
    let mut random = XorShift::new(0x2545_f491_4f6c_dd1d);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for len in 0..300usize {
        let mut junk: Vec<u8> = (0..len).map(|_| random.next_u64() as u8).collect();
        if junk.len() > 2 {
            junk[2] &= 0x7f;
        }
        socket.send_to(&junk, server.addr).expect("send");
    }
    let reply = udp(&server, &q("ingest.test.example.", A));
    assert_eq!(reply.answers.len(), 2, "still serving");
    let reply = tcp(&server, &q("ingest.test.example.", ANY));
    // ANY at a steered name: both families; the unlocated default is us-east (IPv4 only)
    // then frankfurt (both).
    assert_eq!(a_records(&reply).len(), 2);
    assert_eq!(aaaa_records(&reply), vec!["2001:db8:d::1"]);
}

#[test]
fn chaos_identity_and_version() {
    let server = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--identity", "anycast-tyo-3"],
    );
    let txt = |reply: &Message| -> Vec<String> {
        reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            })
            .collect()
    };
    for name in ["id.server.", "HOSTNAME.bind."] {
        let reply = udp(&server, &q(name, TXT).class(DNSClass::CH));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert_eq!(txt(&reply), vec!["anycast-tyo-3"], "{name}");
        assert_eq!(reply.answers[0].dns_class, DNSClass::CH);
        assert_eq!(reply.answers[0].name.to_ascii(), name, "case preserved");
    }
    for name in ["version.bind.", "version.server."] {
        let reply = tcp(&server, &q(name, TXT).class(DNSClass::CH));
        assert!(
            txt(&reply)[0].starts_with("geosteer "),
            "{name}: {:?}",
            txt(&reply)
        );
    }
    let hidden = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--hide-version"],
    );
    let reply = udp(&hidden, &q("version.bind.", TXT).class(DNSClass::CH));
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    let reply = udp(&hidden, &q("id.server.", TXT).class(DNSClass::CH));
    assert_eq!(txt(&reply).len(), 1, "the identity is still answered");
}

#[test]
fn explain_names_can_be_restricted_or_disabled() {
    let restricted = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--explain-from", "127.9.0.0/16"],
    );
    let reply = udp_from(
        &restricted,
        from("127.0.0.1"),
        &q("_explain.ingest.test.example.", TXT),
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    // Allowed: over UDP it is more than a source without a cookie may be sent (TC, as dig
    // then retries), over TCP the explanation.
    let reply = udp_from(
        &restricted,
        from("127.9.0.1"),
        &q("_explain.ingest.test.example.", TXT),
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.truncation);
    let disabled = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--explain-label", ""],
    );
    let reply = udp(&disabled, &q("_explain.ingest.test.example.", TXT));
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
}

/// An A query for ingest.test.example. whose OPT record's data is `rdata`, as given.
fn with_opt_rdata(rdata: &[u8]) -> Vec<u8> {
    let mut packet = q("ingest.test.example.", A).bytes();
    // The test query's OPT is last and empty: root name, type, class, TTL, RDLENGTH 0.
    let opt = packet.len() - 11;
    assert_eq!(&packet[opt..opt + 3], &[0, 0, 41], "an empty OPT last");
    packet[opt + 9..opt + 11].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
    packet.extend_from_slice(rdata);
    packet
}

/// The rcode (header nibble) of a raw reply, and whether it carries an OPT record.
fn rcode_and_opt(reply: &[u8]) -> (u8, bool) {
    let additional = u16::from_be_bytes([reply[10], reply[11]]);
    // Every reply checked here is a FORMERR without answers: the OPT is the last record.
    let opt = reply.len() >= 11 && reply[reply.len() - 11..reply.len() - 8] == [0, 0, 41];
    (reply[3] & 0x0F, additional == 1 && opt)
}

/// EDNS options are checked strictly, the same over UDP and TCP: an option running past
/// the OPT data, octets left after the last option, and an ECS option whose address is
/// shorter or longer than its source prefix needs are FORMERR, always with an OPT record.
#[test]
fn malformed_edns_options_are_formerr_with_opt() {
    let server = Server::test_zone();
    let ecs = |address: &[u8]| {
        let mut option = vec![0, 8];
        option.extend_from_slice(&(4 + address.len() as u16).to_be_bytes());
        option.extend_from_slice(&[0, 1, 24, 0]);
        option.extend_from_slice(address);
        option
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("an option longer than the OPT data", {
            let mut o = ecs(&[127, 1, 0]);
            o[3] = 40;
            o
        }),
        ("two stray octets after a valid ECS", {
            let mut o = ecs(&[127, 1, 0]);
            o.extend_from_slice(&[0, 0]);
            o
        }),
        ("three octets of an option header", vec![0, 3, 0]),
    ];
    for octets in [0usize, 1, 2, 4, 5] {
        let address = vec![127u8; octets];
        cases.push(("an ECS address of the wrong length", ecs(&address)));
    }
    for (what, rdata) in &cases {
        let packet = with_opt_rdata(rdata);
        let udp = udp_raw(server.addr, from("127.1.0.9"), &packet).expect("a UDP reply");
        let tcp = tcp_raw(server.addr, std::slice::from_ref(&packet));
        for (transport, reply) in [("udp", &udp), ("tcp", &tcp[0])] {
            assert_eq!(
                rcode_and_opt(reply),
                (1, true),
                "{what} over {transport}: {rdata:02x?} → {reply:02x?}"
            );
        }
    }
    // A well-formed ECS still answers.
    let fine = with_opt_rdata(&ecs(&[127, 1, 0]));
    let reply = udp_raw(server.addr, from("127.1.0.9"), &fine).expect("a reply");
    assert_eq!(reply[3] & 0x0F, 0);
}

/// BADVERS lives in the OPT record: a rate-limited BADVERS is dropped, never slipped as a
/// bare NOERROR with TC.
#[test]
fn a_rate_limited_badvers_is_never_a_noerror() {
    let server = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--rrl-rate", "1", "--rrl-slip", "1"],
    );
    let query = q("ingest.test.example.", A).edns_version(1).bytes();
    let socket = std::net::UdpSocket::bind("127.1.0.77:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    for _ in 0..40 {
        socket.send_to(&query, server.addr).expect("send");
    }
    let (mut badvers, mut other) = (0, Vec::new());
    let mut buf = [0u8; 512];
    while let Ok((len, _)) = socket.recv_from(&mut buf) {
        let reply = Message::from_vec(&buf[..len]).expect("a reply parses");
        match reply.metadata.response_code {
            // hickory reads 16 as BADSIG, which shares BADVERS's number.
            ResponseCode::BADVERS | ResponseCode::BADSIG => badvers += 1,
            code => other.push(code),
        }
    }
    assert!(badvers >= 1, "no BADVERS at all: {other:?}");
    assert!(other.is_empty(), "limited BADVERS sent as {other:?}");
}
