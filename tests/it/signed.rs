//! Signed zones served: the test zone signed with keys made by `geosteer dnssec keygen`,
//! its answers validated by BIND's `delv` and by a real Unbound resolver (ECS forwarded)
//! with the zone's own key-signing key as the trust anchor; answers after a health change
//! and after the signatures were made again validate too; without DO nothing changes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;
use geosteer_harness::etcd::free_port;

/// A copy of the test zone with two wildcards, signed: its directory, the delv trust anchor
/// file, the KSK's DNSKEY RDATA text (flags … key) and the DS keygen printed.
pub(crate) struct SignedZone {
    pub(crate) dir: PathBuf,
    origin: String,
    anchor: PathBuf,
    ksk: String,
    ds: String,
}

/// The test policy plus wildcards (an A, and a CNAME to the MX name), with `dnssec` set
/// to `signing` (None: unsigned).
pub(crate) fn policy(signing: Option<&str>) -> String {
    let text = std::fs::read_to_string(repo("tests/fixtures/zones/test.example.yaml"))
        .expect("test policy");
    let caa = "  caa: {type: CAA, value: {flags: 0, tag: issue, value: ca.example}}\n";
    assert!(text.contains(caa), "the test policy still has its CAA line");
    let wild = format!(
        "{caa}  \"*.wild\": {{type: A, value: 192.0.2.201}}\n  \"*.cwild\": {{type: CNAME, value: mail.test.example.}}\n"
    );
    let mut text = text.replace(caa, &wild);
    if let Some(signing) = signing {
        text.push_str(&format!("\ndnssec: {signing}\n"));
    }
    text
}

pub(crate) fn signed_zone(name: &str, signing: &str) -> SignedZone {
    signed_zone_of(name, "test.example", &policy(Some(signing)))
}

/// Keys for `origin` made by keygen beside `policy` (which names them `keys`), and delv's
/// trust anchor.
fn signed_zone_of(name: &str, origin: &str, policy: &str) -> SignedZone {
    let dir = zone_dir(name, policy);
    let keys = dir.join("keys");
    let made = Command::new(geosteer_binary())
        .args(["dnssec", "keygen", "--zone", origin, "--dir"])
        .arg(&keys)
        .output()
        .expect("geosteer dnssec keygen runs");
    assert!(made.status.success(), "{made:?}");
    let printed = String::from_utf8_lossy(&made.stdout).into_owned();
    let ds = printed
        .lines()
        .find(|l| l.contains(" IN DS "))
        .expect("keygen prints the DS")
        .to_string();
    let ksk = printed
        .lines()
        .find(|l| l.contains("DNSKEY 257 "))
        .and_then(|l| l.split("DNSKEY ").nth(1))
        .expect("keygen prints the KSK")
        .to_string();
    let key = ksk.split_whitespace().nth(3).expect("public key");
    let anchor = dir.join("anchor.conf");
    std::fs::write(
        &anchor,
        format!("trust-anchors {{\n  {origin}. static-key 257 3 13 \"{key}\";\n}};\n"),
    )
    .expect("write the trust anchor");
    SignedZone {
        dir,
        origin: origin.to_string(),
        anchor,
        ksk,
        ds,
    }
}

fn serve(zone: &SignedZone) -> Server {
    Server::start(&zone.dir, &repo("tests/fixtures/geo-city.mmdb"), &[])
}

/// What delv prints validating `name`/`rtype` through the server, asked from `source`
/// (a fixture network: the steered answer is that place's).
fn delv(server: &Server, zone: &SignedZone, source: &str, name: &str, rtype: &str) -> String {
    let output = Command::new("timeout")
        .arg("20")
        .arg("delv")
        .arg("-a")
        .arg(&zone.anchor)
        .arg(format!("+root={}", zone.origin))
        .args(["-b", source])
        .arg(format!("@{}", server.addr.ip()))
        .args(["-p", &server.addr.port().to_string(), name, rtype])
        .output()
        .expect("delv runs (apt-get install bind9-dnsutils)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("fully validated"),
        "{name}/{rtype} from {source} not validated (delv: apt-get install bind9-dnsutils):\n{text}"
    );
    text
}

/// Steered answers (by place), static sets, a CNAME chase, NXDOMAIN, NODATA (at a name,
/// at an empty non-terminal, for DS at a delegation), wildcard answers and wildcard
/// NODATA, the apex keys: all validate from the zone's KSK alone. The DS keygen printed is
/// the served KSK's.
#[test]
fn signed_answers_validate_under_the_zones_own_key() {
    let zone = signed_zone("signed-delv", "{keys: keys}");
    let server = serve(&zone);
    let german = delv(&server, &zone, "127.3.0.1", "ingest.test.example", "A");
    assert!(german.contains("A\t192.0.2.4"), "Frankfurt first: {german}");
    let japanese = delv(&server, &zone, "127.1.0.1", "ingest.test.example", "A");
    assert!(japanese.contains("A\t192.0.2.1"), "Tokyo: {japanese}");
    delv(&server, &zone, "127.1.0.1", "ingest.test.example", "AAAA");
    delv(&server, &zone, "127.0.0.1", "spread.test.example", "A");
    let mx = delv(&server, &zone, "127.0.0.1", "mail.test.example", "MX");
    assert!(mx.contains("MX\t10 mx1.test.example."), "{mx}");
    let chased = delv(&server, &zone, "127.3.0.1", "www.test.example", "A");
    assert!(
        chased.contains("CNAME\tingest.test.example.") && chased.contains("A\t192.0.2.4"),
        "{chased}"
    );
    let nx = delv(&server, &zone, "127.0.0.1", "nope.test.example", "A");
    assert!(
        nx.contains("NXDOMAIN") && nx.contains("negative response"),
        "{nx}"
    );
    for (name, rtype) in [
        ("mail.test.example", "AAAA"),
        ("deep.test.example", "A"),
        ("sub.test.example", "DS"),
        ("x.wild.test.example", "MX"),
    ] {
        let nodata = delv(&server, &zone, "127.0.0.1", name, rtype);
        assert!(nodata.contains("NXRRSET"), "{name}/{rtype}: {nodata}");
    }
    let wild = delv(&server, &zone, "127.0.0.1", "x.y.wild.test.example", "A");
    assert!(wild.contains("A\t192.0.2.201"), "{wild}");
    let wild_alias = delv(&server, &zone, "127.0.0.1", "z.cwild.test.example", "MX");
    assert!(
        wild_alias.contains("CNAME\tmail.test.example."),
        "{wild_alias}"
    );
    for rtype in ["DNSKEY", "CDS", "CDNSKEY", "SOA", "NS"] {
        delv(&server, &zone, "127.0.0.1", "test.example", rtype);
    }
    // Every signature at a static name, asked for by type.
    let sigs = dig_text(&server, &["+dnssec", "+short", "test.example", "RRSIG"]);
    for covered in ["SOA", "NS", "DNSKEY", "NSEC", "TXT"] {
        assert!(
            sigs.lines()
                .any(|l| l.starts_with(&format!("{covered} 13 "))),
            "{covered}: {sigs}"
        );
    }
    // A name's NSEC asked for by type is answered (static and steered names alike).
    for name in ["mail.test.example", "ingest.test.example"] {
        let nsec = delv(&server, &zone, "127.0.0.1", name, "NSEC");
        assert!(nsec.contains("\tNSEC\t"), "{name}: {nsec}");
    }
    // The DS keygen printed is the one BIND computes from the DNSKEY served.
    let served = dig_text(&server, &["+noall", "+answer", "test.example", "DNSKEY"]);
    let bare = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        bare(&served).contains(&bare(&zone.ksk)),
        "{served}\n{}",
        zone.ksk
    );
    let keys = zone.dir.join("served-dnskey");
    std::fs::write(&keys, &served).expect("write the served keys");
    let bind = Command::new("dnssec-dsfromkey")
        .args(["-2", "-f"])
        .arg(&keys)
        .arg("test.example")
        .output()
        .expect("dnssec-dsfromkey runs (apt-get install bind9-utils)");
    let bind = String::from_utf8_lossy(&bind.stdout);
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        words(bind.trim())[3..],
        words(&zone.ds)[3..],
        "DS from the served DNSKEY: {bind}"
    );
}

/// A resolver on a loopback port, stopped when dropped.
struct Unbound {
    child: Child,
    port: u16,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Unbound validating test.example with `ksk` as its trust anchor, the zone stubbed
/// to `server`, and ECS forwarded to it (the subnetcache module).
fn unbound(dir: &Path, server: &Server, ksk: &str) -> Unbound {
    let port = free_port();
    let config = dir.join("unbound.conf");
    std::fs::write(
        &config,
        format!(
            r#"server:
  interface: 127.0.0.1
  port: {port}
  do-daemonize: no
  use-syslog: no
  logfile: ""
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: ""
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "subnetcache validator iterator"
  send-client-subnet: {ip}
  client-subnet-always-forward: yes
  max-client-subnet-ipv4: 24
  qname-minimisation: no
  trust-anchor: "test.example. DNSKEY {ksk}"
stub-zone:
  name: "test.example"
  stub-addr: {ip}@{server_port}
"#,
            dir = dir.display(),
            ip = server.addr.ip(),
            server_port = server.addr.port(),
        ),
    )
    .expect("write unbound.conf");
    let child = Command::new("unbound")
        .args(["-d", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unbound runs (apt-get install unbound)");
    let resolver = Unbound { child, port };
    eventually(Duration::from_secs(20), "unbound answering", || {
        let text = resolver.dig(&["test.example", "SOA"]);
        if text.contains("status: NOERROR") {
            Ok(())
        } else {
            Err(text)
        }
    });
    resolver
}

impl Unbound {
    fn dig(&self, args: &[&str]) -> String {
        let output = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+time=5",
                "+tries=1",
            ])
            .args(["+dnssec"])
            .args(args)
            .output()
            .expect("dig runs (apt-get install bind9-dnsutils)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// The flags line of dig's output has `ad`.
fn authenticated(text: &str) -> bool {
    text.lines()
        .find(|l| l.starts_with(";; flags:"))
        .is_some_and(|l| {
            l.split(';')
                .nth(2)
                .is_some_and(|f| f.split_whitespace().any(|w| w == "ad"))
        })
}

/// Unbound, trusting only the zone's KSK and forwarding each client's subnet, returns
/// every client's own steered answer with the AD bit, and authenticated denial too.
#[test]
fn unbound_authenticates_each_client_subnets_answer() {
    let zone = signed_zone("signed-unbound", "{keys: keys}");
    let server = serve(&zone);
    let resolver = unbound(&zone.dir, &server, &zone.ksk);
    for (subnet, first) in [
        ("127.3.0.0/24", "192.0.2.4"),
        ("127.1.0.0/24", "192.0.2.1"),
        ("127.4.0.0/24", "192.0.2.7"),
    ] {
        let text = resolver.dig(&[&format!("+subnet={subnet}"), "ingest.test.example", "A"]);
        assert!(authenticated(&text), "{subnet}: {text}");
        assert!(
            text.contains(&format!("IN\tA\t{first}")),
            "{subnet}: {text}"
        );
        assert!(text.contains("RRSIG\tA 13 3 30 "), "{text}");
    }
    for (name, rtype, status) in [
        ("mail.test.example", "MX", "NOERROR"),
        ("nope.test.example", "A", "NXDOMAIN"),
        ("mail.test.example", "TXT", "NOERROR"),
        ("a.wild.test.example", "A", "NOERROR"),
    ] {
        let text = resolver.dig(&[name, rtype]);
        assert!(
            authenticated(&text) && text.contains(&format!("status: {status}")),
            "{name}/{rtype}: {text}"
        );
    }
}

/// A node forced down swaps the answer set; the new one is signed too, and validates.
#[test]
fn a_health_change_publishes_signed_answers() {
    let zone = signed_zone("signed-swap", "{keys: keys}");
    let server = serve(&zone);
    let before = delv(&server, &zone, "127.3.0.1", "ingest.test.example", "A");
    assert!(before.contains("192.0.2.4"), "{before}");
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/test.example/frankfurt/force-down",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let after = delv(&server, &zone, "127.3.0.1", "ingest.test.example", "A");
    assert!(!after.contains("192.0.2.4"), "Frankfurt is down: {after}");
    assert!(after.contains("192.0.2.5"), "London stays: {after}");
}

/// The expiration of the MX set's signature, from dig.
fn mx_expiration(server: &Server) -> Option<u64> {
    let text = dig_text(server, &["+dnssec", "+short", "mail.test.example", "MX"]);
    let line = text.lines().find(|l| l.starts_with("MX 13 "))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// Signatures with a quarter of their lifetime left are made again without a reload, and
/// the new ones validate.
#[test]
fn signatures_are_made_again_before_they_expire() {
    let zone = signed_zone("signed-resign", "{keys: keys, signature_lifetime: 12s}");
    let server = serve(&zone);
    let first = mx_expiration(&server).expect("a signed MX");
    let again = poll(Duration::from_secs(30), || {
        mx_expiration(&server).filter(|&e| e > first)
    });
    assert!(
        again.is_some(),
        "the MX signature (expiring {first}) was never made again"
    );
    delv(&server, &zone, "127.0.0.1", "mail.test.example", "MX");
    delv(&server, &zone, "127.3.0.1", "ingest.test.example", "A");
}

/// Without DO, a signed zone answers byte for byte as the same zone unsigned; with DO,
/// an answer too big for UDP from an unproven source is truncated, and TCP carries it whole.
#[test]
fn without_do_nothing_changes_and_do_answers_respect_udp_limits() {
    let zone = signed_zone("signed-bytes", "{keys: keys}");
    let signed = serve(&zone);
    let plain_dir = zone_dir("signed-bytes-plain", &policy(None));
    let plain = Server::start(&plain_dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    use hickory_proto::rr::RecordType;
    let queries = [
        q("ingest.test.example.", RecordType::A).ecs("127.3.0.0", 24),
        q("ingest.test.example.", RecordType::AAAA).ecs("127.1.0.0", 24),
        q("mail.test.example.", RecordType::MX),
        q("nope.test.example.", RecordType::A),
        q("mail.test.example.", RecordType::AAAA),
        q("www.test.example.", RecordType::A),
        q("x.y.wild.test.example.", RecordType::A),
        q("sub.test.example.", RecordType::A),
        q("test.example.", RecordType::SOA),
    ];
    for query in &queries {
        let bytes = query.bytes();
        let from = from("127.0.0.1");
        let a = udp_raw(signed.addr, from, &bytes).expect("signed zone answers");
        let b = udp_raw(plain.addr, from, &bytes).expect("unsigned zone answers");
        assert_eq!(a, b, "{}", summary(&b));
    }
    // DO over UDP without a cookie: three times the query at most, so TC; TCP has it all.
    let udp = dig_text(
        &signed,
        &["+dnssec", "+nocookie", "+ignore", "test.example", "DNSKEY"],
    );
    assert!(udp.contains(" tc") || udp.contains("tc "), "{udp}");
    let tcp = dig_text(&signed, &["+dnssec", "+tcp", "test.example", "DNSKEY"]);
    assert!(tcp.contains("RRSIG\tDNSKEY 13 2 600 "), "{tcp}");
}

/// The key files of `dir` by role: `(tag, path of its .key)`, KSKs (flags 257) or ZSKs.
fn keys_of(dir: &Path, flags: u16) -> Vec<(u16, PathBuf)> {
    let mut keys: Vec<(u16, PathBuf)> = crate::dnssec::key_files(dir, &flags.to_string())
        .into_iter()
        .map(|p| {
            let tag = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.rsplit('+').next())
                .and_then(|t| t.parse().ok())
                .expect("K<zone>+<alg>+<tag>.key");
            (tag, p)
        })
        .collect();
    keys.sort();
    keys
}

fn move_file(from: &Path, to_dir: &Path) {
    let to = to_dir.join(from.file_name().expect("a file name"));
    std::fs::rename(from, to).expect("move a key file");
}

/// Key tags of the served DNSKEY set, and of the signatures over `name`/`rtype`.
fn served_tags(server: &Server, name: &str, rtype: &str) -> (Vec<u16>, Vec<u16>) {
    let keys = dig_text(
        server,
        &["+noall", "+answer", "+multi", "test.example", "DNSKEY"],
    );
    let mut key_tags: Vec<u16> = keys
        .lines()
        .filter_map(|l| l.split("key id = ").nth(1))
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    key_tags.sort_unstable();
    let signed = dig_text(server, &["+dnssec", "+short", name, rtype]);
    let mut sig_tags: Vec<u16> = signed
        .lines()
        .filter(|l| l.starts_with(&format!("{rtype} 13 ")))
        .filter_map(|l| l.split_whitespace().nth(6)?.parse().ok())
        .collect();
    sig_tags.sort_unstable();
    (key_tags, sig_tags)
}

fn reload(server: &Server) {
    let (status, body) = http(server.admin, "POST", "/reload", None);
    assert_eq!(status, 200, "{body}");
}

/// A ZSK rolled by pre-publication (published first, then signing, then gone) and a KSK
/// by double DS (the parent holds both DS records while the keys are swapped): answers
/// validate at every step, and the DNSKEY set and signatures name the keys each step says.
#[test]
fn keys_roll_over_without_a_gap() {
    let zone = signed_zone("signed-roll", "{keys: keys}");
    let keys = zone.dir.join("keys");
    let (ksk1, _) = keys_of(&keys, 257)[0].clone();
    let (zsk1, zsk1_path) = keys_of(&keys, 256)[0].clone();
    let server = serve(&zone);
    assert_eq!(
        served_tags(&server, "mail.test.example", "MX").1,
        vec![zsk1]
    );
    // New keys made aside, copied in as a rollover goes.
    let spare = zone.dir.join("spare");
    let made = Command::new(geosteer_binary())
        .args(["dnssec", "keygen", "--zone", "test.example", "--dir"])
        .arg(&spare)
        .output()
        .expect("keygen");
    assert!(made.status.success(), "{made:?}");
    let (zsk2, zsk2_path) = keys_of(&spare, 256)[0].clone();
    let (ksk2, ksk2_path) = keys_of(&spare, 257)[0].clone();
    let aside = zone.dir.join("retired");
    std::fs::create_dir_all(&aside).expect("retired dir");
    let sorted = |mut v: Vec<u16>| {
        v.sort_unstable();
        v
    };
    // 1. The new ZSK is published, not signing.
    move_file(&zsk2_path, &keys);
    reload(&server);
    let (published, signing) = served_tags(&server, "mail.test.example", "MX");
    assert_eq!(published, sorted(vec![ksk1, zsk1, zsk2]));
    assert_eq!(signing, vec![zsk1]);
    delv(&server, &zone, "127.0.0.1", "mail.test.example", "MX");
    // 2. It signs; the old one is published only.
    move_file(&zsk2_path.with_extension("private"), &keys);
    move_file(&zsk1_path.with_extension("private"), &aside);
    reload(&server);
    let (published, signing) = served_tags(&server, "mail.test.example", "MX");
    assert_eq!(published, sorted(vec![ksk1, zsk1, zsk2]));
    assert_eq!(signing, vec![zsk2]);
    delv(&server, &zone, "127.3.0.1", "ingest.test.example", "A");
    // 3. The old ZSK is gone.
    move_file(&zsk1_path, &aside);
    reload(&server);
    assert_eq!(
        served_tags(&server, "test.example", "SOA").0,
        sorted(vec![ksk1, zsk2])
    );
    delv(&server, &zone, "127.0.0.1", "mail.test.example", "MX");
    // KSK, double DS: the parent holds both DS records, then the keys are swapped.
    let ds_of = |dir: &Path| -> Vec<String> {
        let out = Command::new(geosteer_binary())
            .args(["dnssec", "ds", "--zone", "test.example", "--dir"])
            .arg(dir)
            .output()
            .expect("dnssec ds");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(" IN DS "))
            .filter_map(|l| l.split(" IN DS ").nth(1).map(str::to_string))
            .collect()
    };
    let mut both = ds_of(&keys);
    both.extend(
        ds_of(&spare)
            .into_iter()
            .filter(|d| d.starts_with(&format!("{ksk2} "))),
    );
    let anchors: String = both
        .iter()
        .map(|ds| {
            let f: Vec<&str> = ds.split_whitespace().collect();
            format!(
                "  test.example. static-ds {} {} {} \"{}\";\n",
                f[0], f[1], f[2], f[3]
            )
        })
        .collect();
    std::fs::write(&zone.anchor, format!("trust-anchors {{\n{anchors}}};\n")).expect("anchors");
    delv(&server, &zone, "127.0.0.1", "mail.test.example", "MX");
    let ksk1_path = keys_of(&keys, 257)[0].1.clone();
    move_file(&ksk2_path, &keys);
    move_file(&ksk2_path.with_extension("private"), &keys);
    move_file(&ksk1_path.with_extension("private"), &aside);
    move_file(&ksk1_path, &aside);
    reload(&server);
    assert_eq!(
        served_tags(&server, "test.example", "DNSKEY"),
        (sorted(vec![ksk2, zsk2]), vec![ksk2])
    );
    let cds = dig_text(&server, &["+short", "test.example", "CDS"]);
    assert!(cds.starts_with(&format!("{ksk2} 13 2 ")), "{cds}");
    delv(&server, &zone, "127.0.0.1", "mail.test.example", "MX");
    delv(&server, &zone, "127.0.0.1", "nope.test.example", "A");
}

/// Instances of a fleet serving the same key files say which keys they sign with in
/// `geosteer fleet status`, and both answer validly under the one trust anchor.
#[test]
fn fleet_members_show_their_key_tags() {
    let zone = signed_zone("signed-fleet", "{keys: keys}");
    let keys = zone.dir.join("keys");
    let (ksk, _) = keys_of(&keys, 257)[0].clone();
    let (zsk, _) = keys_of(&keys, 256)[0].clone();
    let etcd_dir = zone.dir.join("etcd");
    let etcd = geosteer_harness::etcd::EtcdCluster::start(&etcd_dir, 1);
    let member = |identity: &str| {
        Server::start(
            &zone.dir,
            &repo("tests/fixtures/geo-city.mmdb"),
            &[
                "--fleet",
                &etcd.endpoints(),
                "--fleet-prefix",
                "/signed",
                "--identity",
                identity,
            ],
        )
    };
    let (a, b) = (member("a"), member("b"));
    let expected = format!("\"dnssec\":{{\"test.example\":[\"KSK {ksk}\",\"ZSK {zsk}\"]}}");
    eventually(
        Duration::from_secs(20),
        "both members registered with their keys",
        || {
            let out = Command::new(geosteer_binary())
                .args([
                    "fleet",
                    "--fleet",
                    &etcd.endpoints(),
                    "--fleet-prefix",
                    "/signed",
                    "status",
                ])
                .output()
                .expect("geosteer fleet status");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let listed = text.lines().filter(|l| l.contains(&expected)).count();
            if text.contains("members (2): a, b") && listed == 2 && !text.contains("warning") {
                Ok(())
            } else {
                Err(text)
            }
        },
    );
    for server in [&a, &b] {
        delv(server, &zone, "127.3.0.1", "ingest.test.example", "A");
    }
}

/// A flood of DO queries from one source without a cookie: rate limiting holds (about half
/// the limited replies are dropped) and no reply is more than three times its query, signed
/// answers included (they are truncated instead).
#[test]
fn do_floods_are_rate_limited_and_never_amplified() {
    let zone = signed_zone("signed-flood", "{keys: keys}");
    let server = Server::start(
        &zone.dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--rrl-rate", "20", "--rrl-slip", "2"],
    );
    let socket = std::net::UdpSocket::bind("127.0.0.62:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut query = q("ingest.test.example.", hickory_proto::rr::RecordType::A).bytes();
    // The OPT record is last: root owner, type, class, then the TTL whose third byte has DO.
    let opt = query.len() - 11;
    assert_eq!(query[opt..opt + 3], [0, 0, 41], "OPT last, without options");
    query[opt + 7] |= 0x80;
    let flood = 400;
    for _ in 0..flood {
        socket.send_to(&query, server.addr).expect("send");
    }
    let mut replies = 0;
    let mut buf = [0u8; 4096];
    while let Ok((len, _)) = socket.recv_from(&mut buf) {
        assert!(
            len <= 3 * query.len(),
            "a {len}-byte reply to a {}-byte query",
            query.len()
        );
        replies += 1;
    }
    assert!(
        (20..=250).contains(&replies),
        "{replies} replies to {flood} queries"
    );
    // The same query over TCP gets the signed answer.
    let text = dig_text(&server, &["+dnssec", "+tcp", "ingest.test.example", "A"]);
    assert!(text.contains("RRSIG\tA 13 3 30 "), "{text}");
}

/// Each carrier line's variant of a steered answer is signed: clients on the carrier get
/// the node's address there, others its default address, and both validate.
#[test]
fn carrier_line_answers_are_signed_each() {
    let policy = "zone: car.example\nsoa: {primary: ns1.car.example., contact: h.car.example.}\n\
        ns: [ns1.car.example.]\ncheck: {type: none}\nnodes:\n\
        \x20 tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1, {address: 192.0.2.101, asn: 64500}]}\n\
        \x20 singapore: {geo: AS-SG, location: [1.35, 103.82], addresses: [192.0.2.2]}\n\
        steer:\n  ingest: {answers: 1}\ndnssec: {keys: keys}\n";
    let zone = signed_zone_of("signed-carriers", "car.example", policy);
    let asn = repo("tests/fixtures/geo-asn.mmdb");
    let server = Server::start(
        &zone.dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &["--asn-db", asn.to_str().expect("utf-8 path")],
    );
    let on_carrier = delv(&server, &zone, "127.1.0.5", "ingest.car.example", "A");
    assert!(on_carrier.contains("A\t192.0.2.101"), "{on_carrier}");
    let off_carrier = delv(&server, &zone, "127.1.200.1", "ingest.car.example", "A");
    assert!(off_carrier.contains("A\t192.0.2.1\n"), "{off_carrier}");
}
