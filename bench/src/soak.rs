//! The soak: sluice reflecting a steady, windowed echo load on a veth pair for a long time while
//! everything around it moves (links flap, rules come and go, stats and metrics are scraped,
//! hot upgrades replace the process), then every datagram is accounted for.
//!
//! Driven by `cargo xtask soak --minutes N` (through `sluice-bench soak`) and, compressed to
//! under a minute, by the privileged test `tests/tests/soak.rs`.
//!
//! **Accounting.** The kernel-socket echo client in the peer namespace counts what it sent (S),
//! what came back verified (E) and what it gave up on (L = S − E; `mismatched` must be 0). The
//! loss is split along the path and each part compared with the counters that saw it:
//!
//! - *inbound* (sent, never reached an AF_XDP socket): `S − R`, where R is the sum of every
//!   generation's `total.rx_packets` (only the echo port is steered and only the client sends
//!   to it). Explained by the peer veth's `tx_dropped` (veth drops what it sends to a peer that
//!   is down; the same drop shows as the engine veth's `rx_dropped`, so the larger of the two
//!   counts), plus the engine namespace's UDP `NoPorts` (frames the XDP program passed to the
//!   kernel, which has no socket on the port).
//! - *in sluice*: `R − T`, T the sum of `total.tx_packets`; explained by `total.dropped` (every
//!   drop has a reason).
//! - *outbound* (transmitted by sluice, never verified by the client): `T − E`; explained by the
//!   larger of the engine veth's `tx_dropped` and the peer veth's `rx_dropped`, plus the peer
//!   namespace's UDP `RcvbufErrors`.
//!
//! Each part is reported with its explanation; an unexplained remainder (> 0) is a finding.
//! Counters are read as deltas over the run, from `ip -s link` and `/proc/net/snmp` inside the
//! namespaces. What this cannot prove: that a specific frame was the one a counter counted.
//! The counters are totals and also count other frames dropped while a link was down (ARP,
//! neighbour discovery), so "explained ≥ missing" is the check, not equality (in the runs so far
//! the inbound leg matched exactly).
//!
//! **Also checked:** the last engine's census adds up (the engines that handed over exit with
//! their final totals, whose census is not checked); RSS of the serving engine at the end is
//! within `rss_growth` + `rss_slack_kib` of its value 3 s into the load (the successor's own RSS
//! is compared with the first engine's); no generation's thread count fell below its count after
//! start-up; no sluice stderr line says `panicked`; every rule change succeeded; every `ctl
//! stats` outside a hot upgrade succeeded.

use serde_json::Value;
use sluice_testbed::{Netns, TestBed, VethOpts};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::echo::{EchoClient, EchoConfig, EchoStats};

/// The steered echo port.
pub const PORT: u16 = 9000;
/// The port whose rule is added and removed every `rule_every`.
pub const CHURN_PORT: u16 = 9100;

/// What to run and how often each disturbance happens.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// The `sluice` binary.
    pub sluice: PathBuf,
    /// Length of the echo load.
    pub duration: Duration,
    /// Take the engine's link down (then up again after `flap_down`) this often.
    pub flap_every: Duration,
    /// How long a flap keeps the link down.
    pub flap_down: Duration,
    /// Add, then (next time) remove, the rule for [`CHURN_PORT`] this often.
    pub rule_every: Duration,
    /// Hot upgrade (`sluice run … --takeover`) this often.
    pub upgrade_every: Duration,
    /// Echo client window (datagrams in flight): this paces the load.
    pub window: usize,
    /// Serve metrics on this port (in the engine namespace) and scrape them. Every generation
    /// serves them (a successor on the listener its predecessor passed on); scraping pauses
    /// from the start of each hot upgrade until the old engine has exited.
    pub metrics_port: u16,
    /// Allowed RSS growth from after warm-up to the end, as a fraction (0.10 = 10 %) …
    pub rss_growth: f64,
    /// … plus this many KiB (page-granular noise on a small process).
    pub rss_slack_kib: u64,
    /// Print a progress line every this often (None: quiet).
    pub progress: Option<Duration>,
}

impl SoakConfig {
    /// The full-length shape of `cargo xtask soak`: flaps every 30 s, a rule change every
    /// second, an upgrade every 2 minutes.
    pub fn minutes(sluice: PathBuf, minutes: u64) -> SoakConfig {
        SoakConfig {
            sluice,
            duration: Duration::from_secs(minutes * 60),
            flap_every: Duration::from_secs(30),
            flap_down: Duration::from_secs(1),
            rule_every: Duration::from_secs(1),
            upgrade_every: Duration::from_secs(120),
            window: 64,
            metrics_port: 9464,
            rss_growth: 0.10,
            rss_slack_kib: 2048,
            progress: Some(Duration::from_secs(10)),
        }
    }
}

/// One sluice process of the run (the first, or a successor).
struct Generation {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Generation {
    fn start(cfg: &SoakConfig, ns: &Netns, iface: &str, takeover: bool) -> anyhow::Result<Self> {
        let metrics = cfg.metrics_port.to_string();
        let mut cmd = Command::new(&cfg.sluice);
        cmd.args(["run", "--iface", iface, "--json", "--stats-interval", "1"])
            .args(["--udp", &PORT.to_string(), "--queues", "all"]);
        cmd.args(["--metrics", &metrics]);
        if takeover {
            cmd.arg("--takeover");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ns.spawn(&mut cmd)?;
        let out = collect(child.stdout.take().expect("piped"));
        let err = collect(child.stderr.take().expect("piped"));
        Ok(Generation { child, out, err })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stats_lines(&self) -> usize {
        lock(&self.out)
            .iter()
            .filter(|l| l.contains("\"type\":\"stats\""))
            .count()
    }

    fn stderr(&self) -> String {
        lock(&self.err).join("\n")
    }

    /// Wait (bounded) for it to exit by itself; its status and final JSON.
    fn wait(&mut self, limit: Duration) -> anyhow::Result<(ExitStatus, Value)> {
        let end = Instant::now() + limit;
        let st = loop {
            if let Some(st) = self.child.try_wait()? {
                break st;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                anyhow::bail!("sluice {} did not exit within {limit:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader threads see EOF right after the exit; give them a moment.
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(v) = lock(&self.out)
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["type"] == "final")
            {
                return Ok((st, v));
            }
            if Instant::now() > end {
                anyhow::bail!("sluice {} ({st}) printed no final totals", self.pid());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) -> anyhow::Result<(ExitStatus, Value)> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.wait(Duration::from_secs(20))
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn collect(r: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let mut v = lock(&l);
            // Bounded: keep the head (start-up log) and the tail (final totals).
            if v.len() > 4000 {
                v.drain(100..2100);
            }
            v.push(line);
        }
    });
    lines
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// VmRSS (KiB) and thread count of `pid`, from `/proc/PID/status`.
pub fn rss_and_threads(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|x| x.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

/// `rx_dropped` and `tx_dropped` of `iface` in `ns` (`ip -j -s link`).
fn link_drops(ns: &Netns, iface: &str) -> anyhow::Result<(u64, u64)> {
    let out = ns
        .spawn(
            Command::new("ip")
                .args(["-j", "-s", "link", "show", "dev", iface])
                .stdout(Stdio::piped()),
        )?
        .wait_with_output()?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let s = &v[0]["stats64"];
    Ok((
        s["rx"]["dropped"].as_u64().unwrap_or(0),
        s["tx"]["dropped"].as_u64().unwrap_or(0),
    ))
}

/// One field of the `Udp:` line of `/proc/net/snmp` as seen from `ns`.
fn udp_snmp(ns: &Netns, field: &str) -> anyhow::Result<u64> {
    let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        anyhow::bail!("no Udp lines in /proc/net/snmp");
    };
    let i = names
        .split_whitespace()
        .position(|n| n == field)
        .ok_or_else(|| anyhow::anyhow!("no Udp {field}"))?;
    Ok(values
        .split_whitespace()
        .nth(i)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0))
}

/// Kernel counters along the path, read before and after.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathCounters {
    /// Peer veth: rx_dropped, tx_dropped.
    pub peer: (u64, u64),
    /// Engine veth: rx_dropped, tx_dropped.
    pub engine: (u64, u64),
    /// Engine namespace UDP NoPorts.
    pub engine_noports: u64,
    /// Peer namespace UDP RcvbufErrors.
    pub peer_rcvbuf: u64,
}

fn path_counters(bed: &TestBed) -> anyhow::Result<PathCounters> {
    Ok(PathCounters {
        peer: link_drops(bed.peer().ns(), bed.peer().iface())?,
        engine: link_drops(bed.engine().ns(), bed.engine().iface())?,
        engine_noports: udp_snmp(bed.engine().ns(), "NoPorts")?,
        peer_rcvbuf: udp_snmp(bed.peer().ns(), "RcvbufErrors")?,
    })
}

/// One leg of the accounting: frames missing on it and what the counters explain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leg {
    /// Frames that went missing on this leg.
    pub missing: i64,
    /// Frames the counters on this leg say were dropped (or passed to the kernel).
    pub explained: i64,
}

impl Leg {
    /// Missing frames no counter explains (0 when all are explained).
    pub fn unexplained(&self) -> i64 {
        (self.missing - self.explained).max(0)
    }
}

/// What a soak saw.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    /// The echo client's counts.
    pub echo: EchoStats,
    /// Seconds the load ran.
    pub seconds: f64,
    /// Sum over generations of `total.rx_packets`, `total.tx_packets`, `total.dropped`.
    pub rx: u64,
    /// See `rx`.
    pub tx: u64,
    /// See `rx`.
    pub dropped: u64,
    /// Drops by reason, summed over generations.
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Kernel counters' deltas over the run.
    pub kernel: PathCounters,
    /// Inbound, in-sluice and outbound legs (see the module docs).
    pub inbound: Leg,
    /// See `inbound`.
    pub in_sluice: Leg,
    /// See `inbound`.
    pub outbound: Leg,
    /// Link flaps, rule changes (ok, failed), upgrades done.
    pub flaps: u64,
    /// See `flaps`.
    pub rule_changes: (u64, u64),
    /// See `flaps`.
    pub upgrades: u64,
    /// When each upgrade started, in seconds into the load.
    pub upgrade_times: Vec<f64>,
    /// `ctl stats` scrapes (ok, failed) and metrics scrapes (ok, failed).
    pub ctl_scrapes: (u64, u64),
    /// See `ctl_scrapes`.
    pub metrics_scrapes: (u64, u64),
    /// `ctl stats` scrapes that failed while a hot upgrade was under way (from the successor's
    /// start to 2 s after the old engine exited). Not counted in `ctl_scrapes` and not a
    /// problem: a connection the old engine accepted as it handed over is closed without a
    /// reply ("closed the connection without replying"); the client may retry.
    pub ctl_during_upgrade: u64,
    /// The first few failed `ctl` calls, with when (seconds into the load) and their stderr.
    pub ctl_errors: Vec<String>,
    /// RSS (KiB) of the serving engine after warm-up, at the end, and the highest seen.
    pub rss_start_kib: u64,
    /// See `rss_start_kib`.
    pub rss_end_kib: u64,
    /// See `rss_start_kib`.
    pub rss_max_kib: u64,
    /// Per generation: threads after warm-up and fewest seen while it served.
    pub threads: Vec<(u64, u64)>,
    /// Everything that failed a check; empty for a clean run.
    pub problems: Vec<String>,
}

impl SoakReport {
    /// A few lines for logs and BENCHMARKS.md.
    pub fn summary(&self) -> String {
        let e = &self.echo;
        let mut s = format!(
            "soak {:.0} s: sent {} ({:.0}/s), echoed {}, lost {} ({:.4} %), mismatched {}\n",
            self.seconds,
            e.sent,
            e.sent as f64 / self.seconds.max(1e-9),
            e.echoed,
            e.lost,
            100.0 * e.lost as f64 / e.sent.max(1) as f64,
            e.mismatched
        );
        s += &format!(
            "  sluice rx {} tx {} dropped {} {:?}\n",
            self.rx, self.tx, self.dropped, self.drops
        );
        for (name, l) in [
            ("inbound", self.inbound),
            ("in sluice", self.in_sluice),
            ("outbound", self.outbound),
        ] {
            s += &format!(
                "  {name}: missing {} explained {} unexplained {}\n",
                l.missing,
                l.explained,
                l.unexplained()
            );
        }
        s += &format!("  kernel counters (deltas): {:?}\n", self.kernel);
        s += &format!(
            "  flaps {}, rule changes {} ok / {} failed, upgrades {}, ctl stats {} ok / {} failed \
             (+ {} during upgrades), metrics {} ok / {} failed\n",
            self.flaps,
            self.rule_changes.0,
            self.rule_changes.1,
            self.upgrades,
            self.ctl_scrapes.0,
            self.ctl_scrapes.1,
            self.ctl_during_upgrade,
            self.metrics_scrapes.0,
            self.metrics_scrapes.1
        );
        s += &format!(
            "  RSS after warm-up {} KiB, end {} KiB, max {} KiB; threads per generation \
             (after warm-up, fewest) {:?}\n",
            self.rss_start_kib, self.rss_end_kib, self.rss_max_kib, self.threads
        );
        for e in &self.ctl_errors {
            s += &format!("  ctl failure at {e}\n");
        }
        s += &format!(
            "  upgrades at (s into the load): {:?}\n",
            self.upgrade_times
        );
        if self.problems.is_empty() {
            s += "  all checks passed\n";
        } else {
            for p in &self.problems {
                s += &format!("  PROBLEM: {p}\n");
            }
        }
        s
    }
}

/// Run `sluice ctl --iface IF ARGS…` in `ns`; `Err` holds its status and stderr.
fn ctl(sluice: &std::path::Path, ns: &Netns, iface: &str, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(sluice);
    cmd.args(["ctl", "--iface", iface, "--timeout", "5"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = ns
        .spawn(&mut cmd)
        .map_err(|e| e.to_string())?
        .wait_with_output()
        .map_err(|e| e.to_string())?;
    if o.status.success() && !o.stdout.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "ctl {args:?}: {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

fn note(errors: &Mutex<Vec<String>>, e: String) {
    let mut v = lock(errors);
    if v.len() < 10 {
        v.push(e);
    }
}

fn scrape_metrics(port: u16) -> bool {
    let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.take(4 << 20).read_to_string(&mut body);
    body.starts_with("HTTP/1.1 200") && body.contains("sluice_rx_packets_total")
}

fn census_ok(fin: &Value) -> Result<(), String> {
    let Some(queues) = fin["queues"].as_array() else {
        return Err(format!("no queues in {fin}"));
    };
    for q in queues {
        let c = &q["census"];
        let total = c["total"].as_u64().unwrap_or(0);
        let sum: u64 = ["fill", "rx", "worker", "tx", "completion"]
            .iter()
            .map(|k| c[*k].as_u64().unwrap_or(0))
            .sum();
        if c["kernel"].as_i64() != Some(0) || sum != total || total == 0 {
            return Err(format!("census does not add up: {c}"));
        }
    }
    Ok(())
}

/// Run a soak on a fresh veth pair (2 queues). Returns the report; `problems` lists every
/// check that failed (an `Err` is for a run that could not be carried out at all).
pub fn run(cfg: &SoakConfig) -> anyhow::Result<SoakReport> {
    let bed = TestBed::pair(VethOpts {
        queues: 2,
        ..Default::default()
    })?;
    let ens = bed.engine().ns();
    let iface = bed.engine().iface().to_string();
    let mut rep = SoakReport::default();
    let mut gens = vec![Generation::start(cfg, ens, &iface, false)?];
    // Ready: the first stats line means attached and the workers run; then an echo probe.
    let end = Instant::now() + Duration::from_secs(30);
    while gens[0].stats_lines() == 0 {
        if Instant::now() > end || matches!(gens[0].child.try_wait(), Ok(Some(_))) {
            anyhow::bail!("sluice did not start:\n{}", gens[0].stderr());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let echo_cfg = EchoConfig {
        target: SocketAddr::new(bed.engine().ipv4().into(), PORT),
        bind: SocketAddr::new(bed.peer().ipv4().into(), 0),
        flows: 4,
        window: cfg.window,
        count: None,
        duration: cfg.duration,
        // Longer than a flap: frames sluice holds while the link is down are echoed once it is
        // up again, and an echo after the client gave up would count as lost *and* mismatched.
        timeout: cfg.flap_down + Duration::from_secs(2),
        sizes: vec![64, 512, 1400],
    };
    let probe_cfg = EchoConfig {
        count: Some(1),
        flows: 1,
        ..echo_cfg.clone()
    };
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let c = probe_cfg.clone();
        let ok = bed.peer().ns().run(move || {
            EchoClient::new(c)
                .map(|mut c| c.probe(Duration::from_millis(300)))
                .unwrap_or(false)
        })?;
        if ok {
            break;
        }
        if Instant::now() > end {
            anyhow::bail!("sluice never echoed:\n{}", gens[0].stderr());
        }
    }
    let before = path_counters(&bed)?;
    // The probe's frames are counted by sluice but not by the client below.
    std::thread::sleep(Duration::from_millis(1100));
    let probe_rx = lock(&gens[0].out)
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "stats")
        .and_then(|v| v["total"]["counters"]["rx_packets"].as_u64())
        .unwrap_or(0);

    let stop = AtomicBool::new(false);
    let metrics_on = AtomicBool::new(true);
    let ctl_ok = AtomicU64::new(0);
    let ctl_bad = AtomicU64::new(0);
    let met_ok = AtomicU64::new(0);
    let met_bad = AtomicU64::new(0);
    let errors = Mutex::new(Vec::new());
    // Until when (ms into the load) a ctl failure counts as one during a hot upgrade.
    let upgrade_until = AtomicU64::new(0);
    let ctl_bad_upgrade = AtomicU64::new(0);
    let started = Instant::now();
    let echo = std::thread::scope(|scope| -> anyhow::Result<EchoStats> {
        let client = scope.spawn(|| {
            let c = echo_cfg.clone();
            bed.peer()
                .ns()
                .run(move || EchoClient::new(c).map(|mut c| c.run(|_, _| {})))
        });
        // Scrapers: `ctl stats` (a process each time) and the metrics endpoint, back to back.
        let scraper = scope.spawn(|| {
            let _ = ens.run(|| {
                let end = Instant::now() + cfg.duration + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    match ctl(&cfg.sluice, ens, &iface, &["--json", "stats"]) {
                        Ok(()) => {
                            ctl_ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let at = started.elapsed().as_millis() as u64;
                            if at <= upgrade_until.load(Ordering::Relaxed) {
                                ctl_bad_upgrade.fetch_add(1, Ordering::Relaxed);
                            } else {
                                ctl_bad.fetch_add(1, Ordering::Relaxed);
                            }
                            note(
                                &errors,
                                format!("{:.1} s: {e}", started.elapsed().as_secs_f64()),
                            );
                        }
                    }
                    if metrics_on.load(Ordering::Relaxed) {
                        if scrape_metrics(cfg.metrics_port) {
                            met_ok.fetch_add(1, Ordering::Relaxed);
                        } else if metrics_on.load(Ordering::Relaxed) {
                            met_bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        });
        let mut next_rule = started + cfg.rule_every;
        let mut next_flap = started + cfg.flap_every;
        let mut next_upgrade = started + cfg.upgrade_every;
        let mut next_progress = cfg.progress.map(|p| started + p);
        let mut rule_on = false;
        let mut warm: Option<u64> = None;
        let mut gen_threads: Vec<(u64, u64)> = vec![];
        let end = started + cfg.duration;
        while Instant::now() < end {
            let now = Instant::now();
            let cur = gens.last_mut().expect("a generation");
            if matches!(cur.child.try_wait(), Ok(Some(_))) {
                rep.problems
                    .push(format!("sluice exited by itself:\n{}", cur.stderr()));
                break;
            }
            if let Some((rss, threads)) = rss_and_threads(cur.pid()) {
                rep.rss_max_kib = rep.rss_max_kib.max(rss);
                rep.rss_end_kib = rss;
                // Warm-up: the first sample 3 s in (UMEM pages touched, every thread up).
                if warm.is_none() && now.duration_since(started) >= Duration::from_secs(3) {
                    warm = Some(rss);
                    rep.rss_start_kib = rss;
                }
                if gen_threads.len() < gens.len()
                    && now.duration_since(started) >= Duration::from_secs(3)
                {
                    gen_threads.push((threads, threads));
                } else if let Some(t) = gen_threads.get_mut(gens.len() - 1) {
                    t.1 = t.1.min(threads);
                }
            }
            if now >= next_rule {
                let verb = if rule_on { "del" } else { "add" };
                let port = CHURN_PORT.to_string();
                match ctl(&cfg.sluice, ens, &iface, &["rules", verb, "--udp", &port]) {
                    Ok(()) => {
                        rep.rule_changes.0 += 1;
                        rule_on = !rule_on;
                    }
                    Err(e) => {
                        rep.rule_changes.1 += 1;
                        note(
                            &errors,
                            format!("{:.1} s: {e}", started.elapsed().as_secs_f64()),
                        );
                    }
                }
                next_rule += cfg.rule_every;
            }
            if now >= next_flap {
                ens.set_link_up(&iface, false)?;
                std::thread::sleep(cfg.flap_down);
                ens.set_link_up(&iface, true)?;
                rep.flaps += 1;
                next_flap += cfg.flap_every;
            }
            if now >= next_upgrade && now + Duration::from_secs(5) < end {
                metrics_on.store(false, Ordering::Relaxed);
                upgrade_until.store(u64::MAX, Ordering::Relaxed);
                rep.upgrade_times
                    .push((now.duration_since(started).as_secs_f64() * 10.0).round() / 10.0);
                let succ = Generation::start(cfg, ens, &iface, true)?;
                let old = gens.last_mut().expect("a generation");
                match old.wait(Duration::from_secs(30)) {
                    Ok((st, fin)) if st.success() => {
                        rep.upgrades += 1;
                        add_final(&mut rep, &fin);
                        // The successor serves the metrics now, on the same port.
                        metrics_on.store(true, Ordering::Relaxed);
                    }
                    Ok((st, _)) => rep.problems.push(format!(
                        "upgrade: the old engine exited with {st}:\n{}",
                        old.stderr()
                    )),
                    Err(e) => rep
                        .problems
                        .push(format!("upgrade: {e}; successor:\n{}", succ.stderr())),
                }
                gens.push(succ);
                // A request the old engine accepted just before it handed over may go
                // unanswered (see `SoakReport::ctl_during_upgrade`); 2 s after it exited,
                // failures count again.
                upgrade_until.store(
                    started.elapsed().as_millis() as u64 + 2000,
                    Ordering::Relaxed,
                );
                next_upgrade += cfg.upgrade_every;
            }
            if let Some(p) = next_progress.as_mut()
                && now >= *p
            {
                eprintln!(
                    "soak: {:.0} s, flaps {}, rules {:?}, upgrades {}, ctl {}/{}, metrics {}/{}, \
                     RSS {} KiB",
                    now.duration_since(started).as_secs_f64(),
                    rep.flaps,
                    rep.rule_changes,
                    rep.upgrades,
                    ctl_ok.load(Ordering::Relaxed),
                    ctl_bad.load(Ordering::Relaxed),
                    met_ok.load(Ordering::Relaxed),
                    met_bad.load(Ordering::Relaxed),
                    rep.rss_end_kib
                );
                *p += cfg.progress.unwrap_or(Duration::from_secs(10));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        rep.threads = gen_threads;
        let echo = client
            .join()
            .map_err(|_| anyhow::anyhow!("echo client panicked"))???;
        stop.store(true, Ordering::Relaxed);
        let _ = scraper.join();
        Ok(echo)
    })?;
    rep.seconds = started.elapsed().as_secs_f64();
    rep.echo = echo;
    rep.ctl_scrapes = (ctl_ok.into_inner(), ctl_bad.into_inner());
    rep.ctl_during_upgrade = ctl_bad_upgrade.into_inner();
    rep.metrics_scrapes = (met_ok.into_inner(), met_bad.into_inner());
    rep.ctl_errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    // The serving generation's last RSS sample is `rss_end_kib`; stop it and add its totals.
    let last = gens.last_mut().expect("a generation");
    match last.stop() {
        Ok((st, fin)) => {
            if !st.success() {
                rep.problems.push(format!("last engine exited with {st}"));
            }
            if let Err(e) = census_ok(&fin) {
                rep.problems.push(e);
            }
            add_final(&mut rep, &fin);
        }
        Err(e) => rep.problems.push(format!("stopping the last engine: {e}")),
    }
    for g in &gens {
        let err = g.stderr();
        if err.contains("panicked") {
            rep.problems
                .push(format!("a sluice thread panicked:\n{err}"));
        }
    }
    let after = path_counters(&bed)?;
    let d = |a: u64, b: u64| b.saturating_sub(a) as i64;
    rep.kernel = PathCounters {
        peer: (
            d(before.peer.0, after.peer.0) as u64,
            d(before.peer.1, after.peer.1) as u64,
        ),
        engine: (
            d(before.engine.0, after.engine.0) as u64,
            d(before.engine.1, after.engine.1) as u64,
        ),
        engine_noports: d(before.engine_noports, after.engine_noports) as u64,
        peer_rcvbuf: d(before.peer_rcvbuf, after.peer_rcvbuf) as u64,
    };
    let k = rep.kernel;
    let rx = rep.rx.saturating_sub(probe_rx) as i64;
    rep.inbound = Leg {
        missing: rep.echo.sent as i64 - rx,
        // veth reports one drop on both ends (the sender's tx_dropped, the receiver's
        // rx_dropped): take the larger, not the sum.
        explained: (k.peer.1.max(k.engine.0) + k.engine_noports) as i64,
    };
    rep.in_sluice = Leg {
        missing: rep.rx as i64 - rep.tx as i64,
        explained: rep.dropped as i64,
    };
    let tx = rep.tx.saturating_sub(probe_rx) as i64;
    rep.outbound = Leg {
        missing: tx - rep.echo.echoed as i64,
        explained: (k.engine.1.max(k.peer.0) + k.peer_rcvbuf) as i64,
    };
    check(cfg, &mut rep);
    Ok(rep)
}

fn add_final(rep: &mut SoakReport, fin: &Value) {
    let t = &fin["total"];
    rep.rx += t["rx_packets"].as_u64().unwrap_or(0);
    rep.tx += t["tx_packets"].as_u64().unwrap_or(0);
    rep.dropped += t["dropped"].as_u64().unwrap_or(0);
    if let Some(m) = t["drops"].as_object() {
        for (k, v) in m {
            *rep.drops.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
    }
}

fn check(cfg: &SoakConfig, rep: &mut SoakReport) {
    let mut p = vec![];
    if rep.echo.mismatched != 0 {
        p.push(format!("{} mismatched echoes", rep.echo.mismatched));
    }
    if rep.echo.echoed == 0 {
        p.push("nothing was echoed".into());
    }
    for (name, l) in [
        ("inbound", rep.inbound),
        ("in sluice", rep.in_sluice),
        ("outbound", rep.outbound),
    ] {
        if l.unexplained() > 0 {
            p.push(format!(
                "{name}: {} frames missing, counters explain {}",
                l.missing, l.explained
            ));
        }
    }
    let bound = rep.rss_start_kib as f64 * (1.0 + cfg.rss_growth) + cfg.rss_slack_kib as f64;
    if rep.rss_start_kib == 0 || rep.rss_end_kib as f64 > bound {
        p.push(format!(
            "RSS grew: {} KiB after warm-up, {} KiB at the end (bound {bound:.0} KiB)",
            rep.rss_start_kib, rep.rss_end_kib
        ));
    }
    for (i, (warm, fewest)) in rep.threads.iter().enumerate() {
        if fewest < warm {
            p.push(format!(
                "generation {i}: {warm} threads after warm-up, {fewest} later"
            ));
        }
    }
    if rep.rule_changes.1 > 0 {
        p.push(format!("{} rule changes failed", rep.rule_changes.1));
    }
    if rep.ctl_scrapes.0 == 0 || rep.ctl_scrapes.1 > 0 {
        p.push(format!("ctl stats scrapes ok/failed {:?}", rep.ctl_scrapes));
    }
    if rep.metrics_scrapes.0 == 0 || rep.metrics_scrapes.1 > 0 {
        p.push(format!(
            "metrics scrapes ok/failed {:?}",
            rep.metrics_scrapes
        ));
    }
    let want_upgrades = (cfg.duration.as_secs_f64() / cfg.upgrade_every.as_secs_f64()) as u64;
    if rep.upgrades + 1 < want_upgrades || (want_upgrades >= 1 && rep.upgrades == 0) {
        p.push(format!("only {} hot upgrades", rep.upgrades));
    }
    rep.problems.extend(p);
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn own_rss_and_threads_are_readable() {
        let (rss, threads) = rss_and_threads(std::process::id()).expect("/proc/self/status");
        assert!(rss > 0 && threads >= 1);
        assert_eq!(rss_and_threads(u32::MAX), None);
    }

    #[test]
    fn a_leg_is_unexplained_only_past_its_counters() {
        let l = |missing, explained| Leg { missing, explained };
        assert_eq!(l(10, 10).unexplained(), 0);
        assert_eq!(l(10, 25).unexplained(), 0);
        assert_eq!(l(10, 4).unexplained(), 6);
        assert_eq!(l(-3, 0).unexplained(), 0);
    }

    #[test]
    fn census_must_add_up() {
        let q = |kernel: i64, fill: u64| {
            serde_json::json!({"queues": [{"census": {"total": 10, "fill": fill, "rx": 2,
                "worker": 1, "tx": 1, "completion": 0, "kernel": kernel}}]})
        };
        assert!(census_ok(&q(0, 6)).is_ok());
        assert!(census_ok(&q(0, 5)).is_err());
        assert!(census_ok(&q(1, 6)).is_err());
        assert!(census_ok(&serde_json::json!({})).is_err());
    }
}
