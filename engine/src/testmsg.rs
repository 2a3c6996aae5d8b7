//! Test support shared by the modules that build [`crate::netstate::Snapshot`]s from rtnetlink
//! messages (as the mirror receives them): one builder per message kind.

use crate::wire::ethernet::MacAddr;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

/// `s` as an address (panics on a typo: test input).
pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `02:00:00:00:00:<n>`.
pub(crate) fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

pub(crate) fn family(a: IpAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Interface `index` (named `if<index>`), MAC `02:00:00:00:00:<index>`.
pub(crate) fn link(index: u32, mtu: u32, admin_up: bool, carrier: bool) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if admin_up {
        m.header.flags |= LinkFlags::Up;
    }
    if carrier {
        m.header.flags |= LinkFlags::LowerUp;
    }
    m.attributes = vec![
        LinkAttribute::IfName(format!("if{index}")),
        LinkAttribute::Mtu(mtu),
        LinkAttribute::Address(mac(index as u8).0.to_vec()),
    ];
    RouteNetlinkMessage::NewLink(m)
}

/// A neighbour whose MAC is `02:00:00:00:00:<mac_byte>`.
pub(crate) fn neigh(
    ifindex: u32,
    addr: &str,
    state: NeighbourState,
    mac_byte: u8,
) -> RouteNetlinkMessage {
    let a = ip(addr);
    let mut m = NeighbourMessage::default();
    m.header.family = family(a);
    m.header.ifindex = ifindex;
    m.header.state = state;
    m.attributes = vec![
        NeighbourAttribute::Destination(match a {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }),
        NeighbourAttribute::LinkLayerAddress(mac(mac_byte).0.to_vec()),
    ];
    RouteNetlinkMessage::NewNeighbour(m)
}

pub(crate) fn addr(ifindex: u32, a: &str, len: u8, secondary: bool) -> RouteNetlinkMessage {
    let a = ip(a);
    let mut m = AddressMessage::default();
    m.header.family = family(a);
    m.header.index = ifindex;
    m.header.prefix_len = len;
    if secondary {
        m.header.flags |= AddressHeaderFlags::Secondary;
    }
    m.attributes.push(AddressAttribute::Address(a));
    RouteNetlinkMessage::NewAddress(m)
}

/// A route of `table` and `kind`; `hops` are (gateway, oif, rtnh_hops): one hop is sent as
/// `RTA_GATEWAY`/`RTA_OIF`, several as `RTA_MULTIPATH`.
pub(crate) fn route(
    table: u8,
    kind: RouteType,
    dst: &str,
    metric: u32,
    hops: &[(Option<&str>, u32, u8)],
) -> RouteNetlinkMessage {
    let (d, len) = dst.split_once('/').unwrap();
    let d = ip(d);
    let mut m = RouteMessage::default();
    m.header.address_family = family(d);
    m.header.destination_prefix_length = len.parse().unwrap();
    m.header.table = table;
    m.header.kind = kind;
    m.attributes.push(RouteAttribute::Table(u32::from(table)));
    m.attributes.push(RouteAttribute::Destination(d.into()));
    m.attributes.push(RouteAttribute::Priority(metric));
    match hops {
        [] => {}
        [(gw, oif, 0)] => {
            if let Some(gw) = gw {
                m.attributes.push(RouteAttribute::Gateway(ip(gw).into()));
            }
            m.attributes.push(RouteAttribute::Oif(*oif));
        }
        _ => {
            let nh = hops
                .iter()
                .map(|&(gw, oif, weight)| {
                    let mut h = RouteNextHop::default();
                    h.interface_index = oif;
                    h.hops = weight;
                    if let Some(gw) = gw {
                        h.attributes.push(RouteAttribute::Gateway(ip(gw).into()));
                    }
                    h
                })
                .collect();
            m.attributes.push(RouteAttribute::MultiPath(nh));
        }
    }
    RouteNetlinkMessage::NewRoute(m)
}

/// The main routing table.
pub(crate) const MAIN: u8 = RouteHeader::RT_TABLE_MAIN;
/// The local routing table.
pub(crate) const LOCAL: u8 = 255;
