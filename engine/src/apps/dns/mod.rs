//! The `dns` app's answer engine (issue 10): authoritative answers from RFC 1035 zone files,
//! computed without I/O or allocation on the query path.
//!
//! - [`zone`]: loading and checking master files, and compiling them into [`Zones`] — immutable,
//!   `Send + Sync`, shared by the workers behind an `Arc`.
//! - [`answer`]: [`Zones::answer`], one DNS message in, one response out, into a buffer the
//!   caller owns; [`Limits`], [`Answer`], [`Outcome`], [`DropWhy`].
//! - `name`: wire-form names (bounded parsing, lower-casing, the table hasher).
//!
//! This module knows nothing of frames, sockets or counters: the per-frame app parses
//! Ethernet/IP/UDP, calls [`Zones::answer`] with the UDP payload and builds the reply frame; TCP
//! goes through a kernel socket that calls the same function.
//!
//! # Zone files: `domain`, not `hickory-proto`
//!
//! Both build on Rust 1.95 and are well kept (`domain` 0.12 by NLnet Labs, the makers of NSD,
//! BSD-3-Clause; `hickory-proto` 0.26, MIT/Apache-2.0). `domain::zonefile::inplace` scans a
//! file entry by entry and its errors carry a line and column; hickory's text parser reads a
//! whole file into a map in one call and its errors say what but not where. Entry-by-entry
//! scanning is what lets every record, and every zone-rule error found after scanning (CNAME
//! and other data, out-of-zone names, a second SOA), name its line. `domain`'s scanner reads a
//! token ahead, so the line of each entry is found by a small splitter of our own that follows
//! the same rules (parentheses, quotes, comments) — see `zone::entry_starts`.
//! `$INCLUDE` and `DNAME` are refused with an error rather than served half-way.
//!
//! # Fast by construction
//!
//! At load: every name (owners, names in rdata, their ancestors) is interned with its first
//! label and parent, so compression works by name id; rdata is stored in wire form with the
//! position of each name in it; each node knows its RRsets (in file order), its CNAME, its
//! wildcard child and the zone cut above it; each NS/MX/SRV RRset knows which A/AAAA RRsets go
//! in the additional section; the negative-answer SOA carries its RFC 2308 TTL. Per query:
//! one hash probe per label of the query name until a known suffix is found (hashing the
//! lower-cased name in a stack buffer), a walk up the parents to the zone and the closest
//! node, then copies of prepared rdata with names written from the compression table.
//!
//! # Behaviour: NSD 4 is the reference
//!
//! Checked against NSD 4.6.1 and Knot 3.2.6 with `kdig` and raw queries. Where they differ:
//!
//! - **Authority NS and its glue on positive answers**: NSD adds the zone's NS RRset (and the
//!   A/AAAA of in-zone name servers) after every positive answer except DS, DNSKEY and ANY;
//!   Knot answers minimally. NSD's way is followed (it is the reference the comparison tests
//!   use); it is dropped silently when it does not fit.
//! - **Additional data for MX and SRV**: both NSD and Knot add in-zone A/AAAA targets; NSD
//!   orders all A before all AAAA (followed).
//! - **ANY** (RFC 8482): both answer one RRset. NSD's pick is followed (first of A, AAAA, SOA,
//!   MX, PTR in file order); Knot picks by its own node order.
//! - **Truncation**: whole RRsets only. If an answer or authority RRset does not fit, the
//!   RRsets before it stay (e.g. a CNAME), TC=1 and nothing else follows but the OPT (NSD;
//!   Knot empties the answer). Additional RRsets that do not fit are skipped without TC (both).
//! - **Trailing bytes after the question/OPT**: ignored (NSD); Knot answers FORMERR.
//! - **Malformed question** (bad label, compression pointer, truncated, > 255 octets):
//!   FORMERR with no question (NSD); Knot sends nothing.
//! - **QDCOUNT ≠ 1**: FORMERR with every flag cleared, RD too (NSD); Knot sends nothing for 2.
//! - **ANCOUNT ≠ 0, NSCOUNT ≠ 0 (except IXFR), a non-OPT additional record, two OPTs, an OPT
//!   with a non-root owner or malformed options**: FORMERR without question or OPT (NSD; Knot
//!   answers some of them normally). TSIG is not supported: a TSIG record is FORMERR.
//! - **EDNS version ≠ 0**: BADVERS with the question, an OPT with extended RCODE 1 and the DO
//!   bit not echoed (NSD; Knot echoes DO).
//! - **DO bit**: echoed in the OPT, nothing else changes (both; no DNSSEC here).
//! - **Our UDP size**: 1232 advertised and never exceeded over UDP ([`EDNS_UDP_SIZE`], both
//!   servers' default); a client's size below 512 counts as 512.
//! - **REFUSED outside our zones**: with the question and, when the client sent EDNS, an
//!   Extended DNS Error "Not Authoritative" (both).
//! - **Opcodes**: NOTIFY → REFUSED (NSD without an ACL), every other non-QUERY opcode →
//!   NOTIMP, without question or OPT (NSD; Knot keeps the question).
//! - **Classes**: IN served; ANY answered like IN but without AA and without SOA/NS in
//!   authority (NSD); CH → REFUSED with the question (NSD answers `version.bind`/`id.server`,
//!   sluice tells nothing); any other class → REFUSED without question (NSD; Knot keeps it).
//! - **Zone transfers**: AXFR over UDP → NOTIMP, AXFR/IXFR over TCP and IXFR over UDP →
//!   REFUSED (NSD without `provide-xfr`).
//! - **CNAME**: followed across all zones served, up to 8 hops or a loop (NSD follows into any
//!   zone it serves until a loop; Knot stops at the zone's edge); the final RCODE is the
//!   target's (NXDOMAIN after a dangling CNAME, both); a CNAME into a delegation gives the
//!   referral with AA set (both).
//! - **Names** are kept lower-case (both): answers spell zone names in lower case, the question
//!   and pointers to it keep the client's case.
//! - **Records without a TTL in a file without `$TTL`** get 3600 (both; `domain` alone would
//!   repeat the previous record's TTL).
//!
//! On a zone covering all of the above, 1660 of 1662 generated queries (every name × 15 types,
//! with and without EDNS) got answers byte-identical to NSD 4.6.1's, and every malformed-query
//! case tried was byte-identical too except CHAOS `version.bind`; Knot differed in 154, all
//! for the reasons listed here.
//! - **Flags**: RD copied, RA/AD/CD and Z cleared, a query's TC ignored (both).
//! - **Per-record TTLs** are served as written (NSD).

pub mod answer;
pub mod app;
mod name;
pub mod zone;

#[cfg(test)]
mod tests;

pub use answer::{Answer, DropWhy, EDNS_UDP_SIZE, Limits, Outcome};
pub use zone::{ZoneError, ZoneFile, ZoneSource, Zones};
