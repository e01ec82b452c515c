//! DNS Cookies (RFC 7873) with server cookies as RFC 9018 makes them interoperable: version
//! 1, a timestamp, and SipHash-2-4 over the client cookie, version, timestamp and client
//! address under a 128-bit secret. Every instance given the same secret (behind one anycast
//! address) accepts the others' cookies. A query that returns a valid server cookie has
//! proved its source address, so it is exempt from response-rate limiting and may have
//! debug answers over UDP.
//!
//! Secrets rotate: the current one makes cookies, the previous one is still accepted, so
//! clients holding a cookie of the old secret keep it valid through the rollover.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use siphasher::sip::SipHasher24;

/// The COOKIE option code.
pub(super) const OPTION_COOKIE: u16 = 10;
/// A server cookie is accepted this long after it was made (RFC 9018 §4.3: an hour).
const LIFETIME: u32 = 3600;
/// ...and this far in the future (clocks of instances differ).
const FUTURE: u32 = 300;
/// A valid server cookie older than this is replaced by a fresh one in the response.
const REFRESH: u32 = 1800;

/// A COOKIE option as a query carries it: the client cookie, and a server cookie if the
/// client has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryCookie {
    client: [u8; 8],
    server: [u8; 32],
    server_len: u8,
}

/// Why a COOKIE option makes the query a FORMERR (RFC 7873 §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Not 8 octets (client only) nor 16 to 40 (client and server).
    #[error("a cookie option of a length no cookie has")]
    Length,
    /// Two COOKIE options.
    #[error("more than one cookie option")]
    Repeated,
}

impl QueryCookie {
    /// From the option's data.
    pub fn parse(data: &[u8]) -> Result<QueryCookie, CookieError> {
        if !(data.len() == 8 || (16..=40).contains(&data.len())) {
            return Err(CookieError::Length);
        }
        let mut client = [0u8; 8];
        client.copy_from_slice(&data[..8]);
        let mut server = [0u8; 32];
        let rest = &data[8..];
        server[..rest.len()].copy_from_slice(rest);
        Ok(QueryCookie {
            client,
            server,
            server_len: rest.len() as u8,
        })
    }

    /// The client cookie.
    pub fn client(&self) -> [u8; 8] {
        self.client
    }

    /// The server cookie the client sent, if any.
    pub fn server(&self) -> &[u8] {
        &self.server[..usize::from(self.server_len)]
    }
}

/// Why a cookie secret file cannot be used; each message is written for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Nothing but blank lines and comments.
    #[error("no secret in the file")]
    Missing,
    /// A line of another length (in bytes: the text itself is never shown).
    #[error("line {line}: a secret is 32 hexadecimal digits, not {length} bytes")]
    Length {
        /// The line, from 1.
        line: usize,
        /// Its length without surrounding blanks.
        length: usize,
    },
    /// A line with other characters (which are never shown: it is a secret).
    #[error("line {line}: a secret is 32 hexadecimal digits; this line has other characters")]
    NotHex {
        /// The line, from 1.
        line: usize,
    },
    /// More than a current and a previous secret.
    #[error("at most two secrets: the current one, then the previous one")]
    TooMany,
}

/// The secrets server cookies are made and checked with, and a coarse clock (seconds since
/// 1970) that the server updates, so a query reads the time without a system call.
#[derive(Debug, Clone)]
pub struct CookieSecrets {
    current: [u8; 16],
    previous: Option<[u8; 16]>,
    clock: Arc<AtomicU32>,
}

impl CookieSecrets {
    /// A random secret (an instance alone, or tests).
    pub fn random() -> Self {
        let mut secret = [0u8; 16];
        let from_os = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut secret));
        if from_os.is_err() {
            // Without /dev/urandom: the process's random hash keys.
            use std::hash::BuildHasher;
            let state = std::collections::hash_map::RandomState::new();
            secret[..8].copy_from_slice(&state.hash_one(1u8).to_le_bytes());
            secret[8..].copy_from_slice(&state.hash_one(2u8).to_le_bytes());
        }
        Self::with(secret, None)
    }

    /// From a secret file's text: the current secret on the first line, optionally the
    /// previous one on the second, each 32 hexadecimal digits.
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        let mut lines = (text.lines().enumerate())
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let parse = |(line, text): (usize, &str)| -> Result<[u8; 16], SecretError> {
            let digits = text.as_bytes();
            if digits.len() != 32 {
                return Err(SecretError::Length {
                    line,
                    length: digits.len(),
                });
            }
            let mut secret = [0u8; 16];
            for (byte, pair) in secret.iter_mut().zip(digits.chunks_exact(2)) {
                let hex = |d: u8| {
                    char::from(d)
                        .to_digit(16)
                        .and_then(|v| u8::try_from(v).ok())
                };
                *byte = match (hex(pair[0]), hex(pair[1])) {
                    (Some(high), Some(low)) => high << 4 | low,
                    _ => return Err(SecretError::NotHex { line }),
                };
            }
            Ok(secret)
        };
        let current = parse(lines.next().ok_or(SecretError::Missing)?)?;
        let previous = lines.next().map(parse).transpose()?;
        if lines.next().is_some() {
            return Err(SecretError::TooMany);
        }
        Ok(Self::with(current, previous))
    }

    fn with(current: [u8; 16], previous: Option<[u8; 16]>) -> Self {
        CookieSecrets {
            current,
            previous,
            clock: Arc::new(AtomicU32::new(unix_seconds())),
        }
    }

    /// Reads the wall clock into the coarse one (the server ticks it every half second).
    pub fn tick(&self) {
        self.set_time(unix_seconds());
    }

    /// Sets the clock (the server ticks it every half second).
    pub fn set_time(&self, seconds_since_1970: u32) {
        self.clock.store(seconds_since_1970, Ordering::Relaxed);
    }

    /// The clock.
    pub fn now(&self) -> u32 {
        self.clock.load(Ordering::Relaxed)
    }

    /// Whether the query's server cookie is one of ours, for this client, and current.
    pub fn valid(&self, cookie: &QueryCookie, client: IpAddr) -> bool {
        let server = cookie.server();
        if server.len() != 16 || server[0] != 1 || server[1..4] != [0, 0, 0] {
            return false;
        }
        let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        let now = self.now();
        let fresh = now.wrapping_sub(stamp) <= LIFETIME || stamp.wrapping_sub(now) <= FUTURE;
        fresh
            && std::iter::once(&self.current)
                .chain(self.previous.as_ref())
                .any(|secret| hash(secret, &cookie.client, stamp, client) == server[8..16])
    }

    /// The server cookie to answer with: the one the client sent when it is valid and
    /// recent, else a new one made now with the current secret.
    pub fn answer(&self, cookie: &QueryCookie, client: IpAddr, valid: bool) -> [u8; 16] {
        let server = cookie.server();
        let now = self.now();
        if valid {
            let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
            if now.wrapping_sub(stamp) < REFRESH {
                let mut kept = [0u8; 16];
                kept.copy_from_slice(server);
                return kept;
            }
        }
        let mut made = [0u8; 16];
        made[0] = 1;
        made[4..8].copy_from_slice(&now.to_be_bytes());
        made[8..].copy_from_slice(&hash(&self.current, &cookie.client, now, client));
        made
    }
}

/// The wall clock in seconds since 1970 (RFC 9018 timestamps are Unix time).
#[allow(clippy::disallowed_methods)] // the cookie clock owns this reading
fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// RFC 9018 §4.4: SipHash-2-4 of Client-Cookie | Version | Reserved | Timestamp | Client-IP.
fn hash(secret: &[u8; 16], client_cookie: &[u8; 8], stamp: u32, client: IpAddr) -> [u8; 8] {
    let mut hasher = SipHasher24::new_with_key(secret);
    hasher.write(client_cookie);
    hasher.write(&[1, 0, 0, 0]);
    hasher.write(&stamp.to_be_bytes());
    match crate::net::unmap(client) {
        IpAddr::V4(a) => hasher.write(&a.octets()),
        IpAddr::V6(a) => hasher.write(&a.octets()),
    }
    hasher.finish().to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 8] = *b"\x01\x02\x03\x04\x05\x06\x07\x08";

    fn with_server(server: &[u8]) -> QueryCookie {
        let mut data = CLIENT.to_vec();
        data.extend_from_slice(server);
        QueryCookie::parse(&data).expect("a cookie")
    }

    #[test]
    fn cookies_are_made_checked_rotated_and_expire() {
        let old = CookieSecrets::from_text("000102030405060708090a0b0c0d0e0f").unwrap();
        old.set_time(1_800_000_000);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let first = QueryCookie::parse(&CLIENT).unwrap();
        let made = old.answer(&first, client, false);
        assert_eq!(made[0], 1);
        let returned = with_server(&made);
        assert!(old.valid(&returned, client));
        assert!(
            !old.valid(&returned, "192.0.2.2".parse().unwrap()),
            "bound to the address"
        );
        let mut forged = made;
        forged[15] ^= 1;
        assert!(!old.valid(&with_server(&forged), client));
        // Rotated: the previous secret is still accepted, new cookies use the new one.
        let rotated = CookieSecrets::from_text(
            "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n000102030405060708090a0b0c0d0e0f\n",
        )
        .unwrap();
        rotated.set_time(1_800_000_100);
        assert!(rotated.valid(&returned, client));
        let fresh = rotated.answer(&returned, client, true);
        assert_eq!(fresh, made, "a recent valid cookie is kept");
        let without_old = CookieSecrets::from_text("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").unwrap();
        // Any bytes: an error naming the line, never the secret, never a panic.
        for (text, line) in [
            ("# rotated\n\n000102030405060708090a0b0c0d0eé", 3),
            (
                "000102030405060708090a0b0c0d0e0f\nzz0102030405060708090a0b0c0d0e0f",
                2,
            ),
            ("0001020304050607é8090a0b0c0d0e0f", 1),
        ] {
            let error = CookieSecrets::from_text(text)
                .expect_err("refused")
                .to_string();
            assert!(error.starts_with(&format!("line {line}:")), "{error}");
            assert!(
                !error.contains("0001") && !error.contains("zz01"),
                "{error}"
            );
        }
        without_old.set_time(1_800_000_100);
        assert!(
            !without_old.valid(&returned, client),
            "gone with the old secret"
        );
        // An hour later it has expired.
        old.set_time(1_800_000_000 + LIFETIME + 1);
        assert!(!old.valid(&returned, client));
        // Lengths no cookie has.
        for len in [0, 7, 9, 15, 41] {
            assert_eq!(QueryCookie::parse(&vec![0; len]), Err(CookieError::Length));
        }
        assert!(CookieSecrets::from_text("zz").is_err());
    }
}
