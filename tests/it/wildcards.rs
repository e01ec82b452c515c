//! Wildcards (RFC 4592), static and steered, answered exactly as Knot DNS answers the same
//! records: synthesis with the query's own name, closest-encloser rules, empty
//! non-terminals, NODATA at a wildcard, and no wildcard below a delegation; and the
//! additional data of NS, MX and SRV answers, the same as Knot's.

use hickory_proto::rr::RecordType;

use crate::support::*;

const POLICY: &str = r#"zone: w.example
ttl: 300
soa: {primary: ns1.w.example., contact: h.w.example., serial: 1, refresh: 3600, retry: 600, expire: 1209600, minimum: 60, ttl: 300}
ns: [ns1.w.example.]
check: {type: none}
records:
  ns1: {type: A, value: 192.0.2.53}
  "*": {type: TXT, value: "apex wildcard"}
  "*.edge":
    - {type: A, value: 192.0.2.10}
    - {type: AAAA, value: "2001:db8::10"}
  host.edge: {type: A, value: 192.0.2.11}
  a.b.edge: {type: A, value: 192.0.2.12}
  "*.cname": {type: CNAME, value: host.edge.w.example.}
  lab: {type: NS, values: [ns1.lab.w.example.]}
  ns1.lab: {type: A, value: 192.0.2.80}
  "@": {type: MX, values: [{preference: 10, exchange: mail.w.example.}, {preference: 20, exchange: mx.elsewhere.example.}]}
  mail:
    - {type: A, value: 192.0.2.25}
    - {type: AAAA, value: "2001:db8::25"}
  _rtmp._tcp: {type: SRV, value: {priority: 1, weight: 5, port: 1935, target: host.edge.w.example.}}
nodes:
  tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1]}
steer:
  "*.ingest": {answers: 1}
"#;

/// The same records as a zone file, for Knot.
const ZONE_FILE: &str = r#"$ORIGIN w.example.
$TTL 300
@ SOA ns1 h 1 3600 600 1209600 60
@ NS ns1
ns1 A 192.0.2.53
* TXT "apex wildcard"
*.edge A 192.0.2.10
*.edge AAAA 2001:db8::10
host.edge A 192.0.2.11
a.b.edge A 192.0.2.12
*.cname CNAME host.edge
lab NS ns1.lab
ns1.lab A 192.0.2.80
@ MX 10 mail
@ MX 20 mx.elsewhere.example.
mail A 192.0.2.25
mail AAAA 2001:db8::25
_rtmp._tcp SRV 1 5 1935 host.edge
"#;

#[test]
fn wildcard_answers_match_knot() {
    let dir = zone_dir("wildcards", POLICY);
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let knot = Knot::start(&dir.join("knot"), "w.example", ZONE_FILE);
    let cases = [
        ("anything.w.example.", RecordType::TXT), // the apex wildcard
        ("anything.w.example.", RecordType::A),   // NODATA at a wildcard
        ("x.edge.w.example.", RecordType::A),
        ("X.Edge.W.Example.", RecordType::AAAA), // synthesized with the query's spelling
        ("x.edge.w.example.", RecordType::TXT),  // NODATA, not the apex wildcard
        ("deep.er.edge.w.example.", RecordType::A), // several labels under one wildcard
        ("*.edge.w.example.", RecordType::A),    // the wildcard's own name
        ("host.edge.w.example.", RecordType::A), // an existing name beside it
        ("host.edge.w.example.", RecordType::TXT), // existing: NODATA, no wildcard
        ("b.edge.w.example.", RecordType::A),    // an empty non-terminal: NODATA
        ("x.b.edge.w.example.", RecordType::A),  // closest encloser b.edge has none: NXDOMAIN
        ("x.host.edge.w.example.", RecordType::A), // closest encloser host.edge: NXDOMAIN
        ("edge.w.example.", RecordType::A),      // the wildcard's parent: an empty non-terminal
        ("x.cname.w.example.", RecordType::A),   // a wildcard CNAME, followed in the zone
        ("x.lab.w.example.", RecordType::A),     // below a delegation: a referral
        ("ns1.w.example.", RecordType::A),
        ("w.example.", RecordType::AAAA), // the apex: NODATA
        // Additional data: the addresses of in-zone targets (RFC 1034 §4.3.2).
        ("w.example.", RecordType::NS),
        ("w.example.", RecordType::MX), // one target in the zone, one outside
        ("_rtmp._tcp.w.example.", RecordType::SRV),
        ("mail.w.example.", RecordType::MX), // NODATA: no additional data
    ];
    let mut differences = Vec::new();
    for (name, rtype) in cases {
        let query = q(name, rtype).bytes();
        // Over TCP: over UDP geosteer sends a source without a cookie at most three times
        // its query (leaving additional data out), which Knot does not.
        let ours = tcp_raw(server.addr, std::slice::from_ref(&query)).remove(0);
        let theirs = tcp_raw(knot.addr, std::slice::from_ref(&query)).remove(0);
        let (ours, theirs) = (summary(&ours), summary(&theirs));
        if ours != theirs {
            differences.push(format!(
                "{name} {rtype}:\n  geosteer {ours}\n  knot     {theirs}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// A steered wildcard: per-customer names under `*.ingest` are steered like `ingest` would
/// be, each answered with its own name.
#[test]
fn a_steered_wildcard_answers_every_name_below_it() {
    let dir = zone_dir("steered-wildcard", POLICY);
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    for name in [
        "customer-1.ingest.w.example.",
        "Encoder.Customer-2.ingest.w.example.",
    ] {
        let reply = udp_from(&server, from("127.1.0.5"), &q(name, RecordType::A));
        assert_eq!(a_records(&reply), vec!["192.0.2.1"], "{name}");
        assert_eq!(
            reply.answers[0].name.to_string(),
            name,
            "owner is the query's name"
        );
        assert!(reply.metadata.authoritative);
    }
    // The wildcard's parent exists (an empty non-terminal): NODATA, not NXDOMAIN.
    let parent = udp(&server, &q("ingest.w.example.", RecordType::A));
    assert_eq!(
        parent.metadata.response_code,
        hickory_proto::op::ResponseCode::NoError
    );
    assert!(parent.answers.is_empty());
}

/// Explain sees names a steered wildcard answers: on the command line, in the admin
/// interface and as `_explain` TXT; and says the truth when drains empty an answer.
#[test]
fn explain_answers_for_names_under_a_steered_wildcard() {
    let dir = zone_dir("wildcards-explain", POLICY);
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let (status, why) = crate::support::nodes::http(
        server.admin,
        "GET",
        "/explain?name=foo.ingest.w.example.&client=127.1.0.5",
        None,
    );
    assert_eq!(status, 200, "{why}");
    assert!(
        why.contains("foo.ingest.w.example. (answered by the wildcard *.ingest.w.example.)"),
        "{why}"
    );
    assert!(why.contains("answer A:    tokyo"), "{why}");
    let txt = tcp(
        &server,
        &q("_explain.foo.ingest.w.example.", RecordType::TXT),
    );
    let text: Vec<String> = (txt.answers.iter())
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            _ => None,
        })
        .collect();
    assert!(
        text.iter()
            .any(|t| t.contains("answered by the wildcard *.ingest.w.example.")),
        "{text:?}"
    );
    let output = std::process::Command::new(geosteer_binary())
        .args([
            "explain",
            "--name",
            "bar.ingest.w.example.",
            "--client",
            "127.1.0.5",
            "--zones",
        ])
        .arg(&dir)
        .args(["--geo"])
        .arg(repo("tests/fixtures/geo-city.mmdb"))
        .output()
        .expect("geosteer explain runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("answered by the wildcard *.ingest.w.example."),
        "{printed}"
    );
    // Its only node drained: the answer is empty, and explain says why.
    let (status, _) =
        crate::support::nodes::http(server.admin, "POST", "/nodes/w.example/tokyo/drain", None);
    assert_eq!(status, 200);
    let (_, why) = crate::support::nodes::http(
        server.admin,
        "GET",
        "/explain?name=foo.ingest.w.example.&client=127.1.0.5",
        None,
    );
    assert!(
        why.contains("every node allowed for this client is drained or forced down (tokyo): the answer is empty"),
        "{why}"
    );
}
