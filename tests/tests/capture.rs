//! `sluice ctl capture` end to end: known UDP datagrams through `reflect`, captured as pcapng,
//! read back by tcpdump (the operator's reader) and, byte for byte, by pcap-file.

mod common;

use common::*;
use pcap_file::pcapng::{Block, PcapNgReader};
use sluice_testbed::{TestBed, require_root};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PORT: u16 = 9000;
const N: usize = 10;

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("sluice-capture-{i:04}-").into_bytes();
    p.extend((0..i * 37).map(|k| (k % 251) as u8));
    p
}

/// Send the N known datagrams from the peer and check each echo.
fn send_known(bed: &TestBed) {
    let target = SocketAddr::new(bed.engine().ipv4().into(), PORT);
    let bind = SocketAddr::new(bed.peer().ipv4().into(), 0);
    bed.peer()
        .ns()
        .run(move || {
            let s = UdpSocket::bind(bind).unwrap();
            s.connect(target).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 2048];
            for i in 0..N {
                s.send(&payload(i)).unwrap();
                let n = s.recv(&mut buf).expect("echo");
                assert_eq!(&buf[..n], &payload(i)[..]);
            }
        })
        .unwrap();
}

fn ctl_capture(bed: &TestBed, uid: Option<u32>, args: &[&str], stdout: Stdio) -> Child {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["ctl", "--iface", bed.engine().iface(), "capture"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    if let Some(u) = uid {
        std::os::unix::process::CommandExt::uid(&mut cmd, u);
        std::os::unix::process::CommandExt::gid(&mut cmd, u);
    }
    bed.engine().ns().spawn(&mut cmd).unwrap()
}

/// Wait (bounded) for a child to end.
fn wait(mut c: Child, limit: Duration) -> Output {
    let end = Instant::now() + limit;
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = c.kill();
            panic!("{c:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    c.wait_with_output().unwrap()
}

fn tcpdump_available() -> bool {
    let ok = Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs tcpdump (.ci/run installs it)"
        );
        eprintln!("skipping: tcpdump is not installed (apt-get install tcpdump)");
    }
    ok
}

/// (src, dst) UDP ports, payload and (src, dst) addresses of an Ethernet/IPv4/UDP frame.
type Udp = ((u16, u16), Vec<u8>, ([u8; 4], [u8; 4]));

fn udp_of(frame: &[u8]) -> Udp {
    let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
        panic!("not UDP")
    };
    (
        (u.source_port(), u.destination_port()),
        u.payload().to_vec(),
        (
            ip.header().source_addr().octets(),
            ip.header().destination_addr().octets(),
        ),
    )
}

#[test]
fn a_capture_file_holds_exactly_the_frames_received_and_sent() {
    if !require_root("a_capture_file_holds_exactly_the_frames_received_and_sent")
        || !tcpdump_available()
    {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);
    let path = std::env::temp_dir().join(format!("sluice-capture-{}.pcapng", std::process::id()));
    let path_s = path.to_str().unwrap().to_string();
    let count = (2 * N).to_string();
    let ctl = ctl_capture(
        &bed,
        None,
        &["--count", &count, "--direction", "both", "-w", &path_s],
        Stdio::null(),
    );
    engine.wait_for_log("capture started", Duration::from_secs(5));
    send_known(&bed);
    let out = wait(ctl, Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{} frame(s) written", 2 * N)),
        "{err}"
    );
    assert!(err.contains("ended by count"), "{err}");
    let mode = std::fs::metadata(&path).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // tcpdump reads it: 2N UDP packets, each way.
    let td = Command::new("tcpdump")
        .args(["-n", "-r", &path_s])
        .output()
        .unwrap();
    assert!(
        td.status.success(),
        "{}",
        String::from_utf8_lossy(&td.stderr)
    );
    let text = String::from_utf8_lossy(&td.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * N, "{text}");
    let (e, p) = (bed.engine().ipv4(), bed.peer().ipv4());
    let to_engine = lines
        .iter()
        .filter(|l| l.contains(&format!("> {e}.{PORT}: UDP")))
        .count();
    let from_engine = lines
        .iter()
        .filter(|l| l.contains(&format!("{e}.{PORT} > {p}.")))
        .count();
    assert_eq!((to_engine, from_engine), (N, N), "{text}");

    // Byte for byte: each received frame carries the datagram sent, each sent frame is its
    // reflection (addresses and ports swapped, the same payload), on interface 0, in order.
    let bytes = std::fs::read(&path).unwrap();
    let mut r = PcapNgReader::new(&bytes[..]).unwrap();
    let (mut rx, mut tx) = (Vec::new(), Vec::new());
    let mut names = Vec::new();
    while let Some(b) = r.next_block() {
        match b.unwrap() {
            Block::InterfaceDescription(idb) => names.push(format!("{:?}", idb.options)),
            Block::EnhancedPacket(p) => {
                assert_eq!(p.original_len as usize, p.data.len());
                let dir = p
                    .options
                    .iter()
                    .find_map(|o| match o {
                        pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Flags(
                            f,
                        ) => Some(f & 3),
                        _ => None,
                    })
                    .expect("direction flags");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                assert!(
                    now - p.timestamp < Duration::from_secs(60),
                    "timestamp {:?}",
                    p.timestamp
                );
                match dir {
                    1 => rx.push(p.data.to_vec()),
                    2 => tx.push(p.data.to_vec()),
                    d => panic!("direction {d}"),
                }
            }
            _ => {}
        }
    }
    assert_eq!(names.len(), 1, "one port, one queue");
    assert!(names[0].contains(bed.engine().iface()), "{}", names[0]);
    assert!(names[0].contains("queue 0"), "{}", names[0]);
    assert_eq!((rx.len(), tx.len()), (N, N));
    for i in 0..N {
        let (ports, data, addrs) = udp_of(&rx[i]);
        assert_eq!(data, payload(i), "rx frame {i}");
        assert_eq!(ports.1, PORT);
        let (tports, tdata, taddrs) = udp_of(&tx[i]);
        assert_eq!(tdata, payload(i), "tx frame {i}");
        assert_eq!((tports.1, tports.0), ports);
        assert_eq!((taddrs.1, taddrs.0), addrs);
        assert_eq!(&tx[i][..6], &rx[i][6..12], "MACs swapped");
    }
    let _ = std::fs::remove_file(&path);
    assert_census(&engine.stop());
}

#[test]
fn a_capture_streams_to_tcpdump_and_needs_admin_rights() {
    if !require_root("a_capture_streams_to_tcpdump_and_needs_admin_rights") || !tcpdump_available()
    {
        return;
    }
    let bed = bed(1);
    let mut engine = start_ready(&bed, &["--udp", "9000"], PORT);

    // Not root, no admin group: refused, nothing armed.
    let denied = wait(
        ctl_capture(&bed, Some(65534), &["-w", "/dev/null"], Stdio::null()),
        Duration::from_secs(10),
    );
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("permission denied"), "{err}");

    // `-w - | tcpdump -r -`, rx only, snaplen 60.
    let count = N.to_string();
    let mut ctl = ctl_capture(
        &bed,
        None,
        &["--count", &count, "--snaplen", "60", "-w", "-"],
        Stdio::piped(),
    );
    let td = Command::new("tcpdump")
        .args(["-n", "-r", "-"])
        .stdin(ctl.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    engine.wait_for_log("capture started", Duration::from_secs(5));
    send_known(&bed);
    let out = wait(ctl, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let td = wait(td, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&td.stdout);
    assert!(
        td.status.success(),
        "{}",
        String::from_utf8_lossy(&td.stderr)
    );
    assert_eq!(text.lines().count(), N, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains(&format!("> {}.{PORT}: UDP", bed.engine().ipv4()))),
        "{text}"
    );

    // The ctl client going away ends a capture (no count, no duration).
    let ctl = ctl_capture(&bed, None, &["-w", "/dev/null"], Stdio::null());
    engine.wait_for_log("capture started", Duration::from_secs(5));
    let pid = nix::unistd::Pid::from_raw(ctl.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = wait(ctl, Duration::from_secs(5));
    engine.wait_for_log("capture ended (client)", Duration::from_secs(5));
    assert_census(&engine.stop());
}
