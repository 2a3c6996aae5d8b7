//! The router fixture proves itself with the kernel as the router (no sluice here): with
//! forwarding on, UDP from a kernel socket in the client reaches the server and the reply comes
//! back, over IPv4 and IPv6; with the backup link, taking the preferred link down moves traffic
//! to the backup route; with forwarding off, nothing gets through.

use sluice_testbed::{Netns, PacketSocket, RouterBed, RouterBedOpts, Segment, require_root};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Longest wait for a datagram or frame that should arrive.
const WAIT: Duration = Duration::from_secs(3);
/// How long to watch for one that must not arrive.
const QUIET: Duration = Duration::from_millis(500);

fn bind(ns: &Netns, ip: IpAddr, timeout: Duration) -> UdpSocket {
    let sock = ns
        .run(|| UdpSocket::bind(SocketAddr::new(ip, 0)))
        .expect("entering the namespace")
        .unwrap_or_else(|e| panic!("binding {ip} in {}: {e}", ns.name()));
    sock.set_read_timeout(Some(timeout)).unwrap();
    sock
}

/// Sends `payload` from the client (`from`) to a socket on `to` in the server and echoes it back.
fn round_trip(bed: &RouterBed, from: IpAddr, to: IpAddr, payload: &[u8]) {
    let client = bind(bed.client(), from, WAIT);
    let server = bind(bed.server(), to, WAIT);
    let mut buf = [0u8; 256];

    client
        .send_to(payload, server.local_addr().unwrap())
        .unwrap();
    let (n, peer) = server
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{from} -> {to}: request never arrived: {e}"));
    assert_eq!(&buf[..n], payload);
    assert_eq!(peer, client.local_addr().unwrap(), "source rewritten?");

    server.send_to(&buf[..n], peer).unwrap();
    let (n, peer) = client
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{to} -> {from}: reply never arrived: {e}"));
    assert_eq!(&buf[..n], payload);
    assert_eq!(peer, server.local_addr().unwrap());
}

/// How many incoming frames carrying `marker` `sock` sees within `timeout` (stops at the first).
fn seen(sock: &PacketSocket, marker: &[u8], timeout: Duration) -> usize {
    sock.collect_incoming(timeout, 1, |f| f.windows(marker.len()).any(|w| w == marker))
        .expect("reading the packet socket")
        .len()
}

#[test]
fn kernel_forwarding_carries_udp_both_ways_over_ipv4_and_ipv6() {
    if !require_root("kernel_forwarding_carries_udp_both_ways_over_ipv4_and_ipv6") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts::default()).expect("building the router bed");
    let (c0, s0) = (bed.c0(), bed.s0());
    round_trip(&bed, c0.ipv4().into(), s0.ipv4().into(), b"v4 to s0");
    round_trip(&bed, c0.ipv6().into(), s0.ipv6().into(), b"v6 to s0");
    round_trip(
        &bed,
        c0.ipv4().into(),
        RouterBed::SERVICE_IPV4.into(),
        b"v4 to lo",
    );
    round_trip(
        &bed,
        c0.ipv6().into(),
        RouterBed::SERVICE_IPV6.into(),
        b"v6 to lo",
    );

    // The kernel resolved the next hops itself: the bed pre-fills nothing.
    let learned = bed.router().neighbours(bed.r1().iface()).unwrap();
    let entry = learned
        .iter()
        .find(|n| n.ip == IpAddr::V4(s0.ipv4()))
        .unwrap_or_else(|| panic!("no neighbour entry for {} on r1: {learned:?}", s0.ipv4()));
    assert!(!entry.permanent);
    assert_eq!(entry.mac, Some(s0.mac()));
}

#[test]
fn taking_the_preferred_link_down_moves_traffic_to_the_backup() {
    if !require_root("taking_the_preferred_link_down_moves_traffic_to_the_backup") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts {
        backup_link: true,
        ..Default::default()
    })
    .expect("building the router bed");
    let (s0, s1) = (bed.s0(), bed.s1().expect("backup link"));
    let on_s0 = PacketSocket::open(bed.server(), s0.iface()).unwrap();
    let on_s1 = PacketSocket::open(bed.server(), s1.iface()).unwrap();
    let c0 = bed.c0();
    let paths: [(IpAddr, IpAddr, &str); 2] = [
        (c0.ipv4().into(), RouterBed::SERVICE_IPV4.into(), "v4"),
        (c0.ipv6().into(), RouterBed::SERVICE_IPV6.into(), "v6"),
    ];

    // Both links up: the metric-100 route over r1 -> s0 wins.
    for (from, to, family) in paths {
        let marker = format!("primary {family}");
        round_trip(&bed, from, to, marker.as_bytes());
        assert_eq!(
            seen(&on_s0, marker.as_bytes(), WAIT),
            1,
            "{marker} not on s0"
        );
        assert_eq!(seen(&on_s1, marker.as_bytes(), QUIET), 0, "{marker} on s1");
    }

    // Cable pulled: the kernel drops the routes over it, the metric-200 ones remain.
    bed.set_segment_up(Segment::Server, false).unwrap();
    for (from, to, family) in paths {
        let marker = format!("backup {family}");
        round_trip(&bed, from, to, marker.as_bytes());
        assert_eq!(
            seen(&on_s1, marker.as_bytes(), WAIT),
            1,
            "{marker} not on s1"
        );
    }

    // Plugged back in: the bed restores its primary routes and traffic returns.
    bed.set_segment_up(Segment::Server, true).unwrap();
    // A packet socket whose device went down keeps ENETDOWN pending for its next read: use a
    // fresh one.
    drop(on_s0);
    let on_s0 = PacketSocket::open(bed.server(), s0.iface()).unwrap();
    for (from, to, family) in paths {
        let marker = format!("again {family}");
        round_trip(&bed, from, to, marker.as_bytes());
        assert_eq!(
            seen(&on_s0, marker.as_bytes(), WAIT),
            1,
            "{marker} not on s0"
        );
        assert_eq!(seen(&on_s1, marker.as_bytes(), QUIET), 0, "{marker} on s1");
    }
}

#[test]
fn without_forwarding_nothing_gets_through() {
    if !require_root("without_forwarding_nothing_gets_through") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts {
        forwarding: false,
        ..Default::default()
    })
    .expect("building the router bed");
    let (c0, s0) = (bed.c0(), bed.s0());
    let on_r1 = PacketSocket::open(bed.router(), bed.r1().iface()).unwrap();
    for (from, to) in [
        (IpAddr::from(c0.ipv4()), IpAddr::from(s0.ipv4())),
        (c0.ipv6().into(), s0.ipv6().into()),
    ] {
        let client = bind(bed.client(), from, QUIET);
        let server = bind(bed.server(), to, QUIET);
        let marker = format!("blocked {to}");
        // A few tries, in case the first one only resolved the router's address.
        for _ in 0..3 {
            client
                .send_to(marker.as_bytes(), server.local_addr().unwrap())
                .unwrap();
        }
        let mut buf = [0u8; 64];
        match server.recv_from(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("{from} -> {to} got through a router that doesn't forward: {other:?}"),
        }
        // Not even onto the server's link.
        assert_eq!(seen(&on_r1, marker.as_bytes(), QUIET), 0);
        // The router's own address on the client link still answers.
        round_trip_to_router(&bed, from);
    }

    // Same bed, forwarding switched on: the path itself was fine.
    bed.set_forwarding(true).unwrap();
    round_trip(&bed, c0.ipv4().into(), s0.ipv4().into(), b"now v4");
    round_trip(&bed, c0.ipv6().into(), s0.ipv6().into(), b"now v6");
}

/// A round trip between the client and the router's own `r0` address: needs no forwarding.
fn round_trip_to_router(bed: &RouterBed, from: IpAddr) {
    let to: IpAddr = match from {
        IpAddr::V4(_) => bed.r0().ipv4().into(),
        IpAddr::V6(_) => bed.r0().ipv6().into(),
    };
    let client = bind(bed.client(), from, WAIT);
    let router = bind(bed.router(), to, WAIT);
    let mut buf = [0u8; 16];
    client.send_to(b"hi", router.local_addr().unwrap()).unwrap();
    let (n, peer) = router.recv_from(&mut buf).expect("router never got it");
    router.send_to(&buf[..n], peer).unwrap();
    client.recv_from(&mut buf).expect("reply from the router");
}
