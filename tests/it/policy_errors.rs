//! Every kind of bad policy yields an error naming the file, line and column, and what was
//! expected; `geosteer check` prints them all and exits non-zero.

use crate::support;

use std::path::Path;
use std::process::Command;

use geosteer::policy::{PolicyErrors, parse_zone};

const GOOD: &str = r#"zone: live.example.net
ttl: 300
soa: {primary: ns1.live.example.net., contact: hostmaster.live.example.net.}
ns: [ns1.live.example.net.]
records:
  ns1: {type: A, values: [192.0.2.53]}
nodes:
  tokyo-1: {tier: core, geo: AS-JP, location: [35.68, 139.69], addresses: [198.51.100.10]}
  frankfurt-1: {tier: core, geo: EU-DE, location: [50.11, 8.68], addresses: [198.51.100.20]}
steer:
  ingest:
    ttl: 30
    pools:
      eu: {nodes: [frankfurt-1]}
    rules:
      - {subnets: ["203.0.113.0/24"], nodes: [tokyo-1]}
      - {geos: [EU], pool: eu, fence: true}
      - {}
check: {type: none}
"#;

fn errors(text: &str) -> Vec<String> {
    match parse_zone(Path::new("zones/live.yaml"), text, 1) {
        Ok(_) => Vec::new(),
        Err(PolicyErrors(errs)) => errs.iter().map(ToString::to_string).collect(),
    }
}

/// Replaces one exact snippet of the good policy, checking it was there.
fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "fixture snippet {from:?}");
    GOOD.replacen(from, to, 1)
}

/// Asserts exactly one error, at `line:column`, containing `needle`.
fn assert_one(text: &str, line: u32, needle: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    let prefix = format!("zones/live.yaml:{line}:");
    assert!(
        errs[0].starts_with(&prefix),
        "{} does not start with {prefix}",
        errs[0]
    );
    assert!(
        errs[0].contains(needle),
        "{} does not mention {needle:?}",
        errs[0]
    );
}

#[test]
fn the_good_policy_is_good() {
    assert_eq!(errors(GOOD), Vec::<String>::new());
}

#[test]
fn unknown_node_in_a_rule() {
    let text = with("nodes: [tokyo-1]}", "nodes: [tokio-1]}");
    assert_one(
        &text,
        16,
        "steer 'ingest': rule 1: unknown node 'tokio-1' (nodes of this zone: frankfurt-1, tokyo-1)",
    );
    assert!(
        errors(&text)[0].starts_with("zones/live.yaml:16:47:"),
        "{:?}",
        errors(&text)
    );
}

#[test]
fn bad_cidr() {
    assert_one(
        &with("203.0.113.0/24", "203.0.113.0/33"),
        16,
        "prefix length /33 is longer than 32 bits",
    );
    assert_one(
        &with("203.0.113.0/24", "203.0.113.9/24"),
        16,
        "did you mean 203.0.113.0/24",
    );
    assert_one(
        &with("203.0.113.0/24", "somewhere"),
        16,
        "expected an address prefix",
    );
}

#[test]
fn bad_coordinates() {
    assert_one(
        &with("[35.68, 139.69]", "[135.68, 139.69]"),
        8,
        "latitude must be within -90..90",
    );
    assert_one(
        &with("[35.68, 139.69]", "[35.68]"),
        8,
        "expected [latitude, longitude]",
    );
}

#[test]
fn duplicate_names() {
    let text = with(
        "  frankfurt-1: {tier: core",
        "  tokyo-1: {tier: core, geo: AS-JP, location: [1, 2], addresses: [192.0.2.9]}\n  frankfurt-1: {tier: core",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("zones/live.yaml:9:"), "{errs:?}");
    assert!(errs[0].contains("given twice"), "{errs:?}");
    // The same record type twice at one name, through the list form.
    let text = with(
        "  ns1: {type: A, values: [192.0.2.53]}",
        "  ns1:\n    - {type: A, values: [192.0.2.53]}\n    - {type: A, value: 192.0.2.54}",
    );
    assert_one(
        &text,
        8,
        "second A set at this name (the first is at line 7)",
    );
    // One name steered twice, spelled differently.
    let text = with("      - {}\n", "      - {}\n  INGEST:\n    ttl: 30\n");
    assert_one(&text, 19, "is steered twice");
}

#[test]
fn steered_name_colliding_with_a_static_record() {
    let text = with(
        "  ns1: {type: A",
        "  ingest: {type: TXT, value: hello}\n  ns1: {type: A",
    );
    assert_one(
        &text,
        12,
        "steer 'ingest': 'ingest.live.example.net.' also has static records",
    );
}

#[test]
fn no_soa() {
    let text = with(
        "soa: {primary: ns1.live.example.net., contact: hostmaster.live.example.net.}\n",
        "",
    );
    assert_one(&text, 1, "no SOA");
}

#[test]
fn unknown_fields_and_wrong_types() {
    let errs = errors(&with("    ttl: 30\n", "    tll: 30\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("zones/live.yaml:12:"), "{errs:?}");
    assert!(errs[0].contains("tll"), "{errs:?}");
    let errs = errors(&with("tier: core, geo: AS-JP", "tier: primary, geo: AS-JP"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("zones/live.yaml:8:"), "{errs:?}");
    assert!(errs[0].contains("primary"), "{errs:?}");
}

#[test]
fn bad_geo_codes_records_and_names() {
    assert_one(
        &with("geo: AS-JP", "geo: EU-JP"),
        8,
        "country JP is in AS, not EU; write AS-JP",
    );
    assert_one(
        &with("geos: [EU]", "geos: [Europe]"),
        17,
        "unknown continent 'Europe'",
    );
    assert_one(
        &with("values: [192.0.2.53]", "values: [192.0.2.530]"),
        6,
        "expected an IPv4 address, got '192.0.2.530'",
    );
    assert_one(
        &with("[ns1.live.example.net.]", "[ns1.live.example.net]"),
        4,
        "must be fully qualified",
    );
    assert_one(
        &with("addresses: [198.51.100.10]", "addresses: [tokyo]"),
        8,
        "'tokyo' is not an IPv4 or IPv6 address",
    );
}

#[test]
fn rule_structure() {
    // A catch-all that is not last, and a last rule that is not a catch-all.
    let text = with("      - {}\n", "");
    assert_one(&text, 17, "the last rule must be a catch-all");
    let text = with("      - {subnets:", "      - {}\n      - {subnets:");
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.contains("rule 1: matches every client")),
        "{errs:?}"
    );
    // Fences: outside nodes, and unknown or looping pools.
    assert_one(
        &with(
            "eu: {nodes: [frankfurt-1]}",
            "eu: {nodes: [frankfurt-1, tokyo-1]}",
        ),
        17,
        "fenced to EU but its nodes include tokyo-1",
    );
    assert_one(
        &with("pool: eu", "pool: europe"),
        17,
        "unknown pool 'europe' (pools: eu)",
    );
    assert_one(
        &with(
            "eu: {nodes: [frankfurt-1]}",
            "eu: {nodes: [frankfurt-1], fallback: eu}",
        ),
        17,
        "pool fallback loop",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = with("nodes: [tokyo-1]}", "nodes: [tokio-1]}")
        .replace("[50.11, 8.68]", "[500, 8.68]")
        .replace("geos: [EU]", "geos: [XX]");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

/// Shape errors (unknown keys, wrong types, duplicate keys) and meaning errors (bad
/// addresses, unknown nodes) in one pass, each located, in geosteer's own words.
#[test]
fn shape_and_meaning_errors_are_reported_together() {
    let text = with(
        "{tier: core, geo: AS-JP,",
        "{tier: core, colour: red, geo: AS-JP,",
    )
    .replace("[198.51.100.20]", "[198.51.100.999]")
    .replace("    ttl: 30\n", "    ttl: thirty\n")
    .replace(
        "  frankfurt-1:",
        "  tokyo-1: {tier: core, geo: AS-JP, location: [1, 2], addresses: [192.0.2.9]}\n  frankfurt-1:",
    )
    .replace("nodes: [tokyo-1]}", "nodes: [tokio-1]}");
    let errs = errors(&text);
    let expect = [
        (
            "zones/live.yaml:8:",
            "unknown field `colour`, expected one of tier, geo",
        ),
        (
            "zones/live.yaml:9:",
            "'tokyo-1' is given twice here; each key may appear once",
        ),
        (
            "zones/live.yaml:10:",
            "'198.51.100.999' is not an IPv4 or IPv6 address",
        ),
        ("zones/live.yaml:13:", "expected a whole number"),
        ("zones/live.yaml:17:", "unknown node 'tokio-1'"),
    ];
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    for ((at, needle), err) in expect.iter().zip(&errs) {
        assert!(
            err.starts_with(at) && err.contains(needle),
            "{err} is not {at} {needle}"
        );
    }
    assert!(
        errs.iter().all(|e| !e.contains("DuplicateKeyPolicy")),
        "no parser option names: {errs:?}"
    );
}

#[test]
fn check_command_prints_located_errors_and_fails() {
    let dir = std::env::temp_dir().join(format!("geosteer-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("live.yaml");
    std::fs::write(&file, with("nodes: [tokyo-1]}", "nodes: [tokio-1]}")).expect("write policy");
    let output = Command::new(env!("CARGO_BIN_EXE_geosteer"))
        .arg("check")
        .arg(&dir)
        .args(["--geo"])
        .arg(support::repo("tests/fixtures/geo-city.mmdb"))
        .output()
        .expect("run geosteer check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "{}:16:47: steer 'ingest': rule 1: unknown node 'tokio-1'",
            file.display()
        )),
        "{stderr}"
    );
    // A broken policy is a clear error at start-up too, not a panic.
    let output = Command::new(env!("CARGO_BIN_EXE_geosteer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--zones"])
        .arg(&dir)
        .output()
        .expect("run geosteer serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown node 'tokio-1'") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // The good policy passes.
    std::fs::write(&file, GOOD).expect("write policy");
    let output = Command::new(env!("CARGO_BIN_EXE_geosteer"))
        .arg("check")
        .arg(&file)
        .args(["--geo"])
        .arg(support::repo("tests/fixtures/geo-city.mmdb"))
        .output()
        .expect("run geosteer check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn answers_out_of_range() {
    let text = with(
        "    ttl: 30\n    pools:",
        "    ttl: 30\n    answers: 4000000000\n    pools:",
    );
    assert_one(
        &text,
        13,
        "answers 4000000000 is more than the 64 addresses",
    );
}

/// No silent defaults: a node with no health check anywhere is refused with the fix spelled
/// out, and a duration without a unit is refused rather than taken as seconds.
#[test]
fn no_silent_defaults() {
    let unchecked = GOOD.replace("check: {type: none}\n", "");
    let errs = errors(&unchecked);
    assert_eq!(errs.len(), 2, "one per node: {errs:#?}");
    assert!(errs[0].starts_with("zones/live.yaml:8:"), "{errs:?}");
    assert!(
        errs[0].contains("tokyo-1") && errs[0].contains("no health check"),
        "{errs:?}"
    );
    assert!(errs[0].contains("`check: {type: none}`"), "{errs:?}");
    // Checking the zone's nodes, or saying on each that it is not checked, both do.
    let checked = GOOD.replace(
        "check: {type: none}\n",
        "check: {type: rtmp, interval: 1m, timeout: 2s}\n",
    );
    assert_eq!(errors(&checked), Vec::<String>::new());
    let per_node = unchecked
        .replace(
            "addresses: [198.51.100.10]}",
            "addresses: [198.51.100.10], check: {type: none}}",
        )
        .replace(
            "addresses: [198.51.100.20]}",
            "addresses: [198.51.100.20], check: {type: tcp, port: 1935}}",
        );
    assert_eq!(errors(&per_node), Vec::<String>::new());
    // `interval: 500` is not 500 seconds: it names no unit.
    let unitless = GOOD.replace(
        "check: {type: none}\n",
        "check: {type: rtmp, interval: 500}\n",
    );
    let errs = errors(&unitless);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("zones/live.yaml:19:"), "{errs:?}");
    assert!(
        errs[0].contains("'500' has no unit: write 500ms or 500s"),
        "{errs:?}"
    );
    let hours = GOOD.replace(
        "      - {}\n",
        "      - {}\n    latency: {hold: 1h, max_age: 90m}\n",
    );
    assert_eq!(errors(&hours), Vec::<String>::new(), "h and m units");
    let too_long = GOOD.replace("      - {}\n", "      - {}\n    latency: {max_age: 48h}\n");
    let errs = errors(&too_long);
    assert!(
        errs.len() == 1 && errs[0].contains("max_age must be at most 24h"),
        "{errs:?}"
    );
}

/// Fences over sets of places: the union of a rule's geos (named sets from `geo_sets:` or
/// shipped ones) is one fence; `check` explains fences that cannot be satisfied.
#[test]
fn fences_over_sets_of_places() {
    let policy = |sets: &str, rules: &str| {
        format!(
            "zone: f.example\nsoa: {{primary: ns1.f.example., contact: h.f.example.}}\nns: [ns1.f.example.]\n\
             check: {{type: none}}\n{sets}nodes:\n\
             \x20 fra-1: {{geo: EU-DE, location: [50.11, 8.68], addresses: [192.0.2.1]}}\n\
             \x20 par-1: {{geo: EU-FR, location: [48.86, 2.35], addresses: [192.0.2.2]}}\n\
             \x20 ams-1: {{geo: EU-NL, location: [52.37, 4.90], addresses: [192.0.2.3]}}\n\
             \x20 lon-1: {{geo: EU-GB, location: [51.51, -0.13], addresses: [192.0.2.4]}}\n\
             \x20 nyc-1: {{geo: NA-US, location: [40.71, -74.0], addresses: [192.0.2.5]}}\n\
             steer:\n  ingest:\n    rules:\n{rules}      - {{}}\n"
        )
    };
    // The README's own GDPR advice now passes: one fence over DE+FR+NL.
    let union = policy(
        "",
        "      - {geos: [EU-DE, EU-FR, EU-NL], nodes: [fra-1, par-1, ams-1], fence: true}\n",
    );
    assert_eq!(errors(&union), Vec::<String>::new());
    // A named set, a shipped one inside it, and the shipped ones used directly.
    let named = policy(
        "geo_sets:\n  gdpr-and-swiss: [eea, EU-CH]\n",
        "      - {geos: [gdpr-and-swiss], nodes: [fra-1, par-1, ams-1], fence: true}\n",
    );
    assert_eq!(errors(&named), Vec::<String>::new());
    let shipped = policy(
        "",
        "      - {geos: [EU-27], nodes: [fra-1, ams-1], fence: true}\n",
    );
    assert_eq!(errors(&shipped), Vec::<String>::new());
    // London is outside the EEA: a fence that would never answer it is refused.
    let outside = policy(
        "",
        "      - {geos: [eea], nodes: [fra-1, lon-1], fence: true}\n",
    );
    let errs = errors(&outside);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("fenced to eea but its nodes include lon-1 (EU-GB) outside it"),
        "{errs:?}"
    );
    // An earlier rule that sends German clients only outside the fence: never an answer.
    let unsatisfiable = policy(
        "",
        "      - {geos: [EU-DE], nodes: [nyc-1, lon-1]}\n      - {geos: [eu-27], nodes: [fra-1], fence: true}\n",
    );
    let errs = errors(&unsatisfiable);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("rule 1: takes clients in EU-DE, inside the fence eu-27 of rule 2, to nodes all outside that fence"),
        "{errs:?}"
    );
    // Set names: unknown ones list what exists; a set may not shadow a code or a shipped set.
    let unknown = policy("", "      - {geos: [gdpr], nodes: [fra-1], fence: true}\n");
    let errs = errors(&unknown);
    assert!(
        errs.iter()
            .any(|e| e.contains("nor is 'gdpr' a geo set: eea, eu-27")),
        "{errs:?}"
    );
    let shadowing = policy("geo_sets:\n  eea: [EU-DE]\n  EU-FR: [EU-DE]\n", "");
    let errs = errors(&shadowing);
    assert_eq!(errs.len(), 2, "{errs:#?}");
}

/// Capacity thresholds: zone defaults a node's own fields override; a resume threshold above
/// full (a node that would never come back) and out-of-range values are refused, each once.
#[test]
fn capacity_thresholds() {
    let with_capacity = |zone: &str, node: &str| {
        GOOD.replace(
            "check: {type: none}\n",
            &format!("check: {{type: none}}\n{zone}"),
        )
        .replace(
            "addresses: [198.51.100.10]}",
            &format!("addresses: [198.51.100.10]{node}}}"),
        )
    };
    assert_eq!(
        errors(&with_capacity(
            "capacity: {full: 90%, resume: 70%}\n",
            ", capacity: {full: 0.95}"
        )),
        Vec::<String>::new()
    );
    let errs = errors(&with_capacity("", ", capacity: {full: 80%, resume: 85%}"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("resume (85%) must not be above full (80%)"),
        "{errs:?}"
    );
    let errs = errors(&with_capacity("capacity: {full: 300%}\n", ""));
    assert_eq!(errs.len(), 1, "reported once, not per node: {errs:#?}");
    assert!(errs[0].contains("at most 150%"), "{errs:?}");
    // How long a load report counts: a duration above 0 and at most a day.
    assert_eq!(
        errors(&with_capacity(
            "capacity: {max_age: 30s}\n",
            ", capacity: {max_age: 2m}"
        )),
        Vec::<String>::new()
    );
    for bad in ["0s", "2d", "soon"] {
        let errs = errors(&with_capacity(
            &format!("capacity: {{max_age: {bad}}}\n"),
            "",
        ));
        assert_eq!(errs.len(), 1, "{bad}: {errs:#?}");
        assert!(errs[0].contains("capacity: max_age"), "{errs:?}");
    }
}

/// A `*` is a wildcard only as the whole first label, and a wildcard cannot delegate.
#[test]
fn misplaced_wildcards() {
    for name in ["a.*.edge", "*x.edge", "edge.*"] {
        let text = with(
            "  ns1: {type: A",
            &format!("  \"{name}\": {{type: A, value: 192.0.2.9}}\n  ns1: {{type: A"),
        );
        assert_one(&text, 6, "only as the whole first label");
    }
    let text = with(
        "  ns1: {type: A",
        "  \"*.lab\": {type: NS, value: ns1.example.}\n  ns1: {type: A",
    );
    assert_one(&text, 6, "a wildcard cannot delegate");
    let ok = with(
        "  ns1: {type: A",
        "  \"*.edge\": {type: A, value: 192.0.2.9}\n  ns1: {type: A",
    );
    assert_eq!(errors(&ok), Vec::<String>::new());
}

/// A check has only its kind's fields: `path:` on a tcp check or `sni:` on an http check is
/// refused where it is written, and a node's check of another kind does not inherit the
/// zone check's kind-specific fields.
#[test]
fn a_check_refuses_fields_its_kind_does_not_have() {
    let zone_tcp_with_path = with(
        "check: {type: none}\n",
        "check: {type: tcp, port: 1935, path: /health}\n",
    );
    assert_one(
        &zone_tcp_with_path,
        19,
        "`path` does not apply to a `type: tcp` check",
    );
    let http_with_sni = with(
        "check: {type: none}\n",
        "check: {type: http, path: /health, sni: ingest.example}\n",
    );
    assert_one(
        &http_with_sni,
        19,
        "`sni` does not apply to a `type: http` check (its fields: path, host, expect, body)",
    );
    let node_rtmp_with_expect = with(
        "addresses: [198.51.100.10]}",
        "addresses: [198.51.100.10], check: {type: rtmp, expect: [200]}}",
    );
    assert_one(
        &node_rtmp_with_expect,
        8,
        "node 'tokyo-1': check: `expect` does not apply to a `type: rtmp` check",
    );
    // A node that inherits the zone's kind may set that kind's fields.
    let inherited = with(
        "check: {type: none}\n",
        "check: {type: https, path: /health}\n",
    )
    .replace(
        "addresses: [198.51.100.10]}",
        "addresses: [198.51.100.10], check: {sni: ingest.example, verify: false}}",
    );
    assert_eq!(errors(&inherited), Vec::<String>::new());
    // Another kind on a node: the zone's path is not its own.
    let other_kind = with(
        "check: {type: none}\n",
        "check: {type: http, path: /health, body: ready}\n",
    )
    .replace(
        "addresses: [198.51.100.10]}",
        "addresses: [198.51.100.10], check: {type: tcp, port: 22}}",
    );
    assert_eq!(errors(&other_kind), Vec::<String>::new());
    let zone = parse_zone(Path::new("zones/live.yaml"), &other_kind, 1).expect("valid");
    let tokyo = zone
        .nodes
        .iter()
        .find(|n| n.name == "tokyo-1")
        .expect("tokyo-1");
    let check = tokyo.check.as_ref().expect("checked");
    assert_eq!(check.probe, geosteer::policy::Probe::Tcp);
    assert_eq!(check.to_string(), "tcp 198.51.100.10:22");
}

/// `spread: {within}` takes a percentage or a time, located when wrong; a rule may have
/// its own.
#[test]
fn spread_margins_are_checked_and_located() {
    for good in ["10%", "5ms", "0.5s"] {
        let text = with(
            "    ttl: 30\n",
            &format!("    ttl: 30\n    spread: {{within: {good}}}\n"),
        );
        assert_eq!(errors(&text), Vec::<String>::new(), "{good}");
    }
    let own = with(
        "      - {geos: [EU], pool: eu, fence: true}",
        "      - {geos: [EU], pool: eu, fence: true, spread: {within: 5ms}}",
    );
    assert_eq!(errors(&own), Vec::<String>::new());
    for (bad, says) in [
        (
            "10",
            "'10' has no unit: write a percentage (10%) or a time (10ms)",
        ),
        ("0%", "within must be above 0 and at most 100% or 1000ms"),
        ("2s", "within must be above 0 and at most 100% or 1000ms"),
        ("lots", "spread: within:"),
    ] {
        let text = with(
            "    ttl: 30\n",
            &format!("    ttl: 30\n    spread: {{within: {bad}}}\n"),
        );
        let errs = errors(&text);
        assert!(
            errs.len() == 1 && errs[0].contains(says) && errs[0].contains("zones/live.yaml:13:"),
            "{bad}: {errs:?}"
        );
    }
    let typo = with("    ttl: 30\n", "    ttl: 30\n    spread: {whitin: 10%}\n");
    assert!(!errors(&typo).is_empty());
}

/// `check` proves fences against the database: a subnet rule before a fence whose nodes
/// are all outside it, over a network the database places inside the fence, is refused
/// with the rule, the subnet and the fence named; the same rule over a network outside the
/// fence, or with a node inside, passes.
#[test]
fn check_refuses_a_subnet_rule_that_empties_fenced_answers() {
    let check = |name: &str, rule: &str| {
        let text = with(
            "      - {geos: [EU], pool: eu, fence: true}",
            &format!("      - {rule}\n      - {{geos: [EU], pool: eu, fence: true}}"),
        );
        let dir = support::zone_dir(name, &text);
        let output = Command::new(env!("CARGO_BIN_EXE_geosteer"))
            .arg("check")
            .arg(&dir)
            .args(["--geo"])
            .arg(support::repo("geo/dbip-country.mmdb"))
            .output()
            .expect("run geosteer check");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // 85.214.0.0/16 is in Germany: inside the EU fence, sent only to Tokyo.
    let (ok, stderr) = check(
        "fence-hole",
        r#"{subnets: ["85.214.0.0/16"], nodes: [tokyo-1]}"#,
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("rule 2: subnet 85.214.0.0/16 holds clients the database places in DE")
            && stderr.contains("inside the fence EU")
            && stderr.contains("(tokyo-1)"),
        "{stderr}"
    );
    // A network outside the fence (in the United States), or a node inside the fence:
    // nothing to refuse.
    let (ok, stderr) = check(
        "fence-no-hole",
        r#"{subnets: ["8.8.8.0/24"], nodes: [tokyo-1]}"#,
    );
    assert!(ok, "{stderr}");
    let (ok, stderr) = check(
        "fence-covered",
        r#"{subnets: ["85.214.0.0/16"], nodes: [tokyo-1, frankfurt-1]}"#,
    );
    assert!(ok, "{stderr}");
}

/// One cause, one error: a near-miss key is named with the field it misses (and read as
/// it, so nothing else is reported), a node missing a field is reported once and not again
/// as an unknown node, and a bad zone-wide check value once, at its source.
#[test]
fn one_typo_one_error() {
    let flow = with(
        "location: [35.68, 139.69], addresses: [198.51.100.10]}",
        "locaton: [35.68, 139.69], addresses: [198.51.100.10]}",
    );
    let errs = errors(&flow);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("unknown field `locaton`") && errs[0].contains("did you mean `location`?"),
        "{errs:?}"
    );
    assert!(errs[0].contains("zones/live.yaml:8:"), "{errs:?}");
    let block = with(
        "  tokyo-1: {tier: core, geo: AS-JP, location: [35.68, 139.69], addresses: [198.51.100.10]}",
        "  tokyo-1:\n    tier: core\n    geo: AS-JP\n    locaton: [35.68, 139.69]\n    addresses: [198.51.100.10]",
    );
    let errs = errors(&block);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("did you mean `location`?"), "{errs:?}");
    let missing = with(
        "location: [35.68, 139.69], addresses: [198.51.100.10]}",
        "addresses: [198.51.100.10]}",
    );
    let errs = errors(&missing);
    assert_eq!(errs.len(), 1, "no cascade (e.g. 'unknown node'): {errs:?}");
    assert!(errs[0].contains("missing field `location`"), "{errs:?}");
    let inherited = with(
        "check: {type: none}",
        "check: {type: tcp, port: 1935, recheck: 50}",
    )
    .replace(
        "addresses: [198.51.100.20]}",
        "addresses: [198.51.100.20], check: {port: 81}}",
    );
    let errs = errors(&inherited);
    assert_eq!(errs.len(), 1, "once, at the zone's check: {errs:?}");
    assert!(errs[0].contains("'50' has no unit"), "{errs:?}");
    let swapped = with(
        "addresses: [198.51.100.20]}",
        "addresses: [198.51.100.20], wieght: 2}",
    );
    let errs = errors(&swapped);
    assert!(
        errs.len() == 1 && errs[0].contains("did you mean `weight`?"),
        "{errs:?}"
    );
}

/// `dnssec:`: a key directory that is not there, one without a key-signing key that
/// signs, and a lifetime out of range are each refused where they are written.
#[test]
fn dnssec_keys_and_lifetimes() {
    let text = format!("{GOOD}dnssec: {{keys: /nonexistent/keys}}\n");
    assert_one(&text, 20, "dnssec: keys: /nonexistent/keys");
    let text = format!("{GOOD}dnssec: {{keys: /nonexistent/keys, signature_lifetime: 120d}}\n");
    assert_one(&text, 20, "signature_lifetime must be from 10s to 90d");
    // A ZSK alone (no KSK with its private key): refused, naming what is missing.
    let dir = std::env::temp_dir().join(format!("geosteer-zsk-only-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new(support::geosteer_binary())
        .args(["dnssec", "keygen", "--zone", "live.example.net", "--dir"])
        .arg(&dir)
        .output()
        .expect("keygen");
    assert!(made.status.success(), "{made:?}");
    for ksk in crate::dnssec::key_files(&dir, "257") {
        std::fs::remove_file(ksk.with_extension("private")).expect("remove the KSK's private key");
    }
    let text = format!("{GOOD}dnssec: {{keys: {}}}\n", dir.display());
    assert_one(
        &text,
        20,
        "no key-signing key (flags 257) with its .private file",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
