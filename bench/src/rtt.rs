//! A one-in-flight UDP ping-pong client: the round-trip measurement of `--scenario rtt`.
//!
//! One connected kernel UDP socket sends a datagram, then spins on a non-blocking `recv`
//! (`MSG_DONTWAIT`, never `poll()`) until its echo is back, byte for byte, and only then sends
//! the next one — the way sockperf ping-pong, netperf `UDP_RR` and DPDK's latency tests
//! measure. The round trip is taken with `CLOCK_MONOTONIC` (`Instant`) just before `send` and
//! just after the `recv` that returned the echo, so it includes the client's own kernel path
//! both ways (UDP/IP output, the veth hop, and the socket receive path), the same for every
//! subject. With an interval the client sends at a fixed rate instead of back to back: it
//! sleeps until shortly before the next send time and spins the rest, so a low rate shows what
//! the *reflector* pays to wake up, not what the client does.
//!
//! Loops are bounded: each echo is waited for at most `timeout`, and the whole run at most
//! `deadline`.

use hdrhistogram::Histogram;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Largest round trip the histogram holds (longer ones are clamped): 1 s.
const MAX_RTT_NS: u64 = 1_000_000_000;
/// Below this much time to the next send the client spins instead of sleeping (a sleep's own
/// wake-up is tens of µs late on a loaded VM).
const SPIN_BEFORE_SEND: Duration = Duration::from_micros(200);

/// How to run.
#[derive(Clone, Debug)]
pub struct RttConfig {
    /// The reflector's address and port.
    pub target: SocketAddr,
    /// Local address (port 0: ephemeral).
    pub bind: SocketAddr,
    /// UDP payload bytes (8..=1472 on a 1500-byte MTU).
    pub payload: usize,
    /// Round trips before measuring (not recorded).
    pub warmup: u64,
    /// Round trips recorded.
    pub count: u64,
    /// Send one request every `interval` (None: the next as soon as the echo is back).
    pub interval: Option<Duration>,
    /// Give up on an echo after this long (counted as lost).
    pub timeout: Duration,
    /// Stop after this long whatever the count.
    pub deadline: Duration,
}

/// What a run measured.
pub struct RttReport {
    /// Round-trip times of the recorded requests, ns.
    pub hist: Histogram<u64>,
    /// Recorded requests whose echo never came back within the timeout.
    pub lost: u64,
    /// Datagrams received that were not the echo awaited (late echoes of lost ones, corrupt).
    pub mismatched: u64,
    /// Whether the deadline cut the run short.
    pub cut_short: bool,
}

impl RttReport {
    /// The `q` quantile (0..=1) in µs.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1e3
    }
    /// The largest round trip, µs.
    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1e3
    }
}

/// Sends until one echo comes back (a reflector that has just started may not answer yet):
/// up to `tries` requests, each waited for `each`. True once an echo arrived.
pub fn probe(cfg: &RttConfig, tries: u32, each: Duration) -> io::Result<bool> {
    let sock = open(cfg)?;
    let mut buf = vec![0u8; 2048];
    for i in 0..tries {
        let out = request(u64::MAX - u64::from(i), cfg.payload);
        let _ = sock.send(&out);
        let t0 = Instant::now();
        while t0.elapsed() < each {
            match sock.recv(&mut buf) {
                Ok(n) if buf[..n] == out[..] => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                // ECONNREFUSED from an ICMP port unreachable: not up yet.
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    Ok(false)
}

fn open(cfg: &RttConfig) -> io::Result<UdpSocket> {
    if !(8..=65507).contains(&cfg.payload) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "payload must be 8..=65507 bytes (it carries a sequence number)",
        ));
    }
    let sock = UdpSocket::bind(cfg.bind)?;
    sock.connect(cfg.target)?;
    // recv on a non-blocking socket is recv(MSG_DONTWAIT).
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// The request with sequence number `seq`: the number, then a pattern derived from it.
fn request(seq: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    fill(&mut p, seq);
    p
}

fn fill(p: &mut [u8], seq: u64) {
    p[..8].copy_from_slice(&seq.to_le_bytes());
    let k = (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8;
    for (i, b) in p[8..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(k);
    }
}

/// Runs `warmup + count` round trips, one in flight.
pub fn run(cfg: &RttConfig) -> io::Result<RttReport> {
    let sock = open(cfg)?;
    let mut hist = Histogram::new_with_bounds(1, MAX_RTT_NS, 3)
        .map_err(|e| io::Error::other(format!("histogram: {e}")))?;
    let mut out = vec![0u8; cfg.payload];
    let mut buf = vec![0u8; cfg.payload.max(2048)];
    let (mut lost, mut mismatched, mut cut_short) = (0u64, 0u64, false);
    let start = Instant::now();
    let end = start + cfg.deadline;
    let total = cfg.warmup + cfg.count;
    for i in 0..total {
        if let Some(iv) = cfg.interval {
            let due = start + iv.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            let now = Instant::now();
            if due > now + SPIN_BEFORE_SEND {
                std::thread::sleep(due - now - SPIN_BEFORE_SEND);
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        if Instant::now() >= end {
            cut_short = true;
            break;
        }
        fill(&mut out, i);
        let t0 = Instant::now();
        match sock.send(&out) {
            Ok(_) => {}
            // ENOBUFS/ECONNREFUSED and the like: this request is lost.
            Err(_) => {
                lost += u64::from(i >= cfg.warmup);
                continue;
            }
        }
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if buf[..n] == out[..] => {
                    let ns = t0.elapsed().as_nanos() as u64;
                    if i >= cfg.warmup {
                        hist.saturating_record(ns.max(1));
                    }
                    break;
                }
                Ok(_) => mismatched += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if t0.elapsed() >= cfg.timeout {
                        lost += u64::from(i >= cfg.warmup);
                        break;
                    }
                    std::hint::spin_loop();
                }
                Err(_) => {
                    lost += u64::from(i >= cfg.warmup);
                    break;
                }
            }
        }
    }
    Ok(RttReport {
        hist,
        lost,
        mismatched,
        cut_short,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn loopback_round_trips_are_recorded() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut idle = 0;
            while idle < 3 {
                match server.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        idle = 0;
                        let _ = server.send_to(&buf[..n], from);
                    }
                    Err(_) => idle += 1,
                }
            }
        });
        let cfg = RttConfig {
            target: addr,
            bind: "127.0.0.1:0".parse().unwrap(),
            payload: 64,
            warmup: 10,
            count: 200,
            interval: None,
            timeout: Duration::from_millis(100),
            deadline: Duration::from_secs(10),
        };
        assert!(probe(&cfg, 10, Duration::from_millis(50)).unwrap());
        let r = run(&cfg).unwrap();
        h.join().unwrap();
        assert_eq!(r.hist.len() + r.lost, 200);
        assert!(r.lost < 5, "lost {}", r.lost);
        assert!(r.quantile_us(0.5) > 0.0);
    }

    #[test]
    fn requests_carry_their_sequence() {
        let p = request(0x0102, 20);
        assert_eq!(&p[..8], &0x0102u64.to_le_bytes());
        assert_ne!(request(1, 20), request(2, 20));
    }
}
