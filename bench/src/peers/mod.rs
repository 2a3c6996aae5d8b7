//! Peers: other packet engines run on the same veth end as sluice, for side-by-side numbers.
//!
//! Each peer is an external program that may or may not be installed. `available()` says which
//! (with the reason when not, never panicking); the caller reports a missing peer as skipped.
//! A started peer is a child process inside a test-bed namespace, owned by a value that stops
//! it on `stop()` and kills it on drop, so no peer outlives its benchmark (or keeps a namespace
//! alive).
//!
//! This module must never start a peer on an interface outside a namespace the caller created.
//!
//! So far: [`testpmd`], DPDK's `dpdk-testpmd` with the `net_af_xdp` poll-mode driver.

pub mod testpmd;

use std::time::Duration;

pub use testpmd::{Testpmd, TestpmdMode, TestpmdReport, TestpmdStats};

/// What can go wrong with a peer; each variant names the peer and what failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer's program is missing or unusable.
    #[error("{peer} is not available: {reason}")]
    NotAvailable {
        /// The peer.
        peer: &'static str,
        /// Why (e.g. "not installed (apt-get install dpdk …)").
        reason: String,
    },
    /// The arguments make no sense (checked before anything starts).
    #[error("{peer}: {what}")]
    InvalidArgument {
        /// The peer.
        peer: &'static str,
        /// What is wrong.
        what: String,
    },
    /// The interface to run on isn't in the namespace.
    #[error("{peer}: no interface {iface} in namespace {ns}")]
    NoInterface {
        /// The peer.
        peer: &'static str,
        /// The interface asked for.
        iface: String,
        /// The namespace looked in.
        ns: String,
        /// The test bed's error (boxed: it is large).
        #[source]
        source: Box<sluice_testbed::Error>,
    },
    /// The process could not be started.
    #[error("{peer}: starting {program} in namespace {ns}")]
    Spawn {
        /// The peer.
        peer: &'static str,
        /// Path of the program.
        program: String,
        /// The namespace.
        ns: String,
        /// The test bed's error (it carries the `io::Error`; boxed: it is large).
        #[source]
        source: Box<sluice_testbed::Error>,
    },
    /// The peer exited or reported an error before it started forwarding.
    #[error("{peer} on {iface} failed to start: {detail}")]
    StartFailed {
        /// The peer.
        peer: &'static str,
        /// The interface.
        iface: String,
        /// Its exit status and last lines of output.
        detail: String,
    },
    /// The peer did not start forwarding in time (it has been killed).
    #[error("{peer} on {iface} was not forwarding after {timeout:?}: {detail}")]
    NotReady {
        /// The peer.
        peer: &'static str,
        /// The interface.
        iface: String,
        /// How long was waited.
        timeout: Duration,
        /// Last lines of output.
        detail: String,
    },
    /// Signalling or waiting for the process failed.
    #[error("{peer} (pid {pid}): {what}")]
    Process {
        /// The peer.
        peer: &'static str,
        /// Its process id.
        pid: u32,
        /// What was being done ("sending SIGINT", "waiting for exit").
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The peer did not exit in time after SIGINT; it has been killed.
    #[error("{peer} (pid {pid}) did not exit within {timeout:?} of SIGINT; killed it")]
    StopTimeout {
        /// The peer.
        peer: &'static str,
        /// Its process id.
        pid: u32,
        /// How long was waited.
        timeout: Duration,
    },
    /// The peer exited without printing the final counters.
    #[error("{peer} on {iface} exited ({status}) without its final counters: {detail}")]
    NoFinalCounters {
        /// The peer.
        peer: &'static str,
        /// The interface.
        iface: String,
        /// Its exit status.
        status: String,
        /// Last lines of output.
        detail: String,
    },
}
