//! The control socket server: a `SOCK_SEQPACKET` Unix socket in the abstract namespace.
//!
//! Owns the socket named `sluice/<iface>`, the single-instance lock it doubles as (a second
//! bind fails with `EADDRINUSE`, and the name vanishes with the process), the accept loop, and
//! the permission check: reads for any local user, changes for uid 0 or the admin group, decided
//! from the peer's `SO_PEERCRED`. What a command does is the [`Handler`]'s business; this module
//! never touches the data plane and must never block the workers.
//!
//! Abstract names are per network namespace, so "one engine per interface" holds per namespace,
//! which is also where interface names are unique.

use super::proto::{ErrorCode, ErrorReply, MAX_REPLY_SIZE, MAX_REQUEST_SIZE, Reply, Request};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType, accept_with, bind, connect, listen, recvmsg, send, socket_with,
    sockopt,
};
use std::fmt;
use std::io;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections served at once; one more is told to retry later and closed. Operators and
/// scripts, not a fleet: 16 is plenty and bounds the threads.
pub const MAX_CONNECTIONS: usize = 16;

/// Pending connections the kernel queues before `accept`.
const BACKLOG: i32 = 16;

/// How long the accept loop and every connection wait in `poll` before looking at the stop flag;
/// bounds [`ServerHandle::stop`].
const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// How long a reply may wait for room in a stuck peer's receive queue before the connection is
/// dropped, so one client that never reads cannot pin a connection thread.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The abstract socket name for `iface` (without the leading NUL).
pub(crate) fn socket_name(iface: &str) -> String {
    format!("sluice/{iface}")
}

/// The abstract address for `iface`.
pub(crate) fn socket_addr(iface: &str) -> io::Result<SocketAddrUnix> {
    Ok(SocketAddrUnix::new_abstract_name(
        socket_name(iface).as_bytes(),
    )?)
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The name is taken: another engine serves this interface in this network namespace.
    #[error("another sluice already serves {iface} ({})", pid_text(*.pid))]
    AlreadyRunning {
        /// Interface.
        iface: String,
        /// The other engine's pid, when it could be learned.
        pid: Option<u32>,
    },
    /// A socket call failed.
    #[error("{what} the control socket sluice/{iface}")]
    Io {
        /// What was being done ("creating", "binding", ...).
        what: &'static str,
        /// Interface.
        iface: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("pid {p}"),
        None => "pid unknown".into(),
    }
}

/// The credentials of a control client, from `SO_PEERCRED` (as of its `connect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Process id, in this process's pid namespace (0 if the peer is outside it).
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Effective (primary) group id.
    pub gid: u32,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} uid {} gid {}", self.pid, self.uid, self.gid)
    }
}

/// Why a [`Handler`] could not carry out a request.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Carrying it out failed (map update, mirror unavailable, ...). Sent as `failed`.
    #[error("{0}")]
    Failed(String),
}

/// What the engine does with a permitted request; runs on a connection thread.
pub trait Handler: Send + Sync {
    /// Carries out `req` (already decoded and, for a change, authorized) for `peer`; the value
    /// becomes the reply's `data`.
    fn handle(&self, req: &Request, peer: &Peer) -> Result<serde_json::Value, HandlerError>;

    /// Carries out a streaming request ([`Request::is_stream`]): its output goes into `out`, the
    /// file descriptor the client passed with the request (`SCM_RIGHTS`), until it is done or
    /// `cancelled()` says the client went away (closed the connection or sent anything) or the
    /// server is stopping. The value becomes the reply's `data`, sent when it returns.
    fn handle_stream(
        &self,
        req: &Request,
        peer: &Peer,
        out: OwnedFd,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<serde_json::Value, HandlerError> {
        let _ = (peer, out, cancelled);
        Err(HandlerError::Failed(format!(
            "`{req}` is not supported by this server"
        )))
    }
}

/// The group allowed to make changes besides root.
#[derive(Clone, Debug)]
struct AdminGroup {
    gid: u32,
    /// Its name, for messages; the number when it has none.
    name: String,
}

/// A bound, listening control socket that is not serving yet.
pub struct ControlServer {
    listener: OwnedFd,
    iface: String,
    admin: Option<AdminGroup>,
}

impl fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlServer")
            .field("iface", &self.iface)
            .field("admin", &self.admin)
            .finish()
    }
}

impl ControlServer {
    /// Binds `sluice/<iface>` and listens. Changes are allowed to root and, if given, to members
    /// of group `admin_gid`.
    ///
    /// Fails with [`ControlError::AlreadyRunning`] when another process holds the name; its pid
    /// comes from the credentials of its listening socket.
    pub fn bind(iface: &str, admin_gid: Option<u32>) -> Result<ControlServer, ControlError> {
        let io_err = |what: &'static str| {
            move |e: io::Error| ControlError::Io {
                what,
                iface: iface.to_string(),
                source: e,
            }
        };
        let addr = socket_addr(iface).map_err(io_err("naming"))?;
        let listener = socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| io_err("creating")(e.into()))?;
        match bind(&listener, &addr) {
            Ok(()) => {}
            Err(Errno::ADDRINUSE) => {
                return Err(ControlError::AlreadyRunning {
                    iface: iface.to_string(),
                    pid: holder_pid(&addr),
                });
            }
            Err(e) => return Err(io_err("binding")(e.into())),
        }
        listen(&listener, BACKLOG).map_err(|e| io_err("listening on")(e.into()))?;
        let admin = admin_gid.map(|gid| AdminGroup {
            gid,
            name: group_name(gid).unwrap_or_else(|| gid.to_string()),
        });
        log::debug!("control socket @{} listening", socket_name(iface));
        Ok(ControlServer {
            listener,
            iface: iface.to_string(),
            admin,
        })
    }

    /// Starts serving on a thread of its own until [`ServerHandle::stop`] (or drop).
    pub fn spawn(self, handler: Arc<dyn Handler>) -> Result<ServerHandle, ControlError> {
        let stop = Arc::new(AtomicBool::new(false));
        let iface = self.iface.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ctl-{}", self.iface))
            .spawn(move || self.accept_loop(&handler, &flag))
            .map_err(|e| ControlError::Io {
                what: "starting the thread of",
                iface,
                source: e,
            })?;
        Ok(ServerHandle {
            stop,
            thread: Some(thread),
        })
    }

    fn accept_loop(self, handler: &Arc<dyn Handler>, stop: &Arc<AtomicBool>) {
        let ctx = Arc::new(ConnCtx {
            admin: self.admin.clone(),
            stop: stop.clone(),
            handler: handler.clone(),
        });
        let mut conns: Vec<JoinHandle<()>> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if !wait_readable(&self.listener) {
                continue;
            }
            let conn = match accept_with(&self.listener, SocketFlags::CLOEXEC) {
                Ok(c) => c,
                Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on a full fd table.
                    log::warn!("control socket sluice/{}: accept: {e}", self.iface);
                    std::thread::sleep(POLL_INTERVAL);
                    continue;
                }
            };
            conns.retain(|t| !t.is_finished());
            if conns.len() >= MAX_CONNECTIONS {
                let busy = Reply::Err(ErrorReply::new(
                    ErrorCode::Failed,
                    format!("too many control connections ({MAX_CONNECTIONS}); try again"),
                ));
                let _ = send(
                    &conn,
                    &busy.encode(),
                    SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                );
                continue;
            }
            let ctx = ctx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ctl-{}-conn", self.iface))
                .spawn(move || serve_connection(&conn, &ctx));
            match spawned {
                Ok(t) => conns.push(t),
                Err(e) => log::warn!("control socket sluice/{}: no thread: {e}", self.iface),
            }
        }
        for t in conns {
            let _ = t.join();
        }
    }
}

/// A serving control socket. Dropping it stops it too.
pub struct ServerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle").finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Stops accepting, lets every connection finish the request in hand, closes the socket
    /// (releasing the name). Takes at most about [`POLL_INTERVAL`] plus the slowest handler call.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

struct ConnCtx {
    admin: Option<AdminGroup>,
    stop: Arc<AtomicBool>,
    handler: Arc<dyn Handler>,
}

/// Waits up to [`POLL_INTERVAL`] for `fd` to become readable (or hung up).
fn wait_readable(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let timeout = Timespec::try_from(POLL_INTERVAL).expect("a small duration fits a timespec");
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// Serves one connection until the peer closes it, an I/O error, or the server stops.
fn serve_connection(conn: &OwnedFd, ctx: &ConnCtx) {
    // The kernel refuses a SEQPACKET message larger than the send buffer; raise it so a reply of
    // MAX_REPLY_SIZE fits (it caps the value at net.core.wmem_max, and doubles it).
    let _ = sockopt::set_socket_send_buffer_size(conn, MAX_REPLY_SIZE + 4096);
    let _ = sockopt::set_socket_timeout(conn, sockopt::Timeout::Send, Some(SEND_TIMEOUT));
    // One byte more than the limit, and MSG_TRUNC for the real length, tells "too large" apart.
    let mut buf = vec![0u8; MAX_REQUEST_SIZE + 1];
    while !ctx.stop.load(Ordering::Relaxed) {
        if !wait_readable(conn) {
            continue;
        }
        // A streaming request carries its output descriptor (SCM_RIGHTS); any other descriptor
        // sent along is closed when `passed` drops.
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            conn,
            &mut [IoSliceMut::new(&mut buf[..])],
            &mut cmsg,
            RecvFlags::TRUNC | RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        );
        let mut passed = None;
        for msg in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                for fd in fds {
                    passed.get_or_insert(fd);
                }
            }
        }
        let len = match got {
            Ok(m) if m.bytes == 0 => return, // orderly close (an empty datagram reads the same)
            Ok(m) => m.bytes,
            Err(Errno::AGAIN | Errno::INTR) => continue,
            Err(_) => return,
        };
        let reply = match peer_of(conn) {
            Ok(peer) => answer(&buf[..len.min(buf.len())], len, &peer, ctx, conn, passed),
            Err(e) => Reply::Err(ErrorReply::new(
                ErrorCode::Failed,
                format!("reading the peer's credentials (SO_PEERCRED): {e}"),
            )),
        };
        let mut bytes = reply.encode();
        if bytes.len() > MAX_REPLY_SIZE {
            bytes = Reply::Err(ErrorReply::new(
                ErrorCode::Failed,
                format!(
                    "the reply would be {} bytes, more than the maximum of {MAX_REPLY_SIZE}",
                    bytes.len()
                ),
            ))
            .encode();
        }
        if send(conn, &bytes, SendFlags::NOSIGNAL).is_err() {
            return;
        }
    }
}

fn peer_of(conn: &OwnedFd) -> io::Result<Peer> {
    let cred = sockopt::socket_peercred(conn)?;
    Ok(Peer {
        pid: cred.pid.as_raw_nonzero().get() as u32,
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
    })
}

/// True once the peer closed `conn` or sent something (the way a client ends a stream), or the
/// server is stopping.
fn peer_gone(conn: &OwnedFd, stop: &AtomicBool) -> bool {
    let mut fds = [PollFd::new(conn, PollFlags::IN | PollFlags::RDHUP)];
    stop.load(Ordering::Relaxed)
        || matches!(poll(&mut fds, Some(&Timespec::default())), Ok(n) if n > 0)
}

/// Decodes, authorizes and carries out one request (a streaming one into `passed`).
fn answer(
    buf: &[u8],
    real_len: usize,
    peer: &Peer,
    ctx: &ConnCtx,
    conn: &OwnedFd,
    passed: Option<OwnedFd>,
) -> Reply {
    if real_len > MAX_REQUEST_SIZE {
        return Reply::Err(ErrorReply::too_large(real_len));
    }
    let req = match Request::decode(buf) {
        Ok(r) => r,
        Err(e) => return Reply::Err(e),
    };
    if req.is_change() {
        if let Err(required) = authorize(peer, ctx.admin.as_ref()) {
            log::warn!("control: refused `{req}` from {peer}: {required}");
            return Reply::Err(ErrorReply::new(ErrorCode::PermissionDenied, required));
        }
        log::info!(
            "control: `{req}` by pid {} uid {} (gid {})",
            peer.pid,
            peer.uid,
            peer.gid
        );
    }
    let done = if req.is_stream() {
        let Some(out) = passed else {
            return Reply::Err(ErrorReply::bad_request(format!(
                "`{req}` needs an output file descriptor passed with the request (SCM_RIGHTS)"
            )));
        };
        ctx.handler
            .handle_stream(&req, peer, out, &|| peer_gone(conn, &ctx.stop))
    } else {
        ctx.handler.handle(&req, peer)
    };
    match done {
        Ok(data) => Reply::Ok(data),
        Err(HandlerError::Failed(m)) => Reply::Err(ErrorReply::new(ErrorCode::Failed, m)),
    }
}

/// `Ok` if `peer` may make changes; otherwise what is required, for the reply.
fn authorize(peer: &Peer, admin: Option<&AdminGroup>) -> Result<(), String> {
    if peer.uid == 0 {
        return Ok(());
    }
    let Some(admin) = admin else {
        return Err(format!(
            "changes need root (no admin group configured; start sluice run with --admin-group); you are uid {}",
            peer.uid
        ));
    };
    if peer.gid == admin.gid || supplementary_groups(peer).contains(&admin.gid) {
        return Ok(());
    }
    Err(format!(
        "changes need root or membership of group {} (gid {}); you are uid {}",
        admin.name, admin.gid, peer.uid
    ))
}

/// The supplementary groups of the peer process, from `/proc/<pid>/status`.
///
/// `SO_PEERCRED` carries only the primary group, and no system call reports another process's
/// groups (`getgroups` and nix's wrapper of it answer for the caller only). The file is believed
/// only if it still belongs to a process of the peer's uid, so a peer that exits and whose pid is
/// reused by someone else's process does not borrow that process's groups. Empty when unreadable.
fn supplementary_groups(peer: &Peer) -> Vec<u32> {
    if peer.pid == 0 {
        return Vec::new();
    }
    std::fs::read_to_string(format!("/proc/{}/status", peer.pid))
        .ok()
        .and_then(|status| parse_status_groups(&status, peer.uid))
        .unwrap_or_default()
}

/// `Groups:` of a `/proc/<pid>/status`, if its effective uid (second `Uid:` field) is `uid`.
fn parse_status_groups(status: &str, uid: u32) -> Option<Vec<u32>> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::split_whitespace)
    };
    let euid: u32 = field("Uid:")?.nth(1)?.parse().ok()?;
    if euid != uid {
        return None;
    }
    Some(field("Groups:")?.filter_map(|g| g.parse().ok()).collect())
}

/// The name of group `gid` (from the system's group database, through NSS), for messages.
fn group_name(gid: u32) -> Option<String> {
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid));
    group.ok().flatten().map(|g| g.name)
}

/// The pid of the process whose listening socket holds `addr`: the credentials a connected
/// client sees are those of the process that called `listen`.
fn holder_pid(addr: &SocketAddrUnix) -> Option<u32> {
    let probe = socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .ok()?;
    connect(&probe, addr).ok()?;
    let cred = sockopt::socket_peercred(probe.as_fd()).ok()?;
    Some(cred.pid.as_raw_nonzero().get() as u32)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::control::ctl::{Client, CtlError};
    use crate::control::proto::{Ports, RulesRequest};
    use crate::steer::L4Proto;
    use serde_json::{Value, json};
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// Answers every request with its command and the peer's uid.
    struct Fake;

    impl Handler for Fake {
        fn handle(&self, req: &Request, peer: &Peer) -> Result<Value, HandlerError> {
            match req {
                Request::Routes => Err(HandlerError::Failed("no mirror".into())),
                _ => Ok(json!({"cmd": req.to_string(), "uid": peer.uid, "pid": peer.pid})),
            }
        }
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// A name no other test (or test run) uses. Inside a fresh network namespace any name would
    /// do; outside one, the pid keeps concurrent runs apart.
    fn unique_iface() -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!(
            "test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Runs `f` on a thread of its own, in a fresh network namespace when root (abstract socket
    /// names are per namespace), so tests never see a real engine's socket.
    fn isolated<F: FnOnce(String) + Send + 'static>(f: F) {
        let iface = unique_iface();
        std::thread::spawn(move || {
            if is_root() {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("unshare(CLONE_NEWNET)");
            }
            f(iface)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }

    fn serve(iface: &str, admin: Option<u32>) -> ServerHandle {
        ControlServer::bind(iface, admin)
            .unwrap()
            .spawn(Arc::new(Fake))
            .unwrap()
    }

    fn raw(c: &mut Client, bytes: &[u8]) -> Reply {
        Reply::decode(&c.send_raw(bytes).unwrap()).unwrap()
    }

    fn code(r: &Reply) -> ErrorCode {
        match r {
            Reply::Err(e) => e.code,
            Reply::Ok(v) => panic!("expected an error, got {v}"),
        }
    }

    #[test]
    fn status_round_trip() {
        isolated(|iface| {
            let server = serve(&iface, None);
            let reply = crate::control::ctl::request(&iface, &Request::Status).unwrap();
            let Reply::Ok(data) = reply else {
                panic!("{reply:?}")
            };
            assert_eq!(data["cmd"], "status");
            assert_eq!(data["pid"], std::process::id());
            assert_eq!(data["uid"], rustix::process::geteuid().as_raw());
            server.stop();
        });
    }

    #[test]
    fn errors_keep_the_connection_usable() {
        isolated(|iface| {
            let server = serve(&iface, None);
            let mut c = Client::connect(&iface).unwrap();
            assert_eq!(code(&raw(&mut c, b"{not json")), ErrorCode::BadJson);
            assert!(matches!(c.request(&Request::Stats).unwrap(), Reply::Ok(_)));
            let big = vec![b' '; MAX_REQUEST_SIZE + 1000];
            let r = raw(&mut c, &big);
            assert_eq!(code(&r), ErrorCode::TooLarge);
            assert_eq!(
                code(&raw(&mut c, br#"{"v":1,"cmd":"reboot"}"#)),
                ErrorCode::UnknownCommand
            );
            assert_eq!(
                code(&raw(&mut c, br#"{"v":9,"cmd":"status"}"#)),
                ErrorCode::UnsupportedVersion
            );
            let r = raw(
                &mut c,
                br#"{"v":1,"cmd":"rules","op":"add","proto":"udp","ports":5}"#,
            );
            let Reply::Err(e) = &r else { panic!("{r:?}") };
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.contains("`ports`"), "{e}");
            let r = c.request(&Request::Routes).unwrap();
            assert_eq!(
                r,
                Reply::Err(ErrorReply::new(ErrorCode::Failed, "no mirror"))
            );
            let Reply::Ok(data) = c.request(&Request::Rules(RulesRequest::List)).unwrap() else {
                panic!()
            };
            assert_eq!(data["cmd"], "rules list");
            drop(c);
            server.stop();
        });
    }

    #[test]
    fn second_bind_names_the_running_pid() {
        isolated(|iface| {
            let server = serve(&iface, None);
            let err = ControlServer::bind(&iface, None).unwrap_err();
            match &err {
                ControlError::AlreadyRunning { iface: i, pid } => {
                    assert_eq!(i, &iface);
                    assert_eq!(*pid, Some(std::process::id()));
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                err.to_string(),
                format!(
                    "another sluice already serves {iface} (pid {})",
                    std::process::id()
                )
            );
            // The first one keeps serving.
            assert!(matches!(
                crate::control::ctl::request(&iface, &Request::Status).unwrap(),
                Reply::Ok(_)
            ));
            server.stop();
            // And the name is free again once it stops.
            serve(&iface, None).stop();
        });
    }

    #[test]
    fn stop_is_bounded_with_idle_clients() {
        isolated(|iface| {
            let server = serve(&iface, None);
            let clients: Vec<Client> = (0..3).map(|_| Client::connect(&iface).unwrap()).collect();
            std::thread::sleep(Duration::from_millis(50));
            let t = Instant::now();
            server.stop();
            // Bounded by the poll interval; generous for a loaded CI machine.
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
            drop(clients);
            // The listener is closed when stop returns; a child process forked by a concurrent
            // test may hold a copy of the fd for the instant before its exec (CLOEXEC acts at
            // exec), so allow a moment before the name must be free.
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                let r = crate::control::ctl::request(&iface, &Request::Status);
                if matches!(r, Err(CtlError::NotRunning { .. })) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "still reachable after stop: {r:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }

    #[test]
    fn connections_beyond_the_limit_are_refused_politely() {
        isolated(|iface| {
            let server = serve(&iface, None);
            let mut held = Vec::new();
            for _ in 0..MAX_CONNECTIONS {
                let mut c = Client::connect(&iface).unwrap();
                assert!(matches!(c.request(&Request::Status).unwrap(), Reply::Ok(_)));
                held.push(c);
            }
            let r = crate::control::ctl::request(&iface, &Request::Status).unwrap();
            let Reply::Err(e) = r else { panic!("{r:?}") };
            assert!(e.message.contains("too many"), "{e}");
            held.pop();
            std::thread::sleep(POLL_INTERVAL * 2);
            assert!(matches!(
                crate::control::ctl::request(&iface, &Request::Status).unwrap(),
                Reply::Ok(_)
            ));
            server.stop();
        });
    }

    fn add_rule() -> Request {
        Request::Rules(RulesRequest::Add {
            proto: L4Proto::Udp,
            ports: Ports(vec![9100]),
        })
    }

    #[test]
    fn root_may_change() {
        if !is_root() {
            eprintln!("skipped: needs root (changes by uid 0)");
            return;
        }
        isolated(|iface| {
            let server = serve(&iface, None);
            let r = crate::control::ctl::request(&iface, &add_rule()).unwrap();
            let Reply::Ok(data) = r else { panic!("{r:?}") };
            assert_eq!(data["cmd"], "rules add udp 9100");
            server.stop();
        });
    }

    /// Env var that turns [`unprivileged_client_helper`] from a no-op into the client half of
    /// [`unprivileged_peer_reads_but_may_not_change`], run in a child process as uid 65534.
    const HELPER_ENV: &str = "SLUICE_CTL_TEST_HELPER_IFACE";

    #[test]
    fn unprivileged_client_helper() {
        let Ok(iface) = std::env::var(HELPER_ENV) else {
            return;
        };
        assert_eq!(rustix::process::geteuid().as_raw(), 65534);
        let mut c = Client::connect(&iface).unwrap();
        let r = c.request(&Request::Stats).unwrap();
        let Reply::Ok(data) = r else { panic!("{r:?}") };
        assert_eq!(data["uid"], 65534);
        let r = c.request(&add_rule()).unwrap();
        let Reply::Err(e) = r else { panic!("{r:?}") };
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(
            e.message
                .contains("changes need root or membership of group"),
            "{e}"
        );
        // What `sluice ctl` prints for it, and its exit code.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::control::ctl::run_requests(
            &iface,
            crate::control::ctl::DEFAULT_TIMEOUT,
            &[add_rule()],
            false,
            &mut out,
            &mut err,
        );
        assert_eq!(code, 1);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with("permission denied: changes need root or membership of group"),
            "{err}"
        );
        println!("HELPER-OK");
    }

    #[test]
    fn unprivileged_peer_reads_but_may_not_change() {
        if !is_root() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("needs root (setuid child) and CI=true forbids skipping");
            }
            eprintln!("skipped: needs root to run a client as uid 65534");
            return;
        }
        // Not in a fresh namespace: the child must see the same abstract names.
        let iface = unique_iface();
        let admin_gid = 4242; // a group the nobody child is not in
        let server = serve(&iface, Some(admin_gid));
        use std::os::unix::process::CommandExt;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "control::socket::test::unprivileged_client_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, &iface)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("HELPER-OK"),
            "helper failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        server.stop();
    }

    #[test]
    fn admin_group_membership() {
        let admin = AdminGroup {
            gid: 4242,
            name: "sluice".into(),
        };
        let peer = |uid, gid| Peer { pid: 0, uid, gid };
        assert!(authorize(&peer(0, 0), None).is_ok());
        assert!(authorize(&peer(0, 0), Some(&admin)).is_ok());
        assert!(authorize(&peer(1000, 4242), Some(&admin)).is_ok());
        let e = authorize(&peer(1000, 1000), Some(&admin)).unwrap_err();
        assert!(
            e.contains("changes need root or membership of group sluice"),
            "{e}"
        );
        let e = authorize(&peer(1000, 4242), None).unwrap_err();
        assert!(e.contains("changes need root"), "{e}");
    }

    #[test]
    fn group_names_come_from_the_group_database() {
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert_eq!(group_name(4_000_000_000), None);
    }

    #[test]
    fn proc_status_groups() {
        let status = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t4 24 4242 \n";
        assert_eq!(parse_status_groups(status, 1000), Some(vec![4, 24, 4242]));
        assert_eq!(parse_status_groups(status, 1001), None);
        let none = "Uid:\t5\t5\t5\t5\nGroups:\n";
        assert_eq!(parse_status_groups(none, 5), Some(vec![]));
    }
}
