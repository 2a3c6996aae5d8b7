//! The `lb` app's configuration file (`sluice run --app lb --lb-config FILE`) and the VIP syntax
//! `sluice ctl` uses (issue 9).
//!
//! Owns parsing and checking only: text in, a checked [`LbConfig`] or an error out. It never
//! touches the network, never builds a Maglev table and never logs; [`LbConfig::from_file`]
//! reads the one file it is given and that is all the I/O here.
//!
//! # The file
//!
//! ```toml
//! # Optional sections; every key in them is optional too (defaults shown).
//! [conntrack]
//! capacity = 65536        # connections tracked per worker, 1..=16777216
//! tcp_idle_secs = 300     # a TCP entry unused this long is forgotten, 1..=86400
//! udp_idle_secs = 30      # the same for UDP, 1..=86400
//!
//! [maglev]
//! table_size = 65537      # lookup-table slots per VIP: a prime, 7..=16777213
//!
//! [health]
//! interval_ms = 1000      # one probe per backend this often, 100..=60000
//! timeout_ms = 500        # a probe unanswered this long failed, 1..interval_ms
//! rise = 2                # this many passed probes in a row bring a backend up, 1..=100
//! fall = 3                # this many failed probes in a row take it down, 1..=100
//!
//! # One table per VIP; at least one.
//! [[vip]]
//! address = "10.0.0.100"  # required; IPv4 or IPv6
//! port = 80               # required; 0 = every port of the protocol
//! protocol = "tcp"        # required; tcp | udp
//! forwarding = "dsr"      # required; dsr | ipip
//! health = "tcp"          # tcp | udp | none; default tcp for a TCP VIP with a port, else none
//! health_port = 8080      # port probed; default the VIP's port (required if that is 0)
//! backends = [ { address = "10.0.1.11", weight = 1 }, { address = "10.0.1.12" } ]
//! #            weight 0..=1000, default 1; 0 keeps the backend but sends it no new flows
//! ```
//!
//! `forwarding` has no default on purpose: DSR (the VIP configured on each backend, same
//! L2 segment) and IPIP (a tunnel endpoint on each backend) need different backend set-ups, and
//! guessing wrong blackholes the service.
//!
//! # Errors
//!
//! Decoding is strict (unknown keys are errors) and every error is one line naming the file,
//! the line and column, and the key path: `lb.toml:7:12: vip[1].backends[0].weight: invalid
//! type: string "x", expected u32`. The checks after decoding ([`LbConfig::validate`]) name the
//! VIP as well: `lb.toml:9:16: vip[1] (10.0.0.100:80/tcp): backends[1].address: 10.0.1.11 is
//! listed twice (also backends[0])`. The first error found is returned.
//!
//! The checks, and why:
//! - At least one VIP, and no two with the same address, port and protocol. A port-0 VIP and a
//!   VIP on one port of the same address and protocol may coexist (the specific one is the
//!   more precise match).
//! - A VIP with no backend of weight > 0 is an **error**, not a warning: it could only drop its
//!   traffic, which in a file is a typo far more often than an intent. Draining a whole VIP at
//!   run time is `sluice ctl`'s business.
//! - No backend twice in one VIP; weights at most [`MAX_WEIGHT`].
//! - Address families: `dsr` rewrites only the Ethernet header, so backend and VIP must be the
//!   same family. `ipip` encapsulates: IPv4 in IPv4 (IPIP), IPv6 in IPv6 (IP6IP6) and IPv4 in
//!   IPv6 (4in6) are allowed; IPv6 in IPv4 is not (issue 9 does not ask for it).
//! - VIP and backend addresses must be usable unicast ([`check_unicast`]): not unspecified,
//!   loopback, multicast, broadcast, or IPv4-mapped IPv6.

use crate::steer::L4Proto;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use toml::de::DeTable;

/// The largest backend weight: weights are relative shares of a Maglev table, and a bound
/// keeps a typo (`weight = 10000000`) from starving every other backend.
pub const MAX_WEIGHT: u32 = 1000;

/// The largest connection-table capacity per worker (2^24 entries).
pub const MAX_CONNTRACK_CAPACITY: u32 = 1 << 24;

/// The largest Maglev table size: the largest prime below 2^24.
pub const MAX_MAGLEV_TABLE_SIZE: u32 = 16_777_213;

/// A checked load-balancer configuration: what [`LbConfig::from_file`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbConfig {
    /// The services, in file order.
    pub vips: Vec<VipConfig>,
    /// The per-worker connection table (`[conntrack]`).
    pub conntrack: ConntrackConfig,
    /// Maglev hashing (`[maglev]`).
    pub maglev: MaglevConfig,
    /// Backend health probing (`[health]`).
    pub health: HealthConfig,
}

/// One service (`[[vip]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipConfig {
    /// What clients connect to.
    pub vip: Vip,
    /// How packets reach the backends.
    pub forwarding: Forwarding,
    /// Where they go, in file order.
    pub backends: Vec<BackendConfig>,
    /// How backends are probed.
    pub health: HealthCheck,
    /// The port probed (meaningless when `health` is [`HealthCheck::None`]; never 0 otherwise).
    pub health_port: u16,
}

/// A virtual service: address, destination port (0 = every port) and protocol. Written
/// `ADDRESS:PORT/PROTO` ([`FromStr`], [`fmt::Display`]): `10.0.0.100:80/tcp`,
/// `[2001:db8::1]:443/tcp`, `10.0.0.100:0/udp`. On the control protocol it is that string.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Vip {
    /// The virtual address.
    pub address: IpAddr,
    /// Destination port, host byte order; 0 = every port of `proto`.
    pub port: u16,
    /// TCP or UDP.
    pub proto: L4Proto,
}

/// How the load balancer hands a packet to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Direct server return: only the destination MAC changes; the backend has the VIP on a
    /// loopback and answers the client directly. Backends share the L2 segment.
    Dsr,
    /// Encapsulation in an outer IP header to the backend (IPIP, IP6IP6 or 4in6); the backend
    /// decapsulates and answers the client directly.
    Ipip,
}

/// One backend of a VIP (an entry of `backends`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The backend's address (the outer destination for IPIP, the next hop for DSR).
    #[serde(deserialize_with = "ip_address")]
    pub address: IpAddr,
    /// Relative share of new flows, `0..=MAX_WEIGHT`; 0 = drained. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// How a VIP's backends are probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheck {
    /// A TCP connection to `health_port` must be accepted.
    Tcp,
    /// A datagram to `health_port` must not draw an ICMP port-unreachable.
    Udp,
    /// Not probed: every backend is always up.
    None,
}

/// The per-worker connection table (`[conntrack]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackConfig {
    /// Entries per worker, `1..=MAX_CONNTRACK_CAPACITY`. Default 65536.
    pub capacity: u32,
    /// Seconds a TCP entry lives unused, 1..=86400. Default 300.
    pub tcp_idle_secs: u32,
    /// Seconds a UDP entry lives unused, 1..=86400. Default 30.
    pub udp_idle_secs: u32,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        Self {
            capacity: 65536,
            tcp_idle_secs: 300,
            udp_idle_secs: 30,
        }
    }
}

/// Maglev consistent hashing (`[maglev]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaglevConfig {
    /// Slots in each VIP's lookup table: a prime (the permutation needs it), at most
    /// [`MAX_MAGLEV_TABLE_SIZE`]. Default 65537. The Maglev paper keeps it above 100 × the
    /// number of backends for an even spread; that is advice, not checked.
    pub table_size: u32,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        Self { table_size: 65537 }
    }
}

/// Backend health probing (`[health]`), shared by every VIP that probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Milliseconds between probes of one backend, 100..=60000. Default 1000.
    pub interval_ms: u32,
    /// Milliseconds a probe may take, 1..`interval_ms`. Default 500.
    pub timeout_ms: u32,
    /// Consecutive passes that bring a backend up, 1..=100. Default 2.
    pub rise: u32,
    /// Consecutive failures that take a backend down, 1..=100. Default 3.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
        }
    }
}

/// An address from a string, with an error that quotes it (serde's does not).
fn ip_address<'de, D: serde::Deserializer<'de>>(de: D) -> Result<IpAddr, D::Error> {
    let s = String::deserialize(de)?;
    s.parse()
        .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IP address")))
}

fn default_weight() -> u32 {
    1
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum LbConfigError {
    /// The file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or not the shape of this file (unknown key, wrong type, missing
    /// key), or a value breaks a rule of [`LbConfig::validate`].
    #[error("{0}")]
    Invalid(Diagnostic),
}

/// One error, located: `ORIGIN:LINE:COLUMN: PATH: MESSAGE`, where the location or the path is
/// left out when unknown (a syntax error has no path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name (or whatever the caller called the text).
    pub origin: String,
    /// 1-based line and column (in characters) of the offending text, when known.
    pub position: Option<(usize, usize)>,
    /// Where in the file: `vip[1].backends[0].weight`, `vip[0] (10.0.0.100:80/tcp): backends`,
    /// `maglev.table_size`; empty for a syntax error.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The file as written, before defaults that depend on other keys and before the checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    vip: Vec<RawVip>,
    #[serde(default)]
    conntrack: ConntrackConfig,
    #[serde(default)]
    maglev: MaglevConfig,
    #[serde(default)]
    health: HealthConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    #[serde(deserialize_with = "ip_address")]
    address: IpAddr,
    port: u16,
    protocol: L4Proto,
    forwarding: Forwarding,
    backends: Vec<BackendConfig>,
    health: Option<HealthCheck>,
    health_port: Option<u16>,
}

/// One step of a key path, to find a value's position in the parsed document.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl LbConfig {
    /// Reads, decodes and checks the file at `path`; errors name it as given.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LbConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LbConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_str(&text, &path.display().to_string())
    }

    /// Decodes and checks `text`; errors call it `origin` (a file name, usually).
    #[allow(clippy::should_implement_trait)] // FromStr has no room for `origin`.
    pub fn from_str(text: &str, origin: &str) -> Result<Self, LbConfigError> {
        let doc = Document { text, origin };
        let table = DeTable::parse(text).map_err(|e| doc.toml_error(&e, String::new()))?;
        let de = toml::de::Deserializer::from(table.clone());
        let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = path_string(e.path());
            let steps = path_steps(e.path());
            let inner = e.inner();
            match inner.span() {
                Some(_) => doc.toml_error(inner, path),
                // Without a span from toml, the path still finds the value.
                None => doc.at(table.get_ref(), &steps, path, inner.message().to_owned()),
            }
        })?;
        let config = raw.resolve();
        config
            .validate()
            .map_err(|e| doc.at(table.get_ref(), &e.steps(), e.path(&config), e.message))?;
        Ok(config)
    }

    /// Checks every rule of the module docs; the first broken one is the error, with the path
    /// of the offending key. [`LbConfig::from_str`] calls this; a config built in code should
    /// too.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.conntrack.validate()?;
        self.maglev.validate()?;
        self.health.validate()?;
        if self.vips.is_empty() {
            return Err(ValidationError::top("vip", "no [[vip]] is configured"));
        }
        let mut seen: HashMap<Vip, usize> = HashMap::new();
        for (i, vip) in self.vips.iter().enumerate() {
            if let Some(first) = seen.insert(vip.vip, i) {
                return Err(ValidationError::vip(
                    i,
                    None,
                    &[],
                    format!("the same VIP as vip[{first}]"),
                ));
            }
            vip.validate().map_err(|(backend, key, message)| {
                ValidationError::vip(i, backend, key, message)
            })?;
        }
        Ok(())
    }
}

impl RawFile {
    /// Applies the defaults that depend on other keys.
    fn resolve(self) -> LbConfig {
        let vips = self
            .vip
            .into_iter()
            .map(|v| {
                let health = v.health.unwrap_or(match (v.protocol, v.port) {
                    (L4Proto::Tcp, 1..) => HealthCheck::Tcp,
                    _ => HealthCheck::None,
                });
                VipConfig {
                    vip: Vip {
                        address: v.address,
                        port: v.port,
                        proto: v.protocol,
                    },
                    forwarding: v.forwarding,
                    backends: v.backends,
                    health,
                    health_port: v.health_port.unwrap_or(v.port),
                }
            })
            .collect();
        LbConfig {
            vips,
            conntrack: self.conntrack,
            maglev: self.maglev,
            health: self.health,
        }
    }
}

/// A broken rule, found by [`LbConfig::validate`]: where (section or VIP, backend, key) and what.
/// Displays as `vip[1].backends[0].weight: MESSAGE`; [`LbConfig::from_str`] adds the file
/// position and the VIP itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", self.dotted())]
pub struct ValidationError {
    /// The section (`conntrack`, `maglev`, `health`) or `vip`.
    pub section: &'static str,
    /// The VIP's index in [`LbConfig::vips`], for a VIP's error.
    pub vip: Option<usize>,
    /// The backend's index in that VIP's `backends`, for a backend's error.
    pub backend: Option<usize>,
    /// The key, as written in the file (`table_size`, `weight`), if one key is at fault.
    pub key: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

impl ValidationError {
    fn top(section: &'static str, message: impl Into<String>) -> Self {
        Self {
            section,
            vip: None,
            backend: None,
            key: None,
            message: message.into(),
        }
    }

    fn key(section: &'static str, key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key: Some(key),
            ..Self::top(section, message)
        }
    }

    fn vip(vip: usize, backend: Option<usize>, key: &[&'static str], message: String) -> Self {
        Self {
            section: "vip",
            vip: Some(vip),
            backend,
            key: key.first().copied(),
            message,
        }
    }

    /// The key path as steps into the document.
    fn steps(&self) -> Vec<Step<'static>> {
        let mut steps = vec![Step::Key(self.section)];
        steps.extend(self.vip.map(Step::Index));
        if let Some(b) = self.backend {
            steps.extend([Step::Key("backends"), Step::Index(b)]);
        }
        steps.extend(self.key.map(Step::Key));
        steps
    }

    /// The key path, dotted: `vip[1].backends[0].weight`, `maglev.table_size`.
    fn dotted(&self) -> String {
        let mut s = String::new();
        for step in self.steps() {
            match step {
                Step::Key(k) if s.is_empty() => s.push_str(k),
                Step::Key(k) => {
                    s.push('.');
                    s.push_str(k);
                }
                Step::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }

    /// The key path as a file error prints it, naming the VIP: `vip[1] (10.0.0.100:80/tcp):
    /// backends[0].weight`.
    fn path(&self, config: &LbConfig) -> String {
        let Some((i, vip)) = self.vip.and_then(|i| Some((i, config.vips.get(i)?))) else {
            return self.dotted();
        };
        let mut rest: Vec<String> = Vec::new();
        rest.extend(self.backend.map(|b| format!("backends[{b}]")));
        rest.extend(self.key.map(str::to_owned));
        if rest.is_empty() {
            format!("vip[{i}] ({})", vip.vip)
        } else {
            format!("vip[{i}] ({}): {}", vip.vip, rest.join("."))
        }
    }
}

fn range(
    section: &'static str,
    key: &'static str,
    value: u32,
    bounds: std::ops::RangeInclusive<u32>,
) -> Result<(), ValidationError> {
    if bounds.contains(&value) {
        Ok(())
    } else {
        Err(ValidationError::key(
            section,
            key,
            format!(
                "{value} is out of range ({}..={})",
                bounds.start(),
                bounds.end()
            ),
        ))
    }
}

impl ConntrackConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        range(
            "conntrack",
            "capacity",
            self.capacity,
            1..=MAX_CONNTRACK_CAPACITY,
        )?;
        range("conntrack", "tcp_idle_secs", self.tcp_idle_secs, 1..=86400)?;
        range("conntrack", "udp_idle_secs", self.udp_idle_secs, 1..=86400)
    }
}

impl MaglevConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        range(
            "maglev",
            "table_size",
            self.table_size,
            7..=MAX_MAGLEV_TABLE_SIZE,
        )?;
        if !is_prime(self.table_size) {
            return Err(ValidationError::key(
                "maglev",
                "table_size",
                format!("{} is not a prime (65537 is)", self.table_size),
            ));
        }
        Ok(())
    }
}

impl HealthConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        range("health", "interval_ms", self.interval_ms, 100..=60000)?;
        if self.timeout_ms == 0 || self.timeout_ms >= self.interval_ms {
            return Err(ValidationError::key(
                "health",
                "timeout_ms",
                format!(
                    "{} is out of range (1..{}, below interval_ms)",
                    self.timeout_ms, self.interval_ms
                ),
            ));
        }
        range("health", "rise", self.rise, 1..=100)?;
        range("health", "fall", self.fall, 1..=100)
    }
}

/// A VIP's broken rule: the backend's index, the key, the message.
type VipFault = (Option<usize>, &'static [&'static str], String);

impl VipConfig {
    /// The rules of one VIP as a change at run time must follow them (`sluice ctl vips add`,
    /// `backends add`): those of the file, except that a VIP may be without backends for a
    /// while. The message names the key: `backends[0].address: 10.0.1.1 is ...`.
    pub fn check(&self) -> Result<(), String> {
        self.validate_rules().map_err(|(backend, key, message)| {
            let mut path = String::new();
            if let Some(b) = backend {
                path.push_str(&format!("backends[{b}]"));
            }
            if let Some(k) = key.first() {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            if path.is_empty() {
                message
            } else {
                format!("{path}: {message}")
            }
        })
    }

    fn validate(&self) -> Result<(), VipFault> {
        self.validate_rules()?;
        if !self.backends.iter().any(|b| b.weight > 0) {
            let what = if self.backends.is_empty() {
                "empty"
            } else {
                "no backend with a weight above 0"
            };
            return Err((
                None,
                &["backends"],
                format!("{what}: the VIP could only drop its traffic"),
            ));
        }
        Ok(())
    }

    fn validate_rules(&self) -> Result<(), VipFault> {
        check_unicast(self.vip.address).map_err(|m| (None, &["address"][..], m))?;
        if self.health != HealthCheck::None && self.health_port == 0 {
            return Err((
                None,
                &["health_port"],
                format!(
                    "a VIP on every port needs a port to probe with health = \"{}\" \
                     (set health_port, or health = \"none\")",
                    self.health
                ),
            ));
        }
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (b, backend) in self.backends.iter().enumerate() {
            let fault = |key: &'static [&'static str], m: String| (Some(b), key, m);
            check_unicast(backend.address).map_err(|m| fault(&["address"], m))?;
            if let Some(first) = seen.insert(backend.address, b) {
                return Err(fault(
                    &["address"],
                    format!(
                        "{} is listed twice (also backends[{first}])",
                        backend.address
                    ),
                ));
            }
            match (self.forwarding, self.vip.address, backend.address) {
                (_, IpAddr::V4(_), IpAddr::V4(_)) | (_, IpAddr::V6(_), IpAddr::V6(_)) => {}
                (Forwarding::Ipip, IpAddr::V4(_), IpAddr::V6(_)) => {} // 4in6
                (Forwarding::Dsr, _, _) => {
                    return Err(fault(
                        &["address"],
                        format!(
                            "{} is not of the VIP's address family, which dsr needs \
                             (ipip can carry IPv4 in IPv6)",
                            backend.address
                        ),
                    ));
                }
                (Forwarding::Ipip, IpAddr::V6(_), IpAddr::V4(_)) => {
                    return Err(fault(
                        &["address"],
                        format!(
                            "{} is IPv4: ipip does not carry IPv6 in IPv4 (use an IPv6 backend)",
                            backend.address
                        ),
                    ));
                }
            }
            if backend.weight > MAX_WEIGHT {
                return Err(fault(
                    &["weight"],
                    format!("{} is out of range (0..={MAX_WEIGHT})", backend.weight),
                ));
            }
        }
        Ok(())
    }
}

/// `Ok` if `address` can be a VIP or a backend: unicast, not unspecified, not loopback, not
/// IPv4 broadcast, not IPv4-mapped IPv6 (write the IPv4 address instead). The message says
/// which it is.
pub fn check_unicast(address: IpAddr) -> Result<(), String> {
    let what = match address {
        a if a.is_unspecified() => "unspecified",
        a if a.is_loopback() => "a loopback address",
        a if a.is_multicast() => "a multicast address",
        IpAddr::V4(a) if a == Ipv4Addr::BROADCAST => "the broadcast address",
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            return Err(format!(
                "{a} is an IPv4-mapped IPv6 address: write {} instead",
                a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)
            ));
        }
        _ => return Ok(()),
    };
    Err(format!("{address} is {what}"))
}

fn is_prime(n: u32) -> bool {
    // In u64: a divisor's square near u32::MAX would overflow u32.
    let n = u64::from(n);
    n >= 2
        && (2..)
            .take_while(|d: &u64| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// The text being decoded, to turn byte offsets and key paths into positions.
struct Document<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Document<'_> {
    /// 1-based line and column (in characters) of byte `offset`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..floor_char_boundary(self.text, offset)];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (
            before.matches('\n').count() + 1,
            before[line_start..].chars().count() + 1,
        )
    }

    fn toml_error(&self, e: &toml::de::Error, path: String) -> LbConfigError {
        LbConfigError::Invalid(Diagnostic {
            origin: self.origin.to_owned(),
            position: e.span().map(|s| self.position(s.start)),
            path,
            // toml's messages may run to several lines; one line per error here.
            message: e.message().trim().replace('\n', "; "),
        })
    }

    /// An error at the value `steps` leads to in `root`, or at the deepest one found.
    fn at(
        &self,
        root: &DeTable<'_>,
        steps: &[Step<'_>],
        path: String,
        message: String,
    ) -> LbConfigError {
        LbConfigError::Invalid(Diagnostic {
            origin: self.origin.to_owned(),
            position: span_of(root, steps).map(|s| self.position(s)),
            path,
            message,
        })
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut i = offset.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The start of the value that `steps` leads to from `root`, or of the deepest one on the way.
fn span_of(root: &DeTable<'_>, steps: &[Step<'_>]) -> Option<usize> {
    let (Step::Key(first), rest) = steps.split_first()? else {
        return None;
    };
    let mut value = root.get(*first)?;
    for step in rest {
        let next = match step {
            Step::Key(k) => value.get_ref().get(*k),
            Step::Index(i) => value.get_ref().get(*i),
        };
        match next {
            Some(v) => value = v,
            None => break,
        }
    }
    Some(value.span().start)
}

/// serde_path_to_error's path without its `.` for the root.
fn path_string(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." { String::new() } else { s }
}

fn path_steps(path: &serde_path_to_error::Path) -> Vec<Step<'_>> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Step::Key(key)),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::None => "none",
        })
    }
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dsr => "dsr",
            Self::Ipip => "ipip",
        })
    }
}

/// The form [`Vip`]'s errors point to.
const VIP_FORM: &str = "ADDRESS:PORT/PROTO, e.g. 10.0.0.100:80/tcp or [2001:db8::1]:80/tcp";

impl FromStr for Vip {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr_port, proto) = s
            .rsplit_once('/')
            .ok_or_else(|| format!("{s:?} has no protocol: expected {VIP_FORM}"))?;
        let proto = match proto {
            "tcp" => L4Proto::Tcp,
            "udp" => L4Proto::Udp,
            _ => {
                return Err(format!(
                    "{proto:?} is not a protocol (tcp, udp) in VIP {s:?}"
                ));
            }
        };
        let (address, port) = if let Some(bracketed) = addr_port.strip_prefix('[') {
            let (inner, port) = bracketed
                .split_once("]:")
                .ok_or_else(|| format!("{s:?} has no port after the ]: expected {VIP_FORM}"))?;
            let address = inner
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{inner:?} is not an IPv6 address in VIP {s:?}"))?;
            (IpAddr::V6(address), port)
        } else {
            let (address, port) = addr_port
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?} has no port: expected {VIP_FORM}"))?;
            if address.contains(':') {
                return Err(format!(
                    "{s:?}: an IPv6 address goes in brackets, e.g. [2001:db8::1]:80/tcp"
                ));
            }
            let address = address
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("{address:?} is not an IP address in VIP {s:?}"))?;
            (IpAddr::V4(address), port)
        };
        // u16's own parser takes a leading `+`; a port is digits only.
        let port = match port.parse::<u16>() {
            Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => {
                return Err(format!(
                    "{port:?} is not a port (0-65535, 0 = all ports) in VIP {s:?}"
                ));
            }
        };
        Ok(Vip {
            address,
            port,
            proto,
        })
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.proto),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.proto),
        }
    }
}

impl TryFrom<String> for Vip {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Vip> for String {
    fn from(vip: Vip) -> String {
        vip.to_string()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// One VIP table with `vip_body` as its keys, after `head`.
    fn one_vip(head: &str, vip_body: &str) -> String {
        format!("{head}[[vip]]\n{vip_body}")
    }

    const GOOD_VIP: &str = "address = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n\
                            forwarding = \"dsr\"\nbackends = [ { address = \"10.0.1.11\" } ]\n";

    /// The error `text` draws, as printed.
    fn error(text: &str) -> String {
        match LbConfig::from_str(text, "lb.toml") {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn full_file() {
        let text = r#"
[conntrack]
capacity = 1024

[maglev]
table_size = 251

[[vip]]
address = "10.0.0.100"
port = 80
protocol = "tcp"
forwarding = "dsr"
backends = [ { address = "10.0.1.11", weight = 5 }, { address = "10.0.1.12" } ]

[[vip]]
address = "2001:db8::100"
port = 0
protocol = "udp"
forwarding = "ipip"
health = "udp"
health_port = 53
backends = [
    { address = "2001:db8:1::11", weight = 0 },
    { address = "2001:db8:1::12" },
]

[[vip]]
address = "10.0.0.101"
port = 443
protocol = "tcp"
forwarding = "ipip"
health = "none"
backends = [ { address = "2001:db8:1::13" }, { address = "10.0.1.13" } ]
"#;
        let config = LbConfig::from_str(text, "lb.toml").unwrap();
        let backend = |a: &str, weight| BackendConfig {
            address: a.parse().unwrap(),
            weight,
        };
        assert_eq!(
            config,
            LbConfig {
                vips: vec![
                    VipConfig {
                        vip: "10.0.0.100:80/tcp".parse().unwrap(),
                        forwarding: Forwarding::Dsr,
                        backends: vec![backend("10.0.1.11", 5), backend("10.0.1.12", 1)],
                        health: HealthCheck::Tcp,
                        health_port: 80,
                    },
                    VipConfig {
                        vip: "[2001:db8::100]:0/udp".parse().unwrap(),
                        forwarding: Forwarding::Ipip,
                        backends: vec![backend("2001:db8:1::11", 0), backend("2001:db8:1::12", 1)],
                        health: HealthCheck::Udp,
                        health_port: 53,
                    },
                    VipConfig {
                        vip: "10.0.0.101:443/tcp".parse().unwrap(),
                        forwarding: Forwarding::Ipip,
                        backends: vec![backend("2001:db8:1::13", 1), backend("10.0.1.13", 1)],
                        health: HealthCheck::None,
                        health_port: 443,
                    },
                ],
                conntrack: ConntrackConfig {
                    capacity: 1024,
                    tcp_idle_secs: 300,
                    udp_idle_secs: 30,
                },
                maglev: MaglevConfig { table_size: 251 },
                health: HealthConfig::default(),
            }
        );
    }

    #[test]
    fn defaults() {
        let config = LbConfig::from_str(&one_vip("", GOOD_VIP), "lb.toml").unwrap();
        assert_eq!(config.conntrack, ConntrackConfig::default());
        assert_eq!(config.maglev.table_size, 65537);
        assert_eq!(
            config.health,
            HealthConfig {
                interval_ms: 1000,
                timeout_ms: 500,
                rise: 2,
                fall: 3
            }
        );
        assert_eq!(config.vips[0].backends[0].weight, 1);
        assert_eq!(config.vips[0].health, HealthCheck::Tcp);
        // UDP and port-0 VIPs are not probed unless asked.
        let udp = GOOD_VIP.replace("\"tcp\"", "\"udp\"");
        let config = LbConfig::from_str(&one_vip("", &udp), "lb.toml").unwrap();
        assert_eq!(config.vips[0].health, HealthCheck::None);
        let all_ports = GOOD_VIP.replace("port = 80", "port = 0");
        let config = LbConfig::from_str(&one_vip("", &all_ports), "lb.toml").unwrap();
        assert_eq!(config.vips[0].health, HealthCheck::None);
        assert_eq!(config.vips[0].vip.port, 0);
    }

    #[test]
    fn decode_errors_name_file_line_column_and_path() {
        let cases = [
            (
                GOOD_VIP.replace("\" }", "\", weight = \"x\" }"),
                "lb.toml:6:48: vip[0].backends[0].weight: invalid type: string \"x\", expected u32",
            ),
            (
                GOOD_VIP.replace("\" }", "\", wieght = 1 }"),
                "lb.toml:6:39: vip[0].backends[0].wieght: unknown field `wieght`, expected \
                 `address` or `weight`",
            ),
            (
                GOOD_VIP.replace("port = 80\n", ""),
                "lb.toml:1:1: vip[0]: missing field `port`",
            ),
            (
                GOOD_VIP.replace("\"tcp\"", "\"sctp\""),
                "lb.toml:4:12: vip[0].protocol: unknown variant `sctp`, expected `udp` or `tcp`",
            ),
            (
                GOOD_VIP.replace("\"dsr\"", "\"nat\""),
                "lb.toml:5:14: vip[0].forwarding: unknown variant `nat`, expected `dsr` or `ipip`",
            ),
            (
                GOOD_VIP.replace("10.0.0.100", "10.0.0.300"),
                "lb.toml:2:11: vip[0].address: \"10.0.0.300\" is not an IP address",
            ),
            (
                GOOD_VIP.replace("10.0.1.11", "backend1"),
                "lb.toml:6:26: vip[0].backends[0].address: \"backend1\" is not an IP address",
            ),
            (
                GOOD_VIP.replace("80", "70000"),
                "lb.toml:3:8: vip[0].port: invalid value: integer `70000`, expected u16",
            ),
            (
                format!("{GOOD_VIP}helth = \"tcp\"\n"),
                "lb.toml:7:1: vip[0].helth: unknown field `helth`, expected one of `address`, \
                 `port`, `protocol`, `forwarding`, `backends`, `health`, `health_port`",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(error(&one_vip("", &body)), expected, "{body}");
        }
        let sections = [
            (
                "[maglev]\ntable_size = 65537\nsize = 2\n",
                "lb.toml:3:1: maglev.size: unknown field `size`, expected `table_size`",
            ),
            (
                "[conntrack]\ncapacity = -1\n",
                "lb.toml:2:12: conntrack.capacity: invalid value: integer `-1`, expected u32",
            ),
            (
                "[balance]\n",
                "lb.toml:1:2: balance: unknown field `balance`, expected one of `vip`, \
                 `conntrack`, `maglev`, `health`",
            ),
        ];
        for (head, expected) in sections {
            assert_eq!(error(&one_vip(head, GOOD_VIP)), expected, "{head}");
        }
        assert_eq!(
            error("vip = 3\n"),
            "lb.toml:1:7: vip: invalid type: integer `3`, expected a sequence"
        );
    }

    #[test]
    fn syntax_errors_name_file_line_column() {
        assert_eq!(
            error("[[vip]\naddress = 1"),
            "lb.toml:1:7: unclosed array table, expected `]`"
        );
        assert_eq!(
            error("\n\nx = = 1"),
            "lb.toml:3:5: extra `=`, expected nothing"
        );
        // Columns count characters, not bytes.
        assert_eq!(
            error("# é\n\"é\" = x"),
            "lb.toml:2:7: string values must be quoted, expected literal string"
        );
    }

    #[test]
    fn validation_errors_name_the_vip() {
        let two = |a: &str, b: &str| format!("[[vip]]\n{a}[[vip]]\n{b}");
        let cases = [
            (
                one_vip(
                    "",
                    &GOOD_VIP.replace("\" }", "\" }, { address = \"10.0.1.11\" }"),
                ),
                "lb.toml:6:53: vip[0] (10.0.0.100:80/tcp): backends[1].address: 10.0.1.11 is \
                 listed twice (also backends[0])",
            ),
            (
                one_vip("", &GOOD_VIP.replace("{ address = \"10.0.1.11\" }", "")),
                "lb.toml:6:12: vip[0] (10.0.0.100:80/tcp): backends: empty: the VIP could only \
                 drop its traffic",
            ),
            (
                one_vip("", &GOOD_VIP.replace("\" }", "\", weight = 0 }")),
                "lb.toml:6:12: vip[0] (10.0.0.100:80/tcp): backends: no backend with a weight \
                 above 0: the VIP could only drop its traffic",
            ),
            (
                one_vip("", &GOOD_VIP.replace("\" }", "\", weight = 1001 }")),
                "lb.toml:6:48: vip[0] (10.0.0.100:80/tcp): backends[0].weight: 1001 is out of \
                 range (0..=1000)",
            ),
            (
                two(GOOD_VIP, GOOD_VIP),
                "lb.toml:7:1: vip[1] (10.0.0.100:80/tcp): the same VIP as vip[0]",
            ),
            (
                one_vip("", &GOOD_VIP.replace("10.0.1.11", "2001:db8::11")),
                "lb.toml:6:26: vip[0] (10.0.0.100:80/tcp): backends[0].address: 2001:db8::11 is \
                 not of the VIP's address family, which dsr needs (ipip can carry IPv4 in IPv6)",
            ),
            (
                one_vip(
                    "",
                    &GOOD_VIP
                        .replace("10.0.0.100", "2001:db8::100")
                        .replace("dsr", "ipip"),
                ),
                "lb.toml:6:26: vip[0] ([2001:db8::100]:80/tcp): backends[0].address: 10.0.1.11 \
                 is IPv4: ipip does not carry IPv6 in IPv4 (use an IPv6 backend)",
            ),
            (
                one_vip(
                    "",
                    &GOOD_VIP.replace("port = 80", "port = 0\nhealth = \"tcp\""),
                ),
                "lb.toml:1:1: vip[0] (10.0.0.100:0/tcp): health_port: a VIP on every port needs \
                 a port to probe with health = \"tcp\" (set health_port, or health = \"none\")",
            ),
            ("".to_owned(), "lb.toml: vip: no [[vip]] is configured"),
            (
                one_vip("[maglev]\ntable_size = 65536\n", GOOD_VIP),
                "lb.toml:2:14: maglev.table_size: 65536 is not a prime (65537 is)",
            ),
            (
                one_vip("[maglev]\ntable_size = 3\n", GOOD_VIP),
                "lb.toml:2:14: maglev.table_size: 3 is out of range (7..=16777213)",
            ),
            (
                one_vip("[conntrack]\ncapacity = 0\n", GOOD_VIP),
                "lb.toml:2:12: conntrack.capacity: 0 is out of range (1..=16777216)",
            ),
            (
                one_vip("[conntrack]\nudp_idle_secs = 0\n", GOOD_VIP),
                "lb.toml:2:17: conntrack.udp_idle_secs: 0 is out of range (1..=86400)",
            ),
            (
                one_vip("[health]\ninterval_ms = 200\ntimeout_ms = 200\n", GOOD_VIP),
                "lb.toml:3:14: health.timeout_ms: 200 is out of range (1..200, below \
                 interval_ms)",
            ),
            (
                one_vip("[health]\nfall = 0\n", GOOD_VIP),
                "lb.toml:2:8: health.fall: 0 is out of range (1..=100)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error(&text), expected, "{text}");
        }
    }

    #[test]
    fn unusable_addresses_refused() {
        for (address, why) in [
            ("0.0.0.0", "0.0.0.0 is unspecified"),
            ("::", ":: is unspecified"),
            ("127.0.0.1", "127.0.0.1 is a loopback address"),
            ("::1", "::1 is a loopback address"),
            ("224.0.0.1", "224.0.0.1 is a multicast address"),
            ("ff02::1", "ff02::1 is a multicast address"),
            (
                "255.255.255.255",
                "255.255.255.255 is the broadcast address",
            ),
            (
                "::ffff:10.0.0.1",
                "::ffff:10.0.0.1 is an IPv4-mapped IPv6 address: write 10.0.0.1 instead",
            ),
        ] {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(check_unicast(ip), Err(why.to_owned()));
            let v4 = ip.is_ipv4();
            let (vip, backend) = if v4 {
                ("10.0.0.100", "10.0.1.11")
            } else {
                ("2001:db8::100", "2001:db8::11")
            };
            let as_vip = GOOD_VIP
                .replace("10.0.1.11", backend)
                .replace("10.0.0.100", address);
            let shown = Vip {
                address: ip,
                port: 80,
                proto: L4Proto::Tcp,
            };
            assert_eq!(
                error(&one_vip("", &as_vip)),
                format!("lb.toml:2:11: vip[0] ({shown}): address: {why}")
            );
            let as_backend = GOOD_VIP
                .replace("10.0.0.100", vip)
                .replace("10.0.1.11", address);
            let shown = Vip {
                address: vip.parse().unwrap(),
                port: 80,
                proto: L4Proto::Tcp,
            };
            assert_eq!(
                error(&one_vip("", &as_backend)),
                format!("lb.toml:6:26: vip[0] ({shown}): backends[0].address: {why}")
            );
        }
    }

    #[test]
    fn primes() {
        let primes: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537) && is_prime(MAX_MAGLEV_TABLE_SIZE) && is_prime(u32::MAX - 4));
        assert!(!is_prime(u32::MAX));
    }

    #[test]
    fn validate_without_a_file() {
        let mut config = LbConfig::from_str(&one_vip("", GOOD_VIP), "lb.toml").unwrap();
        config.vips[0].backends[0].weight = 2000;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "vip[0].backends[0].weight: 2000 is out of range (0..=1000)"
        );
    }

    #[test]
    fn from_file_names_the_path() {
        let dir = std::env::temp_dir().join(format!("sluice-lbconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lb.toml");
        std::fs::write(&path, one_vip("", &GOOD_VIP.replace("80", "\"x\""))).unwrap();
        let e = LbConfig::from_file(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:3:8: vip[0].port: invalid type: string \"x\", expected u16",
                path.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let e = LbConfig::from_file(&path).unwrap_err();
        assert_eq!(e.to_string(), format!("reading {}", path.display()));
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn vip_syntax_round_trips() {
        for s in [
            "10.0.0.100:80/tcp",
            "10.0.0.100:0/udp",
            "[2001:db8::1]:80/tcp",
            "[::ffff:10.0.0.1]:65535/udp",
        ] {
            let vip: Vip = s.parse().unwrap();
            assert_eq!(vip.to_string(), s);
        }
        assert_eq!(
            "[2001:db8::1]:443/tcp".parse::<Vip>(),
            Ok(Vip {
                address: "2001:db8::1".parse().unwrap(),
                port: 443,
                proto: L4Proto::Tcp
            })
        );
        let json = serde_json::to_string(&Vip::from_str("10.0.0.1:53/udp").unwrap()).unwrap();
        assert_eq!(json, "\"10.0.0.1:53/udp\"");
        assert_eq!(
            serde_json::from_str::<Vip>(&json).unwrap().to_string(),
            "10.0.0.1:53/udp"
        );
    }

    #[test]
    fn vip_syntax_errors() {
        let form = "ADDRESS:PORT/PROTO, e.g. 10.0.0.100:80/tcp or [2001:db8::1]:80/tcp";
        for (s, expected) in [
            (
                "10.0.0.1:80",
                format!("\"10.0.0.1:80\" has no protocol: expected {form}"),
            ),
            (
                "10.0.0.1/tcp",
                format!("\"10.0.0.1/tcp\" has no port: expected {form}"),
            ),
            (
                "10.0.0.1:80/sctp",
                "\"sctp\" is not a protocol (tcp, udp) in VIP \"10.0.0.1:80/sctp\"".into(),
            ),
            (
                "10.0.0.1:80/TCP",
                "\"TCP\" is not a protocol (tcp, udp) in VIP \"10.0.0.1:80/TCP\"".into(),
            ),
            (
                "10.0.0.1:65536/tcp",
                "\"65536\" is not a port (0-65535, 0 = all ports) in VIP \"10.0.0.1:65536/tcp\""
                    .into(),
            ),
            (
                "10.0.0.1:+80/tcp",
                "\"+80\" is not a port (0-65535, 0 = all ports) in VIP \"10.0.0.1:+80/tcp\"".into(),
            ),
            (
                "10.0.0.1:/tcp",
                "\"\" is not a port (0-65535, 0 = all ports) in VIP \"10.0.0.1:/tcp\"".into(),
            ),
            (
                "10.0.0.256:80/tcp",
                "\"10.0.0.256\" is not an IP address in VIP \"10.0.0.256:80/tcp\"".into(),
            ),
            (
                "2001:db8::1:80/tcp",
                "\"2001:db8::1:80/tcp\": an IPv6 address goes in brackets, e.g. \
                 [2001:db8::1]:80/tcp"
                    .into(),
            ),
            (
                "[2001:db8::1]/tcp",
                format!("\"[2001:db8::1]/tcp\" has no port after the ]: expected {form}"),
            ),
            (
                "[10.0.0.1]:80/tcp",
                "\"10.0.0.1\" is not an IPv6 address in VIP \"[10.0.0.1]:80/tcp\"".into(),
            ),
            (
                "[fe80::1%2]:80/tcp",
                "\"fe80::1%2\" is not an IPv6 address in VIP \"[fe80::1%2]:80/tcp\"".into(),
            ),
        ] {
            assert_eq!(s.parse::<Vip>(), Err(expected), "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn vip_display_from_str_round_trips(
            v4 in proptest::prelude::any::<[u8; 4]>(),
            v6 in proptest::prelude::any::<[u8; 16]>(),
            use_v6: bool,
            port: u16,
            tcp: bool,
        ) {
            let address = if use_v6 { IpAddr::from(v6) } else { IpAddr::from(v4) };
            let proto = if tcp { L4Proto::Tcp } else { L4Proto::Udp };
            let vip = Vip { address, port, proto };
            proptest::prop_assert_eq!(vip.to_string().parse::<Vip>(), Ok(vip));
        }
    }
}
