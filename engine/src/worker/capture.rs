//! Packet capture, the worker's half: a per-worker tap the control plane arms, and the copy of
//! each frame into a bounded single-producer ring.
//!
//! Owns the [`Tap`] (one per worker, reached through its [`super::Shared`] block), the
//! [`Session`] the control plane hands a worker when it arms a capture (the ring's producer end
//! and the filter), and the record format in the ring. It must never block, allocate or make a
//! system call per frame: when the ring has no room for a frame the frame is counted
//! ([`SessionStats::dropped`]) and the worker moves on.
//!
//! Cost when no capture is armed: one relaxed atomic load per batch ([`CaptureHook::active`]).
//! The ring is allocated by the control plane when a capture starts, never by the worker; the
//! worker drops its end when it sees the capture disarmed (the last end to go frees it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of the record header in the ring: timestamp (u64 ns since the Unix epoch), original
/// length (u32), captured length (u32), port (u16), direction (u8), one spare byte; little
/// endian. The captured bytes follow.
pub const RECORD_HEADER: usize = 20;

/// Which way a captured frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the engine (as the app saw it, before it changed anything).
    Rx,
    /// Queued for transmit by the app (as it left the app).
    Tx,
}

/// What a capture records. The queue is chosen by arming only that queue's tap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Only frames received on (or sent out of) this port.
    pub port: Option<u16>,
    /// Record transmitted frames too.
    pub tx: bool,
    /// Bytes kept of each frame (at least 1).
    pub snaplen: u32,
}

/// Counters of one session, written by its worker once per batch, read by the control plane.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Frames recorded into the ring.
    pub recorded: AtomicU64,
    /// Frames that matched but found the ring full: counted, not waited for.
    pub dropped: AtomicU64,
}

/// One armed capture as a worker holds it: the producer end of the ring and the filter.
pub struct Session {
    generation: u64,
    ring: rtrb::Producer<u8>,
    filter: Filter,
    stats: Arc<SessionStats>,
    recorded: u64,
    dropped: u64,
}

impl Session {
    /// A session numbered `generation` (non-zero, distinct per capture) writing into `ring`.
    pub fn new(
        generation: u64,
        ring: rtrb::Producer<u8>,
        filter: Filter,
        stats: Arc<SessionStats>,
    ) -> Self {
        Session {
            generation,
            ring,
            filter,
            stats,
            recorded: 0,
            dropped: 0,
        }
    }

    /// Record `frame` (its first `snaplen` bytes), seen at `ts_ns` on `port` going `dir`; a
    /// frame the ring has no room for is counted as dropped. Never blocks.
    #[inline]
    pub fn record(&mut self, ts_ns: u64, port: u16, dir: Direction, frame: &[u8]) {
        if self.filter.port.is_some_and(|p| p != port) || (dir == Direction::Tx && !self.filter.tx)
        {
            return;
        }
        let cap = frame.len().min(self.filter.snaplen as usize);
        if self.ring.slots() < RECORD_HEADER + cap {
            self.dropped += 1;
            return;
        }
        let mut h = [0u8; RECORD_HEADER];
        h[0..8].copy_from_slice(&ts_ns.to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(cap as u32).to_le_bytes());
        h[16..18].copy_from_slice(&port.to_le_bytes());
        h[18] = match dir {
            Direction::Rx => 0,
            Direction::Tx => 1,
        };
        // Room was checked above and this is the only producer, so both pushes succeed; the
        // consumer takes a record only once header and bytes are all there.
        let pushed = self.ring.push_entire_slice(&h).is_ok()
            && self.ring.push_entire_slice(&frame[..cap]).is_ok();
        debug_assert!(pushed);
        self.recorded += 1;
    }

    /// Whether this session records transmitted frames.
    #[inline]
    pub fn wants_tx(&self) -> bool {
        self.filter.tx
    }

    /// Publish the counters (once per batch).
    #[inline]
    pub fn publish(&self) {
        self.stats.recorded.store(self.recorded, Ordering::Relaxed);
        self.stats.dropped.store(self.dropped, Ordering::Relaxed);
    }
}

/// A worker's capture tap: off, or armed with a session the worker picks up at its next batch.
#[derive(Default)]
pub struct Tap {
    /// 0 when off, else the generation of the armed session. The one load per batch.
    armed: AtomicU64,
    /// The armed session until its worker takes it.
    pending: Mutex<Option<Session>>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("armed", &self.armed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// Arm with `session` (control plane). Replaces any session not yet picked up.
    pub fn arm(&self, session: Session) {
        let generation = session.generation;
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
        self.armed.store(generation, Ordering::Release);
    }

    /// Disarm (control plane): the worker drops its session at its next batch; a session it
    /// never picked up is dropped here.
    pub fn disarm(&self) {
        self.armed.store(0, Ordering::Release);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// True while a capture is armed.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed) != 0
    }
}

/// The worker's end of its tap: the session it holds, if any.
pub struct CaptureHook {
    tap: Arc<Tap>,
    session: Option<Session>,
}

impl CaptureHook {
    /// The worker's hook on `tap`.
    pub fn new(tap: Arc<Tap>) -> Self {
        CaptureHook { tap, session: None }
    }

    /// The session to record this batch into, if a capture is armed: one relaxed load when
    /// none is. Picks up a newly armed session (`try_lock`: a worker never waits; it tries
    /// again at its next batch) and drops one that was disarmed.
    #[inline]
    pub fn active(&mut self) -> Option<&mut Session> {
        let armed = self.tap.armed.load(Ordering::Relaxed);
        let held = self.session.as_ref().map_or(0, |s| s.generation);
        if armed != held {
            self.switch(armed);
        }
        self.session.as_mut()
    }

    #[cold]
    fn switch(&mut self, armed: u64) {
        if let Some(s) = self.session.take() {
            s.publish();
        }
        if armed == 0 {
            return;
        }
        if let Ok(mut pending) = self.tap.pending.try_lock()
            && pending.as_ref().is_some_and(|s| s.generation == armed)
        {
            self.session = pending.take();
        }
    }
}

/// Nanoseconds since the Unix epoch now (one vDSO call; taken once per batch while capturing).
#[inline]
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One record read back from a ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame's length.
    pub orig_len: u32,
    /// Port index.
    pub port: u16,
    /// Which way it went.
    pub dir: Direction,
    /// The captured bytes (at most snaplen).
    pub data: Vec<u8>,
}

/// Take the next whole record from `ring` into `rec` (its `data` buffer reused); false when
/// there is none yet.
pub fn read_record(ring: &mut rtrb::Consumer<u8>, rec: &mut Record) -> bool {
    let avail = ring.slots();
    if avail < RECORD_HEADER {
        return false;
    }
    let mut h = [0u8; RECORD_HEADER];
    {
        // A peek: this chunk is not committed, so the header stays in the ring.
        let Ok(chunk) = ring.read_chunk(RECORD_HEADER) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        h[..a.len()].copy_from_slice(a);
        h[a.len()..].copy_from_slice(b);
    }
    let cap = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes")) as usize;
    if avail < RECORD_HEADER + cap {
        return false;
    }
    let Ok(chunk) = ring.read_chunk(RECORD_HEADER + cap) else {
        return false;
    };
    let (a, b) = chunk.as_slices();
    rec.data.clear();
    rec.data
        .extend(a.iter().chain(b.iter()).skip(RECORD_HEADER).copied());
    chunk.commit_all();
    rec.ts_ns = u64::from_le_bytes(h[0..8].try_into().expect("8 bytes"));
    rec.orig_len = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    rec.port = u16::from_le_bytes([h[16], h[17]]);
    rec.dir = if h[18] == 1 {
        Direction::Tx
    } else {
        Direction::Rx
    };
    true
}

#[cfg(test)]
mod test {
    use super::*;

    fn session(generation: u64, cap: usize, filter: Filter) -> (Session, rtrb::Consumer<u8>) {
        let (p, c) = rtrb::RingBuffer::new(cap);
        (Session::new(generation, p, filter, Arc::default()), c)
    }

    const ALL: Filter = Filter {
        port: None,
        tx: true,
        snaplen: 4,
    };

    #[test]
    fn records_round_trip_cut_to_snaplen_and_a_full_ring_counts() {
        let (mut s, mut c) = session(1, 2 * (RECORD_HEADER + 4) + 3, ALL);
        s.record(7, 1, Direction::Rx, b"abcdefgh");
        s.record(8, 0, Direction::Tx, b"xy");
        s.record(9, 0, Direction::Rx, b"no room left");
        assert_eq!((s.recorded, s.dropped), (2, 1));
        let mut r = Record {
            ts_ns: 0,
            orig_len: 0,
            port: 0,
            dir: Direction::Rx,
            data: Vec::new(),
        };
        assert!(read_record(&mut c, &mut r));
        assert_eq!(
            (r.ts_ns, r.orig_len, r.port, r.dir),
            (7, 8, 1, Direction::Rx)
        );
        assert_eq!(r.data, b"abcd");
        assert!(read_record(&mut c, &mut r));
        assert_eq!(
            (r.ts_ns, r.orig_len, r.dir, &r.data[..]),
            (8, 2, Direction::Tx, &b"xy"[..])
        );
        assert!(!read_record(&mut c, &mut r));
        // Wrapping around the ring's end keeps records whole.
        for i in 0..10u64 {
            s.record(i, 0, Direction::Rx, b"wrap");
            assert!(read_record(&mut c, &mut r));
            assert_eq!((r.ts_ns, &r.data[..]), (i, &b"wrap"[..]));
        }
    }

    #[test]
    fn filter_by_port_and_direction() {
        let f = Filter {
            port: Some(1),
            tx: false,
            snaplen: 100,
        };
        let (mut s, _c) = session(1, 1024, f);
        s.record(0, 0, Direction::Rx, b"other port");
        s.record(0, 1, Direction::Tx, b"sent");
        s.record(0, 1, Direction::Rx, b"this one");
        assert_eq!(s.recorded, 1);
    }

    #[test]
    fn a_hook_picks_up_an_armed_session_and_drops_a_disarmed_one() {
        let tap = Arc::new(Tap::default());
        let mut hook = CaptureHook::new(tap.clone());
        assert!(hook.active().is_none());
        let (s, c) = session(5, 64, ALL);
        tap.arm(s);
        assert!(tap.is_armed());
        assert!(hook.active().is_some());
        assert!(!c.is_abandoned());
        tap.disarm();
        assert!(hook.active().is_none());
        assert!(c.is_abandoned(), "the worker let go of the ring");
        // A new capture replaces the old one.
        let (s, _c2) = session(6, 64, ALL);
        tap.arm(s);
        assert_eq!(hook.active().map(|s| s.generation), Some(6));
    }
}
