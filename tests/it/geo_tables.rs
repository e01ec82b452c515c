//! The range tables that replace the MaxMind tree at query time agree with the tree itself:
//! for addresses all over the shipped database, the same country, and a prefix (ECS scope)
//! inside which the tree says the same thing everywhere and which is never narrower than
//! the tree's own network.

use geosteer::random::XorShift;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use geosteer::geo::GeoDb;
use maxminddb::Reader;
use serde::Deserialize;

#[derive(Deserialize)]
struct Flat {
    country_code: Option<String>,
}

const DB: &str = "geo/dbip-country.mmdb";

/// The tree's answer: country and network prefix.
fn tree(reader: &Reader<Vec<u8>>, ip: IpAddr) -> (Option<String>, u8) {
    let result = reader.lookup(ip).expect("lookup");
    let prefix = result.network().expect("network").prefix();
    let country = result
        .decode::<Flat>()
        .expect("decode")
        .and_then(|f| f.country_code);
    (country, prefix)
}

fn block_ends(ip: IpAddr, len: u8) -> [IpAddr; 2] {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            [
                IpAddr::V4(Ipv4Addr::from(bits & !host)),
                IpAddr::V4(Ipv4Addr::from(bits | host)),
            ]
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            [
                IpAddr::V6(Ipv6Addr::from(bits & !host)),
                IpAddr::V6(Ipv6Addr::from(bits | host)),
            ]
        }
    }
}

#[test]
fn tables_agree_with_the_tree_and_scopes_are_honest() {
    let db = GeoDb::open(Path::new(DB)).expect("open the shipped database");
    let reader = Reader::open_readfile(DB).expect("open with the reference reader");
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let count = 20_000;
    for i in 0..count {
        let ip = if i % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
        } else {
            // Allocated IPv6 space is 2000::/3; every address there, uniformly.
            let high = (rng.next_u64() >> 3) | (1 << 61);
            IpAddr::V6(Ipv6Addr::from(
                (u128::from(high) << 64) | u128::from(rng.next_u64()),
            ))
        };
        let located = db.locate(ip);
        let country = located
            .place
            .and_then(|p| db.places()[p as usize].country)
            .map(|c| String::from_utf8_lossy(&c).into_owned());
        let (tree_country, tree_prefix) = tree(&reader, ip);
        assert_eq!(country, tree_country, "{ip}: country");
        assert!(
            located.prefix_len <= tree_prefix,
            "{ip}: prefix /{} narrower than the tree's /{tree_prefix}",
            located.prefix_len
        );
        // Honest: the whole block says the same thing, at both of its ends.
        for end in block_ends(ip, located.prefix_len) {
            assert_eq!(
                tree(&reader, end).0,
                tree_country,
                "{ip}/{}: {end} differs",
                located.prefix_len
            );
        }
    }
}

/// Damaged database files are refused with the file's name, never a panic; a damaged file
/// that still parses still locates without panicking.
#[test]
fn damaged_databases_are_refused_or_survived() {
    let good = std::fs::read(DB).expect("shipped database");
    let dir = std::env::temp_dir().join(format!("geosteer-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rng = XorShift::new(0x1234_5678_9abc_def1);
    let mut variants: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("tail", good[good.len() - 100_000..].to_vec()),
        (
            "noise",
            (0..100_000).map(|_| rng.next_u64() as u8).collect(),
        ),
    ];
    for seed in 0..4 {
        let mut flipped = good.clone();
        // Flip bytes in the tree and data sections, not the metadata at the end.
        let span = (good.len() - 20_000) as u64;
        for _ in 0..500 {
            flipped[(rng.next_u64() % span) as usize] ^= 0xff;
        }
        variants.push((["flip-0", "flip-1", "flip-2", "flip-3"][seed], flipped));
    }
    let mut refused = 0;
    for (name, bytes) in &variants {
        let path = dir.join(format!("{name}.mmdb"));
        std::fs::write(&path, bytes).expect("write variant");
        match GeoDb::open(&path) {
            Err(e) => {
                refused += 1;
                assert!(
                    e.to_string().contains(&path.display().to_string()),
                    "{name}: error does not name the file: {e}"
                );
            }
            Ok(db) => {
                for _ in 0..1000 {
                    let _ = db.locate(IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(refused >= 4, "only {refused} damaged files refused");
}
