//! What an app and the worker hand each other: a [`Batch`] of frames and one [`Verdict`] per
//! frame, with a [`DropReason`] for every frame that is not sent.
//!
//! A leaf module: it knows no socket, ring or app. The worker builds batches over frames its
//! transport lends it; apps and tests build them over plain byte arrays.

use std::fmt;

/// One of the engine's interfaces ("ports"), by its index in the order they were configured
/// (`--iface A --iface B`: A is port 0, B port 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl PortId {
    /// The index, for arrays sized by the number of ports.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// What the worker does with a frame once the app has seen it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly rewritten) frame back out of the port it came in on.
    Tx,
    /// Send the (possibly rewritten) frame out of another port (or the same one).
    TxOn(PortId),
    /// Hand the frame, as it is now, to the kernel's network stack (see the worker's
    /// documentation for the path it takes).
    Kernel,
    /// Recycle the frame to the fill ring and count it under `reason`.
    Drop(DropReason),
}

/// Why a frame was dropped. Each reason has its own per-worker counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// The app drops by design (the `drop` app, a filter rule).
    Policy = 0,
    /// The frame ends inside a header (Ethernet, 802.1Q, IP, UDP or TCP).
    Truncated,
    /// The EtherType (after any VLAN tags) is neither IPv4 nor IPv6.
    NotIp,
    /// IPv4 version/IHL invalid, or IPv6 version field not 6.
    BadIpHeader,
    /// IPv4 total length shorter than its header or longer than the frame; IPv6 payload length
    /// longer than the frame.
    IpLength,
    /// An IPv4 fragment: ports are only in the first one, so it cannot be handled per frame.
    Fragment,
    /// UDP length field below 8 or not equal to the IP payload length; TCP data offset below 5 or
    /// past the IP payload.
    L4Length,
    /// An IP payload other than UDP or TCP (IPv6 extension headers included).
    UnsupportedProtocol,
    /// The app sent the frame to a port the engine does not have.
    NoSuchPort,
    /// The app handed the frame to the kernel, but this engine has no path to the kernel's
    /// stack (see the worker's documentation).
    NoKernelPath,
    /// An IPv4 header checksum that does not verify (a router must not forward it, nor answer
    /// it: its addresses may be the corrupted part).
    BadIpChecksum,
    /// A source that never sends: a group (multicast/broadcast) source MAC, or a multicast,
    /// broadcast, `0.0.0.0/8`, loopback, unspecified or IPv4-mapped source address.
    MartianSource,
    /// A destination that is never routed: `0.0.0.0/8`, loopback, `::` or `::1`.
    MartianDestination,
    /// A `blackhole` route: dropped silently, by design.
    Blackhole,
    /// An ICMP error was due but the rules forbid sending one (the packet is itself an ICMP
    /// error, a non-first fragment, or to a group address): dropped silently.
    IcmpSuppressed,
    /// An ICMP error was due but the ICMP error rate limit was spent.
    IcmpRateLimited,
    /// An ICMP error was due but could not be built: no address to send it from, or no room for
    /// it in the frame's buffer.
    IcmpFailed,
}

impl DropReason {
    /// Number of reasons; sizes the per-worker counter arrays.
    pub const COUNT: usize = 17;

    /// Every reason, in counter-index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Policy,
        DropReason::Truncated,
        DropReason::NotIp,
        DropReason::BadIpHeader,
        DropReason::IpLength,
        DropReason::Fragment,
        DropReason::L4Length,
        DropReason::UnsupportedProtocol,
        DropReason::NoSuchPort,
        DropReason::NoKernelPath,
        DropReason::BadIpChecksum,
        DropReason::MartianSource,
        DropReason::MartianDestination,
        DropReason::Blackhole,
        DropReason::IcmpSuppressed,
        DropReason::IcmpRateLimited,
        DropReason::IcmpFailed,
    ];

    /// Index into per-reason counter arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name used in stats lines, JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Policy => "policy",
            DropReason::Truncated => "truncated",
            DropReason::NotIp => "not_ip",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::IpLength => "ip_length",
            DropReason::Fragment => "fragment",
            DropReason::L4Length => "l4_length",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::NoSuchPort => "no_such_port",
            DropReason::NoKernelPath => "no_kernel_path",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::MartianSource => "martian_source",
            DropReason::MartianDestination => "martian_destination",
            DropReason::Blackhole => "blackhole",
            DropReason::IcmpSuppressed => "icmp_suppressed",
            DropReason::IcmpRateLimited => "icmp_rate_limited",
            DropReason::IcmpFailed => "icmp_failed",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A frame cannot grow past the end of its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a frame of {len} bytes does not fit its {capacity}-byte buffer")]
pub struct TooLong {
    /// The length asked for.
    pub len: usize,
    /// The buffer's size.
    pub capacity: usize,
}

/// A batch of received frames from one port, each a mutable byte slice, with one verdict per
/// frame.
///
/// The worker builds it over UMEM frames it owns, lent with the room up to the end of each
/// frame's buffer, so an app may also change a frame's length ([`Batch::set_len`]) — to build an
/// ICMP error in place, say. Tests build batches over plain arrays with [`Batch::new`] (no room
/// to grow). Verdicts start as `Drop(Policy)`, so a frame the app forgets to judge is recycled,
/// never sent.
pub struct Batch<'a, 'f> {
    frames: &'a mut [&'f mut [u8]],
    /// Current length of each frame when the buffers have room beyond it; `None` when every
    /// frame is exactly its slice.
    lens: Option<&'a mut [u32]>,
    verdicts: &'a mut [Verdict],
    ingress: PortId,
}

impl<'a, 'f> Batch<'a, 'f> {
    /// A batch over `frames` (each exactly one frame, no room to grow) received on port 0; every
    /// verdict is reset to `Drop(Policy)`.
    ///
    /// # Panics
    /// If `verdicts` is shorter than `frames` (a programming error in the caller).
    pub fn new(frames: &'a mut [&'f mut [u8]], verdicts: &'a mut [Verdict]) -> Self {
        let n = frames.len();
        let verdicts = &mut verdicts[..n];
        verdicts.fill(Verdict::Drop(DropReason::Policy));
        Batch {
            frames,
            lens: None,
            verdicts,
            ingress: PortId(0),
        }
    }

    /// A batch received on `ingress` over frame buffers `buffers`, frame `i` being the first
    /// `lens[i]` bytes of buffer `i`; every verdict is reset to `Drop(Policy)`. What the worker
    /// builds.
    ///
    /// # Panics
    /// If `lens` or `verdicts` is shorter than `buffers`, or a length exceeds its buffer.
    pub fn with_room(
        buffers: &'a mut [&'f mut [u8]],
        lens: &'a mut [u32],
        verdicts: &'a mut [Verdict],
        ingress: PortId,
    ) -> Self {
        let n = buffers.len();
        let lens = &mut lens[..n];
        assert!(
            buffers
                .iter()
                .zip(lens.iter())
                .all(|(b, &l)| l as usize <= b.len()),
            "a frame is longer than its buffer"
        );
        let verdicts = &mut verdicts[..n];
        verdicts.fill(Verdict::Drop(DropReason::Policy));
        Batch {
            frames: buffers,
            lens: Some(lens),
            verdicts,
            ingress,
        }
    }

    /// The port every frame of this batch arrived on.
    #[inline]
    pub fn ingress(&self) -> PortId {
        self.ingress
    }

    /// Number of frames in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when the batch holds no frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The bytes of frame `i`.
    #[inline]
    pub fn frame(&self, i: usize) -> &[u8] {
        match &self.lens {
            None => self.frames[i],
            Some(l) => &self.frames[i][..l[i] as usize],
        }
    }

    /// The bytes of frame `i`, writable in place.
    #[inline]
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        match &self.lens {
            None => self.frames[i],
            Some(l) => &mut self.frames[i][..l[i] as usize],
        }
    }

    /// The whole buffer of frame `i`: the frame's bytes followed by the room it may grow into.
    #[inline]
    pub fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        self.frames[i]
    }

    /// How long frame `i` may become.
    #[inline]
    pub fn capacity(&self, i: usize) -> usize {
        self.frames[i].len()
    }

    /// Make frame `i` `len` bytes long (its bytes are whatever its buffer holds there). Fails,
    /// changing nothing, past the buffer's end — always, when a batch built with
    /// [`Batch::new`] would grow.
    #[inline]
    pub fn set_len(&mut self, i: usize, len: usize) -> Result<(), TooLong> {
        let capacity = self.frames[i].len();
        match &mut self.lens {
            Some(l) if len <= capacity => {
                l[i] = len as u32;
                Ok(())
            }
            None if len == capacity => Ok(()),
            _ => Err(TooLong { len, capacity }),
        }
    }

    /// The verdict currently set for frame `i`.
    #[inline]
    pub fn verdict(&self, i: usize) -> Verdict {
        self.verdicts[i]
    }

    /// Set the verdict for frame `i`.
    #[inline]
    pub fn set_verdict(&mut self, i: usize, v: Verdict) {
        self.verdicts[i] = v;
    }

    /// Each frame with its verdict slot, in order.
    #[inline]
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&mut [u8], &mut Verdict)> {
        let lens = self.lens.as_deref();
        self.frames
            .iter_mut()
            .enumerate()
            .map(move |(i, f)| match lens {
                None => &mut **f,
                Some(l) => &mut f[..l[i] as usize],
            })
            .zip(self.verdicts.iter_mut())
    }

    /// All verdicts, in frame order (the worker reads them after `process`).
    #[inline]
    pub fn verdicts(&self) -> &[Verdict] {
        self.verdicts
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn frames_grow_within_their_buffers() {
        let mut a = [0xa5u8; 16];
        let mut b = [0xa5u8; 16];
        let mut bufs: [&mut [u8]; 2] = [&mut a, &mut b];
        let mut lens = [4u32, 16];
        let mut verdicts = [Verdict::Tx; 2];
        let mut batch = Batch::with_room(&mut bufs, &mut lens, &mut verdicts, PortId(1));
        assert_eq!(batch.ingress(), PortId(1));
        assert_eq!(batch.verdict(0), Verdict::Drop(DropReason::Policy));
        assert_eq!((batch.frame(0).len(), batch.capacity(0)), (4, 16));
        batch.buffer_mut(0)[4..8].copy_from_slice(b"grow");
        batch.set_len(0, 8).unwrap();
        assert_eq!(&batch.frame(0)[4..], b"grow");
        assert_eq!(
            batch.set_len(1, 17),
            Err(TooLong {
                len: 17,
                capacity: 16
            })
        );
        let lens: Vec<usize> = batch.iter_mut().map(|(f, _)| f.len()).collect();
        assert_eq!(lens, [8, 16]);
        batch.set_len(0, 2).unwrap();
        assert_eq!(batch.frame_mut(0).len(), 2);
    }

    #[test]
    fn plain_batches_cannot_grow() {
        let mut a = [1u8; 6];
        let mut frames: [&mut [u8]; 1] = [&mut a];
        let mut verdicts = [Verdict::Tx];
        let mut batch = Batch::new(&mut frames, &mut verdicts);
        assert_eq!((batch.ingress(), batch.capacity(0)), (PortId(0), 6));
        assert!(batch.set_len(0, 7).is_err());
        assert!(
            batch.set_len(0, 5).is_err(),
            "no length to shrink into either"
        );
        batch.set_len(0, 6).unwrap();
        batch.set_verdict(0, Verdict::TxOn(PortId(1)));
        assert_eq!(batch.verdicts(), [Verdict::TxOn(PortId(1))]);
        assert_eq!(PortId(3).to_string(), "port 3");
    }
}
