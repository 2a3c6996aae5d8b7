//! `cargo xtask bench`: build release binaries and run the benchmark driver (`sluice-bench`).
//!
//! The driver does the work (test bed, generator, subjects in alternating rounds, reports); this
//! verb only makes sure it and the `sluice` binary it drives are release builds, so the numbers
//! are never those of a debug build.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// Build `sluice` and `sluice-bench` in release mode and run `sluice-bench bench <args>`.
pub fn run(args: &[String]) -> Result<()> {
    // The in-memory pipeline scenario touches no interface; every other one builds a veth bed.
    let pipeline_only = args
        .windows(2)
        .any(|w| w[0] == "--scenario" && w[1] == "pipeline")
        || args.iter().any(|a| a == "--scenario=pipeline");
    if !pipeline_only && !nix::unistd::geteuid().is_root() {
        bail!(
            "benchmarks create namespaces and attach XDP: run as root (sudo -E cargo xtask bench)"
        );
    }
    let root = crate::workspace_root();
    let release = crate::build_release()?;
    let driver = release.join("sluice-bench");
    let sluice = release.join("sluice");
    let st = Command::new(&driver)
        .arg("bench")
        .args(["--sluice", &sluice.to_string_lossy()])
        .args([
            "--out",
            &root.join("bench").join("results").to_string_lossy(),
        ])
        .args(args)
        .current_dir(&root)
        .status()
        .with_context(|| format!("running {}", driver.display()))?;
    if !st.success() {
        bail!("benchmark run failed ({st})");
    }
    Ok(())
}
