//! A fleet with one view: instances share operators' overrides and their health verdicts
//! through etcd, so a drain is written once and survives restarts, and a node is down when
//! the zone's quorum of live vantage points says so, not when one instance with a broken
//! uplink does.
//!
//! Keys under the deployment's prefix (`--fleet-prefix`, default `/geosteer`):
//! - `overrides/<zone>/<node>` → `drain`, `force-up`, `force-down`, or `obey` once cleared
//!   (no lease: they stay);
//! - `members/<identity>/registration` → the member's version, policy serials and node
//!   names (JSON), under its lease; written only while no other live member holds the
//!   identity;
//! - `members/<identity>/verdicts/<zone>/<node>` → `up` or `down`, under that lease, so a
//!   dead vantage point's votes expire with it;
//! - `members/<identity>/feed` → the member's latest feed batch (JSON), under that lease:
//!   batches posted to an instance, or a probe agent's round trips from its vantage point.
//!
//! Only a live member's verdicts and feed, written under its registration's lease, count.
//! Everything a member writes but overrides lies under `members/<identity>/`, so etcd's
//! roles can give each member write access to its own keys only (deploy/README.md).
//!
//! This task is the only one that talks to etcd. It reads the publisher's outbox (the
//! latest value per key, through a `watch`: the publisher never waits and nothing is
//! dropped) and writes what differs from what it last wrote; it sends the fleet's state to
//! the publisher as commands. While etcd is unreachable the publisher answers from local
//! verdicts and the last overrides seen, and this task keeps retrying, writes everything it
//! holds again under a new lease and reads the state afresh.
//! Writes are bounded: a verdict when it changes, an override when an operator sets one,
//! and a lease keep-alive every `KEEPALIVE`.

pub mod agent;
pub mod etcd;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::answer::{
    Audit, Command, FleetKey, FleetNews, FleetPolicy, FleetState, Outbox, Override, drain_share,
};
use crate::health::Health;
use crate::keep::{FleetOverride, Keeper, Kept};
pub use agent::Agent;
use etcd::{Compare, Etcd, EtcdError, Event, KeyValue, MAX_TXN_OPS, Op};

/// Lease of a member's verdicts and registration: how long a dead member's votes count.
const LEASE_TTL: u64 = 6;
/// How often the lease is renewed.
const KEEPALIVE: Duration = Duration::from_secs(2);
/// Wait before trying etcd again after a failure.
const RETRY: Duration = Duration::from_millis(250);
/// The longest wait between two tries.
const RETRY_MAX: Duration = Duration::from_secs(4);
/// How often the member serving the watch is asked a linearizable read, and how long it
/// may take: a stopped or cut-off member is left within about 1.5 s.
const LIVENESS_EVERY: Duration = Duration::from_millis(500);
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// How many leases of sessions whose registration went unanswered are remembered: each
/// lives `LEASE_TTL`, and retries come at least `RETRY` apart.
const UNHEARD_KEPT: usize = 8;

/// How long a starting instance waits for another live member to give up its identity (a
/// crashed predecessor's lease runs out within `LEASE_TTL`) before it gives up.
const IDENTITY_WAIT: Duration = Duration::from_secs(LEASE_TTL + 1);

/// The wait before try `failures` + 1: doubling from `RETRY` up to `RETRY_MAX`, each a
/// random 50-100 % of that, so a fleet that lost etcd together does not return in step.
fn retry_after(failures: u32, jitter: f64) -> Duration {
    let full = RETRY.saturating_mul(1 << failures.min(8)).min(RETRY_MAX);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

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

/// The override's word in etcd (`drain:50` for a staged drain).
fn override_word(set: Override) -> std::borrow::Cow<'static, str> {
    match set {
        Override::Drain => "drain".into(),
        Override::DrainShare(share) => format!("drain:{share}").into(),
        Override::ForceUp => "force-up".into(),
        Override::ForceDown => "force-down".into(),
    }
}

/// The word of a cleared override: written, not deleted, so the clearing has a revision
/// that a drain set elsewhere while cut off is compared against.
const OBEY: &str = "obey";

/// The etcd word of an override, or of its clearing.
fn override_value(set: Option<Override>) -> std::borrow::Cow<'static, str> {
    set.map_or(OBEY.into(), override_word)
}

/// An override's etcd value with who set it and why: JSON (`{"set": "drain", "by":
/// "alice", "reason": "..."}`) when they are known, else the bare word, as before.
fn override_record(set: Option<Override>, by: Option<&Audit>) -> std::borrow::Cow<'static, str> {
    match by {
        Some(audit) => serde_json::json!({
            "set": override_value(set),
            "by": audit.by,
            "reason": audit.reason,
        })
        .to_string()
        .into(),
        None => override_value(set),
    }
}

/// Who set an override and why, from its etcd value (a bare word says nothing).
fn audit_of(value: &str) -> Option<Audit> {
    #[derive(serde::Deserialize)]
    struct Record {
        by: String,
        reason: Option<String>,
    }
    let record: Record = serde_json::from_str(value).ok()?;
    Some(Audit::new(record.by, record.reason.as_deref()))
}

/// The override an etcd value holds: a bare word, or the `set` of a JSON record.
fn override_of(value: &str) -> Option<Override> {
    if value.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Record {
            set: String,
        }
        let record: Record = serde_json::from_str(value).ok()?;
        return override_word_of(&record.set);
    }
    override_word_of(value)
}

fn override_word_of(word: &str) -> Option<Override> {
    if let Some(share) = word.strip_prefix("drain:") {
        return drain_share(share.parse().ok()?);
    }
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
/// are left out (the publisher has them first-hand). A member is live while its
/// registration's lease is; only a live member's verdicts and feed written under that same
/// lease count, so keys written by anyone else (no lease, another lease) decide nothing.
#[derive(Debug, Default)]
struct Mirror {
    /// Key → (value, lease, revision of its last write).
    keys: HashMap<String, (String, i64, i64)>,
}

impl Mirror {
    fn apply(&mut self, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Put(KeyValue {
                    key,
                    value,
                    lease,
                    mod_revision,
                }) => {
                    self.keys.insert(key, (value, lease, mod_revision));
                }
                Event::Delete(key) => {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// The fleet as an earlier run last saw it (from the state file): its overrides.
    fn seen_before(config: &FleetConfig, kept: &[FleetOverride]) -> Mirror {
        let mut mirror = Mirror::default();
        for o in kept {
            let value = override_value(o.set).to_string();
            let key = override_key(config, &o.zone, &o.node);
            mirror.keys.insert(key, (value, 0, o.revision));
        }
        mirror
    }

    /// The fleet's overrides as seen, with their revisions, in order: what the state file
    /// keeps.
    fn overrides(&self, config: &FleetConfig) -> Vec<FleetOverride> {
        let base = config.key(&["overrides", ""]);
        let mut kept: Vec<FleetOverride> = (self.keys.iter())
            .filter_map(|(key, (value, _, revision))| {
                let (zone, node) = key.strip_prefix(&base)?.split_once('/')?;
                (!node.contains('/')).then(|| FleetOverride {
                    zone: zone.to_string(),
                    node: node.to_string(),
                    set: override_of(value),
                    revision: *revision,
                })
            })
            .collect();
        kept.sort_by(|a, b| (&a.zone, &a.node).cmp(&(&b.zone, &b.node)));
        kept
    }

    /// The revision of `key`'s last write as seen; 0 when it was not seen.
    fn revision(&self, key: &str) -> i64 {
        self.keys.get(key).map_or(0, |(_, _, revision)| *revision)
    }

    /// The fleet's state as this member sees it, and the etcd member it is read through.
    fn seen_via(&self, config: &FleetConfig, etcd: &Etcd) -> Box<FleetState> {
        Box::new(FleetState {
            via: Some(etcd.current_url()),
            ..self.state(config)
        })
    }

    fn state(&self, config: &FleetConfig) -> FleetState {
        let base = format!("{}/", config.prefix.trim_end_matches('/'));
        // Live members and the lease each registered under.
        let live: HashMap<&str, i64> = self
            .keys
            .iter()
            .filter_map(|(key, (_, lease, _))| {
                let member = key.strip_prefix(&base)?.strip_prefix("members/")?;
                let member = member.strip_suffix("/registration")?;
                (*lease != 0 && !member.contains('/')).then_some((member, *lease))
            })
            .collect();
        let by_member = |member: &str, lease: i64| live.get(member) == Some(&lease);
        let mut state = FleetState::default();
        for (key, (value, lease, _)) in &self.keys {
            let Some(rest) = key.strip_prefix(&base) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            match parts.as_slice() {
                ["overrides", zone, node] => {
                    let key = (zone.to_string(), node.to_string());
                    if let Some(audit) = audit_of(value) {
                        state.audits.insert(key.clone(), audit);
                    }
                    if let Some(set) = override_of(value) {
                        state.overrides.insert(key, set);
                    }
                }
                ["members", member, "verdicts", zone, node]
                    if *member != config.identity && by_member(member, *lease) =>
                {
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
                ["members", member, "registration"] if live.contains_key(member) => {
                    state.members.push(member.to_string());
                    state.member_info.insert(member.to_string(), value.clone());
                }
                ["members", member, "feed"]
                    if *member != config.identity && by_member(member, *lease) =>
                {
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

/// Runs the fleet connection until the publisher is gone: registers this member, mirrors
/// the fleet's keys into the publisher, and writes what the publisher's outbox (and, for a
/// probe agent, its measurements) says that etcd does not have yet.
///
/// With a state file (`keeping`: its writer and what it held at start), the fleet's
/// overrides as last seen and those set here not yet written are kept in it.
///
/// Ends with an error only when this instance never got its identity: another live member
/// kept holding it for `IDENTITY_WAIT` (two instances named alike).
pub async fn run(
    config: FleetConfig,
    commands: mpsc::Sender<Command>,
    mut outbox: watch::Receiver<Outbox>,
    mut agent: Option<Agent>,
    keeping: (Option<Keeper>, Kept),
    membership: Membership,
) -> Result<(), EtcdError> {
    let began = tokio::time::Instant::now();
    let etcd = config.etcd.clone();
    let (keeper, kept) = keeping;
    let mut written = Written::default();
    // The fleet as last seen, kept between sessions (and runs): what overrides set while
    // cut off are compared against.
    let mut mirror = Mirror::seen_before(&config, &kept.fleet);
    // Jitter only needs a seed that differs between members.
    #[allow(clippy::disallowed_methods)]
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut jitter = crate::random::XorShift::new(seed ^ config.identity.len() as u64);
    let mut failures = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let outcome = session(
            &etcd,
            &config,
            &commands,
            &mut outbox,
            agent.as_mut(),
            (&mut written, &mut mirror, keeper.as_ref(), &membership),
        )
        .await;
        match outcome {
            Ok(()) => return Ok(()), // the publisher is gone: shutting down
            Err(e @ EtcdError::IdentityTaken(_))
                if written.lease == 0 && began.elapsed() >= IDENTITY_WAIT =>
            {
                return Err(e);
            }
            Err(e) => {
                if matches!(e, EtcdError::IdentityTaken(_)) {
                    warn!(error = %e, "waiting for this instance's identity");
                } else {
                    debug!(error = %e, "fleet session ended");
                }
                if commands
                    .send(Command::Fleet(FleetNews::Lost(e.to_string())))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        // A session that lasted was a success: the next failure starts the backoff over.
        failures = if started.elapsed() > RETRY_MAX {
            0
        } else {
            failures + 1
        };
        // The outbox keeps the newest of everything meanwhile; overrides set here are
        // kept in the state file as they come.
        let retry = tokio::time::sleep(retry_after(failures, jitter.unit()));
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                changed = outbox.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the publisher is gone
                    }
                    keep_state(keeper.as_ref(), &config, &mirror, &outbox.borrow(), &written);
                }
            }
        }
    }
}

/// Keeps the fleet's overrides as last seen, and those set here that it does not have
/// yet, in the state file (when there is one).
fn keep_state(
    keeper: Option<&Keeper>,
    config: &FleetConfig,
    mirror: &Mirror,
    outbox: &Outbox,
    written: &Written,
) {
    if let Some(keeper) = keeper {
        keeper.keep(Kept {
            fleet: mirror.overrides(config),
            local: crate::keep::local_overrides(outbox, written.overrides),
        });
    }
}

/// What this member has written to etcd. Everything under its lease is written again in
/// each new session; overrides (no lease) only when newer than the last written.
#[derive(Debug, Default)]
struct Written {
    /// Under the session's lease: registration, verdicts, feed, as last written.
    registration: Option<String>,
    verdicts: BTreeMap<FleetKey, Health>,
    /// The latest feed batch, and whether it is written under the current lease.
    feed: Option<String>,
    feed_written: bool,
    /// The number of the outbox's feed batch last taken.
    feed_taken: u64,
    /// The number of the last override written.
    overrides: u64,
    /// The lease the registration was last written under (0: none yet): a new session
    /// takes its own registration over from it.
    lease: i64,
    /// Leases of sessions that tried to register and did not hear back (newest last, a
    /// few): etcd may have committed the registration while the reply was lost (a leader
    /// change), and a registration under one of them is this member's own, not another's.
    unheard: Vec<i64>,
}

impl Written {
    /// A new session: everything under the old lease is gone with it.
    fn new_lease(&mut self) {
        self.registration = None;
        self.verdicts.clear();
        self.feed_written = false;
    }
}

/// This member's place in the fleet while it runs: the lease it is registered under, so a
/// shutdown can end it and a restart need not wait for it to run out.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    lease: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Membership {
    /// Leaves the fleet: ends the lease (within a second, or it runs out on its own).
    pub async fn leave(&self, etcd: &Etcd) {
        let lease = self.lease.swap(0, std::sync::atomic::Ordering::Relaxed);
        if lease != 0 {
            let _ = tokio::time::timeout(Duration::from_secs(1), etcd.revoke(lease)).await;
        }
    }
}

/// Registers this member under the session's lease, unless another live member holds its
/// identity: the key must be absent, or under one of this member's own leases (`own`).
async fn register(link: &Link<'_>, value: &str, own: &[i64]) -> Result<(), EtcdError> {
    let key = (link.config).key(&["members", &link.config.identity, "registration"]);
    // Unchanged since revision 0: absent. Under one of this instance's leases: its own
    // registration — from the session that broke, or from a try that etcd committed
    // while its reply was lost (a leader change), in an earlier session or this one.
    let mut compares = vec![Compare::Unchanged(0)];
    let mut leases: Vec<i64> = own.iter().copied().filter(|&l| l != 0).collect();
    leases.sort_unstable();
    leases.dedup();
    compares.extend(leases.into_iter().map(Compare::Lease));
    for compare in compares {
        if (link.etcd)
            .put_if(compare, &key, value, link.lease)
            .await?
            .is_some()
        {
            return Ok(());
        }
    }
    Err(EtcdError::IdentityTaken(link.config.identity.clone()))
}

/// An override set through this instance, for the fleet: written only if its key did not
/// change since this instance last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OverrideWrite {
    zone: String,
    node: String,
    key: String,
    value: std::borrow::Cow<'static, str>,
}

/// The writes that bring etcd up to the outbox (and the agent's batch), and what is
/// written once they commit.
#[derive(Debug)]
struct Pending {
    /// Under the session's lease, in transactions.
    ops: Vec<Op>,
    /// Overrides, oldest first, each compared against the revision last seen.
    overrides: Vec<OverrideWrite>,
    next: Written,
}

fn pending(
    config: &FleetConfig,
    out: &Outbox,
    agent_batch: Option<String>,
    written: &Written,
    lease: i64,
) -> Pending {
    let mut ops = Vec::new();
    let mut overrides = Vec::new();
    let mut next = Written {
        registration: Some(registration(&out.policy)),
        verdicts: out.verdicts.clone(),
        feed: written.feed.clone(),
        feed_taken: written.feed_taken,
        overrides: written.overrides,
        feed_written: true,
        lease: written.lease,
        unheard: written.unheard.clone(),
    };
    if next.registration != written.registration {
        ops.push(Op::Put {
            key: config.key(&["members", &config.identity, "registration"]),
            value: next.registration.clone().unwrap_or_default(),
            lease,
        });
    }
    for ((zone, node), health) in &out.verdicts {
        if written.verdicts.get(&(zone.clone(), node.clone())) != Some(health) {
            ops.push(Op::Put {
                key: config.key(&["members", &config.identity, "verdicts", zone, node]),
                value: health_word(*health).into(),
                lease,
            });
        }
    }
    // The newest batch wins: one accepted here, or the agent's measurements.
    if let Some((n, batch)) = &out.feed
        && *n > written.feed_taken
    {
        next.feed = Some(batch.clone());
        next.feed_taken = *n;
    }
    if let Some(batch) = agent_batch {
        next.feed = Some(batch);
    }
    if next.feed.is_some() && (next.feed != written.feed || !written.feed_written) {
        ops.push(Op::Put {
            key: config.key(&["members", &config.identity, "feed"]),
            value: next.feed.clone().unwrap_or_default(),
            lease,
        });
    }
    for ((zone, node), n, set) in out.overrides_after(written.overrides) {
        overrides.push(OverrideWrite {
            zone: zone.clone(),
            node: node.clone(),
            key: override_key(config, zone, node),
            value: override_record(set, out.audits.get(&(zone.clone(), node.clone()))),
        });
        next.overrides = n;
    }
    Pending {
        ops,
        overrides,
        next,
    }
}

/// Where a session's writes go, and the state file's writer.
struct Link<'a> {
    etcd: &'a Etcd,
    config: &'a FleetConfig,
    lease: i64,
    keeper: Option<&'a Keeper>,
}

/// Writes what is pending: what lives under the lease in transactions of at most
/// `MAX_TXN_OPS`, then each override unless the fleet changed its key since `mirror` saw
/// it (then the fleet's value stands, and the log says so).
async fn write_pending(
    link: &Link<'_>,
    outbox: &mut watch::Receiver<Outbox>,
    agent_batch: Option<String>,
    written: &mut Written,
    mirror: &mut Mirror,
) -> Result<(), EtcdError> {
    let Pending {
        ops,
        overrides,
        next,
    } = pending(
        link.config,
        &outbox.borrow_and_update(),
        agent_batch,
        written,
        link.lease,
    );
    for chunk in ops.chunks(MAX_TXN_OPS) {
        link.etcd.apply(chunk).await?;
    }
    for write in overrides {
        let seen = mirror.revision(&write.key);
        match (link.etcd)
            .put_if(Compare::Unchanged(seen), &write.key, &write.value, 0)
            .await?
        {
            Some(mod_revision) => mirror.apply(vec![Event::Put(KeyValue {
                key: write.key,
                value: write.value.into(),
                lease: 0,
                mod_revision,
            })]),
            None => warn!(
                zone = %write.zone,
                node = %write.node,
                set = %write.value,
                "an override set through this instance is not written: the fleet changed it \
                 since this instance last saw it, and the fleet's value stands"
            ),
        }
    }
    *written = next;
    keep_state(link.keeper, link.config, mirror, &outbox.borrow(), written);
    Ok(())
}

/// One connected stretch: ends with `Ok` when the publisher is gone, `Err` when etcd failed.
async fn session(
    etcd: &Etcd,
    config: &FleetConfig,
    commands: &mpsc::Sender<Command>,
    outbox: &mut watch::Receiver<Outbox>,
    mut agent: Option<&mut Agent>,
    (written, mirror, keeper, membership): (
        &mut Written,
        &mut Mirror,
        Option<&Keeper>,
        &Membership,
    ),
) -> Result<(), EtcdError> {
    // The last session's watch is gone: its member is neither checked nor reported.
    etcd.watch_closed();
    let lease = etcd.grant(LEASE_TTL).await?;
    let link = Link {
        etcd,
        config,
        lease,
        keeper,
    };
    written.new_lease();
    let registration = registration(&outbox.borrow().policy);
    let mut own = written.unheard.clone();
    own.extend([written.lease, lease]);
    if written.unheard.len() >= UNHEARD_KEPT {
        written.unheard.remove(0);
    }
    written.unheard.push(lease);
    register(&link, &registration, &own).await?;
    (written.registration, written.lease) = (Some(registration), lease);
    written.unheard.clear();
    membership
        .lease
        .store(lease, std::sync::atomic::Ordering::Relaxed);
    // Everything this member holds, written again under the new lease in a few commits;
    // overrides set meanwhile compared against the fleet as last seen.
    write_pending(&link, outbox, None, written, mirror).await?;
    let prefix = format!("{}/", config.prefix.trim_end_matches('/'));
    let (revision, kvs) = etcd.range_prefix(&prefix).await?;
    *mirror = Mirror::default();
    mirror.apply(kvs.into_iter().map(Event::Put).collect());
    keep_state(keeper, config, mirror, &outbox.borrow(), written);
    if commands
        .send(Command::Fleet(FleetNews::State(
            mirror.seen_via(config, etcd),
        )))
        .await
        .is_err()
    {
        return Ok(());
    }
    info!(revision, "fleet connected");
    let (mut events, helpers) = watch_and_keep_alive(etcd, &prefix, revision, lease);
    let mut measure = tokio::time::interval(agent::MEASURE_EVERY);
    measure.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = async {
        loop {
            tokio::select! {
                batch = events.recv() => {
                    let batch = batch.unwrap_or_else(|| Err(EtcdError::Unreachable("watch gone".into())))?;
                    mirror.apply(batch);
                    keep_state(keeper, config, mirror, &outbox.borrow(), written);
                    if commands.send(Command::Fleet(FleetNews::State(mirror.seen_via(config, etcd)))).await.is_err() {
                        return Ok(());
                    }
                }
                changed = outbox.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the publisher is gone
                    }
                    write_pending(&link, outbox, None, written, mirror).await?;
                }
                now = measure.tick(), if agent.is_some() => {
                    let batch = agent.as_mut().and_then(|a| a.measure(now));
                    if batch.is_some() {
                        write_pending(&link, outbox, batch, written, mirror).await?;
                    }
                }
            }
        }
    }
    .await;
    for helper in helpers {
        helper.abort();
    }
    result
}

/// The watch, the lease's keep-alives and the watch member's liveness, each on a task of
/// its own so none waits behind writes; each reports how it ends through the returned
/// receiver.
fn watch_and_keep_alive(
    etcd: &Etcd,
    prefix: &str,
    revision: i64,
    lease: i64,
) -> (EventStream, [tokio::task::JoinHandle<()>; 3]) {
    let (events_tx, events) = mpsc::channel::<Result<Vec<Event>, EtcdError>>(64);
    let watcher = {
        let (etcd, events_tx, prefix) = (etcd.clone(), events_tx.clone(), prefix.to_string());
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
        let (etcd, events_tx) = (etcd.clone(), events_tx.clone());
        tokio::spawn(async move {
            let why = etcd.keep_lease(lease, KEEPALIVE).await;
            let _ = events_tx.send(Err(why)).await;
        })
    };
    let liveness = {
        let (etcd, events_tx, prefix) = (etcd.clone(), events_tx.clone(), prefix.to_string());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(LIVENESS_EVERY);
            let why = loop {
                every.tick().await;
                if let Err(e) = etcd.watch_alive(&prefix, LIVENESS_TIMEOUT).await {
                    break e;
                }
            };
            let _ = events_tx.send(Err(why)).await;
        })
    };
    (events, [watcher, keeper, liveness])
}

/// Watch events as they arrive, or how the watch or the lease ended.
type EventStream = mpsc::Receiver<Result<Vec<Event>, EtcdError>>;

/// The key of a node's override for the whole fleet.
fn override_key(config: &FleetConfig, zone: &str, node: &str) -> String {
    config.key(&["overrides", zone, node])
}

/// The etcd write of an override set (or cleared) for the whole fleet by an operator;
/// overrides have no lease: they stay.
fn override_op(
    config: &FleetConfig,
    (zone, node): (&str, &str),
    set: Option<Override>,
    by: &Audit,
) -> Op {
    Op::Put {
        key: override_key(config, zone, node),
        value: override_record(set, Some(by)).into(),
        lease: 0,
    }
}

/// A member's registration: its version, and the SOA serial and node names of every zone
/// it serves.
fn registration(policy: &FleetPolicy) -> String {
    let serials: serde_json::Map<String, serde_json::Value> = (policy.serials.iter())
        .map(|(zone, serial)| (zone.clone(), serde_json::json!(serial)))
        .collect();
    let nodes: serde_json::Map<String, serde_json::Value> = (policy.nodes.iter())
        .map(|(zone, names)| (zone.clone(), serde_json::json!(names)))
        .collect();
    let mut registration = serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "serials": serials, "nodes": nodes});
    if !policy.keys.is_empty() {
        let keys: serde_json::Map<String, serde_json::Value> = (policy.keys.iter())
            .map(|(zone, keys)| (zone.clone(), serde_json::json!(keys)))
            .collect();
        registration["dnssec"] = serde_json::Value::Object(keys);
    }
    registration.to_string()
}

/// Why `geosteer fleet` did not set an override.
#[derive(Debug, thiserror::Error)]
pub enum FleetCommandError {
    /// etcd could not be read or written.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// No live member serves the zone and node named (a typo, or every instance is down).
    #[error(
        "no live member serves node '{node}' in zone '{zone}' (served: {served}); nothing written"
    )]
    Unknown {
        /// The zone as named.
        zone: String,
        /// The node as named.
        node: String,
        /// What the live members serve, `zone: node, ...` per zone.
        served: String,
    },
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
        out += "  warning: members serve different policy, DNSSEC keys or geosteer versions\n";
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

/// Sets or clears a node's override for the whole fleet (`geosteer fleet drain ...`), once
/// a live member is seen to serve that zone and node (from its registration).
pub async fn set_override(
    config: &FleetConfig,
    (zone, node): (&str, &str),
    set: Option<Override>,
    by: &Audit,
) -> Result<(), FleetCommandError> {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let prefix = format!("{}/", config.prefix.trim_end_matches('/'));
    let (_, kvs) = config.etcd.range_prefix(&prefix).await?;
    let mut mirror = Mirror::default();
    mirror.apply(kvs.into_iter().map(Event::Put).collect());
    let everyone = FleetConfig {
        identity: String::new(),
        ..config.clone()
    };
    let served = served_nodes(&mirror.state(&everyone));
    let known = served
        .get(&zone)
        .is_some_and(|nodes| nodes.iter().any(|n| n == node));
    if !known {
        let served = served
            .iter()
            .map(|(zone, nodes)| {
                format!(
                    "{zone}: {}",
                    Vec::from_iter(nodes.iter().map(String::as_str)).join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(FleetCommandError::Unknown {
            zone,
            node: node.to_string(),
            served: if served.is_empty() {
                "nothing".into()
            } else {
                served
            },
        });
    }
    config
        .etcd
        .apply(&[override_op(config, (&zone, node), set, by)])
        .await?;
    Ok(())
}

/// Node names by zone that live members register.
fn served_nodes(
    state: &FleetState,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut served: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for info in state.member_info.values() {
        let Ok(info) = serde_json::from_str::<serde_json::Value>(info) else {
            continue;
        };
        for (zone, nodes) in info["nodes"].as_object().into_iter().flatten() {
            let names = nodes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str());
            served
                .entry(zone.clone())
                .or_default()
                .extend(names.map(str::to_string));
        }
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_reads_overrides_others_verdicts_and_members() {
        let config = config();
        let mut mirror = Mirror::default();
        let put = |k: &str, v: &str, lease: i64| {
            Event::Put(KeyValue {
                key: k.into(),
                value: v.into(),
                lease,
                mod_revision: 5,
            })
        };
        mirror.apply(vec![
            put("/g/overrides/z/tokyo", "drain", 0),
            put("/g/members/a/verdicts/z/tokyo", "down", 1),
            put("/g/members/b/verdicts/z/tokyo", "up", 2),
            put("/g/members/a/registration", "0.1.0", 1),
            put("/g/members/b/registration", "0.1.0", 2),
            put("/other/overrides/z/tokyo", "force-down", 0),
            // Forged: no lease, a member's verdict under another lease, a member key
            // without a lease.
            put("/g/members/mallory/verdicts/z/tokyo", "down", 0),
            put("/g/members/mallory/registration", "0.1.0", 0),
            put("/g/members/b/verdicts/z/osaka", "down", 3),
        ]);
        let state = mirror.state(&config);
        let key = ("z".to_string(), "tokyo".to_string());
        assert_eq!(state.overrides.get(&key), Some(&Override::Drain));
        assert_eq!(state.verdicts[&key], vec![("b".to_string(), Health::Up)]);
        assert!(
            !state
                .verdicts
                .contains_key(&("z".to_string(), "osaka".to_string()))
        );
        assert_eq!(state.members, vec!["a", "b"]);
        assert_eq!(mirror.revision("/g/overrides/z/tokyo"), 5);
        assert_eq!(mirror.revision("/g/overrides/z/osaka"), 0);
        // Cleared: the word stays, with a revision, and means no override.
        mirror.apply(vec![put("/g/overrides/z/tokyo", OBEY, 0)]);
        assert!(mirror.state(&config).overrides.is_empty());
        mirror.apply(vec![Event::Delete("/g/overrides/z/tokyo".into())]);
        assert!(mirror.state(&config).overrides.is_empty());
    }

    fn config() -> FleetConfig {
        FleetConfig {
            etcd: Etcd::new(&etcd::EtcdSettings {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                ..Default::default()
            })
            .unwrap(),
            prefix: "/g".into(),
            identity: "a".into(),
        }
    }

    /// The keys a pending write puts (under the lease) and compares (overrides), sorted.
    fn keys(pending: &Pending) -> Vec<String> {
        let ops = pending.ops.iter().map(|op| match op {
            Op::Put { key, .. } => format!("put {key}"),
            Op::Delete { key } => format!("delete {key}"),
        });
        let overrides =
            (pending.overrides.iter()).map(|o| format!("compare {} {}", o.key, o.value));
        let mut keys: Vec<String> = ops.chain(overrides).collect();
        keys.sort();
        keys
    }

    /// Nothing the publisher tells the fleet is lost: what etcd lacks is written, the
    /// latest value per key, once; a new lease writes everything under it again, and
    /// overrides (no lease) only when newer than the last written.
    #[test]
    fn pending_writes_bring_etcd_up_to_the_outbox() {
        let config = config();
        let key = |node: &str| ("z".to_string(), node.to_string());
        let mut out = Outbox {
            policy: FleetPolicy {
                serials: vec![("z".into(), 7)],
                nodes: vec![("z".into(), vec!["tokyo".into(), "osaka".into()])],
                keys: Vec::new(),
            },
            ..Outbox::default()
        };
        out.verdicts.insert(key("tokyo"), Health::Down);
        // Set and cleared while etcd was away: only the clearing is written.
        out.set_override(key("osaka"), Some(Override::Drain));
        out.set_override(key("osaka"), None);
        out.set_override(key("tokyo"), Some(Override::ForceUp));
        let mut written = Written::default();
        written.new_lease();
        let first = pending(&config, &out, None, &written, 9);
        assert_eq!(
            keys(&first),
            vec![
                "compare /g/overrides/z/osaka obey",
                "compare /g/overrides/z/tokyo force-up",
                "put /g/members/a/registration",
                "put /g/members/a/verdicts/z/tokyo",
            ]
        );
        written = first.next;
        assert!(keys(&pending(&config, &out, None, &written, 9)).is_empty());
        // One verdict changes: one write.
        out.verdicts.insert(key("tokyo"), Health::Up);
        out.verdicts.insert(key("osaka"), Health::Up);
        let changed = pending(&config, &out, None, &written, 9);
        assert_eq!(
            keys(&changed),
            vec![
                "put /g/members/a/verdicts/z/osaka",
                "put /g/members/a/verdicts/z/tokyo"
            ]
        );
        written = changed.next;
        // A feed batch, then the agent's: the newest is written.
        out.set_feed("{\"loads\":[]}".into());
        let fed = pending(&config, &out, Some("agent".into()), &written, 9);
        assert_eq!(keys(&fed), vec!["put /g/members/a/feed"]);
        assert!(matches!(&fed.ops[0], Op::Put { value, .. } if value == "agent"));
        written = fed.next;
        // A new lease: everything under it again, overrides not.
        written.new_lease();
        let renewed = pending(&config, &out, None, &written, 10);
        assert_eq!(
            keys(&renewed),
            vec![
                "put /g/members/a/feed",
                "put /g/members/a/registration",
                "put /g/members/a/verdicts/z/osaka",
                "put /g/members/a/verdicts/z/tokyo",
            ]
        );
        assert!((renewed.ops.iter()).all(|op| matches!(op, Op::Put { lease: 10, .. })));
    }

    #[test]
    fn retries_back_off_with_jitter_up_to_a_bound() {
        assert_eq!(retry_after(0, 1.0), RETRY);
        assert_eq!(retry_after(0, 0.0), RETRY / 2);
        assert_eq!(retry_after(2, 1.0), RETRY * 4);
        assert_eq!(retry_after(30, 1.0), RETRY_MAX);
        assert!(retry_after(30, 0.3) >= RETRY_MAX / 2);
    }
}
