//! The `reflect` app: send every valid UDP/TCP frame back where it came from.
//!
//! Per frame: parse Ethernet, up to two VLAN tags (kept in place), IPv4 or IPv6, then UDP or TCP;
//! validate lengths; refuse what a responder must never answer (see below); verify the L4
//! checksum; swap MAC addresses, IP addresses and ports in place; verdict `Tx`. Anything else is
//! dropped with the [`DropReason`] documented in [`crate::apps`] and [`crate::apps::safety`],
//! and a dropped frame is left byte-for-byte unchanged. The frame length never changes.
//!
//! # What is never answered
//!
//! The [responder rules](crate::apps::safety), checked after the headers are known to be
//! well-formed and before the checksum: a group source MAC or a martian source address
//! (multicast, broadcast — limited or one of the host's directed broadcasts given at
//! construction, [`Reflect::with_broadcasts`] — `0.0.0.0/8`, loopback, `::`, `::1`,
//! IPv4-mapped): `martian_source`; a group destination MAC or a multicast/broadcast destination
//! (the answer would come *from* it): `group_destination`; an unspecified or loopback
//! destination: `martian_destination`; source or destination port 0: `port_zero`.
//!
//! **TCP.** A segment with RST is never answered (`tcp_reset`): a reflected RST carries the
//! sequence number the sender chose, so a forged one (source = a victim's connection) would
//! reset that connection, and two reflectors would bounce it forever. Every other segment is
//! reflected like a datagram — `reflect` is a frame mirror for generators and benchmarks, not
//! a TCP endpoint. That is safe for a real TCP stack at the other end: a reflected segment
//! carries the stack's own sequence numbers, so it is unacceptable to it and draws at most an
//! RST (not reflected: the exchange ends) or a rate-limited challenge ACK (RFC 5961, Linux's
//! `tcp_invalid_ratelimit`), never an unbounded loop. Answering TCP *as TCP* (SYN-ACK, ACKs)
//! would make it a stack, which it is not.
//!
//! # Checksums
//!
//! The L4 checksum is verified before answering, as the kernel's receive path would: a UDP or
//! TCP segment whose checksum does not verify is dropped (`bad_l4_checksum`; over IPv4 a UDP
//! checksum of 0 means "none" and is accepted, over IPv6 it is invalid). A field holding exactly
//! the pseudo-header sum is what a sender's TX checksum offload leaves unfinished — a kernel
//! sender on a veth with offload on — and is counted apart (`partial_l4_checksum`) so the
//! engine can say once which interface gets them and how to fix the sender (`ethtool -K PEER tx
//! off`); it is dropped too, since on a wire it is as corrupt as any other value. Verifying costs
//! one pass over the segment: the pipeline benchmark (`App::process` over a 4096-frame ring, so
//! payloads come from memory, not cache), alternating runs of the code before and after on the
//! shared 2-core machine, measured 10–15 → 29–31 ns per 60-byte UDP/IPv4 frame, 10–11 → 35 ns
//! per 78-byte UDP/IPv6 frame and 11–16 → 157–324 ns per 1514-byte frame. That is the price of
//! answering only what the kernel would accept; a reflector that must run at line rate with
//! large frames trusts its peer's checksums at its own risk (a corrupt datagram would go back
//! corrupt, and a partial one unfinished).
//!
//! Swapping itself is checksum-neutral. The IPv4 header checksum and the UDP/TCP checksum are
//! ones-complement sums of 16-bit words, and the two addresses appear in them (the latter through
//! the pseudo-header) only as summands; exchanging source and destination, or the two ports,
//! permutes the summands, and ones-complement addition is commutative and associative. Every
//! checksum field stays exactly what it was and stays valid (the tests recompute all of them
//! with etherparse to show it). The IPv4 header checksum is not verified (the header's lengths
//! are, and a corrupt address would have failed the L4 checksum, which covers both addresses).
//!
//! This module must never allocate, log, block or panic: it runs in the worker's hot loop. Every
//! access goes through the checked views in [`crate::wire`].

use super::safety::{self, Broadcasts};
use super::{App, Batch, DropReason, Verdict};
use crate::wire::{
    self, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
    checksum, ipv4, ipv6, vlan,
};

/// Reflects UDP and TCP frames back to their sender (MACs, IPs and ports swapped).
#[derive(Debug, Default, Clone)]
pub struct Reflect {
    broadcasts: Broadcasts,
}

/// No directed broadcast known.
static NO_BROADCASTS: Broadcasts = Broadcasts::none();

impl Reflect {
    /// A reflector that knows no directed broadcast address (only the limited broadcast
    /// `255.255.255.255` is one): for tests, benchmarks and embedders without the host's
    /// addresses. `sluice run` uses [`Reflect::with_broadcasts`].
    pub const fn new() -> Self {
        Reflect {
            broadcasts: Broadcasts::none(),
        }
    }

    /// A reflector that also refuses packets to and from `broadcasts` (the host's directed
    /// broadcast addresses, [`Broadcasts::from_snapshot`]).
    pub fn with_broadcasts(broadcasts: Broadcasts) -> Self {
        Reflect { broadcasts }
    }
}

impl App for Reflect {
    fn name(&self) -> &'static str {
        "reflect"
    }

    #[inline]
    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        let broadcasts = &self.broadcasts;
        for (frame, verdict) in batch.iter_mut() {
            *verdict = match reflect_frame_with(frame, broadcasts) {
                Ok(()) => Verdict::Tx,
                Err(reason) => Verdict::Drop(reason),
            };
        }
    }
}

/// [`reflect_frame_with`] knowing no directed broadcast address.
#[inline]
pub fn reflect_frame(frame: &mut [u8]) -> Result<(), DropReason> {
    reflect_frame_with(frame, &NO_BROADCASTS)
}

/// Validate one Ethernet frame and, if it is a well-formed unfragmented UDP or TCP packet over
/// IPv4 or IPv6 (optionally behind one or two VLAN tags) that a responder may answer, swap its
/// MAC addresses, IP addresses and ports in place. On error the frame is unchanged.
///
/// Checks, in order (the first failure wins): Ethernet header and tags present (`Truncated`);
/// EtherType IPv4/IPv6 (`NotIp`); fixed IP header present (`Truncated`); version, and IHL ≥ 5
/// (`BadIpHeader`); IPv4 options present (`Truncated`); IPv4 total length within
/// [IHL·4, available] or IPv6 payload length ≤ available (`IpLength`); not an IPv4 fragment
/// (`Fragment`); UDP or TCP (`UnsupportedProtocol`); L4 header present in the IP payload
/// (`Truncated`); UDP length ≥ 8 and equal to the IP payload length, TCP data offset ≥ 5 and
/// within the IP payload (`L4Length`); then the responder rules: MACs (`MartianSource`,
/// `GroupDestination`), source address (`MartianSource`), destination address
/// (`GroupDestination`, `MartianDestination`), ports (`PortZero`), TCP RST (`TcpReset`); last
/// the L4 checksum (`PartialL4Checksum`, `BadL4Checksum`).
#[inline]
pub fn reflect_frame_with(frame: &mut [u8], broadcasts: &Broadcasts) -> Result<(), DropReason> {
    let (l3, v6) = judge(frame, broadcasts)?;
    // `judge` has checked every header the swaps below touch.
    EthernetFrame::new_unchecked(&mut *frame).swap_addrs();
    let l3 = &mut frame[l3..];
    if v6 {
        let mut ip = Ipv6Packet::new_unchecked(l3);
        ip.swap_addrs();
        swap_ports(ip.next_header(), ip.payload_mut());
    } else {
        let mut ip = Ipv4Packet::new_unchecked(l3);
        ip.swap_addrs();
        swap_ports(ip.protocol(), ip.payload_mut());
    }
    Ok(())
}

#[inline]
fn swap_ports(protocol: IpProtocol, segment: &mut [u8]) {
    if protocol == IpProtocol::UDP {
        UdpPacket::new_unchecked(segment).swap_ports();
    } else {
        TcpPacket::new_unchecked(segment).swap_ports();
    }
}

/// Every check of [`reflect_frame_with`], without changing the frame: the IP header's offset and
/// whether it is IPv6.
#[inline]
fn judge(frame: &[u8], broadcasts: &Broadcasts) -> Result<(usize, bool), DropReason> {
    let encap = vlan::walk(frame).map_err(|_| DropReason::Truncated)?;
    let l3 = frame.get(encap.l3_offset..).ok_or(DropReason::Truncated)?;
    // `walk` has checked that the frame holds a whole Ethernet header; the MACs' verdict counts
    // once the headers are known to be well-formed.
    let macs = safety::macs(&EthernetFrame::new_unchecked(frame));
    let v6 = match encap.ether_type {
        EtherType::IPV4 => {
            judge_ipv4(l3, macs, broadcasts)?;
            false
        }
        EtherType::IPV6 => {
            judge_ipv6(l3, macs)?;
            true
        }
        _ => return Err(DropReason::NotIp),
    };
    Ok((encap.l3_offset, v6))
}

/// IPv4 part of [`judge`].
#[inline]
fn judge_ipv4(
    l3: &[u8],
    macs: Result<(), DropReason>,
    broadcasts: &Broadcasts,
) -> Result<(), DropReason> {
    if l3.len() < ipv4::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    // Length established above; the version decides how to read the rest, so it comes before
    // the IHL/total-length checks of `check_len`.
    let ip = Ipv4Packet::new_unchecked(l3);
    if ip.version() != 4 {
        return Err(DropReason::BadIpHeader);
    }
    ip.check_len().map_err(|e| match e {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::Malformed => DropReason::BadIpHeader,
        wire::Error::Length => DropReason::IpLength,
    })?;
    if ip.is_fragment() {
        return Err(DropReason::Fragment);
    }
    let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    let segment = ip.into_payload();
    let l4 = judge_l4(protocol, segment)?;
    macs?;
    safety::source_v4(src, broadcasts)?;
    safety::destination_v4(dst, broadcasts)?;
    let pseudo = || checksum::pseudo_header_v4(src, dst, protocol, segment.len() as u32);
    l4.finish(false, pseudo)
}

/// IPv6 part of [`judge`].
#[inline]
fn judge_ipv6(l3: &[u8], macs: Result<(), DropReason>) -> Result<(), DropReason> {
    if l3.len() < ipv6::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv6Packet::new_unchecked(l3);
    if ip.version() != 6 {
        return Err(DropReason::BadIpHeader);
    }
    // With 40 bytes present the only failure left is a payload length past the frame.
    ip.check_len().map_err(|_| DropReason::IpLength)?;
    let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    let segment = ip.into_payload();
    let l4 = judge_l4(protocol, segment)?;
    macs?;
    safety::source_v6(src)?;
    safety::destination_v6(dst)?;
    let pseudo = || checksum::pseudo_header_v6(&src, &dst, protocol, segment.len() as u32);
    l4.finish(true, pseudo)
}

/// A well-formed UDP or TCP segment, not yet judged by the responder rules.
struct L4<'a> {
    segment: &'a [u8],
    udp: bool,
}

/// L4 part of [`judge`]: `segment` is exactly the IP payload (padding excluded).
#[inline]
fn judge_l4(protocol: IpProtocol, segment: &[u8]) -> Result<L4<'_>, DropReason> {
    let available = segment.len();
    let l4_err = |e: wire::Error| match e {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::Malformed | wire::Error::Length => DropReason::L4Length,
    };
    let udp = match protocol {
        IpProtocol::UDP => {
            let udp = UdpPacket::new_checked(segment).map_err(l4_err)?;
            if usize::from(udp.len()) != available {
                return Err(DropReason::L4Length);
            }
            true
        }
        IpProtocol::TCP => {
            TcpPacket::new_checked(segment).map_err(l4_err)?;
            false
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    Ok(L4 { segment, udp })
}

impl L4<'_> {
    /// Ports, RST and the checksum (`pseudo` gives the pseudo-header sum; only computed when
    /// the checksum is verified).
    #[inline]
    fn finish(&self, v6: bool, pseudo: impl FnOnce() -> u16) -> Result<(), DropReason> {
        let (field, ok) = if self.udp {
            let u = UdpPacket::new_unchecked(self.segment);
            safety::ports(u.src_port(), u.dst_port())?;
            // Over IPv4 a checksum of 0 means "not computed"; over IPv6 it is invalid.
            if !v6 && u.checksum() == 0 {
                return Ok(());
            }
            let pseudo = pseudo();
            (u.checksum(), (pseudo, u.verify_checksum(pseudo)))
        } else {
            let t = TcpPacket::new_unchecked(self.segment);
            safety::ports(t.src_port(), t.dst_port())?;
            if t.rst() {
                return Err(DropReason::TcpReset);
            }
            let pseudo = pseudo();
            (t.checksum(), (pseudo, t.verify_checksum(pseudo)))
        };
        match ok {
            (_, true) => Ok(()),
            (pseudo, false) => Err(safety::l4_checksum(field, pseudo)),
        }
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;
    use crate::wire::icmpv4;
    use crate::wire::ipv4::test::CAPTURED_ICMP_UNREACH;
    use crate::wire::ipv6::test::CAPTURED_ETH_IPV6_UDP;
    use crate::wire::tcp::test::{
        CAPTURED_ETH_IPV4_TCP_DATA, CAPTURED_ETH_IPV4_TCP_SYN, CAPTURED_ETH_IPV6_TCP_SYN,
    };
    use crate::wire::udp::test::CAPTURED_ETH_IPV4_UDP;
    use crate::wire::{checksum, ethernet::test::CAPTURED_ARP_REQUEST};
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    /// Insert VLAN tags `(tpid, tci)` after the MAC addresses of `frame`.
    fn with_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
        let mut f = frame[..12].to_vec();
        for &(tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&frame[12..]);
        f
    }

    fn run(frame: &mut [u8]) -> Verdict {
        let mut frames: [&mut [u8]; 1] = [frame];
        let mut verdicts = [Verdict::Tx];
        let mut batch = Batch::new(&mut frames, &mut verdicts);
        Reflect::new().process(&mut batch);
        batch.verdict(0)
    }

    /// Assert that `out` is `orig` reflected: etherparse parses both, MACs/IPs/ports are swapped,
    /// VLAN tags, lengths and every other byte are equal, and every checksum in `out` is what a
    /// full recomputation gives.
    fn assert_reflected(orig: &[u8], out: &[u8]) {
        assert_eq!(orig.len(), out.len());
        let a = SlicedPacket::from_ethernet(orig).expect("oracle parses the original");
        let b = SlicedPacket::from_ethernet(out).expect("oracle parses the reflected frame");
        let (
            Some(etherparse::LinkSlice::Ethernet2(ea)),
            Some(etherparse::LinkSlice::Ethernet2(eb)),
        ) = (&a.link, &b.link)
        else {
            panic!("not Ethernet II");
        };
        assert_eq!(
            (ea.source(), ea.destination()),
            (eb.destination(), eb.source())
        );
        assert_eq!(a.vlan_ids(), b.vlan_ids());
        let tags = |p: &SlicedPacket<'_>| {
            p.link_exts
                .iter()
                .map(|e| e.to_header())
                .collect::<Vec<_>>()
        };
        assert_eq!(tags(&a), tags(&b), "VLAN tags unchanged");

        let (ta, tb) = (a.transport.as_ref().unwrap(), b.transport.as_ref().unwrap());
        let (pa, pb) = match (ta, tb) {
            (TransportSlice::Udp(x), TransportSlice::Udp(y)) => {
                assert_eq!(x.checksum(), y.checksum());
                (
                    (x.source_port(), x.destination_port()),
                    (y.source_port(), y.destination_port()),
                )
            }
            (TransportSlice::Tcp(x), TransportSlice::Tcp(y)) => {
                assert_eq!(x.checksum(), y.checksum());
                (
                    (x.source_port(), x.destination_port()),
                    (y.source_port(), y.destination_port()),
                )
            }
            _ => panic!("not UDP/TCP"),
        };
        assert_eq!(pa, (pb.1, pb.0));

        match (a.net.as_ref().unwrap(), b.net.as_ref().unwrap()) {
            (NetSlice::Ipv4(x), NetSlice::Ipv4(y)) => {
                let (hx, hy) = (x.header(), y.header());
                assert_eq!(
                    (hx.source(), hx.destination()),
                    (hy.destination(), hy.source())
                );
                // Checksum-neutral: the field is unchanged and equals a recomputation.
                assert_eq!(hx.header_checksum(), hy.header_checksum());
                let h = hy.to_header();
                assert_eq!(h.calc_header_checksum(), hy.header_checksum());
                let (src, dst) = (hy.source(), hy.destination());
                match tb {
                    TransportSlice::Udp(u) => {
                        let full = u
                            .to_header()
                            .calc_checksum_ipv4_raw(src, dst, u.payload())
                            .unwrap();
                        assert_eq!(full, u.checksum(), "UDP checksum valid after reflect");
                    }
                    TransportSlice::Tcp(t) => {
                        assert_eq!(t.calc_checksum_ipv4(src, dst).unwrap(), t.checksum());
                    }
                    _ => unreachable!(),
                }
            }
            (NetSlice::Ipv6(x), NetSlice::Ipv6(y)) => {
                let (hx, hy) = (x.header(), y.header());
                assert_eq!(
                    (hx.source(), hx.destination()),
                    (hy.destination(), hy.source())
                );
                let (src, dst) = (hy.source(), hy.destination());
                match tb {
                    TransportSlice::Udp(u) => {
                        let full = u
                            .to_header()
                            .calc_checksum_ipv6_raw(src, dst, u.payload())
                            .unwrap();
                        assert_eq!(full, u.checksum());
                    }
                    TransportSlice::Tcp(t) => {
                        assert_eq!(t.calc_checksum_ipv6(src, dst).unwrap(), t.checksum());
                    }
                    _ => unreachable!(),
                }
            }
            _ => panic!("IP version changed"),
        }

        // Independent check with our own checksum module over the reflected frame.
        let encap = vlan::walk(out).unwrap();
        let l3 = &out[encap.l3_offset..];
        let (ph, proto, seg) = if encap.ether_type == EtherType::IPV4 {
            let ip = Ipv4Packet::new_checked(l3).unwrap();
            assert!(ip.verify_checksum());
            let ph = checksum::pseudo_header_v4(
                ip.src_addr(),
                ip.dst_addr(),
                ip.protocol(),
                ip.payload().len() as u32,
            );
            (ph, ip.protocol(), ip.into_payload())
        } else {
            let ip = Ipv6Packet::new_checked(l3).unwrap();
            let ph = checksum::pseudo_header_v6(
                &ip.src_addr(),
                &ip.dst_addr(),
                ip.next_header(),
                ip.payload().len() as u32,
            );
            (ph, ip.next_header(), ip.into_payload())
        };
        match proto {
            IpProtocol::UDP => {
                let u = UdpPacket::new_checked(seg).unwrap();
                assert!(u.checksum() == 0 || u.verify_checksum(ph));
            }
            IpProtocol::TCP => assert!(TcpPacket::new_checked(seg).unwrap().verify_checksum(ph)),
            _ => unreachable!(),
        }

        // Apart from the swapped fields, nothing moved: reflecting again restores the original.
        let mut again = out.to_vec();
        assert_eq!(reflect_frame(&mut again), Ok(()));
        assert_eq!(again, orig);
    }

    /// An answer breaks no responder rule: unicast source MAC, a source address that may send
    /// and a destination that is no group, ports not 0, no RST, an L4 checksum that verifies.
    fn assert_safe_answer(out: &[u8]) {
        use std::net::IpAddr;
        let p = SlicedPacket::from_ethernet(out).expect("an answer parses");
        let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link else {
            panic!("not Ethernet II")
        };
        assert_eq!(e.source()[0] & 1, 0, "group source MAC");
        assert_eq!(e.destination()[0] & 1, 0, "group destination MAC");
        let (src, dst): (IpAddr, IpAddr) = match p.net.as_ref().unwrap() {
            NetSlice::Ipv4(n) => (
                n.header().source_addr().into(),
                n.header().destination_addr().into(),
            ),
            NetSlice::Ipv6(n) => (
                n.header().source_addr().into(),
                n.header().destination_addr().into(),
            ),
            NetSlice::Arp(_) => panic!("ARP"),
        };
        let none = Broadcasts::none();
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                assert!(super::safety::unicast_source_v4(s, &none), "source {s}");
                assert!(
                    super::safety::unicast_source_v4(d, &none),
                    "destination {d}"
                );
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                assert!(super::safety::unicast_source_v6(s), "source {s}");
                assert!(super::safety::unicast_source_v6(d), "destination {d}");
            }
            _ => panic!("mixed families"),
        }
        match p.transport.as_ref().unwrap() {
            TransportSlice::Udp(u) => assert!(u.source_port() != 0 && u.destination_port() != 0),
            TransportSlice::Tcp(t) => {
                assert!(t.source_port() != 0 && t.destination_port() != 0);
                assert!(!t.rst(), "an RST answered");
            }
            _ => panic!("not UDP/TCP"),
        }
    }

    fn assert_tx(frame: &[u8]) {
        let mut out = frame.to_vec();
        assert_eq!(run(&mut out), Verdict::Tx);
        assert_reflected(frame, &out);
    }

    fn assert_drop(frame: &[u8], reason: DropReason) {
        let mut out = frame.to_vec();
        assert_eq!(run(&mut out), Verdict::Drop(reason), "frame {frame:02x?}");
        assert_eq!(out, frame, "a dropped frame must be left unchanged");
    }

    const ALL_CAPTURED: [&[u8]; 5] = [
        &CAPTURED_ETH_IPV4_UDP,
        &CAPTURED_ETH_IPV4_TCP_SYN,
        &CAPTURED_ETH_IPV4_TCP_DATA,
        &CAPTURED_ETH_IPV6_UDP,
        &CAPTURED_ETH_IPV6_TCP_SYN,
    ];

    #[test]
    fn reflects_captured_ipv4_udp() {
        let mut f = CAPTURED_ETH_IPV4_UDP;
        assert_eq!(run(&mut f), Verdict::Tx);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.src_addr().to_string(), "02:00:5e:10:00:02");
        assert_eq!(eth.dst_addr().to_string(), "02:00:5e:10:00:01");
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.src_addr().to_string(), "10.99.0.2");
        assert_eq!(ip.dst_addr().to_string(), "10.99.0.1");
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (4791, 37478));
        assert_eq!(udp.payload(), b"sluice reflect test");
        assert_reflected(&CAPTURED_ETH_IPV4_UDP, &f);
    }

    #[test]
    fn reflects_every_captured_udp_tcp_frame() {
        for f in ALL_CAPTURED {
            assert_tx(f);
        }
    }

    #[test]
    fn reflects_vlan_single_and_double_tags_in_place() {
        for f in ALL_CAPTURED {
            for tags in [
                &[(0x8100, 0x2064)][..],
                &[(0x88a8, 0x000a), (0x8100, 0xe014)][..],
                &[(0x9100, 7), (0x8100, 8)][..],
            ] {
                let tagged = with_tags(f, tags);
                let mut out = tagged.clone();
                assert_eq!(run(&mut out), Verdict::Tx);
                assert_eq!(
                    out[12..12 + 4 * tags.len()],
                    tagged[12..12 + 4 * tags.len()]
                );
                assert_reflected(&tagged, &out);
            }
        }
    }

    #[test]
    fn ethernet_padding_is_legal_and_untouched() {
        // A minimum-size frame: the IP packet is followed by padding bytes.
        let mut short = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000)
            .write_to_vec(&mut short, b"hi")
            .unwrap();
        assert_eq!(short.len(), 44);
        short.resize(60, 0xee);
        assert_tx(&short);
        let mut out = short.clone();
        run(&mut out);
        assert_eq!(out[44..], [0xee; 16]);

        let mut v6 = CAPTURED_ETH_IPV6_UDP.to_vec();
        v6.extend_from_slice(&[0xee; 5]);
        assert_tx(&v6);
    }

    #[test]
    fn batch_sets_each_verdict_in_order() {
        let mut a = CAPTURED_ETH_IPV4_UDP;
        let mut b = CAPTURED_ARP_REQUEST;
        let mut c = CAPTURED_ETH_IPV6_TCP_SYN;
        let mut d = [0u8; 10];
        let mut frames: [&mut [u8]; 4] = [&mut a, &mut b, &mut c, &mut d];
        let mut verdicts = [Verdict::Tx; 4];
        let mut batch = Batch::new(&mut frames, &mut verdicts);
        let mut app = Reflect::new();
        assert_eq!(app.name(), "reflect");
        app.process(&mut batch);
        assert_eq!(
            batch.verdicts(),
            [
                Verdict::Tx,
                Verdict::Drop(DropReason::NotIp),
                Verdict::Tx,
                Verdict::Drop(DropReason::Truncated)
            ]
        );
    }

    /// Patch bytes of the captured IPv4/UDP frame; offsets are from the start of the frame.
    fn v4_udp_with(patches: &[(usize, &[u8])]) -> Vec<u8> {
        let mut f = CAPTURED_ETH_IPV4_UDP.to_vec();
        for (at, bytes) in patches {
            f[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        f
    }

    #[test]
    fn truncated() {
        use DropReason::Truncated;
        for len in 0..14 {
            assert_drop(&CAPTURED_ETH_IPV4_UDP[..len], Truncated);
        }
        // Inside a tag.
        let tagged = with_tags(&CAPTURED_ETH_IPV4_UDP, &[(0x88a8, 1), (0x8100, 2)]);
        for len in 14..22 {
            assert_drop(&tagged[..len], Truncated);
        }
        // Inside the fixed IPv4 / IPv6 header.
        for len in 14..34 {
            assert_drop(&CAPTURED_ETH_IPV4_UDP[..len], Truncated);
        }
        for len in 14..54 {
            assert_drop(&CAPTURED_ETH_IPV6_UDP[..len], Truncated);
        }
        // Inside the IPv4 options: IHL 15 (60 bytes) but only 47 bytes of IP.
        assert_drop(&v4_udp_with(&[(14, &[0x4f])]), Truncated);
        // Inside the UDP / TCP header: the IP length leaves too few bytes for it.
        assert_drop(&v4_udp_with(&[(16, &[0, 27])]), Truncated); // 20 + 7
        let mut tcp = CAPTURED_ETH_IPV4_TCP_SYN;
        tcp[16..18].copy_from_slice(&39u16.to_be_bytes()); // 20 + 19
        assert_drop(&tcp, Truncated);
        let mut tcp6 = CAPTURED_ETH_IPV6_TCP_SYN;
        tcp6[18..20].copy_from_slice(&19u16.to_be_bytes());
        assert_drop(&tcp6, Truncated);
    }

    #[test]
    fn not_ip() {
        assert_drop(&CAPTURED_ARP_REQUEST, DropReason::NotIp);
        assert_drop(
            &with_tags(&CAPTURED_ARP_REQUEST, &[(0x8100, 5)]),
            DropReason::NotIp,
        );
        // Three tags: the third is not walked, so the inner type is a TPID.
        let triple = with_tags(
            &CAPTURED_ETH_IPV4_UDP,
            &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
        );
        assert_drop(&triple, DropReason::NotIp);
        // IPv4 bytes under an unknown EtherType.
        assert_drop(&v4_udp_with(&[(12, &[0x88, 0xb5])]), DropReason::NotIp);
    }

    #[test]
    fn bad_ip_header() {
        use DropReason::BadIpHeader;
        assert_drop(&v4_udp_with(&[(14, &[0x65])]), BadIpHeader); // version 6 under 0x0800
        assert_drop(&v4_udp_with(&[(14, &[0x44])]), BadIpHeader); // IHL 4
        assert_drop(&v4_udp_with(&[(14, &[0x40])]), BadIpHeader); // IHL 0
        let mut v6 = CAPTURED_ETH_IPV6_UDP;
        v6[14] = 0x45; // version 4 under 0x86dd
        assert_drop(&v6, BadIpHeader);
        // Behind tags too.
        let tagged = with_tags(&v4_udp_with(&[(14, &[0x35])]), &[(0x8100, 9)]);
        assert_drop(&tagged, BadIpHeader);
    }

    #[test]
    fn ip_length() {
        use DropReason::IpLength;
        assert_drop(&v4_udp_with(&[(16, &[0, 19])]), IpLength); // total < IHL*4
        assert_drop(&v4_udp_with(&[(16, &[0, 48])]), IpLength); // total > available
        assert_drop(&v4_udp_with(&[(16, &[0xff, 0xff])]), IpLength);
        let mut v6 = CAPTURED_ETH_IPV6_UDP;
        v6[18..20].copy_from_slice(&22u16.to_be_bytes()); // payload length past the frame
        assert_drop(&v6, IpLength);
        // A frame cut inside the UDP data: the IP length field now overshoots.
        assert_drop(&CAPTURED_ETH_IPV4_UDP[..60], IpLength);
        assert_drop(&CAPTURED_ETH_IPV6_UDP[..74], IpLength);
    }

    #[test]
    fn fragment() {
        use DropReason::Fragment;
        assert_drop(&v4_udp_with(&[(20, &[0x20, 0x00])]), Fragment); // MF, offset 0 (first)
        assert_drop(&v4_udp_with(&[(20, &[0x00, 0x01])]), Fragment); // offset 8 (last)
        assert_drop(&v4_udp_with(&[(20, &[0x3f, 0xff])]), Fragment); // DF|MF, max offset
        // DF alone is not a fragment.
        assert_tx(&v4_udp_with(&[(20, &[0x40, 0x00])]));
    }

    #[test]
    fn l4_length() {
        use DropReason::L4Length;
        assert_drop(&v4_udp_with(&[(38, &[0, 7])]), L4Length); // UDP length < 8
        assert_drop(&v4_udp_with(&[(38, &[0, 0])]), L4Length);
        assert_drop(&v4_udp_with(&[(38, &[0, 26])]), L4Length); // shorter than the IP payload
        assert_drop(&v4_udp_with(&[(38, &[0, 28])]), L4Length); // longer than the IP payload
        let mut v6 = CAPTURED_ETH_IPV6_UDP;
        v6[58..60].copy_from_slice(&20u16.to_be_bytes());
        assert_drop(&v6, L4Length);

        let mut tcp = CAPTURED_ETH_IPV4_TCP_SYN;
        tcp[46] = 0x40; // data offset 4
        assert_drop(&tcp, L4Length);
        tcp[46] = 0xb0; // data offset 11 = 44 bytes > 40-byte segment
        assert_drop(&tcp, L4Length);
        tcp[46] = 0xa0;
        assert_tx(&tcp);
        let mut tcp6 = CAPTURED_ETH_IPV6_TCP_SYN;
        tcp6[66] = 0xf0;
        assert_drop(&tcp6, L4Length);
    }

    #[test]
    fn unsupported_protocol() {
        use DropReason::UnsupportedProtocol;
        let mut icmp = CAPTURED_ETH_IPV4_UDP[..14].to_vec();
        icmp.extend_from_slice(&CAPTURED_ICMP_UNREACH);
        assert_eq!(icmp[14 + 9], IpProtocol::ICMP.0);
        assert!(
            icmpv4::Packet::new_checked(&icmp[34..])
                .unwrap()
                .verify_checksum(),
            "a real ICMP message"
        );
        assert_drop(&icmp, UnsupportedProtocol);
        // An IPv6 extension header (hop-by-hop) in front of UDP.
        let mut v6 = CAPTURED_ETH_IPV6_UDP;
        v6[20] = IpProtocol::HOP_BY_HOP.0;
        assert_drop(&v6, UnsupportedProtocol);
        // SCTP.
        assert_drop(&v4_udp_with(&[(23, &[132])]), UnsupportedProtocol);
    }

    #[test]
    fn checksums_are_verified() {
        // A UDP datagram with a wrong checksum is dropped, unchanged, as the kernel would.
        assert_drop(
            &v4_udp_with(&[(40, &[0x12, 0x34])]),
            DropReason::BadL4Checksum,
        );
        // A zero (absent) IPv4 UDP checksum is accepted and stays zero.
        let f = v4_udp_with(&[(40, &[0, 0])]);
        let mut out = f.clone();
        assert_eq!(run(&mut out), Verdict::Tx);
        assert_eq!(out[40..42], [0, 0]);
        // Over IPv6 a zero checksum is invalid.
        let mut v6 = CAPTURED_ETH_IPV6_UDP;
        v6[60..62].fill(0);
        assert_drop(&v6, DropReason::BadL4Checksum);
        // TCP too: one payload bit flipped.
        let mut tcp = CAPTURED_ETH_IPV4_TCP_DATA;
        let n = tcp.len();
        tcp[n - 1] ^= 1;
        assert_drop(&tcp, DropReason::BadL4Checksum);
        // Behind VLAN tags.
        let tagged = with_tags(&v4_udp_with(&[(40, &[0x12, 0x34])]), &[(0x8100, 3)]);
        assert_drop(&tagged, DropReason::BadL4Checksum);
    }

    /// What a sender with TX checksum offload puts in the field: the pseudo-header sum only.
    fn partial(frame: &[u8]) -> Vec<u8> {
        let mut f = frame.to_vec();
        let encap = vlan::walk(&f).unwrap();
        let l3 = encap.l3_offset;
        let (pseudo, at) = if encap.ether_type == EtherType::IPV4 {
            let ip = Ipv4Packet::new_checked(&f[l3..]).unwrap();
            let p = checksum::pseudo_header_v4(
                ip.src_addr(),
                ip.dst_addr(),
                ip.protocol(),
                ip.payload().len() as u32,
            );
            let off = if ip.protocol() == IpProtocol::UDP {
                6
            } else {
                16
            };
            (p, l3 + ip.header_len() + off)
        } else {
            let ip = Ipv6Packet::new_checked(&f[l3..]).unwrap();
            let p = checksum::pseudo_header_v6(
                &ip.src_addr(),
                &ip.dst_addr(),
                ip.next_header(),
                ip.payload().len() as u32,
            );
            let off = if ip.next_header() == IpProtocol::UDP {
                6
            } else {
                16
            };
            (p, l3 + 40 + off)
        };
        f[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
        f
    }

    #[test]
    fn partial_checksums_are_told_apart() {
        for f in ALL_CAPTURED {
            assert_drop(&partial(f), DropReason::PartialL4Checksum);
        }
        let tagged = with_tags(&CAPTURED_ETH_IPV6_UDP, &[(0x88a8, 1), (0x8100, 2)]);
        assert_drop(&partial(&tagged), DropReason::PartialL4Checksum);
    }

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
    const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x02];

    /// A UDP (or TCP, with `rst`) frame from `src`:`sport` to `dst`:9000 built by etherparse.
    fn frame(src: &str, dst: &str, sport: u16, tcp_rst: Option<bool>) -> Vec<u8> {
        use std::net::IpAddr;
        let eth = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
        let mut out = Vec::new();
        macro_rules! l4 {
            ($ip:expr) => {
                match tcp_rst {
                    None => $ip.udp(sport, 9000).write(&mut out, b"echo me"),
                    Some(false) => $ip.tcp(sport, 9000, 7, 1024).ack(9).write(&mut out, b"x"),
                    Some(true) => $ip.tcp(sport, 9000, 7, 1024).rst().write(&mut out, b""),
                }
            };
        }
        match (
            src.parse::<IpAddr>().unwrap(),
            dst.parse::<IpAddr>().unwrap(),
        ) {
            (IpAddr::V4(s), IpAddr::V4(d)) => l4!(eth.ipv4(s.octets(), d.octets(), 64)),
            (IpAddr::V6(s), IpAddr::V6(d)) => l4!(eth.ipv6(s.octets(), d.octets(), 64)),
            _ => unreachable!(),
        }
        .unwrap();
        out
    }

    /// Every kind of frame a responder must not answer, with the reason it is counted under;
    /// `10.0.0.255` is a directed broadcast of the host.
    pub(crate) fn hostile_frames() -> Vec<(&'static str, Vec<u8>, DropReason)> {
        use DropReason::*;
        let ok4 = frame("10.0.0.7", "10.0.0.1", 40000, None);
        let mut group_src = ok4.clone();
        group_src[6] |= 1;
        let mut group_dst = ok4.clone();
        group_dst[0] |= 1;
        let mut bcast_dst_mac = ok4.clone();
        bcast_dst_mac[..6].fill(0xff);
        vec![
            ("group source MAC", group_src, MartianSource),
            ("group destination MAC", group_dst, GroupDestination),
            ("broadcast destination MAC", bcast_dst_mac, GroupDestination),
            (
                "multicast source",
                frame("224.0.0.1", "10.0.0.1", 4, None),
                MartianSource,
            ),
            (
                "limited broadcast source",
                frame("255.255.255.255", "10.0.0.1", 4, None),
                MartianSource,
            ),
            (
                "directed broadcast source",
                frame("10.0.0.255", "10.0.0.1", 4, None),
                MartianSource,
            ),
            (
                "unspecified source",
                frame("0.0.0.0", "10.0.0.1", 68, None),
                MartianSource,
            ),
            (
                "this-network source",
                frame("0.1.2.3", "10.0.0.1", 68, None),
                MartianSource,
            ),
            (
                "loopback source",
                frame("127.0.0.1", "10.0.0.1", 4, None),
                MartianSource,
            ),
            (
                "IPv6 multicast source",
                frame("ff02::1", "2001:db8::1", 4, None),
                MartianSource,
            ),
            (
                "IPv6 unspecified source",
                frame("::", "2001:db8::1", 4, None),
                MartianSource,
            ),
            (
                "IPv6 loopback source",
                frame("::1", "2001:db8::1", 4, None),
                MartianSource,
            ),
            (
                "IPv4-mapped source",
                frame("::ffff:10.0.0.7", "2001:db8::1", 4, None),
                MartianSource,
            ),
            (
                "multicast destination",
                frame("10.0.0.7", "239.1.1.1", 4, None),
                GroupDestination,
            ),
            (
                "limited broadcast destination",
                frame("10.0.0.7", "255.255.255.255", 4, None),
                GroupDestination,
            ),
            (
                "directed broadcast destination",
                frame("10.0.0.7", "10.0.0.255", 4, None),
                GroupDestination,
            ),
            (
                "IPv6 multicast destination",
                frame("2001:db8::7", "ff02::1", 4, None),
                GroupDestination,
            ),
            (
                "unspecified destination",
                frame("10.0.0.7", "0.0.0.0", 4, None),
                MartianDestination,
            ),
            (
                "loopback destination",
                frame("10.0.0.7", "127.0.0.1", 4, None),
                MartianDestination,
            ),
            (
                "IPv6 loopback destination",
                frame("2001:db8::7", "::1", 4, None),
                MartianDestination,
            ),
            (
                "IPv6 unspecified destination",
                frame("2001:db8::7", "::", 4, None),
                MartianDestination,
            ),
            (
                "UDP source port 0",
                frame("10.0.0.7", "10.0.0.1", 0, None),
                PortZero,
            ),
            (
                "TCP source port 0",
                frame("10.0.0.7", "10.0.0.1", 0, Some(false)),
                PortZero,
            ),
            (
                "IPv6 UDP source port 0",
                frame("2001:db8::7", "2001:db8::1", 0, None),
                PortZero,
            ),
            (
                "TCP RST",
                frame("10.0.0.7", "10.0.0.1", 40000, Some(true)),
                TcpReset,
            ),
            (
                "IPv6 TCP RST",
                frame("2001:db8::7", "2001:db8::1", 40000, Some(true)),
                TcpReset,
            ),
            (
                "bad UDP checksum",
                {
                    let mut f = ok4.clone();
                    let n = f.len();
                    f[n - 1] ^= 0x55;
                    f
                },
                BadL4Checksum,
            ),
            ("partial UDP checksum", partial(&ok4), PartialL4Checksum),
            (
                "partial TCP checksum",
                partial(&frame("2001:db8::7", "2001:db8::1", 40000, Some(false))),
                PartialL4Checksum,
            ),
        ]
    }

    #[test]
    fn what_a_responder_must_not_answer_is_dropped_by_reason() {
        let bc = Broadcasts::from_addrs(["10.0.0.255".parse().unwrap()]);
        let mut app = Reflect::with_broadcasts(bc);
        for (what, f, reason) in hostile_frames() {
            let mut out = f.clone();
            let mut frames: [&mut [u8]; 1] = [&mut out];
            let mut verdicts = [Verdict::Tx];
            let mut batch = Batch::new(&mut frames, &mut verdicts);
            app.process(&mut batch);
            assert_eq!(batch.verdict(0), Verdict::Drop(reason), "{what}");
            assert_eq!(out, f, "{what}: a dropped frame is unchanged");
        }
        // The same frames, well-formed and unicast, are answered: TCP data included.
        for f in [
            frame("10.0.0.7", "10.0.0.1", 40000, None),
            frame("10.0.0.7", "10.0.0.1", 40000, Some(false)),
            frame("2001:db8::7", "2001:db8::1", 40000, None),
            frame("10.0.1.255", "10.0.0.1", 40000, None),
        ] {
            let mut out = f.clone();
            let mut frames: [&mut [u8]; 1] = [&mut out];
            let mut verdicts = [Verdict::Tx];
            let mut batch = Batch::new(&mut frames, &mut verdicts);
            app.process(&mut batch);
            assert_eq!(batch.verdict(0), Verdict::Tx);
            assert_reflected(&f, &out);
        }
        // Without the host's broadcasts a directed broadcast is not known to be one (no guess).
        assert_tx(&frame("10.0.0.7", "10.0.0.255", 4, None));
    }

    /// A random well-formed UDP or TCP frame built by etherparse: IPv4 or IPv6, zero to two VLAN
    /// tags, random addresses, ports, TCP flags, payload and optional Ethernet padding.
    pub(crate) fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
        (
            (
                any::<[u8; 6]>(),
                any::<[u8; 6]>(),
                0u8..3,
                0u16..4096,
                0u16..4096,
            ),
            (
                any::<bool>(),
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<u8>(),
            ),
            (
                any::<bool>(),
                any::<u16>(),
                any::<u16>(),
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
            ),
            proptest::collection::vec(any::<u8>(), 0..100),
            0usize..20,
        )
            .prop_map(
                |(
                    (sm, dm, ntags, v1, v2),
                    (v6, s, d, ttl),
                    (tcp, sp, dp, seq, ack, syn),
                    payload,
                    pad,
                )| {
                    // Unicast MACs, addresses and ports: what a responder may answer.
                    let (mut sm, mut dm, mut s, mut d) = (sm, dm, s, d);
                    sm[0] &= 0xfe;
                    dm[0] &= 0xfe;
                    s[0] = if v6 { 0x20 } else { 1 + s[0] % 126 };
                    d[0] = if v6 { 0x20 } else { 1 + d[0] % 126 };
                    let (sp, dp) = (sp.max(1), dp.max(1));
                    let eth = etherparse::PacketBuilder::ethernet2(sm, dm);
                    let vid = |v| etherparse::VlanId::try_new(v).unwrap();
                    let mut out = Vec::new();
                    macro_rules! finish {
                        ($ip:expr) => {{
                            let ip = $ip;
                            if tcp {
                                let t = ip.tcp(sp, dp, seq, 1024);
                                let t = if syn { t.syn() } else { t.ack(ack).psh() };
                                t.write(&mut out, &payload).unwrap();
                            } else {
                                ip.udp(sp, dp).write(&mut out, &payload).unwrap();
                            }
                        }};
                    }
                    macro_rules! ip {
                        ($link:expr) => {{
                            let link = $link;
                            if v6 {
                                finish!(link.ipv6(s, d, ttl))
                            } else {
                                let (s4, d4) = ([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]]);
                                finish!(link.ipv4(s4, d4, ttl))
                            }
                        }};
                    }
                    match ntags {
                        0 => ip!(eth),
                        1 => ip!(eth.single_vlan(vid(v1))),
                        _ => ip!(eth.double_vlan(vid(v1), vid(v2))),
                    }
                    out.resize(out.len() + pad, 0);
                    out
                },
            )
    }

    proptest! {
        #![proptest_config(crate::fuzz::config())]

        /// Any bytes: never panics; a dropped frame is unchanged; a reflected one reflects back.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            let mut f = bytes.clone();
            match run(&mut f) {
                Verdict::Tx => {
                    assert_safe_answer(&f);
                    prop_assert_eq!(reflect_frame(&mut f), Ok(()));
                    prop_assert_eq!(f, bytes);
                }
                Verdict::Drop(_) => prop_assert_eq!(f, bytes),
                other => prop_assert!(false, "reflect never gives {:?}", other),
            }
        }

        /// Random bytes behind a plausible Ethernet/VLAN/IP prefix, so the deeper checks are hit.
        #[test]
        fn plausible_headers_never_panic(
            et in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x88a8)],
            first in prop_oneof![Just(0x45u8), Just(0x46), Just(0x60), any::<u8>()],
            proto in prop_oneof![Just(6u8), Just(17), any::<u8>()],
            rest in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
            f.extend_from_slice(&et.to_be_bytes());
            f.push(first);
            f.extend_from_slice(&rest);
            for at in [23usize, 20] {
                if let Some(b) = f.get_mut(at) { *b = proto; }
            }
            let orig = f.clone();
            if run(&mut f) == Verdict::Tx {
                prop_assert_eq!(reflect_frame(&mut f), Ok(()));
            }
            prop_assert_eq!(f, orig);
        }

        /// Valid UDP/TCP frames reflect with swapped fields and valid checksums, and reflecting
        /// twice gives the original bytes back.
        #[test]
        fn valid_frames_reflect(frame in valid_frame()) {
            let mut out = frame.clone();
            prop_assert_eq!(run(&mut out), Verdict::Tx);
            assert_reflected(&frame, &out);
        }

        /// Valid frames with a few bytes overwritten and maybe cut short: never a panic; a
        /// dropped frame is unchanged; an answered one breaks no responder rule and reflects
        /// back to the mutated frame.
        #[test]
        fn mutated_valid_frames_never_panic(
            frame in valid_frame(),
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
            cut in proptest::option::weighted(0.2, any::<proptest::sample::Index>()),
        ) {
            let mut f = frame;
            for (at, v) in flips {
                let i = at.index(f.len());
                f[i] = v;
            }
            if let Some(c) = cut {
                f.truncate(c.index(f.len() + 1));
            }
            let orig = f.clone();
            match run(&mut f) {
                Verdict::Tx => {
                    assert_safe_answer(&f);
                    prop_assert_eq!(reflect_frame(&mut f), Ok(()));
                    prop_assert_eq!(f, orig);
                }
                Verdict::Drop(_) => prop_assert_eq!(f, orig),
                other => prop_assert!(false, "reflect never gives {:?}", other),
            }
        }

        /// Truncating a valid frame anywhere inside its headers gives a drop, never a panic, and
        /// cutting it inside the payload gives `IpLength` (the length field overshoots).
        #[test]
        fn truncated_valid_frames_drop(frame in valid_frame(), cut in any::<proptest::sample::Index>()) {
            let encap = vlan::walk(&frame).unwrap();
            let ip_total = if encap.ether_type == EtherType::IPV4 {
                usize::from(Ipv4Packet::new_checked(&frame[encap.l3_offset..]).unwrap().total_len())
            } else {
                Ipv6Packet::new_checked(&frame[encap.l3_offset..]).unwrap().total_len()
            };
            let end = encap.l3_offset + ip_total;
            let len = cut.index(end);
            let mut f = frame[..len].to_vec();
            let v = run(&mut f);
            prop_assert!(matches!(v, Verdict::Drop(DropReason::Truncated | DropReason::IpLength)), "{:?}", v);
            prop_assert_eq!(&f[..], &frame[..len]);
        }
    }
}
