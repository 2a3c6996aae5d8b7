//! IPv6 extension headers (RFC 8200 §4), walked only as far as finding what follows them:
//! [`upper_layer`] skips hop-by-hop, routing, destination-options, fragment and AH headers and
//! names the upper-layer protocol, where it starts and, if a fragment header was crossed, the
//! fragment's offset. Nothing here interprets options.

use super::{Error, IpProtocol, Result, read_u16};

/// Byte ranges of the fields the walk reads, from the start of an extension header.
pub mod field {
    use crate::wire::Field;
    /// Next header: the protocol of what follows this header.
    pub const NXT_HDR: usize = 0;
    /// Header length: 8-byte units after the first 8 (AH: 4-byte units after the first 8).
    pub const LENGTH: usize = 1;
    /// Fragment header: offset (13 bits, 8-byte units), two reserved bits, M flag.
    pub const FRAG_OFF: Field = 2..4;
}

/// Length of a fragment header, and the unit of the other headers' lengths.
pub const FRAGMENT_LEN: usize = 8;

/// Most extension headers [`upper_layer`] walks before giving up.
pub const MAX_HEADERS: usize = 8;

/// Authentication header (RFC 4302): its length counts 4-byte units.
const AH: IpProtocol = IpProtocol(51);
const OFFSET_MASK: u16 = 0xfff8;
const FLAG_M: u16 = 0x0001;

/// What follows an IPv6 packet's extension headers, found by [`upper_layer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (or, after a non-first fragment's header, whatever its next
    /// header field says).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub offset: usize,
    /// The fragment offset in bytes, if a fragment header was walked (0: the first fragment).
    pub frag_offset: Option<u16>,
    /// The fragment header's more-fragments flag (false without a fragment header).
    pub more_frags: bool,
}

/// Walk the extension headers at the start of `payload` (an IPv6 payload whose first header is
/// `next_header`) to the upper layer. The walk stops at the first protocol that is not an
/// extension header, and right after the fragment header of a non-first fragment (what follows
/// it is not a header).
///
/// `Err(Truncated)` if a header reaches past `payload`; `Err(Malformed)` after
/// [`MAX_HEADERS`] headers.
pub fn upper_layer(next_header: IpProtocol, payload: &[u8]) -> Result<UpperLayer> {
    let mut out = UpperLayer {
        protocol: next_header,
        offset: 0,
        frag_offset: None,
        more_frags: false,
    };
    for _ in 0..MAX_HEADERS {
        let len = match out.protocol {
            IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_OPTS => {
                (usize::from(*byte(payload, out.offset + field::LENGTH)?) + 1) * 8
            }
            AH => (usize::from(*byte(payload, out.offset + field::LENGTH)?) + 2) * 4,
            IpProtocol::IPV6_FRAG => FRAGMENT_LEN,
            _ => return Ok(out),
        };
        let header = payload
            .get(out.offset..out.offset + len)
            .ok_or(Error::Truncated)?;
        if out.protocol == IpProtocol::IPV6_FRAG {
            let word = read_u16(header, field::FRAG_OFF);
            out.frag_offset = Some(word & OFFSET_MASK);
            out.more_frags = word & FLAG_M != 0;
        }
        out.protocol = IpProtocol(header[field::NXT_HDR]);
        out.offset += len;
        if out.frag_offset.is_some_and(|o| o != 0) {
            return Ok(out);
        }
    }
    match out.protocol {
        IpProtocol::HOP_BY_HOP
        | IpProtocol::IPV6_ROUTE
        | IpProtocol::IPV6_OPTS
        | IpProtocol::IPV6_FRAG
        | AH => Err(Error::Malformed),
        _ => Ok(out),
    }
}

#[inline]
fn byte(buf: &[u8], at: usize) -> Result<&u8> {
    buf.get(at).ok_or(Error::Truncated)
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    /// Hop-by-hop (8 bytes, PadN) → destination options (16 bytes) → fragment (offset 0, M) →
    /// ICMPv6.
    fn chain(frag_word: u16) -> Vec<u8> {
        let mut p = vec![60, 0, 1, 4, 0, 0, 0, 0];
        p.extend_from_slice(&[44, 1, 1, 12]);
        p.extend_from_slice(&[0; 12]);
        p.extend_from_slice(&[58, 0]);
        p.extend_from_slice(&frag_word.to_be_bytes());
        p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // ICMPv6 dst unreachable
        p
    }

    #[test]
    fn walks_to_the_upper_layer() {
        let p = chain(0x0001);
        let u = upper_layer(IpProtocol::HOP_BY_HOP, &p).unwrap();
        assert_eq!(
            u,
            UpperLayer {
                protocol: IpProtocol::ICMPV6,
                offset: 32,
                frag_offset: Some(0),
                more_frags: true
            }
        );
        // Oracle: etherparse walks the same chain.
        let (exts, next, rest) =
            etherparse::Ipv6ExtensionsSlice::from_slice(etherparse::IpNumber(0), &p).unwrap();
        assert_eq!(next.0, u.protocol.0);
        assert_eq!(rest.len(), p.len() - u.offset);
        assert!(exts.is_fragmenting_payload());

        let u = upper_layer(IpProtocol::UDP, &p).unwrap();
        assert_eq!(
            (u.protocol, u.offset, u.frag_offset),
            (IpProtocol::UDP, 0, None)
        );
    }

    #[test]
    fn stops_after_a_non_first_fragment() {
        let p = chain(0x00a8); // offset 168 bytes, last fragment
        let u = upper_layer(IpProtocol::HOP_BY_HOP, &p).unwrap();
        assert_eq!(
            (u.protocol, u.offset, u.frag_offset, u.more_frags),
            (IpProtocol::ICMPV6, 32, Some(168), false)
        );
    }

    #[test]
    fn truncated_and_too_many() {
        let p = chain(0);
        for len in [0, 1, 7, 8, 9, 23, 31] {
            assert_eq!(
                upper_layer(IpProtocol::HOP_BY_HOP, &p[..len]),
                Err(Error::Truncated),
                "{len}"
            );
        }
        // Nine destination-options headers in a row.
        let mut many = Vec::new();
        for _ in 0..9 {
            many.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            upper_layer(IpProtocol::IPV6_OPTS, &many),
            Err(Error::Malformed)
        );
        // AH counts 4-byte units: length 1 is 12 bytes.
        let mut ah = vec![17, 1, 0, 0];
        ah.extend_from_slice(&[0; 8]);
        let u = upper_layer(AH, &ah).unwrap();
        assert_eq!((u.protocol, u.offset), (IpProtocol::UDP, 12));
    }

    proptest! {
        #[test]
        fn never_panics(nh in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(u) = upper_layer(IpProtocol(nh), &bytes) {
                prop_assert!(u.offset <= bytes.len());
            }
        }
    }
}
