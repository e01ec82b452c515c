//! Real etcd members for the fleet tests and benchmarks: a cluster on loopback ports, each
//! member with its own data directory, started and stopped by the caller (the package's own
//! service is never used).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::eventually;

/// Real etcd members on loopback, each with its own data directory, killed when dropped;
/// a member can be stopped and started again on its data.
pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    commands: Vec<Vec<String>>,
    /// Each member's client address.
    pub clients: Vec<SocketAddr>,
    /// With TLS: the certificates clients use (client URLs are then https://).
    pub tls: Option<EtcdTls>,
    /// Each member's log file.
    logs: Vec<PathBuf>,
    /// Another local address every member also listens on (for clients in a network
    /// namespace), with the same ports.
    pub also_on: Option<String>,
    /// The members' data directories, certificates and logs: removed when dropped (each
    /// member preallocates a 64 MiB write-ahead log).
    dir: PathBuf,
}

/// A secured cluster's files, made by `openssl` for the test: its CA, and a client
/// certificate that cluster demands (`--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA that signed every certificate.
    pub ca: PathBuf,
    /// A client certificate signed by it.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// The user a secured cluster knows, allowed to read and write under `/test` only.
pub const FLEET_USER: &str = "geosteer";
/// Its password.
pub const FLEET_PASSWORD: &str = "fleet-secret";
/// etcd's root user (authentication needs one), with this password.
const ROOT_PASSWORD: &str = "root-secret";

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a certificate for etcd at 127.0.0.1 and a client certificate, in `dir`.
fn make_certificates(dir: &Path) -> EtcdTls {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=geosteer test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    // The client certificate has no CommonName, so the login alone names the user.
    for (name, subject, usage, san) in [
        (
            "etcd",
            "/CN=etcd",
            "serverAuth,clientAuth",
            "subjectAltName=IP:127.0.0.1",
        ),
        (
            "client",
            "/O=geosteer fleet",
            "clientAuth",
            "subjectAltName=DNS:geosteer-client",
        ),
    ] {
        let mut request = vec!["req", "-subj"];
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let extensions = format!("{name}.ext");
        request.push(subject);
        request.extend(ec);
        request.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &request);
        std::fs::write(
            dir.join(&extensions),
            format!("basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n{san}\n"),
        )
        .expect("extensions file");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extensions,
                "-out",
                &pem,
            ],
        );
    }
    EtcdTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
    }
}

/// The etcd password of a fleet member's user in [`EtcdCluster::start_with_member_roles`].
pub fn member_password(member: &str) -> String {
    format!("{member}-secret")
}

/// `etcdctl role grant-permission ROLE --prefix=true PERMISSION PREFIX`.
fn grant(role: &str, permission: &str, prefix: &str) -> Vec<String> {
    [
        "role",
        "grant-permission",
        role,
        "--prefix=true",
        permission,
        prefix,
    ]
    .map(String::from)
    .to_vec()
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl EtcdCluster {
    pub fn start(dir: &Path, size: usize) -> EtcdCluster {
        EtcdCluster::start_with(dir, size, false, None)
    }

    /// Like [`EtcdCluster::start`], the members listening for clients on `host` too (an
    /// address of this host, e.g. the root end of a veth link to a test's namespace).
    pub fn start_also_on(dir: &Path, size: usize, host: &str) -> EtcdCluster {
        EtcdCluster::start_with(dir, size, false, Some(host))
    }

    /// The client URLs on the other address given at start.
    pub fn endpoints_on_other_address(&self) -> String {
        let host = self
            .also_on
            .as_deref()
            .expect("started with another address");
        self.clients
            .iter()
            .map(|c| format!("http://{host}:{}", c.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One member speaking TLS only, demanding a client certificate, with authentication
    /// on: [`FLEET_USER`] may read and write under `/test`, nothing else.
    pub fn start_secure(dir: &Path) -> EtcdCluster {
        let cluster = EtcdCluster::start_with(dir, 1, true, None);
        for args in [
            vec!["user", "add", "root", "--new-user-password", ROOT_PASSWORD],
            vec![
                "user",
                "add",
                FLEET_USER,
                "--new-user-password",
                FLEET_PASSWORD,
            ],
            vec!["role", "add", "fleet"],
            vec![
                "role",
                "grant-permission",
                "fleet",
                "--prefix=true",
                "readwrite",
                "/test/",
            ],
            vec!["user", "grant-role", FLEET_USER, "fleet"],
            vec!["auth", "enable"],
        ] {
            let output = cluster.etcdctl(0, &args);
            assert!(
                output.status.success(),
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        cluster
    }

    /// One member with authentication on and a user per fleet member, each with the roles
    /// deploy/README.md gives: read the whole prefix `/test/`, write overrides and its own
    /// keys under `/test/members/<identity>/`. Passwords are [`member_password`]; `root`
    /// may do everything.
    pub fn start_with_member_roles(dir: &Path, members: &[&str]) -> EtcdCluster {
        let cluster = EtcdCluster::start_with(dir, 1, false, None);
        let mut commands: Vec<Vec<String>> = vec![
            ["user", "add", "root", "--new-user-password", ROOT_PASSWORD]
                .map(String::from)
                .to_vec(),
        ];
        for member in members {
            let role = format!("member-{member}");
            let own = format!("/test/members/{member}/");
            commands.extend([
                vec!["user".into(), "add".into(), member.to_string()]
                    .into_iter()
                    .chain(["--new-user-password".into(), member_password(member)])
                    .collect(),
                vec!["role".into(), "add".into(), role.clone()],
                grant(&role, "read", "/test/"),
                grant(&role, "readwrite", "/test/overrides/"),
                grant(&role, "readwrite", &own),
                vec!["user".into(), "grant-role".into(), member.to_string(), role],
            ]);
        }
        commands.push(vec!["auth".into(), "enable".into()]);
        for args in commands {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = cluster.etcdctl(0, &args);
            assert!(
                output.status.success(),
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        cluster
    }

    /// Runs etcdctl against member `i` as `user` (root, or a member of
    /// [`EtcdCluster::start_with_member_roles`]).
    pub fn etcdctl_as(&self, i: usize, user: &str, args: &[&str]) -> std::process::Output {
        let password = if user == "root" {
            ROOT_PASSWORD.to_string()
        } else {
            member_password(user)
        };
        let login = format!("--user={user}:{password}");
        let mut all = vec![login.as_str()];
        all.extend(args);
        self.etcdctl(i, &all)
    }

    /// Runs etcdctl against member `i` (with the client certificate when secured).
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> std::process::Output {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint(i)))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=5s");
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.cert.display()))
                .arg(format!("--key={}", tls.key.display()));
        }
        command
            .args(args)
            .output()
            .expect("etcdctl runs (apt-get install etcd-client)")
    }

    fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.clients[i])
    }

    /// Starts the members; a member that exits while starting (another process took one
    /// of its ports between choosing and binding) starts the cluster again on new ports.
    fn start_with(dir: &Path, size: usize, secure: bool, also_on: Option<&str>) -> EtcdCluster {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("etcd directory");
        let tls = secure.then(|| make_certificates(dir));
        let mut failures = Vec::new();
        for _ in 0..3 {
            for i in 0..size {
                let _ = std::fs::remove_dir_all(dir.join(format!("m{i}")));
            }
            let mut cluster = EtcdCluster::configure(dir, size, tls.clone(), also_on);
            for i in 0..size {
                cluster.start_member(i);
            }
            match cluster.started(dir) {
                Ok(()) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!("etcd did not start: {failures:#?}");
    }

    /// Waits for every member to be healthy, or for one to exit (with its log's tail).
    fn started(&mut self, dir: &Path) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for i in 0..self.members.len() {
            loop {
                if let Some(Ok(Some(status))) = self.members[i].as_mut().map(Child::try_wait) {
                    let log =
                        std::fs::read_to_string(dir.join(format!("m{i}.log"))).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(format!("member {i} exited ({status}): {tail:?}"));
                }
                if self.healthy(i) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("member {i} not healthy within 30 s"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn healthy(&self, i: usize) -> bool {
        if self.tls.is_some() {
            return self.etcdctl(i, &["endpoint", "health"]).status.success();
        }
        let (status, body) = probe_health(self.clients[i]);
        status == 200 && body.contains("true")
    }

    fn configure(
        dir: &Path,
        size: usize,
        tls: Option<EtcdTls>,
        also_on: Option<&str>,
    ) -> EtcdCluster {
        let secure = tls.is_some();
        let scheme = if secure { "https" } else { "http" };
        // Held open together, so no two are the same.
        let held: Vec<TcpListener> = (0..size * 2)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port"))
            .collect();
        let port = |i: usize| held[i].local_addr().expect("a bound port").port();
        let ports: Vec<(u16, u16)> = (0..size).map(|i| (port(2 * i), port(2 * i + 1))).collect();
        drop(held);
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let commands: Vec<Vec<String>> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let mut args: Vec<String> = vec![
                    "--name".into(),
                    format!("m{i}"),
                    "--data-dir".into(),
                    dir.join(format!("m{i}")).display().to_string(),
                    "--listen-client-urls".into(),
                    match also_on {
                        Some(host) => {
                            format!("{scheme}://127.0.0.1:{client},{scheme}://{host}:{client}")
                        }
                        None => format!("{scheme}://127.0.0.1:{client}"),
                    },
                    "--advertise-client-urls".into(),
                    format!("{scheme}://127.0.0.1:{client}"),
                    "--listen-peer-urls".into(),
                    format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls".into(),
                    format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster".into(),
                    initial.join(","),
                    "--initial-cluster-state".into(),
                    "new".into(),
                    "--initial-cluster-token".into(),
                    "geosteer-test".into(),
                ];
                if secure {
                    for (flag, file) in [
                        ("--cert-file", "etcd.pem"),
                        ("--key-file", "etcd.key"),
                        ("--trusted-ca-file", "ca.pem"),
                    ] {
                        args.push(flag.into());
                        args.push(dir.join(file).display().to_string());
                    }
                    args.push("--client-cert-auth".into());
                }
                args
            })
            .collect();
        let clients: Vec<SocketAddr> = ports
            .iter()
            .map(|(c, _)| SocketAddr::from((Ipv4Addr::LOCALHOST, *c)))
            .collect();
        EtcdCluster {
            members: (0..size).map(|_| None).collect(),
            commands,
            clients,
            tls,
            logs: (0..size).map(|i| dir.join(format!("m{i}.log"))).collect(),
            also_on: also_on.map(str::to_string),
            dir: dir.to_path_buf(),
        }
    }

    pub fn start_member(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.logs[i])
            .expect("etcd log file");
        let child = Command::new("etcd")
            .args(&self.commands[i])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd runs (apt-get install etcd-server; .ci/run installs it)");
        self.members[i] = Some(child);
    }

    pub fn wait_healthy(&self, i: usize) {
        eventually(Duration::from_secs(30), "etcd member healthy", || {
            if self.healthy(i) {
                Ok(())
            } else {
                Err(std::fs::read_to_string(&self.logs[i])
                    .unwrap_or_default()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_string())
            }
        });
    }

    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes member `i` (SIGSTOP): its sockets stay open and silent, as a hung process
    /// or a host behind a black hole leaves them.
    pub fn pause_member(&self, i: usize) {
        self.signal_member(i, "-STOP");
    }

    /// Lets a paused member run again (SIGCONT).
    pub fn resume_member(&self, i: usize) {
        self.signal_member(i, "-CONT");
    }

    fn signal_member(&self, i: usize, signal: &str) {
        let Some(child) = self.members[i].as_ref() else {
            return;
        };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} etcd member {i}");
    }

    /// The member that leads the cluster now.
    pub fn leader(&self) -> usize {
        eventually(Duration::from_secs(10), "an etcd leader", || {
            for (i, client) in self.clients.iter().enumerate() {
                if self.members[i].is_none() {
                    continue;
                }
                let (_, body) =
                    crate::nodes::http_json(*client, "POST", "/v3/maintenance/status", None, "{}");
                let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if status["leader"].is_string() && status["leader"] == status["header"]["member_id"]
                {
                    return Ok(i);
                }
            }
            Err("no member says it leads".to_string())
        })
    }

    /// Adds a learner (a non-voting member that refuses clients' requests until promoted)
    /// to a plain cluster, starts it and waits for it to answer its health endpoint; its
    /// index.
    pub fn add_learner(&mut self) -> usize {
        let held: Vec<TcpListener> = (0..2)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port"))
            .collect();
        let port = |i: usize| held[i].local_addr().expect("a bound port").port();
        let (client, peer) = (port(0), port(1));
        drop(held);
        let i = self.members.len();
        let name = format!("m{i}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let added = self.etcdctl(
            0,
            &[
                "member",
                "add",
                &name,
                "--learner",
                &format!("--peer-urls={peer_url}"),
            ],
        );
        let text = String::from_utf8_lossy(&added.stdout).into_owned();
        assert!(added.status.success(), "etcdctl member add: {added:?}");
        let initial = text
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("member add prints the initial cluster")
            .to_string();
        let client_url = format!("http://127.0.0.1:{client}");
        let data = self.dir.join(&name).display().to_string();
        self.commands.push(
            [
                "--name",
                &name,
                "--data-dir",
                &data,
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "existing",
            ]
            .map(String::from)
            .to_vec(),
        );
        self.members.push(None);
        self.clients
            .push(SocketAddr::from((Ipv4Addr::LOCALHOST, client)));
        self.logs.push(self.dir.join(format!("{name}.log")));
        self.start_member(i);
        eventually(
            Duration::from_secs(30),
            "the learner listens",
            || match probe_health(self.clients[i]) {
                (0, why) => Err(why),
                _ => Ok(()),
            },
        );
        i
    }

    pub fn endpoints(&self) -> String {
        (0..self.clients.len())
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// etcd's /health, or (0, why) while it does not listen yet.
fn probe_health(client: SocketAddr) -> (u16, String) {
    match std::net::TcpStream::connect_timeout(&client, Duration::from_millis(200)) {
        Ok(_) => crate::nodes::http(client, "GET", "/health", None),
        Err(e) => (0, e.to_string()),
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
        // Kept when the test failed: the members' logs say why.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
