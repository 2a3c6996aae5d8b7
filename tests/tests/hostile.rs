//! A hostile local user against the control socket and the metrics endpoint (issue 13): with an
//! unprivileged peer holding 200 idle control connections and 200 half-sent metrics requests,
//! root's `sluice ctl status`, an admin's `rules add` and a scrape each succeed within 1 s; the
//! same peer's garbage (random bytes, 100 KB of nested JSON, unknown commands, changes it may not
//! make) gets error replies and changes nothing; the engine echoes throughout.
//!
//! The hostile peer is this test binary run again as uid 65534 (`nobody`) in the engine's
//! namespace, in one of the helper modes below; the helpers are no-ops in a normal run.

mod common;

use common::*;
use serde_json::Value;
use sluice::control::ctl::Client;
use sluice_testbed::{TestBed, require_root};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PORT: u16 = 9000;
const METRICS_PORT: u16 = 9464;
/// The hostile user.
const NOBODY: u32 = 65534;
/// The admin: a uid of no account, in group `users` (gid 100), which `--admin-group users` names.
const ADMIN_UID: u32 = 1000;
const ADMIN_GID: u32 = 100;
/// What "within 1 s" means here: the issue's bound, asserted as is. Measured on the 2-core
/// development VM under this load: tens of milliseconds (the test prints each figure).
const WITHIN: Duration = Duration::from_secs(1);

/// Env var naming the helper mode (`hold` or `junk`) and the interface.
const HELPER_ENV: &str = "SLUICE_HOSTILE_HELPER";

/// Run `sluice ctl --iface <engine iface> <args>` in the engine namespace as `uid`/`gid`
/// (root when `None`); returns its output and how long it took, exec included.
fn ctl_as(bed: &TestBed, ids: Option<(u32, u32)>, args: &[&str]) -> (Output, Duration) {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["ctl", "--iface", bed.engine().iface()])
        .args(args);
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let out = bed
        .engine()
        .ns()
        .spawn(&mut cmd)
        .unwrap()
        .wait_with_output()
        .unwrap();
    (out, t.elapsed())
}

/// One scrape of `/metrics` from the engine namespace over loopback; the reply and its time.
fn scrape(bed: &TestBed) -> (String, Duration) {
    bed.engine()
        .ns()
        .run(|| {
            let t = Instant::now();
            let mut s = TcpStream::connect(("127.0.0.1", METRICS_PORT)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            (r, t.elapsed())
        })
        .unwrap()
}

/// This test binary again, as `nobody` in the engine namespace, in helper `mode`.
fn spawn_helper(bed: &TestBed, mode: &str) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "hostile_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER_ENV, format!("{mode}:{}", bed.engine().iface()))
    .uid(NOBODY)
    .gid(NOBODY)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    bed.engine().ns().spawn(&mut cmd).unwrap()
}

fn helper_output(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "helper failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn hostile_local_user_locks_out_no_operator_and_no_scrape() {
    if !require_root("hostile_local_user_locks_out_no_operator_and_no_scrape") {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(
        &bed,
        &[
            "--udp",
            "9000",
            "--admin-group",
            "users",
            // A bare port: loopback.
            "--metrics",
            "9464",
        ],
        PORT,
    );
    let stop_echo = AtomicBool::new(false);
    /// Stops the echo rounds however the scope ends, so a failed assertion cannot leave the
    /// scope waiting for them forever.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop_echo);
        // The engine echoes throughout: rounds of 200 until told to stop, every one complete.
        let echoer = s.spawn(|| {
            let mut rounds = 0;
            while !stop_echo.load(Ordering::Relaxed) {
                let mut cfg = echo_cfg(&bed, false, PORT);
                cfg.count = Some(200);
                let st = echo(&bed, cfg);
                assert_eq!(
                    (st.echoed, st.lost, st.mismatched),
                    (200, 0, 0),
                    "round {rounds}: {st:?}"
                );
                rounds += 1;
            }
            rounds
        });

        // The hostile user opens its 400 connections and holds them.
        let mut holder = spawn_helper(&bed, "hold");
        let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
        let Some(ready) = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("HOLDING"))
        // after libtest's "test hostile_helper ... "
        else {
            panic!("the holder never held:\n{}", helper_output(holder));
        };
        eprintln!("hostile peer: {ready}");

        let mut worst = [Duration::ZERO; 3];
        for round in 0..3 {
            let (out, took) = ctl_as(&bed, None, &["--json", "status"]);
            assert!(
                out.status.success(),
                "root ctl status, round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["data"]["iface"], "veth-eng", "{v}");
            assert!(took < WITHIN, "root ctl status took {took:?}");
            worst[0] = worst[0].max(took);

            let port = (9100 + round).to_string();
            let (out, took) = ctl_as(
                &bed,
                Some((ADMIN_UID, ADMIN_GID)),
                &["rules", "add", "--udp", &port],
            );
            assert!(
                out.status.success(),
                "admin rules add, round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(took < WITHIN, "admin rules add took {took:?}");
            worst[1] = worst[1].max(took);

            let (reply, took) = scrape(&bed);
            assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
            assert!(reply.contains("sluice_rx_packets_total{"), "{reply}");
            assert!(took < WITHIN, "scrape took {took:?}");
            worst[2] = worst[2].max(took);
        }
        eprintln!(
            "under 200 idle control and 200 slow metrics connections, the slowest of 3: \
             root ctl status {:?}, admin rules add {:?}, scrape {:?}",
            worst[0], worst[1], worst[2]
        );
        let rules = ctl_as(&bed, None, &["--json", "rules", "list"]).0;
        let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
        for port in ["9100", "9101", "9102"] {
            assert!(rules.contains(port), "admin's rule {port} missing: {rules}");
        }

        // Its idle control connections are closed after --ctl-idle-timeout (5 s): the helper
        // checks, 8 s after it opened them.
        drop(holder.stdin.take()); // let it go
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let held = helper_output(holder);
        assert!(
            rest.iter().any(|l| l.contains("HOLD-OK")),
            "{rest:?}\n{held}"
        );
        eprintln!("hostile peer: {}", rest.join(" / "));

        // The same user's garbage gets error replies and changes nothing.
        let junk = helper_output(spawn_helper(&bed, "junk"));
        assert!(junk.contains("JUNK-OK"), "{junk}");
        let after = ctl_as(&bed, None, &["--json", "rules", "list"]).0;
        assert_eq!(
            String::from_utf8_lossy(&after.stdout),
            rules,
            "the hostile peer changed the rules"
        );
        let (reply, _) = scrape(&bed);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

        stop_echo.store(true, Ordering::Relaxed);
        let rounds = echoer.join().unwrap();
        assert!(rounds >= 2, "only {rounds} echo rounds ran");
        eprintln!("{rounds} echo rounds of 200, every echo back");
    });

    assert!(engine.is_running(), "{}", engine.stderr_text());
    let fin = engine.stop();
    assert_census(&fin);
    let log = engine.stderr_text();
    assert!(!log.contains("panicked"), "{log}");
    // 196 and more refused connections, one line per uid per 10 s (the junk helper may be
    // refused once more while its held connections are being closed, and the test may take
    // longer than 10 s on a loaded machine: two lines at most), naming uid and pid.
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused a connection from"))
        .collect();
    assert!((1..=2).contains(&refusals.len()), "{log}");
    assert!(
        refusals[0].contains(&format!("uid {NOBODY}")) && refusals[0].contains("pid "),
        "{}",
        refusals[0]
    );
    // The refused changes likewise: one line, however many were tried.
    let denied = log
        .lines()
        .filter(|l| l.contains("refused a change from"))
        .count();
    assert_eq!(denied, 1, "{log}");
}

/// The hostile peer (see the module docs); does nothing unless [`HELPER_ENV`] is set.
#[test]
fn hostile_helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let (mode, iface) = spec.split_once(':').unwrap();
    assert_eq!(nix::unistd::geteuid().as_raw(), NOBODY);
    match mode {
        "hold" => hold(iface),
        "junk" => junk(iface),
        other => panic!("unknown helper mode {other}"),
    }
}

/// 200 control connections that never send, 200 metrics connections that send half a request
/// head; held until stdin closes (at most 60 s). Then, 8 s after they were opened (the idle
/// timeout is 5 s), none of the control connections may still be served: each was refused at
/// once (its one datagram says so) or closed for idleness.
fn hold(iface: &str) {
    let ctl: Vec<Client> = (0..200).map(|_| Client::connect(iface).unwrap()).collect();
    let slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", METRICS_PORT)).unwrap();
            // A reset of one the server displaced is fine: the point is to have sent it.
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            s
        })
        .collect();
    let held_at = Instant::now();
    println!(
        "HOLDING {} control and {} metrics connections",
        ctl.len(),
        slow.len()
    );
    std::io::stdout().flush().unwrap();
    // Until the test is done measuring; bounded in case it dies.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(60));
    drop(slow);
    std::thread::sleep(Duration::from_secs(8).saturating_sub(held_at.elapsed()));
    let (mut refused, mut closed) = (0, 0);
    for mut c in ctl {
        match c.send_raw(br#"{"v":1,"cmd":"status"}"#) {
            Ok(reply) => {
                let v: Value = serde_json::from_slice(&reply).unwrap();
                let msg = v["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    msg.contains("too many control connections"),
                    "an idle connection still served after 8 s: {v}"
                );
                refused += 1;
            }
            Err(_) => closed += 1,
        }
    }
    println!("IDLE: {refused} refused at once, {closed} closed for idleness");
    assert!(
        closed >= 1 && refused >= 150,
        "{refused} refused, {closed} closed"
    );
    println!("HOLD-OK");
}

/// Reads `datagram`'s reply on `c`: an error reply with `code`, or any error when `None`.
fn expect_error(c: &mut Client, datagram: &[u8], code: Option<&str>) {
    let reply = c.send_raw(datagram).expect("a reply");
    let v: Value = serde_json::from_slice(&reply)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&reply)));
    assert_eq!(v["ok"], false, "{v}");
    if let Some(code) = code {
        assert_eq!(v["error"]["code"], code, "{v}");
    }
}

/// A connection of its own, once the held ones are gone (the server notices a close within a
/// poll interval; until then this uid is at its cap and is told so).
fn connect_when_let_in(iface: &str) -> Client {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(iface).unwrap();
        let reply = c.send_raw(br#"{"v":1,"cmd":"status"}"#).unwrap();
        let v: Value = serde_json::from_slice(&reply).unwrap();
        if v["ok"] == true {
            return c;
        }
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("too many control connections"), "{v}");
        assert!(Instant::now() < end, "still refused after 5 s: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Random bytes, 100 KB of nested JSON, unknown commands and changes it may not make, on one
/// connection: an error reply each, and the connection stays usable.
fn junk(iface: &str) {
    let mut c = connect_when_let_in(iface);
    // Random datagrams (xorshift, fixed seed: the same bytes every run).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200 {
        let len = 1 + (next() % 4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        expect_error(&mut c, &bytes, None);
    }
    // 100 KB of nested JSON: over the 64 KiB request limit.
    let nested = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    expect_error(&mut c, nested.as_bytes(), Some("too_large"));
    let nested = format!("{}1{}", r#"{"a":"#.repeat(20_000), "}".repeat(20_000));
    expect_error(&mut c, nested.as_bytes(), Some("too_large"));
    // Under the limit, deeper than the decoder goes.
    let deep = format!(
        r#"{{"v":1,"cmd":"status","x":{}{}}}"#,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    expect_error(&mut c, deep.as_bytes(), None);
    for unknown in [
        &br#"{"v":1,"cmd":"reboot"}"#[..],
        br#"{"v":1,"cmd":"rules","op":"flush"}"#,
        br#"{"v":1,"cmd":""}"#,
        br#"{"v":1}"#,
        br#"{"v":99,"cmd":"status"}"#,
        b"null",
        b"[]",
        b"\"status\"",
    ] {
        expect_error(&mut c, unknown, None);
    }
    expect_error(
        &mut c,
        br#"{"v":1,"cmd":"frobnicate"}"#,
        Some("unknown_command"),
    );
    for _ in 0..50 {
        expect_error(
            &mut c,
            br#"{"v":1,"cmd":"rules","op":"del","proto":"udp","ports":"9000"}"#,
            Some("permission_denied"),
        );
        expect_error(
            &mut c,
            br#"{"v":1,"cmd":"shutdown"}"#,
            Some("permission_denied"),
        );
    }
    let reply = c.send_raw(br#"{"v":1,"cmd":"status"}"#).unwrap();
    let v: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["ok"], true, "the connection is still usable: {v}");
    println!("JUNK-OK");
}
