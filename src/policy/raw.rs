//! What operators write: the YAML shape of a zone policy file, deserialized with locations.
//!
//! Only shape is checked here (unknown fields, wrong types, duplicate keys); meaning is checked
//! by `validate`, which needs the `Spanned` locations kept on every value it may complain about.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::model::{AdminStatus, AllDown, CheckKind, Tier};

/// A whole policy file: one zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// Zone apex, e.g. `live.example.net`.
    pub zone: Spanned<String>,
    /// Default TTL for static records.
    pub ttl: Option<Spanned<u32>>,
    /// SOA fields.
    pub soa: Option<Spanned<RawSoa>>,
    /// Apex name servers, fully qualified.
    #[serde(default)]
    pub ns: Vec<Spanned<String>>,
    /// Static records by relative name (`@` for the apex).
    #[serde(default)]
    pub records: IndexMap<Key, Spanned<OneOrMany<RawRecordSet>>>,
    /// An RFC 1035 master file with more static records (relative to the policy file).
    pub records_file: Option<Spanned<String>>,
    /// Ingest nodes by name.
    #[serde(default)]
    pub nodes: IndexMap<Key, Spanned<RawNode>>,
    /// Steered names by relative name.
    #[serde(default)]
    pub steer: IndexMap<Key, Spanned<RawSteer>>,
    /// Health check defaults for every node of the zone.
    pub check: Option<Spanned<RawCheck>>,
    /// In a fleet: `majority` (default), `any`, or how many vantage points must see a node
    /// down.
    pub health_quorum: Option<Spanned<RawQuorum>>,
    /// Capacity defaults for every node of the zone.
    pub capacity: Option<Spanned<RawCapacity>>,
    /// Named unions of geo codes, usable in `geos` lists (`gdpr: [eea, EU-CH]`).
    #[serde(default)]
    pub geo_sets: IndexMap<Key, Spanned<Vec<Spanned<String>>>>,
    /// Signing: `dnssec: {keys: DIR}`.
    pub dnssec: Option<Spanned<RawDnssec>>,
}

/// `dnssec:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnssec {
    /// The directory of the zone's key files, relative to the policy file.
    pub keys: Spanned<String>,
    /// How long signatures hold (default 14 days); they are made again with a quarter left.
    pub signature_lifetime: Option<Spanned<RawDuration>>,
}

/// A health check as written: every field optional, so zone defaults and node overrides
/// merge field by field.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// `tcp`, `http`, `https`, `rtmp` or `none`.
    #[serde(rename = "type")]
    pub kind: Option<CheckKind>,
    /// Port to connect to.
    pub port: Option<u16>,
    /// Address to check; the node's first address when absent.
    pub address: Option<Spanned<String>>,
    /// Time between checks (`500ms`, `1s`, or a number of seconds).
    pub interval: Option<Spanned<RawDuration>>,
    /// Time between confirming checks.
    pub recheck: Option<Spanned<RawDuration>>,
    /// Upper bound on one probe.
    pub timeout: Option<Spanned<RawDuration>>,
    /// Successes to come up.
    pub rise: Option<Spanned<u32>>,
    /// Failures to go down.
    pub fall: Option<Spanned<u32>>,
    /// HTTP path.
    pub path: Option<Spanned<String>>,
    /// HTTP Host header.
    pub host: Option<String>,
    /// TLS server name.
    pub sni: Option<String>,
    /// Verify TLS certificates.
    pub verify: Option<bool>,
    /// Acceptable HTTP status codes.
    pub expect: Option<Spanned<Vec<u16>>>,
    /// Substring the body must contain.
    pub body: Option<String>,
}

impl RawCheck {
    /// Field-wise merge: `self`'s fields win, `defaults` fill the rest. A check of another
    /// kind than the defaults' takes only the fields every kind has from them (a node's
    /// `{type: tcp, port: 22}` under a zone's HTTP check has no path).
    pub fn over(&self, defaults: &RawCheck) -> RawCheck {
        let same_kind = self.kind.is_none_or(|k| k == defaults.kind());
        let own = |d: &RawCheck| {
            if same_kind {
                d.clone()
            } else {
                RawCheck::default()
            }
        };
        let kind_defaults = own(defaults);
        RawCheck {
            kind: self.kind.or(defaults.kind),
            port: self.port.or(defaults.port),
            address: self.address.clone().or_else(|| defaults.address.clone()),
            interval: self.interval.clone().or_else(|| defaults.interval.clone()),
            recheck: self.recheck.clone().or_else(|| defaults.recheck.clone()),
            timeout: self.timeout.clone().or_else(|| defaults.timeout.clone()),
            rise: self.rise.clone().or_else(|| defaults.rise.clone()),
            fall: self.fall.clone().or_else(|| defaults.fall.clone()),
            path: self.path.clone().or(kind_defaults.path),
            host: self.host.clone().or(kind_defaults.host),
            sni: self.sni.clone().or(kind_defaults.sni),
            verify: self.verify.or(kind_defaults.verify),
            expect: self.expect.clone().or(kind_defaults.expect),
            body: self.body.clone().or(kind_defaults.body),
        }
    }

    /// The kind written, `tcp` when none is.
    pub fn kind(&self) -> CheckKind {
        self.kind.unwrap_or(CheckKind::Tcp)
    }

    /// The fields written that only some kinds of check have.
    pub fn kind_fields(&self) -> Vec<&'static str> {
        [
            ("path", self.path.is_some()),
            ("host", self.host.is_some()),
            ("expect", self.expect.is_some()),
            ("body", self.body.is_some()),
            ("sni", self.sni.is_some()),
            ("verify", self.verify.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, written)| written.then_some(name))
        .collect()
    }
}

/// A duration as written: `250ms`, `1s`, `1.5s`, `2m`, `1h`, `14d`. A bare number is an error: is
/// `500` milliseconds or seconds? Policies say which.
#[derive(Debug, Clone)]
pub struct RawDuration(pub Result<std::time::Duration, String>);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl Visitor {
            fn unitless<T: std::fmt::Display>(v: T) -> RawDuration {
                RawDuration(Err(format!(
                    "'{v}' has no unit: write {v}ms or {v}s (units: ms, s, m, h, d)"
                )))
            }
        }
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration like 500ms or 1s")
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawDuration, E> {
                Ok(Self::unitless(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawDuration, E> {
                Ok(Self::unitless(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawDuration, E> {
                Ok(Self::unitless(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(parse_duration(v)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h`, `14d`; a unit is required.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = text.strip_suffix('d') {
        (n, 86_400.0)
    } else if text.trim().parse::<f64>().is_ok() {
        return Err(format!(
            "'{text}' has no unit: write {text}ms or {text}s (units: ms, s, m, h, d)"
        ));
    } else {
        (text, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .and_then(|n| std::time::Duration::try_from_secs_f64(n * scale).ok())
        .ok_or_else(|| format!("'{text}' is not a duration (write e.g. 500ms, 2s, 1m)"))
}

/// SOA fields; everything but the two names has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoa {
    /// MNAME.
    pub primary: Spanned<String>,
    /// RNAME, in name form (`hostmaster.example.net.`).
    pub contact: Spanned<String>,
    /// Serial; derived from the file when absent.
    pub serial: Option<u32>,
    /// Seconds.
    pub refresh: Option<u32>,
    /// Seconds.
    pub retry: Option<u32>,
    /// Seconds.
    pub expire: Option<u32>,
    /// Negative-caching TTL, seconds.
    pub minimum: Option<Spanned<u32>>,
    /// TTL of the SOA record; the zone TTL when absent.
    pub ttl: Option<u32>,
}

/// A record set, octoDNS style: `{type: A, values: [...]}` or `{type: CNAME, value: ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecordSet {
    /// Record type name.
    #[serde(rename = "type")]
    pub record_type: Spanned<String>,
    /// TTL; the zone default when absent.
    pub ttl: Option<u32>,
    /// A single value.
    pub value: Option<Spanned<RawValue>>,
    /// Several values.
    pub values: Option<Vec<Spanned<RawValue>>>,
}

/// A record value: a scalar (`192.0.2.1`, `"v=spf1 -all"`) or a map of fields (MX, SRV, CAA).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawValue {
    /// Text or an address.
    Text(String),
    /// A bare number, where a type takes one.
    Number(i64),
    /// Named fields.
    Fields(IndexMap<String, RawScalar>),
}

/// A field value inside a map-shaped record value.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawScalar {
    /// A number.
    Number(i64),
    /// Text.
    Text(String),
}

/// An ingest node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// `core`, `edge` or `backup`; `core` when absent.
    pub tier: Option<Tier>,
    /// Geo code of the node's site.
    pub geo: Spanned<String>,
    /// `[latitude, longitude]`.
    pub location: Spanned<Vec<f64>>,
    /// IPv4 and IPv6 addresses, each optionally on a named carrier.
    pub addresses: Spanned<Vec<Spanned<RawAddress>>>,
    /// Positive weight; 1 when absent.
    pub weight: Option<Spanned<u32>>,
    /// `up`, `down` or `obey`; `obey` when absent.
    pub status: Option<AdminStatus>,
    /// Health check, merged over the zone's `check` defaults.
    pub check: Option<Spanned<RawCheck>>,
    /// When the node is full, merged over the zone's `capacity` defaults.
    pub capacity: Option<Spanned<RawCapacity>>,
}

/// A node address: `198.51.100.10`, or `{address: 203.0.113.10, asn: 2914}` for an address on
/// a carrier's network, answered to clients of the same carrier.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawAddress {
    /// Just the address.
    Plain(String),
    /// The address and the AS number of its carrier.
    Carrier {
        /// The address.
        address: String,
        /// The carrier's AS number.
        asn: u32,
    },
}

/// A steered name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSteer {
    /// Answer TTL.
    pub ttl: Option<Spanned<u32>>,
    /// Addresses per answer.
    pub answers: Option<Spanned<u32>>,
    /// Candidate nodes for rules that name none; every node of the zone when absent.
    pub nodes: Option<Vec<Spanned<String>>>,
    /// Named pools of nodes.
    #[serde(default)]
    pub pools: IndexMap<Key, Spanned<RawPool>>,
    /// Ordered rules; first match wins.
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
    /// Answer for clients the database cannot locate.
    pub default: Option<Spanned<RawDefault>>,
    /// `fail-open` (default) or `fail-closed` when every allowed node is down.
    pub all_down: Option<AllDown>,
    /// TTL while some allowed node is down.
    pub degraded_ttl: Option<Spanned<u32>>,
    /// How latency measurements age and how much better a node must be, for how long,
    /// before clients switch to it.
    pub latency: Option<Spanned<RawLatency>>,
    /// Spread clients over nodes about as near as the best, by weight.
    pub spread: Option<Spanned<RawSpread>>,
}

/// Spreading as written: `{within: 10%}` or `{within: 5ms}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpread {
    /// How far from the best score a node may be and still share the clients.
    pub within: Spanned<RawMargin>,
}

/// A margin written as a percentage of a score (`10%`) or a time (`5ms`).
#[derive(Debug, Clone)]
pub struct RawMargin(pub Result<crate::policy::SpreadWithin, String>);

impl<'de> Deserialize<'de> for RawMargin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use crate::policy::SpreadWithin;
        struct Visitor;
        impl Visitor {
            fn bare<T: std::fmt::Display>(v: T) -> RawMargin {
                RawMargin(Err(format!(
                    "'{v}' has no unit: write a percentage ({v}%) or a time ({v}ms)"
                )))
            }
        }
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawMargin;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a percentage like 10% or a time like 5ms")
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawMargin, E> {
                Ok(Self::bare(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawMargin, E> {
                Ok(Self::bare(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawMargin, E> {
                Ok(Self::bare(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawMargin, E> {
                let parsed = match v.trim().strip_suffix('%') {
                    Some(p) => p
                        .trim()
                        .parse::<f64>()
                        .map(|p| SpreadWithin::Fraction(p / 100.0))
                        .map_err(|_| format!("'{v}' is not a percentage")),
                    None => parse_duration(v)
                        .map(|d| SpreadWithin::Milliseconds(d.as_secs_f64() * 1000.0)),
                };
                Ok(RawMargin(parsed))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Latency damping as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLatency {
    /// `20%` or `0.2`: how much lower a challenger's score must be.
    pub margin: Option<Spanned<RawPercent>>,
    /// How long it must stay better.
    pub hold: Option<Spanned<RawDuration>>,
    /// Age at which a measurement counts half.
    pub half_life: Option<Spanned<RawDuration>>,
    /// Age at which a measurement is ignored.
    pub max_age: Option<Spanned<RawDuration>>,
}

/// A health quorum as written: `majority`, `any` or a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawQuorum {
    /// How many vantage points.
    Count(i64),
    /// `majority` or `any`.
    Word(String),
}

/// When a node is full, as written; a node's own fields override its zone's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapacity {
    /// Load at which the node is full (`95%`).
    pub full: Option<Spanned<RawPercent>>,
    /// Load below which it takes new clients again (`85%`).
    pub resume: Option<Spanned<RawPercent>>,
    /// How long a load report counts (`60s`): a node whose reports stopped is judged by
    /// its checks again, not kept full by an old report.
    pub max_age: Option<Spanned<RawDuration>>,
}

/// A fraction written as `20%` or `0.2`.
#[derive(Debug, Clone)]
pub struct RawPercent(pub Result<f64, String>);

impl<'de> Deserialize<'de> for RawPercent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawPercent;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a fraction like 0.2 or a percentage like 20%")
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawPercent, E> {
                Ok(RawPercent(Ok(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawPercent, E> {
                Ok(RawPercent(Ok(v as f64)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawPercent, E> {
                Ok(RawPercent(Ok(v as f64)))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawPercent, E> {
                let parsed = match v.trim().strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                    None => v.trim().parse::<f64>(),
                };
                Ok(RawPercent(parsed.map_err(|_| {
                    format!("'{v}' is not a fraction or percentage")
                })))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A pool: nodes, and the pool to continue with when they cannot fill an answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Member nodes.
    pub nodes: Vec<Spanned<String>>,
    /// Next pool in the fallback chain.
    pub fallback: Option<Spanned<String>>,
}

/// A rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Client geos.
    #[serde(default)]
    pub geos: Vec<Spanned<String>>,
    /// Client subnets.
    #[serde(default)]
    pub subnets: Vec<Spanned<String>>,
    /// Pool to answer from.
    pub pool: Option<Spanned<String>>,
    /// Nodes to answer from (instead of a pool).
    pub nodes: Option<Vec<Spanned<String>>>,
    /// Clients in this rule's geos only ever get nodes inside them.
    #[serde(default)]
    pub fence: Option<Spanned<bool>>,
    /// This rule's spreading, instead of the name's.
    pub spread: Option<Spanned<RawSpread>>,
}

/// Default answer for unlocatable clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefault {
    /// Pool to answer from.
    pub pool: Option<Spanned<String>>,
    /// Nodes to answer from.
    pub nodes: Option<Vec<Spanned<String>>>,
    /// Rank as if the client were here.
    pub location: Option<Spanned<Vec<f64>>>,
}

/// Either one value or a list of them, as octoDNS allows for record sets at one name.
#[derive(Debug)]
pub enum OneOrMany<T> {
    /// `name: {...}`.
    One(T),
    /// `name: [{...}, {...}]`.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice-like iterator.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let (one, many) = match self {
            OneOrMany::One(one) => (Some(one), &[][..]),
            OneOrMany::Many(many) => (None, &many[..]),
        };
        one.into_iter().chain(many.iter())
    }
}

/// Dispatches on the YAML node kind without buffering, so locations inside survive (serde's
/// `untagged` would lose them).
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a record set map or a list of them")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(OneOrMany::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// A mapping key that remembers where it was written, so errors about a named item point at
/// its name rather than at the first line of its value. Compares and hashes as its text.
#[derive(Debug, Clone)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key is.
    pub at: Location,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<String>::deserialize(deserializer)?;
        Ok(Key {
            name: spanned.value,
            at: spanned.referenced,
        })
    }
}
