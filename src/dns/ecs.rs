//! EDNS Client Subnet (RFC 7871): which address a query is answered for, and the option echoed
//! back with an honest scope.

use std::net::IpAddr;

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::net::{Family, address_bits, mask, unmap};

/// A client subnet option as received, checked against RFC 7871 §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// Family as sent (IPv4-mapped addresses keep family IPv6 here).
    pub family: Family,
    /// SOURCE PREFIX-LENGTH.
    pub source_prefix: u8,
    /// ADDRESS, as sent.
    pub address: IpAddr,
}

/// Why an ECS option makes the query a FORMERR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// SCOPE PREFIX-LENGTH must be 0 in queries.
    #[error("non-zero scope prefix in a query")]
    ScopeInQuery,
    /// SOURCE PREFIX-LENGTH beyond the address width.
    #[error("source prefix longer than the address")]
    SourceTooLong,
    /// Address bits set past SOURCE PREFIX-LENGTH.
    #[error("address bits set past the source prefix")]
    BitsPastPrefix,
    /// More or fewer address octets than SOURCE PREFIX-LENGTH needs (RFC 7871 §6).
    #[error("address octets do not match the source prefix")]
    AddressLength,
    /// More than one ECS option in one query.
    #[error("more than one client subnet option")]
    Repeated,
}

/// The ECS option code (RFC 7871).
pub(super) const OPTION_ECS: u16 = 8;

impl ClientSubnet {
    /// Extracts and validates the option from a query's EDNS, if present. Unknown families and
    /// truncated addresses are rejected earlier, by the message parser.
    pub fn from_edns(edns: &Edns) -> Result<Option<ClientSubnet>, EcsError> {
        let Some(EdnsOption::Subnet(subnet)) = edns.option(EdnsCode::Subnet) else {
            return Ok(None);
        };
        ClientSubnet::checked(subnet.addr(), subnet.source_prefix(), subnet.scope_prefix())
            .map(Some)
    }

    /// Validates an option's fields (RFC 7871 §7.1): shared by both query parsers.
    pub fn checked(
        address: IpAddr,
        source_prefix: u8,
        scope: u8,
    ) -> Result<ClientSubnet, EcsError> {
        if scope != 0 {
            return Err(EcsError::ScopeInQuery);
        }
        let family = Family::of(address);
        if source_prefix > family.bits() {
            return Err(EcsError::SourceTooLong);
        }
        if address_bits(address) & !mask(source_prefix) != 0 {
            return Err(EcsError::BitsPastPrefix);
        }
        Ok(ClientSubnet {
            family,
            source_prefix,
            address,
        })
    }

    /// The address to locate, IPv4-mapped addresses as IPv4, and whether it was unmapped.
    /// `None` for a /0 source, which carries no client information.
    pub fn client(&self) -> Option<(IpAddr, bool)> {
        if self.source_prefix == 0 {
            return None;
        }
        let unmapped = unmap(self.address);
        Some((unmapped, Family::of(unmapped) != self.family))
    }

    /// SCOPE PREFIX-LENGTH to send: a scope in bits of the looked-up address, shifted back to
    /// the family sent (+96 for an IPv4-mapped address), never longer than the source prefix.
    pub fn response_scope(&self, scope: u8, unmapped: bool) -> u8 {
        let scope = if unmapped && scope > 0 {
            scope.saturating_add(96)
        } else {
            scope
        };
        scope.min(self.source_prefix)
    }

    /// Appends the option (code, length, family, prefixes, address) to OPT RDATA.
    pub fn push_option(&self, out: &mut Vec<u8>, scope: u8) {
        let address_len = self.source_prefix.div_ceil(8) as usize;
        out.extend_from_slice(&8u16.to_be_bytes());
        out.extend_from_slice(&((4 + address_len) as u16).to_be_bytes());
        out.extend_from_slice(
            &match self.family {
                Family::V4 => 1u16,
                Family::V6 => 2u16,
            }
            .to_be_bytes(),
        );
        out.push(self.source_prefix);
        out.push(scope);
        match self.address {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()[..address_len.min(4)]),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()[..address_len.min(16)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::opt::ClientSubnet as HickorySubnet;

    fn edns_with(addr: &str, source: u8, scope: u8) -> Edns {
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Subnet(HickorySubnet::new(
                addr.parse().unwrap(),
                source,
                scope,
            )));
        edns
    }

    #[test]
    fn validates_queries() {
        let ok = ClientSubnet::from_edns(&edns_with("192.0.2.0", 24, 0))
            .unwrap()
            .unwrap();
        assert_eq!(ok.client(), Some(("192.0.2.0".parse().unwrap(), false)));
        assert_eq!(
            ClientSubnet::from_edns(&edns_with("192.0.2.0", 24, 8)),
            Err(EcsError::ScopeInQuery)
        );
        assert_eq!(
            ClientSubnet::from_edns(&edns_with("192.0.2.1", 24, 0)),
            Err(EcsError::BitsPastPrefix)
        );
        assert_eq!(ClientSubnet::from_edns(&Edns::new()), Ok(None));
        let zero = ClientSubnet::from_edns(&edns_with("0.0.0.0", 0, 0))
            .unwrap()
            .unwrap();
        assert_eq!(zero.client(), None);
    }

    #[test]
    fn mapped_addresses_are_ipv4_with_shifted_scope() {
        let mapped = ClientSubnet::from_edns(&edns_with("::ffff:192.0.2.0", 120, 0))
            .unwrap()
            .unwrap();
        let (ip, unmapped) = mapped.client().unwrap();
        assert_eq!(ip, "192.0.2.0".parse::<IpAddr>().unwrap());
        assert!(unmapped);
        assert_eq!(mapped.response_scope(16, true), 112);
        assert_eq!(mapped.response_scope(30, true), 120);
        assert_eq!(mapped.response_scope(0, true), 0);
    }

    #[test]
    fn option_bytes() {
        let s = ClientSubnet::from_edns(&edns_with("198.51.100.0", 22, 0))
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        s.push_option(&mut out, 16);
        assert_eq!(out, [0, 8, 0, 7, 0, 1, 22, 16, 198, 51, 100]);
    }
}
