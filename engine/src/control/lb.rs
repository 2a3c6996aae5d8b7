//! The load balancer's control side: the VIPs and backends as the operator and the health
//! checker change them, turned into the table the workers read and the VIP map the XDP
//! program steers by.
//!
//! Owns the *model* (every VIP with its backends, each backend's weight, admin state —
//! active or drained — and health) behind one lock. Every change — `sluice ctl vips|backends`,
//! a reload of the file, a health transition — edits the model and then, still under the lock
//! so changes apply in order, rebuilds the whole [`LbTable`] (a Maglev table per VIP, tens of
//! milliseconds at the default size: never on a worker), swaps it into the workers'
//! [`LbHandle`], brings the XDP program's VIP map in line and hands the health checker its new
//! target list. A worker sees the change at its next batch.
//!
//! # Backend states
//!
//! - `admin`: `active`, or `drained` by `ctl backends drain` (undone by `backends add` of the
//!   same address). A drained backend gets no new flows; the flows the workers' connection
//!   tables remember on it keep going until they end or time out.
//! - `health`: `unchecked` (the VIP's `health = "none"`), `up` or `down`, from the
//!   [`HealthChecker`]; a new backend starts `up`. Down acts as drained.
//! - `in_table` (gets new flows) = active, not down, weight above 0.
//! - `backends del` removes it: its flows are re-hashed at their next packet.
//!
//! Backend ids are handed out once and never reused, and survive a reload for every (VIP,
//! address) pair the new file keeps, so a reload does not disturb their flows. A reload resets
//! weights and admin states to the file's (the file is the source of truth), keeps health.
//!
//! # Next hops
//!
//! A backend's packets go to its next hop's MAC from the kernel's neighbour table (through the
//! forwarding table). The kernel resolves a neighbour only when it has something to send there,
//! and the balancer's packets never pass through the kernel. So a resolver thread checks every
//! backend once a second and, for a next hop without a usable neighbour entry, sends one empty
//! UDP datagram to its discard port (9) from an ordinary socket: the kernel resolves the
//! address (ARP / neighbour discovery) to send it. Until then that backend's packets are
//! dropped as `no_neighbour`. (TCP health checks resolve as a side effect as well.)

use super::health::{Health, HealthChecker, HealthParams, Probe, Target};
use super::proto::{BackendsRequest, VipsRequest};
use super::socket::HandlerError;
use crate::apps::lb::config::{
    BackendConfig, Forwarding, HealthCheck, LbConfig, MAX_WEIGHT, Vip, VipConfig, check_unicast,
};
use crate::apps::lb::flow::BackendId;
use crate::apps::lb::{
    BackendSpec, ConnTableFigures, LbHandle, LbTable, LbWorkerStats, ServiceSpec,
};
use crate::fib::{FibHandle, Lookup};
use crate::steer::{L4Proto, SteeringSet, VipMatch};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An operator's admin state of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    /// Gets new flows (if healthy and weighted).
    Active,
    /// Gets no new flows; keeps its established ones.
    Drained,
}

/// A backend's health as the checker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendHealth {
    /// Not probed (`health = "none"`).
    Unchecked,
    /// Passing.
    Up,
    /// Failing: acts as drained.
    Down,
}

#[derive(Clone, Debug)]
struct BackendState {
    id: BackendId,
    addr: IpAddr,
    weight: u32,
    admin: Admin,
    health: BackendHealth,
}

impl BackendState {
    fn in_table(&self) -> bool {
        self.admin == Admin::Active && self.health != BackendHealth::Down && self.weight > 0
    }
}

#[derive(Clone, Debug)]
struct Service {
    vip: Vip,
    forwarding: Forwarding,
    health: HealthCheck,
    health_port: u16,
    backends: Vec<BackendState>,
}

/// Everything the operator set, plus health.
struct Model {
    services: Vec<Service>,
    next_id: u32,
    /// The VIP-map entries written (to remove the stale ones after a change).
    steered: BTreeSet<VipMatch>,
}

impl Model {
    fn service_mut(&mut self, vip: &Vip) -> Result<&mut Service, HandlerError> {
        self.services
            .iter_mut()
            .find(|s| s.vip == *vip)
            .ok_or_else(|| HandlerError::Failed(format!("no VIP {vip}")))
    }

    fn new_id(&mut self) -> BackendId {
        self.next_id += 1;
        BackendId(self.next_id)
    }

    /// The services of `config`, keeping the ids (and health) of (VIP, address) pairs already
    /// here.
    fn adopt(&mut self, config: &LbConfig) {
        let old = std::mem::take(&mut self.services);
        for v in &config.vips {
            let before = old.iter().find(|s| s.vip == v.vip);
            let backends = v
                .backends
                .iter()
                .map(|b| {
                    let kept = before.and_then(|s| s.backends.iter().find(|o| o.addr == b.address));
                    let health = match (v.health, kept) {
                        (HealthCheck::None, _) => BackendHealth::Unchecked,
                        (_, Some(k)) if k.health != BackendHealth::Unchecked => k.health,
                        _ => BackendHealth::Up,
                    };
                    BackendState {
                        id: kept.map_or_else(|| self.new_id(), |k| k.id),
                        addr: b.address,
                        weight: b.weight,
                        admin: Admin::Active,
                        health,
                    }
                })
                .collect();
            self.services.push(Service {
                vip: v.vip,
                forwarding: v.forwarding,
                health: v.health,
                health_port: v.health_port,
                backends,
            });
        }
    }

    fn specs(&self) -> Vec<ServiceSpec> {
        self.services
            .iter()
            .map(|s| ServiceSpec {
                vip: s.vip,
                forwarding: s.forwarding,
                backends: s
                    .backends
                    .iter()
                    .map(|b| BackendSpec {
                        id: b.id,
                        addr: b.addr,
                        weight: b.weight,
                        takes_new: b.in_table(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The VIP-map entries the services need: one per VIP, plus one ICMP entry per VIP address
    /// (errors about VIP flows).
    fn steering(&self) -> BTreeSet<VipMatch> {
        let mut set = BTreeSet::new();
        for s in &self.services {
            set.insert(VipMatch {
                address: s.vip.address,
                port: s.vip.port,
                proto: s.vip.proto.ip_proto(),
            });
            set.insert(VipMatch::icmp(s.vip.address));
        }
        set
    }

    fn targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for s in &self.services {
            let probe = match s.health {
                HealthCheck::Tcp => Probe::Tcp,
                HealthCheck::Udp => Probe::Udp,
                HealthCheck::None => continue,
            };
            for b in &s.backends {
                out.push(Target {
                    key: u64::from(b.id.0),
                    addr: SocketAddr::new(b.addr, s.health_port),
                    probe,
                });
            }
        }
        out
    }
}

/// What the engine hands the service at start.
pub struct LbSetup {
    /// The configuration file (re-read by `reload`).
    pub path: PathBuf,
    /// Its contents, already read and checked.
    pub config: LbConfig,
    /// The steering maps (`None` once detached).
    pub steering: Arc<Mutex<Option<SteeringSet>>>,
    /// The forwarding table (next hops towards the backends).
    pub fib: FibHandle,
    /// One per worker, in queue order: their connection-table figures.
    pub stats: Vec<(u32, Arc<LbWorkerStats>)>,
    /// A hot upgrade's successor: the VIP map is the predecessor's, which serves from it until
    /// the commit. The table is built at once, but the map is left alone (what it holds is
    /// taken as steered) until [`LbService::resume_steering`], so a hand-over that fails
    /// leaves the predecessor's VIPs exactly as they were.
    pub adopted: bool,
}

/// Why the balancer's control side could not start.
#[derive(Debug, thiserror::Error)]
pub enum LbStartError {
    /// The first table could not be built or the VIPs not written into the steering map.
    #[error("{0}")]
    Apply(String),
    /// A thread could not be started.
    #[error("starting the {what} thread")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The load balancer's control side (see the module docs).
pub struct LbService {
    path: PathBuf,
    handle: LbHandle,
    maglev_size: u32,
    steering: Arc<Mutex<Option<SteeringSet>>>,
    fib: FibHandle,
    stats: Vec<(u32, Arc<LbWorkerStats>)>,
    model: Mutex<Model>,
    health: Mutex<Option<HealthChecker>>,
    stop: Arc<AtomicBool>,
    resolver: Mutex<Option<JoinHandle<()>>>,
    /// Set while a successor must not touch the VIP map yet (see [`LbSetup::adopted`]).
    steering_deferred: AtomicBool,
}

impl LbService {
    /// Builds the first table and writes the VIP map from `setup.config`; the workers read the
    /// table through [`LbService::table`]. Threads (health checker, resolver) start with
    /// [`LbService::start_threads`], once privileges are dropped.
    pub fn new(setup: LbSetup) -> Result<Arc<LbService>, LbStartError> {
        let mut model = Model {
            services: Vec::new(),
            next_id: 0,
            steered: BTreeSet::new(),
        };
        model.adopt(&setup.config);
        if setup.adopted {
            let g = setup.steering.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = g.as_ref() {
                model.steered = s
                    .vips()
                    .map_err(|e| LbStartError::Apply(crate::error::chain(&e)))?
                    .into_iter()
                    .collect();
            }
        }
        let service = Arc::new(LbService {
            path: setup.path,
            handle: LbHandle::new(LbTable::default()),
            maglev_size: setup.config.maglev.table_size,
            steering: setup.steering,
            fib: setup.fib,
            stats: setup.stats,
            model: Mutex::new(model),
            health: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            resolver: Mutex::new(None),
            steering_deferred: AtomicBool::new(setup.adopted),
        });
        {
            let mut m = service.lock();
            service
                .apply(&mut m)
                .map_err(|e| LbStartError::Apply(error_text(e)))?;
        }
        Ok(service)
    }

    /// A successor, once committed: bring the VIP map in line with this engine's table (VIPs
    /// of its own configuration added, the predecessor's that it lacks removed).
    pub fn resume_steering(&self) -> Result<(), LbStartError> {
        self.steering_deferred.store(false, Ordering::Relaxed);
        let mut m = self.lock();
        self.apply(&mut m)
            .map_err(|e| LbStartError::Apply(error_text(e)))
    }

    /// The table the workers read.
    pub fn table(&self) -> &LbHandle {
        &self.handle
    }

    /// Where the worker of `queue` publishes its connection-table figures (a fresh block,
    /// not read by anyone, for a queue the service was not told of).
    pub fn worker_stats(&self, queue: u32) -> Arc<LbWorkerStats> {
        self.stats
            .iter()
            .find(|(q, _)| *q == queue)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// Starts the health checker (with `params` from the file) and the neighbour resolver.
    pub fn start_threads(self: &Arc<Self>, params: HealthParams) -> Result<(), LbStartError> {
        let weak: Weak<LbService> = Arc::downgrade(self);
        let checker = HealthChecker::spawn(params, move |key, health| {
            if let Some(s) = weak.upgrade() {
                s.on_health(key, health);
            }
        })
        .map_err(|source| LbStartError::Spawn {
            what: "health checker",
            source,
        })?;
        checker.set_targets(self.lock().targets());
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(checker);

        let weak: Weak<LbService> = Arc::downgrade(self);
        let stop = self.stop.clone();
        let resolver = std::thread::Builder::new()
            .name("sluice-lb-resolve".into())
            .spawn(move || resolve_loop(weak, stop))
            .map_err(|source| LbStartError::Spawn {
                what: "neighbour resolver",
                source,
            })?;
        *self.resolver.lock().unwrap_or_else(|e| e.into_inner()) = Some(resolver);
        Ok(())
    }

    /// Stops the threads (the table stays as it is).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.health.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.stop();
        }
        if let Some(t) = self
            .resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds the table, swaps it in, syncs the VIP map and the health targets. On error
    /// nothing the workers see has changed (the table is built before anything is written).
    fn apply(&self, m: &mut Model) -> Result<(), HandlerError> {
        let table = LbTable::build(&m.specs(), self.maglev_size)
            .map_err(|e| HandlerError::Failed(e.to_string()))?;
        let want = m.steering();
        if self.steering_deferred.load(Ordering::Relaxed) {
            self.handle.store(table);
        } else {
            let mut g = self.steering.lock().unwrap_or_else(|e| e.into_inner());
            let s = g
                .as_mut()
                .ok_or_else(|| HandlerError::Failed("the engine is shutting down".into()))?;
            let fail = |e: crate::steer::SteerError| HandlerError::Failed(crate::error::chain(&e));
            // New entries first, so a VIP that stays is steered throughout.
            let new: Vec<VipMatch> = want.difference(&m.steered).copied().collect();
            for v in new {
                s.set_vip(v).map_err(fail)?;
                m.steered.insert(v);
            }
            // The table goes in before stale entries go out: a packet the map still steers
            // for a removed VIP is dropped as `not_vip`, never misrouted.
            self.handle.store(table);
            let stale: Vec<VipMatch> = m.steered.difference(&want).copied().collect();
            for v in stale {
                s.remove_vip(v).map_err(fail)?;
                m.steered.remove(&v);
            }
        }
        if let Some(h) = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            h.set_targets(m.targets());
        }
        Ok(())
    }

    fn on_health(&self, key: u64, health: Health) {
        let mut m = self.lock();
        let new = match health {
            Health::Up => BackendHealth::Up,
            Health::Down => BackendHealth::Down,
        };
        let mut changed = None;
        for s in &mut m.services {
            if s.health == HealthCheck::None {
                continue;
            }
            for b in &mut s.backends {
                if u64::from(b.id.0) == key && b.health != new {
                    b.health = new;
                    changed = Some((s.vip, b.addr));
                }
            }
        }
        if let Some((vip, addr)) = changed {
            match self.apply(&mut m) {
                Ok(()) => log::warn!(
                    "lb: backend {addr} of {vip} is {}: {}",
                    if new == BackendHealth::Up {
                        "up"
                    } else {
                        "down"
                    },
                    if new == BackendHealth::Up {
                        "it gets new flows again"
                    } else {
                        "drained (no new flows)"
                    }
                ),
                Err(e) => log::error!("lb: applying health of {addr} ({vip}): {}", error_text(e)),
            }
        }
    }

    /// Re-reads the file and applies it; on any error the running set stays as it is.
    pub fn reload(&self) -> Result<Value, HandlerError> {
        let config = LbConfig::from_file(&self.path)
            .map_err(|e| HandlerError::Failed(format!("reload: {}", crate::error::chain(&e))))?;
        if config.maglev.table_size != self.maglev_size {
            log::warn!(
                "lb: reload: maglev.table_size changed to {}; a running engine keeps {} \
                 (restart to change it)",
                config.maglev.table_size,
                self.maglev_size
            );
        }
        let mut m = self.lock();
        let saved = m.services.clone();
        let saved_next = m.next_id;
        m.adopt(&config);
        if let Err(e) = self.apply(&mut m) {
            m.services = saved;
            m.next_id = saved_next;
            return Err(e);
        }
        log::info!(
            "lb: reloaded {}: {} VIP(s)",
            self.path.display(),
            m.services.len()
        );
        Ok(json!({"reloaded": self.path.display().to_string(), "vips": m.services.len()}))
    }

    /// `ctl vips ...`.
    pub fn vips(&self, req: &VipsRequest) -> Result<Value, HandlerError> {
        let mut m = self.lock();
        match req {
            VipsRequest::List => Ok(json!({"vips": m.services.iter().map(|s| json!({
                "vip": s.vip,
                "forwarding": s.forwarding,
                "health": s.health,
                "health_port": s.health_port,
                "backends": s.backends.len(),
                "in_table": s.backends.iter().filter(|b| b.in_table()).count(),
            })).collect::<Vec<_>>()})),
            VipsRequest::Add {
                vip,
                forwarding,
                health,
                health_port,
            } => {
                if m.services.iter().any(|s| s.vip == *vip) {
                    return Err(HandlerError::Failed(format!("VIP {vip} exists already")));
                }
                let health = health.unwrap_or(match (vip.proto, vip.port) {
                    (L4Proto::Tcp, 1..) => HealthCheck::Tcp,
                    _ => HealthCheck::None,
                });
                let check = VipConfig {
                    vip: *vip,
                    forwarding: *forwarding,
                    backends: Vec::new(),
                    health,
                    health_port: health_port.unwrap_or(vip.port),
                };
                check_vip(&check)?;
                m.services.push(Service {
                    vip: check.vip,
                    forwarding: check.forwarding,
                    health: check.health,
                    health_port: check.health_port,
                    backends: Vec::new(),
                });
                self.commit(&mut m, |m| {
                    m.services.pop();
                })?;
                log::info!("lb: VIP {vip} added ({forwarding}, no backends yet)");
                Ok(json!({"added": vip}))
            }
            VipsRequest::Del { vip } => {
                let i = m
                    .services
                    .iter()
                    .position(|s| s.vip == *vip)
                    .ok_or_else(|| HandlerError::Failed(format!("no VIP {vip}")))?;
                let removed = m.services.remove(i);
                self.commit(&mut m, |m| m.services.insert(i, removed.clone()))?;
                log::info!("lb: VIP {vip} deleted");
                Ok(json!({"deleted": vip}))
            }
        }
    }

    /// `ctl backends ...`.
    pub fn backends(&self, req: &BackendsRequest) -> Result<Value, HandlerError> {
        let mut m = self.lock();
        match req {
            BackendsRequest::List { vip } => {
                if let Some(v) = vip {
                    m.service_mut(v)?;
                }
                let vips: Vec<Value> = m
                    .services
                    .iter()
                    .filter(|s| vip.is_none_or(|v| s.vip == v))
                    .map(|s| {
                        json!({
                            "vip": s.vip,
                            "forwarding": s.forwarding,
                            "backends": s.backends.iter().map(|b| json!({
                                "address": b.addr,
                                "weight": b.weight,
                                "admin": b.admin,
                                "health": b.health,
                                "in_table": b.in_table(),
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                Ok(json!({"vips": vips, "conntrack": self.conntrack_json()}))
            }
            BackendsRequest::Add {
                vip,
                backend,
                weight,
            } => {
                let weight = weight.unwrap_or(1);
                check_unicast(*backend)
                    .map_err(|e| HandlerError::Failed(format!("backend: {e}")))?;
                if weight > MAX_WEIGHT {
                    return Err(HandlerError::Failed(format!(
                        "weight: {weight} is out of range (0..={MAX_WEIGHT})"
                    )));
                }
                let s = m.service_mut(vip)?;
                let snapshot = s.clone();
                let probe = BackendConfig {
                    address: *backend,
                    weight: weight.max(1),
                };
                check_vip(&VipConfig {
                    vip: s.vip,
                    forwarding: s.forwarding,
                    backends: vec![probe],
                    health: s.health,
                    health_port: s.health_port,
                })?;
                let health = if s.health == HealthCheck::None {
                    BackendHealth::Unchecked
                } else {
                    BackendHealth::Up
                };
                let existed = match s.backends.iter_mut().find(|b| b.addr == *backend) {
                    Some(b) => {
                        b.weight = weight;
                        b.admin = Admin::Active;
                        true
                    }
                    None => {
                        let id = {
                            let next = m.next_id + 1;
                            m.next_id = next;
                            BackendId(next)
                        };
                        let s = m.service_mut(vip)?;
                        s.backends.push(BackendState {
                            id,
                            addr: *backend,
                            weight,
                            admin: Admin::Active,
                            health,
                        });
                        false
                    }
                };
                self.commit(&mut m, |m| {
                    if let Ok(s) = m.service_mut(vip) {
                        *s = snapshot.clone();
                    }
                })?;
                log::info!(
                    "lb: backend {backend} {} on {vip} (weight {weight})",
                    if existed { "updated" } else { "added" }
                );
                let what = if existed { "updated" } else { "added" };
                Ok(Value::Object(
                    [(what.to_string(), json!(backend))].into_iter().collect(),
                ))
            }
            BackendsRequest::Del { vip, backend } | BackendsRequest::Drain { vip, backend } => {
                let drain = matches!(req, BackendsRequest::Drain { .. });
                let s = m.service_mut(vip)?;
                let snapshot = s.clone();
                let i = s
                    .backends
                    .iter()
                    .position(|b| b.addr == *backend)
                    .ok_or_else(|| {
                        HandlerError::Failed(format!("{vip} has no backend {backend}"))
                    })?;
                if drain {
                    s.backends[i].admin = Admin::Drained;
                } else {
                    s.backends.remove(i);
                }
                self.commit(&mut m, |m| {
                    if let Ok(s) = m.service_mut(vip) {
                        *s = snapshot.clone();
                    }
                })?;
                let what = if drain { "drained" } else { "deleted" };
                log::info!("lb: backend {backend} of {vip} {what}");
                Ok(Value::Object(
                    [(what.to_string(), json!(backend))].into_iter().collect(),
                ))
            }
        }
    }

    /// Applies the model; on failure undoes the edit with `undo` and applies that.
    fn commit(&self, m: &mut Model, undo: impl FnOnce(&mut Model)) -> Result<(), HandlerError> {
        match self.apply(m) {
            Ok(()) => Ok(()),
            Err(e) => {
                undo(m);
                if let Err(again) = self.apply(m) {
                    log::error!(
                        "lb: restoring the previous set failed too: {}",
                        error_text(again)
                    );
                }
                Err(e)
            }
        }
    }

    /// The workers' connection-table figures: per queue and summed.
    pub fn conntrack(&self) -> (ConnTableFigures, Vec<(u32, ConnTableFigures)>) {
        let mut total = ConnTableFigures::default();
        let per: Vec<(u32, ConnTableFigures)> = self
            .stats
            .iter()
            .map(|(q, s)| {
                let f = s.read();
                total.add(&f);
                (*q, f)
            })
            .collect();
        (total, per)
    }

    /// [`LbService::conntrack`] as JSON.
    pub fn conntrack_json(&self) -> Value {
        let (total, per) = self.conntrack();
        json!({
            "total": total,
            "queues": per.iter().map(|(q, f)| json!({"queue": q, "table": f})).collect::<Vec<_>>(),
        })
    }

    /// Every backend for metrics: (VIP, address, in table, health).
    pub fn backend_states(&self) -> Vec<(Vip, IpAddr, bool, BackendHealth)> {
        let m = self.lock();
        m.services
            .iter()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .map(move |b| (s.vip, b.addr, b.in_table(), b.health))
            })
            .collect()
    }

    /// The backends' addresses (for the resolver).
    fn backend_addrs(&self) -> Vec<IpAddr> {
        let m = self.lock();
        let mut v: Vec<IpAddr> = m
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.addr))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Drop for LbService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A VIP's rules, checked as the file's are.
fn check_vip(v: &VipConfig) -> Result<(), HandlerError> {
    v.check()
        .map_err(|e| HandlerError::Failed(format!("{}: {e}", v.vip)))
}

fn error_text(e: HandlerError) -> String {
    match e {
        HandlerError::Failed(s) => s,
    }
}

/// How often the resolver looks at the backends' next hops.
const RESOLVE_EVERY: Duration = Duration::from_secs(1);

/// The resolver thread (see the module docs).
fn resolve_loop(service: Weak<LbService>, stop: Arc<AtomicBool>) {
    let sockets = (
        UdpSocket::bind("0.0.0.0:0").ok(),
        UdpSocket::bind("[::]:0").ok(),
    );
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            let Some(s) = service.upgrade() else {
                return;
            };
            let fib = s.fib.load();
            for addr in s.backend_addrs() {
                if let Lookup::NoNeighbour { next_hop, .. } = fib.lookup(addr, 0) {
                    let socket = match next_hop {
                        IpAddr::V4(_) => sockets.0.as_ref(),
                        IpAddr::V6(_) => sockets.1.as_ref(),
                    };
                    if let Some(socket) = socket {
                        // Errors (no route, EHOSTUNREACH from an earlier failure) are the
                        // kernel's answer for now; the next round tries again.
                        let _ = socket.send_to(&[], SocketAddr::new(next_hop, 9));
                        log::debug!("lb: asked the kernel to resolve {next_hop} (backend {addr})");
                    }
                }
            }
            next = Instant::now() + RESOLVE_EVERY;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
