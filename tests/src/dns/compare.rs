//! The comparator: two servers' [`Outcome`]s for the same query, difference by difference,
//! and a [`Report`] over a whole corpus in which written [`Exception`]s excuse the known ones.
//!
//! What is compared, and how (the rules a difference line follows):
//!
//! * **Whether there is a reply at all** (`reply: first only (NOERROR)`).
//! * **The header**: OPCODE, RCODE (the extended one, so BADVERS is told from NOERROR), and the
//!   bits QR, AA, TC, RD, RA, Z, AD, CD (`rcode: NOERROR vs NXDOMAIN`, `flag AA: 1 vs 0`).
//! * **The question section, exactly**: name case included, since a server must echo the
//!   question as asked (`question: [wWw.example.test. IN A] vs [www.example.test. IN A]`).
//! * **Each section as RRsets**: records are grouped by (owner, class, type), owners compared
//!   case-insensitively (a server may spell an owner as the query or as the zone does, RFC
//!   4343), order within and between RRsets ignored. Within an RRset the records' data are
//!   compared as a multiset in canonical form (names inside RDATA lowercased, RFC 4034 6.2;
//!   TXT, CAA and unknown types octet for octet, and shown in that form); then the TTLs
//!   (`answer: www.example.test. IN A: first only [300 192.0.2.80]; second only []`,
//!   `authority: example.test. IN SOA: ttl 300 vs 3600`).
//! * **The OPT record**: presence, how many, version, UDP size, DO bit, the other flag bits,
//!   and the option codes present (not their data: a server cookie is random).
//!
//! Not compared: the message ID (kdig checks it; the raw client turns a wrong one into an
//! error), the section counts (the sections themselves are), the message size and name
//! compression (servers legitimately differ), the order of records.
//!
//! This module owns the judgement "same or different" and the report; it asks nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::dns::client::Outcome;
use crate::dns::corpus::Query;
use crate::dns::wire::{self, Message, Name, Record, canonical_rdata, rdata_text};

/// At most this many records are listed per side of an RRset difference.
const SHOWN_RECORDS: usize = 6;

/// Every difference between `first`'s and `second`'s outcome, one line each (see the module
/// docs for the format). [`Outcome::Error`]s are not differences: [`Report`] keeps them apart.
pub fn compare(first: &Outcome, second: &Outcome) -> Vec<String> {
    match (first, second) {
        (Outcome::Reply(a), Outcome::Reply(b)) => compare_messages(a, b),
        (Outcome::Reply(a), Outcome::NoReply) => {
            vec![format!("reply: first only ({})", wire::rcode_name(a.rcode))]
        }
        (Outcome::NoReply, Outcome::Reply(b)) => {
            vec![format!(
                "reply: second only ({})",
                wire::rcode_name(b.rcode)
            )]
        }
        _ => Vec::new(),
    }
}

/// The differences between two replies.
pub fn compare_messages(a: &Message, b: &Message) -> Vec<String> {
    let mut d = Vec::new();
    if a.opcode != b.opcode {
        d.push(format!(
            "opcode: {} vs {}",
            wire::opcode_name(a.opcode),
            wire::opcode_name(b.opcode)
        ));
    }
    if a.rcode != b.rcode {
        d.push(format!(
            "rcode: {} vs {}",
            wire::rcode_name(a.rcode),
            wire::rcode_name(b.rcode)
        ));
    }
    for (name, x, y) in [
        ("QR", a.qr, b.qr),
        ("AA", a.aa, b.aa),
        ("TC", a.tc, b.tc),
        ("RD", a.rd, b.rd),
        ("RA", a.ra, b.ra),
        ("Z", a.z, b.z),
        ("AD", a.ad, b.ad),
        ("CD", a.cd, b.cd),
    ] {
        if x != y {
            d.push(format!("flag {name}: {} vs {}", u8::from(x), u8::from(y)));
        }
    }
    if a.question != b.question {
        let show = |m: &Message| {
            m.question
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        d.push(format!("question: [{}] vs [{}]", show(a), show(b)));
    }
    for (section, x, y) in [
        ("answer", &a.answer, &b.answer),
        ("authority", &a.authority, &b.authority),
        ("additional", &a.additional, &b.additional),
    ] {
        compare_section(section, x, y, &mut d);
    }
    compare_opt(a, b, &mut d);
    d
}

/// One record of an RRset: (canonical RDATA, TTL, presentation of the canonical RDATA).
type Rr = (Vec<u8>, u32, String);
/// One RRset's records, sorted by RDATA.
type RrSet = Vec<Rr>;

fn rrsets(records: &[Record]) -> BTreeMap<(Name, u16, u16), RrSet> {
    let mut sets: BTreeMap<(Name, u16, u16), RrSet> = BTreeMap::new();
    for r in records {
        sets.entry((r.owner.to_lowercase(), r.class, r.rtype))
            .or_default()
            .push({
                let canonical = canonical_rdata(r.rtype, &r.rdata);
                let text = rdata_text(r.rtype, &canonical);
                (canonical, r.ttl, text)
            });
    }
    for set in sets.values_mut() {
        set.sort();
    }
    sets
}

fn compare_section(section: &str, a: &[Record], b: &[Record], d: &mut Vec<String>) {
    let (sa, sb) = (rrsets(a), rrsets(b));
    let mut keys: Vec<&(Name, u16, u16)> = sa.keys().chain(sb.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (owner, class, rtype) = key;
        let head = format!(
            "{section}: {owner} {} {}",
            wire::class_name(*class),
            wire::type_name(*rtype)
        );
        let empty = Vec::new();
        let x = sa.get(key).unwrap_or(&empty);
        let y = sb.get(key).unwrap_or(&empty);
        let (only_x, only_y) = multiset_difference(x, y);
        if !only_x.is_empty() || !only_y.is_empty() {
            d.push(format!(
                "{head}: first only {}; second only {}",
                show_records(&only_x),
                show_records(&only_y)
            ));
        } else {
            let ttls = |s: &RrSet| s.iter().map(|r| r.1).collect::<Vec<_>>();
            let (tx, ty) = (ttls(x), ttls(y));
            if tx != ty {
                d.push(format!(
                    "{head}: ttl {} vs {}",
                    show_ttls(&tx),
                    show_ttls(&ty)
                ));
            }
        }
    }
}

/// The records of `x` not matched (by canonical RDATA) in `y`, and vice versa, each record
/// matched at most once.
fn multiset_difference<'a>(x: &'a RrSet, y: &'a RrSet) -> (Vec<&'a Rr>, Vec<&'a Rr>) {
    let mut used = vec![false; y.len()];
    let mut only_x = Vec::new();
    for r in x {
        match (0..y.len()).find(|&i| !used[i] && y[i].0 == r.0) {
            Some(i) => used[i] = true,
            None => only_x.push(r),
        }
    }
    let only_y = y
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(r, _)| r)
        .collect();
    (only_x, only_y)
}

fn show_records(rs: &[&Rr]) -> String {
    let mut s = String::from("[");
    for (i, r) in rs.iter().take(SHOWN_RECORDS).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{} {}", r.1, r.2);
    }
    if rs.len() > SHOWN_RECORDS {
        let _ = write!(s, ", … {} in all", rs.len());
    }
    s.push(']');
    s
}

fn show_ttls(ttls: &[u32]) -> String {
    if ttls.windows(2).all(|w| w[0] == w[1]) {
        ttls.first().map(u32::to_string).unwrap_or_default()
    } else {
        format!("{ttls:?}")
    }
}

fn compare_opt(a: &Message, b: &Message, d: &mut Vec<String>) {
    match (&a.opt, &b.opt) {
        (None, None) => {}
        (Some(_), None) => d.push("opt: present vs absent".into()),
        (None, Some(_)) => d.push("opt: absent vs present".into()),
        (Some(x), Some(y)) => {
            if a.opt_count != b.opt_count {
                d.push(format!("opt count: {} vs {}", a.opt_count, b.opt_count));
            }
            if x.version != y.version {
                d.push(format!("opt version: {} vs {}", x.version, y.version));
            }
            if x.udp_size != y.udp_size {
                d.push(format!("opt udp size: {} vs {}", x.udp_size, y.udp_size));
            }
            if x.dnssec_ok != y.dnssec_ok {
                d.push(format!(
                    "opt DO: {} vs {}",
                    u8::from(x.dnssec_ok),
                    u8::from(y.dnssec_ok)
                ));
            }
            if x.z != y.z {
                d.push(format!("opt flags: {:#06x} vs {:#06x}", x.z, y.z));
            }
            let codes = |o: &wire::Opt| {
                let mut c: Vec<u16> = o.options.iter().map(|(c, _)| *c).collect();
                c.sort_unstable();
                c
            };
            if codes(x) != codes(y) {
                d.push(format!("opt options: {:?} vs {:?}", codes(x), codes(y)));
            }
        }
    }
}

/// A written reason why a difference is not a failure: any difference line matching
/// `difference` on a query whose text matches `query` is excused. Both patterns are globs:
/// `*` is any run of characters, `?` one character, everything else itself, letters matched
/// regardless of case.
///
/// `reason` says why the **first** server of the comparison is right (or why both are), citing
/// the RFC or the servers' documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Glob over the query's text (see [`Query`]'s `Display`).
    pub query: &'static str,
    /// Glob over the difference line (see the module docs).
    pub difference: &'static str,
    /// Why the first server is right.
    pub reason: &'static str,
}

impl Exception {
    /// Whether this exception excuses `difference` on `query` (ASCII case-insensitively, so
    /// a pattern naming `tosecond.example.test.` also covers the mixed-case raw queries).
    pub fn matches(&self, query: &str, difference: &str) -> bool {
        let lower = |s: &str| s.to_ascii_lowercase();
        glob(&lower(self.query), &lower(query)) && glob(&lower(self.difference), &lower(difference))
    }
}

/// `*` and `?` glob matching over characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point (the last `*`), linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Both outcomes, in full, for every query whose text matches the glob `pattern`: what a
/// person reads to decide who is right (the tests print it when `DNS_SHOW` is set).
pub fn side_by_side(
    pattern: &str,
    names: (&str, &str),
    queries: &[Query],
    a: &[Outcome],
    b: &[Outcome],
) -> String {
    let mut s = String::new();
    for ((q, x), y) in queries.iter().zip(a).zip(b) {
        let qt = q.to_string();
        if glob(pattern, &qt) {
            let _ = write!(s, "=== {qt}\n--- {}\n{x}--- {}\n{y}", names.0, names.1);
        }
    }
    s
}

/// The comparison of two servers over a corpus.
#[derive(Debug)]
pub struct Report {
    first: String,
    second: String,
    queries: usize,
    agreed: usize,
    failures: Vec<String>,
    errors: Vec<String>,
    exceptions: Vec<Exception>,
    excused: Vec<usize>,
}

impl Report {
    /// Compares `a[i]` (from `first`) with `b[i]` (from `second`) for every `queries[i]`,
    /// excusing what `exceptions` cover.
    pub fn new(
        first: &str,
        second: &str,
        queries: &[Query],
        a: &[Outcome],
        b: &[Outcome],
        exceptions: &[Exception],
    ) -> Report {
        assert_eq!(queries.len(), a.len(), "one outcome per query");
        assert_eq!(queries.len(), b.len(), "one outcome per query");
        let mut r = Report {
            first: first.to_owned(),
            second: second.to_owned(),
            queries: queries.len(),
            agreed: 0,
            failures: Vec::new(),
            errors: Vec::new(),
            exceptions: exceptions.to_vec(),
            excused: vec![0; exceptions.len()],
        };
        for ((q, x), y) in queries.iter().zip(a).zip(b) {
            let qt = q.to_string();
            for (who, o) in [(first, x), (second, y)] {
                if let Outcome::Error(e) = o {
                    r.errors.push(format!("{qt}: {who}: {e}"));
                }
            }
            let diffs = compare(x, y);
            if diffs.is_empty() {
                r.agreed += 1;
            }
            for diff in diffs {
                match exceptions.iter().position(|e| e.matches(&qt, &diff)) {
                    Some(i) => r.excused[i] += 1,
                    None => r.failures.push(format!("{qt}: {diff}")),
                }
            }
        }
        r
    }

    /// The differences no exception excuses, one line each: `QUERY: DIFFERENCE`, where
    /// "first" is the first server and "second" the second.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// What the harness could not judge (kdig failures, malformed replies), one line each.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// The exceptions that excused nothing: stale, or too narrow.
    pub fn unused_exceptions(&self) -> Vec<&Exception> {
        self.exceptions
            .iter()
            .zip(&self.excused)
            .filter(|(_, n)| **n == 0)
            .map(|(e, _)| e)
            .collect()
    }

    /// How many queries got the same outcome from both.
    pub fn agreed(&self) -> usize {
        self.agreed
    }

    /// A human summary: the counts, each exception with how many differences it excused and
    /// why, then every failure and error.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} vs {}: {} queries, {} agreed, {} differences excused, {} not, {} errors\n",
            self.first,
            self.second,
            self.queries,
            self.agreed,
            self.excused.iter().sum::<usize>(),
            self.failures.len(),
            self.errors.len()
        );
        for (e, n) in self.exceptions.iter().zip(&self.excused) {
            let _ = writeln!(
                s,
                "  excused {n:>3} × {:?} on {:?}: {}",
                e.difference, e.query, e.reason
            );
        }
        for f in &self.failures {
            let _ = writeln!(s, "  DIFFERENT {f}");
        }
        for e in &self.errors {
            let _ = writeln!(s, "  ERROR {e}");
        }
        s
    }

    /// Panics if there are failures or errors: every line goes to stderr, the first 80 into
    /// the panic message. "first" and "second" in the lines are the two servers named there.
    pub fn assert_agree(&self) {
        if self.failures.is_empty() && self.errors.is_empty() {
            return;
        }
        let mut lines: Vec<&str> = self.errors.iter().map(String::as_str).collect();
        lines.extend(self.failures.iter().map(String::as_str));
        for l in &lines {
            eprintln!("{} vs {}: {l}", self.first, self.second);
        }
        let shown = lines.len().min(80);
        panic!(
            "{} (first) and {} (second) differ: {} unexcused differences and {} errors over {} \
             queries (first {shown} below; all on stderr):\n{}",
            self.first,
            self.second,
            self.failures.len(),
            self.errors.len(),
            self.queries,
            lines[..shown].join("\n")
        );
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::dns::corpus::{QueryKind, RawQuery, Transport};
    use crate::dns::wire::{Opt, Question};
    use crate::types::IpFamily;

    fn name(s: &str) -> Name {
        Name::from_text(s, None).unwrap()
    }

    fn rec(owner: &str, rtype: u16, ttl: u32, rdata: &[u8]) -> Record {
        Record {
            owner: name(owner),
            rtype,
            class: 1,
            ttl,
            rdata: rdata.to_vec(),
        }
    }

    fn reply() -> Message {
        Message {
            id: 1,
            qr: true,
            opcode: 0,
            aa: true,
            tc: false,
            rd: false,
            ra: false,
            z: false,
            ad: false,
            cd: false,
            rcode: 0,
            question: vec![Question {
                name: name("wWw.example.test."),
                qtype: 1,
                qclass: 1,
            }],
            answer: vec![
                rec("www.example.test.", 1, 300, &[192, 0, 2, 80]),
                rec("www.example.test.", 1, 300, &[192, 0, 2, 81]),
            ],
            authority: vec![],
            additional: vec![],
            opt: Some(Opt {
                udp_size: 1232,
                ext_rcode: 0,
                version: 0,
                dnssec_ok: false,
                z: 0,
                options: vec![],
            }),
            opt_count: 1,
        }
    }

    #[test]
    fn the_same_reply_in_another_order_and_case_agrees() {
        let a = reply();
        let mut b = reply();
        b.answer.reverse();
        b.answer[0].owner = name("WWW.EXAMPLE.TEST.");
        assert_eq!(compare_messages(&a, &b), Vec::<String>::new());
        // A CNAME target in another case is the same name.
        let mut a = reply();
        let mut b = reply();
        a.answer = vec![rec("a.test.", 5, 60, &name("Www.Test.").to_wire())];
        b.answer = vec![rec("a.test.", 5, 60, &name("www.test.").to_wire())];
        assert_eq!(compare_messages(&a, &b), Vec::<String>::new());
    }

    #[test]
    fn each_kind_of_difference_is_one_line() {
        let a = reply();
        let mut b = reply();
        b.rcode = 3;
        b.aa = false;
        b.question[0].name = name("www.example.test.");
        b.answer[1].rdata = vec![192, 0, 2, 82];
        b.authority.push(rec("example.test.", 6, 300, &[0; 22]));
        b.opt.as_mut().unwrap().udp_size = 4096;
        b.opt.as_mut().unwrap().options.push((3, vec![]));
        assert_eq!(
            compare_messages(&a, &b),
            [
                "rcode: NOERROR vs NXDOMAIN",
                "flag AA: 1 vs 0",
                "question: [wWw.example.test. IN A] vs [www.example.test. IN A]",
                "answer: www.example.test. IN A: first only [300 192.0.2.81]; second only \
                 [300 192.0.2.82]",
                "authority: example.test. IN SOA: first only []; second only [300 . . 0 0 0 0 0]",
                "opt udp size: 1232 vs 4096",
                "opt options: [] vs [3]",
            ]
        );
        let mut b = reply();
        b.answer[0].ttl = 3600;
        b.answer[1].ttl = 3600;
        b.opt = None;
        assert_eq!(
            compare_messages(&a, &b),
            [
                "answer: www.example.test. IN A: ttl 300 vs 3600",
                "opt: present vs absent"
            ]
        );
        let r = Outcome::Reply(Box::new(reply()));
        assert_eq!(
            compare(&r, &Outcome::NoReply),
            ["reply: first only (NOERROR)"]
        );
        assert_eq!(
            compare(&Outcome::NoReply, &Outcome::NoReply),
            Vec::<String>::new()
        );
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob(
            "*tosecond.example.test.*",
            "@udp4 tosecond.example.test. IN A"
        ));
        assert!(glob(
            "answer: * IN A: first only*",
            "answer: x. IN A: first only [1]"
        ));
        assert!(!glob(
            "answer: * IN A: first*",
            "answer: x. IN AAAA: first only"
        ));
        assert!(glob("flag ?A: 1 vs 0", "flag AA: 1 vs 0"));
        assert!(!glob("abc", "abcd"));
    }

    #[test]
    fn exceptions_excuse_and_report_counts() {
        let q = Query {
            family: IpFamily::V4,
            transport: Transport::Udp,
            kind: QueryKind::Raw(RawQuery {
                label: "test".into(),
                bytes: vec![],
            }),
        };
        let a = vec![Outcome::Reply(Box::new(reply())), Outcome::NoReply];
        let mut m = reply();
        m.rcode = 5;
        let b = vec![
            Outcome::Reply(Box::new(m)),
            Outcome::Error("kdig broke".into()),
        ];
        let queries = vec![q.clone(), q];
        let exc = [
            Exception {
                query: "@udp4 raw *",
                difference: "rcode: NOERROR vs REFUSED",
                reason: "because",
            },
            Exception {
                query: "*",
                difference: "never",
                reason: "stale",
            },
        ];
        let r = Report::new("one", "two", &queries, &a, &b, &exc);
        assert!(r.failures().is_empty(), "{:?}", r.failures());
        assert_eq!(r.errors(), ["@udp4 raw test: two: kdig broke"]);
        assert_eq!(r.unused_exceptions(), [&exc[1]]);
        assert!(r.summary().contains("excused   1 ×"), "{}", r.summary());
        let r = Report::new("one", "two", &queries, &a, &b, &exc[1..]);
        assert_eq!(r.failures(), ["@udp4 raw test: rcode: NOERROR vs REFUSED"]);
    }
}
