//! `geosteer import octodns`: an octoDNS zone file (YamlProvider's format) as a geosteer
//! policy, for a one-off migration without Python.
//!
//! Static records become `records:`; dynamic A and AAAA records become steered names: each
//! distinct value a **node** (its weight and status from the value), pools the same pools
//! with their `fallback`, rules the same rules by `geos` or `subnets`, the record's own
//! values a last pool every fallback chain ends in (octoDNS answers them when every pool is
//! down), and `octodns.healthcheck` each node's check. Where the file says nothing geosteer
//! needs (a node's location), a choice is made and written as a `# choice:` comment for the
//! operator to correct. What geosteer cannot express is refused, naming the record: never
//! dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::Value;

use crate::policy::PolicyErrors;

/// What the file does not say.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The zone (`live.example.net`).
    pub zone: String,
    /// Its name servers, fully qualified (octoDNS leaves the apex NS to providers).
    pub nameservers: Vec<String>,
    /// The SOA contact; `hostmaster.<zone>.` when absent.
    pub contact: Option<String>,
}

/// Why a file was not imported: every problem found, each naming its record.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ImportErrors(pub Vec<String>);

/// The TTL of an octoDNS record that sets none.
const OCTODNS_DEFAULT_TTL: u64 = 3600;

/// Record types a geosteer policy serves statically.
const STATIC_TYPES: [&str; 8] = ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS"];

/// Where a continent-only geo puts a node when nothing else says (a choice the operator
/// should correct): a large exchange point on that continent.
const CONTINENT_SITES: [(&str, &str); 7] = [
    ("AF", "ZA"),
    ("AN", "AQ"),
    ("AS", "SG"),
    ("EU", "DE"),
    ("NA", "US"),
    ("OC", "AU"),
    ("SA", "BR"),
];

/// Translates the octoDNS zone file `text` into a policy (YAML text).
pub fn octodns(text: &str, options: &ImportOptions) -> Result<String, ImportErrors> {
    let zone = options.zone.trim_end_matches('.').to_ascii_lowercase();
    let file: Value = serde_saphyr::from_str(text)
        .map_err(|e| ImportErrors(vec![format!("not an octoDNS zone file: {e}")]))?;
    let Value::Object(names) = file else {
        return Err(ImportErrors(vec![
            "not an octoDNS zone file: expected a map of record names".into(),
        ]));
    };
    let mut errors = Vec::new();
    let mut records = String::new();
    let mut steered = Vec::new();
    for (name, entry) in &names {
        let list: Vec<&Value> = match entry {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut sets = String::new();
        for record in list {
            let rtype = record.get("type").and_then(Value::as_str).unwrap_or("");
            let what = format!("record '{}' ({rtype})", display_name(name));
            if record.get("dynamic").is_some() {
                match rtype {
                    "A" | "AAAA" => steered.push((name.clone(), record)),
                    _ => errors.push(format!(
                        "{what}: dynamic {rtype} records cannot be steered (geosteer answers A and AAAA from nodes' addresses)"
                    )),
                }
                continue;
            }
            match static_record(name, rtype, record) {
                Ok(line) => sets += &line,
                Err(why) => errors.push(format!("{what}: {why}")),
            }
        }
        if !sets.is_empty() {
            let key = quoted(if name.is_empty() { "@" } else { name });
            let _ = writeln!(records, "  {key}:");
            records += &sets;
        }
    }
    let mut nodes = Nodes::default();
    let mut steer = String::new();
    let mut by_name: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, record) in &steered {
        let rtype = record.get("type").and_then(Value::as_str).unwrap_or("");
        if let Some(other) = by_name.insert(name, rtype) {
            errors.push(format!(
                "record '{}' ({rtype}): a dynamic {other} record has this name too; geosteer steers a name's A and AAAA together from one set of nodes: merge them by hand",
                display_name(name)
            ));
            continue;
        }
        match steered_name(name, record, &zone, &mut nodes) {
            Ok(text) => steer += &text,
            Err(why) => errors.push(format!("record '{}' ({rtype}): {why}", display_name(name))),
        }
    }
    if !errors.is_empty() {
        return Err(ImportErrors(errors));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from octoDNS by `geosteer import octodns`. Check the `# choice:` comments."
    );
    let _ = writeln!(out, "zone: {zone}");
    let contact = options
        .contact
        .clone()
        .unwrap_or_else(|| format!("hostmaster.{zone}."));
    let primary = options
        .nameservers
        .first()
        .cloned()
        .unwrap_or_else(|| format!("ns1.{zone}."));
    let _ = writeln!(
        out,
        "soa: {{primary: {}, contact: {}, minimum: 60}}",
        quoted(&primary),
        quoted(&contact)
    );
    let ns: Vec<String> = options.nameservers.iter().map(|n| quoted(n)).collect();
    let _ = writeln!(out, "ns: [{}]", ns.join(", "));
    if !records.is_empty() {
        out += "records:\n";
        out += &records;
    }
    if !nodes.list.is_empty() {
        out += "nodes:\n";
        for node in &nodes.list {
            out += &node.text();
        }
    }
    if !steer.is_empty() {
        out += "steer:\n";
        out += &steer;
    }
    // Values are copied as written (an A record's address, a TTL): what `check` would
    // refuse is refused here, not printed.
    let made = std::path::Path::new("imported policy");
    crate::policy::parse_zone(made, &out, 1).map_err(|PolicyErrors(errors)| {
        ImportErrors(
            errors
                .iter()
                .map(|e| format!("the policy made is not valid: {}", e.message))
                .collect(),
        )
    })?;
    Ok(out)
}

/// A name as operators write it (`@` for the apex).
fn display_name(name: &str) -> &str {
    if name.is_empty() { "@" } else { name }
}

/// A YAML double-quoted scalar (JSON's string syntax is YAML's).
fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// The record's values: `values`, else `value`.
fn values_of(record: &Value) -> Vec<&Value> {
    match (record.get("values"), record.get("value")) {
        (Some(Value::Array(items)), _) => items.iter().collect(),
        (_, Some(one)) => vec![one],
        _ => Vec::new(),
    }
}

/// One static record set as an item of its name's `records:` list.
fn static_record(name: &str, rtype: &str, record: &Value) -> Result<String, String> {
    if !STATIC_TYPES.contains(&rtype) {
        return Err(format!(
            "type {rtype} is not served by geosteer (it serves {})",
            STATIC_TYPES.join(" ")
        ));
    }
    if name.is_empty() && rtype == "NS" {
        return Err("the apex NS set comes from --nameservers, not from the zone file".into());
    }
    let values = values_of(record);
    if values.is_empty() {
        return Err("no value".into());
    }
    let mut written = Vec::new();
    for value in values {
        written.push(static_value(rtype, value)?);
    }
    let ttl = record
        .get("ttl")
        .and_then(Value::as_u64)
        .unwrap_or(OCTODNS_DEFAULT_TTL);
    let ttl = format!(", ttl: {ttl}");
    Ok(format!(
        "    - {{type: {rtype}{ttl}, values: [{}]}}\n",
        written.join(", ")
    ))
}

/// One value of a static record, in the policy's syntax.
fn static_value(rtype: &str, value: &Value) -> Result<String, String> {
    let field = |name: &str| value.get(name).cloned().unwrap_or(Value::Null);
    let number = |name: &str| -> Result<u64, String> {
        field(name)
            .as_u64()
            .ok_or_else(|| format!("value without a numeric '{name}'"))
    };
    let text = |name: &str| -> Result<String, String> {
        field(name)
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("value without '{name}'"))
    };
    match rtype {
        "A" | "AAAA" | "CNAME" | "NS" => value
            .as_str()
            .map(quoted)
            .ok_or_else(|| "a value that is not text".to_string()),
        // octoDNS escapes semicolons in TXT values.
        "TXT" => value
            .as_str()
            .map(|t| quoted(&t.replace("\\;", ";")))
            .ok_or_else(|| "a value that is not text".to_string()),
        "MX" => {
            let preference = number("preference").or_else(|_| number("priority"))?;
            let exchange = text("exchange").or_else(|_| text("value"))?;
            Ok(format!(
                "{{preference: {preference}, exchange: {}}}",
                quoted(&exchange)
            ))
        }
        "SRV" => Ok(format!(
            "{{priority: {}, weight: {}, port: {}, target: {}}}",
            number("priority")?,
            number("weight")?,
            number("port")?,
            quoted(&text("target")?)
        )),
        "CAA" => Ok(format!(
            "{{flags: {}, tag: {}, value: {}}}",
            number("flags").unwrap_or(0),
            quoted(&text("tag")?),
            quoted(&text("value")?)
        )),
        _ => Err(format!("type {rtype} is not served by geosteer")),
    }
}

/// One node made from a dynamic value.
#[derive(Debug)]
struct Node {
    name: String,
    address: IpAddr,
    weight: u64,
    status: &'static str,
    /// `[latitude, longitude]` and the geo code, and the comment saying why.
    site: (f64, f64, String, String),
    check: Option<String>,
}

impl Node {
    fn text(&self) -> String {
        let (lat, lon, geo, why) = &self.site;
        let mut fields = vec![
            format!("geo: {geo}"),
            format!("location: [{lat}, {lon}]"),
            format!("addresses: [{}]", quoted(&self.address.to_string())),
        ];
        if self.weight != 1 {
            fields.push(format!("weight: {}", self.weight));
        }
        if self.status != "obey" {
            fields.push(format!("status: {}", self.status));
        }
        if let Some(check) = &self.check {
            fields.push(format!("check: {check}"));
        }
        format!(
            "  # choice: {why}\n  {}: {{{}}}\n",
            self.name,
            fields.join(", ")
        )
    }
}

/// The nodes made so far, one per distinct address.
#[derive(Debug, Default)]
struct Nodes {
    list: Vec<Node>,
}

impl Nodes {
    /// The node answering with `address`, made if new.
    fn node(&mut self, address: IpAddr, pool: &str, make: impl FnOnce(String) -> Node) -> String {
        if let Some(node) = self.list.iter().find(|n| n.address == address) {
            return node.name.clone();
        }
        let taken = |name: &str| self.list.iter().any(|n| n.name == name);
        let mut n = self
            .list
            .iter()
            .filter(|n| n.name.starts_with(pool))
            .count()
            + 1;
        let mut name = format!("{pool}-{n}");
        while taken(&name) {
            n += 1;
            name = format!("{pool}-{n}");
        }
        let node = make(name.clone());
        self.list.push(node);
        name
    }
}

/// Where a geo code puts a node: its country's reference point (a continent's chosen
/// country), with the geo code the node gets and `why` it was chosen.
fn site_of(geo: &str, why: &str) -> Option<(f64, f64, String, String)> {
    let countries = crate::geo::CountryTable::shipped();
    let mut parts = geo.split('-');
    let continent = parts.next()?.to_ascii_uppercase();
    let country = match parts.next() {
        Some(c) => c.to_ascii_uppercase(),
        None => CONTINENT_SITES
            .iter()
            .find(|(c, _)| *c == continent)
            .map(|(_, country)| (*country).to_string())?,
    };
    let reference = countries.get(&country)?.reference?;
    Some((
        reference.latitude,
        reference.longitude,
        format!("{continent}-{country}"),
        format!("located at {country}'s reference point, from {why}: set the node's real site"),
    ))
}

/// A geo a pool's name spells: a country (`us`, `jp`) or a continent (`eu`, `as`) code.
fn geo_named(pool: &str) -> Option<String> {
    let code = pool.to_ascii_uppercase();
    if CONTINENT_SITES.iter().any(|(c, _)| *c == code) {
        return Some(code);
    }
    let country = crate::geo::CountryTable::shipped().get(&code)?;
    let continent = std::str::from_utf8(&country.continent).ok()?;
    Some(format!("{continent}-{code}"))
}

/// The synthetic last pool: the record's own values.
const VALUES_POOL: &str = "record-values";

/// A site: geo code, and why it was chosen.
type Site = (String, String);

/// A dynamic record's rules, read.
struct Rules {
    /// Each as a line of the policy's `rules:`.
    lines: Vec<String>,
    /// Pool → the site of the first rule with geos answering from it.
    sites: BTreeMap<String, Site>,
    /// Pool → the site of the first rule with geos whose fallback chain reaches it.
    chained: BTreeMap<String, Site>,
    /// The last rule's pool when it matches everyone.
    catch_all: Option<String>,
}

/// Reads a dynamic record's rules against its pools.
fn read_rules(pools: &serde_json::Map<String, Value>, rules: &[Value]) -> Result<Rules, String> {
    let mut read = Rules {
        lines: Vec::new(),
        sites: BTreeMap::new(),
        chained: BTreeMap::new(),
        catch_all: None,
    };
    for (i, rule) in rules.iter().enumerate() {
        let pool = rule
            .get("pool")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("rule {}: no pool", i + 1))?;
        if !pools.contains_key(pool) {
            return Err(format!("rule {}: pool '{pool}' is not defined", i + 1));
        }
        let list = |key: &str| -> Vec<String> {
            match rule.get(key) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let (geos, subnets) = (list("geos"), list("subnets"));
        if !geos.is_empty() && !subnets.is_empty() {
            return Err(format!(
                "rule {}: both geos and subnets; write it as two rules (subnets first)",
                i + 1
            ));
        }
        if let Some(geo) = geos.first() {
            let site = |how: &str| (geo.clone(), format!("the geo {geo} of {how}"));
            (read.sites)
                .entry(pool.to_string())
                .or_insert_with(|| site("the rule using it"));
            for fallback in fallback_chain(pools, pool).into_iter().skip(1) {
                (read.chained)
                    .entry(fallback)
                    .or_insert_with(|| site("a rule falling back to it"));
            }
        }
        let condition = if !geos.is_empty() {
            format!("geos: [{}], ", geos.join(", "))
        } else if !subnets.is_empty() {
            let quoted: Vec<String> = subnets.iter().map(|s| quoted(s)).collect();
            format!("subnets: [{}], ", quoted.join(", "))
        } else {
            if i + 1 == rules.len() {
                read.catch_all = Some(pool.to_string());
            }
            String::new()
        };
        read.lines
            .push(format!("      - {{{condition}pool: {pool}}}\n"));
    }
    Ok(read)
}

/// A pool and the pools its `fallback`s lead to, in order, each once.
fn fallback_chain(pools: &serde_json::Map<String, Value>, pool: &str) -> Vec<String> {
    let mut chain = vec![pool.to_string()];
    while let Some(next) = chain
        .last()
        .and_then(|p| pools.get(p))
        .and_then(|p| p.get("fallback"))
        .and_then(Value::as_str)
    {
        if chain.iter().any(|p| p == next) {
            break;
        }
        chain.push(next.to_string());
    }
    chain
}

/// One dynamic record as a steered name, adding its nodes.
fn steered_name(
    name: &str,
    record: &Value,
    zone: &str,
    nodes: &mut Nodes,
) -> Result<String, String> {
    let dynamic = record.get("dynamic").cloned().unwrap_or(Value::Null);
    let Some(Value::Object(pools)) = dynamic.get("pools") else {
        return Err("dynamic without pools".into());
    };
    let Some(Value::Array(rules)) = dynamic.get("rules") else {
        return Err("dynamic without rules".into());
    };
    if pools.contains_key(VALUES_POOL) {
        return Err(format!(
            "a pool is named '{VALUES_POOL}', the name given to the record's own values: rename it"
        ));
    }
    let fqdn = if name.is_empty() {
        zone.to_string()
    } else {
        format!("{name}.{zone}")
    };
    let check = health_check(record, &fqdn)?;
    let mut rules = read_rules(pools, rules)?;
    // A pool no rule with geos answers from: its name when that is a geo (`us`, `eu`), else
    // a rule's geo that falls back to it, else North America.
    for pool in pools.keys() {
        if rules.sites.contains_key(pool) {
            continue;
        }
        let named = geo_named(pool).map(|geo| (geo, format!("the pool's name '{pool}'")));
        let site = named
            .or_else(|| rules.chained.get(pool).cloned())
            .unwrap_or_else(|| ("NA-US".into(), "no geo in the file".into()));
        rules.sites.insert(pool.clone(), site);
    }
    let last_pool = (rules.catch_all.clone()).or_else(|| pools.keys().next().cloned());
    let last_site = last_pool
        .and_then(|p| rules.sites.get(&p).cloned())
        .unwrap_or_else(|| ("NA-US".into(), "no geo in the file".into()));
    let mut pool_lines = Vec::new();
    for (pool, body) in pools {
        let Some(Value::Array(values)) = body.get("values") else {
            return Err(format!("pool '{pool}': no values"));
        };
        let site = rules.sites.get(pool).unwrap_or(&last_site);
        let members = pool_nodes(pool, values.iter().collect(), site, &check, nodes)?;
        let fallback = body
            .get("fallback")
            .and_then(Value::as_str)
            .unwrap_or(VALUES_POOL);
        pool_lines.push(format!(
            "      {pool}: {{nodes: [{}], fallback: {fallback}}}\n",
            members.join(", ")
        ));
    }
    // The record's own values: what octoDNS answers once every pool of a chain is down.
    let last = pool_nodes(VALUES_POOL, values_of(record), &last_site, &check, nodes)?;
    if last.is_empty() {
        return Err("no values: octoDNS answers them when every pool is down".into());
    }
    pool_lines.push(format!(
        "      {VALUES_POOL}: {{nodes: [{}]}}\n",
        last.join(", ")
    ));
    let ttl = record
        .get("ttl")
        .and_then(Value::as_u64)
        .unwrap_or(OCTODNS_DEFAULT_TTL);
    let key = quoted(if name.is_empty() { "@" } else { name });
    let mut out = format!("  {key}:\n    ttl: {ttl}\n");
    out += "    # choice: one value per answer, drawn by weight among its pool's values, as octoDNS's\n";
    out +=
        "    # dynamic answers are (a pool's values share a site here, so they form one group)\n";
    out += "    answers: 1\n    spread: {within: 10%}\n";
    out += "    pools:\n";
    out += &pool_lines.concat();
    out += "    rules:\n";
    out += &rules.lines.concat();
    if let Some(pool) = &rules.catch_all {
        out += "    # choice: clients the database cannot locate get the catch-all rule's pool\n";
        let _ = writeln!(out, "    default: {{pool: {pool}}}");
    }
    Ok(out)
}

/// The nodes of one pool's values (a value is `{value, weight, status}`, or a bare address
/// for the record's own values), made where new.
fn pool_nodes(
    pool: &str,
    values: Vec<&Value>,
    (geo, why): &Site,
    check: &Option<String>,
    nodes: &mut Nodes,
) -> Result<Vec<String>, String> {
    let mut members = Vec::new();
    for value in values {
        let address: IpAddr = value
            .get("value")
            .unwrap_or(value)
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("pool '{pool}': a value that is not an address"))?;
        let weight = value.get("weight").and_then(Value::as_u64).unwrap_or(1);
        let status = match value.get("status").and_then(Value::as_str) {
            None | Some("obey") => "obey",
            Some("up") => "up",
            Some("down") => "down",
            Some(other) => return Err(format!("pool '{pool}': status '{other}'")),
        };
        let site =
            site_of(geo, why).ok_or_else(|| format!("pool '{pool}': geo '{geo}' is not known"))?;
        let check = check.clone();
        members.push(nodes.node(address, pool, |name| Node {
            name,
            address,
            weight,
            status,
            site,
            check,
        }));
    }
    Ok(members)
}

/// The nodes' check from `octodns.healthcheck` (octoDNS's defaults: HTTPS, port 443,
/// path `/_dns`, Host the record's name), as a policy `check:` map.
fn health_check(record: &Value, fqdn: &str) -> Result<Option<String>, String> {
    let settings = record
        .get("octodns")
        .and_then(|o| o.get("healthcheck"))
        .cloned()
        .unwrap_or(Value::Null);
    let protocol = settings
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("HTTPS")
        .to_ascii_uppercase();
    let kind = match protocol.as_str() {
        "HTTPS" => "https",
        "HTTP" => "http",
        "TCP" => "tcp",
        other => {
            return Err(format!(
                "healthcheck protocol '{other}' (geosteer checks HTTP, HTTPS and TCP)"
            ));
        }
    };
    let default_port = if kind == "http" { 80 } else { 443 };
    let port = settings
        .get("port")
        .and_then(Value::as_u64)
        .unwrap_or(default_port);
    if kind == "tcp" {
        return Ok(Some(format!("{{type: tcp, port: {port}}}")));
    }
    let path = settings
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or("/_dns");
    let host = settings.get("host").and_then(Value::as_str).unwrap_or(fqdn);
    Ok(Some(format!(
        "{{type: {kind}, port: {port}, path: {}, host: {}}}",
        quoted(path),
        quoted(host)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ImportOptions {
        ImportOptions {
            zone: "live.example.net".into(),
            nameservers: vec!["ns1.live.example.net.".into()],
            contact: None,
        }
    }

    /// A value copied as written but wrong (not an address, a TTL past 32 bits) is refused,
    /// not printed into a policy that `check` would refuse.
    #[test]
    fn the_policy_made_is_checked() {
        let text = "www: {type: A, value: not-an-address}\nmx: {type: A, ttl: 99999999999, value: 192.0.2.1}\n";
        let err = octodns(text, &options()).unwrap_err().to_string();
        assert!(err.contains("the policy made is not valid"), "{err}");
        assert!(err.contains("not-an-address"), "{err}");
        assert!(octodns("www: {type: A, value: 192.0.2.1}\n", &options()).is_ok());
    }

    #[test]
    fn unsupported_constructs_are_refused_by_name() {
        let text = "ptr: {type: PTR, value: host.example.}\nalias: {type: CNAME, value: x.example., dynamic: {pools: {}, rules: []}}\n";
        let err = octodns(text, &options()).unwrap_err().to_string();
        assert!(
            err.contains("record 'ptr' (PTR): type PTR is not served"),
            "{err}"
        );
        assert!(
            err.contains("record 'alias' (CNAME): dynamic CNAME records cannot be steered"),
            "{err}"
        );
    }
}
