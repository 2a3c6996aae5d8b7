//! The `dns` app's per-frame work: answer each UDP query in the frame it came in.
//!
//! Per frame: Ethernet (up to two VLAN tags, kept), IPv4 or IPv6, UDP; refuse what a responder
//! must never answer; copy the query out to the worker's scratch buffer; have the zones write the
//! response right behind a fresh IP and UDP header in the same buffer; swap the addresses and
//! ports; `Tx`. No allocation, no lock, no system call: the zones are loaded once per batch from
//! their handle.
//!
//! # What is never answered (each a counted drop)
//!
//! The [responder rules](crate::apps::safety):
//!
//! - a group (multicast/broadcast) source MAC, a source address that is multicast, broadcast
//!   (limited, or one of the host's directed broadcasts given by [`Dns::with_broadcasts`]),
//!   unspecified, `0.0.0.0/8`, loopback or IPv4-mapped (`martian_source`): an answer would go
//!   to a whole group, or to a forged victim;
//! - a group destination MAC, or a multicast or broadcast destination address (limited or
//!   directed: `group_destination`): DNS on port 53 is unicast; answering a broadcast query
//!   invites amplification, and the answer would come from a broadcast address;
//! - an unspecified or loopback destination (`martian_destination`): the answer's source;
//! - source or destination port 0 (`port_zero`);
//! - a UDP checksum that does not verify (`bad_l4_checksum`; IPv6's mandatory checksum of 0
//!   too; `partial_l4_checksum` when the field holds only the pseudo-header sum, as a sender's
//!   unfinished TX offload leaves it): the kernel would drop it, so does sluice;
//! - IPv4 fragments (`fragment`), other protocols or IPv6 extension headers
//!   (`unsupported_protocol`), malformed headers (`truncated`, `bad_ip_header`, `ip_length`,
//!   `bad_ip_checksum`, `l4_length`);
//! - a DNS message that gets no reply at all — a response (QR=1), or shorter than a header
//!   (`not_a_query`).
//!
//! The reply's IP header is written afresh (20 bytes for IPv4 — any options of the query are
//! not echoed — TTL/hop limit 64, DF set, DSCP 0), the UDP checksum is computed over the new
//! datagram. The largest answer is the smallest of: the client's limit (512, or its EDNS size),
//! 4096, what the egress MTU leaves, and what the frame's buffer leaves.

use super::answer::{Limits, Outcome};
use super::zone::Zones;
use crate::apps::safety::{self, Broadcasts};
use crate::apps::{App, Batch, DropReason, Verdict};
use crate::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket, checksum, ipv4, ipv6,
    udp, vlan,
};
use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest UDP answer sluice sends, whatever the client allows (the EDNS "flag day 2020"
/// recommendation is 1232; 4096 is what NSD and Knot allow by default and the MTU caps it
/// anyway).
pub const MAX_UDP_PAYLOAD: usize = 4096;

/// TTL / hop limit of replies.
const REPLY_TTL: u8 = 64;

/// The zones the workers answer from: swapped whole on reload.
#[derive(Clone)]
pub struct ZonesHandle(Arc<ArcSwap<Zones>>);

impl ZonesHandle {
    /// A handle serving `zones`.
    pub fn new(zones: Zones) -> Self {
        ZonesHandle(Arc::new(ArcSwap::from_pointee(zones)))
    }

    /// The zones now (one atomic load).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Zones>> {
        self.0.load()
    }

    /// Replaces the zones; workers answer from them from their next batch.
    pub fn store(&self, zones: Zones) {
        self.0.store(Arc::new(zones));
    }
}

impl std::fmt::Debug for ZonesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZonesHandle")
    }
}

/// The answer outcomes counted per worker, in counter order.
pub const OUTCOMES: [&str; 10] = [
    "answered",
    "nodata",
    "nxdomain",
    "referral",
    "refused",
    "formerr",
    "notimp",
    "badvers",
    "truncated",
    "dropped",
];

fn outcome_index(o: &Outcome) -> usize {
    match o {
        Outcome::Answered => 0,
        Outcome::NoData => 1,
        Outcome::NxDomain => 2,
        Outcome::Referral => 3,
        Outcome::Refused => 4,
        Outcome::FormErr => 5,
        Outcome::NotImp => 6,
        Outcome::BadVers => 7,
        Outcome::Truncated => 8,
        Outcome::Dropped(_) => 9,
    }
}

/// A worker's DNS outcome counters, published once per batch for the control plane.
#[derive(Debug, Default)]
pub struct DnsWorkerStats {
    counts: CachePadded<[AtomicU64; OUTCOMES.len()]>,
}

impl DnsWorkerStats {
    fn publish(&self, counts: &[u64; OUTCOMES.len()]) {
        for (a, &v) in self.counts.iter().zip(counts) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// The counts last published, in [`OUTCOMES`] order.
    pub fn read(&self) -> [u64; OUTCOMES.len()] {
        let mut out = [0; OUTCOMES.len()];
        for (o, a) in out.iter_mut().zip(self.counts.iter()) {
            *o = a.load(Ordering::Relaxed);
        }
        out
    }
}

/// Answers DNS queries over UDP (see the module docs). One per worker.
pub struct Dns {
    zones: ZonesHandle,
    /// The query, copied out of the frame the response is written into.
    scratch: Box<[u8]>,
    /// Largest UDP payload the egress MTU allows, per IP version.
    mtu_payload_v4: usize,
    mtu_payload_v6: usize,
    counts: [u64; OUTCOMES.len()],
    stats: Arc<DnsWorkerStats>,
    broadcasts: Broadcasts,
}

impl Dns {
    /// A responder over `zones` on a link of `mtu` bytes, publishing into `stats`.
    pub fn new(zones: ZonesHandle, mtu: u32, stats: Arc<DnsWorkerStats>) -> Self {
        let mtu = mtu as usize;
        Dns {
            zones,
            scratch: vec![0u8; 65536].into_boxed_slice(),
            mtu_payload_v4: mtu.saturating_sub(ipv4::HEADER_LEN + udp::HEADER_LEN),
            mtu_payload_v6: mtu.saturating_sub(ipv6::HEADER_LEN + udp::HEADER_LEN),
            counts: [0; OUTCOMES.len()],
            stats,
            broadcasts: Broadcasts::none(),
        }
    }

    /// The same responder, also refusing queries to and from `broadcasts` (the host's directed
    /// broadcast addresses, [`Broadcasts::from_snapshot`]).
    pub fn with_broadcasts(mut self, broadcasts: Broadcasts) -> Self {
        self.broadcasts = broadcasts;
        self
    }

    fn answer(
        &mut self,
        zones: &Zones,
        batch: &mut Batch<'_, '_>,
        i: usize,
    ) -> Result<(), DropReason> {
        let q = parse(batch.frame(i), &self.broadcasts)?;
        let query = &batch.frame(i)[q.payload.clone()];
        let n = query.len();
        let scratch = self.scratch.get_mut(..n).ok_or(DropReason::L4Length)?;
        scratch.copy_from_slice(query);
        let ip_len = if q.v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        };
        let out_at = q.l3 + ip_len + udp::HEADER_LEN;
        let room = batch.capacity(i).saturating_sub(out_at);
        let mtu = if q.v6 {
            self.mtu_payload_v6
        } else {
            self.mtu_payload_v4
        };
        let limit = room.min(mtu).min(MAX_UDP_PAYLOAD);
        let buf = batch.buffer_mut(i);
        let answer = zones.answer(
            &self.scratch[..n],
            Limits {
                udp_payload_max: limit,
                tcp: false,
            },
            &mut buf[out_at..out_at + limit],
        );
        self.counts[outcome_index(&answer.outcome)] += 1;
        if answer.len == 0 {
            return Err(DropReason::NotAQuery);
        }
        let udp_len = udp::HEADER_LEN + answer.len;
        // Within the buffer: `limit` was bounded by it.
        batch
            .set_len(i, out_at + answer.len)
            .map_err(|_| DropReason::L4Length)?;
        let frame = batch.frame_mut(i);
        EthernetFrame::new_unchecked(&mut *frame).swap_addrs();
        let (ip, rest) = frame[q.l3..].split_at_mut(ip_len);
        let pseudo = match (q.src, q.dst) {
            (IpAddr::V4(client), IpAddr::V4(server)) => {
                ipv4::Repr {
                    src_addr: server,
                    dst_addr: client,
                    protocol: IpProtocol::UDP,
                    payload_len: udp_len as u16,
                    ttl: REPLY_TTL,
                    dscp: 0,
                    ident: 0,
                    dont_frag: true,
                }
                .emit(&mut Ipv4Packet::new_unchecked(ip));
                checksum::pseudo_header_v4(server, client, IpProtocol::UDP, udp_len as u32)
            }
            (IpAddr::V6(client), IpAddr::V6(server)) => {
                ipv6::Repr {
                    src_addr: server,
                    dst_addr: client,
                    next_header: IpProtocol::UDP,
                    payload_len: udp_len as u16,
                    hop_limit: REPLY_TTL,
                }
                .emit(&mut Ipv6Packet::new_unchecked(ip));
                checksum::pseudo_header_v6(&server, &client, IpProtocol::UDP, udp_len as u32)
            }
            _ => return Err(DropReason::BadIpHeader),
        };
        let mut u = UdpPacket::new_unchecked(&mut rest[..udp_len]);
        u.set_src_port(q.dst_port);
        u.set_dst_port(q.src_port);
        u.set_len(udp_len as u16);
        u.fill_checksum(pseudo);
        Ok(())
    }
}

impl App for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        let zones = self.zones.load();
        for i in 0..batch.len() {
            let v = match self.answer(&zones, batch, i) {
                Ok(()) => Verdict::Tx,
                Err(reason) => Verdict::Drop(reason),
            };
            batch.set_verdict(i, v);
        }
        self.stats.publish(&self.counts);
    }
}

/// What [`parse`] found in a query frame.
struct Query {
    l3: usize,
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    /// The DNS message, as a range of the frame.
    payload: std::ops::Range<usize>,
}

fn parse(frame: &[u8], broadcasts: &Broadcasts) -> Result<Query, DropReason> {
    let encap = vlan::walk(frame).map_err(|_| DropReason::Truncated)?;
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Truncated)?;
    safety::macs(&eth)?;
    let l3 = encap.l3_offset;
    let packet = frame.get(l3..).ok_or(DropReason::Truncated)?;
    let (src, dst, udp_at, udp_bytes, pseudo, v6) = match encap.ether_type {
        EtherType::IPV4 => {
            if packet.len() < ipv4::HEADER_LEN {
                return Err(DropReason::Truncated);
            }
            let ip = Ipv4Packet::new_unchecked(packet);
            if ip.version() != 4 {
                return Err(DropReason::BadIpHeader);
            }
            ip.check_len().map_err(|e| match e {
                crate::wire::Error::Truncated => DropReason::Truncated,
                crate::wire::Error::Malformed => DropReason::BadIpHeader,
                crate::wire::Error::Length => DropReason::IpLength,
            })?;
            if !ip.verify_checksum() {
                return Err(DropReason::BadIpChecksum);
            }
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            safety::source_v4(s, broadcasts)?;
            safety::destination_v4(d, broadcasts)?;
            if ip.is_fragment() {
                return Err(DropReason::Fragment);
            }
            if ip.protocol() != IpProtocol::UDP {
                return Err(DropReason::UnsupportedProtocol);
            }
            let at = l3 + ip.header_len();
            let len = usize::from(ip.total_len()) - ip.header_len();
            let pseudo = |n| checksum::pseudo_header_v4(s, d, IpProtocol::UDP, n);
            (
                IpAddr::V4(s),
                IpAddr::V4(d),
                at,
                len,
                pseudo(len as u32),
                false,
            )
        }
        EtherType::IPV6 => {
            if packet.len() < ipv6::HEADER_LEN {
                return Err(DropReason::Truncated);
            }
            let ip = Ipv6Packet::new_unchecked(packet);
            if ip.version() != 6 {
                return Err(DropReason::BadIpHeader);
            }
            ip.check_len().map_err(|_| DropReason::IpLength)?;
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            safety::source_v6(s)?;
            safety::destination_v6(d)?;
            if ip.next_header() != IpProtocol::UDP {
                return Err(DropReason::UnsupportedProtocol);
            }
            let len = ip.total_len() - ipv6::HEADER_LEN;
            let pseudo = checksum::pseudo_header_v6(&s, &d, IpProtocol::UDP, len as u32);
            (
                IpAddr::V6(s),
                IpAddr::V6(d),
                l3 + ipv6::HEADER_LEN,
                len,
                pseudo,
                true,
            )
        }
        _ => return Err(DropReason::NotIp),
    };
    let segment = frame
        .get(udp_at..udp_at + udp_bytes)
        .ok_or(DropReason::Truncated)?;
    let u = UdpPacket::new_checked(segment).map_err(|_| DropReason::Truncated)?;
    if usize::from(u.len()) != udp_bytes || udp_bytes < udp::HEADER_LEN {
        return Err(DropReason::L4Length);
    }
    safety::ports(u.src_port(), u.dst_port())?;
    // Over IPv4 a checksum of 0 means "not computed"; over IPv6 it is invalid.
    let not_computed = !v6 && u.checksum() == 0;
    if !not_computed && !u.verify_checksum(pseudo) {
        return Err(safety::l4_checksum(u.checksum(), pseudo));
    }
    Ok(Query {
        l3,
        v6,
        src,
        dst,
        src_port: u.src_port(),
        dst_port: u.dst_port(),
        payload: udp_at + udp::HEADER_LEN..udp_at + udp_bytes,
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::apps::dns::zone::ZoneSource;
    use crate::batch::PortId;
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    use std::path::Path;

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
    const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x02];

    fn zones() -> Zones {
        Zones::from_sources(&[ZoneSource {
            path: Path::new("t.zone"),
            origin: Some("example.test"),
            text: "@ 600 IN SOA ns h 1 1 1 1 60\n@ IN NS ns\nns IN A 192.0.2.1\nwww IN A 192.0.2.80\n",
        }])
        .unwrap()
    }

    fn app() -> (Dns, Arc<DnsWorkerStats>) {
        let stats = Arc::new(DnsWorkerStats::default());
        (
            Dns::new(ZonesHandle::new(zones()), 1500, stats.clone()),
            stats,
        )
    }

    /// A DNS query for `www.example.test A` (flags as given), id 0x1234.
    fn query(flags: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34];
        q.extend(flags.to_be_bytes());
        q.extend([0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
        q
    }

    fn frame(src: &str, dst: &str, sport: u16, dns: &[u8]) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
        let mut out = Vec::new();
        match (
            src.parse::<IpAddr>().unwrap(),
            dst.parse::<IpAddr>().unwrap(),
        ) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth
                .ipv4(s.octets(), d.octets(), 64)
                .udp(sport, 53)
                .write(&mut out, dns),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth
                .ipv6(s.octets(), d.octets(), 64)
                .udp(sport, 53)
                .write(&mut out, dns),
            _ => unreachable!(),
        }
        .unwrap();
        out
    }

    fn run(app: &mut Dns, f: &[u8]) -> (Vec<u8>, Verdict) {
        let mut buf = f.to_vec();
        buf.resize(2048, 0);
        let mut lens = vec![f.len() as u32];
        let mut starts = vec![0u32];
        let mut verdicts = vec![Verdict::Tx];
        {
            let mut slices: Vec<&mut [u8]> = vec![&mut buf[..]];
            let mut b = Batch::with_room(
                &mut slices,
                &mut starts,
                &mut lens,
                &mut verdicts,
                PortId(0),
            );
            app.process(&mut b);
        }
        (buf[..lens[0] as usize].to_vec(), verdicts[0])
    }

    #[test]
    fn answers_in_place_over_ipv4_and_ipv6_with_valid_checksums() {
        let (mut app, stats) = app();
        for (client, server) in [
            ("198.51.100.7", "192.0.2.53"),
            ("2001:db8::7", "2001:db8::53"),
        ] {
            let (out, v) = run(&mut app, &frame(client, server, 40000, &query(0x0100)));
            assert_eq!(v, Verdict::Tx, "{client}");
            let p = SlicedPacket::from_ethernet(&out).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link else {
                panic!("not Ethernet")
            };
            assert_eq!((e.destination(), e.source()), (CLIENT_MAC, SERVER_MAC));
            let TransportSlice::Udp(u) = p.transport.unwrap() else {
                panic!("not UDP")
            };
            assert_eq!((u.source_port(), u.destination_port()), (53, 40000));
            let payload = u.payload().to_vec();
            match p.net.unwrap() {
                NetSlice::Ipv4(n) => {
                    let h = n.header().to_header();
                    assert_eq!(h.header_checksum, h.calc_header_checksum());
                    assert_eq!(
                        (h.source, h.destination),
                        ([192, 0, 2, 53], [198, 51, 100, 7])
                    );
                    assert_eq!(
                        u.checksum(),
                        u.to_header().calc_checksum_ipv4(&h, &payload).unwrap()
                    );
                }
                NetSlice::Ipv6(n) => {
                    let h = n.header().to_header();
                    assert_eq!(
                        u.checksum(),
                        u.to_header().calc_checksum_ipv6(&h, &payload).unwrap()
                    );
                }
                NetSlice::Arp(_) => panic!("ARP"),
            }
            // The DNS answer: id echoed, QR and AA set, one answer: the A record, compressed
            // against the question (name pointer 0xc00c, type A, class IN, TTL, 192.0.2.80).
            assert_eq!(&payload[..2], &[0x12, 0x34]);
            assert_eq!(payload[2] & 0x84, 0x84);
            assert_eq!(&payload[6..8], &[0, 1]);
            let record = [
                0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 80,
            ];
            assert!(
                payload.windows(record.len()).any(|w| w == record),
                "{payload:?}"
            );
        }
        assert_eq!(stats.read()[0], 2, "two answered");
    }

    #[test]
    fn what_a_responder_must_not_answer_is_dropped_by_reason() {
        let (app, stats) = app();
        let mut app = app.with_broadcasts(Broadcasts::from_addrs(["192.0.2.255".parse().unwrap()]));
        let good = frame("198.51.100.7", "192.0.2.53", 40000, &query(0x0100));
        let mut group_dst = good.clone();
        group_dst[0] |= 1;
        let mut group_src = good.clone();
        group_src[6] |= 1;
        let mut bad_sum = good.clone();
        let n = bad_sum.len();
        bad_sum[n - 1] ^= 0xff;
        // What a sender's TX checksum offload leaves: the pseudo-header sum only.
        let mut partial_sum = good.clone();
        let pseudo = checksum::pseudo_header_v4(
            "198.51.100.7".parse().unwrap(),
            "192.0.2.53".parse().unwrap(),
            IpProtocol::UDP,
            (n - 34) as u32,
        );
        partial_sum[40..42].copy_from_slice(&pseudo.to_be_bytes());
        let cases = [
            (group_dst, DropReason::GroupDestination),
            (group_src, DropReason::MartianSource),
            (bad_sum, DropReason::BadL4Checksum),
            (
                frame("198.51.100.7", "255.255.255.255", 40000, &query(0x0100)),
                DropReason::GroupDestination,
            ),
            (
                frame("198.51.100.7", "224.0.0.251", 40000, &query(0x0100)),
                DropReason::GroupDestination,
            ),
            (
                frame("2001:db8::7", "ff02::fb", 40000, &query(0x0100)),
                DropReason::GroupDestination,
            ),
            (
                frame("0.0.0.0", "192.0.2.53", 40000, &query(0x0100)),
                DropReason::MartianSource,
            ),
            (
                frame("127.0.0.1", "192.0.2.53", 40000, &query(0x0100)),
                DropReason::MartianSource,
            ),
            (
                frame("::", "2001:db8::53", 40000, &query(0x0100)),
                DropReason::MartianSource,
            ),
            (
                frame("198.51.100.7", "192.0.2.53", 0, &query(0x0100)),
                DropReason::PortZero,
            ),
            (
                frame("192.0.2.255", "192.0.2.53", 40000, &query(0x0100)),
                DropReason::MartianSource,
            ),
            (
                frame("198.51.100.7", "192.0.2.255", 40000, &query(0x0100)),
                DropReason::GroupDestination,
            ),
            (
                frame("198.51.100.7", "127.0.0.1", 40000, &query(0x0100)),
                DropReason::MartianDestination,
            ),
            (
                frame("2001:db8::7", "::1", 40000, &query(0x0100)),
                DropReason::MartianDestination,
            ),
            (
                frame("::ffff:198.51.100.7", "2001:db8::53", 40000, &query(0x0100)),
                DropReason::MartianSource,
            ),
            (partial_sum, DropReason::PartialL4Checksum),
            // A response is never answered: no reflection loops.
            (
                frame("198.51.100.7", "192.0.2.53", 40000, &query(0x8100)),
                DropReason::NotAQuery,
            ),
            (
                frame("198.51.100.7", "192.0.2.53", 40000, &[0x12, 0x34]),
                DropReason::NotAQuery,
            ),
        ];
        for (f, reason) in cases {
            let (out, v) = run(&mut app, &f);
            assert_eq!(v, Verdict::Drop(reason));
            assert_eq!(out, f, "a dropped frame is unchanged");
        }
        assert_eq!(stats.read()[OUTCOMES.len() - 1], 2, "two counted dropped");
    }

    #[test]
    fn an_ipv4_checksum_of_zero_means_none_but_not_over_ipv6() {
        let (mut app, _) = app();
        let mut f = frame("198.51.100.7", "192.0.2.53", 40000, &query(0x0100));
        f[14 + 20 + 6..14 + 20 + 8].fill(0);
        assert_eq!(run(&mut app, &f).1, Verdict::Tx);
        let mut f = frame("2001:db8::7", "2001:db8::53", 40000, &query(0x0100));
        f[14 + 40 + 6..14 + 40 + 8].fill(0);
        assert_eq!(
            run(&mut app, &f).1,
            Verdict::Drop(DropReason::BadL4Checksum)
        );
    }

    /// An answer breaks no responder rule: unicast MACs, unicast addresses, ports not 0, and
    /// the UDP checksum verifies.
    fn assert_safe_answer(out: &[u8]) {
        let p = SlicedPacket::from_ethernet(out).expect("an answer parses");
        let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link else {
            panic!("not Ethernet II")
        };
        assert_eq!((e.source()[0] & 1, e.destination()[0] & 1), (0, 0));
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!("not UDP")
        };
        assert!(u.source_port() != 0 && u.destination_port() != 0);
        let payload = u.payload();
        let none = Broadcasts::none();
        match p.net.as_ref().unwrap() {
            NetSlice::Ipv4(n) => {
                let h = n.header().to_header();
                assert!(safety::unicast_source_v4(h.source.into(), &none));
                assert!(safety::unicast_source_v4(h.destination.into(), &none));
                let want = u.to_header().calc_checksum_ipv4(&h, payload).unwrap();
                assert_eq!(u.checksum(), want);
            }
            NetSlice::Ipv6(n) => {
                let h = n.header().to_header();
                assert!(safety::unicast_source_v6(h.source.into()));
                assert!(safety::unicast_source_v6(h.destination.into()));
                let want = u.to_header().calc_checksum_ipv6(&h, payload).unwrap();
                assert_eq!(u.checksum(), want);
            }
            NetSlice::Arp(_) => panic!("ARP"),
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config())]

        /// Any bytes: never a panic; a dropped frame is unchanged; an answer is safe.
        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let (mut app, _) = app();
            let (out, v) = run(&mut app, &bytes);
            match v {
                Verdict::Tx => assert_safe_answer(&out),
                _ => proptest::prop_assert_eq!(out, bytes),
            }
        }

        /// Valid queries (IPv4 or IPv6) with a few bytes overwritten and maybe cut short: never a
        /// panic; a dropped frame is unchanged; an answer is a well-formed, safe UDP packet.
        #[test]
        fn mutated_queries_never_panic(
            v6 in proptest::prelude::any::<bool>(),
            flips in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                1..6,
            ),
            cut in proptest::option::weighted(0.2, proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            let (mut app, _) = app();
            let mut f = if v6 {
                frame("2001:db8::7", "2001:db8::53", 40000, &query(0x0100))
            } else {
                frame("198.51.100.7", "192.0.2.53", 40000, &query(0x0100))
            };
            for (at, v) in flips {
                let i = at.index(f.len());
                f[i] = v;
            }
            if let Some(c) = cut {
                f.truncate(c.index(f.len() + 1));
            }
            let (out, v) = run(&mut app, &f);
            match v {
                Verdict::Tx => assert_safe_answer(&out),
                _ => proptest::prop_assert_eq!(out, f),
            }
        }
    }
}
