//! Any policy file text: parsed and validated into a zone or refused with located errors,
//! never a panic; a zone that validates also ranks and builds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match geosteer::policy::parse_zone(std::path::Path::new("fuzz.yaml"), text, 1) {
        Ok(zone) => {
            // What a valid file leads to must not panic either: a policy-only explanation
            // reads every rule, fence and node.
            for steered in &zone.steered {
                let _ = steered.candidate_nodes();
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refusal says why");
            assert!(!errors.to_string().is_empty());
        }
    }
});
