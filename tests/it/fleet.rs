//! A fleet with one view: real etcd members and real geosteer instances on loopback. A drain
//! through one instance reaches the others and survives a restart; health is decided by the
//! zone's quorum of vantage points, so one instance that cannot reach a node does not take
//! it out of everyone's answers (`majority`), unless the policy says `any`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::nodes::{Behaviour, FakeNode, http};
use crate::support::*;

/// Real etcd members on loopback, each with its own data directory, killed when dropped.
struct EtcdCluster {
    members: Vec<Child>,
    clients: Vec<SocketAddr>,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl EtcdCluster {
    fn start(dir: &Path, size: usize) -> EtcdCluster {
        let _ = std::fs::remove_dir_all(dir);
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "geosteer-test",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd runs (apt-get install etcd-server; .ci/run installs it)");
            members.push(child);
        }
        let clients: Vec<SocketAddr> = ports
            .iter()
            .map(|(c, _)| SocketAddr::from((Ipv4Addr::LOCALHOST, *c)))
            .collect();
        let cluster = EtcdCluster { members, clients };
        for client in &cluster.clients {
            eventually(Duration::from_secs(30), "etcd member healthy", || {
                let (status, body) = probe_health(*client);
                if status == 200 && body.contains("true") {
                    Ok(())
                } else {
                    Err(body)
                }
            });
        }
        cluster
    }

    fn endpoints(&self) -> String {
        self.clients
            .iter()
            .map(|c| format!("http://{c}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// etcd's /health, or (0, why) while it does not listen yet.
fn probe_health(client: SocketAddr) -> (u16, String) {
    match std::net::TcpStream::connect_timeout(&client, Duration::from_millis(200)) {
        Ok(_) => http(client, "GET", "/health", None),
        Err(e) => (0, e.to_string()),
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
    }
}

fn policy(tokyo: &FakeNode, tokyo_port: u16, singapore: &FakeNode, quorum: &str) -> String {
    format!(
        "zone: fleet.example\nsoa: {{primary: ns1.fleet.example., contact: h.fleet.example., serial: 1}}\nns: [ns1.fleet.example.]\n\
         health_quorum: {quorum}\n\
         check: {{type: tcp, interval: 100ms, recheck: 50ms, timeout: 500ms, rise: 2, fall: 2}}\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{port: {tokyo_port}}}}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{}], check: {{port: {}}}}}\n\
         steer:\n  ingest: {{answers: 2}}\n",
        tokyo.addr.ip(),
        singapore.addr.ip(),
        singapore.addr.port()
    )
}

fn instance(zones: &Path, etcd: &EtcdCluster, identity: &str) -> Server {
    Server::start(
        zones,
        &repo("tests/fixtures/geo-city.mmdb"),
        &[
            "--fleet",
            &etcd.endpoints(),
            "--fleet-prefix",
            "/test",
            "--identity",
            identity,
        ],
    )
}

fn answers(server: &Server) -> Vec<String> {
    a_records(&udp_from(
        server,
        from("127.1.0.5"),
        &q("ingest.fleet.example.", RecordType::A),
    ))
}

fn until_answers(server: &Server, want: &[&str], what: &str) {
    eventually(Duration::from_secs(10), what, || {
        let got = answers(server);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
}

fn zones(name: &str, text: &str) -> PathBuf {
    zone_dir(name, text)
}

#[test]
fn a_drain_through_one_instance_reaches_every_instance_and_survives_a_restart() {
    let tokyo = FakeNode::start("127.0.0.81", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.82", Behaviour::Tcp);
    let etcd = EtcdCluster::start(
        &std::env::temp_dir().join(format!("geosteer-etcd-drain-{}", std::process::id())),
        3,
    );
    let dir = zones(
        "fleet-drain",
        &policy(&tokyo, tokyo.addr.port(), &singapore, "majority"),
    );
    let a = instance(&dir, &etcd, "a");
    let b = instance(&dir, &etcd, "b");
    let mut c = instance(&dir, &etcd, "c");
    let both = [tokyo.addr.ip().to_string(), singapore.addr.ip().to_string()];
    let both: Vec<&str> = both.iter().map(String::as_str).collect();
    let singapore_only = [singapore.addr.ip().to_string()];
    let singapore_only: Vec<&str> = singapore_only.iter().map(String::as_str).collect();
    for server in [&a, &b, &c] {
        until_answers(server, &both, "every node up");
    }
    let (status, body) = http(a.admin, "POST", "/nodes/fleet.example/tokyo/drain", None);
    assert_eq!(status, 200, "{body}");
    let drained = std::time::Instant::now();
    for server in [&a, &b, &c] {
        until_answers(server, &singapore_only, "the drain on every instance");
    }
    eprintln!(
        "drain through a seen by b and c after {:?}",
        drained.elapsed()
    );
    // C restarts: it reads the drain from the fleet, not from memory.
    drop(std::mem::replace(&mut c, instance(&dir, &etcd, "c")));
    until_answers(&c, &singapore_only, "the drain after a restart");
    let (_, status) = http(c.admin, "GET", "/status", None);
    assert!(status.contains("\"connected\":true"), "{status}");
    for member in ["\"a\"", "\"b\"", "\"c\""] {
        assert!(status.contains(member), "{member} in {status}");
    }
    // Cleared through another instance, everywhere.
    let (status, body) = http(b.admin, "POST", "/nodes/fleet.example/tokyo/obey", None);
    assert_eq!(status, 200, "{body}");
    for server in [&a, &b, &c] {
        until_answers(server, &both, "the drain cleared everywhere");
    }
}

#[test]
fn health_is_decided_by_the_quorum_of_instances() {
    let tokyo = FakeNode::start("127.0.0.83", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.84", Behaviour::Tcp);
    let closed = free_port(); // nothing listens: C's view of Tokyo is "down"
    for (quorum, c_drops_tokyo_everywhere) in [("majority", false), ("any", true)] {
        let etcd = EtcdCluster::start(
            &std::env::temp_dir().join(format!("geosteer-etcd-{quorum}-{}", std::process::id())),
            3,
        );
        let good = zones(
            &format!("fleet-{quorum}"),
            &policy(&tokyo, tokyo.addr.port(), &singapore, quorum),
        );
        // C cannot reach Tokyo (its probes go to a closed port): a broken uplink.
        let blind = zones(
            &format!("fleet-{quorum}-blind"),
            &policy(&tokyo, closed, &singapore, quorum),
        );
        let a = instance(&good, &etcd, "a");
        let b = instance(&good, &etcd, "b");
        let c = instance(&blind, &etcd, "c");
        let both = [tokyo.addr.ip().to_string(), singapore.addr.ip().to_string()];
        let both: Vec<&str> = both.iter().map(String::as_str).collect();
        let singapore_only = [singapore.addr.ip().to_string()];
        let singapore_only: Vec<&str> = singapore_only.iter().map(String::as_str).collect();
        // Wait until C's verdict is in the fleet (its /nodes shows its own check down).
        eventually(Duration::from_secs(10), "C sees Tokyo down", || {
            let (_, body) = http(c.admin, "GET", "/nodes", None);
            if body.contains("\"health\":\"down\"") {
                Ok(())
            } else {
                Err(body)
            }
        });
        let want = if c_drops_tokyo_everywhere {
            &singapore_only
        } else {
            &both
        };
        for server in [&a, &b, &c] {
            until_answers(server, want, quorum);
        }
        // And it stays so: the verdict is settled, not on its way.
        std::thread::sleep(Duration::from_millis(300));
        for server in [&a, &b, &c] {
            assert_eq!(&answers(server), want, "{quorum}");
        }
    }
}
