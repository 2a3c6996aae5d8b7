//! A windowed kernel-socket UDP echo client: the demo's and the integration tests' traffic
//! source until the XDP live-frames generator lands.
//!
//! It keeps up to `window` datagrams in flight over `flows` sockets (one source port each, so
//! multi-queue receivers see several flows), checks every echo byte for byte against what was
//! sent, and counts what never came back. Payloads are deterministic: the first bytes carry a
//! sequence number, the rest a pattern derived from it, so an echo can be verified without
//! keeping a copy of every datagram.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// The payload with sequence number `seq` and length `len` (1..=65507).
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    fill_payload(&mut p, seq);
    p
}

fn fill_payload(p: &mut [u8], seq: u64) {
    let head = p.len().min(8);
    p[..head].copy_from_slice(&seq.to_le_bytes()[..head]);
    let k = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
    for (i, b) in p[head..].iter_mut().enumerate() {
        *b = (i as u64).wrapping_add(k) as u8;
    }
}

/// The sequence field of a payload (its first up-to-8 bytes, little-endian).
fn seq_field(p: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let head = p.len().min(8);
    b[..head].copy_from_slice(&p[..head]);
    u64::from_le_bytes(b)
}

/// Counts after (or during) a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EchoStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Echoes received that matched a datagram in flight byte for byte.
    pub echoed: u64,
    /// Datagrams received that matched nothing in flight, or differed from what was sent.
    pub mismatched: u64,
    /// Datagrams given up on (no echo within the timeout).
    pub lost: u64,
    /// Bytes of payload echoed.
    pub echoed_bytes: u64,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// Where to send (the reflector's address and steered port).
    pub target: SocketAddr,
    /// Local address to bind the flows' sockets to.
    pub bind: SocketAddr,
    /// Number of sockets (source ports) used round-robin.
    pub flows: usize,
    /// Datagrams in flight at most.
    pub window: usize,
    /// Stop after this many datagrams (None: only the duration bounds the run).
    pub count: Option<u64>,
    /// Stop sending after this long (always set: loops are bounded).
    pub duration: Duration,
    /// Give up on the datagrams in flight after no echo for this long.
    pub timeout: Duration,
    /// Payload sizes, cycled through in order.
    pub sizes: Vec<usize>,
}

/// The client.
pub struct EchoClient {
    cfg: EchoConfig,
    socks: Vec<UdpSocket>,
    /// (len, seq field) → how many such datagrams are in flight.
    inflight: HashMap<(usize, u64), u32>,
    inflight_n: usize,
    stats: EchoStats,
    buf: Vec<u8>,
}

impl EchoClient {
    /// Open `cfg.flows` non-blocking sockets bound to `cfg.bind` (ephemeral ports) and
    /// connected to the target.
    pub fn new(cfg: EchoConfig) -> io::Result<Self> {
        if cfg.sizes.is_empty() || cfg.sizes.iter().any(|&s| s == 0 || s > 65507) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "payload sizes must be 1..=65507",
            ));
        }
        let mut socks = Vec::with_capacity(cfg.flows.max(1));
        for _ in 0..cfg.flows.max(1) {
            let s = UdpSocket::bind(cfg.bind)?;
            s.connect(cfg.target)?;
            s.set_nonblocking(true)?;
            socks.push(s);
        }
        Ok(EchoClient {
            cfg,
            socks,
            inflight: HashMap::new(),
            inflight_n: 0,
            stats: EchoStats::default(),
            buf: vec![0; 65536],
        })
    }

    /// Counts so far.
    pub fn stats(&self) -> EchoStats {
        self.stats
    }

    /// Send one datagram and wait (up to `timeout`) for its echo. Used to wait until a reflector
    /// is up: returns true once an echo came back.
    pub fn probe(&mut self, timeout: Duration) -> bool {
        let before = self.stats.echoed;
        let seq = u64::MAX - self.stats.sent;
        let p = payload(seq, 32);
        if self.socks[0].send(&p).is_err() {
            return false;
        }
        self.track(32, seq);
        self.stats.sent += 1;
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            self.receive(Duration::from_millis(10));
            if self.stats.echoed > before {
                return true;
            }
        }
        // Not echoed: forget it (it may still come later; then it counts as mismatched).
        self.untrack(32, seq);
        self.stats.sent -= 1;
        false
    }

    fn track(&mut self, len: usize, seq: u64) {
        *self
            .inflight
            .entry((len, seq_field(&payload_head(seq, len))))
            .or_insert(0) += 1;
        self.inflight_n += 1;
    }

    fn untrack(&mut self, len: usize, seq: u64) {
        let key = (len, seq_field(&payload_head(seq, len)));
        if let Some(c) = self.inflight.get_mut(&key) {
            *c -= 1;
            if *c == 0 {
                self.inflight.remove(&key);
            }
            self.inflight_n -= 1;
        }
    }

    /// Run: keep the window full until `count` datagrams are sent or `duration` passes, then
    /// wait up to `timeout` for the last echoes. `tick` is called about once a second with the
    /// counts so far (for live progress).
    pub fn run(&mut self, mut tick: impl FnMut(Duration, &EchoStats)) -> EchoStats {
        let start = Instant::now();
        let mut next_tick = start + Duration::from_secs(1);
        let mut last_progress = Instant::now();
        let mut seq: u64 = 0;
        let mut out = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            let sending = now.duration_since(start) < self.cfg.duration
                && self.cfg.count.is_none_or(|c| self.stats.sent < c);
            if !sending && self.inflight_n == 0 {
                break;
            }
            if sending {
                while self.inflight_n < self.cfg.window
                    && self.cfg.count.is_none_or(|c| self.stats.sent < c)
                {
                    let len = self.cfg.sizes[(seq % self.cfg.sizes.len() as u64) as usize];
                    let sock = &self.socks[(seq % self.socks.len() as u64) as usize];
                    fill_payload(&mut out[..len], seq);
                    match sock.send(&out[..len]) {
                        Ok(_) => {
                            self.track(len, seq);
                            self.stats.sent += 1;
                            seq += 1;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => break,
                        // ECONNREFUSED: an ICMP port unreachable came back (reflector not up,
                        // or the port went to the kernel). Counted as loss by the timeout.
                        Err(_) => break,
                    }
                }
            }
            let got = self.receive(Duration::from_millis(5));
            if got > 0 {
                last_progress = Instant::now();
            } else if self.inflight_n > 0 && last_progress.elapsed() >= self.cfg.timeout {
                // Nothing came back for a whole timeout: the datagrams in flight are lost.
                self.stats.lost += self.inflight_n as u64;
                self.inflight.clear();
                self.inflight_n = 0;
                last_progress = Instant::now();
            }
            if Instant::now() >= next_tick {
                tick(start.elapsed(), &self.stats);
                next_tick += Duration::from_secs(1);
            }
        }
        self.stats
    }

    /// Receive whatever is waiting on any flow, sleeping in poll() up to `wait`.
    fn receive(&mut self, wait: Duration) -> usize {
        let mut fds: Vec<nix::poll::PollFd<'_>> = self
            .socks
            .iter()
            .map(|s| nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        if !matches!(nix::poll::poll(&mut fds, ms), Ok(n) if n > 0) {
            return 0;
        }
        drop(fds);
        let mut got = 0;
        for i in 0..self.socks.len() {
            while let Ok(n) = self.socks[i].recv(&mut self.buf) {
                got += 1;
                if self.match_echo(n) {
                    self.stats.echoed += 1;
                    self.stats.echoed_bytes += n as u64;
                } else {
                    self.stats.mismatched += 1;
                }
            }
        }
        got
    }
}

impl EchoClient {
    /// Check the `n` bytes in `self.buf` against the datagrams in flight; on a byte-exact match
    /// take that datagram out of flight and return true.
    fn match_echo(&mut self, n: usize) -> bool {
        let p = &self.buf[..n];
        let key = (n, seq_field(p));
        let Some(c) = self.inflight.get_mut(&key) else {
            return false;
        };
        // Verify the whole datagram against what that sequence number sent.
        let mut want = vec![0u8; n];
        fill_payload(&mut want, key.1);
        if want != p {
            return false;
        }
        *c -= 1;
        if *c == 0 {
            self.inflight.remove(&key);
        }
        self.inflight_n -= 1;
        true
    }
}

/// First bytes of a payload (enough to compute its sequence field).
fn payload_head(seq: u64, len: usize) -> Vec<u8> {
    seq.to_le_bytes()[..len.min(8)].to_vec()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn payloads_are_deterministic_and_distinct() {
        assert_eq!(payload(7, 100), payload(7, 100));
        assert_ne!(payload(7, 100), payload(8, 100));
        assert_eq!(payload(0x0102, 1), vec![0x02]);
        assert_eq!(seq_field(&payload(123_456, 64)), 123_456);
    }

    /// A loopback UDP echo server on a thread stands in for the reflector: every datagram must
    /// come back verified, and a corrupting server must be caught.
    fn loopback_run(corrupt: bool, count: u64) -> EchoStats {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut idle = 0;
            while idle < 5 {
                match server.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        idle = 0;
                        if corrupt && n > 10 {
                            buf[n - 1] ^= 0xff;
                        }
                        let _ = server.send_to(&buf[..n], from);
                    }
                    Err(_) => idle += 1,
                }
            }
        });
        let mut c = EchoClient::new(EchoConfig {
            target: addr,
            bind: "127.0.0.1:0".parse().unwrap(),
            flows: 3,
            window: 16,
            count: Some(count),
            duration: Duration::from_secs(10),
            timeout: Duration::from_millis(300),
            sizes: (1..=1472).step_by(37).collect(),
        })
        .unwrap();
        let s = c.run(|_, _| {});
        h.join().unwrap();
        s
    }

    #[test]
    fn loopback_echo_verifies_every_datagram() {
        let s = loopback_run(false, 500);
        assert_eq!(s.sent, 500);
        assert_eq!(s.echoed, 500);
        assert_eq!(s.mismatched + s.lost, 0);
    }

    #[test]
    fn corrupted_echoes_are_caught() {
        let s = loopback_run(true, 60);
        assert_eq!(s.sent, 60);
        assert!(s.mismatched > 0, "{s:?}");
        assert!(s.echoed < 60);
    }
}
