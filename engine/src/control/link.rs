//! Link queries: does the interface exist, is it up, how many RX queues does it have.

use super::mirror::{MirLink, parse_link};
use super::netlink::Netlink;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached};
use std::io;

/// What sluice needs to know about a link before it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// MTU in bytes.
    pub mtu: u32,
    /// RX queues the device was created with (`IFLA_NUM_RX_QUEUES`).
    pub num_rx_queues: u32,
    /// An XDP program is attached (any mode).
    pub xdp_attached: bool,
}

/// Look up `name` in the caller's network namespace. `Ok(None)` if there is no such interface.
pub fn get_link(nl: &mut Netlink, name: &str) -> io::Result<Option<LinkInfo>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    match nl.request(RouteNetlinkMessage::GetLink(msg), false) {
        Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => Some(parse(&l)),
            _ => None,
        })),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Extract [`LinkInfo`] from a `RTM_NEWLINK` message: the mirror's [`parse_link`] plus whether
/// an XDP program is attached.
pub fn parse(l: &LinkMessage) -> LinkInfo {
    let MirLink {
        index,
        name,
        up,
        lower_up,
        mtu,
        num_rx_queues,
        mac: _,
    } = parse_link(l);
    let xdp_attached = l.attributes.iter().any(|a| match a {
        LinkAttribute::Xdp(x) => x
            .iter()
            .any(|x| matches!(x, LinkXdp::Attached(a) if *a != XdpAttached::None)),
        _ => false,
    });
    LinkInfo {
        name,
        index,
        admin_up: up,
        lower_up,
        mtu,
        num_rx_queues,
        xdp_attached,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn loopback_is_found_and_bogus_is_not() {
        let mut nl = Netlink::open().unwrap();
        let lo = get_link(&mut nl, "lo").unwrap().expect("lo exists");
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.index, 1);
        assert!(lo.mtu > 0);
        assert!(get_link(&mut nl, "nosuchif0").unwrap().is_none());
    }
}
