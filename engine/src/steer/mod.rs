//! Loading and attaching the XDP program `steer`, and its maps: config, rules, VIPs, XSKMAP,
//! counters.
//!
//! This module owns the kernel side of steering for one interface: it loads
//! [`sluice_ebpf::STEER_OBJ`] with aya, attaches the program, sets its mode in the `config`
//! map, edits the `rules` and `vips` maps, registers AF_XDP sockets in the `xsks` map and
//! reads the per-CPU `counters`. It never creates
//! sockets or touches frames (that is [`crate::xsk`] and [`crate::worker`]), and it never
//! pins anything to bpffs.
//!
//! # Rules
//!
//! `rules` is an array with one slot per `(protocol, port)` (see [`sluice_ebpf::RULES_MAP`]):
//! the program indexes it directly, so no rule set is too large and the fast path does no
//! hashing. An array cannot be iterated cheaply for its few set slots, so [`Steering`] keeps
//! the rules it wrote in a sorted shadow map, updated only after the kernel accepted the write.
//! Nothing else can write the map (it is created by this process and never pinned), so the
//! shadow and the map always agree, and [`Steering::rules`] reads the shadow.
//!
//! # Fail open by construction
//!
//! The program is attached through a **bpf_link** (`BPF_LINK_CREATE`, Linux ≥ 5.9), owned by
//! this process through one file descriptor and never pinned. The kernel detaches an XDP link
//! when the last reference to it goes away, so when the process exits for any reason —
//! including `SIGKILL` or a panic with `panic = "abort"` — the program is gone and the interface
//! is back to plain kernel networking. [`Steering`]'s `Drop` detaches explicitly as well.
//!
//! aya 0.14's `Xdp::attach` silently falls back to the legacy netlink attach when
//! `BPF_LINK_CREATE` returns `EINVAL` (old kernels); a netlink attachment would outlive the
//! process. [`Steering::load_and_attach`] therefore refuses kernels older than 5.9 up front,
//! and right after attaching checks that the kernel holds a `BPF_LINK_TYPE_XDP` link for our
//! program (when it may list links, i.e. with `CAP_SYS_ADMIN`); if not, it detaches again and
//! fails with [`SteerError::NoBpfLink`]. The link fd is `O_CLOEXEC` (aya opens every fd that
//! way), so an exec'd child does not keep it alive; a `fork` without exec would.
//!
//! Inside the program, a redirect to a queue with no registered socket falls back to the kernel
//! (`bpf_redirect_map(.., XDP_PASS)`), and everything unmatched or unparsable is passed.
//!
//! # Steering modes
//!
//! [`SteerMode::Ports`] (the default) steers by the rules. [`SteerMode::Forward`] makes the
//! program the fast path of a user-space router: it asks the kernel's FIB (`bpf_fib_lookup`)
//! about every plain IPv4/IPv6 frame and redirects only those the kernel itself would forward
//! to a resolved neighbour; everything else — local traffic, unresolved neighbours (the
//! kernel runs ARP/ND), unreachable destinations (the kernel sends its rate-limited ICMP),
//! ARP, ND, options, fragments, extension headers — goes to the kernel untouched, so
//! nothing is lost. See `ebpf/src/steer.bpf.c` for the full list. [`SteerMode::Lb`] puts the
//! program in front of a user-space load balancer: frames to a VIP ([`VipMatch`], in the
//! `vips` hash map of [`sluice_ebpf::LB_MAX_VIPS`] entries) are redirected, everything else is
//! the host's. Unlike `rules`, `vips` is a hash map the kernel iterates cheaply, so
//! [`Steering::vips`] reads the map itself and keeps no shadow.
//!
//! # XDP attach modes
//!
//! [`XdpMode::Auto`] tries driver (native) mode and falls back to skb (generic) mode with a
//! single `warn!` line naming what was asked, what was granted and why. Forcing
//! [`XdpMode::Driver`] or [`XdpMode::Skb`] never falls back.

mod ports;
mod set;
mod types;

#[cfg(test)]
mod tests;

pub use ports::PortList;
pub use set::SteeringSet;
pub use types::{Action, Counters, L4Proto, Rule, SteerMode, VipMatch, XdpMode};

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, XskMap};
use aya::programs::links::{FdLink, LinkType};
use aya::programs::{ProgramError, Xdp, loaded_links};
use aya::util::KernelVersion;
use aya::{EbpfError, EbpfLoader};
use sluice_ebpf as ebpf;
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Everything that can go wrong while steering; each variant names the interface.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// Parsing the object, creating its maps or loading the program (verifier) failed.
    #[error(
        "loading the XDP program `steer` for {iface} failed{}",
        verifier_suffix(verifier_log)
    )]
    Load {
        /// Interface the program was meant for.
        iface: String,
        /// The kernel verifier's log, when the verifier rejected the program.
        verifier_log: Option<String>,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The committed object does not have what this module expects (a stale object).
    #[error("the XDP object for {iface} is not what sluice expects: {what}")]
    Object {
        /// Interface the program was meant for.
        iface: String,
        /// What is missing or of the wrong type.
        what: String,
        /// aya's error, if any.
        #[source]
        source: Option<Box<ProgramError>>,
    },

    /// No interface of that name (in this network namespace).
    #[error("network interface {iface} not found")]
    InterfaceNotFound {
        /// The name asked for.
        iface: String,
    },

    /// Attaching the program failed.
    #[error(
        "attaching XDP to {iface} in {tried} mode failed (asked: {asked}){}",
        attach_hint(source)
    )]
    Attach {
        /// The interface.
        iface: String,
        /// The mode the caller asked for.
        asked: XdpMode,
        /// The mode whose attach failed (the last one tried).
        tried: XdpMode,
        /// aya's error; its errno drives the hint in the message.
        #[source]
        source: Box<ProgramError>,
    },

    /// Another XDP program holds the interface: the kernel refused our bpf_link (`EBUSY`, or
    /// `EEXIST` for a program in the other mode). Nothing of ours is attached, and the other
    /// program is untouched: sluice never replaces or detaches a program it did not attach.
    #[error(
        "{iface} already has an XDP program that sluice did not attach: {holder}; sluice never \
         replaces or detaches it: {advice}"
    )]
    Occupied {
        /// The interface.
        iface: String,
        /// The program there: name, id, attach mode, how attached, whether a libxdp dispatcher.
        holder: String,
        /// What the operator can do.
        advice: String,
    },

    /// The kernel attached the program without a bpf_link (Linux < 5.9): refused, because
    /// such an attachment would survive the process. Already detached again.
    #[error(
        "XDP on {iface} could only be attached through netlink, not a bpf_link (Linux >= 5.9 \
         needed): refused, as it would stay attached after sluice exits"
    )]
    NoBpfLink {
        /// The interface.
        iface: String,
    },

    /// A VIP the XDP program could never match (e.g. ICMP with a port, ICMPv6 on an IPv4
    /// address, a protocol other than TCP/UDP/ICMP/ICMPv6); see [`VipMatch`].
    #[error("VIP {vip} on {iface} is refused: it could never match ({reason})")]
    UnmatchableVip {
        /// The interface.
        iface: String,
        /// The VIP.
        vip: VipMatch,
        /// Why it could never match.
        reason: &'static str,
    },

    /// The `vips` map holds [`sluice_ebpf::LB_MAX_VIPS`] entries already; a new one does not
    /// fit (replacing one that is there always does).
    #[error(
        "cannot add VIP {vip} on {iface}: the XDP program's VIP map is full ({limit} entries, \
         sluice_ebpf::LB_MAX_VIPS; each VIP address also takes one entry for ICMP)"
    )]
    VipsFull {
        /// The interface.
        iface: String,
        /// The VIP that did not fit.
        vip: VipMatch,
        /// `max_entries` of the map.
        limit: u32,
        /// aya's error (`E2BIG`).
        #[source]
        source: Box<MapError>,
    },

    /// Reading or updating a map failed.
    #[error("{op} in map `{map}` on {iface} failed")]
    Map {
        /// The interface.
        iface: String,
        /// Map name.
        map: &'static str,
        /// What was being done, e.g. `setting rule udp/53 -> drop`.
        op: String,
        /// aya's error.
        #[source]
        source: Box<MapError>,
    },
}

fn verifier_suffix(log: &Option<String>) -> String {
    match log {
        Some(log) if !log.trim().is_empty() => format!("; verifier log:\n{}", log.trim_end()),
        _ => String::new(),
    }
}

/// The errno behind an aya program error, if it came from a syscall.
fn errno(err: &ProgramError) -> Option<i32> {
    match err {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        _ => None,
    }
}

impl SteerError {
    /// The interface, when this is the kernel refusing our attach because another program
    /// holds it (`EBUSY`: one in the same mode; `EEXIST`: one in the other mode).
    pub fn occupied_iface(&self) -> Option<&str> {
        match self {
            SteerError::Attach { iface, source, .. }
                if matches!(errno(source), Some(libc::EBUSY) | Some(libc::EEXIST)) =>
            {
                Some(iface)
            }
            _ => None,
        }
    }
}

/// What the kernel says about a loaded BPF program that sluice did not load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramFacts {
    /// Its name (at most 15 bytes, as the kernel keeps it); `None` when the programs cannot be
    /// listed (that needs `CAP_SYS_ADMIN`) or it is gone.
    pub name: Option<String>,
    /// The ids of the bpf_links that hold it (empty: attached through netlink, or unknown).
    pub links: Vec<u32>,
}

/// The name libxdp gives its dispatcher program (`xdp-dispatcher.c`'s `xdp_dispatcher`).
pub const LIBXDP_DISPATCHER: &str = "xdp_dispatcher";

/// Look up program `prog_id`: its name and the links that hold it. Reads only; needs
/// `CAP_SYS_ADMIN` to see anything (the answer is empty without it).
pub fn program_facts(prog_id: u32) -> ProgramFacts {
    let mut facts = ProgramFacts::default();
    for info in aya::programs::loaded_programs() {
        let Ok(info) = info else { break };
        if info.id() == prog_id {
            facts.name = Some(String::from_utf8_lossy(info.name()).into_owned());
            break;
        }
    }
    for info in loaded_links() {
        let Ok(info) = info else { break };
        if info.program_id() == prog_id {
            facts.links.push(info.id());
        }
    }
    facts
}

fn attach_hint(err: &ProgramError) -> &'static str {
    match errno(err) {
        Some(libc::EBUSY) => {
            " — another XDP program is already attached to this interface; remove it first \
             (e.g. `ip link set dev IFACE xdp off`)"
        }
        Some(libc::EOPNOTSUPP) => {
            " — the driver does not support this XDP mode; use --xdp-mode skb (or auto)"
        }
        Some(libc::EEXIST) => " — a program is already attached in another XDP mode",
        Some(libc::EPERM) => " — needs CAP_NET_ADMIN and CAP_BPF (or root)",
        _ => "",
    }
}

/// The XDP program, attached to one interface, and handles to its maps.
///
/// Dropping it detaches the program (and the kernel does the same if the process dies).
pub struct Steering {
    iface: String,
    granted: XdpMode,
    /// The attachment: our reference to the bpf_link (a duplicate of the fd aya opened, or the
    /// fd a predecessor passed over). `None` only during `Drop`.
    link: Option<OwnedFd>,
    /// Duplicates of the map fds (rules, vips, xsks, counters, config), to pass to a successor.
    map_fds: Vec<OwnedFd>,
    /// The kernel's id of the attached program.
    prog_id: u32,
    /// `rules[Rule::index(proto, port)]` = action (`ACTION_NONE` where there is no rule).
    rules: Array<MapData, u32>,
    /// The non-empty slots of `rules`, written after each successful map update: what
    /// [`Steering::rules`] lists. Its order (`L4Proto`, then port) is `Rule`'s.
    shadow: BTreeMap<(L4Proto, u16), Action>,
    /// `struct vip_key` (as its bytes) → `struct vip_value` (one `u32`).
    vips: HashMap<MapData, [u8; ebpf::VipKey::SIZE], u32>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// `config[0].mode`.
    config: Array<MapData, u32>,
    /// What `config` holds (written after each successful update).
    mode: SteerMode,
    /// Owns the program fd; dropped after the link. `None` for an adopted attachment (the
    /// link holds the program).
    _ebpf: Option<aya::Ebpf>,
    /// An adopted link the predecessor still holds (until [`Steering::own_link`], after the
    /// commit): dropping ours then detaches nothing, and must not say it does.
    link_shared: bool,
}

impl fmt::Debug for Steering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steering")
            .field("iface", &self.iface)
            .field("granted", &self.granted)
            .field("attached", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

/// The loaded (not yet attached) program and its maps.
struct Loaded {
    ebpf: aya::Ebpf,
    rules: Array<MapData, u32>,
    /// Keys are `ebpf::VipKey::to_bytes()` (a byte array is `aya::Pod`; a struct of ours
    /// would need an `unsafe impl`), values `struct vip_value`, one `u32`.
    vips: HashMap<MapData, [u8; ebpf::VipKey::SIZE], u32>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// `struct steer_config` is one `u32` (`mode`), so the map is read and written as `u32`
    /// (aya checks the value size against the map's).
    config: Array<MapData, u32>,
    /// Duplicates of the five map fds, in [`MAP_ORDER`].
    map_fds: Vec<OwnedFd>,
}

/// The maps a hand-over passes, in this order (after the link).
const MAP_ORDER: [&str; 5] = [
    ebpf::RULES_MAP,
    ebpf::VIPS_MAP,
    ebpf::XSKS_MAP,
    ebpf::COUNTERS_MAP,
    ebpf::CONFIG_MAP,
];

/// The map behind `m`, for the variants `steer` has.
fn map_data(m: &aya::maps::Map) -> Option<&MapData> {
    use aya::maps::Map;
    match m {
        Map::Array(d) | Map::HashMap(d) | Map::XskMap(d) | Map::PerCpuArray(d) => Some(d),
        _ => None,
    }
}

impl Loaded {
    /// Parses the object, creates the maps and loads (verifies) the program.
    fn new(iface: &str) -> Result<Self, SteerError> {
        let load_err = |source: EbpfError| {
            let verifier_log = match &source {
                EbpfError::ProgramError(ProgramError::LoadError { verifier_log, .. }) => {
                    Some(format!("{verifier_log:?}"))
                }
                _ => None,
            };
            SteerError::Load {
                iface: iface.to_string(),
                verifier_log,
                source: Box::new(source),
            }
        };
        let object_err = |what: String, source: Option<ProgramError>| SteerError::Object {
            iface: iface.to_string(),
            what,
            source: source.map(Box::new),
        };

        let mut bpf = EbpfLoader::new().load(ebpf::STEER_OBJ).map_err(load_err)?;
        let program: &mut Xdp = bpf
            .program_mut(ebpf::PROGRAM_NAME)
            .ok_or_else(|| object_err(format!("no program `{}`", ebpf::PROGRAM_NAME), None))?
            .try_into()
            .map_err(|e| object_err(format!("`{}` is not XDP", ebpf::PROGRAM_NAME), Some(e)))?;
        program
            .load()
            .map_err(|e| load_err(EbpfError::ProgramError(e)))?;

        let mut take = |name: &'static str| {
            bpf.take_map(name)
                .ok_or_else(|| object_err(format!("no map `{name}`"), None))
        };
        let (rules, vips, xsks, counters, config) = (
            take(ebpf::RULES_MAP)?,
            take(ebpf::VIPS_MAP)?,
            take(ebpf::XSKS_MAP)?,
            take(ebpf::COUNTERS_MAP)?,
            take(ebpf::CONFIG_MAP)?,
        );
        let map_fds = [&rules, &vips, &xsks, &counters, &config]
            .into_iter()
            .map(|m| {
                map_data(m)
                    .and_then(|d| d.fd().as_fd().try_clone_to_owned().ok())
                    .ok_or_else(|| object_err("a map fd could not be duplicated".into(), None))
            })
            .collect::<Result<Vec<_>, _>>()?;
        const _: () = assert!(ebpf::SteerConfig::SIZE == size_of::<u32>());
        const _: () = assert!(ebpf::VipValue::SIZE == size_of::<u32>());
        let wrong = |name: &str, e: MapError| {
            object_err(
                format!("map `{name}` has the wrong type or layout"),
                Some(ProgramError::MapError(e)),
            )
        };
        Ok(Self {
            rules: rules.try_into().map_err(|e| wrong(ebpf::RULES_MAP, e))?,
            vips: vips.try_into().map_err(|e| wrong(ebpf::VIPS_MAP, e))?,
            xsks: xsks.try_into().map_err(|e| wrong(ebpf::XSKS_MAP, e))?,
            counters: counters
                .try_into()
                .map_err(|e| wrong(ebpf::COUNTERS_MAP, e))?,
            config: config.try_into().map_err(|e| wrong(ebpf::CONFIG_MAP, e))?,
            map_fds,
            ebpf: bpf,
        })
    }

    fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(ebpf::PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .expect("checked in Loaded::new")
    }

    /// Attaches in exactly `mode` (Driver or Skb) and returns the bpf_link.
    fn attach(
        &mut self,
        iface: &str,
        asked: XdpMode,
        mode: XdpMode,
    ) -> Result<(OwnedFd, u32), SteerError> {
        let aya_mode = match mode {
            XdpMode::Driver => aya::programs::XdpMode::Driver,
            XdpMode::Skb => aya::programs::XdpMode::Skb,
            XdpMode::Auto => unreachable!("Auto is resolved by the caller"),
        };
        let program = self.program();
        let attach_err = |source: ProgramError| match source {
            ProgramError::UnknownInterface { .. } => SteerError::InterfaceNotFound {
                iface: iface.to_string(),
            },
            source => SteerError::Attach {
                iface: iface.to_string(),
                asked,
                tried: mode,
                source: Box::new(source),
            },
        };
        let no_link = || SteerError::NoBpfLink {
            iface: iface.to_string(),
        };
        // See the module doc: aya falls back to a netlink attachment (which would outlive us)
        // only where BPF_LINK_CREATE is missing, i.e. before Linux 5.9. Refuse up front there.
        if KernelVersion::current().is_ok_and(|k| k < KernelVersion::new(5, 9, 0)) {
            return Err(no_link());
        }
        let id = program.attach(iface, aya_mode).map_err(attach_err)?;
        let prog_id = program.info().map_err(attach_err)?.id();
        let link = program.take_link(id).map_err(attach_err)?;
        // Double-check with the kernel, when it lets us list links (CAP_SYS_ADMIN).
        if xdp_link_exists(prog_id) == Some(false) {
            drop(link); // XdpLink's Drop detaches the netlink attachment
            return Err(no_link());
        }
        // Unreachable in practice after the two checks above.
        let link = FdLink::try_from(link).map_err(|_| no_link())?;
        // Our own fd for the link (see `sys::dup_bpf_link_fd`); aya's is closed when `link`
        // drops, which leaves the attachment held by ours alone.
        link.info()
            .ok()
            .and_then(|info| {
                let fd = crate::sys::dup_bpf_link_fd(info.id()).ok()?;
                Some((fd, info.program_id()))
            })
            .ok_or_else(no_link)
    }
}

/// Whether the kernel holds an XDP bpf_link for program `prog_id`; `None` when the links
/// cannot be listed (no CAP_SYS_ADMIN, or a link vanished mid-listing).
fn xdp_link_exists(prog_id: u32) -> Option<bool> {
    let mut found = false;
    for info in loaded_links() {
        let info = info.ok()?;
        found |= info.program_id() == prog_id && matches!(info.link_type(), Ok(LinkType::Xdp));
    }
    Some(found)
}

impl Steering {
    /// Loads the program and attaches it to `iface` in `mode`.
    ///
    /// `Auto` tries driver mode first; if that fails for any reason other than the interface
    /// missing or another program being attached (`EBUSY`), it falls back to skb mode and logs
    /// one warning. The mode actually in force is [`Steering::granted_mode`].
    pub fn load_and_attach(iface: &str, mode: XdpMode) -> Result<Self, SteerError> {
        let mut loaded = Loaded::new(iface)?;
        let ((link, prog_id), granted) = match mode {
            XdpMode::Driver | XdpMode::Skb => (loaded.attach(iface, mode, mode)?, mode),
            XdpMode::Auto => match loaded.attach(iface, mode, XdpMode::Driver) {
                Ok(link) => (link, XdpMode::Driver),
                // EBUSY: the interface is taken; skb mode would not help.
                Err(SteerError::Attach { source, .. }) if errno(&source) != Some(libc::EBUSY) => {
                    let link = loaded.attach(iface, mode, XdpMode::Skb)?;
                    log::warn!(
                        "XDP on {iface}: asked for auto (driver preferred), granted skb (generic) \
                         mode because driver mode failed: {}",
                        crate::error::chain(&*source)
                    );
                    (link, XdpMode::Skb)
                }
                Err(err) => return Err(err),
            },
        };
        log::info!("XDP program `steer` attached to {iface} in {granted} mode (bpf_link)");
        let Loaded {
            ebpf,
            rules,
            vips,
            xsks,
            counters,
            config,
            map_fds,
        } = loaded;
        Ok(Self {
            iface: iface.to_string(),
            granted,
            link: Some(link),
            rules,
            shadow: BTreeMap::new(),
            vips,
            xsks,
            counters,
            config,
            mode: SteerMode::Ports,
            map_fds,
            prog_id,
            _ebpf: Some(ebpf),
            link_shared: false,
        })
    }

    /// Take over an attachment another process made (a hot upgrade): `fds` are the bpf_link
    /// and the maps in [`Steering::handover_fds`] order; `rules` and `mode` what that process
    /// had set (the rules shadow cannot be read back from the array cheaply). The program stays
    /// attached throughout: nothing is detached or re-attached.
    pub fn adopt(
        iface: &str,
        granted: XdpMode,
        fds: Vec<OwnedFd>,
        prog_id: u32,
        rules: &[Rule],
        mode: SteerMode,
    ) -> Result<Self, SteerError> {
        use aya::maps::Map;
        let object_err = |what: String| SteerError::Object {
            iface: iface.to_string(),
            what,
            source: None,
        };
        if fds.len() != 1 + MAP_ORDER.len() {
            return Err(object_err(format!(
                "{} fds passed for the XDP attachment, expected {}",
                fds.len(),
                1 + MAP_ORDER.len()
            )));
        }
        let mut fds = fds.into_iter();
        let link = fds.next().expect("counted");
        let mut map_fds = Vec::with_capacity(MAP_ORDER.len());
        let mut datas = Vec::with_capacity(MAP_ORDER.len());
        for (fd, name) in fds.zip(MAP_ORDER) {
            let dup = fd
                .try_clone()
                .map_err(|e| object_err(format!("duplicating the fd of map `{name}`: {e}")))?;
            map_fds.push(dup);
            let data = MapData::from_fd(fd)
                .map_err(|e| object_err(format!("passed map `{name}` is unusable: {e}")))?;
            datas.push(data);
        }
        let wrong = |name: &str, e: MapError| SteerError::Object {
            iface: iface.to_string(),
            what: format!("passed map `{name}` has the wrong type or layout"),
            source: Some(Box::new(ProgramError::MapError(e))),
        };
        let mut datas = datas.into_iter();
        let mut next = || datas.next().expect("counted");
        let rules_map: Array<MapData, u32> = Map::Array(next())
            .try_into()
            .map_err(|e| wrong(ebpf::RULES_MAP, e))?;
        let vips = Map::HashMap(next())
            .try_into()
            .map_err(|e| wrong(ebpf::VIPS_MAP, e))?;
        let xsks = Map::XskMap(next())
            .try_into()
            .map_err(|e| wrong(ebpf::XSKS_MAP, e))?;
        let counters = Map::PerCpuArray(next())
            .try_into()
            .map_err(|e| wrong(ebpf::COUNTERS_MAP, e))?;
        let config = Map::Array(next())
            .try_into()
            .map_err(|e| wrong(ebpf::CONFIG_MAP, e))?;
        let shadow = rules
            .iter()
            .map(|r| ((r.proto, r.port), r.action))
            .collect();
        Ok(Self {
            iface: iface.to_string(),
            granted,
            link: Some(link),
            rules: rules_map,
            shadow,
            vips,
            xsks,
            counters,
            config,
            mode,
            map_fds,
            prog_id,
            _ebpf: None,
            link_shared: true,
        })
    }

    /// The fds a successor needs to [`Steering::adopt`] this attachment: the bpf_link, then
    /// the maps (rules, vips, xsks, counters, config).
    pub fn handover_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds: Vec<BorrowedFd<'_>> = self.link.iter().map(|l| l.as_fd()).collect();
        fds.extend(self.map_fds.iter().map(|f| f.as_fd()));
        fds
    }

    /// The kernel's id of the attached program.
    pub fn program_id(&self) -> u32 {
        self.prog_id
    }

    /// Forget the attachment without a word (after a hand-over: the successor holds the link,
    /// so closing ours detaches nothing).
    pub fn release(&mut self) {
        self.link = None;
    }

    /// An adopted attachment is ours alone from now on (the successor has committed; the
    /// predecessor lets go of its link): closing it will detach the program.
    pub fn own_link(&mut self) {
        self.link_shared = false;
    }

    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The mode in force: [`XdpMode::Driver`] or [`XdpMode::Skb`], never `Auto`.
    pub fn granted_mode(&self) -> XdpMode {
        self.granted
    }

    fn map_err(
        &self,
        map: &'static str,
        op: String,
    ) -> impl FnOnce(MapError) -> SteerError + use<> {
        let iface = self.iface.clone();
        move |source| SteerError::Map {
            iface,
            map,
            op,
            source: Box::new(source),
        }
    }

    /// Switches the program to `mode`; takes effect for the next frame (the kernel updates a
    /// 4-byte array value atomically, so no frame sees a torn mode). A loaded program starts
    /// in [`SteerMode::Ports`]. Rules and VIPs stay in their maps in the modes that do not use
    /// them, and apply again after switching back. Call it before registering sockets if no
    /// frame of the other mode should reach them.
    pub fn set_mode(&mut self, mode: SteerMode) -> Result<(), SteerError> {
        let err = self.map_err(ebpf::CONFIG_MAP, format!("setting mode {mode}"));
        self.config.set(0, mode.raw(), 0).map_err(err)?;
        self.mode = mode;
        log::info!("XDP program `steer` on {}: {mode} mode", self.iface);
        Ok(())
    }

    /// The mode last set (see [`Steering::set_mode`]).
    pub fn mode(&self) -> SteerMode {
        self.mode
    }

    /// Adds `rule`, or replaces the rule for the same `(proto, port)`. Takes effect for the
    /// next frame. Every `(proto, port)` has a slot, so this never fails for lack of room.
    pub fn set_rule(&mut self, rule: Rule) -> Result<(), SteerError> {
        let index = Rule::index(rule.proto, rule.port);
        let err = self.map_err(ebpf::RULES_MAP, format!("setting rule {rule}"));
        self.rules.set(index, rule.action.raw(), 0).map_err(err)?;
        self.shadow.insert((rule.proto, rule.port), rule.action);
        Ok(())
    }

    /// Removes the rule for `(proto, port)`; `Ok(false)` if there was none.
    pub fn remove_rule(&mut self, proto: L4Proto, port: u16) -> Result<bool, SteerError> {
        if !self.shadow.contains_key(&(proto, port)) {
            return Ok(false);
        }
        let index = Rule::index(proto, port);
        let err = self.map_err(ebpf::RULES_MAP, format!("removing rule {proto}/{port}"));
        self.rules.set(index, ebpf::ACTION_NONE, 0).map_err(err)?;
        self.shadow.remove(&(proto, port));
        Ok(true)
    }

    /// All rules, sorted (protocol, then port), read from the shadow of the kernel map (see
    /// the module doc), so listing costs no system call whatever the map's size. Never fails
    /// today; it keeps the `Result` of the earlier map-iterating version for its callers.
    pub fn rules(&self) -> Result<Vec<Rule>, SteerError> {
        Ok(self
            .shadow
            .iter()
            .map(|(&(proto, port), &action)| Rule {
                proto,
                port,
                action,
            })
            .collect())
    }

    /// Adds `vip` to the VIPs [`SteerMode::Lb`] redirects; takes effect for the next frame.
    /// Adding one that is already there changes nothing.
    ///
    /// Fails with [`SteerError::UnmatchableVip`] for a [`VipMatch`] the program could never
    /// match, and with [`SteerError::VipsFull`] when the map already holds
    /// [`sluice_ebpf::LB_MAX_VIPS`] other VIPs.
    pub fn set_vip(&mut self, vip: VipMatch) -> Result<(), SteerError> {
        let key = vip.key().map_err(|reason| SteerError::UnmatchableVip {
            iface: self.iface.clone(),
            vip,
            reason,
        })?;
        let value = ebpf::VipValue::default().flags;
        match self.vips.insert(key.to_bytes(), value, 0) {
            Ok(()) => Ok(()),
            // htab_map_update_elem: no free element for a new key.
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
                Err(SteerError::VipsFull {
                    iface: self.iface.clone(),
                    vip,
                    limit: ebpf::LB_MAX_VIPS,
                    source: Box::new(MapError::SyscallError(e)),
                })
            }
            Err(e) => Err(self.map_err(ebpf::VIPS_MAP, format!("setting VIP {vip}"))(
                e,
            )),
        }
    }

    /// Removes `vip`; `Ok(false)` if it was not there.
    pub fn remove_vip(&mut self, vip: VipMatch) -> Result<bool, SteerError> {
        // An unmatchable VIP was never accepted, so it is not there.
        let Ok(key) = vip.key() else {
            return Ok(false);
        };
        match self.vips.remove(&key.to_bytes()) {
            Ok(()) => Ok(true),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(self.map_err(ebpf::VIPS_MAP, format!("removing VIP {vip}"))(
                e,
            )),
        }
    }

    /// All VIPs, sorted (address — IPv4 first —, then port, then protocol), read from the
    /// kernel map (two system calls per VIP).
    pub fn vips(&self) -> Result<Vec<VipMatch>, SteerError> {
        let keys = self
            .vips
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.map_err(ebpf::VIPS_MAP, "listing VIPs".into()))?;
        // Only `set_vip` writes the map (it is never pinned), so every key decodes.
        let mut vips: Vec<VipMatch> = keys
            .into_iter()
            .filter_map(|key| VipMatch::from_key(&ebpf::VipKey::from_bytes(key)))
            .collect();
        vips.sort_unstable();
        Ok(vips)
    }

    /// Registers the AF_XDP socket bound to receive queue `queue`: frames on that queue that
    /// match a redirect rule (or a VIP, or the FIB check) go to it. Replaces a previous
    /// registration for the queue.
    ///
    /// The kernel rejects sockets that are not AF_XDP or not yet bound (`EOPNOTSUPP`), and
    /// queues `>= sluice_ebpf::XSKS_MAX_ENTRIES`.
    pub fn register_socket(&mut self, queue: u32, socket: impl AsFd) -> Result<(), SteerError> {
        let err = self.map_err(
            ebpf::XSKS_MAP,
            format!("registering the AF_XDP socket of queue {queue}"),
        );
        self.xsks.set(queue, socket.as_fd(), 0).map_err(err)
    }

    /// Unregisters the socket of `queue`; its redirected frames go to the kernel from now on.
    /// Unregistering an empty queue is not an error.
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), SteerError> {
        match self.xsks.unset(queue) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(self.map_err(
                ebpf::XSKS_MAP,
                format!("unregistering the AF_XDP socket of queue {queue}"),
            )(e)),
        }
    }

    /// The program's outcome counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, SteerError> {
        read_counters(&self.counters)
            .map_err(self.map_err(ebpf::COUNTERS_MAP, "reading counters".into()))
    }
}

fn read_counters(map: &PerCpuArray<MapData, u64>) -> Result<Counters, MapError> {
    let mut sums = [0u64; ebpf::counter::LEN as usize];
    for (index, sum) in (0u32..).zip(sums.iter_mut()) {
        *sum = map.get(&index, 0)?.iter().sum();
    }
    Ok(Counters::from_sums(&sums))
}

impl Drop for Steering {
    fn drop(&mut self) {
        // Closing our only reference to the bpf_link detaches the program now, before the
        // maps and the program fd go.
        if let Some(link) = self.link.take() {
            drop(link);
            if self.link_shared {
                // A successor that stops before its commit: the engine that passed the link
                // keeps it, and the program stays attached.
                log::info!(
                    "XDP program `steer` on {}: left attached for the engine that passed it on",
                    self.iface
                );
            } else {
                log::info!("XDP program `steer` detached from {}", self.iface);
            }
        }
        // (After `release` the link is the successor's: nothing to log.)
    }
}
