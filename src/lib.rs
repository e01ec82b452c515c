//! geosteer: a geo-aware authoritative DNS server that answers each client with its nearest
//! healthy ingest nodes.
//!
//! Data flow: policy files (`policy`) are parsed and validated into typed zones; a GeoIP
//! database (`geo`) is indexed by place; `answer::build` turns both into an immutable
//! `Snapshot` of precomputed answer tables; `answer::Publisher` is the single writer that
//! stores snapshots in an `ArcSwap`; the DNS front end (`dns`) loads the current snapshot once
//! per query, locates the client (ECS, else the source address) and selects a precomputed
//! answer. Nothing on the query path locks, parses policy or ranks nodes.
//!
//! Modules:
//! - `admin`: the HTTP admin interface (node state, overrides, metrics).
//! - `metrics`: metric names.
//! - `config`: how the server is started (listen addresses, paths).
//! - `policy`: zone policy files → typed model, with located errors.
//! - `geo`: geo codes, coordinates, the country table, MaxMind database lookup.
//! - `health`: probes, check loops and flap damping; reports go to the publisher.
//! - `latency`: expected latency from measurements and distance, scores, hysteresis.
//! - `net`: IP prefixes shared by policy and answer tables.
//! - `answer`: snapshot types, the pure builder, the publisher.
//! - `scoring`: ranking candidate nodes for a place.
//! - `service`: start-up, shared by `serve` and `check`.
//! - `explain`: the steering decision for one client, step by step (CLI and admin).
//! - `feedfile`: the latency feed as a watched file.
//! - `dns`: the wire: request parsing, ECS, response encoding, UDP/TCP serving.
// Denied everywhere but where a system call needs it, which allows it locally: the UDP batch
// calls (src/dns/batch.rs), mapping database files (src/geo/mapped.rs), handing freed
// memory back after ranking (src/answer/rank.rs), and lowering the ranking thread's priority
// (src/parallel.rs).
#![deny(unsafe_code)]

pub mod admin;
pub mod answer;
pub mod config;
pub mod dns;
pub mod explain;
pub mod feedfile;
pub mod geo;
pub mod health;
pub mod latency;
pub mod metrics;
pub mod net;
pub mod parallel;
pub mod policy;
pub mod scoring;
pub mod service;
