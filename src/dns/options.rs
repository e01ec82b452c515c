//! How the responder behaves beyond the zones: response sizes, what CHAOS queries reveal,
//! who may ask the `_explain` debug names, query-log sampling, and the limits that keep it
//! from being monopolised (TCP) or used as an amplifier (response-rate limiting).

/// Idle time after which a TCP connection is closed (RFC 7766 suggests seconds, not
/// minutes); told to clients that ask with edns-tcp-keepalive (RFC 7828).
pub(super) const TCP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How the responder behaves beyond the zones: sizes, and what CHAOS queries reveal.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest UDP response we send whatever the client offers (1232 by DNS Flag Day 2020).
    pub max_udp_payload: u16,
    /// This instance's name for `id.server`/`hostname.bind`, so an operator behind anycast
    /// knows which instance answered.
    pub identity: String,
    /// The answer to `version.server`/`version.bind`; `None` hides it (REFUSED).
    pub version: Option<String>,
    /// Debug names (`_explain.<steered name>` TXT); `None` disables them.
    pub explain: Option<ExplainAccess>,
    /// Log one query in this many (0: none). Off, it costs one comparison per query.
    pub query_log_every: u64,
    /// Bounds on the TCP connection table.
    pub tcp: crate::config::TcpLimits,
    /// Response-rate limiting over UDP.
    pub rrl: crate::config::RrlSettings,
    /// The secrets of server cookies (RFC 7873, 9018), and their clock.
    pub cookies: super::cookie::CookieSecrets,
}

/// Who may ask `_explain.<steered name>` TXT, and under which label.
#[derive(Debug, Clone)]
pub struct ExplainAccess {
    /// The first label of debug names, e.g. `_explain`.
    pub label: String,
    /// Source networks allowed to ask; empty: everyone.
    pub allowed: Vec<crate::net::Prefix>,
}

/// The longest NSID sent: an identity is a name, and the OPT record must stay small.
const MAX_NSID: usize = 64;

impl ServeOptions {
    /// The NSID payload (RFC 5001): the identity `id.server` answers with, so `dig +nsid`
    /// names the instance behind an anycast address.
    pub fn nsid(&self) -> &[u8] {
        let bytes = self.identity.as_bytes();
        &bytes[..bytes.len().min(MAX_NSID)]
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_udp_payload: 1232,
            identity: "geosteer".into(),
            version: Some(format!("geosteer {}", env!("CARGO_PKG_VERSION"))),
            explain: Some(ExplainAccess {
                label: "_explain".into(),
                allowed: Vec::new(),
            }),
            query_log_every: 0,
            tcp: crate::config::TcpLimits::default(),
            rrl: crate::config::RrlSettings::default(),
            cookies: super::cookie::CookieSecrets::random(),
        }
    }
}
