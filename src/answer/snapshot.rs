//! The snapshot: everything a query reads, built together and swapped as one, and the
//! selection of a steered answer for a client (indexing only: ranking and picking happened
//! when it was built).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::draw::{DrawMember, MAX_DRAW, NETWORK_BITS, draw, gives_up, network_of};
use crate::explain::{ExplainError, Explanation, LiveState};
use crate::geo::{AsnDb, AsnLookup, GeoDb, Located};
use crate::net::Family;
use crate::net::subnets::SubnetRules;
use crate::policy::{NodeId, RecordType};
use crate::runs::RunArray;
use crate::steer::Availability;
use crate::steer::regions::RankedStart;
use crate::steer::table::column_of;

/// Everything a query reads, built together and swapped as one.
#[derive(Debug)]
pub struct Snapshot {
    /// Zones, most specific origin first, so the first suffix match is the closest enclosing one.
    pub zones: Vec<ZoneAnswers>,
    /// The GeoIP database the steered tables were indexed against.
    pub geo: Arc<GeoDb>,
    /// The ASN database, when nodes have carrier addresses to choose between.
    pub asn: Option<Arc<AsnDb>>,
    /// What `_explain` TXT queries explain from: the inputs of this snapshot.
    pub explain: Option<Arc<ExplainView>>,
    /// Per-zone query and answer counters, by policy zone index; registered once per load
    /// and shared by every snapshot of it (empty: nothing counted).
    pub zone_counters: Arc<Vec<crate::metrics::ZoneCounters>>,
}

/// The inputs behind a snapshot, kept for explaining decisions (never read by ordinary
/// queries).
#[derive(Debug)]
pub struct ExplainView {
    /// The zones.
    pub zones: Arc<Vec<crate::policy::Zone>>,
    /// Measurements per zone.
    pub latency: Arc<Vec<crate::latency::ZoneLatency>>,
    /// Hysteresis state.
    pub damping: Arc<crate::steer::DampingState>,
    /// Availability per zone and node.
    pub availability: Vec<Vec<Availability>>,
    /// Carrier lines found down per zone and node (bit `i`: the node's `i`-th address).
    pub down_lines: Vec<Vec<u64>>,
}

/// The node availability and carrier lines down (by zone, by node) a snapshot was built
/// with.
pub(crate) type BuiltWith<'a> = (&'a [Vec<Availability>], &'a [Vec<u64>]);

impl Snapshot {
    /// The node states these answers were built with (none for a bare build).
    pub(crate) fn built_with(&self) -> Option<BuiltWith<'_>> {
        let explain = self.explain.as_deref()?;
        Some((&explain.availability, &explain.down_lines))
    }

    /// The answers of the zone of `origin` (lowercase wire form).
    pub(crate) fn zone(&self, origin: &[u8]) -> Option<&ZoneAnswers> {
        self.zones.iter().find(|z| *z.origin == *origin)
    }

    /// Explains the answer `name` gets for a client (an ECS subnet's address when there is
    /// one) from the inputs these tables were built from: what the admin interface and
    /// `_explain` both show.
    pub fn explain(&self, name: &str, client: IpAddr) -> Result<Explanation, ExplainError> {
        let view = self.explain.as_ref().ok_or(ExplainError::NoInputs)?;
        let mut explained =
            crate::explain::explain(&view.zones, &self.geo, name, client, |zone| LiveState {
                availability: view.availability.get(zone).map(Vec::as_slice),
                latency: view.latency.get(zone),
                damping: Some((&view.damping, zone)),
            })?;
        self.explain_served(view, name, crate::net::unmap(client), &mut explained);
        Ok(explained)
    }

    /// What the explanation's ranking cannot tell: the answer as served (the draw of a
    /// spread group for this client's network) and the carrier lines of its nodes.
    fn explain_served(
        &self,
        view: &ExplainView,
        name: &str,
        client: IpAddr,
        out: &mut Explanation,
    ) {
        let Ok((zi, si)) = crate::explain::find_steered(&view.zones, name) else {
            return;
        };
        let Some(zone) = view.zones.get(zi) else {
            return;
        };
        let wanted = &zone.steered[si].name;
        let table = self.zones.iter().filter(|z| z.index == zi).find_map(|z| {
            match z.names.get(&wanted.to_wire()[..]) {
                Some(NameNode::Steered(table)) => Some(table),
                _ => None,
            }
        });
        let Some(table) = table else {
            return;
        };
        let served = table.answer_for(client, &self.geo, self.asn.as_deref(), [true, true]);
        let names = |ids: &mut dyn Iterator<Item = NodeId>| -> Vec<String> {
            ids.filter_map(|id| zone.nodes.get(id).map(|n| n.name.clone()))
                .collect()
        };
        let mut answered: Vec<NodeId> = Vec::new();
        for (family, slot) in served
            .families
            .iter()
            .zip([&mut out.answer_v4, &mut out.answer_v6])
        {
            let Some(family) = family else { continue };
            answered.extend(family.nodes());
            if family.answer.servfail {
                continue;
            }
            *slot = names(&mut family.nodes());
            if out.spread.is_none() && !family.answer.draw.is_empty() {
                let group = family.answer.nodes.iter().take(family.answer.draw.len());
                let prefix = NETWORK_BITS[usize::from(client.is_ipv6())];
                out.spread = Some(format!(
                    "group {} by weight; this client's /{prefix} draws {}",
                    names(&mut group.copied()).join(", "),
                    names(&mut family.nodes()).join(", "),
                ));
            }
        }
        let down = view.down_lines.get(zi);
        answered.sort_unstable();
        answered.dedup();
        for id in answered {
            let Some(node) = zone.nodes.get(id) else {
                continue;
            };
            let mask = down.and_then(|d| d.get(id)).copied().unwrap_or(0);
            for (i, address) in node.checked_lines().iter().enumerate() {
                let asn = node
                    .carriers
                    .iter()
                    .find(|(a, _)| a == address)
                    .map(|(_, n)| *n);
                out.lines.push(format!(
                    "{} via {address}{}: {}",
                    node.name,
                    asn.map_or(String::new(), |n| format!(" (AS{n})")),
                    if mask & (1u64 << i) != 0 {
                        "down"
                    } else {
                        "up"
                    },
                ));
            }
        }
    }

    /// Finds the zone enclosing a lowercase wire name, with the offset of the zone's origin
    /// inside that name (a label boundary), or `None` when the name is not ours.
    pub fn find_zone(&self, name: &[u8], labels: &[u8]) -> Option<(&ZoneAnswers, usize)> {
        self.zones.iter().find_map(|zone| {
            labels
                .iter()
                .map(|&o| o as usize)
                .find(|&o| name[o..] == *zone.origin)
                .map(|o| (zone, o))
        })
    }
}

/// One pre-encoded record set: bodies (type … RDATA) to copy after an owner pointer.
#[derive(Debug, Clone, Default)]
pub struct EncodedRrset {
    /// Record type.
    pub rtype: u16,
    /// Each record's body.
    pub bodies: Vec<Box<[u8]>>,
    /// Additional-section data (RFC 1034 §4.3.2), per body in order: the A/AAAA bodies the
    /// zone holds for the name that record points to (NS, MX and SRV targets; glue for a
    /// delegation). Empty for other types and for targets the zone has no addresses for.
    pub additional: Vec<Vec<Box<[u8]>>>,
    /// RRSIG bodies over the set, sent after it with the DO bit (empty: zone not signed).
    pub signatures: Signatures,
}

impl EncodedRrset {
    /// Where the target name starts inside the RDATA of a record of this type, for the
    /// types whose additional data is the target's addresses.
    pub fn target_offset(&self) -> Option<usize> {
        match RecordType(self.rtype) {
            RecordType::NS => Some(0),
            RecordType::MX => Some(2),
            RecordType::SRV => Some(6),
            _ => None,
        }
    }
}

/// A delegation point: a referral's NS set, with glue for in-zone name servers as its
/// additional data.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// The NS records.
    pub ns: EncodedRrset,
}

/// What lives at one name of a zone.
#[derive(Debug)]
pub enum NameNode {
    /// Static record sets (the apex SOA and NS included).
    Static(Vec<EncodedRrset>),
    /// A name answered per client.
    Steered(SteeredTable),
    /// A name with nothing of its own but names below it: NODATA, not NXDOMAIN.
    EmptyNonTerminal,
}

/// Result of looking a name up inside its zone.
#[derive(Debug)]
pub enum NameLookup<'a> {
    /// The name exists.
    Found(&'a NameNode),
    /// It does not, and a wildcard answers for it (RFC 4592): the wildcard's node and name.
    Wildcard(&'a NameNode, &'a [u8]),
    /// The name is at or below a delegation; the offset is where the cut's name starts.
    Referral(&'a Delegation, usize),
    /// No such name.
    NxDomain,
}

/// One zone's answers.
#[derive(Debug)]
pub struct ZoneAnswers {
    /// Position of the zone in the policy (zones here are sorted by origin length instead).
    pub index: usize,
    /// Lowercase wire form of the origin.
    pub origin: Box<[u8]>,
    /// Every name in the zone, keyed by lowercase wire form.
    pub names: HashMap<Box<[u8]>, NameNode>,
    /// Delegation points, keyed by lowercase wire form.
    pub delegations: HashMap<Box<[u8]>, Delegation>,
    /// Wildcards (RFC 4592): the name a wildcard is directly below (`edge` for `*.edge`) →
    /// the wildcard's own name, a key of `names`.
    pub wildcards: HashMap<Box<[u8]>, Box<[u8]>>,
    /// The SOA body as served at the apex.
    pub soa: Box<[u8]>,
    /// The SOA body for negative answers, its TTL the RFC 2308 negative TTL.
    pub negative_soa: Box<[u8]>,
    /// Signatures and denial records, when the zone is signed.
    pub signed: Option<ZoneSigned>,
}

/// What a signed zone adds to its answers for clients that set the DO bit: the RRSIGs of
/// the negative SOA and the NSEC chain (every other RRSIG sits beside the set it covers).
#[derive(Debug, Clone, Default)]
pub struct ZoneSigned {
    /// RRSIG bodies over the SOA as negative answers carry it (its TTL differs).
    pub negative_soa_signatures: Signatures,
    /// The NSEC chain: every owner with records (and every delegation point), in canonical
    /// order, each with its NSEC body and signatures.
    pub chain: Arc<[SignedNsec]>,
    /// When the signatures hold: the publisher signs again when they are due.
    pub validity: crate::dnssec::Validity,
    /// Signatures made for this snapshot by what they cover, for the next build to keep.
    pub(crate) cache: Arc<SignatureCache>,
}

/// RRSIG bodies (type … RDATA) over one RRset, one per signing key.
pub type Signatures = Arc<[Box<[u8]>]>;

/// One NSEC record of a zone's chain.
#[derive(Debug, Clone)]
pub struct SignedNsec {
    /// Its owner, lower-case wire form.
    pub owner: Box<[u8]>,
    /// The NSEC body (type … RDATA).
    pub body: Box<[u8]>,
    /// RRSIG bodies over it.
    pub signatures: Signatures,
}

/// Signatures by the RRset they cover (owner, type, TTL and RDATA in canonical form), and
/// the keys that made them.
#[derive(Debug, Default)]
pub(crate) struct SignatureCache {
    /// Key tag, flags and whether it signs, of each key, in order.
    pub(crate) keys: Vec<(u16, u16, bool)>,
    /// The validity every signature here was made with.
    pub(crate) validity: Option<crate::dnssec::Validity>,
    /// Canonical RRset → RRSIG bodies.
    pub(crate) by_rrset: HashMap<Box<[u8]>, Signatures>,
}

impl ZoneSigned {
    /// The NSEC owned by `name` (lower-case wire form), if there is one.
    pub fn nsec_at(&self, name: &[u8]) -> Option<&SignedNsec> {
        self.chain
            .binary_search_by(|n| crate::dnssec::canonical_cmp(&n.owner, name))
            .ok()
            .and_then(|i| self.chain.get(i))
    }

    /// The NSEC whose span covers `name` (the last owner before it in canonical order): it
    /// proves the name absent, or an empty non-terminal.
    pub fn nsec_covering(&self, name: &[u8]) -> Option<&SignedNsec> {
        let at = match self
            .chain
            .binary_search_by(|n| crate::dnssec::canonical_cmp(&n.owner, name))
        {
            Ok(i) => i,
            Err(0) => self.chain.len().checked_sub(1)?,
            Err(i) => i - 1,
        };
        self.chain.get(at)
    }
}

impl ZoneAnswers {
    /// The table of the steered name `owner` (lowercase wire form), if it is one.
    pub(crate) fn steered(&self, owner: &[u8]) -> Option<&SteeredTable> {
        match self.names.get(owner) {
            Some(NameNode::Steered(t)) => Some(t),
            _ => None,
        }
    }

    /// Looks up a lowercase wire name known to be in this zone; `labels` are its label offsets
    /// and `origin_offset` where the origin starts.
    pub fn lookup(&self, name: &[u8], labels: &[u8], origin_offset: usize) -> NameLookup<'_> {
        if !self.delegations.is_empty() {
            // The topmost cut wins: walk from just below the apex down to the name itself.
            for &o in labels.iter().rev() {
                let o = o as usize;
                if o >= origin_offset {
                    continue;
                }
                if let Some(d) = self.delegations.get(&name[o..]) {
                    return NameLookup::Referral(d, o);
                }
            }
        }
        match self.names.get(name) {
            Some(node) => NameLookup::Found(node),
            None => self
                .wildcard_for(name, labels, origin_offset)
                .map_or(NameLookup::NxDomain, |(node, wildcard)| {
                    NameLookup::Wildcard(node, wildcard)
                }),
        }
    }

    /// The wildcard that answers a name the zone does not have (RFC 4592 §3.3.1): the one
    /// directly below the name's closest encloser, if there is one. A nearer existing
    /// ancestor without a wildcard means NXDOMAIN, whatever wildcards lie further up.
    fn wildcard_for(
        &self,
        name: &[u8],
        labels: &[u8],
        origin_offset: usize,
    ) -> Option<(&NameNode, &[u8])> {
        if self.wildcards.is_empty() {
            return None;
        }
        let ancestor = name.get(self.closest_encloser(name, labels, origin_offset)..)?;
        let wildcard = self.wildcards.get(ancestor)?;
        let (key, node) = self.names.get_key_value(&wildcard[..])?;
        Some((node, &key[..]))
    }

    /// Where the closest encloser of a name the zone does not have starts in it: its
    /// nearest existing ancestor (empty non-terminals and the apex included).
    pub fn closest_encloser(&self, name: &[u8], labels: &[u8], origin_offset: usize) -> usize {
        for &o in labels.iter().skip(1) {
            let o = o as usize;
            if o >= origin_offset {
                break;
            }
            if name.get(o..).is_some_and(|a| self.names.contains_key(a)) {
                return o;
            }
        }
        origin_offset
    }
}

/// Interned answer for one (rule, place): what A and AAAA queries get. Shared: a build
/// keeping the answers of the build before copies pointers, not records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerSet(Arc<FamilyAnswers>);

impl AnswerSet {
    /// The answer of A queries `a` and of AAAA queries `aaaa`.
    pub fn new(a: FamilyAnswer, aaaa: FamilyAnswer) -> Self {
        AnswerSet(Arc::new(FamilyAnswers { a, aaaa }))
    }
}

impl std::ops::Deref for AnswerSet {
    type Target = FamilyAnswers;

    fn deref(&self) -> &FamilyAnswers {
        &self.0
    }
}

/// Both families' answers of an [`AnswerSet`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FamilyAnswers {
    /// For A queries.
    pub a: FamilyAnswer,
    /// For AAAA queries.
    pub aaaa: FamilyAnswer,
}

/// One address family's answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FamilyAnswer {
    /// Nodes answered, best first.
    pub nodes: Vec<NodeId>,
    /// Their record bodies, in the same order (TTL already degraded where it applies).
    pub bodies: Vec<Box<[u8]>>,
    /// Every allowed node is down and the name fails closed: answer SERVFAIL.
    pub servfail: bool,
    /// Bodies for clients of a carrier: `(AS number, bodies)`, where a node with an address
    /// on that carrier answers with it. Empty when no answered node has one.
    pub carriers: Vec<(u32, Vec<Box<[u8]>>)>,
    /// A spread group: the first `draw.len()` of `nodes` (and of the bodies) are its members,
    /// of which a client's network gets `drawn`; the rest follow them in every answer.
    /// Empty: every node is answered.
    pub draw: Vec<DrawMember>,
    /// How many members a network gets.
    pub drawn: u8,
    /// Staged drains of the nodes after the group (`nodes[draw.len()..]`, as many as
    /// answered): a node giving up a client's network is replaced by the next standby, the
    /// nodes after these. Empty when none of them is draining.
    pub yielding: Vec<DrawMember>,
}

/// The precomputed answers of one steered name. Cloned by reference: a build whose
/// inputs for the name did not change ([`SteeredTable::node_states`], the same ranking)
/// keeps the table.
#[derive(Debug, Clone)]
pub struct SteeredTable {
    /// Distinct answers.
    pub answers: Arc<[AnswerSet]>,
    /// Ranking class → index into `answers`: what a health change rebuilds.
    pub class_answer: Arc<[u32]>,
    /// `[rule][column]` → ranking class. Rules include a final pseudo-rule for the `default`
    /// answer; columns are the places, a pseudo-place for unlocated clients, then the
    /// measured prefix groups, in runs. Shared by every table built from the same rankings.
    pub table: Arc<Vec<RunArray>>,
    /// First geo-matching rule per place (same indexing as a row of `table`).
    pub geo_rule: Arc<RunArray>,
    /// Subnet conditions of the rules.
    pub subnets: Arc<SubnetRules>,
    /// Measured prefix groups: a client inside one gets that group's column.
    pub groups: Arc<SubnetRules>,
    /// Number of place columns (the database's places and the unlocated pseudo-place);
    /// group columns follow them.
    pub place_columns: usize,
    /// Head (classes whose rankings start alike) → index into `answers` when every class of
    /// it has that answer now, else [`CLASS_SPLIT`].
    pub head_answer: Arc<[u32]>,
    /// Place column → head for clients without a subnet rule or group: the common case is
    /// the database's shared address → place lookup and one read here, and the scope is
    /// the database network's.
    pub located_heads: Arc<RunArray>,
    /// Answers of cells whose class is [`CLASS_SPLIT`] now: `[rule][column]`, empty for
    /// rules without such cells.
    pub split_rows: Arc<[RunArray]>,
    /// Whether the answer can differ between places: if not, the database network says
    /// nothing about how widely an answer may be cached.
    pub depends_on_place: bool,
    /// What the table was picked for: each node the name can answer with, its availability
    /// and its carrier lines down.
    pub(crate) node_states: Arc<[NodeState]>,
    /// What each answer was made from, by index: a later build with some nodes changed
    /// keeps the answers of classes that do not hold them and interns new picks among these.
    pub(crate) answer_keys: Arc<AnswerKeys>,
    /// By the hash of each answer's key, its index: a later build interns new picks among
    /// these without hashing every key again.
    pub(crate) answer_index: Arc<AnswerIndex>,
    /// By row, the runs of split classes a query can read (empty when none is split): a
    /// later build adds and drops those of classes split or decided anew, instead of
    /// reading whole rows.
    pub(crate) split_runs: Arc<[Vec<SplitRun>]>,
    /// By row group, the healthy starts its split cells were answered from (empty when
    /// none is split): a later build ranks again only the columns a changed node reaches.
    pub(crate) healthy_starts: Arc<[HealthyStarts]>,
    /// In a signed zone, the RRSIGs of each answer (by index into `answers`); empty
    /// otherwise.
    pub signatures: Arc<[AnswerSignatures]>,
}

/// The RRSIGs of one steered answer's RRsets: per family (A, AAAA), one entry for every
/// set of records a client can be sent (each carrier's bodies, each draw of a spread group).
#[derive(Debug, Clone, Default)]
pub struct AnswerSignatures {
    /// Per family, sorted by (variant, sent).
    pub families: [Vec<SignedSubset>; 2],
}

/// The signatures over one set of records a family's answer sends.
#[derive(Debug, Clone)]
pub struct SignedSubset {
    /// Which bodies: 0 the default, `i + 1` those of the family's `i`-th carrier.
    pub variant: u16,
    /// Positions (in the answer's nodes) sent, as bits.
    pub sent: u128,
    /// RRSIG bodies.
    pub signatures: Signatures,
}

impl AnswerSignatures {
    /// The signatures over what `family` sends.
    pub fn of(&self, family: usize, sent: &FamilyBodies) -> &[Box<[u8]>] {
        let Some(list) = self.families.get(family) else {
            return &[];
        };
        let key = (sent.variant, sent.sent_bits());
        list.binary_search_by(|s| (s.variant, s.sent).cmp(&key))
            .ok()
            .and_then(|i| list.get(i))
            .map_or(&[], |s| &s.signatures[..])
    }
}

/// The healthy starts of one row group's split cells (see `steer`'s glossary).
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthyStarts {
    /// The starts, numbered.
    pub(crate) list: Arc<[RankedStart]>,
    /// Column → its start's number, [`NOT_RANKED`] where no cell of the group is split.
    pub(crate) of_column: RunArray,
    /// Starts from this number on list what a pick falls back to where none of a
    /// profile's candidates is up (down or full nodes): read whole.
    pub(crate) fallback_from: u32,
}

/// What was ranked ahead of one snapshot's steered tables (`answer::ahead`).
#[derive(Debug, Default)]
pub struct Ahead {
    /// By zone, then steered name, in policy order.
    pub(crate) zones: Vec<Vec<Option<Arc<AheadOfTable>>>>,
}

/// The starts ranked ahead of one table.
#[derive(Debug)]
pub(crate) struct AheadOfTable {
    /// The table's node states, by identity: the starts hold for that table alone.
    pub(crate) node_states: Arc<[NodeState]>,
    /// The ranking the table was picked from, by identity: the next ranking ahead of a
    /// table from it starts from these starts.
    pub(crate) rows: Arc<Vec<RunArray>>,
    /// By row group, the healthy starts of the columns where a class is split or one
    /// failure from it.
    pub(crate) groups: Vec<HealthyStarts>,
}

impl Ahead {
    /// The starts ranked ahead of `table`, steered name `name` of zone `zone`, if these
    /// were ranked for it.
    pub(super) fn of_table(
        &self,
        zone: usize,
        name: usize,
        table: &SteeredTable,
    ) -> Option<&[HealthyStarts]> {
        let entry = self.zones.get(zone)?.get(name)?.as_ref()?;
        Arc::ptr_eq(&entry.node_states, &table.node_states).then_some(&entry.groups[..])
    }

    /// How many starts were ranked ahead, over every table and row group.
    #[cfg(test)]
    pub(crate) fn starts(&self) -> usize {
        let tables = self.zones.iter().flatten().flatten();
        tables.flat_map(|t| &t.groups).map(|g| g.list.len()).sum()
    }
}

/// A run of one class in a row, where a query can read it: columns `start..end`, class.
pub(crate) type SplitRun = (u32, u32, u32);

/// `HealthyStarts::of_column` value of a column no split cell needed.
pub(crate) const NOT_RANKED: u32 = u32::MAX;

/// What each answer of a table was made from (its picks, carrier lines and spread, as
/// `build::answer_key` writes them), one key after another in one buffer: a later build
/// compares a new pick with a key in one slice, reading one place, and takes them all over
/// in one copy, where keys of their own would be a pointer chase each.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnswerKeys {
    words: Vec<u32>,
    /// Where each key's words end.
    ends: Vec<u32>,
}

impl AnswerKeys {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The words of key `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&[u32]> {
        let end = *self.ends.get(index)? as usize;
        let start =
            (index.checked_sub(1).and_then(|i| self.ends.get(i))).map_or(0, |&e| e as usize);
        self.words.get(start..end)
    }

    pub(crate) fn push(&mut self, key: &[u32]) {
        self.words.extend_from_slice(key);
        self.ends.push(self.words.len() as u32);
    }

    /// Keeps the keys `kept` (by index), in order.
    pub(crate) fn retain(&mut self, kept: &[bool]) {
        let mut retained = AnswerKeys::default();
        for (index, _) in kept.iter().enumerate().filter(|(_, k)| **k) {
            if let Some(key) = self.get(index) {
                retained.push(key);
            }
        }
        *self = retained;
    }
}

/// An answer key's hash → the index of the answer made from it. Two keys of one hash keep
/// the later one: the earlier is then made again when met, never confused with it.
pub(crate) type AnswerIndex = rustc_hash::FxHashMap<u64, u32>;

/// How one family's answer spreads over time and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Spread {
    /// The spread group drawn from (empty: none).
    pub(crate) group: Vec<NodeId>,
    /// Nodes that stand in, in order, for answered nodes after the group that give up a
    /// client's network in a staged drain (empty when none of them is draining).
    pub(crate) standby: Vec<NodeId>,
}

/// A node's state as a steered name's answers depend on it.
pub(crate) type NodeState = (NodeId, Availability, u64);

/// `class_answer` value: too many of the class's first nodes are down for it to decide, so
/// its cells are answered one by one (`split_rows`); `head_answer` value: the head's classes
/// differ now, so a client takes its place's class.
pub const CLASS_SPLIT: u32 = u32::MAX;

/// A steered answer chosen for one client, with its ECS scope in bits of the client family.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// The answer.
    pub answer: &'a AnswerSet,
    /// Its index in the table's answers.
    pub index: usize,
    /// Shortest prefix of the client address over which this answer holds, as far as the
    /// database and subnet rules can tell.
    pub scope: u8,
}

/// One family's answer for a client: the record bodies to send (its carrier's lines where
/// it has one) and, where the answer spreads, the members its network drew.
#[derive(Debug, Clone, Copy)]
pub struct FamilyBodies<'a> {
    /// The family's answer.
    pub answer: &'a FamilyAnswer,
    /// Bodies in the order of `answer.nodes`.
    bodies: &'a [Box<[u8]>],
    /// Which bodies: 0 the default, `i + 1` those of the `i`-th carrier.
    pub variant: u16,
    /// Positions in `answer.nodes` of what is sent, in order (the first `count`).
    order: [u8; MAX_SENT],
    count: u8,
}

/// Most records of one family an answer sends (`answers` is at most 64).
const MAX_SENT: usize = 64;

impl<'a> FamilyBodies<'a> {
    /// What `network` is sent: the group members it draws, then the nodes after the group,
    /// each replaced by the next standby where a staged drain gives the network up.
    pub(crate) fn of(
        answer: &'a FamilyAnswer,
        (variant, bodies): (u16, &'a [Box<[u8]>]),
        network: u64,
    ) -> Self {
        let mut order = [0u8; MAX_SENT];
        let mut count = 0usize;
        let group = answer.draw.len();
        if group > 0 {
            let mut drawn = [0u8; MAX_DRAW];
            let n = draw(&answer.draw, usize::from(answer.drawn), network, &mut drawn);
            order[..n].copy_from_slice(&drawn[..n]);
            count = n;
        }
        let after = if answer.yielding.is_empty() {
            answer.nodes.len().saturating_sub(group)
        } else {
            answer.yielding.len()
        };
        let mut standby = group + after;
        for (i, position) in (group..group + after).enumerate() {
            let mut position = position;
            if answer.yielding.get(i).is_some_and(|m| gives_up(m, network))
                && standby < answer.nodes.len()
            {
                position = standby;
                standby += 1;
            }
            if let Some(slot) = order.get_mut(count) {
                *slot = position as u8;
                count += 1;
            }
        }
        FamilyBodies {
            answer,
            bodies,
            variant,
            order,
            count: count as u8,
        }
    }

    /// Positions (in `answer.nodes`) of what is sent, in order.
    fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.order[..usize::from(self.count)]
            .iter()
            .map(|&i| usize::from(i))
    }

    /// The positions sent, as bits (what the answer's signatures are found by).
    pub fn sent_bits(&self) -> u128 {
        self.positions()
            .filter(|&i| i < 128)
            .fold(0, |bits, i| bits | 1u128 << i)
    }

    /// The bodies to send, in order.
    pub fn bodies(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.positions()
            .filter_map(|i| self.bodies.get(i).map(|b| &b[..]))
    }

    /// The nodes answered, in order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.positions()
            .filter_map(|i| self.answer.nodes.get(i).copied())
    }

    /// Whether nothing is sent.
    pub fn is_empty(&self) -> bool {
        self.positions().next().is_none()
    }
}

/// What a steered name answers one client for the families asked: each family's answer
/// and the bodies to send (carrier lines chosen for the client's network), and the scope
/// over which all of it holds.
#[derive(Debug, Clone, Copy)]
pub struct ClientAnswer<'a> {
    /// The answer's index in the table (where its signatures are).
    pub index: usize,
    /// Per family asked for (A, AAAA): its answer and the bodies to send.
    pub families: [Option<FamilyBodies<'a>>; 2],
    /// Shortest prefix of the client address over which this answer holds: the database
    /// network, subnet rules and groups, and the carrier's network where lines were chosen.
    pub scope: u8,
}

impl<'a> ClientAnswer<'a> {
    /// Every node allowed for the client is down and the name fails closed.
    pub fn servfail(&self) -> bool {
        self.families.iter().flatten().any(|f| f.answer.servfail)
    }
}

impl SteeredTable {
    /// The answer for `client` in the families asked (`[A, AAAA]`): the one place a steered
    /// answer and its scope are worked out. The ASN database is asked only when an answered
    /// node has carrier addresses. No allocation.
    pub fn answer_for(
        &self,
        client: IpAddr,
        geo: &GeoDb,
        asn: Option<&AsnDb>,
        asked: [bool; 2],
    ) -> ClientAnswer<'_> {
        let selection = self.select(client, geo);
        let answer = selection.answer;
        let mut scope = selection.scope;
        let network = network_of(client);
        let mut carrier: Option<AsnLookup> = None;
        let asked = [(asked[0], &answer.a), (asked[1], &answer.aaaa)];
        // A SERVFAIL answers nothing: no carrier to choose.
        let servfail = asked.iter().any(|(asked, f)| *asked && f.servfail);
        let families = asked.map(|(asked, family)| {
            if !asked {
                return None;
            }
            if family.carriers.is_empty() || servfail {
                return Some(FamilyBodies::of(family, (0, &family.bodies[..]), network));
            }
            let lookup = *carrier.get_or_insert_with(|| {
                asn.map_or(
                    AsnLookup {
                        asn: None,
                        prefix_len: 0,
                    },
                    |db| db.lookup(client),
                )
            });
            let bodies = lookup
                .asn
                .and_then(|number| family.carriers.iter().position(|(a, _)| *a == number))
                .and_then(|i| Some((i as u16 + 1, &family.carriers.get(i)?.1[..])))
                .unwrap_or((0, &family.bodies[..]));
            Some(FamilyBodies::of(family, bodies, network))
        });
        if let Some(lookup) = carrier {
            // The answer now also depends on the client's network.
            scope = scope.max(lookup.prefix_len);
        }
        if families
            .iter()
            .flatten()
            .any(|f| !f.answer.draw.is_empty() || !f.answer.yielding.is_empty())
        {
            // A spread answer holds for the network it was drawn by.
            let family = usize::from(client.is_ipv6());
            scope = scope
                .max(NETWORK_BITS[family])
                .min(Family::of(client).bits());
        }
        ClientAnswer {
            index: selection.index,
            families,
            scope,
        }
    }

    /// The answer through the client's place and rule: for subnet rules, prefix groups, and
    /// classes too short to decide now (split). Returns the answer and the scope the place allows.
    pub(crate) fn select_by_place(
        &self,
        located: Located,
        subnet_rule: Option<u32>,
        group: Option<u32>,
    ) -> (u32, u8) {
        let column = column_of(self.place_columns, located.place, group.map(|g| g as usize));
        let column = column.min(self.geo_rule.len().saturating_sub(1));
        let geo_rule = self.geo_rule.at_or(column, 0) as usize;
        let rule = subnet_rule.map_or(geo_rule, |r| (r as usize).min(geo_rule));
        // A group's answer holds across its prefix whatever the database says inside it.
        let scope = if group.is_none() {
            located.prefix_len
        } else {
            0
        };
        (self.cell_answer(rule, column), scope)
    }

    /// The answer of one cell (rule, column) now.
    pub(crate) fn cell_answer(&self, rule: usize, column: usize) -> u32 {
        let class = self.table.get(rule).map_or(0, |row| row.at_or(column, 0)) as usize;
        match self.class_answer.get(class).copied().unwrap_or(0) {
            CLASS_SPLIT => self
                .split_rows
                .get(rule)
                .map_or(0, |row| row.at_or(column, 0)),
            answer => answer,
        }
    }

    /// Selects the answer for a client address. Pure indexing, no allocation: one table
    /// lookup in the common case, the database and the rules' table otherwise.
    pub fn select(&self, ip: IpAddr, geo: &GeoDb) -> Selection<'_> {
        let (subnet_rule, subnet_scope) = self.subnets.lookup(ip);
        let (group, group_scope) = self.groups.longest(ip);
        let located = geo.locate(ip);
        let direct = if subnet_rule.is_none() && group.is_none() {
            let column = column_of(self.place_columns, located.place, None);
            self.located_heads
                .get(column)
                .and_then(|head| self.head_answer.get(head as usize))
                .filter(|&&answer| answer != CLASS_SPLIT)
                .map(|&answer| (answer, located.prefix_len))
        } else {
            None
        };
        let (id, located_scope) =
            direct.unwrap_or_else(|| self.select_by_place(located, subnet_rule, group));
        let id = id as usize;
        let place_scope = if self.depends_on_place {
            located_scope
        } else {
            0
        };
        Selection {
            answer: &self.answers[id],
            index: id,
            scope: place_scope
                .max(subnet_scope)
                .max(group_scope)
                .min(Family::of(ip).bits()),
        }
    }
}
