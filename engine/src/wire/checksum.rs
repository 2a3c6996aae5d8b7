//! The Internet checksum (RFC 1071): full sums, IPv4/IPv6 pseudo-header sums, and the RFC 1624
//! incremental update.
//!
//! Sums are 16-bit ones-complement sums of big-endian 16-bit words, folded to 16 bits and *not*
//! complemented; a header's checksum field holds the complement of the sum of everything it
//! covers. Combine partial sums with [`add`] / [`combine`], complement once at the end:
//!
//! ```
//! use sluice::wire::checksum;
//! let header = [0x45u8, 0x00, 0x00, 0x1c];
//! let payload = [0x12u8, 0x34];
//! let field = !checksum::combine(&[checksum::data(&header), checksum::data(&payload)]);
//! assert_eq!(field, !checksum::data(&[0x45, 0x00, 0x00, 0x1c, 0x12, 0x34]));
//! ```
//!
//! A region that includes its own (correct) checksum field sums to `0xffff`.

use super::IpProtocol;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Ones-complement addition of two 16-bit values (end-around carry).
#[inline]
pub const fn add(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// Ones-complement sum of several partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u64 = 0;
    for &s in sums {
        acc += u64::from(s);
    }
    fold(acc)
}

/// Fold a wide accumulator of 16-bit-word sums to a 16-bit ones-complement sum.
///
/// `2^16 ≡ 1 (mod 2^16 - 1)`, so adding the high half onto the low half preserves the value
/// modulo `0xffff`; repeating until nothing is left above bit 15 is the end-around carry.
#[inline]
const fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// Eight native-endian 32-bit words of a 32-byte block, widened to `u64`.
#[inline(always)]
fn ne_words(block: &[u8; 32]) -> [u64; 8] {
    core::array::from_fn(|i| {
        let o = i * 4;
        u64::from(u32::from_ne_bytes([
            block[o],
            block[o + 1],
            block[o + 2],
            block[o + 3],
        ]))
    })
}

/// Ones-complement sum of `data` taken as big-endian 16-bit words, an odd last byte padded with a
/// zero byte on the right (RFC 1071). Folded to 16 bits, not complemented.
///
/// Returns 0 only for all-zero input; any other input whose sum is ones-complement zero gives
/// `0xffff`.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    // Why the loop looks like this:
    //
    // * It loads words in native byte order and swaps the 16-bit result once at the end. The
    //   ones-complement sum is byte-order independent (RFC 1071 §2(B)): summing byte-swapped
    //   words gives the byte-swapped sum. That saves a `bswap` per load on little-endian hosts
    //   and lets the compiler vectorise the loop.
    // * It adds 32-bit words, not 16-bit ones: a 32-bit word `hi·2^16 + lo` is congruent to
    //   `hi + lo` modulo 0xffff, so summing 32-bit words and folding at the end gives the same
    //   ones-complement sum with half the additions.
    // * The accumulators are `u64`, so the end-around carry is deferred to `fold`: a `u32` added
    //   to a `u64` cannot overflow it for 2^32 additions (16 GiB of data), far beyond any frame.
    //   No carry flag is needed inside the loop, so it is plain integer adds.
    // * It is unrolled to a 32-byte block feeding four independent accumulators. One accumulator
    //   makes every add wait for the previous one (a dependency chain one add long per word);
    //   four chains let a superscalar core retire several adds per cycle, and the fixed-size
    //   block lets the compiler drop every bounds check. 32 bytes is a 64-byte frame in two
    //   iterations; a larger block only lengthens the tail for small frames.
    //
    // Measured on the reference machine: about half the time of the same loop with big-endian
    // loads (≈40 ns vs ≈85 ns for 1500 bytes, ≈4 ns for 64 bytes).
    let (blocks, rest) = data.as_chunks::<32>();
    let (mut s0, mut s1, mut s2, mut s3) = (0u64, 0u64, 0u64, 0u64);
    for block in blocks {
        let [w0, w1, w2, w3, w4, w5, w6, w7] = ne_words(block);
        s0 += w0 + w4;
        s1 += w1 + w5;
        s2 += w2 + w6;
        s3 += w3 + w7;
    }
    let (words, tail) = rest.as_chunks::<4>();
    for w in words {
        s0 += u64::from(u32::from_ne_bytes(*w));
    }
    // The odd byte is the *high* byte of its big-endian word: pad it with a zero on the right.
    match *tail {
        [a, b, c] => {
            s1 += u64::from(u16::from_ne_bytes([a, b])) + u64::from(u16::from_ne_bytes([c, 0]))
        }
        [a, b] => s1 += u64::from(u16::from_ne_bytes([a, b])),
        [a] => s1 += u64::from(u16::from_ne_bytes([a, 0])),
        _ => {}
    }
    // The folded sum is in native order; `from_be` is the one swap back (a no-op on big-endian).
    u16::from_be(fold(s0 + s1 + s2 + s3))
}

/// The reference implementation: one 16-bit word at a time. Kept for the tests, which check the
/// unrolled [`data`] against it.
#[cfg(test)]
pub(crate) fn data_reference(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    let (words, tail) = data.as_chunks::<2>();
    for w in words {
        acc += u32::from(u16::from_be_bytes(*w));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [b] = *tail {
        acc += u32::from(b) << 8;
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Sum of the IPv4 pseudo-header (RFC 768, RFC 9293): source, destination, zero + protocol, and
/// the upper-layer length. Not complemented.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, length: u32) -> u16 {
    let acc = u64::from(u32::from_be_bytes(src.octets()))
        + u64::from(u32::from_be_bytes(dst.octets()))
        + u64::from(protocol.0)
        + u64::from(length);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit upper-layer
/// length, zero + next header. Not complemented.
#[inline]
pub fn pseudo_header_v6(
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    next_header: IpProtocol,
    length: u32,
) -> u16 {
    let s = src.to_bits();
    let d = dst.to_bits();
    let mut acc: u64 = u64::from(next_header.0) + u64::from(length);
    // A 128-bit address is four 32-bit words; 2^32 ≡ 1 (mod 0xffff) as well, so its two 64-bit
    // halves can be folded like any wider word.
    for half in [
        s >> 64,
        s & u128::from(u64::MAX),
        d >> 64,
        d & u128::from(u64::MAX),
    ] {
        let half = half as u64;
        acc += (half >> 32) + (half & 0xffff_ffff);
    }
    fold(acc)
}

/// RFC 1624 incremental update of checksum field `hc` after one 16-bit word of the covered data
/// changed from `old` to `new`: `HC' = ~(~HC + ~m + m')` (eqn. 3).
///
/// Eqn. 3, unlike the older RFC 1141 form, never turns a valid checksum into the
/// ones-complement "-0" that a full recomputation would not produce. The word must be
/// 16-bit aligned relative to the start of the checksummed region.
#[inline]
pub const fn update_word(hc: u16, old: u16, new: u16) -> u16 {
    !add(add(!hc, !old), new)
}

/// RFC 1624 update of checksum field `hc` after a 4-byte field (an IPv4 address, a TCP sequence
/// number) changed from `old` to `new`. The field must be 16-bit aligned.
#[inline]
pub const fn update_addr4(hc: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let acc = (!hc) as u64
        + (!u16::from_be_bytes([old[0], old[1]])) as u64
        + (!u16::from_be_bytes([old[2], old[3]])) as u64
        + u16::from_be_bytes([new[0], new[1]]) as u64
        + u16::from_be_bytes([new[2], new[3]]) as u64;
    !fold(acc)
}

/// RFC 1624 update of checksum field `hc` after a 16-byte field (an IPv6 address) changed from
/// `old` to `new`. The field must be 16-bit aligned.
#[inline]
pub fn update_addr16(hc: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut acc = u64::from(!hc);
    let (o, _) = old.as_chunks::<2>();
    let (n, _) = new.as_chunks::<2>();
    for (o, n) in o.iter().zip(n) {
        acc += u64::from(!u16::from_be_bytes(*o)) + u64::from(u16::from_be_bytes(*n));
    }
    !fold(acc)
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    /// IPv4 header of a captured UDP datagram (10.99.0.1 → 10.99.0.2), checksum 0x73ad.
    const CAPTURED_IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x2f, 0xb2, 0x48, 0x40, 0x00, 0x40, 0x11, 0x73, 0xad, 0x0a, 0x63, 0x00,
        0x01, 0x0a, 0x63, 0x00, 0x02,
    ];

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (before complement).
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn captured_header_verifies() {
        assert_eq!(data(&CAPTURED_IPV4_HEADER), 0xffff);
        let mut h = CAPTURED_IPV4_HEADER;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(!data(&h), 0x73ad);
    }

    #[test]
    fn edge_values() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0; 64]), 0);
        assert_eq!(data(&[0xff]), 0xff00);
        assert_eq!(data(&[0xff; 2]), 0xffff);
        assert_eq!(data(&[0xff; 1500]), 0xffff);
        assert_eq!(add(0xffff, 1), 1);
        assert_eq!(combine(&[0x8000, 0x8000]), 1);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 → m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(update_word(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn pseudo_header_matches_etherparse_udp() {
        let src = [10, 99, 0, 1];
        let dst = [10, 99, 0, 2];
        let payload = b"sluice reflect test";
        let mut h =
            etherparse::UdpHeader::without_ipv4_checksum(37478, 4791, payload.len()).unwrap();
        h.checksum = h.calc_checksum_ipv4_raw(src, dst, payload).unwrap();
        assert_eq!(h.checksum, 0xa9fc); // as captured
        let mut udp = h.to_bytes().to_vec();
        udp.extend_from_slice(payload);
        let ph = pseudo_header_v4(src.into(), dst.into(), IpProtocol::UDP, udp.len() as u32);
        assert_eq!(combine(&[ph, data(&udp)]), 0xffff);

        let s6: [u8; 16] = [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let d6: [u8; 16] = [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let h = etherparse::UdpHeader::without_ipv4_checksum(51212, 4791, 13).unwrap();
        let ck = h.calc_checksum_ipv6_raw(s6, d6, b"sluice v6 udp").unwrap();
        assert_eq!(ck, 0xa193); // as captured
        let ph = pseudo_header_v6(&s6.into(), &d6.into(), IpProtocol::UDP, 21);
        let mut udp = h.to_bytes().to_vec();
        udp[6..8].copy_from_slice(&ck.to_be_bytes());
        udp.extend_from_slice(b"sluice v6 udp");
        assert_eq!(combine(&[ph, data(&udp)]), 0xffff);
    }

    proptest! {
        #[test]
        fn unrolled_equals_reference(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(data(&bytes), data_reference(&bytes));
        }

        #[test]
        fn split_sums_combine(bytes in proptest::collection::vec(any::<u8>(), 0..600), cut in any::<usize>()) {
            // Any even split point gives the same total.
            let cut = (cut % (bytes.len() + 1)) & !1;
            let (a, b) = bytes.split_at(cut);
            prop_assert_eq!(add(data(a), data(b)), data(&bytes));
        }

        #[test]
        fn pseudo_v4_matches_byte_sum(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), proto in any::<u8>(), len in any::<u16>()) {
            let mut ph = Vec::new();
            ph.extend_from_slice(&src);
            ph.extend_from_slice(&dst);
            ph.extend_from_slice(&[0, proto]);
            ph.extend_from_slice(&len.to_be_bytes());
            let expect = data_reference(&ph);
            let got = pseudo_header_v4(src.into(), dst.into(), IpProtocol(proto), u32::from(len));
            // Both are the same value modulo 0xffff; they can differ only in 0 vs 0xffff when the
            // input is all zero.
            prop_assert_eq!(got % 0xffff, expect % 0xffff);
        }

        #[test]
        fn pseudo_v6_matches_byte_sum(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(), len in any::<u32>()) {
            let mut ph = Vec::new();
            ph.extend_from_slice(&src);
            ph.extend_from_slice(&dst);
            ph.extend_from_slice(&len.to_be_bytes());
            ph.extend_from_slice(&[0, 0, 0, nh]);
            let expect = data_reference(&ph);
            let got = pseudo_header_v6(&src.into(), &dst.into(), IpProtocol(nh), len);
            prop_assert_eq!(got % 0xffff, expect % 0xffff);
        }

        /// Random data (first byte nonzero, as in every real header) with a valid checksum at
        /// offset 0..2; change a random word, a random 4-byte or 16-byte field: the incremental
        /// update equals the full recomputation, bit for bit.
        #[test]
        fn incremental_equals_full(
            mut buf in proptest::collection::vec(any::<u8>(), 40..200),
            first in 1u8..,
            at in any::<usize>(),
            new16 in any::<[u8; 16]>(),
            kind in 0u8..3,
        ) {
            buf[2] = first; // keep the data (checksum excluded) nonzero
            buf[0] = 0;
            buf[1] = 0;
            let hc = !data(&buf);
            buf[0..2].copy_from_slice(&hc.to_be_bytes());
            prop_assert_eq!(data(&buf), 0xffff);

            // A 16-bit-aligned field after the checksum field, past byte 2 so `first` survives.
            let width = [2usize, 4, 16][kind as usize];
            let slots = (buf.len() - 4 - width) / 2;
            let off = 4 + (at % (slots + 1)) * 2;
            let old = buf[off..off + width].to_vec();
            let new = &new16[..width];
            let updated = match width {
                2 => update_word(hc, u16::from_be_bytes([old[0], old[1]]), u16::from_be_bytes([new[0], new[1]])),
                4 => update_addr4(hc, old[..].try_into().unwrap(), new.try_into().unwrap()),
                _ => update_addr16(hc, old[..].try_into().unwrap(), new.try_into().unwrap()),
            };
            buf[off..off + width].copy_from_slice(new);
            buf[0] = 0;
            buf[1] = 0;
            let full = !data(&buf);
            prop_assert_eq!(updated, full);
        }
    }
}
