//! The `forward` scenario: Mpps routed through a client — router — server bed by sluice
//! `--app forward`, by the kernel's own IP forwarding, and by the in-kernel XDP forwarder
//! (`xdp_fwd`, the ceiling), counted independently at the server end.
//!
//! ```text
//!  client                 router (DUT core 0)               server
//!  c0 ──── live frames ──▶ r0 ─── subject ───▶ r1 ─────────▶ s0: drop_all (counts)
//!  generator, core 1                                          NAPI thread, core 1
//! ```
//!
//! - **Generator** on c0 at max rate (core 1): 64-byte UDP/IPv4 from 10.1.0.2 to the server's
//!   10.2.0.2, destination MAC r0's ([`sluice_bench::route::template`]). Neighbours are static
//!   on every link, so nothing is resolved mid-run.
//! - **Subjects**, each given r0 and r1: sluice (`--iface r0 --iface r1 --app forward
//!   --queues 1 --cores 0`); the kernel (forwarding on, `pass_all` on r0 only because veth
//!   drops XDP live frames at a peer without an XDP program); `xdp_fwd` on r0 and r1.
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
//!   packet socket, must arrive forwarded exactly once ([`sluice_bench::route::check_forwarded`]).
//!
//! This module must never leave a program attached or a process running after a measurement
//! (guards detach and stop them, also on errors).

use crate::BenchArgs;
use crate::scenarios::{DUT_CORE, GEN_CORE, TAIL, WARMUP, pin, target, thread_napi};
use anyhow::{Context, Result, anyhow, bail};
use sluice_bench::dut::SluiceDut;
use sluice_bench::r#gen::{
    self as generator, GenReport, Generator, Rate, Template, XdpCounterHandle,
};
use sluice_bench::report::{Machine, Scenario, Subject};
use sluice_bench::route;
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

/// The three routers, in the order a round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Router {
    Sluice,
    Kernel,
    XdpFwd,
}

impl Router {
    const ALL: [Router; 3] = [Router::Sluice, Router::Kernel, Router::XdpFwd];

    fn name(self) -> &'static str {
        match self {
            Router::Sluice => "sluice --app forward",
            Router::Kernel => "kernel IP forwarding",
            Router::XdpFwd => "XDP forwarder (xdp_fwd, in-kernel ceiling)",
        }
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
}

/// The forward scenario's bed and generator (built only when the scenario runs).
pub struct ForwardBench {
    bed: RouterBed,
    sluice: PathBuf,
    sluice_args: Vec<String>,
    secs: f64,
    rounds: usize,
    template: Template,
    generator: Generator,
}

impl ForwardBench {
    /// Build the bed (static neighbours, forwarding on) and load the generator on c0.
    pub fn new(a: &BenchArgs, secs: f64) -> Result<ForwardBench> {
        let bed = RouterBed::new(RouterBedOpts {
            static_neighbours: true,
            forwarding: true,
            ..RouterBedOpts::default()
        })
        .context("building the client — router — server bed")?;
        let template = route::template(
            bed.c0().mac().0,
            bed.r0().mac().0,
            bed.c0().ipv4().into(),
            bed.s0().ipv4().into(),
            a.frame_len,
        );
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
        Ok(ForwardBench {
            bed,
            sluice: a.sluice.clone(),
            sluice_args: a.sluice_args.split_whitespace().map(String::from).collect(),
            secs,
            rounds: a.rounds,
            template,
            generator,
        })
    }

    /// Markdown header of a session that ran only this scenario.
    pub fn header(&self) -> String {
        let m = Machine::probe();
        format!(
            "# sluice benchmark\n\n- machine: Linux {}, {} × {}, veth (native XDP, AF_XDP copy mode)\n\
             - sluice {}; {} rounds per subject, alternating; {:.1} s window per measurement after {:.2} s warm-up\n\
             - traffic: {}-byte frames (without FCS), UDP/IPv4, {} flows, client → server through the router; \
             generator on core {GEN_CORE}, router (r0's NAPI and sluice's worker) on core {DUT_CORE}, server-end counter on core {GEN_CORE}\n",
            m.kernel,
            m.cpus,
            m.cpu_model,
            m.rev,
            self.rounds,
            self.secs,
            WARMUP.as_secs_f64(),
            self.template.build().map(|(f, _)| f.len()).unwrap_or(0),
            route::FLOWS,
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
            Router::Sluice => {
                let mut args: Vec<&str> = vec![
                    "--iface", r1, "--app", "forward", "--queues", "1", "--cores", "0",
                ];
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
        let ForwardBench { bed, generator, .. } = self;
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
    /// forwarded once (r1's MAC → s0's, TTL − 1, valid checksum).
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
                f.len() >= 38 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[36..38] == dport
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
        for f in &got {
            route::check_forwarded(&sent, f, self.bed.r1().mac().0, self.bed.s0().mac().0)
                .map_err(|e| anyhow!("{}: a frame at the server end is wrong: {e}", who.name()))?;
        }
        println!(
            "    check: {:<44} {} frames at s0 forwarded once (MACs r1 -> s0, TTL 63, checksum valid)",
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
        let via_sluice_pct = fin.map(|f| {
            let sent = f["total"]["tx_packets"].as_u64().unwrap_or(0);
            if at_s0 == 0 {
                0.0
            } else {
                (sent as f64 * 100.0 / at_s0 as f64).min(100.0)
            }
        });
        Ok(Figures {
            forwarded_pps,
            offered_pps: rep.achieved_pps,
            ingress_pps,
            via_sluice_pct,
        })
    }

    /// sluice forward vs kernel forwarding vs xdp_fwd, alternating rounds (Mpps at s0).
    pub fn scenario(&mut self) -> Result<Scenario> {
        for who in Router::ALL {
            self.check(who)?;
        }
        let mut subs: Vec<Subject> = Router::ALL
            .iter()
            .map(|r| Subject::new(r.name(), "Mpps"))
            .collect();
        for round in 0..self.rounds {
            for (i, who) in Router::ALL.into_iter().enumerate() {
                let f = self.measure(who)?;
                let mpps = f.forwarded_pps / 1e6;
                println!(
                    "    round {}: {:<44} {:>7.3} Mpps forwarded (offered {:.3}, at r0 {}{})",
                    round + 1,
                    who.name(),
                    mpps,
                    f.offered_pps / 1e6,
                    f.ingress_pps
                        .map_or("-".into(), |p| format!("{:.3}", p / 1e6)),
                    f.via_sluice_pct
                        .map_or(String::new(), |p| format!(", {p:.1}% sent by sluice")),
                );
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
            }
        }
        let names = Router::ALL.map(Router::name);
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
}
