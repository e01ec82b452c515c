//! Any datagram or TCP message through the responder (the in-place fast path, falling back
//! to hickory's parser): never a panic, and a reply is always a well-formed DNS message no
//! larger than the transport allows.
#![no_main]

use std::net::SocketAddr;

use geosteer::dns::{ServeOptions, Transport, respond};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let snapshot = common::snapshot();
    let options = ServeOptions::default();
    let src: SocketAddr = ([127, 1, 0, 5], 5353).into();
    let mut out = Vec::with_capacity(4096);
    for transport in [Transport::Udp, Transport::Tcp] {
        if respond(snapshot, data, src, transport, &options, &mut out).is_some() {
            assert!(out.len() >= 12, "a reply has a header");
            assert_eq!(&out[..2], &data[..2], "the ID is echoed");
            assert!(out[2] & 0x80 != 0, "QR is set");
            if transport == Transport::Udp {
                assert!(out.len() <= usize::from(options.max_udp_payload).max(512));
            }
        }
    }
});
