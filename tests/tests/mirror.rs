//! The rtnetlink mirror follows the kernel: addresses, neighbours and routes added and deleted in
//! the engine namespace show up in the snapshot within 1 s, and link flaps, MTU changes and
//! deletion arrive as link events. Events the kernel drops (`ENOBUFS`: a burst of 500 address
//! deletions, or of 10,000 route changes, against the smallest event buffer) make the mirror
//! re-dump, and it ends equal to the kernel.

use sluice::control::mirror::{LinkEvent, LinkEventKind, Mirror, MirrorHandle, Snapshot};
use sluice_testbed::{MacAddr, Route, TestBed, VethOpts, require_root};
use std::net::IpAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(1);

/// Poll the snapshot until `cond` holds; panic with `what` after [`WITHIN`].
fn wait_for(m: &MirrorHandle, what: &str, cond: impl Fn(&Snapshot) -> bool) {
    let start = Instant::now();
    while !cond(&m.snapshot()) {
        assert!(start.elapsed() < WITHIN, "not within {WITHIN:?}: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The next event for `ifindex` must be `kind`, within [`WITHIN`].
fn expect_event(rx: &Receiver<LinkEvent>, ifindex: u32, kind: LinkEventKind) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no {kind:?} event within {WITHIN:?}: {e}"));
        if e.ifindex == ifindex {
            assert_eq!(e.kind, kind, "{e:?}");
            return;
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn mirror_follows_the_kernel() {
    if !require_root("mirror_follows_the_kernel") {
        return;
    }
    let bed = TestBed::pair(VethOpts::default()).expect("test bed");
    let ns = bed.engine().ns();
    let iface = bed.engine().iface();
    let ifindex = bed.engine().ifindex();
    // Started from a thread inside the namespace, so the mirror thread lives there too.
    let m = ns.run(Mirror::start).unwrap().expect("start mirror");
    let rx = m.events();

    let snap = m.snapshot();
    let link = snap
        .link_by_name(iface)
        .expect("the bed's link is in the first dump");
    assert_eq!(link.index, ifindex);
    assert!(link.is_running());
    assert_eq!(link.mac.map(|m| m.0), Some(bed.engine().mac().0));
    let mtu = link.mtu;
    assert!(
        snap.neighbour(ifindex, bed.peer().ipv4().into()).is_some(),
        "the bed's static neighbour is in the first dump"
    );

    // Add, then see.
    let addr = ip("10.88.0.1");
    let nb4 = ip("10.77.0.9");
    let nb6 = ip("fd00:77::9");
    let mac = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let r4 = Route::via(ip("10.99.0.0"), 16, bed.peer().ipv4().into());
    let r6 = Route::via(ip("fd00:99::"), 64, bed.peer().ipv6().into());
    ns.add_address(iface, addr, 24).unwrap();
    ns.add_neighbour(iface, nb4, mac).unwrap();
    ns.add_neighbour(iface, nb6, mac).unwrap();
    ns.add_route(&r4).unwrap();
    ns.add_route(&r6).unwrap();
    wait_for(&m, "address", |s| {
        s.addresses()
            .any(|a| a.ifindex == ifindex && a.addr == addr && a.prefix_len == 24)
    });
    for nb in [nb4, nb6] {
        wait_for(&m, "neighbour", |s| {
            s.neighbour(ifindex, nb).and_then(|n| n.mac).map(|m| m.0) == Some(mac.0)
        });
    }
    wait_for(&m, "IPv4 route", |s| {
        s.route_lookup(ip("10.99.7.7"))
            .is_some_and(|r| r.prefix_len == 16 && r.gateway == r4.via && r.oif == Some(ifindex))
    });
    wait_for(&m, "IPv6 route", |s| {
        s.route_lookup(ip("fd00:99::7"))
            .is_some_and(|r| r.prefix_len == 64 && r.gateway == r6.via)
    });

    // Delete, then see them go.
    ns.del_route(&r4).unwrap();
    ns.del_route(&r6).unwrap();
    ns.del_neighbour(iface, nb4).unwrap();
    ns.del_neighbour(iface, nb6).unwrap();
    ns.del_address(iface, addr, 24).unwrap();
    wait_for(&m, "address gone", |s| {
        s.addresses().all(|a| a.addr != addr)
    });
    wait_for(&m, "neighbours gone", |s| {
        s.neighbour(ifindex, nb4).is_none() && s.neighbour(ifindex, nb6).is_none()
    });
    wait_for(&m, "routes gone", |s| {
        s.route_lookup(ip("10.99.7.7")).is_none() && s.route_lookup(ip("fd00:99::7")).is_none()
    });

    // Link down: a Down event, and the connected IPv4 route the kernel flushes without a
    // notification is gone from the mirror too.
    let connected = bed.peer().ipv4().into();
    assert!(m.snapshot().route_lookup(connected).is_some());
    ns.set_link_up(iface, false).unwrap();
    expect_event(&rx, ifindex, LinkEventKind::Down);
    wait_for(&m, "IPv4 connected route flushed", |s| {
        s.route_lookup(connected).is_none()
    });
    ns.set_link_up(iface, true).unwrap();
    expect_event(&rx, ifindex, LinkEventKind::Up);
    wait_for(&m, "IPv4 connected route back", |s| {
        s.route_lookup(connected).is_some()
    });

    ns.set_mtu(iface, mtu - 100).unwrap();
    expect_event(
        &rx,
        ifindex,
        LinkEventKind::MtuChanged {
            old: mtu,
            new: mtu - 100,
        },
    );

    // Unregistering closes the device first, so a Down comes before the Deleted.
    ns.delete_link(iface).unwrap();
    expect_event(&rx, ifindex, LinkEventKind::Down);
    expect_event(&rx, ifindex, LinkEventKind::Deleted);
    wait_for(&m, "link gone", |s| s.link(ifindex).is_none());

    let stats = m.stats();
    assert!(stats.events > 0, "{stats:?}");
    assert_eq!(stats.redumps, 0, "{stats:?}");
    let t = Instant::now();
    m.stop().expect("mirror ran without error");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "stop took {:?}",
        t.elapsed()
    );
}

#[test]
fn lost_events_trigger_a_full_redump() {
    if !require_root("lost_events_trigger_a_full_redump") {
        return;
    }
    let bed = TestBed::pair(VethOpts::default()).expect("test bed");
    let ns = bed.engine().ns();
    let iface = bed.engine().iface();
    let ifindex = bed.engine().ifindex();
    // A tiny event buffer, then one kernel-side burst: deleting a link that carries hundreds of
    // addresses makes the kernel emit all their deletions at once, far more than the buffer
    // holds, so it reports ENOBUFS and the mirror must re-dump rather than keep stale entries.
    let m = ns
        .run(|| Mirror::start_with_event_buffer(1))
        .unwrap()
        .expect("mirror");
    let n = 500u32;
    for i in 0..n {
        let a = IpAddr::from([10, 200, (i / 250) as u8, (i % 250 + 1) as u8]);
        ns.add_address(iface, a, 32).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while m
        .snapshot()
        .addresses()
        .filter(|a| a.ifindex == ifindex)
        .count()
        < n as usize
    {
        assert!(
            Instant::now() < deadline,
            "the burst of additions never fully showed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = m.stats().redumps;
    ns.delete_link(iface).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let snap = m.snapshot();
        let gone = snap.link(ifindex).is_none() && snap.addresses().all(|a| a.ifindex != ifindex);
        if gone && m.stats().redumps > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the burst: link gone {}, stale addresses {}, stats {:?}",
            snap.link(ifindex).is_none(),
            snap.addresses().filter(|a| a.ifindex == ifindex).count(),
            m.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    m.stop().unwrap();
}

#[test]
fn route_burst_of_ten_thousand_changes_ends_equal_to_the_kernel() {
    if !require_root("route_burst_of_ten_thousand_changes_ends_equal_to_the_kernel") {
        return;
    }
    let bed = TestBed::pair(VethOpts::default()).expect("test bed");
    let ns = bed.engine().ns();
    let gw: IpAddr = bed.peer().ipv4().into();
    // A small event buffer (the kernel's minimum) so the burst overflows it for certain: the
    // mirror sees ENOBUFS and must re-dump, ending equal to the kernel's table.
    let m = ns
        .run(|| Mirror::start_with_event_buffer(1))
        .unwrap()
        .expect("mirror");
    let before = m.stats().redumps;
    let dst = |i: u32| IpAddr::from([10, 120 + (i / 65536) as u8, (i / 256 % 256) as u8, i as u8]);
    // 6,000 additions and 4,000 deletions in a tight loop: 10,000 changes, 2,000 routes stay.
    let t = Instant::now();
    for i in 0..6000 {
        ns.add_route(&Route::via(dst(i), 32, gw)).unwrap();
    }
    for i in 0..4000 {
        ns.del_route(&Route::via(dst(i * 3 / 2), 32, gw)).unwrap();
    }
    eprintln!("10,000 route changes in {:?}", t.elapsed());
    let v4 = |s: &[(IpAddr, u8, Option<IpAddr>, u32)]| {
        s.iter()
            .filter(|r| r.0.is_ipv4())
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
    };
    let kernel: Vec<_> = ns
        .routes()
        .unwrap()
        .into_iter()
        .map(|r| (r.dst, r.prefix_len, r.via, r.metric.unwrap_or(0)))
        .collect();
    let kernel = v4(&kernel);
    assert_eq!(
        kernel
            .iter()
            .filter(|r| r.1 == 32 && r.2 == Some(gw))
            .count(),
        2000
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = m.snapshot();
        let mirror: Vec<_> = snap
            .routes()
            .map(|r| (r.dst, r.prefix_len, r.gateway, r.metric))
            .collect();
        let mirror = v4(&mirror);
        if mirror == kernel && m.stats().redumps > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the burst: mirror {} IPv4 routes, kernel {}, only in the mirror {:?}, \
             only in the kernel {:?}, stats {:?}",
            mirror.len(),
            kernel.len(),
            mirror.difference(&kernel).take(5).collect::<Vec<_>>(),
            kernel.difference(&mirror).take(5).collect::<Vec<_>>(),
            m.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("mirror equal to the kernel; {:?}", m.stats());
    m.stop().unwrap();
}
