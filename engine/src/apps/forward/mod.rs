//! The `forward` app: an IPv4/IPv6 router's per-frame work, over the [`Fib`].
//!
//! Per frame: parse Ethernet (up to two VLAN tags, kept in place) and IPv4 or IPv6, validate it,
//! refuse martians, look the destination up, and either rewrite the frame for its next hop
//! (`TxOn` the egress port), answer it with an ICMP error built in place (`Tx` back out of the
//! ingress port), hand it to the kernel (`Kernel`), or drop it with a [`DropReason`]. A frame
//! that is dropped or handed to the kernel is left byte-for-byte unchanged.
//!
//! The table is loaded once per batch ([`FibHandle::load`]); the clock is read at most once per
//! batch, and only when an ICMP error is due. This module must never allocate, log, block or
//! panic: it runs in the worker's hot loop.
//!
//! # Decisions, in order
//!
//! 1. **Parse.** Malformed frames are dropped as `truncated`, `bad_ip_header`, `ip_length`; an
//!    IPv4 header whose checksum does not verify is dropped (`bad_ip_checksum`): a router must
//!    not forward it (RFC 1812 §5.2.2), nor answer it, since the bad bytes may be its source.
//!    A frame that is neither IPv4 nor IPv6 (ARP, LLDP, a third VLAN tag) goes to the kernel:
//!    the router's own protocols are the kernel's.
//! 2. **Not ours to route → kernel.** A frame to a group MAC address, or a packet to a
//!    multicast or limited-broadcast (`255.255.255.255`) address, goes to the kernel, never
//!    forwarded: the kernel delivers it to the host's listeners (neighbour discovery, DHCP,
//!    routing protocols) or its multicast router, and drops the rest as it always does. Dropping
//!    it here instead would break those protocols whenever the table and the XDP program
//!    disagree. So does a packet with IPv4 options or an IPv6 hop-by-hop header (router alert,
//!    …): the kernel processes options.
//! 3. **Martians → drop.** Source: a group MAC, or a multicast, broadcast (limited, or one of
//!    the host's directed broadcasts: the `broadcast` routes of the kernel's `local` table, as
//!    [`Fib::broadcasts`] has them), `0.0.0.0/8`, loopback, `::`, `::1` or IPv4-mapped address
//!    (`martian_source`: the [responder rules](crate::apps::safety)); destination:
//!    `0.0.0.0/8`, loopback, `::`, `::1` (`martian_destination`). These mirror the kernel's own
//!    checks on input. A directed broadcast *destination* is a `local`-table broadcast route:
//!    the lookup answers `Local` and the kernel gets the frame, so sluice never forwards one.
//!    Ports are not looked at (a router forwards port 0 as the kernel does; it answers no
//!    port), nor are L4 checksums (a router does not verify them, the kernel neither: the
//!    receiving host does).
//! 4. **Lookup** with a per-flow hash (see [`flow_hash`]), then by answer:
//!    - `Forward(hop)` on one of the app's ports: TTL/hop limit ≤ 1 → ICMP time exceeded. An
//!      IPv6 link-local source about to leave its link → ICMPv6 unreachable, beyond scope
//!      (as Linux does). Longer than the hop's MTU (IPv6: at least 1280) → IPv4 with DF:
//!      fragmentation needed with the MTU; IPv4 without DF: **kernel**, which fragments it
//!      (fragmenting in place cannot work: the fragments need more frames); IPv6: packet too
//!      big. Otherwise the MACs become the hop's, the TTL/hop limit drops by one (IPv4 header
//!      checksum updated incrementally, RFC 1624) and the verdict is `TxOn(port)`. A hop on an
//!      interface that is not one of the app's ports goes to the kernel.
//!    - `Local`, `NoNeighbour`, `NotOurPort` → kernel (it delivers, resolves, or sends).
//!    - `NoRoute` / `Unreachable` / `Prohibited` → ICMP destination unreachable (IPv4 net
//!      unreachable / host unreachable / communication administratively prohibited, code
//!      0/1/13; IPv6 no route / no route / administratively prohibited, code 0/0/1 — Linux's
//!      choices). `Blackhole` → drop (`blackhole`).
//!
//!    The TTL is checked after the lookup, as in the kernel (`ip_forward` runs only once the
//!    route said "forward"): a packet with TTL 1 for the host itself is the host's.
//!
//! # ICMP errors
//!
//! An error is never sent about an ICMP error (IPv4 types 3, 4, 5, 11, 12; ICMPv6 types below
//! 128, found past any extension headers), about a non-first fragment, about a packet to a
//! group MAC, multicast or broadcast address, or to a source that is not a unicast host; nor
//! when the offending packet is too short to tell (`icmp_suppressed`). Errors are limited by a
//! token bucket per app instance ([`IcmpLimit`]; `icmp_rate_limited`). The error goes back out
//! of the ingress port to the sender's MAC, from the frame's destination MAC (the ingress
//! port's own), sourced from the ingress interface's address (IPv4: [`Fib::ipv4_of`], else any
//! port's; IPv6: a global address of the ingress interface, else any port's, else its
//! link-local one — link-local first when the sender's address is link-local). No address at
//! all, or no room in the frame's buffer for the error's headers: `icmp_failed`. The quote is
//! the offending IP header + 8 bytes for IPv4 (RFC 792), as much of the packet as keeps the
//! error within 1280 bytes for IPv6 (RFC 4443), cut short if the buffer is smaller. No ICMP
//! redirects are sent.

pub(in crate::apps) mod icmp;
pub(in crate::apps) mod limit;

#[cfg(test)]
mod tests;

pub use limit::IcmpLimit;

use super::safety::{self, Broadcasts};
use super::{App, Batch, DropReason, Verdict};
use crate::batch::PortId;
use crate::fib::{Fib, FibHandle, Hop, Lookup};
use crate::wire::{
    self, EtherType, EthernetFrame, Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket, UdpPacket, checksum, ipv4, ipv6, ipv6ext, vlan,
};
use icmp::IcmpError;
use limit::TokenBucket;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

/// One of the app's ports: the interface behind the [`PortId`] of the same position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// The interface index.
    pub ifindex: u32,
}

impl PortInfo {
    /// The port on interface `ifindex`.
    pub const fn new(ifindex: u32) -> Self {
        PortInfo { ifindex }
    }
}

/// Routes IPv4 and IPv6 frames between the engine's ports (see the module documentation).
/// One per worker: its ICMP rate limit is the worker's.
#[derive(Debug)]
pub struct Forward {
    fib: FibHandle,
    ports: Vec<PortInfo>,
    bucket: TokenBucket,
}

impl Forward {
    /// A router over the table in `fib`; `ports[i]` is the interface of [`PortId`]`(i)`; ICMP
    /// errors are limited by `icmp`.
    pub fn new(fib: FibHandle, ports: Vec<PortInfo>, icmp: IcmpLimit) -> Self {
        Forward {
            fib,
            ports,
            bucket: TokenBucket::new(icmp),
        }
    }

    /// [`App::process`] with the clock reading `now` (for tests and for callers that already
    /// read the time).
    pub fn process_at(&mut self, batch: &mut Batch<'_, '_>, now: Instant) {
        self.run(batch, || now);
    }

    fn run(&mut self, batch: &mut Batch<'_, '_>, mut clock: impl FnMut() -> Instant) {
        let fib = self.fib.load();
        let cx = Ctx {
            fib: &fib,
            ports: &self.ports,
            ingress: self.ports.get(batch.ingress().index()).map(|p| p.ifindex),
        };
        let mut refilled = false;
        for i in 0..batch.len() {
            let verdict = match decide(&cx, batch.frame(i)) {
                Ok(Action::Pass(v)) => v,
                Ok(Action::Forward { l3, v6, hop, port }) => {
                    rewrite(batch.frame_mut(i), l3, v6, &hop);
                    Verdict::TxOn(port)
                }
                Ok(Action::Icmp(job)) => {
                    if !refilled {
                        self.bucket.refill(clock());
                        refilled = true;
                    }
                    send_error(&cx, &mut self.bucket, batch, i, &job)
                }
                Err(reason) => Verdict::Drop(reason),
            };
            batch.set_verdict(i, verdict);
        }
    }
}

impl App for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    #[inline]
    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        self.run(batch, Instant::now);
    }
}

/// What one batch's frames are judged against.
struct Ctx<'a> {
    fib: &'a Fib,
    ports: &'a [PortInfo],
    /// The ingress port's interface (`None` if the batch's port is not in `ports`).
    ingress: Option<u32>,
}

impl Ctx<'_> {
    fn port_of(&self, ifindex: u32) -> Option<PortId> {
        let i = self.ports.iter().position(|p| p.ifindex == ifindex)?;
        u16::try_from(i).ok().map(PortId)
    }
}

/// The outcome of [`decide`] (read-only), carried out by the caller.
#[derive(Debug)]
enum Action {
    /// A verdict with the frame unchanged.
    Pass(Verdict),
    /// Rewrite for `hop` and send out of `port`.
    Forward {
        l3: usize,
        v6: bool,
        hop: Hop,
        port: PortId,
    },
    /// Answer with an ICMP error.
    Icmp(IcmpJob),
}

/// An ICMP error the rules allow, before the source address, room and rate limit are checked.
#[derive(Debug)]
struct IcmpJob {
    err: IcmpError,
    /// Offset of the offending IP header.
    l3: usize,
    /// Bytes of the offending packet to quote (before any cut for room).
    quote: usize,
    /// The offending packet's source: where the error goes.
    to: Sender,
}

#[derive(Debug)]
enum Sender {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

const KERNEL: Action = Action::Pass(Verdict::Kernel);

/// Link-layer facts [`decide_v4`]/[`decide_v6`] need.
#[derive(Clone, Copy)]
struct Link {
    l3: usize,
    group_src: bool,
    group_dst: bool,
}

/// Parse and judge one frame without changing it.
fn decide(cx: &Ctx<'_>, frame: &[u8]) -> Result<Action, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Truncated)?;
    let encap = vlan::walk(frame).map_err(|_| DropReason::Truncated)?;
    let l3 = frame.get(encap.l3_offset..).ok_or(DropReason::Truncated)?;
    let link = Link {
        l3: encap.l3_offset,
        group_src: eth.src_addr().is_multicast(),
        group_dst: eth.dst_addr().is_multicast(),
    };
    match encap.ether_type {
        EtherType::IPV4 => decide_v4(cx, link, l3),
        EtherType::IPV6 => decide_v6(cx, link, l3),
        _ => Ok(KERNEL),
    }
}

fn decide_v4(cx: &Ctx<'_>, link: Link, l3: &[u8]) -> Result<Action, DropReason> {
    if l3.len() < ipv4::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    // Length established; the version decides how to read the rest.
    let ip = Ipv4Packet::new_unchecked(l3);
    if ip.version() != 4 {
        return Err(DropReason::BadIpHeader);
    }
    ip.check_len().map_err(ip_error)?;
    if !ip.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if link.group_dst || dst.is_multicast() || dst.is_broadcast() {
        return Ok(KERNEL);
    }
    if link.group_src || !safety::unicast_source_v4(src, cx.fib.broadcasts()) {
        return Err(DropReason::MartianSource);
    }
    if dst.octets()[0] == 0 || dst.is_loopback() {
        return Err(DropReason::MartianDestination);
    }
    if ip.header_len() > ipv4::HEADER_LEN {
        return Ok(KERNEL);
    }
    let error = |err| icmp_v4(link, &ip, err);
    match cx.fib.lookup_v4(dst, flow_hash_v4(&ip)) {
        Lookup::Forward(hop) => {
            let Some(port) = cx.port_of(hop.port_ifindex) else {
                return Ok(KERNEL);
            };
            if ip.ttl() <= 1 {
                return error(IcmpError::TimeExceeded);
            }
            if u32::from(ip.total_len()) > hop.mtu {
                return if ip.dont_frag() {
                    error(IcmpError::TooBig(hop.mtu))
                } else {
                    Ok(KERNEL)
                };
            }
            Ok(Action::Forward {
                l3: link.l3,
                v6: false,
                hop,
                port,
            })
        }
        Lookup::Local | Lookup::NoNeighbour { .. } | Lookup::NotOurPort { .. } => Ok(KERNEL),
        Lookup::NoRoute => error(IcmpError::NoRoute),
        Lookup::Unreachable => error(IcmpError::Unreachable),
        Lookup::Prohibited => error(IcmpError::Prohibited),
        Lookup::Blackhole => Err(DropReason::Blackhole),
    }
}

fn decide_v6(cx: &Ctx<'_>, link: Link, l3: &[u8]) -> Result<Action, DropReason> {
    if l3.len() < ipv6::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv6Packet::new_unchecked(l3);
    if ip.version() != 6 {
        return Err(DropReason::BadIpHeader);
    }
    // With 40 bytes present the only failure left is a payload length past the frame.
    ip.check_len().map_err(|_| DropReason::IpLength)?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if link.group_dst || dst.is_multicast() {
        return Ok(KERNEL);
    }
    if link.group_src || !safety::unicast_source_v6(src) {
        return Err(DropReason::MartianSource);
    }
    if dst.is_unspecified() || dst.is_loopback() {
        return Err(DropReason::MartianDestination);
    }
    if ip.next_header() == IpProtocol::HOP_BY_HOP {
        return Ok(KERNEL);
    }
    let error = |err| icmp_v6(link, &ip, err);
    match cx.fib.lookup_v6(dst, flow_hash_v6(&ip)) {
        Lookup::Forward(hop) => {
            let Some(port) = cx.port_of(hop.port_ifindex) else {
                return Ok(KERNEL);
            };
            if ip.hop_limit() <= 1 {
                return error(IcmpError::TimeExceeded);
            }
            if src.is_unicast_link_local() && cx.ingress != Some(hop.port_ifindex) {
                return error(IcmpError::BeyondScope);
            }
            // Linux never takes an IPv6 path MTU below the minimum.
            let mtu = hop.mtu.max(icmp::V6_MIN_MTU as u32);
            if ip.total_len() as u64 > u64::from(mtu) {
                return error(IcmpError::TooBig(mtu));
            }
            Ok(Action::Forward {
                l3: link.l3,
                v6: true,
                hop,
                port,
            })
        }
        Lookup::Local | Lookup::NoNeighbour { .. } | Lookup::NotOurPort { .. } => Ok(KERNEL),
        Lookup::NoRoute => error(IcmpError::NoRoute),
        Lookup::Unreachable => error(IcmpError::Unreachable),
        Lookup::Prohibited => error(IcmpError::Prohibited),
        Lookup::Blackhole => Err(DropReason::Blackhole),
    }
}

/// ICMPv4 error types that must not be answered with an error (RFC 1812 §4.3.2.7): destination
/// unreachable, source quench, redirect, time exceeded, parameter problem.
const V4_ERRORS: [u8; 5] = [3, 4, 5, 11, 12];

/// The error `err` about `ip`, if the rules allow one (see the module documentation).
fn icmp_v4(link: Link, ip: &Ipv4Packet<&[u8]>, err: IcmpError) -> Result<Action, DropReason> {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let suppressed = link.group_dst
        || link.group_src
        || dst.is_multicast()
        || dst.is_broadcast()
        || !safety::unicast_source_v4(src, &Broadcasts::none())
        || ip.frag_offset() != 0
        || ip.protocol() == IpProtocol::ICMP
            && Icmpv4Packet::new_checked(ip.payload())
                .map_or(true, |m| V4_ERRORS.contains(&m.msg_type().0));
    if suppressed {
        return Err(DropReason::IcmpSuppressed);
    }
    let quote = (ip.header_len() + icmp::V4_QUOTE_DATA).min(usize::from(ip.total_len()));
    Ok(Action::Icmp(IcmpJob {
        err,
        l3: link.l3,
        quote,
        to: Sender::V4(src),
    }))
}

/// The error `err` about `ip`, if the rules allow one (see the module documentation).
fn icmp_v6(link: Link, ip: &Ipv6Packet<&[u8]>, err: IcmpError) -> Result<Action, DropReason> {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let about_error = || {
        let payload = ip.payload();
        let Ok(upper) = ipv6ext::upper_layer(ip.next_header(), payload) else {
            return true; // cannot tell: stay quiet
        };
        if upper.frag_offset.is_some_and(|o| o != 0) {
            return true;
        }
        upper.protocol == IpProtocol::ICMPV6
            && payload
                .get(upper.offset..)
                .and_then(|m| Icmpv6Packet::new_checked(m).ok())
                .is_none_or(|m| m.msg_type().is_error())
    };
    if link.group_dst
        || link.group_src
        || dst.is_multicast()
        || !safety::unicast_source_v6(src)
        || about_error()
    {
        return Err(DropReason::IcmpSuppressed);
    }
    Ok(Action::Icmp(IcmpJob {
        err,
        l3: link.l3,
        quote: ip.total_len().min(icmp::V6_MAX_QUOTE),
        to: Sender::V6(src),
    }))
}

/// Build the error of `job` in place in frame `i`, or say why not (the frame unchanged).
fn send_error(
    cx: &Ctx<'_>,
    bucket: &mut TokenBucket,
    batch: &mut Batch<'_, '_>,
    i: usize,
    job: &IcmpJob,
) -> Verdict {
    // (from, to) of the error.
    let (reply, v6) = match job.to {
        Sender::V4(to) => (source_v4(cx).map(|from| Reply::V4(from, to)), false),
        Sender::V6(to) => (source_v6(cx, to).map(|from| Reply::V6(from, to)), true),
    };
    let Some(reply) = reply else {
        return Verdict::Drop(DropReason::IcmpFailed);
    };
    let headers_end = job.l3 + icmp::headers_len(v6);
    let Some(room) = batch.capacity(i).checked_sub(headers_end) else {
        return Verdict::Drop(DropReason::IcmpFailed);
    };
    let quote = job.quote.min(room);
    if !bucket.ready() {
        return Verdict::Drop(DropReason::IcmpRateLimited);
    }
    // Fails, changing nothing, only past the buffer (or on a fixed-size test batch).
    if batch.set_len(i, headers_end + quote).is_err() {
        return Verdict::Drop(DropReason::IcmpFailed);
    }
    bucket.take();
    let buf = batch.buffer_mut(i);
    let built = match reply {
        Reply::V4(from, to) => icmp::emit_v4(buf, job.l3, quote, from, to, job.err),
        Reply::V6(from, to) => icmp::emit_v6(buf, job.l3, quote, from, to, job.err),
    };
    match built {
        Some(_) => Verdict::Tx,
        // Unreachable after the checks above; the frame is recycled whatever it holds.
        None => Verdict::Drop(DropReason::IcmpFailed),
    }
}

/// The addresses of an ICMP error: from, to.
enum Reply {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

/// The address IPv4 errors come from: the ingress interface's, else any port's.
fn source_v4(cx: &Ctx<'_>) -> Option<Ipv4Addr> {
    cx.ingress
        .and_then(|i| cx.fib.ipv4_of(i))
        .or_else(|| cx.ports.iter().find_map(|p| cx.fib.ipv4_of(p.ifindex)))
}

/// The address IPv6 errors to `to` come from: a global one of the ingress interface, else of
/// any port, else the ingress interface's link-local one; link-local first if `to` is.
fn source_v6(cx: &Ctx<'_>, to: Ipv6Addr) -> Option<Ipv6Addr> {
    let link_local = cx.ingress.and_then(|i| cx.fib.ipv6_link_local_of(i));
    let global = cx
        .ingress
        .and_then(|i| cx.fib.ipv6_global_of(i))
        .or_else(|| {
            cx.ports
                .iter()
                .find_map(|p| cx.fib.ipv6_global_of(p.ifindex))
        });
    if to.is_unicast_link_local() {
        link_local.or(global)
    } else {
        global.or(link_local)
    }
}

/// Rewrite a frame [`decide`] judged `Forward` for `hop`: MACs, TTL / hop limit.
fn rewrite(frame: &mut [u8], l3: usize, v6: bool, hop: &Hop) {
    // `decide` parsed the Ethernet header and the IP header at `l3` through checked views, and
    // checked the TTL / hop limit is at least 2.
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst_addr(hop.dst_mac);
    eth.set_src_addr(hop.src_mac);
    let Some(l3) = frame.get_mut(l3..) else {
        return;
    };
    if v6 {
        let mut ip = Ipv6Packet::new_unchecked(l3);
        let hl = ip.hop_limit();
        ip.set_hop_limit(hl.saturating_sub(1));
    } else {
        let mut ip = Ipv4Packet::new_unchecked(l3);
        let (ttl, proto) = (ip.ttl(), ip.protocol().0);
        let new = ttl.saturating_sub(1);
        // TTL and protocol share one 16-bit word of the header checksum.
        let hc = checksum::update_word(
            ip.checksum(),
            u16::from_be_bytes([ttl, proto]),
            u16::from_be_bytes([new, proto]),
        );
        ip.set_ttl(new);
        ip.set_checksum(hc);
    }
}

/// The flow hash the table's ECMP pick uses: source and destination address, protocol and, for
/// TCP/UDP (not in a fragment, whose ports may be absent), the ports — so every packet of a
/// connection, and every fragment of a datagram bar the first, takes one path. (A first
/// fragment hashes with its ports; a fragmented flow may thus use two paths, as it does in
/// Linux's L4 hash.) IPv6 addresses are folded to 64 bits by xor.
///
/// Three multiply-xor rounds with the 64-bit golden-ratio constant, high half kept: a few
/// cycles, and the table mixes the result again before picking.
pub fn flow_hash(src: u64, dst: u64, protocol: IpProtocol, ports: u32) -> u32 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = src.wrapping_mul(K);
    h = (h ^ dst).wrapping_mul(K);
    h = (h ^ (u64::from(protocol.0) << 32 | u64::from(ports))).wrapping_mul(K);
    (h >> 32) as u32
}

fn flow_hash_v4(ip: &Ipv4Packet<&[u8]>) -> u32 {
    let ports = if ip.is_fragment() {
        0
    } else {
        l4_ports(ip.protocol(), ip.payload())
    };
    flow_hash(
        u32::from(ip.src_addr()).into(),
        u32::from(ip.dst_addr()).into(),
        ip.protocol(),
        ports,
    )
}

fn flow_hash_v6(ip: &Ipv6Packet<&[u8]>) -> u32 {
    let fold = |a: Ipv6Addr| {
        let b = a.to_bits();
        (b >> 64) as u64 ^ b as u64
    };
    // Ports only right after the fixed header: extension headers are not walked per packet.
    let ports = l4_ports(ip.next_header(), ip.payload());
    flow_hash(
        fold(ip.src_addr()),
        fold(ip.dst_addr()),
        ip.next_header(),
        ports,
    )
}

/// Source and destination port of a TCP or UDP header at the start of `segment` (0 otherwise,
/// or if the header does not parse).
fn l4_ports(protocol: IpProtocol, segment: &[u8]) -> u32 {
    let pair = match protocol {
        IpProtocol::UDP => UdpPacket::new_checked(segment)
            .ok()
            .map(|u| (u.src_port(), u.dst_port())),
        IpProtocol::TCP => TcpPacket::new_checked(segment)
            .ok()
            .map(|t| (t.src_port(), t.dst_port())),
        _ => None,
    };
    pair.map_or(0, |(s, d)| u32::from(s) << 16 | u32::from(d))
}

fn ip_error(e: wire::Error) -> DropReason {
    match e {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::Malformed => DropReason::BadIpHeader,
        wire::Error::Length => DropReason::IpLength,
    }
}
