//! [`TestBed`]: the standard two-namespace fixture.
//!
//! ```text
//!  netns "eng-PID-N"                         netns "peer-PID-N"
//!  ┌──────────────────────────┐              ┌──────────────────────────┐
//!  │ veth-eng                 │──── veth ────│ veth-peer                │
//!  │ 10.77.0.1/24             │              │ 10.77.0.2/24             │
//!  │ fd00:77::1/64            │              │ fd00:77::2/64            │
//!  └──────────────────────────┘              └──────────────────────────┘
//! ```
//!
//! The addresses are fixed: every bed has its own namespaces, so parallel
//! tests can't collide.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::Result;
use crate::netns::Netns;
use crate::types::MacAddr;
use crate::veth::{Veth, VethOpts};

/// Interface name of the engine's end of the veth.
pub const ENGINE_IFACE: &str = "veth-eng";
/// Interface name of the peer's end of the veth.
pub const PEER_IFACE: &str = "veth-peer";
/// IPv4 address of the engine's end.
pub const ENGINE_IPV4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// IPv4 address of the peer's end.
pub const PEER_IPV4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Prefix length of both IPv4 addresses.
pub const IPV4_PREFIX_LEN: u8 = 24;
/// IPv6 (ULA) address of the engine's end.
pub const ENGINE_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
/// IPv6 (ULA) address of the peer's end.
pub const PEER_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
/// Prefix length of both IPv6 addresses.
pub const IPV6_PREFIX_LEN: u8 = 64;

/// One veth end of a bed: its name, index, MAC and addresses. In a
/// [`crate::RouterBed`] the namespace follows from the name (`c*` client,
/// `r*` router, `s*` server); a [`TestBed`] [`End`] pairs it with its
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub(crate) iface: &'static str,
    pub(crate) ifindex: u32,
    pub(crate) mac: MacAddr,
    pub(crate) ipv4: Ipv4Addr,
    pub(crate) ipv6: Ipv6Addr,
}

impl Port {
    /// Interface name.
    pub fn iface(&self) -> &str {
        self.iface
    }

    /// Interface index (in its namespace).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// IPv4 address (prefix [`IPV4_PREFIX_LEN`]).
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// IPv6 address (prefix [`IPV6_PREFIX_LEN`], no DAD, usable at once).
    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }
}

/// One node of a bed ([`TestBed`], [`crate::LbBed`]): a namespace and the
/// veth end inside it. It dereferences to its [`Port`], so `end.iface()`,
/// `end.ipv4()`, … read the veth end's facts.
#[derive(Debug)]
pub struct End {
    pub(crate) ns: Netns,
    pub(crate) port: Port,
}

impl End {
    /// The namespace of this side.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
}

impl std::ops::Deref for End {
    type Target = Port;

    fn deref(&self) -> &Port {
        &self.port
    }
}

/// Two namespaces, "engine" and "peer", joined by a veth pair.
///
/// Both ends are up and ready to carry traffic, with [`ENGINE_IPV4`]/[`PEER_IPV4`] (/24) and
/// [`ENGINE_IPV6`]/[`PEER_IPV6`] (/64, no DAD, usable at once), permanent
/// neighbour entries for each other's IPv4 and IPv6 address (so nothing
/// waits for ARP or ND; both still work), and TX checksum offload as
/// [`VethOpts::tx_checksum`] says (off by default). IPv6 addresses survive
/// a link flap (`keep_addr_on_down=1` on both ends); permanent neighbour
/// entries of an end taken down don't (see [`TestBed::add_static_neighbours`]).
///
/// Dropping the bed deletes the veth and both namespaces, also when the
/// test panics.
#[derive(Debug)]
pub struct TestBed {
    // Declaration order is drop order: the veth goes first, while both
    // namespaces still exist (though either order would be safe).
    veth: Veth,
    engine: End,
    peer: End,
}

impl TestBed {
    /// Builds the bed; see [`TestBed`] for what it contains.
    pub fn pair(opts: VethOpts) -> Result<TestBed> {
        let engine_ns = Netns::new("eng")?;
        let peer_ns = Netns::new("peer")?;
        let veth = Veth::create(&engine_ns, ENGINE_IFACE, &peer_ns, PEER_IFACE, &opts)?;
        let engine = End {
            ns: engine_ns,
            port: Port {
                iface: ENGINE_IFACE,
                ifindex: veth.ifindex_a(),
                mac: veth.mac_a(),
                ipv4: ENGINE_IPV4,
                ipv6: ENGINE_IPV6,
            },
        };
        let peer = End {
            ns: peer_ns,
            port: Port {
                iface: PEER_IFACE,
                ifindex: veth.ifindex_b(),
                mac: veth.mac_b(),
                ipv4: PEER_IPV4,
                ipv6: PEER_IPV6,
            },
        };
        let bed = TestBed { veth, engine, peer };
        for end in [&bed.engine, &bed.peer] {
            // Without this the kernel drops IPv6 addresses when a link goes
            // down, and a test that flaps the link would lose them.
            end.ns.set_sysctl(
                &format!("net/ipv6/conf/{}/keep_addr_on_down", end.iface),
                "1",
            )?;
            end.ns
                .add_address(end.iface, IpAddr::V4(end.ipv4), IPV4_PREFIX_LEN)?;
            end.ns
                .add_address(end.iface, IpAddr::V6(end.ipv6), IPV6_PREFIX_LEN)?;
        }
        bed.add_static_neighbours()?;
        Ok(bed)
    }

    /// (Re-)adds the permanent neighbour entries both ways (each end's IPv4
    /// and IPv6 address → the other end's MAC). [`TestBed::pair`] does this;
    /// call it again after taking an end administratively down, because the
    /// kernel flushes even permanent entries of a link that goes down.
    pub fn add_static_neighbours(&self) -> Result<()> {
        for (this, other) in [(&self.engine, &self.peer), (&self.peer, &self.engine)] {
            this.ns
                .add_neighbour(this.iface, IpAddr::V4(other.ipv4), other.mac)?;
            this.ns
                .add_neighbour(this.iface, IpAddr::V6(other.ipv6), other.mac)?;
        }
        Ok(())
    }

    /// The engine side: where the engine under test runs.
    pub fn engine(&self) -> &End {
        &self.engine
    }

    /// The peer side: where traffic generators and sinks run.
    pub fn peer(&self) -> &End {
        &self.peer
    }

    /// The veth pair (end A = engine, end B = peer).
    pub fn veth(&self) -> &Veth {
        &self.veth
    }
}

#[cfg(test)]
mod test {
    use std::net::{SocketAddr, UdpSocket};
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::time::Duration;

    use super::*;
    use crate::require_root;
    use crate::testutil::{Gone, probe, wait_link_gone};
    use crate::types::Route;

    /// Sends "ping" from the engine to the peer and "pong" back, over UDP
    /// sockets created inside the two namespaces.
    fn udp_round_trip(bed: &TestBed, engine_ip: IpAddr, peer_ip: IpAddr) {
        let bind = |ns: &Netns, ip: IpAddr| {
            let sock = ns
                .run(|| UdpSocket::bind(SocketAddr::new(ip, 0)))
                .unwrap()
                .unwrap_or_else(|e| panic!("binding {ip} in {}: {e}", ns.name()));
            sock.set_read_timeout(Some(Duration::from_millis(250)))
                .unwrap();
            sock
        };
        let engine = bind(bed.engine().ns(), engine_ip);
        let peer = bind(bed.peer().ns(), peer_ip);
        let mut buf = [0u8; 16];

        // A link just brought up (or a machine under load) may drop the very first datagram;
        // what must hold is that datagrams cross within a few seconds, so retry (bounded).
        let mut got = None;
        for _ in 0..20 {
            engine.send_to(b"ping", peer.local_addr().unwrap()).unwrap();
            if let Ok(r) = peer.recv_from(&mut buf) {
                got = Some(r);
                break;
            }
        }
        let (n, from) = got.expect("ping never arrived in 20 tries over 5 s");
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from, engine.local_addr().unwrap());

        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        engine
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        peer.send_to(b"pong", from).unwrap();
        let (n, from) = engine.recv_from(&mut buf).expect("pong never arrived");
        assert_eq!(&buf[..n], b"pong");
        assert_eq!(from, peer.local_addr().unwrap());
    }

    #[test]
    fn bed_is_up_addressed_and_has_static_neighbours() {
        if !require_root("bed_is_up_addressed_and_has_static_neighbours") {
            return;
        }
        let bed = TestBed::pair(VethOpts::default()).unwrap();
        assert_ne!(bed.engine().ns().name(), bed.peer().ns().name());
        for (this, other, v4, v6) in [
            (bed.engine(), bed.peer(), ENGINE_IPV4, ENGINE_IPV6),
            (bed.peer(), bed.engine(), PEER_IPV4, PEER_IPV6),
        ] {
            let ns = this.ns();
            let link = ns.link(this.iface()).unwrap();
            assert!(link.up && link.lower_up, "{link:?}");
            assert_eq!(link.index, this.ifindex());
            assert_eq!(link.mac, Some(this.mac()));
            assert!(!ns.tx_checksum(this.iface()).unwrap());

            let addrs = ns.addresses(this.iface()).unwrap();
            for (ip, len) in [
                (IpAddr::V4(v4), IPV4_PREFIX_LEN),
                (IpAddr::V6(v6), IPV6_PREFIX_LEN),
            ] {
                assert!(
                    addrs
                        .iter()
                        .any(|a| a.addr == ip && a.prefix_len == len && !a.tentative),
                    "{ip}/{len} missing on {}: {addrs:?}",
                    this.iface()
                );
            }

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
        assert_eq!(bed.veth().mac_a(), bed.engine().mac());
        assert_eq!(bed.veth().mac_b(), bed.peer().mac());
    }

    #[test]
    fn udp_crosses_the_bed_over_ipv4_and_ipv6() {
        if !require_root("udp_crosses_the_bed_over_ipv4_and_ipv6") {
            return;
        }
        let bed = TestBed::pair(VethOpts::default()).unwrap();
        udp_round_trip(&bed, ENGINE_IPV4.into(), PEER_IPV4.into());
        udp_round_trip(&bed, ENGINE_IPV6.into(), PEER_IPV6.into());
    }

    #[test]
    fn traffic_resumes_after_the_link_flaps() {
        if !require_root("traffic_resumes_after_the_link_flaps") {
            return;
        }
        let bed = TestBed::pair(VethOpts::default()).unwrap();
        let (ns, iface) = (bed.peer().ns(), bed.peer().iface());
        ns.set_link_up(iface, false).unwrap();
        let engine_link = bed.engine().ns().link(ENGINE_IFACE).unwrap();
        assert!(engine_link.up && !engine_link.lower_up, "{engine_link:?}");
        ns.set_link_up(iface, true).unwrap();
        ns.wait_link_ready(iface, crate::READY_TIMEOUT).unwrap();
        bed.engine()
            .ns()
            .wait_link_ready(ENGINE_IFACE, crate::READY_TIMEOUT)
            .unwrap();
        assert_eq!(
            ns.addresses(iface)
                .unwrap()
                .iter()
                .filter(|a| a.addr == IpAddr::V6(PEER_IPV6))
                .count(),
            1
        );
        udp_round_trip(&bed, ENGINE_IPV4.into(), PEER_IPV4.into());
        udp_round_trip(&bed, ENGINE_IPV6.into(), PEER_IPV6.into());
        bed.add_static_neighbours().unwrap();
        let neigh = ns.neighbours(iface).unwrap();
        assert!(
            neigh
                .iter()
                .any(|n| n.ip == IpAddr::V4(ENGINE_IPV4) && n.permanent),
            "{neigh:?}"
        );
    }

    #[test]
    fn arp_still_works_without_the_static_entries() {
        if !require_root("arp_still_works_without_the_static_entries") {
            return;
        }
        let bed = TestBed::pair(VethOpts::default()).unwrap();
        for end in [bed.engine(), bed.peer()] {
            let other = if std::ptr::eq(end, bed.engine()) {
                bed.peer()
            } else {
                bed.engine()
            };
            end.ns()
                .del_neighbour(end.iface(), other.ipv4().into())
                .unwrap();
            end.ns()
                .del_neighbour(end.iface(), other.ipv6().into())
                .unwrap();
            let left = end.ns().neighbours(end.iface()).unwrap();
            assert!(!left.iter().any(|n| n.permanent), "{left:?}");
        }
        udp_round_trip(&bed, ENGINE_IPV4.into(), PEER_IPV4.into());
        udp_round_trip(&bed, ENGINE_IPV6.into(), PEER_IPV6.into());
        // Learned, not static, and pointing at the right MAC.
        let learned = bed.engine().ns().neighbours(ENGINE_IFACE).unwrap();
        let entry = learned
            .iter()
            .find(|n| n.ip == IpAddr::V4(PEER_IPV4))
            .expect("ARP entry");
        assert!(!entry.permanent);
        assert_eq!(entry.mac, Some(bed.peer().mac()));
    }

    #[test]
    fn routes_are_added_read_back_and_deleted() {
        if !require_root("routes_are_added_read_back_and_deleted") {
            return;
        }
        let bed = TestBed::pair(VethOpts::default()).unwrap();
        let ns = bed.engine().ns();
        let routes = [
            Route::via("10.90.0.0".parse().unwrap(), 16, PEER_IPV4.into()),
            Route::dev("10.91.0.0".parse().unwrap(), 24, ENGINE_IFACE),
            Route::via("fd00:90::".parse().unwrap(), 48, PEER_IPV6.into()),
            Route::via("0.0.0.0".parse().unwrap(), 0, PEER_IPV4.into()),
        ];
        for r in &routes {
            ns.add_route(r).unwrap();
        }
        let table = ns.routes().unwrap();
        for r in &routes {
            assert!(
                table.iter().any(|t| t.dst == r.dst
                    && t.prefix_len == r.prefix_len
                    && t.via == r.via
                    && t.dev.as_deref() == Some(ENGINE_IFACE)),
                "{r} missing from {table:?}"
            );
        }
        // The kernel's own prefix route is listed too.
        assert!(
            table
                .iter()
                .any(|t| t.dst == IpAddr::V4(Ipv4Addr::new(10, 77, 0, 0))
                    && t.prefix_len == IPV4_PREFIX_LEN)
        );

        let err = ns.add_route(&routes[0]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
        for r in &routes {
            ns.del_route(r).unwrap();
        }
        let table = ns.routes().unwrap();
        for r in &routes {
            assert!(
                !table
                    .iter()
                    .any(|t| t.dst == r.dst && t.prefix_len == r.prefix_len),
                "{r} still in {table:?}"
            );
        }
        let bad = Route {
            dst: "10.92.0.0".parse().unwrap(),
            prefix_len: 16,
            via: None,
            dev: None,
            metric: None,
        };
        assert!(matches!(
            ns.add_route(&bad),
            Err(crate::Error::InvalidRoute { .. })
        ));
    }

    #[test]
    fn drop_removes_the_namespaces() {
        if !require_root("drop_removes_the_namespaces") {
            return;
        }
        let observer = Netns::new("obs").unwrap();
        let bed = TestBed::pair(VethOpts::default()).unwrap();
        // Witnesses: their observer ends vanish only when the bed's
        // namespaces are really destroyed.
        let probes = [
            probe(&observer, "probe-e", bed.engine().ns()),
            probe(&observer, "probe-p", bed.peer().ns()),
        ];
        assert!(observer.link("probe-e").is_ok() && observer.link("probe-p").is_ok());
        let gone = [
            Gone::record(bed.engine().ns()),
            Gone::record(bed.peer().ns()),
        ];
        drop(bed);
        for g in &gone {
            g.assert();
        }
        wait_link_gone(&observer, "probe-e");
        wait_link_gone(&observer, "probe-p");
        drop(probes);
    }

    #[test]
    fn a_panicking_test_still_cleans_up() {
        if !require_root("a_panicking_test_still_cleans_up") {
            return;
        }
        let observer = Netns::new("obs").unwrap();
        let mut probes = Vec::new();
        let mut gone = Vec::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let bed = TestBed::pair(VethOpts::default()).unwrap();
            probes.push(probe(&observer, "probe-e", bed.engine().ns()));
            probes.push(probe(&observer, "probe-p", bed.peer().ns()));
            gone.push(Gone::record(bed.engine().ns()));
            gone.push(Gone::record(bed.peer().ns()));
            panic!("the test body fails");
        }));
        assert!(result.is_err());
        assert_eq!(gone.len(), 2);
        for g in &gone {
            g.assert();
        }
        wait_link_gone(&observer, "probe-e");
        wait_link_gone(&observer, "probe-p");
    }
}
