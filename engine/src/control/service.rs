//! The running engine as the control socket and the metrics endpoint see it: answers control
//! requests ([`Handler`]) and metric scrapes ([`MetricsSource`]) from the workers' published
//! counters, the steering maps and the rtnetlink mirror.
//!
//! It must never block a worker: everything it reads is published by the workers with plain
//! stores, and the only lock it takes (the steering maps) is never touched by a worker.

use super::capture;
use super::dns::DnsService;
use super::lb::{BackendHealth, LbService};
use super::metrics::{
    BackendMetrics, DnsMetrics, LbMetrics, MetricsSnapshot, MetricsSource, QueueMetrics,
};
use super::mirror::MirrorHandle;
use super::proto::{Request, RulesRequest};
use super::socket::{Handler, HandlerError, Peer};
use crate::steer::{Action, Counters, Rule, SteeringSet, XdpMode};
use crate::worker::stats::rates_json;
use crate::worker::{Local, Shared};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One worker as the service sees it.
pub struct WorkerView {
    /// Queue index.
    pub queue: u32,
    /// Core it is pinned to.
    pub core: Option<usize>,
    /// Its published counters.
    pub shared: Arc<Shared>,
}

/// Static facts about the run, for `status`.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Interfaces (ports), in port order.
    pub ports: Vec<String>,
    /// App running.
    pub app: String,
    /// XDP mode granted.
    pub xdp_mode: XdpMode,
    /// True if AF_XDP zero-copy was granted.
    pub zerocopy: bool,
    /// What the host said about each port at start (driver, channels, rings, XDP features,
    /// queue interrupts).
    pub nic: Vec<crate::nic::NicFacts>,
}

/// The engine's control-plane face.
pub struct EngineService {
    info: RunInfo,
    started: Instant,
    steering: Arc<Mutex<Option<SteeringSet>>>,
    workers: Vec<WorkerView>,
    mirror: Option<MirrorHandle>,
    term: Arc<AtomicBool>,
    last: Mutex<(Instant, Vec<Local>)>,
    lb: Option<Arc<LbService>>,
    dns: Option<Arc<DnsService>>,
    /// Set while a capture runs: one at a time.
    capturing: AtomicBool,
}

impl EngineService {
    /// A service over the run's pieces. `term` is the flag the main loop stops on.
    pub fn new(
        info: RunInfo,
        steering: Arc<Mutex<Option<SteeringSet>>>,
        workers: Vec<WorkerView>,
        mirror: Option<MirrorHandle>,
        term: Arc<AtomicBool>,
        lb: Option<Arc<LbService>>,
        dns: Option<Arc<DnsService>>,
    ) -> Self {
        let n = workers.len();
        EngineService {
            info,
            started: Instant::now(),
            steering,
            workers,
            mirror,
            term,
            last: Mutex::new((Instant::now(), vec![Local::default(); n])),
            lb,
            capturing: AtomicBool::new(false),
            dns,
        }
    }

    /// Re-reads the load balancer's file or the zones; `None` if the app has nothing to
    /// reload.
    pub fn reload(&self) -> Option<Result<Value, String>> {
        let text = |e: HandlerError| match e {
            HandlerError::Failed(s) => s,
        };
        match (&self.lb, &self.dns) {
            (Some(lb), _) => Some(lb.reload().map_err(text)),
            (None, Some(dns)) => Some(dns.reload().map_err(text)),
            (None, None) => None,
        }
    }

    /// The load balancer's control side, or the error a load-balancer request gets without it.
    fn lb(&self) -> Result<&LbService, HandlerError> {
        self.lb.as_deref().ok_or_else(|| {
            HandlerError::Failed(format!(
                "this engine runs the {} app; VIPs, backends and reload are the lb app's",
                self.info.app
            ))
        })
    }

    /// The XDP program's counters; `None` once detached or if the map cannot be read.
    pub fn xdp_counters(&self) -> Option<Counters> {
        let g = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().and_then(|s| s.counters().ok())
    }

    fn status(&self) -> Value {
        let i = &self.info;
        json!({
            "iface": i.ports[0],
            "ports": i.ports,
            "app": i.app,
            "xdp_mode": i.xdp_mode,
            "bind_mode": if i.zerocopy { "zerocopy" } else { "copy" },
            "queues": self.workers.iter().map(|w| w.queue).collect::<Vec<_>>(),
            "cores": self.workers.iter().map(|w| w.core).collect::<Vec<_>>(),
            "nic": i.nic,
            "uptime_s": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
        })
    }

    fn stats(&self) -> Value {
        let now = Instant::now();
        let snaps: Vec<Local> = self.workers.iter().map(|w| w.shared.snapshot()).collect();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-9);
        let mut total = Local::default();
        let mut total_prev = Local::default();
        let mut queues = Vec::new();
        for ((w, s), p) in self.workers.iter().zip(&snaps).zip(&last.1) {
            total.add(s);
            total_prev.add(p);
            queues.push(json!({
                "queue": w.queue,
                "core": w.core,
                "rates": rates_json(s, p, dt),
                "counters": s.to_json(),
                "ports": s.ports_json(self.info.ports.len()),
                "census": w.shared.census(),
                "kernel": w.shared.kernel(),
            }));
        }
        let v = json!({
            "interval_s": (dt * 1000.0).round() / 1000.0,
            "total": {"rates": rates_json(&total, &total_prev, dt), "counters": total.to_json(),
                      "ports": total.ports_json(self.info.ports.len())},
            "queues": queues,
            "xdp": self.xdp_counters(),
        });
        let mut v = v;
        if let Some(lb) = &self.lb {
            v["lb"] = json!({"conntrack": lb.conntrack_json()});
        }
        if let Some(dns) = &self.dns {
            v["dns"] = dns.stats_json();
        }
        *last = (now, snaps);
        v
    }

    fn rules(&self, r: &RulesRequest) -> Result<Value, HandlerError> {
        let mut g = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        let s = g
            .as_mut()
            .ok_or_else(|| HandlerError::Failed("the engine is shutting down".into()))?;
        let fail = |e: crate::steer::SteerError| HandlerError::Failed(crate::error::chain(&e));
        match r {
            RulesRequest::List => {
                let rules = s.rules().map_err(fail)?;
                Ok(json!(rules))
            }
            RulesRequest::Add { proto, ports } => {
                // Every (protocol, port) has a slot of its own in the rules array: no capacity
                // to check.
                let new = ports.0.len();
                for &port in &ports.0 {
                    s.set_rule(Rule {
                        proto: *proto,
                        port,
                        action: Action::Redirect,
                    })
                    .map_err(fail)?;
                }
                Ok(json!({"added": new}))
            }
            RulesRequest::Del { proto, ports } => {
                let mut removed = 0;
                let mut absent = Vec::new();
                for &port in &ports.0 {
                    if s.remove_rule(*proto, port).map_err(fail)? {
                        removed += 1;
                    } else {
                        absent.push(port);
                    }
                }
                Ok(json!({"removed": removed, "not_present": absent}))
            }
        }
    }

    fn mirror_view(&self, req: &Request) -> Result<Value, HandlerError> {
        // A mirror whose thread ended (it logged why) holds a stale view: refuse rather than mislead.
        let m = self
            .mirror
            .as_ref()
            .filter(|m| m.is_running())
            .ok_or_else(|| HandlerError::Failed("the rtnetlink mirror is not running".into()))?;
        let snap = m.snapshot();
        Ok(match req {
            Request::Links => json!(snap.links().collect::<Vec<_>>()),
            Request::Addresses => json!(snap.addresses().collect::<Vec<_>>()),
            Request::Neighbours => json!(snap.neighbours().collect::<Vec<_>>()),
            Request::Routes => json!(snap.routes().collect::<Vec<_>>()),
            _ => Value::Null,
        })
    }
}

impl Handler for EngineService {
    fn handle(&self, req: &Request, _peer: &Peer) -> Result<Value, HandlerError> {
        match req {
            Request::Status => Ok(self.status()),
            Request::Stats => Ok(self.stats()),
            Request::Rules(r) => self.rules(r),
            Request::Links | Request::Addresses | Request::Neighbours | Request::Routes => {
                self.mirror_view(req)
            }
            Request::Shutdown => {
                self.term.store(true, Ordering::Relaxed);
                Ok(json!({"shutting_down": true}))
            }
            Request::Vips(r) => self.lb()?.vips(r),
            Request::Backends(r) => self.lb()?.backends(r),
            Request::Reload => match self.reload() {
                Some(r) => r.map_err(HandlerError::Failed),
                None => Err(HandlerError::Failed(format!(
                    "this engine runs the {} app, which has nothing to reload",
                    self.info.app
                ))),
            },
            Request::Capture(_) => Err(HandlerError::Failed(
                "capture needs an output file descriptor passed with the request (SCM_RIGHTS); \
                 use `sluice ctl capture -w FILE`"
                    .into(),
            )),
        }
    }

    fn handle_stream(
        &self,
        req: &Request,
        _peer: &Peer,
        out: std::os::fd::OwnedFd,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Value, HandlerError> {
        let Request::Capture(c) = req else {
            return self.handle(req, _peer);
        };
        if self.capturing.swap(true, Ordering::AcqRel) {
            return Err(HandlerError::Failed(
                "another capture is running on this engine; one at a time".into(),
            ));
        }
        let targets: Vec<_> = self
            .workers
            .iter()
            .map(|w| capture::Target {
                queue: w.queue,
                tap: w.shared.capture(),
            })
            .collect();
        let r = capture::run(&self.info.ports, &targets, c, out, cancelled);
        self.capturing.store(false, Ordering::Release);
        r.map_err(HandlerError::Failed)
    }
}

impl MetricsSource for EngineService {
    fn collect(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            iface: self.info.ports[0].clone(),
            ports: self.info.ports.clone(),
            queues: self
                .workers
                .iter()
                .map(|w| QueueMetrics {
                    queue: w.queue,
                    counters: w.shared.snapshot(),
                    census: w.shared.census(),
                    kernel: w.shared.kernel(),
                })
                .collect(),
            xdp: self.xdp_counters(),
            dns: self.dns.as_ref().map(|d| DnsMetrics {
                outcomes: d
                    .outcomes()
                    .into_iter()
                    .map(|(q, c)| (q, c.to_vec()))
                    .collect(),
                tcp_queries: d.tcp_queries(),
            }),
            lb: self.lb.as_ref().map(|lb| LbMetrics {
                conntrack: lb.conntrack().1,
                backends: lb
                    .backend_states()
                    .into_iter()
                    .map(|(vip, addr, in_table, health)| BackendMetrics {
                        vip: vip.to_string(),
                        backend: addr.to_string(),
                        in_table,
                        healthy: match health {
                            BackendHealth::Unchecked => None,
                            BackendHealth::Up => Some(true),
                            BackendHealth::Down => Some(false),
                        },
                    })
                    .collect(),
            }),
        }
    }
}
