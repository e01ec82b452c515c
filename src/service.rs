//! Start-up: load policy and database with the shared loader, publish the first snapshot,
//! bind, and serve. `check` uses the same loading path, so what it accepts is what starts.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::info;

use crate::answer::{self, Publisher, Snapshot};
use crate::config::ServeConfig;
use crate::dns::{self, Limits};
use crate::geo::{GeoDb, GeoError};
use crate::policy::{self, PolicyErrors, Zone};

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
}

/// Loads policy and database and builds a snapshot: the one loading path.
pub fn load(zones: &Path, geo_dbs: &[PathBuf]) -> Result<(Vec<Zone>, Snapshot), StartError> {
    let zones = policy::load_path(zones)?;
    let geo = Arc::new(GeoDb::open_all(geo_dbs)?);
    let snapshot = answer::build(&zones, geo);
    Ok((zones, snapshot))
}

/// Runs a server until the future resolves; `ready` gets the bound addresses once every
/// socket is listening (tests and supervisors wait for it).
pub async fn run(config: ServeConfig, ready: impl FnOnce(&[SocketAddr])) -> Result<(), StartError> {
    let (zones, snapshot) = load(&config.zones, &config.geo_dbs)?;
    info!(
        zones = zones.len(),
        places = snapshot.geo.places().len(),
        geo_dbs = ?config.geo_dbs,
        "policy loaded"
    );
    let publisher = Publisher::new(snapshot);
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
    let addrs = listeners.local_addrs();
    ready(&addrs);
    let limits = Limits {
        max_udp_payload: config.max_udp_payload,
    };
    dns::server::serve(listeners, publisher.reader(), limits).await;
    Ok(())
}
