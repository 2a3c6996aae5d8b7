//! sluice: a kernel-bypass packet-processing engine.
//!
//! An XDP program ([`steer`]) steers selected UDP/TCP flows into AF_XDP sockets ([`xsk`]); one
//! pinned [`worker`] per receive queue runs a packet function ([`apps`]) over batches of frames,
//! parsed with the zero-copy views in [`wire`], and sends them back out.
//!
//! `unsafe` is confined to [`xsk`] and [`sys`]; every other module is safe Rust.
#![deny(unsafe_code)]

pub mod apps;
pub mod batch;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod error;
pub mod steer;
pub mod sys;
pub mod wire;
pub mod worker;
pub mod xsk;
