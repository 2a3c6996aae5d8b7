//! What the XDP program steers and what it leaves alone, seen from the wire: hand-built frames
//! injected from the peer with an AF_PACKET socket. Steered TCP is reflected with a valid
//! checksum while a kernel TCP listener on another port keeps working; ICMP, ARP, ICMPv6 and
//! unsteered UDP reach the kernel and are counted as passed, never as engine traffic; malformed
//! frames are counted by exact reason (XDP `malformed` for what the program can't parse, the
//! reflect app's drop reasons for what it redirects), VLAN-tagged frames come back with their tags,
//! and valid traffic keeps echoing throughout.

mod common;

use common::*;
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv4Type, Icmpv6Type, LinkSlice, NetSlice,
    PacketBuilder, SlicedPacket, TransportSlice, VlanId,
};
use serde_json::Value;
use sluice_testbed::{PacketSocket, TestBed, require_root};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const UDP_PORT: u16 = 9000;
const TCP_PORT: u16 = 9100;
/// How many times each kind of frame is sent.
const REPEAT: usize = 3;
/// Longest single wait for one expected frame or datagram.
const WAIT: Duration = Duration::from_secs(2);

/// The addresses of both ends, as raw bytes for the frame builders.
struct Addrs {
    peer_mac: [u8; 6],
    engine_mac: [u8; 6],
    peer4: [u8; 4],
    engine4: [u8; 4],
    peer6: [u8; 16],
    engine6: [u8; 16],
}

impl Addrs {
    fn of(bed: &TestBed) -> Addrs {
        Addrs {
            peer_mac: bed.peer().mac().0,
            engine_mac: bed.engine().mac().0,
            peer4: bed.peer().ipv4().octets(),
            engine4: bed.engine().ipv4().octets(),
            peer6: bed.peer().ipv6().octets(),
            engine6: bed.engine().ipv6().octets(),
        }
    }
}

/// A packet socket on the peer's end of the veth.
fn peer_socket(bed: &TestBed) -> PacketSocket {
    PacketSocket::open(bed.peer().ns(), bed.peer().iface()).expect("AF_PACKET socket on the peer")
}

fn send(sock: &PacketSocket, frame: &[u8]) {
    sock.send(frame)
        .unwrap_or_else(|e| panic!("sending {} bytes from the peer: {e}", frame.len()));
}

/// A counter of the final JSON as a number (panics with the JSON if absent).
fn count(fin: &Value, path: &[&str]) -> u64 {
    let mut v = fin;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{} missing in {fin}", path.join(".")))
}

// ---- TCP -----------------------------------------------------------------------------------

/// A TCP SYN (no options, `payload` as data) over IPv4 or IPv6, from the peer to the engine or,
/// with `from_engine`, the other way round.
fn tcp_syn(
    a: &Addrs,
    v6: bool,
    from_engine: bool,
    sport: u16,
    dport: u16,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let (smac, dmac) = if from_engine {
        (a.engine_mac, a.peer_mac)
    } else {
        (a.peer_mac, a.engine_mac)
    };
    let eth = PacketBuilder::ethernet2(smac, dmac);
    let mut out = Vec::new();
    if v6 {
        let (s, d) = if from_engine {
            (a.engine6, a.peer6)
        } else {
            (a.peer6, a.engine6)
        };
        eth.ipv6(s, d, 64)
            .tcp(sport, dport, seq, 8192)
            .syn()
            .write(&mut out, payload)
            .unwrap();
    } else {
        let (s, d) = if from_engine {
            (a.engine4, a.peer4)
        } else {
            (a.peer4, a.engine4)
        };
        eth.ipv4(s, d, 64)
            .tcp(sport, dport, seq, 8192)
            .syn()
            .write(&mut out, payload)
            .unwrap();
    }
    out
}

/// Check with etherparse that `frame` is the reflection of a SYN the peer sent from `sport` to
/// the engine's [`TCP_PORT`]: engine MAC and IP as source, ports swapped, only SYN set, `seq`
/// kept, and a TCP checksum that a full recomputation confirms.
fn assert_reflected_syn(a: &Addrs, frame: &[u8], v6: bool, sport: u16, seq: u32) {
    let p = SlicedPacket::from_ethernet(frame)
        .unwrap_or_else(|e| panic!("reflected frame does not parse ({e}): {frame:02x?}"));
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("not Ethernet II: {frame:02x?}");
    };
    assert_eq!(eth.source(), a.engine_mac, "source MAC");
    assert_eq!(eth.destination(), a.peer_mac, "destination MAC");
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("not TCP: {frame:02x?}");
    };
    assert_eq!(
        (tcp.source_port(), tcp.destination_port()),
        (TCP_PORT, sport)
    );
    assert!(tcp.syn() && !tcp.ack() && !tcp.rst() && !tcp.fin(), "flags");
    assert_eq!(tcp.sequence_number(), seq);
    let want = match (&p.net, v6) {
        (Some(NetSlice::Ipv4(ip)), false) => {
            let h = ip.header();
            assert_eq!((h.source(), h.destination()), (a.engine4, a.peer4));
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap()
        }
        (Some(NetSlice::Ipv6(ip)), true) => {
            let h = ip.header();
            assert_eq!((h.source(), h.destination()), (a.engine6, a.peer6));
            tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap()
        }
        _ => panic!("wrong IP version: {frame:02x?}"),
    };
    assert_eq!(tcp.checksum(), want, "TCP checksum of the reflected SYN");
}

/// Is `frame` an incoming SYN (flags exactly SYN) from the engine's [`TCP_PORT`] to `sport`?
/// Excludes the RST|ACK the engine's kernel answers with before steering is in place, and the
/// RST|ACK the peer's kernel sends for the reflected SYN (which comes back reflected too).
fn is_syn_from_steered_port(frame: &[u8], sport: u16) -> bool {
    matches!(
        SlicedPacket::from_ethernet(frame),
        Ok(SlicedPacket { transport: Some(TransportSlice::Tcp(t)), .. })
            if t.source_port() == TCP_PORT && t.destination_port() == sport
                && t.syn() && !t.ack() && !t.rst()
    )
}

/// Accept one connection on `listener`, read `ask`, answer `answer`.
fn serve_one(listener: TcpListener, ask: &'static [u8], answer: &'static [u8]) {
    let (mut conn, _) = listener
        .accept()
        .expect("accept on the engine's kernel listener");
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0u8; ask.len()];
    conn.read_exact(&mut buf).expect("reading from the peer");
    assert_eq!(buf, ask);
    conn.write_all(answer).expect("answering the peer");
}

/// A kernel TCP listener in the engine namespace on a port sluice does not steer accepts a
/// connection from the peer namespace and both sides exchange bytes.
fn kernel_tcp_roundtrip(bed: &TestBed, server: SocketAddr, client_ip: std::net::IpAddr) {
    let listener = bed
        .engine()
        .ns()
        .run(move || TcpListener::bind(server))
        .unwrap()
        .unwrap_or_else(|e| panic!("binding {server} in the engine namespace: {e}"));
    // accept() would block forever if the SYN never arrived: the client's connect timeout below
    // fails first, and the listener thread is then left to die with the namespace.
    let srv = std::thread::spawn(move || serve_one(listener, b"hello engine", b"hello peer"));
    let mut stream = bed
        .peer()
        .ns()
        .run(move || {
            let s = TcpStream::connect_timeout(&server, WAIT);
            if let Ok(s) = &s {
                assert_eq!(s.local_addr().unwrap().ip(), client_ip);
            }
            s
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("connecting to {server} from the peer: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"hello engine").unwrap();
    let mut buf = [0u8; 10];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading the answer from {server}: {e}"));
    assert_eq!(&buf, b"hello peer");
    srv.join().expect("listener thread");
}

#[test]
fn tcp_steered_port_reflected_and_kernel_tcp_listener_still_accepts() {
    if !require_root("tcp_steered_port_reflected_and_kernel_tcp_listener_still_accepts") {
        return;
    }
    let bed = bed(1);
    let a = Addrs::of(&bed);
    let sock = peer_socket(&bed);
    let mut engine = Engine::start(&bed, &["--tcp", &TCP_PORT.to_string()]);

    // Ready when a probe SYN comes back reflected (before that the engine's kernel answers
    // RST|ACK, which the filter ignores).
    let mut probe_port = 30_000;
    wait_until(
        &mut engine,
        Duration::from_secs(20),
        "a reflected probe SYN",
        || {
            probe_port += 1;
            send(
                &sock,
                &tcp_syn(&a, false, false, probe_port, TCP_PORT, 1, b""),
            );
            let got = sock
                .collect_incoming(Duration::from_millis(300), 1, |f| {
                    is_syn_from_steered_port(f, probe_port)
                })
                .unwrap();
            !got.is_empty()
        },
    );

    // (a) SYNs over IPv4 and IPv6, some with data (legal in a SYN), each reflected exactly.
    for v6 in [false, true] {
        for i in 0..REPEAT {
            let sport = 40_000 + u16::from(v6) * 100 + i as u16;
            let seq = 0x1000_0000 * (i as u32 + 1) + 7;
            let payload = &b"syn payload"[..i * 5];
            send(
                &sock,
                &tcp_syn(&a, v6, false, sport, TCP_PORT, seq, payload),
            );
            let got = sock
                .collect_incoming(WAIT, 1, |f| is_syn_from_steered_port(f, sport))
                .unwrap();
            assert_eq!(
                got.len(),
                1,
                "no reflected SYN (v6={v6}) for source port {sport}"
            );
            assert_reflected_syn(&a, &got[0], v6, sport, seq);
            // Byte for byte: what the peer would have built had the engine sent it.
            assert_eq!(
                got[0],
                tcp_syn(&a, v6, true, TCP_PORT, sport, seq, payload),
                "reflected SYN differs from the expected frame"
            );
        }
    }

    // (b) Kernel TCP on an unsteered port, IPv4 and IPv6, while the engine runs.
    kernel_tcp_roundtrip(
        &bed,
        SocketAddr::new(bed.engine().ipv4().into(), 8080),
        bed.peer().ipv4().into(),
    );
    kernel_tcp_roundtrip(
        &bed,
        SocketAddr::new(bed.engine().ipv6().into(), 8080),
        bed.peer().ipv6().into(),
    );
    assert!(engine.is_running());

    let fin = engine.stop();
    assert_census(&fin);
    // Everything steered was valid TCP: reflected — except the RSTs the peer's kernel sends
    // back for the reflected SYNs (it has no such connection), which reflect never answers.
    let resets = count(&fin, &["total", "drops", "tcp_reset"]);
    assert_eq!(count(&fin, &["total", "dropped"]), resets, "{fin}");
    assert_eq!(
        count(&fin, &["total", "rx_packets"]),
        count(&fin, &["total", "tx_packets"]) + resets,
        "{fin}"
    );
    assert!(
        count(&fin, &["total", "rx_packets"]) >= 2 * REPEAT as u64,
        "{fin}"
    );
    assert!(
        count(&fin, &["xdp", "redirected"]) >= 2 * REPEAT as u64,
        "{fin}"
    );
    // Each kernel connection: at least SYN, handshake ACK and one data segment from the peer.
    assert!(count(&fin, &["xdp", "passed"]) >= 2 * 3, "{fin}");
    assert_eq!(count(&fin, &["xdp", "malformed"]), 0, "{fin}");
}

// ---- traffic that is not steered -----------------------------------------------------------

/// Send `req` from the peer and return the one incoming frame `is_reply` accepts within [`WAIT`]
/// (`what` names it in the panic), after checking it is Ethernet II from the engine to the peer.
fn kernel_reply(
    sock: &PacketSocket,
    a: &Addrs,
    req: &[u8],
    what: &str,
    is_reply: impl FnMut(&[u8]) -> bool,
) -> Vec<u8> {
    send(sock, req);
    let mut got = sock.collect_incoming(WAIT, 1, is_reply).unwrap();
    assert_eq!(got.len(), 1, "no {what}");
    let frame = got.remove(0);
    {
        let p = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("{what}: not Ethernet II");
        };
        assert_eq!(
            (eth.source(), eth.destination()),
            (a.engine_mac, a.peer_mac),
            "{what}: MAC addresses"
        );
    }
    frame
}

/// ICMP echo request, ARP request, ICMPv6 echo request and unsteered UDP (IPv4 and IPv6) all
/// reach the engine's kernel and get its answers while sluice runs; XDP counts them as passed
/// (ARP as not IP) and the engine never sees one.
#[test]
fn unsteered_traffic_reaches_the_kernel_while_the_engine_runs() {
    if !require_root("unsteered_traffic_reaches_the_kernel_while_the_engine_runs") {
        return;
    }
    let bed = bed(1);
    let a = Addrs::of(&bed);
    let sock = peer_socket(&bed);
    let mut engine = Engine::start(&bed, &["--udp", &UDP_PORT.to_string()]);
    // No steered probe here, so that the engine's own counters must stay at exactly zero: wait
    // for the program instead (its counters start with the attach; the frames below are not
    // steered, so whether the AF_XDP sockets are registered yet doesn't matter).
    wait_until(&mut engine, Duration::from_secs(20), "XDP attached", || {
        xdp_attached(&bed)
    });

    // ICMP echo.
    for seq in 1..=REPEAT as u16 {
        let mut req = Vec::new();
        PacketBuilder::ethernet2(a.peer_mac, a.engine_mac)
            .ipv4(a.peer4, a.engine4, 64)
            .icmpv4_echo_request(0x5151, seq)
            .write(&mut req, b"sluice icmp")
            .unwrap();
        let reply = kernel_reply(
            &sock,
            &a,
            &req,
            &format!("ICMP echo reply for seq {seq}"),
            |f| {
                matches!(SlicedPacket::from_ethernet(f), Ok(SlicedPacket {
                transport: Some(TransportSlice::Icmpv4(i)), .. })
                if matches!(i.icmp_type(), Icmpv4Type::EchoReply(h) if h.id == 0x5151 && h.seq == seq))
            },
        );
        let p = SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4");
        };
        assert_eq!(
            (ip.header().source(), ip.header().destination()),
            (a.engine4, a.peer4)
        );
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            unreachable!()
        };
        assert_eq!(icmp.payload(), b"sluice icmp");
    }

    // ARP who-has engine IP.
    for _ in 0..REPEAT {
        let mut req = Vec::new();
        PacketBuilder::ethernet2(a.peer_mac, [0xff; 6])
            .arp(
                ArpPacket::new(
                    ArpHardwareId::ETHERNET,
                    EtherType::IPV4,
                    ArpOperation::REQUEST,
                    &a.peer_mac,
                    &a.peer4,
                    &[0; 6],
                    &a.engine4,
                )
                .unwrap(),
            )
            .write(&mut req)
            .unwrap();
        let what = format!("ARP reply for {:?}", bed.engine().ipv4());
        let frame = kernel_reply(&sock, &a, &req, &what, |f| {
            matches!(SlicedPacket::from_ethernet(f), Ok(SlicedPacket {
                net: Some(NetSlice::Arp(arp)), .. })
                if arp.to_packet().operation == ArpOperation::REPLY)
        });
        let p = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(NetSlice::Arp(arp)) = &p.net else {
            unreachable!()
        };
        let reply = arp.to_packet().try_eth_ipv4().expect("Ethernet/IPv4 ARP");
        assert_eq!(
            (reply.sender_mac, reply.sender_ipv4),
            (a.engine_mac, a.engine4)
        );
        assert_eq!((reply.target_mac, reply.target_ipv4), (a.peer_mac, a.peer4));
    }

    // ICMPv6 echo.
    for seq in 1..=REPEAT as u16 {
        let mut req = Vec::new();
        PacketBuilder::ethernet2(a.peer_mac, a.engine_mac)
            .ipv6(a.peer6, a.engine6, 64)
            .icmpv6_echo_request(0x6262, seq)
            .write(&mut req, b"sluice icmpv6")
            .unwrap();
        let what = format!("ICMPv6 echo reply for seq {seq}");
        let reply = kernel_reply(&sock, &a, &req, &what, |f| {
            matches!(SlicedPacket::from_ethernet(f), Ok(SlicedPacket {
                transport: Some(TransportSlice::Icmpv6(i)), .. })
                if matches!(i.icmp_type(), Icmpv6Type::EchoReply(h) if h.id == 0x6262 && h.seq == seq))
        });
        let p = SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6");
        };
        assert_eq!(
            (ip.header().source(), ip.header().destination()),
            (a.engine6, a.peer6)
        );
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            unreachable!()
        };
        assert!(icmp.is_checksum_valid(a.engine6, a.peer6));
    }

    // UDP to a port sluice does not steer, IPv4 and IPv6: a kernel socket gets every datagram.
    for (server_ip, client_ip) in [
        (bed.engine().ipv4().into(), bed.peer().ipv4().into()),
        (bed.engine().ipv6().into(), bed.peer().ipv6().into()),
    ] {
        let server_addr = SocketAddr::new(server_ip, 9999);
        let server = bed
            .engine()
            .ns()
            .run(move || UdpSocket::bind(server_addr))
            .unwrap()
            .expect("binding the kernel UDP socket in the engine namespace");
        server.set_read_timeout(Some(WAIT)).unwrap();
        let client = bed
            .peer()
            .ns()
            .run(move || UdpSocket::bind(SocketAddr::new(client_ip, 0)))
            .unwrap()
            .unwrap();
        for i in 0..REPEAT {
            let msg = format!("to the kernel {i}");
            client.send_to(msg.as_bytes(), server_addr).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = server
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} to {server_addr} never arrived: {e}"));
            assert_eq!(&buf[..n], msg.as_bytes());
            assert_eq!(from, client.local_addr().unwrap());
        }
    }
    assert!(engine.is_running());

    let fin = engine.stop();
    assert_census(&fin);
    let r = REPEAT as u64;
    // ICMP + ICMPv6 + UDP over both families; ARP is not IP.
    assert!(count(&fin, &["xdp", "passed"]) >= 4 * r, "{fin}");
    assert!(count(&fin, &["xdp", "not_ip"]) >= r, "{fin}");
    assert_eq!(count(&fin, &["xdp", "redirected"]), 0, "{fin}");
    assert_eq!(count(&fin, &["xdp", "malformed"]), 0, "{fin}");
    assert_eq!(count(&fin, &["total", "rx_packets"]), 0, "{fin}");
    assert_eq!(count(&fin, &["total", "tx_packets"]), 0, "{fin}");
    assert_eq!(count(&fin, &["total", "dropped"]), 0, "{fin}");
}

// ---- malformed and tagged frames -----------------------------------------------------------

/// A valid UDP frame from the peer (`sport`) to the engine's [`UDP_PORT`] carrying `payload`.
fn udp_frame(a: &Addrs, v6: bool, sport: u16, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(a.peer_mac, a.engine_mac);
    let mut out = Vec::new();
    if v6 {
        eth.ipv6(a.peer6, a.engine6, 64)
            .udp(sport, UDP_PORT)
            .write(&mut out, payload)
            .unwrap();
    } else {
        eth.ipv4(a.peer4, a.engine4, 64)
            .udp(sport, UDP_PORT)
            .write(&mut out, payload)
            .unwrap();
    }
    out
}

/// Byte offsets in an untagged Ethernet frame.
const IP: usize = 14;
const V4_TOTAL_LEN: usize = IP + 2;
const V4_UDP: usize = IP + 20;
const V6_PAYLOAD_LEN: usize = IP + 4;
const V6_UDP: usize = IP + 40;
/// Offset of the length field in a UDP header.
const UDP_LEN: usize = 4;

fn get_u16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn set_u16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Recompute the checksum of the 20-byte IPv4 header at [`IP`], so that a patched length field
/// is the frame's only defect.
fn fix_ipv4_checksum(f: &mut [u8]) {
    set_u16(f, IP + 10, 0);
    let mut sum: u32 = (0..20)
        .step_by(2)
        .map(|i| u32::from(get_u16(f, IP + i)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    set_u16(f, IP + 10, !(sum as u16));
}

/// A valid UDP frame behind VLAN `tags` (outermost first: TPID, VLAN id), from the peer's `sport`
/// to the engine's [`UDP_PORT`] or, with `from_engine`, its reflection.
fn tagged(a: &Addrs, v6: bool, tags: &[(u16, u16)], from_engine: bool, sport: u16) -> Vec<u8> {
    let vid = |v| VlanId::try_new(v).unwrap();
    let (smac, dmac) = if from_engine {
        (a.engine_mac, a.peer_mac)
    } else {
        (a.peer_mac, a.engine_mac)
    };
    let (sp, dp) = if from_engine {
        (UDP_PORT, sport)
    } else {
        (sport, UDP_PORT)
    };
    let eth = PacketBuilder::ethernet2(smac, dmac);
    let payload = format!("tagged {tags:?} from {sport}");
    let mut out = Vec::new();
    macro_rules! ip {
        ($link:expr) => {{
            if v6 {
                let (s, d) = if from_engine {
                    (a.engine6, a.peer6)
                } else {
                    (a.peer6, a.engine6)
                };
                $link
                    .ipv6(s, d, 64)
                    .udp(sp, dp)
                    .write(&mut out, payload.as_bytes())
                    .unwrap();
            } else {
                let (s, d) = if from_engine {
                    (a.engine4, a.peer4)
                } else {
                    (a.peer4, a.engine4)
                };
                $link
                    .ipv4(s, d, 64)
                    .udp(sp, dp)
                    .write(&mut out, payload.as_bytes())
                    .unwrap();
            }
        }};
    }
    match tags {
        [(_, v)] => ip!(eth.single_vlan(vid(*v))),
        [(_, o), (_, i)] => ip!(eth.double_vlan(vid(*o), vid(*i))),
        _ => unreachable!(),
    }
    // The builder writes 0x8100 for every tag; set the TPIDs asked for (802.1ad outside).
    for (k, (tpid, _)) in tags.iter().enumerate() {
        set_u16(&mut out, 12 + 4 * k, *tpid);
    }
    out
}

/// Malformed frames, valid ones among them, VLAN-tagged ones: every drop lands in its exact
/// counter, tagged frames come back tagged, and the engine keeps echoing valid traffic.
#[test]
fn malformed_frames_counted_by_reason_and_valid_traffic_still_echoes() {
    if !require_root("malformed_frames_counted_by_reason_and_valid_traffic_still_echoes") {
        return;
    }
    let bed = bed(1);
    let a = Addrs::of(&bed);
    let sock = peer_socket(&bed);
    let capture = peer_socket(&bed);
    let mut engine = start_ready(
        &bed,
        &["--udp", &UDP_PORT.to_string(), "--queues", "1"],
        UDP_PORT,
    );

    let v4 = udp_frame(&a, false, 41_000, b"0123456789abcdef");
    let v6 = udp_frame(&a, true, 41_001, b"0123456789abcdef");

    // Frames the XDP program cannot parse up to the ports: passed to the kernel as `malformed`
    // (which drops them), never redirected. Each is at least the 14 bytes AF_PACKET requires.
    let mut ihl4 = v4.clone();
    ihl4[IP] = 0x44;
    fix_ipv4_checksum(&mut ihl4);
    let xdp_malformed: Vec<(&str, Vec<u8>)> = vec![
        ("IPv4 ethertype, Ethernet header only", v4[..IP].to_vec()),
        ("IPv4 header cut after 10 bytes", v4[..IP + 10].to_vec()),
        ("IPv4 complete, UDP header cut", v4[..V4_UDP + 4].to_vec()),
        ("IPv6 ethertype, Ethernet header only", v6[..IP].to_vec()),
        ("IPv6 header cut after 20 bytes", v6[..IP + 20].to_vec()),
        ("IPv6 complete, UDP header cut", v6[..V6_UDP + 4].to_vec()),
        ("IPv4 IHL 4", ihl4),
    ];

    // Frames the program redirects (ports readable, port 9000) and the reflect app drops.
    let patched_v4 = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut x = v4.clone();
        f(&mut x);
        fix_ipv4_checksum(&mut x);
        x
    };
    let patched_v6 = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut x = v6.clone();
        f(&mut x);
        x
    };
    let v4_total_len = get_u16(&v4, V4_TOTAL_LEN);
    let v4_udp_len = get_u16(&v4, V4_UDP + UDP_LEN);
    let v6_payload_len = get_u16(&v6, V6_PAYLOAD_LEN);
    let ip_length: Vec<(&str, Vec<u8>)> = vec![
        (
            "IPv4 total length 4 past the frame",
            patched_v4(&|x| set_u16(x, V4_TOTAL_LEN, v4_total_len + 4)),
        ),
        (
            "IPv6 payload length 4 past the frame",
            patched_v6(&|x| set_u16(x, V6_PAYLOAD_LEN, v6_payload_len + 4)),
        ),
    ];
    let l4_length: Vec<(&str, Vec<u8>)> = vec![
        (
            "UDP length 2 more than the IPv4 payload",
            patched_v4(&|x| set_u16(x, V4_UDP + UDP_LEN, v4_udp_len + 2)),
        ),
        (
            "UDP length 2 less than the IPv4 payload",
            patched_v4(&|x| set_u16(x, V4_UDP + UDP_LEN, v4_udp_len - 2)),
        ),
        (
            // The UDP header still fits (payload length >= 8): not truncated, a length mismatch.
            "IPv6 payload length 4 less than the UDP datagram",
            patched_v6(&|x| set_u16(x, V6_PAYLOAD_LEN, v6_payload_len - 4)),
        ),
    ];

    for (what, f) in xdp_malformed.iter().chain(&ip_length).chain(&l4_length) {
        for _ in 0..REPEAT {
            sock.send(f)
                .unwrap_or_else(|e| panic!("sending {what} ({} bytes): {e}", f.len()));
        }
    }

    // VLAN-tagged valid UDP: 802.1Q single tag and 802.1ad + 802.1Q (QinQ), over both families.
    let tag_sets: [&[(u16, u16)]; 2] = [&[(0x8100, 100)], &[(0x88a8, 200), (0x8100, 300)]];
    let mut expected = Vec::new();
    for tags in tag_sets {
        for v6 in [false, true] {
            for _ in 0..REPEAT {
                let sport = 42_000 + expected.len() as u16;
                send(&sock, &tagged(&a, v6, tags, false, sport));
                expected.push(tagged(&a, v6, tags, true, sport));
            }
        }
    }
    let mut got = Vec::new();
    let end = Instant::now() + WAIT;
    while got.len() < expected.len() && Instant::now() < end {
        if let Some(f) = capture
            .recv(end.saturating_duration_since(Instant::now()))
            .expect("capture")
            && !f.outgoing
            && expected.contains(&f.data)
        {
            got.push(f.data);
        }
    }
    for e in &expected {
        assert!(
            got.contains(e),
            "tagged frame not reflected with its tags intact: expected {e:02x?}; got {got:02x?}"
        );
    }

    // Valid traffic still echoes, every datagram.
    let s = echo(&bed, echo_cfg(&bed, false, UDP_PORT));
    assert_eq!(
        (s.sent, s.echoed, s.mismatched, s.lost),
        (1000, 1000, 0, 0),
        "{s:?}"
    );
    assert!(engine.is_running());

    let fin = engine.stop();
    assert_census(&fin);
    let r = REPEAT as u64;
    let drops = |reason: &str| count(&fin, &["total", "drops", reason]);
    // Nothing else on this veth is malformed, so the XDP count is exact.
    assert_eq!(
        count(&fin, &["xdp", "malformed"]),
        xdp_malformed.len() as u64 * r,
        "{fin}"
    );
    assert_eq!(drops("ip_length"), ip_length.len() as u64 * r, "{fin}");
    assert_eq!(drops("l4_length"), l4_length.len() as u64 * r, "{fin}");
    for reason in [
        "policy",
        "truncated",
        "not_ip",
        "bad_ip_header",
        "fragment",
        "unsupported_protocol",
    ] {
        assert_eq!(drops(reason), 0, "drops.{reason}: {fin}");
    }
    let app_drops = (ip_length.len() + l4_length.len()) as u64 * r;
    assert_eq!(count(&fin, &["total", "dropped"]), app_drops, "{fin}");
    let (rx, tx) = (
        count(&fin, &["total", "rx_packets"]),
        count(&fin, &["total", "tx_packets"]),
    );
    assert_eq!(rx, tx + app_drops, "{fin}");
    // Echo datagrams, tagged frames and the app-dropped frames all went through the socket.
    assert!(tx >= 1000 + expected.len() as u64, "{fin}");
    assert!(count(&fin, &["xdp", "redirected"]) >= rx, "{fin}");
}
