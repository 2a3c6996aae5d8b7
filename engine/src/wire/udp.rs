//! UDP header (RFC 768).

use super::{
    Error, Result, check_min_len, checksum_ok, packet_view, read_u16, store_checksum, swap_fields,
    write_u16,
};

/// Byte ranges of the UDP header fields.
pub mod field {
    use crate::wire::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Length of header + data.
    pub const LENGTH: Field = 4..6;
    /// Checksum over pseudo-header, header and data (0 = none, IPv4 only).
    pub const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

packet_view! {
    /// A view of a UDP datagram.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Truncated` if the buffer is shorter than 8 bytes; `Malformed` if the length field is
    /// below 8; `Length` if it reaches past the buffer. A length field *shorter* than the buffer
    /// is accepted here (the caller decides whether that is an error; the reflector says it is).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        check_min_len(buf, HEADER_LEN)?;
        let l = usize::from(self.len());
        if l < HEADER_LEN {
            Err(Error::Malformed)
        } else if l > buf.len() {
            Err(Error::Length)
        } else {
            Ok(())
        }
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + data).
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a header field, not a container length
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// True if the checksum over `pseudo` (from
    /// [`checksum::pseudo_header_v4`](super::checksum::pseudo_header_v4) or
    /// [`checksum::pseudo_header_v6`](super::checksum::pseudo_header_v6), with
    /// the UDP length) and the datagram is correct.
    ///
    /// Purely arithmetic: over IPv4 a checksum field of 0 means "not computed" and the caller
    /// must test `checksum() == 0` first; over IPv6 a zero checksum is invalid.
    #[inline]
    pub fn verify_checksum(&self, pseudo: u16) -> bool {
        checksum_ok(pseudo, &self.buffer.as_ref()[..usize::from(self.len())])
    }

    /// The data: from byte 8 to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Set the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Set the length field.
    #[inline]
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Exchange source and destination ports in place (checksum-neutral: both are summed).
    #[inline]
    pub fn swap_ports(&mut self) {
        swap_fields(self.buffer.as_mut(), field::SRC_PORT, field::DST_PORT);
    }

    /// Compute the checksum over `pseudo` and the datagram and store it; a computed 0 is stored
    /// as 0xffff (RFC 768), since 0 means "no checksum".
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u16) {
        let len = usize::from(self.len());
        if store_checksum(&mut self.buffer.as_mut()[..len], field::CHECKSUM, pseudo) == 0 {
            self.set_checksum(0xffff);
        }
    }

    /// The data, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;
    use crate::wire::IpProtocol;
    use crate::wire::checksum;
    use crate::wire::ipv6::test::CAPTURED_ETH_IPV6_UDP;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Captured on a veth pair: UDP over IPv4, 10.99.0.1.37478 → 10.99.0.2.4791, DF, TTL 64,
    /// "sluice reflect test" (19 bytes), UDP checksum 0xa9fc.
    pub(crate) const CAPTURED_ETH_IPV4_UDP: [u8; 61] = [
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x2f, 0xb2, 0x48, 0x40, 0x00, 0x40, 0x11, 0x73, 0xad, 0x0a, 0x63, 0x00, 0x01,
        0x0a, 0x63, 0x00, 0x02, 0x92, 0x66, 0x12, 0xb7, 0x00, 0x1b, 0xa9, 0xfc, 0x73, 0x6c, 0x75,
        0x69, 0x63, 0x65, 0x20, 0x72, 0x65, 0x66, 0x6c, 0x65, 0x63, 0x74, 0x20, 0x74, 0x65, 0x73,
        0x74,
    ];

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    fn udp_bytes() -> &'static [u8] {
        &CAPTURED_ETH_IPV4_UDP[34..]
    }

    #[test]
    fn parse() {
        let udp = Packet::new_checked(udp_bytes()).unwrap();
        assert_eq!(udp.src_port(), 37478);
        assert_eq!(udp.dst_port(), 4791);
        assert_eq!(udp.len(), 27);
        assert_eq!(udp.checksum(), 0xa9fc);
        assert_eq!(udp.payload(), b"sluice reflect test");
        let ph = checksum::pseudo_header_v4(SRC, DST, IpProtocol::UDP, 27);
        assert!(udp.verify_checksum(ph));
        assert!(!udp.verify_checksum(checksum::add(ph, 1)));

        let o = etherparse::UdpSlice::from_slice(udp_bytes()).unwrap();
        assert_eq!(
            (udp.src_port(), udp.dst_port(), udp.len(), udp.checksum()),
            (
                o.source_port(),
                o.destination_port(),
                o.length(),
                o.checksum()
            )
        );
        assert_eq!(udp.payload(), o.payload());

        // Over IPv6.
        let v6 = &CAPTURED_ETH_IPV6_UDP[14..];
        let ip = crate::wire::Ipv6Packet::new_checked(v6).unwrap();
        let udp = Packet::new_checked(ip.payload()).unwrap();
        let ph = checksum::pseudo_header_v6(&ip.src_addr(), &ip.dst_addr(), IpProtocol::UDP, 21);
        assert!(udp.verify_checksum(ph));
        assert_eq!(udp.payload(), b"sluice v6 udp");
    }

    #[test]
    fn emit() {
        let mut buf = [0xa5u8; 27];
        let mut udp = Packet::new_unchecked(&mut buf[..]);
        udp.set_src_port(37478);
        udp.set_dst_port(4791);
        udp.set_len(27);
        udp.payload_mut().copy_from_slice(b"sluice reflect test");
        udp.fill_checksum(checksum::pseudo_header_v4(SRC, DST, IpProtocol::UDP, 27));
        assert_eq!(&buf[..], udp_bytes());
    }

    #[test]
    fn check_len_errors() {
        let good = udp_bytes();
        assert_eq!(
            Packet::new_checked(&good[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(Packet::new_checked(&good[..26]).unwrap_err(), Error::Length);
        let mut b = good.to_vec();
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).unwrap().payload().is_empty());
    }

    #[test]
    fn zero_sum_is_sent_as_ffff() {
        // Find a source port for which the computed checksum is 0: the field must read 0xffff.
        let ph = checksum::pseudo_header_v4(SRC, DST, IpProtocol::UDP, 8);
        let mut buf = [0u8; 8];
        let mut udp = Packet::new_unchecked(&mut buf[..]);
        udp.set_dst_port(0);
        udp.set_len(8);
        // sum = ph + sport + 8 must be 0xffff: sport = 0xffff - (ph + 8) in ones complement.
        let sport = !checksum::add(ph, 8);
        udp.set_src_port(sport);
        udp.fill_checksum(ph);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(ph));
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), ph in any::<u16>()) {
            if let Ok(u) = Packet::new_checked(&bytes[..]) {
                let _ = (u.src_port(), u.dst_port(), u.checksum(), u.payload(), u.verify_checksum(ph));
            }
        }

        #[test]
        fn round_trip(s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>(),
                      payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut h = etherparse::UdpHeader::without_ipv4_checksum(sp, dp, payload.len()).unwrap();
            h.checksum = h.calc_checksum_ipv4_raw(s, d, &payload).unwrap();
            let mut expect = h.to_bytes().to_vec();
            expect.extend_from_slice(&payload);

            let mut buf = vec![0xa5u8; expect.len()];
            let mut u = Packet::new_unchecked(&mut buf[..]);
            u.set_src_port(sp);
            u.set_dst_port(dp);
            u.set_len(expect.len() as u16);
            u.payload_mut().copy_from_slice(&payload);
            let ph = checksum::pseudo_header_v4(s.into(), d.into(), IpProtocol::UDP, expect.len() as u32);
            u.fill_checksum(ph);
            prop_assert_eq!(&buf, &expect);

            let u = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(u.verify_checksum(ph));
            prop_assert_eq!((u.src_port(), u.dst_port()), (sp, dp));
            prop_assert_eq!(u.payload(), &payload[..]);
        }
    }
}
