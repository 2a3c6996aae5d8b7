//! Tests of the answer engine against a zone of our own, with a small independent message
//! parser as the oracle (and `domain`'s message parser in the property tests); a few answers
//! are compared byte for byte with what NSD 4.6.1 sent for the same zone and query.

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The zone the reference servers were run on (NSD 4.6.1, Knot 3.2.6), plus `tobig`.
const EXAMPLE_COM: &str = r#"$ORIGIN example.com.
$TTL 3600
@       IN SOA ns1.example.com. hostmaster.example.com. ( 2024010101 7200 3600 1209600 300 )
        IN NS ns1
        IN NS ns2.example.net.
        IN MX 10 mail
        IN MX 20 mail.example.net.
        IN A 192.0.2.1
        IN AAAA 2001:db8::1
        IN TXT "v=spf1 -all"
        IN CAA 0 issue "letsencrypt.org"
ns1     IN A 192.0.2.53
        IN AAAA 2001:db8::53
mail    IN A 192.0.2.25
Www     IN CNAME web
web     IN A 192.0.2.80
        IN A 192.0.2.81
        IN AAAA 2001:db8::80
alias-ext IN CNAME www.example.net.
chain1  IN CNAME chain2
chain2  IN CNAME www
loop1   IN CNAME loop2
loop2   IN CNAME loop1
dangling IN CNAME nothere
to-sub  IN CNAME host.sub
*.wild  IN A 192.0.2.99
*.wild  IN TXT "wild"
host.wild IN A 192.0.2.98
*.wc    IN CNAME web
*.wmx   IN MX 10 mail
a.b.ent IN A 192.0.2.77
*.x.went IN A 192.0.2.78
_sip._udp IN SRV 10 60 5060 sip
_sip._tcp IN SRV 10 60 5060 sip.example.net.
sip     IN A 192.0.2.60
ptr     IN PTR www.example.com.
unk     IN TYPE65280 \# 4 0a000001
sub     IN NS ns.sub
        IN NS ns.example.net.
ns.sub  IN A 192.0.2.70
        IN AAAA 2001:db8::70
ext     IN NS ns.example.net.
big     IN TXT "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "1123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "2123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "3123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "4123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "5123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
many    IN MX 10 m1
        IN MX 10 m2
        IN MX 10 m3
        IN MX 10 m4
        IN MX 10 m5
        IN MX 10 m6
        IN MX 10 m7
        IN MX 10 m8
m1      IN AAAA 2001:db8::1:1
m2      IN AAAA 2001:db8::1:2
m3      IN AAAA 2001:db8::1:3
m4      IN AAAA 2001:db8::1:4
m5      IN AAAA 2001:db8::1:5
m6      IN AAAA 2001:db8::1:6
m7      IN AAAA 2001:db8::1:7
m8      IN AAAA 2001:db8::1:8
m1      IN A 192.0.2.101
m2      IN A 192.0.2.102
m3      IN A 192.0.2.103
m4      IN A 192.0.2.104
m5      IN A 192.0.2.105
m6      IN A 192.0.2.106
m7      IN A 192.0.2.107
m8      IN A 192.0.2.108
tobig   IN CNAME big
deleg   IN NS ns.deleg
ns.deleg IN A 192.0.2.90
to-org  IN CNAME www.example.org.
"#;

/// A second zone (no $ORIGIN: the name comes from the caller) and a child zone also served.
const EXAMPLE_ORG: &str = "@ 600 IN SOA ns.example.com. h.example.com. 7 1 1 1 60\n\
                           @ IN NS ns1.example.com.\n\
                           www IN A 198.51.100.1\n";
const DELEG: &str = "deleg.example.com. 300 IN SOA ns.deleg.example.com. h.example.com. 1 1 1 1 30\n\
                     @ IN NS ns\n\
                     ns IN A 192.0.2.90\n\
                     www IN A 192.0.2.91\n";

fn zones() -> Zones {
    Zones::from_sources(&[
        ZoneSource {
            path: Path::new("zones/example.com.zone"),
            origin: None,
            text: EXAMPLE_COM,
        },
        ZoneSource {
            path: Path::new("zones/example.org.zone"),
            origin: Some("example.org"),
            text: EXAMPLE_ORG,
        },
        ZoneSource {
            path: Path::new("zones/deleg.zone"),
            origin: None,
            text: DELEG,
        },
    ])
    .expect("test zones load")
}

fn wire(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

/// A query: id 0x1234, RD, one question, optionally an OPT (size, DO).
fn query(name: &str, qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut q = vec![
        0x12,
        0x34,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        edns.is_some() as u8,
    ];
    q.extend(wire(name));
    q.extend(qtype.to_be_bytes());
    q.extend(1u16.to_be_bytes());
    if let Some((size, dnssec_ok)) = edns {
        q.push(0);
        q.extend(41u16.to_be_bytes());
        q.extend(size.to_be_bytes());
        q.extend([0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    q
}

const UDP: Limits = Limits {
    udp_payload_max: 1472,
    tcp: false,
};
const TCP: Limits = Limits {
    udp_payload_max: 65535,
    tcp: true,
};

/// A parsed response: the oracle. Records as text (`owner ttl TYPE rdata`), names lower-case.
#[derive(Debug)]
struct Msg {
    id: u16,
    flags: u16,
    rcode: u16,
    question: Option<(Vec<u8>, u16, u16)>,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
    opt: Option<(u16, u8, u8, u16, Vec<u8>)>,
}

impl Msg {
    fn aa(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    fn tc(&self) -> bool {
        self.flags & 0x0200 != 0
    }
}

fn read_name(m: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut s = String::new();
    let mut end = None;
    let mut hops = 0;
    loop {
        let l = *m.get(at)? as usize;
        if l & 0xc0 == 0xc0 {
            let p = ((l & 0x3f) << 8) | *m.get(at + 1)? as usize;
            end.get_or_insert(at + 2);
            // pointers must point backwards
            if p >= at || hops > 64 {
                return None;
            }
            hops += 1;
            at = p;
            continue;
        }
        if l & 0xc0 != 0 {
            return None;
        }
        if l == 0 {
            if s.is_empty() {
                s.push('.');
            }
            return Some((s.to_ascii_lowercase(), end.unwrap_or(at + 1)));
        }
        s.push_str(&String::from_utf8_lossy(m.get(at + 1..at + 1 + l)?));
        s.push('.');
        at += 1 + l;
        if s.len() > 255 {
            return None;
        }
    }
}

fn type_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        257 => "CAA".into(),
        _ => format!("TYPE{t}"),
    }
}

fn parse(m: &[u8]) -> Option<Msg> {
    let r16 =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?])) };
    let (id, flags) = (r16(0)?, r16(2)?);
    let counts = [r16(4)?, r16(6)?, r16(8)?, r16(10)?];
    let mut at = 12;
    let mut question = None;
    for _ in 0..counts[0] {
        let (n, e) = read_name(m, at)?;
        question = Some((m.get(12..e)?.to_vec(), r16(e)?, r16(e + 2)?));
        let _ = n;
        at = e + 4;
    }
    let mut secs: [Vec<String>; 3] = Default::default();
    let mut opt = None;
    for (si, &count) in counts[1..].iter().enumerate() {
        for _ in 0..count {
            let (owner, e) = read_name(m, at)?;
            let (t, class) = (r16(e)?, r16(e + 2)?);
            let ttl = u32::from_be_bytes(m.get(e + 4..e + 8)?.try_into().ok()?);
            let rdlen = r16(e + 8)? as usize;
            let rd0 = e + 10;
            let rd = m.get(rd0..rd0 + rdlen)?;
            at = rd0 + rdlen;
            if t == 41 {
                if si != 2 || opt.is_some() || owner != "." {
                    return None;
                }
                opt = Some((
                    class,
                    (ttl >> 24) as u8,
                    (ttl >> 16) as u8,
                    ttl as u16,
                    rd.to_vec(),
                ));
                continue;
            }
            if class != 1 {
                return None;
            }
            let name_at = |off: usize| -> Option<String> {
                let (n, e) = read_name(m, rd0 + off)?;
                (e <= rd0 + rdlen).then_some(n)
            };
            let text = match t {
                1 => Ipv4Addr::from(<[u8; 4]>::try_from(rd).ok()?).to_string(),
                28 => Ipv6Addr::from(<[u8; 16]>::try_from(rd).ok()?).to_string(),
                2 | 5 | 12 => name_at(0)?,
                15 => format!("{} {}", u16::from_be_bytes([rd[0], rd[1]]), name_at(2)?),
                33 => format!(
                    "{} {} {} {}",
                    u16::from_be_bytes([rd[0], rd[1]]),
                    u16::from_be_bytes([rd[2], rd[3]]),
                    u16::from_be_bytes([rd[4], rd[5]]),
                    name_at(6)?
                ),
                6 => {
                    let (mname, e1) = read_name(m, rd0)?;
                    let (rname, e2) = read_name(m, e1)?;
                    let nums = m.get(e2..e2 + 20)?;
                    if e2 + 20 != rd0 + rdlen {
                        return None;
                    }
                    let n: Vec<String> = nums
                        .chunks(4)
                        .map(|c| u32::from_be_bytes(c.try_into().unwrap()).to_string())
                        .collect();
                    format!("{mname} {rname} {}", n.join(" "))
                }
                16 => {
                    let mut parts = Vec::new();
                    let mut i = 0;
                    while i < rd.len() {
                        let l = rd[i] as usize;
                        parts.push(String::from_utf8_lossy(rd.get(i + 1..i + 1 + l)?).into_owned());
                        i += 1 + l;
                    }
                    format!("{:?}", parts.join(""))
                }
                _ => format!(
                    "\\# {} {}",
                    rd.len(),
                    rd.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ),
            };
            secs[si].push(format!("{owner} {ttl} {} {text}", type_name(t)));
        }
    }
    let [answer, authority, additional] = secs;
    let rcode = (flags & 0xf) | opt.as_ref().map_or(0, |o| u16::from(o.1) << 4);
    Some(Msg {
        id,
        flags,
        rcode,
        question,
        answer,
        authority,
        additional,
        opt,
    })
}

fn ask_with(z: &Zones, q: &[u8], limits: Limits) -> (Answer, Msg) {
    let mut out = [0xa5u8; 4096];
    let a = z.answer(q, limits, &mut out);
    assert!(a.len > 0, "no response: {a:?}");
    let m = parse(&out[..a.len]).unwrap_or_else(|| panic!("unparsable: {:02x?}", &out[..a.len]));
    (a, m)
}

fn ask(z: &Zones, name: &str, qtype: u16) -> (Answer, Msg) {
    ask_with(z, &query(name, qtype, None), UDP)
}

const APEX_NS: [&str; 2] = [
    "example.com. 3600 NS ns1.example.com.",
    "example.com. 3600 NS ns2.example.net.",
];
const NS1_GLUE: [&str; 2] = [
    "ns1.example.com. 3600 A 192.0.2.53",
    "ns1.example.com. 3600 AAAA 2001:db8::53",
];
const NEG_SOA: &str = "example.com. 300 SOA ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300";

#[test]
fn zones_are_send_sync_and_summarised() {
    fn check<T: Send + Sync>() {}
    check::<Zones>();
    let z = zones();
    assert_eq!(z.len(), 3);
    assert_eq!(
        z.summary(),
        vec![
            ("example.com.".to_string(), 2024010101),
            ("example.org.".to_string(), 7),
            ("deleg.example.com.".to_string(), 1)
        ]
    );
}

#[test]
fn positive_answer_has_aa_authority_ns_and_glue() {
    let z = zones();
    let (a, m) = ask(&z, "example.com", 1);
    assert_eq!(a.outcome, Outcome::Answered);
    assert!(m.aa() && !m.tc());
    assert_eq!(m.id, 0x1234);
    assert_eq!(m.flags & 0x0100, 0x0100, "RD copied");
    assert_eq!(m.flags & 0x00f0, 0, "RA, Z, AD, CD clear");
    assert_eq!(m.answer, ["example.com. 3600 A 192.0.2.1"]);
    assert_eq!(m.authority, APEX_NS);
    assert_eq!(m.additional, NS1_GLUE);
}

#[test]
fn identical_to_nsd_bytes() {
    // Captured from NSD 4.6.1 serving EXAMPLE_COM (without the last four records).
    let z = zones();
    let cases: [(&str, &str); 3] = [
        (
            "123401000001000000000000076578616d706c6503636f6d0000010001",
            "123485000001000100020002076578616d706c6503636f6d0000010001c00c0001000100000e100004c0000201c00c0002000100000e100006036e7331c00cc00c0002000100000e100011036e7332076578616d706c65036e657400c0390001000100000e100004c0000235c039001c000100000e10001020010db8000000000000000000000053",
        ),
        (
            "123401000001000000000001026e78076578616d706c6503636f6d000001000100002904d00000ffff0000",
            "123485030001000000010001026e78076578616d706c6503636f6d0000010001c00f000600010000012c0027036e7331c00f0a686f73746d6173746572c00f78a3f17500001c2000000e10001275000000012c00002904d0000080000000",
        ),
        (
            "123401000001000000000000076578616d706c6503636f6d0000fe0001",
            "123485000001000000010000076578616d706c6503636f6d0000fe0001c00c000600010000012c0027036e7331c00c0a686f73746d6173746572c00c78a3f17500001c2000000e10001275000000012c",
        ),
    ];
    for (q, want) in cases {
        let q = hex(q);
        let mut out = [0u8; 4096];
        let a = z.answer(&q, UDP, &mut out);
        assert_eq!(
            out[..a.len]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            want
        );
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn question_case_is_echoed_and_lookup_ignores_case() {
    let z = zones();
    let q = query("wWw.ExAmple.CoM", 1, None);
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(m.question.unwrap().0, wire("wWw.ExAmple.CoM"));
    assert_eq!(m.answer[0], "www.example.com. 3600 CNAME web.example.com.");
}

#[test]
fn cname_chain_is_followed_in_the_answer() {
    let z = zones();
    let (_, m) = ask(&z, "chain1.example.com", 1);
    assert_eq!(
        m.answer,
        [
            "chain1.example.com. 3600 CNAME chain2.example.com.",
            "chain2.example.com. 3600 CNAME www.example.com.",
            "www.example.com. 3600 CNAME web.example.com.",
            "web.example.com. 3600 A 192.0.2.80",
            "web.example.com. 3600 A 192.0.2.81",
        ]
    );
    assert_eq!(m.authority, APEX_NS);
    // NODATA after a CNAME: the CNAME and the SOA.
    let (a, m) = ask(&z, "www.example.com", 16);
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(m.answer, ["www.example.com. 3600 CNAME web.example.com."]);
    assert_eq!(m.authority, [NEG_SOA]);
    // Asking for the CNAME itself does not follow it.
    let (_, m) = ask(&z, "www.example.com", 5);
    assert_eq!(m.answer, ["www.example.com. 3600 CNAME web.example.com."]);
}

#[test]
fn cname_loops_dangling_and_external_targets() {
    let z = zones();
    let (a, m) = ask(&z, "loop1.example.com", 1);
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(m.answer.len(), 2);
    assert!(m.authority.is_empty());
    let (a, m) = ask(&z, "dangling.example.com", 1);
    assert_eq!(a.outcome, Outcome::NxDomain);
    assert_eq!(m.rcode, 3);
    assert!(m.aa());
    assert_eq!(
        m.answer,
        ["dangling.example.com. 3600 CNAME nothere.example.com."]
    );
    assert_eq!(m.authority, [NEG_SOA]);
    let (a, m) = ask(&z, "alias-ext.example.com", 1);
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(
        m.answer,
        ["alias-ext.example.com. 3600 CNAME www.example.net."]
    );
    assert!(m.authority.is_empty() && m.aa());
    // Into another zone we serve: followed, that zone's NS in authority.
    let (_, m) = ask(&z, "to-org.example.com", 1);
    assert_eq!(
        m.answer,
        [
            "to-org.example.com. 3600 CNAME www.example.org.",
            "www.example.org. 3600 A 198.51.100.1"
        ]
    );
    assert_eq!(m.authority, ["example.org. 3600 NS ns1.example.com."]);
}

#[test]
fn nxdomain_and_nodata_carry_the_soa_with_the_negative_ttl() {
    let z = zones();
    let (a, m) = ask(&z, "nothere.example.com", 1);
    assert_eq!((a.outcome, m.rcode, m.aa()), (Outcome::NxDomain, 3, true));
    assert!(m.answer.is_empty());
    assert_eq!(m.authority, [NEG_SOA]);
    let (a, m) = ask(&z, "web.example.com", 16);
    assert_eq!((a.outcome, m.rcode, m.aa()), (Outcome::NoData, 0, true));
    assert_eq!(m.authority, [NEG_SOA]);
    // The SOA's own TTL when asked for.
    let (_, m) = ask(&z, "example.com", 6);
    assert_eq!(
        m.answer,
        [
            "example.com. 3600 SOA ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300"
        ]
    );
    // A zone whose SOA TTL is below its minimum: the TTL wins.
    let (_, m) = ask(&z, "nx.deleg.example.com", 1);
    assert!(m.authority[0].starts_with("deleg.example.com. 30 SOA "));
}

#[test]
fn empty_non_terminals_exist() {
    let z = zones();
    for n in ["ent.example.com", "b.ent.example.com", "x.went.example.com"] {
        let (a, m) = ask(&z, n, 1);
        assert_eq!(a.outcome, Outcome::NoData, "{n}");
        assert_eq!(m.authority, [NEG_SOA]);
    }
    let (a, _) = ask(&z, "c.b.ent.example.com", 1);
    assert_eq!(a.outcome, Outcome::NxDomain);
}

#[test]
fn wildcards_follow_rfc_4592() {
    let z = zones();
    let (a, m) = ask(&z, "Foo.wild.example.com", 1);
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(m.answer, ["foo.wild.example.com. 3600 A 192.0.2.99"]);
    let (_, m) = ask(&z, "a.b.wild.example.com", 16);
    assert_eq!(m.answer, ["a.b.wild.example.com. 3600 TXT \"wild\""]);
    // The wildcard matches, but not this type: NODATA.
    let (a, _) = ask(&z, "foo.wild.example.com", 15);
    assert_eq!(a.outcome, Outcome::NoData);
    // The closest encloser is host.wild, which has no wildcard child.
    let (a, _) = ask(&z, "x.host.wild.example.com", 1);
    assert_eq!(a.outcome, Outcome::NxDomain);
    // An existing name is never wildcard-matched.
    let (_, m) = ask(&z, "host.wild.example.com", 1);
    assert_eq!(m.answer, ["host.wild.example.com. 3600 A 192.0.2.98"]);
    // A wildcard below an empty non-terminal.
    let (_, m) = ask(&z, "q.x.went.example.com", 1);
    assert_eq!(m.answer, ["q.x.went.example.com. 3600 A 192.0.2.78"]);
    // Wildcard CNAME, followed.
    let (_, m) = ask(&z, "foo.wc.example.com", 1);
    assert_eq!(
        m.answer,
        [
            "foo.wc.example.com. 3600 CNAME web.example.com.",
            "web.example.com. 3600 A 192.0.2.80",
            "web.example.com. 3600 A 192.0.2.81"
        ]
    );
    // Wildcard MX with its additional data.
    let (_, m) = ask(&z, "foo.wmx.example.com", 15);
    assert_eq!(
        m.answer,
        ["foo.wmx.example.com. 3600 MX 10 mail.example.com."]
    );
    assert_eq!(m.additional[0], "mail.example.com. 3600 A 192.0.2.25");
    // The literal wildcard name is answered as itself.
    let (_, m) = ask(&z, "*.wild.example.com", 1);
    assert_eq!(m.answer, ["*.wild.example.com. 3600 A 192.0.2.99"]);
}

#[test]
fn referrals_have_ns_and_glue_without_aa() {
    let z = zones();
    let want_auth = [
        "sub.example.com. 3600 NS ns.sub.example.com.",
        "sub.example.com. 3600 NS ns.example.net.",
    ];
    let want_add = [
        "ns.sub.example.com. 3600 A 192.0.2.70",
        "ns.sub.example.com. 3600 AAAA 2001:db8::70",
    ];
    for n in [
        "host.sub.example.com",
        "sub.example.com",
        "ns.sub.example.com",
    ] {
        for t in [1, 2, 28] {
            let (a, m) = ask(&z, n, t);
            assert_eq!(a.outcome, Outcome::Referral, "{n} {t}");
            assert!(!m.aa() && m.rcode == 0 && m.answer.is_empty());
            assert_eq!(m.authority, want_auth);
            assert_eq!(m.additional, want_add);
        }
    }
    let (a, m) = ask(&z, "x.ext.example.com", 1);
    assert_eq!(a.outcome, Outcome::Referral);
    assert_eq!(m.authority, ["ext.example.com. 3600 NS ns.example.net."]);
    assert!(m.additional.is_empty());
    // DS at the cut belongs to the parent: NODATA, authoritative.
    let (a, m) = ask(&z, "sub.example.com", 43);
    assert_eq!(a.outcome, Outcome::NoData);
    assert!(m.aa());
    assert_eq!(m.authority, [NEG_SOA]);
    // A CNAME into a delegation: CNAME, then the referral, AA kept.
    let (a, m) = ask(&z, "to-sub.example.com", 1);
    assert_eq!(a.outcome, Outcome::Answered);
    assert!(m.aa());
    assert_eq!(
        m.answer,
        ["to-sub.example.com. 3600 CNAME host.sub.example.com."]
    );
    assert_eq!(m.authority, want_auth);
}

#[test]
fn a_child_zone_we_serve_answers_for_itself() {
    let z = zones();
    let (a, m) = ask(&z, "www.deleg.example.com", 1);
    assert_eq!(a.outcome, Outcome::Answered);
    assert!(m.aa());
    assert_eq!(m.answer, ["www.deleg.example.com. 3600 A 192.0.2.91"]);
    // DS at the child's apex is answered from the parent.
    let (_, m) = ask(&z, "deleg.example.com", 43);
    assert_eq!(m.authority, [NEG_SOA]);
    // Other types at the child's apex from the child.
    let (_, m) = ask(&z, "deleg.example.com", 2);
    assert_eq!(
        m.answer,
        ["deleg.example.com. 3600 NS ns.deleg.example.com."]
    );
}

#[test]
fn record_types() {
    let z = zones();
    let (_, m) = ask(&z, "example.com", 15);
    assert_eq!(
        m.answer,
        [
            "example.com. 3600 MX 10 mail.example.com.",
            "example.com. 3600 MX 20 mail.example.net."
        ]
    );
    assert_eq!(
        m.additional,
        [
            "mail.example.com. 3600 A 192.0.2.25",
            "ns1.example.com. 3600 A 192.0.2.53",
            "ns1.example.com. 3600 AAAA 2001:db8::53"
        ]
    );
    let (_, m) = ask(&z, "_sip._udp.example.com", 33);
    assert_eq!(
        m.answer,
        ["_sip._udp.example.com. 3600 SRV 10 60 5060 sip.example.com."]
    );
    assert_eq!(m.additional[0], "sip.example.com. 3600 A 192.0.2.60");
    let (_, m) = ask(&z, "_sip._tcp.example.com", 33);
    assert_eq!(m.additional, NS1_GLUE);
    let (_, m) = ask(&z, "ptr.example.com", 12);
    assert_eq!(m.answer, ["ptr.example.com. 3600 PTR www.example.com."]);
    let (_, m) = ask(&z, "example.com", 16);
    assert_eq!(m.answer, ["example.com. 3600 TXT \"v=spf1 -all\""]);
    let (_, m) = ask(&z, "example.com", 257);
    assert_eq!(
        m.answer,
        ["example.com. 3600 CAA \\# 22 000569737375656c657473656e63727970742e6f7267"]
    );
    let (_, m) = ask(&z, "unk.example.com", 65280);
    assert_eq!(m.answer, ["unk.example.com. 3600 TYPE65280 \\# 4 0a000001"]);
    let (_, m) = ask(&z, "web.example.com", 28);
    assert_eq!(m.answer, ["web.example.com. 3600 AAAA 2001:db8::80"]);
    // NS at the apex: in the answer, not repeated in authority; glue in additional.
    let (_, m) = ask(&z, "example.com", 2);
    assert_eq!(m.answer, APEX_NS);
    assert!(m.authority.is_empty());
    assert_eq!(m.additional, NS1_GLUE);
    // Asking for the glue's own name: the A is in the answer, not again in additional.
    let (_, m) = ask(&z, "ns1.example.com", 1);
    assert_eq!(m.answer, ["ns1.example.com. 3600 A 192.0.2.53"]);
    assert_eq!(m.additional, ["ns1.example.com. 3600 AAAA 2001:db8::53"]);
}

#[test]
fn any_is_one_rrset_as_nsd() {
    let z = zones();
    let (_, m) = ask(&z, "example.com", 255);
    assert_eq!(m.answer.len(), 1);
    assert!(m.answer[0].starts_with("example.com. 3600 SOA "));
    assert!(m.authority.is_empty());
    let (_, m) = ask(&z, "web.example.com", 255);
    assert_eq!(m.answer.len(), 2);
    let (_, m) = ask(&z, "www.example.com", 255);
    assert_eq!(m.answer, ["www.example.com. 3600 CNAME web.example.com."]);
    let (a, _) = ask(&z, "ent.example.com", 255);
    assert_eq!(a.outcome, Outcome::NoData);
}

#[test]
fn edns_is_echoed_and_bounded() {
    let z = zones();
    let (_, m) = ask_with(&z, &query("example.com", 1, Some((4096, true))), UDP);
    assert_eq!(m.opt, Some((1232, 0, 0, 0x8000, vec![])));
    let (_, m) = ask_with(&z, &query("example.com", 1, Some((4096, false))), UDP);
    assert_eq!(m.opt, Some((1232, 0, 0, 0, vec![])));
    let (_, m) = ask(&z, "example.com", 1);
    assert!(m.opt.is_none());
    // Large answer: fits in 1232 with EDNS, not in 512 without.
    let (a, m) = ask_with(&z, &query("big.example.com", 16, Some((1232, false))), UDP);
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(m.answer.len(), 6);
    // A client size below 512 counts as 512; the transport's room caps everything.
    let (a, _) = ask_with(&z, &query("big.example.com", 16, Some((100, false))), UDP);
    assert_eq!(a.outcome, Outcome::Truncated);
    let small = Limits {
        udp_payload_max: 600,
        tcp: false,
    };
    let (a, m) = ask_with(
        &z,
        &query("big.example.com", 16, Some((4096, false))),
        small,
    );
    assert!(a.len <= 600 && m.tc());
}

#[test]
fn badvers_and_bad_opt_records() {
    let z = zones();
    let mut q = query("example.com", 1, Some((1232, true)));
    let v = q.len() - 5;
    q[v] = 1; // version
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!(a.outcome, Outcome::BadVers);
    assert_eq!(m.rcode, 16);
    assert!(m.question.is_some() && m.answer.is_empty() && !m.aa());
    assert_eq!(m.opt, Some((1232, 1, 0, 0, vec![])));
    // Two OPTs.
    let mut q = query("example.com", 1, Some((1232, false)));
    let opt = q[q.len() - 11..].to_vec();
    q.extend(opt);
    q[11] = 2;
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!((a.outcome, m.rcode), (Outcome::FormErr, 1));
    assert!(m.question.is_none() && m.opt.is_none());
    // OPT with a non-root owner, OPT in the answer section, an A record in additional.
    let mut q = query("example.com", 1, None);
    q[11] = 1;
    q.extend(wire("example.com"));
    q.extend([0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ask_with(&z, &q, UDP).0.outcome, Outcome::FormErr);
    let mut q = query("example.com", 1, Some((1232, false)));
    q[7] = 1;
    q[11] = 0;
    assert_eq!(ask_with(&z, &q, UDP).0.outcome, Outcome::FormErr);
    let mut q = query("example.com", 1, None);
    q[11] = 1;
    q.extend([0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
    assert_eq!(ask_with(&z, &q, UDP).0.outcome, Outcome::FormErr);
    // Malformed options; well-formed unknown options are fine.
    let mut q = query("example.com", 1, Some((1232, false)));
    let n = q.len();
    q[n - 2..].copy_from_slice(&[0, 7]);
    q.extend([0, 10, 0, 8, b'a', b'b', b'c']);
    assert_eq!(ask_with(&z, &q, UDP).0.outcome, Outcome::FormErr);
    let mut q = query("example.com", 1, Some((1232, false)));
    let n = q.len();
    q[n - 2..].copy_from_slice(&[0, 12]);
    q.extend([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(ask_with(&z, &q, UDP).0.outcome, Outcome::Answered);
}

#[test]
fn truncation_drops_additional_first_then_sets_tc() {
    let z = zones();
    // Without EDNS the TXT RRset does not fit in 512: TC, empty answer, AA kept.
    let (a, m) = ask(&z, "big.example.com", 16);
    assert_eq!(a.outcome, Outcome::Truncated);
    assert!(m.tc() && m.aa() && a.len <= 512);
    assert!(m.answer.is_empty() && m.authority.is_empty() && m.additional.is_empty());
    // RRsets before the one that does not fit stay (NSD).
    let (_, m) = ask(&z, "tobig.example.com", 16);
    assert!(m.tc());
    assert_eq!(m.answer, ["tobig.example.com. 3600 CNAME big.example.com."]);
    // Additional RRsets that do not fit are left out without TC.
    let (a, m) = ask(&z, "many.example.com", 15);
    assert_eq!(a.outcome, Outcome::Answered);
    assert!(!m.tc() && a.len <= 512);
    assert_eq!(m.answer.len(), 8);
    assert_eq!(m.authority, APEX_NS);
    assert!(m.additional.len() < 18);
    // Over TCP everything fits.
    let (a, m) = ask_with(&z, &query("many.example.com", 15, None), TCP);
    assert_eq!(a.outcome, Outcome::Answered);
    assert_eq!(m.additional.len(), 18);
    let (a, m) = ask_with(&z, &query("big.example.com", 16, None), TCP);
    assert_eq!((a.outcome, m.answer.len()), (Outcome::Answered, 6));
}

#[test]
fn refused_outside_our_zones() {
    let z = zones();
    for n in ["example.net", "com", ".", "www.example.comx"] {
        let (a, m) = ask(&z, n, 1);
        assert_eq!(a.outcome, Outcome::Refused, "{n}");
        assert_eq!(m.rcode, 5);
        assert!(!m.aa() && m.question.is_some() && m.opt.is_none());
    }
    let (_, m) = ask_with(&z, &query("example.net", 1, Some((1232, false))), UDP);
    assert_eq!(m.opt, Some((1232, 0, 0, 0, vec![0, 15, 0, 2, 0, 20])));
}

#[test]
fn malformed_and_unsupported_queries() {
    let z = zones();
    let mut out = [0u8; 4096];
    // No reply to responses or to less than a header.
    let mut q = query("example.com", 1, None);
    q[2] |= 0x80;
    assert_eq!(
        z.answer(&q, UDP, &mut out),
        Answer {
            len: 0,
            outcome: Outcome::Dropped(DropWhy::Response)
        }
    );
    assert_eq!(
        z.answer(&q[..11], UDP, &mut out).outcome,
        Outcome::Dropped(DropWhy::TooShort)
    );
    // Opcodes.
    let mut q = query("example.com", 1, None);
    q[2] = 0x11; // STATUS, RD
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!((a.outcome, m.flags), (Outcome::NotImp, 0x9104));
    assert!(m.question.is_none());
    q[2] = 0x20; // NOTIFY
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!((a.outcome, m.rcode), (Outcome::Refused, 5));
    assert!(!m.aa());
    q[2] = 0x24; // NOTIFY with AA: NSD copies the bit into its REFUSED
    let (_, m) = ask_with(&z, &q, UDP);
    assert_eq!((m.flags, m.rcode), (0xa405, 5));
    // A query with an RCODE set: FORMERR without the question (NSD).
    let mut q = query("example.com", 1, None);
    q[3] = 0x05;
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!((a.outcome, m.rcode), (Outcome::FormErr, 1));
    assert!(m.question.is_none());
    // No question, only an OPT: an EDNS probe, NOERROR with our OPT (NSD).
    let probe = [
        0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0,
    ];
    let (a, m) = ask_with(&z, &probe, UDP);
    assert_eq!((a.outcome, m.rcode), (Outcome::NoData, 0));
    assert!(m.question.is_none() && m.opt.is_some());
    // QDCOUNT 0 and 2.
    let (a, m) = ask_with(&z, &[0x12, 0x34, 1, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], UDP);
    assert_eq!((a.outcome, m.flags), (Outcome::FormErr, 0x8101));
    let mut q = query("example.com", 1, None);
    q[5] = 2;
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!((a.outcome, m.flags), (Outcome::FormErr, 0x8001));
    // Bad label, pointer, truncated question.
    for bad in [
        &b"\x41abc\x00\x00\x01\x00\x01"[..],
        b"\xc0\x0c\x00\x01\x00\x01",
        b"\x07example\x00\x01",
    ] {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(bad);
        let (a, m) = ask_with(&z, &q, UDP);
        assert_eq!((a.outcome, m.flags), (Outcome::FormErr, 0x8101));
        assert!(m.question.is_none());
    }
    // Trailing garbage is ignored; a TC bit in the query too; AD/CD cleared.
    let mut q = query("example.com", 1, None);
    q.extend_from_slice(b"garbage");
    q[2] |= 0x02;
    q[3] |= 0x30;
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!((a.outcome, m.flags), (Outcome::Answered, 0x8500));
    // Classes: CH refused with the question, HS without, ANY answered without AA.
    let mut q = query("example.com", 1, None);
    let n = q.len();
    q[n - 1] = 3;
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!(a.outcome, Outcome::Refused);
    assert!(m.question.is_some());
    q[n - 1] = 4;
    let (_, m) = ask_with(&z, &q, UDP);
    assert!(m.question.is_none() && m.rcode == 5);
    q[n - 2..].copy_from_slice(&[0, 255]);
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!(a.outcome, Outcome::Answered);
    assert!(!m.aa() && m.authority.is_empty());
    let mut q = query("nx.example.com", 1, None);
    let n = q.len();
    q[n - 2..].copy_from_slice(&[0, 255]);
    let (a, m) = ask_with(&z, &q, UDP);
    assert_eq!(a.outcome, Outcome::NxDomain);
    assert!(!m.aa() && m.authority.is_empty());
    // Zone transfers.
    let (a, m) = ask(&z, "example.com", 252);
    assert_eq!((a.outcome, m.rcode), (Outcome::NotImp, 4));
    assert!(m.question.is_some());
    let (a, _) = ask_with(&z, &query("example.com", 252, None), TCP);
    assert_eq!(a.outcome, Outcome::Refused);
    let (a, _) = ask(&z, "example.com", 251);
    assert_eq!(a.outcome, Outcome::Refused);
    // Meta types NSD treats as data types: NODATA.
    let (a, _) = ask(&z, "example.com", 254);
    assert_eq!(a.outcome, Outcome::NoData);
}

#[test]
fn no_room_is_no_reply_never_an_overrun() {
    let z = zones();
    let q = query("example.com", 1, None);
    for room in 0..600 {
        let mut out = vec![0u8; room];
        let a = z.answer(&q, UDP, &mut out);
        assert!(a.len <= room);
        let l = Limits {
            udp_payload_max: room,
            tcp: false,
        };
        let mut out = [0u8; 4096];
        let a = z.answer(&q, l, &mut out);
        assert!(a.len <= room);
    }
}

#[test]
fn answering_allocates_nothing() {
    let z = zones();
    let mut queries: Vec<Vec<u8>> = Vec::new();
    for (n, t) in [
        ("example.com", 1),
        ("WWW.example.com", 1),
        ("chain1.example.com", 1),
        ("nothere.example.com", 1),
        ("a.b.wild.example.com", 16),
        ("host.sub.example.com", 1),
        ("many.example.com", 15),
        ("big.example.com", 16),
        ("example.net", 1),
        ("example.com", 255),
        ("to-org.example.com", 1),
        ("deleg.example.com", 43),
    ] {
        queries.push(query(n, t, None));
        queries.push(query(n, t, Some((4096, true))));
    }
    queries.push(vec![0; 5]);
    queries.push(query("example.com", 1, Some((1232, false)))[..20].to_vec());
    let mut out = vec![0u8; 4096];
    let mut total = 0;
    let info = allocation_counter::measure(|| {
        for _ in 0..50 {
            for q in &queries {
                for l in [UDP, TCP] {
                    total += z.answer(q, l, &mut out).len;
                }
            }
        }
    });
    assert!(total > 0);
    assert_eq!(info.count_total, 0, "allocations while answering");
}

#[test]
fn zone_errors_name_file_and_line() {
    fn err(text: &str) -> String {
        err_origin(text, None)
    }
    fn err_origin(text: &str, origin: Option<&str>) -> String {
        Zones::from_sources(&[ZoneSource {
            path: Path::new("zones/bad.zone"),
            origin,
            text,
        }])
        .expect_err("must fail")
        .to_string()
    }
    let head = "$ORIGIN example.com.\n@ 60 SOA ns h 1 2 3 4 5\n  NS ns\nns A 192.0.2.1\n";
    let cases = [
        (format!("{head}\n; c\nfoo A 1.2.3\n"), "zones/bad.zone:7: "),
        (
            format!("{head}foo A 1.2.3.4 5\n"),
            "zones/bad.zone:5: trailing",
        ),
        (format!("{head}foo BOGUS 1\n"), "zones/bad.zone:5: "),
        (format!("{head}foo TXT \"abc\n"), "zones/bad.zone:5: "),
        (format!("{head}foo MX 10\n\n"), "zones/bad.zone:5: "),
        (
            format!("{head}www CNAME web\nwww A 1.2.3.4\n"),
            "zones/bad.zone:6: CNAME and other data at www.example.com.",
        ),
        (
            format!("{head}www A 1.2.3.4\nwww CNAME web\n"),
            "zones/bad.zone:6: CNAME and other data",
        ),
        (
            format!("{head}www CNAME a\nwww CNAME b\n"),
            "zones/bad.zone:6: a second CNAME",
        ),
        (
            format!("{head}www.example.org. A 1.2.3.4\n"),
            "zones/bad.zone:5: www.example.org. is outside the zone example.com.",
        ),
        (
            format!("{head}foo.notexample.com. A 1.2.3.4\n"),
            "zones/bad.zone:5: foo.notexample.com. is outside",
        ),
        (
            format!("{head}@ SOA ns h 1 2 3 4 5\n"),
            "zones/bad.zone:5: a second SOA record (the first is on line 2)",
        ),
        (
            format!("{head}foo SOA ns h 1 2 3 4 5\n"),
            "zones/bad.zone:5: SOA at foo.example.com., not at the zone's apex",
        ),
        (
            format!("{head}$INCLUDE other.zone\n"),
            "zones/bad.zone:5: $INCLUDE is not supported",
        ),
        (format!("{head}foo DNAME bar\n"), "zones/bad.zone:5: DNAME"),
        (format!("{head}foo CH A 1.2.3.4\n"), "zones/bad.zone:5: "),
        (
            "$ORIGIN example.com.\n@ 60 SOA ns h 1 2 3 4 5\nns A 192.0.2.1\n".to_string(),
            "zones/bad.zone:2: no NS records at the apex",
        ),
        (
            "$ORIGIN example.com.\nns A 192.0.2.1\n".to_string(),
            "zones/bad.zone:1: no SOA",
        ),
        (
            "www A 192.0.2.1\n".to_string(),
            "zones/bad.zone:1: relative name but no origin",
        ),
    ];
    for (text, want) in &cases {
        let e = err(text);
        assert!(e.starts_with(want), "{e:?} should start with {want:?}");
    }
    assert!(err_origin(head, Some("example.org")).contains("outside the zone example.org."));
    assert!(err_origin(head, Some("a..b")).starts_with("zones/bad.zone:1: the zone name"));
    // Twice the same zone.
    let e = Zones::from_sources(&[
        ZoneSource {
            path: Path::new("a.zone"),
            origin: None,
            text: head,
        },
        ZoneSource {
            path: Path::new("b.zone"),
            origin: Some("EXAMPLE.com"),
            text: "@ 60 SOA ns h 1 2 3 4 5\n NS ns\n",
        },
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "b.zone:1: zone EXAMPLE.com. is already loaded from a.zone:2"
    );
    // Files that cannot be read.
    let e = Zones::load(&[ZoneFile::from(std::path::PathBuf::from(
        "/nonexistent/x.zone",
    ))])
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.zone"));
}

#[test]
fn origins_from_soa_or_caller_and_files_from_disk() {
    // No $ORIGIN: the absolute SOA owner names the zone and is the origin of what follows.
    let z = Zones::from_sources(&[ZoneSource {
        path: Path::new("t"),
        origin: None,
        text: DELEG,
    }])
    .unwrap();
    let (_, m) = ask(&z, "ns.deleg.example.com", 1);
    assert_eq!(m.answer, ["ns.deleg.example.com. 3600 A 192.0.2.90"]);
    // From a file.
    let dir = std::env::temp_dir().join(format!("sluice-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("example.org.zone");
    std::fs::write(&p, EXAMPLE_ORG).unwrap();
    let z = Zones::load(&[ZoneFile {
        path: p.clone(),
        origin: Some("example.org.".into()),
    }])
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let (a, _) = ask(&z, "www.example.org", 1);
    assert_eq!(a.outcome, Outcome::Answered);
}

/// Checks what must hold for every response: it parses (ours and `domain`'s parser), fits,
/// echoes the ID, is a response, and its counts match its contents.
fn check_response(q: &[u8], out: &[u8], a: Answer, room: usize) {
    if a.len == 0 {
        return;
    }
    assert!(a.len <= room && a.len >= 12);
    let r = &out[..a.len];
    assert_eq!(r[..2], q[..2]);
    assert!(r[2] & 0x80 != 0);
    let m = parse(r).unwrap_or_else(|| panic!("unparsable {r:02x?} for {q:02x?}"));
    if a.outcome == Outcome::Truncated {
        assert!(m.tc());
    }
    let msg = domain::base::Message::from_octets(r.to_vec()).expect("domain: header");
    for qq in msg.question() {
        qq.expect("domain: question");
    }
    let mut sec = msg.answer().expect("domain: answer");
    loop {
        for rr in &mut sec {
            let rr = rr.expect("domain: record");
            rr.to_record::<domain::rdata::AllRecordData<_, domain::base::ParsedName<_>>>()
                .expect("domain: rdata");
        }
        match sec.next_section().expect("domain: section") {
            Some(s) => sec = s,
            None => break,
        }
    }
}

fn names_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "example.com",
        "www.example.com",
        "WEB.Example.com",
        "chain1.example.com",
        "loop1.example.com",
        "x.y.wild.example.com",
        "foo.wc.example.com",
        "host.sub.example.com",
        "many.example.com",
        "big.example.com",
        "tobig.example.com",
        "nx.example.com",
        "b.ent.example.com",
        "example.org",
        "www.deleg.example.com",
        "deleg.example.com",
        "example.net",
        "_sip._udp.example.com",
    ])
    .prop_map(str::to_string)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic_or_overrun(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        room in 0usize..4096,
        tcp in any::<bool>(),
    ) {
        let z = zones();
        let mut out = vec![0u8; 4096];
        let l = Limits { udp_payload_max: room, tcp };
        let a = z.answer(&bytes, l, &mut out);
        check_response(&bytes, &out, a, room);
    }

    #[test]
    fn mutated_queries_never_panic_and_always_parse(
        name in names_strategy(),
        qtype in prop::sample::select(vec![1u16, 2, 5, 6, 15, 16, 28, 33, 43, 255, 252, 65280]),
        edns in prop::option::of((0u16..5000, any::<bool>())),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        room in 12usize..2000,
        tcp in any::<bool>(),
    ) {
        let z = zones();
        let mut q = query(&name, qtype, edns);
        for (i, b) in &flips {
            let i = i.index(q.len());
            q[i] ^= b;
        }
        if let Some(c) = cut {
            q.truncate(c.index(q.len() + 1));
        }
        let mut out = vec![0u8; 4096];
        let l = Limits { udp_payload_max: room, tcp };
        let a = z.answer(&q, l, &mut out);
        check_response(&q, &out, a, room);
    }
}

/// Not a benchmark (tests run unoptimised unless `--release`): a rough figure only.
#[test]
fn measure_answers() {
    let z = zones();
    let qs: Vec<Vec<u8>> = [
        ("example.com", 1),
        ("www.example.com", 1),
        ("nothere.example.com", 1),
        ("foo.wild.example.com", 1),
    ]
    .iter()
    .map(|&(n, t)| query(n, t, Some((1232, false))))
    .collect();
    let mut out = [0u8; 4096];
    let rounds = 20_000u32;
    let start = std::time::Instant::now();
    let mut sum = 0;
    for _ in 0..rounds {
        for q in &qs {
            sum += z.answer(q, UDP, &mut out).len;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(rounds * qs.len() as u32);
    println!(
        "dns answer: {ns:.0} ns/query ({} build; checksum {sum})",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}
