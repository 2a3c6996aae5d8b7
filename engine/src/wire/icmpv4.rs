//! ICMP for IPv4 (RFC 792): the common 8-byte header (type, code, checksum, rest of header) and
//! the echo identifier/sequence fields. The view's buffer must be exactly the ICMP message (the
//! IPv4 payload): the checksum covers all of it.
//!
//! The header layout and its accessors are shared with ICMPv6 (see `wire/icmp.rs`); this file
//! holds the ICMPv4 message types and the checksum.

use super::icmp::icmp_view;
pub use super::icmp::{HEADER_LEN, field};
use super::{checksum_ok, store_checksum};

/// An ICMPv4 message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Message(pub u8);

impl Message {
    /// Echo reply.
    pub const ECHO_REPLY: Message = Message(0);
    /// Destination unreachable.
    pub const DST_UNREACHABLE: Message = Message(3);
    /// Redirect.
    pub const REDIRECT: Message = Message(5);
    /// Echo request.
    pub const ECHO_REQUEST: Message = Message(8);
    /// Time exceeded.
    pub const TIME_EXCEEDED: Message = Message(11);
    /// Parameter problem.
    pub const PARAM_PROBLEM: Message = Message(12);
}

icmp_view!(
    Message,
    /// A view of an ICMPv4 message.
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// True if the checksum over the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum_ok(0, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Compute the checksum over the whole buffer and store it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        store_checksum(self.buffer.as_mut(), field::CHECKSUM, 0);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::Error;
    use crate::wire::ipv4::test::CAPTURED_ICMP_UNREACH;
    use proptest::prelude::*;

    fn captured() -> &'static [u8] {
        &CAPTURED_ICMP_UNREACH[20..]
    }

    #[test]
    fn parse() {
        let icmp = Packet::new_checked(captured()).unwrap();
        assert_eq!(icmp.msg_type(), Message::DST_UNREACHABLE);
        assert_eq!(icmp.msg_code(), 3); // port unreachable
        assert_eq!(icmp.checksum(), 0x11f2);
        assert_eq!(icmp.rest_of_header(), [0; 4]);
        assert!(icmp.verify_checksum());
        // The quoted datagram is the captured UDP packet's IP header + data.
        let quoted = crate::wire::Ipv4Packet::new_checked(icmp.payload()).unwrap();
        assert_eq!(quoted.dst_addr(), std::net::Ipv4Addr::new(10, 99, 0, 2));

        let o = etherparse::Icmpv4Slice::from_slice(captured()).unwrap();
        assert_eq!(icmp.msg_type().0, o.type_u8());
        assert_eq!(icmp.msg_code(), o.code_u8());
        assert_eq!(icmp.checksum(), o.checksum());
        assert_eq!(icmp.rest_of_header(), o.bytes5to8());
        assert_eq!(icmp.payload(), o.payload());
    }

    #[test]
    fn emit() {
        let mut buf = [0xa5u8; 55];
        let mut icmp = Packet::new_unchecked(&mut buf[..]);
        icmp.set_msg_type(Message::DST_UNREACHABLE);
        icmp.set_msg_code(3);
        icmp.set_rest_of_header([0; 4]);
        icmp.payload_mut().copy_from_slice(&captured()[8..]);
        icmp.fill_checksum();
        assert_eq!(&buf[..], captured());
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&captured()[..7]).unwrap_err(),
            Error::Truncated
        );
        assert!(
            Packet::new_checked(&captured()[..8])
                .unwrap()
                .payload()
                .is_empty()
        );
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(i) = Packet::new_checked(&bytes[..]) {
                let _ = (i.msg_type(), i.msg_code(), i.checksum(), i.rest_of_header());
                let _ = (i.echo_ident(), i.echo_seq_no(), i.payload(), i.verify_checksum());
            }
        }

        #[test]
        fn echo_round_trip(id in any::<u16>(), seq in any::<u16>(), reply in any::<bool>(),
                           payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = etherparse::PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64);
            let b = if reply { b.icmpv4_echo_reply(id, seq) } else { b.icmpv4_echo_request(id, seq) };
            let mut pkt = Vec::new();
            b.write_to_vec(&mut pkt, &payload).unwrap();
            let expect = &pkt[20..];

            let mut buf = vec![0xa5u8; expect.len()];
            let mut i = Packet::new_unchecked(&mut buf[..]);
            i.set_msg_type(if reply { Message::ECHO_REPLY } else { Message::ECHO_REQUEST });
            i.set_msg_code(0);
            i.set_echo_ident(id);
            i.set_echo_seq_no(seq);
            i.payload_mut().copy_from_slice(&payload);
            i.fill_checksum();
            prop_assert_eq!(&buf[..], expect);
            let i = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(i.verify_checksum());
            prop_assert_eq!((i.echo_ident(), i.echo_seq_no()), (id, seq));
        }
    }
}
