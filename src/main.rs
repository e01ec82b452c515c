//! The `geosteer` command: the command line (`serve`, the default; `probe`, `check`,
//! `explain`, `diff`, `fleet`), logging and the runtime. Each command hands over to the
//! library (`service`, `loader`, `explain`, `diff`, `fleet`) at once; most of this file is
//! the options and their help text, and nothing here decides how DNS is answered.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use geosteer::config::{DEFAULT_ADMIN, DEFAULT_GEO_DB, DEFAULT_LISTEN, DEFAULT_ZONES, ServeConfig};
use geosteer::loader::{Loaded, Sources, load};
use geosteer::service;

#[derive(Parser)]
#[command(
    name = "geosteer",
    version,
    about = "Geo-aware authoritative DNS for ingest steering"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// How logs are written (to stderr).
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the zones in PATH over UDP and TCP.
    Serve(Box<ServeArgs>),
    /// Explain which nodes a client gets for a steered name, and why (policy alone: every
    /// node up, nothing measured; the admin interface's /explain shows the live decision).
    Explain {
        /// The steered name: absolute (ingest.live.example.net) or relative to --zone.
        #[arg(long)]
        name: String,
        /// The zone, when --name is relative to it.
        #[arg(long)]
        zone: Option<String>,
        /// The client's address (or its subnet).
        #[arg(long, required_unless_present = "ecs")]
        client: Option<String>,
        /// The ECS subnet a resolver sends for the client (203.0.113.0/24); wins over --client,
        /// as it does in a query.
        #[arg(long)]
        ecs: Option<String>,
        /// Policy file or directory.
        #[arg(long, default_value = DEFAULT_ZONES)]
        zones: PathBuf,
        /// GeoIP database(s).
        #[arg(long, default_value = DEFAULT_GEO_DB)]
        geo: Vec<PathBuf>,
    },
    /// Run as a probe agent: check every node of the zones from where this runs and share the
    /// verdicts, and the round trips as the vantage point's measurements, with the fleet. No
    /// DNS is served (--listen is ignored); --fleet is required.
    Probe {
        /// Where this agent stands, as a client group: a geo code (AS-JP, EU-DE).
        #[arg(long)]
        vantage: String,
        /// Everything `serve` takes: zones, fleet, identity, admin.
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
    /// Look at or change a fleet's shared state in etcd: `status`, or an override for every
    /// instance at once (`drain`, `force-up`, `force-down`, `obey` ZONE NODE).
    Fleet {
        /// The fleet's etcd: endpoints, key prefix, TLS and user.
        #[command(flatten)]
        fleet: FleetArgs,
        /// Who makes the change, for the audit trail (default: $USER).
        #[arg(long, global = true)]
        by: Option<String>,
        /// Why, for the audit trail (logs, timelines, `/nodes`).
        #[arg(long, global = true)]
        reason: Option<String>,
        /// What to do.
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Compare two policies (files or directories) for review: per steered name, which share
    /// of clients moves from which node to which, and fence changes. With --down, a what-if:
    /// NEW (or OLD again) with those nodes down. Exit status: 0 nothing changes, 1 something
    /// does, 2 the comparison failed.
    Diff {
        /// The policy before.
        old: PathBuf,
        /// The policy after (default: OLD, for a what-if with --down).
        new: Option<PathBuf>,
        /// GeoIP database(s), used for both sides.
        #[arg(long, default_value = DEFAULT_GEO_DB)]
        geo: Vec<PathBuf>,
        /// Nodes whose checks fail on the NEW side (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        down: Vec<String>,
        /// A query log sample (geosteer's query lines, or one address per line): weighs
        /// the moves by real queries as well.
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Output: text for people, json for tools.
        #[arg(long, value_enum, default_value = "text")]
        format: DiffFormat,
    },
    /// DNSSEC keys: make a zone's keys, or print the DS records of keys made before.
    Dnssec {
        #[command(subcommand)]
        action: DnssecAction,
    },
    /// Translate another system's zone into a policy, printed on standard output.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Validate policy files (and the GeoIP database) and print every error.
    Check {
        /// Policy file or directory.
        #[arg(default_value = DEFAULT_ZONES)]
        path: PathBuf,
        /// GeoIP database(s) to build answer tables against.
        #[arg(long, default_value = DEFAULT_GEO_DB)]
        geo: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// An octoDNS zone file (YamlProvider format): static records, dynamic A/AAAA records
    /// as steered names; choices made are marked `# choice:`.
    Octodns {
        /// The octoDNS zone file.
        file: PathBuf,
        /// The zone (live.example.net).
        #[arg(long)]
        zone: String,
        /// The zone's name servers, fully qualified, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        nameservers: Vec<String>,
        /// The SOA contact (hostmaster.<zone>. when absent).
        #[arg(long)]
        contact: Option<String>,
    },
}

#[derive(Subcommand)]
enum DnssecAction {
    /// Make a key-signing and a zone-signing key (or one combined key) as BIND-style key
    /// files in DIR, and print the DS record to give the parent zone.
    Keygen {
        /// The zone (live.example.net).
        #[arg(long)]
        zone: String,
        /// Where the key files go (created if missing; existing files are never replaced).
        #[arg(long)]
        dir: PathBuf,
        /// 13 (ECDSA P-256 SHA-256, the default) or 15 (Ed25519); mnemonics work too.
        #[arg(long, default_value = "13")]
        algorithm: String,
        /// One key (flags 257) that signs everything, instead of a KSK and a ZSK.
        #[arg(long)]
        combined: bool,
    },
    /// Print the DS records of a zone's key-signing keys in DIR.
    Ds {
        /// The zone.
        #[arg(long)]
        zone: String,
        /// Where its key files are.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum FleetAction {
    /// Members, overrides and every member's health verdicts.
    Status,
    /// Take a node out of every instance's answers (or, with --share, that percentage of
    /// its client networks: a staged drain).
    Drain {
        /// Zone origin.
        zone: String,
        /// Node name.
        node: String,
        /// Percentage of the node's client networks to move (1 to 100; all when absent).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
        share: Option<u8>,
    },
    /// Answer a node on every instance whatever its checks say.
    ForceUp {
        /// Zone origin.
        zone: String,
        /// Node name.
        node: String,
    },
    /// Never answer a node, on every instance.
    ForceDown {
        /// Zone origin.
        zone: String,
        /// Node name.
        node: String,
    },
    /// Clear a node's override: policy and health decide again.
    Obey {
        /// Zone origin.
        zone: String,
        /// Node name.
        node: String,
    },
}

/// How to reach a fleet's etcd; shared by `serve`, `probe` and `fleet`.
#[derive(clap::Args)]
struct FleetArgs {
    /// Join a fleet: etcd client URLs (comma-separated or repeated), `http://HOST:PORT` or
    /// `https://HOST:PORT`, through which every instance shares overrides and health verdicts.
    #[arg(long, value_delimiter = ',')]
    fleet: Vec<String>,
    /// The fleet's key prefix in etcd: one per deployment.
    #[arg(long, default_value = "/geosteer")]
    fleet_prefix: String,
    /// PEM file of the CA that signed etcd's server certificates (https:// endpoints).
    #[arg(long)]
    fleet_ca: Option<PathBuf>,
    /// PEM client certificate for etcd clusters that require one (with --fleet-key).
    #[arg(long, requires = "fleet_key")]
    fleet_cert: Option<PathBuf>,
    /// PEM private key of --fleet-cert.
    #[arg(long, requires = "fleet_cert")]
    fleet_key: Option<PathBuf>,
    /// etcd user, for clusters with authentication enabled.
    #[arg(long)]
    fleet_user: Option<String>,
    /// File holding that user's password (or set GEOSTEER_FLEET_PASSWORD).
    #[arg(long, requires = "fleet_user")]
    fleet_password_file: Option<PathBuf>,
    /// Milliseconds a starting instance waits to read the fleet before it reports ready
    /// on the overrides its state file kept.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=600_000))]
    fleet_ready_wait_ms: u32,
}

impl FleetArgs {
    /// The etcd settings, with the password read from its file or the environment.
    fn settings(&self) -> Result<geosteer::fleet::etcd::EtcdSettings, String> {
        let password = match &self.fleet_password_file {
            Some(path) => match read_secret(path, "the fleet password") {
                Ok(text) if !text.trim_end_matches(['\r', '\n']).is_empty() => {
                    Some(text.trim_end_matches(['\r', '\n']).to_string())
                }
                Ok(_) => return Err(format!("{}: the password file is empty", path.display())),
                Err(why) => return Err(format!("{}: {why}", path.display())),
            },
            None if self.fleet_user.is_some() => std::env::var("GEOSTEER_FLEET_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty()),
            None => None,
        };
        Ok(geosteer::fleet::etcd::EtcdSettings {
            endpoints: self.fleet.clone(),
            ca_file: self.fleet_ca.clone(),
            cert_file: self.fleet_cert.clone(),
            key_file: self.fleet_key.clone(),
            user: self.fleet_user.clone(),
            password,
        })
    }
}

/// How `geosteer diff` writes its result.
#[derive(Clone, Copy, clap::ValueEnum)]
enum DiffFormat {
    Text,
    Json,
}

/// `geosteer diff ...`: 0 nothing changes, 1 something does, 2 it could not be compared.
fn diff(request: geosteer::diff::DiffRequest, format: DiffFormat) -> ExitCode {
    match geosteer::diff::diff(&request) {
        Ok(result) => {
            let text = match format {
                DiffFormat::Text => result.text(),
                DiffFormat::Json => match serde_json::to_string_pretty(&result) {
                    Ok(json) => json + "\n",
                    Err(e) => {
                        eprintln!("Error: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            let printed = print_out(&text);
            if printed != ExitCode::SUCCESS {
                return ExitCode::from(2);
            }
            if result.changed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `geosteer fleet ...`.
fn fleet(args: FleetArgs, action: FleetAction, by: geosteer::answer::Audit) -> ExitCode {
    use geosteer::answer::Override;
    if args.fleet.is_empty() {
        eprintln!("Error: give the fleet's etcd endpoints with --fleet");
        return ExitCode::FAILURE;
    }
    let etcd = match args
        .settings()
        .and_then(|s| geosteer::fleet::etcd::Etcd::new(&s).map_err(|e| e.to_string()))
    {
        Ok(etcd) => etcd,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = geosteer::fleet::FleetConfig {
        etcd,
        prefix: args.fleet_prefix,
        identity: String::new(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (zone, node, set) = match action {
            FleetAction::Status => {
                return geosteer::fleet::status_text(&config)
                    .await
                    .map(|text| print!("{text}"))
                    .map_err(geosteer::fleet::FleetCommandError::from);
            }
            FleetAction::Drain { zone, node, share } => (
                zone,
                node,
                share.map_or(Some(Override::Drain), geosteer::answer::drain_share),
            ),
            FleetAction::ForceUp { zone, node } => (zone, node, Some(Override::ForceUp)),
            FleetAction::ForceDown { zone, node } => (zone, node, Some(Override::ForceDown)),
            FleetAction::Obey { zone, node } => (zone, node, None),
        };
        geosteer::fleet::set_override(&config, (&zone, &node), set, &by).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Parser)]
struct ServeArgs {
    /// Address to listen on, UDP and TCP; repeat for several. Port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: Vec<SocketAddr>,
    /// Policy file or directory of them.
    #[arg(long, default_value = DEFAULT_ZONES)]
    zones: PathBuf,
    /// MaxMind-format GeoIP database (country or city level, MaxMind or DB-IP schema).
    /// Repeat for several files (e.g. separate IPv4 and IPv6 files); the first that
    /// locates a client wins.
    #[arg(long, default_value = DEFAULT_GEO_DB)]
    geo: Vec<PathBuf>,
    /// Largest UDP response, bytes.
    #[arg(long, default_value_t = 1232, value_parser = clap::value_parser!(u16).range(512..))]
    max_udp_payload: u16,
    /// Admin HTTP address (node state, drain, metrics). Off loopback it needs a token.
    #[arg(long, default_value = DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Disable the admin interface.
    #[arg(long, conflicts_with = "admin")]
    no_admin: bool,
    /// File holding the admin bearer token (or set GEOSTEER_ADMIN_TOKEN).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// A host name the admin interface is reached by (repeatable); it always answers to
    /// its addresses and localhost, and refuses other names (DNS rebinding).
    #[arg(long)]
    admin_host: Vec<String>,
    /// A latency feed file (JSON, the format of POST /latency), reloaded when it changes.
    #[arg(long)]
    latency_feed: Option<PathBuf>,
    /// ASN database for carrier lines: MaxMind format (GeoLite2-ASN) or ip-location-db CSV
    /// (first,last,asn,name).
    #[arg(long)]
    asn_db: Option<PathBuf>,
    /// This instance's name, answered to `dig CH TXT id.server` and in NSID (`dig +nsid`)
    /// (default: the host name).
    #[arg(long)]
    identity: Option<String>,
    /// Do not reveal the version to `dig CH TXT version.bind`.
    #[arg(long)]
    hide_version: bool,
    /// First label of debug names: `dig TXT _explain.ingest.live.example.net` explains the
    /// answer for the asking client. An empty value disables them.
    #[arg(long, default_value = "_explain")]
    explain_label: String,
    /// Networks allowed to query debug names (repeatable); everyone when absent.
    #[arg(long)]
    explain_from: Vec<geosteer::net::Prefix>,
    /// Log one query in N at info (client, ECS, name, type, answer, rcode, latency); 0: none.
    #[arg(long, default_value_t = 0)]
    query_log_sample: u64,
    /// TCP connections open at once, in all (capped by the file descriptor limit, less a
    /// reserve for the admin interface, reloads and checks).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    tcp_max_connections: u32,
    /// TCP connections open at once from one source (an IPv4 address, an IPv6 /64).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    tcp_per_source: u32,
    /// Seconds a TCP connection is kept, however busy; then it winds down (queries on their
    /// way are answered) and the client reconnects.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    tcp_lifetime: u32,
    /// Response-rate limiting: UDP responses a second of one kind (name, type, rcode, client
    /// subnet) to one client network (IPv4 /24, IPv6 /56); 0 turns it off.
    #[arg(long, default_value_t = 100)]
    rrl_rate: u32,
    /// Response-rate limiting: UDP responses a second of any kind to one client network.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    rrl_source_rate: u32,
    /// Response-rate limiting: every Nth limited response is sent truncated (TC) so a real
    /// client retries over TCP; 0 drops them all.
    #[arg(long, default_value_t = 2)]
    rrl_slip: u32,
    /// Networks never rate-limited (repeatable).
    #[arg(long)]
    rrl_exempt: Vec<geosteer::net::Prefix>,
    /// Count what rate limiting would withhold, but send everything.
    #[arg(long)]
    rrl_log_only: bool,
    /// DNS Cookies: a file with the server cookie secret (32 hex digits), and on a second
    /// line the previous one during a rotation; the same file on every instance behind one
    /// anycast address. Without it, a random secret per process.
    #[arg(long)]
    cookie_secret_file: Option<PathBuf>,
    /// The fleet's etcd: endpoints, key prefix, TLS and user.
    #[command(flatten)]
    fleet: FleetArgs,
    /// File where overrides (drains, forced states) are kept across restarts, read before
    /// the first answer (e.g. /var/lib/geosteer/state.json). Without it they live in memory
    /// only (in a fleet, etcd still has them).
    #[arg(long)]
    state_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,hickory_server=warn,hickory_proto=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        Some(Command::Check { path, geo }) => check(&path, &geo),
        Some(Command::Dnssec { action }) => dnssec(action),
        Some(Command::Import {
            from:
                ImportFrom::Octodns {
                    file,
                    zone,
                    nameservers,
                    contact,
                },
        }) => {
            let options = geosteer::import::ImportOptions {
                zone,
                nameservers,
                contact,
            };
            import_octodns(&file, &options)
        }
        Some(Command::Explain {
            name,
            zone,
            client,
            ecs,
            zones,
            geo,
        }) => {
            let name = match zone {
                Some(zone) if !name.ends_with('.') => {
                    format!("{name}.{}", zone.trim_end_matches('.'))
                }
                _ => name,
            };
            let client = ecs.or(client).unwrap_or_default();
            explain(&name, &client, &zones, &geo)
        }
        Some(Command::Serve(args)) => serve(*args, None),
        Some(Command::Diff {
            old,
            new,
            geo,
            down,
            queries,
            format,
        }) => diff(
            geosteer::diff::DiffRequest {
                new: new.unwrap_or_else(|| old.clone()),
                old,
                geo,
                down,
                queries,
            },
            format,
        ),
        Some(Command::Fleet {
            fleet: args,
            by,
            reason,
            action,
        }) => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "fleet".into());
            fleet(
                args,
                action,
                geosteer::answer::Audit::new(by, reason.as_deref()),
            )
        }
        Some(Command::Probe {
            vantage,
            serve: args,
        }) => {
            if let Err(e) =
                geosteer::geo::GeoCode::parse(&vantage, geosteer::geo::CountryTable::shipped())
            {
                eprintln!("Error: --vantage {vantage}: {e}");
                return ExitCode::FAILURE;
            }
            if args.fleet.fleet.is_empty() {
                eprintln!("Error: a probe agent shares what it sees with a fleet: give --fleet");
                return ExitCode::FAILURE;
            }
            serve(*args, Some(vantage))
        }
        None => serve(ServeArgs::parse_from(["serve"]), None),
    }
}

/// `geosteer dnssec …`: keys made or read, their DNSKEY and DS records printed.
fn dnssec(action: DnssecAction) -> ExitCode {
    use geosteer::dnssec::{Algorithm, KeyRole};
    let (zone, made) = match action {
        DnssecAction::Keygen {
            zone,
            dir,
            algorithm,
            combined,
        } => {
            let Some(algorithm) = Algorithm::parse(&algorithm) else {
                eprintln!("--algorithm {algorithm}: use 13 (ECDSAP256SHA256) or 15 (ED25519)");
                return ExitCode::from(2);
            };
            let made = geosteer::dnssec::generate_keys(&zone, &dir, algorithm, combined);
            if let Ok(keys) = &made {
                for key in keys {
                    println!("; {}", key.file(&dir, "key").display());
                    println!("{}", key.dnskey_text());
                }
            }
            (zone, made)
        }
        DnssecAction::Ds { zone, dir } => {
            let read = geosteer::dnssec::load_keys(&zone, &dir);
            (zone, read)
        }
    };
    match made {
        Ok(keys) => {
            println!("; DS for the parent of {zone}:");
            for key in keys.iter().filter(|k| k.role == KeyRole::KeySigning) {
                println!("{}", key.ds_text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `geosteer import octodns`: the policy on standard output, or every problem found.
fn import_octodns(file: &std::path::Path, options: &geosteer::import::ImportOptions) -> ExitCode {
    /// Larger than any zone file: refused rather than read whole.
    const MAX_ZONE_FILE: u64 = 64 << 20;
    let text = match std::fs::metadata(file) {
        Ok(m) if m.len() > MAX_ZONE_FILE => Err(format!("larger than {MAX_ZONE_FILE} bytes")),
        _ => std::fs::read_to_string(file).map_err(|e| e.to_string()),
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!("Error: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match geosteer::import::octodns(&text, options) {
        Ok(policy) => print_out(&policy),
        Err(errors) => {
            for error in errors.0 {
                eprintln!("{}: {error}", file.display());
            }
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path, geo: &[PathBuf]) -> ExitCode {
    let sources = Sources {
        zones: path.to_path_buf(),
        geo: geo.to_vec(),
        asn: None,
    };
    match service::load(&sources) {
        Ok((zones, snapshot)) => {
            let mut report = String::new();
            for zone in &zones {
                report += &format!(
                    "{}: zone {} OK ({} static record sets, {} nodes, {} steered names)\n",
                    zone.source.display(),
                    zone.origin,
                    zone.records.len(),
                    zone.nodes.len(),
                    zone.steered.len()
                );
            }
            let files: Vec<String> = geo.iter().map(|p| p.display().to_string()).collect();
            report += &format!(
                "answer tables built against {} ({} places)\n",
                files.join(", "),
                snapshot.geo.places().len()
            );
            print_out(&report)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a command's output. A reader that goes away early (`geosteer explain ... | head`)
/// ends the command quietly, as it does any Unix tool; other write errors are reported.
fn print_out(text: &str) -> ExitCode {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn explain(name: &str, client: &str, zones: &std::path::Path, geo: &[PathBuf]) -> ExitCode {
    let address = client.split('/').next().unwrap_or_default();
    let Ok(address) = address.parse::<std::net::IpAddr>() else {
        eprintln!("Error: --client '{client}' is not an address or subnet");
        return ExitCode::FAILURE;
    };
    let sources = Sources {
        zones: zones.to_path_buf(),
        geo: geo.to_vec(),
        asn: None,
    };
    let Loaded { zones, geo, .. } = match load(&sources) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match geosteer::explain::explain(&zones, &geo, name, address, |_| Default::default()) {
        Ok(explanation) => print_out(&format!(
            "{explanation}\n(policy alone: every node up, nothing measured; GET /explain on the admin interface for the live decision)\n"
        )),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves DNS, or with a `vantage`, runs as a probe agent (checks and fleet, no DNS).
fn serve(args: ServeArgs, vantage: Option<String>) -> ExitCode {
    match serve_config(args, vantage) {
        Ok(config) => run_server(config),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A secret's file, at most 64 KiB (a device such as /dev/zero included); errors never
/// show its content.
fn read_secret(path: &std::path::Path, what: &str) -> Result<String, String> {
    geosteer::policy::read_capped(path, 64 << 10, what)
}

/// How to serve, from the command line (and the admin token's file or environment).
fn serve_config(args: ServeArgs, vantage: Option<String>) -> Result<ServeConfig, String> {
    let admin_token = match &args.admin_token_file {
        Some(path) => match read_secret(path, "the admin token") {
            Ok(token) if !token.trim().is_empty() => Some(token.trim().to_string()),
            Ok(_) => return Err(format!("{}: the admin token file is empty", path.display())),
            Err(why) => return Err(format!("{}: {why}", path.display())),
        },
        None => std::env::var("GEOSTEER_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty()),
    };
    if let Some(tokens) = &admin_token
        && let Err(why) = geosteer::admin::token_holders(tokens)
    {
        let source = args
            .admin_token_file
            .as_ref()
            .map_or("GEOSTEER_ADMIN_TOKEN".to_string(), |p| {
                p.display().to_string()
            });
        return Err(format!("{source}: {why}"));
    }
    let fleet = args.fleet.settings().map_err(|e| e.to_string())?;
    // A probe agent's identity says where it stands, so it never shares an instance's.
    let identity = match (&args.identity, &vantage) {
        (Some(identity), _) => identity.clone(),
        (None, Some(vantage)) => format!("probe-{vantage}-{}", host_name()),
        (None, None) => host_name(),
    };
    Ok(ServeConfig {
        listen: if vantage.is_some() {
            Vec::new()
        } else {
            args.listen
        },
        probe_vantage: vantage,
        zones: args.zones,
        geo_dbs: args.geo,
        max_udp_payload: args.max_udp_payload,
        admin: (!args.no_admin).then_some(args.admin),
        admin_token,
        admin_hosts: args.admin_host,
        latency_feed: args.latency_feed,
        asn_db: args.asn_db,
        identity,
        hide_version: args.hide_version,
        explain_label: args.explain_label,
        explain_from: args.explain_from,
        query_log_every: args.query_log_sample,
        tcp_max_connections: args.tcp_max_connections as usize,
        tcp_per_source: args.tcp_per_source,
        tcp_lifetime: std::time::Duration::from_secs(u64::from(args.tcp_lifetime)),
        rrl: geosteer::dns::RrlSettings {
            rate: args.rrl_rate,
            source_rate: args.rrl_source_rate,
            slip: args.rrl_slip,
            exempt: args.rrl_exempt,
            log_only: args.rrl_log_only,
        },
        cookie_secret_file: args.cookie_secret_file,
        fleet,
        fleet_prefix: args.fleet.fleet_prefix,
        fleet_ready_wait: std::time::Duration::from_millis(u64::from(
            args.fleet.fleet_ready_wait_ms,
        )),
        state_file: args.state_file,
    })
}

/// Runs the server until SIGTERM or Ctrl-C, then gives open TCP connections 10 s.
fn run_server(config: ServeConfig) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let result = runtime.block_on(async {
        // Registered before anything is announced, so a SIGTERM right after the readiness
        // line shuts down gracefully instead of taking the default action.
        #[cfg(unix)]
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let server = service::run(config, announce, stopping);
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result,
            _ = shutdown_signal(#[cfg(unix)] term) => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                tracing::info!("shutting down: finishing open TCP connections");
                let _ = stop.send(true);
                match tokio::time::timeout(std::time::Duration::from_secs(10), &mut server).await {
                    Ok(result) => result,
                    Err(_) => Ok(()),
                }
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The readiness lines, on stdout, for tests and scripts.
fn announce(bound: &service::Bound) {
    let mut stdout = std::io::stdout().lock();
    if let Some(admin) = bound.admin {
        let _ = writeln!(stdout, "geosteer admin on http://{admin}");
    }
    for addr in &bound.dns {
        let _ = writeln!(stdout, "geosteer listening on {addr} (udp+tcp)");
    }
    let _ = stdout.flush();
}

/// The host name, for the default instance identity.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "geosteer".to_string())
}

/// Resolves on SIGTERM (its handler registered by the caller, early) or Ctrl-C.
async fn shutdown_signal(#[cfg(unix)] mut term: Option<tokio::signal::unix::Signal>) {
    #[cfg(unix)]
    {
        let Some(term) = term.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
