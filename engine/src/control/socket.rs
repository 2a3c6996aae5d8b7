//! The control socket server: a `SOCK_SEQPACKET` Unix socket in the abstract namespace.
//!
//! Owns the socket named `sluice/<iface>`, the single-instance lock it doubles as (a second
//! bind fails with `EADDRINUSE`, and the name vanishes with the process), the accept loop, and
//! the permission check: reads for any local user, changes for uid 0 or the admin group, decided
//! from the peer's `SO_PEERCRED`. What a command does is the [`Handler`]'s business; this module
//! never touches the data plane and must never block the workers.
//!
//! Any local user may connect, so what a connection may hold is bounded ([`CtlLimits`]), and the
//! kernel's word on who is asking decides whose connections those are:
//!
//! - a connection that sends no request for [`CtlLimits::idle_timeout`] is closed;
//! - a uid outside root and the admin group may hold [`CtlLimits::max_per_user`] connections at
//!   once, and such uids together at most [`CtlLimits::max_connections`] less
//!   [`CtlLimits::admin_reserve`]: the reserve is root's and the admin group's alone, so no
//!   number of other users' connections keeps an operator from `sluice ctl status` or
//!   `shutdown`;
//! - a peer that never reads its replies holds its connection for at most [`SEND_TIMEOUT`] per
//!   reply before it is closed, and the accept loop never waits on a peer (its one message to a
//!   refused peer is sent without blocking), so nothing a peer does stalls the server;
//! - a refused connection gets one error reply and is closed; refusals (and refused changes) are
//!   logged at most once per uid per [`REFUSAL_LOG_INTERVAL`], naming the uid and pid and how
//!   many went unlogged, so a flood of them cannot flood the log.
//!
//! Abstract names are per network namespace, so "one engine per interface" holds per namespace,
//! which is also where interface names are unique.

use super::proto::{
    ErrorCode, ErrorReply, MAX_REPLY_SIZE, MAX_REQUEST_SIZE, Reply, Request, socket_addr,
    socket_name,
};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType, accept_with, bind, connect, listen, recvmsg, send, socket_with,
    sockopt,
};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the control socket lets its clients hold; `sluice run --ctl-*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtlLimits {
    /// Connections served at once, each on a thread of its own (`--ctl-max-connections`).
    pub max_connections: usize,
    /// Of those, how many only root and the admin group may use (`--ctl-admin-reserve`).
    pub admin_reserve: usize,
    /// Connections one uid outside root and the admin group may hold at once
    /// (`--ctl-max-per-user`).
    pub max_per_user: usize,
    /// A connection that sends no request for this long is closed (`--ctl-idle-timeout`).
    pub idle_timeout: Duration,
}

impl Default for CtlLimits {
    /// 32 connections, 8 of them kept for root and the admin group, 4 per other user, closed
    /// after 5 s without a request. Operators and scripts, not a fleet: `sluice ctl` makes one
    /// connection, sends at once and closes.
    fn default() -> Self {
        CtlLimits {
            max_connections: 32,
            admin_reserve: 8,
            max_per_user: 4,
            idle_timeout: Duration::from_secs(5),
        }
    }
}

impl CtlLimits {
    /// Every value workable, or the `sluice run` flag (without dashes) that is not and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1024).contains(&self.max_connections) {
            return Err((
                "ctl-max-connections",
                format!("{} is not 1 to 1024", self.max_connections),
            ));
        }
        if self.admin_reserve >= self.max_connections {
            return Err((
                "ctl-admin-reserve",
                format!(
                    "{} leaves no connection of the {} for other users, who may read",
                    self.admin_reserve, self.max_connections
                ),
            ));
        }
        if self.max_per_user == 0 {
            return Err(("ctl-max-per-user", "must be at least 1".into()));
        }
        if self.idle_timeout.is_zero() {
            return Err(("ctl-idle-timeout", "must be more than 0 seconds".into()));
        }
        Ok(())
    }
}

/// Pending connections the kernel queues before `accept`: room for a burst of refusals while a
/// real client waits its turn.
const BACKLOG: i32 = 64;

/// How long the accept loop and every connection wait in `poll` before looking at the stop flag;
/// bounds [`ServerHandle::stop`] and is the idle timeout's granularity.
const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// How long a reply may wait for room in a stuck peer's receive queue before the connection is
/// dropped, so one client that never reads cannot pin a connection thread.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Refused connections and refused changes are logged at most once per uid this often.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

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

    /// Takes over `conn` for a hot upgrade ([`super::takeover`]): `first` is the successor's
    /// `takeover` message, `peer` already authorized as for a change. `Err` is sent back as a
    /// refusal and the connection serves on; the default refuses.
    fn takeover(&self, conn: OwnedFd, peer: &Peer, first: &[u8]) -> Result<(), String> {
        let _ = (conn, peer, first);
        Err("this engine cannot hand over its data plane".into())
    }

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
    limits: CtlLimits,
}

impl fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlServer")
            .field("iface", &self.iface)
            .field("admin", &self.admin)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ControlServer {
    /// Binds `sluice/<iface>` and listens. Changes are allowed to root and, if given, to members
    /// of group `admin_gid`; connections are bounded by `limits`.
    ///
    /// Fails with [`ControlError::AlreadyRunning`] when another process holds the name; its pid
    /// comes from the credentials of its listening socket.
    pub fn bind(
        iface: &str,
        admin_gid: Option<u32>,
        limits: CtlLimits,
    ) -> Result<ControlServer, ControlError> {
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
            limits,
        })
    }

    /// Serves `listener`, a bound and listening control socket another engine passed over in a
    /// hot upgrade (the name, and with it the single-instance lock, moves with the fd).
    pub fn from_listener(
        listener: OwnedFd,
        iface: &str,
        admin_gid: Option<u32>,
        limits: CtlLimits,
    ) -> ControlServer {
        let _ = rustix::io::ioctl_fionbio(&listener, true);
        ControlServer {
            listener,
            iface: iface.to_string(),
            admin: admin_gid.map(|gid| AdminGroup {
                gid,
                name: group_name(gid).unwrap_or_else(|| gid.to_string()),
            }),
            limits,
        }
    }

    /// The listening socket, to pass to a successor in a hot upgrade.
    pub fn listener(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
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
            idle_timeout: self.limits.idle_timeout,
            refusals: Mutex::new(RefusalLog::new(REFUSAL_LOG_INTERVAL)),
            iface: self.iface.clone(),
        });
        let slots = Arc::new(Slots::new(self.limits));
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
            // Credentials as of the peer's connect; without them the peer cannot be placed.
            let Ok(peer) = peer_of(&conn) else {
                continue;
            };
            let admin = authorize(&peer, self.admin.as_ref()).is_ok();
            let slot = match slots.take(peer.uid, admin) {
                Ok(slot) => slot,
                Err(refusal) => {
                    let message = refusal.to_string();
                    ctx.log_refusal(&peer, "connection", &message);
                    let reply = Reply::Err(ErrorReply::new(ErrorCode::Failed, message));
                    // Never waits: a peer whose queue is full simply gets no explanation.
                    let _ = send(
                        &conn,
                        &reply.encode(),
                        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                    );
                    continue;
                }
            };
            let ctx = ctx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ctl-{}-conn", self.iface))
                .spawn(move || {
                    let _slot = slot;
                    serve_connection(&conn, &peer, &ctx);
                });
            match spawned {
                Ok(t) => conns.push(t),
                // The closure, and with it the connection and its slot, is gone.
                Err(e) => log::warn!("control socket sluice/{}: no thread: {e}", self.iface),
            }
        }
        for t in conns {
            let _ = t.join();
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    /// Every slot is taken.
    #[error("too many control connections ({max}); try again")]
    Full {
        /// All slots.
        max: usize,
    },
    /// The slots open to users outside root and the admin group are taken.
    #[error(
        "too many control connections ({open} held by users outside the admin group; the other {reserve} are kept for root and the admin group); try again"
    )]
    Shared {
        /// Slots open to them.
        open: usize,
        /// Slots kept for root and the admin group.
        reserve: usize,
    },
    /// This uid holds as many as one user may.
    #[error(
        "too many control connections from uid {uid} (at most {max} per user); close one and try again"
    )]
    PerUser {
        /// The peer's uid.
        uid: u32,
        /// The cap.
        max: usize,
    },
}

/// The connections held, by whom: the accept loop takes a [`Slot`] for each connection it
/// serves, and the connection's thread gives it back when it ends.
struct Slots {
    limits: CtlLimits,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// All connections.
    open: usize,
    /// Connections of users outside root and the admin group, in all and per uid.
    shared: usize,
    per_uid: HashMap<u32, usize>,
}

impl Slots {
    fn new(limits: CtlLimits) -> Slots {
        Slots {
            limits,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // Consistent after every statement: a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a connection of `uid`, an administrator (root or the admin group) or not.
    fn take(self: &Arc<Self>, uid: u32, admin: bool) -> Result<Slot, Refusal> {
        let l = &self.limits;
        let mut s = self.lock();
        if s.open >= l.max_connections {
            return Err(Refusal::Full {
                max: l.max_connections,
            });
        }
        if !admin {
            let shared_max = l.max_connections.saturating_sub(l.admin_reserve);
            if s.shared >= shared_max {
                return Err(Refusal::Shared {
                    open: shared_max,
                    reserve: l.admin_reserve,
                });
            }
            let mine = s.per_uid.entry(uid).or_default();
            if *mine >= l.max_per_user {
                return Err(Refusal::PerUser {
                    uid,
                    max: l.max_per_user,
                });
            }
            *mine += 1;
            s.shared += 1;
        }
        s.open += 1;
        Ok(Slot {
            slots: self.clone(),
            shared_uid: (!admin).then_some(uid),
        })
    }
}

/// One connection's place; given back on drop.
struct Slot {
    slots: Arc<Slots>,
    /// The uid it counts against, if it is a shared slot.
    shared_uid: Option<u32>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock();
        s.open -= 1;
        if let Some(uid) = self.shared_uid {
            s.shared -= 1;
            if let Some(n) = s.per_uid.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    s.per_uid.remove(&uid);
                }
            }
        }
    }
}

/// Which refusals get a log line: the first of each kind per uid per interval; the rest are
/// counted and the count goes out with the next line.
struct RefusalLog {
    interval: Duration,
    /// (uid, kind) → when last logged, and how many since went unlogged.
    last: HashMap<(u32, &'static str), (Instant, u64)>,
}

/// Entries kept before stale ones are swept (a host has only so many uids, but the map must not
/// grow without bound in any case).
const REFUSAL_LOG_ENTRIES: usize = 1024;

impl RefusalLog {
    fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            last: HashMap::new(),
        }
    }

    /// `Some(unlogged since the last line)` if this refusal should be logged at `now`.
    fn note(&mut self, uid: u32, kind: &'static str, now: Instant) -> Option<u64> {
        if let Some((at, skipped)) = self.last.get_mut(&(uid, kind)) {
            if now.duration_since(*at) < self.interval {
                *skipped += 1;
                return None;
            }
            let n = *skipped;
            *at = now;
            *skipped = 0;
            return Some(n);
        }
        if self.last.len() >= REFUSAL_LOG_ENTRIES {
            let interval = self.interval;
            self.last
                .retain(|_, (at, _)| now.duration_since(*at) < interval);
            if self.last.len() >= REFUSAL_LOG_ENTRIES {
                return None; // a flood of distinct uids: stay quiet rather than grow
            }
        }
        self.last.insert((uid, kind), (now, 0));
        Some(0)
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
    idle_timeout: Duration,
    refusals: Mutex<RefusalLog>,
    iface: String,
}

impl ConnCtx {
    /// Log a refusal of `what` to `peer`, rate-limited per uid (see [`RefusalLog`]).
    fn log_refusal(&self, peer: &Peer, what: &'static str, why: &str) {
        let noted = self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(peer.uid, what, Instant::now());
        let Some(unlogged) = noted else { return };
        let more = match unlogged {
            0 => String::new(),
            n => format!(
                " ({n} more {what} refusals of uid {} in the last {}s went unlogged)",
                peer.uid,
                REFUSAL_LOG_INTERVAL.as_secs()
            ),
        };
        log::warn!(
            "control socket sluice/{}: refused a {what} from pid {} uid {}: {why}{more}",
            self.iface,
            peer.pid,
            peer.uid
        );
    }
}

/// Waits up to [`POLL_INTERVAL`] for `fd` to become readable (or hung up).
fn wait_readable(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let timeout = Timespec::try_from(POLL_INTERVAL).expect("a small duration fits a timespec");
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// Serves one connection until the peer closes it, stays silent for the idle timeout, an I/O
/// error (a reply it did not take within [`SEND_TIMEOUT`] included), or the server stops.
fn serve_connection(conn: &OwnedFd, peer: &Peer, ctx: &ConnCtx) {
    // The kernel refuses a SEQPACKET message larger than the send buffer; raise it so a reply of
    // MAX_REPLY_SIZE fits (it caps the value at net.core.wmem_max, and doubles it).
    let _ = sockopt::set_socket_send_buffer_size(conn, MAX_REPLY_SIZE + 4096);
    if sockopt::set_socket_timeout(conn, sockopt::Timeout::Send, Some(SEND_TIMEOUT)).is_err() {
        return; // without it a peer that never reads could pin this thread
    }
    // One byte more than the limit, and MSG_TRUNC for the real length, tells "too large" apart.
    let mut buf = vec![0u8; MAX_REQUEST_SIZE + 1];
    let mut last = Instant::now();
    while !ctx.stop.load(Ordering::Relaxed) {
        if !wait_readable(conn) {
            if last.elapsed() >= ctx.idle_timeout {
                log::debug!(
                    "control socket sluice/{}: closed {peer}'s connection after {:?} without a request",
                    ctx.iface,
                    ctx.idle_timeout
                );
                return;
            }
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
        let msg = &buf[..len.min(buf.len())];
        if len <= MAX_REQUEST_SIZE && super::takeover::Msg::is_takeover(msg) {
            if takeover(conn, msg, ctx) {
                return; // the engine has the connection now
            }
            continue;
        }
        let reply = answer(msg, len, peer, ctx, conn, passed);
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
        last = Instant::now();
    }
}

/// A `takeover` on `conn`: authorized like a change, then the connection goes to the handler.
/// Returns true if the handler took it; otherwise a refusal was sent.
fn takeover(conn: &OwnedFd, msg: &[u8], ctx: &ConnCtx) -> bool {
    use super::takeover::{Msg, send};
    let refuse = |reason: String| {
        log::warn!("control: takeover refused: {reason}");
        let _ = send(conn.as_fd(), &Msg::Refused { reason }, &[]);
        false
    };
    let peer = match peer_of(conn) {
        Ok(p) => p,
        Err(e) => return refuse(format!("reading the peer's credentials (SO_PEERCRED): {e}")),
    };
    if let Err(required) = authorize(&peer, ctx.admin.as_ref()) {
        return refuse(required);
    }
    log::info!("control: takeover asked by {peer}");
    let dup = match conn.try_clone() {
        Ok(d) => d,
        Err(e) => return refuse(format!("duplicating the connection: {e}")),
    };
    match ctx.handler.takeover(dup, &peer, msg) {
        Ok(()) => true,
        Err(reason) => refuse(reason),
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
            ctx.log_refusal(peer, "change", &format!("`{req}`: {required}"));
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
    use rustix::net::recv;
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
        serve_with(iface, admin, CtlLimits::default())
    }

    fn serve_with(iface: &str, admin: Option<u32>, limits: CtlLimits) -> ServerHandle {
        ControlServer::bind(iface, admin, limits)
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
            let err = ControlServer::bind(&iface, None, CtlLimits::default()).unwrap_err();
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
            for _ in 0..CtlLimits::default().max_connections {
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

    /// A bare connection to the server of `iface`, for tests that misbehave on purpose.
    fn raw_connect(iface: &str) -> OwnedFd {
        let fd = socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        connect(&fd, &socket_addr(iface).unwrap()).unwrap();
        fd
    }

    /// Sends `stats` on `fd` and waits (bounded) for the reply.
    fn ask(fd: &OwnedFd) -> Reply {
        send(fd, &Request::Stats.encode(), SendFlags::NOSIGNAL).unwrap();
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let two = Timespec::try_from(Duration::from_secs(2)).unwrap();
        assert!(matches!(poll(&mut fds, Some(&two)), Ok(1)), "no reply");
        let mut buf = vec![0u8; MAX_REPLY_SIZE];
        let (_, n) = recv(fd, &mut buf[..], RecvFlags::DONTWAIT).unwrap();
        Reply::decode(&buf[..n]).unwrap()
    }

    /// Whether the server has closed `fd`'s connection within `within` (EOF on a read).
    fn closed_within(fd: &OwnedFd, within: Duration) -> bool {
        let end = Instant::now() + within;
        let mut buf = [0u8; 256];
        while Instant::now() < end {
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            let slice = Timespec::try_from(Duration::from_millis(20)).unwrap();
            if matches!(poll(&mut fds, Some(&slice)), Ok(n) if n > 0) {
                match recv(fd, &mut buf[..], RecvFlags::DONTWAIT) {
                    Ok((_, 0)) | Err(Errno::CONNRESET) => return true,
                    _ => {}
                }
            }
        }
        false
    }

    #[test]
    fn idle_connections_are_closed() {
        isolated(|iface| {
            let limits = CtlLimits {
                idle_timeout: Duration::from_millis(400),
                ..CtlLimits::default()
            };
            let server = serve_with(&iface, None, limits);
            let silent = raw_connect(&iface);
            let busy = raw_connect(&iface);
            let t = Instant::now();
            // A client that keeps asking is not idle, however long it stays.
            while t.elapsed() < Duration::from_millis(900) {
                assert!(matches!(ask(&busy), Reply::Ok(_)));
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(closed_within(&silent, Duration::from_millis(10)));
            assert!(!closed_within(&busy, Duration::from_millis(10)));
            assert!(closed_within(&busy, Duration::from_secs(2)));
            server.stop();
        });
    }

    #[test]
    fn a_peer_that_never_reads_stalls_nobody() {
        isolated(|iface| {
            let server = serve(&iface, None);
            let deaf = raw_connect(&iface);
            let request = Request::Stats.encode();
            // Requests until the server stops taking them: it stops when its replies fill the
            // connection's send buffer (a connected SEQPACKET pair is bounded by the sender's
            // buffer only), and it then waits at most SEND_TIMEOUT for room before giving up.
            sockopt::set_socket_timeout(
                &deaf,
                sockopt::Timeout::Send,
                Some(Duration::from_millis(200)),
            )
            .unwrap();
            let mut sent = 0;
            for _ in 0..1_000_000 {
                match send(&deaf, &request, SendFlags::NOSIGNAL) {
                    Ok(_) => sent += 1,
                    Err(_) => break,
                }
            }
            assert!(sent > 20, "{sent}");
            let t = Instant::now();
            for _ in 0..5 {
                let r = crate::control::ctl::request(&iface, &Request::Status).unwrap();
                assert!(matches!(r, Reply::Ok(_)), "{r:?}");
            }
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "{:?}",
                t.elapsed()
            );
            // And its own connection is dropped once a reply has waited SEND_TIMEOUT.
            let t = Instant::now();
            let mut buf = vec![0u8; MAX_REPLY_SIZE];
            let mut replies = 0;
            loop {
                // Read slowly only after the server gave up: what is queued, then EOF.
                if t.elapsed() < SEND_TIMEOUT + Duration::from_secs(1) {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                match recv(&deaf, &mut buf[..], RecvFlags::DONTWAIT) {
                    Ok((_, 0)) | Err(Errno::CONNRESET) => break,
                    Ok(_) => replies += 1,
                    Err(Errno::AGAIN) => panic!("still open after {:?}", t.elapsed()),
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(replies < sent, "{replies} of {sent}");
            server.stop();
        });
    }

    #[test]
    fn slots_keep_a_reserve_and_cap_each_user() {
        let limits = CtlLimits {
            max_connections: 6,
            admin_reserve: 2,
            max_per_user: 2,
            idle_timeout: Duration::from_secs(5),
        };
        let slots = Arc::new(Slots::new(limits));
        let a1 = slots.take(1000, false).unwrap();
        let _a2 = slots.take(1000, false).unwrap();
        assert_eq!(
            slots.take(1000, false).err(),
            Some(Refusal::PerUser { uid: 1000, max: 2 })
        );
        let _b = (
            slots.take(1001, false).unwrap(),
            slots.take(1001, false).unwrap(),
        );
        // Four shared slots are taken: the last two are root's and the admin group's.
        let e = slots.take(1002, false).err().unwrap();
        assert_eq!(
            e,
            Refusal::Shared {
                open: 4,
                reserve: 2
            }
        );
        assert!(
            e.to_string().contains("kept for root and the admin group"),
            "{e}"
        );
        let r1 = slots.take(0, true).unwrap();
        let _r2 = slots.take(4242, true).unwrap();
        assert_eq!(slots.take(0, true).err(), Some(Refusal::Full { max: 6 }));
        assert!(
            Refusal::Full { max: 6 }.to_string().contains("too many"),
            "the client's retry hint"
        );
        // Given back on drop, to whoever asks next.
        drop(r1);
        drop(a1);
        let _c = slots.take(1002, false).unwrap();
        assert!(
            slots.take(1000, false).is_err(),
            "shared slots are full again"
        );
        let _r = slots.take(0, true).unwrap();
        let s = slots.lock();
        assert_eq!((s.open, s.shared), (6, 4));
        assert_eq!(s.per_uid.get(&1000), Some(&1));
    }

    #[test]
    fn refusals_are_logged_once_per_uid_per_interval() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(log.note(1000, "connection", at(0)), Some(0));
        assert_eq!(log.note(1000, "connection", at(1)), None);
        assert_eq!(log.note(1000, "connection", at(9)), None);
        assert_eq!(log.note(1000, "change", at(9)), Some(0), "another kind");
        assert_eq!(log.note(1001, "connection", at(9)), Some(0), "another uid");
        assert_eq!(log.note(1000, "connection", at(10)), Some(2));
        assert_eq!(log.note(1000, "connection", at(11)), None);
        // Bounded: stale entries are swept, and past the bound new uids go unlogged.
        for uid in 0..REFUSAL_LOG_ENTRIES as u32 * 2 {
            let _ = log.note(10_000 + uid, "connection", at(12));
        }
        assert!(log.last.len() <= REFUSAL_LOG_ENTRIES);
        assert_eq!(
            log.note(1, "connection", at(100)),
            Some(0),
            "swept once stale"
        );
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
