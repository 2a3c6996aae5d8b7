//! TCP header (RFC 9293) with its data offset and options. The view's buffer must be exactly the
//! segment (the IP payload): TCP has no length field of its own, so the checksum and
//! [`Packet::payload`] run to the end of the buffer.

use super::{
    Error, Result, check_min_len, checksum_ok, packet_view, read_u16, read_u32, store_checksum,
    swap_fields, write_u16, write_u16_bits, write_u32,
};

/// Byte ranges of the TCP header fields.
pub mod field {
    use crate::wire::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Sequence number.
    pub const SEQ_NUM: Field = 4..8;
    /// Acknowledgment number.
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (high 4 bits, 32-bit words), reserved bits, flags.
    pub const FLAGS: Field = 12..14;
    /// Window size.
    pub const WIN_SIZE: Field = 14..16;
    /// Checksum over pseudo-header, header and data.
    pub const CHECKSUM: Field = 16..18;
    /// Urgent pointer.
    pub const URGENT: Field = 18..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// FIN flag bit in [`Packet::flags`].
pub const FLAG_FIN: u16 = 0x001;
/// SYN flag bit.
pub const FLAG_SYN: u16 = 0x002;
/// RST flag bit.
pub const FLAG_RST: u16 = 0x004;
/// PSH flag bit.
pub const FLAG_PSH: u16 = 0x008;
/// ACK flag bit.
pub const FLAG_ACK: u16 = 0x010;
/// URG flag bit.
pub const FLAG_URG: u16 = 0x020;
/// ECE flag bit (RFC 3168).
pub const FLAG_ECE: u16 = 0x040;
/// CWR flag bit (RFC 3168).
pub const FLAG_CWR: u16 = 0x080;
/// NS flag bit (RFC 3540, historic; now AE in AccECN).
pub const FLAG_NS: u16 = 0x100;
/// Every bit of the 16-bit word at [`field::FLAGS`] below the data offset.
const FLAGS_MASK: u16 = 0x0fff;

packet_view! {
    /// A view of a TCP segment.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Truncated` if the buffer is shorter than 20 bytes; `Malformed` if the data offset is
    /// below 5; `Length` if the data offset reaches past the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_min_len(self.buffer.as_ref(), HEADER_LEN)?;
        let hl = self.header_len();
        if hl < HEADER_LEN {
            Err(Error::Malformed)
        } else if hl > self.buffer.as_ref().len() {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Data offset in 32-bit words.
    #[inline]
    pub fn data_offset(&self) -> u8 {
        (read_u16(self.buffer.as_ref(), field::FLAGS) >> 12) as u8
    }

    /// Header length in bytes (data offset · 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// The flag bits (`FLAG_*`), reserved bits included.
    #[inline]
    pub fn flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS) & FLAGS_MASK
    }

    /// FIN flag.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & FLAG_FIN != 0
    }

    /// SYN flag.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & FLAG_SYN != 0
    }

    /// RST flag.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & FLAG_RST != 0
    }

    /// PSH flag.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & FLAG_PSH != 0
    }

    /// ACK flag.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & FLAG_ACK != 0
    }

    /// URG flag.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & FLAG_URG != 0
    }

    /// Window size.
    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options: bytes 20 to data offset · 4.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// True if the checksum over `pseudo` (from
    /// [`checksum::pseudo_header_v4`](super::checksum::pseudo_header_v4) or
    /// [`checksum::pseudo_header_v6`](super::checksum::pseudo_header_v6), with
    /// the segment length) and the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self, pseudo: u16) -> bool {
        checksum_ok(pseudo, self.buffer.as_ref())
    }

    /// The data: after the options to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
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

    /// Set the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    /// Set the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    /// Set the header length in bytes (a multiple of 4, 20..=60), keeping the flags.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let bits = ((len / 4) as u16) << 12;
        write_u16_bits(self.buffer.as_mut(), field::FLAGS, !FLAGS_MASK, bits);
    }

    /// Set the flag bits (`FLAG_*`), keeping the data offset.
    #[inline]
    pub fn set_flags(&mut self, flags: u16) {
        write_u16_bits(self.buffer.as_mut(), field::FLAGS, FLAGS_MASK, flags);
    }

    /// Set the window size.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Set the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Exchange source and destination ports in place (checksum-neutral: both are summed).
    #[inline]
    pub fn swap_ports(&mut self) {
        swap_fields(self.buffer.as_mut(), field::SRC_PORT, field::DST_PORT);
    }

    /// Compute the checksum over `pseudo` and the whole buffer and store it.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u16) {
        store_checksum(self.buffer.as_mut(), field::CHECKSUM, pseudo);
    }

    /// The options, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    /// The data, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;
    use crate::wire::IpProtocol;
    use crate::wire::checksum;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Captured on a veth pair: TCP SYN 10.99.0.1.37952 → 10.99.0.2.5201 with MSS, SACK-permitted,
    /// timestamps and window-scale options (data offset 10).
    pub(crate) const CAPTURED_ETH_IPV4_TCP_SYN: [u8; 74] = [
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x3c, 0xe7, 0x59, 0x40, 0x00, 0x40, 0x06, 0x3e, 0x9a, 0x0a, 0x63, 0x00, 0x01,
        0x0a, 0x63, 0x00, 0x02, 0x94, 0x40, 0x14, 0x51, 0xa1, 0x66, 0x53, 0x7b, 0x00, 0x00, 0x00,
        0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xe9, 0x6b, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02,
        0x08, 0x0a, 0xe2, 0xd2, 0xce, 0x91, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    /// Captured on a veth pair: TCP PSH|ACK carrying "hello tcp", timestamps option.
    pub(crate) const CAPTURED_ETH_IPV4_TCP_DATA: [u8; 75] = [
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x3d, 0xe7, 0x5b, 0x40, 0x00, 0x40, 0x06, 0x3e, 0x97, 0x0a, 0x63, 0x00, 0x01,
        0x0a, 0x63, 0x00, 0x02, 0x94, 0x40, 0x14, 0x51, 0xa1, 0x66, 0x53, 0x7c, 0x70, 0x64, 0xe7,
        0xd8, 0x80, 0x18, 0x00, 0x3f, 0x92, 0x53, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0xe2, 0xd2,
        0xce, 0x91, 0x25, 0x5d, 0xda, 0x87, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x74, 0x63, 0x70,
    ];

    /// Captured on a veth pair: TCP SYN over IPv6, fd00:99::1.50316 → fd00:99::2.5201.
    pub(crate) const CAPTURED_ETH_IPV6_TCP_SYN: [u8; 94] = [
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x0f, 0xc6, 0xb0, 0x00, 0x28, 0x06, 0x40, 0xfd, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc4, 0x8c, 0x14, 0x51, 0xfb, 0xa0,
        0x5c, 0x25, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfd, 0x20, 0x33, 0x96, 0x00, 0x00, 0x02,
        0x04, 0x05, 0xa0, 0x04, 0x02, 0x08, 0x0a, 0xaa, 0x0b, 0x41, 0x74, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x0a,
    ];

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    #[test]
    fn parse() {
        let seg = &CAPTURED_ETH_IPV4_TCP_SYN[34..];
        let tcp = Packet::new_checked(seg).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (37952, 5201));
        assert_eq!(tcp.seq_number(), 2_707_837_819);
        assert_eq!(tcp.ack_number(), 0);
        assert_eq!(tcp.data_offset(), 10);
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), FLAG_SYN);
        assert!(tcp.syn() && !tcp.ack() && !tcp.fin() && !tcp.rst() && !tcp.psh() && !tcp.urg());
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.checksum(), 0xe96b);
        assert_eq!(tcp.urgent_at(), 0);
        assert_eq!(tcp.options().len(), 20);
        assert!(tcp.payload().is_empty());
        assert!(tcp.verify_checksum(checksum::pseudo_header_v4(SRC, DST, IpProtocol::TCP, 40)));

        let seg = &CAPTURED_ETH_IPV4_TCP_DATA[34..];
        let tcp = Packet::new_checked(seg).unwrap();
        assert_eq!(tcp.flags(), FLAG_PSH | FLAG_ACK);
        assert_eq!(tcp.payload(), b"hello tcp");
        assert!(tcp.verify_checksum(checksum::pseudo_header_v4(SRC, DST, IpProtocol::TCP, 41)));

        for seg in [
            &CAPTURED_ETH_IPV4_TCP_SYN[34..],
            &CAPTURED_ETH_IPV4_TCP_DATA[34..],
            &CAPTURED_ETH_IPV6_TCP_SYN[54..],
        ] {
            let tcp = Packet::new_checked(seg).unwrap();
            let o = etherparse::TcpSlice::from_slice(seg).unwrap();
            assert_eq!(
                (tcp.src_port(), tcp.dst_port()),
                (o.source_port(), o.destination_port())
            );
            assert_eq!(
                (tcp.seq_number(), tcp.ack_number()),
                (o.sequence_number(), o.acknowledgment_number())
            );
            assert_eq!(tcp.data_offset(), o.data_offset());
            assert_eq!(
                (tcp.syn(), tcp.ack(), tcp.psh(), tcp.fin()),
                (o.syn(), o.ack(), o.psh(), o.fin())
            );
            assert_eq!(
                (tcp.window_len(), tcp.checksum(), tcp.urgent_at()),
                (o.window_size(), o.checksum(), o.urgent_pointer())
            );
            assert_eq!(tcp.options(), o.options());
            assert_eq!(tcp.payload(), o.payload());
        }
    }

    #[test]
    fn emit() {
        let seg = &CAPTURED_ETH_IPV4_TCP_DATA[34..];
        let mut buf = [0xa5u8; 41];
        let mut tcp = Packet::new_unchecked(&mut buf[..]);
        tcp.set_src_port(37952);
        tcp.set_dst_port(5201);
        tcp.set_seq_number(0xa166_537c);
        tcp.set_ack_number(0x7064_e7d8);
        tcp.set_header_len(32);
        tcp.set_flags(FLAG_PSH | FLAG_ACK);
        tcp.set_window_len(63);
        tcp.set_urgent_at(0);
        tcp.options_mut().copy_from_slice(&seg[20..32]);
        tcp.payload_mut().copy_from_slice(b"hello tcp");
        tcp.fill_checksum(checksum::pseudo_header_v4(SRC, DST, IpProtocol::TCP, 41));
        assert_eq!(&buf[..], seg);
    }

    #[test]
    fn check_len_errors() {
        let seg = &CAPTURED_ETH_IPV4_TCP_SYN[34..];
        assert_eq!(
            Packet::new_checked(&seg[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(Packet::new_checked(&seg[..39]).unwrap_err(), Error::Length);
        let mut b = seg.to_vec();
        b[12] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80), off in any::<u8>(), ph in any::<u16>()) {
            let mut bytes = bytes;
            if bytes.len() > 12 { bytes[12] = off; }
            if let Ok(t) = Packet::new_checked(&bytes[..]) {
                let _ = (t.seq_number(), t.ack_number(), t.flags(), t.window_len(), t.urgent_at());
                let _ = (t.options(), t.payload(), t.verify_checksum(ph));
                let o = etherparse::TcpSlice::from_slice(&bytes).unwrap();
                prop_assert_eq!(t.options(), o.options());
            } else {
                prop_assert!(etherparse::TcpSlice::from_slice(&bytes).is_err());
            }
        }

        #[test]
        fn round_trip(s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>(),
                      seq in any::<u32>(), ack in any::<u32>(), win in any::<u16>(), flags in 0u16..0x200,
                      urg in any::<u16>(), opt_words in 0usize..11,
                      payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut h = etherparse::TcpHeader::new(sp, dp, seq, win);
            h.acknowledgment_number = ack;
            h.fin = flags & FLAG_FIN != 0;
            h.syn = flags & FLAG_SYN != 0;
            h.rst = flags & FLAG_RST != 0;
            h.psh = flags & FLAG_PSH != 0;
            h.ack = flags & FLAG_ACK != 0;
            h.urg = flags & FLAG_URG != 0;
            h.ece = flags & FLAG_ECE != 0;
            h.cwr = flags & FLAG_CWR != 0;
            h.ns = flags & FLAG_NS != 0;
            h.urgent_pointer = urg;
            let opts = vec![1u8; opt_words * 4]; // NOPs
            h.set_options_raw(&opts).unwrap();
            h.checksum = h.calc_checksum_ipv4_raw(s, d, &payload).unwrap();
            let mut expect = h.to_bytes().to_vec();
            expect.extend_from_slice(&payload);

            let mut buf = vec![0xa5u8; expect.len()];
            let mut t = Packet::new_unchecked(&mut buf[..]);
            t.set_src_port(sp);
            t.set_dst_port(dp);
            t.set_seq_number(seq);
            t.set_ack_number(ack);
            t.set_header_len(HEADER_LEN + opts.len());
            t.set_flags(flags);
            t.set_window_len(win);
            t.set_urgent_at(urg);
            t.options_mut().copy_from_slice(&opts);
            t.payload_mut().copy_from_slice(&payload);
            let ph = checksum::pseudo_header_v4(s.into(), d.into(), IpProtocol::TCP, expect.len() as u32);
            t.fill_checksum(ph);
            prop_assert_eq!(&buf, &expect);

            let t = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(t.verify_checksum(ph));
            prop_assert_eq!(t.flags(), flags);
            prop_assert_eq!(t.payload(), &payload[..]);
        }
    }
}
