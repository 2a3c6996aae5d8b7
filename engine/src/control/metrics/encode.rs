//! The OpenMetrics text encoding of a [`MetricsSnapshot`], with `prometheus-client`.
//!
//! A fresh registry and collector per scrape, over the snapshot the source just took, so there is
//! no second copy of the counters to keep in sync. Each family is one [`family`] call: its
//! descriptor, then its samples. Pure: no I/O, no locks.

use super::{BackendMetrics, LbMetrics, MetricsSnapshot, QueueMetrics};
use crate::apps::DropReason;
use crate::apps::dns::app::OUTCOMES;
use crate::apps::lb::ConnTableFigures;
use crate::worker::Local;
use crate::worker::stats::PortCounters;
use crate::xsk::Census;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::fmt;

/// The `Content-Type` of a scrape: what [`encode`] produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encode a snapshot as a complete OpenMetrics text exposition (ends with `# EOF`).
pub fn encode(snap: &MetricsSnapshot) -> String {
    let mut registry = Registry::with_prefix("sluice");
    registry.register_collector(Box::new(SnapshotCollector(snap.clone())));
    let mut out = String::with_capacity(4096 + 4096 * snap.queues.len());
    // Writing into a String cannot fail, and every name and label here is well-formed.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
        out.push_str("# EOF\n");
    }
    out
}

/// A per-queue counter: name (prefixed `sluice_`, suffixed `_total` on output), help, value.
type QueueCounter = (&'static str, &'static str, fn(&QueueMetrics) -> u64);

const QUEUE_COUNTERS: &[QueueCounter] = &[
    (
        "rx_packets",
        "Frames the worker took from the AF_XDP RX ring",
        |q| q.counters.rx_packets,
    ),
    (
        "rx_bytes",
        "Bytes in received frames (Ethernet, without FCS)",
        |q| q.counters.rx_bytes,
    ),
    (
        "tx_packets",
        "Frames the worker queued on the AF_XDP TX ring",
        |q| q.counters.tx_packets,
    ),
    ("tx_bytes", "Bytes in frames queued for transmission", |q| {
        q.counters.tx_bytes
    }),
    (
        "batches",
        "Worker loop rounds that received at least one frame",
        |q| q.counters.batches,
    ),
    (
        "empty_polls",
        "Worker loop rounds that found the RX ring empty",
        |q| q.counters.empty_polls,
    ),
    (
        "sleeps",
        "Times the worker slept in poll() waiting for frames",
        |q| q.counters.sleeps,
    ),
    (
        "tx_kicks",
        "TX wakeups (sendto) made because the kernel asked for one",
        |q| q.counters.kicks,
    ),
    (
        "tx_kick_errors",
        "TX wakeups that returned an error (counted and retried, not fatal)",
        |q| q.counters.kick_errors,
    ),
    (
        "fill_wakeups",
        "Fill-ring wakeups (recvfrom) made because the driver asked for one",
        |q| q.counters.fill_wakeups,
    ),
    (
        "fill_shortfall",
        "Frames that found no room in the fill ring and waited in the worker",
        |q| q.counters.fill_shortfall,
    ),
    (
        "l4_checksum_errors",
        "Frames dropped because their UDP/TCP checksum did not verify (bad or partial)",
        |q| q.counters.l4_checksum_errors,
    ),
    (
        "kernel_rx_ring_full",
        "Frames the kernel dropped because the RX ring was full (the worker fell behind)",
        |q| q.kernel.rx_ring_full,
    ),
    (
        "kernel_rx_fill_ring_empty",
        "Times the kernel found the fill ring empty",
        |q| q.kernel.rx_fill_ring_empty,
    ),
    (
        "kernel_rx_dropped",
        "Frames the kernel dropped for other reasons (e.g. too long for a frame)",
        |q| q.kernel.rx_dropped,
    ),
    (
        "kernel_rx_invalid_descs",
        "Invalid descriptors the kernel found on the fill ring",
        |q| q.kernel.rx_invalid_descs,
    ),
    (
        "kernel_tx_invalid_descs",
        "Invalid descriptors the kernel found on the TX ring",
        |q| q.kernel.tx_invalid_descs,
    ),
    (
        "kernel_tx_ring_empty",
        "Times the kernel found the TX ring empty when woken",
        |q| q.kernel.tx_ring_empty,
    ),
];

/// A `place` label value of `sluice_umem_frames` and how to read it from a census.
type UmemPlace = (&'static str, fn(&Census) -> i64);

/// Every frame is in exactly one place.
const UMEM_PLACES: [UmemPlace; 6] = [
    ("fill", |c| saturating_i64(c.fill)),
    ("rx", |c| saturating_i64(c.rx)),
    ("worker", |c| saturating_i64(c.worker)),
    ("tx", |c| saturating_i64(c.tx)),
    ("completion", |c| saturating_i64(c.completion)),
    ("kernel", |c| c.kernel),
];

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A worker's drops as `reason` label values: the app's verdicts, then the worker's own.
fn drop_reasons(c: &Local) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    DropReason::ALL
        .iter()
        .map(|r| (r.name(), c.drops[r.index()]))
        .chain([("tx_ring_full", c.tx_ring_full), ("bad_desc", c.bad_desc)])
}

/// Per-port families: name, help, getter.
type PortCounter = (&'static str, &'static str, fn(&PortCounters) -> u64);

const PORT_COUNTERS: &[PortCounter] = &[
    ("port_rx_packets", "Frames received on the port", |p| {
        p.rx_packets
    }),
    ("port_rx_bytes", "Bytes received on the port", |p| {
        p.rx_bytes
    }),
    (
        "port_tx_packets",
        "Frames queued for transmission on the port",
        |p| p.tx_packets,
    ),
    (
        "port_tx_bytes",
        "Bytes queued for transmission on the port",
        |p| p.tx_bytes,
    ),
    (
        "port_l4_checksum_bad",
        "Frames received on the port dropped because their UDP/TCP checksum did not verify",
        |p| p.l4_checksum_bad,
    ),
    (
        "port_l4_checksum_partial",
        "Frames received on the port dropped because their UDP/TCP checksum was left partial by the sender's TX offload",
        |p| p.l4_checksum_partial,
    ),
];

/// The labels of one sample, `iface` first.
type Labels<'a> = Vec<(&'static str, &'a str)>;

/// `iface` and `queue`, then the family's own label, if it has one.
fn queue_labels<'a>(
    iface: &'a str,
    queue: &'a str,
    own: Option<(&'static str, &'a str)>,
) -> Labels<'a> {
    let mut labels = vec![("iface", iface), ("queue", queue)];
    labels.extend(own);
    labels
}

/// Writes one metric family: its descriptor (also when it has no samples), then its samples.
fn family<'a, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes one owned snapshot; a fresh one is registered for every scrape.
#[derive(Debug)]
struct SnapshotCollector(MetricsSnapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let snap = &self.0;
        let iface = snap.iface.as_str();
        let queues: Vec<(String, &QueueMetrics)> = snap
            .queues
            .iter()
            .map(|q| (q.queue.to_string(), q))
            .collect();
        let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);

        let up = [(vec![("iface", iface)], ConstGauge::new(1i64))];
        family(
            &mut enc,
            "up",
            "1 while the engine serves metrics",
            gauge,
            up,
        )?;

        for &(name, help, get) in QUEUE_COUNTERS {
            let samples = queues
                .iter()
                .map(|(queue, q)| (queue_labels(iface, queue, None), ConstCounter::new(get(q))));
            family(&mut enc, name, help, counter, samples)?;
        }

        let drops = queues.iter().flat_map(|(queue, q)| {
            drop_reasons(&q.counters).map(|(reason, v)| {
                let labels = queue_labels(iface, queue, Some(("reason", reason)));
                (labels, ConstCounter::new(v))
            })
        });
        let help = "Frames the worker dropped, by reason (app verdicts, tx_ring_full, bad_desc)";
        family(&mut enc, "drops", help, counter, drops)?;

        let frames = queues.iter().flat_map(|(queue, q)| {
            UMEM_PLACES.iter().map(|&(place, get)| {
                let labels = queue_labels(iface, queue, Some(("place", place)));
                (labels, ConstGauge::new(get(&q.census)))
            })
        });
        let help =
            "UMEM frames of the queue by where they are now (they sum to umem_capacity_frames)";
        family(&mut enc, "umem_frames", help, gauge, frames)?;

        let capacity = queues.iter().map(|(queue, q)| {
            let total = saturating_i64(q.census.total);
            (queue_labels(iface, queue, None), ConstGauge::new(total))
        });
        let help = "UMEM frames of the queue in all";
        family(&mut enc, "umem_capacity_frames", help, gauge, capacity)?;

        // Per port, only when there is more than one (one port is the queue figures again).
        if snap.ports.len() > 1 {
            for &(name, help, get) in PORT_COUNTERS {
                let samples = queues.iter().flat_map(|(queue, q)| {
                    snap.ports.iter().enumerate().map(move |(i, port)| {
                        let labels = queue_labels(iface, queue, Some(("port", port.as_str())));
                        (labels, ConstCounter::new(get(&q.counters.ports[i])))
                    })
                });
                family(&mut enc, name, help, counter, samples)?;
            }
        }

        if let Some(x) = &snap.xdp {
            let outcomes = x.outcomes().into_iter().map(|(outcome, v)| {
                let labels = vec![("iface", iface), ("outcome", outcome)];
                (labels, ConstCounter::new(v))
            });
            let help = "Frames the XDP program saw, by outcome (each frame counted once)";
            family(&mut enc, "xdp_frames", help, counter, outcomes)?;
        }
        if let Some(lb) = &snap.lb {
            encode_lb(&mut enc, iface, lb)?;
        }
        if let Some(dns) = &snap.dns {
            let queues: Vec<(String, &Vec<u64>)> = dns
                .outcomes
                .iter()
                .map(|(q, c)| (q.to_string(), c))
                .collect();
            let samples = queues.iter().flat_map(|(q, counts)| {
                OUTCOMES.iter().zip(counts.iter()).map(move |(o, &v)| {
                    (
                        queue_labels(iface, q, Some(("outcome", o))),
                        ConstCounter::new(v),
                    )
                })
            });
            let help = "DNS queries the worker handled, by outcome (UDP, the fast path)";
            family(&mut enc, "dns_queries", help, counter, samples)?;
            let tcp = [(vec![("iface", iface)], ConstCounter::new(dns.tcp_queries))];
            let help = "DNS queries answered over TCP (through the kernel)";
            family(&mut enc, "dns_tcp_queries", help, counter, tcp)?;
        }
        Ok(())
    }
}

/// The load balancer's families.
fn encode_lb(enc: &mut DescriptorEncoder, iface: &str, lb: &LbMetrics) -> fmt::Result {
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    let queues: Vec<(String, &ConnTableFigures)> = lb
        .conntrack
        .iter()
        .map(|(q, f)| (q.to_string(), f))
        .collect();
    type Figure = (
        &'static str,
        &'static str,
        bool,
        fn(&ConnTableFigures) -> u64,
    );
    const FIGURES: &[Figure] = &[
        (
            "lb_conntrack_flows",
            "Flows the worker's connection table remembers now",
            false,
            |f| f.flows,
        ),
        (
            "lb_conntrack_capacity",
            "Most flows the worker's connection table remembers at once",
            false,
            |f| f.capacity,
        ),
        (
            "lb_conntrack_hits",
            "Connection-table lookups that found the flow",
            true,
            |f| f.hits,
        ),
        (
            "lb_conntrack_misses",
            "Connection-table lookups that did not (new flows, or timed out)",
            true,
            |f| f.misses,
        ),
        (
            "lb_conntrack_evictions",
            "Live flows forgotten to make room for new ones (the table is too small)",
            true,
            |f| f.evictions,
        ),
        (
            "lb_conntrack_expirations",
            "Flows forgotten after their idle timeout",
            true,
            |f| f.expirations,
        ),
    ];
    for &(name, help, is_counter, get) in FIGURES {
        if is_counter {
            let samples = queues
                .iter()
                .map(|(q, f)| (queue_labels(iface, q, None), ConstCounter::new(get(f))));
            family(enc, name, help, counter, samples)?;
        } else {
            let samples = queues.iter().map(|(q, f)| {
                (
                    queue_labels(iface, q, None),
                    ConstGauge::new(saturating_i64(get(f))),
                )
            });
            family(enc, name, help, gauge, samples)?;
        }
    }
    fn labels<'a>(iface: &'a str, b: &'a BackendMetrics) -> Labels<'a> {
        vec![
            ("iface", iface),
            ("vip", b.vip.as_str()),
            ("backend", b.backend.as_str()),
        ]
    }
    let in_table = lb
        .backends
        .iter()
        .map(|b| (labels(iface, b), ConstGauge::new(i64::from(b.in_table))));
    let help = "1 if the backend gets new flows (active, healthy, weight above 0)";
    family(enc, "lb_backend_in_table", help, gauge, in_table)?;
    let healthy = lb.backends.iter().filter_map(|b| {
        b.healthy
            .map(|h| (labels(iface, b), ConstGauge::new(i64::from(h))))
    });
    let help = "1 if the backend passes its health checks, 0 if not (unchecked backends left out)";
    family(enc, "lb_backend_healthy", help, gauge, healthy)
}

#[cfg(test)]
pub(super) mod test {
    use super::*;
    use crate::xsk::KernelStats;
    use std::collections::{BTreeMap, HashMap, HashSet};

    /// Two queues, every counter distinct where it matters, one at `u64::MAX`, one census with a
    /// negative kernel share.
    pub(in crate::control::metrics) fn snapshot() -> MetricsSnapshot {
        let mut q0 = QueueMetrics {
            queue: 0,
            counters: Local {
                rx_packets: 10,
                rx_bytes: 640,
                tx_packets: 9,
                tx_bytes: 576,
                tx_ring_full: 1,
                bad_desc: 0,
                batches: 3,
                empty_polls: 1234,
                sleeps: 5,
                kicks: 7,
                kick_errors: 2,
                fill_wakeups: 4,
                fill_shortfall: 6,
                ..Default::default()
            },
            census: Census {
                total: 4096,
                fill: 4000,
                rx: 10,
                worker: 6,
                tx: 40,
                completion: 20,
                kernel: 20,
            },
            kernel: KernelStats {
                rx_ring_full: 11,
                rx_fill_ring_empty: 12,
                ..Default::default()
            },
        };
        q0.counters.drops[DropReason::Truncated.index()] = 3;
        let mut q1 = q0;
        q1.queue = 1;
        q1.counters.rx_packets = u64::MAX;
        q1.census.kernel = -1;
        MetricsSnapshot {
            iface: "veth0".into(),
            ports: vec!["veth0".into()],
            queues: vec![q0, q1],
            xdp: Some(crate::steer::Counters {
                redirected: 100,
                passed: 50,
                passed_by_rule: 1,
                dropped_by_rule: 2,
                not_ip: 3,
                malformed: 4,
                redirect_fallback: 5,
                lb_redirected: 6,
                ..crate::steer::Counters::default()
            }),
            lb: None,
            dns: None,
        }
    }

    /// One parsed sample line.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: String,
    }

    /// Families (name -> type) and samples of an OpenMetrics text exposition; asserts the
    /// syntax rules that are cheap to check on the way.
    fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
        fn is_name(s: &str) -> bool {
            let mut b = s.bytes();
            b.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        }
        fn is_label_name(s: &str) -> bool {
            let mut b = s.bytes();
            b.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        }
        assert!(text.ends_with("# EOF\n"), "no EOF marker");
        assert_eq!(text.matches("# EOF").count(), 1);
        let mut types = HashMap::new();
        let mut helps = HashSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if line == "# EOF" {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP without text");
                assert!(is_name(name), "{line}");
                assert!(!help.trim().is_empty(), "{line}");
                assert!(helps.insert(name.to_string()), "HELP twice: {line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE without type");
                assert!(is_name(name), "{line}");
                assert!(["counter", "gauge"].contains(&ty), "{line}");
                assert!(helps.contains(name), "TYPE before HELP: {line}");
                assert!(types.insert(name.to_string(), ty.to_string()).is_none());
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample without value");
            assert!(
                value.parse::<i64>().is_ok() || value.parse::<u64>().is_ok(),
                "{line}"
            );
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("unclosed labels");
                    let mut labels = BTreeMap::new();
                    // Label values here hold no commas or escaped quotes (the escaping test
                    // checks those separately).
                    for pair in body.split(',') {
                        let (k, v) = pair.split_once('=').expect("label without =");
                        assert!(is_label_name(k), "{line}");
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .expect("unquoted label value");
                        assert!(labels.insert(k.to_string(), v.to_string()).is_none());
                    }
                    (name, labels)
                }
            };
            assert!(is_name(name), "{line}");
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value: value.to_string(),
            });
        }
        // Every sample belongs to a declared family, and no series appears twice.
        let mut seen = HashSet::new();
        for s in &samples {
            let family = match s.name.strip_suffix("_total") {
                Some(f) if types.get(f).is_some_and(|t| t == "counter") => f,
                _ => s.name.as_str(),
            };
            let ty = types
                .get(family)
                .unwrap_or_else(|| panic!("undeclared {}", s.name));
            if ty == "counter" {
                assert!(s.name.ends_with("_total"), "counter sample {}", s.name);
            }
            assert!(family.starts_with("sluice_"), "{}", s.name);
            assert!(seen.insert((s.name.clone(), s.labels.clone())), "dup {s:?}");
        }
        (types, samples)
    }

    fn value<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a str {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let hits: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert_eq!(hits.len(), 1, "{name}{labels:?}: {hits:?}");
        &hits[0].value
    }

    #[test]
    fn exposition_has_every_family_and_value() {
        let text = encode(&snapshot());
        let (types, samples) = parse(&text);
        for (name, ty) in [
            ("sluice_up", "gauge"),
            ("sluice_rx_packets", "counter"),
            ("sluice_tx_packets", "counter"),
            ("sluice_rx_bytes", "counter"),
            ("sluice_drops", "counter"),
            ("sluice_empty_polls", "counter"),
            ("sluice_tx_kicks", "counter"),
            ("sluice_fill_shortfall", "counter"),
            ("sluice_kernel_rx_ring_full", "counter"),
            ("sluice_xdp_frames", "counter"),
            ("sluice_umem_frames", "gauge"),
            ("sluice_umem_capacity_frames", "gauge"),
        ] {
            assert_eq!(types.get(name).map(String::as_str), Some(ty), "{name}");
        }
        assert!(text.contains("\nsluice_up{iface=\"veth0\"} 1\n"), "{text}");
        assert!(text.contains("\nsluice_rx_packets_total{iface=\"veth0\",queue=\"0\"} 10\n"));
        let q0 = [("iface", "veth0"), ("queue", "0")];
        let q1 = [("iface", "veth0"), ("queue", "1")];
        assert_eq!(
            value(&samples, "sluice_rx_packets_total", &q1),
            u64::MAX.to_string()
        );
        assert_eq!(value(&samples, "sluice_rx_bytes_total", &q0), "640");
        assert_eq!(value(&samples, "sluice_tx_packets_total", &q0), "9");
        assert_eq!(value(&samples, "sluice_empty_polls_total", &q0), "1234");
        assert_eq!(value(&samples, "sluice_tx_kicks_total", &q0), "7");
        assert_eq!(value(&samples, "sluice_fill_shortfall_total", &q0), "6");
        assert_eq!(
            value(&samples, "sluice_kernel_rx_ring_full_total", &q0),
            "11"
        );
        let drop = |q: &str, r: &str| {
            value(
                &samples,
                "sluice_drops_total",
                &[("iface", "veth0"), ("queue", q), ("reason", r)],
            )
            .to_string()
        };
        assert_eq!(drop("0", "truncated"), "3");
        assert_eq!(drop("0", "policy"), "0");
        assert_eq!(drop("1", "tx_ring_full"), "1");
        assert_eq!(drop("1", "bad_desc"), "0");
        let drops = samples.iter().filter(|s| s.name == "sluice_drops_total");
        assert_eq!(drops.count(), 2 * (DropReason::COUNT + 2));
        for r in DropReason::ALL {
            drop("1", r.name());
        }
        let xdp = |o: &str| {
            value(
                &samples,
                "sluice_xdp_frames_total",
                &[("iface", "veth0"), ("outcome", o)],
            )
            .to_string()
        };
        assert_eq!(xdp("redirected"), "100");
        assert_eq!(xdp("passed"), "50");
        assert_eq!(xdp("passed_by_rule"), "1");
        assert_eq!(xdp("dropped_by_rule"), "2");
        assert_eq!(xdp("not_ip"), "3");
        assert_eq!(xdp("malformed"), "4");
        assert_eq!(xdp("redirect_fallback"), "5");
        assert_eq!(xdp("lb_redirected"), "6");
        assert_eq!(xdp("lb_kernel_only"), "0");
        let umem = |q: &str, p: &str| {
            value(
                &samples,
                "sluice_umem_frames",
                &[("iface", "veth0"), ("queue", q), ("place", p)],
            )
            .to_string()
        };
        assert_eq!(umem("0", "fill"), "4000");
        assert_eq!(umem("0", "kernel"), "20");
        assert_eq!(umem("1", "kernel"), "-1");
        let sum: i64 = samples
            .iter()
            .filter(|s| s.name == "sluice_umem_frames" && s.labels["queue"] == "0")
            .map(|s| s.value.parse::<i64>().unwrap())
            .sum();
        assert_eq!(sum, 4096);
        assert_eq!(value(&samples, "sluice_umem_capacity_frames", &q0), "4096");
    }

    #[test]
    fn ports_get_their_own_families_when_there_are_several() {
        let (types, _) = parse(&encode(&snapshot()));
        assert!(
            !types.contains_key("sluice_port_rx_packets"),
            "one port: no port families"
        );
        let mut s = snapshot();
        s.ports = vec!["veth0".into(), "veth1".into()];
        s.queues[0].counters.ports[1].tx_packets = 42;
        s.queues[0].counters.ports[0].rx_bytes = 7;
        let (types, samples) = parse(&encode(&s));
        assert_eq!(types["sluice_port_tx_packets"], "counter");
        let find = |name: &str, port: &str| {
            samples
                .iter()
                .find(|x| x.name == name && x.labels["queue"] == "0" && x.labels["port"] == port)
                .map(|x| x.value.clone())
        };
        assert_eq!(
            find("sluice_port_tx_packets_total", "veth1").as_deref(),
            Some("42")
        );
        assert_eq!(
            find("sluice_port_rx_bytes_total", "veth0").as_deref(),
            Some("7")
        );
        assert_eq!(
            find("sluice_port_rx_bytes_total", "veth1").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn lb_families_only_with_the_lb_app() {
        let (types, _) = parse(&encode(&snapshot()));
        assert!(!types.keys().any(|k| k.starts_with("sluice_lb_")));
        let mut s = snapshot();
        s.lb = Some(LbMetrics {
            conntrack: vec![(
                0,
                ConnTableFigures {
                    flows: 12,
                    capacity: 65536,
                    hits: 100,
                    misses: 12,
                    inserts: 12,
                    evictions: 1,
                    expirations: 2,
                },
            )],
            backends: vec![
                BackendMetrics {
                    vip: "10.0.0.100:80/tcp".into(),
                    backend: "10.0.1.1".into(),
                    in_table: true,
                    healthy: Some(true),
                },
                BackendMetrics {
                    vip: "10.0.0.100:80/tcp".into(),
                    backend: "10.0.1.2".into(),
                    in_table: false,
                    healthy: None,
                },
            ],
        });
        let (types, samples) = parse(&encode(&s));
        assert_eq!(types["sluice_lb_conntrack_flows"], "gauge");
        assert_eq!(types["sluice_lb_conntrack_hits"], "counter");
        let q0 = [("iface", "veth0"), ("queue", "0")];
        assert_eq!(value(&samples, "sluice_lb_conntrack_flows", &q0), "12");
        assert_eq!(
            value(&samples, "sluice_lb_conntrack_capacity", &q0),
            "65536"
        );
        assert_eq!(
            value(&samples, "sluice_lb_conntrack_evictions_total", &q0),
            "1"
        );
        let b = |addr| {
            [
                ("iface", "veth0"),
                ("vip", "10.0.0.100:80/tcp"),
                ("backend", addr),
            ]
        };
        assert_eq!(
            value(&samples, "sluice_lb_backend_in_table", &b("10.0.1.1")),
            "1"
        );
        assert_eq!(
            value(&samples, "sluice_lb_backend_in_table", &b("10.0.1.2")),
            "0"
        );
        assert_eq!(
            value(&samples, "sluice_lb_backend_healthy", &b("10.0.1.1")),
            "1"
        );
        assert!(
            !samples
                .iter()
                .any(|x| x.name == "sluice_lb_backend_healthy" && x.labels["backend"] == "10.0.1.2"),
            "an unchecked backend has no health sample"
        );
    }

    #[test]
    fn missing_xdp_counters_leave_the_family_out() {
        let mut s = snapshot();
        s.xdp = None;
        let (types, samples) = parse(&encode(&s));
        assert!(!types.contains_key("sluice_xdp_frames"));
        assert!(samples.iter().all(|s| !s.name.starts_with("sluice_xdp")));
        // And no queues at all is still a valid exposition.
        let (_, samples) = parse(&encode(&MetricsSnapshot::default()));
        assert_eq!(samples.len(), 1, "{samples:?}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = snapshot();
        s.iface = "a\"b\\c\nd".into();
        let text = encode(&s);
        assert!(
            text.contains(r#"sluice_up{iface="a\"b\\c\nd"} 1"#),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("d\"")).count(), 0);
    }
}
