//! How a server is started: the settings `geosteer serve` takes, with the shipped defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Default listen address: loopback, an unprivileged port, so the example runs as any user.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5353";
/// Default policy directory.
pub const DEFAULT_ZONES: &str = "zones";
/// Default GeoIP database: the shipped DB-IP country database.
pub const DEFAULT_GEO_DB: &str = "geo/dbip-country.mmdb";
/// Default admin interface address: loopback only.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8053";

/// Settings of a serving process.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Addresses to serve UDP and TCP on.
    pub listen: Vec<SocketAddr>,
    /// Policy file or directory of them.
    pub zones: PathBuf,
    /// MaxMind-format databases locating clients, consulted in order.
    pub geo_dbs: Vec<PathBuf>,
    /// Largest UDP response sent.
    pub max_udp_payload: u16,
    /// Admin HTTP address; `None` disables the interface.
    pub admin: Option<SocketAddr>,
    /// Bearer token the admin interface requires (mandatory off loopback).
    pub admin_token: Option<String>,
    /// Host names the admin interface answers to besides IP literals and `localhost`.
    pub admin_hosts: Vec<String>,
    /// A latency feed file to watch.
    pub latency_feed: Option<PathBuf>,
    /// ASN database (MaxMind format or ip-location-db CSV) for carrier lines.
    pub asn_db: Option<PathBuf>,
    /// This instance's name for CHAOS `id.server` queries.
    pub identity: String,
    /// Refuse CHAOS `version.server`/`version.bind` queries.
    pub hide_version: bool,
    /// First label of debug names (`_explain.<steered name>` TXT); empty disables them.
    pub explain_label: String,
    /// Source networks allowed to ask debug names; empty: everyone.
    pub explain_from: Vec<crate::net::Prefix>,
    /// Log one query in this many (0: none).
    pub query_log_every: u64,
    /// TCP connections at once, in all (further capped by the file descriptor limit).
    pub tcp_max_connections: usize,
    /// TCP connections at once from one source.
    pub tcp_per_source: u32,
    /// Longest a TCP connection is kept, however busy.
    pub tcp_lifetime: std::time::Duration,
    /// Response-rate limiting over UDP.
    pub rrl: RrlSettings,
    /// The file of the server cookie secret shared by instances (a random one without).
    pub cookie_secret_file: Option<PathBuf>,
    /// How to reach the etcd of the fleet this instance joins; no endpoints: it runs alone.
    pub fleet: EtcdSettings,
    /// The fleet's key prefix in etcd (one per deployment).
    pub fleet_prefix: String,
    /// A probe agent's vantage point (a geo code): no DNS, checks shared with the fleet.
    pub probe_vantage: Option<String>,
    /// Where overrides are kept across restarts (`crate::keep`); `None`: in memory only.
    pub state_file: Option<PathBuf>,
    /// In a fleet: how long a starting instance waits to read the fleet before it is
    /// ready on what its state file kept.
    pub fleet_ready_wait: std::time::Duration,
}

impl ServeConfig {
    /// The settings as JSON for the admin interface's `/config`; the token is never shown,
    /// only whether one is set.
    pub fn settings_json(&self) -> serde_json::Value {
        serde_json::json!({
            "listen": self.listen,
            "zones": self.zones,
            "geo_dbs": self.geo_dbs,
            "max_udp_payload": self.max_udp_payload,
            "admin": self.admin,
            "admin_token_set": self.admin_token.is_some(),
            "admin_hosts": self.admin_hosts,
            "latency_feed": self.latency_feed,
            "asn_db": self.asn_db,
            "identity": self.identity,
            "hide_version": self.hide_version,
            "explain_label": self.explain_label,
            "explain_from": self.explain_from.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "query_log_sample": self.query_log_every,
            "tcp_max_connections": self.tcp_max_connections,
            "tcp_per_source": self.tcp_per_source,
            "tcp_lifetime_seconds": self.tcp_lifetime.as_secs(),
            "cookie_secret_file": self.cookie_secret_file,
            "fleet": self.fleet.endpoints,
            "fleet_ca": self.fleet.ca_file,
            "fleet_cert": self.fleet.cert_file,
            "fleet_user": self.fleet.user,
            "fleet_prefix": self.fleet_prefix,
            "probe_vantage": self.probe_vantage,
            "state_file": self.state_file,
            "fleet_ready_wait_ms": self.fleet_ready_wait.as_millis() as u64,
            "rrl": {
                "rate": self.rrl.rate,
                "source_rate": self.rrl.source_rate,
                "slip": self.rrl.slip,
                "exempt": self.rrl.exempt.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "log_only": self.rrl.log_only,
            },
        })
    }
}

/// How response-rate limiting behaves (`crate::dns`, over UDP).
#[derive(Debug, Clone)]
pub struct RrlSettings {
    /// Responses a second of one kind to one client network; 0 turns limiting off.
    pub rate: u32,
    /// Responses a second of any kind to one client network.
    pub source_rate: u32,
    /// Every `slip`-th limited response is sent truncated instead of dropped (0: none, 1:
    /// all).
    pub slip: u32,
    /// Networks never limited (monitoring, partners' resolvers).
    pub exempt: Vec<crate::net::Prefix>,
    /// Count what would be limited, but send everything.
    pub log_only: bool,
}

impl Default for RrlSettings {
    fn default() -> Self {
        RrlSettings {
            rate: 100,
            source_rate: 10_000,
            slip: 2,
            exempt: Vec::new(),
            log_only: false,
        }
    }
}

/// Bounds on the TCP connection table (`crate::dns`).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one source (an IPv4 address, an IPv6 /64).
    pub per_source: u32,
    /// Longest a connection is kept, however busy: a slow drip of queries cannot hold a
    /// slot.
    pub lifetime: std::time::Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 1024,
            per_source: 64,
            lifetime: std::time::Duration::from_secs(300),
        }
    }
}

/// How to reach a fleet's etcd: its client URLs and, in production, TLS and a user.
#[derive(Debug, Clone, Default)]
pub struct EtcdSettings {
    /// Client URLs: `http://HOST:PORT`, or `https://HOST:PORT` for TLS.
    pub endpoints: Vec<String>,
    /// PEM file of the CA that signed etcd's certificates (TLS; default: the web's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for clusters that demand one (`--client-cert-auth`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// etcd user, for clusters with authentication on.
    pub user: Option<String>,
    /// That user's password (read from a file or the environment, never the command line).
    pub password: Option<String>,
}
