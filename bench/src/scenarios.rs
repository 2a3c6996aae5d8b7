//! The scenarios of `sluice-bench bench` and the generator demo.
//!
//! Topology (one test bed per session): engine end = DUT, its work pinned to core 0; peer end =
//! generator (XDP live frames, core 1) and receiver (AF_XDP via sluice's own engine, core 1).
//! Every measurement: start the subject, start the generator, let it warm up, read the
//! subject's counter at the start and the end of a fixed window, stop everything.

use crate::{BenchArgs, DemoArgs};
use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use sluice::steer::L4Proto;
use sluice::xsk::XskError;
use sluice_bench::dut::{SluiceDut, cpu_time, rate};
use sluice_bench::r#gen::{self as generator, GenReport, Generator, L4, Rate, Template};
use sluice_bench::kernel::{SinkConfig, UdpEchoServer, UdpSink};
use sluice_bench::pace::PaceMethod;
use sluice_bench::peers::testpmd::{Testpmd, TestpmdMode};
use sluice_bench::report::{
    LoadCurve, Machine, Scenario, Series, Subject, Target, latency_load_plot, line_plot,
};
use sluice_bench::rtt;
use sluice_bench::rx::{Receiver, RxError, RxReport};
use sluice_testbed::{Netns, TestBed, VethOpts};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod load_latency;

/// Core the DUT's packet work is pinned to.
pub(crate) const DUT_CORE: usize = 0;
/// Core of the generator and the receiver.
pub(crate) const GEN_CORE: usize = 1;
/// UDP port the DUT serves.
const PORT: u16 = 9000;
/// First source port of the generator's flows.
const BASE_SPORT: u16 = 10_000;
/// Flows (source ports) the generator cycles through.
const FLOWS: u16 = 16;
/// Traffic before the measurement window opens.
pub(crate) const WARMUP: Duration = Duration::from_millis(750);
/// Traffic after it closes.
pub(crate) const TAIL: Duration = Duration::from_millis(250);

/// One benchmark session: the bed, the generator and what earlier scenarios measured.
pub struct Session {
    bed: TestBed,
    sluice: PathBuf,
    sluice_args: Vec<String>,
    secs: f64,
    rounds: usize,
    /// The upgrade scenario's offered rate (frames/s).
    upgrade_pps: u64,
    template: Template,
    generator: Generator,
    /// Median sluice reflect rate (frames/s), for the latency scenario's 10% load.
    reflect_capacity: Option<f64>,
    /// Generator maximum (frames/s) seen so far, for the sweep.
    gen_max: Option<f64>,
    /// Latency CDFs by subject (last round), for the plot.
    cdfs: Vec<(String, Vec<(f64, f64)>)>,
    /// Sweep points by subject: (offered Mpps, achieved Mpps).
    sweep: Vec<(String, Vec<(f64, f64)>)>,
    /// Latency-vs-load curves of the load-latency scenario, for the plot.
    load_curves: Vec<LoadCurve>,
    /// `vm.nr_hugepages` before the session raised it for testpmd (restored on drop).
    hugepages_before: Option<String>,
    /// Extra `sluice run` arguments of the lever being measured right now.
    lever_args: Vec<String>,
    /// Run the DUT's NAPI on the DUT core (see [`Session::place_napi`]).
    dut_napi: bool,
    /// The receiver spins instead of sleeping (latency runs: its own wake-ups would otherwise
    /// be part of every measured latency).
    receiver_busy: bool,
    /// The measuring side — the receiver's worker and its veth NAPI thread, both on the
    /// generator's core — runs SCHED_FIFO, and a paced generator SCHED_FIFO below it (paced
    /// runs: the pacer spins on that core, and the measuring side must not wait behind it;
    /// measured at 10% load on sluice reflect: 4.6% of the frames lost in the receiver's veth
    /// ring without it, 0.2% with it; and a SCHED_OTHER pacer lost whole time slices to other
    /// tenants' tasks).
    measure_rt: bool,
    /// How the paced generator hands frames to the kernel (`--pace-method`).
    pace_method: PaceMethod,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(v) = self.hugepages_before.take() {
            let _ = std::fs::write(NR_HUGEPAGES, v);
        }
    }
}

/// dpdk-testpmd wants 2 MiB hugepages (it falls back to `--no-huge` without them); reserve 256
/// when it is installed and fewer are set. Returns the previous value to restore.
fn reserve_hugepages() -> Option<String> {
    Testpmd::available().ok()?;
    let before = std::fs::read_to_string(NR_HUGEPAGES).ok()?;
    if before.trim().parse::<u64>().ok()? >= 256 {
        return None;
    }
    std::fs::write(NR_HUGEPAGES, "256").ok()?;
    Some(before.trim().to_string())
}

pub(crate) fn pin(core: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(core).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Gives thread `tid` the real-time policy SCHED_FIFO at [`MEASURE_RT_PRIORITY`] (through
/// `chrt`), best effort.
pub(crate) fn realtime(tid: i32) {
    realtime_at(tid, MEASURE_RT_PRIORITY);
}

/// SCHED_FIFO priority of the measuring side in paced runs (receiver worker, its NAPI thread).
const MEASURE_RT_PRIORITY: u8 = 10;
/// SCHED_FIFO priority of the paced generator: below the measuring side, which preempts it.
const GEN_RT_PRIORITY: u8 = 5;

/// Gives thread `tid` SCHED_FIFO at `prio` (through `chrt`), best effort, with a warning.
pub(crate) fn realtime_at(tid: i32, prio: u8) {
    let ok = std::process::Command::new("chrt")
        .args(["-f", "-p", &prio.to_string()])
        .arg(tid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("    warning: could not make thread {tid} SCHED_FIFO");
    }
}

/// `(rx_dropped, tx_dropped)` of `iface` in `ns` (the kernel's link statistics; on veth a full
/// peer ring shows as `tx_dropped` of the sending end), best effort (0, 0).
pub(crate) fn link_drops(ns: &Netns, iface: &str) -> (u64, u64) {
    let out = std::process::Command::new("ip")
        .args(["-n", ns.name(), "-j", "-s", "link", "show", "dev", iface])
        .output();
    let Ok(out) = out else { return (0, 0) };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let st = &v[0]["stats64"];
    (
        st["rx"]["dropped"].as_u64().unwrap_or(0),
        st["tx"]["dropped"].as_u64().unwrap_or(0),
    )
}

/// Ids of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Moves `iface`'s NAPI (in `ns`) to a kernel thread (threaded NAPI) pinned to `core`. Best
/// effort: an end without NAPI (no XDP program on a veth end) is left alone. Returns the ids of
/// the threads pinned. The thread is found by name ("napi/<iface>-<napi id>", cut to 15
/// bytes), so an interface of the same name in another namespace may be pinned too.
pub(crate) fn thread_napi(ns: &Netns, iface: &str, core: usize) -> Vec<i32> {
    let ok = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "sh", "-c"])
        .arg(format!("echo 1 > /sys/class/net/{iface}/threaded"))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Vec::new();
    }
    let prefix: String = format!("napi/{iface}-").chars().take(15).collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pinned = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(&prefix)
            || prefix.starts_with(comm.trim_end()) && comm.starts_with("napi/")
        {
            let mut set = nix::sched::CpuSet::new();
            if set.set(core).is_ok()
                && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set).is_ok()
            {
                pinned.push(pid);
            }
        }
    }
    pinned
}

impl Session {
    /// Build the bed and load the generator.
    pub fn new(a: &BenchArgs, secs: f64) -> Result<Session> {
        let bed = TestBed::pair(VethOpts::default()).context("building the veth test bed")?;
        let (eng, peer) = (bed.engine(), bed.peer());
        let template = Template {
            l4: L4::Udp,
            ipv6: false,
            frame_len: a.frame_len,
            src_mac: peer.mac().0,
            dst_mac: eng.mac().0,
            src_ip: peer.ipv4().into(),
            dst_ip: eng.ipv4().into(),
            base_sport: BASE_SPORT,
            dport: PORT,
            flows: FLOWS,
        };
        template.build().context("building the frame template")?;
        let iface = peer.iface().to_string();
        let generator = peer
            .ns()
            .run(move || Generator::load(&iface))
            .map_err(|e| anyhow!("{e}"))?
            .context("loading the generator")?;
        println!(
            "    bed: {} {} (DUT, core {DUT_CORE}) <-> {} {} (generator + receiver, core {GEN_CORE})",
            eng.ns().name(),
            eng.iface(),
            peer.ns().name(),
            peer.iface()
        );
        Ok(Session {
            bed,
            sluice: a.sluice.clone(),
            sluice_args: a.sluice_args.split_whitespace().map(String::from).collect(),
            secs,
            rounds: a.rounds,
            upgrade_pps: a.upgrade_pps,
            template,
            generator,
            reflect_capacity: None,
            gen_max: None,
            cdfs: Vec::new(),
            sweep: Vec::new(),
            load_curves: Vec::new(),
            hugepages_before: reserve_hugepages(),
            lever_args: Vec::new(),
            dut_napi: a.dut_napi,
            receiver_busy: false,
            measure_rt: false,
            pace_method: a.pace_method,
        })
    }

    /// Markdown header: machine and settings.
    pub fn header(&self) -> String {
        let m = Machine::probe();
        format!(
            "# sluice benchmark\n\n- machine: Linux {}, {} × {}, veth (native XDP, AF_XDP copy mode)\n\
             - sluice {}; {} rounds per subject, alternating; {:.1} s window per measurement after {:.2} s warm-up\n\
             - traffic: {}-byte frames (without FCS), UDP/IPv4, {FLOWS} flows, XDP live-frames generator on core {GEN_CORE} (paced runs: the pacer of bench/src/pace.rs, one flow, `--pace-method {}`); DUT on core {DUT_CORE}\n\
             - NAPI placement: receiver's on core {GEN_CORE}; DUT's {}\n",
            m.kernel,
            m.cpus,
            m.cpu_model,
            m.rev,
            self.rounds,
            self.secs,
            WARMUP.as_secs_f64(),
            self.template.build().map(|(f, _)| f.len()).unwrap_or(0),
            self.pace_method
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_string()),
            if self.dut_napi {
                "on the DUT core (--dut-napi: same-core AF_XDP)"
            } else {
                "on the sending core (kernel default for veth)"
            },
        )
    }

    fn window(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    /// Run the generator for warm-up + window + tail at `rate` on its own thread (inside the
    /// peer namespace, pinned), and call `measure` on this thread after the warm-up.
    fn with_traffic<T: Send>(
        &mut self,
        rate: Rate,
        measure: impl FnOnce(Duration) -> T,
    ) -> Result<(GenReport, T)> {
        let window = self.window();
        let total = WARMUP + window + TAIL;
        self.place_napi();
        let template = self.template.clone();
        // A paced generator spins on its core; on a shared machine a SCHED_OTHER spinner gets
        // that core only in time slices (other tenants' tasks take whole slices in between,
        // and the run then gives up most of its schedule). SCHED_FIFO below the measuring side
        // (see `measure_rt`) keeps the pacing and still lets the receiver preempt it.
        let gen_rt = self.measure_rt && matches!(rate, Rate::Paced(_));
        let paced = match rate {
            Rate::Paced(pps) => Some(sluice_bench::pace::PacedConfig {
                bind: SocketAddr::new(self.bed.peer().ipv4().into(), BASE_SPORT),
                target: SocketAddr::new(self.bed.engine().ipv4().into(), PORT),
                frame_len: template.frame_len,
                pps,
                duration: total,
                method: self.pace_method,
                packet: Some((self.bed.peer().iface().to_string(), template.clone())),
            }),
            _ => None,
        };
        let Session { bed, generator, .. } = self;
        let peer = bed.peer().ns();
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                peer.run(move || -> Result<GenReport> {
                    pin(GEN_CORE);
                    if gen_rt {
                        realtime_at(nix::unistd::gettid().as_raw(), GEN_RT_PRIORITY);
                    }
                    match paced {
                        Some(cfg) => sluice_bench::pace::run(&cfg).context("paced generator run"),
                        None => generator
                            .run(&template, rate, total, |_| {})
                            .context("generator run"),
                    }
                })
            });
            std::thread::sleep(WARMUP);
            let t = measure(window);
            let rep = h
                .join()
                .map_err(|_| anyhow!("generator thread panicked"))?
                .map_err(|e| anyhow!("{e}"))??;
            if let Some(m) = self.gen_max.as_mut() {
                *m = m.max(rep.achieved_pps);
            }
            Ok((rep, t))
        })
        .map(|(rep, t): (GenReport, T)| {
            if rate == Rate::Max {
                let m = self.gen_max.get_or_insert(0.0);
                *m = m.max(rep.achieved_pps);
            }
            (rep, t)
        })
    }

    /// Where the veth ends' NAPI (XDP program, AF_XDP copy) runs. veth runs the receiving end's
    /// NAPI on the *sending* CPU, so by default the DUT's XDP and copy run on the generator's
    /// core and the receiver's on the DUT's core (its TX path). The receiver's NAPI is always
    /// moved to a kernel thread on the generator's core (threaded NAPI), so the DUT is never
    /// charged for the measuring side. With `--dut-napi` the DUT's NAPI is likewise moved to
    /// the DUT's core, as a NIC queue's interrupt would sit on the worker's core on a real host
    /// ("same core" AF_XDP); without it, it stays on the sender's core (the kernel's default,
    /// like a NIC whose interrupts go to another core). Best effort: an end without NAPI (no
    /// XDP program on it) is left alone.
    fn place_napi(&self) {
        let mut ends = vec![(self.bed.peer().ns(), self.bed.peer().iface(), GEN_CORE)];
        if self.dut_napi {
            ends.push((self.bed.engine().ns(), self.bed.engine().iface(), DUT_CORE));
        }
        for (i, (ns, iface, core)) in ends.into_iter().enumerate() {
            let tids = thread_napi(ns, iface, core);
            if i == 0 && self.measure_rt {
                for t in tids {
                    realtime(t);
                }
            }
        }
    }

    fn start_sluice(&self, app: &str) -> Result<SluiceDut> {
        let mut args: Vec<&str> = vec![
            "--app", app, "--udp", "9000", "--queues", "1", "--cores", "0",
        ];
        args.extend(self.sluice_args.iter().map(String::as_str));
        args.extend(self.lever_args.iter().map(String::as_str));
        let mut d = SluiceDut::start(
            &self.sluice,
            self.bed.engine().ns(),
            self.bed.engine().iface(),
            &args,
        )
        .context("starting sluice")?;
        d.wait_ready(Duration::from_secs(20))
            .context("waiting for sluice")?;
        Ok(d)
    }

    /// Start testpmd in `mode` on the engine's interface and wait until it forwards. Main lcore
    /// on the generator's core, forwarding lcore on the DUT core.
    fn start_testpmd(&self, mode: TestpmdMode) -> Result<Testpmd> {
        let mut tp = Testpmd::start(
            self.bed.engine().ns(),
            self.bed.engine().iface(),
            mode,
            &format!("{GEN_CORE},{DUT_CORE}"),
        )
        .map_err(|e| anyhow!("{e}"))?;
        tp.wait_ready(Duration::from_secs(30))
            .map_err(|e| anyhow!("{e}"))?;
        Ok(tp)
    }

    fn start_receiver(&self) -> Result<Receiver> {
        self.start_receiver_with(self.receiver_busy)
    }

    fn start_receiver_with(&self, busy_poll: bool) -> Result<Receiver> {
        let mut ports = vec![(L4Proto::Udp, PORT)];
        ports.extend((0..FLOWS).map(|f| (L4Proto::Udp, BASE_SPORT + f)));
        // The previous run's socket is closed, but the kernel releases its queue binding
        // asynchronously (the XSKMAP that held it is freed after an RCU grace period, later on
        // a loaded machine, measured up to several seconds): retry a busy queue for up to 10 s.
        let mut tries = 0;
        loop {
            let iface = self.bed.peer().iface().to_string();
            let ports = ports.clone();
            let r = self
                .bed
                .peer()
                .ns()
                .run(move || Receiver::start(&iface, &ports, Some(GEN_CORE), busy_poll))
                .map_err(|e| anyhow!("{e}"))?;
            match r {
                Err(RxError::Xsk(XskError::QueueBusy { .. })) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => {
                    let rx = r
                        .map_err(|e| anyhow!("{e}"))
                        .context("starting the receiver")?;
                    if self.measure_rt {
                        // The worker names itself once it runs: look for up to ~1 s.
                        let mut found = Vec::new();
                        for _ in 0..100 {
                            found = threads_named("sluice-q0");
                            if !found.is_empty() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        if found.is_empty() {
                            bail!("the receiver's worker thread (sluice-q0) was not found");
                        }
                        for tid in found {
                            realtime(tid);
                        }
                    }
                    return Ok(rx);
                }
            }
        }
    }

    fn engine_run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.bed.engine().ns().run(f).map_err(|e| anyhow!("{e}"))
    }

    fn sink_cfg(&self) -> SinkConfig {
        SinkConfig {
            bind: SocketAddr::new(self.bed.engine().ipv4().into(), PORT),
            core: Some(DUT_CORE),
            duration: self.window(),
            batch: 64,
        }
    }

    // ---- rxdrop --------------------------------------------------------------------------

    /// sluice drop vs dpdk-testpmd rxonly vs kernel UDP sink vs XDP_DROP floor (Mpps).
    pub fn rxdrop(&mut self) -> Result<Scenario> {
        let names = [
            "sluice drop",
            "dpdk-testpmd rxonly (af_xdp)",
            "kernel UDP sink (recvmmsg)",
            "XDP_DROP floor",
        ];
        let mut subs: Vec<Subject> = names.iter().map(|n| Subject::new(n, "Mpps")).collect();
        if let Err(why) = Testpmd::available() {
            subs[1] = Subject::skipped(names[1], "Mpps", why);
        }
        for round in 0..self.rounds {
            for i in 0..subs.len() {
                if subs[i].skipped.is_some() {
                    continue;
                }
                let (mpps, offered) = match i {
                    0 => self.rxdrop_sluice()?,
                    1 => match self.rxdrop_testpmd() {
                        Ok(v) => v,
                        Err(e) => {
                            subs[i] = Subject::skipped(names[i], "Mpps", format!("failed: {e:#}"));
                            continue;
                        }
                    },
                    2 => self.rxdrop_kernel()?,
                    _ => self.rxdrop_floor()?,
                };
                println!(
                    "    round {}: {:<32} {:>7.3} Mpps (offered {:.3})",
                    round + 1,
                    names[i],
                    mpps,
                    offered
                );
                subs[i].samples.push(mpps);
                subs[i]
                    .extra
                    .entry("offered_mpps".into())
                    .or_default()
                    .push(offered);
            }
        }
        let mut sc = Scenario {
            name: "rxdrop".into(),
            setup: format!(
                "Receive and drop, generator at max rate; rate counted by each subject over the window ({} rounds).",
                self.rounds
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(vec![
            target(names[0], names[1], 1.2, true, None),
            target(names[0], names[2], 10.0, true, None),
            target(names[0], names[3], 0.75, true, None),
        ]);
        Ok(sc)
    }

    fn rxdrop_sluice(&mut self) -> Result<(f64, f64)> {
        let mut dut = self.start_sluice("drop")?;
        let (rep, r) = self.with_traffic(Rate::Max, |w| {
            let a = dut.latest();
            std::thread::sleep(w);
            let b = dut.latest();
            a.zip(b).map(|(a, b)| rate(&a, &b, |s| s.rx))
        })?;
        dut.stop().context("stopping sluice")?;
        Ok((
            r.ok_or_else(|| anyhow!("no stats from sluice"))? / 1e6,
            rep.mpps(),
        ))
    }

    /// testpmd rxonly; the rate is the one testpmd reports in its own stats blocks.
    fn rxdrop_testpmd(&mut self) -> Result<(f64, f64)> {
        let tp = self.start_testpmd(TestpmdMode::RxOnly)?;
        let (rep, r) = self.with_traffic(Rate::Max, |w| {
            // testpmd prints a stats block every ~1-2 s with its own rate over the interval
            // (`Rx-pps`, timed with the TSC). Wall-clock times of when a block is *read* from
            // its pipe are too coarse to divide by, so average the rates of the blocks printed
            // inside the window instead.
            let end = Instant::now() + w;
            let mut rates: Vec<f64> = Vec::new();
            let mut prev = tp.stats().map(|s| s.rx_packets);
            while Instant::now() < end {
                if let Some(st) = tp.stats() {
                    let c = st.rx_packets;
                    if prev != Some(c) {
                        prev = Some(c);
                        rates.push(st.rx_pps as f64);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
        })?;
        let _ = tp.stop();
        let r = r.ok_or_else(|| {
            anyhow!("testpmd printed no stats block inside the window (use --seconds >= 3)")
        })?;
        Ok((r / 1e6, rep.mpps()))
    }

    fn rxdrop_kernel(&mut self) -> Result<(f64, f64)> {
        let iface = self.bed.engine().iface().to_string();
        let pass = self
            .engine_run(move || generator::attach_pass_all(&iface))?
            .map_err(|e| anyhow!("{e}"))?;
        let cfg = self.sink_cfg();
        let sink = self
            .engine_run(move || UdpSink::bind(cfg))?
            .context("binding the UDP sink")?;
        let stop = AtomicBool::new(false);
        let (rep, r) = self.with_traffic(Rate::Max, |_| sink.run(&stop))?;
        drop(pass);
        let r = r.context("UDP sink")?;
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        Ok((r.packets as f64 / secs / 1e6, rep.mpps()))
    }

    fn rxdrop_floor(&mut self) -> Result<(f64, f64)> {
        let iface = self.bed.engine().iface().to_string();
        let h = self
            .engine_run(move || generator::attach_drop_all(&iface))?
            .map_err(|e| anyhow!("{e}"))?;
        let (rep, r) = self.with_traffic(Rate::Max, |w| -> Result<f64> {
            let (t0, c0) = (Instant::now(), h.counts().map_err(|e| anyhow!("{e}"))?);
            std::thread::sleep(w);
            let (t1, c1) = (Instant::now(), h.counts().map_err(|e| anyhow!("{e}"))?);
            Ok((c1.frames - c0.frames) as f64 / (t1 - t0).as_secs_f64())
        })?;
        drop(h);
        Ok((r? / 1e6, rep.mpps()))
    }

    // ---- reflect -------------------------------------------------------------------------

    /// sluice reflect vs dpdk-testpmd macswap vs kernel echo; reflected frames counted by the
    /// receiver on the generator side (Mpps).
    pub fn reflect(&mut self) -> Result<Scenario> {
        let names = [
            "sluice reflect",
            "dpdk-testpmd macswap (af_xdp)",
            "kernel UDP echo (recvmmsg/sendmmsg)",
        ];
        let mut subs: Vec<Subject> = names.iter().map(|n| Subject::new(n, "Mpps")).collect();
        if let Err(why) = Testpmd::available() {
            subs[1] = Subject::skipped(names[1], "Mpps", why);
        }
        for round in 0..self.rounds {
            for i in 0..subs.len() {
                if subs[i].skipped.is_some() {
                    continue;
                }
                let res = match i {
                    0 => self.reflect_one(Subject0::Sluice, Rate::Max),
                    1 => self.reflect_one(Subject0::Testpmd, Rate::Max),
                    _ => self.reflect_one(Subject0::Kernel, Rate::Max),
                };
                let (mpps, offered, rx) = match res {
                    Ok(v) => v,
                    Err(e) if i == 1 => {
                        subs[i] = Subject::skipped(names[i], "Mpps", format!("failed: {e:#}"));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                println!(
                    "    round {}: {:<38} {:>7.3} Mpps reflected (offered {:.3}, loss {:.1}%)",
                    round + 1,
                    names[i],
                    mpps,
                    offered,
                    rx.loss_pct
                );
                subs[i].samples.push(mpps);
                subs[i]
                    .extra
                    .entry("offered_mpps".into())
                    .or_default()
                    .push(offered);
                subs[i]
                    .extra
                    .entry("loss_pct".into())
                    .or_default()
                    .push(rx.loss_pct);
            }
        }
        self.reflect_capacity = subs[0].median().map(|m| m * 1e6);
        let mut sc = Scenario {
            name: "reflect".into(),
            setup: format!(
                "Reflect (sluice: MACs, IPs, ports; testpmd macswap: MACs; kernel: echo), generator at max rate; \
                 reflected frames counted by an independent AF_XDP receiver on the generator side ({} rounds).",
                self.rounds
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(vec![
            target(names[0], names[1], 1.5, true, None),
            target(names[0], names[2], 5.0, true, None),
        ]);
        Ok(sc)
    }

    /// One reflect measurement: returns (reflected Mpps over the window, offered Mpps, report).
    fn reflect_one(&mut self, who: Subject0, rate_: Rate) -> Result<(f64, f64, ReflectFacts)> {
        let rx = self.start_receiver()?;
        let eng_drops0 = link_drops(self.bed.engine().ns(), self.bed.engine().iface()).1;
        let mut guard = DutGuard::default();
        let mut echo: Option<UdpEchoServer> = None;
        match who {
            Subject0::Sluice => guard.sluice = Some(self.start_sluice("reflect")?),
            Subject0::Testpmd => {
                guard.testpmd = Some(self.start_testpmd(TestpmdMode::MacSwap)?);
            }
            Subject0::Kernel => {
                let iface = self.bed.engine().iface().to_string();
                guard.pass = Some(
                    self.engine_run(move || generator::attach_pass_all(&iface))?
                        .map_err(|e| anyhow!("{e}"))?,
                );
                let mut cfg = self.sink_cfg();
                cfg.duration = WARMUP + self.window() + TAIL + Duration::from_secs(1);
                let srv = self
                    .engine_run(move || UdpEchoServer::bind(cfg))?
                    .context("binding the echo server")?;
                echo = Some(srv);
            }
        }
        let stop = AtomicBool::new(false);
        let (rep, r) = std::thread::scope(|s| -> Result<_> {
            let echo_h = echo.map(|srv| s.spawn(|| srv.run(&stop)));
            let out = self.with_traffic(rate_, |w| {
                let a = rx.snapshot();
                std::thread::sleep(w);
                let b = rx.snapshot();
                (b.frames - a.frames) as f64 / (b.elapsed_s - a.elapsed_s).max(1e-9)
            });
            stop.store(true, Ordering::Relaxed);
            // The receiver counts what came back; the echo server's own counts are not needed,
            // but its failure (pinning, socket errors) must fail the run, not read as 0 Mpps.
            if let Some(h) = echo_h {
                h.join()
                    .map_err(|_| anyhow!("kernel echo server thread panicked"))?
                    .context("kernel echo server")?;
            }
            out
        })?;
        let dut_final = match guard.sluice.take() {
            Some(d) => Some(d.stop().context("stopping sluice")?),
            None => None,
        };
        drop(guard);
        let report = rx.stop();
        let mut facts = ReflectFacts::new(&report, rep.sent).with(report);
        let mpps = rep.mpps();
        facts.generator = Some(rep);
        facts.dut_final = dut_final;
        facts.veth_to_receiver =
            link_drops(self.bed.engine().ns(), self.bed.engine().iface()).1 - eng_drops0;
        Ok((r / 1e6, mpps, facts))
    }

    // ---- latency -------------------------------------------------------------------------

    /// Latency at 10% of sluice's reflect capacity: sluice reflect vs kernel echo (µs).
    pub fn latency(&mut self) -> Result<Scenario> {
        let cap = match self.reflect_capacity {
            Some(c) => c,
            None => {
                println!("    calibrating: sluice reflect capacity at max rate");
                let (m, _, _) = self.reflect_one(Subject0::Sluice, Rate::Max)?;
                m * 1e6
            }
        };
        let pps = ((cap * 0.10) as u64).max(1000);
        let names = [
            "sluice reflect",
            "sluice reflect --busy-poll",
            "kernel UDP echo (recvmmsg/sendmmsg)",
        ];
        let mut subs: Vec<Subject> = names.iter().map(|n| Subject::new(n, "µs p99")).collect();
        // The receiver sleeps between frames like the subjects do: a spinning receiver shares the
        // generator's core with the peer's NAPI thread and made tails worse (measured: p99 of
        // sluice 1083 µs with a spinning receiver, ~350 µs without).
        self.receiver_busy = false;
        for round in 0..self.rounds {
            for (i, who) in [Subject0::Sluice, Subject0::Sluice, Subject0::Kernel]
                .into_iter()
                .enumerate()
            {
                if i == 1 {
                    self.lever_args = vec!["--busy-poll".into()];
                }
                let r = self.reflect_one(who, Rate::Pps(pps));
                self.lever_args.clear();
                let (_, _, f) = r?;
                let rep = f.report.as_ref().expect("report");
                let l = &rep.latency;
                let us = |ns: u64| ns as f64 / 1e3;
                println!(
                    "    round {}: {:<38} p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} µs ({} samples, loss {:.2}%)",
                    round + 1,
                    names[i],
                    us(l.p50_ns),
                    us(l.p90_ns),
                    us(l.p99_ns),
                    us(l.p999_ns),
                    us(l.max_ns),
                    l.count,
                    f.loss_pct
                );
                let s = &mut subs[i];
                s.samples.push(us(l.p99_ns));
                for (k, v) in [
                    ("p50_us", l.p50_ns),
                    ("p90_us", l.p90_ns),
                    ("p99_us", l.p99_ns),
                    ("p99.9_us", l.p999_ns),
                    ("max_us", l.max_ns),
                ] {
                    s.extra.entry(k.into()).or_default().push(us(v));
                }
                s.extra
                    .entry("loss_pct".into())
                    .or_default()
                    .push(f.loss_pct);
                if round + 1 == self.rounds {
                    let cdf: Vec<(f64, f64)> = rep
                        .cdf(200)
                        .into_iter()
                        .map(|(ns, p)| (ns / 1e3, p))
                        .collect();
                    self.cdfs.push((names[i].to_string(), cdf));
                }
            }
        }
        let mut sc = Scenario {
            name: "latency".into(),
            setup: format!(
                "Reflect at a fixed {pps} frames/s (10% of sluice's measured reflect capacity of {:.3} Mpps); \
                 latency = receive time − generator timestamp (CLOCK_MONOTONIC, same host), all frames of the run \
                 (so it includes the generator's 1 ms pacing bursts and the receiver's own wake-ups, the same for every subject).",
                cap / 1e6
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        self.receiver_busy = false;
        sc.evaluate(vec![
            target(names[0], names[2], 0.5, false, Some("p99_us")),
            target(names[1], names[2], 0.5, false, Some("p99_us")),
        ]);
        Ok(sc)
    }

    // ---- sweep ---------------------------------------------------------------------------

    /// Achieved vs offered load for sluice reflect and the kernel echo server.
    pub fn sweep(&mut self) -> Result<Scenario> {
        let max = match self.gen_max {
            Some(m) => m,
            None => {
                let (_, offered) = self.rxdrop_floor()?;
                offered * 1e6
            }
        };
        let loads = [0.05, 0.1, 0.25, 0.5, 0.75];
        let names = ["sluice reflect", "kernel UDP echo (recvmmsg/sendmmsg)"];
        let mut subs: Vec<Subject> = names
            .iter()
            .map(|n| Subject::new(n, "Mpps at max"))
            .collect();
        let mut pts: Vec<Vec<(f64, f64)>> = vec![Vec::new(), Vec::new()];
        for &f in &loads {
            let pps = (max * f) as u64;
            for (i, who) in [Subject0::Sluice, Subject0::Kernel].into_iter().enumerate() {
                let (m, offered, facts) = self.reflect_one(who, Rate::Pps(pps))?;
                println!(
                    "    offered {:.3} Mpps: {:<38} {:.3} Mpps reflected (loss {:.1}%)",
                    offered, names[i], m, facts.loss_pct
                );
                pts[i].push((offered, m));
                subs[i]
                    .extra
                    .entry(format!("at_{:02.0}pct_mpps", f * 100.0))
                    .or_default()
                    .push(m);
            }
        }
        for (i, who) in [Subject0::Sluice, Subject0::Kernel].into_iter().enumerate() {
            let (m, offered, _) = self.reflect_one(who, Rate::Max)?;
            pts[i].push((offered, m));
            subs[i].samples.push(m);
        }
        for (i, n) in names.iter().enumerate() {
            self.sweep.push((n.to_string(), pts[i].clone()));
        }
        Ok(Scenario {
            name: "sweep".into(),
            setup: format!(
                "Reflected rate vs offered load (fractions {loads:?} of the generator's {:.3} Mpps, then max); one run per point; plot: sweep.svg.",
                max / 1e6
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        })
    }

    // ---- levers --------------------------------------------------------------------------

    /// sluice with its defaults vs sluice with each of `levers` (extra `sluice run` arguments),
    /// alternating, running `app` (`reflect`: reflected Mpps at the receiver; `drop`: Mpps
    /// counted by sluice).
    pub fn levers(&mut self, app: &str, levers: &[String]) -> Result<Scenario> {
        if levers.is_empty() {
            bail!("--scenario lever needs at least one --lever \"ARGS\"");
        }
        let mut variants: Vec<Vec<String>> = vec![Vec::new()];
        variants.extend(
            levers
                .iter()
                .map(|l| l.split_whitespace().map(String::from).collect()),
        );
        let name = |v: &Vec<String>| {
            if v.is_empty() {
                format!("sluice {app} (defaults)")
            } else {
                format!("sluice {app} {}", v.join(" "))
            }
        };
        let mut subs: Vec<Subject> = variants
            .iter()
            .map(|v| Subject::new(&name(v), "Mpps"))
            .collect();
        for round in 0..self.rounds {
            for (i, v) in variants.iter().enumerate() {
                self.lever_args = v.clone();
                let r = if app == "drop" {
                    self.rxdrop_sluice().map(|(m, o)| (m, o, None))
                } else {
                    self.reflect_one(Subject0::Sluice, Rate::Max)
                        .map(|(m, o, f)| (m, o, Some(f.loss_pct)))
                };
                self.lever_args.clear();
                let (mpps, offered, loss) = r?;
                println!(
                    "    round {}: {:<44} {:>7.3} Mpps (offered {:.3})",
                    round + 1,
                    subs[i].name,
                    mpps,
                    offered
                );
                subs[i].samples.push(mpps);
                subs[i]
                    .extra
                    .entry("offered_mpps".into())
                    .or_default()
                    .push(offered);
                if let Some(l) = loss {
                    subs[i].extra.entry("loss_pct".into()).or_default().push(l);
                }
            }
        }
        let base = subs[0].name.clone();
        let targets = subs[1..]
            .iter()
            .map(|s| target(&s.name, &base, 1.0, true, None))
            .collect();
        let mut sc = Scenario {
            name: format!("lever ({app})"),
            setup: format!(
                "sluice {app} with its defaults vs with each lever, alternating, generator at max rate ({} rounds); \"met\" = not slower than the defaults.",
                self.rounds
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(targets);
        Ok(sc)
    }

    // ---- idle ----------------------------------------------------------------------------

    /// CPU used by an engine with no traffic: default idle policy vs --busy-poll (% of a core).
    pub fn idle(&mut self) -> Result<Scenario> {
        let names = [
            "sluice (idle policy: spin, then poll())",
            "sluice --busy-poll",
        ];
        let mut subs: Vec<Subject> = names
            .iter()
            .map(|n| Subject::new(n, "% of a core"))
            .collect();
        let mut limit = Subject::new("target: 2% of a core", "% of a core");
        let secs = self.secs.max(3.0);
        for round in 0..self.rounds {
            for (i, busy) in [false, true].into_iter().enumerate() {
                let mut args: Vec<&str> = vec![
                    "--app", "reflect", "--udp", "9000", "--queues", "1", "--cores", "0",
                ];
                if busy {
                    args.push("--busy-poll");
                }
                let mut d = SluiceDut::start(
                    &self.sluice,
                    self.bed.engine().ns(),
                    self.bed.engine().iface(),
                    &args,
                )?;
                d.wait_ready(Duration::from_secs(20))?;
                std::thread::sleep(Duration::from_millis(500));
                let c0 = cpu_time(d.pid())?;
                let t0 = Instant::now();
                std::thread::sleep(Duration::from_secs_f64(secs));
                let pct =
                    (cpu_time(d.pid())? - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
                d.stop()?;
                println!(
                    "    round {}: {:<40} {:.2}% of a core",
                    round + 1,
                    names[i],
                    pct
                );
                subs[i].samples.push(pct);
            }
            limit.samples.push(2.0);
        }
        subs.push(limit);
        let mut sc = Scenario {
            name: "idle".into(),
            setup: format!(
                "No traffic; CPU time (user+system, /proc/PID/stat) of the whole sluice process over {secs:.1} s, 1 queue, stats every 0.25 s."
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(vec![target(
            names[0],
            "target: 2% of a core",
            1.0,
            false,
            None,
        )]);
        Ok(sc)
    }

    // ---- upgrade -------------------------------------------------------------------------

    /// Frames lost to a hot upgrade: sluice reflect at a steady, paced rate (`--upgrade-pps`,
    /// 0.3 Mpps by default; [`Rate::Paced`], every frame at its own due time), once without and
    /// once with `sluice run … --takeover` in the middle of the window, alternating; the
    /// generator's sent count against an independent AF_XDP receiver's (loss in % of the frames
    /// sent), with every leg's counters (generator, sluice's final totals by drop reason and its
    /// socket's kernel counters — old and successor summed —, the receiver's socket) in the log
    /// and the report.
    pub fn upgrade(&mut self) -> Result<Scenario> {
        // The paced generator is a kernel UDP socket: a static neighbour entry, so that it
        // never waits for ARP.
        self.static_neighbour()?;
        self.measure_rt = true;
        let r = self.upgrade_runs();
        self.measure_rt = false;
        r
    }

    fn upgrade_runs(&mut self) -> Result<Scenario> {
        let load_before = loadavg();
        let pps = self.upgrade_pps;
        let mpps = pps as f64 / 1e6;
        let names = [
            format!("reflect {mpps} Mpps paced, no upgrade"),
            format!("reflect {mpps} Mpps paced, hot upgrade mid-window"),
        ];
        let mut subs: Vec<Subject> = names.iter().map(|n| Subject::new(n, "% lost")).collect();
        // The same runs, counting only what sluice itself lost (its leg: frames the generator
        // sent that sluice never transmitted — its socket's ring overflowed, or it dropped
        // them), so that losses on the measuring side (the receiver's veth ring and socket, on
        // the generator's loaded core) do not count against it.
        let at_sluice = [
            format!("{} — lost at sluice", names[0]),
            format!("{} — lost at sluice", names[1]),
        ];
        subs.extend(at_sluice.iter().map(|n| Subject::new(n, "% lost")));
        let mut limit = Subject::new("target: 0.1% lost", "% lost");
        let successor_out = std::env::temp_dir().join(format!(
            "sluice-bench-successor-{}.json",
            std::process::id()
        ));
        for round in 0..self.rounds {
            for (i, upgrade) in [false, true].into_iter().enumerate() {
                let rx = self.start_receiver()?;
                let old = self.start_sluice("reflect")?;
                let (eng, peer) = (self.bed.engine(), self.bed.peer());
                let drops0 = (
                    link_drops(eng.ns(), eng.iface()),
                    link_drops(peer.ns(), peer.iface()),
                );
                // The successor is started through nsenter: `with_traffic` holds the session.
                // Its JSON (the final totals) goes to a file, read after it exits.
                let out = std::fs::File::create(&successor_out)
                    .with_context(|| format!("creating {}", successor_out.display()))?;
                let ns_path = self.bed.engine().ns().path().to_path_buf();
                let mut cmd = std::process::Command::new("nsenter");
                cmd.arg(format!("--net={}", ns_path.display()))
                    .arg(&self.sluice)
                    .args(["run", "--iface", self.bed.engine().iface(), "--json"])
                    .args(["--stats-interval", "0", "--app", "reflect", "--udp", "9000"])
                    .args(["--queues", "1", "--cores", "0", "--takeover"])
                    .args(self.sluice_args.iter())
                    .args(self.lever_args.iter())
                    .stdin(std::process::Stdio::null())
                    .stdout(out)
                    .stderr(std::process::Stdio::inherit());
                let (rep, res) = self.with_traffic(Rate::Paced(pps), |w| -> Result<_> {
                    if !upgrade {
                        std::thread::sleep(w);
                        return Ok((None, Some(old), None, 0.0));
                    }
                    std::thread::sleep(w / 2);
                    let t0 = Instant::now();
                    let new = cmd.spawn().context("starting the successor")?;
                    let fin = old
                        .wait_exit(Duration::from_secs(30))
                        .context("the old engine handing over")?;
                    let took = t0.elapsed().as_secs_f64() * 1e3;
                    let rest = w.saturating_sub(w / 2 + t0.elapsed());
                    std::thread::sleep(rest);
                    Ok((Some(new), None, Some(fin), took))
                })?;
                let (new, old, old_final, took_ms) = res?;
                let mut finals: Vec<serde_json::Value> = old_final.into_iter().collect();
                if let Some(old) = old {
                    finals.push(old.stop().context("stopping sluice")?);
                }
                if let Some(mut new) = new {
                    let pid = nix::unistd::Pid::from_raw(new.id() as i32);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                    let st = new.wait().context("waiting for the successor")?;
                    if !st.success() {
                        bail!("the successor exited with {st}");
                    }
                    let text = std::fs::read_to_string(&successor_out).unwrap_or_default();
                    match text
                        .lines()
                        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                        .find(|v| v["type"] == "final")
                    {
                        Some(v) => finals.push(v),
                        None => bail!("the successor printed no final totals"),
                    }
                }
                let report = rx.stop();
                let (eng, peer) = (self.bed.engine(), self.bed.peer());
                let drops1 = (
                    link_drops(eng.ns(), eng.iface()),
                    link_drops(peer.ns(), peer.iface()),
                );
                // veth: frames the engine end sent that the peer's ring refused count as the
                // engine end's tx_dropped (and the other way round).
                let eng_tx_dropped = drops1.0.1 - drops0.0.1;
                let peer_tx_dropped = drops1.1.1 - drops0.1.1;
                let lost = report.loss(rep.sent);
                let pct = lost as f64 / rep.sent.max(1) as f64 * 100.0;
                let legs = legs_summed(rep.sent, &finals, &report);
                let pacing = rep.pacing.clone().unwrap_or_default();
                println!(
                    "    round {}: {:<50} sent {} lost {} ({pct:.4}%){}\n        legs: {legs}; \
                     veth drops: sluice→receiver {eng_tx_dropped}, generator→sluice {peer_tx_dropped}; \
                     generator late p50/p99 {:.1}/{:.1} µs, {:.2} frames/call, {} slots skipped",
                    round + 1,
                    names[i],
                    rep.sent,
                    lost,
                    if upgrade {
                        format!(", successor start to old exit {took_ms:.0} ms")
                    } else {
                        String::new()
                    },
                    pacing.late_p50_us,
                    pacing.late_p99_us,
                    pacing.mean_frames_per_call,
                    pacing.skipped,
                );
                subs[i].samples.push(pct);
                let dut = legs.dut.clone().unwrap_or_default();
                let sluice_lost = rep.sent.saturating_sub(dut.tx);
                subs[2 + i]
                    .samples
                    .push(sluice_lost as f64 / rep.sent.max(1) as f64 * 100.0);
                for (k, v) in [
                    ("offered_mpps", rep.mpps()),
                    ("lost_frames", lost as f64),
                    ("sent", rep.sent as f64),
                    ("sluice_rx", dut.rx as f64),
                    ("sluice_socket_lost", dut.kernel_lost as f64),
                    ("sluice_dropped", dut.dropped as f64),
                    ("sluice_tx", dut.tx as f64),
                    ("receiver_got", legs.rx_unique as f64),
                    ("receiver_socket_lost", legs.rx_ring_lost as f64),
                    ("veth_to_receiver_dropped", eng_tx_dropped as f64),
                    ("veth_to_sluice_dropped", peer_tx_dropped as f64),
                    ("gen_late_p99_us", pacing.late_p99_us),
                    ("gen_slots_skipped", pacing.skipped as f64),
                    ("handover_ms", took_ms),
                ] {
                    subs[i].extra.entry(k.into()).or_default().push(v);
                }
            }
            limit.samples.push(0.1);
        }
        let _ = std::fs::remove_file(&successor_out);
        subs.push(limit);
        let mut sc = Scenario {
            name: "upgrade".into(),
            setup: format!(
                "sluice reflect, paced generator (`bench/src/pace.rs`: a kernel UDP socket, every frame \
                 at its own due time, slots more than 200 µs overdue given up, not burst) asked for a steady {:.3} Mpps \
                 for warm-up + {:.1} s + tail; in the second run `sluice run … --takeover` starts halfway \
                 through the window and the old engine hands over and exits. Loss: frames the generator \
                 sent that the independent AF_XDP receiver never saw ({} rounds, alternating). Extras: \
                 each leg's counters (sluice: old + successor final totals). The receiver's worker and \
                 veth NAPI thread run SCHED_FIFO. Load average (1/5/15 min) before: {load_before}, \
                 after: {}.",
                mpps,
                self.secs,
                self.rounds,
                loadavg()
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(vec![
            target(&names[1], "target: 0.1% lost", 1.0, false, None),
            target(&at_sluice[1], "target: 0.1% lost", 1.0, false, None),
        ]);
        Ok(sc)
    }

    /// SVG plots of what the session measured.
    pub fn plots(&self, dir: &Path) -> Result<()> {
        if !self.load_curves.is_empty() {
            latency_load_plot(
                &dir.join("load-latency.svg"),
                "Reflect latency vs paced offered load (64-byte UDP, veth)",
                &self.load_curves,
            )?;
        }
        if !self.sweep.is_empty() {
            let series: Vec<Series> = self
                .sweep
                .iter()
                .map(|(n, p)| Series {
                    label: n.clone(),
                    points: p.clone(),
                })
                .collect();
            line_plot(
                &dir.join("sweep.svg"),
                "Reflected vs offered load (64-byte UDP, veth)",
                "offered Mpps",
                "reflected Mpps",
                &series,
                false,
            )?;
        }
        if !self.cdfs.is_empty() {
            let series: Vec<Series> = self
                .cdfs
                .iter()
                .map(|(n, p)| Series {
                    label: n.clone(),
                    points: p.clone(),
                })
                .collect();
            line_plot(
                &dir.join("latency-cdf.svg"),
                "Latency CDF at 10% load (reflect, veth)",
                "latency µs (log)",
                "fraction ≤ x",
                &series,
                true,
            )?;
        }
        Ok(())
    }
}

pub(crate) fn target(
    subject: &str,
    baseline: &str,
    factor: f64,
    at_least: bool,
    series: Option<&str>,
) -> Target {
    Target {
        subject: subject.into(),
        baseline: baseline.into(),
        factor,
        at_least,
        series: series.map(String::from),
    }
}

#[derive(Clone, Copy)]
enum Subject0 {
    Sluice,
    Testpmd,
    Kernel,
}

/// Whatever DUT is running, stopped in a fixed order when dropped.
#[derive(Default)]
struct DutGuard {
    sluice: Option<SluiceDut>,
    testpmd: Option<Testpmd>,
    pass: Option<generator::XdpCounterHandle>,
}

impl Drop for DutGuard {
    fn drop(&mut self) {
        if let Some(d) = self.sluice.take()
            && let Err(e) = d.stop()
        {
            eprintln!("    warning: stopping sluice: {e}");
        }
        if let Some(t) = self.testpmd.take() {
            let _ = t.stop();
        }
        self.pass.take();
    }
}

/// What the receiver saw in one reflect run, and the generator's report of it.
struct ReflectFacts {
    loss_pct: f64,
    report: Option<RxReport>,
    generator: Option<GenReport>,
    /// sluice's final JSON totals, when the subject was sluice.
    dut_final: Option<serde_json::Value>,
    /// Reflected frames the receiver's veth end refused (its ring was full): the engine end's
    /// `tx_dropped` over the run.
    veth_to_receiver: u64,
}

impl ReflectFacts {
    fn new(r: &RxReport, sent: u64) -> Self {
        let loss = r.loss(sent);
        ReflectFacts {
            loss_pct: if sent == 0 {
                0.0
            } else {
                loss as f64 * 100.0 / sent as f64
            },
            report: None,
            generator: None,
            dut_final: None,
            veth_to_receiver: 0,
        }
    }
    fn with(mut self, r: RxReport) -> Self {
        self.report = Some(r);
        self
    }
}

/// Where frames went on each leg of a reflect run: what the generator sent, what the DUT
/// (sluice: its final totals) received, sent and dropped by reason, what its socket's kernel
/// counters lost, and what the receiver got and its own socket lost. One line, for the log and
/// the report's notes.
pub(crate) fn legs(gen_sent: u64, dut_final: Option<&serde_json::Value>, rx: &RxReport) -> Legs {
    let mut l = Legs {
        sent: gen_sent,
        rx_unique: rx.counts.unique + rx.counts.late,
        rx_ring_lost: rx.kernel.rx_dropped + rx.kernel.rx_ring_full,
        rx_fill_empty: rx.kernel.rx_fill_ring_empty,
        ..Legs::default()
    };
    if let Some(v) = dut_final {
        let t = &v["total"];
        let u = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
        l.dut = Some(DutLeg {
            rx: u(&t["rx_packets"]),
            tx: u(&t["tx_packets"]),
            dropped: u(&t["dropped"]),
            drops: t["drops"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
                .chain(["tx_ring_full", "bad_desc"].map(|k| (k, &t[k])))
                .filter(|(_, v)| u(v) > 0)
                .map(|(k, v)| format!("{k} {}", u(v)))
                .collect::<Vec<_>>()
                .join(", "),
            kernel_lost: v["queues"]
                .as_array()
                .map(|qs| {
                    qs.iter()
                        .map(|q| u(&q["kernel"]["rx_dropped"]) + u(&q["kernel"]["rx_ring_full"]))
                        .sum()
                })
                .unwrap_or(0),
            fill_empty: v["queues"]
                .as_array()
                .map(|qs| {
                    qs.iter()
                        .map(|q| u(&q["kernel"]["rx_fill_ring_empty"]))
                        .sum()
                })
                .unwrap_or(0),
        });
    }
    l
}

/// [`legs`] over the final totals of several sluice processes (an upgrade's old engine and its
/// successor), summed.
pub(crate) fn legs_summed(gen_sent: u64, finals: &[serde_json::Value], rx: &RxReport) -> Legs {
    let mut out = legs(gen_sent, None, rx);
    for f in finals {
        let d = legs(gen_sent, Some(f), rx).dut.unwrap_or_default();
        let acc = out.dut.get_or_insert_with(DutLeg::default);
        acc.rx += d.rx;
        acc.tx += d.tx;
        acc.dropped += d.dropped;
        acc.kernel_lost += d.kernel_lost;
        acc.fill_empty += d.fill_empty;
        if !d.drops.is_empty() {
            if !acc.drops.is_empty() {
                acc.drops.push_str("; ");
            }
            acc.drops.push_str(&d.drops);
        }
    }
    out
}

/// See [`legs`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Legs {
    pub sent: u64,
    pub dut: Option<DutLeg>,
    pub rx_unique: u64,
    pub rx_ring_lost: u64,
    pub rx_fill_empty: u64,
}

/// The DUT's leg (sluice only).
#[derive(Clone, Debug, Default)]
pub(crate) struct DutLeg {
    pub rx: u64,
    pub tx: u64,
    pub dropped: u64,
    pub drops: String,
    pub kernel_lost: u64,
    pub fill_empty: u64,
}

impl std::fmt::Display for Legs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gen sent {}", self.sent)?;
        if let Some(d) = &self.dut {
            write!(
                f,
                " → sluice rx {} (socket lost {}, fill-ring empty {}) tx {} dropped {}{}",
                d.rx,
                d.kernel_lost,
                d.fill_empty,
                d.tx,
                d.dropped,
                if d.drops.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", d.drops)
                }
            )?;
        }
        write!(
            f,
            " → receiver got {} (its socket lost {}, fill-ring empty {})",
            self.rx_unique, self.rx_ring_lost, self.rx_fill_empty
        )
    }
}

// ---- demo --------------------------------------------------------------------------------

/// The generator demo: verify echoes byte for byte with a kernel client, then reflect generator
/// traffic for `seconds`, with a live line per second and latency percentiles at the end.
pub fn demo(a: &DemoArgs) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo creates network namespaces and attaches XDP: run it as root");
    }
    if !(1..=600).contains(&a.seconds) {
        bail!("--seconds must be between 1 and 600");
    }
    let args = BenchArgs {
        sluice: a.sluice.clone(),
        out: PathBuf::from("."),
        scenario: crate::ScenarioKind::Reflect,
        quick: false,
        rounds: 3,
        seconds: Some(a.seconds as f64),
        frame_len: 60,
        sluice_args: String::new(),
        lever: Vec::new(),
        lever_app: "reflect".into(),
        dut_napi: false,
        pace_method: PaceMethod::default(),
        upgrade_pps: 300_000,
        dns_frames_per_call: 1024,
        dns_latency_secs: 10,
        dns_profile: false,
        quiet_wait: 180,
    };
    println!("==> creating a veth pair between two throwaway namespaces");
    let mut s = Session::new(&args, a.seconds as f64)?;
    let rx = s.start_receiver()?;
    println!(
        "==> sluice run --iface {} --app reflect --udp {PORT} --cores {DUT_CORE}",
        s.bed.engine().iface()
    );
    let mut dut = s.start_sluice("reflect")?;

    // 1. Byte-for-byte: a kernel UDP client gets every datagram back unchanged.
    let bed = &s.bed;
    let cfg = sluice_bench::echo::EchoConfig {
        target: SocketAddr::new(bed.engine().ipv4().into(), PORT),
        bind: SocketAddr::new(bed.peer().ipv4().into(), 0),
        flows: 4,
        window: 64,
        count: Some(5_000),
        duration: Duration::from_secs(20),
        timeout: Duration::from_secs(1),
        sizes: vec![1, 18, 64, 256, 1024, 1472],
    };
    let es = bed
        .peer()
        .ns()
        .run(move || sluice_bench::echo::EchoClient::new(cfg).map(|mut c| c.run(|_, _| {})))
        .map_err(|e| anyhow!("{e}"))??;
    println!(
        "==> kernel UDP client: {} sent, {} echoed byte-identical, {} lost, {} mismatched",
        es.sent, es.echoed, es.lost, es.mismatched
    );
    let verified = es.sent > 0 && es.echoed == es.sent && es.mismatched == 0;

    // 2. Generator traffic at the asked rate (default: as fast as it goes), live.
    let rate_ = if a.pps == 0 {
        Rate::Max
    } else {
        Rate::Pps(a.pps)
    };
    let secs = Duration::from_secs(a.seconds);
    println!(
        "==> XDP live-frames generator: 64-byte UDP, {FLOWS} flows, rate {rate_}, {} s",
        a.seconds
    );
    let (rep, r) = demo_phase(&mut s, &mut dut, rx, rate_, secs, true)?;
    let reflected = r.counts.unique as f64 / r.elapsed_s.max(1e-9);
    print_phase(&rep, &r);
    let mut clean = r.counts.duplicates == 0 && r.counts.foreign == 0;

    // 3. Latency at a tenth of what was just reflected, so queues stay short.
    let pps = ((reflected * 0.1) as u64).max(1_000);
    println!(
        "==> latency at {pps} frames/s (10% of the reflected rate), {} s",
        a.seconds.div_ceil(2)
    );
    let rx = s.start_receiver()?;
    let (rep, r) = demo_phase(
        &mut s,
        &mut dut,
        rx,
        Rate::Pps(pps),
        Duration::from_secs(a.seconds.div_ceil(2)),
        false,
    )?;
    print_phase(&rep, &r);
    clean &= r.counts.duplicates == 0 && r.counts.foreign == 0;

    std::thread::sleep(Duration::from_millis(300));
    let fin = dut.stop()?;
    println!(
        "==> sluice: rx {} tx {} dropped {}",
        fin["total"]["rx_packets"], fin["total"]["tx_packets"], fin["total"]["dropped"]
    );
    drop(s);
    println!("==> namespaces removed");
    if !verified {
        bail!(
            "verification failed: {} sent, {} echoed intact, {} lost, {} mismatched",
            es.sent,
            es.echoed,
            es.lost,
            es.mismatched
        );
    }
    if !clean {
        bail!("the receiver saw duplicated or foreign frames (see the lines above)");
    }
    println!(
        "==> every kernel-client echo verified byte for byte; generator frames reflected and timed"
    );
    Ok(())
}

/// Run the generator for `secs` at `rate`, printing a line a second (if `live`), and return
/// its report with the receiver's.
fn demo_phase(
    s: &mut Session,
    dut: &mut SluiceDut,
    rx: Receiver,
    rate_: Rate,
    secs: Duration,
    live: bool,
) -> Result<(GenReport, RxReport)> {
    let template = s.template.clone();
    let Session { bed, generator, .. } = s;
    let peer = bed.peer().ns();
    let rep = std::thread::scope(|sc| -> Result<GenReport> {
        let h = sc.spawn(|| {
            peer.run(|| {
                pin(GEN_CORE);
                generator.run(&template, rate_, secs, |_| {})
            })
        });
        let mut last = rx.snapshot();
        let mut last_dut = dut.latest();
        while !h.is_finished() {
            std::thread::sleep(Duration::from_millis(if live { 1000 } else { 50 }));
            if !live {
                continue;
            }
            let now = rx.snapshot();
            let d = dut.latest();
            let dt = (now.elapsed_s - last.elapsed_s).max(1e-9);
            let sluice_rx = match (last_dut, d) {
                (Some(a), Some(b)) => rate(&a, &b, |x| x.rx) / 1e6,
                _ => 0.0,
            };
            println!(
                "    sluice rx {:>6.3} Mpps   reflected back {:>6.3} Mpps   receiver total {}",
                sluice_rx,
                (now.frames - last.frames) as f64 / dt / 1e6,
                now.frames
            );
            last = now;
            last_dut = d;
        }
        h.join()
            .map_err(|_| anyhow!("generator thread panicked"))?
            .map_err(|e| anyhow!("{e}"))?
            .map_err(|e| anyhow!("{e}"))
    })?;
    std::thread::sleep(Duration::from_millis(300));
    Ok((rep, rx.stop()))
}

fn print_phase(rep: &GenReport, r: &RxReport) {
    let l = &r.latency;
    let us = |ns: u64| ns as f64 / 1e3;
    println!(
        "    generator sent {} frames ({:.3} Mpps); {} came back ({} unique, {} duplicates, {} reordered), loss {:.2}%",
        rep.sent,
        rep.mpps(),
        r.counts.frames,
        r.counts.unique,
        r.counts.duplicates,
        r.counts.reordered,
        if rep.sent == 0 {
            0.0
        } else {
            r.loss(rep.sent) as f64 * 100.0 / rep.sent as f64
        }
    );
    println!(
        "    latency: p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
        us(l.p50_ns),
        us(l.p90_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns)
    );
}

// ---- rtt ---------------------------------------------------------------------------------

/// UDP payload sizes of the round-trip scenario: a small request and the largest datagram a
/// 1500-byte MTU carries unfragmented.
const RTT_PAYLOADS: [usize; 2] = [64, 1472];
/// Round trips before recording, per run.
const RTT_WARMUP: u64 = 2_000;
/// Round trips recorded per run (one in flight).
const RTT_COUNT: u64 = 20_000;
/// Low rates of the idle-policy runs, and the round trips recorded at each (fewer at 100 pps
/// so a round stays around 10 s).
const RTT_RATES: [(u64, u64); 3] = [(100, 1_000), (1_000, 5_000), (10_000, 20_000)];

/// A reflector of the rtt scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RttSubject {
    Sluice { busy_poll: bool },
    Testpmd,
    Kernel,
}

impl RttSubject {
    fn name(self) -> &'static str {
        match self {
            RttSubject::Sluice { busy_poll: false } => "sluice reflect (default idle policy)",
            RttSubject::Sluice { busy_poll: true } => "sluice reflect --busy-poll",
            RttSubject::Testpmd => "dpdk-testpmd 5tswap (af_xdp)",
            RttSubject::Kernel => "kernel UDP echo (recvmmsg/sendmmsg)",
        }
    }
}

impl Session {
    /// The client's config for `payload` bytes (`interval`: paced, else back to back).
    fn rtt_cfg(&self, payload: usize, count: u64, interval: Option<Duration>) -> rtt::RttConfig {
        rtt::RttConfig {
            target: SocketAddr::new(self.bed.engine().ipv4().into(), PORT),
            bind: SocketAddr::new(self.bed.peer().ipv4().into(), 0),
            payload,
            // Paced runs: a tenth of the count (1,000 at 10 kpps, 100 at 100 pps, one second).
            warmup: if interval.is_some() {
                count / 10
            } else {
                RTT_WARMUP
            },
            count,
            interval,
            timeout: Duration::from_millis(50),
            deadline: Duration::from_secs(60),
        }
    }

    /// A static neighbour entry for the engine's address on the peer: testpmd answers every
    /// frame (an ARP request too, mangled), so the client must never need to ask.
    fn static_neighbour(&self) -> Result<()> {
        let (eng, peer) = (self.bed.engine(), self.bed.peer());
        let mac = eng
            .mac()
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let ok = std::process::Command::new("ip")
            .args(["-n", peer.ns().name(), "neigh", "replace"])
            .arg(eng.ipv4().to_string())
            .args(["lladdr", &mac, "dev", peer.iface(), "nud", "permanent"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("could not add a static neighbour entry on the peer");
        }
        Ok(())
    }

    /// Start `who`, run the client once per entry of `runs` (payload, count, interval) in the
    /// peer namespace pinned to the generator's core, stop `who`.
    fn rtt_runs(
        &mut self,
        who: RttSubject,
        runs: &[(usize, u64, Option<Duration>)],
    ) -> Result<Vec<rtt::RttReport>> {
        let mut guard = DutGuard::default();
        let mut echo: Option<UdpEchoServer> = None;
        match who {
            RttSubject::Sluice { busy_poll } => {
                if busy_poll {
                    self.lever_args = vec!["--busy-poll".into()];
                }
                let d = self.start_sluice("reflect");
                self.lever_args.clear();
                guard.sluice = Some(d?);
            }
            RttSubject::Testpmd => {
                guard.testpmd = Some(self.start_testpmd(TestpmdMode::FiveTupleSwap)?);
            }
            RttSubject::Kernel => {
                let iface = self.bed.engine().iface().to_string();
                guard.pass = Some(
                    self.engine_run(move || generator::attach_pass_all(&iface))?
                        .map_err(|e| anyhow!("{e}"))?,
                );
                let mut cfg = self.sink_cfg();
                cfg.duration = Duration::from_secs(300);
                echo = Some(
                    self.engine_run(move || UdpEchoServer::bind(cfg))?
                        .context("binding the echo server")?,
                );
            }
        }
        let cfgs: Vec<rtt::RttConfig> = runs
            .iter()
            .map(|&(p, n, iv)| self.rtt_cfg(p, n, iv))
            .collect();
        let stop = AtomicBool::new(false);
        let peer = self.bed.peer().ns();
        let out = std::thread::scope(|s| -> Result<Vec<rtt::RttReport>> {
            let echo_h = echo.map(|srv| s.spawn(|| srv.run(&stop)));
            let res = peer
                .run(move || -> Result<Vec<rtt::RttReport>> {
                    pin(GEN_CORE);
                    if !rtt::probe(&cfgs[0], 100, Duration::from_millis(50))? {
                        bail!("no echo within 5 s");
                    }
                    cfgs.iter()
                        .map(|c| rtt::run(c).map_err(anyhow::Error::from))
                        .collect()
                })
                .map_err(|e| anyhow!("{e}"))
                .and_then(|r| r);
            stop.store(true, Ordering::Relaxed);
            if let Some(h) = echo_h {
                h.join()
                    .map_err(|_| anyhow!("kernel echo server thread panicked"))?
                    .context("kernel echo server")?;
            }
            res
        });
        drop(guard);
        out.with_context(|| format!("rtt against {}", who.name()))
    }

    /// One-in-flight round trips (back to back) against each reflector, both payload sizes,
    /// alternating rounds; then the idle policy's cost at low rates (sluice default vs
    /// --busy-poll, the kernel for reference).
    pub fn rtt(&mut self) -> Result<Vec<Scenario>> {
        self.static_neighbour()?;
        let load_before = loadavg();
        let subjects = [
            RttSubject::Sluice { busy_poll: false },
            RttSubject::Sluice { busy_poll: true },
            RttSubject::Testpmd,
            RttSubject::Kernel,
        ];
        let kernel = RttSubject::Kernel.name();
        let mut per_size: Vec<Vec<Subject>> = RTT_PAYLOADS
            .iter()
            .map(|_| {
                subjects
                    .iter()
                    .map(|w| Subject::new(w.name(), "µs p99"))
                    .collect()
            })
            .collect();
        let tp_missing = Testpmd::available().err();
        let back_to_back: Vec<(usize, u64, Option<Duration>)> =
            RTT_PAYLOADS.iter().map(|&p| (p, RTT_COUNT, None)).collect();
        for round in 0..self.rounds {
            for (j, &who) in subjects.iter().enumerate() {
                if per_size[0][j].skipped.is_some() {
                    continue;
                }
                if who == RttSubject::Testpmd
                    && let Some(why) = &tp_missing
                {
                    for s in per_size.iter_mut() {
                        s[j] = Subject::skipped(who.name(), "µs p99", why.clone());
                    }
                    continue;
                }
                let reps = match self.rtt_runs(who, &back_to_back) {
                    Ok(r) => r,
                    Err(e) if who == RttSubject::Testpmd => {
                        for s in per_size.iter_mut() {
                            s[j] = Subject::skipped(who.name(), "µs p99", format!("failed: {e:#}"));
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for (k, rep) in reps.iter().enumerate() {
                    record_rtt(
                        &mut per_size[k][j],
                        rep,
                        &format!("{} B", RTT_PAYLOADS[k]),
                        round,
                    );
                }
            }
        }
        let mut out = Vec::new();
        for (k, subs) in per_size.into_iter().enumerate() {
            let mut sc = Scenario {
                name: format!("rtt-{}B", RTT_PAYLOADS[k]),
                setup: format!(
                    "One-in-flight UDP round trips, {} B payload: {RTT_COUNT} recorded after {RTT_WARMUP} \
                     warm-up per round; client = one connected kernel UDP socket in the peer namespace, \
                     pinned to core {GEN_CORE}, spinning on recv(MSG_DONTWAIT); round trip = send → echo \
                     received, CLOCK_MONOTONIC (includes the client's own UDP send and receive path); \
                     reflector on core {DUT_CORE}; value = p99, extra = p50/p90/p99.9/max; {} rounds, alternating. \
                     Load average (1/5/15 min) before: {load_before}, after: {}.",
                    RTT_PAYLOADS[k],
                    self.rounds,
                    loadavg()
                ),
                subjects: subs,
                targets: vec![],
                limits: vec![],
            };
            sc.evaluate(vec![
                target(subjects[0].name(), kernel, 0.5, false, Some("p99_us")),
                target(
                    subjects[0].name(),
                    RttSubject::Testpmd.name(),
                    1.0,
                    false,
                    Some("p99_us"),
                ),
                target(subjects[1].name(), kernel, 0.5, false, Some("p99_us")),
            ]);
            out.push(sc);
        }
        out.push(self.rtt_rates()?);
        Ok(out)
    }

    /// Round trips at fixed low rates: what a worker asleep in poll() pays to wake up.
    fn rtt_rates(&mut self) -> Result<Scenario> {
        let load_before = loadavg();
        let subjects = [
            RttSubject::Sluice { busy_poll: false },
            RttSubject::Sluice { busy_poll: true },
            RttSubject::Kernel,
        ];
        let runs: Vec<(usize, u64, Option<Duration>)> = RTT_RATES
            .iter()
            .map(|&(pps, n)| (64, n, Some(Duration::from_nanos(1_000_000_000 / pps))))
            .collect();
        let mut subs: Vec<Subject> = RTT_RATES
            .iter()
            .flat_map(|&(pps, _)| {
                subjects
                    .iter()
                    .map(move |w| Subject::new(&format!("{} @ {pps} pps", w.name()), "µs p99"))
            })
            .collect();
        for round in 0..self.rounds {
            for (j, &who) in subjects.iter().enumerate() {
                let reps = self.rtt_runs(who, &runs)?;
                for (k, rep) in reps.iter().enumerate() {
                    let i = k * subjects.len() + j;
                    record_rtt(&mut subs[i], rep, "64 B", round);
                }
            }
        }
        let mut targets = Vec::new();
        for &(pps, _) in &RTT_RATES {
            targets.push(target(
                &format!("{} @ {pps} pps", subjects[0].name()),
                &format!("{} @ {pps} pps", subjects[2].name()),
                0.5,
                false,
                Some("p99_us"),
            ));
        }
        let mut sc = Scenario {
            name: "rtt-rate".into(),
            setup: format!(
                "One-in-flight UDP round trips (64 B payload) sent at a fixed low rate ({}) instead of \
                 back to back: the client sleeps until ~200 µs before each send and spins the rest, so \
                 the reflector has been idle since the last request; same client, placement and \
                 percentiles as rtt; {} rounds, alternating. Load average (1/5/15 min) before: \
                 {load_before}, after: {}.",
                RTT_RATES
                    .iter()
                    .map(|(p, n)| format!("{p} pps: {n} recorded"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.rounds,
                loadavg()
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(targets);
        Ok(sc)
    }
}

/// The first three fields of /proc/loadavg: the machine is shared, and its load is part of
/// every latency figure.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Adds one round's percentiles of `rep` to `s` and prints them.
fn record_rtt(s: &mut Subject, rep: &rtt::RttReport, what: &str, round: usize) {
    println!(
        "    round {}: {:<52} {what:>6} p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} µs \
         ({} samples, {} lost{})",
        round + 1,
        s.name,
        rep.quantile_us(0.5),
        rep.quantile_us(0.9),
        rep.quantile_us(0.99),
        rep.quantile_us(0.999),
        rep.max_us(),
        rep.hist.len(),
        rep.lost,
        if rep.cut_short { ", cut short" } else { "" },
    );
    s.samples.push(rep.quantile_us(0.99));
    for (k, v) in [
        ("p50_us", rep.quantile_us(0.5)),
        ("p90_us", rep.quantile_us(0.9)),
        ("p99_us", rep.quantile_us(0.99)),
        ("p99.9_us", rep.quantile_us(0.999)),
        ("max_us", rep.max_us()),
        ("lost", rep.lost as f64),
    ] {
        s.extra.entry(k.into()).or_default().push(v);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::{Value, json};

    /// A `sluice run --json` final object with the fields `legs` reads.
    fn final_totals(rx: u64, tx: u64, policy: u64, tx_ring_full: u64, ring_full: u64) -> Value {
        json!({
            "type": "final",
            "total": {
                "rx_packets": rx, "tx_packets": tx, "dropped": policy + tx_ring_full,
                "tx_ring_full": tx_ring_full, "bad_desc": 0,
                "drops": {"policy": policy, "truncated": 0}
            },
            "queues": [{"queue": 0, "kernel": {
                "rx_dropped": 0, "rx_ring_full": ring_full, "rx_fill_ring_empty": 2
            }}]
        })
    }

    #[test]
    fn legs_read_sluice_totals_and_sum_an_upgrade() {
        let rx = sluice_bench::rx::RxApp::new().report();
        let old = final_totals(1000, 990, 4, 6, 30);
        let l = legs(1030, Some(&old), &rx);
        let d = l.dut.as_ref().unwrap();
        assert_eq!((d.rx, d.tx, d.dropped, d.kernel_lost), (1000, 990, 10, 30));
        assert_eq!(d.drops, "policy 4, tx_ring_full 6");
        assert_eq!(l.sent, 1030);
        assert!(l.to_string().contains("sluice rx 1000 (socket lost 30"));
        // Old engine + successor: summed.
        let new = final_totals(500, 500, 0, 0, 0);
        let s = legs_summed(1530, &[old, new], &rx);
        let d = s.dut.unwrap();
        assert_eq!(
            (d.rx, d.tx, d.dropped, d.kernel_lost, d.fill_empty),
            (1500, 1490, 10, 30, 4)
        );
        // Not sluice: no DUT leg.
        assert!(legs(7, None, &rx).dut.is_none());
    }
}
