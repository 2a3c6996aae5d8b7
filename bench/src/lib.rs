//! sluice-bench: traffic sources, sinks and kernel-socket baselines for sluice.
//!
//! So far: [`echo`], a windowed kernel-socket UDP echo client that verifies every echo. The
//! multi-Mpps XDP live-frames generator, receivers and baselines come with the benchmarks.
#![deny(unsafe_code)]

pub mod dns;
pub mod dut;
pub mod echo;
pub mod r#gen; // `gen` is a reserved keyword in edition 2024
pub mod kernel;
pub mod lbplan;
pub mod pace;
pub mod payload;
pub mod peers;
pub mod pipeline;
pub mod report;
pub mod route;
pub mod rtt;
pub mod rx;
pub mod soak;
mod sys;
