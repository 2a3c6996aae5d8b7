//! Domain names in wire form: reading a name out of a message (bounded, lower-cased, without
//! allocation), walking its suffixes, printing it for error messages, and the hasher the name
//! tables use.
//!
//! Names here are always uncompressed wire form (`\x03www\x07example\x03com\x00`). Lookups use
//! the lower-cased form (RFC 4343: ASCII letters only); what goes back on the wire keeps the
//! case it was written in.

use std::hash::{BuildHasherDefault, Hasher};

/// The longest name on the wire, length octets and the root label included (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;

/// At most this many labels, root excluded, fit in [`MAX_NAME_LEN`] octets.
pub const MAX_LABELS: usize = 127;

/// A name read from a message: its lower-cased wire form in a fixed buffer and where each label
/// starts, so every suffix is a sub-slice (`wire[starts[i]..len]`) with no copying.
pub struct ParsedName {
    wire: [u8; MAX_NAME_LEN],
    len: u8,
    starts: [u8; MAX_LABELS + 1],
    labels: u8,
}

/// Why a name in a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The message ends inside the name.
    Truncated,
    /// A label type other than a plain length (compression pointers are refused too: the
    /// question is the first name of a message, nothing before it could be pointed at).
    BadLabel,
    /// Longer than 255 octets.
    TooLong,
}

impl ParsedName {
    /// Reads the uncompressed name at `msg[at..]`. Returns it and the offset just past it.
    pub fn parse(msg: &[u8], at: usize) -> Result<(ParsedName, usize), NameError> {
        let mut n = ParsedName {
            wire: [0; MAX_NAME_LEN],
            len: 0,
            starts: [0; MAX_LABELS + 1],
            labels: 0,
        };
        let mut pos = at;
        let mut len = 0usize;
        loop {
            let l = *msg.get(pos).ok_or(NameError::Truncated)? as usize;
            if l & 0xc0 != 0 {
                return Err(NameError::BadLabel);
            }
            if len + 1 + l > MAX_NAME_LEN {
                return Err(NameError::TooLong);
            }
            let label = msg.get(pos + 1..pos + 1 + l).ok_or(NameError::Truncated)?;
            n.starts[n.labels as usize] = len as u8;
            n.wire[len] = l as u8;
            for (d, s) in n.wire[len + 1..len + 1 + l].iter_mut().zip(label) {
                *d = s.to_ascii_lowercase();
            }
            len += 1 + l;
            pos += 1 + l;
            if l == 0 {
                n.len = len as u8;
                return Ok((n, pos));
            }
            n.labels += 1;
        }
    }

    /// The lower-cased wire form.
    #[cfg(test)]
    pub fn wire(&self) -> &[u8] {
        &self.wire[..self.len as usize]
    }

    /// Number of labels, the root not counted.
    pub fn labels(&self) -> usize {
        self.labels as usize
    }

    /// The name without its first `skip` labels (`skip == labels()` gives the root).
    pub fn suffix(&self, skip: usize) -> &[u8] {
        &self.wire[self.starts[skip] as usize..self.len as usize]
    }

    /// Offset of label `skip` from the start of the name (where that suffix begins).
    pub fn suffix_offset(&self, skip: usize) -> usize {
        self.starts[skip] as usize
    }
}

/// Skips a possibly compressed name at `msg[at..]`; returns the offset just past it.
pub fn skip_name(msg: &[u8], at: usize) -> Option<usize> {
    let mut pos = at;
    loop {
        let l = *msg.get(pos)? as usize;
        match l & 0xc0 {
            0 if l == 0 => return Some(pos + 1),
            0 => {
                pos += 1 + l;
                if pos > msg.len() {
                    return None;
                }
            }
            0xc0 => return (pos + 2 <= msg.len()).then_some(pos + 2),
            _ => return None,
        }
    }
}

/// Lower-cases an uncompressed wire name (labels' lengths untouched).
pub fn to_lower(wire: &[u8]) -> Vec<u8> {
    let mut v = wire.to_vec();
    let mut i = 0;
    while i < v.len() {
        let l = v[i] as usize;
        for b in &mut v[i + 1..(i + 1 + l).min(wire.len())] {
            *b = b.to_ascii_lowercase();
        }
        i += 1 + l;
    }
    v
}

/// The parent of an uncompressed wire name (`None` for the root).
pub fn parent(wire: &[u8]) -> Option<&[u8]> {
    let l = *wire.first()? as usize;
    if l == 0 { None } else { wire.get(1 + l..) }
}

/// Presentation form (`www.example.com.`) for messages; not for the query path.
pub fn display(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while let Some(&l) = wire.get(i) {
        if l == 0 {
            break;
        }
        for &b in wire.get(i + 1..i + 1 + l as usize).unwrap_or(&[]) {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' => {
                    s.push('\\');
                    s.push(b as char);
                }
                0x21..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\{b:03}")),
            }
        }
        s.push('.');
        i += 1 + l as usize;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Parses a presentation-form name (`example.com` or `example.com.`, always taken as absolute)
/// into wire form. Plain labels only (no escapes): for origins given on a command line.
pub fn from_text(text: &str) -> Option<Vec<u8>> {
    let t = text.strip_suffix('.').unwrap_or(text);
    let mut v = Vec::new();
    if !t.is_empty() {
        for label in t.split('.') {
            if label.is_empty() || label.len() > 63 || label.contains('\\') {
                return None;
            }
            v.push(label.len() as u8);
            v.extend_from_slice(label.as_bytes());
        }
    }
    v.push(0);
    (v.len() <= MAX_NAME_LEN).then_some(v)
}

/// A small multiplicative hasher (FxHash's mixing) for the name tables. The keys are the
/// operator's zone data, so a client cannot make the tables' probe chains longer; SipHash's
/// flooding resistance would buy nothing and cost a lot on every query.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl NameHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(26) ^ w).wrapping_mul(K);
    }
}

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes the top 7 bits as the tag and the low bits as the index: fold.
        self.0 ^ (self.0 >> 32)
    }
}

/// The `BuildHasher` of every name table.
pub type BuildNameHasher = BuildHasherDefault<NameHasher>;

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn parse_lowercases_and_indexes_labels() {
        let msg = b"\x03WwW\x07Example\x03com\x00rest";
        let (n, end) = ParsedName::parse(msg, 0).unwrap();
        assert_eq!(end, 17);
        assert_eq!(n.wire(), b"\x03www\x07example\x03com\x00");
        assert_eq!(n.labels(), 3);
        assert_eq!(n.suffix(1), b"\x07example\x03com\x00");
        assert_eq!(n.suffix(3), b"\x00");
        assert_eq!(n.suffix_offset(2), 12);
    }

    #[test]
    fn parse_refuses_bad_names() {
        assert_eq!(
            ParsedName::parse(b"\x03ab", 0).err(),
            Some(NameError::Truncated)
        );
        assert_eq!(
            ParsedName::parse(b"\xc0\x0c", 0).err(),
            Some(NameError::BadLabel)
        );
        assert_eq!(
            ParsedName::parse(b"\x41a", 0).err(),
            Some(NameError::BadLabel)
        );
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(ParsedName::parse(&long, 0).err(), Some(NameError::TooLong));
        // 253 characters in presentation form is the longest legal name: 255 octets.
        let mut max = Vec::new();
        for _ in 0..3 {
            max.push(63);
            max.extend_from_slice(&[b'a'; 63]);
        }
        max.push(61);
        max.extend_from_slice(&[b'a'; 61]);
        max.push(0);
        assert_eq!(max.len(), 255);
        assert!(ParsedName::parse(&max, 0).is_ok());
    }

    #[test]
    fn text_and_display_round_trip() {
        let w = from_text("Example.COM").unwrap();
        assert_eq!(w, b"\x07Example\x03COM\x00");
        assert_eq!(display(&w), "Example.COM.");
        assert_eq!(to_lower(&w), b"\x07example\x03com\x00");
        assert_eq!(from_text(".").unwrap(), b"\x00");
        assert_eq!(display(b"\x00"), ".");
        assert_eq!(parent(&w), Some(&b"\x03COM\x00"[..]));
        assert!(from_text("a..b").is_none());
    }

    #[test]
    fn skip_name_handles_pointers() {
        assert_eq!(skip_name(b"\x01a\xc0\x0cxx", 0), Some(4));
        assert_eq!(skip_name(b"\x01a\x00", 0), Some(3));
        assert_eq!(skip_name(b"\x05a", 0), None);
        assert_eq!(skip_name(b"\x80", 0), None);
    }
}
