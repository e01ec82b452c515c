//! One packet in, one response out, counted and sampled: the function every serve loop (UDP
//! batches, UDP elsewhere, TCP) calls, so what a query costs and what it counts is the same
//! whichever way it came in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::options::ServeOptions;
use super::querylog::{QuerySampler, log_query};
use super::response::respond;
use super::rrl::{RateLimiter, Verdict};
use crate::answer::Snapshot;
use crate::metrics::{Limited, QueryCounters};
use crate::wire::{FLAG_TC, Transport};

/// Cuts a response to its header and question, with TC set: a slipped response, which
/// tells a real client to ask again over TCP and reflects no more than its query.
fn truncate_to_question(out: &mut Vec<u8>, question_len: u16) {
    out.truncate(12 + usize::from(question_len));
    if let Some(flags) = out.get_mut(2) {
        *flags |= FLAG_TC;
    }
    if let Some(counts) = out.get_mut(6..12) {
        counts.fill(0);
    }
}

/// What every serving thread and connection shares: how to answer, the counters, and the
/// rate limiter's buckets.
pub(crate) struct Serving {
    /// How the responder behaves beyond the zones.
    pub options: ServeOptions,
    /// Query counters, registered once.
    pub counters: QueryCounters,
    /// Response-rate limiting of UDP answers.
    rrl: RateLimiter,
    /// Where the rate limiter's millisecond clock starts.
    epoch: Instant,
}

impl Serving {
    /// Shared state for `options`: the rate limiter's tables are allocated here, once.
    // The rate limiter's clock starts here.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn new(options: ServeOptions, counters: QueryCounters) -> Self {
        let rrl = RateLimiter::new(options.rrl.clone());
        Serving {
            options,
            counters,
            rrl,
            epoch: Instant::now(),
        }
    }
}

/// Answers the packets of one serving thread or connection.
pub(crate) struct PacketHandler {
    serving: Arc<Serving>,
    transport: Transport,
    sampler: QuerySampler,
    /// Responses this handler had limited, for the slip.
    limited: u32,
}

impl PacketHandler {
    /// A handler for packets arriving over `transport`, with a query-log sampler of its own.
    pub(crate) fn new(serving: Arc<Serving>, transport: Transport) -> Self {
        let sampler = QuerySampler::new(serving.options.query_log_every);
        PacketHandler {
            serving,
            transport,
            sampler,
            limited: 0,
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
        // A valid server cookie proves the source address, as TCP does: not limited.
        if self.transport == Transport::Udp && self.serving.rrl.enabled() && !outcome.cookie_valid {
            // Over UDP a source address is not proven: limit what a forged one can reflect.
            let now_ms = self.serving.epoch.elapsed().as_millis() as u64;
            let verdict =
                self.serving
                    .rrl
                    .judge(src.ip(), &outcome, out, now_ms, &mut self.limited);
            match verdict {
                Verdict::Send => {}
                Verdict::WouldLimit => self.serving.counters.rate_limited(Limited::Would),
                // An extended rcode (BADVERS) lives in the OPT record, which a slip cuts:
                // dropped instead, never sent as NOERROR.
                Verdict::Slip if (outcome.rcode as u16) > 0x0F => {
                    self.serving.counters.rate_limited(Limited::Dropped);
                    return false;
                }
                Verdict::Slip => {
                    self.serving.counters.rate_limited(Limited::Slipped);
                    truncate_to_question(out, outcome.question_len);
                }
                Verdict::Drop => {
                    self.serving.counters.rate_limited(Limited::Dropped);
                    return false;
                }
            }
        }
        if let Some(started) = sampled {
            log_query(src, self.transport, out, started.elapsed());
        }
        true
    }
}
