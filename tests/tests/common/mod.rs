//! Shared pieces of the privileged integration tests: start `sluice run` inside a test bed,
//! drive it with kernel sockets, stop it, read its final JSON totals.
#![allow(dead_code)] // each test binary uses a different subset

use serde_json::Value;
use sluice_bench::echo::{EchoClient, EchoConfig, EchoStats};
use sluice_testbed::{Netns, TestBed, VethOpts};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `sluice` binary: `$SLUICE_BIN`, else next to this test's target directory.
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/engine-xxxx → target/<profile>/sluice
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("sluice");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p sluice`, which `cargo xtask test` does) \
         or set SLUICE_BIN",
        bin.display()
    );
    bin
}

/// Build a bed, failing the test with the error if it can't be built.
pub fn bed(queues: u32) -> TestBed {
    TestBed::pair(VethOpts {
        queues,
        ..Default::default()
    })
    .expect("building the test bed")
}

/// A running `sluice run` in the bed's engine namespace, stdout collected line by line.
pub struct Engine {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Engine {
    /// Start `sluice run --iface <engine iface> --json --stats-interval 0 <extra...>`.
    pub fn start(bed: &TestBed, extra: &[&str]) -> Engine {
        let mut args = vec!["--iface", bed.engine().iface()];
        args.extend_from_slice(extra);
        Engine::start_in(bed.engine().ns(), &args)
    }

    /// Start `sluice run --json --stats-interval 0 <args...>` in `ns`.
    pub fn start_in(ns: &Netns, args: &[&str]) -> Engine {
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["run", "--json", "--stats-interval", "0"])
            .args(args);
        Engine::spawn_in(ns, cmd)
    }

    /// Start `cmd` (a `sluice` command line with whatever arguments and environment the test
    /// needs) in `ns`, stdout and stderr collected line by line.
    pub fn spawn_in(ns: &Netns, mut cmd: Command) -> Engine {
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ns.spawn(&mut cmd).expect("spawning sluice");
        let lines = pipe_lines(child.stdout.take().unwrap(), false);
        let stderr = pipe_lines(child.stderr.take().unwrap(), true);
        Engine {
            child: Some(child),
            lines,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// Send `sig`, wait (bounded) for exit; returns the status and every stdout line.
    pub fn stop_with(&mut self, sig: nix::sys::signal::Signal) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("already stopped");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, sig);
        let end = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(st) = child.try_wait().expect("waiting for sluice") {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("sluice did not exit within 15 s of {sig}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            out.push(l);
        }
        (status, out)
    }

    /// Wait (bounded) for the process to exit by itself; returns the status and every stdout
    /// line. Kills it and panics after `limit`.
    pub fn stop_with_wait(&mut self, limit: Duration) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("already stopped");
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(st) = child.try_wait().expect("waiting for sluice") {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("sluice did not exit by itself within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            out.push(l);
        }
        (status, out)
    }

    /// SIGTERM, expect exit 0, and return the final JSON object.
    pub fn stop(&mut self) -> Value {
        let (status, lines) = self.stop_with(nix::sys::signal::Signal::SIGTERM);
        assert!(
            status.success(),
            "sluice exited with {status}; stderr:\n{}",
            self.stderr_text()
        );
        final_json(&lines)
    }

    /// Wait (bounded) for a stderr line containing `needle`, e.g. the start-up line that says
    /// the workers run; panics with what was seen if none comes.
    #[allow(dead_code)] // not every test binary waits for a log line
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        let mut seen = String::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return,
                Ok(l) => {
                    seen.push_str(&l);
                    seen.push('\n');
                }
                Err(_) => break,
            }
        }
        panic!("sluice never logged {needle:?} within {timeout:?}; it logged:\n{seen}");
    }

    /// Whatever sluice wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        let mut s = String::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(50)) {
            s.push_str(&l);
            s.push('\n');
        }
        s
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pipe_lines(r: impl std::io::Read + Send + 'static, echo: bool) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if echo {
                eprintln!("[sluice] {line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The `{"type":"final",...}` object among sluice's stdout lines.
pub fn final_json(lines: &[String]) -> Value {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "final")
        .unwrap_or_else(|| panic!("no final JSON line in sluice output: {lines:?}"))
}

/// Assert every queue's frame census adds up: every UMEM frame is in a ring or with the worker,
/// none lost (copy mode: the kernel holds none at rest).
pub fn assert_census(fin: &Value) {
    let queues = fin["queues"].as_array().expect("queues array");
    assert!(!queues.is_empty());
    for q in queues {
        let c = &q["census"];
        let total = c["total"].as_u64().unwrap();
        let sum: u64 = ["fill", "rx", "worker", "tx", "completion"]
            .iter()
            .map(|k| c[*k].as_u64().unwrap())
            .sum();
        assert_eq!(
            c["kernel"].as_i64().unwrap(),
            0,
            "frames unaccounted for: {c}"
        );
        assert_eq!(sum, total, "census does not add up: {c}");
        assert!(total > 0);
    }
}

/// Echo client config towards the engine end of `bed` (IPv4 or IPv6) on `port`.
pub fn echo_cfg(bed: &TestBed, v6: bool, port: u16) -> EchoConfig {
    let (target, bind): (IpAddr, IpAddr) = if v6 {
        (bed.engine().ipv6().into(), bed.peer().ipv6().into())
    } else {
        (bed.engine().ipv4().into(), bed.peer().ipv4().into())
    };
    EchoConfig {
        target: SocketAddr::new(target, port),
        bind: SocketAddr::new(bind, 0),
        flows: 1,
        window: 32,
        count: Some(1000),
        duration: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
        sizes: vec![64],
    }
}

/// Run an echo client from the peer namespace.
pub fn echo(bed: &TestBed, cfg: EchoConfig) -> EchoStats {
    bed.peer()
        .ns()
        .run(move || {
            let mut c = EchoClient::new(cfg).expect("echo client");
            c.run(|_, _| {})
        })
        .expect("running in the peer namespace")
}

/// Wait until `port` echoes (sluice attached and its worker running), at most 20 s.
pub fn wait_echo_ready(bed: &TestBed, engine: &mut Engine, v6: bool, port: u16) {
    let cfg = echo_cfg(bed, v6, port);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            engine.is_running(),
            "sluice exited early; stderr:\n{}",
            engine.stderr_text()
        );
        let c = cfg.clone();
        let ok = bed
            .peer()
            .ns()
            .run(move || {
                EchoClient::new(c)
                    .expect("echo client")
                    .probe(Duration::from_millis(300))
            })
            .unwrap();
        if ok {
            return;
        }
        assert!(
            Instant::now() < end,
            "sluice never echoed on port {port}; stderr:\n{}",
            engine.stderr_text()
        );
    }
}

/// [`Engine::start`], then [`wait_echo_ready`] on IPv4 `port`.
pub fn start_ready(bed: &TestBed, extra: &[&str], port: u16) -> Engine {
    let mut engine = Engine::start(bed, extra);
    wait_echo_ready(bed, &mut engine, false, port);
    engine
}

/// Poll `cond` every 50 ms until it holds, at most `limit`, failing early if sluice exits; `what`
/// names it in the panic.
pub fn wait_until(
    engine: &mut Engine,
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            engine.is_running(),
            "sluice exited early; stderr:\n{}",
            engine.stderr_text()
        );
        assert!(
            Instant::now() < end,
            "{what} not within {limit:?}; stderr:\n{}",
            engine.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True if an XDP program is attached to the engine end.
pub fn xdp_attached(bed: &TestBed) -> bool {
    let iface = bed.engine().iface().to_string();
    bed.engine()
        .ns()
        .run(move || {
            let mut nl = sluice::control::netlink::Netlink::open().unwrap();
            sluice::control::link::get_link(&mut nl, &iface)
                .unwrap()
                .unwrap()
                .xdp_attached
        })
        .unwrap()
}

impl Engine {
    /// Wait (bounded) until sluice has written a stderr line containing each of `needles`, in any
    /// order (a warning may come before or after the start-up line); panics with what was seen
    /// if one is missing. Returns the lines read meanwhile.
    pub fn wait_for_logs(&self, needles: &[&str], timeout: Duration) -> Vec<String> {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut missing: Vec<&str> = needles.to_vec();
        while !missing.is_empty() {
            let Some(left) = end.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.stderr.recv_timeout(left) {
                Ok(l) => {
                    missing.retain(|n| !l.contains(n));
                    seen.push(l);
                }
                Err(_) => break,
            }
        }
        assert!(
            missing.is_empty(),
            "sluice never logged {missing:?} within {timeout:?}; it logged:\n{}",
            seen.join("\n")
        );
        seen
    }
}

/// Set an integer socket option (`setsockopt(fd, level, name, &value)`), with libc's named
/// constants, e.g. `IPPROTO_IP`/`IP_MTU_DISCOVER`/`IP_PMTUDISC_DO`, which nix does not wrap.
pub fn set_socket_option(
    fd: std::os::fd::BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `fd` is a live descriptor for the borrow; the option value is a c_int that lives
    // across the call, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The kernel's `TCP_INFO` for a TCP socket (path MTU, MSS, retransmissions).
pub fn tcp_info(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<libc::tcp_info> {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `fd` is live for the borrow; `info` and `len` are valid for writes and `len` says
    // how much room `info` has (the kernel writes at most that much).
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(info)
    } else {
        Err(std::io::Error::last_os_error())
    }
}
