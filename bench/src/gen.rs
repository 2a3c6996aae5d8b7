//! The multi-Mpps traffic generator: XDP live frames (`BPF_PROG_TEST_RUN` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES`), plus the `drop_all` / `pass_all` XDP sinks.
//!
//! # How it works
//!
//! [`Template::build`] makes one valid Ethernet/IP/L4 frame and a [`GenConfig`]: where the
//! source port, the L4 checksum and the 16-byte [`payload`](mod@crate::payload) stamp sit, and the
//! ones-complement sum of everything that never changes. [`Generator::run`] writes the config
//! into the `gen_tx` program's map and asks the kernel to run the program `repeat` times per
//! `bpf()` call on copies of the template (live-frames mode). Each run of the program takes the
//! next sequence number (an atomic counter in a map), picks flow `seq % flows`, restores the
//! frame's headers from the copy of the template's first bytes the config carries (live-frames
//! mode reuses a page as the receiver left it, and a router rewrites MACs and TTL in place),
//! writes the source port and the stamp (magic, flow, seq, `bpf_ktime_get_ns()`), recomputes
//! the L4 checksum from the precomputed sum and returns `XDP_TX`, which live-frames mode turns
//! into a transmit out of
//! the interface named in `ctx_in` (through the driver's `ndo_xdp_xmit`, in batches). This is
//! the technique xdp-trafficgen uses: no socket, no copy from user space per frame.
//!
//! # What to know before using it
//!
//! - **Namespace.** The kernel resolves `ctx_in.ingress_ifindex` in the network namespace of the
//!   calling thread, so [`Generator::load`] (which looks the index up) and [`Generator::run`]
//!   must both run on a thread inside the namespace of the interface — e.g. inside
//!   `sluice_testbed::Netns::run`. The same holds for [`attach_drop_all`] / [`attach_pass_all`]
//!   (they resolve the interface name); the handles they return work from any thread.
//! - **veth.** veth's `ndo_xdp_xmit` delivers only to a peer that has an XDP program attached
//!   (or GRO enabled); otherwise the frames are dropped silently. Attach [`attach_drop_all`]
//!   (the XDP_DROP floor), [`attach_pass_all`] (kernel-socket baselines) or the engine under
//!   test on the receiving end.
//! - **What "sent" means.** [`GenReport::sent`] counts frames the program stamped and returned
//!   `XDP_TX` for (from the sequence counter). Live-frames mode does not report transmit
//!   failures (e.g. a full peer ring) to user space; count at the receiver.
//! - **CPU.** Each `bpf()` call runs on the calling thread's CPU (migration is disabled during a
//!   call, not between calls). Pin the thread for stable numbers; the sequence counter is atomic,
//!   so migration never duplicates a sequence number.
//!
//! This module must never touch frames in user space per packet, and never leaves a program
//! attached: every attachment is a bpf_link owned by a handle and detached on drop.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use aya::maps::{Array, MapData, MapError, PerCpuArray};
use aya::programs::links::FdLink;
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader, TestRun, TestRunAttrs, TestRunOptions};
use sluice::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, MacAddr, TcpPacket, UdpPacket,
    checksum, ethernet, ipv4, ipv6, tcp, udp,
};
use sluice_ebpf::bench::{self as obj, GenConfig, counter};

use crate::payload;

/// Smallest frame (without FCS): the 64-byte Ethernet minimum less the 4-byte FCS.
pub const MIN_FRAME_LEN: usize = 60;
/// Largest frame (without FCS): a 1500-byte MTU plus the 14-byte Ethernet header.
pub const MAX_FRAME_LEN: usize = 1514;
/// Default frames the kernel runs per batch in live-frames mode (1..=256): the kernel's own
/// default, the NAPI budget. 64 and 256 measured the same within this VM's noise
/// (4.6–5.7 Mpps either way, 64-byte UDP into `drop_all` on veth).
pub const DEFAULT_BATCH: u32 = 64;

/// Most frames asked for in one `bpf()` call. The kernel checks for signals and rescheduling
/// between batches, so a long call is harmless, but the run loop only looks at the clock
/// between calls.
const MAX_CHUNK: u32 = 1 << 20;
/// The max-rate loop sizes its calls to take about this long: short enough to stop close to
/// the deadline and report progress on time, long enough to amortise the page-pool set-up each
/// call costs.
const MAX_RATE_CALL: Duration = Duration::from_millis(5);
/// How long after its window a fixed-rate run may keep sending the frames it still owes.
const LATE_LIMIT: Duration = Duration::from_secs(1);

/// The fixed-rate loop sends one chunk per this interval (at most; fewer at low rates).
const PACE_TICK: Duration = Duration::from_millis(1);
/// Highest lateness the paced run's histogram tells apart (1 s); larger values are clamped.
const PACED_LATE_MAX_NS: u64 = 1_000_000_000;
/// How often `progress` is called.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Everything the generator can fail at; each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The template cannot be built as asked.
    #[error("invalid generator template: {reason}")]
    InvalidTemplate {
        /// What is wrong.
        reason: String,
    },

    /// `Rate::Pps(0)`, or a zero duration.
    #[error("invalid generator run: {reason}")]
    InvalidRun {
        /// What is wrong.
        reason: String,
    },

    /// No interface of that name in the calling thread's network namespace.
    #[error("network interface {iface} not found (in this thread's network namespace)")]
    InterfaceNotFound {
        /// The name asked for.
        iface: String,
        /// `if_nametoindex`'s error.
        #[source]
        source: nix::Error,
    },

    /// Parsing the object, creating its maps or loading (verifying) a program failed.
    #[error(
        "loading the XDP program `{program}` for {iface} failed{}",
        verifier_suffix(verifier_log)
    )]
    Load {
        /// The program.
        program: &'static str,
        /// The interface it was meant for.
        iface: String,
        /// The verifier's log, when it rejected the program.
        verifier_log: Option<String>,
        /// aya's error.
        #[source]
        source: Box<EbpfError>,
    },

    /// The committed object lacks a program or map this module expects (a stale object).
    #[error("the benchmark XDP object is not what sluice-bench expects: {what}")]
    Object {
        /// What is missing or of the wrong type.
        what: String,
    },

    /// Reading or writing a map failed.
    #[error("{op} in map `{map}` for {iface} failed")]
    Map {
        /// The interface.
        iface: String,
        /// Map name.
        map: &'static str,
        /// What was being done.
        op: &'static str,
        /// aya's error.
        #[source]
        source: Box<MapError>,
    },

    /// `BPF_PROG_TEST_RUN` in live-frames mode failed.
    #[error("running `gen_tx` (BPF_PROG_TEST_RUN, live frames) on {iface} failed")]
    TestRun {
        /// The interface.
        iface: String,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },

    /// Attaching a sink program failed.
    #[error("attaching `{program}` to {iface} failed")]
    Attach {
        /// The program.
        program: &'static str,
        /// The interface.
        iface: String,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },

    /// The kernel attached without a bpf_link (Linux < 5.9); refused (already detached), as
    /// such an attachment would outlive this process.
    #[error("`{program}` on {iface} could only be attached through netlink, not a bpf_link")]
    NoBpfLink {
        /// The program.
        program: &'static str,
        /// The interface.
        iface: String,
    },
}

fn verifier_suffix(log: &Option<String>) -> String {
    match log {
        Some(log) if !log.trim().is_empty() => format!("; verifier log:\n{}", log.trim_end()),
        _ => String::new(),
    }
}

// ---- templates ----------------------------------------------------------------------------

/// Transport protocol of a [`Template`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// UDP.
    Udp,
    /// TCP: one segment with flags PSH|ACK, fixed sequence and acknowledgment numbers.
    Tcp,
}

impl fmt::Display for L4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4::Udp => "udp",
            L4::Tcp => "tcp",
        })
    }
}

/// What the generator sends: one frame, varied per flow in its source port.
///
/// Frame sizes follow the benchmark convention "64..1518-byte frames" *with* the 4-byte FCS,
/// which the kernel and NIC add: `frame_len` here is without it, `60..=1514`. A template whose
/// headers plus the 16-byte stamp need more than `frame_len` grows to fit
/// ([`Template::build`] returns the effective length): UDP/IPv4 fits in 60 bytes, TCP/IPv4
/// needs 70, UDP/IPv6 78, TCP/IPv6 90.
///
/// TCP segments carry PSH|ACK with fixed sequence/acknowledgment numbers and a full window: a
/// DUT steers them by destination port like any other segment; a kernel socket without a
/// matching connection answers with a RST (harmless to the benchmark).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// Transport protocol.
    pub l4: L4,
    /// IPv6 instead of IPv4; `src_ip` and `dst_ip` must be of that family.
    pub ipv6: bool,
    /// Requested frame length without FCS, `60..=1514` (60 = a "64-byte frame").
    pub frame_len: usize,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source address.
    pub src_ip: IpAddr,
    /// Destination address.
    pub dst_ip: IpAddr,
    /// Source port of flow 0; flow `f` uses `base_sport + f`.
    pub base_sport: u16,
    /// Destination port (what a DUT steers on).
    pub dport: u16,
    /// Number of flows, `>= 1`; `base_sport + flows - 1` must fit in a port.
    pub flows: u16,
}

/// Byte positions inside a built template.
#[derive(Clone, Copy, Debug)]
struct Layout {
    l3: usize,
    l4: usize,
    l4_header_len: usize,
    frame_len: usize,
}

impl Layout {
    fn stamp(&self) -> usize {
        self.l4 + self.l4_header_len
    }
    fn l4_len(&self) -> usize {
        self.frame_len - self.l4
    }
}

impl Template {
    /// A 64-byte (60 without FCS) UDP/IPv4 template with one flow: fill in the addresses.
    pub fn udp4(src_mac: [u8; 6], dst_mac: [u8; 6], src: IpAddr, dst: IpAddr, dport: u16) -> Self {
        Template {
            l4: L4::Udp,
            ipv6: false,
            frame_len: MIN_FRAME_LEN,
            src_mac,
            dst_mac,
            src_ip: src,
            dst_ip: dst,
            base_sport: 10_000,
            dport,
            flows: 1,
        }
    }

    fn invalid(reason: impl Into<String>) -> GenError {
        GenError::InvalidTemplate {
            reason: reason.into(),
        }
    }

    fn layout(&self) -> Result<Layout, GenError> {
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&self.frame_len) {
            return Err(Self::invalid(format!(
                "frame length {} is outside {MIN_FRAME_LEN}..={MAX_FRAME_LEN} (without FCS)",
                self.frame_len
            )));
        }
        if self.flows == 0 {
            return Err(Self::invalid("flows must be at least 1"));
        }
        if u32::from(self.base_sport) + u32::from(self.flows) - 1 > u32::from(u16::MAX) {
            return Err(Self::invalid(format!(
                "source ports {}+{} flows run past 65535",
                self.base_sport, self.flows
            )));
        }
        let family_ok = match (self.src_ip, self.dst_ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => !self.ipv6,
            (IpAddr::V6(_), IpAddr::V6(_)) => self.ipv6,
            _ => false,
        };
        if !family_ok {
            return Err(Self::invalid(format!(
                "addresses {} -> {} do not match ipv6 = {}",
                self.src_ip, self.dst_ip, self.ipv6
            )));
        }
        let l3 = ethernet::HEADER_LEN;
        let l4 = l3
            + if self.ipv6 {
                ipv6::HEADER_LEN
            } else {
                ipv4::HEADER_LEN
            };
        let l4_header_len = match self.l4 {
            L4::Udp => udp::HEADER_LEN,
            L4::Tcp => tcp::HEADER_LEN,
        };
        let frame_len = self.frame_len.max(l4 + l4_header_len + payload::LEN);
        Ok(Layout {
            l3,
            l4,
            l4_header_len,
            frame_len,
        })
    }

    /// The template frame and the generator config for it (with `ifindex` 0: the generator
    /// fills in its interface).
    ///
    /// The frame is complete and valid as it stands: flow 0's source port, the stamp bytes all
    /// zero, the payload after the stamp a fixed byte pattern, IPv4 header checksum and L4
    /// checksum filled in. Its length is `max(frame_len, headers + 16)` (`frame.len()`).
    pub fn build(&self) -> Result<(Vec<u8>, GenConfig), GenError> {
        let lay = self.layout()?;
        let mut frame = vec![0u8; lay.frame_len];
        let proto = match self.l4 {
            L4::Udp => IpProtocol::UDP,
            L4::Tcp => IpProtocol::TCP,
        };

        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.set_dst_addr(MacAddr(self.dst_mac));
        eth.set_src_addr(MacAddr(self.src_mac));

        // Fixed payload pattern after the stamp, so the base sum covers non-zero data.
        for (i, b) in frame[lay.stamp() + payload::LEN..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7).wrapping_add(1);
        }

        let l4_len = lay.l4_len();
        let pseudo = match (self.src_ip, self.dst_ip) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                EthernetFrame::new_unchecked(&mut frame[..]).set_ether_type(EtherType::IPV4);
                let mut ip = Ipv4Packet::new_unchecked(&mut frame[lay.l3..]);
                ip.set_version(4);
                ip.set_header_len(ipv4::HEADER_LEN);
                ip.set_dscp(0);
                ip.set_ecn(0);
                ip.set_total_len((lay.frame_len - lay.l3) as u16);
                ip.set_ident(0);
                ip.set_dont_frag(true);
                ip.set_more_frags(false);
                ip.set_frag_offset(0);
                ip.set_ttl(64);
                ip.set_protocol(proto);
                ip.set_src_addr(src);
                ip.set_dst_addr(dst);
                ip.fill_checksum();
                checksum::pseudo_header_v4(src, dst, proto, l4_len as u32)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                EthernetFrame::new_unchecked(&mut frame[..]).set_ether_type(EtherType::IPV6);
                let mut ip = Ipv6Packet::new_unchecked(&mut frame[lay.l3..]);
                ip.set_version(6);
                ip.set_traffic_class(0);
                ip.set_flow_label(0);
                ip.set_payload_len(l4_len as u16);
                ip.set_next_header(proto);
                ip.set_hop_limit(64);
                ip.set_src_addr(&src);
                ip.set_dst_addr(&dst);
                checksum::pseudo_header_v6(&src, &dst, proto, l4_len as u32)
            }
            _ => unreachable!("checked in layout()"),
        };

        // The L4 header with source port and checksum zero: what the base sum covers.
        let l4 = &mut frame[lay.l4..];
        let (sport_field, csum_field) = match self.l4 {
            L4::Udp => {
                let mut u = UdpPacket::new_unchecked(&mut *l4);
                u.set_src_port(0);
                u.set_dst_port(self.dport);
                u.set_len(l4_len as u16);
                u.set_checksum(0);
                (udp::field::SRC_PORT, udp::field::CHECKSUM)
            }
            L4::Tcp => {
                let mut t = TcpPacket::new_unchecked(&mut *l4);
                t.set_src_port(0);
                t.set_dst_port(self.dport);
                t.set_seq_number(1);
                t.set_ack_number(1);
                t.set_header_len(tcp::HEADER_LEN);
                t.set_flags(tcp::FLAG_PSH | tcp::FLAG_ACK);
                t.set_window_len(u16::MAX);
                t.set_checksum(0);
                t.set_urgent_at(0);
                (tcp::field::SRC_PORT, tcp::field::CHECKSUM)
            }
        };
        // Stamp bytes are still zero here.
        let base_sum = u32::from(pseudo) + u32::from(checksum::data(&frame[lay.l4..]));

        let mut config = GenConfig {
            base_sum,
            flows: u32::from(self.flows),
            base_sport: self.base_sport,
            sport_off: (lay.l4 + sport_field.start) as u16,
            csum_off: (lay.l4 + csum_field.start) as u16,
            stamp_off: lay.stamp() as u16,
            flags: match self.l4 {
                L4::Udp => obj::GEN_F_ZERO_CSUM_AS_FFFF,
                L4::Tcp => 0,
            },
            // Filled in by Generator::run.
            ifindex: 0,
            // Filled in below, from the finished frame.
            head: [0; obj::GEN_HEAD_LEN],
        };

        // Make the template itself valid: flow 0's port and its checksum.
        let l4 = &mut frame[lay.l4..];
        match self.l4 {
            L4::Udp => {
                let mut u = UdpPacket::new_unchecked(l4);
                u.set_src_port(self.base_sport);
                u.fill_checksum(pseudo);
            }
            L4::Tcp => {
                let mut t = TcpPacket::new_unchecked(l4);
                t.set_src_port(self.base_sport);
                t.fill_checksum(pseudo);
            }
        }
        // The bytes the program restores on every run: the finished template's head, so every
        // header byte (MACs, TTL, IPv4 header checksum, ...) leaves as built whatever a receiver
        // did to the page. The copy must reach the stamp; it does for every layout here
        // (headers <= 74 bytes, frame >= headers + 16).
        let n = frame.len().min(obj::GEN_HEAD_LEN);
        config.head[..n].copy_from_slice(&frame[..n]);
        if lay.stamp() > head_copy_len(frame.len()) {
            return Err(Self::invalid(format!(
                "headers of {} bytes do not fit in the {} bytes the generator restores",
                lay.stamp(),
                head_copy_len(frame.len())
            )));
        }
        Ok((frame, config))
    }
}

/// How many bytes of [`GenConfig::head`] `gen_tx` copies over a frame of `frame_len` bytes: the
/// largest of 80, 72, 64, 56 that fits (0: the program drops the frame as bad).
fn head_copy_len(frame_len: usize) -> usize {
    [80, 72, 64, 56]
        .into_iter()
        .find(|&n| n <= frame_len)
        .unwrap_or(0)
}

/// Prebuilt frames the generator sends in turn, one frame per `bpf()` call: for traffic a
/// single [`Template`] cannot express, such as DNS queries for many names.
///
/// Each frame is sent exactly as given (Ethernet to the end of the IP packet, checksums
/// filled in by the caller), followed by [`FrameSet::PAD`] bytes of Ethernet padding: `gen_tx`
/// writes its per-frame fields (flow's source port, 16-byte stamp, L4 checksum) into that
/// padding, where every receiver ignores them (they lie past the IP total length), so the
/// packet itself leaves untouched and its checksums stay valid. The price of leaving the
/// program unchanged: all frames of one call are the same packet, so rotation is per call, not
/// per frame (cap the call size with `frames_per_call` in [`Generator::run_set`]); and a frame
/// must end within the bytes `gen_tx` restores from its config (at most
/// [`FrameSet::MAX_PACKET_LEN`] bytes, e.g. Ethernet + IPv4 + UDP + a 38-byte message).
#[derive(Clone, Debug)]
pub struct FrameSet {
    /// Each padded frame with the config that sends it unchanged.
    frames: Vec<(Vec<u8>, GenConfig)>,
}

impl FrameSet {
    /// Padding added behind each frame: the 16-byte stamp, over which the source port (before
    /// it) and the checksum (after it) also land.
    pub const PAD: usize = payload::LEN;
    /// Longest packet a set takes (Ethernet header included, padding not): `gen_tx` restores at
    /// most [`obj::GEN_HEAD_LEN`] bytes and needs its stamp to start within them.
    pub const MAX_PACKET_LEN: usize = obj::GEN_HEAD_LEN;

    /// A set of `packets`, each a complete frame without FCS. Fails if the set is empty or a
    /// frame is longer than [`FrameSet::MAX_PACKET_LEN`] or, padded, shorter than
    /// [`MIN_FRAME_LEN`] would allow.
    pub fn new(packets: impl IntoIterator<Item = Vec<u8>>) -> Result<FrameSet, GenError> {
        let mut frames = Vec::new();
        for (i, mut frame) in packets.into_iter().enumerate() {
            if frame.len() > Self::MAX_PACKET_LEN {
                return Err(Template::invalid(format!(
                    "frame {i} of the set is {} bytes; at most {} fit before the generator's \
                     per-frame writes",
                    frame.len(),
                    Self::MAX_PACKET_LEN
                )));
            }
            // Even, so the stamp's words sit on 16-bit boundaries as the program expects;
            // then the padding, and Ethernet's minimum length.
            frame.resize(frame.len().next_multiple_of(2), 0);
            let stamp_off = frame.len();
            frame.resize((stamp_off + Self::PAD).max(MIN_FRAME_LEN), 0);
            if stamp_off > head_copy_len(frame.len()) {
                return Err(Template::invalid(format!(
                    "frame {i} of the set: its stamp at byte {stamp_off} lies beyond the {} bytes \
                     the generator restores",
                    head_copy_len(frame.len())
                )));
            }
            let mut config = GenConfig {
                base_sum: 0,
                flows: 1,
                base_sport: 0,
                // The port first, then the stamp over it, then the checksum over the stamp's
                // last word: all of it padding.
                sport_off: stamp_off as u16,
                csum_off: (stamp_off + Self::PAD - 2) as u16,
                stamp_off: stamp_off as u16,
                flags: 0,
                ifindex: 0,
                head: [0; obj::GEN_HEAD_LEN],
            };
            let n = frame.len().min(obj::GEN_HEAD_LEN);
            config.head[..n].copy_from_slice(&frame[..n]);
            frames.push((frame, config));
        }
        if frames.is_empty() {
            return Err(Template::invalid("a frame set needs at least one frame"));
        }
        Ok(FrameSet { frames })
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Always false: a set has at least one frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frame `i` as it goes on the wire, padding included.
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.frames[i].0
    }
}

// ---- the generator ------------------------------------------------------------------------

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// As fast as one thread can.
    Max,
    /// A fixed rate in frames per second; a run sends `pps × duration` frames, paced against
    /// the clock in chunks of about a millisecond.
    Pps(u64),
    /// A fixed rate in frames per second, every frame scheduled on its own: frame `i` is due
    /// `i / pps` s after the start ([`PaceSchedule`]). Sent by [`crate::pace`] (a UDP socket),
    /// not by [`Generator::run`], which refuses it (see the `pace` module doc for why).
    Paced(u64),
}

impl Rate {
    /// The fixed rate asked for (frames/s), `None` for [`Rate::Max`].
    pub fn pps(self) -> Option<u64> {
        match self {
            Rate::Max => None,
            Rate::Pps(p) | Rate::Paced(p) => Some(p),
        }
    }
}

/// The departure schedule of a paced run: frame `i` (counted from 0) is due
/// `floor(i × 10^9 / pps)` ns after the start. Pure arithmetic, in u128 so that no rate or
/// run length this generator can reach overflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaceSchedule {
    pps: u64,
}

impl PaceSchedule {
    /// The schedule for `pps` frames per second; `None` for 0.
    pub fn new(pps: u64) -> Option<PaceSchedule> {
        (pps > 0).then_some(PaceSchedule { pps })
    }

    /// When frame `i` is due, in ns after the start.
    pub fn due_ns(&self, i: u64) -> u64 {
        (u128::from(i) * 1_000_000_000 / u128::from(self.pps)) as u64
    }

    /// How many frames are due at `t_ns` after the start: the number of `i` with
    /// `due_ns(i) <= t_ns`, i.e. `ceil((t_ns + 1) × pps / 10^9)`.
    pub fn due_by(&self, t_ns: u64) -> u64 {
        let num = (u128::from(t_ns) + 1) * u128::from(self.pps);
        num.div_ceil(1_000_000_000) as u64
    }

    /// The slot to send next when slot `slot` is the first unsent one and the time is `t_ns`:
    /// `slot` itself while it is at most `max_lag_ns` overdue, else the first slot due less
    /// than `max_lag_ns` ago — the older ones are given up, so that falling behind by a stall
    /// never comes out as a burst of more than `max_lag_ns` worth of frames.
    pub fn resume_slot(&self, slot: u64, t_ns: u64, max_lag_ns: u64) -> u64 {
        if self.due_ns(slot).saturating_add(max_lag_ns) >= t_ns {
            slot
        } else {
            slot.max(self.due_by(t_ns - max_lag_ns - 1))
        }
    }

    /// The ideal gap between two frames, ns (fractional).
    pub fn gap_ns(&self) -> f64 {
        1e9 / self.pps as f64
    }
}

/// How a paced run kept to its schedule, from the generator's side (one sample per round of its
/// loop that sends): lateness is the round's start minus the due time of the first unsent slot.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PacingStats {
    /// Rounds that sent frames.
    pub calls: u64,
    /// Mean frames per round (1.0 = every frame sent on its own, at its time).
    pub mean_frames_per_call: f64,
    /// Most frames in one round (at most [`crate::pace::MAX_PER_WAKE`]).
    pub max_frames_per_call: u64,
    /// Schedule slots given up because the run was more than 200 µs behind, or whose send
    /// failed (not sent, not counted in `sent`).
    pub skipped: u64,
    /// Sends that failed with a full queue (`ENOBUFS`/`EAGAIN`), included in `skipped`.
    pub send_failures: u64,
    /// Rounds that sent more than one frame (the generator was behind by at least a gap).
    pub multi_frame_calls: u64,
    /// Lateness percentiles, µs: median.
    pub late_p50_us: f64,
    /// 99th percentile.
    pub late_p99_us: f64,
    /// 99.9th percentile.
    pub late_p999_us: f64,
    /// Largest.
    pub late_max_us: f64,
    /// Wall time spent inside the send calls per frame sent, ns: the pacer's cost per frame,
    /// including kernel work those calls do on its core (on veth, by default, the receiving
    /// end's XDP program and AF_XDP copy) and any time it was preempted inside them.
    pub send_ns_per_frame: f64,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::Pps(p) => write!(f, "{p} pps"),
            Rate::Paced(p) => write!(f, "{p} pps paced"),
        }
    }
}

/// Live progress, passed to [`Generator::run`]'s callback about every 100 ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenProgress {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Frames sent so far.
    pub sent: u64,
    /// Rate over the interval since the previous progress call, frames per second.
    pub interval_pps: f64,
    /// The fixed rate asked for, if any.
    pub offered_pps: Option<u64>,
}

/// The outcome of a [`Generator::run`].
#[derive(Clone, Debug, PartialEq)]
pub struct GenReport {
    /// Frames stamped and handed to the transmit path (`XDP_TX`), from the sequence counter.
    pub sent: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Sequence number of the first frame of this run (the stamp carries its low 32 bits).
    pub first_seq: u64,
    /// Sequence number of the last frame (`first_seq + sent - 1`); meaningless if `sent == 0`.
    pub last_seq: u64,
    /// Frame length without FCS (the template's effective length; for a [`FrameSet`], its
    /// longest frame, padding included).
    pub frame_len: usize,
    /// The rate asked for.
    pub rate: Rate,
    /// `sent / elapsed`, frames per second.
    pub achieved_pps: f64,
    /// What the program's per-CPU counter saw during the run (equals `sent` unless another
    /// thread ran the same loaded program concurrently).
    pub program_frames: u64,
    /// Frames the program dropped because the config did not fit the frame (should be 0).
    pub bad_frames: u64,
    /// `bpf()` calls made.
    pub calls: u64,
    /// How a [`Rate::Paced`] run ([`crate::pace`]) kept to its schedule (`None` otherwise).
    pub pacing: Option<PacingStats>,
}

impl GenReport {
    /// `achieved_pps` in millions.
    pub fn mpps(&self) -> f64 {
        self.achieved_pps / 1e6
    }

    /// Offered rate (frames/s) for a fixed-rate run.
    pub fn offered_pps(&self) -> Option<u64> {
        self.rate.pps()
    }
}

/// `struct xdp_md` as `ctx_in` for `BPF_PROG_TEST_RUN`: data = 0, data_end = frame length,
/// data_meta = 0, ingress_ifindex, rx_queue_index, egress_ifindex = 0 (the kernel rejects a
/// non-zero egress index and a data_end other than the data length).
fn xdp_md(frame_len: usize, ifindex: u32, rx_queue: u32) -> [u8; 24] {
    let words = [0, frame_len as u32, 0, ifindex, rx_queue, 0];
    let mut b = [0u8; 24];
    for (chunk, w) in b.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    b
}

fn ifindex(iface: &str) -> Result<u32, GenError> {
    nix::net::if_::if_nametoindex(iface).map_err(|source| GenError::InterfaceNotFound {
        iface: iface.to_string(),
        source,
    })
}

/// Parses `object` ([`sluice_ebpf::BENCH_OBJ`] or [`sluice_ebpf::FWD_OBJ`]) and loads
/// (verifies) program `program` of it.
fn load_object(object: &[u8], program: &'static str, iface: &str) -> Result<Ebpf, GenError> {
    let load_err = |source: EbpfError| {
        let verifier_log = match &source {
            EbpfError::ProgramError(ProgramError::LoadError { verifier_log, .. }) => {
                Some(format!("{verifier_log:?}"))
            }
            _ => None,
        };
        GenError::Load {
            program,
            iface: iface.to_string(),
            verifier_log,
            source: Box::new(source),
        }
    };
    let mut bpf = EbpfLoader::new().load(object).map_err(load_err)?;
    xdp_mut(&mut bpf, program)?
        .load()
        .map_err(|e| load_err(EbpfError::ProgramError(e)))?;
    Ok(bpf)
}

fn xdp_mut<'a>(bpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut Xdp, GenError> {
    bpf.program_mut(program)
        .ok_or_else(|| GenError::Object {
            what: format!("no program `{program}`"),
        })?
        .try_into()
        .map_err(|_| GenError::Object {
            what: format!("`{program}` is not an XDP program"),
        })
}

fn take_map<M>(bpf: &mut Ebpf, name: &'static str) -> Result<M, GenError>
where
    M: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = bpf.take_map(name).ok_or_else(|| GenError::Object {
        what: format!("no map `{name}`"),
    })?;
    M::try_from(map).map_err(|e| GenError::Object {
        what: format!("map `{name}` has the wrong type or layout: {e}"),
    })
}

fn sum_counter(
    counters: &PerCpuArray<MapData, u64>,
    idx: u32,
    iface: &str,
) -> Result<u64, GenError> {
    let values = counters.get(&idx, 0).map_err(|source| GenError::Map {
        iface: iface.to_string(),
        map: obj::COUNTERS_MAP,
        op: "reading a counter",
        source: Box::new(source),
    })?;
    Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
}

/// The loaded `gen_tx` program for one interface, and its maps. (Its only attachment is the
/// inert loopback one described at [`Generator::load`].)
///
/// Create and run it on a thread inside the interface's network namespace (see the module
/// doc). One `Generator` sends from one thread; for more cores, load one per thread (their
/// sequence numbers are then independent).
pub struct Generator {
    iface: String,
    ifindex: u32,
    batch: u32,
    /// Most frames per `bpf()` call (see [`Generator::set_max_call`]).
    max_call: u32,
    config: Array<MapData, [u8; GenConfig::SIZE]>,
    seq: Array<MapData, u64>,
    counters: PerCpuArray<MapData, u64>,
    /// `gen_tx` attached (generic mode) to loopback, only to keep it in the kernel's XDP
    /// dispatcher; see [`Generator::load`]. Declared before `bpf`: the link goes first.
    dispatcher_pin: Option<FdLink>,
    bpf: Ebpf,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("iface", &self.iface)
            .field("ifindex", &self.ifindex)
            .field("batch", &self.batch)
            .field("dispatcher_pinned", &self.dispatcher_pin.is_some())
            .finish_non_exhaustive()
    }
}

/// The loopback device every network namespace has.
const LOOPBACK: &str = "lo";

impl Generator {
    /// Loads `gen_tx` for sending out of `iface` (looked up in the calling thread's network
    /// namespace). Needs `CAP_BPF` + `CAP_NET_ADMIN` (or root).
    ///
    /// It also attaches `gen_tx` in generic (skb) mode to this namespace's loopback device,
    /// through a bpf_link owned by the generator. The program passes every frame that does not
    /// come from the generator's own `ctx_in` (ingress ifindex check), so loopback traffic is
    /// untouched. Why: each `BPF_PROG_TEST_RUN` call with `repeat > 1` adds the program to the
    /// kernel's XDP dispatcher and removes it afterwards, and each change waits for an RCU
    /// grace period (measured ~25 ms per call on Linux 6.18, 2 vCPUs), which would force
    /// huge, bursty calls. While the program is attached anywhere those changes are mere
    /// reference counts. If the attach fails, the generator logs one warning and works
    /// anyway, with that per-call cost.
    pub fn load(iface: &str) -> Result<Generator, GenError> {
        let ifindex = ifindex(iface)?;
        let mut bpf = load_object(sluice_ebpf::BENCH_OBJ, obj::GEN_PROGRAM, iface)?;
        let config = take_map(&mut bpf, obj::GEN_CONFIG_MAP)?;
        let seq = take_map(&mut bpf, obj::GEN_SEQ_MAP)?;
        let counters = take_map(&mut bpf, obj::COUNTERS_MAP)?;
        let dispatcher_pin = match pin_in_dispatcher(&mut bpf, ifindex) {
            Ok(link) => Some(link),
            Err(e) => {
                log::warn!(
                    "generator on {iface}: could not keep `gen_tx` in the XDP dispatcher \
                     (generic-mode attach to {LOOPBACK} failed: {}); every BPF_PROG_TEST_RUN \
                     call now costs an RCU grace period, so fixed rates are sent in coarser \
                     bursts",
                    sluice::error::chain(&e)
                );
                None
            }
        };
        Ok(Generator {
            iface: iface.to_string(),
            ifindex,
            batch: DEFAULT_BATCH,
            max_call: MAX_CHUNK,
            config,
            seq,
            counters,
            dispatcher_pin,
            bpf,
        })
    }

    /// Whether `gen_tx` is kept in the XDP dispatcher (see [`Generator::load`]).
    pub fn dispatcher_pinned(&self) -> bool {
        self.dispatcher_pin.is_some()
    }

    /// The interface frames go out of.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Frames per live-frames batch (`1..=256`, clamped): the kernel transmits a batch at once.
    pub fn set_batch_size(&mut self, batch: u32) {
        self.batch = batch.clamp(1, 256);
    }

    /// Most frames per `bpf()` call (`1..=2^20`, clamped; default 2^20).
    ///
    /// Not needed for correctness: each call runs on a page pool of its own whose pages are
    /// filled with the template only when first allocated, and a page that comes back while the
    /// call runs is reused as the receiver left it — but `gen_tx` restores the template's first
    /// 56–80 bytes (every header byte) on every frame, so a router's in-place MAC / TTL
    /// rewrite never leaks into the next frame on that page. (Before it did, the forward
    /// scenario capped calls at one batch so that every frame was on a fresh page.) A cap
    /// shortens calls at the cost of a page pool per call.
    pub fn set_max_call(&mut self, frames: u32) {
        self.max_call = frames.clamp(1, MAX_CHUNK);
    }

    /// The sequence number the next frame will get.
    pub fn next_seq(&self) -> Result<u64, GenError> {
        self.seq.get(&0, 0).map_err(|source| GenError::Map {
            iface: self.iface.clone(),
            map: obj::GEN_SEQ_MAP,
            op: "reading the sequence counter",
            source: Box::new(source),
        })
    }

    /// Sets the sequence number of the next frame (e.g. 0 before a run a receiver checks).
    pub fn set_next_seq(&mut self, seq: u64) -> Result<(), GenError> {
        let iface = self.iface.clone();
        self.seq.set(0, seq, 0).map_err(|source| GenError::Map {
            iface,
            map: obj::GEN_SEQ_MAP,
            op: "setting the sequence counter",
            source: Box::new(source),
        })
    }

    fn counter(&self, idx: u32) -> Result<u64, GenError> {
        sum_counter(&self.counters, idx, &self.iface)
    }

    /// Sends `template` at `rate` for `duration`, then returns. Calls `progress` about every
    /// 100 ms. Must run on a thread inside `iface`'s network namespace.
    ///
    /// `Rate::Max` sends until `duration` has passed (overshooting by at most ~5 ms, one call).
    /// `Rate::Pps(r)` sends `r × duration` frames, paced against the clock with up to one
    /// millisecond's worth sent ahead, and then waits out the rest of `duration`; if it cannot
    /// keep up it stops at `duration` with fewer frames (compare `achieved_pps` with the offer).
    /// `Rate::Paced(_)` is refused ([`GenError::InvalidRun`]): see [`crate::pace`].
    ///
    /// Errors: a failing `bpf()` call ends the run with [`GenError::TestRun`], except `EINTR`
    /// (a signal arrived mid-call; the frames sent before it are counted) which is retried.
    pub fn run(
        &mut self,
        template: &Template,
        rate: Rate,
        duration: Duration,
        progress: impl FnMut(&GenProgress),
    ) -> Result<GenReport, GenError> {
        let built = template.build()?;
        self.run_frames(
            std::slice::from_ref(&built),
            MAX_CHUNK,
            rate,
            duration,
            progress,
        )
    }

    /// As [`Generator::run`], sending the frames of `set` in turn, one per `bpf()` call of at
    /// most `frames_per_call` frames (`1..=2^20`, clamped): frame `k` goes out
    /// `frames_per_call` times (fewer at low fixed rates, whose calls are a millisecond's
    /// worth), then frame `k + 1`, round and round. Every frame is sent as it stands (see
    /// [`FrameSet`]). Smaller calls mix the frames more finely and cost more per frame (each
    /// call sets up its own page pool and rewrites the program's config).
    pub fn run_set(
        &mut self,
        set: &FrameSet,
        frames_per_call: u32,
        rate: Rate,
        duration: Duration,
        progress: impl FnMut(&GenProgress),
    ) -> Result<GenReport, GenError> {
        let per_call = frames_per_call.clamp(1, MAX_CHUNK);
        self.run_frames(&set.frames, per_call, rate, duration, progress)
    }

    fn write_config(&mut self, mut config: GenConfig) -> Result<(), GenError> {
        config.ifindex = self.ifindex;
        let iface = self.iface.clone();
        self.config
            .set(0, config.to_bytes(), 0)
            .map_err(|source| GenError::Map {
                iface,
                map: obj::GEN_CONFIG_MAP,
                op: "writing the generator config",
                source: Box::new(source),
            })
    }

    /// The run loop of [`Generator::run`] and [`Generator::run_set`]: `frames` in turn, one
    /// per call of at most `per_call` frames (a single frame's config is written once).
    fn run_frames(
        &mut self,
        frames: &[(Vec<u8>, GenConfig)],
        per_call: u32,
        rate: Rate,
        duration: Duration,
        mut progress: impl FnMut(&GenProgress),
    ) -> Result<GenReport, GenError> {
        if frames.is_empty() {
            return Err(GenError::InvalidRun {
                reason: "no frames to send".into(),
            });
        }
        if duration.is_zero() {
            return Err(GenError::InvalidRun {
                reason: "duration is zero".into(),
            });
        }
        if rate.pps() == Some(0) {
            return Err(GenError::InvalidRun {
                reason: "rate is 0 pps".into(),
            });
        }
        if matches!(rate, Rate::Paced(_)) {
            return Err(GenError::InvalidRun {
                reason: "live frames cannot pace frame by frame (a page pool and an RCU grace \
                         period per bpf() call, ENOSPC after ~10^5 calls): use crate::pace"
                    .into(),
            });
        }
        let iface = self.iface.clone();
        self.write_config(frames[0].1)?;
        let first_seq = self.next_seq()?;
        let frames0 = self.counter(counter::GEN_FRAMES)?;
        let bad0 = self.counter(counter::GEN_BAD)?;
        let ctxs: Vec<[u8; 24]> = frames
            .iter()
            .map(|(f, _)| xdp_md(f.len(), self.ifindex, 0))
            .collect();
        let frame_len = frames.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
        let batch = self.batch;
        let max_call = self.max_call.min(per_call);
        // Which frame the next call sends (only moves with more than one).
        let mut next_frame = 0usize;

        let offered = rate.pps();
        // Frames a fixed-rate run sends in total, and per call (about PACE_TICK's worth).
        let total = offered.map(|p| (u128::from(p) * duration.as_nanos() / 1_000_000_000) as u64);
        let mut chunk: u32 = match offered {
            None => 4096,
            Some(p) => (u128::from(p) * PACE_TICK.as_nanos() / 1_000_000_000)
                .clamp(1, MAX_CHUNK as u128) as u32,
        };

        let start = Instant::now();
        let mut sent = 0u64;
        let mut calls = 0u64;
        let mut last_progress = (start, 0u64);
        loop {
            let now = Instant::now();
            let elapsed = now - start;
            if now - last_progress.0 >= PROGRESS_EVERY {
                let dt = (now - last_progress.0).as_secs_f64();
                progress(&GenProgress {
                    elapsed,
                    sent,
                    interval_pps: (sent - last_progress.1) as f64 / dt,
                    offered_pps: offered,
                });
                last_progress = (now, sent);
            }
            // A fixed-rate run sends all of its `rate × duration` frames: on a loaded machine the
            // last ones may go out a little after the window (bounded by LATE_LIMIT), rather
            // than the run quietly sending fewer than it was asked to.
            let done = total.is_none_or(|t| sent >= t);
            if elapsed >= duration && (done || elapsed >= duration + LATE_LIMIT) {
                break;
            }
            let n = match (offered, total) {
                (Some(_), Some(total)) if sent >= total => {
                    // All sent: wait out the window, waking for progress reports.
                    std::thread::sleep((duration - elapsed).min(PROGRESS_EVERY));
                    continue;
                }
                (Some(p), Some(total)) => {
                    // The next frame is due at sent / p seconds.
                    let due = Duration::from_nanos(
                        (u128::from(sent) * 1_000_000_000 / u128::from(p)) as u64,
                    );
                    if due > elapsed {
                        let wait = (due - elapsed)
                            .min(duration.saturating_sub(elapsed))
                            .min(PROGRESS_EVERY);
                        if wait > Duration::from_micros(50) {
                            std::thread::sleep(wait);
                        } else {
                            std::hint::spin_loop();
                        }
                        continue;
                    }
                    chunk.min((total - sent).min(u64::from(max_call)) as u32)
                }
                _ => chunk.min(max_call),
            };

            let k = next_frame;
            if frames.len() > 1 {
                self.write_config(frames[k].1)?;
                next_frame = (k + 1) % frames.len();
            }
            let call_start = Instant::now();
            let opts = TestRunOptions {
                data_in: Some(&frames[k].0),
                ctx_in: Some(&ctxs[k]),
                repeat: n,
                attrs: TestRunAttrs::new().xdp_live_frames(batch),
                ..TestRunOptions::new()
            };
            let result = xdp_mut(&mut self.bpf, obj::GEN_PROGRAM)?.test_run(opts);
            calls += 1;
            match result {
                Ok(_) => {}
                Err(ProgramError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EINTR) => {}
                Err(source) => {
                    return Err(GenError::TestRun {
                        iface,
                        source: Box::new(source),
                    });
                }
            }
            // The counter is the truth (a call cut short by a signal sent fewer than `n`).
            sent = self.next_seq()?.wrapping_sub(first_seq);

            if offered.is_none() {
                // Size the next call to take about MAX_RATE_CALL, and not to run far past
                // the deadline.
                let per_frame = call_start.elapsed().as_secs_f64() / f64::from(n.max(1));
                if per_frame > 0.0 {
                    let target = MAX_RATE_CALL.as_secs_f64() / per_frame;
                    let left = duration.saturating_sub(start.elapsed()).as_secs_f64() / per_frame;
                    chunk = target.min(left + 1.0).clamp(64.0, f64::from(MAX_CHUNK)) as u32;
                }
            }
        }
        let elapsed = start.elapsed();
        let program_frames = self.counter(counter::GEN_FRAMES)?.wrapping_sub(frames0);
        let bad_frames = self.counter(counter::GEN_BAD)?.wrapping_sub(bad0);
        let report = GenReport {
            sent,
            elapsed,
            first_seq,
            last_seq: first_seq.wrapping_add(sent).wrapping_sub(1),
            frame_len,
            rate,
            achieved_pps: sent as f64 / elapsed.as_secs_f64(),
            program_frames,
            bad_frames,
            calls,
            pacing: None,
        };
        Ok(report)
    }
}

/// Collects [`PacingStats`] during a paced run: one sample per round that sends, into a
/// histogram allocated up front.
pub(crate) struct PacingRecorder {
    late: hdrhistogram::Histogram<u64>,
    frames: u64,
    max_frames: u64,
    multi: u64,
    skipped: u64,
}

impl PacingRecorder {
    pub(crate) fn new() -> Self {
        PacingRecorder {
            late: hdrhistogram::Histogram::new_with_bounds(1, PACED_LATE_MAX_NS, 3)
                .expect("constant histogram bounds are valid"),
            frames: 0,
            max_frames: 0,
            multi: 0,
            skipped: 0,
        }
    }

    /// A call that sends `n` frames, `late_ns` after the first unsent slot was due, having
    /// given up `skipped` slots.
    pub(crate) fn record(&mut self, late_ns: u64, n: u32, skipped: u64) {
        self.skipped += skipped;
        self.late.saturating_record(late_ns);
        self.frames += u64::from(n);
        self.max_frames = self.max_frames.max(u64::from(n));
        self.multi += u64::from(n > 1);
    }

    pub(crate) fn stats(&self) -> PacingStats {
        let calls = self.late.len();
        let us = |q: f64| self.late.value_at_quantile(q) as f64 / 1e3;
        PacingStats {
            calls,
            mean_frames_per_call: if calls == 0 {
                0.0
            } else {
                self.frames as f64 / calls as f64
            },
            max_frames_per_call: self.max_frames,
            skipped: self.skipped,
            send_failures: 0,
            multi_frame_calls: self.multi,
            late_p50_us: us(0.5),
            late_p99_us: us(0.99),
            late_p999_us: us(0.999),
            late_max_us: self.late.max() as f64 / 1e3,
            send_ns_per_frame: 0.0,
        }
    }
}

/// Attaches `gen_tx` in generic mode to loopback (see [`Generator::load`]).
fn pin_in_dispatcher(bpf: &mut Ebpf, gen_ifindex: u32) -> Result<FdLink, GenError> {
    let attach_err = |source: ProgramError| GenError::Attach {
        program: obj::GEN_PROGRAM,
        iface: LOOPBACK.to_string(),
        source: Box::new(source),
    };
    if ifindex(LOOPBACK)? == gen_ifindex {
        // Generating out of loopback itself: the pin would stamp loopback traffic.
        return Err(GenError::InvalidRun {
            reason: "not pinning the generator to the loopback it sends from".into(),
        });
    }
    let prog = xdp_mut(bpf, obj::GEN_PROGRAM)?;
    let id = prog.attach(LOOPBACK, XdpMode::Skb).map_err(attach_err)?;
    let link = prog.take_link(id).map_err(attach_err)?;
    FdLink::try_from(link).map_err(|_| GenError::NoBpfLink {
        program: obj::GEN_PROGRAM,
        iface: LOOPBACK.to_string(),
    })
}

// ---- sinks --------------------------------------------------------------------------------

/// Frames and bytes an XDP sink has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounts {
    /// Frames.
    pub frames: u64,
    /// Bytes (Ethernet, no FCS).
    pub bytes: u64,
}

/// An attached `drop_all`, `pass_all` or `xdp_fwd` program and its counters. Dropping it detaches the
/// program (a bpf_link; the kernel detaches it too if the process dies).
pub struct XdpCounterHandle {
    iface: String,
    program: &'static str,
    mode: XdpMode,
    frames_idx: u32,
    /// Declared before `_bpf`: the link goes first.
    link: Option<FdLink>,
    counters: PerCpuArray<MapData, u64>,
    _bpf: Ebpf,
}

impl fmt::Debug for XdpCounterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpCounterHandle")
            .field("iface", &self.iface)
            .field("program", &self.program)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl XdpCounterHandle {
    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// `drop_all`, `pass_all` or `xdp_fwd`.
    pub fn program(&self) -> &'static str {
        self.program
    }

    /// The XDP mode granted: `Driver`, or `Skb` after a logged fallback.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Frames and bytes counted since the attach, summed over CPUs.
    pub fn counts(&self) -> Result<XdpCounts, GenError> {
        Ok(XdpCounts {
            frames: sum_counter(&self.counters, self.frames_idx, &self.iface)?,
            bytes: sum_counter(&self.counters, self.frames_idx + 1, &self.iface)?,
        })
    }

    /// Detaches now (dropping the handle does the same).
    pub fn detach(mut self) {
        self.link.take();
    }
}

/// Loads `program` of `object`, attaches it to `iface` (driver mode, else skb mode, loudly)
/// and keeps its `counters` map, whose slots `frames_idx` and `frames_idx + 1` count frames
/// and bytes (true of the bench sinks and of the forwarder).
fn attach_sink(
    object: &[u8],
    iface: &str,
    program: &'static str,
    frames_idx: u32,
) -> Result<XdpCounterHandle, GenError> {
    // Resolve first, for a clear error (aya's attach would too, with a vaguer one).
    ifindex(iface)?;
    let mut bpf = load_object(object, program, iface)?;
    let counters = take_map(&mut bpf, obj::COUNTERS_MAP)?;
    let prog = xdp_mut(&mut bpf, program)?;
    let attach_err = |source: ProgramError| GenError::Attach {
        program,
        iface: iface.to_string(),
        source: Box::new(source),
    };
    // Driver mode is what matters on veth (ndo_xdp_xmit needs it on the receiving end); fall
    // back to skb mode once, loudly, for drivers without native XDP.
    let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
        Ok(id) => (id, XdpMode::Driver),
        Err(e) => {
            let id = prog.attach(iface, XdpMode::Skb).map_err(attach_err)?;
            log::warn!(
                "`{program}` on {iface}: asked for driver mode, granted skb (generic) mode \
                 because driver mode failed: {}",
                sluice::error::chain(&e)
            );
            (id, XdpMode::Skb)
        }
    };
    let link = prog.take_link(id).map_err(attach_err)?;
    let link = FdLink::try_from(link).map_err(|_| GenError::NoBpfLink {
        program,
        iface: iface.to_string(),
    })?;
    Ok(XdpCounterHandle {
        iface: iface.to_string(),
        program,
        mode,
        frames_idx,
        link: Some(link),
        counters,
        _bpf: bpf,
    })
}

/// Attaches `drop_all` (count, `XDP_DROP`) to `iface` — the XDP_DROP floor peer. Call on a
/// thread inside `iface`'s namespace; the handle works from any thread.
pub fn attach_drop_all(iface: &str) -> Result<XdpCounterHandle, GenError> {
    attach_sink(
        sluice_ebpf::BENCH_OBJ,
        iface,
        obj::DROP_PROGRAM,
        counter::DROP_FRAMES,
    )
}

/// Attaches `pass_all` (count, `XDP_PASS`) to `iface`, so a veth end receives what the
/// generator transmits from the other end and hands it to the kernel stack (kernel-socket
/// baselines). Call on a thread inside `iface`'s namespace; the handle works from any thread.
pub fn attach_pass_all(iface: &str) -> Result<XdpCounterHandle, GenError> {
    attach_sink(
        sluice_ebpf::BENCH_OBJ,
        iface,
        obj::PASS_PROGRAM,
        counter::PASS_FRAMES,
    )
}

/// Attaches the in-kernel XDP forwarder `xdp_fwd` ([`sluice_ebpf::FWD_OBJ`]: FIB lookup, MAC
/// rewrite, TTL decrement, `bpf_redirect` to the egress interface; `XDP_PASS` otherwise) to
/// `iface`; the handle counts the frames it redirected. On veth a redirected frame reaches the
/// egress end's peer only if that peer has an XDP program (its NAPI must be enabled). Call on a
/// thread inside `iface`'s namespace; the handle works from any thread.
pub fn attach_xdp_fwd(iface: &str) -> Result<XdpCounterHandle, GenError> {
    attach_sink(
        sluice_ebpf::FWD_OBJ,
        iface,
        sluice_ebpf::fwd::PROGRAM,
        sluice_ebpf::fwd::counter::FRAMES,
    )
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::payload::Stamp;
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    fn template(l4: L4, ipv6: bool, frame_len: usize) -> Template {
        let (src_ip, dst_ip): (IpAddr, IpAddr) = if ipv6 {
            (
                Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2).into(),
                Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1).into(),
            )
        } else {
            (
                Ipv4Addr::new(10, 77, 0, 2).into(),
                Ipv4Addr::new(10, 77, 0, 1).into(),
            )
        };
        Template {
            l4,
            ipv6,
            frame_len,
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            src_ip,
            dst_ip,
            base_sport: 20_000,
            dport: 9000,
            flows: 7,
        }
    }

    const ALL: [(L4, bool); 4] = [
        (L4::Udp, false),
        (L4::Tcp, false),
        (L4::Udp, true),
        (L4::Tcp, true),
    ];

    /// What [`check_frame`] found in a frame whose checksums all verified.
    #[derive(Debug)]
    struct Parsed {
        l4: L4,
        ipv6: bool,
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    }

    /// Parses `frame` with etherparse (the independent oracle) and asserts that the IPv4 header
    /// checksum (if any) and the L4 checksum are valid and the lengths consistent.
    fn check_frame(frame: &[u8]) -> Parsed {
        let h = PacketHeaders::from_ethernet_slice(frame)
            .unwrap_or_else(|e| panic!("etherparse rejects the frame: {e:?}"));
        let payload = h.payload.slice();
        let (ipv6, ports, l4, check, want) = match (h.net.expect("no IP"), h.transport) {
            (NetHeaders::Ipv4(ip, _), Some(t)) => {
                assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IPv4 header");
                assert_eq!(
                    usize::from(ip.total_len),
                    frame.len() - 14,
                    "IPv4 total length"
                );
                match t {
                    TransportHeader::Udp(u) => {
                        let want = u.calc_checksum_ipv4(&ip, payload).unwrap();
                        (
                            false,
                            (u.source_port, u.destination_port),
                            L4::Udp,
                            u.checksum,
                            want,
                        )
                    }
                    TransportHeader::Tcp(t) => {
                        let want = t.calc_checksum_ipv4(&ip, payload).unwrap();
                        (
                            false,
                            (t.source_port, t.destination_port),
                            L4::Tcp,
                            t.checksum,
                            want,
                        )
                    }
                    other => panic!("unexpected transport {other:?}"),
                }
            }
            (NetHeaders::Ipv6(ip, _), Some(t)) => {
                assert_eq!(
                    usize::from(ip.payload_length),
                    frame.len() - 54,
                    "IPv6 length"
                );
                match t {
                    TransportHeader::Udp(u) => {
                        let want = u.calc_checksum_ipv6(&ip, payload).unwrap();
                        (
                            true,
                            (u.source_port, u.destination_port),
                            L4::Udp,
                            u.checksum,
                            want,
                        )
                    }
                    TransportHeader::Tcp(t) => {
                        let want = t.calc_checksum_ipv6(&ip, payload).unwrap();
                        (
                            true,
                            (t.source_port, t.destination_port),
                            L4::Tcp,
                            t.checksum,
                            want,
                        )
                    }
                    other => panic!("unexpected transport {other:?}"),
                }
            }
            (net, t) => panic!("unexpected headers {net:?} / {t:?}"),
        };
        assert_eq!(check, want, "{l4} checksum (ipv6 = {ipv6})");
        if l4 == L4::Udp {
            assert_ne!(check, 0, "UDP checksum must never be sent as 0");
        }
        Parsed {
            l4,
            ipv6,
            sport: ports.0,
            dport: ports.1,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn templates_are_valid_frames() {
        for (l4, ipv6) in ALL {
            for len in [MIN_FRAME_LEN, MAX_FRAME_LEN] {
                let t = template(l4, ipv6, len);
                let (frame, cfg) = t.build().unwrap();
                let min = 14
                    + if ipv6 { 40 } else { 20 }
                    + if l4 == L4::Udp { 8 } else { 20 }
                    + payload::LEN;
                assert_eq!(frame.len(), len.max(min), "{l4} ipv6={ipv6} {len}");
                assert_eq!(&frame[..6], &DST_MAC);
                assert_eq!(&frame[6..12], &SRC_MAC);
                let p = check_frame(&frame);
                assert_eq!((p.l4, p.ipv6), (l4, ipv6));
                assert_eq!((p.sport, p.dport), (t.base_sport, t.dport));
                assert!(
                    p.payload[..payload::LEN].iter().all(|&b| b == 0),
                    "stamp zero"
                );
                // The config points at the fields etherparse found.
                let sport_off = usize::from(cfg.sport_off);
                assert_eq!(
                    &frame[sport_off..sport_off + 2],
                    &t.base_sport.to_be_bytes()
                );
                let stamp_off = usize::from(cfg.stamp_off);
                assert_eq!(frame.len() - stamp_off, p.payload.len());
                assert_eq!((stamp_off - sport_off) % 2, 0);
                assert_eq!((usize::from(cfg.csum_off) - sport_off) % 2, 0);
                assert!(cfg.stamp_off <= obj::MAX_OFFSET);
                assert_eq!(cfg.flows, 7);
                assert_eq!(cfg.base_sport, 20_000);
                assert_eq!(cfg.flags & obj::GEN_F_ZERO_CSUM_AS_FFFF != 0, l4 == L4::Udp);
                // The head the program restores is the template's, and reaches the stamp.
                let n = frame.len().min(obj::GEN_HEAD_LEN);
                assert_eq!(&cfg.head[..n], &frame[..n]);
                assert!(cfg.head[n..].iter().all(|&b| b == 0));
                assert!(
                    stamp_off <= head_copy_len(frame.len()),
                    "{l4} ipv6={ipv6} {len}"
                );
            }
        }
        // The four minimum sizes the docs promise.
        let mins: Vec<usize> = ALL
            .iter()
            .map(|&(l4, v6)| template(l4, v6, 60).build().unwrap().0.len())
            .collect();
        assert_eq!(mins, [60, 70, 78, 90]);
    }

    #[test]
    fn bad_templates_are_refused() {
        let ok = template(L4::Udp, false, 60);
        let mut t = ok.clone();
        t.frame_len = 59;
        assert!(matches!(t.build(), Err(GenError::InvalidTemplate { .. })));
        t.frame_len = 1515;
        assert!(matches!(t.build(), Err(GenError::InvalidTemplate { .. })));
        let mut t = ok.clone();
        t.ipv6 = true;
        assert!(matches!(t.build(), Err(GenError::InvalidTemplate { .. })));
        let mut t = ok.clone();
        t.flows = 0;
        assert!(matches!(t.build(), Err(GenError::InvalidTemplate { .. })));
        let mut t = ok.clone();
        t.base_sport = 65_530;
        t.flows = 7;
        assert!(matches!(t.build(), Err(GenError::InvalidTemplate { .. })));
        t.flows = 6;
        t.build().unwrap();
    }

    #[test]
    fn head_copy_reaches_the_stamp_at_every_length() {
        for (l4, ipv6) in ALL {
            for len in MIN_FRAME_LEN..=200 {
                let (frame, cfg) = template(l4, ipv6, len).build().unwrap();
                let n = head_copy_len(frame.len());
                assert!(n.is_multiple_of(8) && n <= obj::GEN_HEAD_LEN && n <= frame.len());
                assert!(usize::from(cfg.stamp_off) <= n, "{l4} ipv6={ipv6} {len}");
            }
        }
    }

    /// `gen_tx`'s per-frame work, transcribed from bench.bpf.c line by line (native =
    /// little-endian words, the folded base sum byte-swapped into that order): restores the
    /// head, then writes the port, the stamp and the checksum into `frame` exactly as the
    /// program does.
    fn program_model(frame: &mut [u8], cfg: &GenConfig, seq: u64, ts: u64) {
        let n = head_copy_len(frame.len());
        assert!(
            usize::from(cfg.stamp_off) <= n,
            "the program would drop this frame"
        );
        frame[..n].copy_from_slice(&cfg.head[..n]);
        let fold = |s: u32| {
            let s = (s & 0xffff) + (s >> 16);
            (s & 0xffff) + (s >> 16)
        };
        let flows = if cfg.flows == 0 { 1 } else { cfg.flows };
        let flow = (seq % u64::from(flows)) as u16;
        let port = cfg.base_sport.wrapping_add(flow);
        let w: [u16; 8] = [
            0x1c5a,
            flow,
            seq as u16,
            (seq >> 16) as u16,
            ts as u16,
            (ts >> 16) as u16,
            (ts >> 32) as u16,
            (ts >> 48) as u16,
        ];
        let sport = usize::from(cfg.sport_off);
        frame[sport..sport + 2].copy_from_slice(&port.swap_bytes().to_le_bytes());
        let mut sum = u32::from((fold(cfg.base_sum) as u16).swap_bytes());
        sum += u32::from(port.swap_bytes());
        let stamp = usize::from(cfg.stamp_off);
        for (i, word) in w.iter().enumerate() {
            frame[stamp + 2 * i..stamp + 2 * i + 2].copy_from_slice(&word.to_le_bytes());
            sum += u32::from(*word);
        }
        let mut check = !(fold(sum) as u16);
        if check == 0 && cfg.flags & obj::GEN_F_ZERO_CSUM_AS_FFFF != 0 {
            check = 0xffff;
        }
        let csum = usize::from(cfg.csum_off);
        frame[csum..csum + 2].copy_from_slice(&check.to_le_bytes());
    }

    /// xorshift64*: deterministic test randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn program_checksum_formula_matches_a_full_recomputation() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for (l4, ipv6) in ALL {
            for len in [60, 61, 333, 1514] {
                let t = template(l4, ipv6, len);
                let (template_frame, cfg) = t.build().unwrap();
                // Start from garbage in everything the program writes and everything before
                // the stamp: it must not depend on it (live-frames pages are recycled as the
                // receiver left them, e.g. with a router's MACs and TTL).
                let mut frame = template_frame.clone();
                let garbled = usize::from(cfg.stamp_off) + payload::LEN;
                for _ in 0..500 {
                    for b in &mut frame[..garbled] {
                        *b = rng.next() as u8;
                    }
                    let (seq, ts) = (rng.next(), rng.next());
                    program_model(&mut frame, &cfg, seq, ts);
                    let p = check_frame(&frame);
                    let flow = (seq % 7) as u16;
                    assert_eq!(p.sport, 20_000 + flow);
                    let stamp = Stamp::read(&p.payload).expect("stamp");
                    assert_eq!(
                        stamp,
                        Stamp {
                            flow,
                            seq: seq as u32,
                            ts_ns: ts
                        }
                    );
                    // Everything else is the template again.
                    assert_eq!(
                        without_per_frame_fields(&frame, &cfg),
                        without_per_frame_fields(&template_frame, &cfg)
                    );
                }
            }
        }
    }

    /// `frame` with the bytes `gen_tx` varies per frame (source port, L4 checksum, stamp)
    /// zeroed.
    fn without_per_frame_fields(frame: &[u8], cfg: &GenConfig) -> Vec<u8> {
        let mut f = frame.to_vec();
        let (sport, csum) = (usize::from(cfg.sport_off), usize::from(cfg.csum_off));
        let stamp = usize::from(cfg.stamp_off);
        f[sport..sport + 2].fill(0);
        f[csum..csum + 2].fill(0);
        f[stamp..stamp + payload::LEN].fill(0);
        f
    }

    /// Stamps seq 3 with a timestamp chosen so that the checksum before the UDP rule is 0:
    /// with the low timestamp word 0 the program computes `c0 = !fold(s)`; adding `c0` to the
    /// sum makes it `0xffff`, so the complement is 0. Returns the checksum field as sent.
    fn stamp_for_zero_checksum(frame: &mut [u8], cfg: &GenConfig) -> u16 {
        let csum_off = usize::from(cfg.csum_off);
        let field = |f: &[u8]| u16::from_le_bytes([f[csum_off], f[csum_off + 1]]);
        program_model(frame, cfg, 3, 0);
        let c0 = field(frame);
        program_model(frame, cfg, 3, u64::from(c0));
        field(frame)
    }

    #[test]
    fn checksum_that_folds_to_zero_is_ffff_for_udp_and_zero_for_tcp() {
        for ipv6 in [false, true] {
            let (mut frame, cfg) = template(L4::Udp, ipv6, 60).build().unwrap();
            assert_eq!(
                stamp_for_zero_checksum(&mut frame, &cfg),
                0xffff,
                "ipv6 = {ipv6}"
            );
            check_frame(&frame);
            let (mut frame, cfg) = template(L4::Tcp, ipv6, 60).build().unwrap();
            assert_eq!(
                stamp_for_zero_checksum(&mut frame, &cfg),
                0,
                "ipv6 = {ipv6}"
            );
            check_frame(&frame);
        }
    }

    /// A set's frames survive the program's per-frame writes: the model of `gen_tx` run over
    /// each padded frame leaves the packet (everything before the padding) byte for byte as
    /// given, whatever the sequence number and timestamp.
    #[test]
    fn frame_set_packets_survive_the_program() {
        let packets: Vec<Vec<u8>> = [42usize, 59, 60, 61, 64, 77, 80]
            .iter()
            .map(|&n| (0..n).map(|i| (i as u8).wrapping_mul(31) ^ 0x5a).collect())
            .collect();
        let set = FrameSet::new(packets.clone()).unwrap();
        assert_eq!(set.len(), packets.len());
        let mut rng = Rng(7);
        for (i, p) in packets.iter().enumerate() {
            let (frame, cfg) = &set.frames[i];
            assert!(frame.len() >= MIN_FRAME_LEN && frame.len() >= p.len() + FrameSet::PAD);
            assert_eq!(&frame[..p.len()], &p[..]);
            for _ in 0..20 {
                let mut f = frame.clone();
                program_model(&mut f, cfg, rng.next(), rng.next());
                assert_eq!(&f[..p.len()], &p[..], "packet {i} of {} bytes", p.len());
            }
        }
        // Too long, and empty.
        assert!(FrameSet::new([vec![0u8; FrameSet::MAX_PACKET_LEN + 1]]).is_err());
        assert!(FrameSet::new(Vec::<Vec<u8>>::new()).is_err());
    }

    /// `run_set` on a veth pair: the packets arrive as given, padded, in turn, each
    /// `PER_CALL` times in a row, and a fixed rate sends exactly what it was asked to.
    #[test]
    fn frame_set_live() {
        if !require_root("frame_set_live") {
            return;
        }
        const PER_CALL: u32 = 3;
        const PPS: u64 = 2_000;
        const FRAMES: u64 = 600;
        let _serial = one_at_a_time();
        let bed = TestBed::pair(Default::default()).unwrap();
        let (eng, peer) = (bed.engine(), bed.peer());
        let _pass = eng
            .ns()
            .run(|| attach_pass_all(eng.iface()))
            .unwrap()
            .unwrap();
        let sock = PacketSocket::open(eng.ns(), eng.iface()).unwrap();
        // Three UDP packets of different lengths, built by the template code (valid checksums),
        // cut to their IP length.
        let packets: Vec<Vec<u8>> = (0..3u16)
            .map(|k| {
                let mut t = Template::udp4(
                    peer.mac().octets(),
                    eng.mac().octets(),
                    peer.ipv4().into(),
                    eng.ipv4().into(),
                    9000 + k,
                );
                t.base_sport = 41_000 + k;
                t.build().unwrap().0
            })
            .collect();
        let set = FrameSet::new(packets.clone()).unwrap();
        let src = peer.mac().octets();
        // Our IPv4/UDP frames (not the kernel's own IPv6 neighbour discovery from that MAC).
        let lens: Vec<usize> = (0..set.len()).map(|j| set.frame(j).len()).collect();
        let ours = |f: &[u8]| {
            lens.contains(&f.len()) && f[6..12] == src && f[12..14] == [0x08, 0x00] && f[23] == 17
        };
        let (report, frames) = std::thread::scope(|s| {
            let capture = s.spawn(|| {
                sock.collect_incoming(Duration::from_secs(10), FRAMES as usize, ours)
                    .unwrap()
            });
            let report = peer
                .ns()
                .run(|| {
                    let mut g = Generator::load(peer.iface())?;
                    g.run_set(
                        &set,
                        PER_CALL,
                        Rate::Pps(PPS),
                        Duration::from_secs_f64(FRAMES as f64 / PPS as f64),
                        |_| {},
                    )
                })
                .unwrap()
                .unwrap();
            (report, capture.join().unwrap())
        });
        assert_eq!(report.sent, FRAMES);
        assert_eq!(report.bad_frames, 0);
        assert_eq!(frames.len() as u64, FRAMES);
        // Runs of PER_CALL copies (fewer only if a paced call is shorter), in set order.
        let mut k = 0usize;
        let mut run = 0u32;
        for (i, f) in frames.iter().enumerate() {
            // The padding carries the program's per-frame writes; the packet must be intact.
            let which = (0..set.len())
                .find(|&j| f.len() == set.frame(j).len() && f[..packets[j].len()] == packets[j][..])
                .unwrap_or_else(|| panic!("frame {i} is none of the set's"));
            if which != k {
                assert_eq!(which, (k + 1) % set.len(), "frame {i}: out of turn");
                assert!(run <= PER_CALL);
                k = which;
                run = 0;
            }
            run += 1;
            assert!(run <= PER_CALL, "frame {i}: more than {PER_CALL} in a row");
            // The packet itself is intact: its checksums verify.
            check_frame(&f[..packets[which].len()]);
        }
    }

    #[test]
    fn pace_schedule_spaces_frames_evenly() {
        assert_eq!(PaceSchedule::new(0), None);
        // 300 Mpps: a frame every 3.33 ns, due at 0, 3, 6, 10, 13, ...
        let s = PaceSchedule::new(300_000_000).unwrap();
        let due: Vec<u64> = (0..5).map(|i| s.due_ns(i)).collect();
        assert_eq!(due, [0, 3, 6, 10, 13]);
        assert_eq!(
            (0..=10).map(|t| s.due_by(t)).collect::<Vec<_>>(),
            [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4]
        );
        for pps in [1, 7, 999, 1_000, 58_000, 333_333, 500_000, 5_000_000] {
            let s = PaceSchedule::new(pps).unwrap();
            // Frame 0 goes at once; `due_by` counts exactly the frames due by then.
            assert_eq!(s.due_by(0), 1, "{pps}");
            let mut prev = 0;
            for i in [0u64, 1, 2, 3, 10, 1_000, 123_457, 10_000_000, 1 << 40] {
                if u128::from(i) * 1_000_000_000 / u128::from(pps) >= 1 << 63 {
                    continue; // beyond u64 nanoseconds (292 years): not a run length
                }
                let d = s.due_ns(i);
                assert_eq!(s.due_by(d), i + 1, "{pps} pps, frame {i} due at {d}");
                if d > 0 {
                    assert_eq!(s.due_by(d - 1), i, "{pps} pps, just before frame {i}");
                }
                assert!(d >= prev);
                prev = d;
            }
            // Gaps are the ideal gap rounded down or up, never bunched.
            let gap = s.gap_ns();
            for i in 0..2_000u64 {
                let g = (s.due_ns(i + 1) - s.due_ns(i)) as f64;
                assert!(
                    g >= gap.floor() && g <= gap.ceil(),
                    "{pps} pps: gap {g} vs {gap}"
                );
            }
            // One second holds `pps` frames.
            assert_eq!(s.due_by(999_999_999), pps, "{pps}");
        }
    }

    #[test]
    fn a_paced_run_that_falls_behind_skips_instead_of_bursting() {
        // 1 Mpps: slot i due at i µs; allowed lag 200 µs.
        let s = PaceSchedule::new(1_000_000).unwrap();
        let lag = 200_000;
        // On time, or up to the lag behind: keep the slot (send what is due).
        assert_eq!(s.resume_slot(10, 10_000, lag), 10);
        assert_eq!(s.resume_slot(10, 210_000, lag), 10);
        // Further behind: give up the slots due more than the lag ago, keep the rest.
        assert_eq!(s.resume_slot(10, 210_001, lag), 11);
        assert_eq!(s.resume_slot(10, 5_000_000, lag), 4_800);
        // After resuming, what is left to send is at most the lag's worth (the slots due in
        // [t - 200 µs, t], both ends included: 201 here).
        for t in [210_001, 1_000_000, 5_000_500, 77_777_777] {
            let r = s.resume_slot(10, t, lag);
            assert!(s.due_by(t) - r <= 201, "t = {t}");
            assert!(s.due_ns(r) + lag >= t, "t = {t}");
        }
        // Never moves backwards.
        assert_eq!(s.resume_slot(7_000, 5_000_000, lag), 7_000);
    }

    #[test]
    fn pacing_stats_summarise_calls() {
        let mut r = PacingRecorder::new();
        assert_eq!(r.stats().calls, 0);
        assert_eq!(r.stats().mean_frames_per_call, 0.0);
        for i in 0..98 {
            r.record(1_000 + i, 1, 0);
        }
        r.record(50_000, 3, 0);
        r.record(2_000_000, 32, 399);
        let s = r.stats();
        assert_eq!(s.calls, 100);
        assert_eq!(s.skipped, 399);
        assert_eq!(s.max_frames_per_call, 32);
        assert_eq!(s.multi_frame_calls, 2);
        assert!((s.mean_frames_per_call - 133.0 / 100.0).abs() < 1e-9);
        assert!((s.late_p50_us - 1.05).abs() < 0.01, "{s:?}");
        assert!((s.late_p99_us - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.late_max_us - 2000.0).abs() < 2.0, "{s:?}");
        assert_eq!(Rate::Paced(5).pps(), Some(5));
        assert_eq!(Rate::Max.pps(), None);
        assert_eq!(Rate::Paced(5).to_string(), "5 pps paced");
    }

    #[test]
    fn xdp_md_layout() {
        let b = xdp_md(60, 7, 0);
        let w: Vec<u32> = b
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(w, [0, 60, 0, 7, 0, 0]);
    }

    // ---- privileged: real frames over a veth pair ---------------------------------------

    use sluice_testbed::{PacketSocket, TestBed, require_root};
    use std::sync::{Mutex, MutexGuard};

    /// The live tests run one at a time: on a 2-CPU machine the max-rate run would starve the
    /// capturing threads of the others, and their packet sockets would drop frames.
    fn one_at_a_time() -> MutexGuard<'static, ()> {
        static LIVE: Mutex<()> = Mutex::new(());
        LIVE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a fixed-rate generator from the peer end for exactly `FRAMES` frames, with
    /// `pass_all` on the engine end, captures everything that arrives there and checks each
    /// frame: checksums, consecutive sequence numbers, flows, timestamps.
    fn live_frames_arrive_intact(name: &str, l4: L4, ipv6: bool) {
        if !require_root(name) {
            return;
        }
        const FRAMES: u64 = 2000;
        // Slow enough that the packet socket's default buffer (~200 frames) rides out the
        // capture thread being descheduled for ~100 ms on a busy 2-CPU machine.
        const PPS: u64 = 2_000;
        let _serial = one_at_a_time();
        let bed = TestBed::pair(Default::default()).unwrap();
        let (eng, peer) = (bed.engine(), bed.peer());
        let pass = eng
            .ns()
            .run(|| attach_pass_all(eng.iface()))
            .unwrap()
            .unwrap();
        assert_eq!(pass.mode(), XdpMode::Driver);
        let sock = PacketSocket::open(eng.ns(), eng.iface()).unwrap();
        let (src_ip, dst_ip): (IpAddr, IpAddr) = if ipv6 {
            (peer.ipv6().into(), eng.ipv6().into())
        } else {
            (peer.ipv4().into(), eng.ipv4().into())
        };
        let t = Template {
            l4,
            ipv6,
            frame_len: MIN_FRAME_LEN,
            src_mac: peer.mac().octets(),
            dst_mac: eng.mac().octets(),
            src_ip,
            dst_ip,
            base_sport: 40_000,
            dport: 9000,
            flows: 5,
        };
        let (template_frame, cfg) = t.build().unwrap();
        let stamp_off = usize::from(cfg.stamp_off);
        let ours = |f: &[u8]| {
            f.len() == template_frame.len()
                && f[6..12] == t.src_mac
                && f.get(stamp_off..).and_then(Stamp::read).is_some()
        };

        let (report, frames, t0, t1) = std::thread::scope(|s| {
            let capture = s.spawn(|| {
                sock.collect_incoming(Duration::from_secs(10), FRAMES as usize, ours)
                    .unwrap()
            });
            let t0 = crate::rx::monotonic_ns();
            let report = peer
                .ns()
                .run(|| {
                    let mut g = Generator::load(peer.iface())?;
                    g.set_next_seq(0)?;
                    g.run(
                        &t,
                        Rate::Pps(PPS),
                        Duration::from_secs_f64(FRAMES as f64 / PPS as f64),
                        |_| {},
                    )
                })
                .unwrap()
                .unwrap();
            let t1 = crate::rx::monotonic_ns();
            (report, capture.join().unwrap(), t0, t1)
        });
        eprintln!("{name}: {report:?}");
        assert_eq!(report.sent, FRAMES);
        assert_eq!(report.program_frames, FRAMES);
        assert_eq!(report.bad_frames, 0);
        assert_eq!((report.first_seq, report.last_seq), (0, FRAMES - 1));
        let passed = pass.counts().unwrap().frames;
        assert!(passed >= FRAMES, "pass_all saw {passed} frames");
        assert_eq!(
            frames.len() as u64,
            FRAMES,
            "captured (pass_all saw {passed})"
        );

        let mut ports = std::collections::BTreeSet::new();
        let mut last_ts = t0;
        for (i, f) in frames.iter().enumerate() {
            let p = check_frame(f);
            assert_eq!((p.l4, p.ipv6, p.dport), (l4, ipv6, 9000));
            let stamp = Stamp::read(&p.payload).unwrap();
            assert_eq!(u64::from(stamp.seq), i as u64, "sequence gap or reorder");
            assert_eq!(u64::from(stamp.flow), i as u64 % 5);
            assert_eq!(p.sport, 40_000 + stamp.flow);
            ports.insert(p.sport);
            assert!(
                stamp.ts_ns >= last_ts && stamp.ts_ns <= t1,
                "timestamp {} outside [{last_ts}, {t1}]",
                stamp.ts_ns
            );
            last_ts = stamp.ts_ns;
            // The rest of the payload is the template's.
            assert_eq!(f[stamp_off + 16..], template_frame[stamp_off + 16..]);
        }
        assert_eq!(ports.len(), 5);
    }

    #[test]
    fn live_frames_udp4() {
        live_frames_arrive_intact("live_frames_udp4", L4::Udp, false);
    }

    #[test]
    fn live_frames_tcp4() {
        live_frames_arrive_intact("live_frames_tcp4", L4::Tcp, false);
    }

    #[test]
    fn live_frames_udp6() {
        live_frames_arrive_intact("live_frames_udp6", L4::Udp, true);
    }

    #[test]
    fn live_frames_tcp6() {
        live_frames_arrive_intact("live_frames_tcp6", L4::Tcp, true);
    }

    /// Frames through a router that rewrites them in place, on the generator's own pages:
    /// `xdp_fwd` on r0 of a client — router — server bed (MACs, TTL / hop limit, IPv4 header
    /// checksum; veth hands r0 the page `gen_tx` wrote). The generator runs several small
    /// live-frames batches per `bpf()` call, so pages the router rewrote come back to the
    /// call's pool and carry later frames. Every frame captured on s0 must be the template
    /// forwarded exactly once — byte for byte, apart from the per-frame fields — with valid
    /// checksums and a stamp matching its source port. (Checked against an object with the
    /// head copy left out: every variant fails, frames on reused pages arrive forwarded twice,
    /// TTL / hop limit 62.)
    fn rewritten_pages_leave_as_the_template(name: &str, l4: L4, ipv6: bool) {
        use sluice_testbed::{RouterBed, RouterBedOpts};
        if !require_root(name) {
            return;
        }
        /// 4 frames per batch, 200 per call at this rate (one call per millisecond): 50
        /// batches per call. A page comes back to the pool once s0 is done with its frame;
        /// frames the packet socket keeps hold their pages until read, so the rate is far
        /// above what the socket keeps and most frames are dropped there, at once.
        const BATCH: u32 = 4;
        const PPS: u64 = 200_000;
        const WANT: usize = 500;
        let _serial = one_at_a_time();
        let bed = RouterBed::new(RouterBedOpts {
            static_neighbours: true,
            forwarding: true,
            ..RouterBedOpts::default()
        })
        .unwrap();
        let (c0, r0, r1, s0) = (bed.c0(), bed.r0(), bed.r1(), bed.s0());
        let fwd = bed
            .router()
            .run(|| attach_xdp_fwd(r0.iface()))
            .unwrap()
            .unwrap();
        // s0 needs an XDP program for r1's redirect (veth), and must pass to the socket.
        let _pass = bed
            .server()
            .run(|| attach_pass_all(s0.iface()))
            .unwrap()
            .unwrap();
        let sock = PacketSocket::open(bed.server(), s0.iface()).unwrap();
        let (src_ip, dst_ip): (IpAddr, IpAddr) = if ipv6 {
            (c0.ipv6().into(), s0.ipv6().into())
        } else {
            (c0.ipv4().into(), s0.ipv4().into())
        };
        let t = Template {
            l4,
            ipv6,
            frame_len: MIN_FRAME_LEN,
            src_mac: c0.mac().octets(),
            dst_mac: r0.mac().octets(),
            src_ip,
            dst_ip,
            base_sport: 30_000,
            dport: 9000,
            flows: 3,
        };
        let (template_frame, cfg) = t.build().unwrap();
        // The template forwarded once, as s0 must see it.
        let mut want = template_frame.clone();
        {
            let mut eth = EthernetFrame::new_unchecked(&mut want[..]);
            eth.set_dst_addr(MacAddr(s0.mac().octets()));
            eth.set_src_addr(MacAddr(r1.mac().octets()));
            if ipv6 {
                Ipv6Packet::new_unchecked(eth.payload_mut()).set_hop_limit(63);
            } else {
                let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
                ip.set_ttl(63);
                ip.fill_checksum();
            }
        }
        let want = without_per_frame_fields(&want, &cfg);
        let stamp_off = usize::from(cfg.stamp_off);
        let r1_mac = r1.mac().octets();
        let ours = |f: &[u8]| {
            f.len() == template_frame.len()
                && f[6..12] == r1_mac
                && f.get(stamp_off..).and_then(Stamp::read).is_some()
        };

        let (report, frames) = std::thread::scope(|s| {
            let capture = s.spawn(|| {
                sock.collect_incoming(Duration::from_secs(10), WANT, ours)
                    .unwrap()
            });
            let report = bed
                .client()
                .run(|| {
                    let mut g = Generator::load(c0.iface())?;
                    g.set_batch_size(BATCH);
                    g.run(&t, Rate::Pps(PPS), Duration::from_millis(100), |_| {})
                })
                .unwrap()
                .unwrap();
            (report, capture.join().unwrap())
        });
        let forwarded = fwd.counts().unwrap().frames;
        eprintln!(
            "{name}: {report:?}; xdp_fwd forwarded {forwarded}, captured {}",
            frames.len()
        );
        assert_eq!(report.bad_frames, 0);
        assert!(
            report.calls * u64::from(BATCH) < report.sent,
            "several batches per call"
        );
        // (Give or take frames a full veth ring refused, should the softirq fall behind.)
        assert!(
            forwarded as f64 >= report.sent as f64 * 0.9,
            "xdp_fwd forwarded {forwarded}"
        );
        assert!(frames.len() >= 100, "captured only {}", frames.len());
        for f in &frames {
            let p = check_frame(f);
            assert_eq!((p.l4, p.ipv6, p.dport), (l4, ipv6, 9000));
            let stamp = Stamp::read(&p.payload).unwrap();
            assert_eq!(p.sport, 30_000 + stamp.flow);
            assert_eq!(
                without_per_frame_fields(f, &cfg),
                want,
                "seq {}: not the template forwarded once",
                stamp.seq
            );
        }
    }

    #[test]
    fn rewritten_pages_udp4() {
        rewritten_pages_leave_as_the_template("rewritten_pages_udp4", L4::Udp, false);
    }

    #[test]
    fn rewritten_pages_tcp4() {
        rewritten_pages_leave_as_the_template("rewritten_pages_tcp4", L4::Tcp, false);
    }

    #[test]
    fn rewritten_pages_udp6() {
        rewritten_pages_leave_as_the_template("rewritten_pages_udp6", L4::Udp, true);
    }

    #[test]
    fn rewritten_pages_tcp6() {
        rewritten_pages_leave_as_the_template("rewritten_pages_tcp6", L4::Tcp, true);
    }

    /// Max rate for 2 s into `drop_all`: what the generator sent and what the XDP_DROP floor
    /// counted agree. Prints the rate (a benchmark figure, not asserted).
    #[test]
    fn max_rate_into_xdp_drop() {
        if !require_root("max_rate_into_xdp_drop") {
            return;
        }
        let _serial = one_at_a_time();
        let bed = TestBed::pair(Default::default()).unwrap();
        let (eng, peer) = (bed.engine(), bed.peer());
        let drop = eng
            .ns()
            .run(|| attach_drop_all(eng.iface()))
            .unwrap()
            .unwrap();
        let t = Template::udp4(
            peer.mac().octets(),
            eng.mac().octets(),
            peer.ipv4().into(),
            eng.ipv4().into(),
            9000,
        );
        let mut reports = 0;
        let report = peer
            .ns()
            .run(|| {
                let mut g = Generator::load(peer.iface())?;
                g.run(&t, Rate::Max, Duration::from_secs(2), |_| reports += 1)
            })
            .unwrap()
            .unwrap();
        let dropped = drop.counts().unwrap();
        eprintln!(
            "max rate, 64-byte UDP/IPv4, 2 s: generator sent {} ({:.2} Mpps, {} calls), \
             drop_all counted {} frames / {} bytes",
            report.sent,
            report.mpps(),
            report.calls,
            dropped.frames,
            dropped.bytes
        );
        assert!(reports >= 10, "progress called {reports} times");
        assert!(report.elapsed >= Duration::from_secs(2));
        assert!(
            report.elapsed < Duration::from_millis(2500),
            "{:?}",
            report.elapsed
        );
        assert_eq!(report.program_frames, report.sent);
        assert!(report.sent > 0);
        // Everything sent reaches the peer's XDP program, give or take frames a full veth ring
        // refused; the kernel's own few frames (IPv6 ND/MLD) are counted too.
        assert!(
            dropped.frames <= report.sent + 100
                && dropped.frames as f64 >= report.sent as f64 * 0.95,
            "sent {} vs dropped {}",
            report.sent,
            dropped.frames
        );
        assert!(dropped.bytes >= report.sent.min(dropped.frames) * 60);
    }
}
