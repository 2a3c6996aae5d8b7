//! [`PacketSocket`]: raw Ethernet frames in and out of one interface (AF_PACKET), for injecting
//! frames no kernel socket would send (VLAN tags, malformed headers, hand-made TCP) and for seeing
//! exactly what comes back.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::sys;

/// A frame seen by a [`PacketSocket`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The bytes, from the destination MAC on.
    pub data: Vec<u8>,
    /// True if this host sent the frame (`PACKET_OUTGOING`), false if it arrived.
    pub outgoing: bool,
}

/// An `AF_PACKET`/`SOCK_RAW` socket bound to one interface of one namespace, seeing every
/// protocol. The socket lives in the namespace it was created in for its whole life.
///
/// Received frames are as they were on the wire: the kernel moves the outermost VLAN tag of an
/// incoming frame into metadata, and [`PacketSocket::recv`] puts it back inline (as libpcap
/// does), so a reflected 802.1Q or QinQ frame compares byte for byte.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    /// Open a packet socket on `iface` inside `ns`.
    pub fn open(ns: &Netns, iface: &str) -> Result<PacketSocket> {
        let ifindex = ns.ifindex(iface)?;
        let fd = ns
            .run(|| sys::packet_socket(ifindex))?
            .map_err(|source| Error::Spawn {
                program: format!("AF_PACKET socket on {iface}"),
                ns: ns.name().to_string(),
                source,
            })?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Send one frame as is (it must hold at least the 14-byte Ethernet header).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = sys::packet_send(&self.fd, self.ifindex, frame)?;
        if n != frame.len() {
            return Err(io::Error::other(format!(
                "short send: {n} of {}",
                frame.len()
            )));
        }
        Ok(())
    }

    /// Wait up to `timeout` for the next frame (either direction).
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Frame>> {
        let mut buf = vec![0u8; 65536];
        match sys::packet_recv(&self.fd, &mut buf, timeout)? {
            Some((n, outgoing)) => {
                buf.truncate(n);
                Ok(Some(Frame {
                    data: buf,
                    outgoing,
                }))
            }
            None => Ok(None),
        }
    }

    /// Collect incoming (not outgoing) frames for which `keep` is true until `timeout` passes or
    /// `want` of them arrived.
    pub fn collect_incoming(
        &self,
        timeout: Duration,
        want: usize,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<Vec<Vec<u8>>> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < want {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Some(f) = self.recv(left)?
                && !f.outgoing
                && keep(&f.data)
            {
                out.push(f.data);
            }
        }
        Ok(out)
    }
}
