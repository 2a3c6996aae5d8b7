//! AF_XDP multi-buffer (`XDP_USE_SG`, Linux 6.6+): frames longer than one UMEM frame.
//!
//! A UMEM frame is at most a page (the kernel refuses a chunk size above `PAGE_SIZE`, huge
//! pages or not), so with 4 KiB pages a frame of more than 3840 bytes (4096 less the kernel's
//! 256-byte headroom) arrives as several descriptors, every one but the last flagged
//! `XDP_PKT_CONTD`. Apps see one contiguous frame per packet, so the transport assembles such a
//! packet into a slot of its own memory ([`Assembler`]), hands the worker one *assembled*
//! descriptor whose address lies past the UMEM (in `[area_len, area_len + SLOTS × SLOT_SIZE)`),
//! and on transmit copies the frame back into the packet's own UMEM frames and queues them as
//! one multi-buffer packet. Two copies per jumbo frame; a frame that fits one UMEM frame takes
//! the usual path, untouched.
//!
//! The fragments' UMEM frames belong to the worker while their packet is assembled (the frame
//! invariant counts them there); they go back to the fill ring when the packet is recycled, or
//! onto the TX ring with it.

use super::Desc;

/// `XDP_USE_SG` bind flag (`linux/if_xdp.h`).
pub const XDP_USE_SG: u16 = 1 << 4;
/// `XDP_PKT_CONTD` descriptor option: more descriptors of this packet follow.
pub const XDP_PKT_CONTD: u32 = 1;
/// Most descriptors the kernel uses for one packet (`MAX_SKB_FRAGS + 1`).
pub const MAX_FRAGS: usize = 18;
/// Bytes of one assembly slot: room for the kernel's headroom, the configured headroom and a
/// frame of an MTU 9000 link with two VLAN tags, with room to grow.
pub const SLOT_SIZE: usize = 16 * 1024;
/// Slots per queue: one batch's worth (a worker hands every frame of a batch back before it
/// receives the next).
pub const SLOTS: usize = super::MAX_BATCH;

/// Packets assembled from several descriptors, and what could not be.
pub struct Assembler {
    /// `SLOTS × SLOT_SIZE` bytes (3/4 of it is never touched unless frames are long).
    buf: Vec<u8>,
    /// Per slot: the UMEM frames (chunk addresses) of its packet's fragments.
    frags: Vec<[u64; MAX_FRAGS]>,
    nfrags: Vec<u8>,
    /// Per slot: bytes assembled so far.
    filled: Vec<u32>,
    free: Vec<u16>,
    /// The slot of the packet being assembled (its last descriptor not yet read).
    partial: Option<u16>,
    /// The packet being read is being thrown away (no slot, or too long).
    dropping: bool,
    /// Where assembled descriptors' addresses start (the UMEM's length).
    base: u64,
    /// Offset of an assembled frame in its slot (the kernel's headroom plus the configured).
    head: u32,
    /// Packets assembled.
    pub assembled: u64,
    /// Packets thrown away: longer than a slot or [`MAX_FRAGS`], or no free slot.
    pub dropped: u64,
}

impl Assembler {
    /// Slots for a UMEM of `area_len` bytes whose frames start `head` bytes into their buffer.
    pub fn new(area_len: u64, head: u32) -> Self {
        Assembler {
            buf: vec![0; SLOTS * SLOT_SIZE],
            frags: vec![[0; MAX_FRAGS]; SLOTS],
            nfrags: vec![0; SLOTS],
            filled: vec![0; SLOTS],
            free: (0..SLOTS as u16).rev().collect(),
            partial: None,
            dropping: false,
            base: area_len,
            head,
            assembled: 0,
            dropped: 0,
        }
    }

    /// True while a packet's descriptors are still coming.
    #[inline]
    pub fn in_packet(&self) -> bool {
        self.partial.is_some() || self.dropping
    }

    /// UMEM frames held by a packet not yet complete (for the census).
    pub fn held(&self) -> u64 {
        self.partial
            .map_or(0, |s| u64::from(self.nfrags[s as usize]))
    }

    /// True if `addr` is an assembled descriptor's.
    #[inline]
    pub fn owns(&self, addr: u64) -> bool {
        addr >= self.base
    }

    /// Take one received descriptor (`bytes` its data, `chunk` its UMEM frame): returns the
    /// assembled descriptor when it was the packet's last. UMEM frames of a packet thrown
    /// away are pushed onto `back`.
    pub fn push(
        &mut self,
        chunk: u64,
        bytes: &[u8],
        options: u32,
        back: &mut Vec<u64>,
    ) -> Option<Desc> {
        let last = options & XDP_PKT_CONTD == 0;
        if !self.in_packet() {
            match self.free.pop() {
                Some(s) => {
                    self.partial = Some(s);
                    self.nfrags[s as usize] = 0;
                    self.filled[s as usize] = 0;
                }
                None => self.dropping = true,
            }
        }
        if let Some(s) = self.partial {
            let si = s as usize;
            let n = self.nfrags[si] as usize;
            let at = self.head as usize + self.filled[si] as usize;
            if n < MAX_FRAGS && at + bytes.len() <= SLOT_SIZE {
                let off = si * SLOT_SIZE + at;
                self.buf[off..off + bytes.len()].copy_from_slice(bytes);
                self.frags[si][n] = chunk;
                self.nfrags[si] += 1;
                self.filled[si] += bytes.len() as u32;
            } else {
                // Too long: give back what it holds and throw the rest away as it comes.
                back.extend_from_slice(&self.frags[si][..n]);
                self.free.push(s);
                self.partial = None;
                self.dropping = true;
            }
        }
        if self.dropping {
            back.push(chunk);
            if last {
                self.dropping = false;
                self.dropped += 1;
            }
            return None;
        }
        if !last {
            return None;
        }
        let s = self.partial.take().expect("a packet in assembly");
        self.assembled += 1;
        Some(Desc {
            addr: self.base + (s as u64) * SLOT_SIZE as u64 + u64::from(self.head),
            len: self.filled[s as usize],
        })
    }

    /// The slot of an assembled descriptor and the frame's offset in it, if `d` is a valid one
    /// (a slot handed out, the frame inside it).
    #[inline]
    pub fn slot_of(&self, d: &Desc) -> Option<(usize, usize)> {
        let rel = d.addr.checked_sub(self.base)? as usize;
        let (s, off) = (rel / SLOT_SIZE, rel % SLOT_SIZE);
        let handed_out = s < SLOTS && self.nfrags[s] > 0 && self.partial != Some(s as u16);
        (handed_out && off + d.len as usize <= SLOT_SIZE).then_some((s, off))
    }

    /// Base pointer of the slots (for lending them; see `XskQueue::frames_mut`).
    pub fn slots_ptr(&mut self) -> *mut u8 {
        self.buf.as_mut_ptr()
    }

    /// Release slot `s`: its UMEM frames are pushed onto `back`.
    pub fn release(&mut self, s: usize, back: &mut Vec<u64>) {
        let n = self.nfrags[s] as usize;
        back.extend_from_slice(&self.frags[s][..n]);
        self.nfrags[s] = 0;
        self.free.push(s as u16);
    }

    /// Give up the packet in assembly, if any: its frames go onto `back`, and the assembler
    /// starts afresh with the next descriptor (a hot upgrade hands over at a batch boundary,
    /// which may fall inside a packet).
    pub(super) fn abandon(&mut self, back: &mut Vec<u64>) {
        if let Some(s) = self.partial.take() {
            let si = s as usize;
            back.extend_from_slice(&self.frags[si][..self.nfrags[si] as usize]);
            self.nfrags[si] = 0;
            self.free.push(s);
        }
        self.dropping = false;
    }

    /// Split the frame `d` (assembled, in slot `s` at `off`) over its packet's UMEM frames of
    /// `frame_size` bytes each, through `write(chunk, bytes)`, and describe them into `out`
    /// (all but the last flagged `XDP_PKT_CONTD`). UMEM frames the frame no longer needs (it
    /// shrank) go onto `spare`. Returns false, changing nothing, if the frame grew past what
    /// its UMEM frames hold.
    pub(super) fn split(
        &mut self,
        (s, off): (usize, usize),
        len: usize,
        frame_size: usize,
        out: &mut Vec<super::ring::RawDesc>,
        spare: &mut Vec<u64>,
        mut write: impl FnMut(u64, &[u8]),
    ) -> bool {
        let n = self.nfrags[s] as usize;
        let pieces = len.div_ceil(frame_size).max(1);
        if pieces > n {
            return false;
        }
        let frame = &self.buf[s * SLOT_SIZE + off..s * SLOT_SIZE + off + len];
        for (k, piece) in frame.chunks(frame_size).enumerate() {
            let chunk = self.frags[s][k];
            write(chunk, piece);
            out.push(super::ring::RawDesc {
                addr: chunk,
                len: piece.len() as u32,
                options: if k + 1 < pieces { XDP_PKT_CONTD } else { 0 },
            });
        }
        spare.extend_from_slice(&self.frags[s][pieces..n]);
        self.nfrags[s] = 0;
        self.free.push(s as u16);
        true
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fragments_assemble_into_one_frame_and_split_back() {
        let mut a = Assembler::new(1 << 20, 256);
        let mut back = Vec::new();
        assert_eq!(a.push(0x1000, &[1; 3000], XDP_PKT_CONTD, &mut back), None);
        assert!(a.in_packet());
        assert_eq!(a.held(), 1);
        assert_eq!(a.push(0x5000, &[2; 3000], XDP_PKT_CONTD, &mut back), None);
        let d = a.push(0x3000, &[3; 100], 0, &mut back).unwrap();
        assert_eq!(d.len, 6100);
        assert!(a.owns(d.addr) && !a.in_packet());
        let (s, off) = a.slot_of(&d).unwrap();
        assert_eq!(off, 256);
        // Split into 4096-byte frames: two pieces; the third frame is spare.
        let (mut out, mut spare, mut written) = (Vec::new(), Vec::new(), Vec::new());
        assert!(a.split((s, off), 6100, 4096, &mut out, &mut spare, |c, b| {
            written.push((c, b.to_vec()))
        }));
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].addr, out[0].len, out[0].options),
            (0x1000, 4096, XDP_PKT_CONTD)
        );
        assert_eq!((out[1].addr, out[1].len, out[1].options), (0x5000, 2004, 0));
        assert_eq!(spare, vec![0x3000]);
        assert_eq!(&written[0].1[2999..3001], &[1, 2]);
        assert_eq!(written[1].1.last(), Some(&3));
        assert!(a.slot_of(&d).is_none(), "the slot is free again");
        assert!(back.is_empty());
    }

    #[test]
    fn a_packet_too_long_is_dropped_and_its_frames_come_back() {
        let mut a = Assembler::new(1 << 20, 256);
        let mut back = Vec::new();
        for i in 0..MAX_FRAGS as u64 + 2 {
            let opt = if i == MAX_FRAGS as u64 + 1 {
                0
            } else {
                XDP_PKT_CONTD
            };
            assert_eq!(a.push(i * 0x1000, &[0; 100], opt, &mut back), None);
        }
        assert_eq!((a.dropped, a.assembled, back.len()), (1, 0, MAX_FRAGS + 2));
        assert!(!a.in_packet());
        // Slots are reused: the next packet assembles.
        assert!(a.push(0x1000, &[0; 10], 0, &mut back).is_some());
    }
}
