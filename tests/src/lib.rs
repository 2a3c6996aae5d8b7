//! `sluice-testbed`: network namespaces and veth pairs for privileged tests.
//!
//! A small library that CI jobs (sluice's own and anyone else's) use to build
//! throw-away networks out of Linux network namespaces and veth pairs:
//!
//! * [`Netns`] — a uniquely named namespace, created the way `ip netns add`
//!   creates one (so `ip netns exec NAME ...` works for a human debugging a
//!   failed test), with `lo` up. Closures and processes run inside it with
//!   [`Netns::run`] and [`Netns::spawn`]; links, addresses, neighbours and
//!   routes inside it are managed with its methods.
//! * [`Veth`] — a veth pair whose two ends are created directly in two
//!   namespaces, both brought up.
//! * [`TestBed`] — the usual fixture: an "engine" namespace and a "peer"
//!   namespace joined by a veth pair, addressed over IPv4 and IPv6, with
//!   static neighbour entries both ways and TX checksum offload off.
//! * [`RouterBed`] — the router fixture: client — router — server
//!   namespaces (`c0`↔`r0`, `r1`↔`s0`, optionally a backup link `r2`↔`s1`),
//!   addressed over IPv4 and IPv6 (10.1/10.2/10.3.0.0/24, fd00:1/2/3::/64,
//!   a service address 10.9.0.1 / fd00:9::1 on the server's `lo`), default
//!   routes in the client and server, primary and backup routes of
//!   different metrics in the router, kernel forwarding on in the router
//!   (or off, on request), neighbours left to the kernel unless asked.
//!   [`Netns`] sets routes (with metrics, [`Netns::replace_route`]),
//!   neighbours, links and the `forwarding` / `rp_filter` sysctls in any of
//!   the three namespaces.
//! * [`LbBed`] — the load-balancer fixture: a client, a balancer (and
//!   optionally a second one) and three backends, each in its namespace, on
//!   one L2 segment (a bridge in a switch namespace), 10.77.0.0/24 and
//!   fd77::/64; the backends set up for direct server return (the VIPs
//!   10.77.100.1 / fd77:100::1 on `lo`, never claimed in ARP/ND), each
//!   running a [`BackendService`] that answers with the backend's name.
//! * [`udp_flows`], [`tcp_flows`], [`TcpSessions`] — thousands of client
//!   flows at once, each reporting which backend answered it (or why none
//!   did), with ephemeral or fixed source ports ([`Sources`]).
//! * [`dns`] — the DNS correctness harness: NSD and Knot DNS in namespaces
//!   ([`dns::DnsBed`], [`dns::DnsServer`]), a query corpus generated from the
//!   test zones in `tests/zones/`, asked with `kdig`, and a comparator that
//!   reports differences RRset by RRset, with written exceptions.
//! * [`require_root`] — the skip-or-fail gate for privileged tests.
//!
//! Everything is torn down on drop, also when a test panics: dropping a
//! [`Netns`] unmounts and removes `/run/netns/NAME`, which destroys the
//! namespace and every interface in it once nothing else holds it.
//!
//! All configuration goes over rtnetlink (synchronously, no async runtime);
//! nothing shells out to `ip`. The only ioctl (`SIOCETHTOOL`, for the TX
//! checksum setting) lives in the private `sys` module, the one place where
//! `unsafe` is allowed.
//!
//! What this crate must never do: touch interfaces or namespaces it did not
//! create, or send traffic anywhere but between its own namespaces.
//!
//! ```no_run
//! use sluice_testbed::{TestBed, VethOpts, require_root};
//!
//! if require_root("my_test") {
//!     let bed = TestBed::pair(VethOpts::default()).unwrap();
//!     let sock = bed
//!         .peer()
//!         .ns()
//!         .run(|| std::net::UdpSocket::bind((bed.peer().ipv4(), 9000)))
//!         .unwrap()
//!         .unwrap();
//!     // ... run the engine on bed.engine().iface() inside bed.engine().ns() ...
//!     # drop(sock);
//! } // everything is gone here, also after a panic
//! ```
//!
//! A router test: the app under test runs in [`RouterBed::router`] on
//! `r0`/`r1`; the client reaches the server through it.
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use sluice_testbed::{RouterBed, RouterBedOpts, require_root};
//!
//! if require_root("routes_udp") {
//!     let bed = RouterBed::new(RouterBedOpts {
//!         forwarding: false, // the app forwards, not the kernel
//!         ..Default::default()
//!     })
//!     .unwrap();
//!     let server = bed.server().run(|| UdpSocket::bind((bed.s0().ipv4(), 9000))).unwrap().unwrap();
//!     let client = bed.client().run(|| UdpSocket::bind((bed.c0().ipv4(), 0))).unwrap().unwrap();
//!     // ... start the app in bed.router() on bed.r0().iface() and bed.r1().iface() ...
//!     client.send_to(b"ping", (bed.s0().ipv4(), 9000)).unwrap();
//!     # drop(server);
//! }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod bed;
pub mod dns;
mod error;
mod flows;
mod lb;
mod netlink;
mod netns;
mod packet;
mod service;
mod sock;
mod sys;
#[cfg(test)]
mod testutil;
mod topology;
mod types;
mod veth;

pub use bed::{
    ENGINE_IFACE, ENGINE_IPV4, ENGINE_IPV6, End, IPV4_PREFIX_LEN, IPV6_PREFIX_LEN, PEER_IFACE,
    PEER_IPV4, PEER_IPV6, Port, TestBed,
};
pub use error::{Error, Result};
pub use flows::{
    FlowError, FlowOpts, FlowResult, Sources, TcpSessions, count_by_backend, describe_failures,
    failures, tcp_flows, udp_flows,
};
pub use lb::{LbBed, LbBedOpts};
pub use netns::Netns;
pub use packet::{Frame, PacketSocket};
pub use service::BackendService;
pub use topology::{RouterBed, RouterBedOpts, Segment};
pub use types::{
    Conf, IfAddr, IpFamily, IpTunnel, Link, MacAddr, Neighbour, ParseMacError, Route, RpFilter,
};
pub use veth::{READY_TIMEOUT, Veth, VethOpts};

/// Gate for privileged tests: returns `true` when the process runs as root.
///
/// Otherwise prints `skipping <test_name>: needs root (...)` to stderr and
/// returns `false`, so the test can return early — unless the environment
/// variable `CI` is `true` (or `1`), in which case it panics: in CI a skipped
/// privileged test is a failure, so a pipeline can't go green by skipping.
///
/// ```no_run
/// #[test]
/// fn reflects_udp() {
///     if !sluice_testbed::require_root("reflects_udp") {
///         return;
///     }
///     // ...
/// }
/// ```
pub fn require_root(test_name: &str) -> bool {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return true;
    }
    let reason = format!(
        "needs root (network namespaces, veth, XDP; running as euid {euid}; try `sudo -E cargo test`)"
    );
    if ci_requires_privileged() {
        panic!("{test_name}: {reason}; CI=true, and in CI a skip is a failure");
    }
    eprintln!("skipping {test_name}: {reason}");
    false
}

/// `CI=true` (what GitHub Actions, GitLab and most CI systems set) or `CI=1`.
fn ci_requires_privileged() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}
