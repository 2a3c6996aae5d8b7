//! The per-queue worker: one thread per AF_XDP socket, pinned to its core.
//!
//! Owns the loop — reclaim completions, take a batch, run the app, transmit and recycle, kick —
//! and the idle policy: spin a bounded number of empty rounds, then sleep in `poll()` so an
//! idle engine costs no CPU (`busy_poll` keeps spinning). The per-batch work is [`step`], the
//! same code over AF_XDP and over memory ([`mem`]). It must never allocate, log or take a lock
//! per packet; it counts instead (see [`stats`]).

pub mod capture;
pub mod mem;
pub mod stats;
mod transport;

use crate::apps::App;
use crate::batch::PortId;
use crate::xsk::XskQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use stats::{Local, Shared};
pub use transport::{KernelPath, Scratch, Transport, step};

/// Empty rounds spun before sleeping in `poll()`. A round with nothing to do costs well under
/// 100 ns, so this is a ~100 µs window in which a new frame is picked up without a wakeup.
pub const SPIN_ROUNDS: u32 = 2048;

/// How long one `poll()` sleep lasts at most; bounds how late a stop request is noticed.
pub const IDLE_SLEEP: Duration = Duration::from_millis(100);

/// Sleep used instead while sent frames wait for completion, so they are reclaimed promptly.
pub const TX_DRAIN_SLEEP: Duration = Duration::from_millis(1);

/// Publish the frame census and kernel socket statistics every this many batches (and whenever
/// the worker goes idle). Each costs a few shared cache-line reads or one `getsockopt`.
const SLOW_STATS_EVERY: u64 = 4096;

/// How long a stopping worker waits for its TX ring to drain before it gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// What a worker needs besides its socket and app.
#[derive(Clone)]
pub struct WorkerConfig {
    /// CPU to pin to; `None` leaves the thread unpinned.
    pub core: Option<usize>,
    /// Never sleep: keep polling the rings (lowest latency, one full core).
    pub busy_poll: bool,
    /// While set, the worker touches no ring and sleeps (the link is down): no spinning, no
    /// kicks failing with ENETDOWN. It resumes within [`PARK_SLEEP`] of the flag clearing.
    pub park: Arc<AtomicBool>,
    /// Where [`crate::batch::Verdict::Kernel`] frames go; without one they are dropped
    /// (`no_kernel_path`).
    pub kernel: Option<KernelPath>,
    /// Per port, set while its link is down: frames for it go to the kernel path instead.
    pub ports_down: Option<Arc<[AtomicBool]>>,
}

/// How long a parked worker sleeps between looks at its park flag.
pub const PARK_SLEEP: Duration = Duration::from_millis(50);

/// A running worker thread; joining it gives the app back (with whatever it recorded).
pub struct WorkerHandle<A> {
    /// Queue index served.
    pub queue: u32,
    /// Core pinned to, if any.
    pub core: Option<usize>,
    /// Counters the worker publishes.
    pub shared: Arc<Shared>,
    join: thread::JoinHandle<(A, XskQueue)>,
}

impl<A> WorkerHandle<A> {
    /// True once the thread has ended (normally only after the stop flag is set).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Wait for the thread to end (after the stop flag is set) and get the app back. Returns an
    /// error string if the worker panicked.
    pub fn join(self) -> Result<A, String> {
        self.join_with_queue().map(|(app, _)| app)
    }

    /// [`WorkerHandle::join`], also getting the queue back (stopped at a batch boundary, every
    /// frame in a ring or its stash): for a hot upgrade, which hands it to a successor or, if
    /// that fails, to a new worker ([`spawn_with`]).
    pub fn join_with_queue(self) -> Result<(A, XskQueue), String> {
        self.join.join().map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "worker panicked".into())
        })
    }
}

/// Errors starting a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The OS refused the thread.
    #[error("spawning the worker thread for queue {queue}")]
    Spawn {
        /// Queue index.
        queue: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Start the worker for `q` on its own thread. It runs until `stop` is set, then drains its TX
/// ring, publishes a final census and returns.
pub fn spawn<A: App + 'static>(
    q: XskQueue,
    app: A,
    cfg: WorkerConfig,
    stop: Arc<AtomicBool>,
) -> Result<WorkerHandle<A>, WorkerError> {
    spawn_with(q, app, cfg, stop, Arc::new(Shared::default()))
}

/// [`spawn`] publishing into `shared` (a worker restarted on its queue keeps its counters).
pub fn spawn_with<A: App + 'static>(
    mut q: XskQueue,
    app: A,
    cfg: WorkerConfig,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
) -> Result<WorkerHandle<A>, WorkerError> {
    let queue = q.queue();
    let sh = shared.clone();
    let core = cfg.core;
    let join = thread::Builder::new()
        .name(format!("sluice-q{queue}"))
        .spawn(move || {
            if let Some(id) = cfg.core
                && !core_affinity::set_for_current(core_affinity::CoreId { id })
            {
                // Not fatal: the CLI already checked the core is allowed; say it once.
                log::warn!("queue {queue}: could not pin to core {id}; running unpinned");
            }
            let app = run_loop_on(&mut q, app, &cfg, &stop, &sh);
            (app, q)
        })
        .map_err(|source| WorkerError::Spawn { queue, source })?;
    Ok(WorkerHandle {
        queue,
        core,
        shared,
        join,
    })
}

/// The loop itself (public so tests and benchmarks can drive a worker on the current thread).
/// Returns the app when `stop` is set, after draining TX and publishing the final census.
pub fn run_loop<A: App>(
    mut q: XskQueue,
    app: A,
    cfg: &WorkerConfig,
    stop: &AtomicBool,
    shared: &Shared,
) -> A {
    run_loop_on(&mut q, app, cfg, stop, shared)
}

/// [`run_loop`] on a borrowed queue, which the caller keeps.
pub fn run_loop_on<A: App>(
    q: &mut XskQueue,
    mut app: A,
    cfg: &WorkerConfig,
    stop: &AtomicBool,
    shared: &Shared,
) -> A {
    // Counting goes on from what `shared` holds: zero for a new worker; a worker restarted on
    // its queue (after a hot upgrade that failed) keeps its counters instead of publishing
    // them back to zero. This thread is the only writer, so the snapshot is exact.
    let mut local = shared.snapshot();
    let mut scratch = Scratch::new();
    if let Some(k) = cfg.kernel.clone() {
        scratch.set_kernel_path(k);
    }
    if let Some(d) = cfg.ports_down.clone() {
        scratch.set_ports_down(d);
    }
    scratch.set_capture(shared.capture().clone());
    let batch = q.batch_size();
    let ports = q.port_count();
    let mut idle_rounds = 0u32;
    let mut slow_tick = 0u64;
    publish_slow(q, shared);
    while !stop.load(Ordering::Relaxed) {
        if cfg.park.load(Ordering::Relaxed) {
            shared.publish(&local);
            thread::sleep(PARK_SLEEP);
            continue;
        }
        q.reclaim();
        if q.napi_busy_polling() {
            // Preferred busy polling: this call runs the queue's NAPI (XDP, copy into the UMEM)
            // here, in turns with the app, instead of in a kernel thread competing for the core.
            local.fill_wakeups += u64::from(q.wake_fill_if_needed());
        }
        let mut got = 0;
        for port in 0..ports {
            got += step(
                q,
                PortId(port as u16),
                &mut app,
                &mut scratch,
                batch,
                &mut local,
            );
        }
        if got > 0 {
            idle_rounds = 0;
            slow_tick += 1;
            if slow_tick.is_multiple_of(SLOW_STATS_EVERY) {
                publish_slow(q, shared);
            }
            shared.publish(&local);
            continue;
        }
        local.empty_polls += 1;
        if q.tx_outstanding() > 0 {
            // Copy mode sends at most a budget of frames per kick: keep kicking until drained.
            count_kick(&mut local, q.kick_all());
        }
        if !q.napi_busy_polling() {
            // (With preferred busy polling the top of the round already made this call.)
            local.fill_wakeups += u64::from(q.wake_fill_if_needed());
        }
        idle_rounds += 1;
        if cfg.busy_poll || idle_rounds < SPIN_ROUNDS {
            if idle_rounds.is_multiple_of(256) {
                shared.publish(&local);
            }
            std::hint::spin_loop();
            continue;
        }
        // Idle: publish everything, then sleep until a frame arrives.
        idle_rounds = 0;
        local.sleeps += 1;
        shared.publish(&local);
        publish_slow(q, shared);
        let sleep = if q.tx_outstanding() > 0 {
            TX_DRAIN_SLEEP
        } else {
            IDLE_SLEEP
        };
        q.wait_readable(sleep);
    }
    // Stopping: let sent frames complete so the census shows every frame home.
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while q.tx_outstanding() > 0 && Instant::now() < deadline {
        count_kick(&mut local, q.kick_all());
        q.reclaim();
        if q.tx_outstanding() > 0 {
            thread::sleep(Duration::from_micros(200));
        }
    }
    q.reclaim();
    q.refill();
    shared.publish(&local);
    publish_slow(q, shared);
    app
}

#[inline]
fn count_kick(local: &mut Local, k: crate::xsk::Kick) {
    local.kicks += u64::from(k.kicks);
    local.kick_errors += u64::from(k.errors);
}

fn publish_slow(q: &XskQueue, shared: &Shared) {
    shared.publish_census(&q.census());
    if let Ok(k) = q.kernel_stats() {
        shared.publish_kernel(&k);
    }
}

/// Parse a CPU list like `0,2-4` into core ids (sorted, deduplicated).
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("empty entry in CPU list {s:?}"));
        }
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: usize = a
            .parse()
            .map_err(|_| format!("{a:?} is not a CPU number"))?;
        let b: usize = b
            .parse()
            .map_err(|_| format!("{b:?} is not a CPU number"))?;
        if a > b {
            return Err(format!("CPU range {part:?} runs backwards"));
        }
        if b >= 4096 {
            return Err(format!("CPU {b} is out of range"));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The CPUs this process may run on (its affinity mask), sorted.
pub fn allowed_cpus() -> Vec<usize> {
    let mut v: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,2-4").unwrap(), vec![0, 2, 3, 4]);
        assert_eq!(parse_cpu_list("3,1,1-2").unwrap(), vec![1, 2, 3]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("1,,2").is_err());
        assert!(parse_cpu_list("4-2").unwrap_err().contains("backwards"));
        assert!(parse_cpu_list("x").unwrap_err().contains("not a CPU"));
    }

    #[test]
    fn allowed_cpus_is_not_empty() {
        assert!(!allowed_cpus().is_empty());
    }
}
