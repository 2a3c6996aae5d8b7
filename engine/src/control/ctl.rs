//! `sluice ctl`'s client: connects to the control socket, sends requests, prints replies.
//!
//! Owns the client side of [`super::proto`]: connecting to `sluice/<iface>`, one request and one
//! reply per datagram with a timeout, and printing the reply for a human (or raw with `--json`).
//! It never interprets the data beyond laying it out, so the engine can add fields freely.

use super::proto::{ErrorCode, MAX_REPLY_SIZE, Reply, Request, RulesRequest};
use super::socket::socket_addr;
use crate::error;
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

/// Sends `requests` in order to the engine serving `iface` (waiting up to `timeout` for each
/// reply) and prints each reply to `out`: laid out for a human, or the raw JSON line with `json`.
/// Returns the process exit code: 0 when every request succeeded, 1 when the engine refused or
/// failed one or could not be reached. Stops at the first failure.
pub fn run_requests(
    iface: &str,
    timeout: Duration,
    requests: &[Request],
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let mut client = match Client::connect_with_timeout(iface, timeout) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "sluice ctl: {}", error::chain(&e));
            return 1;
        }
    };
    for req in requests {
        let reply = match client.send_raw(&req.encode()) {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = writeln!(err, "sluice ctl: {}", error::chain(&e));
                return 1;
            }
        };
        let decoded = match Reply::decode(&reply) {
            Ok(r) => r,
            Err(reason) => {
                let _ = writeln!(
                    err,
                    "sluice ctl: sluice on {iface} sent an invalid reply: {reason}"
                );
                return 1;
            }
        };
        if json {
            let _ = writeln!(out, "{}", String::from_utf8_lossy(&reply));
        }
        match decoded {
            Reply::Ok(data) => {
                if !json {
                    print_human(req, &data, out);
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
    use crate::control::proto::Ports;
    use crate::control::socket::{ControlServer, Handler, HandlerError, Peer};
    use crate::steer::L4Proto;
    use serde_json::json;
    use std::sync::Arc;

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

    fn run_captured(iface: &str, req: Request, json: bool) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_requests(iface, DEFAULT_TIMEOUT, &[req], json, &mut out, &mut err);
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
            let (code, _, err) = run_captured(&iface, Request::Stats, false);
            assert_eq!(code, 1);
            assert!(err.contains("no sluice serves"), "{err}");

            let server = ControlServer::bind(&iface, None)
                .unwrap()
                .spawn(Arc::new(Fake))
                .unwrap();
            assert_eq!(
                run_captured(&iface, Request::Stats, false),
                (0, "rx  5\n".into(), String::new())
            );
            let (code, out, _) = run_captured(&iface, Request::Stats, true);
            assert_eq!(code, 0);
            assert_eq!(
                serde_json::from_str::<Value>(&out).unwrap(),
                json!({"v":1,"ok":true,"data":{"rx":5}})
            );
            let (code, out, err) = run_captured(&iface, Request::Routes, false);
            assert_eq!((code, out.as_str()), (1, ""));
            assert!(err.contains("mirror unavailable"), "{err}");
            let (code, _, _) = run_captured(&iface, Request::Routes, true);
            assert_eq!(code, 1);
            if rustix::process::geteuid().is_root() {
                assert_eq!(
                    run_captured(
                        &iface,
                        Request::Rules(RulesRequest::Add {
                            proto: L4Proto::Udp,
                            ports: Ports(vec![9100])
                        }),
                        false
                    ),
                    (0, "rules add udp 9100: done\n".into(), String::new())
                );
            }
            server.stop();
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }
}
