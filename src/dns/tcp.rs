//! DNS over TCP (RFC 7766) that no one source can monopolise: a connection table bounded in
//! all and per source, idle connections closed to make room when it is full, and every
//! connection bounded in idle time, write time, lifetime and queries. TCP is the fallback
//! every truncated UDP answer depends on, so it must stay open to new clients under abuse.

use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{debug, warn};

use super::options::TCP_IDLE_TIMEOUT as IDLE_TIMEOUT;
use super::packet::{PacketHandler, Serving};
use crate::answer::SnapshotReader;
use crate::config::TcpLimits;
use crate::wire::Transport;

/// Time a response may take to be written: a client that does not read is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Queries answered on one connection before it winds down (the client reconnects): high,
/// since a resolver pipelining thousands of queries a second must not lose those in flight
/// at every close; the lifetime bounds a connection first.
const MAX_QUERIES: u32 = 1_000_000;
/// Winding down, queries already on their way are still answered for at most this long,
/// so a client pipelining at the limit loses none of them.
const WIND_DOWN: Duration = Duration::from_secs(1);
/// How long a new connection waits for a slot when the table is full and idle ones are
/// being closed to make room.
const ROOM_WAIT: Duration = Duration::from_millis(250);
/// At shutdown, how long a connection waits for a query already on its way.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);
/// How long open connections may take to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Counters of the per-source table; sources that hash alike share one.
const SOURCE_BUCKETS: usize = 16_384;

/// What every listener of one server shares: the table's slots, the per-source counters,
/// and the signal that asks idle connections to make room.
pub(super) struct Table {
    slots: Arc<Semaphore>,
    sources: Box<[AtomicU32]>,
    per_source: u32,
    lifetime: Duration,
    /// Wakes idle connections: to close and make room for a new client when the table is
    /// full, or to wind down at shutdown. One signal, so a waiting connection holds one
    /// registration across its queries instead of making two per query.
    wake_idle: Notify,
    /// Seeded at start, so no one can aim their addresses at a victim's counter.
    seed: std::collections::hash_map::RandomState,
}

impl Table {
    pub(super) fn new(limits: TcpLimits) -> Arc<Table> {
        Arc::new(Table {
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            sources: (0..SOURCE_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            per_source: limits.per_source.max(1),
            lifetime: limits.lifetime,
            wake_idle: Notify::new(),
            seed: std::collections::hash_map::RandomState::new(),
        })
    }

    /// The counter of a source: an IPv4 address, or an IPv6 address's /64 (one host's).
    fn bucket(&self, ip: IpAddr) -> usize {
        let mut hasher = self.seed.build_hasher();
        match crate::net::unmap(ip) {
            IpAddr::V4(v4) => v4.hash(&mut hasher),
            IpAddr::V6(v6) => (u128::from(v6) >> 64).hash(&mut hasher),
        }
        (hasher.finish() as usize) % self.sources.len()
    }

    /// Counts a connection against its source, unless the source has its share already.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<SourceShare> {
        let bucket = self.bucket(ip);
        let counter = &self.sources[bucket];
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.per_source).then_some(n + 1)
            })
            .ok()
            .map(|_| SourceShare {
                table: Arc::clone(self),
                bucket,
            })
    }
}

/// One connection's place in its source's count, given back when the connection ends.
struct SourceShare {
    table: Arc<Table>,
    bucket: usize,
}

impl Drop for SourceShare {
    fn drop(&mut self) {
        self.table.sources[self.bucket].fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts and serves connections on one listener until `shutdown`.
pub(super) async fn serve(
    listener: TcpListener,
    reader: SnapshotReader,
    serving: Arc<Serving>,
    table: Arc<Table>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, src) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "TCP accept failed");
                // Typically EMFILE: back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        serving.counters.connection();
        // A source over its share is closed at once: it cannot fill the table.
        let Some(share) = table.enter(src.ip()) else {
            debug!(%src, "TCP connection refused: the source has its share");
            continue;
        };
        let permit = match Arc::clone(&table.slots).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                // Full: idle connections close to make room (RFC 7766 §6.2.3).
                table.wake_idle.notify_waiters();
                tokio::time::timeout(ROOM_WAIT, Arc::clone(&table.slots).acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some(permit) = permit else {
            debug!(%src, "TCP connection refused: the table is full");
            continue;
        };
        let (reader, serving, table, shutdown) = (
            reader.clone(),
            Arc::clone(&serving),
            Arc::clone(&table),
            shutdown.clone(),
        );
        connections.spawn(async move {
            if let Err(e) = serve_connection(stream, src, reader, serving, &table, shutdown).await {
                debug!(%src, error = %e, "TCP connection ended");
            }
            drop((permit, share));
        });
        while connections.try_join_next().is_some() {}
    }
    // Shutting down: no new connections; open ones finish the query they are on.
    drop(listener);
    table.wake_idle.notify_waiters();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("TCP connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Answers length-prefixed queries in order until the client closes, goes idle, does not
/// read its answers, or uses up the connection's lifetime or queries; an idle connection
/// also closes when the table is full and a new client needs its slot.
///
/// Reads are buffered: one read takes the length and as many pipelined queries as have
/// arrived, every complete one is answered, and their answers go out in one write.
async fn serve_connection(
    mut stream: TcpStream,
    src: SocketAddr,
    reader: SnapshotReader,
    serving: Arc<Serving>,
    table: &Table,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let closes_at = tokio::time::Instant::now() + table.lifetime;
    // Buffers grow to what the client sends and is answered, not to 64 KiB up front.
    let mut input = Frames::default();
    let mut response = Vec::with_capacity(512);
    let mut output: Vec<u8> = Vec::with_capacity(1024);
    let mut handler = PacketHandler::new(serving, Transport::Tcp);
    let mut served = 0u32;
    let mut winding_down: Option<tokio::time::Instant> = None;
    // Kept across queries: the idle signal's registration, and one timer that runs late
    // rather than early (moved on only when it fires before the current deadline), so a
    // query costs no timer or waiter bookkeeping.
    let woken = table.wake_idle.notified();
    tokio::pin!(woken);
    let timer = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(timer);
    loop {
        // Every complete query already read, answered in order, the answers written at once.
        output.clear();
        while let Some(frame) = input.next_frame() {
            let Some(packet) = frame else {
                return Ok(()); // a zero length: the client is done
            };
            served = served.saturating_add(1);
            let snapshot = reader.load();
            if handler.answer(&snapshot, packet, src, &mut response) {
                let Ok(length) = u16::try_from(response.len()) else {
                    warn!(%src, bytes = response.len(), "response too large for TCP framing; dropped");
                    continue;
                };
                output.extend_from_slice(&length.to_be_bytes());
                output.extend_from_slice(&response);
            }
        }
        input.compact();
        write_answers(&mut stream, &output).await?;
        // Past its lifetime or queries, the connection winds down like a shutdown: queries
        // already on their way are answered (for at most WIND_DOWN), then it closes.
        let now = tokio::time::Instant::now();
        if served >= MAX_QUERIES || now >= closes_at {
            let until = *winding_down.get_or_insert(now + WIND_DOWN);
            if now >= until {
                return Ok(());
            }
        }
        // Wait for more (cancel-safe, so the idle signal can interrupt the wait). Between
        // queries, once shutting down or winding down, queries already sent are still
        // answered and an idle connection closes; inside a query, its rest must come within
        // IDLE_TIMEOUT.
        let pending = input.pending();
        let wait = if pending {
            IDLE_TIMEOUT
        } else if *shutdown.borrow() || winding_down.is_some() {
            SHUTDOWN_GRACE
        } else {
            IDLE_TIMEOUT.min(closes_at.saturating_duration_since(now))
        };
        let deadline = now + wait;
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        let space = input.space();
        let waited = loop {
            tokio::select! {
                read = stream.read(&mut *space) => break Waited::Read(read),
                () = &mut timer => {
                    if tokio::time::Instant::now() >= deadline {
                        break Waited::TimedOut;
                    }
                    timer.as_mut().reset(deadline);
                }
                () = &mut woken, if !pending => {
                    woken.set(table.wake_idle.notified());
                    break Waited::Woken;
                }
            }
        };
        match waited {
            Waited::TimedOut if pending => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "query body timed out",
                ));
            }
            // Idle or past its lifetime, or closed.
            Waited::TimedOut | Waited::Read(Ok(0)) => return Ok(()),
            // At shutdown, round again to wind down; else the table is full and an idle
            // connection makes room for a new client.
            Waited::Woken if *shutdown.borrow() => continue,
            Waited::Woken => return Ok(()),
            Waited::Read(Err(e)) => return Err(e),
            Waited::Read(Ok(n)) => input.filled(n),
        }
    }
}

/// How a connection's wait for more input ended.
enum Waited {
    Read(io::Result<usize>),
    TimedOut,
    /// The idle signal: the table is full, or the server is shutting down.
    Woken,
}

/// Writes a connection's answers: at once when the socket has room (the usual case, with
/// no timer), else waiting at most WRITE_TIMEOUT for a client that does not read.
async fn write_answers(stream: &mut TcpStream, output: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while written < output.len() {
        match stream.try_write(&output[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if written < output.len() {
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&output[written..]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client not reading"))??;
    }
    Ok(())
}

/// A connection's input: bytes read and not yet answered, cut into length-prefixed
/// queries (RFC 1035 §4.2.2).
#[derive(Default)]
struct Frames {
    buffer: Vec<u8>,
    /// Where unread bytes start, and end.
    start: usize,
    end: usize,
}

impl Frames {
    /// Bytes read first: a couple of typical queries with their lengths.
    const INITIAL: usize = 1024;

    /// The next complete query: `Some(None)` for a zero length (the client is done),
    /// `None` when no complete one is buffered.
    fn next_frame(&mut self) -> Option<Option<&[u8]>> {
        let have = &self.buffer[self.start..self.end];
        let [hi, lo, ..] = *have else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            return Some(None);
        }
        if have.len() < 2 + len {
            return None;
        }
        let from = self.start + 2;
        self.start = from + len;
        Some(Some(&self.buffer[from..from + len]))
    }

    /// Whether part of a query is buffered.
    fn pending(&self) -> bool {
        self.start < self.end
    }

    /// Moves what is left to the front.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Room to read into: at least the rest of a pending query (a length says how much),
    /// growing the buffer only for that.
    fn space(&mut self) -> &mut [u8] {
        let have = &self.buffer[self.start..self.end];
        let wanted = match *have {
            [hi, lo, ..] => 2 + usize::from(u16::from_be_bytes([hi, lo])),
            _ => 2,
        };
        let needed = (self.start + wanted).max(Self::INITIAL);
        if self.buffer.len() < needed {
            self.buffer.resize(needed, 0);
        }
        if self.end == self.buffer.len() {
            // Full of complete queries: cannot happen after they are answered and compacted.
            self.buffer.resize(self.buffer.len() + Self::INITIAL, 0);
        }
        &mut self.buffer[self.end..]
    }

    /// `n` bytes were read into [`Self::space`].
    fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buffer.len());
    }
}
