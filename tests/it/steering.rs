//! Steered answers from the real binary: clients located by source address and by ECS, in both
//! database schemas, with rules, fences, defaults and honest ECS scopes.

use std::time::Duration;

use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType::{A, AAAA};

const TOKYO: &str = "192.0.2.1";
const SINGAPORE: &str = "192.0.2.2";
const SAO_PAULO: &str = "192.0.2.3";
const FRANKFURT: &str = "192.0.2.4";
const LONDON: &str = "192.0.2.5";
const PARIS_B: &str = "192.0.2.6";
const US_WEST: &str = "192.0.2.7";
const US_EAST: &str = "192.0.2.8";
const SYDNEY: &str = "192.0.2.9";

/// Clients in many places, located by their source address (no ECS), in both schemas.
#[test]
fn source_address_steers_to_nearest_nodes_in_both_schemas() {
    for db in [
        "tests/fixtures/geo-city.mmdb",
        "tests/fixtures/geo-flat.mmdb",
    ] {
        let server = Server::start(&repo("tests/fixtures/zones"), &repo(db), &[]);
        let cases = [
            ("127.1.0.5", vec![TOKYO, SINGAPORE]), // JP; the nearer 'retired' node is down
            ("127.1.200.1", vec![TOKYO, SINGAPORE]), // JP, Osaka network
            ("127.2.0.9", vec![SAO_PAULO, US_EAST]), // BR
            ("127.3.0.1", vec![FRANKFURT, LONDON]), // DE: EU pool, fenced
            ("127.6.0.1", vec![LONDON, FRANKFURT]), // GB
            ("127.11.0.1", vec![LONDON, FRANKFURT]), // FR: the Paris backup idles
            ("127.5.0.1", vec![US_EAST, US_WEST]), // US-NY: catch-all, nearest first
            ("127.9.0.1", vec![SYDNEY, SINGAPORE]), // AU: country-only record, table reference
            ("127.0.0.1", vec![US_EAST, FRANKFURT]), // unlocated: the default, in order
        ];
        for (source, expected) in cases {
            let reply = udp_from(&server, from(source), &q("ingest.test.example.", A));
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{db} {source}"
            );
            assert!(reply.metadata.authoritative, "{db} {source}: AA");
            assert_eq!(a_records(&reply), expected, "{db} {source}");
            assert_eq!(
                ecs_scope(&reply),
                None,
                "{db} {source}: no ECS asked, none sent"
            );
        }
        // Subdivision rules need a database that has subdivisions: only the nested one does.
        let reply = udp_from(&server, from("127.4.0.1"), &q("ingest.test.example.", A));
        if db.contains("city") {
            assert_eq!(a_records(&reply), vec![US_WEST, US_EAST], "NA-US-CA rule");
        } else {
            assert_eq!(
                a_records(&reply),
                vec![US_WEST, US_EAST],
                "nearest anyway from LA"
            );
        }
    }
}

#[test]
fn ecs_address_is_preferred_over_the_source() {
    let server = Server::test_zone();
    // Asked from Germany for a Japanese client: the client wins.
    let reply = udp_from(
        &server,
        from("127.3.0.1"),
        &q("ingest.test.example.", A).ecs("127.1.0.0", 24),
    );
    assert_eq!(a_records(&reply), vec![TOKYO, SINGAPORE]);
    let reply = udp(&server, &q("ingest.test.example.", A).ecs("127.2.0.0", 24));
    assert_eq!(a_records(&reply), vec![SAO_PAULO, US_EAST]);
    // IPv6 client subnets, AAAA answers from the nodes that have IPv6.
    // Germany is fenced to the EU: one IPv6 answer, not two.
    let reply = udp(
        &server,
        &q("ingest.test.example.", AAAA).ecs("2001:db8:3::", 56),
    );
    assert_eq!(aaaa_records(&reply), vec!["2001:db8:d::1"]);
    let reply = udp(
        &server,
        &q("ingest.test.example.", AAAA).ecs("2001:db8:1::", 56),
    );
    assert_eq!(aaaa_records(&reply), vec!["2001:db8:a::1", "2001:db8:d::1"]);
    // A /0 source carries no client information: the resolver's address is used, scope 0.
    let reply = udp_from(
        &server,
        from("127.2.0.1"),
        &q("ingest.test.example.", A).ecs("0.0.0.0", 0),
    );
    assert_eq!(a_records(&reply), vec![SAO_PAULO, US_EAST]);
    assert_eq!(ecs_scope(&reply), Some((0, 0)));
}

#[test]
fn cidr_rules_win_over_distance_and_fences_still_hold() {
    let server = Server::test_zone();
    // New York by distance, but its subnet is pinned to Tokyo.
    let reply = udp_from(&server, from("127.5.5.9"), &q("ingest.test.example.", A));
    assert_eq!(a_records(&reply), vec![TOKYO]);
    let reply = udp(
        &server,
        &q("ingest.test.example.", AAAA).ecs("2001:db8:5::", 48),
    );
    assert_eq!(aaaa_records(&reply), vec!["2001:db8:a::1"]);
    // A German client in a subnet rule naming Tokyo and Frankfurt: the EU fence removes Tokyo.
    let reply = udp_from(&server, from("127.3.3.3"), &q("ingest.test.example.", A));
    assert_eq!(a_records(&reply), vec![FRANKFURT]);
    // Four answers asked, two EU primaries up (the Paris backup idles while they are):
    // two answers, none outside the EU.
    for source in ["127.3.0.1", "127.6.0.1", "127.11.0.1"] {
        let reply = udp_from(&server, from(source), &q("fenced.test.example.", A));
        let mut got = a_records(&reply);
        got.sort();
        assert_eq!(got, vec![FRANKFURT, LONDON], "{source}");
        assert!(!a_records(&reply).contains(&PARIS_B.to_string()));
    }
    // Outside the fence the same name answers four, nearest first.
    let reply = udp_from(&server, from("127.1.0.1"), &q("fenced.test.example.", A));
    assert_eq!(a_records(&reply).len(), 4);
}

#[test]
fn ecs_scope_is_honest() {
    let server = Server::test_zone();
    let scope = |addr: &str, source: u8, name: &str| {
        let reply = udp(&server, &q(name, A).ecs(addr, source));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{addr}/{source}"
        );
        ecs_scope(&reply).expect("ECS echoed")
    };
    // The database network for 127.1.0.0 is a /17 (Tokyo; Osaka is the other half).
    assert_eq!(scope("127.1.0.0", 24, "ingest.test.example."), (24, 17));
    assert_eq!(scope("127.1.128.0", 24, "ingest.test.example."), (24, 17));
    // Brazil is a /16 in the database, and no subnet rule splits it.
    assert_eq!(scope("127.2.0.0", 24, "ingest.test.example."), (24, 16));
    // Never longer than the source prefix.
    assert_eq!(scope("127.1.0.0", 16, "ingest.test.example."), (16, 16));
    // A pinned /24 inside New York's /16: the rule's prefix decides.
    assert_eq!(scope("127.5.5.0", 24, "ingest.test.example."), (24, 24));
    // Elsewhere in that /16 the answer still changes at the /24's boundary.
    let (_, ny) = scope("127.5.0.0", 24, "ingest.test.example.");
    assert!((17..=24).contains(&ny), "scope {ny}");
    // IPv6, and IPv4-mapped IPv6 looked up as IPv4 with the scope shifted by 96.
    let reply = udp(
        &server,
        &q("ingest.test.example.", AAAA).ecs("2001:db8:1::", 56),
    );
    assert_eq!(ecs_scope(&reply), Some((56, 48)));
    let reply = udp(
        &server,
        &q("ingest.test.example.", A).ecs("::ffff:127.1.0.0", 120),
    );
    assert_eq!(a_records(&reply), vec![TOKYO, SINGAPORE]);
    assert_eq!(ecs_scope(&reply), Some((120, 113)));
    // The same answer for every client: scope 0, cacheable for everyone.
    assert_eq!(scope("127.1.0.0", 24, "fixed.test.example."), (24, 0));
    // Answers that do not depend on the client at all: scope 0.
    let reply = udp(
        &server,
        &q("www.test.example.", hickory_proto::rr::RecordType::MX).ecs("127.1.0.0", 24),
    );
    assert_eq!(ecs_scope(&reply), Some((24, 0)));
    let reply = udp(&server, &q("nothing.test.example.", A).ecs("127.1.0.0", 24));
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ecs_scope(&reply), Some((24, 0)));
}

#[test]
fn malformed_ecs_is_formerr() {
    let server = Server::test_zone();
    // Well-formed, for contrast.
    let mut query = q("ingest.test.example.", A).bytes();
    append_to_opt(&mut query, &ecs_option(1, 20, 0, &[127, 1, 0]));
    let reply = udp_raw(server.addr, from("127.0.0.1"), &query).expect("a reply");
    assert_eq!(reply[3] & 0x0F, 0, "NOERROR for a valid option");
    // Non-zero scope in a query; address bits past the source prefix; unknown family;
    // a source prefix beyond /32 and beyond /128.
    for ecs in [
        ecs_option(1, 24, 8, &[127, 1, 0]),
        ecs_option(1, 20, 0, &[127, 1, 0x0F]),
        ecs_option(3, 24, 0, &[127, 1, 0]),
        ecs_option(1, 33, 0, &[127, 1, 0, 0, 0]),
        ecs_option(2, 129, 0, &[0x20; 17]),
    ] {
        let mut query = q("ingest.test.example.", A).bytes();
        append_to_opt(&mut query, &ecs);
        let reply = udp_raw(server.addr, from("127.0.0.1"), &query).expect("a reply");
        assert_eq!(reply[3] & 0x0F, 1, "FORMERR");
        assert_eq!(&reply[0..2], &query[0..2], "same id");
    }
}

/// An ECS option's bytes: code 8, length, family, source, scope, address.
fn ecs_option(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 8];
    out.extend_from_slice(&((4 + address.len()) as u16).to_be_bytes());
    out.extend_from_slice(&family.to_be_bytes());
    out.push(source);
    out.push(scope);
    out.extend_from_slice(address);
    out
}

/// Appends an option to the OPT record that ends `query` (the last RR, with empty RDATA).
fn append_to_opt(query: &mut Vec<u8>, option: &[u8]) {
    let rdlen_at = query.len() - 2;
    let rdlen = u16::from_be_bytes([query[rdlen_at], query[rdlen_at + 1]]) as usize + option.len();
    query[rdlen_at..rdlen_at + 2].copy_from_slice(&(rdlen as u16).to_be_bytes());
    query.extend_from_slice(option);
}

#[test]
fn several_database_files_are_consulted_in_order() {
    let one = Server::test_zone();
    let reply = udp_from(&one, from("127.12.0.1"), &q("ingest.test.example.", A));
    assert_eq!(
        a_records(&reply),
        vec![US_EAST, FRANKFURT],
        "unlocated with one file"
    );
    let both = Server::start(
        &repo("tests/fixtures/zones"),
        &repo("tests/fixtures/geo-city.mmdb"),
        &[
            "--geo",
            repo("tests/fixtures/geo-extra.mmdb")
                .to_str()
                .expect("utf-8 path"),
        ],
    );
    let reply = udp_from(&both, from("127.12.0.1"), &q("ingest.test.example.", A));
    assert_eq!(
        a_records(&reply),
        vec![FRANKFURT, LONDON],
        "Dubai, from the second file"
    );
    let reply = udp_from(&both, from("127.1.0.1"), &q("ingest.test.example.", A));
    assert_eq!(
        a_records(&reply),
        vec![TOKYO, SINGAPORE],
        "Japan, from the first file"
    );
}

/// A fleet of 40 (starts shorter than its rankings) with `status: down` on `down`.
fn forty_nodes(down: &[usize]) -> String {
    let mut text = String::from(
        "zone: big.example\nsoa: {primary: ns1.big.example., contact: h.big.example.}\nns: [ns1.big.example.]\ncheck: {type: none}\nnodes:\n",
    );
    for i in 0..40 {
        let (lat, lon) = ((i * 37 % 120) as f64 - 60.0, (i * 83 % 360) as f64 - 180.0);
        let status = if down.contains(&i) {
            ", status: down"
        } else {
            ""
        };
        text += &format!(
            "  n{i}: {{geo: AS-JP, location: [{lat}, {lon}], addresses: [198.51.100.{}, '2001:db8::{}']{status}}}\n",
            i + 1,
            i + 1
        );
    }
    text + "steer:\n  ingest: {answers: 2}\n"
}

/// Failures one after another, each built from the build before and from the healthy
/// starts ranked ahead of it while the server waited (a failure that splits classes
/// carries those), and a flap whose changes take the tables before them back: every client
/// gets the answer a server started with those nodes down gives.
#[test]
fn failures_built_on_starts_ranked_ahead_answer_as_a_fresh_start() {
    let geo = repo("geo/dbip-country.mmdb");
    let live = Server::start(&zone_dir("ahead-live", &forty_nodes(&[])), &geo, &[]);
    // A third down, then more one by one, and one back: each change waits for the ranking
    // ahead of the build before it, so the next one can carry it.
    let mut down: Vec<usize> = (0..40).filter(|i| i % 3 == 1).collect();
    let steps: Vec<(usize, &str)> = (down.iter().map(|&i| (i, "force-down")))
        .chain([
            (12, "force-down"),
            (21, "force-down"),
            (4, "obey"),
            (33, "force-down"),
            // A flap: the tables before each change are taken back, not built.
            (33, "obey"),
            (33, "force-down"),
        ])
        .collect();
    let taken_back = || {
        let samples = scrape(&live);
        samples
            .get("geosteer_steered_tables_total{how=\"taken_back\"}")
            .copied()
    };
    assert_eq!(taken_back(), Some(0.0));
    for (node, action) in steps {
        let ranked_before = metric_sum(&scrape(&live), "geosteer_ahead_seconds_count");
        let path = format!("/nodes/big.example/n{node}/{action}");
        assert_eq!(http(live.admin, "POST", &path, None).0, 200, "{path}");
        eventually(Duration::from_secs(20), "ranked ahead of the build", || {
            let ranked = metric_sum(&scrape(&live), "geosteer_ahead_seconds_count");
            match ranked > ranked_before {
                true => Ok(()),
                false => Err(format!(
                    "{ranked} rankings ahead, {ranked_before} before {path}"
                )),
            }
        });
    }
    assert_eq!(taken_back(), Some(2.0), "the flap's two changes");
    down.extend([12, 21, 33]);
    down.retain(|&i| i != 4);
    let fresh = Server::start(&zone_dir("ahead-fresh", &forty_nodes(&down)), &geo, &[]);
    // A client in every place of the database, the first address of its first range.
    let db = geosteer::geo::GeoDb::open(&geo).expect("shipped database");
    let mut seen = std::collections::HashSet::new();
    let clients: Vec<String> = (db.ranges(geosteer::net::Family::V4))
        .filter(|&(_, _, place)| place.is_some_and(|p| seen.insert(p)))
        .map(|(first, _, _)| std::net::Ipv4Addr::from((first >> 96) as u32).to_string())
        .collect();
    assert!(clients.len() > 200, "{} places", clients.len());
    for client in clients {
        for rtype in [A, AAAA] {
            let query = q("ingest.big.example.", rtype).ecs(&client, 24);
            let answer = |server: &Server| {
                let reply = udp(server, &query);
                let mut records = [a_records(&reply), aaaa_records(&reply)].concat();
                records.sort();
                records
            };
            assert_eq!(answer(&live), answer(&fresh), "{client} {rtype}");
        }
    }
}
