//! `cargo xtask soak --minutes N`: build release binaries and run `sluice-bench soak`.
//!
//! The driver (`bench/src/soak.rs`) builds its own veth pair, runs sluice reflect under a paced
//! echo load for N minutes while links flap every 30 s, a rule is added or removed every second,
//! `ctl stats` and the metrics endpoint are scraped, and a hot upgrade happens every 2 minutes;
//! then it accounts for every datagram and checks census, RSS and threads.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// Build release binaries and run `sluice-bench soak --minutes N` (default 10).
pub fn run(args: &[String]) -> Result<()> {
    let mut minutes = "10".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => minutes = it.next().context("--minutes needs a value")?.clone(),
            s if s.starts_with("--minutes=") => minutes = s["--minutes=".len()..].to_string(),
            other => {
                bail!("soak: unknown argument `{other}` (usage: cargo xtask soak [--minutes N])")
            }
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the soak creates namespaces and attaches XDP: run as root");
    }
    let root = crate::workspace_root();
    let release = crate::build_release()?;
    let st = Command::new(release.join("sluice-bench"))
        .arg("soak")
        .args(["--sluice", &release.join("sluice").to_string_lossy()])
        .args(["--minutes", &minutes])
        .current_dir(&root)
        .status()
        .context("running sluice-bench soak")?;
    if !st.success() {
        bail!("the soak failed ({st})");
    }
    Ok(())
}
