//! Plain values of the steering API: attach mode, rules, VIPs, counters. No kernel access
//! here.

use sluice_ebpf as ebpf;
use std::fmt;
use std::net::IpAddr;

/// How to attach the XDP program.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode if the driver supports it, else generic (skb) mode — with one
    /// warning saying so.
    #[default]
    Auto,
    /// Native XDP in the driver (`XDP_FLAGS_DRV_MODE`); fails if the driver lacks it.
    Driver,
    /// Generic XDP in the kernel's receive path (`XDP_FLAGS_SKB_MODE`): works on every
    /// device, slower, AF_XDP in copy mode only.
    Skb,
}

impl XdpMode {
    /// Every mode's name, as [`fmt::Display`] writes it and [`std::str::FromStr`] reads it.
    pub const NAMES: [&'static str; 3] = ["auto", "driver", "skb"];
}

impl std::str::FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "driver" => Ok(Self::Driver),
            "skb" => Ok(Self::Skb),
            _ => Err(format!("{s:?} is not an XDP mode (auto, driver, skb)")),
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Driver => "driver",
            Self::Skb => "skb",
        })
    }
}

/// What the XDP program does with frames: steer by port rules, act as the fast path of a
/// user-space router, or pick out a load balancer's VIPs. Chosen at run time
/// ([`Steering::set_mode`](super::Steering::set_mode)); a freshly loaded program is in
/// [`SteerMode::Ports`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SteerMode {
    /// `(protocol, destination port)` rules decide: redirect, drop or pass.
    #[default]
    Ports,
    /// Redirect exactly the IPv4/IPv6 frames the kernel's FIB (`bpf_fib_lookup` with the
    /// ingress interface, policy routing included) would forward with a resolved next-hop
    /// neighbour; pass everything else to the kernel (local traffic, unresolved neighbours,
    /// unreachable destinations, ARP/ND, options, fragments, extension headers, VLAN tags).
    /// Rules are ignored. TTL / hop limit and MTU are not checked: the frames that reach user
    /// space may have to be answered with "time exceeded" or "too big".
    Forward,
    /// Redirect the untagged IPv4/IPv6 frames addressed to a VIP ([`VipMatch`], set with
    /// [`Steering::set_vip`](super::Steering::set_vip)); pass everything else to the kernel.
    /// TCP and UDP match on address, protocol and destination port, where a VIP with port 0
    /// takes every port; ICMP (IPv4) and ICMPv6 match on the address alone
    /// ([`VipMatch::icmp`]), except ICMPv6 neighbour discovery, which is always the kernel's.
    /// VLAN-tagged frames, IPv4 fragments and IPv6 extension headers go to the kernel
    /// (counted `lb_kernel_only`). Rules are ignored.
    Lb,
}

impl SteerMode {
    /// The value stored in the program's config map.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Ports => ebpf::MODE_PORTS,
            Self::Forward => ebpf::MODE_FORWARD,
            Self::Lb => ebpf::MODE_LB,
        }
    }
}

impl fmt::Display for SteerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ports => "ports",
            Self::Forward => "forward",
            Self::Lb => "lb",
        })
    }
}

/// Transport protocol a [`Rule`] matches.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    /// UDP (IP protocol 17).
    Udp,
    /// TCP (IP protocol 6).
    Tcp,
}

impl L4Proto {
    /// The IP protocol number (what the XDP program reads from the IP header).
    pub const fn ip_proto(self) -> u8 {
        match self {
            Self::Udp => ebpf::IPPROTO_UDP,
            Self::Tcp => ebpf::IPPROTO_TCP,
        }
    }

    /// Inverse of [`L4Proto::ip_proto`].
    pub const fn from_ip_proto(proto: u8) -> Option<Self> {
        match proto {
            ebpf::IPPROTO_UDP => Some(Self::Udp),
            ebpf::IPPROTO_TCP => Some(Self::Tcp),
            _ => None,
        }
    }
}

impl fmt::Display for L4Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}

/// What the XDP program does with a frame whose `(proto, dst port)` matches a [`Rule`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Into the AF_XDP socket registered for the receive queue; to the kernel if there is none.
    Redirect,
    /// Dropped in XDP.
    Drop,
    /// To the kernel (e.g. to exempt a port from a broader policy, or for counting).
    Pass,
}

impl Action {
    /// The value stored in the rules map (never `sluice_ebpf::ACTION_NONE`, which means "no
    /// rule").
    pub const fn raw(self) -> u32 {
        match self {
            Self::Redirect => ebpf::ACTION_REDIRECT,
            Self::Drop => ebpf::ACTION_DROP,
            Self::Pass => ebpf::ACTION_PASS,
        }
    }

    /// Inverse of [`Action::raw`].
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            ebpf::ACTION_REDIRECT => Some(Self::Redirect),
            ebpf::ACTION_DROP => Some(Self::Drop),
            ebpf::ACTION_PASS => Some(Self::Pass),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Redirect => "redirect",
            Self::Drop => "drop",
            Self::Pass => "pass",
        })
    }
}

/// One steering rule: frames to `proto` destination `port` get `action`.
///
/// Rules are keyed by `(proto, port)`: setting a rule for a key that has one replaces it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Rule {
    /// Transport protocol.
    pub proto: L4Proto,
    /// Destination port (host byte order).
    pub port: u16,
    /// What to do with matching frames.
    pub action: Action,
}

impl Rule {
    /// The rules-map index of `(proto, port)`.
    pub(crate) const fn index(proto: L4Proto, port: u16) -> u32 {
        match ebpf::rule_index(proto.ip_proto(), port) {
            Some(index) => index,
            None => unreachable!(), // every L4Proto has a slot range in the map
        }
    }

    /// Rebuilds a rule from a map entry (tests read the map back with it; `Steering::rules`
    /// lists the shadow instead); `None` for an empty slot ([`ebpf::ACTION_NONE`]),
    /// an index past the map or a value this API cannot have written.
    #[cfg(test)]
    pub(crate) fn from_entry(index: u32, value: u32) -> Option<Self> {
        let (proto, port) = ebpf::rule_at(index)?;
        Some(Self {
            proto: L4Proto::from_ip_proto(proto)?,
            port,
            action: Action::from_raw(value)?,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} -> {}", self.proto, self.port, self.action)
    }
}

/// A destination the XDP program redirects in [`SteerMode::Lb`]: frames to `address` of IP
/// protocol `proto` and, for TCP and UDP, destination port `port` (0 = every port).
///
/// Set with [`Steering::set_vip`](super::Steering::set_vip); setting one that is already
/// there changes nothing. The program looks up only TCP and UDP (any port), ICMP on an IPv4
/// address and ICMPv6 on an IPv6 one (port 0, see [`VipMatch::icmp`]); any other combination
/// could never match and is refused. An IPv4-mapped IPv6 address is an IPv6 VIP: it matches
/// IPv6 frames to that address, never IPv4 ones.
///
/// Displays as `10.0.0.100:80/tcp`, `[2001:db8::1]:0/icmpv6`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct VipMatch {
    /// The virtual address.
    pub address: IpAddr,
    /// Destination port, host byte order; 0 = every port of `proto` (and always 0 for ICMP).
    pub port: u16,
    /// IP protocol number: 6 (TCP), 17 (UDP), 1 (ICMP, IPv4 only) or 58 (ICMPv6, IPv6 only).
    pub proto: u8,
}

impl VipMatch {
    /// The ICMP (IPv4) or ICMPv6 (IPv6) entry of `address`: ICMP messages to it — echo
    /// requests, and the errors about its flows that come back to the VIP (fragmentation
    /// needed, packet too big, unreachable) — go to user space. Neighbour discovery never
    /// does.
    pub const fn icmp(address: IpAddr) -> Self {
        let proto = match address {
            IpAddr::V4(_) => ebpf::IPPROTO_ICMP,
            IpAddr::V6(_) => ebpf::IPPROTO_ICMPV6,
        };
        Self {
            address,
            port: 0,
            proto,
        }
    }

    /// The map key the program builds for frames this matches; `Err(why)` if it could never
    /// match.
    pub(crate) fn key(self) -> Result<ebpf::VipKey, &'static str> {
        let (mut addr, family) = ([0u8; 16], self.family());
        match self.address {
            IpAddr::V4(a) => addr[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => addr = a.octets(),
        }
        match (self.proto, family) {
            (ebpf::IPPROTO_TCP | ebpf::IPPROTO_UDP, _) => {}
            (ebpf::IPPROTO_ICMP, ebpf::VIP_FAMILY_V4)
            | (ebpf::IPPROTO_ICMPV6, ebpf::VIP_FAMILY_V6)
                if self.port != 0 =>
            {
                return Err("ICMP has no ports: use port 0");
            }
            (ebpf::IPPROTO_ICMP, ebpf::VIP_FAMILY_V4)
            | (ebpf::IPPROTO_ICMPV6, ebpf::VIP_FAMILY_V6) => {}
            (ebpf::IPPROTO_ICMP, _) => return Err("ICMP (1) is IPv4's; IPv6 uses ICMPv6 (58)"),
            (ebpf::IPPROTO_ICMPV6, _) => return Err("ICMPv6 (58) is IPv6's; IPv4 uses ICMP (1)"),
            _ => {
                return Err(
                    "the XDP program looks up only TCP (6), UDP (17), ICMP (1) and ICMPv6 (58)",
                );
            }
        }
        Ok(ebpf::VipKey {
            addr,
            port: self.port.to_be(),
            proto: self.proto,
            family,
        })
    }

    /// Inverse of [`VipMatch::key`]; `None` for a family other than IPv4/IPv6.
    pub(crate) fn from_key(key: &ebpf::VipKey) -> Option<Self> {
        let address = match key.family {
            ebpf::VIP_FAMILY_V4 => {
                let [a, b, c, d, ..] = key.addr;
                IpAddr::from([a, b, c, d])
            }
            ebpf::VIP_FAMILY_V6 => IpAddr::from(key.addr),
            _ => return None,
        };
        Some(Self {
            address,
            port: u16::from_be(key.port),
            proto: key.proto,
        })
    }

    const fn family(self) -> u8 {
        match self.address {
            IpAddr::V4(_) => ebpf::VIP_FAMILY_V4,
            IpAddr::V6(_) => ebpf::VIP_FAMILY_V6,
        }
    }
}

impl fmt::Display for VipMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}/", self.port)?,
            IpAddr::V6(a) => write!(f, "[{a}]:{}/", self.port)?,
        }
        match self.proto {
            ebpf::IPPROTO_TCP => f.write_str("tcp"),
            ebpf::IPPROTO_UDP => f.write_str("udp"),
            ebpf::IPPROTO_ICMP => f.write_str("icmp"),
            ebpf::IPPROTO_ICMPV6 => f.write_str("icmpv6"),
            n => write!(f, "ipproto-{n}"),
        }
    }
}

/// The XDP program's outcome counters, summed over all CPUs, since the program was loaded.
///
/// Every frame the program sees is counted exactly once. `not_ip` and `malformed` count in
/// every mode; `redirected` .. `redirect_fallback` only in [`SteerMode::Ports`], the `fwd_*`
/// and `fib_*` counters only in [`SteerMode::Forward`], the `lb_*` counters only in
/// [`SteerMode::Lb`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Redirected into an AF_XDP socket.
    pub redirected: u64,
    /// IP, well-formed, no rule matched (also non-UDP/TCP and IPv4 non-first fragments): passed.
    pub passed: u64,
    /// A pass rule matched.
    pub passed_by_rule: u64,
    /// A drop rule matched.
    pub dropped_by_rule: u64,
    /// Not IPv4/IPv6 (ARP, more than two VLAN tags, ...): passed.
    pub not_ip: u64,
    /// Truncated or invalid header: passed.
    pub malformed: u64,
    /// A redirect rule matched but the receive queue had no socket: passed (fail open).
    pub redirect_fallback: u64,
    /// Forward mode: forwardable (FIB success), redirected into the queue's AF_XDP socket.
    pub fwd_redirected: u64,
    /// Forward mode: forwardable, but the queue had no socket: passed (the kernel forwards).
    pub fwd_fallback: u64,
    /// Forward mode: VLAN-tagged, IPv4 with options or fragmented, IPv6 with an extension
    /// header: passed without a FIB lookup.
    pub fwd_kernel_only: u64,
    /// Forward mode: ICMPv6 neighbour discovery, or a multicast, broadcast or link-local
    /// destination: passed without a FIB lookup.
    pub fwd_link_scope: u64,
    /// Forward mode: for this host (or broadcast), or no route: passed.
    pub fib_local_or_noroute: u64,
    /// Forward mode: next hop not resolved (ARP/ND): passed, the kernel resolves it.
    pub fib_no_neigh: u64,
    /// Forward mode: forwarding disabled on the ingress interface: passed.
    pub fib_fwd_disabled: u64,
    /// Forward mode: blackhole, unreachable or prohibit route: passed (the kernel answers).
    pub fib_unreachable: u64,
    /// Forward mode: any other FIB result (lightweight tunnel, MTU, error): passed.
    pub fib_other: u64,
    /// LB mode: addressed to a VIP, redirected into the queue's AF_XDP socket.
    pub lb_redirected: u64,
    /// LB mode: addressed to a VIP, but the queue had no socket: passed (fail open).
    pub lb_fallback: u64,
    /// LB mode: no VIP matched (or ICMPv6 neighbour discovery, or an IP protocol other than
    /// TCP, UDP, ICMP, ICMPv6): passed.
    pub lb_passed: u64,
    /// LB mode: VLAN-tagged, an IPv4 fragment or an IPv6 extension header: passed without a
    /// VIP lookup (so a VIP's frames of this kind reach the kernel, not user space).
    pub lb_kernel_only: u64,
}

impl Counters {
    /// Number of outcomes (fields): one per counter of the program.
    pub const LEN: usize = ebpf::counter::LEN as usize;

    /// Builds the struct from per-index sums (index = `sluice_ebpf::counter::*`).
    pub(crate) fn from_sums(sums: &[u64; Self::LEN]) -> Self {
        use ebpf::counter as c;
        Self {
            redirected: sums[c::REDIRECTED as usize],
            passed: sums[c::PASSED as usize],
            passed_by_rule: sums[c::PASSED_BY_RULE as usize],
            dropped_by_rule: sums[c::DROPPED_BY_RULE as usize],
            not_ip: sums[c::NOT_IP as usize],
            malformed: sums[c::MALFORMED as usize],
            redirect_fallback: sums[c::REDIRECT_FALLBACK as usize],
            fwd_redirected: sums[c::FWD_REDIRECTED as usize],
            fwd_fallback: sums[c::FWD_FALLBACK as usize],
            fwd_kernel_only: sums[c::FWD_KERNEL_ONLY as usize],
            fwd_link_scope: sums[c::FWD_LINK_SCOPE as usize],
            fib_local_or_noroute: sums[c::FIB_LOCAL_OR_NOROUTE as usize],
            fib_no_neigh: sums[c::FIB_NO_NEIGH as usize],
            fib_fwd_disabled: sums[c::FIB_FWD_DISABLED as usize],
            fib_unreachable: sums[c::FIB_UNREACHABLE as usize],
            fib_other: sums[c::FIB_OTHER as usize],
            lb_redirected: sums[c::LB_REDIRECTED as usize],
            lb_fallback: sums[c::LB_FALLBACK as usize],
            lb_passed: sums[c::LB_PASSED as usize],
            lb_kernel_only: sums[c::LB_KERNEL_ONLY as usize],
        }
    }

    /// Every outcome with its name (the field name), in field order: for metrics labels and
    /// stats lines.
    pub fn outcomes(&self) -> [(&'static str, u64); Self::LEN] {
        let values = self.values();
        std::array::from_fn(|i| (OUTCOMES[i], values[i]))
    }

    /// The counters in field order (the order of [`Counters::outcomes`]).
    fn values(&self) -> [u64; Self::LEN] {
        [
            self.redirected,
            self.passed,
            self.passed_by_rule,
            self.dropped_by_rule,
            self.not_ip,
            self.malformed,
            self.redirect_fallback,
            self.fwd_redirected,
            self.fwd_fallback,
            self.fwd_kernel_only,
            self.fwd_link_scope,
            self.fib_local_or_noroute,
            self.fib_no_neigh,
            self.fib_fwd_disabled,
            self.fib_unreachable,
            self.fib_other,
            self.lb_redirected,
            self.lb_fallback,
            self.lb_passed,
            self.lb_kernel_only,
        ]
    }

    fn values_mut(&mut self) -> [&mut u64; Self::LEN] {
        [
            &mut self.redirected,
            &mut self.passed,
            &mut self.passed_by_rule,
            &mut self.dropped_by_rule,
            &mut self.not_ip,
            &mut self.malformed,
            &mut self.redirect_fallback,
            &mut self.fwd_redirected,
            &mut self.fwd_fallback,
            &mut self.fwd_kernel_only,
            &mut self.fwd_link_scope,
            &mut self.fib_local_or_noroute,
            &mut self.fib_no_neigh,
            &mut self.fib_fwd_disabled,
            &mut self.fib_unreachable,
            &mut self.fib_other,
            &mut self.lb_redirected,
            &mut self.lb_fallback,
            &mut self.lb_passed,
            &mut self.lb_kernel_only,
        ]
    }

    /// Element-wise sum (the counters of several interfaces' programs).
    pub fn add(&mut self, o: &Counters) {
        for (a, b) in self.values_mut().into_iter().zip(o.values()) {
            *a += b;
        }
    }

    /// Element-wise `self - earlier` (counters only grow; saturates at 0 if `earlier` is not
    /// actually earlier).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = *self;
        for (a, b) in d.values_mut().into_iter().zip(earlier.values()) {
            *a = a.saturating_sub(b);
        }
        d
    }

    /// All frames the program has seen.
    pub fn total(&self) -> u64 {
        self.values().iter().sum()
    }
}

/// The outcome names, in field order.
const OUTCOMES: [&str; Counters::LEN] = [
    "redirected",
    "passed",
    "passed_by_rule",
    "dropped_by_rule",
    "not_ip",
    "malformed",
    "redirect_fallback",
    "fwd_redirected",
    "fwd_fallback",
    "fwd_kernel_only",
    "fwd_link_scope",
    "fib_local_or_noroute",
    "fib_no_neigh",
    "fib_fwd_disabled",
    "fib_unreachable",
    "fib_other",
    "lb_redirected",
    "lb_fallback",
    "lb_passed",
    "lb_kernel_only",
];

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn outcome_names_are_the_json_field_names_in_order() {
        let mut c = Counters::default();
        for (i, v) in c.values_mut().into_iter().enumerate() {
            *v = i as u64 + 1;
        }
        let json = serde_json::to_value(c).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut names = OUTCOMES.to_vec();
        names.sort_unstable(); // serde_json's map is ordered by key
        assert_eq!(fields, names);
        for (name, v) in c.outcomes() {
            assert_eq!(json[name], v, "{name}");
        }
        assert_eq!(c.total(), (1..=Counters::LEN as u64).sum::<u64>());
        assert_eq!(c.since(&c), Counters::default());
    }

    #[test]
    fn proto_and_action_round_trip() {
        for p in [L4Proto::Udp, L4Proto::Tcp] {
            assert_eq!(L4Proto::from_ip_proto(p.ip_proto()), Some(p));
        }
        assert_eq!(L4Proto::Udp.ip_proto(), 17);
        assert_eq!(L4Proto::Tcp.ip_proto(), 6);
        assert_eq!(L4Proto::from_ip_proto(1), None);
        for a in [Action::Redirect, Action::Drop, Action::Pass] {
            assert_eq!(Action::from_raw(a.raw()), Some(a));
        }
        assert_eq!(Action::from_raw(ebpf::ACTION_NONE), None);
        assert_eq!(Action::from_raw(4), None);
    }

    #[test]
    fn rule_entry_round_trip() {
        let r = Rule {
            proto: L4Proto::Tcp,
            port: 8080,
            action: Action::Drop,
        };
        let index = Rule::index(r.proto, r.port);
        assert_eq!(index, ebpf::RULES_TCP_BASE + 8080);
        assert_eq!(Rule::index(L4Proto::Udp, 8080), ebpf::RULES_UDP_BASE + 8080);
        assert_eq!(Rule::from_entry(index, r.action.raw()), Some(r));
        assert_eq!(Rule::from_entry(index, 99), None);
        assert_eq!(Rule::from_entry(index, ebpf::ACTION_NONE), None);
        assert_eq!(Rule::from_entry(ebpf::RULES_MAX_ENTRIES, 1), None);
        assert_eq!(r.to_string(), "tcp/8080 -> drop");
    }

    #[test]
    fn counters_from_sums_uses_the_c_indices() {
        let sums: [u64; Counters::LEN] = std::array::from_fn(|i| 10 + i as u64);
        let c = Counters::from_sums(&sums);
        assert_eq!(
            c,
            Counters {
                redirected: 10,
                passed: 11,
                passed_by_rule: 12,
                dropped_by_rule: 13,
                not_ip: 14,
                malformed: 15,
                redirect_fallback: 16,
                fwd_redirected: 17,
                fwd_fallback: 18,
                fwd_kernel_only: 19,
                fwd_link_scope: 20,
                fib_local_or_noroute: 21,
                fib_no_neigh: 22,
                fib_fwd_disabled: 23,
                fib_unreachable: 24,
                fib_other: 25,
                lb_redirected: 26,
                lb_fallback: 27,
                lb_passed: 28,
                lb_kernel_only: 29,
            }
        );
        assert_eq!(c.total(), sums.iter().sum::<u64>());
        let mut twice = c;
        twice.add(&c);
        assert_eq!(twice.total(), 2 * c.total());
        assert_eq!(twice.since(&c), c);
        assert_eq!(c.since(&twice), Counters::default());
    }

    #[test]
    fn steer_mode_values() {
        assert_eq!(SteerMode::default(), SteerMode::Ports);
        assert_eq!(SteerMode::Ports.raw(), ebpf::MODE_PORTS);
        assert_eq!(SteerMode::Forward.raw(), ebpf::MODE_FORWARD);
        assert_eq!(SteerMode::Forward.to_string(), "forward");
        assert_eq!(
            serde_json::to_string(&SteerMode::Forward).unwrap(),
            "\"forward\""
        );
        assert_eq!(SteerMode::Lb.raw(), ebpf::MODE_LB);
        assert_eq!(SteerMode::Lb.to_string(), "lb");
        assert_eq!(serde_json::to_string(&SteerMode::Lb).unwrap(), "\"lb\"");
    }

    #[test]
    fn vip_keys_round_trip_and_unmatchable_vips_are_refused() {
        let v4: IpAddr = "10.0.0.100".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let tcp80 = VipMatch {
            address: v4,
            port: 80,
            proto: 6,
        };
        let key = tcp80.key().unwrap();
        assert_eq!(&key.addr[..4], &[10, 0, 0, 100]);
        assert_eq!(
            &key.addr[4..],
            &[0; 12],
            "IPv4 in addr[0..4], the rest zero"
        );
        assert_eq!(key.port.to_ne_bytes(), [0, 80], "network byte order");
        assert_eq!((key.proto, key.family), (6, ebpf::VIP_FAMILY_V4));
        assert_eq!(tcp80.to_string(), "10.0.0.100:80/tcp");

        let any_udp6 = VipMatch {
            address: v6,
            port: 0,
            proto: 17,
        };
        let key6 = any_udp6.key().unwrap();
        assert_eq!(
            key6.addr,
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!((key6.port, key6.family), (0, ebpf::VIP_FAMILY_V6));
        assert_eq!(any_udp6.to_string(), "[2001:db8::1]:0/udp");

        assert_eq!(VipMatch::icmp(v4).proto, ebpf::IPPROTO_ICMP);
        assert_eq!(VipMatch::icmp(v6).proto, ebpf::IPPROTO_ICMPV6);
        assert_eq!(VipMatch::icmp(v6).to_string(), "[2001:db8::1]:0/icmpv6");
        for vip in [tcp80, any_udp6, VipMatch::icmp(v4), VipMatch::icmp(v6)] {
            assert_eq!(VipMatch::from_key(&vip.key().unwrap()), Some(vip), "{vip}");
        }
        let bad_family = ebpf::VipKey { family: 5, ..key };
        assert_eq!(VipMatch::from_key(&bad_family), None);

        let refused = |address, port, proto| {
            VipMatch {
                address,
                port,
                proto,
            }
            .key()
            .unwrap_err()
        };
        assert!(refused(v4, 0, 58).contains("IPv6's"));
        assert!(refused(v6, 0, 1).contains("IPv4's"));
        assert!(refused(v4, 7, 1).contains("port 0"));
        assert!(refused(v4, 0, 47).contains("only TCP"));
        assert_eq!(
            VipMatch {
                address: v4,
                port: 0,
                proto: 47
            }
            .to_string(),
            "10.0.0.100:0/ipproto-47"
        );
    }

    #[test]
    fn mode_names() {
        for (m, name) in [XdpMode::Auto, XdpMode::Driver, XdpMode::Skb]
            .into_iter()
            .zip(XdpMode::NAMES)
        {
            assert_eq!(m.to_string(), name);
            assert_eq!(name.parse::<XdpMode>(), Ok(m));
        }
        assert!(
            "native"
                .parse::<XdpMode>()
                .unwrap_err()
                .contains("auto, driver, skb")
        );
        assert_eq!(XdpMode::default(), XdpMode::Auto);
    }
}
