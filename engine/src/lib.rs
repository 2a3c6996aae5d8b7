//! sluice: a kernel-bypass packet-processing engine for Linux.
//!
//! An XDP program ([`steer`]) steers selected UDP/TCP flows into AF_XDP sockets ([`xsk`]); one
//! pinned [`worker`] per receive queue runs a packet function — an [`App`] — over batches of
//! frames in place, parsed with the zero-copy views in [`wire`], and sends them back out. The
//! [`engine`] starts, supervises and stops all of it from one [`EngineConfig`]; the [`control`]
//! plane mirrors the kernel's tables and serves `sluice ctl` and metrics.
//!
//! # Writing an app
//!
//! An app sees a [`Batch`] of frames and sets a [`Verdict`] for each: send it back out
//! ([`Verdict::Tx`], after rewriting it in place) or drop it with a [`DropReason`] that the
//! worker counts. Apps are sans-IO — no sockets, no rings — so they are unit-tested on byte
//! arrays, or through the worker's real batch code with [`worker::mem::MemTransport`] and
//! [`worker::step`].
//!
//! ```
//! use sluice::{App, Batch, DropReason, Verdict};
//!
//! /// Sends back every frame of at least 60 bytes unchanged; drops the rest.
//! struct Echo;
//!
//! impl App for Echo {
//!     fn name(&self) -> &'static str {
//!         "echo"
//!     }
//!     fn process(&mut self, batch: &mut Batch<'_, '_>) {
//!         for (frame, verdict) in batch.iter_mut() {
//!             *verdict = if frame.len() >= 60 {
//!                 Verdict::Tx
//!             } else {
//!                 Verdict::Drop(DropReason::Truncated)
//!             };
//!         }
//!     }
//! }
//!
//! // Through the worker's batch step, over memory:
//! use sluice::worker::{Local, Scratch, mem::MemTransport, step};
//! use sluice::batch::PortId;
//! let mut t = MemTransport::new(&[&[0u8; 60], &[0u8; 20]], 64, 2048);
//! let mut counters = Local::default();
//! step(&mut t, PortId(0), &mut Echo, &mut Scratch::new(), 64, &mut counters);
//! assert_eq!((counters.tx_packets, counters.drops[DropReason::Truncated.index()]), (32, 32));
//! ```
//!
//! Running it on an interface is [`engine::run`] with an [`EngineConfig`]; the example
//! `engine/examples/uppercase.rs` is a complete UDP service.
//!
//! `unsafe` is confined to [`xsk`] and [`sys`]; every other module is safe Rust.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod apps;
pub mod batch;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod error;
pub mod fib;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod netstate;
pub mod nic;
pub mod notify;
pub mod steer;
pub mod sys;
#[cfg(test)]
mod testmsg;
pub mod wire;
pub mod worker;
pub mod xsk;

pub use apps::App;
pub use batch::{Batch, DropReason, Verdict};
pub use config::EngineConfig;
pub use engine::{Engine, RunError, Summary};
pub use steer::{L4Proto, PortList};
