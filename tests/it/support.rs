//! Test support: the shared black-box harness (`geosteer_harness`), and what only tests need.

pub(crate) use geosteer_harness::*;

/// The test zone's snapshot against the nested-schema test database, built in process, for
/// tests of the response path without a server.
pub(crate) fn fixture_snapshot() -> geosteer::answer::Snapshot {
    geosteer::service::load(&geosteer::loader::Sources {
        zones: repo("tests/fixtures/zones"),
        geo: vec![repo("tests/fixtures/geo-city.mmdb")],
        asn: None,
    })
    .expect("fixtures load")
    .1
}
