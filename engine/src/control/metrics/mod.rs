//! Prometheus metrics: `sluice run --metrics [ADDR:]PORT` serves the engine's counters on
//! `/metrics` (on 127.0.0.1 unless an address is given: see [`parse_listen_addr`]).
//!
//! What is exported is a [`MetricsSnapshot`], taken from a [`MetricsSource`] once per scrape.
//! [`encode`] turns it into OpenMetrics text; [`MetricsServer`] answers scrapes with it: hyper's
//! HTTP/1.1 server on a single-threaded tokio runtime, with caps on connections (in all and per
//! peer address) and a header-read timeout, so idle and slow clients by the hundred cost little
//! and delay no scrape (the module `http` says why hyper, and how the caps choose whom to close).
//!
//! It must never touch a worker's hot loop: a [`MetricsSource`] reads what the workers already
//! publish (relaxed atomics).

mod encode;
mod http;

pub use encode::{CONTENT_TYPE, encode};
pub use http::{Limits, METRICS_PATH, MetricsServer};

use crate::apps::lb::ConnTableFigures;
use crate::steer::Counters;
use crate::worker::Local;
use crate::xsk::{Census, KernelStats};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where `--metrics` listens: `PORT` alone means `127.0.0.1:PORT` (loopback: reachable from this
/// host only), `ADDR:PORT` (`0.0.0.0:9464`, `[::1]:9464`, `10.0.0.1:9464`) that address.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().map_err(|_| {
        format!("{s:?} is neither PORT nor ADDR:PORT (e.g. 9464, 127.0.0.1:9464, [::1]:9464)")
    })
}

/// Where the engine's counters come from; called once per scrape, on the server's thread.
///
/// Implementations read published values (e.g. `worker::Shared::snapshot()`); they must not
/// block for long, since a scrape waits for them.
pub trait MetricsSource: Send + Sync {
    /// The counters as they are now.
    fn collect(&self) -> MetricsSnapshot;
}

/// Any `Fn() -> MetricsSnapshot` is a source (handy for wiring `run` and for tests).
impl<F: Fn() -> MetricsSnapshot + Send + Sync> MetricsSource for F {
    fn collect(&self) -> MetricsSnapshot {
        self()
    }
}

/// One queue's numbers: the worker's counters, its frame census and the kernel's socket stats.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueMetrics {
    /// The RX queue (and AF_XDP socket) index.
    pub queue: u32,
    /// The worker's counters.
    pub counters: Local,
    /// Where the queue's UMEM frames are.
    pub census: Census,
    /// The kernel's `XDP_STATISTICS` for the socket.
    pub kernel: KernelStats,
}

/// Everything one scrape exports.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    /// The steered interface (the `iface` label).
    pub iface: String,
    /// Every port's interface, in port order (the first is `iface`).
    pub ports: Vec<String>,
    /// Per-queue numbers, in the order they are exported.
    pub queues: Vec<QueueMetrics>,
    /// The XDP program's counters; `None` if they could not be read (the family is left out
    /// rather than exported as zeros, which Prometheus would take for a counter reset).
    pub xdp: Option<Counters>,
    /// The load balancer's figures, when the engine runs `lb`.
    pub lb: Option<LbMetrics>,
    /// The DNS responder's figures, when the engine runs `dns`.
    pub dns: Option<DnsMetrics>,
}

/// The dns app's part of a scrape.
#[derive(Clone, Debug, Default)]
pub struct DnsMetrics {
    /// Per queue: the answer outcome counts, in `apps::dns::app::OUTCOMES` order.
    pub outcomes: Vec<(u32, Vec<u64>)>,
    /// Queries answered over TCP.
    pub tcp_queries: u64,
}

/// The load balancer's part of a scrape.
#[derive(Clone, Debug, Default)]
pub struct LbMetrics {
    /// Per queue: its connection table.
    pub conntrack: Vec<(u32, ConnTableFigures)>,
    /// Every backend of every VIP.
    pub backends: Vec<BackendMetrics>,
}

/// One backend of one VIP.
#[derive(Clone, Debug)]
pub struct BackendMetrics {
    /// The VIP, `ADDRESS:PORT/PROTO`.
    pub vip: String,
    /// The backend's address.
    pub backend: String,
    /// Whether it gets new flows.
    pub in_table: bool,
    /// Whether it passes its health checks (`None`: not checked).
    pub healthy: Option<bool>,
}

#[cfg(test)]
mod listen_test {
    use super::parse_listen_addr;

    #[test]
    fn a_bare_port_means_loopback() {
        let a = |s: &str| parse_listen_addr(s).map(|a| a.to_string());
        assert_eq!(a("9464").as_deref(), Ok("127.0.0.1:9464"));
        assert_eq!(a("0.0.0.0:9464").as_deref(), Ok("0.0.0.0:9464"));
        assert_eq!(a("[::1]:80").as_deref(), Ok("[::1]:80"));
        assert_eq!(a("10.1.2.3:9").as_deref(), Ok("10.1.2.3:9"));
        for bad in [
            "",
            "70000",
            "localhost:9464",
            "127.0.0.1",
            ":9464",
            "::1:80",
        ] {
            let e = parse_listen_addr(bad).unwrap_err();
            assert!(e.contains("neither PORT nor ADDR:PORT"), "{bad}: {e}");
        }
    }
}
