//! `sluice ctl`'s command line: parsed here, turned into control-protocol requests, sent by
//! [`crate::control::ctl`]. The only place clap meets the control protocol.

use crate::apps::lb::config::{Forwarding, HealthCheck, Vip};
use crate::control::ctl::{CaptureOutput, run_capture, run_requests};
use crate::control::proto::{
    BackendsRequest, CaptureRequest, MAX_SNAPLEN, Ports, Request, RulesRequest, VipsRequest,
};
use crate::steer::{L4Proto, PortList};
use clap::ValueEnum;
use clap::{Args, Subcommand};
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

/// Arguments of `sluice ctl`.
///
/// `--iface`, `--json` and `--timeout` are global: they may come before or after the command
/// (`sluice ctl --iface X stats --json`, `sluice ctl stats -i X`), as a user types them. clap
/// does not let a global flag be required, so a missing `--iface` is refused by [`run`] (exit
/// 2), not by the parser.
#[derive(Args, Debug, Clone)]
#[command(after_help = CTL_EXAMPLES)]
pub struct CtlArgs {
    /// Interface whose engine to talk to (its control socket is @sluice/IF in this network
    /// namespace). Required.
    #[arg(long, short = 'i', value_name = "IF", global = true)]
    pub iface: Option<String>,

    /// Print the engine's reply as raw JSON (one line) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Seconds to wait for each reply.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, global = true)]
    pub timeout: f64,

    /// What to ask.
    #[command(subcommand)]
    pub command: CtlCommand,
}

const CTL_EXAMPLES: &str = "\
Examples:
  sluice ctl --iface eth1 status
  sluice ctl --iface eth1 rules add --udp 9100,9200-9210
  sluice ctl --iface eth1 rules del --tcp 80
  sluice ctl --iface eth1 --json stats
  sluice ctl --iface eth0 backends list
  sluice ctl --iface eth0 backends drain 10.0.0.100:80/tcp 10.0.1.12
  sluice ctl --iface eth0 backends add '[2001:db8::1]:443/tcp' 2001:db8:1::5 --weight 2
  sluice ctl --iface eth0 vips add 10.0.0.101:53/udp --forwarding ipip
  sluice ctl --iface eth1 capture --count 100 -w eth1.pcapng
  sluice ctl --iface eth1 capture --queue 0 --direction both -w - | tcpdump -n -r -

A VIP is written ADDRESS:PORT/PROTO (IPv6 in brackets; port 0 = every port).
Reads are open to every local user; changes (rules add/del, vips/backends add/del/drain,
reload, shutdown) and capture need root or the group given to `sluice run --admin-group`.";

/// `sluice ctl` commands.
#[derive(Subcommand, Debug, Clone)]
pub enum CtlCommand {
    /// Interface, XDP and bind modes granted, queues, cores, uptime, version.
    Status,
    /// Per-queue and total counters, eBPF counters, rates.
    Stats,
    /// List, add or delete steering rules (live, no restart).
    Rules {
        /// What to do with the rules.
        #[command(subcommand)]
        op: RulesCommand,
    },
    /// Links the engine's rtnetlink mirror knows.
    Links,
    /// Addresses in the mirror.
    Addresses,
    /// Neighbours in the mirror.
    Neighbours,
    /// Routes in the mirror.
    Routes,
    /// Stop the engine (as SIGTERM would).
    Shutdown,
    /// Load balancer: list, add or delete VIPs (live).
    Vips {
        /// What to do with the VIPs.
        #[command(subcommand)]
        op: VipsCommand,
    },
    /// Load balancer: list, add, delete or drain backends (live).
    Backends {
        /// What to do with the backends.
        #[command(subcommand)]
        op: BackendsCommand,
    },
    /// Load balancer: re-read the configuration file (as SIGHUP does); on an error in it the
    /// running set stays as it is.
    Reload,
    /// Record the frames the engine receives (and, with --direction both, sends) as pcapng:
    /// interface, queue and nanosecond timestamps. Until --count, --duration or Ctrl-C.
    Capture(CaptureArgs),
}

/// Which frames `capture` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// Frames received, as the app got them.
    Rx,
    /// Received frames, and the frames the app sent, as they left it.
    Both,
}

/// `sluice ctl capture` arguments.
#[derive(Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Only this port of the engine (interface name or port number).
    #[arg(long, value_name = "P")]
    pub port: Option<String>,
    /// Only this queue.
    #[arg(long, value_name = "Q")]
    pub queue: Option<u32>,
    /// Stop after N frames.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after S seconds.
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Bytes kept of each frame (default: all of it).
    #[arg(long, value_name = "B", value_parser = clap::value_parser!(u32).range(1..=MAX_SNAPLEN as i64))]
    pub snaplen: Option<u32>,
    /// rx, or both (rx and tx).
    #[arg(long, value_enum, default_value = "rx")]
    pub direction: DirectionArg,
    /// Where to write: a file (created mode 0600), or `-` for standard output.
    #[arg(short = 'w', value_name = "FILE")]
    pub write: String,
}

impl CaptureArgs {
    fn request(&self) -> Result<Request, String> {
        let duration_ms = match self.duration {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Some((s * 1000.0).ceil() as u64),
            Some(s) => {
                return Err(format!(
                    "invalid --duration: {s} is not a positive number of seconds"
                ));
            }
        };
        Ok(Request::Capture(CaptureRequest {
            port: self.port.clone(),
            queue: self.queue,
            count: self.count,
            duration_ms,
            snaplen: self.snaplen,
            both: self.direction == DirectionArg::Both,
        }))
    }

    fn output(&self) -> CaptureOutput {
        if self.write == "-" {
            CaptureOutput::Stdout
        } else {
            CaptureOutput::File(self.write.clone().into())
        }
    }
}

/// How a VIP's packets reach its backends, as `ctl` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForwardingArg {
    /// MAC rewrite; the backends own the VIP on the same L2 segment.
    Dsr,
    /// IPIP / IP6IP6 / 4in6 encapsulation to each backend.
    Ipip,
}

/// How a VIP's backends are probed, as `ctl` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HealthArg {
    /// A TCP connection must be accepted.
    Tcp,
    /// A datagram must not draw an ICMP port unreachable.
    Udp,
    /// Not probed.
    None,
}

/// `sluice ctl vips` operations.
#[derive(Subcommand, Debug, Clone)]
pub enum VipsCommand {
    /// Every VIP, its forwarding, health check and backend count.
    List,
    /// A new VIP, without backends (add them with `backends add`).
    Add {
        /// ADDRESS:PORT/PROTO, e.g. `10.0.0.100:80/tcp` or `'[2001:db8::1]:443/tcp'`.
        vip: Vip,
        /// How packets reach the backends.
        #[arg(long, value_enum)]
        forwarding: ForwardingArg,
        /// How backends are probed (default: tcp for a TCP VIP with a port, else none).
        #[arg(long, value_enum)]
        health: Option<HealthArg>,
        /// Port probed (default: the VIP's).
        #[arg(long, value_name = "PORT")]
        health_port: Option<u16>,
    },
    /// Delete a VIP: its traffic goes back to the kernel.
    Del {
        /// ADDRESS:PORT/PROTO.
        vip: Vip,
    },
}

/// `sluice ctl backends` operations.
#[derive(Subcommand, Debug, Clone)]
pub enum BackendsCommand {
    /// Backends with weight, admin state, health and whether they get new flows; plus the
    /// connection tables' occupancy.
    List {
        /// Only this VIP's (ADDRESS:PORT/PROTO).
        vip: Option<Vip>,
    },
    /// Add a backend, or set the weight of (and un-drain) one already there.
    Add {
        /// ADDRESS:PORT/PROTO.
        vip: Vip,
        /// The backend's address.
        backend: IpAddr,
        /// Relative share of new flows, 0-1000 (default 1).
        #[arg(long, value_name = "N")]
        weight: Option<u32>,
    },
    /// Delete a backend: its flows move to the others at their next packet.
    Del {
        /// ADDRESS:PORT/PROTO.
        vip: Vip,
        /// The backend's address.
        backend: IpAddr,
    },
    /// Drain a backend: no new flows; established ones stay until they end.
    Drain {
        /// ADDRESS:PORT/PROTO.
        vip: Vip,
        /// The backend's address.
        backend: IpAddr,
    },
}

/// `sluice ctl rules` operations.
#[derive(Subcommand, Debug, Clone)]
pub enum RulesCommand {
    /// Show the rules in the steering map.
    List,
    /// Steer more ports into the workers.
    Add(RulePorts),
    /// Return ports to the kernel.
    Del(RulePorts),
}

/// The ports of a rules change, same syntax as `sluice run`.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = true)]
pub struct RulePorts {
    /// UDP destination ports: comma-separated ports or ranges (`9000,9100-9110`).
    #[arg(long, value_name = "PORTS")]
    pub udp: Option<PortList>,

    /// TCP destination ports, same syntax as --udp.
    #[arg(long, value_name = "PORTS")]
    pub tcp: Option<PortList>,
}

impl CtlArgs {
    /// The requests this command line sends, in order (`rules add --udp A --tcp B` is two).
    pub fn requests(&self) -> Vec<Request> {
        match &self.command {
            CtlCommand::Status => vec![Request::Status],
            CtlCommand::Stats => vec![Request::Stats],
            CtlCommand::Links => vec![Request::Links],
            CtlCommand::Addresses => vec![Request::Addresses],
            CtlCommand::Neighbours => vec![Request::Neighbours],
            CtlCommand::Routes => vec![Request::Routes],
            CtlCommand::Shutdown => vec![Request::Shutdown],
            CtlCommand::Reload => vec![Request::Reload],
            CtlCommand::Capture(c) => c.request().into_iter().collect(),
            CtlCommand::Vips { op } => vec![Request::Vips(match op {
                VipsCommand::List => VipsRequest::List,
                VipsCommand::Add {
                    vip,
                    forwarding,
                    health,
                    health_port,
                } => VipsRequest::Add {
                    vip: *vip,
                    forwarding: match forwarding {
                        ForwardingArg::Dsr => Forwarding::Dsr,
                        ForwardingArg::Ipip => Forwarding::Ipip,
                    },
                    health: health.map(|h| match h {
                        HealthArg::Tcp => HealthCheck::Tcp,
                        HealthArg::Udp => HealthCheck::Udp,
                        HealthArg::None => HealthCheck::None,
                    }),
                    health_port: *health_port,
                },
                VipsCommand::Del { vip } => VipsRequest::Del { vip: *vip },
            })],
            CtlCommand::Backends { op } => vec![Request::Backends(match op {
                BackendsCommand::List { vip } => BackendsRequest::List { vip: *vip },
                BackendsCommand::Add {
                    vip,
                    backend,
                    weight,
                } => BackendsRequest::Add {
                    vip: *vip,
                    backend: *backend,
                    weight: *weight,
                },
                BackendsCommand::Del { vip, backend } => BackendsRequest::Del {
                    vip: *vip,
                    backend: *backend,
                },
                BackendsCommand::Drain { vip, backend } => BackendsRequest::Drain {
                    vip: *vip,
                    backend: *backend,
                },
            })],
            CtlCommand::Rules { op } => match op {
                RulesCommand::List => vec![Request::Rules(RulesRequest::List)],
                RulesCommand::Add(p) => {
                    p.requests(|proto, ports| RulesRequest::Add { proto, ports })
                }
                RulesCommand::Del(p) => {
                    p.requests(|proto, ports| RulesRequest::Del { proto, ports })
                }
            },
        }
    }
}

impl RulePorts {
    fn requests(&self, op: impl Fn(L4Proto, Ports) -> RulesRequest) -> Vec<Request> {
        [(L4Proto::Udp, &self.udp), (L4Proto::Tcp, &self.tcp)]
            .into_iter()
            .filter_map(|(proto, list)| {
                list.as_ref()
                    .map(|l| Request::Rules(op(proto, Ports::from(l.clone()))))
            })
            .collect()
    }
}

/// Runs `sluice ctl`; returns the process exit code: 0 when every request succeeded, 1 when the
/// engine refused or failed one (or could not be reached), 2 for a bad `--timeout` or no
/// `--iface`.
pub fn run(args: &CtlArgs) -> i32 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    run_to(args, &mut stdout.lock(), &mut stderr.lock())
}

fn run_to(args: &CtlArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some(iface) = args.iface.as_deref() else {
        let _ = writeln!(
            err,
            "sluice ctl: --iface IF is required (the interface whose engine to talk to)"
        );
        return 2;
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout < 1e6) {
        let _ = writeln!(
            err,
            "sluice ctl: invalid --timeout: {} is not a positive number of seconds",
            args.timeout
        );
        return 2;
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    if let CtlCommand::Capture(c) = &args.command {
        return match c.request() {
            Ok(req) => run_capture(iface, timeout, &req, &c.output(), args.json, err),
            Err(e) => {
                let _ = writeln!(err, "sluice ctl: capture: {e}");
                2
            }
        };
    }
    run_requests(iface, timeout, &args.requests(), args.json, out, err)
}

#[cfg(test)]
mod test {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Wrap {
        #[command(flatten)]
        args: CtlArgs,
    }

    fn parse(argv: &[&str]) -> CtlArgs {
        Wrap::try_parse_from(std::iter::once("sluice-ctl").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn lb_command_lines_become_requests() {
        let vip: Vip = "10.0.0.100:80/tcp".parse().unwrap();
        assert_eq!(
            parse(&[
                "-i",
                "x",
                "backends",
                "del",
                "10.0.0.100:80/tcp",
                "10.0.1.12"
            ])
            .requests(),
            [Request::Backends(BackendsRequest::Del {
                vip,
                backend: "10.0.1.12".parse().unwrap()
            })]
        );
        assert_eq!(
            parse(&[
                "-i",
                "x",
                "backends",
                "add",
                "[2001:db8::1]:80/tcp",
                "2001:db8::5",
                "--weight",
                "3"
            ])
            .requests(),
            [Request::Backends(BackendsRequest::Add {
                vip: "[2001:db8::1]:80/tcp".parse().unwrap(),
                backend: "2001:db8::5".parse().unwrap(),
                weight: Some(3),
            })]
        );
        assert_eq!(
            parse(&[
                "-i",
                "x",
                "vips",
                "add",
                "10.0.0.100:80/tcp",
                "--forwarding",
                "ipip"
            ])
            .requests(),
            [Request::Vips(VipsRequest::Add {
                vip,
                forwarding: Forwarding::Ipip,
                health: None,
                health_port: None,
            })]
        );
        assert_eq!(
            parse(&["-i", "x", "backends", "list"]).requests(),
            [Request::Backends(BackendsRequest::List { vip: None })]
        );
        assert_eq!(parse(&["-i", "x", "reload"]).requests(), [Request::Reload]);
        // A malformed VIP is refused by the parser, naming it.
        let e = Wrap::try_parse_from([
            "sluice-ctl",
            "-i",
            "x",
            "backends",
            "drain",
            "10.0.0.100:80",
            "10.0.1.1",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("10.0.0.100:80"), "{e}");
    }

    #[test]
    fn command_lines_become_requests() {
        assert_eq!(parse(&["-i", "x", "status"]).requests(), [Request::Status]);
        assert_eq!(
            parse(&["--iface", "x", "rules", "list"]).requests(),
            [Request::Rules(RulesRequest::List)]
        );
        assert_eq!(
            parse(&[
                "-i",
                "x",
                "rules",
                "add",
                "--udp",
                "9100,9200-9201",
                "--tcp",
                "80"
            ])
            .requests(),
            [
                Request::Rules(RulesRequest::Add {
                    proto: L4Proto::Udp,
                    ports: Ports(vec![9100, 9200, 9201])
                }),
                Request::Rules(RulesRequest::Add {
                    proto: L4Proto::Tcp,
                    ports: Ports(vec![80])
                }),
            ]
        );
        assert_eq!(
            parse(&["-i", "x", "rules", "del", "--tcp", "80"]).requests(),
            [Request::Rules(RulesRequest::Del {
                proto: L4Proto::Tcp,
                ports: Ports(vec![80])
            })]
        );
        for (word, req) in [
            ("stats", Request::Stats),
            ("links", Request::Links),
            ("addresses", Request::Addresses),
            ("neighbours", Request::Neighbours),
            ("routes", Request::Routes),
            ("shutdown", Request::Shutdown),
        ] {
            assert_eq!(parse(&["-i", "x", word]).requests(), [req]);
        }
        assert!(parse(&["-i", "x", "--json", "stats"]).json);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        let p = |argv: &[&str]| {
            Wrap::try_parse_from(std::iter::once("sluice-ctl").chain(argv.iter().copied()))
        };
        assert!(
            p(&["-i", "x", "rules", "add"]).is_err(),
            "needs --udp/--tcp"
        );
        let e = p(&["-i", "x", "rules", "add", "--udp", "0"]).unwrap_err();
        assert!(e.to_string().contains("port 0"), "{e}");
        use clap::CommandFactory;
        Wrap::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        for argv in [
            &["--iface", "x", "stats", "--json"][..],
            &["stats", "--iface", "x", "--json"],
            &["--json", "stats", "-i", "x"],
            &["-i", "x", "--timeout", "2", "stats", "--json"],
            &["stats", "--json", "--timeout", "2", "--iface", "x"],
        ] {
            let a = parse(argv);
            assert_eq!(
                (a.iface.as_deref(), a.json, a.requests()),
                (Some("x"), true, vec![Request::Stats]),
                "{argv:?}"
            );
        }
        // Deeper in the command tree too, and the last one given wins.
        let a = parse(&["rules", "list", "--iface", "y", "--timeout", "3"]);
        assert_eq!((a.iface.as_deref(), a.timeout), (Some("y"), 3.0));
        assert_eq!(a.requests(), [Request::Rules(RulesRequest::List)]);
        let a = parse(&["-i", "x", "stats", "-i", "z"]);
        assert_eq!(a.iface.as_deref(), Some("z"));
        // Through the real command line (`sluice ctl …`), as a user types it.
        use crate::cli::{Cli, Command};
        let cli = Cli::try_parse_from(["sluice", "ctl", "--iface", "x", "stats", "--json"])
            .expect("global flags after the command");
        let Command::Ctl(a) = cli.command else {
            panic!("not ctl")
        };
        assert_eq!((a.iface.as_deref(), a.json), (Some("x"), true));
    }

    #[test]
    fn no_iface_exits_2() {
        let args = parse(&["status"]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run_to(&args, &mut out, &mut err), 2);
        assert!(String::from_utf8(err).unwrap().contains("--iface"));
    }

    #[test]
    fn bad_timeout_exits_2() {
        let mut args = parse(&["-i", "x", "stats"]);
        args.timeout = 0.0;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run_to(&args, &mut out, &mut err), 2);
        assert!(String::from_utf8(err).unwrap().contains("--timeout"));
    }
}
