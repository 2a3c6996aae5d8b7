//! The crate's one error type.
//!
//! Every variant names the namespace (and interface, where there is one) and
//! the operation that failed, and keeps the underlying error as its source.
//! Kernel errors keep their errno: a netlink `NLMSG_ERROR` becomes an
//! [`io::Error`] built with [`io::Error::from_raw_os_error`], so
//! `source.raw_os_error() == Some(libc::EEXIST)` and it prints as
//! "File exists (os error 17)".

use std::io;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while building or tearing down a test bed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A namespace name prefix that would make names too long or unusable.
    #[error("invalid network namespace prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The rejected prefix.
        prefix: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An interface name the kernel would reject (empty, longer than 15
    /// bytes, or containing `/`, `:` or whitespace).
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A route that can't be expressed (no gateway and no device, or a
    /// gateway of the wrong address family).
    #[error("invalid route {route}: {reason}")]
    InvalidRoute {
        /// The route, as `ip route` would print it.
        route: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A step of creating a network namespace failed.
    #[error("creating network namespace {ns}: {step}")]
    CreateNetns {
        /// Name of the namespace being created.
        ns: String,
        /// The step that failed (e.g. "bind-mounting the namespace").
        step: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// A helper thread could not be started.
    #[error("starting a helper thread for network namespace {ns}")]
    Thread {
        /// Namespace the thread was meant to enter.
        ns: String,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// `setns(2)` into the namespace failed.
    #[error("entering network namespace {ns}")]
    Setns {
        /// Namespace that could not be entered.
        ns: String,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// A netlink request failed: the kernel answered with an error, or the
    /// socket failed. `source` carries the errno; `ext_ack` the kernel's
    /// extended-ACK message when it sent one.
    #[error("{op} in network namespace {ns}{}", ext_ack_suffix(.ext_ack))]
    Netlink {
        /// What was being done, e.g. "adding address 10.77.0.1/24 to veth-eng".
        op: String,
        /// Namespace whose netlink socket was used.
        ns: String,
        /// The kernel's extended-ACK error message, if any.
        ext_ack: Option<String>,
        /// The errno as an `io::Error`.
        #[source]
        source: io::Error,
    },

    /// A netlink reply could not be decoded.
    #[error("decoding the netlink reply to {op} in network namespace {ns}")]
    Decode {
        /// The request whose reply failed to decode.
        op: String,
        /// Namespace whose netlink socket was used.
        ns: String,
        /// The decoder's error.
        #[source]
        source: netlink_packet_core::DecodeError,
    },

    /// A reply was well-formed but not what was asked for (e.g. a link
    /// without a name or MAC address).
    #[error("unexpected netlink reply to {op} in network namespace {ns}: {what}")]
    Unexpected {
        /// The request.
        op: String,
        /// Namespace whose netlink socket was used.
        ns: String,
        /// What was missing or wrong.
        what: String,
    },

    /// An interface did not become ready to carry traffic in time.
    #[error("{iface} in network namespace {ns} not ready after {waited:?}: {state}")]
    NotReady {
        /// The interface.
        iface: String,
        /// The namespace.
        ns: String,
        /// How long was waited.
        waited: std::time::Duration,
        /// Its last observed state.
        state: String,
    },

    /// Writing a sysctl inside the namespace failed.
    #[error("setting sysctl {key} = {value} in network namespace {ns}")]
    Sysctl {
        /// The key, as given.
        key: String,
        /// The value.
        value: String,
        /// The namespace.
        ns: String,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// Reading a sysctl inside the namespace failed, or its value was not
    /// what the key holds (then `source` is `InvalidData`).
    #[error("reading sysctl {key} in network namespace {ns}")]
    SysctlRead {
        /// The key, as given.
        key: String,
        /// The namespace.
        ns: String,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// An ethtool ioctl failed.
    #[error("ethtool {op} on {iface} in network namespace {ns}")]
    Ethtool {
        /// The ethtool command, e.g. "ETHTOOL_STXCSUM".
        op: &'static str,
        /// The interface.
        iface: String,
        /// The namespace.
        ns: String,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// A socket of a test service or client could not be set up.
    #[error("{op} in network namespace {ns}")]
    Socket {
        /// What was being done, e.g. "binding TCP `[::]:8080`".
        op: String,
        /// The namespace.
        ns: String,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// A file or directory of the harness (a zone, a server's configuration or its
    /// temporary directory) could not be read or written.
    #[error("{op}: {path}")]
    File {
        /// What was being done, e.g. "writing the NSD configuration".
        op: String,
        /// The file or directory.
        path: String,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// A zone file the harness reads is not what it can read.
    #[error("{file}:{line}: {problem}")]
    Zone {
        /// The file.
        file: String,
        /// The line (1-based).
        line: usize,
        /// What is wrong there.
        problem: String,
    },

    /// A DNS server under test did not start, exited, or never answered.
    #[error("{server} in network namespace {ns}: {problem}")]
    Server {
        /// Which server, e.g. "nsd".
        server: String,
        /// Its namespace.
        ns: String,
        /// What went wrong, with the server's own log when there is one.
        problem: String,
    },

    /// A process could not be started inside the namespace.
    #[error("spawning {program} in network namespace {ns}")]
    Spawn {
        /// The program.
        program: String,
        /// The namespace.
        ns: String,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

fn ext_ack_suffix(ext_ack: &Option<String>) -> String {
    match ext_ack {
        Some(msg) => format!(" (kernel says: {msg})"),
        None => String::new(),
    }
}

impl Error {
    /// The errno behind this error, if it came from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::CreateNetns { source, .. }
            | Error::Thread { source, .. }
            | Error::Setns { source, .. }
            | Error::Netlink { source, .. }
            | Error::Ethtool { source, .. }
            | Error::Sysctl { source, .. }
            | Error::SysctlRead { source, .. }
            | Error::Socket { source, .. }
            | Error::File { source, .. }
            | Error::Spawn { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
