//! Signatures and denial records: RRSIG over an RRset in canonical form (RFC 4034 §3, §6),
//! and NSEC RDATA with its type bitmaps (RFC 4034 §4).

use super::keys::{KeyError, KeyPair};

/// RRSIG's record type number, and NSEC's.
pub const RRSIG: u16 = 46;
/// NSEC's record type number.
pub const NSEC: u16 = 47;
/// Class IN.
const CLASS_IN: u16 = 1;

/// When a signature holds: RFC 4034 serial-number seconds (UNIX time modulo 2³²).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Validity {
    /// Not valid before.
    pub inception: u32,
    /// Not valid after.
    pub expiration: u32,
}

impl Validity {
    /// How far inception is back-dated: resolvers with a clock that far behind still
    /// accept a fresh signature.
    pub const BACKDATE_SECONDS: u32 = 3600;

    /// Signatures made at `now` (UNIX seconds) that hold for `lifetime` seconds.
    pub fn from(now: u64, lifetime: u32) -> Validity {
        // Serial-number arithmetic (RFC 4034 §3.1.5): UNIX time modulo 2³².
        let now = now as u32;
        Validity {
            inception: now.wrapping_sub(Self::BACKDATE_SECONDS),
            expiration: now.wrapping_add(lifetime),
        }
    }

    /// Whether signatures of this validity should be made again at `now`: less than a
    /// quarter of their lifetime is left (or they are not valid yet or any more).
    pub fn due(self, now: u64) -> bool {
        let now = now as u32;
        let span = self.expiration.wrapping_sub(self.inception);
        let left = self.expiration.wrapping_sub(now);
        let since = now.wrapping_sub(self.inception);
        // The lifetime asked for: the back-dating is not part of it.
        let lifetime = span.saturating_sub(Self::BACKDATE_SECONDS);
        // Outside [inception, expiration] one of the two differences wraps past the span.
        since > span || left > span || left < lifetime / 4
    }
}

/// An RRset as it is signed: owner (uncompressed wire form, any case), type, TTL, and the
/// RDATA of each record (uncompressed).
#[derive(Debug, Clone, Copy)]
pub struct Rrset<'a> {
    /// The owner name.
    pub owner: &'a [u8],
    /// The record type.
    pub rtype: u16,
    /// The TTL the records are served with (RRSIG's original TTL).
    pub ttl: u32,
    /// Each record's RDATA.
    pub rdatas: &'a [Vec<u8>],
}

/// The RRSIG RDATA over `set` by `key`: type covered, algorithm, labels, original TTL,
/// expiration, inception, key tag, signer (the key's zone), signature.
pub fn rrsig_rdata(set: &Rrset, key: &KeyPair, validity: Validity) -> Result<Vec<u8>, KeyError> {
    let signer = lower_name(&super::keys::wire_name(&key.zone));
    let owner = lower_name(set.owner);
    let mut rdata = Vec::with_capacity(18 + signer.len() + 64);
    rdata.extend_from_slice(&set.rtype.to_be_bytes());
    rdata.push(key.algorithm.number());
    rdata.push(rrsig_labels(&owner));
    rdata.extend_from_slice(&set.ttl.to_be_bytes());
    rdata.extend_from_slice(&validity.expiration.to_be_bytes());
    rdata.extend_from_slice(&validity.inception.to_be_bytes());
    rdata.extend_from_slice(&key.key_tag().to_be_bytes());
    rdata.extend_from_slice(&signer);
    // Signed: the RDATA so far, then every record in canonical form and order.
    let mut signed = rdata.clone();
    let mut canonical: Vec<Vec<u8>> = set
        .rdatas
        .iter()
        .map(|r| canonical_rdata(set.rtype, r))
        .collect();
    canonical.sort();
    canonical.dedup();
    for r in &canonical {
        signed.extend_from_slice(&owner);
        signed.extend_from_slice(&set.rtype.to_be_bytes());
        signed.extend_from_slice(&CLASS_IN.to_be_bytes());
        signed.extend_from_slice(&set.ttl.to_be_bytes());
        let len = u16::try_from(r.len())
            .map_err(|_| KeyError::Crypto("RDATA over 65535 bytes".into()))?;
        signed.extend_from_slice(&len.to_be_bytes());
        signed.extend_from_slice(r);
    }
    rdata.extend_from_slice(&key.sign(&signed)?);
    Ok(rdata)
}

/// NSEC RDATA: the next owner name (lower case) and the bitmap of the types at the owner
/// (NSEC and RRSIG are added: a signed owner has both).
pub fn nsec_rdata(next_owner: &[u8], types: &[u16]) -> Vec<u8> {
    let mut all: Vec<u16> = types.iter().copied().chain([RRSIG, NSEC]).collect();
    all.sort_unstable();
    all.dedup();
    let mut rdata = lower_name(next_owner);
    let mut at = 0;
    while at < all.len() {
        let window = all[at] >> 8;
        let mut bitmap = [0u8; 32];
        let mut used = 0;
        while let Some(&t) = all.get(at).filter(|&&t| t >> 8 == window) {
            let low = usize::from(t & 0xff);
            bitmap[low / 8] |= 0x80 >> (low % 8);
            used = low / 8 + 1;
            at += 1;
        }
        rdata.push(window as u8);
        rdata.push(used as u8);
        rdata.extend_from_slice(&bitmap[..used]);
    }
    rdata
}

/// Canonical DNS name order (RFC 4034 §6.1) of two uncompressed lower-case wire names:
/// label by label from the right, each label as bytes, a missing label first. No allocation
/// (names have at most 128 labels).
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let mut at_a = [0u8; 128];
    let mut at_b = [0u8; 128];
    let count_a = label_starts(a, &mut at_a);
    let count_b = label_starts(b, &mut at_b);
    fn label(name: &[u8], at: u8) -> &[u8] {
        let at = usize::from(at);
        let len = usize::from(name.get(at).copied().unwrap_or(0));
        name.get(at + 1..at + 1 + len).unwrap_or(&[])
    }
    for i in 1..=count_a.min(count_b) {
        let order = label(a, at_a[count_a - i]).cmp(label(b, at_b[count_b - i]));
        if order.is_ne() {
            return order;
        }
    }
    count_a.cmp(&count_b)
}

/// Where each label of a wire name starts (the root not counted); how many there are.
fn label_starts(name: &[u8], out: &mut [u8; 128]) -> usize {
    let (mut at, mut count) = (0usize, 0usize);
    while let Some(&len) = name.get(at) {
        if len == 0 || count == out.len() || at > usize::from(u8::MAX) {
            break;
        }
        out[count] = at as u8;
        count += 1;
        at += 1 + usize::from(len);
    }
    count
}

/// RRSIG's labels field: the owner's labels, the root and a leading `*` not counted.
fn rrsig_labels(owner: &[u8]) -> u8 {
    let mut count = 0u8;
    let mut at = 0;
    let mut first = true;
    while let Some(&len) = owner.get(at) {
        if len == 0 {
            break;
        }
        let label = owner.get(at + 1..at + 1 + usize::from(len)).unwrap_or(&[]);
        if !(first && label == b"*") {
            count = count.saturating_add(1);
        }
        first = false;
        at += 1 + usize::from(len);
    }
    count
}

/// A wire name (uncompressed) in lower case.
fn lower_name(name: &[u8]) -> Vec<u8> {
    let mut out = name.to_vec();
    lower_name_at(&mut out, 0);
    out
}

/// Lower-cases the uncompressed name at `at` in place; returns where it ends.
fn lower_name_at(wire: &mut [u8], mut at: usize) -> usize {
    while let Some(&len) = wire.get(at) {
        if len == 0 || len > 63 {
            return at + 1;
        }
        let end = (at + 1 + usize::from(len)).min(wire.len());
        wire[at + 1..end].make_ascii_lowercase();
        at = end;
    }
    at
}

/// RDATA in canonical form (RFC 4034 §6.2 as RFC 6840 §5.1 amends it): the domain names
/// inside the types geosteer serves that carry them in lower case.
fn canonical_rdata(rtype: u16, rdata: &[u8]) -> Vec<u8> {
    const NS: u16 = 2;
    const CNAME: u16 = 5;
    const SOA: u16 = 6;
    const PTR: u16 = 12;
    const MX: u16 = 15;
    const SRV: u16 = 33;
    const DNAME: u16 = 39;
    let mut out = rdata.to_vec();
    match rtype {
        NS | CNAME | PTR | DNAME => {
            lower_name_at(&mut out, 0);
        }
        SOA => {
            let end = lower_name_at(&mut out, 0);
            lower_name_at(&mut out, end);
        }
        MX => {
            lower_name_at(&mut out, 2);
        }
        SRV => {
            lower_name_at(&mut out, 6);
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(name: &str) -> Vec<u8> {
        super::super::keys::wire_name(name)
    }

    /// Signatures are made again once a quarter of their lifetime is left, and when the
    /// clock is outside their validity, also across the 2106 wrap of 32-bit time.
    #[test]
    fn validity_is_backdated_and_due_in_its_last_quarter() {
        let day = 86_400u64;
        let v = Validity::from(1_000_000_000, 14 * day as u32);
        assert_eq!(v.inception, 1_000_000_000 - 3600);
        assert!(!v.due(1_000_000_000));
        assert!(!v.due(1_000_000_000 + 10 * day));
        assert!(v.due(1_000_000_000 + 11 * day));
        assert!(v.due(1_000_000_000 + 15 * day), "expired");
        assert!(v.due(1_000_000_000 - 2 * 3600), "not valid yet");
        let wrapping = Validity::from(u64::from(u32::MAX) - 100, 14 * day as u32);
        assert!(!wrapping.due(u64::from(u32::MAX) + 1000));
        assert!(wrapping.due(u64::from(u32::MAX) + 12 * day));
        // A lifetime shorter than the back-dating is not due at once.
        let short = Validity::from(1_000_000_000, 60);
        assert!(!short.due(1_000_000_000 + 40));
        assert!(short.due(1_000_000_000 + 46));
    }

    /// A wildcard's `*` and the root are not counted (RFC 4034 §3.1.3).
    #[test]
    fn rrsig_labels_leave_out_the_wildcard_and_the_root() {
        assert_eq!(rrsig_labels(&wire("www.sig.example.")), 3);
        assert_eq!(rrsig_labels(&wire("*.sig.example.")), 2);
        assert_eq!(rrsig_labels(&wire(".")), 0);
    }

    /// RFC 4034 §6.1's example names, shuffled, sort into its order.
    #[test]
    fn canonical_order_is_rfc_4034s() {
        let expected = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "z.a.example.",
            "zabc.a.example.",
            "z.example.",
            "\\001.z.example.",
            "*.z.example.",
            "\\200.z.example.",
        ];
        let wire_of = |text: &str| -> Vec<u8> {
            let mut out = Vec::new();
            for label in text.trim_end_matches('.').split('.') {
                let bytes: Vec<u8> = match label.strip_prefix('\\') {
                    Some(n) => vec![n.parse::<u8>().unwrap()],
                    None => label.as_bytes().to_vec(),
                };
                out.push(bytes.len() as u8);
                out.extend(bytes);
            }
            out.push(0);
            out
        };
        let mut names: Vec<Vec<u8>> = expected.iter().rev().map(|n| wire_of(n)).collect();
        names.swap(1, 4);
        names.sort_by(|a, b| canonical_cmp(a, b));
        let want: Vec<Vec<u8>> = expected.iter().map(|n| wire_of(n)).collect();
        assert_eq!(names, want);
    }

    /// Types in two windows (A, MX in window 0; CAA, 257, in window 1), as RFC 4034 §4.1.2
    /// lays them out, with NSEC and RRSIG added.
    #[test]
    fn nsec_bitmaps_span_windows() {
        let rdata = nsec_rdata(&wire("Next.Example."), &[15, 1, 257]);
        let next = wire("next.example.");
        assert_eq!(&rdata[..next.len()], &next[..]);
        let bitmaps = &rdata[next.len()..];
        // Window 0: A (1) → 0x40, MX (15) → byte 1 0x01, RRSIG (46) → byte 5 0x02,
        // NSEC (47) → byte 5 0x01; window 1: 257 → byte 0 0x40.
        assert_eq!(bitmaps, &[0, 6, 0x40, 0x01, 0, 0, 0, 0x03, 1, 1, 0x40][..]);
    }
}
