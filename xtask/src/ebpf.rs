//! `build-ebpf` / `check-ebpf`: compile `ebpf/src/steer.bpf.c` and keep the committed object
//! honest.
//!
//! The build is reproducible: clang runs inside `ebpf/src` on the relative file name, and
//! `-fdebug-prefix-map=<abs src dir>=.` rewrites the build directory in the DWARF/BTF line
//! info, so any checkout path yields the same bytes. The bytes still depend on the clang
//! version (it is recorded in the object): the committed object is built with Debian 12's
//! `clang` (14.0.6), and CI must use the same.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "steer.bpf.c";
const OBJECT: &str = "steer.bpf.o";

fn src_dir() -> PathBuf {
    crate::workspace_root().join("ebpf").join("src")
}

/// Compiles the program into `out` (absolute path).
fn compile(out: &Path) -> Result<()> {
    let dir = src_dir();
    let dir_str = dir
        .to_str()
        .context("the ebpf/src path is not UTF-8; clang's -fdebug-prefix-map needs it as text")?;
    let mut cmd = Command::new("clang");
    cmd.current_dir(&dir)
        .args(["-O2", "-g", "-target", "bpf"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(format!("-fdebug-prefix-map={dir_str}=."))
        .args(["-Wall", "-Werror", "-c", SOURCE, "-o"])
        .arg(out);
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "`clang` not found: install it (Debian/Ubuntu: `apt-get install clang`) to build the eBPF program"
            )
        }
        Err(e) => return Err(e).context("running clang"),
    };
    if !status.success() {
        bail!(
            "clang failed ({status}) compiling {}",
            dir.join(SOURCE).display()
        );
    }
    Ok(())
}

/// Rebuilds `ebpf/src/steer.bpf.o` from `ebpf/src/steer.bpf.c`.
pub fn build() -> Result<()> {
    let out = src_dir().join(OBJECT);
    compile(&out)?;
    let len = std::fs::metadata(&out)
        .with_context(|| format!("reading {}", out.display()))?
        .len();
    println!("wrote {} ({len} bytes); commit it", out.display());
    Ok(())
}

/// Fails when the committed object differs from what its source compiles to now.
pub fn check() -> Result<()> {
    let committed_path = src_dir().join(OBJECT);
    let committed = std::fs::read(&committed_path)
        .with_context(|| format!("reading {}", committed_path.display()))?;
    let tmp = std::env::temp_dir().join(format!("sluice-steer-check-{}.o", std::process::id()));
    let result = compile(&tmp)
        .and_then(|()| std::fs::read(&tmp).with_context(|| format!("reading {}", tmp.display())));
    let _ = std::fs::remove_file(&tmp);
    let fresh = result?;
    if fresh != committed {
        bail!(
            "{} is out of date with {SOURCE} (committed {} bytes, fresh build {} bytes): \
             run `cargo xtask build-ebpf` and commit the object (built with clang 14, see xtask/src/ebpf.rs)",
            committed_path.display(),
            committed.len(),
            fresh.len()
        );
    }
    println!("{} matches its source", committed_path.display());
    Ok(())
}
