//! The steered query path allocates nothing, over UDP and TCP: a counting global allocator,
//! armed only on this test's thread, sees zero allocations across thousands of steered
//! queries (with and without ECS, IPv4 and IPv6 clients, spread names), static and negative
//! answers, once the response buffer has grown to its working size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::*;
use geosteer::dns::{ServeOptions, Transport, respond};
use hickory_proto::rr::RecordType::{A, AAAA, MX};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steered_udp_queries_allocate_nothing() {
    let snapshot = fixture_snapshot();
    assert_no_allocations(&snapshot, &queries(false));
}

/// A signed zone's answers with DO (signatures of steered and static sets, NSEC proofs
/// of NXDOMAIN, NODATA and wildcards) allocate nothing either.
#[test]
fn signed_answers_with_do_allocate_nothing() {
    let zone = crate::signed::signed_zone("zero-alloc-signed", "{keys: keys}");
    let (zones, mut snapshot) = geosteer::service::load(&geosteer::loader::Sources {
        zones: zone.dir.clone(),
        geo: vec![repo("tests/fixtures/geo-city.mmdb")],
        asn: None,
    })
    .expect("the signed zone loads");
    let made = geosteer::answer::sign(&mut snapshot, &zones, 1_800_000_000);
    assert!(made > 50, "{made} signatures");
    let mut queries = queries(true);
    for (name, rtype) in [
        ("x.y.wild.test.example.", A),
        ("x.wild.test.example.", MX),
        ("deep.test.example.", A),
        ("mail.test.example.", AAAA),
    ] {
        queries.push(set_do(q(name, rtype).bytes()));
    }
    // The DO answers are signed: an NXDOMAIN carries SOA, NSECs and their RRSIGs.
    let mut out = Vec::new();
    let nx = set_do(q("nope.test.example.", A).bytes());
    let src: SocketAddr = "127.1.0.9:5300".parse().expect("address");
    respond(
        &snapshot,
        &nx,
        src,
        Transport::Tcp,
        &ServeOptions::default(),
        &mut out,
    );
    let authority = u16::from_be_bytes([out[8], out[9]]);
    assert!(authority >= 4, "{authority} authority records");
    assert_no_allocations(&snapshot, &queries);
}

/// Sets the DO bit of a query's OPT record (root owner, type 41, class, then the TTL
/// field whose third byte holds DO); a query without one is left as it is.
fn set_do(mut query: Vec<u8>) -> Vec<u8> {
    let opt = (12..query.len().saturating_sub(10))
        .rev()
        .find(|&i| query[i] == 0 && query[i + 1..i + 3] == [0, 41]);
    if let Some(opt) = opt {
        query[opt + 7] |= 0x80;
    }
    query
}

/// The queries: steered (ECS, IPv4 and IPv6, spread), static and negative; with the DO
/// bit when `dnssec_ok`.
fn queries(dnssec_ok: bool) -> Vec<Vec<u8>> {
    let mut queries = Vec::new();
    for i in 0..64u8 {
        queries.push(
            q("ingest.test.example.", A)
                .ecs(&format!("127.{}.{i}.0", 1 + i % 4), 24)
                .bytes(),
        );
        queries.push(
            q("InGeSt.test.example.", AAAA)
                .ecs(&format!("2001:db8:{i:x}::"), 48)
                .bytes(),
        );
        // A spread name: the draw by network allocates nothing either.
        queries.push(
            q("spread.test.example.", A)
                .ecs(&format!("127.{}.{i}.0", 1 + i % 4), 24)
                .bytes(),
        );
    }
    queries.push(q("ingest.test.example.", A).bytes());
    queries.push(q("ingest.test.example.", A).no_edns().bytes());
    queries.push(q("www.test.example.", A).bytes());
    queries.push(q("test.example.", MX).bytes());
    queries.push(q("nope.test.example.", A).ecs("127.1.0.0", 24).bytes());
    if dnssec_ok {
        queries = queries.into_iter().map(set_do).collect();
    }
    queries
}

fn assert_no_allocations(snapshot: &geosteer::answer::Snapshot, queries: &[Vec<u8>]) {
    let options = ServeOptions::default();
    let sources: Vec<SocketAddr> = ["127.1.0.9:5300", "127.2.0.9:5300", "[2001:db8:1::9]:53"]
        .iter()
        .map(|s| s.parse().expect("address"))
        .collect();
    let mut out = Vec::with_capacity(4096);
    let mut answered = 0usize;
    let mut run = |out: &mut Vec<u8>| {
        for query in queries {
            for &src in &sources {
                // Over TCP too: the same responder, framed by the connection's buffers.
                for transport in [Transport::Udp, Transport::Tcp] {
                    if respond(snapshot, query, src, transport, &options, out).is_some() {
                        answered += 1;
                    }
                }
            }
        }
    };
    run(&mut out); // warm: the response buffer reaches its working size
    ARMED.with(|a| a.set(true));
    for _ in 0..50 {
        run(&mut out);
    }
    ARMED.with(|a| a.set(false));
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(answered > 20_000, "{answered}");
    assert_eq!(allocations, 0, "allocations on the query path");
}
