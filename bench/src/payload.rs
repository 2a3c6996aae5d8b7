//! The benchmark payload: what the generator writes at the start of every frame's L4 payload and
//! what the receiver reads back from the reflected frame.
//!
//! 16 bytes, so a 60-byte (64 with FCS) UDP/IPv4 frame carries it (18 payload bytes). Templates
//! whose headers leave less room (TCP, IPv6) grow to `headers + LEN` bytes.
//!
//! ```text
//! 0      2      4             8                            16
//! +------+------+-------------+----------------------------+
//! | magic| flow | seq (u32 LE)| tx timestamp ns (u64 LE)   |
//! +------+------+-------------+----------------------------+
//! ```
//! - magic: [`MAGIC`] in network byte order, marks generator frames.
//! - flow: index of the flow (source port = base port + flow), u16 LE.
//! - seq: global sequence number of the generator, wrapping u32, LE.
//! - tx timestamp: `CLOCK_MONOTONIC` (`bpf_ktime_get_ns`) at generation, LE.

/// Marks a generator frame (bytes `5a 1c` on the wire).
pub const MAGIC: u16 = 0x5a1c;

/// Bytes the payload header occupies.
pub const LEN: usize = 16;

/// Byte ranges inside the L4 payload.
pub mod field {
    /// `MAGIC`, big-endian.
    pub const MAGIC: std::ops::Range<usize> = 0..2;
    /// Flow index, little-endian u16.
    pub const FLOW: std::ops::Range<usize> = 2..4;
    /// Sequence number, little-endian u32.
    pub const SEQ: std::ops::Range<usize> = 4..8;
    /// Transmit timestamp in ns of CLOCK_MONOTONIC, little-endian u64.
    pub const TS: std::ops::Range<usize> = 8..16;
}

/// A parsed payload header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Flow index.
    pub flow: u16,
    /// Sequence number.
    pub seq: u32,
    /// Transmit time, ns of CLOCK_MONOTONIC.
    pub ts_ns: u64,
}

impl Stamp {
    /// Read a stamp from the start of an L4 payload; `None` if too short or no magic.
    #[inline]
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let p = payload.get(..LEN)?;
        if u16::from_be_bytes([p[0], p[1]]) != MAGIC {
            return None;
        }
        Some(Stamp {
            flow: u16::from_le_bytes([p[2], p[3]]),
            seq: u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
            ts_ns: u64::from_le_bytes([p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]]),
        })
    }

    /// Write this stamp to the start of an L4 payload (which must hold [`LEN`] bytes).
    pub fn write(&self, payload: &mut [u8]) {
        payload[field::MAGIC].copy_from_slice(&MAGIC.to_be_bytes());
        payload[field::FLOW].copy_from_slice(&self.flow.to_le_bytes());
        payload[field::SEQ].copy_from_slice(&self.seq.to_le_bytes());
        payload[field::TS].copy_from_slice(&self.ts_ns.to_le_bytes());
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn stamp_round_trip_and_rejects() {
        let s = Stamp {
            flow: 7,
            seq: 0xdead_beef,
            ts_ns: 123_456_789_012,
        };
        let mut b = [0xa5u8; 20];
        s.write(&mut b);
        assert_eq!(&b[..2], &[0x5a, 0x1c]);
        assert_eq!(Stamp::read(&b), Some(s));
        assert_eq!(Stamp::read(&b[..15]), None);
        b[0] = 0;
        assert_eq!(Stamp::read(&b), None);
    }
}
