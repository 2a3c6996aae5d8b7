//! The hot-upgrade protocol: a successor (`sluice run … --takeover`) takes the data plane over
//! from the engine serving the interfaces, on the engine's own control socket.
//!
//! ```text
//! successor                                   running engine
//!   {"msg":"takeover", "setup":…}  ─────────▶  (root or admin group; setups must match)
//!                                  ◀─────────  {"msg":"refused","reason":…}      (and stop)
//!                                  ◀─────────  {"msg":"offer",…} + SCM_RIGHTS fds
//!   map UMEMs, rings, maps
//!   {"msg":"ready"}                ─────────▶  stop the workers at a batch boundary
//!   (or {"msg":"abort","reason"})              (the rings are not touched any more)
//!                                  ◀─────────  {"msg":"state",…}  (frames held, TX in flight)
//!   {"msg":"commit"}               ─────────▶  point of no return: release the link, exit 0
//!   start the workers              ◀─────────  {"msg":"done"}
//! ```
//!
//! Until the running engine has read `commit` it can take everything back: EOF, `abort` or a
//! timeout before it restarts its workers on the same rings. A `commit` that the successor
//! managed to send is always read (the engine shuts the connection down before its final look
//! at the queue), so both sides always agree on who owns the rings.
//!
//! The fds of an offer, in order: per port the bpf_link and the five maps
//! ([`crate::steer::SteeringSet::handover_fds`]); per queue the UMEM memfd and one socket per
//! port ([`crate::xsk::XskQueue::handover_fds`]); per port the listening control socket; then
//! what the app and the metrics endpoint own ([`Extras`], in its field order): the TAP device
//! of the kernel path (forward), the DNS-over-TCP listener (dns), the metrics listener.

use crate::steer::{Rule, SteerMode, XdpMode};
use crate::xsk::QueueState;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// Largest message of the protocol (a state lists every stashed frame: 8 bytes × frame count
/// as JSON numbers, so up to about 20 bytes each).
pub const MAX_MESSAGE: usize = 4 << 20;

/// Most fds one offer may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// How long either side waits for the other's next message before giving up (the running
/// engine then keeps serving).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What must be equal on both sides: the settings the passed sockets and UMEMs were made
/// with. Everything else (batch, cores, idle policy, stats) is the successor's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    /// The interfaces (ports), in order.
    pub ifaces: Vec<String>,
    /// The queues served.
    pub queues: Vec<u32>,
    /// `--frame-size`.
    pub frame_size: u32,
    /// `--frame-count`.
    pub frame_count: u32,
    /// `--fill-ring`.
    pub fill_ring: u32,
    /// `--comp-ring`.
    pub comp_ring: u32,
    /// `--rx-ring`.
    pub rx_ring: u32,
    /// `--tx-ring`.
    pub tx_ring: u32,
    /// The kernel headroom asked per frame (set by the app).
    pub headroom: u32,
    /// The app kind: `ports` (reflect, drop, patch, an `App` of one's own), `forward`, `lb`
    /// or `dns`.
    pub app: String,
    /// The dns app's port (UDP, and TCP with the listener that is passed on).
    #[serde(default)]
    pub dns_port: Option<u16>,
}

impl Setup {
    /// `Ok` if `theirs` (the successor's) matches `self` (the running engine's); otherwise a
    /// message naming the first setting that differs, as the successor's flag.
    pub fn check(&self, theirs: &Setup) -> Result<(), String> {
        let differ = |flag: &str, ours: String, them: String| {
            Err(format!(
                "{flag} differs: the running engine has {ours}, the successor asks for {them} \
                 (a hot upgrade keeps the sockets and UMEM as they are)"
            ))
        };
        if self.ifaces != theirs.ifaces {
            return differ("--iface", self.ifaces.join(","), theirs.ifaces.join(","));
        }
        if self.queues != theirs.queues {
            return differ(
                "--queues",
                format!("{:?}", self.queues),
                format!("{:?}", theirs.queues),
            );
        }
        for (flag, a, b) in [
            ("--frame-size", self.frame_size, theirs.frame_size),
            ("--frame-count", self.frame_count, theirs.frame_count),
            ("--fill-ring", self.fill_ring, theirs.fill_ring),
            ("--comp-ring", self.comp_ring, theirs.comp_ring),
            ("--rx-ring", self.rx_ring, theirs.rx_ring),
            ("--tx-ring", self.tx_ring, theirs.tx_ring),
            ("headroom (set by --app)", self.headroom, theirs.headroom),
        ] {
            if a != b {
                return differ(flag, a.to_string(), b.to_string());
            }
        }
        if self.app != theirs.app {
            return differ("--app", self.app.clone(), theirs.app.clone());
        }
        if self.dns_port != theirs.dns_port {
            let port = |p: Option<u16>| p.map_or("none".into(), |p| p.to_string());
            return differ(
                "--udp (the DNS port)",
                port(self.dns_port),
                port(theirs.dns_port),
            );
        }
        Ok(())
    }
}

/// The TAP device of the forward app's kernel path, as passed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapInfo {
    /// Its name (`sk-<first port>`).
    pub name: String,
    /// Its MAC (frames written to it are addressed to it).
    pub mac: [u8; 6],
}

/// What the app and the metrics endpoint own besides the data plane, passed after the control
/// sockets in this field order (each present one is one fd). Absent in an offer from an older
/// sluice, which passed none of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extras {
    /// forward: the TAP device (kept open across the hand-over, so it is never removed).
    #[serde(default)]
    pub tap: Option<TapInfo>,
    /// dns: the TCP listener bound before the privilege drop is passed.
    #[serde(default)]
    pub dns_tcp: bool,
    /// The metrics listener is passed; this is its `--metrics` address as configured.
    #[serde(default)]
    pub metrics: Option<std::net::SocketAddr>,
}

impl Extras {
    /// How many fds these extras take.
    pub fn fds(&self) -> usize {
        usize::from(self.tap.is_some())
            + usize::from(self.dns_tcp)
            + usize::from(self.metrics.is_some())
    }
}

/// What the running engine offers with the fds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Offer {
    /// Its pid, for the successor's log.
    pub pid: u32,
    /// Its setup (equal to the successor's, or there would be no offer).
    pub setup: Setup,
    /// The XDP mode granted at attach.
    pub xdp_mode: XdpMode,
    /// The program's id on each port (it stays the same).
    pub prog_ids: Vec<u32>,
    /// The steering mode.
    pub steer_mode: SteerMode,
    /// The rules in force (including those changed with `sluice ctl rules`).
    pub rules: Vec<Rule>,
    /// The app's and the metrics endpoint's fds that follow the control sockets.
    #[serde(default)]
    pub extras: Extras,
    /// Fds that follow (see the module doc for their order).
    pub fds: usize,
}

/// One message of the protocol.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum Msg {
    /// Successor → engine: the first message, on a fresh control connection.
    Takeover {
        /// The successor's setup.
        setup: Setup,
    },
    /// Engine → successor: no hand-over (not allowed, setups differ, a hand-over already in
    /// progress). The engine keeps serving.
    Refused {
        /// Why, for the successor's error line.
        reason: String,
    },
    /// Engine → successor, with the fds.
    Offer(Offer),
    /// Successor → engine: everything is mapped; stop the workers.
    Ready,
    /// Either way: give up; the engine keeps (or goes back to) serving.
    Abort {
        /// Why.
        reason: String,
    },
    /// Engine → successor: the workers have stopped; what they held.
    State {
        /// One per queue, in the setup's queue order.
        queues: Vec<QueueState>,
    },
    /// Successor → engine: the successor owns the data plane from here on.
    Commit,
    /// Engine → successor: understood; the engine exits.
    Done,
}

impl Msg {
    /// True if `buf` is the first message of a takeover (how the control socket tells it from
    /// an ordinary request).
    pub fn is_takeover(buf: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Value>(buf)
            .ok()
            .and_then(|v| {
                v.get("msg")
                    .and_then(|m| m.as_str())
                    .map(|m| m == "takeover")
            })
            .unwrap_or(false)
    }

    /// Decode one message.
    pub fn decode(buf: &[u8]) -> io::Result<Msg> {
        serde_json::from_slice(buf).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed hand-over message: {e}"),
            )
        })
    }
}

/// Send `msg` on `conn`, with `fds` attached (`SCM_RIGHTS`).
pub fn send(conn: BorrowedFd<'_>, msg: &Msg, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} fds to pass, at most {MAX_FDS} fit one message",
                fds.len()
            ),
        ));
    }
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "no room for the fds in the control buffer",
        ));
    }
    let sent = rustix::net::sendmsg(
        conn,
        &[IoSlice::new(&bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != bytes.len() {
        return Err(io::Error::other("hand-over message sent in part"));
    }
    Ok(())
}

/// Wait up to `timeout` for the next message on `conn`; returns it with any fds it carried.
/// EOF is `UnexpectedEof`, a timeout `TimedOut`.
pub fn recv(conn: BorrowedFd<'_>, timeout: Duration) -> io::Result<(Msg, Vec<OwnedFd>)> {
    let ts = rustix::event::Timespec::try_from(timeout).map_err(io::Error::other)?;
    let mut pfd = [rustix::event::PollFd::new(
        &conn,
        rustix::event::PollFlags::IN,
    )];
    loop {
        match rustix::event::poll(&mut pfd, Some(&ts)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer in time from the other side of the hand-over",
                ));
            }
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    recv_now(conn)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the other side of the hand-over closed the connection",
        )
    })
}

/// Read one message if one is queued (`Ok(None)` on EOF or nothing queued).
pub fn recv_now(conn: BorrowedFd<'_>) -> io::Result<Option<(Msg, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = match rustix::net::recvmsg(
        conn,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    ) {
        Ok(r) => r,
        Err(rustix::io::Errno::AGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    if got.bytes == 0 {
        return Ok(None);
    }
    if got.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "hand-over message too large",
        ));
    }
    Ok(Some((Msg::decode(&buf[..got.bytes])?, fds)))
}

/// Connect to the control socket of the engine serving `iface` (the successor's first step).
pub fn connect(iface: &str) -> io::Result<OwnedFd> {
    let conn = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    // Messages up to MAX_MESSAGE both ways.
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&conn, MAX_MESSAGE + 4096);
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&conn, MAX_MESSAGE + 4096);
    rustix::net::connect(&conn, &super::proto::socket_addr(iface)?).map_err(|e| {
        if e == rustix::io::Errno::CONNREFUSED || e == rustix::io::Errno::NOENT {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no sluice serves {iface} here to take over from"),
            )
        } else {
            e.into()
        }
    })?;
    Ok(conn)
}

/// Borrow every fd of `fds`.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}

#[cfg(test)]
mod test {
    use super::*;

    fn setup() -> Setup {
        Setup {
            ifaces: vec!["veth0".into()],
            queues: vec![0, 1],
            frame_size: 2048,
            frame_count: 8192,
            fill_ring: 8192,
            comp_ring: 2048,
            rx_ring: 4096,
            tx_ring: 2048,
            headroom: 0,
            app: "reflect".into(),
            dns_port: None,
        }
    }

    #[test]
    fn a_mismatch_names_the_flag() {
        let a = setup();
        assert!(a.check(&a.clone()).is_ok());
        let b = Setup {
            frame_size: 4096,
            ..setup()
        };
        let e = a.check(&b).unwrap_err();
        assert!(
            e.contains("--frame-size") && e.contains("2048") && e.contains("4096"),
            "{e}"
        );
        let b = Setup {
            queues: vec![0],
            ..setup()
        };
        assert!(a.check(&b).unwrap_err().contains("--queues"));
        let b = Setup {
            ifaces: vec!["veth1".into()],
            ..setup()
        };
        assert!(a.check(&b).unwrap_err().contains("--iface"));
        let b = Setup {
            dns_port: Some(5353),
            ..setup()
        };
        assert!(a.check(&b).unwrap_err().contains("DNS port"));
    }

    #[test]
    fn an_offer_without_extras_decodes_and_extras_count_their_fds() {
        // An offer as an older sluice sends it: no extras, no dns_port.
        let old = r#"{"msg":"offer","pid":7,"setup":{"ifaces":["veth0"],"queues":[0],
            "frame_size":2048,"frame_count":8192,"fill_ring":8192,"comp_ring":2048,
            "rx_ring":4096,"tx_ring":2048,"headroom":0,"app":"ports"},"xdp_mode":"driver",
            "prog_ids":[5],"steer_mode":"ports","rules":[],"fds":8}"#;
        match Msg::decode(old.as_bytes()) {
            Ok(Msg::Offer(o)) => {
                assert_eq!(o.extras, Extras::default());
                assert_eq!(o.setup.dns_port, None);
            }
            other => panic!("{other:?}"),
        }
        let e = Extras {
            tap: Some(TapInfo {
                name: "sk-veth0".into(),
                mac: [2, 0, 0, 0, 0, 1],
            }),
            dns_tcp: true,
            metrics: Some("127.0.0.1:9100".parse().unwrap()),
        };
        assert_eq!(e.fds(), 3);
        assert_eq!(Extras::default().fds(), 0);
    }

    #[test]
    fn messages_round_trip_and_takeover_is_recognised() {
        let m = Msg::Takeover { setup: setup() };
        let bytes = serde_json::to_vec(&m).unwrap();
        assert!(Msg::is_takeover(&bytes));
        assert!(!Msg::is_takeover(br#"{"v":1,"cmd":"status"}"#));
        assert!(matches!(Msg::decode(&bytes).unwrap(), Msg::Takeover { .. }));
    }

    #[test]
    fn fds_pass_over_a_socket_pair() {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let memfd = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&memfd, 4096).unwrap();
        send(a.as_fd(), &Msg::Ready, &[memfd.as_fd()]).unwrap();
        let (m, fds) = recv(b.as_fd(), Duration::from_secs(1)).unwrap();
        assert!(matches!(m, Msg::Ready));
        assert_eq!(fds.len(), 1);
        assert_eq!(rustix::fs::fstat(&fds[0]).unwrap().st_size, 4096);
        drop(a);
        let e = recv(b.as_fd(), Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
