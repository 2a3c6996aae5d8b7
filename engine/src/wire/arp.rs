//! ARP (RFC 826) packets, any hardware/protocol address sizes (Ethernet + IPv4 is 6 + 4).

use super::ethernet::EtherType;
use super::{Field, Result, check_min_len, packet_view, read_u16, write_u16};

/// Byte ranges of the ARP fields. The address fields depend on the address lengths, so they are
/// functions of `HLEN` and `PLEN`.
#[allow(non_snake_case)]
pub mod field {
    use crate::wire::Field;
    /// Hardware type.
    pub const HTYPE: Field = 0..2;
    /// Protocol type (an EtherType).
    pub const PTYPE: Field = 2..4;
    /// Hardware address length.
    pub const HLEN: usize = 4;
    /// Protocol address length.
    pub const PLEN: usize = 5;
    /// Operation.
    pub const OPER: Field = 6..8;

    /// Sender hardware address.
    #[inline]
    pub const fn SHA(hlen: u8, _plen: u8) -> Field {
        let start = OPER.end;
        start..start + hlen as usize
    }
    /// Sender protocol address.
    #[inline]
    pub const fn SPA(hlen: u8, plen: u8) -> Field {
        let start = SHA(hlen, plen).end;
        start..start + plen as usize
    }
    /// Target hardware address.
    #[inline]
    pub const fn THA(hlen: u8, plen: u8) -> Field {
        let start = SPA(hlen, plen).end;
        start..start + hlen as usize
    }
    /// Target protocol address.
    #[inline]
    pub const fn TPA(hlen: u8, plen: u8) -> Field {
        let start = THA(hlen, plen).end;
        start..start + plen as usize
    }
}

/// Length of the fixed part of the header (before the addresses).
pub const HEADER_LEN: usize = field::OPER.end;

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = HEADER_LEN + 2 * (6 + 4);

/// Hardware type of Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;

/// An ARP operation code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Operation(pub u16);

impl Operation {
    /// Request (who-has).
    pub const REQUEST: Operation = Operation(1);
    /// Reply (is-at).
    pub const REPLY: Operation = Operation(2);
}

packet_view! {
    /// A view of an ARP packet.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` if the buffer is shorter than the fixed header or than the four addresses
    /// its length fields announce.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_min_len(self.buffer.as_ref(), HEADER_LEN)?;
        check_min_len(self.buffer.as_ref(), self.addr_field(field::TPA).end)
    }

    /// Where address field `f` ([`field::SHA`] to [`field::TPA`]) lies for this packet's
    /// address lengths.
    #[inline]
    fn addr_field(&self, f: fn(u8, u8) -> Field) -> Field {
        f(self.hardware_len(), self.protocol_len())
    }

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (IPv4 for the common case).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length in bytes.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length in bytes.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation code.
    #[inline]
    pub fn operation(&self) -> Operation {
        Operation(read_u16(self.buffer.as_ref(), field::OPER))
    }

    /// True for an Ethernet (6-byte) / IPv4 (4-byte) packet.
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HARDWARE_ETHERNET
            && self.protocol_type() == EtherType::IPV4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }

    /// Sender hardware address.
    #[inline]
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.addr_field(field::SHA)]
    }

    /// Sender protocol address.
    #[inline]
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.addr_field(field::SPA)]
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.addr_field(field::THA)]
    }

    /// Target protocol address.
    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.addr_field(field::TPA)]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_addr(&mut self, f: fn(u8, u8) -> Field, addr: &[u8]) {
        let f = self.addr_field(f);
        self.buffer.as_mut()[f].copy_from_slice(addr);
    }

    /// Set the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Set the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::PTYPE, value.0);
    }

    /// Set the hardware address length. Set both lengths before any address.
    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Set the protocol address length. Set both lengths before any address.
    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Set the operation code.
    #[inline]
    pub fn set_operation(&mut self, value: Operation) {
        write_u16(self.buffer.as_mut(), field::OPER, value.0);
    }

    /// Set the sender hardware address.
    ///
    /// # Panics
    /// If `addr.len()` differs from [`hardware_len`](Self::hardware_len) (a caller bug).
    #[inline]
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        self.set_addr(field::SHA, addr);
    }

    /// Set the sender protocol address.
    ///
    /// # Panics
    /// If `addr.len()` differs from [`protocol_len`](Self::protocol_len) (a caller bug).
    #[inline]
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        self.set_addr(field::SPA, addr);
    }

    /// Set the target hardware address.
    ///
    /// # Panics
    /// If `addr.len()` differs from [`hardware_len`](Self::hardware_len) (a caller bug).
    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        self.set_addr(field::THA, addr);
    }

    /// Set the target protocol address.
    ///
    /// # Panics
    /// If `addr.len()` differs from [`protocol_len`](Self::protocol_len) (a caller bug).
    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        self.set_addr(field::TPA, addr);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::Error;
    use crate::wire::ethernet::test::CAPTURED_ARP_REQUEST;
    use proptest::prelude::*;

    /// Captured on a veth pair: ARP reply, 10.99.0.2 is-at 02:00:5e:10:00:02 (ARP part only).
    const CAPTURED_ARP_REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x02, 0x0a,
        0x63, 0x00, 0x02, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x0a, 0x63, 0x00, 0x01,
    ];

    #[test]
    fn parse() {
        let arp = Packet::new_checked(&CAPTURED_ARP_REQUEST[14..]).unwrap();
        assert!(arp.is_ethernet_ipv4());
        assert_eq!(arp.operation(), Operation::REQUEST);
        assert_eq!(
            arp.source_hardware_addr(),
            [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]
        );
        assert_eq!(arp.source_protocol_addr(), [10, 99, 0, 1]);
        assert_eq!(arp.target_hardware_addr(), [0; 6]);
        assert_eq!(arp.target_protocol_addr(), [10, 99, 0, 2]);

        for bytes in [&CAPTURED_ARP_REQUEST[14..], &CAPTURED_ARP_REPLY[..]] {
            let arp = Packet::new_checked(bytes).unwrap();
            let o = etherparse::ArpPacketSlice::from_slice(bytes).unwrap();
            assert_eq!(arp.hardware_type(), o.hw_addr_type().0);
            assert_eq!(arp.protocol_type().0, o.proto_addr_type().0);
            assert_eq!(arp.operation().0, o.operation().0);
            assert_eq!(arp.source_hardware_addr(), o.sender_hw_addr());
            assert_eq!(arp.source_protocol_addr(), o.sender_protocol_addr());
            assert_eq!(arp.target_hardware_addr(), o.target_hw_addr());
            assert_eq!(arp.target_protocol_addr(), o.target_protocol_addr());
        }
    }

    #[test]
    fn emit() {
        let mut buf = [0xa5u8; ETHERNET_IPV4_LEN];
        let mut arp = Packet::new_unchecked(&mut buf[..]);
        arp.set_hardware_type(HARDWARE_ETHERNET);
        arp.set_protocol_type(EtherType::IPV4);
        arp.set_hardware_len(6);
        arp.set_protocol_len(4);
        arp.set_operation(Operation::REPLY);
        arp.set_source_hardware_addr(&[0x02, 0x00, 0x5e, 0x10, 0x00, 0x02]);
        arp.set_source_protocol_addr(&[10, 99, 0, 2]);
        arp.set_target_hardware_addr(&[0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
        arp.set_target_protocol_addr(&[10, 99, 0, 1]);
        assert_eq!(buf, CAPTURED_ARP_REPLY);
    }

    #[test]
    fn truncated() {
        for len in 0..CAPTURED_ARP_REPLY.len() {
            assert_eq!(
                Packet::new_checked(&CAPTURED_ARP_REPLY[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80), hlen in 0u8..12, plen in 0u8..12) {
            let mut bytes = bytes;
            if bytes.len() >= HEADER_LEN {
                bytes[field::HLEN] = hlen;
                bytes[field::PLEN] = plen;
            }
            let ours = Packet::new_checked(&bytes[..]);
            let oracle = etherparse::ArpPacketSlice::from_slice(&bytes);
            prop_assert_eq!(ours.is_ok(), oracle.is_ok());
            if let (Ok(a), Ok(o)) = (ours, oracle) {
                prop_assert_eq!(a.source_hardware_addr(), o.sender_hw_addr());
                prop_assert_eq!(a.source_protocol_addr(), o.sender_protocol_addr());
                prop_assert_eq!(a.target_hardware_addr(), o.target_hw_addr());
                prop_assert_eq!(a.target_protocol_addr(), o.target_protocol_addr());
            }
        }

        #[test]
        fn round_trip(op in any::<u16>(), sha in any::<[u8; 6]>(), spa in any::<[u8; 4]>(), tha in any::<[u8; 6]>(), tpa in any::<[u8; 4]>()) {
            let mut buf = [0xa5u8; ETHERNET_IPV4_LEN];
            let mut arp = Packet::new_unchecked(&mut buf[..]);
            arp.set_hardware_type(HARDWARE_ETHERNET);
            arp.set_protocol_type(EtherType::IPV4);
            arp.set_hardware_len(6);
            arp.set_protocol_len(4);
            arp.set_operation(Operation(op));
            arp.set_source_hardware_addr(&sha);
            arp.set_source_protocol_addr(&spa);
            arp.set_target_hardware_addr(&tha);
            arp.set_target_protocol_addr(&tpa);
            let expect = etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation(op),
                &sha, &spa, &tha, &tpa,
            ).unwrap().to_bytes();
            prop_assert_eq!(&buf[..], &expect[..]);
        }
    }
}
