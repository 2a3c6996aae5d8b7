//! The host's IPv4 broadcast addresses, as the kernel knows them: the destinations of the
//! `broadcast` routes of its `local` table.
//!
//! The kernel adds one for every IPv4 address with a prefix shorter than /31 (the subnet's
//! directed broadcast, `10.0.0.255` for `10.0.0.1/24`), on every interface; a /31 or /32 has
//! none, and an administrator may add more (`ip route add broadcast ADDR table local`). A
//! packet *to* one of them is a broadcast, whatever the interface it came in on; a packet *from*
//! one is a martian (the kernel's `fib_validate_source` refuses a source whose route is not
//! unicast). Nothing here guesses from the address's last octet: `10.0.0.255` is an ordinary
//! host in `10.0.0.0/23`, and `10.0.1.0` may be a broadcast only if the kernel says so.

use crate::netstate::{RouteKind, Snapshot};
use std::net::{IpAddr, Ipv4Addr};

/// A set of IPv4 broadcast prefixes (normally `/32`s), small and read per packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Broadcasts {
    /// (network, mask), network already masked.
    v4: Vec<(u32, u32)>,
}

impl Broadcasts {
    /// No broadcast address known (only the limited broadcast `255.255.255.255`, which every
    /// check tests on its own, is then a broadcast).
    pub const fn none() -> Self {
        Broadcasts { v4: Vec::new() }
    }

    /// The given addresses, each a `/32`.
    pub fn from_addrs(addrs: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        let mut b = Broadcasts::none();
        for a in addrs {
            b.insert(a, 32);
        }
        b
    }

    /// The destinations of the `broadcast` routes of the kernel's `local` table in `snap`.
    pub fn from_snapshot(snap: &Snapshot) -> Self {
        let mut b = Broadcasts::none();
        for r in snap.local_routes() {
            if let (RouteKind::Broadcast, IpAddr::V4(a)) = (r.kind, r.dst) {
                b.insert(a, r.prefix_len);
            }
        }
        b
    }

    fn insert(&mut self, a: Ipv4Addr, prefix_len: u8) {
        let mask = match prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        };
        let e = (u32::from(a) & mask, mask);
        if !self.v4.contains(&e) {
            self.v4.push(e);
        }
    }

    /// Whether `a` is one of the broadcast addresses (not counting `255.255.255.255`).
    #[inline]
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        self.v4.iter().any(|&(net, mask)| a & mask == net)
    }

    /// Number of broadcast prefixes.
    pub fn len(&self) -> usize {
        self.v4.len()
    }

    /// Whether no broadcast address is known.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn exact_addresses_only() {
        let b = Broadcasts::from_addrs(["10.0.0.255".parse().unwrap()]);
        assert!(b.contains("10.0.0.255".parse().unwrap()));
        assert!(!b.contains("10.0.1.255".parse().unwrap()));
        assert!(!b.contains("10.0.0.0".parse().unwrap()), "no guessing");
        assert!(!Broadcasts::none().contains("10.0.0.255".parse().unwrap()));
        let mut wide = Broadcasts::none();
        wide.insert("192.0.2.77".parse().unwrap(), 24);
        wide.insert("192.0.2.0".parse().unwrap(), 24);
        assert_eq!(wide.len(), 1);
        assert!(wide.contains("192.0.2.1".parse().unwrap()));
    }
}
