//! `cargo xtask test`: the whole suite — unit, property, privileged integration, check-ebpf.
//!
//! The privileged tests start the `sluice` binary and the `uppercase` example, so both are built
//! first. Under `CI=true` nothing may be skipped: not being root or lacking clang is a failure,
//! not a skip.

use anyhow::{Context, Result, bail};
use std::process::Command;

fn ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("==> cargo {}", args.join(" "));
    let st = Command::new(&cargo)
        .args(args)
        .current_dir(crate::workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !st.success() {
        bail!("cargo {} failed ({st})", args.join(" "));
    }
    Ok(())
}

/// Run everything; extra arguments go to `cargo test` (e.g. a test name filter).
pub fn run(extra: &[String]) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        if ci() {
            bail!("the privileged integration tests need root, and CI=true forbids skipping them");
        }
        println!("note: not root: the privileged integration tests will be skipped (they say so)");
    }
    let clang = Command::new("clang")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if clang {
        crate::ebpf::check()?;
    } else if ci() {
        bail!("clang is not installed, so check-ebpf cannot run (apt-get install clang)");
    } else {
        println!("note: clang not installed: skipping check-ebpf (apt-get install clang)");
    }
    cargo(&["build", "-p", "sluice", "--bins", "--examples"])?;
    // `cargo test --workspace` only builds examples; their own unit tests run as a second pass.
    for targets in [&["--workspace"][..], &["-p", "sluice", "--examples"]] {
        let mut args: Vec<&str> = vec!["test"];
        args.extend(targets);
        if !extra.is_empty() {
            args.push("--");
            args.extend(extra.iter().map(String::as_str));
        }
        cargo(&args)?;
    }
    println!("==> all tests passed");
    Ok(())
}
