//! The DNS front end: the only module that speaks the wire protocol and uses hickory types.
//!
//! `server` owns the sockets (with `batch`, the Linux UDP fast path); `packet` is what every
//! serve loop calls per packet (answer, count, sample for `querylog`); `query` parses
//! ordinary queries in place; `response` turns one query into one response against one
//! snapshot, following CNAMEs over referral, steered and static answers; `ecs` handles
//! client subnets; `chaos` the identity queries. DNS numbers and record bodies are in
//! `crate::wire`. Nothing here changes state: it reads the published snapshot and answers.

#[cfg(target_os = "linux")]
mod batch;
mod chaos;
pub mod cookie;
pub mod ecs;
mod options;
mod packet;
pub mod query;
mod querylog;
pub mod response;
mod rrl;
pub mod server;
mod tcp;
mod writer;

pub use crate::config::RrlSettings;
pub use crate::config::TcpLimits;
pub use crate::wire::{Outcome, Rcode, Transport};
pub use cookie::CookieSecrets;
pub use options::{ExplainAccess, ServeOptions};
pub use response::{respond, respond_general};
pub use rrl::{RateLimiter, Verdict};
pub use server::{BoundListeners, bind};
pub use tcp::WRITE_TIMEOUT as TCP_WRITE_TIMEOUT;
