//! Responder safety: what an app that answers (`reflect`, `dns`) or passes packets on
//! (`forward`, `lb`) must never send, as checks shared by all of them.
//!
//! An engine that answers packets must never become a reflector for an attack (an answer to a
//! forged source lands on the victim; an answer to a broadcast multiplies) nor emit a frame no
//! host could have sent. So no app transmits a frame whose
//!
//! - source MAC is a group (multicast/broadcast) address, or
//! - source IP address is multicast, a broadcast — limited (`255.255.255.255`) or the directed
//!   broadcast of a connected subnet ([`Broadcasts`]) — unspecified (`0.0.0.0/8`, `::`),
//!   loopback (`127.0.0.0/8`, `::1`) or IPv4-mapped (`::ffff:0:0/96`), or
//! - source or destination UDP/TCP port is 0.
//!
//! For a responder the answer's source is the request's destination, so the request's
//! destination is held to the same rules: a group MAC or a multicast/broadcast address is
//! `group_destination` (no built-in app opts in to answering those; one that wants to — an
//! mDNS responder, say — would skip [`destination_v4`]/[`destination_v6`] for them and must
//! then answer from its own unicast address), an unspecified or loopback one
//! `martian_destination`. A request from a martian source is `martian_source`; a port 0 either
//! way `port_zero`.
//!
//! # Directed broadcasts
//!
//! Which addresses are a subnet's broadcast is the kernel's knowledge, not the address's: the
//! apps are given the `broadcast` routes of the kernel's `local` table ([`Broadcasts`]) — the
//! forwarding apps through their [`crate::fib::Fib`], kept current with it; `reflect` and `dns`
//! as a set taken when the engine starts (an address added to the host later is not known to
//! them until the next start; documented in the README). No heuristic (`x.x.x.255`) is used:
//! in `10.0.0.0/23`, `10.0.0.255` is an ordinary host.
//!
//! # L4 checksums
//!
//! [`l4_checksum`] judges a checksum that did not verify: `partial_l4_checksum` when the field
//! holds exactly the pseudo-header sum — what a sender's TX checksum offload leaves for the NIC
//! to finish, seen on a veth whose peer has TX offload on — else `bad_l4_checksum`. Both are
//! drops: the frame reaches XDP without the kernel's "checksum partial" mark, and on a real
//! wire such a field is as wrong as any other, so finishing it would accept what the kernel
//! would drop.

use super::DropReason;
use crate::wire::EthernetFrame;
use std::net::{Ipv4Addr, Ipv6Addr};

pub use crate::fib::Broadcasts;

/// The MAC addresses of a frame that is answered or passed on: a group source is
/// `martian_source`, a group destination `group_destination`.
#[inline]
pub fn macs<T: AsRef<[u8]>>(eth: &EthernetFrame<T>) -> Result<(), DropReason> {
    if eth.src_addr().is_multicast() {
        return Err(DropReason::MartianSource);
    }
    if eth.dst_addr().is_multicast() {
        return Err(DropReason::GroupDestination);
    }
    Ok(())
}

/// Whether `a` may be the source of a packet: not multicast, a broadcast (limited or one of
/// `broadcasts`), `0.0.0.0/8` or loopback.
#[inline]
pub fn unicast_source_v4(a: Ipv4Addr, broadcasts: &Broadcasts) -> bool {
    !(a.is_multicast()
        || a.is_broadcast()
        || a.octets()[0] == 0
        || a.is_loopback()
        || broadcasts.contains(a))
}

/// Whether `a` may be the source of a packet: not multicast, `::`, `::1` or IPv4-mapped.
#[inline]
pub fn unicast_source_v6(a: Ipv6Addr) -> bool {
    !(a.is_multicast() || a.is_unspecified() || a.is_loopback() || a.to_ipv4_mapped().is_some())
}

/// The source of a packet that is answered or passed on (`martian_source` if it may not be
/// one).
#[inline]
pub fn source_v4(a: Ipv4Addr, broadcasts: &Broadcasts) -> Result<(), DropReason> {
    if unicast_source_v4(a, broadcasts) {
        Ok(())
    } else {
        Err(DropReason::MartianSource)
    }
}

/// [`source_v4`] for IPv6.
#[inline]
pub fn source_v6(a: Ipv6Addr) -> Result<(), DropReason> {
    if unicast_source_v6(a) {
        Ok(())
    } else {
        Err(DropReason::MartianSource)
    }
}

/// The destination of a packet a responder answers (the answer's source): multicast or a
/// broadcast is `group_destination`, `0.0.0.0/8` or loopback `martian_destination`.
#[inline]
pub fn destination_v4(a: Ipv4Addr, broadcasts: &Broadcasts) -> Result<(), DropReason> {
    if a.is_multicast() || a.is_broadcast() || broadcasts.contains(a) {
        return Err(DropReason::GroupDestination);
    }
    if a.octets()[0] == 0 || a.is_loopback() {
        return Err(DropReason::MartianDestination);
    }
    Ok(())
}

/// [`destination_v4`] for IPv6: multicast is `group_destination`; `::`, `::1` and IPv4-mapped
/// are `martian_destination`.
#[inline]
pub fn destination_v6(a: Ipv6Addr) -> Result<(), DropReason> {
    if a.is_multicast() {
        return Err(DropReason::GroupDestination);
    }
    if a.is_unspecified() || a.is_loopback() || a.to_ipv4_mapped().is_some() {
        return Err(DropReason::MartianDestination);
    }
    Ok(())
}

/// UDP/TCP ports of a packet that is answered or passed on: neither may be 0.
#[inline]
pub fn ports(src: u16, dst: u16) -> Result<(), DropReason> {
    if src == 0 || dst == 0 {
        Err(DropReason::PortZero)
    } else {
        Ok(())
    }
}

/// Why an L4 checksum that did not verify failed: `field` is the checksum field, `pseudo` the
/// pseudo-header sum (folded, not complemented) of the segment. A field equal to the
/// pseudo-header sum (in ones-complement, where `0` and `0xffff` are both zero) is
/// `partial_l4_checksum`, anything else `bad_l4_checksum`.
#[inline]
pub fn l4_checksum(field: u16, pseudo: u16) -> DropReason {
    let zero = |x: u16| x == 0 || x == 0xffff;
    if field == pseudo || zero(field) && zero(pseudo) {
        DropReason::PartialL4Checksum
    } else {
        DropReason::BadL4Checksum
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_and_destinations() {
        let b = Broadcasts::from_addrs([v4("10.0.0.255")]);
        for bad in [
            "224.0.0.1",
            "239.1.2.3",
            "255.255.255.255",
            "10.0.0.255",
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.9.9.9",
        ] {
            assert_eq!(
                source_v4(v4(bad), &b),
                Err(DropReason::MartianSource),
                "{bad}"
            );
            assert!(destination_v4(v4(bad), &b).is_err(), "{bad}");
        }
        for good in ["10.0.0.1", "10.0.1.255", "10.0.0.0", "192.0.2.255"] {
            assert_eq!(source_v4(v4(good), &b), Ok(()), "{good}");
            assert_eq!(destination_v4(v4(good), &b), Ok(()), "{good}");
        }
        assert_eq!(
            destination_v4(v4("10.0.0.255"), &b),
            Err(DropReason::GroupDestination)
        );
        assert_eq!(
            destination_v4(v4("127.0.0.1"), &b),
            Err(DropReason::MartianDestination)
        );
        for bad in ["ff02::1", "::", "::1", "::ffff:10.0.0.1"] {
            assert_eq!(source_v6(v6(bad)), Err(DropReason::MartianSource), "{bad}");
            assert!(destination_v6(v6(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            destination_v6(v6("ff05::2")),
            Err(DropReason::GroupDestination)
        );
        assert_eq!(source_v6(v6("2001:db8::1")), Ok(()));
        assert_eq!(destination_v6(v6("fe80::1")), Ok(()));
        assert_eq!(ports(0, 53), Err(DropReason::PortZero));
        assert_eq!(ports(53, 0), Err(DropReason::PortZero));
        assert_eq!(ports(1, 1), Ok(()));
    }

    #[test]
    fn a_partial_checksum_is_told_from_a_bad_one() {
        assert_eq!(l4_checksum(0x1234, 0x1234), DropReason::PartialL4Checksum);
        assert_eq!(l4_checksum(0, 0xffff), DropReason::PartialL4Checksum);
        assert_eq!(l4_checksum(0x1235, 0x1234), DropReason::BadL4Checksum);
    }
}
