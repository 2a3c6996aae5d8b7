//! `sluice run --iface r0 --iface r1 --app forward` in the router of a client — router — server
//! topology: kernel clients and servers on both sides, over IPv4 and IPv6.
//!
//! Unless a test says otherwise, neighbours are not pre-filled: the first packets towards a fresh
//! next hop are passed to the kernel by the XDP program (`fib_no_neigh`), which resolves it and
//! forwards them, so nothing is lost for good and the flow goes through sluice once the neighbour
//! is known. Tests that need every forwardable frame to reach sluice from the first one (ICMP
//! built by sluice, drop counts, route-change latency) pre-fill them (`static_neighbours`).

mod common;

use common::{Engine, assert_census, set_socket_option, tcp_info};
use etherparse::PacketBuilder;
use serde_json::Value;
use sluice_testbed::{Netns, PacketSocket, Route, RouterBed, RouterBedOpts, Segment, require_root};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PORT: u16 = 9000;

/// A UDP echo server in the server namespace on `addrs`, until `stop`.
fn echo_server(bed: &RouterBed, addrs: &[IpAddr], stop: Arc<AtomicBool>) {
    for &ip in addrs {
        let sock = bed
            .server()
            .run(|| UdpSocket::bind(SocketAddr::new(ip, PORT)))
            .unwrap()
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
    }
}

/// Echo `count` datagrams of varying size from the client to `dst`; every reply must be
/// byte-identical. First it probes (bounded) until the path answers; returns how long that took.
fn exchange(bed: &RouterBed, dst: IpAddr, count: usize) -> Duration {
    let bind: SocketAddr = match dst {
        IpAddr::V4(_) => (bed.c0().ipv4(), 0).into(),
        IpAddr::V6(_) => (bed.c0().ipv6(), 0).into(),
    };
    let sock = bed.client().run(|| UdpSocket::bind(bind)).unwrap().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let peer = SocketAddr::new(dst, PORT);
    let mut buf = [0u8; 2048];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    loop {
        sock.send_to(b"probe", peer).unwrap();
        if sock.recv_from(&mut buf).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no echo from {peer} within 10 s");
    }
    let path_up = started.elapsed();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Every datagram must come back byte-identical; one that gets no answer within 500 ms is
    // sent again (at most twice) and counted: a router may lose a frame while a link changes,
    // and the callers bound how many.
    let mut resent = 0;
    for i in 0..count {
        let len = 1 + (i * 53) % 1400;
        let msg: Vec<u8> = (0..len).map(|k| (k * 3 + i) as u8).collect();
        let mut tries = 0;
        let (n, from) = 'answer: loop {
            sock.send_to(&msg, peer).unwrap();
            // Skip late echoes of the probes and of earlier datagrams.
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if buf[..n] == msg[..] {
                    break 'answer (n, from);
                }
            }
            tries += 1;
            resent += 1;
            assert!(tries <= 2, "datagram {i} to {dst}: no reply to 3 sends");
        };
        assert_eq!(from, peer);
        assert_eq!(&buf[..n], &msg[..]);
    }
    assert!(
        resent <= 2,
        "{resent} datagrams to {dst} had to be sent again"
    );
    path_up
}

/// Start the router and wait until its workers run: until then the router's kernel forwards
/// (forwarding is on), so traffic sent earlier would not test sluice.
fn start(bed: &RouterBed, ifaces: &[&str]) -> Engine {
    let mut args = Vec::new();
    for i in ifaces {
        args.extend(["--iface", i]);
    }
    args.extend(["--app", "forward"]);
    let engine = Engine::start_in(bed.router(), &args);
    engine.wait_for_log("app forward on", Duration::from_secs(10));
    engine
}

fn xdp(fin: &Value, k: &str) -> u64 {
    fin["xdp"][k]
        .as_u64()
        .unwrap_or_else(|| panic!("no xdp.{k}: {fin}"))
}

#[test]
fn routes_udp_both_ways_over_ipv4_and_ipv6() {
    if !require_root("routes_udp_both_ways_over_ipv4_and_ipv6") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(
        &bed,
        &[bed.s0().ipv4().into(), bed.s0().ipv6().into()],
        stop.clone(),
    );
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface()]);

    // The server sees the client's packets with the TTL decremented by one.
    let on_s0 = PacketSocket::open(bed.server(), bed.s0().iface()).unwrap();
    const N: usize = 300;
    exchange(&bed, bed.s0().ipv4().into(), N);
    exchange(&bed, bed.s0().ipv6().into(), N);
    let c0 = bed.c0().ipv4().octets();
    let seen = on_s0
        .collect_incoming(Duration::from_secs(1), 1, |f| {
            f.len() > 34 && f[12..14] == [0x08, 0x00] && f[26..30] == c0
        })
        .unwrap();
    assert_eq!(seen.len(), 1, "no IPv4 frame from the client seen on s0");
    assert_eq!(seen[0][22], 63, "TTL 64 decremented once");

    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    // The bulk went through sluice, both ways, both families: 2 × 2 × N datagrams, less the
    // first few towards each fresh neighbour, which the kernel forwards while it resolves it
    // (XDP's `fib_no_neigh`, or sluice's kernel path).
    // At least half of each direction, by a wide margin, so a loaded machine (mirror events
    // arriving late) does not fail the test; the exchanges above proved every byte.
    let n = N as u64;
    assert!(xdp(&fin, "fwd_redirected") >= 2 * n, "{fin}");
    let ports = fin["ports"].as_array().unwrap();
    let get = |p: usize, k: &str| ports[p][k].as_u64().unwrap();
    assert!(
        get(0, "rx_packets") >= n && get(1, "tx_packets") >= n,
        "{fin}"
    );
    assert!(
        get(1, "rx_packets") >= n && get(0, "tx_packets") >= n,
        "{fin}"
    );
    assert_eq!(fin["total"]["dropped"].as_u64(), Some(0), "{fin}");
    assert_census(&fin);
}

#[test]
fn ttl_one_gets_time_exceeded_from_the_router() {
    if !require_root("ttl_one_gets_time_exceeded_from_the_router") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(&bed, &[bed.s0().ipv4().into()], stop.clone());
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface()]);
    exchange(&bed, bed.s0().ipv4().into(), 1); // path up, neighbours resolved

    // A datagram with TTL 1 from the client: the router answers with ICMP time exceeded
    // (type 11), from r0's address, seen on the client's interface.
    let on_c0 = PacketSocket::open(bed.client(), bed.c0().iface()).unwrap();
    let sock = bed
        .client()
        .run(|| UdpSocket::bind((bed.c0().ipv4(), 0)))
        .unwrap()
        .unwrap();
    sock.set_ttl(1).unwrap();
    let r0 = bed.r0().ipv4().octets();
    let mut got = Vec::new();
    for _ in 0..5 {
        sock.send_to(b"ttl one", (bed.s0().ipv4(), PORT)).unwrap();
        got = on_c0
            .collect_incoming(Duration::from_millis(500), 1, |f| {
                f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 1 && f[26..30] == r0
            })
            .unwrap();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1, "no ICMP from the router");
    let f = &got[0];
    assert_eq!(
        (f[34], f[35]),
        (11, 0),
        "ICMP time exceeded, TTL exceeded in transit"
    );
    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    assert!(xdp(&fin, "fwd_redirected") >= 1, "{fin}");
    assert_census(&fin);
}

#[test]
fn fails_over_to_the_backup_link_and_back() {
    if !require_root("fails_over_to_the_backup_link_and_back") {
        return;
    }
    // Static neighbours: the backup's next hop is known in advance, so the counts below do not
    // depend on how fast the kernel resolves it (the UDP test covers resolution).
    let bed = RouterBed::new(RouterBedOpts {
        backup_link: true,
        static_neighbours: true,
        ..Default::default()
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let service: IpAddr = RouterBed::SERVICE_IPV4.into();
    echo_server(&bed, &[service], stop.clone());
    let r2 = bed.r2().unwrap().iface().to_string();
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface(), &r2]);
    exchange(&bed, service, 50);
    // Primary link down: the route over the backup takes over within 1 s (the first echo
    // after the link went down, probing every 20 ms).
    bed.set_segment_up(Segment::Server, false).unwrap();
    let switched = exchange(&bed, service, 50);
    assert!(
        switched < Duration::from_secs(1),
        "failover took {switched:?}"
    );
    // And back once it is up again: traffic keeps flowing over the backup until the table has
    // the primary again (the kernel's events reach it within milliseconds, later on a loaded
    // machine), so fail-back is timed by watching the primary link itself — from the link call
    // returning to the first client datagram seen arriving on s0.
    bed.set_segment_up(Segment::Server, true).unwrap();
    let t = Instant::now();
    let on_s0 = PacketSocket::open(bed.server(), bed.s0().iface()).unwrap();
    let probe = bed
        .client()
        .run(|| UdpSocket::bind((bed.c0().ipv4(), 0)))
        .unwrap()
        .unwrap();
    let want = RouterBed::SERVICE_IPV4.octets();
    let back = loop {
        probe
            .send_to(b"fail-back probe", (RouterBed::SERVICE_IPV4, PORT))
            .unwrap();
        let seen = on_s0
            .collect_incoming(Duration::from_millis(10), 1, |f| {
                f.len() > 34 && f[12..14] == [0x08, 0x00] && f[30..34] == want
            })
            .unwrap();
        if !seen.is_empty() {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no fail-back within 5 s"
        );
    };
    assert!(back < Duration::from_secs(1), "fail-back took {back:?}");
    exchange(&bed, service, 50);
    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    let ports = fin["ports"].as_array().unwrap();
    let tx = |p: usize| ports[p]["tx_packets"].as_u64().unwrap();
    // While a link changes, a few frames may take the kernel path (a port marked down, or the
    // table a few milliseconds behind the kernel's); the bulk goes through sluice.
    assert!(
        tx(2) >= 40,
        "the backup carried the traffic while the primary was down: {fin}"
    );
    assert!(
        tx(1) >= 80,
        "the primary carried it before and after: {fin}"
    );
    eprintln!("failover {switched:?}, fail-back {back:?}");
    assert_census(&fin);
}

// ----- TCP -------------------------------------------------------------------------------------

/// Bytes each bulk TCP transfer carries.
const BULK: usize = 1 << 20;
const TCP_PORT: u16 = 9100;
/// Bound on every blocking TCP read or write; a stalled connection fails the test after it.
const TCP_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole bulk transfer.
const TCP_DEADLINE: Duration = Duration::from_secs(30);

/// `BULK` pseudo-random bytes (xorshift64), different per `seed`: a byte lost, repeated or moved
/// shows up in the comparison.
fn bulk_data(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..BULK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a, 64 bits: the server's digest of what it received.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A TCP listener on `addr` in `ns`; the first connection (accepted within 20 s) goes to `serve`
/// on its own thread, with blocking I/O bounded by [`TCP_IO_TIMEOUT`].
fn serve_one_tcp(
    ns: &Netns,
    addr: SocketAddr,
    serve: impl FnOnce(TcpStream) + Send + 'static,
) -> JoinHandle<()> {
    let listener = ns.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < end, "no connection to {addr} within 20 s");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accepting on {addr}: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(TCP_IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TCP_IO_TIMEOUT)).unwrap();
        serve(stream)
    })
}

/// Server side: send back everything until the client's FIN, then FIN.
fn echo_stream(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let n = s.read(&mut buf).expect("server: reading");
        if n == 0 {
            break;
        }
        total += n;
        assert!(total <= BULK, "server: more than {BULK} bytes");
        s.write_all(&buf[..n]).expect("server: echoing");
    }
    s.shutdown(Shutdown::Write).unwrap();
}

/// Server side: read until the client's FIN, answer with the byte count and FNV-1a digest.
fn digest_stream(mut s: TcpStream) {
    let mut got = Vec::with_capacity(BULK);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).expect("server: reading");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        assert!(got.len() <= BULK, "server: more than {BULK} bytes");
    }
    let mut answer = [0u8; 16];
    answer[..8].copy_from_slice(&(got.len() as u64).to_be_bytes());
    answer[8..].copy_from_slice(&fnv1a(&got).to_be_bytes());
    s.write_all(&answer).expect("server: answering");
    s.shutdown(Shutdown::Write).unwrap();
}

/// A TCP connection from the client namespace to `dst`, I/O bounded by [`TCP_IO_TIMEOUT`].
fn tcp_connect(bed: &RouterBed, dst: SocketAddr) -> TcpStream {
    let s = bed
        .client()
        .run(move || TcpStream::connect_timeout(&dst, Duration::from_secs(5)))
        .unwrap()
        .unwrap_or_else(|e| panic!("connecting to {dst}: {e}"));
    s.set_read_timeout(Some(TCP_IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TCP_IO_TIMEOUT)).unwrap();
    s
}

/// Write `data` on a thread of its own, then half-close.
fn send_all(stream: &TcpStream, data: Arc<Vec<u8>>) -> JoinHandle<()> {
    let mut w = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        for chunk in data.chunks(64 * 1024) {
            w.write_all(chunk).expect("client: sending");
        }
        w.shutdown(Shutdown::Write).unwrap();
    })
}

/// Read until EOF (at most `limit` bytes, within [`TCP_DEADLINE`]).
fn read_to_eof(mut stream: &TcpStream, limit: usize) -> Vec<u8> {
    let end = Instant::now() + TCP_DEADLINE;
    let mut got = Vec::with_capacity(limit);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).expect("client: reading");
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
        assert!(got.len() <= limit, "more than {limit} bytes came back");
        assert!(
            Instant::now() < end,
            "transfer not done within {TCP_DEADLINE:?}"
        );
    }
}

/// [`BULK`] bytes to an echo server at `dst` and back; they must come back byte-identical.
fn tcp_round_trip(bed: &RouterBed, dst: SocketAddr, seed: u64) {
    let data = Arc::new(bulk_data(seed));
    let server = serve_one_tcp(bed.server(), dst, echo_stream);
    let stream = tcp_connect(bed, dst);
    let writer = send_all(&stream, data.clone());
    let back = read_to_eof(&stream, BULK);
    writer.join().expect("client writer");
    server.join().expect("server");
    assert_eq!(back.len(), BULK, "bytes echoed by {dst}");
    if let Some(i) = back.iter().zip(data.iter()).position(|(a, b)| a != b) {
        panic!("the echo from {dst} differs first at byte {i}");
    }
}

/// [`BULK`] bytes to a digest server at `dst`; its count and digest must match. Returns the
/// client's socket (still open, for `TCP_INFO`).
fn tcp_upload(bed: &RouterBed, dst: SocketAddr, seed: u64) -> TcpStream {
    let data = Arc::new(bulk_data(seed));
    let server = serve_one_tcp(bed.server(), dst, digest_stream);
    let stream = tcp_connect(bed, dst);
    let writer = send_all(&stream, data.clone());
    let answer = read_to_eof(&stream, 16);
    writer.join().expect("client writer");
    server.join().expect("server");
    assert_eq!(answer.len(), 16, "no digest from {dst}");
    let len = u64::from_be_bytes(answer[..8].try_into().unwrap());
    let digest = u64::from_be_bytes(answer[8..].try_into().unwrap());
    assert_eq!(len, BULK as u64, "bytes received by {dst}");
    assert_eq!(digest, fnv1a(&data), "digest of what {dst} received");
    stream
}

fn port(fin: &Value, p: usize, k: &str) -> u64 {
    fin["ports"][p][k]
        .as_u64()
        .unwrap_or_else(|| panic!("no ports[{p}].{k}: {fin}"))
}

#[test]
fn routes_tcp_bulk_both_ways_over_ipv4_and_ipv6() {
    if !require_root("routes_tcp_bulk_both_ways_over_ipv4_and_ipv6") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts::default()).unwrap();
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface()]);
    tcp_round_trip(&bed, (bed.s0().ipv4(), TCP_PORT).into(), 4);
    tcp_round_trip(&bed, (bed.s0().ipv6(), TCP_PORT).into(), 6);
    let fin = engine.stop();
    // Each family: BULK bytes of payload client → server and back, in frames that also carry
    // headers. Only the handshake's first packets can take the kernel's path (neighbours still
    // unresolved), so sluice moved at least the payload, each way, on each port.
    let bulk = 2 * BULK as u64;
    for (p, dir) in [(0, "client → server"), (1, "server → client")] {
        assert!(port(&fin, p, "rx_bytes") >= bulk, "{dir} rx: {fin}");
        assert!(port(&fin, 1 - p, "tx_bytes") >= bulk, "{dir} tx: {fin}");
    }
    assert!(xdp(&fin, "fwd_redirected") >= 2 * bulk / 1500, "{fin}");
    assert_census(&fin);
}

// ----- path MTU --------------------------------------------------------------------------------

/// The router—server link's MTU in the PMTU test.
const NARROW_MTU: u16 = 1280;

/// Send `payload` from `sock` to `dst` (up to 3 tries, a second apart) until a frame `is_error`
/// accepts arrives on c0; returns it.
fn provoke_icmp(
    on_c0: &PacketSocket,
    sock: &UdpSocket,
    dst: SocketAddr,
    payload: &[u8],
    is_error: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    for _ in 0..3 {
        // A retry may fail with EMSGSIZE once the client's kernel took the MTU: fine, the
        // frame we wait for is on its way or lost.
        let _ = sock.send_to(payload, dst);
        let got = on_c0
            .collect_incoming(Duration::from_secs(1), 1, &is_error)
            .unwrap();
        if let Some(f) = got.into_iter().next() {
            return f;
        }
    }
    panic!("no ICMP error on c0 about {} bytes to {dst}", payload.len());
}

/// Sending `payload` to `dst` fails with `EMSGSIZE` within a second: the client's kernel has
/// taken the smaller path MTU from the ICMP error. (The packet socket sees the error before the
/// kernel has processed it, so the first sends may still go out.)
fn expect_emsgsize(sock: &UdpSocket, dst: SocketAddr, payload: &[u8]) {
    for _ in 0..50 {
        match sock.send_to(payload, dst) {
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EMSGSIZE),
                    "sending to {dst}: {e}"
                );
                return;
            }
        }
    }
    panic!("the client's kernel never took the path MTU to {dst}");
}

#[test]
fn too_big_gets_icmp_and_tcp_finds_the_path_mtu() {
    if !require_root("too_big_gets_icmp_and_tcp_finds_the_path_mtu") {
        return;
    }
    // Static neighbours: the XDP program redirects every forwardable frame from the first one,
    // so the ICMP errors below are sluice's, not the kernel's.
    let bed = RouterBed::new(RouterBedOpts {
        static_neighbours: true,
        ..Default::default()
    })
    .unwrap();
    bed.router()
        .set_mtu(bed.r1().iface(), NARROW_MTU.into())
        .unwrap();
    bed.server()
        .set_mtu(bed.s0().iface(), NARROW_MTU.into())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(
        &bed,
        &[bed.s0().ipv4().into(), bed.s0().ipv6().into()],
        stop.clone(),
    );
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface()]);
    exchange(&bed, bed.s0().ipv4().into(), 1);
    exchange(&bed, bed.s0().ipv6().into(), 1);
    let on_c0 = PacketSocket::open(bed.client(), bed.c0().iface()).unwrap();
    let payload = [0x5a; 1400];

    // (a) IPv4, DF: fragmentation needed (3/4) with the next hop's MTU, from r0.
    let sock = bed
        .client()
        .run(|| UdpSocket::bind((bed.c0().ipv4(), 0)))
        .unwrap()
        .unwrap();
    set_socket_option(
        sock.as_fd(),
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    )
    .unwrap();
    let dst: SocketAddr = (bed.s0().ipv4(), PORT).into();
    let (r0, s0) = (bed.r0().ipv4().octets(), bed.s0().ipv4().octets());
    let f = provoke_icmp(&on_c0, &sock, dst, &payload, |f| {
        f.len() >= 70 && f[12..14] == [0x08, 0x00] && f[23] == 1 && f[26..30] == r0
    });
    assert_eq!((f[34], f[35]), (3, 4), "fragmentation needed: {f:02x?}");
    assert_eq!(
        u16::from_be_bytes([f[40], f[41]]),
        NARROW_MTU,
        "next-hop MTU"
    );
    // The quote: the offending header (20 + 8 + 1400 bytes long, to s0) and 8 bytes of it.
    assert_eq!(u16::from_be_bytes([f[44], f[45]]), 1428, "{f:02x?}");
    assert_eq!(f[58..62], s0, "{f:02x?}");
    // The client's kernel took the MTU: the same datagram now fails locally.
    expect_emsgsize(&sock, dst, &payload);

    // (b) IPv6: packet too big (2/0) with the MTU, from r0.
    let sock6 = bed
        .client()
        .run(|| UdpSocket::bind((bed.c0().ipv6(), 0)))
        .unwrap()
        .unwrap();
    // IPv6 hosts fragment what exceeds the path MTU themselves, whatever IPV6_MTU_DISCOVER says;
    // IPV6_DONTFRAG makes a too-big send fail instead (checked below).
    set_socket_option(sock6.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1).unwrap();
    let dst6: SocketAddr = (bed.s0().ipv6(), PORT).into();
    let (r0_6, s0_6) = (bed.r0().ipv6().octets(), bed.s0().ipv6().octets());
    let f = provoke_icmp(&on_c0, &sock6, dst6, &payload, |f| {
        f.len() >= 62 + 40 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[22..38] == r0_6
    });
    assert_eq!((f[54], f[55]), (2, 0), "packet too big: {f:02x?}");
    assert_eq!(
        u32::from_be_bytes(f[58..62].try_into().unwrap()),
        u32::from(NARROW_MTU),
        "MTU"
    );
    assert_eq!(f[62 + 24..62 + 40], s0_6, "quoted destination: {f:02x?}");
    expect_emsgsize(&sock6, dst6, &payload);

    // (c) TCP finds the path MTU through sluice's ICMP. With both ends at 1280 the server would
    // advertise an MSS that already fits (1240) and no segment would ever be too big; so s0
    // goes back to 1500 (its MSS: 1460 / 1440) while r1, the router's egress, stays at 1280.
    // The server only sends ACKs and a 16-byte answer, which fit through r1 either way. The
    // service addresses are fresh destinations: (a) and (b) left 1280 cached for s0's.
    bed.server().set_mtu(bed.s0().iface(), 1500).unwrap();
    for (dst, mss) in [
        (IpAddr::from(RouterBed::SERVICE_IPV4), 1240),
        (IpAddr::from(RouterBed::SERVICE_IPV6), 1220),
    ] {
        let stream = tcp_upload(&bed, (dst, TCP_PORT).into(), 7);
        let info = tcp_info(stream.as_fd()).unwrap();
        assert_eq!(info.tcpi_pmtu, u32::from(NARROW_MTU), "path MTU to {dst}");
        assert!(
            info.tcpi_snd_mss <= mss,
            "MSS to {dst}: {}",
            info.tcpi_snd_mss
        );
    }

    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(xdp(&fin, "fib_no_neigh"), 0, "{fin}");
    assert!(
        xdp(&fin, "fwd_redirected") >= 2 * BULK as u64 / 1500,
        "{fin}"
    );
    assert!(port(&fin, 1, "tx_bytes") >= 2 * BULK as u64, "{fin}");
    assert_census(&fin);
}

// ----- live route changes ----------------------------------------------------------------------

/// Route delete / re-add cycles per family.
const ROUTE_CYCLES: usize = 3;

#[test]
fn route_deleted_and_re_added_takes_effect_at_once() {
    if !require_root("route_deleted_and_re_added_takes_effect_at_once") {
        return;
    }
    // Static neighbours: once the route is back, the first packet is sluice's to forward, so
    // what is measured is how soon sluice's table has it, not ARP.
    let bed = RouterBed::new(RouterBedOpts {
        static_neighbours: true,
        ..Default::default()
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (svc4, svc6) = (
        IpAddr::from(RouterBed::SERVICE_IPV4),
        IpAddr::from(RouterBed::SERVICE_IPV6),
    );
    echo_server(&bed, &[svc4, svc6], stop.clone());
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface()]);
    let on_c0 = PacketSocket::open(bed.client(), bed.c0().iface()).unwrap();
    let mut latencies = Vec::new();
    for (svc, len, via, from) in [
        (
            svc4,
            32,
            IpAddr::from(bed.s0().ipv4()),
            IpAddr::from(bed.c0().ipv4()),
        ),
        (svc6, 128, bed.s0().ipv6().into(), bed.c0().ipv6().into()),
    ] {
        exchange(&bed, svc, 20);
        let route = Route::via(svc, len, via).with_metric(RouterBed::PRIMARY_METRIC);
        let sock = bed
            .client()
            .run(|| UdpSocket::bind((from, 0)))
            .unwrap()
            .unwrap();
        let peer = SocketAddr::new(svc, PORT);
        let mut buf = [0u8; 64];
        for cycle in 0..ROUTE_CYCLES {
            bed.router().del_route(&route).unwrap();
            // No route in the router: the XDP program passes the packets to the kernel, which
            // answers with ICMP destination unreachable from r0; nothing is echoed.
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            for _ in 0..10 {
                sock.send_to(b"no route", peer).unwrap();
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    panic!(
                        "cycle {cycle}: {peer} echoed {:?} with its route deleted",
                        &buf[..n]
                    );
                }
            }
            let unreachable = on_c0
                .collect_incoming(Duration::from_millis(500), 1, |f| {
                    is_unreachable_from(f, &bed, svc.is_ipv6())
                })
                .unwrap();
            assert_eq!(
                unreachable.len(),
                1,
                "cycle {cycle}: no ICMP unreachable for {peer}"
            );

            // Back: probe every millisecond until the first echo.
            sock.set_read_timeout(Some(Duration::from_millis(1)))
                .unwrap();
            bed.router().add_route(&route).unwrap();
            let added = Instant::now();
            let took = loop {
                sock.send_to(b"route back?", peer).unwrap();
                if sock.recv_from(&mut buf).is_ok() {
                    break added.elapsed();
                }
                assert!(
                    added.elapsed() < Duration::from_secs(5),
                    "cycle {cycle}: no echo from {peer} within 5 s of re-adding its route"
                );
            };
            eprintln!("{peer}: route re-added, first echo after {took:?}");
            assert!(
                took < Duration::from_secs(1),
                "cycle {cycle}: {peer} answered {took:?} after its route came back"
            );
            latencies.push(took);
            // Late echoes of the probe burst must not confuse the next cycle.
            while sock.recv_from(&mut buf).is_ok() {}
        }
    }
    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    eprintln!("route re-add → first echo: {latencies:?}");
    assert!(xdp(&fin, "fib_local_or_noroute") >= 10, "{fin}");
    assert!(xdp(&fin, "fwd_redirected") >= 2 * 2 * 20, "{fin}");
    assert_census(&fin);
}

/// An ICMP(v6) destination unreachable from r0 (IPv4 type 3, IPv6 type 1).
fn is_unreachable_from(f: &[u8], bed: &RouterBed, v6: bool) -> bool {
    if v6 {
        f.len() >= 58
            && f[12..14] == [0x86, 0xdd]
            && f[20] == 58
            && f[22..38] == bed.r0().ipv6().octets()
            && f[54] == 1
    } else {
        f.len() >= 42
            && f[12..14] == [0x08, 0x00]
            && f[23] == 1
            && f[26..30] == bed.r0().ipv4().octets()
            && f[34] == 3
    }
}

// ----- forwarding off --------------------------------------------------------------------------

#[test]
fn forwarding_off_warns_and_passes_nothing_until_turned_on() {
    if !require_root("forwarding_off_warns_and_passes_nothing_until_turned_on") {
        return;
    }
    let bed = RouterBed::new(RouterBedOpts {
        forwarding: false,
        static_neighbours: true,
        ..Default::default()
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(
        &bed,
        &[bed.s0().ipv4().into(), bed.s0().ipv6().into()],
        stop.clone(),
    );
    let mut engine = Engine::start_in(
        bed.router(),
        &[
            "--iface",
            bed.r0().iface(),
            "--iface",
            bed.r1().iface(),
            "--app",
            "forward",
        ],
    );
    engine.wait_for_logs(
        &["forwarding is off", "app forward on"],
        Duration::from_secs(10),
    );

    // Nothing from the client reaches the server, either family.
    let on_s0 = PacketSocket::open(bed.server(), bed.s0().iface()).unwrap();
    for dst in [IpAddr::from(bed.s0().ipv4()), bed.s0().ipv6().into()] {
        let from: IpAddr = if dst.is_ipv6() {
            bed.c0().ipv6().into()
        } else {
            bed.c0().ipv4().into()
        };
        let sock = bed
            .client()
            .run(|| UdpSocket::bind((from, 0)))
            .unwrap()
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..10 {
            sock.send_to(b"forwarding off", (dst, PORT)).unwrap();
            assert!(
                sock.recv_from(&mut buf).is_err(),
                "{dst} echoed with forwarding off"
            );
        }
    }
    let (c4, c6) = (bed.c0().ipv4().octets(), bed.c0().ipv6().octets());
    let leaked = on_s0
        .collect_incoming(Duration::from_millis(200), 1, |f| {
            (f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[26..30] == c4)
                || (f.len() >= 54 && f[12..14] == [0x86, 0xdd] && f[22..38] == c6)
        })
        .unwrap();
    assert!(leaked.is_empty(), "reached s0: {leaked:02x?}");

    // On: the next packets go through (the XDP program's FIB lookup reads the setting).
    bed.set_forwarding(true).unwrap();
    const N: usize = 50;
    let up4 = exchange(&bed, bed.s0().ipv4().into(), N);
    let up6 = exchange(&bed, bed.s0().ipv6().into(), N);
    eprintln!("forwarding on: IPv4 echoed after {up4:?}, IPv6 after {up6:?}");
    assert!(up4 < Duration::from_secs(1), "IPv4 after {up4:?}");
    assert!(up6 < Duration::from_secs(1), "IPv6 after {up6:?}");

    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    assert!(xdp(&fin, "fib_fwd_disabled") >= 20, "{fin}");
    // Both ways, both families, every datagram through sluice (static neighbours).
    assert!(xdp(&fin, "fwd_redirected") >= 2 * 2 * N as u64, "{fin}");
    assert_census(&fin);
}

// ----- malformed and forbidden frames ----------------------------------------------------------

#[test]
fn malformed_and_forbidden_frames_are_dropped_by_reason() {
    if !require_root("malformed_and_forbidden_frames_are_dropped_by_reason") {
        return;
    }
    // Static neighbours: every frame below is forwardable by the kernel's FIB, so the XDP
    // program hands it to sluice rather than to the kernel.
    let bed = RouterBed::new(RouterBedOpts {
        static_neighbours: true,
        ..Default::default()
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    echo_server(&bed, &[bed.s0().ipv4().into()], stop.clone());
    let mut engine = start(&bed, &[bed.r0().iface(), bed.r1().iface()]);
    exchange(&bed, bed.s0().ipv4().into(), 5);

    let (c0, r0, s0) = (bed.c0(), bed.r0(), bed.s0());
    const SPORT: u16 = 40_000;
    let frame = |src: Ipv4Addr, ttl: u8| {
        PacketBuilder::ethernet2(c0.mac().octets(), r0.mac().octets()).ipv4(
            src.octets(),
            s0.ipv4().octets(),
            ttl,
        )
    };
    let mut bad_checksum = Vec::new();
    frame(c0.ipv4(), 64)
        .udp(SPORT, PORT)
        .write(&mut bad_checksum, b"bad header checksum")
        .unwrap();
    bad_checksum[24] ^= 0xff;
    let mut multicast_source = Vec::new();
    frame(Ipv4Addr::new(224, 0, 0, 5), 64)
        .udp(SPORT, PORT)
        .write(&mut multicast_source, b"from a group")
        .unwrap();
    // TTL 1 would earn a time exceeded, but the packet is itself an ICMP error (destination
    // unreachable, quoting a UDP datagram from s0 to c0): no error about an error.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(s0.ipv4().octets(), c0.ipv4().octets(), 64)
        .udp(PORT, SPORT)
        .write(&mut quoted, &[])
        .unwrap();
    let mut icmp_error = Vec::new();
    frame(c0.ipv4(), 1)
        .icmpv4_raw(3, 1, [0; 4])
        .write(&mut icmp_error, &quoted)
        .unwrap();

    let on_c0 = PacketSocket::open(bed.client(), c0.iface()).unwrap();
    let on_s0 = PacketSocket::open(bed.server(), s0.iface()).unwrap();
    let inject = PacketSocket::open(bed.client(), c0.iface()).unwrap();
    // Different counts per kind, so a frame counted under the wrong reason shows.
    let sent = [
        ("bad_ip_checksum", &bad_checksum, 3u64),
        ("martian_source", &multicast_source, 2),
        ("icmp_suppressed", &icmp_error, 1),
    ];
    for (_, f, n) in &sent {
        for _ in 0..*n {
            inject.send(f).unwrap();
        }
    }
    // Frames from c0 reach r0's single queue in order: once this echo is back, sluice has judged
    // every injected frame.
    exchange(&bed, s0.ipv4().into(), 1);
    let answered = on_c0
        .collect_incoming(Duration::from_millis(200), 1, |f| {
            f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 1
        })
        .unwrap();
    assert!(answered.is_empty(), "ICMP came back: {answered:02x?}");
    let forwarded = on_s0
        .collect_incoming(Duration::from_millis(200), 1, |f| {
            f.len() >= 34
                && f[12..14] == [0x08, 0x00]
                && (f[23] == 1 || f[34..36] == SPORT.to_be_bytes())
        })
        .unwrap();
    assert!(forwarded.is_empty(), "forwarded to s0: {forwarded:02x?}");

    let fin = engine.stop();
    stop.store(true, Ordering::Relaxed);
    let drops = fin["total"]["drops"]
        .as_object()
        .unwrap_or_else(|| panic!("no total.drops: {fin}"));
    for (reason, count) in drops {
        let want = sent
            .iter()
            .find(|(r, _, _)| r == reason)
            .map_or(0, |(_, _, n)| *n);
        assert_eq!(count.as_u64(), Some(want), "drops.{reason}: {fin}");
    }
    for (reason, _, _) in &sent {
        assert!(drops.contains_key(*reason), "no drops.{reason}: {fin}");
    }
    assert_eq!(fin["total"]["dropped"].as_u64(), Some(6), "{fin}");
    assert_census(&fin);
}
