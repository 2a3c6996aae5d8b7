//! ICMP errors a router sends (RFC 792/1812 for IPv4, RFC 4443 for IPv6), built in place in the
//! frame that caused them.
//!
//! The error reuses the received frame's buffer: the part of the offending packet to quote moves
//! up by the new IP + ICMP headers (an overlapping `copy_within`, no scratch buffer), the
//! Ethernet addresses are swapped (VLAN tags stay where they are), and the new headers are
//! written in front of the quote through [`ipv4::Repr`]/[`ipv6::Repr`] and the ICMP views.

use crate::wire::{
    EthernetFrame, Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, checksum,
    ethernet, icmpv4, icmpv6, ipv4, ipv6,
};
use std::net::{Ipv4Addr, Ipv6Addr};

/// TTL / hop limit of the errors sent.
pub(in crate::apps) const ERROR_TTL: u8 = 64;

/// DSCP of IPv4 errors: CS6, "internetwork control", as Linux sends them (RFC 1812 §4.3.2.5).
const ERROR_DSCP: u8 = 48;

/// An ICMPv6 error, quote included, must fit the IPv6 minimum MTU (RFC 4443 §2.4(c)).
pub(in crate::apps) const V6_MIN_MTU: usize = 1280;

/// Bytes of the offending IPv6 packet an error may quote.
pub(in crate::apps) const V6_MAX_QUOTE: usize = V6_MIN_MTU - ipv6::HEADER_LEN - icmpv6::HEADER_LEN;

/// Bytes of the offending datagram's data an IPv4 error quotes after its header (RFC 792).
pub(in crate::apps) const V4_QUOTE_DATA: usize = 8;

/// Why a packet is answered with an error, independent of the IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::apps) enum IcmpError {
    /// TTL / hop limit exhausted in transit.
    TimeExceeded,
    /// No route matched.
    NoRoute,
    /// An `unreachable` route.
    Unreachable,
    /// A `prohibit` route.
    Prohibited,
    /// Larger than the next hop's MTU (IPv4 with DF: fragmentation needed; IPv6: packet too
    /// big), with that MTU.
    TooBig(u32),
    /// IPv6 only: a link-local source would leave its link.
    BeyondScope,
}

impl IcmpError {
    /// ICMPv4 type, code and rest-of-header.
    pub(in crate::apps) fn v4(self) -> (icmpv4::Message, u8, [u8; 4]) {
        use icmpv4::Message as M;
        match self {
            IcmpError::TimeExceeded => (M::TIME_EXCEEDED, 0, [0; 4]),
            IcmpError::NoRoute => (M::DST_UNREACHABLE, 0, [0; 4]), // net unreachable
            // Host unreachable, as Linux answers for an `unreachable` route.
            IcmpError::Unreachable => (M::DST_UNREACHABLE, 1, [0; 4]),
            IcmpError::Prohibited => (M::DST_UNREACHABLE, 13, [0; 4]),
            IcmpError::TooBig(mtu) => {
                // RFC 1191: the next-hop MTU in the low 16 bits.
                let [hi, lo] = u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes();
                (M::DST_UNREACHABLE, 4, [0, 0, hi, lo])
            }
            // Not produced for IPv4; net unreachable is the nearest meaning.
            IcmpError::BeyondScope => (M::DST_UNREACHABLE, 0, [0; 4]),
        }
    }

    /// ICMPv6 type, code and message-body word.
    pub(in crate::apps) fn v6(self) -> (icmpv6::Message, u8, [u8; 4]) {
        use icmpv6::Message as M;
        match self {
            IcmpError::TimeExceeded => (M::TIME_EXCEEDED, 0, [0; 4]),
            // Linux answers both a missing route and an `unreachable` route with "no route".
            IcmpError::NoRoute | IcmpError::Unreachable => (M::DST_UNREACHABLE, 0, [0; 4]),
            IcmpError::Prohibited => (M::DST_UNREACHABLE, 1, [0; 4]),
            IcmpError::BeyondScope => (M::DST_UNREACHABLE, 2, [0; 4]),
            IcmpError::TooBig(mtu) => (M::PKT_TOO_BIG, 0, mtu.to_be_bytes()),
        }
    }
}

/// Bytes from the start of the IP header to the quote: the new IP and ICMP headers.
pub(in crate::apps) const fn headers_len(v6: bool) -> usize {
    if v6 {
        ipv6::HEADER_LEN + icmpv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN + icmpv4::HEADER_LEN
    }
}

/// Turn the frame in `buf` (IP header at `l3`) into an IPv4 error from `src` to `dst`, quoting
/// the first `quote` bytes of the offending packet; returns the new frame length. `None`, with
/// `buf` untouched, if `buf` cannot hold it or `l3` leaves no room for an Ethernet header (the
/// caller has checked both).
pub(in crate::apps) fn emit_v4(
    buf: &mut [u8],
    l3: usize,
    quote: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    err: IcmpError,
) -> Option<usize> {
    let (ip_end, end) = layout(buf, l3, quote, false)?;
    buf.copy_within(l3..l3 + quote, ip_end + icmpv4::HEADER_LEN);
    EthernetFrame::new_unchecked(&mut *buf).swap_addrs();
    let icmp_len = end - ip_end;
    let repr = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::ICMP,
        payload_len: u16::try_from(icmp_len).ok()?,
        ttl: ERROR_TTL,
        dscp: ERROR_DSCP,
        ident: 0,
        dont_frag: true,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[l3..ip_end]));
    let (msg, code, rest) = err.v4();
    let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[ip_end..end]);
    icmp.set_msg_type(msg);
    icmp.set_msg_code(code);
    icmp.set_rest_of_header(rest);
    icmp.fill_checksum();
    Some(end)
}

/// [`emit_v4`] for IPv6: the checksum covers the pseudo-header.
pub(in crate::apps) fn emit_v6(
    buf: &mut [u8],
    l3: usize,
    quote: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    err: IcmpError,
) -> Option<usize> {
    let (ip_end, end) = layout(buf, l3, quote, true)?;
    buf.copy_within(l3..l3 + quote, ip_end + icmpv6::HEADER_LEN);
    EthernetFrame::new_unchecked(&mut *buf).swap_addrs();
    let icmp_len = end - ip_end;
    let repr = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: u16::try_from(icmp_len).ok()?,
        hop_limit: ERROR_TTL,
    };
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[l3..ip_end]));
    let (msg, code, rest) = err.v6();
    let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[ip_end..end]);
    icmp.set_msg_type(msg);
    icmp.set_msg_code(code);
    icmp.set_rest_of_header(rest);
    let pseudo = checksum::pseudo_header_v6(&src, &dst, IpProtocol::ICMPV6, icmp_len as u32);
    icmp.fill_checksum(pseudo);
    Some(end)
}

/// End of the new IP header and of the new frame, if `buf` holds both the quote where it is now
/// and where it goes, and an Ethernet header precedes `l3`.
fn layout(buf: &[u8], l3: usize, quote: usize, v6: bool) -> Option<(usize, usize)> {
    let ip_len = if v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let end = l3.checked_add(headers_len(v6))?.checked_add(quote)?;
    (l3 >= ethernet::HEADER_LEN && end <= buf.len()).then_some((l3 + ip_len, end))
}
