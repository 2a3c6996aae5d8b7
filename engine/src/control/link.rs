//! Link queries: does the interface exist, is it up, how many RX queues does it have, is an XDP
//! program attached. One request, answered with the mirror's own [`MirLink`].

use super::mirror::{MirLink, parse_link};
use super::netlink::Netlink;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached};
use std::io;

/// The XDP program attached to an interface, as rtnetlink reports it (`IFLA_XDP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpAttachment {
    /// How it is attached: `driver`, `skb`, `hw` or `multiple` (programs in several modes).
    pub mode: &'static str,
    /// The program's id (for `multiple`, the first one reported).
    pub prog_id: u32,
}

/// The XDP program on `name`, if any. `Ok(None)` also when there is no such interface.
pub fn xdp_attachment(nl: &mut Netlink, name: &str) -> io::Result<Option<XdpAttachment>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    let replies = match nl.request(RouteNetlinkMessage::GetLink(msg), false) {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(replies.iter().find_map(|r| match r {
        RouteNetlinkMessage::NewLink(l) => xdp_of(l),
        _ => None,
    }))
}

fn xdp_of(l: &LinkMessage) -> Option<XdpAttachment> {
    let xdp = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(x) => Some(x),
        _ => None,
    })?;
    let mut mode = None;
    let mut id = None;
    for x in xdp {
        match x {
            LinkXdp::Attached(XdpAttached::None) => return None,
            LinkXdp::Attached(a) => {
                mode = Some(match a {
                    XdpAttached::Driver => "driver",
                    XdpAttached::SocketBuffer => "skb",
                    XdpAttached::Hardware => "hw",
                    _ => "multiple",
                })
            }
            LinkXdp::ProgId(p)
            | LinkXdp::DrvProgId(p)
            | LinkXdp::SkbProgId(p)
            | LinkXdp::HwProgId(p) => {
                id.get_or_insert(*p);
            }
            _ => {}
        }
    }
    Some(XdpAttachment {
        mode: mode?,
        prog_id: id.unwrap_or(0),
    })
}

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
        assert_eq!(xdp_attachment(&mut nl, "lo").unwrap(), None);
        assert_eq!(xdp_attachment(&mut nl, "nosuchif0").unwrap(), None);
    }
}
