//! The state file: what an instance must not forget across a restart. Overrides set
//! through it (alone: all of them; in a fleet: those not yet written to etcd), and in a
//! fleet the fleet's overrides as last seen, with the revision of each key's last write.
//!
//! It is read before the first answer, so a restarted instance never answers a drained
//! node, even for a moment and even with etcd unreachable; it is written whenever what it
//! holds changes, to a temporary file that is synced and renamed over the old one, so a
//! crash leaves the old file or the new one, never half of either.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;

use crate::answer::{FleetKey, Outbox, Override};

/// Largest state file read: a few hundred bytes per overridden node.
const MAX_STATE_BYTES: u64 = 16 << 20;

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kept {
    /// The fleet's overrides as last seen (a cleared one as `null`), with each key's
    /// revision: what overrides set here while cut off are compared against.
    #[serde(default)]
    pub fleet: Vec<FleetOverride>,
    /// Overrides set through this instance that the fleet does not have yet (alone: every
    /// override), a clearing as `null`.
    #[serde(default)]
    pub local: Vec<LocalOverride>,
}

/// An override as the fleet held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetOverride {
    /// Zone, as the fleet names it.
    pub zone: String,
    /// Node name.
    pub node: String,
    /// The override; `None`: cleared.
    pub set: Option<Override>,
    /// etcd's revision of the key's last write.
    pub revision: i64,
}

/// An override set through this instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalOverride {
    /// Zone, as the fleet names it.
    pub zone: String,
    /// Node name.
    pub node: String,
    /// The override; `None`: cleared.
    pub set: Option<Override>,
}

impl Kept {
    /// The fleet's overrides as last seen.
    pub fn seen(&self) -> Vec<(FleetKey, Option<Override>)> {
        (self.fleet.iter())
            .map(|o| ((o.zone.clone(), o.node.clone()), o.set))
            .collect()
    }

    /// The overrides set here that the fleet does not have yet (alone: all).
    pub fn set_here(&self) -> Vec<(FleetKey, Option<Override>)> {
        (self.local.iter())
            .map(|o| ((o.zone.clone(), o.node.clone()), o.set))
            .collect()
    }

    /// What an instance alone keeps: every override set through it.
    pub fn alone(outbox: &Outbox) -> Kept {
        Kept {
            fleet: Vec::new(),
            local: local_overrides(outbox, 0),
        }
    }
}

/// The overrides in `outbox` numbered after `written`, as the state file keeps them.
pub fn local_overrides(outbox: &Outbox, written: u64) -> Vec<LocalOverride> {
    outbox
        .overrides_after(written)
        .map(|((zone, node), _, set)| LocalOverride {
            zone: zone.clone(),
            node: node.clone(),
            set,
        })
        .collect()
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// The file exists but cannot be read (or is larger than a state file can be).
    #[error("state file {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The file is not a state file (an edit gone wrong, a damaged disk).
    #[error(
        "state file {path}: {source}; fix or remove it (removing it forgets the overrides it kept)"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: serde_json::Error,
    },
    /// The new file could not be written.
    #[error("state file {path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Reads the state file; nothing kept when there is none yet.
pub fn load(path: &Path) -> Result<Kept, KeepError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Kept::default()),
        _ => {}
    }
    let text =
        crate::policy::read_capped(path, MAX_STATE_BYTES, "it").map_err(|why| KeepError::Read {
            path: path.to_path_buf(),
            why,
        })?;
    serde_json::from_str(&text).map_err(|source| KeepError::Malformed {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the state file: a synced temporary file renamed over the old one.
pub fn save(path: &Path, kept: &Kept) -> Result<(), KeepError> {
    use std::io::Write as _;
    let write = |source| KeepError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let text = serde_json::to_vec_pretty(kept).map_err(|e| write(std::io::Error::other(e)))?;
    let mut file = std::fs::File::create(&temporary).map_err(write)?;
    file.write_all(&text).map_err(write)?;
    file.sync_all().map_err(write)?;
    std::fs::rename(&temporary, path).map_err(write)
}

/// Keeps the state file of `path` up to date, off the caller's task: the latest value
/// given is written; an older one still being written is simply followed by it.
#[derive(Debug, Clone)]
pub struct Keeper {
    latest: watch::Sender<Kept>,
}

impl Keeper {
    /// Starts the writer task for `path`, which holds `kept` now.
    pub fn start(path: PathBuf, kept: Kept) -> Keeper {
        let (latest, mut changes) = watch::channel(kept);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let kept = changes.borrow_and_update().clone();
                let path = path.clone();
                let saved = tokio::task::spawn_blocking(move || save(&path, &kept)).await;
                match saved {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "overrides are not kept for a restart"),
                    Err(e) => warn!(error = %e, "state file writer failed"),
                }
            }
        });
        Keeper { latest }
    }

    /// What is to be kept now; written unless it is what was kept already.
    pub fn keep(&self, kept: Kept) {
        self.latest.send_if_modified(|current| {
            let changed = *current != kept;
            if changed {
                *current = kept;
            }
            changed
        });
    }
}

/// Alone: keeps every override set through this instance, as its outbox holds them.
pub async fn keep_alone(keeper: Keeper, mut outbox: watch::Receiver<Outbox>) {
    loop {
        let kept = Kept::alone(&outbox.borrow_and_update());
        keeper.keep(kept);
        if outbox.changed().await.is_err() {
            return; // the publisher is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_state_survives_the_file_and_a_bad_file_is_located() {
        let dir = std::env::temp_dir().join(format!("geosteer-keep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        assert_eq!(load(&path).unwrap(), Kept::default());
        let kept = Kept {
            fleet: vec![FleetOverride {
                zone: "z".into(),
                node: "tokyo".into(),
                set: Some(Override::Drain),
                revision: 12,
            }],
            local: vec![LocalOverride {
                zone: "z".into(),
                node: "tokyo".into(),
                set: None,
            }],
        };
        save(&path, &kept).unwrap();
        assert_eq!(load(&path).unwrap(), kept);
        let key = ("z".to_string(), "tokyo".to_string());
        assert_eq!(kept.seen(), vec![(key.clone(), Some(Override::Drain))]);
        assert_eq!(kept.set_here(), vec![(key, None)]);
        std::fs::write(&path, "{\"local\": [{\"zone\": 1}]}").unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(
            error.contains("state.json") && error.contains("line 1"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
