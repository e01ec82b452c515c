//! The draw: which members of a spread group a client network gets, by weighted rendezvous
//! (highest random weight) hashing of the network with each member's key.
//!
//! Every member scores `weight / -ln(u)`, `u` a uniform hash of (member key, network) in
//! (0, 1]; the highest scores win. A network keeps its node for as long as that node is in
//! the group (on every instance and after restarts: keys come from the zone and node names,
//! not from memory), and a node joining or leaving moves only the networks it wins or had.
//! A partly drained node gives up the share of its networks whose own hash falls below the
//! share, to their next member.

use std::net::IpAddr;

/// Most members a group draws from (a larger group keeps its first ones, best first).
pub const MAX_DRAW: usize = 32;

/// Prefix lengths a network is drawn by: a client's /24 (IPv4) or /48 (IPv6), the ECS scope
/// of a spread answer.
pub const NETWORK_BITS: [u8; 2] = [24, 48];

/// One node of a spread group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrawMember {
    /// The node's key: a hash of the zone and node names.
    pub key: u64,
    /// Its share of the draw (weight in thousandths, times free capacity).
    pub weight: u32,
    /// Percentage of its networks it gives up (a gradual drain); 0: none.
    pub drained: u8,
}

/// A stable 64-bit hash (FNV-1a, then mixed): the same on every instance and version.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The network a client is drawn by: its /24 or /48, tagged with the family.
pub fn network_of(client: IpAddr) -> u64 {
    match client {
        IpAddr::V4(v4) => (4u64 << 56) | u64::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => (6u64 << 56) | (u128::from(v6) >> 80) as u64,
    }
}

/// Whether a member with `drained` percent gives up `network`: the same networks at every
/// share, more of them as the share grows.
pub fn gives_up(member: &DrawMember, network: u64) -> bool {
    member.drained > 0
        && mix(member.key.rotate_left(17) ^ network) % 100 < u64::from(member.drained)
}

/// Draws `count` members for `network` into `out` (indices into `members`, best first);
/// returns how many were drawn (fewer when members gave their networks up, but never none
/// while there are members: drained shares yield only to undrained ones). No allocation.
pub fn draw(members: &[DrawMember], count: usize, network: u64, out: &mut [u8; MAX_DRAW]) -> usize {
    let mut scores = [f64::NEG_INFINITY; MAX_DRAW];
    let mut eligible = 0usize;
    let staying = members.iter().take(MAX_DRAW).any(|m| !gives_up(m, network));
    for (i, member) in members.iter().enumerate().take(MAX_DRAW) {
        if staying && gives_up(member, network) {
            continue;
        }
        // u in (0, 1]: never zero, so the logarithm is finite or zero.
        let u = ((mix(member.key ^ network) >> 11) + 1) as f64 / (1u64 << 53) as f64;
        scores[i] = f64::from(member.weight.max(1)) / -u.ln();
        eligible += 1;
    }
    let count = count.min(eligible).min(MAX_DRAW);
    for slot in out.iter_mut().take(count) {
        let mut best = 0usize;
        for (i, score) in scores.iter().enumerate() {
            if *score > scores[best] {
                best = i;
            }
        }
        *slot = best as u8;
        scores[best] = f64::NEG_INFINITY;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(weights: &[u32]) -> Vec<DrawMember> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| DrawMember {
                key: stable_hash(&[b"zone", format!("n{i}").as_bytes()]),
                weight,
                drained: 0,
            })
            .collect()
    }

    fn winner(members: &[DrawMember], network: u64) -> Option<u8> {
        let mut out = [0u8; MAX_DRAW];
        (draw(members, 1, network, &mut out) == 1).then_some(out[0])
    }

    #[test]
    fn shares_follow_weights() {
        let group = members(&[1000, 1000, 2000, 4000]);
        let mut wins = [0usize; 4];
        let n = 40_000u64;
        for network in 0..n {
            wins[winner(&group, network * 7919).unwrap() as usize] += 1;
        }
        for (w, expected) in wins.iter().zip([0.125, 0.125, 0.25, 0.5]) {
            let share = *w as f64 / n as f64;
            assert!((share - expected).abs() < 0.01, "{wins:?}");
        }
    }

    #[test]
    fn removing_a_member_moves_only_its_networks() {
        let group = members(&[1000, 1000, 2000, 4000]);
        let without: Vec<DrawMember> = group[..3].to_vec();
        for network in 0..5_000u64 {
            let before = winner(&group, network).unwrap();
            let after = winner(&without, network).unwrap();
            if before != 3 {
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn a_partial_drain_moves_about_its_share_and_only_its_own() {
        let group = members(&[1000, 1000]);
        let mut drained = group.clone();
        drained[0].drained = 50;
        let (mut had, mut moved) = (0, 0);
        for network in 0..20_000u64 {
            let before = winner(&group, network).unwrap();
            let after = winner(&drained, network).unwrap();
            if before == 0 {
                had += 1;
                moved += usize::from(after != 0);
            } else {
                assert_eq!(after, 1);
            }
        }
        let share = moved as f64 / had as f64;
        assert!((share - 0.5).abs() < 0.03, "{share}");
        drained[0].drained = 100;
        assert!((0..1000).all(|n| winner(&drained, n) == Some(1)));
        // Both giving a network up: it stays drawn rather than unanswered.
        drained[1].drained = 100;
        assert!((0..100).all(|n| winner(&drained, n).is_some()));
    }

    #[test]
    fn networks_are_prefixes() {
        let a = network_of("192.0.2.1".parse().unwrap());
        assert_eq!(a, network_of("192.0.2.254".parse().unwrap()));
        assert_ne!(a, network_of("192.0.3.1".parse().unwrap()));
        let b = network_of("2001:db8:1::1".parse().unwrap());
        assert_eq!(b, network_of("2001:db8:1:ffff::1".parse().unwrap()));
        assert_ne!(b, network_of("2001:db8:2::1".parse().unwrap()));
    }
}
