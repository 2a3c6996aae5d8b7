//! The `forward` and `lb` scenarios: Mpps routed (or load-balanced) through a client — router —
//! server bed, counted independently at the server end.
//!
//! - `forward`: sluice `--app forward`, the kernel's own IP forwarding, and the in-kernel XDP
//!   forwarder (`xdp_fwd`, the ceiling).
//! - `lb` ([`RouterBench::lb_scenario`]): sluice `--app lb` (DSR and IPIP, one UDP VIP over four
//!   backends, [`sluice_bench::lbplan`]) against `--app forward` and `xdp_fwd` on the same path,
//!   with many flows. The VIP is an address the router routes via s0, so the same frames take
//!   r0 → r1 → s0 whichever subject handles them.
//!
//! ```text
//!  client                 router (DUT core 0)               server
//!  c0 ──── live frames ──▶ r0 ─── subject ───▶ r1 ─────────▶ s0: drop_all (counts)
//!  generator, core 1                                          NAPI thread, core 1
//! ```
//!
//! - **Generator** on c0 at max rate (core 1): 64-byte UDP/IPv4 from 10.1.0.2, destination MAC
//!   r0's ([`sluice_bench::route::template`]): `forward` sends 16 flows to the server's 10.2.0.2,
//!   `lb` 16384 flows to the VIP 10.9.0.1. Neighbours are static on every link (and for the
//!   extra backend addresses), so nothing is resolved mid-run.
//! - **Subjects**, each given r0 and r1: sluice (`--iface r0 --iface r1 --app forward
//!   --queues 1 --cores 0`, or `--app lb --config FILE`); the kernel (forwarding on, `pass_all`
//!   on r0 only because veth drops XDP live frames at a peer without an XDP program);
//!   `xdp_fwd` on r0 and r1.
//! - **Where the router's work runs.** veth runs a receiving end's NAPI on the sending CPU, which
//!   would put the kernel's whole forwarding path (and sluice's XDP program and copy) on the
//!   generator's core. r0's NAPI is therefore moved to a kernel thread on the DUT core for every
//!   subject, so each router gets one core — sluice's worker shares it with r0's NAPI, as in
//!   the other scenarios' `--dut-napi` placement. s0's NAPI (the counter) runs in a thread on
//!   the generator's core, real-time (`SCHED_FIFO`) so the ever-busy generator cannot starve
//!   it, and no subject is charged for the measuring side.
//! - **Counting.** `drop_all` on s0 counts every frame that reaches the server end, over the
//!   window; it drops them in XDP, so the server's stack is never the bottleneck. Before its
//!   first round each subject is checked: a short burst, captured on s0 with `pass_all` and a
//!   packet socket, must arrive forwarded exactly once ([`sluice_bench::route::check_forwarded`]),
//!   or balanced ([`sluice_bench::lbplan::check_dsr`], [`sluice_bench::lbplan::check_ipip`]).
//!
//! This module must never leave a program attached or a process running after a measurement
//! (guards detach and stop them, also on errors).

use crate::BenchArgs;
use crate::scenarios::{DUT_CORE, GEN_CORE, TAIL, WARMUP, pin, target, thread_napi};
use anyhow::{Context, Result, anyhow, bail};
use sluice::apps::lb::config::Forwarding;
use sluice_bench::dut::SluiceDut;
use sluice_bench::r#gen::{
    self as generator, GenReport, Generator, Rate, Template, XdpCounterHandle,
};
use sluice_bench::report::{Machine, Scenario, Subject, load_line};
use sluice_bench::{lbplan, route};
use sluice_testbed::{PacketSocket, RouterBed, RouterBedOpts};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Rate of the correctness check's burst: low enough that nothing is lost on the way to a
/// packet socket.
const CHECK_PPS: u64 = 20_000;
/// Frames of the burst that are checked.
const CHECK_FRAMES: usize = 32;
/// `SCHED_FIFO` priority of s0's NAPI thread (the counter). It shares core 1 with the
/// generator, which never sleeps; as an ordinary thread it got about half the core and s0's
/// 256-frame veth ring overflowed (measured: xdp_fwd redirected 0.94 Mpps, 0.54 counted), so
/// the counter, not the router, set the figure. Real-time, it runs whenever frames wait; it
/// needs a fraction of the core (`drop_all` takes > 5 Mpps), and the generator gets the rest.
const COUNTER_RT_PRIORITY: &str = "50";

/// The subjects that can sit in the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Router {
    Sluice,
    Kernel,
    XdpFwd,
    /// sluice `--app lb` with the lb plan's configuration in this forwarding mode.
    Lb(Forwarding),
}

impl Router {
    /// The forward scenario's routers, in the order a round runs them.
    const FORWARD: [Router; 3] = [Router::Sluice, Router::Kernel, Router::XdpFwd];
    /// The lb scenario's subjects, in the order a round runs them.
    const LB: [Router; 4] = [
        Router::Sluice,
        Router::Lb(Forwarding::Dsr),
        Router::Lb(Forwarding::Ipip),
        Router::XdpFwd,
    ];

    fn name(self) -> &'static str {
        match self {
            Router::Sluice => "sluice --app forward",
            Router::Kernel => "kernel IP forwarding",
            Router::XdpFwd => "XDP forwarder (xdp_fwd, in-kernel ceiling)",
            Router::Lb(Forwarding::Dsr) => "sluice --app lb (dsr)",
            Router::Lb(Forwarding::Ipip) => "sluice --app lb (ipip)",
        }
    }

    /// Whether a sluice process is the subject.
    fn is_sluice(self) -> bool {
        matches!(self, Router::Sluice | Router::Lb(_))
    }
}

/// Which scenario the bench is built for: what the generator sends, and what the router
/// namespace needs besides the bed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// [`route::FLOWS`] flows to the server's address.
    Forward,
    /// [`lbplan::FLOWS`] flows to the VIP; the extra backends' neighbours and the lb
    /// configuration files.
    Lb,
}

/// The lb configuration files, in a directory of their own that is removed on drop.
struct LbConfigs {
    dir: PathBuf,
}

impl LbConfigs {
    fn write() -> Result<LbConfigs> {
        let dir = std::env::temp_dir().join(format!("sluice-bench-lb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let c = LbConfigs { dir };
        for f in [Forwarding::Dsr, Forwarding::Ipip] {
            let p = c.path(f);
            std::fs::write(&p, lbplan::config_toml(f, None))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(c)
    }

    fn path(&self, f: Forwarding) -> PathBuf {
        self.dir.join(match f {
            Forwarding::Dsr => "lb-dsr.toml",
            Forwarding::Ipip => "lb-ipip.toml",
        })
    }
}

impl Drop for LbConfigs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running router; stopped and detached on drop, in a fixed order.
#[derive(Default)]
struct Running {
    sluice: Option<SluiceDut>,
    /// Programs on r0 (first) and r1.
    programs: Vec<XdpCounterHandle>,
}

impl Running {
    /// Frames the subject's own ingress program counted (r0), if it has one of ours.
    fn ingress_frames(&self) -> Option<u64> {
        self.programs.first()?.counts().ok().map(|c| c.frames)
    }

    /// Stop sluice (returning its final JSON) and detach everything.
    fn stop(mut self) -> Result<Option<serde_json::Value>> {
        self.programs.clear();
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
        self.programs.clear();
    }
}

/// One measurement's figures.
struct Figures {
    /// Forwarded frames counted on s0 over the window, per second.
    forwarded_pps: f64,
    /// What the generator sent (frames/s over its whole run).
    offered_pps: f64,
    /// Frames that arrived at the router's ingress program per second over the window (kernel:
    /// `pass_all`, forwarder: `xdp_fwd`'s redirected count; sluice: its own rx counter).
    ingress_pps: Option<f64>,
    /// sluice only: share of the frames counted on s0 over the whole run that sluice's
    /// workers sent (the rest were forwarded by the kernel after an XDP pass), in %.
    via_sluice_pct: Option<f64>,
    /// sluice only: frames its workers dropped over the whole run, % of those they received.
    sluice_drop_pct: Option<f64>,
    /// sluice only: its non-zero drop counters over the whole run, by reason.
    sluice_drops: Vec<(String, u64)>,
}

/// The forward and lb scenarios' bed and generator (built only when one of them runs).
pub struct RouterBench {
    bed: RouterBed,
    sluice: PathBuf,
    sluice_args: Vec<String>,
    secs: f64,
    rounds: usize,
    template: Template,
    generator: Generator,
    /// The lb configuration files ([`Plan::Lb`] only).
    lb_configs: Option<LbConfigs>,
}

impl RouterBench {
    /// Build the bed (static neighbours, forwarding on) for `plan` and load the generator on c0.
    pub fn new(a: &BenchArgs, secs: f64, plan: Plan) -> Result<RouterBench> {
        let bed = RouterBed::new(RouterBedOpts {
            static_neighbours: true,
            forwarding: true,
            ..RouterBedOpts::default()
        })
        .context("building the client — router — server bed")?;
        let (dst, flows, lb_configs) = match plan {
            Plan::Forward => (bed.s0().ipv4(), route::FLOWS, None),
            Plan::Lb => {
                lbplan::add_backend_neighbours(&bed)
                    .context("adding the backends' neighbours in the router")?;
                (lbplan::VIP, lbplan::FLOWS, Some(LbConfigs::write()?))
            }
        };
        let template = Template {
            flows,
            ..route::template(
                bed.c0().mac().0,
                bed.r0().mac().0,
                bed.c0().ipv4().into(),
                dst.into(),
                a.frame_len,
            )
        };
        template.build().context("building the frame template")?;
        let iface = bed.c0().iface().to_string();
        // Default batches and call sizes, as in the other scenarios: routers rewrite the
        // generator's own pages in place, but `gen_tx` restores the template's headers on every
        // frame, so a reused page goes out as the template.
        let generator = bed
            .client()
            .run(move || Generator::load(&iface))
            .map_err(|e| anyhow!("{e}"))?
            .context("loading the generator on the client end")?;
        println!(
            "    bed: {} c0 (generator, core {GEN_CORE}) -> {} r0 | r1 (router, core {DUT_CORE}) -> {} s0 (counter, core {GEN_CORE})",
            bed.client().name(),
            bed.router().name(),
            bed.server().name(),
        );
        Ok(RouterBench {
            bed,
            sluice: a.sluice.clone(),
            sluice_args: a.sluice_args.split_whitespace().map(String::from).collect(),
            secs,
            rounds: a.rounds,
            template,
            generator,
            lb_configs,
        })
    }

    /// Markdown header of a session that ran only this scenario.
    pub fn header(&self) -> String {
        let m = Machine::probe();
        format!(
            "# sluice benchmark\n\n- machine: Linux {}, {} × {}, veth (native XDP, AF_XDP copy mode)\n\
             - sluice {}; {} rounds per subject, alternating; {:.1} s window per measurement after {:.2} s warm-up\n\
             - traffic: {}-byte frames (without FCS), UDP/IPv4, {} flows, client → {} through the router; \
             generator on core {GEN_CORE}, router (r0's NAPI and sluice's worker) on core {DUT_CORE}, server-end counter on core {GEN_CORE}\n{}",
            m.kernel,
            m.cpus,
            m.cpu_model,
            m.rev,
            self.rounds,
            self.secs,
            WARMUP.as_secs_f64(),
            self.template.build().map(|(f, _)| f.len()).unwrap_or(0),
            self.template.flows,
            self.template.dst_ip,
            load_line(),
        )
    }

    /// Start `who` on r0/r1. `Running::programs[0]` is r0's program when we attach one.
    fn start(&self, who: Router) -> Result<Running> {
        let mut run = Running::default();
        let (r0, r1) = (self.bed.r0().iface(), self.bed.r1().iface());
        let router = self.bed.router();
        let attach = |iface: &str, f: fn(&str) -> Result<XdpCounterHandle, generator::GenError>| {
            let iface = iface.to_string();
            router
                .run(move || f(&iface))
                .map_err(|e| anyhow!("{e}"))?
                .map_err(|e| anyhow!("{e}"))
        };
        match who {
            Router::Sluice | Router::Lb(_) => {
                let config = match who {
                    Router::Lb(f) => Some(
                        self.lb_configs
                            .as_ref()
                            .context("the bench was not built for the lb plan")?
                            .path(f),
                    ),
                    _ => None,
                };
                let mut args: Vec<&str> = vec!["--iface", r1, "--queues", "1", "--cores", "0"];
                match &config {
                    Some(path) => args.extend([
                        "--app",
                        "lb",
                        "--lb-config",
                        path.to_str().context("non-UTF-8 temporary directory")?,
                    ]),
                    None => args.extend(["--app", "forward"]),
                }
                args.extend(self.sluice_args.iter().map(String::as_str));
                let mut d =
                    SluiceDut::start(&self.sluice, router, r0, &args).context("starting sluice")?;
                d.wait_ready(Duration::from_secs(20))
                    .context("waiting for sluice")?;
                run.sluice = Some(d);
            }
            Router::Kernel => {
                // Only so that r0 accepts the generator's live frames (veth drops XDP frames at
                // a peer without a program); every frame goes on to the kernel's stack.
                run.programs.push(attach(r0, generator::attach_pass_all)?);
            }
            Router::XdpFwd => {
                // Both ports, like sluice's: a router in both directions. Only r0's sees
                // traffic here; what veth needs for the redirect out of r1 is an XDP program
                // on r1's peer (s0), which every measurement has.
                run.programs.push(attach(r0, generator::attach_xdp_fwd)?);
                run.programs.push(attach(r1, generator::attach_xdp_fwd)?);
            }
        }
        Ok(run)
    }

    /// Put r0's NAPI on the router's core and s0's on the generator's, real-time there (see the
    /// module doc).
    fn place_napi(&self) -> Result<()> {
        if thread_napi(self.bed.router(), self.bed.r0().iface(), DUT_CORE).is_empty() {
            bail!("could not move r0's NAPI to a thread on core {DUT_CORE}");
        }
        let s0 = thread_napi(self.bed.server(), self.bed.s0().iface(), GEN_CORE);
        if s0.is_empty() {
            bail!("could not move s0's NAPI to a thread on core {GEN_CORE}");
        }
        for pid in s0 {
            let ok = std::process::Command::new("chrt")
                .args(["-f", "-p", COUNTER_RT_PRIORITY, &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                bail!("chrt -f -p {COUNTER_RT_PRIORITY} {pid} (s0's NAPI thread) failed");
            }
        }
        Ok(())
    }

    /// Generator on its own thread (client namespace, pinned) for `total`, `measure` here after
    /// `after`.
    fn with_traffic<T: Send>(
        &mut self,
        rate: Rate,
        total: Duration,
        after: Duration,
        measure: impl FnOnce() -> T,
    ) -> Result<(GenReport, T)> {
        let template = self.template.clone();
        let RouterBench { bed, generator, .. } = self;
        let client = bed.client();
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                client.run(move || {
                    pin(GEN_CORE);
                    generator.run(&template, rate, total, |_| {})
                })
            });
            std::thread::sleep(after);
            let t = measure();
            let rep = h
                .join()
                .map_err(|_| anyhow!("generator thread panicked"))?
                .map_err(|e| anyhow!("{e}"))?
                .context("generator run")?;
            Ok((rep, t))
        })
    }

    fn attach_s0(
        &self,
        f: fn(&str) -> Result<XdpCounterHandle, generator::GenError>,
    ) -> Result<XdpCounterHandle> {
        let iface = self.bed.s0().iface().to_string();
        self.bed
            .server()
            .run(move || f(&iface))
            .map_err(|e| anyhow!("{e}"))?
            .map_err(|e| anyhow!("{e}"))
    }

    /// A short burst through `who`, captured on s0: every captured frame must be the template
    /// forwarded once (r1's MAC → s0's, TTL − 1, valid checksum), or balanced (DSR: the MACs
    /// rewritten, the packet untouched; IPIP: an outer header to a backend in front of it).
    fn check(&mut self, who: Router) -> Result<()> {
        // pass_all, not drop_all: the frames must reach the packet socket.
        let pass = self.attach_s0(generator::attach_pass_all)?;
        let sock = PacketSocket::open(self.bed.server(), self.bed.s0().iface())
            .context("packet socket on s0")?;
        let run = self.start(who)?;
        let (sent, _) = self.template.build()?;
        let dport = route::PORT.to_be_bytes();
        let secs = Duration::from_millis(300);
        let (_, got) = self.with_traffic(Rate::Pps(CHECK_PPS), secs, Duration::ZERO, || {
            sock.collect_incoming(secs + Duration::from_secs(1), CHECK_FRAMES, |f| {
                // UDP/IPv4 to the port, bare or inside an IPIP header (no IPv4 options: the
                // template has none, nor has the balancer's outer header).
                let udp_to_port = |ip: usize| {
                    f.len() >= ip + 24 && f[ip + 9] == 17 && f[ip + 22..ip + 24] == dport
                };
                f.len() >= 38
                    && f[12..14] == [0x08, 0x00]
                    && (udp_to_port(14) || f[23] == 4 && udp_to_port(34))
            })
        })?;
        run.stop()?;
        drop(pass);
        let got = got.context("reading the packet socket on s0")?;
        if got.len() < CHECK_FRAMES {
            bail!(
                "{}: only {} of {CHECK_FRAMES} checked frames reached the server end",
                who.name(),
                got.len()
            );
        }
        let (r1, s0) = (self.bed.r1(), self.bed.s0());
        let mut backends = std::collections::BTreeSet::new();
        for f in &got {
            match who {
                Router::Sluice | Router::Kernel | Router::XdpFwd => {
                    route::check_forwarded(&sent, f, r1.mac().0, s0.mac().0)
                }
                Router::Lb(Forwarding::Dsr) => lbplan::check_dsr(&sent, f, r1.mac(), s0.mac()),
                Router::Lb(Forwarding::Ipip) => {
                    lbplan::check_ipip(&sent, f, r1.mac(), s0.mac(), r1.ipv4(), &lbplan::BACKENDS)
                        .map(|b| {
                            backends.insert(b);
                        })
                }
            }
            .map_err(|e| anyhow!("{}: a frame at the server end is wrong: {e}", who.name()))?;
        }
        let what = match who {
            Router::Lb(Forwarding::Dsr) => {
                "balanced by DSR (MACs r1 -> s0, IP packet untouched: TTL 64)".to_string()
            }
            Router::Lb(Forwarding::Ipip) => {
                // 32 consecutive flows all on one of four backends would mean Maglev is not
                // spreading them (odds 4^-31 by chance).
                if backends.len() < 2 {
                    bail!(
                        "{}: every checked frame went to {backends:?}: the flows are not spread",
                        who.name()
                    );
                }
                format!(
                    "encapsulated once (outer {} -> {} backends, inner packet untouched: TTL 64)",
                    r1.ipv4(),
                    backends.len()
                )
            }
            _ => "forwarded once (MACs r1 -> s0, TTL 63, checksum valid)".to_string(),
        };
        println!(
            "    check: {:<44} {} frames at s0 {what}",
            who.name(),
            got.len()
        );
        Ok(())
    }

    /// One measurement of `who` at max rate.
    fn measure(&mut self, who: Router) -> Result<Figures> {
        let sink = self.attach_s0(generator::attach_drop_all)?;
        let mut run = self.start(who)?;
        self.place_napi()?;
        let window = Duration::from_secs_f64(self.secs);
        let total = WARMUP + window + TAIL;
        let sink_ref = &sink;
        let (rep, m) = {
            let run_ref = &mut run;
            self.with_traffic(Rate::Max, total, WARMUP, move || -> Result<_> {
                let ingress = |r: &mut Running| -> Option<f64> {
                    match r.sluice.as_mut() {
                        Some(d) => d.latest().map(|s| s.rx as f64),
                        None => r.ingress_frames().map(|f| f as f64),
                    }
                };
                let (t0, c0, i0) = (Instant::now(), sink_ref.counts()?, ingress(run_ref));
                std::thread::sleep(window);
                let (t1, c1, i1) = (Instant::now(), sink_ref.counts()?, ingress(run_ref));
                let dt = (t1 - t0).as_secs_f64();
                Ok((
                    (c1.frames - c0.frames) as f64 / dt,
                    i0.zip(i1).map(|(a, b)| (b - a) / dt),
                ))
            })?
        };
        let (forwarded_pps, ingress_pps) = m.map_err(|e| anyhow!("{e}"))?;
        // Let the last frames drain before the totals are compared.
        std::thread::sleep(Duration::from_millis(100));
        let at_s0 = sink.counts().map_err(|e| anyhow!("{e}"))?.frames;
        let fin = run.stop()?;
        drop(sink);
        let via_sluice_pct = fin.as_ref().map(|f| {
            let sent = f["total"]["tx_packets"].as_u64().unwrap_or(0);
            if at_s0 == 0 {
                0.0
            } else {
                (sent as f64 * 100.0 / at_s0 as f64).min(100.0)
            }
        });
        let sluice_drop_pct = fin.as_ref().map(|f| {
            let rx = f["total"]["rx_packets"].as_u64().unwrap_or(0);
            let dropped = f["total"]["dropped"].as_u64().unwrap_or(0);
            if rx == 0 {
                0.0
            } else {
                dropped as f64 * 100.0 / rx as f64
            }
        });
        // Drops by reason, and the two counters `dropped` adds to them.
        let sluice_drops = fin
            .as_ref()
            .map(|f| {
                let t = &f["total"];
                let by_reason = t["drops"].as_object().into_iter().flatten();
                let others = ["tx_ring_full", "bad_desc"].map(|k| (k, &t[k]));
                by_reason
                    .map(|(k, v)| (k.as_str(), v))
                    .chain(others)
                    .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k.to_string(), n)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Figures {
            forwarded_pps,
            offered_pps: rep.achieved_pps,
            ingress_pps,
            via_sluice_pct,
            sluice_drop_pct,
            sluice_drops,
        })
    }

    /// Check each of `routers`, then measure them in alternating rounds (Mpps at s0).
    fn rounds_of(&mut self, routers: &[Router]) -> Result<Vec<Subject>> {
        for &who in routers {
            self.check(who)?;
        }
        let mut subs: Vec<Subject> = routers
            .iter()
            .map(|r| Subject::new(r.name(), "Mpps"))
            .collect();
        for round in 0..self.rounds {
            for (i, &who) in routers.iter().enumerate() {
                let f = self.measure(who)?;
                let mpps = f.forwarded_pps / 1e6;
                println!(
                    "    round {}: {:<44} {:>7.3} Mpps at s0 (offered {:.3}, at r0 {}{}{})",
                    round + 1,
                    who.name(),
                    mpps,
                    f.offered_pps / 1e6,
                    f.ingress_pps
                        .map_or("-".into(), |p| format!("{:.3}", p / 1e6)),
                    f.via_sluice_pct
                        .map_or(String::new(), |p| format!(", {p:.1}% sent by sluice")),
                    f.sluice_drop_pct
                        .map_or(String::new(), |p| format!(", {p:.3}% dropped by sluice")),
                );
                if !f.sluice_drops.is_empty() {
                    let d: Vec<String> = f
                        .sluice_drops
                        .iter()
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect();
                    println!("             sluice drops: {}", d.join(", "));
                }
                let s = &mut subs[i];
                s.samples.push(mpps);
                let mut extra = |k: &str, v: f64| s.extra.entry(k.into()).or_default().push(v);
                extra("offered_mpps", f.offered_pps / 1e6);
                if let Some(p) = f.ingress_pps {
                    extra("router_ingress_mpps", p / 1e6);
                }
                if let Some(p) = f.via_sluice_pct {
                    extra("sent_by_sluice_pct", p);
                }
                if who.is_sluice()
                    && let Some(p) = f.sluice_drop_pct
                {
                    extra("dropped_by_sluice_pct", p);
                }
            }
        }
        Ok(subs)
    }

    /// sluice forward vs kernel forwarding vs xdp_fwd, alternating rounds (Mpps at s0).
    pub fn scenario(&mut self) -> Result<Scenario> {
        let subs = self.rounds_of(&Router::FORWARD)?;
        let names = Router::FORWARD.map(Router::name);
        let mut sc = Scenario {
            name: "forward".into(),
            setup: format!(
                "IPv4 forwarding client → router → server, generator on c0 at max rate to 10.2.0.2 via r0's MAC, static neighbours; \
                 forwarded frames counted by drop_all on s0 over the window ({} rounds). Router work on core {DUT_CORE}: r0's NAPI in a \
                 thread there for every subject, sluice's one worker too; s0's NAPI and the generator on core {GEN_CORE}. \
                 router_ingress_mpps: frames the router's ingress took in (sluice: its rx counter; kernel: pass_all on r0; \
                 xdp_fwd: frames it redirected). Each subject was first checked to forward the template once (TTL 63, MACs r1 → s0).",
                self.rounds
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(vec![
            target(names[0], names[1], 2.0, true, None),
            target(names[0], names[2], 0.0, true, None),
        ]);
        Ok(sc)
    }

    /// sluice lb (DSR, IPIP) vs sluice forward vs xdp_fwd on the same path, alternating rounds
    /// (Mpps at s0). Target: lb ≥ 0.9 × forward.
    pub fn lb_scenario(&mut self) -> Result<Scenario> {
        let subs = self.rounds_of(&Router::LB)?;
        let name = |r: Router| r.name();
        let (fwd, dsr, ipip, ceiling) = (
            name(Router::Sluice),
            name(Router::Lb(Forwarding::Dsr)),
            name(Router::Lb(Forwarding::Ipip)),
            name(Router::XdpFwd),
        );
        let backends: Vec<String> = lbplan::BACKENDS.iter().map(|b| b.to_string()).collect();
        let mut sc = Scenario {
            name: "lb".into(),
            setup: format!(
                "Load balancing on the forward bed: generator on c0 at max rate, 64-byte UDP/IPv4 from 10.1.0.2, {} flows \
                 (source ports), to the VIP {}:{} via r0's MAC. lb: one UDP VIP, health none, default connection table \
                 (65536) and Maglev size, backends {} (s0 and three addresses whose router neighbour is s0's MAC), \
                 out of r1 to s0; dsr rewrites the MACs, ipip adds a 20-byte outer header (80-byte frames at s0). \
                 forward and xdp_fwd route the same frames to s0 (the router's route to the VIP is via s0). Frames counted by \
                 drop_all on s0 over the window ({} rounds); router work on core {DUT_CORE} (r0's NAPI thread and sluice's one \
                 worker), s0's NAPI and the generator on core {GEN_CORE}. Each subject was first checked on a burst captured at s0.",
                lbplan::FLOWS,
                lbplan::VIP,
                lbplan::PORT,
                backends.join(", "),
                self.rounds
            ),
            subjects: subs,
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(vec![
            target(dsr, fwd, 0.9, true, None),
            target(ipip, fwd, 0.9, true, None),
            target(dsr, ceiling, 0.0, true, None),
            target(ipip, ceiling, 0.0, true, None),
            target(fwd, ceiling, 0.0, true, None),
        ]);
        Ok(sc)
    }
}
