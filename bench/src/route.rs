//! The forward scenario's traffic plan: what the generator sends into a router, and what a
//! correctly forwarded copy of it must look like on the far side.
//!
//! The scenario sends from the client end of a client — router — server bed to the server's
//! address, with the router's ingress MAC as destination (the frame a host sends to its
//! default gateway). Every subject (sluice `--app forward`, the kernel's IP forwarding, the
//! in-kernel XDP forwarder) must deliver it to the server with the MACs of the egress hop
//! (router egress → server), the TTL (hop limit) one lower, a valid IPv4 header checksum, and
//! everything else unchanged. [`check_forwarded`] is that rule; the scenario applies it to a
//! sample of frames captured on the server end before it measures a subject, so no subject is
//! timed while it forwards something other than what was asked.
//!
//! This module builds and checks frames only; it never touches an interface.

use crate::r#gen::{L4, Template};
use sluice::wire::{EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, UdpPacket};
use std::net::IpAddr;

/// UDP destination port of the forwarded traffic (nothing listens there; the server end drops
/// in XDP).
pub const PORT: u16 = 9000;
/// First source port of the generator's flows.
pub const BASE_SPORT: u16 = 10_000;
/// Flows (source ports) the generator cycles through.
pub const FLOWS: u16 = 16;

/// The generator's template for traffic through a router: `client_mac`/`client_ip` → the
/// router's ingress `router_mac`, addressed to `server_ip` (same family as `client_ip`), UDP to
/// [`PORT`] from [`FLOWS`] source ports, `frame_len` bytes without FCS.
pub fn template(
    client_mac: [u8; 6],
    router_mac: [u8; 6],
    client_ip: IpAddr,
    server_ip: IpAddr,
    frame_len: usize,
) -> Template {
    Template {
        l4: L4::Udp,
        ipv6: client_ip.is_ipv6(),
        frame_len,
        src_mac: client_mac,
        dst_mac: router_mac,
        src_ip: client_ip,
        dst_ip: server_ip,
        base_sport: BASE_SPORT,
        dport: PORT,
        flows: FLOWS,
    }
}

/// Whether `got` (a frame seen on the server end) is `sent` (the frame the generator sent,
/// e.g. the template) forwarded once by a router whose egress MAC is `egress_mac`, towards
/// `next_hop_mac`: MACs rewritten, TTL / hop limit one lower, IPv4 header checksum valid,
/// addresses, protocol, UDP destination port and length unchanged. The source port and the
/// payload stamp vary per frame and are not compared. `Err` says what differs.
pub fn check_forwarded(
    sent: &[u8],
    got: &[u8],
    egress_mac: [u8; 6],
    next_hop_mac: [u8; 6],
) -> Result<(), String> {
    let parse = |f: &[u8], what: &str| {
        EthernetFrame::new_checked(f.to_vec()).map_err(|e| format!("{what}: Ethernet: {e}"))
    };
    let (s, g) = (parse(sent, "sent")?, parse(got, "forwarded")?);
    if got.len() != sent.len() {
        return Err(format!("length {} (sent {})", got.len(), sent.len()));
    }
    if g.dst_addr().0 != next_hop_mac || g.src_addr().0 != egress_mac {
        return Err(format!(
            "MACs {:?} -> {:?}, want {egress_mac:02x?} -> {next_hop_mac:02x?}",
            g.src_addr().0,
            g.dst_addr().0
        ));
    }
    if g.ether_type() != s.ether_type() {
        return Err(format!(
            "EtherType {:?} (sent {:?})",
            g.ether_type(),
            s.ether_type()
        ));
    }
    let (l4_sent, l4_got) = match s.ether_type() {
        EtherType::IPV4 => {
            let ip = |p: &[u8], what: &str| {
                Ipv4Packet::new_checked(p.to_vec()).map_err(|e| format!("{what}: IPv4: {e}"))
            };
            let (si, gi) = (ip(s.payload(), "sent")?, ip(g.payload(), "forwarded")?);
            if gi.ttl() + 1 != si.ttl() {
                return Err(format!("TTL {} (sent {})", gi.ttl(), si.ttl()));
            }
            if !gi.verify_checksum() {
                return Err(format!("bad IPv4 header checksum {:#06x}", gi.checksum()));
            }
            if (gi.src_addr(), gi.dst_addr(), gi.protocol(), gi.total_len())
                != (si.src_addr(), si.dst_addr(), si.protocol(), si.total_len())
            {
                return Err(format!(
                    "IPv4 {} -> {} proto {:?} len {} (sent {} -> {} proto {:?} len {})",
                    gi.src_addr(),
                    gi.dst_addr(),
                    gi.protocol(),
                    gi.total_len(),
                    si.src_addr(),
                    si.dst_addr(),
                    si.protocol(),
                    si.total_len()
                ));
            }
            (si.payload().to_vec(), gi.payload().to_vec())
        }
        EtherType::IPV6 => {
            let ip = |p: &[u8], what: &str| {
                Ipv6Packet::new_checked(p.to_vec()).map_err(|e| format!("{what}: IPv6: {e}"))
            };
            let (si, gi) = (ip(s.payload(), "sent")?, ip(g.payload(), "forwarded")?);
            if gi.hop_limit() + 1 != si.hop_limit() {
                return Err(format!(
                    "hop limit {} (sent {})",
                    gi.hop_limit(),
                    si.hop_limit()
                ));
            }
            if (
                gi.src_addr(),
                gi.dst_addr(),
                gi.next_header(),
                gi.payload_len(),
            ) != (
                si.src_addr(),
                si.dst_addr(),
                si.next_header(),
                si.payload_len(),
            ) {
                return Err(format!(
                    "IPv6 {} -> {} (sent {} -> {}), or next header / length changed",
                    gi.src_addr(),
                    gi.dst_addr(),
                    si.src_addr(),
                    si.dst_addr()
                ));
            }
            (si.payload().to_vec(), gi.payload().to_vec())
        }
        other => return Err(format!("not IP: EtherType {other:?}")),
    };
    let udp =
        |p: Vec<u8>, what: &str| UdpPacket::new_checked(p).map_err(|e| format!("{what}: UDP: {e}"));
    let (su, gu) = (udp(l4_sent, "sent")?, udp(l4_got, "forwarded")?);
    if (gu.dst_port(), gu.len()) != (su.dst_port(), su.len()) {
        return Err(format!(
            "UDP to port {} len {} (sent port {} len {})",
            gu.dst_port(),
            gu.len(),
            su.dst_port(),
            su.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
    use std::net::{Ipv4Addr, Ipv6Addr};

    // The RouterBed's plan: client 10.1.0.2 / fd00:1::2, server 10.2.0.2 / fd00:2::2.
    const C0: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
    const R0: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
    const R1: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
    const S0: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

    fn v4() -> Template {
        template(
            C0,
            R0,
            Ipv4Addr::new(10, 1, 0, 2).into(),
            Ipv4Addr::new(10, 2, 0, 2).into(),
            60,
        )
    }

    fn v6() -> Template {
        template(
            C0,
            R0,
            "fd00:1::2".parse::<Ipv6Addr>().unwrap().into(),
            "fd00:2::2".parse::<Ipv6Addr>().unwrap().into(),
            60,
        )
    }

    /// What a router does to `frame`, written against etherparse (the oracle): new MACs,
    /// TTL / hop limit − 1, IPv4 header checksum recomputed from scratch.
    fn forward(frame: &[u8], egress: [u8; 6], next_hop: [u8; 6]) -> Vec<u8> {
        let h = PacketHeaders::from_ethernet_slice(frame).unwrap();
        let mut out = frame.to_vec();
        out[0..6].copy_from_slice(&next_hop);
        out[6..12].copy_from_slice(&egress);
        match h.net.unwrap() {
            NetHeaders::Ipv4(mut ip, _) => {
                ip.time_to_live -= 1;
                ip.header_checksum = ip.calc_header_checksum();
                let b = ip.to_bytes();
                out[14..14 + b.len()].copy_from_slice(&b);
            }
            NetHeaders::Ipv6(mut ip, _) => {
                ip.hop_limit -= 1;
                let b = ip.to_bytes();
                out[14..14 + b.len()].copy_from_slice(&b);
            }
            other => panic!("{other:?}"),
        }
        out
    }

    #[test]
    fn template_goes_to_the_server_through_the_router() {
        for (t, ipv6) in [(v4(), false), (v6(), true)] {
            let (frame, _) = t.build().unwrap();
            let h = PacketHeaders::from_ethernet_slice(&frame).unwrap();
            let eth = h.link.unwrap().ethernet2().unwrap();
            assert_eq!(eth.destination, R0, "to the router's ingress MAC");
            assert_eq!(eth.source, C0);
            match h.net.unwrap() {
                NetHeaders::Ipv4(ip, _) => {
                    assert!(!ipv6);
                    assert_eq!(ip.destination, [10, 2, 0, 2]);
                    assert_eq!(ip.source, [10, 1, 0, 2]);
                    assert!(
                        ip.time_to_live > 1,
                        "the router must not answer TTL exceeded"
                    );
                    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                    assert!(!ip.is_fragmenting_payload() && ip.options.is_empty());
                }
                NetHeaders::Ipv6(ip, _) => {
                    assert!(ipv6);
                    assert_eq!(
                        Ipv6Addr::from(ip.destination),
                        "fd00:2::2".parse::<Ipv6Addr>().unwrap()
                    );
                    assert!(ip.hop_limit > 1);
                }
                other => panic!("{other:?}"),
            }
            match h.transport.unwrap() {
                TransportHeader::Udp(u) => {
                    assert_eq!(u.destination_port, PORT);
                    assert!((BASE_SPORT..BASE_SPORT + FLOWS).contains(&u.source_port));
                }
                other => panic!("{other:?}"),
            }
            // "64-byte" frames: 60 without FCS for IPv4; IPv6 grows to fit the stamp.
            assert_eq!(frame.len(), if ipv6 { 78 } else { 60 });
        }
    }

    #[test]
    fn a_correct_forward_passes() {
        for t in [v4(), v6()] {
            let (frame, _) = t.build().unwrap();
            let fwd = forward(&frame, R1, S0);
            assert_eq!(check_forwarded(&frame, &fwd, R1, S0), Ok(()));
        }
    }

    #[test]
    fn each_kind_of_wrong_forward_is_caught() {
        let (frame, _) = v4().build().unwrap();
        let good = forward(&frame, R1, S0);

        // Not rewritten at all (e.g. a frame bounced back unchanged).
        assert!(check_forwarded(&frame, &frame, R1, S0).is_err());
        // MACs swapped.
        assert!(check_forwarded(&frame, &good, S0, R1).is_err());
        // TTL decremented twice, checksum fixed accordingly.
        let twice = forward(&good, R1, S0);
        let e = check_forwarded(&frame, &twice, R1, S0).unwrap_err();
        assert!(e.contains("TTL 62"), "{e}");
        // TTL decremented but the checksum left alone.
        let mut stale = good.clone();
        stale[24..26].copy_from_slice(&frame[24..26]);
        let e = check_forwarded(&frame, &stale, R1, S0).unwrap_err();
        assert!(e.contains("checksum"), "{e}");
        // Destination address changed (checksum fixed, so only the address is wrong).
        let mut other = frame.clone();
        other[33] = 9;
        let h = PacketHeaders::from_ethernet_slice(&other).unwrap();
        let NetHeaders::Ipv4(mut ip, _) = h.net.unwrap() else {
            unreachable!()
        };
        ip.header_checksum = ip.calc_header_checksum();
        other[14..34].copy_from_slice(&ip.to_bytes());
        let e = check_forwarded(&frame, &forward(&other, R1, S0), R1, S0).unwrap_err();
        assert!(e.contains("10.2.0.9"), "{e}");
        // Truncated.
        assert!(check_forwarded(&frame, &good[..50], R1, S0).is_err());
        // A different destination port.
        let mut port = good.clone();
        port[37] ^= 1;
        assert!(check_forwarded(&frame, &port, R1, S0).is_err());

        // IPv6: hop limit untouched.
        let (f6, _) = v6().build().unwrap();
        let mut same_hops = forward(&f6, R1, S0);
        same_hops[21] = f6[21];
        let e = check_forwarded(&f6, &same_hops, R1, S0).unwrap_err();
        assert!(e.contains("hop limit"), "{e}");
        // Family changed under the same EtherType is a parse failure, not a pass.
        assert!(check_forwarded(&frame, &forward(&f6, R1, S0), R1, S0).is_err());
    }
}
