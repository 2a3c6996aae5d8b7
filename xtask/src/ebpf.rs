//! `build-ebpf` / `check-ebpf`: compile the eBPF programs in `ebpf/src` (`steer.bpf.c`, the
//! steering program; `bench.bpf.c`, the benchmark generator and sinks; `fwd.bpf.c`, the
//! benchmark-only in-kernel forwarder; all including `common.bpf.h`, steer and fwd also
//! `net.bpf.h`) and keep the committed objects honest.
//!
//! `check-ebpf` recompiles each object from its source and every header it includes, so a
//! change to `common.bpf.h` makes every object stale like a change to their `.bpf.c`. It also
//! asks clang (`-M`) which files an object depends on and refuses any outside `ebpf/src`: a
//! system header would tie the bytes to the build machine's kernel/libc headers.
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
    Program {
        source: "fwd.bpf.c",
        object: "fwd.bpf.o",
        extra_args: &[],
    },
];

fn src_dir() -> PathBuf {
    crate::workspace_root().join("ebpf").join("src")
}

/// clang in `ebpf/src` with the flags every step uses for `prog` (compile and `-M` must see
/// the same preprocessor flags).
fn clang(prog: &Program) -> Result<Command> {
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
        .args(["-Wall", "-Werror"]);
    Ok(cmd)
}

fn run_clang(mut cmd: Command, what: &str, prog: &Program) -> Result<std::process::Output> {
    let output = match cmd.stderr(std::process::Stdio::inherit()).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "`clang` not found: install it (Debian/Ubuntu: `apt-get install clang`) to build the eBPF program"
            )
        }
        Err(e) => return Err(e).context("running clang"),
    };
    if !output.status.success() {
        bail!(
            "clang failed ({}) {what} {}",
            output.status,
            src_dir().join(prog.source).display()
        );
    }
    Ok(output)
}

/// Compiles `prog` into `out` (absolute path).
fn compile(prog: &Program, out: &Path) -> Result<()> {
    let mut cmd = clang(prog)?;
    cmd.args(["-c", prog.source, "-o"]).arg(out);
    run_clang(cmd, "compiling", prog).map(drop)
}

/// The files `prog`'s object is built from, as clang's `-M` lists them (the source first);
/// fails if any is outside `ebpf/src`.
fn dependencies(prog: &Program) -> Result<Vec<String>> {
    let mut cmd = clang(prog)?;
    cmd.args(["-M", prog.source]);
    let output = run_clang(cmd, "listing the dependencies of", prog)?;
    let rule = String::from_utf8(output.stdout).context("clang -M output is not UTF-8")?;
    let deps = parse_make_rule(&rule)
        .with_context(|| format!("unexpected clang -M output for {}: {rule:?}", prog.source))?;
    let foreign: Vec<&String> = deps.iter().filter(|d| d.contains('/')).collect();
    if !foreign.is_empty() {
        bail!(
            "{} includes files outside ebpf/src: {foreign:?}; the committed objects must \
             depend only on ebpf/src (and the clang version) to be reproducible",
            prog.source
        );
    }
    Ok(deps)
}

/// The prerequisites of a one-target make rule (`x.o: a.c b.h \` continued over lines).
fn parse_make_rule(rule: &str) -> Option<Vec<String>> {
    let (_, prerequisites) = rule.split_once(": ")?;
    let deps: Vec<String> = prerequisites
        .split_whitespace()
        .filter(|w| *w != "\\")
        .map(str::to_string)
        .collect();
    (!deps.is_empty()).then_some(deps)
}

/// Rebuilds every `ebpf/src/*.bpf.o` from its `.bpf.c`.
pub fn build() -> Result<()> {
    for prog in PROGRAMS {
        let out = src_dir().join(prog.object);
        dependencies(prog)?;
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
    let deps = dependencies(prog)?.join(" + ");
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
            "{} is out of date with {deps} (committed {} bytes, fresh build {} bytes): \
             run `cargo xtask build-ebpf` and commit the object (built with clang 14, see xtask/src/ebpf.rs)",
            committed_path.display(),
            committed.len(),
            fresh.len()
        );
    }
    println!("{} matches {deps}", committed_path.display());
    Ok(())
}

#[cfg(test)]
mod test {
    use super::parse_make_rule;

    #[test]
    fn make_rules_parse() {
        assert_eq!(
            parse_make_rule("steer.bpf.o: steer.bpf.c common.bpf.h\n").unwrap(),
            ["steer.bpf.c", "common.bpf.h"]
        );
        assert_eq!(
            parse_make_rule("bench.bpf.o: bench.bpf.c \\\n  /usr/include/linux/bpf.h\n").unwrap(),
            ["bench.bpf.c", "/usr/include/linux/bpf.h"]
        );
        assert_eq!(parse_make_rule("nothing"), None);
    }
}
