//! Longest-prefix match: one hash map per prefix length that has routes, probed longest first.
//!
//! Why this and not a trie or DIR-24-8: the tables this engine forwards from are a host's or a
//! small router's — a handful of prefix lengths (`/32`, `/24`, `/0`; `/128`, `/64`, `/0`) — so a
//! lookup is that handful of masked hash probes, each one cache miss at most, the same code for
//! IPv4 and IPv6, and a build that is a few map inserts (the table is rebuilt whole on every
//! kernel change). DIR-24-8 costs 32 MiB per table and per rebuild to win only with many
//! lengths; a binary trie walks up to 32/128 dependent pointers. With a full Internet table
//! (about 25 IPv4 lengths) this would be the thing to replace, behind the same interface.
//!
//! Keys are masked prefixes; the hasher is a multiply-xorshift one (below), not SipHash: the
//! keys are the kernel's routes, chosen by the administrator, so there is no flooding to resist,
//! and a lookup must cost a few nanoseconds. Lookups never allocate.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A fast hasher for integer keys: each word is folded in with a multiply, and `finish` mixes all
/// 64 bits (murmur3's finalizer) so masked prefixes — whose low bits are all zero — still spread
/// over the buckets a `HashMap` picks from the low bits.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IntHasher(u64);

impl IntHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for IntHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..b.len()].copy_from_slice(b);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// A `HashMap` with [`IntHasher`].
pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// An address as a big-endian integer (`u32` for IPv4, `u128` for IPv6).
pub(crate) trait Bits: Copy + Eq + Hash {
    /// Address width in bits.
    const WIDTH: u8;
    /// `self` with all but the first `len` bits cleared.
    fn mask(self, len: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    #[inline]
    fn mask(self, len: u8) -> Self {
        self & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    #[inline]
    fn mask(self, len: u8) -> Self {
        self & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }
}

/// A prefix → value table with longest-prefix-match lookup. Built once, then read-only.
#[derive(Clone, Debug)]
pub(crate) struct PrefixTable<K, V> {
    /// The prefix lengths that have entries, longest first, each with its map of masked
    /// prefixes.
    by_len: Vec<(u8, IntMap<K, V>)>,
}

impl<K: Bits, V> Default for PrefixTable<K, V> {
    fn default() -> Self {
        PrefixTable { by_len: Vec::new() }
    }
}

impl<K: Bits, V> PrefixTable<K, V> {
    /// Whether `prefix/len` has an entry.
    pub(crate) fn contains(&self, prefix: K, len: u8) -> bool {
        self.by_len
            .iter()
            .find(|(l, _)| *l == len)
            .is_some_and(|(_, m)| m.contains_key(&prefix.mask(len)))
    }

    /// Adds `prefix/len` (host bits are cleared) unless it already has an entry: the first insert
    /// wins, so the builder inserts in order of preference. Lengths above the width are ignored.
    pub(crate) fn insert_first(&mut self, prefix: K, len: u8, value: V) {
        if len > K::WIDTH {
            return;
        }
        let i = match self.by_len.iter().position(|(l, _)| *l <= len) {
            Some(i) if self.by_len[i].0 == len => i,
            Some(i) => {
                self.by_len.insert(i, (len, IntMap::default()));
                i
            }
            None => {
                self.by_len.push((len, IntMap::default()));
                self.by_len.len() - 1
            }
        };
        self.by_len[i].1.entry(prefix.mask(len)).or_insert(value);
    }

    /// The value of the longest prefix that contains `addr`.
    #[inline]
    pub(crate) fn lookup(&self, addr: K) -> Option<&V> {
        self.by_len
            .iter()
            .find_map(|(len, map)| map.get(&addr.mask(*len)))
    }

    /// Number of prefixes.
    pub(crate) fn len(&self) -> usize {
        self.by_len.iter().map(|(_, m)| m.len()).sum()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn longest_first_whatever_the_insert_order() {
        let mut t = PrefixTable::<u32, &str>::default();
        t.insert_first(0x0a01_0200, 24, "24");
        t.insert_first(0, 0, "default");
        t.insert_first(0x0a01_0203, 32, "32");
        t.insert_first(0x0a00_0000, 8, "8");
        t.insert_first(0x0aff_ffff, 8, "8 again: first wins");
        assert_eq!(t.lookup(0x0a01_0203), Some(&"32"));
        assert_eq!(t.lookup(0x0a01_0204), Some(&"24"));
        assert_eq!(t.lookup(0x0a02_0000), Some(&"8"));
        assert_eq!(t.lookup(0x0b00_0000), Some(&"default"));
        assert_eq!(t.len(), 4);
        assert!(t.contains(0x0a01_02ff, 24));
        assert!(!t.contains(0x0a01_02ff, 25));
        let lens: Vec<u8> = t.by_len.iter().map(|(l, _)| *l).collect();
        assert_eq!(lens, [32, 24, 8, 0]);
    }

    #[test]
    fn v6_and_empty() {
        let mut t = PrefixTable::<u128, u8>::default();
        assert_eq!(t.lookup(1), None);
        let p: u128 = 0x2001_0db8 << 96;
        t.insert_first(p, 32, 32);
        t.insert_first(p | (1 << 80), 48, 48);
        t.insert_first(p | 5, 128, 128);
        t.insert_first(p, 129, 0); // ignored
        assert_eq!(t.lookup(p | 5), Some(&128));
        assert_eq!(t.lookup(p | (1 << 80) | 7), Some(&48));
        assert_eq!(t.lookup(p | 7), Some(&32));
        assert_eq!(t.lookup(1), None);
    }

    #[test]
    fn masks() {
        assert_eq!(0xffff_ffffu32.mask(0), 0);
        assert_eq!(0xffff_ffffu32.mask(24), 0xffff_ff00);
        assert_eq!(0xffff_ffffu32.mask(32), 0xffff_ffff);
        assert_eq!(u128::MAX.mask(64), u128::MAX << 64);
        assert_eq!(u128::MAX.mask(128), u128::MAX);
    }
}
