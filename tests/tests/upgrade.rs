//! Hot upgrade (`sluice run … --takeover`) on a veth pair under a steady stream of echoes:
//! the successor takes the running engine's sockets, UMEM, XDP link and control socket over;
//! the XDP program id never changes (watched throughout), the independent echo client loses
//! (almost) nothing, the old engine exits 0, the census of the new one adds up. A refused
//! takeover leaves the old engine serving.
//!
//! Then the same for `--app forward` (a router between a client and a server), `--app lb`
//! (DSR to three backends) and `--app dns`, each with `--metrics`: one request in flight at a
//! time before, during and after the hand-over, none lost; the program id unchanged; the old
//! process exits 0; the successor answers the metrics scrape on the same port; forward keeps
//! its TAP device, lb's established TCP connections keep their backends and its VIP map
//! follows the successor's file, dns answers from the zone files as the successor read them
//! and keeps serving TCP on the passed listener. Forward also under a windowed stream: every
//! frame the XDP program redirected is counted by exactly one of the two engines or dropped at
//! a socket.

mod common;

use common::*;
use sluice_testbed::dns::DnsBed;
use sluice_testbed::{
    FlowOpts, LbBed, LbBedOpts, Netns, RouterBed, RouterBedOpts, Sources, TcpSessions, TestBed,
    count_by_backend, describe_failures, require_root, udp_flows,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

const PORT: u16 = 9000;

/// The id of the XDP program attached to `iface` in `ns` (`None`: no program).
fn xdp_prog_id(ns: &Netns, iface: &str) -> Option<u64> {
    let out = ns
        .spawn(
            Command::new("ip")
                .args(["-j", "link", "show", "dev", iface])
                .stdout(std::process::Stdio::piped()),
        )
        .expect("running ip")
        .wait_with_output()
        .expect("ip output");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    v[0]["xdp"]["prog"]["id"].as_u64()
}

/// Watch the program id on the engine's interface every few milliseconds until `stop`;
/// returns every value seen (`None` included, if it was ever detached).
fn watch(bed: &TestBed, stop: &AtomicBool) -> BTreeSet<Option<u64>> {
    watch_in(bed.engine().ns(), &[bed.engine().iface()], stop)
        .into_iter()
        .map(|(_, id)| id)
        .collect()
}

/// [`watch`] on each of `ifaces` in `ns`: every (interface index, program id) seen.
fn watch_in(ns: &Netns, ifaces: &[&str], stop: &AtomicBool) -> BTreeSet<(usize, Option<u64>)> {
    let mut seen = BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        for (i, iface) in ifaces.iter().enumerate() {
            seen.insert((i, xdp_prog_id(ns, iface)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen
}

const ARGS: &[&str] = &["--udp", "9000", "--queues", "all"];

#[test]
fn takeover_under_load_loses_nothing_and_keeps_the_program() {
    if !require_root("takeover_under_load_loses_nothing_and_keeps_the_program") {
        return;
    }
    let bed = bed(2);
    let mut old = start_ready(&bed, ARGS, PORT);
    let id_before = xdp_prog_id(bed.engine().ns(), bed.engine().iface());
    assert!(id_before.is_some());
    let mut new: Option<Engine> = None;
    let stop_watch = AtomicBool::new(false);
    // A steady stream of echoes for 8 s, from an independent client in the peer namespace.
    let mut cfg = echo_cfg(&bed, false, PORT);
    cfg.flows = 16;
    cfg.window = 256;
    cfg.count = None;
    cfg.duration = Duration::from_secs(8);
    cfg.timeout = Duration::from_secs(1);
    let (s, ids, old_fin) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch(&bed, &stop_watch));
        let client = scope.spawn(|| {
            bed.peer()
                .ns()
                .run(move || {
                    let mut c = sluice_bench::echo::EchoClient::new(cfg).expect("echo client");
                    c.run(|_, _| {})
                })
                .expect("echo client in the peer namespace")
        });
        std::thread::sleep(Duration::from_secs(3));
        let mut args = ARGS.to_vec();
        args.push("--takeover");
        new = Some(Engine::start(&bed, &args));
        let (status, lines) = old.stop_with_wait(Duration::from_secs(20));
        assert!(
            status.success(),
            "old engine: {status}; stderr:\n{}",
            old.stderr_text()
        );
        let s = client.join().expect("client");
        stop_watch.store(true, Ordering::Relaxed);
        (s, watcher.join().expect("watcher"), final_json(&lines))
    });
    let mut new = new.expect("started");
    assert_eq!(
        ids,
        BTreeSet::from([id_before]),
        "the XDP program changed or detached during the upgrade"
    );
    let rate = s.sent as f64 / 8.0;
    let loss = s.lost as f64 / s.sent.max(1) as f64;
    eprintln!(
        "upgrade under load: sent {} ({rate:.0}/s), echoed {}, lost {} ({:.4}%), mismatched {}",
        s.sent,
        s.echoed,
        s.lost,
        loss * 100.0,
        s.mismatched
    );
    assert_eq!(s.mismatched, 0, "{s:?}");
    assert!(
        loss < 0.001,
        "lost {:.4}% of the echoes: {s:?}",
        loss * 100.0
    );
    // Both engines did part of the work.
    assert!(
        old_fin["total"]["rx_packets"].as_u64().unwrap() > 0,
        "{old_fin}"
    );
    wait_echo_ready(&bed, &mut new, false, PORT);
    let fin = new.stop();
    assert!(fin["total"]["rx_packets"].as_u64().unwrap() > 0, "{fin}");
    assert_census(&fin);
    assert_eq!(xdp_prog_id(bed.engine().ns(), bed.engine().iface()), None);
}

#[test]
fn refused_takeover_leaves_the_old_engine_serving() {
    if !require_root("refused_takeover_leaves_the_old_engine_serving") {
        return;
    }
    let bed = bed(1);
    let mut old = start_ready(&bed, ARGS, PORT);
    let id = xdp_prog_id(bed.engine().ns(), bed.engine().iface());
    let mut args = ARGS.to_vec();
    args.extend(["--takeover", "--frame-count", "4096"]);
    let mut new = Engine::start(&bed, &args);
    let (status, _) = new.stop_with_wait(Duration::from_secs(20));
    assert!(!status.success());
    let err = new.stderr_text();
    assert!(
        err.contains("--frame-count") && err.contains("refused"),
        "{err}"
    );
    assert!(old.is_running());
    assert_eq!(xdp_prog_id(bed.engine().ns(), bed.engine().iface()), id);
    let mut cfg = echo_cfg(&bed, false, PORT);
    cfg.count = Some(2000);
    let s = echo(&bed, cfg);
    assert_eq!((s.echoed, s.lost), (2000, 0), "{s:?}");
    assert_census(&old.stop());
}

#[test]
fn takeover_with_nobody_to_take_over_from_fails_cleanly() {
    if !require_root("takeover_with_nobody_to_take_over_from_fails_cleanly") {
        return;
    }
    let bed = bed(1);
    let mut args = ARGS.to_vec();
    args.push("--takeover");
    let mut new = Engine::start(&bed, &args);
    let (status, _) = new.stop_with_wait(Duration::from_secs(20));
    assert!(!status.success());
    let err = new.stderr_text();
    assert!(err.contains("no sluice serves"), "{err}");
    assert_eq!(xdp_prog_id(bed.engine().ns(), bed.engine().iface()), None);
}

// ---- forward, lb and dns ----

/// The metrics port every app test serves (each engine in a namespace of its own).
const METRICS_PORT: u16 = 9464;

/// Which part of a hand-over a request was sent in.
const BEFORE: u8 = 0;
const DURING: u8 = 1;
const AFTER: u8 = 2;

/// What a one-in-flight request/response load saw.
#[derive(Debug, Default)]
struct Load {
    /// Requests sent, per phase.
    sent: [u64; 3],
    /// Requests answered (correctly, as the caller's `ask` judged), per phase.
    answered: [u64; 3],
    /// Requests that got no (correct) answer in time: (phase, request number).
    lost: Vec<(u8, u64)>,
}

/// Send requests one at a time until `stop` (at most 100,000 and 120 s): `ask(i)` sends
/// request `i` and waits, bounded, for its answer; true if the right one came. Each is
/// counted in the phase it was sent in.
fn one_in_flight(phase: &AtomicU8, stop: &AtomicBool, mut ask: impl FnMut(u64) -> bool) -> Load {
    let mut load = Load::default();
    let end = Instant::now() + Duration::from_secs(120);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end && i < 100_000 {
        let p = phase.load(Ordering::Relaxed);
        load.sent[p as usize] += 1;
        if ask(i) {
            load.answered[p as usize] += 1;
        } else {
            load.lost.push((p, i));
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    load
}

/// Zero loss, and traffic in every phase.
fn assert_no_loss(load: &Load, what: &str) {
    eprintln!(
        "{what}: sent {:?} answered {:?} (before, during, after the hand-over)",
        load.sent, load.answered
    );
    assert!(
        load.lost.is_empty(),
        "{what}: {} request(s) unanswered (phase, number): {:?}; {load:?}",
        load.lost.len(),
        &load.lost[..load.lost.len().min(20)]
    );
    for (p, name) in ["before", "during", "after"].iter().enumerate() {
        assert!(
            load.answered[p] > 0,
            "{what}: no request answered {name} the hand-over: {load:?}"
        );
    }
}

/// One scrape of `/metrics` over loopback in `ns`: the whole reply.
fn scrape(ns: &Netns) -> String {
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], METRICS_PORT)),
            Duration::from_secs(5),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        Ok::<_, std::io::Error>(r)
    })
    .expect("entering the namespace")
    .unwrap_or_else(|e| panic!("scraping the metrics on port {METRICS_PORT}: {e}"))
}

/// The sum of every `sluice_rx_packets_total` sample of a scrape.
fn scraped_rx(reply: &str) -> u64 {
    reply
        .lines()
        .filter(|l| l.starts_with("sluice_rx_packets_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A scrape answered by a live engine: 200, and the counters are there.
fn assert_scrape_ok(reply: &str, what: &str) {
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("sluice_rx_packets_total"),
        "{what}: {}",
        &reply[..reply.len().min(400)]
    );
}

/// Run a hand-over of `old` in `ns` (started with `args`) under `load`: the load starts,
/// runs ~1.5 s, the successor (`args` + `--takeover`) starts, the old engine must exit 0 by
/// itself, and the load goes on ~1.5 s more. Returns the load, the old engine's final totals,
/// the program ids seen on `ifaces` throughout and the successor.
fn hand_over_under(
    ns: &Netns,
    ifaces: &[&str],
    old: &mut Engine,
    args: &[&str],
    load: impl FnOnce(&AtomicU8, &AtomicBool) -> Load + Send,
) -> (
    Load,
    serde_json::Value,
    BTreeSet<(usize, Option<u64>)>,
    Engine,
) {
    let phase = AtomicU8::new(BEFORE);
    let stop = AtomicBool::new(false);
    let stop_watch = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_in(ns, ifaces, &stop_watch));
        let client = scope.spawn(|| load(&phase, &stop));
        std::thread::sleep(Duration::from_millis(1500));
        phase.store(DURING, Ordering::Relaxed);
        let mut a = args.to_vec();
        a.push("--takeover");
        let new = Engine::start_in(ns, &a);
        let (status, lines) = old.stop_with_wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "old engine: {status}; stderr:\n{}\nsuccessor's stderr:\n{}",
            old.stderr_text(),
            new.stderr_text()
        );
        phase.store(AFTER, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        let load = client.join().expect("the load thread");
        stop_watch.store(true, Ordering::Relaxed);
        let ids = watcher.join().expect("the watcher");
        (load, final_json(&lines), ids, new)
    })
}

/// Every interface kept the one program it had before: no detach, no re-attach.
fn assert_same_programs(ids: &BTreeSet<(usize, Option<u64>)>, before: &[Option<u64>]) {
    let want: BTreeSet<(usize, Option<u64>)> = before.iter().copied().enumerate().collect();
    assert!(before.iter().all(Option::is_some), "{before:?}");
    assert_eq!(
        ids, &want,
        "the XDP program changed or detached during the upgrade"
    );
}

/// A router bed with static neighbours — every forwardable frame reaches sluice from the first
/// one (no neighbour to resolve) — and a UDP echo server on s0; the flag stops the server.
fn forward_bed_with_echo_server() -> (RouterBed, SocketAddr, Arc<AtomicBool>) {
    let bed = RouterBed::new(RouterBedOpts::default()).expect("building the router bed");
    bed.add_static_neighbours().expect("static neighbours");
    let stop_server = Arc::new(AtomicBool::new(false));
    let server: SocketAddr = (bed.s0().ipv4(), PORT).into();
    udp_echo_server(bed.server(), server, stop_server.clone());
    (bed, server, stop_server)
}

/// A UDP echo server in `ns` on `addr`, until `stop`.
fn udp_echo_server(ns: &Netns, addr: SocketAddr, stop: Arc<AtomicBool>) {
    let sock = ns.run(|| UdpSocket::bind(addr)).unwrap().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
}

/// Whether a link named `name` exists in `ns`.
fn link_exists(ns: &Netns, name: &str) -> bool {
    let name = name.to_string();
    ns.run(move || {
        let mut nl = sluice::control::netlink::Netlink::open().unwrap();
        sluice::control::link::get_link(&mut nl, &name)
            .unwrap()
            .is_some()
    })
    .unwrap()
}

#[test]
fn forward_takeover_keeps_routing_the_tap_and_the_metrics() {
    if !require_root("forward_takeover_keeps_routing_the_tap_and_the_metrics") {
        return;
    }
    let (bed, server, stop_server) = forward_bed_with_echo_server();
    let (r0, r1) = (bed.r0().iface(), bed.r1().iface());
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let args = [
        "--iface",
        r0,
        "--iface",
        r1,
        "--app",
        "forward",
        "--metrics",
        &metrics,
    ];
    let mut old = Engine::start_in(bed.router(), &args);
    old.wait_for_log("app forward on", Duration::from_secs(20));
    let before = [xdp_prog_id(bed.router(), r0), xdp_prog_id(bed.router(), r1)];
    let tap: String = format!("sk-{r0}").chars().take(15).collect();
    assert!(link_exists(bed.router(), &tap), "no TAP device {tap}");

    let sock = bed
        .client()
        .run(|| UdpSocket::bind((bed.c0().ipv4(), 0)))
        .unwrap()
        .unwrap();
    sock.connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The path answers before the load starts.
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        sock.send(b"probe").unwrap();
        if sock.recv(&mut buf).is_ok() {
            break;
        }
        assert!(Instant::now() < end, "no echo through the router");
    }
    std::thread::sleep(Duration::from_millis(300));
    while sock.recv(&mut buf).is_ok() {} // late probe echoes
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    let (load, old_fin, ids, mut new) =
        hand_over_under(bed.router(), &[r0, r1], &mut old, &args, |phase, stop| {
            one_in_flight(phase, stop, |i| {
                let msg = format!("request {i}");
                if sock.send(msg.as_bytes()).is_err() {
                    return false;
                }
                // Up to 2 s for this request's echo (skipping nothing else: one in flight).
                for _ in 0..20 {
                    if let Ok(n) = sock.recv(&mut buf) {
                        return &buf[..n] == msg.as_bytes();
                    }
                }
                false
            })
        });
    assert_no_loss(&load, "forward");
    assert_same_programs(&ids, &before);
    assert!(
        old_fin["total"]["rx_packets"].as_u64().unwrap() > 0,
        "{old_fin}"
    );
    // The TAP device outlived the old process: the successor holds it.
    assert!(link_exists(bed.router(), &tap), "TAP device {tap} gone");
    // The metrics port is the successor's now (the old process has exited).
    let reply = scrape(bed.router());
    assert_scrape_ok(&reply, "metrics after the hand-over");
    assert!(scraped_rx(&reply) > 0, "the successor forwarded nothing");

    let fin = new.stop();
    stop_server.store(true, Ordering::Relaxed);
    // After the hand-over the successor routed the requests itself, both ways, none dropped,
    // none handed to the kernel: its table was rebuilt from the kernel's before it started.
    let ports = fin["ports"].as_array().unwrap();
    let get = |p: usize, k: &str| ports[p][k].as_u64().unwrap();
    let after = load.answered[AFTER as usize];
    assert!(
        get(0, "rx_packets") >= after && get(1, "tx_packets") >= after,
        "{fin}"
    );
    assert!(
        get(1, "rx_packets") >= after && get(0, "tx_packets") >= after,
        "{fin}"
    );
    assert_eq!(fin["total"]["dropped"].as_u64(), Some(0), "{fin}");
    assert_census(&fin);
    assert_eq!(xdp_prog_id(bed.router(), r0), None);
    assert!(
        !link_exists(bed.router(), &tap),
        "TAP device {tap} left behind"
    );
}

/// Sum of `key` over the `kernel` statistics of every queue of a final JSON object.
fn kernel_stat(fin: &serde_json::Value, key: &str) -> u64 {
    fin["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["kernel"][key].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn forward_takeover_under_a_stream_accounts_for_every_frame() {
    if !require_root("forward_takeover_under_a_stream_accounts_for_every_frame") {
        return;
    }
    let (bed, server, stop_server) = forward_bed_with_echo_server();
    let (r0, r1) = (bed.r0().iface(), bed.r1().iface());
    let args = ["--iface", r0, "--iface", r1, "--app", "forward"];
    let mut old = Engine::start_in(bed.router(), &args);
    old.wait_for_log("app forward on", Duration::from_secs(20));
    let before = [xdp_prog_id(bed.router(), r0), xdp_prog_id(bed.router(), r1)];
    let cfg = sluice_bench::echo::EchoConfig {
        target: server,
        bind: (bed.c0().ipv4(), 0).into(),
        flows: 8,
        window: 64,
        count: None,
        duration: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        sizes: vec![64, 512, 1400],
    };
    // The path answers before the stream starts.
    let end = Instant::now() + Duration::from_secs(10);
    while !bed
        .client()
        .run(|| {
            let probe = cfg.clone();
            sluice_bench::echo::EchoClient::new(probe)
                .expect("echo client")
                .probe(Duration::from_millis(300))
        })
        .unwrap()
    {
        assert!(Instant::now() < end, "no echo through the router");
    }
    let mut new: Option<Engine> = None;
    let stop_watch = AtomicBool::new(false);
    let (s, ids, old_fin) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_in(bed.router(), &[r0, r1], &stop_watch));
        let client = scope.spawn(|| {
            bed.client()
                .run(move || {
                    let mut c = sluice_bench::echo::EchoClient::new(cfg).expect("echo client");
                    c.run(|_, _| {})
                })
                .expect("echo client in the client namespace")
        });
        std::thread::sleep(Duration::from_secs(2));
        let mut a = args.to_vec();
        a.push("--takeover");
        new = Some(Engine::start_in(bed.router(), &a));
        let (status, lines) = old.stop_with_wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "old engine: {status}; {}",
            old.stderr_text()
        );
        let s = client.join().expect("client");
        stop_watch.store(true, Ordering::Relaxed);
        (s, watcher.join().expect("watcher"), final_json(&lines))
    });
    let mut new = new.expect("started");
    assert_same_programs(&ids, &before);
    // Let the last echoes drain, then stop: nothing is in flight when the counters are read.
    std::thread::sleep(Duration::from_millis(500));
    let fin = new.stop();
    stop_server.store(true, Ordering::Relaxed);
    let rx = |f: &serde_json::Value| f["total"]["rx_packets"].as_u64().unwrap();
    let dropped = |f: &serde_json::Value| f["total"]["dropped"].as_u64().unwrap();
    // The program counts every frame it redirected; the two engines' receive counters and the
    // kernel's drops at the sockets (cumulative per socket, so the successor's cover both)
    // must add up to it exactly: no frame vanished between the two, none was counted twice.
    let redirected = fin["xdp"]["fwd_redirected"].as_u64().unwrap();
    let at_sockets = kernel_stat(&fin, "rx_dropped") + kernel_stat(&fin, "rx_ring_full");
    eprintln!(
        "forward stream: sent {} echoed {} lost {} mismatched {}; redirected {redirected} = \
         old rx {} + new rx {} + dropped at the sockets {at_sockets}; dropped by the engines {} + {}",
        s.sent,
        s.echoed,
        s.lost,
        s.mismatched,
        rx(&old_fin),
        rx(&fin),
        dropped(&old_fin),
        dropped(&fin)
    );
    assert_eq!(
        redirected,
        rx(&old_fin) + rx(&fin) + at_sockets,
        "frames redirected by XDP vs received by the two engines: old {old_fin}\nnew {fin}"
    );
    assert!(rx(&old_fin) > 0 && rx(&fin) > 0, "both engines forwarded");
    assert_eq!(s.mismatched, 0, "{s:?}");
    // Every datagram the client gave up on is one some counter saw dropped.
    assert!(
        s.lost <= dropped(&old_fin) + dropped(&fin) + at_sockets,
        "{} datagrams lost, not all counted as drops: {s:?}\nold {old_fin}\nnew {fin}",
        s.lost
    );
    assert_census(&fin);
}

/// A temporary file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("sluice-upgrade-{tag}-{}", std::process::id()));
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
    /// Replace the contents atomically (write + rename).
    fn replace(&self, text: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn lb_takeover_keeps_every_established_flow_on_its_backend() {
    if !require_root("lb_takeover_keeps_every_established_flow_on_its_backend") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let port = LbBed::SERVICE_PORT;
    let vip = LbBed::vip(false);
    // The VIPs (v6, protocol) of a file: IPv4 TCP and UDP in both; the old engine's file has
    // IPv6 UDP, the successor's IPv6 TCP instead (its own file applies).
    let file = |vips: &[(bool, &str)]| {
        let mut text = String::new();
        for &(v6, proto) in vips {
            let backends: Vec<String> = bed
                .backends()
                .iter()
                .map(|b| format!("{{ address = \"{}\" }}", LbBed::addr(b, v6)))
                .collect();
            text.push_str(&format!(
                "[[vip]]\naddress = \"{}\"\nport = {port}\nprotocol = \"{proto}\"\n\
                 forwarding = \"dsr\"\nhealth = \"none\"\nbackends = [ {} ]\n\n",
                LbBed::vip(v6),
                backends.join(", ")
            ));
        }
        text
    };
    let cfg = TempFile::new(
        "lb.toml",
        &file(&[(false, "tcp"), (false, "udp"), (true, "udp")]),
    );
    let target6 = SocketAddr::new(LbBed::vip(true), port);
    let answers = |proto: &str| {
        let one = Sources::Ephemeral(1);
        let quick = FlowOpts {
            timeout: Duration::from_millis(500),
            udp_sends: 2,
            batch: 1,
        };
        let r = if proto == "tcp" {
            sluice_testbed::tcp_flows(bed.client().ns(), target6, &one, &quick)
        } else {
            udp_flows(bed.client().ns(), target6, &one, &quick)
        };
        r.expect("a flow in the client namespace")[0]
            .outcome
            .is_ok()
    };
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let args = [
        "--iface",
        "lb0",
        "--app",
        "lb",
        "--lb-config",
        cfg.path(),
        "--metrics",
        &metrics,
    ];
    let ns = bed.balancer(0).ns();
    let mut old = Engine::start_in(ns, &args);
    old.wait_for_log("app lb on", Duration::from_secs(20));
    let target = SocketAddr::new(vip, port);
    let opts = FlowOpts::default();
    // Serving: a UDP flow through the VIP is answered.
    let end = Instant::now() + Duration::from_secs(20);
    while udp_flows(bed.client().ns(), target, &Sources::Ephemeral(1), &opts)
        .expect("a flow in the client namespace")[0]
        .outcome
        .is_err()
    {
        assert!(old.is_running(), "sluice exited: {}", old.stderr_text());
        assert!(Instant::now() < end, "the VIP never answered");
    }
    let before = [xdp_prog_id(ns, "lb0")];
    assert!(
        answers("udp"),
        "the old engine's IPv6 UDP VIP does not answer"
    );
    assert!(
        !answers("tcp"),
        "an IPv6 TCP VIP answers before it is configured"
    );

    // Established TCP connections (direct server return: a backend that did not open the
    // connection answers a segment of it with a reset), and UDP flows from fixed ports.
    let (mut sessions, first) =
        TcpSessions::open(bed.client().ns(), target, &Sources::Ephemeral(120), &opts)
            .expect("opening connections in the client namespace");
    assert!(
        first.iter().all(|r| r.outcome.is_ok()),
        "opening the connections: {}",
        describe_failures(&first)
    );
    let spread = count_by_backend(&first);
    assert!(
        spread.len() >= 2,
        "all connections on one backend: {spread:?}"
    );
    let pinned: BTreeMap<usize, String> = first
        .iter()
        .filter_map(|r| r.backend().map(|b| (r.id, b.to_owned())))
        .collect();
    let udp_ports = Sources::Ports((21000..21100).collect());
    let udp_before = udp_flows(bed.client().ns(), target, &udp_ports, &opts)
        .expect("udp flows in the client namespace");

    // One UDP request in flight through the VIP, from one source port: one backend.
    let sock = bed
        .client()
        .ns()
        .run(|| UdpSocket::bind(("0.0.0.0", 0)))
        .unwrap()
        .unwrap();
    sock.connect(target).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // The successor reads the file again: IPv6 UDP out, IPv6 TCP in.
    cfg.replace(&file(&[(false, "tcp"), (false, "udp"), (true, "tcp")]));
    let backend_of_load = std::sync::Mutex::new(BTreeSet::new());
    let (load, old_fin, ids, mut new) =
        hand_over_under(ns, &["lb0"], &mut old, &args, |phase, stop| {
            let mut buf = [0u8; 2048];
            one_in_flight(phase, stop, |i| {
                let msg = format!("request {i}");
                if sock.send(msg.as_bytes()).is_err() {
                    return false;
                }
                for _ in 0..20 {
                    if let Ok(n) = sock.recv(&mut buf) {
                        // "<backend> <request>"
                        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
                        return match reply.split_once(' ') {
                            Some((b, m)) if m == msg => {
                                backend_of_load.lock().unwrap().insert(b.to_owned());
                                true
                            }
                            _ => false,
                        };
                    }
                }
                false
            })
        });
    assert_no_loss(&load, "lb");
    let one = backend_of_load.into_inner().unwrap();
    assert_eq!(one.len(), 1, "one flow, one backend throughout: {one:?}");
    assert_same_programs(&ids, &before);
    assert!(
        old_fin["total"]["rx_packets"].as_u64().unwrap() > 0,
        "{old_fin}"
    );

    // Every connection opened before the hand-over goes on, on the same backend.
    let again = sessions.exchange(1);
    assert!(
        again.iter().all(|r| r.outcome.is_ok()),
        "established connections after the hand-over: {}",
        describe_failures(&again)
    );
    for r in &again {
        assert_eq!(
            r.backend(),
            pinned.get(&r.id).map(String::as_str),
            "connection {} changed backend in the hand-over",
            r.id
        );
    }
    // And every UDP flow (same source port) maps to the backend it had.
    let udp_after = udp_flows(bed.client().ns(), target, &udp_ports, &opts)
        .expect("udp flows in the client namespace");
    for (a, b) in udp_before.iter().zip(&udp_after) {
        assert!(a.outcome.is_ok() && b.outcome.is_ok(), "{a:?} / {b:?}");
        assert_eq!(a.backend(), b.backend(), "UDP flow {} moved", a.id);
    }
    drop(sessions);
    // The successor's file applies, to the table and to the XDP program's VIP map.
    assert!(
        answers("tcp"),
        "the successor's IPv6 TCP VIP does not answer"
    );
    assert!(
        !answers("udp"),
        "the old engine's IPv6 UDP VIP still answers"
    );

    let reply = scrape(ns);
    assert_scrape_ok(&reply, "metrics after the hand-over");
    assert!(scraped_rx(&reply) > 0, "the successor balanced nothing");
    let fin = new.stop();
    assert!(fin["total"]["rx_packets"].as_u64().unwrap() > 0, "{fin}");
    assert_census(&fin);
    assert_eq!(xdp_prog_id(ns, "lb0"), None);
}

#[test]
fn a_successor_that_fails_after_taking_the_fds_leaves_lb_serving() {
    if !require_root("a_successor_that_fails_after_taking_the_fds_leaves_lb_serving") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let port = LbBed::SERVICE_PORT;
    let vip = LbBed::vip(false);
    let backends: Vec<String> = bed
        .backends()
        .iter()
        .map(|b| format!("{{ address = \"{}\" }}", LbBed::addr(b, false)))
        .collect();
    let cfg = TempFile::new(
        "lb-fail.toml",
        &format!(
            "[[vip]]\naddress = \"{vip}\"\nport = {port}\nprotocol = \"udp\"\n\
             forwarding = \"dsr\"\nhealth = \"none\"\nbackends = [ {} ]\n",
            backends.join(", ")
        ),
    );
    let args = ["--iface", "lb0", "--app", "lb", "--lb-config", cfg.path()];
    let ns = bed.balancer(0).ns();
    let mut old = Engine::start_in(ns, &args);
    old.wait_for_log("app lb on", Duration::from_secs(20));
    let target = SocketAddr::new(vip, port);
    let opts = FlowOpts::default();
    let sources = Sources::Ports((22000..22050).collect());
    let end = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let r = udp_flows(bed.client().ns(), target, &sources, &opts).expect("flows");
        if r.iter().all(|f| f.outcome.is_ok()) {
            break r;
        }
        assert!(old.is_running(), "sluice exited: {}", old.stderr_text());
        assert!(Instant::now() < end, "{}", describe_failures(&r));
    };
    let id = xdp_prog_id(ns, "lb0");

    // The successor gets every fd, then cannot bind its metrics address (taken here) and
    // stops before it is ready: the old engine must go on as it was.
    let taken = ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let metrics = taken.local_addr().unwrap().to_string();
    let mut a = args.to_vec();
    a.extend(["--takeover", "--metrics", &metrics]);
    let mut new = Engine::start_in(ns, &a);
    let (status, _) = new.stop_with_wait(Duration::from_secs(30));
    assert!(!status.success());
    let err = new.stderr_text();
    assert!(
        err.contains("hot upgrade: mapped the data plane") && err.contains(&metrics),
        "the successor should fail after mapping, on the metrics address: {err}"
    );
    assert!(
        err.contains("left attached for the engine that passed it on") && !err.contains("detached"),
        "the successor claims to detach what it never owned: {err}"
    );
    drop(taken);
    assert!(old.is_running(), "{}", old.stderr_text());
    assert_eq!(xdp_prog_id(ns, "lb0"), id);
    let again = udp_flows(bed.client().ns(), target, &sources, &opts).expect("flows");
    for (a, b) in first.iter().zip(&again) {
        assert!(b.outcome.is_ok(), "after the failed hand-over: {b:?}");
        assert_eq!(a.backend(), b.backend(), "flow {} moved", a.id);
    }
    let fin = old.stop();
    assert_census(&fin);
    assert_eq!(xdp_prog_id(ns, "lb0"), None);
}

/// The zone of the dns test: `www` is `a`.
fn dns_zone(serial: u32, a: &str) -> String {
    format!(
        "$ORIGIN upgrade.test.\n$TTL 300\n\
         @ IN SOA ns1 hostmaster {serial} 3600 600 86400 60\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A {a}\n"
    )
}

/// A query for `www.upgrade.test` A with `id`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["www", "upgrade", "test"] {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

/// The A address of an answer to [`dns_query`] (`None` unless NOERROR with one A record).
fn dns_answer(reply: &[u8]) -> Option<[u8; 4]> {
    if reply.len() < 12 || reply[3] & 0x0f != 0 || reply[6..8] != [0, 1] {
        return None;
    }
    // Question: 3 labels + root + type + class, then the answer (pointer owner, 10 bytes of
    // type/class/ttl/rdlength, 4 of address).
    let at = 12 + (1 + 3) + (1 + 7) + (1 + 4) + 1 + 4;
    let rr = reply.get(at..at + 16)?;
    (rr[2..4] == [0, 1] && rr[10..12] == [0, 4]).then(|| [rr[12], rr[13], rr[14], rr[15]])
}

#[test]
fn dns_takeover_loses_no_query_and_loads_its_own_zones() {
    if !require_root("dns_takeover_loses_no_query_and_loads_its_own_zones") {
        return;
    }
    let bed = DnsBed::new(1).expect("building the DNS bed");
    let zone = TempFile::new("upgrade.test.zone", &dns_zone(1, "192.0.2.80"));
    let server = bed.server(0);
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let args = [
        "--iface",
        server.iface(),
        "--app",
        "dns",
        "--zone",
        zone.path(),
        "--metrics",
        &metrics,
    ];
    let ns = server.ns();
    let mut old = Engine::start_in(ns, &args);
    let addr = SocketAddr::new(bed.server_addrs(0)[0], 53);
    let sock = bed
        .client()
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(addr)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            Ok::<_, std::io::Error>(s)
        })
        .expect("entering the client namespace")
        .expect("a UDP socket to the server");
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        sock.send(&dns_query(1)).unwrap();
        if sock
            .recv(&mut buf)
            .is_ok_and(|n| dns_answer(&buf[..n]).is_some())
        {
            break;
        }
        assert!(old.is_running(), "sluice exited: {}", old.stderr_text());
        assert!(Instant::now() < end, "sluice never answered");
    }
    std::thread::sleep(Duration::from_millis(300));
    while sock.recv(&mut buf).is_ok() {}
    let tcp = |id: u16| {
        bed.client()
            .run(move || {
                sluice_testbed::dns::tcp_exchange(addr, &dns_query(id), Duration::from_secs(5))
            })
            .expect("entering the client namespace")
            .expect("a TCP query")
            .and_then(|r| dns_answer(&r))
    };
    assert_eq!(tcp(2), Some([192, 0, 2, 80]), "TCP before the hand-over");
    let before = [xdp_prog_id(ns, server.iface())];
    // The successor reads the zone files itself: this version is what it serves.
    zone.replace(&dns_zone(2, "192.0.2.81"));

    let (load, old_fin, ids, mut new) =
        hand_over_under(ns, &[server.iface()], &mut old, &args, |phase, stop| {
            let mut buf = [0u8; 4096];
            one_in_flight(phase, stop, |i| {
                let q = dns_query(i as u16);
                if sock.send(&q).is_err() {
                    return false;
                }
                for _ in 0..20 {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let r = &buf[..n];
                        let want = if phase.load(Ordering::Relaxed) == AFTER {
                            &[[192, 0, 2, 81]][..]
                        } else {
                            &[[192, 0, 2, 80], [192, 0, 2, 81]][..]
                        };
                        return r[..2] == q[..2]
                            && dns_answer(r).is_some_and(|a| want.contains(&a));
                    }
                }
                false
            })
        });
    assert_no_loss(&load, "dns");
    assert_same_programs(&ids, &before);
    assert!(
        old_fin["total"]["rx_packets"].as_u64().unwrap() > 0,
        "{old_fin}"
    );
    // TCP on the listener the successor was passed (bound to port 53 before the old engine
    // dropped its privileges; the successor could not bind it again).
    assert_eq!(tcp(3), Some([192, 0, 2, 81]), "TCP after the hand-over");
    let reply = scrape(ns);
    assert_scrape_ok(&reply, "metrics after the hand-over");
    assert!(scraped_rx(&reply) > 0, "the successor answered nothing");
    let fin = new.stop();
    let after = load.answered[AFTER as usize];
    assert!(
        fin["total"]["tx_packets"].as_u64().unwrap() >= after,
        "{fin}"
    );
    assert_census(&fin);
    assert_eq!(xdp_prog_id(ns, server.iface()), None);
}
