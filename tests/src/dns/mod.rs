//! The DNS correctness harness: authoritative servers side by side in namespaces, the same
//! few hundred queries put to each with a real client, and the answers compared query by
//! query.
//!
//! * [`DnsBed`] — a client namespace with a veth to each of up to four server namespaces
//!   (10.53.N.2 / fd53:N::2 for server N-1, the client at .1 / ::1).
//! * [`DnsServer`] — NSD or Knot DNS in one of them, on a generated configuration in a
//!   temporary directory, stopped on drop; [`wait_until_serving`] waits for any server (say,
//!   `sluice run --app dns`) to answer every zone's SOA over UDP and TCP.
//! * [`Zone`], [`test_zones`] — the harness's own zones (`tests/zones/*.zone`), read just far
//!   enough to generate queries from.
//! * [`corpus`] — the queries: every owner × interesting types under varying flags, EDNS,
//!   transports and families; NXDOMAIN, NODATA, wildcards, referrals, truncation, REFUSED,
//!   BADVERS, other classes; and raw messages for what kdig can't send (mixed-case names,
//!   other opcodes, malformed messages).
//! * [`ask_all`] — puts a corpus to a [`Target`] with `kdig +json` (or raw sockets) from the
//!   client namespace, giving an [`Outcome`] per query.
//! * [`compare()`], [`Report`], [`Exception`] — the comparison (rules in the
//!   [`compare`](mod@compare) module's docs) and the report, in which written
//!   exceptions excuse known differences.
//! * [`compare_servers`] — all of it for two targets.
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_testbed::dns::{self, DnsBed, DnsServer, Target};
//!
//! let zones = dns::test_zones().unwrap();
//! let bed = DnsBed::new(2).unwrap();
//! let mut nsd = DnsServer::nsd(bed.server(0).ns(), &bed.server_addrs(0), &zones).unwrap();
//! let mut knot = DnsServer::knot(bed.server(1).ns(), &bed.server_addrs(1), &zones).unwrap();
//! nsd.wait_ready(bed.client(), Duration::from_secs(10)).unwrap();
//! knot.wait_ready(bed.client(), Duration::from_secs(10)).unwrap();
//! let report = dns::compare_servers(
//!     bed.client(),
//!     &Target::at("nsd", bed.server(0)),
//!     &Target::at("knot", bed.server(1)),
//!     &dns::corpus(&zones),
//!     &[],
//! )
//! .unwrap();
//! eprintln!("{}", report.summary());
//! report.assert_agree();
//! ```
//!
//! What this module must never do: talk to anything but the servers in its own bed, or
//! write anywhere but its servers' temporary directories.

mod client;
pub mod compare;
mod corpus;
mod server;
pub mod wire;
mod zone;

pub use client::{
    Outcome, RAW_TIMEOUT, Target, ask, ask_all, kdig_args, kdig_version, message_from_json,
    tcp_exchange, udp_exchange, wait_until_serving,
};
pub use compare::{Exception, Report, compare, side_by_side};
pub use corpus::{KdigQuery, Query, QueryKind, RawQuery, Transport, corpus};
pub use server::{DnsBed, DnsServer, ServerKind};
pub use zone::{Zone, ZoneRecord, test_zones, test_zones_dir};

use crate::error::Result;
use crate::netns::Netns;

/// Puts `queries` to `first` and then to `second` from `client`, and compares the outcomes
/// query by query with `exceptions` (whose reasons say why `first` is right).
pub fn compare_servers(
    client: &Netns,
    first: &Target,
    second: &Target,
    queries: &[Query],
    exceptions: &[Exception],
) -> Result<Report> {
    let a = ask_all(client, first, queries)?;
    let b = ask_all(client, second, queries)?;
    Ok(Report::new(
        &first.name,
        &second.name,
        queries,
        &a,
        &b,
        exceptions,
    ))
}
