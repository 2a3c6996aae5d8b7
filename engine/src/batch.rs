//! What an app and the worker hand each other: a [`Batch`] of frames and one [`Verdict`] per
//! frame, with a [`DropReason`] for every frame that is not sent.
//!
//! A leaf module: it knows no socket, ring or app. The worker builds batches over frames its
//! transport lends it; apps and tests build them over plain byte arrays.

use std::fmt;

/// What the worker does with a frame once the app has seen it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly rewritten) frame back out of the interface it came in on.
    Tx,
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
}

impl DropReason {
    /// Number of reasons; sizes the per-worker counter arrays.
    pub const COUNT: usize = 8;

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
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A batch of received frames, each a mutable byte slice, with one verdict per frame.
///
/// The worker builds it over UMEM frames it owns; tests build it over plain arrays. Verdicts start
/// as `Drop(Policy)`, so a frame the app forgets to judge is recycled, never sent.
pub struct Batch<'a, 'f> {
    frames: &'a mut [&'f mut [u8]],
    verdicts: &'a mut [Verdict],
}

impl<'a, 'f> Batch<'a, 'f> {
    /// A batch over `frames`; every verdict is reset to `Drop(Policy)`.
    ///
    /// # Panics
    /// If `verdicts` is shorter than `frames` (a programming error in the caller).
    pub fn new(frames: &'a mut [&'f mut [u8]], verdicts: &'a mut [Verdict]) -> Self {
        let n = frames.len();
        let verdicts = &mut verdicts[..n];
        verdicts.fill(Verdict::Drop(DropReason::Policy));
        Batch { frames, verdicts }
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
        self.frames[i]
    }

    /// The bytes of frame `i`, writable in place.
    #[inline]
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        self.frames[i]
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
        self.frames
            .iter_mut()
            .map(|f| &mut **f)
            .zip(self.verdicts.iter_mut())
    }

    /// All verdicts, in frame order (the worker reads them after `process`).
    #[inline]
    pub fn verdicts(&self) -> &[Verdict] {
        self.verdicts
    }
}
