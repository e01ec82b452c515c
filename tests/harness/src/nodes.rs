//! Fake ingest nodes for health tests: real listening sockets on loopback that really stop.
//! Each runs an accept loop on its own thread until stopped; stopping closes the listening
//! socket, so new connections are refused, as when an ingest process dies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a fake node does with a connection.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Accept and close: enough for a TCP check.
    Tcp,
    /// Answer one HTTP request with this status and body.
    Http(u16, &'static str),
    /// Answer the RTMP handshake (S0+S1+S2 for C0+C1).
    Rtmp,
    /// Accept and never say anything: a hung service.
    Hang,
    /// HTTPS with this server configuration, answering 200 "ok".
    Https(Arc<rustls::ServerConfig>),
    /// Answer one HTTP request with 200 "ok" after this long: a far-away node.
    SlowHttp(Duration),
}

/// A TLS server configuration with a fresh self-signed certificate for `name`.
pub fn self_signed_tls(name: &str) -> Arc<rustls::ServerConfig> {
    let certified =
        rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("generate a certificate");
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .expect("key DER");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("server config");
    Arc::new(config)
}

/// A listening fake node.
pub struct FakeNode {
    /// Where it listens.
    pub addr: SocketAddr,
    behaviour: Behaviour,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Kept while vanished: the listening socket stays open but nobody accepts.
    silent: Option<TcpListener>,
    /// Connections that fill the accept queue while vanished.
    filler: Vec<TcpStream>,
}

impl FakeNode {
    /// Listens on `ip`, on a free port.
    pub fn start(ip: &str, behaviour: Behaviour) -> FakeNode {
        let listener = TcpListener::bind((ip, 0)).expect("bind a fake node");
        let addr = listener.local_addr().expect("bound address");
        FakeNode::serve(listener, addr, behaviour)
    }

    /// Listens on every one of `ips` on one port (a node's carrier lines share their check's
    /// port), trying free ports of the first address until the others bind too.
    pub fn start_lines(ips: &[&str], behaviour: Behaviour) -> Vec<FakeNode> {
        for _ in 0..50 {
            let first = TcpListener::bind((ips[0], 0)).expect("bind a fake node");
            let port = first.local_addr().expect("bound address").port();
            let rest: Result<Vec<TcpListener>, _> = ips[1..]
                .iter()
                .map(|ip| TcpListener::bind((*ip, port)))
                .collect();
            if let Ok(rest) = rest {
                return std::iter::once(first)
                    .chain(rest)
                    .map(|listener| {
                        let addr = listener.local_addr().expect("bound address");
                        FakeNode::serve(listener, addr, behaviour.clone())
                    })
                    .collect();
            }
        }
        panic!("no port free on every one of {ips:?} in 50 tries");
    }

    fn serve(listener: TcpListener, addr: SocketAddr, behaviour: Behaviour) -> FakeNode {
        let (stop, thread) = accept_loop(listener, behaviour.clone());
        FakeNode {
            addr,
            behaviour,
            stop,
            thread: Some(thread),
            silent: None,
            filler: Vec::new(),
        }
    }

    fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Closes the listening socket: new connections are refused, as when the process dies.
    pub fn stop(&mut self) {
        self.stop_accepting();
        self.silent = None;
        self.filler.clear();
    }

    /// Vanishes silently, as a host that lost its network: the socket stays open, nobody
    /// accepts, and once the accept queue is full the kernel drops new SYNs, so connections
    /// time out instead of being refused.
    pub fn vanish(&mut self) {
        self.stop_accepting();
        // The accept thread owned the socket; bind a fresh one that nobody will accept on.
        let listener = TcpListener::bind(self.addr).expect("rebind the fake node's address");
        let _ = listener.set_nonblocking(true);
        for _ in 0..4096 {
            match TcpStream::connect_timeout(&self.addr, Duration::from_millis(50)) {
                Ok(stream) => self.filler.push(stream),
                Err(_) => break, // the queue is full: SYNs are being dropped
            }
        }
        self.silent = Some(listener);
    }

    /// Listens again on the same address, after `stop` or `vanish`.
    pub fn restart(&mut self) {
        self.stop();
        let listener = TcpListener::bind(self.addr).expect("rebind the fake node's address");
        let (stop, thread) = accept_loop(listener, self.behaviour.clone());
        self.stop = stop;
        self.thread = Some(thread);
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts until the returned flag is set; the listener closes when the thread ends.
fn accept_loop(listener: TcpListener, behaviour: Behaviour) -> (Arc<AtomicBool>, JoinHandle<()>) {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Some(kept) = handle(stream, &behaviour) {
                        held.push(kept);
                    }
                }
                // Poll the stop flag: the accept loop must end when asked.
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        drop(held);
    });
    (stop, thread)
}

/// Serves one connection; returns it when it must be kept open (a hung node).
fn handle(mut stream: TcpStream, behaviour: &Behaviour) -> Option<TcpStream> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    match behaviour {
        Behaviour::Tcp => None,
        Behaviour::Hang => Some(stream),
        Behaviour::Http(status, body) => {
            answer_http(&mut stream, *status, body);
            None
        }
        Behaviour::SlowHttp(delay) => {
            std::thread::sleep(*delay);
            answer_http(&mut stream, 200, "ok");
            None
        }
        Behaviour::Https(config) => {
            let Ok(connection) = rustls::ServerConnection::new(Arc::clone(config)) else {
                return None;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            answer_http(&mut tls, 200, "ok");
            tls.conn.send_close_notify();
            let _ = tls.flush();
            None
        }
        Behaviour::Rtmp => {
            let mut c0c1 = [0u8; 1537];
            if stream.read_exact(&mut c0c1).is_ok() && c0c1[0] == 3 {
                let mut reply = vec![3u8];
                reply.extend_from_slice(&[0u8; 1536]);
                reply.extend_from_slice(&c0c1[1..]);
                let _ = stream.write_all(&reply);
            }
            None
        }
    }
}

/// Reads one request and writes a response.
fn answer_http(stream: &mut impl ReadWrite, status: u16, body: &str) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// A byte stream, plain or TLS.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A minimal HTTP/1.1 client for the admin interface: returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http_json(addr, method, path, token, "")
}

/// Like [`http`], sending `body` as JSON.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to admin");
    // Bounded, with room for a census or what-if in a debug build on a busy machine.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}
