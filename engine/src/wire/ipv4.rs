//! IPv4 header (RFC 791) with options, fragmentation fields and the header checksum.

use super::{
    Error, IpProtocol, Result, check_min_len, checksum_ok, packet_view, read_array, read_u16,
    store_checksum, swap_fields, write_u8_bits, write_u16, write_u16_bits,
};
use std::net::Ipv4Addr;

/// Byte ranges of the IPv4 header fields.
pub mod field {
    use crate::wire::Field;
    /// Version (high nibble) and IHL (low nibble, in 32-bit words).
    pub const VER_IHL: usize = 0;
    /// DSCP (high 6 bits) and ECN (low 2 bits).
    pub const DSCP_ECN: usize = 1;
    /// Total length of header + data.
    pub const LENGTH: Field = 2..4;
    /// Identification.
    pub const IDENT: Field = 4..6;
    /// Flags (reserved, DF, MF) and fragment offset (13 bits, 8-byte units).
    pub const FLG_OFF: Field = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol of the payload.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Field = 10..12;
    /// Source address.
    pub const SRC_ADDR: Field = 12..16;
    /// Destination address.
    pub const DST_ADDR: Field = 16..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Longest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// The version bits of [`field::VER_IHL`].
const VERSION_BITS: u8 = 0xf0;
/// The IHL bits of [`field::VER_IHL`].
const IHL_BITS: u8 = 0x0f;
/// The DSCP bits of [`field::DSCP_ECN`].
const DSCP_BITS: u8 = 0xfc;
/// The ECN bits of [`field::DSCP_ECN`].
const ECN_BITS: u8 = 0x03;

packet_view! {
    /// A view of an IPv4 packet.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Check the lengths every accessor relies on:
    ///
    /// - `Truncated`: the buffer is shorter than 20 bytes or than IHL·4;
    /// - `Malformed`: IHL < 5;
    /// - `Length`: total length < IHL·4 or > the buffer (bytes after total length, e.g.
    ///   Ethernet padding, are allowed and ignored by [`payload`](Self::payload)).
    ///
    /// The version field is not checked.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        check_min_len(buf, HEADER_LEN)?;
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        check_min_len(buf, hl)?;
        let tl = usize::from(self.total_len());
        if tl < hl || tl > buf.len() {
            return Err(Error::Length);
        }
        Ok(())
    }

    /// Version field (4 for IPv4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL · 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & IHL_BITS) * 4
    }

    /// Differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & ECN_BITS
    }

    /// Total length (header + data) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flg_off(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flg_off() & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flg_off() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flg_off() & OFFSET_MASK) << 3
    }

    /// True if this is a fragment: MF set or a nonzero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flg_off() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The options: bytes 20 to IHL·4.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// True if the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum_ok(0, &self.buffer.as_ref()[..self.header_len()])
    }

    /// The data: from IHL·4 to total length (any bytes after total length are excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The data, borrowed for the buffer's lifetime rather than the view's, so a parser can
    /// hand it to the next layer and drop the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        &T::as_ref(self.buffer)[hl..tl]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the version field (low 4 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let bits = value << 4;
        write_u8_bits(self.buffer.as_mut(), field::VER_IHL, VERSION_BITS, bits);
    }

    /// Set the header length in bytes (a multiple of 4, 20..=60; stored as IHL = len / 4).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let bits = (len / 4) as u8;
        write_u8_bits(self.buffer.as_mut(), field::VER_IHL, IHL_BITS, bits);
    }

    /// Set the DSCP (low 6 bits of `value`).
    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        write_u8_bits(self.buffer.as_mut(), field::DSCP_ECN, DSCP_BITS, value << 2);
    }

    /// Set the ECN bits (low 2 bits of `value`).
    #[inline]
    pub fn set_ecn(&mut self, value: u8) {
        write_u8_bits(self.buffer.as_mut(), field::DSCP_ECN, ECN_BITS, value);
    }

    /// Set the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Set the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Clear the flags and the fragment offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF, 0);
    }

    /// Set or clear the don't-fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let bits = if value { FLAG_DF } else { 0 };
        write_u16_bits(self.buffer.as_mut(), field::FLG_OFF, FLAG_DF, bits);
    }

    /// Set or clear the more-fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let bits = if value { FLAG_MF } else { 0 };
        write_u16_bits(self.buffer.as_mut(), field::FLG_OFF, FLAG_MF, bits);
    }

    /// Set the fragment offset in bytes (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let bits = bytes >> 3;
        write_u16_bits(self.buffer.as_mut(), field::FLG_OFF, OFFSET_MASK, bits);
    }

    /// Set the time to live.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Set the payload protocol.
    #[inline]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.0;
    }

    /// Set the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Set the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Set the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Exchange source and destination addresses in place. Leaves every checksum valid: the
    /// header checksum and the UDP/TCP pseudo-header sum both add the two addresses, and
    /// ones-complement addition is commutative.
    #[inline]
    pub fn swap_addrs(&mut self) {
        swap_fields(self.buffer.as_mut(), field::SRC_ADDR, field::DST_ADDR);
    }

    /// Compute the header checksum over IHL·4 bytes and store it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        store_checksum(&mut self.buffer.as_mut()[..hl], field::CHECKSUM, 0);
    }

    /// The options, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    /// The data, writable (IHL·4 to total length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[hl..tl]
    }
}

/// The fields of an IPv4 header without options, for building one (an ICMP error, say): callers
/// fill the struct, [`Repr::emit`] knows the field order. ECN is written as 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Length of the payload after the 20-byte header.
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// Differentiated services code point (6 bits).
    pub dscp: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag (with identification 0, an atomic datagram: RFC 6864).
    pub dont_frag: bool,
}

impl Repr {
    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header into the first 20 bytes of `packet`'s buffer, checksum included. The
    /// total length becomes 20 + `payload_len`; the payload itself is not touched.
    ///
    /// # Panics
    /// If the buffer is shorter than 20 bytes, or 20 + `payload_len` overflows the 16-bit field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let total = u16::try_from(HEADER_LEN)
            .ok()
            .and_then(|h| h.checked_add(self.payload_len))
            .expect("IPv4 total length over 65535");
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp(self.dscp);
        packet.set_ecn(0);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;
    use crate::wire::checksum;
    use crate::wire::udp::test::CAPTURED_ETH_IPV4_UDP;
    use crate::wire::{TcpPacket, UdpPacket};
    use proptest::prelude::*;

    /// Captured on a veth pair: ICMP port unreachable from 10.99.0.2 (TOS 0xc0, no DF), quoting
    /// the UDP datagram of `CAPTURED_ETH_IPV4_UDP`. IP packet only.
    pub(crate) const CAPTURED_ICMP_UNREACH: [u8; 75] = [
        0x45, 0xc0, 0x00, 0x4b, 0x1c, 0x30, 0x00, 0x00, 0x40, 0x01, 0x48, 0xfa, 0x0a, 0x63, 0x00,
        0x02, 0x0a, 0x63, 0x00, 0x01, 0x03, 0x03, 0x11, 0xf2, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00,
        0x00, 0x2f, 0xb2, 0x48, 0x40, 0x00, 0x40, 0x11, 0x73, 0xad, 0x0a, 0x63, 0x00, 0x01, 0x0a,
        0x63, 0x00, 0x02, 0x92, 0x66, 0x12, 0xb7, 0x00, 0x1b, 0xa9, 0xfc, 0x73, 0x6c, 0x75, 0x69,
        0x63, 0x65, 0x20, 0x72, 0x65, 0x66, 0x6c, 0x65, 0x63, 0x74, 0x20, 0x74, 0x65, 0x73, 0x74,
    ];

    fn captured_udp_ip() -> &'static [u8] {
        &CAPTURED_ETH_IPV4_UDP[14..]
    }

    #[test]
    fn parse() {
        let ip = Packet::new_checked(captured_udp_ip()).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!((ip.dscp(), ip.ecn()), (0, 0));
        assert_eq!(ip.total_len(), 47);
        assert_eq!(ip.ident(), 0xb248);
        assert!(ip.dont_frag() && !ip.more_frags() && !ip.is_fragment());
        assert_eq!(ip.frag_offset(), 0);
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), IpProtocol::UDP);
        assert_eq!(ip.checksum(), 0x73ad);
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 99, 0, 2));
        assert!(ip.options().is_empty());
        assert_eq!(ip.payload().len(), 27);

        for bytes in [captured_udp_ip(), &CAPTURED_ICMP_UNREACH[..]] {
            let ip = Packet::new_checked(bytes).unwrap();
            let o = etherparse::Ipv4HeaderSlice::from_slice(bytes).unwrap();
            assert_eq!(ip.version(), o.version());
            assert_eq!(ip.dscp(), o.dcp().value());
            assert_eq!(ip.ecn(), o.ecn().value());
            assert_eq!(ip.total_len(), o.total_len());
            assert_eq!(ip.ident(), o.identification());
            assert_eq!(ip.dont_frag(), o.dont_fragment());
            assert_eq!(ip.frag_offset() / 8, o.fragments_offset().value());
            assert_eq!(ip.ttl(), o.ttl());
            assert_eq!(ip.protocol().0, o.protocol().0);
            assert_eq!(ip.checksum(), o.header_checksum());
            assert_eq!(ip.checksum(), o.to_header().calc_header_checksum());
            assert_eq!(ip.src_addr(), o.source_addr());
            assert_eq!(ip.dst_addr(), o.destination_addr());
            assert!(ip.verify_checksum());
        }
    }

    #[test]
    fn emit() {
        let src = captured_udp_ip();
        let mut buf = [0xa5u8; 47];
        let mut ip = Packet::new_unchecked(&mut buf[..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_dscp(0);
        ip.set_ecn(0);
        ip.set_total_len(47);
        ip.set_ident(0xb248);
        ip.clear_flags();
        ip.set_dont_frag(true);
        ip.set_ttl(64);
        ip.set_protocol(IpProtocol::UDP);
        ip.set_src_addr(Ipv4Addr::new(10, 99, 0, 1));
        ip.set_dst_addr(Ipv4Addr::new(10, 99, 0, 2));
        ip.payload_mut().copy_from_slice(&src[20..]);
        ip.fill_checksum();
        assert_eq!(&buf[..], src);
    }

    #[test]
    fn options_and_fragments() {
        // Router-alert option (RFC 2113), as IGMP sends it; a middle fragment.
        let mut h = etherparse::Ipv4Header::new(
            8,
            1,
            etherparse::IpNumber::UDP,
            [1, 2, 3, 4],
            [5, 6, 7, 8],
        )
        .unwrap();
        h.options = [0x94, 0x04, 0x00, 0x00][..].try_into().unwrap();
        h.total_len = 32;
        h.dont_fragment = false;
        h.more_fragments = true;
        h.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend_from_slice(&[0xee; 8]);
        bytes.extend_from_slice(&[0, 0]); // trailing padding, outside total length

        let ip = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), [0x94, 0x04, 0x00, 0x00]);
        assert!(ip.more_frags() && ip.is_fragment());
        assert_eq!(ip.frag_offset(), 185 * 8);
        assert_eq!(ip.payload(), [0xee; 8]);
        assert!(ip.verify_checksum());

        let mut buf = vec![0xa5u8; 32];
        let mut e = Packet::new_unchecked(&mut buf[..]);
        e.set_version(4);
        e.set_header_len(24);
        e.set_dscp(0);
        e.set_ecn(0);
        e.set_total_len(32);
        e.set_ident(0);
        e.clear_flags();
        e.set_more_frags(true);
        e.set_frag_offset(185 * 8);
        e.set_ttl(1);
        e.set_protocol(IpProtocol::UDP);
        e.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        e.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        e.options_mut().copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        e.payload_mut().fill(0xee);
        e.fill_checksum();
        assert_eq!(buf, bytes[..32]);
    }

    #[test]
    fn check_len_errors() {
        let good = captured_udp_ip();
        assert_eq!(
            Packet::new_checked(&good[..19]).unwrap_err(),
            Error::Truncated
        );
        let mut b = good.to_vec();
        b[0] = 0x44;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[0] = 0x4f;
        assert_eq!(Packet::new_checked(&b[..40]).unwrap_err(), Error::Truncated);
        let mut b = good.to_vec();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Length);
        b[2..4].copy_from_slice(&48u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Length);
        // Padding after the packet is fine.
        let mut b = good.to_vec();
        b.extend_from_slice(&[0; 6]);
        assert_eq!(Packet::new_checked(&b[..]).unwrap().payload().len(), 27);
    }

    /// An IPv4 header generator: every field random, options a multiple of 4 bytes.
    fn header_strategy() -> impl Strategy<Value = etherparse::Ipv4Header> {
        (
            (
                0u8..64,
                0u8..4,
                any::<u16>(),
                any::<bool>(),
                any::<bool>(),
                0u16..8192,
            ),
            (any::<u8>(), any::<u8>(), any::<[u8; 4]>(), any::<[u8; 4]>()),
            (0usize..11).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 4)),
            0u16..200,
        )
            .prop_map(
                |((dscp, ecn, ident, df, mf, off), (ttl, proto, s, d), opts, plen)| {
                    let mut h =
                        etherparse::Ipv4Header::new(plen, ttl, etherparse::IpNumber(proto), s, d)
                            .unwrap();
                    h.dscp = etherparse::IpDscp::try_new(dscp).unwrap();
                    h.ecn = etherparse::IpEcn::try_new(ecn).unwrap();
                    h.identification = ident;
                    h.dont_fragment = df;
                    h.more_fragments = mf;
                    h.fragment_offset = etherparse::IpFragOffset::try_new(off).unwrap();
                    h.options = opts[..].try_into().unwrap();
                    h.total_len = (h.header_len() + usize::from(plen)) as u16;
                    h.header_checksum = h.calc_header_checksum();
                    h
                },
            )
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100), vihl in 0x40u8..0x50) {
            let mut bytes = bytes;
            if let Some(b) = bytes.first_mut() { *b = vihl; }
            if let Ok(ip) = Packet::new_checked(&bytes[..]) {
                let _ = (ip.version(), ip.dscp(), ip.ecn(), ip.ident(), ip.frag_offset(), ip.ttl());
                let _ = (ip.protocol(), ip.src_addr(), ip.dst_addr(), ip.options(), ip.payload());
                let _ = ip.verify_checksum();
                let o = etherparse::Ipv4HeaderSlice::from_slice(&bytes).unwrap();
                prop_assert_eq!(ip.options(), o.options());
                prop_assert_eq!(ip.total_len(), o.total_len());
            }
        }

        #[test]
        fn parse_emit_round_trip(h in header_strategy(), payload_byte in any::<u8>()) {
            let oracle = h.to_bytes();
            let total = usize::from(h.total_len);
            let mut expect = oracle.to_vec();
            expect.resize(total, payload_byte);

            // Parse what etherparse wrote.
            let ip = Packet::new_checked(&expect[..]).unwrap();
            prop_assert_eq!(ip.header_len(), h.header_len());
            prop_assert_eq!(ip.dscp(), h.dscp.value());
            prop_assert_eq!(ip.ecn(), h.ecn.value());
            prop_assert_eq!(ip.ident(), h.identification);
            prop_assert_eq!((ip.dont_frag(), ip.more_frags()), (h.dont_fragment, h.more_fragments));
            prop_assert_eq!(ip.frag_offset(), h.fragment_offset.value() << 3);
            prop_assert_eq!(ip.ttl(), h.time_to_live);
            prop_assert_eq!(ip.protocol().0, h.protocol.0);
            prop_assert_eq!(ip.src_addr().octets(), h.source);
            prop_assert_eq!(ip.dst_addr().octets(), h.destination);
            prop_assert_eq!(ip.options(), h.options.as_slice());
            prop_assert!(ip.verify_checksum());

            // Emit the same fields into 0xa5 and get etherparse's bytes back.
            let mut buf = vec![0xa5u8; total];
            let mut e = Packet::new_unchecked(&mut buf[..]);
            e.set_version(4);
            e.set_header_len(h.header_len());
            e.set_dscp(h.dscp.value());
            e.set_ecn(h.ecn.value());
            e.set_total_len(h.total_len);
            e.set_ident(h.identification);
            e.clear_flags();
            e.set_dont_frag(h.dont_fragment);
            e.set_more_frags(h.more_fragments);
            e.set_frag_offset(h.fragment_offset.value() << 3);
            e.set_ttl(h.time_to_live);
            e.set_protocol(IpProtocol(h.protocol.0));
            e.set_src_addr(h.source.into());
            e.set_dst_addr(h.destination.into());
            e.options_mut().copy_from_slice(h.options.as_slice());
            e.payload_mut().fill(payload_byte);
            e.fill_checksum();
            prop_assert_eq!(buf, expect);
        }

        /// NAT-style rewrites on random UDP/TCP packets: the RFC 1624 update of the IP header
        /// checksum and of the L4 checksum equals a full recomputation.
        #[test]
        fn incremental_update_equals_recompute(
            tcp in any::<bool>(),
            s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>(),
            ttl in 1u8.., payload in proptest::collection::vec(any::<u8>(), 0..64),
            new_addr in any::<[u8; 4]>(), new_port in any::<u16>(), new_ttl in any::<u8>(),
            which in 0u8..4,
        ) {
            let b = etherparse::PacketBuilder::ipv4(s, d, ttl);
            let mut pkt = Vec::new();
            if tcp {
                b.tcp(sp, dp, 1, 1000).write_to_vec(&mut pkt, &payload)
            } else {
                b.udp(sp, dp).write_to_vec(&mut pkt, &payload)
            }.unwrap();
            let mut ip = Packet::new_checked(&mut pkt[..]).unwrap();
            let (old_src, hc) = (ip.src_addr().octets(), ip.checksum());
            let old_ttl_word = u16::from_be_bytes([ip.ttl(), ip.protocol().0]);
            let l4_ck = |p: &[u8]| if tcp {
                TcpPacket::new_checked(p).unwrap().checksum()
            } else {
                UdpPacket::new_checked(p).unwrap().checksum()
            };
            let l4_old = l4_ck(ip.payload());
            // RFC 768: a computed UDP checksum of 0 is sent as 0xffff; the arithmetic is the same.
            prop_assume!(tcp || l4_old != 0xffff);

            let (ip_inc, l4_inc) = match which {
                0 => {
                    ip.set_src_addr(new_addr.into());
                    (checksum::update_addr4(hc, old_src, new_addr), checksum::update_addr4(l4_old, old_src, new_addr))
                }
                1 => {
                    ip.set_ttl(new_ttl);
                    let new_word = u16::from_be_bytes([new_ttl, ip.protocol().0]);
                    (checksum::update_word(hc, old_ttl_word, new_word), l4_old)
                }
                _ => {
                    let old_port;
                    if tcp {
                        let mut t = TcpPacket::new_checked(ip.payload_mut()).unwrap();
                        old_port = t.dst_port();
                        t.set_dst_port(new_port);
                    } else {
                        let mut u = UdpPacket::new_checked(ip.payload_mut()).unwrap();
                        old_port = u.dst_port();
                        u.set_dst_port(new_port);
                    }
                    (hc, checksum::update_word(l4_old, old_port, new_port))
                }
            };
            ip.fill_checksum();
            prop_assert_eq!(ip_inc, ip.checksum());
            let (src, dst, proto, len) = (ip.src_addr(), ip.dst_addr(), ip.protocol(), ip.payload().len() as u32);
            let ph = checksum::pseudo_header_v4(src, dst, proto, len);
            let full = if tcp {
                let mut t = TcpPacket::new_checked(ip.payload_mut()).unwrap();
                t.fill_checksum(ph);
                t.checksum()
            } else {
                let mut u = UdpPacket::new_checked(ip.payload_mut()).unwrap();
                u.fill_checksum(ph);
                u.checksum()
            };
            if tcp || l4_inc != 0 {
                prop_assert_eq!(l4_inc, full);
            } else {
                // The one UDP special case: the arithmetic result 0 is transmitted as 0xffff.
                prop_assert_eq!(full, 0xffff);
            }
        }
    }

    #[test]
    fn repr_emit_matches_etherparse() {
        let repr = Repr {
            src_addr: Ipv4Addr::new(10, 99, 0, 2),
            dst_addr: Ipv4Addr::new(10, 99, 0, 1),
            protocol: IpProtocol::ICMP,
            payload_len: 36,
            ttl: 64,
            dscp: 48,
            ident: 0x1234,
            dont_frag: true,
        };
        let mut buf = [0xa5u8; HEADER_LEN + 4];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(
            buf[HEADER_LEN..],
            [0xa5; 4],
            "nothing written past the header"
        );
        let mut o = etherparse::Ipv4Header::new(
            36,
            64,
            etherparse::IpNumber::ICMP,
            [10, 99, 0, 2],
            [10, 99, 0, 1],
        )
        .unwrap();
        o.dscp = etherparse::IpDscp::try_new(48).unwrap();
        o.identification = 0x1234;
        o.dont_fragment = true;
        o.header_checksum = o.calc_header_checksum();
        assert_eq!(buf[..HEADER_LEN], o.to_bytes()[..]);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        assert!(Packet::new_unchecked(&buf[..HEADER_LEN]).verify_checksum());
    }
}
