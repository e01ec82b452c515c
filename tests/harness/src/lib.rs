//! The black-box harness shared by the integration tests and the benchmarks: runs the real
//! `geosteer` binary on an ephemeral loopback port and talks to it over real UDP and TCP
//! sockets, with queries built and responses parsed by hickory-proto; fake nodes that are
//! really started and stopped (`nodes`); the committed test databases' generator
//! (`geo_fixtures`); and `eventually`, the one way a test waits for something.

// The harness reads the clock: it bounds waits and times what it observes.
#![allow(clippy::disallowed_methods)]

pub mod etcd;
pub mod geo_fixtures;
pub mod nodes;
pub mod proxy;
pub mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// How long a reply may take before a test calls it lost.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the server may take to print its readiness line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `check` until it gives a value, for at most `within` (first after 2 ms, then at
/// growing intervals up to 50 ms); the value, or `None` when time ran out.
pub fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits until `check` gives a value and returns it; fails the test, saying `what` was
/// awaited and the last thing seen, if `within` passes first. Tests say when, not how long.
pub fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let mut last = String::new();
    poll(within, || match check() {
        Ok(value) => Some(value),
        Err(seen) => {
            last = seen;
            None
        }
    })
    .unwrap_or_else(|| panic!("{what} did not happen within {within:?}; last seen: {last}"))
}

/// Path of a file in the repository (this crate lives in `tests/harness`).
pub fn repo(path: &str) -> PathBuf {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR"));
    harness
        .parent()
        .and_then(Path::parent)
        .unwrap_or(harness)
        .join(path)
}

/// The `geosteer` binary Cargo built beside the running test or benchmark: tests run from
/// `target/<profile>/deps/`, benchmark drivers from `target/<profile>/examples/`, and the
/// binary is `target/<profile>/geosteer` for both.
pub fn geosteer_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|dir| dir.join("geosteer")))
        .filter(|path| path.exists())
        .expect("the geosteer binary is built beside the tests and benchmarks (cargo test, or cargo build --release)")
}

/// A running `geosteer serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// The address it serves UDP and TCP on.
    pub addr: SocketAddr,
    /// The admin interface's address.
    pub admin: SocketAddr,
}

impl Server {
    /// Serves the test zone against the nested-schema test database.
    pub fn test_zone() -> Server {
        Server::start(
            &repo("tests/fixtures/zones"),
            &repo("tests/fixtures/geo-city.mmdb"),
            &[],
        )
    }

    /// Starts the binary on 127.0.0.1:0 and waits for its readiness line.
    pub fn start(zones: &Path, geo: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(zones, geo, extra, &[])
    }

    /// Like [`Server::start`], with extra environment variables.
    pub fn start_with_env(
        zones: &Path,
        geo: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn(
            Command::new(geosteer_binary()),
            "127.0.0.1",
            zones,
            geo,
            extra,
            env,
        )
    }

    /// Like [`Server::start`], inside network namespace `netns`, listening (DNS and admin)
    /// on `host`, an address of that namespace. The admin interface is then off loopback
    /// and needs a token: give `--admin-token-file` in `extra`.
    pub fn start_in_netns(
        netns: &str,
        host: &str,
        zones: &Path,
        geo: &Path,
        extra: &[&str],
    ) -> Server {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(geosteer_binary());
        Server::spawn(command, host, zones, geo, extra, &[])
    }

    /// Like [`Server::start`], in a process whose open-file limit (soft and hard) is `fds`.
    pub fn start_with_fd_limit(zones: &Path, geo: &Path, extra: &[&str], fds: u32) -> Server {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
            .arg(geosteer_binary());
        Server::spawn(shell, "127.0.0.1", zones, geo, extra, &[])
    }

    fn spawn(
        mut command: Command,
        host: &str,
        zones: &Path,
        geo: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut child = command
            .arg("serve")
            .arg("--listen")
            .arg(format!("{host}:0"))
            .arg("--admin")
            .arg(format!("{host}:0"))
            .arg("--zones")
            .arg(zones)
            .arg("--geo")
            .arg(geo)
            .args(extra)
            // Warnings and errors only, unless the developer asks for more.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("geosteer binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("geosteer admin on http://") {
                    let _ = tx.send(("admin", rest.trim().to_string()));
                }
                if let Some(rest) = line.strip_prefix("geosteer listening on ") {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(("dns", addr));
                }
            }
        });
        let mut admin = None;
        let mut addr = None;
        while addr.is_none() {
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(("admin", a)) => admin = Some(a.parse().expect("admin line carries an address")),
                Ok((_, a)) => addr = Some(a.parse().expect("readiness line carries an address")),
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("geosteer did not become ready: {status:?}");
                }
            }
        }
        Server {
            child,
            addr: addr.expect("loop ends with an address"),
            admin: admin.expect("the admin line comes first"),
        }
    }
}

impl Server {
    /// The server's process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded, polling) for the process to exit; its status, or `None` if it did not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        poll(within, || self.child.try_wait().ok().flatten())
    }

    /// Stops the server as its service manager would (SIGTERM), and waits for it to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.wait_exit(Duration::from_secs(20))
    }
}

/// Runs `geosteer serve` (on free loopback ports) until it exits on its own, for at most
/// `within` (then it is killed): its exit status, `None` when it had to be killed, and
/// what it wrote to stdout and to stderr. For starts that must fail.
pub fn serve_until_exit(
    zones: &Path,
    geo: &Path,
    extra: &[&str],
    within: Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    let mut child = Command::new(geosteer_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--zones")
        .arg(zones)
        .arg("--geo")
        .arg(geo)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("geosteer starts");
    let exited = poll(within, || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("its output");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (exited, text(&output.stdout), text(&output.stderr))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A query under construction.
#[derive(Clone)]
pub struct Q {
    message: Message,
}

/// Starts a query for `name`/`rtype` with EDNS (4096-byte buffer) and RD clear.
pub fn q(name: &str, rtype: RecordType) -> Q {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(
        Name::from_ascii(name).expect("test names parse"),
        rtype,
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    message.set_edns(edns);
    Q { message }
}

impl Q {
    /// Adds an ECS option for `addr/source`.
    pub fn ecs(mut self, addr: &str, source: u8) -> Q {
        self.edns_mut()
            .options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                addr.parse().expect("test addresses parse"),
                source,
                0,
            )));
        self
    }

    /// Removes EDNS altogether.
    pub fn no_edns(mut self) -> Q {
        self.message.edns = None;
        self
    }

    /// Sets the advertised UDP buffer.
    pub fn payload(mut self, size: u16) -> Q {
        self.edns_mut().set_max_payload(size);
        self
    }

    /// Sets the EDNS version.
    pub fn edns_version(mut self, version: u8) -> Q {
        self.edns_mut().set_version(version);
        self
    }

    /// Sets the query class.
    pub fn class(mut self, class: DNSClass) -> Q {
        if let Some(query) = self.message.queries.first_mut() {
            query.set_query_class(class);
        }
        self
    }

    /// Sets the message id.
    pub fn id(mut self, id: u16) -> Q {
        self.message.metadata.id = id;
        self
    }

    fn edns_mut(&mut self) -> &mut Edns {
        self.message.edns.get_or_insert_with(Edns::new)
    }

    /// Wire bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.message.to_vec().expect("test queries encode")
    }
}

/// Sends raw bytes over UDP from `from` and returns the raw reply, or `None` when two tries
/// got none.
pub fn udp_raw(server: SocketAddr, from: IpAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind((from, 0)).expect("bind a loopback source address");
    socket
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("set timeout");
    let mut buf = vec![0u8; 65535];
    // Two tries, as resolvers do: a datagram can be dropped when the server's receive
    // buffer is full (a test that floods it with junk just before, on a busy machine).
    for _ in 0..2 {
        socket.send_to(bytes, server).expect("send query");
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            return Some(buf[..len].to_vec());
        }
    }
    None
}

/// Sends a query over UDP from 127.0.0.1 and parses the reply.
pub fn udp(server: &Server, query: &Q) -> Message {
    udp_from(server, Ipv4Addr::LOCALHOST.into(), query)
}

/// Sends a query over UDP from a chosen loopback source and parses the reply.
pub fn udp_from(server: &Server, from: IpAddr, query: &Q) -> Message {
    let raw = udp_raw(server.addr, from, &query.bytes()).expect("a UDP reply");
    Message::from_vec(&raw).expect("the reply parses")
}

/// Sends several queries on one TCP connection, all written before any reply is read
/// (pipelining), and returns the raw replies in order.
pub fn tcp_raw(server: SocketAddr, queries: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(server).expect("TCP connect");
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("set timeout");
    let mut out = Vec::new();
    for q in queries {
        out.extend_from_slice(&(q.len() as u16).to_be_bytes());
        out.extend_from_slice(q);
    }
    stream.write_all(&out).expect("write queries");
    queries
        .iter()
        .map(|_| {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).expect("read reply length");
            let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
            stream.read_exact(&mut reply).expect("read reply");
            reply
        })
        .collect()
}

/// Sends a query over TCP and parses the reply.
pub fn tcp(server: &Server, query: &Q) -> Message {
    let raw = tcp_raw(server.addr, &[query.bytes()]).remove(0);
    Message::from_vec(&raw).expect("the reply parses")
}

/// IPv4 addresses in the answer section, in order.
pub fn a_records(reply: &Message) -> Vec<String> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// IPv6 addresses in the answer section, in order.
pub fn aaaa_records(reply: &Message) -> Vec<String> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The (source prefix, scope prefix) of the reply's ECS option, if any.
pub fn ecs_scope(reply: &Message) -> Option<(u8, u8)> {
    match reply.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// A loopback source address.
pub fn from(addr: &str) -> IpAddr {
    addr.parse().expect("test source addresses parse")
}

/// What one query of a [`QueryLoop`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// NOERROR with these addresses (possibly none).
    Answer(Vec<String>),
    /// Any other response code.
    Rcode(u16),
    /// No reply in time.
    Timeout,
}

/// A steady query stream (one query every 10 ms) against a server, recorded with timestamps,
/// as an operator's monitoring would see failover. Bounded: it stops by itself after
/// `QUERY_LOOP_LIMIT`.
pub struct QueryLoop {
    log: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, Seen)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Longest a query loop runs.
pub const QUERY_LOOP_LIMIT: Duration = Duration::from_secs(60);

impl QueryLoop {
    /// Starts querying `name`/A from `from`, for at most [`QUERY_LOOP_LIMIT`].
    pub fn start(server: SocketAddr, from: IpAddr, name: &str) -> QueryLoop {
        QueryLoop::start_for(server, from, name, QUERY_LOOP_LIMIT)
    }

    /// Starts querying `name`/A from `from`, for at most `limit`.
    pub fn start_for(server: SocketAddr, from: IpAddr, name: &str, limit: Duration) -> QueryLoop {
        use std::sync::atomic::Ordering;
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let query = q(name, RecordType::A);
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let socket = UdpSocket::bind((from, 0)).expect("bind the query loop's source");
            socket
                .set_read_timeout(Some(Duration::from_secs(1)))
                .expect("timeout");
            let mut buf = vec![0u8; 4096];
            let mut id: u16 = 0;
            while !stop2.load(Ordering::Relaxed) && started.elapsed() < limit {
                id = id.wrapping_add(1);
                let sent = std::time::Instant::now();
                socket
                    .send_to(&query.clone().id(id).bytes(), server)
                    .expect("send");
                let seen = loop {
                    match socket.recv_from(&mut buf) {
                        Ok((len, _)) => match Message::from_vec(&buf[..len]) {
                            Ok(reply) if reply.metadata.id != id => continue, // a late reply
                            Ok(reply)
                                if reply.metadata.response_code
                                    == hickory_proto::op::ResponseCode::NoError =>
                            {
                                break Seen::Answer(a_records(&reply));
                            }
                            Ok(reply) => {
                                break Seen::Rcode(u16::from(reply.metadata.response_code));
                            }
                            Err(_) => break Seen::Rcode(u16::MAX),
                        },
                        Err(_) => break Seen::Timeout,
                    }
                };
                log2.lock().expect("log lock").push((sent, seen));
                // The stream's pace, not a wait for anything.
                std::thread::sleep(Duration::from_millis(10).saturating_sub(sent.elapsed()));
            }
        });
        QueryLoop {
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Polls the log until a query sent at or after `after` saw something matching `want`;
    /// returns when that query was sent, or `None` if `within` passed first.
    pub fn first(
        &self,
        after: std::time::Instant,
        within: Duration,
        want: impl Fn(&Seen) -> bool,
    ) -> Option<std::time::Instant> {
        poll(within, || {
            self.log
                .lock()
                .expect("log lock")
                .iter()
                .find(|(t, seen)| *t >= after && want(seen))
                .map(|(t, _)| *t)
        })
    }

    /// Stops the loop and returns everything it saw.
    pub fn finish(mut self) -> Vec<(std::time::Instant, Seen)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.log.lock().expect("log lock"))
    }
}

impl Drop for QueryLoop {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes a policy file into a fresh directory and returns the directory.
pub fn zone_dir(name: &str, policy: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("geosteer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create zone dir");
    std::fs::write(dir.join("zone.yaml"), policy).expect("write policy");
    dir
}

/// Waits (bounded) until the checks have reported each named node up, so a test kills nodes
/// that are known healthy rather than racing their first probe.
pub fn wait_healthy(server: &Server, names: &[&str]) {
    eventually(
        Duration::from_secs(30),
        &format!("nodes {names:?} healthy"),
        || {
            let (_, body) = nodes::http(server.admin, "GET", "/nodes", None);
            let states: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let up = names.iter().all(|name| {
                states
                    .as_array()
                    .and_then(|a| a.iter().find(|n| n["node"] == *name))
                    .is_some_and(|n| n["health"] == "up")
            });
            if up { Ok(()) } else { Err(body) }
        },
    )
}
