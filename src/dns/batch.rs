//! The UDP fast path (Linux): one `SO_REUSEPORT` socket per core, each served by its own
//! thread that receives and sends in batches (`recvmmsg`/`sendmmsg`), so a burst of queries
//! costs two system calls instead of two per query, and no task is scheduled per packet.
//!
//! Each thread owns fixed buffers allocated once; a query is answered from one snapshot load
//! into a reused response buffer, so the loop allocates nothing.
//! `unsafe` is allowed here for the two batch calls and the socket-address conversions they need, each with the
//! invariant it relies on written beside it.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::packet::{PacketHandler, Serving};
use crate::answer::SnapshotReader;
use crate::wire::Transport;

/// Datagrams received (and answered) per system call at most.
const BATCH: usize = 32;
/// Receive buffer per datagram. Larger queries arrive truncated (`MSG_TRUNC`) and are
/// dropped: no legitimate query over UDP is that large.
const DATAGRAM: usize = 4096;

/// Fixed buffers for one batch: datagrams in, responses out, and the kernel's descriptors
/// for both. Boxed once per thread and never moved afterwards, so the pointers the
/// descriptors hold stay valid.
struct Buffers {
    datagrams: Vec<[u8; DATAGRAM]>,
    sources: Vec<libc::sockaddr_storage>,
    recv_iov: Vec<libc::iovec>,
    recv_hdrs: Vec<libc::mmsghdr>,
    responses: Vec<Vec<u8>>,
    destinations: Vec<libc::sockaddr_storage>,
    send_iov: Vec<libc::iovec>,
    send_hdrs: Vec<libc::mmsghdr>,
}

impl Buffers {
    fn new() -> Box<Buffers> {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid (empty) value.
        let zero_addr: libc::sockaddr_storage = unsafe { zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { zeroed() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Box::new(Buffers {
            datagrams: vec![[0u8; DATAGRAM]; BATCH],
            sources: vec![zero_addr; BATCH],
            recv_iov: vec![zero_iov; BATCH],
            recv_hdrs: vec![zero_hdr; BATCH],
            responses: (0..BATCH).map(|_| Vec::with_capacity(4096)).collect(),
            destinations: vec![zero_addr; BATCH],
            send_iov: vec![zero_iov; BATCH],
            send_hdrs: vec![zero_hdr; BATCH],
        })
    }

    /// Points every receive descriptor at its buffer and address slot.
    fn arm_receive(&mut self) {
        for i in 0..BATCH {
            self.recv_iov[i] = libc::iovec {
                iov_base: self.datagrams[i].as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            let hdr = &mut self.recv_hdrs[i].msg_hdr;
            hdr.msg_name = (&raw mut self.sources[i]).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &raw mut self.recv_iov[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.recv_hdrs[i].msg_len = 0;
        }
    }
}

/// Serves one socket until `stop` is set. Runs on a thread of its own.
pub(super) fn serve_socket(
    socket: UdpSocket,
    reader: SnapshotReader,
    serving: Arc<Serving>,
    stop: Arc<AtomicBool>,
) {
    let fd = socket.as_raw_fd();
    let mut buffers = Buffers::new();
    let mut handler = PacketHandler::new(serving, Transport::Udp);
    while !stop.load(Ordering::Relaxed) {
        buffers.arm_receive();
        // SAFETY: `recv_hdrs` holds BATCH descriptors whose buffers and address slots live in
        // `buffers`, which outlives the call and is not otherwise touched during it.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                buffers.recv_hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {}
                // ICMP-induced errors (port unreachable from an earlier send) land here; a
                // short pause keeps a persistent error from spinning the thread.
                _ => {
                    tracing::debug!(%error, "UDP receive error");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            continue;
        }
        let snapshot = reader.load();
        let mut replies = 0;
        for i in 0..received as usize {
            let hdr = &buffers.recv_hdrs[i];
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue;
            }
            let Some(src) = to_socket_addr(&buffers.sources[i]) else {
                continue;
            };
            let len = (hdr.msg_len as usize).min(DATAGRAM);
            let out = &mut buffers.responses[replies];
            if !handler.answer(&snapshot, &buffers.datagrams[i][..len], src, out) {
                continue;
            }
            buffers.destinations[replies] = buffers.sources[i];
            replies += 1;
        }
        drop(snapshot);
        send_all(fd, &mut buffers, replies);
    }
}

/// Sends the first `count` responses, resuming after a partial send and skipping a datagram
/// the kernel refuses (it reports the error for the first unsent one).
fn send_all(fd: libc::c_int, buffers: &mut Buffers, count: usize) {
    for i in 0..count {
        let response = &mut buffers.responses[i];
        buffers.send_iov[i] = libc::iovec {
            iov_base: response.as_mut_ptr().cast(),
            iov_len: response.len(),
        };
        let hdr = &mut buffers.send_hdrs[i].msg_hdr;
        hdr.msg_name = (&raw mut buffers.destinations[i]).cast();
        hdr.msg_namelen = sockaddr_len(&buffers.destinations[i]);
        hdr.msg_iov = &raw mut buffers.send_iov[i];
        hdr.msg_iovlen = 1;
        hdr.msg_control = std::ptr::null_mut();
        hdr.msg_controllen = 0;
        hdr.msg_flags = 0;
    }
    let mut sent = 0;
    while sent < count {
        // SAFETY: descriptors `sent..count` point at responses and addresses in `buffers`,
        // which outlive the call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                buffers.send_hdrs[sent..].as_mut_ptr(),
                (count - sent) as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::debug!(%error, "UDP send error");
            sent += 1; // drop the datagram the kernel refused; send the rest
        } else {
            sent += n as usize;
        }
    }
}

/// The length of a socket address as the kernel expects it.
fn sockaddr_len(addr: &libc::sockaddr_storage) -> libc::socklen_t {
    match addr.ss_family as libc::c_int {
        libc::AF_INET6 => size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        _ => size_of::<libc::sockaddr_in>() as libc::socklen_t,
    }
}

/// The source address of a received datagram.
fn to_socket_addr(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4: libc::sockaddr_in = unsafe { view(addr) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(v4.sin_addr.s_addr).into(),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6: libc::sockaddr_in6 = unsafe { view(addr) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                v6.sin6_addr.s6_addr.into(),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Reads a socket address of a concrete family out of the storage the kernel filled.
///
/// # Safety
/// `T` must be the `sockaddr_*` type the storage's family names (every one of them is
/// smaller than `sockaddr_storage` and no more strictly aligned).
unsafe fn view<T: Copy>(addr: &libc::sockaddr_storage) -> T {
    // SAFETY: per the contract, the storage's leading bytes are a valid, aligned T.
    unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast::<T>()) }
}
