//! The per-worker connection table: which backend each known flow was sent to, so a flow stays
//! on its backend when the Maglev table changes under it (a backend added, drained or
//! reweighted).
//!
//! This module owns the table and its counters. It never does I/O, never locks (one table per
//! worker thread) and, after [`ConnTrack::new`], never allocates: every operation on the
//! per-packet path works inside two arrays sized at construction.
//!
//! # Layout
//!
//! - **Entries**: a fixed array of `capacity` entries (key, backend, last-seen time, state),
//!   threaded on an intrusive doubly-linked LRU list by `u32` indices; unused entries form a
//!   free list through the same links. An entry never moves, so the links stay valid.
//! - **Index**: an open-addressing hash table of (entry index, hash) pairs, a power of two
//!   ≥ 2 × capacity slots (load ≤ ½), linear probing, deletion by backward shift (no
//!   tombstones, so probe lengths do not grow with churn). The stored hash skips most key
//!   comparisons and lets a deletion find each slot's home without rehashing.
//!
//! Lookup, insert, touch, eviction and expiry are O(1) expected (a probe of ~1.5 slots for a hit
//! and ~2.5 for a miss at load ½); [`ConnTrack::remove`] and [`ConnTrack::drain`] walk the list,
//! O(len), and belong to the control plane.
//!
//! The index hash is seeded ([`ConnTrackConfig::seed`]): unlike the Maglev flow hash, which
//! must agree across engines, this one should not be predictable from outside, or crafted
//! flows could pile up in one probe run.
//!
//! # Semantics
//!
//! - [`ConnTrack::lookup_or_insert`]: a live entry answers (and becomes most recent); otherwise
//!   `pick` (the Maglev lookup) chooses and the flow is remembered. When the table is full the
//!   least recently seen entry makes room (an *eviction*, or an *expiration* if it had timed out).
//! - Idle timeouts per protocol: TCP (established), TCP closing (after a FIN or RST, see
//!   [`ConnTrack::mark_closing`]) and everything else (UDP's). An entry idle *longer* than its
//!   timeout is a miss and its entry is reused.
//! - **Drain** a backend: Maglev stops giving it new flows; this table keeps the existing ones
//!   as they are — [`ConnTrack::drain`] only counts them, so the control plane can tell when
//!   the drain has finished.
//! - **Remove** a backend: [`ConnTrack::remove`] forgets its flows at once, so their next
//!   packet misses and re-hashes to a live backend.

pub use super::flow::{BackendId, FlowKey};
use crate::wire::IpProtocol;
use std::net::{IpAddr, Ipv4Addr};

/// What the table knows of a flow's life: enough to pick its idle timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    /// Any flow not known to be closing.
    Established,
    /// A TCP flow after a FIN or RST was seen: it gets the short closing timeout.
    Closing,
}

/// Size and timeouts of a [`ConnTrack`], fixed at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnTrackConfig {
    /// Most flows remembered at once (at least 1).
    pub capacity: u32,
    /// Idle timeout of an established TCP flow, in milliseconds.
    pub tcp_timeout_ms: u64,
    /// Idle timeout of a TCP flow after FIN/RST, in milliseconds.
    pub tcp_closing_timeout_ms: u64,
    /// Idle timeout of a UDP (or any non-TCP) flow, in milliseconds.
    pub udp_timeout_ms: u64,
    /// Seed of the index hash; give each table a random one (see the module docs).
    pub seed: u64,
}

impl Default for ConnTrackConfig {
    /// 64 Ki flows; 5 min TCP, 10 s TCP closing, 30 s UDP (in the range of IPVS and Linux
    /// conntrack defaults, shorter for TCP since an LB's table is a cache, not state it owns).
    fn default() -> Self {
        ConnTrackConfig {
            capacity: 65536,
            tcp_timeout_ms: 300_000,
            tcp_closing_timeout_ms: 10_000,
            udp_timeout_ms: 30_000,
            seed: 0,
        }
    }
}

/// The table's counters since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnTrackStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found none (or only a timed-out one).
    pub misses: u64,
    /// Flows remembered (misses for which `pick` gave a backend).
    pub inserts: u64,
    /// Live entries dropped to make room for a new flow.
    pub evictions: u64,
    /// Timed-out entries dropped (found by a lookup, by making room, or by
    /// [`ConnTrack::expire_idle`]).
    pub expirations: u64,
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    entry: u32,
    hash: u32,
}

const EMPTY: Slot = Slot {
    entry: NIL,
    hash: 0,
};

#[derive(Clone, Copy)]
struct Entry {
    key: FlowKey,
    backend: BackendId,
    last_seen: u64,
    hash: u32,
    state: FlowState,
    /// Toward the most recently seen entry (NIL at the head).
    prev: u32,
    /// Toward the least recently seen entry (NIL at the tail); the free list's link when unused.
    next: u32,
}

/// A bounded flow → backend table for one worker. See the module docs for layout and rules.
pub struct ConnTrack {
    cfg: ConnTrackConfig,
    entries: Box<[Entry]>,
    index: Box<[Slot]>,
    mask: usize,
    /// Most recently seen live entry.
    head: u32,
    /// Least recently seen live entry.
    tail: u32,
    /// First unused entry.
    free: u32,
    len: u32,
    stats: ConnTrackStats,
}

impl ConnTrack {
    /// A table for `cfg.capacity` flows (at least 1); every byte it will use is allocated here.
    pub fn new(cfg: ConnTrackConfig) -> Self {
        let capacity = cfg.capacity.clamp(1, u32::MAX / 4);
        let cfg = ConnTrackConfig { capacity, ..cfg };
        let unused = Entry {
            key: FlowKey {
                src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                src_port: 0,
                dst_port: 0,
                protocol: IpProtocol(0),
            },
            backend: BackendId(0),
            last_seen: 0,
            hash: 0,
            state: FlowState::Established,
            prev: NIL,
            next: NIL,
        };
        let mut entries = vec![unused; capacity as usize].into_boxed_slice();
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = if i + 1 < capacity as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        let slots = (capacity as usize * 2).next_power_of_two();
        ConnTrack {
            cfg,
            entries,
            index: vec![EMPTY; slots].into_boxed_slice(),
            mask: slots - 1,
            head: NIL,
            tail: NIL,
            free: 0,
            len: 0,
            stats: ConnTrackStats::default(),
        }
    }

    /// The backend of `key`'s flow at time `now` (milliseconds, any monotonic origin). A live
    /// entry answers and is refreshed, whatever `pick` would say now — a flow stays on its
    /// backend. Otherwise `pick` chooses; its answer is remembered (making room if the table
    /// is full) and returned. `None` only if `pick` gives none; nothing is then remembered.
    #[inline]
    pub fn lookup_or_insert(
        &mut self,
        key: FlowKey,
        now: u64,
        pick: impl FnOnce() -> Option<BackendId>,
    ) -> Option<BackendId> {
        let hash = self.index_hash(&key);
        if let Some((slot, e)) = self.find(&key, hash) {
            if self.expired(e, now) {
                self.stats.expirations += 1;
                self.remove_at(slot, e);
            } else {
                self.stats.hits += 1;
                self.entries[e as usize].last_seen = now;
                self.unlink(e);
                self.push_front(e);
                return Some(self.entries[e as usize].backend);
            }
        }
        self.stats.misses += 1;
        let backend = pick()?;
        if self.free == NIL {
            let t = self.tail;
            if self.expired(t, now) {
                self.stats.expirations += 1;
            } else {
                self.stats.evictions += 1;
            }
            self.remove_entry(t);
        }
        let e = self.free;
        self.free = self.entries[e as usize].next;
        self.entries[e as usize] = Entry {
            key,
            backend,
            last_seen: now,
            hash,
            state: FlowState::Established,
            prev: NIL,
            next: NIL,
        };
        self.push_front(e);
        let mut i = hash as usize & self.mask;
        while self.index[i].entry != NIL {
            i = (i + 1) & self.mask;
        }
        self.index[i] = Slot { entry: e, hash };
        self.len += 1;
        self.stats.inserts += 1;
        Some(backend)
    }

    /// Marks `key`'s flow as closing (the app saw a FIN or RST), so it times out after
    /// [`ConnTrackConfig::tcp_closing_timeout_ms`]. Does not refresh it. False if unknown.
    pub fn mark_closing(&mut self, key: &FlowKey) -> bool {
        let hash = self.index_hash(key);
        match self.find(key, hash) {
            Some((_, e)) => {
                self.entries[e as usize].state = FlowState::Closing;
                true
            }
            None => false,
        }
    }

    /// Forgets `key`'s flow (its backend is gone), so the next lookup picks afresh. Not counted
    /// as an eviction or expiration. False if unknown.
    pub fn forget(&mut self, key: &FlowKey) -> bool {
        let hash = self.index_hash(key);
        match self.find(key, hash) {
            Some((slot, e)) => {
                self.remove_at(slot, e);
                true
            }
            None => false,
        }
    }

    /// The backend and state remembered for `key`, without refreshing it or checking its
    /// timeout: for the control plane and tests.
    pub fn peek(&self, key: &FlowKey) -> Option<(BackendId, FlowState)> {
        let hash = self.index_hash(key);
        self.find(key, hash).map(|(_, e)| {
            let e = &self.entries[e as usize];
            (e.backend, e.state)
        })
    }

    /// Draining `backend` leaves its flows here (Maglev no longer gives it new ones); returns
    /// how many are still remembered, so the control plane can tell when the drain is done.
    /// O(len).
    pub fn drain(&self, backend: BackendId) -> usize {
        let mut n = 0;
        let mut e = self.head;
        while e != NIL {
            let entry = &self.entries[e as usize];
            n += usize::from(entry.backend == backend);
            e = entry.next;
        }
        n
    }

    /// Forgets every flow on `backend` now, so their next packets miss and re-hash; returns
    /// how many. Not counted as evictions or expirations. O(len).
    pub fn remove(&mut self, backend: BackendId) -> usize {
        let mut n = 0;
        let mut e = self.head;
        while e != NIL {
            let next = self.entries[e as usize].next;
            if self.entries[e as usize].backend == backend {
                self.remove_entry(e);
                n += 1;
            }
            e = next;
        }
        n
    }

    /// Drops timed-out entries among the `budget` least recently seen, returning how many.
    /// Bounded work, for an idle moment of the worker loop: lookups and inserts already reclaim
    /// timed-out entries they meet, this only frees memory earlier.
    pub fn expire_idle(&mut self, now: u64, budget: usize) -> usize {
        let mut n = 0;
        let mut e = self.tail;
        for _ in 0..budget {
            if e == NIL {
                break;
            }
            let prev = self.entries[e as usize].prev;
            if self.expired(e, now) {
                self.remove_entry(e);
                self.stats.expirations += 1;
                n += 1;
            }
            e = prev;
        }
        n
    }

    /// Flows remembered now.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no flow is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most flows remembered at once.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// The counters since construction.
    pub fn stats(&self) -> ConnTrackStats {
        self.stats
    }

    /// The configuration in force (capacity after clamping).
    pub fn config(&self) -> &ConnTrackConfig {
        &self.cfg
    }

    fn expired(&self, e: u32, now: u64) -> bool {
        let entry = &self.entries[e as usize];
        let timeout = match (entry.key.protocol, entry.state) {
            (IpProtocol::TCP, FlowState::Established) => self.cfg.tcp_timeout_ms,
            (IpProtocol::TCP, FlowState::Closing) => self.cfg.tcp_closing_timeout_ms,
            _ => self.cfg.udp_timeout_ms,
        };
        now.saturating_sub(entry.last_seen) > timeout
    }

    /// A seeded hash of the whole key: five multiply-xor-rotate rounds on 64-bit words, then
    /// MurmurHash3's `fmix64`; the high half is kept.
    #[inline]
    fn index_hash(&self, key: &FlowKey) -> u32 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let words = |a: IpAddr| match a {
            IpAddr::V4(v4) => (0, u64::from(u32::from(v4))),
            IpAddr::V6(v6) => {
                let b = v6.to_bits();
                ((b >> 64) as u64, b as u64)
            }
        };
        let (s1, s2) = words(key.src);
        let (d1, d2) = words(key.dst);
        let family = u64::from(key.src.is_ipv6()) << 1 | u64::from(key.dst.is_ipv6());
        let last = u64::from(key.src_port) << 48
            | u64::from(key.dst_port) << 32
            | u64::from(key.protocol.0) << 8
            | family;
        let mut h = self.cfg.seed;
        for w in [s1, s2, d1, d2, last] {
            h = (h ^ w).wrapping_mul(K).rotate_left(31);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        (h >> 32) as u32
    }

    /// The index slot and entry holding `key`. Ends: the load is at most ½, so a probe run
    /// always meets an empty slot.
    #[inline]
    fn find(&self, key: &FlowKey, hash: u32) -> Option<(usize, u32)> {
        let mut i = hash as usize & self.mask;
        loop {
            let s = self.index[i];
            if s.entry == NIL {
                return None;
            }
            if s.hash == hash && self.entries[s.entry as usize].key == *key {
                return Some((i, s.entry));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes live entry `e`, finding its index slot first.
    fn remove_entry(&mut self, e: u32) {
        let mut i = self.entries[e as usize].hash as usize & self.mask;
        while self.index[i].entry != e {
            i = (i + 1) & self.mask;
        }
        self.remove_at(i, e);
    }

    /// Removes live entry `e`, held in index slot `slot`: backward-shift deletion in the index,
    /// then off the LRU list and onto the free list.
    fn remove_at(&mut self, slot: usize, e: u32) {
        let mut hole = slot;
        let mut j = slot;
        loop {
            j = (j + 1) & self.mask;
            let s = self.index[j];
            if s.entry == NIL {
                break;
            }
            // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
            let home = s.hash as usize & self.mask;
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.index[hole] = s;
                hole = j;
            }
        }
        self.index[hole] = EMPTY;
        self.unlink(e);
        self.entries[e as usize].next = self.free;
        self.free = e;
        self.len -= 1;
    }

    fn unlink(&mut self, e: u32) {
        let Entry { prev, next, .. } = self.entries[e as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, e: u32) {
        let old = self.head;
        {
            let entry = &mut self.entries[e as usize];
            entry.prev = NIL;
            entry.next = old;
        }
        if old == NIL {
            self.tail = e;
        } else {
            self.entries[old as usize].prev = e;
        }
        self.head = e;
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::Ipv6Addr;

    fn key(i: u32, protocol: IpProtocol) -> FlowKey {
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            src_port: (1000 + i) as u16,
            dst_port: 80,
            protocol,
        }
    }

    fn tcp(i: u32) -> FlowKey {
        key(i, IpProtocol::TCP)
    }

    fn cfg(capacity: u32) -> ConnTrackConfig {
        ConnTrackConfig {
            capacity,
            tcp_timeout_ms: 1000,
            tcp_closing_timeout_ms: 100,
            udp_timeout_ms: 300,
            seed: 7,
        }
    }

    fn b(i: u32) -> Option<BackendId> {
        Some(BackendId(i))
    }

    #[test]
    fn forget_makes_the_next_lookup_pick_again() {
        let mut t = ConnTrack::new(cfg(16));
        assert_eq!(t.lookup_or_insert(tcp(1), 0, || b(3)), b(3));
        assert_eq!(t.lookup_or_insert(tcp(2), 0, || b(3)), b(3));
        assert!(t.forget(&tcp(1)));
        assert!(!t.forget(&tcp(1)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup_or_insert(tcp(1), 1, || b(5)), b(5));
        // The other flow is untouched (the index's backward shift kept it findable).
        assert_eq!(
            t.peek(&tcp(2)),
            Some((BackendId(3), FlowState::Established))
        );
        let s = t.stats();
        assert_eq!((s.evictions, s.expirations), (0, 0));
    }

    #[test]
    fn insert_then_lookup() {
        let mut t = ConnTrack::new(cfg(16));
        assert_eq!(t.lookup_or_insert(tcp(1), 0, || b(3)), b(3));
        assert_eq!(
            t.lookup_or_insert(tcp(1), 1, || panic!("no pick on a hit")),
            b(3)
        );
        let v6 = FlowKey {
            src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            dst: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            src_port: 5,
            dst_port: 53,
            protocol: IpProtocol::UDP,
        };
        assert_eq!(t.lookup_or_insert(v6, 1, || b(4)), b(4));
        assert_eq!(t.peek(&v6), Some((BackendId(4), FlowState::Established)));
        // pick says None: nothing remembered.
        assert_eq!(t.lookup_or_insert(tcp(2), 1, || None), None);
        assert_eq!(t.peek(&tcp(2)), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.capacity(), 16);
        let s = t.stats();
        assert_eq!((s.hits, s.misses, s.inserts), (1, 3, 2));
    }

    #[test]
    fn lru_eviction_at_capacity() {
        let mut t = ConnTrack::new(cfg(3));
        for i in 0..3 {
            t.lookup_or_insert(tcp(i), u64::from(i), || b(i));
        }
        // Touch 0: 1 becomes least recent.
        t.lookup_or_insert(tcp(0), 3, || None);
        t.lookup_or_insert(tcp(3), 4, || b(3));
        assert_eq!(t.peek(&tcp(1)), None);
        assert!(t.peek(&tcp(0)).is_some() && t.peek(&tcp(2)).is_some());
        t.lookup_or_insert(tcp(4), 5, || b(4));
        assert_eq!(t.peek(&tcp(2)), None);
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats().evictions, 2);
        assert_eq!(t.stats().expirations, 0);
    }

    #[test]
    fn idle_timeouts_per_protocol() {
        let mut t = ConnTrack::new(cfg(16));
        let udp = key(1, IpProtocol::UDP);
        t.lookup_or_insert(tcp(1), 0, || b(1));
        t.lookup_or_insert(udp, 0, || b(1));
        // At 300 ms, both are live (idle = timeout is not longer than it).
        assert_eq!(t.lookup_or_insert(udp, 300, || b(2)), b(1));
        // 301 ms idle: UDP times out, its flow re-picks; TCP (1000 ms) is still live.
        assert_eq!(t.lookup_or_insert(udp, 601, || b(2)), b(2));
        assert_eq!(t.lookup_or_insert(tcp(1), 601, || b(2)), b(1));
        assert_eq!(t.stats().expirations, 1);
        assert_eq!(t.lookup_or_insert(tcp(1), 1602, || b(2)), b(2));
        assert_eq!(t.stats().expirations, 2);
        // Closing: the short timeout.
        assert!(t.mark_closing(&tcp(1)));
        assert_eq!(t.lookup_or_insert(tcp(1), 1702, || b(3)), b(2));
        assert_eq!(t.lookup_or_insert(tcp(1), 1803, || b(3)), b(3));
        assert_eq!(
            t.peek(&tcp(1)),
            Some((BackendId(3), FlowState::Established))
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn full_table_reuses_a_timed_out_entry_as_expiration() {
        let mut t = ConnTrack::new(cfg(2));
        t.lookup_or_insert(key(1, IpProtocol::UDP), 0, || b(1));
        t.lookup_or_insert(tcp(2), 200, || b(1));
        t.lookup_or_insert(tcp(3), 400, || b(1));
        assert_eq!(t.stats().expirations, 1);
        assert_eq!(t.stats().evictions, 0);
        assert_eq!(t.expire_idle(10_000, 10), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn flow_keeps_its_backend_when_pick_changes() {
        let mut t = ConnTrack::new(cfg(16));
        assert_eq!(t.lookup_or_insert(tcp(9), 0, || b(1)), b(1));
        // The Maglev table changed: a new pick would say 2.
        for now in 1..10 {
            assert_eq!(t.lookup_or_insert(tcp(9), now, || b(2)), b(1));
        }
        // A new flow gets the new pick.
        assert_eq!(t.lookup_or_insert(tcp(10), 10, || b(2)), b(2));
    }

    #[test]
    fn drain_keeps_and_remove_rehashes() {
        let mut t = ConnTrack::new(cfg(64));
        for i in 0..30 {
            t.lookup_or_insert(tcp(i), 0, || b(i % 3));
        }
        assert_eq!(t.drain(BackendId(1)), 10);
        assert_eq!(t.lookup_or_insert(tcp(1), 1, || b(0)), b(1));
        assert_eq!(t.remove(BackendId(1)), 10);
        assert_eq!(t.drain(BackendId(1)), 0);
        assert_eq!(t.len(), 20);
        // Its flows re-hash; the others stay.
        assert_eq!(t.lookup_or_insert(tcp(1), 2, || b(2)), b(2));
        assert_eq!(t.lookup_or_insert(tcp(5), 2, || b(0)), b(2));
        assert_eq!(t.lookup_or_insert(tcp(3), 2, || b(2)), b(0));
        for i in 0..30 {
            assert!(t.peek(&tcp(i)).is_some() || i % 3 == 1);
        }
    }

    #[test]
    fn no_allocation_after_construction() {
        let mut t = ConnTrack::new(cfg(1024));
        let before = (
            t.entries.as_ptr(),
            t.entries.len(),
            t.index.as_ptr(),
            t.index.len(),
        );
        let mut now = 0;
        for i in 0..200_000u32 {
            now += 1;
            let k = key(i.wrapping_mul(2_654_435_761) % 5000, IpProtocol::UDP);
            t.lookup_or_insert(k, now, || b(i % 7));
            if i % 1000 == 0 {
                t.remove(BackendId(i % 7));
                t.expire_idle(now, 64);
            }
        }
        let after = (
            t.entries.as_ptr(),
            t.entries.len(),
            t.index.as_ptr(),
            t.index.len(),
        );
        assert_eq!(before, after);
        assert!(t.len() <= 1024);
        // The storage is boxed slices: they cannot grow, so equal pointers and lengths mean
        // nothing was reallocated, and no other field owns heap memory.
    }

    /// Not a benchmark (tests run unoptimised unless `--release`): a rough figure only.
    #[test]
    fn measure_lookup_hits() {
        let n = 50_000u32;
        let mut t = ConnTrack::new(ConnTrackConfig {
            capacity: 65536,
            ..cfg(0)
        });
        let keys: Vec<FlowKey> = (0..n).map(tcp).collect();
        for (i, k) in keys.iter().enumerate() {
            t.lookup_or_insert(*k, 0, || b(i as u32));
        }
        let rounds = 20;
        let start = std::time::Instant::now();
        let mut sum = 0u64;
        for r in 0..rounds {
            for k in &keys {
                sum += u64::from(t.lookup_or_insert(*k, r, || None).unwrap().0);
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(n * rounds as u32);
        println!(
            "conntrack lookup hit: {ns:.1} ns/op over {} hits ({} build; checksum {sum})",
            n * rounds as u32,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        assert_eq!(t.stats().hits, u64::from(n) * rounds);
    }

    // --- Property test against a simple model: a HashMap of flows plus an LRU order. ---

    #[derive(Clone, Debug)]
    enum Op {
        Access {
            k: u32,
            udp: bool,
            pick: Option<u32>,
            dt: u64,
        },
        Closing(u32, bool),
        Remove(u32),
        Expire(usize, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..24u32, any::<bool>(), proptest::option::weighted(0.9, 0..4u32), 0..120u64)
                .prop_map(|(k, udp, pick, dt)| Op::Access { k, udp, pick, dt }),
            1 => (0..24u32, any::<bool>()).prop_map(|(k, u)| Op::Closing(k, u)),
            1 => (0..4u32).prop_map(Op::Remove),
            1 => (0..6usize, 0..200u64).prop_map(|(n, dt)| Op::Expire(n, dt)),
        ]
    }

    struct Model {
        cfg: ConnTrackConfig,
        flows: HashMap<FlowKey, (BackendId, u64, FlowState)>,
        /// Most recent first.
        order: Vec<FlowKey>,
        stats: ConnTrackStats,
    }

    impl Model {
        fn expired(&self, k: &FlowKey, now: u64) -> bool {
            let (_, seen, st) = self.flows[k];
            let to = match (k.protocol, st) {
                (IpProtocol::TCP, FlowState::Established) => self.cfg.tcp_timeout_ms,
                (IpProtocol::TCP, FlowState::Closing) => self.cfg.tcp_closing_timeout_ms,
                _ => self.cfg.udp_timeout_ms,
            };
            now - seen > to
        }
        fn forget(&mut self, k: &FlowKey) {
            self.flows.remove(k);
            self.order.retain(|x| x != k);
        }
        fn access(&mut self, k: FlowKey, now: u64, pick: Option<BackendId>) -> Option<BackendId> {
            if self.flows.contains_key(&k) {
                if self.expired(&k, now) {
                    self.stats.expirations += 1;
                    self.forget(&k);
                } else {
                    self.stats.hits += 1;
                    let f = self.flows.get_mut(&k).unwrap();
                    f.1 = now;
                    let b = f.0;
                    self.order.retain(|x| *x != k);
                    self.order.insert(0, k);
                    return Some(b);
                }
            }
            self.stats.misses += 1;
            let b = pick?;
            if self.order.len() == self.cfg.capacity as usize {
                let t = *self.order.last().unwrap();
                if self.expired(&t, now) {
                    self.stats.expirations += 1;
                } else {
                    self.stats.evictions += 1;
                }
                self.forget(&t);
            }
            self.flows.insert(k, (b, now, FlowState::Established));
            self.order.insert(0, k);
            self.stats.inserts += 1;
            Some(b)
        }
    }

    proptest! {
        #[test]
        fn matches_a_simple_model(ops in proptest::collection::vec(op(), 1..300)) {
            let c = cfg(8);
            let mut t = ConnTrack::new(c);
            let mut m = Model { cfg: c, flows: HashMap::new(), order: Vec::new(), stats: Default::default() };
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Access { k, udp, pick, dt } => {
                        now += dt;
                        let k = key(k, if udp { IpProtocol::UDP } else { IpProtocol::TCP });
                        let p = pick.map(BackendId);
                        prop_assert_eq!(t.lookup_or_insert(k, now, || p), m.access(k, now, p));
                    }
                    Op::Closing(k, udp) => {
                        let k = key(k, if udp { IpProtocol::UDP } else { IpProtocol::TCP });
                        let known = m.flows.contains_key(&k);
                        if let Some(f) = m.flows.get_mut(&k) {
                            f.2 = FlowState::Closing;
                        }
                        prop_assert_eq!(t.mark_closing(&k), known);
                    }
                    Op::Remove(bk) => {
                        let gone: Vec<FlowKey> = m.order.iter().copied()
                            .filter(|k| m.flows[k].0 == BackendId(bk)).collect();
                        for k in &gone {
                            m.forget(k);
                        }
                        prop_assert_eq!(t.remove(BackendId(bk)), gone.len());
                    }
                    Op::Expire(budget, dt) => {
                        now += dt;
                        let tail: Vec<FlowKey> = m.order.iter().rev().take(budget).copied()
                            .filter(|k| m.expired(k, now)).collect();
                        for k in &tail {
                            m.forget(k);
                        }
                        m.stats.expirations += tail.len() as u64;
                        prop_assert_eq!(t.expire_idle(now, budget), tail.len());
                    }
                }
                prop_assert!(t.len() <= t.capacity());
                prop_assert_eq!(t.len(), m.order.len());
                prop_assert_eq!(t.stats(), m.stats);
                for k in &m.order {
                    let (bk, _, st) = m.flows[k];
                    prop_assert_eq!(t.peek(k), Some((bk, st)));
                }
            }
            // The LRU list, walked both ways, is the model's order.
            let mut fwd = Vec::new();
            let mut e = t.head;
            while e != NIL {
                fwd.push(t.entries[e as usize].key);
                e = t.entries[e as usize].next;
            }
            prop_assert_eq!(&fwd, &m.order);
            let mut back = Vec::new();
            let mut e = t.tail;
            while e != NIL {
                back.push(t.entries[e as usize].key);
                e = t.entries[e as usize].prev;
            }
            back.reverse();
            prop_assert_eq!(&back, &m.order);
        }
    }
}
