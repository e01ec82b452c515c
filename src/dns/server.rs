//! UDP and TCP serving on tokio.
//!
//! UDP: a few tasks share each socket, each with its own receive and response buffers, so a
//! query costs one `recv_from`, one `respond` and one `send_to`, without a task spawn.
//! TCP: one task per connection, queries answered in order (pipelining), bounded by an idle
//! timeout and a connection limit so slow or idle clients cannot exhaust the server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use super::response::{ServeOptions, Transport, respond};
use crate::answer::SnapshotReader;
use crate::metrics::QueryCounters;

/// Idle time after which a TCP connection is closed (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent TCP connections served; more wait in the kernel's accept queue.
const MAX_TCP_CONNECTIONS: usize = 1024;
/// Tasks receiving on each UDP socket.
const UDP_TASKS_PER_SOCKET: usize = 2;
/// At shutdown, how long a connection waits for a query already on its way.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);
/// How long open TCP connections may take to finish at shutdown.
const TCP_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Sockets bound for each `--listen` address: UDP and TCP on the same port.
#[derive(Debug)]
pub struct BoundListeners {
    /// UDP sockets.
    pub udp: Vec<UdpSocket>,
    /// TCP listeners, one per UDP socket, same address.
    pub tcp: Vec<TcpListener>,
}

impl BoundListeners {
    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

/// Binds UDP and TCP on each address. With port 0 the kernel picks the UDP port and TCP
/// takes the same one (retrying a few times if that port is taken for TCP).
pub async fn bind(addrs: &[SocketAddr]) -> io::Result<BoundListeners> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for addr in addrs {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let socket = UdpSocket::bind(addr).await?;
            let bound = socket.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(listener) => {
                    udp.push(socket);
                    tcp.push(listener);
                    break;
                }
                Err(e) if addr.port() == 0 && attempt < 16 => {
                    debug!(%bound, error = %e, "TCP port taken, picking another");
                }
                Err(e) => {
                    return Err(io::Error::new(e.kind(), format!("TCP {bound}: {e}")));
                }
            }
        }
    }
    Ok(BoundListeners { udp, tcp })
}

/// Serves until the process ends. Socket errors are logged; a single bad datagram or
/// connection never stops serving.
pub async fn serve(
    listeners: BoundListeners,
    reader: SnapshotReader,
    options: ServeOptions,
    shutdown: watch::Receiver<bool>,
) {
    let options = Arc::new((options, QueryCounters::register()));
    let mut tasks = tokio::task::JoinSet::new();
    for socket in listeners.udp {
        let socket = Arc::new(socket);
        for _ in 0..UDP_TASKS_PER_SOCKET {
            tasks.spawn(serve_udp(
                Arc::clone(&socket),
                reader.clone(),
                Arc::clone(&options),
                shutdown.clone(),
            ));
        }
    }
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    for listener in listeners.tcp {
        tasks.spawn(serve_tcp(
            listener,
            reader.clone(),
            Arc::clone(&options),
            Arc::clone(&permits),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    reader: SnapshotReader,
    options: Arc<(ServeOptions, QueryCounters)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut packet = vec![0u8; 65535];
    let mut response = Vec::with_capacity(4096);
    let mut sampler = QuerySampler::new(options.0.query_log_every);
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut packet) => received,
            _ = shutdown.changed() => return,
        };
        let (len, src) = match received {
            Ok(received) => received,
            Err(e) => {
                // ICMP-induced errors (port unreachable from an earlier send) land here.
                debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        let snapshot = reader.load();
        let (options, counters) = &*options;
        let sampled = sampler.sample().then(std::time::Instant::now);
        if let Some(outcome) = respond(
            &snapshot,
            &packet[..len],
            src,
            Transport::Udp,
            options,
            &mut response,
        ) {
            counters.count_in(&snapshot.zone_counters, Transport::Udp, outcome);
            if let Some(started) = sampled {
                log_query(src, Transport::Udp, &response, started.elapsed());
            }
            if let Err(e) = socket.send_to(&response, src).await {
                debug!(%src, error = %e, "UDP send error");
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    reader: SnapshotReader,
    options: Arc<(ServeOptions, QueryCounters)>,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, src)) => {
                options.1.connection();
                let reader = reader.clone();
                let options = Arc::clone(&options);
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    if let Err(e) = serve_connection(stream, src, reader, options, shutdown).await {
                        debug!(%src, error = %e, "TCP connection ended");
                    }
                    drop(permit);
                });
                while connections.try_join_next().is_some() {}
            }
            Err(e) => {
                warn!(error = %e, "TCP accept failed");
                // Typically EMFILE: back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Shutting down: no new connections; open ones finish the query they are on.
    drop(listener);
    let drained = tokio::time::timeout(TCP_DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("TCP connections still open after {TCP_DRAIN_TIMEOUT:?}; closing them");
    }
}

/// One query in `every` is logged (0: none): a counter per serving task, no shared state.
struct QuerySampler {
    every: u64,
    seen: u64,
}

impl QuerySampler {
    fn new(every: u64) -> Self {
        QuerySampler { every, seen: 0 }
    }

    /// True for the queries to log.
    fn sample(&mut self) -> bool {
        if self.every == 0 {
            return false;
        }
        self.seen = self.seen.wrapping_add(1);
        self.seen.is_multiple_of(self.every)
    }
}

/// Logs a sampled query from its response: client, ECS, name, type, answer, rcode, latency.
fn log_query(src: SocketAddr, transport: Transport, response: &[u8], elapsed: Duration) {
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

/// Answers length-prefixed queries in order until the client closes or goes idle.
async fn serve_connection(
    mut stream: TcpStream,
    src: SocketAddr,
    reader: SnapshotReader,
    options: Arc<(ServeOptions, QueryCounters)>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut packet = vec![0u8; 65535];
    let mut response = Vec::with_capacity(4096);
    let mut framed: Vec<u8> = Vec::with_capacity(4098);
    let mut sampler = QuerySampler::new(options.0.query_log_every);
    loop {
        // Wait for the next query (cancel-safe, so shutdown can interrupt the wait). Once
        // shutting down, queries already sent are still answered; an idle connection closes.
        let wait = if *shutdown.borrow() {
            SHUTDOWN_GRACE
        } else {
            TCP_IDLE_TIMEOUT
        };
        // The first byte of the length with a cancel-safe read (tokio's `read` loses nothing
        // when cancelled); readiness alone can be stale after an exact read.
        let mut len_bytes = [0u8; 2];
        let first = tokio::select! {
            first = tokio::time::timeout(wait, stream.read(&mut len_bytes[..1])) => first,
            changed = shutdown.changed(), if !*shutdown.borrow() => {
                if changed.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        match first {
            Err(_) | Ok(Ok(0)) => return Ok(()), // idle, or the client closed
            Ok(result) => {
                result?;
            }
        }
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut len_bytes[1..])).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(result) => result?,
        };
        let len = u16::from_be_bytes(len_bytes) as usize;
        if len == 0 {
            return Ok(());
        }
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut packet[..len]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "query body timed out"))??;
        let snapshot = reader.load();
        let (serve_options, counters) = &*options;
        let sampled = sampler.sample().then(std::time::Instant::now);
        if let Some(outcome) = respond(
            &snapshot,
            &packet[..len],
            src,
            Transport::Tcp,
            serve_options,
            &mut response,
        ) {
            counters.count_in(&snapshot.zone_counters, Transport::Tcp, outcome);
            if let Some(started) = sampled {
                log_query(src, Transport::Tcp, &response, started.elapsed());
            }
            // One write per response: the two-byte length and the message together.
            let Ok(length) = u16::try_from(response.len()) else {
                warn!(%src, bytes = response.len(), "response too large for TCP framing; dropped");
                continue;
            };
            framed.clear();
            framed.extend_from_slice(&length.to_be_bytes());
            framed.extend_from_slice(&response);
            stream.write_all(&framed).await?;
        }
    }
}
