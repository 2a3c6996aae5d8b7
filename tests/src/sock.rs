//! Socket set-up shared by [`crate::BackendService`] and the flow clients: options that `std`
//! can't set before `bind` (`SO_REUSEADDR`, `IPV6_V6ONLY`), through `nix`, with `std` socket
//! types handed out. Owns no policy; every socket it makes is non-blocking and close-on-exec.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage, sockopt,
};

/// A non-blocking, close-on-exec socket of `addr`'s family. IPv6 sockets are IPv6-only, so an
/// IPv4 socket can use the same port beside them.
pub(crate) fn socket(addr: &SocketAddr, ty: SockType) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    Ok(fd)
}

/// `SO_REUSEADDR` on, then `bind(addr)`.
pub(crate) fn bind_reuse(fd: &impl AsFd, addr: SocketAddr) -> io::Result<()> {
    socket::setsockopt(fd, sockopt::ReuseAddr, &true)?;
    socket::bind(fd.as_fd().as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(())
}

/// `connect(addr)` on a non-blocking socket: `Ok(true)` when connected at once, `Ok(false)`
/// when in progress (`EINPROGRESS`; poll for writability, then read `SO_ERROR`).
pub(crate) fn connect(fd: &impl AsFd, addr: SocketAddr) -> io::Result<bool> {
    match socket::connect(fd.as_fd().as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EINPROGRESS) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The pending error of a socket (`SO_ERROR`), cleared by reading it.
pub(crate) fn take_error(fd: &impl AsFd) -> io::Result<Option<io::Error>> {
    let errno = socket::getsockopt(fd, sockopt::SocketError)?;
    Ok((errno != 0).then(|| io::Error::from_raw_os_error(errno)))
}

/// The local address of a socket.
pub(crate) fn local_addr(fd: &impl AsFd) -> io::Result<SocketAddr> {
    let addr: SockaddrStorage = socket::getsockname(fd.as_fd().as_raw_fd())?;
    std_addr(&addr).ok_or_else(|| io::Error::other(format!("not an IP socket address: {addr}")))
}

/// A `nix` socket address as a `std` one (IPv4 or IPv6 only).
pub(crate) fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    match addr.family()? {
        AddressFamily::Inet => addr
            .as_sockaddr_in()
            .map(|a| SocketAddr::new(IpAddr::V4(a.ip()), a.port())),
        AddressFamily::Inet6 => addr
            .as_sockaddr_in6()
            .map(|a| SocketAddr::new(IpAddr::V6(a.ip()), a.port())),
        _ => None,
    }
}

/// The wildcard address of `ip`'s family with `port`.
pub(crate) fn unspecified(ip: IpAddr, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
    }
}
