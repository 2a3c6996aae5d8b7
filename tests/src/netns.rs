//! Named network namespaces, created and removed the way `ip netns` does it,
//! and everything the test bed configures inside one namespace: links,
//! addresses, neighbours, routes, TX checksum offload.
//!
//! This module never changes the network namespace of a thread it did not
//! start: entering a namespace always happens on a fresh helper thread.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope},
    link::{
        BridgeStpState, InfoBridge, InfoData, InfoIpTunnel, InfoKind, LinkAttribute, LinkFlags,
        LinkInfo, LinkMessage,
    },
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::{Error, Result};
use crate::netlink::{self, Rtnl};
use crate::sys;
use crate::types::{Conf, IfAddr, IpFamily, IpTunnel, Link, MacAddr, Neighbour, Route, RpFilter};

/// Where `ip netns` keeps its namespaces; `ip netns exec NAME` looks here.
pub(crate) const NETNS_RUN_DIR: &str = "/run/netns";

/// Longest accepted name prefix: prefix + `-` + pid (≤ 7 digits) + `-` +
/// counter stays within 15 bytes (an interface name's limit) for the first
/// 100 namespaces of a process.
pub(crate) const MAX_PREFIX_LEN: usize = 4;

/// Poll interval of [`Netns::wait_link_ready`].
const READY_POLL: Duration = Duration::from_millis(10);

/// Per-process counter making names unique together with the pid.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace, `/run/netns/NAME`, removed on drop.
///
/// Created like `ip netns add` creates one: a helper thread unshares
/// `CLONE_NEWNET` and its `/proc/thread-self/ns/net` is bind-mounted onto
/// `/run/netns/NAME` (the directory is created and made a shared mount
/// point if needed, as `ip` does). So while a test runs, a human can look
/// inside with `ip netns exec NAME ip addr`. `lo` is brought up.
///
/// The namespace is configured over an rtnetlink socket opened inside it
/// (the `link`/`addresses`/`add_*`/`del_*` methods), and code runs inside it
/// with [`Netns::run`] and [`Netns::spawn`].
///
/// Dropping it unmounts (`MNT_DETACH`) and removes `/run/netns/NAME`; the
/// kernel destroys the namespace, with its interfaces, once nothing else
/// references it. Things that do keep it alive: processes started with
/// [`Netns::spawn`] that still run (kill and wait for them first), sockets
/// created inside it that are still open, and a [`Veth`](crate::Veth) whose
/// first end is in it (until the `Veth` is dropped).
pub struct Netns {
    name: String,
    path: PathBuf,
    fd: OwnedFd,
    rtnl: Mutex<Rtnl>,
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netns").field("name", &self.name).finish()
    }
}

impl Netns {
    /// Creates a uniquely named namespace `PREFIX-PID-N` with `lo` up.
    ///
    /// `prefix` is 1 to 4 ASCII letters, digits or `_`, so the name and
    /// anything derived from it (e.g. an interface name) fits the 15-byte
    /// limit of interface names.
    pub fn new(prefix: &str) -> Result<Netns> {
        validate_prefix(prefix)?;
        let pid = std::process::id();
        let (name, path) = loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("{prefix}-{pid}-{n}");
            let path = Path::new(NETNS_RUN_DIR).join(&name);
            prepare_run_dir(&name)?;
            // The mount point, like `ip netns add`: an empty file, created
            // exclusively so a stale one (say, from a crashed run whose pid
            // got reused) is skipped rather than hijacked.
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => break (name, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    log::warn!("{}: exists already, trying the next name", path.display());
                }
                Err(source) => {
                    return Err(Error::CreateNetns {
                        ns: name,
                        step: "creating the mount point file",
                        source,
                    });
                }
            }
        };

        match create_netns(&name, &path) {
            Ok((fd, rtnl)) => {
                let ns = Netns {
                    name,
                    path,
                    fd,
                    rtnl: Mutex::new(rtnl),
                };
                // From here on, Drop cleans up.
                ns.set_link_up("lo", true)?;
                Ok(ns)
            }
            Err(e) => {
                // Undo whatever part of the mount happened; errors here
                // would only hide the first one.
                let _ = nix::mount::umount2(&path, MntFlags::MNT_DETACH);
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file descriptor referring to the namespace (for `setns(2)` or
    /// `IFLA_NET_NS_FD`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Runs `f` on a fresh thread that has entered this namespace, and
    /// returns its result. Sockets created inside `f` belong to this
    /// namespace for their whole life, so they can be returned and used
    /// from any thread. A panic in `f` is propagated to the caller.
    ///
    /// Fails only if the thread can't be started or can't enter the
    /// namespace; `f`'s own errors are in `R`.
    pub fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        run_in(self.fd(), &self.name, f)
    }

    /// Starts `cmd` inside this namespace: the process is forked from a
    /// helper thread that has entered the namespace, and a forked child
    /// inherits its thread's network namespace.
    ///
    /// Unlike `ip netns exec`, the child keeps the caller's mount namespace,
    /// so `/sys/class/net` still shows the host's interfaces (`/proc/net`
    /// is right). The child keeps the namespace alive: kill and wait for it
    /// before the `Netns` is dropped.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child> {
        self.run(|| cmd.spawn())?.map_err(|source| Error::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            ns: self.name.clone(),
            source,
        })
    }

    fn rtnl(&self) -> MutexGuard<'_, Rtnl> {
        // A panic while holding the lock can at worst leave unread replies
        // on the socket, which the sequence check skips.
        self.rtnl.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ----- links ---------------------------------------------------------

    /// The interface named `iface`.
    pub fn link(&self, iface: &str) -> Result<Link> {
        self.rtnl().link(iface)
    }

    /// All interfaces in the namespace.
    pub fn links(&self) -> Result<Vec<Link>> {
        self.rtnl().links()
    }

    /// The index of `iface`.
    pub fn ifindex(&self, iface: &str) -> Result<u32> {
        self.link(iface).map(|l| l.index)
    }

    /// Brings `iface` up or down (`ip link set IFACE up|down`).
    pub fn set_link_up(&self, iface: &str, up: bool) -> Result<()> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        let flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        let op = format!("setting {iface} {}", if up { "up" } else { "down" });
        rtnl.set_link(&op, index, flags, LinkFlags::Up, Vec::new())
    }

    /// Waits until `iface` can carry traffic: up, carrier on, operational
    /// state up and its qdisc activated. Polls every 10 ms, for at most
    /// `timeout`.
    ///
    /// Why: after a link gets carrier, the kernel activates its qdisc from
    /// the "linkwatch" work, which is rate-limited to about once a second.
    /// Until then the qdisc is `noop` and silently drops what is sent, so a
    /// test that sends right after bringing a veth up can lose its first
    /// packets. [`Veth::create`](crate::Veth::create) waits for both ends;
    /// call this after toggling a link down and up again.
    pub fn wait_link_ready(&self, iface: &str, timeout: Duration) -> Result<Link> {
        let start = Instant::now();
        loop {
            let link = self.link(iface)?;
            let ready = link.up
                && link.lower_up
                && link.oper_up
                && link.qdisc.as_deref().is_some_and(|q| q != "noop");
            if ready {
                return Ok(link);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::NotReady {
                    iface: iface.to_owned(),
                    ns: self.name.clone(),
                    waited,
                    state: format!(
                        "up={} lower_up={} oper_up={} qdisc={}",
                        link.up,
                        link.lower_up,
                        link.oper_up,
                        link.qdisc.as_deref().unwrap_or("none")
                    ),
                });
            }
            thread::sleep(READY_POLL);
        }
    }

    /// Sets the MTU of `iface` (`ip link set IFACE mtu MTU`).
    pub fn set_mtu(&self, iface: &str, mtu: u32) -> Result<()> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        let op = format!("setting the MTU of {iface} to {mtu}");
        rtnl.set_link(
            &op,
            index,
            LinkFlags::empty(),
            LinkFlags::empty(),
            vec![LinkAttribute::Mtu(mtu)],
        )
    }

    /// Deletes `iface` (for a veth: both ends).
    pub fn delete_link(&self, iface: &str) -> Result<()> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        rtnl.del_link(&format!("deleting interface {iface}"), index)
    }

    /// Creates a Linux bridge `name` and brings it up: `ip link add NAME
    /// type bridge stp_state 0 forward_delay 0 mcast_snooping 0`.
    ///
    /// Why those settings: without STP a port forwards as soon as it is
    /// enslaved and up (no 15 s of listening and learning), and without
    /// multicast snooping the bridge floods every multicast frame (IPv6
    /// neighbour discovery included) to every port instead of guessing from
    /// the MLD reports it happened to see.
    pub fn add_bridge(&self, name: &str) -> Result<()> {
        crate::veth::validate_ifname(name)?;
        {
            let mut rtnl = self.rtnl();
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![
                    InfoBridge::StpState(BridgeStpState::Disabled),
                    InfoBridge::ForwardDelay(0),
                    InfoBridge::MulticastSnooping(false),
                ])),
            ]));
            rtnl.execute(
                &format!("creating bridge {name}"),
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )?;
        }
        self.set_link_up(name, true)
    }

    /// Enslaves `iface` to the bridge (or other master device) `master`
    /// (`ip link set IFACE master MASTER`), or releases it with `None`
    /// (`ip link set IFACE nomaster`).
    pub fn set_master(&self, iface: &str, master: Option<&str>) -> Result<()> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        let (master_index, op) = match master {
            Some(m) => (rtnl.link(m)?.index, format!("enslaving {iface} to {m}")),
            None => (0, format!("releasing {iface} from its master")),
        };
        rtnl.set_link(
            &op,
            index,
            LinkFlags::empty(),
            LinkFlags::empty(),
            vec![LinkAttribute::Controller(master_index)],
        )
    }

    /// Creates an IP-in-IP tunnel device `name` that receives what is
    /// encapsulated towards the local address `local` from any remote
    /// (`ip link add NAME type ipip local LOCAL`, or `type ip6tnl mode any
    /// local LOCAL`), and brings it up. The device decapsulates: the inner
    /// packet is then received on it as if it had arrived there.
    ///
    /// Needs the kernel's `ipip` or `ip6_tunnel` module: without it the
    /// kernel answers `EOPNOTSUPP` (or `ENOENT`), which is how a test finds
    /// out that it can't decapsulate on this machine.
    pub fn add_ip_tunnel(&self, name: &str, kind: IpTunnel, local: IpAddr) -> Result<()> {
        crate::veth::validate_ifname(name)?;
        let (info_kind, mut data) = match kind {
            IpTunnel::Ipip => (InfoKind::IpIp, Vec::new()),
            // Protocol 0 is ip6tnl's "any": IPv4 and IPv6 inside IPv6.
            IpTunnel::Ip6Tnl => (
                InfoKind::Ip6Tnl,
                vec![InfoIpTunnel::Protocol(
                    netlink_packet_route::IpProtocol::Hopopts,
                )],
            ),
        };
        let family_ok = matches!(
            (kind, local),
            (IpTunnel::Ipip, IpAddr::V4(_)) | (IpTunnel::Ip6Tnl, IpAddr::V6(_))
        );
        let op = format!("creating {} tunnel {name} local {local}", kind.name());
        if !family_ok {
            return Err(Error::Unexpected {
                op,
                ns: self.name.clone(),
                what: "the local address is of the wrong family for the tunnel kind".into(),
            });
        }
        data.push(InfoIpTunnel::Local(local));
        {
            let mut rtnl = self.rtnl();
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(info_kind),
                LinkInfo::Data(InfoData::IpTunnel(data)),
            ]));
            rtnl.execute(
                &op,
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )?;
        }
        self.set_link_up(name, true)
    }

    // ----- addresses -----------------------------------------------------

    /// Adds `addr/prefix_len` to `iface` (`ip addr add`). IPv6 addresses
    /// are added with `IFA_F_NODAD`, so they are usable at once instead of
    /// after a second or two of duplicate address detection. Adding an
    /// address that is already there fails with `EEXIST`.
    pub fn add_address(&self, iface: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        let op = format!("adding address {addr}/{prefix_len} to {iface}");
        let msg = address_message(index, addr, prefix_len);
        rtnl.execute(
            &op,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Removes `addr/prefix_len` from `iface` (`ip addr del`).
    pub fn del_address(&self, iface: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        let op = format!("deleting address {addr}/{prefix_len} from {iface}");
        let msg = address_message(index, addr, prefix_len);
        rtnl.execute(&op, RouteNetlinkMessage::DelAddress(msg), 0)
            .map(drop)
    }

    /// The addresses on `iface`, IPv4 and IPv6 (including link-local ones
    /// the kernel adds by itself).
    pub fn addresses(&self, iface: &str) -> Result<Vec<IfAddr>> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        rtnl.addresses(&format!("listing the addresses of {iface}"), index)
    }

    // ----- neighbours ----------------------------------------------------

    /// Adds a permanent neighbour entry `ip` → `mac` on `iface`
    /// (`ip neigh replace IP lladdr MAC nud permanent dev IFACE`): no ARP or
    /// neighbour solicitation is needed to reach `ip`. Replaces an entry the
    /// kernel may have learned already.
    pub fn add_neighbour(&self, iface: &str, ip: IpAddr, mac: MacAddr) -> Result<()> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        let op = format!("adding neighbour {ip} lladdr {mac} on {iface}");
        let mut msg = neighbour_message(index, ip);
        msg.header.state = NeighbourState::Permanent;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
        rtnl.execute(
            &op,
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes the neighbour entry for `ip` on `iface` (`ip neigh del`).
    pub fn del_neighbour(&self, iface: &str, ip: IpAddr) -> Result<()> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        let op = format!("deleting neighbour {ip} on {iface}");
        let msg = neighbour_message(index, ip);
        rtnl.execute(&op, RouteNetlinkMessage::DelNeighbour(msg), 0)
            .map(drop)
    }

    /// The neighbour entries on `iface`, IPv4 and IPv6.
    pub fn neighbours(&self, iface: &str) -> Result<Vec<Neighbour>> {
        let mut rtnl = self.rtnl();
        let index = rtnl.link(iface)?.index;
        rtnl.neighbours(&format!("listing the neighbours on {iface}"), index)
    }

    // ----- routes --------------------------------------------------------

    /// Adds `route` to the main table (`ip route add`). Fails with `EEXIST`
    /// if the same destination is routed already with the same metric
    /// (routes that differ only in metric coexist).
    pub fn add_route(&self, route: &Route) -> Result<()> {
        let mut rtnl = self.rtnl();
        let msg = route_message(&mut rtnl, route)?;
        let op = format!("adding route {route}");
        rtnl.execute(
            &op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds `route`, or replaces the route to the same destination with the
    /// same metric (`ip route replace`). For IPv4 that is the entry with
    /// the same destination, TOS and metric; for IPv6 the first with the
    /// same destination and metric. Useful to re-point a route at another
    /// gateway or device in one step, and as an idempotent add.
    pub fn replace_route(&self, route: &Route) -> Result<()> {
        let mut rtnl = self.rtnl();
        let msg = route_message(&mut rtnl, route)?;
        let op = format!("replacing route {route}");
        rtnl.execute(
            &op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes `route` from the main table (`ip route del`). With
    /// `metric: None` the first route matching the rest is deleted,
    /// whatever its metric.
    pub fn del_route(&self, route: &Route) -> Result<()> {
        let mut rtnl = self.rtnl();
        let mut msg = route_message(&mut rtnl, route)?;
        // Any scope matches on delete; ip(8) does the same.
        msg.header.scope = RouteScope::NoWhere;
        let op = format!("deleting route {route}");
        rtnl.execute(&op, RouteNetlinkMessage::DelRoute(msg), 0)
            .map(drop)
    }

    /// The unicast routes of the main table, IPv4 and IPv6 (including the
    /// prefix routes the kernel adds for addresses). `dev` is always set.
    pub fn routes(&self) -> Result<Vec<Route>> {
        let mut rtnl = self.rtnl();
        let links = rtnl.links()?;
        let msgs = rtnl.routes("listing routes")?;
        Ok(msgs
            .iter()
            .filter(|m| {
                m.header.table == RouteHeader::RT_TABLE_MAIN && m.header.kind == RouteType::Unicast
            })
            .map(|m| {
                let (dst, via, oif, metric) = netlink::route_parts(m);
                let dst = dst.unwrap_or(match m.header.address_family {
                    AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                });
                let dev =
                    oif.and_then(|i| links.iter().find(|l| l.index == i).map(|l| l.name.clone()));
                Route {
                    dst,
                    prefix_len: m.header.destination_prefix_length,
                    via,
                    dev,
                    metric: Some(metric.unwrap_or(0)),
                }
            })
            .collect())
    }

    // ----- sysctl --------------------------------------------------------

    /// Writes a sysctl inside the namespace, e.g.
    /// `set_sysctl("net.ipv6.conf.veth-eng.keep_addr_on_down", "1")`.
    ///
    /// `key` is either dotted (`sysctl(8)` style; then it must not contain
    /// `/`, and interface names with dots can't be expressed) or a path
    /// below `/proc/sys` (`net/ipv6/conf/eth0.100/forwarding`). The write
    /// happens on a thread inside the namespace, so `net.*` keys reach this
    /// namespace's copy.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        self.run(|| fs::write(&path, value))?
            .map_err(|source| Error::Sysctl {
                key: key.to_owned(),
                value: value.to_owned(),
                ns: self.name.clone(),
                source,
            })
    }

    /// Reads a sysctl inside the namespace (`key` as for
    /// [`Netns::set_sysctl`]); the value without its trailing newline.
    pub fn sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        self.run(|| fs::read_to_string(&path))?
            .map(|v| v.trim_end().to_owned())
            .map_err(|source| Error::SysctlRead {
                key: key.to_owned(),
                ns: self.name.clone(),
                source,
            })
    }

    /// Turns forwarding on or off: `net.ipv4.conf.CONF.forwarding` or
    /// `net.ipv6.conf.CONF.forwarding`.
    ///
    /// [`Conf::All`] is what makes a namespace a router: writing it sets
    /// every interface (and `default`) too. For IPv4 the kernel then
    /// forwards what arrives on an interface whose own value is 1; for IPv6
    /// only `all` decides whether to forward, and an interface's value
    /// decides whether it acts as a router or a host (RAs, the NA router
    /// flag). A new namespace starts with IPv4 values copied from the
    /// host's (`net.core.devconf_inherit_init_net` = 0) — so set them
    /// explicitly rather than trust them — and IPv6 forwarding off.
    pub fn set_forwarding(&self, family: IpFamily, conf: Conf<'_>, on: bool) -> Result<()> {
        self.set_sysctl(
            &conf_key(family, conf, "forwarding"),
            if on { "1" } else { "0" },
        )
    }

    /// Whether forwarding is on for `family` in `conf`.
    pub fn forwarding(&self, family: IpFamily, conf: Conf<'_>) -> Result<bool> {
        let key = conf_key(family, conf, "forwarding");
        self.sysctl(&key).map(|v| v != "0")
    }

    /// Sets IPv4 reverse-path filtering, `net.ipv4.conf.CONF.rp_filter`.
    /// The kernel applies the larger of the `all` value and the receiving
    /// interface's value, so to turn filtering off on an interface both
    /// must be [`RpFilter::Off`].
    pub fn set_rp_filter(&self, conf: Conf<'_>, mode: RpFilter) -> Result<()> {
        let key = conf_key(IpFamily::V4, conf, "rp_filter");
        self.set_sysctl(&key, &mode.value().to_string())
    }

    /// The IPv4 reverse-path filter mode of `conf`.
    pub fn rp_filter(&self, conf: Conf<'_>) -> Result<RpFilter> {
        let key = conf_key(IpFamily::V4, conf, "rp_filter");
        let value = self.sysctl(&key)?;
        value
            .parse()
            .ok()
            .and_then(RpFilter::from_value)
            .ok_or_else(|| Error::SysctlRead {
                key,
                ns: self.name.clone(),
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown rp_filter value {value:?}"),
                ),
            })
    }

    // ----- ethtool -------------------------------------------------------

    /// Turns TX checksum offload on `iface` on or off
    /// (`ethtool -K IFACE tx on|off`).
    ///
    /// Why a test bed cares: a kernel socket sending over a veth leaves
    /// UDP/TCP checksums `CHECKSUM_PARTIAL` (only the pseudo-header sum in
    /// the packet) when offload is on, so frames an AF_XDP program reflects
    /// would go back with a wrong checksum. With offload off the kernel
    /// computes full checksums before the frame crosses the veth.
    pub fn set_tx_checksum(&self, iface: &str, on: bool) -> Result<()> {
        let op = "ETHTOOL_STXCSUM";
        self.ethtool(iface, op, |sock| sys::set_tx_checksum(sock, iface, on))
    }

    /// Whether TX checksum offload is on for `iface` (`ETHTOOL_GTXCSUM`).
    pub fn tx_checksum(&self, iface: &str) -> Result<bool> {
        self.ethtool(iface, "ETHTOOL_GTXCSUM", |sock| {
            sys::tx_checksum(sock, iface)
        })
    }

    /// Runs an ethtool ioctl on a datagram socket created inside the
    /// namespace (the kernel resolves `iface` in the socket's namespace).
    fn ethtool<T: Send>(
        &self,
        iface: &str,
        op: &'static str,
        f: impl FnOnce(BorrowedFd<'_>) -> io::Result<T> + Send,
    ) -> Result<T> {
        self.run(|| {
            let sock = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet,
                nix::sys::socket::SockType::Datagram,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            f(sock.as_fd())
        })?
        .map_err(|source| Error::Ethtool {
            op,
            iface: iface.to_owned(),
            ns: self.name.clone(),
            source,
        })
    }
}

impl Drop for Netns {
    /// Unmounts and removes `/run/netns/NAME`. Errors are logged, never
    /// raised: this runs during unwinding too.
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.path, MntFlags::MNT_DETACH) {
            log::warn!(
                "netns {}: unmounting {}: {e}",
                self.name,
                self.path.display()
            );
        }
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!("netns {}: removing {}: {e}", self.name, self.path.display());
        }
    }
}

/// Runs `f` on a fresh thread that has `setns`'d into the namespace `fd`
/// (named `ns` in errors); see [`Netns::run`].
pub(crate) fn run_in<F, R>(fd: BorrowedFd<'_>, ns: &str, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name(format!("netns {ns}"))
            .spawn_scoped(scope, move || {
                nix::sched::setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Setns {
                    ns: ns.to_owned(),
                    source: e.into(),
                })?;
                Ok(f())
            })
            .map_err(|source| Error::Thread {
                ns: ns.to_owned(),
                source,
            })?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn validate_prefix(prefix: &str) -> Result<()> {
    let reason = if prefix.is_empty() {
        Some("empty")
    } else if prefix.len() > MAX_PREFIX_LEN {
        Some("longer than 4 bytes (names must stay short enough to derive interface names)")
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Some("only ASCII letters, digits and '_' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Makes sure `/run/netns` exists and is a shared mount point, once per
/// process, as `ip netns add` does: mounts made under it then propagate to
/// other mount namespaces (e.g. the one `ip netns exec` creates). The
/// directory is bind-mounted onto itself only if it isn't a mount point yet
/// — before any namespace file exists under it, so no namespace mount is
/// ever shadowed.
fn prepare_run_dir(ns: &str) -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), (&'static str, i32)>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
        fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| ("creating /run/netns", errno(e)))?;
        let none: Option<&str> = None;
        let make_shared = || {
            nix::mount::mount(
                Some("none"),
                NETNS_RUN_DIR,
                none,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                none,
            )
        };
        match make_shared() {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EINVAL) => {
                // Not a mount point yet.
                nix::mount::mount(
                    Some(NETNS_RUN_DIR),
                    NETNS_RUN_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                )
                .map_err(|e| ("bind-mounting /run/netns onto itself", e as i32))?;
                make_shared().map_err(|e| ("making /run/netns a shared mount", e as i32))
            }
            Err(e) => Err(("making /run/netns a shared mount", e as i32)),
        }
    });
    result.map_err(|(step, errno)| Error::CreateNetns {
        ns: ns.to_owned(),
        step,
        source: io::Error::from_raw_os_error(errno),
    })
}

/// The `ip netns add` dance on a helper thread: unshare a new network
/// namespace, bind-mount it onto `path`, open a netlink socket inside it.
/// The thread then exits; the mount keeps the namespace alive.
fn create_netns(name: &str, path: &Path) -> Result<(OwnedFd, Rtnl)> {
    let step = |step: &'static str| {
        move |source: io::Error| Error::CreateNetns {
            ns: name.to_owned(),
            step,
            source,
        }
    };
    let rtnl = thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name(format!("netns add {name}"))
            .spawn_scoped(scope, || -> Result<Rtnl> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| step("unsharing CLONE_NEWNET")(e.into()))?;
                let none: Option<&str> = None;
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    Some("none"),
                    MsFlags::MS_BIND,
                    none,
                )
                .map_err(|e| step("bind-mounting the namespace")(e.into()))?;
                Rtnl::open(name)
            })
            .map_err(|source| Error::Thread {
                ns: name.to_owned(),
                source,
            })?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    let fd = fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(step("opening the namespace file"))?;
    Ok((fd, rtnl))
}

/// `/proc/sys/...` for a sysctl key, dotted or as a path (see
/// [`Netns::set_sysctl`]).
fn sysctl_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_owned()
    } else {
        key.replace('.', "/")
    };
    Path::new("/proc/sys").join(rel)
}

/// The key of `net.ipvX.conf.CONF.NAME`, as a path so interface names
/// with dots work.
fn conf_key(family: IpFamily, conf: Conf<'_>, name: &str) -> String {
    format!("net/{}/conf/{}/{name}", family.sysctl_dir(), conf.dir())
}

fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = prefix_len;
    msg.header.scope = AddressScope::Universe;
    // Both IFA_LOCAL and IFA_ADDRESS, as ip(8) sends them: on broadcast
    // links they are the same address.
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    match addr {
        IpAddr::V4(_) => msg.header.family = AddressFamily::Inet,
        IpAddr::V6(_) => {
            msg.header.family = AddressFamily::Inet6;
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    msg
}

fn neighbour_message(index: u32, ip: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.ifindex = index;
    let dst = match ip {
        IpAddr::V4(a) => {
            msg.header.family = AddressFamily::Inet;
            NeighbourAddress::Inet(a)
        }
        IpAddr::V6(a) => {
            msg.header.family = AddressFamily::Inet6;
            NeighbourAddress::Inet6(a)
        }
    };
    msg.attributes.push(NeighbourAttribute::Destination(dst));
    msg
}

fn route_message(rtnl: &mut Rtnl, route: &Route) -> Result<RouteMessage> {
    let invalid = |reason| Error::InvalidRoute {
        route: route.to_string(),
        reason,
    };
    if route.via.is_none() && route.dev.is_none() {
        return Err(invalid("a route needs a gateway or a device"));
    }
    let mut msg = RouteMessage::default();
    msg.header.address_family = match route.dst {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = route.prefix_len;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.kind = RouteType::Unicast;
    // A gateway route is universe scope; a device route reaches on-link
    // destinations only.
    msg.header.scope = if route.via.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    if route.prefix_len > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(route.dst)));
    }
    if let Some(via) = route.via {
        if via.is_ipv4() != route.dst.is_ipv4() {
            return Err(invalid("gateway and destination differ in address family"));
        }
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(via)));
    }
    if let Some(dev) = &route.dev {
        let index = rtnl.link(dev)?.index;
        msg.attributes.push(RouteAttribute::Oif(index));
    }
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    Ok(msg)
}

#[cfg(test)]
mod test {
    use std::io::Read;
    use std::process::Stdio;

    use super::*;
    use crate::require_root;
    use crate::testutil::{Gone, is_mounted, ns_inode};

    #[test]
    fn prefixes_are_validated() {
        assert!(validate_prefix("eng").is_ok());
        assert!(validate_prefix("a_9Z").is_ok());
        for bad in ["", "sluice", "a-b", "a/b", "é"] {
            let err = validate_prefix(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidPrefix { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn new_namespace_is_named_mounted_and_has_lo_up() {
        if !require_root("new_namespace_is_named_mounted_and_has_lo_up") {
            return;
        }
        let ns = Netns::new("nt").unwrap();
        let pid = std::process::id();
        assert!(
            ns.name().starts_with(&format!("nt-{pid}-")),
            "{}",
            ns.name()
        );
        assert!(ns.name().len() <= 15, "{}", ns.name());
        assert_eq!(ns.path(), Path::new(NETNS_RUN_DIR).join(ns.name()));
        assert!(is_mounted(ns.path()));

        let lo = ns.link("lo").unwrap();
        assert!(lo.up, "{lo:?}");
        let names: Vec<String> = ns.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["lo"]);

        // Code in run() is in the namespace, the test thread is not.
        let inode = ns_inode(ns.fd());
        let inside = ns
            .run(|| fs::read_link("/proc/thread-self/ns/net").unwrap())
            .unwrap();
        assert_eq!(inside.to_str().unwrap(), format!("net:[{inode}]"));
        let outside = fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_ne!(inside, outside);

        let gone = Gone::record(&ns);
        drop(ns);
        gone.assert();
    }

    #[test]
    fn two_namespaces_get_different_names() {
        if !require_root("two_namespaces_get_different_names") {
            return;
        }
        let a = Netns::new("nt").unwrap();
        let b = Netns::new("nt").unwrap();
        assert_ne!(a.name(), b.name());
        assert_ne!(ns_inode(a.fd()), ns_inode(b.fd()));
    }

    #[test]
    fn run_returns_results_and_propagates_panics() {
        if !require_root("run_returns_results_and_propagates_panics") {
            return;
        }
        let ns = Netns::new("nt").unwrap();
        let borrowed = String::from("borrowed");
        assert_eq!(ns.run(|| borrowed.len()).unwrap(), 8);

        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ns.run(|| panic!("boom inside the namespace")).unwrap()
        }));
        let payload = caught.unwrap_err();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"boom inside the namespace")
        );
        // Still usable afterwards.
        assert!(ns.link("lo").unwrap().up);
    }

    #[test]
    fn spawn_runs_the_process_inside() {
        if !require_root("spawn_runs_the_process_inside") {
            return;
        }
        let ns = Netns::new("nt").unwrap();
        let mut child = ns
            .spawn(
                Command::new("cat")
                    .arg("/proc/net/dev")
                    .stdout(Stdio::piped()),
            )
            .unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success());
        // /proc/net/dev: two header lines, then "  NAME: counters".
        let mut seen: Vec<&str> = out
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(str::trim)
            .collect();
        seen.sort();
        assert_eq!(seen, ["lo"], "{out}");

        let err = ns
            .spawn(&mut Command::new("/nonexistent/program"))
            .unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn ip_netns_exec_sees_the_namespace() {
        if !require_root("ip_netns_exec_sees_the_namespace") {
            return;
        }
        let ns = Netns::new("nt").unwrap();
        // Shelling out here only checks the promise to humans debugging.
        let out = match Command::new("ip")
            .args(["netns", "exec", ns.name(), "cat", "/proc/net/dev"])
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("skipping the ip(8) check: {e}");
                return;
            }
        };
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().count(), 3, "only lo expected: {text}");
    }

    #[test]
    fn links_go_up_and_down_and_change_mtu() {
        if !require_root("links_go_up_and_down_and_change_mtu") {
            return;
        }
        let ns = Netns::new("nt").unwrap();
        ns.set_link_up("lo", false).unwrap();
        assert!(!ns.link("lo").unwrap().up);
        ns.set_link_up("lo", true).unwrap();
        assert!(ns.link("lo").unwrap().up);
        ns.set_mtu("lo", 1500).unwrap();
        assert_eq!(ns.link("lo").unwrap().mtu, 1500);
        assert_eq!(ns.ifindex("lo").unwrap(), 1);

        let err = ns.link("nope0").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
        assert!(err.to_string().contains(ns.name()), "{err}");
    }

    #[test]
    fn addresses_are_added_read_back_and_deleted() {
        if !require_root("addresses_are_added_read_back_and_deleted") {
            return;
        }
        let ns = Netns::new("nt").unwrap();
        let v4: IpAddr = "10.88.0.1".parse().unwrap();
        let v6: IpAddr = "fd00:88::1".parse().unwrap();
        ns.add_address("lo", v4, 24).unwrap();
        ns.add_address("lo", v6, 64).unwrap();
        let addrs = ns.addresses("lo").unwrap();
        for (addr, prefix_len) in [(v4, 24), (v6, 64)] {
            assert!(
                addrs
                    .iter()
                    .any(|a| a.addr == addr && a.prefix_len == prefix_len && !a.tentative),
                "{addr}/{prefix_len} missing from {addrs:?}"
            );
        }

        // nlmsgerr is decoded into an io::Error with the errno.
        let err = ns.add_address("lo", v4, 24).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("File exists"), "{source}");
        assert!(err.to_string().contains("10.88.0.1/24"), "{err}");

        ns.del_address("lo", v4, 24).unwrap();
        ns.del_address("lo", v6, 64).unwrap();
        let addrs = ns.addresses("lo").unwrap();
        assert!(
            !addrs.iter().any(|a| a.addr == v4 || a.addr == v6),
            "{addrs:?}"
        );
    }
}
