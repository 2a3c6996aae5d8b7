//! A minimal synchronous rtnetlink client: send one request, collect the replies.
//!
//! Handles ACKs, `nlmsgerr` (turned into `io::Error` with the kernel's errno), multipart dumps
//! ending in `NLMSG_DONE`, and checks that every reply carries the request's sequence number.
//! The mirror's dumps go through the same exchange (`Netlink::exchange`).

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;

/// Receive buffer for one datagram. Dump datagrams are at most ~32 KiB; a single link
/// notification with many VFs can be larger, and a truncated datagram is an error (or, on the
/// mirror's event socket, lost events).
pub(super) const RECV_BUF: usize = 256 * 1024;

/// A connected `NETLINK_ROUTE` socket.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Splits one netlink datagram into messages: `(flags, sequence number, parsed message)`. A
/// message the crate can't parse is `Err` but does not hide the ones after it.
pub(super) fn split(
    mut data: &[u8],
) -> impl Iterator<Item = io::Result<(u16, u32, NetlinkMessage<RouteNetlinkMessage>)>> + '_ {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let (flags, seq, len) = match NetlinkBuffer::new_checked(data) {
            Ok(b) => (b.flags(), b.sequence_number(), b.length() as usize),
            Err(e) => {
                data = &[];
                return Some(Err(invalid(format!("bad netlink header: {e}"))));
            }
        };
        let msg = &data[..len.min(data.len())];
        data = &data[((len + 3) & !3).min(data.len())..];
        Some(
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg)
                .map(|m| (flags, seq, m))
                .map_err(|e| invalid(format!("undecodable rtnetlink message: {e}"))),
        )
    })
}

impl Netlink {
    /// Open and bind a route netlink socket in the caller's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Send `msg` as a request (with `NLM_F_DUMP` when `dump`) and return every reply message
    /// until the ACK or `NLMSG_DONE`. A kernel error becomes `Err` with its errno, and so does
    /// a reply that cannot be decoded.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        dump: bool,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let flags = NLM_F_REQUEST | NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
        self.exchange(msg, flags, Err).map(|(replies, _)| replies)
    }

    /// Send `msg` with header `flags` and collect the replies until the ACK or `NLMSG_DONE`.
    /// A reply that cannot be decoded goes to `on_undecodable`: `Ok(())` skips it, `Err` ends
    /// the exchange. The `bool` says whether any reply was flagged `NLM_F_DUMP_INTR` (a dump
    /// interrupted by concurrent changes).
    pub(super) fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut on_undecodable: impl FnMut(io::Error) -> io::Result<()>,
    ) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = flags;
        hdr.sequence_number = seq;
        let mut req = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0)?;

        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], libc::MSG_TRUNC)?;
            if n > self.buf.len() {
                return Err(invalid(format!(
                    "netlink reply of {n} bytes exceeds the {RECV_BUF}-byte buffer"
                )));
            }
            for m in split(&self.buf[..n]) {
                let (mflags, mseq, m) = match m {
                    Ok(m) => m,
                    Err(e) => {
                        on_undecodable(e)?;
                        continue;
                    }
                };
                if mseq != seq {
                    // A stale reply to an earlier request abandoned on error: not ours.
                    continue;
                }
                interrupted |= mflags & NLM_F_DUMP_INTR != 0;
                match m.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => {
                        return Ok((replies, interrupted));
                    }
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }
}
