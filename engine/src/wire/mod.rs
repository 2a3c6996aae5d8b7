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
//!
//! The parts every view shares are written once, here: the struct, `new_unchecked`,
//! `new_checked`, `into_inner` and `AsRef` come from `packet_view!`, and the accessors read and
//! write their fields through `read_u16`, `write_u16` and their siblings. A protocol file
//! holds only what is its own: the field layout, `check_len` and the accessors.

pub mod arp;
pub mod checksum;
pub mod ethernet;
mod icmp;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
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
    /// IPv4 encapsulated in IP (IPIP, RFC 2003; also IPv4 in IPv6).
    pub const IPIP: IpProtocol = IpProtocol(4);
    /// Transmission Control Protocol (RFC 9293).
    pub const TCP: IpProtocol = IpProtocol(6);
    /// User Datagram Protocol (RFC 768).
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 encapsulated in IP (IP6IP6, RFC 2473; 6in4, RFC 4213).
    pub const IPV6: IpProtocol = IpProtocol(41);
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

// The plumbing every view shares, private to `wire`: the view declaration, the length test, and
// the field reads and writes the accessors are made of.

/// Declares the view `pub struct Packet<T: AsRef<[u8]>> { buffer: T }` of the calling protocol
/// file, with the part of the contract (see the module docs) that is the same for every protocol:
/// `new_unchecked`, `new_checked` (which calls the file's own `check_len`), `into_inner` and
/// `AsRef<[u8]>`. The doc comment given to the macro documents the struct.
macro_rules! packet_view {
    ($(#[$doc:meta])*) => {
        $(#[$doc])*
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
            pub fn new_checked(buffer: T) -> $crate::wire::Result<Packet<T>> {
                let p = Self::new_unchecked(buffer);
                p.check_len()?;
                Ok(p)
            }

            /// The underlying buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }

        impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
            fn as_ref(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }
    };
}
use packet_view;

/// `Err(Truncated)` if `buf` is shorter than `len`: the first test of every `check_len`.
#[inline]
fn check_min_len(buf: &[u8], len: usize) -> Result<()> {
    if buf.len() < len {
        Err(Error::Truncated)
    } else {
        Ok(())
    }
}

// Field accessors. Each panics if the field lies outside `buf`, which the view contract rules out
// after `check_len`; `read_array` also panics if the field is not `N` bytes long, which is a wrong
// constant in a `field` module, caught by that file's tests.

/// The bytes of field `f` (an address, a 4-byte word).
#[inline]
fn read_array<const N: usize>(buf: &[u8], f: Field) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&buf[f]);
    out
}

/// The big-endian `u16` in field `f`.
#[inline]
fn read_u16(buf: &[u8], f: Field) -> u16 {
    u16::from_be_bytes(read_array(buf, f))
}

/// The big-endian `u32` in field `f`.
#[inline]
fn read_u32(buf: &[u8], f: Field) -> u32 {
    u32::from_be_bytes(read_array(buf, f))
}

/// Store `value` big-endian in the 2-byte field `f`.
#[inline]
fn write_u16(buf: &mut [u8], f: Field, value: u16) {
    buf[f].copy_from_slice(&value.to_be_bytes());
}

/// Store `value` big-endian in the 4-byte field `f`.
#[inline]
fn write_u32(buf: &mut [u8], f: Field, value: u32) {
    buf[f].copy_from_slice(&value.to_be_bytes());
}

/// True if `pseudo` (a pseudo-header sum, 0 where the protocol has none) plus the sum of `data`,
/// checksum field included, is ones-complement zero: the test of every `verify_checksum`.
#[inline]
fn checksum_ok(pseudo: u16, data: &[u8]) -> bool {
    checksum::add(pseudo, checksum::data(data)) == 0xffff
}

/// Zero the checksum field `f` of `data`, then store there the checksum over `pseudo` and `data`
/// and return it: the work of every `fill_checksum`.
#[inline]
fn store_checksum(data: &mut [u8], f: Field, pseudo: u16) -> u16 {
    write_u16(data, f.clone(), 0);
    let c = !checksum::add(pseudo, checksum::data(data));
    write_u16(data, f, c);
    c
}

/// Exchange the contents of fields `a` and `b`, which have the same length and do not overlap,
/// `a` first (source and destination addresses or ports); panics otherwise.
#[inline]
fn swap_fields(buf: &mut [u8], a: Field, b: Field) {
    let (front, back) = buf.split_at_mut(b.start);
    front[a].swap_with_slice(&mut back[..b.end - b.start]);
}

/// In the byte at `at`, replace the bits under `mask` by those of `bits`; the others stay.
#[inline]
fn write_u8_bits(buf: &mut [u8], at: usize, mask: u8, bits: u8) {
    buf[at] = (buf[at] & !mask) | (bits & mask);
}

/// In the big-endian `u16` at `f`, replace the bits under `mask` by those of `bits`.
#[inline]
fn write_u16_bits(buf: &mut [u8], f: Field, mask: u16, bits: u16) {
    let value = (read_u16(buf, f.clone()) & !mask) | (bits & mask);
    write_u16(buf, f, value);
}

/// In the big-endian `u32` at `f`, replace the bits under `mask` by those of `bits`.
#[inline]
fn write_u32_bits(buf: &mut [u8], f: Field, mask: u32, bits: u32) {
    let value = (read_u32(buf, f.clone()) & !mask) | (bits & mask);
    write_u32(buf, f, value);
}

#[cfg(test)]
mod test {
    //! Whole-chain properties: whatever the bytes, walking Ethernet → tags → IP → L4 through the
    //! checked constructors and reading every field never panics. Then the shared field helpers
    //! and `packet_view!`, each writing into a buffer pre-filled with 0xa5 so that a byte
    //! written outside its field, or a field left unwritten, shows up.

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

    /// Captured valid frames of every kind the parsers know, as Ethernet frames: the seeds of
    /// the mutation property.
    fn captured_frames() -> Vec<Vec<u8>> {
        let eth = |ether_type: [u8; 2], l3: &[u8]| {
            let mut f = vec![
                2,
                0,
                0,
                0,
                0,
                1,
                2,
                0,
                0,
                0,
                0,
                2,
                ether_type[0],
                ether_type[1],
            ];
            f.extend_from_slice(l3);
            f
        };
        vec![
            udp::test::CAPTURED_ETH_IPV4_UDP.to_vec(),
            tcp::test::CAPTURED_ETH_IPV4_TCP_SYN.to_vec(),
            tcp::test::CAPTURED_ETH_IPV4_TCP_DATA.to_vec(),
            tcp::test::CAPTURED_ETH_IPV6_TCP_SYN.to_vec(),
            ipv6::test::CAPTURED_ETH_IPV6_UDP.to_vec(),
            ethernet::test::CAPTURED_ARP_REQUEST.to_vec(),
            eth([0x08, 0x00], &ipv4::test::CAPTURED_ICMP_UNREACH),
        ]
    }

    // The shared parsers' share of the long property run (`crate::fuzz`): random bytes,
    // plausible prefixes and mutated captured frames, each through the whole chain.
    proptest! {
        #![proptest_config(crate::fuzz::config())]

        #[test]
        fn chain_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            parse_chain(&bytes);
        }

        #[test]
        fn chain_never_panics_on_plausible_frames(frame in frame_strategy()) {
            parse_chain(&frame);
        }

        /// Captured valid frames with a few bytes overwritten and maybe cut short or grown.
        #[test]
        fn chain_never_panics_on_mutated_frames(
            which in any::<proptest::sample::Index>(),
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
            cut in proptest::option::weighted(0.2, any::<proptest::sample::Index>()),
            grow in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let all = captured_frames();
            let mut f = all[which.index(all.len())].clone();
            for (at, v) in flips {
                let i = at.index(f.len());
                f[i] = v;
            }
            if let Some(c) = cut {
                f.truncate(c.index(f.len() + 1));
            }
            f.extend_from_slice(&grow);
            parse_chain(&f);
        }
    }

    #[test]
    fn chain_reaches_l4_on_captured_udp() {
        assert_eq!(parse_chain(&udp::test::CAPTURED_ETH_IPV4_UDP), 4);
    }

    /// A view with a 4-byte header (a u16 at 0..2, a byte at 2, a flag bit in byte 3), declared
    /// the way the protocol files declare theirs.
    mod demo {
        use super::super::{Result, check_min_len, read_u16};

        packet_view! {
            /// A view of the demo header.
        }

        impl<T: AsRef<[u8]>> Packet<T> {
            /// `Err(Truncated)` below 4 bytes.
            pub fn check_len(&self) -> Result<()> {
                check_min_len(self.buffer.as_ref(), 4)
            }

            /// The u16 at 0..2.
            pub fn word(&self) -> u16 {
                read_u16(self.buffer.as_ref(), 0..2)
            }
        }
    }

    #[test]
    fn packet_view_contract() {
        let bytes = [0x12, 0x34, 0x56, 0x78, 0x9a];
        assert_eq!(
            demo::Packet::new_checked(&bytes[..3]).unwrap_err(),
            Error::Truncated
        );
        let p = demo::Packet::new_checked(&bytes[..4]).unwrap();
        assert_eq!(p.word(), 0x1234);
        assert_eq!(p.as_ref(), &bytes[..4]);
        assert_eq!(p.into_inner(), &bytes[..4]);
        // Unchecked wraps anything; it is `const`.
        const EMPTY: demo::Packet<&[u8]> = demo::Packet::new_unchecked(&[]);
        assert_eq!(EMPTY.check_len(), Err(Error::Truncated));
        assert_eq!(EMPTY, demo::Packet::new_unchecked(&[][..]));
    }

    #[test]
    fn check_min_len_bounds() {
        assert_eq!(check_min_len(&[0; 7], 8), Err(Error::Truncated));
        assert_eq!(check_min_len(&[0; 8], 8), Ok(()));
        assert_eq!(check_min_len(&[0; 9], 8), Ok(()));
        assert_eq!(check_min_len(&[], 0), Ok(()));
    }

    #[test]
    fn read_fields() {
        let b = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06];
        assert_eq!(read_u16(&b, 0..2), 0x0102);
        assert_eq!(read_u16(&b, 4..6), 0x0506);
        assert_eq!(read_u32(&b, 1..5), 0x0203_0405);
        assert_eq!(read_array::<3>(&b, 3..6), [0x04, 0x05, 0x06]);
        assert_eq!(read_array::<0>(&b, 6..6), [0u8; 0]);
    }

    #[test]
    fn write_fields() {
        let mut buf = [0xa5u8; 9];
        write_u16(&mut buf, 1..3, 0x1234);
        assert_eq!(buf, [0xa5, 0x12, 0x34, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5]);
        write_u32(&mut buf, 4..8, 0xdead_beef);
        assert_eq!(buf, [0xa5, 0x12, 0x34, 0xa5, 0xde, 0xad, 0xbe, 0xef, 0xa5]);
        // What etherparse writes for the same fields: a UDP header's ports and a TCP sequence
        // number.
        let udp = etherparse::UdpHeader {
            source_port: 0x1234,
            destination_port: 0xa5a5,
            length: 0xa5a5,
            checksum: 0xa5a5,
        };
        let mut b = [0xa5u8; 8];
        write_u16(&mut b, udp::field::SRC_PORT, 0x1234);
        assert_eq!(b, udp.to_bytes());
        let tcp = etherparse::TcpHeader::new(1, 2, 0xdead_beef, 3).to_bytes();
        let mut b = [0xa5u8; 4];
        write_u32(&mut b, 0..4, 0xdead_beef);
        assert_eq!(b, tcp[tcp::field::SEQ_NUM]);
    }

    #[test]
    fn write_bits_keep_the_rest() {
        let mut buf = [0xa5u8; 4];
        write_u8_bits(&mut buf, 1, 0xf0, 0x3c);
        assert_eq!(buf, [0xa5, 0x35, 0xa5, 0xa5]);
        write_u16_bits(&mut buf, 2..4, 0x0ff0, 0xffff);
        assert_eq!(buf, [0xa5, 0x35, 0xaf, 0xf5]);
        let mut buf = [0xa5u8; 6];
        write_u32_bits(&mut buf, 1..5, 0x000f_ffff, 0x1234_5678);
        assert_eq!(buf, [0xa5, 0xa5, 0xa4, 0x56, 0x78, 0xa5]);
    }

    #[test]
    fn swap_fields_exchanges_only_the_two() {
        let mut buf = [0xa5, 1, 2, 3, 0xa5, 4, 5, 6, 0xa5];
        swap_fields(&mut buf, 1..4, 5..8);
        assert_eq!(buf, [0xa5, 4, 5, 6, 0xa5, 1, 2, 3, 0xa5]);
        // Adjacent fields.
        let mut buf = [1, 2, 3, 4];
        swap_fields(&mut buf, 0..2, 2..4);
        assert_eq!(buf, [3, 4, 1, 2]);
    }

    #[test]
    fn store_checksum_fills_only_its_field() {
        // The captured IPv4 header with its checksum field left at 0xa5 0xa5.
        let ip = &udp::test::CAPTURED_ETH_IPV4_UDP[14..34];
        let mut buf = [0xa5u8; 21];
        buf[..20].copy_from_slice(ip);
        buf[ipv4::field::CHECKSUM].fill(0xa5);
        let c = store_checksum(&mut buf[..20], ipv4::field::CHECKSUM, 0);
        assert_eq!(c, 0x73ad);
        assert_eq!(&buf[..20], ip);
        assert_eq!(buf[20], 0xa5);
        assert!(checksum_ok(0, &buf[..20]));
        assert!(!checksum_ok(1, &buf[..20]));
    }

    proptest! {
        #[test]
        fn fields_round_trip(start in 0usize..8, v16 in any::<u16>(), v32 in any::<u32>()) {
            let mut buf = [0xa5u8; 12];
            write_u16(&mut buf, start..start + 2, v16);
            prop_assert_eq!(read_u16(&buf, start..start + 2), v16);
            prop_assert!(buf[..start].iter().chain(&buf[start + 2..]).all(|&b| b == 0xa5));
            let mut buf = [0xa5u8; 12];
            write_u32(&mut buf, start..start + 4, v32);
            prop_assert_eq!(read_u32(&buf, start..start + 4), v32);
            prop_assert_eq!(read_array::<4>(&buf, start..start + 4), v32.to_be_bytes());
            prop_assert!(buf[..start].iter().chain(&buf[start + 4..]).all(|&b| b == 0xa5));
        }

        #[test]
        fn bits_replace_exactly_the_mask(old in any::<u32>(), mask in any::<u32>(), bits in any::<u32>()) {
            let mut buf = [0xa5u8; 6];
            write_u32(&mut buf, 1..5, old);
            write_u32_bits(&mut buf, 1..5, mask, bits);
            prop_assert_eq!(read_u32(&buf, 1..5), (old & !mask) | (bits & mask));
            prop_assert_eq!((buf[0], buf[5]), (0xa5, 0xa5));

            let (old, mask, bits) = (old as u16, mask as u16, bits as u16);
            let mut buf = [0xa5u8; 4];
            write_u16(&mut buf, 1..3, old);
            write_u16_bits(&mut buf, 1..3, mask, bits);
            prop_assert_eq!(read_u16(&buf, 1..3), (old & !mask) | (bits & mask));
            prop_assert_eq!((buf[0], buf[3]), (0xa5, 0xa5));

            let (old, mask, bits) = (old as u8, mask as u8, bits as u8);
            let mut buf = [0xa5, old, 0xa5];
            write_u8_bits(&mut buf, 1, mask, bits);
            prop_assert_eq!(buf, [0xa5, (old & !mask) | (bits & mask), 0xa5]);
        }

        #[test]
        fn stored_checksum_verifies(data in proptest::collection::vec(any::<u8>(), 2..64),
                                    at in any::<proptest::sample::Index>(), pseudo in any::<u16>()) {
            // Checksum fields sit on 16-bit word boundaries of what they cover.
            let at = at.index(data.len() / 2) * 2;
            prop_assume!(at + 2 <= data.len());
            let mut buf = data.clone();
            let c = store_checksum(&mut buf, at..at + 2, pseudo);
            prop_assert_eq!(read_u16(&buf, at..at + 2), c);
            prop_assert!(checksum_ok(pseudo, &buf));
            // Every other byte is as it was.
            prop_assert_eq!(&buf[..at], &data[..at]);
            prop_assert_eq!(&buf[at + 2..], &data[at + 2..]);
        }
    }
}
