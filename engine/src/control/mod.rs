//! The control plane: how a running engine is observed and changed, and how it learns the
//! kernel's view of the network.
//!
//! What it offers:
//!
//! - **Kernel view** — [`netlink::Netlink`], a synchronous rtnetlink client;
//!   [`link::get_link`], the one-shot query `sluice run` makes before it starts (exists? up? how
//!   many RX queues? XDP attached?); [`mirror::Mirror::start`], which dumps links, addresses,
//!   neighbours and main-table routes and then follows the kernel's change events, publishing
//!   immutable [`mirror::Snapshot`]s and sending [`mirror::LinkEvent`]s (up, down, MTU changed,
//!   deleted) to subscribers of [`mirror::MirrorHandle::events`].
//! - **Control socket** — [`proto`], the JSON protocol (one request and one reply per datagram,
//!   strict decoding whose errors name the field); `socket`, the `SOCK_SEQPACKET` server at the
//!   abstract name `sluice/<iface>` that doubles as the single-instance lock and lets any local
//!   user read but only root or the admin group change; [`ctl`], the client behind `sluice ctl`
//!   (replies laid out for humans by `render`).
//! - **Metrics** — [`metrics`], the OpenMetrics encoding of the counters and the bounded HTTP
//!   server for `sluice run --metrics`.
//! - **The engine's face** — [`ControlPlane`], the one thing the engine starts and stops: it
//!   claims the interface's control socket ([`ControlPlane::claim`], the single-instance lock,
//!   taken before anything is attached), then starts the mirror, the socket server and the
//!   metrics endpoint around an `EngineService` that answers requests and scrapes from the
//!   workers' published counters, the steering maps and the mirror.
//!
//! Everything here runs on control threads of its own. It must never be called from a worker's
//! hot loop, and it never blocks a worker: it reads what the workers publish with plain stores.
//! The mirror never changes kernel state; the only changes a client can make are steering rules
//! and shutdown.

pub mod capture;
pub mod ctl;
pub mod dns;
pub mod fib_updater;
pub mod health;
pub mod lb;
pub mod link;
pub mod metrics;
pub mod mirror;
pub mod netlink;
pub mod proto;
mod render;
pub(crate) mod service;
pub(crate) mod socket;
pub mod takeover;

pub use service::{RunInfo, WorkerView};
pub use socket::{ControlError, CtlLimits, Peer};

use crate::steer::{Counters, SteeringSet};
use metrics::MetricsServer;
use mirror::{LinkEvent, Mirror, MirrorHandle};
use service::EngineService;
use socket::{ControlServer, ServerHandle};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The control socket could not be served.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The rtnetlink mirror could not start.
    #[error("starting the rtnetlink mirror: {0}")]
    Mirror(String),
    /// The metrics endpoint could not start.
    #[error("serving metrics on {addr}")]
    Metrics {
        /// Address asked for.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The control sockets of the engine's interfaces (one per port, all answering for the same
/// engine), claimed but not yet served: the single-instance lock. A second engine on any of
/// those interfaces fails at [`ControlPlane::claim`], naming the first.
pub struct Claim {
    servers: Vec<ControlServer>,
}

impl Claim {
    /// Duplicates of the listening sockets, one per interface, to pass to a successor.
    pub fn listener_fds(&self) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
        self.servers
            .iter()
            .map(|s| s.listener().try_clone_to_owned())
            .collect()
    }
}

/// What the control plane needs to know about a started engine.
pub struct EngineFacts {
    /// Static facts for `status`.
    pub info: RunInfo,
    /// The steering (maps and link); `None` once detached.
    pub steering: Arc<Mutex<Option<SteeringSet>>>,
    /// The workers and their published counters.
    pub workers: Vec<WorkerView>,
    /// The flag `shutdown` sets.
    pub term: Arc<AtomicBool>,
    /// The load balancer's control side, when the engine runs `lb`.
    pub lb: Option<Arc<lb::LbService>>,
    /// The dns app's control side, when the engine runs `dns`.
    pub dns: Option<Arc<dns::DnsService>>,
    /// Where a successor's `takeover` connection goes (the engine's supervising thread runs
    /// the hand-over); `None`: takeovers are refused.
    pub takeover: Option<std::sync::mpsc::Sender<TakeoverConn>>,
}

/// A successor's control connection, handed to the engine for a hot upgrade.
pub struct TakeoverConn {
    /// The connection.
    pub conn: std::os::fd::OwnedFd,
    /// Who asked (authorized as for a change).
    pub peer: socket::Peer,
    /// Its first message (`takeover`).
    pub first: Vec<u8>,
}

/// The engine's service plus the hand-off of `takeover` connections.
struct Front {
    service: Arc<EngineService>,
    takeover: Option<std::sync::mpsc::Sender<TakeoverConn>>,
}

impl socket::Handler for Front {
    fn handle(
        &self,
        req: &proto::Request,
        peer: &socket::Peer,
    ) -> Result<serde_json::Value, socket::HandlerError> {
        self.service.handle(req, peer)
    }

    fn handle_stream(
        &self,
        req: &proto::Request,
        peer: &socket::Peer,
        out: std::os::fd::OwnedFd,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<serde_json::Value, socket::HandlerError> {
        self.service.handle_stream(req, peer, out, cancelled)
    }

    fn takeover(
        &self,
        conn: std::os::fd::OwnedFd,
        peer: &socket::Peer,
        first: &[u8],
    ) -> Result<(), String> {
        let Some(tx) = &self.takeover else {
            return Err("this engine cannot hand over its data plane".into());
        };
        tx.send(TakeoverConn {
            conn,
            peer: *peer,
            first: first.to_vec(),
        })
        .map_err(|_| "the engine is stopping".to_string())
    }
}

/// A running control plane: mirror, control socket server, optional metrics endpoint.
pub struct ControlPlane {
    service: Arc<EngineService>,
    servers: Vec<ServerHandle>,
    metrics: Option<MetricsServer>,
    link_events: Receiver<LinkEvent>,
}

impl ControlPlane {
    /// Claim `sluice/<iface>` for every interface of `ifaces` (the single-instance lock), so
    /// `sluice ctl --iface X` reaches the engine through any of its ports. Members of
    /// `admin_gid` (and root) may change the engine once it serves; `limits` bound the
    /// connections of each socket.
    pub fn claim(
        ifaces: &[String],
        admin_gid: Option<u32>,
        limits: CtlLimits,
    ) -> Result<Claim, ControlError> {
        let servers = ifaces
            .iter()
            .map(|iface| ControlServer::bind(iface, admin_gid, limits))
            .collect::<Result<_, _>>()?;
        Ok(Claim { servers })
    }

    /// A claim made of the listening sockets a predecessor passed in a hot upgrade, one per
    /// interface of `ifaces`, in order.
    pub fn claim_passed(
        ifaces: &[String],
        listeners: Vec<std::os::fd::OwnedFd>,
        admin_gid: Option<u32>,
        limits: CtlLimits,
    ) -> Claim {
        let servers = ifaces
            .iter()
            .zip(listeners)
            .map(|(iface, fd)| ControlServer::from_listener(fd, iface, admin_gid, limits))
            .collect();
        Claim { servers }
    }

    /// Start the rtnetlink mirror (on a thread of its own: call after privileges are dropped).
    /// It is started apart from the rest so the engine can build what needs the kernel's view
    /// (the forwarding table) before its workers start.
    pub fn start_mirror() -> Result<MirrorHandle, StartError> {
        Mirror::start().map_err(|e| StartError::Mirror(e.to_string()))
    }

    /// Bind the metrics endpoint's listening socket on `addr` (before the privilege drop, so
    /// that a hot upgrade can pass it on and a low port works).
    pub fn bind_metrics(addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Metrics { addr, source })
    }

    /// Serve the claimed sockets and, with `metrics` (a listening socket from
    /// [`ControlPlane::bind_metrics`] or a predecessor, and its limits), the metrics endpoint,
    /// each on threads of their own, answering from `engine` and `mirror`. Call after
    /// privileges are dropped.
    pub fn start(
        claim: Claim,
        engine: EngineFacts,
        mirror: MirrorHandle,
        metrics: Option<(std::net::TcpListener, metrics::Limits)>,
    ) -> Result<ControlPlane, StartError> {
        let link_events = mirror.events();
        let service = Arc::new(EngineService::new(
            engine.info,
            engine.steering,
            engine.workers,
            Some(mirror),
            engine.term,
            engine.lb,
            engine.dns,
        ));
        let front: Arc<dyn socket::Handler> = Arc::new(Front {
            service: service.clone(),
            takeover: engine.takeover,
        });
        let mut servers = Vec::with_capacity(claim.servers.len());
        for server in claim.servers {
            servers.push(server.spawn(front.clone())?);
        }
        let metrics = match metrics {
            Some((listener, limits)) => {
                let addr = listener
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                Some(
                    MetricsServer::start_on(listener, service.clone(), limits)
                        .map_err(|source| StartError::Metrics { addr, source })?,
                )
            }
            None => None,
        };
        Ok(ControlPlane {
            service,
            servers,
            metrics,
            link_events,
        })
    }

    /// Re-read the load balancer's file or the zones (SIGHUP); `None` if the app has nothing
    /// to reload.
    pub fn reload(&self) -> Option<Result<serde_json::Value, String>> {
        self.service.reload()
    }

    /// The XDP program's counters; `None` once detached or if the map cannot be read.
    pub fn xdp_counters(&self) -> Option<Counters> {
        self.service.xdp_counters()
    }

    /// Link events (up, down, MTU, deleted) from the mirror, for the engine's supervisor.
    pub fn link_events(&self) -> &Receiver<LinkEvent> {
        &self.link_events
    }

    /// Stop serving: the socket name is released, the metrics endpoint closed.
    pub fn stop(self) {
        for server in self.servers {
            server.stop();
        }
        if let Some(m) = self.metrics {
            m.stop();
        }
    }
}
