//! The forwarding information base: what the fast path of a router asks per packet — "where does
//! a packet for this destination go, and with which Ethernet header?" — answered from an
//! immutable table built from the [mirror](crate::control::mirror)'s snapshot of the kernel's
//! routes, links, addresses and neighbours.
//!
//! The module owns [`Fib`] (build and lookup), [`Lookup`]/[`Hop`] (the answers), and
//! [`FibHandle`]/`control::fib_updater::FibUpdater` (publishing a new `Fib` to the workers after each kernel change,
//! without a lock on their path). It must never do packet I/O, change kernel state, or allocate,
//! lock or log in a lookup.
//!
//! # Semantics
//!
//! - **Tables.** The `local` table is searched first, then `main`, as the kernel does for a host
//!   without policy rules; a match in `local` wins whatever its length. `local`, `broadcast`,
//!   `anycast` and `multicast` routes answer [`Lookup::Local`]: the packet is for the host, hand it
//!   to the kernel. Multicast and limited-broadcast destinations, and IPv6 link-local ones, are
//!   [`Lookup::Local`] too: a router never forwards them. Policy rules, the `default` table,
//!   TOS-specific routes and route types other than those above are not used.
//! - **Longest prefix, then lowest metric** (`ip route ... metric N`), over the usable routes of a
//!   prefix (see *The structure* below).
//! - **Kinds.** `blackhole`, `unreachable` and `prohibit` routes answer [`Lookup::Blackhole`],
//!   [`Lookup::Unreachable`] and [`Lookup::Prohibited`]; no match is [`Lookup::NoRoute`].
//! - **Link down, failover.** A next hop through a link that is not running (administratively
//!   down or without carrier, [`MirLink::is_running`]) is left out. A unicast route left without
//!   next hops is unusable: the next route of the same prefix by metric is used, and if none is,
//!   the lookup goes on to shorter prefixes (the kernel does the same for dead next hops). So
//!   `10.0.0.0/8 via A metric 10` plus `10.0.0.0/8 via B metric 20` fails over to B while A's link
//!   is down. Unlike the kernel's default (`ignore_routes_with_linkdown = 0`), a link without
//!   carrier counts as down: the fast path cannot send on it anyway.
//! - **ECMP.** A multipath route picks one of its usable next hops from the caller's per-flow
//!   hash, in proportion to the weights (`nexthop ... weight N`): the same hash always picks the
//!   same next hop while the table is unchanged.
//! - **The next hop.** Its gateway, or the destination itself for an on-link route, is looked up
//!   in the neighbour table; only entries in a usable state (reachable, stale, delay, probe,
//!   permanent, noarp) with a MAC count, anything else is [`Lookup::NoNeighbour`] (the kernel
//!   must resolve it). A next hop through an interface the engine does not serve, or one without
//!   an Ethernet address, is [`Lookup::NotOurPort`].
//!
//! Everything but the neighbour of an on-link destination is resolved when the table is built, so
//! a lookup is the prefix probes, an ECMP pick and one neighbour probe.
//!
//! # The structure
//!
//! Per family and table, one hash map of masked prefixes per prefix length that has routes,
//! probed longest first; each prefix holds only its winning route, resolved. A host's or a small
//! router's table has a handful of lengths (`/32`, `/24`, `/0`; `/128`, `/64`, `/0`), so a
//! lookup is that many hash probes, the same code serves IPv4 and IPv6, and a rebuild — done
//! whole on every kernel change — is a few inserts. DIR-24-8 would cost 32 MiB per table and
//! rebuild and wins only with many lengths; a binary trie walks up to 32/128 dependent pointers.
//! For a full Internet table (about 25 IPv4 lengths) a DIR-24-8 for IPv4 would be the thing to
//! put behind the same interface. The hasher is a multiply-and-mix one rather than SipHash: the
//! keys are the administrator's routes, so there is no flooding to resist.

mod broadcast;
mod handle;
mod lpm;

#[cfg(test)]
mod tests;

pub use broadcast::Broadcasts;
pub use handle::FibHandle;

use crate::netstate::{MirLink, MirRoute, NeighState, RouteKind, Snapshot};
use crate::wire::ethernet::MacAddr;
use lpm::{Bits, IntMap, PrefixTable};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where a packet goes: the answer of [`Fib::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Send it out of one of the engine's ports with this Ethernet header.
    Forward(Hop),
    /// The route's next hop has no usable neighbour entry: the kernel must resolve it (hand the
    /// packet to the kernel, which queues it and sends ARP / neighbour solicitation).
    NoNeighbour {
        /// The egress interface.
        ifindex: u32,
        /// The gateway, or the destination for an on-link route.
        next_hop: IpAddr,
    },
    /// The destination is this host (or a broadcast/multicast/link-local address): the kernel's.
    Local,
    /// No route matches.
    NoRoute,
    /// An `unreachable` route: drop, ICMP destination unreachable (host/net unreachable,
    /// ICMPv6 no route).
    Unreachable,
    /// A `prohibit` route: drop, ICMP communication administratively prohibited.
    Prohibited,
    /// A `blackhole` route: drop silently.
    Blackhole,
    /// The next hop is on an interface the engine does not serve: hand the packet to the kernel.
    NotOurPort {
        /// The egress interface.
        ifindex: u32,
    },
}

/// A resolved next hop on one of the engine's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The egress interface (one of the engine's ports).
    pub port_ifindex: u32,
    /// The next hop's MAC (destination of the rewritten frame).
    pub dst_mac: MacAddr,
    /// The egress interface's MAC (source of the rewritten frame).
    pub src_mac: MacAddr,
    /// The egress interface's MTU: larger packets need fragmenting or an ICMP error.
    pub mtu: u32,
}

/// What a route answers, resolved at build time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// For the host.
    Local,
    Blackhole,
    Unreachable,
    Prohibited,
    /// `Fib::nexthops[first..first + count]`, the usable next hops, whose `upto` weights add up
    /// to `total`.
    Unicast {
        first: u32,
        count: u32,
        total: u32,
    },
}

/// A usable next hop.
#[derive(Clone, Copy, Debug)]
struct NextHop {
    /// Cumulative weight: this hop is picked for ECMP points below `upto` (and at or above the
    /// previous hop's `upto`).
    upto: u32,
    ifindex: u32,
    gateway: Option<IpAddr>,
    /// `None`: not one of the engine's ports (or not Ethernet).
    egress: Option<Egress>,
}

#[derive(Clone, Copy, Debug)]
struct Egress {
    mac: MacAddr,
    mtu: u32,
}

/// One family's tables.
#[derive(Clone, Debug)]
struct Family<K> {
    local: PrefixTable<K, Entry>,
    main: PrefixTable<K, Entry>,
}

impl<K: Bits> Default for Family<K> {
    fn default() -> Self {
        Family {
            local: PrefixTable::default(),
            main: PrefixTable::default(),
        }
    }
}

impl<K: Bits> Family<K> {
    #[inline]
    fn lookup(&self, dst: K) -> Option<Entry> {
        self.local
            .lookup(dst)
            .or_else(|| self.main.lookup(dst))
            .copied()
    }
}

/// An interface's addresses, for sourcing ICMP errors.
#[derive(Clone, Copy, Debug, Default)]
struct IfAddrs {
    v4: Option<Ipv4Addr>,
    v4_is_primary: bool,
    v6_global: Option<Ipv6Addr>,
    v6_link_local: Option<Ipv6Addr>,
}

/// The forwarding table: immutable, built from one mirror [`Snapshot`] by [`Fib::from_snapshot`].
#[derive(Clone, Debug, Default)]
pub struct Fib {
    v4: Family<u32>,
    v6: Family<u128>,
    nexthops: Vec<NextHop>,
    /// Usable IPv4 neighbours, by `ifindex << 32 | address`.
    neigh_v4: IntMap<u64, MacAddr>,
    /// Usable IPv6 neighbours, by (ifindex, address).
    neigh_v6: IntMap<(u32, u128), MacAddr>,
    addrs: IntMap<u32, IfAddrs>,
    ports: Vec<u32>,
    /// The `local` table's IPv4 broadcast addresses (martian as a source).
    broadcasts: Broadcasts,
}

/// Whether a neighbour entry in state `s` may be used to send.
fn usable(s: NeighState) -> bool {
    matches!(
        s,
        NeighState::Reachable
            | NeighState::Stale
            | NeighState::Delay
            | NeighState::Probe
            | NeighState::Permanent
            | NeighState::Noarp
    )
}

/// Where a route of `family` goes into the prefix tables.
trait Prefix: Bits {
    fn of(ip: IpAddr) -> Option<Self>;
}

impl Prefix for u32 {
    fn of(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a.into()),
            IpAddr::V6(_) => None,
        }
    }
}

impl Prefix for u128 {
    fn of(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a.into()),
            IpAddr::V4(_) => None,
        }
    }
}

impl Fib {
    /// Builds the table from `snap`. `ports` are the interface indexes the engine serves: next
    /// hops through any other interface answer [`Lookup::NotOurPort`].
    pub fn from_snapshot(snap: &Snapshot, ports: &[u32]) -> Fib {
        let mut fib = Fib {
            ports: ports.to_vec(),
            broadcasts: Broadcasts::from_snapshot(snap),
            ..Fib::default()
        };
        for n in snap.neighbours() {
            let (Some(mac), true) = (n.mac, usable(n.state)) else {
                continue;
            };
            match n.ip {
                IpAddr::V4(a) => {
                    fib.neigh_v4
                        .insert(u64::from(n.ifindex) << 32 | u64::from(u32::from(a)), mac);
                }
                IpAddr::V6(a) => {
                    fib.neigh_v6.insert((n.ifindex, a.into()), mac);
                }
            }
        }
        for a in snap.addresses() {
            let e = fib.addrs.entry(a.ifindex).or_default();
            match a.addr {
                // The first primary wins; a secondary only while there is no primary.
                IpAddr::V4(v4) if e.v4.is_none() || !e.v4_is_primary && !a.secondary => {
                    e.v4 = Some(v4);
                    e.v4_is_primary = !a.secondary;
                }
                IpAddr::V6(v6) if is_link_local(v6) => {
                    e.v6_link_local.get_or_insert(v6);
                }
                IpAddr::V6(v6) if !v6.is_loopback() && !v6.is_multicast() => {
                    e.v6_global.get_or_insert(v6);
                }
                _ => {}
            }
        }
        // Routes come by destination, lowest metric first: the first usable one of a prefix wins.
        let local = snap.local_routes().map(|r| (r, true));
        for (r, local_table) in local.chain(snap.routes().map(|r| (r, false))) {
            let mut b = Builder {
                snap,
                ports,
                nexthops: &mut fib.nexthops,
            };
            match r.dst {
                IpAddr::V4(_) => b.add_route(&mut fib.v4, r, local_table),
                IpAddr::V6(_) => b.add_route(&mut fib.v6, r, local_table),
            }
        }
        fib
    }
}

/// Adds routes to a [`Fib`]'s tables.
struct Builder<'a> {
    snap: &'a Snapshot,
    ports: &'a [u32],
    nexthops: &'a mut Vec<NextHop>,
}

impl Builder<'_> {
    /// Adds `r` to `fam` if it is usable and no earlier route of its prefix was.
    fn add_route<K: Prefix>(&mut self, fam: &mut Family<K>, r: &MirRoute, local_table: bool) {
        let Some(prefix) = K::of(r.dst) else { return };
        // A TOS-specific route applies only to some packets; the lookup does not see the TOS.
        if r.tos != 0 {
            return;
        }
        let table = if local_table {
            &mut fam.local
        } else {
            &mut fam.main
        };
        if table.contains(prefix, r.prefix_len) {
            return; // a better (lower-metric) usable route of this prefix is already in
        }
        let nexthops = &mut *self.nexthops;
        let entry = match r.kind {
            RouteKind::Local | RouteKind::Broadcast | RouteKind::Anycast | RouteKind::Multicast => {
                Entry::Local
            }
            RouteKind::Blackhole => Entry::Blackhole,
            RouteKind::Unreachable => Entry::Unreachable,
            RouteKind::Prohibit => Entry::Prohibited,
            RouteKind::Other => return,
            RouteKind::Unicast => {
                let first = nexthops.len();
                let mut total = 0u32;
                for h in &r.nexthops {
                    let Some(link) = self.snap.link(h.oif).filter(|l| l.is_running()) else {
                        continue;
                    };
                    total += u32::from(h.weight.max(1));
                    nexthops.push(NextHop {
                        upto: total,
                        ifindex: h.oif,
                        gateway: h.gateway,
                        egress: egress(self.ports, link),
                    });
                }
                if total == 0 {
                    return; // no usable next hop: a later route, or a shorter prefix
                }
                Entry::Unicast {
                    first: first as u32,
                    count: (nexthops.len() - first) as u32,
                    total,
                }
            }
        };
        table.insert_first(prefix, r.prefix_len, entry);
    }
}

/// The egress of a next hop through `link`: `None` unless it is one of `ports` and Ethernet.
fn egress(ports: &[u32], link: &MirLink) -> Option<Egress> {
    if !ports.contains(&link.index) {
        return None;
    }
    link.mac.map(|mac| Egress { mac, mtu: link.mtu })
}

impl Fib {
    /// Where a packet for `dst` goes; `flow_hash` picks among the next hops of a multipath route
    /// (pass a hash of the flow's addresses and ports, so a flow keeps its path). Never allocates.
    #[inline]
    pub fn lookup(&self, dst: IpAddr, flow_hash: u32) -> Lookup {
        match dst {
            IpAddr::V4(a) => self.lookup_v4(a, flow_hash),
            IpAddr::V6(a) => self.lookup_v6(a, flow_hash),
        }
    }

    /// [`Fib::lookup`] for IPv4.
    #[inline]
    pub fn lookup_v4(&self, dst: Ipv4Addr, flow_hash: u32) -> Lookup {
        if dst.is_multicast() || dst.is_broadcast() {
            return Lookup::Local;
        }
        self.resolve(self.v4.lookup(dst.into()), IpAddr::V4(dst), flow_hash)
    }

    /// [`Fib::lookup`] for IPv6.
    #[inline]
    pub fn lookup_v6(&self, dst: Ipv6Addr, flow_hash: u32) -> Lookup {
        if dst.is_multicast() || is_link_local(dst) {
            return Lookup::Local;
        }
        self.resolve(self.v6.lookup(dst.into()), IpAddr::V6(dst), flow_hash)
    }

    #[inline]
    fn resolve(&self, entry: Option<Entry>, dst: IpAddr, flow_hash: u32) -> Lookup {
        let (first, count, total) = match entry {
            None => return Lookup::NoRoute,
            Some(Entry::Local) => return Lookup::Local,
            Some(Entry::Blackhole) => return Lookup::Blackhole,
            Some(Entry::Unreachable) => return Lookup::Unreachable,
            Some(Entry::Prohibited) => return Lookup::Prohibited,
            Some(Entry::Unicast {
                first,
                count,
                total,
            }) => (first as usize, count as usize, total),
        };
        let hops = &self.nexthops[first..first + count];
        let h = if count == 1 {
            &hops[0]
        } else {
            // Multiply-shift maps the (mixed) hash onto 0..total evenly.
            let point = ((u64::from(mix(flow_hash)) * u64::from(total)) >> 32) as u32;
            hops.iter()
                .find(|h| point < h.upto)
                .unwrap_or(&hops[count - 1])
        };
        let Some(egress) = h.egress else {
            return Lookup::NotOurPort { ifindex: h.ifindex };
        };
        let next_hop = h.gateway.unwrap_or(dst);
        match self.neighbour(h.ifindex, next_hop) {
            Some(dst_mac) => Lookup::Forward(Hop {
                port_ifindex: h.ifindex,
                dst_mac,
                src_mac: egress.mac,
                mtu: egress.mtu,
            }),
            None => Lookup::NoNeighbour {
                ifindex: h.ifindex,
                next_hop,
            },
        }
    }

    /// The MAC of a usable neighbour `ip` on `ifindex`.
    #[inline]
    pub fn neighbour(&self, ifindex: u32, ip: IpAddr) -> Option<MacAddr> {
        match ip {
            IpAddr::V4(a) => self
                .neigh_v4
                .get(&(u64::from(ifindex) << 32 | u64::from(u32::from(a))))
                .copied(),
            IpAddr::V6(a) => self.neigh_v6.get(&(ifindex, a.into())).copied(),
        }
    }

    /// The IPv4 address to source ICMP errors from on `ifindex`: its first primary address
    /// (by address order), or a secondary one if it has no primary.
    pub fn ipv4_of(&self, ifindex: u32) -> Option<Ipv4Addr> {
        self.addrs.get(&ifindex).and_then(|a| a.v4)
    }

    /// A global (not link-local, not loopback) IPv6 address of `ifindex`, the lowest; `None` if it
    /// has none (then [`Fib::ipv6_link_local_of`] is the fallback for errors to on-link hosts).
    pub fn ipv6_global_of(&self, ifindex: u32) -> Option<Ipv6Addr> {
        self.addrs.get(&ifindex).and_then(|a| a.v6_global)
    }

    /// A link-local (`fe80::/10`) IPv6 address of `ifindex`.
    pub fn ipv6_link_local_of(&self, ifindex: u32) -> Option<Ipv6Addr> {
        self.addrs.get(&ifindex).and_then(|a| a.v6_link_local)
    }

    /// The host's IPv4 broadcast addresses (the `local` table's `broadcast` routes): a packet
    /// from one is a martian.
    #[inline]
    pub fn broadcasts(&self) -> &Broadcasts {
        &self.broadcasts
    }

    /// Whether the engine serves `ifindex` (it was among the `ports` the table was built with).
    pub fn is_port(&self, ifindex: u32) -> bool {
        self.ports.contains(&ifindex)
    }

    /// Number of usable prefixes, IPv4 and IPv6, `local` and `main` tables together.
    pub fn len(&self) -> usize {
        self.v4.local.len() + self.v4.main.len() + self.v6.local.len() + self.v6.main.len()
    }

    /// Whether the table has no usable prefix.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// A 32-bit finalizer (murmur3's), so a caller's hash with poor high bits still spreads.
#[inline]
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
