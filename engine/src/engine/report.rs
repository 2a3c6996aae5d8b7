//! The stats reporter: one line per interval and the final totals, as text or JSON lines.
//!
//! The counters' JSON shape is [`Local::to_json`] and [`stats::rates_json`], the same one the
//! control socket serves.

use super::Summary;
use crate::batch::DropReason;
use crate::steer::Counters;
use crate::worker::{Local, WorkerHandle, stats};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Instant;

/// Formats the periodic and final stats, as text or JSON lines.
pub(super) struct Reporter {
    json: bool,
    ports: Vec<String>,
    last: Vec<Local>,
    last_at: Instant,
}

impl Reporter {
    pub(super) fn new<A>(json: bool, workers: &[WorkerHandle<A>], ports: Vec<String>) -> Self {
        Reporter {
            json,
            ports,
            last: vec![Local::default(); workers.len()],
            last_at: Instant::now(),
        }
    }

    pub(super) fn report<A>(
        &mut self,
        out: &mut dyn Write,
        workers: &[WorkerHandle<A>],
        xdp: Option<&Counters>,
        started: Instant,
    ) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let snaps: Vec<Local> = workers.iter().map(|w| w.shared.snapshot()).collect();
        let mut total = Local::default();
        let mut total_prev = Local::default();
        for (s, p) in snaps.iter().zip(&self.last) {
            total.add(s);
            total_prev.add(p);
        }
        let elapsed = now.duration_since(started).as_secs_f64();
        let line = if self.json {
            let queues: Vec<Value> = workers
                .iter()
                .zip(snaps.iter().zip(&self.last))
                .map(|(w, (s, p))| {
                    let mut v = rates_json(s, p, dt);
                    v["queue"] = json!(w.queue);
                    v["core"] = json!(w.core);
                    v
                })
                .collect();
            let mut v = json!({
                "type": "stats",
                "elapsed_s": round3(elapsed),
                "interval_s": round3(dt),
                "total": rates_json(&total, &total_prev, dt),
                "ports": self.ports_json(&total),
                "queues": queues,
            });
            if let Some(x) = xdp {
                v["xdp"] = json!(x);
            }
            v.to_string()
        } else {
            let mut s = format!(
                "[{elapsed:7.1}s] total {}",
                rates_text(&total, &total_prev, dt)
            );
            if workers.len() > 1 {
                for (w, (c, p)) in workers.iter().zip(snaps.iter().zip(&self.last)) {
                    s.push_str(&format!(" | q{} {}", w.queue, rates_text(c, p, dt)));
                }
            }
            s
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        self.last = snaps;
        self.last_at = now;
    }

    pub(super) fn final_report(&mut self, out: &mut dyn Write, sum: &Summary, started: Instant) {
        let elapsed = started.elapsed().as_secs_f64();
        let mut total = Local::default();
        for (_, l, _, _) in &sum.queues {
            total.add(l);
        }
        if self.json {
            let queues: Vec<Value> = sum
                .queues
                .iter()
                .map(|(q, l, c, k)| {
                    json!({"queue": q, "counters": l.to_json(), "census": c, "kernel": k})
                })
                .collect();
            let v = json!({
                "type": "final",
                "elapsed_s": round3(elapsed),
                "total": total.to_json(),
                "ports": self.ports_json(&total),
                "queues": queues,
                "xdp": sum.xdp,
            });
            let _ = writeln!(out, "{v}");
        } else {
            let _ = writeln!(
                out,
                "final after {elapsed:.1}s: rx {} frames ({} bytes), tx {} frames, dropped {}{}",
                total.rx_packets,
                total.rx_bytes,
                total.tx_packets,
                total.dropped(),
                drops_text(&total)
            );
            if self.ports.len() > 1 {
                for (name, p) in self.ports.iter().zip(&total.ports) {
                    let _ = writeln!(
                        out,
                        "  port {name}: rx {} frames ({} bytes), tx {} frames ({} bytes)",
                        p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
                    );
                }
            }
            for (q, l, c, k) in &sum.queues {
                let _ = writeln!(
                    out,
                    "  q{q}: rx {} tx {} dropped {}{}; frames: fill {} rx {} worker {} tx {} completion {} kernel {} of {}",
                    l.rx_packets,
                    l.tx_packets,
                    l.dropped(),
                    drops_text(l),
                    c.fill,
                    c.rx,
                    c.worker,
                    c.tx,
                    c.completion,
                    c.kernel,
                    c.total
                );
                if k.rx_ring_full + k.rx_dropped + k.rx_fill_ring_empty > 0 {
                    let _ = writeln!(
                        out,
                        "  q{q} kernel: rx_ring_full {} rx_dropped {} fill_ring_empty {}",
                        k.rx_ring_full, k.rx_dropped, k.rx_fill_ring_empty
                    );
                }
            }
            let x = &sum.xdp;
            // The outcomes every run has, then whichever others happened (forward or lb mode's).
            let outcomes: Vec<String> = x
                .outcomes()
                .iter()
                .enumerate()
                .filter(|(i, (_, v))| *i < 7 || *v > 0)
                .map(|(_, (name, v))| format!("{name} {v}"))
                .collect();
            let _ = writeln!(out, "  xdp: {}", outcomes.join(" "));
        }
        let _ = out.flush();
    }
}

/// Watches the workers' L4 checksum counters and says once per interface, in the log, what
/// their going up means — so a user whose veth peer leaves checksums partial learns why nothing
/// is answered and how to fix it, while the workers themselves never log.
pub(super) struct ChecksumWatch {
    ports: Vec<String>,
    /// Per port: (partial reported, bad reported).
    warned: Vec<(bool, bool)>,
}

impl ChecksumWatch {
    pub(super) fn new(ports: Vec<String>) -> Self {
        let warned = vec![(false, false); ports.len()];
        ChecksumWatch { ports, warned }
    }

    /// Look at the workers' counters (cheap: relaxed loads) and log what is new.
    pub(super) fn check(&mut self, workers: impl IntoIterator<Item = Local>) {
        let mut total = Local::default();
        for l in workers {
            total.add(&l);
        }
        for line in self.news(&total) {
            log::warn!("{line}");
        }
    }

    /// The log lines `total` calls for that were not given yet.
    fn news(&mut self, total: &Local) -> Vec<String> {
        let mut out = Vec::new();
        for ((name, w), p) in self.ports.iter().zip(&mut self.warned).zip(&total.ports) {
            if !w.0 && p.l4_checksum_partial > 0 {
                w.0 = true;
                out.push(format!(
                    "{name}: dropping UDP/TCP frames whose checksum is only partial \
                     (partial_l4_checksum, {} so far): the sender leaves the checksum to TX \
                     checksum offload, which no NIC finishes on a virtual link (veth), and the \
                     frame reaches XDP without the kernel's note that it is unfinished. Turn the \
                     offload off where the frames are sent from: `ethtool -K PEER tx off` \
                     (PEER: the sending interface, e.g. the other end of {name}'s veth pair). \
                     Logged once; counted as l4_checksum_partial per port in stats and metrics",
                    p.l4_checksum_partial
                ));
            }
            if !w.1 && p.l4_checksum_bad > 0 {
                w.1 = true;
                out.push(format!(
                    "{name}: dropping UDP/TCP frames whose checksum does not verify \
                     (bad_l4_checksum, {} so far), as the kernel would. Logged once; counted \
                     as l4_checksum_bad per port in stats and metrics",
                    p.l4_checksum_bad
                ));
            }
        }
        out
    }
}

impl Reporter {
    /// Each port's counters with its interface name.
    fn ports_json(&self, total: &Local) -> Value {
        let mut v = total.ports_json(self.ports.len());
        if let Some(a) = v.as_array_mut() {
            for (p, name) in a.iter_mut().zip(&self.ports) {
                p["iface"] = json!(name);
            }
        }
        v
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rates between two snapshots plus the counters, as one stats line's per-queue object.
fn rates_json(now: &Local, prev: &Local, dt: f64) -> Value {
    let mut v = stats::rates_json(now, prev, dt);
    v["counters"] = now.to_json();
    v
}

fn rates_text(now: &Local, prev: &Local, dt: f64) -> String {
    let mpps = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt / 1e6;
    let gbps = |a: u64, b: u64| a.saturating_sub(b) as f64 * 8.0 / dt / 1e9;
    let delta = now.since(prev);
    format!(
        "rx {:.3} Mpps {:.3} Gbps tx {:.3} Mpps {:.3} Gbps drop {}{}",
        mpps(now.rx_packets, prev.rx_packets),
        gbps(now.rx_bytes, prev.rx_bytes),
        mpps(now.tx_packets, prev.tx_packets),
        gbps(now.tx_bytes, prev.tx_bytes),
        delta.dropped(),
        drops_text(&delta)
    )
}

fn drops_text(l: &Local) -> String {
    let mut parts: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| l.drops[r.index()] > 0)
        .map(|r| format!("{} {}", r.name(), l.drops[r.index()]))
        .collect();
    if l.tx_ring_full > 0 {
        parts.push(format!("tx_ring_full {}", l.tx_ring_full));
    }
    if l.bad_desc > 0 {
        parts.push(format!("bad_desc {}", l.bad_desc));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn checksum_failures_are_told_once_per_interface() {
        let mut w = ChecksumWatch::new(vec!["veth0".into(), "veth1".into()]);
        let mut l = Local::default();
        assert!(w.news(&l).is_empty());
        l.ports[1].l4_checksum_partial = 3;
        let news = w.news(&l);
        assert_eq!(news.len(), 1);
        assert!(news[0].starts_with("veth1: "), "{}", news[0]);
        assert!(news[0].contains("ethtool -K PEER tx off"), "{}", news[0]);
        l.ports[1].l4_checksum_partial = 9;
        assert!(w.news(&l).is_empty(), "once");
        l.ports[0].l4_checksum_partial = 1;
        l.ports[0].l4_checksum_bad = 1;
        let news = w.news(&l);
        assert_eq!(news.len(), 2);
        assert!(news.iter().all(|n| n.starts_with("veth0: ")));
        assert!(news[1].contains("bad_l4_checksum"));
        assert!(w.news(&l).is_empty());
    }

    #[test]
    fn drops_text_lists_nonzero_reasons() {
        let mut l = Local::default();
        assert_eq!(drops_text(&l), "");
        l.drops[DropReason::Truncated.index()] = 3;
        l.tx_ring_full = 1;
        assert_eq!(drops_text(&l), " (truncated 3, tx_ring_full 1)");
    }

    #[test]
    fn rates_are_per_second() {
        let prev = Local::default();
        let now = Local {
            rx_packets: 2_000_000,
            rx_bytes: 128_000_000,
            ..Default::default()
        };
        let v = rates_json(&now, &prev, 2.0);
        assert_eq!(v["rx_mpps"], json!(1.0));
        assert_eq!(v["rx_gbps"], json!(0.512));
        assert_eq!(v["counters"]["drops"]["truncated"], json!(0));
    }
}
