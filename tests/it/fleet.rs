//! A fleet with one view: real etcd members and real geosteer instances on loopback. A drain
//! through one instance reaches the others and survives a restart; health is decided by the
//! zone's quorum of vantage points, so one instance that cannot reach a node does not take
//! it out of everyone's answers (`majority`), unless the policy says `any`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use geosteer_harness::etcd::EtcdCluster;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::nodes::{Behaviour, FakeNode, http};
use crate::support::*;

/// Both nodes' policy with this health quorum (`zone_dir` writes it to a directory).
fn policy(tokyo: &FakeNode, singapore: &FakeNode, quorum: &str) -> String {
    format!(
        "zone: fleet.example\nsoa: {{primary: ns1.fleet.example., contact: h.fleet.example., serial: 1}}\nns: [ns1.fleet.example.]\n\
         health_quorum: {quorum}\n\
         check: {{type: tcp, interval: 100ms, recheck: 50ms, timeout: 500ms, rise: 2, fall: 2}}\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{port: {}}}}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{}], check: {{port: {}}}}}\n\
         steer:\n  ingest: {{answers: 2}}\n",
        tokyo.addr.ip(),
        tokyo.addr.port(),
        singapore.addr.ip(),
        singapore.addr.port()
    )
}

fn instance(zones: &Path, etcd: &EtcdCluster, identity: &str) -> Server {
    member(zones, &etcd.endpoints(), identity, &[])
}

/// An instance `identity` of the fleet at `endpoints` (prefix `/test`), with `extra`
/// arguments.
fn member(zones: &Path, endpoints: &str, identity: &str, extra: &[&str]) -> Server {
    // The tests query each instance from one address, often beside a query loop: response
    // rate limiting is not what they are about.
    let mut args = vec![
        "--fleet",
        endpoints,
        "--fleet-prefix",
        "/test",
        "--identity",
        identity,
        "--rrl-exempt",
        "127.0.0.0/8",
    ];
    args.extend(extra);
    Server::start(zones, &repo("tests/fixtures/geo-city.mmdb"), &args)
}

fn answers(server: &Server) -> Vec<String> {
    a_records(&udp_from(
        server,
        from("127.1.0.5"),
        &q("ingest.fleet.example.", RecordType::A),
    ))
}

/// The nodes' addresses, as answers list them.
fn addresses(nodes: &[&FakeNode]) -> Vec<String> {
    nodes.iter().map(|n| n.addr.ip().to_string()).collect()
}

fn until_answers(server: &Server, want: &[String], what: &str) {
    eventually(Duration::from_secs(10), what, || {
        let got = answers(server);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
}

/// Waits until `server` reports itself connected to the fleet, with every one of `members`
/// registered.
fn until_connected(server: &Server, members: &[&str], what: &str) {
    eventually(Duration::from_secs(10), what, || {
        let (_, status) = http(server.admin, "GET", "/status", None);
        let listed = members
            .iter()
            .all(|m| status.contains(&format!("\"{m}\":{{")));
        if status.contains("\"connected\":true") && listed {
            Ok(())
        } else {
            Err(status)
        }
    });
}

/// Runs `geosteer fleet ARGS` against the test's cluster and prefix.
fn fleet_command(etcd: &EtcdCluster, args: &[&str]) -> std::process::Output {
    Command::new(geosteer_binary())
        .args([
            "fleet",
            "--fleet",
            &etcd.endpoints(),
            "--fleet-prefix",
            "/test",
        ])
        .args(args)
        .output()
        .expect("geosteer fleet runs")
}

/// A data directory for a test's etcd members, one per test and process.
fn etcd_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("geosteer-etcd-{tag}-{}", std::process::id()))
}

#[test]
fn a_drain_through_one_instance_reaches_every_instance_and_survives_a_restart() {
    let tokyo = FakeNode::start("127.0.0.81", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.82", Behaviour::Tcp);
    let etcd = EtcdCluster::start(&etcd_dir("drain"), 3);
    let dir = zone_dir("fleet-drain", &policy(&tokyo, &singapore, "majority"));
    let a = instance(&dir, &etcd, "a");
    let b = instance(&dir, &etcd, "b");
    let mut c = instance(&dir, &etcd, "c");
    let both = addresses(&[&tokyo, &singapore]);
    let singapore_only = addresses(&[&singapore]);
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
    // C restarts (stopped as systemd would: it ends its lease on the way out, so the
    // new process takes its identity at once): it reads the drain from the fleet.
    assert!(c.terminate().is_some_and(|s| s.success()));
    c = instance(&dir, &etcd, "c");
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
    // The fleet command writes once for everyone, and shows the shared state.
    let fleet_run = |args: &[&str]| fleet_command(&etcd, args);
    let fleet_cli = |args: &[&str]| {
        let output = fleet_run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // A node no member serves (a typo) is refused, and nothing is written.
    let typo = fleet_run(&["drain", "fleet.example", "singap0re"]);
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success(), "a typo was accepted: {stderr}");
    assert!(
        stderr.contains("no live member serves node 'singap0re' in zone 'fleet.example'")
            && stderr.contains("singapore"),
        "{stderr}"
    );
    fleet_cli(&["force-down", "fleet.example", "singapore"]);
    let tokyo_only = addresses(&[&tokyo]);
    for server in [&a, &b, &c] {
        until_answers(server, &tokyo_only, "forced down through the fleet command");
    }
    let status = fleet_cli(&["status"]);
    assert!(status.contains("members (3): a, b, c"), "{status}");
    assert!(
        status.contains("\"serials\":{\"fleet.example\":1}") && !status.contains("warning"),
        "every member serves serial 1: {status}"
    );
    assert!(
        status.contains("fleet.example singapore: force-down"),
        "{status}"
    );
    assert!(status.contains("a=up b=up c=up"), "{status}");
    assert!(
        !status.contains("singap0re"),
        "the typo was written: {status}"
    );
    fleet_cli(&["obey", "fleet.example", "singapore"]);
    for server in [&a, &b, &c] {
        until_answers(server, &both, "cleared through the fleet command");
    }
    // Loads and measurements posted to one instance reach the others.
    let batch = r#"{"zone": "fleet.example", "loads": [{"node": "tokyo", "load": 0.55}]}"#;
    let (status, body) = crate::support::nodes::http_json(a.admin, "POST", "/latency", None, batch);
    assert_eq!(status, 200, "{body}");
    for server in [&b, &c] {
        eventually(
            Duration::from_secs(10),
            "the load on every instance",
            || {
                let (_, nodes) = http(server.admin, "GET", "/nodes", None);
                if nodes.contains("\"load\":0.55") {
                    Ok(())
                } else {
                    Err(nodes)
                }
            },
        );
    }
}

/// A network namespace joined to this one by a veth link: `here` on this side, `there`
/// inside. Removed when dropped (deleting the namespace deletes the link).
struct Namespace {
    name: String,
    here: String,
    there: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Namespace {
    /// `None` (and why) when namespaces cannot be made here: not root.
    fn create(tag: &str) -> Result<Namespace, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("network namespaces need root".into());
        }
        let pid = std::process::id();
        let octet = pid % 250 + 1;
        let namespace = Namespace {
            name: format!("gs-{tag}-{pid}"),
            here: format!("10.213.{octet}.1"),
            there: format!("10.213.{octet}.2"),
        };
        let link = format!("gs{pid}");
        let peer = format!("gs{pid}p");
        ip(&["netns", "add", &namespace.name])?;
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &namespace.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", namespace.here),
            "dev",
            &link,
        ])?;
        ip(&["link", "set", &link, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &namespace.name, "ip"];
            all.extend(args);
            ip(&all)
        };
        inside(&[
            "addr",
            "add",
            &format!("{}/30", namespace.there),
            "dev",
            &peer,
        ])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(namespace)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// One instance that cannot reach a node while the others can: instance C runs in a network
/// namespace of its own, where Tokyo's address leads nowhere (its probes are refused) but
/// Singapore and etcd are reachable over a veth link. Every instance runs the same policy.
/// With `majority`, every instance keeps answering Tokyo; with `any`, they all drop it.
#[test]
fn health_is_decided_by_the_quorum_of_instances() {
    let namespace = match Namespace::create("quorum") {
        Ok(namespace) => namespace,
        Err(why) => {
            eprintln!("skipped: {why} (CI runs as root)");
            return;
        }
    };
    let tokyo = FakeNode::start("127.0.0.83", Behaviour::Tcp);
    // On the link's near end: reachable from here and from C's namespace.
    let singapore = FakeNode::start(&namespace.here, Behaviour::Tcp);
    let token_file =
        std::env::temp_dir().join(format!("geosteer-quorum-token-{}", std::process::id()));
    std::fs::write(&token_file, "quorum-token\n").expect("token file");
    let token = Some("quorum-token");
    let from_c_side: std::net::IpAddr = namespace.here.parse().expect("an address");
    for (quorum, c_drops_tokyo_everywhere) in [("majority", false), ("any", true)] {
        let etcd = EtcdCluster::start_also_on(&etcd_dir(quorum), 3, &namespace.here);
        let dir = zone_dir(
            &format!("fleet-{quorum}"),
            &policy(&tokyo, &singapore, quorum),
        );
        let a = instance(&dir, &etcd, "a");
        let b = instance(&dir, &etcd, "b");
        let c = Server::start_in_netns(
            &namespace.name,
            &namespace.there,
            &dir,
            &repo("tests/fixtures/geo-city.mmdb"),
            &[
                "--fleet",
                &etcd.endpoints_on_other_address(),
                "--fleet-prefix",
                "/test",
                "--identity",
                "c",
                "--admin-token-file",
                token_file.to_str().expect("path"),
            ],
        );
        let answers_of = |server: &Server| -> Vec<String> {
            if std::ptr::eq(server, &c) {
                // From the link's near end: loopback sources do not cross into a namespace.
                let raw = udp_raw(
                    server.addr,
                    from_c_side,
                    &q("ingest.fleet.example.", RecordType::A).bytes(),
                )
                .expect("a reply from C");
                a_records(&hickory_proto::op::Message::from_vec(&raw).expect("parses"))
            } else {
                answers(server)
            }
        };
        let both = addresses(&[&tokyo, &singapore]);
        let singapore_only = addresses(&[&singapore]);
        // C's own checks: Tokyo down (refused in its namespace), Singapore up.
        eventually(
            Duration::from_secs(10),
            "C sees Tokyo down and Singapore up",
            || {
                let (_, body) = http(c.admin, "GET", "/nodes", token);
                let nodes: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| e.to_string())?;
                let health = |name: &str| {
                    nodes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|n| n["node"] == name)
                        .map(|n| n["health"].clone())
                };
                if health("tokyo") == Some("down".into())
                    && health("singapore") == Some("up".into())
                {
                    Ok(())
                } else {
                    Err(body)
                }
            },
        );
        let want = if c_drops_tokyo_everywhere {
            &singapore_only
        } else {
            &both
        };
        for server in [&a, &b, &c] {
            eventually(Duration::from_secs(10), quorum, || {
                let got = answers_of(server);
                if &got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            });
        }
        // And it stays so: the verdict is settled, not on its way.
        std::thread::sleep(Duration::from_millis(300));
        for server in [&a, &b, &c] {
            assert_eq!(&answers_of(server), want, "{quorum}");
        }
    }
    let _ = std::fs::remove_file(&token_file);
}

/// Never worse than alone: with the etcd leader killed and then all of etcd stopped, no
/// query fails at any instance and local failover still works; when etcd returns, the
/// instances reconnect and a drain through one reaches the others again.
#[test]
fn losing_etcd_fails_no_query_and_the_fleet_converges_when_it_returns() {
    let mut tokyo = FakeNode::start("127.0.0.85", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.86", Behaviour::Tcp);
    let mut etcd = EtcdCluster::start(&etcd_dir("outage"), 3);
    let dir = zone_dir("fleet-outage", &policy(&tokyo, &singapore, "majority"));
    let a = instance(&dir, &etcd, "a");
    let b = instance(&dir, &etcd, "b");
    let both = addresses(&[&tokyo, &singapore]);
    let singapore_only = addresses(&[&singapore]);
    for server in [&a, &b] {
        until_answers(server, &both, "every node up");
    }
    let loops: Vec<QueryLoop> = [&a, &b]
        .iter()
        .map(|s| QueryLoop::start(s.addr, from("127.1.0.5"), "ingest.fleet.example."))
        .collect();
    let leader = etcd.leader();
    etcd.stop_member(leader);
    // Still a quorum of members: a drain goes through.
    let (status, body) = http(
        a.admin,
        "POST",
        "/nodes/fleet.example/singapore/drain",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let tokyo_only = addresses(&[&tokyo]);
    until_answers(&b, &tokyo_only, "the drain with the leader gone");
    let (status, body) = http(b.admin, "POST", "/nodes/fleet.example/singapore/obey", None);
    assert_eq!(status, 200, "{body}");
    until_answers(&a, &both, "cleared with the leader gone");
    // All of etcd gone.
    for i in 0..3 {
        etcd.stop_member(i);
    }
    eventually(
        Duration::from_secs(15),
        "a and b notice etcd is gone",
        || {
            let lost = [&a, &b].iter().all(|s| {
                http(s.admin, "GET", "/status", None)
                    .1
                    .contains("\"connected\":false")
            });
            if lost {
                Ok(())
            } else {
                Err("still connected".to_string())
            }
        },
    );
    // Degraded, not down: /readyz stays 200 (the instance answers and stays announced) and,
    // to whoever may see details, says why.
    for server in [&a, &b] {
        let (status, body) = http(server.admin, "GET", "/readyz", None);
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with("ready\nfleet degraded: etcd unreachable"),
            "{body}"
        );
    }
    // Local failover works while etcd is away.
    tokyo.stop();
    for server in [&a, &b] {
        until_answers(server, &singapore_only, "Tokyo down, seen locally");
    }
    tokyo.restart();
    for server in [&a, &b] {
        until_answers(server, &both, "Tokyo back");
    }
    // etcd returns: the instances reconnect, and a drain through one reaches the other.
    for i in 0..3 {
        etcd.start_member(i);
    }
    for i in 0..3 {
        etcd.wait_healthy(i);
    }
    eventually(Duration::from_secs(20), "a and b reconnect", || {
        let back = [&a, &b].iter().all(|s| {
            http(s.admin, "GET", "/status", None)
                .1
                .contains("\"connected\":true")
        });
        if back {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    let (status, body) = http(a.admin, "GET", "/readyz", None);
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, body) = http(b.admin, "POST", "/nodes/fleet.example/tokyo/drain", None);
    assert_eq!(status, 200, "{body}");
    until_answers(&a, &singapore_only, "the fleet converged");
    for (i, query_loop) in loops.into_iter().enumerate() {
        let log = query_loop.finish();
        assert!(log.len() > 20, "instance {i}: the query loop ran");
        let failed = log
            .iter()
            .filter(|(_, seen)| !matches!(seen, Seen::Answer(_)))
            .count();
        assert_eq!(
            failed,
            0,
            "instance {i}: {failed} of {} queries failed",
            log.len()
        );
    }
}

/// Production etcd: TLS only, a client certificate demanded, authentication on. Instances
/// log in as a user allowed under their prefix only, share a drain, and log in again after
/// etcd restarts (its tokens die with it); a wrong password leaves an instance alone but
/// answering, and says why.
#[test]
fn a_fleet_works_over_tls_with_a_client_certificate_and_a_user() {
    use geosteer_harness::etcd::{FLEET_PASSWORD, FLEET_USER};
    let tokyo = FakeNode::start("127.0.0.93", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.94", Behaviour::Tcp);
    let mut etcd = EtcdCluster::start_secure(&etcd_dir("tls"));
    let tls = etcd.tls.clone().expect("a secured cluster");
    assert!(etcd.endpoints().starts_with("https://"));
    let dir = zone_dir("fleet-tls", &policy(&tokyo, &singapore, "majority"));
    let secrets =
        std::env::temp_dir().join(format!("geosteer-fleet-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&secrets).unwrap();
    let right = secrets.join("right");
    let wrong = secrets.join("wrong");
    std::fs::write(&right, format!("{FLEET_PASSWORD}\n")).unwrap();
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let secured = |identity: &str, password: &Path| {
        Server::start(
            &dir,
            &repo("tests/fixtures/geo-city.mmdb"),
            &[
                "--fleet",
                &etcd.endpoints(),
                "--fleet-prefix",
                "/test",
                "--fleet-ca",
                tls.ca.to_str().unwrap(),
                "--fleet-cert",
                tls.cert.to_str().unwrap(),
                "--fleet-key",
                tls.key.to_str().unwrap(),
                "--fleet-user",
                FLEET_USER,
                "--fleet-password-file",
                password.to_str().unwrap(),
                "--identity",
                identity,
            ],
        )
    };
    let connected = |server: &Server, what: &str| until_connected(server, &[], what);
    let a = secured("a", &right);
    let b = secured("b", &right);
    let intruder = secured("intruder", &wrong);
    let both = addresses(&[&tokyo, &singapore]);
    let singapore_only = addresses(&[&singapore]);
    for server in [&a, &b, &intruder] {
        until_answers(server, &both, "every node up");
    }
    connected(&a, "a logs in over TLS");
    connected(&b, "b logs in over TLS");
    let (status, body) = http(a.admin, "POST", "/nodes/fleet.example/tokyo/drain", None);
    assert_eq!(status, 200, "{body}");
    until_answers(&b, &singapore_only, "the drain reaches b");
    // The wrong password: alone, answering, and saying why.
    // Its login may still be under way (etcd checks passwords slowly, by design).
    eventually(
        Duration::from_secs(10),
        "the intruder's login is refused",
        || {
            let (_, status) = http(intruder.admin, "GET", "/status", None);
            if status.contains("\"connected\":false") && status.contains("login as geosteer") {
                Ok(())
            } else {
                Err(status)
            }
        },
    );
    assert_eq!(answers(&intruder), both, "the intruder never saw the drain");
    // etcd restarts and forgets every token: the instances log in again.
    etcd.stop_member(0);
    eventually(Duration::from_secs(15), "a notices etcd is gone", || {
        let (_, status) = http(a.admin, "GET", "/status", None);
        if status.contains("\"connected\":false") {
            Ok(())
        } else {
            Err(status)
        }
    });
    etcd.start_member(0);
    etcd.wait_healthy(0);
    connected(&a, "a logs in again");
    connected(&b, "b logs in again");
    let (status, body) = http(b.admin, "POST", "/nodes/fleet.example/tokyo/obey", None);
    assert_eq!(status, 200, "{body}");
    until_answers(
        &a,
        &both,
        "the drain cleared through b after etcd restarted",
    );
    // The fleet command takes the same settings.
    let output = Command::new(geosteer_binary())
        .args([
            "fleet",
            "--fleet",
            &etcd.endpoints(),
            "--fleet-prefix",
            "/test",
        ])
        .args(["--fleet-ca", tls.ca.to_str().unwrap()])
        .args(["--fleet-cert", tls.cert.to_str().unwrap()])
        .args(["--fleet-key", tls.key.to_str().unwrap()])
        .args(["--fleet-user", FLEET_USER])
        .env("GEOSTEER_FLEET_PASSWORD", FLEET_PASSWORD)
        .arg("status")
        .output()
        .expect("geosteer fleet runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(text.contains("members (2): a, b"), "{text}");
    // Without the CA, etcd's certificate is not trusted: a clear error, not a hang.
    let output = Command::new(geosteer_binary())
        .args(["fleet", "--fleet", &etcd.endpoints(), "status"])
        .output()
        .expect("geosteer fleet runs");
    let why = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && why.contains("TLS"), "{why}");
    let _ = std::fs::remove_dir_all(&secrets);
}

/// A probe agent in Japan (`geosteer probe --vantage AS-JP`) measures Tokyo slow and
/// Singapore fast from where it stands: every instance moves its Japanese clients to
/// Singapore. Its verdicts count too: it is a live vantage point of the fleet.
#[test]
fn a_probe_agent_s_measurements_change_the_answer_on_every_instance() {
    let tokyo = FakeNode::start(
        "127.0.0.87",
        Behaviour::SlowHttp(Duration::from_millis(150)),
    );
    let singapore = FakeNode::start("127.0.0.88", Behaviour::Http(200, "ok"));
    let etcd = EtcdCluster::start(&etcd_dir("probe"), 3);
    let text = format!(
        "zone: fleet.example\nsoa: {{primary: ns1.fleet.example., contact: h.fleet.example., serial: 1}}\nns: [ns1.fleet.example.]\n\
         check: {{type: http, interval: 200ms, timeout: 1s}}\nnodes:\n\
         \x20 tokyo: {{geo: AS-JP, location: [35.68, 139.69], addresses: [{}], check: {{port: {}}}}}\n\
         \x20 singapore: {{geo: AS-SG, location: [1.35, 103.82], addresses: [{}], check: {{port: {}}}}}\n\
         steer:\n  ingest: {{answers: 1, latency: {{margin: 20%, hold: 0s}}}}\n",
        tokyo.addr.ip(),
        tokyo.addr.port(),
        singapore.addr.ip(),
        singapore.addr.port()
    );
    let dir = zone_dir("fleet-probe", &text);
    let a = instance(&dir, &etcd, "a");
    let b = instance(&dir, &etcd, "b");
    let tokyo_ip = tokyo.addr.ip().to_string();
    let singapore_ip = singapore.addr.ip().to_string();
    for server in [&a, &b] {
        until_answers(
            server,
            std::slice::from_ref(&tokyo_ip),
            "Tokyo, nearest by distance",
        );
    }
    let _agent = Agent(
        Command::new(geosteer_binary())
            .arg("probe")
            .args(["--vantage", "AS-JP", "--no-admin", "--zones"])
            .arg(&dir)
            .args(["--fleet", &etcd.endpoints(), "--fleet-prefix", "/test"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the probe agent starts"),
    );
    for server in [&a, &b] {
        until_answers(
            server,
            std::slice::from_ref(&singapore_ip),
            "Singapore, measured from Japan",
        );
    }
    let (_, why) = http(
        a.admin,
        "GET",
        "/explain?name=ingest.fleet.example.&client=127.1.0.5",
        None,
    );
    assert!(why.contains("measured AS-JP"), "{why}");
    let (_, status) = http(b.admin, "GET", "/status", None);
    assert!(
        status.contains("probe-AS-JP-"),
        "the agent is a member: {status}"
    );
}

/// A probe agent process, stopped when dropped (also when the test fails).
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two instances `a` and `b` of a fleet over `members` etcd members, with Tokyo and
/// Singapore on `ips`, both answered before it is handed over.
struct TwoInstances {
    tokyo: FakeNode,
    singapore: FakeNode,
    etcd: EtcdCluster,
    a: Server,
    b: Server,
}

impl TwoInstances {
    fn start(tag: &str, ips: [&str; 2], members: usize) -> TwoInstances {
        let tokyo = FakeNode::start(ips[0], Behaviour::Tcp);
        let singapore = FakeNode::start(ips[1], Behaviour::Tcp);
        let etcd = EtcdCluster::start(&etcd_dir(tag), members);
        let dir = zone_dir(
            &format!("fleet-{tag}"),
            &policy(&tokyo, &singapore, "majority"),
        );
        let a = instance(&dir, &etcd, "a");
        let b = instance(&dir, &etcd, "b");
        let both = addresses(&[&tokyo, &singapore]);
        for server in [&a, &b] {
            until_answers(server, &both, "every node up");
            until_connected(server, &["a", "b"], "both instances in the fleet");
        }
        TwoInstances {
            tokyo,
            singapore,
            etcd,
            a,
            b,
        }
    }
}

/// Only live members vote: verdict keys written without a member's lease (by hand, by a
/// process that never registered, or left from another lease) decide nothing. Five forged
/// "down" votes against two instances' "up" would be a majority if they counted.
#[test]
fn forged_verdicts_without_a_member_s_lease_are_ignored() {
    // Every node is bound by name: a field left to `..` would be dropped (stopped) here.
    let TwoInstances {
        tokyo,
        singapore: _singapore,
        etcd,
        a,
        b,
    } = TwoInstances::start("forged", ["127.0.0.86", "127.0.0.87"], 1);
    let put = |key: &str, value: &str| {
        let output = etcd.etcdctl(0, &["put", key, value]);
        assert!(output.status.success(), "etcdctl put {key}: {output:?}");
    };
    for forger in 1..=5 {
        put(
            &format!("/test/members/forger-{forger}/verdicts/fleet.example/tokyo"),
            "down",
        );
    }
    put("/test/members/forger-1/registration", "{}");
    // A change after the forged keys: once the instances see it, they have seen those too.
    put("/test/overrides/fleet.example/singapore", "drain");
    let tokyo_only = addresses(&[&tokyo]);
    for server in [&a, &b] {
        until_answers(
            server,
            &tokyo_only,
            "the drain written after the forged votes",
        );
        let (_, body) = http(server.admin, "GET", "/nodes", None);
        let nodes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let tokyo_state = nodes
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["node"] == "tokyo")
            .expect("tokyo")
            .clone();
        assert_eq!(tokyo_state["fleet_health"], "up", "{tokyo_state}");
        assert_eq!(tokyo_state["availability"], "up", "{tokyo_state}");
        let (_, status) = http(server.admin, "GET", "/status", None);
        assert!(
            !status.contains("forger"),
            "a forged member is listed: {status}"
        );
    }
}

/// A member that cannot serve listed first (a learner: it refuses clients' requests, as a
/// member in an election or without a leader does) does not keep an instance out of the
/// fleet: it moves on to the next member, and a drain through the fleet reaches it.
#[test]
fn a_learner_listed_first_is_passed_over() {
    let tokyo = FakeNode::start("127.0.0.106", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.107", Behaviour::Tcp);
    let mut etcd = EtcdCluster::start(&etcd_dir("learner"), 1);
    let learner = etcd.add_learner();
    let endpoints: Vec<String> = etcd.endpoints().split(',').map(str::to_string).collect();
    let learner_first = format!("{},{}", endpoints[learner], endpoints[0]);
    let dir = zone_dir("fleet-learner", &policy(&tokyo, &singapore, "majority"));
    let a = member(&dir, &learner_first, "a", &[]);
    until_connected(&a, &["a"], "connected past the learner");
    // The learner does refuse: what the instance passed over.
    let refused = etcd.etcdctl(learner, &["get", "/test/", "--prefix"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("learner"),
        "{stderr}"
    );
    let output = etcd.etcdctl(0, &["put", "/test/overrides/fleet.example/tokyo", "drain"]);
    assert!(output.status.success(), "{output:?}");
    until_answers(
        &a,
        &addresses(&[&singapore]),
        "the drain through the voting member",
    );
}

/// A hung member listed first (SIGSTOP: its sockets stay open and silent) does not freeze
/// the fleet: every instance leaves it for the next member, says so, and a drain written
/// through another member reaches every instance.
#[test]
fn a_hung_member_listed_first_does_not_freeze_the_fleet() {
    let TwoInstances {
        tokyo: _tokyo,
        singapore,
        etcd,
        a,
        b,
    } = TwoInstances::start("hung", ["127.0.0.90", "127.0.0.91"], 3);
    etcd.pause_member(0);
    let paused = std::time::Instant::now();
    // When the hung member led, the others elect a new leader first: the write waits for it.
    eventually(Duration::from_secs(30), "a write through member 1", || {
        let put = etcd.etcdctl(1, &["put", "/test/overrides/fleet.example/tokyo", "drain"]);
        if put.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&put.stderr).into_owned())
        }
    });
    let singapore_only = addresses(&[&singapore]);
    for server in [&a, &b] {
        until_answers(server, &singapore_only, "the drain through another member");
    }
    eprintln!(
        "drain through member 1 seen by both instances {:?} after member 0 hung",
        paused.elapsed()
    );
    let hung = format!("\"via\":\"http://{}\"", etcd.clients[0]);
    for server in [&a, &b] {
        let (_, status) = http(server.admin, "GET", "/status", None);
        assert!(status.contains("\"connected\":true"), "{status}");
        // It says which member it reads the fleet through: not the hung one.
        assert!(status.contains("\"via\":\"http://127.0.0.1:"), "{status}");
        assert!(!status.contains(&hung), "{status}");
        // The gauge the GeosteerFleetDisconnected alert reads (exported only in a fleet).
        let connected = metric_sum(&scrape(server), "geosteer_fleet_connected");
        assert_eq!(connected, 1.0);
    }
    etcd.resume_member(0);
}

/// No blind replay: a drain set through an instance cut off from etcd does not overrule
/// what operators said through the fleet meanwhile. Drained through the cut-off instance
/// (applied there only), then drained and cleared through the fleet; once the link heals,
/// every instance answers the node and etcd holds the clearing.
#[test]
fn an_override_set_while_cut_off_does_not_overrule_the_fleet_s_later_word() {
    let tokyo = FakeNode::start("127.0.0.98", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.99", Behaviour::Tcp);
    let etcd = EtcdCluster::start(&etcd_dir("replay"), 1);
    let relay = geosteer_harness::proxy::Relay::start(etcd.clients[0]);
    let dir = zone_dir("fleet-replay", &policy(&tokyo, &singapore, "majority"));
    let a = instance(&dir, &etcd, "a");
    let c = member(&dir, &relay.url(), "c", &[]);
    let both = addresses(&[&tokyo, &singapore]);
    let singapore_only = addresses(&[&singapore]);
    for server in [&a, &c] {
        until_answers(server, &both, "every node up");
        until_connected(server, &["a", "c"], "both instances in the fleet");
    }
    relay.cut();
    eventually(Duration::from_secs(10), "c sees the fleet lost", || {
        let (_, status) = http(c.admin, "GET", "/status", None);
        if status.contains("\"connected\":false") {
            Ok(())
        } else {
            Err(status)
        }
    });
    let (status, body) = http(c.admin, "POST", "/nodes/fleet.example/tokyo/drain", None);
    assert_eq!(status, 200, "{body}");
    until_answers(&c, &singapore_only, "drained locally while cut off");
    // The operator's later word, through the fleet: drain, then clear.
    for (word, want) in [("drain", &singapore_only), ("obey", &both)] {
        let output = fleet_command(&etcd, &[word, "fleet.example", "tokyo"]);
        assert!(output.status.success(), "{word}: {output:?}");
        until_answers(&a, want, word);
    }
    relay.heal();
    until_connected(&c, &["a", "c"], "c back in the fleet");
    let stored = etcd.etcdctl(
        0,
        &[
            "get",
            "--print-value-only",
            "/test/overrides/fleet.example/tokyo",
        ],
    );
    // The operator's record: the clearing, and who made it.
    let stored = String::from_utf8_lossy(&stored.stdout).trim().to_string();
    let record: serde_json::Value = serde_json::from_str(&stored).expect("a JSON record");
    assert_eq!(
        record["set"], "obey",
        "the cut-off drain was replayed over the clearing: {stored}"
    );
    assert!(record["by"].is_string(), "{stored}");
    for server in [&a, &c] {
        until_answers(server, &both, "the operator's last word everywhere");
    }
}

/// Restart safety: an instance restarted while etcd is down answers the fleet's drain
/// from its state file from its very first answer, is not ready while it waits for the
/// fleet (`--fleet-ready-wait-ms`), and then is ready on what it kept, saying the fleet
/// is unreachable.
#[test]
fn a_restart_with_etcd_down_keeps_the_fleet_s_drain() {
    let tokyo = FakeNode::start("127.0.0.100", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.101", Behaviour::Tcp);
    let mut etcd = EtcdCluster::start(&etcd_dir("kept"), 1);
    let endpoints = etcd.endpoints();
    let dir = zone_dir("fleet-kept", &policy(&tokyo, &singapore, "majority"));
    let state = dir.join("c-state.json");
    let state_arg = state.to_str().expect("UTF-8");
    let kept = ["--state-file", state_arg, "--fleet-ready-wait-ms", "5000"];
    let start = || member(&dir, &endpoints, "c", &kept);
    let both = addresses(&[&tokyo, &singapore]);
    let singapore_only = addresses(&[&singapore]);
    let c = start();
    until_answers(&c, &both, "every node up");
    until_connected(&c, &["c"], "c in the fleet");
    let output = fleet_command(&etcd, &["drain", "fleet.example", "tokyo"]);
    assert!(output.status.success(), "{output:?}");
    until_answers(&c, &singapore_only, "the fleet's drain");
    until_file(&state, "the drain in the state file", |text| {
        text.contains("\"drain\"")
    });
    drop(c);
    etcd.stop_member(0);
    let c = start();
    assert_eq!(
        answers(&c),
        singapore_only,
        "the first answer after a restart"
    );
    let (status, body) = http(c.admin, "GET", "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the fleet's state not read yet"), "{body}");
    eventually(Duration::from_secs(15), "ready on what was kept", || {
        let (status, body) = http(c.admin, "GET", "/readyz", None);
        if status == 200 && body.contains("fleet degraded") {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    });
    assert_eq!(answers(&c), singapore_only, "still drained");
}

/// Two instances named alike: the second is refused with an error that says why, once
/// the first has kept the identity for longer than a crashed predecessor's lease.
#[test]
fn a_second_instance_with_a_live_member_s_identity_is_refused() {
    let TwoInstances {
        tokyo: _tokyo,
        singapore: _singapore,
        etcd,
        a,
        b: _b,
    } = TwoInstances::start("twin", ["127.0.0.96", "127.0.0.97"], 1);
    let dir = zone_dir(
        "fleet-twin-again",
        &std::fs::read_to_string(repo("tests/fixtures/zones/test.example.yaml")).expect("policy"),
    );
    let started = std::time::Instant::now();
    let (exited, _, stderr) = serve_until_exit(
        &dir,
        &repo("tests/fixtures/geo-city.mmdb"),
        &[
            "--fleet",
            &etcd.endpoints(),
            "--fleet-prefix",
            "/test",
            "--identity",
            "a",
        ],
        Duration::from_secs(30),
    );
    eprintln!("the twin gave up after {:?}", started.elapsed());
    assert!(exited.is_some_and(|s| !s.success()), "{exited:?}: {stderr}");
    assert!(
        stderr.contains("identity 'a' is held by another live member"),
        "{stderr}"
    );
    // The first keeps its place.
    until_connected(&a, &["a", "b"], "the first a still in the fleet");
}

/// Per-member etcd roles, as deploy/README.md gives them: every member reads the fleet's
/// prefix and writes overrides and its own keys only. The fleet works under them (a drain
/// through one instance reaches the other), and one member's user cannot write another's
/// verdict.
#[test]
fn members_allowed_only_their_own_keys_share_one_view() {
    use geosteer_harness::etcd::member_password;
    let tokyo = FakeNode::start("127.0.0.102", Behaviour::Tcp);
    let singapore = FakeNode::start("127.0.0.103", Behaviour::Tcp);
    let etcd = EtcdCluster::start_with_member_roles(&etcd_dir("roles"), &["a", "b"]);
    let dir = zone_dir("fleet-roles", &policy(&tokyo, &singapore, "majority"));
    let endpoints = etcd.endpoints();
    let with_role = |identity: &str| {
        let password = dir.join(format!("{identity}.password"));
        std::fs::write(&password, member_password(identity)).expect("password file");
        let password = password.to_str().expect("UTF-8").to_string();
        let login = ["--fleet-user", identity, "--fleet-password-file", &password];
        member(&dir, &endpoints, identity, &login)
    };
    let (a, b) = (with_role("a"), with_role("b"));
    let both = addresses(&[&tokyo, &singapore]);
    for server in [&a, &b] {
        until_answers(server, &both, "every node up");
        until_connected(server, &["a", "b"], "both members in the fleet");
    }
    let (status, body) = http(a.admin, "POST", "/nodes/fleet.example/tokyo/drain", None);
    assert_eq!(status, 200, "{body}");
    until_answers(&b, &addresses(&[&singapore]), "a's drain on b");
    let forged = etcd.etcdctl_as(
        0,
        "a",
        &[
            "put",
            "/test/members/b/verdicts/fleet.example/tokyo",
            "down",
        ],
    );
    let stderr = String::from_utf8_lossy(&forged.stderr);
    assert!(
        !forged.status.success() && stderr.contains("permission denied"),
        "a wrote b's verdict: {stderr}"
    );
    let own = etcd.etcdctl_as(0, "a", &["put", "/test/members/a/note", "mine"]);
    assert!(own.status.success(), "{own:?}");
}

/// Among reporters, the newest load wins on every instance, whatever order the reports
/// arrive in: an older report posted later to another instance changes nothing.
#[test]
fn the_newest_load_report_wins_on_every_instance() {
    let TwoInstances {
        tokyo: _tokyo,
        singapore: _singapore,
        etcd: _etcd,
        a,
        b,
    } = TwoInstances::start("newest", ["127.0.0.104", "127.0.0.105"], 1);
    #[allow(clippy::disallowed_methods)] // the reports' times
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let post = |server: &Server, load: f64, seconds_ago: f64| {
        let batch = format!(
            r#"{{"zone": "fleet.example", "loads": [{{"node": "tokyo", "load": {load}, "at": {}}}]}}"#,
            now - seconds_ago
        );
        let (status, body) =
            crate::support::nodes::http_json(server.admin, "POST", "/latency", None, &batch);
        assert_eq!(status, 200, "{body}");
    };
    let shows = |load: &str, what: &str| {
        for server in [&a, &b] {
            eventually(Duration::from_secs(10), what, || {
                let (_, nodes) = http(server.admin, "GET", "/nodes", None);
                if nodes.contains(&format!("\"load\":{load}")) {
                    Ok(())
                } else {
                    Err(nodes)
                }
            });
        }
    };
    post(&b, 0.25, 5.0);
    shows("0.25", "b's report everywhere");
    // Older than what every instance holds: it loses, wherever it is posted.
    post(&a, 0.75, 20.0);
    // A newer one through b afterwards: once it is everywhere, a's older one cannot have won.
    post(&b, 0.5, 1.0);
    shows("0.5", "the newest report everywhere");
    post(&a, 0.75, 10.0);
    // a's instance keeps 0.5 too: a report posted to it after a newer one does not win.
    std::thread::sleep(Duration::from_millis(300));
    for server in [&a, &b] {
        let (_, nodes) = http(server.admin, "GET", "/nodes", None);
        assert!(nodes.contains("\"load\":0.5"), "{nodes}");
    }
}

/// A member cut off from its peers (both others stopped: it has no leader) is not trusted:
/// it refuses reads and cancels the watch (every call requires a leader), and the instance
/// reports the fleet lost, with `/readyz` still ready and saying why, instead of serving a
/// frozen view as connected.
#[test]
fn a_member_cut_off_from_its_peers_is_not_trusted() {
    let TwoInstances {
        tokyo: _tokyo,
        singapore: _singapore,
        mut etcd,
        a,
        b: _b,
    } = TwoInstances::start("cutoff", ["127.0.0.108", "127.0.0.109"], 3);
    let cut = std::time::Instant::now();
    etcd.stop_member(1);
    etcd.stop_member(2);
    eventually(Duration::from_secs(10), "a sees the fleet lost", || {
        let (_, status) = http(a.admin, "GET", "/status", None);
        if status.contains("\"connected\":false") {
            Ok(())
        } else {
            Err(status)
        }
    });
    eprintln!(
        "fleet lost {:?} after the member was cut off",
        cut.elapsed()
    );
    let (status, body) = http(a.admin, "GET", "/readyz", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("fleet degraded"), "{body}");
}
