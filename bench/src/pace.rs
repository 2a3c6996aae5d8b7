//! The paced generator: stamped UDP datagrams from a kernel socket (UDP, or AF_PACKET with
//! whole frames), each sent at its own due time ([`PaceSchedule`]), for latency under evenly
//! spread load.
//!
//! Why not the live-frames generator (`crate::gen`): every `BPF_PROG_TEST_RUN` call builds
//! and tears down a page pool, and the teardown waits for an RCU grace period and keeps the
//! pool's memory-model id until its last page comes back. Sending a frame or two per call —
//! what per-frame pacing needs — therefore costs from tens of µs to ~600 µs per call on this
//! VM (grace periods are slow while a core spins), and after a few hundred thousand calls the
//! kernel runs out of ids (`BPF_PROG_TEST_RUN` fails with `ENOSPC`). Both were measured.
//! A kernel socket costs a system call per frame (or per batch of frames already due) and
//! nothing per run.
//!
//! How it works: the payload starts with the benchmark [`Stamp`] (magic, flow 0, sequence
//! number, `CLOCK_MONOTONIC` ns read just before the `send`), so the receiver computes latency
//! and departure gaps exactly as for the live-frames generator. The loop spins (yielding the CPU
//! each round) until the next frame is due, then sends every frame already due, at most
//! [`MAX_PER_WAKE`] per round, never one that is not yet due: one `send` each, or all of them in
//! one `sendmmsg` on the UDP socket or on an AF_PACKET socket that bypasses the qdisc and the IP
//! stack ([`PaceMethod`]; the batch methods cut the cost per frame, which bounds the rate one core
//! can pace). A run that falls more than [`MAX_LAG`] behind
//! gives up the slots older than that instead of bursting them out ([`PaceSchedule::resume_slot`]);
//! they are counted in `PacingStats::skipped`.
//!
//! The socket must be created on a thread inside the sending namespace; the peer needs the
//! destination's neighbour entry (a static one where the reflector answers ARP badly). Sends
//! that fail with `ENOBUFS`/`EAGAIN` are counted as not sent and their sequence number reused,
//! so the receiver's loss (sent − received) covers only frames that left.

use crate::r#gen::{GenReport, PaceSchedule, PacingRecorder, Rate, Template};
use crate::payload::{self, Stamp};
use crate::rx::monotonic_ns;
use crate::sys::{self, MmsgBatch};
use sluice::wire::checksum;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Most frames sent in one round of the loop (the run is that far behind).
pub const MAX_PER_WAKE: u32 = 32;
/// How far behind its schedule a run may fall before it gives up slots (see the module doc).
pub const MAX_LAG: Duration = Duration::from_micros(200);
/// Waits longer than this are slept, waking [`WAKE_EARLY`] before the frame is due; shorter
/// ones are spun.
const SLEEP_ABOVE: Duration = Duration::from_micros(400);
/// See [`SLEEP_ABOVE`].
const WAKE_EARLY: Duration = Duration::from_micros(250);
/// Ethernet + IPv4 + UDP headers: a frame of `frame_len` bytes carries `frame_len - 42`.
const HEADERS: usize = 14 + 20 + 8;

/// How the pacer hands frames to the kernel. Every method sends only frames already due; they
/// differ in the cost per frame, which bounds the rate one core can pace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PaceMethod {
    /// One `send` per frame on a connected UDP socket, each stamped just before its call.
    #[default]
    Send,
    /// The frames already due in one `sendmmsg` on the connected UDP socket; they share one
    /// stamp (read just before the call).
    Sendmmsg,
    /// The frames already due in one `sendmmsg` on an AF_PACKET socket with
    /// `PACKET_QDISC_BYPASS`: whole Ethernet frames from the template straight to the veth, no
    /// IP stack, no qdisc; the pacer fills in the UDP checksum. They share one stamp.
    Packet,
}

/// What to send.
#[derive(Clone, Debug)]
pub struct PacedConfig {
    /// Source address (bound).
    pub bind: SocketAddr,
    /// Destination (connected).
    pub target: SocketAddr,
    /// Ethernet frame length without FCS (UDP/IPv4: at least 42 + 16 for the stamp).
    pub frame_len: usize,
    /// Frames per second.
    pub pps: u64,
    /// How long to send (the run sends `pps × duration` slots' worth, less skipped ones).
    pub duration: Duration,
    /// How frames reach the kernel.
    pub method: PaceMethod,
    /// For [`PaceMethod::Packet`]: the interface to send from and the frame to send (flow 0 of
    /// the template; its addresses must match `bind` and `target`).
    pub packet: Option<(String, Template)>,
}

/// The UDP checksum of a template frame whose 16 stamp bytes are `stamp`: `base_sum` is the
/// template's unfolded sum of the pseudo-header and the segment with source port, checksum and
/// stamp zero (`GenConfig::base_sum`), `sport` its source port. A computed 0 is sent as
/// `0xffff` (RFC 768: 0 means "no checksum").
pub fn udp_checksum(base_sum: u32, sport: u16, stamp: &[u8; payload::LEN]) -> u16 {
    let sum = checksum::combine(&[
        (base_sum >> 16) as u16,
        base_sum as u16,
        sport,
        checksum::data(stamp),
    ]);
    match !sum {
        0 => 0xffff,
        c => c,
    }
}

/// The socket and buffers of one method.
enum Tx {
    /// [`PaceMethod::Send`]: the payload buffer, stamped in place before each `send`.
    Send { sock: UdpSocket, buf: Vec<u8> },
    /// [`PaceMethod::Sendmmsg`] and [`PaceMethod::Packet`]: one slot per frame of a round.
    Batch {
        fd: OwnedFd,
        batch: MmsgBatch,
        /// Bytes sent per slot.
        len: usize,
        /// Where the stamp sits in a slot.
        stamp_off: usize,
        /// AF_PACKET: (checksum offset, base sum, source port) to fix the UDP checksum.
        csum: Option<(usize, u32, u16)>,
    },
}

/// Errors of a send that only cost the frame: a full queue on the way out (the slot is lost to
/// the sender, not the network; the next frame reuses the sequence number).
fn only_counted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR)
    )
}

impl Tx {
    fn open(cfg: &PacedConfig) -> io::Result<Tx> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let mut payload_buf = vec![0u8; cfg.frame_len - HEADERS];
        for (i, b) in payload_buf[payload::LEN..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let udp = || -> io::Result<UdpSocket> {
            let sock = UdpSocket::bind(cfg.bind)?;
            sock.connect(cfg.target)?;
            Ok(sock)
        };
        match cfg.method {
            PaceMethod::Send => Ok(Tx::Send {
                sock: udp()?,
                buf: payload_buf,
            }),
            PaceMethod::Sendmmsg => {
                let mut batch = MmsgBatch::new(MAX_PER_WAKE as usize, payload_buf.len());
                for i in 0..MAX_PER_WAKE as usize {
                    batch.slot_mut(i).copy_from_slice(&payload_buf);
                }
                Ok(Tx::Batch {
                    fd: udp()?.into(),
                    batch,
                    len: payload_buf.len(),
                    stamp_off: 0,
                    csum: None,
                })
            }
            PaceMethod::Packet => {
                let (iface, template) = cfg.packet.as_ref().ok_or_else(|| {
                    invalid("the packet method needs an interface and a template".into())
                })?;
                let (frame, gc) = template
                    .build()
                    .map_err(|e| invalid(format!("building the frame: {e}")))?;
                let ifindex = nix::net::if_::if_nametoindex(iface.as_str())
                    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
                let mut batch = MmsgBatch::new(MAX_PER_WAKE as usize, frame.len());
                for i in 0..MAX_PER_WAKE as usize {
                    batch.slot_mut(i).copy_from_slice(&frame);
                }
                Ok(Tx::Batch {
                    fd: sys::packet_tx_socket(ifindex)?,
                    batch,
                    len: frame.len(),
                    stamp_off: usize::from(gc.stamp_off),
                    csum: Some((usize::from(gc.csum_off), gc.base_sum, gc.base_sport)),
                })
            }
        }
    }

    /// Sends `n` frames with sequence numbers from `seq`. Returns (sent, failed): failed frames
    /// (a full queue, see [`only_counted`]) are given up; any other error is returned.
    fn send(&mut self, seq: u64, n: u32) -> io::Result<(u64, u64)> {
        match self {
            Tx::Send { sock, buf } => {
                let (mut sent, mut failed) = (0u64, 0u64);
                for _ in 0..n {
                    Stamp {
                        flow: 0,
                        seq: (seq + sent) as u32,
                        ts_ns: monotonic_ns(),
                    }
                    .write(buf);
                    match sock.send(buf) {
                        Ok(_) => sent += 1,
                        Err(e) if only_counted(&e) => failed += 1,
                        Err(e) => return Err(e),
                    }
                }
                Ok((sent, failed))
            }
            Tx::Batch {
                fd,
                batch,
                len,
                stamp_off,
                csum,
            } => {
                let ts_ns = monotonic_ns();
                for i in 0..n as usize {
                    let slot = batch.slot_mut(i);
                    let stamp = &mut slot[*stamp_off..*stamp_off + payload::LEN];
                    Stamp {
                        flow: 0,
                        seq: (seq + i as u64) as u32,
                        ts_ns,
                    }
                    .write(stamp);
                    if let Some((off, base, sport)) = *csum {
                        let st: &[u8; payload::LEN] =
                            (&*stamp).try_into().expect("the stamp range is LEN bytes");
                        let c = udp_checksum(base, sport, st);
                        slot[off..off + 2].copy_from_slice(&c.to_be_bytes());
                    }
                }
                // The kernel stops at the first frame it cannot send; the rest of the round is
                // given up with it (those frames are due now, and the next round's are not).
                match batch.send_connected(fd.as_fd(), n as usize, *len) {
                    Ok(k) => Ok((k as u64, u64::from(n) - k as u64)),
                    Err(e) if only_counted(&e) => Ok((0, u64::from(n))),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// Sends `cfg.pps × cfg.duration` stamped datagrams, each at its due time. Must run on a thread
/// inside the sending namespace. Returns a [`GenReport`] (`rate` = [`Rate::Paced`], `calls` =
/// loop rounds that sent, `pacing` filled in).
pub fn run(cfg: &PacedConfig) -> io::Result<GenReport> {
    let sched = PaceSchedule::new(cfg.pps)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "rate is 0 pps"))?;
    if cfg.frame_len < HEADERS + payload::LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame length {} cannot carry the {}-byte stamp",
                cfg.frame_len,
                payload::LEN
            ),
        ));
    }
    let mut tx = Tx::open(cfg)?;
    let total = (u128::from(cfg.pps) * cfg.duration.as_nanos() / 1_000_000_000) as u64;
    let max_lag = MAX_LAG.as_nanos() as u64;
    let mut rec = PacingRecorder::new();
    let (mut sent, mut skipped, mut failed, mut rounds, mut send_ns) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    // Bounded: the loop ends when every slot is sent or skipped, or a second after the window.
    while sent + skipped < total && start.elapsed() < cfg.duration + Duration::from_secs(1) {
        let t = start.elapsed().as_nanos() as u64;
        let slot = sent + skipped;
        let due = sched.due_by(t).min(total);
        if due <= slot {
            let wait = Duration::from_nanos(sched.due_ns(slot).saturating_sub(t));
            if wait > SLEEP_ABOVE {
                std::thread::sleep(wait - WAKE_EARLY);
            } else {
                // Let whatever else is runnable on this core (the receiver, a NAPI thread) go
                // first.
                let _ = nix::sched::sched_yield();
            }
            continue;
        }
        let late = t.saturating_sub(sched.due_ns(slot));
        let slot_now = sched.resume_slot(slot, t, max_lag);
        skipped += slot_now - slot;
        let n = (due - slot_now).min(u64::from(MAX_PER_WAKE)) as u32;
        rec.record(late, n, slot_now - slot);
        rounds += 1;
        let t0 = Instant::now();
        let (ok, bad) = tx.send(sent, n)?;
        send_ns += t0.elapsed().as_nanos() as u64;
        sent += ok;
        failed += bad;
        skipped += bad;
    }
    let elapsed = start.elapsed();
    let mut pacing = rec.stats();
    pacing.send_failures = failed;
    pacing.skipped += failed;
    pacing.send_ns_per_frame = send_ns as f64 / sent.max(1) as f64;
    Ok(GenReport {
        sent,
        elapsed,
        first_seq: 0,
        last_seq: sent.wrapping_sub(1),
        frame_len: cfg.frame_len,
        rate: Rate::Paced(cfg.pps),
        achieved_pps: sent as f64 / elapsed.as_secs_f64(),
        program_frames: sent,
        bad_frames: 0,
        calls: rounds,
        pacing: Some(pacing),
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn cfg() -> PacedConfig {
        PacedConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            target: "127.0.0.1:9".parse().unwrap(),
            frame_len: 57,
            pps: 1000,
            duration: Duration::from_millis(1),
            method: PaceMethod::Send,
            packet: None,
        }
    }

    #[test]
    fn refuses_what_it_cannot_send() {
        let cfg = cfg();
        assert_eq!(
            run(&cfg).unwrap_err().kind(),
            io::ErrorKind::InvalidInput,
            "57 bytes hold 15 of the stamp's 16"
        );
        let cfg = PacedConfig { pps: 0, ..cfg };
        assert_eq!(run(&cfg).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let cfg = PacedConfig {
            pps: 1000,
            frame_len: 60,
            method: PaceMethod::Packet,
            ..cfg
        };
        assert_eq!(
            run(&cfg).unwrap_err().kind(),
            io::ErrorKind::InvalidInput,
            "the packet method without a template"
        );
    }

    /// The checksum the AF_PACKET method writes after stamping a template frame is the one
    /// etherparse computes for the whole frame, for stamps that exercise carries, and for one
    /// whose checksum folds to 0 (sent as `0xffff`).
    #[test]
    fn udp_checksum_of_a_stamped_template_frame() {
        use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
        let t = Template::udp4(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1)),
            9000,
        );
        let (frame, gc) = t.build().unwrap();
        let (so, co) = (usize::from(gc.stamp_off), usize::from(gc.csum_off));
        let stamped = |st: Stamp| -> (Vec<u8>, u16) {
            let mut f = frame.clone();
            st.write(&mut f[so..so + payload::LEN]);
            let bytes: [u8; payload::LEN] = f[so..so + payload::LEN].try_into().unwrap();
            let c = udp_checksum(gc.base_sum, gc.base_sport, &bytes);
            f[co..co + 2].copy_from_slice(&c.to_be_bytes());
            (f, c)
        };
        let st = |seq: u32, ts_ns: u64| Stamp {
            flow: 0,
            seq,
            ts_ns,
        };
        // The stamp's last 16-bit word (big-endian, bytes 14..16 = the timestamp's top two
        // bytes, little-endian) set to the checksum of the stamp without it makes the sum 0xffff.
        let (_, c0) = stamped(st(5, 0));
        let folds_to_zero = (u64::from(c0 >> 8) << 48) | (u64::from(c0 & 0xff) << 56);
        let cases = [
            st(0, 0),
            st(1, 1_764_625_000_123_456_789),
            st(u32::MAX, u64::MAX),
            st(0x8000_8000, 0xffff_0000_ffff_0000),
            st(5, folds_to_zero),
        ];
        for (k, s) in cases.into_iter().enumerate() {
            let (f, c) = stamped(s);
            let h = PacketHeaders::from_ethernet_slice(&f).unwrap();
            let (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(u))) =
                (h.net, h.transport)
            else {
                panic!("not UDP/IPv4")
            };
            let want = u.calc_checksum_ipv4(&ip, h.payload.slice()).unwrap();
            assert_eq!(c, want, "case {k}: {s:?}");
            assert_eq!(u.source_port, gc.base_sport);
            if k == 4 {
                assert_eq!(c, 0xffff, "a checksum that folds to 0 is sent as 0xffff");
            }
        }
    }
}
