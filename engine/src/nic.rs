//! What the host says about an interface at start (issue 12 item 5): driver, channels, ring
//! sizes, the XDP features the kernel reports, zero-copy availability, and which CPUs service
//! each queue's interrupts — and a worker placement that keeps off those CPUs.
//!
//! Owns gathering and describing these facts; reads only (ethtool `GDRVINFO`/`GCHANNELS`/
//! `GRINGPARAM` through [`crate::sys`], generic netlink's `netdev` family, `/proc/interrupts`,
//! `/proc/irq/N/*affinity_list`, `/sys/class/net/IF/device`). Every fact is optional: a driver
//! that does not answer leaves its fact out, and nothing here ever fails a start.

use crate::sys::{self, Channels, DriverInfo, Rings};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io;

/// Everything known about one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NicFacts {
    /// The interface.
    pub iface: String,
    /// `ethtool -i`.
    pub driver: Option<DriverInfo>,
    /// Channels (`ethtool -l`).
    pub channels: Option<ChannelFacts>,
    /// Descriptor rings (`ethtool -g`).
    pub rings: Option<Rings>,
    /// What `NETDEV_CMD_DEV_GET` reports (Linux 6.3+).
    pub xdp: Option<XdpFeatures>,
    /// Per queue, the interrupts found for it and the CPUs that service them.
    pub queue_irqs: Vec<QueueIrq>,
}

/// Channel counts (`ethtool -l`): what an AF_XDP socket can bind to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChannelFacts {
    /// Combined (RX+TX) channels now.
    pub combined: u32,
    /// The most the driver allows.
    pub combined_max: u32,
    /// RX-only channels now (veth reports its queues here; most NICs: 0).
    pub rx: u32,
}

/// The XDP features of a device, from generic netlink's `netdev` family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct XdpFeatures {
    /// `xdp-features`, named (`basic`, `redirect`, `ndo-xmit`, `xsk-zerocopy`, `rx-sg`, …).
    pub features: Vec<&'static str>,
    /// `xdp-zc-max-segs`: fragments per frame AF_XDP zero-copy takes (1: no multi-buffer).
    pub zc_max_segs: Option<u32>,
    /// `xsk-features` (`tx-timestamp`, `tx-checksum`, …).
    pub xsk_features: Vec<&'static str>,
}

impl XdpFeatures {
    /// Does the driver support AF_XDP zero-copy?
    pub fn zerocopy(&self) -> bool {
        self.features.contains(&"xsk-zerocopy")
    }
}

/// One interrupt of a receive queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueIrq {
    /// The queue.
    pub queue: u32,
    /// The IRQ number.
    pub irq: u32,
    /// Its name in `/proc/interrupts` (`eth0-TxRx-3`, `mlx5_comp3@pci:…`, `virtio0-input.3`).
    pub name: String,
    /// The CPUs it is delivered to (`effective_affinity_list`, else `smp_affinity_list`).
    pub cpus: Vec<usize>,
}

impl NicFacts {
    /// Gather what the host says about `iface` (index `ifindex`). Never fails: what cannot be
    /// read is left out.
    pub fn gather(iface: &str, ifindex: u32) -> NicFacts {
        let channels = sys::ethtool_channels_full(iface).ok();
        NicFacts {
            iface: iface.to_string(),
            driver: sys::ethtool_driver(iface).ok(),
            channels: channels.map(|(now, max): (Channels, Channels)| ChannelFacts {
                combined: now.combined,
                combined_max: max.combined,
                rx: now.rx,
            }),
            rings: sys::ethtool_rings(iface).ok(),
            xdp: netdev_dev_get(ifindex).ok(),
            queue_irqs: queue_irqs(iface),
        }
    }

    /// The CPUs servicing `queue`'s interrupts (empty when none are known).
    pub fn irq_cpus(&self, queue: u32) -> BTreeSet<usize> {
        self.queue_irqs
            .iter()
            .filter(|q| q.queue == queue)
            .flat_map(|q| q.cpus.iter().copied())
            .collect()
    }

    /// The facts as the lines of one log block.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let d = self.driver.as_ref();
        out.push(format!(
            "{}: driver {}{}{}",
            self.iface,
            d.map_or("unknown", |d| d.driver.as_str()),
            d.filter(|d| !d.version.is_empty())
                .map(|d| format!(" {}", d.version))
                .unwrap_or_default(),
            d.filter(|d| !d.bus.is_empty())
                .map(|d| format!(" at {}", d.bus))
                .unwrap_or_default(),
        ));
        out.push(format!(
            "  channels: {}; rings: {}",
            match self.channels {
                Some(c) if c.rx > 0 => format!(
                    "{} combined (max {}), {} rx-only",
                    c.combined, c.combined_max, c.rx
                ),
                Some(c) => format!("{} combined (max {})", c.combined, c.combined_max),
                None => "not reported".into(),
            },
            match self.rings {
                Some(r) => format!(
                    "rx {} (max {}), tx {} (max {})",
                    r.rx, r.rx_max, r.tx, r.tx_max
                ),
                None => "not reported".into(),
            }
        ));
        out.push(match &self.xdp {
            Some(x) => format!(
                "  xdp-features: {}; xdp-zc-max-segs {}; zero-copy {}",
                if x.features.is_empty() {
                    "none".into()
                } else {
                    x.features.join(",")
                },
                x.zc_max_segs.map_or("-".into(), |n| n.to_string()),
                if x.zerocopy() {
                    "available"
                } else {
                    "not available (copy mode)"
                }
            ),
            None => "  xdp-features: not reported (netdev netlink family needs Linux 6.3+)".into(),
        });
        if self.queue_irqs.is_empty() {
            out.push(format!(
                "  queue interrupts: none found for {}{}",
                self.iface,
                if self.is_veth() {
                    " (veth has none: its receive path runs on the sending CPU)"
                } else {
                    ""
                }
            ));
        } else {
            let mut queues: Vec<u32> = self.queue_irqs.iter().map(|q| q.queue).collect();
            queues.dedup();
            let per: Vec<String> = queues
                .iter()
                .map(|&q| format!("q{q}: cpu {}", cpu_list(&self.irq_cpus(q))))
                .collect();
            out.push(format!("  queue interrupts: {}", per.join(", ")));
        }
        out
    }

    fn is_veth(&self) -> bool {
        self.driver.as_ref().is_some_and(|d| d.driver == "veth")
    }
}

/// `0,2-3` style.
fn cpu_list(cpus: &BTreeSet<usize>) -> String {
    let v: Vec<String> = cpus.iter().map(usize::to_string).collect();
    if v.is_empty() {
        "?".into()
    } else {
        v.join(",")
    }
}

/// Default worker CPUs: for each queue, in order, the first CPU of `allowed` (starting where
/// the previous pick left off, so workers spread) that services none of that queue's
/// interrupts and has no worker yet; else one that services none of its interrupts; else the
/// round-robin pick of old. Returns the CPUs and, per queue, whether its interrupts could be
/// avoided (`None`: none known).
pub fn place_workers(
    allowed: &[usize],
    queues: &[u32],
    irq_cpus: impl Fn(u32) -> BTreeSet<usize>,
) -> (Vec<usize>, Vec<Option<bool>>) {
    let mut picks = Vec::with_capacity(queues.len());
    let mut avoided = Vec::with_capacity(queues.len());
    if allowed.is_empty() {
        return (picks, avoided);
    }
    for (i, &q) in queues.iter().enumerate() {
        let busy = irq_cpus(q);
        let order = (0..allowed.len()).map(|k| allowed[(i + k) % allowed.len()]);
        let free = |c: &usize| !busy.contains(c);
        let pick = order
            .clone()
            .find(|c| free(c) && !picks.contains(c))
            .or_else(|| order.clone().find(free));
        avoided.push((!busy.is_empty()).then_some(pick.is_some()));
        picks.push(pick.unwrap_or(allowed[i % allowed.len()]));
    }
    (picks, avoided)
}

// ----- generic netlink: the `netdev` family ------------------------------------------------

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NETDEV_A_DEV_XDP_ZC_MAX_SEGS: u16 = 4;
const NETDEV_A_DEV_XSK_FEATURES: u16 = 6;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;

/// `enum netdev_xdp_act`, bit by bit.
const XDP_ACT: [&str; 7] = [
    "basic",
    "redirect",
    "ndo-xmit",
    "xsk-zerocopy",
    "hw-offload",
    "rx-sg",
    "ndo-xmit-sg",
];
/// `enum netdev_xsk_flags`, bit by bit.
const XSK_FLAGS: [&str; 3] = ["tx-timestamp", "tx-checksum", "tx-launch-time-fifo"];

fn names(bits: u64, table: &[&'static str]) -> Vec<&'static str> {
    table
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// One generic netlink request: header, `genlmsghdr`, attributes.
fn genl_request(family: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b.extend_from_slice(&[cmd, 1, 0, 0]);
    for (kind, payload) in attrs {
        b.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(payload);
        b.resize(b.len().next_multiple_of(4), 0);
    }
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&family.to_ne_bytes());
    b[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b[8..12].copy_from_slice(&1u32.to_ne_bytes());
    b
}

/// The attributes of the first reply message in `buf`, or its errno.
fn genl_reply(buf: &[u8]) -> io::Result<Vec<(u16, &[u8])>> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed generic netlink reply",
        )
    };
    let len = u32::from_ne_bytes(buf.get(0..4).ok_or_else(bad)?.try_into().unwrap()) as usize;
    let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
    let msg = buf.get(..len).ok_or_else(bad)?;
    if kind == NLMSG_ERROR {
        let code = i32::from_ne_bytes(msg.get(16..20).ok_or_else(bad)?.try_into().unwrap());
        return Err(io::Error::from_raw_os_error(-code));
    }
    let mut attrs = Vec::new();
    let mut rest = msg.get(20..).ok_or_else(bad)?;
    while rest.len() >= 4 {
        let alen = u16::from_ne_bytes(rest[0..2].try_into().unwrap()) as usize;
        let akind = u16::from_ne_bytes(rest[2..4].try_into().unwrap()) & 0x3fff;
        if alen < 4 || alen > rest.len() {
            return Err(bad());
        }
        attrs.push((akind, &rest[4..alen]));
        rest = &rest[alen.next_multiple_of(4).min(rest.len())..];
    }
    Ok(attrs)
}

fn genl_exchange(sock: &Socket, req: &[u8], buf: &mut Vec<u8>) -> io::Result<usize> {
    sock.send(req, 0)?;
    buf.clear();
    buf.resize(8192, 0);
    let n = sock.recv(&mut &mut buf[..], 0)?;
    Ok(n)
}

/// `NETDEV_CMD_DEV_GET` for `ifindex` (Linux 6.3+; `ENOENT` for an unknown family before).
pub fn netdev_dev_get(ifindex: u32) -> io::Result<XdpFeatures> {
    let mut sock = Socket::new(NETLINK_GENERIC)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut buf = Vec::new();
    let req = genl_request(
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
    );
    let n = genl_exchange(&sock, &req, &mut buf)?;
    let family = genl_reply(&buf[..n])?
        .into_iter()
        .find(|(k, v)| *k == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
        .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no netdev family id"))?;
    let req = genl_request(
        family,
        NETDEV_CMD_DEV_GET,
        &[(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())],
    );
    let n = genl_exchange(&sock, &req, &mut buf)?;
    let mut out = XdpFeatures::default();
    for (k, v) in genl_reply(&buf[..n])? {
        let u64_of = |v: &[u8]| {
            v.get(..8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
        };
        match k {
            NETDEV_A_DEV_XDP_FEATURES => out.features = names(u64_of(v).unwrap_or(0), &XDP_ACT),
            NETDEV_A_DEV_XSK_FEATURES => {
                out.xsk_features = names(u64_of(v).unwrap_or(0), &XSK_FLAGS)
            }
            NETDEV_A_DEV_XDP_ZC_MAX_SEGS => {
                out.zc_max_segs = v
                    .get(..4)
                    .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
            }
            _ => {}
        }
    }
    Ok(out)
}

// ----- queue interrupts --------------------------------------------------------------------

/// The interrupts of `iface`'s receive queues and the CPUs servicing them.
fn queue_irqs(iface: &str) -> Vec<QueueIrq> {
    let Ok(text) = std::fs::read_to_string("/proc/interrupts") else {
        return Vec::new();
    };
    let device_irqs = device_irqs(iface);
    let mut out: Vec<QueueIrq> = parse_interrupts(&text)
        .into_iter()
        .filter(|(irq, name)| device_irqs.contains(irq) || name.contains(iface))
        .filter_map(|(irq, name)| {
            let queue = rx_queue_of(&name, iface)?;
            Some(QueueIrq {
                queue,
                irq,
                cpus: irq_cpus(irq),
                name,
            })
        })
        .collect();
    out.sort_by_key(|q| (q.queue, q.irq));
    out
}

/// The MSI interrupts of the device behind `iface` (and of its parent, where a virtio device
/// sits on a PCI function).
fn device_irqs(iface: &str) -> BTreeSet<u32> {
    let dev = format!("/sys/class/net/{iface}/device");
    [format!("{dev}/msi_irqs"), format!("{dev}/../msi_irqs")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `(irq, action name)` of each numbered line of `/proc/interrupts`.
fn parse_interrupts(text: &str) -> Vec<(u32, String)> {
    let mut lines = text.lines();
    let ncpu = lines.next().map_or(0, |h| h.split_whitespace().count());
    lines
        .filter_map(|l| {
            let (irq, rest) = l.trim_start().split_once(':')?;
            let irq: u32 = irq.parse().ok()?;
            // CPU counts, then the chip, the hw irq / trigger, then the action name(s).
            let fields: Vec<&str> = rest.split_whitespace().skip(ncpu).collect();
            let name = fields.last()?.trim_end_matches(',');
            Some((irq, name.to_string()))
        })
        .collect()
}

/// The receive queue an interrupt named `name` serves, if it serves one: the number at the end
/// of the name (before any `@bus` suffix), for names of queues that receive (`TxRx`, `rx`,
/// `input`, `comp`, or plain `IF-N`); transmit-only, config and misc interrupts are not.
pub fn rx_queue_of(name: &str, iface: &str) -> Option<u32> {
    let base = name.split('@').next().unwrap_or(name);
    let lower = base.to_ascii_lowercase();
    let digits_at = base.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits_at == base.len() {
        return None;
    }
    let queue: u32 = base[digits_at..].parse().ok()?;
    let head = &lower[..digits_at];
    let receives = ["rx", "input", "comp", "fp", "queue"]
        .iter()
        .any(|k| head.contains(k));
    let sends_only = ["tx", "output"].iter().any(|k| head.contains(k)) && !receives;
    let admin = [
        "config", "ctrl", "misc", "async", "aq", "mbx", "other", "link",
    ]
    .iter()
    .any(|k| head.contains(k));
    let plain = head == format!("{}-", iface.to_ascii_lowercase());
    ((receives || plain) && !sends_only && !admin).then_some(queue)
}

/// The CPUs interrupt `irq` is delivered to.
fn irq_cpus(irq: u32) -> Vec<usize> {
    ["effective_affinity_list", "smp_affinity_list"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/proc/irq/{irq}/{f}")).ok())
        .filter_map(|s| crate::worker::parse_cpu_list(s.trim()).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn queue_interrupt_names_of_common_drivers() {
        let q = |name: &str| rx_queue_of(name, "eth0");
        assert_eq!(q("eth0-TxRx-3"), Some(3)); // ixgbe, i40e, ice
        assert_eq!(q("iavf-eth0-TxRx-1"), Some(1));
        assert_eq!(q("eth0-rx-2"), Some(2));
        assert_eq!(q("eth0-tx-2"), None);
        assert_eq!(q("mlx5_comp7@pci:0000:03:00.0"), Some(7));
        assert_eq!(q("mlx5_async0@pci:0000:03:00.0"), None);
        assert_eq!(q("virtio0-input.4"), Some(4));
        assert_eq!(q("virtio0-output.4"), None);
        assert_eq!(q("virtio0-config"), None);
        assert_eq!(q("eth0-5"), Some(5)); // e.g. ena, gve: one interrupt per queue pair
        assert_eq!(q("eth0"), None);
        assert_eq!(q("i40e-0000:03:00.0:misc"), None);
    }

    #[test]
    fn proc_interrupts_is_parsed() {
        let text = "           CPU0       CPU1\n\
  24:          0       1234  PCI-MSIX-0000:00:03.0   1-edge      virtio0-input.0\n\
  25:         12          0  PCI-MSIX-0000:00:03.0   2-edge      virtio0-output.0\n\
 NMI:          0          0   Non-maskable interrupts\n";
        assert_eq!(
            parse_interrupts(text),
            [
                (24, "virtio0-input.0".into()),
                (25, "virtio0-output.0".into())
            ]
        );
    }

    #[test]
    fn workers_keep_off_their_queues_interrupt_cpus() {
        // Queue q's interrupt on CPU q (a common irqbalance-less layout): the default used to
        // put worker q there too.
        let irq = |q: u32| BTreeSet::from([q as usize]);
        let (cores, avoided) = place_workers(&[0, 1, 2, 3], &[0, 1], irq);
        assert_eq!(cores, [1, 2]);
        assert_eq!(avoided, [Some(true), Some(true)]);
        // Four queues on four CPUs: each worker off its own queue's CPU, one per CPU.
        let (cores, _) = place_workers(&[0, 1, 2, 3], &[0, 1, 2, 3], irq);
        assert_eq!(cores, [1, 2, 3, 0]);
        // Nothing known (veth): the old round-robin.
        let (cores, avoided) = place_workers(&[0, 1], &[0, 1, 2], |_| BTreeSet::new());
        assert_eq!(cores, [0, 1, 0]);
        assert_eq!(avoided, [None, None, None]);
        // Only the interrupt's CPU is allowed: it has to do.
        let (cores, avoided) = place_workers(&[2], &[0], |_| BTreeSet::from([2]));
        assert_eq!((cores, avoided), (vec![2], vec![Some(false)]));
    }

    #[test]
    fn generic_netlink_messages_round_trip() {
        let req = genl_request(0x10, 3, &[(2, b"netdev\0")]);
        assert_eq!(req.len(), 16 + 4 + 12);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 32);
        let attrs = genl_reply(&req).unwrap();
        assert_eq!(attrs, [(2, &b"netdev\0"[..])]);
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::EOPNOTSUPP).to_ne_bytes());
        assert_eq!(
            genl_reply(&err).unwrap_err().raw_os_error(),
            Some(libc::EOPNOTSUPP)
        );
        assert!(genl_reply(&err[..10]).is_err());
        assert_eq!(
            names(0b1011, &XDP_ACT),
            ["basic", "redirect", "xsk-zerocopy"]
        );
    }

    #[test]
    fn loopback_facts() {
        // lo: no XDP features worth having, no queue interrupts; nothing here may fail.
        let f = NicFacts::gather("lo", 1);
        assert!(f.queue_irqs.is_empty());
        let lines = f.lines();
        assert_eq!(lines.len(), 4, "{lines:?}");
        if let Some(x) = &f.xdp {
            assert!(!x.zerocopy());
        }
    }
}
