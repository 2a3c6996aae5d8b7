//! `sluice run`: preflight checks, sockets, steering, workers, stats, clean shutdown.
//!
//! Order of start-up: check privileges and the interface, open every AF_XDP socket (so a busy
//! queue fails before anything is attached), attach the XDP program, register the sockets in the
//! XSKMAP, insert the rules, start the workers. Shutdown reverses it: detach first (traffic goes
//! back to the kernel at once), then stop and join the workers, then print the final totals.

use crate::apps::{App, DropReason, drop::DropAll, reflect::Reflect};
use crate::cli::{AppKind, QueueSpec, RunArgs};
use crate::control::service::counters as counters_json;
use crate::control::{link, netlink::Netlink};
use crate::steer::{Action, Counters, L4Proto, Rule, SteerError, Steering, XdpMode};
use crate::sys;
use crate::worker::{self, Local, WorkerConfig, WorkerHandle};
use crate::xsk::{Census, KernelStats, XskConfig, XskError, XskQueue};
use serde_json::{Value, json};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why `sluice run` could not start or had to stop. Each message is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Missing capabilities.
    #[error(
        "not enough privileges: missing {missing} (run as root, or grant them, e.g. with setcap)"
    )]
    Privileges {
        /// Comma-separated capability names.
        missing: String,
    },
    /// The interface does not exist.
    #[error("no interface named {0:?} in this network namespace")]
    NoSuchInterface(String),
    /// The interface is administratively down.
    #[error("interface {0} is down (bring it up with `ip link set {0} up`)")]
    InterfaceDown(String),
    /// More queues asked for than exist.
    #[error("--queues {asked}: {iface} has only {has} RX queue(s)")]
    TooManyQueues {
        /// Interface.
        iface: String,
        /// Requested.
        asked: u32,
        /// Available.
        has: u32,
    },
    /// A bad flag value.
    #[error("invalid --{field}: {reason}")]
    Config {
        /// The flag.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// UMEM would exceed RLIMIT_MEMLOCK and CAP_IPC_LOCK is missing.
    #[error(
        "the UMEM needs {need} bytes of locked memory but RLIMIT_MEMLOCK is {limit}; raise it (ulimit -l) or grant CAP_IPC_LOCK"
    )]
    Memlock {
        /// Bytes needed.
        need: u64,
        /// Current limit.
        limit: u64,
    },
    /// Netlink query failed.
    #[error("querying interface {iface} over rtnetlink")]
    Netlink {
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// AF_XDP socket setup.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// XDP program load/attach/maps.
    #[error(transparent)]
    Steer(#[from] SteerError),
    /// Worker thread problems.
    #[error(transparent)]
    Worker(#[from] worker::WorkerError),
    /// A worker thread panicked.
    #[error("worker for queue {queue} died: {msg}")]
    WorkerDied {
        /// Queue.
        queue: u32,
        /// Panic message.
        msg: String,
    },
    /// Dropping privileges after start-up failed (the engine stops rather than run privileged).
    #[error("dropping privileges after start-up: {0}")]
    DropPrivileges(String),
    /// The control socket could not be set up (e.g. another engine serves the interface).
    #[error(transparent)]
    Control(#[from] crate::control::socket::ControlError),
    /// The rtnetlink mirror could not start.
    #[error("starting the rtnetlink mirror: {0}")]
    Mirror(String),
    /// The metrics endpoint could not start.
    #[error("serving metrics on {addr}")]
    Metrics {
        /// Address asked for.
        addr: std::net::SocketAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The steered interface disappeared.
    #[error("interface {0} was deleted; stopped")]
    InterfaceDeleted(String),
    /// Installing the signal handlers failed.
    #[error("installing SIGINT/SIGTERM handlers")]
    Signals(#[source] io::Error),
}

/// Bytes the kernel reserves in front of every frame in a UMEM frame (`XDP_PACKET_HEADROOM`).
const XDP_PACKET_HEADROOM: u32 = 256;

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Per-queue final counters.
    pub queues: Vec<(u32, Local, Census, KernelStats)>,
    /// XDP program counters at detach time.
    pub xdp: Counters,
}

/// Everything the preflight checks decided.
struct Plan {
    ifindex: u32,
    admin_gid: Option<u32>,
    queues: Vec<u32>,
    cores: Vec<Option<usize>>,
    xsk: XskConfig,
    rules: Vec<Rule>,
}

fn plan(args: &RunArgs) -> Result<Plan, RunError> {
    let xsk = args.xsk_config();
    xsk.validate()?;
    if !(args.stats_interval.is_finite() && args.stats_interval >= 0.0) {
        return Err(RunError::Config {
            field: "stats-interval",
            reason: format!("{} is not a number of seconds >= 0", args.stats_interval),
        });
    }
    if let Some(d) = args.duration
        && !(d.is_finite() && d > 0.0)
    {
        return Err(RunError::Config {
            field: "duration",
            reason: format!("{d} is not a positive number of seconds"),
        });
    }
    let mut rules = Vec::new();
    for (proto, list) in [(L4Proto::Udp, &args.udp), (L4Proto::Tcp, &args.tcp)] {
        if let Some(list) = list {
            rules.extend(list.0.iter().map(|&port| Rule {
                proto,
                port,
                action: Action::Redirect,
            }));
        }
    }
    if rules.is_empty() {
        return Err(RunError::Config {
            field: "udp",
            reason: "nothing to steer: give --udp PORTS and/or --tcp PORTS".into(),
        });
    }
    if rules.len() > sluice_ebpf::RULES_MAX_ENTRIES as usize {
        return Err(RunError::Config {
            field: "udp",
            reason: format!(
                "{} ports given; the rules map holds at most {}",
                rules.len(),
                sluice_ebpf::RULES_MAX_ENTRIES
            ),
        });
    }

    if let Some(name) = &args.user
        && nix::unistd::User::from_name(name).ok().flatten().is_none()
    {
        return Err(RunError::Config {
            field: "user",
            reason: format!("no user named {name:?}"),
        });
    }

    // Privileges, before touching anything.
    let eff = sys::effective_caps().unwrap_or(0);
    let missing = sys::missing_run_caps(eff);
    if !missing.is_empty() {
        return Err(RunError::Privileges {
            missing: missing
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }

    // The interface: exists, up, how many queues.
    let iface = &args.iface;
    let nl_err = |source| RunError::Netlink {
        iface: iface.clone(),
        source,
    };
    let mut nl = Netlink::open().map_err(nl_err)?;
    let info = link::get_link(&mut nl, iface)
        .map_err(nl_err)?
        .ok_or_else(|| RunError::NoSuchInterface(iface.clone()))?;
    if !info.admin_up {
        return Err(RunError::InterfaceDown(iface.clone()));
    }
    if !info.lower_up {
        log::warn!("{iface} has no carrier (peer down or cable out); waiting for traffic anyway");
    }
    // A frame must fit in a UMEM frame after the kernel's 256-byte XDP headroom; a longer one
    // would be dropped by the kernel, uncounted by sluice.
    let room = xsk
        .frame_size
        .saturating_sub(XDP_PACKET_HEADROOM + xsk.headroom);
    let longest = info.mtu + 14 + 8; // Ethernet header and two VLAN tags
    if longest > room {
        return Err(RunError::Config {
            field: "frame-size",
            reason: format!(
                "{} bytes hold frames up to {room} bytes, but {iface} has MTU {} (frames up to {longest} bytes): use --frame-size 4096{}",
                xsk.frame_size,
                info.mtu,
                if longest > 4096 - XDP_PACKET_HEADROOM {
                    " and a smaller MTU"
                } else {
                    ""
                }
            ),
        });
    }
    let has = match sys::ethtool_channels(iface) {
        Ok(ch) if ch.rx_queues() > 0 => ch.rx_queues(),
        _ => info.num_rx_queues.max(1),
    };
    let n = match args.queues {
        QueueSpec::All => has,
        QueueSpec::Count(n) if n > has => {
            return Err(RunError::TooManyQueues {
                iface: iface.clone(),
                asked: n,
                has,
            });
        }
        QueueSpec::Count(n) => n,
    };
    let queues: Vec<u32> = (0..n).collect();

    // Cores.
    let allowed = worker::allowed_cpus();
    let cores: Vec<Option<usize>> = match &args.cores {
        Some(list) => {
            let list = worker::parse_cpu_list(list).map_err(|reason| RunError::Config {
                field: "cores",
                reason,
            })?;
            if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(RunError::Config {
                    field: "cores",
                    reason: format!("CPU {bad} is not in this process's affinity mask {allowed:?}"),
                });
            }
            if list.len() < queues.len() {
                return Err(RunError::Config {
                    field: "cores",
                    reason: format!("{} CPU(s) listed for {} queue(s)", list.len(), queues.len()),
                });
            }
            list.into_iter().map(Some).take(queues.len()).collect()
        }
        None if allowed.is_empty() => vec![None; queues.len()],
        None => (0..queues.len())
            .map(|i| Some(allowed[i % allowed.len()]))
            .collect(),
    };

    // Locked memory for the UMEMs.
    let need = u64::from(xsk.frame_count) * u64::from(xsk.frame_size) * u64::from(n);
    let limit = sys::memlock_limit();
    if !sys::has_cap(eff, sys::Cap::IpcLock) && limit < need {
        return Err(RunError::Memlock { need, limit });
    }
    let admin_gid = match &args.admin_group {
        None => None,
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| RunError::Config {
                    field: "admin-group",
                    reason: format!("no group named {g:?}"),
                })?
                .gid
                .as_raw(),
        ),
    };
    Ok(Plan {
        ifindex: info.index,
        admin_gid,
        queues,
        cores,
        xsk,
        rules,
    })
}

fn make_app(kind: AppKind) -> Box<dyn App> {
    match kind {
        AppKind::Reflect => Box::new(Reflect::new()),
        AppKind::Drop => Box::new(DropAll::new()),
    }
}

/// A boxed app is an app (lets the worker stay generic while the CLI picks at run time).
impl App for Box<dyn App> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    #[inline]
    fn process(&mut self, batch: &mut crate::apps::Batch<'_, '_>) {
        (**self).process(batch)
    }
}

/// Run until SIGINT/SIGTERM or `--duration`, printing stats to `out`.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<Summary, RunError> {
    let plan = plan(args)?;
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).map_err(RunError::Signals)?;
    }

    // The control socket first: its name is the single-instance lock for the interface, so a
    // second engine fails here, naming the first, before it touches the queues or XDP.
    let control = crate::control::socket::ControlServer::bind(&args.iface, plan.admin_gid)?;

    let mut sockets = Vec::with_capacity(plan.queues.len());
    for &q in &plan.queues {
        sockets.push(XskQueue::open(&args.iface, q, &plan.xsk)?);
    }
    let zerocopy = sockets.first().is_some_and(|s| s.is_zerocopy());

    let mut steering = Steering::load_and_attach(&args.iface, args.xdp_mode)?;
    for s in &sockets {
        steering.register_socket(s.queue(), s.fd())?;
    }
    for r in &plan.rules {
        steering.set_rule(*r)?;
    }
    let granted: XdpMode = steering.granted_mode();
    let steering = Arc::new(std::sync::Mutex::new(Some(steering)));
    log::info!(
        "{}: app {} on {} queue(s), XDP {} mode, AF_XDP {} mode, {} rule(s), cores {:?}",
        args.iface,
        args.app,
        plan.queues.len(),
        granted,
        if zerocopy { "zero-copy" } else { "copy" },
        plan.rules.len(),
        plan.cores
    );

    // Everything privileged is done: attach, maps, sockets. Drop it all before any other thread
    // exists (capabilities are per thread; new threads inherit their creator's).
    sys::drop_privileges(args.user.as_deref()).map_err(RunError::DropPrivileges)?;
    log::info!(
        "privileges dropped: no capabilities left{}",
        args.user
            .as_deref()
            .map(|u| format!(", running as user {u}"))
            .unwrap_or_default()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let park = Arc::new(AtomicBool::new(false));
    let mut workers: Vec<WorkerHandle<Box<dyn App>>> = Vec::new();
    for (s, core) in sockets.into_iter().zip(plan.cores.iter().copied()) {
        let cfg = WorkerConfig {
            core,
            busy_poll: args.busy_poll,
            park: park.clone(),
        };
        match worker::spawn(s, make_app(args.app), cfg, stop.clone()) {
            Ok(h) => workers.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(e.into());
            }
        }
    }

    // The control plane, on threads spawned after the privilege drop.
    let mirror =
        crate::control::mirror::Mirror::start().map_err(|e| RunError::Mirror(e.to_string()))?;
    let link_events = mirror.events();
    let views = workers
        .iter()
        .map(|w| crate::control::service::WorkerView {
            queue: w.queue,
            core: w.core,
            shared: w.shared.clone(),
        })
        .collect();
    let service = Arc::new(crate::control::service::EngineService::new(
        crate::control::service::RunInfo {
            iface: args.iface.clone(),
            app: args.app.to_string(),
            xdp_mode: granted,
            zerocopy,
        },
        steering.clone(),
        views,
        Some(mirror),
        term.clone(),
    ));
    let control = control.spawn(service.clone())?;
    let metrics = match args.metrics {
        Some(addr) => Some(
            crate::control::metrics::MetricsServer::start(addr, service.clone())
                .map_err(|source| RunError::Metrics { addr, source })?,
        ),
        None => None,
    };

    let started = Instant::now();
    let interval =
        (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval));
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let mut reporter = Reporter::new(args.json, &workers);
    let mut next_report = interval.map(|i| started + i);
    let mut died: Option<RunError> = None;
    loop {
        if term.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if let Some(i) = workers.iter().position(|w| w.is_finished()) {
            let w = workers.remove(i);
            let queue = w.queue;
            let msg = w.join().err().unwrap_or_else(|| "exited early".into());
            died = Some(RunError::WorkerDied { queue, msg });
            break;
        }
        if let (Some(t), Some(i)) = (next_report, interval)
            && now >= t
        {
            let xdp = service.xdp_counters().unwrap_or_default();
            reporter.report(out, &workers, Some(&xdp), started);
            next_report = Some(t + i);
        }
        while let Ok(ev) = link_events.try_recv() {
            if ev.ifindex != plan.ifindex {
                continue;
            }
            use crate::control::mirror::LinkEventKind as K;
            match ev.kind {
                K::Down => {
                    if !park.swap(true, Ordering::Relaxed) {
                        log::warn!(
                            "{}: link down; workers parked until it comes back",
                            args.iface
                        );
                    }
                }
                K::Up => {
                    if park.swap(false, Ordering::Relaxed) {
                        log::info!("{}: link up; workers resumed", args.iface);
                    }
                }
                K::MtuChanged { old, new } => {
                    let room = plan
                        .xsk
                        .frame_size
                        .saturating_sub(XDP_PACKET_HEADROOM + plan.xsk.headroom);
                    if new + 22 > room {
                        log::warn!(
                            "{}: MTU changed from {old} to {new}; frames over {room} bytes no longer fit a UMEM frame and will be dropped by the kernel (restart with a larger --frame-size)",
                            args.iface
                        );
                    } else {
                        log::info!("{}: MTU changed from {old} to {new}", args.iface);
                    }
                }
                K::Deleted => {
                    died.get_or_insert(RunError::InterfaceDeleted(args.iface.clone()));
                }
            }
        }
        if died.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // Detach first: from here on the kernel gets every frame.
    let xdp = service.xdp_counters().unwrap_or_default();
    drop(steering.lock().unwrap_or_else(|e| e.into_inner()).take());
    control.stop();
    if let Some(m) = metrics {
        m.stop();
    }
    park.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut queues = Vec::new();
    for w in workers {
        let queue = w.queue;
        let shared = w.shared.clone();
        if let Err(msg) = w.join() {
            died.get_or_insert(RunError::WorkerDied { queue, msg });
        }
        queues.push((queue, shared.snapshot(), shared.census(), shared.kernel()));
    }
    let summary = Summary { queues, xdp };
    reporter.final_report(out, &summary, started);
    match died {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Formats the periodic and final stats, as text or JSON lines.
struct Reporter {
    json: bool,
    last: Vec<Local>,
    last_at: Instant,
}

impl Reporter {
    fn new<A>(json: bool, workers: &[WorkerHandle<A>]) -> Self {
        Reporter {
            json,
            last: vec![Local::default(); workers.len()],
            last_at: Instant::now(),
        }
    }

    fn report<A>(
        &mut self,
        out: &mut dyn Write,
        workers: &[WorkerHandle<A>],
        xdp: Option<&Counters>,
        started: Instant,
    ) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let snaps: Vec<Local> = workers.iter().map(|w| w.shared.snapshot()).collect();
        let mut total = Local::default();
        let mut total_prev = Local::default();
        for (s, p) in snaps.iter().zip(&self.last) {
            total.add(s);
            total_prev.add(p);
        }
        let elapsed = now.duration_since(started).as_secs_f64();
        let line = if self.json {
            let queues: Vec<Value> = workers
                .iter()
                .zip(snaps.iter().zip(&self.last))
                .map(|(w, (s, p))| {
                    let mut v = rates_json(s, p, dt);
                    v["queue"] = json!(w.queue);
                    v["core"] = json!(w.core);
                    v
                })
                .collect();
            let mut v = json!({
                "type": "stats",
                "elapsed_s": round3(elapsed),
                "interval_s": round3(dt),
                "total": rates_json(&total, &total_prev, dt),
                "queues": queues,
            });
            if let Some(x) = xdp {
                v["xdp"] = json!(x);
            }
            v.to_string()
        } else {
            let mut s = format!(
                "[{elapsed:7.1}s] total {}",
                rates_text(&total, &total_prev, dt)
            );
            if workers.len() > 1 {
                for (w, (c, p)) in workers.iter().zip(snaps.iter().zip(&self.last)) {
                    s.push_str(&format!(" | q{} {}", w.queue, rates_text(c, p, dt)));
                }
            }
            s
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        self.last = snaps;
        self.last_at = now;
    }

    fn final_report(&mut self, out: &mut dyn Write, sum: &Summary, started: Instant) {
        let elapsed = started.elapsed().as_secs_f64();
        let mut total = Local::default();
        for (_, l, _, _) in &sum.queues {
            total.add(l);
        }
        if self.json {
            let queues: Vec<Value> = sum
                .queues
                .iter()
                .map(|(q, l, c, k)| {
                    json!({"queue": q, "counters": counters_json(l), "census": c, "kernel": k})
                })
                .collect();
            let v = json!({
                "type": "final",
                "elapsed_s": round3(elapsed),
                "total": counters_json(&total),
                "queues": queues,
                "xdp": sum.xdp,
            });
            let _ = writeln!(out, "{v}");
        } else {
            let _ = writeln!(
                out,
                "final after {elapsed:.1}s: rx {} frames ({} bytes), tx {} frames, dropped {}{}",
                total.rx_packets,
                total.rx_bytes,
                total.tx_packets,
                total.dropped(),
                drops_text(&total)
            );
            for (q, l, c, k) in &sum.queues {
                let _ = writeln!(
                    out,
                    "  q{q}: rx {} tx {} dropped {}{}; frames: fill {} rx {} worker {} tx {} completion {} kernel {} of {}",
                    l.rx_packets,
                    l.tx_packets,
                    l.dropped(),
                    drops_text(l),
                    c.fill,
                    c.rx,
                    c.worker,
                    c.tx,
                    c.completion,
                    c.kernel,
                    c.total
                );
                if k.rx_ring_full + k.rx_dropped + k.rx_fill_ring_empty > 0 {
                    let _ = writeln!(
                        out,
                        "  q{q} kernel: rx_ring_full {} rx_dropped {} fill_ring_empty {}",
                        k.rx_ring_full, k.rx_dropped, k.rx_fill_ring_empty
                    );
                }
            }
            let x = &sum.xdp;
            let _ = writeln!(
                out,
                "  xdp: redirected {} passed {} passed_by_rule {} dropped_by_rule {} not_ip {} malformed {} redirect_fallback {}",
                x.redirected,
                x.passed,
                x.passed_by_rule,
                x.dropped_by_rule,
                x.not_ip,
                x.malformed,
                x.redirect_fallback
            );
        }
        let _ = out.flush();
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rates between two snapshots plus the counters, as one stats line's per-queue object.
fn rates_json(now: &Local, prev: &Local, dt: f64) -> Value {
    let mut v = crate::control::service::rates(now, prev, dt);
    v["counters"] = counters_json(now);
    v
}

fn rates_text(now: &Local, prev: &Local, dt: f64) -> String {
    let mpps = |a: u64, b: u64| (a - b) as f64 / dt / 1e6;
    let gbps = |a: u64, b: u64| (a - b) as f64 * 8.0 / dt / 1e9;
    let mut delta = *now;
    for (d, p) in delta.drops.iter_mut().zip(prev.drops) {
        *d -= p;
    }
    delta.tx_ring_full -= prev.tx_ring_full;
    delta.bad_desc -= prev.bad_desc;
    format!(
        "rx {:.3} Mpps {:.3} Gbps tx {:.3} Mpps {:.3} Gbps drop {}{}",
        mpps(now.rx_packets, prev.rx_packets),
        gbps(now.rx_bytes, prev.rx_bytes),
        mpps(now.tx_packets, prev.tx_packets),
        gbps(now.tx_bytes, prev.tx_bytes),
        delta.dropped(),
        drops_text(&delta)
    )
}

fn drops_text(l: &Local) -> String {
    let mut parts: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| l.drops[r.index()] > 0)
        .map(|r| format!("{} {}", r.name(), l.drops[r.index()]))
        .collect();
    if l.tx_ring_full > 0 {
        parts.push(format!("tx_ring_full {}", l.tx_ring_full));
    }
    if l.bad_desc > 0 {
        parts.push(format!("bad_desc {}", l.bad_desc));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn drops_text_lists_nonzero_reasons() {
        let mut l = Local::default();
        assert_eq!(drops_text(&l), "");
        l.drops[DropReason::Truncated.index()] = 3;
        l.tx_ring_full = 1;
        assert_eq!(drops_text(&l), " (truncated 3, tx_ring_full 1)");
    }

    #[test]
    fn rates_are_per_second() {
        let prev = Local::default();
        let now = Local {
            rx_packets: 2_000_000,
            rx_bytes: 128_000_000,
            ..Default::default()
        };
        let v = rates_json(&now, &prev, 2.0);
        assert_eq!(v["rx_mpps"], json!(1.0));
        assert_eq!(v["rx_gbps"], json!(0.512));
        assert_eq!(v["counters"]["drops"]["truncated"], json!(0));
    }
}
