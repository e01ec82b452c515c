//! UDP and TCP serving.
//!
//! UDP (Linux): one `SO_REUSEPORT` socket per core and listen address, each served by a thread
//! of its own in batches (see `batch`). Elsewhere: tokio tasks sharing each socket, each with
//! its own buffers, so a query costs one `recv_from`, one `respond` and one `send_to`.
//! TCP (see `tcp`): one task per connection, queries answered in order (pipelining), in a
//! table bounded in all and per source.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
#[cfg(not(target_os = "linux"))]
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::options::ServeOptions;
#[cfg(not(target_os = "linux"))]
use super::packet::PacketHandler;
use super::packet::Serving;
use crate::answer::SnapshotReader;
use crate::metrics::QueryCounters;
#[cfg(not(target_os = "linux"))]
use crate::wire::Transport;

/// Tasks receiving on each UDP socket (where there is no batch fast path).
#[cfg(not(target_os = "linux"))]
const UDP_TASKS_PER_SOCKET: usize = 2;
/// How often a UDP thread blocked in a receive wakes to look for shutdown.
const UDP_WAKE_INTERVAL: Duration = Duration::from_millis(100);

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
    let tcp = options.tcp;
    let cookies = options.cookies.clone();
    let serving = Arc::new(Serving::new(options, QueryCounters::register()));
    let mut tasks = tokio::task::JoinSet::new();
    // The cookies' clock, ticked here so a query reads the time without a system call.
    let mut stop_clock = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        while !*stop_clock.borrow() {
            tokio::select! {
                _ = tick.tick() => cookies.tick(),
                changed = stop_clock.changed() => if changed.is_err() { break },
            }
        }
    });
    serve_udp_sockets(listeners.udp, &reader, &serving, &shutdown, &mut tasks);
    let table = super::tcp::Table::new(tcp);
    serve_tcp_listeners(
        listeners.tcp,
        &reader,
        (&serving, &table),
        &shutdown,
        &mut tasks,
    );
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

/// TCP on threads of its own, a single-threaded runtime each ([`tcp_threads`]), every thread accepting on every listener and serving the
/// connections it accepted. A query then wakes one thread; on the shared multi-threaded
/// runtime it also woke a second worker to share the work, and those wake-ups were half the
/// CPU of a query at 40,000 TCP queries a second. A thread ends only when its listeners'
/// loops do (at shutdown, or on a bug, which the caller then sees).
fn serve_tcp_listeners(
    listeners: Vec<TcpListener>,
    reader: &SnapshotReader,
    (serving, table): (&Arc<Serving>, &Arc<super::tcp::Table>),
    shutdown: &watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let listeners: Vec<std::net::TcpListener> = listeners
        .into_iter()
        .filter_map(|l| match l.into_std() {
            Ok(listener) => Some(listener),
            Err(e) => {
                warn!(error = %e, "cannot serve a TCP listener");
                None
            }
        })
        .collect();
    if listeners.is_empty() {
        return;
    }
    for _ in 0..tcp_threads() {
        let own: Vec<std::net::TcpListener> = listeners
            .iter()
            .filter_map(|l| l.try_clone().ok())
            .collect();
        let (reader, serving, table) = (reader.clone(), Arc::clone(serving), Arc::clone(table));
        let shutdown = shutdown.clone();
        serving_thread(tasks, "TCP", move || {
            serve_tcp_thread(own, reader, (serving, table), shutdown)
        });
    }
}

/// Starts a serving thread of a transport (`"TCP"`, `"UDP"`), named for it, and a task in
/// `tasks` that waits for it and reports a panic.
fn serving_thread(
    tasks: &mut tokio::task::JoinSet<()>,
    transport: &'static str,
    serve: impl FnOnce() + Send + 'static,
) {
    let thread = std::thread::Builder::new()
        .name(format!("geosteer-{}", transport.to_ascii_lowercase()))
        .spawn(serve);
    match thread {
        Ok(handle) => {
            tasks.spawn_blocking(move || {
                if handle.join().is_err() {
                    tracing::error!("a {transport} serving thread panicked");
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot start a {transport} serving thread"),
    }
}

/// TCP serving threads: half the cores (at least one). Most DNS traffic is UDP, whose
/// threads get the rest; on two cores one TCP thread served more queries a second than two,
/// at less CPU per query (measured in benches/load.sh, MODE=tcp).
fn tcp_threads() -> usize {
    (crate::parallel::workers() / 2).max(1)
}

/// One TCP thread: its runtime, serving its copies of the listeners until one loop ends.
fn serve_tcp_thread(
    listeners: Vec<std::net::TcpListener>,
    reader: SnapshotReader,
    (serving, table): (Arc<Serving>, Arc<super::tcp::Table>),
    shutdown: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a TCP serving runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let mut loops = tokio::task::JoinSet::new();
        for listener in listeners {
            match TcpListener::from_std(listener) {
                Ok(listener) => {
                    loops.spawn(super::tcp::serve(
                        listener,
                        reader.clone(),
                        Arc::clone(&serving),
                        Arc::clone(&table),
                        shutdown.clone(),
                    ));
                }
                Err(e) => warn!(error = %e, "cannot serve a TCP listener"),
            }
        }
        // At shutdown every loop drains its connections; a loop that ends before (a bug)
        // ends the thread at once.
        while loops.join_next().await.is_some() {
            if !*shutdown.borrow() {
                break;
            }
        }
    });
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
        serving_thread(tasks, "UDP", move || {
            super::batch::serve_socket(socket, reader, serving, stop)
        });
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
