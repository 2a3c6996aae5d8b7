//! sluice-bench: traffic sources, sinks and kernel-socket baselines for sluice.
//!
//! So far: [`echo`], a windowed kernel-socket UDP echo client that verifies every echo. The
//! multi-Mpps XDP live-frames generator, receivers and baselines come with the benchmarks.
#![deny(unsafe_code)]

pub mod dut;
pub mod echo;
pub mod payload;
pub mod report;
