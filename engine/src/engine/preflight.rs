//! Preflight: what the configuration asks of this host, checked before anything is attached.

use super::RunError;
use crate::apps::dns::zone::{ZoneFile, Zones};
use crate::apps::lb::config::LbConfig;
use crate::config::{ConfigError, EngineConfig, QueueSpec};
use crate::control::{link, netlink::Netlink};
use crate::nic::{self, NicFacts};
use crate::steer::Rule;
use crate::sys;
use crate::worker;
use crate::xsk::{XskConfig, multibuf};
use std::path::PathBuf;

/// Bytes the kernel reserves in front of every frame in a UMEM frame (`XDP_PACKET_HEADROOM`).
pub(super) const XDP_PACKET_HEADROOM: u32 = 256;

/// The longest frame a UMEM frame of `xsk` holds (after the kernel's and the app's headroom).
pub(super) fn frame_room(xsk: &XskConfig) -> u32 {
    xsk.frame_size
        .saturating_sub(XDP_PACKET_HEADROOM + xsk.headroom)
}

/// The longest frame sluice takes: an MTU of 9216 (the usual jumbo ceiling) plus
/// [`L2_OVERHEAD`].
const MAX_JUMBO_FRAME: u32 = 9216 + L2_OVERHEAD;

/// Ethernet header plus two VLAN tags: what a frame adds to the MTU.
pub(super) const L2_OVERHEAD: u32 = 14 + 8;

/// Everything the preflight checks decided.
pub(super) struct Plan {
    pub(super) ifindexes: Vec<u32>,
    /// Each port's MTU at start, in port order.
    pub(super) mtus: Vec<u32>,
    pub(super) admin_gid: Option<u32>,
    pub(super) queues: Vec<u32>,
    pub(super) cores: Vec<Option<usize>>,
    pub(super) xsk: XskConfig,
    pub(super) rules: Vec<Rule>,
    /// The load balancer's file and what it says.
    pub(super) lb: Option<(PathBuf, LbConfig)>,
    /// The dns app's zones, loaded.
    pub(super) dns: Option<Zones>,
    /// What the host says about each port (driver, channels, rings, XDP features, queue
    /// interrupts), in port order.
    pub(super) nic: Vec<NicFacts>,
}

/// Check what the configuration asks of this host — privileges, the interface, its queues and
/// MTU, the CPUs, locked memory, users and groups — before anything is touched.
pub(super) fn plan(cfg: &EngineConfig) -> Result<Plan, RunError> {
    cfg.validate()?;
    // The balancer's file before anything else: its errors name the file, line and key.
    let lb = match &cfg.lb {
        Some(path) => Some((path.clone(), LbConfig::from_file(path)?)),
        None => None,
    };
    // The zones too: an error names the file and line, and the engine does not start.
    let dns = if cfg.dns.is_empty() {
        None
    } else {
        Some(Zones::load(&zone_files(&cfg.dns))?)
    };
    let mut xsk = cfg.xsk.clone();
    let rules = cfg.rules.clone();
    if let Some(name) = &cfg.user
        && nix::unistd::User::from_name(name).ok().flatten().is_none()
    {
        return Err(ConfigError::new("user", format!("no user named {name:?}")).into());
    }

    // Privileges, before touching anything.
    let eff = sys::effective_caps().unwrap_or(0);
    let missing = sys::missing_run_caps(eff);
    if !missing.is_empty() {
        return Err(RunError::Privileges {
            missing: missing
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }

    // The interfaces: exist, up, MTU fits, how many queues. Every worker serves the same
    // queue index on every port, so the engine uses as many queues as the port with fewest.
    let mut nl = Netlink::open().map_err(|source| RunError::Netlink {
        iface: cfg.iface().to_string(),
        source,
    })?;
    let mut ifindexes = Vec::with_capacity(cfg.ifaces.len());
    let mut mtus = Vec::with_capacity(cfg.ifaces.len());
    let mut n = u32::MAX;
    for iface in &cfg.ifaces {
        let (ifindex, has, mtu) = check_port(&mut nl, iface, &xsk)?;
        if mtu + L2_OVERHEAD > frame_room(&xsk) && !xsk.multi_buffer {
            xsk.multi_buffer = true;
            log::info!(
                "{iface}: MTU {mtu} frames (up to {} bytes) span several {}-byte UMEM frames: \
                 AF_XDP multi-buffer (XDP_USE_SG) on; such frames are assembled for the app \
                 (two copies each), shorter ones take the usual path",
                mtu + L2_OVERHEAD,
                xsk.frame_size
            );
        }
        ifindexes.push(ifindex);
        mtus.push(mtu);
        n = n.min(match cfg.queues {
            QueueSpec::All => has,
            QueueSpec::Count(n) if n > has => {
                return Err(RunError::TooManyQueues {
                    iface: iface.clone(),
                    asked: n,
                    has,
                });
            }
            QueueSpec::Count(n) => n,
        });
    }
    let queues: Vec<u32> = (0..n).collect();

    // The NIC facts: one log block per port, kept for `ctl status`.
    let nic: Vec<NicFacts> = cfg
        .ifaces
        .iter()
        .zip(&ifindexes)
        .map(|(iface, &index)| NicFacts::gather(iface, index))
        .collect();
    for f in &nic {
        log::info!("{}", f.lines().join("\n"));
    }

    // Cores.
    let allowed = worker::allowed_cpus();
    let cores: Vec<Option<usize>> = match &cfg.cores {
        Some(list) => {
            if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(ConfigError::new(
                    "cores",
                    format!("CPU {bad} is not in this process's affinity mask {allowed:?}"),
                )
                .into());
            }
            if list.len() < queues.len() {
                return Err(ConfigError::new(
                    "cores",
                    format!("{} CPU(s) listed for {} queue(s)", list.len(), queues.len()),
                )
                .into());
            }
            list.iter().copied().map(Some).take(queues.len()).collect()
        }
        None if allowed.is_empty() => vec![None; queues.len()],
        None => default_cores(&allowed, &queues, &nic),
    };

    // Locked memory for the UMEMs.
    let need = u64::from(xsk.frame_count) * u64::from(xsk.frame_size) * u64::from(n);
    let limit = sys::memlock_limit();
    if !sys::has_cap(eff, sys::Cap::IpcLock) && limit < need {
        return Err(RunError::Memlock { need, limit });
    }
    let admin_gid = match &cfg.admin_group {
        None => None,
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| ConfigError::new("admin-group", format!("no group named {g:?}")))?
                .gid
                .as_raw(),
        ),
    };
    Ok(Plan {
        ifindexes,
        mtus,
        admin_gid,
        queues,
        cores,
        xsk,
        rules,
        lb,
        dns,
        nic,
    })
}

/// Workers spread over `allowed`, each kept off the CPUs that service its queue's interrupts
/// on any port where those are known, and one log line saying what could be done.
fn default_cores(allowed: &[usize], queues: &[u32], nic: &[NicFacts]) -> Vec<Option<usize>> {
    let irq_cpus = |q: u32| nic.iter().flat_map(|f| f.irq_cpus(q)).collect();
    let (cores, avoided) = nic::place_workers(allowed, queues, irq_cpus);
    let ifaces: Vec<&str> = nic.iter().map(|f| f.iface.as_str()).collect();
    if avoided.iter().all(Option::is_none) {
        log::info!(
            "{}: no queue interrupts known, so the default --cores cannot keep workers off the \
             CPUs doing the kernel's receive work (veth does it on the sending CPU): keep \
             senders and workers on different CPUs with --cores",
            ifaces.join("+")
        );
    } else if let Some(q) = avoided.iter().position(|a| *a == Some(false)) {
        log::warn!(
            "{}: every allowed CPU services queue {q}'s interrupts; its worker shares a CPU \
             with them (give --cores, or move the interrupts)",
            ifaces.join("+")
        );
    } else {
        log::info!(
            "{}: workers placed off their queues' interrupt CPUs: cores {cores:?}",
            ifaces.join("+")
        );
    }
    cores.into_iter().map(Some).collect()
}

/// One port: exists, is up, its MTU fits a UMEM frame. Returns its ifindex, RX queue count and
/// MTU.
fn check_port(nl: &mut Netlink, iface: &str, xsk: &XskConfig) -> Result<(u32, u32, u32), RunError> {
    let info = link::get_link(nl, iface)
        .map_err(|source| RunError::Netlink {
            iface: iface.to_string(),
            source,
        })?
        .ok_or_else(|| RunError::NoSuchInterface(iface.to_string()))?;
    if !info.admin_up {
        return Err(RunError::InterfaceDown(iface.to_string()));
    }
    if !info.lower_up {
        log::warn!("{iface} has no carrier (peer down or cable out); waiting for traffic anyway");
    }
    // A frame longer than a UMEM frame (after the kernel's 256-byte XDP headroom) arrives as
    // several descriptors (AF_XDP multi-buffer, which the caller turns on); the assembled frame
    // must fit an assembly slot.
    let longest = info.mtu + L2_OVERHEAD;
    let jumbo_room =
        (multibuf::SLOT_SIZE as u32).saturating_sub(XDP_PACKET_HEADROOM + xsk.headroom);
    if longest > jumbo_room.min(MAX_JUMBO_FRAME) {
        return Err(ConfigError::new(
            "frame-size",
            format!(
                "{iface} has MTU {} (frames up to {longest} bytes); sluice takes frames up to {} bytes (MTU {}), \
                 longer ones in several {}-byte UMEM frames (AF_XDP multi-buffer)",
                info.mtu,
                jumbo_room.min(MAX_JUMBO_FRAME),
                jumbo_room.min(MAX_JUMBO_FRAME) - L2_OVERHEAD,
                xsk.frame_size,
            ),
        )
        .into());
    }
    let has = match sys::ethtool_channels(iface) {
        Ok(ch) if ch.rx_queues() > 0 => ch.rx_queues(),
        _ => info.num_rx_queues.max(1),
    };
    Ok((info.index, has, info.mtu))
}

/// The zone files, each named by its path (the origin comes from the file).
fn zone_files(paths: &[PathBuf]) -> Vec<ZoneFile> {
    paths.iter().cloned().map(ZoneFile::from).collect()
}
