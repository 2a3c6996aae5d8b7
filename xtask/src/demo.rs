//! `cargo xtask demo`: reflect UDP on a throwaway veth pair for 10 s and verify every echo.
//!
//! Builds release, creates two namespaces joined by a veth pair (sluice-testbed), runs
//! `sluice run --app reflect` on one end and a windowed kernel-socket echo client on the other,
//! prints a live line per second and a summary, cleans up, and fails if any echo was lost or
//! differed from what was sent.

use anyhow::{Context, Result, bail};
use sluice_bench::echo::{EchoClient, EchoConfig};
use sluice_testbed::{TestBed, VethOpts};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PORT: u16 = 9000;

/// Run the demo. `--seconds N` changes the traffic duration (default 10).
pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 10u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a value")?
                    .parse()
                    .context("--seconds takes a whole number")?;
                if !(1..=600).contains(&seconds) {
                    bail!("--seconds must be between 1 and 600");
                }
            }
            other => bail!("unknown demo argument {other:?} (known: --seconds N)"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the demo creates network namespaces and attaches XDP: run it as root (sudo -E cargo xtask demo)"
        );
    }
    let root = crate::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("==> building sluice (release)");
    let st = Command::new(&cargo)
        .args(["build", "--release", "-p", "sluice", "--bins"])
        .current_dir(&root)
        .status()?;
    if !st.success() {
        bail!("release build failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("release").join("sluice");

    println!("==> creating a veth pair between two throwaway namespaces");
    let bed = TestBed::pair(VethOpts::default()).context("building the veth test bed")?;
    let (eng, peer) = (bed.engine(), bed.peer());
    println!(
        "    engine: netns {} {} {} / {}   peer: netns {} {} {} / {}",
        eng.ns().name(),
        eng.iface(),
        eng.ipv4(),
        eng.ipv6(),
        peer.ns().name(),
        peer.iface(),
        peer.ipv4(),
        peer.ipv6()
    );

    let mut cmd = Command::new(&bin);
    cmd.args([
        "run",
        "--iface",
        eng.iface(),
        "--app",
        "reflect",
        "--udp",
        &PORT.to_string(),
        "--stats-interval",
        "1",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    println!(
        "==> {} {}",
        bin.display(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = eng.ns().spawn(&mut cmd).context("starting sluice")?;
    let out = child.stdout.take().unwrap();
    let printer = std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            println!("    [sluice] {l}");
        }
    });

    let cfg = EchoConfig {
        target: SocketAddr::new(eng.ipv4().into(), PORT),
        bind: SocketAddr::new(peer.ipv4().into(), 0),
        flows: 4,
        window: 256,
        count: None,
        duration: Duration::from_secs(seconds),
        timeout: Duration::from_secs(1),
        sizes: vec![18, 64, 256, 512, 1024, 1472],
    };
    let result = peer.ns().run(move || -> Result<sluice_bench::echo::EchoStats> {
        let mut client = EchoClient::new(cfg).context("echo client")?;
        let ready_by = Instant::now() + Duration::from_secs(20);
        while !client.probe(Duration::from_millis(300)) {
            if Instant::now() > ready_by {
                bail!("sluice did not start echoing within 20 s");
            }
        }
        println!("==> sluice is echoing; sending UDP for {seconds} s (kernel-socket client, 256 in flight, 4 flows, 18..1472 B)");
        let mut last = (Duration::ZERO, 0u64, 0u64);
        let s = client.run(|t, s| {
            let dt = (t - last.0).as_secs_f64().max(1e-9);
            let offered = (s.sent - last.1) as f64 / dt;
            let echoed = (s.echoed - last.2) as f64 / dt;
            println!(
                "    t={:>4.1}s offered {:>9.0} pps  echoed {:>9.0} pps  loss {} mismatched {}",
                t.as_secs_f64(), offered, echoed, s.lost, s.mismatched
            );
            last = (t, s.sent, s.echoed);
        });
        Ok(s)
    })??;

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait()?;
    let _ = printer.join();
    let s = result;
    println!(
        "==> summary: sent {} echoed {} ({} bytes) lost {} mismatched {} over {seconds} s ({:.0} echoes/s)",
        s.sent,
        s.echoed,
        s.echoed_bytes,
        s.lost,
        s.mismatched,
        s.echoed as f64 / seconds as f64
    );
    drop(bed);
    println!("==> namespaces removed");
    if !status.success() {
        bail!("sluice exited with {status}");
    }
    if s.echoed == 0 || s.lost > 0 || s.mismatched > 0 || s.echoed != s.sent {
        bail!(
            "verification failed: {} sent, {} echoed intact, {} lost, {} mismatched",
            s.sent,
            s.echoed,
            s.lost,
            s.mismatched
        );
    }
    println!("==> every echo verified byte for byte");
    Ok(())
}
