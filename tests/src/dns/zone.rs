//! [`Zone`]: what the harness needs to know of a master file (RFC 1035 5) to generate its
//! queries — the origin, and every owner name with its types — and where the test zones live.
//!
//! This is a reader for the subset of the format the test zones use (`$ORIGIN`, `$TTL`,
//! blank owners, `@`, relative names, parentheses, comments, quoted strings, `\` escapes,
//! numeric TTLs, RFC 3597 `TYPEnnn`); it keeps RDATA as text and never interprets it. The
//! servers under test parse the files themselves: this module must never be the reason a
//! server sees different data.

use std::fs;
use std::path::{Path, PathBuf};

use crate::dns::wire::{Name, class_from_name, type_from_name};
use crate::error::{Error, Result};

/// The directory of the harness's own test zones (`tests/zones/` of this crate), one file per
/// zone, named `ORIGIN.zone`.
pub fn test_zones_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zones")
}

/// Loads every `*.zone` file of [`test_zones_dir`], sorted by file name.
pub fn test_zones() -> Result<Vec<Zone>> {
    let dir = test_zones_dir();
    let entries = fs::read_dir(&dir).map_err(|source| Error::File {
        op: "listing the test zones".into(),
        path: dir.display().to_string(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "zone"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Zone::load(p)).collect()
}

/// One record of a zone file: owner, TTL, class, type, and the RDATA as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRecord {
    /// The owner, absolute, spelled as in the file (case kept).
    pub owner: Name,
    /// The TTL (given, or `$TTL`'s).
    pub ttl: u32,
    /// The class.
    pub class: u16,
    /// The type.
    pub rtype: u16,
    /// The RDATA tokens, joined by single spaces.
    pub rdata: String,
    /// Line number (1-based) where the record starts.
    pub line: usize,
}

/// A zone file, read: its origin (the SOA's owner) and its records in file order.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    path: PathBuf,
    records: Vec<ZoneRecord>,
}

impl Zone {
    /// Reads and checks `path`: it must hold exactly one SOA, as its first record, and every
    /// owner must be at or below the SOA's owner.
    pub fn load(path: &Path) -> Result<Zone> {
        let text = fs::read_to_string(path).map_err(|source| Error::File {
            op: "reading a zone file".into(),
            path: path.display().to_string(),
            source,
        })?;
        Zone::parse(path, &text)
    }

    /// Reads zone text; `path` only names it (in errors and [`Zone::path`]).
    pub fn parse(path: &Path, text: &str) -> Result<Zone> {
        let fail = |line: usize, problem: String| Error::Zone {
            file: path.display().to_string(),
            line,
            problem,
        };
        let mut origin: Option<Name> = None;
        let mut default_ttl: Option<u32> = None;
        let mut last_owner: Option<Name> = None;
        let mut records = Vec::new();
        for entry in entries(text).map_err(|(line, p)| fail(line, p))? {
            let line = entry.line;
            let mut toks = entry.tokens.iter().map(String::as_str).peekable();
            let Some(&first) = toks.peek() else {
                continue;
            };
            if first.starts_with('$') && !entry.blank_owner {
                toks.next();
                let arg = toks
                    .next()
                    .ok_or_else(|| fail(line, format!("{first} without an argument")))?;
                match first {
                    "$ORIGIN" => {
                        origin = Some(
                            Name::from_text(arg, origin.as_ref())
                                .map_err(|e| fail(line, e.to_string()))?,
                        )
                    }
                    "$TTL" => {
                        default_ttl = Some(
                            arg.parse()
                                .map_err(|_| fail(line, format!("bad $TTL {arg:?}")))?,
                        )
                    }
                    _ => return Err(fail(line, format!("{first} is not supported here"))),
                }
                continue;
            }
            let owner = if entry.blank_owner {
                last_owner
                    .clone()
                    .ok_or_else(|| fail(line, "a blank owner before any record".into()))?
            } else {
                let t = toks.next().unwrap_or_default();
                Name::from_text(t, origin.as_ref()).map_err(|e| fail(line, e.to_string()))?
            };
            let mut ttl = None;
            let mut class = None;
            let rtype = loop {
                let t = toks
                    .next()
                    .ok_or_else(|| fail(line, "no type in the record".into()))?;
                if ttl.is_none() && t.bytes().all(|b| b.is_ascii_digit()) {
                    ttl = Some(
                        t.parse()
                            .map_err(|_| fail(line, format!("bad TTL {t:?}")))?,
                    );
                } else if let (None, Some(c)) = (class, class_from_name(t)) {
                    class = Some(c);
                } else if let Some(rt) = type_from_name(t) {
                    break rt;
                } else {
                    return Err(fail(line, format!("{t:?} is not a TTL, class or type")));
                }
            };
            let ttl = ttl
                .or(default_ttl)
                .ok_or_else(|| fail(line, "no TTL and no $TTL".into()))?;
            let rdata: Vec<&str> = toks.collect();
            if rdata.is_empty() {
                // Even empty data is written (`TYPEnnn \# 0`); a record with none is a typo.
                return Err(fail(line, "a record without RDATA".into()));
            }
            last_owner = Some(owner.clone());
            records.push(ZoneRecord {
                owner,
                ttl,
                class: class.unwrap_or(1),
                rtype,
                rdata: rdata.join(" "),
                line,
            });
        }
        let soa = records
            .first()
            .filter(|r| r.rtype == 6)
            .ok_or_else(|| fail(1, "the first record is not the SOA".into()))?;
        let origin = soa.owner.clone();
        if let Some(r) = records.iter().skip(1).find(|r| r.rtype == 6) {
            return Err(fail(r.line, "a second SOA".into()));
        }
        if let Some(r) = records.iter().find(|r| !r.owner.is_at_or_below(&origin)) {
            return Err(fail(r.line, format!("{} is outside {origin}", r.owner)));
        }
        Ok(Zone {
            origin,
            path: path.to_path_buf(),
            records,
        })
    }

    /// The origin (the SOA's owner).
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records in file order.
    pub fn records(&self) -> &[ZoneRecord] {
        &self.records
    }

    /// The distinct owner names in order of first appearance (compared case-insensitively,
    /// spelled as first written).
    pub fn owners(&self) -> Vec<Name> {
        let mut out: Vec<Name> = Vec::new();
        for r in &self.records {
            if !out.iter().any(|o| o.eq_ignore_case(&r.owner)) {
                out.push(r.owner.clone());
            }
        }
        out
    }

    /// The types at `owner` (case-insensitive), in file order, each once.
    pub fn types_at(&self, owner: &Name) -> Vec<u16> {
        let mut out = Vec::new();
        for r in self
            .records
            .iter()
            .filter(|r| r.owner.eq_ignore_case(owner))
        {
            if !out.contains(&r.rtype) {
                out.push(r.rtype);
            }
        }
        out
    }

    /// The zone cuts: owners other than the origin that have NS records.
    pub fn delegations(&self) -> Vec<Name> {
        self.owners()
            .into_iter()
            .filter(|o| !o.eq_ignore_case(&self.origin) && self.types_at(o).contains(&2))
            .collect()
    }

    /// The empty non-terminals: names between an owner and the origin that own nothing
    /// themselves (RFC 4592 2.2.2), in order of first appearance, lowercased.
    pub fn empty_non_terminals(&self) -> Vec<Name> {
        let owners = self.owners();
        let mut out: Vec<Name> = Vec::new();
        for o in &owners {
            let mut n = o.parent();
            while let Some(p) = n {
                if p.eq_ignore_case(&self.origin) || !p.is_at_or_below(&self.origin) {
                    break;
                }
                let lower = p.to_lowercase();
                if !owners.iter().any(|x| x.eq_ignore_case(&p)) && !out.contains(&lower) {
                    out.push(lower);
                }
                n = p.parent();
            }
        }
        out
    }
}

/// One logical entry of a master file: its tokens (parentheses joined, comments dropped,
/// quoted strings kept whole with their quotes), whether it began with blank space (so the
/// owner is the previous one's), and its first line.
struct Entry {
    tokens: Vec<String>,
    blank_owner: bool,
    line: usize,
}

/// Splits master-file text into entries; errors carry the line number.
fn entries(text: &str) -> std::result::Result<Vec<Entry>, (usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<Entry> = None;
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if depth == 0 {
            if let Some(e) = cur.take().filter(|e| !e.tokens.is_empty()) {
                out.push(e);
            }
            cur = Some(Entry {
                tokens: Vec::new(),
                blank_owner: line.starts_with([' ', '\t']),
                line: lineno,
            });
        }
        let entry = cur.as_mut().expect("an entry is open");
        let mut chars = line.chars().peekable();
        let mut tok = String::new();
        let flush = |tok: &mut String, entry: &mut Entry| {
            if !tok.is_empty() {
                entry.tokens.push(std::mem::take(tok));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    tok.push(c);
                    if let Some(n) = chars.next() {
                        tok.push(n);
                    }
                }
                '"' => {
                    tok.push(c);
                    loop {
                        match chars.next() {
                            Some('\\') => {
                                tok.push('\\');
                                if let Some(n) = chars.next() {
                                    tok.push(n);
                                }
                            }
                            Some('"') => {
                                tok.push('"');
                                break;
                            }
                            Some(n) => tok.push(n),
                            None => return Err((lineno, "an unterminated string".into())),
                        }
                    }
                }
                ';' => break,
                '(' => {
                    flush(&mut tok, entry);
                    depth += 1;
                }
                ')' => {
                    flush(&mut tok, entry);
                    depth = depth
                        .checked_sub(1)
                        .ok_or((lineno, "an unmatched ')'".to_owned()))?;
                }
                c if c.is_whitespace() => flush(&mut tok, entry),
                c => tok.push(c),
            }
        }
        flush(&mut tok, entry);
    }
    if depth != 0 {
        return Err((text.lines().count(), "an unclosed '('".into()));
    }
    if let Some(e) = cur.filter(|e| !e.tokens.is_empty()) {
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod test {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_text(s, None).unwrap()
    }

    const TEXT: &str = r#"
$ORIGIN example.test.
$TTL 3600
@   IN SOA ns1 hostmaster ( 1 ; serial
        2 3 4 5 )
    NS  ns1
ns1 300 A 192.0.2.1
        AAAA 2001:db8::1 ; comment
txt IN 60 TXT "a ; not a comment" "b\"c"
*.wild CNAME www
a.b.ent A 192.0.2.2
dot\.label TYPE65280 \# 1 00
"#;

    #[test]
    fn reads_owners_types_and_ttls() {
        let z = Zone::parse(Path::new("t.zone"), TEXT).unwrap();
        assert_eq!(z.origin(), &name("example.test."));
        let r = z.records();
        assert_eq!(r.len(), 8);
        assert_eq!(
            (r[0].rtype, r[0].ttl, r[0].rdata.as_str()),
            (6, 3600, "ns1 hostmaster 1 2 3 4 5")
        );
        assert_eq!(r[1].owner, name("example.test."));
        assert_eq!(
            (r[3].rtype, r[3].ttl),
            (28, 3600),
            "a blank owner repeats ns1, $TTL applies"
        );
        assert_eq!(r[2].ttl, 300);
        assert_eq!(r[4].rdata, r#""a ; not a comment" "b\"c""#);
        assert_eq!(r[4].ttl, 60);
        assert_eq!(r[7].owner.labels()[0], b"dot.label");
        assert_eq!(r[7].rtype, 65280);
        assert_eq!(
            z.owners().iter().map(Name::to_string).collect::<Vec<_>>(),
            [
                "example.test.",
                "ns1.example.test.",
                "txt.example.test.",
                "*.wild.example.test.",
                "a.b.ent.example.test.",
                r"dot\.label.example.test."
            ]
        );
        assert_eq!(z.types_at(&name("NS1.example.test.")), [1, 28]);
        assert_eq!(
            z.empty_non_terminals(),
            [
                name("wild.example.test."),
                name("b.ent.example.test."),
                name("ent.example.test.")
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = Zone::parse(
            Path::new("bad.zone"),
            "$ORIGIN x.\n@ 1 SOA a b 1 2 3 4 5\nw 1 BOGUS 1\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad.zone:3: \"BOGUS\" is not a TTL, class or type"
        );
        let e = Zone::parse(Path::new("b.zone"), "$ORIGIN x.\nw 1 A 1.2.3.4\n").unwrap_err();
        assert!(e.to_string().contains("not the SOA"), "{e}");
        let e = Zone::parse(Path::new("b.zone"), "@ 1 SOA ( a\n").unwrap_err();
        assert!(e.to_string().contains("unclosed"), "{e}");
    }

    #[test]
    fn the_test_zones_load() {
        let zones = test_zones().unwrap();
        let origins: Vec<String> = zones.iter().map(|z| z.origin().to_string()).collect();
        assert_eq!(
            origins,
            [
                "2.0.192.in-addr.arpa.",
                "8.b.d.0.1.0.0.2.ip6.arpa.",
                "example.test.",
                "second.test."
            ]
        );
        for z in &zones {
            let file = z.path().file_name().unwrap().to_str().unwrap();
            assert_eq!(
                file,
                format!("{}zone", z.origin()),
                "files are named ORIGIN.zone"
            );
        }
    }
}
