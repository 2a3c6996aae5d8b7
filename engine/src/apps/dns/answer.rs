//! Answering one query: [`Zones::answer`] reads a DNS message and writes the response into a
//! buffer the caller owns.
//!
//! It never allocates, locks, logs or panics: the name is read into a fixed buffer, the answer
//! is planned in a fixed array of (section, owner, RRset) items, and then written with name
//! compression from a fixed table. A lookup is one hash probe per label of the query name that
//! is not in the zone data plus one per node walked; everything else was decided when the zone
//! was loaded (see [`super::zone`]).
//!
//! NSD 4 is the reference for every choice an RFC leaves open; where NSD and Knot differ, the
//! module docs of [`super`] list what was chosen and why.

use super::name::{self, ParsedName};
use super::zone::{
    NONE, T_A, T_AAAA, T_DNSKEY, T_DS, T_MX, T_NS, T_NSEC, T_PTR, T_RRSIG, T_SOA, Zone, Zones,
};

/// The UDP payload size sluice advertises in its OPT record and the most it sends over UDP
/// whatever the client offers: the DNS flag day 2020 value, NSD's and Knot's default, small
/// enough to avoid IP fragmentation on any usual path.
pub const EDNS_UDP_SIZE: u16 = 1232;

/// What the transport can carry back.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest DNS message the transport can send: over UDP, the room the egress MTU leaves
    /// after the headers (capped further by the client's EDNS size, 512 without EDNS, and
    /// [`EDNS_UDP_SIZE`]); over TCP, 65535.
    pub udp_payload_max: usize,
    /// The query came over TCP: no 512/EDNS cap, and zone transfers are refused, not NOTIMP.
    pub tcp: bool,
}

/// The result of [`Zones::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Length of the response written at the start of `out`; 0 means send nothing.
    pub len: usize,
    /// What kind of response it is, for counters.
    pub outcome: Outcome,
}

/// What a response says (one counter each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR with records in the answer section (also a CNAME chain that leaves our zones).
    Answered,
    /// NOERROR, the name exists but has no data of the type (SOA in authority).
    NoData,
    /// The name does not exist (SOA in authority).
    NxDomain,
    /// The name is below a delegation: NS in authority, glue in additional, no AA.
    Referral,
    /// Not ours to answer: outside our zones, a class other than IN/ANY, a zone transfer, NOTIFY.
    Refused,
    /// A malformed query.
    FormErr,
    /// An opcode other than QUERY (and NOTIFY), or AXFR over UDP.
    NotImp,
    /// EDNS version other than 0 (extended RCODE 16).
    BadVers,
    /// The answer did not fit: TC=1 so the client retries over TCP.
    Truncated,
    /// No response at all.
    Dropped(DropWhy),
}

/// Why a query gets no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropWhy {
    /// QR=1: a response, never answered (no reflection loops).
    Response,
    /// Shorter than a DNS header: nothing to answer to (as NSD).
    TooShort,
    /// Not even the header and question fit in the room the caller gave.
    NoRoom,
}

const HEADER_LEN: usize = 12;
const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;

const RCODE_FORMERR: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;
const RCODE_REFUSED: u16 = 5;

const OPCODE_QUERY: u16 = 0;
const OPCODE_NOTIFY: u16 = 4;

const CLASS_IN: u16 = 1;
const CLASS_CH: u16 = 3;
const CLASS_ANY: u16 = 255;

const T_OPT: u16 = 41;
const T_IXFR: u16 = 251;
const T_AXFR: u16 = 252;
const T_ANY: u16 = 255;

/// OPT record without options: root owner, type, class (size), TTL (ext-rcode, version,
/// flags), rdlength.
const OPT_LEN: usize = 11;
/// RFC 8914 Extended DNS Error option with info-code 20 ("Not Authoritative"), as NSD and Knot
/// attach to REFUSED answers for names outside their zones.
const EDE_NOT_AUTH: [u8; 6] = [0, 15, 0, 2, 0, 20];
const DO_BIT: u16 = 0x8000;

/// Longest CNAME chain followed; NSD follows until it meets a loop, Knot stops at 5 hops — a
/// longer chain in one's own zones is a mistake either way, and the answer stays bounded.
const MAX_CNAMES: usize = 8;
/// RRsets one response may plan (answer chain, authority, additional owners × 2).
const MAX_ITEMS: usize = 96;
/// Names remembered for compression; past this, names are written in full (still correct).
const MAX_COMPRESS: usize = 64;

/// The client's EDNS, if it sent an OPT.
#[derive(Clone, Copy)]
struct Edns {
    udp: u16,
    dnssec_ok: bool,
}

/// A response's sections in the order they are written; NSD's order, additional A before AAAA.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
    /// The zone's NS after a positive answer: dropped silently (no TC) if it does not fit.
    OptAuthority,
    AddA,
    AddAaaa,
}

const SECTIONS: [Section; 5] = [
    Section::Answer,
    Section::Authority,
    Section::OptAuthority,
    Section::AddA,
    Section::AddAaaa,
];

/// Owner "the query name as asked" when it is not an interned name (wildcard answers).
const QNAME: u32 = NONE;

#[derive(Clone, Copy)]
struct Item {
    section: Section,
    owner: u32,
    zone: u32,
    rrset: u32,
}

struct Plan {
    items: [Item; MAX_ITEMS],
    n: usize,
}

impl Plan {
    /// Adds an RRset unless the same one with the same owner is planned already (NSD: a
    /// repeated RRset is a CNAME loop or shared glue). Returns whether it was added.
    fn add(&mut self, section: Section, owner: u32, zone: u32, rrset: u32) -> bool {
        if rrset == NONE || self.n == MAX_ITEMS {
            return false;
        }
        if self.items[..self.n]
            .iter()
            .any(|i| i.owner == owner && i.zone == zone && i.rrset == rrset)
        {
            return false;
        }
        self.items[self.n] = Item {
            section,
            owner,
            zone,
            rrset,
        };
        self.n += 1;
        true
    }

    fn has(&self, section: Section) -> bool {
        self.items[..self.n].iter().any(|i| i.section == section)
    }
}

/// Where the response is written, with its compression table.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    /// Writing stops here (room for the OPT record is kept past it).
    limit: usize,
    ctab: [(u32, u16); MAX_COMPRESS],
    nc: usize,
}

/// The response did not fit.
struct Full;

impl Writer<'_> {
    #[inline]
    fn put(&mut self, b: &[u8]) -> Result<(), Full> {
        let end = self.pos + b.len();
        if end > self.limit {
            return Err(Full);
        }
        self.buf[self.pos..end].copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    #[inline]
    fn put16(&mut self, v: u16) -> Result<(), Full> {
        self.put(&v.to_be_bytes())
    }

    fn remember(&mut self, id: u32, at: usize) {
        if at < 0x4000 && self.nc < MAX_COMPRESS {
            self.ctab[self.nc] = (id, at as u16);
            self.nc += 1;
        }
    }

    fn lookup(&self, id: u32) -> Option<u16> {
        self.ctab[..self.nc].iter().find(|e| e.0 == id).map(|e| e.1)
    }

    /// Writes interned name `id`, compressed against everything written so far.
    fn name(&mut self, zones: &Zones, mut id: u32) -> Result<(), Full> {
        loop {
            if id == 0 {
                return self.put(&[0]);
            }
            if let Some(at) = self.lookup(id) {
                return self.put16(0xc000 | at);
            }
            let at = self.pos;
            self.put(zones.names.label(id))?;
            self.remember(id, at);
            id = zones.names.parent(id);
        }
    }
}

/// What the lookup decided beyond the records.
struct State {
    rcode: u16,
    aa: bool,
    referral: bool,
    cnames: usize,
}

impl Zones {
    /// Answers one DNS query.
    ///
    /// `query` is the DNS message (the UDP payload, or a TCP message without its length
    /// prefix); the response is written to the start of `out` (which should hold at least
    /// 4096 bytes; the response never exceeds `out.len()` or [`Limits::udp_payload_max`]).
    /// Never allocates, never panics, whatever the input.
    pub fn answer(&self, query: &[u8], limits: Limits, out: &mut [u8]) -> Answer {
        let drop = |why| Answer {
            len: 0,
            outcome: Outcome::Dropped(why),
        };
        if query.len() < HEADER_LEN {
            return drop(DropWhy::TooShort);
        }
        let rd16 = |at: usize| u16::from_be_bytes([query[at], query[at + 1]]);
        let flags = rd16(2);
        if flags & QR != 0 {
            return drop(DropWhy::Response);
        }
        let opcode = (flags >> 11) & 0xf;
        let rd = flags & RD;
        let cap = out.len().min(limits.udp_payload_max);
        let hdr = Header {
            id: [query[0], query[1]],
            opcode,
            rd,
            copied: 0,
        };

        // The question, as NSD reads it: before the opcode and counts are looked at.
        let Ok((qname, qend)) = ParsedName::parse(query, HEADER_LEN) else {
            return short(out, cap, &hdr, RCODE_FORMERR, true, None, None);
        };
        if qend + 4 > query.len() {
            return short(out, cap, &hdr, RCODE_FORMERR, true, None, None);
        }
        let qtype = rd16(qend);
        let qclass = rd16(qend + 2);
        let question = &query[HEADER_LEN..qend + 4];
        if opcode != OPCODE_QUERY {
            // NSD refuses NOTIFY it has no ACL for (copying its AA bit), and knows no other
            // opcode.
            if opcode == OPCODE_NOTIFY {
                let notify = Header {
                    copied: flags & AA,
                    ..hdr
                };
                return short(out, cap, &notify, RCODE_REFUSED, true, None, None);
            }
            return short(out, cap, &hdr, RCODE_NOTIMP, true, None, None);
        }
        if flags & 0x000f != 0 {
            // A query with an RCODE set is malformed (NSD: FORMERR, no question).
            return short(out, cap, &hdr, RCODE_FORMERR, true, None, None);
        }
        if rd16(4) == 0 && rd16(6) == 0 && rd16(8) == 0 && rd16(10) == 1 {
            // No question, only an OPT: an EDNS probe, answered NOERROR with our OPT (NSD).
            return match parse_opt(query, HEADER_LEN) {
                OptParse::Ok(e) => {
                    short(out, cap, &hdr, 0, true, None, Some(Reply::Opt(e.dnssec_ok)))
                }
                OptParse::BadVersion => short(out, cap, &hdr, 0, false, None, Some(Reply::BadVers)),
                OptParse::Malformed => short(out, cap, &hdr, RCODE_FORMERR, true, None, None),
            };
        }
        if rd16(4) != 1 {
            // NSD clears every flag, RD too, for this one.
            let bare = Header { rd: 0, ..hdr };
            return short(out, cap, &bare, RCODE_FORMERR, true, None, None);
        }
        if rd16(6) != 0 {
            return short(out, cap, &hdr, RCODE_FORMERR, true, None, None);
        }
        let mut pos = qend + 4;
        let nscount = rd16(8);
        if nscount != 0 {
            // Only IXFR carries a record (the client's SOA) in authority.
            if qtype != T_IXFR {
                return short(out, cap, &hdr, RCODE_FORMERR, true, None, None);
            }
            for _ in 0..nscount {
                match skip_rr(query, pos) {
                    Some(p) => pos = p,
                    None => return short(out, cap, &hdr, RCODE_FORMERR, true, None, None),
                }
            }
        }
        // The additional section may hold one OPT and nothing else (no TSIG here).
        let mut edns = None;
        match rd16(10) {
            0 => {}
            1 => match parse_opt(query, pos) {
                OptParse::Ok(e) => edns = Some(e),
                OptParse::BadVersion => {
                    return short(
                        out,
                        cap,
                        &hdr,
                        0,
                        false,
                        Some(question),
                        Some(Reply::BadVers),
                    );
                }
                OptParse::Malformed => {
                    return short(out, cap, &hdr, RCODE_FORMERR, true, None, None);
                }
            },
            _ => return short(out, cap, &hdr, RCODE_FORMERR, true, None, None),
        }
        // Trailing bytes after the last record are ignored, as NSD does.
        let opt = edns.map(|e| Reply::Opt(e.dnssec_ok));

        match qclass {
            CLASS_IN | CLASS_ANY => {}
            // NSD answers a few CHAOS names (version.bind, id.server); sluice tells nothing.
            CLASS_CH => return short(out, cap, &hdr, RCODE_REFUSED, false, Some(question), opt),
            _ => return short(out, cap, &hdr, RCODE_REFUSED, false, None, opt),
        }
        match qtype {
            T_AXFR if !limits.tcp => {
                return short(out, cap, &hdr, RCODE_NOTIMP, false, Some(question), opt);
            }
            T_AXFR | T_IXFR => {
                return short(out, cap, &hdr, RCODE_REFUSED, false, Some(question), opt);
            }
            _ => {}
        }

        // How much the client can take.
        let mut room = cap;
        if !limits.tcp {
            let client = edns.map_or(512, |e| usize::from(e.udp).max(512));
            room = room.min(client).min(usize::from(EDNS_UDP_SIZE));
        }

        // Where the query name stands in our names: the deepest interned suffix.
        let mut skip = 0;
        let mut known = NONE;
        while skip <= qname.labels() {
            if let Some(id) = self.names.get(qname.suffix(skip)) {
                known = id;
                break;
            }
            skip += 1;
        }
        let Some(zone) = self.zone_of(known) else {
            let ede = edns.map(|e| Reply::OptEde(e.dnssec_ok));
            return short(out, cap, &hdr, RCODE_REFUSED, false, Some(question), ede);
        };
        let qowner = if skip == 0 { known } else { QNAME };

        let mut plan = Plan {
            items: [Item {
                section: Section::Answer,
                owner: 0,
                zone: 0,
                rrset: 0,
            }; MAX_ITEMS],
            n: 0,
        };
        let mut st = State {
            rcode: 0,
            aa: false,
            referral: false,
            cnames: 0,
        };
        let ask = Ask { qtype, qclass };
        self.resolve(&ask, zone, known, skip == 0, qowner, &mut plan, &mut st);

        // Write: header, question, sections, OPT.
        let opt_len = if edns.is_some() { OPT_LEN } else { 0 };
        if HEADER_LEN + question.len() + opt_len > room {
            return drop(DropWhy::NoRoom);
        }
        let mut w = Writer {
            buf: out,
            pos: HEADER_LEN,
            limit: room - opt_len,
            ctab: [(0, 0); MAX_COMPRESS],
            nc: 0,
        };
        if w.put(question).is_err() {
            return drop(DropWhy::NoRoom);
        }
        // The query name's interned suffixes point into the question.
        let mut id = known;
        let mut s = skip;
        while id != NONE && id != 0 && s < qname.labels() {
            w.remember(id, HEADER_LEN + qname.suffix_offset(s));
            id = self.names.parent(id);
            s += 1;
        }
        let mut counts = [0u16; 3];
        let mut tc = false;
        'sections: for sec in SECTIONS {
            for i in 0..plan.n {
                let item = plan.items[i];
                if item.section != sec {
                    continue;
                }
                let (mark, marknc) = (w.pos, w.nc);
                match self.write_rrset(&mut w, &item) {
                    Ok(n) => {
                        let c = match sec {
                            Section::Answer => 0,
                            Section::Authority | Section::OptAuthority => 1,
                            Section::AddA | Section::AddAaaa => 2,
                        };
                        counts[c] = counts[c].saturating_add(n);
                    }
                    Err(Full) => {
                        // Whole RRsets only; TC only when answer or authority lose one (NSD).
                        w.pos = mark;
                        w.nc = marknc;
                        if matches!(sec, Section::Answer | Section::Authority) {
                            tc = true;
                            break 'sections;
                        }
                    }
                }
            }
        }
        w.limit = room;
        let mut arcount = counts[2];
        if let Some(e) = edns {
            // Room was kept, this cannot fail.
            if write_opt(&mut w, 0, e.dnssec_ok, false).is_err() {
                return drop(DropWhy::NoRoom);
            }
            arcount += 1;
        }
        let mut f = QR | rd | st.rcode;
        if st.aa {
            f |= AA;
        }
        if tc {
            f |= TC;
        }
        let len = w.pos;
        out[0..2].copy_from_slice(&hdr.id);
        out[2..4].copy_from_slice(&f.to_be_bytes());
        out[4..6].copy_from_slice(&1u16.to_be_bytes());
        out[6..8].copy_from_slice(&counts[0].to_be_bytes());
        out[8..10].copy_from_slice(&counts[1].to_be_bytes());
        out[10..12].copy_from_slice(&arcount.to_be_bytes());
        let outcome = if tc {
            Outcome::Truncated
        } else if st.rcode == RCODE_NXDOMAIN {
            Outcome::NxDomain
        } else if st.referral && st.cnames == 0 {
            Outcome::Referral
        } else if plan.has(Section::Answer) {
            Outcome::Answered
        } else {
            Outcome::NoData
        };
        Answer { len, outcome }
    }

    /// The deepest zone whose apex is `id` or above it.
    fn zone_of(&self, mut id: u32) -> Option<u32> {
        while id != NONE {
            let z = self.names.entries[id as usize].apex_of;
            if z != NONE {
                return Some(z);
            }
            id = self.names.parent(id);
        }
        None
    }

    /// Plans the answer for name `known` (or, when `!exact`, for a name below it that does not
    /// exist in our data) in `zone`, following CNAMEs.
    #[allow(clippy::too_many_arguments)]
    fn resolve(
        &self,
        ask: &Ask,
        mut zi: u32,
        known: u32,
        mut exact: bool,
        owner: u32,
        plan: &mut Plan,
        st: &mut State,
    ) {
        let mut z = &self.zones[zi as usize];
        let mut enc = closest(z, &self.names, known);
        exact &= enc == known;
        // RFC 4035 §3.1.4.1: DS at a child's apex is the parent's to answer, if we serve it.
        if exact && ask.qtype == T_DS && enc == z.apex && z.parent_zone != NONE {
            zi = z.parent_zone;
            z = &self.zones[zi as usize];
            enc = closest(z, &self.names, known);
            exact = enc == known;
        }
        let authoritative = ask.qclass != CLASS_ANY;
        // `enc` is at worst the apex, which always has a node; still, never panic.
        let Some(node) = z.nodes.get(&enc).copied() else {
            st.aa = authoritative;
            return;
        };
        if node.cut != NONE && !(exact && ask.qtype == T_DS && node.cut == enc) {
            // Referral: AA only when a CNAME led here from our authoritative data (NSD).
            st.aa = st.cnames > 0 && authoritative;
            st.referral = true;
            let cut = z.nodes.get(&node.cut).copied();
            if let Some(cut) = cut {
                let ns = z.rrset_of(&cut, T_NS);
                plan.add(Section::Authority, node.cut, zi, ns);
                self.plan_extras(plan, zi, ns);
            }
            return;
        }
        st.aa = authoritative;
        let (holder, owner) = if exact {
            (node, owner)
        } else if node.wildcard != NONE {
            match z.nodes.get(&node.wildcard) {
                Some(w) => (*w, owner),
                None => return,
            }
        } else {
            // NXDOMAIN, also at the end of a CNAME chain (RFC 6604), as NSD 4.
            st.rcode = RCODE_NXDOMAIN;
            if authoritative {
                plan.add(Section::Authority, z.apex, zi, z.neg_soa);
            }
            return;
        };

        if ask.qtype == T_ANY {
            // RFC 8482 minimal ANY, NSD's pick: the first of A, AAAA, SOA, MX, PTR in the node;
            // else the last other type; else the last DNSSEC type.
            let mut preferred = NONE;
            let mut normal = NONE;
            let mut dnssec = NONE;
            for i in holder.rrsets.0..holder.rrsets.1 {
                match z.rrsets[i as usize].rtype {
                    T_A | T_AAAA | T_SOA | T_MX | T_PTR => {
                        preferred = i;
                        break;
                    }
                    T_DNSKEY | T_RRSIG | T_NSEC => dnssec = i,
                    _ => normal = i,
                }
            }
            let pick = [preferred, normal, dnssec]
                .into_iter()
                .find(|&i| i != NONE)
                .unwrap_or(NONE);
            if pick == NONE {
                self.nodata(plan, zi, authoritative);
            } else {
                plan.add(Section::Answer, owner, zi, pick);
                self.plan_extras(plan, zi, pick);
            }
            return;
        }
        let rs = z.rrset_of(&holder, ask.qtype);
        if rs != NONE {
            plan.add(Section::Answer, owner, zi, rs);
            self.plan_extras(plan, zi, rs);
            if authoritative && ask.qtype != T_DS && ask.qtype != T_DNSKEY {
                plan.add(Section::OptAuthority, z.apex, zi, z.apex_ns);
                self.plan_extras(plan, zi, z.apex_ns);
            }
            return;
        }
        if holder.cname != NONE {
            if !plan.add(Section::Answer, owner, zi, holder.cname) {
                return; // a loop: this CNAME is in the answer already
            }
            st.cnames += 1;
            if st.cnames > MAX_CNAMES {
                return;
            }
            let set = z.rrsets[holder.cname as usize];
            let rr = z.rrs[set.rrs.0 as usize];
            if rr.names.0 == rr.names.1 {
                return;
            }
            let target = z.rnames[rr.names.0 as usize].id;
            // Followed into any zone we serve; a target outside them ends the chain.
            if let Some(tz) = self.zone_of(target) {
                self.resolve(ask, tz, target, true, target, plan, st);
            }
            return;
        }
        self.nodata(plan, zi, authoritative);
    }

    fn nodata(&self, plan: &mut Plan, zi: u32, authoritative: bool) {
        if authoritative {
            let z = &self.zones[zi as usize];
            plan.add(Section::Authority, z.apex, zi, z.neg_soa);
        }
    }

    /// Plans the A/AAAA RRsets an NS, MX or SRV RRset brings into the additional section.
    fn plan_extras(&self, plan: &mut Plan, zi: u32, rs: u32) {
        if rs == NONE {
            return;
        }
        let z = &self.zones[zi as usize];
        let set = z.rrsets[rs as usize];
        for e in &z.extras[set.extras.0 as usize..set.extras.1 as usize] {
            // An RRset already in the answer (the query was for it) is not repeated.
            plan.add(Section::AddA, e.owner, zi, e.a);
            plan.add(Section::AddAaaa, e.owner, zi, e.aaaa);
        }
    }

    /// Writes one RRset; returns how many records.
    fn write_rrset(&self, w: &mut Writer<'_>, item: &Item) -> Result<u16, Full> {
        let z = &self.zones[item.zone as usize];
        let set = z.rrsets[item.rrset as usize];
        let mut n = 0u16;
        for ri in set.rrs.0..set.rrs.1 {
            let rr = z.rrs[ri as usize];
            if item.owner == QNAME {
                w.put16(0xc000 | HEADER_LEN as u16)?;
            } else {
                w.name(self, item.owner)?;
            }
            w.put16(set.rtype)?;
            w.put16(CLASS_IN)?;
            w.put(&rr.ttl.to_be_bytes())?;
            let len_at = w.pos;
            w.put16(0)?;
            let rdata = &z.rdata[rr.rdata.0 as usize..rr.rdata.1 as usize];
            let mut done = 0;
            for rn in &z.rnames[rr.names.0 as usize..rr.names.1 as usize] {
                let at = usize::from(rn.at);
                w.put(&rdata[done..at])?;
                if rn.compress {
                    w.name(self, rn.id)?;
                } else {
                    w.put(&rdata[at..at + usize::from(rn.len)])?;
                }
                done = at + usize::from(rn.len);
            }
            w.put(&rdata[done..])?;
            let rdlen = (w.pos - len_at - 2) as u16;
            w.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
            n += 1;
        }
        Ok(n)
    }
}

/// The deepest node of `z` at or above `id`.
fn closest(z: &Zone, names: &super::zone::NameTable, mut id: u32) -> u32 {
    while id != NONE && id != z.apex && !z.nodes.contains_key(&id) {
        id = names.parent(id);
    }
    if id == NONE { z.apex } else { id }
}

struct Ask {
    qtype: u16,
    qclass: u16,
}

struct Header {
    id: [u8; 2],
    opcode: u16,
    rd: u16,
    /// Flags copied into a short reply besides RD: the AA bit of a NOTIFY (NSD copies it).
    copied: u16,
}

/// What goes in the additional section of a short reply.
#[derive(Clone, Copy)]
enum Reply {
    /// Echo an OPT (with DO if the client set it).
    Opt(bool),
    /// Echo an OPT with the "Not Authoritative" extended error.
    OptEde(bool),
    /// An OPT with extended RCODE 1 (BADVERS) and no DO, as NSD.
    BadVers,
}

/// A response with no records: errors, REFUSED, BADVERS. FORMERR, NOTIMP and a wrong opcode
/// go without the question and without OPT, as NSD sends them.
fn short(
    out: &mut [u8],
    cap: usize,
    h: &Header,
    rcode: u16,
    keep_opcode: bool,
    question: Option<&[u8]>,
    reply: Option<Reply>,
) -> Answer {
    let q = question.unwrap_or(&[]);
    let opt_len = match reply {
        None => 0,
        Some(Reply::OptEde(_)) => OPT_LEN + EDE_NOT_AUTH.len(),
        Some(_) => OPT_LEN,
    };
    let len = HEADER_LEN + q.len() + opt_len;
    if len > cap {
        return Answer {
            len: 0,
            outcome: Outcome::Dropped(DropWhy::NoRoom),
        };
    }
    let mut f = QR | h.rd | h.copied | rcode;
    if keep_opcode {
        f |= h.opcode << 11;
    }
    out[0..2].copy_from_slice(&h.id);
    out[2..4].copy_from_slice(&f.to_be_bytes());
    out[4..6].copy_from_slice(&u16::from(question.is_some()).to_be_bytes());
    out[6..10].fill(0);
    out[10..12].copy_from_slice(&u16::from(reply.is_some()).to_be_bytes());
    out[HEADER_LEN..HEADER_LEN + q.len()].copy_from_slice(q);
    let mut w = Writer {
        buf: out,
        pos: HEADER_LEN + q.len(),
        limit: len,
        ctab: [(0, 0); MAX_COMPRESS],
        nc: 0,
    };
    let written = match reply {
        None => Ok(()),
        Some(Reply::Opt(dnssec_ok)) => write_opt(&mut w, 0, dnssec_ok, false),
        Some(Reply::OptEde(dnssec_ok)) => write_opt(&mut w, 0, dnssec_ok, true),
        Some(Reply::BadVers) => write_opt(&mut w, 1, false, false),
    };
    if written.is_err() {
        return Answer {
            len: 0,
            outcome: Outcome::Dropped(DropWhy::NoRoom),
        };
    }
    let outcome = match (rcode, reply) {
        (_, Some(Reply::BadVers)) => Outcome::BadVers,
        (RCODE_FORMERR, _) => Outcome::FormErr,
        (RCODE_NOTIMP, _) => Outcome::NotImp,
        (0, _) => Outcome::NoData,
        _ => Outcome::Refused,
    };
    Answer { len, outcome }
}

fn write_opt(w: &mut Writer<'_>, ext_rcode: u8, dnssec_ok: bool, ede: bool) -> Result<(), Full> {
    w.put(&[0])?;
    w.put16(T_OPT)?;
    w.put16(EDNS_UDP_SIZE)?;
    w.put(&[ext_rcode, 0])?;
    w.put16(if dnssec_ok { DO_BIT } else { 0 })?;
    if ede {
        w.put16(EDE_NOT_AUTH.len() as u16)?;
        w.put(&EDE_NOT_AUTH)
    } else {
        w.put16(0)
    }
}

enum OptParse {
    Ok(Edns),
    BadVersion,
    Malformed,
}

/// Reads the one additional record, which must be an OPT (root owner, RFC 6891 §6.1.1).
fn parse_opt(msg: &[u8], at: usize) -> OptParse {
    let Some(h) = msg.get(at..at + OPT_LEN) else {
        return OptParse::Malformed;
    };
    if h[0] != 0 || u16::from_be_bytes([h[1], h[2]]) != T_OPT {
        return OptParse::Malformed;
    }
    let udp = u16::from_be_bytes([h[3], h[4]]);
    let version = h[6];
    let flags = u16::from_be_bytes([h[7], h[8]]);
    let rdlen = usize::from(u16::from_be_bytes([h[9], h[10]]));
    if version != 0 {
        return OptParse::BadVersion;
    }
    let Some(mut opts) = msg.get(at + OPT_LEN..at + OPT_LEN + rdlen) else {
        return OptParse::Malformed;
    };
    // Options are skipped (no cookies or NSID here) but must be well formed.
    while opts.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([opts[2], opts[3]]));
        match opts.get(4 + len..) {
            Some(rest) => opts = rest,
            None => return OptParse::Malformed,
        }
    }
    if !opts.is_empty() {
        return OptParse::Malformed;
    }
    OptParse::Ok(Edns {
        udp,
        dnssec_ok: flags & DO_BIT != 0,
    })
}

/// Skips one resource record (name possibly compressed); `None` if it runs past the end.
fn skip_rr(msg: &[u8], at: usize) -> Option<usize> {
    let p = name::skip_name(msg, at)?;
    let h = msg.get(p..p + 10)?;
    let end = p + 10 + usize::from(u16::from_be_bytes([h[8], h[9]]));
    (end <= msg.len()).then_some(end)
}
