//! Start-up: load policy and database with the shared loader, start the publisher (the single
//! writer), the health checks, the admin interface and the DNS listeners. `check` uses the same
//! loading path, so what it accepts is what starts.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::admin::{Admin, AdminError};
use crate::answer::{self, Publisher, Snapshot};
use crate::config::ServeConfig;
use crate::dns::{self, ServeOptions};
use crate::geo::{GeoDb, GeoError};
use crate::health::{NodeKey, TlsConfigs, run_checks};
use crate::policy::{self, PolicyErrors, Zone};

/// Queued health reports before checks wait for the publisher.
const REPORT_QUEUE: usize = 4096;

/// Why the server could not start; each variant's message is written for an operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Policy files have errors (all of them are listed).
    #[error("invalid zone policy:\n{0}")]
    Policy(#[from] PolicyErrors),
    /// The GeoIP database could not be opened.
    #[error(transparent)]
    Geo(#[from] GeoError),
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
}

/// Loads policy and databases: the one loading path.
pub fn load_inputs(
    zones: &Path,
    geo_dbs: &[PathBuf],
) -> Result<(Vec<Zone>, Arc<GeoDb>), StartError> {
    let zones = policy::load_path(zones)?;
    let geo = Arc::new(GeoDb::open_all(geo_dbs)?);
    Ok((zones, geo))
}

/// Loads and builds a snapshot from policy alone (every checked node up), as `check` does.
pub fn load(zones: &Path, geo_dbs: &[PathBuf]) -> Result<(Vec<Zone>, Snapshot), StartError> {
    let (zones, geo) = load_inputs(zones, geo_dbs)?;
    let availability = answer::policy_availability(&zones);
    let rankings = answer::rank_all(
        &zones,
        &geo,
        &[],
        &mut Default::default(),
        std::time::SystemTime::now(),
    );
    let snapshot = answer::build(&zones, geo, &rankings, &availability);
    Ok((zones, snapshot))
}

/// Addresses a running server listens on, for its readiness lines.
#[derive(Debug, Clone)]
pub struct Bound {
    /// DNS, UDP and TCP.
    pub dns: Vec<SocketAddr>,
    /// Admin HTTP, when enabled.
    pub admin: Option<SocketAddr>,
}

/// Runs a server until the process ends; `ready` gets the bound addresses once every socket
/// is listening (tests and supervisors wait for it).
pub async fn run(config: ServeConfig, ready: impl FnOnce(&Bound)) -> Result<(), StartError> {
    let (zones, geo) = load_inputs(&config.zones, &config.geo_dbs)?;
    info!(zones = zones.len(), places = geo.places().len(), geo_dbs = ?config.geo_dbs, "policy loaded");
    let asn = match &config.asn_db {
        Some(path) => Some(Arc::new(crate::geo::AsnDb::open(path)?)),
        None => None,
    };
    let carriers = zones
        .iter()
        .flat_map(|z| &z.nodes)
        .any(|n| !n.carriers.is_empty());
    if carriers && asn.is_none() {
        warn!(
            "nodes have carrier addresses but no --asn-db is given: every client gets each node's first address"
        );
    }
    let publisher = Publisher::new(zones, geo, asn);
    let reader = publisher.reader();
    let zones = publisher.zones();

    let (report_tx, report_rx) = mpsc::channel(REPORT_QUEUE);
    let (command_tx, command_rx) = mpsc::channel(64);

    let admin = match config.admin {
        Some(addr) => Some(
            Admin::bind(
                addr,
                config.admin_token.clone(),
                command_tx.clone(),
                install_metrics(),
            )
            .await?,
        ),
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

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(publisher.run(report_rx, command_rx));
    let tls = TlsConfigs::new();
    let mut checked = 0;
    for (zi, zone) in zones.iter().enumerate() {
        for (ni, node) in zone.nodes.iter().enumerate() {
            if let Some(check) = node.check.clone() {
                tasks.spawn(run_checks(
                    NodeKey { zone: zi, node: ni },
                    check,
                    tls.clone(),
                    report_tx.clone(),
                ));
                checked += 1;
            }
        }
    }
    drop(report_tx);
    if let Some(path) = config.latency_feed.clone() {
        tasks.spawn(crate::feedfile::watch(path, command_tx.clone()));
    }
    info!(nodes = checked, "health checks started");

    let bound = Bound {
        dns: listeners.local_addrs(),
        admin: admin.as_ref().and_then(Admin::local_addr),
    };
    if let Some(admin) = admin {
        tasks.spawn(admin.serve());
    }
    ready(&bound);
    let options = ServeOptions {
        max_udp_payload: config.max_udp_payload,
        identity: config.identity.clone(),
        version: (!config.hide_version).then(|| format!("geosteer {}", env!("CARGO_PKG_VERSION"))),
        explain: (!config.explain_label.is_empty()).then(|| dns::ExplainAccess {
            label: config.explain_label.to_ascii_lowercase(),
            allowed: config.explain_from.clone(),
        }),
    };
    dns::server::serve(listeners, reader, options).await;
    tasks.shutdown().await;
    Ok(())
}

/// Installs the process-wide Prometheus recorder (once) and keeps its histograms trimmed.
fn install_metrics() -> Option<PrometheusHandle> {
    match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => {
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
