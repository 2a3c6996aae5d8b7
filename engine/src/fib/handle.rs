//! The current forwarding table as the workers see it: an [`ArcSwap`] a control thread replaces
//! whenever the kernel's tables change (`control::fib_updater`), read lock-free once per batch.

use super::Fib;
use arc_swap::{ArcSwap, Guard};
use std::sync::Arc;

/// The current forwarding table, shared by the updater and the workers. Cloning shares it.
#[derive(Clone, Debug)]
pub struct FibHandle(Arc<ArcSwap<Fib>>);

impl FibHandle {
    /// A handle holding `fib`.
    pub fn new(fib: Fib) -> Self {
        FibHandle(Arc::new(ArcSwap::from_pointee(fib)))
    }

    /// The current table, for one batch: lock-free and without touching the reference count in
    /// the common case. Don't keep the guard across batches (it would pin the table; use
    /// [`FibHandle::load_full`] for that).
    #[inline]
    pub fn load(&self) -> Guard<Arc<Fib>> {
        self.0.load()
    }

    /// The current table as an `Arc`, which stays valid as long as it is held.
    pub fn load_full(&self) -> Arc<Fib> {
        self.0.load_full()
    }

    /// Replaces the table; readers see it from their next `load`.
    pub fn store(&self, fib: Fib) {
        self.0.store(Arc::new(fib));
    }
}
