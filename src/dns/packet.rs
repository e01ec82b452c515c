//! One packet in, one response out, counted and sampled: the function every serve loop (UDP
//! batches, UDP elsewhere, TCP) calls, so what a query costs and what it counts is the same
//! whichever way it came in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::options::ServeOptions;
use super::querylog::{QuerySampler, log_query};
use super::response::respond;
use crate::answer::Snapshot;
use crate::metrics::QueryCounters;
use crate::wire::Transport;

/// What every serving thread and connection shares: how to answer, and the counters.
pub(crate) struct Serving {
    /// How the responder behaves beyond the zones.
    pub options: ServeOptions,
    /// Query counters, registered once.
    pub counters: QueryCounters,
}

/// Answers the packets of one serving thread or connection.
pub(crate) struct PacketHandler {
    serving: Arc<Serving>,
    transport: Transport,
    sampler: QuerySampler,
}

impl PacketHandler {
    /// A handler for packets arriving over `transport`, with a query-log sampler of its own.
    pub(crate) fn new(serving: Arc<Serving>, transport: Transport) -> Self {
        let sampler = QuerySampler::new(serving.options.query_log_every);
        PacketHandler {
            serving,
            transport,
            sampler,
        }
    }

    /// Writes the response to `packet` into `out`, counts it and logs it if sampled. False
    /// when nothing must be sent (responses, runts). Allocates nothing on the steered path.
    // A sampled query is timed for its log line.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn answer(
        &mut self,
        snapshot: &Snapshot,
        packet: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        let sampled = self.sampler.sample().then(Instant::now);
        let Some(outcome) = respond(
            snapshot,
            packet,
            src,
            self.transport,
            &self.serving.options,
            out,
        ) else {
            return false;
        };
        self.serving
            .counters
            .count_in(&snapshot.zone_counters, self.transport, outcome);
        if let Some(started) = sampled {
            log_query(src, self.transport, out, started.elapsed());
        }
        true
    }
}
