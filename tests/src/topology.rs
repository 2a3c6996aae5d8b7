//! [`RouterBed`]: the three-namespace fixture for router tests.
//!
//! This module owns the topology and its addressing plan; per-namespace
//! configuration goes through [`Netns`], and it must never route anything
//! outside its own three namespaces. The picture and the route table are
//! on [`RouterBed`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bed::{IPV4_PREFIX_LEN, IPV6_PREFIX_LEN, Port};
use crate::error::Result;
use crate::netns::Netns;
use crate::types::{Conf, IpFamily, Route, RpFilter};
use crate::veth::{READY_TIMEOUT, Veth, VethOpts};

/// One of the [`RouterBed`]'s veth links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment {
    /// client `c0` ↔ router `r0`: 10.1.0.0/24, fd00:1::/64.
    Client,
    /// router `r1` ↔ server `s0`: 10.2.0.0/24, fd00:2::/64.
    Server,
    /// router `r2` ↔ server `s1` (only with [`RouterBedOpts::backup_link`]):
    /// 10.3.0.0/24, fd00:3::/64.
    Backup,
}

impl Segment {
    /// All three segments.
    pub const ALL: [Segment; 3] = [Segment::Client, Segment::Server, Segment::Backup];

    /// The segment's number in its subnets (10.N.0.0/24, fd00:N::/64).
    const fn net(self) -> u8 {
        match self {
            Segment::Client => 1,
            Segment::Server => 2,
            Segment::Backup => 3,
        }
    }

    /// The segment's IPv4 network (prefix [`IPV4_PREFIX_LEN`]).
    pub const fn ipv4_net(self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net(), 0, 0)
    }

    /// The segment's IPv6 network (prefix [`IPV6_PREFIX_LEN`]).
    pub const fn ipv6_net(self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, self.net() as u16, 0, 0, 0, 0, 0, 0)
    }

    /// The address of host number `host` on this segment (1 = router).
    const fn addrs(self, host: u8) -> (Ipv4Addr, Ipv6Addr) {
        (
            Ipv4Addr::new(10, self.net(), 0, host),
            Ipv6Addr::new(0xfd00, self.net() as u16, 0, 0, 0, 0, 0, host as u16),
        )
    }

    /// Interface names: (router end, client/server end).
    const fn ifaces(self) -> (&'static str, &'static str) {
        match self {
            Segment::Client => ("r0", "c0"),
            Segment::Server => ("r1", "s0"),
            Segment::Backup => ("r2", "s1"),
        }
    }
}

/// One link of the bed: the veth and its two ends.
#[derive(Debug)]
struct Wire {
    veth: Veth,
    /// The end in the router.
    router: Port,
    /// The end in the client or the server.
    host: Port,
}

/// How to build a [`RouterBed`]. The default: one queue per veth, the
/// kernel's MTU, TX checksum offload off, no backup link, forwarding on in
/// the router, no static neighbours, reverse-path filtering off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterBedOpts {
    /// Queues, MTU and TX checksum offload of every veth (all ends alike).
    /// Keep `tx_checksum` off (the default): kernel sockets in the client
    /// and server send from these ends, and with offload on their UDP/TCP
    /// checksums cross the veth unfinished (see
    /// [`Netns::set_tx_checksum`]), so a router working in user space
    /// would forward frames with wrong checksums.
    pub veth: VethOpts,
    /// Add the second router—server link `r2` ↔ `s1`, with its routes at
    /// [`RouterBed::BACKUP_METRIC`].
    pub backup_link: bool,
    /// Kernel forwarding (IPv4 and IPv6, `conf/all`) in the router. Off
    /// leaves the router a host that drops what isn't addressed to it.
    pub forwarding: bool,
    /// Pre-fill permanent neighbour entries both ways on every link (see
    /// [`RouterBed::add_static_neighbours`]). Off by default: a forwarding
    /// app must cope with the kernel resolving next hops itself.
    pub static_neighbours: bool,
    /// IPv4 reverse-path filter of the router (`all` and every interface).
    /// The client and server always get [`RpFilter::Off`]. Set explicitly
    /// because a new namespace inherits the host's IPv4 settings.
    pub rp_filter: RpFilter,
}

impl Default for RouterBedOpts {
    fn default() -> Self {
        RouterBedOpts {
            veth: VethOpts::default(),
            backup_link: false,
            forwarding: true,
            static_neighbours: false,
            rp_filter: RpFilter::Off,
        }
    }
}

/// Which namespace a fixture route belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Router,
    Server,
}

/// Three namespaces, client — router — server, joined by veth pairs
/// (client `c0` ↔ router `r0`, router `r1` ↔ server `s0`, and optionally a
/// backup link router `r2` ↔ server `s1`), addressed over IPv4 and IPv6:
///
/// ```text
///  netns "cli-PID-N"       netns "rtr-PID-N"                      netns "srv-PID-N"
///  ┌────────────────┐      ┌──────────────────────────────┐      ┌──────────────────────┐
///  │ c0             │──────│ r0                        r1 │──────│ s0                   │
///  │ 10.1.0.2/24    │client│ 10.1.0.1/24      10.2.0.1/24 │server│ 10.2.0.2/24          │
///  │ fd00:1::2/64   │      │ fd00:1::1/64    fd00:2::1/64 │      │ fd00:2::2/64         │
///  │                │      │                              │      │                      │
///  │ default via    │      │                           r2 │backup│ s1  (option)         │
///  │  10.1.0.1      │      │                  10.3.0.1/24 │──────│ 10.3.0.2/24          │
///  │  fd00:1::1     │      │                 fd00:3::1/64 │      │ fd00:3::2/64         │
///  └────────────────┘      └──────────────────────────────┘      │ lo: 10.9.0.1/32      │
///                                                                │     fd00:9::1/128    │
///                                                                └──────────────────────┘
/// ```
///
/// Routes the bed installs (all in the main table):
///
/// | where  | route                                                        |
/// |--------|--------------------------------------------------------------|
/// | client | `default via 10.1.0.1`, `default via fd00:1::1`              |
/// | server | `default via 10.2.0.1 metric 100`, `default via fd00:2::1 metric 100` |
/// | server | with the backup link: `default via 10.3.0.1 metric 200` (and v6) |
/// | router | `10.9.0.1/32 via 10.2.0.2 metric 100`, `fd00:9::1/128 via fd00:2::2 metric 100` |
/// | router | with the backup link: `... via 10.3.0.2 metric 200` (and v6) |
///
/// plus the connected routes the kernel adds for each address. The
/// server's loopback "service" address is the destination a failover test
/// aims at: unlike `s0`'s and `s1`'s addresses it is reachable over either
/// link. Every bed has its own namespaces, so the fixed addresses never
/// collide between parallel tests.
///
/// Every end is up and ready, its IPv6 address usable at once (no DAD) and
/// kept across a link flap (`keep_addr_on_down=1`). Forwarding is on in the
/// router unless [`RouterBedOpts::forwarding`] says otherwise, and off in
/// the client and server. Neighbours are resolved by the kernel unless
/// [`RouterBedOpts::static_neighbours`] is set.
///
/// Dropping the bed deletes the veths and the three namespaces, also when
/// the test panics.
#[derive(Debug)]
pub struct RouterBed {
    // Declaration order is drop order: the veths go first, while the
    // namespaces still exist (though either order would be safe).
    client_wire: Wire,
    server_wire: Wire,
    backup_wire: Option<Wire>,
    client: Netns,
    router: Netns,
    server: Netns,
    static_neighbours: bool,
}

impl RouterBed {
    /// The server's IPv4 service address, on its `lo` (/32).
    pub const SERVICE_IPV4: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
    /// The server's IPv6 service address, on its `lo` (/128).
    pub const SERVICE_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 1);
    /// Metric of the routes over the server link (the router's routes to
    /// the service addresses, the server's default routes).
    pub const PRIMARY_METRIC: u32 = 100;
    /// Metric of the same routes over the backup link.
    pub const BACKUP_METRIC: u32 = 200;

    /// Builds the bed; see [`RouterBed`].
    pub fn new(opts: RouterBedOpts) -> Result<RouterBed> {
        let client = Netns::new("cli")?;
        let router = Netns::new("rtr")?;
        let server = Netns::new("srv")?;
        let client_wire = wire(&router, &client, Segment::Client, &opts.veth)?;
        let server_wire = wire(&router, &server, Segment::Server, &opts.veth)?;
        let backup_wire = if opts.backup_link {
            Some(wire(&router, &server, Segment::Backup, &opts.veth)?)
        } else {
            None
        };
        let bed = RouterBed {
            client_wire,
            server_wire,
            backup_wire,
            client,
            router,
            server,
            static_neighbours: opts.static_neighbours,
        };

        // Hosts are hosts: their IPv4 values came from the host's, which
        // may forward or filter.
        for ns in [&bed.client, &bed.server] {
            for family in [IpFamily::V4, IpFamily::V6] {
                ns.set_forwarding(family, Conf::All, false)?;
            }
        }
        bed.set_forwarding(opts.forwarding)?;
        for (ns, ports) in bed.namespaces_with_ports() {
            let mode = if std::ptr::eq(ns, &bed.router) {
                opts.rp_filter
            } else {
                RpFilter::Off
            };
            ns.set_rp_filter(Conf::All, mode)?;
            for port in &ports {
                ns.set_rp_filter(Conf::Iface(port.iface), mode)?;
                // Without this the kernel drops IPv6 addresses when a link
                // goes down, and a failover test would lose them.
                ns.set_sysctl(
                    &format!("net/ipv6/conf/{}/keep_addr_on_down", port.iface),
                    "1",
                )?;
                ns.add_address(port.iface, IpAddr::V4(port.ipv4), IPV4_PREFIX_LEN)?;
                ns.add_address(port.iface, IpAddr::V6(port.ipv6), IPV6_PREFIX_LEN)?;
            }
        }
        bed.server
            .add_address("lo", IpAddr::V4(Self::SERVICE_IPV4), 32)?;
        bed.server
            .add_address("lo", IpAddr::V6(Self::SERVICE_IPV6), 128)?;
        for segment in Segment::ALL {
            bed.add_routes(segment)?;
        }
        if bed.static_neighbours {
            bed.add_static_neighbours()?;
        }
        Ok(bed)
    }

    /// The client namespace (`c0`).
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The router namespace (`r0`, `r1`, and `r2` with the backup link).
    pub fn router(&self) -> &Netns {
        &self.router
    }

    /// The server namespace (`s0`, and `s1` with the backup link; the
    /// service addresses on `lo`).
    pub fn server(&self) -> &Netns {
        &self.server
    }

    /// The client's end of the client link: 10.1.0.2, fd00:1::2.
    pub fn c0(&self) -> &Port {
        &self.client_wire.host
    }

    /// The router's end of the client link: 10.1.0.1, fd00:1::1.
    pub fn r0(&self) -> &Port {
        &self.client_wire.router
    }

    /// The router's end of the server link: 10.2.0.1, fd00:2::1.
    pub fn r1(&self) -> &Port {
        &self.server_wire.router
    }

    /// The server's end of the server link: 10.2.0.2, fd00:2::2.
    pub fn s0(&self) -> &Port {
        &self.server_wire.host
    }

    /// The router's end of the backup link (10.3.0.1, fd00:3::1), if the
    /// bed has one.
    pub fn r2(&self) -> Option<&Port> {
        self.backup_wire.as_ref().map(|w| &w.router)
    }

    /// The server's end of the backup link (10.3.0.2, fd00:3::2), if the
    /// bed has one.
    pub fn s1(&self) -> Option<&Port> {
        self.backup_wire.as_ref().map(|w| &w.host)
    }

    /// Both ends of `segment` — (router end, client/server end) — or
    /// `None` for [`Segment::Backup`] on a bed without one.
    pub fn ports(&self, segment: Segment) -> Option<(&Port, &Port)> {
        self.wire(segment).map(|w| (&w.router, &w.host))
    }

    /// The veth of `segment` (end A in the router), if the bed has it.
    pub fn veth(&self, segment: Segment) -> Option<&Veth> {
        self.wire(segment).map(|w| &w.veth)
    }

    /// The namespace at the far end of `segment` from the router: the
    /// client for [`Segment::Client`], the server otherwise.
    pub fn host(&self, segment: Segment) -> &Netns {
        match segment {
            Segment::Client => &self.client,
            Segment::Server | Segment::Backup => &self.server,
        }
    }

    /// Turns kernel forwarding in the router on or off, IPv4 and IPv6
    /// (`net.ipv{4,6}.conf.all.forwarding`, which also sets every
    /// interface).
    pub fn set_forwarding(&self, on: bool) -> Result<()> {
        for family in [IpFamily::V4, IpFamily::V6] {
            self.router.set_forwarding(family, Conf::All, on)?;
        }
        Ok(())
    }

    /// Brings both ends of `segment` up or down — a cable pulled or plugged
    /// back in. Does nothing for [`Segment::Backup`] on a bed without one.
    ///
    /// Down: the kernel deletes the routes through either end (the
    /// addresses stay), so traffic moves to routes over other links, such as
    /// the backup link's higher-metric ones. Up: waits until both ends can
    /// carry traffic, then re-adds the bed's own routes over this segment
    /// (and its static neighbours, if the bed has them), since the kernel
    /// flushed them on the way down. Routes a test added itself are its
    /// own to restore.
    pub fn set_segment_up(&self, segment: Segment, up: bool) -> Result<()> {
        let Some(wire) = self.wire(segment) else {
            return Ok(());
        };
        let host = self.host(segment);
        self.router.set_link_up(wire.router.iface, up)?;
        host.set_link_up(wire.host.iface, up)?;
        if up {
            self.router
                .wait_link_ready(wire.router.iface, READY_TIMEOUT)?;
            host.wait_link_ready(wire.host.iface, READY_TIMEOUT)?;
            self.add_routes(segment)?;
            if self.static_neighbours {
                self.add_static_neighbours_on(segment)?;
            }
        }
        Ok(())
    }

    /// (Re-)adds permanent neighbour entries both ways on every link: each
    /// end's IPv4 and IPv6 address → the other end's MAC. With
    /// [`RouterBedOpts::static_neighbours`] the bed does this when built
    /// and after [`RouterBed::set_segment_up`]; call it yourself after
    /// taking a single end down (the kernel flushes even permanent entries
    /// of a link that goes down).
    pub fn add_static_neighbours(&self) -> Result<()> {
        for segment in Segment::ALL {
            self.add_static_neighbours_on(segment)?;
        }
        Ok(())
    }

    fn add_static_neighbours_on(&self, segment: Segment) -> Result<()> {
        let Some(wire) = self.wire(segment) else {
            return Ok(());
        };
        let host = self.host(segment);
        for (ns, this, other) in [
            (&self.router, &wire.router, &wire.host),
            (host, &wire.host, &wire.router),
        ] {
            ns.add_neighbour(this.iface, IpAddr::V4(other.ipv4), other.mac)?;
            ns.add_neighbour(this.iface, IpAddr::V6(other.ipv6), other.mac)?;
        }
        Ok(())
    }

    fn wire(&self, segment: Segment) -> Option<&Wire> {
        match segment {
            Segment::Client => Some(&self.client_wire),
            Segment::Server => Some(&self.server_wire),
            Segment::Backup => self.backup_wire.as_ref(),
        }
    }

    fn namespaces_with_ports(&self) -> [(&Netns, Vec<&Port>); 3] {
        let wires = || {
            [Some(&self.client_wire), Some(&self.server_wire)]
                .into_iter()
                .chain([self.backup_wire.as_ref()])
                .flatten()
        };
        [
            (&self.client, vec![self.c0()]),
            (&self.router, wires().map(|w| &w.router).collect()),
            (&self.server, wires().skip(1).map(|w| &w.host).collect()),
        ]
    }

    /// The bed's own routes over `segment` (none for a missing backup link).
    fn routes(&self, segment: Segment) -> Vec<(Role, Route)> {
        let Some(wire) = self.wire(segment) else {
            return Vec::new();
        };
        let (r, h) = (&wire.router, &wire.host);
        let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        match segment {
            Segment::Client => vec![
                (Role::Client, Route::via(any4, 0, r.ipv4.into())),
                (Role::Client, Route::via(any6, 0, r.ipv6.into())),
            ],
            Segment::Server | Segment::Backup => {
                let metric = if segment == Segment::Server {
                    Self::PRIMARY_METRIC
                } else {
                    Self::BACKUP_METRIC
                };
                let service4 = IpAddr::V4(Self::SERVICE_IPV4);
                let service6 = IpAddr::V6(Self::SERVICE_IPV6);
                vec![
                    (Role::Server, Route::via(any4, 0, r.ipv4.into())),
                    (Role::Server, Route::via(any6, 0, r.ipv6.into())),
                    (Role::Router, Route::via(service4, 32, h.ipv4.into())),
                    (Role::Router, Route::via(service6, 128, h.ipv6.into())),
                ]
                .into_iter()
                .map(|(role, route)| (role, route.with_metric(metric)))
                .collect()
            }
        }
    }

    /// Adds (or re-adds, idempotently) the bed's routes over `segment`.
    fn add_routes(&self, segment: Segment) -> Result<()> {
        for (role, route) in self.routes(segment) {
            let ns = match role {
                Role::Client => &self.client,
                Role::Router => &self.router,
                Role::Server => &self.server,
            };
            ns.replace_route(&route)?;
        }
        Ok(())
    }
}

/// Creates the veth of `segment` between the router and `host` and
/// describes its ends; addresses come later.
fn wire(router: &Netns, host: &Netns, segment: Segment, opts: &VethOpts) -> Result<Wire> {
    let (r_name, h_name) = segment.ifaces();
    let veth = Veth::create(router, r_name, host, h_name, opts)?;
    let port = |iface, ifindex, mac, n| {
        let (ipv4, ipv6) = segment.addrs(n);
        Port {
            iface,
            ifindex,
            mac,
            ipv4,
            ipv6,
        }
    };
    Ok(Wire {
        router: port(r_name, veth.ifindex_a(), veth.mac_a(), 1),
        host: port(h_name, veth.ifindex_b(), veth.mac_b(), 2),
        veth,
    })
}

#[cfg(test)]
mod test {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;
    use crate::require_root;
    use crate::testutil::{Gone, probe, wait_link_gone};

    /// Whether `ns`'s main table has `dst/len via gw` with `metric`
    /// (`None`: any metric).
    fn has_route(ns: &Netns, dst: IpAddr, len: u8, gw: IpAddr, metric: Option<u32>) -> bool {
        ns.routes().unwrap().iter().any(|r| {
            r.dst == dst
                && r.prefix_len == len
                && r.via == Some(gw)
                && metric.is_none_or(|m| r.metric == Some(m))
        })
    }

    fn any4() -> IpAddr {
        Ipv4Addr::UNSPECIFIED.into()
    }

    fn any6() -> IpAddr {
        Ipv6Addr::UNSPECIFIED.into()
    }

    #[test]
    fn default_bed_is_wired_addressed_and_routed() {
        if !require_root("default_bed_is_wired_addressed_and_routed") {
            return;
        }
        let bed = RouterBed::new(RouterBedOpts::default()).unwrap();
        let names = [
            bed.client().name(),
            bed.router().name(),
            bed.server().name(),
        ];
        assert!(names[0].starts_with("cli-") && names[1].starts_with("rtr-"));
        assert!(names[2].starts_with("srv-"), "{names:?}");

        let expect = [
            (bed.client(), bed.c0(), "c0", "10.1.0.2", "fd00:1::2"),
            (bed.router(), bed.r0(), "r0", "10.1.0.1", "fd00:1::1"),
            (bed.router(), bed.r1(), "r1", "10.2.0.1", "fd00:2::1"),
            (bed.server(), bed.s0(), "s0", "10.2.0.2", "fd00:2::2"),
        ];
        for (ns, port, name, v4, v6) in expect {
            assert_eq!(port.iface(), name);
            assert_eq!(port.ipv4(), v4.parse::<Ipv4Addr>().unwrap());
            assert_eq!(port.ipv6(), v6.parse::<Ipv6Addr>().unwrap());
            let link = ns.link(name).unwrap();
            assert!(link.up && link.lower_up, "{link:?}");
            assert_eq!(link.index, port.ifindex());
            assert_eq!(link.mac, Some(port.mac()));
            assert_eq!(link.num_tx_queues, 1);
            assert!(!ns.tx_checksum(name).unwrap(), "{name}: TX checksum on");
            let addrs = ns.addresses(name).unwrap();
            for (ip, len) in [
                (IpAddr::V4(port.ipv4()), IPV4_PREFIX_LEN),
                (IpAddr::V6(port.ipv6()), IPV6_PREFIX_LEN),
            ] {
                assert!(
                    addrs
                        .iter()
                        .any(|a| a.addr == ip && a.prefix_len == len && !a.tentative),
                    "{ip}/{len} missing on {name}: {addrs:?}"
                );
            }
            // Left to the kernel by default.
            let neigh = ns.neighbours(name).unwrap();
            assert!(!neigh.iter().any(|n| n.permanent), "{name}: {neigh:?}");
            assert_eq!(ns.rp_filter(Conf::Iface(name)).unwrap(), RpFilter::Off);
        }
        assert!(bed.r2().is_none() && bed.s1().is_none());
        assert!(bed.ports(Segment::Backup).is_none() && bed.veth(Segment::Backup).is_none());
        assert_eq!(bed.ports(Segment::Server).unwrap().0, bed.r1());
        assert_eq!(bed.veth(Segment::Client).unwrap().mac_b(), bed.c0().mac());
        // Doing nothing to a missing link is fine.
        bed.set_segment_up(Segment::Backup, false).unwrap();

        let lo = bed.server().addresses("lo").unwrap();
        assert!(
            lo.iter()
                .any(|a| a.addr == IpAddr::V4(RouterBed::SERVICE_IPV4))
        );
        assert!(
            lo.iter()
                .any(|a| a.addr == IpAddr::V6(RouterBed::SERVICE_IPV6))
        );

        let (r0, r1, s0) = (bed.r0(), bed.r1(), bed.s0());
        let p = Some(RouterBed::PRIMARY_METRIC);
        assert!(has_route(bed.client(), any4(), 0, r0.ipv4().into(), None));
        assert!(has_route(bed.client(), any6(), 0, r0.ipv6().into(), None));
        assert!(has_route(bed.server(), any4(), 0, r1.ipv4().into(), p));
        assert!(has_route(bed.server(), any6(), 0, r1.ipv6().into(), p));
        let (svc4, svc6) = (
            RouterBed::SERVICE_IPV4.into(),
            RouterBed::SERVICE_IPV6.into(),
        );
        assert!(has_route(bed.router(), svc4, 32, s0.ipv4().into(), p));
        assert!(has_route(bed.router(), svc6, 128, s0.ipv6().into(), p));
        // The router's connected routes.
        let table = bed.router().routes().unwrap();
        for (dst, len, dev) in [
            (
                IpAddr::V4(Segment::Client.ipv4_net()),
                IPV4_PREFIX_LEN,
                "r0",
            ),
            (
                IpAddr::V4(Segment::Server.ipv4_net()),
                IPV4_PREFIX_LEN,
                "r1",
            ),
            (
                IpAddr::V6(Segment::Client.ipv6_net()),
                IPV6_PREFIX_LEN,
                "r0",
            ),
            (
                IpAddr::V6(Segment::Server.ipv6_net()),
                IPV6_PREFIX_LEN,
                "r1",
            ),
        ] {
            assert!(
                table.iter().any(|r| r.dst == dst
                    && r.prefix_len == len
                    && r.via.is_none()
                    && r.dev.as_deref() == Some(dev)),
                "{dst}/{len} dev {dev} missing: {table:?}"
            );
        }

        for family in [IpFamily::V4, IpFamily::V6] {
            assert!(bed.router().forwarding(family, Conf::All).unwrap());
            assert!(bed.router().forwarding(family, Conf::Iface("r1")).unwrap());
            assert!(!bed.client().forwarding(family, Conf::All).unwrap());
            assert!(!bed.server().forwarding(family, Conf::All).unwrap());
        }
    }

    #[test]
    fn options_add_the_backup_link_queues_neighbours_and_rp_filter() {
        if !require_root("options_add_the_backup_link_queues_neighbours_and_rp_filter") {
            return;
        }
        let bed = RouterBed::new(RouterBedOpts {
            veth: VethOpts {
                queues: 2,
                ..Default::default()
            },
            backup_link: true,
            forwarding: false,
            static_neighbours: true,
            rp_filter: RpFilter::Loose,
        })
        .unwrap();
        let (r2, s1) = (bed.r2().unwrap(), bed.s1().unwrap());
        assert_eq!((r2.iface(), s1.iface()), ("r2", "s1"));
        assert_eq!(r2.ipv4(), Ipv4Addr::new(10, 3, 0, 1));
        assert_eq!(s1.ipv6(), "fd00:3::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(bed.server().link("s1").unwrap().mac, Some(s1.mac()));
        assert_eq!(bed.router().link("r2").unwrap().num_rx_queues, 2);

        let b = Some(RouterBed::BACKUP_METRIC);
        let svc4 = RouterBed::SERVICE_IPV4.into();
        assert!(has_route(bed.router(), svc4, 32, s1.ipv4().into(), b));
        assert!(has_route(
            bed.router(),
            svc4,
            32,
            bed.s0().ipv4().into(),
            Some(RouterBed::PRIMARY_METRIC)
        ));
        assert!(has_route(bed.server(), any6(), 0, r2.ipv6().into(), b));

        for segment in Segment::ALL {
            let (r, h) = bed.ports(segment).unwrap();
            for (ns, this, other) in [(bed.router(), r, h), (bed.host(segment), h, r)] {
                let neigh = ns.neighbours(this.iface()).unwrap();
                for ip in [IpAddr::V4(other.ipv4()), IpAddr::V6(other.ipv6())] {
                    assert!(
                        neigh
                            .iter()
                            .any(|n| n.ip == ip && n.mac == Some(other.mac()) && n.permanent),
                        "no permanent entry for {ip} on {}: {neigh:?}",
                        this.iface()
                    );
                }
            }
        }

        for family in [IpFamily::V4, IpFamily::V6] {
            assert!(!bed.router().forwarding(family, Conf::All).unwrap());
        }
        bed.set_forwarding(true).unwrap();
        assert!(bed.router().forwarding(IpFamily::V6, Conf::All).unwrap());
        assert!(
            bed.router()
                .forwarding(IpFamily::V4, Conf::Iface("r2"))
                .unwrap()
        );
        for iface in ["r0", "r1", "r2"] {
            assert_eq!(
                bed.router().rp_filter(Conf::Iface(iface)).unwrap(),
                RpFilter::Loose
            );
        }
        assert_eq!(bed.router().rp_filter(Conf::All).unwrap(), RpFilter::Loose);
        assert_eq!(bed.server().rp_filter(Conf::All).unwrap(), RpFilter::Off);
    }

    #[test]
    fn sysctl_helpers_write_read_back_and_report_errors() {
        if !require_root("sysctl_helpers_write_read_back_and_report_errors") {
            return;
        }
        let bed = RouterBed::new(RouterBedOpts::default()).unwrap();
        let ns = bed.router();
        ns.set_forwarding(IpFamily::V4, Conf::Iface("r0"), false)
            .unwrap();
        assert!(!ns.forwarding(IpFamily::V4, Conf::Iface("r0")).unwrap());
        assert!(ns.forwarding(IpFamily::V4, Conf::Iface("r1")).unwrap());
        assert_eq!(ns.sysctl("net.ipv4.conf.r0.forwarding").unwrap(), "0");
        ns.set_rp_filter(Conf::Iface("r1"), RpFilter::Strict)
            .unwrap();
        assert_eq!(ns.rp_filter(Conf::Iface("r1")).unwrap(), RpFilter::Strict);
        ns.set_rp_filter(Conf::Default, RpFilter::Loose).unwrap();
        assert_eq!(ns.rp_filter(Conf::Default).unwrap(), RpFilter::Loose);
        // The router's settings are its own: the client's are untouched.
        assert_eq!(
            bed.client().rp_filter(Conf::Default).unwrap(),
            RpFilter::Off
        );

        let err = ns
            .forwarding(IpFamily::V6, Conf::Iface("nope0"))
            .unwrap_err();
        assert!(matches!(err, crate::Error::SysctlRead { .. }), "{err}");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
        assert!(err.to_string().contains(ns.name()), "{err}");
    }

    #[test]
    fn routes_with_metrics_are_added_replaced_and_deleted() {
        if !require_root("routes_with_metrics_are_added_replaced_and_deleted") {
            return;
        }
        let bed = RouterBed::new(RouterBedOpts::default()).unwrap();
        let ns = bed.router();
        let (c0, s0) = (bed.c0(), bed.s0());
        for (dst, len, near, far) in [
            (
                "10.50.0.0".parse().unwrap(),
                16,
                IpAddr::from(s0.ipv4()),
                IpAddr::from(c0.ipv4()),
            ),
            (
                "fd00:50::".parse().unwrap(),
                48,
                s0.ipv6().into(),
                c0.ipv6().into(),
            ),
        ] {
            let first = Route::via(dst, len, near).with_metric(10);
            let second = Route::via(dst, len, far).with_dev("r0").with_metric(20);
            ns.add_route(&first).unwrap();
            ns.add_route(&second).unwrap();
            assert!(has_route(ns, dst, len, near, Some(10)));
            assert!(has_route(ns, dst, len, far, Some(20)));
            let err = ns.add_route(&first).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");

            // Re-point the metric-10 route in one step.
            let moved = Route::via(dst, len, far).with_dev("r0").with_metric(10);
            ns.replace_route(&moved).unwrap();
            assert!(
                !has_route(ns, dst, len, near, None),
                "{dst}: still via {near}"
            );
            let table = ns.routes().unwrap();
            let ours: Vec<_> = table.iter().filter(|r| r.dst == dst).collect();
            assert_eq!(ours.len(), 2, "{ours:?}");
            assert!(
                ours.iter().all(|r| r.dev.as_deref() == Some("r0")),
                "{ours:?}"
            );

            ns.del_route(&Route::via(dst, len, far).with_metric(20))
                .unwrap();
            assert!(has_route(ns, dst, len, far, Some(10)));
            assert!(!has_route(ns, dst, len, far, Some(20)));
            // No metric: whichever matches.
            ns.del_route(&Route::via(dst, len, far)).unwrap();
            assert!(!ns.routes().unwrap().iter().any(|r| r.dst == dst));
        }
    }

    #[test]
    fn a_segment_taken_down_loses_its_routes_and_gets_them_back() {
        if !require_root("a_segment_taken_down_loses_its_routes_and_gets_them_back") {
            return;
        }
        let bed = RouterBed::new(RouterBedOpts {
            backup_link: true,
            static_neighbours: true,
            ..Default::default()
        })
        .unwrap();
        let (r1, s0) = (bed.r1(), bed.s0());
        let svc6 = IpAddr::from(RouterBed::SERVICE_IPV6);
        let p = Some(RouterBed::PRIMARY_METRIC);

        bed.set_segment_up(Segment::Server, false).unwrap();
        for (ns, iface) in [(bed.router(), "r1"), (bed.server(), "s0")] {
            let link = ns.link(iface).unwrap();
            assert!(!link.up && !link.lower_up, "{link:?}");
            // keep_addr_on_down: the IPv6 address survives.
            let addrs = ns.addresses(iface).unwrap();
            assert!(addrs.iter().any(|a| a.addr.is_ipv6() && a.prefix_len == 64));
        }
        assert!(!has_route(bed.router(), svc6, 128, s0.ipv6().into(), None));
        assert!(!has_route(bed.server(), any4(), 0, r1.ipv4().into(), None));
        // The backup routes are what is left.
        let s1 = bed.s1().unwrap();
        assert!(has_route(bed.router(), svc6, 128, s1.ipv6().into(), None));

        bed.set_segment_up(Segment::Server, true).unwrap();
        assert!(bed.router().link("r1").unwrap().oper_up);
        assert!(has_route(bed.router(), svc6, 128, s0.ipv6().into(), p));
        assert!(has_route(bed.server(), any4(), 0, r1.ipv4().into(), p));
        assert!(has_route(bed.server(), any6(), 0, r1.ipv6().into(), p));
        let neigh = bed.server().neighbours("s0").unwrap();
        assert!(
            neigh
                .iter()
                .any(|n| n.ip == IpAddr::V4(r1.ipv4()) && n.permanent),
            "{neigh:?}"
        );
    }

    #[test]
    fn drop_removes_all_three_namespaces_also_on_panic() {
        if !require_root("drop_removes_all_three_namespaces_also_on_panic") {
            return;
        }
        let observer = Netns::new("obs").unwrap();
        let mut probes = Vec::new();
        let mut gone = Vec::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let bed = RouterBed::new(RouterBedOpts {
                backup_link: true,
                ..Default::default()
            })
            .unwrap();
            for (name, ns) in [
                ("probe-c", bed.client()),
                ("probe-r", bed.router()),
                ("probe-s", bed.server()),
            ] {
                probes.push(probe(&observer, name, ns));
                gone.push(Gone::record(ns));
            }
            panic!("the test body fails");
        }));
        assert!(result.is_err());
        assert_eq!(gone.len(), 3);
        for g in &gone {
            g.assert();
        }
        for name in ["probe-c", "probe-r", "probe-s"] {
            wait_link_gone(&observer, name);
        }
    }
}
