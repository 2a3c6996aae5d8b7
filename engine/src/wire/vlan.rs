//! IEEE 802.1Q (C-tag) and 802.1ad (S-tag) VLAN tags, and [`walk`], which finds the L3 header
//! behind up to two of them.
//!
//! On the wire a tag is `TPID (2) | TCI (2)`, where the TPID sits where the EtherType would be.
//! The view here covers the four bytes *after* the TPID: the TCI and the next EtherType (which
//! may be another TPID), the same split etherparse and the kernel use.

use super::ethernet::{self, EtherType};
use super::{Error, Result, check_min_len, packet_view, read_u16, write_u16, write_u16_bits};

/// Byte ranges of a tag, starting right after its TPID.
pub mod field {
    use crate::wire::{Field, Rest};
    /// Tag control information: PCP (3 bits), DEI (1 bit), VLAN ID (12 bits).
    pub const TCI: Field = 0..2;
    /// EtherType of what follows the tag (an inner TPID on a double-tagged frame).
    pub const ETHERTYPE: Field = 2..4;
    /// Everything after the tag.
    pub const PAYLOAD: Rest = 4..;
}

/// Length of a tag after its TPID.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Most tags [`walk`] looks through (802.1ad S-tag + 802.1Q C-tag).
pub const MAX_TAGS: usize = 2;

/// The priority code point bits of the TCI.
const TCI_PCP: u16 = 0xe000;
/// The drop eligible indicator bit of the TCI.
const TCI_DEI: u16 = 0x1000;
/// The VLAN identifier bits of the TCI.
const TCI_VID: u16 = 0x0fff;

packet_view! {
    /// A view of one VLAN tag (TCI + next EtherType).
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` if the buffer is shorter than the 4-byte tag.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_min_len(self.buffer.as_ref(), HEADER_LEN)
    }

    /// The raw tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TCI)
    }

    /// Priority code point (0..=7).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & TCI_DEI != 0
    }

    /// VLAN identifier (0..=4095).
    #[inline]
    pub fn vlan_id(&self) -> u16 {
        self.tci() & TCI_VID
    }

    /// EtherType of what follows the tag.
    #[inline]
    pub fn ether_type(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the raw tag control information.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        write_u16(self.buffer.as_mut(), field::TCI, tci);
    }

    /// Set the priority code point (the low 3 bits of `pcp`).
    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let bits = u16::from(pcp) << 13;
        write_u16_bits(self.buffer.as_mut(), field::TCI, TCI_PCP, bits);
    }

    /// Set the drop eligible indicator.
    #[inline]
    pub fn set_dei(&mut self, dei: bool) {
        let bits = u16::from(dei) << 12;
        write_u16_bits(self.buffer.as_mut(), field::TCI, TCI_DEI, bits);
    }

    /// Set the VLAN identifier (the low 12 bits of `id`).
    #[inline]
    pub fn set_vlan_id(&mut self, id: u16) {
        write_u16_bits(self.buffer.as_mut(), field::TCI, TCI_VID, id);
    }

    /// Set the EtherType of what follows the tag.
    #[inline]
    pub fn set_ether_type(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, value.0);
    }

    /// Everything after the tag, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// Where the L3 header of an Ethernet frame starts, found by [`walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    /// The EtherType after the last tag walked (still a TPID if the frame has more than
    /// [`MAX_TAGS`] tags).
    pub ether_type: EtherType,
    /// Offset of the L3 header from the start of the frame; always `<= frame.len()`.
    pub l3_offset: usize,
    /// Number of tags walked (0, 1 or 2).
    pub tags: u8,
}

/// Walk the Ethernet header of `frame` and up to [`MAX_TAGS`] VLAN tags (TPID 0x8100, 0x88a8 or
/// 0x9100); return the inner EtherType and the L3 offset. The tags stay where they are.
///
/// `Err(Truncated)` if the frame ends inside the Ethernet header or a tag.
#[inline]
pub fn walk(frame: &[u8]) -> Result<Encap> {
    let mut ether_type = ethernet::Packet::new_checked(frame)?.ether_type();
    let mut l3_offset = ethernet::HEADER_LEN;
    let mut tags = 0u8;
    while ether_type.is_vlan_tag() && usize::from(tags) < MAX_TAGS {
        let rest = frame.get(l3_offset..).ok_or(Error::Truncated)?;
        ether_type = Packet::new_checked(rest)?.ether_type();
        l3_offset += HEADER_LEN;
        tags += 1;
    }
    Ok(Encap {
        ether_type,
        l3_offset,
        tags,
    })
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;
    use crate::wire::udp::test::CAPTURED_ETH_IPV4_UDP;
    use proptest::prelude::*;

    /// The captured UDP frame with tags inserted after the MACs. The test-bed kernel has no
    /// 802.1Q device, so tagged frames cannot be captured there; these are the captured bytes
    /// with the tags an 802.1ad switch would push.
    pub(crate) fn tagged(tags: &[(u16, u16)]) -> Vec<u8> {
        let mut f = CAPTURED_ETH_IPV4_UDP[..12].to_vec();
        for &(tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&CAPTURED_ETH_IPV4_UDP[12..]);
        f
    }

    #[test]
    fn parse() {
        let f = tagged(&[(0x8100, 0xa064)]);
        let tag = Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(tag.pcp(), 5);
        assert!(!tag.dei());
        assert_eq!(tag.vlan_id(), 100);
        assert_eq!(tag.ether_type(), EtherType::IPV4);
        let oracle = etherparse::SingleVlanHeaderSlice::from_slice(&f[14..]).unwrap();
        assert_eq!(tag.vlan_id(), oracle.vlan_identifier().value());
        assert_eq!(tag.pcp(), oracle.priority_code_point().value());
        assert_eq!(tag.ether_type().0, oracle.ether_type().0);
        assert_eq!(tag.payload(), &CAPTURED_ETH_IPV4_UDP[14..]);
    }

    #[test]
    fn emit() {
        let mut buf = [0xa5u8; HEADER_LEN];
        let mut tag = Packet::new_unchecked(&mut buf[..]);
        tag.set_tci(0);
        tag.set_pcp(5);
        tag.set_dei(true);
        tag.set_vlan_id(100);
        tag.set_ether_type(EtherType::IPV6);
        let oracle = etherparse::SingleVlanHeader {
            pcp: etherparse::VlanPcp::try_new(5).unwrap(),
            drop_eligible_indicator: true,
            vlan_id: etherparse::VlanId::try_new(100).unwrap(),
            ether_type: etherparse::EtherType::IPV6,
        };
        assert_eq!(buf, oracle.to_bytes());
    }

    #[test]
    fn walk_untagged_single_double_triple() {
        let e = walk(&CAPTURED_ETH_IPV4_UDP).unwrap();
        assert_eq!(
            (e.ether_type, e.l3_offset, e.tags),
            (EtherType::IPV4, 14, 0)
        );

        let e = walk(&tagged(&[(0x8100, 100)])).unwrap();
        assert_eq!(
            (e.ether_type, e.l3_offset, e.tags),
            (EtherType::IPV4, 18, 1)
        );

        let f = tagged(&[(0x88a8, 10), (0x8100, 20)]);
        let e = walk(&f).unwrap();
        assert_eq!(
            (e.ether_type, e.l3_offset, e.tags),
            (EtherType::IPV4, 22, 2)
        );
        let oracle = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        assert_eq!(
            oracle
                .vlan_ids()
                .iter()
                .map(|v| v.value())
                .collect::<Vec<_>>(),
            [10, 20]
        );

        // A third tag is not walked: the caller sees a TPID, not an L3 type.
        let e = walk(&tagged(&[(0x88a8, 1), (0x8100, 2), (0x8100, 3)])).unwrap();
        assert_eq!(
            (e.ether_type, e.l3_offset, e.tags),
            (EtherType::VLAN, 22, 2)
        );
    }

    #[test]
    fn walk_truncated() {
        let f = tagged(&[(0x88a8, 10), (0x8100, 20)]);
        for len in 0..22 {
            assert_eq!(walk(&f[..len]), Err(Error::Truncated), "len {len}");
        }
        assert_eq!(walk(&f[..22]).unwrap().l3_offset, 22);
    }

    proptest! {
        #[test]
        fn no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32), tpid in prop_oneof![Just(0x8100u16), Just(0x88a8), any::<u16>()]) {
            if let Ok(t) = Packet::new_checked(&bytes[..]) {
                let _ = (t.pcp(), t.dei(), t.vlan_id(), t.ether_type(), t.payload());
            }
            let mut f = bytes.clone();
            if f.len() >= 14 {
                f[12..14].copy_from_slice(&tpid.to_be_bytes());
            }
            if let Ok(e) = walk(&f) {
                prop_assert!(e.l3_offset <= f.len());
                prop_assert_eq!(e.l3_offset, 14 + 4 * usize::from(e.tags));
            }
        }

        #[test]
        fn round_trip(pcp in 0u8..8, dei in any::<bool>(), id in 0u16..4096, et in any::<u16>()) {
            let mut buf = [0xa5u8; HEADER_LEN];
            let mut tag = Packet::new_unchecked(&mut buf[..]);
            tag.set_vlan_id(id);
            tag.set_pcp(pcp);
            tag.set_dei(dei);
            tag.set_ether_type(EtherType(et));
            let tag = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!((tag.pcp(), tag.dei(), tag.vlan_id(), tag.ether_type().0), (pcp, dei, id, et));
        }
    }
}
