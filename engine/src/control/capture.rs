//! Packet capture, the control plane's half: arms the workers' taps, drains their rings and
//! writes pcapng into the file descriptor the client passed with its request.
//!
//! How the stream reaches the client: the control socket carries one request and one reply per
//! datagram, so the capture itself does not travel over it. `sluice ctl capture -w FILE` opens
//! FILE itself (or takes its own stdout for `-w -`) and passes that descriptor with the request
//! (`SCM_RIGHTS`); the engine writes the pcapng stream straight into it and replies with the
//! totals when the capture ends. The engine never opens a path for a client, so the file is
//! created with the client's own rights and owner, and the engine, privileges dropped, needs
//! none to write to a descriptor it was given.
//!
//! Runs on the control connection's own thread; never on a worker. A worker never waits for
//! it: a frame that finds its ring full is counted ([`crate::worker::capture::SessionStats`]).

use super::proto::{CaptureRequest, MAX_SNAPLEN};
use crate::worker::capture::{Direction, Filter, Record, Session, SessionStats, Tap, read_record};
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bytes of ring per captured queue. At 1500-byte frames about 2,700 frames of slack for the
/// drain thread, which wakes every 2 ms; allocated when a capture starts, freed when
/// it ends.
pub const RING_BYTES: usize = 4 << 20;

/// How long the drain sleeps when every ring is empty.
const IDLE_WAIT: Duration = Duration::from_millis(2);

/// How long a stopping capture waits for workers to let go of their rings (an idle worker only
/// looks at its tap when a batch arrives, so this is bounded rather than awaited).
const RELEASE_WAIT: Duration = Duration::from_millis(200);

/// pcapng `epb_flags` direction bits (inbound 1, outbound 2).
const EPB_INBOUND: u32 = 1;
const EPB_OUTBOUND: u32 = 2;

/// Generation numbers for sessions, so a worker never mistakes an old session for a new one.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A worker as a capture sees it.
pub struct Target<'a> {
    /// Queue served.
    pub queue: u32,
    /// Its tap.
    pub tap: &'a Arc<Tap>,
}

/// Why a capture ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Count,
    Duration,
    Client,
    Output,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Count => "count",
            End::Duration => "duration",
            End::Client => "client",
            End::Output => "output closed",
        }
    }
}

/// Capture per `req` from `targets` (the engine's workers) on `ports` (interface names in port
/// order) into `out`, until a limit is reached or `cancelled` says the client went away. Returns
/// the reply's data: frames written, frames dropped because a ring was full, and why it ended.
pub fn run(
    ports: &[String],
    targets: &[Target<'_>],
    req: &CaptureRequest,
    out: OwnedFd,
    cancelled: &dyn Fn() -> bool,
) -> Result<Value, String> {
    let port = match &req.port {
        None => None,
        Some(p) => Some(resolve_port(ports, p)?),
    };
    let chosen: Vec<&Target<'_>> = targets
        .iter()
        .filter(|t| req.queue.is_none_or(|q| q == t.queue))
        .collect();
    if chosen.is_empty() {
        let q = req.queue.unwrap_or_default();
        return Err(format!("no worker serves queue {q}"));
    }
    check_writable(&out)?;
    let snaplen = req.snaplen.unwrap_or(MAX_SNAPLEN).min(MAX_SNAPLEN);
    let filter = Filter {
        port,
        tx: req.both,
        snaplen,
    };
    let mut writer = PcapNgWriter::new(BufWriter::with_capacity(1 << 16, File::from(out)))
        .map_err(|e| format!("writing the pcapng header: {e}"))?;
    // One interface block per (port, queue): pcap-file 2 cannot write the `epb_queue` option,
    // so the queue is in the interface's description and its id is `port * queues + index`.
    let nq = chosen.len() as u32;
    for (i, name) in ports.iter().enumerate() {
        for t in &chosen {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                    InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                        "sluice port {i} ({name}) queue {}",
                        t.queue
                    ))),
                    // Timestamps in nanoseconds (pcap-file writes them so).
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            writer
                .write_pcapng_block(idb)
                .map_err(|e| format!("writing the pcapng header: {e}"))?;
        }
    }

    // Arm every chosen worker with a ring of its own.
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    let mut rings = Vec::with_capacity(chosen.len());
    let mut stats = Vec::with_capacity(chosen.len());
    for t in &chosen {
        let (producer, consumer) = rtrb::RingBuffer::new(RING_BYTES);
        let st = Arc::new(SessionStats::default());
        t.tap
            .arm(Session::new(generation, producer, filter, st.clone()));
        rings.push((rings.len() as u32, consumer));
        stats.push(st);
    }
    let disarm = || chosen.iter().for_each(|t| t.tap.disarm());
    log::info!(
        "capture started: {} queue(s), port {}, direction {}, snaplen {snaplen}",
        chosen.len(),
        req.port.as_deref().unwrap_or("any"),
        if req.both { "both" } else { "rx" }
    );

    let started = Instant::now();
    let deadline = req
        .duration_ms
        .map(|ms| started + Duration::from_millis(ms));
    let limit = req.count.unwrap_or(u64::MAX);
    let mut written = 0u64;
    let mut rec = Record {
        ts_ns: 0,
        orig_len: 0,
        port: 0,
        dir: Direction::Rx,
        data: Vec::with_capacity(snaplen as usize),
    };
    let mut write_err = None;
    let mut end = loop {
        let mut progress = false;
        for (index, ring) in &mut rings {
            while written < limit && read_record(ring, &mut rec) {
                progress = true;
                if let Err(e) = write_record(&mut writer, *index, nq, &rec) {
                    write_err = Some(e);
                    break;
                }
                written += 1;
            }
        }
        if write_err.is_some() {
            break End::Output;
        }
        if written >= limit {
            break End::Count;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break End::Duration;
        }
        if cancelled() {
            break End::Client;
        }
        if !progress {
            // Hand what is buffered to the reader (a pipe into tcpdump) while the rings refill.
            if writer.get_mut().flush().is_err() {
                break End::Output;
            }
            std::thread::sleep(IDLE_WAIT);
        }
    };
    disarm();
    // What the workers wrote before they saw the disarm is still owed, up to the count.
    let until = Instant::now() + RELEASE_WAIT;
    while end != End::Output {
        let mut progress = false;
        for (index, ring) in &mut rings {
            while written < limit && read_record(ring, &mut rec) {
                progress = true;
                if write_record(&mut writer, *index, nq, &rec).is_err() {
                    end = End::Output;
                    break;
                }
                written += 1;
            }
        }
        let released = rings.iter().all(|(_, r)| r.is_abandoned() || r.is_empty());
        if (!progress && released) || Instant::now() >= until || written >= limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let flushed = writer.get_mut().flush().is_ok();
    let dropped: u64 = stats
        .iter()
        .map(|s| s.dropped.load(Ordering::Relaxed))
        .sum();
    let end = if flushed { end } else { End::Output };
    log::info!(
        "capture ended ({}): {written} frame(s) written, {dropped} dropped (ring full)",
        end.name()
    );
    Ok(json!({
        "frames": written,
        "dropped": dropped,
        "ended": end.name(),
        "seconds": started.elapsed().as_secs_f64(),
        "output_error": write_err,
    }))
}

/// One Enhanced Packet Block: the frame on the interface block of its port and queue (the
/// `index`th of `nq` captured), with its direction.
fn write_record<W: Write>(
    w: &mut PcapNgWriter<W>,
    index: u32,
    nq: u32,
    rec: &Record,
) -> Result<(), String> {
    let flags = match rec.dir {
        Direction::Rx => EPB_INBOUND,
        Direction::Tx => EPB_OUTBOUND,
    };
    let epb = EnhancedPacketBlock {
        interface_id: u32::from(rec.port) * nq + index,
        timestamp: Duration::from_nanos(rec.ts_ns),
        original_len: rec.orig_len,
        data: Cow::Borrowed(&rec.data),
        options: vec![EnhancedPacketOption::Flags(flags)],
    };
    w.write_pcapng_block(epb)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A port given by interface name or number.
fn resolve_port(ports: &[String], p: &str) -> Result<u16, String> {
    if let Some(i) = ports.iter().position(|n| n == p) {
        return Ok(i as u16);
    }
    match p.parse::<usize>() {
        Ok(i) if i < ports.len() => Ok(i as u16),
        _ => Err(format!(
            "no port {p:?}: this engine's ports are {}",
            ports
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{i} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Refuse a descriptor not open for writing before anything is armed.
fn check_writable(fd: &OwnedFd) -> Result<(), String> {
    let flags = rustix::fs::fcntl_getfl(fd)
        .map_err(|e| format!("the output descriptor is unusable: {e}"))?;
    let mode = flags & rustix::fs::OFlags::RWMODE;
    if mode == rustix::fs::OFlags::WRONLY || mode == rustix::fs::OFlags::RDWR {
        Ok(())
    } else {
        Err("the output descriptor is not open for writing".into())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::worker::capture::CaptureHook;
    use std::io::Read;

    #[test]
    fn ports_resolve_by_name_or_number() {
        let ports = ["va".to_string(), "vb".to_string()];
        assert_eq!(resolve_port(&ports, "vb"), Ok(1));
        assert_eq!(resolve_port(&ports, "0"), Ok(0));
        assert!(
            resolve_port(&ports, "2")
                .unwrap_err()
                .contains("0 (va), 1 (vb)")
        );
    }

    #[test]
    fn a_capture_writes_pcapng_a_reader_parses() {
        let tap = Arc::new(Tap::default());
        let mut hook = CaptureHook::new(tap.clone());
        let (mut reader, writer) = std::io::pipe().unwrap();
        let feeder = std::thread::spawn(move || {
            // The worker's side: record once the tap is armed.
            let mut sent = 0u8;
            let start = Instant::now();
            while sent < 3 && start.elapsed() < Duration::from_secs(5) {
                if let Some(s) = hook.active() {
                    s.record(
                        1_000_000_123 + u64::from(sent),
                        0,
                        Direction::Rx,
                        &[sent; 60],
                    );
                    s.publish();
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        });
        let req = CaptureRequest {
            count: Some(3),
            snaplen: Some(50),
            ..Default::default()
        };
        let reply = run(
            &["va".into()],
            &[Target {
                queue: 0,
                tap: &tap,
            }],
            &req,
            OwnedFd::from(writer),
            &|| false,
        )
        .unwrap();
        assert_eq!(feeder.join().unwrap(), 3);
        assert_eq!(
            (reply["frames"].as_u64(), reply["ended"].as_str()),
            (Some(3), Some("count"))
        );
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).unwrap();
        let mut r = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
        let mut n = 0u8;
        while let Some(b) = r.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = b.unwrap() {
                assert_eq!((p.original_len, p.data.len()), (60, 50));
                assert_eq!(p.data[0], n);
                assert_eq!(
                    p.timestamp,
                    Duration::from_nanos(1_000_000_123 + u64::from(n))
                );
                n += 1;
            }
        }
        assert_eq!(n, 3);
        assert!(!tap.is_armed());
    }
}
