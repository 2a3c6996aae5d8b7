//! The control plane: the kernel's view of the network over rtnetlink.
//!
//! So far: a synchronous netlink client ([`netlink`]) and the link queries `sluice run` needs
//! before it starts (exists? up? how many queues?). It must never be called from a worker's hot
//! loop.

pub mod ctl;
pub mod link;
pub mod metrics;
pub mod mirror;
pub mod netlink;
pub mod proto;
mod render;
pub mod service;
pub mod socket;
