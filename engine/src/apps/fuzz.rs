//! How many cases the apps' property tests run (test builds only).
//!
//! The normal suite runs [`NORMAL_CASES`] per frame property, enough to hit every drop reason
//! on each run. The long run sets `SLUICE_PROPTEST_CASES` (e.g. `1000000`, with `--release`:
//! see the README's *Testing* section) and every frame property of every app runs that many:
//! each of them throws random bytes or mutated valid frames at the app, and none may panic.

use proptest::test_runner::Config;

/// Cases per frame property in the normal suite.
pub const NORMAL_CASES: u32 = 1024;

/// `SLUICE_PROPTEST_CASES` if set (a positive number), else `normal`.
pub fn cases(normal: u32) -> u32 {
    std::env::var("SLUICE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(normal)
}

/// The configuration of a frame property: [`cases`]`(`[`NORMAL_CASES`]`)`, otherwise proptest's
/// defaults (a failure is saved under `proptest-regressions/` and replayed first next time).
pub fn config() -> Config {
    Config {
        cases: cases(NORMAL_CASES),
        ..Config::default()
    }
}
