//! `--scenario load-latency`: latency under evenly paced load (issue 14, item 2).
//!
//! Each subject of the rtt scenario that the generator can drive (sluice reflect with the
//! default idle policy and with `--busy-poll`, dpdk-testpmd macswap, the kernel echo) first has
//! its reflect capacity measured at the generator's maximum rate, in alternating rounds; then it
//! is offered [`LOADS`] of its own median capacity with [`Rate::Paced`] — every frame sent at its
//! own due time, no millisecond chunks — again alternating subjects (and load points) round by
//! round. Per subject and load point: latency percentiles of every reflected frame (arrival −
//! the generator's per-frame timestamp), loss, the rate the generator actually offered, how
//! evenly it spaced the frames (departure gaps seen by the receiver) and how late its calls
//! were against the schedule. The p50/p99-vs-offered-Mpps curves go to `load-latency.svg`.
//!
//! This module only drives runs through the session's own helpers (`reflect_one`); it starts
//! nothing of its own.

use super::{ReflectFacts, Session, Subject0, loadavg, target};
use anyhow::Result;
use clap::ValueEnum;
use sluice_bench::r#gen::{PaceSchedule, Rate};
use sluice_bench::pace::PaceMethod;
use sluice_bench::peers::testpmd::Testpmd;
use sluice_bench::report::{LoadCurve, Scenario, Subject};
use sluice_bench::rx::GapStats;

/// Offered load points, as fractions of each subject's measured capacity.
pub(crate) const LOADS: [f64; 3] = [0.10, 0.50, 0.90];

/// A subject of the scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Sluice { busy_poll: bool },
    Testpmd,
    Kernel,
}

impl Who {
    const ALL: [Who; 4] = [
        Who::Sluice { busy_poll: false },
        Who::Sluice { busy_poll: true },
        Who::Testpmd,
        Who::Kernel,
    ];

    fn name(self) -> &'static str {
        match self {
            Who::Sluice { busy_poll: false } => "sluice reflect (default idle policy)",
            Who::Sluice { busy_poll: true } => "sluice reflect --busy-poll",
            Who::Testpmd => "dpdk-testpmd macswap (af_xdp)",
            Who::Kernel => "kernel UDP echo (recvmmsg/sendmmsg)",
        }
    }
}

/// The subject name of one load point in the report.
fn point_name(who: Who, load: f64) -> String {
    format!("{} @ {:.0}%", who.name(), load * 100.0)
}

impl Session {
    /// One reflect run of `who` at `rate`, `--busy-poll` added for that subject.
    fn load_run(&mut self, who: Who, rate: Rate) -> Result<(f64, f64, ReflectFacts)> {
        let (s0, busy) = match who {
            Who::Sluice { busy_poll } => (Subject0::Sluice, busy_poll),
            Who::Testpmd => (Subject0::Testpmd, false),
            Who::Kernel => (Subject0::Kernel, false),
        };
        if busy {
            self.lever_args = vec!["--busy-poll".into()];
        }
        let r = self.reflect_one(s0, rate);
        self.lever_args.clear();
        r
    }

    /// Capacity (max-rate reflect) per subject, then paced 10/50/90 % of it, alternating.
    pub fn load_latency(&mut self) -> Result<Scenario> {
        // The receiver sleeps when idle, like in the latency scenario: it shares the
        // generator's core, and a spinning receiver would compete with the pacer.
        self.receiver_busy = false;
        // The paced generator is a kernel UDP socket: the peer must know the engine's MAC
        // without asking (testpmd answers ARP with a mangled frame).
        self.static_neighbour()?;
        self.measure_rt = true;
        let r = self.load_latency_runs();
        self.measure_rt = false;
        r
    }

    fn load_latency_runs(&mut self) -> Result<Scenario> {
        let load_before = loadavg();
        let tp_missing = Testpmd::available().err();
        let mut skipped: Vec<Option<String>> = Who::ALL
            .iter()
            .map(|&w| {
                if w == Who::Testpmd {
                    tp_missing.clone()
                } else {
                    None
                }
            })
            .collect();

        // 1. Capacity: max-rate reflect, alternating rounds.
        let mut cap_subs: Vec<Subject> = Who::ALL
            .iter()
            .map(|w| Subject::new(&format!("{} capacity", w.name()), "Mpps"))
            .collect();
        for round in 0..self.rounds {
            for (j, &who) in Who::ALL.iter().enumerate() {
                if skipped[j].is_some() {
                    continue;
                }
                match self.load_run(who, Rate::Max) {
                    Ok((mpps, offered, f)) => {
                        println!(
                            "    capacity round {}: {:<40} {mpps:.3} Mpps reflected (offered {offered:.3}, loss {:.1}%)",
                            round + 1,
                            who.name(),
                            f.loss_pct
                        );
                        cap_subs[j].samples.push(mpps);
                    }
                    Err(e) if who == Who::Testpmd => {
                        skipped[j] = Some(format!("failed: {e:#}"));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let caps: Vec<Option<f64>> = cap_subs.iter().map(Subject::median).collect();

        // 2. Paced load points, alternating subjects within each load point and round.
        let mut subs: Vec<Vec<Subject>> = Who::ALL
            .iter()
            .map(|&w| {
                LOADS
                    .iter()
                    .map(|&l| Subject::new(&point_name(w, l), "µs p99"))
                    .collect()
            })
            .collect();
        for round in 0..self.rounds {
            for (k, &load) in LOADS.iter().enumerate() {
                for (j, &who) in Who::ALL.iter().enumerate() {
                    let Some(cap) = caps[j].filter(|_| skipped[j].is_none()) else {
                        continue;
                    };
                    let pps = ((cap * 1e6 * load) as u64).max(1_000);
                    let (_, _, f) = match self.load_run(who, Rate::Paced(pps)) {
                        Ok(v) => v,
                        Err(e) if who == Who::Testpmd => {
                            skipped[j] = Some(format!("failed: {e:#}"));
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    record_point(&mut subs[j][k], &f, pps, round);
                }
            }
        }

        // 3. Curves for the plot: medians per point.
        self.load_curves.clear();
        for (j, &who) in Who::ALL.iter().enumerate() {
            let pts: Vec<(f64, f64, f64)> = subs[j]
                .iter()
                .filter_map(|s| {
                    Some((
                        s.extra_median("offered_mpps")?,
                        s.extra_median("p50_us")?,
                        s.extra_median("p99_us")?,
                    ))
                })
                .collect();
            if !pts.is_empty() {
                self.load_curves.push(LoadCurve {
                    label: who.name().into(),
                    points: pts,
                });
            }
        }

        let mut all: Vec<Subject> = Vec::new();
        for (j, (cap, points)) in cap_subs.into_iter().zip(subs).enumerate() {
            match &skipped[j] {
                Some(why) => {
                    all.push(Subject::skipped(&cap.name, "Mpps", why.clone()));
                    for p in points {
                        all.push(Subject::skipped(&p.name, "µs p99", why.clone()));
                    }
                }
                None => {
                    all.push(cap);
                    all.extend(points);
                }
            }
        }
        let caps_text = Who::ALL
            .iter()
            .zip(&caps)
            .map(|(w, c)| match c {
                Some(c) => format!("{} {c:.3} Mpps", w.name()),
                None => format!("{} –", w.name()),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut sc = Scenario {
            name: "load-latency".into(),
            setup: format!(
                "Latency under evenly paced load. Capacity = reflected Mpps at the generator's max \
                 rate ({} rounds, alternating; medians: {caps_text}). Then each subject is offered \
                 {:?} of its own capacity with the paced generator (`bench/src/pace.rs`, \
                 `--pace-method {}`, on core 1, SCHED_FIFO below the receiver, every frame at its \
                 own due time — spin-until, only frames already due are sent, at most 32 per round \
                 when behind, slots more than 200 µs overdue given up, not burst: asked vs offered \
                 shows them), \
                 {:.2} s warm-up + {:.1} s + {:.2} s tail per run, subjects alternating within each \
                 load point and round. Latency = arrival at the receiver − the generator's per-frame \
                 stamp (CLOCK_MONOTONIC, ns), every reflected frame of the run; value = p99 µs; \
                 extras: p50/p90/p99.9/max, loss, asked and offered Mpps (what the generator achieved), \
                 departure gaps (µs, from consecutive stamps seen by the receiver; ideal = 1/rate) and \
                 the generator's lateness against its schedule (per round of its loop), frames lost on the \
                 measuring side (the receiver's veth ring and socket). Receiver and generator share \
                 core 1 (receiver worker and veth NAPI thread SCHED_FIFO); the DUT's XDP program and \
                 AF_XDP copy run {}. Load average \
                 (1/5/15 min) before: {load_before}, after: {}. Plot: load-latency.svg.",
                self.rounds,
                LOADS,
                self.pace_method
                    .to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_string()),
                super::WARMUP.as_secs_f64(),
                self.secs,
                super::TAIL.as_secs_f64(),
                if self.dut_napi {
                    "in a NAPI thread on core 0, the DUT's core (--dut-napi; capacities measured \
                     the same way)"
                } else {
                    "on the sending core (veth's default)"
                },
                loadavg()
            ),
            subjects: all,
            targets: vec![],
            limits: vec![],
        };
        let mut targets = Vec::new();
        for &l in &LOADS {
            targets.push(target(
                &point_name(Who::ALL[0], l),
                &point_name(Who::Kernel, l),
                0.5,
                false,
                Some("p99_us"),
            ));
            targets.push(target(
                &point_name(Who::ALL[0], l),
                &point_name(Who::Testpmd, l),
                1.0,
                false,
                Some("p99_us"),
            ));
        }
        sc.evaluate(targets);
        Ok(sc)
    }
}

/// Rates the pacer is asked for in `pace-ceiling`: far above what it can send (its ceiling),
/// and about 90 % of sluice reflect's capacity (the load-latency scenario's top point).
const CEILING_ASKS: [u64; 2] = [2_000_000, 430_000];

impl Session {
    /// `--scenario pace-ceiling`: sluice reflect (default idle policy) offered [`CEILING_ASKS`]
    /// by the pacer with each [`PaceMethod`], methods alternating within each rate and round.
    /// Value = offered Mpps (what the pacer sent); the extras say how evenly and how late.
    pub fn pace_ceiling(&mut self) -> Result<Scenario> {
        self.receiver_busy = false;
        self.static_neighbour()?;
        self.measure_rt = true;
        let method_before = self.pace_method;
        let r = self.pace_ceiling_runs();
        self.pace_method = method_before;
        self.measure_rt = false;
        r
    }

    fn pace_ceiling_runs(&mut self) -> Result<Scenario> {
        let load_before = loadavg();
        let methods = PaceMethod::value_variants();
        let name = |m: PaceMethod, pps: u64| {
            format!(
                "pacer --pace-method {} asked {:.3} Mpps",
                m.to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_string()),
                pps as f64 / 1e6
            )
        };
        let mut subs: Vec<Vec<Subject>> = CEILING_ASKS
            .iter()
            .map(|&pps| {
                methods
                    .iter()
                    .map(|&m| Subject::new(&name(m, pps), "Mpps offered"))
                    .collect()
            })
            .collect();
        for round in 0..self.rounds {
            for (k, &pps) in CEILING_ASKS.iter().enumerate() {
                for (j, &m) in methods.iter().enumerate() {
                    self.pace_method = m;
                    let (reflected, offered, f) =
                        self.load_run(Who::Sluice { busy_poll: false }, Rate::Paced(pps))?;
                    let s = &mut subs[k][j];
                    s.samples.push(offered);
                    s.extra
                        .entry("reflected_mpps".into())
                        .or_default()
                        .push(reflected);
                    record_extras(s, &f, pps, round);
                }
            }
        }
        Ok(Scenario {
            name: "pace-ceiling".into(),
            setup: format!(
                "The paced generator (`bench/src/pace.rs`, core 1, SCHED_FIFO below the receiver) \
                 into sluice reflect (default idle policy, core 0), asked {CEILING_ASKS:?} frames/s \
                 with each `--pace-method` (send: one `send` per frame on a connected UDP socket; \
                 sendmmsg: the frames already due in one call on that socket; packet: the same on \
                 an AF_PACKET socket with PACKET_QDISC_BYPASS), methods alternating within each \
                 rate and round, {} rounds, {:.2} s warm-up + {:.1} s + {:.2} s per run. Value = \
                 offered Mpps (frames the pacer sent per second); extras as in load-latency. \
                 Load average (1/5/15 min) before: {load_before}, after: {}.",
                self.rounds,
                super::WARMUP.as_secs_f64(),
                self.secs,
                super::TAIL.as_secs_f64(),
                loadavg()
            ),
            subjects: subs.into_iter().flatten().collect(),
            targets: vec![],
            limits: vec![],
        })
    }
}

/// Adds one paced run's figures to `s` (sample: p99 µs) and prints them.
fn record_point(s: &mut Subject, f: &ReflectFacts, pps: u64, round: usize) {
    let rep = f.report.as_ref().expect("reflect_one sets the report");
    s.samples.push(rep.latency.p99_ns as f64 / 1e3);
    record_extras(s, f, pps, round);
}

/// Adds one paced run's figures to `s`'s extras and prints them.
fn record_extras(s: &mut Subject, f: &ReflectFacts, pps: u64, round: usize) {
    let rep = f.report.as_ref().expect("reflect_one sets the report");
    let gen_rep = f
        .generator
        .as_ref()
        .expect("reflect_one sets the generator report");
    let l = &rep.latency;
    let us = |ns: u64| ns as f64 / 1e3;
    let ideal = PaceSchedule::new(pps).map_or(0.0, |s| s.gap_ns());
    let gaps = GapStats::from_histogram(&rep.departure_gaps, ideal);
    let pacing = gen_rep.pacing.clone().unwrap_or_default();
    println!(
        "    round {}: {:<48} asked {:.3} offered {:.3} Mpps: p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} µs, \
         loss {:.3}%; gaps p1/p50/p99 {:.2}/{:.2}/{:.2} µs (ideal {:.2}, ±10%: {:.1}%, bunched {:.1}%, holes {:.2}%); \
         late p50/p99 {:.1}/{:.1} µs, {:.2} frames/call, {:.0} ns/frame in send calls, {} slots skipped\n        legs: {}; veth drops DUT→receiver {}",
        round + 1,
        s.name,
        pps as f64 / 1e6,
        gen_rep.mpps(),
        us(l.p50_ns),
        us(l.p90_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns),
        f.loss_pct,
        gaps.p1_us,
        gaps.p50_us,
        gaps.p99_us,
        gaps.ideal_us,
        gaps.within_10pct,
        gaps.bunched_pct,
        gaps.holes_pct,
        pacing.late_p50_us,
        pacing.late_p99_us,
        pacing.mean_frames_per_call,
        pacing.send_ns_per_frame,
        pacing.skipped,
        super::legs(gen_rep.sent, f.dut_final.as_ref(), rep),
        f.veth_to_receiver,
    );
    for (k, v) in [
        ("asked_mpps", pps as f64 / 1e6),
        ("offered_mpps", gen_rep.mpps()),
        ("p50_us", us(l.p50_ns)),
        ("p90_us", us(l.p90_ns)),
        ("p99_us", us(l.p99_ns)),
        ("p99.9_us", us(l.p999_ns)),
        ("max_us", us(l.max_ns)),
        ("loss_pct", f.loss_pct),
        ("veth_to_receiver_dropped", f.veth_to_receiver as f64),
        (
            "receiver_socket_lost",
            (rep.kernel.rx_dropped + rep.kernel.rx_ring_full) as f64,
        ),
        ("gap_p1_us", gaps.p1_us),
        ("gap_p10_us", gaps.p10_us),
        ("gap_p50_us", gaps.p50_us),
        ("gap_p90_us", gaps.p90_us),
        ("gap_p99_us", gaps.p99_us),
        ("gap_p99.9_us", gaps.p999_us),
        ("gap_within_10pct", gaps.within_10pct),
        ("gap_bunched_pct", gaps.bunched_pct),
        ("gap_holes_pct", gaps.holes_pct),
        ("late_p50_us", pacing.late_p50_us),
        ("late_p99_us", pacing.late_p99_us),
        ("late_p99.9_us", pacing.late_p999_us),
        ("frames_per_call", pacing.mean_frames_per_call),
        ("send_ns_per_frame", pacing.send_ns_per_frame),
        ("slots_skipped", pacing.skipped as f64),
        ("send_failures", pacing.send_failures as f64),
    ] {
        s.extra.entry(k.into()).or_default().push(v);
    }
}
