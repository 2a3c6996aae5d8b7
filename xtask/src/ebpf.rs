//! `build-ebpf` / `check-ebpf`: compile the eBPF programs in `ebpf/src` (`steer.bpf.c`, the
//! steering program, and `bench.bpf.c`, the benchmark generator and sinks) and keep the
//! committed objects honest.
//!
//! The build is reproducible: clang runs inside `ebpf/src` on the relative file name, and
//! `-fdebug-prefix-map=<abs src dir>=.` rewrites the build directory in the DWARF/BTF line
//! info, so any checkout path yields the same bytes. The bytes still depend on the clang
//! version (it is recorded in the object): the committed object is built with Debian 12's
//! `clang` (14.0.6), and CI must use the same.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One eBPF object: its source, its committed object and the clang flags specific to it.
struct Program {
    source: &'static str,
    object: &'static str,
    /// Added after the common flags.
    extra_args: &'static [&'static str],
}

/// Every object this project builds, in build order.
const PROGRAMS: &[Program] = &[
    Program {
        source: "steer.bpf.c",
        object: "steer.bpf.o",
        extra_args: &[],
    },
    Program {
        source: "bench.bpf.c",
        object: "bench.bpf.o",
        // The generator's sequence counter is an atomic fetch-and-add whose result is used:
        // BPF_ATOMIC | BPF_FETCH, which clang emits only for -mcpu=v3 (Linux >= 5.12).
        extra_args: &["-mcpu=v3"],
    },
];

fn src_dir() -> PathBuf {
    crate::workspace_root().join("ebpf").join("src")
}

/// Compiles `prog` into `out` (absolute path).
fn compile(prog: &Program, out: &Path) -> Result<()> {
    let dir = src_dir();
    let dir_str = dir
        .to_str()
        .context("the ebpf/src path is not UTF-8; clang's -fdebug-prefix-map needs it as text")?;
    let mut cmd = Command::new("clang");
    cmd.current_dir(&dir)
        .args(["-O2", "-g", "-target", "bpf"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(format!("-fdebug-prefix-map={dir_str}=."))
        .args(prog.extra_args)
        .args(["-Wall", "-Werror", "-c", prog.source, "-o"])
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
            dir.join(prog.source).display()
        );
    }
    Ok(())
}

/// Rebuilds every `ebpf/src/*.bpf.o` from its `.bpf.c`.
pub fn build() -> Result<()> {
    for prog in PROGRAMS {
        let out = src_dir().join(prog.object);
        compile(prog, &out)?;
        let len = std::fs::metadata(&out)
            .with_context(|| format!("reading {}", out.display()))?
            .len();
        println!("wrote {} ({len} bytes); commit it", out.display());
    }
    Ok(())
}

/// Fails when a committed object differs from what its source compiles to now. Checks every
/// object and reports all that are stale.
pub fn check() -> Result<()> {
    let mut stale = Vec::new();
    for prog in PROGRAMS {
        if let Err(e) = check_one(prog) {
            eprintln!("{e:#}");
            stale.push(prog.object);
        }
    }
    if !stale.is_empty() {
        bail!(
            "eBPF objects out of date or not buildable: {}",
            stale.join(", ")
        );
    }
    Ok(())
}

fn check_one(prog: &Program) -> Result<()> {
    let committed_path = src_dir().join(prog.object);
    let committed = std::fs::read(&committed_path)
        .with_context(|| format!("reading {}", committed_path.display()))?;
    let tmp = std::env::temp_dir().join(format!(
        "sluice-{}-check-{}.o",
        prog.object.trim_end_matches(".bpf.o"),
        std::process::id()
    ));
    let result = compile(prog, &tmp)
        .and_then(|()| std::fs::read(&tmp).with_context(|| format!("reading {}", tmp.display())));
    let _ = std::fs::remove_file(&tmp);
    let fresh = result?;
    if fresh != committed {
        bail!(
            "{} is out of date with {} (committed {} bytes, fresh build {} bytes): \
             run `cargo xtask build-ebpf` and commit the object (built with clang 14, see xtask/src/ebpf.rs)",
            committed_path.display(),
            prog.source,
            committed.len(),
            fresh.len()
        );
    }
    println!("{} matches its source", committed_path.display());
    Ok(())
}
