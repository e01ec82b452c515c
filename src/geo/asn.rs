//! Which network (autonomous system) a client is on: a MaxMind-format ASN database (GeoLite2-ASN
//! schema, `autonomous_system_number`) or the ip-location-db CSV (`first,last,asn,name`).
//!
//! Used only when a node has addresses on named carriers: a client of that carrier gets the
//! node's address on the same network. Like `GeoDb`, every record is decoded once at load;
//! a lookup is a tree walk (or a binary search) and a map lookup. (The ASN database is read
//! only for clients of answers with carrier variants, so it stays a MaxMind tree.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::db::GeoError;
use super::ranges::widest_block;
use crate::net::{Family, Prefix, address_bits, mask};

/// A client's network as the ASN database knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsnLookup {
    /// The AS number, when known.
    pub asn: Option<u32>,
    /// The prefix length over which that holds (for the ECS scope).
    pub prefix_len: u8,
}

/// An opened ASN database.
pub struct AsnDb {
    path: PathBuf,
    source: Source,
    /// Every network of each AS, for latency measurements made per AS.
    networks: HashMap<u32, Vec<Prefix>>,
}

enum Source {
    Mmdb {
        reader: Reader<Vec<u8>>,
        asn_by_offset: HashMap<usize, u32>,
    },
    /// Sorted, non-overlapping `(first, last, asn)` ranges of left-aligned addresses.
    Ranges {
        v4: Vec<(u128, u128, u32)>,
        v6: Vec<(u128, u128, u32)>,
    },
}

impl std::fmt::Debug for AsnDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsnDb").field("path", &self.path).finish()
    }
}

#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
}

impl AsnDb {
    /// Opens `path`: a `.csv` file as ip-location-db ranges, anything else as a MaxMind DB.
    pub fn open(path: &Path) -> Result<AsnDb, GeoError> {
        let is_csv = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let mut networks: HashMap<u32, Vec<Prefix>> = HashMap::new();
        let source = if is_csv {
            Self::open_csv(path, &mut networks)?
        } else {
            Self::open_mmdb(path, &mut networks)?
        };
        Ok(AsnDb {
            path: path.to_path_buf(),
            source,
            networks,
        })
    }

    fn open_mmdb(
        path: &Path,
        networks: &mut HashMap<u32, Vec<Prefix>>,
    ) -> Result<Source, GeoError> {
        let reader = Reader::open_readfile(path).map_err(GeoError::opening(path))?;
        let corrupt = GeoError::corrupt_in(path);
        let mut asn_by_offset = HashMap::new();
        for network in reader.networks(WithinOptions::default()).map_err(corrupt)? {
            let network = network.map_err(corrupt)?;
            let Some(offset) = network.offset() else {
                continue;
            };
            let asn = match asn_by_offset.get(&offset) {
                Some(asn) => Some(*asn),
                None => {
                    let record: Option<AsnRecord> = network.decode().map_err(corrupt)?;
                    let asn = record.and_then(|r| r.autonomous_system_number);
                    if let Some(asn) = asn {
                        asn_by_offset.insert(offset, asn);
                    }
                    asn
                }
            };
            if let (Some(asn), Ok(net)) = (asn, network.network()) {
                let family = Family::of(net.ip());
                networks.entry(asn).or_default().push(Prefix {
                    family,
                    bits: address_bits(net.ip()) & mask(net.prefix()),
                    len: net.prefix(),
                });
            }
        }
        Ok(Source::Mmdb {
            reader,
            asn_by_offset,
        })
    }

    fn open_csv(path: &Path, networks: &mut HashMap<u32, Vec<Prefix>>) -> Result<Source, GeoError> {
        let text = std::fs::read_to_string(path).map_err(|e| GeoError::Csv {
            path: path.to_path_buf(),
            line: 0,
            message: e.to_string(),
        })?;
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: &str| GeoError::Csv {
                path: path.to_path_buf(),
                line: i + 1,
                message: message.to_string(),
            };
            let mut fields = line.splitn(4, ',');
            let (Some(first), Some(last), Some(asn)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("expected first,last,asn,name"));
            };
            let (Ok(first), Ok(last)) = (
                first.trim().parse::<IpAddr>(),
                last.trim().parse::<IpAddr>(),
            ) else {
                if i == 0 {
                    continue; // a header line
                }
                return Err(bad("first and last must be IP addresses"));
            };
            let asn: u32 = asn
                .trim()
                .parse()
                .map_err(|_| bad("asn must be a number"))?;
            if Family::of(first) != Family::of(last) || address_bits(first) > address_bits(last) {
                return Err(bad("first and last must be one family, first ≤ last"));
            }
            let entry = (address_bits(first), address_bits(last), asn);
            let family = Family::of(first);
            networks
                .entry(asn)
                .or_default()
                .extend(range_to_prefixes(entry.0, entry.1, family));
            match Family::of(first) {
                Family::V4 => v4.push(entry),
                Family::V6 => v6.push(entry),
            }
        }
        v4.sort_unstable();
        v6.sort_unstable();
        Ok(Source::Ranges { v4, v6 })
    }

    /// Every network of `asn` (empty when the database has none).
    pub fn networks_of(&self, asn: u32) -> &[Prefix] {
        self.networks.get(&asn).map_or(&[], Vec::as_slice)
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The client's AS number, if known, and the prefix over which that holds.
    pub fn lookup(&self, ip: IpAddr) -> AsnLookup {
        match &self.source {
            Source::Mmdb {
                reader,
                asn_by_offset,
            } => {
                let Ok(result) = reader.lookup(ip) else {
                    return AsnLookup {
                        asn: None,
                        prefix_len: 0,
                    };
                };
                let prefix_len = match result.network() {
                    Ok(n) if Family::of(n.ip()) == Family::of(ip) => n.prefix(),
                    _ => 0,
                };
                AsnLookup {
                    asn: result.offset().and_then(|o| asn_by_offset.get(&o).copied()),
                    prefix_len,
                }
            }
            Source::Ranges { v4, v6 } => {
                let family = Family::of(ip);
                let ranges = if family == Family::V4 { v4 } else { v6 };
                let bits = address_bits(ip);
                let at = ranges.partition_point(|(first, _, _)| *first <= bits);
                match at.checked_sub(1).map(|i| ranges[i]) {
                    Some((first, last, asn)) if bits <= last => AsnLookup {
                        asn: Some(asn),
                        prefix_len: widest_block(
                            bits,
                            first,
                            (last | !mask(family.bits())).checked_add(1),
                            family.bits(),
                        ),
                    },
                    _ => AsnLookup {
                        asn: None,
                        prefix_len: family.bits(),
                    },
                }
            }
        }
    }
}

/// The fewest prefixes that exactly cover `[first, last]` (left-aligned addresses).
fn range_to_prefixes(first: u128, last: u128, family: Family) -> Vec<Prefix> {
    let width = family.bits();
    // Left-aligned IPv4 addresses keep their low 96 bits zero: a block's end fills them.
    let last = last | !mask(width);
    let span = |len: u8| {
        if len == 0 {
            u128::MAX
        } else {
            (1u128 << (128 - u32::from(len))) - 1
        }
    };
    let mut out = Vec::new();
    let mut start = first;
    loop {
        // The largest aligned block that starts here and stays inside the range.
        let mut len = width;
        while len > 0 {
            let bigger = len - 1;
            let fits = start & span(bigger) == 0
                && start
                    .checked_add(span(bigger))
                    .is_some_and(|end| end <= last);
            if !fits {
                break;
            }
            len = bigger;
        }
        out.push(Prefix {
            family,
            bits: start,
            len,
        });
        match start
            .checked_add(span(len))
            .and_then(|end| end.checked_add(1))
        {
            Some(next) if next <= last && out.len() < 4096 => start = next,
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_into_prefixes() {
        let p = |a: &str| address_bits(a.parse().unwrap());
        let show = |v: Vec<Prefix>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            show(range_to_prefixes(
                p("10.0.0.0"),
                p("10.0.0.255"),
                Family::V4
            )),
            vec!["10.0.0.0/24"]
        );
        assert_eq!(
            show(range_to_prefixes(p("10.0.0.1"), p("10.0.0.6"), Family::V4)),
            vec!["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        assert_eq!(
            show(range_to_prefixes(
                p("0.0.0.0"),
                p("255.255.255.255"),
                Family::V4
            )),
            vec!["0.0.0.0/0"]
        );
    }

    #[test]
    fn csv_ranges_and_scopes() {
        let dir = std::env::temp_dir().join(format!("geosteer-asn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("asn.csv");
        std::fs::write(
            &path,
            "first,last,asn,name\n10.0.0.0,10.0.255.255,64500,\"Example, Inc\"\n10.1.0.0,10.1.0.127,64501,Other\n2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,64502,V6\n",
        )
        .unwrap();
        let db = AsnDb::open(&path).unwrap();
        let look = |s: &str| db.lookup(s.parse().unwrap());
        assert_eq!(
            look("10.0.3.4"),
            AsnLookup {
                asn: Some(64500),
                prefix_len: 16
            }
        );
        assert_eq!(
            look("10.1.0.5"),
            AsnLookup {
                asn: Some(64501),
                prefix_len: 25
            }
        );
        assert_eq!(look("10.1.0.200").asn, None);
        assert_eq!(
            look("2001:db8:1::1"),
            AsnLookup {
                asn: Some(64502),
                prefix_len: 32
            }
        );
        std::fs::write(&path, "10.0.0.0,10.0.0.255,1,x\n10.0.1.0,banana,1,x\n").unwrap();
        assert!(matches!(
            AsnDb::open(&path),
            Err(GeoError::Csv { line: 2, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
