//! Any message through the general path (hickory's parser only), which must never panic and
//! agrees with the fast path wherever the fast path parses at all.
#![no_main]

use std::net::SocketAddr;

use geosteer::dns::{ServeOptions, Transport, respond, respond_general};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let snapshot = common::snapshot();
    let options = ServeOptions::default();
    let src: SocketAddr = ([127, 2, 0, 5], 5353).into();
    let (mut general, mut fast) = (Vec::new(), Vec::new());
    let a = respond_general(snapshot, data, src, Transport::Udp, &options, &mut general);
    let b = respond(snapshot, data, src, Transport::Udp, &options, &mut fast);
    assert_eq!(a.is_some(), b.is_some(), "both paths reply or stay silent");
    if a.is_some() && geosteer::dns::query::parse_plain(data).is_some() {
        assert_eq!(
            general, fast,
            "the fast path gives the general path's bytes"
        );
    }
});
