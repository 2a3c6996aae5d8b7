//! `sluice ctl`: the control socket client and its command line.
//!
//! Owns the client side of [`super::proto`]: connecting to `sluice/<iface>`, one request and one
//! reply per datagram with a timeout, and printing the reply for a human (or raw with `--json`).
//! It never interprets the data beyond laying it out, so the engine can add fields freely.

use super::proto::{ErrorCode, MAX_REPLY_SIZE, Ports, Reply, Request, RulesRequest};
use super::socket::socket_addr;
use crate::cli::PortList;
use crate::steer::L4Proto;
use clap::{Args, Subcommand};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, connect, recv, send, socket_with,
    sockopt,
};
use serde_json::Value;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// How long `sluice ctl` waits for a reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Nothing listens on `sluice/<iface>` in this network namespace.
    #[error(
        "no sluice serves {iface} in this network namespace (is `sluice run --iface {iface}` running?)"
    )]
    NotRunning {
        /// Interface.
        iface: String,
    },
    /// No reply within the timeout.
    #[error("sluice on {iface} did not reply within {timeout:?}")]
    Timeout {
        /// Interface.
        iface: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The engine closed the connection without a reply.
    #[error("sluice on {iface} closed the connection without replying")]
    Closed {
        /// Interface.
        iface: String,
    },
    /// The reply is not a valid protocol message.
    #[error("sluice on {iface} sent an invalid reply: {reason}")]
    BadReply {
        /// Interface.
        iface: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another socket error.
    #[error("{what} the control socket of {iface}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// A connection to an engine's control socket; several requests may share it.
#[derive(Debug)]
pub struct Client {
    fd: OwnedFd,
    iface: String,
    timeout: Duration,
}

impl Client {
    /// Connects to the engine serving `iface`, with [`DEFAULT_TIMEOUT`] per reply.
    pub fn connect(iface: &str) -> Result<Client, CtlError> {
        Self::connect_with_timeout(iface, DEFAULT_TIMEOUT)
    }

    /// Connects to the engine serving `iface`, waiting at most `timeout` for each reply.
    pub fn connect_with_timeout(iface: &str, timeout: Duration) -> Result<Client, CtlError> {
        let io_err = |what: &'static str| {
            move |e: Errno| CtlError::Io {
                what,
                iface: iface.to_string(),
                source: e.into(),
            }
        };
        let addr = socket_addr(iface).map_err(|source| CtlError::Io {
            what: "naming",
            iface: iface.to_string(),
            source,
        })?;
        let fd = socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(io_err("creating a socket for"))?;
        match connect(&fd, &addr) {
            Ok(()) => {}
            Err(Errno::CONNREFUSED | Errno::NOENT) => {
                return Err(CtlError::NotRunning {
                    iface: iface.to_string(),
                });
            }
            Err(e) => return Err(io_err("connecting to")(e)),
        }
        for which in [sockopt::Timeout::Recv, sockopt::Timeout::Send] {
            sockopt::set_socket_timeout(&fd, which, Some(timeout))
                .map_err(io_err("setting a timeout on"))?;
        }
        Ok(Client {
            fd,
            iface: iface.to_string(),
            timeout,
        })
    }

    /// Sends `req` and waits for its reply.
    pub fn request(&mut self, req: &Request) -> Result<Reply, CtlError> {
        let bytes = self.send_raw(&req.encode())?;
        Reply::decode(&bytes).map_err(|reason| CtlError::BadReply {
            iface: self.iface.clone(),
            reason,
        })
    }

    /// Sends one datagram as is and returns the reply datagram undecoded (for tests and tools).
    pub fn send_raw(&mut self, datagram: &[u8]) -> Result<Vec<u8>, CtlError> {
        match send(&self.fd, datagram, SendFlags::NOSIGNAL) {
            Ok(_) => {}
            // The server may have answered and closed (too many connections): read the answer.
            Err(Errno::PIPE | Errno::CONNRESET) => {}
            Err(Errno::AGAIN) => return Err(self.timeout_err()),
            Err(e) => {
                return Err(CtlError::Io {
                    what: "sending to",
                    iface: self.iface.clone(),
                    source: e.into(),
                });
            }
        }
        let mut buf = vec![0u8; MAX_REPLY_SIZE + 1];
        // A server that answers and closes before reading our request (too many connections)
        // leaves ECONNRESET pending ahead of its reply; it is reported once, then the reply reads.
        let mut reset_seen = false;
        loop {
            return match recv(&self.fd, &mut buf[..], RecvFlags::TRUNC) {
                Ok((_, 0)) => Err(CtlError::Closed {
                    iface: self.iface.clone(),
                }),
                Ok((_, len)) if len > MAX_REPLY_SIZE => Err(CtlError::BadReply {
                    iface: self.iface.clone(),
                    reason: format!("{len} bytes, more than the maximum of {MAX_REPLY_SIZE}"),
                }),
                Ok((_, len)) => {
                    buf.truncate(len);
                    Ok(buf)
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => Err(self.timeout_err()),
                Err(Errno::CONNRESET) if !reset_seen => {
                    reset_seen = true;
                    continue;
                }
                Err(Errno::CONNRESET) => Err(CtlError::Closed {
                    iface: self.iface.clone(),
                }),
                Err(e) => Err(CtlError::Io {
                    what: "receiving from",
                    iface: self.iface.clone(),
                    source: e.into(),
                }),
            };
        }
    }

    fn timeout_err(&self) -> CtlError {
        CtlError::Timeout {
            iface: self.iface.clone(),
            timeout: self.timeout,
        }
    }
}

/// One request to the engine serving `iface`, on a connection of its own.
pub fn request(iface: &str, req: &Request) -> Result<Reply, CtlError> {
    Client::connect(iface)?.request(req)
}

/// Arguments of `sluice ctl`.
#[derive(Args, Debug, Clone)]
#[command(after_help = CTL_EXAMPLES)]
pub struct CtlArgs {
    /// Interface whose engine to talk to (its control socket is @sluice/IF in this network
    /// namespace).
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: String,

    /// Print the engine's reply as raw JSON (one line) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Seconds to wait for each reply.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
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

Reads are open to every local user; changes (rules add/del, shutdown) need root or the
group given to `sluice run --admin-group`.";

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
/// engine refused or failed one (or could not be reached), 2 for a bad `--timeout`.
pub fn run(args: &CtlArgs) -> i32 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    run_to(args, &mut stdout.lock(), &mut stderr.lock())
}

pub(crate) fn run_to(args: &CtlArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout < 1e6) {
        let _ = writeln!(
            err,
            "sluice ctl: invalid --timeout: {} is not a positive number of seconds",
            args.timeout
        );
        return 2;
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut client = match Client::connect_with_timeout(&args.iface, timeout) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "sluice ctl: {}", error_chain(&e));
            return 1;
        }
    };
    for req in args.requests() {
        let reply = match client.send_raw(&req.encode()) {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = writeln!(err, "sluice ctl: {}", error_chain(&e));
                return 1;
            }
        };
        let decoded = match Reply::decode(&reply) {
            Ok(r) => r,
            Err(reason) => {
                let _ = writeln!(
                    err,
                    "sluice ctl: sluice on {} sent an invalid reply: {reason}",
                    args.iface
                );
                return 1;
            }
        };
        if args.json {
            let _ = writeln!(out, "{}", String::from_utf8_lossy(&reply));
        }
        match decoded {
            Reply::Ok(data) => {
                if !args.json {
                    print_human(&req, &data, out);
                }
            }
            Reply::Err(e) => {
                let _ = match e.code {
                    ErrorCode::PermissionDenied => {
                        writeln!(err, "permission denied: {}", e.message)
                    }
                    _ => writeln!(err, "sluice ctl: {req}: {} ({})", e.message, e.code),
                };
                return 1;
            }
        }
    }
    0
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Lays out a successful reply for a human. The engine owns the schema, so this is generic:
/// objects become `key: value` lines, arrays of objects become tables.
fn print_human(req: &Request, data: &Value, out: &mut dyn Write) {
    let text = match (req, data) {
        (Request::Shutdown, Value::Null) => "shutdown requested\n".to_string(),
        (Request::Rules(RulesRequest::Add { .. } | RulesRequest::Del { .. }), Value::Null) => {
            format!("{req}: done\n")
        }
        _ => render(data),
    };
    let _ = out.write_all(text.as_bytes());
}

/// The human form of any reply data.
pub fn render(v: &Value) -> String {
    let mut s = String::new();
    render_into(v, 0, &mut s);
    s
}

fn render_into(v: &Value, indent: usize, s: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) if m.is_empty() => {}
        Value::Object(m) => {
            let width = m.keys().map(String::len).max().unwrap_or(0);
            for (k, val) in m {
                if is_scalar(val) || is_scalar_array(val) {
                    s.push_str(&format!("{pad}{k:width$}  {}\n", scalar(val)));
                } else {
                    s.push_str(&format!("{pad}{k}:\n"));
                    render_into(val, indent + 1, s);
                }
            }
        }
        Value::Array(a) if a.is_empty() => s.push_str(&format!("{pad}(none)\n")),
        Value::Array(a) if a.iter().all(is_flat_object) => table(a, &pad, s),
        Value::Array(a) => {
            for item in a {
                if is_scalar(item) {
                    s.push_str(&format!("{pad}{}\n", scalar(item)));
                } else {
                    s.push_str(&format!("{pad}-\n"));
                    render_into(item, indent + 1, s);
                }
            }
        }
        other => s.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn is_scalar_array(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.iter().all(is_scalar))
}

fn is_flat_object(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.values().all(|x| is_scalar(x) || is_scalar_array(x)))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A table with one column per key (in order of first appearance; serde_json sorts object keys,
/// so that is alphabetical) and a header line.
fn table(rows: &[Value], pad: &str, s: &mut String) {
    let mut cols: Vec<&str> = Vec::new();
    for r in rows {
        if let Value::Object(m) = r {
            for k in m.keys() {
                if !cols.contains(&k.as_str()) {
                    cols.push(k);
                }
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| scalar(r.get(*c).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |vals: &[&str], s: &mut String| {
        let mut l = pad.to_string();
        for (i, v) in vals.iter().enumerate() {
            if i + 1 == vals.len() {
                l.push_str(v);
            } else {
                l.push_str(&format!("{v:w$}  ", w = widths[i]));
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    let header: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
    line(&header.iter().map(String::as_str).collect::<Vec<_>>(), s);
    for r in &cells {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>(), s);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::control::socket::{ControlServer, Handler, HandlerError, Peer};
    use clap::Parser;
    use serde_json::json;
    use std::sync::Arc;

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
        assert!(p(&["status"]).is_err(), "needs --iface");
        use clap::CommandFactory;
        Wrap::command().debug_assert();
    }

    #[test]
    fn human_output() {
        let status =
            json!({"iface": "veth0", "queues": [0, 1], "uptime_s": 12, "xdp": {"mode": "skb"}});
        assert_eq!(
            render(&status),
            "iface     veth0\nqueues    0,1\nuptime_s  12\nxdp:\n  mode  skb\n"
        );
        let rules =
            json!([{"proto":"udp","port":9100},{"proto":"tcp","port":80,"action":"redirect"}]);
        assert_eq!(
            render(&rules),
            "PORT  PROTO  ACTION\n9100  udp    -\n80    tcp    redirect\n"
        );
        assert_eq!(render(&json!([])), "(none)\n");
    }

    /// Replies to reads, refuses changes as an unprivileged peer would be refused.
    struct Fake;

    impl Handler for Fake {
        fn handle(&self, req: &Request, _: &Peer) -> Result<Value, HandlerError> {
            match req {
                Request::Stats => Ok(json!({"rx": 5})),
                Request::Routes => Err(HandlerError::Failed("mirror unavailable".into())),
                _ => Ok(Value::Null),
            }
        }
    }

    fn run_captured(argv: &[&str]) -> (i32, String, String) {
        let args = parse(argv);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_to(&args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn run_prints_and_exits() {
        let iface = format!("ctltest-{}", std::process::id());
        std::thread::spawn(move || {
            if rustix::process::geteuid().is_root() {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            }
            let (code, _, err) = run_captured(&["-i", &iface, "stats"]);
            assert_eq!(code, 1);
            assert!(err.contains("no sluice serves"), "{err}");

            let server = ControlServer::bind(&iface, None)
                .unwrap()
                .spawn(Arc::new(Fake))
                .unwrap();
            assert_eq!(
                run_captured(&["-i", &iface, "stats"]),
                (0, "rx  5\n".into(), String::new())
            );
            let (code, out, _) = run_captured(&["-i", &iface, "--json", "stats"]);
            assert_eq!(code, 0);
            assert_eq!(
                serde_json::from_str::<Value>(&out).unwrap(),
                json!({"v":1,"ok":true,"data":{"rx":5}})
            );
            let (code, out, err) = run_captured(&["-i", &iface, "routes"]);
            assert_eq!((code, out.as_str()), (1, ""));
            assert!(err.contains("mirror unavailable"), "{err}");
            let (code, _, _) = run_captured(&["-i", &iface, "--json", "routes"]);
            assert_eq!(code, 1);
            if rustix::process::geteuid().is_root() {
                assert_eq!(
                    run_captured(&["-i", &iface, "rules", "add", "--udp", "9100"]),
                    (0, "rules add udp 9100: done\n".into(), String::new())
                );
            }
            server.stop();
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }
}
