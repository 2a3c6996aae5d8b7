//! Both sides of a hot upgrade (the protocol is [`crate::control::takeover`]).
//!
//! The running engine ([`Engine::hand_over`]) offers its fds, stops its workers at a batch
//! boundary once the successor has mapped everything, hands over what they held and, on
//! `commit`, lets go of the bpf_link without detaching. The successor
//! ([`Successor::acquire`], [`Successor::commit`]) maps the same UMEMs and rings, adopts the
//! XDP attachment and the control sockets, and starts its workers on the same rings.
//!
//! Besides the data plane, what the apps own in the kernel moves too ([`Extras`]): forward's
//! TAP device, dns's TCP listener, the metrics listener. What is derived from the kernel (the
//! forwarding table, the load balancer's next hops) the successor rebuilds from its own
//! rtnetlink mirror, and what comes from files (`--lb-config`, `--zone`) it loads itself, all
//! before it says `ready`.

use super::{Engine, RunError, preflight::Plan};
use crate::apps::App;
use crate::config::EngineConfig;
use crate::control::takeover::{self as proto, Extras, Msg, Offer, STEP_TIMEOUT, Setup, TapInfo};
use crate::control::{Claim, ControlPlane, TakeoverConn};
use crate::steer::SteeringSet;
use crate::worker::{self, Shared};
use crate::xsk::{QueueState, XskQueue};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, channel};

/// The settings both sides must share, as this engine has them.
fn setup_of(cfg: &EngineConfig, plan: &Plan) -> Setup {
    let app = if cfg.forward {
        "forward"
    } else if cfg.lb.is_some() {
        "lb"
    } else if !cfg.dns.is_empty() {
        "dns"
    } else {
        "ports"
    };
    Setup {
        ifaces: cfg.ifaces.clone(),
        queues: plan.queues.clone(),
        frame_size: plan.xsk.frame_size,
        frame_count: plan.xsk.frame_count,
        fill_ring: plan.xsk.fill_size,
        comp_ring: plan.xsk.comp_size,
        rx_ring: plan.xsk.rx_size,
        tx_ring: plan.xsk.tx_size,
        headroom: plan.xsk.headroom,
        app: app.into(),
        dns_port: cfg.dns_port(),
    }
}

/// The kernel objects an engine owns besides its data plane, to pass on (borrowed from the
/// engine while it starts; [`Held`] keeps duplicates).
pub(super) struct AppFds<'a> {
    /// forward: the TAP device and its name and MAC.
    pub(super) tap: Option<(BorrowedFd<'a>, TapInfo)>,
    /// dns: the TCP listener.
    pub(super) dns_tcp: Option<BorrowedFd<'a>>,
    /// The metrics listener and its `--metrics` address as configured.
    pub(super) metrics: Option<(BorrowedFd<'a>, SocketAddr)>,
}

/// What a successor received besides the data plane (see [`AppFds`]).
#[derive(Default)]
pub(super) struct Passed {
    pub(super) tap: Option<(OwnedFd, TapInfo)>,
    pub(super) dns_tcp: Option<OwnedFd>,
    pub(super) metrics: Option<(OwnedFd, SocketAddr)>,
}

/// What a running engine keeps for a successor.
pub(super) struct Held {
    setup: Setup,
    tx: Sender<TakeoverConn>,
    rx: Receiver<TakeoverConn>,
    /// Per queue: the UMEM memfd and each port's socket (duplicates).
    queue_fds: Vec<Vec<OwnedFd>>,
    /// The listening control sockets, one per port (duplicates).
    listener_fds: Vec<OwnedFd>,
    /// The app's and the metrics endpoint's fds (duplicates), in [`Extras`] order.
    extra_fds: Vec<OwnedFd>,
    /// What they are.
    extras: Extras,
    /// After a hand-over: each stopped worker's queue and counters (kept for the totals).
    frozen: Vec<(u32, Arc<Shared>, XskQueue)>,
}

impl Held {
    pub(super) fn new(
        cfg: &EngineConfig,
        plan: &Plan,
        claim: &Claim,
        sockets: &[XskQueue],
        app_fds: AppFds<'_>,
    ) -> Result<Held, RunError> {
        let dup_err = |e: std::io::Error| RunError::Takeover(format!("duplicating an fd: {e}"));
        let queue_fds = sockets
            .iter()
            .map(|q| {
                q.handover_fds()
                    .into_iter()
                    .map(|fd| fd.try_clone_to_owned())
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(dup_err)?;
        let listener_fds = claim.listener_fds().map_err(dup_err)?;
        let mut extras = Extras::default();
        let mut extra_fds = Vec::new();
        if let Some((fd, info)) = app_fds.tap {
            extra_fds.push(fd.try_clone_to_owned().map_err(dup_err)?);
            extras.tap = Some(info);
        }
        if let Some(fd) = app_fds.dns_tcp {
            extra_fds.push(fd.try_clone_to_owned().map_err(dup_err)?);
            extras.dns_tcp = true;
        }
        if let Some((fd, addr)) = app_fds.metrics {
            extra_fds.push(fd.try_clone_to_owned().map_err(dup_err)?);
            extras.metrics = Some(addr);
        }
        let (tx, rx) = channel();
        Ok(Held {
            setup: setup_of(cfg, plan),
            tx,
            rx,
            queue_fds,
            listener_fds,
            extra_fds,
            extras,
            frozen: Vec::new(),
        })
    }

    pub(super) fn sender(&self) -> Sender<TakeoverConn> {
        self.tx.clone()
    }

    pub(super) fn next_request(&self) -> Option<TakeoverConn> {
        self.rx.try_recv().ok()
    }

    pub(super) fn frozen(&self) -> impl Iterator<Item = (u32, Arc<Shared>)> + '_ {
        self.frozen.iter().map(|(q, s, _)| (*q, s.clone()))
    }
}

impl<A: App + 'static> Engine<A> {
    /// Run one hand-over to the successor on `tc` (on the supervising thread). `Ok` once the
    /// successor has committed: from then on it owns the rings and the XDP link, and this
    /// engine must shut down without detaching. `Err` leaves (or puts) this engine serving.
    pub(super) fn hand_over(&mut self, tc: TakeoverConn) -> Result<(), String> {
        let conn = tc.conn;
        let fail = |reason: String| {
            let _ = proto::send(
                conn.as_fd(),
                &Msg::Refused {
                    reason: reason.clone(),
                },
                &[],
            );
            Err(reason)
        };
        let theirs = match Msg::decode(&tc.first) {
            Ok(Msg::Takeover { setup }) => setup,
            _ => return fail("malformed takeover request".into()),
        };
        if let Err(reason) = self.handover.setup.check(&theirs) {
            return fail(reason);
        }
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&conn, proto::MAX_MESSAGE + 4096);
        // The steering lock is held to the end: no rule changes between the offer and the
        // successor's taking over (control requests wait, bounded by the step timeouts).
        let steering = self.steering.clone();
        let mut guard = steering.lock().unwrap_or_else(|e| e.into_inner());
        let Some(set) = guard.as_mut() else {
            return fail("the engine is detached (stopping)".into());
        };
        let rules = match set.rules() {
            Ok(r) => r,
            Err(e) => return fail(format!("reading the rules: {e}")),
        };
        let mut fds = set.handover_fds();
        for q in &self.handover.queue_fds {
            fds.extend(proto::borrow_all(q));
        }
        fds.extend(proto::borrow_all(&self.handover.listener_fds));
        fds.extend(proto::borrow_all(&self.handover.extra_fds));
        let offer = Offer {
            pid: std::process::id(),
            setup: self.handover.setup.clone(),
            xdp_mode: set.granted_mode(),
            prog_ids: set.program_ids(),
            steer_mode: set.mode(),
            rules,
            extras: self.handover.extras.clone(),
            fds: fds.len(),
        };
        if let Err(e) = proto::send(conn.as_fd(), &Msg::Offer(offer), &fds) {
            return Err(format!("sending the offer: {e}"));
        }
        drop(fds);
        match proto::recv(conn.as_fd(), STEP_TIMEOUT) {
            Ok((Msg::Ready, _)) => {}
            Ok((Msg::Abort { reason }, _)) => return Err(format!("successor aborted: {reason}")),
            Ok((other, _)) => return Err(format!("unexpected {other:?} instead of ready")),
            Err(e) => return Err(format!("waiting for the successor to map: {e}")),
        }

        // Stop the workers at a batch boundary and take their queues back.
        let t0 = std::time::Instant::now();
        self.stop.store(true, Ordering::Relaxed);
        let mut stopped = Vec::with_capacity(self.workers.len());
        for w in self.workers.drain(..) {
            let (queue, core, shared) = (w.queue, w.core, w.shared.clone());
            match w.join_with_queue() {
                Ok((app, q)) => stopped.push((queue, core, shared, app, q)),
                // A worker that died took its queue with it: nothing sensible to hand over,
                // and nothing to resume either; the supervisor will stop the engine.
                Err(msg) => return Err(format!("worker {queue} died while stopping: {msg}")),
            }
        }
        let states: Vec<QueueState> = stopped
            .iter_mut()
            .map(|(_, _, _, _, q)| q.handover_state())
            .collect();
        let committed = proto::send(conn.as_fd(), &Msg::State { queues: states }, &[])
            .map_err(|e| format!("sending the state: {e}"))
            .and_then(|()| wait_commit(&conn));
        match committed {
            Ok(()) => {
                let _ = proto::send(conn.as_fd(), &Msg::Done, &[]);
                set.release();
                log::info!(
                    "hot upgrade: pid {} took over (workers stopped for {:?})",
                    tc.peer.pid,
                    t0.elapsed()
                );
                for (queue, _, shared, app, q) in stopped {
                    drop(app);
                    self.handover.frozen.push((queue, shared, q));
                }
                self.term.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(reason) => {
                // Back to serving on the same rings, with the same counters.
                self.stop.store(false, Ordering::Relaxed);
                for ((queue, _core, shared, app, q), wcfg) in stopped.into_iter().zip(&self.wcfgs) {
                    match worker::spawn_with(q, app, wcfg.clone(), self.stop.clone(), shared) {
                        Ok(h) => self.workers.push(h),
                        Err(e) => log::error!("queue {queue}: restarting the worker: {e}"),
                    }
                }
                Err(reason)
            }
        }
    }
}

/// Wait for the successor's `commit`. On anything else, shut the connection down and look
/// once more: a `commit` the successor managed to send is in the queue by then, and counts.
fn wait_commit(conn: &OwnedFd) -> Result<(), String> {
    let reason = match proto::recv(conn.as_fd(), STEP_TIMEOUT) {
        Ok((Msg::Commit, _)) => return Ok(()),
        Ok((Msg::Abort { reason }, _)) => format!("successor aborted: {reason}"),
        Ok((other, _)) => format!("unexpected {other:?} instead of commit"),
        Err(e) => format!("waiting for the successor's commit: {e}"),
    };
    let _ = rustix::net::shutdown(conn, rustix::net::Shutdown::Both);
    while let Ok(Some((m, _))) = proto::recv_now(conn.as_fd()) {
        if matches!(m, Msg::Commit) {
            return Ok(());
        }
    }
    Err(reason)
}

/// The successor's side.
pub(super) struct Successor {
    pub(super) conn: OwnedFd,
    pub(super) claim: Claim,
    pub(super) sockets: Vec<XskQueue>,
    pub(super) steering: SteeringSet,
    pub(super) passed: Passed,
}

impl Successor {
    /// Ask the engine serving `cfg`'s interfaces for its data plane and map all of it. On
    /// error the predecessor is told (abort) and keeps serving.
    pub(super) fn acquire(cfg: &EngineConfig, plan: &Plan) -> Result<Successor, RunError> {
        let err = |m: String| RunError::Takeover(m);
        let setup = setup_of(cfg, plan);
        let conn = proto::connect(cfg.iface()).map_err(|e| err(e.to_string()))?;
        proto::send(
            conn.as_fd(),
            &Msg::Takeover {
                setup: setup.clone(),
            },
            &[],
        )
        .map_err(|e| err(format!("asking for the data plane: {e}")))?;
        let (offer, fds) = match proto::recv(conn.as_fd(), STEP_TIMEOUT) {
            Ok((Msg::Offer(o), fds)) => (o, fds),
            Ok((Msg::Refused { reason }, _)) => return Err(err(format!("refused: {reason}"))),
            Ok((other, _)) => return Err(err(format!("unexpected answer {other:?}"))),
            Err(e) => return Err(err(format!("waiting for the offer: {e}"))),
        };
        match Self::map(cfg, plan, &setup, &offer, fds) {
            Ok((claim, sockets, steering, passed)) => {
                log::info!(
                    "hot upgrade: mapped the data plane of pid {} ({} queue(s), XDP program id(s) {:?})",
                    offer.pid,
                    sockets.len(),
                    offer.prog_ids
                );
                Ok(Successor {
                    conn,
                    claim,
                    sockets,
                    steering,
                    passed,
                })
            }
            Err(reason) => {
                let _ = proto::send(
                    conn.as_fd(),
                    &Msg::Abort {
                        reason: reason.clone(),
                    },
                    &[],
                );
                Err(err(reason))
            }
        }
    }

    fn map(
        cfg: &EngineConfig,
        plan: &Plan,
        setup: &Setup,
        offer: &Offer,
        fds: Vec<OwnedFd>,
    ) -> Result<(Claim, Vec<XskQueue>, SteeringSet, Passed), String> {
        setup.check(&offer.setup)?;
        let x = &offer.extras;
        if cfg.forward && x.tap.is_none() {
            return Err("the running engine passed no TAP device for the kernel path".into());
        }
        if setup.dns_port.is_some() && !x.dns_tcp {
            return Err("the running engine passed no DNS-over-TCP listener".into());
        }
        let ports = cfg.ifaces.len();
        let want =
            ports * SteeringSet::FDS_PER_PORT + plan.queues.len() * (1 + ports) + ports + x.fds();
        if fds.len() != want || offer.fds != want {
            return Err(format!(
                "the offer carried {} fds ({} announced), {want} expected",
                fds.len(),
                offer.fds
            ));
        }
        let mut fds = fds.into_iter();
        let steer_fds: Vec<OwnedFd> = fds
            .by_ref()
            .take(ports * SteeringSet::FDS_PER_PORT)
            .collect();
        let steering = SteeringSet::adopt(
            &cfg.ifaces,
            offer.xdp_mode,
            &offer.prog_ids,
            steer_fds,
            &offer.rules,
            offer.steer_mode,
        )
        .map_err(|e| crate::error::chain(&e))?;
        let ifaces: Vec<&str> = cfg.ifaces.iter().map(String::as_str).collect();
        let mut sockets = Vec::with_capacity(plan.queues.len());
        for &q in &plan.queues {
            let memfd = fds.next().expect("counted");
            let socks: Vec<OwnedFd> = fds.by_ref().take(ports).collect();
            let xq = XskQueue::adopt(&ifaces, q, &plan.xsk, memfd, socks)
                .map_err(|e| crate::error::chain(&e))?;
            sockets.push(xq);
        }
        let listeners: Vec<OwnedFd> = fds.by_ref().take(ports).collect();
        let claim = ControlPlane::claim_passed(&cfg.ifaces, listeners, plan.admin_gid, cfg.ctl);
        let mut passed = Passed::default();
        if let Some(info) = &x.tap {
            passed.tap = Some((fds.next().expect("counted"), info.clone()));
        }
        if x.dns_tcp {
            passed.dns_tcp = Some(fds.next().expect("counted"));
        }
        if let Some(addr) = x.metrics {
            passed.metrics = Some((fds.next().expect("counted"), addr));
        }
        Ok((claim, sockets, steering, passed))
    }

    /// Tell the predecessor to stop its workers, take on what they held, and commit: from the
    /// successful send of `commit` on, the rings are ours (the caller starts the workers at
    /// once). Any error before that leaves the predecessor serving.
    pub(super) fn commit(conn: &OwnedFd, queues: &mut [&mut XskQueue]) -> Result<(), RunError> {
        let err = |m: String| RunError::Takeover(m);
        let abort = |reason: String| {
            let _ = proto::send(
                conn.as_fd(),
                &Msg::Abort {
                    reason: reason.clone(),
                },
                &[],
            );
            err(reason)
        };
        proto::send(conn.as_fd(), &Msg::Ready, &[])
            .map_err(|e| err(format!("telling the predecessor to stop: {e}")))?;
        let states = match proto::recv(conn.as_fd(), STEP_TIMEOUT) {
            Ok((Msg::State { queues }, _)) => queues,
            Ok((other, _)) => {
                return Err(abort(format!("unexpected {other:?} instead of the state")));
            }
            Err(e) => return Err(err(format!("waiting for the predecessor's state: {e}"))),
        };
        if states.len() != queues.len() {
            return Err(abort(format!(
                "state for {} queue(s), {} expected",
                states.len(),
                queues.len()
            )));
        }
        for (q, st) in queues.iter_mut().zip(&states) {
            q.resume(st).map_err(|e| abort(crate::error::chain(&e)))?;
        }
        proto::send(conn.as_fd(), &Msg::Commit, &[])
            .map_err(|e| err(format!("committing (the predecessor keeps serving): {e}")))?;
        // Committed. The predecessor's `done` is only for the log.
        match proto::recv(conn.as_fd(), STEP_TIMEOUT) {
            Ok((Msg::Done, _)) => log::info!("hot upgrade: committed; the predecessor exits"),
            _ => log::warn!("hot upgrade: committed, but the predecessor did not confirm"),
        }
        Ok(())
    }
}
