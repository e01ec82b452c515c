//! Wiring: load policy and databases with the one loader (`crate::loader`), start the
//! publisher (the single writer), the health checks it plans, the fleet task that reads its
//! outbox, the admin interface that reads its view, the feed file watcher, the reload
//! triggers (SIGHUP, file changes) and the DNS listeners.
//! `check` builds a snapshot through the same loader, so what it accepts is what starts.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::admin::{Admin, AdminError, Readers};
use crate::answer::{self, Command, Publisher, Snapshot, SnapshotReader};
use crate::config::ServeConfig;
use crate::dns::{self, ServeOptions};
use crate::loader::{self, LoadError, Loaded, Sources};
use crate::policy::Zone;
use crate::steer;

/// Queued health reports before checks wait for the publisher.
const REPORT_QUEUE: usize = 4096;

/// Why the server could not start; each variant's message is written for an operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Policy or databases could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// The admin interface could not start.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The fleet's etcd settings are wrong (an endpoint, a certificate, a password).
    #[error(transparent)]
    Fleet(#[from] crate::fleet::etcd::EtcdError),
    /// The state file cannot be read.
    #[error(transparent)]
    Keep(#[from] crate::keep::KeepError),
    /// The cookie secret file is unreadable.
    #[error("cookie secret file {path}: {source}")]
    CookieSecretUnreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The cookie secret file is malformed.
    #[error("cookie secret file {path}: {source}")]
    CookieSecret {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: dns::cookie::SecretError,
    },
    /// A long-lived task stopped while serving.
    #[error("the {task} task {why}; exiting so that the service manager restarts geosteer")]
    TaskStopped {
        /// Which task.
        task: &'static str,
        /// How it stopped.
        why: String,
    },
}

/// Loads and builds a snapshot from policy alone (every checked node up), as `check` does.
pub fn load(sources: &Sources) -> Result<(Vec<Zone>, Snapshot), LoadError> {
    let Loaded { zones, geo, .. } = loader::load(sources)?;
    let availability = steer::policy_availability(&zones);
    let snapshot = build_unmeasured(&zones, geo, &availability);
    Ok((zones, snapshot))
}

/// Answer tables from policy and availability with nothing measured: what `check` and
/// `diff` build.
// Ranked as of now: nothing is measured, so time only dates the (empty) damping state.
#[allow(clippy::disallowed_methods)]
pub fn build_unmeasured(
    zones: &[Zone],
    geo: std::sync::Arc<crate::geo::GeoDb>,
    availability: &[Vec<steer::Availability>],
) -> Snapshot {
    let rankings = steer::rank_all(
        zones,
        &geo,
        &[],
        &mut Default::default(),
        std::time::SystemTime::now(),
    );
    answer::build(zones, geo, &rankings, availability)
}

/// Addresses a running server listens on, for its readiness lines.
#[derive(Debug, Clone)]
pub struct Bound {
    /// DNS, UDP and TCP.
    pub dns: Vec<SocketAddr>,
    /// Admin HTTP, when enabled.
    pub admin: Option<SocketAddr>,
}

/// Runs a server until `shutdown` turns true; `ready` gets the bound addresses once every
/// socket is listening (tests and supervisors wait for it).
pub async fn run(
    config: ServeConfig,
    ready: impl FnOnce(&Bound),
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StartError> {
    let sources = Sources {
        zones: config.zones.clone(),
        geo: config.geo_dbs.clone(),
        asn: config.asn_db.clone(),
    };
    let Loaded { zones, geo, asn } = loader::load(&sources)?;
    info!(zones = zones.len(), places = geo.places().len(), geo_dbs = ?config.geo_dbs, "policy loaded");
    // The recorder first: the publisher registers its counters and gauges as it starts.
    let prometheus = config.admin.and_then(|_| install_metrics());
    let kept = match &config.state_file {
        Some(path) => crate::keep::load(path)?,
        None => crate::keep::Kept::default(),
    };
    let publisher = Publisher::new(zones, geo, asn)
        .with_source(sources)
        .restore(&kept.seen(), &kept.set_here());
    let reader = publisher.reader();
    let (command_tx, command_rx) = mpsc::channel(64);
    let admin = match config.admin {
        Some(addr) => {
            let read = Readers {
                snapshot: publisher.reader(),
                view: publisher.view_reader(),
            };
            let settings = config.settings_json();
            let access = crate::admin::Access {
                token: config.admin_token.clone(),
                names: config.admin_hosts.clone(),
            };
            Some(Admin::bind(addr, access, command_tx.clone(), read, prometheus, settings).await?)
        }
        None => None,
    };
    let listeners = dns::bind(&config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config
                .listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            source,
        })?;
    let mut tasks = Supervised::default();
    let (publisher, fleet) = join_fleet(&config, publisher, kept, &command_tx, &mut tasks)?;
    start_writer(publisher, command_rx, &mut tasks);
    start_inputs(&config, &command_tx, &mut tasks);
    let bound = Bound {
        dns: listeners.local_addrs(),
        admin: admin.as_ref().and_then(Admin::local_addr),
    };
    if let Some(admin) = admin {
        tasks.spawn("admin interface", admin.serve());
    }
    // Secrets are read (and refused) before anything says it is listening.
    let options = serve_options(&config)?;
    ready(&bound);
    // systemd (Type=notify): the sockets are bound and the first snapshot is published.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "cannot notify systemd of readiness");
    }
    let served = serve_until_stopped(listeners, reader, options, shutdown, tasks).await;
    if let Some((etcd, membership)) = fleet {
        // A restart on this identity need not wait for the lease to run out.
        membership.leave(&etcd).await;
    }
    served
}

/// In a fleet: starts the fleet task, which reads what the publisher tells the fleet and
/// sends it the fleet's news (and, for a probe agent, its measurements).
/// Alone: keeps the overrides set through this instance in the state file, if any.
/// In a fleet, also the client and the membership to leave the fleet with at shutdown.
fn join_fleet(
    config: &ServeConfig,
    publisher: Publisher,
    kept: crate::keep::Kept,
    commands: &mpsc::Sender<Command>,
    tasks: &mut Supervised,
) -> Result<(Publisher, Option<Departure>), StartError> {
    let keeper =
        (config.state_file.clone()).map(|path| crate::keep::Keeper::start(path, kept.clone()));
    if config.fleet.endpoints.is_empty() {
        if let Some(keeper) = keeper {
            tasks.spawn(
                "state file",
                crate::keep::keep_alone(keeper, publisher.outbox()),
            );
        }
        return Ok((publisher, None));
    }
    let etcd = crate::fleet::etcd::Etcd::new(&config.fleet)?;
    let view = publisher.view_reader();
    let (publisher, outbox) = publisher.with_fleet(config.fleet_ready_wait);
    let fleet = crate::fleet::FleetConfig {
        etcd,
        prefix: config.fleet_prefix.clone(),
        identity: config.identity.clone(),
    };
    let agent = config
        .probe_vantage
        .clone()
        .map(|vantage| crate::fleet::Agent::new(vantage, view));
    let membership = crate::fleet::Membership::default();
    let departure = (fleet.etcd.clone(), membership.clone());
    tasks.spawn_fallible(
        "fleet",
        crate::fleet::run(
            fleet,
            commands.clone(),
            outbox,
            agent,
            (keeper, kept),
            membership,
        ),
    );
    Ok((publisher, Some(departure)))
}

/// What a fleet member leaves the fleet with at shutdown.
type Departure = (crate::fleet::etcd::Etcd, crate::fleet::Membership);

/// Starts the single writer and the health checks it plans.
fn start_writer(publisher: Publisher, commands: mpsc::Receiver<Command>, tasks: &mut Supervised) {
    let (report_tx, report_rx) = mpsc::channel::<crate::health::Report>(REPORT_QUEUE);
    tasks.spawn(
        "health checks",
        crate::health::supervise(publisher.check_plans(), report_tx),
    );
    tasks.spawn("publisher", publisher.run(report_rx, commands));
}

/// Starts what sends the publisher work on its own: reload triggers (SIGHUP, file
/// changes) and the latency feed file.
fn start_inputs(config: &ServeConfig, commands: &mpsc::Sender<Command>, tasks: &mut Supervised) {
    // Registered before readiness is announced, so an early SIGHUP reloads instead of
    // taking the signal's default action (exit).
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => {
            tasks.spawn(
                "SIGHUP reloads",
                reload_on_sighup(hangups, commands.clone()),
            );
        }
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; reload through the admin interface instead")
        }
    }
    tasks.spawn(
        "file change reloads",
        reload_on_change(config.clone(), commands.clone()),
    );
    if let Some(path) = config.latency_feed.clone() {
        tasks.spawn(
            "latency feed file",
            crate::feedfile::watch(path, commands.clone()),
        );
    }
}

/// How the DNS front end serves, from the configuration.
fn serve_options(config: &ServeConfig) -> Result<ServeOptions, StartError> {
    Ok(ServeOptions {
        max_udp_payload: config.max_udp_payload,
        identity: config.identity.clone(),
        version: (!config.hide_version).then(|| format!("geosteer {}", env!("CARGO_PKG_VERSION"))),
        explain: (!config.explain_label.is_empty()).then(|| dns::ExplainAccess {
            label: config.explain_label.to_ascii_lowercase(),
            allowed: config.explain_from.clone(),
        }),
        query_log_every: config.query_log_every,
        tcp: dns::TcpLimits {
            max_connections: config.tcp_max_connections.min(tcp_connections_allowed()),
            per_source: config.tcp_per_source,
            lifetime: config.tcp_lifetime,
        },
        rrl: config.rrl.clone(),
        cookies: match &config.cookie_secret_file {
            None => dns::CookieSecrets::random(),
            Some(path) => {
                let bytes =
                    std::fs::read(path).map_err(|source| StartError::CookieSecretUnreadable {
                        path: path.clone(),
                        source,
                    })?;
                // Bytes that are not UTF-8 become characters that are not hexadecimal: the
                // error then names their line.
                dns::CookieSecrets::from_text(&String::from_utf8_lossy(&bytes)).map_err(
                    |source| StartError::CookieSecret {
                        path: path.clone(),
                        source,
                    },
                )?
            }
        },
    })
}

/// Serves until shutdown; then open TCP connections finish and the checks stop. A
/// long-lived task that stops before then (a panic is a bug) ends the process with an
/// error, so systemd or the kubelet restarts it: never a server that answers from frozen
/// tables while it has stopped failing over.
async fn serve_until_stopped(
    listeners: dns::BoundListeners,
    reader: SnapshotReader,
    options: ServeOptions,
    shutdown: tokio::sync::watch::Receiver<bool>,
    mut tasks: Supervised,
) -> Result<(), StartError> {
    info!(
        connections = options.tcp.max_connections,
        per_source = options.tcp.per_source,
        rrl_rate = options.rrl.rate,
        "TCP connection table and response-rate limiting"
    );
    let serving = dns::server::serve(listeners, reader, options, shutdown.clone());
    let failure = tokio::select! {
        () = serving => (!*shutdown.borrow()).then(|| ("DNS serving", "stopped".to_string())),
        stopped = tasks.first_to_stop() => Some(stopped),
    };
    tasks.shutdown().await;
    match failure {
        None => Ok(()),
        Some((task, why)) => {
            error!(
                task,
                why, "a long-lived task stopped; exiting so the supervisor restarts geosteer"
            );
            metrics::counter!(crate::metrics::TASK_FAILURES, "task" => task).increment(1);
            Err(StartError::TaskStopped { task, why })
        }
    }
}

/// File descriptors kept for everything but DNS TCP connections: UDP sockets, the admin
/// interface, reloads reading policy and databases, health checks, the feed file.
const RESERVED_FDS: u64 = 256;

/// How many TCP connections the process can hold: the soft file descriptor limit, raised to
/// the hard one first, less a reserve, so that the admin interface and reloads still work
/// when DNS connections have taken every slot they may.
fn tcp_connections_allowed() -> usize {
    let soft = raise_fd_limit();
    usize::try_from(soft.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX)
}

/// Raises the soft limit on open files to the hard limit; the soft limit afterwards.
#[allow(unsafe_code)]
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The long-lived tasks of a running server, by name. None of them ends on its own before
/// shutdown; one that does has failed.
#[derive(Default)]
struct Supervised {
    /// Each ends with why it stopped when it can tell.
    tasks: tokio::task::JoinSet<Result<(), String>>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Supervised {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_fallible(name, async move {
            task.await;
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// A task that may end with an error it can explain (the fleet task: an identity
    /// another live member holds).
    fn spawn_fallible<E: std::fmt::Display>(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let handle = (self.tasks).spawn(async move { task.await.map_err(|e| e.to_string()) });
        self.names.insert(handle.id(), name);
    }

    /// The first task to stop, and how (`pending` forever when there are none).
    async fn first_to_stop(&mut self) -> (&'static str, String) {
        match self.tasks.join_next_with_id().await {
            Some(Ok((id, Ok(())))) => (self.name(id), "returned".into()),
            Some(Ok((id, Err(why)))) => (self.name(id), format!("stopped: {why}")),
            Some(Err(e)) => {
                let why = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                (self.name(e.id()), why.into())
            }
            None => std::future::pending().await,
        }
    }

    fn name(&self, id: tokio::task::Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("a task")
    }

    async fn shutdown(&mut self) {
        self.tasks.shutdown().await;
    }
}

/// Installs the process-wide Prometheus recorder (once) and keeps its histograms trimmed.
fn install_metrics() -> Option<PrometheusHandle> {
    match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => {
            crate::metrics::describe();
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            Some(handle)
        }
        Err(e) => {
            warn!(error = %e, "metrics recorder not installed; /metrics will be unavailable");
            None
        }
    }
}

/// Sends a reload to the publisher and logs the outcome (for signals and file changes; the
/// admin interface reports it to its caller).
async fn request_reload(commands: &mpsc::Sender<Command>, why: &str) {
    let (reply, answer) = tokio::sync::oneshot::channel();
    if commands.send(Command::Reload { reply }).await.is_err() {
        return;
    }
    match answer.await {
        Ok(Ok(summary)) => info!(trigger = why, %summary, "reload applied"),
        Ok(Err(error)) => {
            warn!(trigger = why, %error, "reload rejected; the previous policy keeps serving")
        }
        Err(_) => {}
    }
}

/// Reloads on SIGHUP, telling systemd it is reloading and when it is ready again.
#[cfg(unix)]
async fn reload_on_sighup(
    mut hangups: tokio::signal::unix::Signal,
    commands: mpsc::Sender<Command>,
) {
    while hangups.recv().await.is_some() {
        // Type=notify-reload wants the monotonic time with RELOADING=1.
        let mut reloading = vec![sd_notify::NotifyState::Reloading];
        if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
            reloading.push(now);
        }
        let _ = sd_notify::notify(&reloading);
        request_reload(&commands, "SIGHUP").await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }
}

/// How often policy and database files are looked at for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Reloads when a policy, records or database file changes (names, sizes, modification times; polled,
/// which works on every file system and needs no watcher limits). The files are first
/// looked at when this is called, before the server says it is ready, not when the task
/// first runs: an edit made right after readiness must count as a change.
fn reload_on_change(
    config: ServeConfig,
    commands: mpsc::Sender<Command>,
) -> impl std::future::Future<Output = ()> {
    type Stamp = (u64, Option<std::time::SystemTime>);
    let stamp = |path: &Path| -> Stamp {
        let meta = std::fs::metadata(path).ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        (len, meta.and_then(|m| m.modified().ok()))
    };
    // The files each policy names, found when its stamp was last seen: a policy is read
    // again only when it changed (a large one takes real time to parse every second).
    let mut named: HashMap<PathBuf, (Stamp, Vec<PathBuf>)> = HashMap::new();
    let mut fingerprint = move |config: &ServeConfig| -> Vec<(PathBuf, Stamp)> {
        // Policy files only (other files may live beside them, e.g. a latency feed).
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&config.zones) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect(),
            Err(_) => vec![config.zones.clone()],
        };
        // The records files policies name, and the files they include: edits to them
        // reload too.
        named.retain(|p, _| paths.contains(p));
        let mut records_files: Vec<PathBuf> = Vec::new();
        for policy in &paths {
            let now = stamp(policy);
            let files = match named.get(policy) {
                Some((seen, files)) if *seen == now => files.clone(),
                _ => {
                    let files = crate::policy::zonefile::files_named_by(policy);
                    named.insert(policy.clone(), (now, files.clone()));
                    files
                }
            };
            records_files.extend(files);
        }
        paths.extend(records_files);
        paths.extend(config.geo_dbs.iter().cloned());
        paths.extend(config.asn_db.iter().cloned());
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect()
    };
    let mut seen = fingerprint(&config);
    async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tick.tick().await;
            let now = fingerprint(&config);
            if now != seen {
                seen = now;
                request_reload(&commands, "file change").await;
            }
        }
    }
}
