//! IPv6 fixed header (RFC 8200). Extension headers are not walked: `next_header` names the first
//! one and [`Packet::payload`] starts at it.

use super::{
    Error, IpProtocol, Result, check_min_len, packet_view, read_array, read_u16, read_u32,
    swap_fields, write_u16, write_u32_bits,
};
use std::net::Ipv6Addr;

/// Byte ranges of the IPv6 header fields.
pub mod field {
    use crate::wire::Field;
    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Field = 0..4;
    /// Payload length: everything after the fixed header, extension headers included.
    pub const LENGTH: Field = 4..6;
    /// Next header.
    pub const NXT_HDR: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC_ADDR: Field = 8..24;
    /// Destination address.
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The version bits of [`field::VER_TC_FLOW`].
const VERSION_BITS: u32 = 0xf000_0000;
/// The traffic class bits of [`field::VER_TC_FLOW`].
const TRAFFIC_CLASS_BITS: u32 = 0x0ff0_0000;
/// The flow label bits of [`field::VER_TC_FLOW`].
const FLOW_LABEL_BITS: u32 = 0x000f_ffff;

packet_view! {
    /// A view of an IPv6 packet.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Truncated` if the buffer is shorter than the 40-byte header; `Length` if the payload
    /// length reaches past the buffer (bytes after it, e.g. Ethernet padding, are allowed). The
    /// version field is not checked.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_min_len(self.buffer.as_ref(), HEADER_LEN)?;
        if self.total_len() > self.buffer.as_ref().len() {
            Err(Error::Length)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// Version field (6 for IPv6).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class (DSCP + ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & FLOW_LABEL_BITS
    }

    /// Payload length (after the 40-byte header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Header length plus payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header: the upper-layer protocol or the first extension header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The payload: `payload_len` bytes after the header (any bytes after it excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, borrowed for the buffer's lifetime rather than the view's, so a parser can
    /// hand it to the next layer and drop the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = self.total_len();
        &T::as_ref(self.buffer)[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_ver_tc_flow_bits(&mut self, mask: u32, bits: u32) {
        write_u32_bits(self.buffer.as_mut(), field::VER_TC_FLOW, mask, bits);
    }

    /// Set the version field (low 4 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        self.set_ver_tc_flow_bits(VERSION_BITS, u32::from(value) << 28);
    }

    /// Set the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        self.set_ver_tc_flow_bits(TRAFFIC_CLASS_BITS, u32::from(value) << 20);
    }

    /// Set the flow label (low 20 bits of `value`).
    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        self.set_ver_tc_flow_bits(FLOW_LABEL_BITS, value);
    }

    /// Set the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Set the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.0;
    }

    /// Set the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Set the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Set the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Exchange source and destination addresses in place. Checksum-neutral: the upper-layer
    /// pseudo-header sum adds both addresses and ones-complement addition is commutative.
    #[inline]
    pub fn swap_addrs(&mut self) {
        swap_fields(self.buffer.as_mut(), field::SRC_ADDR, field::DST_ADDR);
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fields of an IPv6 fixed header, for building one (an ICMPv6 error, say). Traffic class
/// and flow label are written as 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Length of everything after the 40-byte header.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Repr {
    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header into the first 40 bytes of `packet`'s buffer; the payload is not
    /// touched.
    ///
    /// # Panics
    /// If the buffer is shorter than 40 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version(6);
        packet.set_traffic_class(0);
        packet.set_flow_label(0);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src_addr);
        packet.set_dst_addr(&self.dst_addr);
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;
    use proptest::prelude::*;

    /// Captured on a veth pair: UDP over IPv6, fd00:99::1.51212 → fd00:99::2.4791, flow label
    /// 0x2e733, "sluice v6 udp".
    pub(crate) const CAPTURED_ETH_IPV6_UDP: [u8; 75] = [
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x02, 0xe7, 0x33, 0x00, 0x15, 0x11, 0x40, 0xfd, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc8, 0x0c, 0x12, 0xb7, 0x00, 0x15,
        0xa1, 0x93, 0x73, 0x6c, 0x75, 0x69, 0x63, 0x65, 0x20, 0x76, 0x36, 0x20, 0x75, 0x64, 0x70,
    ];

    #[test]
    fn parse() {
        let bytes = &CAPTURED_ETH_IPV6_UDP[14..];
        let ip = Packet::new_checked(bytes).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0);
        assert_eq!(ip.flow_label(), 0x2e733);
        assert_eq!(ip.payload_len(), 21);
        assert_eq!(ip.next_header(), IpProtocol::UDP);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.src_addr(), "fd00:99::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "fd00:99::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.payload().len(), 21);

        let o = etherparse::Ipv6HeaderSlice::from_slice(bytes).unwrap();
        assert_eq!(ip.traffic_class(), o.traffic_class());
        assert_eq!(ip.flow_label(), o.flow_label().value());
        assert_eq!(ip.payload_len(), o.payload_length());
        assert_eq!(ip.next_header().0, o.next_header().0);
        assert_eq!(ip.hop_limit(), o.hop_limit());
        assert_eq!(ip.src_addr(), o.source_addr());
        assert_eq!(ip.dst_addr(), o.destination_addr());
    }

    #[test]
    fn emit() {
        let src = &CAPTURED_ETH_IPV6_UDP[14..];
        let mut buf = [0xa5u8; 61];
        let mut ip = Packet::new_unchecked(&mut buf[..]);
        ip.set_version(6);
        ip.set_traffic_class(0);
        ip.set_flow_label(0x2e733);
        ip.set_payload_len(21);
        ip.set_next_header(IpProtocol::UDP);
        ip.set_hop_limit(64);
        ip.set_src_addr(&"fd00:99::1".parse().unwrap());
        ip.set_dst_addr(&"fd00:99::2".parse().unwrap());
        ip.payload_mut().copy_from_slice(&src[40..]);
        assert_eq!(&buf[..], src);
    }

    #[test]
    fn check_len_errors() {
        let good = &CAPTURED_ETH_IPV6_UDP[14..];
        assert_eq!(
            Packet::new_checked(&good[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(Packet::new_checked(&good[..60]).unwrap_err(), Error::Length);
        let mut padded = good.to_vec();
        padded.extend_from_slice(&[0; 3]);
        assert_eq!(
            Packet::new_checked(&padded[..]).unwrap().payload().len(),
            21
        );
    }

    #[test]
    fn swap() {
        let mut b = CAPTURED_ETH_IPV6_UDP;
        let mut ip = Packet::new_checked(&mut b[14..]).unwrap();
        ip.swap_addrs();
        assert_eq!(ip.src_addr(), "fd00:99::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "fd00:99::1".parse::<Ipv6Addr>().unwrap());
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(ip) = Packet::new_checked(&bytes[..]) {
                let _ = (ip.version(), ip.traffic_class(), ip.flow_label(), ip.next_header());
                let _ = (ip.hop_limit(), ip.src_addr(), ip.dst_addr(), ip.payload());
                prop_assert!(ip.total_len() <= bytes.len());
            }
        }

        #[test]
        fn round_trip(tc in any::<u8>(), flow in 0u32..0x10_0000, nh in any::<u8>(), hl in any::<u8>(),
                      s in any::<[u8; 16]>(), d in any::<[u8; 16]>(), plen in 0u16..64) {
            let oracle = etherparse::Ipv6Header {
                traffic_class: tc,
                flow_label: etherparse::Ipv6FlowLabel::try_new(flow).unwrap(),
                payload_length: plen,
                next_header: etherparse::IpNumber(nh),
                hop_limit: hl,
                source: s,
                destination: d,
            }
            .to_bytes();
            let mut buf = [0xa5u8; HEADER_LEN];
            let mut ip = Packet::new_unchecked(&mut buf[..]);
            ip.set_version(6);
            ip.set_traffic_class(tc);
            ip.set_flow_label(flow);
            ip.set_payload_len(plen);
            ip.set_next_header(IpProtocol(nh));
            ip.set_hop_limit(hl);
            ip.set_src_addr(&s.into());
            ip.set_dst_addr(&d.into());
            prop_assert_eq!(&buf[..], &oracle[..]);
            let ip = Packet::new_unchecked(&buf[..]);
            prop_assert_eq!((ip.traffic_class(), ip.flow_label(), ip.payload_len()), (tc, flow, plen));
            prop_assert_eq!((ip.next_header().0, ip.hop_limit()), (nh, hl));
            prop_assert_eq!((ip.src_addr().octets(), ip.dst_addr().octets()), (s, d));
        }

        /// Rewriting an IPv6 address: the RFC 1624 16-byte update of the UDP/TCP checksum equals
        /// a full recomputation.
        #[test]
        fn incremental_addr_update(tcp in any::<bool>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>(),
                                   new in any::<[u8; 16]>(), payload in proptest::collection::vec(any::<u8>(), 0..40)) {
            let b = etherparse::PacketBuilder::ipv6(s, d, 64);
            let mut pkt = Vec::new();
            if tcp { b.tcp(1, 2, 3, 4).write_to_vec(&mut pkt, &payload) } else { b.udp(1, 2).write_to_vec(&mut pkt, &payload) }.unwrap();
            let ck_at = if tcp { 16 } else { 6 };
            let mut ip = Packet::new_checked(&mut pkt[..]).unwrap();
            let old = u16::from_be_bytes([ip.payload()[ck_at], ip.payload()[ck_at + 1]]);
            prop_assume!(tcp || old != 0xffff);
            let inc = crate::wire::checksum::update_addr16(old, &s, &new);
            ip.set_src_addr(&new.into());
            let ph = crate::wire::checksum::pseudo_header_v6(&ip.src_addr(), &ip.dst_addr(), ip.next_header(), u32::from(ip.payload_len()));
            let full = if tcp {
                let mut t = crate::wire::TcpPacket::new_checked(ip.payload_mut()).unwrap();
                t.fill_checksum(ph);
                t.checksum()
            } else {
                let mut u = crate::wire::UdpPacket::new_checked(ip.payload_mut()).unwrap();
                u.fill_checksum(ph);
                u.checksum()
            };
            if tcp || inc != 0 { prop_assert_eq!(inc, full); } else { prop_assert_eq!(full, 0xffff); }
        }
    }

    #[test]
    fn repr_emit_matches_etherparse() {
        let (s, d): (Ipv6Addr, Ipv6Addr) =
            ("fd00:99::2".parse().unwrap(), "fd00:99::1".parse().unwrap());
        let repr = Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::ICMPV6,
            payload_len: 77,
            hop_limit: 64,
        };
        let mut buf = [0xa5u8; HEADER_LEN + 4];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(
            buf[HEADER_LEN..],
            [0xa5; 4],
            "nothing written past the header"
        );
        let o = etherparse::Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: 77,
            next_header: etherparse::IpNumber::IPV6_ICMP,
            hop_limit: 64,
            source: s.octets(),
            destination: d.octets(),
        };
        assert_eq!(buf[..HEADER_LEN], o.to_bytes());
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }
}
