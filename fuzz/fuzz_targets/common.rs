//! What the targets share: the test zone's snapshot, built once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use geosteer::answer::Snapshot;
use geosteer::loader::Sources;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(path)
}

/// The test zone against the nested-schema test database.
pub fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        geosteer::service::load(&Sources {
            zones: fixture("zones"),
            geo: vec![fixture("geo-city.mmdb")],
            asn: None,
        })
        .expect("the fixtures load")
        .1
    })
}
