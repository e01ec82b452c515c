//! The DNS front end: the only module that speaks the wire protocol and uses hickory types.
//!
//! `server` owns the sockets; `response` turns one query into one response against one
//! snapshot; `ecs` handles client subnets; `wire` holds the encodings the snapshot builder
//! precomputes. Nothing here changes state: it reads the published snapshot and answers.

#[cfg(target_os = "linux")]
mod batch;
pub mod ecs;
pub mod query;
pub mod response;
pub mod server;
pub mod wire;

pub use response::{
    ExplainAccess, Outcome, Rcode, ServeOptions, Transport, respond, respond_general,
};
pub use server::{BoundListeners, bind};
