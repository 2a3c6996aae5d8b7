//! The metrics endpoint's HTTP server: `GET /metrics` (and `HEAD`), nothing else.
//!
//! **Why hyper, not sluice's own server any more.** A metrics port is reachable by anyone who
//! can reach the host (every local user, at the least), so the server must stay cheap under many
//! idle or slow connections: the hand-written server it replaces gave each connection a thread
//! and served at most 4 at once, so 200 clients that each sent half a request head queued every
//! scrape behind minutes of 3 s timeouts. Doing better by hand means an event loop, per-connection
//! state machines and a request parser that hostile input exercises — the part of an HTTP server
//! that is hardest to get right and that hyper (with httparse, fuzzed and run at scale) already
//! has. So the endpoint is hyper's HTTP/1.1 server on a single-threaded tokio runtime, on one
//! thread of its own: a connection costs a task and a small buffer, not a thread, and this module
//! keeps only the policy:
//!
//! - each connection has [`Limits::timeout`] to deliver its request head (hyper's header-read
//!   timeout, which starts at accept) and as long again to take the response, then it is closed;
//! - at most [`Limits::max_head`] bytes of request head (hyper's minimum, 8 KiB, at the least);
//!   more gets 431;
//! - at most [`Limits::max_connections`] connections, and [`Limits::max_per_address`] from one
//!   peer address. A connection beyond either cap is not refused while someone merely *holds* a
//!   slot: it closes the oldest connection (of that address, or else of the address holding
//!   most) that has not yet delivered a request head, and takes its place. A client that sends
//!   its request at once — a scraper — is served; a client that sits on a half-sent head is the
//!   one that goes. Refusing the newcomer instead would hand the endpoint to whoever connects
//!   first, and on a loopback-only endpoint the scraper shares its address (127.0.0.1) with every
//!   local user, so a per-address cap that refused newcomers would lock the scraper out exactly
//!   when someone attacks. Only when every connection has a request in hand is a newcomer closed.
//!
//! One request per connection (`Connection: close`), no HTTP/2. The OpenMetrics text is
//! [`encode`]'s, byte for byte. This module must never panic on any input, and it never logs
//! per request.

use super::MetricsSource;
use super::encode::{CONTENT_TYPE, encode};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// hyper's smallest read buffer, and so the smallest head limit it can enforce.
const MIN_HEAD: usize = 8 * 1024;

/// What a client may make the server spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of request head (request line and headers) read; more gets 431. Raised to
    /// 8 KiB, hyper's minimum, if smaller.
    pub max_head: usize,
    /// Time a client has to deliver its request head (from accept), and again to take the
    /// response.
    pub timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one peer address.
    pub max_per_address: usize,
}

impl Default for Limits {
    /// 8 KiB of head, 3 s, 256 connections, 64 per address.
    fn default() -> Self {
        Limits {
            max_head: MIN_HEAD,
            timeout: Duration::from_secs(3),
            max_connections: 256,
            max_per_address: 64,
        }
    }
}

impl Limits {
    /// Every value workable, or the `sluice run` flag (without dashes) that is not and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=16384).contains(&self.max_connections) {
            return Err((
                "metrics-max-connections",
                format!("{} is not 1 to 16384", self.max_connections),
            ));
        }
        if !(1..=self.max_connections).contains(&self.max_per_address) {
            return Err((
                "metrics-max-per-address",
                format!(
                    "{} is not 1 to --metrics-max-connections ({})",
                    self.max_per_address, self.max_connections
                ),
            ));
        }
        if self.timeout.is_zero() {
            return Err((
                "metrics-header-timeout",
                "must be more than 0 seconds".into(),
            ));
        }
        Ok(())
    }

    /// The limits as served: every value at least its smallest workable one.
    fn sane(self) -> Limits {
        Limits {
            max_head: self.max_head.max(MIN_HEAD),
            timeout: self.timeout.max(Duration::from_millis(1)),
            max_connections: self.max_connections.max(1),
            max_per_address: self.max_per_address.max(1),
        }
    }
}

/// The metrics HTTP server, running on its own thread until [`MetricsServer::stop`] or drop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Bind `addr` and serve `/metrics` from `source` with the default [`Limits`].
    ///
    /// Errors: binding the socket, building the runtime or starting the thread.
    pub fn start(addr: SocketAddr, source: Arc<dyn MetricsSource>) -> io::Result<MetricsServer> {
        Self::start_with(addr, source, Limits::default())
    }

    /// Like [`MetricsServer::start`], with explicit limits.
    pub fn start_with(
        addr: SocketAddr,
        source: Arc<dyn MetricsSource>,
        limits: Limits,
    ) -> io::Result<MetricsServer> {
        Self::start_on(TcpListener::bind(addr)?, source, limits)
    }

    /// Like [`MetricsServer::start_with`], on a listening socket bound already: before the
    /// privilege drop, or passed on by the engine a hot upgrade took over from.
    pub fn start_on(
        listener: TcpListener,
        source: Arc<dyn MetricsSource>,
        limits: Limits,
    ) -> io::Result<MetricsServer> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // One thread, no worker pool: the runtime runs on the thread below and nowhere else.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let limits = limits.sane();
        let thread = std::thread::Builder::new()
            .name("sluice-metrics".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, source, limits, stop_rx));
                // Dropping the runtime drops every connection task: their sockets close here.
                drop(runtime);
            })?;
        Ok(MetricsServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address actually bound (the port, when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving: close the listener and every open connection, whatever the clients do.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The open connections, for the caps. Ids grow with each accept, so the smallest is the oldest.
#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_address: HashMap<IpAddr, usize>,
}

struct Conn {
    addr: IpAddr,
    /// Set once hyper has parsed the request head (the service was called).
    requested: Arc<AtomicBool>,
    /// To close it; `None` for the instant between registering and spawning.
    abort: Option<AbortHandle>,
}

/// Whether a connection may be served, and what it displaced.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Room for it.
    Admit,
    /// Room after closing this (oldest, head still pending) connection.
    Evict(u64),
    /// Every candidate has a request in hand: the newcomer is closed.
    Refuse,
}

impl Table {
    fn len(&self) -> usize {
        self.conns.len()
    }

    fn count(&self, addr: IpAddr) -> usize {
        self.per_address.get(&addr).copied().unwrap_or(0)
    }

    /// The oldest connection (from `addr`, if given) still waiting for its request head.
    fn oldest_pending(&self, addr: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| addr.is_none_or(|a| c.addr == a))
            .filter(|(_, c)| !c.requested.load(Ordering::Relaxed))
            .map(|(&id, _)| id)
            .min()
    }

    /// The address holding most connections.
    fn heaviest(&self) -> Option<IpAddr> {
        self.per_address
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(a, _)| *a)
    }

    /// What a new connection from `addr` does under `limits` (see the module docs).
    fn admit(&self, addr: IpAddr, limits: &Limits) -> Admission {
        let victim = if self.count(addr) >= limits.max_per_address {
            self.oldest_pending(Some(addr))
        } else if self.len() >= limits.max_connections {
            self.heaviest()
                .and_then(|heavy| self.oldest_pending(Some(heavy)))
                .or_else(|| self.oldest_pending(None))
        } else {
            return Admission::Admit;
        };
        victim.map_or(Admission::Refuse, Admission::Evict)
    }

    fn insert(&mut self, addr: IpAddr, requested: Arc<AtomicBool>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            Conn {
                addr,
                requested,
                abort: None,
            },
        );
        *self.per_address.entry(addr).or_default() += 1;
        id
    }

    /// Forget `id` (if still here) and return it, to be closed.
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&conn.addr) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&conn.addr);
            }
        }
        Some(conn)
    }
}

type Shared = Arc<Mutex<Table>>;

fn lock(table: &Shared) -> std::sync::MutexGuard<'_, Table> {
    // The table is consistent after every statement; a panic elsewhere does not spoil it.
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes the connection from the table when its task ends, however it ends (done, timed out,
/// or aborted because it was displaced or the server stopped).
struct Registered {
    table: Shared,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.table).remove(self.id);
    }
}

/// The same peer whether it came over IPv4 or as an IPv4-mapped IPv6 address.
fn peer_key(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

async fn accept_loop(
    listener: TcpListener,
    source: Arc<dyn MetricsSource>,
    limits: Limits,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("metrics: cannot serve the listening socket: {e}");
            return;
        }
    };
    let table: Shared = Arc::default();
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of fds and the like: pause rather than spin; the backlog waits.
                log::debug!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let addr = peer_key(peer);
        let mut t = lock(&table);
        match t.admit(addr, &limits) {
            Admission::Admit => {}
            Admission::Evict(victim) => {
                if let Some(abort) = t.remove(victim).and_then(|c| c.abort) {
                    abort.abort();
                }
            }
            Admission::Refuse => continue, // dropping the stream closes it
        }
        let _ = stream.set_nodelay(true);
        let requested = Arc::new(AtomicBool::new(false));
        let id = t.insert(addr, requested.clone());
        let registered = Registered {
            table: table.clone(),
            id,
        };
        let task = tokio::spawn(serve_connection(
            stream,
            source.clone(),
            limits,
            requested,
            registered,
        ));
        if let Some(conn) = t.conns.get_mut(&id) {
            conn.abort = Some(task.abort_handle());
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    source: Arc<dyn MetricsSource>,
    limits: Limits,
    requested: Arc<AtomicBool>,
    _registered: Registered,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        requested.store(true, Ordering::Relaxed);
        let response = respond(req.method(), req.uri().path(), &*source);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .max_buf_size(limits.max_head)
        .keep_alive(false)
        .serve_connection(TokioIo::new(Lingering::new(stream)), service);
    // The head timeout bounds the first half; this bounds the whole, so a client that never
    // reads its response is closed too. Errors (bad requests hyper answered itself, resets) end
    // the connection and are nobody's business but the client's.
    let _ = tokio::time::timeout(limits.timeout * 2, conn).await;
}

/// After an error reply, how long (and how much) to drain what the client still sends, so the
/// close does not turn into a reset that destroys the reply before the client reads it.
const LINGER: Duration = Duration::from_millis(100);
const LINGER_BYTES: usize = 64 * 1024;

/// A TCP stream whose shutdown (hyper's last act on a connection, after its response — an
/// error response included) sends FIN and then discards what the client still sends, briefly
/// and boundedly, until it closes: closing a socket with unread bytes resets the connection, and
/// a reset can destroy a reply (a 400 or 431) the client has not read yet.
struct Lingering {
    inner: tokio::net::TcpStream,
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    drained: usize,
}

impl Lingering {
    fn new(inner: tokio::net::TcpStream) -> Lingering {
        Lingering {
            inner,
            linger: None,
            drained: 0,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 4096];
        loop {
            let timer = this.linger.as_mut().expect("set above");
            if this.drained >= LINGER_BYTES || timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.drained += buf.filled().len(),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE_HEADER,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The response to `method` on `path` (hyper has parsed and checked the request).
fn respond(method: &Method, path: &str, source: &dyn MetricsSource) -> Response<Full<Bytes>> {
    if path != METRICS_PATH {
        return text(StatusCode::NOT_FOUND, "not found; metrics are on /metrics");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed on /metrics",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // A source is outside code: a panic in it costs this scrape, not the server. (hyper sends
    // HEAD responses without their body but with its length.)
    match catch_unwind(AssertUnwindSafe(|| encode(&source.collect()))) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
            r
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "collecting metrics failed",
        ),
    }
}

#[cfg(test)]
mod test {
    use super::super::encode::test::snapshot;
    use super::*;
    use proptest::prelude::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, Shutdown, TcpStream};
    use std::time::Instant;

    fn start(limits: Limits) -> MetricsServer {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        MetricsServer::start_with(addr, Arc::new(snapshot), limits).expect("starting server")
    }

    fn quick() -> Limits {
        Limits {
            timeout: Duration::from_millis(500),
            ..Limits::default()
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    fn read_reply(s: &mut TcpStream) -> Reply {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("reading reply");
        let text = String::from_utf8(raw).expect("utf-8 reply");
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no blank line in {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 ")) // hyper answers 1.0 in 1.0
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").expect("header");
                (k.to_string(), v.to_string())
            })
            .collect();
        let reply = Reply {
            status,
            headers,
            body: body.to_string(),
        };
        let len: usize = reply.header("content-length").unwrap().parse().unwrap();
        assert!(reply.body.is_empty() || reply.body.len() == len);
        reply
    }

    fn request(addr: SocketAddr, raw: &[u8]) -> Reply {
        let mut s = connect(addr);
        s.write_all(raw).unwrap();
        read_reply(&mut s)
    }

    fn scrape(addr: SocketAddr) -> Reply {
        request(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    }

    /// Whether the server has closed `s` (EOF or reset) within `within`.
    fn closed_within(mut s: &TcpStream, within: Duration) -> bool {
        s.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false, // timed out: still open
            }
        }
    }

    #[test]
    fn get_metrics_serves_the_exposition() {
        let server = start(quick());
        let r = scrape(server.local_addr());
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(r.header("connection"), Some("close"));
        // Byte for byte what the encoder writes.
        assert_eq!(r.body, encode(&snapshot()));
        assert!(
            r.body
                .contains("\nsluice_rx_packets_total{iface=\"veth0\",queue=\"0\"} 10\n")
        );

        let head = request(
            server.local_addr(),
            b"HEAD /metrics HTTP/1.0\r\nUser-Agent: t\r\n\r\n",
        );
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let q = request(
            server.local_addr(),
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(q.status, 200);
        server.stop();
    }

    #[test]
    fn wrong_paths_methods_and_garbage() {
        let server = start(quick());
        let addr = server.local_addr();
        for path in ["/", "/metricsx", "/metrics/", "/favicon.ico"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(request(addr, req.as_bytes()).status, 404, "{path}");
        }
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "BREW"] {
            let req = format!("{method} /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
            let r = request(addr, req.as_bytes());
            assert_eq!(r.status, 405, "{method}");
            let allow = r.header("allow").expect("Allow header");
            assert!(allow.split(", ").any(|m| m == "GET"), "{allow}");
        }
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
            b"hello\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n",
            b"G(T /metrics HTTP/1.0\r\n\r\n",
            b"\0\0\0\0\n\n",
        ] {
            assert_eq!(request(addr, garbage).status, 400, "{garbage:?}");
        }
        // Still serving after all that.
        assert_eq!(scrape(addr).status, 200);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever arrives, the server answers with a status line or closes; it keeps serving.
        #[test]
        fn any_bytes_get_an_answer_or_a_close(head in proptest::collection::vec(any::<u8>(), 0..300)) {
            let server = start(Limits { timeout: Duration::from_millis(200), ..Limits::default() });
            let mut s = connect(server.local_addr());
            s.write_all(&head).unwrap();
            let _ = s.shutdown(Shutdown::Write);
            let mut raw = Vec::new();
            let _ = s.read_to_end(&mut raw); // a reset is an answer too
            prop_assert!(raw.is_empty() || raw.starts_with(b"HTTP/1."), "{:?}", String::from_utf8_lossy(&raw));
            prop_assert_eq!(scrape(server.local_addr()).status, 200);
        }
    }

    #[test]
    fn oversize_head_is_refused_unread() {
        let server = start(quick());
        let mut s = connect(server.local_addr());
        let mut writer = s.try_clone().unwrap();
        // Far more than loopback socket buffers hold: only a server that reads it all lets the
        // whole of it through.
        const TOTAL: usize = 64 << 20;
        let push = std::thread::spawn(move || {
            writer
                .set_write_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut chunk = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
            chunk.resize(64 * 1024, b'a');
            let mut sent = 0;
            while sent < TOTAL {
                match writer.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
                chunk.fill(b'a');
            }
            sent
        });
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw); // a reset after the reply is fine
        let sent = push.join().unwrap();
        assert!(sent < TOTAL, "the server read all {sent} bytes");
        if !raw.is_empty() {
            assert!(
                raw.starts_with(b"HTTP/1.1 431 "),
                "{:?}",
                String::from_utf8_lossy(&raw)
            );
        }
        assert_eq!(scrape(server.local_addr()).status, 200);
    }

    #[test]
    fn oversize_head_gets_431() {
        let server = start(quick());
        let mut req = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
        req.resize(Limits::default().max_head + 100, b'a');
        let r = request(server.local_addr(), &req);
        assert_eq!(r.status, 431);
    }

    #[test]
    fn slow_client_is_closed_and_blocks_nobody() {
        let limits = quick();
        let server = start(limits);
        let addr = server.local_addr();
        let mut slow = connect(addr);
        slow.write_all(b"GET /metr").unwrap();
        let silent = connect(addr);
        let t = Instant::now();
        assert_eq!(scrape(addr).status, 200);
        assert!(
            t.elapsed() < limits.timeout,
            "scrape waited {:?}",
            t.elapsed()
        );
        // Closed once its time to send a head is up, with or without a word.
        assert!(closed_within(&slow, limits.timeout * 4));
        assert!(closed_within(&silent, limits.timeout * 4));
    }

    /// Many more slow clients than the server keeps: the oldest are displaced, a scrape is
    /// served at once, and the caps hold.
    #[test]
    fn hundreds_of_slow_clients_delay_no_scrape() {
        let limits = Limits {
            timeout: Duration::from_secs(30), // they would hold their slots all test long
            max_connections: 64,
            max_per_address: 32,
            ..Limits::default()
        };
        let server = start(limits);
        let addr = server.local_addr();
        let slow: Vec<TcpStream> = (0..300)
            .map(|_| {
                let mut s = connect(addr);
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
                s
            })
            .collect();
        for _ in 0..5 {
            let t = Instant::now();
            assert_eq!(scrape(addr).status, 200);
            // Served at once, not after a timeout; generous for a loaded machine.
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        }
        // The oldest were closed to make room; at most the cap of them is still open.
        std::thread::sleep(Duration::from_millis(100));
        let open = slow
            .iter()
            .filter(|s| !closed_within(s, Duration::from_millis(1)))
            .count();
        assert!(
            open <= limits.max_per_address,
            "{open} slow clients still open"
        );
        assert!(open > 0);
        drop(slow);
    }

    fn pending(t: &mut Table, addr: IpAddr) -> (u64, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (t.insert(addr, flag.clone()), flag)
    }

    #[test]
    fn admission_displaces_the_oldest_pending_connection() {
        let limits = Limits {
            max_connections: 4,
            max_per_address: 2,
            ..Limits::default()
        };
        let a: IpAddr = Ipv4Addr::new(127, 0, 0, 1).into();
        let b: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
        let c: IpAddr = Ipv4Addr::new(10, 0, 0, 3).into();
        let mut t = Table::default();
        assert_eq!(t.admit(a, &limits), Admission::Admit);
        let (a0, a0_req) = pending(&mut t, a);
        let (a1, _) = pending(&mut t, a);
        // A third from `a`: its oldest pending one goes.
        assert_eq!(t.admit(a, &limits), Admission::Evict(a0));
        // Unless it has its request in hand: then the next oldest.
        a0_req.store(true, Ordering::Relaxed);
        assert_eq!(t.admit(a, &limits), Admission::Evict(a1));
        let (b0, b0_req) = pending(&mut t, b);
        assert_eq!(t.admit(b, &limits), Admission::Admit);
        let (_b1, b1_req) = pending(&mut t, b);
        assert_eq!(t.len(), 4);
        // Full: a newcomer from `c` displaces the oldest pending one of the heaviest address
        // (a tie between a and b: whichever, as long as it is pending).
        let Admission::Evict(v) = t.admit(c, &limits) else {
            panic!()
        };
        assert!([a1, b0].contains(&v), "{v}");
        // Everyone with a request in hand: the newcomer is refused.
        for f in [&b0_req, &b1_req] {
            f.store(true, Ordering::Relaxed);
        }
        t.remove(a1);
        let (_, a2_req) = pending(&mut t, a);
        a2_req.store(true, Ordering::Relaxed);
        assert_eq!(t.admit(c, &limits), Admission::Refuse);
        assert_eq!(t.admit(a, &limits), Admission::Refuse);
        t.remove(b0);
        assert_eq!(t.count(b), 1);
        assert_eq!(t.admit(c, &limits), Admission::Admit);
        assert!(t.remove(b0).is_none());
    }

    #[test]
    fn ipv4_mapped_peers_count_as_ipv4() {
        let v4: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:6".parse().unwrap();
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(peer_key(v4), peer_key(mapped));
        assert_eq!(peer_key(v6), v6.ip());
    }

    #[test]
    fn panicking_source_costs_one_scrape() {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let flaky = Arc::new(AtomicBool::new(true));
        let f = flaky.clone();
        let source = move || {
            if f.swap(false, Ordering::Relaxed) {
                panic!("source failed");
            }
            snapshot()
        };
        let server = MetricsServer::start_with(addr, Arc::new(source), quick()).unwrap();
        assert_eq!(scrape(server.local_addr()).status, 500);
        assert_eq!(scrape(server.local_addr()).status, 200);
    }

    #[test]
    fn stop_is_bounded_with_clients_connected() {
        let server = start(Limits {
            timeout: Duration::from_secs(30),
            ..Limits::default()
        });
        let addr = server.local_addr();
        let mut idle = connect(addr);
        idle.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let _idle2 = connect(addr);
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        server.stop();
        let took = t.elapsed();
        assert!(took < Duration::from_millis(500), "stop took {took:?}");
        // The connections were closed, not left hanging, and nothing listens any more.
        assert!(closed_within(&idle, Duration::from_secs(2)));
        assert!(TcpStream::connect(addr).is_err());
    }
}
