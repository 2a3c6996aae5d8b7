//! ICMP for IPv4 (RFC 792): the common 8-byte header (type, code, checksum, rest of header) and
//! the echo identifier/sequence fields. The view's buffer must be exactly the ICMP message (the
//! IPv4 payload): the checksum covers all of it.

use super::{Error, Field, Result, checksum};

/// Byte ranges of the ICMPv4 header fields.
pub mod field {
    use crate::wire::Field;
    /// Message type.
    pub const TYPE: usize = 0;
    /// Message code.
    pub const CODE: usize = 1;
    /// Checksum over the whole message.
    pub const CHECKSUM: Field = 2..4;
    /// Type-specific "rest of header" word.
    pub const REST: Field = 4..8;
    /// Echo identifier (echo request/reply).
    pub const ECHO_IDENT: Field = 4..6;
    /// Echo sequence number (echo request/reply).
    pub const ECHO_SEQNO: Field = 6..8;
}

/// Length of the common header.
pub const HEADER_LEN: usize = field::REST.end;

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

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap `buffer` without checking anything (see the contract in [`crate::wire`]).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap `buffer` and [`check_len`](Self::check_len) it.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` if the buffer is shorter than the 8-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> Message {
        Message(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The type-specific 4 bytes after the checksum.
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::REST];
        [b[0], b[1], b[2], b[3]]
    }

    /// Echo identifier (meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }

    /// True if the checksum over the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }

    /// Everything after the 8-byte header (echo data, or the quoted datagram of an error).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: Message) {
        self.buffer.as_mut()[field::TYPE] = value.0;
    }

    /// Set the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value);
    }

    /// Set the type-specific 4 bytes after the checksum.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&value);
    }

    /// Set the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        self.set_u16_at(field::ECHO_IDENT, value);
    }

    /// Set the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.set_u16_at(field::ECHO_SEQNO, value);
    }

    /// Compute the checksum over the whole buffer and store it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = !checksum::data(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Everything after the 8-byte header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod test {
    use super::*;
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
