//! The worker loop allocates nothing per packet: a counting global allocator counts every
//! allocation made on the worker's thread while it reflects tens of thousands of frames, and the
//! count after the traffic must equal the count before it.

mod common;

use common::*;
use sluice::apps::reflect::Reflect;
use sluice::steer::{Action, L4Proto, Rule, Steering, XdpMode};
use sluice::worker::{Shared, WorkerConfig, run_loop};
use sluice::xsk::{BindMode, XskConfig, XskQueue};
use sluice_testbed::require_root;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Counts allocations (alloc, alloc_zeroed, realloc) made by threads that opted in.
struct Counting;

static WORKER_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNT_ME: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // try_with: during thread teardown the TLS slot may be gone; never panic in the allocator.
    if COUNT_ME.try_with(|c| c.get()).unwrap_or(false) {
        WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator unchanged; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn worker_loop_allocates_nothing_per_packet() {
    if !require_root("worker_loop_allocates_nothing_per_packet") {
        return;
    }
    let bed = bed(1);
    let iface = bed.engine().iface().to_string();
    let (q, steering) = bed
        .engine()
        .ns()
        .run(move || {
            let cfg = XskConfig {
                bind: BindMode::Copy,
                ..Default::default()
            };
            let q = XskQueue::open(&iface, 0, &cfg).expect("AF_XDP socket");
            let mut s = Steering::load_and_attach(&iface, XdpMode::Auto).expect("attach");
            s.register_socket(0, q.fd()).expect("xskmap");
            s.set_rule(Rule {
                proto: L4Proto::Udp,
                port: 9000,
                action: Action::Redirect,
            })
            .expect("rule");
            (q, s)
        })
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared::default());
    let worker = {
        let (stop, shared) = (stop.clone(), shared.clone());
        std::thread::spawn(move || {
            COUNT_ME.with(|c| c.set(true));
            let cfg = WorkerConfig {
                core: None,
                busy_poll: false,
                park: Default::default(),
                kernel: None,
                ports_down: None,
            };
            run_loop(q, Reflect::new(), &cfg, &stop, &shared);
            COUNT_ME.with(|c| c.set(false));
        })
    };

    // Warm up (first batches, first sleeps and wakeups), then count across real traffic.
    let mut cfg = echo_cfg(&bed, false, 9000);
    cfg.count = Some(2_000);
    let warm = echo(&bed, cfg.clone());
    assert_eq!(warm.echoed, 2_000, "{warm:?}");
    std::thread::sleep(Duration::from_millis(300)); // let the worker go idle once more
    let before = WORKER_ALLOCS.load(Ordering::Relaxed);
    cfg.count = Some(30_000);
    cfg.window = 128;
    cfg.sizes = vec![18, 64, 512, 1472];
    let s = echo(&bed, cfg);
    assert_eq!((s.echoed, s.lost, s.mismatched), (30_000, 0, 0), "{s:?}");
    std::thread::sleep(Duration::from_millis(300));
    let after = WORKER_ALLOCS.load(Ordering::Relaxed);
    let rx = shared.snapshot().rx_packets;
    assert!(rx >= 32_000, "worker saw {rx} frames");
    assert_eq!(
        after - before,
        0,
        "the worker thread allocated {} times while reflecting 30000 frames",
        after - before
    );

    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    drop(steering);
    let c = shared.census();
    assert_eq!(c.kernel, 0, "{c:?}");
}
