//! Tests of the balancer's per-frame work over a table built from rtnetlink messages, with
//! etherparse as the oracle for every frame it sends.

use super::app::{IcmpLimit, Lb, LbParts, LbWorkerStats};
use super::config::{Forwarding, Vip};
use super::conntrack::ConnTrackConfig;
use super::flow::BackendId;
use super::table::{BackendSpec, LbHandle, LbTable, ServiceSpec};
use crate::apps::forward::PortInfo;
use crate::apps::{App, Batch, DropReason, Verdict};
use crate::batch::PortId;
use crate::control::mirror::Snapshot;
use crate::fib::{Fib, FibHandle};
use crate::testmsg::{self, LOCAL, MAIN, ip};
use etherparse::{
    IpNumber, Ipv4HeaderSlice, Ipv6HeaderSlice, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::RouteType;
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

// ---- the host: port ifindex 2 (PortId 0, MTU 1500), 10.0.0.254/24, 2001:db8::fe/64 ----

const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
/// Backends: 10.0.0.11 (MAC ..:11), 10.0.0.12 (..:12), 10.0.0.13 (no neighbour),
/// 2001:db8::11 (..:21), 2001:db8::12 (..:22); 10.0.5.1 has no route.
const B1: &str = "10.0.0.11";
const B2: &str = "10.0.0.12";
const B_UNRESOLVED: &str = "10.0.0.13";
const B6_1: &str = "2001:db8::11";
const B6_2: &str = "2001:db8::12";
const B_NO_ROUTE: &str = "10.0.5.1";

fn fib(mtu: u32) -> Fib {
    let n = |a, m| testmsg::neigh(2, a, NeighbourState::Reachable, m);
    let m = vec![
        testmsg::link(2, mtu, true, true),
        n(B1, 0x11),
        n(B2, 0x12),
        n(B6_1, 0x21),
        n(B6_2, 0x22),
        testmsg::route(MAIN, RouteType::Unicast, "10.0.0.0/24", 0, &[(None, 2, 0)]),
        testmsg::route(
            MAIN,
            RouteType::Unicast,
            "2001:db8::/64",
            0,
            &[(None, 2, 0)],
        ),
        testmsg::addr(2, "10.0.0.254", 24, false),
        testmsg::addr(2, "2001:db8::fe", 64, false),
        testmsg::route(
            LOCAL,
            RouteType::Broadcast,
            "10.0.0.255/32",
            0,
            &[(None, 2, 0)],
        ),
    ];
    Fib::from_snapshot(&Snapshot::from_messages(m), &[2])
}

fn vip(s: &str) -> Vip {
    s.parse().unwrap()
}

fn backend(id: u32, addr: &str) -> BackendSpec {
    BackendSpec {
        id: BackendId(id),
        addr: ip(addr),
        weight: 1,
        takes_new: true,
    }
}

fn service(v: &str, forwarding: Forwarding, backends: Vec<BackendSpec>) -> ServiceSpec {
    ServiceSpec {
        vip: vip(v),
        forwarding,
        backends,
    }
}

/// The services most tests use.
fn services() -> Vec<ServiceSpec> {
    vec![
        service(
            "10.0.0.100:80/tcp",
            Forwarding::Dsr,
            vec![backend(1, B1), backend(2, B2)],
        ),
        service("10.0.0.100:53/udp", Forwarding::Ipip, vec![backend(3, B1)]),
        service(
            "[2001:db8:100::1]:80/tcp",
            Forwarding::Dsr,
            vec![backend(4, B6_1), backend(5, B6_2)],
        ),
        service(
            "[2001:db8:100::1]:53/udp",
            Forwarding::Ipip,
            vec![backend(6, B6_1)],
        ),
        // 4in6.
        service(
            "10.0.0.101:53/udp",
            Forwarding::Ipip,
            vec![backend(7, B6_2)],
        ),
        service("10.0.0.102:0/udp", Forwarding::Dsr, vec![backend(8, B2)]),
        service(
            "10.0.0.103:80/tcp",
            Forwarding::Dsr,
            vec![backend(9, B_UNRESOLVED)],
        ),
        service(
            "10.0.0.104:80/tcp",
            Forwarding::Dsr,
            vec![backend(10, B_NO_ROUTE)],
        ),
    ]
}

const MAGLEV: u32 = 65537;

struct Rig {
    app: Lb,
    table: LbHandle,
    stats: Arc<LbWorkerStats>,
}

fn rig_with(specs: &[ServiceSpec], mtu: u32) -> Rig {
    let table = LbHandle::new(LbTable::build(specs, MAGLEV).unwrap());
    let stats = Arc::new(LbWorkerStats::default());
    let app = Lb::new(LbParts {
        table: table.clone(),
        fib: FibHandle::new(fib(mtu)),
        ports: vec![PortInfo::new(2)],
        conntrack: ConnTrackConfig {
            capacity: 4096,
            seed: 99,
            ..ConnTrackConfig::default()
        },
        icmp: IcmpLimit::default(),
        stats: stats.clone(),
    });
    Rig { app, table, stats }
}

fn rig() -> Rig {
    rig_with(&services(), 1500)
}

// ---- frames ----

#[derive(Clone)]
struct Pkt {
    src: &'static str,
    dst: &'static str,
    sport: u16,
    dport: u16,
    tcp: bool,
    len: usize,
    df: bool,
    /// IPv4 TOS / IPv6 traffic class.
    tos: u8,
}

impl Default for Pkt {
    fn default() -> Self {
        Pkt {
            src: "198.51.100.7",
            dst: "10.0.0.100",
            sport: 40000,
            dport: 80,
            tcp: true,
            len: 20,
            df: true,
            tos: 0,
        }
    }
}

fn pkt(src: &'static str, dst: &'static str, dport: u16, tcp: bool) -> Pkt {
    Pkt {
        src,
        dst,
        dport,
        tcp,
        ..Pkt::default()
    }
}

fn frame(p: &Pkt) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, PORT_MAC);
    let payload: Vec<u8> = (0..p.len).map(|i| i as u8).collect();
    let mut out = Vec::new();
    match (ip(p.src), ip(p.dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let b = eth.ipv4(s.octets(), d.octets(), 64);
            if p.tcp {
                b.tcp(p.sport, p.dport, 1, 1000)
                    .syn()
                    .write(&mut out, &payload)
            } else {
                b.udp(p.sport, p.dport).write(&mut out, &payload)
            }
            .unwrap();
            let mut h = Ipv4HeaderSlice::from_slice(&out[14..]).unwrap().to_header();
            h.dont_fragment = p.df;
            h.dscp = etherparse::IpDscp::try_new(p.tos >> 2).unwrap();
            h.ecn = etherparse::IpEcn::try_new(p.tos & 3).unwrap();
            h.header_checksum = h.calc_header_checksum();
            out[14..34].copy_from_slice(&h.to_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let b = eth.ipv6(s.octets(), d.octets(), 64);
            if p.tcp {
                b.tcp(p.sport, p.dport, 1, 1000)
                    .syn()
                    .write(&mut out, &payload)
            } else {
                b.udp(p.sport, p.dport).write(&mut out, &payload)
            }
            .unwrap();
            let mut h = Ipv6HeaderSlice::from_slice(&out[14..]).unwrap().to_header();
            h.traffic_class = p.tos;
            out[14..54].copy_from_slice(&h.to_bytes());
        }
        _ => unreachable!(),
    }
    out
}

/// Headroom before each frame, as AF_XDP lends it.
const HEADROOM: usize = 256;

/// Runs `frames` through the app as one batch on port 0, each after [`HEADROOM`] bytes of a
/// 2048-byte buffer; the frames as they are after, and the verdicts.
fn run(app: &mut Lb, frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<Verdict>) {
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = vec![0x5a; HEADROOM];
            b.extend_from_slice(f);
            b.resize(2048, 0xa5);
            b
        })
        .collect();
    let mut starts = vec![HEADROOM as u32; frames.len()];
    let mut lens: Vec<u32> = frames.iter().map(|f| f.len() as u32).collect();
    let mut verdicts = vec![Verdict::Tx; frames.len()];
    {
        let mut slices: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        let mut batch = Batch::with_room(
            &mut slices,
            &mut starts,
            &mut lens,
            &mut verdicts,
            PortId(0),
        );
        app.process(&mut batch);
    }
    let out = bufs
        .iter()
        .zip(starts.iter().zip(&lens))
        .map(|(b, (&s, &l))| b[s as usize..(s + l) as usize].to_vec())
        .collect();
    (out, verdicts)
}

fn run1(app: &mut Lb, f: &[u8]) -> (Vec<u8>, Verdict) {
    let (mut out, v) = run(app, &[f.to_vec()]);
    (out.remove(0), v[0])
}

/// The backend MAC byte a DSR frame went to.
fn dsr_target(out: &[u8]) -> u8 {
    out[5]
}

fn send(app: &mut Lb, p: &Pkt) -> Verdict {
    run1(app, &frame(p)).1
}

// ---- DSR ----

#[test]
fn dsr_rewrites_only_the_macs() {
    let mut r = rig();
    for p in [
        pkt("198.51.100.7", "10.0.0.100", 80, true),
        pkt("2001:db8:5::7", "2001:db8:100::1", 80, true),
        pkt("198.51.100.7", "10.0.0.102", 4242, false),
    ] {
        let f = frame(&p);
        let (out, v) = run1(&mut r.app, &f);
        assert_eq!(v, Verdict::TxOn(PortId(0)), "{} -> {}", p.src, p.dst);
        assert_eq!(out.len(), f.len());
        assert_eq!(&out[6..12], &PORT_MAC, "source MAC is the port's");
        let target = dsr_target(&out);
        let allowed: &[u8] = if p.dst.contains(':') {
            &[0x21, 0x22]
        } else if p.dst == "10.0.0.102" {
            &[0x12]
        } else {
            &[0x11, 0x12]
        };
        assert!(allowed.contains(&target), "went to ..:{target:02x}");
        assert_eq!(&out[..5], &[2, 0, 0, 0, 0]);
        assert_eq!(&out[12..], &f[12..], "the IP packet is untouched");
    }
}

#[test]
fn a_flow_stays_on_one_backend_and_flows_spread() {
    let mut r = rig();
    let mut per_backend: HashMap<u8, usize> = HashMap::new();
    for sport in 1000..3000u16 {
        let p = Pkt {
            sport,
            ..Pkt::default()
        };
        let first = run1(&mut r.app, &frame(&p)).0;
        let again = run1(&mut r.app, &frame(&p)).0;
        assert_eq!(dsr_target(&first), dsr_target(&again), "flow {sport}");
        *per_backend.entry(dsr_target(&first)).or_default() += 1;
    }
    // 2000 flows over two equal backends: each share is 1000 ± 4σ (σ ≈ 22).
    assert_eq!(per_backend.len(), 2);
    for (&b, &n) in &per_backend {
        assert!(
            (900..=1100).contains(&n),
            "backend ..:{b:02x} got {n} of 2000"
        );
    }
    let s = r.stats.read();
    assert_eq!(s.flows, 2000);
    assert_eq!((s.inserts, s.hits), (2000, 2000));
    assert_eq!(s.capacity, 4096);
}

#[test]
fn two_balancers_with_the_same_services_agree_on_every_flow() {
    // The second lists the backends in the other order and numbers them differently.
    let mut a = rig();
    let mut specs = services();
    specs[0].backends = vec![backend(22, B2), backend(21, B1)];
    let mut b = rig_with(&specs, 1500);
    for sport in 1..=10_000u16 {
        let p = Pkt {
            sport,
            src: if sport % 2 == 0 {
                "198.51.100.7"
            } else {
                "203.0.113.9"
            },
            ..Pkt::default()
        };
        let f = frame(&p);
        assert_eq!(
            dsr_target(&run1(&mut a.app, &f).0),
            dsr_target(&run1(&mut b.app, &f).0),
            "flow from port {sport}"
        );
    }
}

// ---- backends changing under the flows ----

#[test]
fn removing_a_backend_moves_only_its_flows() {
    let mut r = rig();
    let flows: Vec<Pkt> = (1000..1400u16)
        .map(|sport| Pkt {
            sport,
            ..Pkt::default()
        })
        .collect();
    let before: Vec<u8> = flows
        .iter()
        .map(|p| dsr_target(&run1(&mut r.app, &frame(p)).0))
        .collect();
    let mut specs = services();
    specs[0].backends.retain(|b| b.id != BackendId(1)); // B1, MAC ..:11
    r.table.store(LbTable::build(&specs, MAGLEV).unwrap());
    for (p, &was) in flows.iter().zip(&before) {
        let now = dsr_target(&run1(&mut r.app, &frame(p)).0);
        if was == 0x12 {
            assert_eq!(now, 0x12, "flow {} stayed", p.sport);
        } else {
            assert_eq!(now, 0x12, "flow {} moved off the removed backend", p.sport);
        }
    }
    assert!(before.contains(&0x11));
}

#[test]
fn draining_keeps_known_flows_and_sends_new_ones_elsewhere() {
    let mut r = rig();
    let known: Vec<Pkt> = (1000..1200u16)
        .map(|sport| Pkt {
            sport,
            ..Pkt::default()
        })
        .collect();
    let before: Vec<u8> = known
        .iter()
        .map(|p| dsr_target(&run1(&mut r.app, &frame(p)).0))
        .collect();
    let mut specs = services();
    specs[0].backends[0].takes_new = false; // drain B1
    r.table.store(LbTable::build(&specs, MAGLEV).unwrap());
    for (p, &was) in known.iter().zip(&before) {
        assert_eq!(
            dsr_target(&run1(&mut r.app, &frame(p)).0),
            was,
            "flow {}",
            p.sport
        );
    }
    for sport in 5000..5200u16 {
        let p = Pkt {
            sport,
            ..Pkt::default()
        };
        assert_eq!(
            dsr_target(&run1(&mut r.app, &frame(&p)).0),
            0x12,
            "new flow {sport}"
        );
    }
}

#[test]
fn a_vip_with_no_backend_taking_flows_drops_new_ones() {
    let mut specs = services();
    for b in &mut specs[0].backends {
        b.takes_new = false;
    }
    let mut r = rig_with(&specs, 1500);
    assert_eq!(
        send(&mut r.app, &Pkt::default()),
        Verdict::Drop(DropReason::NoBackend)
    );
}

#[test]
fn backends_without_a_neighbour_or_route_are_counted_by_reason() {
    let mut r = rig();
    assert_eq!(
        send(&mut r.app, &pkt("198.51.100.7", "10.0.0.103", 80, true)),
        Verdict::Drop(DropReason::NoNeighbour)
    );
    assert_eq!(
        send(&mut r.app, &pkt("198.51.100.7", "10.0.0.104", 80, true)),
        Verdict::Drop(DropReason::BackendUnreachable)
    );
}

// ---- IPIP ----

/// Checks an encapsulated frame against the original: Ethernet to the backend's MAC from the
/// port's, the outer header as etherparse reads it, the inner packet byte for byte.
fn assert_encapsulated(orig: &[u8], out: &[u8], outer_src: &str, backend: &str, mac: u8) {
    assert_eq!(&out[..6], &[2, 0, 0, 0, 0, mac]);
    assert_eq!(&out[6..12], &PORT_MAC);
    let inner_v6 = orig[12..14] == [0x86, 0xdd];
    let inner_len = if inner_v6 {
        40 + usize::from(u16::from_be_bytes([orig[18], orig[19]]))
    } else {
        usize::from(u16::from_be_bytes([orig[16], orig[17]]))
    };
    let inner = &orig[14..14 + inner_len];
    let want_proto = if inner_v6 { 41 } else { 4 };
    match ip(backend) {
        IpAddr::V4(b) => {
            assert_eq!(&out[12..14], &[0x08, 0x00]);
            let h = Ipv4HeaderSlice::from_slice(&out[14..]).unwrap();
            assert_eq!(h.protocol(), IpNumber(want_proto));
            assert_eq!(h.source_addr(), ip(outer_src));
            assert_eq!(h.destination_addr(), b);
            assert_eq!(usize::from(h.total_len()), 20 + inner_len);
            let hdr = h.to_header();
            assert_eq!(
                hdr.calc_header_checksum(),
                hdr.header_checksum,
                "outer checksum"
            );
            assert_eq!(h.ttl(), 64);
            assert_eq!(&out[34..], inner, "the inner packet is unchanged");
            assert_eq!(out.len(), 34 + inner_len);
            let inner_tos = if inner_v6 {
                (inner[0] & 0x0f) << 4 | inner[1] >> 4
            } else {
                inner[1]
            };
            assert_eq!(out[15], inner_tos, "DSCP and ECN copied");
        }
        IpAddr::V6(b) => {
            assert_eq!(&out[12..14], &[0x86, 0xdd]);
            let h = Ipv6HeaderSlice::from_slice(&out[14..]).unwrap();
            assert_eq!(h.next_header(), IpNumber(want_proto));
            assert_eq!(h.source_addr(), ip(outer_src));
            assert_eq!(h.destination_addr(), b);
            assert_eq!(usize::from(h.payload_length()), inner_len);
            assert_eq!(h.hop_limit(), 64);
            assert_ne!(h.flow_label().value(), 0, "flow label from the flow hash");
            assert_eq!(&out[54..], inner, "the inner packet is unchanged");
            let inner_tos = if inner_v6 {
                (inner[0] & 0x0f) << 4 | inner[1] >> 4
            } else {
                inner[1]
            };
            assert_eq!(h.traffic_class(), inner_tos, "DSCP and ECN copied");
        }
    }
    // The whole thing parses, down to the inner transport header.
    let outer = SlicedPacket::from_ethernet(out).unwrap();
    assert!(outer.net.is_some());
}

#[test]
fn ipip_ip6ip6_and_4in6_encapsulate_with_correct_outer_headers() {
    let mut r = rig();
    let cases = [
        (
            pkt("198.51.100.7", "10.0.0.100", 53, false),
            "10.0.0.254",
            B1,
            0x11,
        ),
        (
            pkt("2001:db8:5::7", "2001:db8:100::1", 53, false),
            "2001:db8::fe",
            B6_1,
            0x21,
        ),
        (
            pkt("198.51.100.7", "10.0.0.101", 53, false),
            "2001:db8::fe",
            B6_2,
            0x22,
        ),
    ];
    for (mut p, src, backend, mac) in cases {
        p.tos = 0xb9; // DSCP 46 (EF), ECN 01
        let f = frame(&p);
        let (out, v) = run1(&mut r.app, &f);
        assert_eq!(v, Verdict::TxOn(PortId(0)), "{} -> {}", p.src, p.dst);
        assert_encapsulated(&f, &out, src, backend, mac);
    }
}

#[test]
fn ipip_trims_ethernet_padding_and_copies_df() {
    let mut r = rig();
    let mut p = pkt("198.51.100.7", "10.0.0.100", 53, false);
    p.len = 1;
    p.df = false;
    let mut f = frame(&p);
    f.resize(60, 0); // padded to the Ethernet minimum
    let (out, v) = run1(&mut r.app, &f);
    assert_eq!(v, Verdict::TxOn(PortId(0)));
    assert_encapsulated(&f, &out, "10.0.0.254", B1, 0x11);
    assert!(
        !Ipv4HeaderSlice::from_slice(&out[14..])
            .unwrap()
            .dont_fragment()
    );
}

#[test]
fn ipip_without_headroom_is_counted() {
    let mut r = rig();
    let f = frame(&pkt("198.51.100.7", "10.0.0.100", 53, false));
    let mut buf = f.clone();
    let mut slices: Vec<&mut [u8]> = vec![&mut buf[..]];
    let mut verdicts = vec![Verdict::Tx];
    let mut batch = Batch::new(&mut slices, &mut verdicts);
    r.app.process(&mut batch);
    assert_eq!(verdicts[0], Verdict::Drop(DropReason::NoHeadroom));
    assert_eq!(buf, f, "unchanged");
}

// ---- PMTU ----

/// The ICMP error in `out`: (source, destination, type, code, the 4 bytes after the checksum),
/// after checking the Ethernet header (back to the client) and every checksum.
fn icmp_error(out: &[u8]) -> (IpAddr, IpAddr, u8, u8, [u8; 4]) {
    assert_eq!(&out[..6], &CLIENT_MAC, "back to the client");
    let p = SlicedPacket::from_ethernet(out).unwrap();
    match (p.net.unwrap(), p.transport.unwrap()) {
        (NetSlice::Ipv4(n), TransportSlice::Icmpv4(i)) => {
            let h = n.header().to_header();
            assert_eq!(h.calc_header_checksum(), h.header_checksum);
            let sum = i.icmp_type().calc_checksum(i.payload());
            assert_eq!(sum, i.checksum(), "ICMP checksum");
            let b = i.bytes5to8();
            (
                IpAddr::V4(h.source.into()),
                IpAddr::V4(h.destination.into()),
                i.type_u8(),
                i.code_u8(),
                b,
            )
        }
        (NetSlice::Ipv6(n), TransportSlice::Icmpv6(i)) => {
            let h = n.header().to_header();
            let sum = i
                .icmp_type()
                .calc_checksum(h.source, h.destination, i.payload())
                .unwrap();
            assert_eq!(sum, i.checksum(), "ICMPv6 checksum");
            (
                IpAddr::V6(h.source.into()),
                IpAddr::V6(h.destination.into()),
                i.type_u8(),
                i.code_u8(),
                i.bytes5to8(),
            )
        }
        other => panic!("not an ICMP error: {other:?}"),
    }
}

#[test]
fn too_big_after_encapsulation_answers_the_client_from_the_vip() {
    let mut r = rig_with(&services(), 1400);
    // IPv4 with DF: fragmentation needed, next-hop MTU 1400 - 20.
    let mut p = pkt("198.51.100.7", "10.0.0.100", 53, false);
    p.len = 1400 - 20 - 8 - 10; // IP 1390: fits alone, not with 20 more
    let (out, v) = run1(&mut r.app, &frame(&p));
    assert_eq!(v, Verdict::Tx);
    let (src, dst, typ, code, rest) = icmp_error(&out);
    assert_eq!((src, dst), (ip("10.0.0.100"), ip("198.51.100.7")));
    assert_eq!((typ, code), (3, 4));
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1380);
    // Without DF: dropped, counted.
    p.df = false;
    assert_eq!(send(&mut r.app, &p), Verdict::Drop(DropReason::TooBig));
    // A packet that fits is encapsulated.
    p.len = 1380 - 28;
    assert_eq!(send(&mut r.app, &p), Verdict::TxOn(PortId(0)));
}

#[test]
fn too_big_ipv6_answers_packet_too_big_of_at_least_1280() {
    let mut r = rig_with(&services(), 1320);
    let mut p = pkt("2001:db8:5::7", "2001:db8:100::1", 53, false);
    p.len = 1300 - 48;
    let (out, v) = run1(&mut r.app, &frame(&p));
    assert_eq!(v, Verdict::Tx);
    let (src, dst, typ, code, rest) = icmp_error(&out);
    assert_eq!((src, dst), (ip("2001:db8:100::1"), ip("2001:db8:5::7")));
    assert_eq!((typ, code), (2, 0));
    assert_eq!(
        u32::from_be_bytes(rest),
        1280,
        "1320 - 40, raised to the minimum"
    );
}

#[test]
fn dsr_too_big_for_the_egress_mtu_answers_too() {
    let mut r = rig_with(&services(), 1000);
    let p = Pkt {
        len: 1100,
        ..Pkt::default()
    };
    let (out, v) = run1(&mut r.app, &frame(&p));
    assert_eq!(v, Verdict::Tx);
    let (_, _, typ, code, rest) = icmp_error(&out);
    assert_eq!(
        (typ, code, u16::from_be_bytes([rest[2], rest[3]])),
        (3, 4, 1000)
    );
}

// ---- ICMP to a VIP ----

/// An ICMPv4 error from `router` to the VIP quoting a VIP:vport → client:cport UDP/TCP packet.
fn icmp4_about(router: &str, vip: &str, vport: u16, client: &str, cport: u16, typ: u8) -> Vec<u8> {
    let (IpAddr::V4(r), IpAddr::V4(v), IpAddr::V4(c)) = (ip(router), ip(vip), ip(client)) else {
        unreachable!()
    };
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(v.octets(), c.octets(), 63)
        .tcp(vport, cport, 7, 1000)
        .write(&mut quoted, &[])
        .unwrap();
    quoted.truncate(28);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, PORT_MAC)
        .ipv4(r.octets(), v.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::Unknown {
            type_u8: typ,
            code_u8: 4,
            bytes5to8: [0, 0, 5, 0xdc],
        })
        .write(&mut out, &quoted)
        .unwrap();
    out
}

#[test]
fn icmp_errors_about_a_flow_go_to_its_backend() {
    let mut r = rig();
    for sport in 2000..2100u16 {
        let p = Pkt {
            sport,
            ..Pkt::default()
        };
        let target = dsr_target(&run1(&mut r.app, &frame(&p)).0);
        let err = icmp4_about("203.0.113.1", "10.0.0.100", 80, "198.51.100.7", sport, 3);
        let (out, v) = run1(&mut r.app, &err);
        assert_eq!(v, Verdict::TxOn(PortId(0)));
        assert_eq!(dsr_target(&out), target, "flow {sport}");
        assert_eq!(&out[12..], &err[12..], "forwarded unchanged");
    }
    // The errors did not create flows.
    assert_eq!(r.app.conntrack().len(), 100);
}

#[test]
fn other_icmp_to_a_vip_is_not_a_flow() {
    let mut r = rig();
    let mut echo = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, PORT_MAC)
        .ipv4([198, 51, 100, 7], [10, 0, 0, 100], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut echo, b"ping")
        .unwrap();
    assert_eq!(run1(&mut r.app, &echo).1, Verdict::Drop(DropReason::NotVip));
    // An error quoting a packet that is not from the VIP.
    let err = icmp4_about("203.0.113.1", "10.0.0.100", 80, "198.51.100.7", 1, 3);
    let mut wrong = err.clone();
    wrong[14 + 20 + 8 + 12..14 + 20 + 8 + 16].copy_from_slice(&[10, 9, 9, 9]);
    assert_eq!(
        run1(&mut r.app, &wrong).1,
        Verdict::Drop(DropReason::NotVip)
    );
}

// ---- what a balancer must not pass on ----

#[test]
fn martians_group_addresses_and_fragments_are_dropped_by_reason() {
    let mut r = rig();
    let base = frame(&Pkt::default());
    let mut group_src = base.clone();
    group_src[6] |= 1;
    let mut group_dst = base.clone();
    group_dst[0] |= 1;
    let port0 = frame(&Pkt {
        sport: 0,
        ..Pkt::default()
    });
    let bcast_src = frame(&Pkt {
        src: "255.255.255.255",
        ..Pkt::default()
    });
    let mut frag = base.clone();
    frag[14 + 6] = 0x20; // MF
    {
        let mut h = Ipv4HeaderSlice::from_slice(&frag[14..])
            .unwrap()
            .to_header();
        h.header_checksum = h.calc_header_checksum();
        frag[14..34].copy_from_slice(&h.to_bytes());
    }
    let mut bad_sum = base.clone();
    bad_sum[14 + 10] ^= 0xff;
    let not_vip = frame(&pkt("198.51.100.7", "10.0.0.100", 81, true));
    let cases = [
        (group_src, DropReason::MartianSource),
        (group_dst, DropReason::GroupDestination),
        (port0, DropReason::PortZero),
        (bcast_src, DropReason::MartianSource),
        (frag, DropReason::Fragment),
        (bad_sum, DropReason::BadIpChecksum),
        (not_vip, DropReason::NotVip),
        (base[..30].to_vec(), DropReason::Truncated),
        (
            frame(&Pkt {
                src: "10.0.0.255", // a directed broadcast of the host (local broadcast route)
                ..Pkt::default()
            }),
            DropReason::MartianSource,
        ),
        (
            frame(&Pkt {
                src: "127.0.0.1",
                ..Pkt::default()
            }),
            DropReason::MartianSource,
        ),
        (
            frame(&Pkt {
                src: "::ffff:10.1.1.1",
                ..pkt("::ffff:10.1.1.1", "2001:db8:100::1", 80, true)
            }),
            DropReason::MartianSource,
        ),
        (
            frame(&pkt("198.51.100.7", "10.0.0.255", 80, true)),
            DropReason::GroupDestination,
        ),
        (
            frame(&pkt("198.51.100.7", "224.0.0.5", 80, false)),
            DropReason::GroupDestination,
        ),
        (
            frame(&pkt("198.51.100.7", "255.255.255.255", 80, false)),
            DropReason::GroupDestination,
        ),
        (
            frame(&pkt("2001:db8:5::7", "ff02::1", 80, false)),
            DropReason::GroupDestination,
        ),
        (
            frame(&pkt("198.51.100.7", "127.0.0.1", 80, false)),
            DropReason::MartianDestination,
        ),
        (
            frame(&Pkt {
                dport: 0,
                ..Pkt::default()
            }),
            DropReason::PortZero,
        ),
    ];
    for (f, reason) in cases {
        let (out, v) = run1(&mut r.app, &f);
        assert_eq!(v, Verdict::Drop(reason));
        assert_eq!(out, f, "a dropped frame is unchanged");
    }
}

thread_local! {
    /// One balancer per test thread for the properties: building the Maglev tables per case
    /// would dominate a long run (the connection table carries over between cases, as it does
    /// between a worker's frames).
    static FUZZ_RIG: std::cell::RefCell<Rig> = std::cell::RefCell::new(rig());
}

proptest! {
    #![proptest_config(crate::fuzz::config())]

    /// Any bytes: never a panic, never the kernel; a frame not sent is unchanged.
    #[test]
    fn any_bytes_get_a_verdict_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (out, v) = FUZZ_RIG.with_borrow_mut(|r| run1(&mut r.app, &bytes));
        prop_assert!(!matches!(v, Verdict::Kernel), "the balancer never hands to the kernel");
        if let Verdict::Drop(_) = v {
            prop_assert_eq!(out, bytes);
        }
    }

    #[test]
    fn mutated_vip_frames_never_panic(
        which in 0usize..4,
        flips in proptest::collection::vec((0usize..120, any::<u8>()), 1..6),
        cut in 0usize..130,
    ) {

        let mut f = match which {
            0 => frame(&Pkt::default()),
            1 => frame(&pkt("198.51.100.7", "10.0.0.100", 53, false)),
            2 => frame(&pkt("2001:db8:5::7", "2001:db8:100::1", 53, false)),
            _ => icmp4_about("203.0.113.1", "10.0.0.100", 80, "198.51.100.7", 9, 3),
        };
        for (at, v) in flips {
            if let Some(b) = f.get_mut(at) {
                *b = v;
            }
        }
        f.truncate(cut.max(1));
        let (out, v) = FUZZ_RIG.with_borrow_mut(|r| run1(&mut r.app, &f));
        if let Verdict::Drop(_) = v {
            prop_assert_eq!(&out, &f, "a dropped frame is unchanged");
        }
        prop_assert!(!matches!(v, Verdict::Kernel), "the balancer never hands to the kernel");
    }
}
