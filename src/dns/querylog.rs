//! Query logging: one query in N, sampled per serving thread or connection, written from
//! the response's bytes. Off (N = 0), it costs one comparison per query; on, the parsing and
//! formatting happen only for the sampled queries.

use std::net::SocketAddr;
use std::time::Duration;

use crate::wire::Transport;

/// One query in `every` is logged (0: none): a counter per serving task, no shared state.
pub(crate) struct QuerySampler {
    every: u64,
    seen: u64,
}

impl QuerySampler {
    pub(crate) fn new(every: u64) -> Self {
        QuerySampler { every, seen: 0 }
    }

    /// True for the queries to log.
    pub(crate) fn sample(&mut self) -> bool {
        if self.every == 0 {
            return false;
        }
        self.seen = self.seen.wrapping_add(1);
        self.seen.is_multiple_of(self.every)
    }
}

/// Logs a sampled query from its response: client, ECS, name, type, answer, rcode, latency.
pub(crate) fn log_query(src: SocketAddr, transport: Transport, response: &[u8], elapsed: Duration) {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let Ok(message) = hickory_proto::op::Message::from_vec(response) else {
        return;
    };
    let (qname, qtype) = message
        .queries
        .first()
        .map_or((String::new(), String::new()), |q| {
            (q.name().to_ascii(), q.query_type().to_string())
        });
    let ecs = message
        .edns
        .as_ref()
        .and_then(|e| e.option(EdnsCode::Subnet))
        .and_then(|o| match o {
            EdnsOption::Subnet(s) => Some(format!(
                "{}/{}/{}",
                s.addr(),
                s.source_prefix(),
                s.scope_prefix()
            )),
            _ => None,
        })
        .unwrap_or_default();
    let answer: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
    tracing::info!(
        client = %src,
        transport = ?transport,
        ecs = %ecs,
        qname = %qname,
        qtype = %qtype,
        rcode = %message.metadata.response_code,
        answer = %answer.join(" "),
        latency_us = elapsed.as_micros() as u64,
        "query"
    );
}
