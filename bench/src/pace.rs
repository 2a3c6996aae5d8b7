//! The paced generator: stamped UDP datagrams from a kernel socket, each sent at its own due
//! time ([`PaceSchedule`]), for latency under evenly spread load.
//!
//! Why not the live-frames generator (`crate::gen`): every `BPF_PROG_TEST_RUN` call builds
//! and tears down a page pool, and the teardown waits for an RCU grace period and keeps the
//! pool's memory-model id until its last page comes back. Sending a frame or two per call —
//! what per-frame pacing needs — therefore costs from tens of µs to ~600 µs per call on this
//! VM (grace periods are slow while a core spins), and after a few hundred thousand calls the
//! kernel runs out of ids (`BPF_PROG_TEST_RUN` fails with `ENOSPC`). Both were measured.
//! A connected UDP socket costs one `send` per frame and nothing per run.
//!
//! How it works: the payload starts with the benchmark [`Stamp`] (magic, flow 0, sequence
//! number, `CLOCK_MONOTONIC` ns read just before the `send`), so the receiver computes latency
//! and departure gaps exactly as for the live-frames generator. The loop spins (yielding the CPU
//! each round) until the next frame is due, then sends every frame already due, one `send`
//! each, at most [`MAX_PER_WAKE`] per round. A run that falls more than [`MAX_LAG`] behind
//! gives up the slots older than that instead of bursting them out ([`PaceSchedule::resume_slot`]);
//! they are counted in `PacingStats::skipped`.
//!
//! The socket must be created on a thread inside the sending namespace; the peer needs the
//! destination's neighbour entry (a static one where the reflector answers ARP badly). Sends
//! that fail with `ENOBUFS`/`EAGAIN` are counted as not sent and their sequence number reused,
//! so the receiver's loss (sent − received) covers only frames that left.

use crate::r#gen::{GenReport, PaceSchedule, PacingRecorder, Rate};
use crate::payload::{self, Stamp};
use crate::rx::monotonic_ns;
use std::io;
use std::net::{SocketAddr, UdpSocket};
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
    let sock = UdpSocket::bind(cfg.bind)?;
    sock.connect(cfg.target)?;
    let mut buf = vec![0u8; cfg.frame_len - HEADERS];
    for (i, b) in buf[payload::LEN..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let total = (u128::from(cfg.pps) * cfg.duration.as_nanos() / 1_000_000_000) as u64;
    let max_lag = MAX_LAG.as_nanos() as u64;
    let mut rec = PacingRecorder::new();
    let (mut sent, mut skipped, mut failed, mut rounds) = (0u64, 0u64, 0u64, 0u64);
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
        for _ in 0..n {
            Stamp {
                flow: 0,
                seq: sent as u32,
                ts_ns: monotonic_ns(),
            }
            .write(&mut buf);
            match sock.send(&buf) {
                Ok(_) => sent += 1,
                // A full queue on the way out: this slot is lost to the sender, not the
                // network; the next frame reuses the sequence number.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR)
                    ) =>
                {
                    failed += 1;
                    skipped += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let elapsed = start.elapsed();
    let mut pacing = rec.stats();
    pacing.send_failures = failed;
    pacing.skipped += failed;
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

    #[test]
    fn refuses_what_it_cannot_send() {
        let cfg = PacedConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            target: "127.0.0.1:9".parse().unwrap(),
            frame_len: 57,
            pps: 1000,
            duration: Duration::from_millis(1),
        };
        assert_eq!(
            run(&cfg).unwrap_err().kind(),
            io::ErrorKind::InvalidInput,
            "57 bytes hold 15 of the stamp's 16"
        );
        let cfg = PacedConfig { pps: 0, ..cfg };
        assert_eq!(run(&cfg).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
