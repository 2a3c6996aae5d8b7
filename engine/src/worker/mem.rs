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
use crate::xsk::{Desc, Kick};

/// Frames in memory, received round-robin, transmitted into a counter.
pub struct MemTransport {
    area: Vec<u8>,
    frame_size: usize,
    lens: Vec<u32>,
    next: usize,
    outstanding: usize,
    transmitted: Vec<u64>,
    recycled: u64,
}

impl MemTransport {
    /// A ring of `frame_count` frames of `frame_size` bytes, frame `i` a copy of
    /// `templates[i % templates.len()]`.
    ///
    /// # Panics
    /// If `templates` is empty, a template is longer than `frame_size`, or `frame_count` is 0.
    pub fn new(templates: &[&[u8]], frame_count: usize, frame_size: usize) -> Self {
        assert!(!templates.is_empty() && frame_count > 0, "no frames");
        let mut area = vec![0u8; frame_count * frame_size];
        let mut lens = Vec::with_capacity(frame_count);
        for (i, frame) in area.chunks_exact_mut(frame_size).enumerate() {
            let t = templates[i % templates.len()];
            assert!(t.len() <= frame_size, "a template is longer than a frame");
            frame[..t.len()].copy_from_slice(t);
            lens.push(t.len() as u32);
        }
        MemTransport {
            area,
            frame_size,
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
        let start = i * self.frame_size;
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
                addr: (i * self.frame_size) as u64,
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

    fn frames_mut<'a>(&'a mut self, descs: &mut [Desc], out: &mut [&'a mut [u8]]) -> u32 {
        // The frames of one receive are consecutive in the ring (wrapping at its end), so they
        // are lent as the chunks from the first one onwards: disjoint by construction.
        let Some(first) = descs.first() else {
            return 0;
        };
        let fs = self.frame_size;
        let (head, tail) = self.area.split_at_mut(first.addr as usize / fs * fs);
        let mut chunks = tail.chunks_exact_mut(fs).chain(head.chunks_exact_mut(fs));
        let mut bad = 0;
        for (d, slot) in descs.iter_mut().zip(out.iter_mut()) {
            match chunks.next() {
                Some(chunk) if d.len as usize <= fs => *slot = chunk,
                _ => {
                    d.len = 0;
                    bad += 1;
                }
            }
        }
        bad
    }

    fn transmit(&mut self, port: usize, descs: &[Desc]) -> (usize, Kick) {
        self.transmitted[port] += descs.len() as u64;
        for d in descs {
            // An app may have changed the frame's length; the next round sees it so.
            self.lens[d.addr as usize / self.frame_size] = d.len;
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
