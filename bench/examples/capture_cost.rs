//! What packet capture costs the worker, per packet: the reflect step over memory with no
//! capture tap, with an unarmed tap (capture off: what every worker has), capturing received
//! frames, and capturing received and sent frames (the rings drained by a thread on core 0).
//! The four run interleaved in short chunks (128 Ki packets each, 380 rounds), so a busy
//! machine slows them alike; min, p10 and median per variant. The `pipeline` scenario has the
//! same cases in its report; this finer interleaving is for a shared machine.
//!
//! `cargo run --release -p sluice-bench --example capture_cost` (the worker on core 1).
// Four variants kept in parallel vectors (transport, scratch, tap, app, samples) indexed by
// variant: an index loop reads plainest here.
#![allow(clippy::needless_range_loop)]

use sluice::apps::reflect::Reflect;
use sluice::batch::PortId;
use sluice::worker::capture::{Filter, Session, SessionStats, Tap};
use sluice::worker::mem::MemTransport;
use sluice::worker::{Local, Scratch, step};
use sluice_bench::pipeline::Frames;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn main() {
    let mut set = nix::sched::CpuSet::new();
    set.set(1).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
    for frames in [Frames::Udp4Min, Frames::Udp4Max] {
        let t = frames.templates(None).unwrap();
        let refs: Vec<&[u8]> = t.iter().map(Vec::as_slice).collect();
        // variants: 0 no tap, 1 tap off, 2 capturing rx, 3 capturing rx+tx
        let mut ts: Vec<MemTransport> = (0..4)
            .map(|_| MemTransport::new(&refs, 4096, 2048))
            .collect();
        let mut sc: Vec<Box<Scratch>> = (0..4).map(|_| Scratch::new()).collect();
        let taps: Vec<Arc<Tap>> = (0..4).map(|_| Arc::new(Tap::default())).collect();
        for v in 1..4 {
            sc[v].set_capture(taps[v].clone());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut drains = Vec::new();
        let mut stats = Vec::new();
        for v in 2..4 {
            let (p, mut c) = rtrb::RingBuffer::new(4 << 20);
            let st = Arc::new(SessionStats::default());
            stats.push(st.clone());
            taps[v].arm(Session::new(
                v as u64,
                p,
                Filter {
                    port: None,
                    tx: v == 3,
                    snaplen: 65535,
                },
                st,
            ));
            let f = stop.clone();
            drains.push(std::thread::spawn(move || {
                let mut s = nix::sched::CpuSet::new();
                s.set(0).unwrap();
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &s).unwrap();
                while !f.load(Ordering::Relaxed) {
                    let n = c.slots();
                    match c.read_chunk(n) {
                        Ok(ch) if n > 0 => ch.commit_all(),
                        _ => std::thread::yield_now(),
                    }
                }
            }));
        }
        let mut apps: Vec<Reflect> = (0..4).map(|_| Reflect::new()).collect();
        let mut c = Local::default();
        let steps = 2000u64; // 128k packets per chunk
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); 4];
        for round in 0..400 {
            for v in 0..4 {
                let t0 = Instant::now();
                for _ in 0..steps {
                    step(&mut ts[v], PortId(0), &mut apps[v], &mut sc[v], 64, &mut c);
                }
                let ns = t0.elapsed().as_nanos() as f64 / (steps * 64) as f64;
                if round >= 20 {
                    samples[v].push(ns);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        for d in drains {
            d.join().unwrap();
        }
        for (i, st) in stats.iter().enumerate() {
            println!(
                "variant {}: recorded {} dropped {}",
                i + 2,
                st.recorded.load(Ordering::Relaxed),
                st.dropped.load(Ordering::Relaxed)
            );
        }
        let names = ["no tap", "tap off", "capturing rx", "capturing rx+tx"];
        for v in 0..4 {
            let s = &mut samples[v];
            s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{:?} {:<16} min {:6.2}  p10 {:6.2}  median {:6.2} ns/packet",
                frames,
                names[v],
                s[0],
                s[s.len() / 10],
                s[s.len() / 2]
            );
        }
    }
}
