//! The shipped example (zones/ with the geo/ DB-IP country database) answers the README's
//! walkthrough correctly, through hickory and through `dig`, over UDP and TCP.

use std::process::Command;

use crate::support::*;
use hickory_proto::rr::RecordType::A;

const TOKYO: &str = "198.51.100.81";
const SAO_PAULO: &str = "198.51.100.21";
const FRANKFURT: &str = "198.51.100.32";
const EU_NODES: [&str; 3] = ["198.51.100.31", "198.51.100.32", "198.51.100.33"];

fn shipped() -> Server {
    Server::start(&repo("zones"), &repo("geo/dbip-country.mmdb"), &[])
}

#[test]
fn readme_walkthrough_with_a_dns_library() {
    let server = shipped();
    for (subnet, first) in [
        ("126.0.0.0", TOKYO),
        ("200.147.3.0", SAO_PAULO),
        ("85.214.0.0", FRANKFURT),
    ] {
        for reply in [
            udp(&server, &q("ingest.live.example.net.", A).ecs(subnet, 24)),
            tcp(&server, &q("ingest.live.example.net.", A).ecs(subnet, 24)),
        ] {
            let answers = a_records(&reply);
            assert_eq!(answers.len(), 2, "{subnet}: {answers:?}");
            assert_eq!(answers[0], first, "{subnet}: {answers:?}");
            let (source, scope) = ecs_scope(&reply).expect("ECS echoed");
            assert_eq!(source, 24);
            assert!((1..=24).contains(&scope), "{subnet}: scope {scope}");
        }
    }
    // The German client is fenced to the EU.
    let reply = udp(
        &server,
        &q("ingest.live.example.net.", A).ecs("85.214.0.0", 24),
    );
    assert!(
        a_records(&reply)
            .iter()
            .all(|a| EU_NODES.contains(&a.as_str()))
    );
    // The broadcaster's pinned encoder network.
    let reply = udp(
        &server,
        &q("ingest.live.example.net.", A).ecs("203.0.113.0", 24),
    );
    assert_eq!(a_records(&reply), vec![TOKYO]);
    assert_eq!(ecs_scope(&reply), Some((24, 24)));
}

/// Runs `dig` against the server and returns its short answer lines and ECS line.
fn dig(server: &Server, args: &[&str]) -> (Vec<String>, String) {
    let text = dig_text(server, &[&["+norec"], args].concat());
    assert!(
        text.contains("status: NOERROR") && text.contains("flags: qr aa"),
        "{text}"
    );
    let answers = text
        .lines()
        .filter(|l| l.starts_with("ingest.live.example.net.") && l.contains("\tA\t"))
        .map(|l| l.rsplit('\t').next().unwrap_or_default().to_string())
        .collect();
    let ecs = text
        .lines()
        .find(|l| l.contains("CLIENT-SUBNET"))
        .unwrap_or_default()
        .to_string();
    (answers, ecs)
}

#[test]
fn readme_walkthrough_with_dig() {
    let server = shipped();
    for (subnet, first) in [
        ("126.0.0.0/24", TOKYO),
        ("200.147.3.0/24", SAO_PAULO),
        ("85.214.0.0/24", FRANKFURT),
    ] {
        for transport in ["+notcp", "+tcp"] {
            let (answers, ecs) = dig(
                &server,
                &[
                    "ingest.live.example.net",
                    &format!("+subnet={subnet}"),
                    transport,
                ],
            );
            assert_eq!(
                answers.first().map(String::as_str),
                Some(first),
                "{subnet} {transport}: {answers:?}"
            );
            assert!(ecs.contains(&format!("CLIENT-SUBNET: {subnet}/")), "{ecs}");
        }
    }
}

#[test]
fn explain_command_tells_why() {
    let output = Command::new(geosteer_binary())
        .current_dir(repo(""))
        .args([
            "explain",
            "--name",
            "ingest.live.example.net",
            "--client",
            "85.214.0.0/24",
        ])
        .output()
        .expect("run geosteer explain");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for expected in [
        "located:  EU-DE",
        "rule:     rule 2 (client in EU)",
        "fences:   EU",
        "frankfurt-1",
        "distance estimate",
        "answer A:    frankfurt-1, london-1",
        "why:      frankfurt-1 has the lowest score",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        !text.contains("tokyo-1"),
        "the EU fence keeps non-EU nodes out of the candidates:\n{text}"
    );
    let output = Command::new(geosteer_binary())
        .current_dir(repo(""))
        .args([
            "explain",
            "--name",
            "nope.live.example.net",
            "--client",
            "192.0.2.1",
        ])
        .output()
        .expect("run geosteer explain");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a steered name"));
}

#[test]
fn dig_explains_an_answer_and_names_the_instance() {
    let server = Server::start(
        &repo("zones"),
        &repo("geo/dbip-country.mmdb"),
        &["--identity", "pop-fra-2"],
    );
    let run = |args: &[&str]| dig_text(&server, &[&["+short"], args].concat());
    let why = run(&[
        "TXT",
        "_explain.ingest.live.example.net",
        "+subnet=85.214.0.0/24",
    ]);
    for expected in [
        "client 85.214.0.0/24 (ECS",
        "located EU-DE",
        "rule 2 (client in EU); fences: EU",
        "1. frankfurt-1",
        "answer A: frankfurt-1,london-1",
        "instance pop-fra-2",
    ] {
        assert!(why.contains(expected), "{expected:?} missing from {why}");
    }
    assert_eq!(run(&["CH", "TXT", "id.server"]).trim(), "\"pop-fra-2\"");
    // NSID (RFC 5001) names the instance on any answer, over UDP and TCP.
    for transport in ["+notcp", "+tcp"] {
        let full = run(&[
            "+noshort",
            "+comments",
            transport,
            "+nsid",
            "ingest.live.example.net",
        ]);
        assert!(full.contains("(\"pop-fra-2\")"), "{transport}: {full}");
        assert!(full.contains("status: NOERROR"), "{full}");
    }
    let plain = run(&["+noshort", "+comments", "ingest.live.example.net"]);
    assert!(!plain.contains("NSID"), "only when asked: {plain}");
    assert!(run(&["CH", "TXT", "version.bind"]).contains("geosteer"));
}

#[test]
fn logs_can_be_json() {
    use std::io::{BufRead, BufReader};
    let mut child = serve_with_json_logs(&[], "info", std::process::Stdio::null());
    let stderr = child.stderr.take().expect("piped");
    let first = BufReader::new(stderr).lines().next();
    let _ = child.kill();
    let _ = child.wait();
    let line = first.expect("a log line").expect("readable");
    let parsed: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    assert!(parsed["fields"]["message"].is_string(), "{line}");
    assert_eq!(parsed["level"], "INFO");
}

#[test]
fn sampled_query_logs_say_who_asked_what_and_got_what() {
    use std::io::{BufRead, BufReader};
    let mut child = serve_with_json_logs(
        &["--query-log-sample", "1"],
        "warn,geosteer::dns=info",
        std::process::Stdio::piped(),
    );
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let addr: std::net::SocketAddr = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("geosteer listening on ")
                .map(|r| r.split_whitespace().next().unwrap_or_default().to_string())
        })
        .and_then(|a| a.parse().ok())
        .expect("a listening line");
    let raw = udp_raw(
        addr,
        from("127.0.0.1"),
        &q("ingest.live.example.net.", A)
            .ecs("126.0.0.0", 24)
            .bytes(),
    );
    assert!(raw.is_some());
    let stderr = BufReader::new(child.stderr.take().expect("piped"));
    let line = stderr
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("\"query\""))
        .expect("a query log line");
    let _ = child.kill();
    let _ = child.wait();
    let parsed: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let fields = &parsed["fields"];
    assert_eq!(fields["qname"], "ingest.live.example.net.", "{line}");
    assert_eq!(fields["qtype"], "A");
    assert_eq!(fields["rcode"], "No Error", "{line}");
    assert_eq!(fields["ecs"], "126.0.0.0/24/11", "{line}");
    assert!(
        fields["answer"]
            .as_str()
            .unwrap_or_default()
            .contains("198.51.100.81"),
        "{line}"
    );
    assert!(fields["latency_us"].is_u64(), "{line}");
}

/// Serves the shipped example on ephemeral ports with JSON logs piped back (stderr), at
/// `rust_log`, with `extra` serve arguments.
fn serve_with_json_logs(
    extra: &[&str],
    rust_log: &str,
    stdout: std::process::Stdio,
) -> std::process::Child {
    Command::new(geosteer_binary())
        .current_dir(repo(""))
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start geosteer")
}
