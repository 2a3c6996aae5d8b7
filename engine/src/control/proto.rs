//! The control protocol: one JSON request per datagram, one JSON reply per request.
//!
//! Owns the wire format only: the typed [`Request`]s, the [`Reply`] envelope, the error codes,
//! the size limits and the socket's name. It never touches a socket and never decides who may
//! do what (that is `super::socket`).
//!
//! Every message carries `"v": 1`. Decoding is strict: unknown fields, wrong types and missing
//! fields are `bad_request` errors whose message names the field, so an operator hand-writing
//! JSON learns what to fix.

use crate::apps::lb::config::{Forwarding, HealthCheck, Vip};
use crate::steer::L4Proto;
use crate::steer::PortList;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::net::IpAddr;

/// The abstract socket name for `iface` (without the leading NUL): where an engine's control
/// socket listens, for `sluice ctl` and a successor (`--takeover`) alike.
pub(crate) fn socket_name(iface: &str) -> String {
    format!("sluice/{iface}")
}

/// The abstract address for `iface`.
pub(crate) fn socket_addr(iface: &str) -> std::io::Result<rustix::net::SocketAddrUnix> {
    Ok(rustix::net::SocketAddrUnix::new_abstract_name(
        socket_name(iface).as_bytes(),
    )?)
}

/// The protocol version this build speaks.
pub const VERSION: u64 = 1;

/// Largest request datagram accepted, in bytes. A request is a few hundred bytes at most; the
/// limit only stops a client from making the server buffer garbage.
pub const MAX_REQUEST_SIZE: usize = 64 * 1024;

/// Largest reply datagram, in bytes. Larger than [`MAX_REQUEST_SIZE`] because `routes` or
/// `neighbours` of a busy host can run to thousands of entries; the server raises `SO_SNDBUF` so
/// one datagram of this size fits (the kernel refuses a SEQPACKET message larger than the send
/// buffer). A reply that would be larger becomes a `failed` error.
pub const MAX_REPLY_SIZE: usize = 256 * 1024;

/// A control request, as sent on the wire with `"v": 1` next to `"cmd"` (and `"op"` next to
/// both for `rules`). Encoded through these serde tags; decoded by [`Request::decode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Interface, modes granted, queues, cores, uptime, version.
    Status,
    /// Per-queue and total counters, eBPF counters, rates.
    Stats,
    /// List or change the steering rules.
    Rules(RulesRequest),
    /// The mirror's links.
    Links,
    /// The mirror's addresses.
    Addresses,
    /// The mirror's neighbours.
    Neighbours,
    /// The mirror's routes.
    Routes,
    /// Stop the engine (as SIGTERM would).
    Shutdown,
    /// Load balancer: list, add or delete VIPs.
    Vips(VipsRequest),
    /// Load balancer: list, add, delete or drain backends.
    Backends(BackendsRequest),
    /// Load balancer: re-read the configuration file (as SIGHUP does).
    Reload,
    /// Record frames as pcapng into the file descriptor passed with the request (SCM_RIGHTS);
    /// replied to when the capture ends. Admin only: it reveals traffic.
    Capture(CaptureRequest),
}

/// What a `capture` records and when it stops (at the first limit reached, or when the client
/// goes away: it closes the connection or sends anything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaptureRequest {
    /// Only this port: an interface name or a port number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Only this queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// Stop after this many frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Stop after this many milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Bytes kept of each frame (default and maximum [`MAX_SNAPLEN`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u32>,
    /// Record transmitted frames too (`direction: "both"`; default `"rx"`).
    #[serde(
        rename = "direction",
        skip_serializing_if = "is_rx",
        serialize_with = "direction_name"
    )]
    pub both: bool,
}

/// Largest (and default) snaplen a capture takes: the largest frame the engine can see.
pub const MAX_SNAPLEN: u32 = 65535;

fn is_rx(both: &bool) -> bool {
    !*both
}

fn direction_name<S: serde::Serializer>(both: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *both { "both" } else { "rx" })
}

/// The `direction` of a capture.
#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum CaptureDirection {
    Rx,
    Both,
}

/// The `op` of a `vips` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum VipsRequest {
    /// Every VIP.
    List,
    /// A new VIP, without backends yet.
    Add {
        /// The VIP (`ADDRESS:PORT/PROTO`).
        vip: Vip,
        /// DSR or IPIP.
        forwarding: Forwarding,
        /// How its backends are probed (default as in the file).
        #[serde(skip_serializing_if = "Option::is_none")]
        health: Option<HealthCheck>,
        /// The port probed (default the VIP's).
        #[serde(skip_serializing_if = "Option::is_none")]
        health_port: Option<u16>,
    },
    /// Remove a VIP: its traffic goes back to the kernel.
    Del {
        /// The VIP.
        vip: Vip,
    },
}

/// The `op` of a `backends` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BackendsRequest {
    /// The backends of every VIP, or of one.
    List {
        /// Only this VIP's.
        #[serde(skip_serializing_if = "Option::is_none")]
        vip: Option<Vip>,
    },
    /// Add a backend, or set the weight of (and un-drain) one already there.
    Add {
        /// The VIP.
        vip: Vip,
        /// The backend's address.
        backend: IpAddr,
        /// Its weight (default 1).
        #[serde(skip_serializing_if = "Option::is_none")]
        weight: Option<u32>,
    },
    /// Remove a backend: its flows move at their next packet.
    Del {
        /// The VIP.
        vip: Vip,
        /// The backend's address.
        backend: IpAddr,
    },
    /// Drain a backend: no new flows; established ones stay.
    Drain {
        /// The VIP.
        vip: Vip,
        /// The backend's address.
        backend: IpAddr,
    },
}

/// The `op` of a `rules` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RulesRequest {
    /// All rules in the steering map.
    List,
    /// Steer these ports of `proto` into the workers.
    Add {
        /// UDP or TCP.
        proto: L4Proto,
        /// Destination ports.
        ports: Ports,
    },
    /// Return these ports of `proto` to the kernel.
    Del {
        /// UDP or TCP.
        proto: L4Proto,
        /// Destination ports.
        ports: Ports,
    },
}

/// A set of ports, on the wire in `sluice run`'s syntax (`"9100,9200-9210"`), sorted and
/// deduplicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ports(pub Vec<u16>);

impl TryFrom<String> for Ports {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse::<PortList>().map(|p| Ports(p.0))
    }
}

impl From<PortList> for Ports {
    fn from(p: PortList) -> Self {
        Ports(p.0)
    }
}

impl From<Ports> for String {
    fn from(p: Ports) -> String {
        p.to_string()
    }
}

impl fmt::Display for Ports {
    /// Runs of consecutive ports collapse into ranges: `7,9000-9010`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let mut first = true;
        let mut i = 0;
        while i < sorted.len() {
            let start = sorted[i];
            let mut end = start;
            while i + 1 < sorted.len() && sorted[i + 1] == end.wrapping_add(1) && end != u16::MAX {
                i += 1;
                end = sorted[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl Request {
    /// Whether the request changes the engine (needs root or the admin group) rather than reads.
    pub fn is_change(&self) -> bool {
        match self {
            Request::Rules(RulesRequest::Add { .. } | RulesRequest::Del { .. })
            | Request::Shutdown
            | Request::Reload
            | Request::Vips(VipsRequest::Add { .. } | VipsRequest::Del { .. })
            | Request::Backends(
                BackendsRequest::Add { .. }
                | BackendsRequest::Del { .. }
                | BackendsRequest::Drain { .. },
            )
            // Not a change, but it reveals traffic: admins only, and logged like a change.
            | Request::Capture(_) => true,
            Request::Rules(RulesRequest::List)
            | Request::Vips(VipsRequest::List)
            | Request::Backends(BackendsRequest::List { .. })
            | Request::Status
            | Request::Stats
            | Request::Links
            | Request::Addresses
            | Request::Neighbours
            | Request::Routes => false,
        }
    }

    /// True for a request whose output is a stream written into the file descriptor passed
    /// with it (`SCM_RIGHTS`) rather than its reply: `capture`.
    pub fn is_stream(&self) -> bool {
        matches!(self, Request::Capture(_))
    }

    /// The request as one datagram: `{"v":1,"cmd":...}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).expect("a Request always serializes");
        if let Value::Object(m) = &mut v {
            m.insert("v".into(), VERSION.into());
        }
        serde_json::to_vec(&v).expect("a Value always serializes")
    }

    /// Parses one request datagram, strictly.
    ///
    /// Order of checks: size, JSON syntax, an object, `v` (a client of another version may send
    /// commands this one does not know, and should hear about the version), then every field's
    /// type and value, then the fields the command takes.
    pub fn decode(buf: &[u8]) -> Result<Request, ErrorReply> {
        if buf.len() > MAX_REQUEST_SIZE {
            return Err(ErrorReply::too_large(buf.len()));
        }
        let value: Value = serde_json::from_slice(buf)
            .map_err(|e| ErrorReply::new(ErrorCode::BadJson, format!("invalid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ErrorReply::bad_request(
                "a request is a JSON object like {\"v\":1,\"cmd\":\"status\"}",
            ));
        }
        let Versioned { v } = typed(&value)?;
        if v.as_u64() != Some(VERSION) {
            return Err(ErrorReply::new(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {v} is not supported; this sluice speaks v{VERSION}"),
            ));
        }
        typed::<WireRequest>(&value)?
            .into_request()
            .map_err(ErrorReply::bad_request)
    }
}

impl fmt::Display for Request {
    /// A short human form for logs: `rules add udp 9100,9200-9210`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Status => f.write_str("status"),
            Request::Stats => f.write_str("stats"),
            Request::Rules(RulesRequest::List) => f.write_str("rules list"),
            Request::Rules(RulesRequest::Add { proto, ports }) => {
                write!(f, "rules add {proto} {ports}")
            }
            Request::Rules(RulesRequest::Del { proto, ports }) => {
                write!(f, "rules del {proto} {ports}")
            }
            Request::Links => f.write_str("links"),
            Request::Addresses => f.write_str("addresses"),
            Request::Neighbours => f.write_str("neighbours"),
            Request::Routes => f.write_str("routes"),
            Request::Shutdown => f.write_str("shutdown"),
            Request::Reload => f.write_str("reload"),
            Request::Vips(VipsRequest::List) => f.write_str("vips list"),
            Request::Vips(VipsRequest::Add {
                vip, forwarding, ..
            }) => write!(f, "vips add {vip} {forwarding}"),
            Request::Vips(VipsRequest::Del { vip }) => write!(f, "vips del {vip}"),
            Request::Backends(BackendsRequest::List { vip: None }) => f.write_str("backends list"),
            Request::Backends(BackendsRequest::List { vip: Some(v) }) => {
                write!(f, "backends list {v}")
            }
            Request::Backends(BackendsRequest::Add {
                vip,
                backend,
                weight,
            }) => write!(
                f,
                "backends add {vip} {backend} weight {}",
                weight.unwrap_or(1)
            ),
            Request::Backends(BackendsRequest::Del { vip, backend }) => {
                write!(f, "backends del {vip} {backend}")
            }
            Request::Backends(BackendsRequest::Drain { vip, backend }) => {
                write!(f, "backends drain {vip} {backend}")
            }
            Request::Capture(c) => {
                f.write_str("capture")?;
                if let Some(p) = &c.port {
                    write!(f, " port {p}")?;
                }
                if let Some(q) = c.queue {
                    write!(f, " queue {q}")?;
                }
                if c.both {
                    f.write_str(" direction both")?;
                }
                if let Some(n) = c.count {
                    write!(f, " count {n}")?;
                }
                if let Some(ms) = c.duration_ms {
                    write!(f, " duration {}s", ms as f64 / 1000.0)?;
                }
                if let Some(b) = c.snaplen {
                    write!(f, " snaplen {b}")?;
                }
                Ok(())
            }
        }
    }
}

/// The first look at a request: only its version, whatever else it holds.
#[derive(Deserialize)]
struct Versioned {
    /// Any number, so that `2` or `1.5` is an unsupported version rather than a type error.
    v: serde_json::Number,
}

/// A request as it is on the wire: one flat object, every field any command takes. serde checks
/// the type and value of each field and refuses unknown ones; [`WireRequest::into_request`]
/// checks that the command got the fields it takes and no others.
///
/// Not the tagged [`Request`] itself: serde buffers an internally tagged enum's fields before it
/// looks at them, which loses the path to a wrong field (and a unit variant would ignore unknown
/// ones). Encoding does use [`Request`]'s tags; `every_command_round_trips` keeps the two equal.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    /// Checked by [`Versioned`] already.
    #[serde(rename = "v")]
    _version: serde::de::IgnoredAny,
    cmd: Command,
    #[serde(default, deserialize_with = "present")]
    op: Option<Op>,
    #[serde(default, deserialize_with = "present")]
    proto: Option<L4Proto>,
    #[serde(default, deserialize_with = "present")]
    ports: Option<Ports>,
    #[serde(default, deserialize_with = "present")]
    vip: Option<Vip>,
    #[serde(default, deserialize_with = "present")]
    forwarding: Option<Forwarding>,
    #[serde(default, deserialize_with = "present")]
    health: Option<HealthCheck>,
    #[serde(default, deserialize_with = "present")]
    health_port: Option<u16>,
    #[serde(default, deserialize_with = "present")]
    backend: Option<IpAddr>,
    #[serde(default, deserialize_with = "present")]
    weight: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    port: Option<String>,
    #[serde(default, deserialize_with = "present")]
    queue: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    count: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    duration_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    snaplen: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    direction: Option<CaptureDirection>,
}

/// An optional field that, when given, must hold a value: `null` is a wrong type, not absence.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The `cmd` values this version knows.
#[derive(Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Status,
    Stats,
    Rules,
    Links,
    Addresses,
    Neighbours,
    Routes,
    Shutdown,
    Vips,
    Backends,
    Reload,
    Capture,
}

/// The `op` values of `rules`, `vips` and `backends` requests (each takes some of them).
#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Op {
    List,
    Add,
    Del,
    Drain,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Add => "add",
            Op::Del => "del",
            Op::Drain => "drain",
        }
    }
}

impl WireRequest {
    /// The typed request; `Err` names the field that is missing or that the command does not
    /// take.
    fn into_request(self) -> Result<Request, String> {
        let WireRequest {
            cmd,
            mut op,
            mut proto,
            mut ports,
            mut vip,
            mut forwarding,
            mut health,
            mut health_port,
            mut backend,
            mut weight,
            port,
            queue,
            count,
            duration_ms,
            snaplen,
            direction,
            ..
        } = self;
        // The capture fields belong to `capture` alone.
        let capture_fields = [
            ("port", port.is_some()),
            ("queue", queue.is_some()),
            ("count", count.is_some()),
            ("duration_ms", duration_ms.is_some()),
            ("snaplen", snaplen.is_some()),
            ("direction", direction.is_some()),
        ];
        if !matches!(cmd, Command::Capture)
            && let Some((field, _)) = capture_fields.iter().find(|(_, given)| *given)
        {
            let name = serde_json::to_value(cmd).ok();
            let name = name.as_ref().and_then(Value::as_str).unwrap_or("?");
            return Err(format!("command `{name}`: unknown field `{field}`"));
        }
        let req = match cmd {
            Command::Status => Request::Status,
            Command::Stats => Request::Stats,
            Command::Links => Request::Links,
            Command::Addresses => Request::Addresses,
            Command::Neighbours => Request::Neighbours,
            Command::Routes => Request::Routes,
            Command::Shutdown => Request::Shutdown,
            Command::Reload => Request::Reload,
            Command::Capture => {
                if snaplen.is_some_and(|b| b == 0 || b > MAX_SNAPLEN) {
                    return Err(format!(
                        "command `capture`: field `snaplen`: must be 1..={MAX_SNAPLEN}"
                    ));
                }
                if count == Some(0) {
                    return Err("command `capture`: field `count`: must be at least 1".into());
                }
                Request::Capture(CaptureRequest {
                    port,
                    queue,
                    count,
                    duration_ms,
                    snaplen,
                    both: direction == Some(CaptureDirection::Both),
                })
            }
            Command::Rules => Request::Rules(
                match take_op("rules", &mut op, &[Op::List, Op::Add, Op::Del])? {
                    Op::List => RulesRequest::List,
                    change => {
                        let missing =
                            |f| format!("command `rules {}`: missing field `{f}`", change.name());
                        let proto = proto.take().ok_or_else(|| missing("proto"))?;
                        let ports = ports.take().ok_or_else(|| missing("ports"))?;
                        match change {
                            Op::Add => RulesRequest::Add { proto, ports },
                            _ => RulesRequest::Del { proto, ports },
                        }
                    }
                },
            ),
            Command::Vips => Request::Vips(
                match take_op("vips", &mut op, &[Op::List, Op::Add, Op::Del])? {
                    Op::List => VipsRequest::List,
                    change => {
                        let missing =
                            |f| format!("command `vips {}`: missing field `{f}`", change.name());
                        let vip = vip.take().ok_or_else(|| missing("vip"))?;
                        match change {
                            Op::Add => VipsRequest::Add {
                                vip,
                                forwarding: forwarding
                                    .take()
                                    .ok_or_else(|| missing("forwarding"))?,
                                health: health.take(),
                                health_port: health_port.take(),
                            },
                            _ => VipsRequest::Del { vip },
                        }
                    }
                },
            ),
            Command::Backends => Request::Backends(
                match take_op(
                    "backends",
                    &mut op,
                    &[Op::List, Op::Add, Op::Del, Op::Drain],
                )? {
                    Op::List => BackendsRequest::List { vip: vip.take() },
                    change => {
                        let missing = |f| {
                            format!("command `backends {}`: missing field `{f}`", change.name())
                        };
                        let vip = vip.take().ok_or_else(|| missing("vip"))?;
                        let backend = backend.take().ok_or_else(|| missing("backend"))?;
                        match change {
                            Op::Add => BackendsRequest::Add {
                                vip,
                                backend,
                                weight: weight.take(),
                            },
                            Op::Del => BackendsRequest::Del { vip, backend },
                            _ => BackendsRequest::Drain { vip, backend },
                        }
                    }
                },
            ),
        };
        // What the command used was taken; anything left over is not for it.
        let left = [
            ("op", op.is_some()),
            ("proto", proto.is_some()),
            ("ports", ports.is_some()),
            ("vip", vip.is_some()),
            ("forwarding", forwarding.is_some()),
            ("health", health.is_some()),
            ("health_port", health_port.is_some()),
            ("backend", backend.is_some()),
            ("weight", weight.is_some()),
        ];
        match left.iter().find(|(_, given)| *given) {
            Some((field, _)) => Err(format!("command `{req}`: unknown field `{field}`")),
            None => Ok(req),
        }
    }
}

/// The `op` of command `cmd`, which takes the ops in `allowed`.
fn take_op(cmd: &str, op: &mut Option<Op>, allowed: &[Op]) -> Result<Op, String> {
    match op.take() {
        None => Err(format!("command `{cmd}`: missing field `op`")),
        Some(o) if allowed.contains(&o) => Ok(o),
        Some(o) => Err(format!(
            "command `{cmd}`: op `{}` is not one of {}",
            o.name(),
            allowed
                .iter()
                .map(|a| format!("`{}`", a.name()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Deserializes `value` as a `T`; a failure is a `bad_request` whose message names the field
/// (`field `ports`: ...`), or an `unknown_command` for a string `cmd` this version does not know.
fn typed<'a, T: Deserialize<'a>>(value: &'a Value) -> Result<T, ErrorReply> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        // serde names a missing or unknown field itself; a wrong value it does not.
        let message = if path == "." || inner.contains(&format!("`{path}`")) {
            inner
        } else {
            format!("field `{path}`: {inner}")
        };
        // A string is the right type for `cmd`, so only its value can be wrong.
        if path == "cmd" && value["cmd"].is_string() {
            ErrorReply::new(ErrorCode::UnknownCommand, message)
        } else {
            ErrorReply::bad_request(message)
        }
    })
}

/// Why a request failed, as carried in an error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The datagram is not JSON.
    BadJson,
    /// JSON, but not a valid request: a field is missing, unknown or of the wrong type.
    BadRequest,
    /// `cmd` names no command this version knows.
    UnknownCommand,
    /// The datagram exceeds [`MAX_REQUEST_SIZE`].
    TooLarge,
    /// A change from a peer that is neither root nor in the admin group.
    PermissionDenied,
    /// `v` is not [`VERSION`].
    UnsupportedVersion,
    /// The request was valid but carrying it out failed.
    Failed,
}

impl ErrorCode {
    /// The code as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Failed => "failed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a failed reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line for a human, naming the field or the requirement.
    pub message: String,
}

impl ErrorReply {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
        }
    }

    /// A `bad_request` error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A `too_large` error for a datagram of `len` bytes.
    pub fn too_large(len: usize) -> Self {
        Self::new(
            ErrorCode::TooLarge,
            format!("request of {len} bytes exceeds the maximum of {MAX_REQUEST_SIZE} bytes"),
        )
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A reply: `{"v":1,"ok":true,"data":...}` or `{"v":1,"ok":false,"error":{...}}`.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Success with the command's data.
    Ok(Value),
    /// Failure.
    Err(ErrorReply),
}

/// The wire shape of a reply.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReply {
    v: u64,
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorReply>,
}

impl Reply {
    /// The reply as one datagram.
    pub fn encode(&self) -> Vec<u8> {
        let wire = match self {
            Reply::Ok(data) => WireReply {
                v: VERSION,
                ok: true,
                data: Some(data.clone()),
                error: None,
            },
            Reply::Err(e) => WireReply {
                v: VERSION,
                ok: false,
                data: None,
                error: Some(e.clone()),
            },
        };
        serde_json::to_vec(&wire).expect("a reply always serializes")
    }

    /// Parses a reply datagram; the error says what is wrong with it.
    pub fn decode(buf: &[u8]) -> Result<Reply, String> {
        let wire: WireReply =
            serde_json::from_slice(buf).map_err(|e| format!("malformed reply: {e}"))?;
        if wire.v != VERSION {
            return Err(format!(
                "reply has protocol version {}, this sluice ctl speaks v{VERSION}",
                wire.v
            ));
        }
        match (wire.ok, wire.data, wire.error) {
            (true, data, None) => Ok(Reply::Ok(data.unwrap_or(Value::Null))),
            (false, None, Some(e)) => Ok(Reply::Err(e)),
            _ => Err("malformed reply: `ok` does not match `data`/`error`".into()),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    fn decode(v: Value) -> Result<Request, ErrorReply> {
        Request::decode(&serde_json::to_vec(&v).unwrap())
    }

    fn err(v: Value) -> ErrorReply {
        decode(v).unwrap_err()
    }

    fn all_requests() -> Vec<Request> {
        vec![
            Request::Status,
            Request::Stats,
            Request::Rules(RulesRequest::List),
            Request::Rules(RulesRequest::Add {
                proto: L4Proto::Udp,
                ports: Ports(vec![9100, 9200, 9201, 9202]),
            }),
            Request::Rules(RulesRequest::Del {
                proto: L4Proto::Tcp,
                ports: Ports(vec![80]),
            }),
            Request::Links,
            Request::Addresses,
            Request::Neighbours,
            Request::Routes,
            Request::Shutdown,
            Request::Reload,
            Request::Vips(VipsRequest::List),
            Request::Vips(VipsRequest::Add {
                vip: "10.0.0.100:80/tcp".parse().unwrap(),
                forwarding: Forwarding::Dsr,
                health: None,
                health_port: None,
            }),
            Request::Vips(VipsRequest::Add {
                vip: "[2001:db8::1]:0/udp".parse().unwrap(),
                forwarding: Forwarding::Ipip,
                health: Some(HealthCheck::Udp),
                health_port: Some(53),
            }),
            Request::Vips(VipsRequest::Del {
                vip: "10.0.0.100:80/tcp".parse().unwrap(),
            }),
            Request::Backends(BackendsRequest::List { vip: None }),
            Request::Backends(BackendsRequest::List {
                vip: Some("10.0.0.100:80/tcp".parse().unwrap()),
            }),
            Request::Backends(BackendsRequest::Add {
                vip: "10.0.0.100:80/tcp".parse().unwrap(),
                backend: "10.0.1.2".parse().unwrap(),
                weight: Some(3),
            }),
            Request::Backends(BackendsRequest::Del {
                vip: "10.0.0.100:80/tcp".parse().unwrap(),
                backend: "10.0.1.2".parse().unwrap(),
            }),
            Request::Backends(BackendsRequest::Drain {
                vip: "[2001:db8::1]:0/udp".parse().unwrap(),
                backend: "2001:db8::2".parse().unwrap(),
            }),
            Request::Capture(CaptureRequest::default()),
            Request::Capture(CaptureRequest {
                port: Some("eth1".into()),
                queue: Some(1),
                count: Some(10),
                duration_ms: Some(1500),
                snaplen: Some(96),
                both: true,
            }),
        ]
    }

    #[test]
    fn capture_fields_are_checked() {
        assert_eq!(
            decode(json!({"v":1,"cmd":"capture","direction":"both","count":3,"port":"1"})).unwrap(),
            Request::Capture(CaptureRequest {
                port: Some("1".into()),
                count: Some(3),
                both: true,
                ..Default::default()
            })
        );
        assert!(
            err(json!({"v":1,"cmd":"status","count":3}))
                .message
                .contains("unknown field `count`")
        );
        assert!(
            err(json!({"v":1,"cmd":"capture","snaplen":0}))
                .message
                .contains("snaplen")
        );
        assert!(
            err(json!({"v":1,"cmd":"capture","direction":"tx"}))
                .message
                .contains("direction")
        );
        assert!(Request::Capture(CaptureRequest::default()).is_stream());
    }

    #[test]
    fn lb_requests_name_what_is_wrong() {
        let err = |v: Value| decode(v).unwrap_err().message;
        assert_eq!(
            err(json!({"v":1,"cmd":"backends","op":"del","vip":"10.0.0.100:80/tcp"})),
            "command `backends del`: missing field `backend`"
        );
        assert_eq!(
            err(json!({"v":1,"cmd":"vips","op":"drain","vip":"10.0.0.100:80/tcp"})),
            "command `vips`: op `drain` is not one of `list`, `add`, `del`"
        );
        assert_eq!(
            err(json!({"v":1,"cmd":"rules","op":"drain"})),
            "command `rules`: op `drain` is not one of `list`, `add`, `del`"
        );
        let bad_vip = err(json!({"v":1,"cmd":"vips","op":"del","vip":"10.0.0.100"}));
        assert!(bad_vip.starts_with("field `vip`: "), "{bad_vip}");
        assert_eq!(
            err(json!({"v":1,"cmd":"reload","vip":"10.0.0.100:80/tcp"})),
            "command `reload`: unknown field `vip`"
        );
        let bad_weight = err(
            json!({"v":1,"cmd":"backends","op":"add","vip":"10.0.0.100:80/tcp","backend":"10.0.1.1","weight":-1}),
        );
        assert!(bad_weight.starts_with("field `weight`: "), "{bad_weight}");
        assert!(
            Request::Backends(BackendsRequest::Drain {
                vip: "10.0.0.100:80/tcp".parse().unwrap(),
                backend: "10.0.1.2".parse().unwrap(),
            })
            .is_change()
        );
        assert!(!Request::Backends(BackendsRequest::List { vip: None }).is_change());
    }

    #[test]
    fn every_command_round_trips() {
        for req in all_requests() {
            let bytes = req.encode();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["v"], 1, "{v}");
            assert_eq!(Request::decode(&bytes).unwrap(), req, "{v}");
        }
    }

    #[test]
    fn wire_forms_match_the_documented_ones() {
        assert_eq!(
            decode(json!({"v":1,"cmd":"status"})).unwrap(),
            Request::Status
        );
        assert_eq!(
            decode(json!({"v":1,"cmd":"rules","op":"add","proto":"udp","ports":"9100,9200-9210"}))
                .unwrap(),
            Request::Rules(RulesRequest::Add {
                proto: L4Proto::Udp,
                ports: Ports([9100].into_iter().chain(9200..=9210).collect()),
            })
        );
        let enc: Value = serde_json::from_slice(
            &Request::Rules(RulesRequest::Add {
                proto: L4Proto::Udp,
                ports: Ports([9100].into_iter().chain(9200..=9210).collect()),
            })
            .encode(),
        )
        .unwrap();
        assert_eq!(
            enc,
            json!({"v":1,"cmd":"rules","op":"add","proto":"udp","ports":"9100,9200-9210"})
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&Request::Rules(RulesRequest::List).encode()).unwrap(),
            json!({"v":1,"cmd":"rules","op":"list"})
        );
    }

    #[test]
    fn changes_and_reads() {
        let changes: Vec<bool> = all_requests().iter().map(Request::is_change).collect();
        assert_eq!(
            changes,
            [
                false, false, false, true, true, false, false, false, false, true, // base
                true, // reload
                false, true, true, true, // vips list, add, add, del
                false, false, true, true, true, // backends list, list, add, del, drain
                true, true // capture (reveals traffic)
            ]
        );
    }

    #[test]
    fn display_for_logs() {
        assert_eq!(
            Request::Rules(RulesRequest::Add {
                proto: L4Proto::Udp,
                ports: Ports(vec![7, 9000, 9001, 9002, 65535]),
            })
            .to_string(),
            "rules add udp 7,9000-9002,65535"
        );
        assert_eq!(Request::Shutdown.to_string(), "shutdown");
    }

    #[test]
    fn bad_json() {
        for bad in [&b"{"[..], b"", b"not json", b"\xff\xfe"] {
            let e = Request::decode(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadJson, "{e}");
        }
    }

    #[test]
    fn too_large() {
        let big = vec![b' '; MAX_REQUEST_SIZE + 1];
        let e = Request::decode(&big).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
        assert!(e.message.contains(&MAX_REQUEST_SIZE.to_string()), "{e}");
    }

    #[test]
    fn not_an_object() {
        let e = err(json!([1, 2]));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("object"), "{e}");
    }

    #[test]
    fn version_errors() {
        let e = err(json!({"cmd":"status"}));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("`v`"), "{e}");
        let e = err(json!({"v":"1","cmd":"status"}));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("`v`"), "{e}");
        for v in [json!(2), json!(0), json!(-1), json!(1.5)] {
            let e = err(json!({"v":v,"cmd":"status"}));
            assert_eq!(e.code, ErrorCode::UnsupportedVersion, "{e}");
        }
    }

    #[test]
    fn cmd_errors() {
        let e = err(json!({"v":1}));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("`cmd`"), "{e}");
        let e = err(json!({"v":1,"cmd":7}));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("`cmd`"), "{e}");
        let e = err(json!({"v":1,"cmd":"reboot"}));
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        assert!(e.message.contains("reboot"), "{e}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = err(json!({"v":1,"cmd":"status","verbose":true}));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("`verbose`"), "{e}");
        let e = err(json!({"v":1,"cmd":"rules","op":"list","proto":"udp"}));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("`proto`"), "{e}");
        let e =
            err(json!({"v":1,"cmd":"rules","op":"add","proto":"udp","ports":"1","action":"drop"}));
        assert!(e.message.contains("`action`"), "{e}");
    }

    #[test]
    fn null_is_not_absence() {
        let e = err(json!({"v":1,"cmd":"status","op":null}));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("`op`"), "{e}");
    }

    #[test]
    fn messages_name_the_field_once() {
        let e = err(json!({"v":1,"cmd":"stats","verbose":true}));
        assert_eq!(e.message.matches("`verbose`").count(), 1, "{e}");
        let e = err(json!({"v":1,"cmd":"rules","op":"add","proto":"udp","ports":"0"}));
        assert!(e.message.starts_with("field `ports`: "), "{e}");
    }

    #[test]
    fn rule_field_errors_are_named() {
        let cases = [
            (json!({"v":1,"cmd":"rules"}), "`op`"),
            (json!({"v":1,"cmd":"rules","op":3}), "`op`"),
            (json!({"v":1,"cmd":"rules","op":"flush"}), "`op`"),
            (
                json!({"v":1,"cmd":"rules","op":"add","ports":"1"}),
                "`proto`",
            ),
            (
                json!({"v":1,"cmd":"rules","op":"add","proto":"sctp","ports":"1"}),
                "`proto`",
            ),
            (
                json!({"v":1,"cmd":"rules","op":"del","proto":17,"ports":"1"}),
                "`proto`",
            ),
            (
                json!({"v":1,"cmd":"rules","op":"add","proto":"udp"}),
                "`ports`",
            ),
            (
                json!({"v":1,"cmd":"rules","op":"add","proto":"udp","ports":9100}),
                "`ports`",
            ),
            (
                json!({"v":1,"cmd":"rules","op":"add","proto":"udp","ports":"0"}),
                "`ports`",
            ),
            (
                json!({"v":1,"cmd":"rules","op":"del","proto":"tcp","ports":"9-3"}),
                "`ports`",
            ),
        ];
        for (req, field) in cases {
            let e = err(req.clone());
            assert_eq!(e.code, ErrorCode::BadRequest, "{req}: {e}");
            assert!(e.message.contains(field), "{req}: {e}");
        }
    }

    #[test]
    fn replies_round_trip() {
        let ok = Reply::Ok(json!({"queues": [0, 1]}));
        let v: Value = serde_json::from_slice(&ok.encode()).unwrap();
        assert_eq!(v, json!({"v":1,"ok":true,"data":{"queues":[0,1]}}));
        assert_eq!(Reply::decode(&ok.encode()).unwrap(), ok);

        let codes = [
            ErrorCode::BadJson,
            ErrorCode::BadRequest,
            ErrorCode::UnknownCommand,
            ErrorCode::TooLarge,
            ErrorCode::PermissionDenied,
            ErrorCode::UnsupportedVersion,
            ErrorCode::Failed,
        ];
        for code in codes {
            let r = Reply::Err(ErrorReply::new(code, "why"));
            let v: Value = serde_json::from_slice(&r.encode()).unwrap();
            assert_eq!(
                v,
                json!({"v":1,"ok":false,"error":{"code":code.as_str(),"message":"why"}})
            );
            assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn malformed_replies_are_rejected() {
        for bad in [
            json!({"v":2,"ok":true,"data":1}),
            json!({"v":1,"ok":true,"error":{"code":"failed","message":""}}),
            json!({"v":1,"ok":false}),
            json!({"v":1,"ok":false,"error":{"code":"nope","message":""}}),
            json!({"v":1}),
        ] {
            assert!(
                Reply::decode(&serde_json::to_vec(&bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
