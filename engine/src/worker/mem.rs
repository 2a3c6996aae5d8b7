//! A transport over plain memory: the worker's batch step without a kernel.
//!
//! [`MemTransport`] holds a ring of frames, copies of the frames it was given, and hands them out
//! in order, round and round, whatever the port: every [`Transport::receive`] is a fresh batch
//! of "received" frames
//! whose bytes are whatever the app left there last time (an app that rewrites frames in place
//! must therefore keep them valid — reflect does: a second swap undoes the first). Transmitted
//! frames are counted and taken back at once. It is what `cargo xtask bench --scenario
//! pipeline` measures, and what an app's own tests can drive through [`super::step`] to check
//! verdicts and counters exactly as the worker would see them.

use super::transport::Transport;

/// Bytes left free in front of each frame's data, as the kernel's `XDP_PACKET_HEADROOM` leaves
/// them: room for an app to prepend headers.
pub const HEADROOM: usize = 256;
use crate::xsk::{Desc, Kick};

/// Frames in memory, received round-robin, transmitted into a counter.
pub struct MemTransport {
    area: Vec<u8>,
    frame_size: usize,
    frame_shift: Option<u32>,
    starts: Vec<u32>,
    lens: Vec<u32>,
    next: usize,
    outstanding: usize,
    transmitted: Vec<u64>,
    recycled: u64,
}

impl MemTransport {
    /// A ring of `frame_count` buffers of `frame_size` bytes, frame `i` a copy of
    /// `templates[i % templates.len()]` placed [`HEADROOM`] bytes into its buffer (as the kernel
    /// places a received frame behind its XDP headroom).
    ///
    /// # Panics
    /// If `templates` is empty, a template does not fit `frame_size - HEADROOM`, or
    /// `frame_count` is 0.
    pub fn new(templates: &[&[u8]], frame_count: usize, frame_size: usize) -> Self {
        assert!(!templates.is_empty() && frame_count > 0, "no frames");
        let mut area = vec![0u8; frame_count * frame_size];
        let mut lens = Vec::with_capacity(frame_count);
        for (i, frame) in area.chunks_exact_mut(frame_size).enumerate() {
            let t = templates[i % templates.len()];
            assert!(
                HEADROOM + t.len() <= frame_size,
                "a template does not fit a frame behind its headroom"
            );
            frame[HEADROOM..HEADROOM + t.len()].copy_from_slice(t);
            lens.push(t.len() as u32);
        }
        MemTransport {
            area,
            frame_size,
            frame_shift: frame_size
                .is_power_of_two()
                .then(|| frame_size.trailing_zeros()),
            starts: vec![HEADROOM as u32; frame_count],
            lens,
            next: 0,
            outstanding: 0,
            transmitted: vec![0],
            recycled: 0,
        }
    }

    /// Serve `ports` ports instead of one: frames are received the same way on each, and
    /// counted per port when transmitted.
    pub fn with_ports(mut self, ports: usize) -> Self {
        self.transmitted = vec![0; ports.max(1)];
        self
    }

    /// Frames transmitted so far, on every port.
    pub fn transmitted(&self) -> u64 {
        self.transmitted.iter().sum()
    }

    /// Frames transmitted so far on `port`.
    pub fn transmitted_on(&self, port: usize) -> u64 {
        self.transmitted[port]
    }

    /// Frames handed back unsent so far.
    pub fn recycled(&self) -> u64 {
        self.recycled
    }

    /// Frames received and not yet handed back (0 between batches, or a frame was lost).
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The bytes of frame `i` as they are now.
    pub fn frame(&self, i: usize) -> &[u8] {
        let start = i * self.frame_size + self.starts[i] as usize;
        &self.area[start..start + self.lens[i] as usize]
    }
}

impl Transport for MemTransport {
    fn port_count(&self) -> usize {
        self.transmitted.len()
    }

    fn receive(&mut self, _port: usize, descs: &mut [Desc]) -> usize {
        let count = self.lens.len();
        let n = descs.len().min(count - self.outstanding);
        // Wrap with a compare, not `%`: a division per frame was a third of the loop's time.
        let mut i = self.next;
        for d in &mut descs[..n] {
            *d = Desc {
                addr: (i * self.frame_size) as u64 + u64::from(self.starts[i]),
                len: self.lens[i],
            };
            i += 1;
            if i == count {
                i = 0;
            }
        }
        self.next = i;
        self.outstanding += n;
        n
    }

    fn frames_mut<'a>(
        &'a mut self,
        descs: &mut [Desc],
        out: &mut [&'a mut [u8]],
        starts: &mut [u32],
    ) -> u32 {
        // The frames of one receive are consecutive in the ring (wrapping at its end), so they
        // are lent as the buffers from the first one onwards: disjoint by construction.
        let Some(first) = descs.first() else {
            return 0;
        };
        let fs = self.frame_size;
        let count = self.lens.len();
        let mut chunk = first.addr as usize / fs; // the only division: the rest follow in order
        let (head, tail) = self.area.split_at_mut(chunk * fs);
        let mut chunks = tail.chunks_exact_mut(fs).chain(head.chunks_exact_mut(fs));
        let mut bad = 0;
        for ((d, slot), start) in descs.iter_mut().zip(out.iter_mut()).zip(starts.iter_mut()) {
            let offset = (d.addr as usize).wrapping_sub(chunk * fs);
            chunk += 1;
            if chunk == count {
                chunk = 0;
            }
            match chunks.next() {
                Some(buf) if offset < fs && offset + d.len as usize <= fs => {
                    *slot = buf;
                    *start = offset as u32;
                }
                _ => {
                    d.len = 0;
                    *start = 0;
                    bad += 1;
                }
            }
        }
        bad
    }

    fn transmit(&mut self, port: usize, descs: &[Desc]) -> (usize, Kick) {
        self.transmitted[port] += descs.len() as u64;
        for d in descs {
            // An app may have moved or resized the frame; the next round sees it so. (A shift,
            // not a division, for the usual power-of-two frame size.)
            let i = match self.frame_shift {
                Some(shift) => d.addr as usize >> shift,
                None => d.addr as usize / self.frame_size,
            };
            self.starts[i] = (d.addr as usize - i * self.frame_size) as u32;
            self.lens[i] = d.len;
        }
        self.outstanding -= descs.len();
        (descs.len(), Kick::default())
    }

    fn recycle(&mut self, descs: &[Desc]) -> u32 {
        self.recycled += descs.len() as u64;
        self.outstanding -= descs.len();
        0
    }
}
