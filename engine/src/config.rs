//! One typed configuration for an engine, checked in one place.
//!
//! [`EngineConfig`] holds every setting of `sluice run` as a typed value; the CLI builds it from
//! its flags (`TryFrom<&RunArgs>`), a library user with the builder methods. [`EngineConfig::validate`]
//! checks every value that can be checked without looking at the system; what depends on the
//! host (does the interface exist, how many queues, privileges, locked memory) is checked when
//! the engine starts. Settings are named as `sluice run`'s long flags (`rx-ring`,
//! `stats-interval`), so an error names the same thing in every front end.

use crate::control::{CtlLimits, metrics};
use crate::steer::{Action, L4Proto, PortList, Rule, XdpMode};
use crate::xsk::{MAX_PORTS, XskConfig, XskError};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Which queues get a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueSpec {
    /// Queues 0..N.
    Count(u32),
    /// Every RX queue the device has.
    All,
}

impl FromStr for QueueSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(QueueSpec::All);
        }
        match s.parse::<u32>() {
            Ok(0) => Err("must be at least 1".into()),
            Ok(n) => Ok(QueueSpec::Count(n)),
            Err(_) => Err(format!("{s:?} is neither a number nor `all`")),
        }
    }
}

impl fmt::Display for QueueSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueSpec::All => f.write_str("all"),
            QueueSpec::Count(n) => write!(f, "{n}"),
        }
    }
}

/// A setting with a value it cannot have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --{field}: {reason}")]
pub struct ConfigError {
    /// The setting, named as `sluice run`'s long flag without the dashes (`rx-ring`).
    pub field: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl ConfigError {
    /// `field` is wrong because of `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}

/// Everything an engine needs to know to run, as typed values.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The interfaces to attach to ("ports"), in port order: port 0 first. Each worker serves
    /// the same queue index on every port, with one UMEM shared by those sockets.
    pub ifaces: Vec<String>,
    /// Steering rules: (protocol, destination port) → redirect into the workers.
    pub rules: Vec<Rule>,
    /// Forwarding mode instead of rules: every IPv4/IPv6 frame the kernel's own FIB would
    /// forward (to a resolved neighbour) goes to the workers; everything else — ARP/ND,
    /// traffic for the host, unresolved neighbours, no route — stays with the kernel. The
    /// engine then also keeps a forwarding table built from the kernel's (for the app) and a
    /// path back into the kernel's stack ([`crate::worker::KernelPath`]).
    pub forward: bool,
    /// Load balancing: the `lb` app's configuration file. Its VIPs are steered into the
    /// workers (no rules); everything else stays with the kernel. The engine also keeps a
    /// forwarding table (next hops towards the backends) and the balancer's control side
    /// (VIP and backend changes, health checks, reload).
    pub lb: Option<PathBuf>,
    /// Authoritative DNS: the zone files the `dns` app answers from (RFC 1035 master files).
    /// Its one UDP rule is the port it serves; TCP on the same port is served by a kernel
    /// socket of the control plane.
    pub dns: Vec<PathBuf>,
    /// Which RX queues get a worker.
    pub queues: QueueSpec,
    /// CPUs for the workers, in queue order; `None` spreads them over the affinity mask.
    pub cores: Option<Vec<usize>>,
    /// How to attach the XDP program.
    pub xdp_mode: XdpMode,
    /// UMEM, ring sizes, batch size and bind mode of every queue's socket.
    pub xsk: XskConfig,
    /// Workers never sleep (lowest latency, a full core each).
    pub busy_poll: bool,
    /// Time between stats lines; `None` prints only the final totals.
    pub stats_interval: Option<Duration>,
    /// Stats as JSON lines instead of text.
    pub json: bool,
    /// Group whose members may change the running engine over the control socket.
    pub admin_group: Option<String>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// What control socket clients may hold (`--ctl-max-connections`, `--ctl-admin-reserve`,
    /// `--ctl-max-per-user`, `--ctl-idle-timeout`).
    pub ctl: CtlLimits,
    /// What metrics clients may hold (`--metrics-max-connections`,
    /// `--metrics-max-per-address`, `--metrics-header-timeout`).
    pub metrics_limits: metrics::Limits,
    /// User to switch to after start-up.
    pub user: Option<String>,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Take the data plane over from the engine serving these interfaces (a hot upgrade)
    /// instead of attaching afresh.
    pub takeover: bool,
}

impl EngineConfig {
    /// Defaults for `iface`: no rules yet, every queue, auto XDP and bind modes, the default
    /// ring sizes, stats every second.
    pub fn new(iface: impl Into<String>) -> Self {
        EngineConfig {
            ifaces: vec![iface.into()],
            rules: Vec::new(),
            forward: false,
            lb: None,
            dns: Vec::new(),
            queues: QueueSpec::All,
            cores: None,
            xdp_mode: XdpMode::Auto,
            xsk: XskConfig::default(),
            busy_poll: false,
            stats_interval: Some(Duration::from_secs(1)),
            json: false,
            admin_group: None,
            metrics: None,
            ctl: CtlLimits::default(),
            metrics_limits: metrics::Limits::default(),
            user: None,
            duration: None,
            takeover: false,
        }
    }

    /// Serve `iface` too, as the next port.
    pub fn port(mut self, iface: impl Into<String>) -> Self {
        self.ifaces.push(iface.into());
        self
    }

    /// The first port's interface (the one a single-interface engine serves).
    pub fn iface(&self) -> &str {
        &self.ifaces[0]
    }

    /// Steer these destination ports of `proto` into the workers.
    pub fn steer(mut self, proto: L4Proto, ports: &PortList) -> Self {
        self.rules.extend(ports.0.iter().map(|&port| Rule {
            proto,
            port,
            action: Action::Redirect,
        }));
        self
    }

    /// Forward (see [`EngineConfig::forward`]) instead of steering by rules.
    pub fn forwarding(mut self) -> Self {
        self.forward = true;
        self
    }

    /// Load-balance with the configuration file at `path` (see [`EngineConfig::lb`]).
    pub fn load_balancing(mut self, path: impl Into<PathBuf>) -> Self {
        self.lb = Some(path.into());
        self
    }

    /// Serve DNS from the zone file at `path` (repeat for more zones) on UDP `port` (see
    /// [`EngineConfig::dns`]).
    pub fn dns_zone(mut self, path: impl Into<PathBuf>, port: u16) -> Self {
        self.dns.push(path.into());
        if !self
            .rules
            .iter()
            .any(|r| r.proto == L4Proto::Udp && r.port == port)
        {
            self.rules.push(Rule {
                proto: L4Proto::Udp,
                port,
                action: Action::Redirect,
            });
        }
        self
    }

    /// The UDP (and TCP) port the dns app serves, if the engine answers DNS.
    pub fn dns_port(&self) -> Option<u16> {
        if self.dns.is_empty() {
            return None;
        }
        self.rules
            .iter()
            .find(|r| r.proto == L4Proto::Udp)
            .map(|r| r.port)
    }

    /// Run workers on the first `n` RX queues instead of all.
    pub fn queues(mut self, n: u32) -> Self {
        self.queues = QueueSpec::Count(n);
        self
    }

    /// Stop after `d` (as if sent SIGTERM).
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = Some(d);
        self
    }

    /// Stats every `d`; `None` for only the final totals.
    pub fn stats_interval(mut self, d: Option<Duration>) -> Self {
        self.stats_interval = d;
        self
    }

    /// Check every value that can be checked without the host; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ifaces.is_empty() || self.ifaces.len() > MAX_PORTS {
            return Err(ConfigError::new(
                "iface",
                format!(
                    "{} interfaces given; an engine serves 1 to {MAX_PORTS}",
                    self.ifaces.len()
                ),
            ));
        }
        for (i, name) in self.ifaces.iter().enumerate() {
            if name.is_empty() || name.len() >= 16 || name.contains(['/', '\0']) {
                return Err(ConfigError::new(
                    "iface",
                    format!("{name:?} is not an interface name"),
                ));
            }
            if self.ifaces[..i].contains(name) {
                return Err(ConfigError::new("iface", format!("{name} is given twice")));
            }
        }
        self.xsk.validate().map_err(|e| match e {
            XskError::Config { field, reason } => ConfigError::new(setting_of(field), reason),
            other => ConfigError::new("iface", other.to_string()),
        })?;
        if !self.dns.is_empty() {
            if self.forward || self.lb.is_some() {
                return Err(ConfigError::new(
                    "app",
                    "an engine answers DNS, forwards or load-balances: one of them",
                ));
            }
            let udp = self
                .rules
                .iter()
                .filter(|r| r.proto == L4Proto::Udp)
                .count();
            if udp != 1 || self.rules.len() != 1 {
                return Err(ConfigError::new(
                    "udp",
                    "the dns app serves one UDP port (default 53; TCP on the same port goes \
                     through the kernel): give at most one --udp PORT and no --tcp",
                ));
            }
        }
        if self.forward && !self.rules.is_empty() {
            return Err(ConfigError::new(
                "udp",
                "forwarding steers every forwardable packet: --udp/--tcp do not apply",
            ));
        }
        if self.lb.is_some() && self.forward {
            return Err(ConfigError::new(
                "app",
                "an engine either forwards or load-balances, not both",
            ));
        }
        if self.lb.is_some() && !self.rules.is_empty() {
            return Err(ConfigError::new(
                "udp",
                "the lb app steers its VIPs (from --lb-config): --udp/--tcp do not apply",
            ));
        }
        if !self.forward && self.lb.is_none() && self.rules.is_empty() {
            return Err(ConfigError::new(
                "udp",
                "nothing to steer: give --udp PORTS and/or --tcp PORTS",
            ));
        }
        if let Some(p) = self.rules.iter().find(|r| r.port == 0) {
            return Err(ConfigError::new(
                if p.proto == L4Proto::Udp {
                    "udp"
                } else {
                    "tcp"
                },
                "port 0 cannot be steered",
            ));
        }
        if let Some(c) = &self.cores
            && c.is_empty()
        {
            return Err(ConfigError::new("cores", "an empty CPU list"));
        }
        if self.stats_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "stats-interval",
                "0 means no interval: leave it unset",
            ));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "duration",
                "must be a positive number of seconds",
            ));
        }
        self.ctl
            .check()
            .and_then(|()| self.metrics_limits.check())
            .map_err(|(field, reason)| ConfigError::new(field, reason))?;
        Ok(())
    }
}

/// The setting (flag) name of an [`XskConfig`] field.
fn setting_of(xsk_field: &'static str) -> &'static str {
    match xsk_field {
        "frame_size" => "frame-size",
        "frame_count" => "frame-count",
        "fill_size" => "fill-ring",
        "comp_size" => "comp-ring",
        "rx_size" => "rx-ring",
        "tx_size" => "tx-ring",
        "tx_budget" => "tx-budget",
        "headroom" => "frame-headroom",
        "napi_busy_poll" => "napi-busy-poll",
        other => other,
    }
}

/// Seconds given as a float, checked: finite and not negative.
pub fn seconds(field: &'static str, secs: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| ConfigError::new(field, format!("{secs} is not a number of seconds >= 0")))
}

#[cfg(test)]
mod test {
    use super::*;

    fn base() -> EngineConfig {
        EngineConfig::new("veth0").steer(L4Proto::Udp, &"9000".parse().unwrap())
    }

    #[test]
    fn defaults_with_a_rule_are_valid() {
        base().validate().unwrap();
        let c = base().steer(L4Proto::Tcp, &"80,81".parse().unwrap());
        assert_eq!(c.rules.len(), 3);
        assert_eq!(c.rules[2].port, 81);
    }

    #[test]
    fn errors_name_the_setting() {
        let e = EngineConfig::new("veth0").validate().unwrap_err();
        assert_eq!(e.field, "udp");
        assert!(e.to_string().contains("nothing to steer"), "{e}");
        let mut c = base();
        c.xsk.rx_size = 1000;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid --rx-ring: 1000 is not a power of two"
        );
        let mut c = base();
        c.xsk.headroom = 1500;
        assert_eq!(c.validate().unwrap_err().field, "frame-headroom");
        let c =
            EngineConfig::new("a-name-longer-than-15").steer(L4Proto::Udp, &"1".parse().unwrap());
        assert_eq!(c.validate().unwrap_err().field, "iface");
        let c = base().forwarding();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("do not apply")
        );
        EngineConfig::new("veth0").forwarding().validate().unwrap();
        EngineConfig::new("veth0")
            .load_balancing("lb.toml")
            .validate()
            .unwrap();
        let e = base().load_balancing("lb.toml").validate().unwrap_err();
        assert_eq!(e.field, "udp");
        let e = EngineConfig::new("veth0")
            .forwarding()
            .load_balancing("lb.toml")
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "app");
        let c = EngineConfig::new("veth0").dns_zone("a.zone", 53);
        c.validate().unwrap();
        assert_eq!(c.dns_port(), Some(53));
        let e = c
            .clone()
            .steer(L4Proto::Tcp, &"53".parse().unwrap())
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "udp");
        let e = c.clone().forwarding().validate().unwrap_err();
        assert_eq!(e.field, "app");
        let c = base().port("veth1").port("veth0");
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid --iface: veth0 is given twice"
        );
        let c = base().port("veth1");
        c.validate().unwrap();
        assert_eq!((c.iface(), c.ifaces.len()), ("veth0", 2));
        let mut c = base();
        c.ifaces = (0..9).map(|i| format!("v{i}")).collect();
        assert!(c.validate().unwrap_err().to_string().contains("1 to 8"));
        let c = base().duration(Duration::ZERO);
        assert_eq!(c.validate().unwrap_err().field, "duration");
        let c = base().stats_interval(Some(Duration::ZERO));
        assert_eq!(c.validate().unwrap_err().field, "stats-interval");
        let mut c = base();
        c.cores = Some(vec![]);
        assert_eq!(c.validate().unwrap_err().field, "cores");
    }

    #[test]
    fn seconds_are_checked() {
        assert_eq!(seconds("x", 1.5).unwrap(), Duration::from_millis(1500));
        assert!(seconds("x", -1.0).is_err());
        assert!(
            seconds("x", f64::NAN)
                .unwrap_err()
                .to_string()
                .contains("--x")
        );
    }

    #[test]
    fn queue_specs() {
        assert_eq!("all".parse::<QueueSpec>().unwrap(), QueueSpec::All);
        assert_eq!("4".parse::<QueueSpec>().unwrap(), QueueSpec::Count(4));
        assert!("0".parse::<QueueSpec>().is_err());
        assert!("many".parse::<QueueSpec>().is_err());
        assert_eq!(QueueSpec::Count(3).to_string(), "3");
    }
}
