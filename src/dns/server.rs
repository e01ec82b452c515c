//! UDP and TCP serving.
//!
//! UDP (Linux): one `SO_REUSEPORT` socket per core and listen address, each served by a thread
//! of its own in batches (see `batch`). Elsewhere: tokio tasks sharing each socket, each with
//! its own buffers, so a query costs one `recv_from`, one `respond` and one `send_to`.
//! TCP: one task per connection, queries answered in order (pipelining), bounded by an idle
//! timeout and a connection limit so slow or idle clients cannot exhaust the server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
#[cfg(not(target_os = "linux"))]
use tokio::net::UdpSocket;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use super::options::ServeOptions;
use super::packet::{PacketHandler, Serving};
use crate::answer::SnapshotReader;
use crate::metrics::QueryCounters;
use crate::wire::Transport;

/// Idle time after which a TCP connection is closed (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent TCP connections served; more wait in the kernel's accept queue.
const MAX_TCP_CONNECTIONS: usize = 1024;
/// Tasks receiving on each UDP socket (where there is no batch fast path).
#[cfg(not(target_os = "linux"))]
const UDP_TASKS_PER_SOCKET: usize = 2;
/// How often a UDP thread blocked in a receive wakes to look for shutdown.
const UDP_WAKE_INTERVAL: Duration = Duration::from_millis(100);
/// At shutdown, how long a connection waits for a query already on its way.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);
/// How long open TCP connections may take to finish at shutdown.
const TCP_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Sockets bound for each `--listen` address: UDP and TCP on the same port.
#[derive(Debug)]
pub struct BoundListeners {
    /// UDP sockets: per address, one per core sharing the port (`SO_REUSEPORT`).
    pub udp: Vec<Vec<std::net::UdpSocket>>,
    /// TCP listeners, one per address, on the UDP sockets' port.
    pub tcp: Vec<TcpListener>,
}

impl BoundListeners {
    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|group| group.first()?.local_addr().ok())
            .collect()
    }
}

/// UDP sockets per listen address: one per core, so each core receives its own share.
fn udp_sockets_per_address() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// Binds `count` sockets sharing `addr` with `SO_REUSEPORT` (the kernel spreads datagrams
/// across them by flow hash). Port 0 is resolved by the first; the rest join its port.
fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(bound), Type::DGRAM, Some(Protocol::UDP))?;
        if bound.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_port(true)?;
        // Room for bursts while a thread is busy; the kernel caps it at net.core.rmem_max.
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket.bind(&bound.into())?;
        socket.set_read_timeout(Some(UDP_WAKE_INTERVAL))?;
        let socket: std::net::UdpSocket = socket.into();
        bound = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Binds UDP and TCP on each address. A fixed port binds TCP first: `SO_REUSEPORT` would
/// let a second instance's UDP sockets join a running instance's group and take (and drop)
/// a share of its queries until the second instance failed on TCP. With port 0 the kernel
/// picks the UDP port and TCP takes the same one (retrying a few times if that port is
/// taken for TCP).
pub async fn bind(addrs: &[SocketAddr]) -> io::Result<BoundListeners> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let located = |protocol: &'static str, addr: SocketAddr| {
        move |e: io::Error| io::Error::new(e.kind(), format!("{protocol} {addr}: {e}"))
    };
    for addr in addrs {
        if addr.port() != 0 {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(located("TCP", *addr))?;
            let group =
                bind_reuseport(*addr, udp_sockets_per_address()).map_err(located("UDP", *addr))?;
            udp.push(group);
            tcp.push(listener);
            continue;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let group = bind_reuseport(*addr, udp_sockets_per_address())?;
            let bound = group
                .first()
                .map(std::net::UdpSocket::local_addr)
                .transpose()?
                .unwrap_or(*addr);
            match TcpListener::bind(bound).await {
                Ok(listener) => {
                    udp.push(group);
                    tcp.push(listener);
                    break;
                }
                Err(e) if addr.port() == 0 && attempt < 16 => {
                    debug!(%bound, error = %e, "TCP port taken, picking another");
                }
                Err(e) => return Err(located("TCP", bound)(e)),
            }
        }
    }
    Ok(BoundListeners { udp, tcp })
}

/// Serves until `shutdown`, or until a serving task stops (a bug; the caller exits). Socket
/// errors are logged; a single bad datagram or connection never stops serving.
pub async fn serve(
    listeners: BoundListeners,
    reader: SnapshotReader,
    options: ServeOptions,
    shutdown: watch::Receiver<bool>,
) {
    let serving = Arc::new(Serving {
        options,
        counters: QueryCounters::register(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    serve_udp_sockets(listeners.udp, &reader, &serving, &shutdown, &mut tasks);
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    for listener in listeners.tcp {
        tasks.spawn(serve_tcp(
            listener,
            reader.clone(),
            Arc::clone(&serving),
            Arc::clone(&permits),
            shutdown.clone(),
        ));
    }
    while let Some(ended) = tasks.join_next().await {
        if !*shutdown.borrow() {
            // A listener or UDP thread stopped while serving (a panic is a bug): serving on
            // with part of the sockets unread would look alive and drop queries, so the
            // caller is told and the process exits for its supervisor to restart it.
            let why = match ended {
                Err(e) if e.is_panic() => "panicked",
                _ => "ended",
            };
            tracing::error!(why, "a DNS serving task stopped before shutdown");
            return;
        }
    }
}

/// Linux: a thread per socket, batching; they stop within a wake interval of shutdown.
#[cfg(target_os = "linux")]
fn serve_udp_sockets(
    groups: Vec<Vec<std::net::UdpSocket>>,
    reader: &SnapshotReader,
    serving: &Arc<Serving>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    for socket in groups.into_iter().flatten() {
        let (reader, serving, stop) = (reader.clone(), Arc::clone(serving), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("geosteer-udp".into())
            .spawn(move || super::batch::serve_socket(socket, reader, serving, stop));
        match thread {
            Ok(handle) => {
                tasks.spawn_blocking(move || {
                    if handle.join().is_err() {
                        tracing::error!("a UDP serving thread panicked");
                    }
                });
            }
            Err(e) => warn!(error = %e, "cannot start a UDP serving thread"),
        }
    }
    let mut shutdown = shutdown.clone();
    tasks.spawn(async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

/// Elsewhere: tokio tasks sharing each socket.
#[cfg(not(target_os = "linux"))]
fn serve_udp_sockets(
    groups: Vec<Vec<std::net::UdpSocket>>,
    reader: &SnapshotReader,
    serving: &Arc<Serving>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    for socket in groups.into_iter().flatten() {
        let socket = match socket
            .set_nonblocking(true)
            .and_then(|()| UdpSocket::from_std(socket))
        {
            Ok(socket) => Arc::new(socket),
            Err(e) => {
                warn!(error = %e, "cannot serve a UDP socket");
                continue;
            }
        };
        for _ in 0..UDP_TASKS_PER_SOCKET {
            tasks.spawn(serve_udp(
                Arc::clone(&socket),
                reader.clone(),
                Arc::clone(serving),
                shutdown.clone(),
            ));
        }
    }
}

#[cfg(not(target_os = "linux"))]
async fn serve_udp(
    socket: Arc<UdpSocket>,
    reader: SnapshotReader,
    serving: Arc<Serving>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut packet = vec![0u8; 65535];
    let mut response = Vec::with_capacity(4096);
    let mut handler = PacketHandler::new(serving, Transport::Udp);
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
        if handler.answer(&snapshot, &packet[..len], src, &mut response) {
            if let Err(e) = socket.send_to(&response, src).await {
                debug!(%src, error = %e, "UDP send error");
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    reader: SnapshotReader,
    serving: Arc<Serving>,
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
                serving.counters.connection();
                let reader = reader.clone();
                let serving = Arc::clone(&serving);
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    if let Err(e) = serve_connection(stream, src, reader, serving, shutdown).await {
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

/// Answers length-prefixed queries in order until the client closes or goes idle.
async fn serve_connection(
    mut stream: TcpStream,
    src: SocketAddr,
    reader: SnapshotReader,
    serving: Arc<Serving>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut packet = vec![0u8; 65535];
    let mut response = Vec::with_capacity(4096);
    let mut framed: Vec<u8> = Vec::with_capacity(4098);
    let mut handler = PacketHandler::new(serving, Transport::Tcp);
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
        if handler.answer(&snapshot, &packet[..len], src, &mut response) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A port taken for both protocols fails on TCP, before any UDP socket is bound: a
    /// second instance never joins a running one's UDP group.
    #[tokio::test]
    async fn a_fixed_port_binds_tcp_before_udp() {
        // A port free for both protocols, held by this test for both (bounded retries: the
        // TCP side of a fresh UDP port is rarely someone else's).
        let (udp, tcp, port) = (0..50)
            .find_map(|_| {
                let udp = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
                let port = udp.local_addr().ok()?.port();
                let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).ok()?;
                Some((udp, tcp, port))
            })
            .expect("a loopback port free for UDP and TCP");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let Err(error) = bind(&[addr]).await else {
            panic!("bound a port in use");
        };
        assert!(error.to_string().starts_with("TCP "), "{error}");
        // With only UDP taken, the error is UDP's.
        drop(tcp);
        let _held = udp;
        let Err(error) = bind(&[addr]).await else {
            panic!("bound a UDP port in use");
        };
        assert!(error.to_string().starts_with("UDP "), "{error}");
    }
}
