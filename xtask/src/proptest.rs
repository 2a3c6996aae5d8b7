//! `cargo xtask proptest [--cases N] [--only APP,…] [--debug]`: the long property-test run
//! (issue 11 item 5). Every frame property of every app (reflect, drop, forward, lb, dns) and
//! of the shared packet parsers (`wire`) runs `N` cases (10⁶ by default), each throwing random
//! bytes or mutated valid frames at its subject; none may panic or break its assertions.
//!
//! The properties read `SLUICE_PROPTEST_CASES` (`engine/src/fuzz.rs`); the normal suite runs
//! 1,024 each. Each property runs by its exact name, so a renamed or deleted one fails this run
//! instead of being skipped. Built in release mode unless `--debug`; run it at low priority on
//! a shared machine (`nice -n 19 cargo xtask proptest`).

use anyhow::{Context, Result, bail};
use std::process::Command;
use std::time::Instant;

/// Each subject and its frame properties (test paths in the `sluice` library).
const PROPERTIES: &[(&str, &[&str])] = &[
    (
        "reflect",
        &[
            "apps::reflect::test::random_bytes_never_panic",
            "apps::reflect::test::plausible_headers_never_panic",
            "apps::reflect::test::valid_frames_reflect",
            "apps::reflect::test::mutated_valid_frames_never_panic",
            "apps::reflect::test::truncated_valid_frames_drop",
        ],
    ),
    (
        "drop",
        &[
            "apps::drop::test::random_bytes_are_dropped_untouched",
            "apps::drop::test::mutated_valid_frames_are_dropped_untouched",
        ],
    ),
    (
        "forward",
        &[
            "apps::forward::tests::random_bytes_never_panic",
            "apps::forward::tests::mutated_frames_never_panic",
            "apps::forward::tests::plausible_headers_never_panic",
        ],
    ),
    (
        "lb",
        &[
            "apps::lb::tests::any_bytes_get_a_verdict_without_panicking",
            "apps::lb::tests::mutated_vip_frames_never_panic",
        ],
    ),
    (
        "dns",
        &[
            "apps::dns::app::test::random_bytes_never_panic",
            "apps::dns::app::test::mutated_queries_never_panic",
        ],
    ),
    (
        "wire",
        &[
            "wire::test::chain_never_panics_on_random_bytes",
            "wire::test::chain_never_panics_on_plausible_frames",
            "wire::test::chain_never_panics_on_mutated_frames",
        ],
    ),
];

fn usage() -> &'static str {
    "usage: cargo xtask proptest [--cases N] [--only reflect,drop,forward,lb,dns,wire] [--debug]"
}

/// Run the long property tests.
pub fn run(args: &[String]) -> Result<()> {
    let mut cases: u64 = 1_000_000;
    let mut only: Option<Vec<String>> = None;
    let mut release = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cases" => {
                let v = it.next().context("--cases needs a number")?;
                cases = v
                    .parse()
                    .ok()
                    .filter(|&n: &u64| n > 0 && n <= u64::from(u32::MAX))
                    .with_context(|| format!("--cases: {v:?} is not a number of cases"))?;
            }
            "--only" => {
                let v = it.next().context("--only needs a list of subjects")?;
                let list: Vec<String> = v.split(',').map(str::to_string).collect();
                for s in &list {
                    if !PROPERTIES.iter().any(|(name, _)| name == s) {
                        bail!("--only: no subject {s:?}; {}", usage());
                    }
                }
                only = Some(list);
            }
            "--debug" => release = false,
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; {}", usage()),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut base = vec!["test", "-p", "sluice", "--lib"];
    if release {
        base.push("--release");
    }
    // Build first, so the timings below are the runs alone.
    println!("==> cargo {} --no-run", base.join(" "));
    let st = Command::new(&cargo)
        .args(&base)
        .arg("--no-run")
        .current_dir(crate::workspace_root())
        .status()
        .context("running cargo test --no-run")?;
    if !st.success() {
        bail!("building the tests failed ({st})");
    }
    let started = Instant::now();
    let mut report = Vec::new();
    for (subject, props) in PROPERTIES {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|s| s == subject))
        {
            continue;
        }
        println!("==> {subject}: {} properties × {cases} cases", props.len());
        let t0 = Instant::now();
        let out = Command::new(&cargo)
            .args(&base)
            .arg("--")
            .arg("--exact")
            .args(props.iter())
            .env("SLUICE_PROPTEST_CASES", cases.to_string())
            .env("RUST_BACKTRACE", "1")
            .current_dir(crate::workspace_root())
            .output()
            .context("running cargo test")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let took = t0.elapsed();
        let passed = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("test result: "))
            // "ok. 5 passed; 0 failed; …"
            .filter_map(|l| {
                l.split(". ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum::<usize>();
        if !out.status.success() {
            bail!("{subject}: a property failed (see above) after {took:.1?}");
        }
        if passed != props.len() {
            bail!(
                "{subject}: {passed} of {} properties ran: one was renamed or removed; update \
                 xtask/src/proptest.rs",
                props.len()
            );
        }
        report.push((subject, props.len(), took));
    }
    println!("==> long property run: {cases} cases per property, no failure, no panic");
    println!(
        "{:<8} {:>10} {:>16} {:>10}",
        "subject", "properties", "cases", "seconds"
    );
    for (subject, n, took) in &report {
        println!(
            "{subject:<8} {n:>10} {:>16} {:>10.1}",
            *n as u64 * cases,
            took.as_secs_f64()
        );
    }
    println!("total: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
