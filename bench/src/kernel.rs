//! Kernel-socket baselines: a UDP sink and a UDP echo server, done the best way the kernel
//! allows, so that "sluice vs. the kernel" compares against a serious opponent.
//!
//! What "best" means here:
//! - **Batches:** one `recvmmsg(2)` receives up to `batch` datagrams; the echo server returns them
//!   with one `sendmmsg(2)` (see the private `sys` module). Buffers, iovecs and addresses are
//!   allocated once per run; nothing is allocated, logged or locked per packet.
//! - **Large socket buffers:** `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` to [`SOCKET_BUFFER`] (needs
//!   `CAP_NET_ADMIN`), falling back to `SO_RCVBUF`/`SO_SNDBUF`, which the kernel caps at
//!   `net.core.rmem_max`/`wmem_max`. The granted size is reported.
//! - **Pinned:** the thread that calls [`UdpSink::run`]/[`UdpEchoServer::run`] is pinned to
//!   `core` for the run (`sched_setaffinity`) and its previous affinity restored afterwards. Run
//!   each on a thread of its own.
//! - **Non-blocking with a short poll:** `recvmmsg(MSG_DONTWAIT)`; only when nothing is waiting
//!   does the loop sleep in `poll(2)` for at most [`POLL_TIMEOUT`], so under load it costs one
//!   system call per batch and it notices the stop flag and the deadline within milliseconds.
//!
//! This module must never send anywhere but back to a datagram's sender, and its loops are always
//! bounded by a duration.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::socket::{setsockopt, sockopt};
use nix::unistd::Pid;

use crate::sys::MmsgBatch;

/// Socket buffer size asked for (32 MiB): deep enough that a burst from a multi-Mpps generator
/// is queued rather than dropped while the thread is descheduled.
pub const SOCKET_BUFFER: usize = 32 << 20;

/// Longest sleep in `poll(2)` when nothing is waiting: bounds how late the stop flag and the
/// deadline are noticed.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(10);

/// Bytes per datagram buffer: the largest benchmark frame (1518 bytes) carries less UDP payload
/// than this; a longer datagram is truncated and counted.
pub const MAX_DATAGRAM: usize = 2048;

/// How to run the sink or the echo server.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Address to bind (port 0: any free port, see `local_addr`).
    pub bind: SocketAddr,
    /// CPU to pin the running thread to; `None` leaves the affinity alone.
    pub core: Option<usize>,
    /// Run at most this long (always bounded).
    pub duration: Duration,
    /// Datagrams per `recvmmsg`/`sendmmsg` (e.g. 64; at least 1).
    pub batch: usize,
}

/// The echo server takes the same settings as the sink.
pub type EchoServerConfig = SinkConfig;

/// What a sink counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// Datagrams received.
    pub packets: u64,
    /// UDP payload bytes received (not frame bytes; truncated datagrams count what was kept).
    pub bytes: u64,
    /// Datagrams longer than [`MAX_DATAGRAM`] (received truncated).
    pub truncated: u64,
    /// Wall time of the run, from the start of [`UdpSink::run`] to its end.
    pub elapsed: Duration,
    /// Time from the first batch received to the last (zero with fewer than two batches): the
    /// interval to divide by for a rate, not polluted by idle time before and after the traffic.
    pub active: Duration,
    /// System calls made in the loop (`recvmmsg` + `poll`).
    pub syscalls: u64,
    /// Receive buffer the kernel granted (as `SO_RCVBUF` reads it: twice what was set).
    pub rcvbuf: usize,
}

/// What an echo server counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EchoServerReport {
    /// Datagrams received.
    pub packets: u64,
    /// Datagrams sent back.
    pub echoed: u64,
    /// Datagrams that could not be sent back (counted and dropped; see `send_back`'s policy).
    pub send_failed: u64,
    /// UDP payload bytes received.
    pub bytes: u64,
    /// Datagrams longer than [`MAX_DATAGRAM`] (echoed truncated).
    pub truncated: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Time from the first batch received to the last.
    pub active: Duration,
    /// System calls made in the loop (`recvmmsg` + `sendmmsg` + `poll`).
    pub syscalls: u64,
    /// Receive buffer the kernel granted.
    pub rcvbuf: usize,
    /// Send buffer the kernel granted.
    pub sndbuf: usize,
}

/// A bound UDP sink; [`UdpSink::run`] counts and discards what arrives.
#[derive(Debug)]
pub struct UdpSink {
    sock: UdpSocket,
    cfg: SinkConfig,
    rcvbuf: usize,
}

impl UdpSink {
    /// Binds the socket and sizes its receive buffer. Binding first lets a caller learn the port
    /// ([`UdpSink::local_addr`]) and start sending only once the sink is there.
    pub fn bind(cfg: SinkConfig) -> io::Result<UdpSink> {
        let (sock, rcvbuf) = bind(cfg.bind)?;
        Ok(UdpSink { sock, cfg, rcvbuf })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Receives and discards datagrams until `cfg.duration` has passed or `stop` is set.
    ///
    /// Pins the calling thread to `cfg.core` for the run. Returns an error only if pinning
    /// fails or the socket reports an error other than "nothing waiting"/`EINTR`.
    pub fn run(self, stop: &AtomicBool) -> io::Result<SinkReport> {
        let _pin = Pin::to(self.cfg.core)?;
        let fd = self.sock.as_fd();
        let mut batch = MmsgBatch::new(self.cfg.batch, MAX_DATAGRAM);
        let mut r = SinkReport {
            rcvbuf: self.rcvbuf,
            ..SinkReport::default()
        };
        let start = Instant::now();
        let deadline = start + self.cfg.duration;
        let mut first: Option<Instant> = None;
        let mut last = start;
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            r.syscalls += 1;
            let n = batch.recv(fd)?;
            let now = Instant::now();
            if now >= deadline {
                // Datagrams of this last call still count: they were received.
                count_sink(&batch, n, &mut r);
                break;
            }
            if n == 0 {
                r.syscalls += 1;
                wait_readable(&self.sock, deadline - now)?;
                continue;
            }
            first.get_or_insert(now);
            last = now;
            count_sink(&batch, n, &mut r);
        }
        r.elapsed = start.elapsed();
        r.active = first.map_or(Duration::ZERO, |f| last - f);
        Ok(r)
    }
}

fn count_sink(batch: &MmsgBatch, n: usize, r: &mut SinkReport) {
    r.packets += n as u64;
    let (bytes, truncated) = tally(batch, n);
    r.bytes += bytes;
    r.truncated += truncated;
}

/// Payload bytes and truncated datagrams among the first `n` of `batch`.
fn tally(batch: &MmsgBatch, n: usize) -> (u64, u64) {
    (0..n).fold((0, 0), |(bytes, truncated), i| {
        (
            bytes + batch.len(i) as u64,
            truncated + u64::from(batch.truncated(i)),
        )
    })
}

/// [`UdpSink::bind`] + [`UdpSink::run`].
pub fn udp_sink(cfg: SinkConfig, stop: &AtomicBool) -> io::Result<SinkReport> {
    UdpSink::bind(cfg)?.run(stop)
}

/// A bound UDP echo server; [`UdpEchoServer::run`] sends every datagram back to its sender.
#[derive(Debug)]
pub struct UdpEchoServer {
    sock: UdpSocket,
    cfg: EchoServerConfig,
    rcvbuf: usize,
    sndbuf: usize,
}

impl UdpEchoServer {
    /// Binds the socket and sizes its receive and send buffers.
    pub fn bind(cfg: EchoServerConfig) -> io::Result<UdpEchoServer> {
        let (sock, rcvbuf) = bind(cfg.bind)?;
        let sndbuf = grow_sndbuf(&sock)?;
        Ok(UdpEchoServer {
            sock,
            cfg,
            rcvbuf,
            sndbuf,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Echoes datagrams until `cfg.duration` has passed or `stop` is set: each `recvmmsg` batch
    /// goes back out with `sendmmsg`, from the same buffers to the addresses it came from.
    ///
    /// Pins the calling thread to `cfg.core` for the run. Errors as [`UdpSink::run`]; datagrams
    /// that can't be sent back are counted in `send_failed`, not returned as errors.
    pub fn run(self, stop: &AtomicBool) -> io::Result<EchoServerReport> {
        let _pin = Pin::to(self.cfg.core)?;
        let fd = self.sock.as_fd();
        let mut batch = MmsgBatch::new(self.cfg.batch, MAX_DATAGRAM);
        let mut r = EchoServerReport {
            rcvbuf: self.rcvbuf,
            sndbuf: self.sndbuf,
            ..EchoServerReport::default()
        };
        let start = Instant::now();
        let deadline = start + self.cfg.duration;
        let mut first: Option<Instant> = None;
        let mut last = start;
        while !stop.load(Ordering::Relaxed) {
            r.syscalls += 1;
            let n = batch.recv(fd)?;
            let now = Instant::now();
            if n == 0 {
                if now >= deadline {
                    break;
                }
                r.syscalls += 1;
                wait_readable(&self.sock, deadline - now)?;
                continue;
            }
            first.get_or_insert(now);
            last = now;
            r.packets += n as u64;
            let (bytes, truncated) = tally(&batch, n);
            r.bytes += bytes;
            r.truncated += truncated;
            let (sent, failed, calls) = batch.send_back(fd, n);
            r.echoed += sent as u64;
            r.send_failed += failed as u64;
            r.syscalls += calls;
            if now >= deadline {
                break;
            }
        }
        r.elapsed = start.elapsed();
        r.active = first.map_or(Duration::ZERO, |f| last - f);
        Ok(r)
    }
}

/// [`UdpEchoServer::bind`] + [`UdpEchoServer::run`].
pub fn udp_echo(cfg: EchoServerConfig, stop: &AtomicBool) -> io::Result<EchoServerReport> {
    UdpEchoServer::bind(cfg)?.run(stop)
}

/// Binds a UDP socket to `addr` and grows its receive buffer (both the sink and the echo server
/// receive); returns the socket and the receive buffer granted.
fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, usize)> {
    let sock = UdpSocket::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("binding UDP socket to {addr}: {e}")))?;
    let rcvbuf = grow_rcvbuf(&sock)?;
    Ok((sock, rcvbuf))
}

/// `SO_RCVBUFFORCE` to [`SOCKET_BUFFER`], or `SO_RCVBUF` without `CAP_NET_ADMIN`; returns the
/// size granted.
fn grow_rcvbuf(sock: &UdpSocket) -> io::Result<usize> {
    if setsockopt(sock, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        setsockopt(sock, sockopt::RcvBuf, &SOCKET_BUFFER).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("setting SO_RCVBUF: {e}"))
        })?;
    }
    Ok(nix::sys::socket::getsockopt(sock, sockopt::RcvBuf)?)
}

/// `SO_SNDBUFFORCE` to [`SOCKET_BUFFER`], or `SO_SNDBUF`; returns the size granted.
fn grow_sndbuf(sock: &UdpSocket) -> io::Result<usize> {
    if setsockopt(sock, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        setsockopt(sock, sockopt::SndBuf, &SOCKET_BUFFER).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("setting SO_SNDBUF: {e}"))
        })?;
    }
    Ok(nix::sys::socket::getsockopt(sock, sockopt::SndBuf)?)
}

/// Sleeps in `poll(2)` until `sock` is readable, at most `min(left, POLL_TIMEOUT)`.
fn wait_readable(sock: &UdpSocket, left: Duration) -> io::Result<()> {
    let wait = left.min(POLL_TIMEOUT);
    // Round up, so a sub-millisecond remainder doesn't turn into a busy loop of poll(0).
    let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("poll on UDP socket: {e}"),
        )),
    }
}

/// Pins the calling thread to one CPU while alive; restores the previous affinity on drop.
struct Pin {
    previous: Option<CpuSet>,
}

impl Pin {
    fn to(core: Option<usize>) -> io::Result<Pin> {
        let Some(core) = core else {
            return Ok(Pin { previous: None });
        };
        let this = Pid::from_raw(0);
        let previous = sched_getaffinity(this)?;
        let mut set = CpuSet::new();
        set.set(core).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {core} is out of range: {e}"),
            )
        })?;
        sched_setaffinity(this, &set).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("pinning the thread to CPU {core}: {e}"),
            )
        })?;
        Ok(Pin {
            previous: Some(previous),
        })
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Some(set) = &self.previous {
            // Best effort: the old mask was valid a moment ago.
            let _ = sched_setaffinity(Pid::from_raw(0), set);
        }
    }
}

#[cfg(test)]
mod test {
    use std::sync::atomic::AtomicBool;
    use std::thread;

    use super::*;

    const N: u64 = 2000;

    fn cfg(core: Option<usize>) -> SinkConfig {
        SinkConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            core,
            duration: Duration::from_secs(20),
            batch: 64,
        }
    }

    /// Sends `N` datagrams (sizes 1..=64, varying), pausing briefly every 100 so that an
    /// unprivileged run, whose receive buffer `rmem_max` caps at ~200 KiB, drops nothing.
    fn send_n(client: &UdpSocket, to: SocketAddr) -> u64 {
        let mut bytes = 0;
        for seq in 0..N {
            let len = 1 + (seq % 64) as usize;
            let p = crate::echo::payload(seq, len);
            client.send_to(&p, to).unwrap();
            bytes += len as u64;
            if seq % 100 == 99 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        bytes
    }

    #[test]
    fn sink_receives_exactly_what_was_sent() {
        let sink = UdpSink::bind(cfg(Some(0))).unwrap();
        let to = sink.local_addr().unwrap();
        let stop = AtomicBool::new(false);
        let report = thread::scope(|s| {
            let h = s.spawn(|| sink.run(&stop));
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            let bytes = send_n(&client, to);
            // Loopback delivers synchronously; give the sink a moment to drain its queue.
            thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
            let r = h.join().unwrap().unwrap();
            (r, bytes)
        });
        let (r, bytes) = report;
        assert_eq!(r.packets, N, "{r:?}");
        assert_eq!(r.bytes, bytes, "{r:?}");
        assert_eq!(r.truncated, 0);
        assert!(r.syscalls >= N.div_ceil(64), "{r:?}");
        assert!(
            r.elapsed < Duration::from_secs(20),
            "stop flag ignored: {r:?}"
        );
        assert!(r.rcvbuf > 0);
    }

    #[test]
    fn sink_stops_at_its_deadline() {
        let mut c = cfg(None);
        c.duration = Duration::from_millis(100);
        let stop = AtomicBool::new(false);
        let r = udp_sink(c, &stop).unwrap();
        assert_eq!(r.packets, 0);
        assert!(r.elapsed >= Duration::from_millis(100), "{r:?}");
        assert!(r.elapsed < Duration::from_secs(2), "{r:?}");
    }

    #[test]
    fn echo_returns_every_datagram_byte_identical() {
        let server = UdpEchoServer::bind(cfg(Some(0))).unwrap();
        let to = server.local_addr().unwrap();
        let stop = AtomicBool::new(false);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (report, echoes) = thread::scope(|s| {
            let h = s.spawn(|| server.run(&stop));
            // A window of 32 in flight: enough to make the server see batches, small enough that
            // no socket buffer overflows even unprivileged.
            let mut echoes = Vec::with_capacity(N as usize);
            let mut buf = [0u8; MAX_DATAGRAM];
            let mut next = 0u64;
            while (echoes.len() as u64) < N {
                while next < N && next - echoes.len() as u64 <= 32 {
                    let len = 1 + (next % 200) as usize;
                    client
                        .send_to(&crate::echo::payload(next, len), to)
                        .unwrap();
                    next += 1;
                }
                let (len, from) = client.recv_from(&mut buf).expect("echo lost");
                assert_eq!(from, to);
                echoes.push(buf[..len].to_vec());
            }
            stop.store(true, Ordering::Relaxed);
            (h.join().unwrap().unwrap(), echoes)
        });
        // Loopback keeps order, so echo i is datagram i.
        for (seq, e) in echoes.iter().enumerate() {
            let want = crate::echo::payload(seq as u64, 1 + seq % 200);
            assert_eq!(e, &want, "echo {seq} differs");
        }
        assert_eq!(report.packets, N, "{report:?}");
        assert_eq!(report.echoed, N, "{report:?}");
        assert_eq!(report.send_failed, 0);
        assert!(report.sndbuf > 0 && report.rcvbuf > 0);
    }
}
