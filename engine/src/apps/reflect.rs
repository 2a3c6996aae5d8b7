//! The `reflect` app: send every valid UDP/TCP frame back where it came from.
//!
//! Per frame: parse Ethernet, up to two VLAN tags (kept in place), IPv4 or IPv6, then UDP or TCP;
//! validate lengths; swap MAC addresses, IP addresses and ports in place; verdict `Tx`. Anything
//! else is dropped with the [`DropReason`] documented in [`crate::apps`], and a dropped frame is
//! left byte-for-byte unchanged. The frame length never changes.
//!
//! # Why no checksum is touched
//!
//! Swapping is checksum-neutral. The IPv4 header checksum and the UDP/TCP checksum are
//! ones-complement sums of 16-bit words, and the two addresses appear in them (the latter through
//! the pseudo-header) only as summands; exchanging source and destination, or the two ports,
//! permutes the summands, and ones-complement addition is commutative and associative. Every
//! checksum field stays exactly what it was and stays valid if it was valid (the tests recompute
//! all of them with etherparse to show it). So the reflector neither verifies nor rewrites an L4
//! checksum: a corrupt datagram goes back just as corrupt, and its sender's stack drops it.
//!
//! This module must never allocate, log, block or panic: it runs in the worker's hot loop. Every
//! access goes through the checked views in [`crate::wire`].

use super::{App, Batch, DropReason, Verdict};
use crate::wire::{
    self, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, ipv4,
    ipv6, vlan,
};

/// Reflects UDP and TCP frames back to their sender (MACs, IPs and ports swapped).
#[derive(Debug, Default, Clone, Copy)]
pub struct Reflect {
    _private: (),
}

impl Reflect {
    /// A new reflector. It has no state.
    pub const fn new() -> Self {
        Reflect { _private: () }
    }
}

impl App for Reflect {
    fn name(&self) -> &'static str {
        "reflect"
    }

    #[inline]
    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        for (frame, verdict) in batch.iter_mut() {
            *verdict = match reflect_frame(frame) {
                Ok(()) => Verdict::Tx,
                Err(reason) => Verdict::Drop(reason),
            };
        }
    }
}

/// Validate one Ethernet frame and, if it is a well-formed unfragmented UDP or TCP packet over
/// IPv4 or IPv6 (optionally behind one or two VLAN tags), swap its MAC addresses, IP addresses
/// and ports in place. On error the frame is unchanged.
///
/// Checks, in order (the first failure wins): Ethernet header and tags present (`Truncated`);
/// EtherType IPv4/IPv6 (`NotIp`); fixed IP header present (`Truncated`); version, and IHL ≥ 5
/// (`BadIpHeader`); IPv4 options present (`Truncated`); IPv4 total length within
/// [IHL·4, available] or IPv6 payload length ≤ available (`IpLength`); not an IPv4 fragment
/// (`Fragment`); UDP or TCP (`UnsupportedProtocol`); L4 header present in the IP payload
/// (`Truncated`); UDP length ≥ 8 and equal to the IP payload length, TCP data offset ≥ 5 and
/// within the IP payload (`L4Length`).
#[inline]
pub fn reflect_frame(frame: &mut [u8]) -> Result<(), DropReason> {
    let encap = vlan::walk(frame).map_err(|_| DropReason::Truncated)?;
    let l3 = frame
        .get_mut(encap.l3_offset..)
        .ok_or(DropReason::Truncated)?;
    match encap.ether_type {
        EtherType::IPV4 => reflect_ipv4(l3)?,
        EtherType::IPV6 => reflect_ipv6(l3)?,
        _ => return Err(DropReason::NotIp),
    }
    // `walk` has checked that the frame holds a whole Ethernet header.
    EthernetFrame::new_unchecked(frame).swap_addrs();
    Ok(())
}

/// IPv4 part of [`reflect_frame`]: validate, reflect the L4 ports, swap the addresses.
#[inline]
fn reflect_ipv4(l3: &mut [u8]) -> Result<(), DropReason> {
    if l3.len() < ipv4::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    // Length established above; the version decides how to read the rest, so it comes before
    // the IHL/total-length checks of `check_len`.
    let mut ip = Ipv4Packet::new_unchecked(l3);
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
    let protocol = ip.protocol();
    reflect_l4(protocol, ip.payload_mut())?;
    ip.swap_addrs();
    Ok(())
}

/// IPv6 part of [`reflect_frame`]: validate, reflect the L4 ports, swap the addresses.
#[inline]
fn reflect_ipv6(l3: &mut [u8]) -> Result<(), DropReason> {
    if l3.len() < ipv6::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let mut ip = Ipv6Packet::new_unchecked(l3);
    if ip.version() != 6 {
        return Err(DropReason::BadIpHeader);
    }
    // With 40 bytes present the only failure left is a payload length past the frame.
    ip.check_len().map_err(|_| DropReason::IpLength)?;
    let next_header = ip.next_header();
    reflect_l4(next_header, ip.payload_mut())?;
    ip.swap_addrs();
    Ok(())
}

/// L4 part of [`reflect_frame`]: `segment` is exactly the IP payload (padding excluded).
#[inline]
fn reflect_l4(protocol: IpProtocol, segment: &mut [u8]) -> Result<(), DropReason> {
    let available = segment.len();
    let l4_err = |e: wire::Error| match e {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::Malformed | wire::Error::Length => DropReason::L4Length,
    };
    match protocol {
        IpProtocol::UDP => {
            let mut udp = UdpPacket::new_checked(segment).map_err(l4_err)?;
            if usize::from(udp.len()) != available {
                return Err(DropReason::L4Length);
            }
            udp.swap_ports();
        }
        IpProtocol::TCP => {
            let mut tcp = TcpPacket::new_checked(segment).map_err(l4_err)?;
            tcp.swap_ports();
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok(())
}

#[cfg(test)]
mod test {
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
    fn checksums_are_not_verified() {
        // A UDP datagram with a wrong checksum is reflected as is (no per-frame checksum cost);
        // its field is untouched.
        let f = v4_udp_with(&[(40, &[0x12, 0x34])]);
        let mut out = f.clone();
        assert_eq!(run(&mut out), Verdict::Tx);
        assert_eq!(out[40..42], [0x12, 0x34]);
        // A zero (absent) IPv4 UDP checksum stays zero.
        let f = v4_udp_with(&[(40, &[0, 0])]);
        let mut out = f.clone();
        assert_eq!(run(&mut out), Verdict::Tx);
        assert_eq!(out[40..42], [0, 0]);
    }

    /// A random well-formed UDP or TCP frame built by etherparse: IPv4 or IPv6, zero to two VLAN
    /// tags, random addresses, ports, TCP flags, payload and optional Ethernet padding.
    fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
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
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any bytes: never panics; a dropped frame is unchanged; a reflected one reflects back.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            let mut f = bytes.clone();
            match run(&mut f) {
                Verdict::Tx => {
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
