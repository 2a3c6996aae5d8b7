//! Zero-copy packet views: Ethernet, 802.1Q/802.1ad tags, ARP, IPv4, IPv6, UDP, TCP, ICMPv4,
//! ICMPv6, and the Internet checksum.
//!
//! This module owns every byte offset of every header the engine understands; no other module
//! indexes into a frame by hand. It never allocates, never logs and never panics on input that
//! came through a `new_checked` constructor.
//!
//! # The view contract
//!
//! Each protocol has a view `Packet<T: AsRef<[u8]>> { buffer: T }` over a borrowed (or owned)
//! buffer. The view copies nothing: getters decode the field straight out of the buffer, setters
//! write straight into it.
//!
//! - `Packet::new_unchecked(buffer)` (a `const fn`) wraps the buffer and checks nothing. Use it
//!   only on a buffer whose length you have already established, typically because you are about
//!   to *emit* a header into it. Accessors on an unchecked view over a too-short buffer panic.
//! - `Packet::check_len(&self)` checks that the buffer is long enough for the fixed header, and
//!   that every length field the view's accessors rely on (IPv4 IHL and total length, IPv6
//!   payload length, UDP length, TCP data offset, ARP address lengths) is consistent with the
//!   buffer. After `check_len` returns `Ok`, **no getter, setter, `payload()` or
//!   `payload_mut()` of that view can panic**, whatever the bytes are.
//! - `Packet::new_checked(buffer)` is `new_unchecked` followed by `check_len`. Untrusted input
//!   (anything that came off the wire) always goes through `new_checked`, or through
//!   `new_unchecked` + `check_len` when the caller must look at a field (a version number, say)
//!   before the length checks make sense.
//!
//! `check_len` checks lengths only: it does not check version numbers, checksums or whether a
//! field has a value the protocol allows, so a view can read and repair a wrong packet. Field
//! semantics are the caller's decision (see `apps::reflect` for one such policy).
//!
//! Multi-byte fields are in network byte order and are decoded with `u16::from_be_bytes` /
//! `u32::from_be_bytes` on the field's byte range, named in each file's `field` module.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use arp::Packet as ArpPacket;
pub use ethernet::{EtherType, MacAddr, Packet as EthernetFrame};
pub use icmpv4::Packet as Icmpv4Packet;
pub use icmpv6::Packet as Icmpv6Packet;
pub use ipv4::Packet as Ipv4Packet;
pub use ipv6::Packet as Ipv6Packet;
pub use tcp::Packet as TcpPacket;
pub use udp::Packet as UdpPacket;
pub use vlan::Packet as VlanTag;

use std::fmt;

/// A header field: the byte range it occupies, relative to the start of its header.
pub type Field = core::ops::Range<usize>;

/// The part of a buffer from a fixed offset to its end.
pub type Rest = core::ops::RangeFrom<usize>;

/// Why a buffer cannot be viewed as a given header.
///
/// The variants are coarse on purpose (smoltcp has a single one); they are distinct only where a
/// caller maps them to different outcomes, as the reflector maps them to drop reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends inside the header (its fixed part or, for IPv4/TCP/ARP, its options or
    /// addresses).
    Truncated,
    /// A header-length field is below the protocol minimum: IPv4 IHL < 5, TCP data offset < 5,
    /// UDP length < 8.
    Malformed,
    /// A length field points outside the buffer: IPv4 total length smaller than the header or
    /// larger than the buffer, IPv6 payload length past the buffer, UDP length past the buffer,
    /// TCP data offset past the buffer.
    Length,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "buffer ends inside the header",
            Error::Malformed => "header length field below the protocol minimum",
            Error::Length => "length field inconsistent with the buffer",
        })
    }
}

impl std::error::Error for Error {}

/// Result of a `check_len` or `new_checked`.
pub type Result<T> = core::result::Result<T, Error>;

/// An IP protocol number (IPv4 `protocol`, IPv6 `next header`).
///
/// A newtype rather than an enum so any byte round-trips and the constants can be used as match
/// patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options extension header.
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    /// Internet Control Message Protocol (RFC 792).
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// Transmission Control Protocol (RFC 9293).
    pub const TCP: IpProtocol = IpProtocol(6);
    /// User Datagram Protocol (RFC 768).
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 routing extension header.
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 fragment extension header.
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 "no next header".
    pub const IPV6_NO_NXT: IpProtocol = IpProtocol(59);
    /// IPv6 destination options extension header.
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
}

impl From<u8> for IpProtocol {
    #[inline]
    fn from(v: u8) -> Self {
        IpProtocol(v)
    }
}

impl From<IpProtocol> for u8 {
    #[inline]
    fn from(v: IpProtocol) -> Self {
        v.0
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("icmp"),
            IpProtocol::TCP => f.write_str("tcp"),
            IpProtocol::UDP => f.write_str("udp"),
            IpProtocol::ICMPV6 => f.write_str("icmpv6"),
            IpProtocol(n) => write!(f, "proto {n}"),
        }
    }
}

#[cfg(test)]
mod test {
    //! Whole-chain properties: whatever the bytes, walking Ethernet → tags → IP → L4 through the
    //! checked constructors and reading every field never panics.

    use super::*;
    use proptest::prelude::*;

    /// Parse `frame` as deep as it goes, touching every getter; returns how many layers parsed.
    fn parse_chain(frame: &[u8]) -> usize {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return 0;
        };
        let _ = (
            eth.dst_addr(),
            eth.src_addr(),
            eth.ether_type(),
            eth.payload(),
        );
        let Ok(encap) = vlan::walk(frame) else {
            return 1;
        };
        let Some(l3) = frame.get(encap.l3_offset..) else {
            unreachable!("walk returned an offset past the frame");
        };
        let (proto, l4, pseudo) = match encap.ether_type {
            EtherType::IPV4 => {
                let Ok(ip) = Ipv4Packet::new_checked(l3) else {
                    return 2;
                };
                let _ = (
                    ip.version(),
                    ip.dscp(),
                    ip.ecn(),
                    ip.ident(),
                    ip.dont_frag(),
                    ip.more_frags(),
                    ip.frag_offset(),
                    ip.ttl(),
                    ip.checksum(),
                    ip.options(),
                    ip.verify_checksum(),
                );
                let pseudo = checksum::pseudo_header_v4(
                    ip.src_addr(),
                    ip.dst_addr(),
                    ip.protocol(),
                    ip.payload().len() as u32,
                );
                (ip.protocol(), ip.into_payload(), pseudo)
            }
            EtherType::IPV6 => {
                let Ok(ip) = Ipv6Packet::new_checked(l3) else {
                    return 2;
                };
                let _ = (
                    ip.version(),
                    ip.traffic_class(),
                    ip.flow_label(),
                    ip.hop_limit(),
                );
                let pseudo = checksum::pseudo_header_v6(
                    &ip.src_addr(),
                    &ip.dst_addr(),
                    ip.next_header(),
                    ip.payload().len() as u32,
                );
                (ip.next_header(), ip.into_payload(), pseudo)
            }
            EtherType::ARP => {
                if let Ok(arp) = ArpPacket::new_checked(l3) {
                    let _ = (
                        arp.hardware_type(),
                        arp.protocol_type(),
                        arp.operation(),
                        arp.source_hardware_addr(),
                        arp.source_protocol_addr(),
                        arp.target_hardware_addr(),
                        arp.target_protocol_addr(),
                    );
                }
                return 2;
            }
            _ => return 2,
        };
        match proto {
            IpProtocol::UDP => {
                if let Ok(udp) = UdpPacket::new_checked(l4) {
                    let _ = (udp.src_port(), udp.dst_port(), udp.payload());
                    let _ = udp.verify_checksum(pseudo);
                    return 4;
                }
            }
            IpProtocol::TCP => {
                if let Ok(tcp) = TcpPacket::new_checked(l4) {
                    let _ = (
                        tcp.seq_number(),
                        tcp.ack_number(),
                        tcp.flags(),
                        tcp.options(),
                    );
                    let _ = (tcp.window_len(), tcp.urgent_at(), tcp.payload());
                    let _ = tcp.verify_checksum(pseudo);
                    return 4;
                }
            }
            IpProtocol::ICMP => {
                if let Ok(icmp) = Icmpv4Packet::new_checked(l4) {
                    let _ = (icmp.msg_type(), icmp.msg_code(), icmp.echo_ident());
                    let _ = (icmp.payload(), icmp.verify_checksum());
                    return 4;
                }
            }
            IpProtocol::ICMPV6 => {
                if let Ok(icmp) = Icmpv6Packet::new_checked(l4) {
                    let _ = (icmp.msg_type(), icmp.msg_code(), icmp.echo_seq_no());
                    let _ = (icmp.payload(), icmp.verify_checksum(pseudo));
                    return 4;
                }
            }
            _ => {}
        }
        3
    }

    /// Frames that start like real ones, so the fuzzing reaches the deeper layers.
    fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
        let ether_types = prop_oneof![
            Just(0x0800u16),
            Just(0x86dd),
            Just(0x0806),
            Just(0x8100),
            Just(0x88a8),
            any::<u16>()
        ];
        (
            proptest::collection::vec(any::<u8>(), 12),
            ether_types,
            proptest::collection::vec(any::<u8>(), 0..120),
            any::<u8>(),
        )
            .prop_map(|(macs, et, mut rest, first)| {
                let mut f = macs;
                f.extend_from_slice(&et.to_be_bytes());
                // Bias the first L3 byte towards plausible version/IHL values.
                if let Some(b) = rest.first_mut() {
                    *b = match first % 4 {
                        0 => 0x45,
                        1 => 0x60,
                        2 => 0x40 | (first >> 4),
                        _ => *b,
                    };
                }
                f.extend_from_slice(&rest);
                f
            })
    }

    proptest! {
        #[test]
        fn chain_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            parse_chain(&bytes);
        }

        #[test]
        fn chain_never_panics_on_plausible_frames(frame in frame_strategy()) {
            parse_chain(&frame);
        }
    }

    #[test]
    fn chain_reaches_l4_on_captured_udp() {
        assert_eq!(parse_chain(&udp::test::CAPTURED_ETH_IPV4_UDP), 4);
    }
}
