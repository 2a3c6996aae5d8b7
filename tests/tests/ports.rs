//! One engine on two interfaces (ports) sharing one UMEM: `--app patch` between two namespaces,
//! so every frame crosses from one port to the other without a copy in user space.
//!
//! Topology: `a` (va, 10.7.0.1, fd07::1) — `b` (vb1 | sluice patch | vb2) — `c` (vc, 10.7.0.2,
//! fd07::2). Static neighbours on both ends, so no ARP/ND has to cross (the engine's namespace
//! has no bridge): the patch is a cable for UDP port 7777 only; everything else reaches `b`'s
//! kernel, which does not forward it.

mod common;

use common::{Engine, assert_census};
use sluice_testbed::{Netns, Veth, VethOpts, require_root};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PORT: u16 = 7777;
const A4: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 1);
const C4: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd07, 0, 0, 0, 0, 0, 0, 1);
const C6: Ipv6Addr = Ipv6Addr::new(0xfd07, 0, 0, 0, 0, 0, 0, 2);

struct Cable {
    a: Netns,
    b: Netns,
    c: Netns,
    _ab: Veth,
    _bc: Veth,
}

fn cable() -> Cable {
    let (a, b, c) = (
        Netns::new("pa").unwrap(),
        Netns::new("pb").unwrap(),
        Netns::new("pc").unwrap(),
    );
    let opts = VethOpts::default();
    let ab = Veth::create(&a, "va", &b, "vb1", &opts).unwrap();
    let bc = Veth::create(&b, "vb2", &c, "vc", &opts).unwrap();
    a.add_address("va", A4.into(), 24).unwrap();
    a.add_address("va", A6.into(), 64).unwrap();
    c.add_address("vc", C4.into(), 24).unwrap();
    c.add_address("vc", C6.into(), 64).unwrap();
    // Each end knows the other's MAC: frames cross the patch addressed end to end.
    for ip in [IpAddr::from(C4), IpAddr::from(C6)] {
        a.add_neighbour("va", ip, bc.mac_b()).unwrap();
    }
    for ip in [IpAddr::from(A4), IpAddr::from(A6)] {
        c.add_neighbour("vc", ip, ab.mac_a()).unwrap();
    }
    Cable {
        a,
        b,
        c,
        _ab: ab,
        _bc: bc,
    }
}

/// An echo server on `c`, port 7777, IPv4 and IPv6, until `stop`.
fn echo_server(c: &Netns, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<u64>> {
    [SocketAddr::from((C4, PORT)), SocketAddr::from((C6, PORT))]
        .into_iter()
        .map(|addr| {
            let sock = c.run(|| UdpSocket::bind(addr)).unwrap().unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut echoed = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        sock.send_to(&buf[..n], from).unwrap();
                        echoed += 1;
                    }
                }
                echoed
            })
        })
        .collect()
}

/// Send `count` datagrams of varying size and content from `a` (source port 7777, so the
/// replies are steered too) and check every reply is byte-identical. Returns replies checked.
fn exchange(a: &Netns, local: SocketAddr, peer: SocketAddr, count: usize) -> usize {
    let sock = a.run(|| UdpSocket::bind(local)).unwrap().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Wait (bounded) for the path: the engine attaches after it starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    loop {
        sock.send_to(b"probe", peer).unwrap();
        if sock.recv_from(&mut buf).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no echo through the patch within 10 s"
        );
    }
    let mut ok = 0;
    for i in 0..count {
        let len = 1 + (i * 37) % 1400;
        let msg: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
        sock.send_to(&msg, peer).unwrap();
        let (n, from) = sock.recv_from(&mut buf).expect("reply within 500 ms");
        assert_eq!(from, peer);
        assert_eq!(&buf[..n], &msg[..], "datagram {i} came back changed");
        ok += 1;
    }
    ok
}

#[test]
fn patch_moves_frames_between_two_ports() {
    if !require_root("patch_moves_frames_between_two_ports") {
        return;
    }
    let cab = cable();
    let stop = Arc::new(AtomicBool::new(false));
    let servers = echo_server(&cab.c, stop.clone());
    let mut engine = Engine::start_in(
        &cab.b,
        &[
            "--iface", "vb1", "--iface", "vb2", "--app", "patch", "--udp", "7777",
        ],
    );
    const N: usize = 1000;
    let v4 = exchange(&cab.a, (A4, PORT).into(), (C4, PORT).into(), N);
    let v6 = exchange(&cab.a, (A6, PORT).into(), (C6, PORT).into(), N);
    assert_eq!((v4, v6), (N, N));
    // The control socket answers on every port's name, with the ports and their counters.
    let out = cab
        .b
        .run(|| {
            std::process::Command::new(common::sluice_bin())
                .args(["ctl", "--iface", "vb2", "--json", "stats"])
                .output()
        })
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ports = &reply["data"]["total"]["ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(2), "{reply}");
    assert!(
        ports[0]["rx_packets"].as_u64().unwrap() >= 2 * N as u64,
        "{reply}"
    );
    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    let echoed: u64 = servers.into_iter().map(|h| h.join().unwrap()).sum();

    // Every datagram crossed the engine twice: a→c on port 0 → port 1, the echo back on
    // port 1 → port 0. Probes add a few on each side.
    let ports = fin["ports"].as_array().expect("per-port counters");
    assert_eq!(ports.len(), 2, "{fin}");
    assert_eq!(
        (ports[0]["iface"].as_str(), ports[1]["iface"].as_str()),
        (Some("vb1"), Some("vb2"))
    );
    let get = |p: usize, k: &str| ports[p][k].as_u64().unwrap();
    let sent = 2 * N as u64;
    assert!(get(0, "rx_packets") >= sent, "{fin}");
    assert_eq!(
        get(0, "rx_packets"),
        get(1, "tx_packets"),
        "port 0 in = port 1 out: {fin}"
    );
    assert_eq!(
        get(1, "rx_packets"),
        get(0, "tx_packets"),
        "port 1 in = port 0 out: {fin}"
    );
    assert_eq!(
        get(1, "rx_packets"),
        echoed,
        "every echo crossed back: {fin}"
    );
    assert_eq!(get(0, "rx_bytes"), get(1, "tx_bytes"));
    assert_eq!(fin["total"]["dropped"].as_u64(), Some(0), "{fin}");
    // Both fill rings got frames from the start: the kernel dropped nothing for want of one
    // (an engine that gave port 0 every frame lost the first echo on port 1).
    for q in fin["queues"].as_array().unwrap() {
        assert_eq!(q["kernel"]["rx_dropped"].as_u64(), Some(0), "{fin}");
    }
    assert_census(&fin);
}

#[test]
fn ports_must_be_distinct_and_exist() {
    if !require_root("ports_must_be_distinct_and_exist") {
        return;
    }
    let cab = cable();
    for (args, want) in [
        (
            vec!["--iface", "vb1", "--iface", "vb1", "--udp", "7777"],
            "invalid --iface: vb1 is given twice",
        ),
        (
            vec!["--iface", "vb1", "--iface", "nope0", "--udp", "7777"],
            "no interface named \"nope0\"",
        ),
    ] {
        let mut engine = Engine::start_in(&cab.b, &args);
        let deadline = Instant::now() + Duration::from_secs(10);
        while engine.is_running() {
            assert!(Instant::now() < deadline, "sluice {args:?} did not fail");
            std::thread::sleep(Duration::from_millis(20));
        }
        let err = engine.stderr_text();
        assert!(err.contains(want), "sluice {args:?}: {err}");
    }
    let _ = &cab.a;
}
