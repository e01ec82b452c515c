//! Key pairs: made, written and read as BIND-style key files; their DNSKEY RDATA, key tags
//! and DS records.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};

/// DNSKEY protocol field: always 3 (RFC 4034 §2.1.2).
const PROTOCOL: u8 = 3;
/// DS digest type SHA-256 (RFC 4509).
const DIGEST_SHA256: u8 = 2;
/// The largest key file read: key files are a few hundred bytes.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A signing algorithm geosteer makes and reads keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA with curve P-256 and SHA-256: algorithm 13, the default (RFC 6605).
    EcdsaP256Sha256,
    /// Ed25519: algorithm 15 (RFC 8080).
    Ed25519,
}

impl Algorithm {
    /// Its number in DNSKEY, RRSIG and DS records.
    pub fn number(self) -> u8 {
        match self {
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }

    /// Its mnemonic, as BIND's private key files name it.
    fn mnemonic(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Algorithm::Ed25519 => "ED25519",
        }
    }

    /// The algorithm of a number or mnemonic (`13`, `ecdsap256sha256`, `15`, `ed25519`).
    pub fn parse(text: &str) -> Option<Algorithm> {
        match text.to_ascii_lowercase().as_str() {
            "13" | "ecdsap256sha256" | "ecdsa-p256-sha256" => Some(Algorithm::EcdsaP256Sha256),
            "15" | "ed25519" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }

    fn of_number(number: u8) -> Option<Algorithm> {
        [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519]
            .into_iter()
            .find(|a| a.number() == number)
    }
}

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Key-signing (or combined) key: DNSKEY flags 257 (zone key + secure entry point).
    KeySigning,
    /// Zone-signing key: flags 256.
    ZoneSigning,
}

impl KeyRole {
    /// The DNSKEY flags field.
    pub fn flags(self) -> u16 {
        match self {
            KeyRole::KeySigning => 257,
            KeyRole::ZoneSigning => 256,
        }
    }
}

/// Why keys cannot be made or read, with the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A key file says something geosteer cannot use.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its line (1-based; 0 when the file as a whole is at fault).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds no key for the zone.
    #[error(
        "{dir}: no key files for zone {zone} (K{zone}+*.private); make them with `geosteer dnssec keygen`"
    )]
    NoKeys {
        /// The directory.
        dir: PathBuf,
        /// The zone, absolute.
        zone: String,
    },
    /// The zone is no domain name.
    #[error("zone '{0}': not a domain name (labels of 1 to 63 characters, 255 in all)")]
    BadZone(String),
    /// A key published without its private key was asked to sign.
    #[error("this key is published only: its .private file is not there")]
    PublishedOnly,
    /// The crypto library refused (no randomness, a bad key).
    #[error("{0}")]
    Crypto(String),
}

/// A DNSSEC key pair of one zone, ready to sign.
pub struct KeyPair {
    /// The zone, absolute and lower case (`live.example.net.`).
    pub zone: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// What it signs.
    pub role: KeyRole,
    /// The public key as DNSKEY carries it (P-256: x ‖ y, 64 bytes; Ed25519: 32 bytes).
    public: Vec<u8>,
    /// `None` for a key published only (its `.key` file without a `.private`): a key being
    /// rolled in or out.
    signer: Option<Signer>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("zone", &self.zone)
            .field("algorithm", &self.algorithm)
            .field("role", &self.role)
            .field("key_tag", &self.key_tag())
            .finish()
    }
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// The zone as key files and records name it: absolute, lower case.
fn absolute(zone: &str) -> String {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    format!("{zone}.")
}

/// `zone`, absolute and lower case, if it is a domain name geosteer can sign: labels of
/// 1 to 63 letters, digits, hyphens or underscores, 255 octets on the wire at most.
fn checked_zone(zone: &str) -> Result<String, KeyError> {
    let absolute = absolute(zone);
    let labels: Vec<&str> = absolute.trim_end_matches('.').split('.').collect();
    let fine = labels.iter().all(|l| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) && absolute.len() < 255;
    if fine {
        Ok(absolute)
    } else {
        Err(KeyError::BadZone(zone.to_string()))
    }
}

impl KeyPair {
    /// A new key pair from the system's randomness. Also returns the private key as BIND's
    /// `PrivateKey:` field holds it (P-256: the scalar; Ed25519: the seed).
    fn generate(
        zone: &str,
        algorithm: Algorithm,
        role: KeyRole,
    ) -> Result<(KeyPair, Vec<u8>), KeyError> {
        let rng = SystemRandom::new();
        let crypto = |e: ring::error::Unspecified| KeyError::Crypto(format!("key generation: {e}"));
        let (private, public) = match algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(crypto)?;
                let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
                    .map_err(|e| KeyError::Crypto(format!("key rejected: {e}")))?;
                // Uncompressed point: 0x04, then x ‖ y as DNSKEY carries them.
                let public = pair.public_key().as_ref().get(1..).unwrap_or(&[]).to_vec();
                let scalar = p256_scalar(pkcs8.as_ref())
                    .ok_or_else(|| KeyError::Crypto("unexpected PKCS#8 layout".into()))?;
                (scalar.to_vec(), Some(public))
            }
            Algorithm::Ed25519 => {
                let mut seed = [0u8; 32];
                ring::rand::SecureRandom::fill(&rng, &mut seed).map_err(crypto)?;
                (seed.to_vec(), None)
            }
        };
        let pair = Self::from_private(zone, algorithm, role, &private, public.as_deref())?;
        Ok((pair, private))
    }

    /// A key pair from its private key (as BIND's `PrivateKey:` holds it) and, for P-256,
    /// its public key as DNSKEY carries it (ring cannot derive it from the scalar).
    fn from_private(
        zone: &str,
        algorithm: Algorithm,
        role: KeyRole,
        private: &[u8],
        public: Option<&[u8]>,
    ) -> Result<KeyPair, KeyError> {
        let rejected = |e: ring::error::KeyRejected| KeyError::Crypto(format!("key rejected: {e}"));
        let (signer, public) = match algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let public = public
                    .ok_or_else(|| KeyError::Crypto("a P-256 key needs its public key".into()))?
                    .to_vec();
                let mut uncompressed = Vec::with_capacity(65);
                uncompressed.push(4);
                uncompressed.extend_from_slice(&public);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    private,
                    &uncompressed,
                    &SystemRandom::new(),
                )
                .map_err(rejected)?;
                (Signer::Ecdsa(pair), public)
            }
            Algorithm::Ed25519 => {
                let pair = Ed25519KeyPair::from_seed_unchecked(private).map_err(rejected)?;
                let derived = pair.public_key().as_ref().to_vec();
                if public.is_some_and(|p| p != derived.as_slice()) {
                    return Err(KeyError::Crypto(
                        "the public key does not belong to the private key".into(),
                    ));
                }
                (Signer::Ed25519(pair), derived)
            }
        };
        Ok(KeyPair {
            zone: absolute(zone),
            algorithm,
            role,
            public,
            signer: Some(signer),
        })
    }

    /// Whether the key signs (its private key was read), or is published only.
    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// The DNSKEY RDATA: flags, protocol, algorithm, public key.
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        let mut rdata = Vec::with_capacity(4 + self.public.len());
        rdata.extend_from_slice(&self.role.flags().to_be_bytes());
        rdata.push(PROTOCOL);
        rdata.push(self.algorithm.number());
        rdata.extend_from_slice(&self.public);
        rdata
    }

    /// The key tag (RFC 4034 appendix B).
    pub fn key_tag(&self) -> u16 {
        key_tag(&self.dnskey_rdata())
    }

    /// The DS RDATA for the parent (SHA-256): key tag, algorithm, digest type, digest of
    /// the owner name (`owner_wire`, canonical: lower case, uncompressed) and the DNSKEY RDATA.
    pub fn ds_rdata(&self, owner_wire: &[u8]) -> Vec<u8> {
        let mut data = owner_wire.to_vec();
        data.extend_from_slice(&self.dnskey_rdata());
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let mut rdata = Vec::with_capacity(4 + digest.as_ref().len());
        rdata.extend_from_slice(&self.key_tag().to_be_bytes());
        rdata.push(self.algorithm.number());
        rdata.push(DIGEST_SHA256);
        rdata.extend_from_slice(digest.as_ref());
        rdata
    }

    /// The DS record in presentation format, for the parent zone's operator.
    pub fn ds_text(&self) -> String {
        let rdata = self.ds_rdata(&wire_name(&self.zone));
        let digest: String = rdata[4..].iter().map(|b| format!("{b:02X}")).collect();
        format!(
            "{} IN DS {} {} {} {digest}",
            self.zone,
            self.key_tag(),
            self.algorithm.number(),
            DIGEST_SHA256
        )
    }

    /// The DNSKEY record in presentation format (the `.key` file's record).
    pub fn dnskey_text(&self) -> String {
        format!(
            "{} IN DNSKEY {} {} {} {}",
            self.zone,
            self.role.flags(),
            PROTOCOL,
            self.algorithm.number(),
            BASE64.encode(&self.public)
        )
    }

    /// Signs `data` (an RRSIG's signed data): P-256 as r ‖ s (64 bytes, RFC 6605), Ed25519
    /// as RFC 8080 says.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self.signer.as_ref().ok_or(KeyError::PublishedOnly)? {
            Signer::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), data)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| KeyError::Crypto(format!("signing: {e}"))),
            Signer::Ed25519(pair) => Ok(pair.sign(data).as_ref().to_vec()),
        }
    }

    /// One of this key's files in `dir`: BIND's `K<zone>+<alg>+<tag>.<suffix>` (`key` or
    /// `private`).
    pub fn file(&self, dir: &Path, suffix: &str) -> PathBuf {
        dir.join(format!(
            "K{}+{:03}+{:05}.{suffix}",
            self.zone,
            self.algorithm.number(),
            self.key_tag()
        ))
    }
}

/// The key tag of a DNSKEY RDATA (RFC 4034 appendix B: a ones'-complement-like sum).
fn key_tag(rdata: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, &byte) in rdata.iter().enumerate() {
        sum += if i % 2 == 0 {
            u32::from(byte) << 8
        } else {
            u32::from(byte)
        };
    }
    sum += (sum >> 16) & 0xffff;
    (sum & 0xffff) as u16
}

/// A name in uncompressed wire form, lower case (for DS digests and signer names).
pub(super) fn wire_name(zone: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in zone
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        wire.push(label.len() as u8);
        wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    wire.push(0);
    wire
}

/// The private scalar inside a P-256 PKCS#8 document as ring makes it (ECPrivateKey:
/// version 1, then the 32-byte key as an OCTET STRING).
fn p256_scalar(pkcs8: &[u8]) -> Option<&[u8]> {
    const MARK: [u8; 5] = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    pkcs8.get(at..at + 32)
}

/// Makes a zone's keys in `dir` (created if missing): a KSK and a ZSK, or one combined key
/// (flags 257) with `combined`. Existing files are never overwritten. Returns the keys, KSK
/// first.
pub fn generate_keys(
    zone: &str,
    dir: &Path,
    algorithm: Algorithm,
    combined: bool,
) -> Result<Vec<KeyPair>, KeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    let zone = checked_zone(zone)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let roles: &[KeyRole] = if combined {
        &[KeyRole::KeySigning]
    } else {
        &[KeyRole::KeySigning, KeyRole::ZoneSigning]
    };
    let mut keys = Vec::new();
    for &role in roles {
        let (pair, private) = KeyPair::generate(&zone, algorithm, role)?;
        let kind = match (role, combined) {
            (KeyRole::KeySigning, true) => "combined signing key",
            (KeyRole::KeySigning, false) => "key-signing key",
            (KeyRole::ZoneSigning, _) => "zone-signing key",
        };
        let public = format!(
            "; This is a {kind}, keyid {}, for {}\n; Made by geosteer dnssec keygen\n{}\n",
            pair.key_tag(),
            pair.zone,
            pair.dnskey_text()
        );
        let secret = format!(
            "Private-key-format: v1.3\nAlgorithm: {} ({})\nPrivateKey: {}\n",
            algorithm.number(),
            algorithm.mnemonic(),
            BASE64.encode(&private)
        );
        write_new(&pair.file(dir, "private"), &secret, 0o600)?;
        write_new(&pair.file(dir, "key"), &public, 0o644)?;
        keys.push(pair);
    }
    Ok(keys)
}

/// Writes a file that must not exist yet, with `mode`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads every key of `zone` in `dir` (each `K<zone>+*.private` with its `.key`, and each
/// `.key` alone as a key published only), KSKs first, then by key tag.
pub fn load_keys(zone: &str, dir: &Path) -> Result<Vec<KeyPair>, KeyError> {
    let zone = checked_zone(zone)?;
    let prefix = format!("k{zone}+");
    let entries = std::fs::read_dir(dir).map_err(|source| KeyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut privates: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.to_ascii_lowercase().starts_with(&prefix) && name.ends_with(".private")
        })
        .collect();
    privates.sort();
    let mut publics: Vec<PathBuf> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| KeyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.to_ascii_lowercase().starts_with(&prefix)
            && name.ends_with(".key")
            && !path.with_extension("private").exists()
        {
            publics.push(path);
        }
    }
    publics.sort();
    let mut keys = privates
        .iter()
        .map(|path| read_pair(&zone, path))
        .collect::<Result<Vec<_>, _>>()?;
    // A `.key` without its `.private`: published, not signing (a key being rolled in
    // before it signs, or out after it stopped).
    for path in publics {
        let (role, algorithm, public, _) = read_public(&zone, &path, None)?;
        keys.push(KeyPair {
            zone: zone.clone(),
            algorithm,
            role,
            public,
            signer: None,
        });
    }
    if keys.is_empty() {
        return Err(KeyError::NoKeys {
            dir: dir.to_path_buf(),
            zone,
        });
    }
    keys.sort_by_key(|k| (k.role != KeyRole::KeySigning, k.key_tag()));
    Ok(keys)
}

/// Reads a file of at most [`MAX_KEY_FILE`] bytes.
fn read_small(path: &Path) -> Result<String, KeyError> {
    use std::io::Read;
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(io)?;
    Ok(text)
}

/// One key from its `.private` file and the `.key` file beside it.
fn read_pair(zone: &str, private_path: &Path) -> Result<KeyPair, KeyError> {
    let malformed = |path: &Path, line: usize, reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    // The private file: `Field: value` lines; Algorithm and PrivateKey are what is used.
    let text = read_small(private_path)?;
    let (mut algorithm, mut private) = (None, None);
    for (n, line) in text.lines().enumerate() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match field.trim() {
            "Algorithm" => {
                let number = value.split_whitespace().next().unwrap_or("");
                let found = number.parse().ok().and_then(Algorithm::of_number);
                let reason = format!(
                    "algorithm '{value}' is not one geosteer signs with (13 ECDSAP256SHA256, 15 ED25519)"
                );
                algorithm = Some(found.ok_or_else(|| malformed(private_path, n + 1, reason))?);
            }
            "PrivateKey" => {
                let decoded = BASE64.decode(value).map_err(|e| {
                    malformed(
                        private_path,
                        n + 1,
                        format!("PrivateKey is not base64: {e}"),
                    )
                })?;
                private = Some((decoded, n + 1));
            }
            _ => {}
        }
    }
    let algorithm =
        algorithm.ok_or_else(|| malformed(private_path, 0, "no 'Algorithm:' line".into()))?;
    let (private, private_line) =
        private.ok_or_else(|| malformed(private_path, 0, "no 'PrivateKey:' line".into()))?;
    let key_path = private_path.with_extension("key");
    let (role, _, public, _) = read_public(zone, &key_path, Some(algorithm))?;
    KeyPair::from_private(zone, algorithm, role, &private, Some(&public))
        .map_err(|e| malformed(private_path, private_line, e.to_string()))
}

/// A `.key` file's DNSKEY record (comments and blank lines aside): role, algorithm, public
/// key and the record's line; the algorithm must be `expected` when one is.
fn read_public(
    zone: &str,
    key_path: &Path,
    expected: Option<Algorithm>,
) -> Result<(KeyRole, Algorithm, Vec<u8>, usize), KeyError> {
    let malformed = |line: usize, reason: String| KeyError::Malformed {
        path: key_path.to_path_buf(),
        line,
        reason,
    };
    let text = read_small(key_path)?;
    let (line, record) = text
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.split(';').next().unwrap_or("").trim()))
        .find(|(_, l)| !l.is_empty())
        .ok_or_else(|| malformed(0, "no DNSKEY record".into()))?;
    let tokens: Vec<&str> = record.split_whitespace().collect();
    let at = tokens
        .iter()
        .position(|t| t.eq_ignore_ascii_case("DNSKEY"))
        .ok_or_else(|| malformed(line, "no DNSKEY record".into()))?;
    if absolute(tokens[0]) != zone {
        let reason = format!("the key is for {}, not {zone}", tokens[0]);
        return Err(malformed(line, reason));
    }
    let field = |i: usize| tokens.get(at + i).copied().unwrap_or("");
    let flags: u16 = field(1)
        .parse()
        .map_err(|_| malformed(line, format!("flags '{}' is not a number", field(1))))?;
    let role = match flags {
        257 => KeyRole::KeySigning,
        256 => KeyRole::ZoneSigning,
        other => {
            let reason = format!("flags {other}: a zone key has 256 (ZSK) or 257 (KSK)");
            return Err(malformed(line, reason));
        }
    };
    let algorithm = field(3).parse().ok().and_then(Algorithm::of_number);
    let algorithm = match (algorithm, expected) {
        (Some(found), Some(expected)) if found == expected => found,
        (Some(found), None) => found,
        _ => {
            let reason = format!(
                "algorithm {} is not {}",
                field(3),
                expected.map_or("13 or 15".to_string(), |a| format!(
                    "{} as in its .private file",
                    a.number()
                ))
            );
            return Err(malformed(line, reason));
        }
    };
    let public: String = tokens.get(at + 4..).unwrap_or(&[]).concat();
    let public = BASE64
        .decode(public)
        .map_err(|e| malformed(line, format!("public key is not base64: {e}")))?;
    Ok((role, algorithm, public, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6605 §6.1's example: its P-256 key gives the DNSKEY, key tag and DS printed there.
    #[test]
    fn the_rfc_6605_example_key_gives_its_key_tag_and_ds() {
        let private = BASE64
            .decode("GU6SnQ/Ou+xC5RumuIUIuJZteXT2z0O/ok1s38Et6mQ=")
            .unwrap();
        let public = BASE64
            .decode("GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edbkrSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA==")
            .unwrap();
        let key = KeyPair::from_private(
            "example.net",
            Algorithm::EcdsaP256Sha256,
            KeyRole::KeySigning,
            &private,
            Some(&public),
        )
        .unwrap();
        assert_eq!(key.key_tag(), 55648);
        assert_eq!(
            key.ds_text(),
            "example.net. IN DS 55648 13 2 B4C8C1FE2E7477127B27115656AD6256F424625BF5C1E2770CE6D6E37DF61D17"
        );
    }

    /// Keys made, written and read back sign alike: each signature verifies with the
    /// public key the DNSKEY carries.
    #[test]
    fn keys_written_read_back_and_verified() {
        for algorithm in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let dir = std::env::temp_dir().join(format!(
                "geosteer-keys-{}-{}",
                std::process::id(),
                algorithm.number()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let made = generate_keys("Live.Example.net", &dir, algorithm, false).unwrap();
            let read = load_keys("live.example.net.", &dir).unwrap();
            assert_eq!(made.len(), 2);
            assert_eq!(read.len(), 2);
            for (m, r) in made.iter().zip(&read) {
                assert_eq!(m.dnskey_rdata(), r.dnskey_rdata());
                let signed = r.sign(b"data").unwrap();
                let verifier: &dyn signature::VerificationAlgorithm = match algorithm {
                    Algorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Algorithm::Ed25519 => &signature::ED25519,
                };
                let mut public = r.public.clone();
                if algorithm == Algorithm::EcdsaP256Sha256 {
                    public.insert(0, 4);
                }
                signature::UnparsedPublicKey::new(verifier, &public)
                    .verify(b"data", &signed)
                    .unwrap();
            }
            assert_eq!(read[0].role, KeyRole::KeySigning);
            // A key file is never overwritten.
            let existing = made[0].file(&dir, "private");
            assert!(matches!(
                write_new(&existing, "x", 0o600),
                Err(KeyError::Io { .. })
            ));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
