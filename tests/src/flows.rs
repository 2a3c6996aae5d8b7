//! Many short client flows at once, each reporting which backend answered it: the client side
//! of [`crate::BackendService`], for load-balancer tests.
//!
//! This module owns the client half of the service protocol and the bounded, poll-driven
//! driving of thousands of sockets. A flow's failure is its own result, never a panic or an
//! early return: a test sees every flow's fate. It only ever talks to the target it is given,
//! from sockets in the namespace it is given.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, SockType, sockopt};

use crate::error::Result;
use crate::netns::Netns;
use crate::sock;

/// Longest single `poll` wait, so deadlines and resends are looked at this often.
const POLL_SLICE: Duration = Duration::from_millis(20);
/// Longest answer accepted (a backend name, a space and the flow's line).
const MAX_ANSWER: usize = 4096;
/// Descriptors kept in reserve beyond a batch's own when the open-files limit is raised.
const FD_RESERVE: u64 = 1024;

/// Which source ports a set of flows uses. A flow's identity is (client address, source
/// port): sending the same [`Sources::Ports`] again sends the same 5-tuples again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    /// This many flows from ports the kernel picks.
    Ephemeral(usize),
    /// One flow per port, in this order (flow `i` uses `ports[i]`). Pick ports outside the
    /// ephemeral range (32768–60999 by default), e.g. 20000 and up, so they are free.
    Ports(Vec<u16>),
}

impl Sources {
    /// `count` consecutive ports from `first` on.
    ///
    /// # Panics
    ///
    /// If the range would go past port 65535.
    pub fn range(first: u16, count: usize) -> Sources {
        let last = usize::from(first) + count;
        assert!(last <= 65536, "{count} ports from {first} go past 65535");
        Sources::Ports((usize::from(first)..last).map(|p| p as u16).collect())
    }

    /// How many flows.
    pub fn len(&self) -> usize {
        match self {
            Sources::Ephemeral(n) => *n,
            Sources::Ports(p) => p.len(),
        }
    }

    /// No flows at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fixed port of flow `i`, if the ports are fixed.
    fn port(&self, i: usize) -> Option<u16> {
        match self {
            Sources::Ephemeral(_) => None,
            Sources::Ports(p) => p.get(i).copied(),
        }
    }
}

/// Limits of a run of flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowOpts {
    /// How long a batch of flows may take, from its first packet to its last answer; a flow
    /// not answered by then is a [`FlowError::Timeout`].
    pub timeout: Duration,
    /// UDP: how often a datagram is sent (evenly spread over `timeout`) before the flow is
    /// given up. All sends of one flow use the same socket, hence the same 5-tuple.
    pub udp_sends: u32,
    /// How many flows are in flight at once (one socket each). The run's worst case is
    /// `ceil(flows / batch) × timeout`.
    pub batch: usize,
}

impl Default for FlowOpts {
    /// 2 s per batch, 3 UDP sends, 256 flows at a time.
    fn default() -> Self {
        FlowOpts {
            timeout: Duration::from_secs(2),
            udp_sends: 3,
            batch: 256,
        }
    }
}

/// Why a flow got no (good) answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Creating, binding or connecting the socket failed locally.
    #[error("{op}: {message}")]
    Socket {
        /// The step.
        op: &'static str,
        /// The error.
        message: String,
    },
    /// The connection was refused (RST to the SYN) or the datagram drew an ICMP port or host
    /// unreachable.
    #[error("refused")]
    Refused,
    /// The established connection was reset.
    #[error("connection reset")]
    Reset,
    /// The server closed the connection without answering the line.
    #[error("closed before the answer")]
    Closed,
    /// Nothing came within the batch's time.
    #[error("no {stage} within {waited:?}")]
    Timeout {
        /// What was awaited: "connection" or "answer".
        stage: &'static str,
        /// How long.
        waited: Duration,
    },
    /// An answer that is not `"<name> <what was sent>"`.
    #[error("unexpected answer {0:?}")]
    BadAnswer(String),
    /// Some other socket error while sending or receiving.
    #[error("{0}")]
    Io(String),
    /// [`TcpSessions::exchange`] on a flow whose connection never opened or has failed.
    #[error("no open connection")]
    NotOpen,
}

/// What one flow came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowResult {
    /// The flow's number, 0-based, in the order of the [`Sources`].
    pub id: usize,
    /// The client's (address, port) of the flow, once its socket was bound or connected.
    pub source: Option<SocketAddr>,
    /// The name of the backend that answered, or why none did.
    pub outcome: std::result::Result<String, FlowError>,
}

impl FlowResult {
    /// The backend that answered, if one did.
    pub fn backend(&self) -> Option<&str> {
        self.outcome.as_deref().ok()
    }
}

/// How many flows each backend answered (backends that answered none are absent).
pub fn count_by_backend(results: &[FlowResult]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in results {
        if let Some(b) = r.backend() {
            *out.entry(b.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// The flows that got no good answer.
pub fn failures(results: &[FlowResult]) -> Vec<&FlowResult> {
    results.iter().filter(|r| r.outcome.is_err()).collect()
}

/// A one-line summary of failures for an assertion message: how many, per error, and the
/// first few.
pub fn describe_failures(results: &[FlowResult]) -> String {
    let failed = failures(results);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for f in &failed {
        if let Err(e) = &f.outcome {
            *kinds.entry(e.to_string()).or_insert(0) += 1;
        }
    }
    let first: Vec<String> = failed
        .iter()
        .take(5)
        .map(|f| format!("#{} from {:?}: {:?}", f.id, f.source, f.outcome))
        .collect();
    format!(
        "{} of {} flows failed ({kinds:?}); first: {first:?}",
        failed.len(),
        results.len()
    )
}

/// One UDP datagram per flow to `target`, from sockets in `ns` (one socket per flow, connected
/// to `target`, so only answers from `target` itself count); each flow's result says which
/// backend answered. Flow `i` sends `"flow i"`.
///
/// Errors only if `ns` can't be entered; every flow's own failure is in its result.
pub fn udp_flows(
    ns: &Netns,
    target: SocketAddr,
    sources: &Sources,
    opts: &FlowOpts,
) -> Result<Vec<FlowResult>> {
    raise_fd_limit(opts.batch);
    ns.run(|| {
        let mut out = Vec::with_capacity(sources.len());
        for start in (0..sources.len()).step_by(opts.batch.max(1)) {
            let end = (start + opts.batch.max(1)).min(sources.len());
            out.extend(udp_batch(target, sources, start..end, opts));
        }
        out
    })
}

/// One TCP connection per flow to `target` from `ns`: connect, send the line `"flow i"`, read
/// the answer, close. With fixed [`Sources::Ports`] the connection is closed with a reset
/// (`SO_LINGER` 0), so the same ports can be used again at once; a normal close would leave
/// each 4-tuple in `TIME_WAIT` for a minute.
///
/// Errors only if `ns` can't be entered; every flow's own failure is in its result.
pub fn tcp_flows(
    ns: &Netns,
    target: SocketAddr,
    sources: &Sources,
    opts: &FlowOpts,
) -> Result<Vec<FlowResult>> {
    raise_fd_limit(opts.batch);
    let abort = matches!(sources, Sources::Ports(_));
    ns.run(|| {
        let mut out = Vec::with_capacity(sources.len());
        for start in (0..sources.len()).step_by(opts.batch.max(1)) {
            let end = (start + opts.batch.max(1)).min(sources.len());
            let mut batch = tcp_connect_batch(target, sources, start..end);
            drive_tcp(&mut batch, opts.timeout);
            for f in batch {
                if abort && let Some(s) = &f.stream {
                    let _ = socket::setsockopt(
                        s,
                        sockopt::Linger,
                        &libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        },
                    );
                }
                out.push(f.result());
            }
        }
        out
    })
}

/// TCP connections that stay open: each answered its first line (`"flow i"`) and can be asked
/// again with [`TcpSessions::exchange`], to see which backend answers an established
/// connection. Dropping it closes them all (normally, with FIN).
#[derive(Debug)]
pub struct TcpSessions {
    flows: Vec<TcpFlow>,
    opts: FlowOpts,
}

impl TcpSessions {
    /// Opens one connection per flow to `target` from `ns` (`opts.batch` at a time) and
    /// exchanges the first line on each; returns them with those first results. Every
    /// connection stays open, so this needs one descriptor per flow: the open-files limit is
    /// raised as far as the hard limit allows.
    pub fn open(
        ns: &Netns,
        target: SocketAddr,
        sources: &Sources,
        opts: &FlowOpts,
    ) -> Result<(TcpSessions, Vec<FlowResult>)> {
        raise_fd_limit(sources.len());
        let flows = ns.run(|| {
            let mut all = Vec::with_capacity(sources.len());
            for start in (0..sources.len()).step_by(opts.batch.max(1)) {
                let end = (start + opts.batch.max(1)).min(sources.len());
                let mut batch = tcp_connect_batch(target, sources, start..end);
                drive_tcp(&mut batch, opts.timeout);
                all.extend(batch);
            }
            all
        })?;
        let results = flows.iter().map(TcpFlow::result).collect();
        Ok((
            TcpSessions {
                flows,
                opts: opts.clone(),
            },
            results,
        ))
    }

    /// Sends the line `"flow i round R"` on every connection still open and reads the
    /// answers (`opts.batch` at a time, each batch bounded by `opts.timeout`). A connection
    /// that failed before, or fails now, has an error result (and is not used again).
    pub fn exchange(&mut self, round: u32) -> Vec<FlowResult> {
        let batch = self.opts.batch.max(1);
        let mut out = Vec::with_capacity(self.flows.len());
        for chunk in self.flows.chunks_mut(batch) {
            for f in chunk.iter_mut() {
                f.ask(&format!("flow {} round {round}", f.id));
            }
            drive_tcp(chunk, self.opts.timeout);
            out.extend(chunk.iter().map(TcpFlow::result));
        }
        out
    }

    /// How many connections there are (open or failed).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// No connections at all.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// How many are still open.
    pub fn open_count(&self) -> usize {
        self.flows.iter().filter(|f| f.stream.is_some()).count()
    }
}

/// Raises the open-files limit so `flows` sockets (plus a reserve) fit; a failure only logs,
/// since the flows then report their own `EMFILE`.
fn raise_fd_limit(flows: usize) {
    let want = flows as u64 + FD_RESERVE;
    match crate::sys::raise_nofile_limit(want) {
        Ok(got) if got < want => log::warn!(
            "open-files limit is {got}, below the {want} wanted for {flows} flows (hard limit)"
        ),
        Ok(_) => {}
        Err(e) => log::warn!("raising the open-files limit to {want}: {e}"),
    }
}

/// What a flow waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Answer,
    Done,
}

#[derive(Debug)]
struct TcpFlow {
    id: usize,
    stream: Option<TcpStream>,
    source: Option<SocketAddr>,
    stage: Stage,
    /// The line sent, without its newline.
    sent: String,
    got: Vec<u8>,
    outcome: std::result::Result<String, FlowError>,
}

impl TcpFlow {
    fn failed(&mut self, e: FlowError) {
        self.outcome = Err(e);
        self.stage = Stage::Done;
        self.stream = None;
    }

    fn result(&self) -> FlowResult {
        FlowResult {
            id: self.id,
            source: self.source,
            outcome: self.outcome.clone(),
        }
    }

    /// Sends `line` and waits for its answer (when the connection is open).
    fn ask(&mut self, line: &str) {
        self.sent = line.to_owned();
        self.got.clear();
        let Some(s) = self.stream.as_mut() else {
            self.outcome = Err(FlowError::NotOpen);
            self.stage = Stage::Done;
            return;
        };
        // A line of a few dozen bytes always fits a fresh send buffer: one write.
        match s.write(format!("{line}\n").as_bytes()) {
            Ok(n) if n == line.len() + 1 => {
                self.stage = Stage::Answer;
                self.outcome = Err(FlowError::Io("not answered yet".into()));
            }
            Ok(n) => self.failed(FlowError::Io(format!("short write: {n} bytes"))),
            Err(e) => self.failed(io_flow_error(&e)),
        }
    }

    /// The socket is writable while connecting: connected, or failed.
    fn connected(&mut self) {
        let Some(s) = self.stream.as_ref() else {
            return;
        };
        match sock::take_error(s).map_err(|e| format!("SO_ERROR: {e}")) {
            Ok(None) => {
                if let Ok(a) = s.local_addr() {
                    self.source = Some(a);
                }
                let line = self.sent.clone();
                self.ask(&line);
            }
            Ok(Some(e)) => self.failed(io_flow_error(&e)),
            Err(m) => self.failed(FlowError::Io(m)),
        }
    }

    /// The socket is readable while waiting for the answer.
    fn readable(&mut self, buf: &mut [u8]) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        match s.read(buf) {
            Ok(0) => self.failed(FlowError::Closed),
            Ok(n) => {
                self.got.extend_from_slice(&buf[..n]);
                if let Some(pos) = self.got.iter().position(|&b| b == b'\n') {
                    let answer = String::from_utf8_lossy(&self.got[..pos]).into_owned();
                    self.outcome = parse_answer(&answer, &self.sent);
                    self.stage = Stage::Done;
                    if self.outcome.is_err() {
                        self.stream = None;
                    }
                } else if self.got.len() > MAX_ANSWER {
                    let answer = String::from_utf8_lossy(&self.got).into_owned();
                    self.failed(FlowError::BadAnswer(answer));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.failed(io_flow_error(&e)),
        }
    }
}

/// Creates the sockets of flows `ids` and starts connecting them (in the calling thread's
/// namespace).
fn tcp_connect_batch(
    target: SocketAddr,
    sources: &Sources,
    ids: std::ops::Range<usize>,
) -> Vec<TcpFlow> {
    ids.map(|id| {
        let mut f = TcpFlow {
            id,
            stream: None,
            source: None,
            stage: Stage::Connecting,
            sent: format!("flow {id}"),
            got: Vec::new(),
            outcome: Err(FlowError::Io("not started".into())),
        };
        match open_socket(target, sources.port(id), SockType::Stream) {
            Ok((fd, bound)) => {
                f.source = bound;
                match sock::connect(&fd, target) {
                    Ok(done) => {
                        f.stream = Some(TcpStream::from(fd));
                        if done {
                            f.connected();
                        }
                    }
                    Err(e) => f.failed(connect_error(&e)),
                }
            }
            Err(e) => f.failed(e),
        }
        f
    })
    .collect()
}

/// Polls the flows until each is done or `timeout` passed; the rest time out.
fn drive_tcp(flows: &mut [TcpFlow], timeout: Duration) {
    let start = Instant::now();
    let mut buf = vec![0u8; MAX_ANSWER];
    loop {
        let waiting: Vec<usize> = (0..flows.len())
            .filter(|&i| flows[i].stage != Stage::Done)
            .collect();
        let left = timeout.saturating_sub(start.elapsed());
        if waiting.is_empty() {
            return;
        }
        if left.is_zero() {
            for &i in &waiting {
                let stage = match flows[i].stage {
                    Stage::Connecting => "connection",
                    _ => "answer",
                };
                flows[i].failed(FlowError::Timeout {
                    stage,
                    waited: timeout,
                });
            }
            return;
        }
        let ready: Vec<PollFlags> = {
            let mut fds: Vec<PollFd<'_>> = waiting
                .iter()
                .filter_map(|&i| {
                    let f = &flows[i];
                    let ev = if f.stage == Stage::Connecting {
                        PollFlags::POLLOUT
                    } else {
                        PollFlags::POLLIN
                    };
                    f.stream.as_ref().map(|s| PollFd::new(s.as_fd(), ev))
                })
                .collect();
            if fds.len() != waiting.len() {
                // A flow waiting without a socket can't happen; fail it rather than spin.
                for &i in &waiting {
                    if flows[i].stream.is_none() {
                        flows[i].failed(FlowError::Io("lost its socket".into()));
                    }
                }
                continue;
            }
            match nix::poll::poll(&mut fds, poll_timeout(left)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    for &i in &waiting {
                        flows[i].failed(FlowError::Io(format!("poll: {e}")));
                    }
                    return;
                }
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        for (&i, ev) in waiting.iter().zip(ready) {
            if ev.is_empty() {
                continue;
            }
            match flows[i].stage {
                Stage::Connecting => flows[i].connected(),
                Stage::Answer => flows[i].readable(&mut buf),
                Stage::Done => {}
            }
        }
    }
}

/// One UDP flow in flight.
struct UdpFlow {
    id: usize,
    sock: Option<UdpSocket>,
    source: Option<SocketAddr>,
    sent: String,
    outcome: Option<std::result::Result<String, FlowError>>,
}

impl UdpFlow {
    fn send(&mut self) {
        let Some(s) = &self.sock else { return };
        match s.send(self.sent.as_bytes()) {
            Ok(_) => {}
            // An earlier datagram drew an ICMP error, reported on this send.
            Err(e) if is_refused(&e) => self.outcome = Some(Err(FlowError::Refused)),
            // A full send buffer: the next resend tries again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.outcome = Some(Err(FlowError::Io(format!("send: {e}")))),
        }
    }

    fn readable(&mut self, buf: &mut [u8]) {
        let Some(s) = &self.sock else { return };
        match s.recv(buf) {
            Ok(n) => {
                let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.outcome = Some(parse_answer(&answer, &self.sent));
            }
            Err(e) if is_refused(&e) => self.outcome = Some(Err(FlowError::Refused)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.outcome = Some(Err(FlowError::Io(format!("recv: {e}")))),
        }
    }
}

/// Runs flows `ids` to completion (in the calling thread's namespace).
fn udp_batch(
    target: SocketAddr,
    sources: &Sources,
    ids: std::ops::Range<usize>,
    opts: &FlowOpts,
) -> Vec<FlowResult> {
    let mut flows: Vec<UdpFlow> = ids
        .map(|id| {
            let mut f = UdpFlow {
                id,
                sock: None,
                source: None,
                sent: format!("flow {id}"),
                outcome: None,
            };
            match open_socket(target, sources.port(id), SockType::Datagram) {
                Ok((fd, _)) => match sock::connect(&fd, target) {
                    Ok(_) => {
                        f.source = sock::local_addr(&fd).ok();
                        f.sock = Some(UdpSocket::from(fd));
                        f.send();
                    }
                    Err(e) => f.outcome = Some(Err(connect_error(&e))),
                },
                Err(e) => f.outcome = Some(Err(e)),
            }
            f
        })
        .collect();

    let start = Instant::now();
    let sends = opts.udp_sends.max(1);
    let resend_every = opts.timeout / sends;
    let mut sent = 1;
    let mut buf = vec![0u8; MAX_ANSWER];
    loop {
        let waiting: Vec<usize> = (0..flows.len())
            .filter(|&i| flows[i].outcome.is_none())
            .collect();
        let elapsed = start.elapsed();
        if waiting.is_empty() || elapsed >= opts.timeout {
            break;
        }
        if sent < sends && elapsed >= resend_every * sent {
            for &i in &waiting {
                flows[i].send();
            }
            sent += 1;
            continue;
        }
        let next_resend = if sent < sends {
            resend_every * sent
        } else {
            opts.timeout
        };
        let left = next_resend.min(opts.timeout).saturating_sub(elapsed);
        let ready: Vec<PollFlags> = {
            let mut fds: Vec<PollFd<'_>> = waiting
                .iter()
                .filter_map(|&i| {
                    flows[i]
                        .sock
                        .as_ref()
                        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                })
                .collect();
            if fds.len() != waiting.len() {
                for &i in &waiting {
                    if flows[i].sock.is_none() {
                        flows[i].outcome = Some(Err(FlowError::Io("lost its socket".into())));
                    }
                }
                continue;
            }
            match nix::poll::poll(&mut fds, poll_timeout(left)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    for &i in &waiting {
                        flows[i].outcome = Some(Err(FlowError::Io(format!("poll: {e}"))));
                    }
                    break;
                }
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        for (&i, ev) in waiting.iter().zip(ready) {
            if !ev.is_empty() {
                flows[i].readable(&mut buf);
            }
        }
    }
    flows
        .into_iter()
        .map(|f| FlowResult {
            id: f.id,
            source: f.source,
            outcome: f.outcome.unwrap_or(Err(FlowError::Timeout {
                stage: "answer",
                waited: opts.timeout,
            })),
        })
        .collect()
}

/// A non-blocking socket of `target`'s family, bound to `port` (any address) if one is given;
/// returns it with the bound address.
fn open_socket(
    target: SocketAddr,
    port: Option<u16>,
    ty: SockType,
) -> std::result::Result<(OwnedFd, Option<SocketAddr>), FlowError> {
    let fd = sock::socket(&target, ty).map_err(|e| FlowError::Socket {
        op: "socket",
        message: e.to_string(),
    })?;
    let Some(port) = port else {
        return Ok((fd, None));
    };
    let addr = sock::unspecified(target.ip(), port);
    sock::bind_reuse(&fd, addr).map_err(|e| FlowError::Socket {
        op: "bind",
        message: format!("{addr}: {e}"),
    })?;
    Ok((fd, Some(addr)))
}

/// `"<name> <sent>"` → the name.
fn parse_answer(answer: &str, sent: &str) -> std::result::Result<String, FlowError> {
    match answer.split_once(' ') {
        Some((name, rest)) if !name.is_empty() && rest == sent => Ok(name.to_owned()),
        _ => Err(FlowError::BadAnswer(answer.to_owned())),
    }
}

fn is_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
    )
}

fn io_flow_error(e: &io::Error) -> FlowError {
    if is_refused(e) {
        FlowError::Refused
    } else if e.raw_os_error() == Some(libc::ECONNRESET) {
        FlowError::Reset
    } else if e.raw_os_error() == Some(libc::ETIMEDOUT) {
        FlowError::Timeout {
            stage: "connection",
            waited: Duration::ZERO,
        }
    } else {
        FlowError::Io(e.to_string())
    }
}

fn connect_error(e: &io::Error) -> FlowError {
    if is_refused(e) {
        FlowError::Refused
    } else {
        FlowError::Socket {
            op: "connect",
            message: e.to_string(),
        }
    }
}

/// `left`, cut to [`POLL_SLICE`], as a poll timeout.
fn poll_timeout(left: Duration) -> PollTimeout {
    PollTimeout::try_from(left.min(POLL_SLICE)).unwrap_or(PollTimeout::ZERO)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn answers_are_parsed_strictly() {
        assert_eq!(parse_answer("be1 flow 7", "flow 7"), Ok("be1".into()));
        for bad in ["be1 flow 8", "be1", " flow 7", "be1 flow 7 x"] {
            assert!(
                matches!(parse_answer(bad, "flow 7"), Err(FlowError::BadAnswer(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn port_ranges_are_consecutive_and_bounded() {
        let s = Sources::range(20000, 3);
        assert_eq!(s, Sources::Ports(vec![20000, 20001, 20002]));
        assert_eq!(s.len(), 3);
        assert_eq!(s.port(2), Some(20002));
        assert_eq!(Sources::Ephemeral(5).port(0), None);
        assert!(std::panic::catch_unwind(|| Sources::range(65535, 2)).is_err());
        assert_eq!(Sources::range(65535, 1).len(), 1);
    }

    #[test]
    fn results_are_counted_by_backend() {
        let r = |id, o: std::result::Result<&str, FlowError>| FlowResult {
            id,
            source: None,
            outcome: o.map(str::to_owned),
        };
        let results = [
            r(0, Ok("be1")),
            r(1, Ok("be2")),
            r(2, Ok("be1")),
            r(3, Err(FlowError::Refused)),
        ];
        let counts = count_by_backend(&results);
        assert_eq!(counts.get("be1"), Some(&2));
        assert_eq!(counts.get("be2"), Some(&1));
        assert_eq!(failures(&results).len(), 1);
        assert!(describe_failures(&results).contains("1 of 4 flows failed"));
    }
}
