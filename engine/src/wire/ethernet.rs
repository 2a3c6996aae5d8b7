//! Ethernet II frame header (destination, source, EtherType), without FCS.

use super::{Result, check_min_len, packet_view, read_array, read_u16, swap_fields, write_u16};
use std::fmt;

/// Byte ranges of the Ethernet II header fields.
pub mod field {
    use crate::wire::{Field, Rest};
    /// Destination MAC address.
    pub const DESTINATION: Field = 0..6;
    /// Source MAC address.
    pub const SOURCE: Field = 6..12;
    /// EtherType (or, on a tagged frame, the first tag's TPID).
    pub const ETHERTYPE: Field = 12..14;
    /// Everything after the header.
    pub const PAYLOAD: Rest = 14..;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// An EtherType. A newtype so any value round-trips and the constants work as match patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// Internet Protocol version 4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// Address Resolution Protocol.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: EtherType = EtherType(0x8100);
    /// Internet Protocol version 6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1ad provider bridging service tag (S-tag, "QinQ").
    pub const QINQ: EtherType = EtherType(0x88a8);
    /// Pre-standard double tagging TPID still sent by some switches.
    pub const QINQ_LEGACY: EtherType = EtherType(0x9100);

    /// True for the TPIDs that start an 802.1Q/802.1ad tag.
    #[inline]
    pub const fn is_vlan_tag(self) -> bool {
        matches!(self, Self::VLAN | Self::QINQ | Self::QINQ_LEGACY)
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// A 48-bit IEEE MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address as bytes.
    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for group addresses (I/G bit set; broadcast included).
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for unicast addresses (I/G bit clear).
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl From<[u8; 6]> for MacAddr {
    #[inline]
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

packet_view! {
    /// A view of an Ethernet II frame.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` if the buffer is shorter than the 14-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_min_len(self.buffer.as_ref(), HEADER_LEN)
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(read_array(self.buffer.as_ref(), field::DESTINATION))
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(read_array(self.buffer.as_ref(), field::SOURCE))
    }

    /// EtherType field (the first TPID on a VLAN-tagged frame; see [`super::vlan::walk`]).
    #[inline]
    pub fn ether_type(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the 14-byte header (tags, L3 header, data, any padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Set the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Set the EtherType field.
    #[inline]
    pub fn set_ether_type(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, value.0);
    }

    /// Exchange source and destination MAC addresses in place.
    #[inline]
    pub fn swap_addrs(&mut self) {
        swap_fields(self.buffer.as_mut(), field::DESTINATION, field::SOURCE);
    }

    /// Everything after the 14-byte header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;
    use crate::wire::Error;
    use proptest::prelude::*;

    /// Captured on a veth pair: ARP request, who-has 10.99.0.2 tell 10.99.0.1.
    pub(crate) const CAPTURED_ARP_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x0a, 0x63,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x00, 0x02,
    ];

    #[test]
    fn parse() {
        let f = Packet::new_checked(&CAPTURED_ARP_REQUEST[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert!(f.dst_addr().is_broadcast() && f.dst_addr().is_multicast());
        assert_eq!(f.src_addr(), MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]));
        assert!(f.src_addr().is_unicast());
        assert_eq!(f.ether_type(), EtherType::ARP);
        assert_eq!(f.payload().len(), 28);
        assert_eq!(f.src_addr().to_string(), "02:00:5e:10:00:01");

        let oracle = etherparse::Ethernet2HeaderSlice::from_slice(&CAPTURED_ARP_REQUEST).unwrap();
        assert_eq!(f.dst_addr().0, oracle.destination());
        assert_eq!(f.src_addr().0, oracle.source());
        assert_eq!(f.ether_type().0, oracle.ether_type().0);
    }

    #[test]
    fn emit() {
        let mut buf = [0xa5u8; 42];
        let mut f = Packet::new_unchecked(&mut buf[..]);
        f.set_dst_addr(MacAddr::BROADCAST);
        f.set_src_addr(MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]));
        f.set_ether_type(EtherType::ARP);
        f.payload_mut()
            .copy_from_slice(&CAPTURED_ARP_REQUEST[HEADER_LEN..]);
        assert_eq!(buf, CAPTURED_ARP_REQUEST);
    }

    #[test]
    fn swap() {
        let mut buf = CAPTURED_ARP_REQUEST;
        let mut f = Packet::new_checked(&mut buf[..]).unwrap();
        f.swap_addrs();
        assert_eq!(f.src_addr(), MacAddr::BROADCAST);
        assert_eq!(f.dst_addr(), MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&CAPTURED_ARP_REQUEST[..13]).unwrap_err(),
            Error::Truncated
        );
        assert!(Packet::new_checked(&CAPTURED_ARP_REQUEST[..14]).is_ok());
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(f) = Packet::new_checked(&bytes[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ether_type(), f.payload());
                let oracle = etherparse::Ethernet2HeaderSlice::from_slice(&bytes).unwrap();
                prop_assert_eq!(f.ether_type().0, oracle.ether_type().0);
            } else {
                prop_assert!(etherparse::Ethernet2HeaderSlice::from_slice(&bytes).is_err());
            }
        }

        #[test]
        fn round_trip(dst in any::<[u8; 6]>(), src in any::<[u8; 6]>(), et in any::<u16>()) {
            let mut buf = [0xa5u8; HEADER_LEN];
            let mut f = Packet::new_unchecked(&mut buf[..]);
            f.set_dst_addr(MacAddr(dst));
            f.set_src_addr(MacAddr(src));
            f.set_ether_type(EtherType(et));
            let expect = etherparse::Ethernet2Header {
                source: src,
                destination: dst,
                ether_type: etherparse::EtherType(et),
            }
            .to_bytes();
            prop_assert_eq!(buf, expect);
            let f = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!((f.dst_addr().0, f.src_addr().0, f.ether_type().0), (dst, src, et));
        }
    }
}
