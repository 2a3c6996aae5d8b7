//! Tests of the router over a table built from rtnetlink messages (as the mirror receives them),
//! with etherparse as the oracle for every frame it sends.

use super::*;
use crate::control::mirror::Snapshot;
use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::RouteType;
use proptest::prelude::*;
use std::net::IpAddr;
use std::time::Duration;

// ---- the table: ports 2 (PortId 0, MTU 1500) and 3 (PortId 1, MTU 1400); 4 is not a port ----

use crate::testmsg::{self, LOCAL, MAIN, ip};

fn mac(n: u8) -> [u8; 6] {
    testmsg::mac(n).0
}

/// The sender on port 0.
const SENDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];

fn link(index: u32, mtu: u32) -> RouteNetlinkMessage {
    testmsg::link(index, mtu, true, true)
}

fn neigh(ifindex: u32, addr: &str, mac_byte: u8) -> RouteNetlinkMessage {
    testmsg::neigh(ifindex, addr, NeighbourState::Reachable, mac_byte)
}

fn addr(ifindex: u32, a: &str) -> RouteNetlinkMessage {
    testmsg::addr(ifindex, a, if ip(a).is_ipv4() { 24 } else { 64 }, false)
}

/// A route whose next hops are (gateway, oif), all of weight 1, metric 0.
fn route(
    table: u8,
    kind: RouteType,
    dst: &str,
    hops: &[(Option<&str>, u32)],
) -> RouteNetlinkMessage {
    let weighted: Vec<_> = match hops {
        [(gw, oif)] => vec![(*gw, *oif, 0)],
        _ => hops.iter().map(|&(gw, oif)| (gw, oif, 0)).collect(),
    };
    testmsg::route(table, kind, dst, 0, &weighted)
}

fn unicast(dst: &str, gw: Option<&str>, oif: u32) -> RouteNetlinkMessage {
    route(MAIN, RouteType::Unicast, dst, &[(gw, oif)])
}

/// The test router. `with_addrs: false` leaves the interfaces without addresses.
fn fib(with_addrs: bool) -> Fib {
    let mut m = vec![
        link(2, 1500),
        link(3, 1400),
        link(4, 1500),
        neigh(2, "10.0.0.1", 0xaa),
        neigh(3, "10.0.1.1", 0x12),
        neigh(3, "10.0.1.2", 0x13),
        neigh(4, "10.0.2.1", 0x14),
        neigh(2, "2001:db8::1", 0xaa),
        neigh(3, "2001:db8:1::1", 0x21),
        unicast("10.0.0.0/24", None, 2),
        unicast("10.0.1.0/24", None, 3),
        unicast("198.51.100.0/24", Some("10.0.1.1"), 3),
        route(
            MAIN,
            RouteType::Unicast,
            "203.0.113.0/24",
            &[(Some("10.0.1.1"), 3), (Some("10.0.1.2"), 3)],
        ),
        unicast("192.0.2.0/24", Some("10.0.2.1"), 4),
        unicast("10.9.0.0/16", None, 3),
        route(MAIN, RouteType::BlackHole, "10.66.0.0/16", &[]),
        route(MAIN, RouteType::Unreachable, "10.67.0.0/16", &[]),
        route(MAIN, RouteType::Prohibit, "10.68.0.0/16", &[]),
        route(LOCAL, RouteType::Local, "10.0.0.254/32", &[(None, 2)]),
        route(LOCAL, RouteType::Broadcast, "10.0.0.255/32", &[(None, 2)]),
        unicast("2001:db8::/64", None, 2),
        unicast("2001:db8:1::/64", None, 3),
        unicast("2001:db8:99::/48", Some("2001:db8:1::1"), 3),
        route(MAIN, RouteType::Prohibit, "2001:db8:68::/48", &[]),
        route(MAIN, RouteType::Unreachable, "2001:db8:67::/48", &[]),
        route(MAIN, RouteType::BlackHole, "2001:db8:66::/48", &[]),
    ];
    if with_addrs {
        m.extend([
            addr(2, "10.0.0.254"),
            addr(3, "10.0.1.254"),
            addr(2, "2001:db8::fe"),
            addr(2, "fe80::2"),
            addr(3, "2001:db8:1::fe"),
        ]);
    }
    Fib::from_snapshot(&Snapshot::from_messages(m), &[2, 3])
}

fn app_with(fib: Fib, limit: IcmpLimit) -> Forward {
    Forward::new(
        FibHandle::new(fib),
        vec![PortInfo::new(2), PortInfo::new(3)],
        limit,
    )
}

fn app() -> Forward {
    app_with(fib(true), IcmpLimit::default())
}

// ---- frames ----

/// Options for [`v4`] / [`v6`].
#[derive(Clone)]
struct Pkt {
    src: &'static str,
    dst: &'static str,
    ttl: u8,
    tags: u8,
    df: bool,
    /// UDP payload length (ignored for `icmp`).
    len: usize,
    sport: u16,
    /// Send an ICMP message of this type instead of UDP.
    icmp: Option<u8>,
}

impl Default for Pkt {
    fn default() -> Self {
        Pkt {
            src: "10.0.0.1",
            dst: "198.51.100.7",
            ttl: 64,
            tags: 0,
            df: true,
            len: 32,
            sport: 40000,
            icmp: None,
        }
    }
}

fn v6pkt() -> Pkt {
    Pkt {
        src: "2001:db8::1",
        dst: "2001:db8:99::7",
        ..Pkt::default()
    }
}

/// A frame from the sender to port 0's MAC (02:..:02) built by etherparse.
fn frame(p: &Pkt) -> Vec<u8> {
    let eth = etherparse::PacketBuilder::ethernet2(SENDER_MAC, mac(2));
    let vid = |v| etherparse::VlanId::try_new(v).unwrap();
    let payload: Vec<u8> = (0..p.len).map(|i| i as u8).collect();
    let mut out = Vec::new();
    macro_rules! l4 {
        ($ip:expr, $v6:expr) => {{
            let ip = $ip;
            match (p.icmp, $v6) {
                (Some(t), false) => ip
                    .icmpv4(Icmpv4Type::Unknown {
                        type_u8: t,
                        code_u8: 0,
                        bytes5to8: [0; 4],
                    })
                    .write(&mut out, &payload)
                    .unwrap(),
                (Some(t), true) => ip
                    .icmpv6(Icmpv6Type::Unknown {
                        type_u8: t,
                        code_u8: 0,
                        bytes5to8: [0; 4],
                    })
                    .write(&mut out, &payload)
                    .unwrap(),
                (None, _) => ip.udp(p.sport, 53).write(&mut out, &payload).unwrap(),
            }
        }};
    }
    macro_rules! ipl {
        ($link:expr) => {{
            let link = $link;
            match (ip(p.src), ip(p.dst)) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    l4!(link.ipv4(s.octets(), d.octets(), p.ttl), false)
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    l4!(link.ipv6(s.octets(), d.octets(), p.ttl), true)
                }
                _ => unreachable!(),
            }
        }};
    }
    match p.tags {
        0 => ipl!(eth),
        1 => ipl!(eth.single_vlan(vid(100))),
        _ => ipl!(eth.double_vlan(vid(10), vid(20))),
    }
    // DF as asked (etherparse's default may differ), checksum recomputed.
    let encap = vlan::walk(&out).unwrap();
    if encap.ether_type == EtherType::IPV4 {
        let mut ip4 = Ipv4Packet::new_checked(&mut out[encap.l3_offset..]).unwrap();
        ip4.set_dont_frag(p.df);
        ip4.fill_checksum();
    }
    out
}

/// Run `frames` through `app` as one batch received on `ingress`, each in a 2048-byte buffer;
/// returns the frames as they are after and the verdicts.
fn run_on(
    app: &mut Forward,
    ingress: PortId,
    frames: &[Vec<u8>],
    now: Instant,
) -> (Vec<Vec<u8>>, Vec<Verdict>) {
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = f.clone();
            b.resize(2048, 0xa5);
            b
        })
        .collect();
    let mut lens: Vec<u32> = frames.iter().map(|f| f.len() as u32).collect();
    let mut verdicts = vec![Verdict::Tx; frames.len()];
    {
        let mut slices: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        let mut starts = vec![0u32; slices.len()];
        let mut batch =
            Batch::with_room(&mut slices, &mut starts, &mut lens, &mut verdicts, ingress);
        app.process_at(&mut batch, now);
    }
    let out = bufs
        .iter()
        .zip(&lens)
        .map(|(b, &l)| b[..l as usize].to_vec())
        .collect();
    (out, verdicts)
}

fn run1(app: &mut Forward, f: &[u8]) -> (Vec<u8>, Verdict) {
    let (mut out, v) = run_on(app, PortId(0), &[f.to_vec()], Instant::now());
    (out.remove(0), v[0])
}

fn assert_unchanged(p: &Pkt, want: Verdict) {
    let f = frame(p);
    let (out, v) = run1(&mut app(), &f);
    assert_eq!(v, want, "{} -> {}", p.src, p.dst);
    assert_eq!(out, f, "a frame not sent is unchanged");
}

/// Check a forwarded frame against the original: MACs of the hop, TTL one less, valid IPv4
/// checksum, tags and everything else unchanged.
fn assert_forwarded(orig: &[u8], out: &[u8], dst_mac: [u8; 6], src_mac: [u8; 6]) {
    assert_eq!(orig.len(), out.len());
    let eth = etherparse::Ethernet2HeaderSlice::from_slice(out).unwrap();
    assert_eq!((eth.destination(), eth.source()), (dst_mac, src_mac));
    let (ea, eb) = (vlan::walk(orig).unwrap(), vlan::walk(out).unwrap());
    assert_eq!(
        (ea, &orig[12..ea.l3_offset]),
        (eb, &out[12..eb.l3_offset]),
        "VLAN tags kept"
    );
    let l3 = eb.l3_offset;
    if eb.ether_type == EtherType::IPV4 {
        let x = etherparse::Ipv4HeaderSlice::from_slice(&orig[l3..]).unwrap();
        let y = etherparse::Ipv4HeaderSlice::from_slice(&out[l3..]).unwrap();
        assert_eq!(y.ttl() + 1, x.ttl());
        let h = y.to_header();
        assert_eq!(
            h.calc_header_checksum(),
            h.header_checksum,
            "checksum valid"
        );
    } else {
        let x = etherparse::Ipv6HeaderSlice::from_slice(&orig[l3..]).unwrap();
        let y = etherparse::Ipv6HeaderSlice::from_slice(&out[l3..]).unwrap();
        assert_eq!(y.hop_limit() + 1, x.hop_limit());
    }
    // Only the MACs and the TTL/hop limit (+ IPv4 checksum) differ.
    let changed: Vec<usize> = (0..out.len()).filter(|&i| orig[i] != out[i]).collect();
    let allowed = |i: usize| {
        i < 12
            || if eb.ether_type == EtherType::IPV4 {
                i == l3 + 8 || i == l3 + 10 || i == l3 + 11
            } else {
                i == l3 + 7
            }
    };
    assert!(
        changed.iter().all(|&i| allowed(i)),
        "changed bytes {changed:?}"
    );
}

/// An ICMP error as etherparse sees it.
struct Err4or6 {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    typ: u8,
    code: u8,
    rest: [u8; 4],
    quote: Vec<u8>,
}

/// Parse an ICMP error frame with etherparse, checking its Ethernet header (back to the sender,
/// from port 0's MAC), VLAN tags (those of `orig`) and every checksum.
fn parse_error(orig: &[u8], out: &[u8]) -> Err4or6 {
    let b = SlicedPacket::from_ethernet(out).expect("oracle parses the ICMP error");
    let Some(etherparse::LinkSlice::Ethernet2(eb)) = &b.link else {
        panic!("not Ethernet II")
    };
    assert_eq!((eb.destination(), eb.source()), (SENDER_MAC, mac(2)));
    let (wa, wb) = (vlan::walk(orig).unwrap(), vlan::walk(out).unwrap());
    assert_eq!(
        (wa, &orig[12..wa.l3_offset]),
        (wb, &out[12..wb.l3_offset]),
        "VLAN tags kept"
    );
    match (b.net.unwrap(), b.transport.unwrap()) {
        (NetSlice::Ipv4(n), TransportSlice::Icmpv4(i)) => {
            let h = n.header().to_header();
            assert_eq!(h.calc_header_checksum(), h.header_checksum, "IPv4 checksum");
            assert_eq!(
                usize::from(n.header().total_len()) + wb.l3_offset,
                out.len()
            );
            let full = etherparse::Icmpv4Header::with_checksum(i.icmp_type(), i.payload());
            assert_eq!(full.checksum, i.checksum(), "ICMPv4 checksum");
            Err4or6 {
                src: IpAddr::V4(n.header().source_addr()),
                dst: IpAddr::V4(n.header().destination_addr()),
                ttl: n.header().ttl(),
                typ: i.type_u8(),
                code: i.code_u8(),
                rest: i.bytes5to8(),
                quote: i.payload().to_vec(),
            }
        }
        (NetSlice::Ipv6(n), TransportSlice::Icmpv6(i)) => {
            let (s, d) = (n.header().source(), n.header().destination());
            assert!(
                i.is_checksum_valid(s, d),
                "ICMPv6 checksum with pseudo-header"
            );
            assert_eq!(40 + n.payload().payload.len() + wb.l3_offset, out.len());
            assert!(
                out.len() - wb.l3_offset <= 1280,
                "within the IPv6 minimum MTU"
            );
            Err4or6 {
                src: IpAddr::V6(s.into()),
                dst: IpAddr::V6(d.into()),
                ttl: n.header().hop_limit(),
                typ: i.type_u8(),
                code: i.code_u8(),
                rest: i.bytes5to8(),
                quote: i.payload().to_vec(),
            }
        }
        other => panic!("not an ICMP error: {other:?}"),
    }
}

/// The IP packet inside `frame` (without Ethernet padding).
fn ip_packet(frame: &[u8]) -> &[u8] {
    let encap = vlan::walk(frame).unwrap();
    let l3 = &frame[encap.l3_offset..];
    let len = if encap.ether_type == EtherType::IPV4 {
        usize::from(Ipv4Packet::new_checked(l3).unwrap().total_len())
    } else {
        Ipv6Packet::new_checked(l3).unwrap().total_len()
    };
    &l3[..len]
}

// ---- forwarding ----

#[test]
fn forwards_v4_and_v6_with_and_without_tags() {
    for tags in 0..3 {
        let p = Pkt {
            tags,
            ..Pkt::default()
        };
        let f = frame(&p);
        let (out, v) = run1(&mut app(), &f);
        assert_eq!(v, Verdict::TxOn(PortId(1)));
        assert_forwarded(&f, &out, mac(0x12), mac(3));

        let p = Pkt { tags, ..v6pkt() };
        let f = frame(&p);
        let (out, v) = run1(&mut app(), &f);
        assert_eq!(v, Verdict::TxOn(PortId(1)));
        assert_forwarded(&f, &out, mac(0x21), mac(3));
    }
    // Back the other way, on-link, from port 1 to port 0; TTL 2 is still forwarded.
    let f = frame(&Pkt {
        src: "10.0.1.1",
        dst: "10.0.0.1",
        ttl: 2,
        ..Pkt::default()
    });
    let (out, v) = run_on(
        &mut app(),
        PortId(1),
        std::slice::from_ref(&f),
        Instant::now(),
    );
    assert_eq!(v[0], Verdict::TxOn(PortId(0)));
    assert_forwarded(&f, &out[0], mac(0xaa), mac(2));
    assert_eq!(app().name(), "forward");
}

#[test]
fn ecmp_is_stable_per_flow_and_spreads_flows() {
    let mut app = app();
    let mut seen = std::collections::HashSet::new();
    for sport in 0..64 {
        let f = frame(&Pkt {
            dst: "203.0.113.9",
            sport: 1000 + sport,
            ..Pkt::default()
        });
        let (a, va) = run1(&mut app, &f);
        let (b, vb) = run1(&mut app, &f);
        assert_eq!(
            (va, vb),
            (Verdict::TxOn(PortId(1)), Verdict::TxOn(PortId(1)))
        );
        assert_eq!(a[..6], b[..6], "one flow, one next hop");
        assert!(a[..6] == mac(0x12) || a[..6] == mac(0x13));
        seen.insert(a[..6].to_vec());
    }
    assert_eq!(seen.len(), 2, "64 flows use both next hops");
    assert_ne!(
        flow_hash(1, 2, IpProtocol::UDP, 1),
        flow_hash(1, 2, IpProtocol::UDP, 2)
    );
}

#[test]
fn kernel_cases_are_left_unchanged() {
    let k = Verdict::Kernel;
    assert_unchanged(
        &Pkt {
            dst: "10.0.0.254",
            ttl: 1,
            ..Pkt::default()
        },
        k,
    ); // local, even TTL 1
    assert_unchanged(
        &Pkt {
            dst: "10.9.1.1",
            ..Pkt::default()
        },
        k,
    ); // no neighbour
    assert_unchanged(
        &Pkt {
            dst: "192.0.2.1",
            ..Pkt::default()
        },
        k,
    ); // not our port
    assert_unchanged(
        &Pkt {
            dst: "224.0.0.5",
            ttl: 1,
            ..Pkt::default()
        },
        k,
    ); // multicast
    assert_unchanged(
        &Pkt {
            dst: "255.255.255.255",
            src: "0.0.0.0",
            ..Pkt::default()
        },
        k,
    ); // DHCP
    assert_unchanged(
        &Pkt {
            dst: "ff02::1",
            ..v6pkt()
        },
        k,
    );
    assert_unchanged(
        &Pkt {
            dst: "fe80::2",
            ..v6pkt()
        },
        k,
    ); // link-local: the table says local
    // Non-IP: ARP.
    let arp = crate::wire::ethernet::test::CAPTURED_ARP_REQUEST;
    let (out, v) = run1(&mut app(), &arp);
    assert_eq!((v, &out[..]), (k, &arp[..]));
    // A unicast packet in a frame to a group MAC.
    let mut f = frame(&Pkt::default());
    f[0] = 0x01;
    let (out, v) = run1(&mut app(), &f);
    assert_eq!((v, out), (k, f));
    // IPv4 options (IHL 6, a NOP option word), IPv6 hop-by-hop.
    let mut f = frame(&Pkt::default());
    f.splice(34..34, [1, 1, 1, 0]);
    {
        let mut ip4 = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip4.set_header_len(24);
        let tl = ip4.total_len();
        ip4.set_total_len(tl + 4);
        ip4.fill_checksum();
    }
    let (out, v) = run1(&mut app(), &f);
    assert_eq!((v, out), (k, f));
    let mut f = frame(&v6pkt());
    Ipv6Packet::new_unchecked(&mut f[14..]).set_next_header(IpProtocol::HOP_BY_HOP);
    let (out, v) = run1(&mut app(), &f);
    assert_eq!((v, out), (k, f));
    // A hop on an interface the app has no port for (the table knows 3, the app only 2).
    let mut only2 = Forward::new(
        FibHandle::new(fib(true)),
        vec![PortInfo::new(2)],
        IcmpLimit::default(),
    );
    let f = frame(&Pkt::default());
    let (out, v) = run1(&mut only2, &f);
    assert_eq!((v, out), (k, f));
}

// ---- ICMP errors ----

#[test]
fn ttl_1_gives_time_exceeded_v4() {
    for (tags, ttl) in [(0, 1), (1, 1), (2, 0)] {
        let f = frame(&Pkt {
            tags,
            ttl,
            ..Pkt::default()
        });
        let (out, v) = run1(&mut app(), &f);
        assert_eq!(v, Verdict::Tx);
        let e = parse_error(&f, &out);
        assert_eq!((e.typ, e.code, e.rest), (11, 0, [0; 4]));
        assert_eq!(
            (e.src, e.dst, e.ttl),
            (ip("10.0.0.254"), ip("10.0.0.1"), 64)
        );
        assert_eq!(e.quote, ip_packet(&f)[..28], "the IP header + 8 bytes");
    }
}

#[test]
fn hop_limit_1_gives_time_exceeded_v6() {
    for tags in 0..3 {
        let f = frame(&Pkt {
            tags,
            ttl: 1,
            ..v6pkt()
        });
        let (out, v) = run1(&mut app(), &f);
        assert_eq!(v, Verdict::Tx);
        let e = parse_error(&f, &out);
        assert_eq!((e.typ, e.code, e.rest), (3, 0, [0; 4]));
        assert_eq!(
            (e.src, e.dst, e.ttl),
            (ip("2001:db8::fe"), ip("2001:db8::1"), 64)
        );
        assert_eq!(e.quote, ip_packet(&f), "the whole packet fits");
    }
    // A big packet: the error stops at 1280 bytes.
    let f = frame(&Pkt {
        ttl: 1,
        len: 1400,
        ..v6pkt()
    });
    let (out, _) = run1(&mut app(), &f);
    let e = parse_error(&f, &out);
    assert_eq!(e.quote, ip_packet(&f)[..1232]);
    assert_eq!(out.len(), 14 + 1280);
}

#[test]
fn too_big() {
    // Port 1's MTU is 1400: 1400 bytes of IP pass, 1401 do not.
    let ok = frame(&Pkt {
        len: 1400 - 28,
        ..Pkt::default()
    });
    assert_eq!(run1(&mut app(), &ok).1, Verdict::TxOn(PortId(1)));
    let big = frame(&Pkt {
        len: 1401 - 28,
        ..Pkt::default()
    });
    let (out, v) = run1(&mut app(), &big);
    assert_eq!(v, Verdict::Tx);
    let e = parse_error(&big, &out);
    assert_eq!(
        (e.typ, e.code, e.rest),
        (3, 4, [0, 0, 0x05, 0x78]),
        "MTU 1400"
    );
    assert_eq!(e.quote, ip_packet(&big)[..28]);
    // Without DF the kernel fragments it.
    assert_unchanged(
        &Pkt {
            len: 1401 - 28,
            df: false,
            ..Pkt::default()
        },
        Verdict::Kernel,
    );
    // IPv6: packet too big with the MTU.
    let big6 = frame(&Pkt {
        len: 1401 - 48,
        ..v6pkt()
    });
    let (out, v) = run1(&mut app(), &big6);
    assert_eq!(v, Verdict::Tx);
    let e = parse_error(&big6, &out);
    assert_eq!((e.typ, e.code, e.rest), (2, 0, 1400u32.to_be_bytes()));
    assert_eq!(e.quote, ip_packet(&big6)[..1232]);
    let ok6 = frame(&Pkt {
        len: 1400 - 48,
        ..v6pkt()
    });
    assert_eq!(run1(&mut app(), &ok6).1, Verdict::TxOn(PortId(1)));
}

#[test]
fn unreachable_prohibited_and_blackhole() {
    for (dst, code) in [("8.8.8.8", 0), ("10.67.0.1", 1), ("10.68.0.1", 13)] {
        let f = frame(&Pkt {
            dst,
            ..Pkt::default()
        });
        let (out, v) = run1(&mut app(), &f);
        assert_eq!(v, Verdict::Tx, "{dst}");
        let e = parse_error(&f, &out);
        assert_eq!((e.typ, e.code, e.dst), (3, code, ip("10.0.0.1")), "{dst}");
    }
    for (dst, code) in [("2a00::1", 0), ("2001:db8:67::1", 0), ("2001:db8:68::1", 1)] {
        let f = frame(&Pkt { dst, ..v6pkt() });
        let (out, v) = run1(&mut app(), &f);
        assert_eq!(v, Verdict::Tx, "{dst}");
        let e = parse_error(&f, &out);
        assert_eq!(
            (e.typ, e.code, e.dst),
            (1, code, ip("2001:db8::1")),
            "{dst}"
        );
    }
    let bh = Verdict::Drop(DropReason::Blackhole);
    assert_unchanged(
        &Pkt {
            dst: "10.66.1.1",
            ..Pkt::default()
        },
        bh,
    );
    assert_unchanged(
        &Pkt {
            dst: "2001:db8:66::1",
            ..v6pkt()
        },
        bh,
    );
}

#[test]
fn link_local_source_leaving_its_link_is_beyond_scope() {
    // From fe80::99 on port 0 to a host behind port 1: unreachable code 2, from port 0's
    // link-local address (the sender's scope).
    let f = frame(&Pkt {
        src: "fe80::99",
        ..v6pkt()
    });
    let (out, v) = run1(&mut app(), &f);
    assert_eq!(v, Verdict::Tx);
    let e = parse_error(&f, &out);
    assert_eq!(
        (e.typ, e.code, e.src, e.dst),
        (1, 2, ip("fe80::2"), ip("fe80::99"))
    );
}

#[test]
fn icmp_errors_are_not_answered_with_errors() {
    let s = Verdict::Drop(DropReason::IcmpSuppressed);
    for t in [3, 4, 5, 11, 12] {
        assert_unchanged(
            &Pkt {
                ttl: 1,
                icmp: Some(t),
                ..Pkt::default()
            },
            s,
        );
    }
    for t in [1, 2, 3, 4, 127] {
        assert_unchanged(
            &Pkt {
                ttl: 1,
                icmp: Some(t),
                ..v6pkt()
            },
            s,
        );
    }
    // Echo requests are answered.
    let f = frame(&Pkt {
        ttl: 1,
        icmp: Some(8),
        ..Pkt::default()
    });
    assert_eq!(run1(&mut app(), &f).1, Verdict::Tx);
    let f = frame(&Pkt {
        ttl: 1,
        icmp: Some(128),
        ..v6pkt()
    });
    assert_eq!(run1(&mut app(), &f).1, Verdict::Tx);
    // A non-first IPv4 fragment.
    let mut f = frame(&Pkt {
        ttl: 1,
        ..Pkt::default()
    });
    {
        let mut ip4 = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip4.set_frag_offset(64);
        ip4.fill_checksum();
    }
    let (out, v) = run1(&mut app(), &f);
    assert_eq!((v, out), (s, f));
    // A non-first IPv6 fragment (fragment header, offset 64), and an ICMPv6 error behind a
    // first fragment's header.
    for (word, inner) in [(64u16 << 3 | 1, 17u8), (1, 58)] {
        let mut f = frame(&Pkt {
            ttl: 1,
            icmp: Some(1),
            ..v6pkt()
        });
        let mut ext = vec![inner, 0];
        ext.extend_from_slice(&word.to_be_bytes());
        ext.extend_from_slice(&[0, 0, 0, 1]);
        f.splice(54..54, ext);
        {
            let mut ip6 = Ipv6Packet::new_unchecked(&mut f[14..]);
            ip6.set_next_header(IpProtocol::IPV6_FRAG);
            let pl = ip6.payload_len();
            ip6.set_payload_len(pl + 8);
        }
        let (out, v) = run1(&mut app(), &f);
        assert_eq!((v, out), (s, f));
    }
    // Too short to tell what it is.
    let mut f = frame(&Pkt {
        ttl: 1,
        icmp: Some(8),
        len: 0,
        ..Pkt::default()
    });
    f.truncate(f.len() - 4);
    {
        let mut ip4 = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip4.set_total_len(24);
        ip4.fill_checksum();
    }
    let (out, v) = run1(&mut app(), &f);
    assert_eq!((v, out), (s, f));
}

#[test]
fn token_bucket_limits_errors() {
    let mut app = app_with(
        fib(true),
        IcmpLimit {
            per_sec: 10,
            burst: 3,
        },
    );
    let ttl1 = frame(&Pkt {
        ttl: 1,
        ..Pkt::default()
    });
    let t0 = Instant::now();
    let (out, v) = run_on(&mut app, PortId(0), &vec![ttl1.clone(); 4], t0);
    let limited = Verdict::Drop(DropReason::IcmpRateLimited);
    assert_eq!(v, [Verdict::Tx, Verdict::Tx, Verdict::Tx, limited]);
    assert_eq!(out[3], ttl1, "the refused frame is unchanged");
    // Forwarding does not take tokens.
    let (_, v) = run_on(&mut app, PortId(0), &[frame(&Pkt::default())], t0);
    assert_eq!(v, [Verdict::TxOn(PortId(1))]);
    let (_, v) = run_on(
        &mut app,
        PortId(0),
        std::slice::from_ref(&ttl1),
        t0 + Duration::from_millis(50),
    );
    assert_eq!(v, [limited], "half a token");
    let (_, v) = run_on(
        &mut app,
        PortId(0),
        &vec![ttl1.clone(); 2],
        t0 + Duration::from_millis(100),
    );
    assert_eq!(v, [Verdict::Tx, limited], "one token after 100 ms at 10/s");
    let (_, v) = run_on(
        &mut app,
        PortId(0),
        &vec![ttl1; 5],
        t0 + Duration::from_secs(10),
    );
    assert_eq!(
        v.iter().filter(|&&v| v == Verdict::Tx).count(),
        3,
        "refilled to the burst"
    );
}

#[test]
fn no_address_or_no_room_fails_unchanged() {
    let mut bare = app_with(fib(false), IcmpLimit::default());
    for p in [
        Pkt {
            ttl: 1,
            ..Pkt::default()
        },
        Pkt { ttl: 1, ..v6pkt() },
    ] {
        let f = frame(&p);
        let (out, v) = run1(&mut bare, &f);
        assert_eq!((v, out), (Verdict::Drop(DropReason::IcmpFailed), f));
    }
    // A batch over fixed-size frames cannot grow them.
    let orig = frame(&Pkt {
        ttl: 1,
        ..Pkt::default()
    });
    let mut f = orig.clone();
    let mut frames: [&mut [u8]; 1] = [&mut f];
    let mut verdicts = [Verdict::Tx];
    let mut batch = Batch::new(&mut frames, &mut verdicts);
    app().process(&mut batch);
    assert_eq!(batch.verdict(0), Verdict::Drop(DropReason::IcmpFailed));
    assert_eq!(f, orig);
}

// ---- refusals ----

#[test]
fn martians_are_dropped_unchanged() {
    let ms = Verdict::Drop(DropReason::MartianSource);
    for src in [
        "224.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "10.0.0.255", // the directed broadcast of port 0's subnet (a local broadcast route)
    ] {
        assert_unchanged(
            &Pkt {
                src,
                ..Pkt::default()
            },
            ms,
        );
    }
    // To a directed broadcast: the kernel's (never forwarded by sluice).
    assert_unchanged(
        &Pkt {
            dst: "10.0.0.255",
            ..Pkt::default()
        },
        Verdict::Kernel,
    );
    for src in ["ff02::1", "::", "::1", "::ffff:10.0.0.1"] {
        assert_unchanged(&Pkt { src, ..v6pkt() }, ms);
    }
    let md = Verdict::Drop(DropReason::MartianDestination);
    for dst in ["0.0.0.0", "0.9.9.9", "127.0.0.1"] {
        assert_unchanged(
            &Pkt {
                dst,
                ..Pkt::default()
            },
            md,
        );
    }
    for dst in ["::", "::1"] {
        assert_unchanged(&Pkt { dst, ..v6pkt() }, md);
    }
    // A group source MAC.
    let mut f = frame(&Pkt::default());
    f[6] |= 1;
    let (out, v) = run1(&mut app(), &f);
    assert_eq!((v, out), (ms, f));
}

#[test]
fn malformed_frames_are_dropped_unchanged() {
    let good = frame(&Pkt::default());
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (good[..13].to_vec(), DropReason::Truncated),
        (good[..33].to_vec(), DropReason::Truncated),
        (good[..40].to_vec(), DropReason::IpLength),
        (
            {
                let mut f = good.clone();
                f[14] = 0x65;
                f
            },
            DropReason::BadIpHeader,
        ),
        (
            {
                let mut f = good.clone();
                f[14] = 0x44;
                f
            },
            DropReason::BadIpHeader,
        ),
        (
            {
                let mut f = good.clone();
                f[24] ^= 1;
                f
            },
            DropReason::BadIpChecksum,
        ),
        (frame(&v6pkt())[..50].to_vec(), DropReason::Truncated),
        (
            {
                let mut f = frame(&v6pkt());
                f[14] = 0x45;
                f
            },
            DropReason::BadIpHeader,
        ),
        (
            {
                let f = frame(&v6pkt());
                f[..f.len() - 1].to_vec()
            },
            DropReason::IpLength,
        ),
    ];
    for (f, reason) in cases {
        let (out, v) = run1(&mut app(), &f);
        assert_eq!((v, &out), (Verdict::Drop(reason), &f));
    }
}

// ---- through the worker ----

#[test]
fn through_the_worker_step_on_two_ports() {
    use crate::worker::mem::MemTransport;
    use crate::worker::stats::Local;
    use crate::worker::{Scratch, step};
    let fwd = frame(&Pkt::default());
    let ttl1 = frame(&Pkt {
        ttl: 1,
        ..Pkt::default()
    });
    let local = frame(&Pkt {
        dst: "10.0.0.254",
        ..Pkt::default()
    });
    let bh = frame(&Pkt {
        dst: "10.66.0.1",
        ..Pkt::default()
    });
    let templates: [&[u8]; 4] = [&fwd, &ttl1, &local, &bh];
    let mut t = MemTransport::new(&templates, 8, 2048).with_ports(2);
    let (mut s, mut c) = (Scratch::new(), Local::default());
    let mut app = app();
    assert_eq!(step(&mut t, PortId(0), &mut app, &mut s, 8, &mut c), 8);
    assert_eq!(
        (t.transmitted_on(0), t.transmitted_on(1)),
        (2, 2),
        "errors back, forwards on"
    );
    assert_eq!(t.outstanding(), 0);
    assert_eq!(c.drops[DropReason::Blackhole.index()], 2);
    assert_eq!(
        c.drops[DropReason::NoKernelPath.index()],
        2,
        "the kernel's share"
    );
    assert_forwarded(&fwd, t.frame(0), mac(0x12), mac(3));
    let e = parse_error(&ttl1, t.frame(1));
    assert_eq!((e.typ, e.src), (11, ip("10.0.0.254")));
    assert_eq!(t.frame(2), &local[..]);
}

// ---- properties ----

proptest! {
    #![proptest_config(crate::fuzz::config())]

    /// Any bytes: never panics; a frame not sent is unchanged.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (out, v) = run1(&mut app(), &bytes);
        if matches!(v, Verdict::Drop(_) | Verdict::Kernel) {
            prop_assert_eq!(out, bytes);
        }
    }

    /// Valid packets (IPv4/IPv6, UDP or ICMP, tagged or not) with a few bytes overwritten and
    /// maybe cut short: never a panic; a frame not sent is unchanged; whatever is sent has a
    /// unicast source MAC and a source address that may send.
    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::weighted(0.2, any::<proptest::sample::Index>()),
    ) {
        let p = match which {
            0 => Pkt::default(),
            1 => v6pkt(),
            2 => Pkt { tags: 2, ..Pkt::default() },
            _ => Pkt { ttl: 1, ..Pkt::default() },
        };
        let mut f = frame(&p);
        for (at, v) in flips {
            let i = at.index(f.len());
            f[i] = v;
        }
        if let Some(c) = cut {
            f.truncate(c.index(f.len() + 1));
        }
        let (out, v) = run1(&mut app(), &f);
        match v {
            Verdict::Drop(_) | Verdict::Kernel => prop_assert_eq!(out, f),
            Verdict::Tx | Verdict::TxOn(_) => {
                prop_assert_eq!(out[6] & 1, 0, "group source MAC");
                let encap = vlan::walk(&out).expect("what is sent has an Ethernet header");
                let l3 = &out[encap.l3_offset..];
                match encap.ether_type {
                    EtherType::IPV4 => prop_assert!(safety::unicast_source_v4(
                        Ipv4Packet::new_checked(l3).expect("an IPv4 header").src_addr(),
                        &Broadcasts::none()
                    )),
                    EtherType::IPV6 => prop_assert!(safety::unicast_source_v6(
                        Ipv6Packet::new_checked(l3).expect("an IPv6 header").src_addr()
                    )),
                    _ => prop_assert!(false, "sent a frame that is not IP"),
                }
            }
        }
    }

    /// Random bytes behind a plausible Ethernet/IP prefix with addresses the table knows.
    #[test]
    fn plausible_headers_never_panic(
        v6 in any::<bool>(),
        ttl in 0u8..4,
        proto in prop_oneof![Just(1u8), Just(6), Just(17), Just(58), Just(44), Just(0), any::<u8>()],
        dst in 0usize..6,
        rest in proptest::collection::vec(any::<u8>(), 0..100),
        cut in any::<proptest::sample::Index>(),
    ) {
        let dsts4 = ["198.51.100.1", "8.8.8.8", "10.0.0.254", "10.66.0.1", "203.0.113.1", "10.9.0.1"];
        let dsts6 = ["2001:db8:99::1", "2a00::1", "2001:db8:68::1", "2001:db8:66::1", "ff02::1", "fe80::1"];
        let mut p = if v6 { v6pkt() } else { Pkt::default() };
        p.dst = if v6 { dsts6[dst] } else { dsts4[dst] };
        p.ttl = ttl;
        let mut f = frame(&p);
        let l4 = if v6 { 54 } else { 34 };
        f.truncate(l4);
        f.extend_from_slice(&rest);
        if v6 {
            let mut ip6 = Ipv6Packet::new_unchecked(&mut f[14..]);
            ip6.set_payload_len(rest.len() as u16);
            ip6.set_next_header(IpProtocol(proto));
        } else {
            let mut ip4 = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip4.set_total_len(20 + rest.len() as u16);
            ip4.set_protocol(IpProtocol(proto));
            ip4.fill_checksum();
        }
        let f = f[..cut.index(f.len() + 1)].to_vec();
        let (out, v) = run1(&mut app(), &f);
        match v {
            Verdict::Drop(_) | Verdict::Kernel => prop_assert_eq!(out, f),
            Verdict::Tx => { parse_error(&f, &out); }
            Verdict::TxOn(_) => assert_forwarded(&f, &out, out[..6].try_into().unwrap(), mac(3)),
        }
    }
}
