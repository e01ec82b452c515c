//! DNSSEC: the keys a signed zone is published with.
//!
//! Words used here:
//! - **KSK** (key-signing key, DNSKEY flags 257): the key the parent's DS record names; it
//!   signs the apex DNSKEY set. **ZSK** (zone-signing key, flags 256) signs everything else.
//!   A **combined** key (CSK) is one flags-257 key doing both.
//! - **key tag**: the 16-bit checksum of a DNSKEY's RDATA (RFC 4034 appendix B) that RRSIG
//!   and DS records name a key by.
//! - **key files**: one pair per key in BIND's layout (`K<zone>.+<alg>+<tag>.key` holding
//!   the DNSKEY record, `.private` the private key, mode 0600), so keys made by BIND's
//!   `dnssec-keygen` can be used, and BIND's tools can read ours.
//!
//! - **RRSIG**: a signature over one RRset in canonical form (lower-case names, records
//!   sorted by RDATA); **NSEC**: the next owner name and the types at this one, which
//!   proves names and types absent.
//!
//! Only ECDSA P-256 with SHA-256 (algorithm 13, the default) and Ed25519 (algorithm 15)
//! are made or read; cryptography is ring's.

pub mod keys;
pub mod sign;

pub use keys::{Algorithm, KeyError, KeyPair, KeyRole, generate_keys, load_keys};
pub use sign::{Rrset, Validity, canonical_cmp, nsec_rdata, rrsig_rdata};
