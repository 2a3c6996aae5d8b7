//! Asking servers: every [`Query`] of a corpus is put to a [`Target`] from the client
//! namespace, with `kdig` (Knot's dig: a real client nobody here wrote, its `+json` output,
//! RFC 8427) or, for what kdig cannot send (mixed-case names, other opcodes, malformed
//! messages), as raw bytes over a kernel UDP or TCP socket whose reply [`wire`] parses.
//!
//! This module owns the transport and the reading of replies into [`Outcome`]s; it decides
//! nothing about right or wrong (that is [`crate::dns::compare`]). It only ever talks to the
//! addresses it is given, from inside the namespace it is given.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bed::End;
use crate::dns::corpus::{Query, QueryKind, Transport};
use crate::dns::wire::{self, Message, Name, Opt, QueryFlags, Question, Record};
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::types::IpFamily;

/// How long a raw query waits for its reply (a UDP query is sent twice before "no reply"
/// stands). Some raw queries must get none (a response sent as a query, a truncated header),
/// and this is what "none" costs; on a veth between two namespaces a reply takes well under a
/// millisecond.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(1);
/// kdig's `+timeout` (seconds) and `+retry`: every kdig query expects a reply, so a lost one
/// is retried once rather than reported.
const KDIG_TIMEOUT_SECS: u32 = 2;
const KDIG_RETRIES: u32 = 1;
/// Queries in flight at once: kdig processes (or raw sockets) run this many in parallel.
const PARALLEL: usize = 8;

/// A server under test as the client reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its name in reports ("nsd", "knot", "sluice").
    pub name: String,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address.
    pub ipv6: Ipv6Addr,
    /// The port (53).
    pub port: u16,
}

impl Target {
    /// The server on the veth end `end` of a [`crate::dns::DnsBed`], port 53.
    pub fn at(name: &str, end: &End) -> Target {
        Target {
            name: name.to_owned(),
            ipv4: end.ipv4(),
            ipv6: end.ipv6(),
            port: 53,
        }
    }

    /// Its address of `family`.
    pub fn addr(&self, family: IpFamily) -> SocketAddr {
        let ip: IpAddr = match family {
            IpFamily::V4 => self.ipv4.into(),
            IpFamily::V6 => self.ipv6.into(),
        };
        SocketAddr::new(ip, self.port)
    }
}

/// What came back for one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A reply, decoded.
    Reply(Box<Message>),
    /// Nothing within the timeout (or, over TCP, the connection closed without a reply).
    NoReply,
    /// The harness could not tell: kdig failed in an unexpected way, its output did not
    /// parse, or a reply was malformed. Always a failure, never excused.
    Error(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Reply(m) => write!(f, "{m}"),
            Outcome::NoReply => f.write_str(";; no reply\n"),
            Outcome::Error(e) => writeln!(f, ";; error: {e}"),
        }
    }
}

/// `kdig --version`'s first line; an error naming the package if kdig is not installed.
pub fn kdig_version() -> Result<String> {
    let out = Command::new("kdig")
        .arg("--version")
        .output()
        .map_err(|source| Error::File {
            op: "running kdig (apt-get install knot-dnsutils)".into(),
            path: "kdig".into(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Puts every query to `target` from inside `client`, eight at a time; the outcomes
/// are in query order.
pub fn ask_all(client: &Netns, target: &Target, queries: &[Query]) -> Result<Vec<Outcome>> {
    client.run(|| {
        let next = AtomicUsize::new(0);
        let results = Mutex::new(vec![None; queries.len()]);
        thread::scope(|s| {
            for _ in 0..PARALLEL.min(queries.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(q) = queries.get(i) else { break };
                        let outcome = ask(target, q);
                        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                    }
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|o| o.expect("every query was asked"))
            .collect()
    })
}

/// Puts one query to `target`; must run inside the client's namespace.
pub fn ask(target: &Target, query: &Query) -> Outcome {
    let addr = target.addr(query.family);
    match &query.kind {
        QueryKind::Kdig(_) => kdig(addr, query),
        QueryKind::Raw(raw) => {
            let sent_id = raw.bytes.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            let reply = match query.transport {
                // Asked twice before "no reply" stands, as kdig's +retry=1 does, so a
                // datagram lost on a loaded machine is not taken for a server's silence.
                Transport::Udp => match udp_exchange(addr, &raw.bytes, RAW_TIMEOUT) {
                    Ok(None) => udp_exchange(addr, &raw.bytes, RAW_TIMEOUT),
                    other => other,
                },
                Transport::Tcp => tcp_exchange(addr, &raw.bytes, RAW_TIMEOUT),
            };
            match reply {
                Ok(None) => Outcome::NoReply,
                Ok(Some(bytes)) => match Message::parse(&bytes) {
                    Ok(m) if sent_id.is_some_and(|id| id != m.id) => Outcome::Error(format!(
                        "reply ID {:#06x} to query ID {:#06x}",
                        m.id,
                        sent_id.unwrap_or_default()
                    )),
                    Ok(m) => Outcome::Reply(Box::new(m)),
                    Err(e) => Outcome::Error(format!(
                        "malformed reply ({e}): {}",
                        wire::generic_rdata(&bytes)
                    )),
                },
                Err(e) => Outcome::Error(format!("{} to {addr}: {e}", query.transport)),
            }
        }
    }
}

/// The kdig command line for `query` to `addr` (without the program name).
pub fn kdig_args(addr: SocketAddr, query: &Query) -> Vec<String> {
    let QueryKind::Kdig(k) = &query.kind else {
        return Vec::new();
    };
    let mut a: Vec<String> = vec![
        "+json".into(),
        "+noidn".into(),
        format!("+timeout={KDIG_TIMEOUT_SECS}"),
        format!("+retry={KDIG_RETRIES}"),
        format!("@{}", addr.ip()),
        "-p".into(),
        addr.port().to_string(),
        "-c".into(),
        // kdig knows IN, CH, NONE and ANY by name, everything else as CLASSnnn.
        match k.qclass {
            1 | 3 | 254 | 255 => wire::class_name(k.qclass),
            n => format!("CLASS{n}"),
        },
        "-t".into(),
        // kdig wants IXFR with the serial the client has.
        match k.qtype {
            251 => "IXFR=1".into(),
            t => wire::type_name(t),
        },
        "-q".into(),
        k.name.clone(),
    ];
    let f = k.flags;
    a.push(if f.rd { "+rec" } else { "+norec" }.into());
    for (on, flag) in [
        (f.aa, "+aaflag"),
        (f.tc, "+tcflag"),
        (f.ra, "+raflag"),
        (f.z, "+zflag"),
        (f.ad, "+adflag"),
        (f.cd, "+cdflag"),
    ] {
        if on {
            a.push(flag.into());
        }
    }
    match k.edns {
        None => a.push("+noedns".into()),
        Some(e) => {
            a.push(format!("+edns={}", e.version));
            if let Some(size) = e.udp_size {
                a.push(format!("+bufsize={size}"));
            }
            if e.dnssec_ok {
                a.push("+dnssec".into());
            }
        }
    }
    a.extend(k.extra.iter().cloned());
    a.push(match query.transport {
        Transport::Tcp => "+tcp".into(),
        // Keep a truncated reply as it is instead of retrying over TCP.
        Transport::Udp => "+ignore".into(),
    });
    a
}

fn kdig(addr: SocketAddr, query: &Query) -> Outcome {
    let args = kdig_args(addr, query);
    let out = match Command::new("kdig")
        .args(&args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => return Outcome::Error(format!("running kdig: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut json: Value = match serde_json::from_str(&stdout) {
        Ok(v) => v,
        Err(e) => {
            return Outcome::Error(format!(
                "kdig {}: output is not JSON ({e}): {stdout} {stderr}",
                args.join(" ")
            ));
        }
    };
    // A zone transfer prints an array of messages; read it as one reply with every
    // message's answers (the transfers here are refused: one message).
    if let Value::Array(msgs) = &mut json {
        let mut msgs = std::mem::take(msgs).into_iter();
        let Some(mut first) = msgs.next() else {
            return Outcome::Error(format!("kdig {}: an empty array", args.join(" ")));
        };
        for m in msgs {
            if let (Some(Value::Array(to)), Some(Value::Array(from))) =
                (first.get_mut("answerRRs"), m.get("answerRRs"))
            {
                to.extend(from.iter().cloned());
            }
        }
        json = first;
    }
    if json.as_object().is_some_and(|o| o.is_empty()) {
        // kdig prints `{}` when it got nothing back (timeout, refused or reset connection)
        // and says so on stderr; anything else it complains about is the harness's problem.
        if stderr.contains("failed to query server") {
            return Outcome::NoReply;
        }
        return Outcome::Error(format!("kdig {}: {}", args.join(" "), stderr.trim()));
    }
    match message_from_json(&json) {
        Ok(m) => Outcome::Reply(Box::new(m)),
        Err(e) => Outcome::Error(format!("kdig {}: {e}: {stdout}", args.join(" "))),
    }
}

/// A [`Message`] from kdig's `+json` (RFC 8427) output. The records' data come from
/// `RDATAHEX` (kdig prints it uncompressed), so kdig's and the raw path's replies decode to
/// the same values.
pub fn message_from_json(v: &Value) -> std::result::Result<Message, String> {
    let num = |key: &str| -> std::result::Result<u64, String> {
        v.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("no {key} in kdig's JSON"))
    };
    let flag = |key: &str| v.get(key).and_then(Value::as_u64).is_some_and(|f| f != 0);
    let mut m = Message {
        id: num("ID")? as u16,
        qr: flag("QR"),
        opcode: num("Opcode")? as u8,
        aa: flag("AA"),
        tc: flag("TC"),
        rd: flag("RD"),
        ra: flag("RA"),
        // RFC 8427 has no member for Z; kdig prints none.
        z: false,
        ad: flag("AD"),
        cd: flag("CD"),
        rcode: num("RCODE")? as u16,
        question: Vec::new(),
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        opt: None,
        opt_count: 0,
    };
    if let Some(qname) = v.get("QNAME").and_then(Value::as_str) {
        m.question.push(Question {
            name: Name::from_text(qname, None).map_err(|e| e.to_string())?,
            qtype: num("QTYPE")? as u16,
            qclass: num("QCLASS")? as u16,
        });
    }
    for (key, section) in [("answerRRs", 0), ("authorityRRs", 1), ("additionalRRs", 2)] {
        let Some(rrs) = v.get(key) else { continue };
        let rrs = rrs.as_array().ok_or(format!("{key} is not an array"))?;
        for rr in rrs {
            let field = |k: &str| {
                rr.get(k)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| format!("a record in {key} without {k}"))
            };
            let owner = rr
                .get("NAME")
                .and_then(Value::as_str)
                .ok_or(format!("a record in {key} without NAME"))?;
            let rdata = match rr.get("RDATAHEX").and_then(Value::as_str) {
                Some(hex) => wire::from_hex(hex).map_err(|e| e.to_string())?,
                None => Vec::new(),
            };
            let rtype = field("TYPE")? as u16;
            let class = field("CLASS")? as u16;
            let ttl = field("TTL")? as u32;
            if section == 2 && rtype == wire::TYPE_OPT {
                m.opt_count += 1;
                if m.opt.is_none() {
                    let opt = Opt::from_parts(class, ttl, &rdata).map_err(|e| e.to_string())?;
                    m.rcode |= (opt.ext_rcode as u16) << 4;
                    m.opt = Some(opt);
                }
                continue;
            }
            let rec = Record {
                owner: Name::from_text(owner, None).map_err(|e| e.to_string())?,
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
    Ok(m)
}

fn wildcard(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Sends one datagram to `addr` from a fresh connected socket and waits up to `timeout` for
/// the reply (`None`: nothing came). Must run inside the client's namespace.
pub fn udp_exchange(
    addr: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> io::Result<Option<Vec<u8>>> {
    let sock = UdpSocket::bind(wildcard(addr))?;
    sock.connect(addr)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.send(query)?;
    let mut buf = vec![0u8; 65535];
    match sock.recv(&mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        // ICMP port unreachable: nobody listens, which is no reply.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends one query over a fresh TCP connection (two-octet length prefix, RFC 1035 4.2.2)
/// and reads one reply, all within `timeout`; `None` if the server closed the connection or
/// sent nothing in time. Must run inside the client's namespace.
pub fn tcp_exchange(
    addr: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed)?;
    let mut read_exact = |buf: &mut [u8]| -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            stream.set_read_timeout(Some(left))?;
            match stream.read(&mut buf[got..]) {
                Ok(0) => return Ok(false),
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    };
    let mut len = [0u8; 2];
    if !read_exact(&mut len)? {
        return Ok(None);
    }
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    if !read_exact(&mut buf)? {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Polls until `addrs` (each over UDP and TCP, port 53) answer an SOA query for each of
/// `origins` authoritatively, or `timeout` passes. `alive` is asked between rounds and ends
/// the wait early with its message when the server has died. Runs the probes inside `client`.
pub fn wait_until_serving(
    client: &Netns,
    addrs: &[IpAddr],
    origins: &[Name],
    timeout: Duration,
    mut alive: impl FnMut() -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let end = Instant::now() + timeout;
    loop {
        alive()?;
        let round = client
            .run(|| probe_all(addrs, origins))
            .map_err(|e| e.to_string())?;
        let Err(last) = round else {
            return Ok(());
        };
        if Instant::now() >= end {
            return Err(format!("not serving after {timeout:?}: {last}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn probe_all(addrs: &[IpAddr], origins: &[Name]) -> std::result::Result<(), String> {
    for &ip in addrs {
        let addr = SocketAddr::new(ip, 53);
        for (i, origin) in origins.iter().enumerate() {
            let q = Question {
                name: origin.clone(),
                qtype: 6,
                qclass: 1,
            };
            let bytes = wire::build_query(0x5e00 + i as u16, QueryFlags::default(), &q, None, &[]);
            for tcp in [false, true] {
                let proto = if tcp { "TCP" } else { "UDP" };
                let t = Duration::from_millis(300);
                let reply = if tcp {
                    tcp_exchange(addr, &bytes, t)
                } else {
                    udp_exchange(addr, &bytes, t)
                };
                let reply = reply
                    .map_err(|e| format!("{origin} SOA over {proto} to {addr}: {e}"))?
                    .ok_or_else(|| format!("no reply to {origin} SOA over {proto} from {addr}"))?;
                let m = Message::parse(&reply)
                    .map_err(|e| format!("{origin} SOA over {proto} from {addr}: {e}"))?;
                if m.rcode != 0 || !m.aa || !m.answer.iter().any(|r| r.rtype == 6) {
                    return Err(format!(
                        "{origin} SOA over {proto} from {addr}: {}, AA={}, {} answers",
                        wire::rcode_name(m.rcode),
                        m.aa,
                        m.answer.len()
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    /// kdig 3.2.6's `+json` output for `kdig +json +edns=1 www.example.test` against NSD
    /// (BADVERS: 0 in RCODE, 1 in the OPT TTL's top octet), trimmed to what is read.
    const BADVERS_JSON: &str = r#"{
      "ID": 16162, "QR": 1, "Opcode": 0, "AA": 0, "TC": 0, "RD": 1, "RA": 0, "AD": 0,
      "CD": 0, "RCODE": 0, "QDCOUNT": 1, "ANCOUNT": 0, "NSCOUNT": 0, "ARCOUNT": 1,
      "QNAME": "www.example.test.", "QTYPE": 1, "QTYPEname": "A", "QCLASS": 1,
      "QCLASSname": "IN",
      "additionalRRs": [
        { "NAME": ".", "TYPE": 41, "TYPEname": "OPT", "CLASS": 1232, "TTL": 16777216,
          "RDLENGTH": 0 }
      ]
    }"#;

    /// The same for `kdig +json example.test MX` against Knot, one answer and one additional.
    const MX_JSON: &str = r#"{
      "ID": 9315, "QR": 1, "Opcode": 0, "AA": 1, "TC": 0, "RD": 0, "RA": 0, "AD": 0,
      "CD": 0, "RCODE": 0, "QNAME": "example.test.", "QTYPE": 15, "QCLASS": 1,
      "answerRRs": [
        { "NAME": "example.test.", "TYPE": 15, "TYPEname": "MX", "CLASS": 1, "CLASSname": "IN",
          "TTL": 3600, "rdataMX": "10 mail.example.test.", "RDLENGTH": 21,
          "RDATAHEX": "000A046D61696C076578616D706C65047465737400" }
      ],
      "additionalRRs": [
        { "NAME": "mail.example.test.", "TYPE": 1, "TYPEname": "A", "CLASS": 1,
          "CLASSname": "IN", "TTL": 3600, "rdataA": "192.0.2.25", "RDLENGTH": 4,
          "RDATAHEX": "C0000219" }
      ]
    }"#;

    #[test]
    fn reads_kdig_json() {
        let m = message_from_json(&serde_json::from_str(BADVERS_JSON).unwrap()).unwrap();
        assert_eq!(m.rcode, 16);
        assert!(m.qr && m.rd && !m.aa);
        assert_eq!(m.question[0].to_string(), "www.example.test. IN A");
        let opt = m.opt.unwrap();
        assert_eq!((opt.udp_size, opt.version, opt.ext_rcode), (1232, 0, 1));
        assert!(m.additional.is_empty());

        let m = message_from_json(&serde_json::from_str(MX_JSON).unwrap()).unwrap();
        assert_eq!(
            m.answer[0].to_string(),
            "example.test. 3600 IN MX 10 mail.example.test."
        );
        assert_eq!(
            m.additional[0].to_string(),
            "mail.example.test. 3600 IN A 192.0.2.25"
        );
        assert_eq!(m.opt, None);
    }

    #[test]
    fn kdig_command_lines() {
        use crate::dns::corpus::KdigQuery;
        use crate::dns::wire::Edns;
        let q = Query {
            family: IpFamily::V6,
            transport: Transport::Udp,
            kind: QueryKind::Kdig(KdigQuery {
                name: "www.example.test.".into(),
                qtype: 1,
                qclass: 1,
                flags: QueryFlags {
                    cd: true,
                    ..Default::default()
                },
                edns: Some(Edns {
                    version: 0,
                    udp_size: Some(512),
                    dnssec_ok: true,
                }),
                extra: vec!["+nsid".into()],
            }),
        };
        let addr: SocketAddr = "[fd53:1::2]:53".parse().unwrap();
        assert_eq!(
            kdig_args(addr, &q).join(" "),
            "+json +noidn +timeout=2 +retry=1 @fd53:1::2 -p 53 -c IN -t A -q www.example.test. \
             +norec +cdflag +edns=0 +bufsize=512 +dnssec +nsid +ignore"
        );
    }
}
