//! Tests of the table over snapshots built from rtnetlink messages (as the mirror receives them),
//! and one over a real kernel in a throwaway network namespace.

use super::*;
use crate::control::fib_updater::FibUpdater;
use crate::control::mirror::Snapshot;
use crate::testmsg::{self, LOCAL, MAIN, addr, ip, mac, neigh, route};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::sync::Arc;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Interface `index`, MAC `02:00:00:00:00:<index>`, MTU `1400 + index`.
fn link(index: u32, admin_up: bool, carrier: bool) -> RouteNetlinkMessage {
    testmsg::link(index, 1400 + index, admin_up, carrier)
}

fn unicast(dst: &str, metric: u32, gw: Option<&str>, oif: u32) -> RouteNetlinkMessage {
    route(MAIN, RouteType::Unicast, dst, metric, &[(gw, oif, 0)])
}

fn fwd(port: u32, dst_mac: u8) -> Lookup {
    Lookup::Forward(Hop {
        port_ifindex: port,
        dst_mac: mac(dst_mac),
        src_mac: mac(port as u8),
        mtu: 1400 + port,
    })
}

/// Ports 2 and 3 up; 4 up but not a port. Neighbours: 10.0.0.1 (MAC ..:11) and fe80::1 (..:61)
/// on 2, 10.0.1.1 (..:12) and fe80::2 (..:62) on 3, 10.0.2.1 (..:13) on 4.
fn base() -> Vec<RouteNetlinkMessage> {
    use NeighbourState::Reachable;
    vec![
        link(2, true, true),
        link(3, true, true),
        link(4, true, true),
        neigh(2, "10.0.0.1", Reachable, 0x11),
        neigh(3, "10.0.1.1", Reachable, 0x12),
        neigh(4, "10.0.2.1", Reachable, 0x13),
        neigh(2, "fe80::1", Reachable, 0x61),
        neigh(3, "fe80::2", Reachable, 0x62),
    ]
}

fn fib_of(extra: Vec<RouteNetlinkMessage>) -> Fib {
    let mut msgs = base();
    msgs.extend(extra);
    Fib::from_snapshot(&Snapshot::from_messages(msgs), &[2, 3])
}

#[test]
fn lpm_v4_overlapping_prefixes_metrics_and_default() {
    use NeighbourState::Reachable;
    let f = fib_of(vec![
        unicast("0.0.0.0/0", 0, Some("10.0.0.1"), 2),
        unicast("10.1.0.0/16", 100, Some("10.0.0.1"), 2),
        unicast("10.1.0.0/16", 50, Some("10.0.1.1"), 3),
        unicast("10.1.2.0/24", 0, None, 2),
        unicast("10.1.2.128/25", 0, Some("10.0.1.1"), 3),
        neigh(2, "10.1.2.7", Reachable, 0x27),
    ]);
    assert_eq!(f.lookup_v4(v4("192.0.2.1"), 0), fwd(2, 0x11), "default");
    assert_eq!(
        f.lookup_v4(v4("10.1.9.9"), 0),
        fwd(3, 0x12),
        "/16, metric 50 wins"
    );
    assert_eq!(
        f.lookup_v4(v4("10.1.2.7"), 0),
        fwd(2, 0x27),
        "/24 on-link: the destination is the next hop"
    );
    assert_eq!(f.lookup_v4(v4("10.1.2.200"), 0), fwd(3, 0x12), "/25");
    assert_eq!(
        f.lookup_v4(v4("10.1.2.8"), 0),
        Lookup::NoNeighbour {
            ifindex: 2,
            next_hop: ip("10.1.2.8")
        }
    );
    assert_eq!(f.lookup(ip("10.1.9.9"), 0), fwd(3, 0x12));
    assert_eq!(f.len(), 4, "two routes of one prefix are one entry");
}

#[test]
fn lpm_v6_overlapping_prefixes_metrics_and_default() {
    use NeighbourState::Reachable;
    let f = fib_of(vec![
        unicast("::/0", 1024, Some("fe80::1"), 2),
        unicast("2001:db8::/32", 1024, Some("fe80::1"), 2),
        unicast("2001:db8::/32", 256, Some("fe80::2"), 3),
        unicast("2001:db8:1::/64", 256, None, 2),
        neigh(2, "2001:db8:1::5", Reachable, 0x55),
    ]);
    assert_eq!(f.lookup_v6(v6("2a00::1"), 0), fwd(2, 0x61));
    assert_eq!(f.lookup_v6(v6("2001:db8:2::1"), 0), fwd(3, 0x62));
    assert_eq!(f.lookup_v6(v6("2001:db8:1::5"), 0), fwd(2, 0x55));
    assert_eq!(
        f.lookup_v6(v6("2001:db8:1::6"), 0),
        Lookup::NoNeighbour {
            ifindex: 2,
            next_hop: ip("2001:db8:1::6")
        }
    );
    // IPv4 has no route here.
    assert_eq!(f.lookup_v4(v4("10.0.0.1"), 0), Lookup::NoRoute);
}

#[test]
fn route_kinds_and_the_local_table() {
    let f = fib_of(vec![
        unicast("0.0.0.0/0", 0, Some("10.0.0.1"), 2),
        unicast("10.0.0.0/24", 0, None, 2),
        route(LOCAL, RouteType::Local, "10.0.0.9/32", 0, &[(None, 2, 0)]),
        route(
            LOCAL,
            RouteType::Broadcast,
            "10.0.0.255/32",
            0,
            &[(None, 2, 0)],
        ),
        route(LOCAL, RouteType::Local, "127.0.0.0/8", 0, &[(None, 1, 0)]),
        route(
            LOCAL,
            RouteType::Local,
            "2001:db8::9/128",
            0,
            &[(None, 2, 0)],
        ),
        route(MAIN, RouteType::BlackHole, "10.66.0.0/16", 0, &[]),
        route(MAIN, RouteType::Unreachable, "10.67.0.0/16", 0, &[]),
        route(MAIN, RouteType::Prohibit, "10.68.0.0/16", 0, &[]),
        route(
            MAIN,
            RouteType::Unreachable,
            "2001:db8:67::/48",
            1024,
            &[(None, 1, 0)],
        ),
        unicast("2001:db8::/32", 1024, Some("fe80::1"), 2),
    ]);
    assert_eq!(
        f.lookup_v4(v4("10.0.0.9"), 0),
        Lookup::Local,
        "local beats main /24"
    );
    assert_eq!(f.lookup_v4(v4("10.0.0.255"), 0), Lookup::Local, "broadcast");
    assert_eq!(
        f.lookup_v4(v4("127.0.0.1"), 0),
        Lookup::Local,
        "loopback, link 1 unknown"
    );
    assert_eq!(f.lookup_v4(v4("255.255.255.255"), 0), Lookup::Local);
    assert_eq!(f.lookup_v4(v4("224.0.0.5"), 0), Lookup::Local, "multicast");
    assert_eq!(f.lookup_v4(v4("10.66.1.1"), 0), Lookup::Blackhole);
    assert_eq!(f.lookup_v4(v4("10.67.1.1"), 0), Lookup::Unreachable);
    assert_eq!(f.lookup_v4(v4("10.68.1.1"), 0), Lookup::Prohibited);
    assert_eq!(f.lookup_v6(v6("2001:db8::9"), 0), Lookup::Local);
    assert_eq!(
        f.lookup_v6(v6("2001:db8:67::1"), 0),
        Lookup::Unreachable,
        "IPv6 unreachable routes come through lo"
    );
    assert_eq!(f.lookup_v6(v6("ff02::1"), 0), Lookup::Local, "multicast");
    assert_eq!(f.lookup_v6(v6("fe80::1"), 0), Lookup::Local, "link-local");
    assert_eq!(f.lookup_v6(v6("2001:db8::8"), 0), fwd(2, 0x61));
    assert_eq!(f.lookup_v6(v6("2a00::1"), 0), Lookup::NoRoute);

    let empty = Fib::from_snapshot(&Snapshot::default(), &[]);
    assert!(empty.is_empty());
    assert_eq!(empty.lookup(ip("10.0.0.1"), 7), Lookup::NoRoute);
}

/// Port of a forwarded lookup.
fn port(l: Lookup) -> u32 {
    match l {
        Lookup::Forward(h) => h.port_ifindex,
        other => panic!("not forwarded: {other:?}"),
    }
}

#[test]
fn ecmp_follows_the_weights_and_is_stable_per_flow() {
    // Weight 1 via port 2, weight 3 via port 3.
    let f = fib_of(vec![route(
        MAIN,
        RouteType::Unicast,
        "10.8.0.0/16",
        0,
        &[(Some("10.0.0.1"), 2, 0), (Some("10.0.1.1"), 3, 2)],
    )]);
    const N: u32 = 100_000;
    // Sequential hashes, as a weak caller might pass: the lookup mixes them.
    let on_3 = (0..N)
        .filter(|&h| port(f.lookup_v4(v4("10.8.0.1"), h)) == 3)
        .count() as f64;
    let share = on_3 / f64::from(N);
    assert!(
        (share - 0.75).abs() < 0.01,
        "share on the weight-3 hop: {share}"
    );
    for h in [0, 1, 0xdead_beef, u32::MAX] {
        let a = f.lookup_v4(v4("10.8.0.1"), h);
        assert_eq!(a, f.lookup_v4(v4("10.8.99.1"), h), "the hash alone picks");
        assert_eq!(a, f.lookup_v4(v4("10.8.0.1"), h), "stable");
    }

    // IPv6, equal weights, three hops (one on-link).
    let f = fib_of(vec![
        route(
            MAIN,
            RouteType::Unicast,
            "2001:db8::/32",
            1024,
            &[
                (Some("fe80::1"), 2, 0),
                (Some("fe80::2"), 3, 0),
                (None, 2, 0),
            ],
        ),
        neigh(2, "2001:db8::77", NeighbourState::Stale, 0x77),
    ]);
    let mut seen = std::collections::BTreeMap::new();
    for h in 0..30_000u32 {
        *seen
            .entry(match f.lookup_v6(v6("2001:db8::77"), h) {
                Lookup::Forward(hop) => hop.dst_mac.0[5],
                other => panic!("{other:?}"),
            })
            .or_insert(0u32) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.values().all(|&n| (9_000..11_000).contains(&n)),
        "{seen:?}"
    );
}

#[test]
fn ecmp_leaves_out_a_hop_whose_link_is_down() {
    let hops = [(Some("10.0.0.1"), 2, 0), (Some("10.0.1.1"), 3, 0)];
    let f = fib_of(vec![
        route(MAIN, RouteType::Unicast, "10.8.0.0/16", 0, &hops),
        link(2, true, false),
    ]);
    assert!((0..1000).all(|h| port(f.lookup_v4(v4("10.8.0.1"), h)) == 3));
}

#[test]
fn neighbour_states() {
    use NeighbourState as S;
    let usable = [
        S::Reachable,
        S::Stale,
        S::Delay,
        S::Probe,
        S::Permanent,
        S::Noarp,
    ];
    let unusable = [S::Incomplete, S::Failed, S::None];
    for (i, st) in usable.iter().chain(&unusable).enumerate() {
        let gw = format!("10.0.0.{}", 100 + i);
        let f = fib_of(vec![
            unicast("10.9.0.0/16", 0, Some(&gw), 2),
            neigh(2, &gw, *st, 0x40),
        ]);
        let want = if i < usable.len() {
            fwd(2, 0x40)
        } else {
            Lookup::NoNeighbour {
                ifindex: 2,
                next_hop: ip(&gw),
            }
        };
        assert_eq!(f.lookup_v4(v4("10.9.0.1"), 0), want, "{st:?}");
    }
    // An entry without a MAC is not usable, whatever its state.
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = 2;
    m.header.state = S::Stale;
    m.attributes = vec![NeighbourAttribute::Destination(NeighbourAddress::Inet(v4(
        "10.0.0.99",
    )))];
    let f = fib_of(vec![
        unicast("10.9.0.0/16", 0, Some("10.0.0.99"), 2),
        RouteNetlinkMessage::NewNeighbour(m),
    ]);
    assert!(matches!(
        f.lookup_v4(v4("10.9.0.1"), 0),
        Lookup::NoNeighbour { .. }
    ));
    // Neighbours are per interface.
    assert_eq!(f.neighbour(2, ip("10.0.0.1")), Some(mac(0x11)));
    assert_eq!(f.neighbour(3, ip("10.0.0.1")), None);
}

#[test]
fn link_down_fails_over_to_the_next_route() {
    let routes = || {
        vec![
            unicast("0.0.0.0/0", 0, Some("10.0.2.1"), 4),
            unicast("10.5.0.0/16", 10, Some("10.0.0.1"), 2),
            unicast("10.5.0.0/16", 20, Some("10.0.1.1"), 3),
            unicast("2001:db8::/32", 10, Some("fe80::1"), 2),
            unicast("2001:db8::/32", 20, Some("fe80::2"), 3),
        ]
    };
    let f = fib_of(routes());
    assert_eq!(f.lookup_v4(v4("10.5.0.1"), 0), fwd(2, 0x11));
    assert_eq!(f.lookup_v6(v6("2001:db8::1"), 0), fwd(2, 0x61));
    for (admin, carrier) in [(true, false), (false, true), (false, false)] {
        let mut msgs = routes();
        msgs.push(link(2, admin, carrier));
        let f = fib_of(msgs);
        assert_eq!(
            f.lookup_v4(v4("10.5.0.1"), 0),
            fwd(3, 0x12),
            "{admin} {carrier}"
        );
        assert_eq!(f.lookup_v6(v6("2001:db8::1"), 0), fwd(3, 0x62));
    }
    // Both down: a shorter prefix (the default, through a link that is not a port).
    let mut msgs = routes();
    msgs.extend([link(2, false, false), link(3, true, false)]);
    let f = fib_of(msgs);
    assert_eq!(
        f.lookup_v4(v4("10.5.0.1"), 0),
        Lookup::NotOurPort { ifindex: 4 }
    );
    assert_eq!(f.lookup_v6(v6("2001:db8::1"), 0), Lookup::NoRoute);
    // A next hop through a link the snapshot does not know is unusable too.
    let f = fib_of(vec![unicast("10.5.0.0/16", 0, Some("10.0.0.1"), 42)]);
    assert_eq!(f.lookup_v4(v4("10.5.0.1"), 0), Lookup::NoRoute);
}

#[test]
fn not_our_port() {
    let f = fib_of(vec![
        unicast("10.7.0.0/16", 0, Some("10.0.2.1"), 4),
        unicast("10.6.0.0/16", 0, Some("10.0.0.1"), 2),
    ]);
    assert_eq!(
        f.lookup_v4(v4("10.7.0.1"), 0),
        Lookup::NotOurPort { ifindex: 4 }
    );
    assert!(f.is_port(2) && f.is_port(3) && !f.is_port(4));
    // A port without an Ethernet address cannot take a rewritten frame.
    let mut no_mac = LinkMessage::default();
    no_mac.header.index = 2;
    no_mac.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
    no_mac.attributes = vec![LinkAttribute::Mtu(1500)];
    let f = fib_of(vec![
        RouteNetlinkMessage::NewLink(no_mac),
        unicast("10.6.0.0/16", 0, Some("10.0.0.1"), 2),
    ]);
    assert_eq!(
        f.lookup_v4(v4("10.6.0.1"), 0),
        Lookup::NotOurPort { ifindex: 2 }
    );
}

#[test]
fn interface_addresses_for_icmp_errors() {
    let f = fib_of(vec![
        addr(2, "10.0.0.5", 24, true),
        addr(2, "10.0.0.9", 24, false),
        addr(2, "10.0.0.7", 24, true),
        addr(3, "10.0.1.5", 24, true),
        addr(2, "fe80::9", 64, false),
        addr(2, "2001:db8::9", 64, false),
        addr(3, "fe80::3", 64, false),
        addr(1, "::1", 128, false),
    ]);
    assert_eq!(
        f.ipv4_of(2),
        Some(v4("10.0.0.9")),
        "the primary, not a lower secondary"
    );
    assert_eq!(
        f.ipv4_of(3),
        Some(v4("10.0.1.5")),
        "only a secondary: better than none"
    );
    assert_eq!(f.ipv4_of(4), None);
    assert_eq!(f.ipv6_global_of(2), Some(v6("2001:db8::9")));
    assert_eq!(f.ipv6_link_local_of(2), Some(v6("fe80::9")));
    assert_eq!(f.ipv6_global_of(3), None);
    assert_eq!(f.ipv6_link_local_of(3), Some(v6("fe80::3")));
    assert_eq!(f.ipv6_global_of(1), None, "loopback is not global");
}

#[test]
fn a_reader_keeps_its_table_across_a_swap() {
    let old = fib_of(vec![unicast("10.5.0.0/16", 0, Some("10.0.0.1"), 2)]);
    let handle = FibHandle::new(old);
    let held: Arc<Fib> = handle.load_full();
    let guard = handle.load();
    handle.store(fib_of(vec![unicast("10.5.0.0/16", 0, Some("10.0.1.1"), 3)]));
    // Both the Arc and the per-batch guard still see the table they loaded.
    assert_eq!(held.lookup_v4(v4("10.5.0.1"), 0), fwd(2, 0x11));
    assert_eq!(guard.lookup_v4(v4("10.5.0.1"), 0), fwd(2, 0x11));
    drop(guard);
    assert_eq!(handle.load().lookup_v4(v4("10.5.0.1"), 0), fwd(3, 0x12));
    let other = handle.clone();
    other.store(Fib::default());
    assert!(handle.load().is_empty(), "clones share one slot");
    assert_eq!(held.lookup_v4(v4("10.5.0.1"), 0), fwd(2, 0x11));
}

/// A real kernel: a fresh network namespace with two veth interfaces as the engine's ports, a
/// third as someone else's, routes added with `ip` (netlink), then a link taken down.
#[test]
fn from_a_real_kernel_with_live_updates() {
    use std::process::Command;
    use std::time::{Duration, Instant};
    if !nix::unistd::geteuid().is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("from_a_real_kernel_with_live_updates needs root and CI=true forbids skipping");
        }
        eprintln!("skipping from_a_real_kernel_with_live_updates: needs root (CAP_NET_ADMIN)");
        return;
    }
    fn sh(args: &str) {
        // Test-only: the library never shells out.
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
    fn wait(up: &FibUpdater, what: &str, dst: &str, want: impl Fn(Lookup) -> bool) -> Duration {
        let t = Instant::now();
        loop {
            let got = up.handle().load().lookup(dst.parse().unwrap(), 0);
            if want(got) {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{what}: {dst} still gives {got:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        sh("link set dev lo up");
        for (name, mac) in [("p0", "02:00:00:00:aa:00"), ("p1", "02:00:00:00:aa:01"), ("x0", "02:00:00:00:aa:02")] {
            sh(&format!("link add {name} address {mac} type veth peer name {name}-peer"));
            sh(&format!("link set dev {name} up"));
            sh(&format!("link set dev {name}-peer up"));
        }
        sh("addr add 10.0.0.2/24 dev p0");
        sh("addr add 10.0.1.2/24 dev p1");
        sh("addr add 10.0.2.2/24 dev x0");
        sh("neigh add 10.0.0.1 lladdr 02:00:00:00:bb:00 dev p0 nud permanent");
        sh("neigh add 10.0.1.1 lladdr 02:00:00:00:bb:01 dev p1 nud permanent");

        let mirror = crate::control::mirror::Mirror::start().expect("mirror");
        let snap = mirror.snapshot();
        let idx = |n: &str| snap.link_by_name(n).unwrap().index;
        let (p0, p1, x0) = (idx("p0"), idx("p1"), idx("x0"));
        let down: Arc<[std::sync::atomic::AtomicBool]> =
            (0..2).map(|_| std::sync::atomic::AtomicBool::new(true)).collect();
        let up = FibUpdater::spawn(mirror.watch(), vec![p0, p1], Some(down.clone()))
            .expect("updater");
        let is_down = |i: usize| down[i].load(std::sync::atomic::Ordering::Relaxed);
        assert!(!is_down(0) && !is_down(1), "both ports run: flags cleared with the first table");
        let fib = up.handle().load_full();
        assert_eq!(fib.lookup(ip("10.0.0.2"), 0), Lookup::Local, "own address");
        assert_eq!(fib.ipv4_of(p0), Some(v4("10.0.0.2")));
        assert_eq!(fib.lookup(ip("10.9.0.1"), 0), Lookup::NoRoute);

        sh("route add 10.9.0.0/16 via 10.0.0.1 dev p0 metric 10");
        sh("route add 10.9.0.0/16 via 10.0.1.1 dev p1 metric 20");
        sh("route add 10.10.0.0/16 nexthop via 10.0.0.1 dev p0 weight 1 nexthop via 10.0.1.1 dev p1 weight 3");
        sh("route add 10.11.0.0/16 via 10.0.2.1 dev x0");
        sh("route add blackhole 10.12.0.0/16");
        let hop = |port, last| Lookup::Forward(Hop {
            port_ifindex: port,
            dst_mac: MacAddr([2, 0, 0, 0, 0xbb, last]),
            src_mac: MacAddr([2, 0, 0, 0, 0xaa, last]),
            mtu: 1500,
        });
        let t = wait(&up, "route added", "10.9.0.1", |l| l == hop(p0, 0));
        eprintln!("a route add reached the table in {t:?}");
        wait(&up, "blackhole", "10.12.0.1", |l| l == Lookup::Blackhole);
        let f = up.handle().load_full();
        assert_eq!(f.lookup(ip("10.11.0.1"), 0), Lookup::NotOurPort { ifindex: x0 });
        assert_eq!(
            f.lookup(ip("10.0.0.77"), 0),
            Lookup::NoNeighbour { ifindex: p0, next_hop: ip("10.0.0.77") }
        );
        let on_p1 = (0..4000u32)
            .filter(|&h| f.lookup(ip("10.10.0.1"), h) == hop(p1, 1))
            .count();
        assert!((2700..3300).contains(&on_p1), "weight 3 of 4 on p1: {on_p1}/4000");

        // Carrier loss on p0 (its peer goes down; the kernel keeps the routes): the metric-20
        // route over p1 takes over, and the multipath route uses p1 alone.
        sh("link set dev p0-peer down");
        let t = wait(&up, "failover", "10.9.0.1", |l| l == hop(p1, 1));
        eprintln!("a link down reached the table in {t:?}");
        let f = up.handle().load_full();
        assert!((0..100u32).all(|h| f.lookup(ip("10.10.0.1"), h) == hop(p1, 1)));
        assert!(is_down(0) && !is_down(1), "p0's flag set with the table that left it out");
        assert!(up.builds() > 1 && up.generation() == mirror.generation());
        up.stop().unwrap();
        mirror.stop().unwrap();
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
}
