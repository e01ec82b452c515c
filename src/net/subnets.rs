//! Prefixes as a binary trie: the subnet conditions of a steered name's rules (which is the
//! first rule whose subnets cover the client?) and its measured prefix groups (which is the
//! longest group that covers it?), each with the prefix length over which the result stays
//! the same (its share of the ECS scope).

use std::net::IpAddr;

use super::{Family, Prefix, address_bits, bit};

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq)]
struct TrieNode {
    children: [u32; 2],
    /// Lowest value among prefixes ending exactly here.
    rule: Option<u32>,
}

/// One trie per family; empty when no rule has subnets.
#[derive(Debug, Clone, PartialEq)]
pub struct SubnetRules {
    v4: Vec<TrieNode>,
    v6: Vec<TrieNode>,
}

impl Default for SubnetRules {
    fn default() -> Self {
        Self::new()
    }
}

impl SubnetRules {
    /// An empty set.
    pub fn new() -> Self {
        let root = || {
            vec![TrieNode {
                children: [NONE; 2],
                rule: None,
            }]
        };
        SubnetRules {
            v4: root(),
            v6: root(),
        }
    }

    /// Adds a rule's prefix. Rule indices must fit u16 (validated policies have few rules).
    pub fn insert(&mut self, prefix: &Prefix, rule: u32) {
        let trie = match prefix.family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        let mut node = 0usize;
        for depth in 0..prefix.len {
            let side = bit(prefix.bits, depth) as usize;
            if trie[node].children[side] == NONE {
                trie.push(TrieNode {
                    children: [NONE; 2],
                    rule: None,
                });
                let new = (trie.len() - 1) as u32;
                trie[node].children[side] = new;
            }
            node = trie[node].children[side] as usize;
        }
        let slot = &mut trie[node].rule;
        *slot = Some(slot.map_or(rule, |r| r.min(rule)));
    }

    /// True when no rule has subnets.
    pub fn is_empty(&self) -> bool {
        self.v4.len() == 1
            && self.v6.len() == 1
            && self.v4[0].rule.is_none()
            && self.v6[0].rule.is_none()
    }

    /// The lowest value (first rule) covering `ip` (unmapped) and the prefix length over
    /// which that holds.
    pub fn lookup(&self, ip: IpAddr) -> (Option<u32>, u8) {
        self.walk(ip, |best, r| Some(best.map_or(r, |b: u32| b.min(r))))
    }

    /// The value of the longest prefix covering `ip`, and the prefix length over which that
    /// holds.
    pub fn longest(&self, ip: IpAddr) -> (Option<u32>, u8) {
        self.walk(ip, |_, r| Some(r))
    }

    fn walk(
        &self,
        ip: IpAddr,
        keep: impl Fn(Option<u32>, u32) -> Option<u32>,
    ) -> (Option<u32>, u8) {
        let family = Family::of(ip);
        let trie = match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        let bits = address_bits(ip);
        let mut best: Option<u32> = None;
        let mut node = &trie[0];
        let mut depth = 0u8;
        loop {
            if let Some(r) = node.rule {
                best = keep(best, r);
            }
            let has_children = node.children.iter().any(|&c| c != NONE);
            if !has_children || depth == family.bits() {
                return (best, depth);
            }
            let next = node.children[bit(bits, depth) as usize];
            if next == NONE {
                // Other prefixes live in the sibling half; ours is uniform one bit deeper.
                return (best, depth + 1);
            }
            node = &trie[next as usize];
            depth += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_rule_and_scope() {
        let mut rules = SubnetRules::new();
        assert!(rules.is_empty());
        assert_eq!(rules.lookup(ip("192.0.2.1")), (None, 0));
        rules.insert(&"203.0.113.0/24".parse().unwrap(), 0);
        rules.insert(&"203.0.0.0/16".parse().unwrap(), 3);
        rules.insert(&"2001:db8::/32".parse().unwrap(), 1);
        assert!(!rules.is_empty());
        assert_eq!(rules.lookup(ip("203.0.113.9")), (Some(0), 24));
        // Inside the /16 but outside the /24: rule 3, uniform over the half without the /24.
        let (rule, scope) = rules.lookup(ip("203.0.1.1"));
        assert_eq!(rule, Some(3));
        assert!((17..=24).contains(&scope), "{scope}");
        // Far away: no rule, uniform over the half that holds no rule prefix.
        assert_eq!(rules.lookup(ip("10.0.0.1")), (None, 1));
        assert_eq!(rules.lookup(ip("2001:db8:1::1")), (Some(1), 32));
        // Longest match: the /24 inside the /16.
        assert_eq!(rules.longest(ip("203.0.113.9")), (Some(0), 24));
        assert_eq!(rules.longest(ip("203.0.1.1")).0, Some(3));
    }
}
