//! `sluice ctl`'s client: connects to the control socket, sends requests, reports replies.
//!
//! Owns the client side of [`super::proto`]: connecting to `sluice/<iface>`, one request and one
//! reply per datagram with a timeout, and the exit code. Laying a reply out for a human is
//! `render`'s business; with `--json` the reply is printed as it came.

use super::proto::socket_addr;
use super::proto::{ErrorCode, MAX_REPLY_SIZE, Reply, Request};
use super::render;
use crate::error;
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType, connect, recv, send, sendmsg, socket_with, sockopt,
};
use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
        self.recv_reply()
    }

    /// Sends a streaming request ([`Request::is_stream`]) with `out` passed along
    /// (`SCM_RIGHTS`) for the engine to write into, and waits — without a timeout: the stream
    /// ends when the engine says so, or when this process goes away — for its reply.
    pub fn request_stream(
        &mut self,
        req: &Request,
        out: BorrowedFd<'_>,
    ) -> Result<Reply, CtlError> {
        let fds = [out];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        cmsg.push(SendAncillaryMessage::ScmRights(&fds));
        let bytes = req.encode();
        if let Err(e) = sendmsg(
            &self.fd,
            &[IoSlice::new(&bytes)],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        ) {
            return Err(CtlError::Io {
                what: "sending to",
                iface: self.iface.clone(),
                source: e.into(),
            });
        }
        sockopt::set_socket_timeout(&self.fd, sockopt::Timeout::Recv, None).map_err(|e| {
            CtlError::Io {
                what: "clearing the timeout of",
                iface: self.iface.clone(),
                source: e.into(),
            }
        })?;
        let reply = self.recv_reply()?;
        Reply::decode(&reply).map_err(|reason| CtlError::BadReply {
            iface: self.iface.clone(),
            reason,
        })
    }

    fn recv_reply(&mut self) -> Result<Vec<u8>, CtlError> {
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
            // An engine handing over to a successor (`run --takeover`) closes the connections
            // it has accepted; the listening socket lives on in the successor. A read is asked
            // again there, once; a change is not (it may have been applied), but said so.
            Err(CtlError::Closed { .. }) if !req.is_change() => {
                match Client::connect_with_timeout(iface, timeout)
                    .and_then(|mut c| c.send_raw(&req.encode()).map(|r| (c, r)))
                {
                    Ok((c, bytes)) => {
                        client = c;
                        bytes
                    }
                    Err(e) => {
                        let _ = writeln!(
                            err,
                            "sluice ctl: sluice on {iface} closed the connection without \
                             replying, and asking again failed: {}",
                            error::chain(&e)
                        );
                        return 1;
                    }
                }
            }
            Err(e @ CtlError::Closed { .. }) => {
                let _ = writeln!(
                    err,
                    "sluice ctl: {} (as an engine handing over to a successor does): `{req}` \
                     may or may not have been applied; look, then retry",
                    error::chain(&e)
                );
                return 1;
            }
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

/// Where `sluice ctl capture -w` writes: a file it creates (mode 0600: a capture reveals
/// traffic), or its standard output for `-`.
pub enum CaptureOutput {
    /// `-w -`.
    Stdout,
    /// `-w FILE`.
    File(std::path::PathBuf),
}

/// Runs `capture` against the engine serving `iface`: opens the output here, with this
/// process's rights, and passes it with the request; the engine writes pcapng into it. A
/// summary goes to `err` (standard output may be the stream); with `json` the raw reply goes
/// there too. Returns the exit code: 0 when the capture ran, 1 otherwise.
pub fn run_capture(
    iface: &str,
    timeout: Duration,
    req: &Request,
    output: &CaptureOutput,
    json: bool,
    err: &mut dyn Write,
) -> i32 {
    let stdout = io::stdout();
    let file;
    let (fd, name) = match output {
        CaptureOutput::Stdout => {
            if std::io::IsTerminal::is_terminal(&stdout) {
                let _ = writeln!(
                    err,
                    "sluice ctl: capture: refusing to write pcapng to a terminal; pipe it \
                     (`| tcpdump -r -`) or use -w FILE"
                );
                return 1;
            }
            (stdout.as_fd(), "standard output".to_string())
        }
        CaptureOutput::File(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            file = match std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
            {
                Ok(f) => f,
                Err(e) => {
                    let _ = writeln!(err, "sluice ctl: capture: {}: {e}", path.display());
                    return 1;
                }
            };
            (file.as_fd(), path.display().to_string())
        }
    };
    let reply =
        Client::connect_with_timeout(iface, timeout).and_then(|mut c| c.request_stream(req, fd));
    match reply {
        Err(e) => {
            let _ = writeln!(err, "sluice ctl: {}", error::chain(&e));
            1
        }
        Ok(Reply::Err(e)) => {
            let _ = match e.code {
                ErrorCode::PermissionDenied => writeln!(err, "permission denied: {}", e.message),
                _ => writeln!(err, "sluice ctl: {req}: {} ({})", e.message, e.code),
            };
            1
        }
        Ok(Reply::Ok(data)) => {
            if json {
                let _ = writeln!(err, "{data}");
            } else {
                let _ = writeln!(
                    err,
                    "capture: {} frame(s) written to {name}, {} dropped (capture ring full); ended by {} after {:.1} s",
                    data["frames"],
                    data["dropped"],
                    data["ended"].as_str().unwrap_or("?"),
                    data["seconds"].as_f64().unwrap_or(0.0)
                );
            }
            0
        }
    }
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

    /// A listener that closes its first `closes` connections after reading their request (as
    /// an engine handing over does), then answers each request with `{"rx": 7}`.
    fn closing_listener(iface: &str, closes: usize) -> std::thread::JoinHandle<usize> {
        use rustix::net::{accept, bind, listen};
        let fd = socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        bind(&fd, &socket_addr(iface).unwrap()).unwrap();
        listen(&fd, 8).unwrap();
        std::thread::spawn(move || {
            let mut served = 0;
            for i in 0..closes + 1 {
                let c = accept(&fd).unwrap();
                let mut buf = [0u8; 4096];
                let (_, n) = recv(&c, &mut buf, RecvFlags::empty()).unwrap();
                assert!(n > 0);
                if i >= closes {
                    let reply = Reply::Ok(json!({"rx": 7})).encode();
                    send(&c, &reply, SendFlags::NOSIGNAL).unwrap();
                    served += 1;
                }
            }
            served
        })
    }

    #[test]
    fn a_read_is_asked_again_after_a_hand_over_closes_the_connection() {
        let iface = format!("ctlretry-{}", std::process::id());
        std::thread::spawn(move || {
            if rustix::process::geteuid().is_root() {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            }
            let server = closing_listener(&iface, 1);
            assert_eq!(
                run_captured(&iface, Request::Stats, false),
                (0, "rx  7\n".into(), String::new())
            );
            assert_eq!(server.join().unwrap(), 1);
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }

    #[test]
    fn a_change_is_not_sent_twice_when_the_connection_closes() {
        let iface = format!("ctlnoretry-{}", std::process::id());
        std::thread::spawn(move || {
            if rustix::process::geteuid().is_root() {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            }
            let _server = closing_listener(&iface, 1);
            let (code, out, err) = run_captured(
                &iface,
                Request::Rules(RulesRequest::Add {
                    proto: L4Proto::Udp,
                    ports: Ports(vec![9100]),
                }),
                false,
            );
            assert_eq!((code, out.as_str()), (1, ""));
            assert!(
                err.contains("closed the connection without replying"),
                "{err}"
            );
            assert!(err.contains("may or may not have been applied"), "{err}");
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }
}
