//! geosteer: a geo-aware authoritative DNS server that answers each client with its nearest
//! healthy ingest nodes.
//!
//! Data flow, bottom to top: policy files (`policy`) are parsed and validated into typed
//! zones; a GeoIP database (`geo`) is indexed by place; `steer` ranks every place's nodes
//! from policy, geography and measurements (`latency`); `answer` picks healthy nodes from
//! those rankings into an immutable `Snapshot`, and its publisher, the single writer, stores
//! snapshots in an `ArcSwap` as health (`health`), operators (`admin`) and feeds change
//! them; the DNS front end (`dns`) loads the current snapshot once per query, locates the
//! client (ECS, else the source address) and selects a precomputed answer. Nothing on the
//! query path locks, parses policy or ranks nodes.
//!
//! Modules, in layer order (each layer uses only those listed before it):
//! - `net`: IP prefixes and prefix tables. `random`: a small generator for jitter and tests.
//!   `parallel`: spreading rebuild work over the cores. `runs`: per-column tables stored as
//!   runs of equal values.
//! - `wire`: DNS numbers (types, classes, rcodes) and record body encoding.
//! - `geo`: geo codes, coordinates, the country table, GeoIP and ASN databases.
//! - `dnssec`: DNSSEC keys (BIND-style key files), DNSKEY and DS records, signing.
//! - `config`: how the server is started (listen addresses, paths).
//! - `policy`: zone policy files → typed model, with located errors.
//! - `metrics`: metric names and the counters the query path increments.
//! - `health`: probes, check loops, flap damping and the supervision of check tasks;
//!   reports go to the publisher, which plans the checks.
//! - `latency`: measurements, their aging, the expected round trip; the feed format.
//! - `steer`: the ranking engine (score, order and pick, regions, answer damping, ranked
//!   tables); its header is the glossary.
//! - `explain`: the steering decision for one client, step by step, and its TXT rendering.
//! - `loader`: one loader of policy and databases for start-up, reload and `check`.
//! - `answer`: the snapshot, the zone encoder, the answer builder, the publisher (a run
//!   loop around a pure node table and scheduler, publishing a state view beside the
//!   snapshot and an outbox for the fleet), and the census of where a name's clients go.
//! - `keep`: the state file, what an instance keeps across restarts (overrides).
//! - `dns`: the wire front end: request parsing, ECS, responses, UDP/TCP serving.
//! - `admin`: the HTTP admin interface and its status page (map and what-ifs, from the
//!   state view). `feedfile`: the latency feed as a watched file. `fleet`: overrides and
//!   health verdicts shared with other instances through etcd, and probe agents' reports.
//! - `service`: wiring a server together, shared by `serve` and `check`. `diff`: two
//!   policies (or one with nodes down) compared client by client. `import`: an octoDNS
//!   zone file as a policy.
// Denied everywhere but where a system call needs it, which allows it locally: the UDP batch
// calls (src/dns/batch.rs), mapping database files (src/geo/mapped.rs), handing freed
// memory back after ranking (src/steer/regions.rs), lowering the ranking thread's
// priority (src/parallel.rs), and raising the open-file limit at start (src/service.rs).
#![deny(unsafe_code)]

// Layers, bottom first: each group uses only the groups above it (tests/it/layers.rs
// checks this, and that no files import each other in a circle).

// Leaves.
pub mod net;
pub mod parallel;
pub mod random;
pub mod runs;
pub mod wire;

// Where places are.
pub mod geo;

// Signing keys.
pub mod dnssec;

// What operators write.
pub mod config;
pub mod policy;

// Metric names and the counters queries increment.
pub mod metrics;

// Inputs beside the policy, and the loader.
pub mod health;
pub mod latency;
pub mod loader;

// Ranking.
pub mod steer;

// Explaining rankings.
pub mod explain;

// The published answers and their single writer.
pub mod answer;

// What an instance keeps across restarts.
pub mod keep;

// Front ends, and the fleet's etcd connection.
pub mod admin;
pub mod dns;
pub mod feedfile;
pub mod fleet;

// Wiring.
pub mod service;

// Policies compared offline, on the tables `check` builds; policies imported from octoDNS.
pub mod diff;
pub mod import;
