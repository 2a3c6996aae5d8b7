//! The dns app in operation (answers themselves are compared with NSD in `dns_interop.rs`):
//! zones reloaded under a steady stream of queries without losing one, a broken zone refused
//! with its file and line while the old zones keep serving, and a zone error at start.

mod common;

use common::{Engine, sluice_bin};
use sluice_testbed::dns::DnsBed;
use sluice_testbed::require_root;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The test zone, with `serial` and a record `new` of `new_a` (if any).
fn zone(serial: u32, new_a: Option<&str>) -> String {
    let mut z = format!(
        "$ORIGIN reload.test.\n$TTL 300\n\
         @ IN SOA ns1 hostmaster {serial} 3600 600 86400 60\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.80\n"
    );
    if let Some(a) = new_a {
        z.push_str(&format!("new IN A {a}\n"));
    }
    z
}

/// A query for `name` A with `id`, RD clear.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

/// The rcode and the A addresses (last four bytes of each 16-byte A record with a
/// compression pointer owner) of a response.
fn a_records(reply: &[u8]) -> (u8, Vec<[u8; 4]>) {
    let rcode = reply[3] & 0x0f;
    let ancount = u16::from_be_bytes([reply[6], reply[7]]) as usize;
    // Skip the question: name, type, class.
    let mut at = 12;
    while reply[at] != 0 {
        at += 1 + reply[at] as usize;
    }
    at += 5;
    let mut out = Vec::new();
    for _ in 0..ancount {
        // Owner: a pointer (2 bytes) in sluice's answers.
        let rtype = u16::from_be_bytes([reply[at + 2], reply[at + 3]]);
        let rdlen = u16::from_be_bytes([reply[at + 10], reply[at + 11]]) as usize;
        if rtype == 1 && rdlen == 4 {
            out.push(reply[at + 12..at + 16].try_into().unwrap());
        }
        at += 12 + rdlen;
    }
    (rcode, out)
}

/// Sends `q` on `sock` and waits up to `timeout` for the reply with the same id.
fn exchange(sock: &UdpSocket, q: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    sock.send(q).ok()?;
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        sock.set_read_timeout(Some(end - Instant::now() + Duration::from_millis(1)))
            .ok()?;
        match sock.recv(&mut buf) {
            Ok(n) if n >= 12 && buf[..2] == q[..2] => return Some(buf[..n].to_vec()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

fn ctl(bed: &DnsBed, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["ctl", "--iface", bed.server(0).iface()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    bed.server(0)
        .ns()
        .spawn(&mut cmd)
        .expect("spawning sluice ctl")
        .wait_with_output()
        .expect("waiting for sluice ctl")
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("sluice-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces `path` atomically (write + rename), as an operator's editor or deploy tool would.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn zones_reload_under_load_without_losing_a_query() {
    if !require_root("zones_reload_under_load_without_losing_a_query") {
        return;
    }
    let bed = DnsBed::new(1).expect("building the DNS bed");
    let dir = TempDir::new("dns-reload");
    let path = dir.path().join("reload.test.zone");
    replace(&path, &zone(1, None));
    let path_s = path.display().to_string();
    let server = bed.server(0);
    let mut engine = Engine::start_in(
        server.ns(),
        &["--iface", server.iface(), "--app", "dns", "--zone", &path_s],
    );
    let addr = SocketAddr::new(bed.server_addrs(0)[0], 53);
    let sock = bed
        .client()
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(addr)?;
            Ok::<_, std::io::Error>(s)
        })
        .expect("entering the client namespace")
        .expect("a UDP socket to the server");
    let end = Instant::now() + Duration::from_secs(20);
    while exchange(
        &sock,
        &query(1, "www.reload.test"),
        Duration::from_millis(200),
    )
    .is_none()
    {
        assert!(
            engine.is_running(),
            "sluice exited: {}",
            engine.stderr_text()
        );
        assert!(Instant::now() < end, "sluice never answered");
    }

    // A steady stream of queries (one in flight, ~1 ms apart) while the zone changes under it.
    let stop = AtomicBool::new(false);
    let (sent, lost, news) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let (mut sent, mut lost, mut news) = (0u32, Vec::new(), Vec::new());
            let mut id: u16 = 100;
            while !stop.load(Ordering::Relaxed) && sent < 20_000 {
                id = id.wrapping_add(1);
                let name = if id.is_multiple_of(2) {
                    "www.reload.test"
                } else {
                    "new.reload.test"
                };
                sent += 1;
                match exchange(&sock, &query(id, name), Duration::from_secs(1)) {
                    Some(r) if id % 2 == 1 => news.push(a_records(&r)),
                    Some(_) => {}
                    None => lost.push(id),
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (sent, lost, news)
        });
        std::thread::sleep(Duration::from_millis(300));
        // ctl reload: `new` appears.
        replace(&path, &zone(2, Some("192.0.2.99")));
        let out = ctl(&bed, &["reload"]);
        assert!(
            out.status.success(),
            "ctl reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
        // SIGHUP: `new` changes.
        replace(&path, &zone(3, Some("192.0.2.100")));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(engine.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
        std::thread::sleep(Duration::from_millis(300));
        // A broken zone: refused, naming the file and line; the loaded zones keep serving.
        replace(
            &path,
            &format!("{}new IN A 300.1.2.3\n", zone(4, Some("192.0.2.101"))),
        );
        let out = ctl(&bed, &["reload"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "a broken zone is refused");
        assert!(
            err.contains(&format!("{path_s}:8")),
            "names file and line: {err}"
        );
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        load.join().expect("the query thread")
    });
    assert!(sent > 500, "only {sent} queries sent");
    assert!(
        lost.is_empty(),
        "{} of {sent} queries unanswered during reloads: ids {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    // `new` went NXDOMAIN → .99 → .100, and never to the broken file's .101.
    let seen: Vec<&(u8, Vec<[u8; 4]>)> = news.iter().collect();
    assert!(
        seen.first().is_some_and(|(rcode, _)| *rcode == 3),
        "NXDOMAIN first"
    );
    assert!(
        seen.iter().any(|(_, a)| a == &[[192, 0, 2, 99]]),
        "v2 served"
    );
    assert!(
        seen.last().is_some_and(|(_, a)| a == &[[192, 0, 2, 100]]),
        "v3 served last: {:?}",
        seen.last()
    );
    assert!(!seen.iter().any(|(_, a)| a == &[[192, 0, 2, 101]]));
    let fin = engine.stop();
    let answered = fin["total"]["counters"]["tx_packets"]
        .as_u64()
        .or_else(|| fin["total"]["tx_packets"].as_u64())
        .unwrap_or(0);
    assert!(
        answered >= u64::from(sent),
        "the fast path sent {answered} answers for {sent} queries: {fin}"
    );
    common::assert_census(&fin);
}

#[test]
fn a_zone_error_stops_the_start_naming_file_and_line() {
    if !require_root("a_zone_error_stops_the_start_naming_file_and_line") {
        return;
    }
    let bed = DnsBed::new(1).expect("building the DNS bed");
    let dir = TempDir::new("dns-bad");
    let path = dir.path().join("bad.zone");
    std::fs::write(
        &path,
        "$ORIGIN bad.test.\n@ 300 IN SOA ns1 h 1 1 1 1 1\n@ IN NS ns1\nwww IN CNAME x\nwww IN A 192.0.2.1\n",
    )
    .unwrap();
    let server = bed.server(0);
    let out = server
        .ns()
        .spawn(
            Command::new(sluice_bin())
                .args(["run", "--iface", server.iface(), "--app", "dns", "--zone"])
                .arg(&path)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .expect("spawning sluice")
        .wait_with_output()
        .expect("waiting for sluice");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}:", path.display())) && err.contains("CNAME"),
        "{err}"
    );
    // The zones are read before anything is attached: nothing was.
    let iface = server.iface().to_string();
    let attached = server
        .ns()
        .run(move || {
            let mut nl = sluice::control::netlink::Netlink::open().unwrap();
            sluice::control::link::get_link(&mut nl, &iface)
                .unwrap()
                .unwrap()
                .xdp_attached
        })
        .unwrap();
    assert!(!attached, "no XDP program left on {}", server.iface());
}
