//! Responder safety and checksum failures end to end, through `sluice run --app reflect` on a
//! veth pair:
//!
//! - hostile frames injected with a packet socket (group MACs, martian and broadcast addresses,
//!   the subnet's directed broadcast, port 0, TCP RST, bad and partial checksums) get no answer,
//!   and the final JSON counts each under its drop reason;
//! - a kernel UDP client behind a veth with TX checksum offload on (what plain `ip link add`
//!   gives) sends partial checksums: they are counted per queue and per port, and sluice logs
//!   once, naming the interface and the `ethtool -K PEER tx off` fix.

mod common;

use common::*;
use etherparse::PacketBuilder;
use serde_json::Value;
use sluice_testbed::{PacketSocket, TestBed, VethOpts, require_root};
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Duration;

const PORT: u16 = 9000;

/// Where a hostile frame's fields come from.
struct Frames {
    peer_mac: [u8; 6],
    engine_mac: [u8; 6],
    peer4: Ipv4Addr,
    engine4: Ipv4Addr,
    peer6: Ipv6Addr,
    engine6: Ipv6Addr,
}

/// L4 of a test frame.
#[derive(Clone, Copy)]
enum L4 {
    Udp,
    TcpAck,
    TcpRst,
}

impl Frames {
    fn v4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, l4: L4) -> Vec<u8> {
        let ip = PacketBuilder::ethernet2(self.peer_mac, self.engine_mac).ipv4(
            src.octets(),
            dst.octets(),
            64,
        );
        let mut out = Vec::new();
        match l4 {
            L4::Udp => ip.udp(sport, PORT).write(&mut out, b"hostile"),
            L4::TcpAck => ip.tcp(sport, PORT, 1, 1000).ack(5).write(&mut out, b"x"),
            L4::TcpRst => ip.tcp(sport, PORT, 1, 1000).rst().write(&mut out, b""),
        }
        .unwrap();
        out
    }

    fn v6(&self, src: Ipv6Addr, dst: Ipv6Addr, sport: u16, l4: L4) -> Vec<u8> {
        let ip = PacketBuilder::ethernet2(self.peer_mac, self.engine_mac).ipv6(
            src.octets(),
            dst.octets(),
            64,
        );
        let mut out = Vec::new();
        match l4 {
            L4::Udp => ip.udp(sport, PORT).write(&mut out, b"hostile"),
            L4::TcpAck => ip.tcp(sport, PORT, 1, 1000).ack(5).write(&mut out, b"x"),
            L4::TcpRst => ip.tcp(sport, PORT, 1, 1000).rst().write(&mut out, b""),
        }
        .unwrap();
        out
    }

    /// The frame's UDP checksum replaced by its pseudo-header sum (IPv4, no options).
    fn partial_v4(&self, f: &[u8]) -> Vec<u8> {
        let mut f = f.to_vec();
        let len = f.len() - 34;
        let mut sum: u32 = 0;
        for w in f[26..34].chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        sum += u32::from(f[23]) + len as u32;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[40..42].copy_from_slice(&(sum as u16).to_be_bytes());
        f
    }
}

/// Every hostile frame with the drop reason it must be counted under.
fn hostile(bed: &TestBed) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let fr = Frames {
        peer_mac: bed.peer().mac().octets(),
        engine_mac: bed.engine().mac().octets(),
        peer4: bed.peer().ipv4(),
        engine4: bed.engine().ipv4(),
        peer6: bed.peer().ipv6(),
        engine6: bed.engine().ipv6(),
    };
    // The bed's subnet is a /24: the kernel has a local broadcast route for its .255.
    let [a, b, c, _] = fr.engine4.octets();
    let directed = Ipv4Addr::new(a, b, c, 255);
    let good = fr.v4(fr.peer4, fr.engine4, 40000, L4::Udp);
    let mut group_src = good.clone();
    group_src[6] |= 1;
    let mut group_dst = good.clone();
    group_dst[0] |= 1;
    let mut bad_sum = good.clone();
    let n = bad_sum.len();
    bad_sum[n - 1] ^= 0x5a;
    let v4 = |s, d, p, l| fr.v4(s, d, p, l);
    let lo = Ipv4Addr::LOCALHOST;
    let any = Ipv4Addr::UNSPECIFIED;
    vec![
        ("group source MAC", group_src, "martian_source"),
        ("group destination MAC", group_dst, "group_destination"),
        (
            "multicast source",
            v4(Ipv4Addr::new(224, 0, 0, 9), fr.engine4, 520, L4::Udp),
            "martian_source",
        ),
        (
            "limited broadcast source",
            v4(Ipv4Addr::BROADCAST, fr.engine4, 40000, L4::Udp),
            "martian_source",
        ),
        (
            "directed broadcast source",
            v4(directed, fr.engine4, 40000, L4::Udp),
            "martian_source",
        ),
        (
            "unspecified source",
            v4(any, fr.engine4, 40000, L4::Udp),
            "martian_source",
        ),
        (
            "loopback source",
            v4(lo, fr.engine4, 40000, L4::Udp),
            "martian_source",
        ),
        (
            "IPv6 loopback source",
            fr.v6(Ipv6Addr::LOCALHOST, fr.engine6, 40000, L4::Udp),
            "martian_source",
        ),
        (
            "multicast destination",
            v4(fr.peer4, Ipv4Addr::new(239, 1, 2, 3), 40000, L4::Udp),
            "group_destination",
        ),
        (
            "limited broadcast destination",
            v4(fr.peer4, Ipv4Addr::BROADCAST, 40000, L4::Udp),
            "group_destination",
        ),
        (
            "directed broadcast destination",
            v4(fr.peer4, directed, 40000, L4::Udp),
            "group_destination",
        ),
        (
            "IPv6 multicast destination",
            fr.v6(fr.peer6, "ff02::1".parse().unwrap(), 40000, L4::Udp),
            "group_destination",
        ),
        (
            "loopback destination",
            v4(fr.peer4, lo, 40000, L4::Udp),
            "martian_destination",
        ),
        (
            "source port 0",
            v4(fr.peer4, fr.engine4, 0, L4::Udp),
            "port_zero",
        ),
        (
            "TCP source port 0",
            v4(fr.peer4, fr.engine4, 0, L4::TcpAck),
            "port_zero",
        ),
        (
            "TCP RST",
            v4(fr.peer4, fr.engine4, 40000, L4::TcpRst),
            "tcp_reset",
        ),
        (
            "IPv6 TCP RST",
            fr.v6(fr.peer6, fr.engine6, 40000, L4::TcpRst),
            "tcp_reset",
        ),
        ("bad UDP checksum", bad_sum, "bad_l4_checksum"),
        (
            "partial UDP checksum",
            fr.partial_v4(&good),
            "partial_l4_checksum",
        ),
    ]
}

/// Whether `f` is an answer of the reflector: UDP/TCP from port 9000 (IPv4 or IPv6, untagged).
fn is_answer(f: &[u8]) -> bool {
    let Ok(p) = etherparse::SlicedPacket::from_ethernet(f) else {
        return false;
    };
    match p.transport {
        Some(etherparse::TransportSlice::Udp(u)) => u.source_port() == PORT,
        Some(etherparse::TransportSlice::Tcp(t)) => t.source_port() == PORT,
        _ => false,
    }
}

#[test]
fn hostile_frames_are_never_answered_and_counted_by_reason() {
    if !require_root("hostile_frames_are_never_answered_and_counted_by_reason") {
        return;
    }
    let bed = bed(1);
    let mut engine = Engine::start(
        &bed,
        &[
            "--app", "reflect", "--udp", "9000", "--tcp", "9000", "--queues", "1",
        ],
    );
    wait_echo_ready(&bed, &mut engine, false, PORT);
    let sock = PacketSocket::open(bed.peer().ns(), bed.peer().iface()).expect("packet socket");
    let frames = hostile(&bed);
    const ROUNDS: u64 = 3;
    for _ in 0..ROUNDS {
        for (what, f, _) in &frames {
            sock.send(f)
                .unwrap_or_else(|e| panic!("sending {what}: {e}"));
        }
    }
    let answers = sock
        .collect_incoming(Duration::from_secs(2), 1, is_answer)
        .expect("capture");
    assert!(
        answers.is_empty(),
        "a hostile frame was answered: {:02x?}",
        answers[0]
    );
    // The same path answers a good frame (so the silence above is sluice's choice).
    let good = Frames {
        peer_mac: bed.peer().mac().octets(),
        engine_mac: bed.engine().mac().octets(),
        peer4: bed.peer().ipv4(),
        engine4: bed.engine().ipv4(),
        peer6: bed.peer().ipv6(),
        engine6: bed.engine().ipv6(),
    };
    sock.send(&good.v4(good.peer4, good.engine4, 40001, L4::Udp))
        .unwrap();
    sock.send(&good.v4(good.peer4, good.engine4, 40002, L4::TcpAck))
        .unwrap();
    let answers = sock
        .collect_incoming(Duration::from_secs(2), 2, is_answer)
        .expect("capture");
    assert_eq!(answers.len(), 2, "good UDP and TCP frames are answered");

    let fin = engine.stop();
    assert_census(&fin);
    let drops = &fin["total"]["drops"];
    let mut want: std::collections::BTreeMap<&str, u64> = Default::default();
    for (_, _, reason) in &frames {
        *want.entry(reason).or_default() += ROUNDS;
    }
    // The reflected TCP ACK reached the peer's kernel, which has no such connection and
    // answered with an RST: reflect drops it, so the exchange ends there.
    *want.entry("tcp_reset").or_default() += 1;
    for (reason, n) in &want {
        assert_eq!(
            drops[*reason].as_u64(),
            Some(*n),
            "{reason}: {}",
            fin["total"]
        );
    }
    let checksum = want["bad_l4_checksum"] + want["partial_l4_checksum"];
    assert_eq!(fin["total"]["l4_checksum_errors"], checksum, "{fin}");
    let port = &fin["ports"][0];
    assert_eq!(
        (
            port["l4_checksum_bad"].as_u64(),
            port["l4_checksum_partial"].as_u64()
        ),
        (
            Some(want["bad_l4_checksum"]),
            Some(want["partial_l4_checksum"])
        ),
        "{fin}"
    );
    // Nothing else was dropped: every hostile frame is in exactly one reason.
    assert_eq!(
        fin["total"]["dropped"].as_u64(),
        Some(want.values().sum::<u64>()),
        "{fin}"
    );
}

#[test]
fn partial_checksums_from_a_kernel_sender_are_counted_and_explained_once() {
    if !require_root("partial_checksums_from_a_kernel_sender_are_counted_and_explained_once") {
        return;
    }
    // TX checksum offload on at both ends: a veth pair as `ip link add` makes it.
    let bed = TestBed::pair(VethOpts {
        tx_checksum: true,
        ..Default::default()
    })
    .expect("building the test bed");
    let mut engine = Engine::start(&bed, &["--app", "reflect", "--udp", "9000"]);
    let iface = bed.engine().iface().to_string();
    let to = (bed.engine().ipv4(), PORT);
    const SENT: u64 = 20;
    // Until the engine runs, datagrams go to the kernel (port unreachable); keep sending until
    // the log line comes, then a counted batch.
    let mut logged = None;
    for _ in 0..100 {
        bed.peer()
            .ns()
            .run(move || {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                for i in 0..5u8 {
                    let _ = s.send_to(&[i; 32], to);
                }
            })
            .unwrap();
        let text = engine.stderr_text();
        if let Some(l) = text.lines().find(|l| l.contains("ethtool -K PEER tx off")) {
            logged = Some(l.to_string());
            break;
        }
        assert!(engine.is_running(), "sluice exited early");
    }
    let line = logged.expect("sluice never explained the partial checksums");
    assert!(line.contains(&iface), "the line names {iface}: {line}");
    assert!(line.contains("partial_l4_checksum"), "{line}");
    let echoes = bed
        .peer()
        .ns()
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            for i in 0..SENT {
                s.send_to(&[i as u8; 64], to).unwrap();
            }
            let mut buf = [0u8; 256];
            let mut n = 0;
            while s.recv_from(&mut buf).is_ok() {
                n += 1;
            }
            n
        })
        .unwrap();
    assert_eq!(echoes, 0, "a partial checksum is dropped, not echoed");
    std::thread::sleep(Duration::from_millis(300));
    let fin = engine.stop();
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let total = &fin["total"];
    assert!(
        count(&total["drops"]["partial_l4_checksum"]) >= SENT,
        "{fin}"
    );
    assert_eq!(
        count(&total["l4_checksum_errors"]),
        count(&total["drops"]["partial_l4_checksum"]) + count(&total["drops"]["bad_l4_checksum"]),
        "{fin}"
    );
    assert!(
        count(&fin["queues"][0]["counters"]["l4_checksum_errors"]) >= SENT,
        "{fin}"
    );
    assert!(
        count(&fin["ports"][0]["l4_checksum_partial"]) >= SENT,
        "{fin}"
    );
    // Once: no second line for the same interface.
    let rest = engine.stderr_text();
    assert!(
        !rest.contains("ethtool -K PEER tx off"),
        "logged more than once:\n{rest}"
    );
}
