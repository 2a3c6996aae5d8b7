//! Link queries: does the interface exist, is it up, how many RX queues does it have, is an XDP
//! program attached. One request, answered with the mirror's own [`MirLink`].

use super::mirror::{MirLink, parse_link};
use super::netlink::Netlink;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use std::io;

/// Look up `name` in the caller's network namespace. `Ok(None)` if there is no such interface.
pub fn get_link(nl: &mut Netlink, name: &str) -> io::Result<Option<MirLink>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    match nl.request(RouteNetlinkMessage::GetLink(msg), false) {
        Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
            _ => None,
        })),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
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
        assert!(lo.admin_up && !lo.xdp_attached);
        assert!(get_link(&mut nl, "nosuchif0").unwrap().is_none());
    }
}
