//! The kernel's network state as plain data: links, addresses, neighbours and routes, and
//! [`Snapshot`], one consistent view of them with longest-prefix route lookup.
//!
//! The control plane's rtnetlink mirror ([`crate::control::mirror`]) produces these values;
//! the forwarding table ([`crate::fib`]) and the control socket read them. This module does no
//! I/O and knows no netlink message: it sits below both, so the fast path can use the kernel's
//! view without depending on the control plane.

use crate::wire::ethernet::MacAddr;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network interface: what the mirror keeps of it, and what [`crate::control::link::get_link`] answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MirLink {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up (`IFF_UP`). `"up"` on the wire, as before the name said which up.
    #[serde(rename = "up")]
    pub admin_up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// MTU in bytes.
    pub mtu: u32,
    /// Link-layer address, if it is a 6-byte MAC.
    #[serde(serialize_with = "ser_mac")]
    pub mac: Option<MacAddr>,
    /// RX queues the device was created with (`IFLA_NUM_RX_QUEUES`).
    pub num_rx_queues: u32,
    /// An XDP program is attached (any mode).
    pub xdp_attached: bool,
}

impl MirLink {
    /// Can carry traffic: administratively up and with carrier. Workers run only while this holds.
    pub fn is_running(&self) -> bool {
        self.admin_up && self.lower_up
    }
}

/// An IP address assigned to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MirAddress {
    /// Interface index.
    pub ifindex: u32,
    /// The (local) address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// An IPv4 secondary address (`IFA_F_SECONDARY`): another address of a subnet the interface
    /// already has a primary address in. The kernel sources its own packets from primaries.
    pub secondary: bool,
}

/// State of a neighbour cache entry (`NUD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NeighState {
    /// Resolution in progress.
    Incomplete,
    /// Confirmed recently.
    Reachable,
    /// Usable, not confirmed recently.
    Stale,
    /// Usable, confirmation pending.
    Delay,
    /// Usable, being probed.
    Probe,
    /// Resolution failed.
    Failed,
    /// No resolution needed (e.g. point-to-point, multicast).
    Noarp,
    /// Static entry.
    Permanent,
    /// No state.
    None,
    /// A combination or a state this code does not know; the raw bits.
    Other(u16),
}

/// A neighbour (ARP / NDP) cache entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MirNeighbour {
    /// Interface index.
    pub ifindex: u32,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its MAC address, once resolved.
    #[serde(serialize_with = "ser_mac")]
    pub mac: Option<MacAddr>,
    /// Cache entry state.
    pub state: NeighState,
}

/// What a route does with matching packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Forward (via [`MirRoute::gateway`] or directly on [`MirRoute::oif`]).
    Unicast,
    /// Drop silently.
    Blackhole,
    /// Drop, ICMP unreachable.
    Unreachable,
    /// Drop, ICMP administratively prohibited.
    Prohibit,
    /// An address of this host (`local` table).
    Local,
    /// A broadcast address, received by this host (`local` table).
    Broadcast,
    /// An anycast address of this host, e.g. an IPv6 subnet-router anycast (`local` table).
    Anycast,
    /// Multicast (IPv6 `ff00::/8` in the `local` table).
    Multicast,
    /// Any other type (NAT, throw, ...).
    Other,
}

/// One next hop of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MirNexthop {
    /// The gateway; `None` for a directly connected (on-link) next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: u32,
    /// Relative weight among the route's next hops: `rtnh_hops + 1` (`ip route ... nexthop ...
    /// weight N`), 1 for a single-path route.
    pub weight: u16,
}

/// A route in the main or the local table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MirRoute {
    /// Destination network, host bits zero (`0.0.0.0`/`::` for a default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Next hop, if any. For a multipath route: the first next hop's.
    pub gateway: Option<IpAddr>,
    /// Output interface, if any. For a multipath route: the first next hop's.
    pub oif: Option<u32>,
    /// Priority (`ip route ... metric N`); lower wins. IPv4 routes without one have 0.
    pub metric: u32,
    /// IPv4 TOS selector (0 for any).
    pub tos: u8,
    /// Route type.
    pub kind: RouteKind,
    /// All next hops: one for a single-path route with an output interface, one per `nexthop` of a
    /// multipath route (`RTA_MULTIPATH`), none for blackhole/unreachable/prohibit routes.
    pub nexthops: Vec<MirNexthop>,
}

impl MirRoute {
    /// Whether a next hop of this route goes out through interface `ifindex`.
    pub fn uses_link(&self, ifindex: u32) -> bool {
        self.oif == Some(ifindex) || self.nexthops.iter().any(|h| h.oif == ifindex)
    }
}

fn ser_mac<S: Serializer>(mac: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(m) => s.collect_str(m),
        None => s.serialize_none(),
    }
}

/// The key the kernel tells routes apart by (within the main table, ignoring the source prefix).
/// Field order matters: routes for one `dst/prefix_len` are adjacent, lowest metric first.
///
/// Known gap: IPv6 also tells apart routes of the same prefix and metric by output interface
/// (`fe80::/64` on two links); the mirror keeps the last of those. A link going down or away
/// re-dumps the routes, which repairs the usual case of deleting one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RouteKey {
    pub(crate) dst: IpAddr,
    pub(crate) prefix_len: u8,
    pub(crate) metric: u32,
    pub(crate) tos: u8,
}

impl RouteKey {
    pub(crate) fn of(r: &MirRoute) -> Self {
        RouteKey {
            dst: r.dst,
            prefix_len: r.prefix_len,
            metric: r.metric,
            tos: r.tos,
        }
    }
}

/// The kernel's view at one moment. Immutable once published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub(crate) links: BTreeMap<u32, MirLink>,
    pub(crate) addresses: BTreeMap<(u32, IpAddr, u8), MirAddress>,
    pub(crate) neighbours: BTreeMap<(u32, IpAddr), MirNeighbour>,
    pub(crate) routes: BTreeMap<RouteKey, MirRoute>,
    /// The `local` table. Its routes are told apart by output interface too: one address on two
    /// links, or IPv6's `anycast fe80::` and `multicast ff00::/8` per link.
    pub(crate) local_routes: BTreeMap<(RouteKey, u32), MirRoute>,
}

impl Snapshot {
    /// The link named `name`.
    pub fn link_by_name(&self, name: &str) -> Option<&MirLink> {
        self.links.values().find(|l| l.name == name)
    }

    /// The link with index `index`.
    pub fn link(&self, index: u32) -> Option<&MirLink> {
        self.links.get(&index)
    }

    /// All links, by index.
    pub fn links(&self) -> impl Iterator<Item = &MirLink> {
        self.links.values()
    }

    /// All addresses, by interface index.
    pub fn addresses(&self) -> impl Iterator<Item = &MirAddress> {
        self.addresses.values()
    }

    /// All IPv4 and IPv6 neighbour entries, by interface index.
    pub fn neighbours(&self) -> impl Iterator<Item = &MirNeighbour> {
        self.neighbours.values()
    }

    /// All main-table routes, IPv4 first, by destination.
    pub fn routes(&self) -> impl Iterator<Item = &MirRoute> {
        self.routes.values()
    }

    /// All `local`-table routes (the host's own, broadcast, anycast and multicast destinations),
    /// IPv4 first, by destination. Not part of [`Snapshot::routes`] or
    /// [`Snapshot::route_lookup`].
    pub fn local_routes(&self) -> impl Iterator<Item = &MirRoute> {
        self.local_routes.values()
    }

    /// The neighbour entry for `ip` on interface `ifindex`, whatever its state.
    pub fn neighbour(&self, ifindex: u32, ip: IpAddr) -> Option<&MirNeighbour> {
        self.neighbours.get(&(ifindex, ip))
    }

    /// Longest-prefix match of `ip` over the main-table routes of its family; among routes of the
    /// same prefix, the lowest metric wins (then the lowest TOS; TOS is not matched).
    ///
    /// One ordered-map probe per possible prefix length (33 or 129), so the cost does not grow
    /// with the table beyond the map's log n.
    pub fn route_lookup(&self, ip: IpAddr) -> Option<&MirRoute> {
        let max = match ip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (0..=max).rev().find_map(|len| {
            let dst = mask(ip, len);
            let lo = RouteKey {
                dst,
                prefix_len: len,
                metric: 0,
                tos: 0,
            };
            let hi = RouteKey {
                metric: u32::MAX,
                tos: u8::MAX,
                ..lo
            };
            self.routes.range(lo..=hi).next().map(|(_, r)| r)
        })
    }
}

/// `ip` with all but the first `len` bits cleared.
pub(crate) fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}
