//! Per-worker counters: written by one worker thread, read by the control thread.
//!
//! One list of counters ([`Local`]'s fields, declared once below) gives the worker's private
//! plain struct, its shared atomic mirror ([`Shared`]) and the names used in stats lines, JSON
//! and metrics. The worker adds into its `Local` as it goes and publishes it with relaxed
//! stores (single writer, so no read-modify-write); each worker's block is cache-line padded so
//! two workers never share a line.

use crate::batch::DropReason;
use crate::xsk::{Census, KernelStats, MAX_PORTS};
use crossbeam_utils::CachePadded;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// Counters of one worker as plain numbers (the worker's private copy, and snapshots).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Local {
            $( $(#[$doc])* pub $name: u64, )*
            /// Frames dropped by the app, by reason (index: [`DropReason::index`]).
            pub drops: [u64; DropReason::COUNT],
            /// Frames and bytes per port (index: [`crate::batch::PortId::index`]).
            pub ports: [PortCounters; MAX_PORTS],
        }

        impl Local {
            /// Names of the scalar counters, in [`Local::scalars`] order.
            pub const NAMES: [&'static str; N_SCALARS] = [$(stringify!($name)),*];

            /// The scalar counters (every field but `drops`), in [`Local::NAMES`] order.
            #[inline]
            pub fn scalars(&self) -> [u64; N_SCALARS] {
                [$(self.$name),*]
            }

            fn scalars_mut(&mut self) -> [&mut u64; N_SCALARS] {
                [$(&mut self.$name),*]
            }
        }

        const N_SCALARS: usize = [$(stringify!($name)),*].len();
    };
}

/// Number of counters in [`PortCounters`].
const PORT_VALUES: usize = 6;

/// What one worker moved through one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortCounters {
    /// Frames received on the port.
    pub rx_packets: u64,
    /// Bytes received on the port.
    pub rx_bytes: u64,
    /// Frames queued for transmission on the port.
    pub tx_packets: u64,
    /// Bytes queued for transmission on the port.
    pub tx_bytes: u64,
    /// Frames received on the port that an app dropped as `bad_l4_checksum`.
    pub l4_checksum_bad: u64,
    /// Frames received on the port that an app dropped as `partial_l4_checksum` (a sender's TX
    /// checksum offload left the checksum unfinished).
    pub l4_checksum_partial: u64,
}

impl PortCounters {
    fn values(&self) -> [u64; PORT_VALUES] {
        [
            self.rx_packets,
            self.rx_bytes,
            self.tx_packets,
            self.tx_bytes,
            self.l4_checksum_bad,
            self.l4_checksum_partial,
        ]
    }

    fn values_mut(&mut self) -> [&mut u64; PORT_VALUES] {
        [
            &mut self.rx_packets,
            &mut self.rx_bytes,
            &mut self.tx_packets,
            &mut self.tx_bytes,
            &mut self.l4_checksum_bad,
            &mut self.l4_checksum_partial,
        ]
    }
}

counters! {
    /// Frames received.
    rx_packets,
    /// Bytes received (Ethernet frame without FCS).
    rx_bytes,
    /// Frames queued for transmission.
    tx_packets,
    /// Bytes queued for transmission.
    tx_bytes,
    /// Frames the app wanted sent that found the TX ring full (recycled, counted as dropped).
    tx_ring_full,
    /// Descriptors outside the UMEM (never expected; recycled, counted as dropped).
    bad_desc,
    /// Batches that had at least one frame.
    batches,
    /// Loop rounds that found the RX ring empty.
    empty_polls,
    /// Times the worker went to sleep in `poll()`.
    sleeps,
    /// TX kicks (`sendto`) made because the kernel asked for a wakeup.
    kicks,
    /// TX kicks that returned an error (EBUSY/ENOBUFS/ENETDOWN: counted, retried).
    kick_errors,
    /// Fill-ring wakeups (`recvfrom`) made because the driver asked.
    fill_wakeups,
    /// Frames that found no room in the fill ring and waited in the worker's stash.
    fill_shortfall,
    /// Frames handed to the kernel's stack through the exception path (`Verdict::Kernel`).
    to_kernel,
    /// Frames an app dropped because their UDP/TCP checksum did not verify
    /// (`bad_l4_checksum` + `partial_l4_checksum`; per port in [`PortCounters`]).
    l4_checksum_errors,
}

impl Local {
    /// Count one frame received on `port` that the app dropped for `reason` (the worker's one
    /// place for it: the reason's counter, and the checksum counters for a checksum failure).
    #[inline]
    pub fn count_drop(&mut self, port: usize, reason: DropReason) {
        self.drops[reason.index()] += 1;
        match reason {
            DropReason::BadL4Checksum => {
                self.l4_checksum_errors += 1;
                self.ports[port].l4_checksum_bad += 1;
            }
            DropReason::PartialL4Checksum => {
                self.l4_checksum_errors += 1;
                self.ports[port].l4_checksum_partial += 1;
            }
            _ => {}
        }
    }

    /// Frames dropped for any reason (app verdicts, full TX ring, bad descriptors).
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum::<u64>() + self.tx_ring_full + self.bad_desc
    }

    /// Element-wise sum (for totals over workers).
    pub fn add(&mut self, o: &Local) {
        for (a, b) in self.scalars_mut().into_iter().zip(o.scalars()) {
            *a += b;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        for (a, b) in self.ports.iter_mut().zip(&o.ports) {
            for (x, y) in a.values_mut().into_iter().zip(b.values()) {
                *x += y;
            }
        }
    }

    /// Element-wise difference `self - earlier` (counters only grow; saturates at 0).
    pub fn since(&self, earlier: &Local) -> Local {
        let mut d = *self;
        for (a, b) in d.scalars_mut().into_iter().zip(earlier.scalars()) {
            *a = a.saturating_sub(b);
        }
        for (a, b) in d.drops.iter_mut().zip(earlier.drops) {
            *a = a.saturating_sub(b);
        }
        for (a, b) in d.ports.iter_mut().zip(&earlier.ports) {
            for (x, y) in a.values_mut().into_iter().zip(b.values()) {
                *x = x.saturating_sub(y);
            }
        }
        d
    }

    /// The first `n` ports' counters as a JSON array (`port` is the index).
    pub fn ports_json(&self, n: usize) -> Value {
        Value::Array(
            self.ports
                .iter()
                .take(n)
                .enumerate()
                .map(|(i, p)| {
                    json!({"port": i, "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes,
                           "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes,
                           "l4_checksum_bad": p.l4_checksum_bad,
                           "l4_checksum_partial": p.l4_checksum_partial})
                })
                .collect(),
        )
    }
}

impl Local {
    /// The counters as one JSON object: every scalar by name, `dropped` (the sum), and `drops`
    /// by reason name. The one shape used by stats lines, `sluice ctl stats` and final totals.
    pub fn to_json(&self) -> Value {
        let mut m: Map<String, Value> = Local::NAMES
            .iter()
            .zip(self.scalars())
            .map(|(n, v)| (n.to_string(), json!(v)))
            .collect();
        let drops: Map<String, Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(self.drops[r.index()])))
            .collect();
        m.insert("dropped".into(), json!(self.dropped()));
        m.insert("drops".into(), Value::Object(drops));
        Value::Object(m)
    }
}

/// Packet and bit rates between two snapshots `dt` seconds apart (Mpps and Gbps, 3 decimals).
pub fn rates_json(now: &Local, prev: &Local, dt: f64) -> Value {
    let d = now.since(prev);
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "rx_mpps": r3(d.rx_packets as f64 / dt / 1e6),
        "rx_gbps": r3(d.rx_bytes as f64 * 8.0 / dt / 1e9),
        "tx_mpps": r3(d.tx_packets as f64 / dt / 1e6),
        "tx_gbps": r3(d.tx_bytes as f64 * 8.0 / dt / 1e9),
    })
}

const N_COUNTERS: usize = N_SCALARS + DropReason::COUNT + PORT_VALUES * MAX_PORTS;
const N_CENSUS: usize = 7;
const N_KERNEL: usize = 6;

/// The shared, cache-line padded block one worker publishes into.
pub struct Shared {
    counters: CachePadded<[AtomicU64; N_COUNTERS]>,
    census: CachePadded<[AtomicI64; N_CENSUS]>,
    kernel: [AtomicU64; N_KERNEL],
    /// The worker's packet-capture tap (off unless the control plane arms it).
    capture: Arc<super::capture::Tap>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            counters: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
            census: CachePadded::default(),
            kernel: Default::default(),
            capture: Arc::default(),
        }
    }
}

impl Shared {
    /// The worker's packet-capture tap.
    pub fn capture(&self) -> &Arc<super::capture::Tap> {
        &self.capture
    }

    /// Publish the worker's counters (worker thread only).
    #[inline]
    pub fn publish(&self, l: &Local) {
        let ports = l.ports.iter().flat_map(PortCounters::values);
        let vals = l.scalars().into_iter().chain(l.drops).chain(ports);
        for (a, v) in self.counters.iter().zip(vals) {
            a.store(v, Relaxed);
        }
    }

    /// Read a snapshot of the counters (any thread).
    pub fn snapshot(&self) -> Local {
        let mut l = Local::default();
        let (scalars, rest) = self.counters.split_at(N_SCALARS);
        let (drops, ports) = rest.split_at(DropReason::COUNT);
        for (v, a) in l.scalars_mut().into_iter().zip(scalars) {
            *v = a.load(Relaxed);
        }
        for (v, a) in l.drops.iter_mut().zip(drops) {
            *v = a.load(Relaxed);
        }
        let port_values = l.ports.iter_mut().flat_map(|p| p.values_mut());
        for (v, a) in port_values.zip(ports) {
            *v = a.load(Relaxed);
        }
        l
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
        let [total, fill, rx, worker, tx, completion, kernel] =
            std::array::from_fn(|i| self.census[i].load(Relaxed));
        Census {
            total: total as u64,
            fill: fill as u64,
            rx: rx as u64,
            worker: worker as u64,
            tx: tx as u64,
            completion: completion as u64,
            kernel,
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
        let [
            rx_dropped,
            rx_invalid_descs,
            tx_invalid_descs,
            rx_ring_full,
            rx_fill_ring_empty,
            tx_ring_empty,
        ] = std::array::from_fn(|i| self.kernel[i].load(Relaxed));
        KernelStats {
            rx_dropped,
            rx_invalid_descs,
            tx_invalid_descs,
            rx_ring_full,
            rx_fill_ring_empty,
            tx_ring_empty,
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
        for (i, v) in l.scalars_mut().into_iter().enumerate() {
            *v = 100 + i as u64;
        }
        l.drops[DropReason::Truncated.index()] = 2;
        l.ports[1].tx_bytes = 77;
        l.ports[MAX_PORTS - 1].rx_packets = 5;
        s.publish(&l);
        let got = s.snapshot();
        assert_eq!(got, l);
        assert_eq!(got.fill_shortfall, 100 + 12);
        assert_eq!(got.dropped(), 2 + l.tx_ring_full + l.bad_desc);
        assert_eq!(Local::NAMES[0], "rx_packets");
        assert_eq!(Local::NAMES.len(), 15);
        l.count_drop(1, DropReason::PartialL4Checksum);
        l.count_drop(0, DropReason::BadL4Checksum);
        l.count_drop(0, DropReason::NotIp);
        s.publish(&l);
        let got = s.snapshot();
        assert_eq!(got, l);
        assert_eq!(got.l4_checksum_errors, 100 + 14 + 2);
        assert_eq!(
            (
                got.ports[0].l4_checksum_bad,
                got.ports[1].l4_checksum_partial
            ),
            (1, 1)
        );
    }

    #[test]
    fn add_and_since_are_inverse() {
        let mut a = Local {
            rx_packets: 5,
            kicks: 3,
            ..Default::default()
        };
        a.drops[DropReason::Policy.index()] = 7;
        let mut b = a;
        b.add(&a);
        assert_eq!(b.rx_packets, 10);
        assert_eq!(b.drops[0], 14);
        assert_eq!(b.since(&a), a);
        a.ports[2].rx_bytes = 9;
        let mut c = a;
        c.add(&a);
        assert_eq!(c.ports[2].rx_bytes, 18);
        assert_eq!(c.since(&a).ports[2].rx_bytes, 9);
        assert_eq!(c.ports_json(3)[2]["rx_bytes"], json!(18));
        assert_eq!(c.ports_json(3).as_array().unwrap().len(), 3);
    }

    #[test]
    fn json_names_every_counter() {
        let mut l = Local {
            rx_packets: 2_000_000,
            rx_bytes: 128_000_000,
            tx_ring_full: 1,
            ..Default::default()
        };
        l.drops[DropReason::Truncated.index()] = 3;
        let v = l.to_json();
        assert_eq!(v["rx_packets"], json!(2_000_000));
        assert_eq!(v["fill_shortfall"], json!(0));
        assert_eq!(v["dropped"], json!(4));
        assert_eq!(v["drops"]["truncated"], json!(3));
        assert_eq!(v["drops"]["policy"], json!(0));
        let r = rates_json(&l, &Local::default(), 2.0);
        assert_eq!(r["rx_mpps"], json!(1.0));
        assert_eq!(r["rx_gbps"], json!(0.512));
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
        let k = KernelStats {
            rx_dropped: 1,
            rx_invalid_descs: 2,
            tx_invalid_descs: 3,
            rx_ring_full: 4,
            rx_fill_ring_empty: 5,
            tx_ring_empty: 6,
        };
        s.publish_kernel(&k);
        assert_eq!(format!("{:?}", s.kernel()), format!("{k:?}"));
    }
}
