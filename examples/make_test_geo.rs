//! Writes the small GeoIP databases the integration tests use, in both schemas geosteer reads:
//! `tests/fixtures/geo-city.mmdb` (MaxMind GeoIP2 City shape, nested) and
//! `tests/fixtures/geo-flat.mmdb` (DB-IP Lite / ip-location-db shape, flat).
//! The map itself is in `tests/support/geo_fixtures.rs`; `tests/fixtures/README.md` lists it.

#[path = "../tests/support/geo_fixtures.rs"]
mod geo_fixtures;

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (name, bytes) in geo_fixtures::build_all() {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
