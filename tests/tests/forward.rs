//! `sluice run --iface r0 --iface r1 --app forward` in the router of a client — router — server
//! topology: kernel clients and servers on both sides, over IPv4 and IPv6.
//!
//! Neighbours are not pre-filled: the first packets towards a fresh next hop are passed to the
//! kernel by the XDP program (`fib_no_neigh`), which resolves it and forwards them, so nothing is
//! lost for good and the flow goes through sluice once the neighbour is known.

mod common;

use common::{Engine, assert_census};
use serde_json::Value;
use sluice_testbed::{PacketSocket, RouterBed, RouterBedOpts, Segment, require_root};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PORT: u16 = 9000;

/// A UDP echo server in the server namespace on `addrs`, until `stop`.
fn echo_server(bed: &RouterBed, addrs: &[IpAddr], stop: Arc<AtomicBool>) {
    for &ip in addrs {
        let sock = bed
            .server()
            .run(|| UdpSocket::bind(SocketAddr::new(ip, PORT)))
            .unwrap()
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
    }
}

/// Echo `count` datagrams of varying size from the client to `dst`; every reply must be
/// byte-identical. First it probes (bounded) until the path answers; returns how long that took.
fn exchange(bed: &RouterBed, dst: IpAddr, count: usize) -> Duration {
    let bind: SocketAddr = match dst {
        IpAddr::V4(_) => (bed.c0().ipv4(), 0).into(),
        IpAddr::V6(_) => (bed.c0().ipv6(), 0).into(),
    };
    let sock = bed.client().run(|| UdpSocket::bind(bind)).unwrap().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let peer = SocketAddr::new(dst, PORT);
    let mut buf = [0u8; 2048];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    loop {
        sock.send_to(b"probe", peer).unwrap();
        if sock.recv_from(&mut buf).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no echo from {peer} within 10 s");
    }
    let path_up = started.elapsed();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for i in 0..count {
        let len = 1 + (i * 53) % 1400;
        let msg: Vec<u8> = (0..len).map(|k| (k * 3 + i) as u8).collect();
        sock.send_to(&msg, peer).unwrap();
        // Skip late echoes of the probes.
        let (n, from) = loop {
            let (n, from) = sock.recv_from(&mut buf).expect("reply within 500 ms");
            if &buf[..n] != b"probe" || msg == b"probe" {
                break (n, from);
            }
        };
        assert_eq!(from, peer);
        assert_eq!(
            &buf[..n],
            &msg[..],
            "datagram {i} to {dst} came back changed"
        );
    }
    path_up
}

/// Start the router and wait until its workers run: until then the router's kernel forwards
/// (forwarding is on), so traffic sent earlier would not test sluice.
fn start(bed: &RouterBed, ifaces: &[&str]) -> Engine {
    let mut args = Vec::new();
    for i in ifaces {
        args.extend(["--iface", i]);
    }
    args.extend(["--app", "forward"]);
    let engine = Engine::start_in(bed.router(), &args);
    engine.wait_for_log("app forward on", Duration::from_secs(10));
    engine
}

fn xdp(fin: &Value, k: &str) -> u64 {
    fin["xdp"][k]
        .as_u64()
        .unwrap_or_else(|| panic!("no xdp.{k}: {fin}"))
}

#[test]
fn routes_udp_both_ways_over_ipv4_and_ipv6() {
    if !require_root("routes_udp_both_ways_over_ipv4_and_ipv6") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(
        &bed,
        &[bed.s0().ipv4().into(), bed.s0().ipv6().into()],
        stop.clone(),
    );
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface()]);

    // The server sees the client's packets with the TTL decremented by one.
    let on_s0 = PacketSocket::open(bed.server(), bed.s0().iface()).unwrap();
    const N: usize = 300;
    exchange(&bed, bed.s0().ipv4().into(), N);
    exchange(&bed, bed.s0().ipv6().into(), N);
    let c0 = bed.c0().ipv4().octets();
    let seen = on_s0
        .collect_incoming(Duration::from_secs(1), 1, |f| {
            f.len() > 34 && f[12..14] == [0x08, 0x00] && f[26..30] == c0
        })
        .unwrap();
    assert_eq!(seen.len(), 1, "no IPv4 frame from the client seen on s0");
    assert_eq!(seen[0][22], 63, "TTL 64 decremented once");

    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    // The bulk went through sluice, both ways, both families: 2 × 2 × N datagrams, less the
    // first few towards each fresh neighbour, which the kernel forwards while it resolves it
    // (XDP's `fib_no_neigh`, or sluice's kernel path).
    let n = 2 * N as u64 - 10;
    assert!(xdp(&fin, "fwd_redirected") >= 2 * n, "{fin}");
    let ports = fin["ports"].as_array().unwrap();
    let get = |p: usize, k: &str| ports[p][k].as_u64().unwrap();
    assert!(
        get(0, "rx_packets") >= n && get(1, "tx_packets") >= n,
        "{fin}"
    );
    assert!(
        get(1, "rx_packets") >= n && get(0, "tx_packets") >= n,
        "{fin}"
    );
    assert_eq!(fin["total"]["dropped"].as_u64(), Some(0), "{fin}");
    assert_census(&fin);
}

#[test]
fn ttl_one_gets_time_exceeded_from_the_router() {
    if !require_root("ttl_one_gets_time_exceeded_from_the_router") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(&bed, &[bed.s0().ipv4().into()], stop.clone());
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface()]);
    exchange(&bed, bed.s0().ipv4().into(), 1); // path up, neighbours resolved

    // A datagram with TTL 1 from the client: the router answers with ICMP time exceeded
    // (type 11), from r0's address, seen on the client's interface.
    let on_c0 = PacketSocket::open(bed.client(), bed.c0().iface()).unwrap();
    let sock = bed
        .client()
        .run(|| UdpSocket::bind((bed.c0().ipv4(), 0)))
        .unwrap()
        .unwrap();
    sock.set_ttl(1).unwrap();
    let r0 = bed.r0().ipv4().octets();
    let mut got = Vec::new();
    for _ in 0..5 {
        sock.send_to(b"ttl one", (bed.s0().ipv4(), PORT)).unwrap();
        got = on_c0
            .collect_incoming(Duration::from_millis(500), 1, |f| {
                f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 1 && f[26..30] == r0
            })
            .unwrap();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1, "no ICMP from the router");
    let f = &got[0];
    assert_eq!(
        (f[34], f[35]),
        (11, 0),
        "ICMP time exceeded, TTL exceeded in transit"
    );
    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    assert!(xdp(&fin, "fwd_redirected") >= 1, "{fin}");
    assert_census(&fin);
}

#[test]
fn fails_over_to_the_backup_link_and_back() {
    if !require_root("fails_over_to_the_backup_link_and_back") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts {
        backup_link: true,
        ..Default::default()
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let service: IpAddr = RouterBed::SERVICE_IPV4.into();
    echo_server(&bed, &[service], stop.clone());
    let r2 = bed.r2().unwrap().iface().to_string();
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface(), &r2]);
    exchange(&bed, service, 50);
    // Primary link down: the route over the backup takes over within 1 s (the first echo
    // after the link went down, probing every 20 ms).
    bed.set_segment_up(Segment::Server, false).unwrap();
    let switched = exchange(&bed, service, 50);
    assert!(
        switched < Duration::from_secs(1),
        "failover took {switched:?}"
    );
    // And back once it is up again.
    bed.set_segment_up(Segment::Server, true).unwrap();
    let back = exchange(&bed, service, 50);
    assert!(back < Duration::from_secs(1), "fail-back took {back:?}");
    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    let ports = fin["ports"].as_array().unwrap();
    let tx = |p: usize| ports[p]["tx_packets"].as_u64().unwrap();
    // The first datagram towards a fresh next hop may go through the kernel (it resolves the
    // neighbour); the rest through sluice.
    assert!(
        tx(2) >= 45,
        "the backup carried the traffic while the primary was down: {fin}"
    );
    assert!(
        tx(1) >= 95,
        "the primary carried it before and after: {fin}"
    );
    eprintln!("failover {switched:?}, fail-back {back:?}");
    assert_census(&fin);
}
