//! Error plumbing shared by every subsystem: one type for a failed system call and one way to
//! print an error with its causes on a single line.

use std::error::Error;
use std::io;

/// A system call (or a library call that wraps one) that failed, with the OS error.
///
/// Each subsystem's error enum wraps it (`#[from]` or as a variant's `#[source]`) and adds what
/// the caller was doing and on which interface/queue; this type only says which call failed.
#[derive(Debug, thiserror::Error)]
#[error("`{call}` failed")]
pub struct SyscallError {
    /// The call, as named in its man page (`setsockopt(SO_BUSY_POLL)`, `bind`).
    pub call: &'static str,
    /// The OS error it returned.
    #[source]
    pub io_error: io::Error,
}

impl SyscallError {
    /// `call` failed with `io_error`.
    pub fn new(call: &'static str, io_error: impl Into<io::Error>) -> Self {
        SyscallError {
            call,
            io_error: io_error.into(),
        }
    }
}

/// `error: cause: cause …` on one line, for log lines, replies and the CLI's last words.
pub fn chain(err: &dyn Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

#[cfg(test)]
mod test {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("binding veth0 queue 3")]
    struct Outer(#[source] SyscallError);

    #[test]
    fn chain_joins_every_cause() {
        let e = Outer(SyscallError::new(
            "bind",
            io::Error::from_raw_os_error(libc::EBUSY),
        ));
        assert_eq!(
            chain(&e),
            "binding veth0 queue 3: `bind` failed: Device or resource busy (os error 16)"
        );
    }
}
