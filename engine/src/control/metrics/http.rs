//! The metrics endpoint's HTTP/1.1 server: `GET /metrics` (and `HEAD`), nothing else.
//!
//! Hand-written over `std::net::TcpListener` rather than `tiny_http` 0.12, because that crate
//! cannot bound a request: it reads header lines with no length limit (`client.rs`,
//! `read_next_line`), sets no read timeout, and its task pool spawns a new thread for every
//! connection that finds no idle one. A metrics endpoint is reachable from the network, so every
//! resource a client can make it spend is capped here: at most [`Limits::max_head`] bytes of
//! request head are read, each connection gets [`Limits::timeout`] to send its head and again to
//! take its response, and at most [`Limits::max_connections`] are served at once (the rest wait in
//! the kernel's accept backlog). One request per connection (`Connection: close`).
//!
//! It must never panic on any input, and it never logs per request.

use super::MetricsSource;
use super::encode::{CONTENT_TYPE, encode};
use rustix::event::{PollFd, PollFlags, Timespec};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// What a client may make the server spend.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most bytes of request head (request line and headers) read; more gets 431.
    pub max_head: usize,
    /// Time a client has to send its request head, and again to take the response.
    pub timeout: Duration,
    /// Connections served at once; further ones wait in the accept backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8 * 1024,
            timeout: Duration::from_secs(3),
            max_connections: 4,
        }
    }
}

/// How often blocked threads look at the stop flag; bounds [`MetricsServer::stop`].
const SLICE: Duration = Duration::from_millis(50);

/// After an error reply, how long (and how much) to drain what the client still sends, so the
/// close does not turn into a reset that destroys the reply before the client reads it.
const LINGER: Duration = Duration::from_millis(100);
const LINGER_BYTES: usize = 64 * 1024;

/// The metrics HTTP server, running on its own thread until [`MetricsServer::stop`] or drop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
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
    /// Errors: binding the socket or starting the thread.
    pub fn start(addr: SocketAddr, source: Arc<dyn MetricsSource>) -> io::Result<MetricsServer> {
        Self::start_with(addr, source, Limits::default())
    }

    /// Like [`MetricsServer::start`], with explicit limits.
    pub fn start_with(
        addr: SocketAddr,
        source: Arc<dyn MetricsSource>,
        limits: Limits,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        // Non-blocking so a connection that vanishes between poll() and accept() cannot wedge
        // the thread past a stop request.
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let limits = Limits {
            max_head: limits.max_head.max(16),
            timeout: limits.timeout.max(Duration::from_millis(1)),
            max_connections: limits.max_connections.max(1),
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-metrics".into())
            .spawn(move || accept_loop(&listener, &source, limits, &flag))?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound (the port, when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving: close the listener and every open connection. Returns within a few
    /// `SLICE`s (about 100 ms), whatever the clients do.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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

fn accept_loop(
    listener: &TcpListener,
    source: &Arc<dyn MetricsSource>,
    limits: Limits,
    stop: &Arc<AtomicBool>,
) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut i = 0;
        while i < conns.len() {
            if conns[i].is_finished() {
                let _ = conns.swap_remove(i).join();
            } else {
                i += 1;
            }
        }
        if conns.len() >= limits.max_connections {
            std::thread::sleep(SLICE / 5);
            continue;
        }
        let mut fds = [PollFd::new(listener, PollFlags::IN)];
        let slice = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(SLICE.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&slice)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(SLICE);
                continue;
            }
        }
        let stream = match listener.accept() {
            Ok((s, _peer)) => s,
            // WouldBlock (the client left), EINTR, or out of fds: try again after a pause
            // rather than spinning.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                log::debug!("metrics: accept: {e}");
                std::thread::sleep(SLICE);
                continue;
            }
        };
        let source = source.clone();
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("sluice-metrics-conn".into())
            .spawn(move || serve_connection(stream, &*source, &limits, &flag));
        match spawned {
            Ok(h) => conns.push(h),
            // The stream went down with the closure: the client sees a closed connection.
            Err(e) => log::debug!("metrics: spawning a connection thread: {e}"),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// A response ready to send.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    extra: Option<(&'static str, &'static str)>,
    body: Vec<u8>,
    /// HEAD: send the headers of the body but not the body.
    head_only: bool,
}

impl Response {
    fn text(status: u16, msg: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra: None,
            body: format!("{msg}\n").into_bytes(),
            head_only: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if let Some((k, v)) = self.extra {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Why reading a request head ended without one.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// More than `max_head` bytes without the blank line.
    TooLarge,
    /// The client took longer than the timeout.
    Timeout,
    /// EOF, a socket error, or the server is stopping: nothing worth answering.
    Gone,
}

fn serve_connection(
    mut stream: TcpStream,
    source: &dyn MetricsSource,
    limits: &Limits,
    stop: &AtomicBool,
) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + limits.timeout;
    let response = match read_head(&mut stream, limits.max_head, deadline, stop) {
        Ok(head) => respond(&head, source),
        Err(HeadError::TooLarge) => Response::text(431, "request head too large"),
        Err(HeadError::Timeout) => Response::text(408, "request head not received in time"),
        Err(HeadError::Gone) => return,
    };
    let deadline = Instant::now() + limits.timeout;
    if write_all(&mut stream, &response.to_bytes(), deadline, stop).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    linger(&mut stream, stop);
}

/// Read until the blank line that ends the head; returns the head without it.
fn read_head(
    stream: &mut TcpStream,
    max_head: usize,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Vec<u8>, HeadError> {
    let mut buf = vec![0u8; max_head];
    let mut len = 0;
    loop {
        if let Some(end) = head_end(&buf[..len]) {
            buf.truncate(end);
            return Ok(buf);
        }
        if len == buf.len() {
            return Err(HeadError::TooLarge);
        }
        if stop.load(Ordering::Relaxed) {
            return Err(HeadError::Gone);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        if stream.set_read_timeout(Some(left.min(SLICE))).is_err() {
            return Err(HeadError::Gone);
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => len += n,
            Err(e) if is_retry(&e) => {}
            Err(_) => return Err(HeadError::Gone),
        }
    }
}

/// Where the head ends: the first empty line (CRLF CRLF, or bare LF LF as RFC 9112 allows).
fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find(|&i| buf[i..].starts_with(b"\r\n\r\n") || buf[i..].starts_with(b"\n\n"))
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn write_all(
    stream: &mut TcpStream,
    mut data: &[u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> io::Result<()> {
    while !data.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left.min(SLICE)))?;
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Discard what the client still sends, briefly and boundedly, until it closes.
fn linger(stream: &mut TcpStream, stop: &AtomicBool) {
    let until = Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES && !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A request line and the one header that matters, as parsed from the head.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a [u8],
    path: &'a [u8],
}

/// Parse a request head (without the final blank line). `Err` carries the 400 message.
fn parse_head(head: &[u8]) -> Result<Request<'_>, &'static str> {
    // RFC 9112 2.2: ignore empty lines before the request line.
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let line = lines.next().ok_or("empty request")?;
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err("malformed method");
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version"),
    };
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err("malformed request target");
    }
    let path = request_path(target).ok_or("malformed request target")?;
    let mut hosts = 0;
    for line in lines {
        if line.is_empty() {
            return Err("malformed header");
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or("malformed header")?;
        let name = &line[..colon];
        // No whitespace before the colon, no obsolete line folding (RFC 9112 5.1, 5.2).
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err("malformed header");
        }
        if line[colon + 1..]
            .iter()
            .any(|&b| b.is_ascii_control() && b != b'\t')
        {
            return Err("malformed header value");
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }
    // RFC 9112 3.2: an HTTP/1.1 request without exactly one Host gets a 400.
    if http11 && hosts != 1 {
        return Err("an HTTP/1.1 request needs exactly one Host header");
    }
    Ok(Request { method, path })
}

/// The path of an origin-form (`/metrics?x`) or absolute-form (`http://h/metrics`) target.
fn request_path(target: &[u8]) -> Option<&[u8]> {
    let rest = if target.starts_with(b"/") {
        target
    } else {
        let scheme_end = target.windows(3).position(|w| w == b"://")?;
        let after = &target[scheme_end + 3..];
        match after.iter().position(|&b| b == b'/' || b == b'?') {
            Some(i) if after[i] == b'/' => &after[i..],
            _ => b"/",
        }
    };
    let end = rest
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// RFC 9110 `tchar`: the characters of a token (methods, header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn respond(head: &[u8], source: &dyn MetricsSource) -> Response {
    let req = match parse_head(head) {
        Ok(r) => r,
        Err(msg) => return Response::text(400, msg),
    };
    if req.path != METRICS_PATH.as_bytes() {
        return Response::text(404, "not found; metrics are on /metrics");
    }
    let head_only = match req.method {
        b"GET" => false,
        b"HEAD" => true,
        _ => {
            let mut r = Response::text(405, "only GET and HEAD are allowed on /metrics");
            r.extra = Some(("Allow", "GET, HEAD"));
            return r;
        }
    };
    // A source is outside code: a panic in it costs this scrape, not the server.
    match catch_unwind(AssertUnwindSafe(|| encode(&source.collect()))) {
        Ok(body) => Response {
            status: 200,
            content_type: CONTENT_TYPE,
            extra: None,
            body: body.into_bytes(),
            head_only,
        },
        Err(_) => Response::text(500, "collecting metrics failed"),
    }
}

#[cfg(test)]
mod test {
    use super::super::encode::test::snapshot;
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn parse_head_accepts_and_rejects() {
        let ok = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*").unwrap();
        assert_eq!((ok.method, ok.path), (&b"GET"[..], &b"/metrics"[..]));
        let ok = parse_head(b"\r\nGET http://h:9/metrics HTTP/1.0").unwrap();
        assert_eq!(ok.path, b"/metrics");
        assert_eq!(parse_head(b"GET http://h HTTP/1.0").unwrap().path, b"/");
        for bad in [
            &b""[..],
            b"GET /metrics",
            b"GET  /metrics HTTP/1.1\r\nHost: a",
            b"GET /metrics HTTP/1.1",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b",
            b"GET /metrics HTTP/2.0\r\nHost: a",
            b"GET /metrics HTTP/1.1\r\nHost : a",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n folded",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nX: \x01",
            b"G(T /metrics HTTP/1.0",
            b"GET metrics HTTP/1.0",
            b"GET /m\xffetrics HTTP/1.0",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest! {
        #[test]
        fn any_head_gets_an_answer(head in proptest::collection::vec(any::<u8>(), 0..300)) {
            let source = snapshot;
            let r = respond(&head, &source);
            prop_assert!([200, 400, 404, 405].contains(&r.status));
            let bytes = r.to_bytes();
            prop_assert!(bytes.starts_with(b"HTTP/1.1 "));
        }
    }

    // ---- the server, over loopback ----

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
        let (head, body) = text.split_once("\r\n\r\n").expect("no blank line");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
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

    #[test]
    fn get_metrics_serves_the_exposition() {
        let server = start(quick());
        let r = scrape(server.local_addr());
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.body, encode(&snapshot()));
        assert!(
            r.body
                .contains("\nsluice_rx_packets_total{iface=\"veth0\",queue=\"0\"} 10\n")
        );

        let head = request(
            server.local_addr(),
            b"HEAD /metrics HTTP/1.0\r\nUser-Agent: t\n\n",
        );
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
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
            b"GET /metrics HTTP/1.1\r\n\r\n",
            b"\0\0\0\0\n\n",
        ] {
            assert_eq!(request(addr, garbage).status, 400, "{garbage:?}");
        }
        // Still serving after all that.
        assert_eq!(scrape(addr).status, 200);
    }

    #[test]
    fn oversize_head_is_refused_unread() {
        let limits = quick();
        let server = start(limits);
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
    fn slow_client_gets_408_and_blocks_nobody() {
        let limits = quick();
        let server = start(limits);
        let addr = server.local_addr();
        let mut slow = connect(addr);
        slow.write_all(b"GET /metr").unwrap();
        let t = Instant::now();
        assert_eq!(scrape(addr).status, 200);
        assert!(
            t.elapsed() < limits.timeout,
            "scrape waited {:?}",
            t.elapsed()
        );
        let r = read_reply(&mut slow);
        assert_eq!(r.status, 408);
    }

    #[test]
    fn full_house_of_slow_clients_delays_a_scrape_by_at_most_the_timeout() {
        let limits = quick();
        let server = start(limits);
        let addr = server.local_addr();
        let slow: Vec<TcpStream> = (0..limits.max_connections).map(|_| connect(addr)).collect();
        std::thread::sleep(Duration::from_millis(100)); // let the server take them all
        let t = Instant::now();
        assert_eq!(scrape(addr).status, 200);
        let waited = t.elapsed();
        // Generous bound: the timeout plus scheduling slack, far below a hang.
        assert!(
            waited < limits.timeout + Duration::from_secs(2),
            "{waited:?}"
        );
        drop(slow);
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
        let mut buf = Vec::new();
        let r = idle.read_to_end(&mut buf);
        assert!(!matches!(&r, Err(e) if is_retry(e)), "still open: {r:?}");
        assert!(buf.is_empty());
        assert!(TcpStream::connect(addr).is_err());
    }
}
