//! Per-worker counters: written by one worker thread, read by the control thread.
//!
//! The worker accumulates in a plain [`Local`] struct and publishes it with relaxed stores once
//! per batch (single writer, so no read-modify-write is needed). Each worker's block is
//! cache-line padded so two workers never share a line.

use crate::apps::DropReason;
use crate::xsk::{BatchOutcome, Census, KernelStats};
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Counters of one worker as plain numbers (the worker's private copy, and snapshots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Local {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received (Ethernet frame without FCS).
    pub rx_bytes: u64,
    /// Frames queued for transmission.
    pub tx_packets: u64,
    /// Bytes queued for transmission.
    pub tx_bytes: u64,
    /// Frames dropped because the TX ring was full.
    pub tx_ring_full: u64,
    /// Frames dropped by the app, by reason (index: [`DropReason::index`]).
    pub drops: [u64; DropReason::COUNT],
    /// Descriptors outside the UMEM (never expected).
    pub bad_desc: u64,
    /// Batches that had at least one frame.
    pub batches: u64,
    /// Loop rounds that found the RX ring empty.
    pub empty_polls: u64,
    /// Times the worker went to sleep in `poll()`.
    pub sleeps: u64,
    /// TX kicks (`sendto`) made because the kernel asked for a wakeup.
    pub kicks: u64,
    /// TX kicks that returned an error (EAGAIN/EBUSY/ENOBUFS/ENETDOWN: counted, retried).
    pub kick_errors: u64,
    /// Fill-ring wakeups (`recvfrom`) made because the driver asked.
    pub fill_wakeups: u64,
    /// Frames that found no room in the fill ring and waited in the worker's stash.
    pub fill_shortfall: u64,
}

impl Local {
    /// Fold one batch's outcome in.
    #[inline]
    pub fn add_batch(&mut self, o: &BatchOutcome) {
        self.rx_packets += u64::from(o.rx);
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += u64::from(o.tx);
        self.tx_bytes += o.tx_bytes;
        self.tx_ring_full += u64::from(o.tx_ring_full);
        for (d, s) in self.drops.iter_mut().zip(o.drops) {
            *d += u64::from(s);
        }
        self.bad_desc += u64::from(o.bad_desc);
        self.batches += 1;
    }

    /// Frames dropped for any reason (app verdicts, full TX ring, bad descriptors).
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum::<u64>() + self.tx_ring_full + self.bad_desc
    }

    /// Element-wise sum (for totals over workers).
    pub fn add(&mut self, o: &Local) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_ring_full += o.tx_ring_full;
        for (d, s) in self.drops.iter_mut().zip(o.drops) {
            *d += s;
        }
        self.bad_desc += o.bad_desc;
        self.batches += o.batches;
        self.empty_polls += o.empty_polls;
        self.sleeps += o.sleeps;
        self.kicks += o.kicks;
        self.kick_errors += o.kick_errors;
        self.fill_wakeups += o.fill_wakeups;
        self.fill_shortfall += o.fill_shortfall;
    }
}

const N_COUNTERS: usize = 13 + DropReason::COUNT;
const N_CENSUS: usize = 7;
const N_KERNEL: usize = 6;

/// The shared, cache-line padded block one worker publishes into.
#[derive(Default)]
pub struct Shared {
    counters: CachePadded<[AtomicU64; N_COUNTERS]>,
    census: CachePadded<[AtomicI64; N_CENSUS]>,
    kernel: [AtomicU64; N_KERNEL],
}

impl Shared {
    /// Publish the worker's counters (worker thread only).
    #[inline]
    pub fn publish(&self, l: &Local) {
        let c = &*self.counters;
        let vals = [
            l.rx_packets,
            l.rx_bytes,
            l.tx_packets,
            l.tx_bytes,
            l.tx_ring_full,
            l.bad_desc,
            l.batches,
            l.empty_polls,
            l.sleeps,
            l.kicks,
            l.kick_errors,
            l.fill_wakeups,
            l.fill_shortfall,
        ];
        for (a, v) in c.iter().zip(vals.iter().chain(l.drops.iter())) {
            a.store(*v, Relaxed);
        }
    }

    /// Read a snapshot of the counters (any thread).
    pub fn snapshot(&self) -> Local {
        let c: Vec<u64> = self.counters.iter().map(|a| a.load(Relaxed)).collect();
        let mut drops = [0; DropReason::COUNT];
        drops.copy_from_slice(&c[13..]);
        Local {
            rx_packets: c[0],
            rx_bytes: c[1],
            tx_packets: c[2],
            tx_bytes: c[3],
            tx_ring_full: c[4],
            bad_desc: c[5],
            batches: c[6],
            empty_polls: c[7],
            sleeps: c[8],
            kicks: c[9],
            kick_errors: c[10],
            fill_wakeups: c[11],
            fill_shortfall: c[12],
            drops,
        }
    }

    /// Publish a frame census (worker thread only).
    pub fn publish_census(&self, c: &Census) {
        let vals = [
            c.total as i64,
            c.fill as i64,
            c.rx as i64,
            c.worker as i64,
            c.tx as i64,
            c.completion as i64,
            c.kernel,
        ];
        for (a, v) in self.census.iter().zip(vals) {
            a.store(v, Relaxed);
        }
    }

    /// The last census the worker published.
    pub fn census(&self) -> Census {
        let v: Vec<i64> = self.census.iter().map(|a| a.load(Relaxed)).collect();
        Census {
            total: v[0] as u64,
            fill: v[1] as u64,
            rx: v[2] as u64,
            worker: v[3] as u64,
            tx: v[4] as u64,
            completion: v[5] as u64,
            kernel: v[6],
        }
    }

    /// Publish the kernel's socket statistics (worker thread only).
    pub fn publish_kernel(&self, k: &KernelStats) {
        let vals = [
            k.rx_dropped,
            k.rx_invalid_descs,
            k.tx_invalid_descs,
            k.rx_ring_full,
            k.rx_fill_ring_empty,
            k.tx_ring_empty,
        ];
        for (a, v) in self.kernel.iter().zip(vals) {
            a.store(v, Relaxed);
        }
    }

    /// The last kernel statistics the worker published.
    pub fn kernel(&self) -> KernelStats {
        let v: Vec<u64> = self.kernel.iter().map(|a| a.load(Relaxed)).collect();
        KernelStats {
            rx_dropped: v[0],
            rx_invalid_descs: v[1],
            tx_invalid_descs: v[2],
            rx_ring_full: v[3],
            rx_fill_ring_empty: v[4],
            tx_ring_empty: v[5],
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn publish_snapshot_round_trip() {
        let s = Shared::default();
        let mut l = Local::default();
        let mut o = BatchOutcome {
            rx: 5,
            rx_bytes: 320,
            tx: 3,
            tx_bytes: 192,
            ..Default::default()
        };
        o.drops[DropReason::Truncated.index()] = 2;
        l.add_batch(&o);
        l.kicks = 7;
        l.fill_shortfall = 9;
        s.publish(&l);
        let got = s.snapshot();
        assert_eq!(got, l);
        assert_eq!(got.dropped(), 2);
        assert_eq!(got.drops[DropReason::Truncated.index()], 2);
    }

    #[test]
    fn census_round_trip() {
        let s = Shared::default();
        let c = Census {
            total: 8,
            fill: 3,
            rx: 1,
            worker: 1,
            tx: 1,
            completion: 1,
            kernel: 1,
        };
        s.publish_census(&c);
        assert_eq!(s.census(), c);
    }
}
