//! Zone loading: RFC 1035 master files in, [`Zones`] out — the immutable tables every worker
//! answers from.
//!
//! The text is scanned by `domain` (`zonefile::inplace`), entry by entry. Everything the query
//! path needs is decided here, once: names are interned (every owner, every name in rdata, all
//! their ancestors) so the answer code compresses by name id; each record's rdata is kept in
//! wire form with the positions of the names it holds; every node knows its RRsets, its CNAME,
//! its wildcard child and the zone cut above it; every NS, MX and SRV RRset knows the A/AAAA
//! RRsets its additional section takes; the SOA for negative answers carries its RFC 2308 TTL.
//!
//! It never runs on a worker thread: loading allocates freely and reports every problem with the
//! file and line it comes from.

use super::name::{self, BuildNameHasher};
use domain::base::iana::{Class, Rtype};
use domain::base::name::ToLabelIter;
use domain::base::rdata::ComposeRecordData;
use domain::zonefile::inplace::{Entry, Zonefile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// TTL of records that give none, in a file without `$TTL` (NSD's and Knot's).
const DEFAULT_TTL: u32 = 3600;

/// "None" for the `u32` indices of the tables.
pub(super) const NONE: u32 = u32::MAX;

pub(super) const T_A: u16 = 1;
pub(super) const T_NS: u16 = 2;
pub(super) const T_CNAME: u16 = 5;
pub(super) const T_SOA: u16 = 6;
pub(super) const T_PTR: u16 = 12;
pub(super) const T_MX: u16 = 15;
pub(super) const T_AAAA: u16 = 28;
pub(super) const T_SRV: u16 = 33;
pub(super) const T_DNAME: u16 = 39;
pub(super) const T_DS: u16 = 43;
pub(super) const T_RRSIG: u16 = 46;
pub(super) const T_NSEC: u16 = 47;
pub(super) const T_DNSKEY: u16 = 48;

/// A zone file to load.
#[derive(Debug, Clone)]
pub struct ZoneFile {
    /// Where the master file is.
    pub path: PathBuf,
    /// The zone's name (`example.com`), if the file does not say it with `$ORIGIN` or an
    /// absolute SOA owner.
    pub origin: Option<String>,
}

impl From<PathBuf> for ZoneFile {
    fn from(path: PathBuf) -> Self {
        ZoneFile { path, origin: None }
    }
}

/// A zone file's text already in memory (tests, or a caller that read it itself).
#[derive(Debug, Clone, Copy)]
pub struct ZoneSource<'a> {
    /// The name used in error messages.
    pub path: &'a Path,
    /// As [`ZoneFile::origin`].
    pub origin: Option<&'a str>,
    /// The master file's contents.
    pub text: &'a str,
}

/// Why zones could not be loaded. Every variant names the file; [`ZoneError::Invalid`] the line.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The file could not be read.
    #[error("reading zone file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file's contents are wrong: syntax, or a rule of RFC 1034/2181 (one SOA at the apex,
    /// NS at the apex, nothing beside a CNAME, nothing outside the zone, no zone twice).
    #[error("{}:{line}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the entry at fault.
        line: usize,
        /// What is wrong, in words.
        problem: String,
    },
}

/// Every zone sluice serves, compiled for answering. Immutable once built, `Send + Sync`, and
/// shared by the workers behind an `Arc` (the app owns the swap handle).
#[derive(Debug)]
pub struct Zones {
    pub(super) names: NameTable,
    pub(super) zones: Box<[Zone]>,
}

/// All names, interned: id → (first label, parent), and lower-cased wire form → id.
#[derive(Debug, Default)]
pub(super) struct NameTable {
    pub entries: Vec<NameEntry>,
    /// Each entry's first label as `len, bytes…`, lower-cased.
    pub labels: Vec<u8>,
    pub index: HashMap<Box<[u8]>, u32, BuildNameHasher>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct NameEntry {
    /// Offset of the label's length octet in `labels`.
    pub label: u32,
    /// The parent's id; `NONE` for the root.
    pub parent: u32,
    /// The zone whose apex this is, or `NONE`.
    pub apex_of: u32,
}

#[derive(Debug)]
pub(super) struct Zone {
    pub apex: u32,
    /// RRset indices of the apex SOA, of the SOA with the negative TTL, of the apex NS.
    pub soa: u32,
    pub neg_soa: u32,
    pub apex_ns: u32,
    /// The closest enclosing zone also served, if any (DS queries at a child's apex).
    pub parent_zone: u32,
    pub nodes: HashMap<u32, Node, BuildNameHasher>,
    pub rrsets: Vec<Rrset>,
    pub rrs: Vec<Rr>,
    pub rdata: Vec<u8>,
    pub rnames: Vec<RdataName>,
    pub extras: Vec<Extra>,
}

/// A name that exists in the zone (with data, or an empty non-terminal).
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    /// Range of `Zone::rrsets`, in the order the types first appear in the file.
    pub rrsets: (u32, u32),
    /// The CNAME RRset, or `NONE`.
    pub cname: u32,
    /// Name id of the `*` child, if that exists, else `NONE`.
    pub wildcard: u32,
    /// Name id of the highest zone cut at or above this node (the apex excluded), or `NONE`.
    pub cut: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Rrset {
    pub rtype: u16,
    pub rrs: (u32, u32),
    /// Range of `Zone::extras`: what this RRset puts in the additional section.
    pub extras: (u32, u32),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Rr {
    pub ttl: u32,
    /// Range of `Zone::rdata`: the rdata with every name uncompressed.
    pub rdata: (u32, u32),
    /// Range of `Zone::rnames`, in order of position.
    pub names: (u32, u32),
}

/// A name inside rdata: where it starts, how long it is uncompressed, which name it is, and
/// whether it may be compressed (RFC 3597 §4: only the RFC 1035 types).
#[derive(Debug, Clone, Copy)]
pub(super) struct RdataName {
    pub at: u16,
    pub len: u16,
    pub id: u32,
    pub compress: bool,
}

/// One additional-section owner: its A and AAAA RRsets (`NONE` if absent).
#[derive(Debug, Clone, Copy)]
pub(super) struct Extra {
    pub owner: u32,
    pub a: u32,
    pub aaaa: u32,
}

impl NameTable {
    fn new() -> Self {
        let mut t = NameTable::default();
        t.labels.push(0);
        t.entries.push(NameEntry {
            label: 0,
            parent: NONE,
            apex_of: NONE,
        });
        t.index.insert(Box::from(&b"\x00"[..]), 0);
        t
    }

    /// The id of `wire` (uncompressed, any case), adding it and its ancestors if new. Names
    /// are kept lower-cased, as NSD and Knot keep them: answers spell every name from the zone
    /// in lower case (only the question, and pointers to it, keep the client's case).
    fn intern(&mut self, wire: &[u8]) -> u32 {
        let lower = name::to_lower(wire);
        if let Some(&id) = self.index.get(&lower[..]) {
            return id;
        }
        let parent = self.intern(name::parent(wire).unwrap_or(b"\x00"));
        let l = wire[0] as usize;
        let label = self.labels.len() as u32;
        self.labels.extend_from_slice(&lower[..1 + l]);
        let id = self.entries.len() as u32;
        self.entries.push(NameEntry {
            label,
            parent,
            apex_of: NONE,
        });
        self.index.insert(lower.into_boxed_slice(), id);
        id
    }

    /// The id of a lower-cased wire name, if interned.
    #[inline]
    pub fn get(&self, lower: &[u8]) -> Option<u32> {
        self.index.get(lower).copied()
    }

    /// The first label of `id` as `len, bytes…`.
    #[inline]
    pub fn label(&self, id: u32) -> &[u8] {
        let at = self.entries[id as usize].label as usize;
        let l = self.labels[at] as usize;
        &self.labels[at..at + 1 + l]
    }

    #[inline]
    pub fn parent(&self, id: u32) -> u32 {
        self.entries[id as usize].parent
    }

    /// Whether `id` is `anc` or below it.
    fn is_at_or_below(&self, mut id: u32, anc: u32) -> bool {
        while id != NONE {
            if id == anc {
                return true;
            }
            id = self.parent(id);
        }
        false
    }

    /// Uncompressed wire form (for messages and tests).
    pub fn wire(&self, mut id: u32) -> Vec<u8> {
        let mut v = Vec::new();
        while id != NONE {
            v.extend_from_slice(self.label(id));
            id = self.parent(id);
        }
        v
    }
}

/// One record as read from a file, before compiling.
struct RawRecord {
    owner: Vec<u8>,
    rtype: u16,
    ttl: u32,
    rdata: Vec<u8>,
    line: usize,
}

/// One file's records and what we know of it.
struct RawZone {
    path: PathBuf,
    apex: Vec<u8>,
    records: Vec<RawRecord>,
}

impl Zones {
    /// Reads and compiles zone files. Fails on the first problem, naming file and line.
    pub fn load(files: &[ZoneFile]) -> Result<Zones, ZoneError> {
        let mut texts = Vec::with_capacity(files.len());
        for f in files {
            let text = std::fs::read_to_string(&f.path).map_err(|source| ZoneError::Read {
                path: f.path.clone(),
                source,
            })?;
            texts.push(text);
        }
        let sources: Vec<ZoneSource<'_>> = files
            .iter()
            .zip(&texts)
            .map(|(f, t)| ZoneSource {
                path: &f.path,
                origin: f.origin.as_deref(),
                text: t,
            })
            .collect();
        Self::from_sources(&sources)
    }

    /// Compiles zones from texts in memory; as [`Zones::load`].
    pub fn from_sources(sources: &[ZoneSource<'_>]) -> Result<Zones, ZoneError> {
        let mut raws = Vec::with_capacity(sources.len());
        let mut seen: HashMap<Vec<u8>, (PathBuf, usize)> = HashMap::new();
        for s in sources {
            let raw = scan(s)?;
            check(&raw)?;
            let key = name::to_lower(&raw.apex);
            let soa_line = raw
                .records
                .iter()
                .find(|r| r.rtype == T_SOA)
                .map_or(1, |r| r.line);
            if let Some((p, l)) = seen.get(&key) {
                return Err(invalid(
                    s.path,
                    soa_line,
                    format!(
                        "zone {} is already loaded from {}:{l}",
                        name::display(&raw.apex),
                        p.display()
                    ),
                ));
            }
            seen.insert(key, (s.path.to_path_buf(), soa_line));
            raws.push(raw);
        }
        Ok(compile(raws))
    }

    /// How many zones are served.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether no zone is served.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Each zone's name (`example.com.`) and SOA serial, for logs and status.
    pub fn summary(&self) -> Vec<(String, u32)> {
        self.zones
            .iter()
            .map(|z| {
                let rr = z.rrs[z.rrsets[z.soa as usize].rrs.0 as usize];
                let rd = &z.rdata[rr.rdata.0 as usize..rr.rdata.1 as usize];
                let s = rd.len() - 20;
                let serial = u32::from_be_bytes([rd[s], rd[s + 1], rd[s + 2], rd[s + 3]]);
                (name::display(&self.names.wire(z.apex)), serial)
            })
            .collect()
    }
}

fn invalid(path: &Path, line: usize, problem: impl Into<String>) -> ZoneError {
    ZoneError::Invalid {
        path: path.to_path_buf(),
        line,
        problem: problem.into(),
    }
}

/// An entry of a master file as our splitter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntryAt {
    /// 1-based line where it starts.
    line: usize,
    /// `$ORIGIN`/`$TTL`: consumed by the scanner; everything else (records, `$INCLUDE`) is
    /// handed out by it, in order.
    directive: bool,
    /// A record without a TTL of its own, before any `$TTL`.
    no_ttl: bool,
}

/// Finds every entry of a master file.
///
/// `domain`'s scanner reads ahead, so neither its offsets nor the line of its errors say
/// reliably which entry a record or an error belongs to; entries are found here instead, with
/// the same rules (parentheses and quotes continue an entry, `;` starts a comment, `\` escapes),
/// and the n-th entry the scanner hands out is the n-th non-directive entry here.
fn entry_starts(text: &str) -> Vec<EntryAt> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line, mut depth, mut quoted, mut at_start) = (0, 1, 0u32, false, true);
    let mut dollar_ttl = false;
    while i < b.len() {
        if at_start && depth == 0 && !quoted {
            at_start = false;
            let mut j = i;
            while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\r') {
                j += 1;
            }
            if j < b.len() && b[j] != b'\n' && b[j] != b';' {
                let starts =
                    |w: &[u8]| b[i..].len() >= w.len() && b[i..i + w.len()].eq_ignore_ascii_case(w);
                let include = starts(b"$INCLUDE");
                dollar_ttl |= starts(b"$TTL");
                let directive = b[i] == b'$' && !include;
                out.push(EntryAt {
                    line,
                    directive,
                    no_ttl: !directive
                        && !include
                        && !dollar_ttl
                        && !has_ttl(&b[i..], b[i] != b' ' && b[i] != b'\t'),
                });
            }
        }
        match b[i] {
            b'\\' => {
                if b.get(i + 1) == Some(&b'\n') {
                    line += 1;
                }
                i += 2;
                continue;
            }
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth = depth.saturating_sub(1),
            b'\n' => {
                line += 1;
                at_start = true;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether a record entry gives a TTL: among the tokens before its type (after the owner, if
/// the entry has one), one starts with a digit (types and classes never do).
fn has_ttl(entry: &[u8], has_owner: bool) -> bool {
    let mut tokens = entry
        .split(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')'))
        .filter(|t| !t.is_empty());
    if has_owner {
        tokens.next();
    }
    for t in tokens.take(2) {
        if t[0].is_ascii_digit() {
            return true;
        }
        let class = [&b"IN"[..], b"CH", b"HS", b"CS"]
            .iter()
            .any(|c| t.eq_ignore_ascii_case(c))
            || (t.len() > 5 && t[..5].eq_ignore_ascii_case(b"CLASS"));
        if !class {
            return false;
        }
    }
    false
}

fn wire_of<N: ToLabelIter>(n: &N) -> Vec<u8> {
    let mut v = Vec::new();
    for l in n.iter_labels() {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_slice());
    }
    v
}

/// Reads one file's records with `domain`, attaching lines.
fn scan(src: &ZoneSource<'_>) -> Result<RawZone, ZoneError> {
    let entries = entry_starts(src.text);
    let records_at: Vec<EntryAt> = entries.iter().filter(|e| !e.directive).copied().collect();
    let mut zf = Zonefile::from(src.text);
    zf.set_default_class(Class::IN);
    let mut apex = None;
    if let Some(o) = src.origin {
        let w = name::from_text(o).ok_or_else(|| {
            invalid(
                src.path,
                1,
                format!("the zone name {o:?} is not a domain name"),
            )
        })?;
        let n = domain::base::Name::<bytes::Bytes>::from_octets(bytes::Bytes::from(w.clone()))
            .map_err(|_| invalid(src.path, 1, format!("the zone name {o:?} is not valid")))?;
        zf.set_origin(n);
        apex = Some(w);
    }
    let mut records = Vec::new();
    let mut seen = 0;
    loop {
        let line = records_at.get(seen).copied();
        let entry = match zf.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                return Err(scan_error(src.path, &entries, seen, &e.to_string()));
            }
        };
        seen += 1;
        let (line, no_ttl) = line.map_or((1, false), |e| (e.line, e.no_ttl));
        let rec = match entry {
            Entry::Record(r) => r,
            Entry::Include { .. } => {
                return Err(invalid(src.path, line, "$INCLUDE is not supported"));
            }
        };
        if rec.class() != Class::IN {
            return Err(invalid(
                src.path,
                line,
                format!("class {} is not served (only IN)", rec.class()),
            ));
        }
        let rtype = rec.rtype();
        let mut rdata = Vec::new();
        if rec.data().compose_rdata(&mut rdata).is_err() || rdata.len() > 65535 {
            return Err(invalid(src.path, line, "record data too long"));
        }
        let owner = wire_of(rec.owner());
        if owner.len() > name::MAX_NAME_LEN {
            return Err(invalid(src.path, line, "owner name longer than 255 octets"));
        }
        // Without a configured origin or $ORIGIN, an absolute SOA owner names the zone and
        // becomes the origin of the relative names after it.
        if rtype == Rtype::SOA && apex.is_none() {
            apex = Some(owner.clone());
            if zf.origin().is_err()
                && let Ok(n) = domain::base::Name::<bytes::Bytes>::from_octets(bytes::Bytes::from(
                    owner.clone(),
                ))
            {
                zf.set_origin(n);
            }
        }
        records.push(RawRecord {
            owner,
            rtype: rtype.to_int(),
            // Without $TTL, `domain` repeats the last TTL given (RFC 1035 §5.1); NSD and Knot
            // use 3600, and so does sluice, so the three serve the same file alike.
            ttl: if no_ttl {
                DEFAULT_TTL
            } else {
                rec.ttl().as_secs()
            },
            rdata,
            line,
        });
    }
    let apex = apex.ok_or_else(|| invalid(src.path, 1, "no SOA record: every zone needs one"))?;
    Ok(RawZone {
        path: src.path.to_path_buf(),
        apex,
        records,
    })
}

/// Turns a scanner error ("line:col: message") into one naming the entry it belongs to.
fn scan_error(path: &Path, entries: &[EntryAt], records: usize, msg: &str) -> ZoneError {
    let mut parts = msg.splitn(3, ':');
    let l: Option<usize> = parts.next().and_then(|s| s.trim().parse().ok());
    let c: Option<usize> = parts.next().and_then(|s| s.trim().parse().ok());
    let text = parts.next().map_or(msg, str::trim);
    let text = if text == "missing origin" {
        "relative name but no origin: start the file with $ORIGIN or an absolute SOA owner, \
         or give the zone's name"
    } else {
        text
    };
    let Some(l) = l else {
        return invalid(path, 1, text);
    };
    // Candidates: the entries after the last record read, up to the next record.
    let first = entries
        .iter()
        .enumerate()
        .filter(|e| !e.1.directive)
        .nth(records.saturating_sub(1))
        .map_or(0, |(i, _)| if records == 0 { 0 } else { i + 1 });
    let last = entries[first.min(entries.len())..]
        .iter()
        .position(|e| !e.directive)
        .map_or(entries.len(), |p| first + p + 1);
    let cands = &entries[first.min(entries.len())..last.max(first).min(entries.len())];
    // The scanner often stands at the start of the next line when it notices a problem.
    let at = if c == Some(1) { l.saturating_sub(1) } else { l };
    let line = cands
        .iter()
        .rev()
        .find(|e| e.line <= at)
        .or(cands.first())
        .map_or(l, |e| e.line);
    invalid(path, line, text)
}

/// The zone rules that need the whole file.
fn check(z: &RawZone) -> Result<(), ZoneError> {
    let apex_l = name::to_lower(&z.apex);
    let p = &z.path;
    let mut soa_line = None;
    let mut has_ns = false;
    // owner → (line of its CNAME, line of its first other record)
    let mut at: HashMap<Vec<u8>, (Option<usize>, Option<usize>)> = HashMap::new();
    for r in &z.records {
        let owner = name::to_lower(&r.owner);
        if !owner.ends_with(&apex_l)
            || (owner.len() > apex_l.len() && {
                // the match must fall on a label boundary
                let mut i = 0;
                while i < owner.len() - apex_l.len() {
                    i += 1 + owner[i] as usize;
                }
                i != owner.len() - apex_l.len()
            })
        {
            return Err(invalid(
                p,
                r.line,
                format!(
                    "{} is outside the zone {}",
                    name::display(&r.owner),
                    name::display(&z.apex)
                ),
            ));
        }
        match r.rtype {
            T_SOA if owner != apex_l => {
                return Err(invalid(
                    p,
                    r.line,
                    format!(
                        "SOA at {}, not at the zone's apex {}",
                        name::display(&r.owner),
                        name::display(&z.apex)
                    ),
                ));
            }
            T_SOA => {
                if let Some(first) = soa_line {
                    return Err(invalid(
                        p,
                        r.line,
                        format!("a second SOA record (the first is on line {first})"),
                    ));
                }
                soa_line = Some(r.line);
            }
            T_NS if owner == apex_l => has_ns = true,
            T_DNAME => {
                return Err(invalid(p, r.line, "DNAME records are not supported"));
            }
            _ => {}
        }
        let e = at.entry(owner).or_default();
        match r.rtype {
            T_CNAME => {
                if let Some(first) = e.0 {
                    if z.records
                        .iter()
                        .any(|o| o.line == first && o.rtype == T_CNAME && o.rdata != r.rdata)
                    {
                        return Err(invalid(
                            p,
                            r.line,
                            format!(
                                "a second CNAME at {} (the first is on line {first})",
                                name::display(&r.owner)
                            ),
                        ));
                    }
                } else {
                    e.0 = Some(r.line);
                }
            }
            // RFC 4035 §2.5: DNSSEC records may sit beside a CNAME.
            T_RRSIG | T_NSEC => {}
            _ => {
                e.1.get_or_insert(r.line);
            }
        }
        if let (Some(c), Some(o)) = *e {
            return Err(invalid(
                p,
                r.line,
                format!(
                    "CNAME and other data at {} (CNAME on line {c}, other data on line {o})",
                    name::display(&r.owner)
                ),
            ));
        }
    }
    let Some(soa_line) = soa_line else {
        return Err(invalid(p, 1, "no SOA record: every zone needs one"));
    };
    if !has_ns {
        return Err(invalid(
            p,
            soa_line,
            format!("no NS records at the apex {}", name::display(&z.apex)),
        ));
    }
    Ok(())
}

/// Names inside the rdata of `rtype`: (offset, compressible). Rdata here is uncompressed, so
/// each name runs to its root label.
fn names_in(rtype: u16, rdata: &[u8]) -> Vec<(usize, bool)> {
    let name_end = |at: usize| name::skip_name(rdata, at);
    match rtype {
        // NS, MD, MF, CNAME, MB, MG, MR, PTR: one name.
        2..=5 | 7..=9 | T_PTR => vec![(0, true)],
        // SOA, MINFO: two names first.
        T_SOA | 14 => match name_end(0) {
            Some(e) => vec![(0, true), (e, true)],
            None => vec![],
        },
        T_MX => vec![(2, true)],
        // Not compressed (RFC 2782), but read for the additional section.
        T_SRV => vec![(6, false)],
        _ => vec![],
    }
}

/// Builds the query-time tables. Input is checked already.
fn compile(raws: Vec<RawZone>) -> Zones {
    let mut names = NameTable::new();
    let mut zones = Vec::with_capacity(raws.len());
    for (zi, raw) in raws.into_iter().enumerate() {
        let apex = names.intern(&raw.apex);
        names.entries[apex as usize].apex_of = zi as u32;
        // Owners and their types in order of first appearance.
        let mut order: Vec<u32> = Vec::new();
        let mut by_owner: HashMap<u32, Vec<(u16, Vec<&RawRecord>)>> = HashMap::new();
        for r in &raw.records {
            let id = names.intern(&r.owner);
            let types = by_owner.entry(id).or_insert_with(|| {
                order.push(id);
                Vec::new()
            });
            match types.iter_mut().find(|t| t.0 == r.rtype) {
                Some(t) => {
                    // Identical records are one record (RFC 2181 §5).
                    if !t.1.iter().any(|o| o.rdata == r.rdata) {
                        t.1.push(r);
                    }
                }
                None => types.push((r.rtype, vec![r])),
            }
        }
        let mut z = Zone {
            apex,
            soa: NONE,
            neg_soa: NONE,
            apex_ns: NONE,
            parent_zone: NONE,
            nodes: HashMap::default(),
            rrsets: Vec::new(),
            rrs: Vec::new(),
            rdata: Vec::new(),
            rnames: Vec::new(),
            extras: Vec::new(),
        };
        for &id in &order {
            let start = z.rrsets.len() as u32;
            let mut cname = NONE;
            for (rtype, recs) in &by_owner[&id] {
                let rs = z.rrsets.len() as u32;
                let first_rr = z.rrs.len() as u32;
                for r in recs {
                    let d0 = z.rdata.len() as u32;
                    z.rdata.extend_from_slice(&r.rdata);
                    let n0 = z.rnames.len() as u32;
                    for (at, compress) in names_in(*rtype, &r.rdata) {
                        if let Some(end) = name::skip_name(&r.rdata, at) {
                            let nid = names.intern(&r.rdata[at..end]);
                            z.rnames.push(RdataName {
                                at: at as u16,
                                len: (end - at) as u16,
                                id: nid,
                                compress,
                            });
                        }
                    }
                    z.rrs.push(Rr {
                        ttl: r.ttl,
                        rdata: (d0, z.rdata.len() as u32),
                        names: (n0, z.rnames.len() as u32),
                    });
                }
                z.rrsets.push(Rrset {
                    rtype: *rtype,
                    rrs: (first_rr, z.rrs.len() as u32),
                    extras: (0, 0),
                });
                match *rtype {
                    T_CNAME => cname = rs,
                    T_SOA if id == apex => z.soa = rs,
                    T_NS if id == apex => z.apex_ns = rs,
                    _ => {}
                }
            }
            z.nodes.insert(
                id,
                Node {
                    rrsets: (start, z.rrsets.len() as u32),
                    cname,
                    wildcard: NONE,
                    cut: NONE,
                },
            );
        }
        // Empty non-terminals exist (RFC 4592 §2.2.2): add every missing ancestor up to the apex.
        for &id in &order {
            let mut p = names.parent(id);
            while p != NONE && p != apex && !z.nodes.contains_key(&p) {
                z.nodes.insert(
                    p,
                    Node {
                        rrsets: (0, 0),
                        cname: NONE,
                        wildcard: NONE,
                        cut: NONE,
                    },
                );
                p = names.parent(p);
            }
        }
        // The negative-answer SOA: TTL = min(SOA TTL, SOA minimum) (RFC 2308 §5).
        let soa = z.rrsets[z.soa as usize];
        let rr = z.rrs[soa.rrs.0 as usize];
        let rd = &z.rdata[rr.rdata.0 as usize..rr.rdata.1 as usize];
        let m = rd.len() - 4;
        let minimum = u32::from_be_bytes([rd[m], rd[m + 1], rd[m + 2], rd[m + 3]]);
        z.rrs.push(Rr {
            ttl: rr.ttl.min(minimum),
            ..rr
        });
        z.neg_soa = z.rrsets.len() as u32;
        z.rrsets.push(Rrset {
            rtype: T_SOA,
            rrs: (z.rrs.len() as u32 - 1, z.rrs.len() as u32),
            extras: (0, 0),
        });
        // Wildcard children and zone cuts.
        let ids: Vec<u32> = z.nodes.keys().copied().collect();
        for &id in &ids {
            if names.label(id) == b"\x01*" {
                let p = names.parent(id);
                if let Some(n) = z.nodes.get_mut(&p) {
                    n.wildcard = id;
                }
            }
            let mut cut = NONE;
            let mut a = id;
            while a != apex && a != NONE {
                if has_type(&z, a, T_NS) {
                    cut = a;
                }
                a = names.parent(a);
            }
            if let Some(n) = z.nodes.get_mut(&id) {
                n.cut = cut;
            }
        }
        // Additional-section targets of NS (glue allowed), MX and SRV (not glue), as NSD.
        for rs in 0..z.rrsets.len() {
            let set = z.rrsets[rs];
            let allow_glue = match set.rtype {
                T_NS => true,
                T_MX | T_SRV => false,
                _ => continue,
            };
            let e0 = z.extras.len() as u32;
            for rr in set.rrs.0..set.rrs.1 {
                let rr = z.rrs[rr as usize];
                let Some(target) = (rr.names.0..rr.names.1)
                    .map(|i| z.rnames[i as usize].id)
                    .next()
                else {
                    continue;
                };
                if !names.is_at_or_below(target, apex) {
                    continue;
                }
                if let Some(x) = extra_for(&names, &z, target, allow_glue)
                    && !z.extras[e0 as usize..].iter().any(|e| e.owner == x.owner)
                {
                    z.extras.push(x);
                }
            }
            z.rrsets[rs].extras = (e0, z.extras.len() as u32);
        }
        zones.push(z);
    }
    // Parent zones, for DS at a child's apex.
    for z in &mut zones {
        let mut p = names.parent(z.apex);
        while p != NONE {
            let a = names.entries[p as usize].apex_of;
            if a != NONE {
                z.parent_zone = a;
                break;
            }
            p = names.parent(p);
        }
    }
    Zones {
        names,
        zones: zones.into_boxed_slice(),
    }
}

fn find_rrset(z: &Zone, node: &Node, rtype: u16) -> u32 {
    (node.rrsets.0..node.rrsets.1)
        .find(|&i| z.rrsets[i as usize].rtype == rtype)
        .unwrap_or(NONE)
}

fn has_type(z: &Zone, id: u32, rtype: u16) -> bool {
    z.nodes
        .get(&id)
        .is_some_and(|n| find_rrset(z, n, rtype) != NONE)
}

/// The A/AAAA RRsets for an additional-section name, expanding a wildcard as NSD does.
fn extra_for(names: &NameTable, z: &Zone, target: u32, allow_glue: bool) -> Option<Extra> {
    let holder = match z.nodes.get(&target) {
        Some(n) => {
            if !allow_glue && n.cut != NONE {
                return None;
            }
            *n
        }
        None => {
            let mut a = names.parent(target);
            while a != NONE && !z.nodes.contains_key(&a) && a != z.apex {
                a = names.parent(a);
            }
            let enc = z.nodes.get(&a)?;
            if enc.wildcard == NONE || (!allow_glue && enc.cut != NONE) {
                return None;
            }
            *z.nodes.get(&enc.wildcard)?
        }
    };
    let a = find_rrset(z, &holder, T_A);
    let aaaa = find_rrset(z, &holder, T_AAAA);
    (a != NONE || aaaa != NONE).then_some(Extra {
        owner: target,
        a,
        aaaa,
    })
}

impl Zone {
    /// The RRset of `rtype` at `node`, or `NONE`.
    #[inline]
    pub(super) fn rrset_of(&self, node: &Node, rtype: u16) -> u32 {
        find_rrset(self, node, rtype)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn entries_follow_parentheses_quotes_and_comments() {
        let t = "$ORIGIN a.\n; c\n\n@ 60 SOA x y ( 1 2\n 3 4 5 )\n  NS ns ; c\nt IN 5 TXT \"a ( ;\" \n\n$TTL 5\nb A 1.2.3.4\n";
        let got: Vec<(usize, bool, bool)> = entry_starts(t)
            .iter()
            .map(|e| (e.line, e.directive, e.no_ttl))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, true, false),
                (4, false, false),
                (6, false, true),
                (7, false, false),
                (9, true, false),
                (10, false, false)
            ]
        );
    }
}
