//! Any latency feed body: parsed and validated against the test zones, applied whole or
//! refused with every reason, never a panic.
#![no_main]

use std::time::{Duration, SystemTime};

use geosteer::latency::ZoneLatency;
use geosteer::latency::feed::FeedBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<FeedBatch>(data) else {
        return;
    };
    static ZONES: std::sync::OnceLock<Vec<geosteer::policy::Zone>> = std::sync::OnceLock::new();
    let zones = ZONES.get_or_init(|| {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        geosteer::policy::load_path(&fixtures.join("zones")).expect("the zones load")
    });
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match batch.validate(zones, None, now) {
        Ok(valid) => {
            let mut latency: Vec<ZoneLatency> =
                zones.iter().map(|_| ZoneLatency::default()).collect();
            valid.apply(&mut latency, None);
        }
        Err(errors) => assert!(!errors.reasons().is_empty(), "a refusal says why"),
    }
});
