//! The latency feed: the batch format probe agents, beacons and the watched feed file send,
//! and its validation against the zones served, all or nothing.

use std::time::{Duration, SystemTime};

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{ClientGroup, Load, MAX_RTT_MS, Measurement, ZoneLatency, age};
use crate::geo::{AsnDb, CountryTable};
use crate::policy::Zone;

/// The largest batch read, from the admin interface or the feed file: a bigger one is
/// refused before it is parsed. A fleet shares each batch through etcd, which takes requests
/// of at most 1.5 MiB by default (`--max-request-bytes`): 512 KiB leaves room for a batch
/// grown by dating its entries, and for the transaction around it.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// A feed batch as probe agents and beacons send it (also the watched file's format).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedBatch {
    /// Zone of entries that name none; optional when there is one zone.
    pub zone: Option<String>,
    /// Round trips.
    #[serde(default)]
    pub measurements: Vec<FeedMeasurement>,
    /// Node load reports.
    #[serde(default)]
    pub loads: Vec<FeedLoad>,
}

/// One round-trip report.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedMeasurement {
    /// Zone of the node, when the batch names none or another.
    pub zone: Option<String>,
    /// `AS-JP`, `AS4713`, `203.0.113.0/24`.
    pub group: String,
    /// Node name.
    pub node: String,
    /// Round trip, ms.
    pub rtt_ms: f64,
    /// Loss rate 0..=1.
    #[serde(default)]
    pub loss: f64,
    /// When measured, seconds since 1970; now when absent.
    pub at: Option<f64>,
    /// The node address measured, for nodes reached over several lines; the node as a
    /// whole when absent.
    pub address: Option<String>,
}

/// One load report.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedLoad {
    /// Zone of the node.
    pub zone: Option<String>,
    /// Node name.
    pub node: String,
    /// Fraction of capacity in use, 0..=1.5.
    pub load: f64,
    /// When measured, seconds since 1970; now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<f64>,
}

impl FeedBatch {
    /// The batch with every entry that names no time dated `now`, as accepted here: the
    /// fleet's other members then apply the same times, and the newest report wins
    /// everywhere alike.
    pub fn dated(&self, now: SystemTime) -> FeedBatch {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut dated = self.clone();
        for m in &mut dated.measurements {
            m.at.get_or_insert(now);
        }
        for l in &mut dated.loads {
            l.at.get_or_insert(now);
        }
        dated
    }
}

/// Checks the values of a measurement that need no policy to judge.
pub fn check_values(
    rtt_ms: f64,
    loss: f64,
    at: Option<f64>,
    now: SystemTime,
    max_age: Duration,
) -> Result<SystemTime, String> {
    if !rtt_ms.is_finite() || rtt_ms <= 0.0 || rtt_ms > MAX_RTT_MS {
        return Err(format!(
            "rtt_ms {rtt_ms} is not a round trip (expected 0 < rtt_ms ≤ {MAX_RTT_MS})"
        ));
    }
    if !loss.is_finite() || !(0.0..=1.0).contains(&loss) {
        return Err(format!("loss {loss} is not a rate (expected 0..1)"));
    }
    check_time(at, now, max_age)
}

/// When a report was measured (`now` when it says not), unless that is not a time, more
/// than a minute ahead, or older than `max_age` (it would be ignored).
fn check_time(at: Option<f64>, now: SystemTime, max_age: Duration) -> Result<SystemTime, String> {
    // Checked all the way: a probe agent with a broken clock sends 1e300 or 1.8e19, and a
    // panic here would stop the task that owns node state.
    let at = match at {
        None => now,
        Some(secs) => Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|since| SystemTime::UNIX_EPOCH.checked_add(since))
            .ok_or_else(|| format!("at {secs} is not a time (seconds since 1970)"))?,
    };
    if now
        .checked_add(Duration::from_secs(60))
        .is_some_and(|latest| at > latest)
    {
        return Err(format!("at {} is in the future", seconds(at)));
    }
    if age(now, at) > max_age {
        return Err(format!(
            "it is older than {} s and would be ignored",
            max_age.as_secs()
        ));
    }
    Ok(at)
}

/// Seconds since 1970, for messages.
fn seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A feed batch that passed every check: entries resolved to zone and node indices.
#[derive(Debug)]
pub struct ValidBatch {
    /// (zone, node, group, measurement, the node address measured if one was named).
    measurements: Vec<ResolvedMeasurement>,
    /// (zone, node, load).
    loads: Vec<(usize, usize, Load)>,
}

/// Why a feed batch was refused: every entry's reason, each located
/// (`measurements[3]: unknown node 'tokio-1' in zone live.example.net.`); nothing of the
/// batch was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", reasons.join("; "))]
pub struct FeedRejected {
    reasons: Vec<String>,
}

impl FeedRejected {
    /// Every reason, one per refused entry.
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }
}

/// A measurement as resolved: (zone, node, group, measurement, node address measured).
type ResolvedMeasurement = (usize, usize, ClientGroup, Measurement, Option<IpAddr>);

impl FeedBatch {
    /// Checks the whole batch against the zones served (and the ASN database, for AS
    /// groups) at `now`: every entry resolved, or every reason it cannot be, each located
    /// (`measurements[3]: unknown node 'tokio-1' in zone live.example.net.`).
    pub fn validate(
        &self,
        zones: &[Zone],
        asn: Option<&AsnDb>,
        now: SystemTime,
    ) -> Result<ValidBatch, FeedRejected> {
        let served = Served {
            zones,
            batch_zone: self.zone.as_ref(),
            asn,
            now,
        };
        let mut errors = Vec::new();
        // A batch naming a zone not served here is refused even when it holds nothing.
        if self.zone.is_some()
            && let Err(error) = served.zone(None, "zone")
        {
            errors.push(error);
        }
        let mut measurements = Vec::new();
        for (i, m) in self.measurements.iter().enumerate() {
            match served.measurement(m, &format!("measurements[{i}]")) {
                Ok(e) => measurements.push(e),
                Err(e) => errors.push(e),
            }
        }
        let mut loads = Vec::new();
        for (i, l) in self.loads.iter().enumerate() {
            match served.load(l, &format!("loads[{i}]")) {
                Ok(e) => loads.push(e),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(ValidBatch {
                measurements,
                loads,
            })
        } else {
            Err(FeedRejected { reasons: errors })
        }
    }
}

/// What feed entries are resolved against.
struct Served<'a> {
    zones: &'a [Zone],
    /// The zone the batch names for all its entries.
    batch_zone: Option<&'a String>,
    asn: Option<&'a AsnDb>,
    now: SystemTime,
}

impl Served<'_> {
    /// The zone an entry names (or the batch does, or the only one served).
    fn zone(&self, named: Option<&String>, what: &str) -> Result<usize, String> {
        match named.or(self.batch_zone) {
            Some(name) => {
                let wanted = name.trim_end_matches('.').to_ascii_lowercase();
                self.zones
                    .iter()
                    .position(|z| z.origin.to_string().trim_end_matches('.') == wanted)
                    .ok_or_else(|| format!("{what}: zone '{name}' is not served here"))
            }
            None if self.zones.len() == 1 => Ok(0),
            None => Err(format!(
                "{what}: name the zone (`zone`), several are served"
            )),
        }
    }

    fn node(&self, zone: usize, name: &str, what: &str) -> Result<usize, String> {
        let zone = &self.zones[zone];
        zone.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| format!("{what}: unknown node '{name}' in zone {}", zone.origin))
    }

    fn measurement(&self, m: &FeedMeasurement, what: &str) -> Result<ResolvedMeasurement, String> {
        let zone = self.zone(m.zone.as_ref(), what)?;
        let node = self.node(zone, &m.node, what)?;
        let group = ClientGroup::parse(&m.group, CountryTable::shipped())
            .map_err(|e| format!("{what}: group: {e}"))?;
        if let ClientGroup::Asn(number) = group {
            let Some(db) = self.asn else {
                return Err(format!(
                    "{what}: group {group}: ASN groups need an ASN database (--asn-db)"
                ));
            };
            if db.networks_of(number).is_empty() {
                return Err(format!(
                    "{what}: group {group}: the ASN database has no networks for it"
                ));
            }
        }
        let max_age = self.zones[zone]
            .steered
            .iter()
            .map(|s| s.latency.max_age)
            .max()
            .unwrap_or_default();
        let at = check_values(m.rtt_ms, m.loss, m.at, self.now, max_age)
            .map_err(|e| format!("{what}: {e}"))?;
        let address = match &m.address {
            None => None,
            Some(text) => {
                let ip: IpAddr = text
                    .parse()
                    .map_err(|_| format!("{what}: address '{text}' is not an IP address"))?;
                if !self.zones[zone].nodes[node].addresses.contains(&ip) {
                    return Err(format!(
                        "{what}: address {ip} is not an address of node '{}'",
                        m.node
                    ));
                }
                Some(ip)
            }
        };
        let measurement = Measurement {
            rtt_ms: m.rtt_ms,
            loss: m.loss,
            at,
        };
        Ok((zone, node, group, measurement, address))
    }

    fn load(&self, l: &FeedLoad, what: &str) -> Result<(usize, usize, Load), String> {
        let zone = self.zone(l.zone.as_ref(), what)?;
        let node = self.node(zone, &l.node, what)?;
        if !l.load.is_finite() || !(0.0..=1.5).contains(&l.load) {
            return Err(format!(
                "{what}: load {} is not a fraction of capacity (expected 0..1.5)",
                l.load
            ));
        }
        let max_age = self.zones[zone].nodes[node].capacity.max_age;
        let at = check_time(l.at, self.now, max_age).map_err(|e| format!("{what}: {e}"))?;
        Ok((zone, node, Load { value: l.load, at }))
    }
}

impl ValidBatch {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.measurements.len() + self.loads.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records every entry in `latency` (per zone, as validated against), keeping each
    /// zone within [`super::MAX_MEASUREMENTS`]; how many old measurements made room.
    pub fn apply(self, latency: &mut [ZoneLatency], asn: Option<&AsnDb>) -> usize {
        for (zone, node, group, m, address) in self.measurements {
            let Some(measured) = latency.get_mut(zone) else {
                continue;
            };
            if let (ClientGroup::Asn(number), Some(db)) = (&group, asn) {
                measured
                    .asn_networks
                    .entry(*number)
                    .or_insert_with(|| db.networks_of(*number).into());
            }
            match address {
                Some(ip) => measured.addresses.record(ip, group, m),
                None => measured.measurements.record(node, group, m),
            }
        }
        for (zone, node, load) in self.loads {
            if let Some(measured) = latency.get_mut(zone) {
                measured.record_load(node, load);
            }
        }
        latency.iter_mut().map(ZoneLatency::bound).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::tests::{NOW, t};

    #[test]
    fn feed_values_are_checked() {
        let now = t(0);
        let max = Duration::from_secs(600);
        assert!(check_values(25.0, 0.0, None, now, max).is_ok());
        assert!(check_values(-1.0, 0.0, None, now, max).is_err());
        assert!(check_values(f64::NAN, 0.0, None, now, max).is_err());
        assert!(check_values(99_999.0, 0.0, None, now, max).is_err());
        assert!(check_values(25.0, 1.5, None, now, max).is_err());
        let future = NOW.as_secs_f64() + 3600.0;
        assert!(check_values(25.0, 0.0, Some(future), now, max).is_err());
        let old = NOW.as_secs_f64() - 3600.0;
        assert!(check_values(25.0, 0.0, Some(old), now, max).is_err());
        // Clocks gone wrong are refused, never a panic.
        for at in [
            1e300,
            1.8e19,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
            -1.0,
            -1e300,
        ] {
            let error = check_values(25.0, 0.0, Some(at), now, max).expect_err("refused");
            assert!(
                error.contains("is not a time") || error.contains("future"),
                "{error}"
            );
        }
        assert!(check_values(25.0, 0.0, Some(NOW.as_secs_f64() - 10.0), now, max).is_ok());
    }

    /// A load is dated like a measurement and refused when older than its node's
    /// `capacity.max_age`; a batch accepted here is dated before the fleet gets it.
    #[test]
    fn loads_are_dated_and_old_ones_refused() {
        let zones = vec![
            crate::policy::parse_zone(
                std::path::Path::new("z.yaml"),
                "zone: z.example\nsoa: {primary: ns1.z.example., contact: h.z.example.}\n\
                 ns: [ns1.z.example.]\ncheck: {type: none}\ncapacity: {max_age: 30s}\nnodes:\n\
                 \x20 tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1]}\n",
                1,
            )
            .expect("policy"),
        ];
        let batch = |at: Option<f64>| FeedBatch {
            zone: None,
            measurements: Vec::new(),
            loads: vec![FeedLoad {
                zone: None,
                node: "tokyo".into(),
                load: 0.5,
                at,
            }],
        };
        let now = t(0);
        let seconds = NOW.as_secs_f64();
        assert!(
            batch(Some(seconds - 20.0))
                .validate(&zones, None, now)
                .is_ok()
        );
        let old = batch(Some(seconds - 40.0)).validate(&zones, None, now);
        let reasons = old.expect_err("older than max_age").reasons().join("; ");
        assert!(
            reasons.contains("loads[0]") && reasons.contains("older than 30 s"),
            "{reasons}"
        );
        let dated = batch(None).dated(now);
        assert_eq!(dated.loads[0].at, Some(seconds));
        assert_eq!(batch(Some(5.0)).dated(now).loads[0].at, Some(5.0));
    }
}
