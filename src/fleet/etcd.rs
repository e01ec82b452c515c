//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/grant`, `/v3/watch`, …), which every etcd since 3.4 serves on its client URLs.
//! The gateway needs only HTTP/1.1 and JSON, so the build needs no protobuf compiler; keys
//! and values travel base64-encoded, as the gateway wants.
//!
//! Every call has a deadline and tries each endpoint in turn, so one dead member costs a
//! timeout, not an outage; nothing here is ever awaited on the query path.
//!
//! Production clusters speak TLS (`https://` endpoints, verified against `--fleet-ca`, with
//! a client certificate when etcd asks for one) and have authentication on: the client
//! logs in with `/v3/auth/authenticate` and sends the token with every call, logging in
//! again when etcd says the token expired.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Longest one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// A member answered that it cannot serve now (a learner, no leader, an election, a
    /// gateway error): another member may.
    #[error("etcd member cannot serve: {0}")]
    Unavailable(String),
    /// The answer was not what the gateway sends.
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

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was written.
    Put(KeyValue),
    /// A key was deleted (or its lease expired).
    Delete(String),
}

/// A client of one cluster: its members' endpoints, TLS and login, built once from
/// [`EtcdSettings`] so every file problem shows at start-up.
#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<Endpoint>,
    tls: Option<tokio_rustls::TlsConnector>,
    login: Option<Arc<Login>>,
    /// The endpoint that answered last: calls start there and move on through the others,
    /// so a stopped or cut-off member costs one timeout, not one per call.
    preferred: Arc<AtomicUsize>,
    /// The endpoint serving the current watch, whose liveness `watch_alive` checks;
    /// [`NOT_WATCHING`] while none is open (a new watch must not be judged by the member
    /// the last one was left for).
    watching: Arc<AtomicUsize>,
}

/// `Etcd::watching` while no watch is open.
const NOT_WATCHING: usize = usize::MAX;

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls.is_some())
            .field("user", &self.login.as_ref().map(|l| &l.user))
            .finish()
    }
}

/// A member's client URL, taken apart.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    /// `HOST:PORT`, dialled and sent as `Host`.
    authority: String,
    /// The host alone: the name (or address) its certificate must carry.
    host: String,
    tls: bool,
}

/// A user's credentials and the token etcd gave for them, renewed when it expires.
struct Login {
    user: String,
    password: String,
    token: ArcSwapOption<String>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, EtcdError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(EtcdError::Settings(format!(
                "{url}: an etcd endpoint is http://HOST:PORT or https://HOST:PORT"
            )));
        };
        let authority = rest.trim_end_matches('/').to_string();
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => {
                return Err(EtcdError::Settings(format!(
                    "{url}: the endpoint needs a port (etcd's is usually 2379)"
                )));
            }
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Endpoint {
            url: url.to_string(),
            authority,
            host,
            tls,
        })
    }
}

/// Reads every PEM certificate in a file.
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, EtcdError> {
    let found: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| EtcdError::Settings(format!("{what} {}: {e}", path.display())))?
        .collect();
    let found =
        found.map_err(|e| EtcdError::Settings(format!("{what} {}: {e}", path.display())))?;
    if found.is_empty() {
        return Err(EtcdError::Settings(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(found)
}

/// The TLS client configuration: etcd's CA (or the web's roots) and the client certificate.
fn tls_config(settings: &EtcdSettings) -> Result<rustls::ClientConfig, EtcdError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            for cert in certificates(path, "--fleet-ca")? {
                roots.add(cert).map_err(|e| {
                    EtcdError::Settings(format!("--fleet-ca {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Settings(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "--fleet-cert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| EtcdError::Settings(format!("--fleet-key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| EtcdError::Settings(format!("--fleet-cert and --fleet-key: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(EtcdError::Settings(
            "--fleet-cert and --fleet-key go together".into(),
        )),
    }
}

/// A connection to one member, plain or TLS.
trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

fn b64(text: &str) -> String {
    B64.encode(text.as_bytes())
}

fn unb64(text: &str) -> Result<String, EtcdError> {
    let bytes = B64
        .decode(text)
        .map_err(|e| EtcdError::Malformed(format!("base64: {e}")))?;
    String::from_utf8(bytes).map_err(|e| EtcdError::Malformed(format!("utf-8: {e}")))
}

/// The end of a prefix range: the prefix with its last byte raised.
fn range_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last = last.saturating_add(1);
    }
    B64.encode(end)
}

#[derive(Deserialize)]
struct RawKv {
    key: String,
    #[serde(default)]
    value: String,
    /// Int64s, which the gateway writes as strings (and leaves out when zero).
    #[serde(default)]
    lease: Option<Value>,
    #[serde(default)]
    mod_revision: Option<Value>,
}

/// An int64 field of the gateway's (a string; absent when zero).
fn int64(field: &str, value: &Option<Value>) -> Result<i64, EtcdError> {
    match value {
        None => Ok(0),
        Some(Value::String(text)) => text
            .parse()
            .map_err(|_| EtcdError::Malformed(format!("{field} '{text}'"))),
        Some(other) => Ok(other.as_i64().unwrap_or(0)),
    }
}

impl RawKv {
    fn decode(&self) -> Result<KeyValue, EtcdError> {
        Ok(KeyValue {
            key: unb64(&self.key)?,
            value: unb64(&self.value)?,
            lease: int64("lease", &self.lease)?,
            mod_revision: int64("mod_revision", &self.mod_revision)?,
        })
    }
}

impl Etcd {
    /// A client of these settings; reads the certificate files now.
    pub fn new(settings: &EtcdSettings) -> Result<Etcd, EtcdError> {
        let endpoints = settings
            .endpoints
            .iter()
            .map(|url| Endpoint::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(EtcdError::Settings("no etcd endpoints".into()));
        }
        let wants_tls = settings.ca_file.is_some() || settings.cert_file.is_some();
        let tls = if endpoints.iter().any(|e| e.tls) {
            Some(tokio_rustls::TlsConnector::from(Arc::new(tls_config(
                settings,
            )?)))
        } else if wants_tls {
            return Err(EtcdError::Settings(
                "TLS files are given but no endpoint is https://".into(),
            ));
        } else {
            None
        };
        let login = match (&settings.user, &settings.password) {
            (Some(user), Some(password)) => Some(Arc::new(Login {
                user: user.clone(),
                password: password.clone(),
                token: ArcSwapOption::empty(),
            })),
            (None, None) => None,
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
        };
        Ok(Etcd {
            endpoints,
            tls,
            login,
            preferred: Arc::default(),
            watching: Arc::new(AtomicUsize::new(NOT_WATCHING)),
        })
    }

    /// The endpoints' indices, the preferred one first, then the others in turn.
    fn in_turn(&self) -> impl Iterator<Item = (usize, &Endpoint)> {
        let start = self.preferred.load(Ordering::Relaxed);
        let n = self.endpoints.len();
        (0..n).map(move |k| {
            let i = (start + k) % n;
            (i, &self.endpoints[i])
        })
    }

    /// Whether the member serving the watch still answers a linearizable read of one key
    /// under `prefix` (what the fleet's user may read) within `within`: a stopped member, or
    /// one cut off from its peers (it cannot confirm it is current with the leader), does
    /// not, while its watch stream just stays silent. When it does not, the next calls start
    /// at the next member. An expired login token is dropped and asked for anew next time.
    pub async fn watch_alive(&self, prefix: &str, within: Duration) -> Result<(), EtcdError> {
        let i = self.watching.load(Ordering::Relaxed);
        let Some(endpoint) = self.endpoints.get(i) else {
            return Ok(()); // no watch open yet: opening one has its own timeout
        };
        let body = json!({
            "key": b64(prefix),
            "range_end": range_end(prefix),
            "limit": "1",
            "keys_only": true,
        });
        let read = self.post_as_user(endpoint, "/v3/kv/range", &body);
        let failed = match tokio::time::timeout(within, read).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(EtcdError::Refused(why))) if token_expired(&why) => {
                if let Some(login) = &self.login {
                    login.token.store(None);
                }
                return Ok(());
            }
            Ok(Err(e)) => format!("{}: {e}", endpoint.url),
            Err(_) => format!("{}: no answer within {within:?}", endpoint.url),
        };
        let _ = self.preferred.compare_exchange(
            i,
            (i + 1) % self.endpoints.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        Err(EtcdError::Unreachable(format!(
            "the watch's member stopped answering ({failed})"
        )))
    }

    /// Forgets the member of the last watch, before a new one is opened.
    pub fn watch_closed(&self) {
        self.watching.store(NOT_WATCHING, Ordering::Relaxed);
    }

    /// The endpoints' URLs, as given.
    pub fn urls(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.url.clone()).collect()
    }

    /// POSTs a JSON body to a gateway path on the first endpoint that answers, logged in
    /// when the cluster wants a user (once more with a fresh token if etcd says it expired).
    async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        match self.call_once(path, body).await {
            Err(EtcdError::Refused(why)) if self.login.is_some() && token_expired(&why) => {
                if let Some(login) = &self.login {
                    login.token.store(None);
                }
                self.call_once(path, body).await
            }
            other => other,
        }
    }

    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut failures = Vec::new();
        for (i, endpoint) in self.in_turn() {
            let attempt = self.post_as_user(endpoint, path, body);
            match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
                Ok(Ok(value)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(EtcdError::Refused(why))) => return Err(EtcdError::Refused(why)),
                Ok(Err(e)) => failures.push(format!("{}: {e}", endpoint.url)),
                Err(_) => failures.push(format!("{}: timed out", endpoint.url)),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    /// POSTs to `endpoint` as the cluster's user (logged in first when no token is held).
    async fn post_as_user(
        &self,
        endpoint: &Endpoint,
        path: &str,
        body: &Value,
    ) -> Result<Value, EtcdError> {
        let token = self.token(endpoint).await?;
        self.post(endpoint, path, body, token.as_ref().map(|t| t.as_str()))
            .await
    }

    /// The login token, asking `endpoint` for one when none is held; `None` without a user.
    async fn token(&self, endpoint: &Endpoint) -> Result<Option<Arc<String>>, EtcdError> {
        let Some(login) = &self.login else {
            return Ok(None);
        };
        if let Some(token) = login.token.load_full() {
            return Ok(Some(token));
        }
        let body = json!({"name": login.user, "password": login.password});
        let answer = self
            .post(endpoint, "/v3/auth/authenticate", &body, None)
            .await
            .map_err(|e| match e {
                EtcdError::Refused(why) => {
                    EtcdError::Refused(format!("login as {}: {why}", login.user))
                }
                other => other,
            })?;
        let token = answer
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| EtcdError::Malformed("login answer without a token".into()))?;
        let token = Arc::new(token.to_string());
        login.token.store(Some(Arc::clone(&token)));
        Ok(Some(token))
    }

    /// Every key under `prefix`, and the store's revision they were read at.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<KeyValue>), EtcdError> {
        let answer = self
            .call(
                "/v3/kv/range",
                &json!({"key": b64(prefix), "range_end": range_end(prefix)}),
            )
            .await?;
        let revision = revision_of(&answer)?;
        let kvs: Vec<RawKv> = match answer.get("kvs") {
            Some(kvs) => serde_json::from_value(kvs.clone())
                .map_err(|e| EtcdError::Malformed(format!("kvs: {e}")))?,
            None => Vec::new(),
        };
        let kvs = kvs.iter().map(RawKv::decode).collect::<Result<_, _>>()?;
        Ok((revision, kvs))
    }

    /// Applies writes in transactions of at most [`MAX_TXN_OPS`] (etcd's default limit),
    /// the last write of a key winning (etcd refuses a key twice in one transaction): a
    /// burst of verdicts costs a few commits, not one each.
    pub async fn apply(&self, ops: &[Op]) -> Result<(), EtcdError> {
        for body in transactions(ops) {
            self.call("/v3/kv/txn", &body).await?;
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
        let k = b64(key);
        let compare = match compare {
            Compare::Absent | Compare::Unchanged(0) => {
                json!({"key": k, "target": "CREATE", "create_revision": "0", "result": "EQUAL"})
            }
            Compare::Unchanged(revision) => {
                json!({"key": k, "target": "MOD", "mod_revision": revision.to_string(), "result": "EQUAL"})
            }
            Compare::Lease(id) => {
                json!({"key": k, "target": "LEASE", "lease": id.to_string(), "result": "EQUAL"})
            }
        };
        let mut put = json!({"key": k, "value": b64(value)});
        if lease != 0 {
            put["lease"] = json!(lease.to_string());
        }
        let body = json!({"compare": [compare], "success": [{"request_put": put}]});
        let answer = self.call("/v3/kv/txn", &body).await?;
        // The gateway leaves out a false field.
        if answer.get("succeeded").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        revision_of(&answer).map(Some)
    }

    /// One key, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let answer = self.call("/v3/kv/range", &json!({"key": b64(key)})).await?;
        let kvs: Vec<RawKv> = match answer.get("kvs") {
            Some(kvs) => serde_json::from_value(kvs.clone())
                .map_err(|e| EtcdError::Malformed(format!("kvs: {e}")))?,
            None => Vec::new(),
        };
        kvs.first().map(RawKv::decode).transpose()
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let answer = self
            .call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))
            .await?;
        number(&answer, "ID")
    }

    /// Ends a lease now: its keys go with it.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
            .await
            .map(|_| ())
    }

    /// Renews a lease; false when it has expired (its keys are gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<bool, EtcdError> {
        let answer = self
            .call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))
            .await?;
        let result = answer.get("result").unwrap_or(&answer);
        Ok(number(result, "TTL").unwrap_or(0) > 0)
    }

    /// Watches every key under `prefix` from `revision` on, sending each batch of events
    /// to `events` until the stream ends or fails (then the caller reads the state again and
    /// watches anew), or nobody listens any more. A slow listener slows the watch down (etcd
    /// holds the events); none is dropped. The first endpoint that accepts the watch serves it.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        revision: i64,
        events: &tokio::sync::mpsc::Sender<Result<Vec<Event>, EtcdError>>,
    ) -> Result<(), EtcdError> {
        let body = json!({"create_request": {
            "key": b64(prefix),
            "range_end": range_end(prefix),
            "start_revision": revision.to_string(),
        }});
        let mut failures = Vec::new();
        for (i, endpoint) in self.in_turn() {
            let opening = async {
                let token = self.token(endpoint).await?;
                self.open(
                    endpoint,
                    "/v3/watch",
                    &body,
                    token.as_ref().map(|t| t.as_str()),
                )
                .await
            };
            let mut response = match tokio::time::timeout(REQUEST_TIMEOUT, opening).await {
                Ok(Ok(response)) => {
                    self.watching.store(i, Ordering::Relaxed);
                    self.preferred.store(i, Ordering::Relaxed);
                    response
                }
                Ok(Err(EtcdError::Refused(why))) => {
                    if token_expired(&why)
                        && let Some(login) = &self.login
                    {
                        login.token.store(None);
                    }
                    return Err(EtcdError::Refused(why));
                }
                Ok(Err(e)) => {
                    failures.push(format!("{}: {e}", endpoint.url));
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{}: timed out", endpoint.url));
                    continue;
                }
            };
            // The gateway streams one JSON object per message; frames may split or join them.
            let mut buffer: Vec<u8> = Vec::new();
            while let Some(frame) = response.frame().await {
                let frame =
                    frame.map_err(|e| EtcdError::Unreachable(format!("{}: {e}", endpoint.url)))?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                buffer.extend_from_slice(data);
                if buffer.len() > MAX_WATCH_MESSAGE {
                    return Err(EtcdError::Malformed("watch message too large".into()));
                }
                let mut batches = Vec::new();
                let mut stream = serde_json::Deserializer::from_slice(&buffer).into_iter::<Value>();
                let mut consumed = 0;
                while let Some(Ok(message)) = stream.next() {
                    consumed = stream.byte_offset();
                    batches.push(events_of(&message)?);
                }
                buffer.drain(..consumed);
                for batch in batches {
                    if events.send(Ok(batch)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            return Ok(());
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

/// Operations in one transaction at most: etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// What a conditional write requires of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// It does not exist.
    Absent,
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
}

/// The transaction bodies of `ops`: the last write of each key, in order, at most
/// [`MAX_TXN_OPS`] a transaction.
fn transactions(ops: &[Op]) -> Vec<Value> {
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
    kept.chunks(MAX_TXN_OPS)
        .map(|chunk| {
            let success: Vec<Value> = chunk
                .iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => {
                        let mut put = json!({"key": b64(key), "value": b64(value)});
                        if *lease != 0 {
                            put["lease"] = json!(lease.to_string());
                        }
                        json!({"request_put": put})
                    }
                    Op::Delete { key } => json!({"request_delete_range": {"key": b64(key)}}),
                })
                .collect();
            json!({"success": success})
        })
        .collect()
}

/// Largest watch message buffered while it arrives.
const MAX_WATCH_MESSAGE: usize = 16 << 20;

fn events_of(message: &Value) -> Result<Vec<Event>, EtcdError> {
    let Some(result) = message.get("result") else {
        if let Some(error) = message.get("error") {
            return Err(EtcdError::Refused(error.to_string()));
        }
        return Ok(Vec::new());
    };
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        return Err(EtcdError::Refused(format!("watch canceled: {result}")));
    }
    let mut events = Vec::new();
    for event in result
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kv: RawKv = serde_json::from_value(event.get("kv").cloned().unwrap_or(Value::Null))
            .map_err(|e| EtcdError::Malformed(format!("event: {e}")))?;
        let kv = kv.decode()?;
        events.push(match event.get("type").and_then(Value::as_str) {
            Some("DELETE") => Event::Delete(kv.key),
            _ => Event::Put(kv),
        });
    }
    Ok(events)
}

fn number(value: &Value, field: &str) -> Result<i64, EtcdError> {
    match value.get(field) {
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| EtcdError::Malformed(format!("{field}: {s}"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| EtcdError::Malformed(format!("{field}: {n}"))),
        _ => Err(EtcdError::Malformed(format!("no {field} in {value}"))),
    }
}

fn revision_of(answer: &Value) -> Result<i64, EtcdError> {
    number(
        answer
            .get("header")
            .ok_or_else(|| EtcdError::Malformed("no header".into()))?,
        "revision",
    )
}

/// Whether etcd refused a call because its login token expired (etcd forgets tokens after
/// `--auth-token-ttl` and on restart).
fn token_expired(why: &str) -> bool {
    why.contains("invalid auth token")
}

impl Etcd {
    /// Connects to a member, with TLS for an `https://` endpoint.
    async fn connect(&self, endpoint: &Endpoint) -> Result<Box<dyn Connection>, EtcdError> {
        let stream = TcpStream::connect(&endpoint.authority)
            .await
            .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
        if !endpoint.tls {
            return Ok(Box::new(stream));
        }
        let Some(tls) = &self.tls else {
            return Err(EtcdError::Settings("no TLS configuration".into()));
        };
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| EtcdError::Settings(format!("{}: {e}", endpoint.url)))?;
        let stream = tls
            .connect(name, stream)
            .await
            .map_err(|e| EtcdError::Unreachable(format!("TLS: {e}")))?;
        Ok(Box::new(stream))
    }

    /// Opens a POST and returns the response once its head has arrived.
    async fn open(
        &self,
        endpoint: &Endpoint,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, EtcdError> {
        let stream = self.connect(endpoint).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = hyper::Request::post(path)
            .header(hyper::header::HOST, &endpoint.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, token);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| EtcdError::Malformed(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = http_body_util::Limited::new(response.into_body(), 64 << 10)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            let hint = if text.contains("CommonName") {
                " (etcd's JSON gateway, which geosteer speaks, refuses client certificates \
                 with a CommonName: issue geosteer's without one, naming it in the SAN only)"
            } else {
                ""
            };
            let why = format!("{status}: {}{hint}", text.trim_end());
            return Err(if status.is_server_error() {
                EtcdError::Unavailable(format!("{}: {why}", endpoint.url))
            } else {
                EtcdError::Refused(why)
            });
        }
        Ok(response)
    }

    /// POSTs and reads the whole JSON answer (bounded).
    async fn post(
        &self,
        endpoint: &Endpoint,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Value, EtcdError> {
        let response = self.open(endpoint, path, body, token).await?;
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_WATCH_MESSAGE)
            .collect()
            .await
            .map_err(|e| EtcdError::Unreachable(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| EtcdError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_and_watch_messages() {
        assert_eq!(range_end("/g/"), B64.encode("/g0"));
        let message = json!({"result": {"events": [
            {"kv": {"key": b64("/g/o/z/n"), "value": b64("drain"), "mod_revision": "42"}},
            {"type": "DELETE", "kv": {"key": b64("/g/o/z/m")}}
        ]}});
        assert_eq!(
            events_of(&message).unwrap(),
            vec![
                Event::Put(KeyValue {
                    key: "/g/o/z/n".into(),
                    value: "drain".into(),
                    lease: 0,
                    mod_revision: 42,
                }),
                Event::Delete("/g/o/z/m".into())
            ]
        );
        assert!(events_of(&json!({"result": {"canceled": true}})).is_err());
    }

    #[test]
    fn transactions_keep_the_last_write_of_a_key_and_stay_within_etcd_s_limit() {
        let put = |key: &str, value: &str| Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 7,
        };
        let bodies = transactions(&[
            put("/g/a", "down"),
            Op::Delete { key: "/g/o".into() },
            put("/g/a", "up"),
        ]);
        assert_eq!(
            bodies,
            vec![json!({"success": [
                {"request_delete_range": {"key": b64("/g/o")}},
                {"request_put": {"key": b64("/g/a"), "value": b64("up"), "lease": "7"}},
            ]})]
        );
        let many: Vec<Op> = (0..300).map(|i| put(&format!("/g/{i}"), "up")).collect();
        let sizes: Vec<usize> = transactions(&many)
            .iter()
            .map(|b| b["success"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, vec![MAX_TXN_OPS, MAX_TXN_OPS, 300 - 2 * MAX_TXN_OPS]);
    }

    #[test]
    fn endpoints_and_settings_are_checked_at_start() {
        let settings = |urls: &[&str]| EtcdSettings {
            endpoints: urls.iter().map(|u| u.to_string()).collect(),
            ..EtcdSettings::default()
        };
        let e = Endpoint::parse("https://[::1]:2379/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.authority.as_str(), e.tls),
            ("::1", "[::1]:2379", true)
        );
        assert!(Etcd::new(&settings(&["etcd:2379"])).is_err());
        assert!(Etcd::new(&settings(&["http://etcd"])).is_err());
        assert!(Etcd::new(&settings(&[])).is_err());
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
