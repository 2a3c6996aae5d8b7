//! An engine: start-up, supervision and shutdown of the workers on one interface.
//!
//! Start-up order: check the configuration and the host (preflight), take the interface's
//! control socket (the single-instance lock), open every AF_XDP socket (so a busy queue fails
//! before anything is attached), attach the XDP program, register the sockets in the XSKMAP,
//! insert the rules, drop every privilege, start the workers and the control plane. Shutdown
//! reverses it: detach first (traffic goes back to the kernel at once), then stop and join the
//! workers, then report the final totals.
//!
//! ```no_run
//! use sluice::apps::reflect::Reflect;
//! use sluice::{EngineConfig, L4Proto};
//! use std::time::Duration;
//!
//! let cfg = EngineConfig::new("veth0")
//!     .steer(L4Proto::Udp, &"9000".parse().unwrap())
//!     .duration(Duration::from_secs(10));
//! let summary = sluice::engine::run(&cfg, |_queue| Reflect::new(), &mut std::io::stdout())?;
//! println!("{} frames", summary.total().rx_packets);
//! # Ok::<(), sluice::engine::RunError>(())
//! ```

mod preflight;
mod report;
mod supervisor;

use crate::apps::App;
use crate::config::{ConfigError, EngineConfig};
use crate::control::{self, ControlPlane, EngineFacts, RunInfo, WorkerView};
use crate::steer::{Counters, SteerError, SteeringSet, XdpMode};
use crate::sys;
use crate::worker::{self, Local, WorkerConfig, WorkerHandle};
use crate::xsk::{Census, KernelStats, XskError, XskQueue};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// A setting with a bad value, or one the host cannot satisfy.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    /// The control socket could not be claimed (e.g. another engine serves the interface).
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// The control plane (mirror, control socket, metrics) could not start.
    #[error(transparent)]
    ControlStart(#[from] control::StartError),
    /// The steered interface disappeared.
    #[error("interface {0} was deleted; stopped")]
    InterfaceDeleted(String),
    /// Installing the signal handlers failed.
    #[error("installing SIGINT/SIGTERM handlers")]
    Signals(#[source] io::Error),
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Per-queue final counters: queue, counters, frame census, the kernel's socket counters.
    pub queues: Vec<(u32, Local, Census, KernelStats)>,
    /// XDP program counters at detach time.
    pub xdp: Counters,
}

impl Summary {
    /// The counters summed over every queue.
    pub fn total(&self) -> Local {
        let mut t = Local::default();
        for (_, l, _, _) in &self.queues {
            t.add(l);
        }
        t
    }
}

/// A running engine: workers on every configured queue, the XDP program attached, the control
/// socket serving. [`Engine::run`] supervises it until it is told to stop, then shuts it down.
pub struct Engine<A: App> {
    cfg: EngineConfig,
    ifindexes: Vec<u32>,
    workers: Vec<WorkerHandle<A>>,
    steering: Arc<Mutex<Option<SteeringSet>>>,
    control: ControlPlane,
    term: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    park: Arc<AtomicBool>,
}

impl<A: App + 'static> Engine<A> {
    /// Check the host, attach, bind, drop privileges and start one worker per queue, each with
    /// the app `make_app(queue)` returns. Nothing is left attached if this fails.
    ///
    /// Needs the privileges `sluice run` needs (see the README); holds none when it returns.
    pub fn start(cfg: &EngineConfig, mut make_app: impl FnMut(u32) -> A) -> Result<Self, RunError> {
        let plan = preflight::plan(cfg)?;
        // The control socket first: its name is the single-instance lock for the interface, so a
        // second engine fails here, naming the first, before it touches the queues or XDP.
        let claim = ControlPlane::claim(&cfg.ifaces, plan.admin_gid)?;

        let mut sockets = Vec::with_capacity(plan.queues.len());
        for &q in &plan.queues {
            let ifaces: Vec<&str> = cfg.ifaces.iter().map(String::as_str).collect();
            sockets.push(XskQueue::open_ports(&ifaces, q, &plan.xsk)?);
        }
        let zerocopy = sockets.first().is_some_and(|s| s.is_zerocopy());

        let mut steering = SteeringSet::attach(&cfg.ifaces, cfg.xdp_mode)?;
        for s in &sockets {
            for port in 0..s.port_count() {
                steering
                    .port_mut(port)
                    .register_socket(s.queue(), s.fd_of(port))?;
            }
        }
        for r in &plan.rules {
            steering.set_rule(*r)?;
        }
        let granted: XdpMode = steering.granted_mode();
        let steering = Arc::new(Mutex::new(Some(steering)));

        // Everything privileged is done: attach, maps, sockets. Drop it all before any other
        // thread exists (capabilities are per thread; new threads inherit their creator's).
        sys::drop_privileges(cfg.user.as_deref()).map_err(RunError::DropPrivileges)?;
        log::info!(
            "privileges dropped: no capabilities left{}",
            cfg.user
                .as_deref()
                .map(|u| format!(", running as user {u}"))
                .unwrap_or_default()
        );

        let stop = Arc::new(AtomicBool::new(false));
        let park = Arc::new(AtomicBool::new(false));
        let mut workers: Vec<WorkerHandle<A>> = Vec::new();
        let mut app_name = "";
        for (s, core) in sockets.into_iter().zip(plan.cores.iter().copied()) {
            let wcfg = WorkerConfig {
                core,
                busy_poll: cfg.busy_poll,
                park: park.clone(),
            };
            let app = make_app(s.queue());
            app_name = app.name();
            match worker::spawn(s, app, wcfg, stop.clone()) {
                Ok(h) => workers.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
        log::info!(
            "{}: app {app_name} on {} queue(s), XDP {granted} mode, AF_XDP {} mode, {} rule(s), cores {:?}",
            cfg.ifaces.join("+"),
            plan.queues.len(),
            if zerocopy { "zero-copy" } else { "copy" },
            plan.rules.len(),
            plan.cores
        );

        // The control plane, on threads spawned after the privilege drop.
        let term = Arc::new(AtomicBool::new(false));
        let workers_view = workers
            .iter()
            .map(|w| WorkerView {
                queue: w.queue,
                core: w.core,
                shared: w.shared.clone(),
            })
            .collect();
        let facts = EngineFacts {
            info: RunInfo {
                ports: cfg.ifaces.clone(),
                app: app_name.to_string(),
                xdp_mode: granted,
                zerocopy,
            },
            steering: steering.clone(),
            workers: workers_view,
            term: term.clone(),
        };
        let control = ControlPlane::start(claim, facts, cfg.metrics)?;
        Ok(Engine {
            cfg: cfg.clone(),
            ifindexes: plan.ifindexes,
            workers,
            steering,
            control,
            term,
            stop,
            park,
        })
    }

    /// The flag that stops the engine: set it (from a signal handler, another thread, or the
    /// control socket's `shutdown`) and [`Engine::run`] shuts down and returns.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.term.clone()
    }

    /// Supervise until the stop flag is set, the configured duration has passed, a worker dies
    /// or the interface is deleted; print stats to `out` as configured; then shut down (detach
    /// first) and print the final totals.
    pub fn run(mut self, out: &mut dyn Write) -> Result<Summary, RunError> {
        let started = Instant::now();
        let interval = self.cfg.stats_interval;
        let deadline = self.cfg.duration.map(|d| started + d);
        let mut reporter =
            report::Reporter::new(self.cfg.json, &self.workers, self.cfg.ifaces.clone());
        let mut next_report = interval.map(|i| started + i);
        let ports = self
            .cfg
            .ifaces
            .iter()
            .cloned()
            .zip(self.ifindexes.iter().copied());
        let mut supervisor =
            supervisor::LinkSupervisor::new(ports.collect(), &self.cfg.xsk, self.park.clone());
        let mut died: Option<RunError> = None;
        while died.is_none() && !self.term.load(Ordering::Relaxed) {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if let Some(i) = self.workers.iter().position(|w| w.is_finished()) {
                let w = self.workers.remove(i);
                let queue = w.queue;
                let msg = w.join().err().unwrap_or_else(|| "exited early".into());
                died = Some(RunError::WorkerDied { queue, msg });
                break;
            }
            if let (Some(t), Some(i)) = (next_report, interval)
                && now >= t
            {
                let xdp = self.control.xdp_counters().unwrap_or_default();
                reporter.report(out, &self.workers, Some(&xdp), started);
                next_report = Some(t + i);
            }
            while let Ok(ev) = self.control.link_events().try_recv() {
                if let Some(e) = supervisor.on_event(&ev) {
                    died.get_or_insert(e);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let summary = self.shutdown(&mut died);
        reporter.final_report(out, &summary, started);
        match died {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Detach first (from then on the kernel gets every frame), stop the control plane, then
    /// stop and join the workers and collect their final counters.
    fn shutdown(self, died: &mut Option<RunError>) -> Summary {
        let xdp = self.control.xdp_counters().unwrap_or_default();
        drop(
            self.steering
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        self.control.stop();
        self.park.store(false, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        let mut queues = Vec::new();
        for w in self.workers {
            let queue = w.queue;
            let shared = w.shared.clone();
            if let Err(msg) = w.join() {
                died.get_or_insert(RunError::WorkerDied { queue, msg });
            }
            queues.push((queue, shared.snapshot(), shared.census(), shared.kernel()));
        }
        Summary { queues, xdp }
    }
}

/// Start an engine with `make_app(queue)` on every queue, stop it on SIGINT/SIGTERM (or after
/// the configured duration), printing stats to `out`: what `sluice run` does.
pub fn run<A: App + 'static>(
    cfg: &EngineConfig,
    make_app: impl FnMut(u32) -> A,
    out: &mut dyn Write,
) -> Result<Summary, RunError> {
    cfg.validate()?;
    let engine = Engine::start(cfg, make_app)?;
    let term = engine.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).map_err(RunError::Signals)?;
    }
    engine.run(out)
}
