//! `cargo xtask <verb>`: the project's build, check, demo, test and bench entry points.

mod bench;
mod demo;
mod ebpf;
mod test;

use anyhow::{Result, bail};
use std::path::PathBuf;

const USAGE: &str = "\
usage: cargo xtask <verb>

verbs:
  build-ebpf   rebuild the committed eBPF objects (ebpf/src/*.bpf.o) from their sources (needs clang)
  check-ebpf   fail when a committed object does not match what its source compiles to
  demo         sluice on a throwaway veth pair: echoes verified, then generator traffic live (root)
  test         the whole suite: unit, property, privileged integration, check-ebpf
  bench        side-by-side benchmarks (needs root): cargo xtask bench [--quick]
               [--scenario rxdrop|reflect|latency|sweep|idle|all] [--rounds N] [--seconds S]
               cargo xtask bench --scenario lever --lever \"--tx-budget 256\" [--lever-app drop]";

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
        "bench" => bench::run(rest),
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
