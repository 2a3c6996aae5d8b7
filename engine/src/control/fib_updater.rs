//! Keeping the fast path's forwarding table current: publishing a new [`Fib`] to the workers
//! after each kernel change.
//!
//! The table is immutable; a change builds a whole new one and swaps it into a [`FibHandle`]
//! (an [`arc_swap::ArcSwap`]). A worker `load`s the handle once per batch: no lock, no syscall, and a table
//! it holds stays valid (it is an `Arc`) however many newer ones are published meanwhile.
//! [`FibUpdater`] is the control thread that does the rebuilding: it sleeps on the mirror's
//! [`SnapshotWatch`] and wakes as soon as a snapshot is published, so a kernel change reaches the
//! workers within the mirror's event handling plus one build (well under a millisecond for a
//! host's table).

use super::mirror::SnapshotWatch;
use crate::fib::{Fib, FibHandle};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long the updater waits for a new snapshot before it looks at its stop flag; bounds
/// [`FibUpdater::stop`].
const STOP_POLL: Duration = Duration::from_millis(50);

/// What went wrong in the forwarding table's updater.
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    /// The updater thread could not be started.
    #[error("starting the forwarding-table updater thread")]
    Spawn(#[source] io::Error),
    /// The updater thread panicked.
    #[error("the forwarding-table updater thread panicked")]
    Panicked,
}

/// The control thread that rebuilds the table on every snapshot the mirror publishes. Dropping it
/// stops the thread; the handle keeps the last table.
pub struct FibUpdater {
    handle: FibHandle,
    shared: Arc<UpdaterShared>,
    thread: Option<JoinHandle<()>>,
}

struct UpdaterShared {
    stop: AtomicBool,
    /// The mirror generation the current table was built from.
    generation: AtomicU64,
    /// Tables built (the first one included).
    builds: AtomicU64,
}

impl FibUpdater {
    /// Build the table from `watch`'s current snapshot (before this returns) and start the
    /// thread that rebuilds it whenever the mirror publishes a new one. `ports` are the
    /// interfaces the engine serves (see [`Fib::from_snapshot`]); to change them, start a new
    /// updater. With `down` (one flag per port, in `ports` order) it also keeps each port's
    /// flag set while its link is not running, from the same snapshot as each table, so the
    /// workers' view of which ports can send and the table's never disagree for long (the
    /// engine's own link supervisor polls, tens of milliseconds later).
    pub fn spawn(
        watch: SnapshotWatch,
        ports: Vec<u32>,
        down: Option<Arc<[AtomicBool]>>,
    ) -> Result<FibUpdater, FibError> {
        let (generation, snap) = watch.latest();
        let mark = move |snap: &crate::netstate::Snapshot, ports: &[u32]| {
            if let Some(down) = &down {
                for (flag, &ifindex) in down.iter().zip(ports) {
                    let running = snap.link(ifindex).is_some_and(|l| l.is_running());
                    flag.store(!running, Ordering::Relaxed);
                }
            }
        };
        mark(&snap, &ports);
        let handle = FibHandle::new(Fib::from_snapshot(&snap, &ports));
        let shared = Arc::new(UpdaterShared {
            stop: AtomicBool::new(false),
            generation: AtomicU64::new(generation),
            builds: AtomicU64::new(1),
        });
        let (h, sh) = (handle.clone(), Arc::clone(&shared));
        let thread = thread::Builder::new()
            .name("sluice-fib".into())
            .spawn(move || {
                let mut seen = generation;
                while !sh.stop.load(Ordering::Relaxed) {
                    if watch.wait_newer(seen, STOP_POLL) <= seen {
                        continue;
                    }
                    let (g, snap) = watch.latest();
                    h.store(Fib::from_snapshot(&snap, &ports));
                    mark(&snap, &ports);
                    seen = g;
                    sh.generation.store(g, Ordering::Release);
                    sh.builds.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(FibError::Spawn)?;
        Ok(FibUpdater {
            handle,
            shared,
            thread: Some(thread),
        })
    }

    /// The handle the workers load from.
    pub fn handle(&self) -> FibHandle {
        self.handle.clone()
    }

    /// The mirror generation ([`super::mirror::MirrorHandle::generation`]) the current table was built from.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// How many tables have been built, the first one included.
    pub fn builds(&self) -> u64 {
        self.shared.builds.load(Ordering::Relaxed)
    }

    /// Stops the thread (within about 50 ms).
    pub fn stop(mut self) -> Result<(), FibError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), FibError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| FibError::Panicked),
            None => Ok(()),
        }
    }
}

impl Drop for FibUpdater {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            log::error!("{e}");
        }
    }
}
