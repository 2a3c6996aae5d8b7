//! Packet functions behind one trait.
//!
//! Apps are sans-IO: they see a [`Batch`] of frames as byte slices and set a [`Verdict`] per
//! frame. They never touch sockets, rings or UMEM, so they are unit- and property-tested on byte
//! arrays without root. An app must never panic on any input: a frame it cannot handle gets
//! `Verdict::Drop(reason)` and the worker counts it.

pub mod dns;
pub mod drop;
pub mod forward;
pub mod lb;
pub mod patch;
pub mod reflect;
pub mod safety;

pub use crate::batch::{Batch, DropReason, Verdict};

/// A packet function. One instance per worker, so `process` needs no locking.
pub trait App: Send {
    /// Short name for logs and stats (`reflect`, `drop`).
    fn name(&self) -> &'static str;

    /// Look at (and possibly rewrite) every frame of `batch` in place and set its verdict.
    /// Must not panic, allocate, log or block: it runs in the hot loop.
    fn process(&mut self, batch: &mut Batch<'_, '_>);
}

/// A boxed app is an app, so a front end can pick one at run time and the worker stays generic.
impl App for Box<dyn App> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    #[inline]
    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        (**self).process(batch)
    }
}
