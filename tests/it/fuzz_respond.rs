//! Mutated and random packets through the response path: never a panic, never a reply to a
//! response, and every reply a well-formed message. Bounded: a fixed number of packets from a
//! fixed seed, so a failure reproduces.

use geosteer::random::XorShift;
use std::net::SocketAddr;

use crate::support::*;
use geosteer::dns::{ServeOptions, Transport, respond};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType::{A, AAAA, ANY, MX, TXT};

#[test]
fn mutated_queries_never_panic_and_replies_parse() {
    let snapshot = fixture_snapshot();
    let seeds: Vec<Vec<u8>> = vec![
        q("ingest.test.example.", A).ecs("127.1.0.0", 24).bytes(),
        q("ingest.test.example.", AAAA)
            .ecs("2001:db8:1::", 56)
            .bytes(),
        q("www.test.example.", A).bytes(),
        q("big.test.example.", TXT).no_edns().bytes(),
        q("x.sub.test.example.", ANY).bytes(),
        q("test.example.", MX).payload(100).bytes(),
    ];
    let src: SocketAddr = "127.1.0.9:5300".parse().expect("address");
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let options = ServeOptions::default();
    let (mut replies, mut silent) = (0u32, 0u32);
    for i in 0..60_000 {
        let mut packet = seeds[i % seeds.len()].clone();
        match rng.below(4) as usize {
            0 => {
                for _ in 0..=rng.below(4) as usize {
                    let at = rng.below(packet.len() as u64) as usize;
                    packet[at] = rng.next_u64() as u8;
                }
            }
            1 => packet.truncate(rng.below(packet.len() as u64 + 1) as usize),
            2 => {
                let at = rng.below(packet.len() as u64) as usize;
                packet.insert(at, rng.next_u64() as u8);
            }
            _ => {
                packet = (0..rng.below(80) as usize)
                    .map(|_| rng.next_u64() as u8)
                    .collect()
            }
        }
        let transport = if i % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        match respond(&snapshot, &packet, src, transport, &options, &mut out) {
            None => {
                silent += 1;
                assert!(
                    packet.len() < 12 || packet[2] & 0x80 != 0,
                    "silence only for runts and responses"
                );
            }
            Some(_) => {
                replies += 1;
                assert!(packet.len() >= 12 && packet[2] & 0x80 == 0);
                assert_eq!(out[0..2], packet[0..2], "reply id");
                assert!(out[2] & 0x80 != 0, "QR set");
                if transport == Transport::Udp {
                    assert!(out.len() <= 1232);
                }
                Message::from_vec(&out)
                    .unwrap_or_else(|e| panic!("reply to {packet:02x?} does not parse: {e}"));
            }
        }
    }
    assert!(
        replies > 10_000 && silent > 1_000,
        "both paths exercised: {replies} replies, {silent} silent"
    );
}
