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
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| d.join(tool).is_file())
    });
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
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout.trim(),
        format!(
            "{}: ok: app reflect on eth0, eth1, queues 2, 12 steering rule(s)",
            good.display()
        )
    );

    let bad = dir.write("bad.toml", "iface = \"eth0\"\nudp = \"9000\"\nrx_ring = 1024\n");
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
    let lb = dir.write("lb-run.toml", "iface = \"eth0\"\napp = \"lb\"\nlb-config = \"lb.toml\"\n");
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
    assert!(msg.contains(&format!("STATUS=serving {}", bed.engine().iface())), "{msg:?}");
    eprintln!("READY=1 after {:?}", started.elapsed());
    assert!(xdp_attached(&bed), "READY=1 came before the program was attached");
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
