//! The zone signer: after a snapshot is built, a signed zone gets its DNSKEY, CDS and
//! CDNSKEY sets at the apex, an RRSIG for every RRset it serves (static sets, and every set
//! of records a steered answer can send: each carrier's bodies, each draw of a spread
//! group), and its NSEC chain. Queries only copy these bytes.
//!
//! Signatures are kept by what they cover: a build reuses the previous snapshot's while they
//! are not due and the keys are the same, so a health change signs only answer sets that
//! are new. When they are due (a quarter of their lifetime left), the next build signs
//! everything afresh with a new validity.

use std::collections::HashMap;
use std::sync::Arc;

use super::draw::MAX_DRAW;
use super::snapshot::*;
use crate::dnssec::{KeyPair, KeyRole, Rrset, Validity, canonical_cmp, nsec_rdata, rrsig_rdata};
use crate::policy::{Signing, Zone};
use crate::wire::{RDATA_OFFSET, RecordType, push_body};

/// Most record sets signed for one family of one steered answer: a spread group's draws and
/// staged drains multiply (32 members drawing 2 are 496 sets); past this, draws are served
/// unsigned and a warning says so.
pub(super) const MAX_SIGNED_SETS: usize = 4096;

/// Most nodes after a spread group whose staged drains are signed for (each doubles the
/// sets a client can be sent).
const MAX_YIELDING: usize = 12;

/// Signs every signed zone of `snapshot` (zones by policy index in `zones`) at `now` (UNIX
/// seconds), keeping what `previous` signed while it is not due. Returns how many
/// signatures were made.
pub(super) fn sign_zones(
    snapshot: &mut Snapshot,
    zones: &[Zone],
    previous: Option<&Snapshot>,
    now: u64,
) -> usize {
    let mut made = 0;
    for answers in &mut snapshot.zones {
        let Some(signing) = zones.get(answers.index).and_then(|z| z.dnssec.as_ref()) else {
            continue;
        };
        let zone = &zones[answers.index];
        let before = previous
            .and_then(|p| p.zone(&answers.origin))
            .and_then(|z| z.signed.as_ref());
        let mut signer = Signer::new(signing, before.map(|b| &*b.cache), now);
        add_apex_keys(answers, zone, signing);
        sign_static(answers, &mut signer);
        let negative_soa_signatures = signer.sign_bodies(
            &answers.origin,
            RecordType::SOA.0,
            std::slice::from_ref(&answers.negative_soa),
        );
        let kept = before.filter(|_| signer.kept_previous);
        sign_steered(answers, &mut signer, previous.filter(|_| kept.is_some()));
        let chain = nsec_chain(answers, zone, &mut signer);
        made += signer.made;
        answers.signed = Some(ZoneSigned {
            negative_soa_signatures,
            chain: chain.into(),
            validity: signer.validity,
            cache: Arc::new(signer.into_cache()),
        });
    }
    made
}

/// Whether any signed zone of `snapshot` has signatures due at `now`.
pub(super) fn signatures_due(snapshot: &Snapshot, now: u64) -> bool {
    (snapshot.zones.iter())
        .filter_map(|z| z.signed.as_ref())
        .any(|s| s.validity.due(now))
}

/// Makes and keeps one zone's signatures.
struct Signer<'a> {
    /// Keys that sign the DNSKEY, CDS and CDNSKEY sets.
    key_signing: Vec<&'a KeyPair>,
    /// Keys that sign everything else (the key-signing keys when there is no other).
    zone_signing: Vec<&'a KeyPair>,
    validity: Validity,
    /// The previous snapshot's signatures, when still good.
    before: Option<&'a SignatureCache>,
    /// Whether `before` is kept (same keys, not due).
    kept_previous: bool,
    /// Signatures used by this snapshot.
    cache: SignatureCache,
    /// Signatures made (not kept).
    made: usize,
}

impl<'a> Signer<'a> {
    fn new(signing: &'a Signing, before: Option<&'a SignatureCache>, now: u64) -> Self {
        let keys: Vec<(u16, u16, bool)> = (signing.keys.iter())
            .map(|k| (k.key_tag(), k.role.flags(), k.signs()))
            .collect();
        let before = before.filter(|c| c.keys == keys && c.validity.is_some_and(|v| !v.due(now)));
        let validity = before
            .and_then(|c| c.validity)
            .unwrap_or_else(|| Validity::from(now, signing.lifetime));
        let key_signing: Vec<&KeyPair> = (signing.keys.iter())
            .filter(|k| k.role == KeyRole::KeySigning && k.signs())
            .collect();
        let mut zone_signing: Vec<&KeyPair> = (signing.keys.iter())
            .filter(|k| k.role == KeyRole::ZoneSigning && k.signs())
            .collect();
        if zone_signing.is_empty() {
            zone_signing = key_signing.clone();
        }
        Signer {
            key_signing,
            zone_signing,
            validity,
            kept_previous: before.is_some(),
            before,
            cache: SignatureCache {
                keys,
                validity: Some(validity),
                by_rrset: HashMap::new(),
            },
            made: 0,
        }
    }

    /// A signer for part of the work on another thread: the same keys, validity and
    /// previous signatures, a cache of its own (merged back after).
    fn fork(&self) -> Signer<'a> {
        Signer {
            key_signing: self.key_signing.clone(),
            zone_signing: self.zone_signing.clone(),
            validity: self.validity,
            before: self.before,
            kept_previous: self.kept_previous,
            cache: SignatureCache {
                keys: Vec::new(),
                validity: Some(self.validity),
                by_rrset: HashMap::new(),
            },
            made: 0,
        }
    }

    fn into_cache(self) -> SignatureCache {
        self.cache
    }

    /// The RRSIG bodies over the RRset of `bodies` (each type … RDATA, one TTL) at `owner`.
    fn sign_bodies(&mut self, owner: &[u8], rtype: u16, bodies: &[Box<[u8]>]) -> Signatures {
        let ttl = bodies
            .first()
            .and_then(|b| b.get(4..8))
            .map_or(0, |t| u32::from_be_bytes([t[0], t[1], t[2], t[3]]));
        let rdatas: Vec<Vec<u8>> = (bodies.iter())
            .filter_map(|b| b.get(RDATA_OFFSET..).map(<[u8]>::to_vec))
            .collect();
        self.sign(owner, rtype, ttl, rdatas)
    }

    /// The RRSIG bodies over one RRset: kept from before when the same set was signed with
    /// the same keys and validity, else made.
    fn sign(&mut self, owner: &[u8], rtype: u16, ttl: u32, mut rdatas: Vec<Vec<u8>>) -> Signatures {
        rdatas.sort();
        rdatas.dedup();
        let mut key =
            Vec::with_capacity(owner.len() + 8 + rdatas.iter().map(|r| r.len() + 2).sum::<usize>());
        key.extend_from_slice(owner);
        key.extend_from_slice(&rtype.to_be_bytes());
        key.extend_from_slice(&ttl.to_be_bytes());
        for r in &rdatas {
            key.extend_from_slice(&(r.len() as u16).to_be_bytes());
            key.extend_from_slice(r);
        }
        let key = key.into_boxed_slice();
        if let Some(found) = self.cache.by_rrset.get(&key) {
            return Arc::clone(found);
        }
        if let Some(found) = self.before.and_then(|b| b.by_rrset.get(&key)) {
            self.cache.by_rrset.insert(key, Arc::clone(found));
            return Arc::clone(found);
        }
        let apex_keys = matches!(
            RecordType(rtype),
            RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY
        );
        let keys = if apex_keys {
            &self.key_signing
        } else {
            &self.zone_signing
        };
        let set = Rrset {
            owner,
            rtype,
            ttl,
            rdatas: &rdatas,
        };
        let mut signatures = Vec::with_capacity(keys.len());
        for key in keys {
            match rrsig_rdata(&set, key, self.validity) {
                Ok(rdata) => {
                    let mut body = Vec::with_capacity(RDATA_OFFSET + rdata.len());
                    push_body(&mut body, RecordType::RRSIG, ttl, &rdata);
                    signatures.push(body.into_boxed_slice());
                    self.made += 1;
                }
                // ring refusing a key it loaded is a bug; the set goes out unsigned.
                Err(e) => tracing::error!(error = %e, "signing failed"),
            }
        }
        let signatures: Signatures = signatures.into();
        self.cache.by_rrset.insert(key, Arc::clone(&signatures));
        signatures
    }
}

/// The apex's DNSKEY set (every key, those published only included), and the CDS and
/// CDNSKEY sets of the key-signing keys that sign (RFC 7344: what the parent may take as
/// the zone's DS), TTL of the SOA.
fn add_apex_keys(answers: &mut ZoneAnswers, zone: &Zone, signing: &Signing) {
    let ttl = zone.soa.ttl;
    let origin = answers.origin.clone();
    let encode = |rtype: RecordType, rdatas: Vec<Vec<u8>>| EncodedRrset {
        rtype: rtype.0,
        bodies: (rdatas.iter())
            .map(|r| {
                let mut body = Vec::new();
                push_body(&mut body, rtype, ttl, r);
                body.into_boxed_slice()
            })
            .collect(),
        additional: Vec::new(),
        signatures: Arc::default(),
    };
    let ksks = || {
        signing
            .keys
            .iter()
            .filter(|k| k.role == KeyRole::KeySigning)
    };
    let sets = [
        encode(
            RecordType::DNSKEY,
            signing.keys.iter().map(KeyPair::dnskey_rdata).collect(),
        ),
        encode(
            RecordType::CDS,
            ksks().map(|k| k.ds_rdata(&origin)).collect(),
        ),
        encode(
            RecordType::CDNSKEY,
            ksks().map(KeyPair::dnskey_rdata).collect(),
        ),
    ];
    if let Some(NameNode::Static(apex)) = answers.names.get_mut(&origin) {
        apex.extend(sets);
    }
}

/// Whether `name` lies strictly below one of the zone's delegation points (glue, which is
/// not the zone's own data and is never signed).
fn below_a_cut(answers: &ZoneAnswers, name: &[u8]) -> bool {
    if answers.delegations.is_empty() {
        return false;
    }
    let mut at = 0usize;
    while let Some(&len) = name.get(at) {
        if len == 0 {
            break;
        }
        at += 1 + usize::from(len);
        if answers.delegations.contains_key(&name[at..]) {
            return true;
        }
    }
    false
}

/// Signs every static set the zone owns (not glue below a delegation).
fn sign_static(answers: &mut ZoneAnswers, signer: &mut Signer) {
    let owners: Vec<Box<[u8]>> = answers.names.keys().cloned().collect();
    for owner in owners {
        if below_a_cut(answers, &owner) {
            continue;
        }
        if let Some(NameNode::Static(sets)) = answers.names.get_mut(&owner) {
            for set in sets.iter_mut() {
                set.signatures = signer.sign_bodies(&owner, set.rtype, &set.bodies);
            }
        }
    }
}

/// Signs every steered answer: each family's record sets a client can be sent. An answer
/// the name's previous table had keeps its signatures while they are kept (a health change
/// signs only the answers it made new); a table whose answers are the previous ones keeps
/// them all.
fn sign_steered(answers: &mut ZoneAnswers, signer: &mut Signer, previous: Option<&Snapshot>) {
    let before = previous.and_then(|p| p.zone(&answers.origin));
    for (owner, node) in answers.names.iter_mut() {
        let NameNode::Steered(table) = node else {
            continue;
        };
        let old = before
            .and_then(|z| z.steered(owner))
            .filter(|t| t.signatures.len() == t.answers.len() && !t.answers.is_empty());
        if let Some(old) = old.filter(|t| Arc::ptr_eq(&t.answers, &table.answers)) {
            table.signatures = Arc::clone(&old.signatures);
            continue;
        }
        let old_index: HashMap<&AnswerSet, usize> = old
            .map(|t| t.answers.iter().enumerate().map(|(i, a)| (a, i)).collect())
            .unwrap_or_default();
        let mut signatures: Vec<Option<AnswerSignatures>> = (table.answers.iter())
            .map(|answer| {
                let kept = old_index.get(answer);
                kept.and_then(|&i| old.and_then(|t| t.signatures.get(i)))
                    .cloned()
            })
            .collect();
        let todo: Vec<usize> = (0..signatures.len())
            .filter(|&i| signatures[i].is_none())
            .collect();
        for (i, signed) in sign_answers(signer, owner, &table.answers, &todo) {
            signatures[i] = Some(signed);
        }
        table.signatures = signatures
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
    }
}

/// Answers signed per part of the work: enough to be worth a thread.
const ANSWERS_PER_PART: usize = 64;

/// Signs the answers at `todo` (indices into `answers`), on every core when there are
/// many (a first build signs every answer of every name).
fn sign_answers(
    signer: &mut Signer,
    owner: &[u8],
    answers: &[AnswerSet],
    todo: &[usize],
) -> Vec<(usize, AnswerSignatures)> {
    let sign = |signer: &mut Signer, i: usize| {
        let answer = &answers[i];
        let families = [
            sign_family(signer, owner, RecordType::A, &answer.a),
            sign_family(signer, owner, RecordType::AAAA, &answer.aaaa),
        ];
        (i, AnswerSignatures { families })
    };
    let parts = crate::parallel::workers().min(todo.len() / ANSWERS_PER_PART);
    if parts < 2 {
        return todo.iter().map(|&i| sign(signer, i)).collect();
    }
    let chunks: Vec<&[usize]> = todo.chunks(todo.len().div_ceil(parts)).collect();
    let shared = &*signer;
    let results = crate::parallel::each(chunks, |chunk| {
        let mut part = shared.fork();
        let signed: Vec<_> = chunk.iter().map(|&i| sign(&mut part, i)).collect();
        (signed, part.cache.by_rrset, part.made)
    });
    let mut out = Vec::with_capacity(todo.len());
    for (signed, cache, made) in results {
        out.extend(signed);
        signer.cache.by_rrset.extend(cache);
        signer.made += made;
    }
    out
}

/// The signatures of every record set one family's answer can send, sorted by (variant,
/// sent) as they are looked up.
fn sign_family(
    signer: &mut Signer,
    owner: &[u8],
    rtype: RecordType,
    answer: &FamilyAnswer,
) -> Vec<SignedSubset> {
    if answer.servfail || answer.nodes.is_empty() {
        return Vec::new();
    }
    let sets = sent_sets(answer);
    let variants = std::iter::once(&answer.bodies).chain(answer.carriers.iter().map(|(_, b)| b));
    let mut out = Vec::new();
    for (variant, bodies) in variants.enumerate() {
        for &sent in &sets {
            let chosen: Vec<Box<[u8]>> = (0..bodies.len().min(128))
                .filter(|&i| sent & (1u128 << i) != 0)
                .map(|i| bodies[i].clone())
                .collect();
            if chosen.is_empty() {
                continue;
            }
            out.push(SignedSubset {
                variant: variant as u16,
                sent,
                signatures: signer.sign_bodies(owner, rtype.0, &chosen),
            });
        }
    }
    out.sort_by_key(|s| (s.variant, s.sent));
    out
}

/// Every set of positions (in `answer.nodes`) a client can be sent, as bits: each draw a
/// spread group can give (members that can give a network up make smaller draws possible),
/// times each way a staged drain can hand networks to the standbys. Mirrors
/// [`FamilyBodies::of`]; at most [`MAX_SIGNED_SETS`].
pub(crate) fn sent_sets(answer: &FamilyAnswer) -> Vec<u128> {
    let nodes = answer.nodes.len().min(128);
    let group = answer.draw.len().min(MAX_DRAW).min(nodes);
    let mut group_sets: Vec<u128> = vec![0];
    if group > 0 {
        let drained = answer
            .draw
            .iter()
            .take(group)
            .filter(|m| m.drained > 0)
            .count();
        let most = usize::from(answer.drawn).min(group);
        let fewest = if drained == 0 {
            most
        } else {
            most.min(group - drained).max(1)
        };
        group_sets = subsets_of_sizes(group, fewest..=most, MAX_SIGNED_SETS);
    }
    let after = if answer.yielding.is_empty() {
        nodes.saturating_sub(group)
    } else {
        answer.yielding.len()
    };
    let yielding: Vec<usize> = (0..after)
        .filter(|&i| answer.yielding.get(i).is_some_and(|m| m.drained > 0))
        .collect();
    if yielding.len() > MAX_YIELDING {
        tracing::warn!(
            limit = MAX_YIELDING,
            "more nodes drain in stages after a spread group than are signed for; some sets go out unsigned"
        );
    }
    let mut after_sets = Vec::new();
    for choice in 0u64..(1u64 << yielding.len().min(MAX_YIELDING)) {
        let mut bits = 0u128;
        let mut standby = group + after;
        for i in 0..after {
            let mut position = group + i;
            let gives_up = yielding
                .iter()
                .position(|&y| y == i)
                .is_some_and(|k| choice & (1 << k) != 0);
            if gives_up && standby < nodes {
                position = standby;
                standby += 1;
            }
            if position < 128 {
                bits |= 1u128 << position;
            }
        }
        after_sets.push(bits);
    }
    let mut sets: Vec<u128> = Vec::new();
    'all: for g in &group_sets {
        for a in &after_sets {
            if sets.len() == MAX_SIGNED_SETS {
                tracing::warn!(
                    limit = MAX_SIGNED_SETS,
                    "a spread answer can send more record sets than are signed; the rest go out unsigned"
                );
                break 'all;
            }
            sets.push(g | a);
        }
    }
    sets.sort_unstable();
    sets.dedup();
    sets
}

/// Every subset of `0..n` whose size is in `sizes`, as bits, at most `limit` of them.
fn subsets_of_sizes(n: usize, sizes: std::ops::RangeInclusive<usize>, limit: usize) -> Vec<u128> {
    let mut out = Vec::new();
    for size in sizes {
        // Positions of the chosen members, advanced like an odometer.
        let mut chosen: Vec<usize> = (0..size).collect();
        loop {
            if out.len() == limit {
                return out;
            }
            out.push(chosen.iter().fold(0u128, |bits, &i| bits | 1u128 << i));
            let Some(k) = (0..size).rev().find(|&k| chosen[k] < n - size + k) else {
                break;
            };
            chosen[k] += 1;
            for j in k + 1..size {
                chosen[j] = chosen[j - 1] + 1;
            }
        }
    }
    out
}

/// The zone's NSEC chain: every name with records (static or steered, not glue) and every
/// delegation point, in canonical order, each naming the next (the last the apex), with the
/// types it has; TTL the SOA's negative TTL (RFC 9077).
fn nsec_chain(answers: &ZoneAnswers, zone: &Zone, signer: &mut Signer) -> Vec<SignedNsec> {
    let mut owners: Vec<(Box<[u8]>, Vec<u16>)> = Vec::new();
    for (owner, node) in &answers.names {
        if below_a_cut(answers, owner) {
            continue;
        }
        let types = match node {
            NameNode::EmptyNonTerminal => continue,
            NameNode::Static(sets) => sets.iter().map(|s| s.rtype).collect(),
            NameNode::Steered(table) => {
                let has = |family: fn(&AnswerSet) -> &FamilyAnswer| {
                    table.answers.iter().any(|a| !family(a).nodes.is_empty())
                };
                let mut types = Vec::new();
                if has(|a| &a.a) {
                    types.push(RecordType::A.0);
                }
                if has(|a| &a.aaaa) {
                    types.push(RecordType::AAAA.0);
                }
                types
            }
        };
        owners.push((owner.clone(), types));
    }
    for cut in answers.delegations.keys() {
        if !below_a_cut(answers, cut) {
            owners.push((cut.clone(), vec![RecordType::NS.0]));
        }
    }
    owners.sort_by(|a, b| canonical_cmp(&a.0, &b.0));
    let ttl = zone.soa.negative_ttl();
    let mut chain = Vec::with_capacity(owners.len());
    for (i, (owner, types)) in owners.iter().enumerate() {
        let next = &owners[(i + 1) % owners.len()].0;
        let rdata = nsec_rdata(next, types);
        let mut body = Vec::new();
        push_body(&mut body, RecordType::NSEC, ttl, &rdata);
        let signatures = signer.sign(owner, RecordType::NSEC.0, ttl, vec![rdata]);
        chain.push(SignedNsec {
            owner: owner.clone(),
            body: body.into_boxed_slice(),
            signatures,
        });
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::draw::DrawMember;

    fn member(drained: u8) -> DrawMember {
        DrawMember {
            key: u64::from(drained) + 7,
            weight: 1000,
            drained,
        }
    }

    fn family(
        nodes: usize,
        draw: Vec<DrawMember>,
        drawn: u8,
        yielding: Vec<DrawMember>,
    ) -> FamilyAnswer {
        FamilyAnswer {
            nodes: (0..nodes).collect(),
            bodies: Vec::new(),
            servfail: false,
            carriers: Vec::new(),
            draw,
            drawn,
            yielding,
        }
    }

    /// Every set a client network is sent is among the signed sets: drawn over many
    /// networks with partial drains in the group and after it.
    #[test]
    fn every_draw_is_signed() {
        let answers = [
            family(3, Vec::new(), 0, Vec::new()),
            family(6, vec![member(0); 4], 2, Vec::new()),
            family(
                7,
                vec![member(0), member(50), member(100), member(0)],
                2,
                vec![member(30)],
            ),
            family(
                8,
                vec![member(40), member(60)],
                1,
                vec![member(0), member(50)],
            ),
        ];
        for answer in &answers {
            let sets = sent_sets(answer);
            assert!(!sets.is_empty());
            for network in 0..20_000u64 {
                let sent = FamilyBodies::of(answer, (0, &[]), network.wrapping_mul(0x9E37_79B9));
                let bits = sent.sent_bits();
                assert!(
                    sets.binary_search(&bits).is_ok(),
                    "{bits:b} not in {sets:?}"
                );
            }
        }
        assert_eq!(sent_sets(&answers[1]).len(), 6, "C(4, 2)");
    }

    #[test]
    fn subsets_count_as_binomials() {
        assert_eq!(subsets_of_sizes(32, 2..=2, 10_000).len(), 496);
        assert_eq!(subsets_of_sizes(5, 1..=3, 10_000).len(), 5 + 10 + 10);
        assert_eq!(subsets_of_sizes(5, 0..=0, 10).len(), 1);
    }
}
