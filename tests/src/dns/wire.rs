//! DNS messages as the harness sees them: domain names, a parser for whole messages (header,
//! question, the three sections, OPT), a builder for the raw queries `kdig` cannot send, and
//! the canonical form and presentation of record data the comparator works on.
//!
//! This module owns the wire format (RFC 1035 section 4, RFC 6891 for OPT) and nothing else:
//! it never sends anything and knows no server. It is a checker's parser, not a server's: it
//! decodes everything a reply may carry into owned values and says precisely where a message
//! is malformed, without caring about speed.

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest name on the wire, root label included (RFC 1035 3.1).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 3.1).
pub const MAX_LABEL_LEN: usize = 63;
/// How many compression pointers one name may follow before it is taken for a loop.
const MAX_POINTERS: usize = 64;

/// The OPT pseudo-record's type (RFC 6891).
pub const TYPE_OPT: u16 = 41;

/// A malformed name, message or text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(msg.into()))
}

// ---- names -------------------------------------------------------------------------------

/// An absolute domain name: its labels, leftmost first, as octets (the root is no labels).
///
/// Equality and ordering are exact (case-sensitive); [`Name::eq_ignore_case`] and
/// [`Name::to_lowercase`] give DNS name equality (RFC 4343: ASCII letters only).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Name {
    labels: Vec<Vec<u8>>,
}

impl Name {
    /// The root, `.`.
    pub fn root() -> Name {
        Name::default()
    }

    /// Parses a name in presentation format (RFC 1035 5.1: `\X` and `\DDD` escapes). A name
    /// not ending in an unescaped `.` is relative to `origin` (an error without one); `@` is
    /// the origin itself.
    pub fn from_text(text: &str, origin: Option<&Name>) -> Result<Name, WireError> {
        if text == "@" {
            return origin
                .cloned()
                .ok_or_else(|| WireError("@ without an origin".into()));
        }
        if text == "." {
            return Ok(Name::root());
        }
        let mut labels = Vec::new();
        let mut label = Vec::new();
        let mut absolute = false;
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    let rest = &bytes[i + 1..];
                    if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
                        let v = (rest[0] - b'0') as u32 * 100
                            + (rest[1] - b'0') as u32 * 10
                            + (rest[2] - b'0') as u32;
                        if v > 255 {
                            return err(format!("{text:?}: escape \\{v} is over 255"));
                        }
                        label.push(v as u8);
                        i += 4;
                    } else if let Some(&c) = rest.first() {
                        label.push(c);
                        i += 2;
                    } else {
                        return err(format!("{text:?}: a trailing backslash"));
                    }
                    continue;
                }
                b'.' => {
                    if label.is_empty() {
                        return err(format!("{text:?}: an empty label"));
                    }
                    labels.push(std::mem::take(&mut label));
                    if i + 1 == bytes.len() {
                        absolute = true;
                    }
                }
                c => label.push(c),
            }
            i += 1;
        }
        if !label.is_empty() {
            labels.push(label);
        }
        if !absolute {
            let origin =
                origin.ok_or_else(|| WireError(format!("{text:?}: relative, and no origin")))?;
            labels.extend(origin.labels.iter().cloned());
        }
        Name::from_labels(labels)
    }

    /// A name from its labels, checked for the label and name length limits.
    pub fn from_labels(labels: Vec<Vec<u8>>) -> Result<Name, WireError> {
        let name = Name { labels };
        if let Some(l) = name
            .labels
            .iter()
            .find(|l| l.is_empty() || l.len() > MAX_LABEL_LEN)
        {
            return err(format!("label of {} octets in {name}", l.len()));
        }
        if name.wire_len() > MAX_NAME_LEN {
            return err(format!("{name} is {} octets long", name.wire_len()));
        }
        Ok(name)
    }

    /// The labels, leftmost first.
    pub fn labels(&self) -> &[Vec<u8>] {
        &self.labels
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.labels.is_empty()
    }

    /// Length on the wire, uncompressed.
    pub fn wire_len(&self) -> usize {
        self.labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }

    /// The uncompressed wire form.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire_len());
        for l in &self.labels {
            out.push(l.len() as u8);
            out.extend_from_slice(l);
        }
        out.push(0);
        out
    }

    /// The same name with ASCII letters lowercased (RFC 4343).
    pub fn to_lowercase(&self) -> Name {
        Name {
            labels: self.labels.iter().map(|l| l.to_ascii_lowercase()).collect(),
        }
    }

    /// DNS name equality: ASCII letters compared case-insensitively.
    pub fn eq_ignore_case(&self, other: &Name) -> bool {
        self.labels.len() == other.labels.len()
            && self
                .labels
                .iter()
                .zip(&other.labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// Whether this name is `other` or below it (case-insensitively).
    pub fn is_at_or_below(&self, other: &Name) -> bool {
        let n = other.labels.len();
        self.labels.len() >= n
            && self.labels[self.labels.len() - n..]
                .iter()
                .zip(&other.labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// The name one label up (`None` for the root).
    pub fn parent(&self) -> Option<Name> {
        (!self.is_root()).then(|| Name {
            labels: self.labels[1..].to_vec(),
        })
    }

    /// `label.self`.
    pub fn prepend(&self, label: &[u8]) -> Result<Name, WireError> {
        let mut labels = vec![label.to_vec()];
        labels.extend(self.labels.iter().cloned());
        Name::from_labels(labels)
    }

    /// Whether the leftmost label is `*` (a wildcard owner, RFC 4592).
    pub fn is_wildcard(&self) -> bool {
        self.labels.first().is_some_and(|l| l == b"*")
    }

    /// The same name with the case of its letters alternated by position (`wWw.ExAmPlE.`),
    /// starting upper or lower as `upper_first` says: a query name no zone spells that way.
    pub fn mixed_case(&self, upper_first: bool) -> Name {
        let mut upper = upper_first;
        let labels = self
            .labels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|&c| {
                        if c.is_ascii_alphabetic() {
                            upper = !upper;
                            if !upper {
                                c.to_ascii_uppercase()
                            } else {
                                c.to_ascii_lowercase()
                            }
                        } else {
                            c
                        }
                    })
                    .collect()
            })
            .collect();
        Name { labels }
    }
}

impl fmt::Display for Name {
    /// Presentation format, always absolute: special characters escaped with `\`, octets
    /// outside printable ASCII as `\DDD` (the way kdig and NSD print them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for l in &self.labels {
            for &c in l {
                match c {
                    b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                        write!(f, "\\{}", c as char)?
                    }
                    0x21..=0x7e => f.write_char(c as char)?,
                    _ => write!(f, "\\{c:03}")?,
                }
            }
            f.write_char('.')?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

// ---- mnemonics ---------------------------------------------------------------------------

/// RR types by mnemonic; everything else is `TYPEnnn` (RFC 3597).
const TYPES: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (13, "HINFO"),
    (15, "MX"),
    (16, "TXT"),
    (17, "RP"),
    (18, "AFSDB"),
    (28, "AAAA"),
    (33, "SRV"),
    (35, "NAPTR"),
    (39, "DNAME"),
    (41, "OPT"),
    (43, "DS"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (50, "NSEC3"),
    (51, "NSEC3PARAM"),
    (52, "TLSA"),
    (59, "CDS"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (99, "SPF"),
    (249, "TKEY"),
    (250, "TSIG"),
    (251, "IXFR"),
    (252, "AXFR"),
    (255, "ANY"),
    (257, "CAA"),
];

/// The mnemonic of an RR type, or `TYPEnnn`.
pub fn type_name(rtype: u16) -> String {
    match TYPES.iter().find(|(v, _)| *v == rtype) {
        Some((_, n)) => (*n).to_owned(),
        None => format!("TYPE{rtype}"),
    }
}

/// An RR type from its mnemonic or `TYPEnnn` (case-insensitive).
pub fn type_from_name(name: &str) -> Option<u16> {
    let up = name.to_ascii_uppercase();
    TYPES
        .iter()
        .find(|(_, n)| *n == up)
        .map(|(v, _)| *v)
        .or_else(|| up.strip_prefix("TYPE")?.parse().ok())
}

/// The mnemonic of a class (`IN`, `CH`, `HS`, `NONE`, `ANY`), or `CLASSnnn`.
pub fn class_name(class: u16) -> String {
    match class {
        1 => "IN".into(),
        3 => "CH".into(),
        4 => "HS".into(),
        254 => "NONE".into(),
        255 => "ANY".into(),
        n => format!("CLASS{n}"),
    }
}

/// A class from its mnemonic or `CLASSnnn` (case-insensitive).
pub fn class_from_name(name: &str) -> Option<u16> {
    let up = name.to_ascii_uppercase();
    match up.as_str() {
        "IN" => Some(1),
        "CH" => Some(3),
        "HS" => Some(4),
        "NONE" => Some(254),
        "ANY" => Some(255),
        _ => up.strip_prefix("CLASS")?.parse().ok(),
    }
}

/// The name of a (possibly extended, RFC 6891) response code.
pub fn rcode_name(rcode: u16) -> String {
    let n = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        23 => "BADCOOKIE",
        n => return format!("RCODE{n}"),
    };
    n.to_owned()
}

/// The name of an opcode.
pub fn opcode_name(opcode: u8) -> String {
    let n = match opcode {
        0 => "QUERY",
        1 => "IQUERY",
        2 => "STATUS",
        4 => "NOTIFY",
        5 => "UPDATE",
        6 => "DSO",
        n => return format!("OPCODE{n}"),
    };
    n.to_owned()
}

// ---- messages ----------------------------------------------------------------------------

/// One entry of the question section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The name, with its case as sent or echoed.
    pub name: Name,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.name,
            class_name(self.qclass),
            type_name(self.qtype)
        )
    }
}

/// A resource record, its data uncompressed (compression pointers inside the data of the types
/// that may carry them are expanded, so data from different servers compares byte for byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Owner name, case as received.
    pub owner: Name,
    /// TYPE.
    pub rtype: u16,
    /// CLASS.
    pub class: u16,
    /// TTL.
    pub ttl: u32,
    /// RDATA, uncompressed.
    pub rdata: Vec<u8>,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}",
            self.owner,
            self.ttl,
            class_name(self.class),
            type_name(self.rtype),
            rdata_text(self.rtype, &self.rdata)
        )
    }
}

/// The OPT pseudo-record (RFC 6891 6.1.2), decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opt {
    /// The requestor's (or responder's) UDP payload size, from the CLASS field.
    pub udp_size: u16,
    /// The upper 8 bits of the extended RCODE.
    pub ext_rcode: u8,
    /// EDNS version.
    pub version: u8,
    /// The DO bit (RFC 3225).
    pub dnssec_ok: bool,
    /// The other 15 flag bits (must be zero).
    pub z: u16,
    /// The options as (code, data), in message order.
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Opt {
    /// Builds from the OPT record's CLASS, TTL and RDATA.
    pub fn from_parts(class: u16, ttl: u32, rdata: &[u8]) -> Result<Opt, WireError> {
        let mut options = Vec::new();
        let mut pos = 0;
        while pos < rdata.len() {
            if rdata.len() - pos < 4 {
                return err(format!(
                    "OPT: {} stray octets after the options",
                    rdata.len() - pos
                ));
            }
            let code = u16::from_be_bytes([rdata[pos], rdata[pos + 1]]);
            let len = u16::from_be_bytes([rdata[pos + 2], rdata[pos + 3]]) as usize;
            pos += 4;
            if rdata.len() - pos < len {
                return err(format!(
                    "OPT: option {code} of {len} octets runs past the record"
                ));
            }
            options.push((code, rdata[pos..pos + len].to_vec()));
            pos += len;
        }
        Ok(Opt {
            udp_size: class,
            ext_rcode: (ttl >> 24) as u8,
            version: (ttl >> 16) as u8,
            dnssec_ok: ttl & 0x8000 != 0,
            z: (ttl & 0x7fff) as u16,
            options,
        })
    }
}

/// A whole DNS message, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// ID.
    pub id: u16,
    /// QR: this is a response.
    pub qr: bool,
    /// OPCODE.
    pub opcode: u8,
    /// AA.
    pub aa: bool,
    /// TC.
    pub tc: bool,
    /// RD.
    pub rd: bool,
    /// RA.
    pub ra: bool,
    /// Z, the reserved bit (must be zero).
    pub z: bool,
    /// AD.
    pub ad: bool,
    /// CD.
    pub cd: bool,
    /// The full RCODE: the header's 4 bits, plus the OPT record's upper 8 bits when there is
    /// one (so BADVERS is 16).
    pub rcode: u16,
    /// The question section.
    pub question: Vec<Question>,
    /// The answer section.
    pub answer: Vec<Record>,
    /// The authority section.
    pub authority: Vec<Record>,
    /// The additional section, without the OPT record.
    pub additional: Vec<Record>,
    /// The OPT record, if there was (at least) one.
    pub opt: Option<Opt>,
    /// How many OPT records the additional section held (more than one is a FORMERR).
    pub opt_count: usize,
}

impl fmt::Display for Message {
    /// A dig-like rendering: the header, then each section, one record a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut flags = Vec::new();
        for (on, n) in [
            (self.qr, "qr"),
            (self.aa, "aa"),
            (self.tc, "tc"),
            (self.rd, "rd"),
            (self.ra, "ra"),
            (self.z, "z"),
            (self.ad, "ad"),
            (self.cd, "cd"),
        ] {
            if on {
                flags.push(n);
            }
        }
        writeln!(
            f,
            ";; {} {} id {} flags [{}]",
            opcode_name(self.opcode),
            rcode_name(self.rcode),
            self.id,
            flags.join(" ")
        )?;
        if let Some(o) = &self.opt {
            let codes: Vec<u16> = o.options.iter().map(|(c, _)| *c).collect();
            writeln!(
                f,
                ";; OPT ×{} version {} udp {} do {} z {:#x} options {codes:?}",
                self.opt_count,
                o.version,
                o.udp_size,
                u8::from(o.dnssec_ok),
                o.z
            )?;
        }
        for q in &self.question {
            writeln!(f, ";; question: {q}")?;
        }
        for (name, recs) in [
            ("answer", &self.answer),
            ("authority", &self.authority),
            ("additional", &self.additional),
        ] {
            for r in recs.iter() {
                writeln!(f, "{name}: {r}")?;
            }
        }
        Ok(())
    }
}

/// Reads a possibly compressed name at `pos`; returns it and the position after it (after the
/// first pointer, if it used one).
fn read_name(msg: &[u8], mut pos: usize) -> Result<(Name, usize), WireError> {
    let mut labels = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    let mut len = 1;
    loop {
        let Some(&b) = msg.get(pos) else {
            return err(format!("name at offset {pos} runs past the end"));
        };
        match b & 0xc0 {
            0x00 if b == 0 => {
                let next = end.unwrap_or(pos + 1);
                return Ok((Name { labels }, next));
            }
            0x00 => {
                let l = b as usize;
                let Some(label) = msg.get(pos + 1..pos + 1 + l) else {
                    return err(format!("label at offset {pos} runs past the end"));
                };
                len += l + 1;
                if len > MAX_NAME_LEN {
                    return err(format!(
                        "name at offset {pos} is over {MAX_NAME_LEN} octets"
                    ));
                }
                labels.push(label.to_vec());
                pos += 1 + l;
            }
            0xc0 => {
                let Some(&lo) = msg.get(pos + 1) else {
                    return err(format!("pointer at offset {pos} runs past the end"));
                };
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return err(format!("compression loop at offset {pos}"));
                }
                end.get_or_insert(pos + 2);
                let target = (((b & 0x3f) as usize) << 8) | lo as usize;
                if target >= msg.len() {
                    return err(format!("pointer at offset {pos} to {target}, past the end"));
                }
                pos = target;
            }
            _ => return err(format!("label type {:#04x} at offset {pos}", b & 0xc0)),
        }
    }
}

/// One field of an RDATA layout: a domain name or a run of fixed-size octets.
#[derive(Clone, Copy)]
enum Field {
    Name,
    Octets(usize),
}

/// The layout of the RDATA of the types that hold domain names: these may arrive compressed
/// (RFC 3597 section 4 lists which) and their names are lowercased in canonical form
/// (RFC 4034 6.2 as amended by RFC 6840 5.1). Other types are opaque octets to the harness.
fn rdata_layout(rtype: u16) -> Option<&'static [Field]> {
    use Field::*;
    Some(match rtype {
        // NS, MD, MF, CNAME, MB, MG, MR, PTR, DNAME
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 39 => &[Name],
        // SOA: MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM
        6 => &[Name, Name, Octets(20)],
        // MINFO, RP
        14 | 17 => &[Name, Name],
        // MX, AFSDB, RT, KX
        15 | 18 | 21 | 36 => &[Octets(2), Name],
        // PX
        26 => &[Octets(2), Name, Name],
        // SRV: PRIORITY WEIGHT PORT TARGET
        33 => &[Octets(6), Name],
        _ => return None,
    })
}

/// Reads the RDATA of a record at `pos` (`len` octets) with its names uncompressed.
fn read_rdata(msg: &[u8], pos: usize, len: usize, rtype: u16) -> Result<Vec<u8>, WireError> {
    let Some(raw) = msg.get(pos..pos + len) else {
        return err(format!("RDATA at offset {pos} runs past the end"));
    };
    let Some(layout) = rdata_layout(rtype) else {
        return Ok(raw.to_vec());
    };
    let mut out = Vec::with_capacity(len);
    let mut at = pos;
    for field in layout {
        match *field {
            Field::Name => {
                let (name, next) = read_name(msg, at)?;
                out.extend_from_slice(&name.to_wire());
                at = next;
            }
            Field::Octets(n) => {
                let Some(b) = msg.get(at..at + n) else {
                    return err(format!(
                        "{} RDATA at offset {pos} is short",
                        type_name(rtype)
                    ));
                };
                out.extend_from_slice(b);
                at += n;
            }
        }
    }
    if at != pos + len {
        return err(format!(
            "{} RDATA at offset {pos}: RDLENGTH {len}, but the fields take {}",
            type_name(rtype),
            at - pos
        ));
    }
    Ok(out)
}

impl Message {
    /// Parses a whole message. Anything malformed is an error naming where; octets after the
    /// last record are an error too (a server's reply has none).
    pub fn parse(msg: &[u8]) -> Result<Message, WireError> {
        if msg.len() < 12 {
            return err(format!("{} octets, shorter than a header", msg.len()));
        }
        let word = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        let flags = word(2);
        let counts = [word(4), word(6), word(8), word(10)];
        let mut m = Message {
            id: word(0),
            qr: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0xf) as u8,
            aa: flags & 0x0400 != 0,
            tc: flags & 0x0200 != 0,
            rd: flags & 0x0100 != 0,
            ra: flags & 0x0080 != 0,
            z: flags & 0x0040 != 0,
            ad: flags & 0x0020 != 0,
            cd: flags & 0x0010 != 0,
            rcode: flags & 0xf,
            question: Vec::new(),
            answer: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            opt: None,
            opt_count: 0,
        };
        let mut pos = 12;
        for _ in 0..counts[0] {
            let (name, next) = read_name(msg, pos)?;
            let Some(tc) = msg.get(next..next + 4) else {
                return err(format!("question at offset {pos} runs past the end"));
            };
            m.question.push(Question {
                name,
                qtype: u16::from_be_bytes([tc[0], tc[1]]),
                qclass: u16::from_be_bytes([tc[2], tc[3]]),
            });
            pos = next + 4;
        }
        for (section, &count) in counts[1..].iter().enumerate() {
            for _ in 0..count {
                let (owner, next) = read_name(msg, pos)?;
                let Some(h) = msg.get(next..next + 10) else {
                    return err(format!("record at offset {pos} runs past the end"));
                };
                let rtype = u16::from_be_bytes([h[0], h[1]]);
                let class = u16::from_be_bytes([h[2], h[3]]);
                let ttl = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                let rdlen = u16::from_be_bytes([h[8], h[9]]) as usize;
                let rdata = read_rdata(msg, next + 10, rdlen, rtype)?;
                pos = next + 10 + rdlen;
                if section == 2 && rtype == TYPE_OPT {
                    m.opt_count += 1;
                    if m.opt.is_none() {
                        let opt = Opt::from_parts(class, ttl, &rdata)?;
                        m.rcode |= (opt.ext_rcode as u16) << 4;
                        m.opt = Some(opt);
                    }
                    continue;
                }
                let rec = Record {
                    owner,
                    rtype,
                    class,
                    ttl,
                    rdata,
                };
                match section {
                    0 => m.answer.push(rec),
                    1 => m.authority.push(rec),
                    _ => m.additional.push(rec),
                }
            }
        }
        if pos != msg.len() {
            return err(format!("{} octets after the last record", msg.len() - pos));
        }
        Ok(m)
    }
}

// ---- building queries --------------------------------------------------------------------

/// EDNS(0) as a query asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// EDNS version (0 is the only one there is; anything else must get BADVERS).
    pub version: u8,
    /// The advertised UDP payload size; `None` leaves it to the client (kdig: 1232).
    pub udp_size: Option<u16>,
    /// The DO bit.
    pub dnssec_ok: bool,
}

impl Edns {
    /// Version 0 with the given size, DO clear.
    pub const fn v0(udp_size: u16) -> Edns {
        Edns {
            version: 0,
            udp_size: Some(udp_size),
            dnssec_ok: false,
        }
    }
}

/// The header fields a query sets (everything else is zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryFlags {
    /// QR (set only to check that servers ignore responses).
    pub qr: bool,
    /// OPCODE.
    pub opcode: u8,
    /// AA.
    pub aa: bool,
    /// TC.
    pub tc: bool,
    /// RD.
    pub rd: bool,
    /// RA.
    pub ra: bool,
    /// Z.
    pub z: bool,
    /// AD.
    pub ad: bool,
    /// CD.
    pub cd: bool,
    /// RCODE (queries carry 0).
    pub rcode: u8,
}

impl QueryFlags {
    /// The header's flags word.
    pub fn word(&self) -> u16 {
        let b = |on: bool, bit: u16| if on { bit } else { 0 };
        b(self.qr, 0x8000)
            | ((self.opcode as u16 & 0xf) << 11)
            | b(self.aa, 0x0400)
            | b(self.tc, 0x0200)
            | b(self.rd, 0x0100)
            | b(self.ra, 0x0080)
            | b(self.z, 0x0040)
            | b(self.ad, 0x0020)
            | b(self.cd, 0x0010)
            | (self.rcode as u16 & 0xf)
    }
}

/// A query's bytes: the header, one question (uncompressed) and, with `edns`, an OPT record
/// carrying `options`.
pub fn build_query(
    id: u16,
    flags: QueryFlags,
    question: &Question,
    edns: Option<Edns>,
    options: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.word().to_be_bytes());
    let arcount = u16::from(edns.is_some());
    for count in [1, 0, 0, arcount] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(&question.name.to_wire());
    out.extend_from_slice(&question.qtype.to_be_bytes());
    out.extend_from_slice(&question.qclass.to_be_bytes());
    if let Some(e) = edns {
        out.extend_from_slice(&opt_record(e, options));
    }
    out
}

/// An OPT record (root owner) for `edns` with `options`.
pub fn opt_record(edns: Edns, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let ttl = ((edns.version as u32) << 16) | if edns.dnssec_ok { 0x8000 } else { 0 };
    let mut out = vec![0];
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&edns.udp_size.unwrap_or(1232).to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}

// ---- canonical form and presentation -----------------------------------------------------

/// The RDATA in canonical form for comparison: the domain names inside the types that hold
/// them lowercased (RFC 4034 6.2, RFC 6840 5.1), everything else as is. Names in RDATA may
/// legitimately come back in another case (a server may compress them against the question),
/// while TXT, CAA and unknown data are compared octet for octet.
pub fn canonical_rdata(rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let Some(layout) = rdata_layout(rtype) else {
        return rdata.to_vec();
    };
    let mut out = Vec::with_capacity(rdata.len());
    let mut at = 0;
    for field in layout {
        match *field {
            Field::Name => match read_name(rdata, at) {
                Ok((name, next)) => {
                    out.extend_from_slice(&name.to_lowercase().to_wire());
                    at = next;
                }
                Err(_) => return rdata.to_vec(),
            },
            Field::Octets(n) => {
                let Some(b) = rdata.get(at..at + n) else {
                    return rdata.to_vec();
                };
                out.extend_from_slice(b);
                at += n;
            }
        }
    }
    out.extend_from_slice(&rdata[at.min(rdata.len())..]);
    out
}

/// RDATA in presentation format for the types the test zones use, else RFC 3597's generic
/// `\# LEN HEX`.
pub fn rdata_text(rtype: u16, rdata: &[u8]) -> String {
    presentation(rtype, rdata).unwrap_or_else(|| generic_rdata(rdata))
}

/// `\# LEN HEX` (RFC 3597 section 5).
pub fn generic_rdata(rdata: &[u8]) -> String {
    let mut s = format!("\\# {}", rdata.len());
    if !rdata.is_empty() {
        s.push(' ');
        for b in rdata {
            let _ = write!(s, "{b:02x}");
        }
    }
    s
}

fn presentation(rtype: u16, rdata: &[u8]) -> Option<String> {
    let u16_at = |i: usize| Some(u16::from_be_bytes(rdata.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_be_bytes(rdata.get(i..i + 4)?.try_into().ok()?));
    let name_at = |i: usize| -> Option<(Name, usize)> {
        // Uncompressed by now: a pointer here would be a parse error, so read_name on the
        // RDATA alone either finds plain labels or fails.
        read_name(rdata, i).ok()
    };
    let whole = |s: String, end: usize| (end == rdata.len()).then_some(s);
    match rtype {
        1 => {
            let a: [u8; 4] = rdata.try_into().ok()?;
            Some(Ipv4Addr::from(a).to_string())
        }
        28 => {
            let a: [u8; 16] = rdata.try_into().ok()?;
            Some(Ipv6Addr::from(a).to_string())
        }
        2 | 5 | 12 | 39 => {
            let (n, end) = name_at(0)?;
            whole(n.to_string(), end)
        }
        6 => {
            let (m, e1) = name_at(0)?;
            let (r, e2) = name_at(e1)?;
            let nums: Vec<String> = (0..5)
                .map(|k| u32_at(e2 + 4 * k).map(|v| v.to_string()))
                .collect::<Option<_>>()?;
            whole(format!("{m} {r} {}", nums.join(" ")), e2 + 20)
        }
        15 => {
            let (n, end) = name_at(2)?;
            whole(format!("{} {n}", u16_at(0)?), end)
        }
        33 => {
            let (n, end) = name_at(6)?;
            whole(
                format!("{} {} {} {n}", u16_at(0)?, u16_at(2)?, u16_at(4)?),
                end,
            )
        }
        16 | 99 => {
            let mut parts = Vec::new();
            let mut i = 0;
            while i < rdata.len() {
                let l = rdata[i] as usize;
                parts.push(quoted(rdata.get(i + 1..i + 1 + l)?));
                i += 1 + l;
            }
            (!parts.is_empty()).then(|| parts.join(" "))
        }
        257 => {
            let flags = *rdata.first()?;
            let tl = *rdata.get(1)? as usize;
            let tag = rdata.get(2..2 + tl)?;
            let value = &rdata[2 + tl..];
            Some(format!(
                "{flags} {} {}",
                String::from_utf8_lossy(tag),
                quoted(value)
            ))
        }
        _ => None,
    }
}

/// A character-string in quotes, `"` and `\` escaped, octets outside printable ASCII as `\DDD`.
fn quoted(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &c in s {
        match c {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            _ => {
                let _ = write!(out, "\\{c:03}");
            }
        }
    }
    out.push('"');
    out
}

/// Hex digits (either case) to octets.
pub fn from_hex(hex: &str) -> Result<Vec<u8>, WireError> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) {
        return err(format!("odd number of hex digits in {hex:?}"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .map_err(|_| WireError(format!("not hex: {hex:?}")))
        })
        .collect()
}

#[cfg(test)]
mod test {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_text(s, None).unwrap()
    }

    #[test]
    fn names_parse_and_print_with_escapes() {
        let origin = name("example.test.");
        let n = Name::from_text(r"dot\.in\.label", Some(&origin)).unwrap();
        assert_eq!(n.labels().len(), 3);
        assert_eq!(n.labels()[0], b"dot.in.label");
        assert_eq!(n.to_string(), r"dot\.in\.label.example.test.");
        let n = Name::from_text(r"a\032b\255.", None).unwrap();
        assert_eq!(n.labels()[0], b"a b\xff");
        assert_eq!(n.to_string(), r"a\032b\255.");
        assert_eq!(Name::from_text("@", Some(&origin)).unwrap(), origin);
        assert_eq!(name(".").to_string(), ".");
        assert!(Name::from_text("a..b.", None).is_err());
        assert!(Name::from_text("relative", None).is_err());
        assert!(Name::from_text(&format!("{}.", "a".repeat(64)), None).is_err());
        let long = format!("{}.", vec!["a".repeat(63); 4].join("."));
        assert!(
            Name::from_text(&long, None).is_err(),
            "256 octets on the wire"
        );
    }

    #[test]
    fn name_relations_ignore_case() {
        let a = name("WWW.Example.TEST.");
        assert!(a.eq_ignore_case(&name("www.example.test.")));
        assert_ne!(a, name("www.example.test."));
        assert!(a.is_at_or_below(&name("example.test.")));
        assert!(!name("xexample.test.").is_at_or_below(&name("example.test.")));
        assert!(name("example.test.").is_at_or_below(&Name::root()));
        assert_eq!(a.parent().unwrap(), name("Example.TEST."));
        assert!(name("*.wild.example.test.").is_wildcard());
        assert_eq!(
            name("www.example.").mixed_case(true).to_string(),
            "WwW.eXaMpLe."
        );
    }

    /// A reply as NSD sends it for `www.example.test. A` with EDNS, compression pointers in
    /// the answer owners and in the authority's NS data.
    fn captured_reply() -> Vec<u8> {
        let mut m = vec![
            0x12, 0x34, 0x84, 0x00, 0, 1, 0, 1, 0, 1, 0, 1, // header: QR AA, 1/1/1/1
        ];
        m.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
        // answer: www.example.test. (pointer to 12) 300 IN A 192.0.2.80
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 80]);
        // authority: example.test. (pointer to 16) 3600 IN NS ns1.<pointer to 16>
        m.extend_from_slice(&[0xc0, 16, 0, 2, 0, 1, 0, 0, 0x0e, 0x10, 0, 6]);
        m.extend_from_slice(b"\x03ns1\xc0\x10");
        // additional: OPT, 1232, ext-rcode 1 (BADVERS), version 0, DO, NSID "ab"
        m.extend_from_slice(&[
            0, 0, 41, 0x04, 0xd0, 1, 0, 0x80, 0, 0, 6, 0, 3, 0, 2, b'a', b'b',
        ]);
        m
    }

    #[test]
    fn parses_a_reply_and_expands_compression() {
        let m = Message::parse(&captured_reply()).unwrap();
        assert_eq!(m.id, 0x1234);
        assert!(m.qr && m.aa && !m.tc && !m.rd);
        assert_eq!(m.rcode, 16, "BADVERS: 0 in the header, 1 in OPT");
        assert_eq!(m.question[0].to_string(), "www.example.test. IN A");
        assert_eq!(
            m.answer[0].to_string(),
            "www.example.test. 300 IN A 192.0.2.80"
        );
        assert_eq!(
            m.authority[0].to_string(),
            "example.test. 3600 IN NS ns1.example.test."
        );
        assert_eq!(m.authority[0].rdata, b"\x03ns1\x07example\x04test\x00");
        let opt = m.opt.unwrap();
        assert_eq!((opt.udp_size, opt.version, opt.dnssec_ok), (1232, 0, true));
        assert_eq!(opt.options, vec![(3, b"ab".to_vec())]);
        assert!(m.additional.is_empty());
    }

    #[test]
    fn malformed_messages_are_errors() {
        let good = captured_reply();
        assert!(Message::parse(&good[..11]).is_err());
        assert!(Message::parse(&good[..good.len() - 1]).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(Message::parse(&trailing).is_err());
        let mut looped = good.clone();
        looped[35] = 34; // the answer's owner pointer (at 34) points at itself
        let e = Message::parse(&looped).unwrap_err();
        assert!(e.0.contains("loop"), "{e}");
    }

    #[test]
    fn builds_queries_the_parser_reads_back() {
        let q = Question {
            name: name("MixedCase.example.test."),
            qtype: 1,
            qclass: 1,
        };
        let flags = QueryFlags {
            rd: true,
            cd: true,
            ..Default::default()
        };
        let bytes = build_query(7, flags, &q, Some(Edns::v0(4096)), &[(65001, vec![1, 2])]);
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.id, 7);
        assert!(m.rd && m.cd && !m.qr && !m.ad);
        assert_eq!(m.question, vec![q]);
        let opt = m.opt.unwrap();
        assert_eq!((opt.udp_size, opt.version), (4096, 0));
        assert_eq!(opt.options, vec![(65001, vec![1, 2])]);
    }

    #[test]
    fn canonical_form_lowercases_names_in_rdata_only() {
        let mx = [&[0, 10][..], &name("Mail.Example.TEST.").to_wire()].concat();
        assert_eq!(
            canonical_rdata(15, &mx),
            [&[0, 10][..], &name("mail.example.test.").to_wire()].concat()
        );
        let txt = b"\x03AbC".to_vec();
        assert_eq!(canonical_rdata(16, &txt), txt);
        // A preference of 65 ('A') is a number, not a letter.
        let mx65 = [&[0, 65][..], &name("m.").to_wire()].concat();
        assert_eq!(canonical_rdata(15, &mx65), mx65);
    }

    #[test]
    fn presents_the_types_the_zones_use() {
        assert_eq!(
            rdata_text(16, b"\x03one\x00\x04a\"b\xff"),
            r#""one" "" "a\"b\255""#
        );
        assert_eq!(rdata_text(257, b"\x00\x05issue;"), r#"0 issue ";""#);
        let srv = [
            &[0, 10, 0, 60, 0x13, 0xc4][..],
            &name("sip.example.test.").to_wire(),
        ]
        .concat();
        assert_eq!(rdata_text(33, &srv), "10 60 5060 sip.example.test.");
        assert_eq!(rdata_text(65280, &[10, 0, 0, 1]), r"\# 4 0a000001");
        assert_eq!(rdata_text(65281, &[]), r"\# 0");
        assert_eq!(
            rdata_text(1, &[1, 2, 3]),
            r"\# 3 010203",
            "a short A is shown raw"
        );
        assert_eq!(type_from_name("type65280"), Some(65280));
        assert_eq!(type_name(65280), "TYPE65280");
        assert_eq!(type_from_name("caa"), Some(257));
        assert_eq!(class_from_name("CLASS3"), Some(3));
        assert_eq!(rcode_name(16), "BADVERS");
    }
}
