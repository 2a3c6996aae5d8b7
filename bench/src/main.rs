//! `sluice-bench`: the benchmark driver behind `cargo xtask bench` (and the generator demo).
//!
//! One veth test bed for the whole session: the DUT (sluice, dpdk-testpmd, a kernel socket or
//! the XDP_DROP floor) on the "engine" end, pinned to core 0; the XDP live-frames generator and
//! the receiver of reflected frames on the "peer" end, on core 1. Subjects of a scenario run in
//! alternating rounds (A B C A B C …), and the report gives medians and ratios of medians. The
//! `pipeline` scenario needs none of that (it runs the worker's step over memory), so a session
//! of only `pipeline` builds no test bed. The `forward` and `lb` scenarios build their own
//! client — router — server bed (see `forward.rs`), the `dns` scenario a client — server DNS
//! bed (see `dnsbench.rs`).

mod dnsbench;
mod forward;
mod scenarios;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sluice_bench::pace::PaceMethod;
use sluice_bench::pipeline;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Benchmark driver for sluice (run it through `cargo xtask bench`).
#[derive(Parser, Debug)]
#[command(name = "sluice-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run benchmark scenarios side by side and write reports.
    Bench(BenchArgs),
    /// Reflect generator traffic through sluice on a throwaway veth pair, live.
    Demo(DemoArgs),
    /// Soak: reflect under flaps, rule churn, scraping and hot upgrades; account for every frame.
    Soak(SoakArgs),
}

/// Arguments of `sluice-bench soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// The sluice binary (release build).
    #[arg(long)]
    pub sluice: PathBuf,
    /// Minutes of load (flaps every 30 s, a rule change every second, an upgrade every 2 min).
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
}

/// Arguments of `sluice-bench bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The sluice binary to benchmark (release build).
    #[arg(long)]
    pub sluice: PathBuf,
    /// Where the reports go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Scenario to run.
    #[arg(long, value_enum, default_value_t = ScenarioKind::All)]
    pub scenario: ScenarioKind,
    /// Short runs (fewer seconds per round), for a quick look; still 3 rounds.
    #[arg(long)]
    pub quick: bool,
    /// Rounds per subject (at least 3).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of traffic per measurement (default 4, 2 with --quick; for `pipeline`: at least
    /// this long and 20 M packets per measurement, default 1, 0.25 with --quick).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Frame length without FCS (60 = the "64-byte frame").
    #[arg(long, default_value_t = 60)]
    pub frame_len: usize,
    /// Extra arguments for every `sluice run` (e.g. "--batch 128"), space-separated.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub sluice_args: String,
    /// For `--scenario lever`: a variant of `sluice run` arguments to compare with the defaults
    /// (repeatable), e.g. --lever "--batch 128" --lever "--tx-budget 256".
    #[arg(long, allow_hyphen_values = true)]
    pub lever: Vec<String>,
    /// Run the DUT's veth NAPI (its XDP program and AF_XDP copy) on the DUT core instead of
    /// the sending core (the kernel's default for veth): "same core" AF_XDP, as on a host whose
    /// NIC interrupts are on the worker's core.
    #[arg(long)]
    pub dut_napi: bool,
    /// How the paced generator (`load-latency`, `upgrade`, `pace-ceiling`) hands frames to the
    /// kernel: one `send` per frame, the frames already due in one `sendmmsg`, or the same on an
    /// AF_PACKET socket that bypasses the qdisc and the IP stack.
    #[arg(long, value_enum, default_value_t = PaceMethod::default())]
    pub pace_method: PaceMethod,
    /// For `--scenario lever`: the app to measure with (reflect or drop).
    #[arg(long, default_value = "reflect", value_parser = ["reflect", "drop"])]
    pub lever_app: String,
    /// For `--scenario upgrade`: the steady offered rate in frames/s (0.3 Mpps by default;
    /// lower it where the machine cannot reflect that much without loss to begin with).
    #[arg(long, default_value_t = 300_000)]
    pub upgrade_pps: u64,
    /// For `--scenario dns`: copies of one query frame per generator call (the generator sends
    /// its prebuilt queries in turn, one frame per call). Each call sets up a page pool: at 64
    /// the generator offered under 1 Mqps, about what sluice answers; at 1024, 2–3.5 Mqps.
    #[arg(long, default_value_t = 1024)]
    pub dns_frames_per_call: u32,
    /// For `--scenario dns`: seconds of each dnsperf latency run.
    #[arg(long, default_value_t = 10)]
    pub dns_latency_secs: u64,
    /// For `--scenario dns`: after the rounds, `perf record` the server core while each
    /// server runs at its best load of the last round; the top symbols go to
    /// `<out>/dns-profile-<server>.txt`.
    #[arg(long)]
    pub dns_profile: bool,
    /// For `--scenario dns`: before each measurement wait until both cores are ≥ 90% idle,
    /// but at most this many seconds (then measure anyway; the report counts those). 0 turns
    /// the gate off.
    #[arg(long, default_value_t = 180)]
    pub quiet_wait: u64,
}

/// Which scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// rxdrop: sluice drop vs dpdk-testpmd rxonly vs kernel UDP sink vs XDP_DROP floor.
    Rxdrop,
    /// reflect: sluice reflect vs dpdk-testpmd macswap vs kernel UDP echo server.
    Reflect,
    /// latency: reflect at 10% of sluice's capacity, sluice vs kernel echo, percentiles.
    Latency,
    /// sweep: throughput vs offered load, sluice reflect and kernel echo.
    Sweep,
    /// idle: CPU used by an engine with no traffic.
    Idle,
    /// lever: sluice defaults vs sluice with each --lever, alternating (not part of `all`).
    Lever,
    /// pipeline: ns/packet of the worker step and of each app alone, over memory (no kernel).
    Pipeline,
    /// forward: Mpps routed client → router → server by sluice --app forward vs the kernel's
    /// IP forwarding vs the in-kernel XDP forwarder (its own three-namespace bed).
    Forward,
    /// upgrade: frames lost to a hot upgrade (`--takeover`) under steady, paced reflect traffic
    /// (`--upgrade-pps`, 0.3 Mpps asked by default), by leg of the path, vs no upgrade.
    Upgrade,
    /// lb: Mpps load-balanced by sluice --app lb (DSR and IPIP, many flows) vs sluice --app
    /// forward vs the in-kernel XDP forwarder on the same client → router → server path.
    Lb,
    /// rtt: one-in-flight UDP round trips (64 and 1472 B) against sluice reflect (default and
    /// --busy-poll), dpdk-testpmd 5tswap and the kernel echo; then the same at 100/1k/10k pps.
    Rtt,
    /// dns: DNS queries answered per second by sluice --app dns vs NSD vs Knot (one core each),
    /// then dnsperf latency percentiles at 10% load (its own client — server bed).
    Dns,
    /// load-latency: each rtt subject's reflect capacity, then 10/50/90% of it offered with
    /// the paced generator (every frame at its own due time); p50/p90/p99/p99.9 and loss per
    /// subject per load point, alternating; plot: load-latency.svg.
    LoadLatency,
    /// pace-ceiling: the highest rate the paced generator reaches into sluice reflect with each
    /// `--pace-method`, and how evenly it spaces frames just below sluice's capacity (not part
    /// of `all`).
    PaceCeiling,
    /// Everything above.
    All,
}

/// Arguments of `sluice-bench demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// The sluice binary (release build).
    #[arg(long)]
    pub sluice: PathBuf,
    /// Seconds of generator traffic.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Generator rate in frames per second (0 = as fast as it goes).
    #[arg(long, default_value_t = 0)]
    pub pps: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Bench(a) => run_bench(a),
        Cmd::Demo(a) => scenarios::demo(&a),
        Cmd::Soak(a) => run_soak(&a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_soak(a: &SoakArgs) -> Result<()> {
    if !(1..=24 * 60).contains(&a.minutes) {
        bail!("--minutes must be between 1 and 1440");
    }
    let cfg = sluice_bench::soak::SoakConfig::minutes(a.sluice.clone(), a.minutes);
    let rep = sluice_bench::soak::run(&cfg).context("running the soak")?;
    println!("{}", rep.summary());
    if !rep.problems.is_empty() {
        bail!("the soak found {} problem(s)", rep.problems.len());
    }
    Ok(())
}

fn run_bench(a: BenchArgs) -> Result<()> {
    if a.rounds < 3 {
        bail!("--rounds must be at least 3 (medians of alternating rounds)");
    }
    let secs = a.seconds.unwrap_or(if a.quick { 2.0 } else { 4.0 });
    if !(0.5..=60.0).contains(&secs) {
        bail!("--seconds must be between 0.5 and 60");
    }
    let kinds: Vec<ScenarioKind> = match a.scenario {
        ScenarioKind::All => vec![
            ScenarioKind::Pipeline,
            ScenarioKind::Rxdrop,
            ScenarioKind::Reflect,
            ScenarioKind::Latency,
            ScenarioKind::Rtt,
            ScenarioKind::LoadLatency,
            ScenarioKind::Sweep,
            ScenarioKind::Idle,
            ScenarioKind::Upgrade,
            ScenarioKind::Forward,
            ScenarioKind::Lb,
            ScenarioKind::Dns,
        ],
        k => vec![k],
    };
    // Only scenarios with traffic need the sluice binary; those on the veth pair share one
    // bed (namespaces, generator, hugepages for testpmd), and `forward`, `lb` and `dns` each build
    // their own client — router — server bed when they run.
    let on_pair = |k: &ScenarioKind| {
        !matches!(
            k,
            ScenarioKind::Pipeline | ScenarioKind::Forward | ScenarioKind::Lb | ScenarioKind::Dns
        )
    };
    if kinds.iter().any(|k| *k != ScenarioKind::Pipeline) && !a.sluice.exists() {
        bail!(
            "{} not found (build it: cargo build --release -p sluice)",
            a.sluice.display()
        );
    }
    let mut session = if kinds.iter().any(on_pair) {
        Some(scenarios::Session::new(&a, secs).context("setting up the test bed")?)
    } else {
        None
    };
    let mut router_header = None;
    let mut done = Vec::new();
    for k in kinds {
        println!("==> scenario {k:?}");
        if let (ScenarioKind::Rtt, Some(s)) = (k, session.as_mut()) {
            for sc in s.rtt().context("scenario Rtt")? {
                println!("{}", sc.markdown());
                done.push(sc);
            }
            continue;
        }
        if k == ScenarioKind::Dns {
            let scs = dnsbench::DnsBench::new(&a, secs)
                .context("setting up the DNS bed")
                .and_then(|mut d| {
                    let scs = d.scenarios();
                    router_header = Some(d.header());
                    scs
                })
                .context("scenario Dns")?;
            for sc in scs {
                println!("{}", sc.markdown());
                done.push(sc);
            }
            continue;
        }
        let sc = match (k, session.as_mut()) {
            (ScenarioKind::Pipeline, _) => pipeline(&a),
            (ScenarioKind::Forward, _) => {
                forward::RouterBench::new(&a, secs, forward::Plan::Forward)
                    .context("setting up the router bed")
                    .and_then(|mut f| {
                        let sc = f.scenario();
                        // After the run: the header records the load average it ran under.
                        router_header = Some(f.header());
                        sc
                    })
            }
            (ScenarioKind::Lb, _) => forward::RouterBench::new(&a, secs, forward::Plan::Lb)
                .context("setting up the router bed")
                .and_then(|mut f| {
                    let sc = f.lb_scenario();
                    // After the run: the header records the load average it ran under.
                    router_header = Some(f.header());
                    sc
                }),
            (ScenarioKind::Rxdrop, Some(s)) => s.rxdrop(),
            (ScenarioKind::Reflect, Some(s)) => s.reflect(),
            (ScenarioKind::Latency, Some(s)) => s.latency(),
            (ScenarioKind::LoadLatency, Some(s)) => s.load_latency(),
            (ScenarioKind::PaceCeiling, Some(s)) => s.pace_ceiling(),
            (ScenarioKind::Sweep, Some(s)) => s.sweep(),
            (ScenarioKind::Idle, Some(s)) => s.idle(),
            (ScenarioKind::Upgrade, Some(s)) => s.upgrade(),
            (ScenarioKind::Lever, Some(s)) => s.levers(&a.lever_app, &a.lever),
            (ScenarioKind::All | ScenarioKind::Rtt | ScenarioKind::Dns, _) | (_, None) => {
                unreachable!("kinds are expanded, bed built, rtt and dns handled above")
            }
        }
        .with_context(|| format!("scenario {k:?}"))?;
        println!("{}", sc.markdown());
        done.push(sc);
    }
    let stem = match a.scenario {
        ScenarioKind::Lever => format!("lever-{}", chrono_like_stamp()),
        _ => format!("bench-{}", chrono_like_stamp()),
    };
    let header = match (&session, router_header) {
        (Some(s), _) => s.header(),
        (None, Some(h)) => h,
        (None, None) => pipeline_header(&a),
    };
    sluice_bench::report::write_reports(&a.out, &stem, &header, &done)
        .with_context(|| format!("writing reports to {}", a.out.display()))?;
    if a.scenario != ScenarioKind::Lever {
        sluice_bench::report::write_reports(&a.out, "latest", &header, &done)?;
    }
    if let Some(s) = &session {
        s.plots(&a.out)?;
    }
    println!(
        "==> reports: {}/{stem}.md, {stem}.json (and latest.*), plots: {}/*.svg",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

/// Core the pipeline scenario's thread is pinned to (the DUT's core in the other scenarios).
const PIPELINE_CORE: usize = 0;

fn pipeline_budget(a: &BenchArgs) -> pipeline::Budget {
    let min_time = a.seconds.unwrap_or(if a.quick { 0.25 } else { 1.0 });
    pipeline::Budget {
        warmup: Duration::from_millis(if a.quick { 50 } else { 200 }),
        min_time: Duration::from_secs_f64(min_time),
        min_packets: if a.quick { 1_000_000 } else { 20_000_000 },
    }
}

fn pipeline(a: &BenchArgs) -> Result<sluice_bench::report::Scenario> {
    pipeline::scenario(&pipeline::Options {
        rounds: a.rounds,
        budget: pipeline_budget(a),
        core: Some(PIPELINE_CORE),
    })
}

/// Report header of a session without a test bed (only `pipeline`).
fn pipeline_header(a: &BenchArgs) -> String {
    let m = sluice_bench::report::Machine::probe();
    let b = pipeline_budget(a);
    format!(
        "# sluice benchmark\n\n- machine: Linux {}, {} × {}; no network: frames in memory\n\
         - sluice {}; {} rounds per subject, alternating; ≥ {:.2} s and ≥ {} packets per \
         measurement after {:.2} s warm-up; pinned to core {PIPELINE_CORE}\n{}",
        m.kernel,
        m.cpus,
        m.cpu_model,
        m.rev,
        a.rounds,
        b.min_time.as_secs_f64(),
        b.min_packets,
        b.warmup.as_secs_f64(),
        sluice_bench::report::load_line(),
    )
}

/// `YYYYmmdd-HHMMSS` in UTC, without a date crate.
fn chrono_like_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
