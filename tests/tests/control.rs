//! The control plane end to end: `sluice ctl` against a running engine (mirror, rules, stats,
//! permissions, malformed messages, shutdown), link flaps under traffic, and the metrics
//! endpoint.

mod common;

use common::*;
use serde_json::Value;
use sluice_testbed::{MacAddr, Route, TestBed, require_root};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PORT: u16 = 9000;

/// Run `sluice ctl --iface <engine iface> <args>` in the engine namespace, as `uid` if given.
fn ctl(bed: &TestBed, uid: Option<u32>, args: &[&str]) -> Output {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["ctl", "--iface", bed.engine().iface()])
        .args(args);
    if let Some(u) = uid {
        std::os::unix::process::CommandExt::uid(&mut cmd, u);
        std::os::unix::process::CommandExt::gid(&mut cmd, u);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    bed.engine()
        .ns()
        .spawn(&mut cmd)
        .unwrap()
        .wait_with_output()
        .unwrap()
}

fn ctl_json(bed: &TestBed, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = ctl(bed, None, &a);
    assert!(
        out.status.success(),
        "ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ctl {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Poll `ctl <what>` until `pred` holds on its data; returns how long it took.
fn wait_ctl(bed: &TestBed, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Duration {
    let t = Instant::now();
    loop {
        let v = ctl_json(bed, &[what]);
        if pred(&v["data"]) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "`ctl {what}` never matched within {limit:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn has(list: &Value, key: &str, val: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|e| e[key].as_str() == Some(val)))
}

#[test]
fn mirror_follows_addresses_neighbours_and_routes_within_a_second() {
    if !require_root("mirror_follows_addresses_neighbours_and_routes_within_a_second") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);
    let ns = bed.engine().ns();
    let iface = bed.engine().iface();
    let addr: IpAddr = Ipv4Addr::new(10, 99, 0, 1).into();
    let neigh: IpAddr = Ipv4Addr::new(10, 77, 0, 9).into();
    let route = Route::via("10.88.0.0".parse().unwrap(), 16, bed.peer().ipv4().into());
    let limit = Duration::from_secs(1);

    ns.add_address(iface, addr, 24).unwrap();
    ns.add_neighbour(iface, neigh, MacAddr([2, 0, 0, 0, 0, 9]))
        .unwrap();
    ns.add_route(&route).unwrap();
    let t = Instant::now();
    wait_ctl(&bed, "addresses", limit, |d| has(d, "addr", "10.99.0.1"));
    wait_ctl(&bed, "neighbours", limit, |d| has(d, "ip", "10.77.0.9"));
    wait_ctl(&bed, "routes", limit, |d| has(d, "dst", "10.88.0.0"));
    assert!(
        t.elapsed() < limit + Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    ns.del_address(iface, addr, 24).unwrap();
    ns.del_neighbour(iface, neigh).unwrap();
    ns.del_route(&route).unwrap();
    wait_ctl(&bed, "addresses", limit, |d| !has(d, "addr", "10.99.0.1"));
    wait_ctl(&bed, "neighbours", limit, |d| !has(d, "ip", "10.77.0.9"));
    wait_ctl(&bed, "routes", limit, |d| !has(d, "dst", "10.88.0.0"));

    let links = ctl_json(&bed, &["links"]);
    assert!(has(&links["data"], "name", "veth-eng"), "{links}");
    assert_census(&engine.stop());
}

#[test]
fn link_flap_parks_then_resumes_workers_without_leaking_frames() {
    if !require_root("link_flap_parks_then_resumes_workers_without_leaking_frames") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);
    let ns = bed.engine().ns();
    let iface = bed.engine().iface();
    let mut cfg = echo_cfg(&bed, false, PORT);
    cfg.count = Some(500);
    assert_eq!(echo(&bed, cfg.clone()).echoed, 500);

    ns.set_link_up(iface, false).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut down = cfg.clone();
    down.count = Some(50);
    down.timeout = Duration::from_millis(300);
    let s = echo(&bed, down);
    assert_eq!(
        s.echoed, 0,
        "echoes came back while the link was down: {s:?}"
    );

    ns.set_link_up(iface, true).unwrap();
    let up_at = Instant::now();
    ns.wait_link_ready(iface, Duration::from_secs(10)).unwrap();
    bed.add_static_neighbours().unwrap();
    wait_echo_ready(&bed, &mut engine, false, PORT);
    let took = up_at.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "echoes resumed only after {took:?}"
    );
    let s = echo(&bed, cfg);
    assert_eq!((s.echoed, s.lost, s.mismatched), (500, 0, 0), "{s:?}");

    let fin = engine.stop();
    assert_census(&fin);
    let log = engine.stderr_text();
    assert_eq!(
        log.matches("workers parked").count(),
        1,
        "park logged once per flap:\n{log}"
    );
    assert_eq!(log.matches("workers resumed").count(), 1, "{log}");
}

#[test]
fn unprivileged_client_reads_but_may_not_change() {
    if !require_root("unprivileged_client_reads_but_may_not_change") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);

    let out = ctl(&bed, Some(65534), &["--json", "stats"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["data"]["total"]["counters"]["rx_packets"]
            .as_u64()
            .unwrap()
            >= 1,
        "{v}"
    );

    let out = ctl(&bed, Some(65534), &["rules", "add", "--udp", "9100"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") && err.contains("root"),
        "{err}"
    );

    let rules = ctl_json(&bed, &["rules", "list"]);
    assert!(
        !rules.to_string().contains("9100"),
        "the refused change happened: {rules}"
    );
    let out = ctl(&bed, None, &["rules", "add", "--udp", "9100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = {
        let fin = engine.stop();
        assert_census(&fin);
        engine.stderr_text()
    };
    assert!(
        log.contains("rules add udp 9100") && log.contains("uid 0"),
        "change not logged with who:\n{log}"
    );
}

#[test]
fn malformed_control_messages_get_error_replies_and_the_engine_keeps_serving() {
    if !require_root("malformed_control_messages_get_error_replies_and_the_engine_keeps_serving") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);
    let iface = bed.engine().iface().to_string();
    bed.engine()
        .ns()
        .run(move || {
            let mut c = sluice::control::ctl::Client::connect(&iface).unwrap();
            let cases: Vec<(Vec<u8>, &str)> = vec![
                (b"{not json".to_vec(), "bad_json"),
                (br#"{"v":1,"cmd":"frobnicate"}"#.to_vec(), "unknown_command"),
                (br#"{"v":2,"cmd":"status"}"#.to_vec(), "unsupported_version"),
                (
                    br#"{"v":1,"cmd":"rules","op":"add","proto":"udp","ports":7}"#.to_vec(),
                    "bad_request",
                ),
                (vec![b' '; 100_000], "too_large"),
            ];
            for (msg, code) in cases {
                let reply = c.send_raw(&msg).unwrap();
                let v: Value = serde_json::from_slice(&reply).unwrap();
                assert_eq!(v["ok"], false, "{v}");
                assert_eq!(v["error"]["code"], code, "{v}");
            }
            // Same connection, still usable.
            let v: Value =
                serde_json::from_slice(&c.send_raw(br#"{"v":1,"cmd":"status"}"#).unwrap()).unwrap();
            assert_eq!(v["ok"], true, "{v}");
            assert_eq!(v["data"]["iface"], "veth-eng");
        })
        .unwrap();
    let mut cfg = echo_cfg(&bed, false, PORT);
    cfg.count = Some(300);
    assert_eq!(echo(&bed, cfg).echoed, 300);
    assert_census(&engine.stop());
}

#[test]
fn rules_change_live_without_restart() {
    if !require_root("rules_change_live_without_restart") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);
    // A kernel socket on 9100 in the engine namespace: it gets 9100's traffic when 9100 is not
    // steered.
    let k_addr = SocketAddr::new(bed.engine().ipv4().into(), 9100);
    let kernel = bed
        .engine()
        .ns()
        .run(move || UdpSocket::bind(k_addr).unwrap())
        .unwrap();
    kernel
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let send_9100 = |msg: &'static [u8]| {
        let from = SocketAddr::new(bed.peer().ipv4().into(), 0);
        bed.peer()
            .ns()
            .run(move || UdpSocket::bind(from).unwrap().send_to(msg, k_addr).unwrap())
            .unwrap();
    };
    let mut buf = [0u8; 64];
    send_9100(b"before");
    let n = kernel
        .recv(&mut buf)
        .expect("kernel socket gets 9100 before the rule");
    assert_eq!(&buf[..n], b"before");

    let out = ctl(&bed, None, &["rules", "add", "--udp", "9100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_echo_ready(&bed, &mut engine, false, 9100);
    let mut both = echo_cfg(&bed, false, 9100);
    both.count = Some(500);
    assert_eq!(echo(&bed, both).echoed, 500);
    let mut other = echo_cfg(&bed, false, PORT);
    other.count = Some(500);
    assert_eq!(
        echo(&bed, other).echoed,
        500,
        "the other rule was disturbed"
    );

    let out = ctl(&bed, None, &["rules", "del", "--udp", "9100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    while kernel.recv(&mut buf).is_ok() {} // nothing reached it while steered; drain anyway
    send_9100(b"after");
    let n = kernel.recv(&mut buf).expect("9100 is back with the kernel");
    assert_eq!(&buf[..n], b"after");
    assert_census(&engine.stop());
}

#[test]
fn metrics_endpoint_serves_the_counters() {
    if !require_root("metrics_endpoint_serves_the_counters") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(
        &bed,
        &["--udp", "9000", "--metrics", "127.0.0.1:9464"],
        PORT,
    );
    let mut cfg = echo_cfg(&bed, false, PORT);
    cfg.count = Some(400);
    assert_eq!(echo(&bed, cfg).echoed, 400);
    std::thread::sleep(Duration::from_millis(100));
    let get = |path: &'static str, method: &'static str| -> String {
        bed.engine()
            .ns()
            .run(move || {
                let mut s = TcpStream::connect("127.0.0.1:9464").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                write!(
                    s,
                    "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut r = String::new();
                s.read_to_string(&mut r).unwrap();
                r
            })
            .unwrap()
    };
    let r = get("/metrics", "GET");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let rx: u64 = r
        .lines()
        .find(|l| l.starts_with("sluice_rx_packets_total{") && l.contains("queue=\"0\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rx counter in:\n{r}"));
    assert!(rx >= 400, "{rx}");
    assert!(
        r.contains("sluice_xdp_frames_total{") && r.contains("outcome=\"redirected\""),
        "{r}"
    );
    assert!(r.contains("reason=\"truncated\""), "{r}");
    assert!(get("/nope", "GET").starts_with("HTTP/1.1 404"));
    assert!(get("/metrics", "POST").starts_with("HTTP/1.1 405"));
    assert_census(&engine.stop());
}

#[test]
fn ctl_shutdown_stops_the_engine_cleanly() {
    if !require_root("ctl_shutdown_stops_the_engine_cleanly") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);
    let st = ctl_json(&bed, &["status"]);
    assert_eq!(
        st["data"]["pid"].as_u64().unwrap(),
        u64::from(engine.pid()),
        "{st}"
    );
    assert_eq!(st["data"]["bind_mode"], "copy");
    let out = ctl(&bed, None, &["shutdown"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let end = Instant::now() + Duration::from_secs(10);
    while engine.is_running() {
        assert!(
            Instant::now() < end,
            "engine still running 10 s after ctl shutdown"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!xdp_attached(&bed));
}

#[test]
fn mtu_change_is_logged_and_interface_deletion_stops_the_engine() {
    if !require_root("mtu_change_is_logged_and_interface_deletion_stops_the_engine") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);
    let ns = bed.engine().ns();
    ns.set_mtu(bed.engine().iface(), 1400).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    ns.delete_link(bed.engine().iface()).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while engine.is_running() {
        assert!(
            Instant::now() < end,
            "engine still running 5 s after its interface was deleted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = engine.stderr_text();
    assert!(log.contains("MTU changed from 1500 to 1400"), "{log}");
    assert!(
        log.contains("sluice: error: interface veth-eng was deleted; stopped"),
        "{log}"
    );
}
