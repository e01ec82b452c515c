//! Black-box tests of the `geosteer` binary and its library, in one test binary: each module
//! is one area (protocol, steering, failover, reload, ...); `support` starts the real binary
//! on an ephemeral loopback port, talks to it over UDP and TCP, and waits with `eventually`.
// Tests are observers: they read the clock to bound their waits.
#![allow(clippy::disallowed_methods)]

mod support;

mod admin;
mod carriers;
mod checks;
mod diff;
mod dnssec;
mod failover;
mod fast_path;
mod fixtures_current;
mod fleet;
mod fuzz_inputs;
mod fuzz_respond;
mod geo_tables;
mod hostile;
mod latency;
mod layers;
mod octodns;
mod policy_errors;
mod protocol;
mod reload;
mod shipped;
mod signed;
mod spread;
mod status_page;
mod steering;
mod wildcards;
mod zero_alloc;
mod zonefiles;
