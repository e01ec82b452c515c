//! The one loader of policy and databases: start-up, every reload and `check` read their
//! files here, so what `check` accepts is what starts and what a reload swaps in.
//!
//! Loading is all or nothing and has no side effects beyond a log line: a caller gets every
//! input parsed and validated, or an error naming the file, and decides what to do with it.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::warn;

use crate::geo::{AsnDb, GeoDb, GeoError};
use crate::policy::{self, PolicyErrors, Zone};

/// Where policy and databases are read from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Policy file or directory.
    pub zones: PathBuf,
    /// GeoIP databases, merged in order.
    pub geo: Vec<PathBuf>,
    /// ASN database, for carrier lines and AS groups.
    pub asn: Option<PathBuf>,
}

/// Everything the sources hold, parsed and validated.
#[derive(Debug)]
pub struct Loaded {
    /// The zones, in policy order.
    pub zones: Vec<Zone>,
    /// The GeoIP tables.
    pub geo: Arc<GeoDb>,
    /// The ASN tables, when a database is given.
    pub asn: Option<Arc<AsnDb>>,
}

/// Why the sources could not be loaded; each message is written for an operator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Policy files have errors (all of them are listed).
    #[error("invalid zone policy:\n{0}")]
    Policy(#[from] PolicyErrors),
    /// A GeoIP or ASN database could not be opened.
    #[error(transparent)]
    Geo(#[from] GeoError),
}

/// Loads policy and databases. Warns when nodes have carrier addresses but no ASN database
/// can tell clients' carriers apart.
pub fn load(sources: &Sources) -> Result<Loaded, LoadError> {
    let zones = policy::load_path(&sources.zones)?;
    let geo = Arc::new(GeoDb::open_all(&sources.geo)?);
    let holes = policy::holes::fence_holes(&zones, &geo);
    if !holes.is_empty() {
        return Err(LoadError::Policy(PolicyErrors(holes)));
    }
    let asn = match &sources.asn {
        Some(path) => Some(Arc::new(AsnDb::open(path)?)),
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
    Ok(Loaded { zones, geo, asn })
}
