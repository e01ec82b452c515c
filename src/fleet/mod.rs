//! A fleet with one view: instances share operators' overrides and their health verdicts
//! through etcd, so a drain is written once and survives restarts, and a node is down when
//! the zone's quorum of live vantage points says so, not when one instance with a broken
//! uplink does.
//!
//! Keys under the deployment's prefix (`--fleet-prefix`, default `/geosteer`):
//! - `overrides/<zone>/<node>` → `drain`, `force-up` or `force-down` (no lease: they stay);
//! - `verdicts/<zone>/<node>/<identity>` → `up` or `down`, under the writer's lease, so a
//!   dead vantage point's votes expire with it;
//! - `members/<identity>` → the member's version and policy serials (JSON), under its lease;
//! - `feeds/<identity>` → the member's latest feed batch (JSON), under its lease: batches
//!   posted to an instance, or a probe agent's round trips from its vantage point.
//!
//! This task is the only one that talks to etcd. The publisher hands it changes through a
//! bounded queue it never waits on, and gets the fleet's state as commands; while etcd is
//! unreachable the publisher answers from local verdicts and the last overrides seen, and
//! this task keeps retrying, writes everything it holds again and reads the state afresh.
//! Writes are bounded: a verdict when it changes, an override when an operator sets one,
//! and a lease keep-alive every `KEEPALIVE`.

pub mod etcd;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::answer::{Command, FleetNews, FleetState, FleetWrite, Override};
use crate::health::Health;
use etcd::{Etcd, EtcdError, Event, KeyValue, MAX_TXN_OPS, Op};

/// Lease of a member's verdicts and registration: how long a dead member's votes count.
const LEASE_TTL: u64 = 6;
/// How often the lease is renewed.
const KEEPALIVE: Duration = Duration::from_secs(2);
/// Wait before trying etcd again after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// Where a fleet member finds etcd and who it is.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The cluster's client.
    pub etcd: Etcd,
    /// Key prefix of this deployment (`/geosteer`).
    pub prefix: String,
    /// This member's identity (instance name or probe agent vantage).
    pub identity: String,
}

impl FleetConfig {
    fn key(&self, parts: &[&str]) -> String {
        format!("{}/{}", self.prefix.trim_end_matches('/'), parts.join("/"))
    }
}

/// The override's word in etcd.
fn override_word(set: Override) -> &'static str {
    match set {
        Override::Drain => "drain",
        Override::ForceUp => "force-up",
        Override::ForceDown => "force-down",
    }
}

fn override_of(word: &str) -> Option<Override> {
    match word {
        "drain" => Some(Override::Drain),
        "force-up" => Some(Override::ForceUp),
        "force-down" => Some(Override::ForceDown),
        _ => None,
    }
}

fn health_word(health: Health) -> &'static str {
    match health {
        Health::Up => "up",
        Health::Down => "down",
        Health::Unknown => "unknown",
    }
}

/// Everything under the prefix, as the fleet's state seen by `identity`: its own verdicts
/// are left out (the publisher has them first-hand).
#[derive(Debug, Default)]
struct Mirror {
    keys: HashMap<String, String>,
}

impl Mirror {
    fn apply(&mut self, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Put(KeyValue { key, value }) => {
                    self.keys.insert(key, value);
                }
                Event::Delete(key) => {
                    self.keys.remove(&key);
                }
            }
        }
    }

    fn state(&self, config: &FleetConfig) -> FleetState {
        let base = format!("{}/", config.prefix.trim_end_matches('/'));
        let mut state = FleetState::default();
        for (key, value) in &self.keys {
            let Some(rest) = key.strip_prefix(&base) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            match parts.as_slice() {
                ["overrides", zone, node] => {
                    if let Some(set) = override_of(value) {
                        state
                            .overrides
                            .insert((zone.to_string(), node.to_string()), set);
                    }
                }
                ["verdicts", zone, node, member] if *member != config.identity => {
                    let health = match value.as_str() {
                        "up" => Health::Up,
                        "down" => Health::Down,
                        _ => continue,
                    };
                    state
                        .verdicts
                        .entry((zone.to_string(), node.to_string()))
                        .or_default()
                        .push((member.to_string(), health));
                }
                ["members", member] => {
                    state.members.push(member.to_string());
                    state.member_info.insert(member.to_string(), value.clone());
                }
                ["feeds", member] if *member != config.identity => {
                    state.feeds.insert(member.to_string(), value.clone());
                }
                _ => {}
            }
        }
        state.members.sort();
        for votes in state.verdicts.values_mut() {
            votes.sort_by(|a, b| a.0.cmp(&b.0));
        }
        state
    }
}

/// Runs the fleet connection until `writes` closes: registers this member, mirrors the
/// fleet's keys into the publisher and writes this member's changes.
pub async fn run(
    config: FleetConfig,
    commands: mpsc::Sender<Command>,
    mut writes: mpsc::Receiver<FleetWrite>,
) {
    let etcd = config.etcd.clone();
    let mut own = Own::default();
    loop {
        let outcome = session(&etcd, &config, &commands, &mut writes, &mut own).await;
        match outcome {
            Ok(()) => return, // the publisher is gone: shutting down
            Err(e) => {
                debug!(error = %e, "fleet session ended");
                if commands
                    .send(Command::Fleet(FleetNews::Lost(e.to_string())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        // While waiting to retry, keep taking the publisher's changes.
        let retry = tokio::time::sleep(RETRY);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                write = writes.recv() => match write {
                    Some(write) => own.remember(write),
                    None => return,
                },
            }
        }
    }
}

/// What this member has written: its verdicts and latest feed (written again on every new
/// session, under the new lease) and the overrides not yet written (so nothing set while
/// etcd was away is lost).
#[derive(Debug, Default)]
struct Own {
    /// The registration: version and policy serials.
    registration: String,
    verdicts: HashMap<(String, String), Health>,
    feed: Option<String>,
    pending: Vec<FleetWrite>,
}

impl Own {
    fn remember(&mut self, write: FleetWrite) {
        match write {
            FleetWrite::Verdict { zone, node, health } => {
                self.verdicts.insert((zone, node), health);
            }
            FleetWrite::Feed(batch) => self.feed = Some(batch),
            FleetWrite::Policy(serials) => self.registration = registration(&serials),
            other => self.pending.push(other),
        }
    }
}

/// One connected stretch: ends with `Ok` when the publisher is gone, `Err` when etcd failed.
async fn session(
    etcd: &Etcd,
    config: &FleetConfig,
    commands: &mpsc::Sender<Command>,
    writes: &mut mpsc::Receiver<FleetWrite>,
    own: &mut Own,
) -> Result<(), EtcdError> {
    let lease = etcd.grant(LEASE_TTL).await?;
    if own.registration.is_empty() {
        own.registration = registration(&[]);
    }
    // Everything this member holds, written again under the new lease in a few commits.
    let mut ops = vec![Op::Put {
        key: config.key(&["members", &config.identity]),
        value: own.registration.clone(),
        lease,
    }];
    for ((zone, node), health) in &own.verdicts {
        ops.push(op_of(
            config,
            &FleetWrite::Verdict {
                zone: zone.clone(),
                node: node.clone(),
                health: *health,
            },
            lease,
        ));
    }
    if let Some(batch) = &own.feed {
        ops.push(op_of(config, &FleetWrite::Feed(batch.clone()), lease));
    }
    ops.extend(own.pending.iter().map(|w| op_of(config, w, lease)));
    etcd.apply(&ops).await?;
    own.pending.clear();
    let prefix = format!("{}/", config.prefix.trim_end_matches('/'));
    let (revision, kvs) = etcd.range_prefix(&prefix).await?;
    let mut mirror = Mirror::default();
    mirror.apply(kvs.into_iter().map(Event::Put).collect());
    if commands
        .send(Command::Fleet(FleetNews::State(mirror.state(config))))
        .await
        .is_err()
    {
        return Ok(());
    }
    info!(revision, "fleet connected");
    // The watch and the lease's keep-alives run on tasks of their own, so neither waits
    // behind writes; both report how they end through `events`.
    let (events_tx, mut events) = mpsc::channel::<Result<Vec<Event>, EtcdError>>(64);
    let watcher = {
        let (etcd, events_tx) = (etcd.clone(), events_tx.clone());
        tokio::spawn(async move {
            let ended = etcd.watch_prefix(&prefix, revision + 1, &events_tx).await;
            let _ = events_tx
                .send(Err(ended.err().unwrap_or_else(|| {
                    EtcdError::Unreachable("the watch ended".into())
                })))
                .await;
        })
    };
    let keeper = {
        let etcd = etcd.clone();
        tokio::spawn(async move {
            let mut keepalive = tokio::time::interval(KEEPALIVE);
            keepalive.tick().await;
            let why = loop {
                keepalive.tick().await;
                match etcd.keep_alive(lease).await {
                    Ok(true) => {}
                    Ok(false) => break EtcdError::Refused("the lease expired".into()),
                    Err(e) => break e,
                }
            };
            let _ = events_tx.send(Err(why)).await;
        })
    };
    let result = async {
        loop {
            tokio::select! {
                batch = events.recv() => {
                    let batch = batch.unwrap_or_else(|| Err(EtcdError::Unreachable("watch gone".into())))?;
                    mirror.apply(batch);
                    if commands.send(Command::Fleet(FleetNews::State(mirror.state(config)))).await.is_err() {
                        return Ok(());
                    }
                }
                write = writes.recv() => {
                    let Some(write) = write else { return Ok(()) };
                    // Whatever else is queued goes in the same transaction.
                    let mut batch = vec![write];
                    while batch.len() < MAX_TXN_OPS {
                        match writes.try_recv() {
                            Ok(write) => batch.push(write),
                            Err(_) => break,
                        }
                    }
                    let ops: Vec<Op> = batch.iter().map(|w| op_of(config, w, lease)).collect();
                    for write in batch {
                        own.remember(write);
                    }
                    etcd.apply(&ops).await?;
                    own.pending.clear();
                }
            }
        }
    }
    .await;
    watcher.abort();
    keeper.abort();
    result
}

/// The etcd write of a change of this member's.
fn op_of(config: &FleetConfig, write: &FleetWrite, lease: i64) -> Op {
    match write {
        FleetWrite::Verdict { zone, node, health } => Op::Put {
            key: config.key(&["verdicts", zone, node, &config.identity]),
            value: health_word(*health).into(),
            lease,
        },
        FleetWrite::Feed(batch) => Op::Put {
            key: config.key(&["feeds", &config.identity]),
            value: batch.clone(),
            lease,
        },
        FleetWrite::Policy(serials) => Op::Put {
            key: config.key(&["members", &config.identity]),
            value: registration(serials),
            lease,
        },
        FleetWrite::Override { zone, node, set } => {
            let key = config.key(&["overrides", zone, node]);
            match set {
                Some(set) => Op::Put {
                    key,
                    value: override_word(*set).into(),
                    lease: 0,
                },
                None => Op::Delete { key },
            }
        }
    }
}

/// A member's registration: its version and the SOA serial of every zone it serves.
fn registration(serials: &[(String, u32)]) -> String {
    let serials: serde_json::Map<String, serde_json::Value> = serials
        .iter()
        .map(|(zone, serial)| (zone.clone(), serde_json::json!(serial)))
        .collect();
    serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "serials": serials}).to_string()
}

/// Reads the fleet's state for `geosteer fleet status`: members, overrides and every
/// member's verdicts, as text.
pub async fn status_text(config: &FleetConfig) -> Result<String, EtcdError> {
    let etcd = &config.etcd;
    let prefix = format!("{}/", config.prefix.trim_end_matches('/'));
    let (revision, kvs) = etcd.range_prefix(&prefix).await?;
    let mut mirror = Mirror::default();
    mirror.apply(kvs.into_iter().map(Event::Put).collect());
    // Seen by no member: every member's verdicts are listed.
    let everyone = FleetConfig {
        identity: String::new(),
        ..config.clone()
    };
    let state = mirror.state(&everyone);
    let mut out = format!("fleet {} at revision {revision}\n", config.prefix);
    out += &format!(
        "members ({}): {}\n",
        state.members.len(),
        state.members.join(", ")
    );
    // Who serves what: members whose registrations differ serve different policy (or
    // geosteer) versions.
    let mut registrations: Vec<(&String, &String)> = state.member_info.iter().collect();
    registrations.sort();
    for (member, info) in &registrations {
        out += &format!("  {member}: {info}\n");
    }
    let distinct: std::collections::BTreeSet<&String> =
        registrations.iter().map(|(_, info)| *info).collect();
    if distinct.len() > 1 {
        out += "  warning: members serve different policy or geosteer versions\n";
    }
    let mut overrides: Vec<_> = state.overrides.iter().collect();
    overrides.sort_by(|a, b| a.0.cmp(b.0));
    out += &format!("overrides ({}):\n", overrides.len());
    for ((zone, node), set) in overrides {
        out += &format!("  {zone} {node}: {}\n", override_word(*set));
    }
    let mut verdicts: Vec<_> = state.verdicts.iter().collect();
    verdicts.sort_by(|a, b| a.0.cmp(b.0));
    out += "verdicts:\n";
    for ((zone, node), votes) in verdicts {
        let votes: Vec<String> = votes
            .iter()
            .map(|(member, health)| format!("{member}={}", health_word(*health)))
            .collect();
        out += &format!("  {zone} {node}: {}\n", votes.join(" "));
    }
    Ok(out)
}

/// Sets or clears a node's override for the whole fleet (`geosteer fleet drain ...`).
pub async fn set_override(
    config: &FleetConfig,
    zone: &str,
    node: &str,
    set: Option<Override>,
) -> Result<(), EtcdError> {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let write = FleetWrite::Override {
        zone,
        node: node.to_string(),
        set,
    };
    config.etcd.apply(&[op_of(config, &write, 0)]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_reads_overrides_others_verdicts_and_members() {
        let config = FleetConfig {
            etcd: Etcd::new(&etcd::EtcdSettings {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                ..Default::default()
            })
            .unwrap(),
            prefix: "/g".into(),
            identity: "a".into(),
        };
        let mut mirror = Mirror::default();
        let put = |k: &str, v: &str| {
            Event::Put(KeyValue {
                key: k.into(),
                value: v.into(),
            })
        };
        mirror.apply(vec![
            put("/g/overrides/z/tokyo", "drain"),
            put("/g/verdicts/z/tokyo/a", "down"),
            put("/g/verdicts/z/tokyo/b", "up"),
            put("/g/members/a", "0.1.0"),
            put("/g/members/b", "0.1.0"),
            put("/other/overrides/z/tokyo", "force-down"),
        ]);
        let state = mirror.state(&config);
        let key = ("z".to_string(), "tokyo".to_string());
        assert_eq!(state.overrides.get(&key), Some(&Override::Drain));
        assert_eq!(state.verdicts[&key], vec![("b".to_string(), Health::Up)]);
        assert_eq!(state.members, vec!["a", "b"]);
        mirror.apply(vec![Event::Delete("/g/overrides/z/tokyo".into())]);
        assert!(mirror.state(&config).overrides.is_empty());
    }
}
