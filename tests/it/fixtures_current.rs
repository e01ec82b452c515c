//! The committed test databases are exactly what their generator writes, so the table in
//! tests/fixtures/README.md and the code that builds the files cannot drift apart.

use crate::support;

#[test]
fn committed_geo_fixtures_match_the_generator() {
    for (name, bytes) in support::geo_fixtures::build_all() {
        let committed =
            std::fs::read(support::repo("tests/fixtures").join(name)).expect("fixture exists");
        assert!(
            committed == bytes,
            "tests/fixtures/{name} is stale: run `cargo run --example make_test_geo`"
        );
    }
}

#[test]
fn committed_drill_database_matches_the_generator() {
    let committed =
        std::fs::read(support::repo("deploy/drill/geo.mmdb")).expect("the drill database exists");
    assert!(
        committed == support::geo_fixtures::drill(),
        "deploy/drill/geo.mmdb is stale: run `cargo run --example make_test_geo`"
    );
}
