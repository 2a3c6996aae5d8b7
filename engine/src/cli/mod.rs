//! The clap front end: `sluice run ...`.
//!
//! Parsing only: the flags become an [`EngineConfig`], which checks every value, and an error
//! names the flag.

pub mod ctl;
pub mod endpoints;
pub mod file;

use crate::config::{self, ConfigError, EngineConfig, QueueSpec};
use crate::steer::{L4Proto, PortList, XdpMode};
use crate::xsk::{BindMode, MAX_BATCH, XskConfig};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A clap parser for a library enum that knows its `names` and parses with `FromStr`: clap's
/// help and errors list the names, and the library type needs no clap derive.
fn one_of<T>(names: [&'static str; 3]) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: fmt::Debug,
{
    PossibleValuesParser::new(names).map(|s| s.parse::<T>().expect("a possible value parses"))
}

/// sluice: steer UDP/TCP flows into AF_XDP sockets and process them on pinned workers.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process: the size does not matter
pub enum Command {
    /// Steer UDP/TCP ports of an interface into per-queue workers until SIGINT/SIGTERM.
    ///
    /// Attaches the XDP program, binds one AF_XDP socket per RX queue and runs one pinned worker
    /// on each until SIGINT/SIGTERM (or --duration); then detaches and prints the totals.
    /// Needs root, or CAP_NET_ADMIN + CAP_NET_RAW + CAP_BPF (CAP_SYS_ADMIN instead of CAP_BPF
    /// works too), and CAP_IPC_LOCK when the UMEMs exceed `ulimit -l`.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Talk to a running engine over its control socket: status, stats, rules, the kernel's
    /// links/addresses/neighbours/routes as the engine mirrors them, the load balancer's VIPs
    /// and backends, reload, shutdown.
    Ctl(ctl::CtlArgs),
    /// Check a run configuration file (`sluice run --config FILE`) without running anything:
    /// every key and value, the settings together, and the lb file and zone files it names.
    /// Prints `FILE: ok` and what it would run, or the first error (file:line:column: key).
    CheckConfig(CheckConfigArgs),
}

/// Arguments of `sluice check-config`.
#[derive(Args, Debug, Clone)]
pub struct CheckConfigArgs {
    /// The run configuration file (TOML; keys are the long flags of `sluice run`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Why the command line could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// clap's own error (also `--help` and `--version`): print it with [`clap::Error::exit`].
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The run configuration file is unreadable or wrong.
    #[error(transparent)]
    File(#[from] file::FileError),
}

/// Parse `argv` (program name first). For `run --config FILE`, the file's keys stand in for
/// every flag the command line does not give: flags override the file.
pub fn parse_from<I, T>(argv: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let (Command::Run(args), Some(("run", sub))) = (&cli.command, matches.subcommand()) else {
        return Ok(cli);
    };
    let Some(path) = &args.config else {
        return Ok(cli);
    };
    let run_file = file::RunFile::load(path)?;
    let mut all = argv;
    all.extend(
        run_file.tokens_not_given(|id| sub.value_source(id) == Some(ValueSource::CommandLine)),
    );
    Ok(Cli::try_parse_from(all)?)
}

const RUN_EXAMPLES: &str = "\
Examples:
  sluice run --iface eth1 --udp 9000                  reflect UDP port 9000 on every queue
  sluice run --iface eth1 --app drop --udp 1-65535    count and drop all UDP (rxdrop)
  sluice run --iface veth0 --udp 7,9000-9010 --tcp 8080 --queues 2 --cores 0,1
  sluice run --iface eth1 --udp 9000 --json --stats-interval 5
  sluice run --iface eth1 --iface eth2 --app forward  route between eth1 and eth2
  sluice run --iface eth0 --app lb --lb-config lb.toml   load-balance the VIPs of lb.toml
  sluice run --iface eth0 --app dns --zone example.com.zone   authoritative DNS on port 53
  sluice run --config /etc/sluice/edge.toml           the flags from a file (keys = long flags)
  sluice run --config edge.toml --duration 10         flags override the file

Frames not matching a rule, and frames on a queue without a worker, go on to the kernel.";

/// The packet function to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AppKind {
    /// Swap MACs, IP addresses and ports and send every frame back out (UDP/TCP echo).
    Reflect,
    /// Count and drop every steered frame (the rxdrop benchmark).
    Drop,
    /// Send every frame out of the partner port unchanged (port 0 <-> 1, 2 <-> 3; give two
    /// --iface): a patch cable, the port-to-port forwarding baseline.
    Patch,
    /// An IPv4/IPv6 router over the kernel's own tables: every packet the kernel would forward
    /// between the --iface ports goes through sluice (MACs rewritten, TTL decremented, ICMP
    /// time exceeded / fragmentation needed / packet too big / unreachable sent, rate-limited);
    /// ARP/ND, traffic for the host and unresolved neighbours stay with the kernel. Needs IP
    /// forwarding on (net.ipv4.conf.*.forwarding, net.ipv6.conf.*.forwarding). No --udp/--tcp.
    Forward,
    /// An L4 load balancer: packets to the VIPs in --lb-config go to a backend chosen by Maglev
    /// hashing and kept per connection, by MAC rewrite (DSR) or IPIP encapsulation; the rest
    /// stays with the kernel. Change it live with `sluice ctl vips|backends|reload`, or SIGHUP.
    /// No --udp/--tcp.
    Lb,
    /// An authoritative DNS server for the zones given with --zone: UDP queries on the fast
    /// path (port 53, or the one --udp PORT), TCP on the same port through a kernel socket.
    /// Change the zone files and reload with SIGHUP or `sluice ctl reload`.
    Dns,
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppKind::Reflect => "reflect",
            AppKind::Drop => "drop",
            AppKind::Patch => "patch",
            AppKind::Forward => "forward",
            AppKind::Lb => "lb",
            AppKind::Dns => "dns",
        })
    }
}

/// Arguments of `sluice run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// A run configuration file (TOML): each key is one of these long flags without the dashes,
    /// with the same value syntax (`udp = "9000,9100-9110"`, `iface = ["eth0", "eth1"]`,
    /// `busy-poll = true`). Flags given here override the file's keys. Check a file with
    /// `sluice check-config FILE`.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Interface to attach to (must exist and be up). Repeat it to serve several interfaces
    /// ("ports", numbered in the order given): each worker then owns the same queue on every
    /// port, with one UMEM shared by those sockets, so an app can send a frame received on one
    /// port out of another without a copy. Required, here or in --config.
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: Vec<String>,

    /// Packet function run on the steered frames.
    #[arg(long, value_enum, default_value_t = AppKind::Reflect)]
    pub app: AppKind,

    /// With --app lb: the load balancer's configuration file (TOML: `[[vip]]` tables with
    /// address, port, protocol, forwarding, backends; see the README). Re-read on SIGHUP or
    /// `sluice ctl reload`. (Before the run configuration file took --config, this was
    /// --config.)
    #[arg(long, value_name = "FILE")]
    pub lb_config: Option<PathBuf>,

    /// With --app dns: a zone file (RFC 1035 master file) to serve; repeat for more zones.
    #[arg(long, value_name = "FILE")]
    pub zone: Vec<std::path::PathBuf>,

    /// UDP destination ports to steer: comma-separated ports or ranges (`9000,9100-9110`).
    #[arg(long, value_name = "PORTS")]
    pub udp: Option<PortList>,

    /// TCP destination ports to steer, same syntax as --udp.
    #[arg(long, value_name = "PORTS")]
    pub tcp: Option<PortList>,

    /// How many RX queues get a worker (queues 0..N), or `all` of the device's queues.
    #[arg(long, value_name = "N|all", default_value = "all")]
    pub queues: QueueSpec,

    /// CPUs for the workers, one per queue in order (`0,2-3`). Default: spread over the CPUs
    /// this process may use (its affinity mask), wrapping around if there are more queues.
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,

    /// XDP attach mode: driver (native), skb (generic), or auto (driver, then skb, logged).
    #[arg(long, default_value_t = XdpMode::Auto, value_parser = one_of::<XdpMode>(XdpMode::NAMES))]
    pub xdp_mode: XdpMode,

    /// AF_XDP bind mode: zerocopy, copy, or auto (zero-copy, then copy, logged).
    #[arg(long, default_value_t = BindMode::Auto, value_parser = one_of::<BindMode>(BindMode::NAMES))]
    pub bind: BindMode,

    /// Frames one TX kick may send in copy mode (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+; 32 to the
    /// TX ring size). Default: the kernel's 32.
    #[arg(long, value_name = "N")]
    pub tx_budget: Option<u32>,

    /// Preferred busy polling: the worker drives the device's NAPI itself through its socket
    /// (SO_PREFER_BUSY_POLL, SO_BUSY_POLL=USECS, SO_BUSY_POLL_BUDGET=--batch), for a worker
    /// that shares its core with the queue's interrupt/NAPI. Usually with --busy-poll.
    #[arg(long, value_name = "USECS")]
    pub napi_busy_poll: Option<u32>,

    /// Frames per batch (1-256).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    pub batch: u32,

    /// With --app forward or lb: ICMP errors each worker may send per second (token bucket
    /// refill).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub icmp_rate: u32,

    /// With --app forward or lb: ICMP errors each worker may send at once (token bucket size).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub icmp_burst: u32,

    /// Keep polling when idle instead of sleeping in poll(): lowest latency, one full core per
    /// worker.
    #[arg(long)]
    pub busy_poll: bool,

    /// Seconds between stats lines (0 = only the final totals).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub stats_interval: f64,

    /// Print stats as one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,

    /// Members of this group may change the running engine through `sluice ctl` (rules,
    /// shutdown) besides root; anyone may read.
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Option<String>,

    /// --metrics and the limits of the control socket and the metrics endpoint (boxed: they
    /// would make every `Command` as large as `run`'s flags).
    #[command(flatten)]
    pub endpoints: Box<endpoints::EndpointArgs>,

    /// Switch to this user (its uid and primary group) once start-up is done. Capabilities are
    /// dropped after start-up in any case.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Stop by itself after this many seconds (as if sent SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Hot upgrade: take the data plane over from the sluice serving these interfaces (same
    /// interfaces, queues, frame and ring sizes, app), without detaching XDP or losing frames;
    /// that engine exits 0. Every app: forward keeps its TAP device, dns its TCP listener, and
    /// the same --metrics address its listener; --lb-config and --zone files are read anew
    /// (this engine's apply). If the hand-over fails it keeps serving and this one exits
    /// non-zero.
    #[arg(long)]
    pub takeover: bool,

    /// UMEM frame size in bytes: 2048 holds frames up to 1792 bytes (MTU 1774 with a VLAN
    /// tag), 4096 up to 3840 (copy mode reserves 256 bytes of headroom).
    #[arg(long, default_value_t = 2048, help_heading = "Ring and UMEM sizes")]
    pub frame_size: u32,

    /// UMEM frames per queue (power of two).
    #[arg(long, default_value_t = 8192, help_heading = "Ring and UMEM sizes")]
    pub frame_count: u32,

    /// Bytes left free in front of every received frame, for apps that prepend headers (the
    /// kernel's own 256 bytes of XDP headroom come on top).
    #[arg(long, default_value_t = 0, help_heading = "Ring and UMEM sizes")]
    pub frame_headroom: u32,

    /// Prefetch the headers of every frame of a batch before the app runs.
    #[arg(long, help_heading = "Ring and UMEM sizes")]
    pub prefetch: bool,

    /// Fill ring entries (power of two).
    #[arg(long, default_value_t = 8192, help_heading = "Ring and UMEM sizes")]
    pub fill_ring: u32,

    /// Completion ring entries (power of two).
    #[arg(long, default_value_t = 2048, help_heading = "Ring and UMEM sizes")]
    pub comp_ring: u32,

    /// RX ring entries (power of two).
    #[arg(long, default_value_t = 4096, help_heading = "Ring and UMEM sizes")]
    pub rx_ring: u32,

    /// TX ring entries (power of two).
    #[arg(long, default_value_t = 2048, help_heading = "Ring and UMEM sizes")]
    pub tx_ring: u32,
}

impl RunArgs {
    /// The AF_XDP sizes and mode these arguments ask for (not yet validated).
    pub fn xsk_config(&self) -> XskConfig {
        XskConfig {
            frame_size: self.frame_size,
            frame_count: self.frame_count,
            fill_size: self.fill_ring,
            comp_size: self.comp_ring,
            rx_size: self.rx_ring,
            tx_size: self.tx_ring,
            batch: self.batch,
            bind: self.bind,
            tx_budget: self.tx_budget,
            napi_busy_poll: self.napi_busy_poll.map(|usecs| crate::xsk::NapiBusyPoll {
                usecs,
                budget: self.batch,
            }),
            headroom: self.frame_headroom,
            prefetch: self.prefetch,
            // Turned on by the start-up checks for an MTU that needs it.
            multi_buffer: false,
        }
    }
}

impl TryFrom<&RunArgs> for EngineConfig {
    type Error = ConfigError;

    /// The engine configuration these flags ask for, validated.
    fn try_from(a: &RunArgs) -> Result<Self, ConfigError> {
        let Some(first) = a.iface.first() else {
            return Err(ConfigError::new(
                "iface",
                "no interface: give --iface IF (or `iface` in the --config file)",
            ));
        };
        let mut c = EngineConfig::new(first.clone());
        for port in &a.iface[1..] {
            c = c.port(port.clone());
        }
        match (a.app, a.zone.is_empty()) {
            (AppKind::Dns, true) => {
                return Err(ConfigError::new(
                    "zone",
                    "--app dns needs at least one --zone FILE",
                ));
            }
            (AppKind::Dns, false) => {
                let port = match &a.udp {
                    None => 53,
                    Some(p) if p.0.len() == 1 => p.0[0],
                    Some(_) => {
                        return Err(ConfigError::new(
                            "udp",
                            "the dns app serves one UDP port: give one --udp PORT",
                        ));
                    }
                };
                for z in &a.zone {
                    c = c.dns_zone(z.clone(), port);
                }
            }
            (_, false) => {
                return Err(ConfigError::new("zone", "only --app dns serves zones"));
            }
            (_, true) => {
                if let Some(p) = &a.udp {
                    c = c.steer(L4Proto::Udp, p);
                }
            }
        }
        if let Some(p) = &a.tcp {
            c = c.steer(L4Proto::Tcp, p);
        }
        c.forward = a.app == AppKind::Forward;
        match (a.app, &a.lb_config) {
            (AppKind::Lb, Some(path)) => c.lb = Some(path.clone()),
            (AppKind::Lb, None) => {
                return Err(ConfigError::new(
                    "lb-config",
                    "--app lb needs --lb-config FILE (its VIPs and backends)",
                ));
            }
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    "lb-config",
                    "only --app lb reads a load balancer file",
                ));
            }
            (_, None) => {}
        }
        c.queues = a.queues;
        c.cores = match &a.cores {
            Some(list) => Some(
                crate::worker::parse_cpu_list(list)
                    .map_err(|reason| ConfigError::new("cores", reason))?,
            ),
            None => None,
        };
        c.xdp_mode = a.xdp_mode;
        c.xsk = a.xsk_config();
        c.busy_poll = a.busy_poll;
        // 0 keeps its documented meaning: no periodic lines, only the final totals.
        let every = config::seconds("stats-interval", a.stats_interval)?;
        c.stats_interval = (!every.is_zero()).then_some(every);
        c.json = a.json;
        c.admin_group = a.admin_group.clone();
        (c.metrics, c.ctl, c.metrics_limits) = a.endpoints.to_config()?;
        c.takeover = a.takeover;
        c.user = a.user.clone();
        c.duration = match a.duration {
            Some(d) => Some(config::seconds("duration", d)?),
            None => None,
        };
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn run_parses_full_command_line() {
        let cli = Cli::try_parse_from([
            "sluice",
            "run",
            "--iface",
            "veth0",
            "--app",
            "drop",
            "--udp",
            "9000-9001",
            "--tcp",
            "80",
            "--queues",
            "2",
            "--cores",
            "0,1",
            "--xdp-mode",
            "skb",
            "--bind",
            "copy",
            "--batch",
            "32",
            "--busy-poll",
            "--stats-interval",
            "0.5",
            "--json",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(a.iface, ["veth0"]);
        assert_eq!(a.app, AppKind::Drop);
        assert_eq!(a.udp.unwrap().0, vec![9000, 9001]);
        assert_eq!(a.queues, QueueSpec::Count(2));
        assert_eq!(a.xdp_mode, XdpMode::Skb);
        assert_eq!(a.bind, BindMode::Copy);
        assert_eq!(a.batch, 32);
        assert!(a.busy_poll && a.json);
    }

    #[test]
    fn kernel_tuning_flags_reach_the_socket_config() {
        let cli = Cli::try_parse_from([
            "sluice",
            "run",
            "-i",
            "x",
            "--tx-budget",
            "256",
            "--napi-busy-poll",
            "20",
            "--batch",
            "32",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("expected run")
        };
        let c = a.xsk_config();
        assert_eq!(c.tx_budget, Some(256));
        assert_eq!(
            c.napi_busy_poll,
            Some(crate::xsk::NapiBusyPoll {
                usecs: 20,
                budget: 32
            })
        );
        let cli = Cli::try_parse_from(["sluice", "run", "-i", "x"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(
            (a.xsk_config().tx_budget, a.xsk_config().napi_busy_poll),
            (None, None)
        );
    }

    #[test]
    fn iface_repeats_into_ports() {
        let cli = Cli::try_parse_from(["sluice", "run", "-i", "a", "--iface", "b", "--udp", "1"])
            .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("expected run")
        };
        let c = EngineConfig::try_from(&a).unwrap();
        assert_eq!(c.ifaces, ["a", "b"]);
        let cli = Cli::try_parse_from(["sluice", "run", "--udp", "1"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(
            EngineConfig::try_from(&a).unwrap_err().field,
            "iface",
            "--iface is required (on the command line or in the file)"
        );
    }

    #[test]
    fn run_config_file_fills_in_what_flags_do_not_give() {
        let dir = std::env::temp_dir().join(format!("sluice-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        std::fs::write(
            &path,
            "iface = [\"a\", \"b\"]\nudp = \"9000,9100-9110\"\nbatch = 32\nbusy-poll = true\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let run = |argv: &[&str]| match parse_from(argv).map(|c| c.command) {
            Ok(Command::Run(a)) => Ok(a),
            Ok(_) => panic!("expected run"),
            Err(e) => Err(e.to_string()),
        };
        let a = run(&["sluice", "run", "--config", p]).unwrap();
        assert_eq!(a.iface, ["a", "b"]);
        assert_eq!((a.batch, a.busy_poll), (32, true));
        assert_eq!(a.udp.as_ref().unwrap().0.len(), 12);
        EngineConfig::try_from(&a).unwrap();
        // Flags override the file; a repeatable flag replaces the file's whole array.
        let a = run(&["sluice", "run", "-c", p, "--iface", "x", "--batch", "8"]).unwrap();
        assert_eq!(a.iface, ["x"]);
        assert_eq!(a.batch, 8);
        assert_eq!(
            a.udp.as_ref().unwrap().0.len(),
            12,
            "the rest still comes from the file"
        );
        std::fs::write(&path, "iface = \"a\"\nqueues = \"many\"\n").unwrap();
        let e = run(&["sluice", "run", "--config", p]).unwrap_err();
        assert!(
            e.starts_with(&format!("{p}:2:10: queues: invalid value")),
            "{e}"
        );
        let e = run(&["sluice", "run", "--config", "/nonexistent/run.toml"]).unwrap_err();
        assert_eq!(e, "reading /nonexistent/run.toml");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lb_file_has_its_own_flag() {
        let a = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => EngineConfig::try_from(&a),
            _ => panic!("expected run"),
        };
        let c = a(&[
            "sluice",
            "run",
            "-i",
            "x",
            "--app",
            "lb",
            "--lb-config",
            "lb.toml",
        ])
        .unwrap();
        assert_eq!(c.lb.as_deref(), Some(std::path::Path::new("lb.toml")));
        let e = a(&["sluice", "run", "-i", "x", "--app", "lb"]).unwrap_err();
        assert_eq!(e.field, "lb-config");
        assert!(e.to_string().contains("--lb-config FILE"), "{e}");
    }

    #[test]
    fn batch_out_of_range_is_rejected() {
        let e = Cli::try_parse_from(["sluice", "run", "-i", "x", "--batch", "999"]).unwrap_err();
        assert!(e.to_string().contains("--batch"), "{e}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
