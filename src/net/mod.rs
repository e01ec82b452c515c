//! IP prefixes as operators write them (`203.0.113.0/24`) and as answer tables index them.
//!
//! Addresses are held as 128-bit integers, IPv4 in the low 32 bits, so one trie type serves
//! both families; the family is kept beside the bits so `10.0.0.0/8` never matches an IPv6
//! client.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

pub mod subnets;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4: 32-bit addresses.
    V4,
    /// IPv6: 128-bit addresses.
    V6,
}

impl Family {
    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// An address as a left-aligned bit string: bit 0 of the address is bit 127 of the value,
/// whatever the family, so prefix arithmetic is the same for both.
pub fn address_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Bit `index` (0 = most significant) of a left-aligned address.
pub fn bit(bits: u128, index: u8) -> bool {
    (bits >> (127 - index as u32)) & 1 == 1
}

/// Mask keeping the first `len` bits of a left-aligned address.
pub fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128) as u32)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4 clients; everything else is as is.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A network: an address family, its first `len` bits, and `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// Address family.
    pub family: Family,
    /// Left-aligned network bits; bits past `len` are zero.
    pub bits: u128,
    /// Prefix length in bits, at most the family's width.
    pub len: u8,
}

/// Why a prefix in a policy file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// No `/len`, or no address before it.
    #[error("expected an address prefix like 203.0.113.0/24 or 2001:db8::/32, got '{0}'")]
    Syntax(String),
    /// `/len` beyond the family's width.
    #[error("prefix length /{len} is longer than {max} bits in '{text}'")]
    TooLong {
        /// What the operator wrote.
        text: String,
        /// The length given.
        len: u8,
        /// The family's width.
        max: u8,
    },
    /// Host bits set past the prefix length (`10.1.2.3/8`): almost always a typo.
    #[error("'{0}' has address bits set past its prefix length; did you mean {1}?")]
    HostBits(String, String),
}

impl Prefix {
    /// True when `ip` (already unmapped) lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family && address_bits(ip) & mask(self.len) == self.bits
    }

    /// The network address, as an `IpAddr` of the prefix's family.
    pub fn network(&self) -> IpAddr {
        match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from((self.bits >> 96) as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(self.bits)),
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| PrefixError::Syntax(text.to_string()))?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| PrefixError::Syntax(text.to_string()))?;
        let len: u8 = len
            .parse()
            .map_err(|_| PrefixError::Syntax(text.to_string()))?;
        let family = Family::of(ip);
        if len > family.bits() {
            return Err(PrefixError::TooLong {
                text: text.to_string(),
                len,
                max: family.bits(),
            });
        }
        let bits = address_bits(ip);
        let prefix = Prefix {
            family,
            bits: bits & mask(len),
            len,
        };
        if prefix.bits != bits {
            return Err(PrefixError::HostBits(text.to_string(), prefix.to_string()));
        }
        Ok(prefix)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_both_families() {
        let p: Prefix = "203.0.113.0/24".parse().unwrap();
        assert!(p.contains("203.0.113.7".parse().unwrap()));
        assert!(!p.contains("203.0.114.7".parse().unwrap()));
        assert!(!p.contains("::cb00:7107".parse().unwrap()));
        let p6: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(p6.contains("2001:db8:1::1".parse().unwrap()));
        assert_eq!(p6.to_string(), "2001:db8::/32");
    }

    #[test]
    fn rejects_bad_prefixes() {
        assert!(matches!(
            "10.0.0.0".parse::<Prefix>(),
            Err(PrefixError::Syntax(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::TooLong { .. })
        ));
        assert!(matches!(
            "10.1.0.0/8".parse::<Prefix>(),
            Err(PrefixError::HostBits(..))
        ));
        assert!(matches!(
            "nonsense/8".parse::<Prefix>(),
            Err(PrefixError::Syntax(_))
        ));
    }

    #[test]
    fn unmaps_ipv4_mapped_addresses() {
        assert_eq!(
            unmap("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            unmap("2001:db8::1".parse().unwrap()),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
