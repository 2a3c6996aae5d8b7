//! The crate's only raw system calls: the `SIOCETHTOOL` ioctl, the AF_PACKET socket and the
//! open-files limit (`getrlimit`/`setrlimit`, which the workspace's `nix` features don't cover).
//!
//! Everything else goes through safe wrappers (`nix`, `netlink-sys`). This
//! module must stay tiny: one `repr(C)` mirror of the kernel structs, one
//! ioctl, each `unsafe` block justified.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `ETHTOOL_GTXCSUM` from `<linux/ethtool.h>`: get TX checksum offload.
const ETHTOOL_GTXCSUM: u32 = 0x0000_0016;
/// `ETHTOOL_STXCSUM` from `<linux/ethtool.h>`: set TX checksum offload.
const ETHTOOL_STXCSUM: u32 = 0x0000_0017;
/// `IFNAMSIZ`: interface names are at most 15 bytes plus the NUL.
pub(crate) const IFNAMSIZ: usize = 16;

/// Bytes of `struct ifreq`'s union past the `ifr_data` pointer.
const IFREQ_PAD: usize = size_of::<libc::ifreq>() - IFNAMSIZ - size_of::<*mut EthtoolValue>();

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union; the padding makes
/// it exactly as large as the kernel's, which copies the whole struct in.
#[repr(C)]
struct IfreqData {
    name: [u8; IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; IFREQ_PAD],
}

/// Reads whether TX checksum offload is on for `iface`. `sock` is any
/// socket (e.g. `AF_INET`/`SOCK_DGRAM`) created in the interface's network
/// namespace: the kernel resolves the name in the socket's namespace.
pub(crate) fn tx_checksum(sock: BorrowedFd<'_>, iface: &str) -> io::Result<bool> {
    ethtool_value(sock, iface, ETHTOOL_GTXCSUM, 0).map(|v| v != 0)
}

/// Turns TX checksum offload for `iface` on or off (like
/// `ethtool -K IFACE tx on|off`). See [`tx_checksum`] for `sock`.
pub(crate) fn set_tx_checksum(sock: BorrowedFd<'_>, iface: &str, on: bool) -> io::Result<()> {
    ethtool_value(sock, iface, ETHTOOL_STXCSUM, u32::from(on)).map(drop)
}

/// Runs an ethtool command that takes and returns a `struct ethtool_value`.
fn ethtool_value(sock: BorrowedFd<'_>, iface: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut value = EthtoolValue { cmd, data };
    let mut ifr = IfreqData {
        name: [0; IFNAMSIZ],
        data: &mut value,
        _pad: [0; IFREQ_PAD],
    };
    ifr.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `ifr` is a properly laid out, NUL-terminated `struct ifreq`
    // whose `ifr_data` points at `value`, a live `struct ethtool_value`;
    // both outlive the call, and the kernel writes at most
    // `size_of::<EthtoolValue>()` bytes through the pointer for these two
    // commands. `sock` is an open socket for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCETHTOOL as _,
            &mut ifr as *mut IfreqData,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

// ----- AF_PACKET ---------------------------------------------------------------------------

/// `ETH_P_ALL` in network byte order, as `socket()` and `sockaddr_ll` want it.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

fn packet_addr(ifindex: u32) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value that we then fill in.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_ALL_BE;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa
}

/// An `AF_PACKET` raw socket bound to `ifindex` (in the calling thread's namespace).
pub(crate) fn packet_socket(ifindex: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ALL_BE),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let sa = packet_addr(ifindex);
    // SAFETY: `sa` is a valid sockaddr_ll and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // A large receive buffer, so a capture keeps every frame of a burst even when the reading
    // thread is descheduled for a while (a loaded CI machine): SO_RCVBUFFORCE as root, else
    // as much as SO_RCVBUF allows.
    let size: libc::c_int = 16 << 20;
    if set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
        let _ = set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size);
    }
    set_int_option(&fd, libc::SOL_PACKET, PACKET_AUXDATA, 1)?;
    Ok(fd)
}

/// Set an integer socket option (`setsockopt(fd, level, name, &value, sizeof(int))`): the one
/// place this crate calls `setsockopt`.
fn set_int_option(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket for the duration of the call; the value points at a live
    // c_int and the length is its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PACKET_AUXDATA` from `<linux/if_packet.h>` (libc does not define it for Linux): deliver
/// `struct tpacket_auxdata` with each frame.
const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// `struct tpacket_auxdata`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    net: u16,
    vlan_tci: u16,
    vlan_tpid: u16,
}

/// Send `frame` out of `ifindex`.
pub(crate) fn packet_send(
    fd: &std::os::fd::OwnedFd,
    ifindex: u32,
    frame: &[u8],
) -> io::Result<usize> {
    let sa = packet_addr(ifindex);
    // SAFETY: `frame` is valid for `frame.len()` bytes; `sa` is a valid sockaddr_ll.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Receive one frame into `buf`, waiting up to `timeout`. Returns its length and whether it was
/// outgoing, or `None` on timeout.
pub(crate) fn packet_recv(
    fd: &std::os::fd::OwnedFd,
    buf: &mut [u8],
    timeout: std::time::Duration,
) -> io::Result<Option<(usize, bool)>> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, count 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 {
        return Ok(None);
    }
    // SAFETY: all-zero is a valid sockaddr_ll to be overwritten by the kernel.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    // Room for one cmsg carrying a tpacket_auxdata, 8-byte aligned.
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers are filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut sa as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&cbuf);
    // SAFETY: `msg` points at live buffers (`sa`, `iov` over `buf`, `cbuf`) of the given sizes,
    // all of which outlive the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    let mut n = n as usize;
    // The kernel strips the outermost VLAN tag into metadata on receive; put it back inline,
    // as libpcap does, so callers see the frame as it was on the wire.
    let mut tag = None;
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the kernel filled, bounded by
    // `msg_controllen`; CMSG_DATA points inside the current header's data.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET
                && (*c).cmsg_type == PACKET_AUXDATA
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(size_of::<TpacketAuxdata>() as u32) as usize
            {
                let aux: TpacketAuxdata = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                if aux.status & TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.vlan_tpid
                    } else {
                        0x8100
                    };
                    tag = Some((tpid, aux.vlan_tci));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if let Some((tpid, tci)) = tag
        && n >= 12
        && n + 4 <= buf.len()
    {
        buf.copy_within(12..n, 16);
        buf[12..14].copy_from_slice(&tpid.to_be_bytes());
        buf[14..16].copy_from_slice(&tci.to_be_bytes());
        n += 4;
    }
    Ok(Some((n, sa.sll_pkttype == libc::PACKET_OUTGOING)))
}

/// Raises this process's soft `RLIMIT_NOFILE` to `want`, capped at the hard limit (never
/// lowers it), and returns the soft limit now in force. Thousands of concurrent test flows
/// need more descriptors than the usual default soft limit of 1024.
pub(crate) fn raise_nofile_limit(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = want.min(lim.rlim_max);
    if target <= lim.rlim_cur {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = target;
    // SAFETY: `lim` is a valid rlimit read above, with only the soft limit raised within the
    // hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ifreq_is_as_large_as_the_kernels() {
        assert_eq!(size_of::<IfreqData>(), size_of::<libc::ifreq>());
        assert_eq!(size_of::<EthtoolValue>(), 8);
    }
}
