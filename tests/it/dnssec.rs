//! `geosteer dnssec`: keys made by the real binary are what BIND's tools read (the DS they
//! compute is the one printed), keys made by BIND's `dnssec-keygen` are read back, and
//! damaged key files are refused with their file and line.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// Runs `geosteer dnssec ARGS`: exit code, stdout, stderr.
fn dnssec(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(geosteer_binary())
        .arg("dnssec")
        .args(args)
        .output()
        .expect("geosteer dnssec runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// BIND's DS (SHA-256) of a `.key` file.
fn bind_ds(key: &Path) -> String {
    let output = Command::new("dnssec-dsfromkey")
        .args(["-2"])
        .arg(key)
        .output()
        .expect("dnssec-dsfromkey runs (apt-get install bind9-utils)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A fresh directory for key files.
fn key_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("geosteer-keys-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The `.key` files in `dir` whose DNSKEY has `flags`.
pub(crate) fn key_files(dir: &Path, flags: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("key dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).expect("key file");
            text.lines()
                .any(|l| !l.starts_with(';') && l.contains(&format!("DNSKEY {flags} ")))
        })
        .collect();
    files.sort();
    files
}

/// The DS lines of an output.
fn ds_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains(" IN DS "))
        .map(str::to_string)
        .collect()
}

#[test]
fn keygen_prints_the_ds_bind_computes_and_reads_its_keys_back() {
    for (algorithm, combined) in [("13", false), ("ed25519", true)] {
        let dir = key_dir(&format!("gen-{algorithm}"));
        let d = dir.to_str().expect("utf-8");
        let mut args = vec!["keygen", "--zone", "Live.Example.NET", "--dir", d];
        args.extend(["--algorithm", algorithm]);
        if combined {
            args.push("--combined");
        }
        let (code, out, err) = dnssec(&args);
        assert_eq!(code, 0, "{out}{err}");
        let ksk = key_files(&dir, "257");
        let zsk = key_files(&dir, "256");
        assert_eq!(ksk.len(), 1, "{out}");
        assert_eq!(zsk.len(), usize::from(!combined), "{out}");
        // The DS printed is BIND's for the KSK, and only the KSK's.
        assert_eq!(ds_lines(&out), vec![bind_ds(&ksk[0])], "{out}");
        // The private key is the operator's alone.
        let private = ksk[0].with_extension("private");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&private)
                .expect("private file")
                .permissions(),
        );
        assert_eq!(
            mode & 0o077,
            0,
            "{} is readable by others",
            private.display()
        );
        // Read back, the same DS.
        let (code, again, err) = dnssec(&["ds", "--zone", "live.example.net.", "--dir", d]);
        assert_eq!(code, 0, "{again}{err}");
        assert_eq!(ds_lines(&again), ds_lines(&out));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn keys_made_by_bind_are_read() {
    let dir = key_dir("bind");
    std::fs::create_dir_all(&dir).expect("dir");
    for args in [
        &["-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "bind.example"][..],
        &["-q", "-a", "ECDSAP256SHA256", "bind.example"][..],
    ] {
        let made = Command::new("dnssec-keygen")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("dnssec-keygen runs (apt-get install bind9-utils)");
        assert!(made.status.success(), "{made:?}");
    }
    let d = dir.to_str().expect("utf-8");
    let (code, out, err) = dnssec(&["ds", "--zone", "bind.example", "--dir", d]);
    assert_eq!(code, 0, "{out}{err}");
    let ksk = key_files(&dir, "257");
    assert_eq!(ds_lines(&out), vec![bind_ds(&ksk[0])]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_key_files_and_bad_zones_are_refused_with_their_place() {
    let dir = key_dir("damaged");
    let d = dir.to_str().expect("utf-8");
    let (code, out, err) = dnssec(&["keygen", "--zone", "bad.example", "--dir", d]);
    assert_eq!(code, 0, "{out}{err}");
    let private = key_files(&dir, "256")[0].with_extension("private");
    let text = std::fs::read_to_string(&private).expect("private");
    let damaged = text.replace("PrivateKey: ", "PrivateKey: !!");
    std::fs::write(&private, damaged).expect("write");
    let (code, _, err) = dnssec(&["ds", "--zone", "bad.example", "--dir", d]);
    assert_eq!(code, 1);
    let place = format!("{}:3:", private.display());
    assert!(err.contains(&place) && err.contains("base64"), "{err}");
    // No keys for another zone; a name that is no domain name.
    let (code, _, err) = dnssec(&["ds", "--zone", "other.example", "--dir", d]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no key files for zone other.example."),
        "{err}"
    );
    let long = "a".repeat(64) + ".example";
    let (code, _, err) = dnssec(&["keygen", "--zone", &long, "--dir", d]);
    assert_eq!(code, 1);
    assert!(err.contains("not a domain name"), "{err}");
    let (code, _, err) = dnssec(&[
        "keygen",
        "--zone",
        "x.example",
        "--dir",
        d,
        "--algorithm",
        "8",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("use 13"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A name in uncompressed wire form, as written.
fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A record in RFC 3597's generic form, which BIND reads for every type.
fn generic(owner: &str, ttl: u32, rtype: &str, rdata: &[u8]) -> String {
    let hex: String = rdata.iter().map(|b| format!("{b:02x}")).collect();
    format!("{owner} {ttl} IN {rtype} \\# {} {hex}\n", rdata.len())
}

/// RRSIGs and NSEC records made by the library validate under BIND's `dnssec-verify`: a small
/// zone (apex SOA, NS, MX with a mixed-case target, DNSKEY; two hosts, one with two
/// addresses) signed with a KSK and a ZSK, each algorithm; one flipped signature bit fails it.
#[test]
fn signed_zone_verifies_with_bind() {
    use geosteer::dnssec::{Rrset, Validity, generate_keys, nsec_rdata, rrsig_rdata};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as u32;
    let validity = Validity {
        inception: now - 3600,
        expiration: now + 30 * 86400,
    };
    for algorithm in [
        geosteer::dnssec::Algorithm::EcdsaP256Sha256,
        geosteer::dnssec::Algorithm::Ed25519,
    ] {
        let dir = key_dir(&format!("sign-{}", algorithm.number()));
        let keys = generate_keys("sig.example", &dir, algorithm, false).expect("keys");
        let (ksk, zsk) = (&keys[0], &keys[1]);
        let a = |ip: [u8; 4]| ip.to_vec();
        let mut soa = wire("ns.sig.example.");
        soa.extend(wire("admin.sig.example."));
        for n in [1u32, 7200, 3600, 1_209_600, 300] {
            soa.extend(n.to_be_bytes());
        }
        let mut mx = 10u16.to_be_bytes().to_vec();
        mx.extend(wire("mail.Sig.Example."));
        // (owner, type name, type, records), in canonical order of owners.
        let sets: Vec<(&str, &str, u16, Vec<Vec<u8>>)> = vec![
            ("sig.example.", "SOA", 6, vec![soa]),
            ("sig.example.", "NS", 2, vec![wire("ns.sig.example.")]),
            ("sig.example.", "MX", 15, vec![mx]),
            (
                "sig.example.",
                "DNSKEY",
                48,
                vec![ksk.dnskey_rdata(), zsk.dnskey_rdata()],
            ),
            ("ns.sig.example.", "A", 1, vec![a([192, 0, 2, 53])]),
            (
                "www.sig.example.",
                "A",
                1,
                vec![a([192, 0, 2, 2]), a([192, 0, 2, 1])],
            ),
        ];
        let chain = [
            ("sig.example.", "ns.sig.example.", vec![6u16, 2, 15, 48]),
            ("ns.sig.example.", "www.sig.example.", vec![1]),
            ("www.sig.example.", "sig.example.", vec![1]),
        ];
        let mut zone = String::new();
        let mut signatures: Vec<String> = Vec::new();
        let mut sign = |owner: &str, rtype: u16, ttl: u32, rdatas: &[Vec<u8>], key| {
            let owner_wire = wire(owner);
            let set = Rrset {
                owner: &owner_wire,
                rtype,
                ttl,
                rdatas,
            };
            let sig = rrsig_rdata(&set, key, validity).expect("signed");
            signatures.push(generic(owner, ttl, "RRSIG", &sig));
        };
        for (owner, name, rtype, rdatas) in &sets {
            for r in rdatas {
                zone += &generic(owner, 3600, name, r);
            }
            let key = if *rtype == 48 { ksk } else { zsk };
            sign(owner, *rtype, 3600, rdatas, key);
        }
        for (owner, next, types) in &chain {
            let rdata = nsec_rdata(&wire(next), types);
            zone += &generic(owner, 300, "NSEC", &rdata);
            sign(owner, 47, 300, &[rdata], zsk);
        }
        let verify = |text: &str| {
            let file = dir.join("signed.zone");
            std::fs::write(&file, text).expect("zone file");
            Command::new("dnssec-verify")
                .args(["-o", "sig.example"])
                .arg(&file)
                .output()
                .expect("dnssec-verify runs (apt-get install bind9-utils)")
        };
        let signed = zone.clone() + &signatures.concat();
        let verified = verify(&signed);
        assert!(
            verified.status.success(),
            "{}\n{signed}",
            String::from_utf8_lossy(&verified.stderr)
        );
        // One bit of the A set's signature flipped: refused.
        let www = signatures
            .iter()
            .position(|s| s.starts_with("www.sig.example."))
            .expect("www signed");
        let mut damaged = signatures.clone();
        let last = damaged[www].len() - 2;
        let flipped = if &damaged[www][last..last + 1] == "0" {
            "1"
        } else {
            "0"
        };
        damaged[www].replace_range(last..last + 1, flipped);
        let refused = verify(&(zone + &damaged.concat()));
        assert!(!refused.status.success(), "a damaged signature verified");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
