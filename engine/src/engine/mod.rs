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
//! let summary = sluice::engine::run(&cfg, |_ctx| Reflect::new(), &mut std::io::stdout())?;
//! println!("{} frames", summary.total().rx_packets);
//! # Ok::<(), sluice::engine::RunError>(())
//! ```

mod coexist;
mod preflight;
mod report;
mod supervisor;
mod takeover;

use crate::apps::App;
use crate::apps::dns::app::{DnsWorkerStats, ZonesHandle};
use crate::apps::lb::config::ConntrackConfig;
use crate::apps::lb::conntrack::ConnTrackConfig;
use crate::apps::lb::{LbHandle, LbWorkerStats};
use crate::config::{ConfigError, EngineConfig};
use crate::control::dns::{DnsService, DnsSetup};
use crate::control::fib_updater::FibUpdater;
use crate::control::health::HealthParams;
use crate::control::lb::{LbService, LbSetup};
use crate::control::takeover::TapInfo;
use crate::control::{self, ControlPlane, EngineFacts, RunInfo, WorkerView};
use crate::fib::{Broadcasts, FibHandle};
use crate::steer::{Counters, SteerError, SteerMode, SteeringSet, XdpMode};
use crate::sys;
use crate::worker::{self, KernelPath, Local, WorkerConfig, WorkerHandle};
use crate::xsk::{Census, KernelStats, XskError, XskQueue};
use std::io::{self, Write};
use std::os::fd::AsFd;
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
    /// The load balancer's configuration file is unreadable or wrong.
    #[error(transparent)]
    LbConfig(#[from] crate::apps::lb::config::LbConfigError),
    /// A zone file is unreadable or wrong.
    #[error(transparent)]
    Zones(#[from] crate::apps::dns::zone::ZoneError),
    /// The DNS TCP port could not be bound.
    #[error("binding TCP port {port} for DNS over TCP (is another DNS server running?)")]
    DnsTcp {
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The dns app's control side could not start.
    #[error("starting DNS over TCP")]
    Dns(#[source] io::Error),
    /// The load balancer's control side could not start.
    #[error("starting the load balancer: {0}")]
    Lb(#[from] crate::control::lb::LbStartError),
    /// The forwarding table could not be kept.
    #[error("starting the forwarding table's updater: {0}")]
    Fib(String),
    /// The kernel path (a TAP device) could not be set up.
    #[error("setting up the path into the kernel's stack (TAP device {tap})")]
    KernelPath {
        /// The device.
        tap: String,
        /// What failed.
        #[source]
        source: crate::error::SyscallError,
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
    /// A hot upgrade (`--takeover`) could not take the data plane over; the running engine
    /// keeps serving.
    #[error("hot upgrade: {0}")]
    Takeover(String),
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

/// One of the engine's interfaces, as an app sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// Its MTU when the engine started.
    pub mtu: u32,
}

/// What an app factory knows when it makes the app of one queue.
#[derive(Clone, Debug)]
pub struct AppContext<'a> {
    /// The queue index the app's worker serves (on every port).
    pub queue: u32,
    /// The ports, in [`crate::batch::PortId`] order.
    pub ports: &'a [PortInfo],
    /// The forwarding table built from the kernel's, kept current, when the engine forwards
    /// ([`EngineConfig::forward`]) or load-balances ([`EngineConfig::lb`]).
    pub fib: Option<&'a FibHandle>,
    /// The load balancer's table and this worker's figures, when the engine load-balances.
    pub lb: Option<LbContext<'a>>,
    /// The zones and this worker's counters, when the engine answers DNS.
    pub dns: Option<DnsContext<'a>>,
    /// The host's IPv4 broadcast addresses when the engine started (the kernel's `local`
    /// broadcast routes): a responder answers no packet to or from one.
    pub broadcasts: &'a Broadcasts,
}

/// What a DNS app of one queue is given.
#[derive(Clone, Debug)]
pub struct DnsContext<'a> {
    /// The zones, swapped on reload.
    pub zones: &'a ZonesHandle,
    /// Where this worker publishes its outcome counters.
    pub stats: Arc<DnsWorkerStats>,
}

/// What a load-balancing app of one queue is given.
#[derive(Clone, Debug)]
pub struct LbContext<'a> {
    /// The VIPs and backends, kept current by the control plane.
    pub table: &'a LbHandle,
    /// Where this worker publishes its connection-table figures.
    pub stats: Arc<LbWorkerStats>,
    /// The connection table's size and timeouts (with a seed of this worker's own).
    pub conntrack: ConnTrackConfig,
}

/// A running engine: workers on every configured queue, the XDP program attached, the control
/// socket serving. [`Engine::run`] supervises it until it is told to stop, then shuts it down.
pub struct Engine<A: App> {
    cfg: EngineConfig,
    ifindexes: Vec<u32>,
    workers: Vec<WorkerHandle<A>>,
    steering: Arc<Mutex<Option<SteeringSet>>>,
    control: ControlPlane,
    fib: Option<FibUpdater>,
    lb: Option<Arc<LbService>>,
    dns: Option<Arc<DnsService>>,
    /// Set by SIGHUP: re-read the load balancer's file.
    reload: Arc<AtomicBool>,
    /// The TAP device of the kernel path (kept open: closing it removes the device).
    _tap: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    term: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    park: Arc<AtomicBool>,
    /// What a hot upgrade passes on, and where successors' connections arrive.
    handover: takeover::Held,
    /// Each worker's configuration, to restart it after a failed hand-over.
    wcfgs: Vec<WorkerConfig>,
    /// Set once a successor owns the data plane: shut down without detaching.
    handed_over: bool,
}

impl<A: App + 'static> Engine<A> {
    /// Check the host, attach, bind, drop privileges and start one worker per queue, each with
    /// the app `make_app` returns for its [`AppContext`]. Nothing is left attached if this
    /// fails.
    ///
    /// Needs the privileges `sluice run` needs (see the README); holds none when it returns.
    pub fn start(
        cfg: &EngineConfig,
        make_app: impl FnMut(&AppContext<'_>) -> A,
    ) -> Result<Self, RunError> {
        Self::start_with_stop(cfg, make_app, Arc::new(AtomicBool::new(false)))
    }

    /// [`Engine::start`] with the stop flag given: one a signal handler already sets, so a
    /// SIGTERM that arrives during start-up stops the engine as soon as it runs.
    pub fn start_with_stop(
        cfg: &EngineConfig,
        mut make_app: impl FnMut(&AppContext<'_>) -> A,
        term: Arc<AtomicBool>,
    ) -> Result<Self, RunError> {
        let plan = preflight::plan(cfg)?;
        let mut successor = None;
        let mut passed_metrics = None;
        let (claim, sockets, mut steering, tap, dns_tcp) = if cfg.takeover {
            let t = takeover::Successor::acquire(cfg, &plan)?;
            // What the app owned in the predecessor: the TAP device (forward) and the DNS TCP
            // listener. Their settings (forwarding and rp_filter on the TAP) stay as made.
            let tap = t.passed.tap.map(|(fd, info)| {
                log::info!("kernel path: TAP device {} (passed on)", info.name);
                let fd = Arc::new(fd);
                let path = KernelPath::new(fd.clone(), crate::wire::MacAddr(info.mac));
                (fd, path, info)
            });
            let dns_tcp = t.passed.dns_tcp.map(std::net::TcpListener::from);
            passed_metrics = t.passed.metrics;
            let parts = (t.claim, t.sockets, t.steering, tap, dns_tcp);
            successor = Some(t.conn);
            parts
        } else {
            // The control socket first: its name is the single-instance lock for the
            // interface, so a second engine fails here, naming the first, before it touches
            // the queues or XDP.
            let claim = ControlPlane::claim(&cfg.ifaces, plan.admin_gid, cfg.ctl)?;

            let mut sockets = Vec::with_capacity(plan.queues.len());
            for &q in &plan.queues {
                let ifaces: Vec<&str> = cfg.ifaces.iter().map(String::as_str).collect();
                sockets.push(XskQueue::open_ports(&ifaces, q, &plan.xsk)?);
            }

            let mut steering =
                SteeringSet::attach(&cfg.ifaces, cfg.xdp_mode).map_err(coexist::explain)?;
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
            if cfg.forward {
                steering.set_mode(SteerMode::Forward)?;
            }
            // The kernel path (forwarding): a TAP device, made while we may.
            let tap = if cfg.forward {
                Some(kernel_path(cfg)?)
            } else {
                None
            };
            // DNS over TCP: the port may be privileged, so bound now.
            let dns_tcp = match cfg.dns_port() {
                Some(port) => Some(bind_dns_tcp(port)?),
                None => None,
            };
            (claim, sockets, steering, tap, dns_tcp)
        };
        // The metrics listener: the predecessor's if it served the same `--metrics` address
        // (a hot upgrade: the port is never free, so no scrape is refused), else bound here,
        // while privileges last.
        let metrics_listener = match cfg.metrics {
            None => None,
            Some(addr) => match passed_metrics {
                Some((fd, was)) if was == addr => {
                    log::info!("metrics: serving {addr} on the listener passed on");
                    Some(std::net::TcpListener::from(fd))
                }
                _ => Some(ControlPlane::bind_metrics(addr)?),
            },
        };
        let zerocopy = sockets.first().is_some_and(|s| s.is_zerocopy());
        // What a successor will need (a hot upgrade): duplicates of every queue's fds, of
        // the listening control sockets and of what the app and the metrics endpoint own,
        // taken while they are still ours to borrow.
        let app_fds = takeover::AppFds {
            tap: tap.as_ref().map(|(fd, _, info)| (fd.as_fd(), info.clone())),
            dns_tcp: dns_tcp.as_ref().map(AsFd::as_fd),
            metrics: metrics_listener
                .as_ref()
                .zip(cfg.metrics)
                .map(|(l, addr)| (l.as_fd(), addr)),
        };
        let handover = takeover::Held::new(cfg, &plan, &claim, &sockets, app_fds)?;
        let granted: XdpMode = steering.granted_mode();
        let _ = &mut steering;
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

        // The kernel's view, and the forwarding table built from it, before the workers that
        // read it start.
        let mirror = ControlPlane::start_mirror()?;
        let ports: Vec<PortInfo> = cfg
            .ifaces
            .iter()
            .zip(&plan.ifindexes)
            .zip(&plan.mtus)
            .map(|((iface, &ifindex), &mtu)| PortInfo {
                iface: iface.clone(),
                ifindex,
                mtu,
            })
            .collect();
        // Per port, whether its link is down: kept by the FIB updater (forwarding) from the same
        // snapshots as the table, so workers divert frames for a dead port to the kernel.
        let ports_down: Arc<[AtomicBool]> =
            cfg.ifaces.iter().map(|_| AtomicBool::new(false)).collect();
        let fib = if cfg.forward || cfg.lb.is_some() {
            Some(
                FibUpdater::spawn(
                    mirror.watch(),
                    plan.ifindexes.clone(),
                    Some(ports_down.clone()),
                )
                .map_err(|e| RunError::Fib(e.to_string()))?,
            )
        } else {
            None
        };
        let fib_handle = fib.as_ref().map(FibUpdater::handle);

        // The load balancer: its first table and the VIP map, before the workers and before
        // the XDP program starts steering by VIP.
        let lb = match (&plan.lb, &fib_handle) {
            (Some((path, lb_cfg)), Some(fib)) => {
                let stats = plan
                    .queues
                    .iter()
                    .map(|&q| (q, Arc::new(LbWorkerStats::default())))
                    .collect();
                let service = LbService::new(LbSetup {
                    path: path.clone(),
                    config: lb_cfg.clone(),
                    steering: steering.clone(),
                    fib: fib.clone(),
                    stats,
                    adopted: cfg.takeover,
                })?;
                // (A successor's program is in lb mode already.)
                if !cfg.takeover {
                    steering
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_mut()
                        .map(|s| s.set_mode(SteerMode::Lb))
                        .transpose()?;
                }
                Some((service, lb_cfg.clone()))
            }
            _ => None,
        };

        let dns = match (plan.dns, dns_tcp) {
            (Some(zones), Some(tcp)) => Some(
                DnsService::start(DnsSetup {
                    paths: cfg.dns.clone(),
                    zones,
                    tcp,
                    stats: plan
                        .queues
                        .iter()
                        .map(|&q| (q, Arc::new(DnsWorkerStats::default())))
                        .collect(),
                    adopted: cfg.takeover,
                })
                .map_err(RunError::Dns)?,
            ),
            _ => None,
        };

        let broadcasts = Broadcasts::from_snapshot(&mirror.snapshot());
        let stop = Arc::new(AtomicBool::new(false));
        let park = Arc::new(AtomicBool::new(false));
        let mut workers: Vec<WorkerHandle<A>> = Vec::new();
        let mut app_name = "";
        let mut prepared = Vec::with_capacity(sockets.len());
        for (s, core) in sockets.into_iter().zip(plan.cores.iter().copied()) {
            let wcfg = WorkerConfig {
                core,
                busy_poll: cfg.busy_poll,
                park: park.clone(),
                kernel: tap.as_ref().map(|(_, path, _)| path.clone()),
                ports_down: Some(ports_down.clone()),
            };
            let queue = s.queue();
            let lb_context = lb.as_ref().map(|(service, lb_cfg)| LbContext {
                table: service.table(),
                stats: service.worker_stats(queue),
                conntrack: conntrack_config(&lb_cfg.conntrack),
            });
            let app = make_app(&AppContext {
                queue,
                ports: &ports,
                fib: fib_handle.as_ref(),
                lb: lb_context,
                dns: dns.as_ref().map(|d| DnsContext {
                    zones: d.zones(),
                    stats: d.worker_stats(queue),
                }),
                broadcasts: &broadcasts,
            });
            app_name = app.name();
            prepared.push((s, app, wcfg));
        }
        // A successor takes the rings over only now, with everything else ready: the
        // predecessor's workers stop here and ours start right after.
        if let Some(conn) = successor {
            let mut queues: Vec<&mut XskQueue> = prepared.iter_mut().map(|(q, _, _)| q).collect();
            takeover::Successor::commit(&conn, &mut queues)?;
            if let Some(s) = steering.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                s.own_links();
            }
            // Ours now: the VIP map follows this engine's configuration.
            if let Some((service, _)) = &lb
                && let Err(e) = service.resume_steering()
            {
                log::error!("lb: bringing the VIP map in line after the hand-over: {e}");
            }
            if let Some(d) = &dns {
                d.resume_tcp();
            }
        }
        let mut wcfgs = Vec::with_capacity(prepared.len());
        for (s, app, wcfg) in prepared {
            wcfgs.push(wcfg.clone());
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
                nic: plan.nic.clone(),
            },
            steering: steering.clone(),
            workers: workers_view,
            term: term.clone(),
            lb: lb.as_ref().map(|(service, _)| service.clone()),
            dns: dns.clone(),
            takeover: Some(handover.sender()),
        };
        let metrics = metrics_listener.map(|l| (l, cfg.metrics_limits));
        let control = ControlPlane::start(claim, facts, mirror, metrics)?;
        if let Some((service, lb_cfg)) = &lb {
            service.start_threads(HealthParams::from(lb_cfg.health))?;
        }
        let reload = Arc::new(AtomicBool::new(false));
        if lb.is_some() || dns.is_some() {
            signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
                .map_err(RunError::Signals)?;
        }
        Ok(Engine {
            cfg: cfg.clone(),
            ifindexes: plan.ifindexes,
            workers,
            steering,
            control,
            fib,
            lb: lb.map(|(service, _)| service),
            dns,
            reload,
            _tap: tap.map(|(fd, _, _)| fd),
            term,
            stop,
            park,
            handover,
            wcfgs,
            handed_over: false,
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
        let mut checksums = report::ChecksumWatch::new(self.cfg.ifaces.clone());
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
            if self.reload.swap(false, Ordering::Relaxed)
                && let Some(result) = self.control.reload()
            {
                match result {
                    Ok(_) => log::info!("SIGHUP: configuration reloaded"),
                    Err(e) => log::error!("SIGHUP: reload refused, the running set stays: {e}"),
                }
            }
            checksums.check(self.workers.iter().map(|w| w.shared.snapshot()));
            if let Some(conn) = self.handover.next_request() {
                match self.hand_over(conn) {
                    Ok(()) => {
                        self.handed_over = true;
                        break;
                    }
                    Err(reason) => {
                        log::warn!("hot upgrade did not happen, still serving: {reason}");
                    }
                }
            }
            while let Ok(ev) = self.control.link_events().try_recv() {
                if let Some(e) = supervisor.on_event(&ev) {
                    died.get_or_insert(e);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let summary = self.shutdown(&mut died);
        checksums.check(summary.queues.iter().map(|q| q.1));
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
        {
            let mut steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
            if self.handed_over {
                // The successor holds the links: ours go without detaching anything.
                if let Some(s) = steering.as_mut() {
                    s.release();
                }
                log::info!("handed over: XDP stays attached, the successor serves");
            }
            drop(steering.take());
        }
        self.control.stop();
        if let Some(lb) = &self.lb {
            lb.stop();
        }
        if let Some(dns) = &self.dns {
            dns.stop();
        }
        if let Some(f) = self.fib {
            let _ = f.stop();
        }
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
        for (queue, shared) in self.handover.frozen() {
            queues.push((queue, shared.snapshot(), shared.census(), shared.kernel()));
        }
        Summary { queues, xdp }
    }
}

/// Create the TAP device of the kernel path and let the kernel forward what comes in on it:
/// forwarding on, reverse-path filtering off (frames from anywhere arrive on it), for IPv4 and
/// IPv6. Warns about ports where forwarding is off (the kernel will not forward there either).
fn kernel_path(
    cfg: &EngineConfig,
) -> Result<(Arc<std::os::fd::OwnedFd>, KernelPath, TapInfo), RunError> {
    let name: String = format!("sk-{}", cfg.iface()).chars().take(15).collect();
    let fail = |source| RunError::KernelPath {
        tap: name.clone(),
        source,
    };
    let tap = sys::create_tap(&name).map_err(fail)?;
    for (key, value) in [
        ("ipv4/conf/{}/forwarding", "1"),
        ("ipv4/conf/{}/rp_filter", "0"),
        ("ipv6/conf/{}/forwarding", "1"),
    ] {
        let path = format!("/proc/sys/net/{}", key.replace("{}", &tap.name));
        std::fs::write(&path, value)
            .map_err(|e| fail(crate::error::SyscallError::new("write(/proc/sys/net/…)", e)))?;
    }
    if std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
        .is_ok_and(|v| v.trim() == "1")
    {
        log::warn!(
            "net.ipv4.conf.all.rp_filter is 1 (strict): frames handed to the kernel through {} may be dropped as martians; use 2 (loose) or 0",
            tap.name
        );
    }
    for iface in &cfg.ifaces {
        for family in ["ipv4", "ipv6"] {
            let key = format!("/proc/sys/net/{family}/conf/{iface}/forwarding");
            if std::fs::read_to_string(&key).is_ok_and(|v| v.trim() == "0") {
                log::warn!(
                    "{iface}: {family} forwarding is off ({key} = 0): sluice forwards nothing that arrives there, and neither does the kernel"
                );
            }
        }
    }
    log::info!("kernel path: TAP device {}", tap.name);
    let mac = crate::wire::MacAddr(tap.mac);
    let info = TapInfo {
        name: tap.name,
        mac: tap.mac,
    };
    let fd = Arc::new(tap.fd);
    Ok((fd.clone(), KernelPath::new(fd, mac), info))
}

/// The DNS-over-TCP listener on `port`: dual-stack `[::]`, or `0.0.0.0` where IPv6 is off.
fn bind_dns_tcp(port: u16) -> Result<std::net::TcpListener, RunError> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
    TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|e| match e.raw_os_error() {
            Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) => {
                TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            }
            _ => Err(e),
        })
        .map_err(|source| RunError::DnsTcp { port, source })
}

/// A worker's connection-table settings from the file's `[conntrack]`, with a seed of its own
/// (random: the index hash must not be predictable from outside, see
/// [`crate::apps::lb::conntrack`]).
fn conntrack_config(c: &ConntrackConfig) -> ConnTrackConfig {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    ConnTrackConfig {
        capacity: c.capacity,
        tcp_timeout_ms: u64::from(c.tcp_idle_secs) * 1000,
        udp_timeout_ms: u64::from(c.udp_idle_secs) * 1000,
        seed,
        ..ConnTrackConfig::default()
    }
}

/// Start an engine with `make_app(queue)` on every queue, stop it on SIGINT/SIGTERM (or after
/// the configured duration), printing stats to `out`: what `sluice run` does.
pub fn run<A: App + 'static>(
    cfg: &EngineConfig,
    make_app: impl FnMut(&AppContext<'_>) -> A,
    out: &mut dyn Write,
) -> Result<Summary, RunError> {
    // (The configuration is checked by the preflight, first thing in start.)
    // Handlers first: a signal during start-up must not kill the process half-way (it would
    // detach anyway, but print no totals and exit with the signal).
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).map_err(RunError::Signals)?;
    }
    Engine::start_with_stop(cfg, make_app, term)?.run(out)
}
