//! Static records from RFC 1035 master files (`records_file:`): a BIND-style file is served
//! as written (the policy's SOA and NS, not the file's), edits are picked up by the reload
//! watcher, and a broken file is an error located by file and line that keeps the last good
//! records serving.

use std::process::Command;
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

const POLICY: &str = "zone: legacy.example\nsoa: {primary: ns1.legacy.example., contact: h.legacy.example., serial: 7}\n\
     ns: [ns1.legacy.example.]\ncheck: {type: none}\nrecords_file: legacy.example.zone\n\
     records:\n  www: {type: CNAME, value: web.legacy.example.}\n\
     nodes:\n  tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1]}\n\
     steer:\n  ingest: {}\n";

const ZONE_FILE: &str = r#"; as exported from BIND
$ORIGIN legacy.example.
$TTL 3600
@   IN SOA ns9.elsewhere.example. admin.elsewhere.example. (
        2024010101 ; serial
        7200 3600 1209600 300 )
    IN NS  ns9.elsewhere.example.
    IN MX  10 mail
    IN TXT "v=spf1" " -all"
    IN CAA 0 issue "letsencrypt.org"
ns1 IN A   192.0.2.53
web 300 IN A 192.0.2.80
    IN AAAA 2001:db8::80
mail IN A  192.0.2.25
_rtmp._tcp IN SRV 10 100 1935 web
"#;

fn start(dir: &std::path::Path) -> Server {
    Server::start(dir, &repo("tests/fixtures/geo-city.mmdb"), &[])
}

#[test]
fn a_bind_zone_file_is_served_and_its_edits_reload() {
    let dir = zone_dir("records-file", POLICY);
    let zone_file = dir.join("legacy.example.zone");
    std::fs::write(&zone_file, ZONE_FILE).expect("zone file");
    let server = start(&dir);
    let ask = |name: &str, rtype: RecordType| udp(&server, &q(name, rtype));
    let web = ask("web.legacy.example.", RecordType::A);
    assert_eq!(a_records(&web), vec!["192.0.2.80"]);
    assert_eq!(web.answers[0].ttl, 300, "the record's own TTL");
    assert_eq!(
        aaaa_records(&ask("web.legacy.example.", RecordType::AAAA)),
        vec!["2001:db8::80"]
    );
    let mx = ask("legacy.example.", RecordType::MX);
    assert!(
        matches!(&mx.answers[0].data, RData::MX(m) if m.preference == 10 && m.exchange.to_string() == "mail.legacy.example."),
        "{mx:?}"
    );
    assert_eq!(mx.answers[0].ttl, 3600, "$TTL");
    let txt = ask("legacy.example.", RecordType::TXT);
    assert!(
        matches!(&txt.answers[0].data, RData::TXT(t) if t.txt_data.len() == 2),
        "{txt:?}"
    );
    assert_eq!(ask("legacy.example.", RecordType::CAA).answers.len(), 1);
    assert_eq!(
        ask("_rtmp._tcp.legacy.example.", RecordType::SRV)
            .answers
            .len(),
        1
    );
    // The policy's CNAME points into the file's names, and is followed.
    assert_eq!(
        a_records(&ask("www.legacy.example.", RecordType::A)),
        vec!["192.0.2.80"]
    );
    // The policy's SOA and NS are served, not the file's.
    let soa = ask("legacy.example.", RecordType::SOA);
    assert!(
        matches!(&soa.answers[0].data, RData::SOA(s) if s.serial == 7),
        "{soa:?}"
    );
    let ns = ask("legacy.example.", RecordType::NS);
    assert_eq!(ns.answers.len(), 1);
    assert!(
        ns.answers[0]
            .data
            .to_string()
            .contains("ns1.legacy.example."),
        "{ns:?}"
    );

    // An edit of the records file alone is picked up by the watcher.
    std::fs::write(&zone_file, ZONE_FILE.replace("192.0.2.80", "192.0.2.81")).expect("edit");
    eventually(
        Duration::from_secs(10),
        "the edited records file served",
        || {
            let got = a_records(&ask("web.legacy.example.", RecordType::A));
            if got == vec!["192.0.2.81"] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );

    // A broken file: the reload is refused with the file and line, the last good records
    // keep serving.
    let broken = ZONE_FILE.replace("mail IN A  192.0.2.25", "mail IN A  192.0.2.999");
    std::fs::write(&zone_file, &broken).expect("break");
    let (status, body) = crate::support::nodes::http(server.admin, "POST", "/reload", None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("legacy.example.zone:14"),
        "located by file and line: {body}"
    );
    assert_eq!(
        a_records(&ask("web.legacy.example.", RecordType::A)),
        vec!["192.0.2.81"]
    );
}

#[test]
fn check_locates_records_file_errors_and_refuses_unserved_types() {
    let dir = zone_dir("records-file-check", POLICY);
    let zone_file = dir.join("legacy.example.zone");
    let check = || {
        let output = Command::new(env!("CARGO_BIN_EXE_geosteer"))
            .arg("check")
            .arg(&dir)
            .args(["--geo"])
            .arg(repo("tests/fixtures/geo-city.mmdb"))
            .output()
            .expect("run geosteer check");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    std::fs::write(&zone_file, ZONE_FILE).expect("zone file");
    let (ok, stderr) = check();
    assert!(ok, "{stderr}");
    std::fs::write(
        &zone_file,
        ZONE_FILE.replace("web 300 IN A", "web 300 IN BOGUS"),
    )
    .expect("edit");
    let (ok, stderr) = check();
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{}:12:", zone_file.display())),
        "located at the bad line: {stderr}"
    );
    std::fs::write(
        &zone_file,
        format!("{ZONE_FILE}host IN HINFO \"PC\" \"Linux\"\n"),
    )
    .expect("edit");
    let (ok, stderr) = check();
    assert!(!ok);
    assert!(stderr.contains("type HINFO is not served"), "{stderr}");
    // A name in both the file and the policy.
    std::fs::write(&zone_file, format!("{ZONE_FILE}www IN CNAME web\n")).expect("edit");
    let (ok, stderr) = check();
    assert!(!ok);
    assert!(
        stderr.contains("also in the policy's `records:`"),
        "{stderr}"
    );
}

/// TXT records as BIND exports them (a DKIM key split over lines in parentheses, a
/// multi-string SPF, escapes and a `;` inside quotes), answered exactly as Knot answers the
/// same file.
#[test]
fn txt_records_match_knot() {
    let dkim =
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwM6rXf0oJqGkT3dRnGz9p0Tz8nq8yQ1m0fVrb4sD2a5vK";
    let file = format!(
        r#"$ORIGIN txt.example.
$TTL 300
@ IN SOA ns1 h 1 3600 600 1209600 60
@ IN NS ns1
ns1 IN A 192.0.2.53
@ IN TXT "v=spf1 ip4:192.0.2.0/24 " "include:_spf.example.net -all"
sel._domainkey IN TXT ( "v=DKIM1; k=rsa; "
        "p={dkim}"
        "{dkim}" ) ; a comment after the parenthesis
t3 IN TXT ( "p1" "p2" )
esc IN TXT "semi;colon" "quote\"d" "\065BC" unquoted
"#
    );
    let policy = "zone: txt.example\nsoa: {primary: ns1.txt.example., contact: h.txt.example., serial: 1}\n\
                  ns: [ns1.txt.example.]\ncheck: {type: none}\nrecords_file: txt.example.zone\n\
                  nodes:\n  tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1]}\n\
                  steer:\n  ingest: {}\n";
    let dir = zone_dir("records-file-txt", policy);
    std::fs::write(dir.join("txt.example.zone"), &file).expect("zone file");
    let server = start(&dir);
    let knot = Knot::start(&dir.join("knot"), "txt.example", &file);
    for name in [
        "txt.example.",
        "sel._domainkey.txt.example.",
        "t3.txt.example.",
        "esc.txt.example.",
    ] {
        let query = q(name, RecordType::TXT).bytes();
        let ours = tcp_raw(server.addr, std::slice::from_ref(&query));
        let theirs = tcp_raw(knot.addr, std::slice::from_ref(&query));
        let (ours, theirs) = (summary(&ours[0]), summary(&theirs[0]));
        // The answers (authority and additional differ by design: the policy's NS).
        let answer = |s: &str| {
            s.split(" authority=")
                .next()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(answer(&ours), answer(&theirs), "{name}");
        assert!(ours.contains("TXT"), "{ours}");
    }
    let t3 = udp(&server, &q("t3.txt.example.", RecordType::TXT));
    assert!(
        matches!(&t3.answers[0].data, RData::TXT(t) if t.txt_data.iter().map(|s| s.to_vec()).collect::<Vec<_>>() == vec![b"p1".to_vec(), b"p2".to_vec()]),
        "{t3:?}"
    );
}

/// `$INCLUDE`: the included file's records are served, an error inside it is reported at
/// its own file and line, a CNAME conflict there too, and an edit to it alone reloads.
#[test]
fn included_files_are_served_located_and_watched() {
    let dir = zone_dir("records-file-include", POLICY);
    let main = format!("{ZONE_FILE}$INCLUDE more.zone\n");
    std::fs::write(dir.join("legacy.example.zone"), &main).expect("zone file");
    let more = dir.join("more.zone");
    std::fs::write(&more, "; included\ninc IN A 192.0.2.44\n").expect("included file");
    let server = start(&dir);
    let ask = |name: &str| a_records(&udp(&server, &q(name, RecordType::A)));
    assert_eq!(ask("inc.legacy.example."), vec!["192.0.2.44"]);
    // An edit of the included file alone reloads.
    std::fs::write(&more, "; included\ninc IN A 192.0.2.45\n").expect("edit");
    eventually(Duration::from_secs(10), "the included edit served", || {
        let got = ask("inc.legacy.example.");
        if got == vec!["192.0.2.45"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    // Errors inside it are located there.
    let check = |text: &str| {
        std::fs::write(&more, text).expect("edit");
        let (status, body) = crate::support::nodes::http(server.admin, "POST", "/reload", None);
        assert_eq!(status, 400, "{body}");
        body
    };
    let body = check("; included\ninc IN A 192.0.2.45\nbad IN A 192.0.2.1 extra\n");
    assert!(body.contains(&format!("{}:3:", more.display())), "{body}");
    assert!(body.contains("unexpected 'extra'"), "{body}");
    let body = check("; included\n\nweb IN CNAME elsewhere.example.\n");
    assert!(body.contains(&format!("{}:3:", more.display())), "{body}");
    assert!(body.contains("a CNAME cannot share its name"), "{body}");
    std::fs::remove_file(&more).expect("remove");
    let (status, body) = crate::support::nodes::http(server.admin, "POST", "/reload", None);
    assert_eq!(status, 400);
    assert!(
        body.contains("more.zone"),
        "the missing file is named: {body}"
    );
    assert_eq!(
        ask("inc.legacy.example."),
        vec!["192.0.2.45"],
        "the last good records serve"
    );
}
