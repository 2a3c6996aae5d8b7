//! The query corpus: a few hundred [`Query`]s generated from the zones, so that every owner
//! is asked for every interesting type under varying flags, EDNS settings, transports and
//! address families, plus the cases an authoritative server must get right beyond lookups
//! (NXDOMAIN, REFUSED, truncation, BADVERS, other classes and opcodes, malformed messages).
//!
//! This module owns which questions are asked and how each is sent; it never sends anything.
//! The corpus is deterministic: the same zones always give the same queries in the same
//! order, so a difference reported once is reported again.

use std::fmt;

use crate::dns::wire::{self, Edns, Name, QueryFlags, Question, build_query, opt_record};
use crate::dns::zone::Zone;
use crate::types::IpFamily;

/// How a query travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram (a truncated reply is kept as it is, not retried over TCP).
    Udp,
    /// A TCP connection.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// A query kdig can make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KdigQuery {
    /// The name, in presentation format (kdig 3.2 lowercases it on the wire).
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// Header flags kdig sets (`qr`, `opcode` and `rcode` are ignored: kdig can't set them).
    pub flags: QueryFlags,
    /// EDNS, or none.
    pub edns: Option<Edns>,
    /// Further kdig switches for EDNS options (`+nsid`, `+cookie`, `+ednsopt=CODE:HEX`).
    pub extra: Vec<String>,
}

/// A query kdig can't make, as the bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawQuery {
    /// What it is, for reports.
    pub label: String,
    /// The message.
    pub bytes: Vec<u8>,
}

/// How a query is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryKind {
    /// With kdig.
    Kdig(KdigQuery),
    /// As raw bytes.
    Raw(RawQuery),
}

/// One query of the corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// To the server's IPv4 or IPv6 address.
    pub family: IpFamily,
    /// Over UDP or TCP.
    pub transport: Transport,
    /// What is sent.
    pub kind: QueryKind,
}

impl fmt::Display for Query {
    /// `@udp4 www.example.test. IN A +norec +edns=0 +bufsize=1232 +do`, or
    /// `@udp6 raw qdcount=2`: what exceptions' query patterns match.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = match self.family {
            IpFamily::V4 => 4,
            IpFamily::V6 => 6,
        };
        write!(f, "@{}{fam} ", self.transport)?;
        match &self.kind {
            QueryKind::Raw(r) => write!(f, "raw {}", r.label),
            QueryKind::Kdig(k) => {
                write!(
                    f,
                    "{} {} {}{}",
                    k.name,
                    wire::class_name(k.qclass),
                    wire::type_name(k.qtype),
                    flags_text(&k.flags)
                )?;
                if let Some(e) = k.edns {
                    f.write_str(&edns_text(&e))?;
                }
                for x in &k.extra {
                    write!(f, " {x}")?;
                }
                Ok(())
            }
        }
    }
}

/// ` +norec +ad …` for the flags that differ from a plain query with RD.
fn flags_text(fl: &QueryFlags) -> String {
    let mut s = String::new();
    if !fl.rd {
        s.push_str(" +norec");
    }
    for (on, t) in [
        (fl.qr, " +qr"),
        (fl.aa, " +aa"),
        (fl.tc, " +tc"),
        (fl.ra, " +ra"),
        (fl.z, " +z"),
        (fl.ad, " +ad"),
        (fl.cd, " +cd"),
    ] {
        if on {
            s.push_str(t);
        }
    }
    if fl.opcode != 0 {
        s.push_str(&format!(" opcode={}", wire::opcode_name(fl.opcode)));
    }
    if fl.rcode != 0 {
        s.push_str(&format!(" rcode={}", fl.rcode));
    }
    s
}

fn edns_text(e: &Edns) -> String {
    let mut s = format!(" +edns={}", e.version);
    if let Some(size) = e.udp_size {
        s.push_str(&format!(" +bufsize={size}"));
    }
    if e.dnssec_ok {
        s.push_str(" +do");
    }
    s
}

/// The ways a generated lookup is sent, taken in turn so that every owner and type meets
/// several of them: both families, both transports, RD on and off, no EDNS and EDNS with
/// small, usual and large sizes, the DO bit, CD and AD.
const PROFILES: [(IpFamily, Transport, bool, Option<Edns>, bool, bool); 8] = {
    use IpFamily::{V4, V6};
    use Transport::{Tcp, Udp};
    const fn e(size: u16, dnssec_ok: bool) -> Option<Edns> {
        Some(Edns {
            version: 0,
            udp_size: Some(size),
            dnssec_ok,
        })
    }
    // (family, transport, rd, edns, ad, cd)
    [
        (V4, Udp, true, None, false, false),
        (V6, Udp, false, e(1232, false), false, false),
        (V4, Tcp, false, None, false, false),
        (V4, Udp, false, e(4096, true), false, false),
        (V6, Udp, true, e(512, false), false, false),
        (V6, Tcp, false, e(1232, true), false, false),
        (V4, Udp, false, e(1232, false), false, true),
        (V6, Udp, false, None, true, false),
    ]
};

/// Types asked at every owner besides its own: the common ones, so most owners also give a
/// NODATA or a CNAME/referral/wildcard answer for a type they lack.
const BASE_TYPES: [u16; 5] = [1, 28, 16, 15, 5];
/// One of these is asked at each owner, in turn.
const ROTATING_TYPES: [u16; 10] = [2, 6, 33, 12, 257, 65280, 255, 43, 65281, 13];
/// Every how many owner × type lookups one is repeated raw with its name in mixed case.
const MIXED_CASE_EVERY: usize = 6;
/// At most this many empty non-terminals per zone (the IPv6 reverse zone has dozens).
const MAX_ENTS_PER_ZONE: usize = 6;
/// How many of the largest RRsets get the truncation series.
const TRUNCATION_SETS: usize = 3;

struct Builder {
    out: Vec<Query>,
    turn: usize,
    raw_id: u16,
}

impl Builder {
    /// A kdig lookup sent the next profile's way.
    fn lookup(&mut self, name: &Name, qtype: u16) -> &KdigQuery {
        let (family, transport, rd, edns, ad, cd) = PROFILES[self.turn % PROFILES.len()];
        self.turn += 1;
        self.kdig(
            family,
            transport,
            name.to_string(),
            qtype,
            1,
            QueryFlags {
                rd,
                ad,
                cd,
                ..Default::default()
            },
            edns,
            &[],
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn kdig(
        &mut self,
        family: IpFamily,
        transport: Transport,
        name: String,
        qtype: u16,
        qclass: u16,
        flags: QueryFlags,
        edns: Option<Edns>,
        extra: &[&str],
    ) -> &KdigQuery {
        self.out.push(Query {
            family,
            transport,
            kind: QueryKind::Kdig(KdigQuery {
                name,
                qtype,
                qclass,
                flags,
                edns,
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            }),
        });
        match &self.out.last().expect("just pushed").kind {
            QueryKind::Kdig(k) => k,
            QueryKind::Raw(_) => unreachable!(),
        }
    }

    fn next_id(&mut self) -> u16 {
        self.raw_id = self.raw_id.wrapping_add(1);
        self.raw_id
    }

    /// A well-formed query sent raw (for what kdig can't: mixed case, opcodes, QR).
    fn raw_question(
        &mut self,
        family: IpFamily,
        transport: Transport,
        question: Question,
        flags: QueryFlags,
        edns: Option<Edns>,
    ) {
        let id = self.next_id();
        let bytes = build_query(id, flags, &question, edns, &[]);
        let mut label = format!("{question}{}", flags_text(&flags));
        if let Some(e) = edns {
            label.push_str(&edns_text(&e));
        }
        self.raw(family, transport, label, bytes);
    }

    fn raw(&mut self, family: IpFamily, transport: Transport, label: String, bytes: Vec<u8>) {
        self.out.push(Query {
            family,
            transport,
            kind: QueryKind::Raw(RawQuery { label, bytes }),
        });
    }
}

/// The corpus for `zones` (the harness's are [`crate::dns::test_zones`]); see the module
/// docs. The "main" zone is the one with the most records: the special cases (EDNS, classes,
/// opcodes, malformed messages) ask about its apex and its first host with an A record.
pub fn corpus(zones: &[Zone]) -> Vec<Query> {
    use IpFamily::{V4, V6};
    use Transport::{Tcp, Udp};
    let mut b = Builder {
        out: Vec::new(),
        turn: 0,
        raw_id: 0x5100,
    };
    let Some(main) = zones.iter().max_by_key(|z| z.records().len()) else {
        return Vec::new();
    };
    let apex = main.origin().clone();
    let host = main
        .owners()
        .into_iter()
        .find(|o| o != &apex && !o.is_wildcard() && main.types_at(o).contains(&1))
        .unwrap_or_else(|| apex.clone());
    let q = |name: &Name, qtype: u16| Question {
        name: name.clone(),
        qtype,
        qclass: 1,
    };
    let plain = QueryFlags::default();
    let rd = QueryFlags {
        rd: true,
        ..Default::default()
    };

    // 1. Every owner × (its own types, the base types, one rotating type); wildcard owners
    //    also under two names they synthesise. Every MIXED_CASE_EVERY-th lookup is repeated
    //    raw with the name in mixed case (kdig lowercases names).
    let mut lookups = 0;
    let mut rotate = 0;
    for zone in zones {
        for owner in zone.owners() {
            let mut names = vec![owner.clone()];
            if owner.is_wildcard() {
                let parent = owner.parent().expect("a wildcard has a parent");
                names.push(parent.prepend(b"synth").expect("short name"));
                names.push(
                    parent
                        .prepend(b"b")
                        .and_then(|n| n.prepend(b"a"))
                        .expect("short name"),
                );
            }
            let mut types = zone.types_at(&owner);
            for t in BASE_TYPES {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
            let extra = ROTATING_TYPES[rotate % ROTATING_TYPES.len()];
            rotate += 1;
            if !types.contains(&extra) {
                types.push(extra);
            }
            for name in &names {
                for &t in &types {
                    let k = b.lookup(name, t).clone();
                    lookups += 1;
                    if lookups % MIXED_CASE_EVERY == 0 {
                        let last = b.out.last().expect("just pushed").clone();
                        b.raw_question(
                            last.family,
                            last.transport,
                            Question {
                                name: name.mixed_case(lookups % 12 == 0),
                                qtype: t,
                                qclass: 1,
                            },
                            k.flags,
                            k.edns,
                        );
                    }
                }
            }
            // A name below every owner: NXDOMAIN, or a referral below a cut, or a
            // synthesised answer below a wildcard's parent.
            let below = owner.prepend(b"nx").expect("short name");
            b.lookup(&below, [1, 28, 16][rotate % 3]);
        }
        // 2. Empty non-terminals: NODATA (not NXDOMAIN, not the wildcard).
        for (i, ent) in zone
            .empty_non_terminals()
            .into_iter()
            .take(MAX_ENTS_PER_ZONE)
            .enumerate()
        {
            b.lookup(&ent, [1, 16, 28][i % 3]);
        }
    }

    // 3. Truncation: the largest RRsets over UDP without EDNS (512 octets), with EDNS sizes
    //    512, 1232 and 4096, and over TCP, where they must come complete.
    let mut sets: Vec<(usize, Name, u16)> = Vec::new();
    for zone in zones {
        for owner in zone.owners() {
            for t in zone.types_at(&owner) {
                let size: usize = zone
                    .records()
                    .iter()
                    .filter(|r| r.owner.eq_ignore_case(&owner) && r.rtype == t)
                    .map(|r| r.rdata.len() + 12)
                    .sum();
                sets.push((size, owner.clone(), t));
            }
        }
    }
    sets.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut truncation: Vec<(Name, u16)> = sets
        .into_iter()
        .take(TRUNCATION_SETS)
        .map(|(_, n, t)| (n, t))
        .collect();
    truncation.push((apex.clone(), 255));
    for (i, (name, t)) in truncation.iter().enumerate() {
        let fam = if i % 2 == 0 { V4 } else { V6 };
        for (transport, edns) in [
            (Udp, None),
            (Udp, Some(Edns::v0(512))),
            (Udp, Some(Edns::v0(1232))),
            (Udp, Some(Edns::v0(4096))),
            (Tcp, None),
            (Tcp, Some(Edns::v0(1232))),
        ] {
            b.kdig(fam, transport, name.to_string(), *t, 1, plain, edns, &[]);
        }
    }

    // 4. Outside every zone: REFUSED. The parent of each zone, a name that ends like a zone
    //    but is not below it (labels, not string suffixes), the root, a foreign name.
    let mut outside: Vec<String> = vec![".".into(), "example.com.".into(), "arpa.".into()];
    for zone in zones {
        let o = zone.origin();
        if let Some(p) = o.parent() {
            outside.push(p.to_string());
        }
        outside.push(format!("x{o}"));
    }
    let mut seen = Vec::new();
    outside.retain(|n| {
        let fresh = !seen.contains(n);
        seen.push(n.clone());
        fresh
    });
    for (i, name) in outside.iter().enumerate() {
        let fam = if i % 2 == 0 { V4 } else { V6 };
        let t = [6, 1, 2][i % 3];
        b.kdig(fam, Udp, name.clone(), t, 1, plain, None, &[]);
    }
    b.kdig(V4, Tcp, "example.com.".into(), 1, 1, rd, None, &[]);

    // 5. EDNS: unknown versions (BADVERS, also for names that would be NXDOMAIN or REFUSED),
    //    sizes below 512 and at the maximum, the DO bit on negative answers, options the
    //    servers do not implement (NSID, cookies, an unassigned code, padding).
    let nx = apex.prepend(b"no-such-name").expect("short name");
    let v = |version: u8, size: u16| {
        Some(Edns {
            version,
            udp_size: Some(size),
            dnssec_ok: false,
        })
    };
    let host_s = host.to_string();
    let apex_s = apex.to_string();
    let nx_s = nx.to_string();
    for (fam, tr, name, t, edns, extra) in [
        (V4, Udp, &host_s, 1, v(1, 1232), &[][..]),
        (V6, Udp, &nx_s, 1, v(1, 1232), &[]),
        (V4, Udp, &"example.com.".to_string(), 1, v(1, 1232), &[]),
        (V4, Tcp, &apex_s, 6, v(1, 1232), &[]),
        (V6, Udp, &host_s, 28, v(255, 4096), &[]),
        (V4, Udp, &host_s, 1, v(0, 0), &[]),
        (V4, Udp, &host_s, 1, v(0, 100), &[]),
        (V6, Udp, &host_s, 1, v(0, 65535), &[]),
        (
            V4,
            Udp,
            &nx_s,
            1,
            Some(Edns {
                version: 0,
                udp_size: Some(1232),
                dnssec_ok: true,
            }),
            &[],
        ),
        (V4, Udp, &host_s, 1, v(0, 1232), &["+nsid"]),
        (V6, Udp, &host_s, 1, v(0, 1232), &["+ednsopt=65001:abcd"]),
        (V4, Tcp, &host_s, 1, v(0, 1232), &["+padding=128"]),
        (
            V4,
            Udp,
            &apex_s,
            6,
            v(0, 1232),
            &["+cookie=0102030405060708"],
        ),
    ] {
        b.kdig(fam, tr, name.clone(), t, 1, plain, edns, extra);
    }

    // 6. Other classes: CHAOS (the version.bind family: the servers are configured not to
    //    tell), HESIOD, ANY, and a zone's own name in another class.
    for (i, (name, class, t)) in [
        ("version.bind.", 3, 16),
        ("id.server.", 3, 16),
        ("hostname.bind.", 3, 16),
        (apex_s.as_str(), 3, 6),
        (apex_s.as_str(), 4, 6),
        (host_s.as_str(), 255, 1),
        (host_s.as_str(), 254, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let fam = if i % 2 == 0 { V4 } else { V6 };
        b.kdig(fam, Udp, name.into(), t, class, plain, None, &[]);
    }

    // 7. Meta and DNSSEC types on an unsigned zone: zone transfers (over UDP and TCP), type
    //    0, OPT and TSIG as QTYPE, RRSIG/NSEC/DNSKEY/DS/NSEC3PARAM, DS at a cut (answered by
    //    the parent side, authoritatively).
    let cut = main.delegations().into_iter().next();
    let mut meta: Vec<(IpFamily, Transport, String, u16)> = vec![
        (V4, Udp, apex_s.clone(), 252),
        (V6, Tcp, apex_s.clone(), 252),
        (V4, Udp, apex_s.clone(), 251),
        (V4, Udp, host_s.clone(), 0),
        (V6, Udp, host_s.clone(), 41),
        (V4, Udp, host_s.clone(), 250),
        (V4, Udp, apex_s.clone(), 46),
        (V6, Udp, apex_s.clone(), 47),
        (V4, Tcp, apex_s.clone(), 48),
        (V4, Udp, apex_s.clone(), 43),
        (V6, Udp, apex_s.clone(), 51),
        (V4, Udp, apex_s.clone(), 65535),
    ];
    if let Some(cut) = &cut {
        meta.push((V4, Udp, cut.to_string(), 43));
        meta.push((V6, Tcp, cut.to_string(), 43));
        meta.push((V4, Udp, cut.to_string(), 2));
    }
    for (fam, tr, name, t) in meta {
        b.kdig(fam, tr, name, t, 1, plain, None, &[]);
    }

    // 8. Header bits a query should not carry (AA, TC, RA, Z): ignored, not echoed.
    for (i, flags) in [
        QueryFlags { aa: true, ..rd },
        QueryFlags { tc: true, ..rd },
        QueryFlags { ra: true, ..rd },
        QueryFlags { z: true, ..rd },
        QueryFlags {
            ad: true,
            cd: true,
            ..rd
        },
    ]
    .into_iter()
    .enumerate()
    {
        let fam = if i % 2 == 0 { V4 } else { V6 };
        b.kdig(
            fam,
            Udp,
            host_s.clone(),
            1,
            1,
            flags,
            Some(Edns::v0(1232)),
            &[],
        );
    }

    // 9. Raw: opcodes other than QUERY, a response sent as a query, a nonzero RCODE.
    for (i, opcode) in [1u8, 2, 3, 4, 5, 6, 15].into_iter().enumerate() {
        let fam = if i % 2 == 0 { V4 } else { V6 };
        // NOTIFY and UPDATE name the zone (and NOTIFY sets AA, as senders do).
        let question = if matches!(opcode, 4 | 5) {
            q(&apex, 6)
        } else {
            q(&host, 1)
        };
        let flags = QueryFlags {
            opcode,
            aa: opcode == 4,
            ..Default::default()
        };
        b.raw_question(fam, Udp, question, flags, None);
    }
    b.raw_question(
        V4,
        Tcp,
        q(&apex, 6),
        QueryFlags {
            opcode: 4,
            aa: true,
            ..Default::default()
        },
        None,
    );
    for (fam, flags) in [
        (V4, QueryFlags { qr: true, ..rd }),
        (
            V6,
            QueryFlags {
                qr: true,
                aa: true,
                ..Default::default()
            },
        ),
        (V4, QueryFlags { rcode: 5, ..rd }),
    ] {
        b.raw_question(fam, Udp, q(&host, 1), flags, None);
    }

    // 10. Raw: malformed messages. Each is built from a good query and broken one way.
    let good = |b: &mut Builder, edns: Option<Edns>| {
        let id = b.next_id();
        build_query(id, QueryFlags::default(), &q(&host, 1), edns, &[])
    };
    let set_word =
        |m: &mut Vec<u8>, at: usize, v: u16| m[at..at + 2].copy_from_slice(&v.to_be_bytes());
    let qname_end = 12 + host.wire_len();
    let mut malformed: Vec<(&str, Vec<u8>)> = Vec::new();
    {
        let m = good(&mut b, None);
        malformed.push(("header only, 11 octets", m[..11].to_vec()));
        let mut h = m[..12].to_vec();
        set_word(&mut h, 4, 0);
        malformed.push(("header only, qdcount=0", h));
    }
    {
        let mut m = good(&mut b, Some(Edns::v0(1232)));
        set_word(&mut m, 4, 0);
        m.drain(12..qname_end + 4);
        malformed.push(("qdcount=0 with an OPT", m));
    }
    {
        let mut m = good(&mut b, None);
        set_word(&mut m, 4, 2);
        let mut second = apex.to_wire();
        second.extend_from_slice(&[0, 6, 0, 1]);
        m.extend_from_slice(&second);
        malformed.push(("qdcount=2", m));
    }
    {
        let m = good(&mut b, None);
        malformed.push(("question cut inside the name", m[..qname_end - 3].to_vec()));
        malformed.push(("question without type and class", m[..qname_end].to_vec()));
    }
    {
        let mut m = good(&mut b, None);
        m[12] |= 0x40;
        malformed.push(("label type 0x40 (extended) in the question", m));
        let mut m = good(&mut b, None);
        m[12] |= 0x80;
        malformed.push(("label type 0x80 (reserved) in the question", m));
    }
    {
        let mut m = good(&mut b, None);
        m.splice(12..qname_end, [0xc0, 12]);
        malformed.push(("compression pointer to itself in the question", m));
        let mut m = good(&mut b, None);
        m.splice(12..qname_end, [0xc0, 0xff]);
        malformed.push(("compression pointer past the end", m));
    }
    {
        let id = b.next_id();
        let mut m = build_query(id, QueryFlags::default(), &q(&apex, 1), None, &[]);
        let mut long = Vec::new();
        for _ in 0..4 {
            long.push(63u8);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&apex.to_wire());
        m.splice(12..12 + apex.wire_len(), long);
        malformed.push(("a name of over 255 octets", m));
    }
    {
        let mut m = good(&mut b, None);
        m.extend_from_slice(&[0xde, 0xad]);
        malformed.push(("two octets after the question", m));
        let mut m = good(&mut b, None);
        set_word(&mut m, 6, 1);
        malformed.push(("ancount=1 and no record", m));
        let mut m = good(&mut b, None);
        set_word(&mut m, 8, 1);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        malformed.push(("an A record in the authority section", m));
    }
    {
        let mut m = good(&mut b, Some(Edns::v0(1232)));
        set_word(&mut m, 10, 2);
        m.extend_from_slice(&opt_record(Edns::v0(4096), &[]));
        malformed.push(("two OPT records", m));
        let mut m = good(&mut b, None);
        set_word(&mut m, 10, 1);
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&opt_record(Edns::v0(1232), &[])[1..]);
        malformed.push(("OPT with a non-root owner", m));
        let mut m = good(&mut b, Some(Edns::v0(1232)));
        // One option, code 65001, claiming 8 octets of which 2 are there; RDLENGTH 6.
        let n = m.len();
        set_word(&mut m, n - 2, 6);
        m.extend_from_slice(&[0xfd, 0xe9, 0, 8, 1, 2]);
        malformed.push(("OPT option longer than its record", m));
        let mut m = good(&mut b, None);
        set_word(&mut m, 6, 1);
        m.extend_from_slice(&opt_record(Edns::v0(1232), &[]));
        malformed.push(("OPT in the answer section", m));
    }
    for (i, (label, bytes)) in malformed.into_iter().enumerate() {
        let fam = if i % 2 == 0 { V4 } else { V6 };
        b.raw(fam, Udp, label.to_owned(), bytes);
    }
    {
        let mut m = good(&mut b, None);
        set_word(&mut m, 4, 2);
        let mut second = apex.to_wire();
        second.extend_from_slice(&[0, 6, 0, 1]);
        m.extend_from_slice(&second);
        b.raw(V6, Tcp, "qdcount=2".into(), m);
    }
    b.out
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::dns::test_zones;

    #[test]
    fn the_corpus_covers_the_test_zones() {
        let zones = test_zones().unwrap();
        let c = corpus(&zones);
        assert!((300..=900).contains(&c.len()), "{} queries", c.len());
        assert_eq!(c, corpus(&zones), "deterministic");
        let texts: Vec<String> = c.iter().map(ToString::to_string).collect();
        let has = |needle: &str| texts.iter().any(|t| t.contains(needle));
        for needle in [
            "@udp4 www.example.test. IN A",
            "@tcp6 ",
            "@udp6 ",
            "+edns=1",
            "+do",
            "+norec",
            "+cd",
            "synth.wild.example.test.",
            "nx.example.test.",
            "ent.example.test.",
            "manya.example.test. IN A",
            "bigtxt.example.test. IN TXT",
            "xexample.test.",
            "version.bind. CH TXT",
            "raw qdcount=2",
            "opcode=NOTIFY",
            "raw ns1.example.test. IN A +qr",
            "TYPE65280",
            "80.2.0.192.in-addr.arpa. IN PTR",
        ] {
            assert!(has(needle), "no query with {needle:?}");
        }
        let mixed = c
            .iter()
            .filter(|q| match &q.kind {
                QueryKind::Raw(r) => {
                    r.label.chars().any(|ch| ch.is_ascii_uppercase())
                        && r.label.chars().any(|ch| ch.is_ascii_lowercase())
                }
                QueryKind::Kdig(_) => false,
            })
            .count();
        assert!(mixed >= 40, "{mixed} mixed-case queries");
        // Every raw query's bytes say the same as its label where it is well-formed.
        for q in &c {
            if let QueryKind::Raw(r) = &q.kind
                && r.label.contains(" IN ")
            {
                let m = wire::Message::parse(&r.bytes).unwrap();
                assert!(r.label.starts_with(&m.question[0].to_string()), "{r:?}");
            }
        }
    }
}
