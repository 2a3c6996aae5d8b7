//! veth pairs whose ends are created directly in their namespaces.
//!
//! This module owns creating and deleting the pair; per-end configuration
//! (addresses, neighbours, ...) goes through [`Netns`].

use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};

use crate::error::{Error, Result};
use crate::netlink::Rtnl;
use crate::netns::Netns;
use crate::sys::IFNAMSIZ;
use crate::types::MacAddr;

/// How long [`Veth::create`] waits for both ends to be able to carry
/// traffic. The kernel normally needs at most about a second; this is
/// generous for loaded CI machines.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How to build a veth pair. `VethOpts::default()` gives one queue, the
/// kernel's default MTU (1500) and TX checksum offload off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethOpts {
    /// Number of RX and of TX queues, on both ends (≥ 1). More than one
    /// queue lets multi-queue engines (one AF_XDP socket per queue) be
    /// tested on a veth.
    pub queues: u32,
    /// MTU of both ends; `None` keeps the kernel's default.
    pub mtu: Option<u32>,
    /// TX checksum offload on both ends. Off by default: with it on, UDP and
    /// TCP packets sent by kernel sockets cross the veth with only the
    /// pseudo-header checksum filled in, and a frame an AF_XDP app reflects
    /// would carry a wrong checksum. See [`Netns::set_tx_checksum`].
    pub tx_checksum: bool,
}

impl Default for VethOpts {
    fn default() -> Self {
        VethOpts {
            queues: 1,
            mtu: None,
            tx_checksum: false,
        }
    }
}

/// A veth pair with end A in one namespace and end B in another (or the
/// same), both up.
///
/// Dropping it deletes the pair. That is also what happens when either
/// namespace is destroyed, so the order in which a `Veth` and its
/// [`Netns`]es are dropped doesn't matter: the `Veth` keeps its own
/// netlink socket in A's namespace, which keeps that namespace alive until
/// the `Veth` is dropped, and deleting a pair that is already gone is not
/// an error.
pub struct Veth {
    name_a: String,
    name_b: String,
    ns_a: String,
    ns_b: String,
    index_a: u32,
    index_b: u32,
    mac_a: MacAddr,
    mac_b: MacAddr,
    /// Socket in A's namespace, used by `Drop`.
    rtnl: Rtnl,
}

impl std::fmt::Debug for Veth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Veth")
            .field(
                "a",
                &format_args!("{}@{} ({})", self.name_a, self.ns_a, self.mac_a),
            )
            .field(
                "b",
                &format_args!("{}@{} ({})", self.name_b, self.ns_b, self.mac_b),
            )
            .finish()
    }
}

impl Veth {
    /// Creates the pair `name_a` (in `ns_a`) ↔ `name_b` (in `ns_b`),
    /// applies `opts`, brings both ends up and waits (up to
    /// [`READY_TIMEOUT`]) until both can carry traffic (see
    /// [`Netns::wait_link_ready`]).
    ///
    /// The request goes over a netlink socket opened inside `ns_a`, with the
    /// peer's `IFLA_NET_NS_FD` set to `ns_b`, so each end is born in its
    /// namespace and never appears in the caller's.
    pub fn create(
        ns_a: &Netns,
        name_a: &str,
        ns_b: &Netns,
        name_b: &str,
        opts: &VethOpts,
    ) -> Result<Veth> {
        validate_ifname(name_a)?;
        validate_ifname(name_b)?;
        let queues = opts.queues.max(1);

        let mut rtnl = ns_a.run(|| Rtnl::open(ns_a.name()))??;

        let mut common = vec![
            LinkAttribute::NumTxQueues(queues),
            LinkAttribute::NumRxQueues(queues),
        ];
        if let Some(mtu) = opts.mtu {
            common.push(LinkAttribute::Mtu(mtu));
        }

        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(name_b.to_owned()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(ns_b.fd().as_raw_fd()));
        peer.attributes.extend(common.iter().cloned());

        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(name_a.to_owned()));
        msg.attributes.extend(common);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));

        let op = format!(
            "creating veth {name_a} <-> {name_b} (in netns {})",
            ns_b.name()
        );
        rtnl.execute(
            &op,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;

        let link_a = match rtnl.link(name_a) {
            Ok(l) => l,
            Err(e) => {
                // No Veth to drop yet: delete by name, best effort.
                if let Err(del) = ns_a.delete_link(name_a) {
                    log::warn!("veth {name_a}: deleting after a failed setup: {del}");
                }
                return Err(e);
            }
        };
        let mut veth = Veth {
            name_a: name_a.to_owned(),
            name_b: name_b.to_owned(),
            ns_a: ns_a.name().to_owned(),
            ns_b: ns_b.name().to_owned(),
            index_a: link_a.index,
            index_b: 0,
            mac_a: link_a.mac.unwrap_or_default(),
            mac_b: MacAddr::default(),
            rtnl,
        };
        // From here on, an error drops `veth`, which deletes the pair.
        let link_b = ns_b.link(name_b)?;
        veth.index_b = link_b.index;
        veth.mac_b = link_b.mac.unwrap_or_default();

        ns_a.set_tx_checksum(name_a, opts.tx_checksum)?;
        ns_b.set_tx_checksum(name_b, opts.tx_checksum)?;
        ns_a.set_link_up(name_a, true)?;
        ns_b.set_link_up(name_b, true)?;
        ns_a.wait_link_ready(name_a, READY_TIMEOUT)?;
        ns_b.wait_link_ready(name_b, READY_TIMEOUT)?;
        Ok(veth)
    }

    /// Name of end A.
    pub fn name_a(&self) -> &str {
        &self.name_a
    }

    /// Name of end B.
    pub fn name_b(&self) -> &str {
        &self.name_b
    }

    /// Interface index of end A (in A's namespace).
    pub fn ifindex_a(&self) -> u32 {
        self.index_a
    }

    /// Interface index of end B (in B's namespace).
    pub fn ifindex_b(&self) -> u32 {
        self.index_b
    }

    /// MAC address of end A.
    pub fn mac_a(&self) -> MacAddr {
        self.mac_a
    }

    /// MAC address of end B.
    pub fn mac_b(&self) -> MacAddr {
        self.mac_b
    }
}

impl Drop for Veth {
    /// Deletes the pair (deleting one end deletes both). A pair that is
    /// gone already (`ENODEV`) is fine; other errors are logged.
    fn drop(&mut self) {
        let op = format!("deleting veth {}", self.name_a);
        match self.rtnl.del_link(&op, self.index_a) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// Checks what the kernel's `dev_valid_name()` checks, so a bad name fails
/// with a clear message instead of a bare `EINVAL`.
pub(crate) fn validate_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() >= IFNAMSIZ {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        Some("'/', ':', NUL and whitespace are not allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidIfName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::require_root;
    use crate::testutil::{Gone, wait_link_gone};

    #[test]
    fn interface_names_are_validated() {
        assert!(validate_ifname("veth-eng").is_ok());
        assert!(validate_ifname("fifteen-chars-x").is_ok());
        for bad in ["", "sixteen-chars-xx", ".", "..", "a/b", "a:b", "a b"] {
            assert!(
                matches!(validate_ifname(bad), Err(Error::InvalidIfName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn veth_applies_queues_mtu_and_checksum_options() {
        if !require_root("veth_applies_queues_mtu_and_checksum_options") {
            return;
        }
        let a = Netns::new("vt").unwrap();
        let b = Netns::new("vt").unwrap();
        let opts = VethOpts {
            queues: 4,
            mtu: Some(9000),
            tx_checksum: true,
        };
        let veth = Veth::create(&a, "va", &b, "vb", &opts).unwrap();
        for (ns, name, index, mac) in [
            (&a, "va", veth.ifindex_a(), veth.mac_a()),
            (&b, "vb", veth.ifindex_b(), veth.mac_b()),
        ] {
            let link = ns.link(name).unwrap();
            assert_eq!(link.index, index);
            assert_eq!(link.mac, Some(mac));
            assert_ne!(mac, MacAddr::default());
            assert_eq!(link.mtu, 9000);
            assert_eq!((link.num_rx_queues, link.num_tx_queues), (4, 4));
            assert!(link.up && link.lower_up && link.oper_up, "{link:?}");
            assert_eq!(link.qdisc.as_deref(), Some("noqueue"), "{link:?}");
            assert!(ns.tx_checksum(name).unwrap());
            ns.set_tx_checksum(name, false).unwrap();
            assert!(!ns.tx_checksum(name).unwrap());
        }
        assert_ne!(veth.mac_a(), veth.mac_b());
        // Each end lives only in its own namespace.
        assert_eq!(a.link("vb").unwrap_err().raw_os_error(), Some(libc::ENODEV));

        // Same name again in A: EEXIST, decoded from nlmsgerr.
        let err = Veth::create(&a, "va", &b, "vc", &VethOpts::default()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");

        drop(veth);
        wait_link_gone(&a, "va");
        wait_link_gone(&b, "vb");
    }

    #[test]
    fn default_opts_turn_checksum_offload_off() {
        if !require_root("default_opts_turn_checksum_offload_off") {
            return;
        }
        let a = Netns::new("vt").unwrap();
        let b = Netns::new("vt").unwrap();
        let veth = Veth::create(&a, "va", &b, "vb", &VethOpts::default()).unwrap();
        assert!(!a.tx_checksum("va").unwrap());
        assert!(!b.tx_checksum("vb").unwrap());
        assert_eq!(a.link("va").unwrap().num_rx_queues, 1);
        assert_eq!(a.link("va").unwrap().mtu, 1500);
        drop(veth);
    }

    #[test]
    fn namespaces_may_be_dropped_before_the_veth() {
        if !require_root("namespaces_may_be_dropped_before_the_veth") {
            return;
        }
        let observer = Netns::new("obs").unwrap();
        let a = Netns::new("vt").unwrap();
        let b = Netns::new("vt").unwrap();
        let veth = Veth::create(&a, "va", &b, "vb", &VethOpts::default()).unwrap();
        let probe_a = crate::testutil::probe(&observer, "probe-a", &a);
        let (gone_a, gone_b) = (Gone::record(&a), Gone::record(&b));
        drop(a);
        drop(b);
        gone_a.assert();
        gone_b.assert();
        // B has nothing left holding it; A is held by the veth's socket.
        drop(veth);
        wait_link_gone(&observer, "probe-a");
        drop(probe_a);
    }
}
