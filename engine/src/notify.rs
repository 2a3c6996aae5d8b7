//! systemd's readiness protocol (`sd_notify(3)`), without libsystemd: one datagram such as
//! `READY=1` to the Unix socket named by `$NOTIFY_SOCKET`.
//!
//! Owns that one message path and nothing else. Without `$NOTIFY_SOCKET` (not started by
//! systemd with `Type=notify`) it does nothing; it never blocks and never fails the engine —
//! the caller logs an error and carries on, as systemd times the start out by itself.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Send `state` (newline-separated `KEY=VALUE` assignments, e.g. `READY=1\nSTATUS=serving`)
/// to `$NOTIFY_SOCKET`. `Ok(false)` when the variable is not set.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(target) => notify_to(&target, state).map(|()| true),
        None => Ok(false),
    }
}

/// Send `state` to the socket `target` names as `$NOTIFY_SOCKET` does: a path, or `@name` for
/// an abstract socket. (`vsock:` targets, for virtual machines, are not supported.)
pub fn notify_to(target: &OsStr, state: &str) -> io::Result<()> {
    let bytes = target.as_bytes();
    let addr = match bytes.first() {
        // An abstract socket name: `@` stands for the leading NUL.
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(target)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "${NOTIFY_SOCKET} = {target:?}: only socket paths and @abstract names are supported"
                ),
            ));
        }
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ready_reaches_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("sluice-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut buf = [0u8; 64];
        notify_to(path.as_os_str(), "READY=1\nSTATUS=test").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=test");

        let name = format!("sluice-notify-test-{}", std::process::id());
        let abs =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        let n = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let e = notify_to(OsStr::new("vsock:2:1234"), "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
