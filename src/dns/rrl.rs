//! Response-rate limiting over UDP, as Knot, NSD and BIND do it: a token bucket per
//! (client network, kind of response), so a flood of identical queries with a forged
//! source — a reflection attack on that source — gets the configured rate of answers, and
//! every `slip`-th limited response goes out truncated so a real client there retries over
//! TCP, which proves its address.
//!
//! The kind of a response is what it is about, as BIND's and Knot's RRL key it, so that
//! varying what a response is not about does not make it a new kind: an answer, by the
//! question's name and type; a response with no data from the zone (NXDOMAIN, NODATA, a
//! referral), by the zone alone, whatever the name or type asked (a random-subdomain or
//! random-type flood is one kind); an answer synthesized from a wildcard, by the wildcard
//! (random labels under it are one kind); errors and refusals, by nothing. Client networks
//! are IPv4 /24s and IPv6 /56s.
//!
//! ECS: one busy resolver asks the same steered name for thousands of client subnets per
//! TTL, from one address. Its responses differ per subnet, so the subnet is part of the
//! kind, but only as far as the answer depends on it: left out when the reply's scope is 0
//! (a static name answers every subnet alike, so random subnets on it are one kind), else
//! cut to the scope or to a client network (/24, /56), whichever is coarser... but never
//! coarser than a /24 (/56): a resolver that asks per /24 whatever scope it was given is
//! never limited for it. A flood that varies the subnet of a steered name meets a second,
//! per-network bucket (`source_rate`, ten thousand responses a second by default).
//! TCP answers are never limited.
//!
//! Fixed memory: two tables of 64-bit atomic buckets, sized at start, updated with a
//! compare-and-swap; no lock and no allocation per query. Buckets are found by a hash
//! seeded at start, so an outsider cannot aim collisions at a victim's bucket; colliding
//! kinds share a bucket, which only ever errs toward limiting sooner.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::RrlSettings;
use crate::wire::{Outcome, ResponseKind};

/// Buckets per table (a power of two): 512 KiB each.
const BUCKETS: usize = 1 << 16;
/// A token is worth this many milli-tokens (buckets refill in milliseconds).
const MILLI: u64 = 1000;

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send it truncated (TC, no records): a real client retries over TCP.
    Slip,
    /// Send nothing.
    Drop,
    /// Log-only mode: it would have been limited; send it.
    WouldLimit,
}

/// The buckets, shared by every UDP serving thread.
pub struct RateLimiter {
    settings: RrlSettings,
    kinds: Box<[AtomicU64]>,
    networks: Box<[AtomicU64]>,
    seed: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    /// Empty buckets (full of tokens) for `settings`.
    pub fn new(settings: RrlSettings) -> Self {
        let table = || (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
        RateLimiter {
            settings,
            kinds: table(),
            networks: table(),
            seed: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Whether limiting is on.
    pub fn enabled(&self) -> bool {
        self.settings.rate > 0
    }

    /// Judges one UDP response to `client` at `now_ms` (a millisecond clock); `response`
    /// is its bytes (the question is read from them), `limited` counts this thread's limited
    /// responses for the slip. Lock-free, allocation-free.
    pub fn judge(
        &self,
        client: IpAddr,
        outcome: &Outcome,
        response: &[u8],
        now_ms: u64,
        limited: &mut u32,
    ) -> Verdict {
        if !self.enabled() {
            return Verdict::Send;
        }
        let client = crate::net::unmap(client);
        if self.settings.exempt.iter().any(|p| p.contains(client)) {
            return Verdict::Send;
        }
        let network = network_of(client);
        let mut hasher = self.seed.build_hasher();
        hasher.write_u128(network);
        let network_hash = hasher.finish();
        // The kind: what the response is about, and the client subnet it was for.
        match outcome.kind {
            ResponseKind::Answer => {
                hasher.write_u8(0);
                let end = 12 + usize::from(outcome.question_len);
                for &byte in response.get(12..end).unwrap_or(&[]) {
                    hasher.write_u8(byte.to_ascii_lowercase());
                }
            }
            ResponseKind::Empty => {
                hasher.write_u8(1);
                hasher.write_usize(outcome.zone.unwrap_or(usize::MAX));
            }
            ResponseKind::Wildcard(wildcard) => {
                hasher.write_u8(2);
                hasher.write_usize(wildcard);
            }
            ResponseKind::Error => hasher.write_u8(3),
        }
        // Only as far as the answer depends on it: not at all for a scope of 0; else the
        // subnet sent, no finer than the reply's scope or a client network (/24, /56), so
        // a resolver asking per /24 keeps a bucket per /24 whatever scope it was given.
        if let Some((address, source)) = outcome.subnet
            && outcome.ecs_scope > 0
        {
            let scope = outcome.ecs_scope;
            match address {
                IpAddr::V4(a) => {
                    let bits = source.min(scope.max(24));
                    hasher.write_u32(u32::from(a) & mask32(bits));
                    hasher.write_u8(bits);
                }
                IpAddr::V6(a) => {
                    let bits = source.min(scope.max(56));
                    hasher.write_u128(u128::from(a) & mask128(bits));
                    hasher.write_u8(bits);
                }
            }
        }
        let kind_hash = hasher.finish();
        let allowed = take(&self.kinds, kind_hash, self.settings.rate, now_ms)
            && take(
                &self.networks,
                network_hash,
                self.settings.source_rate,
                now_ms,
            );
        if allowed {
            return Verdict::Send;
        }
        if self.settings.log_only {
            return Verdict::WouldLimit;
        }
        *limited = limited.wrapping_add(1);
        match self.settings.slip {
            0 => Verdict::Drop,
            slip if (*limited).is_multiple_of(slip) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }
}

/// The first `bits` bits of an IPv4 address.
fn mask32(bits: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(bits.min(32)))
        .unwrap_or(0)
}

/// The first `bits` bits of an IPv6 address.
fn mask128(bits: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(bits.min(128)))
        .unwrap_or(0)
}

/// A client's network: an IPv4 /24 or an IPv6 /56, as a number tagged by family.
fn network_of(client: IpAddr) -> u128 {
    match client {
        IpAddr::V4(a) => u128::from(u32::from(a) & 0xFFFF_FF00),
        IpAddr::V6(a) => (u128::from(a) & !((1u128 << 72) - 1)) | 1,
    }
}

/// Takes a token from the bucket `hash` selects, refilled at `rate` a second up to one
/// second's worth; false when it is empty. A bucket is (last update in ms: 32 bits, milli-
/// tokens: 32 bits); an unused bucket (0) is full.
fn take(table: &[AtomicU64], hash: u64, rate: u32, now_ms: u64) -> bool {
    let slot = &table[(hash as usize) & (table.len() - 1)];
    let capacity = u64::from(rate) * MILLI;
    let now = now_ms as u32;
    let mut old = slot.load(Ordering::Relaxed);
    loop {
        let (then, tokens) = ((old >> 32) as u32, old & 0xFFFF_FFFF);
        let tokens = if old == 0 {
            capacity
        } else {
            // At most a second matters: the bucket is full by then.
            let elapsed = u64::from(now.wrapping_sub(then)).min(1000);
            (tokens + elapsed * u64::from(rate)).min(capacity)
        };
        let (left, allowed) = match tokens.checked_sub(MILLI) {
            Some(left) => (left, true),
            None => (tokens, false),
        };
        // Never store 0 (an unused bucket): an empty bucket keeps one milli-token.
        let new = (u64::from(now) << 32) | left.clamp(1, 0xFFFF_FFFF);
        match slot.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return allowed,
            Err(current) => old = current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Rcode;

    fn outcome(rcode: Rcode) -> Outcome {
        Outcome {
            rcode,
            truncated: false,
            zone: Some(0),
            qtype: 1,
            question_len: 5,
            subnet: None,
            ecs_scope: 0,
            cookie_valid: false,
            kind: match rcode {
                Rcode::NoError => ResponseKind::Answer,
                Rcode::NxDomain => ResponseKind::Empty,
                _ => ResponseKind::Error,
            },
        }
    }

    const RESPONSE: &[u8] = b"\x12\x34\x84\0\0\x01\0\x01\0\0\0\0\x01a\0\0\x01\0\x01";

    #[test]
    fn a_flood_gets_the_rate_and_every_other_limited_response_slips() {
        let limiter = RateLimiter::new(RrlSettings {
            rate: 10,
            ..RrlSettings::default()
        });
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let mut limited = 0;
        let mut verdicts = [0usize; 3];
        // 1,000 identical responses within one millisecond: the burst (10), then limited.
        for _ in 0..1_000 {
            let v = limiter.judge(
                client,
                &outcome(Rcode::NoError),
                RESPONSE,
                5_000,
                &mut limited,
            );
            verdicts[v as usize] += 1;
        }
        assert_eq!(verdicts, [10, 495, 495]);
        // A second later the bucket is full again; a neighbour in the /24 shares it.
        let neighbour: IpAddr = "192.0.2.200".parse().unwrap();
        let v = limiter.judge(
            neighbour,
            &outcome(Rcode::NoError),
            RESPONSE,
            6_000,
            &mut limited,
        );
        assert_eq!(v, Verdict::Send);
        // Another kind of response (NXDOMAIN) has a bucket of its own.
        let v = limiter.judge(
            client,
            &outcome(Rcode::NxDomain),
            RESPONSE,
            5_000,
            &mut limited,
        );
        assert_eq!(v, Verdict::Send);
    }

    #[test]
    fn each_client_subnet_is_a_kind_of_its_own_up_to_the_network_ceiling() {
        let limiter = RateLimiter::new(RrlSettings {
            rate: 5,
            source_rate: 300,
            ..RrlSettings::default()
        });
        let resolver: IpAddr = "198.51.100.53".parse().unwrap();
        let mut limited = 0;
        let mut sent = 0;
        for i in 0..1_000u32 {
            let mut o = outcome(Rcode::NoError);
            o.subnet = Some((IpAddr::V4((0x0A00_0000 | (i << 8)).into()), 24));
            o.ecs_scope = 24;
            if limiter.judge(resolver, &o, RESPONSE, 1_000, &mut limited) == Verdict::Send {
                sent += 1;
            }
        }
        assert_eq!(
            sent, 300,
            "every subnet answered until the network's ceiling"
        );
    }

    /// Varying what a response is not about makes no new kind: the subnet of an answer
    /// that holds for every subnet (scope 0), or beyond the reply's scope; the name or
    /// type of a response with no data; the name under a wildcard.
    #[test]
    fn varying_what_a_response_is_not_about_makes_no_new_kind() {
        let settings = RrlSettings {
            rate: 5,
            slip: 0,
            ..RrlSettings::default()
        };
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let flood = |vary: &dyn Fn(u32, &mut Outcome)| {
            let limiter = RateLimiter::new(settings.clone());
            let mut limited = 0;
            (0..1_000u32)
                .filter(|&i| {
                    let mut o = outcome(Rcode::NoError);
                    vary(i, &mut o);
                    limiter.judge(client, &o, RESPONSE, 1_000, &mut limited) == Verdict::Send
                })
                .count()
        };
        let random_subnet = |i: u32, o: &mut Outcome| {
            o.subnet = Some((IpAddr::V4((0x0A00_0000 | (i << 8)).into()), 24));
        };
        assert_eq!(
            flood(&random_subnet),
            5,
            "scope 0: the subnet does not count"
        );
        assert_eq!(
            flood(&|i, o| {
                o.subnet = Some((IpAddr::V4((0x0A00_0000 | (i & 0xFF)).into()), 32));
                o.ecs_scope = 24;
            }),
            5,
            "addresses within one /24 scope"
        );
        assert_eq!(
            flood(&|i, o| {
                random_subnet(i, o);
                o.ecs_scope = 8;
            }),
            1_000,
            "a resolver asking per /24 under a coarse scope"
        );
        assert_eq!(
            flood(&|i, o| {
                o.kind = ResponseKind::Empty;
                o.question_len = (i % 200) as u16;
            }),
            5,
            "no data: the zone alone"
        );
        assert_eq!(
            flood(&|i, o| {
                o.kind = ResponseKind::Wildcard(7);
                o.question_len = (i % 200) as u16;
            }),
            5,
            "one wildcard"
        );
    }

    #[test]
    fn exempt_networks_and_log_only_send_everything() {
        let exempt = RateLimiter::new(RrlSettings {
            rate: 1,
            exempt: vec!["192.0.2.0/24".parse().unwrap()],
            ..RrlSettings::default()
        });
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let mut limited = 0;
        for _ in 0..100 {
            let v = exempt.judge(client, &outcome(Rcode::NoError), RESPONSE, 0, &mut limited);
            assert_eq!(v, Verdict::Send);
        }
        let log_only = RateLimiter::new(RrlSettings {
            rate: 1,
            log_only: true,
            ..RrlSettings::default()
        });
        let mut counted = 0;
        for _ in 0..100 {
            let v = log_only.judge(client, &outcome(Rcode::NoError), RESPONSE, 0, &mut limited);
            assert!(matches!(v, Verdict::Send | Verdict::WouldLimit), "{v:?}");
            counted += usize::from(v == Verdict::WouldLimit);
        }
        assert_eq!(counted, 99, "all but the first would have been limited");
    }
}
