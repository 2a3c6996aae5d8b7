//! `sluice ctl`'s client: connects to the control socket, sends requests, reports replies.
//!
//! Owns the client side of [`super::proto`]: connecting to `sluice/<iface>`, one request and one
//! reply per datagram with a timeout, and the exit code. Laying a reply out for a human is
//! `render`'s business; with `--json` the reply is printed as it came.

use super::proto::{ErrorCode, MAX_REPLY_SIZE, Reply, Request};
use super::render;
use super::socket::socket_addr;
use crate::error;
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, connect, recv, send, socket_with,
    sockopt,
};
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
                    let _ = out.write_all(render::reply(req, &data).as_bytes());
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

#[cfg(test)]
mod test {
    use super::*;
    use crate::control::proto::{Ports, RulesRequest};
    use crate::control::socket::{ControlServer, Handler, HandlerError, Peer};
    use crate::steer::L4Proto;
    use serde_json::{Value, json};
    use std::sync::Arc;

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

            let server = ControlServer::bind(&iface, None, Default::default())
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
