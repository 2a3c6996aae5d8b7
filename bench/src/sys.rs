//! The raw `recvmmsg(2)`/`sendmmsg(2)` calls of the kernel-socket baselines ([`crate::kernel`])
//! and the paced generator ([`crate::pace`]), over a batch of buffers allocated once, and the
//! paced generator's AF_PACKET socket ([`packet_tx_socket`]).
//!
//! The only module of this crate that may use `unsafe`. It owns [`MmsgBatch`]: `n` datagram
//! buffers with their `iovec`s, source addresses and `mmsghdr`s, wired together at construction so
//! the hot loop only resets two lengths per slot and makes one system call per batch. It must
//! never allocate per call, and never hand out a pointer that outlives the batch.

#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Size of one `sockaddr_storage`, as the kernel wants it in `msg_namelen`.
const ADDR_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// `batch` datagram buffers of `buf_len` bytes each, plus everything `recvmmsg`/`sendmmsg` need
/// to fill or send them in one call.
///
/// The `mmsghdr`s point into the other boxed slices; boxes never move their heap memory, so the
/// pointers stay valid for as long as the `MmsgBatch` lives, wherever it is moved to. Raw
/// pointers make the type `!Send`: build it on the thread that uses it.
pub(crate) struct MmsgBatch {
    buf_len: usize,
    // `addrs` is only read through the pointers in `hdrs` (by the kernel), and `bufs` also
    // through `slot_mut`/`datagram`: both are here to keep that memory alive, never resized.
    bufs: Box<[u8]>,
    iovs: Box<[libc::iovec]>,
    #[allow(dead_code)]
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl MmsgBatch {
    /// Allocates a batch of `batch` (≥ 1) buffers of `buf_len` (≥ 1) bytes.
    pub(crate) fn new(batch: usize, buf_len: usize) -> MmsgBatch {
        let batch = batch.max(1);
        let buf_len = buf_len.max(1);
        let mut bufs = vec![0u8; batch * buf_len].into_boxed_slice();
        // One base pointer per slice, offset per slot (in bounds: i < batch), so every pointer
        // stored below derives from the same borrow.
        let bufs_base = bufs.as_mut_ptr();
        let mut iovs: Box<[libc::iovec]> = (0..batch)
            .map(|i| libc::iovec {
                iov_base: bufs_base.wrapping_add(i * buf_len).cast(),
                iov_len: buf_len,
            })
            .collect();
        let iovs_base = iovs.as_mut_ptr();
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let zero_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut addrs = vec![zero_addr; batch].into_boxed_slice();
        let addrs_base = addrs.as_mut_ptr();
        let hdrs: Box<[libc::mmsghdr]> = (0..batch)
            .map(|i| {
                // SAFETY: msghdr is plain old data (pointers and integers); all-zero is valid
                // (null name/control, no iovecs), and the fields that matter are set below.
                let mut msg_hdr: libc::msghdr = unsafe { mem::zeroed() };
                msg_hdr.msg_name = addrs_base.wrapping_add(i).cast();
                msg_hdr.msg_namelen = ADDR_LEN;
                msg_hdr.msg_iov = iovs_base.wrapping_add(i);
                msg_hdr.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr,
                    msg_len: 0,
                }
            })
            .collect();
        MmsgBatch {
            buf_len,
            bufs,
            iovs,
            addrs,
            hdrs,
        }
    }

    /// Receives up to [`capacity`](Self::capacity) datagrams without blocking (`MSG_DONTWAIT`):
    /// one `recvmmsg` call. Returns how many arrived, 0 if none was waiting.
    ///
    /// Error policy: `EAGAIN` (nothing waiting) and `EINTR` return `Ok(0)`; anything else is
    /// returned.
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        // The previous round may have shortened the iovecs for sending and the kernel rewrote the
        // address lengths: restore both for every slot.
        for (iov, hdr) in self.iovs.iter_mut().zip(self.hdrs.iter_mut()) {
            iov.iov_len = self.buf_len;
            hdr.msg_hdr.msg_namelen = ADDR_LEN;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let vlen = self.hdrs.len() as libc::c_uint;
        // SAFETY: `hdrs` holds `vlen` initialised mmsghdrs whose name and iovec pointers refer to
        // `addrs` and `iovs`, whose iovecs refer to disjoint `buf_len`-byte ranges of `bufs`; all
        // are owned by `self`, borrowed mutably here, and outlive the call. A null timeout is
        // allowed (MSG_DONTWAIT makes the call non-blocking anyway).
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Length of the datagram received in slot `i` (by the last [`recv`](Self::recv)), capped at
    /// the buffer size.
    pub(crate) fn len(&self, i: usize) -> usize {
        (self.hdrs[i].msg_len as usize).min(self.buf_len)
    }

    /// True if the datagram in slot `i` was longer than the buffer (`MSG_TRUNC`).
    pub(crate) fn truncated(&self, i: usize) -> bool {
        self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    /// The datagram received in slot `i`.
    #[cfg(test)]
    pub(crate) fn datagram(&self, i: usize) -> &[u8] {
        let start = i * self.buf_len;
        &self.bufs[start..start + self.len(i)]
    }

    /// Slot `i`'s whole buffer, to fill before [`send_connected`](Self::send_connected).
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * self.buf_len;
        &mut self.bufs[start..start + self.buf_len]
    }

    /// Sends the first `n` slots, `len` bytes each (capped at the buffer size), in one
    /// `sendmmsg` call on a socket that knows its destination (a connected UDP socket, a bound
    /// AF_PACKET socket): no address per datagram.
    ///
    /// Returns how many were sent (the kernel stops at the first datagram it cannot send and
    /// reports that error only if it is the first). Error policy: every error is returned; the
    /// caller decides which ones are only counted.
    pub(crate) fn send_connected(
        &mut self,
        fd: BorrowedFd<'_>,
        n: usize,
        len: usize,
    ) -> io::Result<usize> {
        let n = n.min(self.hdrs.len());
        let len = len.min(self.buf_len);
        for i in 0..n {
            self.iovs[i].iov_len = len;
            self.hdrs[i].msg_hdr.msg_namelen = 0;
            self.hdrs[i].msg_hdr.msg_flags = 0;
        }
        // SAFETY: the first `n` of `hdrs` are initialised and point into `iovs` and `bufs` (owned
        // by `self`, alive for the call); each iovec's length is at most `buf_len`, and a zero
        // `msg_namelen` makes the kernel ignore `msg_name`.
        let r =
            unsafe { libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// Sends the first `n` received datagrams back to the addresses they came from, each with the
    /// length it arrived with, in as few `sendmmsg` calls as the kernel allows (blocking while the
    /// socket's send buffer is full).
    ///
    /// Returns `(sent, failed, calls)`. Error policy: `sendmmsg` reports an error only for the
    /// first datagram of a call (the ones before it were sent); that datagram is counted in
    /// `failed` and skipped — an echo server drops what it can't send (e.g. `ENOBUFS`,
    /// `EMSGSIZE`) rather than stop. `EINTR` and `EAGAIN` retry. Nothing is returned as an error:
    /// a socket fd that is not a socket would fail every datagram, and shows in `failed`.
    pub(crate) fn send_back(&mut self, fd: BorrowedFd<'_>, n: usize) -> (usize, usize, u64) {
        let n = n.min(self.hdrs.len());
        for i in 0..n {
            self.iovs[i].iov_len = self.len(i);
            self.hdrs[i].msg_hdr.msg_flags = 0;
        }
        let (mut done, mut sent, mut failed, mut calls) = (0usize, 0usize, 0usize, 0u64);
        let mut retries = 0u32;
        while done < n {
            let rest = &mut self.hdrs[done..n];
            calls += 1;
            // SAFETY: `rest` is a subslice of `hdrs` (initialised, pointing into `addrs`, `iovs`
            // and `bufs`, all owned by `self` and alive for the call); each iovec's length is at
            // most `buf_len`, and each msg_namelen is what recvmmsg wrote for that slot.
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    0,
                )
            };
            if r >= 0 {
                done += r as usize;
                sent += r as usize;
                retries = 0;
                continue;
            }
            let e = io::Error::last_os_error();
            // Bounded: a socket that keeps saying EAGAIN/EINTR a thousand times in a row is
            // treated like any other failure for this datagram.
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) && retries < 1000
            {
                retries += 1;
                continue;
            }
            retries = 0;
            failed += 1;
            done += 1;
        }
        (sent, failed, calls)
    }
}

/// An AF_PACKET raw socket bound to interface `ifindex` that sends whole Ethernet frames
/// straight to the driver (`PACKET_QDISC_BYPASS`: no qdisc, no IP stack) and receives nothing
/// (protocol 0).
pub(crate) fn packet_tx_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor this function just opened and owns nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int and the length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&raw const one).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid and the fields that matter are
    // set below.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = 0;
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `sll` is a live sockaddr_ll and the length passed is its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

#[cfg(test)]
mod test {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn receives_and_sends_back_a_batch() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let to = server.local_addr().unwrap();
        for i in 0..5u8 {
            client.send_to(&vec![i; 10 + i as usize], to).unwrap();
        }
        let mut batch = MmsgBatch::new(8, 64);
        let mut got = 0;
        let end = Instant::now() + Duration::from_secs(2);
        while got < 5 && Instant::now() < end {
            got += batch.recv(server.as_fd()).unwrap();
            if got < 5 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Loopback delivers all five before the first recv in practice; if it had split them
        // over two calls, slot numbers would restart, so insist on one batch.
        assert_eq!(got, 5);
        for i in 0..5 {
            assert_eq!(batch.datagram(i), &vec![i as u8; 10 + i][..]);
            assert!(!batch.truncated(i));
        }
        let (sent, failed, _) = batch.send_back(server.as_fd(), 5);
        assert_eq!((sent, failed), (5, 0));
        let mut buf = [0u8; 64];
        for i in 0..5u8 {
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, to);
            assert_eq!(&buf[..len], &vec![i; 10 + i as usize][..]);
        }
    }

    #[test]
    fn sends_slots_on_a_connected_socket() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let mut batch = MmsgBatch::new(4, 8);
        for i in 0..4u8 {
            batch.slot_mut(i as usize).fill(i);
        }
        assert_eq!(batch.send_connected(client.as_fd(), 3, 5).unwrap(), 3);
        let mut buf = [0u8; 64];
        for i in 0..3u8 {
            let (len, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(from, client.local_addr().unwrap());
            assert_eq!(&buf[..len], &[i; 5], "slot {i}, cut to 5 bytes");
        }
    }

    #[test]
    fn flags_truncated_datagrams() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(&[7u8; 100], server.local_addr().unwrap())
            .unwrap();
        let mut batch = MmsgBatch::new(2, 16);
        let end = Instant::now() + Duration::from_secs(2);
        let mut n = 0;
        while n == 0 && Instant::now() < end {
            n = batch.recv(server.as_fd()).unwrap();
        }
        assert_eq!(n, 1);
        assert!(batch.truncated(0));
        assert_eq!(batch.len(0), 16);
    }
}
