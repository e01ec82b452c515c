//! `geosteer import octodns`: an octoDNS zone file with a dynamic record becomes a policy
//! that `geosteer check` accepts and that answers each region from its pool; what geosteer
//! cannot express is refused, naming the record.

use std::process::Command;

use hickory_proto::rr::RecordType::{A, MX, TXT};

use crate::support::*;

fn import(file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(geosteer_binary())
        .args(["import", "octodns"])
        .arg(file)
        .args(["--zone", "live.example.net"])
        .args([
            "--nameservers",
            "ns1.live.example.net.,ns2.live.example.net.",
        ])
        .args(extra)
        .output()
        .expect("geosteer import runs")
}

#[test]
fn an_octodns_zone_becomes_a_policy_that_answers_by_pool() {
    let output = import(&repo("tests/fixtures/octodns/live.example.net.yaml"), &[]);
    assert!(output.status.success(), "{output:?}");
    let policy = String::from_utf8(output.stdout).expect("utf-8");
    // Choices are marked for the operator; the health check settings carried over.
    assert!(
        policy.contains("# choice: located at DE's reference point"),
        "{policy}"
    );
    assert!(
        policy.contains("check: {type: tcp, port: 1935}"),
        "{policy}"
    );
    assert!(
        policy.contains("eu: {nodes: [eu-1, eu-2], fallback: us}"),
        "{policy}"
    );
    assert!(policy.contains("weight: 2"), "{policy}");
    let dir = zone_dir("octodns-import", &policy);
    let checked = Command::new(geosteer_binary())
        .arg("check")
        .arg(&dir)
        .arg("--geo")
        .arg(repo("tests/fixtures/geo-city.mmdb"))
        .output()
        .expect("geosteer check runs");
    assert!(checked.status.success(), "{checked:?}\n{policy}");
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let ask = |subnet: &str| {
        let mut got = a_records(&udp(
            &server,
            &q("ingest.live.example.net.", A).ecs(subnet, 24),
        ));
        got.sort();
        got
    };
    let from_pool = |got: Vec<String>, pool: &[&str], what: &str| {
        assert!(
            got.len() == 1 && pool.contains(&got[0].as_str()),
            "{what}: {got:?} not one of {pool:?}"
        );
    };
    from_pool(
        ask("127.3.0.0"),
        &["198.51.100.31", "198.51.100.32"],
        "Germany: pool eu",
    );
    from_pool(ask("127.1.0.0"), &["198.51.100.81"], "Japan: pool jp");
    from_pool(
        ask("127.4.0.0"),
        &["198.51.100.11", "198.51.100.12"],
        "the US: catch-all pool us",
    );
    // Weights carry over: across many German networks, eu-1 (weight 2) is drawn about
    // twice as often as eu-2.
    let heavy = (0..90)
        .filter(|i| ask(&format!("127.3.{i}.0")) == ["198.51.100.31"])
        .count();
    assert!(
        (52..=75).contains(&heavy),
        "{heavy} of 90 networks drew the weight-2 node"
    );
    // Static records came over, TXT unescaped.
    let txt = udp(&server, &q("live.example.net.", TXT));
    let texts: Vec<String> = txt.answers.iter().map(|r| r.data.to_string()).collect();
    assert!(texts.iter().any(|t| t.contains("a;b")), "{texts:?}");
    assert_eq!(udp(&server, &q("live.example.net.", MX)).answers.len(), 2);
}

#[test]
fn what_geosteer_cannot_express_is_refused_by_name() {
    let file = std::env::temp_dir().join(format!("octodns-refused-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        "ptr: {type: PTR, value: host.example.}\n\
         alias:\n  type: CNAME\n  value: x.example.\n  dynamic: {pools: {a: {values: [{value: x.example.}]}}, rules: [{pool: a}]}\n\
         both:\n  type: A\n  value: 192.0.2.1\n  dynamic:\n    pools: {a: {values: [{value: 192.0.2.2}]}}\n    rules: [{geos: [EU], subnets: [10.0.0.0/8], pool: a}, {pool: a}]\n",
    )
    .expect("write");
    let output = import(&file, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("record 'ptr' (PTR): type PTR is not served"),
        "{stderr}"
    );
    assert!(
        stderr.contains("record 'alias' (CNAME): dynamic CNAME records cannot be steered"),
        "{stderr}"
    );
    assert!(
        stderr.contains("record 'both' (A): rule 1: both geos and subnets"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing printed on failure");
    let _ = std::fs::remove_file(&file);
}
