//! Real etcd members for the fleet tests and benchmarks: a cluster on loopback ports, each
//! member with its own data directory, started and stopped by the caller (the package's own
//! service is never used).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
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
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl EtcdCluster {
    pub fn start(dir: &Path, size: usize) -> EtcdCluster {
        let _ = std::fs::remove_dir_all(dir);
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let commands: Vec<Vec<String>> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                vec![
                    "--name".into(),
                    format!("m{i}"),
                    "--data-dir".into(),
                    dir.join(format!("m{i}")).display().to_string(),
                    "--listen-client-urls".into(),
                    format!("http://127.0.0.1:{client}"),
                    "--advertise-client-urls".into(),
                    format!("http://127.0.0.1:{client}"),
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
                ]
            })
            .collect();
        let clients: Vec<SocketAddr> = ports
            .iter()
            .map(|(c, _)| SocketAddr::from((Ipv4Addr::LOCALHOST, *c)))
            .collect();
        let mut cluster = EtcdCluster {
            members: (0..size).map(|_| None).collect(),
            commands,
            clients,
        };
        for i in 0..size {
            cluster.start_member(i);
        }
        for i in 0..size {
            cluster.wait_healthy(i);
        }
        cluster
    }

    pub fn start_member(&mut self, i: usize) {
        let child = Command::new("etcd")
            .args(&self.commands[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd runs (apt-get install etcd-server; .ci/run installs it)");
        self.members[i] = Some(child);
    }

    pub fn wait_healthy(&self, i: usize) {
        eventually(Duration::from_secs(30), "etcd member healthy", || {
            let (status, body) = probe_health(self.clients[i]);
            if status == 200 && body.contains("true") {
                Ok(())
            } else {
                Err(body)
            }
        });
    }

    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

    pub fn endpoints(&self) -> String {
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
        Ok(_) => crate::nodes::http(client, "GET", "/health", None),
        Err(e) => (0, e.to_string()),
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
