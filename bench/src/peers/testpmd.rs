//! `dpdk-testpmd` with the `net_af_xdp` poll-mode driver as a peer: DPDK's own AF_XDP path on
//! the same veth end as sluice, in `rxonly` (the rxdrop comparison) and `macswap` (the reflect
//! comparison) forwarding modes.
//!
//! # What it takes (found on Debian 12, DPDK 22.11, kernel 6.18, veth)
//!
//! - **Packages:** `apt-get install -y dpdk librte-net-af-xdp23` (`dpdk` brings `dpdk-testpmd`;
//!   the AF_XDP PMD is a separate plugin package, loaded from
//!   `/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/`; `dpdk-dev` is not needed to run it). The PMD
//!   links `libxdp1` and `libbpf1`, which come along.
//! - **Command line** (what [`Testpmd::start`] runs, inside the namespace; `start_queue=0,
//!   queue_count=1` because the test bed's veth has one queue):
//!
//!   ```text
//!   LIBXDP_SKIP_DISPATCHER=1 dpdk-testpmd -l 0,1 --no-pci --no-telemetry --in-memory \
//!       --vdev net_af_xdp0,iface=veth-eng,start_queue=0,queue_count=1 \
//!       -- --forward-mode=rxonly --auto-start --stats-period 1 --nb-cores=1 \
//!          --total-num-mbufs=16384
//!   ```
//!
//!   `-l`: the first lcore is the main one (control and the stats printer, asleep most of the
//!   time); the second runs the forwarding loop and spins at 100 %. Without `-i` and with
//!   `--auto-start --stats-period N`, testpmd forwards and prints port statistics until SIGINT;
//!   without `--stats-period` a non-interactive testpmd waits for Enter on stdin and, with stdin
//!   at EOF, exits at once.
//! - **Hugepages:** with `--in-memory`, EAL backs its memory with `memfd` hugepages, so
//!   `nr_hugepages` must be set (`echo 256 > /proc/sys/vm/nr_hugepages`; a run takes ~26 2-MiB
//!   pages with 16384 mbufs) but **no hugetlbfs mount is needed** (EAL prints "256 hugepages of
//!   size 2097152 reserved, but no mounted hugetlbfs found for that size" and goes on to use
//!   them). `--in-memory` also keeps testpmd from writing its shared config and
//!   multi-process socket under `/var/run/dpdk/rte/` (it still creates that directory, empty),
//!   so several instances don't collide. Without 128 MiB of free hugepages,
//!   [`Testpmd::start`] falls back to `--no-huge -m 256 --no-shconf` (4-KiB pages, IOVA as VA;
//!   `--no-huge` implies `--legacy-mem`, which EAL refuses together with `--in-memory`), logging
//!   it and recording it in the report: AF_XDP works that way, but it is not DPDK at its best.
//! - **Pool:** `--total-num-mbufs=16384` (36 MB) instead of testpmd's default 155456 mbufs
//!   (340 MB): the rings (fill 4096, RX/TX/completion 2048) need far fewer, and a smaller UMEM is
//!   kinder to the cache. Burst size is testpmd's default, 32.
//! - **bpffs:** not needed. The PMD loads libxdp's default `xsk_def_prog` (redirects every frame
//!   of its queue to the XSKMAP, passes the rest). libxdp would first try its multi-program
//!   dispatcher, which needs a bpffs at `/sys/fs/bpf` (for pinning and its lock directory); on
//!   this kernel the dispatcher's compatibility check fails anyway (`BPF_PROG_TYPE_EXT` load →
//!   `EPERM`, printed as a misleading "try raising 'ulimit -l'"), and libxdp falls back to
//!   attaching the single program, with no pinning. `LIBXDP_SKIP_DISPATCHER=1` skips the attempt
//!   and its noise. libxdp still creates an empty lock directory `/sys/fs/bpf/xdp` where a bpffs
//!   is mounted (seen after a run; harmless, left in place). Where it matters: `ip netns exec`
//!   remounts `/sys`, so inside it `/sys/fs/bpf` is not a bpffs ("libxdp: No bpffs found at
//!   /sys/fs/bpf") — harmless with the fallback; our test bed's `Netns::spawn` keeps the host's
//!   mounts, so the host's bpffs would be visible anyway.
//! - **Copy mode:** the PMD binds with `XDP_USE_NEED_WAKEUP` only (no `XDP_ZEROCOPY`/`XDP_COPY`;
//!   seen with strace), so the kernel picks zero-copy if the driver has it and copy mode
//!   otherwise; veth has no zero-copy, so this is copy mode — the same as sluice gets on veth.
//!   The XDP program is attached in native (driver) mode (`ip link` shows `xdp`, not
//!   `xdpgeneric`). The PMD's "Zero copy between umem and mbuf enabled" means mbufs live in the
//!   UMEM (no memcpy between the AF_XDP frame and the mbuf), not AF_XDP zero-copy. It also turns
//!   on preferred busy polling with a budget of 64 (`busy_budget`), its default.
//! - **Counters:** every `--stats-period` (on this VM the loop's 1-second sleep makes that every
//!   ~2 s for a period of 1) testpmd prints a "NIC statistics for port 0" block: `RX-packets`,
//!   `RX-missed`, `RX-bytes`, `TX-packets`, `TX-errors`, `TX-bytes`, and `Rx-pps`/`Tx-pps` over
//!   the interval since the last block. Blocks start with an ANSI clear-screen sequence. On
//!   SIGINT it stops forwarding, prints "Forward statistics for port 0" and "Accumulated forward
//!   statistics for all ports" (`RX-packets`/`RX-dropped`/`RX-total`, `TX-packets`/`TX-dropped`/
//!   `TX-total`; TX-dropped = frames the PMD could not send) and exits 0 ("Bye..."), within
//!   about 50 ms. stdout is flushed after each block, so a pipe sees them live.
//! - **Pitfalls:** a veth with more RX queues than the PMD serves: frames landing on the other
//!   queues go to the kernel (the test bed's veth has one queue; a plain `ip link add ... type
//!   veth` got two on this 2-CPU VM, and with `queue_count=1` most of the traffic went missing). A wrong
//!   interface name does *not* make testpmd exit: it prints "Failed to init internals" and "No
//!   probed ethernet devices" and keeps running with no ports; a queue already bound (by sluice
//!   or another testpmd) makes it exit 1 ("Failed to create xsk socket" … "Cause: Start ports
//!   failed"). [`Testpmd::wait_ready`] turns all of these into errors with the output's last
//!   lines. Only one AF_XDP program can own the interface: never run it next to sluice on the
//!   same interface.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_testbed::Netns;

use super::PeerError;

/// The peer's name in reports and errors.
const PEER: &str = "dpdk-testpmd";

/// The program looked for in `PATH`.
const PROGRAM: &str = "dpdk-testpmd";

/// Install hint for Debian/Ubuntu.
const INSTALL: &str = "apt-get install -y dpdk librte-net-af-xdp23";

/// mbufs in testpmd's pool (`--total-num-mbufs`): enough for the AF_XDP rings with room to
/// spare; see the module docs.
const MBUFS: u32 = 16384;

/// Hugepage memory that must be free to run with hugepages rather than `--no-huge`.
const HUGE_NEEDED: u64 = 128 << 20;

/// Memory for `--no-huge -m` (MiB).
const NO_HUGE_MB: u32 = 256;

/// How long [`Testpmd::stop`] waits for testpmd to exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines of output kept for error messages.
const TAIL_LINES: usize = 24;

/// The forwarding mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestpmdMode {
    /// Receive and free every frame: the rxdrop comparison.
    RxOnly,
    /// Swap the Ethernet source and destination and send the frame back out of the same port:
    /// the reflect comparison (IP addresses and ports are left alone).
    MacSwap,
    /// Swap Ethernet, IP addresses and L4 ports (`5tswap`): a UDP reflector that a kernel
    /// socket on the other end can receive the answers of (the rtt comparison).
    FiveTupleSwap,
}

impl TestpmdMode {
    /// The `--forward-mode` value.
    pub fn as_arg(self) -> &'static str {
        match self {
            TestpmdMode::RxOnly => "rxonly",
            TestpmdMode::MacSwap => "macswap",
            TestpmdMode::FiveTupleSwap => "5tswap",
        }
    }
}

/// One periodic statistics block ("NIC statistics for port 0").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestpmdStats {
    /// Frames received since start.
    pub rx_packets: u64,
    /// Frames the port missed (`imissed`).
    pub rx_missed: u64,
    /// Bytes received since start.
    pub rx_bytes: u64,
    /// Frames sent since start.
    pub tx_packets: u64,
    /// TX errors since start.
    pub tx_errors: u64,
    /// Bytes sent since start.
    pub tx_bytes: u64,
    /// Receive rate over the interval since the previous block.
    pub rx_pps: u64,
    /// Send rate over the interval since the previous block.
    pub tx_pps: u64,
}

/// Final counters, printed by testpmd when it stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestpmdReport {
    /// The forwarding mode it ran in.
    pub mode: TestpmdMode,
    /// Frames received by the forwarding loop (final "RX-packets").
    pub rx_packets: u64,
    /// Frames the port dropped on receive (final "RX-dropped", the port's `imissed`).
    pub rx_dropped: u64,
    /// Frames sent (final "TX-packets").
    pub tx_packets: u64,
    /// Frames the forwarding loop could not send (final "TX-dropped").
    pub tx_dropped: u64,
    /// The last periodic block, if one was printed.
    pub last_stats: Option<TestpmdStats>,
    /// From spawn to SIGINT.
    pub elapsed: Duration,
    /// True if it ran on hugepages, false if it fell back to `--no-huge`.
    pub hugepages: bool,
    /// The command line, for the record.
    pub command: String,
    /// How it exited.
    pub exit: String,
}

/// A running `dpdk-testpmd`; stop it with [`Testpmd::stop`] (dropping it kills it).
#[derive(Debug)]
pub struct Testpmd {
    child: Option<Child>,
    pid: u32,
    iface: String,
    mode: TestpmdMode,
    hugepages: bool,
    command: String,
    started: Instant,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
}

impl Testpmd {
    /// Where `dpdk-testpmd` is, or why it can't be used. Never panics.
    ///
    /// Checks that the program is in `PATH` and, for a distribution build that loads its PMDs
    /// as plugins, that the `net_af_xdp` plugin is installed.
    pub fn available() -> Result<PathBuf, String> {
        let Some(path) = find_in_path(PROGRAM) else {
            return Err(format!("{PROGRAM} not installed ({INSTALL})"));
        };
        let pmd_dirs = pmd_dirs();
        if !pmd_dirs.is_empty() && !pmd_dirs.iter().any(|d| has_af_xdp_pmd(d)) {
            let dirs: Vec<String> = pmd_dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(format!(
                "the net_af_xdp PMD is not installed (no librte_net_af_xdp.so in {}; {INSTALL})",
                dirs.join(", ")
            ));
        }
        Ok(path)
    }

    /// Starts testpmd in `ns` on `iface` (queue 0) in `mode`, with EAL lcores `core_list`
    /// (`-l`, e.g. `"0,1"` or `"2-3"`: at least two, the first is the main lcore and the next
    /// one forwards). Returns once the process runs; call [`Testpmd::wait_ready`] before sending.
    pub fn start(
        ns: &Netns,
        iface: &str,
        mode: TestpmdMode,
        core_list: &str,
    ) -> Result<Testpmd, PeerError> {
        let program = Testpmd::available()
            .map_err(|reason| PeerError::NotAvailable { peer: PEER, reason })?;
        let cores = count_cores(core_list).ok_or_else(|| PeerError::InvalidArgument {
            peer: PEER,
            what: format!("core list {core_list:?} is not like \"0,1\" or \"2-3\""),
        })?;
        if cores < 2 {
            return Err(PeerError::InvalidArgument {
                peer: PEER,
                what: format!(
                    "core list {core_list:?} has {cores} core(s); needs 2: the main lcore and a forwarding one"
                ),
            });
        }
        if iface.is_empty() || iface.contains([',', '=', ' ']) {
            return Err(PeerError::InvalidArgument {
                peer: PEER,
                what: format!("interface name {iface:?} can't be passed in a --vdev argument"),
            });
        }
        ns.ifindex(iface).map_err(|source| PeerError::NoInterface {
            peer: PEER,
            iface: iface.to_string(),
            ns: ns.name().to_string(),
            source: Box::new(source),
        })?;

        let hugepages = free_hugepage_bytes() >= HUGE_NEEDED;
        // EAL's main lcore defaults to the *lowest* listed core, whatever the order; name it, so
        // that the first listed core is the main one and the forwarding lcore is the next, as
        // documented (and the forwarding loop lands on the core the caller meant).
        let main_lcore = core_list
            .split([',', '-'])
            .next()
            .unwrap_or("0")
            .trim()
            .to_string();
        let mut args: Vec<String> = vec![
            "-l".into(),
            core_list.into(),
            "--main-lcore".into(),
            main_lcore,
            "--no-pci".into(),
            "--no-telemetry".into(),
        ];
        if hugepages {
            args.push("--in-memory".into());
        } else {
            log::warn!(
                "{PEER}: fewer than {} MiB of free hugepages; running with --no-huge -m {NO_HUGE_MB} \
                 (set /proc/sys/vm/nr_hugepages, e.g. 256, for DPDK at its best)",
                HUGE_NEEDED >> 20
            );
            // --no-huge implies --legacy-mem, which EAL refuses with --in-memory; --no-shconf
            // likewise keeps it from writing shared config files.
            args.extend([
                "--no-huge".into(),
                "-m".into(),
                NO_HUGE_MB.to_string(),
                "--no-shconf".into(),
            ]);
        }
        args.extend([
            "--vdev".into(),
            format!("net_af_xdp0,iface={iface},start_queue=0,queue_count=1"),
            "--".into(),
            format!("--forward-mode={}", mode.as_arg()),
            "--auto-start".into(),
            "--stats-period".into(),
            "1".into(),
            "--nb-cores=1".into(),
            format!("--total-num-mbufs={MBUFS}"),
        ]);
        let command = format!(
            "LIBXDP_SKIP_DISPATCHER=1 {} {}",
            program.display(),
            args.join(" ")
        );

        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env("LIBXDP_SKIP_DISPATCHER", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ns.spawn(&mut cmd).map_err(|source| PeerError::Spawn {
            peer: PEER,
            program: program.display().to_string(),
            ns: ns.name().to_string(),
            source: Box::new(source),
        })?;
        log::info!("{PEER} started in {}: {command}", ns.name());
        let pid = child.id();
        let shared = Arc::new(Shared::default());
        let mut readers = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_reader(out, Arc::clone(&shared)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_reader(err, Arc::clone(&shared)));
        }
        Ok(Testpmd {
            child: Some(child),
            pid,
            iface: iface.to_string(),
            mode,
            hugepages,
            command,
            started: Instant::now(),
            shared,
            readers,
        })
    }

    /// Waits until testpmd forwards (its first statistics block, printed right after the port
    /// started), at most `timeout`. On failure — an error printed, an early exit, or the
    /// timeout — testpmd is killed and the error carries its last lines of output.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), PeerError> {
        let end = Instant::now() + timeout;
        loop {
            {
                let st = self.shared.lock();
                if let Some(e) = &st.error {
                    let detail = format!("{e}\n{}", st.tail());
                    drop(st);
                    self.kill();
                    return Err(self.start_failed(detail));
                }
                if st.ready {
                    return Ok(());
                }
            }
            if let Some(status) = self.try_wait()? {
                // Let the readers take in the last lines.
                self.join_readers();
                let detail = format!("exited ({status})\n{}", self.shared.lock().tail());
                return Err(self.start_failed(detail));
            }
            let now = Instant::now();
            if now >= end {
                let detail = self.shared.lock().tail();
                self.kill();
                return Err(PeerError::NotReady {
                    peer: PEER,
                    iface: self.iface.clone(),
                    timeout,
                    detail,
                });
            }
            let st = self.shared.lock();
            if !st.ready && st.error.is_none() {
                // Short waits: a process exit doesn't notify the condvar.
                let _ = self
                    .shared
                    .changed
                    .wait_timeout(st, (end - now).min(Duration::from_millis(50)));
            }
        }
    }

    /// The latest periodic statistics block, if one was printed yet.
    pub fn stats(&self) -> Option<TestpmdStats> {
        self.shared.lock().latest
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// True if it runs on hugepages (false: `--no-huge` fallback).
    pub fn hugepages(&self) -> bool {
        self.hugepages
    }

    /// Stops it with SIGINT, waits up to 10 s for it to exit (then kills it and fails), and
    /// returns its final counters.
    pub fn stop(mut self) -> Result<TestpmdReport, PeerError> {
        let elapsed = self.started.elapsed();
        let pid = self.pid;
        let Some(mut child) = self.child.take() else {
            return Err(PeerError::NoFinalCounters {
                peer: PEER,
                iface: self.iface.clone(),
                status: "already reaped".into(),
                detail: self.shared.lock().tail(),
            });
        };
        let status = match child.try_wait() {
            Ok(Some(status)) => status,
            _ => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGINT,
                )
                .map_err(|e| PeerError::Process {
                    peer: PEER,
                    pid,
                    what: "sending SIGINT",
                    source: e.into(),
                })?;
                wait_bounded(&mut child, pid, STOP_TIMEOUT)?
            }
        };
        self.join_readers();
        let st = self.shared.lock();
        let Some(fin) = st.final_counters() else {
            return Err(PeerError::NoFinalCounters {
                peer: PEER,
                iface: self.iface.clone(),
                status: status.to_string(),
                detail: st.tail(),
            });
        };
        Ok(TestpmdReport {
            mode: self.mode,
            rx_packets: fin.rx_packets,
            rx_dropped: fin.rx_dropped,
            tx_packets: fin.tx_packets,
            tx_dropped: fin.tx_dropped,
            last_stats: st.latest,
            elapsed,
            hugepages: self.hugepages,
            command: self.command.clone(),
            exit: status.to_string(),
        })
    }

    fn start_failed(&self, detail: String) -> PeerError {
        PeerError::StartFailed {
            peer: PEER,
            iface: self.iface.clone(),
            detail,
        }
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, PeerError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        child.try_wait().map_err(|source| PeerError::Process {
            peer: PEER,
            pid: self.pid,
            what: "checking whether it exited",
            source,
        })
    }

    /// SIGKILL and reap; best effort (used on failure paths and in drop).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        // A testpmd left running would hold its namespace (and the veth's XDP program).
        self.kill();
    }
}

/// Waits for `child` to exit, at most `timeout`; kills it (and fails) after that.
fn wait_bounded(child: &mut Child, pid: u32, timeout: Duration) -> Result<ExitStatus, PeerError> {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PeerError::StopTimeout {
                    peer: PEER,
                    pid,
                    timeout,
                });
            }
            Err(source) => {
                return Err(PeerError::Process {
                    peer: PEER,
                    pid,
                    what: "waiting for it to exit",
                    source,
                });
            }
        }
    }
}

/// Output state shared with the reader threads.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Shared")
            .field("ready", &st.ready)
            .field("latest", &st.latest)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A reader can't panic while holding the lock in a way that breaks the state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which block of testpmd's output the parser is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Section {
    #[default]
    None,
    /// "NIC statistics for port N" (periodic).
    Nic,
    /// "Forward statistics for port N" (final, per port).
    Forward,
    /// "Accumulated forward statistics for all ports" (final).
    Accumulated,
}

/// Final forward counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FinalCounters {
    rx_packets: u64,
    rx_dropped: u64,
    tx_packets: u64,
    tx_dropped: u64,
}

/// What the output said so far.
#[derive(Default)]
struct State {
    section: Section,
    block: TestpmdStats,
    latest: Option<TestpmdStats>,
    ready: bool,
    error: Option<String>,
    port_final: Option<FinalCounters>,
    accumulated: Option<FinalCounters>,
    tail: VecDeque<String>,
}

impl State {
    fn tail(&self) -> String {
        let lines: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        lines.join("\n")
    }

    fn final_counters(&self) -> Option<FinalCounters> {
        self.accumulated.or(self.port_final)
    }

    /// Takes in one line of stdout or stderr.
    fn line(&mut self, raw: &str) {
        let line = strip_ansi(raw).trim();
        if line.is_empty() || line.starts_with("libbpf: elf: skipping") {
            return;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());

        if !self.ready && self.error.is_none() && is_start_error(line) {
            self.error = Some(line.to_string());
        }
        if line.contains("NIC statistics for port") {
            self.section = Section::Nic;
            self.block = TestpmdStats::default();
            return;
        }
        if line.contains("Accumulated forward statistics") {
            self.section = Section::Accumulated;
            return;
        }
        if line.contains("Forward statistics for port") {
            self.section = Section::Forward;
            return;
        }
        let fields = fields(line);
        match self.section {
            Section::None => {}
            Section::Nic => {
                for (k, v) in fields {
                    let b = &mut self.block;
                    match k {
                        "RX-packets" => b.rx_packets = v,
                        "RX-missed" => b.rx_missed = v,
                        "RX-bytes" => b.rx_bytes = v,
                        "TX-packets" => b.tx_packets = v,
                        "TX-errors" => b.tx_errors = v,
                        "TX-bytes" => b.tx_bytes = v,
                        "Rx-pps" => b.rx_pps = v,
                        "Tx-pps" => {
                            // The last line of the block.
                            b.tx_pps = v;
                            self.latest = Some(*b);
                            self.ready = true;
                            self.section = Section::None;
                        }
                        _ => {}
                    }
                }
            }
            Section::Forward | Section::Accumulated => {
                if line.starts_with("---") || line.starts_with("+++") {
                    self.section = Section::None;
                    return;
                }
                let slot = if self.section == Section::Forward {
                    &mut self.port_final
                } else {
                    &mut self.accumulated
                };
                let c = slot.get_or_insert_with(FinalCounters::default);
                for (k, v) in fields {
                    match k {
                        "RX-packets" => c.rx_packets = v,
                        "RX-dropped" => c.rx_dropped = v,
                        "TX-packets" => c.tx_packets = v,
                        "TX-dropped" => c.tx_dropped = v,
                        _ => {}
                    }
                }
            }
        }
    }
}

/// `line` without leading ANSI control sequences: periodic blocks start with `ESC[2J ESC[1;1H`
/// (clear screen, cursor home).
fn strip_ansi(mut line: &str) -> &str {
    while let Some(rest) = line.strip_prefix("\x1b[") {
        // A CSI sequence ends at its first letter.
        match rest.find(|c: char| c.is_ascii_alphabetic()) {
            Some(end) => line = &rest[end + 1..],
            None => return "",
        }
    }
    line
}

/// Lines that mean testpmd will not forward (before it started).
fn is_start_error(line: &str) -> bool {
    const MARKERS: &[&str] = &[
        "No probed ethernet devices",
        "Failed to init internals",
        "Failed to create xsk socket",
        "Failed to configure xdp socket",
        "Fail to configure port",
        "Fail to start port",
        "EAL: Error",
        "EAL: FATAL",
        "Cause:",
    ];
    MARKERS.iter().any(|m| line.contains(m))
}

/// `Key: value` pairs of a statistics line ("RX-packets: 3   RX-missed: 0   RX-bytes:  250").
fn fields(line: &str) -> Vec<(&str, u64)> {
    let mut out = Vec::new();
    let mut it = line.split_whitespace().peekable();
    while let Some(tok) = it.next() {
        if let Some(key) = tok.strip_suffix(':')
            && let Some(v) = it.peek().and_then(|v| v.parse::<u64>().ok())
        {
            out.push((key, v));
            it.next();
        }
    }
    out
}

fn spawn_reader(stream: impl Read + Send + 'static, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    shared.lock().line(line.trim_end());
                    shared.changed.notify_all();
                }
            }
        }
    })
}

/// Number of CPUs in an EAL core list ("0,1", "2-3", "0,2-4"), or None if it doesn't parse.
fn count_cores(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                n += b - a + 1;
            }
            None => {
                part.parse::<usize>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// DPDK plugin directories of a distribution build (`/usr/lib/<triple>/dpdk/pmds-<abi>`).
fn pmd_dirs() -> Vec<PathBuf> {
    let mut libdirs = Vec::new();
    for base in [
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
        "/usr/local/lib64",
    ] {
        let base = PathBuf::from(base);
        libdirs.push(base.clone());
        if let Ok(rd) = std::fs::read_dir(&base) {
            libdirs.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("dpdk").is_dir()),
            );
        }
    }
    let mut out = Vec::new();
    for lib in libdirs {
        if let Ok(rd) = std::fs::read_dir(lib.join("dpdk")) {
            out.extend(rd.flatten().map(|e| e.path()).filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("pmds-"))
            }));
        }
    }
    out
}

fn has_af_xdp_pmd(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("librte_net_af_xdp.so")
        })
    })
}

/// Free memory in default-size hugepages, from /proc/meminfo (0 if unreadable).
fn free_hugepage_bytes() -> u64 {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    let mut free = 0u64;
    let mut size_kb = 0u64;
    for line in meminfo.lines() {
        let mut it = line.split_whitespace();
        match (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("HugePages_Free:"), Some(v)) => free = v,
            (Some("Hugepagesize:"), Some(v)) => size_kb = v,
            _ => {}
        }
    }
    free * size_kb * 1024
}

#[cfg(test)]
mod test {
    use std::net::{SocketAddr, UdpSocket};

    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use sluice_testbed::{PacketSocket, TestBed, require_root};

    use super::*;

    /// Output captured from a real run (DPDK 22.11, veth), trimmed.
    const OUTPUT: &str = "\
Set macswap packet forwarding mode
Port 0: FA:46:FF:C9:A4:7F
\x1b[2J\x1b[1;1H
Port statistics ====================================
  ######################## NIC statistics for port 0  ########################
  RX-packets: 1000       RX-missed: 3          RX-bytes:  60000
  RX-errors: 0
  RX-nombuf:  0         
  TX-packets: 999        TX-errors: 1          TX-bytes:  59940

  Throughput (since last show)
  Rx-pps:          500          Rx-bps:       240000
  Tx-pps:          499          Tx-bps:       239520
  ############################################################################
Telling cores to stop...
Waiting for lcores to finish...

  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 1000           RX-dropped: 3             RX-total: 1003
  TX-packets: 999            TX-dropped: 1             TX-total: 1000
  ----------------------------------------------------------------------------

  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
  RX-packets: 1001           RX-dropped: 3             RX-total: 1004
  TX-packets: 999            TX-dropped: 1             TX-total: 1000
  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++

Bye...
";

    #[test]
    fn parses_periodic_and_final_counters() {
        let mut st = State::default();
        for l in OUTPUT.lines() {
            st.line(l);
        }
        assert!(st.ready);
        assert!(st.error.is_none());
        assert_eq!(
            st.latest,
            Some(TestpmdStats {
                rx_packets: 1000,
                rx_missed: 3,
                rx_bytes: 60000,
                tx_packets: 999,
                tx_errors: 1,
                tx_bytes: 59940,
                rx_pps: 500,
                tx_pps: 499,
            })
        );
        assert_eq!(
            st.port_final,
            Some(FinalCounters {
                rx_packets: 1000,
                rx_dropped: 3,
                tx_packets: 999,
                tx_dropped: 1
            })
        );
        // The accumulated block wins (it differs here only to tell them apart).
        assert_eq!(st.final_counters().unwrap().rx_packets, 1001);
    }

    #[test]
    fn start_errors_are_noticed() {
        let mut st = State::default();
        st.line("init_internals(): Failed to get channel info of interface: nope0");
        st.line("rte_pmd_af_xdp_probe(): Failed to init internals");
        st.line("testpmd: No probed ethernet devices");
        assert_eq!(
            st.error.as_deref(),
            Some("rte_pmd_af_xdp_probe(): Failed to init internals")
        );
        assert!(st.tail().contains("No probed ethernet devices"));
    }

    #[test]
    fn strips_clear_screen() {
        assert_eq!(
            strip_ansi("\x1b[2J\x1b[1;1HPort statistics"),
            "Port statistics"
        );
        assert_eq!(strip_ansi("  RX-packets: 1"), "  RX-packets: 1");
        assert_eq!(strip_ansi("\x1b[2"), "");
    }

    #[test]
    fn core_lists() {
        assert_eq!(count_cores("0,1"), Some(2));
        assert_eq!(count_cores("2-3"), Some(2));
        assert_eq!(count_cores("0,2-4"), Some(4));
        assert_eq!(count_cores("1"), Some(1));
        assert_eq!(count_cores("a"), None);
        assert_eq!(count_cores("3-1"), None);
    }

    #[test]
    fn available_never_panics() {
        match Testpmd::available() {
            Ok(p) => assert!(p.ends_with(PROGRAM)),
            Err(reason) => assert!(!reason.is_empty()),
        }
    }

    /// Skips (with a printed reason) when testpmd isn't installed: a peer check, not CI.
    fn testpmd_or_skip(name: &str) -> bool {
        if !require_root(name) {
            return false;
        }
        if let Err(reason) = Testpmd::available() {
            eprintln!("skipping {name}: {reason}");
            return false;
        }
        true
    }

    const PORT: u16 = 9999;

    /// The testpmd tests run one at a time: two forwarding loops spinning on the same lcore
    /// would only slow each other down (and share the hugepages).
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A UDP socket in the peer namespace.
    fn peer_socket(bed: &TestBed) -> UdpSocket {
        bed.peer()
            .ns()
            .run(|| UdpSocket::bind((bed.peer().ipv4(), 0)))
            .unwrap()
            .unwrap()
    }

    /// Sends datagrams `seqs` (18-byte payloads: a 60-byte frame) to the engine's port `PORT`.
    fn send_udp(bed: &TestBed, sock: &UdpSocket, seqs: std::ops::Range<u64>) {
        let to = SocketAddr::from((bed.engine().ipv4(), PORT));
        for seq in seqs {
            sock.send_to(&crate::echo::payload(seq, 18), to).unwrap();
            // Stay well inside the AF_XDP rings (2048) even if testpmd's core is busy.
            if seq % 256 == 255 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn testpmd_rxonly_counts_what_arrives() {
        if !testpmd_or_skip("testpmd_rxonly_counts_what_arrives") {
            return;
        }
        const N: u64 = 2000;
        let _serial = serial();
        let bed = TestBed::pair(Default::default()).unwrap();
        let mut tp = Testpmd::start(
            bed.engine().ns(),
            bed.engine().iface(),
            TestpmdMode::RxOnly,
            "0,1",
        )
        .unwrap();
        tp.wait_ready(Duration::from_secs(30)).unwrap();
        eprintln!("{}", tp.command());
        send_udp(&bed, &peer_socket(&bed), 0..N);
        std::thread::sleep(Duration::from_millis(300));
        let r = tp.stop().unwrap();
        eprintln!("{r:?}");
        // The kernel may add a few IPv6 ND/MLD frames of its own.
        assert!(
            (N..=N + 20).contains(&r.rx_packets),
            "testpmd counted {} frames, sent {N}: {r:?}",
            r.rx_packets
        );
        assert_eq!(r.tx_packets, 0, "{r:?}");
        assert!(r.last_stats.is_some(), "{r:?}");
    }

    #[test]
    fn testpmd_macswap_reflects_with_macs_swapped() {
        if !testpmd_or_skip("testpmd_macswap_reflects_with_macs_swapped") {
            return;
        }
        const N: u64 = 500;
        /// Sent, then collected, per round: the packet socket sees our own outgoing frames too,
        /// and its default receive buffer holds only a few hundred small frames.
        const CHUNK: u64 = 50;
        let _serial = serial();
        let bed = TestBed::pair(Default::default()).unwrap();
        let cap = PacketSocket::open(bed.peer().ns(), bed.peer().iface()).unwrap();
        let mut tp = Testpmd::start(
            bed.engine().ns(),
            bed.engine().iface(),
            TestpmdMode::MacSwap,
            "0,1",
        )
        .unwrap();
        tp.wait_ready(Duration::from_secs(30)).unwrap();
        let sock = peer_socket(&bed);
        let (peer_mac, engine_mac) = (bed.peer().mac().0, bed.engine().mac().0);
        let mut frames = Vec::new();
        for start in (0..N).step_by(CHUNK as usize) {
            send_udp(&bed, &sock, start..start + CHUNK);
            let got = cap
                .collect_incoming(Duration::from_secs(5), CHUNK as usize, |f| {
                    matches!(
                        SlicedPacket::from_ethernet(f),
                        Ok(SlicedPacket { transport: Some(TransportSlice::Udp(u)), .. })
                            if u.destination_port() == PORT
                    )
                })
                .unwrap();
            let short = got.len() as u64 != CHUNK;
            frames.extend(got);
            if short {
                break;
            }
        }
        let r = tp.stop().unwrap();
        eprintln!("{r:?}");
        assert_eq!(frames.len() as u64, N, "reflected frames: {r:?}");
        for (seq, f) in frames.iter().enumerate() {
            assert_eq!(&f[0..6], &peer_mac, "frame {seq}: destination MAC");
            assert_eq!(&f[6..12], &engine_mac, "frame {seq}: source MAC");
            let p = SlicedPacket::from_ethernet(f).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("frame {seq}: not IPv4");
            };
            // macswap leaves IP and UDP alone: it is the peer's datagram, MACs swapped.
            assert_eq!(ip.header().source_addr(), bed.peer().ipv4());
            assert_eq!(ip.header().destination_addr(), bed.engine().ipv4());
            let Some(TransportSlice::Udp(u)) = &p.transport else {
                unreachable!()
            };
            assert_eq!(u.payload(), &crate::echo::payload(seq as u64, 18)[..]);
        }
        assert!(r.rx_packets >= N && r.tx_packets >= N, "{r:?}");
    }

    #[test]
    fn testpmd_on_a_missing_interface_fails_with_the_reason() {
        if !testpmd_or_skip("testpmd_on_a_missing_interface_fails_with_the_reason") {
            return;
        }
        let _serial = serial();
        let ns = Netns::new("tpm").unwrap();
        let e = Testpmd::start(&ns, "nope0", TestpmdMode::RxOnly, "0,1").unwrap_err();
        assert!(matches!(e, PeerError::NoInterface { .. }), "{e}");
    }
}
