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
    /// Load balancer: the frame is not for a configured VIP (a VIP removed while the steering
    /// map still had it), or it is ICMP to a VIP that is not an error about one of its flows
    /// (an echo request: the VIP's owners are the backends).
    NotVip,
    /// Load balancer: the VIP has no backend that takes new flows (all drained, down or
    /// removed).
    NoBackend,
    /// Load balancer: the backend's next hop has no resolved neighbour yet (the control plane
    /// asks the kernel to resolve it).
    NoNeighbour,
    /// Load balancer: no route to the backend out of one of the engine's ports, or no address
    /// of the egress interface to encapsulate from.
    BackendUnreachable,
    /// Load balancer: the packet (encapsulated, if so) is larger than the egress MTU and no
    /// ICMP error may be sent for it (IPv4 without DF): it cannot be fragmented in place.
    TooBig,
    /// Load balancer: encapsulation needs more room in front of the frame than its buffer
    /// has (a transport that lends frames without headroom).
    NoHeadroom,
    /// A responder does not answer a frame to a group (multicast/broadcast) MAC or a multicast
    /// or broadcast address.
    GroupDestination,
    /// The UDP/TCP checksum does not verify (the kernel would drop the packet too).
    BadL4Checksum,
    /// A DNS message that gets no reply: a response (QR=1), or shorter than a DNS header.
    NotAQuery,
    /// A UDP or TCP source or destination port 0: never answered or passed on (an answer would
    /// come from, or go to, a port no socket has).
    PortZero,
    /// `reflect`: a TCP segment with RST set is never answered (a reflected RST could reset a
    /// connection of the address it claims to come from, and two reflectors would bounce it
    /// forever).
    TcpReset,
    /// The UDP/TCP checksum field holds exactly the pseudo-header sum: what a sender's TX
    /// checksum offload leaves for the NIC to finish (`CHECKSUM_PARTIAL`). A kernel sender on a
    /// veth with TX offload on sends these; the frame reaches XDP without the "checksum partial"
    /// mark, so like any checksum that does not verify it is dropped (`ethtool -K PEER tx off`
    /// on the sender's side fixes it).
    PartialL4Checksum,
}

impl DropReason {
    /// Number of reasons; sizes the per-worker counter arrays.
    pub const COUNT: usize = 29;

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
        DropReason::NotVip,
        DropReason::NoBackend,
        DropReason::NoNeighbour,
        DropReason::BackendUnreachable,
        DropReason::TooBig,
        DropReason::NoHeadroom,
        DropReason::GroupDestination,
        DropReason::BadL4Checksum,
        DropReason::NotAQuery,
        DropReason::PortZero,
        DropReason::TcpReset,
        DropReason::PartialL4Checksum,
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
            DropReason::NotVip => "not_vip",
            DropReason::NoBackend => "no_backend",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::BackendUnreachable => "backend_unreachable",
            DropReason::TooBig => "too_big",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::GroupDestination => "group_destination",
            DropReason::BadL4Checksum => "bad_l4_checksum",
            DropReason::NotAQuery => "not_a_query",
            DropReason::PortZero => "port_zero",
            DropReason::TcpReset => "tcp_reset",
            DropReason::PartialL4Checksum => "partial_l4_checksum",
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
    /// Where each frame starts in its buffer, and how long it is, when the buffers have room
    /// around the frames; `None` when every frame is exactly its slice.
    room: Option<Room<'a>>,
    verdicts: &'a mut [Verdict],
    ingress: PortId,
}

/// Each frame's place in its buffer: `buffer[starts[i]..starts[i] + lens[i]]`.
struct Room<'a> {
    starts: &'a mut [u32],
    lens: &'a mut [u32],
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
            room: None,
            verdicts,
            ingress: PortId(0),
        }
    }

    /// A batch received on `ingress` over frame buffers `buffers`, frame `i` being the
    /// `lens[i]` bytes from offset `starts[i]` of buffer `i`; every verdict is reset to
    /// `Drop(Policy)`. What the worker builds: the bytes before a frame are headroom it may grow
    /// into at the front ([`Batch::push_head`]), those after it room at the back
    /// ([`Batch::set_len`]).
    ///
    /// # Panics
    /// If `starts`, `lens` or `verdicts` is shorter than `buffers`; in debug builds also if a
    /// frame does not lie inside its buffer (otherwise the first access to it panics).
    pub fn with_room(
        buffers: &'a mut [&'f mut [u8]],
        starts: &'a mut [u32],
        lens: &'a mut [u32],
        verdicts: &'a mut [Verdict],
        ingress: PortId,
    ) -> Self {
        let n = buffers.len();
        let (starts, lens) = (&mut starts[..n], &mut lens[..n]);
        // The transports guarantee it; checked in debug builds only (a frame outside its buffer
        // would still only panic at the first access, never be unsound).
        debug_assert!(
            (0..n).all(|i| starts[i] as usize + lens[i] as usize <= buffers[i].len()),
            "a frame does not lie inside its buffer"
        );
        let verdicts = &mut verdicts[..n];
        verdicts.fill(Verdict::Drop(DropReason::Policy));
        Batch {
            frames: buffers,
            room: Some(Room { starts, lens }),
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
        match &self.room {
            None => self.frames[i],
            Some(r) => {
                let start = r.starts[i] as usize;
                &self.frames[i][start..start + r.lens[i] as usize]
            }
        }
    }

    /// The bytes of frame `i`, writable in place.
    #[inline]
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        match &self.room {
            None => self.frames[i],
            Some(r) => {
                let start = r.starts[i] as usize;
                &mut self.frames[i][start..start + r.lens[i] as usize]
            }
        }
    }

    /// Frame `i`'s bytes followed by the room it may grow into at the back.
    #[inline]
    pub fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        let start = self.room.as_ref().map_or(0, |r| r.starts[i] as usize);
        &mut self.frames[i][start..]
    }

    /// How long frame `i` may become by growing at the back.
    #[inline]
    pub fn capacity(&self, i: usize) -> usize {
        let start = self.room.as_ref().map_or(0, |r| r.starts[i] as usize);
        self.frames[i].len() - start
    }

    /// How many bytes frame `i` may grow by at the front ([`Batch::push_head`]).
    #[inline]
    pub fn headroom(&self, i: usize) -> usize {
        self.room.as_ref().map_or(0, |r| r.starts[i] as usize)
    }

    /// Make frame `i` `len` bytes long (its bytes are whatever its buffer holds there). Fails,
    /// changing nothing, past the buffer's end — always, when a batch built with
    /// [`Batch::new`] would grow.
    #[inline]
    pub fn set_len(&mut self, i: usize, len: usize) -> Result<(), TooLong> {
        let capacity = self.capacity(i);
        match &mut self.room {
            Some(r) if len <= capacity => {
                r.lens[i] = len as u32;
                Ok(())
            }
            None if len == capacity => Ok(()),
            _ => Err(TooLong { len, capacity }),
        }
    }

    /// Grow frame `i` by `n` bytes at the front (to prepend a header: encapsulation). The new
    /// bytes are whatever the headroom held; write them with [`Batch::frame_mut`]. Fails,
    /// changing nothing, when the headroom is smaller than `n`.
    #[inline]
    pub fn push_head(&mut self, i: usize, n: usize) -> Result<(), TooLong> {
        let headroom = self.headroom(i);
        match &mut self.room {
            Some(r) if n <= headroom => {
                r.starts[i] -= n as u32;
                r.lens[i] += n as u32;
                Ok(())
            }
            _ => Err(TooLong {
                len: n,
                capacity: headroom,
            }),
        }
    }

    /// Remove `n` bytes from the front of frame `i` (to strip a header: decapsulation); they
    /// become headroom. Fails, changing nothing, when the frame is shorter than `n`.
    #[inline]
    pub fn pull_head(&mut self, i: usize, n: usize) -> Result<(), TooLong> {
        let len = self.frame(i).len();
        match &mut self.room {
            Some(r) if n <= len => {
                r.starts[i] += n as u32;
                r.lens[i] -= n as u32;
                Ok(())
            }
            _ => Err(TooLong {
                len: n,
                capacity: len,
            }),
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
        let room = self.room.as_ref().map(|r| (&*r.starts, &*r.lens));
        self.frames
            .iter_mut()
            .enumerate()
            .map(move |(i, f)| match room {
                None => &mut **f,
                Some((starts, lens)) => {
                    let start = starts[i] as usize;
                    &mut f[start..start + lens[i] as usize]
                }
            })
            .zip(self.verdicts.iter_mut())
    }

    /// Give every frame of the batch the verdict `v` (without touching a frame's bytes).
    #[inline]
    pub fn set_all_verdicts(&mut self, v: Verdict) {
        self.verdicts.fill(v);
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
        let mut starts = [0u32, 0];
        let mut lens = [4u32, 16];
        let mut verdicts = [Verdict::Tx; 2];
        let mut batch =
            Batch::with_room(&mut bufs, &mut starts, &mut lens, &mut verdicts, PortId(1));
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
    fn frames_grow_and_shrink_at_the_front_within_their_headroom() {
        let mut a = [0u8; 32];
        a[8..12].copy_from_slice(b"data");
        let mut bufs: [&mut [u8]; 1] = [&mut a];
        let (mut starts, mut lens) = ([8u32], [4u32]);
        let mut verdicts = [Verdict::Tx];
        let mut batch =
            Batch::with_room(&mut bufs, &mut starts, &mut lens, &mut verdicts, PortId(0));
        assert_eq!((batch.headroom(0), batch.capacity(0)), (8, 24));
        assert_eq!(
            batch.push_head(0, 9),
            Err(TooLong {
                len: 9,
                capacity: 8
            })
        );
        batch.push_head(0, 3).unwrap();
        batch.frame_mut(0)[..3].copy_from_slice(b"hdr");
        assert_eq!(batch.frame(0), b"hdrdata");
        assert_eq!((batch.headroom(0), batch.capacity(0)), (5, 27));
        batch.pull_head(0, 3).unwrap();
        assert_eq!(batch.frame(0), b"data");
        assert!(batch.pull_head(0, 5).is_err());
        let (first, _) = batch.iter_mut().next().unwrap();
        assert_eq!(first, b"data");
        let _ = batch;
        assert_eq!((starts, lens), ([8], [4]));
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
