//! The fleet's etcd client: the maintained `etcd-client` crate (gRPC over HTTP/2), one
//! connection per member, which carries KV calls, the watch and the lease's keep-alive
//! stream together. Every call needs a leader (`require_leader`: a member cut off from its
//! peers refuses instead of answering from a stale copy), has a deadline and tries each
//! member in turn, starting with the one that answered last, so one dead member costs a
//! timeout, not an outage; nothing here is ever awaited on the query path.
//!
//! Production clusters speak TLS (`https://` endpoints, verified against `--fleet-ca`, with
//! a client certificate when etcd asks for one) and have authentication on: the client
//! logs in as the fleet's user and logs in again when etcd says the token expired.
//!
//! The build needs `protoc` (Debian's `protobuf-compiler`): the crate compiles etcd's
//! protocol files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use etcd_client::{
    Certificate, Client, CompareOp, ConnectOptions, EventType, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::Code;

/// Longest one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on each member's connection: a member that stops answering them is
/// dropped. etcd refuses pings more often than every 5 s (`--grpc-keepalive-min-time`).
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered in time.
    #[error("no etcd endpoint answered ({0})")]
    Unreachable(String),
    /// An endpoint answered with an error about the request (its login, its permissions,
    /// its form): another member would answer the same.
    #[error("etcd refused the request: {0}")]
    Refused(String),
    /// A member answered that it cannot serve now (a learner, no leader, an election):
    /// another member may.
    #[error("etcd member cannot serve: {0}")]
    Unavailable(String),
    /// The answer was not what etcd sends (a key or value that is not UTF-8).
    #[error("unexpected answer from etcd: {0}")]
    Malformed(String),
    /// The client's own settings are wrong: an endpoint, a certificate, a password file.
    #[error("fleet settings: {0}")]
    Settings(String),
    /// Another live member holds this instance's identity.
    #[error(
        "identity '{0}' is held by another live member; give every instance its own --identity"
    )]
    IdentityTaken(String),
}

pub use crate::config::EtcdSettings;

/// A key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// The lease it lives under; 0: none (it stays until deleted).
    pub lease: i64,
    /// The store's revision of its last write: what a write that must not overrule a
    /// newer one compares against.
    pub mod_revision: i64,
}

impl KeyValue {
    fn of(kv: &etcd_client::KeyValue) -> Result<KeyValue, EtcdError> {
        let text = |bytes: &[u8], what: &str| {
            String::from_utf8(bytes.to_vec())
                .map_err(|e| EtcdError::Malformed(format!("a {what} that is not UTF-8: {e}")))
        };
        Ok(KeyValue {
            key: text(kv.key(), "key")?,
            value: text(kv.value(), "value")?,
            lease: kv.lease(),
            mod_revision: kv.mod_revision(),
        })
    }
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was written.
    Put(KeyValue),
    /// A key was deleted (or its lease expired).
    Delete(String),
}

/// A client of one cluster: a connection per member, built once from [`EtcdSettings`] so
/// every file problem shows at start-up.
#[derive(Clone)]
pub struct Etcd {
    members: Arc<Vec<Member>>,
    options: ConnectOptions,
    /// The user logged in as, if any (named when a login is refused).
    user: Option<String>,
    /// The member that answered last: calls start there and move on through the others,
    /// so a stopped or cut-off member costs one timeout, not one per call.
    preferred: Arc<AtomicUsize>,
    /// The member serving the current watch, whose liveness `watch_alive` checks;
    /// [`NOT_WATCHING`] while none is open (a new watch must not be judged by the member
    /// the last one was left for).
    watching: Arc<AtomicUsize>,
}

/// `Etcd::watching` while no watch is open.
const NOT_WATCHING: usize = usize::MAX;

/// One member: its URL and, once made, the connection to it.
struct Member {
    url: String,
    client: ArcSwapOption<Client>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.members.iter().map(|m| m.url.as_str()).collect();
        f.debug_struct("Etcd").field("endpoints", &urls).finish()
    }
}

/// Checks a member's client URL: `http://HOST:PORT` or `https://HOST:PORT`; whether it
/// is TLS.
fn endpoint_tls(url: &str) -> Result<bool, EtcdError> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(EtcdError::Settings(format!(
            "{url}: an etcd endpoint is http://HOST:PORT or https://HOST:PORT"
        )));
    };
    match rest.trim_end_matches('/').rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(tls),
        _ => Err(EtcdError::Settings(format!(
            "{url}: the endpoint needs a port (etcd's is usually 2379)"
        ))),
    }
}

/// Reads a PEM file that must hold at least one certificate: its text.
fn certificates(path: &Path, what: &str) -> Result<Vec<u8>, EtcdError> {
    let problem =
        |e: &dyn std::fmt::Display| EtcdError::Settings(format!("{what} {}: {e}", path.display()));
    let text = std::fs::read(path).map_err(|e| problem(&e))?;
    let found: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&text).collect();
    match found {
        Ok(found) if !found.is_empty() => Ok(text),
        Ok(_) => Err(problem(&"no PEM certificate in the file")),
        Err(e) => Err(problem(&e)),
    }
}

/// The TLS settings: etcd's CA (or the web's roots) and the client certificate.
fn tls_options(settings: &EtcdSettings) -> Result<TlsOptions, EtcdError> {
    let mut tls = match &settings.ca_file {
        Some(path) => TlsOptions::new()
            .ca_certificate(Certificate::from_pem(certificates(path, "--fleet-ca")?)),
        None => TlsOptions::new().with_webpki_roots(),
    };
    match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "--fleet-cert")?;
            let key_text = std::fs::read(key)
                .map_err(|e| EtcdError::Settings(format!("--fleet-key {}: {e}", key.display())))?;
            PrivateKeyDer::from_pem_slice(&key_text)
                .map_err(|e| EtcdError::Settings(format!("--fleet-key {}: {e}", key.display())))?;
            tls = tls.identity(Identity::from_pem(chain, key_text));
        }
        (None, None) => {}
        _ => {
            return Err(EtcdError::Settings(
                "--fleet-cert and --fleet-key go together".into(),
            ));
        }
    }
    Ok(tls)
}

/// What an error from a member means for the caller: refused (every member would say the
/// same), or unavailable or unreachable (another member may answer).
fn classify(url: &str, error: etcd_client::Error) -> EtcdError {
    use etcd_client::Error as E;
    let text = error.to_string();
    if text.contains("certificate") {
        return EtcdError::Refused(format!(
            "{url}: TLS: {text} (--fleet-ca must name the CA that signed etcd's certificates)"
        ));
    }
    match error {
        E::GRpcStatus(status) => match status.code() {
            Code::Unauthenticated
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::AlreadyExists
            | Code::NotFound => EtcdError::Refused(status.message().to_string()),
            _ => EtcdError::Unavailable(format!("{url}: {}", status.message())),
        },
        E::InvalidArgs(why) | E::EndpointError(why) => EtcdError::Settings(format!("{url}: {why}")),
        E::InvalidUri(e) => EtcdError::Settings(format!("{url}: {e}")),
        E::Utf8Error(e) => EtcdError::Malformed(e.to_string()),
        other => EtcdError::Unreachable(format!("{url}: {other}")),
    }
}

/// The store's revision an answer was given at.
fn revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

impl Etcd {
    /// A client of these settings; reads the certificate files now. Connections are made
    /// when first needed.
    pub fn new(settings: &EtcdSettings) -> Result<Etcd, EtcdError> {
        let tls = (settings.endpoints.iter())
            .map(|url| endpoint_tls(url))
            .collect::<Result<Vec<_>, _>>()?;
        if tls.is_empty() {
            return Err(EtcdError::Settings("no etcd endpoints".into()));
        }
        if tls.contains(&true) && tls.contains(&false) {
            return Err(EtcdError::Settings(
                "the endpoints mix http:// and https://: a cluster speaks one or the other".into(),
            ));
        }
        let wants_tls = settings.ca_file.is_some() || settings.cert_file.is_some();
        let mut options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(PING_EVERY, PING_TIMEOUT)
            .with_keep_alive_while_idle(true);
        if tls.contains(&true) {
            options = options.with_tls(tls_options(settings)?);
        } else if wants_tls {
            return Err(EtcdError::Settings(
                "TLS files are given but no endpoint is https://".into(),
            ));
        }
        match (&settings.user, &settings.password) {
            (Some(user), Some(password)) => {
                options = options
                    .with_user(user.clone(), password.clone())
                    .with_auto_token_refresh(true);
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(EtcdError::Settings(
                    "--fleet-user needs a password: --fleet-password-file or GEOSTEER_FLEET_PASSWORD"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(EtcdError::Settings(
                    "a fleet password is given without --fleet-user".into(),
                ));
            }
        }
        let members = (settings.endpoints.iter())
            .map(|url| Member {
                url: url.trim_end_matches('/').to_string(),
                client: ArcSwapOption::empty(),
            })
            .collect();
        Ok(Etcd {
            members: Arc::new(members),
            options,
            user: settings.user.clone(),
            preferred: Arc::default(),
            watching: Arc::new(AtomicUsize::new(NOT_WATCHING)),
        })
    }

    /// The members' indices, the preferred one first, then the others in turn.
    fn in_turn(&self) -> impl Iterator<Item = usize> + use<> {
        let start = self.preferred.load(Ordering::Relaxed);
        let n = self.members.len();
        (0..n).map(move |k| (start + k) % n)
    }

    /// The connection to member `i`, made (and logged in) when first needed.
    async fn client(&self, i: usize) -> Result<Client, EtcdError> {
        let member = &self.members[i];
        if let Some(client) = member.client.load_full() {
            return Ok((*client).clone());
        }
        let connecting = Client::connect([member.url.as_str()], Some(self.options.clone()));
        let client = match tokio::time::timeout(REQUEST_TIMEOUT, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(match (classify(&member.url, e), &self.user) {
                    (EtcdError::Refused(why), Some(user)) => {
                        EtcdError::Refused(format!("login as {user}: {why}"))
                    }
                    (other, _) => other,
                });
            }
            Err(_) => {
                return Err(EtcdError::Unreachable(format!("{}: timed out", member.url)));
            }
        };
        member.client.store(Some(Arc::new(client.clone())));
        Ok(client)
    }

    /// Runs `call` on the first member that answers, the preferred one first: a refusal
    /// ends the search (every member would refuse alike), anything else moves on.
    async fn on_members<T, F, Fut>(&self, call: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut failures = Vec::new();
        for i in self.in_turn() {
            let url = &self.members[i].url;
            let attempt = async {
                let client = self.client(i).await?;
                call(client).await.map_err(|e| classify(url, e))
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
                Ok(Ok(value)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(e @ (EtcdError::Refused(_) | EtcdError::Settings(_)))) => return Err(e),
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(_) => failures.push(format!("{url}: timed out")),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    /// Whether the member serving the watch still answers a linearizable read of one key
    /// under `prefix` (what the fleet's user may read) within `within`: a stopped member, or
    /// one cut off from its peers (it has no leader), does not, while its watch stream just
    /// stays silent. When it does not, the next calls start at the next member.
    pub async fn watch_alive(&self, prefix: &str, within: Duration) -> Result<(), EtcdError> {
        let i = self.watching.load(Ordering::Relaxed);
        let Some(member) = self.members.get(i) else {
            return Ok(()); // no watch open yet: opening one has its own timeout
        };
        let read = async {
            let mut client = self.client(i).await?;
            let options = GetOptions::new()
                .with_prefix()
                .with_limit(1)
                .with_keys_only();
            (client.get(prefix, Some(options)).await).map_err(|e| classify(&member.url, e))
        };
        let failed = match tokio::time::timeout(within, read).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("{}: no answer within {within:?}", member.url),
        };
        let next = (i + 1) % self.members.len();
        let _ = (self.preferred).compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
        Err(EtcdError::Unreachable(format!(
            "the watch's member stopped answering ({failed})"
        )))
    }

    /// The member the watch is served by, or else the one calls start at.
    pub fn current_url(&self) -> String {
        let watching = self.watching.load(Ordering::Relaxed);
        let member = (self.members.get(watching))
            .or_else(|| self.members.get(self.preferred.load(Ordering::Relaxed)));
        member.map(|m| m.url.clone()).unwrap_or_default()
    }

    /// Forgets the member of the last watch, before a new one is opened.
    pub fn watch_closed(&self) {
        self.watching.store(NOT_WATCHING, Ordering::Relaxed);
    }

    /// The endpoints' URLs, as given.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.url.clone()).collect()
    }

    /// Every key under `prefix`, and the store's revision they were read at.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<KeyValue>), EtcdError> {
        let answer = self
            .on_members(|mut client| async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let kvs = answer
            .kvs()
            .iter()
            .map(KeyValue::of)
            .collect::<Result<_, _>>()?;
        Ok((revision(answer.header()), kvs))
    }

    /// One key, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let answer =
            (self.on_members(|mut client| async move { client.get(key, None).await })).await?;
        answer.kvs().first().map(KeyValue::of).transpose()
    }

    /// Applies writes in transactions of at most [`MAX_TXN_OPS`] (etcd's default limit),
    /// the last write of a key winning (etcd refuses a key twice in one transaction): a
    /// burst of verdicts costs a few commits, not one each.
    pub async fn apply(&self, ops: &[Op]) -> Result<(), EtcdError> {
        for chunk in transactions(ops) {
            let txn = Txn::new().and_then(chunk.iter().map(|op| op.txn_op()).collect::<Vec<_>>());
            self.on_members(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        }
        Ok(())
    }

    /// Sets `key` to `value` under `lease` (0: none) only if `compare` holds; the
    /// revision of the write, or `None` when it did not hold.
    pub async fn put_if(
        &self,
        compare: Compare,
        key: &str,
        value: &str,
        lease: i64,
    ) -> Result<Option<i64>, EtcdError> {
        let condition = match compare {
            Compare::Unchanged(0) => {
                etcd_client::Compare::create_revision(key, CompareOp::Equal, 0)
            }
            Compare::Unchanged(revision) => {
                etcd_client::Compare::mod_revision(key, CompareOp::Equal, revision)
            }
            Compare::Lease(id) => etcd_client::Compare::lease(key, CompareOp::Equal, id),
        };
        let put = Op::Put {
            key: key.to_string(),
            value: value.to_string(),
            lease,
        };
        let txn = Txn::new().when([condition]).and_then([put.txn_op()]);
        let answer = self
            .on_members(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        Ok(answer.succeeded().then(|| revision(answer.header())))
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
        let answer = (self
            .on_members(|mut client| async move { client.lease_grant(ttl, None).await }))
        .await?;
        Ok(answer.id())
    }

    /// Ends a lease now: its keys go with it.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        (self.on_members(|mut client| async move { client.lease_revoke(lease).await }))
            .await
            .map(|_| ())
    }

    /// Keeps `lease` alive, renewing it every `every` over one keep-alive stream to a
    /// member, until that fails: why (the lease expired, the member stopped answering).
    pub async fn keep_lease(&self, lease: i64, every: Duration) -> EtcdError {
        let opened = self
            .on_members(|mut client| async move { client.lease_keep_alive(lease).await })
            .await;
        let (mut keeper, mut answers) = match opened {
            Ok(stream) => stream,
            Err(e) => return e,
        };
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = keeper.keep_alive().await {
                return EtcdError::Unreachable(format!("lease keep-alive: {e}"));
            }
            match tokio::time::timeout(REQUEST_TIMEOUT, answers.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                Ok(Ok(Some(_))) => return EtcdError::Refused("the lease expired".into()),
                Ok(Ok(None)) => {
                    return EtcdError::Unreachable("the keep-alive stream ended".into());
                }
                Ok(Err(e)) => return EtcdError::Unreachable(format!("lease keep-alive: {e}")),
                Err(_) => {
                    return EtcdError::Unreachable("no lease keep-alive answer in time".into());
                }
            }
        }
    }

    /// Watches every key under `prefix` from `revision` on, sending each batch of events
    /// to `events` until the stream ends or fails (then the caller reads the state again and
    /// watches anew), or nobody listens any more. A slow listener slows the watch down (etcd
    /// holds the events); none is dropped. The first member that accepts the watch serves
    /// it; with no leader, a member cancels it.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        revision: i64,
        events: &tokio::sync::mpsc::Sender<Result<Vec<Event>, EtcdError>>,
    ) -> Result<(), EtcdError> {
        let mut failures = Vec::new();
        for i in self.in_turn() {
            let url = &self.members[i].url;
            let opening = async {
                let mut client = self.client(i).await?;
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision);
                client
                    .watch(prefix, Some(options))
                    .await
                    .map_err(|e| classify(url, e))
            };
            let mut stream = match tokio::time::timeout(REQUEST_TIMEOUT, opening).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e @ EtcdError::Refused(_))) => return Err(e),
                Ok(Err(e)) => {
                    failures.push(e.to_string());
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{url}: timed out"));
                    continue;
                }
            };
            self.watching.store(i, Ordering::Relaxed);
            self.preferred.store(i, Ordering::Relaxed);
            loop {
                let answer = match stream.message().await {
                    Ok(Some(answer)) => answer,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(classify(url, e)),
                };
                if answer.canceled() {
                    return Err(EtcdError::Unavailable(format!(
                        "{url}: watch canceled: {}",
                        answer.cancel_reason()
                    )));
                }
                let batch = (answer.events().iter())
                    .filter_map(|event| {
                        let kv = KeyValue::of(event.kv()?);
                        Some(match event.event_type() {
                            EventType::Put => kv.map(Event::Put),
                            EventType::Delete => kv.map(|kv| Event::Delete(kv.key)),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if !batch.is_empty() && events.send(Ok(batch)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

/// Operations in one transaction at most: etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// What a conditional write requires of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Its last write is the one of this revision as seen (0: it did not exist).
    Unchanged(i64),
    /// It lives under this lease.
    Lease(i64),
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets a key, under a lease (0: none).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The lease id, or 0.
        lease: i64,
    },
    /// Deletes a key.
    Delete {
        /// The key.
        key: String,
    },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }

    fn txn_op(&self) -> TxnOp {
        match self {
            Op::Put { key, value, lease } => {
                let options = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
                TxnOp::put(key.as_str(), value.as_str(), options)
            }
            Op::Delete { key } => TxnOp::delete(key.as_str(), None),
        }
    }
}

/// The transactions of `ops`: the last write of each key, in order, at most
/// [`MAX_TXN_OPS`] a transaction.
fn transactions(ops: &[Op]) -> Vec<Vec<&Op>> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        last.insert(op.key(), i);
    }
    let kept: Vec<&Op> = ops
        .iter()
        .enumerate()
        .filter(|(i, op)| last.get(op.key()) == Some(i))
        .map(|(_, op)| op)
        .collect();
    kept.chunks(MAX_TXN_OPS).map(<[&Op]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_keep_the_last_write_of_a_key_and_stay_within_etcd_s_limit() {
        let put = |key: &str, value: &str| Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 7,
        };
        let ops = [
            put("/g/a", "down"),
            Op::Delete { key: "/g/o".into() },
            put("/g/a", "up"),
        ];
        assert_eq!(transactions(&ops), vec![vec![&ops[1], &ops[2]]]);
        let many: Vec<Op> = (0..300).map(|i| put(&format!("/g/{i}"), "up")).collect();
        let sizes: Vec<usize> = transactions(&many).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_TXN_OPS, MAX_TXN_OPS, 300 - 2 * MAX_TXN_OPS]);
    }

    #[test]
    fn endpoints_and_settings_are_checked_at_start() {
        let settings = |urls: &[&str]| EtcdSettings {
            endpoints: urls.iter().map(|u| u.to_string()).collect(),
            ..EtcdSettings::default()
        };
        assert_eq!(endpoint_tls("https://[::1]:2379/").ok(), Some(true));
        assert!(Etcd::new(&settings(&["etcd:2379"])).is_err());
        assert!(Etcd::new(&settings(&["http://etcd"])).is_err());
        assert!(Etcd::new(&settings(&[])).is_err());
        assert!(Etcd::new(&settings(&["http://a:2379", "https://b:2379"])).is_err());
        let no_password = EtcdSettings {
            user: Some("geosteer".into()),
            ..settings(&["http://127.0.0.1:2379"])
        };
        assert!(
            Etcd::new(&no_password)
                .unwrap_err()
                .to_string()
                .contains("password")
        );
        let missing_ca = EtcdSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..settings(&["https://127.0.0.1:2379"])
        };
        let why = Etcd::new(&missing_ca).unwrap_err().to_string();
        assert!(why.contains("--fleet-ca /nonexistent/ca.pem"), "{why}");
        assert!(Etcd::new(&settings(&["https://127.0.0.1:2379"])).is_ok());
    }
}
