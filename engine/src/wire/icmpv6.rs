//! ICMP for IPv6 (RFC 4443): the common 8-byte header (type, code, checksum, message body word)
//! and the echo fields. The checksum covers the IPv6 pseudo-header, so it takes the
//! pseudo-header sum; the view's buffer must be exactly the ICMPv6 message.
//!
//! The header layout and its accessors are shared with ICMPv4 (see `wire/icmp.rs`); this file
//! holds the ICMPv6 message types and the pseudo-header checksum.

use super::icmp::icmp_view;
pub use super::icmp::{HEADER_LEN, field};
use super::{checksum_ok, store_checksum};

/// An ICMPv6 message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Message(pub u8);

impl Message {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: Message = Message(1);
    /// Packet too big.
    pub const PKT_TOO_BIG: Message = Message(2);
    /// Time exceeded.
    pub const TIME_EXCEEDED: Message = Message(3);
    /// Parameter problem.
    pub const PARAM_PROBLEM: Message = Message(4);
    /// Echo request.
    pub const ECHO_REQUEST: Message = Message(128);
    /// Echo reply.
    pub const ECHO_REPLY: Message = Message(129);
    /// NDP router solicitation.
    pub const ROUTER_SOLICIT: Message = Message(133);
    /// NDP router advertisement.
    pub const ROUTER_ADVERT: Message = Message(134);
    /// NDP neighbor solicitation.
    pub const NEIGHBOR_SOLICIT: Message = Message(135);
    /// NDP neighbor advertisement.
    pub const NEIGHBOR_ADVERT: Message = Message(136);

    /// True for error messages (types below 128).
    #[inline]
    pub const fn is_error(self) -> bool {
        self.0 < 128
    }
}

icmp_view!(
    Message,
    /// A view of an ICMPv6 message.
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// True if the checksum over `pseudo` (from
    /// [`checksum::pseudo_header_v6`](super::checksum::pseudo_header_v6) with
    /// [`IpProtocol::ICMPV6`](super::IpProtocol::ICMPV6) and the message length) and the
    /// whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self, pseudo: u16) -> bool {
        checksum_ok(pseudo, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Compute the checksum over `pseudo` and the whole buffer and store it.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u16) {
        store_checksum(self.buffer.as_mut(), field::CHECKSUM, pseudo);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::Error;
    use crate::wire::checksum;
    use crate::wire::{IpProtocol, Ipv6Packet};
    use proptest::prelude::*;

    /// Captured on a veth pair: neighbor solicitation for fd00:99::2 from fd00:99::1, with a
    /// source link-layer address option.
    const CAPTURED_ETH_NS: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x02, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x02, 0x87, 0x00, 0x1e, 0x55, 0x00, 0x00,
        0x00, 0x00, 0xfd, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01,
    ];

    /// Captured on a veth pair: port unreachable for the captured IPv6 UDP datagram.
    const CAPTURED_ETH_UNREACH: [u8; 123] = [
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 0x86, 0xdd, 0x60,
        0x0f, 0x92, 0x4d, 0x00, 0x45, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xfd, 0x00, 0x00, 0x99, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x04, 0xaa, 0xe0, 0x00, 0x00,
        0x00, 0x00, 0x60, 0x02, 0xe7, 0x33, 0x00, 0x15, 0x11, 0x40, 0xfd, 0x00, 0x00, 0x99, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x99,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc8, 0x0c, 0x12,
        0xb7, 0x00, 0x15, 0xa1, 0x93, 0x73, 0x6c, 0x75, 0x69, 0x63, 0x65, 0x20, 0x76, 0x36, 0x20,
        0x75, 0x64, 0x70,
    ];

    fn pseudo(ip: &Ipv6Packet<&[u8]>) -> u16 {
        checksum::pseudo_header_v6(
            &ip.src_addr(),
            &ip.dst_addr(),
            IpProtocol::ICMPV6,
            u32::from(ip.payload_len()),
        )
    }

    #[test]
    fn parse() {
        let ip = Ipv6Packet::new_checked(&CAPTURED_ETH_NS[14..]).unwrap();
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Message::NEIGHBOR_SOLICIT);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.checksum(), 0x1e55);
        assert!(icmp.verify_checksum(pseudo(&ip)));
        assert!(!icmp.msg_type().is_error());
        let target: std::net::Ipv6Addr = "fd00:99::2".parse().unwrap();
        assert_eq!(icmp.payload()[..16], target.octets());

        let ip = Ipv6Packet::new_checked(&CAPTURED_ETH_UNREACH[14..]).unwrap();
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code()),
            (Message::DST_UNREACHABLE, 4)
        );
        assert!(icmp.msg_type().is_error());
        assert!(icmp.verify_checksum(pseudo(&ip)));

        for frame in [&CAPTURED_ETH_NS[..], &CAPTURED_ETH_UNREACH[..]] {
            let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
            let icmp = Packet::new_checked(ip.payload()).unwrap();
            let o = etherparse::Icmpv6Slice::from_slice(ip.payload()).unwrap();
            assert_eq!(icmp.msg_type().0, o.type_u8());
            assert_eq!(icmp.msg_code(), o.code_u8());
            assert_eq!(icmp.checksum(), o.checksum());
            assert_eq!(icmp.rest_of_header(), o.bytes5to8());
            assert_eq!(icmp.payload(), o.payload());
            assert!(o.is_checksum_valid(ip.src_addr().octets(), ip.dst_addr().octets()));
        }
    }

    #[test]
    fn emit() {
        let ip = Ipv6Packet::new_checked(&CAPTURED_ETH_NS[14..]).unwrap();
        let expect = ip.payload();
        let mut buf = [0xa5u8; 32];
        let mut icmp = Packet::new_unchecked(&mut buf[..]);
        icmp.set_msg_type(Message::NEIGHBOR_SOLICIT);
        icmp.set_msg_code(0);
        icmp.set_rest_of_header([0; 4]);
        icmp.payload_mut().copy_from_slice(&expect[8..]);
        icmp.fill_checksum(pseudo(&ip));
        assert_eq!(&buf[..], expect);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&[0u8; 7][..]).unwrap_err(),
            Error::Truncated
        );
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), ph in any::<u16>()) {
            if let Ok(i) = Packet::new_checked(&bytes[..]) {
                let _ = (i.msg_type(), i.msg_code(), i.checksum(), i.rest_of_header());
                let _ = (i.echo_ident(), i.echo_seq_no(), i.payload(), i.verify_checksum(ph));
            }
        }

        #[test]
        fn echo_round_trip(s in any::<[u8; 16]>(), d in any::<[u8; 16]>(), id in any::<u16>(), seq in any::<u16>(),
                           payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut pkt = Vec::new();
            etherparse::PacketBuilder::ipv6(s, d, 64)
                .icmpv6_echo_request(id, seq)
                .write_to_vec(&mut pkt, &payload)
                .unwrap();
            let expect = &pkt[40..];
            let mut buf = vec![0xa5u8; expect.len()];
            let mut i = Packet::new_unchecked(&mut buf[..]);
            i.set_msg_type(Message::ECHO_REQUEST);
            i.set_msg_code(0);
            i.set_echo_ident(id);
            i.set_echo_seq_no(seq);
            i.payload_mut().copy_from_slice(&payload);
            let ph = checksum::pseudo_header_v6(&s.into(), &d.into(), IpProtocol::ICMPV6, expect.len() as u32);
            i.fill_checksum(ph);
            prop_assert_eq!(&buf[..], expect);
            let i = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(i.verify_checksum(ph));
        }
    }
}
