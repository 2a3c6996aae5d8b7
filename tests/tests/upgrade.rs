//! Hot upgrade (`sluice run … --takeover`) on a veth pair under a steady stream of echoes:
//! the successor takes the running engine's sockets, UMEM, XDP link and control socket over;
//! the XDP program id never changes (watched throughout), the independent echo client loses
//! (almost) nothing, the old engine exits 0, the census of the new one adds up. A refused
//! takeover leaves the old engine serving.

mod common;

use common::*;
use sluice_testbed::{Netns, TestBed, require_root};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
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
    let mut seen = BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        seen.insert(xdp_prog_id(bed.engine().ns(), bed.engine().iface()));
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
