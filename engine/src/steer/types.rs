//! Plain values of the steering API: attach mode, rules, counters. No kernel access here.

use sluice_ebpf as ebpf;
use std::fmt;

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

/// What the XDP program does with frames: steer by port rules, or act as the fast path of a
/// user-space router. Chosen at run time ([`Steering::set_mode`](super::Steering::set_mode));
/// a freshly loaded program is in [`SteerMode::Ports`].
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
}

impl SteerMode {
    /// The value stored in the program's config map.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Ports => ebpf::MODE_PORTS,
            Self::Forward => ebpf::MODE_FORWARD,
        }
    }
}

impl fmt::Display for SteerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ports => "ports",
            Self::Forward => "forward",
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

/// The XDP program's outcome counters, summed over all CPUs, since the program was loaded.
///
/// Every frame the program sees is counted exactly once. `not_ip` and `malformed` count in
/// both modes; `redirected` .. `redirect_fallback` only in [`SteerMode::Ports`], the `fwd_*`
/// and `fib_*` counters only in [`SteerMode::Forward`].
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
}

impl Counters {
    /// Builds the struct from per-index sums (index = `sluice_ebpf::counter::*`).
    pub(crate) fn from_sums(sums: &[u64; ebpf::counter::LEN as usize]) -> Self {
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
        }
    }

    /// Every outcome with its name (the field name), in field order: for metrics labels and
    /// stats lines.
    pub fn outcomes(&self) -> [(&'static str, u64); 16] {
        let values = self.values();
        std::array::from_fn(|i| (OUTCOMES[i], values[i]))
    }

    /// The counters in field order (the order of [`Counters::outcomes`]).
    fn values(&self) -> [u64; 16] {
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
        ]
    }

    fn values_mut(&mut self) -> [&mut u64; 16] {
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
const OUTCOMES: [&str; 16] = [
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
        assert_eq!(c.total(), (1..=16).sum::<u64>());
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
        let sums: [u64; 16] = std::array::from_fn(|i| 10 + i as u64);
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
