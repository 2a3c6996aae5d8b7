//! Operating sluice on a host (issue 12): a run configuration file, `sluice check-config`, the
//! systemd unit in `dist/` and its readiness notification, SIGHUP as `systemctl reload`.

mod common;

use common::{Engine, sluice_bin, wait_echo_ready, xdp_attached};
use sluice_testbed::require_root;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A directory of this test's own under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sluice-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Skip (printing why) unless `tool` is on PATH; under CI=true a missing tool is a failure,
/// as a skipped privileged test is (`.ci/run` installs it).
fn have_tool(tool: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: {tool} is not installed (CI=true: .ci/run should have installed it)"
        );
        eprintln!("skipping {test}: {tool} is not installed");
    }
    found
}

fn unit_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/sluice@.service")
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    if !have_tool("systemd-analyze", "unit_file_passes_systemd_analyze_verify") {
        return;
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let unit = std::fs::read_to_string(unit_file()).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload="));
    assert!(unit.contains("Restart=on-failure"));
    let dir = TempDir::new("unit");
    dir.write(
        "sluice@.service",
        &unit.replace("/usr/local/bin/sluice", &sluice_bin().display().to_string()),
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.0.join("sluice@edge.service"))
        .output()
        .expect("running systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn check_config_accepts_a_good_file_and_names_the_line_of_a_bad_one() {
    let dir = TempDir::new("check-config");
    let good = dir.write(
        "edge.toml",
        "iface = [\"eth0\", \"eth1\"]\nudp = \"9000,9100-9110\"\nqueues = 2\nbusy-poll = true\n",
    );
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!(
            "{}: ok: app reflect on eth0, eth1, queues 2, 12 steering rule(s)",
            good.display()
        )
    );

    let bad = dir.write(
        "bad.toml",
        "iface = \"eth0\"\nudp = \"9000\"\nrx_ring = 1024\n",
    );
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.trim(),
        format!(
            "sluice: error: {}:3:1: rx_ring: unknown key; keys are spelled like the flags: `rx-ring`",
            bad.display()
        )
    );

    // The settings together are checked too, and the lb file the run file names.
    let lonely = dir.write("lonely.toml", "iface = \"eth0\"\n");
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .arg(&lonely)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to steer"),
        "{out:?}"
    );
    dir.write("lb.toml", "[[vip]]\naddress = \"10.0.0.1\"\n");
    let lb = dir.write(
        "lb-run.toml",
        "iface = \"eth0\"\napp = \"lb\"\nlb-config = \"lb.toml\"\n",
    );
    let out = Command::new(sluice_bin())
        .arg("check-config")
        .arg(&lb)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("{}:", dir.0.join("lb.toml").display())),
        "the lb file's error names it: {stderr}"
    );
}

/// `sluice run --config FILE` under a NOTIFY_SOCKET, as systemd starts the unit: READY=1
/// arrives, and by then the program is attached and the port echoes; SIGHUP (`systemctl
/// reload`) leaves a reflect engine running; SIGTERM stops it cleanly.
#[test]
fn run_from_a_config_file_notifies_systemd_when_ready() {
    if !require_root("run_from_a_config_file_notifies_systemd_when_ready") {
        return;
    }
    let bed = common::bed(1);
    let dir = TempDir::new("notify");
    let run = dir.write(
        "run.toml",
        &format!(
            "iface = \"{}\"\nudp = \"9000\"\njson = true\nstats-interval = 0\nxdp-mode = \"auto\"\n",
            bed.engine().iface()
        ),
    );
    let sock_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(&run)
        .env("NOTIFY_SOCKET", &sock_path);
    let started = Instant::now();
    let mut engine = Engine::spawn_in(bed.engine().ns(), cmd);
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no READY=1 within 30 s ({e}); stderr:\n{}",
            engine.stderr_text()
        )
    });
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    assert!(
        msg.contains(&format!("STATUS=serving {}", bed.engine().iface())),
        "{msg:?}"
    );
    eprintln!("READY=1 after {:?}", started.elapsed());
    assert!(
        xdp_attached(&bed),
        "READY=1 came before the program was attached"
    );
    wait_echo_ready(&bed, &mut engine, false, 9000);

    // `systemctl reload` on an app with nothing to reload must not kill it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(engine.is_running(), "SIGHUP killed a reflect engine");
    wait_echo_ready(&bed, &mut engine, false, 9000);
    let fin = engine.stop();
    common::assert_census(&fin);
    assert!(!xdp_attached(&bed));
}

/// Run `script` with `sh -c` in `ns` inside a private mount namespace with a bpffs of its own
/// (xdp-tools keep their state there; it is gone when the script ends, the netlink-attached
/// program stays). Returns (success, stdout + stderr).
fn xdp_tools(ns: &sluice_testbed::Netns, script: &str) -> (bool, String) {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "sh",
        "-c",
        &format!("mount -t bpf bpf /sys/fs/bpf && {script}"),
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let out = ns.spawn(&mut cmd).unwrap().wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The XDP program on the engine end: (mode, id).
fn xdp_holder(bed: &sluice_testbed::TestBed) -> Option<(&'static str, u32)> {
    let iface = bed.engine().iface().to_string();
    bed.engine()
        .ns()
        .run(move || {
            let mut nl = sluice::control::netlink::Netlink::open().unwrap();
            sluice::control::link::xdp_attachment(&mut nl, &iface)
                .unwrap()
                .map(|a| (a.mode, a.prog_id))
        })
        .unwrap()
}

/// Does a datagram from the peer to the engine end's `port` reach a kernel socket there?
fn kernel_gets(bed: &sluice_testbed::TestBed, port: u16) -> bool {
    let addr = bed.engine().ipv4();
    let rx = bed
        .engine()
        .ns()
        .run(move || std::net::UdpSocket::bind((addr, port)))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let bind = bed.peer().ipv4();
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        bed.peer()
            .ns()
            .run(move || {
                let tx = std::net::UdpSocket::bind((bind, 0)).unwrap();
                tx.send_to(b"coexist", (addr, port)).unwrap();
            })
            .unwrap();
        if rx.recv(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

/// Issue 12 item 4, as an operator would meet it: xdp-filter holds the interface when sluice
/// starts. sluice refuses in one line naming the program (name, id, mode, not a libxdp
/// dispatcher) and what to do, exits non-zero, and xdp-filter stays attached and keeps
/// filtering. The other way round, xdp-filter cannot take an interface sluice serves, and
/// sluice keeps serving.
#[test]
fn sluice_refuses_an_interface_xdp_filter_holds_and_leaves_it_working() {
    let test = "sluice_refuses_an_interface_xdp_filter_holds_and_leaves_it_working";
    if !require_root(test) || !have_tool("xdp-filter", test) {
        return;
    }
    let bed = common::bed(1);
    let iface = bed.engine().iface().to_string();
    let (ok, out) = xdp_tools(
        bed.engine().ns(),
        &format!(
            "xdp-filter load -v {iface} && xdp-filter port 9999 -p udp -m dst && \
             xdp-loader status {iface}"
        ),
    );
    eprintln!("{out}");
    assert!(ok, "xdp-filter load failed:\n{out}");
    let (mode, id) = xdp_holder(&bed).expect("xdp-filter attached");
    assert!(kernel_gets(&bed, 9998), "xdp-filter passes other ports");
    assert!(!kernel_gets(&bed, 9999), "xdp-filter drops port 9999");

    for xdp_mode in ["auto", "skb", "driver"] {
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["run", "--iface", &iface, "--udp", "9000", "--duration", "5"])
            .args(["--xdp-mode", xdp_mode])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let out = bed
            .engine()
            .ns()
            .spawn(&mut cmd)
            .unwrap()
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "--xdp-mode {xdp_mode}: {stderr}"
        );
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("sluice: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        let expect = format!(
            "sluice: error: {iface} already has an XDP program that sluice did not attach: \
             `xdpfilt_alw_all` (id {id}, {mode} mode, attached through netlink, not a libxdp \
             dispatcher); sluice never replaces or detaches it: unload it with the tool that \
             loaded it (`xdp-filter unload {iface}`"
        );
        assert!(
            errors[0].starts_with(&expect),
            "{}\nexpected: {expect}",
            errors[0]
        );
        assert_eq!(
            xdp_holder(&bed),
            Some((mode, id)),
            "xdp-filter is still attached"
        );
    }
    assert!(
        kernel_gets(&bed, 9998),
        "xdp-filter still passes other ports"
    );
    assert!(!kernel_gets(&bed, 9999), "xdp-filter still drops port 9999");

    // The other way round: sluice serves; xdp-filter is refused by the kernel.
    let (ok, out) = xdp_tools(
        bed.engine().ns(),
        &format!("ip link set dev {iface} xdp off"),
    );
    assert!(ok, "{out}");
    let mut engine = common::start_ready(&bed, &["--udp", "9000"], 9000);
    let ours = xdp_holder(&bed).expect("sluice attached");
    let (ok, out) = xdp_tools(bed.engine().ns(), &format!("xdp-filter load {iface}"));
    eprintln!("xdp-filter load while sluice serves: {out}");
    assert!(!ok, "xdp-filter loaded over sluice:\n{out}");
    assert_eq!(xdp_holder(&bed), Some(ours));
    wait_echo_ready(&bed, &mut engine, false, 9000);
    engine.stop();
}
