//! The admin interface: HTTP on loopback by default; a bearer token is required whenever it is
//! bound anywhere else (and on loopback too, when one is configured). Only the probes,
//! `/healthz` and `/readyz`, answer without it — kubelets and anycast route announcers cannot
//! hold a secret — and `/readyz` then says only "ready" or "not ready", not what is missing.
//!
//! It reads the published state view and snapshot (never waiting on the publisher) and sends
//! the publisher only commands that change state; it never touches answer tables.
//!
//! - `GET /` — the status page: a live map of where clients go, nodes, timeline, what-if
//!   (`page`). It polls `GET /map?name=` and asks `GET /what-if?name=&down=&drain=&full=`.
//! - `GET /healthz` — the process is alive.
//! - `GET /readyz` — zones loaded and every checked node checked once: 200, else 503 with
//!   what is missing (for load balancers and anycast announcements). A fleet member that
//!   lost etcd stays ready (it answers from its own checks) and says so under "ready".
//! - `GET /metrics` — Prometheus text exposition.
//! - `GET /nodes` — every node: health, override, availability, last check and latency.
//! - `POST /nodes/{zone}/{node}/{action}` — `drain`, `force-up`, `force-down` or `obey` (clear);
//!   `drain?share=50` moves that percentage of the node's client networks (a staged drain).
//! - `GET /explain?name=ingest.live.example.net&client=126.0.0.1` — why that client gets
//!   those nodes, with live health and measurements (`client` may be an ECS subnet).
//! - `POST /reload` — reload policy and databases now (also on SIGHUP and file changes);
//!   400 with every error when the new files are bad (the old state keeps serving).
//! - `GET /status` — the last reload's outcome, and in a fleet whether etcd is reachable
//!   and which members are alive.
//! - `GET /config` — the effective configuration: the process's settings and every zone's
//!   policy as loaded, defaults filled in.
//! - `POST /latency` — a batch of latency measurements and load reports (JSON; see
//!   `latency::feed::FeedBatch`): applied whole, or rejected whole with every reason.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

mod guard;
mod map;
mod page;

pub use guard::{Access, token_holders};

use crate::answer::{Command, CommandError, Override, SnapshotReader, ViewReader, drain_share};
use crate::latency::feed::{FeedBatch, MAX_BATCH_BYTES};

/// Why the admin interface could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bound off loopback without a token.
    #[error(
        "the admin interface on {0} is not on loopback: give it a token (--admin-token-file or GEOSTEER_ADMIN_TOKEN)"
    )]
    TokenRequired(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen for admin on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the publisher publishes, for reading without asking it.
#[derive(Debug, Clone)]
pub struct Readers {
    /// The answers.
    pub snapshot: SnapshotReader,
    /// Node states, timeline, reload and fleet status.
    pub view: ViewReader,
}

/// What the handlers share.
#[derive(Clone)]
struct AdminState {
    commands: mpsc::Sender<Command>,
    read: Readers,
    /// The status page's census work: its workers and the results kept.
    work: Arc<map::Work>,
    prometheus: Option<PrometheusHandle>,
    /// Its token and the names it answers to.
    access: Arc<Access>,
    /// The process's settings, for `/config` (secrets left out).
    settings: Arc<serde_json::Value>,
}

/// A bound admin interface, ready to serve.
pub struct Admin {
    listener: TcpListener,
    router: Router,
}

impl Admin {
    /// Binds the interface; refuses a non-loopback address without a token.
    pub async fn bind(
        addr: SocketAddr,
        access: Access,
        commands: mpsc::Sender<Command>,
        read: Readers,
        prometheus: Option<PrometheusHandle>,
        settings: serde_json::Value,
    ) -> Result<Admin, AdminError> {
        if !addr.ip().is_loopback() && access.token.is_none() {
            return Err(AdminError::TokenRequired(addr));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        let router = router(access, commands, read, prometheus, settings);
        Ok(Admin { listener, router })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the process ends.
    pub async fn serve(self) {
        if let Err(e) = axum::serve(self.listener, self.router).await {
            tracing::error!(error = %e, "admin interface stopped");
        }
    }
}

/// The interface's routes, with the access checks in front (`guard`, then the token): what
/// `Admin` serves, and what the request fuzz target drives without a socket.
pub fn router(
    access: Access,
    commands: mpsc::Sender<Command>,
    read: Readers,
    prometheus: Option<PrometheusHandle>,
    settings: serde_json::Value,
) -> Router {
    let state = AdminState {
        commands,
        read,
        work: Arc::default(),
        prometheus,
        access: Arc::new(access),
        settings: Arc::new(settings),
    };
    Router::new()
        .route("/", get(page::page))
        .route("/map/shapes.json", get(page::shapes))
        .route("/map", get(page::map))
        .route("/what-if", get(page::what_if))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/nodes", get(nodes))
        .route("/nodes/{zone}/{node}/{action}", post(set_override))
        .route(
            "/latency",
            post(feed).layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH_BYTES)),
        )
        .route("/reload", post(reload))
        .route("/status", get(status))
        .route("/config", get(config))
        .route("/explain", get(explain))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

/// Who made a request: the name of the token it carried (`admin` for a single token),
/// `local` when no token is configured (loopback only). What changes record.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Who a request is from, if it carries a configured token (anyone when none is
/// configured): as a bearer token, or as the password of HTTP Basic authentication (any
/// user name), which is how a browser opening the status page sends it.
fn authorized(state: &AdminState, headers: &header::HeaderMap) -> Option<Actor> {
    use base64::Engine as _;
    let Some(tokens) = &state.access.token else {
        return Some(Actor("local".into()));
    };
    let holders = guard::token_holders(tokens).ok()?;
    let (scheme, credentials) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))?;
    let credentials = credentials.trim_start();
    // Authentication schemes are case-insensitive (RFC 9110 §11.1).
    let offered: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        decoded[colon + 1..].to_vec()
    } else {
        return None;
    };
    // Every token is compared, whichever matches, so timing tells nothing.
    let mut found = None;
    for (name, secret) in &holders {
        if constant_time_eq(&offered, secret.as_bytes()) {
            found = Some(Actor(name.clone()));
        }
    }
    found
}

/// Refuses requests for another Host and writes a web page could have forged (`guard`),
/// then requests without the configured token, but for the probes.
async fn require_token(
    State(state): State<AdminState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = guard::check(request.method(), request.headers(), &state.access) {
        let status = match refusal {
            guard::Refusal::Host(_) => StatusCode::MISDIRECTED_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        return (status, format!("{refusal}\n")).into_response();
    }
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let actor = authorized(&state, request.headers());
    if let Some(actor) = actor.clone() {
        request.extensions_mut().insert(actor);
    }
    if !probe && actor.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Bearer"),
                // A browser asks for credentials: any user name, the token as password.
                (
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"geosteer admin\", charset=\"UTF-8\"",
                ),
            ],
            "bearer token required\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Compares without an early exit, so response timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(state): State<AdminState>) -> Response {
    match &state.prometheus {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response(),
    }
}

/// Sends the publisher a command and waits for its reply; `Err` is the 503 to answer when
/// the publisher is gone.
async fn ask<T>(
    state: &AdminState,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Response> {
    let (reply, answer) = oneshot::channel();
    if state.commands.send(command(reply)).await.is_err() {
        return Err(unavailable());
    }
    answer.await.map_err(|_| unavailable())
}

/// The answer of a command that replies `Ok` or a refusal: `ok` of the value, else the
/// refusal with its status.
fn reply_or<T>(
    answer: Result<Result<T, CommandError>, Response>,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    match answer {
        Ok(Ok(value)) => ok(value),
        Ok(Err(error)) => (refused(&error), format!("{error}\n")).into_response(),
        Err(response) => response,
    }
}

async fn ready(State(state): State<AdminState>, headers: header::HeaderMap) -> Response {
    match state.read.view.load().ready(now()) {
        Ok(notes) if authorized(&state, &headers).is_some() && !notes.is_empty() => {
            format!("ready\n{}\n", notes.join("\n")).into_response()
        }
        Ok(_) => "ready\n".into_response(),
        Err(why) if authorized(&state, &headers).is_some() => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
    }
}

// The admin interface reads the clock for ages it shows (seconds since a check).
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

async fn nodes(State(state): State<AdminState>) -> Response {
    Json(state.read.view.load().status(now())).into_response()
}

/// Query of `POST /nodes/{zone}/{node}/{action}`: `share=50` drains half the node's
/// networks; `reason=` says why, for the audit trail.
#[derive(serde::Deserialize)]
struct DrainQuery {
    share: Option<String>,
    reason: Option<String>,
}

async fn set_override(
    State(state): State<AdminState>,
    Path((zone, node, action)): Path<(String, String, String)>,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
    actor: Option<axum::Extension<Actor>>,
) -> Response {
    let by = crate::answer::Audit::new(
        actor.map_or_else(|| "local".to_string(), |a| a.0.0),
        q.reason.as_deref(),
    );
    if let Some(share) = &q.share
        && action != "drain"
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("share={share} goes with drain only\n"),
        )
            .into_response();
    }
    let set = match action.as_str() {
        "drain" if q.share.is_some() => {
            let share = q.share.as_deref().unwrap_or_default();
            match share
                .trim_end_matches('%')
                .parse::<u8>()
                .ok()
                .and_then(drain_share)
            {
                Some(set) => Some(set),
                None => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("share '{share}' must be a percentage from 1 to 100\n"),
                    )
                        .into_response();
                }
            }
        }
        "drain" => Some(Override::Drain),
        "force-up" => Some(Override::ForceUp),
        "force-down" => Some(Override::ForceDown),
        "obey" => None,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown action '{other}': expected drain, force-up, force-down or obey\n"),
            )
                .into_response();
        }
    };
    let answer = ask(&state, |reply| Command::SetOverride {
        zone,
        node,
        set,
        by,
        reply,
    })
    .await;
    reply_or(answer, |status| Json(status).into_response())
}

/// The status of a refused command.
fn refused(error: &CommandError) -> StatusCode {
    match error {
        CommandError::NoSuchNode { .. } => StatusCode::NOT_FOUND,
        CommandError::NoFiles | CommandError::Rejected(_) => StatusCode::BAD_REQUEST,
    }
}

async fn feed(
    State(state): State<AdminState>,
    batch: Result<Json<FeedBatch>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let batch = match batch {
        Ok(Json(batch)) => batch,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let why = format!(
                "a feed batch is at most {} KiB (a fleet shares it through etcd); split it\n",
                MAX_BATCH_BYTES / 1024
            );
            return (StatusCode::PAYLOAD_TOO_LARGE, why).into_response();
        }
        Err(rejection) => return rejection.into_response(),
    };
    match ask(&state, |reply| Command::Feed { batch, reply }).await {
        Ok(Ok(applied)) => Json(serde_json::json!({ "applied": applied })).into_response(),
        Ok(Err(errors)) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "errors": errors.reasons() })),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// Query of `GET /explain`.
#[derive(serde::Deserialize)]
struct ExplainQuery {
    name: String,
    client: String,
}

async fn explain(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<ExplainQuery>,
) -> Response {
    let address = q.client.split('/').next().unwrap_or_default();
    let Ok(client) = address.parse::<std::net::IpAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("client '{}' is not an address or subnet\n", q.client),
        )
            .into_response();
    };
    match state.read.snapshot.load().explain(&q.name, client) {
        Ok(explanation) => format!("{explanation}\n").into_response(),
        Err(why) => (StatusCode::NOT_FOUND, format!("{why}\n")).into_response(),
    }
}

async fn reload(State(state): State<AdminState>) -> Response {
    let answer = ask(&state, |reply| Command::Reload { reply }).await;
    reply_or(answer, |summary| {
        format!("reloaded: {summary}\n").into_response()
    })
}

async fn status(State(state): State<AdminState>) -> Response {
    let view = state.read.view.load();
    let last_reload = match view.last_reload(now()) {
        None => serde_json::json!(null),
        Some(Ok(age)) => serde_json::json!({ "ok": true, "age_s": age }),
        Some(Err(error)) => serde_json::json!({ "ok": false, "error": error }),
    };
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "last_reload": last_reload,
        "fleet": view.fleet_json(),
    }))
    .into_response()
}

async fn config(State(state): State<AdminState>) -> Response {
    Json(serde_json::json!({
        "settings": *state.settings,
        "policy": state.read.view.load().config_json(),
    }))
    .into_response()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "state owner not running\n").into_response()
}
