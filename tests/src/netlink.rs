//! A minimal synchronous rtnetlink client: one request at a time, ACKs,
//! multipart dumps and `nlmsgerr` handled, sequence numbers checked.
//!
//! A netlink socket talks to the network namespace it was *created* in, no
//! matter which thread later uses it; that is why [`Rtnl::open`] must run on
//! a thread inside the target namespace, and why an `Rtnl` can then be used
//! from anywhere. The socket also holds a reference on its namespace.
//!
//! This module owns the wire protocol only; what to ask for lives in
//! `netns.rs` and `veth.rs`.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};
use crate::types::{IfAddr, Link, MacAddr, Neighbour};

/// How long to wait for the kernel's answer before giving up. rtnetlink
/// answers in microseconds; this only bounds a test that would otherwise
/// hang forever on a lost reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A dump interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is retried
/// this many times before it is reported as `EINTR`.
const DUMP_RETRIES: usize = 5;

/// `NLMSGERR_ATTR_MSG` from `<linux/netlink.h>`: the extended-ACK text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLM_F_CAPPED` on an `NLMSG_ERROR`: only the request's header is echoed.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` on an `NLMSG_ERROR`: extended-ACK TLVs follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// A route-netlink socket bound to one network namespace.
pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
    /// Name of the namespace, for error messages only.
    ns: String,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace; `ns` names
    /// that namespace in errors.
    pub(crate) fn open(ns: &str) -> Result<Rtnl> {
        let fail = |what: &str, source: io::Error| Error::Netlink {
            op: format!("opening a netlink socket ({what})"),
            ns: ns.to_owned(),
            ext_ack: None,
            source,
        };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| fail("socket", e))?;
        sock.bind_auto().map_err(|e| fail("bind", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| fail("connect", e))?;
        // Errors echo only the request header, plus the kernel's text.
        sock.set_cap_ack(true)
            .map_err(|e| fail("NETLINK_CAP_ACK", e))?;
        sock.set_ext_ack(true)
            .map_err(|e| fail("NETLINK_EXT_ACK", e))?;
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0),
        )
        .map_err(|e| fail("SO_RCVTIMEO", e.into()))?;
        Ok(Rtnl {
            sock,
            // Any start value works: replies are matched on equality.
            seq: std::process::id(),
            ns: ns.to_owned(),
        })
    }

    /// Sends a request that changes something and waits for its ACK.
    /// `flags` are added to `NLM_F_REQUEST | NLM_F_ACK` (e.g. `NLM_F_CREATE`).
    pub(crate) fn execute(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(op, msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        self.collect(op, seq, false).map(|(out, _)| out)
    }

    /// Dumps a table (`NLM_F_DUMP`), collecting all parts of the multipart
    /// answer; retried when the kernel flags the dump as inconsistent.
    pub(crate) fn dump(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_RETRIES {
            let seq = self.send(op, msg.clone(), NLM_F_REQUEST | NLM_F_DUMP)?;
            let (out, interrupted) = self.collect(op, seq, true)?;
            if !interrupted {
                return Ok(out);
            }
            log::debug!("{op} in {}: dump interrupted, retrying", self.ns);
        }
        Err(self.os_error(op, io::Error::from_raw_os_error(libc::EINTR)))
    }

    fn send(&mut self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let sent = self.sock.send(&buf, 0).map_err(|e| self.os_error(op, e))?;
        if sent != buf.len() {
            return Err(self.unexpected(op, format!("short send: {sent} of {} bytes", buf.len())));
        }
        Ok(self.seq)
    }

    /// Reads answers to request `seq` until its ACK (or, for a dump, its
    /// `NLMSG_DONE`). Messages with other sequence numbers are leftovers of an
    /// earlier request that failed midway and are skipped. Returns the data
    /// messages and whether the dump was flagged `NLM_F_DUMP_INTR`.
    fn collect(
        &mut self,
        op: &str,
        seq: u32,
        dump: bool,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let (buf, _) = self.sock.recv_from_full().map_err(|e| {
                let e = if e.kind() == io::ErrorKind::WouldBlock {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no netlink reply within {REPLY_TIMEOUT:?}"),
                    )
                } else {
                    e
                };
                self.os_error(op, e)
            })?;
            let mut off = 0;
            while off < buf.len() {
                let len = NetlinkBuffer::new_checked(&buf[off..])
                    .map_err(|e| self.decode(op, e))?
                    .length() as usize;
                let end = off + len;
                let raw = &buf[off..end];
                off = (end + 3) & !3;

                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw)
                    .map_err(|e| self.decode(op, e))?;
                if msg.header.sequence_number != seq {
                    log::debug!(
                        "{op} in {}: skipping netlink message with stale sequence number {} (want {seq})",
                        self.ns,
                        msg.header.sequence_number
                    );
                    continue;
                }
                if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(err) => match err.code {
                        None if dump => {}
                        None => return Ok((out, interrupted)),
                        Some(_) => {
                            let ext_ack = ext_ack_message(msg.header.flags, &err.header);
                            return Err(Error::Netlink {
                                op: op.to_owned(),
                                ns: self.ns.clone(),
                                ext_ack,
                                source: err.to_io(),
                            });
                        }
                    },
                    NetlinkPayload::Done(done) => {
                        if done.code != 0 {
                            return Err(
                                self.os_error(op, io::Error::from_raw_os_error(done.code.abs()))
                            );
                        }
                        if dump {
                            return Ok((out, interrupted));
                        }
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(self.os_error(op, io::Error::from_raw_os_error(libc::ENOBUFS)));
                    }
                    _ => {}
                }
            }
        }
    }

    fn os_error(&self, op: &str, source: io::Error) -> Error {
        Error::Netlink {
            op: op.to_owned(),
            ns: self.ns.clone(),
            ext_ack: None,
            source,
        }
    }

    fn decode(&self, op: &str, source: netlink_packet_core::DecodeError) -> Error {
        Error::Decode {
            op: op.to_owned(),
            ns: self.ns.clone(),
            source,
        }
    }

    pub(crate) fn unexpected(&self, op: &str, what: String) -> Error {
        Error::Unexpected {
            op: op.to_owned(),
            ns: self.ns.clone(),
            what,
        }
    }

    // ----- links -------------------------------------------------------

    /// Looks a link up by name.
    pub(crate) fn link(&mut self, name: &str) -> Result<Link> {
        let op = format!("looking up interface {name}");
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let replies = self.execute(&op, RouteNetlinkMessage::GetLink(msg), 0)?;
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .and_then(|l| parse_link(&l))
            .ok_or_else(|| self.unexpected(&op, "no usable RTM_NEWLINK in the reply".into()))
    }

    /// All links of the namespace.
    pub(crate) fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(
            "listing interfaces",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => parse_link(l),
                _ => None,
            })
            .collect())
    }

    /// Applies `attributes` and the `IFF_*` bits in `change` (set to their
    /// value in `flags`) to the link with index `index`.
    pub(crate) fn set_link(
        &mut self,
        op: &str,
        index: u32,
        flags: LinkFlags,
        change: LinkFlags,
        attributes: Vec<LinkAttribute>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = flags;
        msg.header.change_mask = change;
        msg.attributes = attributes;
        self.execute(op, RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
    }

    /// Deletes the link with index `index`.
    pub(crate) fn del_link(&mut self, op: &str, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.execute(op, RouteNetlinkMessage::DelLink(msg), 0)
            .map(drop)
    }

    // ----- addresses -----------------------------------------------------

    /// All addresses on the link with index `index`.
    pub(crate) fn addresses(&mut self, op: &str, index: u32) -> Result<Vec<IfAddr>> {
        let replies = self.dump(
            op,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => parse_address(a),
                _ => None,
            })
            .collect())
    }

    // ----- neighbours ----------------------------------------------------

    /// All neighbour entries on the link with index `index`.
    pub(crate) fn neighbours(&mut self, op: &str, index: u32) -> Result<Vec<Neighbour>> {
        let replies = self.dump(
            op,
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => {
                    parse_neighbour(n)
                }
                _ => None,
            })
            .collect())
    }

    // ----- routes --------------------------------------------------------

    /// All routes of the main table, both families.
    pub(crate) fn routes(&mut self, op: &str) -> Result<Vec<RouteMessage>> {
        let replies = self.dump(op, RouteNetlinkMessage::GetRoute(RouteMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .collect())
    }
}

/// Pulls the `NLMSGERR_ATTR_MSG` text out of an `NLMSG_ERROR` payload
/// (`payload` is what follows the error code: the echoed request header,
/// the request body unless capped, then the TLVs).
fn ext_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HDRLEN {
        return None;
    }
    let tlv_start = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let echoed = u32::from_ne_bytes(payload[0..4].try_into().ok()?) as usize;
        (echoed + 3) & !3
    };
    let tlvs = payload.get(tlv_start..)?;
    NlasIterator::new(tlvs)
        .filter_map(|nla| nla.ok())
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let text = nla.value();
            let text = text.split(|&b| b == 0).next().unwrap_or(text);
            String::from_utf8_lossy(text).into_owned()
        })
}

fn parse_link(msg: &LinkMessage) -> Option<Link> {
    let mut link = Link {
        name: String::new(),
        index: msg.header.index,
        mac: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
        oper_up: false,
        qdisc: None,
        num_rx_queues: 0,
        num_tx_queues: 0,
        master: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name.clone_from(n),
            LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(a),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::OperState(st) => link.oper_up = *st == State::Up,
            LinkAttribute::Qdisc(q) => link.qdisc = Some(q.clone()),
            LinkAttribute::NumRxQueues(q) => link.num_rx_queues = *q,
            LinkAttribute::NumTxQueues(q) => link.num_tx_queues = *q,
            LinkAttribute::Controller(m) => link.master = Some(*m),
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

fn parse_address(msg: &AddressMessage) -> Option<IfAddr> {
    let mut local = None;
    let mut address = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
    Some(IfAddr {
        addr: local.or(address)?,
        prefix_len: msg.header.prefix_len,
        tentative: flags.contains(AddressFlags::Tentative),
    })
}

fn parse_neighbour(msg: &NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = MacAddr::from_slice(l),
            _ => {}
        }
    }
    Some(Neighbour {
        ip: ip?,
        mac,
        permanent: msg.header.state == NeighbourState::Permanent,
        state: u16::from(msg.header.state),
    })
}

/// `RouteAddress` → `IpAddr`, for the families this crate deals with.
pub(crate) fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// What [`route_parts`] pulls out of a route: destination, gateway, output
/// interface, metric.
pub(crate) type RouteParts = (Option<IpAddr>, Option<IpAddr>, Option<u32>, Option<u32>);

/// The route attributes of interest: destination, gateway, output
/// interface, metric (absent for IPv4 routes with metric 0).
pub(crate) fn route_parts(msg: &RouteMessage) -> RouteParts {
    let mut dst = None;
    let mut gw = None;
    let mut oif = None;
    let mut metric = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_ip(a),
            RouteAttribute::Gateway(a) => gw = route_ip(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = Some(*p),
            _ => {}
        }
    }
    (dst, gw, oif, metric)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ext_ack_text_is_found_after_a_capped_header() {
        // Echoed nlmsghdr (16 bytes), then NLMSGERR_ATTR_MSG "bad\0".
        let mut payload = vec![0u8; NLMSG_HDRLEN];
        payload[0..4].copy_from_slice(&32u32.to_ne_bytes());
        payload.extend_from_slice(&8u16.to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(b"bad\0");
        assert_eq!(
            ext_ack_message(NLM_F_CAPPED | NLM_F_ACK_TLVS, &payload).as_deref(),
            Some("bad")
        );
        assert_eq!(ext_ack_message(NLM_F_CAPPED, &payload), None);
    }
}
