//! AF_XDP: the UMEM, one socket per queue, its four rings, bind modes and wakeups.
//!
//! This module owns every piece of AF_XDP `unsafe` in sluice (with [`crate::sys`] for plain
//! syscalls). It is a transport and nothing more: it moves frame descriptors ([`Desc`]) between
//! the rings and lends the caller the bytes of received frames; it never parses a packet, knows
//! no app, verdict or counter of the worker's, and makes no policy decision.
//!
//! # Frame invariant
//! Each UMEM frame is at every moment in exactly one place: the fill ring, the kernel, the RX
//! ring, the worker (its stash, or the batch being processed), the TX ring or the completion ring.
//! [`XskQueue::census`] counts the places user space can see; the kernel's share is the rest.
//! In copy mode the kernel holds no frame once traffic stops and the TX ring has drained, so a
//! census with `kernel != 0` at rest means a frame leaked.
//!
//! # Hot upgrade
//! The UMEM is a `memfd` and every ring is mapped from its socket fd (`ring.rs`), so another
//! process that is handed those fds maps the same memory: [`XskQueue::handover_fds`] and
//! [`XskQueue::handover_state`] on the old side, [`XskQueue::adopt`] and [`XskQueue::resume`] on
//! the new one. The ring indices live in the shared mapping and are read, never reset.
//!
//! # Error policy of the I/O calls
//! - Setup (`XskQueue::open`) returns [`XskError`] naming the interface, queue and step.
//! - The hot path never returns errors: a TX kick failing with `EBUSY`, `ENOBUFS` or `ENETDOWN`
//!   is reported in its [`Kick`] for the caller to count, the frames stay in the TX ring and the
//!   next kick retries. [`XskQueue::transmit`] queues what fits and says how many; the caller
//!   decides what a frame that found no room becomes.
#![allow(unsafe_code)]

pub mod multibuf;
mod ring;
mod umem;

pub use umem::UmemArea;

use crate::error::SyscallError;
use crate::sys;
use ring::{RawDesc, Ring, Which};
use rustix::net::xdp::{SocketAddrXdp, SocketAddrXdpFlags, SocketAddrXdpWithSharedUmem};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// A frame descriptor: where a frame starts in the UMEM and how long it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Byte offset of the frame's first byte in the UMEM (past any headroom).
    pub addr: u64,
    /// Frame length in bytes.
    pub len: u32,
}

/// What one [`XskQueue::kick_tx_if_needed`] call did, for the caller's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kick {
    /// `sendto` calls made.
    pub kicks: u32,
    /// Calls that failed with something other than `EAGAIN` (`EBUSY`, `ENOBUFS`, `ENETDOWN`):
    /// not fatal, the frames stay queued for the next kick.
    pub errors: u32,
}

/// Bytes the kernel leaves in front of a received frame in copy mode (`XDP_PACKET_HEADROOM`).
const XDP_PACKET_HEADROOM: u32 = 256;

/// Largest batch the worker may ask for; sizes the fixed scratch arrays so the hot loop never
/// allocates. 256 is well above the useful range (throughput flattens out past 64 in copy mode,
/// see BENCHMARKS.md) while keeping the scratch space at a few KiB of stack.
pub const MAX_BATCH: usize = 256;

/// Most ports (interfaces) one queue's sockets may span, sharing one UMEM.
pub const MAX_PORTS: usize = 8;

/// How long [`XskQueue::open`] retries a bind that fails with `EBUSY`.
pub const BUSY_RETRY: Duration = Duration::from_millis(500);

/// Most `sendto` kicks per call of [`XskQueue::kick_tx_if_needed`]: with the kernel's default
/// copy-mode budget of 32 frames per call, 64 kicks drain a full 2048-entry TX ring.
pub const MAX_KICKS: u32 = 64;

/// How to bind the socket: zero-copy needs driver support (not on veth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BindMode {
    /// Try zero-copy; fall back to copy mode, with one log line, when the driver lacks it.
    Auto,
    /// Zero-copy or fail.
    Zerocopy,
    /// Copy mode (works on every driver with XDP, including veth).
    Copy,
}

impl BindMode {
    /// Every mode's name, as [`fmt::Display`] writes it and [`std::str::FromStr`] reads it.
    pub const NAMES: [&'static str; 3] = ["auto", "zerocopy", "copy"];
}

impl std::str::FromStr for BindMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "zerocopy" => Ok(Self::Zerocopy),
            "copy" => Ok(Self::Copy),
            _ => Err(format!("{s:?} is not a bind mode (auto, zerocopy, copy)")),
        }
    }
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::Auto => "auto",
            BindMode::Zerocopy => "zerocopy",
            BindMode::Copy => "copy",
        })
    }
}

/// Sizes of the UMEM and rings for one queue. Every ring size must be a power of two (the kernel
/// requires it); the frame size must be a power of two between 2048 and the page size (aligned
/// UMEM mode).
#[derive(Clone, Debug)]
pub struct XskConfig {
    /// Bytes per UMEM frame.
    pub frame_size: u32,
    /// Frames in the UMEM of one queue.
    pub frame_count: u32,
    /// Fill ring entries.
    pub fill_size: u32,
    /// Completion ring entries.
    pub comp_size: u32,
    /// RX ring entries.
    pub rx_size: u32,
    /// TX ring entries.
    pub tx_size: u32,
    /// Frames taken from the RX ring per batch (1..=[`MAX_BATCH`]).
    pub batch: u32,
    /// Zero-copy, copy, or try both.
    pub bind: BindMode,
    /// Frames the kernel may send per TX kick in copy mode (`XDP_MAX_TX_SKB_BUDGET`, Linux
    /// 6.17+); `None` keeps the kernel's default of 32.
    pub tx_budget: Option<u32>,
    /// Preferred busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`):
    /// the worker's `recvfrom`/`sendto` run the device's NAPI in its own context, so kernel RX
    /// work and the app share the core in turns instead of competing. `None`: off.
    pub napi_busy_poll: Option<NapiBusyPoll>,
    /// Bytes the kernel leaves free in front of each received frame (on top of its own 256),
    /// for apps that prepend headers.
    pub headroom: u32,
    /// Prefetch the first cache line of every frame of a batch before the app runs.
    pub prefetch: bool,
    /// AF_XDP multi-buffer (`XDP_USE_SG`, Linux 6.6+): frames longer than one UMEM frame
    /// arrive as several descriptors, which the queue assembles into one frame for the app
    /// (see [`multibuf`]). Needed for MTUs whose frames exceed `frame_size` less the headroom.
    pub multi_buffer: bool,
}

/// Settings of preferred busy polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NapiBusyPoll {
    /// `SO_BUSY_POLL`: microseconds one busy-poll call may spin.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: frames per NAPI poll.
    pub budget: u32,
}

impl Default for XskConfig {
    /// 8192 frames of 2 KiB (16 MiB per queue), all of which fit in the fill ring; a 4096-entry
    /// RX ring; 2048-entry TX/completion rings; 64-frame batches. Measured (BENCHMARKS.md,
    /// "levers"): when the queue's NAPI shares the worker's core, a deeper RX ring absorbs the
    /// kernel's bursts (1.6× the rxdrop rate of 2048 entries with 4 KiB frames); when it runs on
    /// another core, 2 KiB frames are 1.08× and the deeper ring costs within the noise.
    fn default() -> Self {
        XskConfig {
            frame_size: 2048,
            frame_count: 8192,
            fill_size: 8192,
            comp_size: 2048,
            rx_size: 4096,
            tx_size: 2048,
            batch: 64,
            bind: BindMode::Auto,
            tx_budget: None,
            napi_busy_poll: None,
            headroom: 0,
            prefetch: false,
            multi_buffer: false,
        }
    }
}

impl XskConfig {
    /// Check every field; the error names the field and the rule it breaks.
    pub fn validate(&self) -> Result<(), XskError> {
        let pow2 = |name: &'static str, v: u32| {
            if v == 0 || !v.is_power_of_two() {
                Err(XskError::Config {
                    field: name,
                    reason: format!("{v} is not a power of two"),
                })
            } else {
                Ok(())
            }
        };
        pow2("frame_size", self.frame_size)?;
        if !(2048..=4096).contains(&self.frame_size) {
            return Err(XskError::Config {
                field: "frame_size",
                reason: format!("{} is outside 2048..=4096", self.frame_size),
            });
        }
        pow2("frame_count", self.frame_count)?;
        pow2("fill_size", self.fill_size)?;
        pow2("comp_size", self.comp_size)?;
        pow2("rx_size", self.rx_size)?;
        pow2("tx_size", self.tx_size)?;
        if self.batch == 0 || self.batch as usize > MAX_BATCH {
            return Err(XskError::Config {
                field: "batch",
                reason: format!("{} is outside 1..={MAX_BATCH}", self.batch),
            });
        }
        if let Some(b) = self.tx_budget
            && !(32..=self.tx_size).contains(&b)
        {
            return Err(XskError::Config {
                field: "tx_budget",
                reason: format!("{b} is outside 32..={} (the TX ring size)", self.tx_size),
            });
        }
        if self.headroom > self.frame_size / 2 {
            return Err(XskError::Config {
                field: "headroom",
                reason: format!(
                    "{} is more than half the {}-byte frame",
                    self.headroom, self.frame_size
                ),
            });
        }
        if self.frame_count < self.batch * 2 {
            return Err(XskError::Config {
                field: "frame_count",
                reason: format!(
                    "{} frames cannot keep a batch of {} in flight",
                    self.frame_count, self.batch
                ),
            });
        }
        Ok(())
    }
}

/// What went wrong setting up an AF_XDP socket. Each variant names the interface and queue.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A configuration value is out of range.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The [`XskConfig`] field at fault (`rx_size`); front ends map it to their own names.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// `socket(AF_XDP)` is not supported.
    #[error(
        "this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS); sluice needs Linux >= 5.10 with AF_XDP"
    )]
    NoAfXdp(#[source] io::Error),
    /// The process may not create AF_XDP sockets.
    #[error(
        "creating an AF_XDP socket needs CAP_NET_RAW (and CAP_IPC_LOCK for the UMEM on older kernels)"
    )]
    Permission(#[source] io::Error),
    /// Another AF_XDP socket is bound to this queue already.
    #[error(
        "{iface} queue {queue} is already bound to another AF_XDP socket (is another sluice or XDP program using it?)"
    )]
    QueueBusy {
        /// Interface name.
        iface: String,
        /// Queue index.
        queue: u32,
        /// The EBUSY.
        #[source]
        source: io::Error,
    },
    /// Zero-copy was forced but the driver cannot do it.
    #[error(
        "{iface} queue {queue}: the driver does not support AF_XDP zero-copy (try --bind copy or auto)"
    )]
    ZeroCopyUnsupported {
        /// Interface name.
        iface: String,
        /// Queue index.
        queue: u32,
        /// The EOPNOTSUPP.
        #[source]
        source: io::Error,
    },
    /// Any other failing step.
    #[error("{step} for {iface} queue {queue}")]
    Setup {
        /// What was being done.
        step: &'static str,
        /// Interface name.
        iface: String,
        /// Queue index.
        queue: u32,
        /// The call that failed.
        #[source]
        source: SyscallError,
    },
}

/// Where the frames of one queue are right now (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Census {
    /// Frames in the UMEM.
    pub total: u64,
    /// Waiting in the fill ring for the kernel.
    pub fill: u64,
    /// Received, waiting in the RX ring for the worker.
    pub rx: u64,
    /// Held by the worker (its stash of frames that found no room in the fill ring).
    pub worker: u64,
    /// Queued in the TX ring.
    pub tx: u64,
    /// Sent, waiting in the completion ring.
    pub completion: u64,
    /// The rest: held by the kernel (between rings). Negative means a frame is counted twice.
    pub kernel: i64,
}

/// Counters the kernel keeps for the socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct KernelStats {
    /// Frames dropped for reasons other than a full ring or empty fill ring.
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors (sluice bug if non-zero).
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full (the worker fell behind).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty: u64,
    /// Times the kernel found the TX ring empty when kicked.
    pub tx_ring_empty: u64,
}

/// The rings of one port's AF_XDP socket: RX and TX, and the fill and completion rings of its
/// (interface, queue).
struct PortRings {
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    /// The socket (the first port's is also the UMEM's owner); closed after the rings unmap.
    sock: OwnedFd,
    iface: String,
    zerocopy: bool,
    /// Frames handed to this TX ring and not yet seen on its completion ring.
    tx_outstanding: u32,
}

/// The AF_XDP sockets of one queue index on every port (`(iface, queue)` each), sharing one
/// UMEM (`XDP_SHARED_UMEM`): a frame received on one port can be sent on another without a
/// copy. With one port this is one socket with its UMEM and four rings.
///
/// Frames belong to the UMEM, not to a port: a frame sent on port B goes back to whichever fill
/// ring has the fewest frames, so forwarding A → B does not drain A's fill ring into B's.
///
/// Field order matters: rings and sockets are dropped before the mapping they point into.
pub struct XskQueue {
    ports: Vec<PortRings>,
    queue: u32,
    cfg: XskConfig,
    /// Frame mask for aligned mode (`!(frame_size - 1)`).
    frame_mask: u64,
    /// Frames the worker holds that are in no ring (the fill rings had no room).
    stash: Vec<u64>,
    /// Multi-buffer packets in assembly and assembled (with [`XskConfig::multi_buffer`]).
    jumbo: Option<Box<multibuf::Assembler>>,
    /// The port whose RX ring the assembler last took a fragment from.
    jumbo_port: usize,
    /// Scratch for multi-buffer transmits: the TX descriptors of a batch.
    txbuf: Vec<RawDesc>,
    area: UmemArea,
}

// SAFETY: every raw pointer inside (the rings) points into mappings owned by this value, so
// moving the whole queue to another thread (its worker) keeps them valid. It is deliberately
// not `Sync`: the rings are single-producer/single-consumer from user space.
unsafe impl Send for XskQueue {}

/// What a queue's owner hands its successor besides the fds (see [`XskQueue::handover_state`]):
/// the frames it holds outside every ring, and per port how many sent frames have not
/// completed yet. With the rings' shared indices this accounts for every frame of the UMEM.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueState {
    /// The queue index.
    pub queue: u32,
    /// UMEM addresses of the frames in no ring (the stash after the last refill).
    pub stash: Vec<u64>,
    /// Per port, frames handed to the TX ring and not yet completed.
    pub tx_outstanding: Vec<u32>,
}

impl XskQueue {
    /// [`XskQueue::open_ports`] with one port.
    pub fn open(iface: &str, queue: u32, cfg: &XskConfig) -> Result<Self, XskError> {
        Self::open_ports(&[iface], queue, cfg)
    }

    /// Create the UMEM (a `memfd`, so a successor can map it) and, on every interface of
    /// `ifaces` (the ports, in order), a socket bound to queue `queue` with need_wakeup, all
    /// sharing the UMEM; then put every frame in a fill ring (spread evenly over the ports).
    ///
    /// With [`BindMode::Auto`] zero-copy is tried first; if a driver refuses it (`EOPNOTSUPP`),
    /// the sockets are rebuilt in copy mode and one line is logged.
    ///
    /// `EBUSY` from bind is retried for up to [`BUSY_RETRY`]: the kernel releases a closed
    /// socket's claim on its queue from a workqueue, so a queue freed an instant ago (a previous
    /// run that just exited) can still look taken. A queue that stays busy is an error.
    pub fn open_ports(ifaces: &[&str], queue: u32, cfg: &XskConfig) -> Result<Self, XskError> {
        check_port_count(ifaces)?;
        let deadline = std::time::Instant::now() + BUSY_RETRY;
        loop {
            match Self::open_once(ifaces, queue, cfg) {
                Err(XskError::QueueBusy { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(ifaces: &[&str], queue: u32, cfg: &XskConfig) -> Result<Self, XskError> {
        cfg.validate()?;
        match cfg.bind {
            BindMode::Copy => Self::open_with(ifaces, queue, cfg, SocketAddrXdpFlags::XDP_COPY),
            BindMode::Zerocopy => {
                Self::open_with(ifaces, queue, cfg, SocketAddrXdpFlags::XDP_ZEROCOPY)
            }
            BindMode::Auto => {
                match Self::open_with(ifaces, queue, cfg, SocketAddrXdpFlags::XDP_ZEROCOPY) {
                    Err(XskError::ZeroCopyUnsupported { iface, source, .. }) => {
                        if queue == 0 {
                            log::info!(
                                "{iface}: asked for AF_XDP bind mode auto, granted copy: \
                                 the driver has no zero-copy support ({source})"
                            );
                        }
                        Self::open_with(ifaces, queue, cfg, SocketAddrXdpFlags::XDP_COPY)
                    }
                    other => other,
                }
            }
        }
    }

    fn open_with(
        ifaces: &[&str],
        queue: u32,
        cfg: &XskConfig,
        mode: SocketAddrXdpFlags,
    ) -> Result<Self, XskError> {
        let first = ifaces[0];
        let fail = |iface: &str, step: &'static str, source: SyscallError| XskError::Setup {
            step,
            iface: iface.to_string(),
            queue,
            source,
        };
        let area_len = cfg.frame_count as usize * cfg.frame_size as usize;
        let area = UmemArea::new(area_len, &format!("sluice-umem-q{queue}")).map_err(|e| {
            fail(
                first,
                "mapping the UMEM",
                SyscallError::new("memfd/mmap", e),
            )
        })?;
        let owner = new_socket()?;
        let reg = rustix::net::xdp::XdpUmemReg {
            addr: area.base() as u64,
            len: area_len as u64,
            chunk_size: cfg.frame_size,
            headroom: cfg.headroom,
            flags: rustix::net::xdp::XdpUmemRegFlags::empty(),
            tx_metadata_len: 0,
        };
        rustix::net::sockopt::set_xdp_umem_reg(&owner, reg).map_err(|e| {
            let source = io::Error::from(e);
            match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => XskError::Permission(source),
                _ => fail(
                    first,
                    "registering the UMEM",
                    SyscallError::new("setsockopt(XDP_UMEM_REG)", source),
                ),
            }
        })?;
        let mut ports: Vec<PortRings> = Vec::with_capacity(ifaces.len());
        let first_port = Self::open_port(owner, first, None, queue, cfg, mode)?;
        ports.push(first_port);
        for iface in &ifaces[1..] {
            let sock = new_socket()?;
            let port = Self::open_port(sock, iface, Some(ports[0].sock.as_fd()), queue, cfg, mode)?;
            ports.push(port);
        }
        let mut q = XskQueue {
            ports,
            queue,
            cfg: cfg.clone(),
            frame_mask: !(u64::from(cfg.frame_size) - 1),
            stash: Vec::with_capacity(cfg.frame_count as usize),
            jumbo: cfg.multi_buffer.then(|| {
                Box::new(multibuf::Assembler::new(
                    area_len as u64,
                    XDP_PACKET_HEADROOM + cfg.headroom,
                ))
            }),
            txbuf: Vec::with_capacity(if cfg.multi_buffer {
                MAX_BATCH * multibuf::MAX_FRAGS
            } else {
                0
            }),
            jumbo_port: 0,
            area,
        };
        // Every frame starts in the worker's stash and is spread over the fill rings; what does
        // not fit (fill rings smaller than the UMEM) stays stashed until a ring has room.
        let fs = u64::from(cfg.frame_size);
        q.stash
            .extend((0..u64::from(cfg.frame_count)).rev().map(|i| i * fs));
        q.refill();
        Ok(q)
    }

    /// One port's socket: the first port's (`shared` is `None`) is the UMEM's own; every other
    /// is bound with `XDP_SHARED_UMEM` to the first's, and the kernel takes its copy/zero-copy
    /// and need_wakeup modes from the first (it refuses those flags on it). Each has its own
    /// fill and completion rings, for its own (interface, queue).
    fn open_port(
        sock: OwnedFd,
        iface: &str,
        shared: Option<BorrowedFd<'_>>,
        queue: u32,
        cfg: &XskConfig,
        mode: SocketAddrXdpFlags,
    ) -> Result<PortRings, XskError> {
        use rustix::net::sockopt as so;
        let fail = |step: &'static str, source: SyscallError| XskError::Setup {
            step,
            iface: iface.to_string(),
            queue,
            source,
        };
        let sys_fail = |step: &'static str, call: &'static str| {
            move |e: rustix::io::Errno| fail(step, SyscallError::new(call, io::Error::from(e)))
        };
        let ifindex = nix::net::if_::if_nametoindex(iface).map_err(|e| {
            fail(
                "looking up the interface",
                SyscallError::new("if_nametoindex", io::Error::from_raw_os_error(e as i32)),
            )
        })?;
        let ring_step = "creating the rings";
        so::set_xdp_umem_fill_ring_size(&sock, cfg.fill_size)
            .map_err(sys_fail(ring_step, "setsockopt(XDP_UMEM_FILL_RING)"))?;
        so::set_xdp_umem_completion_ring_size(&sock, cfg.comp_size)
            .map_err(sys_fail(ring_step, "setsockopt(XDP_UMEM_COMPLETION_RING)"))?;
        so::set_xdp_rx_ring_size(&sock, cfg.rx_size)
            .map_err(sys_fail(ring_step, "setsockopt(XDP_RX_RING)"))?;
        so::set_xdp_tx_ring_size(&sock, cfg.tx_size)
            .map_err(sys_fail(ring_step, "setsockopt(XDP_TX_RING)"))?;
        if let Some(bp) = cfg.napi_busy_poll {
            set_busy_poll(sock.as_fd(), bp)
                .map_err(|source| fail("enabling preferred busy polling", source))?;
        }
        if let Some(budget) = cfg.tx_budget {
            set_tx_budget(sock.as_fd(), budget).map_err(|source| {
                if source.io_error.raw_os_error() == Some(libc::ENOPROTOOPT) {
                    XskError::Config {
                        field: "tx_budget",
                        reason: "this kernel has no XDP_MAX_TX_SKB_BUDGET (Linux 6.17+)".into(),
                    }
                } else {
                    fail("setting the copy-mode TX budget", source)
                }
            })?;
        }
        let (rx, tx, fill, comp) = map_rings(sock.as_fd(), cfg)
            .map_err(|e| fail("mapping the rings", SyscallError::new("mmap", e)))?;
        let bound = match shared {
            None => rustix::net::bind(
                &sock,
                &SocketAddrXdp::new(
                    // The kernel makes multi-buffer a property of the UMEM: the other ports'
                    // sockets (XDP_SHARED_UMEM) inherit it and may not ask for it themselves.
                    mode | SocketAddrXdpFlags::XDP_USE_NEED_WAKEUP
                        | if cfg.multi_buffer {
                            SocketAddrXdpFlags::XDP_USE_SG
                        } else {
                            SocketAddrXdpFlags::empty()
                        },
                    ifindex,
                    queue,
                ),
            ),
            Some(umem_fd) => rustix::net::bind(
                &sock,
                &SocketAddrXdpWithSharedUmem {
                    addr: SocketAddrXdp::new(SocketAddrXdpFlags::XDP_SHARED_UMEM, ifindex, queue),
                    shared_umem_fd: umem_fd,
                },
            ),
        };
        bound.map_err(|e| {
            let source = io::Error::from(e);
            match source.raw_os_error() {
                Some(libc::EBUSY) => XskError::QueueBusy {
                    iface: iface.to_string(),
                    queue,
                    source,
                },
                Some(libc::EINVAL) if cfg.multi_buffer && shared.is_none() => XskError::Config {
                    field: "multi_buffer",
                    reason: format!(
                        "{iface} refused AF_XDP multi-buffer (XDP_USE_SG needs Linux 6.6+), which \
                         frames longer than a {}-byte UMEM frame need: lower the MTU",
                        cfg.frame_size
                    ),
                },
                Some(libc::EOPNOTSUPP) if mode == SocketAddrXdpFlags::XDP_ZEROCOPY => {
                    XskError::ZeroCopyUnsupported {
                        iface: iface.to_string(),
                        queue,
                        source,
                    }
                }
                _ => fail(
                    "binding the AF_XDP socket",
                    SyscallError::new("bind", source),
                ),
            }
        })?;
        let zerocopy = rustix::net::sockopt::xdp_options(&sock)
            .map(|o| o.contains(rustix::net::xdp::XdpOptionsFlags::XDP_OPTIONS_ZEROCOPY))
            .unwrap_or(mode == SocketAddrXdpFlags::XDP_ZEROCOPY);
        Ok(PortRings {
            rx,
            tx,
            fill,
            comp,
            sock,
            iface: iface.to_string(),
            zerocopy,
            tx_outstanding: 0,
        })
    }

    /// Take over the sockets of queue `queue` that another process created and bound (a hot
    /// upgrade): map the UMEM from its `memfd` and each socket's four rings from `sockets`
    /// (one per port of `ifaces`, in order, the UMEM's owner first), starting from the ring
    /// indices found in the shared memory. `cfg` must carry the sizes the sockets were created
    /// with (the kernel cannot be asked for them; the hand-over protocol checks them).
    ///
    /// The queue holds no frame of its own until [`XskQueue::resume`] gives it the
    /// predecessor's [`QueueState`]; nothing is written to any ring before that.
    pub fn adopt(
        ifaces: &[&str],
        queue: u32,
        cfg: &XskConfig,
        memfd: OwnedFd,
        sockets: Vec<OwnedFd>,
    ) -> Result<Self, XskError> {
        check_port_count(ifaces)?;
        cfg.validate()?;
        let fail = |iface: &str, step: &'static str, source: SyscallError| XskError::Setup {
            step,
            iface: iface.to_string(),
            queue,
            source,
        };
        if sockets.len() != ifaces.len() {
            return Err(XskError::Config {
                field: "sockets",
                reason: format!(
                    "{} sockets passed for queue {queue}, {} ports configured",
                    sockets.len(),
                    ifaces.len()
                ),
            });
        }
        let area_len = cfg.frame_count as usize * cfg.frame_size as usize;
        let area = UmemArea::from_memfd(memfd, area_len).map_err(|e| {
            fail(
                ifaces[0],
                "mapping the passed UMEM",
                SyscallError::new("mmap", e),
            )
        })?;
        let mut ports = Vec::with_capacity(ifaces.len());
        for (sock, iface) in sockets.into_iter().zip(ifaces) {
            let (rx, tx, fill, comp) = map_rings(sock.as_fd(), cfg).map_err(|e| {
                fail(
                    iface,
                    "mapping the rings of the passed socket",
                    SyscallError::new("mmap", e),
                )
            })?;
            let zerocopy = rustix::net::sockopt::xdp_options(&sock)
                .map(|o| o.contains(rustix::net::xdp::XdpOptionsFlags::XDP_OPTIONS_ZEROCOPY))
                .map_err(|e| {
                    fail(
                        iface,
                        "querying the passed socket",
                        SyscallError::new("getsockopt(XDP_OPTIONS)", io::Error::from(e)),
                    )
                })?;
            ports.push(PortRings {
                rx,
                tx,
                fill,
                comp,
                sock,
                iface: iface.to_string(),
                zerocopy,
                tx_outstanding: 0,
            });
        }
        Ok(XskQueue {
            ports,
            queue,
            cfg: cfg.clone(),
            frame_mask: !(u64::from(cfg.frame_size) - 1),
            stash: Vec::with_capacity(cfg.frame_count as usize),
            jumbo: cfg.multi_buffer.then(|| {
                Box::new(multibuf::Assembler::new(
                    area_len as u64,
                    XDP_PACKET_HEADROOM + cfg.headroom,
                ))
            }),
            txbuf: Vec::with_capacity(if cfg.multi_buffer {
                MAX_BATCH * multibuf::MAX_FRAGS
            } else {
                0
            }),
            jumbo_port: 0,
            area,
        })
    }

    /// The fds a successor needs to [`XskQueue::adopt`] this queue: the UMEM's memfd, then each
    /// port's socket in port order.
    pub fn handover_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.area.memfd()];
        fds.extend(self.ports.iter().map(|p| p.sock.as_fd()));
        fds
    }

    /// Stop here and describe the frames this side holds, for a successor: completions are
    /// reclaimed and the stash put in the fill rings as far as they have room; what is left
    /// (and each port's outstanding TX count) is the state. Call it at a batch boundary (no
    /// frame lent out), after which the caller must not touch the rings again unless the
    /// hand-over fails.
    pub fn handover_state(&mut self) -> QueueState {
        self.abandon_partial();
        self.reclaim();
        self.refill();
        QueueState {
            queue: self.queue,
            stash: self.stash.clone(),
            tx_outstanding: self.ports.iter().map(|p| p.tx_outstanding).collect(),
        }
    }

    /// A multi-buffer packet the last batch ended inside of: its frames so far, and those of its
    /// fragments still in the RX ring (the kernel publishes a packet's descriptors together),
    /// go to the stash, so the successor neither loses them nor starts on a packet's tail.
    fn abandon_partial(&mut self) {
        let Some(j) = self.jumbo.as_deref_mut() else {
            return;
        };
        if !j.in_packet() {
            return;
        }
        j.abandon(&mut self.stash);
        let rx = &mut self.ports[self.jumbo_port].rx;
        let avail = rx.available(u32::MAX);
        let mut n = 0;
        while n < avail {
            let d = rx.read_desc(n);
            n += 1;
            self.stash.push(d.addr & self.frame_mask);
            if d.options & multibuf::XDP_PKT_CONTD == 0 {
                break;
            }
        }
        rx.release(n);
    }

    /// Take on a predecessor's [`QueueState`] (after [`XskQueue::adopt`]); refuses one that
    /// does not fit this queue (wrong queue, port count, or an address outside the UMEM).
    pub fn resume(&mut self, st: &QueueState) -> Result<(), XskError> {
        let bad = |reason: String| XskError::Config {
            field: "hand-over state",
            reason,
        };
        if st.queue != self.queue || st.tx_outstanding.len() != self.ports.len() {
            return Err(bad(format!(
                "state of queue {} with {} port(s) for queue {} with {}",
                st.queue,
                st.tx_outstanding.len(),
                self.queue,
                self.ports.len()
            )));
        }
        let len = self.area.len() as u64;
        if let Some(a) = st
            .stash
            .iter()
            .find(|&&a| a >= len || a & !self.frame_mask != 0)
        {
            return Err(bad(format!(
                "frame address {a:#x} is not a frame of the UMEM"
            )));
        }
        if st.stash.len() > self.cfg.frame_count as usize {
            return Err(bad(format!("{} stashed frames", st.stash.len())));
        }
        // The predecessor went on using the rings after they were mapped here: start from
        // where it stopped.
        for p in &mut self.ports {
            p.rx.resync();
            p.tx.resync();
            p.fill.resync();
            p.comp.resync();
        }
        self.stash.clear();
        self.stash.extend_from_slice(&st.stash);
        for (p, &n) in self.ports.iter_mut().zip(&st.tx_outstanding) {
            p.tx_outstanding = n;
        }
        self.refill();
        Ok(())
    }

    /// Number of ports (sockets) sharing this queue's UMEM.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// The interface of `port`.
    pub fn iface_of(&self, port: usize) -> &str {
        &self.ports[port].iface
    }

    /// The interface of the first port.
    pub fn iface(&self) -> &str {
        self.iface_of(0)
    }

    /// The queue index every socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// True when the kernel granted zero-copy (on the first port; the others share its mode).
    pub fn is_zerocopy(&self) -> bool {
        self.ports[0].zerocopy
    }

    /// The first port's socket, for the XSKMAP and for `poll()`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd_of(0)
    }

    /// The socket of `port`, for that interface's XSKMAP.
    pub fn fd_of(&self, port: usize) -> BorrowedFd<'_> {
        self.ports[port].sock.as_fd()
    }

    /// Frames sent on any port but not yet completed.
    pub fn tx_outstanding(&self) -> u32 {
        self.ports.iter().map(|p| p.tx_outstanding).sum()
    }

    /// Frames the socket may take per batch ([`XskConfig::batch`]).
    pub fn batch_size(&self) -> usize {
        self.cfg.batch as usize
    }

    /// Move completed TX frames of every port back to the fill rings. Returns how many.
    pub fn reclaim(&mut self) -> u32 {
        let mut done = 0;
        for port in &mut self.ports {
            // Completions go to the stash first, then the stash to the emptiest fill rings: with
            // one port and room in its fill ring that is one pass, and frames never pile up in
            // the fill ring of the port they were sent on.
            let n = port.comp.available(u32::MAX);
            if n == 0 {
                continue;
            }
            self.stash.extend((0..n).map(|i| port.comp.read_addr(i)));
            port.comp.release(n);
            port.tx_outstanding = port.tx_outstanding.saturating_sub(n);
            done += n;
        }
        if done > 0 {
            self.refill();
        }
        done
    }

    /// Move stashed frames into the fill rings, as many as fit: an equal share to each, the
    /// emptiest first, so no port starts (or runs) with an empty fill ring while another's is
    /// full — a frame arriving on a port whose fill ring is empty is dropped by the kernel.
    pub fn refill(&mut self) {
        let ports = self.ports.len();
        for round in 0..2 * ports {
            if self.stash.is_empty() {
                return;
            }
            let p = self.emptiest_fill();
            let share = if round < ports {
                self.stash.len().div_ceil(ports - round)
            } else {
                self.stash.len()
            };
            let fill = &mut self.ports[p].fill;
            let n = fill.free(share as u32);
            if n == 0 {
                continue;
            }
            let from = self.stash.len() - n as usize;
            for (i, &a) in self.stash[from..].iter().enumerate() {
                fill.write_addr(i as u32, a);
            }
            fill.submit(n);
            self.stash.truncate(from);
        }
    }

    /// The port whose fill ring holds the fewest frames.
    #[inline]
    fn emptiest_fill(&self) -> usize {
        if self.ports.len() == 1 {
            return 0;
        }
        (0..self.ports.len())
            .min_by_key(|&p| self.ports[p].fill.pending())
            .unwrap_or(0)
    }

    /// Frames waiting in the RX ring of the first port.
    pub fn rx_available(&self) -> u32 {
        self.ports[0].rx.ready()
    }

    /// Take up to `descs.len()` received frames from `port`'s RX ring; returns how many, their
    /// descriptors in `descs[..n]`. The caller owns those frames until it hands each back through
    /// [`Self::transmit`] or [`Self::recycle`].
    #[inline]
    pub fn receive(&mut self, port: usize, descs: &mut [Desc]) -> usize {
        let stashed = self.stash.len();
        let rx = &mut self.ports[port].rx;
        // At most descs.len() ring entries are consumed; fragments of a multi-buffer packet
        // take entries without filling a slot of `descs`, so `n` never passes it.
        let avail = rx.available(descs.len() as u32);
        let mut n = 0;
        for i in 0..avail {
            let d = rx.read_desc(i);
            if let Some(j) = self.jumbo.as_deref_mut()
                && (d.options & multibuf::XDP_PKT_CONTD != 0 || j.in_packet())
            {
                // A fragment of a multi-buffer packet: assembled (see `multibuf`).
                let chunk = d.addr & self.frame_mask;
                let fits = chunk + u64::from(self.cfg.frame_size) <= self.area.len() as u64
                    && d.addr + u64::from(d.len) <= chunk + u64::from(self.cfg.frame_size);
                let bytes: &[u8] = if fits {
                    // SAFETY: the kernel handed this descriptor's bytes to user space, and
                    // they lie inside one UMEM frame of the mapping (checked above); nothing
                    // writes them while this shared borrow lives.
                    unsafe {
                        std::slice::from_raw_parts(
                            self.area.base().add(d.addr as usize),
                            d.len as usize,
                        )
                    }
                } else {
                    &[]
                };
                self.jumbo_port = port;
                if let Some(whole) = j.push(chunk, bytes, d.options, &mut self.stash) {
                    descs[n] = whole;
                    n += 1;
                }
                continue;
            }
            descs[n] = Desc {
                addr: d.addr,
                len: d.len,
            };
            n += 1;
        }
        rx.release(avail);
        if self.stash.len() > stashed {
            // Frames of a multi-buffer packet thrown away: back to the fill rings.
            self.refill();
        }
        if self.cfg.prefetch {
            for d in &descs[..n] {
                if d.addr < self.area.len() as u64 {
                    prefetch(self.area.base().wrapping_add(d.addr as usize));
                }
            }
        }
        n
    }
    /// Lend the buffers of the received frames `descs` (from [`Self::receive`]) as one mutable
    /// slice each, into `out[..descs.len()]`, for as long as `self` stays borrowed. Each slice is
    /// the whole UMEM frame the frame lies in, and `starts[i]` the frame's offset in it: the
    /// kernel's headroom (`XDP_PACKET_HEADROOM` in copy mode, plus the configured headroom) lies
    /// before it, the rest of the frame after its `len` bytes.
    ///
    /// A descriptor that does not lie inside one UMEM frame (the kernel never produces one; the
    /// check makes the slices sound regardless) gets an empty slice, start 0 and its `len` set
    /// to 0, so the caller never transmits it; returns how many there were.
    #[inline]
    pub fn frames_mut<'a>(
        &'a mut self,
        descs: &mut [Desc],
        out: &mut [&'a mut [u8]],
        starts: &mut [u32],
    ) -> u32 {
        let base = self.area.base();
        let area_len = self.area.len() as u64;
        let fsz = u64::from(self.cfg.frame_size);
        let mut bad = 0;
        let (slots, jumbo) = match self.jumbo.as_deref_mut() {
            Some(j) => (j.slots_ptr(), Some(&*j)),
            None => (std::ptr::null_mut(), None),
        };
        for ((d, slot), start) in descs.iter_mut().zip(out.iter_mut()).zip(starts.iter_mut()) {
            if let Some(j) = jumbo
                && j.owns(d.addr)
            {
                let Some((s, off)) = j.slot_of(d) else {
                    d.len = 0;
                    *slot = <&mut [u8]>::default();
                    *start = 0;
                    bad += 1;
                    continue;
                };
                // SAFETY: slot `s` lies inside the assembler's buffer (slot_of checked it is
                // one it handed out); each assembled descriptor names its own slot, so the
                // slices of one batch are disjoint, and they borrow `self` mutably for 'a.
                *slot = unsafe {
                    std::slice::from_raw_parts_mut(
                        slots.add(s * multibuf::SLOT_SIZE),
                        multibuf::SLOT_SIZE,
                    )
                };
                *start = off as u32;
                continue;
            }
            let chunk = d.addr & self.frame_mask;
            let chunk_end = chunk + fsz;
            if chunk_end > area_len || d.addr + u64::from(d.len) > chunk_end {
                d.len = 0;
                *slot = <&mut [u8]>::default();
                *start = 0;
                bad += 1;
                continue;
            }
            // SAFETY: [chunk, chunk_end) is one whole frame inside the mapping (checked above).
            // The kernel handed each RX descriptor's frame to user space exclusively and two
            // descriptors of one batch never share a frame, so these slices are disjoint; they
            // borrow `self` mutably for 'a, so no ring operation can hand the frames on while
            // they live.
            *slot =
                unsafe { std::slice::from_raw_parts_mut(base.add(chunk as usize), fsz as usize) };
            *start = (d.addr - chunk) as u32;
        }
        bad
    }

    /// Queue `descs` on `port`'s TX ring, in order, as many as fit; returns how many were
    /// queued (a prefix of `descs`). Kicks the ring if the kernel asks. Frames that did not fit
    /// are still the caller's.
    #[inline]
    pub fn transmit(&mut self, port: usize, descs: &[Desc]) -> (usize, Kick) {
        if let Some(j) = self.jumbo.as_deref()
            && descs.iter().any(|d| j.owns(d.addr))
        {
            return self.transmit_multi(port, descs);
        }
        let ring = &mut self.ports[port];
        let n = ring.tx.free(descs.len() as u32);
        for (i, d) in descs[..n as usize].iter().enumerate() {
            ring.tx.write_desc(
                i as u32,
                RawDesc {
                    addr: d.addr,
                    len: d.len,
                    options: 0,
                },
            );
        }
        ring.tx.submit(n);
        let queued = n as usize;
        ring.tx_outstanding += queued as u32;
        let kick = if queued > 0 {
            self.kick_tx_if_needed(port)
        } else {
            Kick::default()
        };
        (queued, kick)
    }

    /// [`Self::transmit`] for a batch with assembled multi-buffer frames: each is copied back
    /// into its packet's UMEM frames and queued as one packet (all its descriptors or none).
    /// A frame that grew past its UMEM frames ends the prefix queued, like a full ring.
    #[cold]
    fn transmit_multi(&mut self, port: usize, descs: &[Desc]) -> (usize, Kick) {
        let base = self.area.base();
        let fsz = self.cfg.frame_size as usize;
        let Some(j) = self.jumbo.as_deref_mut() else {
            return (0, Kick::default());
        };
        let ring = &mut self.ports[port];
        let mut queued = 0usize;
        let mut nd = 0u32;
        for d in descs {
            self.txbuf.clear();
            if let Some((s, off)) = j.slot_of(d) {
                // Room for the whole packet first, all its descriptors or none: `free` looks
                // at the kernel's consumer head whenever the cached one shows too little, so a
                // shortfall here is real.
                let need = (d.len as usize).div_ceil(fsz).max(1) as u32;
                if ring.tx.free(need) < need {
                    break;
                }
                let mut spare = Vec::new();
                let split = j.split(
                    (s, off),
                    d.len as usize,
                    fsz,
                    &mut self.txbuf,
                    &mut spare,
                    |chunk, bytes| {
                        // SAFETY: `chunk` is one of this packet's UMEM frames, held by the
                        // worker (not in any ring), and `bytes` fits in it (split cuts the
                        // frame into pieces of at most `fsz`); the source is the assembler's
                        // slot, which does not overlap the UMEM mapping.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                bytes.as_ptr(),
                                base.add(chunk as usize),
                                bytes.len(),
                            )
                        }
                    },
                );
                if !split {
                    break;
                }
                self.stash.extend_from_slice(&spare);
                // split yields at most `need` descriptors (one per `fsz` piece), all granted.
                for (i, r) in self.txbuf.iter().enumerate() {
                    ring.tx.write_desc(i as u32, *r);
                }
                let k = self.txbuf.len() as u32;
                ring.tx.submit(k);
                nd += k;
            } else {
                if ring.tx.free(1) == 0 {
                    break;
                }
                ring.tx.write_desc(
                    0,
                    RawDesc {
                        addr: d.addr,
                        len: d.len,
                        options: 0,
                    },
                );
                ring.tx.submit(1);
                nd += 1;
            }
            queued += 1;
        }
        ring.tx_outstanding += nd;
        let kick = if queued > 0 {
            self.kick_tx_if_needed(port)
        } else {
            Kick::default()
        };
        (queued, kick)
    }

    /// Give frames back to the kernel through the fill rings (the emptiest first). Those that
    /// find no room wait in the stash (moved on by [`Self::refill`]); returns how many had to
    /// wait.
    #[inline]
    pub fn recycle(&mut self, descs: &[Desc]) -> u32 {
        if let Some(j) = self.jumbo.as_deref_mut()
            && descs.iter().any(|d| j.owns(d.addr))
        {
            // Assembled frames: their packets' UMEM frames go back, through the stash.
            let before = self.stash.len();
            for d in descs {
                match j.slot_of(d) {
                    Some((s, _)) => j.release(s, &mut self.stash),
                    None if j.owns(d.addr) => {}
                    None => self.stash.push(d.addr & self.frame_mask),
                }
            }
            let _ = before;
            self.refill();
            return self.stash.len() as u32;
        }
        let mask = self.frame_mask;
        let mut placed = 0;
        let mut tries = 2 * self.ports.len();
        while placed < descs.len() && tries > 0 {
            let p = self.emptiest_fill();
            let fill = &mut self.ports[p].fill;
            let k = fill.free((descs.len() - placed) as u32) as usize;
            for (i, d) in descs[placed..placed + k].iter().enumerate() {
                fill.write_addr(i as u32, d.addr & mask);
            }
            fill.submit(k as u32);
            if k == 0 {
                tries -= 1;
            }
            placed += k;
        }
        let short = &descs[placed..];
        self.stash.extend(short.iter().map(|d| d.addr & mask));
        short.len() as u32
    }

    /// Kick `port`'s TX ring if the kernel asked for a wakeup (copy mode always does).
    ///
    /// In copy mode one `sendto` transmits at most the kernel's per-call budget (32 frames by
    /// default) and returns `EAGAIN` if more are queued, or if the completion ring is full. So
    /// this kicks again, reclaiming completions in between, until the TX ring is empty or
    /// [`MAX_KICKS`] calls were made; frames still queued then go out on the next call.
    ///
    /// `EAGAIN` is the expected "call again", not an error. `EBUSY`, `ENOBUFS` and `ENETDOWN`
    /// (link down) are reported in [`Kick::errors`], not failures: the frames stay in the ring
    /// and the next kick retries.
    pub fn kick_tx_if_needed(&mut self, port: usize) -> Kick {
        let mut k = Kick::default();
        for _ in 0..MAX_KICKS {
            let ring = &self.ports[port];
            if ring.tx.pending() == 0 || !ring.tx.needs_wakeup() {
                break;
            }
            k.kicks += 1;
            match rustix::net::send(self.fd_of(port), &[], rustix::net::SendFlags::DONTWAIT) {
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
                Err(_) => {
                    k.errors += 1;
                    break;
                }
            }
            self.reclaim();
        }
        k
    }

    /// Kick every port's TX ring that has frames waiting (see [`Self::kick_tx_if_needed`]).
    pub fn kick_all(&mut self) -> Kick {
        let mut k = Kick::default();
        for p in 0..self.ports.len() {
            if self.ports[p].tx_outstanding > 0 {
                let one = self.kick_tx_if_needed(p);
                k.kicks += one.kicks;
                k.errors += one.errors;
            }
        }
        k
    }

    /// True when preferred busy polling is on (the worker then calls [`Self::wake_fill_if_needed`]
    /// every round, which runs the device's NAPI).
    #[inline]
    pub fn napi_busy_polling(&self) -> bool {
        self.cfg.napi_busy_poll.is_some()
    }

    /// Wake each port's driver if it asked for fill-ring entries (need_wakeup on the fill ring),
    /// and always with preferred busy polling on: the `recvfrom` is what runs the device's NAPI
    /// then. Returns how many calls it made. Their results are not looked at: `EAGAIN` (nothing
    /// to receive) is the usual answer and nothing else can be done about another error here.
    pub fn wake_fill_if_needed(&mut self) -> u32 {
        let mut calls = 0;
        for p in 0..self.ports.len() {
            if self.cfg.napi_busy_poll.is_none() && !self.ports[p].fill.needs_wakeup() {
                continue;
            }
            let _ = rustix::net::recv(
                self.fd_of(p),
                &mut [0u8; 0][..],
                rustix::net::RecvFlags::DONTWAIT,
            );
            calls += 1;
        }
        calls
    }

    /// Sleep in `poll()` until frames arrive on any port or `timeout` passes. Returns true if
    /// one is readable.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // Fixed arrays, not Vecs: this runs on the worker thread, which never allocates.
        let n = self.ports.len();
        let fds: [BorrowedFd<'_>; MAX_PORTS] = std::array::from_fn(|p| self.fd_of(p.min(n - 1)));
        let mut pfds: [rustix::event::PollFd<'_>; MAX_PORTS] = std::array::from_fn(|p| {
            rustix::event::PollFd::new(&fds[p], rustix::event::PollFlags::IN)
        });
        matches!(rustix::event::poll(&mut pfds[..n], Some(&ts)), Ok(n) if n > 0)
    }

    /// Count the frames in every place user space can see, over every port (see the module
    /// doc).
    pub fn census(&self) -> Census {
        let total = u64::from(self.cfg.frame_count);
        let sum = |f: fn(&PortRings) -> u32| self.ports.iter().map(|p| u64::from(f(p))).sum();
        let fill = sum(|p| p.fill.pending());
        let rx = sum(|p| p.rx.pending());
        let tx = sum(|p| p.tx.pending());
        let completion = sum(|p| p.comp.pending());
        let worker = self.stash.len() as u64 + self.jumbo.as_ref().map_or(0, |j| j.held());
        let seen = fill + rx + worker + tx + completion;
        Census {
            total,
            fill,
            rx,
            worker,
            tx,
            completion,
            kernel: total as i64 - seen as i64,
        }
    }

    /// The kernel's counters for the sockets, summed over every port.
    pub fn kernel_stats(&self) -> io::Result<KernelStats> {
        let mut k = KernelStats::default();
        for p in 0..self.ports.len() {
            let s = rustix::net::sockopt::xdp_statistics(self.fd_of(p))?;
            k.rx_dropped += s.rx_dropped;
            k.rx_invalid_descs += s.rx_invalid_descs;
            k.tx_invalid_descs += s.tx_invalid_descs;
            k.rx_ring_full += s.rx_ring_full.unwrap_or(0);
            k.rx_fill_ring_empty += s.rx_fill_ring_empty_descs.unwrap_or(0);
            k.tx_ring_empty += s.tx_ring_empty_descs.unwrap_or(0);
        }
        Ok(k)
    }
}

/// Hint the CPU to load the cache line at `p` (a frame's headers) ahead of use.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and has no effect on memory, whatever
    // the address; the caller passes addresses inside the UMEM anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Refuse an empty port list or more ports than [`MAX_PORTS`].
fn check_port_count(ifaces: &[&str]) -> Result<(), XskError> {
    if ifaces.is_empty() || ifaces.len() > MAX_PORTS {
        return Err(XskError::Config {
            field: "interface name",
            reason: format!(
                "{} interfaces given; 1 to {MAX_PORTS} can share a UMEM",
                ifaces.len()
            ),
        });
    }
    Ok(())
}

/// A new AF_XDP socket, close-on-exec (so a process spawned later, a helper or a benchmark
/// peer, does not inherit it and keep the queue bound after we close it).
fn new_socket() -> Result<OwnedFd, XskError> {
    rustix::net::socket_with(
        rustix::net::AddressFamily::XDP,
        rustix::net::SocketType::RAW,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| {
        let source = io::Error::from(e);
        match source.raw_os_error() {
            Some(libc::EAFNOSUPPORT) => XskError::NoAfXdp(source),
            Some(libc::EPERM) | Some(libc::EACCES) => XskError::Permission(source),
            _ => XskError::NoAfXdp(source),
        }
    })
}

/// Map the RX, TX, fill and completion rings of `sock` with the sizes in `cfg`.
fn map_rings(sock: BorrowedFd<'_>, cfg: &XskConfig) -> io::Result<(Ring, Ring, Ring, Ring)> {
    Ok((
        Ring::map(sock, Which::Rx, cfg.rx_size)?,
        Ring::map(sock, Which::Tx, cfg.tx_size)?,
        Ring::map(sock, Which::Fill, cfg.fill_size)?,
        Ring::map(sock, Which::Completion, cfg.comp_size)?,
    ))
}

fn set_tx_budget(fd: BorrowedFd<'_>, budget: u32) -> Result<(), SyscallError> {
    sys::set_socket_option(
        fd,
        libc::SOL_XDP,
        sys::XDP_MAX_TX_SKB_BUDGET,
        budget,
        "setsockopt(XDP_MAX_TX_SKB_BUDGET)",
    )
}

fn set_busy_poll(fd: BorrowedFd<'_>, bp: NapiBusyPoll) -> Result<(), SyscallError> {
    let sol = libc::SOL_SOCKET;
    sys::set_socket_option(
        fd,
        sol,
        libc::SO_PREFER_BUSY_POLL,
        1,
        "setsockopt(SO_PREFER_BUSY_POLL)",
    )?;
    sys::set_socket_option(
        fd,
        sol,
        libc::SO_BUSY_POLL,
        bp.usecs,
        "setsockopt(SO_BUSY_POLL)",
    )?;
    sys::set_socket_option(
        fd,
        sol,
        libc::SO_BUSY_POLL_BUDGET,
        bp.budget,
        "setsockopt(SO_BUSY_POLL_BUDGET)",
    )
}

impl AsFd for XskQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        XskConfig::default().validate().unwrap();
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = XskConfig {
            rx_size: 1000,
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("rx_size") && e.contains("1000"), "{e}");
        let bad = XskConfig {
            batch: 0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("batch"));
        let bad = XskConfig {
            batch: MAX_BATCH as u32 + 1,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("batch"));
        let bad = XskConfig {
            frame_size: 1024,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("frame_size")
        );
        let bad = XskConfig {
            tx_budget: Some(16),
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("tx_budget")
        );
        let bad = XskConfig {
            tx_budget: Some(4096),
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("TX ring size")
        );
        let ok = XskConfig {
            tx_budget: Some(2048),
            ..Default::default()
        };
        ok.validate().unwrap();
        let bad = XskConfig {
            headroom: 1500,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("headroom"));
        let bad = XskConfig {
            frame_count: 64,
            batch: 64,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("frame_count")
        );
    }

    #[test]
    fn umem_area_maps_and_unmaps() {
        let a = UmemArea::new(1 << 20, "test").unwrap();
        assert_eq!(a.len(), 1 << 20);
        assert_eq!(a.base() as usize % 4096, 0);
        assert!(UmemArea::new(0, "test").is_err());
    }
}
