//! Plain data types the public API hands out: MAC addresses and what the
//! kernel reports about links, addresses, neighbours and routes.
//!
//! These deliberately don't expose `netlink-packet-route` types, so users of
//! the test bed don't have to pin that crate's version.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The six address bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Builds a MAC address from a slice; `None` unless it is 6 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error from parsing a [`MacAddr`] that isn't six `:`-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six ':'-separated hex bytes")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| ParseMacError(s.into()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(ParseMacError(s.into()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError(s.into()));
        }
        Ok(MacAddr(out))
    }
}

/// A network interface as the kernel reports it (`RTM_GETLINK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// Interface index (unique within its namespace only).
    pub index: u32,
    /// MAC address; `None` for links without one (e.g. some tunnels).
    pub mac: Option<MacAddr>,
    /// MTU in bytes.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`); a veth end has carrier only when
    /// both ends are up.
    pub lower_up: bool,
    /// Operational state is up (`IF_OPER_UP`, "state UP" in `ip link`).
    pub oper_up: bool,
    /// Name of the root qdisc (`IFLA_QDISC`). It is `noop`, which drops
    /// every packet, until the kernel activates the device after its
    /// carrier came up.
    pub qdisc: Option<String>,
    /// Number of receive queues.
    pub num_rx_queues: u32,
    /// Number of transmit queues.
    pub num_tx_queues: u32,
    /// Index of the device this one is enslaved to (`IFLA_MASTER`), e.g.
    /// the bridge a bridge port belongs to.
    pub master: Option<u32>,
}

/// An IP address assigned to an interface (`RTM_GETADDR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// IPv6 duplicate address detection is still running; the address is
    /// not usable yet. Never set for addresses this crate adds (they are
    /// added with `IFA_F_NODAD`).
    pub tentative: bool,
}

/// A neighbour (ARP / NDP) cache entry (`RTM_GETNEIGH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its link-layer address, once known.
    pub mac: Option<MacAddr>,
    /// A static entry (`NUD_PERMANENT`), as added by
    /// [`Netns::add_neighbour`](crate::Netns::add_neighbour).
    pub permanent: bool,
    /// The raw `NUD_*` state bits.
    pub state: u16,
}

/// An IP version, for the sysctls that exist once per family
/// (`net.ipv4.conf.*` and `net.ipv6.conf.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4 (`net.ipv4.*`).
    V4,
    /// IPv6 (`net.ipv6.*`).
    V6,
}

impl IpFamily {
    /// The sysctl directory name: `ipv4` or `ipv6`.
    pub const fn sysctl_dir(self) -> &'static str {
        match self {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        }
    }
}

/// The kind of an IP-in-IP tunnel device ([`Netns::add_ip_tunnel`](crate::Netns::add_ip_tunnel)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpTunnel {
    /// `ipip`: IPv4 in IPv4 (IP protocol 4), kernel module `ipip`.
    Ipip,
    /// `ip6tnl` in mode `any`: IPv6 or IPv4 in IPv6 (next header 41 or 4),
    /// kernel module `ip6_tunnel`.
    Ip6Tnl,
}

impl IpTunnel {
    /// The link kind as `ip link` names it.
    pub const fn name(self) -> &'static str {
        match self {
            IpTunnel::Ipip => "ipip",
            IpTunnel::Ip6Tnl => "ip6tnl",
        }
    }
}

/// Which entry of `net.ipv{4,6}.conf` a per-interface sysctl goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conf<'a> {
    /// `conf/all`: for `forwarding`, writing it also sets every interface
    /// (and `default`); for `rp_filter`, the kernel uses the larger of
    /// `all` and the interface's value.
    All,
    /// `conf/default`: what interfaces created later start with.
    Default,
    /// `conf/IFACE` for one interface.
    Iface(&'a str),
}

impl Conf<'_> {
    /// The directory name below `net/ipv{4,6}/conf/`.
    pub fn dir(&self) -> &str {
        match self {
            Conf::All => "all",
            Conf::Default => "default",
            Conf::Iface(iface) => iface,
        }
    }
}

/// IPv4 reverse-path filtering (`net.ipv4.conf.*.rp_filter`, RFC 3704).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RpFilter {
    /// 0: no source validation (the kernel's built-in default).
    #[default]
    Off,
    /// 1: strict — a packet's source must be routed back out of the
    /// interface it arrived on.
    Strict,
    /// 2: loose — the source must be reachable through some interface.
    Loose,
}

impl RpFilter {
    /// The sysctl value.
    pub const fn value(self) -> u8 {
        match self {
            RpFilter::Off => 0,
            RpFilter::Strict => 1,
            RpFilter::Loose => 2,
        }
    }

    /// The mode a sysctl value stands for; `None` for values the kernel
    /// doesn't define.
    pub const fn from_value(value: u8) -> Option<RpFilter> {
        match value {
            0 => Some(RpFilter::Off),
            1 => Some(RpFilter::Strict),
            2 => Some(RpFilter::Loose),
            _ => None,
        }
    }
}

/// A simple unicast route in the main table: `dst/prefix_len`, either via a
/// gateway, or directly on a device, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network (`0.0.0.0` / `::` with prefix 0 for a default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Next hop, if any; must be of the same family as `dst`.
    pub via: Option<IpAddr>,
    /// Output interface, if any. At least one of `via` and `dev` is needed
    /// to add a route.
    pub dev: Option<String>,
    /// Route metric (`RTA_PRIORITY`; lower is preferred). `None` when adding
    /// leaves it to the kernel, which picks 0 for IPv4 and 1024 for IPv6;
    /// `None` when deleting matches any metric. Listed routes always carry
    /// the kernel's value.
    pub metric: Option<u32>,
}

impl Route {
    /// A route to `dst/prefix_len` via the gateway `via`.
    pub fn via(dst: IpAddr, prefix_len: u8, via: IpAddr) -> Route {
        Route {
            dst,
            prefix_len,
            via: Some(via),
            dev: None,
            metric: None,
        }
    }

    /// A route to `dst/prefix_len` directly on the interface `dev`.
    pub fn dev(dst: IpAddr, prefix_len: u8, dev: &str) -> Route {
        Route {
            dst,
            prefix_len,
            via: None,
            dev: Some(dev.to_owned()),
            metric: None,
        }
    }

    /// The same route, pinned to the output interface `dev` (`... via GW dev DEV`).
    pub fn with_dev(mut self, dev: &str) -> Route {
        self.dev = Some(dev.to_owned());
        self
    }

    /// The same route with metric `metric` (`... metric N`). Two routes to
    /// the same destination with different metrics coexist; the lower one
    /// is used while its device is up.
    pub fn with_metric(mut self, metric: u32) -> Route {
        self.metric = Some(metric);
        self
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dst, self.prefix_len)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac: MacAddr = "02:fc:00:0a:Bb:ff".parse().unwrap();
        assert_eq!(mac.octets(), [0x02, 0xfc, 0x00, 0x0a, 0xbb, 0xff]);
        assert_eq!(mac.to_string(), "02:fc:00:0a:bb:ff");
        assert!("02:fc:00:0a:bb".parse::<MacAddr>().is_err());
        assert!("02:fc:00:0a:bb:ff:00".parse::<MacAddr>().is_err());
        assert!("02:fc:00:0a:bb:fff".parse::<MacAddr>().is_err());
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
    }

    #[test]
    fn route_builders_and_display() {
        let r = Route::via("10.9.0.1".parse().unwrap(), 32, "10.2.0.2".parse().unwrap())
            .with_dev("r1")
            .with_metric(100);
        assert_eq!(r.dev.as_deref(), Some("r1"));
        assert_eq!(r.metric, Some(100));
        assert_eq!(r.to_string(), "10.9.0.1/32 via 10.2.0.2 dev r1 metric 100");
        assert_eq!(
            Route::dev("fd00:1::".parse().unwrap(), 64, "c0").to_string(),
            "fd00:1::/64 dev c0"
        );
    }
}
