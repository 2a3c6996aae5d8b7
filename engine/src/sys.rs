//! Small system calls outside AF_XDP's rings: capabilities, ethtool (channels, driver, rings),
//! socket options.
//!
//! The only `unsafe` outside [`crate::xsk`] lives here (one `ioctl`, one `setsockopt`).
#![allow(unsafe_code)]

use crate::error::SyscallError;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `XDP_MAX_TX_SKB_BUDGET` from `<linux/if_xdp.h>` (Linux 6.17+; libc does not have it yet):
/// frames one copy-mode AF_XDP `sendto` may transmit.
pub const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Set an integer socket option: `setsockopt(fd, level, name, &value, 4)`. `call` names the
/// option for the error (`"setsockopt(SO_BUSY_POLL)"`); pass libc's constants for `level` and
/// `name`.
pub fn set_socket_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: u32,
    call: &'static str,
) -> Result<(), SyscallError> {
    // SAFETY: `fd` is a live descriptor for the duration of the borrow; the pointer refers to a
    // live u32 and the length is its exact size, so the kernel reads only within it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(SyscallError::new(call, io::Error::last_os_error()));
    }
    Ok(())
}

/// A Linux capability sluice may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Attach XDP programs, ethtool queries that change state.
    NetAdmin = 12,
    /// Create AF_XDP sockets.
    NetRaw = 13,
    /// Lock UMEM pages beyond RLIMIT_MEMLOCK.
    IpcLock = 14,
    /// Pre-5.8 kernels: everything BPF. Also accepted instead of CAP_BPF.
    SysAdmin = 21,
    /// Load BPF programs and create maps (5.8+).
    Bpf = 39,
}

impl Cap {
    /// The name as in capabilities(7).
    pub fn name(self) -> &'static str {
        match self {
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::NetRaw => "CAP_NET_RAW",
            Cap::IpcLock => "CAP_IPC_LOCK",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Bpf => "CAP_BPF",
        }
    }
}

/// The effective capability set of this thread (`capget`), as a bit mask indexed by capability
/// number.
pub fn effective_caps() -> io::Result<u64> {
    Ok(rustix::thread::capabilities(None)?.effective.bits())
}

/// The capabilities `sluice run` needs that the effective set `eff` lacks.
///
/// CAP_BPF may be replaced by CAP_SYS_ADMIN. CAP_IPC_LOCK is only needed when the UMEM does not
/// fit in RLIMIT_MEMLOCK, which the caller checks separately.
pub fn missing_run_caps(eff: u64) -> Vec<Cap> {
    let has = |c: Cap| has_cap(eff, c);
    let mut missing = Vec::new();
    for c in [Cap::NetAdmin, Cap::NetRaw] {
        if !has(c) {
            missing.push(c);
        }
    }
    if !has(Cap::Bpf) && !has(Cap::SysAdmin) {
        missing.push(Cap::Bpf);
    }
    missing
}

/// True if the effective set has `cap`.
pub fn has_cap(eff: u64, cap: Cap) -> bool {
    eff & (1u64 << (cap as u32)) != 0
}

/// Channel counts from `ETHTOOL_GCHANNELS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    /// Dedicated RX channels.
    pub rx: u32,
    /// Dedicated TX channels.
    pub tx: u32,
    /// Combined RX/TX channels.
    pub combined: u32,
}

impl Channels {
    /// Queues an AF_XDP socket can bind to: combined plus RX-only channels.
    pub fn rx_queues(&self) -> u32 {
        self.combined + self.rx
    }
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Current channel counts of `iface` (`ethtool -l`). `Err` with `EOPNOTSUPP` when the driver
/// does not report channels.
pub fn ethtool_channels(iface: &str) -> io::Result<Channels> {
    ethtool_channels_full(iface).map(|(now, _)| now)
}

/// Current and maximum channel counts of `iface` (`ethtool -l`).
pub fn ethtool_channels_full(iface: &str) -> io::Result<(Channels, Channels)> {
    let ch: EthtoolChannels = ethtool(iface, ETHTOOL_GCHANNELS)?;
    Ok((
        Channels {
            rx: ch.rx_count,
            tx: ch.tx_count,
            combined: ch.combined_count,
        },
        Channels {
            rx: ch.max_rx,
            tx: ch.max_tx,
            combined: ch.max_combined,
        },
    ))
}

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GRINGPARAM: u32 = 0x10;

/// `struct ethtool_drvinfo`.
#[repr(C)]
#[derive(Default)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ethtool_ringparam`.
#[repr(C)]
#[derive(Default)]
struct EthtoolRingparam {
    cmd: u32,
    rx_max_pending: u32,
    rx_mini_max_pending: u32,
    rx_jumbo_max_pending: u32,
    tx_max_pending: u32,
    rx_pending: u32,
    rx_mini_pending: u32,
    rx_jumbo_pending: u32,
    tx_pending: u32,
}

/// What `ethtool -i` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriverInfo {
    /// The driver's name (`ixgbe`, `mlx5_core`, `veth`).
    pub driver: String,
    /// Its version string.
    pub version: String,
    /// The firmware version, if it has one.
    pub firmware: String,
    /// The bus address (`0000:03:00.0`), empty for virtual devices.
    pub bus: String,
}

/// The driver of `iface` (`ethtool -i`, `ETHTOOL_GDRVINFO`).
pub fn ethtool_driver(iface: &str) -> io::Result<DriverInfo> {
    let d: EthtoolDrvinfo = ethtool(iface, ETHTOOL_GDRVINFO)?;
    let text = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Ok(DriverInfo {
        driver: text(&d.driver),
        version: text(&d.version),
        firmware: text(&d.fw_version),
        bus: text(&d.bus_info),
    })
}

/// Descriptor ring sizes (`ethtool -g`): current and maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rings {
    /// RX descriptors per queue.
    pub rx: u32,
    /// The most the driver allows.
    pub rx_max: u32,
    /// TX descriptors per queue.
    pub tx: u32,
    /// The most the driver allows.
    pub tx_max: u32,
}

/// The descriptor ring sizes of `iface` (`ethtool -g`, `ETHTOOL_GRINGPARAM`).
pub fn ethtool_rings(iface: &str) -> io::Result<Rings> {
    let r: EthtoolRingparam = ethtool(iface, ETHTOOL_GRINGPARAM)?;
    Ok(Rings {
        rx: r.rx_pending,
        rx_max: r.rx_max_pending,
        tx: r.tx_pending,
        tx_max: r.tx_max_pending,
    })
}

/// An ethtool ioctl's argument: a `#[repr(C)]` copy of the kernel's struct, whose first field
/// is the `u32` command. Implemented only for the structs above.
trait EthtoolRequest: Default {
    fn set_cmd(&mut self, cmd: u32);
}

impl EthtoolRequest for EthtoolChannels {
    fn set_cmd(&mut self, cmd: u32) {
        self.cmd = cmd;
    }
}

impl EthtoolRequest for EthtoolDrvinfo {
    fn set_cmd(&mut self, cmd: u32) {
        self.cmd = cmd;
    }
}

impl EthtoolRequest for EthtoolRingparam {
    fn set_cmd(&mut self, cmd: u32) {
        self.cmd = cmd;
    }
}

/// `ioctl(SIOCETHTOOL)` with command `cmd` on `iface`, returning the kernel's answer in a `T`.
fn ethtool<T: EthtoolRequest>(iface: &str, cmd: u32) -> io::Result<T> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    let mut data = T::default();
    data.set_cmd(cmd);
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: (&mut data as *mut T).cast(),
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // SAFETY: `req` is a properly laid out `struct ifreq` (name + pointer, padded to the kernel's
    // 40 bytes) whose data pointer refers to a live `T`, one of the `#[repr(C)]` ethtool structs
    // above (sizes checked in the tests) with `cmd` set to the command that struct belongs to;
    // both outlive the call, and the kernel writes only within `data`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req as *mut IfReq) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

/// `struct ifreq` with the `short ifr_flags` member of its union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `struct ifreq` with the `struct sockaddr ifr_hwaddr` member of its union.
#[repr(C)]
struct IfReqHwaddr {
    name: [u8; libc::IFNAMSIZ],
    family: libc::sa_family_t,
    data: [u8; 14],
    _pad: [u8; 8],
}

fn ifname(name: &str) -> io::Result<[u8; libc::IFNAMSIZ]> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    let mut out = [0u8; libc::IFNAMSIZ];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

/// A TAP device this process created: frames written to its fd enter the kernel's stack as if
/// received on interface `name`. The device vanishes when the fd is closed.
#[derive(Debug)]
pub struct Tap {
    /// The device's file descriptor (non-blocking, close-on-exec).
    pub fd: std::os::fd::OwnedFd,
    /// The interface name the kernel gave it.
    pub name: String,
    /// Its MAC address (frames must be addressed to it, or the stack drops them as not ours).
    pub mac: [u8; 6],
}

/// Create the TAP device `name` (no packet-info header: frames are plain Ethernet), bring it up
/// and read its MAC. Needs `CAP_NET_ADMIN`.
pub fn create_tap(name: &str) -> Result<Tap, SyscallError> {
    let req_name = ifname(name).map_err(|e| SyscallError::new("ioctl(TUNSETIFF)", e))?;
    let fd = rustix::fs::open(
        "/dev/net/tun",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| SyscallError::new("open(/dev/net/tun)", e))?;
    let mut req = IfReqFlags {
        name: req_name,
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    // SAFETY: `fd` is an open tun device; `req` is a properly sized `struct ifreq` (name +
    // flags, padded to the kernel's 40 bytes) that outlives the call; the kernel writes the
    // chosen name back into it and nothing else.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) };
    if rc != 0 {
        return Err(SyscallError::new(
            "ioctl(TUNSETIFF)",
            io::Error::last_os_error(),
        ));
    }
    let len = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(libc::IFNAMSIZ);
    let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")
        .or_else(|_| std::net::UdpSocket::bind("[::]:0"))
        .map_err(|e| SyscallError::new("socket", e))?;
    // Up: read the flags, add IFF_UP.
    let mut flags = IfReqFlags {
        name: req.name,
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: a valid socket; `flags` is a properly sized `struct ifreq` living across the calls;
    // SIOCGIFFLAGS/SIOCSIFFLAGS read and write only its name and flags.
    unsafe {
        if libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut flags as *mut IfReqFlags,
        ) != 0
        {
            return Err(SyscallError::new(
                "ioctl(SIOCGIFFLAGS)",
                io::Error::last_os_error(),
            ));
        }
        flags.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &mut flags as *mut IfReqFlags,
        ) != 0
        {
            return Err(SyscallError::new(
                "ioctl(SIOCSIFFLAGS)",
                io::Error::last_os_error(),
            ));
        }
    }
    let mut hw = IfReqHwaddr {
        name: req.name,
        family: 0,
        data: [0; 14],
        _pad: [0; 8],
    };
    // SAFETY: as above; SIOCGIFHWADDR writes the address into `hw`'s sockaddr.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFHWADDR,
            &mut hw as *mut IfReqHwaddr,
        )
    };
    if rc != 0 {
        return Err(SyscallError::new(
            "ioctl(SIOCGIFHWADDR)",
            io::Error::last_os_error(),
        ));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&hw.data[..6]);
    Ok(Tap { fd, name, mac })
}

/// RLIMIT_MEMLOCK soft limit in bytes (`u64::MAX` for unlimited).
pub fn memlock_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Memlock)
        .current
        .unwrap_or(u64::MAX)
}

/// Drop every privilege once start-up is done: optionally switch to `user` (its uid, primary
/// gid, no supplementary groups), then empty the capability bounding, ambient, inheritable,
/// permitted and effective sets.
///
/// Must run before the worker and control threads are spawned: capabilities are per thread in
/// Linux and a new thread inherits its creator's. Nothing sluice does after start-up needs a
/// capability — map updates and reads go through the map fds it already holds, the AF_XDP
/// sockets are bound, and the XDP program is detached by closing its bpf_link fd.
pub fn drop_privileges(user: Option<&str>) -> Result<(), String> {
    let target = match user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .map_err(|e| format!("looking up user {name:?}: {e}"))?
                .ok_or_else(|| format!("no user named {name:?}"))?,
        ),
        None => None,
    };
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes with the rest.
    for bit in 0..64u32 {
        let Some(cap) = rustix::thread::CapabilitySet::from_bits(1u64 << bit) else {
            continue;
        };
        // EINVAL past the kernel's last capability; EPERM without CAP_SETPCAP (then the
        // bounding set is already what our parent allowed): neither is worth failing for.
        let _ = rustix::thread::remove_capability_from_bounding_set(cap);
    }
    let _ = rustix::thread::clear_ambient_capability_set();
    if let Some(u) = &target {
        // nix calls the libc wrappers, which apply the change to every thread of the process.
        nix::unistd::setgroups(&[u.gid]).map_err(|e| format!("setgroups for {}: {e}", u.name))?;
        nix::unistd::setgid(u.gid).map_err(|e| format!("setgid({}): {e}", u.gid))?;
        nix::unistd::setuid(u.uid).map_err(|e| format!("setuid({}): {e}", u.uid))?;
    }
    rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: rustix::thread::CapabilitySet::empty(),
            permitted: rustix::thread::CapabilitySet::empty(),
            inheritable: rustix::thread::CapabilitySet::empty(),
        },
    )
    .map_err(|e| format!("clearing the capability sets: {e}"))?;
    let eff = effective_caps().map_err(|e| format!("reading the capability sets back: {e}"))?;
    if eff != 0 {
        return Err(format!(
            "capabilities still effective after dropping: {eff:#x}"
        ));
    }
    Ok(())
}

/// A new close-on-exec fd for the bpf_link with kernel id `link_id` that this process holds
/// open, found through `/proc/self/fdinfo` (every bpf_link fd shows its `link_id:` there).
///
/// aya 0.14 keeps a link's fd private and its only way to get one by id (`BPF_LINK_GET_FD_BY_ID`)
/// needs `CAP_SYS_ADMIN`, which sluice does not ask for; a hot upgrade must pass the link to the
/// successor, so it takes a duplicate of the fd aya holds.
pub fn dup_bpf_link_fd(link_id: u32) -> io::Result<std::os::fd::OwnedFd> {
    let want = format!("link_id:\t{link_id}");
    for entry in std::fs::read_dir("/proc/self/fdinfo")? {
        let entry = entry?;
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue; // closed meanwhile
        };
        if info.lines().any(|l| l == want) {
            // SAFETY: the fd is open in this process (its fdinfo was just read) and belongs to
            // the aya link the caller holds, which keeps it open for this borrow; it is only
            // duplicated.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            return Ok(rustix::io::fcntl_dupfd_cloexec(borrowed, 3)?);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no fd of bpf_link {link_id} in /proc/self/fdinfo"),
    ))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn effective_caps_match_proc_status() {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap();
        let from_proc = u64::from_str_radix(line.trim(), 16).unwrap();
        assert_eq!(effective_caps().unwrap(), from_proc);
    }

    #[test]
    fn socket_option_errors_name_the_call() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsFd;
        set_socket_option(sock.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 65536, "x").unwrap();
        let e = set_socket_option(
            sock.as_fd(),
            libc::SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            64,
            "setsockopt(XDP_MAX_TX_SKB_BUDGET)",
        )
        .unwrap_err();
        assert_eq!(e.call, "setsockopt(XDP_MAX_TX_SKB_BUDGET)");
        assert!(e.io_error.raw_os_error().is_some(), "{e:?}");
    }

    #[test]
    fn missing_caps_are_named() {
        assert!(missing_run_caps(u64::MAX).is_empty());
        let m = missing_run_caps(0);
        let names: Vec<_> = m.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF"]);
        // CAP_SYS_ADMIN stands in for CAP_BPF.
        let eff = (1 << 12) | (1 << 13) | (1 << 21);
        assert!(missing_run_caps(eff).is_empty());
    }

    #[test]
    fn ifreq_has_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(std::mem::size_of::<EthtoolRingparam>(), 36);
        assert_eq!(std::mem::size_of::<EthtoolChannels>(), 36);
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
        assert_eq!(std::mem::size_of::<IfReqHwaddr>(), 40);
    }

    #[test]
    fn tap_is_created_up_with_a_mac_and_vanishes_on_close() {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true needs root here"
            );
            eprintln!("skipping: creating a TAP device needs root");
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let tap = create_tap("sktest0").unwrap();
            assert_eq!(tap.name, "sktest0");
            assert_ne!(tap.mac, [0; 6]);
            assert_eq!(tap.mac[0] & 1, 0, "a unicast MAC");
            let frame = [0u8; 60];
            rustix::io::write(&tap.fd, &frame).expect("a frame can be written");
            assert!(create_tap("a-name-longer-than-15").is_err());
            drop(tap);
            assert!(ethtool_channels("sktest0").unwrap_err().raw_os_error() == Some(libc::ENODEV));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn ethtool_on_loopback_fails_cleanly() {
        // lo reports no channels (`ethtool -l lo`: "Operation not supported"): the ioctl must
        // come back with that errno, which `sluice run` turns into a fallback to the netlink
        // queue count. A missing interface is ENODEV; an empty or oversize name is refused.
        let e = ethtool_channels("lo").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
        let e = ethtool_channels("nosuchif0").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
        assert!(ethtool_channels("").is_err());
        // lo has no ethtool driver info (`ethtool -i lo`: not supported): a clean errno.
        assert_eq!(
            ethtool_driver("lo").unwrap_err().raw_os_error(),
            Some(libc::EOPNOTSUPP)
        );
        assert_eq!(
            ethtool_driver("nosuchif0").unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
        assert!(ethtool_channels("a-name-longer-than-15").is_err());
    }
}
