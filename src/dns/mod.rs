//! The DNS front end: the only module that speaks the wire protocol and uses hickory types.
//!
//! `server` owns the sockets; `response` turns one query into one response against one
//! snapshot; `ecs` handles client subnets; `wire` holds the encodings the snapshot builder
//! precomputes. Nothing here changes state: it reads the published snapshot and answers.

#[cfg(target_os = "linux")]
mod batch;
pub mod ecs;
mod packet;
pub mod query;
mod querylog;
pub mod response;
pub mod server;

pub use crate::wire::{Outcome, Rcode, Transport};
pub use response::{ExplainAccess, ServeOptions, respond, respond_general};
pub use server::{BoundListeners, bind};
