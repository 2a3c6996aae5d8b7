//! The `dns` scenario: DNS queries answered per second by sluice `--app dns`, NSD and Knot DNS,
//! each with one worker on one core, on the same veth, counted independently at the client;
//! then `dnsperf` at a fixed rate against each for latency percentiles.
//!
//! ```text
//!  client namespace (core 1)                          server namespace (core 0)
//!  dnsc0: generator (DNS query frames) ═════ veth ══▶ dns0: the subject
//!         response counter (AF_XDP)   ◀════════════════     sluice | NSD | Knot
//!         dnsperf (latency phase)
//! ```
//!
//! - **Bed**: [`DnsBed`] with one server (10.53.1.2 on `dns0`, the client 10.53.1.1 on
//!   `dnsc0`); the zone is [`dns::zone_text`] (`bench.test.`, 10,000 hosts), written to a
//!   temporary directory and served by every subject.
//! - **Queries**: 10,000 prebuilt frames ([`dns::query_frames`]): 9,000 A queries for hosts of
//!   the zone spread over it and 1,000 for names it lacks (NXDOMAIN, one in ten), from 16
//!   source ports, checksums valid. The generator sends them in turn, one frame per `bpf()`
//!   call ([`Generator::run_set`]): `--dns-frames-per-call` (1,024) copies at its maximum, and
//!   64 to 256 at fixed loads ([`paced_frames_per_call`]), since a call is one back-to-back
//!   burst and the server's veth ring holds 256.
//! - **Subjects**, one at a time in the server namespace, everything of each on core 0:
//!   sluice (`--app dns --zone FILE --queues 1 --cores 0`); NSD (`server-count: 1`) and Knot
//!   (`udp-workers: 1`, `tcp-workers: 1`, `background-workers: 1`), started by the harness's
//!   [`DnsServer`] with its configuration otherwise. Socket buffers alike: NSD asks for 2 MiB;
//!   Knot has no setting (its sockets take the system's defaults, 208 KiB here), so it starts
//!   while `net.core.rmem_default` and `wmem_default` are 2 MiB, restored once it serves. After start every thread of every
//!   process of the subject (NSD's main, xfrd and server processes; Knot's threads; sluice's
//!   control threads beside its worker) is pinned to core 0 with `sched_setaffinity`. NSD and
//!   Knot get `pass_all` on `dns0`: veth drops XDP frames at a peer without an XDP program
//!   (sluice has its own).
//! - **Where the kernel's work runs**: `dns0`'s NAPI (the XDP program, and for NSD and Knot
//!   the whole receive path up to the socket; for sluice the copy into the UMEM) in a kernel
//!   thread on core 0 for every subject — so each server's whole receive path is on its one
//!   core, not on the generator's (veth's default). `dnsc0`'s NAPI (the response counter's XDP
//!   program and copy) in a thread on core 1 at `SCHED_FIFO` 50, so the never-sleeping
//!   generator cannot starve the counter (the forward scenario found it must be).
//! - **Counting**: [`ResponseReceiver`] on `dnsc0`, for the whole session, counts DNS
//!   responses (UDP from port 53, QR=1) by RCODE over each window: the answered rate, and the
//!   NXDOMAIN share as a running correctness check. The server namespace's veth and UDP drop
//!   counters say where the rest went.
//! - **Capacity**: the answered rate at the generator's maximum, then at fixed loads climbing
//!   from there ([`DnsBench::capacity`]); a round's figure is the highest. A kernel server
//!   whose receive path shares its core answers far less when flooded than at its best load.
//! - **Checks** before each subject's first round: `kdig` asks five names (three hosts, two
//!   missing) and the answers must be right (AA, the host's one A record; NXDOMAIN with the
//!   SOA); then a 5 kqps generator burst must be answered (98% or more) with one NXDOMAIN in
//!   ten and no other RCODE.
//! - **Latency**: `dnsperf` (one client, one thread, pinned to core 1) at a fixed rate, 10% of
//!   the slowest subject's median capacity (so all are asked the same load, which is 10% for
//!   the slowest), from the client namespace, through the same veth (the counter's XDP
//!   program passes dnsperf's responses to the kernel, so `dnsc0`'s NAPI stays in its thread
//!   on core 1). Percentiles from `dnsperf -v`'s per-query latencies; sluice also with
//!   `--busy-poll`.
//! - **Quiet gate**: the VM is shared; before each measurement the bench waits (bounded) for
//!   both cores to be idle, and the report says how often it had to give up.
//!
//! This module must never leave a server, a program or a process behind (guards stop and
//! detach them, also on errors).

use crate::BenchArgs;
use crate::scenarios::{DUT_CORE, GEN_CORE, TAIL, WARMUP, pin, target, thread_napi};
use anyhow::{Context, Result, anyhow, bail, ensure};
use sluice_bench::dns::{self, Endpoints, Expect, QueryName, ResponseCounts, ResponseReceiver};
use sluice_bench::dut::SluiceDut;
use sluice_bench::r#gen::{self as generator, FrameSet, GenReport, Generator, Rate};
use sluice_bench::report::{Machine, Scenario, Subject};
use sluice_testbed::Netns;
use sluice_testbed::dns::{
    DnsBed, DnsServer, KdigQuery, Outcome, Query, QueryKind, ServerKind, Target, Transport, Zone,
    wait_until_serving,
};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The system's default socket receive and send buffers (not per network namespace).
const RMEM_DEFAULT: &str = "/proc/sys/net/core/rmem_default";
const WMEM_DEFAULT: &str = "/proc/sys/net/core/wmem_default";
/// Knot's sockets' buffers in this benchmark: NSD's (`ss -m` shows NSD 4.6's UDP socket with
/// 2 MiB each way).
const KNOT_SOCKBUF: u32 = 2 << 20;

/// A sysctl set for a while, its old value restored on drop.
struct SysctlGuard {
    path: &'static str,
    old: String,
}

impl SysctlGuard {
    fn set(path: &'static str, value: &str) -> Result<SysctlGuard> {
        let old = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        std::fs::write(path, value).with_context(|| format!("writing {value} to {path}"))?;
        Ok(SysctlGuard {
            path,
            old: old.trim().to_string(),
        })
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(self.path, &self.old) {
            eprintln!("could not restore {} to {}: {e}", self.path, self.old);
        }
    }
}

/// Hosts in the benchmark zone.
const HOSTS: usize = 10_000;
/// Query frames the generator rotates over.
const QUERY_FRAMES: usize = 10_000;
/// One query in this many is for a missing name (NXDOMAIN): 10%.
const NX_EVERY: usize = 10;
/// First source port of the generator's queries (below the ephemeral range, so no kernel
/// socket of the client collides with them).
const BASE_SPORT: u16 = 20_000;
/// Frames per generator call at a fixed rate `pps`: as few as the generator can afford, for
/// smooth traffic. A call sends its frames back to back and `dns0`'s veth ring holds 256: paced
/// calls of 1,024 lost most of each burst there whenever the server's core was busy (Knot
/// answered 50 kqps so, 157 kqps with calls of 64). But a call costs ~0.2 ms whatever its size
/// (its own page pool), so calls of 64 top out near 0.3 Mqps: use the smallest power of two
/// from 64 that keeps calls under ~4,000 a second, and never more than the ring holds.
fn paced_frames_per_call(pps: u64) -> u32 {
    let want = pps.div_ceil(PACED_CALLS_PER_SEC).next_power_of_two();
    want.clamp(64, VETH_RING) as u32
}

/// See [`paced_frames_per_call`].
const PACED_CALLS_PER_SEC: u64 = 4_000;
/// Frames a veth receive ring holds (`VETH_RING_SIZE` in the kernel).
const VETH_RING: u64 = 256;
/// Source ports the queries come from.
const PORTS: u16 = 16;
/// Rate of the correctness burst, and its length: slow enough that Knot's default socket
/// buffer (208 KiB, ~160 queries) rides out its worker waiting ~30 ms for the shared core.
const CHECK_QPS: u64 = 5_000;
const CHECK_TIME: Duration = Duration::from_secs(1);
/// Share of the burst that may go unanswered (lost on the veth, not wrong): 2%.
const CHECK_LOSS: f64 = 0.02;
/// `SCHED_FIFO` priority of the client end's NAPI thread (see the module doc).
const COUNTER_RT_PRIORITY: &str = "50";
/// Capacity search: fixed loads after the maximum, each this much above the last...
const CLIMB_FACTOR: f64 = 1.5;
/// ...at most this many...
const CLIMB_STEPS: usize = 12;
/// ...while the server answers at least this share of what is offered, or this factor more
/// than at any load before.
const KEEPING_UP: f64 = 0.97;
const IMPROVED: f64 = 1.02;
/// The quiet gate before each measurement: this share of both cores idle...
const QUIET_IDLE: f64 = 0.90;
/// Profiles: `perf record`'s sampling rate on the server core, and how long. Each sample
/// costs this VM a timer exit: at 4999 Hz every server answered 35–45% less while sampled.
const PROFILE_HZ: &str = "999";
const PROFILE_SECS: f64 = 8.0;
/// Latency runs: this fraction of the slowest subject's capacity, for this long.
const LATENCY_LOAD: f64 = 0.10;

/// The three servers, in the order a round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// sluice `--app dns`.
    Sluice,
    /// sluice `--app dns --busy-poll` (latency only: its worker never sleeps).
    SluiceBusyPoll,
    /// NSD.
    Nsd,
    /// Knot DNS.
    Knot,
}

impl Server {
    /// The throughput subjects.
    const ALL: [Server; 3] = [Server::Sluice, Server::Nsd, Server::Knot];
    /// The latency subjects: the same, and sluice spinning instead of sleeping when idle.
    const LATENCY: [Server; 4] = [
        Server::Sluice,
        Server::SluiceBusyPoll,
        Server::Nsd,
        Server::Knot,
    ];

    fn name(self) -> &'static str {
        match self {
            Server::Sluice => "sluice --app dns",
            Server::SluiceBusyPoll => "sluice --app dns --busy-poll",
            Server::Nsd => "NSD (1 server process)",
            Server::Knot => "Knot DNS (1 UDP worker)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Server::Sluice => "sluice",
            Server::SluiceBusyPoll => "sluice-busy-poll",
            Server::Nsd => "nsd",
            Server::Knot => "knot",
        }
    }
}

/// A running subject; stopped and detached on drop, in a fixed order.
#[derive(Default)]
struct Running {
    sluice: Option<SluiceDut>,
    server: Option<DnsServer>,
    /// `pass_all` on `dns0` for the kernel servers.
    pass: Option<generator::XdpCounterHandle>,
    /// Threads pinned to the DUT core at start.
    pinned: usize,
}

impl Running {
    /// Stops everything; sluice's final JSON if it was sluice.
    fn stop(mut self) -> Result<Option<serde_json::Value>> {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        self.pass.take();
        match self.sluice.take() {
            Some(d) => Ok(Some(d.stop().context("stopping sluice")?)),
            None => Ok(None),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(d) = self.sluice.take()
            && let Err(e) = d.stop()
        {
            eprintln!("    warning: stopping sluice: {e}");
        }
        self.server.take();
        self.pass.take();
    }
}

/// One throughput measurement.
#[derive(Clone, Copy, Debug)]
struct Figures {
    /// DNS responses counted at the client per second over the window.
    answered_qps: f64,
    /// What the generator sent per second over its whole run.
    offered_qps: f64,
    /// The window's responses by RCODE.
    counts: ResponseCounts,
    /// Responses the counter's socket dropped over the window (its own loss, not the server's).
    counter_drops: u64,
    /// What the server's kernel dropped over the window: on the veth (`dns0` RX dropped) and,
    /// for NSD and Knot, at the socket (UDP receive-buffer errors).
    veth_drops: u64,
    rcvbuf_errors: u64,
}

/// Every thread of process `pid` and of its child processes, pinned to `core`; returns how
/// many. Best effort per thread (one may end meanwhile), an error only if none could be.
fn load_name(r: &Rate) -> String {
    match r {
        Rate::Max => "max".to_string(),
        Rate::Pps(p) | Rate::Paced(p) => format!("{:.1}k", *p as f64 / 1e3),
    }
}

fn pin_tree(pid: u32, core: usize) -> Result<usize> {
    let mut pids = vec![pid];
    // Children (NSD forks xfrd and its servers; neither forks further here).
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(p);
            }
        }
    }
    let mut set = nix::sched::CpuSet::new();
    set.set(core)?;
    let mut n = 0;
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Some(tid) = t.file_name().to_str().and_then(|x| x.parse::<i32>().ok())
                && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).is_ok()
            {
                n += 1;
            }
        }
    }
    ensure!(
        n > 0,
        "could not pin any thread of process {pid} to core {core}"
    );
    Ok(n)
}

/// A directory for the zone and the dnsperf input, removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The dns scenario's bed, zone, queries and generator.
pub struct DnsBench {
    // Declaration order is drop order: counter and generator, then the bed; the directory last.
    /// The response counter on the client end, for the whole session.
    counter: ResponseReceiver,
    generator: Generator,
    bed: DnsBed,
    zone: Zone,
    names: Vec<QueryName>,
    frames: FrameSet,
    dnsperf_input: PathBuf,
    sluice: PathBuf,
    sluice_args: Vec<String>,
    secs: f64,
    rounds: usize,
    frames_per_call: u32,
    /// Each subject's best load in the last round (profiles run there).
    best_load: [Rate; 3],
    /// Measurements that started on a busy machine (the quiet gate gave up).
    contended: usize,
    /// Time spent waiting for a quiet machine.
    waited: Duration,
    latency_secs: u64,
    profile: bool,
    /// The quiet gate's longest wait (`--quiet-wait`).
    quiet_wait: Duration,
    out: PathBuf,
    _dir: WorkDir,
}

impl DnsBench {
    /// Build the bed, write the zone and the dnsperf input, build the query frames, load the
    /// generator on the client end.
    pub fn new(a: &BenchArgs, secs: f64) -> Result<DnsBench> {
        let dir = std::env::temp_dir().join(format!("sluice-dnsbench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let work = WorkDir(dir.clone());
        let zone_path = dir.join("bench.test.zone");
        std::fs::write(&zone_path, dns::zone_text(HOSTS)).context("writing the zone")?;
        let zone = Zone::load(&zone_path).context("reading the zone back")?;
        let names = dns::query_names(HOSTS, QUERY_FRAMES, NX_EVERY);
        let dnsperf_input = dir.join("queries.txt");
        std::fs::write(&dnsperf_input, dns::dnsperf_input(&names))
            .context("writing the dnsperf input")?;

        let bed = DnsBed::new(1).context("building the DNS bed")?;
        let (server, client) = (bed.server(0), bed.client_port(0));
        let ep = Endpoints {
            src_mac: client.mac().0,
            dst_mac: server.mac().0,
            src_ip: client.ipv4(),
            dst_ip: server.ipv4(),
        };
        let frames = dns::query_frames(&ep, &names, BASE_SPORT, PORTS)
            .context("building the query frames")?;
        let iface = client.iface().to_string();
        let generator = bed
            .client()
            .run(move || Generator::load(&iface))
            .map_err(|e| anyhow!("{e}"))?
            .context("loading the generator on the client end")?;
        let counter = start_counter(&bed)?;
        place_client_napi(&bed)?;
        println!(
            "    bed: {} {} (generator + response counter, core {GEN_CORE}) <-> {} {} {} (server, core {DUT_CORE}); zone {} ({HOSTS} hosts)",
            bed.client().name(),
            client.iface(),
            server.ns().name(),
            server.iface(),
            server.ipv4(),
            zone_path.display()
        );
        Ok(DnsBench {
            counter,
            generator,
            bed,
            zone,
            names,
            frames,
            dnsperf_input,
            sluice: a.sluice.clone(),
            sluice_args: a.sluice_args.split_whitespace().map(String::from).collect(),
            secs,
            rounds: a.rounds,
            frames_per_call: a.dns_frames_per_call,
            best_load: [Rate::Max; 3],
            contended: 0,
            waited: Duration::ZERO,
            latency_secs: a.dns_latency_secs,
            profile: a.dns_profile,
            quiet_wait: Duration::from_secs(a.quiet_wait),
            out: a.out.clone(),
            _dir: work,
        })
    }

    /// Markdown header of a session that ran only this scenario.
    pub fn header(&self) -> String {
        let m = Machine::probe();
        format!(
            "# sluice benchmark\n\n- machine: Linux {}, {} × {}, veth (native XDP, AF_XDP copy mode)\n\
             - sluice {}; {} rounds per subject, alternating; {:.1} s window per measurement after {:.2} s warm-up\n\
             - traffic: DNS A queries over UDP/IPv4, {QUERY_FRAMES} prebuilt frames ({} bytes with padding), \
             {} names of a {HOSTS}-host zone and 1 missing name in {NX_EVERY}, {PORTS} source ports, \
             {} frames per generator call; generator and response counter on core {GEN_CORE}, \
             each server (and its veth NAPI thread) on core {DUT_CORE}\n",
            m.kernel,
            m.cpus,
            m.cpu_model,
            m.rev,
            self.rounds,
            self.secs,
            WARMUP.as_secs_f64(),
            self.frames.frame(0).len(),
            QUERY_FRAMES - QUERY_FRAMES / NX_EVERY,
            self.frames_per_call,
        )
    }

    fn server_ns(&self) -> &Netns {
        self.bed.server(0).ns()
    }

    fn server_ip(&self) -> IpAddr {
        self.bed.server(0).ipv4().into()
    }

    /// Starts `who` on `dns0`, waits until it answers SOA over UDP and TCP, pins it to the
    /// DUT core.
    fn start(&self, who: Server) -> Result<Running> {
        let mut run = Running::default();
        let addrs = self.bed.server_addrs(0);
        let origins = vec![self.zone.origin().clone()];
        let ns = self.server_ns();
        let pid = match who {
            Server::Sluice | Server::SluiceBusyPoll => {
                let zone = self.zone.path().to_string_lossy().into_owned();
                let mut args: Vec<&str> = vec![
                    "--app", "dns", "--zone", &zone, "--queues", "1", "--cores", "0",
                ];
                if who == Server::SluiceBusyPoll {
                    args.push("--busy-poll");
                }
                args.extend(self.sluice_args.iter().map(String::as_str));
                let mut d = SluiceDut::start(&self.sluice, ns, self.bed.server(0).iface(), &args)
                    .context("starting sluice")?;
                d.wait_ready(Duration::from_secs(20))
                    .context("waiting for sluice")?;
                wait_until_serving(
                    self.bed.client(),
                    &addrs,
                    &origins,
                    Duration::from_secs(10),
                    || Ok(()),
                )
                .map_err(|e| anyhow!("sluice: {e}"))?;
                let pid = d.pid();
                run.sluice = Some(d);
                pid
            }
            Server::Nsd | Server::Knot => {
                let iface = self.bed.server(0).iface().to_string();
                run.pass = Some(
                    ns.run(move || generator::attach_pass_all(&iface))
                        .map_err(|e| anyhow!("{e}"))?
                        .map_err(|e| anyhow!("{e}"))?,
                );
                let kind = if who == Server::Nsd {
                    ServerKind::Nsd
                } else {
                    ServerKind::Knot
                };
                // Knot has no socket-buffer setting: its sockets take the system defaults
                // (208 KiB), where NSD asks for 2 MiB. For a like-for-like run Knot starts
                // under 2 MiB defaults (read when a socket is made), restored once it serves.
                let raised = if who == Server::Knot {
                    let buf = KNOT_SOCKBUF.to_string();
                    vec![
                        SysctlGuard::set(RMEM_DEFAULT, &buf)?,
                        SysctlGuard::set(WMEM_DEFAULT, &buf)?,
                    ]
                } else {
                    Vec::new()
                };
                let mut s =
                    DnsServer::start(kind, ns, &addrs, std::slice::from_ref(&self.zone), &[])
                        .with_context(|| format!("starting {}", who.short()))?;
                s.wait_ready(self.bed.client(), Duration::from_secs(20))
                    .with_context(|| format!("waiting for {}", who.short()))?;
                drop(raised);
                let pid = s.pid().context("the server has no process")?;
                run.server = Some(s);
                pid
            }
        };
        run.pinned = pin_tree(pid, DUT_CORE)?;
        Ok(run)
    }

    /// `dns0`'s NAPI to a thread on the DUT core (after each subject's start: a new XDP
    /// program on the veth end brings a new NAPI thread).
    fn place_napi(&self) -> Result<()> {
        let s = self.bed.server(0);
        if thread_napi(s.ns(), s.iface(), DUT_CORE).is_empty() {
            bail!(
                "could not move {}'s NAPI to a thread on core {DUT_CORE}",
                s.iface()
            );
        }
        Ok(())
    }

    /// The quiet gate (see [`wait_for_quiet`]), counted.
    fn quiet(&mut self) {
        let (quiet, waited) = wait_for_quiet(self.quiet_wait);
        self.waited += waited;
        if !quiet {
            self.contended += 1;
            println!(
                "    (the machine stayed busy for {:.0} s; measuring anyway)",
                waited.as_secs_f64()
            );
        } else if waited > Duration::from_secs(2) {
            println!(
                "    (waited {:.0} s for other work on the machine to finish)",
                waited.as_secs_f64()
            );
        }
    }

    /// What the quiet gate did since `since` (contended count, time waited), for a setup text.
    fn gate_note(&self, since: (usize, Duration)) -> String {
        format!(
            "Before each measurement the bench waited for the machine to be ≥ {:.0}% idle (at most {} s): {:.0} s waited in all; {} measurement(s) started on a busy machine.",
            QUIET_IDLE * 100.0,
            self.quiet_wait.as_secs(),
            (self.waited - since.1).as_secs_f64(),
            self.contended - since.0
        )
    }

    /// Starts `who` and places `dns0`'s NAPI thread, once the machine is quiet.
    fn session(&mut self, who: Server) -> Result<Running> {
        self.quiet();
        let run = self.start(who)?;
        self.place_napi()?;
        Ok(run)
    }

    /// The generator for `total` at `rate` on its own thread (client namespace, pinned to the
    /// generator's core), `measure` here after `after`.
    fn with_traffic<T: Send>(
        &mut self,
        rate: Rate,
        total: Duration,
        after: Duration,
        measure: impl FnOnce(&DnsBed, &ResponseReceiver) -> T,
    ) -> Result<(GenReport, T)> {
        let per_call = match rate {
            Rate::Max => self.frames_per_call,
            // (The live-frames generator refuses Rate::Paced; see crate::pace.)
            Rate::Pps(pps) | Rate::Paced(pps) => {
                paced_frames_per_call(pps).min(self.frames_per_call)
            }
        };
        let DnsBench {
            bed,
            generator,
            frames,
            counter,
            ..
        } = self;
        let (bed, counter) = (&*bed, &*counter);
        let client = bed.client();
        let frames = &*frames;
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                client.run(move || {
                    pin(GEN_CORE);
                    generator.run_set(frames, per_call, rate, total, |_| {})
                })
            });
            std::thread::sleep(after);
            let t = measure(bed, counter);
            let rep = h
                .join()
                .map_err(|_| anyhow!("generator thread panicked"))?
                .map_err(|e| anyhow!("{e}"))?
                .context("generator run")?;
            Ok((rep, t))
        })
    }

    /// One throughput measurement of the running subject at `rate`.
    fn measure(&mut self, rate: Rate) -> Result<Figures> {
        self.quiet();
        ensure!(
            self.counter.is_running(),
            "the response counter's worker has stopped"
        );
        let window = Duration::from_secs_f64(self.secs);
        let total = WARMUP + window + TAIL;
        let (rep, (a, b, k0, k1)) = self.with_traffic(rate, total, WARMUP, |bed, counter| {
            let kernel = || kernel_counts(bed);
            let (a, k0) = (counter.snapshot(), kernel());
            std::thread::sleep(window);
            (a, counter.snapshot(), k0, kernel())
        })?;
        let dt = match (a.at, b.at) {
            (Some(x), Some(y)) => (y - x).as_secs_f64(),
            _ => window.as_secs_f64(),
        };
        let counts = b.counts.since(&a.counts);
        // Let the tail drain before the next measurement's window.
        std::thread::sleep(Duration::from_millis(100));
        Ok(Figures {
            answered_qps: counts.responses as f64 / dt,
            offered_qps: rep.achieved_pps,
            counts,
            counter_drops: b.ring_drops - a.ring_drops,
            veth_drops: k1.dev_rx_dropped - k0.dev_rx_dropped,
            rcvbuf_errors: k1.udp_rcvbuf_errors - k0.udp_rcvbuf_errors,
        })
    }

    /// The running subject's capacity: first at the generator's maximum, then at fixed loads
    /// climbing from what it answered there, ×[`CLIMB_FACTOR`] a step, while it answers at
    /// least [`KEEPING_UP`] of what is offered or more than at any load before (and the
    /// generator can offer more). Why not the maximum alone: a kernel server whose receive
    /// path shares its core answers *less* the more it is offered (the veth's NAPI thread takes
    /// the core), so the answered rate at overload is not its capacity. Returns every point,
    /// in order.
    fn capacity(&mut self) -> Result<Vec<(Rate, Figures)>> {
        let at_max = self.measure(Rate::Max)?;
        let mut best = at_max.answered_qps;
        let mut points = vec![(Rate::Max, at_max)];
        let mut load = at_max.answered_qps;
        for _ in 0..CLIMB_STEPS {
            if load >= at_max.offered_qps * 0.95 || load < 1_000.0 {
                break;
            }
            let rate = Rate::Pps(load as u64);
            let f = self.measure(rate)?;
            points.push((rate, f));
            let keeping_up = f.answered_qps >= KEEPING_UP * load.min(f.offered_qps);
            let improved = f.answered_qps > best * IMPROVED;
            best = best.max(f.answered_qps);
            if !keeping_up && !improved {
                break;
            }
            load *= CLIMB_FACTOR;
        }
        Ok(points)
    }

    /// kdig asks three hosts and two missing names; each answer must be right. Then a
    /// generator burst must be answered in full, one NXDOMAIN in ten.
    fn check(&mut self, who: Server) -> Result<()> {
        let run = self.session(who)?;
        let target = Target::at(who.short(), self.bed.server(0));
        let picks: Vec<QueryName> = {
            let hits = self
                .names
                .iter()
                .filter(|q| matches!(q.expect, Expect::Address(_)));
            let misses = self.names.iter().filter(|q| q.expect == Expect::NxDomain);
            hits.step_by(2999)
                .take(3)
                .chain(misses.take(2))
                .cloned()
                .collect()
        };
        for q in &picks {
            let query = Query {
                family: sluice_testbed::IpFamily::V4,
                transport: Transport::Udp,
                kind: QueryKind::Kdig(KdigQuery {
                    name: q.name.clone(),
                    qtype: 1,
                    qclass: 1,
                    flags: Default::default(),
                    edns: None,
                    extra: Vec::new(),
                }),
            };
            let out = self
                .bed
                .client()
                .run(|| sluice_testbed::dns::ask(&target, &query))
                .map_err(|e| anyhow!("{e}"))?;
            let Outcome::Reply(m) = out else {
                bail!("{}: kdig {} A: {out}", who.name(), q.name);
            };
            let ok = match q.expect {
                Expect::Address(addr) => {
                    m.rcode == 0
                        && m.aa
                        && m.answer.len() == 1
                        && m.answer[0].rtype == 1
                        && m.answer[0].rdata == addr.octets()
                }
                Expect::NxDomain => {
                    m.rcode == 3 && m.aa && m.answer.is_empty() && {
                        m.authority.iter().any(|r| r.rtype == 6)
                    }
                }
            };
            ensure!(ok, "{}: wrong answer to {} A:\n{m}", who.name(), q.name);
        }
        // The generator's own frames, at a rate every subject answers in full.
        let (k0, c0) = (kernel_counts(&self.bed), self.counter.snapshot().counts);
        let (rep, ()) =
            self.with_traffic(Rate::Pps(CHECK_QPS), CHECK_TIME, CHECK_TIME, |_, _| {})?;
        std::thread::sleep(Duration::from_millis(300));
        let (k1, c1) = (kernel_counts(&self.bed), self.counter.snapshot().counts);
        let c = c1.since(&c0);
        let nx_pct = c.nxdomain as f64 * 100.0 / c.responses.max(1) as f64;
        // "In full", give or take what a veth ring drops when another process holds a core
        // for a few milliseconds (seen on the shared VM: 48 of 10,000 at 20 kqps).
        ensure!(
            c.responses <= rep.sent
                && c.responses as f64 >= rep.sent as f64 * (1.0 - CHECK_LOSS)
                && c.other_rcode == 0
                && c.truncated == 0,
            "{}: {} queries sent at {CHECK_QPS} qps, {} responses (at least {:.0}% needed) ({} NOERROR, {} NXDOMAIN, {} other, {} truncated); \
             meanwhile in the server's namespace: {}",
            who.name(),
            rep.sent,
            c.responses,
            (1.0 - CHECK_LOSS) * 100.0,
            c.noerror,
            c.nxdomain,
            c.other_rcode,
            c.truncated,
            k1.since(&k0),
        );
        ensure!(
            (nx_pct - 100.0 / NX_EVERY as f64).abs() < 2.0,
            "{}: {nx_pct:.1}% NXDOMAIN, expected {:.0}%",
            who.name(),
            100.0 / NX_EVERY as f64
        );
        run.stop()?;
        println!(
            "    check: {:<28} kdig: {} names answered right; generator burst: {} of {} answered, {nx_pct:.1}% NXDOMAIN",
            who.name(),
            picks.len(),
            c.responses,
            rep.sent
        );
        Ok(())
    }

    /// The throughput rounds; returns the scenario and each subject's median capacity.
    fn throughput(&mut self) -> Result<(Scenario, Vec<f64>)> {
        let gate0 = (self.contended, self.waited);
        let mut subs: Vec<Subject> = Server::ALL
            .iter()
            .map(|s| Subject::new(s.name(), "kqps"))
            .collect();
        for round in 0..self.rounds {
            for (i, who) in Server::ALL.into_iter().enumerate() {
                let run = self.session(who)?;
                let points = self.capacity();
                let fin = run.stop()?;
                let points = points?;
                let mut best: Option<(Rate, Figures)> = None;
                for (load, f) in &points {
                    let nx_pct =
                        f.counts.nxdomain as f64 * 100.0 / f.counts.responses.max(1) as f64;
                    println!(
                        "    round {}: {:<26} load {:>7}: {:>7.1} kqps answered (offered {:>6.1} kqps, {:.1}% NXDOMAIN; dropped in the window: {} on dns0, {} at the UDP socket, {} by the counter)",
                        round + 1,
                        who.name(),
                        load_name(load),
                        f.answered_qps / 1e3,
                        f.offered_qps / 1e3,
                        nx_pct,
                        f.veth_drops,
                        f.rcvbuf_errors,
                        f.counter_drops,
                    );
                    ensure!(
                        f.counts.other_rcode == 0 && f.counts.not_dns == 0,
                        "{}: {} responses with an unexpected RCODE, {} frames that are not DNS responses",
                        who.name(),
                        f.counts.other_rcode,
                        f.counts.not_dns
                    );
                    if best.is_none_or(|(_, b)| f.answered_qps > b.answered_qps) {
                        best = Some((*load, *f));
                    }
                }
                let (best_load, best) = best.context("no measurement")?;
                let at_max = points[0].1;
                if let Some(fin) = fin {
                    let d = &fin["total"];
                    println!(
                        "             sluice's own totals: rx {} tx {} dropped {}",
                        d["rx_packets"], d["tx_packets"], d["dropped"]
                    );
                }
                self.best_load[i] = best_load;
                let s = &mut subs[i];
                s.samples.push(best.answered_qps / 1e3);
                let mut extra = |k: &str, v: f64| s.extra.entry(k.into()).or_default().push(v);
                extra("offered kqps at best", best.offered_qps / 1e3);
                extra("kqps at max load", at_max.answered_qps / 1e3);
                extra("offered kqps at max load", at_max.offered_qps / 1e3);
                extra(
                    "NXDOMAIN % at best",
                    best.counts.nxdomain as f64 * 100.0 / best.counts.responses.max(1) as f64,
                );
                let per_s = |n: u64| n as f64 / self.secs / 1e3;
                extra("kqps dropped on dns0 at best", per_s(best.veth_drops));
                extra(
                    "kqps dropped at the UDP socket at best",
                    per_s(best.rcvbuf_errors),
                );
                extra(
                    "counter drops (all points)",
                    points.iter().map(|(_, f)| f.counter_drops as f64).sum(),
                );
            }
        }
        let caps: Vec<f64> = subs.iter().map(|s| s.median().unwrap_or(0.0)).collect();
        let names = Server::ALL.map(Server::name);
        let mut sc = Scenario {
            name: "dns".into(),
            setup: format!(
                "DNS A queries answered per second (kqps), counted by an AF_XDP response counter on the client end (UDP from port 53 with QR=1) over the window; \
                 {} rounds, subjects alternating, each started afresh per round with all its threads on core {DUT_CORE} and dns0's NAPI in a thread there; \
                 a round's figure is the highest answered rate over the generator at its maximum and then fixed loads climbing from what was answered there \
                 (×{CLIMB_FACTOR} a step, while {:.0}% or more is answered or 2% more than at any load before); \
                 {QUERY_FRAMES} query frames in turn, {} per generator call at the maximum, 64 to 256 at fixed loads (each call is one burst; the fewest the generator can afford); \
                 every subject first passed a kdig check and a {CHECK_QPS} qps burst answered in full with {}% NXDOMAIN. {}",
                self.rounds,
                KEEPING_UP * 100.0,
                self.frames_per_call,
                100 / NX_EVERY,
                self.gate_note(gate0),
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(vec![
            target(names[0], names[1], 5.0, true, None),
            target(names[0], names[2], 3.0, true, None),
        ]);
        Ok((sc, caps))
    }

    /// dnsperf at `qps` against each subject, alternating rounds.
    fn latency(&mut self, qps: u64) -> Result<Scenario> {
        let gate0 = (self.contended, self.waited);
        let mut subs: Vec<Subject> = Server::LATENCY
            .iter()
            .map(|s| Subject::new(s.name(), "µs p99"))
            .collect();
        // Every query of every round, per subject: percentiles over all of them.
        let mut pooled: Vec<Option<hdrhistogram::Histogram<u64>>> =
            vec![None; Server::LATENCY.len()];
        for round in 0..self.rounds {
            for (i, who) in Server::LATENCY.into_iter().enumerate() {
                let run = self.session(who)?;
                let r = dns::run_dnsperf(
                    self.bed.client(),
                    self.server_ip(),
                    &self.dnsperf_input,
                    qps,
                    self.latency_secs,
                    Some(GEN_CORE),
                );
                run.stop()?;
                let r = r.with_context(|| format!("dnsperf against {}", who.short()))?;
                let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1e3;
                println!(
                    "    round {}: {:<28} {:>7.0} qps completed of {} sent ({} lost, {} NXDOMAIN): p50 {:.0} µs  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
                    round + 1,
                    who.name(),
                    r.qps,
                    r.sent,
                    r.lost,
                    r.nxdomain,
                    us(0.5),
                    us(0.9),
                    us(0.99),
                    us(0.999),
                    r.latency.max() as f64 / 1e3
                );
                ensure!(
                    r.other_rcode == 0,
                    "{}: {} dnsperf answers with an unexpected RCODE",
                    who.name(),
                    r.other_rcode
                );
                let s = &mut subs[i];
                s.samples.push(us(0.99));
                let mut extra = |k: &str, v: f64| s.extra.entry(k.into()).or_default().push(v);
                extra("p50 µs", us(0.5));
                extra("p90 µs", us(0.9));
                extra("p99.9 µs", us(0.999));
                extra("mean µs", r.latency.mean() / 1e3);
                extra("completed qps", r.qps);
                extra("lost", r.lost as f64);
                if let Some(avg) = r.average_us {
                    extra("dnsperf's own average µs", avg);
                }
                match &mut pooled[i] {
                    Some(h) => h.add(&r.latency).context("pooling latencies")?,
                    slot => *slot = Some(r.latency.clone()),
                }
            }
        }
        for (s, h) in subs.iter_mut().zip(&pooled) {
            if let Some(h) = h {
                for (k, q) in [
                    ("all rounds: p50 µs", 0.5),
                    ("all rounds: p90 µs", 0.9),
                    ("all rounds: p99 µs", 0.99),
                    ("all rounds: p99.9 µs", 0.999),
                ] {
                    s.extra
                        .insert(k.into(), vec![h.value_at_quantile(q) as f64 / 1e3]);
                }
            }
        }
        let names = Server::LATENCY.map(Server::name);
        let mut sc = Scenario {
            name: "dns latency (dnsperf)".into(),
            setup: format!(
                "dnsperf 2.10 (`-Q {qps} -l {} -c 1 -T 1 -t 1 -v`, pinned to core {GEN_CORE}) from the client namespace, {qps} qps = {:.0}% of the slowest subject's median capacity, \
                 the same {QUERY_FRAMES} names; latency of every completed query from dnsperf's per-query lines; p99 per round, medians over {} rounds, and \
                 percentiles over every query of all rounds (\"all rounds\"; the targets compare those p99s). {}",
                self.latency_secs,
                LATENCY_LOAD * 100.0,
                self.rounds,
                self.gate_note(gate0),
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        let p99 = Some("all rounds: p99 µs");
        sc.evaluate(vec![
            target(names[0], names[2], 0.5, false, p99),
            target(names[1], names[2], 0.5, false, p99),
            target(names[0], names[3], 0.0, false, p99),
        ]);
        Ok(sc)
    }

    /// `perf record` of the DUT core while each subject runs at the first load (see
    /// `--dns-profile`); the top symbols go to `<out>/dns-profile-<subject>.txt`.
    fn profiles(&mut self) -> Result<()> {
        if std::process::Command::new("perf")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("    profiles: perf is not installed; skipped");
            return Ok(());
        }
        for (i, who) in Server::ALL.into_iter().enumerate() {
            let load = self.best_load[i];
            let run = self.session(who)?;
            let data = self._dir.0.join(format!("perf-{}.data", who.short()));
            let window = Duration::from_secs_f64(self.secs.max(PROFILE_SECS));
            let data_arg = data.clone();
            let (rep, (a, rec, b)) =
                self.with_traffic(load, WARMUP + window + TAIL, WARMUP, |_, c| {
                    let a = c.snapshot();
                    let rec = std::process::Command::new("perf")
                        .args(["record", "-e", "cpu-clock", "-F", PROFILE_HZ, "-C"])
                        .arg(DUT_CORE.to_string())
                        .arg("-o")
                        .arg(&data_arg)
                        .args(["--", "sleep"])
                        .arg(format!("{:.2}", window.as_secs_f64()))
                        .output();
                    (a, rec, c.snapshot())
                })?;
            run.stop()?;
            let answered = match (a.at, b.at) {
                (Some(x), Some(y)) => {
                    b.counts.since(&a.counts).responses as f64 / (y - x).as_secs_f64()
                }
                _ => 0.0,
            };
            let rec = rec.context("running perf record")?;
            if !rec.status.success() {
                println!(
                    "    profiles: perf record failed: {}",
                    String::from_utf8_lossy(&rec.stderr).trim()
                );
                return Ok(());
            }
            let rep_txt = std::process::Command::new("perf")
                .args([
                    "report",
                    "--stdio",
                    "--no-children",
                    "--sort",
                    "comm,dso,sym",
                    "--percent-limit",
                    "0.5",
                    "-i",
                ])
                .arg(&data)
                .output()
                .context("running perf report")?;
            let by_comm = std::process::Command::new("perf")
                .args(["report", "--stdio", "--no-children", "--sort", "comm", "-i"])
                .arg(&data)
                .output()
                .context("running perf report")?;
            let path = self.out.join(format!("dns-profile-{}.txt", who.short()));
            std::fs::create_dir_all(&self.out)?;
            let text = format!(
                "# perf record -e cpu-clock -F {PROFILE_HZ} -C {DUT_CORE} for {:.1} s while {} answered {:.1} kqps (offered {:.1} kqps, load {}: its best in the last round)\n\n{}\n{}",
                window.as_secs_f64(),
                who.name(),
                answered / 1e3,
                rep.achieved_pps / 1e3,
                load_name(&load),
                String::from_utf8_lossy(&by_comm.stdout),
                String::from_utf8_lossy(&rep_txt.stdout),
            );
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("    profile: {}", path.display());
        }
        Ok(())
    }

    /// The whole scenario: checks, throughput rounds, latency rounds (and profiles).
    pub fn scenarios(&mut self) -> Result<Vec<Scenario>> {
        for who in Server::ALL {
            self.check(who)?;
        }
        let (tp, caps) = self.throughput()?;
        let slowest = caps.iter().copied().fold(f64::MAX, f64::min);
        let mut out = vec![tp];
        if let Err(why) = dns::dnsperf_available() {
            println!("    latency: skipped ({why})");
        } else if slowest.is_finite() && slowest > 0.0 {
            let qps = ((slowest * 1e3 * LATENCY_LOAD) as u64).max(100);
            println!(
                "==> dnsperf at {qps} qps ({:.0}% of the slowest subject's {slowest:.1} kqps)",
                LATENCY_LOAD * 100.0
            );
            out.push(self.latency(qps)?);
        }
        // The profiles are extra: when one fails, the measurements above are still reported,
        // with the failure said here and in the setup text.
        if self.profile
            && let Err(e) = self.profiles()
        {
            let why = format!("{e:#}");
            println!("    profiles: failed: {why}");
            if let Some(tp) = out.first_mut() {
                tp.setup.push_str(&format!(" The profiles failed: {why}."));
            }
        }
        Ok(out)
    }
}

/// The share of CPU time idle over `span`, both cores, from `/proc/stat`.
fn idle_share(span: Duration) -> f64 {
    let read = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...: idle + iowait are idle.
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((idle, v.iter().sum()))
    };
    let Some((i0, t0)) = read() else { return 1.0 };
    std::thread::sleep(span);
    let Some((i1, t1)) = read() else { return 1.0 };
    if t1 <= t0 {
        return 1.0;
    }
    (i1 - i0) as f64 / (t1 - t0) as f64
}

/// Waits, at most `limit` (`--quiet-wait`; then the measurement runs anyway, counted as
/// contended), until the machine is idle ([`QUIET_IDLE`] of both cores over
/// half a second) — on this shared VM other work comes and goes, and a measurement taken under
/// it measures that work. Called with the subject idle. Returns whether it got quiet, and how
/// long it waited.
fn wait_for_quiet(limit: Duration) -> (bool, Duration) {
    let t0 = std::time::Instant::now();
    loop {
        if idle_share(Duration::from_millis(500)) >= QUIET_IDLE {
            return (true, t0.elapsed());
        }
        if t0.elapsed() >= limit {
            return (false, t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Starts the response counter on the client end of `bed`, for UDP to the generator's
/// source ports.
fn start_counter(bed: &DnsBed) -> Result<ResponseReceiver> {
    let iface = bed.client_port(0).iface().to_string();
    let ports: Vec<u16> = (0..PORTS).map(|p| BASE_SPORT + p).collect();
    bed.client()
        .run(move || ResponseReceiver::start(&iface, &ports, Some(GEN_CORE)))
        .map_err(|e| anyhow!("{e}"))?
        .map_err(|e| anyhow!("{e}"))
        .context("starting the response counter")
}

/// `dnsc0`'s NAPI (the counter's XDP program and copy; it has one while the counter runs) to
/// a real-time thread on the generator's core. See the module doc.
fn place_client_napi(bed: &DnsBed) -> Result<()> {
    let iface = bed.client_port(0).iface();
    let c = thread_napi(bed.client(), iface, GEN_CORE);
    if c.is_empty() {
        bail!("could not move {iface}'s NAPI to a thread on core {GEN_CORE}");
    }
    for pid in c {
        let ok = std::process::Command::new("chrt")
            .args(["-f", "-p", COUNTER_RT_PRIORITY, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("chrt -f -p {COUNTER_RT_PRIORITY} {pid} (the counter's NAPI thread) failed");
        }
    }
    Ok(())
}

/// The server namespace's UDP and `dns0` counters (where a lost query went).
fn kernel_counts(bed: &DnsBed) -> KernelCounts {
    let iface = bed.server(0).iface().to_string();
    bed.server(0)
        .ns()
        .run(move || KernelCounts::read(&iface))
        .unwrap_or_default()
}

/// What the server's kernel counted: UDP datagrams (`/proc/net/snmp`) and the server veth's
/// receive counters (`/proc/net/dev`), read in its namespace.
#[derive(Clone, Copy, Debug, Default)]
struct KernelCounts {
    udp_in: u64,
    udp_rcvbuf_errors: u64,
    udp_no_ports: u64,
    dev_rx: u64,
    dev_rx_dropped: u64,
}

impl KernelCounts {
    /// Reads them on the calling thread (which must be in the namespace): `thread-self`, as
    /// `/proc/self/net` shows the main thread's namespace.
    fn read(iface: &str) -> KernelCounts {
        let mut k = KernelCounts::default();
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
        let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
        if let [names, values] = udp[..] {
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                let v = v.parse().unwrap_or(0);
                match n {
                    "InDatagrams" => k.udp_in = v,
                    "RcvbufErrors" => k.udp_rcvbuf_errors = v,
                    "NoPorts" => k.udp_no_ports = v,
                    _ => {}
                }
            }
        }
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
        if let Some(l) = dev
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{iface}:")))
        {
            let f: Vec<u64> = l
                .split_once(':')
                .map(|(_, r)| {
                    r.split_whitespace()
                        .map(|x| x.parse().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default();
            // Receive: bytes packets errs drop ...
            k.dev_rx = f.get(1).copied().unwrap_or(0);
            k.dev_rx_dropped = f.get(3).copied().unwrap_or(0);
        }
        k
    }

    fn since(&self, a: &KernelCounts) -> String {
        format!(
            "UDP in {}, receive-buffer errors {}, no port {}; {} packets received on the veth, {} dropped there",
            self.udp_in - a.udp_in,
            self.udp_rcvbuf_errors - a.udp_rcvbuf_errors,
            self.udp_no_ports - a.udp_no_ports,
            self.dev_rx - a.dev_rx,
            self.dev_rx_dropped - a.dev_rx_dropped
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn paced_calls_are_small_and_few() {
        assert_eq!(paced_frames_per_call(1_000), 64);
        assert_eq!(paced_frames_per_call(200_000), 64);
        assert_eq!(paced_frames_per_call(300_000), 128);
        assert_eq!(paced_frames_per_call(500_000), 128);
        assert_eq!(paced_frames_per_call(1_000_000), 256);
        assert_eq!(paced_frames_per_call(5_000_000), 256);
    }
}
