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
        let got = after.since(&before);
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

// ---- forward mode: bpf_fib_lookup against a real FIB -------------------------------------

const XDP_REDIRECT: u32 = 4;
/// MAC of `out0`, the egress interface of [`router_netns`].
const OUT0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
/// MAC of the permanent next-hop neighbours 10.2.0.2 and fd02::2.
const NEXT_HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

/// `ip ARGS` in the calling thread's namespace; panics on failure.
fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("running `ip` (package iproute2)");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `/proc/sys/<key>`, which for `net/` means the calling thread's namespace.
fn sysctl(key: &str, value: &str) {
    std::fs::write(format!("/proc/sys/{key}"), value)
        .unwrap_or_else(|e| panic!("sysctl {key}={value}: {e}"));
}

/// A small router inside the calling thread's (private) namespace; returns the ifindex of the
/// ingress interface `in0`.
///
/// ```text
///   in0 10.1.0.1/24 fd01::1/64  (peer in1)     ingress
///   out0 10.2.0.1/24 fd02::1/64 (peer out1)    egress, MAC OUT0_MAC
///   10.9.0.0/24, fd09::/64  via 10.2.0.2 / fd02::2  permanent neighbour NEXT_HOP_MAC
///   10.8.0.0/24, fd08::/64  via 10.2.0.3 / fd02::3  no neighbour entry
///   10.7.0.0/24 unreachable, 10.6.0.0/24 blackhole, 10.5.0.0/24 prohibit, fd07::/64 unreachable
///   forwarding on (IPv4 and IPv6)
/// ```
fn router_netns() -> u32 {
    for cmd in [
        "link add in0 type veth peer name in1",
        "link add out0 address 02:00:00:00:01:01 type veth peer name out1",
        "link set in0 up",
        "link set in1 up",
        "link set out0 up",
        "link set out1 up",
        "addr add 10.1.0.1/24 dev in0",
        "addr add 10.2.0.1/24 dev out0",
        "-6 addr add fd01::1/64 dev in0 nodad",
        "-6 addr add fd02::1/64 dev out0 nodad",
        "route add 10.9.0.0/24 via 10.2.0.2 dev out0",
        "neigh add 10.2.0.2 lladdr 02:00:00:00:02:02 nud permanent dev out0",
        "route add 10.8.0.0/24 via 10.2.0.3 dev out0",
        "route add unreachable 10.7.0.0/24",
        "route add blackhole 10.6.0.0/24",
        "route add prohibit 10.5.0.0/24",
        "-6 route add fd09::/64 via fd02::2 dev out0",
        "-6 neigh add fd02::2 lladdr 02:00:00:00:02:02 nud permanent dev out0",
        "-6 route add fd08::/64 via fd02::3 dev out0",
        "-6 route add unreachable fd07::/64",
    ] {
        ip(cmd);
    }
    sysctl("net/ipv4/conf/all/forwarding", "1");
    sysctl("net/ipv6/conf/all/forwarding", "1");
    nix::net::if_::if_nametoindex("in0").expect("in0 exists")
}

/// RFC 1071 checksum of an IPv4 header (checksum field included as it is).
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Untagged IPv4 frame `src -> dst` with a valid header checksum.
fn v4(src: [u8; 4], dst: [u8; 4], ttl: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = ipv4(5, proto, 0, l4);
    h[8] = ttl;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let sum = ipv4_checksum(&h[..20]);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    eth(&[], ETH_IP, &h)
}

/// Untagged IPv6 frame `src -> dst`.
fn v6(src: &str, dst: &str, hop_limit: u8, nexthdr: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = ipv6(nexthdr, l4);
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
    h[24..40].copy_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
    eth(&[], ETH_IP6, &h)
}

/// `struct xdp_md` for `ctx_in`: the frame arrives on `ifindex`, queue 0 (what
/// `bpf_fib_lookup` takes as the ingress device; `sluice_bench::gen` builds the same).
fn xdp_md(frame_len: usize, ifindex: u32) -> [u8; 24] {
    let words = [0, frame_len as u32, 0, ifindex, 0, 0];
    let mut b = [0u8; 24];
    for (chunk, w) in b.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    b
}

/// Runs `frame` through `loaded` as if received on `ifindex` queue 0 and checks the verdict
/// and that exactly counter `counter` moved, by one.
fn expect_verdict(
    loaded: &mut Loaded,
    ifindex: u32,
    name: &str,
    frame: &[u8],
    verdict: u32,
    counter: u32,
) {
    let before = read_counters(&loaded.counters).unwrap();
    let ctx = xdp_md(frame.len(), ifindex);
    let result = loaded
        .program()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        })
        .unwrap_or_else(|e| panic!("{name}: BPF_PROG_TEST_RUN: {e}"));
    let got = read_counters(&loaded.counters).unwrap().since(&before);
    let mut want = [0u64; ebpf::counter::LEN as usize];
    want[counter as usize] = 1;
    assert_eq!(
        (result.return_value, got),
        (verdict, Counters::from_sums(&want)),
        "{name}: verdict, and counted once in the right slot"
    );
}

#[test]
fn forward_mode_follows_the_kernel_fib() {
    if !privileged("forward_mode_follows_the_kernel_fib") {
        return;
    }
    in_netns(|| {
        let in0 = router_netns();
        let mut loaded = Loaded::new("in0").expect("load steer");
        loaded
            .config
            .set(0, SteerMode::Forward.raw(), 0)
            .expect("forward mode");
        // A drop-everything-on-udp/5000 rule: forward mode must not look at it.
        let index = ebpf::rule_index(17, DPORT).unwrap();
        loaded.rules.set(index, Action::Drop.raw(), 0).unwrap();

        use ebpf::counter as c;
        let (h4, r4) = ([10, 1, 0, 2], [10, 9, 0, 5]);
        let udp4 = |dst| v4(h4, dst, 64, 17, &udp(DPORT));
        let udp6 = |dst| v6("fd01::2", dst, 64, 17, &udp(DPORT));
        let mut long4 = udp4(r4);
        long4[16..18].copy_from_slice(&200u16.to_be_bytes()); // tot_len past the frame
        let mut long6 = udp6("fd09::5");
        long6[18..20].copy_from_slice(&200u16.to_be_bytes()); // payload_len past the frame
        let frag = |frag_off: u16| {
            let mut f = udp4(r4);
            f[20..22].copy_from_slice(&frag_off.to_be_bytes());
            f
        };
        let icmp6 = |ty: u8| [ty, 0, 0, 0, 0, 0, 0, 0];

        let cases: Vec<(&str, Vec<u8>, u32, u32)> = vec![
            // No socket on queue 0 (yet): forwardable frames fall back to the kernel.
            (
                "v4 UDP, routed, neighbour known",
                udp4(r4),
                XDP_PASS,
                c::FWD_FALLBACK,
            ),
            (
                "v4 TCP, routed",
                v4(h4, r4, 64, 6, &tcp(80, 5)),
                XDP_PASS,
                c::FWD_FALLBACK,
            ),
            (
                "v4 TTL 1: still user space's (time exceeded)",
                v4(h4, r4, 1, 17, &udp(DPORT)),
                XDP_PASS,
                c::FWD_FALLBACK,
            ),
            (
                "v4 ICMP, routed",
                v4(h4, r4, 64, 1, &[8, 0, 0, 0, 0, 0, 0, 0]),
                XDP_PASS,
                c::FWD_FALLBACK,
            ),
            (
                "v4 to in0's address",
                udp4([10, 1, 0, 1]),
                XDP_PASS,
                c::FIB_LOCAL_OR_NOROUTE,
            ),
            (
                "v4 to out0's address",
                udp4([10, 2, 0, 1]),
                XDP_PASS,
                c::FIB_LOCAL_OR_NOROUTE,
            ),
            (
                "v4 no route",
                udp4([192, 0, 2, 1]),
                XDP_PASS,
                c::FIB_LOCAL_OR_NOROUTE,
            ),
            (
                "v4 next hop unresolved",
                udp4([10, 8, 0, 5]),
                XDP_PASS,
                c::FIB_NO_NEIGH,
            ),
            (
                "v4 directly connected, no neighbour",
                udp4([10, 2, 0, 9]),
                XDP_PASS,
                c::FIB_NO_NEIGH,
            ),
            (
                "v4 unreachable route",
                udp4([10, 7, 0, 1]),
                XDP_PASS,
                c::FIB_UNREACHABLE,
            ),
            (
                "v4 blackhole route",
                udp4([10, 6, 0, 1]),
                XDP_PASS,
                c::FIB_UNREACHABLE,
            ),
            (
                "v4 prohibit route",
                udp4([10, 5, 0, 1]),
                XDP_PASS,
                c::FIB_UNREACHABLE,
            ),
            (
                "v4 multicast",
                udp4([224, 0, 0, 5]),
                XDP_PASS,
                c::FWD_LINK_SCOPE,
            ),
            (
                "v4 broadcast",
                udp4([255, 255, 255, 255]),
                XDP_PASS,
                c::FWD_LINK_SCOPE,
            ),
            (
                "v4 link-local",
                udp4([169, 254, 1, 1]),
                XDP_PASS,
                c::FWD_LINK_SCOPE,
            ),
            (
                "v4 options",
                eth(&[], ETH_IP, &ipv4(6, 17, 0, &udp(DPORT))),
                XDP_PASS,
                c::FWD_KERNEL_ONLY,
            ),
            (
                "v4 first fragment",
                frag(0x2000),
                XDP_PASS,
                c::FWD_KERNEL_ONLY,
            ),
            (
                "v4 later fragment",
                frag(0x0010),
                XDP_PASS,
                c::FWD_KERNEL_ONLY,
            ),
            (
                "v4 DF is not a fragment",
                frag(0x4000),
                XDP_PASS,
                c::FWD_FALLBACK,
            ),
            (
                "802.1Q tagged",
                eth(&[DOT1Q], ETH_IP, &v4(h4, r4, 64, 17, &udp(DPORT))[14..]),
                XDP_PASS,
                c::FWD_KERNEL_ONLY,
            ),
            ("v4 tot_len past the frame", long4, XDP_PASS, c::MALFORMED),
            (
                "v4 IHL 4",
                eth(&[], ETH_IP, &ipv4(4, 17, 0, &udp(DPORT))),
                XDP_PASS,
                c::MALFORMED,
            ),
            ("ARP", eth(&[], 0x0806, &[0u8; 28]), XDP_PASS, c::NOT_IP),
            (
                "v6 UDP, routed, neighbour known",
                udp6("fd09::5"),
                XDP_PASS,
                c::FWD_FALLBACK,
            ),
            (
                "v6 hop limit 1: still user space's",
                v6("fd01::2", "fd09::5", 1, 17, &udp(DPORT)),
                XDP_PASS,
                c::FWD_FALLBACK,
            ),
            (
                "v6 echo request, routed",
                v6("fd01::2", "fd09::5", 64, 58, &icmp6(128)),
                XDP_PASS,
                c::FWD_FALLBACK,
            ),
            (
                "v6 to in0's address",
                udp6("fd01::1"),
                XDP_PASS,
                c::FIB_LOCAL_OR_NOROUTE,
            ),
            (
                "v6 no route",
                udp6("2001:db8::1"),
                XDP_PASS,
                c::FIB_LOCAL_OR_NOROUTE,
            ),
            (
                "v6 next hop unresolved",
                udp6("fd08::5"),
                XDP_PASS,
                c::FIB_NO_NEIGH,
            ),
            (
                "v6 unreachable route",
                udp6("fd07::1"),
                XDP_PASS,
                c::FIB_UNREACHABLE,
            ),
            ("v6 multicast", udp6("ff02::1"), XDP_PASS, c::FWD_LINK_SCOPE),
            (
                "v6 link-local",
                udp6("fe80::1"),
                XDP_PASS,
                c::FWD_LINK_SCOPE,
            ),
            (
                "v6 neighbour solicitation to a global address",
                v6("fd01::2", "fd01::1", 255, 58, &icmp6(135)),
                XDP_PASS,
                c::FWD_LINK_SCOPE,
            ),
            (
                "v6 router solicitation",
                v6("fd01::2", "fd09::5", 255, 58, &icmp6(133)),
                XDP_PASS,
                c::FWD_LINK_SCOPE,
            ),
            (
                "v6 hop-by-hop header",
                v6("fd01::2", "fd09::5", 64, 0, &udp(DPORT)),
                XDP_PASS,
                c::FWD_KERNEL_ONLY,
            ),
            (
                "v6 fragment header",
                v6("fd01::2", "fd09::5", 64, 44, &udp(DPORT)),
                XDP_PASS,
                c::FWD_KERNEL_ONLY,
            ),
            (
                "v6 payload_len past the frame",
                long6,
                XDP_PASS,
                c::MALFORMED,
            ),
        ];
        let mut frames = 0;
        for (name, frame, verdict, counter) in &cases {
            expect_verdict(&mut loaded, in0, name, frame, *verdict, *counter);
            frames += 1;
        }

        // With a socket on queue 0, forwardable frames are redirected into it.
        let xsk = crate::xsk::XskQueue::open("in0", 0, &Default::default())
            .expect("AF_XDP socket on in0 queue 0");
        loaded
            .xsks
            .set(0, xsk.fd(), 0)
            .expect("register the socket");
        for (name, frame) in [
            ("v4 redirected", udp4(r4)),
            ("v6 redirected", udp6("fd09::5")),
        ] {
            expect_verdict(
                &mut loaded,
                in0,
                name,
                frame.as_slice(),
                XDP_REDIRECT,
                c::FWD_REDIRECTED,
            );
            frames += 1;
        }
        // ... and everything else still goes to the kernel.
        expect_verdict(
            &mut loaded,
            in0,
            "v4 local, socket present",
            &udp4([10, 1, 0, 1]),
            XDP_PASS,
            c::FIB_LOCAL_OR_NOROUTE,
        );
        frames += 1;

        // Forwarding off: the kernel's FIB says so, the kernel gets the frames.
        sysctl("net/ipv4/conf/all/forwarding", "0");
        sysctl("net/ipv6/conf/all/forwarding", "0");
        expect_verdict(
            &mut loaded,
            in0,
            "v4 forwarding off",
            &udp4(r4),
            XDP_PASS,
            c::FIB_FWD_DISABLED,
        );
        expect_verdict(
            &mut loaded,
            in0,
            "v6 forwarding off",
            &udp6("fd09::5"),
            XDP_PASS,
            c::FIB_FWD_DISABLED,
        );
        frames += 2;

        // Back to ports mode: the drop rule applies again, the FIB is not consulted.
        loaded.config.set(0, SteerMode::Ports.raw(), 0).unwrap();
        expect_verdict(
            &mut loaded,
            in0,
            "ports mode: drop rule",
            &udp4(r4),
            XDP_DROP,
            c::DROPPED_BY_RULE,
        );
        expect_verdict(
            &mut loaded,
            in0,
            "ports mode: no rule",
            &v4(h4, r4, 64, 6, &tcp(80, 5)),
            XDP_PASS,
            c::PASSED,
        );
        frames += 2;

        assert_eq!(
            read_counters(&loaded.counters).unwrap().total(),
            frames,
            "every frame counted exactly once"
        );
    });
}

#[test]
fn set_mode_writes_the_config_map() {
    if !privileged("set_mode_writes_the_config_map") {
        return;
    }
    in_netns(|| {
        let mut s = Steering::load_and_attach("lo", XdpMode::Skb).unwrap();
        assert_eq!(s.mode(), SteerMode::Ports);
        assert_eq!(s.config.get(&0, 0).unwrap(), ebpf::MODE_PORTS);
        s.set_mode(SteerMode::Forward).unwrap();
        assert_eq!(s.mode(), SteerMode::Forward);
        assert_eq!(s.config.get(&0, 0).unwrap(), ebpf::MODE_FORWARD);

        // lo in forward mode: loopback traffic is local, so the kernel keeps getting it.
        let (rx, tx, port) = udp_pair();
        assert!(arrives(&rx, &tx, port, b"local"), "local datagram lost");
        let c = s.counters().unwrap();
        assert!(
            c.fib_local_or_noroute + c.fib_fwd_disabled >= 1,
            "lo traffic never reaches user space: {c:?}"
        );
        assert_eq!(c.fwd_redirected + c.fwd_fallback, 0, "{c:?}");
        assert_eq!(
            c.passed + c.redirected,
            0,
            "ports-mode counters untouched: {c:?}"
        );

        s.set_mode(SteerMode::Ports).unwrap();
        assert_eq!(s.config.get(&0, 0).unwrap(), ebpf::MODE_PORTS);
        assert!(arrives(&rx, &tx, port, b"ports"));
        assert!(s.counters().unwrap().passed >= 1);
    });
}

// ---- fwd.bpf.o: the benchmark's in-kernel forwarder ---------------------------------------

#[test]
fn bench_forwarder_rewrites_and_redirects() {
    if !privileged("bench_forwarder_rewrites_and_redirects") {
        return;
    }
    in_netns(|| {
        let in0 = router_netns();
        let mut bpf = aya::EbpfLoader::new()
            .load(ebpf::FWD_OBJ)
            .expect("parse fwd.bpf.o");
        let prog: &mut aya::programs::Xdp = bpf
            .program_mut(ebpf::fwd::PROGRAM)
            .expect("program xdp_fwd")
            .try_into()
            .unwrap();
        prog.load().expect("load xdp_fwd");

        let run = |prog: &mut aya::programs::Xdp, frame: &[u8]| {
            let ctx = xdp_md(frame.len(), in0);
            let mut out = vec![0u8; frame.len()];
            let r = prog
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    ctx_in: Some(&ctx),
                    ..TestRunOptions::new()
                })
                .expect("BPF_PROG_TEST_RUN");
            out.truncate(r.data_size_out as usize);
            (r.return_value, out)
        };

        // IPv4: MACs from the FIB, TTL - 1, checksum still valid.
        let frame = v4([10, 1, 0, 2], [10, 9, 0, 5], 64, 17, &udp(DPORT));
        let (verdict, out) = run(prog, &frame);
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(out.len(), frame.len());
        assert_eq!(&out[0..6], &NEXT_HOP_MAC, "destination MAC = next hop");
        assert_eq!(&out[6..12], &OUT0_MAC, "source MAC = egress interface");
        let (hdr, _) = etherparse::Ipv4Header::from_slice(&out[14..]).expect("IPv4 header");
        assert_eq!(hdr.time_to_live, 63);
        assert_eq!(
            hdr.header_checksum,
            hdr.calc_header_checksum(),
            "checksum updated"
        );
        assert_eq!(ipv4_checksum(&out[14..34]), 0);
        assert_eq!(&out[34..], &frame[34..], "payload untouched");
        // A checksum whose update carries (0xffff - 0x0100 < check): RFC 1624's corner.
        let mut f2 = v4([10, 1, 0, 2], [10, 9, 0, 5], 64, 17, &udp(DPORT));
        for id in 0u16..=u16::MAX {
            f2[18..20].copy_from_slice(&id.to_be_bytes());
            f2[24..26].fill(0);
            let sum = ipv4_checksum(&f2[14..34]);
            if sum >= 0xff00 {
                f2[24..26].copy_from_slice(&sum.to_be_bytes());
                break;
            }
        }
        let (verdict, out2) = run(prog, &f2);
        assert_eq!(verdict, XDP_REDIRECT);
        let (hdr, _) = etherparse::Ipv4Header::from_slice(&out2[14..]).unwrap();
        assert_eq!(
            hdr.header_checksum,
            hdr.calc_header_checksum(),
            "carry case"
        );

        // IPv6: hop limit - 1.
        let frame6 = v6("fd01::2", "fd09::5", 64, 17, &udp(DPORT));
        let (verdict, out6) = run(prog, &frame6);
        assert_eq!(verdict, XDP_REDIRECT);
        assert_eq!(
            (&out6[0..6], &out6[6..12]),
            (&NEXT_HOP_MAC[..], &OUT0_MAC[..])
        );
        let (hdr6, _) = etherparse::Ipv6Header::from_slice(&out6[14..]).expect("IPv6 header");
        assert_eq!(hdr6.hop_limit, 63);

        // Not forwardable here: passed untouched.
        for frame in [
            v4([10, 1, 0, 2], [10, 9, 0, 5], 1, 17, &udp(DPORT)),
            v4([10, 1, 0, 2], [10, 1, 0, 1], 64, 17, &udp(DPORT)),
            v4([10, 1, 0, 2], [10, 8, 0, 5], 64, 17, &udp(DPORT)),
            eth(&[], 0x0806, &[0u8; 28]),
        ] {
            let (verdict, out) = run(prog, &frame);
            assert_eq!((verdict, &out), (XDP_PASS, &frame));
        }

        let counters: aya::maps::PerCpuArray<_, u64> = bpf
            .take_map(ebpf::fwd::COUNTERS_MAP)
            .unwrap()
            .try_into()
            .unwrap();
        let sum = |i: u32| counters.get(&i, 0).unwrap().iter().sum::<u64>();
        use ebpf::fwd::counter as fc;
        assert_eq!(sum(fc::FRAMES), 3);
        assert_eq!(sum(fc::BYTES), (2 * frame.len() + frame6.len()) as u64);
        assert_eq!(sum(fc::PASSED), 4);
    });
}

// ---- LB mode: VIP lookup ------------------------------------------------------------------

/// Writes `vip` into `loaded`'s `vips` map as `Steering::set_vip` does.
fn insert_vip(loaded: &mut Loaded, vip: VipMatch) {
    let key = vip.key().unwrap_or_else(|why| panic!("{vip}: {why}"));
    loaded
        .vips
        .insert(key.to_bytes(), 0, 0)
        .unwrap_or_else(|e| panic!("inserting {vip}: {e}"));
}

#[test]
fn lb_mode_redirects_vips_and_passes_the_rest() {
    if !privileged("lb_mode_redirects_vips_and_passes_the_rest") {
        return;
    }
    in_netns(|| {
        // A real interface, so a real AF_XDP socket can sit on its queue 0 for the second half.
        ip("link add lb0 type veth peer name lb1");
        ip("link set lb0 up");
        ip("link set lb1 up");
        let lb0 = nix::net::if_::if_nametoindex("lb0").expect("lb0 exists");
        let mut loaded = Loaded::new("lb0").expect("load steer");
        loaded
            .config
            .set(0, SteerMode::Lb.raw(), 0)
            .expect("lb mode");
        // A redirect rule for the VIP's port: lb mode must not look at rules.
        let index = ebpf::rule_index(17, 5001).unwrap();
        loaded.rules.set(index, Action::Redirect.raw(), 0).unwrap();

        let vip4: std::net::IpAddr = "10.0.0.100".parse().unwrap();
        let any4: std::net::IpAddr = "10.0.0.101".parse().unwrap();
        let vip6: std::net::IpAddr = "fd00::100".parse().unwrap();
        let vip = |address, port, proto| VipMatch {
            address,
            port,
            proto,
        };
        for v in [
            vip(vip4, DPORT, 17),
            vip(vip4, 80, 6),
            vip(any4, 0, 17), // every UDP port of 10.0.0.101
            VipMatch::icmp(vip4),
            vip(vip6, 443, 6),
            vip(vip6, 0, 17),
            VipMatch::icmp(vip6),
        ] {
            insert_vip(&mut loaded, v);
        }

        use ebpf::counter as c;
        let (src, vip4b, any4b, other4) = (
            [10, 1, 0, 2],
            [10, 0, 0, 100],
            [10, 0, 0, 101],
            [10, 0, 0, 102],
        );
        let udp4 = |dst, port| v4(src, dst, 64, 17, &udp(port));
        let tcp4 = |dst, port| v4(src, dst, 64, 6, &tcp(port, 5));
        let icmp_echo = [8u8, 0, 0, 0, 0, 0, 0, 0];
        let icmp6 = |ty: u8| [ty, 0, 0, 0, 0, 0, 0, 0];
        let v6to = |dst, nexthdr, l4: &[u8]| v6("fd01::2", dst, 64, nexthdr, l4);
        let with_frag_off = |frag_off: u16| {
            let mut f = udp4(vip4b, DPORT);
            f[20..22].copy_from_slice(&frag_off.to_be_bytes());
            f
        };
        // IPv4 with 4 bytes of options (IHL 6) to the VIP.
        let options = |l4: &[u8]| {
            let mut h = ipv4(6, 17, 0, l4);
            h[16..20].copy_from_slice(&vip4b);
            eth(&[], ETH_IP, &h)
        };
        let mut long4 = udp4(vip4b, DPORT);
        long4[16..18].copy_from_slice(&200u16.to_be_bytes()); // tot_len past the frame
        let mut short4 = options(&udp(DPORT));
        short4[16..18].copy_from_slice(&20u16.to_be_bytes()); // tot_len < IHL * 4
        let mut long6 = v6to("fd00::100", 6, &tcp(443, 5));
        long6[18..20].copy_from_slice(&200u16.to_be_bytes()); // payload_len past the frame
        let mut udp_cut = udp4(vip4b, DPORT);
        udp_cut.truncate(14 + 20 + 6);
        udp_cut[16..18].copy_from_slice(&26u16.to_be_bytes());
        // Ethernet padding after the IP packet: ignored when the headers are inside it, not
        // taken for a header when they are not.
        let mut padded = udp4(vip4b, DPORT);
        padded.extend_from_slice(&[0u8; 18]);
        let mut udp_in_padding = udp4(vip4b, DPORT);
        udp_in_padding[16..18].copy_from_slice(&20u16.to_be_bytes());
        let mut tcp6_in_padding = v6to("fd00::100", 6, &tcp(443, 5));
        tcp6_in_padding[18..20].copy_from_slice(&4u16.to_be_bytes());

        // Check a few hand-built frames with an independent parser.
        for frame in [options(&udp(DPORT)), v6to("fd00::100", 58, &icmp6(135))] {
            let parsed = etherparse::SlicedPacket::from_ethernet(&frame).expect("parses");
            assert!(
                parsed.net.is_some() && parsed.transport.is_some(),
                "{parsed:?}"
            );
        }

        // No socket on queue 0 (yet): a VIP's frames fall back to the kernel.
        let cases: Vec<(&str, Vec<u8>, u32, u32)> = vec![
            (
                "v4 UDP to VIP:port",
                udp4(vip4b, DPORT),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v4 TCP to VIP:port",
                tcp4(vip4b, 80),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v4 UDP to VIP, other port",
                udp4(vip4b, 5001),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v4 TCP to a UDP-only VIP port",
                tcp4(vip4b, DPORT),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v4 UDP, wildcard VIP, port 1",
                udp4(any4b, 1),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v4 UDP, wildcard VIP, port 65535",
                udp4(any4b, u16::MAX),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v4 TCP, UDP wildcard VIP",
                tcp4(any4b, 80),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v4 UDP to no VIP",
                udp4(other4, DPORT),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v4 ICMP to VIP",
                v4(src, vip4b, 64, 1, &icmp_echo),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v4 ICMP to wildcard VIP without an ICMP entry",
                v4(src, any4b, 64, 1, &icmp_echo),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v4 ICMP to no VIP",
                v4(src, other4, 64, 1, &icmp_echo),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v4 protocol 58 is not ICMP",
                v4(src, vip4b, 64, 58, &icmp_echo),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v4 GRE to VIP",
                v4(src, vip4b, 64, 47, &[0u8; 8]),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v4 options skipped",
                options(&udp(DPORT)),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v4 DF is not a fragment",
                with_frag_off(0x4000),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v4 first fragment (MF)",
                with_frag_off(0x2000),
                XDP_PASS,
                c::LB_KERNEL_ONLY,
            ),
            (
                "v4 later fragment",
                with_frag_off(0x0010),
                XDP_PASS,
                c::LB_KERNEL_ONLY,
            ),
            (
                "802.1Q tagged, to VIP:port",
                eth(&[DOT1Q], ETH_IP, &udp4(vip4b, DPORT)[14..]),
                XDP_PASS,
                c::LB_KERNEL_ONLY,
            ),
            (
                "802.1ad + 802.1Q tagged, to VIP:port",
                eth(
                    &[QINQ, DOT1Q],
                    ETH_IP6,
                    &v6to("fd00::100", 6, &tcp(443, 5))[14..],
                ),
                XDP_PASS,
                c::LB_KERNEL_ONLY,
            ),
            (
                "v6 TCP to VIP:port",
                v6to("fd00::100", 6, &tcp(443, 5)),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v6 TCP to VIP, other port",
                v6to("fd00::100", 6, &tcp(444, 5)),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v6 UDP, wildcard",
                v6to("fd00::100", 17, &udp(9)),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v6 UDP to no VIP",
                v6to("fd00::101", 17, &udp(9)),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v6 echo request to VIP",
                v6to("fd00::100", 58, &icmp6(128)),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v6 packet too big to VIP",
                v6to("fd00::100", 58, &icmp6(2)),
                XDP_PASS,
                c::LB_FALLBACK,
            ),
            (
                "v6 neighbour solicitation to VIP",
                v6to("fd00::100", 58, &icmp6(135)),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v6 neighbour advertisement to VIP",
                v6to("fd00::100", 58, &icmp6(136)),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v6 router solicitation to VIP",
                v6to("fd00::100", 58, &icmp6(133)),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v6 redirect to VIP",
                v6to("fd00::100", 58, &icmp6(137)),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v6 next header 1 is not ICMPv6",
                v6to("fd00::100", 1, &icmp_echo),
                XDP_PASS,
                c::LB_PASSED,
            ),
            (
                "v6 fragment header",
                v6to("fd00::100", 44, &tcp(443, 5)),
                XDP_PASS,
                c::LB_KERNEL_ONLY,
            ),
            (
                "v6 hop-by-hop header",
                v6to("fd00::100", 0, &tcp(443, 5)),
                XDP_PASS,
                c::LB_KERNEL_ONLY,
            ),
            (
                "v4 IHL 4",
                eth(&[], ETH_IP, &ipv4(4, 17, 0, &udp(DPORT))),
                XDP_PASS,
                c::MALFORMED,
            ),
            ("v4 tot_len past the frame", long4, XDP_PASS, c::MALFORMED),
            (
                "v4 tot_len shorter than the header",
                short4,
                XDP_PASS,
                c::MALFORMED,
            ),
            ("v4 UDP header cut short", udp_cut, XDP_PASS, c::MALFORMED),
            ("v4 padded frame", padded, XDP_PASS, c::LB_FALLBACK),
            (
                "v4 UDP header only in the padding",
                udp_in_padding,
                XDP_PASS,
                c::MALFORMED,
            ),
            (
                "v6 TCP header only in the padding",
                tcp6_in_padding,
                XDP_PASS,
                c::MALFORMED,
            ),
            (
                "v4 TCP data offset 4",
                v4(src, vip4b, 64, 6, &tcp(80, 4)),
                XDP_PASS,
                c::MALFORMED,
            ),
            (
                "v4 ICMP header cut short",
                v4(src, vip4b, 64, 1, &icmp_echo[..4]),
                XDP_PASS,
                c::MALFORMED,
            ),
            (
                "v6 ICMPv6 header cut short",
                v6to("fd00::100", 58, &icmp6(135)[..4]),
                XDP_PASS,
                c::MALFORMED,
            ),
            (
                "v6 payload_len past the frame",
                long6,
                XDP_PASS,
                c::MALFORMED,
            ),
            ("ARP", eth(&[], 0x0806, &[0u8; 28]), XDP_PASS, c::NOT_IP),
        ];
        let mut frames = 0;
        for (name, frame, verdict, counter) in &cases {
            expect_verdict(&mut loaded, lb0, name, frame, *verdict, *counter);
            frames += 1;
        }

        // With a socket on queue 0, a VIP's frames are redirected into it.
        let xsk = crate::xsk::XskQueue::open("lb0", 0, &Default::default())
            .expect("AF_XDP socket on lb0 queue 0");
        loaded
            .xsks
            .set(0, xsk.fd(), 0)
            .expect("register the socket");
        for (name, frame) in [
            ("v4 UDP redirected", udp4(vip4b, DPORT)),
            ("v4 TCP redirected", tcp4(vip4b, 80)),
            ("v4 wildcard redirected", udp4(any4b, 7)),
            ("v4 ICMP redirected", v4(src, vip4b, 64, 1, &icmp_echo)),
            ("v6 TCP redirected", v6to("fd00::100", 6, &tcp(443, 5))),
            ("v6 ICMPv6 redirected", v6to("fd00::100", 58, &icmp6(128))),
        ] {
            expect_verdict(
                &mut loaded,
                lb0,
                name,
                &frame,
                XDP_REDIRECT,
                c::LB_REDIRECTED,
            );
            frames += 1;
        }
        // ... and everything else still goes to the kernel.
        for (name, frame, counter) in [
            (
                "v4 no VIP, socket present",
                udp4(other4, DPORT),
                c::LB_PASSED,
            ),
            (
                "v6 ND to VIP, socket present",
                v6to("fd00::100", 58, &icmp6(135)),
                c::LB_PASSED,
            ),
            (
                "v4 fragment to VIP, socket present",
                with_frag_off(0x2000),
                c::LB_KERNEL_ONLY,
            ),
        ] {
            expect_verdict(&mut loaded, lb0, name, &frame, XDP_PASS, counter);
            frames += 1;
        }

        // A removed VIP no longer matches; the wildcard entry alone still does its job.
        loaded
            .vips
            .remove(&vip(vip4, DPORT, 17).key().unwrap().to_bytes())
            .unwrap();
        expect_verdict(
            &mut loaded,
            lb0,
            "removed VIP",
            &udp4(vip4b, DPORT),
            XDP_PASS,
            c::LB_PASSED,
        );
        frames += 1;

        assert_eq!(
            read_counters(&loaded.counters).unwrap().total(),
            frames,
            "every frame counted exactly once"
        );
    });
}

#[test]
fn vips_set_list_remove_and_full_map() {
    if !privileged("vips_set_list_remove_and_full_map") {
        return;
    }
    in_netns(|| {
        let mut s = Steering::load_and_attach("lo", XdpMode::Skb).unwrap();
        s.set_mode(SteerMode::Lb).unwrap();
        assert_eq!(s.mode(), SteerMode::Lb);
        assert_eq!(s.config.get(&0, 0).unwrap(), ebpf::MODE_LB);
        assert_eq!(s.vips().unwrap(), []);

        let v4: std::net::IpAddr = "10.0.0.100".parse().unwrap();
        let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        let vip = |address, port, proto| VipMatch {
            address,
            port,
            proto,
        };
        s.set_vip(vip(v6, 443, 6)).unwrap();
        s.set_vip(vip(v4, 80, 6)).unwrap();
        s.set_vip(vip(v4, 0, 17)).unwrap();
        s.set_vip(VipMatch::icmp(v4)).unwrap();
        s.set_vip(VipMatch::icmp(v6)).unwrap();
        // Again: no change, no error.
        s.set_vip(vip(v4, 80, 6)).unwrap();
        assert_eq!(
            s.vips().unwrap(),
            [
                VipMatch::icmp(v4),
                vip(v4, 0, 17),
                vip(v4, 80, 6),
                VipMatch::icmp(v6),
                vip(v6, 443, 6),
            ]
        );

        assert!(s.remove_vip(vip(v4, 80, 6)).unwrap());
        assert!(!s.remove_vip(vip(v4, 80, 6)).unwrap());
        assert!(
            !s.remove_vip(vip(v4, 80, 17)).unwrap(),
            "proto is part of the key"
        );
        assert!(
            !s.remove_vip(vip(v4, 0, 47)).unwrap(),
            "unmatchable: never there"
        );
        assert_eq!(s.vips().unwrap().len(), 4);

        let err = s.set_vip(vip(v4, 0, 58)).unwrap_err();
        assert!(
            matches!(&err, SteerError::UnmatchableVip { iface, .. } if iface == "lo"),
            "{err:?}"
        );
        assert!(err.to_string().contains("10.0.0.100:0/icmpv6"), "{err}");

        // Fill the map: the next new VIP is refused with the limit named; replacing one that
        // is there still works.
        let room = ebpf::LB_MAX_VIPS as usize - s.vips().unwrap().len();
        let filler = |i: usize| {
            vip(
                std::net::Ipv4Addr::from(0x0a01_0000 + i as u32).into(),
                53,
                17,
            )
        };
        for i in 0..room {
            s.set_vip(filler(i)).unwrap();
        }
        assert_eq!(s.vips().unwrap().len(), ebpf::LB_MAX_VIPS as usize);
        let err = s.set_vip(filler(room)).unwrap_err();
        match &err {
            SteerError::VipsFull {
                iface, vip, limit, ..
            } => assert_eq!((iface.as_str(), *vip, *limit), ("lo", filler(room), 4096)),
            other => panic!("expected VipsFull, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("full") && msg.contains("4096") && msg.contains("LB_MAX_VIPS"),
            "{msg}"
        );
        s.set_vip(filler(0)).unwrap();
        s.set_vip(vip(v4, 0, 17)).unwrap();
        for i in 0..room {
            assert!(s.remove_vip(filler(i)).unwrap());
        }
        assert_eq!(s.vips().unwrap().len(), 4);
    });
}

#[test]
fn lb_mode_on_lo_fails_open() {
    if !privileged("lb_mode_on_lo_fails_open") {
        return;
    }
    in_netns(|| {
        let mut s = Steering::load_and_attach("lo", XdpMode::Skb).unwrap();
        s.set_mode(SteerMode::Lb).unwrap();
        let (rx, tx, port) = udp_pair();
        assert!(
            arrives(&rx, &tx, port, b"not a vip"),
            "non-VIP datagram lost"
        );
        let c1 = s.counters().unwrap();
        assert!(c1.lb_passed >= 1, "{c1:?}");
        assert_eq!(c1.lb_redirected + c1.lb_fallback, 0, "{c1:?}");

        // A VIP, but no socket on queue 0: the kernel still gets it.
        s.set_vip(VipMatch {
            address: "127.0.0.1".parse().unwrap(),
            port,
            proto: 17,
        })
        .unwrap();
        assert!(
            arrives(&rx, &tx, port, b"vip"),
            "VIP datagram without socket lost"
        );
        let c2 = s.counters().unwrap();
        assert!(c2.lb_fallback >= 1, "{c2:?}");
        assert_eq!(c2.lb_redirected, 0, "{c2:?}");
        assert_eq!(
            c2.passed + c2.redirected + c2.redirect_fallback + c2.fwd_fallback,
            0,
            "other modes' counters untouched: {c2:?}"
        );
    });
}

#[test]
fn steering_set_applies_vips_to_every_port() {
    if !privileged("steering_set_applies_vips_to_every_port") {
        return;
    }
    in_netns(|| {
        ip("link add lb0 type veth peer name lb1");
        ip("link set lb0 up");
        ip("link set lb1 up");
        let mut set = SteeringSet::attach(&["lb0".into(), "lb1".into()], XdpMode::Skb).unwrap();
        set.set_mode(SteerMode::Lb).unwrap();
        let vip = VipMatch {
            address: "fd00::1".parse().unwrap(),
            port: 0,
            proto: 6,
        };
        set.set_vip(vip).unwrap();
        set.set_vip(VipMatch::icmp(vip.address)).unwrap();
        let want = [vip, VipMatch::icmp(vip.address)]; // (port, proto) order: 0/6 < 0/58
        assert_eq!(set.vips().unwrap(), want);
        for i in 0..set.len() {
            let port = set.port_mut(i);
            assert_eq!(port.mode(), SteerMode::Lb);
            assert_eq!(port.vips().unwrap(), want, "port {i}");
        }
        assert!(set.remove_vip(vip).unwrap());
        assert!(!set.remove_vip(vip).unwrap());
        for i in 0..set.len() {
            assert_eq!(
                set.port_mut(i).vips().unwrap(),
                [VipMatch::icmp(vip.address)]
            );
        }
    });
}
