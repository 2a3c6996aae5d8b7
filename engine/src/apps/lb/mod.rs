//! The `lb` app: an L4 load balancer with Maglev consistent hashing, a per-worker connection
//! table, DSR and IPIP forwarding (issue 9), and its configuration file.
//!
//! - [`app`]: the per-frame work ([`Lb`]).
//! - [`table`]: the VIPs and backends the workers read, swapped whole ([`LbHandle`]).
//! - [`maglev`], [`conntrack`], [`flow`]: the hashing, the connection table, the flow key.
//! - [`config`]: the file and the VIP syntax.

pub mod app;
pub mod config;
pub mod conntrack;
pub mod flow;
pub mod maglev;
pub mod table;

#[cfg(test)]
mod tests;

pub use app::{ConnTableFigures, Lb, LbParts, LbWorkerStats};
pub use table::{BackendSpec, LbHandle, LbTable, ServiceSpec};
