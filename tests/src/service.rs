//! [`BackendService`]: the named TCP and UDP servers a load-balancer test runs on each backend,
//! so a client can tell from the answer which backend a flow reached.
//!
//! This module owns the service protocol (a line or datagram in, `"<name> <it>"` back) and the
//! serving thread; it never binds anything but the wildcard addresses of its own namespace.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, ControlMessage, ControlMessageOwned, MsgFlags, SockType, SockaddrStorage, sockopt,
};

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::sock;

/// How long the serving thread sleeps in `poll` before it looks at its stop flag: the bound on
/// how long [`BackendService::stop`] waits.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A connection that sends this much without a newline is closed: the service answers lines,
/// and a runaway peer must not grow the buffer without bound.
const MAX_LINE: usize = 64 * 1024;
/// At most this many connections accepted, or datagrams answered, per socket per poll round,
/// so one busy socket can't starve the others (or the stop flag).
const PER_ROUND: usize = 256;
/// Listen backlog: a test opens a few hundred connections at once.
const BACKLOG: i32 = 4096;

/// A TCP and a UDP server on one port of a backend namespace, both families, bound to the
/// wildcard addresses (so the backend answers on its own address and on every VIP configured
/// on its `lo`), answering with the backend's name:
///
/// * TCP: every line `L` received (up to `\n`, a trailing `\r` dropped) is answered with
///   `"<name> L\n"`; the connection stays open for further lines until the client closes it.
/// * UDP: every datagram `P` is answered with the datagram `"<name> P"`, **from the address
///   `P` was sent to** (the VIP for a load-balanced flow, as direct server return needs; a
///   wildcard socket would otherwise answer from the backend's own address, and a client's
///   connected socket would drop that answer). The destination comes from `IP_PKTINFO` /
///   `IPV6_RECVPKTINFO`.
///
/// The four sockets (TCP and UDP, IPv4 and IPv6-only) belong to the backend's namespace and
/// are served by one thread started inside it. [`BackendService::stop`] (or dropping it) closes
/// them all, established connections included: from then on the kernel answers a TCP connect
/// with RST and a datagram with ICMP port unreachable, which is what a load balancer's health
/// checker sees of a stopped service. Start a new one to bring the port back.
#[derive(Debug)]
pub struct BackendService {
    name: String,
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BackendService {
    /// Binds `port` (TCP and UDP, `0.0.0.0` and `[::]`) in `ns` and starts serving as `name`.
    pub fn start(ns: &Netns, name: &str, port: u16) -> Result<BackendService> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let owned_name = name.to_owned();
        let thread = ns
            .run(
                move || -> std::result::Result<JoinHandle<()>, (String, io::Error)> {
                    let sockets = Sockets::bind(port)?;
                    thread::Builder::new()
                        .name(format!("svc {owned_name}"))
                        .spawn(move || serve(&owned_name, &sockets, &flag))
                        .map_err(|e| ("starting the service thread".to_owned(), e))
                },
            )?
            .map_err(|(op, source)| Error::Socket {
                op: format!("service {name} on port {port}: {op}"),
                ns: ns.name().to_owned(),
                source,
            })?;
        Ok(BackendService {
            name: name.to_owned(),
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port it serves.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it is serving (not stopped).
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// Stops serving and closes every socket, waiting (at most about 50 ms) for the thread.
    /// Stopping a stopped service does nothing.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::warn!("service {}: the serving thread panicked", self.name);
        }
    }
}

impl Drop for BackendService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The service's listening and datagram sockets.
struct Sockets {
    tcp: [TcpListener; 2],
    /// IPv4, then IPv6.
    udp: [UdpSocket; 2],
}

impl Sockets {
    /// Binds all four on `port`, in the calling thread's namespace.
    fn bind(port: u16) -> std::result::Result<Sockets, (String, io::Error)> {
        let any4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let tcp = |addr: SocketAddr| {
            let op = || format!("binding TCP {addr}");
            let fd = sock::socket(&addr, SockType::Stream).map_err(|e| (op(), e))?;
            sock::bind_reuse(&fd, addr).map_err(|e| (op(), e))?;
            socket::listen(
                &fd,
                socket::Backlog::new(BACKLOG).unwrap_or(socket::Backlog::MAXCONN),
            )
            .map_err(|e| (format!("listening on TCP {addr}"), e.into()))?;
            Ok::<_, (String, io::Error)>(TcpListener::from(fd))
        };
        let udp = |addr: SocketAddr| {
            let op = || format!("binding UDP {addr}");
            let fd = sock::socket(&addr, SockType::Datagram).map_err(|e| (op(), e))?;
            let pktinfo = if addr.is_ipv4() {
                socket::setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)
            } else {
                socket::setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)
            };
            pktinfo.map_err(|e| (format!("asking for packet info on UDP {addr}"), e.into()))?;
            sock::bind_reuse(&fd, addr).map_err(|e| (op(), e))?;
            Ok::<_, (String, io::Error)>(UdpSocket::from(fd))
        };
        Ok(Sockets {
            tcp: [tcp(any4)?, tcp(any6)?],
            udp: [udp(any4)?, udp(any6)?],
        })
    }
}

/// One accepted connection.
struct Conn {
    stream: TcpStream,
    /// Received bytes not yet ending in a newline.
    input: Vec<u8>,
    /// Answers not yet written.
    output: Vec<u8>,
    closed: bool,
}

/// The serving loop: poll every socket, accept, answer, until `stop`.
fn serve(name: &str, s: &Sockets, stop: &AtomicBool) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let timeout = PollTimeout::try_from(POLL_INTERVAL).unwrap_or(PollTimeout::NONE);
    while !stop.load(Ordering::Relaxed) {
        let ready: Vec<PollFlags> = {
            let mut fds: Vec<PollFd<'_>> = s
                .tcp
                .iter()
                .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN))
                .chain(
                    s.udp
                        .iter()
                        .map(|u| PollFd::new(u.as_fd(), PollFlags::POLLIN)),
                )
                .chain(conns.iter().map(|c| {
                    let mut ev = PollFlags::POLLIN;
                    if !c.output.is_empty() {
                        ev |= PollFlags::POLLOUT;
                    }
                    PollFd::new(c.stream.as_fd(), ev)
                }))
                .collect();
            match nix::poll::poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    log::warn!("service {name}: poll: {e}; stopping");
                    return;
                }
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        let (listeners, rest) = ready.split_at(2);
        let (datagrams, streams) = rest.split_at(2);
        for (l, ev) in s.tcp.iter().zip(listeners) {
            if !ev.is_empty() {
                accept(l, &mut conns);
            }
        }
        for (u, ev) in s.udp.iter().zip(datagrams) {
            if !ev.is_empty() {
                answer_datagrams(name, u, &mut buf);
            }
        }
        // `streams` covers the connections that existed when polling, in order; the ones
        // accepted since come after them.
        for (c, ev) in conns.iter_mut().zip(streams) {
            if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                c.read(name, &mut buf);
            }
            if !c.output.is_empty() && !c.closed {
                c.flush();
            }
        }
        conns.retain(|c| !c.closed);
    }
}

fn accept(l: &TcpListener, conns: &mut Vec<Conn>) {
    for _ in 0..PER_ROUND {
        match l.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                conns.push(Conn {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    closed: false,
                });
            }
            // WouldBlock: all accepted. Anything else (a connection reset before it was
            // accepted, EMFILE): try again next round.
            Err(_) => return,
        }
    }
}

impl Conn {
    /// Reads what is there (a bounded number of times) and queues an answer per full line.
    fn read(&mut self, name: &str, buf: &mut [u8]) {
        for _ in 0..PER_ROUND {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    while let Some(pos) = self.input.iter().position(|&b| b == b'\n') {
                        let mut line = &self.input[..pos];
                        if let [head @ .., b'\r'] = line {
                            line = head;
                        }
                        self.output.extend_from_slice(name.as_bytes());
                        self.output.push(b' ');
                        self.output.extend_from_slice(line);
                        self.output.push(b'\n');
                        self.input.drain(..=pos);
                    }
                    if self.input.len() > MAX_LINE {
                        self.closed = true;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Writes as much of the queued answers as the socket takes.
    fn flush(&mut self) {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }
}

/// Answers the waiting datagrams on `u` (a bounded number), each from the address it was sent
/// to.
fn answer_datagrams(name: &str, u: &UdpSocket, buf: &mut [u8]) {
    let fd = u.as_raw_fd();
    let v6 = u.local_addr().is_ok_and(|a| a.is_ipv6());
    let mut cmsg = if v6 {
        nix::cmsg_space!(libc::in6_pktinfo)
    } else {
        nix::cmsg_space!(libc::in_pktinfo)
    };
    let mut reply = Vec::with_capacity(2048);
    for _ in 0..PER_ROUND {
        let (n, from, dst) = {
            let mut iov = [io::IoSliceMut::new(buf)];
            let msg = match socket::recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(m) => m,
                Err(Errno::EINTR) => continue,
                // EAGAIN: nothing left. Anything else: try again next round.
                Err(_) => return,
            };
            let dst = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::Ipv4PacketInfo(pi) => {
                        Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))))
                    }
                    ControlMessageOwned::Ipv6PacketInfo(pi) => {
                        Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)))
                    }
                    _ => None,
                })
            });
            (msg.bytes, msg.address, dst)
        };
        let Some(from) = from else { continue };
        reply.clear();
        reply.extend_from_slice(name.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(&buf[..n]);
        let iov = [io::IoSlice::new(&reply)];
        // Answer from the address the datagram was sent to; without it the kernel would pick
        // the backend's own address.
        let sent = match dst {
            Some(IpAddr::V4(a)) => {
                let pi = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                socket::sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&pi)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&from),
                )
            }
            Some(IpAddr::V6(a)) => {
                let pi = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                socket::sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&pi)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&from),
                )
            }
            None => socket::sendmsg(fd, &iov, &[], MsgFlags::MSG_DONTWAIT, Some(&from)),
        };
        if let Err(e) = sent {
            log::debug!("service {name}: answering {from}: {e}");
        }
    }
}
