//! Health checks: a node's check merged over the zone's, kind by kind, with defaults.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::*;

/// Reports bad durations of a check block (for zone defaults, checked once).
pub(super) fn validate_duration_fields(diag: &mut Diagnostics, check: &RawCheck, context: &str) {
    for (field, value) in [
        ("interval", &check.interval),
        ("recheck", &check.recheck),
        ("timeout", &check.timeout),
    ] {
        if let Some(v) = value
            && let Err(e) = &v.value.0
        {
            diag.error(at(v), format!("{context}: {field}: {e}"));
        }
    }
}

/// Refuses fields a check's kind does not have (`path:` on a tcp check), each by name.
pub(super) fn refuse_other_kinds_fields(
    diag: &mut Diagnostics,
    check: &RawCheck,
    loc: Location,
    context: &str,
) {
    let kind = check.kind();
    for field in check.kind_fields() {
        if !kind.own_fields().contains(&field) {
            let has = match kind.own_fields() {
                [] => "none of its own".to_string(),
                own => own.join(", "),
            };
            diag.error(
                loc,
                format!(
                    "{context}: `{field}` does not apply to a `type: {}` check (its fields: {has})",
                    kind.word()
                ),
            );
        }
    }
}

/// Merges a node's check over the zone's defaults and applies built-in defaults.
/// `Ok(None)`: the node is not health-checked. `Err(())`: errors were reported.
pub(super) fn validate_check(
    diag: &mut Diagnostics,
    raw: &RawZone,
    node: &Spanned<RawNode>,
    addresses: &[IpAddr],
    context: &str,
) -> Result<Option<HealthCheck>, ()> {
    let (merged, loc) = merged_check(diag, raw, node, context)?;
    let context = format!("{context}: check");
    let kind = merged.kind();
    let errors_before = diag.errors.len();
    if let Some(own) = &node.value.check {
        // Judged against the kind the node ends up with, inherited or its own.
        let own_kind = RawCheck {
            kind: Some(kind),
            ..own.value.clone()
        };
        refuse_other_kinds_fields(diag, &own_kind, at(own), &context);
    }
    if kind == CheckKind::None {
        return if diag.errors.len() == errors_before {
            Ok(None)
        } else {
            Err(())
        };
    }
    if node.value.check.is_some() {
        validate_duration_fields(diag, &merged, &context);
    }
    let timing = timing(diag, &merged, loc, &context);
    let target = target(diag, &merged, kind, addresses, loc, &context);
    let probe = probe(diag, &merged, kind, &context);
    match target {
        Some(target) if diag.errors.len() == errors_before => Ok(Some(HealthCheck {
            probe,
            target,
            timing,
        })),
        _ => Err(()),
    }
}

/// The node's check over the zone's, and where to report its errors; an error when neither
/// says anything (no silent defaults).
fn merged_check(
    diag: &mut Diagnostics,
    raw: &RawZone,
    node: &Spanned<RawNode>,
    context: &str,
) -> Result<(RawCheck, Location), ()> {
    let zone_default = raw.check.as_ref().map(|c| c.value.clone());
    match (&node.value.check, zone_default) {
        (None, None) => {
            // No silent defaults: an unchecked node is a decision the policy writes down.
            diag.error(
                at(node),
                format!(
                    "{context}: no health check: give it or the zone a `check` \
                     (e.g. `check: {{type: tcp, port: 1935}}`; also http, https, rtmp), \
                     or write `check: {{type: none}}` to answer it unchecked (its `status` decides)"
                ),
            );
            Err(())
        }
        (Some(own), Some(default)) => Ok((own.value.over(&default), at(own))),
        (Some(own), None) => Ok((own.value.clone(), at(own))),
        (None, Some(default)) => Ok((default, raw.check.as_ref().map_or(at(node), at))),
    }
}

/// Interval, recheck, timeout, rise and fall, with defaults; bad values reported.
fn timing(diag: &mut Diagnostics, merged: &RawCheck, loc: Location, context: &str) -> CheckTiming {
    let duration = |d: &Option<Spanned<RawDuration>>, default: Duration| {
        d.as_ref()
            .and_then(|d| d.value.0.clone().ok())
            .unwrap_or(default)
    };
    let interval = duration(&merged.interval, DEFAULT_INTERVAL);
    let recheck = duration(&merged.recheck, DEFAULT_RECHECK);
    let timeout = duration(&merged.timeout, DEFAULT_TIMEOUT);
    for (field, value, spanned) in [
        ("interval", interval, &merged.interval),
        ("recheck", recheck, &merged.recheck),
        ("timeout", timeout, &merged.timeout),
    ] {
        if value < Duration::from_millis(10) || value > Duration::from_secs(3600) {
            diag.error(
                spanned.as_ref().map_or(loc, at),
                format!("{context}: {field} must be between 10ms and 1h"),
            );
        }
    }
    let mut count = |v: &Option<Spanned<u32>>, default: u32, field: &str| match v {
        Some(n) if n.value == 0 => {
            diag.error(at(n), format!("{context}: {field} must be at least 1"));
            default
        }
        Some(n) => n.value,
        None => default,
    };
    CheckTiming {
        interval,
        recheck,
        timeout,
        rise: count(&merged.rise, DEFAULT_RISE, "rise"),
        fall: count(&merged.fall, DEFAULT_FALL, "fall"),
    }
}

/// The one address and port probed: the check's `address`, else the node's first.
fn target(
    diag: &mut Diagnostics,
    merged: &RawCheck,
    kind: CheckKind,
    addresses: &[IpAddr],
    loc: Location,
    context: &str,
) -> Option<SocketAddr> {
    let port = match merged.port.or(kind.default_port()) {
        Some(0) => {
            diag.error(loc, format!("{context}: port 0 cannot be checked"));
            0
        }
        Some(port) => port,
        None => {
            diag.error(
                loc,
                format!("{context}: a {} check needs a `port`", kind.word()),
            );
            0
        }
    };
    let address = match &merged.address {
        Some(a) => match a.value.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                diag.error(
                    at(a),
                    format!("{context}: address '{}' is not an IP address", a.value),
                );
                None
            }
        },
        None => addresses.first().copied(),
    };
    address.map(|address| SocketAddr::new(address, port))
}

/// What the kind speaks, with its own settings.
fn probe(diag: &mut Diagnostics, merged: &RawCheck, kind: CheckKind, context: &str) -> Probe {
    let http = |diag: &mut Diagnostics| {
        if let Some(p) = &merged.path
            && (!p.value.starts_with('/')
                || p.value
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()))
        {
            diag.error(
                at(p),
                format!("{context}: path must start with '/' and contain no spaces"),
            );
        }
        if let Some(e) = &merged.expect
            && e.value.iter().any(|c| !(100..=599).contains(c))
        {
            diag.error(
                at(e),
                format!("{context}: expect: HTTP status codes are 100..599"),
            );
        }
        HttpProbe {
            path: merged
                .path
                .as_ref()
                .map_or_else(|| "/".to_string(), |p| p.value.clone()),
            host: merged.host.clone(),
            expect: merged
                .expect
                .as_ref()
                .map_or_else(Vec::new, |e| e.value.clone()),
            body: merged.body.clone(),
        }
    };
    match kind {
        CheckKind::Tcp | CheckKind::None => Probe::Tcp,
        CheckKind::Rtmp => Probe::Rtmp,
        CheckKind::Http => Probe::Http(http(diag)),
        CheckKind::Https => Probe::Https(
            http(diag),
            TlsProbe {
                sni: merged.sni.clone(),
                verify: merged.verify.unwrap_or(true),
            },
        ),
    }
}
