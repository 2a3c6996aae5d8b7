//! What ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) share: the 8-byte header (type, code, checksum,
//! a 4-byte type-specific word holding the echo identifier and sequence number), the payload
//! after it, and every accessor on those. [`icmp_view!`] declares the view in
//! [`super::icmpv4`] and [`super::icmpv6`]; each of them adds its own message types and its own
//! checksum (ICMPv6 covers the IPv6 pseudo-header, ICMPv4 does not).

/// Byte ranges of the ICMP header fields, the same in ICMPv4 and ICMPv6.
pub mod field {
    use crate::wire::Field;
    /// Message type.
    pub const TYPE: usize = 0;
    /// Message code.
    pub const CODE: usize = 1;
    /// Checksum: over the message (ICMPv4), over the IPv6 pseudo-header and the message (ICMPv6).
    pub const CHECKSUM: Field = 2..4;
    /// Type-specific word: ICMPv4 "rest of header", the first 4 bytes of an ICMPv6 message body
    /// (pointer, MTU, echo id/seq, NDP flags, ...).
    pub const REST: Field = 4..8;
    /// Echo identifier (echo request/reply).
    pub const ECHO_IDENT: Field = 4..6;
    /// Echo sequence number (echo request/reply).
    pub const ECHO_SEQNO: Field = 6..8;
}

/// Length of the common header.
pub const HEADER_LEN: usize = field::REST.end;

/// Declares the calling file's ICMP view `Packet` (through [`packet_view!`](super::packet_view))
/// with `check_len` and the accessors of the common header; `msg_type` reads and writes the
/// calling file's message type, given as `$message`. The caller re-exports [`field`] and
/// [`HEADER_LEN`] from here, and the expansion names them as the caller sees them (and the
/// `wire` helpers as `super::`).
macro_rules! icmp_view {
    ($message:ident, $(#[$doc:meta])*) => {
        super::packet_view! { $(#[$doc])* }

        impl<T: AsRef<[u8]>> Packet<T> {
            /// `Err(Truncated)` if the buffer is shorter than the 8-byte header.
            #[inline]
            pub fn check_len(&self) -> super::Result<()> {
                super::check_min_len(self.buffer.as_ref(), HEADER_LEN)
            }

            /// Message type.
            #[inline]
            pub fn msg_type(&self) -> $message {
                $message(self.buffer.as_ref()[field::TYPE])
            }

            /// Message code.
            #[inline]
            pub fn msg_code(&self) -> u8 {
                self.buffer.as_ref()[field::CODE]
            }

            /// Checksum field.
            #[inline]
            pub fn checksum(&self) -> u16 {
                super::read_u16(self.buffer.as_ref(), field::CHECKSUM)
            }

            /// The type-specific 4 bytes after the checksum.
            #[inline]
            pub fn rest_of_header(&self) -> [u8; 4] {
                super::read_array(self.buffer.as_ref(), field::REST)
            }

            /// Echo identifier (meaningful for echo request/reply).
            #[inline]
            pub fn echo_ident(&self) -> u16 {
                super::read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
            }

            /// Echo sequence number (meaningful for echo request/reply).
            #[inline]
            pub fn echo_seq_no(&self) -> u16 {
                super::read_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
            }

            /// Everything after the 8-byte header (echo data, the quoted datagram of an error,
            /// an NDP target and options).
            #[inline]
            pub fn payload(&self) -> &[u8] {
                &self.buffer.as_ref()[HEADER_LEN..]
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
            /// Set the message type.
            #[inline]
            pub fn set_msg_type(&mut self, value: $message) {
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
                super::write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
            }

            /// Set the type-specific 4 bytes after the checksum.
            #[inline]
            pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
                self.buffer.as_mut()[field::REST].copy_from_slice(&value);
            }

            /// Set the echo identifier.
            #[inline]
            pub fn set_echo_ident(&mut self, value: u16) {
                super::write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
            }

            /// Set the echo sequence number.
            #[inline]
            pub fn set_echo_seq_no(&mut self, value: u16) {
                super::write_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value);
            }

            /// Everything after the 8-byte header, writable.
            #[inline]
            pub fn payload_mut(&mut self) -> &mut [u8] {
                &mut self.buffer.as_mut()[HEADER_LEN..]
            }
        }
    };
}
pub(super) use icmp_view;
