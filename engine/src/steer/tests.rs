//! Privileged tests of the loader and of the program itself.
//!
//! Each attach test runs on `lo` of a throwaway network namespace that only its own thread
//! lives in (`unshare(CLONE_NEWNET)` on a fresh thread): the host's interfaces are never
//! touched, and the namespace — with anything still attached in it — vanishes when the
//! thread ends, even on panic. The program tests use `BPF_PROG_TEST_RUN` and attach nothing.
//!
//! Without root they skip with a printed reason; under `CI=true` a skip is a failure.

use super::*;
use aya::{TestRun as _, TestRunOptions};
use std::net::UdpSocket;
use std::process::Command;
use std::sync::{Mutex, Once};
use std::time::Duration;

/// `true` if the test may run; prints why not, or panics under `CI=true`.
fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test} needs root (CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN), and CI=true forbids skipping"
        );
    }
    eprintln!("skipping {test}: needs root (CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN)");
    false
}

/// Runs `f` on a new thread inside a new network namespace whose `lo` is up.
fn in_netns<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let handle = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) on the test thread");
        // The child inherits this thread's namespace. Test-only: the library never shells out.
        let status = Command::new("ip")
            .args(["link", "set", "dev", "lo", "up"])
            .status()
            .expect("running `ip` (package iproute2)");
        assert!(status.success(), "ip link set dev lo up: {status}");
        f()
    });
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// `ip -d link show dev lo` in the calling thread's namespace.
fn ip_link_show_lo() -> String {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", "lo"])
        .output()
        .expect("running `ip` (package iproute2)");
    assert!(out.status.success(), "ip -d link show dev lo failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Log records captured for assertions (a process-wide logger, installed once).
static LOG: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct CaptureLog;

impl log::Log for CaptureLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LOG.lock()
            .unwrap()
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

fn capture_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&CaptureLog).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

fn udp_pair() -> (UdpSocket, UdpSocket, u16) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    (rx, tx, port)
}

fn arrives(rx: &UdpSocket, tx: &UdpSocket, port: u16, payload: &[u8]) -> bool {
    tx.send_to(payload, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    match rx.recv_from(&mut buf) {
        Ok((n, _)) => {
            assert_eq!(&buf[..n], payload);
            true
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            false
        }
        Err(e) => panic!("recv_from: {e}"),
    }
}

#[test]
fn auto_falls_back_to_skb_on_lo_and_drop_detaches() {
    if !privileged("auto_falls_back_to_skb_on_lo_and_drop_detaches") {
        return;
    }
    capture_log();
    in_netns(|| {
        assert!(!ip_link_show_lo().contains("xdp"), "lo starts without XDP");
        let steering = Steering::load_and_attach("lo", XdpMode::Auto).expect("attach to lo");
        // lo has no native XDP, so Auto must have fallen back.
        assert_eq!(steering.granted_mode(), XdpMode::Skb);
        assert_eq!(steering.iface(), "lo");
        let shown = ip_link_show_lo();
        assert!(
            shown.contains("xdpgeneric"),
            "lo should show generic XDP: {shown}"
        );

        let warns: Vec<String> = LOG
            .lock()
            .unwrap()
            .iter()
            .filter(|(level, msg)| *level == log::Level::Warn && msg.contains("asked for auto"))
            .map(|(_, msg)| msg.clone())
            .collect();
        // Only this test attaches in Auto mode, so exactly one line.
        assert_eq!(warns.len(), 1, "one fallback line: {warns:?}");
        assert!(warns[0].contains("XDP on lo"), "{}", warns[0]);
        assert!(warns[0].contains("granted skb"), "{}", warns[0]);
        assert!(warns[0].contains("driver mode failed"), "{}", warns[0]);

        drop(steering);
        let shown = ip_link_show_lo();
        assert!(!shown.contains("xdp"), "XDP left on lo after drop: {shown}");
    });
}

#[test]
fn forced_driver_mode_on_lo_fails_without_fallback() {
    if !privileged("forced_driver_mode_on_lo_fails_without_fallback") {
        return;
    }
    in_netns(|| {
        let err = Steering::load_and_attach("lo", XdpMode::Driver).unwrap_err();
        match &err {
            SteerError::Attach {
                iface,
                asked,
                tried,
                source,
            } => {
                assert_eq!(iface, "lo");
                assert_eq!((*asked, *tried), (XdpMode::Driver, XdpMode::Driver));
                assert_eq!(errno(source), Some(libc::EOPNOTSUPP), "{source}");
            }
            other => panic!("expected Attach, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("lo") && msg.contains("driver mode"), "{msg}");
        assert!(msg.contains("does not support"), "hint missing: {msg}");
        assert!(!ip_link_show_lo().contains("xdp"));
    });
}

#[test]
fn second_attach_is_busy_and_unknown_interface_is_named() {
    if !privileged("second_attach_is_busy_and_unknown_interface_is_named") {
        return;
    }
    in_netns(|| {
        let first = Steering::load_and_attach("lo", XdpMode::Skb).unwrap();
        let err = Steering::load_and_attach("lo", XdpMode::Skb).unwrap_err();
        match &err {
            SteerError::Attach { source, .. } => assert_eq!(errno(source), Some(libc::EBUSY)),
            other => panic!("expected Attach, got {other:?}"),
        }
        assert!(err.to_string().contains("already attached"), "{err}");
        drop(first);

        let err = Steering::load_and_attach("nosuchif0", XdpMode::Skb).unwrap_err();
        assert!(
            matches!(&err, SteerError::InterfaceNotFound { iface } if iface == "nosuchif0"),
            "{err:?}"
        );
    });
}

#[test]
fn rules_set_list_replace_remove() {
    if !privileged("rules_set_list_replace_remove") {
        return;
    }
    in_netns(|| {
        let mut s = Steering::load_and_attach("lo", XdpMode::Skb).unwrap();
        assert_eq!(s.rules().unwrap(), []);
        let rule = |proto, port, action| Rule {
            proto,
            port,
            action,
        };
        s.set_rule(rule(L4Proto::Udp, 9000, Action::Redirect))
            .unwrap();
        s.set_rule(rule(L4Proto::Tcp, 80, Action::Drop)).unwrap();
        s.set_rule(rule(L4Proto::Udp, 53, Action::Pass)).unwrap();
        // Same key: replaces.
        s.set_rule(rule(L4Proto::Udp, 9000, Action::Drop)).unwrap();
        assert_eq!(
            s.rules().unwrap(),
            [
                rule(L4Proto::Udp, 53, Action::Pass),
                rule(L4Proto::Udp, 9000, Action::Drop),
                rule(L4Proto::Tcp, 80, Action::Drop),
            ]
        );
        assert!(s.remove_rule(L4Proto::Udp, 9000).unwrap());
        assert!(!s.remove_rule(L4Proto::Udp, 9000).unwrap());
        assert!(
            !s.remove_rule(L4Proto::Tcp, 53).unwrap(),
            "proto is part of the key"
        );
        assert_eq!(
            s.rules().unwrap(),
            [
                rule(L4Proto::Udp, 53, Action::Pass),
                rule(L4Proto::Tcp, 80, Action::Drop)
            ]
        );
        assert_eq!(rules_in_kernel(&s), s.rules().unwrap(), "shadow = map");

        // Every port of both protocols fits: the old 4096-entry limit is gone.
        for port in 1..=u16::MAX {
            s.set_rule(rule(L4Proto::Tcp, port, Action::Redirect))
                .unwrap();
        }
        assert_eq!(s.rules().unwrap().len(), 1 + usize::from(u16::MAX));
        for port in 1..=u16::MAX {
            assert!(s.remove_rule(L4Proto::Tcp, port).unwrap());
        }
        assert_eq!(s.rules().unwrap(), [rule(L4Proto::Udp, 53, Action::Pass)]);
        assert_eq!(rules_in_kernel(&s), s.rules().unwrap(), "shadow = map");
    });
}

/// The rules as the kernel map holds them: every non-empty slot, read one by one.
fn rules_in_kernel(s: &Steering) -> Vec<Rule> {
    (0..ebpf::RULES_MAX_ENTRIES)
        .filter_map(|index| {
            let value = s.rules.get(&index, 0).unwrap();
            if value == ebpf::ACTION_NONE {
                return None;
            }
            Some(Rule::from_entry(index, value).expect("only values the API writes"))
        })
        .collect()
}

#[test]
fn loopback_traffic_is_counted_dropped_and_fails_open() {
    if !privileged("loopback_traffic_is_counted_dropped_and_fails_open") {
        return;
    }
    in_netns(|| {
        let mut s = Steering::load_and_attach("lo", XdpMode::Skb).unwrap();
        let c0 = s.counters().unwrap();
        assert_eq!(c0, Counters::default(), "fresh program, quiet namespace");

        // Unmatched port: passed and delivered.
        let (rx, tx, port) = udp_pair();
        for i in 0..3u8 {
            assert!(
                arrives(&rx, &tx, port, &[b'p', i]),
                "unmatched datagram lost"
            );
        }
        let c1 = s.counters().unwrap();
        assert!(c1.passed >= 3, "{c1:?}");
        assert_eq!(c1.dropped_by_rule, 0);

        // Drop rule: never arrives.
        let (rx2, tx2, port2) = udp_pair();
        s.set_rule(Rule {
            proto: L4Proto::Udp,
            port: port2,
            action: Action::Drop,
        })
        .unwrap();
        assert!(
            !arrives(&rx2, &tx2, port2, b"dropped"),
            "drop rule did not drop"
        );
        let c2 = s.counters().unwrap();
        assert!(c2.dropped_by_rule >= 1, "{c2:?}");

        // Redirect rule, but no socket on queue 0: falls back to the kernel, delivered.
        let (rx3, tx3, port3) = udp_pair();
        s.set_rule(Rule {
            proto: L4Proto::Udp,
            port: port3,
            action: Action::Redirect,
        })
        .unwrap();
        assert!(
            arrives(&rx3, &tx3, port3, b"fail-open"),
            "redirect without socket lost"
        );
        let c3 = s.counters().unwrap();
        assert!(c3.redirect_fallback >= 1, "{c3:?}");
        assert_eq!(c3.redirected, 0, "{c3:?}");

        // Removing the drop rule lets traffic through again.
        assert!(s.remove_rule(L4Proto::Udp, port2).unwrap());
        assert!(arrives(&rx2, &tx2, port2, b"again"));
    });
}

#[test]
fn register_socket_rejects_non_xsk_and_bad_queue() {
    if !privileged("register_socket_rejects_non_xsk_and_bad_queue") {
        return;
    }
    in_netns(|| {
        let mut s = Steering::load_and_attach("lo", XdpMode::Skb).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = s.register_socket(0, &udp).unwrap_err();
        assert!(
            matches!(&err, SteerError::Map { map: "xsks", .. }),
            "a UDP socket is not an AF_XDP socket: {err:?}"
        );
        assert!(err.to_string().contains("queue 0"), "{err}");
        let err = s.register_socket(ebpf::XSKS_MAX_ENTRIES, &udp).unwrap_err();
        assert!(
            matches!(&err, SteerError::Map { source, .. } if matches!(**source, MapError::OutOfBounds { .. })),
            "{err:?}"
        );
        s.unregister_socket(0).unwrap();
        assert_eq!(s.xsks.len(), ebpf::XSKS_MAX_ENTRIES);
    });
}

// ---- BPF_PROG_TEST_RUN: the program on crafted frames ------------------------------------

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const DPORT: u16 = 5000;

/// Ethernet frame; `tags` are the TPIDs of the VLAN tags, outermost first (VLAN id 100).
fn eth(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for &tpid in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x64]); // TCI
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(ihl: u8, proto: u8, frag_off: u16, l4: &[u8]) -> Vec<u8> {
    let hlen = usize::from(ihl) * 4;
    let mut h = vec![0u8; hlen.max(20)];
    h[0] = 0x40 | ihl;
    let total = (hlen.max(20) + l4.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&frag_off.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&[10, 0, 0, 1]);
    h[16..20].copy_from_slice(&[10, 0, 0, 2]);
    for b in h.iter_mut().skip(20) {
        *b = 1; // NOP options
    }
    h.extend_from_slice(l4);
    h
}

fn ipv6(nexthdr: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    h[6] = nexthdr;
    h[7] = 64;
    h[23] = 1;
    h[39] = 2;
    h.extend_from_slice(l4);
    h
}

fn udp(dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&4444u16.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(b"ping");
    h
}

fn tcp(dport: u16, doff: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&4444u16.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = doff << 4;
    h[13] = 0x02; // SYN
    h[14..16].copy_from_slice(&1024u16.to_be_bytes());
    h
}

const ETH_IP: u16 = 0x0800;
const ETH_IP6: u16 = 0x86dd;
const QINQ: u16 = 0x88a8;
const DOT1Q: u16 = 0x8100;

#[test]
fn crafted_frames_get_the_expected_verdict() {
    if !privileged("crafted_frames_get_the_expected_verdict") {
        return;
    }
    let mut loaded = Loaded::new("test-run").expect("load steer");
    let mut set = |proto: u8, port: u16, raw_action: u32| {
        let index = ebpf::rule_index(proto, port).unwrap();
        loaded.rules.set(index, raw_action, 0).unwrap();
    };
    set(17, DPORT, Action::Drop.raw());
    set(6, DPORT, Action::Drop.raw());
    set(17, 5001, Action::Pass.raw());
    set(17, 5002, Action::Redirect.raw());
    // A removed rule: the slot is written back to "none".
    set(17, 5003, Action::Drop.raw());
    set(17, 5003, ebpf::ACTION_NONE);
    // A value this API never writes is treated as pass, as the C source says.
    set(17, 5004, 99);
    // The last slot of the map.
    set(6, u16::MAX, Action::Drop.raw());

    // Sanity-check the hand-built frames with an independent parser.
    let double_tagged = eth(&[QINQ, DOT1Q], ETH_IP, &ipv4(5, 17, 0, &udp(DPORT)));
    {
        let parsed = etherparse::SlicedPacket::from_ethernet(&double_tagged).unwrap();
        assert!(matches!(
            parsed.link_exts.as_slice(),
            [
                etherparse::LinkExtSlice::Vlan(_),
                etherparse::LinkExtSlice::Vlan(_)
            ]
        ));
        match &parsed.transport {
            Some(etherparse::TransportSlice::Udp(u)) => assert_eq!(u.destination_port(), DPORT),
            other => panic!("{other:?}"),
        }
    }
    let with_options = eth(&[], ETH_IP, &ipv4(7, 6, 0, &tcp(DPORT, 5)));
    match etherparse::SlicedPacket::from_ethernet(&with_options).map(|p| p.transport) {
        Ok(Some(etherparse::TransportSlice::Tcp(t))) => assert_eq!(t.destination_port(), DPORT),
        other => panic!("{other:?}"),
    }

    use ebpf::counter as c;
    let mut ipv4_truncated = eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(DPORT)));
    ipv4_truncated.truncate(14 + 10);
    let mut udp_truncated = eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(DPORT)));
    udp_truncated.truncate(14 + 20 + 6);
    let mut options_truncated = eth(&[], ETH_IP, &ipv4(15, 17, 0, &udp(DPORT)));
    options_truncated.truncate(14 + 40);
    let mut vlan_truncated = eth(&[QINQ, DOT1Q], ETH_IP, &[]);
    vlan_truncated.truncate(14 + 2);
    let arp = eth(&[], 0x0806, &[0u8; 28]);

    let cases: Vec<(&str, Vec<u8>, u32, u32)> = vec![
        (
            "double-tagged IPv4 UDP, drop rule",
            double_tagged,
            XDP_DROP,
            c::DROPPED_BY_RULE,
        ),
        (
            "single 802.1Q IPv4 UDP, drop rule",
            eth(&[DOT1Q], ETH_IP, &ipv4(5, 17, 0, &udp(DPORT))),
            XDP_DROP,
            c::DROPPED_BY_RULE,
        ),
        (
            "triple-tagged: not parsed",
            eth(&[QINQ, DOT1Q, DOT1Q], ETH_IP, &ipv4(5, 17, 0, &udp(DPORT))),
            XDP_PASS,
            c::NOT_IP,
        ),
        (
            "IPv4 with options TCP, drop rule",
            with_options,
            XDP_DROP,
            c::DROPPED_BY_RULE,
        ),
        (
            "IPv4 IHL 4",
            eth(&[], ETH_IP, &ipv4(4, 17, 0, &udp(DPORT))),
            XDP_PASS,
            c::MALFORMED,
        ),
        (
            "IPv4 version 5",
            {
                let mut f = eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(DPORT)));
                f[14] = 0x55;
                f
            },
            XDP_PASS,
            c::MALFORMED,
        ),
        (
            "IPv4 non-first fragment",
            eth(&[], ETH_IP, &ipv4(5, 17, 0x0010, &udp(DPORT))),
            XDP_PASS,
            c::PASSED,
        ),
        (
            "IPv4 first fragment (MF) still matched",
            eth(&[], ETH_IP, &ipv4(5, 17, 0x2000, &udp(DPORT))),
            XDP_DROP,
            c::DROPPED_BY_RULE,
        ),
        (
            "IPv4 truncated header",
            ipv4_truncated,
            XDP_PASS,
            c::MALFORMED,
        ),
        (
            "IPv4 options past the end",
            options_truncated,
            XDP_PASS,
            c::MALFORMED,
        ),
        ("UDP truncated", udp_truncated, XDP_PASS, c::MALFORMED),
        ("VLAN tag truncated", vlan_truncated, XDP_PASS, c::MALFORMED),
        (
            "TCP data offset 4",
            eth(&[], ETH_IP, &ipv4(5, 6, 0, &tcp(DPORT, 4))),
            XDP_PASS,
            c::MALFORMED,
        ),
        (
            "IPv6 UDP, drop rule",
            eth(&[], ETH_IP6, &ipv6(17, &udp(DPORT))),
            XDP_DROP,
            c::DROPPED_BY_RULE,
        ),
        (
            "IPv6 TCP in 802.1ad, drop rule",
            eth(&[QINQ], ETH_IP6, &ipv6(6, &tcp(DPORT, 5))),
            XDP_DROP,
            c::DROPPED_BY_RULE,
        ),
        (
            "IPv6 extension header: unmatched",
            eth(&[], ETH_IP6, &ipv6(0, &udp(DPORT))),
            XDP_PASS,
            c::PASSED,
        ),
        (
            "IPv6 truncated",
            {
                let mut f = eth(&[], ETH_IP6, &ipv6(17, &udp(DPORT)));
                f.truncate(14 + 39);
                f
            },
            XDP_PASS,
            c::MALFORMED,
        ),
        (
            "IPv4 UDP other port",
            eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(DPORT + 100))),
            XDP_PASS,
            c::PASSED,
        ),
        (
            "IPv4 ICMP",
            eth(&[], ETH_IP, &ipv4(5, 1, 0, &[8, 0, 0, 0, 0, 0, 0, 0])),
            XDP_PASS,
            c::PASSED,
        ),
        (
            "UDP rule does not match TCP",
            eth(&[], ETH_IP, &ipv4(5, 6, 0, &tcp(5001, 5))),
            XDP_PASS,
            c::PASSED,
        ),
        (
            "pass rule",
            eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(5001))),
            XDP_PASS,
            c::PASSED_BY_RULE,
        ),
        (
            "redirect rule, no socket on queue 0",
            eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(5002))),
            XDP_PASS,
            c::REDIRECT_FALLBACK,
        ),
        ("ARP", arp, XDP_PASS, c::NOT_IP),
        (
            "removed rule: slot back to none",
            eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(5003))),
            XDP_PASS,
            c::PASSED,
        ),
        (
            "unknown action value: pass",
            eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(5004))),
            XDP_PASS,
            c::PASSED_BY_RULE,
        ),
        (
            "TCP port 65535 (last slot), drop rule",
            eth(&[], ETH_IP6, &ipv6(6, &tcp(u16::MAX, 5))),
            XDP_DROP,
            c::DROPPED_BY_RULE,
        ),
        (
            "UDP port 65535 has no rule",
            eth(&[], ETH_IP, &ipv4(5, 17, 0, &udp(u16::MAX))),
            XDP_PASS,
            c::PASSED,
        ),
    ];

    for (name, frame, verdict, counter) in cases {
        let before = read_counters(&loaded.counters).unwrap();
        let result = loaded
            .program()
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::new()
            })
            .unwrap_or_else(|e| panic!("{name}: BPF_PROG_TEST_RUN: {e}"));
        assert_eq!(result.return_value, verdict, "{name}: verdict");
        let after = read_counters(&loaded.counters).unwrap();
        let mut want = [0u64; ebpf::counter::LEN as usize];
        want[counter as usize] = 1;
        let delta = |a: u64, b: u64| a - b;
        let got = Counters {
            redirected: delta(after.redirected, before.redirected),
            passed: delta(after.passed, before.passed),
            passed_by_rule: delta(after.passed_by_rule, before.passed_by_rule),
            dropped_by_rule: delta(after.dropped_by_rule, before.dropped_by_rule),
            not_ip: delta(after.not_ip, before.not_ip),
            malformed: delta(after.malformed, before.malformed),
            redirect_fallback: delta(after.redirect_fallback, before.redirect_fallback),
        };
        assert_eq!(
            got,
            Counters::from_sums(&want),
            "{name}: counted once, in the right slot"
        );
    }
}

// ---- fail open on SIGKILL -----------------------------------------------------------------

const SIGKILL_CHILD_ENV: &str = "SLUICE_STEER_SIGKILL_CHILD";

/// Not a test on its own: the child half of `sigkill_detaches_the_program`, which re-runs
/// this test binary with `--ignored --exact` and the env var set, inside its namespace.
#[test]
#[ignore = "child process of sigkill_detaches_the_program"]
fn sigkill_child_holds_steering() {
    if std::env::var_os(SIGKILL_CHILD_ENV).is_none() {
        return;
    }
    let _steering = Steering::load_and_attach("lo", XdpMode::Skb).expect("child attach");
    println!("ATTACHED");
    std::thread::sleep(Duration::from_secs(60));
    panic!("the parent should have killed this process");
}

#[test]
fn sigkill_detaches_the_program() {
    use std::io::BufRead as _;
    if !privileged("sigkill_detaches_the_program") {
        return;
    }
    in_netns(|| {
        // Spawned from this thread, the child shares this thread's namespace, which this
        // thread keeps alive after the child dies.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "steer::tests::sigkill_child_holds_steering",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SIGKILL_CHILD_ENV, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("re-running the test binary");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let attached = stdout
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("ATTACHED"));
        if !attached {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not attach");
        }
        let shown = ip_link_show_lo();
        assert!(
            shown.contains("xdpgeneric"),
            "child's program attached: {shown}"
        );

        child.kill().expect("SIGKILL the child"); // Child::kill sends SIGKILL
        child.wait().unwrap();
        // The link goes with the child's last fd; allow the kernel a moment for deferred frees.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let shown = ip_link_show_lo();
            if !shown.contains("xdp") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "XDP still on lo after SIGKILL: {shown}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}
