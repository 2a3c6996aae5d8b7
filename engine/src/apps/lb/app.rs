//! The `lb` app's per-frame work: find the VIP, find the flow's backend (connection table,
//! else Maglev), and send the packet there — by rewriting the MACs (DSR) or by encapsulating it
//! (IPIP, IP6IP6, 4in6) — or answer the client with "fragmentation needed"/"packet too big",
//! or drop it with a reason.
//!
//! # Per frame, in order
//!
//! 1. **Parse**: untagged Ethernet (the XDP program steers only untagged frames), IPv4 (header
//!    checksum verified) or IPv6 (fixed header), then TCP/UDP ports or an ICMP error's quote.
//!    Malformed → `truncated`, `bad_ip_header`, `ip_length`, `bad_ip_checksum`, `l4_length`.
//! 2. **Refuse what a balancer must not pass on** (the [responder
//!    rules](crate::apps::safety)): a group source MAC, a source that is not a unicast host —
//!    multicast, broadcast (limited, or one of the host's directed broadcasts, from the
//!    forwarding table's `local` broadcast routes), `0.0.0.0/8`, loopback, `::`, `::1`,
//!    IPv4-mapped — (`martian_source`); a group destination MAC or a multicast/broadcast
//!    destination (`group_destination`), an unspecified or loopback one
//!    (`martian_destination`); a source or destination port 0 (`port_zero`); a fragment
//!    (`fragment`: the later fragments carry no ports, so they could not follow the first to
//!    its backend; Katran drops them too). L4 checksums are not verified: the packet goes on
//!    unchanged inside (DSR: as it came; IPIP: encapsulated), and the backend's kernel verifies
//!    it end to end, as it would behind the kernel's own balancer (IPVS) or any router.
//! 3. **VIP**: the table's VIP for (destination, protocol, port), else (…, port 0); none →
//!    `not_vip` (a VIP deleted while the XDP map still had it, for a moment).
//! 4. **Backend**: the connection table's, if it remembers the flow and the backend is still
//!    configured on the VIP (a drained or down one is); else the Maglev pick, remembered.
//!    None → `no_backend`. A TCP FIN or RST marks the flow closing (short timeout).
//! 5. **Route to the backend** through the forwarding table (the kernel's, mirrored): a resolved
//!    next hop on one of the engine's ports, else `no_neighbour` (the control plane has the
//!    kernel resolve it) or `backend_unreachable`.
//! 6. **Send**:
//!    - DSR: destination MAC ← the next hop's, source MAC ← the egress port's; the IP packet is
//!      untouched (no TTL decrement: the balancer is one L2 hop, as in Maglev/Katran DSR).
//!    - IPIP: an outer IPv4 header (protocol 4) or IPv6 header (next header 41 for IPv6,
//!      4 for IPv4 — 4in6) in front, written into the frame's headroom: source = the egress
//!      interface's address, destination = the backend; DSCP and ECN copied from the inner
//!      header (RFC 6040's normal mode); IPv4 outer: TTL 64, DF copied from the inner IPv4 header
//!      (set for IPv6 inside), identification 0; IPv6 outer: hop limit 64, flow label from the
//!      flow hash (RFC 6438, so ECMP and RSS spread the tunnel's flows).
//!
//!    Too big for the egress MTU (after encapsulation): IPv4 with DF → ICMP "fragmentation
//!    needed" with the MTU left for the inner packet, IPv6 → "packet too big" (at least 1280),
//!    both sent back to the client *from the VIP*, so the client's PMTU discovery works through
//!    the balancer; IPv4 without DF → `too_big` (a frame cannot be fragmented in place).
//!    The errors share the ICMP token bucket of the forward app's kind.
//! 7. **ICMP errors about a VIP flow** (destination unreachable, time exceeded, parameter
//!    problem; packet too big for IPv6) sent *to* a VIP — by a router on the way back to the
//!    client, say — quote a packet from the VIP to the client; its reversed 5-tuple is the
//!    flow's, and the error goes to that flow's backend (connection table without refreshing,
//!    else Maglev), so the backend's TCP sees the PMTU or the unreachable. Any other ICMP to a
//!    VIP (an echo request) is `not_vip`.
//!
//! Never allocates, logs or blocks. The clock is read once per batch.

use super::conntrack::{ConnTrack, ConnTrackConfig, ConnTrackStats, FlowKey};
use super::flow::flow_hash;
use super::table::{BackendEntry, Forwarding, LbHandle, LbTable};
use crate::apps::forward::PortInfo;
use crate::apps::forward::icmp::{self, IcmpError};
use crate::apps::forward::limit::TokenBucket;
use crate::apps::safety::{self, Broadcasts};
use crate::apps::{App, Batch, DropReason, Verdict};
use crate::batch::PortId;
use crate::fib::{Fib, FibHandle, Hop, Lookup};
use crate::wire::{
    self, EtherType, EthernetFrame, Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket, UdpPacket, ethernet, icmpv4, icmpv6, ipv4, ipv6,
};
use crossbeam_utils::CachePadded;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use crate::apps::forward::IcmpLimit;

/// TTL / hop limit of the outer header.
const OUTER_TTL: u8 = 64;

/// Timed-out connection-table entries looked at per batch (bounded work; lookups reclaim the
/// ones they meet anyway).
const EXPIRE_BUDGET: usize = 8;

/// A worker's connection-table figures, published once per batch for the control plane.
#[derive(Debug, Default)]
pub struct LbWorkerStats {
    inner: CachePadded<[AtomicU64; 7]>,
}

/// What [`LbWorkerStats::read`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnTableFigures {
    /// Flows remembered now.
    pub flows: u64,
    /// Most flows remembered at once.
    pub capacity: u64,
    /// Lookups that found the flow.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Flows remembered.
    pub inserts: u64,
    /// Live flows dropped to make room.
    pub evictions: u64,
    /// Timed-out flows dropped.
    pub expirations: u64,
}

impl ConnTableFigures {
    /// Sum of two workers' figures.
    pub fn add(&mut self, o: &ConnTableFigures) {
        self.flows += o.flows;
        self.capacity += o.capacity;
        self.hits += o.hits;
        self.misses += o.misses;
        self.inserts += o.inserts;
        self.evictions += o.evictions;
        self.expirations += o.expirations;
    }
}

impl LbWorkerStats {
    fn publish(&self, len: usize, capacity: usize, s: &ConnTrackStats) {
        let v = [
            len as u64,
            capacity as u64,
            s.hits,
            s.misses,
            s.inserts,
            s.evictions,
            s.expirations,
        ];
        for (a, v) in self.inner.iter().zip(v) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// The figures last published.
    pub fn read(&self) -> ConnTableFigures {
        let v: Vec<u64> = self
            .inner
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        ConnTableFigures {
            flows: v[0],
            capacity: v[1],
            hits: v[2],
            misses: v[3],
            inserts: v[4],
            evictions: v[5],
            expirations: v[6],
        }
    }
}

/// What one worker's balancer is made of.
pub struct LbParts {
    /// The VIPs and backends, kept current by the control plane.
    pub table: LbHandle,
    /// The forwarding table (routes and neighbours towards the backends).
    pub fib: FibHandle,
    /// The engine's ports, in [`PortId`] order.
    pub ports: Vec<PortInfo>,
    /// The connection table's size and timeouts (give each worker its own seed).
    pub conntrack: ConnTrackConfig,
    /// The limit on ICMP errors this worker sends.
    pub icmp: IcmpLimit,
    /// Where the connection-table figures are published.
    pub stats: Arc<LbWorkerStats>,
}

/// The L4 load balancer (see the module docs). One per worker.
pub struct Lb {
    table: LbHandle,
    fib: FibHandle,
    ports: Vec<PortInfo>,
    conntrack: ConnTrack,
    bucket: TokenBucket,
    stats: Arc<LbWorkerStats>,
    origin: Instant,
}

impl Lb {
    /// A balancer over `parts`.
    pub fn new(parts: LbParts) -> Self {
        Lb {
            table: parts.table,
            fib: parts.fib,
            ports: parts.ports,
            conntrack: ConnTrack::new(parts.conntrack),
            bucket: TokenBucket::new(parts.icmp),
            stats: parts.stats,
            origin: Instant::now(),
        }
    }

    /// The connection table (for tests).
    pub fn conntrack(&self) -> &ConnTrack {
        &self.conntrack
    }

    /// [`App::process`] with the clock reading `now`.
    pub fn process_at(&mut self, batch: &mut Batch<'_, '_>, now: Instant) {
        let table = self.table.load();
        let fib = self.fib.load();
        let now_ms = u64::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX);
        let mut cx = Cx {
            table: &table,
            fib: &fib,
            ports: &self.ports,
            conntrack: &mut self.conntrack,
            bucket: &mut self.bucket,
            now,
            now_ms,
            refilled: false,
        };
        for i in 0..batch.len() {
            let verdict = match cx.handle(batch, i) {
                Ok(v) => v,
                Err(reason) => Verdict::Drop(reason),
            };
            batch.set_verdict(i, verdict);
        }
        self.conntrack.expire_idle(now_ms, EXPIRE_BUDGET);
        self.stats.publish(
            self.conntrack.len(),
            self.conntrack.capacity(),
            &self.conntrack.stats(),
        );
    }
}

impl App for Lb {
    fn name(&self) -> &'static str {
        "lb"
    }

    #[inline]
    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        self.process_at(batch, Instant::now());
    }
}

/// One batch's view of everything a frame is judged against.
struct Cx<'a> {
    table: &'a LbTable,
    fib: &'a Fib,
    ports: &'a [PortInfo],
    conntrack: &'a mut ConnTrack,
    bucket: &'a mut TokenBucket,
    now: Instant,
    now_ms: u64,
    refilled: bool,
}

/// The IP packet of a frame, as step 6 needs it.
#[derive(Clone, Copy)]
struct Inner {
    /// Its length (the IP total length; Ethernet padding excluded).
    len: usize,
    v6: bool,
    /// Inner IPv4 DF (IPv6: never fragmented in transit, treated as DF).
    dont_frag: bool,
    /// DSCP and ECN: the IPv4 TOS byte or the IPv6 traffic class.
    tos: u8,
}

/// What the packet is to the balancer.
enum Kind {
    /// A packet of a flow to a VIP.
    Flow { key: FlowKey, fin_or_rst: bool },
    /// An ICMP error about the flow `key` (its quote reversed).
    IcmpAbout { key: FlowKey },
}

impl Cx<'_> {
    fn handle(&mut self, batch: &mut Batch<'_, '_>, i: usize) -> Result<Verdict, DropReason> {
        let (kind, inner) = parse(batch.frame(i), self.fib.broadcasts())?;
        let (key, is_flow) = match kind {
            Kind::Flow { key, .. } | Kind::IcmpAbout { key } => {
                (key, matches!(kind, Kind::Flow { .. }))
            }
        };
        let (vip_index, vip) = self
            .table
            .vip(key.dst, key.protocol, key.dst_port)
            .ok_or(DropReason::NotVip)?;
        let forwarding = vip.forwarding;
        let hash = flow_hash(&key);
        let backend = if is_flow {
            self.backend_of_flow(vip_index, &key, hash)?
        } else {
            // About a flow: whoever has it, without making it look alive.
            self.conntrack
                .peek(&key)
                .and_then(|(id, _)| self.table.backend_of(vip_index, id))
                .or_else(|| {
                    let id = self.table.pick(vip_index, hash)?;
                    self.table.backend_of(vip_index, id)
                })
                .ok_or(DropReason::NoBackend)?
        };
        if let Kind::Flow {
            fin_or_rst: true, ..
        } = kind
        {
            self.conntrack.mark_closing(&key);
        }
        let hop = match self.fib.lookup(backend.addr, hash) {
            Lookup::Forward(hop) => hop,
            Lookup::NoNeighbour { .. } => return Err(DropReason::NoNeighbour),
            _ => return Err(DropReason::BackendUnreachable),
        };
        let port = self
            .port_of(hop.port_ifindex)
            .ok_or(DropReason::BackendUnreachable)?;
        let overhead = match (forwarding, backend.addr) {
            (Forwarding::Dsr, _) => 0,
            (Forwarding::Ipip, IpAddr::V4(_)) => ipv4::HEADER_LEN,
            (Forwarding::Ipip, IpAddr::V6(_)) => ipv6::HEADER_LEN,
        };
        let mtu = hop.mtu as usize;
        if inner.len + overhead > mtu {
            if !is_flow {
                return Err(DropReason::TooBig);
            }
            return self.too_big(batch, i, &key, inner, mtu.saturating_sub(overhead));
        }
        match (forwarding, backend.addr) {
            (Forwarding::Dsr, _) => {
                let mut eth = EthernetFrame::new_unchecked(batch.frame_mut(i));
                eth.set_dst_addr(hop.dst_mac);
                eth.set_src_addr(hop.src_mac);
            }
            (Forwarding::Ipip, to) => self.encapsulate(batch, i, &hop, to, inner, hash)?,
        }
        Ok(Verdict::TxOn(port))
    }

    /// Step 4 for a packet of the flow `key`.
    fn backend_of_flow(
        &mut self,
        vip: u32,
        key: &FlowKey,
        hash: u32,
    ) -> Result<BackendEntry, DropReason> {
        let table = self.table;
        let pick = || table.pick(vip, hash);
        let id = self
            .conntrack
            .lookup_or_insert(*key, self.now_ms, pick)
            .ok_or(DropReason::NoBackend)?;
        if let Some(b) = table.backend_of(vip, id) {
            return Ok(b);
        }
        // Its backend was removed: forget it and pick afresh.
        self.conntrack.forget(key);
        let id = self
            .conntrack
            .lookup_or_insert(*key, self.now_ms, pick)
            .ok_or(DropReason::NoBackend)?;
        table.backend_of(vip, id).ok_or(DropReason::NoBackend)
    }

    fn port_of(&self, ifindex: u32) -> Option<PortId> {
        let i = self.ports.iter().position(|p| p.ifindex == ifindex)?;
        u16::try_from(i).ok().map(PortId)
    }

    /// Puts the outer header in front of the frame's IP packet (step 6, IPIP).
    fn encapsulate(
        &self,
        batch: &mut Batch<'_, '_>,
        i: usize,
        hop: &Hop,
        to: IpAddr,
        inner: Inner,
        hash: u32,
    ) -> Result<(), DropReason> {
        let (outer_len, ether_type) = match to {
            IpAddr::V4(_) => (ipv4::HEADER_LEN, EtherType::IPV4),
            IpAddr::V6(_) => (ipv6::HEADER_LEN, EtherType::IPV6),
        };
        let from = match to {
            IpAddr::V4(_) => self.fib.ipv4_of(hop.port_ifindex).map(IpAddr::V4),
            IpAddr::V6(_) => self.fib.ipv6_global_of(hop.port_ifindex).map(IpAddr::V6),
        }
        .ok_or(DropReason::BackendUnreachable)?;
        let protocol = if inner.v6 {
            IpProtocol::IPV6
        } else {
            IpProtocol::IPIP
        };
        batch
            .push_head(i, outer_len)
            .map_err(|_| DropReason::NoHeadroom)?;
        let l3 = ethernet::HEADER_LEN;
        // Trim any Ethernet padding after the inner packet: the outer length covers it exactly.
        let end = l3 + outer_len + inner.len;
        if batch.frame(i).len() > end {
            batch.set_len(i, end).map_err(|_| DropReason::NoHeadroom)?;
        }
        let frame = batch.frame_mut(i);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(hop.dst_mac);
        eth.set_src_addr(hop.src_mac);
        eth.set_ether_type(ether_type);
        let outer = &mut frame[l3..l3 + outer_len];
        match (from, to) {
            (IpAddr::V4(from), IpAddr::V4(to)) => {
                let mut ip = Ipv4Packet::new_unchecked(outer);
                ipv4::Repr {
                    src_addr: from,
                    dst_addr: to,
                    protocol,
                    payload_len: inner.len as u16,
                    ttl: OUTER_TTL,
                    dscp: inner.tos >> 2,
                    ident: 0,
                    dont_frag: inner.dont_frag,
                }
                .emit(&mut ip);
                ip.set_ecn(inner.tos & 0b11);
                ip.fill_checksum();
            }
            (IpAddr::V6(from), IpAddr::V6(to)) => {
                let mut ip = Ipv6Packet::new_unchecked(outer);
                ipv6::Repr {
                    src_addr: from,
                    dst_addr: to,
                    next_header: protocol,
                    payload_len: inner.len as u16,
                    hop_limit: OUTER_TTL,
                }
                .emit(&mut ip);
                ip.set_traffic_class(inner.tos);
                ip.set_flow_label(hash & 0x000f_ffff);
            }
            // `from` is looked up in `to`'s family above.
            _ => return Err(DropReason::BackendUnreachable),
        }
        Ok(())
    }

    /// Answers a packet too big for the path to its backend (step 6): the ICMP error to the
    /// client, from the VIP, carrying `mtu` (what is left for the client's packet).
    fn too_big(
        &mut self,
        batch: &mut Batch<'_, '_>,
        i: usize,
        key: &FlowKey,
        inner: Inner,
        mtu: usize,
    ) -> Result<Verdict, DropReason> {
        if !inner.v6 && !inner.dont_frag {
            return Err(DropReason::TooBig);
        }
        let l3 = ethernet::HEADER_LEN;
        let (quote, mtu) = if inner.v6 {
            (inner.len.min(icmp::V6_MAX_QUOTE), mtu.max(icmp::V6_MIN_MTU))
        } else {
            let ihl = Ipv4Packet::new_unchecked(&batch.frame(i)[l3..]).header_len();
            ((ihl + icmp::V4_QUOTE_DATA).min(inner.len), mtu)
        };
        let err = IcmpError::TooBig(u32::try_from(mtu).unwrap_or(u32::MAX));
        let headers_end = l3 + icmp::headers_len(inner.v6);
        let room = batch
            .capacity(i)
            .checked_sub(headers_end)
            .ok_or(DropReason::IcmpFailed)?;
        let quote = quote.min(room);
        if !self.refilled {
            self.bucket.refill(self.now);
            self.refilled = true;
        }
        if !self.bucket.ready() {
            return Err(DropReason::IcmpRateLimited);
        }
        batch
            .set_len(i, headers_end + quote)
            .map_err(|_| DropReason::IcmpFailed)?;
        self.bucket.take();
        let buf = batch.buffer_mut(i);
        let built = match (key.dst, key.src) {
            (IpAddr::V4(vip), IpAddr::V4(client)) => {
                icmp::emit_v4(buf, l3, quote, vip, client, err)
            }
            (IpAddr::V6(vip), IpAddr::V6(client)) => {
                icmp::emit_v6(buf, l3, quote, vip, client, err)
            }
            _ => None,
        };
        built.map(|_| Verdict::Tx).ok_or(DropReason::IcmpFailed)
    }
}

/// Steps 1–2: what the frame is, or why it is dropped.
fn parse(frame: &[u8], broadcasts: &Broadcasts) -> Result<(Kind, Inner), DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Truncated)?;
    safety::macs(&eth)?;
    let l3 = &frame[ethernet::HEADER_LEN..];
    match eth.ether_type() {
        EtherType::IPV4 => parse_v4(l3, broadcasts),
        EtherType::IPV6 => parse_v6(l3),
        // The XDP program steers only untagged IP frames here.
        _ => Err(DropReason::NotIp),
    }
}

fn parse_v4(l3: &[u8], broadcasts: &Broadcasts) -> Result<(Kind, Inner), DropReason> {
    if l3.len() < ipv4::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv4Packet::new_unchecked(l3);
    if ip.version() != 4 {
        return Err(DropReason::BadIpHeader);
    }
    ip.check_len().map_err(ip_error)?;
    if !ip.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    safety::source_v4(src, broadcasts)?;
    safety::destination_v4(dst, broadcasts)?;
    if ip.is_fragment() {
        return Err(DropReason::Fragment);
    }
    let inner = Inner {
        len: usize::from(ip.total_len()),
        v6: false,
        dont_frag: ip.dont_frag(),
        tos: ip.dscp() << 2 | ip.ecn(),
    };
    let kind = match ip.protocol() {
        IpProtocol::ICMP => icmp_about_v4(dst, ip.payload())?,
        p => flow(IpAddr::V4(src), IpAddr::V4(dst), p, ip.payload())?,
    };
    Ok((kind, inner))
}

fn parse_v6(l3: &[u8]) -> Result<(Kind, Inner), DropReason> {
    if l3.len() < ipv6::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv6Packet::new_unchecked(l3);
    if ip.version() != 6 {
        return Err(DropReason::BadIpHeader);
    }
    ip.check_len().map_err(|_| DropReason::IpLength)?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    safety::source_v6(src)?;
    safety::destination_v6(dst)?;
    let inner = Inner {
        len: ip.total_len(),
        v6: true,
        dont_frag: true,
        tos: ip.traffic_class(),
    };
    let kind = match ip.next_header() {
        IpProtocol::ICMPV6 => icmp_about_v6(dst, ip.payload())?,
        p => flow(IpAddr::V6(src), IpAddr::V6(dst), p, ip.payload())?,
    };
    Ok((kind, inner))
}

/// A TCP or UDP packet's flow.
fn flow(src: IpAddr, dst: IpAddr, protocol: IpProtocol, l4: &[u8]) -> Result<Kind, DropReason> {
    let (src_port, dst_port, fin_or_rst) = match protocol {
        IpProtocol::TCP => {
            let tcp = TcpPacket::new_checked(l4).map_err(|_| DropReason::L4Length)?;
            (tcp.src_port(), tcp.dst_port(), tcp.fin() || tcp.rst())
        }
        IpProtocol::UDP => {
            let udp = UdpPacket::new_checked(l4).map_err(|_| DropReason::L4Length)?;
            (udp.src_port(), udp.dst_port(), false)
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    safety::ports(src_port, dst_port)?;
    Ok(Kind::Flow {
        key: FlowKey {
            src,
            dst,
            src_port,
            dst_port,
            protocol,
        },
        fin_or_rst,
    })
}

/// ICMPv4 errors about a flow: destination unreachable, time exceeded, parameter problem.
const V4_ERRORS: [u8; 3] = [3, 11, 12];

/// Step 7 for IPv4: the flow an ICMP error to `vip` is about.
fn icmp_about_v4(vip: Ipv4Addr, payload: &[u8]) -> Result<Kind, DropReason> {
    let msg = Icmpv4Packet::new_checked(payload).map_err(|_| DropReason::Truncated)?;
    if !V4_ERRORS.contains(&msg.msg_type().0) {
        return Err(DropReason::NotVip);
    }
    let quote = payload
        .get(icmpv4::HEADER_LEN..)
        .ok_or(DropReason::Truncated)?;
    if quote.len() < ipv4::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv4Packet::new_unchecked(quote);
    let ihl = ip.header_len();
    if ip.version() != 4 || ihl < ipv4::HEADER_LEN || ip.src_addr() != vip {
        return Err(DropReason::NotVip);
    }
    let ports = quote.get(ihl..ihl + 4).ok_or(DropReason::Truncated)?;
    about(
        IpAddr::V4(ip.dst_addr()),
        IpAddr::V4(vip),
        ip.protocol(),
        ports,
    )
}

/// Step 7 for IPv6: destination unreachable, packet too big, time exceeded, parameter problem.
fn icmp_about_v6(vip: Ipv6Addr, payload: &[u8]) -> Result<Kind, DropReason> {
    let msg = Icmpv6Packet::new_checked(payload).map_err(|_| DropReason::Truncated)?;
    if !(1..=4).contains(&msg.msg_type().0) {
        return Err(DropReason::NotVip);
    }
    let quote = payload
        .get(icmpv6::HEADER_LEN..)
        .ok_or(DropReason::Truncated)?;
    if quote.len() < ipv6::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv6Packet::new_unchecked(quote);
    if ip.version() != 6 || ip.src_addr() != vip {
        return Err(DropReason::NotVip);
    }
    let ports = quote
        .get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + 4)
        .ok_or(DropReason::Truncated)?;
    about(
        IpAddr::V6(ip.dst_addr()),
        IpAddr::V6(vip),
        ip.next_header(),
        ports,
    )
}

/// The client → VIP flow whose VIP → client packet an error quotes (`ports`: the quoted
/// packet's source and destination port).
fn about(
    client: IpAddr,
    vip: IpAddr,
    protocol: IpProtocol,
    ports: &[u8],
) -> Result<Kind, DropReason> {
    if protocol != IpProtocol::TCP && protocol != IpProtocol::UDP {
        return Err(DropReason::NotVip);
    }
    let vip_port = u16::from_be_bytes([ports[0], ports[1]]);
    let client_port = u16::from_be_bytes([ports[2], ports[3]]);
    Ok(Kind::IcmpAbout {
        key: FlowKey {
            src: client,
            dst: vip,
            src_port: client_port,
            dst_port: vip_port,
            protocol,
        },
    })
}

fn ip_error(e: wire::Error) -> DropReason {
    match e {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::Malformed => DropReason::BadIpHeader,
        wire::Error::Length => DropReason::IpLength,
    }
}
