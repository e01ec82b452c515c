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
    let options = ServeOptions::default();
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
    let sources: Vec<SocketAddr> = ["127.1.0.9:5300", "127.2.0.9:5300", "[2001:db8:1::9]:53"]
        .iter()
        .map(|s| s.parse().expect("address"))
        .collect();
    let mut out = Vec::with_capacity(4096);
    let mut answered = 0usize;
    let mut run = |out: &mut Vec<u8>| {
        for query in &queries {
            for &src in &sources {
                // Over TCP too: the same responder, framed by the connection's buffers.
                for transport in [Transport::Udp, Transport::Tcp] {
                    if respond(&snapshot, query, src, transport, &options, out).is_some() {
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
