//! `--scenario pipeline`: the per-packet cost of sluice's user-space work, with no kernel.
//!
//! Each subject runs one app (`reflect`, `drop`, `forward`, `lb`, `lb-new-flows`) over frames in
//! memory, pinned to one core, in one of two ways:
//!
//! - **step**: the worker's real per-batch code, [`sluice::worker::step`], over a
//!   [`MemTransport`] ring of [`FRAME_COUNT`] frames of [`FRAME_SIZE`] bytes (the UMEM's
//!   shape): receive, lend the frames, `App::process`, transmit the `Tx` ones, recycle the rest,
//!   count. The app is a `Box<dyn App>`, as `sluice run` builds it.
//! - **process**: `App::process` alone over [`Batch`]es built on the same ring of frames, in
//!   the same order, so the difference between the two is the worker loop's own cost.
//!
//! The routing apps (`forward`, and `lb` with DSR) need the kernel's tables as the engine
//! mirrors them. The engine offers no public way to fill a `Snapshot` by hand, so
//! [`RouterView::probe`] builds the `lb` scenario's client — router — server bed (root: network
//! namespaces), lets sluice's own rtnetlink mirror dump the router namespace once, and removes
//! the bed; the cases then run over a `Fib` built from that dump with r0 and r1 as ports 0 and 1.
//! Their frames are the lb plan's ([`crate::lbplan`]): 60-byte UDP/IPv4 from the client to the
//! VIP, one flow per frame of the ring ([`FRAME_COUNT`] flows).
//!
//! - `lb`: a connection table large enough for every flow, so after the first pass every
//!   lookup hits (checked: misses = flows, no eviction).
//! - `lb-new-flows`: a table of [`NEW_FLOWS_CAPACITY`] entries, a quarter of the flows, so in
//!   LRU order every lookup misses, picks by Maglev, inserts and evicts (checked: no hit).
//! - `forward` routes the same frames; it takes one from the TTL per pass, so its frames are
//!   renewed from their templates every [`FORWARD_FRESH_PASSES`] passes over the ring, outside
//!   the timed loop.
//!
//! Neither includes what a real transport adds (ring loads/stores shared with the kernel, frames
//! arriving cold from DMA, kicks): this is the floor of the user-space cost per packet, the
//! figure that says whether line rate (10G, 64-byte: 14.88 Mpps, 67.2 ns/packet) can fit one
//! core at all.
//!
//! The `dns` subjects run the DNS app the same way over query frames ([`DnsCase`]): each
//! query is answered in its own frame, so before the app sees a frame again a wrapper copies
//! the query back into it; a second subject runs that wrapper alone (every frame restored and
//! sent), and the difference between the two is the app's own cost per query.
//!
//! Every measurement checks its own result (every step got a full batch, nothing outstanding
//! after any step, the counters and the transport agree with the packet count, every verdict
//! and every frame's bytes are what the app must produce) and fails instead of reporting a
//! number for a broken pipeline. Timing only brackets the loop; the checks run outside it.

use crate::dns as dnsq;
use crate::r#gen::{L4, Template};
use crate::lbplan;
use crate::report::{Limit, Scenario, Subject};
use anyhow::{Context, Result, anyhow, bail, ensure};
use sluice::apps::dns::app::{Dns, DnsWorkerStats, OUTCOMES, ZonesHandle};
use sluice::apps::dns::{Limits, Outcome, ZoneSource, Zones};
use sluice::apps::drop::DropAll;
use sluice::apps::forward::{Forward, IcmpLimit, PortInfo};
use sluice::apps::lb::config::Forwarding;
use sluice::apps::lb::{ConnTableFigures, Lb, LbHandle, LbParts, LbTable, LbWorkerStats};
use sluice::apps::reflect::{Reflect, reflect_frame};
use sluice::apps::{App, Batch, DropReason, Verdict};
use sluice::batch::PortId;
use sluice::control::mirror::{Mirror, Snapshot};
use sluice::fib::{Fib, FibHandle, Lookup};
use sluice::wire::{EthernetFrame, Ipv4Packet, MacAddr, ethernet};
use sluice::worker::capture::{Filter, Session, SessionStats, Tap};
use sluice::worker::mem::MemTransport;
use sluice::worker::{Local, Scratch, step};
use sluice::xsk::MAX_BATCH;
use sluice_testbed::{RouterBed, RouterBedOpts};
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
/// `lb-new-flows`' connection table: a quarter of the ring's flows, so that in LRU order every
/// flow has been evicted before it comes round again.
pub const NEW_FLOWS_CAPACITY: u32 = (FRAME_COUNT / 4) as u32;
/// Passes over the ring after which `forward`'s frames are renewed (each pass takes one off
/// their TTL of 64; a TTL run out would turn them into ICMP errors).
pub const FORWARD_FRESH_PASSES: u64 = 32;
/// Seed of the benchmark's connection tables (fixed: runs are comparable).
const CONNTRACK_SEED: u64 = 0x5eed;

/// Which app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    /// [`Reflect`]: every valid frame swapped in place and sent.
    Reflect,
    /// [`DropAll`]: every frame recycled as `Drop(Policy)`.
    Drop,
    /// [`Forward`] over the router's tables: every frame routed out of r1.
    Forward,
    /// [`Lb`] (DSR) with a connection table that holds every flow: lookups hit.
    Lb,
    /// [`Lb`] (DSR) with a table of [`NEW_FLOWS_CAPACITY`]: every frame a new flow (a miss, a
    /// Maglev pick, an insert and an eviction).
    LbNewFlows,
}

/// An app as a measurement runs it.
pub struct Made {
    /// Boxed as `sluice run` boxes it (the worker calls it through `dyn App`).
    pub app: Box<dyn App>,
    /// Where an lb app publishes its connection-table figures.
    pub lb_stats: Option<Arc<LbWorkerStats>>,
}

impl AppKind {
    /// The app's name (`reflect`, `drop`, `forward`, `lb`, `lb-new-flows`).
    pub fn name(self) -> &'static str {
        match self {
            AppKind::Reflect => "reflect",
            AppKind::Drop => "drop",
            AppKind::Forward => "forward",
            AppKind::Lb => "lb",
            AppKind::LbNewFlows => "lb-new-flows",
        }
    }

    /// Whether it needs the router's tables ([`RouterView`]).
    pub fn routes(self) -> bool {
        matches!(self, AppKind::Forward | AppKind::Lb | AppKind::LbNewFlows)
    }

    /// The app, built as the engine builds it for one worker (`view` for the routing apps).
    pub fn make(self, view: Option<&RouterView>) -> Result<Made> {
        let app: Box<dyn App> = match self {
            AppKind::Reflect => Box::new(Reflect::new()),
            AppKind::Drop => Box::new(DropAll::new()),
            AppKind::Forward => {
                let v = view.context("the forward case needs the router's tables")?;
                Box::new(Forward::new(
                    FibHandle::new(v.fib()),
                    v.ports(),
                    IcmpLimit::default(),
                ))
            }
            AppKind::Lb | AppKind::LbNewFlows => {
                let v = view.context("the lb cases need the router's tables")?;
                let capacity = (self == AppKind::LbNewFlows).then_some(NEW_FLOWS_CAPACITY);
                let text = lbplan::config_toml(Forwarding::Dsr, capacity);
                let (services, maglev, conntrack) = lbplan::engine_view(&text, CONNTRACK_SEED)
                    .map_err(|e| anyhow!("the lb plan's configuration: {e}"))?;
                let table = LbTable::build(&services, maglev).context("building the lb table")?;
                let stats = Arc::new(LbWorkerStats::default());
                let app = Lb::new(LbParts {
                    table: LbHandle::new(table),
                    fib: FibHandle::new(v.fib()),
                    ports: v.ports(),
                    conntrack,
                    icmp: IcmpLimit::default(),
                    stats: stats.clone(),
                });
                return Ok(Made {
                    app: Box::new(app),
                    lb_stats: Some(stats),
                });
            }
        };
        Ok(Made {
            app,
            lb_stats: None,
        })
    }

    /// What the app must do to every benchmark frame.
    pub fn expect(self, view: Option<&RouterView>) -> Result<Expect> {
        Ok(match self {
            AppKind::Reflect => Expect::reflect(),
            AppKind::Drop => Expect::drop(),
            AppKind::Forward => {
                let v = view.context("the forward case needs the router's tables")?;
                Expect::forward(v.r1_mac, v.s0_mac)
            }
            AppKind::Lb | AppKind::LbNewFlows => {
                let v = view.context("the lb cases need the router's tables")?;
                Expect::dsr(v.r1_mac, v.s0_mac)
            }
        })
    }
}

/// What a measurement requires of an app, and checks after it ran.
pub struct Expect {
    /// The verdict every frame must get.
    pub verdict: Verdict,
    /// Ports the transport serves (the routing apps: r0 and r1).
    pub ports: usize,
    /// Passes over the ring after which the frames are renewed from their templates, outside
    /// the timed loop; `None`: they go round for ever (the app leaves them valid).
    pub fresh_every: Option<u64>,
    /// Whether a frame may hold `frame` after up to `fresh_every` passes of the app over its
    /// template `template`.
    #[allow(clippy::type_complexity)]
    pub frame_ok: Box<dyn Fn(&[u8], &[u8]) -> bool>,
}

impl Expect {
    /// Every frame sent back, swapped (each pass swaps it again).
    pub fn reflect() -> Expect {
        Expect {
            verdict: Verdict::Tx,
            ports: 1,
            fresh_every: None,
            frame_ok: Box::new(|t, f| {
                let mut r = t.to_vec();
                f == t || reflect_frame(&mut r).is_ok() && f == &r[..]
            }),
        }
    }

    /// Every frame dropped as `policy`, untouched.
    pub fn drop() -> Expect {
        Expect {
            verdict: Verdict::Drop(DropReason::Policy),
            ports: 1,
            fresh_every: None,
            frame_ok: Box::new(|t, f| f == t),
        }
    }

    /// Every frame routed out of port 1 (r1, MAC `egress`) to `next_hop`: the MACs rewritten,
    /// the TTL one lower per pass, the header checksum updated.
    pub fn forward(egress: MacAddr, next_hop: MacAddr) -> Expect {
        Expect {
            verdict: Verdict::TxOn(PortId(1)),
            ports: 2,
            fresh_every: Some(FORWARD_FRESH_PASSES),
            frame_ok: Box::new(move |t, f| {
                let ttl = |x: &[u8]| {
                    Ipv4Packet::new_checked(x.get(ethernet::HEADER_LEN..)?)
                        .ok()
                        .map(|ip| ip.ttl())
                };
                match (ttl(t), ttl(f)) {
                    _ if f == t => true,
                    (Some(a), Some(b)) if b < a && u64::from(a - b) <= FORWARD_FRESH_PASSES => {
                        routed(t, a - b, egress, next_hop).is_some_and(|r| f == &r[..])
                    }
                    _ => false,
                }
            }),
        }
    }

    /// Every frame sent out of port 1 (r1, MAC `egress`) to the backend's `next_hop` by DSR:
    /// the MACs rewritten, the IP packet untouched.
    pub fn dsr(egress: MacAddr, next_hop: MacAddr) -> Expect {
        Expect {
            verdict: Verdict::TxOn(PortId(1)),
            ports: 2,
            fresh_every: None,
            frame_ok: Box::new(move |t, f| {
                let mut d = t.to_vec();
                let mut eth = EthernetFrame::new_unchecked(&mut d[..]);
                eth.set_dst_addr(next_hop);
                eth.set_src_addr(egress);
                f == t || f == &d[..]
            }),
        }
    }
}

/// `frame` (Ethernet + IPv4) as `hops` routers that each rewrite the MACs to `egress` →
/// `next_hop` and take one off the TTL would leave it.
fn routed(frame: &[u8], hops: u8, egress: MacAddr, next_hop: MacAddr) -> Option<Vec<u8>> {
    let mut out = frame.to_vec();
    let mut eth = EthernetFrame::new_checked(&mut out[..]).ok()?;
    eth.set_dst_addr(next_hop);
    eth.set_src_addr(egress);
    let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).ok()?;
    ip.set_ttl(ip.ttl().checked_sub(hops)?);
    ip.fill_checksum();
    Some(out)
}

/// The router of the lb scenario's bed, as sluice's mirror saw it: what the routing cases build
/// their forwarding table from.
#[derive(Clone, Debug)]
pub struct RouterView {
    snapshot: Arc<Snapshot>,
    /// r0's and r1's interface indexes: ports 0 and 1.
    ports: [u32; 2],
    c0_mac: MacAddr,
    r0_mac: MacAddr,
    r1_mac: MacAddr,
    s0_mac: MacAddr,
    client: Ipv4Addr,
}

impl RouterView {
    /// Build the bed (static neighbours, the lb plan's backends), dump the router namespace
    /// with sluice's mirror, remove the bed, and check that the dump routes the VIP and every
    /// backend out of r1 to s0's MAC. Needs root.
    pub fn probe() -> Result<RouterView> {
        let bed = RouterBed::new(RouterBedOpts {
            static_neighbours: true,
            forwarding: true,
            ..RouterBedOpts::default()
        })
        .context("building the client — router — server bed")?;
        lbplan::add_backend_neighbours(&bed).context("adding the backends' neighbours")?;
        let mirror = bed
            .router()
            .run(Mirror::start)
            .map_err(|e| anyhow!("{e}"))?
            .context("dumping the router's tables")?;
        let snapshot = mirror.snapshot();
        mirror.stop().context("stopping the mirror")?;
        let mac = |m: sluice_testbed::MacAddr| MacAddr(m.0);
        let view = RouterView {
            snapshot,
            ports: [bed.r0().ifindex(), bed.r1().ifindex()],
            c0_mac: mac(bed.c0().mac()),
            r0_mac: mac(bed.r0().mac()),
            r1_mac: mac(bed.r1().mac()),
            s0_mac: mac(bed.s0().mac()),
            client: bed.c0().ipv4(),
        };
        let fib = view.fib();
        for dst in std::iter::once(lbplan::VIP).chain(lbplan::BACKENDS) {
            match fib.lookup(dst.into(), 0) {
                Lookup::Forward(hop)
                    if hop.port_ifindex == view.ports[1] && hop.dst_mac == view.s0_mac => {}
                other => bail!("the router's table sends {dst} to {other:?}, not out of r1 to s0"),
            }
        }
        Ok(view)
    }

    /// A forwarding table over the dump, with r0 and r1 as the engine's ports.
    pub fn fib(&self) -> Fib {
        Fib::from_snapshot(&self.snapshot, &self.ports)
    }

    fn ports(&self) -> Vec<PortInfo> {
        self.ports.iter().map(|&i| PortInfo::new(i)).collect()
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
    /// 60-byte UDP/IPv4 from the router bed's client to the lb plan's VIP, one flow (source
    /// port) per frame of the ring: the routing apps' frames.
    Udp4Vip,
}

impl Frames {
    /// Short label for subject names.
    pub fn label(self) -> &'static str {
        match self {
            Frames::Udp4Min => "60 B UDP/IPv4",
            Frames::Udp6Min => "78 B UDP/IPv6",
            Frames::Udp4Max => "1514 B UDP/IPv4",
            Frames::Udp4Vip => "60 B UDP/IPv4 to the VIP, 4096 flows",
        }
    }

    /// One valid frame per flow, built by the generator's own template code (`view`: the
    /// addresses of [`Frames::Udp4Vip`]).
    pub fn templates(self, view: Option<&RouterView>) -> Result<Vec<Vec<u8>>> {
        let (ipv6, frame_len) = match self {
            Frames::Udp4Min => (false, 60),
            Frames::Udp6Min => (true, 60),
            Frames::Udp4Max => (false, 1514),
            Frames::Udp4Vip => {
                let v = view.context("the VIP's frames need the router bed's addresses")?;
                return (0..FRAME_COUNT as u16)
                    .map(|f| {
                        let t = Template {
                            l4: L4::Udp,
                            ipv6: false,
                            frame_len: 60,
                            src_mac: v.c0_mac.0,
                            dst_mac: v.r0_mac.0,
                            src_ip: v.client.into(),
                            dst_ip: lbplan::VIP.into(),
                            base_sport: 10_000 + f,
                            dport: lbplan::PORT,
                            flows: 1,
                        };
                        Ok(t.build().context("building a frame template")?.0)
                    })
                    .collect();
            }
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
    /// An lb app's connection-table figures at the end (warm-up and checks included).
    pub conntrack: Option<ConnTableFigures>,
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

    /// Share of connection-table lookups that hit, in % (lb apps only).
    pub fn conntrack_hit_pct(&self) -> Option<f64> {
        let c = self.conntrack?;
        let lookups = c.hits + c.misses;
        (lookups > 0).then(|| c.hits as f64 * 100.0 / lookups as f64)
    }
}

/// Run `case` for `budget` on the calling thread and check what it did (`view`: the router's
/// tables, for the routing apps).
pub fn measure(case: &Case, budget: &Budget, view: Option<&RouterView>) -> Result<Measurement> {
    ensure!(
        (1..=MAX_BATCH).contains(&case.batch) && FRAME_COUNT.is_multiple_of(case.batch),
        "batch {} must be in 1..={MAX_BATCH} and divide {FRAME_COUNT}",
        case.batch
    );
    let r = (|| {
        let templates = case.frames.templates(view)?;
        let expect = case.app.expect(view)?;
        let made = case.app.make(view)?;
        // `black_box`: the app is picked at run time in `sluice run`; don't let the compiler see
        // through the box here either.
        let mut app = black_box(made.app);
        let mut m = match case.part {
            Part::Step | Part::StepNoTap | Part::StepCapturing(_) => {
                measure_step(&mut app, &expect, &templates, case.batch, budget, case.part)
            }
            Part::Process => measure_process(&mut app, &expect, &templates, case.batch, budget),
        }?;
        if let Some(stats) = made.lb_stats {
            let c = stats.read();
            m.conntrack = Some(c);
            let flows = templates.len() as u64;
            match case.app {
                AppKind::Lb => ensure!(
                    c.misses == flows && c.evictions == 0 && c.expirations == 0 && c.hits > 0,
                    "connection table: {c:?}; every flow should miss once, then hit"
                ),
                _ => ensure!(
                    c.hits == 0 && c.evictions > 0 && c.inserts == c.misses,
                    "connection table: {c:?}; every lookup should miss and insert"
                ),
            }
        }
        Ok(m)
    })();
    r.with_context(|| case.name())
}

/// Steps between looks at the clock (and at most this many past the budget).
fn chunk_steps(batch: usize, budget: &Budget) -> u64 {
    (budget.min_packets / batch as u64).clamp(1, 1024)
}

/// The worker's state across the chunks of one step measurement, and the transport it runs
/// over, renewed when the frames must be fresh again ([`Expect::fresh_every`]).
struct StepRig<'t> {
    refs: Vec<&'t [u8]>,
    ports: usize,
    t: MemTransport,
    scratch: Box<Scratch>,
    /// The worker's packet-capture tap (unarmed unless the case captures).
    tap: Arc<Tap>,
    c: Local,
    max: usize,
    /// Steps a transport may run before its frames are renewed.
    fresh_steps: Option<u64>,
    /// Steps the current transport has run.
    used: u64,
    /// Frames sent and given back by transports already replaced.
    retired: (u64, u64),
    /// A step received less than a full batch / left frames outstanding (cheap flags, checked
    /// after the loop so the loop has no early exit the worker's doesn't).
    short: bool,
    leak: bool,
}

impl<'t> StepRig<'t> {
    fn new(templates: &'t [Vec<u8>], expect: &Expect, batch: usize, part: Part) -> Self {
        let refs: Vec<&[u8]> = templates.iter().map(Vec::as_slice).collect();
        let t = MemTransport::new(&refs, FRAME_COUNT, FRAME_SIZE).with_ports(expect.ports);
        let mut scratch = Scratch::new();
        let tap = Arc::new(Tap::default());
        if part != Part::StepNoTap {
            scratch.set_capture(tap.clone());
        }
        StepRig {
            refs,
            ports: expect.ports,
            t,
            scratch,
            tap,
            c: Local::default(),
            // A run-time value in the worker (`--batch`), so not a constant here either.
            max: black_box(batch),
            fresh_steps: expect.fresh_every.map(|p| p * (FRAME_COUNT / batch) as u64),
            used: 0,
            retired: (0, 0),
            short: false,
            leak: false,
        }
    }

    /// Run `steps` steps, timed; first, untimed, a fresh transport if they would take the
    /// current one's frames past their limit. Returns the packets and the time.
    fn chunk<A: App>(&mut self, app: &mut A, steps: u64) -> (u64, Duration) {
        if self.fresh_steps.is_some_and(|f| self.used + steps > f) {
            self.retired.0 += self.t.transmitted();
            self.retired.1 += self.t.recycled();
            self.t = MemTransport::new(&self.refs, FRAME_COUNT, FRAME_SIZE).with_ports(self.ports);
            self.used = 0;
        }
        self.used += steps;
        let (t, scratch, c, max) = (&mut self.t, &mut *self.scratch, &mut self.c, self.max);
        let (mut short, mut leak) = (false, false);
        let mut packets = 0u64;
        let start = Instant::now();
        for _ in 0..steps {
            let n = step(t, PortId(0), app, scratch, max, c);
            short |= n != max;
            leak |= t.outstanding() != 0;
            packets += n as u64;
        }
        let elapsed = start.elapsed();
        self.short |= short;
        self.leak |= leak;
        (packets, elapsed)
    }

    /// Frames transmitted and given back so far, over every transport.
    fn totals(&self) -> (u64, u64) {
        (
            self.retired.0 + self.t.transmitted(),
            self.retired.1 + self.t.recycled(),
        )
    }
}

/// The worker step over memory; every frame must get `expect`'s verdict and hold what it
/// allows.
pub fn measure_step<A: App>(
    app: &mut A,
    expect: &Expect,
    templates: &[Vec<u8>],
    batch: usize,
    budget: &Budget,
    part: Part,
) -> Result<Measurement> {
    let mut rig = StepRig::new(templates, expect, batch, part);
    let drainer = match part {
        Part::StepCapturing(tx) => Some(Drainer::arm(&rig.tap, tx)),
        _ => None,
    };
    let chunk = chunk_steps(batch, budget).min(rig.fresh_steps.unwrap_or(u64::MAX));

    let warm_end = Instant::now() + budget.warmup;
    while Instant::now() < warm_end {
        rig.chunk(app, chunk);
    }
    let (c0, (tx0, back0)) = (rig.c, rig.totals());
    let (mut packets, mut steps, mut elapsed) = (0u64, 0u64, Duration::ZERO);
    while elapsed < budget.min_time || packets < budget.min_packets {
        let (n, dt) = rig.chunk(app, chunk);
        packets += n;
        steps += chunk;
        elapsed += dt;
    }

    ensure!(
        !rig.short,
        "a step received less than a full batch of {batch}"
    );
    ensure!(
        !rig.leak,
        "frames outstanding after a step: {}",
        rig.t.outstanding()
    );
    ensure!(
        packets == steps * batch as u64,
        "{packets} packets in {steps} steps of {batch}"
    );
    let d = rig.c.since(&c0);
    let (tx1, back1) = rig.totals();
    let (sent, back) = (tx1 - tx0, back1 - back0);
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
    let verdict = expect.verdict;
    match verdict {
        Verdict::Tx | Verdict::TxOn(_) => {
            let port = match verdict {
                Verdict::TxOn(p) => p.index(),
                _ => 0,
            };
            ensure!(
                d.tx_packets == packets
                    && d.ports[port].tx_packets == packets
                    && sent == packets
                    && back == 0
                    && d.dropped() == 0,
                "{verdict:?}: {packets} received, {} counted sent ({} on port {port}), {sent} \
                 transmitted, {back} recycled, {} dropped",
                d.tx_packets,
                d.ports[port].tx_packets,
                d.dropped()
            );
            ensure!(
                d.tx_bytes == packets * len,
                "tx_bytes {} for {packets} frames of {len} bytes",
                d.tx_bytes
            );
        }
        Verdict::Drop(reason) => ensure!(
            d.drops[reason.index()] == packets
                && d.dropped() == packets
                && back == packets
                && sent == 0
                && d.tx_packets == 0,
            "drop: {packets} received, {} counted as {reason}, {back} recycled, {sent} transmitted",
            d.drops[reason.index()]
        ),
        Verdict::Kernel => bail!("the pipeline checks no {verdict:?} app"),
    }
    check_frames(expect, templates, |i| rig.t.frame(i))?;
    if let Some(d) = drainer {
        let (recorded, dropped) = d.finish(&rig.tap);
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
        conntrack: None,
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
/// transport's; every frame must get `expect`'s verdict and hold what it allows.
pub fn measure_process<A: App>(
    app: &mut A,
    expect: &Expect,
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
    let fresh_steps = expect.fresh_every.map(|p| p * per_ring);
    let chunk = chunk_steps(batch, budget).min(fresh_steps.unwrap_or(u64::MAX));
    let expect_v = expect.verdict;
    let mut next = 0usize;
    // Batches run over the frames since they were last renewed.
    let mut used = 0u64;
    // The last batch's verdicts are checked once per chunk, outside the batches.
    let mut wrong = 0usize;
    let mut run = |frames: &mut [&mut [u8]], steps: u64| -> Duration {
        if fresh_steps.is_some_and(|f| used + steps > f) {
            for (i, f) in frames.iter_mut().enumerate() {
                f.copy_from_slice(&templates[i % templates.len()]);
            }
            used = 0;
        }
        used += steps;
        let start = Instant::now();
        for _ in 0..steps {
            let mut b = Batch::new(&mut frames[next..next + max], &mut verdicts[..max]);
            app.process(&mut b);
            next += max;
            if next == FRAME_COUNT {
                next = 0;
            }
        }
        let elapsed = start.elapsed();
        wrong += verdicts[..max].iter().filter(|v| **v != expect_v).count();
        elapsed
    };

    let warm_end = Instant::now() + budget.warmup;
    while Instant::now() < warm_end {
        run(&mut frames, chunk);
    }
    let (mut packets, mut steps, mut elapsed) = (0u64, 0u64, Duration::ZERO);
    while elapsed < budget.min_time || packets < budget.min_packets {
        elapsed += run(&mut frames, chunk);
        steps += chunk;
        packets += chunk * batch as u64;
    }
    ensure!(
        wrong == 0,
        "{wrong} frames got a verdict other than {expect_v:?}"
    );

    // One untimed pass over the whole ring from fresh frames, every verdict checked.
    if expect.fresh_every.is_some() {
        for (i, f) in frames.iter_mut().enumerate() {
            f.copy_from_slice(&templates[i % templates.len()]);
        }
    }
    // It goes on from where the timed loop stopped, so the frames keep their order (an LRU
    // connection table sees the same pattern).
    for k in 0..per_ring as usize {
        let first = (next + k * batch) % FRAME_COUNT;
        let mut b = Batch::new(&mut frames[first..first + batch], &mut verdicts[..batch]);
        app.process(&mut b);
        if let Some(i) = b.verdicts().iter().position(|v| *v != expect_v) {
            return Err(anyhow!(
                "frame {} got {:?}, not {expect_v:?}",
                first + i,
                b.verdict(i)
            ));
        }
    }
    check_frames(expect, templates, |i| &*frames[i])?;
    Ok(Measurement {
        packets,
        batches: steps,
        elapsed,
        conntrack: None,
    })
}

/// Every frame of the ring holds what `expect` allows of its template.
fn check_frames<'a>(
    expect: &Expect,
    templates: &[Vec<u8>],
    frame: impl Fn(usize) -> &'a [u8],
) -> Result<()> {
    for i in 0..FRAME_COUNT {
        ensure!(
            (expect.frame_ok)(&templates[i % templates.len()], frame(i)),
            "frame {i} holds bytes the app must not have produced"
        );
    }
    Ok(())
}

// ---- dns ---------------------------------------------------------------------------------

/// Which zone the DNS subjects answer from, and what they are asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsQueries {
    /// The veth benchmark's zone and mix: `bench.test.` with 10,000 hosts, A queries for
    /// hosts and one in ten for a missing name ([`crate::dns`]).
    Bench,
    /// The same zone and names, but in runs of [`DEFAULT_BATCH`] identical queries (each batch
    /// asks one name), as the veth benchmark's generator sends them: how much repeating a name
    /// flatters the app (caches, branch predictors).
    BenchRuns,
    /// The correctness harness's `example.test` (`tests/zones/`): an A query for every owner
    /// (answers, NODATA, CNAME chains, wildcards, referrals, glue) and one in ten for a
    /// missing name.
    TestZone,
}

impl DnsQueries {
    /// Short label for subject names.
    pub fn label(self) -> &'static str {
        match self {
            DnsQueries::Bench => "bench.test (90% A hits, 10% NXDOMAIN)",
            DnsQueries::BenchRuns => "bench.test, 64 identical queries in a row",
            DnsQueries::TestZone => "example.test (A for every owner, 10% NXDOMAIN)",
        }
    }

    /// The zones and one query frame per query (UDP/IPv4 from 16 source ports).
    fn build(self) -> Result<(Zones, Vec<Vec<u8>>)> {
        let (path, text, names): (std::path::PathBuf, String, Vec<String>) = match self {
            DnsQueries::Bench => (
                "bench.test.zone".into(),
                dnsq::zone_text(dnsq::MAX_HOSTS),
                dnsq::query_names(dnsq::MAX_HOSTS, FRAME_COUNT, 10)
                    .into_iter()
                    .map(|q| q.name)
                    .collect(),
            ),
            DnsQueries::BenchRuns => {
                let names = dnsq::query_names(dnsq::MAX_HOSTS, FRAME_COUNT / DEFAULT_BATCH, 10);
                (
                    "bench.test.zone".into(),
                    dnsq::zone_text(dnsq::MAX_HOSTS),
                    (0..FRAME_COUNT)
                        .map(|k| names[k / DEFAULT_BATCH].name.clone())
                        .collect(),
                )
            }
            DnsQueries::TestZone => {
                let path = sluice_testbed::dns::test_zones_dir().join("example.test.zone");
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let zone =
                    sluice_testbed::dns::Zone::parse(&path, &text).map_err(|e| anyhow!("{e}"))?;
                let owners: Vec<String> = zone.owners().iter().map(|n| n.to_string()).collect();
                ensure!(!owners.is_empty(), "{} has no owners", path.display());
                let origin = zone.origin().to_string();
                let names = (0..FRAME_COUNT)
                    .map(|k| {
                        if k % 10 == 9 {
                            format!("nx{k}.{origin}")
                        } else {
                            owners[k % owners.len()].clone()
                        }
                    })
                    .collect();
                (path, text, names)
            }
        };
        let zones = Zones::from_sources(&[ZoneSource {
            path: &path,
            origin: None,
            text: &text,
        }])
        .map_err(|e| anyhow!("{e}"))?;
        let ep = dnsq::Endpoints {
            src_mac: [2, 0, 0x5e, 0x10, 0, 2],
            dst_mac: [2, 0, 0x5e, 0x10, 0, 1],
            src_ip: Ipv4Addr::new(10, 99, 0, 2),
            dst_ip: Ipv4Addr::new(10, 99, 0, 1),
        };
        let frames = names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let msg = dnsq::query_message(k as u16, name).map_err(|e| anyhow!("{e}"))?;
                Ok(dnsq::query_frame(
                    &ep,
                    20_000 + (k % usize::from(FLOWS)) as u16,
                    &msg,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((zones, frames))
    }
}

/// What a DNS subject times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsPart {
    /// The worker step with the DNS app, every query copied back into its frame first.
    Answer,
    /// The worker step with the copy-back alone (every frame restored and sent): the
    /// baseline to subtract.
    RestoreOnly,
}

/// One DNS subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsCase {
    /// Zone and queries.
    pub queries: DnsQueries,
    /// With the app or without.
    pub part: DnsPart,
    /// Frames per batch (must divide [`FRAME_COUNT`]).
    pub batch: usize,
}

impl DnsCase {
    /// Subject name.
    pub fn name(&self) -> String {
        let what = match self.part {
            DnsPart::Answer => "dns step",
            DnsPart::RestoreOnly => "dns baseline (query copy-back only) step",
        };
        format!("{what}, {}, batch {}", self.queries.label(), self.batch)
    }
}

/// The DNS subjects: both query sets, with the app and the copy-back alone, default batch.
pub fn dns_cases() -> Vec<DnsCase> {
    let mut v = Vec::new();
    for queries in [
        DnsQueries::Bench,
        DnsQueries::BenchRuns,
        DnsQueries::TestZone,
    ] {
        for part in [DnsPart::Answer, DnsPart::RestoreOnly] {
            v.push(DnsCase {
                queries,
                part,
                batch: DEFAULT_BATCH,
            });
        }
    }
    v
}

/// The slot of `o` in [`OUTCOMES`] (the app's counter order).
fn outcome_slot(o: &Outcome) -> usize {
    let name = match o {
        Outcome::Answered => "answered",
        Outcome::NoData => "nodata",
        Outcome::NxDomain => "nxdomain",
        Outcome::Referral => "referral",
        Outcome::Refused => "refused",
        Outcome::FormErr => "formerr",
        Outcome::NotImp => "notimp",
        Outcome::BadVers => "badvers",
        Outcome::Truncated => "truncated",
        Outcome::Dropped(_) => "dropped",
    };
    OUTCOMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or(OUTCOMES.len() - 1)
}

/// Copies each frame's query back into it, then runs `inner` (or, without one, sends every
/// frame). Frames come round in ring order, so ring slot `k` always holds query
/// `k % queries.len()`.
struct Restore<A> {
    inner: Option<A>,
    queries: Vec<Vec<u8>>,
    slot: usize,
}

impl<A: App> App for Restore<A> {
    fn name(&self) -> &'static str {
        "restore"
    }

    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        for i in 0..batch.len() {
            let q = &self.queries[self.slot % self.queries.len()];
            self.slot += 1;
            if self.slot == FRAME_COUNT {
                self.slot = 0;
            }
            // Fails only if a query does not fit its buffer, which `measure_dns` rules out.
            if batch.set_len(i, q.len()).is_ok() {
                batch.frame_mut(i).copy_from_slice(q);
            }
        }
        match &mut self.inner {
            Some(app) => app.process(batch),
            None => batch.set_all_verdicts(Verdict::Tx),
        }
    }
}

/// Runs `case` for `budget` and checks it: every query answered and sent, none dropped, and
/// after one more untimed pass over the ring every frame holds a response with a valid UDP
/// checksum, the query's ID and the RCODE the zones give that query, outcome counters
/// matching.
pub fn measure_dns(case: &DnsCase, budget: &Budget) -> Result<Measurement> {
    ensure!(
        (1..=MAX_BATCH).contains(&case.batch) && FRAME_COUNT.is_multiple_of(case.batch),
        "batch {} must be in 1..={MAX_BATCH} and divide {FRAME_COUNT}",
        case.batch
    );
    let (zones, frames) = case.queries.build()?;
    // The oracle: what the zones answer to each query, straight from the answer engine.
    let mut out = vec![0u8; 4096];
    let expect: Vec<(u16, u16, usize)> = frames
        .iter()
        .map(|f| {
            let msg = &f[14 + 20 + 8..];
            let a = zones.answer(
                msg,
                Limits {
                    udp_payload_max: 1472,
                    tcp: false,
                },
                &mut out,
            );
            let rcode = u16::from_be_bytes([out[2], out[3]]) & 0xf;
            let id = u16::from_be_bytes([msg[0], msg[1]]);
            (id, rcode, outcome_slot(&a.outcome))
        })
        .collect();
    let handle = ZonesHandle::new(zones);
    let stats = Arc::new(DnsWorkerStats::default());
    let inner = match case.part {
        DnsPart::Answer => Some(black_box(Dns::new(handle, 1500, stats.clone()))),
        DnsPart::RestoreOnly => None,
    };
    let mut app: Box<dyn App> = Box::new(Restore {
        inner,
        queries: frames.clone(),
        slot: 0,
    });
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut t = MemTransport::new(&refs, FRAME_COUNT, FRAME_SIZE);
    let mut scratch = Scratch::new();
    let mut c = Local::default();
    let max = black_box(case.batch);
    let chunk = chunk_steps(case.batch, budget);
    let (mut short, mut leak) = (false, false);
    let mut run = |t: &mut MemTransport, c: &mut Local, steps: u64| -> u64 {
        let mut packets = 0u64;
        for _ in 0..steps {
            let n = step(t, PortId(0), &mut app, &mut scratch, max, c);
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
    let c0 = c;
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
    let d = c.since(&c0);
    ensure!(
        d.rx_packets == packets && d.tx_packets == packets && d.dropped() == 0,
        "{packets} queries: {} received, {} sent, {} dropped",
        d.rx_packets,
        d.tx_packets,
        d.dropped()
    );
    // Align to the ring's start, then one untimed pass: slot k then holds query k's response.
    let done = (packets as usize + c0.rx_packets as usize) % FRAME_COUNT;
    if done != 0 {
        run(&mut t, &mut c, ((FRAME_COUNT - done) / case.batch) as u64);
    }
    let before = stats.read();
    run(&mut t, &mut c, (FRAME_COUNT / case.batch) as u64);
    ensure!(!short, "a step received less than a full batch");
    ensure!(!leak, "frames outstanding after a step");
    if case.part == DnsPart::RestoreOnly {
        return Ok(Measurement {
            packets,
            batches: steps,
            elapsed,
            conntrack: None,
        });
    }
    let after = stats.read();
    let mut want = [0u64; OUTCOMES.len()];
    for (k, &(id, rcode, outcome)) in expect.iter().enumerate() {
        want[outcome] += 1;
        match dnsq::classify(t.frame(k)) {
            dnsq::Seen::Response { rcode: got, .. } if got == rcode => {}
            other => bail!("slot {k}: {other:?}, expected a response with RCODE {rcode}"),
        }
        let f = t.frame(k);
        let msg_at = 14 + 20 + 8;
        ensure!(
            f.get(msg_at..msg_at + 2) == Some(&id.to_be_bytes()[..]),
            "slot {k}: response ID differs from the query's"
        );
        let ip = sluice::wire::Ipv4Packet::new_checked(&f[14..]).map_err(|e| anyhow!("{e:?}"))?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let u = sluice::wire::UdpPacket::new_checked(ip.into_payload())
            .map_err(|e| anyhow!("{e:?}"))?;
        let pseudo = sluice::wire::checksum::pseudo_header_v4(
            src,
            dst,
            sluice::wire::IpProtocol::UDP,
            u32::from(u.len()),
        );
        ensure!(u.verify_checksum(pseudo), "slot {k}: bad UDP checksum");
    }
    let got: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    ensure!(
        got == want,
        "outcome counters {got:?} over one pass, the zones say {want:?} ({OUTCOMES:?})"
    );
    Ok(Measurement {
        packets,
        batches: steps,
        elapsed,
        conntrack: None,
    })
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

/// The subjects: reflect and drop, step and app alone, 60-byte UDP/IPv4 at batch 32/64/256,
/// 78-byte UDP/IPv6 and 1514-byte UDP/IPv4 at the default batch; then forward, lb and
/// lb-new-flows over the VIP's frames at the default batch.
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
    let mut add = |app, frames, batch| {
        for part in [Part::Step, Part::Process] {
            v.push(Case {
                app,
                frames,
                batch,
                part,
            });
        }
    };
    for (frames, batch) in shapes {
        for app in [AppKind::Reflect, AppKind::Drop] {
            add(app, frames, batch);
        }
    }
    for app in [AppKind::Forward, AppKind::Lb, AppKind::LbNewFlows] {
        add(app, Frames::Udp4Vip, DEFAULT_BATCH);
    }
    v
}

/// Run every case in alternating rounds on one pinned thread and build the report: ns/packet
/// per round, with Mpps and (for steps) the worker loop's share (step − process of the same
/// round) as extra columns; the targets are checked against the default-batch 60-byte steps.
/// The routing cases need the router's tables ([`RouterView::probe`], root); without them
/// they are reported as skipped.
pub fn scenario(o: &Options) -> Result<Scenario> {
    let cases = cases();
    let dns = dns_cases();
    let (rounds, budget, core) = (o.rounds, o.budget, o.core);
    let view = if cases.iter().any(|c| c.app.routes()) {
        RouterView::probe().map_err(|e| format!("{e:#}"))
    } else {
        Err("not needed".into())
    };
    if let Err(why) = &view {
        println!("    the routing cases are skipped: {why}");
    }
    let list = cases.clone();
    let v = view.clone().ok();
    let dns_list = dns.clone();
    // A DNS query costs ~50× a reflected frame: a tenth of the packets keeps each DNS
    // measurement about as long as the others (the time floor still holds).
    let dns_budget = Budget {
        min_packets: (budget.min_packets / 10).max(FRAME_COUNT as u64),
        ..budget
    };
    let (samples, dns_samples): (Vec<Vec<Measurement>>, Vec<Vec<Measurement>>) =
        std::thread::spawn(move || -> Result<_> {
            if let Some(core) = core {
                let mut set = nix::sched::CpuSet::new();
                set.set(core)?;
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                    .with_context(|| format!("pinning to core {core}"))?;
            }
            let mut out = vec![Vec::new(); list.len()];
            let mut dns_out = vec![Vec::new(); dns_list.len()];
            let show = |round: usize, name: String, m: &Measurement| {
                println!(
                    "    round {}  {:<58} {:>7.2} ns/packet  {:>7.2} Mpps  ({} packets{})",
                    round + 1,
                    name,
                    m.ns_per_packet(),
                    m.mpps(),
                    m.packets,
                    m.conntrack_hit_pct()
                        .map_or(String::new(), |p| format!(", {p:.1}% conntrack hits"))
                );
            };
            for round in 0..rounds {
                for (i, case) in list.iter().enumerate() {
                    if case.app.routes() && v.is_none() {
                        continue;
                    }
                    let m = measure(case, &budget, v.as_ref())?;
                    show(round, case.name(), &m);
                    out[i].push(m);
                }
                for (i, case) in dns_list.iter().enumerate() {
                    let m = measure_dns(case, &dns_budget).with_context(|| case.name())?;
                    show(round, case.name(), &m);
                    dns_out[i].push(m);
                }
            }
            Ok((out, dns_out))
        })
        .join()
        .map_err(|_| anyhow!("the pipeline thread panicked"))??;

    let mut subjects: Vec<Subject> = Vec::new();
    for (case, ms) in cases.iter().zip(&samples) {
        if let (true, Err(why)) = (case.app.routes(), &view) {
            subjects.push(Subject::skipped(&case.name(), "ns/packet", why.clone()));
            continue;
        }
        let mut s = Subject::new(&case.name(), "ns/packet");
        s.samples = ms.iter().map(Measurement::ns_per_packet).collect();
        s.extra
            .insert("Mpps".into(), ms.iter().map(Measurement::mpps).collect());
        let hits: Vec<f64> = ms
            .iter()
            .filter_map(Measurement::conntrack_hit_pct)
            .collect();
        if !hits.is_empty() {
            s.extra.insert("conntrack hit %".into(), hits);
        }
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
    for (case, ms) in dns.iter().zip(&dns_samples) {
        let mut s = Subject::new(&case.name(), "ns/packet");
        s.samples = ms.iter().map(Measurement::ns_per_packet).collect();
        s.extra
            .insert("Mpps".into(), ms.iter().map(Measurement::mpps).collect());
        if case.part == DnsPart::Answer {
            let base = DnsCase {
                part: DnsPart::RestoreOnly,
                ..*case
            };
            if let Some(j) = dns.iter().position(|c| *c == base) {
                let app_ns = ms
                    .iter()
                    .zip(&dns_samples[j])
                    .map(|(a, b)| a.ns_per_packet() - b.ns_per_packet())
                    .collect();
                s.extra
                    .insert("dns app ns/query (step − baseline)".into(), app_ns);
            }
        }
        subjects.push(s);
    }
    let mut sc = Scenario {
        name: "pipeline".into(),
        setup: format!(
            "User-space work per packet, no kernel: `sluice::worker::step` over an in-memory ring \
             of {FRAME_COUNT} × {FRAME_SIZE}-byte frames ({FLOWS} flows; the VIP's frames: one flow \
             per frame), and `App::process` alone over the same frames; one thread pinned to core {}; \
             {} alternating rounds of ≥ {:.2} s and ≥ {} packets each after {:.2} s warm-up. Medians \
             in ns/packet (lower is better). 10G line rate with 64-byte frames is \
             {LINE_RATE_10G_NS:.1} ns/packet. forward, lb and lb-new-flows run over the tables sluice's \
             mirror dumped from the lb scenario's router (r0 → r1, static neighbours); lb is DSR to \
             one UDP VIP over {} backends with a 65536-entry connection table (every lookup hits \
             after the first pass), lb-new-flows the same with {NEW_FLOWS_CAPACITY} entries (every \
             lookup misses, inserts and evicts); forward's frames are renewed every \
             {FORWARD_FRESH_PASSES} passes (TTL), untimed.",
            core.map(|c| c.to_string())
                .unwrap_or_else(|| "(unpinned)".into()),
            rounds,
            budget.min_time.as_secs_f64(),
            budget.min_packets,
            budget.warmup.as_secs_f64(),
            lbplan::BACKENDS.len(),
        ),
        subjects,
        targets: vec![],
        limits: vec![],
    };
    let step_of = |app, frames| {
        Case {
            app,
            frames,
            batch: DEFAULT_BATCH,
            part: Part::Step,
        }
        .name()
    };
    sc.evaluate_limits(vec![
        Limit {
            subject: step_of(AppKind::Reflect, Frames::Udp4Min),
            bound: REFLECT_TARGET_NS,
            at_most: true,
        },
        Limit {
            subject: step_of(AppKind::Drop, Frames::Udp4Min),
            bound: DROP_TARGET_NS,
            at_most: true,
        },
    ]);
    // Ratios only: what the connection table and the balancer cost against routing.
    sc.evaluate(vec![
        crate::report::Target {
            subject: step_of(AppKind::Lb, Frames::Udp4Vip),
            baseline: step_of(AppKind::Forward, Frames::Udp4Vip),
            factor: 0.0,
            at_least: false,
            series: None,
        },
        crate::report::Target {
            subject: step_of(AppKind::LbNewFlows, Frames::Udp4Vip),
            baseline: step_of(AppKind::Lb, Frames::Udp4Vip),
            factor: 0.0,
            at_least: false,
            series: None,
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
    fn every_case_without_routes_runs_and_checks_itself() {
        for case in cases().into_iter().filter(|c| !c.app.routes()) {
            let m = measure(&case, &tiny(), None).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(m.packets >= tiny().min_packets, "{case:?}: {m:?}");
            assert_eq!(m.packets, m.batches * case.batch as u64, "{case:?}");
            assert!(m.ns_per_packet() > 0.0 && m.mpps() > 0.0);
            assert_eq!(m.conntrack, None);
        }
    }

    #[test]
    fn the_routing_cases_run_and_check_themselves() {
        if !sluice_testbed::require_root("the_routing_cases_run_and_check_themselves") {
            return;
        }
        let view = RouterView::probe().unwrap_or_else(|e| panic!("{e:#}"));
        for case in cases().into_iter().filter(|c| c.app.routes()) {
            let m = measure(&case, &tiny(), Some(&view)).unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(m.packets, m.batches * case.batch as u64, "{case:?}");
            let hits = m.conntrack_hit_pct();
            match case.app {
                AppKind::Forward => assert_eq!(hits, None),
                AppKind::Lb => assert!(hits.unwrap() > 50.0, "{case:?}: {m:?}"),
                _ => assert_eq!(hits, Some(0.0), "{case:?}: {m:?}"),
            }
        }
        // Forward's frames go round more often than their TTL allows: renewed in time, every
        // verdict stays a forward (a TTL run out would be an ICMP error, and fail the check).
        let long = Budget {
            min_packets: 3 * FORWARD_FRESH_PASSES * FRAME_COUNT as u64,
            ..tiny()
        };
        for part in [Part::Step, Part::Process] {
            let case = Case {
                app: AppKind::Forward,
                frames: Frames::Udp4Vip,
                batch: DEFAULT_BATCH,
                part,
            };
            measure(&case, &long, Some(&view)).unwrap_or_else(|e| panic!("{e:#}"));
        }
        // Without the renewal, the same run must fail.
        let t = Frames::Udp4Vip.templates(Some(&view)).unwrap();
        let stale = Expect {
            fresh_every: None,
            ..Expect::forward(view.r1_mac, view.s0_mac)
        };
        let mut app = AppKind::Forward.make(Some(&view)).unwrap().app;
        assert!(measure_step(&mut app, &stale, &t, DEFAULT_BATCH, &long, Part::Step).is_err());
    }

    #[test]
    fn the_routing_cases_need_the_routers_tables() {
        for case in cases().into_iter().filter(|c| c.app.routes()) {
            let e = measure(&case, &tiny(), None).unwrap_err();
            assert!(format!("{e:#}").contains("router"), "{e:#}");
        }
    }

    #[test]
    fn every_dns_case_runs_and_checks_itself() {
        for case in dns_cases() {
            let m = measure_dns(&case, &tiny()).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(m.packets >= tiny().min_packets, "{case:?}: {m:?}");
            assert_eq!(m.packets, m.batches * case.batch as u64, "{case:?}");
        }
    }

    #[test]
    fn templates_are_valid_frames_of_the_stated_size() {
        for (f, len) in [
            (Frames::Udp4Min, 60),
            (Frames::Udp6Min, 78),
            (Frames::Udp4Max, 1514),
        ] {
            let t = f.templates(None).unwrap();
            assert_eq!(t.len(), usize::from(FLOWS));
            for frame in &t {
                assert_eq!(frame.len(), len, "{f:?}");
                let mut r = frame.clone();
                assert_eq!(reflect_frame(&mut r), Ok(()), "{f:?}");
            }
        }
    }

    #[test]
    fn forwarded_frames_are_recognised_up_to_the_renewal() {
        let (egress, next_hop) = (MacAddr([2, 0, 0, 0, 2, 1]), MacAddr([2, 0, 0, 0, 2, 2]));
        let t = Frames::Udp4Min.templates(None).unwrap().remove(0);
        let ok = Expect::forward(egress, next_hop).frame_ok;
        assert!(ok(&t, &t));
        for hops in 1..=FORWARD_FRESH_PASSES as u8 {
            assert!(
                ok(&t, &routed(&t, hops, egress, next_hop).unwrap()),
                "{hops}"
            );
        }
        let too_many = routed(&t, FORWARD_FRESH_PASSES as u8 + 1, egress, next_hop).unwrap();
        assert!(!ok(&t, &too_many));
        // Right TTL, stale checksum; MACs the wrong way round.
        let mut stale = routed(&t, 1, egress, next_hop).unwrap();
        stale[24] ^= 1;
        assert!(!ok(&t, &stale));
        assert!(!ok(&t, &routed(&t, 1, next_hop, egress).unwrap()));
        let dsr = Expect::dsr(egress, next_hop).frame_ok;
        assert!(dsr(&t, &routed(&t, 0, egress, next_hop).unwrap()));
        assert!(!dsr(&t, &routed(&t, 1, egress, next_hop).unwrap()));
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
        let t = Frames::Udp4Min.templates(None).unwrap();
        let b = tiny();
        let (reflect, drop) = (Expect::reflect(), Expect::drop());
        let e = measure_step(
            &mut DropsOne(Reflect::new()),
            &reflect,
            &t,
            64,
            &b,
            Part::Step,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("Tx:"), "{e:#}");
        let e = measure_process(&mut DropsOne(Reflect::new()), &reflect, &t, 64, &b).unwrap_err();
        assert!(format!("{e:#}").contains("verdict"), "{e:#}");
        // Verdicts right, bytes wrong.
        let e = measure_step(&mut Scribbles, &drop, &t, 64, &b, Part::Step).unwrap_err();
        assert!(format!("{e:#}").contains("must not have produced"), "{e:#}");
        let e = measure_process(&mut Scribbles, &drop, &t, 64, &b).unwrap_err();
        assert!(format!("{e:#}").contains("must not have produced"), "{e:#}");
        // Reflect's frames given to a drop expectation: wrong verdicts.
        let e = measure_step(&mut Reflect::new(), &drop, &t, 64, &b, Part::Step).unwrap_err();
        assert!(format!("{e:#}").contains("drop:"), "{e:#}");
        // Reflect judged as a router: sent on the wrong port.
        let to_port_1 = Expect {
            ports: 2,
            ..Expect::dsr(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        };
        assert!(measure_step(&mut Reflect::new(), &to_port_1, &t, 64, &b, Part::Step).is_err());
    }

    #[test]
    fn a_batch_that_does_not_divide_the_ring_is_refused() {
        let case = Case {
            app: AppKind::Drop,
            frames: Frames::Udp4Min,
            batch: 100,
            part: Part::Step,
        };
        assert!(measure(&case, &tiny(), None).is_err());
    }
}
