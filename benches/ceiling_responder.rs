//! The load benchmark's ceiling: the least a UDP DNS responder can do. Each query is received
//! with one `recv_from`, cut after its question, flagged as a response with one answer, given
//! one fixed A record (owner: a pointer to the question) and sent back with one `send_to`.
//! No parsing beyond finding the end of the question, no EDNS, no lookups: what the kernel
//! and the load generator cost on this machine.
//!
//! Usage: ceiling_responder ADDR THREADS — prints `listening on ADDR` when ready.
// Benchmarks read the clock: timing is what they are for.
#![allow(clippy::disallowed_methods)]

use std::net::UdpSocket;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let socket = UdpSocket::bind(&addr)?;
    println!("listening on {}", socket.local_addr()?);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let socket = socket.try_clone().expect("clone the socket");
            std::thread::spawn(move || serve(&socket))
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn serve(socket: &UdpSocket) {
    const ANSWER: [u8; 16] = [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 51, 100, 1];
    let mut packet = [0u8; 4096];
    loop {
        let Ok((len, src)) = socket.recv_from(&mut packet) else {
            continue;
        };
        if len < 12 {
            continue;
        }
        // End of the question: the name's labels, then type and class.
        let mut at = 12;
        while at < len && packet[at] != 0 {
            at += 1 + packet[at] as usize;
        }
        let end = at + 5;
        if end > len || end + ANSWER.len() > packet.len() {
            continue;
        }
        packet[2] |= 0x84; // QR, AA
        packet[3] = 0;
        packet[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
        packet[end..end + ANSWER.len()].copy_from_slice(&ANSWER);
        let _ = socket.send_to(&packet[..end + ANSWER.len()], src);
    }
}
