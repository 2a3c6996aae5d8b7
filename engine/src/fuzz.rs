//! How many cases the frame property tests run (test builds only): those of every app
//! (reflect, drop, forward, lb, dns) and of the shared packet parsers (`wire`).
//!
//! The normal suite runs [`NORMAL_CASES`] per frame property, enough to hit every drop reason
//! on each run. The long run (`cargo xtask proptest --cases 1000000`, release build: see the
//! README's *Testing* section) sets `SLUICE_PROPTEST_CASES` and every frame property runs that
//! many: each throws random bytes or mutated valid frames at an app or the parsers, and none
//! may panic.

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
