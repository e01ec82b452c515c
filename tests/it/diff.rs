//! `geosteer diff`: the real binary compares policies built against the shipped DB-IP
//! database. A change that sends Korea to Singapore moves exactly Korea; identical policies
//! move nothing and exit 0; `--down` agrees with the answers a real drain gives.

use std::path::{Path, PathBuf};
use std::process::Command;

use hickory_proto::rr::RecordType::A;
use serde_json::Value;

use crate::support::nodes::http;
use crate::support::*;

/// The shipped example's policy in a directory of its own, edited by `edit`.
fn policy(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo("zones/live.example.net.yaml")).expect("example");
    zone_dir(name, &edit(text))
}

/// Runs `geosteer diff` with `args`: exit code, stdout.
fn diff(args: &[&str]) -> (i32, String) {
    let output = Command::new(geosteer_binary())
        .arg("diff")
        .args(args)
        .args([
            "--geo",
            repo("geo/dbip-country.mmdb").to_str().expect("path"),
        ])
        .output()
        .expect("geosteer diff runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const KOREA_RULE: &str = "      - {geos: [AS-KR], nodes: [singapore-1]}\n";
const EU_RULE: &str = "      - {geos: [EU], pool: eu, fence: true}";

#[test]
fn a_policy_change_that_moves_one_country_moves_exactly_that_country() {
    let old = policy("diff-old", |t| t);
    let new = policy("diff-korea", |t| {
        assert!(t.contains(EU_RULE));
        t.replace(EU_RULE, &format!("{KOREA_RULE}{EU_RULE}"))
    });
    let (code, out) = diff(&[path(&old), path(&new), "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let result: Value = serde_json::from_str(&out).expect("JSON");
    let names = result["names"].as_array().expect("names");
    assert_eq!(names.len(), 1, "{out}");
    let moves = names[0]["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), 1, "one move: {out}");
    assert_eq!(moves[0]["from"], "tokyo-1");
    assert_eq!(moves[0]["to"], "singapore-1");
    assert_eq!(moves[0]["countries"].as_array().map(Vec::len), Some(1));
    assert_eq!(moves[0]["countries"][0][0], "KR");
    // Korea's whole located space, and nothing else.
    let share = moves[0]["share"].as_f64().expect("share");
    assert!(share > 0.01 && share < 0.05, "{share}");
    assert!(names[0]["fences"].as_array().is_some_and(Vec::is_empty));
    // Korea's IPv6 clients move the same way, and nobody else's.
    let moves_v6 = names[0]["moves_v6"].as_array().expect("IPv6 moves");
    assert_eq!(moves_v6.len(), 1, "one IPv6 move: {out}");
    assert_eq!(
        (&moves_v6[0]["from"], &moves_v6[0]["to"]),
        (&Value::from("tokyo-1"), &Value::from("singapore-1"))
    );
    assert_eq!(moves_v6[0]["countries"].as_array().map(Vec::len), Some(1));
    assert_eq!(moves_v6[0]["countries"][0][0], "KR");

    // The same, weighed by a query sample: two Korean queries, one Japanese, one for
    // another name.
    let sample = old.join("queries.log");
    std::fs::write(
        &sample,
        "INFO query client=10.9.0.1:5353 transport=Udp ecs=14.32.0.0/24/0 qname=ingest.live.example.net. qtype=A\n\
         {\"fields\":{\"message\":\"query\",\"client\":\"175.192.0.9:4000\",\"ecs\":\"\",\"qname\":\"ingest.live.example.net.\"}}\n\
         126.0.0.1\n\
         INFO query client=14.32.0.9:53 ecs= qname=other.example. qtype=A\n",
    )
    .expect("sample");
    let (code, out) = diff(&[path(&old), path(&new), "--queries", path(&sample)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("by the query sample: 66.7 % of 3 queries move"),
        "{out}"
    );
    assert!(out.contains("tokyo-1 -> singapore-1: 2 queries"), "{out}");

    // A fence taken away is a change even where no answer moves today.
    let unfenced = policy("diff-unfenced", |t| t.replace(", fence: true}", "}"));
    let (code, out) = diff(&[path(&old), path(&unfenced)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fence EU removed"), "{out}");
}

/// A rule for an IPv6 prefix alone moves no IPv4 client, and the gate still sees it.
#[test]
fn an_ipv6_only_change_is_seen() {
    let rule = "      - {subnets: [\"2400:4050::/32\"], nodes: [singapore-1]}\n";
    let old = policy("diff-v6-old", |t| t);
    let new = policy("diff-v6-new", |t| {
        t.replace(EU_RULE, &format!("{rule}{EU_RULE}"))
    });
    let (code, out) = diff(&[path(&old), path(&new), "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let result: Value = serde_json::from_str(&out).expect("JSON");
    let name = &result["names"][0];
    assert!(name["moves"].as_array().is_some_and(Vec::is_empty), "{out}");
    let moves_v6 = name["moves_v6"].as_array().expect("IPv6 moves");
    assert_eq!(moves_v6.len(), 1, "{out}");
    assert_eq!(moves_v6[0]["from"], "tokyo-1");
    assert_eq!(moves_v6[0]["to"], "singapore-1");
    assert_eq!(moves_v6[0]["examples"][0], "2400:4050::/32", "{out}");
    assert_eq!(moves_v6[0]["countries"][0][0], "JP");
    let (code, text) = diff(&[path(&old), path(&new)]);
    assert_eq!(code, 1);
    assert!(
        text.contains("IPv6:") && text.contains("tokyo-1 -> singapore-1"),
        "{text}"
    );
}

#[test]
fn identical_policies_move_nothing_and_exit_zero() {
    let old = policy("diff-same-a", |t| t);
    let same = policy("diff-same-b", |t| t);
    let (code, out) = diff(&[path(&old), path(&same)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("nothing changes: no client moves"), "{out}");
    let (code, out) = diff(&[path(&old), "--down", "no-such-node"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--down no-such-node"), "{out}");
}

#[test]
fn down_agrees_with_the_answers_after_a_real_drain() {
    let (code, out) = diff(&[
        path(&repo("zones")),
        "--down",
        "frankfurt-1",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    let result: Value = serde_json::from_str(&out).expect("JSON");
    let moves = result["names"][0]["moves"]
        .as_array()
        .expect("moves")
        .clone();
    assert!(!moves.is_empty());
    let server = Server::start(&repo("zones"), &repo("geo/dbip-country.mmdb"), &[]);
    let first_node = |network: &str| -> String {
        let address = network.split('/').next().expect("an address");
        let reply = udp(&server, &q("ingest.live.example.net.", A).ecs(address, 24));
        a_records(&reply)
            .first()
            .map_or("-".to_string(), |a| node_with_address(&server, a))
    };
    for m in &moves {
        for example in m["examples"].as_array().into_iter().flatten() {
            let network = example.as_str().expect("a network");
            assert_eq!(first_node(network), m["from"], "{network} before the drain");
        }
    }
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/live.example.net/frankfurt-1/drain",
        None,
    );
    assert_eq!(status, 200, "{body}");
    eventually(
        std::time::Duration::from_secs(10),
        "the drain published",
        || {
            let got = first_node("53.0.0.0/8");
            if got != "frankfurt-1" {
                Ok(())
            } else {
                Err(got)
            }
        },
    );
    for m in &moves {
        for example in m["examples"].as_array().into_iter().flatten() {
            let network = example.as_str().expect("a network");
            assert_eq!(first_node(network), m["to"], "{network} after the drain");
        }
    }
}

/// Inputs are bounded and checked before they cost memory: a policy or query log that
/// never ends (`/dev/zero`) is refused at its cap, and a query log with no client address
/// in it is refused rather than read as "no queries".
#[test]
fn endless_and_garbage_inputs_are_refused() {
    let zones = repo("zones");
    let (code, out) = diff(&["/dev/zero", path(&zones)]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("/dev/zero: the policy file is larger than 16 MiB"),
        "{out}"
    );
    let (code, out) = diff(&[path(&zones), path(&zones), "--queries", "/dev/zero"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("the query log is larger than 256 MiB"),
        "{out}"
    );
    let garbage = zone_dir("diff-garbage-log", "zone: x\n").join("queries.log");
    std::fs::write(&garbage, "not a log\n\x01\x02 either\n").expect("write");
    let (code, out) = diff(&[path(&zones), path(&zones), "--queries", path(&garbage)]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no client address in the query log"), "{out}");
}

/// Every kind of change a client would feel, or that changes how it fails over, exits 1
/// and is named — not only a move of the first node.
#[test]
fn every_kind_of_change_is_a_change() {
    let old = policy("diff-kinds-old", |t| t);
    let cases: [(&str, &str, &str, &str); 9] = [
        (
            "a node left out of a pool: the second position changes",
            "      eu: {nodes: [frankfurt-1, london-1, amsterdam-b]}",
            "      eu: {nodes: [frankfurt-1, amsterdam-b]}",
            "nodes change for",
        ),
        (
            "a node's address",
            "addresses: [198.51.100.81, \"2001:db8:81::1\"]",
            "addresses: [198.51.100.89, \"2001:db8:81::1\"]",
            "addresses change for",
        ),
        (
            "the answer size",
            "    answers: 2\n",
            "    answers: 1\n",
            "answers: 2 → 1",
        ),
        (
            "the steered TTL",
            "    ttl: 30\n",
            "    ttl: 3600\n",
            "ttl change for",
        ),
        (
            "all_down",
            "    answers: 2\n",
            "    answers: 2\n    all_down: fail-closed\n",
            "all_down: FailOpen → FailClosed",
        ),
        (
            "a node's capacity",
            "addresses: [198.51.100.41]}",
            "addresses: [198.51.100.41], capacity: {full: 80%}}",
            "node dubai-1 capacity",
        ),
        (
            "a node's check",
            "check: {type: none}\n\nrecords:",
            "check: {type: tcp, port: 1935}\n\nrecords:",
            "node tokyo-1 check: none → tcp",
        ),
        (
            "a static record",
            "value: \"v=spf1 -all\"",
            "value: \"v=spf1 ip4:192.0.2.0/24 -all\"",
            "record live.example.net. TXT",
        ),
        (
            "a pool's fallback",
            "      eu: {nodes: [frankfurt-1, london-1, amsterdam-b]}",
            "      eu: {nodes: [frankfurt-1, london-1], fallback: eu-backup}\n      eu-backup: {nodes: [amsterdam-b]}",
            "rule 2:",
        ),
    ];
    for (i, (what, from, to, named)) in cases.iter().enumerate() {
        let new = policy(&format!("diff-kinds-{i}"), |t| {
            assert!(t.contains(from), "{what}: fixture snippet {from:?}");
            t.replacen(from, to, 1)
        });
        let (code, out) = diff(&[path(&old), path(&new)]);
        assert_eq!(code, 1, "{what}: {out}");
        assert!(out.contains(named), "{what}: expected {named:?} in\n{out}");
        assert!(!out.contains("0.000 %"), "{what}: noise rows\n{out}");
        if i == 0 {
            // JSON carries the same: the answer change, with both forms of the answer.
            let (code, json) = diff(&[path(&old), path(&new), "--format", "json"]);
            assert_eq!(code, 1, "{what}");
            let parsed: Value = serde_json::from_str(&json).expect("JSON");
            let changes = parsed["names"][0]["answers"].as_array().expect("answers");
            assert!(
                changes.iter().any(|c| c["kind"] == "nodes"
                    && c["before"].as_str().is_some_and(|b| b.contains("london-1"))),
                "{json}"
            );
            // Weighed by queries: a German client keeps Frankfurt first, and its answer
            // changes.
            let sample = old.join("german.log");
            std::fs::write(&sample, "85.214.0.1\n").expect("sample");
            let (code, out) = diff(&[path(&old), path(&new), "--queries", path(&sample)]);
            assert_eq!(code, 1, "{out}");
            assert!(
                out.contains("and 1 queries whose first node stays get another answer"),
                "{out}"
            );
        }
    }
}
