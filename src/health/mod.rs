//! Health checking: probes (`probe`), the per-node check loop (`runner`), the pure flap
//! damping type (`flap`) and the supervision of every node's check task (`supervise`).
//!
//! Checks only observe and report; they never touch answer tables. The publisher, the single
//! writer, plans which nodes are checked (a [`CheckPlan`] per load of the policy) and takes
//! their reports; it decides what a node's effective state is (health plus administrative
//! overrides) and rebuilds answers when it changes.

pub mod flap;
pub mod probe;
pub mod runner;
pub mod supervise;

pub use flap::{FlapDamping, Health};
pub use probe::{ProbeResult, TlsConfigs, probe};
pub use runner::{NodeKey, PlannedCheck, ProbeStats, Report, run_checks};
pub use supervise::{CheckPlan, supervise};
