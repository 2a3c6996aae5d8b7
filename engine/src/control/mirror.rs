//! The rtnetlink mirror: the kernel's links, addresses, neighbours and the routes of the `main`
//! and `local` tables, kept current by one control thread.
//!
//! How it stays exact: an event socket subscribed to the link, address, neighbour and route groups
//! is opened *before* the first dump, so every change made after the dump started is queued on it.
//! Applying a new/del message is idempotent (an upsert or a removal by key), so replaying events
//! that the dump already reflects is harmless, and the last event for a key wins. When the kernel
//! drops events (`ENOBUFS` on the event socket) the queue has a gap: the mirror discards what is
//! queued and re-dumps everything (counted in [`MirrorStats::redumps`]). A dump interrupted by a
//! concurrent change (`NLM_F_DUMP_INTR`) is redone.
//!
//! The kernel removes IPv4 routes through a link that goes administratively down or disappears
//! without sending `RTM_DELROUTE`; the mirror re-dumps the routes then.
//!
//! Parsing and applying (`apply`, [`Snapshot`]) are pure and separate from the I/O
//! ([`Mirror::start`]). Readers get an immutable [`Arc<Snapshot>`]: the updater publishes a new one
//! after each batch of events, so a reader never holds a lock while it looks things up. Each
//! publication bumps a generation number; [`SnapshotWatch::wait_newer`] wakes a follower (the
//! forwarding table's updater, [`crate::fib`]) as soon as one is published.
//!
//! Routes: the `main` table ([`Snapshot::routes`], [`Snapshot::route_lookup`]) and the `local`
//! table ([`Snapshot::local_routes`]: the host's own, broadcast, anycast and multicast
//! destinations). The kernel's plain destination lookup, on a host without policy rules, is
//! `local`, then `main`, then `default`; `default` (table 253, empty unless configured) and any
//! other table are not mirrored. A multipath route keeps all its next hops
//! ([`MirRoute::nexthops`]).
//!
//! This module must never be called from a worker's hot loop, and it never changes kernel state.

use super::netlink::{Netlink, RECV_BUF, split};
use crate::wire::ethernet::MacAddr;
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp, XdpAttached};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the event thread blocks in `recv` before it looks at the stop flag; bounds
/// [`MirrorHandle::stop`].
const STOP_POLL: Duration = Duration::from_millis(100);

/// Kernel-side queue for events. Bursts (a route daemon loading a table) overflow a small queue;
/// the kernel caps this at `net.core.rmem_max`, and an overflow only costs a re-dump.
const EVENT_SOCK_BUF: usize = 4 * 1024 * 1024;

/// A dump interrupted this many times in a row by concurrent changes is an error.
const MAX_DUMP_ATTEMPTS: u32 = 10;

/// The multicast groups the event socket joins.
const GROUPS: [u32; 6] = [
    libc::RTNLGRP_LINK,
    libc::RTNLGRP_IPV4_IFADDR,
    libc::RTNLGRP_IPV6_IFADDR,
    libc::RTNLGRP_NEIGH,
    libc::RTNLGRP_IPV4_ROUTE,
    libc::RTNLGRP_IPV6_ROUTE,
];

// ----- data ---------------------------------------------------------------------------------

pub use crate::netstate::{
    MirAddress, MirLink, MirNeighbour, MirNexthop, MirRoute, NeighState, RouteKind, Snapshot,
};
use crate::netstate::{RouteKey, mask};

impl From<NeighbourState> for NeighState {
    fn from(s: NeighbourState) -> Self {
        match s {
            NeighbourState::Incomplete => Self::Incomplete,
            NeighbourState::Reachable => Self::Reachable,
            NeighbourState::Stale => Self::Stale,
            NeighbourState::Delay => Self::Delay,
            NeighbourState::Probe => Self::Probe,
            NeighbourState::Failed => Self::Failed,
            NeighbourState::Noarp => Self::Noarp,
            NeighbourState::Permanent => Self::Permanent,
            NeighbourState::None => Self::None,
            other => Self::Other(u16::from(other)),
        }
    }
}

#[cfg(test)]
impl Snapshot {
    /// Applies rtnetlink messages as the mirror thread does, for other modules' tests.
    pub(crate) fn from_messages(msgs: impl IntoIterator<Item = RouteNetlinkMessage>) -> Snapshot {
        let mut s = Snapshot::default();
        for m in msgs {
            apply(&mut s, &m);
        }
        s
    }
}

// ----- applying messages --------------------------------------------------------------------

/// What happened to a link the engine may care about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkEvent {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name (the last known one, for [`LinkEventKind::Deleted`]).
    pub name: String,
    /// The change.
    pub kind: LinkEventKind,
}

/// A link state transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkEventKind {
    /// It became able to carry traffic ([`MirLink::is_running`] turned true).
    Up,
    /// It stopped being able to carry traffic (admin down or carrier lost).
    Down,
    /// Its MTU changed.
    MtuChanged {
        /// Before.
        old: u32,
        /// After.
        new: u32,
    },
    /// It was deleted.
    Deleted,
}

/// The effect of one message on a [`Snapshot`].
#[derive(Debug, Default, PartialEq, Eq)]
struct Applied {
    /// The snapshot changed.
    changed: bool,
    /// Link transitions, in the order they happened.
    link_events: Vec<LinkEvent>,
    /// A link went administratively down or was deleted: the kernel flushed IPv4 routes through
    /// it without telling, so the routes must be re-dumped.
    routes_stale: bool,
}

/// The link transitions between two states of one link (`None`: absent). A link that appears is
/// not an event: nothing was waiting for it.
fn link_transitions(old: Option<&MirLink>, new: Option<&MirLink>) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    match (old, new) {
        (Some(o), Some(n)) => {
            let ev = |kind| LinkEvent {
                ifindex: n.index,
                name: n.name.clone(),
                kind,
            };
            if o.mtu != n.mtu {
                out.push(ev(LinkEventKind::MtuChanged {
                    old: o.mtu,
                    new: n.mtu,
                }));
            }
            match (o.is_running(), n.is_running()) {
                (false, true) => out.push(ev(LinkEventKind::Up)),
                (true, false) => out.push(ev(LinkEventKind::Down)),
                _ => {}
            }
        }
        (Some(o), None) => out.push(LinkEvent {
            ifindex: o.index,
            name: o.name.clone(),
            kind: LinkEventKind::Deleted,
        }),
        _ => {}
    }
    out
}

/// The link transitions from `old` to `new` (after a re-dump), by interface index.
fn diff_links(old: &Snapshot, new: &Snapshot) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    for (i, o) in &old.links {
        out.extend(link_transitions(Some(o), new.links.get(i)));
    }
    out
}

/// Apply one rtnetlink message (from a dump or an event) to `snap`. New messages upsert, del
/// messages remove, by the key the kernel uses; anything else (other families, other tables,
/// other message types) is ignored. Idempotent: applying a message twice changes nothing more.
fn apply(snap: &mut Snapshot, msg: &RouteNetlinkMessage) -> Applied {
    let mut out = Applied::default();
    match msg {
        RouteNetlinkMessage::NewLink(m) | RouteNetlinkMessage::DelLink(m) => {
            // Bridge port notifications (AF_BRIDGE) share the message type; a DELLINK of that
            // family means "left the bridge", not "deleted".
            if m.header.interface_family != AddressFamily::Unspec {
                return out;
            }
            let new = matches!(msg, RouteNetlinkMessage::NewLink(_)).then(|| parse_link(m));
            let index = m.header.index;
            let old = snap.links.get(&index).cloned();
            out.link_events = link_transitions(old.as_ref(), new.as_ref());
            out.routes_stale = old.as_ref().is_some_and(|o| o.admin_up)
                && new.as_ref().is_none_or(|n| !n.admin_up)
                || old.is_some() && new.is_none();
            out.changed = old != new;
            match new {
                Some(n) => {
                    snap.links.insert(index, n);
                }
                None => {
                    snap.links.remove(&index);
                    // The kernel sends most of these deletions too, but not all (IPv4 routes).
                    snap.addresses.retain(|k, _| k.0 != index);
                    snap.neighbours.retain(|k, _| k.0 != index);
                    // A route with any next hop through a deleted link goes (IPv4 kills it whole).
                    snap.routes.retain(|_, r| !r.uses_link(index));
                    snap.local_routes.retain(|_, r| !r.uses_link(index));
                }
            }
        }
        RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m) => {
            if let Some(a) = parse_address(m) {
                let new = matches!(msg, RouteNetlinkMessage::NewAddress(_));
                let key = (a.ifindex, a.addr, a.prefix_len);
                out.changed = upsert_or_remove(&mut snap.addresses, key, a, new);
            }
        }
        RouteNetlinkMessage::NewNeighbour(m) | RouteNetlinkMessage::DelNeighbour(m) => {
            if let Some(n) = parse_neighbour(m) {
                let new = matches!(msg, RouteNetlinkMessage::NewNeighbour(_));
                out.changed = upsert_or_remove(&mut snap.neighbours, (n.ifindex, n.ip), n, new);
            }
        }
        RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m) => {
            let new = matches!(msg, RouteNetlinkMessage::NewRoute(_));
            match parse_route(m) {
                Some((Table::Main, r)) => {
                    out.changed = upsert_or_remove(&mut snap.routes, RouteKey::of(&r), r, new);
                }
                Some((Table::Local, r)) => {
                    let key = (RouteKey::of(&r), r.oif.unwrap_or(0));
                    out.changed = upsert_or_remove(&mut snap.local_routes, key, r, new);
                }
                None => {}
            }
        }
        _ => {}
    }
    out
}

/// Puts `value` under `key` (`new`) or removes the entry; whether `map` changed.
fn upsert_or_remove<K: Ord, V: PartialEq>(
    map: &mut BTreeMap<K, V>,
    key: K,
    value: V,
    new: bool,
) -> bool {
    if !new {
        return map.remove(&key).is_some();
    }
    if map.get(&key) == Some(&value) {
        return false;
    }
    map.insert(key, value);
    true
}

fn mac_of(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
}

/// A link from `RTM_NEWLINK` (a dump, an event, or [`super::link::get_link`]'s answer).
pub(super) fn parse_link(m: &LinkMessage) -> MirLink {
    let mut l = MirLink {
        index: m.header.index,
        name: String::new(),
        admin_up: m.header.flags.contains(LinkFlags::Up),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        mtu: 0,
        mac: None,
        num_rx_queues: 1,
        xdp_attached: false,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name.clone_from(n),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(b) => l.mac = mac_of(b),
            LinkAttribute::NumRxQueues(q) => l.num_rx_queues = *q,
            LinkAttribute::Xdp(x) => {
                l.xdp_attached = x
                    .iter()
                    .any(|x| matches!(x, LinkXdp::Attached(a) if *a != XdpAttached::None));
            }
            _ => {}
        }
    }
    l
}

/// An IPv4/IPv6 address from `RTM_NEWADDR`/`RTM_DELADDR`; `None` for other families.
fn parse_address(m: &AddressMessage) -> Option<MirAddress> {
    if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
        return None;
    }
    // IFA_LOCAL is the local address; IFA_ADDRESS is the peer on point-to-point links and the
    // same as IFA_LOCAL otherwise. IPv6 sends only IFA_ADDRESS.
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => addr = Some(*ip),
            AddressAttribute::Address(ip) if addr.is_none() => addr = Some(*ip),
            _ => {}
        }
    }
    Some(MirAddress {
        ifindex: m.header.index,
        addr: addr?,
        prefix_len: m.header.prefix_len,
        secondary: m.header.flags.contains(AddressHeaderFlags::Secondary),
    })
}

/// An IPv4/IPv6 neighbour from `RTM_NEWNEIGH`/`RTM_DELNEIGH`; `None` for bridge FDB entries and
/// other families.
fn parse_neighbour(m: &NeighbourMessage) -> Option<MirNeighbour> {
    let mut ip = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(b) => mac = mac_of(b),
            _ => {}
        }
    }
    if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
        return None;
    }
    Some(MirNeighbour {
        ifindex: m.header.ifindex,
        ip: ip?,
        mac,
        state: m.header.state.into(),
    })
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The routing tables the mirror keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Main,
    Local,
}

/// The gateway among a route's or a next hop's attributes.
fn gateway_of(attrs: &[RouteAttribute]) -> Option<IpAddr> {
    attrs.iter().find_map(|a| match a {
        RouteAttribute::Gateway(a) => route_ip(a),
        _ => None,
    })
}

/// A main- or local-table IPv4/IPv6 route from `RTM_NEWROUTE`/`RTM_DELROUTE`; `None` for other
/// tables and families.
fn parse_route(m: &RouteMessage) -> Option<(Table, MirRoute)> {
    let unspecified = match m.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    // RTA_TABLE carries table ids above 255; the header's u8 is then RT_TABLE_UNSPEC.
    let mut table = u32::from(m.header.table);
    let mut dst = unspecified;
    let mut r = MirRoute {
        dst,
        prefix_len: m.header.destination_prefix_length,
        gateway: None,
        oif: None,
        metric: 0,
        tos: m.header.tos,
        kind: match m.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::BlackHole => RouteKind::Blackhole,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::Prohibit => RouteKind::Prohibit,
            RouteType::Local => RouteKind::Local,
            RouteType::Broadcast => RouteKind::Broadcast,
            RouteType::Anycast => RouteKind::Anycast,
            RouteType::Multicast => RouteKind::Multicast,
            _ => RouteKind::Other,
        },
        nexthops: Vec::new(),
    };
    let mut multipath = Vec::new();
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = route_ip(a)?,
            RouteAttribute::Gateway(a) => r.gateway = route_ip(a),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::Priority(p) => r.metric = *p,
            RouteAttribute::MultiPath(hops) => {
                multipath.extend(hops.iter().map(|h| MirNexthop {
                    gateway: gateway_of(&h.attributes),
                    oif: h.interface_index,
                    weight: u16::from(h.hops) + 1,
                }));
            }
            _ => {}
        }
    }
    let table = match table {
        t if t == u32::from(RouteHeader::RT_TABLE_MAIN) => Table::Main,
        t if t == u32::from(libc::RT_TABLE_LOCAL) => Table::Local,
        _ => return None,
    };
    r.dst = mask(dst, r.prefix_len);
    if !multipath.is_empty() {
        // The kernel sends RTA_MULTIPATH instead of RTA_OIF/RTA_GATEWAY; the route's own
        // gateway/oif stand for the first next hop, as they did before all hops were kept.
        r.oif = r.oif.or(Some(multipath[0].oif));
        r.gateway = r.gateway.or(multipath[0].gateway);
        r.nexthops = multipath;
    } else if let Some(oif) = r.oif {
        r.nexthops.push(MirNexthop {
            gateway: r.gateway,
            oif,
            weight: 1,
        });
    }
    if matches!(
        r.kind,
        RouteKind::Blackhole | RouteKind::Unreachable | RouteKind::Prohibit
    ) {
        // IPv6 reports these through `lo`; they have no next hop to use.
        r.nexthops.clear();
    }
    Some((table, r))
}

// ----- I/O ----------------------------------------------------------------------------------

/// What went wrong in the mirror. Each variant says which netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Opening, binding or configuring a netlink socket.
    #[error("setting up the rtnetlink {what} socket")]
    Socket {
        /// Which socket and step.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Joining an rtnetlink multicast group.
    #[error("subscribing to rtnetlink group {group}")]
    Subscribe {
        /// The `RTNLGRP_*` number.
        group: u32,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A dump request failed (send, receive, or a kernel error reply).
    #[error("dumping {what} over rtnetlink")]
    Dump {
        /// links, addresses, neighbours or routes.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Every attempt at a dump was interrupted by concurrent changes (`NLM_F_DUMP_INTR`).
    #[error("dumping {what} over rtnetlink: interrupted by concurrent changes {attempts} times")]
    DumpInterrupted {
        /// links, addresses, neighbours or routes.
        what: &'static str,
        /// Attempts made.
        attempts: u32,
    },
    /// Reading the event socket failed with something other than lost events.
    #[error("reading rtnetlink events")]
    Events(#[source] io::Error),
    /// The mirror thread could not be started.
    #[error("starting the rtnetlink mirror thread")]
    Spawn(#[source] io::Error),
    /// The mirror thread panicked.
    #[error("the rtnetlink mirror thread panicked")]
    Panicked,
}

/// The dump socket: requests and their replies only, no subscriptions.
struct Dumper {
    nl: Netlink,
}

impl Dumper {
    fn open() -> Result<Self, MirrorError> {
        Netlink::open()
            .map(|nl| Dumper { nl })
            .map_err(|source| MirrorError::Socket {
                what: "dump",
                source,
            })
    }

    /// Dump `req`, redoing it while the kernel flags it `NLM_F_DUMP_INTR`.
    fn dump(
        &mut self,
        what: &'static str,
        req: RouteNetlinkMessage,
        decode_errors: &AtomicU64,
    ) -> Result<Vec<RouteNetlinkMessage>, MirrorError> {
        for _ in 0..MAX_DUMP_ATTEMPTS {
            match self.dump_once(req.clone(), decode_errors) {
                Ok(Some(msgs)) => return Ok(msgs),
                Ok(None) => continue,
                Err(source) => return Err(MirrorError::Dump { what, source }),
            }
        }
        Err(MirrorError::DumpInterrupted {
            what,
            attempts: MAX_DUMP_ATTEMPTS,
        })
    }

    /// One dump; `Ok(None)` if it was interrupted. Undecodable messages are counted and skipped.
    fn dump_once(
        &mut self,
        req: RouteNetlinkMessage,
        decode_errors: &AtomicU64,
    ) -> io::Result<Option<Vec<RouteNetlinkMessage>>> {
        let (replies, interrupted) = self.nl.exchange(req, NLM_F_REQUEST | NLM_F_DUMP, |_| {
            decode_errors.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })?;
        Ok((!interrupted).then_some(replies))
    }

    fn dump_routes(&mut self, decode_errors: &AtomicU64) -> Result<Snapshot, MirrorError> {
        let mut s = Snapshot::default();
        let msgs = self.dump(
            "routes",
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            decode_errors,
        )?;
        for m in &msgs {
            apply(&mut s, m);
        }
        Ok(s)
    }

    fn dump_all(&mut self, decode_errors: &AtomicU64) -> Result<Snapshot, MirrorError> {
        let mut s = self.dump_routes(decode_errors)?;
        let reqs = [
            (
                "links",
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
            ),
            (
                "addresses",
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            ),
            (
                "neighbours",
                RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            ),
        ];
        for (what, req) in reqs {
            for m in &self.dump(what, req, decode_errors)? {
                apply(&mut s, m);
            }
        }
        Ok(s)
    }
}

/// Counters of the mirror thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MirrorStats {
    /// Event messages applied (whether or not they changed anything).
    pub events: u64,
    /// Full re-dumps because the kernel dropped events (`ENOBUFS`) or a datagram was truncated.
    pub redumps: u64,
    /// Route-only re-dumps after a link went down or away.
    pub route_refreshes: u64,
    /// Messages netlink-packet-route could not decode (skipped).
    pub decode_errors: u64,
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    redumps: AtomicU64,
    route_refreshes: AtomicU64,
    decode_errors: AtomicU64,
}

/// The latest snapshot and its generation, replaced together.
struct Published {
    /// Starts at 1 with the first dump; +1 on each publication.
    generation: u64,
    snapshot: Arc<Snapshot>,
}

/// State shared between the handle and the thread.
struct Shared {
    published: Mutex<Published>,
    /// Signalled on each publication.
    published_cv: Condvar,
    subscribers: Mutex<Vec<Sender<LinkEvent>>>,
    counters: Counters,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only plain assignments happen under these locks; a poisoned one holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn publish(&self, snap: &Snapshot) {
        let new = Arc::new(snap.clone());
        {
            let mut p = lock(&self.published);
            p.generation += 1;
            p.snapshot = new;
        }
        self.published_cv.notify_all();
    }

    fn send(&self, events: Vec<LinkEvent>) {
        if events.is_empty() {
            return;
        }
        for e in &events {
            log::debug!("link {} ({}): {:?}", e.name, e.ifindex, e.kind);
        }
        lock(&self.subscribers).retain(|tx| events.iter().all(|e| tx.send(e.clone()).is_ok()));
    }
}

/// Entry point of the mirror.
pub struct Mirror;

impl Mirror {
    /// Dump the kernel's state in the caller's network namespace, then follow it from a new thread.
    /// The first snapshot is complete when this returns.
    pub fn start() -> Result<MirrorHandle, MirrorError> {
        Self::start_with_event_buffer(EVENT_SOCK_BUF)
    }

    /// [`Mirror::start`] with the event socket's receive buffer set to `bytes` (the kernel
    /// doubles it and enforces a minimum). A small buffer makes the kernel drop events under a
    /// burst of changes: the mirror then re-dumps (tests use this to exercise that path).
    pub fn start_with_event_buffer(bytes: usize) -> Result<MirrorHandle, MirrorError> {
        // The event socket first: every change after this point is queued on it.
        let events = open_event_socket(bytes)?;
        let mut dumper = Dumper::open()?;
        let counters = Counters::default();
        let snap = dumper.dump_all(&counters.decode_errors)?;
        let shared = Arc::new(Shared {
            published: Mutex::new(Published {
                generation: 1,
                snapshot: Arc::new(snap.clone()),
            }),
            published_cv: Condvar::new(),
            subscribers: Mutex::new(Vec::new()),
            counters,
            stop: AtomicBool::new(false),
        });
        let sh = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("sluice-mirror".into())
            .spawn(move || {
                let r = run(&sh, &events, dumper, snap);
                if let Err(e) = &r {
                    log::error!("rtnetlink mirror stopped: {e}");
                }
                // Receivers see the end of the stream instead of waiting forever.
                lock(&sh.subscribers).clear();
                r
            })
            .map_err(MirrorError::Spawn)?;
        Ok(MirrorHandle {
            shared,
            thread: Some(thread),
        })
    }
}

fn open_event_socket(buf: usize) -> Result<Socket, MirrorError> {
    let socket = |what, source| MirrorError::Socket { what, source };
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| socket("event", e))?;
    sock.bind_auto().map_err(|e| socket("event (bind)", e))?;
    // Best effort: without it the default buffer only means more re-dumps under bursts.
    if let Err(e) = sock.set_rx_buf_sz(buf) {
        log::debug!("rtnetlink event socket: SO_RCVBUF {buf}: {e}");
    }
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(STOP_POLL),
    )
    .map_err(|e| socket("event (SO_RCVTIMEO)", e.into()))?;
    for group in GROUPS {
        sock.add_membership(group)
            .map_err(|source| MirrorError::Subscribe { group, source })?;
    }
    Ok(sock)
}

/// The mirror thread: apply events until stopped or a fatal error.
fn run(
    shared: &Shared,
    events: &Socket,
    mut dumper: Dumper,
    mut snap: Snapshot,
) -> Result<(), MirrorError> {
    let mut buf = vec![0u8; RECV_BUF];
    let c = &shared.counters;
    while !shared.stop.load(Ordering::Relaxed) {
        let mut lost = false;
        let mut changed = false;
        let mut routes_stale = false;
        let mut link_events = Vec::new();
        // One blocking receive, then whatever else is queued, published as one snapshot.
        let mut flags = libc::MSG_TRUNC;
        loop {
            let n = match events.recv(&mut &mut buf[..], flags) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    lost = true;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(MirrorError::Events(e)),
            };
            flags = libc::MSG_TRUNC | libc::MSG_DONTWAIT;
            if n > buf.len() {
                lost = true;
                break;
            }
            for m in split(&buf[..n]) {
                let Ok((_, _, m)) = m else {
                    c.decode_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if let NetlinkPayload::InnerMessage(m) = m.payload {
                    let a = apply(&mut snap, &m);
                    c.events.fetch_add(1, Ordering::Relaxed);
                    changed |= a.changed;
                    routes_stale |= a.routes_stale;
                    link_events.extend(a.link_events);
                }
            }
        }
        if lost {
            // The queue has a gap. What is queued now predates the dump below, and replaying it
            // after the dump could resurrect what the lost events deleted: discard it.
            drain(events);
            let new = dumper.dump_all(&c.decode_errors)?;
            c.redumps.fetch_add(1, Ordering::Relaxed);
            log::warn!("rtnetlink events were lost (ENOBUFS); re-dumped the kernel's state");
            link_events.extend(diff_links(&snap, &new));
            snap = new;
            changed = true;
        } else if routes_stale {
            snap.routes = dumper.dump_routes(&c.decode_errors)?.routes;
            c.route_refreshes.fetch_add(1, Ordering::Relaxed);
            changed = true;
        }
        if changed {
            shared.publish(&snap);
        }
        shared.send(link_events);
    }
    Ok(())
}

/// Read and discard everything queued on `sock`.
fn drain(sock: &Socket) {
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut &mut buf[..], libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(_) => return,
        }
    }
}

/// Follows the snapshots a [`MirrorHandle`] publishes, from any thread: made by
/// [`MirrorHandle::watch`].
#[derive(Clone)]
pub struct SnapshotWatch {
    shared: Arc<Shared>,
}

impl SnapshotWatch {
    /// The latest snapshot and its generation (see [`MirrorHandle::generation`]), read together.
    pub fn latest(&self) -> (u64, Arc<Snapshot>) {
        let p = lock(&self.shared.published);
        (p.generation, Arc::clone(&p.snapshot))
    }

    /// The latest generation.
    pub fn generation(&self) -> u64 {
        lock(&self.shared.published).generation
    }

    /// Blocks until a generation newer than `seen` is published or `timeout` passes; returns the
    /// latest generation either way. Wakes as soon as the mirror publishes.
    pub fn wait_newer(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut p = lock(&self.shared.published);
        while p.generation <= seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = self
                .shared
                .published_cv
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        p.generation
    }
}

/// The running mirror. Dropping it stops the thread.
pub struct MirrorHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), MirrorError>>>,
}

impl MirrorHandle {
    /// The latest snapshot. Cheap (one `Arc` clone under a briefly held lock); the snapshot never
    /// changes, so hold it as long as one consistent view is needed.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&lock(&self.shared.published).snapshot)
    }

    /// How many snapshots have been published: 1 after the first dump, +1 each time a batch of
    /// events changed something. Cheap; compare it with an earlier value to see a change.
    pub fn generation(&self) -> u64 {
        lock(&self.shared.published).generation
    }

    /// A cloneable follower of the published snapshots, for another thread (it keeps no thread
    /// alive: after the mirror stops it simply sees no newer generation).
    pub fn watch(&self) -> SnapshotWatch {
        SnapshotWatch {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A new receiver of link events from now on. Each call makes an independent subscriber;
    /// dropping the receiver unsubscribes.
    pub fn events(&self) -> Receiver<LinkEvent> {
        let (tx, rx) = mpsc::channel();
        lock(&self.shared.subscribers).push(tx);
        rx
    }

    /// The thread's counters.
    pub fn stats(&self) -> MirrorStats {
        let c = &self.shared.counters;
        MirrorStats {
            events: c.events.load(Ordering::Relaxed),
            redumps: c.redumps.load(Ordering::Relaxed),
            route_refreshes: c.route_refreshes.load(Ordering::Relaxed),
            decode_errors: c.decode_errors.load(Ordering::Relaxed),
        }
    }

    /// The thread is still following the kernel (it ends only on stop or a fatal error).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stop the thread (within about 100 ms) and return the error that ended it early, if any.
    pub fn stop(mut self) -> Result<(), MirrorError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), MirrorError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| MirrorError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for MirrorHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            log::error!("{e}");
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage};
    use netlink_packet_route::route::RouteProtocol;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    fn link_msg(index: u32, name: &str, up: bool, lower_up: bool, mtu: u32) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if up {
            m.header.flags |= LinkFlags::Up;
        }
        if lower_up {
            m.header.flags |= LinkFlags::LowerUp;
        }
        m.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(MAC.to_vec()),
            LinkAttribute::NumRxQueues(4),
        ];
        m
    }

    fn family(ip: IpAddr) -> AddressFamily {
        match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }

    fn addr_msg(ifindex: u32, ip: IpAddr, prefix_len: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family(ip);
        m.header.index = ifindex;
        m.header.prefix_len = prefix_len;
        m.attributes.push(AddressAttribute::Address(ip));
        if ip.is_ipv4() {
            m.attributes.push(AddressAttribute::Local(ip));
        }
        m
    }

    fn neigh_msg(ifindex: u32, ip: IpAddr, state: NeighbourState) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = family(ip);
        m.header.ifindex = ifindex;
        m.header.state = state;
        m.attributes = vec![
            NeighbourAttribute::Destination(match ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }),
            NeighbourAttribute::LinkLayerAddress(MAC.to_vec()),
        ];
        m
    }

    fn route_msg(dst: &str, gw: Option<&str>, oif: u32, metric: Option<u32>) -> RouteMessage {
        let (dst, len) = dst.split_once('/').unwrap();
        let dst: IpAddr = dst.parse().unwrap();
        let mut m = RouteMessage::default();
        m.header.address_family = family(dst);
        m.header.destination_prefix_length = len.parse().unwrap();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Table(254));
        if !dst.is_unspecified() {
            m.attributes.push(RouteAttribute::Destination(dst.into()));
        }
        if let Some(gw) = gw {
            let gw: IpAddr = gw.parse().unwrap();
            m.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        m.attributes.push(RouteAttribute::Oif(oif));
        if let Some(p) = metric {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        m
    }

    /// Serialize like the kernel would and read back through the receive path, so the tests
    /// cover the byte parsing too.
    fn wire(msgs: Vec<RouteNetlinkMessage>) -> Vec<RouteNetlinkMessage> {
        let mut bytes = Vec::new();
        for m in msgs {
            let mut nl = NetlinkMessage::new(NetlinkHeader::default(), m.into());
            nl.finalize();
            let mut b = vec![0u8; nl.buffer_len()];
            nl.serialize(&mut b);
            bytes.extend_from_slice(&b);
        }
        split(&bytes)
            .map(|m| match m.unwrap().2.payload {
                NetlinkPayload::InnerMessage(m) => m,
                other => panic!("unexpected payload {other:?}"),
            })
            .collect()
    }

    fn snapshot_of(msgs: Vec<RouteNetlinkMessage>) -> Snapshot {
        let mut s = Snapshot::default();
        for m in wire(msgs) {
            apply(&mut s, &m);
        }
        s
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn routes() -> Vec<RouteNetlinkMessage> {
        [
            route_msg("0.0.0.0/0", Some("10.0.0.1"), 2, None),
            route_msg("10.1.2.0/24", Some("10.0.0.2"), 2, Some(100)),
            route_msg("10.1.2.0/24", Some("10.0.0.3"), 3, Some(50)),
            route_msg("10.1.2.3/32", Some("10.0.0.4"), 2, Some(10)),
            route_msg("::/0", Some("fe80::1"), 2, Some(1024)),
            route_msg("2001:db8::/32", None, 3, Some(1024)),
            route_msg("2001:db8:1::/48", Some("fe80::2"), 2, Some(256)),
            route_msg("2001:db8:1::/48", Some("fe80::3"), 3, Some(1024)),
        ]
        .into_iter()
        .map(RouteNetlinkMessage::NewRoute)
        .collect()
    }

    #[test]
    fn lpm_v4_default_vs_24_vs_32_and_metric_ties() {
        let s = snapshot_of(routes());
        let r = s.route_lookup(ip("10.1.2.3")).unwrap();
        assert_eq!((r.prefix_len, r.gateway), (32, Some(ip("10.0.0.4"))));
        let r = s.route_lookup(ip("10.1.2.4")).unwrap();
        assert_eq!(r.prefix_len, 24);
        assert_eq!(
            (r.metric, r.oif, r.gateway),
            (50, Some(3), Some(ip("10.0.0.3")))
        );
        let r = s.route_lookup(ip("192.0.2.1")).unwrap();
        assert_eq!((r.dst, r.prefix_len), (ip("0.0.0.0"), 0));
        assert_eq!(r.gateway, Some(ip("10.0.0.1")));
        assert_eq!(r.metric, 0, "IPv4 route without RTA_PRIORITY has metric 0");
    }

    #[test]
    fn lpm_v6_and_families_do_not_mix() {
        let s = snapshot_of(routes());
        let r = s.route_lookup(ip("2001:db8:1::5")).unwrap();
        assert_eq!((r.prefix_len, r.metric, r.oif), (48, 256, Some(2)));
        let r = s.route_lookup(ip("2001:db8:2::5")).unwrap();
        assert_eq!((r.prefix_len, r.gateway, r.oif), (32, None, Some(3)));
        let r = s.route_lookup(ip("2a00::1")).unwrap();
        assert_eq!((r.dst, r.prefix_len), (ip("::"), 0));
        // Only IPv6 routes: no default for IPv4.
        let v6only = snapshot_of(routes().split_off(4));
        assert!(v6only.route_lookup(ip("10.1.2.3")).is_none());
        assert!(v6only.route_lookup(ip("2001:db8::1")).is_some());
    }

    #[test]
    fn del_route_removes_only_that_metric() {
        let mut s = snapshot_of(routes());
        let del =
            RouteNetlinkMessage::DelRoute(route_msg("10.1.2.0/24", Some("10.0.0.3"), 3, Some(50)));
        assert!(apply(&mut s, &wire(vec![del.clone()])[0]).changed);
        assert_eq!(s.route_lookup(ip("10.1.2.4")).unwrap().metric, 100);
        assert!(!apply(&mut s, &del).changed, "deleting twice is a no-op");
        let n = s.routes().count();
        apply(
            &mut s,
            &RouteNetlinkMessage::NewRoute(route_msg("10.9.0.0/16", None, 2, None)),
        );
        apply(
            &mut s,
            &RouteNetlinkMessage::NewRoute(route_msg("10.9.0.0/16", None, 2, None)),
        );
        assert_eq!(s.routes().count(), n + 1, "re-adding is an upsert");
    }

    #[test]
    fn other_tables_and_host_bits() {
        let mut local = route_msg("10.0.0.1/32", None, 2, None);
        local.header.table = 255;
        local
            .attributes
            .retain(|a| !matches!(a, RouteAttribute::Table(_)));
        local.attributes.push(RouteAttribute::Table(255));
        let mut big_table = route_msg("0.0.0.0/0", None, 2, None);
        big_table.header.table = 0;
        big_table
            .attributes
            .retain(|a| !matches!(a, RouteAttribute::Table(_)));
        big_table.attributes.push(RouteAttribute::Table(1000));
        let s = snapshot_of(vec![
            RouteNetlinkMessage::NewRoute(local),
            RouteNetlinkMessage::NewRoute(big_table),
            RouteNetlinkMessage::NewRoute(route_msg("2001:db8::1:2/64", None, 2, Some(1))),
        ]);
        assert_eq!(s.routes().count(), 1);
        assert_eq!(s.routes().next().unwrap().dst, ip("2001:db8::"));
        assert!(s.route_lookup(ip("10.0.0.1")).is_none());
        assert_eq!(s.local_routes().count(), 1, "the local table is kept apart");
    }

    fn in_table(mut m: RouteMessage, table: u8, kind: RouteType) -> RouteMessage {
        m.header.table = table;
        m.header.kind = kind;
        m.attributes
            .retain(|a| !matches!(a, RouteAttribute::Table(_)));
        m.attributes.push(RouteAttribute::Table(u32::from(table)));
        m
    }

    fn multipath_msg(dst: &str, hops: &[(Option<&str>, u32, u8)]) -> RouteMessage {
        let mut m = route_msg(dst, None, 0, Some(20));
        m.attributes
            .retain(|a| !matches!(a, RouteAttribute::Oif(_)));
        let nh = hops
            .iter()
            .map(|&(gw, oif, hops)| {
                let mut h = netlink_packet_route::route::RouteNextHop::default();
                h.interface_index = oif;
                h.hops = hops;
                if let Some(gw) = gw {
                    h.attributes.push(RouteAttribute::Gateway(ip(gw).into()));
                }
                h
            })
            .collect();
        m.attributes.push(RouteAttribute::MultiPath(nh));
        m
    }

    #[test]
    fn multipath_keeps_every_next_hop_with_its_weight() {
        let s = snapshot_of(vec![
            RouteNetlinkMessage::NewRoute(multipath_msg(
                "10.8.0.0/16",
                &[(Some("10.0.0.1"), 2, 0), (Some("10.1.0.1"), 3, 2)],
            )),
            RouteNetlinkMessage::NewRoute(multipath_msg(
                "2001:db8:8::/48",
                &[
                    (Some("fe80::1"), 2, 0),
                    (Some("fe80::2"), 3, 0),
                    (None, 4, 9),
                ],
            )),
            RouteNetlinkMessage::NewRoute(route_msg("10.9.0.0/16", Some("10.0.0.1"), 2, None)),
        ]);
        let r = s.route_lookup(ip("10.8.1.1")).unwrap();
        assert_eq!(
            r.nexthops,
            [
                MirNexthop {
                    gateway: Some(ip("10.0.0.1")),
                    oif: 2,
                    weight: 1
                },
                MirNexthop {
                    gateway: Some(ip("10.1.0.1")),
                    oif: 3,
                    weight: 3
                },
            ]
        );
        // The first hop stands in the old single-hop fields.
        assert_eq!(
            (r.gateway, r.oif, r.metric),
            (Some(ip("10.0.0.1")), Some(2), 20)
        );
        let r = s.route_lookup(ip("2001:db8:8::1")).unwrap();
        let hops: Vec<_> = r
            .nexthops
            .iter()
            .map(|h| (h.gateway, h.oif, h.weight))
            .collect();
        assert_eq!(
            hops,
            [
                (Some(ip("fe80::1")), 2, 1),
                (Some(ip("fe80::2")), 3, 1),
                (None, 4, 10)
            ]
        );
        // A single-path route has one next hop of weight 1.
        let r = s.route_lookup(ip("10.9.0.1")).unwrap();
        assert_eq!(
            r.nexthops,
            [MirNexthop {
                gateway: Some(ip("10.0.0.1")),
                oif: 2,
                weight: 1
            }]
        );
        let j = serde_json::to_value(r).unwrap();
        assert_eq!(j["nexthops"][0]["gateway"], "10.0.0.1");
        assert_eq!(
            (&j["oif"], &j["nexthops"][0]["weight"]),
            (&serde_json::json!(2), &serde_json::json!(1))
        );

        // Deleting a link removes routes with any next hop through it.
        let mut s = s;
        apply(
            &mut s,
            &RouteNetlinkMessage::NewLink(link_msg(3, "b", true, true, 1500)),
        );
        apply(
            &mut s,
            &RouteNetlinkMessage::DelLink(link_msg(3, "b", true, true, 1500)),
        );
        assert!(s.route_lookup(ip("10.8.1.1")).is_none());
        assert!(s.route_lookup(ip("2001:db8:8::1")).is_none());
        assert!(s.route_lookup(ip("10.9.0.1")).is_some());
    }

    #[test]
    fn local_table_routes_by_kind_and_interface() {
        let local = |dst, oif, kind| {
            RouteNetlinkMessage::NewRoute(in_table(route_msg(dst, None, oif, None), 255, kind))
        };
        let mut s = snapshot_of(vec![
            local("10.0.0.9/32", 2, RouteType::Local),
            local("10.0.0.255/32", 2, RouteType::Broadcast),
            local("127.0.0.0/8", 1, RouteType::Local),
            local("fe80::/128", 2, RouteType::Anycast),
            local("fe80::/128", 3, RouteType::Anycast),
            local("ff00::/8", 2, RouteType::Multicast),
            RouteNetlinkMessage::NewRoute(in_table(
                route_msg("10.66.0.0/16", None, 2, None),
                254,
                RouteType::BlackHole,
            )),
        ]);
        let kinds: Vec<_> = s
            .local_routes()
            .map(|r| (r.dst, r.prefix_len, r.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (ip("10.0.0.9"), 32, RouteKind::Local),
                (ip("10.0.0.255"), 32, RouteKind::Broadcast),
                (ip("127.0.0.0"), 8, RouteKind::Local),
                (ip("fe80::"), 128, RouteKind::Anycast),
                (ip("fe80::"), 128, RouteKind::Anycast),
                (ip("ff00::"), 8, RouteKind::Multicast),
            ]
        );
        let bh = s.route_lookup(ip("10.66.1.1")).unwrap();
        assert_eq!(bh.kind, RouteKind::Blackhole);
        assert!(bh.nexthops.is_empty(), "a blackhole has no next hop to use");
        // One of the per-link anycast routes goes; the other stays.
        let del = in_table(
            route_msg("fe80::/128", None, 2, None),
            255,
            RouteType::Anycast,
        );
        assert!(apply(&mut s, &RouteNetlinkMessage::DelRoute(del)).changed);
        let fe80: Vec<_> = s
            .local_routes()
            .filter(|r| r.dst == ip("fe80::"))
            .map(|r| r.oif)
            .collect();
        assert_eq!(fe80, [Some(3)]);
    }

    #[test]
    fn secondary_addresses_are_marked() {
        let mut sec = addr_msg(2, ip("10.0.0.10"), 24);
        sec.header.flags |= AddressHeaderFlags::Secondary;
        let s = snapshot_of(vec![
            RouteNetlinkMessage::NewAddress(addr_msg(2, ip("10.0.0.9"), 24)),
            RouteNetlinkMessage::NewAddress(sec),
        ]);
        let a: Vec<_> = s.addresses().map(|a| (a.addr, a.secondary)).collect();
        assert_eq!(a, [(ip("10.0.0.9"), false), (ip("10.0.0.10"), true)]);
    }

    #[test]
    fn publishing_bumps_the_generation_and_wakes_watchers() {
        let shared = Arc::new(Shared {
            published: Mutex::new(Published {
                generation: 1,
                snapshot: Arc::new(Snapshot::default()),
            }),
            published_cv: Condvar::new(),
            subscribers: Mutex::new(Vec::new()),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
        });
        let watch = SnapshotWatch {
            shared: Arc::clone(&shared),
        };
        assert_eq!(
            watch.wait_newer(1, Duration::from_millis(1)),
            1,
            "times out"
        );
        let w = watch.clone();
        let t = thread::spawn(move || w.wait_newer(1, Duration::from_secs(10)));
        thread::sleep(Duration::from_millis(20));
        let snap = snapshot_of(vec![RouteNetlinkMessage::NewLink(link_msg(
            5, "a", true, true, 1500,
        ))]);
        let start = Instant::now();
        shared.publish(&snap);
        assert_eq!(t.join().unwrap(), 2);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "woken, not timed out"
        );
        let (g, s) = watch.latest();
        assert_eq!((g, s.link(5).is_some()), (2, true));
        assert_eq!(
            watch.wait_newer(0, Duration::ZERO),
            2,
            "already newer: no wait"
        );
    }

    #[test]
    fn addresses_and_neighbours() {
        let mut s = snapshot_of(vec![
            RouteNetlinkMessage::NewAddress(addr_msg(2, ip("10.0.0.9"), 24)),
            RouteNetlinkMessage::NewAddress(addr_msg(2, ip("fd00::9"), 64)),
            RouteNetlinkMessage::NewNeighbour(neigh_msg(
                2,
                ip("10.0.0.1"),
                NeighbourState::Reachable,
            )),
            RouteNetlinkMessage::NewNeighbour(neigh_msg(
                2,
                ip("fe80::1"),
                NeighbourState::Permanent,
            )),
            RouteNetlinkMessage::NewNeighbour(neigh_msg(3, ip("10.0.0.7"), NeighbourState::Failed)),
        ]);
        let a: Vec<_> = s.addresses().map(|a| (a.addr, a.prefix_len)).collect();
        assert_eq!(a, [(ip("10.0.0.9"), 24), (ip("fd00::9"), 64)]);
        let n = s.neighbour(2, ip("10.0.0.1")).unwrap();
        assert_eq!(
            (n.mac, n.state),
            (Some(MacAddr(MAC)), NeighState::Reachable)
        );
        assert_eq!(
            s.neighbour(2, ip("fe80::1")).unwrap().state,
            NeighState::Permanent
        );
        assert_eq!(
            s.neighbour(3, ip("10.0.0.7")).unwrap().state,
            NeighState::Failed
        );
        assert!(
            s.neighbour(3, ip("10.0.0.1")).is_none(),
            "keyed by interface too"
        );

        apply(
            &mut s,
            &RouteNetlinkMessage::DelNeighbour(neigh_msg(2, ip("10.0.0.1"), NeighbourState::None)),
        );
        apply(
            &mut s,
            &RouteNetlinkMessage::DelAddress(addr_msg(2, ip("fd00::9"), 64)),
        );
        assert!(s.neighbour(2, ip("10.0.0.1")).is_none());
        assert_eq!(s.addresses().count(), 1);

        // A bridge FDB entry is not a neighbour.
        let mut fdb = neigh_msg(2, ip("10.0.0.5"), NeighbourState::Permanent);
        fdb.header.family = AddressFamily::Bridge;
        assert!(!apply(&mut s, &RouteNetlinkMessage::NewNeighbour(fdb)).changed);
    }

    fn kinds(a: &Applied) -> Vec<LinkEventKind> {
        a.link_events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn link_events_down_up_mtu_deleted() {
        let mut s = Snapshot::default();
        let new =
            |up, lower, mtu| RouteNetlinkMessage::NewLink(link_msg(5, "eth9", up, lower, mtu));
        let a = apply(&mut s, &wire(vec![new(true, true, 1500)])[0]);
        assert!(
            a.changed && a.link_events.is_empty(),
            "a new link is not an event"
        );
        let l = s.link_by_name("eth9").unwrap();
        assert_eq!(
            (l.index, l.mtu, l.num_rx_queues, l.mac),
            (5, 1500, 4, Some(MacAddr(MAC)))
        );

        assert!(
            kinds(&apply(&mut s, &new(true, true, 1500))).is_empty(),
            "repeat: no event"
        );
        // Carrier lost: Down, but the kernel keeps the routes.
        let a = apply(&mut s, &new(true, false, 1500));
        assert_eq!(kinds(&a), [LinkEventKind::Down]);
        assert!(!a.routes_stale);
        // Admin down while already without carrier: no second Down, but routes were flushed.
        let a = apply(&mut s, &new(false, false, 1500));
        assert!(kinds(&a).is_empty());
        assert!(a.routes_stale);
        assert!(
            kinds(&apply(&mut s, &new(true, false, 1500))).is_empty(),
            "up, no carrier"
        );
        let a = apply(&mut s, &new(true, true, 9000));
        assert_eq!(
            kinds(&a),
            [
                LinkEventKind::MtuChanged {
                    old: 1500,
                    new: 9000
                },
                LinkEventKind::Up
            ]
        );
        assert_eq!(a.link_events[0].name, "eth9");

        apply(
            &mut s,
            &RouteNetlinkMessage::NewAddress(addr_msg(5, ip("10.0.0.9"), 24)),
        );
        apply(
            &mut s,
            &RouteNetlinkMessage::NewRoute(route_msg("10.5.0.0/16", None, 5, None)),
        );
        apply(
            &mut s,
            &RouteNetlinkMessage::NewRoute(route_msg("10.6.0.0/16", None, 6, None)),
        );
        let a = apply(
            &mut s,
            &RouteNetlinkMessage::DelLink(link_msg(5, "eth9", false, false, 9000)),
        );
        assert_eq!(kinds(&a), [LinkEventKind::Deleted]);
        assert!(a.routes_stale);
        assert!(s.link_by_name("eth9").is_none());
        assert_eq!(
            s.addresses().count(),
            0,
            "a deleted link's addresses go with it"
        );
        assert_eq!(s.routes().count(), 1, "and its routes, not others");
    }

    #[test]
    fn bridge_port_dellink_is_not_a_deletion() {
        let mut s = Snapshot::default();
        apply(
            &mut s,
            &RouteNetlinkMessage::NewLink(link_msg(5, "eth9", true, true, 1500)),
        );
        let mut m = link_msg(5, "eth9", true, true, 1500);
        m.header.interface_family = AddressFamily::Bridge;
        assert_eq!(
            apply(&mut s, &RouteNetlinkMessage::DelLink(m)),
            Applied::default()
        );
        assert!(s.link(5).is_some());
    }

    #[test]
    fn redump_diff_generates_events() {
        let old = snapshot_of(vec![
            RouteNetlinkMessage::NewLink(link_msg(5, "a", true, true, 1500)),
            RouteNetlinkMessage::NewLink(link_msg(6, "b", true, true, 1500)),
            RouteNetlinkMessage::NewLink(link_msg(7, "c", false, false, 1500)),
        ]);
        let new = snapshot_of(vec![
            RouteNetlinkMessage::NewLink(link_msg(5, "a", false, true, 1500)),
            RouteNetlinkMessage::NewLink(link_msg(7, "c", true, true, 1400)),
            RouteNetlinkMessage::NewLink(link_msg(8, "d", true, true, 1500)),
        ]);
        let ev: Vec<_> = diff_links(&old, &new)
            .into_iter()
            .map(|e| (e.ifindex, e.kind))
            .collect();
        assert_eq!(
            ev,
            [
                (5, LinkEventKind::Down),
                (6, LinkEventKind::Deleted),
                (
                    7,
                    LinkEventKind::MtuChanged {
                        old: 1500,
                        new: 1400
                    }
                ),
                (7, LinkEventKind::Up),
            ]
        );
    }

    #[test]
    fn serializes_to_json() {
        use serde_json::json;
        let s = snapshot_of(vec![
            RouteNetlinkMessage::NewLink(link_msg(5, "a", true, true, 1500)),
            RouteNetlinkMessage::NewNeighbour(neigh_msg(5, ip("10.0.0.1"), NeighbourState::Stale)),
        ]);
        let l = serde_json::to_value(s.link(5).unwrap()).unwrap();
        assert_eq!(l["mac"], "02:00:00:00:00:01");
        assert_eq!(
            (&l["up"], &l["xdp_attached"]),
            (&json!(true), &json!(false))
        );
        let n = serde_json::to_value(s.neighbour(5, ip("10.0.0.1")).unwrap()).unwrap();
        assert_eq!(n["state"], "stale");
        assert_eq!(n["ip"], "10.0.0.1");
        let e = LinkEvent {
            ifindex: 5,
            name: "a".into(),
            kind: LinkEventKind::MtuChanged { old: 1, new: 2 },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"ifindex":5,"name":"a","kind":{"mtu_changed":{"old":1,"new":2}}}"#
        );
    }

    #[test]
    fn masks() {
        assert_eq!(mask(ip("10.1.2.3"), 0), ip("0.0.0.0"));
        assert_eq!(mask(ip("10.1.2.3"), 24), ip("10.1.2.0"));
        assert_eq!(mask(ip("10.1.2.3"), 32), ip("10.1.2.3"));
        assert_eq!(mask(ip("2001:db8::ff"), 120), ip("2001:db8::"));
        assert_eq!(mask(ip("2001:db8::ff"), 128), ip("2001:db8::ff"));
    }

    /// Needs no privileges: the mirror of this process's own namespace has the loopback link.
    #[test]
    fn starts_sees_loopback_and_stops_quickly() {
        let m = Mirror::start().unwrap();
        let snap = m.snapshot();
        assert_eq!(m.generation(), 1, "the first dump is generation 1");
        assert!(
            snap.local_routes()
                .any(|r| r.dst == IpAddr::V4(Ipv4Addr::LOCALHOST) && r.kind == RouteKind::Local),
            "the local table has 127.0.0.1"
        );
        let lo = snap.link_by_name("lo").expect("lo");
        assert_eq!(lo.index, 1);
        assert!(snap.addresses().any(|a| a.ifindex == 1));
        let t = std::time::Instant::now();
        m.stop().unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "stop took {:?}",
            t.elapsed()
        );
    }
}
