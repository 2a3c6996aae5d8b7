//! `cargo xtask <verb>`: the project's build, check, demo, test and bench entry points.

mod bench;
mod demo;
mod ebpf;
mod proptest;
mod soak;
mod test;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

const USAGE: &str = "\
usage: cargo xtask <verb>

verbs:
  build-ebpf   rebuild the committed eBPF objects (ebpf/src/*.bpf.o) from their sources (needs clang)
  check-ebpf   fail when a committed object does not match what its source compiles to
  demo         sluice on a throwaway veth pair: echoes verified, then generator traffic live (root)
  test         the whole suite: unit, property, privileged integration, check-ebpf
  proptest     the long property run: every frame property of every app (reflect, drop, forward,
               lb, dns) and of the packet parsers over N random/mutated frames each, release build:
               cargo xtask proptest [--cases N] (1000000) [--only APP,…] [--debug]
  bench        side-by-side benchmarks (needs root): cargo xtask bench [--quick]
               [--scenario rxdrop|reflect|latency|rtt|sweep|idle|pipeline|forward|lb|upgrade|dns|all] [--rounds N] [--seconds S]
               cargo xtask bench --scenario dns [--dns-profile] (sluice vs NSD vs Knot)
               cargo xtask bench --scenario lever --lever \"--tx-budget 256\" [--lever-app drop]
  soak         reflect under link flaps, rule churn, scraping and hot upgrades, then account for
               every frame, census, RSS and threads (root): cargo xtask soak [--minutes N] (10)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(verb) = args.first() else {
        println!("{USAGE}");
        bail!("no verb given");
    };
    let rest = &args[1..];
    match verb.as_str() {
        "build-ebpf" => ebpf::build(),
        "check-ebpf" => ebpf::check(),
        "demo" => demo::run(rest),
        "test" => test::run(rest),
        "proptest" => proptest::run(rest),
        "bench" => bench::run(rest),
        "soak" => soak::run(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            println!("{USAGE}");
            bail!("unknown verb `{other}`")
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Build `sluice` and `sluice-bench` in release mode and return the directory holding the
/// binaries (`$CARGO_TARGET_DIR/release`, or `target/release` under the workspace root).
pub fn build_release() -> Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("==> building sluice and sluice-bench (release)");
    let st = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "sluice",
            "-p",
            "sluice-bench",
            "--bins",
        ])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !st.success() {
        bail!("release build failed");
    }
    let target: PathBuf = std::env::var("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| root.join("target"));
    Ok(target.join("release"))
}
