//! Test harness: runs the real `geosteer` binary on an ephemeral loopback port and talks to
//! it over real UDP and TCP sockets, with queries built and responses parsed by hickory-proto.
#![allow(dead_code)]

pub mod geo_fixtures;

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

/// Path of a file in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_geosteer"))
            .arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--zones",
            ])
            .arg(zones)
            .arg("--geo")
            .arg(geo)
            .args(extra)
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

/// Sends raw bytes over UDP from `from` and returns the raw reply, or `None` on timeout.
pub fn udp_raw(server: SocketAddr, from: IpAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind((from, 0)).expect("bind a loopback source address");
    socket
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("set timeout");
    socket.send_to(bytes, server).expect("send query");
    let mut buf = vec![0u8; 65535];
    match socket.recv_from(&mut buf) {
        Ok((len, _)) => Some(buf[..len].to_vec()),
        Err(_) => None,
    }
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
