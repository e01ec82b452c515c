//! The validated, typed zone policy: what the rest of geosteer builds answers from.
//!
//! Every value here has been checked by `validate`; nothing downstream re-validates or needs
//! to report errors about policy content. No wire format and no hickory types live here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::geo::{Coordinates, GeoCode, GeoSet};
use crate::net::Prefix;

/// A fully-qualified domain name, lowercase, stored as its label list.
///
/// Lowercase because DNS comparisons are case-insensitive and the policy is matched against
/// lowercased query names; the case a client used is preserved separately, on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName {
    /// Labels from the leftmost to the rightmost, without the root label.
    labels: Vec<String>,
}

/// Why a string is not a usable domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A label between two dots is empty (`a..b`).
    #[error("empty label in '{0}'")]
    EmptyLabel(String),
    /// A label is longer than the 63 octets DNS allows.
    #[error("label '{0}' is longer than 63 characters")]
    LabelTooLong(String),
    /// The whole name is longer than the 255 octets DNS allows.
    #[error("name '{0}' is longer than 255 octets on the wire")]
    NameTooLong(String),
    /// A character that cannot appear in a host name or service label.
    #[error("invalid character {1:?} in name '{0}' (letters, digits, '-', '_' and '*' only)")]
    BadCharacter(String, char),
}

impl DomainName {
    /// The root name `.`.
    pub fn root() -> Self {
        Self { labels: Vec::new() }
    }

    /// Parses a name written in presentation form; a trailing dot is optional here, callers
    /// decide whether a relative name is acceptable before calling.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(Self::root());
        }
        let mut labels = Vec::new();
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel(text.to_string()));
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong(label.to_string()));
            }
            if let Some(bad) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')))
            {
                return Err(NameError::BadCharacter(text.to_string(), bad));
            }
            labels.push(label.to_ascii_lowercase());
        }
        let name = Self { labels };
        if name.wire_len() > 255 {
            return Err(NameError::NameTooLong(text.to_string()));
        }
        Ok(name)
    }

    /// The labels, leftmost first.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Length of the uncompressed wire form, root label included.
    pub fn wire_len(&self) -> usize {
        self.labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }

    /// The uncompressed, lowercase wire form (length-prefixed labels, then the root label).
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire_len());
        for label in &self.labels {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// True when `self` is `other` or lies below it.
    pub fn is_at_or_below(&self, other: &DomainName) -> bool {
        self.labels.len() >= other.labels.len()
            && self.labels[self.labels.len() - other.labels.len()..] == other.labels[..]
    }

    /// `relative` + `.` + `self`; `@` or an empty string means `self`.
    pub fn child(&self, relative: &str) -> Result<DomainName, NameError> {
        if relative == "@" || relative.is_empty() {
            return Ok(self.clone());
        }
        let rel = DomainName::parse(relative)?;
        let mut labels = rel.labels;
        labels.extend(self.labels.iter().cloned());
        let name = DomainName { labels };
        if name.wire_len() > 255 {
            return Err(NameError::NameTooLong(format!("{relative}.{self}")));
        }
        Ok(name)
    }

    /// The name with its leftmost label removed; `None` at the root.
    pub fn parent(&self) -> Option<DomainName> {
        if self.labels.is_empty() {
            None
        } else {
            Some(DomainName {
                labels: self.labels[1..].to_vec(),
            })
        }
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for label in &self.labels {
            write!(f, "{label}.")?;
        }
        Ok(())
    }
}

/// One zone, as one policy file describes it.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The file this zone came from, for messages to operators.
    pub source: PathBuf,
    /// The zone apex.
    pub origin: DomainName,
    /// TTL of records that do not set their own.
    pub default_ttl: u32,
    /// The start of authority: also what negative answers carry.
    pub soa: Soa,
    /// The apex NS set, served authoritatively.
    pub ns: Vec<DomainName>,
    /// Static record sets, at any name in the zone (the apex included).
    pub records: Vec<RecordSet>,
    /// Ingest nodes that steered names choose from, in declaration order.
    pub nodes: Vec<Node>,
    /// Names whose A/AAAA answers are computed per client.
    pub steered: Vec<SteeredName>,
    /// When the file sets no SOA serial: a hash of the file's text, so a reload can tell an
    /// edit (the serial must grow) from an unchanged file (the serial must stay).
    pub derived_serial_of: Option<u64>,
    /// In a fleet: how many vantage points must see a node down for it to be down.
    pub health_quorum: Quorum,
    /// How the zone is signed, when it is (`dnssec:`).
    pub dnssec: Option<Signing>,
}

/// A signed zone's keys and signature lifetime (`dnssec: {keys: DIR}`).
#[derive(Debug, Clone)]
pub struct Signing {
    /// The key directory, resolved against the policy file (watched for key rollovers).
    pub keys_dir: PathBuf,
    /// The zone's keys, key-signing keys first.
    pub keys: Arc<Vec<crate::dnssec::KeyPair>>,
    /// How long a signature holds, in seconds.
    pub lifetime: u32,
}

impl Signing {
    /// Default signature lifetime: two weeks, as BIND's and Knot's defaults are of that order.
    pub const DEFAULT_LIFETIME: u32 = 14 * 86_400;
}

impl Zone {
    /// Carries the SOA serial over from the previously loaded version of this zone when the
    /// operator sets none: kept when the file is unchanged, and otherwise made greater than
    /// the previous one in serial-number arithmetic (RFC 1982), even when the file's
    /// modification time went backwards (a restored backup, a clock step).
    pub fn carry_serial_from(&mut self, previous: &Zone) {
        let (Some(new), Some(old)) = (self.derived_serial_of, previous.derived_serial_of) else {
            return;
        };
        let before = previous.soa.serial;
        if new == old {
            self.soa.serial = before;
        } else if !serial_gt(self.soa.serial, before) {
            self.soa.serial = before.wrapping_add(1);
        }
    }
}

/// `a > b` in RFC 1982 serial-number arithmetic (32 bits).
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// SOA fields; names are absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Primary name server (MNAME).
    pub primary: DomainName,
    /// Responsible mailbox in name form (RNAME).
    pub contact: DomainName,
    /// Serial number; operators may set it, else it is derived from the file contents.
    pub serial: u32,
    /// Secondary refresh interval, seconds.
    pub refresh: u32,
    /// Secondary retry interval, seconds.
    pub retry: u32,
    /// Secondary expiry, seconds.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
    /// TTL of the SOA record itself.
    pub ttl: u32,
}

impl Soa {
    /// TTL of the SOA in a negative answer: the lesser of its TTL and MINIMUM (RFC 2308 §3).
    pub fn negative_ttl(&self) -> u32 {
        self.ttl.min(self.minimum)
    }
}

/// The record types a policy file can publish statically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Alias to another name.
    Cname(DomainName),
    /// Character strings, each at most 255 octets.
    Txt(Vec<Vec<u8>>),
    /// Mail exchanger.
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// Host name of the exchanger.
        exchange: DomainName,
    },
    /// Service location (RFC 2782).
    Srv {
        /// Lower is preferred.
        priority: u16,
        /// Relative weight among equal priorities.
        weight: u16,
        /// Service port.
        port: u16,
        /// Host providing the service.
        target: DomainName,
    },
    /// Certification authority authorization (RFC 8659).
    Caa {
        /// Flags octet (128 = critical).
        flags: u8,
        /// Property tag, e.g. `issue`.
        tag: String,
        /// Property value.
        value: String,
    },
    /// Name server; below the apex, a delegation.
    Ns(DomainName),
}

/// Record types are the wire's numbers; the policy names them by mnemonic.
pub use crate::wire::RecordType;

impl RecordData {
    /// The record type this data is published as.
    pub fn record_type(&self) -> RecordType {
        match self {
            RecordData::A(_) => RecordType::A,
            RecordData::Aaaa(_) => RecordType::AAAA,
            RecordData::Cname(_) => RecordType::CNAME,
            RecordData::Txt(_) => RecordType::TXT,
            RecordData::Mx { .. } => RecordType::MX,
            RecordData::Srv { .. } => RecordType::SRV,
            RecordData::Caa { .. } => RecordType::CAA,
            RecordData::Ns(_) => RecordType::NS,
        }
    }
}

/// All records of one type at one name.
#[derive(Debug, Clone)]
pub struct RecordSet {
    /// Owner name.
    pub name: DomainName,
    /// TTL shared by the set.
    pub ttl: u32,
    /// The records; all of the same type.
    pub data: Vec<RecordData>,
}

impl RecordSet {
    /// The type of every record in the set.
    pub fn record_type(&self) -> RecordType {
        self.data
            .first()
            .map(RecordData::record_type)
            .unwrap_or(RecordType(0))
    }
}

/// A node's role in failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// A primary ingest PoP.
    Core,
    /// A smaller primary PoP; ranked with core nodes.
    Edge,
    /// Idles until the primaries allowed for a client cannot fill the answer.
    Backup,
}

/// Administrative state, in octoDNS's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminStatus {
    /// Always answered, whatever checks say.
    Up,
    /// Never answered.
    Down,
    /// Follow health checks (up while no check exists).
    Obey,
}

/// Index of a node within its zone's `nodes`.
pub type NodeId = usize;

/// An ingest PoP.
#[derive(Debug, Clone)]
pub struct Node {
    /// Operator's name for the node, unique in the zone.
    pub name: String,
    /// Role in failover.
    pub tier: Tier,
    /// Where the node is, as a geo code: used by fences and rules.
    pub geo: GeoCode,
    /// Where the node is, on the globe: used for distance ranking.
    pub location: Coordinates,
    /// The node's addresses, in preference order; each family answers its own query type.
    pub addresses: Vec<IpAddr>,
    /// Tie-breaker and, later, share of traffic; higher is preferred.
    pub weight: u32,
    /// Operator's override of health state.
    pub status: AdminStatus,
    /// How the node's health is checked; `None` for `type: none` or no check at all.
    pub check: Option<HealthCheck>,
    /// Addresses on a named carrier: `(address, AS number)`. Clients of that carrier get that
    /// address instead of the node's first one of the family.
    pub carriers: Vec<(IpAddr, u32)>,
    /// The load at which the node is full, and the one it must fall below to take new
    /// clients again.
    pub capacity: Capacity,
}

/// Most carrier lines of a node that are checked one by one (a line is a bit in a mask).
pub const MAX_LINES: usize = 64;

/// How a fleet's health verdicts decide a node's health: among the live vantage points
/// (instances and probe agents) that check it, how many must see it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quorum {
    /// More than half: one vantage point with a broken uplink takes nothing out.
    #[default]
    Majority,
    /// Any one of them.
    Any,
    /// At least this many (or all of them, if fewer check it).
    AtLeast(u32),
}

impl Quorum {
    /// Whether a node is down, given `down` of `voters` vantage points see it down.
    pub fn is_down(self, down: usize, voters: usize) -> bool {
        match self {
            Quorum::Majority => down * 2 > voters,
            Quorum::Any => down > 0,
            Quorum::AtLeast(n) => down > 0 && down >= (n as usize).min(voters),
        }
    }
}

/// When a node is full: at or over `full` (a fraction of its capacity, as loads are
/// reported), until its load falls below `resume` (hysteresis, so it does not oscillate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Load at which the node is full.
    pub full: f64,
    /// Load below which a full node takes new clients again.
    pub resume: f64,
    /// How long a load report counts.
    pub max_age: Duration,
}

/// How long a load report counts unless the policy says otherwise: a reporter that stops
/// (a dead agent, a deleted feed) stops counting within a minute.
pub const LOAD_MAX_AGE: Duration = Duration::from_secs(60);

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            full: 1.0,
            resume: 0.9,
            max_age: LOAD_MAX_AGE,
        }
    }
}

impl Capacity {
    /// Whether a node is full at `load`, given whether it was full before.
    pub fn is_full(&self, load: f64, was_full: bool) -> bool {
        if was_full {
            load >= self.resume
        } else {
            load >= self.full
        }
    }
}

/// What a health check speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// TCP connect.
    Tcp,
    /// HTTP GET.
    Http,
    /// HTTP GET over TLS.
    Https,
    /// RTMP handshake: C0+C1 out, S0+S1 back.
    Rtmp,
    /// No check: the node's state is its administrative status.
    None,
}

/// A node's health check, with defaults applied: what to speak, where, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What the probe speaks, with the fields of that kind only.
    pub probe: Probe,
    /// The one address (and port) probed: a check judges one path to the node.
    pub target: SocketAddr,
    /// How often, how long, and how many results decide.
    pub timing: CheckTiming,
}

/// The timing every kind of check shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckTiming {
    /// Time between checks while the state is settled.
    pub interval: Duration,
    /// Time between checks while a change is being confirmed (after a first failure, or a
    /// first success of a down node).
    pub recheck: Duration,
    /// Upper bound on one probe; probes time out sooner when the measured round trip allows.
    pub timeout: Duration,
    /// Consecutive successes that bring a down node up.
    pub rise: u32,
    /// Consecutive failures that take an up node down.
    pub fall: u32,
}

/// A check's protocol and the settings only that protocol has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect.
    Tcp,
    /// HTTP GET.
    Http(HttpProbe),
    /// HTTP GET over TLS.
    Https(HttpProbe, TlsProbe),
    /// RTMP handshake: C0+C1 out, S0+S1 back.
    Rtmp,
}

/// What an HTTP(S) check asks and accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// Path requested.
    pub path: String,
    /// Host header and default TLS server name; the target address when absent.
    pub host: Option<String>,
    /// Acceptable status codes; 200..=399 when empty.
    pub expect: Vec<u16>,
    /// A substring the body must contain.
    pub body: Option<String>,
}

/// How an HTTPS check speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsProbe {
    /// Server name, when it differs from the HTTP host.
    pub sni: Option<String>,
    /// Verify the server certificate.
    pub verify: bool,
}

impl Probe {
    /// The kind's word in policy files.
    pub fn kind(&self) -> CheckKind {
        match self {
            Probe::Tcp => CheckKind::Tcp,
            Probe::Http(_) => CheckKind::Http,
            Probe::Https(..) => CheckKind::Https,
            Probe::Rtmp => CheckKind::Rtmp,
        }
    }
}

impl CheckKind {
    /// The word policy files use.
    pub fn word(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Https => "https",
            CheckKind::Rtmp => "rtmp",
            CheckKind::None => "none",
        }
    }

    /// The port probed when the policy gives none.
    pub fn default_port(self) -> Option<u16> {
        match self {
            CheckKind::Http => Some(80),
            CheckKind::Https => Some(443),
            CheckKind::Rtmp => Some(1935),
            CheckKind::Tcp | CheckKind::None => None,
        }
    }

    /// The fields of a check only some kinds have, that this kind has.
    pub fn own_fields(self) -> &'static [&'static str] {
        match self {
            CheckKind::Http => &["path", "host", "expect", "body"],
            CheckKind::Https => &["path", "host", "expect", "body", "sni", "verify"],
            CheckKind::Tcp | CheckKind::Rtmp | CheckKind::None => &[],
        }
    }
}

impl std::fmt::Display for HealthCheck {
    /// `http 192.0.2.1:80`: what `/nodes` shows as a node's check.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.probe.kind().word(), self.target)
    }
}

impl Node {
    /// The node's first IPv4 address, if any.
    pub fn first_v4(&self) -> Option<Ipv4Addr> {
        self.addresses.iter().find_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
    }

    /// The node's carrier lines, each checked on its own: every address of a node with
    /// carrier addresses whose check probes its first address (a check pinned to another
    /// `address` judges that path alone). Empty otherwise: the node's check is its one line.
    pub fn checked_lines(&self) -> &[IpAddr] {
        match &self.check {
            Some(check)
                if !self.carriers.is_empty()
                    && self.addresses.len() > 1
                    && self.addresses.first() == Some(&check.target.ip()) =>
            {
                &self.addresses[..self.addresses.len().min(MAX_LINES)]
            }
            _ => &[],
        }
    }

    /// The node's address of `ip`'s family on carrier `asn`, if it has one.
    pub fn on_carrier(&self, asn: u32, v6: bool) -> Option<IpAddr> {
        self.carriers
            .iter()
            .find(|(ip, a)| *a == asn && ip.is_ipv6() == v6)
            .map(|(ip, _)| *ip)
    }

    /// The node's first IPv6 address, if any.
    pub fn first_v6(&self) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|a| match a {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
    }
}

/// An ordered list of candidate nodes: a pool followed by its fallback chain.
///
/// Each entry records its level in the chain: level 0 nodes rank before level 1 nodes
/// whatever their distance, which is what "fallback" means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// `(node, fallback level)`, without duplicates, in declaration order.
    pub nodes: Vec<(NodeId, u8)>,
}

/// What a rule matches on. Empty geos and subnets make a catch-all.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Client geos (continent, country or subdivision codes); any one matches.
    pub geos: Vec<GeoCode>,
    /// Client subnets; any one matches.
    pub subnets: Vec<Prefix>,
    /// Nodes this rule answers with.
    pub candidates: Candidates,
    /// How its answers spread: the rule's own `spread`, else the name's.
    pub spread: Option<SpreadWithin>,
}

impl Rule {
    /// A rule with no conditions matches every client.
    pub fn is_catch_all(&self) -> bool {
        self.geos.is_empty() && self.subnets.is_empty()
    }
}

/// How clients the GeoIP database cannot locate are answered.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultAnswer {
    /// Nodes to answer with; `None` means the catch-all rule's.
    pub candidates: Option<Candidates>,
    /// Where to pretend such clients are; `None` ranks in declaration order.
    pub location: Option<Coordinates>,
}

/// A name whose A/AAAA answers depend on the client.
#[derive(Debug, Clone)]
pub struct SteeredName {
    /// The name, absolute.
    pub name: DomainName,
    /// Answer TTL; short so that steering changes reach clients quickly.
    pub ttl: u32,
    /// How many addresses to return per answer.
    pub answers: usize,
    /// Ordered rules, first match wins; the last one is a catch-all.
    pub rules: Vec<Rule>,
    /// Fences: clients inside one may only get nodes inside it (a union of places),
    /// whichever rule matched them.
    pub fences: Vec<GeoSet>,
    /// Answer for clients the database cannot locate.
    pub default: DefaultAnswer,
    /// What to answer when every node allowed for a client is down.
    pub all_down: AllDown,
    /// TTL of answers while some node allowed for the client is down, so resolvers come
    /// back sooner once it recovers; `ttl` when absent.
    pub degraded_ttl: Option<u32>,
    /// Aging of latency measurements and damping of switches.
    pub latency: LatencyPolicy,
    /// Spreading over nodes about as near as the best, by weight; `None`: the best first.
    pub spread: Option<SpreadWithin>,
}

/// How near the best a node's score (before weight) must be to share its clients.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpreadWithin {
    /// At most this fraction above the best score (`10%`: 0.1).
    Fraction(f64),
    /// At most this many milliseconds above it (`5ms`).
    Milliseconds(f64),
}

impl SpreadWithin {
    /// The worst score that still shares with a best of `best`.
    pub fn limit(self, best: f64) -> f64 {
        match self {
            SpreadWithin::Fraction(f) => best * (1.0 + f),
            SpreadWithin::Milliseconds(ms) => best + ms,
        }
    }
}

/// Behaviour when health leaves no node to answer with.
impl SteeredName {
    /// How the answers of row `row` spread: a rule's, or for the `default` pseudo-rule
    /// (`row == rules.len()`) the name's, or the catch-all's when it answers with its nodes.
    pub fn row_spread(&self, row: usize) -> Option<SpreadWithin> {
        match self.rules.get(row) {
            Some(rule) => rule.spread,
            None if self.default.candidates.is_some() => self.spread,
            None => self
                .rules
                .iter()
                .rposition(Rule::is_catch_all)
                .and_then(|i| self.rules[i].spread)
                .or(self.spread),
        }
    }

    /// Whether any answer of the name spreads.
    pub fn spreads(&self) -> bool {
        (0..=self.rules.len()).any(|row| self.row_spread(row).is_some())
    }

    /// Every node some client of this name may be answered with (rules and default), once
    /// each, in id order.
    pub fn candidate_nodes(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .rules
            .iter()
            .map(|r| &r.candidates)
            .chain(self.default.candidates.as_ref())
            .flat_map(|c| c.nodes.iter().map(|&(id, _)| id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// What a steered name answers when every node allowed for a client is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllDown {
    /// Answer as if every health-checked node were up (Route 53's and gdnsd's behaviour):
    /// a possibly dead node beats no answer. Administrative `down` and drains still hold.
    #[default]
    FailOpen,
    /// Answer SERVFAIL.
    FailClosed,
}

/// How measurements age and how answers are damped; per steered name.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyPolicy {
    /// A challenger must be this much better (a fraction: 0.2 = 20 % lower score)...
    pub margin: f64,
    /// ...for this long before a client group switches to it.
    pub hold: Duration,
    /// After this long a measurement counts for half as much (the rest is the estimate).
    pub half_life: Duration,
    /// After this long a measurement is ignored.
    pub max_age: Duration,
}

impl Default for LatencyPolicy {
    fn default() -> Self {
        LatencyPolicy {
            margin: 0.2,
            hold: Duration::from_secs(30),
            half_life: Duration::from_secs(120),
            max_age: Duration::from_secs(600),
        }
    }
}
