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
//! - **The engine's face** — `service::EngineService` answers control requests and metric
//!   scrapes from the workers' published counters, the steering maps and the mirror.
//!
//! Everything here runs on control threads of its own. It must never be called from a worker's
//! hot loop, and it never blocks a worker: it reads what the workers publish with plain stores.
//! The mirror never changes kernel state; the only changes a client can make are steering rules
//! and shutdown.

pub mod ctl;
pub mod link;
pub mod metrics;
pub mod mirror;
pub mod netlink;
pub mod proto;
mod render;
pub(crate) mod service;
pub(crate) mod socket;
