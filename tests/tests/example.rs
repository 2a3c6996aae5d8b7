//! End to end through the `uppercase` example (`engine/examples/uppercase.rs`), the model of an
//! app built on sluice as a library: on a veth pair, kernel UDP clients in the peer namespace get
//! every datagram back upper-cased over IPv4 and IPv6 (the kernel delivers only datagrams whose
//! checksums are valid; a packet socket and etherparse check them as well), datagrams to a port
//! that is not steered reach the engine namespace's kernel and are not answered, and broadcast,
//! multicast and malformed datagrams to the steered port are dropped and counted.

mod common;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use sluice_testbed::{PacketSocket, TestBed, require_root};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PORT: u16 = 9000;
const NOT_STEERED: u16 = 9001;

/// The example binary: `$UPPERCASE_BIN`, else `target/<profile>/examples/uppercase` (built by
/// `cargo build -p sluice --examples`, which `cargo xtask test` does).
fn uppercase_bin() -> PathBuf {
    if let Ok(p) = std::env::var("UPPERCASE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/example-xxxx → target/<profile>/examples/uppercase
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join("uppercase");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p sluice --examples`, which `cargo xtask \
         test` does) or set UPPERCASE_BIN",
        bin.display()
    );
    bin
}

/// The example running in the bed's engine namespace; killed on drop if still running.
struct Uppercase {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
}

impl Uppercase {
    fn start(bed: &TestBed) -> Uppercase {
        let mut cmd = Command::new(uppercase_bin());
        cmd.args(["--iface", bed.engine().iface(), "--udp", "9000"])
            .args(["--queues", "1", "--stats-interval", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = bed
            .engine()
            .ns()
            .spawn(&mut cmd)
            .expect("spawning uppercase");
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[uppercase] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Uppercase {
            child: Some(child),
            stderr,
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// SIGTERM, expect exit 0 within 15 s; return its stderr lines.
    fn stop(&mut self) -> Vec<String> {
        let mut child = self.child.take().expect("already stopped");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let end = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(st) = child.try_wait().expect("waiting for uppercase") {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("uppercase did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lines = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            lines.push(l);
        }
        assert!(
            status.success(),
            "uppercase exited with {status}: {lines:?}"
        );
        lines
    }
}

impl Drop for Uppercase {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A UDP socket in `ns`'s namespace bound to `local`, with a receive timeout.
fn socket(ns: &sluice_testbed::Netns, local: SocketAddr, timeout: Duration) -> UdpSocket {
    ns.run(move || {
        let s = UdpSocket::bind(local)?;
        s.set_read_timeout(Some(timeout))?;
        Ok::<_, std::io::Error>(s)
    })
    .expect("entering the namespace")
    .expect("binding a UDP socket")
}

/// The peer's client socket towards the engine's `port` over IPv4 or IPv6.
fn client(bed: &TestBed, v6: bool, port: u16) -> (UdpSocket, SocketAddr) {
    let (local, target): (IpAddr, IpAddr) = if v6 {
        (bed.peer().ipv6().into(), bed.engine().ipv6().into())
    } else {
        (bed.peer().ipv4().into(), bed.engine().ipv4().into())
    };
    let s = socket(
        bed.peer().ns(),
        SocketAddr::new(local, 0),
        Duration::from_millis(500),
    );
    (s, SocketAddr::new(target, port))
}

/// Send `payload` to `to` and wait (at most 3 × the socket timeout) for a datagram from `to`.
fn ask(s: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    s.send_to(payload, to).expect("send_to");
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        match s.recv_from(&mut buf) {
            Ok((n, from)) if from == to => return Some(buf[..n].to_vec()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Wait (at most 20 s) until the example answers on IPv4.
fn wait_ready(bed: &TestBed, app: &mut Uppercase) {
    let (s, to) = client(bed, false, PORT);
    let end = Instant::now() + Duration::from_secs(20);
    while ask(&s, to, b"ready?").as_deref() != Some(b"READY?") {
        assert!(app.is_running(), "uppercase exited early");
        assert!(Instant::now() < end, "uppercase never answered on {to}");
    }
}

/// Sizes from 1 byte to `max`, with contents mixing lower case, upper case and non-ASCII bytes.
fn datagrams(max: usize) -> Vec<Vec<u8>> {
    let mut sizes: Vec<usize> = (1..=40).collect();
    sizes.extend((41..max).step_by(61));
    sizes.push(max);
    let mut out: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&n| (0..n).map(|i| (i * 7 + n * 13) as u8).collect())
        .collect();
    out.push(b"the quick brown fox jumps over the lazy dog".to_vec());
    out.push("grüße, ça va? ß".as_bytes().to_vec());
    out
}

fn answers_every_datagram_upper_cased(bed: &TestBed, v6: bool) -> u64 {
    // MTU 1500: IPv4 20 + UDP 8 → 1472; IPv6 40 + UDP 8 → 1452.
    let max = if v6 { 1452 } else { 1472 };
    let (s, to) = client(bed, v6, PORT);
    let all = datagrams(max);
    for d in &all {
        let reply = ask(&s, to, d).unwrap_or_else(|| panic!("no answer to {} bytes", d.len()));
        assert_eq!(
            reply,
            d.to_ascii_uppercase(),
            "answer to {} bytes over {}",
            d.len(),
            if v6 { "IPv6" } else { "IPv4" }
        );
    }
    all.len() as u64
}

/// The frames the engine sends back, seen raw on the peer's side: every UDP checksum (and the
/// IPv4 header checksum) is what a full recomputation gives.
fn replies_on_the_wire_have_valid_checksums(bed: &TestBed) -> u64 {
    let raw = PacketSocket::open(bed.peer().ns(), bed.peer().iface()).expect("packet socket");
    let mut sent = 0;
    for v6 in [false, true] {
        let (s, to) = client(bed, v6, PORT);
        for d in [&b"a"[..], b"checksum me", &[b'z'; 999]] {
            assert!(ask(&s, to, d).is_some());
            sent += 1;
        }
    }
    let frames = raw
        .collect_incoming(Duration::from_secs(2), 6, |f| {
            let Ok(p) = SlicedPacket::from_ethernet(f) else {
                return false;
            };
            matches!(p.transport, Some(TransportSlice::Udp(u)) if u.source_port() == PORT)
        })
        .expect("reading the packet socket");
    assert_eq!(frames.len(), 6, "six answers seen on the wire");
    for f in &frames {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            unreachable!()
        };
        let want = match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                u.to_header()
                    .calc_checksum_ipv4_raw(h.source(), h.destination(), u.payload())
                    .unwrap()
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                u.to_header()
                    .calc_checksum_ipv6_raw(h.source(), h.destination(), u.payload())
                    .unwrap()
            }
            _ => panic!("not IP: {f:02x?}"),
        };
        assert_eq!(u.checksum(), want, "UDP checksum of {f:02x?}");
    }
    sent
}

/// Datagrams to a port that is not steered go to the engine namespace's kernel (a plain socket
/// there gets them) and nothing answers.
fn other_ports_go_to_the_kernel(bed: &TestBed) {
    for v6 in [false, true] {
        let local: IpAddr = if v6 {
            bed.engine().ipv6().into()
        } else {
            bed.engine().ipv4().into()
        };
        let kernel = socket(
            bed.engine().ns(),
            SocketAddr::new(local, NOT_STEERED),
            Duration::from_secs(2),
        );
        let (s, to) = client(bed, v6, NOT_STEERED);
        assert_eq!(ask(&s, to, b"not for sluice"), None, "answered on {to}");
        let mut buf = [0u8; 64];
        let (n, _) = kernel
            .recv_from(&mut buf)
            .expect("the kernel socket gets it");
        assert_eq!(&buf[..n], b"not for sluice", "delivered unchanged");
    }
}

/// Frames the example must not answer, injected raw from the peer: a broadcast, an IPv6
/// multicast and a datagram whose UDP length disagrees with its IP length. None is answered.
/// Returns how many were sent.
fn refuses_group_and_malformed_datagrams(bed: &TestBed) -> u64 {
    let raw = PacketSocket::open(bed.peer().ns(), bed.peer().iface()).expect("packet socket");
    let (peer_mac, engine_mac) = (bed.peer().mac().0, bed.engine().mac().0);
    let mut frames = Vec::new();

    let mut broadcast = Vec::new();
    PacketBuilder::ethernet2(peer_mac, [0xff; 6])
        .ipv4(bed.peer().ipv4().octets(), [10, 77, 0, 255], 64)
        .udp(40000, PORT)
        .write(&mut broadcast, b"to everyone")
        .unwrap();
    frames.push(broadcast);

    let mut multicast = Vec::new();
    let all_nodes = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    PacketBuilder::ethernet2(peer_mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(bed.peer().ipv6().octets(), all_nodes, 64)
        .udp(40000, PORT)
        .write(&mut multicast, b"to all nodes")
        .unwrap();
    frames.push(multicast);

    let mut bad_length = Vec::new();
    PacketBuilder::ethernet2(peer_mac, engine_mac)
        .ipv4(bed.peer().ipv4().octets(), bed.engine().ipv4().octets(), 64)
        .udp(40000, PORT)
        .write(&mut bad_length, b"bad length")
        .unwrap();
    // The UDP length field (Ethernet 14 + IPv4 20 + 4) one byte short of the IP payload.
    bad_length[38..40].copy_from_slice(&(8u16 + 9).to_be_bytes());
    frames.push(bad_length);

    for f in &frames {
        raw.send(f).expect("injecting a frame");
    }
    let answers = raw
        .collect_incoming(Duration::from_millis(500), 1, |f| {
            SlicedPacket::from_ethernet(f).is_ok_and(
                |p| matches!(p.transport, Some(TransportSlice::Udp(u)) if u.source_port() == PORT),
            )
        })
        .expect("reading the packet socket");
    assert!(answers.is_empty(), "answered: {answers:02x?}");
    frames.len() as u64
}

#[test]
fn uppercase_example_answers_over_ipv4_and_ipv6() {
    if !require_root("uppercase_example_answers_over_ipv4_and_ipv6") {
        return;
    }
    let bed = common::bed(1); // TX checksum offload off on both ends (see the README)
    let mut app = Uppercase::start(&bed);
    wait_ready(&bed, &mut app);

    let mut answered = answers_every_datagram_upper_cased(&bed, false);
    answered += answers_every_datagram_upper_cased(&bed, true);
    answered += replies_on_the_wire_have_valid_checksums(&bed);
    other_ports_go_to_the_kernel(&bed);
    let refused = refuses_group_and_malformed_datagrams(&bed);
    assert_eq!(refused, 3);

    let lines = app.stop();
    let summary = lines
        .iter()
        .find(|l| l.starts_with("uppercase: "))
        .unwrap_or_else(|| panic!("no summary line in {lines:?}"));
    // "uppercase: RX datagrams in, TX answered, N dropped [policy 2, l4_length 1]"; RX includes
    // the readiness probes.
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [rx, tx, dropped, ..] = numbers[..] else {
        panic!("unexpected summary: {summary}");
    };
    assert!(tx >= answered, "{summary}");
    assert_eq!(rx, tx + dropped, "{summary}");
    assert_eq!(dropped, refused, "{summary}");
    assert!(summary.ends_with("[policy 2, l4_length 1]"), "{summary}");
}
