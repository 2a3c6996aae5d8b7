//! The `lb` app's building blocks: an L4 load balancer with Maglev consistent hashing and a
//! per-worker connection table (issue 9), and its configuration file. The per-frame app itself
//! comes on top of these.

pub mod config;
pub mod conntrack;
pub mod flow;
pub mod maglev;
