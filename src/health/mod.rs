//! Health checking: probes (`probe`), the per-node check loop (`runner`) and the pure flap
//! damping type (`flap`).
//!
//! Checks only observe and report; they never touch answer tables. Reports go to the
//! publisher, the single writer, which decides what a node's effective state is (health plus
//! administrative overrides) and rebuilds answers when it changes.

pub mod flap;
pub mod probe;
pub mod runner;

pub use flap::{FlapDamping, Health};
pub use probe::{ProbeResult, TlsConfigs, probe};
pub use runner::{NodeKey, Report, run_checks};
