//! Writes the test GeoIP databases (tests/fixtures/*.mmdb) and the drill's
//! (deploy/drill/geo.mmdb) from their definitions in the harness; a test checks the
//! committed files are what this writes. Run from the repository: `cargo run --example
//! make_test_geo`.

use geosteer_harness::geo_fixtures;

fn main() -> std::io::Result<()> {
    for (name, bytes) in geo_fixtures::build_all() {
        std::fs::write(format!("tests/fixtures/{name}"), bytes)?;
    }
    std::fs::write("deploy/drill/geo.mmdb", geo_fixtures::drill())
}
