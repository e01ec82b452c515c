//! Writes the small GeoIP databases the integration tests use, in both schemas geosteer reads:
//! `tests/fixtures/geo-city.mmdb` (MaxMind GeoIP2 City shape, nested) and
//! `tests/fixtures/geo-flat.mmdb` (DB-IP Lite / ip-location-db shape, flat).
//! The map itself is in `tests/harness/src/geo_fixtures.rs`; `tests/fixtures/README.md` lists it.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

use geosteer_harness::geo_fixtures;

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (name, bytes) in geo_fixtures::build_all() {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
