//! [`LbBed`]: the one-arm load-balancer fixture — a client, one or two balancers and three
//! backends on one bridged L2 segment, the backends set up for direct server return.
//!
//! This module owns the topology, its addressing plan and the backend services' lifecycle;
//! per-namespace configuration goes through [`Netns`], the services are
//! [`BackendService`]s. It must never route anything outside its own namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use crate::bed::{End, IPV4_PREFIX_LEN, IPV6_PREFIX_LEN, Port};
use crate::error::Result;
use crate::netns::Netns;
use crate::service::BackendService;
use crate::types::{Conf, IpFamily, Route, RpFilter};
use crate::veth::{Veth, VethOpts};

/// How to build an [`LbBed`]. The default: one RX/TX queue on the balancer's veth, no second
/// balancer, the backend services on port [`LbBed::SERVICE_PORT`], static neighbour entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbBedOpts {
    /// RX and TX queues of the balancers' veths (`lb0`, both ends; ≥ 1). Every other veth
    /// has one.
    pub lb_queues: u32,
    /// Add a second balancer namespace `lb2` (its veth also named `lb0`, at .3 / ::3), for
    /// tests that compare two balancers with the same configuration.
    pub second_lb: bool,
    /// Start a [`BackendService`] on this port on every backend (`None`: start none; see
    /// [`LbBed::start_backend_service`]).
    pub service_port: Option<u16>,
    /// Add the static neighbour entries of [`LbBed::resolve_neighbours`] at once.
    pub static_neighbours: bool,
}

impl Default for LbBedOpts {
    fn default() -> Self {
        LbBedOpts {
            lb_queues: 1,
            second_lb: false,
            service_port: Some(LbBed::SERVICE_PORT),
            static_neighbours: true,
        }
    }
}

/// Name of the bridge in the switch namespace.
const BRIDGE: &str = "br0";
/// The client's veth end.
const CLIENT_IFACE: &str = "cl0";
/// A balancer's veth end (the same name in `lb` and `lb2`: each namespace has its own).
const LB_IFACE: &str = "lb0";
/// The backends' veth ends.
const BACKEND_IFACES: [&str; 3] = ["be1", "be2", "be3"];
/// Host numbers on the segment (10.77.0.N, fd77::N written with the same digits).
const CLIENT_HOST: u16 = 0x10;
const LB_HOSTS: [u16; 2] = [0x2, 0x3];
const BACKEND_HOSTS: [u16; 3] = [0x11, 0x12, 0x13];

/// The segment address of host `n`: 10.77.0.N and fd77::N, the IPv6 one spelt with the same
/// digits (host 0x11 is 10.77.0.11 and fd77::11).
fn segment_addrs(n: u16) -> (Ipv4Addr, Ipv6Addr) {
    let decimal = (n >> 4) * 10 + (n & 0xf);
    (
        Ipv4Addr::new(10, 77, 0, decimal as u8),
        Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, n),
    )
}

/// One-arm load balancing on one L2 segment: namespaces `client`, `lb` (optionally `lb2`)
/// and three backends, each joined by a veth pair to a Linux bridge in a switch namespace:
///
/// ```text
///                          netns "sw-PID-N": bridge br0 (no STP, no multicast snooping)
///           ┌──────────────┬──────────────┬──────────────┬──────────────┬──────────────┐
///         sw-cl0         sw-lb0        (sw-lb2)        sw-be1         sw-be2         sw-be3
///           │              │              │              │              │              │
///          cl0            lb0           (lb0)           be1            be2            be3
///       "cli-…"        "lb-…"         ("lb2-…")       "be1-…"        "be2-…"        "be3-…"
///    10.77.0.10/24   10.77.0.2/24   10.77.0.3/24   10.77.0.11/24  10.77.0.12/24  10.77.0.13/24
///    fd77::10/64     fd77::2/64     fd77::3/64     fd77::11/64    fd77::12/64    fd77::13/64
///    10.77.100.0/24                                lo: 10.77.100.1/32, fd77:100::1/128
///     via 10.77.0.2                                (the VIPs, on every backend)
///    fd77:100::/64
///     via fd77::2
/// ```
///
/// * **Client**: routes to the VIP networks via the balancer ([`LbBed::route_vips_via`]
///   switches them to `lb2`); ICMP redirects ignored, so the path stays the one set.
/// * **Balancers**: no forwarding (`forwarding=0`, both families): a VIP packet the engine
///   under test does not take is dropped by the kernel, never forwarded behind the test's
///   back. The engine resolves backend MACs from the kernel's neighbour table;
///   [`LbBed::resolve_neighbours`] fills it with permanent entries.
/// * **Backends**: the VIPs on `lo` (/32, /128), so a frame the balancer only re-addresses
///   (DSR: destination MAC rewritten) is delivered locally, and the answer goes from the VIP
///   straight to the client, not back through the balancer. `arp_ignore=1` (answer ARP only
///   for addresses on the asking interface) and `arp_announce=2` (ARP with the interface's own
///   address as sender), on `all` and the veth, so no backend ever claims the VIP in ARP. IPv6
///   needs no setting: Linux answers a neighbour solicitation only for addresses on the
///   interface it arrived on (or anycast/proxy entries), and the VIP is on `lo` (the bed's
///   self-test checks both families). A [`BackendService`] named `be1`…`be3` on
///   [`LbBedOpts::service_port`].
/// * **Every veth end**, the switch's included, has TX checksum offload off: a kernel sender
///   on a veth otherwise leaves UDP/TCP checksums partial, and frames that pass through an
///   AF_XDP program in copy mode would arrive with bad checksums. Reverse-path filtering is
///   off everywhere; the switch namespace has IPv6 disabled (its ports are pure L2).
///
/// ```no_run
/// use sluice_testbed::{FlowOpts, LbBed, LbBedOpts, Sources, count_by_backend, udp_flows};
///
/// let bed = LbBed::new(LbBedOpts::default()).unwrap();
/// // ... start the balancer in bed.lb().ns() on "lb0", VIP 10.77.100.1:8080/udp ...
/// let results = udp_flows(
///     bed.client().ns(),
///     bed.vip_service(false),
///     &Sources::Ephemeral(1000),
///     &FlowOpts::default(),
/// )
/// .unwrap();
/// println!("{:?}", count_by_backend(&results)); // {"be1": 331, "be2": 340, "be3": 329}
/// bed.stop_backend_service(1); // be2's port now refuses
/// ```
///
/// IPv6 addresses, link-local ones included, are usable at once (no DAD anywhere) and kept
/// across link flaps. Every bed has its own namespaces, so the fixed addresses never collide
/// between parallel tests. Dropping the bed stops the services, deletes the veths and the
/// namespaces, also when a test panics.
#[derive(Debug)]
pub struct LbBed {
    // Declaration order is drop order: services (their sockets live in the backends), the
    // veths, the nodes, the switch last.
    services: Vec<Mutex<Option<BackendService>>>,
    wires: Vec<Veth>,
    client: End,
    lbs: Vec<End>,
    backends: Vec<End>,
    switch: Netns,
    service_port: Option<u16>,
}

impl LbBed {
    /// The IPv4 VIP, on every backend's `lo`.
    pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 100, 1);
    /// The IPv6 VIP, on every backend's `lo`.
    pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x100, 0, 0, 0, 0, 0, 1);
    /// The IPv4 network the client routes via the balancer (prefix [`LbBed::VIP_V4_PREFIX`]).
    pub const VIP_NET_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 100, 0);
    /// Prefix length of [`LbBed::VIP_NET_V4`].
    pub const VIP_V4_PREFIX: u8 = 24;
    /// The IPv6 network the client routes via the balancer (prefix [`LbBed::VIP_V6_PREFIX`]).
    pub const VIP_NET_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x100, 0, 0, 0, 0, 0, 0);
    /// Prefix length of [`LbBed::VIP_NET_V6`].
    pub const VIP_V6_PREFIX: u8 = 64;
    /// The default port of the backend services.
    pub const SERVICE_PORT: u16 = 8080;
    /// The name of the bridge in [`LbBed::switch`].
    pub const BRIDGE: &'static str = BRIDGE;
    /// How many backends there are.
    pub const BACKENDS: usize = 3;

    /// Builds the bed; see [`LbBed`].
    pub fn new(opts: LbBedOpts) -> Result<LbBed> {
        let switch = Netns::new("sw")?;
        // The switch is pure L2: no IPv6 on its ports (no link-local addresses, router
        // solicitations or MLD reports of its own on the segment). Set before any port
        // exists, so every one inherits it.
        for conf in [Conf::All, Conf::Default] {
            switch.set_sysctl(&format!("net/ipv6/conf/{}/disable_ipv6", conf.dir()), "1")?;
        }
        switch.add_bridge(BRIDGE)?;

        let one_queue = VethOpts::default();
        let lb_opts = VethOpts {
            queues: opts.lb_queues.max(1),
            ..VethOpts::default()
        };
        let mut wires = Vec::new();
        let mut node = |prefix: &str, iface: &'static str, sw_iface: &str, host, vopts| {
            let ns = Netns::new(prefix)?;
            // No duplicate address detection, also not for the link-local address the
            // kernel adds when the veth comes up: while that one is tentative the node can't
            // send neighbour solicitations, so a backend's first answers to a client it has
            // not resolved yet would wait a second or two in its neighbour queue.
            for conf in [Conf::All, Conf::Default] {
                ns.set_sysctl(&format!("net/ipv6/conf/{}/accept_dad", conf.dir()), "0")?;
            }
            let veth = Veth::create(&ns, iface, &switch, sw_iface, vopts)?;
            switch.set_master(sw_iface, Some(BRIDGE))?;
            let (ipv4, ipv6) = segment_addrs(host);
            let end = End {
                port: Port {
                    iface,
                    ifindex: veth.ifindex_a(),
                    mac: veth.mac_a(),
                    ipv4,
                    ipv6,
                },
                ns,
            };
            wires.push(veth);
            Ok::<End, crate::Error>(end)
        };
        let client = node("cli", CLIENT_IFACE, "sw-cl0", CLIENT_HOST, &one_queue)?;
        let mut lbs = vec![node("lb", LB_IFACE, "sw-lb0", LB_HOSTS[0], &lb_opts)?];
        if opts.second_lb {
            lbs.push(node("lb2", LB_IFACE, "sw-lb2", LB_HOSTS[1], &lb_opts)?);
        }
        let mut backends = Vec::new();
        for (i, iface) in BACKEND_IFACES.into_iter().enumerate() {
            let sw_iface = format!("sw-{iface}");
            backends.push(node(
                &format!("be{}", i + 1),
                iface,
                &sw_iface,
                BACKEND_HOSTS[i],
                &one_queue,
            )?);
        }

        let bed = LbBed {
            services: (0..Self::BACKENDS).map(|_| Mutex::new(None)).collect(),
            wires,
            client,
            lbs,
            backends,
            switch,
            service_port: opts.service_port,
        };
        for end in bed.nodes() {
            configure_host(end)?;
        }
        for be in &bed.backends {
            configure_backend(be)?;
        }
        // The client ignores ICMP redirects: a kernel that forwards between two hosts on one
        // segment (a balancer stand-in, a misconfigured engine) would otherwise teach it a
        // shortcut that bypasses the balancer.
        for family in [IpFamily::V4, IpFamily::V6] {
            for conf in [Conf::All, Conf::Default, Conf::Iface(CLIENT_IFACE)] {
                bed.client.ns.set_sysctl(
                    &format!(
                        "net/{}/conf/{}/accept_redirects",
                        family.sysctl_dir(),
                        conf.dir()
                    ),
                    "0",
                )?;
            }
        }
        bed.route_vips_via(0)?;
        if opts.static_neighbours {
            bed.resolve_neighbours()?;
        }
        if let Some(port) = opts.service_port {
            for i in 0..Self::BACKENDS {
                bed.start_backend_service_on(i, port)?;
            }
        }
        Ok(bed)
    }

    /// The switch namespace, holding the bridge [`LbBed::BRIDGE`] and the switch ends of
    /// every veth (`sw-cl0`, `sw-lb0`, `sw-lb2`, `sw-be1`…).
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// The client: namespace and its veth end `cl0` (10.77.0.10, fd77::10).
    pub fn client(&self) -> &End {
        &self.client
    }

    /// The balancer: namespace and its veth end `lb0` (10.77.0.2, fd77::2), where the engine
    /// under test runs.
    pub fn lb(&self) -> &End {
        &self.lbs[0]
    }

    /// The second balancer (`lb0` at 10.77.0.3, fd77::3), with [`LbBedOpts::second_lb`].
    pub fn lb2(&self) -> Option<&End> {
        self.lbs.get(1)
    }

    /// Balancer `i`: 0 = [`LbBed::lb`], 1 = [`LbBed::lb2`].
    ///
    /// # Panics
    ///
    /// If there is no balancer `i`.
    pub fn balancer(&self, i: usize) -> &End {
        self.lbs
            .get(i)
            .unwrap_or_else(|| panic!("no balancer {i} (second_lb: {})", self.lbs.len() > 1))
    }

    /// Backend `i` (0-based): namespace and its veth end `be1`…`be3` (10.77.0.11…13,
    /// fd77::11…13).
    ///
    /// # Panics
    ///
    /// If `i` ≥ [`LbBed::BACKENDS`].
    pub fn backend(&self, i: usize) -> &End {
        &self.backends[i]
    }

    /// All backends, in order.
    pub fn backends(&self) -> &[End] {
        &self.backends
    }

    /// The name backend `i`'s service answers with: `be1`, `be2`, `be3`.
    pub fn backend_name(i: usize) -> String {
        format!("be{}", i + 1)
    }

    /// The backend whose service answers as `name`, if any.
    pub fn backend_index(name: &str) -> Option<usize> {
        (0..Self::BACKENDS).find(|&i| Self::backend_name(i) == name)
    }

    /// The VIP of the family of `v6`.
    pub fn vip(v6: bool) -> IpAddr {
        if v6 {
            Self::VIP_V6.into()
        } else {
            Self::VIP_V4.into()
        }
    }

    /// `end`'s segment address of the family of `v6`.
    pub fn addr(end: &End, v6: bool) -> IpAddr {
        if v6 {
            end.ipv6().into()
        } else {
            end.ipv4().into()
        }
    }

    /// The port the backend services were started on ([`LbBedOpts::service_port`]).
    pub fn service_port(&self) -> Option<u16> {
        self.service_port
    }

    /// `VIP:service port` of the family of `v6`.
    ///
    /// # Panics
    ///
    /// If the bed was built without a service port.
    pub fn vip_service(&self, v6: bool) -> SocketAddr {
        let port = self.service_port.expect("the bed runs no backend services");
        SocketAddr::new(Self::vip(v6), port)
    }

    /// Points the client's VIP routes (10.77.100.0/24, fd77:100::/64) at balancer `i`
    /// (0 = `lb`, 1 = `lb2`), replacing the current ones.
    pub fn route_vips_via(&self, i: usize) -> Result<()> {
        let lb = self.balancer(i);
        let ns = &self.client.ns;
        ns.replace_route(&Route::via(
            Self::VIP_NET_V4.into(),
            Self::VIP_V4_PREFIX,
            lb.ipv4().into(),
        ))?;
        ns.replace_route(&Route::via(
            Self::VIP_NET_V6.into(),
            Self::VIP_V6_PREFIX,
            lb.ipv6().into(),
        ))
    }

    /// Adds (or re-adds, idempotently) permanent neighbour entries: on every balancer, each
    /// backend's IPv4 and IPv6 address → its MAC (the engine resolves backend MACs from this
    /// table); on the client, each balancer's addresses → its MAC. Backends resolve the client
    /// themselves (their ARP shows `arp_announce` at work). Call again after taking a link
    /// down: the kernel flushes even permanent entries of a link that goes down.
    pub fn resolve_neighbours(&self) -> Result<()> {
        for lb in &self.lbs {
            for be in &self.backends {
                lb.ns.add_neighbour(LB_IFACE, be.ipv4().into(), be.mac())?;
                lb.ns.add_neighbour(LB_IFACE, be.ipv6().into(), be.mac())?;
            }
            self.client
                .ns
                .add_neighbour(CLIENT_IFACE, lb.ipv4().into(), lb.mac())?;
            self.client
                .ns
                .add_neighbour(CLIENT_IFACE, lb.ipv6().into(), lb.mac())?;
        }
        Ok(())
    }

    /// Stops backend `i`'s service: its sockets close, so TCP connects to the port get RST,
    /// datagrams ICMP port unreachable, and open connections are gone. Stopping a stopped
    /// service does nothing.
    pub fn stop_backend_service(&self, i: usize) {
        if let Some(mut s) = self.service(i).take() {
            s.stop();
        }
    }

    /// (Re)starts backend `i`'s service on [`LbBed::service_port`]. Starting a running
    /// service does nothing.
    ///
    /// # Panics
    ///
    /// If the bed was built without a service port (use
    /// [`LbBed::start_backend_service_on`]).
    pub fn start_backend_service(&self, i: usize) -> Result<()> {
        let port = self.service_port.expect("the bed runs no backend services");
        self.start_backend_service_on(i, port)
    }

    /// Starts backend `i`'s service on `port` (replacing a running one on another port).
    pub fn start_backend_service_on(&self, i: usize, port: u16) -> Result<()> {
        let mut slot = self.service(i);
        if slot.as_ref().is_some_and(|s| s.port() == port) {
            return Ok(());
        }
        if let Some(mut old) = slot.take() {
            old.stop();
        }
        *slot = Some(BackendService::start(
            &self.backends[i].ns,
            &Self::backend_name(i),
            port,
        )?);
        Ok(())
    }

    /// The veth pairs, in order: client, balancers, backends; end A is the node's, end B the
    /// switch's (`sw-…`).
    pub fn veths(&self) -> &[Veth] {
        &self.wires
    }

    /// Whether backend `i`'s service runs.
    pub fn backend_service_running(&self, i: usize) -> bool {
        self.service(i).is_some()
    }

    fn service(&self, i: usize) -> MutexGuard<'_, Option<BackendService>> {
        self.services[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every node (client, balancers, backends).
    fn nodes(&self) -> impl Iterator<Item = &End> {
        std::iter::once(&self.client)
            .chain(&self.lbs)
            .chain(&self.backends)
    }
}

/// What every node gets: addresses, no forwarding, no reverse-path filter.
fn configure_host(end: &End) -> Result<()> {
    let ns = &end.ns;
    let iface = end.iface();
    // Without this the kernel drops IPv6 addresses when a link goes down.
    ns.set_sysctl(&format!("net/ipv6/conf/{iface}/keep_addr_on_down"), "1")?;
    ns.add_address(iface, IpAddr::V4(end.ipv4()), IPV4_PREFIX_LEN)?;
    ns.add_address(iface, IpAddr::V6(end.ipv6()), IPV6_PREFIX_LEN)?;
    for family in [IpFamily::V4, IpFamily::V6] {
        ns.set_forwarding(family, Conf::All, false)?;
    }
    for conf in [Conf::All, Conf::Default, Conf::Iface(iface)] {
        ns.set_rp_filter(conf, RpFilter::Off)?;
    }
    Ok(())
}

/// A DSR backend: the VIPs on `lo`, never claimed in ARP.
fn configure_backend(end: &End) -> Result<()> {
    let ns = &end.ns;
    ns.add_address("lo", IpAddr::V4(LbBed::VIP_V4), 32)?;
    ns.add_address("lo", IpAddr::V6(LbBed::VIP_V6), 128)?;
    // The kernel uses the larger of `all` and the interface's value for both.
    for conf in [Conf::All, Conf::Iface(end.iface())] {
        let dir = conf.dir();
        ns.set_sysctl(&format!("net/ipv4/conf/{dir}/arp_ignore"), "1")?;
        ns.set_sysctl(&format!("net/ipv4/conf/{dir}/arp_announce"), "2")?;
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::time::Duration;

    use etherparse::{Icmpv6Type, PacketBuilder};

    use super::*;
    use crate::flows::{
        FlowError, FlowOpts, FlowResult, Sources, TcpSessions, count_by_backend, describe_failures,
        tcp_flows, udp_flows,
    };
    use crate::packet::PacketSocket;
    use crate::require_root;
    use crate::testutil::{Gone, probe, wait_link_gone};
    use crate::types::MacAddr;

    const PORT: u16 = LbBed::SERVICE_PORT;

    fn has_route(ns: &Netns, dst: IpAddr, len: u8, gw: IpAddr) -> bool {
        ns.routes()
            .unwrap()
            .iter()
            .any(|r| r.dst == dst && r.prefix_len == len && r.via == Some(gw))
    }

    /// Every flow answered, by `name`.
    fn all_from(results: &[FlowResult], name: &str, what: &str) {
        assert!(
            results.iter().all(|r| r.backend() == Some(name)),
            "{what}: not all answered by {name}: {:?}; {}",
            count_by_backend(results),
            describe_failures(results)
        );
    }

    #[test]
    fn lb_bed_is_wired_addressed_and_configured() {
        if !require_root("lb_bed_is_wired_addressed_and_configured") {
            return;
        }
        let bed = LbBed::new(LbBedOpts {
            lb_queues: 2,
            second_lb: true,
            ..Default::default()
        })
        .unwrap();
        let lb2 = bed.lb2().expect("second balancer");
        let expect = [
            (
                bed.client(),
                "cli-",
                "cl0",
                "10.77.0.10",
                "fd77::10",
                "sw-cl0",
            ),
            (bed.lb(), "lb-", "lb0", "10.77.0.2", "fd77::2", "sw-lb0"),
            (lb2, "lb2-", "lb0", "10.77.0.3", "fd77::3", "sw-lb2"),
            (
                bed.backend(0),
                "be1-",
                "be1",
                "10.77.0.11",
                "fd77::11",
                "sw-be1",
            ),
            (
                bed.backend(1),
                "be2-",
                "be2",
                "10.77.0.12",
                "fd77::12",
                "sw-be2",
            ),
            (
                bed.backend(2),
                "be3-",
                "be3",
                "10.77.0.13",
                "fd77::13",
                "sw-be3",
            ),
        ];
        let sw = bed.switch();
        assert!(sw.name().starts_with("sw-"), "{}", sw.name());
        let bridge = sw.link(LbBed::BRIDGE).unwrap();
        assert!(bridge.up, "{bridge:?}");
        for (end, prefix, iface, v4, v6, sw_iface) in expect {
            let ns = end.ns();
            assert!(ns.name().starts_with(prefix), "{} vs {prefix}", ns.name());
            assert_eq!(end.iface(), iface);
            assert_eq!(end.ipv4(), v4.parse::<Ipv4Addr>().unwrap());
            assert_eq!(end.ipv6(), v6.parse::<Ipv6Addr>().unwrap());
            let link = ns.link(iface).unwrap();
            assert!(link.up && link.lower_up, "{link:?}");
            assert_eq!(link.mac, Some(end.mac()));
            assert_eq!(link.index, end.ifindex());
            let queues = if iface == "lb0" { 2 } else { 1 };
            assert_eq!(link.num_rx_queues, queues, "{iface}");
            assert!(!ns.tx_checksum(iface).unwrap(), "{iface}: TX checksum on");
            let addrs = ns.addresses(iface).unwrap();
            // The link-local one included: usable from the start.
            assert!(addrs.iter().all(|a| !a.tentative), "{iface}: {addrs:?}");
            assert!(
                addrs
                    .iter()
                    .any(|a| matches!(a.addr, IpAddr::V6(v) if v.is_unicast_link_local()))
            );
            for (ip, len) in [
                (IpAddr::V4(end.ipv4()), IPV4_PREFIX_LEN),
                (IpAddr::V6(end.ipv6()), IPV6_PREFIX_LEN),
            ] {
                assert!(
                    addrs
                        .iter()
                        .any(|a| a.addr == ip && a.prefix_len == len && !a.tentative),
                    "{ip}/{len} missing on {iface}: {addrs:?}"
                );
            }
            for family in [IpFamily::V4, IpFamily::V6] {
                assert!(!ns.forwarding(family, Conf::All).unwrap(), "{iface}");
            }
            assert_eq!(ns.rp_filter(Conf::All).unwrap(), RpFilter::Off);

            let port = sw.link(sw_iface).unwrap();
            assert_eq!(port.master, Some(bridge.index), "{sw_iface}: {port:?}");
            assert!(port.up && port.lower_up, "{port:?}");
            assert_eq!(port.num_rx_queues, queues, "{sw_iface}");
            assert!(
                !sw.tx_checksum(sw_iface).unwrap(),
                "{sw_iface}: TX checksum on"
            );
            // Pure L2: no IPv6 link-local address on the switch's ports.
            assert!(sw.addresses(sw_iface).unwrap().is_empty(), "{sw_iface}");
        }
        assert_eq!(bed.veths().len(), 6);

        for (i, be) in bed.backends().iter().enumerate() {
            let ns = be.ns();
            let lo = ns.addresses("lo").unwrap();
            for (ip, len) in [
                (IpAddr::V4(LbBed::VIP_V4), 32),
                (IpAddr::V6(LbBed::VIP_V6), 128),
            ] {
                assert!(
                    lo.iter().any(|a| a.addr == ip && a.prefix_len == len),
                    "{ip}/{len} missing on {}'s lo: {lo:?}",
                    LbBed::backend_name(i)
                );
            }
            for conf in ["all", be.iface()] {
                assert_eq!(
                    ns.sysctl(&format!("net/ipv4/conf/{conf}/arp_ignore"))
                        .unwrap(),
                    "1"
                );
                assert_eq!(
                    ns.sysctl(&format!("net/ipv4/conf/{conf}/arp_announce"))
                        .unwrap(),
                    "2"
                );
            }
            assert!(bed.backend_service_running(i));
            assert_eq!(LbBed::backend_index(&LbBed::backend_name(i)), Some(i));
        }

        let client = bed.client().ns();
        for conf in ["all", "cl0"] {
            for fam in ["ipv4", "ipv6"] {
                assert_eq!(
                    client
                        .sysctl(&format!("net/{fam}/conf/{conf}/accept_redirects"))
                        .unwrap(),
                    "0"
                );
            }
        }
        let (v4net, v6net) = (IpAddr::V4(LbBed::VIP_NET_V4), IpAddr::V6(LbBed::VIP_NET_V6));
        assert!(has_route(client, v4net, 24, bed.lb().ipv4().into()));
        assert!(has_route(client, v6net, 64, bed.lb().ipv6().into()));
        bed.route_vips_via(1).unwrap();
        assert!(has_route(client, v4net, 24, lb2.ipv4().into()));
        assert!(has_route(client, v6net, 64, lb2.ipv6().into()));
        assert!(!has_route(client, v4net, 24, bed.lb().ipv4().into()));
        bed.route_vips_via(0).unwrap();
        assert!(has_route(client, v6net, 64, bed.lb().ipv6().into()));

        // Static neighbours: every balancer knows every backend; the client knows both
        // balancers.
        for lb in [bed.lb(), lb2] {
            let neigh = lb.ns().neighbours("lb0").unwrap();
            for be in bed.backends() {
                for ip in [IpAddr::V4(be.ipv4()), IpAddr::V6(be.ipv6())] {
                    assert!(
                        neigh
                            .iter()
                            .any(|n| n.ip == ip && n.mac == Some(be.mac()) && n.permanent),
                        "{ip} missing on {}: {neigh:?}",
                        lb.ns().name()
                    );
                }
            }
            let neigh = client.neighbours("cl0").unwrap();
            assert!(
                neigh
                    .iter()
                    .any(|n| n.ip == IpAddr::V6(lb.ipv6()) && n.mac == Some(lb.mac())),
                "{neigh:?}"
            );
        }
        assert_eq!(
            bed.vip_service(true),
            SocketAddr::new(LbBed::VIP_V6.into(), PORT)
        );
    }

    #[test]
    fn backends_answer_the_client_directly_with_their_names() {
        if !require_root("backends_answer_the_client_directly_with_their_names") {
            return;
        }
        let bed = LbBed::new(LbBedOpts::default()).unwrap();
        let opts = FlowOpts::default();
        for (i, be) in bed.backends().iter().enumerate() {
            let name = LbBed::backend_name(i);
            for v6 in [false, true] {
                let target = SocketAddr::new(LbBed::addr(be, v6), PORT);
                let tcp =
                    tcp_flows(bed.client().ns(), target, &Sources::Ephemeral(20), &opts).unwrap();
                all_from(&tcp, &name, &format!("TCP to {target}"));
                let udp =
                    udp_flows(bed.client().ns(), target, &Sources::Ephemeral(20), &opts).unwrap();
                all_from(&udp, &name, &format!("UDP to {target}"));
                assert!(udp.iter().all(|r| {
                    r.source
                        .is_some_and(|s| s.ip() == LbBed::addr(bed.client(), v6))
                }));
            }
        }
        // Thousands at once: the batching and the open-files limit hold up, and source
        // ports are all different.
        let target = SocketAddr::new(bed.backend(2).ipv4().into(), PORT);
        let tcp = tcp_flows(bed.client().ns(), target, &Sources::Ephemeral(2000), &opts).unwrap();
        all_from(&tcp, "be3", "2000 TCP flows");
        let mut ports: Vec<u16> = tcp.iter().map(|r| r.source.unwrap().port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 2000);
        let target = SocketAddr::new(bed.backend(2).ipv6().into(), PORT);
        let udp = udp_flows(bed.client().ns(), target, &Sources::Ephemeral(2000), &opts).unwrap();
        all_from(&udp, "be3", "2000 UDP flows");
        assert_eq!(
            udp.iter().map(|r| r.id).collect::<Vec<_>>(),
            (0..2000).collect::<Vec<_>>()
        );
    }

    /// Stands in for a DSR balancer with the balancer's own kernel: forwarding on, the VIPs
    /// routed to backend `i`. The kernel rewrites the MACs (and decrements the TTL, which a
    /// real DSR balancer would not); what matters here is the backends' side.
    fn kernel_dsr_via(bed: &LbBed, i: usize) {
        let ns = bed.lb().ns();
        for family in [IpFamily::V4, IpFamily::V6] {
            ns.set_forwarding(family, Conf::All, true).unwrap();
        }
        // Same interface in and out: the kernel would send the client redirects.
        for conf in ["all", "lb0"] {
            ns.set_sysctl(&format!("net/ipv4/conf/{conf}/send_redirects"), "0")
                .unwrap();
        }
        let be = bed.backend(i);
        ns.replace_route(&Route::via(LbBed::VIP_V4.into(), 32, be.ipv4().into()))
            .unwrap();
        ns.replace_route(&Route::via(LbBed::VIP_V6.into(), 128, be.ipv6().into()))
            .unwrap();
    }

    #[test]
    fn dsr_answers_go_from_the_vip_straight_to_the_client() {
        if !require_root("dsr_answers_go_from_the_vip_straight_to_the_client") {
            return;
        }
        let bed = LbBed::new(LbBedOpts::default()).unwrap();
        let opts = FlowOpts::default();
        let on_cl0 = PacketSocket::open(bed.client().ns(), "cl0").unwrap();
        for i in 0..LbBed::BACKENDS {
            kernel_dsr_via(&bed, i);
            let name = LbBed::backend_name(i);
            for v6 in [false, true] {
                let vip = bed.vip_service(v6);
                let tcp =
                    tcp_flows(bed.client().ns(), vip, &Sources::Ephemeral(30), &opts).unwrap();
                all_from(&tcp, &name, &format!("TCP to {vip}"));
                // The UDP sockets are connected to the VIP: only answers from the VIP count.
                let udp =
                    udp_flows(bed.client().ns(), vip, &Sources::Ephemeral(30), &opts).unwrap();
                all_from(&udp, &name, &format!("UDP to {vip}"));
            }
            // Every answer from a VIP came from the backend's MAC, none via the balancer.
            let mut seen = 0;
            while let Some(f) = on_cl0.recv(Duration::from_millis(100)).unwrap() {
                if f.outgoing {
                    continue;
                }
                let Some(src_ip) = ip_source(&f.data) else {
                    continue;
                };
                if src_ip == IpAddr::V4(LbBed::VIP_V4) || src_ip == IpAddr::V6(LbBed::VIP_V6) {
                    assert_eq!(
                        &f.data[6..12],
                        &bed.backend(i).mac().octets(),
                        "an answer from {src_ip} did not come from {name}'s MAC"
                    );
                    seen += 1;
                }
            }
            assert!(
                seen >= 4 * 30,
                "only {seen} answers from the VIPs seen on cl0"
            );
        }
    }

    /// The IP source address of an Ethernet frame.
    fn ip_source(f: &[u8]) -> Option<IpAddr> {
        match f.get(12..14)? {
            [0x08, 0x00] => {
                let b: [u8; 4] = f.get(26..30)?.try_into().ok()?;
                Some(IpAddr::V4(b.into()))
            }
            [0x86, 0xdd] => {
                let b: [u8; 16] = f.get(22..38)?.try_into().ok()?;
                Some(IpAddr::V6(b.into()))
            }
            _ => None,
        }
    }

    fn arp_request(from: &End, target: Ipv4Addr) -> Vec<u8> {
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&from.mac().octets());
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        f.extend_from_slice(&from.mac().octets());
        f.extend_from_slice(&from.ipv4().octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target.octets());
        f
    }

    /// A neighbour solicitation for `target`: to its solicited-node multicast group, or
    /// unicast to (`mac`, `ip`) as a reachability probe is sent.
    fn neighbour_solicitation(
        from: &End,
        target: Ipv6Addr,
        to: Option<(MacAddr, Ipv6Addr)>,
    ) -> Vec<u8> {
        let t = target.octets();
        let (dst_mac, dst_ip) = to.map(|(m, ip)| (m.octets(), ip.octets())).unwrap_or((
            [0x33, 0x33, 0xff, t[13], t[14], t[15]],
            Ipv6Addr::new(
                0xff02,
                0,
                0,
                0,
                0,
                1,
                0xff00 | u16::from(t[13]),
                u16::from_be_bytes([t[14], t[15]]),
            )
            .octets(),
        ));
        let mut payload = t.to_vec();
        payload.extend_from_slice(&[1, 1]);
        payload.extend_from_slice(&from.mac().octets());
        let builder = PacketBuilder::ethernet2(from.mac().octets(), dst_mac)
            .ipv6(from.ipv6().octets(), dst_ip, 255)
            .icmpv6(Icmpv6Type::NeighborSolicitation);
        let mut f = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut f, &payload).unwrap();
        f
    }

    /// Who answered for `ip` (ARP reply or neighbour advertisement) among `frames`: the
    /// answering MACs.
    fn claimed_by(frames: &[Vec<u8>], ip: IpAddr) -> Vec<MacAddr> {
        frames
            .iter()
            .filter(|f| match ip {
                IpAddr::V4(a) => {
                    f.len() >= 42
                        && f[12..14] == [0x08, 0x06]
                        && f[20..22] == [0, 2]
                        && f[28..32] == a.octets()
                }
                IpAddr::V6(a) => {
                    f.len() >= 78
                        && f[12..14] == [0x86, 0xdd]
                        && f[20] == 58
                        && f[54] == 136
                        && f[62..78] == a.octets()
                }
            })
            .filter_map(|f| MacAddr::from_slice(&f[6..12]))
            .collect()
    }

    #[test]
    fn no_backend_claims_the_vips_in_arp_or_neighbour_discovery() {
        if !require_root("no_backend_claims_the_vips_in_arp_or_neighbour_discovery") {
            return;
        }
        let bed = LbBed::new(LbBedOpts::default()).unwrap();
        let client = bed.client();
        let sock = PacketSocket::open(client.ns(), "cl0").unwrap();
        let ask_and_collect = |frames: Vec<Vec<u8>>| {
            // Three rounds, in case one is lost; 300 ms is ages on a veth.
            for _ in 0..3 {
                for f in &frames {
                    sock.send(f).unwrap();
                }
            }
            sock.collect_incoming(Duration::from_millis(300), usize::MAX, |f| {
                f[12..14] == [0x08, 0x06] || f[12..14] == [0x86, 0xdd]
            })
            .unwrap()
        };

        // The control: each backend's own addresses are answered, so the method works.
        let mut asks = Vec::new();
        for be in bed.backends() {
            asks.push(arp_request(client, be.ipv4()));
            asks.push(neighbour_solicitation(client, be.ipv6(), None));
        }
        let seen = ask_and_collect(asks);
        for be in bed.backends() {
            for ip in [IpAddr::V4(be.ipv4()), IpAddr::V6(be.ipv6())] {
                assert!(
                    claimed_by(&seen, ip).contains(&be.mac()),
                    "{ip} not answered by its owner"
                );
            }
        }

        // The VIPs: broadcast ARP, multicast NS, and a unicast NS to each backend (delivered
        // for sure, so the kernel's decision is what is tested, not a multicast filter).
        let mut asks = vec![
            arp_request(client, LbBed::VIP_V4),
            neighbour_solicitation(client, LbBed::VIP_V6, None),
        ];
        for be in bed.backends() {
            asks.push(neighbour_solicitation(
                client,
                LbBed::VIP_V6,
                Some((be.mac(), be.ipv6())),
            ));
        }
        let seen = ask_and_collect(asks);
        for vip in [IpAddr::V4(LbBed::VIP_V4), IpAddr::V6(LbBed::VIP_V6)] {
            let claims = claimed_by(&seen, vip);
            assert!(claims.is_empty(), "{vip} claimed by {claims:?}");
        }
    }

    #[test]
    fn a_stopped_service_refuses_and_comes_back() {
        if !require_root("a_stopped_service_refuses_and_comes_back") {
            return;
        }
        let bed = LbBed::new(LbBedOpts::default()).unwrap();
        let opts = FlowOpts {
            timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let ns = bed.client().ns();
        let be2 = bed.backend(1);
        // Open connections die with the service.
        let target = SocketAddr::new(be2.ipv4().into(), PORT);
        let (mut sessions, first) =
            TcpSessions::open(ns, target, &Sources::Ephemeral(10), &opts).unwrap();
        all_from(&first, "be2", "sessions");

        bed.stop_backend_service(1);
        bed.stop_backend_service(1); // twice is fine
        assert!(!bed.backend_service_running(1));
        let after = sessions.exchange(1);
        assert!(
            after
                .iter()
                .all(|r| matches!(r.outcome, Err(FlowError::Closed | FlowError::Reset))),
            "{after:?}"
        );
        assert_eq!(sessions.open_count(), 0);
        for v6 in [false, true] {
            let target = SocketAddr::new(LbBed::addr(be2, v6), PORT);
            let tcp = tcp_flows(ns, target, &Sources::Ephemeral(5), &opts).unwrap();
            assert!(
                tcp.iter().all(|r| r.outcome == Err(FlowError::Refused)),
                "{tcp:?}"
            );
            let udp = udp_flows(ns, target, &Sources::Ephemeral(5), &opts).unwrap();
            assert!(
                udp.iter().all(|r| r.outcome == Err(FlowError::Refused)),
                "{udp:?}"
            );
            // The others are untouched.
            let other = SocketAddr::new(LbBed::addr(bed.backend(0), v6), PORT);
            all_from(
                &udp_flows(ns, other, &Sources::Ephemeral(5), &opts).unwrap(),
                "be1",
                "be1 while be2 is stopped",
            );
        }

        bed.start_backend_service(1).unwrap();
        bed.start_backend_service(1).unwrap(); // running already: nothing happens
        assert!(bed.backend_service_running(1));
        for v6 in [false, true] {
            let target = SocketAddr::new(LbBed::addr(be2, v6), PORT);
            all_from(
                &tcp_flows(ns, target, &Sources::Ephemeral(5), &opts).unwrap(),
                "be2",
                "TCP after the restart",
            );
            all_from(
                &udp_flows(ns, target, &Sources::Ephemeral(5), &opts).unwrap(),
                "be2",
                "UDP after the restart",
            );
        }
    }

    #[test]
    fn flows_keep_their_source_ports_and_sessions_their_connections() {
        if !require_root("flows_keep_their_source_ports_and_sessions_their_connections") {
            return;
        }
        let bed = LbBed::new(LbBedOpts::default()).unwrap();
        let opts = FlowOpts::default();
        let ns = bed.client().ns();
        for v6 in [false, true] {
            let target = SocketAddr::new(LbBed::addr(bed.backend(0), v6), PORT);
            let client_ip = LbBed::addr(bed.client(), v6);
            // Fixed ports, twice in a row: the second round re-uses every port at once
            // (TCP closes with RST for that).
            for round in 0..2 {
                let sources = Sources::range(20000, 300);
                for results in [
                    tcp_flows(ns, target, &sources, &opts).unwrap(),
                    udp_flows(ns, target, &sources, &opts).unwrap(),
                ] {
                    all_from(&results, "be1", &format!("round {round} to {target}"));
                    for r in &results {
                        assert_eq!(
                            r.source.map(|s| s.port()),
                            Some(20000 + r.id as u16),
                            "{r:?}"
                        );
                    }
                }
            }
            // TCP results carry the address the kernel picked.
            let tcp = tcp_flows(ns, target, &Sources::range(20500, 3), &opts).unwrap();
            assert!(
                tcp.iter().all(|r| r.source.unwrap().ip() == client_ip),
                "{tcp:?}"
            );

            let (mut sessions, first) =
                TcpSessions::open(ns, target, &Sources::Ephemeral(100), &opts).unwrap();
            all_from(&first, "be1", "opening sessions");
            assert_eq!((sessions.len(), sessions.open_count()), (100, 100));
            for round in 1..=3 {
                let r = sessions.exchange(round);
                all_from(&r, "be1", &format!("session round {round}"));
                // Same connection: same source as when opened.
                for (a, b) in first.iter().zip(&r) {
                    assert_eq!(a.source, b.source);
                }
            }
        }
    }

    #[test]
    fn ip_tunnels_are_created_where_the_kernel_can() {
        if !require_root("ip_tunnels_are_created_where_the_kernel_can") {
            return;
        }
        let bed = LbBed::new(LbBedOpts {
            service_port: None,
            ..Default::default()
        })
        .unwrap();
        assert!(!bed.backend_service_running(0));
        let be = bed.backend(0);
        let ns = be.ns();
        let wrong = ns
            .add_ip_tunnel("t4", crate::IpTunnel::Ipip, be.ipv6().into())
            .unwrap_err();
        assert!(wrong.to_string().contains("wrong family"), "{wrong}");
        for (name, kind, local) in [
            ("t4", crate::IpTunnel::Ipip, IpAddr::V4(be.ipv4())),
            ("t6", crate::IpTunnel::Ip6Tnl, IpAddr::V6(be.ipv6())),
        ] {
            match ns.add_ip_tunnel(name, kind, local) {
                Ok(()) => {
                    let link = ns.link(name).unwrap();
                    assert!(link.up, "{link:?}");
                }
                // No module: the kernel says the kind is not supported.
                Err(e) => {
                    eprintln!("{} tunnels unavailable here: {e}", kind.name());
                    assert!(
                        matches!(
                            e.raw_os_error(),
                            Some(libc::EOPNOTSUPP | libc::ENOENT | libc::EINVAL)
                        ),
                        "{e}: {:?}",
                        std::error::Error::source(&e)
                    );
                    assert!(e.to_string().contains(kind.name()), "{e}");
                }
            }
        }
    }

    #[test]
    fn drop_removes_every_namespace_also_on_panic() {
        if !require_root("drop_removes_every_namespace_also_on_panic") {
            return;
        }
        let observer = Netns::new("obs").unwrap();
        let mut probes = Vec::new();
        let mut gone = Vec::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let bed = LbBed::new(LbBedOpts {
                second_lb: true,
                ..Default::default()
            })
            .unwrap();
            let mut all = vec![bed.switch(), bed.client().ns(), bed.lb().ns()];
            all.push(bed.lb2().unwrap().ns());
            all.extend(bed.backends().iter().map(End::ns));
            for (i, ns) in all.into_iter().enumerate() {
                probes.push(probe(&observer, &format!("probe{i}"), ns));
                gone.push(Gone::record(ns));
            }
            panic!("the test body fails");
        }));
        assert!(result.is_err());
        assert_eq!(gone.len(), 7);
        for g in &gone {
            g.assert();
        }
        for i in 0..7 {
            wait_link_gone(&observer, &format!("probe{i}"));
        }
    }
}
