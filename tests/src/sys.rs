//! The crate's only raw system calls: the `SIOCETHTOOL` ioctl and the AF_PACKET socket.
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
    Ok(fd)
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
    let mut len = size_of::<libc::sockaddr_ll>() as u32;
    // SAFETY: `buf` is writable for its length; `sa`/`len` describe a valid address buffer.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut sa as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some((n as usize, sa.sll_pkttype == libc::PACKET_OUTGOING)))
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
