//! `--scenario pipeline`: the per-packet cost of sluice's user-space work, with no kernel.
//!
//! Each subject runs one app (`reflect`, `drop`) over frames in memory, pinned to one core, in
//! one of two ways:
//!
//! - **step**: the worker's real per-batch code, [`sluice::worker::step`], over a
//!   [`MemTransport`] ring of [`FRAME_COUNT`] frames of [`FRAME_SIZE`] bytes (the UMEM's
//!   shape): receive, lend the frames, `App::process`, transmit the `Tx` ones, recycle the rest,
//!   count. The app is a `Box<dyn App>`, as `sluice run` builds it.
//! - **process**: `App::process` alone over [`Batch`]es built on the same ring of frames, in
//!   the same order, so the difference between the two is the worker loop's own cost.
//!
//! Neither includes what a real transport adds (ring loads/stores shared with the kernel, frames
//! arriving cold from DMA, kicks): this is the floor of the user-space cost per packet, the
//! figure that says whether line rate (10G, 64-byte: 14.88 Mpps, 67.2 ns/packet) can fit one
//! core at all.
//!
//! Every measurement checks its own result (every step got a full batch, nothing outstanding
//! after any step, the counters and the transport agree with the packet count, every verdict
//! and every frame's bytes are what the app must produce) and fails instead of reporting a
//! number for a broken pipeline. Timing only brackets the loop; the checks run outside it.

use crate::r#gen::{L4, Template};
use crate::report::{Limit, Scenario, Subject};
use anyhow::{Context, Result, anyhow, bail, ensure};
use sluice::apps::drop::DropAll;
use sluice::apps::reflect::{Reflect, reflect_frame};
use sluice::apps::{App, Batch, DropReason, Verdict};
use sluice::batch::PortId;
use sluice::worker::capture::{Filter, Session, SessionStats, Tap};
use sluice::worker::mem::MemTransport;
use sluice::worker::{Local, Scratch, step};
use sluice::xsk::MAX_BATCH;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Frames in the in-memory ring (a UMEM's RX ring worth).
pub const FRAME_COUNT: usize = 4096;
/// Bytes per frame slot (the UMEM's default chunk).
pub const FRAME_SIZE: usize = 2048;
/// Source ports the frames cycle through (as the generator's flows do).
const FLOWS: u16 = 16;
/// The worker's default batch.
pub const DEFAULT_BATCH: usize = 64;
/// Budget of one packet at 10 Gb/s line rate with 64-byte frames (14.88 Mpps).
pub const LINE_RATE_10G_NS: f64 = 1e9 / 14_880_952.0;
/// Target for the reflect worker step (60-byte UDP/IPv4, default batch).
pub const REFLECT_TARGET_NS: f64 = 20.0;
/// Target for the drop worker step (60-byte UDP/IPv4, default batch).
pub const DROP_TARGET_NS: f64 = 10.0;

/// Which app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    /// [`Reflect`]: every valid frame swapped in place and sent.
    Reflect,
    /// [`DropAll`]: every frame recycled as `Drop(Policy)`.
    Drop,
}

impl AppKind {
    /// The app's name (`reflect`, `drop`).
    pub fn name(self) -> &'static str {
        match self {
            AppKind::Reflect => "reflect",
            AppKind::Drop => "drop",
        }
    }

    /// The app boxed as `sluice run` boxes it (the worker calls it through `dyn App`).
    pub fn make(self) -> Box<dyn App> {
        match self {
            AppKind::Reflect => Box::new(Reflect::new()),
            AppKind::Drop => Box::new(DropAll::new()),
        }
    }

    /// The verdict the app must give every benchmark frame.
    fn verdict(self) -> Verdict {
        match self {
            AppKind::Reflect => Verdict::Tx,
            AppKind::Drop => Verdict::Drop(DropReason::Policy),
        }
    }
}

/// Which frames the ring holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frames {
    /// 60-byte UDP/IPv4 (a "64-byte frame" with FCS).
    Udp4Min,
    /// 78-byte UDP/IPv6 (the smallest the generator's template makes: headers + its stamp).
    Udp6Min,
    /// 1514-byte UDP/IPv4 (a full 1500-byte MTU packet).
    Udp4Max,
}

impl Frames {
    /// Short label for subject names.
    pub fn label(self) -> &'static str {
        match self {
            Frames::Udp4Min => "60 B UDP/IPv4",
            Frames::Udp6Min => "78 B UDP/IPv6",
            Frames::Udp4Max => "1514 B UDP/IPv4",
        }
    }

    /// One valid frame per flow, built by the generator's own template code.
    pub fn templates(self) -> Result<Vec<Vec<u8>>> {
        let (ipv6, frame_len) = match self {
            Frames::Udp4Min => (false, 60),
            Frames::Udp6Min => (true, 60),
            Frames::Udp4Max => (false, 1514),
        };
        let (src_ip, dst_ip): (IpAddr, IpAddr) = if ipv6 {
            (
                Ipv6Addr::new(0xfd00, 0x5c, 0, 0, 0, 0, 0, 2).into(),
                Ipv6Addr::new(0xfd00, 0x5c, 0, 0, 0, 0, 0, 1).into(),
            )
        } else {
            (
                Ipv4Addr::new(10, 99, 0, 2).into(),
                Ipv4Addr::new(10, 99, 0, 1).into(),
            )
        };
        (0..FLOWS)
            .map(|f| {
                let t = Template {
                    l4: L4::Udp,
                    ipv6,
                    frame_len,
                    src_mac: [2, 0, 0x5e, 0x10, 0, 2],
                    dst_mac: [2, 0, 0x5e, 0x10, 0, 1],
                    src_ip,
                    dst_ip,
                    base_sport: 10_000 + f,
                    dport: 9000,
                    flows: 1,
                };
                Ok(t.build().context("building a frame template")?.0)
            })
            .collect()
    }
}

/// What is timed: the whole worker step, or the app alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// [`sluice::worker::step`] over a [`MemTransport`], with a packet-capture tap that is not
    /// armed, as every `sluice run` worker has (capture off).
    Step,
    /// The step without a capture tap at all: the baseline that shows what an unarmed tap
    /// costs (one relaxed load per batch).
    StepNoTap,
    /// The step with a capture armed (full frames; with `true` the sent frames too), its ring
    /// drained by another thread as the control plane drains it.
    StepCapturing(bool),
    /// `App::process` over prebuilt batches of the same frames.
    Process,
}

/// One subject of the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// The app.
    pub app: AppKind,
    /// The frames.
    pub frames: Frames,
    /// Frames per batch (1..=[`MAX_BATCH`]; must divide [`FRAME_COUNT`]).
    pub batch: usize,
    /// Step or app alone.
    pub part: Part,
}

impl Case {
    /// Subject name, e.g. `reflect step, 60 B UDP/IPv4, batch 64`.
    pub fn name(&self) -> String {
        let part = match self.part {
            Part::Step => "step",
            Part::StepNoTap => "step without capture tap",
            Part::StepCapturing(false) => "step capturing rx",
            Part::StepCapturing(true) => "step capturing rx+tx",
            Part::Process => "process",
        };
        format!(
            "{} {part}, {}, batch {}",
            self.app.name(),
            self.frames.label(),
            self.batch
        )
    }
}

/// How long one measurement runs.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Untimed work first (caches, branch predictors, CPU frequency).
    pub warmup: Duration,
    /// The timed loop runs at least this long...
    pub min_time: Duration,
    /// ...and at least this many packets.
    pub min_packets: u64,
}

/// Result of one measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// Packets processed in the timed loop.
    pub packets: u64,
    /// Batches in the timed loop.
    pub batches: u64,
    /// Wall time of the timed loop.
    pub elapsed: Duration,
}

impl Measurement {
    /// Nanoseconds per packet.
    pub fn ns_per_packet(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e9 / self.packets as f64
    }

    /// Million packets per second on this one core.
    pub fn mpps(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Run `case` for `budget` on the calling thread and check what it did.
pub fn measure(case: &Case, budget: &Budget) -> Result<Measurement> {
    ensure!(
        (1..=MAX_BATCH).contains(&case.batch) && FRAME_COUNT.is_multiple_of(case.batch),
        "batch {} must be in 1..={MAX_BATCH} and divide {FRAME_COUNT}",
        case.batch
    );
    let templates = case.frames.templates()?;
    // `black_box`: the app is picked at run time in `sluice run`; don't let the compiler see
    // through the box here either.
    let mut app = black_box(case.app.make());
    let r = match case.part {
        Part::Step | Part::StepNoTap | Part::StepCapturing(_) => measure_step(
            &mut app,
            case.app.verdict(),
            &templates,
            case.batch,
            budget,
            case.part,
        ),
        Part::Process => {
            measure_process(&mut app, case.app.verdict(), &templates, case.batch, budget)
        }
    };
    r.with_context(|| case.name())
}

/// Steps between looks at the clock (and at most this many past the budget).
fn chunk_steps(batch: usize, budget: &Budget) -> u64 {
    (budget.min_packets / batch as u64).clamp(1, 1024)
}

/// The worker step over memory; every frame must get `expect`.
pub fn measure_step<A: App>(
    app: &mut A,
    expect: Verdict,
    templates: &[Vec<u8>],
    batch: usize,
    budget: &Budget,
    part: Part,
) -> Result<Measurement> {
    let refs: Vec<&[u8]> = templates.iter().map(Vec::as_slice).collect();
    let mut t = MemTransport::new(&refs, FRAME_COUNT, FRAME_SIZE);
    let mut scratch = Scratch::new();
    let tap = Arc::new(Tap::default());
    if part != Part::StepNoTap {
        scratch.set_capture(tap.clone());
    }
    let drainer = match part {
        Part::StepCapturing(tx) => Some(Drainer::arm(&tap, tx)),
        _ => None,
    };
    let mut c = Local::default();
    // A run-time value in the worker (`--batch`), so not a constant here either.
    let max = black_box(batch);
    let chunk = chunk_steps(batch, budget);
    // Per step: a full batch came in, and every frame went back out (cheap flags, checked
    // after the loop so the loop has no early exit the worker's doesn't).
    let (mut short, mut leak) = (false, false);
    let mut run = |t: &mut MemTransport, c: &mut Local, steps: u64| -> u64 {
        let mut packets = 0u64;
        for _ in 0..steps {
            let n = step(t, PortId(0), app, &mut scratch, max, c);
            short |= n != max;
            leak |= t.outstanding() != 0;
            packets += n as u64;
        }
        packets
    };

    let warm_end = Instant::now() + budget.warmup;
    while Instant::now() < warm_end {
        run(&mut t, &mut c, chunk);
    }
    let (c0, tx0, back0) = (c, t.transmitted(), t.recycled());
    let (mut packets, mut steps) = (0u64, 0u64);
    let start = Instant::now();
    let elapsed = loop {
        packets += run(&mut t, &mut c, chunk);
        steps += chunk;
        let e = start.elapsed();
        if e >= budget.min_time && packets >= budget.min_packets {
            break e;
        }
    };

    ensure!(!short, "a step received less than a full batch of {batch}");
    ensure!(
        !leak,
        "frames outstanding after a step: {}",
        t.outstanding()
    );
    ensure!(
        packets == steps * batch as u64,
        "{packets} packets in {steps} steps of {batch}"
    );
    let d = c.since(&c0);
    let (sent, back) = (t.transmitted() - tx0, t.recycled() - back0);
    ensure!(
        d.rx_packets == packets && d.batches == steps,
        "counters say {} packets in {} batches, the loop {packets} in {steps}",
        d.rx_packets,
        d.batches
    );
    // All templates of a case have one length, so bytes are packets × that length.
    let len = templates[0].len() as u64;
    ensure!(
        templates.iter().all(|t| t.len() as u64 == len),
        "templates of different lengths"
    );
    ensure!(
        d.rx_bytes == packets * len,
        "rx_bytes {} for {packets} frames of {len} bytes",
        d.rx_bytes
    );
    match expect {
        Verdict::Tx => ensure!(
            d.tx_packets == packets && sent == packets && back == 0 && d.dropped() == 0,
            "reflect: {packets} received, {} counted sent, {sent} transmitted, {back} recycled, {} dropped",
            d.tx_packets,
            d.dropped()
        ),
        Verdict::Drop(reason) => ensure!(
            d.drops[reason.index()] == packets
                && d.dropped() == packets
                && back == packets
                && sent == 0
                && d.tx_packets == 0,
            "drop: {packets} received, {} counted as {reason}, {back} recycled, {sent} transmitted",
            d.drops[reason.index()]
        ),
        Verdict::TxOn(_) | Verdict::Kernel => bail!("the pipeline checks no {expect:?} app"),
    }
    if expect == Verdict::Tx {
        ensure!(
            d.tx_bytes == packets * len,
            "tx_bytes {} for {packets} frames of {len} bytes",
            d.tx_bytes
        );
    }
    check_frames(expect, templates, |i| t.frame(i))?;
    if let Some(d) = drainer {
        let (recorded, dropped) = d.finish(&tap);
        let per = if matches!(part, Part::StepCapturing(true)) {
            2
        } else {
            1
        };
        ensure!(
            recorded + dropped >= per * packets,
            "capture: {recorded} recorded + {dropped} dropped for {packets} packets"
        );
    }
    Ok(Measurement {
        packets,
        batches: steps,
        elapsed,
    })
}

/// The control plane's side of a capture in the pipeline: arms the tap and throws away what
/// the worker records, on a thread of its own.
struct Drainer {
    stop: Arc<AtomicBool>,
    stats: Arc<SessionStats>,
    thread: std::thread::JoinHandle<()>,
}

impl Drainer {
    fn arm(tap: &Tap, tx: bool) -> Drainer {
        let (producer, mut consumer) = rtrb::RingBuffer::new(4 << 20);
        let stats = Arc::new(SessionStats::default());
        let filter = Filter {
            port: None,
            tx,
            snaplen: 65535,
        };
        tap.arm(Session::new(1, producer, filter, stats.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let n = consumer.slots();
                match consumer.read_chunk(n) {
                    Ok(c) if n > 0 => c.commit_all(),
                    _ => std::thread::yield_now(),
                }
            }
        });
        Drainer {
            stop,
            stats,
            thread,
        }
    }

    /// Disarm and stop; (frames recorded, frames dropped for a full ring).
    fn finish(self, tap: &Tap) -> (u64, u64) {
        tap.disarm();
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (
            self.stats.recorded.load(Ordering::Relaxed),
            self.stats.dropped.load(Ordering::Relaxed),
        )
    }
}

/// `App::process` alone, over batches of `batch` consecutive frames of a ring laid out as the
/// transport's; every frame must get `expect`.
pub fn measure_process<A: App>(
    app: &mut A,
    expect: Verdict,
    templates: &[Vec<u8>],
    batch: usize,
    budget: &Budget,
) -> Result<Measurement> {
    let mut area = vec![0u8; FRAME_COUNT * FRAME_SIZE];
    let mut frames: Vec<&mut [u8]> = area
        .chunks_exact_mut(FRAME_SIZE)
        .enumerate()
        .map(|(i, chunk)| {
            let t = &templates[i % templates.len()];
            chunk[..t.len()].copy_from_slice(t);
            &mut chunk[..t.len()]
        })
        .collect();
    let mut verdicts = [Verdict::Tx; MAX_BATCH];
    let max = black_box(batch);
    let per_ring = (FRAME_COUNT / batch) as u64;
    let chunk = chunk_steps(batch, budget);
    let mut next = 0usize;
    // The last batch's verdicts are checked once per chunk, outside the batches.
    let mut wrong = 0usize;
    let mut run = |frames: &mut [&mut [u8]], steps: u64| {
        for _ in 0..steps {
            let mut b = Batch::new(&mut frames[next..next + max], &mut verdicts[..max]);
            app.process(&mut b);
            next += max;
            if next == FRAME_COUNT {
                next = 0;
            }
        }
        wrong += verdicts[..max].iter().filter(|v| **v != expect).count();
    };

    let warm_end = Instant::now() + budget.warmup;
    while Instant::now() < warm_end {
        run(&mut frames, chunk);
    }
    let (mut packets, mut steps) = (0u64, 0u64);
    let start = Instant::now();
    let elapsed = loop {
        run(&mut frames, chunk);
        steps += chunk;
        packets += chunk * batch as u64;
        let e = start.elapsed();
        if e >= budget.min_time && packets >= budget.min_packets {
            break e;
        }
    };
    ensure!(
        wrong == 0,
        "{wrong} frames got a verdict other than {expect:?}"
    );

    // One untimed pass over the whole ring, every verdict checked.
    for k in 0..per_ring as usize {
        let range = k * batch..(k + 1) * batch;
        let mut b = Batch::new(&mut frames[range], &mut verdicts[..batch]);
        app.process(&mut b);
        if let Some(i) = b.verdicts().iter().position(|v| *v != expect) {
            return Err(anyhow!(
                "frame {} got {:?}, not {expect:?}",
                k * batch + i,
                b.verdict(i)
            ));
        }
    }
    check_frames(expect, templates, |i| &*frames[i])?;
    Ok(Measurement {
        packets,
        batches: steps,
        elapsed,
    })
}

/// Every frame of the ring is its template (drop), or its template or its reflection (reflect:
/// each pass swaps it again).
fn check_frames<'a>(
    expect: Verdict,
    templates: &[Vec<u8>],
    frame: impl Fn(usize) -> &'a [u8],
) -> Result<()> {
    let reflected: Vec<Vec<u8>> = templates
        .iter()
        .map(|t| {
            let mut r = t.clone();
            reflect_frame(&mut r).map(|()| r)
        })
        .collect::<Result<_, _>>()
        .map_err(|reason| anyhow!("a template does not reflect ({reason})"))?;
    for i in 0..FRAME_COUNT {
        let (f, t, r) = (
            frame(i),
            &templates[i % templates.len()],
            &reflected[i % templates.len()],
        );
        let ok = match expect {
            Verdict::Tx => f == &t[..] || f == &r[..],
            Verdict::Drop(_) => f == &t[..],
            Verdict::TxOn(_) | Verdict::Kernel => bail!("the pipeline checks no {expect:?} app"),
        };
        ensure!(ok, "frame {i} holds bytes the app must not have produced");
    }
    Ok(())
}

/// Settings of the scenario.
#[derive(Clone, Debug)]
pub struct Options {
    /// Rounds per subject (alternating).
    pub rounds: usize,
    /// Per measurement.
    pub budget: Budget,
    /// Core to pin the measuring thread to (`None`: unpinned).
    pub core: Option<usize>,
}

/// The subjects: both apps, step and app alone, 60-byte UDP/IPv4 at batch 32/64/256, 78-byte
/// UDP/IPv6 and 1514-byte UDP/IPv4 at the default batch.
pub fn cases() -> Vec<Case> {
    let shapes = [
        (Frames::Udp4Min, DEFAULT_BATCH),
        (Frames::Udp4Min, 32),
        (Frames::Udp4Min, 256),
        (Frames::Udp6Min, DEFAULT_BATCH),
        (Frames::Udp4Max, DEFAULT_BATCH),
    ];
    let mut v = Vec::new();
    // What packet capture costs: off (every `Step` above has an unarmed tap) against no tap,
    // and armed, for reflect at the default batch.
    for frames in [Frames::Udp4Min, Frames::Udp4Max] {
        for part in [
            Part::StepNoTap,
            Part::StepCapturing(false),
            Part::StepCapturing(true),
        ] {
            v.push(Case {
                app: AppKind::Reflect,
                frames,
                batch: DEFAULT_BATCH,
                part,
            });
        }
    }
    for (frames, batch) in shapes {
        for app in [AppKind::Reflect, AppKind::Drop] {
            for part in [Part::Step, Part::Process] {
                v.push(Case {
                    app,
                    frames,
                    batch,
                    part,
                });
            }
        }
    }
    v
}

/// Run every case in alternating rounds on one pinned thread and build the report: ns/packet
/// per round, with Mpps and (for steps) the worker loop's share (step − process of the same
/// round) as extra columns; the targets are checked against the default-batch 60-byte steps.
pub fn scenario(o: &Options) -> Result<Scenario> {
    let cases = cases();
    let (rounds, budget, core) = (o.rounds, o.budget, o.core);
    let list = cases.clone();
    let samples: Vec<Vec<Measurement>> = std::thread::spawn(move || -> Result<_> {
        if let Some(core) = core {
            let mut set = nix::sched::CpuSet::new();
            set.set(core)?;
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .with_context(|| format!("pinning to core {core}"))?;
        }
        let mut out = vec![Vec::new(); list.len()];
        for round in 0..rounds {
            for (i, case) in list.iter().enumerate() {
                let m = measure(case, &budget)?;
                println!(
                    "    round {}  {:<44} {:>7.2} ns/packet  {:>7.2} Mpps  ({} packets)",
                    round + 1,
                    case.name(),
                    m.ns_per_packet(),
                    m.mpps(),
                    m.packets
                );
                out[i].push(m);
            }
        }
        Ok(out)
    })
    .join()
    .map_err(|_| anyhow!("the pipeline thread panicked"))??;

    let mut subjects: Vec<Subject> = Vec::new();
    for (case, ms) in cases.iter().zip(&samples) {
        let mut s = Subject::new(&case.name(), "ns/packet");
        s.samples = ms.iter().map(Measurement::ns_per_packet).collect();
        s.extra
            .insert("Mpps".into(), ms.iter().map(Measurement::mpps).collect());
        if case.part == Part::Step {
            let alone = Case {
                part: Part::Process,
                ..*case
            };
            if let Some(j) = cases.iter().position(|c| *c == alone) {
                let loop_ns = ms
                    .iter()
                    .zip(&samples[j])
                    .map(|(a, b)| a.ns_per_packet() - b.ns_per_packet())
                    .collect();
                s.extra.insert("worker loop ns/packet".into(), loop_ns);
            }
        }
        subjects.push(s);
    }
    let mut sc = Scenario {
        name: "pipeline".into(),
        setup: format!(
            "User-space work per packet, no kernel: `sluice::worker::step` over an in-memory ring \
             of {FRAME_COUNT} × {FRAME_SIZE}-byte frames ({FLOWS} flows), and `App::process` alone \
             over the same frames; one thread pinned to core {}; {} alternating rounds of ≥ {:.2} s \
             and ≥ {} packets each after {:.2} s warm-up. Medians in ns/packet (lower is better). \
             10G line rate with 64-byte frames is {LINE_RATE_10G_NS:.1} ns/packet.",
            core.map(|c| c.to_string())
                .unwrap_or_else(|| "(unpinned)".into()),
            rounds,
            budget.min_time.as_secs_f64(),
            budget.min_packets,
            budget.warmup.as_secs_f64(),
        ),
        subjects,
        targets: vec![],
        limits: vec![],
    };
    let step_of = |app| {
        Case {
            app,
            frames: Frames::Udp4Min,
            batch: DEFAULT_BATCH,
            part: Part::Step,
        }
        .name()
    };
    sc.evaluate_limits(vec![
        Limit {
            subject: step_of(AppKind::Reflect),
            bound: REFLECT_TARGET_NS,
            at_most: true,
        },
        Limit {
            subject: step_of(AppKind::Drop),
            bound: DROP_TARGET_NS,
            at_most: true,
        },
    ]);
    Ok(sc)
}

#[cfg(test)]
mod test {
    use super::*;

    fn tiny() -> Budget {
        Budget {
            warmup: Duration::ZERO,
            min_time: Duration::ZERO,
            min_packets: 3 * FRAME_COUNT as u64 + 64,
        }
    }

    #[test]
    fn every_case_runs_and_checks_itself() {
        for case in cases() {
            let m = measure(&case, &tiny()).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(m.packets >= tiny().min_packets, "{case:?}: {m:?}");
            assert_eq!(m.packets, m.batches * case.batch as u64, "{case:?}");
            assert!(m.ns_per_packet() > 0.0 && m.mpps() > 0.0);
        }
    }

    #[test]
    fn templates_are_valid_frames_of_the_stated_size() {
        for (f, len) in [
            (Frames::Udp4Min, 60),
            (Frames::Udp6Min, 78),
            (Frames::Udp4Max, 1514),
        ] {
            let t = f.templates().unwrap();
            assert_eq!(t.len(), usize::from(FLOWS));
            for frame in &t {
                assert_eq!(frame.len(), len, "{f:?}");
                let mut r = frame.clone();
                assert_eq!(reflect_frame(&mut r), Ok(()), "{f:?}");
            }
        }
    }

    /// An app that drops one frame in every batch: a reflect pipeline must refuse to report.
    struct DropsOne(Reflect);

    impl App for DropsOne {
        fn name(&self) -> &'static str {
            "drops-one"
        }
        fn process(&mut self, batch: &mut Batch<'_, '_>) {
            self.0.process(batch);
            batch.set_verdict(0, Verdict::Drop(DropReason::Policy));
        }
    }

    /// An app that corrupts the frames it drops.
    struct Scribbles;

    impl App for Scribbles {
        fn name(&self) -> &'static str {
            "scribbles"
        }
        fn process(&mut self, batch: &mut Batch<'_, '_>) {
            for (frame, v) in batch.iter_mut() {
                frame[0] = frame[0].wrapping_add(1);
                *v = Verdict::Drop(DropReason::Policy);
            }
        }
    }

    #[test]
    fn a_broken_pipeline_reports_no_number() {
        let t = Frames::Udp4Min.templates().unwrap();
        let b = tiny();
        let e = measure_step(
            &mut DropsOne(Reflect::new()),
            Verdict::Tx,
            &t,
            64,
            &b,
            Part::Step,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("reflect:"), "{e:#}");
        let e =
            measure_process(&mut DropsOne(Reflect::new()), Verdict::Tx, &t, 64, &b).unwrap_err();
        assert!(format!("{e:#}").contains("verdict"), "{e:#}");
        // Verdicts right, bytes wrong.
        let drop = Verdict::Drop(DropReason::Policy);
        let e = measure_step(&mut Scribbles, drop, &t, 64, &b, Part::Step).unwrap_err();
        assert!(format!("{e:#}").contains("must not have produced"), "{e:#}");
        let e = measure_process(&mut Scribbles, drop, &t, 64, &b).unwrap_err();
        assert!(format!("{e:#}").contains("must not have produced"), "{e:#}");
        // Reflect's frames given to a drop expectation: wrong verdicts.
        let e = measure_step(&mut Reflect::new(), drop, &t, 64, &b, Part::Step).unwrap_err();
        assert!(format!("{e:#}").contains("drop:"), "{e:#}");
    }

    #[test]
    fn a_batch_that_does_not_divide_the_ring_is_refused() {
        let case = Case {
            app: AppKind::Drop,
            frames: Frames::Udp4Min,
            batch: 100,
            part: Part::Step,
        };
        assert!(measure(&case, &tiny()).is_err());
    }
}
