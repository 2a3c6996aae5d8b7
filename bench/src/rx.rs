//! The receiver for reflected benchmark frames, on the generator's side of the veth pair.
//!
//! The generator stamps every frame ([`crate::payload`]); the device under test reflects it; the
//! receiver steers the reflected frames into an AF_XDP socket with sluice's own engine (XDP
//! steering, one worker) and runs [`RxApp`] on them. Per frame it finds the stamp behind
//! Ethernet, up to two VLAN tags, IPv4/IPv6 and UDP/TCP, and records: frames and bytes, the
//! latency `arrival − tx timestamp` in an HDR histogram, uniques, duplicates, reordering and
//! late frames over the u32 sequence space (a sliding-window bitmap behind the highest sequence
//! seen), per-flow counts, and the departure gaps between consecutive sequence numbers' stamps
//! (how evenly the generator spaced them; [`GapStats`]). Frames without a stamp are counted as `foreign`. Every frame is
//! recycled (`Drop(Policy)`), none is sent.
//!
//! [`Receiver`] wires it up (`start` → `snapshot` … → `stop`) and hands back an [`RxReport`],
//! serializable to JSON, with loss computed against the generator's sent count.
//!
//! What this module must never do: allocate, log, lock or make a system call per frame
//! ([`RxApp::process`] reads the clock once per batch, through the vDSO), or send anything.

use crate::payload::Stamp;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use sluice::apps::{App, Batch, DropReason, Verdict};
use sluice::steer::{Action, Counters, L4Proto, Rule, SteerError, Steering, XdpMode};
use sluice::wire::{
    EtherType, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, ipv4, ipv6, vlan,
};
use sluice::worker::{self, Local, WorkerConfig, WorkerError, WorkerHandle};
use sluice::xsk::{Census, KernelStats, XskConfig, XskError, XskQueue};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Sequence numbers tracked behind the highest one seen (2^20 = 128 KiB of bitmap): at 5 Mpps
/// that is ~200 ms of reordering. A frame further behind is counted as `late`, undecided between
/// duplicate and new.
pub const SEQ_WINDOW: u64 = 1 << 20;

/// Flows counted one by one (flow index of the stamp); frames of higher flows are counted in
/// `flow_overflow` only.
pub const MAX_FLOWS: usize = 1024;

/// Highest latency the histogram tells apart (10 s); larger values are recorded as this.
pub const LATENCY_MAX_NS: u64 = 10_000_000_000;

/// Significant decimal digits of the latency histogram (0.1 % value resolution).
pub const LATENCY_SIGFIG: u8 = 3;

/// The RX queue the receiver serves (see [`Receiver::start`]).
const QUEUE: u32 = 0;

/// Extended sequence numbers start here, so that a frame up to [`SEQ_WINDOW`] before the first
/// one seen still has a non-negative extended number.
const SEQ_BASE: u64 = 1 << 32;

const SEQ_MASK: u64 = SEQ_WINDOW - 1;

/// `CLOCK_MONOTONIC` in ns — the clock the generator stamps with (`bpf_ktime_get_ns`).
#[inline]
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; a zero reading would only show as a huge latency.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|ts| {
            (ts.tv_sec() as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(ts.tv_nsec() as u64)
        })
        .unwrap_or(0)
}

/// Find the benchmark stamp at the start of the L4 payload of an Ethernet frame: Ethernet, up
/// to two VLAN tags, IPv4 (not a fragment) or IPv6 (no extension headers), UDP or TCP. `None`
/// if the frame is anything else, is truncated or malformed, or its payload carries no stamp.
#[inline]
pub fn find_stamp(frame: &[u8]) -> Option<Stamp> {
    let encap = vlan::walk(frame).ok()?;
    let l3 = frame.get(encap.l3_offset..)?;
    let (proto, l4) = match encap.ether_type {
        EtherType::IPV4 => {
            if l3.len() < ipv4::HEADER_LEN {
                return None;
            }
            let ip = Ipv4Packet::new_checked(l3).ok()?;
            if ip.version() != 4 || ip.is_fragment() {
                return None;
            }
            (ip.protocol(), ip.into_payload())
        }
        EtherType::IPV6 => {
            if l3.len() < ipv6::HEADER_LEN {
                return None;
            }
            let ip = Ipv6Packet::new_checked(l3).ok()?;
            if ip.version() != 6 {
                return None;
            }
            (ip.next_header(), ip.into_payload())
        }
        _ => return None,
    };
    match proto {
        IpProtocol::UDP => Stamp::read(UdpPacket::new_checked(l4).ok()?.payload()),
        IpProtocol::TCP => Stamp::read(TcpPacket::new_checked(l4).ok()?.payload()),
        _ => None,
    }
}

/// How a sequence number relates to the ones seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqClass {
    /// Higher than every one seen so far (the normal case).
    New,
    /// Not seen before, but lower than the highest seen: it arrived after a later one.
    Reordered,
    /// Seen before (within the window).
    Duplicate,
    /// [`SEQ_WINDOW`] or more behind the highest seen: too old to tell.
    Late,
}

/// Which sequence numbers have been seen, over the wrapping u32 space: a bitmap of the
/// [`SEQ_WINDOW`] numbers up to the highest seen. Sequence numbers are extended to u64 (the
/// highest one only moves forward, by the signed 32-bit distance), so wrapping is handled.
struct SeqWindow {
    bits: Box<[u64]>,
    started: bool,
    /// Extended number of the highest sequence seen.
    highest: u64,
    /// Extended number of the lowest sequence counted as new or reordered.
    lowest: u64,
}

impl SeqWindow {
    fn new() -> Self {
        SeqWindow {
            bits: vec![0u64; (SEQ_WINDOW / 64) as usize].into_boxed_slice(),
            started: false,
            highest: 0,
            lowest: 0,
        }
    }

    /// Set the bit of extended number `s`; returns whether it was set already.
    #[inline]
    fn test_and_set(&mut self, s: u64) -> bool {
        let i = (s & SEQ_MASK) as usize;
        let (w, m) = (i / 64, 1u64 << (i % 64));
        let old = self.bits[w] & m != 0;
        self.bits[w] |= m;
        old
    }

    /// Clear the bits of extended numbers `from..to` (they now stand for new numbers).
    #[inline]
    fn clear(&mut self, from: u64, to: u64) {
        if to - from >= SEQ_WINDOW {
            self.bits.fill(0);
            return;
        }
        // Amortized O(1) per sequence number: every slot is cleared once per pass of the
        // window; whole words at a time once aligned.
        let mut p = from;
        while p < to {
            let i = (p & SEQ_MASK) as usize;
            let (w, b) = (i / 64, i % 64);
            if b == 0 && to - p >= 64 {
                self.bits[w] = 0;
                p += 64;
            } else {
                self.bits[w] &= !(1u64 << b);
                p += 1;
            }
        }
    }

    #[inline]
    fn observe(&mut self, seq: u32) -> SeqClass {
        if !self.started {
            self.started = true;
            self.highest = SEQ_BASE + u64::from(seq);
            self.lowest = self.highest;
            self.test_and_set(self.highest);
            return SeqClass::New;
        }
        let delta = seq.wrapping_sub(self.highest as u32) as i32;
        if delta > 0 {
            let new = self.highest + delta as u64;
            self.clear(self.highest + 1, new + 1);
            self.highest = new;
            self.test_and_set(new);
            SeqClass::New
        } else if delta == 0 {
            SeqClass::Duplicate
        } else {
            let back = u64::from(delta.unsigned_abs());
            if back >= SEQ_WINDOW {
                return SeqClass::Late;
            }
            let s = self.highest - back;
            if self.test_and_set(s) {
                SeqClass::Duplicate
            } else {
                self.lowest = self.lowest.min(s);
                SeqClass::Reordered
            }
        }
    }
}

/// The plain counters of an [`RxApp`].
///
/// `frames = unique + duplicates + late`; `reordered ⊆ unique`. Frames without a stamp are only
/// in `foreign` (not in `frames`/`bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxCounts {
    /// Stamped frames received.
    pub frames: u64,
    /// Bytes of the stamped frames (Ethernet frame without FCS, as the engine counts).
    pub bytes: u64,
    /// Distinct sequence numbers received (within the window).
    pub unique: u64,
    /// Frames whose sequence number had been received already.
    pub duplicates: u64,
    /// Unique frames that arrived after a frame with a higher sequence number.
    pub reordered: u64,
    /// Frames [`SEQ_WINDOW`] or more behind the highest sequence seen (not in `unique`).
    pub late: u64,
    /// Frames without a stamp (not generator traffic, or not parseable).
    pub foreign: u64,
    /// Stamped frames whose timestamp lies after the arrival time (not in the histogram).
    pub future_ts: u64,
    /// Stamped frames whose flow index is `>= MAX_FLOWS` (not in the per-flow counts).
    pub flow_overflow: u64,
    /// Lowest sequence number counted as unique (0 if none).
    pub first_seq: u32,
    /// Highest sequence number seen (0 if none).
    pub last_seq: u32,
    /// Sequence numbers from `first_seq` to `last_seq`, both included, over the wrap (0 if none).
    pub seq_span: u64,
}

/// The receiving packet function: counts and times every stamped frame, recycles all frames.
///
/// All memory (histogram, bitmap, flow table) is allocated in [`RxApp::new`]; recording never
/// allocates (`Histogram::saturating_record` clamps instead of resizing).
pub struct RxApp {
    counts: RxCounts,
    seq: SeqWindow,
    latency: Histogram<u64>,
    /// Departure gaps: stamp time of a frame minus that of its predecessor in sequence, for
    /// every frame that arrives right after its predecessor (no loss, no reordering between).
    gaps: Histogram<u64>,
    /// Sequence number and stamp time of the last frame counted as new.
    prev: Option<(u32, u64)>,
    flows: Box<[u64]>,
}

impl Default for RxApp {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RxApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxApp")
            .field("counts", &self.counts)
            .field("latency_samples", &self.latency.len())
            .finish()
    }
}

impl RxApp {
    /// A receiver with empty counters: 1 ns .. [`LATENCY_MAX_NS`] histogram at
    /// [`LATENCY_SIGFIG`] digits, [`SEQ_WINDOW`]-bit window, [`MAX_FLOWS`] flow counters.
    pub fn new() -> Self {
        let latency = Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIG)
            .expect("constant histogram bounds are valid");
        debug_assert!(!latency.is_auto_resize());
        RxApp {
            counts: RxCounts::default(),
            seq: SeqWindow::new(),
            gaps: latency.clone(),
            prev: None,
            latency,
            flows: vec![0u64; MAX_FLOWS].into_boxed_slice(),
        }
    }

    /// Record every frame of `batch` as arrived at `now_ns` (CLOCK_MONOTONIC) and set each
    /// verdict to `Drop(Policy)`. [`App::process`] calls this with the clock read once per batch.
    #[inline]
    pub fn process_at(&mut self, batch: &mut Batch<'_, '_>, now_ns: u64) {
        for (frame, verdict) in batch.iter_mut() {
            self.record_frame(frame, now_ns);
            *verdict = Verdict::Drop(DropReason::Policy);
        }
    }

    /// Record one frame that arrived at `now_ns`; returns how its sequence number was
    /// classified, `None` for a foreign frame.
    #[inline]
    pub fn record_frame(&mut self, frame: &[u8], now_ns: u64) -> Option<SeqClass> {
        let Some(stamp) = find_stamp(frame) else {
            self.counts.foreign += 1;
            return None;
        };
        let c = &mut self.counts;
        c.frames += 1;
        c.bytes += frame.len() as u64;
        match self.flows.get_mut(usize::from(stamp.flow)) {
            Some(n) => *n += 1,
            None => c.flow_overflow += 1,
        }
        let class = self.seq.observe(stamp.seq);
        if class == SeqClass::New {
            if let Some((seq, ts)) = self.prev
                && stamp.seq == seq.wrapping_add(1)
                && stamp.ts_ns >= ts
            {
                self.gaps.saturating_record(stamp.ts_ns - ts);
            }
            self.prev = Some((stamp.seq, stamp.ts_ns));
        }
        match class {
            SeqClass::New => c.unique += 1,
            SeqClass::Reordered => {
                c.unique += 1;
                c.reordered += 1;
            }
            SeqClass::Duplicate => c.duplicates += 1,
            SeqClass::Late => c.late += 1,
        }
        // A duplicate's latency says when the copy arrived, not the frame: leave it out, so
        // the histogram holds one sample per received sequence number (`unique + late`).
        if class != SeqClass::Duplicate {
            match now_ns.checked_sub(stamp.ts_ns) {
                Some(lat) => self.latency.saturating_record(lat),
                None => c.future_ts += 1,
            }
        }
        Some(class)
    }

    /// The counters so far.
    pub fn counts(&self) -> RxCounts {
        let mut c = self.counts;
        if self.seq.started {
            c.first_seq = self.seq.lowest as u32;
            c.last_seq = self.seq.highest as u32;
            c.seq_span = self.seq.highest - self.seq.lowest + 1;
        }
        c
    }

    /// The latency histogram (ns), one sample per non-duplicate stamped frame whose timestamp
    /// is not in the future.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// The departure-gap histogram (ns): for each frame that arrived right after its
    /// predecessor in sequence, the difference of their generator timestamps — how evenly the
    /// generator spaced them, as far as the frames that came back tell.
    pub fn departure_gaps(&self) -> &Histogram<u64> {
        &self.gaps
    }

    /// Frames per flow index (`0..MAX_FLOWS`).
    pub fn flows(&self) -> &[u64] {
        &self.flows
    }

    /// A report of what this app recorded. The engine-side fields (worker counters, census,
    /// kernel and XDP statistics, elapsed time) are left at their defaults; [`Receiver::stop`]
    /// fills them in.
    pub fn report(&self) -> RxReport {
        RxReport {
            iface: String::new(),
            elapsed_s: 0.0,
            counts: self.counts(),
            latency: LatencySummary::from_histogram(&self.latency),
            departure_gaps: self.gaps.clone(),
            flows: self
                .flows
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(i, &n)| FlowCount {
                    flow: i as u16,
                    frames: n,
                })
                .collect(),
            worker: Local::default(),
            census: Census::default(),
            kernel: KernelStats::default(),
            xdp: Counters::default(),
            worker_error: None,
            histogram: self.latency.clone(),
        }
    }
}

impl App for RxApp {
    fn name(&self) -> &'static str {
        "rx"
    }

    /// Reads the clock once per batch, so every frame of a batch gets the batch's time: the
    /// latency includes the wait in the RX ring, as it should for an end-to-end figure.
    #[inline]
    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        if batch.is_empty() {
            return;
        }
        let now = monotonic_ns();
        self.process_at(batch, now);
    }
}

/// Frames received on one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCount {
    /// Flow index from the stamp.
    pub flow: u16,
    /// Stamped frames received on it.
    pub frames: u64,
}

/// Latency percentiles in ns, and the histogram's percentile distribution for CDF plots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Smallest sample (bucket-equivalent value).
    pub min_ns: u64,
    /// Mean.
    pub mean_ns: f64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample (bucket-equivalent value).
    pub max_ns: u64,
    /// `(fraction ≤ value, value ns)` steps of HdrHistogram's percentile distribution (5 ticks
    /// per half distance, so the tail is resolved), ending at fraction 1.0.
    pub distribution: Vec<(f64, u64)>,
}

impl LatencySummary {
    /// Summarize `h` (all zeros if it is empty).
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let mut distribution: Vec<(f64, u64)> = Vec::new();
        for v in h.iter_quantiles(5) {
            let point = (v.quantile_iterated_to(), v.value_iterated_to());
            match distribution.last_mut() {
                // Keep one point per value: the highest fraction at or below it.
                Some(last) if last.1 == point.1 => *last = point,
                _ => distribution.push(point),
            }
        }
        LatencySummary {
            count: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean(),
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            distribution,
        }
    }
}

/// What a receiver saw, for the report files (`serde_json::to_string(&report)`).
#[derive(Clone, Serialize)]
pub struct RxReport {
    /// Interface received on.
    pub iface: String,
    /// Seconds from start to stop.
    pub elapsed_s: f64,
    /// Frame, sequence and flow counters.
    #[serde(flatten)]
    pub counts: RxCounts,
    /// Latency percentiles.
    pub latency: LatencySummary,
    /// Departure gaps between consecutive frames, ns ([`RxApp::departure_gaps`]); not
    /// serialized (see [`GapStats`]).
    #[serde(skip)]
    pub departure_gaps: Histogram<u64>,
    /// Frames per flow, flows with at least one frame, by flow index.
    pub flows: Vec<FlowCount>,
    /// The receiving worker's own counters (`rx_packets` counts every frame steered to it).
    pub worker: Local,
    /// The worker's final frame census (`kernel == 0`: every frame accounted for).
    pub census: Census,
    /// The AF_XDP socket's kernel counters: `rx_dropped`/`rx_ring_full` are frames the
    /// *receiver* lost, not the device under test.
    pub kernel: KernelStats,
    /// The receiver's XDP program counters just before detaching.
    pub xdp: Counters,
    /// Set if the worker thread panicked (the counters are then empty).
    pub worker_error: Option<String>,
    /// The whole latency histogram (ns); not serialized (see `latency.distribution`).
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

impl std::fmt::Debug for RxReport {
    /// Everything but the histogram's buckets (tens of thousands of counters).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxReport")
            .field("iface", &self.iface)
            .field("elapsed_s", &self.elapsed_s)
            .field("counts", &self.counts)
            .field("latency", &self.latency)
            .field("flows", &self.flows.len())
            .field("worker", &self.worker)
            .field("census", &self.census)
            .field("kernel", &self.kernel)
            .field("xdp", &self.xdp)
            .field("worker_error", &self.worker_error)
            .finish_non_exhaustive()
    }
}

impl RxReport {
    /// Frames the generator sent (`sent`) that never came back: `sent − unique − late`
    /// (saturating). Late frames count as received; a late duplicate would hide one loss.
    pub fn loss(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.counts.unique + self.counts.late)
    }

    /// Up to `points` points `(latency ns, fraction of samples ≤ it)` of the latency CDF, from
    /// the histogram's recorded buckets (evenly thinned when there are more, always keeping the
    /// last, at fraction 1.0). Empty if nothing was recorded or `points == 0`.
    pub fn cdf(&self, points: usize) -> Vec<(f64, f64)> {
        let h = &self.histogram;
        if points == 0 || h.is_empty() {
            return Vec::new();
        }
        let all: Vec<(f64, f64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to() as f64, v.quantile_iterated_to()))
            .collect();
        if all.len() <= points {
            return all;
        }
        let n = all.len();
        if points == 1 {
            return vec![all[n - 1]];
        }
        // Indices 0, .., n-1, evenly spread over `points` slots.
        (0..points)
            .map(|i| all[i * (n - 1) / (points - 1)])
            .collect()
    }
}

/// How evenly frames left the generator, from a departure-gap histogram (ns) and the ideal gap
/// of the rate asked for: percentiles in µs and the share of gaps far from the ideal.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GapStats {
    /// Gaps measured.
    pub count: u64,
    /// The ideal gap, µs (1 / rate).
    pub ideal_us: f64,
    /// 1st percentile, µs.
    pub p1_us: f64,
    /// 10th percentile, µs.
    pub p10_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Share of gaps shorter than half the ideal (frames bunched together), %.
    pub bunched_pct: f64,
    /// Share of gaps within ±10 % of the ideal, %.
    pub within_10pct: f64,
    /// Share of gaps longer than twice the ideal (a hole in the schedule), %.
    pub holes_pct: f64,
}

impl GapStats {
    /// Summarise `h` (gaps in ns) against the ideal gap `ideal_ns`.
    pub fn from_histogram(h: &Histogram<u64>, ideal_ns: f64) -> GapStats {
        let n = h.len();
        if n == 0 {
            return GapStats {
                ideal_us: ideal_ns / 1e3,
                ..GapStats::default()
            };
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        // Share of samples in [lo, hi] ns, by bucket (bucket resolution: 0.1 %).
        let share = |lo: f64, hi: f64| {
            let c: u64 = h
                .iter_recorded()
                .filter(|v| {
                    let x = v.value_iterated_to() as f64;
                    x >= lo && x <= hi
                })
                .map(|v| v.count_at_value())
                .sum();
            c as f64 * 100.0 / n as f64
        };
        GapStats {
            count: n,
            ideal_us: ideal_ns / 1e3,
            p1_us: us(0.01),
            p10_us: us(0.10),
            p50_us: us(0.50),
            p90_us: us(0.90),
            p99_us: us(0.99),
            p999_us: us(0.999),
            bunched_pct: share(0.0, ideal_ns / 2.0 - 1e-9),
            within_10pct: share(ideal_ns * 0.9, ideal_ns * 1.1),
            holes_pct: share(ideal_ns * 2.0 + 1e-9, f64::MAX),
        }
    }
}

/// Live progress of a running [`Receiver`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RxProgress {
    /// Frames the worker has received so far (stamped or not).
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames the kernel could not hand to the socket (`rx_dropped + rx_ring_full`, published
    /// every few thousand batches and when idle).
    pub ring_drops: u64,
    /// Seconds since start.
    pub elapsed_s: f64,
}

/// Why a [`Receiver`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum RxError {
    /// No `(protocol, port)` to steer.
    #[error("receiver on {iface}: no ports to steer")]
    NoPorts {
        /// Interface.
        iface: String,
    },
    /// More ports than the rules map holds.
    #[error("receiver on {iface}: {count} ports given; the rules map holds at most {max}")]
    TooManyPorts {
        /// Interface.
        iface: String,
        /// Ports given.
        count: usize,
        /// Capacity of the rules map.
        max: u32,
    },
    /// The interface has more than one RX queue; frames on the others would be missed.
    #[error(
        "receiver on {iface}: it has {queues} RX queues but the receiver serves queue 0 only \
         (frames on the others would count as lost); use a single-queue interface"
    )]
    MultiQueue {
        /// Interface.
        iface: String,
        /// RX queues it has.
        queues: u32,
    },
    /// AF_XDP socket setup.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// XDP program load/attach, maps.
    #[error(transparent)]
    Steer(#[from] SteerError),
    /// The worker thread could not start.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// A running receiver: XDP steering on an interface, one AF_XDP socket on queue 0, one worker
/// running [`RxApp`]. Dropping it without [`stop`](Receiver::stop) detaches and stops the worker
/// (the results are lost).
pub struct Receiver {
    iface: String,
    started: Instant,
    stop: Arc<AtomicBool>,
    // Options so that `stop` can take them out of a type that implements Drop.
    steering: Option<Steering>,
    worker: Option<WorkerHandle<RxApp>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("iface", &self.iface)
            .finish()
    }
}

impl Receiver {
    /// Start receiving on `iface`: steer the frames to each `(protocol, destination port)` of
    /// `ports` into an AF_XDP socket on RX queue 0 and count them on a worker thread, pinned to
    /// `core` if given, spinning instead of sleeping when idle if `busy_poll`.
    ///
    /// Must be called from a thread inside the interface's network namespace (e.g. in
    /// `Netns::run` of the test bed): the interface is looked up, and the socket and the XDP
    /// link are created, in the caller's namespace. They stay bound to it afterwards, so the
    /// returned `Receiver` may be used and stopped from any thread. Needs root (CAP_NET_ADMIN,
    /// CAP_NET_RAW, CAP_BPF). The interface must have a single RX queue.
    pub fn start(
        iface: &str,
        ports: &[(L4Proto, u16)],
        core: Option<usize>,
        busy_poll: bool,
    ) -> Result<Receiver, RxError> {
        if ports.is_empty() {
            return Err(RxError::NoPorts {
                iface: iface.into(),
            });
        }
        let max = sluice_ebpf::RULES_MAX_ENTRIES;
        if ports.len() > max as usize {
            return Err(RxError::TooManyPorts {
                iface: iface.into(),
                count: ports.len(),
                max,
            });
        }
        if let Ok(ch) = sluice::sys::ethtool_channels(iface)
            && ch.rx_queues() > 1
        {
            return Err(RxError::MultiQueue {
                iface: iface.into(),
                queues: ch.rx_queues(),
            });
        }
        let app = RxApp::new();
        // Socket first, so a busy queue fails before anything is attached (as `sluice run`).
        let q = XskQueue::open(iface, QUEUE, &XskConfig::default())?;
        let mut steering = Steering::load_and_attach(iface, XdpMode::Auto)?;
        steering.register_socket(QUEUE, q.fd())?;
        for &(proto, port) in ports {
            steering.set_rule(Rule {
                proto,
                port,
                action: Action::Redirect,
            })?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = WorkerConfig {
            core,
            busy_poll,
            park: Default::default(),
            kernel: None,
            ports_down: None,
        };
        let worker = worker::spawn(q, app, cfg, stop.clone())?;
        Ok(Receiver {
            iface: iface.into(),
            started: Instant::now(),
            stop,
            steering: Some(steering),
            worker: Some(worker),
        })
    }

    /// Progress so far, from the counters the worker publishes once per batch.
    pub fn snapshot(&self) -> RxProgress {
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let Some(w) = &self.worker else {
            return RxProgress {
                elapsed_s,
                ..Default::default()
            };
        };
        let l = w.shared.snapshot();
        let k = w.shared.kernel();
        RxProgress {
            frames: l.rx_packets,
            bytes: l.rx_bytes,
            ring_drops: k.rx_dropped + k.rx_ring_full,
            elapsed_s,
        }
    }

    /// Detach the XDP program (reflected frames go to the kernel from here on), stop and join
    /// the worker, and report. Frames still in flight to the interface are not waited for: let
    /// the generator finish and the receiver drain (watch [`snapshot`](Self::snapshot)) first.
    pub fn stop(mut self) -> RxReport {
        let xdp = self
            .steering
            .as_ref()
            .and_then(|s| s.counters().ok())
            .unwrap_or_default();
        drop(self.steering.take());
        self.stop.store(true, Ordering::Relaxed);
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let worker = self.worker.take().expect("worker is present until stop");
        let shared = worker.shared.clone();
        let mut report = match worker.join() {
            Ok(app) => app.report(),
            Err(msg) => {
                log::error!("receiver on {}: worker died: {msg}", self.iface);
                let mut r = RxApp::new().report();
                r.worker_error = Some(msg);
                r
            }
        };
        report.iface = self.iface.clone();
        report.elapsed_s = elapsed_s;
        report.worker = shared.snapshot();
        report.census = shared.census();
        report.kernel = shared.kernel();
        report.xdp = xdp;
        report
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.steering.take());
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use etherparse::{PacketBuilder, VlanId};
    use proptest::prelude::*;

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    fn stamp(flow: u16, seq: u32, ts_ns: u64) -> Vec<u8> {
        let mut p = vec![0u8; crate::payload::LEN + 2];
        Stamp { flow, seq, ts_ns }.write(&mut p);
        p
    }

    #[derive(Clone, Copy)]
    enum L3 {
        V4,
        V6,
    }

    #[derive(Clone, Copy)]
    enum L4 {
        Udp,
        Tcp,
    }

    /// A frame with `tags` VLAN tags (0..=2) carrying `payload`.
    fn frame_with(l3: L3, l4: L4, tags: usize, payload: &[u8]) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let vid = |v| VlanId::try_new(v).unwrap();
        macro_rules! finish {
            ($b:expr) => {{
                let ip = $b;
                let mut out = Vec::new();
                match (l3, l4) {
                    (L3::V4, L4::Udp) => ip
                        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                        .udp(9000, 9001)
                        .write(&mut out, payload)
                        .unwrap(),
                    (L3::V4, L4::Tcp) => ip
                        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                        .tcp(9000, 9001, 1, 1024)
                        .write(&mut out, payload)
                        .unwrap(),
                    (L3::V6, L4::Udp) => ip
                        .ipv6([0xfd; 16], [0xfe; 16], 64)
                        .udp(9000, 9001)
                        .write(&mut out, payload)
                        .unwrap(),
                    (L3::V6, L4::Tcp) => ip
                        .ipv6([0xfd; 16], [0xfe; 16], 64)
                        .tcp(9000, 9001, 1, 1024)
                        .write(&mut out, payload)
                        .unwrap(),
                }
                out
            }};
        }
        match tags {
            0 => finish!(eth),
            1 => finish!(eth.single_vlan(vid(10))),
            _ => finish!(eth.double_vlan(vid(10), vid(20))),
        }
    }

    fn udp4(flow: u16, seq: u32, ts: u64) -> Vec<u8> {
        frame_with(L3::V4, L4::Udp, 0, &stamp(flow, seq, ts))
    }

    /// Run `frames` through `app` as one batch at `now`; every verdict must be Drop(Policy).
    fn run(app: &mut RxApp, frames: &mut [Vec<u8>], now: u64) {
        let mut refs: Vec<&mut [u8]> = frames.iter_mut().map(|f| f.as_mut_slice()).collect();
        let mut verdicts = vec![Verdict::Tx; refs.len()];
        let mut batch = Batch::new(&mut refs, &mut verdicts);
        app.process_at(&mut batch, now);
        assert!(
            batch
                .verdicts()
                .iter()
                .all(|v| *v == Verdict::Drop(DropReason::Policy))
        );
    }

    fn run_seqs(app: &mut RxApp, seqs: &[u32]) {
        let mut frames: Vec<Vec<u8>> = seqs.iter().map(|&s| udp4(0, s, 1_000)).collect();
        run(app, &mut frames, 2_000);
    }

    #[test]
    fn departure_gaps_only_between_consecutive_frames() {
        let mut app = RxApp::new();
        // Seqs 0,1,2 at 10 µs spacing; 3 lost; 4,5 at 10 µs; 7 arrives before 6 (reordered);
        // then 8 right after 7 (a consecutive pair again), and a duplicate of 8.
        let sent: [(u32, u64); 8] = [
            (0, 1_000),
            (1, 11_000),
            (2, 21_000),
            (4, 41_000),
            (5, 51_000),
            (7, 71_000),
            (6, 61_000),
            (8, 81_500),
        ];
        let mut frames: Vec<Vec<u8>> = sent.iter().map(|&(s, t)| udp4(0, s, t)).collect();
        frames.push(udp4(0, 8, 81_500));
        run(&mut app, &mut frames, 100_000);
        let g = app.departure_gaps();
        // 0→1, 1→2, 4→5, 7→8 (6 is reordered; 8's duplicate is not new).
        assert_eq!(g.len(), 4);
        assert_eq!(g.count_at(10_000), 3);
        assert_eq!(g.count_at(10_500), 1);
        let s = GapStats::from_histogram(g, 10_000.0);
        assert_eq!(s.count, 4);
        assert!((s.ideal_us - 10.0).abs() < 1e-9);
        assert!((s.p50_us - 10.0).abs() < 0.02, "{s:?}");
        assert!((s.within_10pct - 100.0).abs() < 1e-9, "{s:?}");
        assert_eq!((s.bunched_pct, s.holes_pct), (0.0, 0.0));
    }

    #[test]
    fn gap_stats_shares() {
        let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIG).unwrap();
        // Ideal 2 µs: 6 on time, 2 bunched (100 ns), 1 a hole (10 µs), 1 just late (2.5 µs).
        for v in [
            2_000, 2_000, 2_000, 1_900, 2_100, 2_000, 100, 100, 10_000, 2_500,
        ] {
            h.record(v).unwrap();
        }
        let s = GapStats::from_histogram(&h, 2_000.0);
        assert_eq!(s.count, 10);
        assert!((s.bunched_pct - 20.0).abs() < 1e-9, "{s:?}");
        assert!((s.within_10pct - 60.0).abs() < 1e-9, "{s:?}");
        assert!((s.holes_pct - 10.0).abs() < 1e-9, "{s:?}");
        assert!((s.p50_us - 2.0).abs() < 0.01, "{s:?}");
        assert!((s.p1_us - 0.1).abs() < 0.001, "{s:?}");
        let empty = GapStats::from_histogram(&Histogram::new(3).unwrap(), 1_000.0);
        assert_eq!((empty.count, empty.ideal_us), (0, 1.0));
    }

    #[test]
    fn counts_in_order_frames() {
        let mut app = RxApp::new();
        let mut frames: Vec<Vec<u8>> = (0..10).map(|s| udp4(1, s, 100)).collect();
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!(frames[0].len(), 60, "the minimum frame carries the stamp");
        run(&mut app, &mut frames, 200);
        let c = app.counts();
        assert_eq!(
            (
                c.frames,
                c.bytes,
                c.unique,
                c.duplicates,
                c.reordered,
                c.late,
                c.foreign
            ),
            (10, bytes, 10, 0, 0, 0, 0)
        );
        assert_eq!((c.first_seq, c.last_seq, c.seq_span), (0, 9, 10));
        assert_eq!(app.flows()[1], 10);
        let r = app.report();
        assert_eq!(r.loss(10), 0);
        assert_eq!(r.loss(15), 5);
        assert_eq!(
            r.flows,
            vec![FlowCount {
                flow: 1,
                frames: 10
            }]
        );
    }

    #[test]
    fn duplicates_and_reordering() {
        let mut app = RxApp::new();
        run_seqs(&mut app, &[0, 1, 3, 2, 2, 5, 4, 4, 0]);
        let c = app.counts();
        assert_eq!(c.frames, 9);
        assert_eq!(c.unique, 6);
        assert_eq!(c.duplicates, 3);
        assert_eq!(c.reordered, 2);
        assert_eq!(c.late, 0);
        assert_eq!(app.report().loss(6), 0);
        assert_eq!(app.latency().len(), 6, "duplicates are not timed");
    }

    #[test]
    fn first_frame_need_not_be_the_lowest() {
        let mut app = RxApp::new();
        run_seqs(&mut app, &[5, 3, 4, 6]);
        let c = app.counts();
        assert_eq!((c.unique, c.reordered, c.duplicates), (4, 2, 0));
        assert_eq!((c.first_seq, c.last_seq, c.seq_span), (3, 6, 4));
    }

    #[test]
    fn window_edge_and_late_frames() {
        let w = SEQ_WINDOW as u32;
        let mut app = RxApp::new();
        let class = |app: &mut RxApp, s| app.record_frame(&udp4(0, s, 1), 2).unwrap();
        assert_eq!(class(&mut app, 0), SeqClass::New);
        assert_eq!(class(&mut app, w), SeqClass::New);
        // Exactly SEQ_WINDOW behind: late; one less: inside, never seen.
        assert_eq!(class(&mut app, 0), SeqClass::Late);
        assert_eq!(class(&mut app, 1), SeqClass::Reordered);
        assert_eq!(class(&mut app, 1), SeqClass::Duplicate);
        assert_eq!(class(&mut app, w), SeqClass::Duplicate);
        let c = app.counts();
        assert_eq!((c.frames, c.unique, c.late, c.duplicates), (6, 3, 1, 2));
        assert_eq!(app.report().loss(3), 0, "a late frame counts as received");
    }

    #[test]
    fn advancing_clears_reused_slots() {
        let mut app = RxApp::new();
        let seqs: Vec<u32> = (0..100).collect();
        run_seqs(&mut app, &seqs);
        // A gap of 1000 (word-wise and bitwise clearing), then one that wraps the bitmap.
        run_seqs(&mut app, &[1100, 500, 50]);
        let c = app.counts();
        assert_eq!((c.unique, c.reordered, c.duplicates), (102, 1, 1));
        let far = 1100 + SEQ_WINDOW as u32 + 70;
        run_seqs(&mut app, &[far, far - 5, far - 5]);
        let c = app.counts();
        assert_eq!((c.unique, c.reordered, c.duplicates), (104, 2, 2));
        // Seq 1170's slot was reused by `far`; 1170 itself is now just inside the window.
        run_seqs(&mut app, &[far - (SEQ_WINDOW as u32 - 1)]);
        assert_eq!(app.counts().reordered, 3);
    }

    #[test]
    fn sequence_wraps_around_u32() {
        let mut app = RxApp::new();
        run_seqs(&mut app, &[u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1]);
        let c = app.counts();
        assert_eq!((c.unique, c.reordered, c.duplicates, c.late), (5, 0, 0, 0));
        assert_eq!((c.first_seq, c.last_seq, c.seq_span), (u32::MAX - 2, 1, 5));
        run_seqs(&mut app, &[u32::MAX, 3, 2]);
        let c = app.counts();
        assert_eq!((c.unique, c.reordered, c.duplicates), (7, 1, 1));
    }

    #[test]
    fn foreign_frames_are_counted_and_recycled() {
        let mut app = RxApp::new();
        let good = udp4(0, 0, 1);
        let mut no_magic = good.clone();
        let l4_payload = good.len() - 18;
        no_magic[l4_payload] ^= 0xff;
        let arp = {
            let mut f = good.clone();
            f[12..14].copy_from_slice(&[0x08, 0x06]);
            f
        };
        let mut fragment = good.clone();
        fragment[14 + 6] = 0x20; // MF set
        let icmp = {
            let mut f = good.clone();
            f[14 + 9] = 1;
            f
        };
        let short_payload = frame_with(L3::V4, L4::Udp, 0, &stamp(0, 0, 1)[..15]);
        let mut frames = vec![
            no_magic,
            arp,
            fragment,
            icmp,
            short_payload,
            good[..20].to_vec(),
            good[..40].to_vec(),
            Vec::new(),
            good.clone(),
        ];
        run(&mut app, &mut frames, 10);
        let c = app.counts();
        assert_eq!((c.foreign, c.frames, c.unique), (8, 1, 1));
    }

    #[test]
    fn latency_from_known_timestamp() {
        let mut app = RxApp::new();
        let now = 50_000_000_000u64;
        let mut frames = vec![udp4(0, 0, now - 12_345), udp4(0, 1, now - 1_000_000)];
        run(&mut app, &mut frames, now);
        let h = app.latency();
        assert_eq!(h.len(), 2);
        assert!(h.equivalent(h.min(), 12_345), "min {}", h.min());
        assert!(h.equivalent(h.max(), 1_000_000), "max {}", h.max());
        // A timestamp from the future is counted, not timed; a huge one saturates.
        let mut frames = vec![udp4(0, 2, now + 1), udp4(0, 3, 0)];
        run(&mut app, &mut frames, now);
        assert_eq!(app.counts().future_ts, 1);
        assert_eq!(app.latency().len(), 3);
        let h = app.latency();
        assert!(h.equivalent(h.max(), LATENCY_MAX_NS), "max {}", h.max());
        let r = app.report();
        assert_eq!(r.latency.count, 3);
        assert!(r.latency.p50_ns > 0 && r.latency.p50_ns <= r.latency.p99_ns);
    }

    #[test]
    fn vlan_ipv6_and_tcp_frames_are_found() {
        let mut app = RxApp::new();
        let mut frames = Vec::new();
        let mut seq = 0;
        for l3 in [L3::V4, L3::V6] {
            for l4 in [L4::Udp, L4::Tcp] {
                for tags in 0..=2 {
                    frames.push(frame_with(l3, l4, tags, &stamp(7, seq, 40)));
                    seq += 1;
                }
            }
        }
        run(&mut app, &mut frames, 100);
        let c = app.counts();
        assert_eq!((c.frames, c.unique, c.foreign, c.reordered), (12, 12, 0, 0));
        assert_eq!(app.flows()[7], 12);
        assert!(app.latency().equivalent(app.latency().max(), 60));
        // A third tag hides the IP header from the two-tag walk.
        let mut three = frame_with(L3::V4, L4::Udp, 2, &stamp(7, 99, 40));
        three.splice(12..12, [0x81, 0x00, 0x00, 0x1e]);
        assert_eq!(find_stamp(&three), None);
    }

    #[test]
    fn tcp_with_options_and_padded_frames() {
        let mut out = Vec::new();
        let mut tcp = etherparse::TcpHeader::new(1, 2, 3, 4);
        tcp.set_options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp_header(tcp)
            .write(&mut out, &stamp(1, 42, 9))
            .unwrap();
        assert_eq!(find_stamp(&out).map(|s| s.seq), Some(42));
        // Ethernet padding after the IP packet is ignored.
        let mut short = frame_with(L3::V4, L4::Udp, 0, &stamp(1, 43, 9)[..16]);
        short.extend_from_slice(&[0; 4]);
        assert_eq!(find_stamp(&short).map(|s| s.seq), Some(43));
    }

    #[test]
    fn flow_overflow() {
        let mut app = RxApp::new();
        let mut frames = vec![udp4(3, 0, 1), udp4(3, 1, 1), udp4(MAX_FLOWS as u16, 2, 1)];
        run(&mut app, &mut frames, 2);
        assert_eq!(app.flows()[3], 2);
        assert_eq!(app.counts().flow_overflow, 1);
        assert_eq!(app.report().flows.len(), 1);
    }

    #[test]
    fn report_serializes_and_cdf_is_monotone() {
        let mut app = RxApp::new();
        let now = 10_000_000u64;
        let mut frames: Vec<Vec<u8>> = (0..1000u32)
            .map(|s| udp4(0, s, now - 1_000 - u64::from(s) * 37))
            .collect();
        run(&mut app, &mut frames, now);
        let r = app.report();
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["frames"], 1000);
        assert_eq!(v["unique"], 1000);
        assert!(v["latency"]["p99_ns"].as_u64().unwrap() > 30_000);
        assert!(v["latency"]["distribution"].as_array().unwrap().len() > 10);
        assert!(v.get("histogram").is_none());
        let back: LatencySummary = serde_json::from_value(v["latency"].clone()).unwrap();
        assert_eq!(back, r.latency);

        for points in [1, 2, 50, 100_000] {
            let cdf = r.cdf(points);
            assert!(!cdf.is_empty() && cdf.len() <= points);
            assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
            assert_eq!(cdf.last().unwrap().1, 1.0);
        }
        assert!(r.cdf(0).is_empty());
        assert!(RxApp::new().report().cdf(10).is_empty());
        assert_eq!(RxApp::new().report().latency, LatencySummary::default());
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = monotonic_ns();
        assert!(b - a >= 2_000_000, "{a} {b}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..160), 1..8),
            now in any::<u64>(),
        ) {
            let n = frames.len() as u64;
            let mut frames = frames;
            let mut app = RxApp::new();
            run(&mut app, &mut frames, now);
            let c = app.counts();
            prop_assert_eq!(c.frames + c.foreign, n);
            prop_assert_eq!(c.frames, c.unique + c.duplicates + c.late);
        }

        #[test]
        fn mutated_frames_never_panic(
            seq in any::<u32>(),
            flips in proptest::collection::vec((0usize..70, any::<u8>()), 0..6),
            cut in 0usize..80,
            tags in 0usize..3,
        ) {
            let mut f = frame_with(L3::V4, L4::Udp, tags, &stamp(1, seq, 5));
            for (i, b) in flips {
                if let Some(x) = f.get_mut(i) {
                    *x = b;
                }
            }
            f.truncate(cut);
            let mut frames = vec![f];
            let mut app = RxApp::new();
            run(&mut app, &mut frames, 10);
            prop_assert_eq!(app.counts().frames + app.counts().foreign, 1);
        }

        #[test]
        fn counts_match_a_set_model(seqs in proptest::collection::vec(0u32..300, 1..400)) {
            let mut app = RxApp::new();
            run_seqs(&mut app, &seqs);
            let mut seen = std::collections::BTreeSet::new();
            let (mut dups, mut reord, mut high) = (0u64, 0u64, None);
            for &s in &seqs {
                if !seen.insert(s) {
                    dups += 1;
                } else if high.is_some_and(|h| s < h) {
                    reord += 1;
                }
                high = high.max(Some(s));
            }
            let c = app.counts();
            prop_assert_eq!(c.unique, seen.len() as u64);
            prop_assert_eq!(c.duplicates, dups);
            prop_assert_eq!(c.reordered, reord);
            prop_assert_eq!(c.late, 0);
        }
    }

    /// The whole receiver on a veth pair: frames injected from the engine end with AF_PACKET
    /// (no device under test: the frames are addressed to the peer directly) are counted exactly.
    #[test]
    fn receiver_counts_injected_frames() {
        use sluice_testbed::{PacketSocket, TestBed, require_root};
        use std::time::Duration;
        if !require_root("receiver_counts_injected_frames") {
            return;
        }
        let bed = TestBed::pair(Default::default()).expect("test bed");
        let iface = bed.peer().iface().to_string();
        let rx = bed
            .peer()
            .ns()
            .run(move || Receiver::start(&iface, &[(L4Proto::Udp, 9000)], None, false))
            .expect("entering the peer namespace")
            .expect("starting the receiver");
        let sock = PacketSocket::open(bed.engine().ns(), bed.engine().iface()).expect("socket");

        // 0..5000 with 100/101 swapped, plus duplicates of 10 (at once), 1500 (later) and 4999.
        let mut order: Vec<u32> = Vec::new();
        for s in 0..5000u32 {
            match s {
                100 => order.push(101),
                101 => order.push(100),
                _ => order.push(s),
            }
            match s {
                10 => order.push(10),
                2000 => order.push(1500),
                4999 => order.push(4999),
                _ => {}
            }
        }
        let (src, dst) = (bed.engine().mac().0, bed.peer().mac().0);
        let (sip, dip) = (bed.engine().ipv4().octets(), bed.peer().ipv4().octets());
        let frame = |s: u32| {
            let mut out = Vec::new();
            PacketBuilder::ethernet2(src, dst)
                .ipv4(sip, dip, 64)
                .udp(40000 + (s % 4) as u16, 9000)
                .write(&mut out, &stamp((s % 4) as u16, s, monotonic_ns()))
                .unwrap();
            out
        };
        // Paced: the veth's receive ring holds a few hundred frames, and this test checks the
        // receiver, not the veth; so keep at most ~128 frames ahead of what the worker has seen.
        let wait_for = |want: u64, timeout: Duration| {
            let deadline = Instant::now() + timeout;
            loop {
                let got = rx.snapshot().frames;
                if got >= want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "receiver saw {got} frames, expected at least {want}: {:?}",
                    rx.snapshot()
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        };
        for (i, &s) in order.iter().enumerate() {
            sock.send(&frame(s)).expect("sending");
            if i % 64 == 63 {
                wait_for((i as u64 + 1).saturating_sub(128), Duration::from_secs(5));
            }
        }
        wait_for(order.len() as u64, Duration::from_secs(5));
        let p = rx.snapshot();
        assert_eq!(p.frames, 5003, "{p:?}");

        let r = rx.stop();
        let c = r.counts;
        assert_eq!(r.worker_error, None);
        assert_eq!(c.frames, 5003, "{r:?}");
        assert_eq!(c.unique, 5000);
        assert_eq!(c.duplicates, 3);
        assert_eq!(c.reordered, 1);
        assert_eq!((c.late, c.foreign, c.future_ts), (0, 0, 0));
        assert_eq!((c.first_seq, c.last_seq, c.seq_span), (0, 4999, 5000));
        assert_eq!(r.loss(5000), 0);
        assert_eq!(r.flows.len(), 4);
        assert!(r.flows.iter().all(|f| f.frames >= 1250));
        assert_eq!(r.latency.count, 5000);
        assert!(r.latency.min_ns > 0, "{:?}", r.latency);
        assert!(r.latency.max_ns < 1_000_000_000, "{:?}", r.latency);
        assert_eq!(r.worker.rx_packets, 5003);
        assert_eq!(r.worker.drops[DropReason::Policy.index()], 5003);
        assert_eq!(r.worker.tx_packets, 0);
        assert_eq!(r.xdp.redirected, 5003, "{:?}", r.xdp);
        assert_eq!(r.census.kernel, 0, "{:?}", r.census);
        assert_eq!(r.census.total, u64::from(XskConfig::default().frame_count));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"unique\":5000"), "{json}");
    }
}
