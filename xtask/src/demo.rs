//! `cargo xtask demo`: sluice on a throwaway veth pair — every echo verified, then generator
//! traffic with live Mpps and latency percentiles.
//!
//! Builds release, then runs `sluice-bench demo`, which creates two namespaces joined by a veth
//! pair (sluice-testbed), runs `sluice run --app reflect` on one end and, on the other, first a
//! kernel-socket UDP client whose every echo is checked byte for byte, then the XDP live-frames
//! generator for `--seconds` (default 10) with the AF_XDP receiver timing every reflected frame.
//! It removes the namespaces and exits non-zero if any echo was lost or differed.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// Run the demo. `--seconds N` (1..=600) and `--pps N` (0 = max) are passed on.
pub fn run(args: &[String]) -> Result<()> {
    let mut pass: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" | "--pps" => {
                let v = it.next().with_context(|| format!("{a} needs a value"))?;
                v.parse::<u64>()
                    .with_context(|| format!("{a} takes a whole number"))?;
                pass.push(a.clone());
                pass.push(v.clone());
            }
            other => bail!("unknown demo argument {other:?} (known: --seconds N, --pps N)"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the demo creates network namespaces and attaches XDP: run it as root (sudo -E cargo xtask demo)"
        );
    }
    let release = crate::build_release()?;
    let st = Command::new(release.join("sluice-bench"))
        .arg("demo")
        .args(["--sluice", &release.join("sluice").to_string_lossy()])
        .args(&pass)
        .status()
        .context("running sluice-bench demo")?;
    if !st.success() {
        bail!("demo failed ({st})");
    }
    Ok(())
}
