//! Backend health checking for the `lb` app (issue 9): probing a set of addresses on a control
//! thread of its own and reporting each change of a target's health.
//!
//! [`HealthChecker`] owns one thread, `sluice-health`, and the probe sockets it opens; nothing
//! else. It knows nothing of VIPs, Maglev tables or workers: a [`Target`] is an opaque `key`, an
//! address and a [`Probe`], and the checker's only outputs are the `on_change(key, health)`
//! callback and [`HealthChecker::status`]. What a transition means for traffic is the caller's
//! business. It never touches a worker, never changes kernel state, and never probes an address
//! it was not given.
//!
//! # Rounds
//!
//! Once per `interval` the thread starts a *round*: it opens one non-blocking socket per target,
//! all at once, and waits for all of them in a single `poll(2)` loop until each has an answer or
//! `timeout` has passed since the round began; then every socket is closed and the results are
//! applied. So at most one socket per target is ever open, and since the configuration keeps
//! `timeout` below `interval` ([`crate::apps::lb::config::HealthConfig`]) one round's sockets
//! are closed before the next round opens any. Starting every probe at once (rather than
//! spreading them over the interval) costs a burst of one SYN or datagram per backend per
//! interval, which for a load balancer's tens to hundreds of backends is nothing, and it keeps a
//! round a single, bounded thing: one deadline, one socket set. A round that overruns (a slow
//! machine) delays the next; rounds are never stacked up to catch up. The one exception to the
//! cadence: giving targets to a checker that had none starts a round at once, so probing
//! begins as soon as the caller has said what to probe.
//!
//! # Probes
//!
//! - [`Probe::Tcp`]: a non-blocking `connect`. It passes when the handshake completes (`SO_ERROR`
//!   is 0) within `timeout`; the socket is closed at once, no data sent. It fails on a reset
//!   (closed port), an ICMP unreachable, or silence until `timeout`. The close is a plain one:
//!   the FIN leaves the checker a `TIME_WAIT` socket per probe for a minute (about 60 per
//!   backend at the default interval, nothing to the kernel) and spares the backend's logs a
//!   reset per probe.
//! - [`Probe::Udp`]: a connected UDP socket with `IP_RECVERR`/`IPV6_RECVERR` set (without it
//!   Linux drops an ICMP host or network unreachable on a UDP socket) sends one datagram,
//!   `sluice-health\n`. It fails if an ICMP error comes back within `timeout` (port unreachable
//!   is `ECONNREFUSED` on the socket) or if there is no route, and passes on a reply **or on
//!   silence**. UDP probing can therefore only tell a closed port or an unreachable host
//!   (one a router or the local routing table says is unreachable); it cannot tell a service
//!   that is listening but hung, a firewall that drops silently, or a host on the local segment
//!   that is down (address resolution gives up after seconds, longer than any timeout here).
//!
//! A target goes [`Health::Down`] after `fall` failed probes in a row and [`Health::Up`] after
//! `rise` passed probes in a row. A new target starts up (traffic flows at once, as in
//! haproxy) and is probed in the next round.
//!
//! # Failure reasons
//!
//! [`TargetStatus::last_failure`] and the log lines say why a probe failed, in words:
//! `connection refused` (TCP: RST to the SYN), `port unreachable` (UDP: ICMP port unreachable),
//! `host unreachable`, `network unreachable`, `connection reset`, `timed out after 500 ms`
//! (TCP only: no answer within `timeout`), or the system's text for a rarer error. A probe the
//! checker could not even start (no socket: out of file descriptors or memory) is not held
//! against the target: it counts neither way, and the round logs one warning.

use crate::apps::lb::config::HealthConfig;
use nix::sys::socket::{setsockopt, sockopt};
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What a UDP probe sends: small, and recognisable in a backend's packet capture.
const UDP_PAYLOAD: &[u8] = b"sluice-health\n";

/// How often and how patiently targets are probed, and how many results in a row change a
/// target's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthParams {
    /// Time between the starts of two rounds; not zero.
    pub interval: Duration,
    /// How long a probe may take; not zero, and below `interval` for rounds not to run back to
    /// back.
    pub timeout: Duration,
    /// Passed probes in a row that bring a down target up; at least 1.
    pub rise: u32,
    /// Failed probes in a row that take an up target down; at least 1.
    pub fall: u32,
}

impl From<HealthConfig> for HealthParams {
    fn from(c: HealthConfig) -> Self {
        Self {
            interval: Duration::from_millis(c.interval_ms.into()),
            timeout: Duration::from_millis(c.timeout_ms.into()),
            rise: c.rise,
            fall: c.fall,
        }
    }
}

/// How a target is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// A TCP connection must be accepted.
    Tcp,
    /// A datagram must not draw an ICMP error.
    Udp,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Probe::Tcp => "tcp",
            Probe::Udp => "udp",
        })
    }
}

/// Something to probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The caller's name for the target, opaque to the checker and unique in a target set:
    /// it is what [`HealthChecker::set_targets`] keeps state by and what `on_change` reports.
    pub key: u64,
    /// Where to probe.
    pub addr: SocketAddr,
    /// How.
    pub probe: Probe,
}

/// A target's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// Passing (or not yet failed `fall` times in a row).
    Up,
    /// Failed `fall` times in a row and not yet passed `rise` times in a row since.
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

/// One target as the checker sees it now: what [`HealthChecker::status`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetStatus {
    /// The target's key.
    pub key: u64,
    /// Where it is probed.
    pub addr: SocketAddr,
    /// How.
    pub probe: Probe,
    /// Its health.
    pub health: Health,
    /// Probes passed in a row (0 after a failure).
    pub passes: u32,
    /// Probes failed in a row (0 after a pass).
    pub failures: u32,
    /// Why the last failed probe failed (see the module docs); `None` if none has.
    pub last_failure: Option<String>,
}

/// The running prober: one thread probing the current target set every interval. Dropping it
/// stops the thread, like [`HealthChecker::stop`].
pub struct HealthChecker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the handle and the thread share.
struct Shared {
    table: Mutex<Table>,
    /// Set (before a write to `wake`) to stop the thread.
    stop: AtomicBool,
    /// An eventfd the thread polls alongside its probes and between rounds: written to stop it,
    /// or to start a round at once when a target set that was empty gets targets.
    wake: OwnedFd,
}

impl Shared {
    fn wake(&self) {
        // An eventfd write fails only if the counter would overflow, which takes 2^64 writes
        // between two of the thread's reads.
        if let Err(e) = rustix::io::write(&self.wake, &1u64.to_ne_bytes()) {
            log::error!("health: waking the checker thread: {e}");
        }
    }
}

impl HealthChecker {
    /// Start the `sluice-health` thread with no targets (give them with
    /// [`HealthChecker::set_targets`]). `on_change(key, health)` is called from that thread,
    /// exactly once per transition and with no lock of the checker's held, so it may call
    /// [`HealthChecker::status`] or [`HealthChecker::set_targets`] through a handle of its own
    /// (but not stop the checker: that would wait for itself). Keep it short: the next round
    /// waits for it.
    ///
    /// Fails with `InvalidInput` if `interval` or `timeout` is zero or `rise` or `fall` is 0,
    /// or with the system's error if the thread or its wake-up eventfd cannot be created.
    pub fn spawn(
        params: HealthParams,
        on_change: impl Fn(u64, Health) + Send + 'static,
    ) -> io::Result<HealthChecker> {
        if params.interval.is_zero()
            || params.timeout.is_zero()
            || params.rise == 0
            || params.fall == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "health checking needs a non-zero interval, timeout, rise and fall, got {params:?}"
                ),
            ));
        }
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            stop: AtomicBool::new(false),
            wake: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        });
        let prober = Prober {
            params,
            shared: Arc::clone(&shared),
        };
        let thread = thread::Builder::new()
            .name("sluice-health".into())
            .spawn(move || prober.run(on_change))?;
        Ok(HealthChecker {
            shared,
            thread: Some(thread),
        })
    }

    /// Replace the target set, in the order [`HealthChecker::status`] will list it. A target
    /// whose key was already there keeps its health and counters (even if its address or probe
    /// changed: the key is the identity); a new one starts [`Health::Up`] with no
    /// `on_change`, and is probed in the next round. A removed one is forgotten, also without
    /// `on_change`, and a probe of it in flight is discarded. Of two targets with the same key,
    /// the later one is kept.
    ///
    /// Rounds keep their cadence, except that giving targets to a checker that had none (as
    /// right after [`HealthChecker::spawn`]) starts a round at once rather than up to an
    /// interval later; no target is probed more often than once per interval either way.
    pub fn set_targets(&self, targets: Vec<Target>) {
        let kick = {
            let mut table = lock(&self.shared.table);
            let was_empty = table.entries.is_empty();
            table.replace(targets);
            was_empty && !table.entries.is_empty()
        };
        if kick {
            self.shared.wake();
        }
    }

    /// Every target's current state, in the order given to [`HealthChecker::set_targets`].
    pub fn status(&self) -> Vec<TargetStatus> {
        lock(&self.shared.table)
            .entries
            .iter()
            .map(|e| TargetStatus {
                key: e.target.key,
                addr: e.target.addr,
                probe: e.target.probe,
                health: e.health,
                passes: e.passes,
                failures: e.failures,
                last_failure: e.last_failure.clone(),
            })
            .collect()
    }

    /// Stop the thread and wait for it. It returns at once, even mid-round (its probe sockets
    /// are closed without a verdict), unless an `on_change` call is running.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
        if thread.join().is_err() {
            log::error!("health: the checker thread panicked");
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// The target set and each target's state, shared by the handle and the thread.
#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    /// Key → index into `entries`.
    index: HashMap<u64, usize>,
    /// The next entry's serial number.
    next_serial: u64,
}

struct Entry {
    target: Target,
    /// Unique per entry ever created: a probe's result is applied only to the entry it was
    /// started for, not to one removed and re-added under the same key meanwhile.
    serial: u64,
    health: Health,
    passes: u32,
    failures: u32,
    last_failure: Option<String>,
}

impl Table {
    fn replace(&mut self, targets: Vec<Target>) {
        let mut old: HashMap<u64, Entry> =
            self.entries.drain(..).map(|e| (e.target.key, e)).collect();
        self.index.clear();
        for target in targets {
            let entry = match old.remove(&target.key) {
                Some(e) => Entry { target, ..e },
                None => {
                    self.next_serial += 1;
                    Entry {
                        target,
                        serial: self.next_serial,
                        health: Health::Up,
                        passes: 0,
                        failures: 0,
                        last_failure: None,
                    }
                }
            };
            match self.index.get(&target.key) {
                Some(&i) => self.entries[i] = entry,
                None => {
                    self.index.insert(target.key, self.entries.len());
                    self.entries.push(entry);
                }
            }
        }
    }

    fn get_mut(&mut self, key: u64, serial: u64) -> Option<&mut Entry> {
        let &i = self.index.get(&key)?;
        let entry = &mut self.entries[i];
        (entry.serial == serial).then_some(entry)
    }
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Pass,
    /// Failed, and why (see the module docs).
    Fail(String),
    /// Not probed: the checker could not start it (a local shortage, not the target's fault).
    Skipped(String),
}

impl Entry {
    /// Count `outcome`; the new health if it changed.
    fn record(&mut self, outcome: Outcome, params: &HealthParams) -> Option<Health> {
        match outcome {
            Outcome::Pass => {
                self.passes = self.passes.saturating_add(1);
                self.failures = 0;
                if self.health == Health::Down && self.passes >= params.rise {
                    self.health = Health::Up;
                    return Some(Health::Up);
                }
            }
            Outcome::Fail(reason) => {
                self.failures = self.failures.saturating_add(1);
                self.passes = 0;
                self.last_failure = Some(reason);
                if self.health == Health::Up && self.failures >= params.fall {
                    self.health = Health::Down;
                    return Some(Health::Down);
                }
            }
            Outcome::Skipped(_) => {}
        }
        None
    }
}

/// A target of the current round, copied out of the table so that no lock is held while
/// probing.
struct Planned {
    target: Target,
    serial: u64,
}

/// The thread's side.
struct Prober {
    params: HealthParams,
    shared: Arc<Shared>,
}

/// Why [`Prober::wait`] returned.
#[derive(PartialEq, Eq)]
enum Woken {
    /// The time came.
    Deadline,
    /// Targets were given to an empty checker: start a round now.
    Kick,
    /// [`HealthChecker::stop`].
    Stop,
}

impl Prober {
    fn run(self, on_change: impl Fn(u64, Health)) {
        let mut next = Instant::now();
        loop {
            if self.wait(next) == Woken::Stop {
                return;
            }
            let started = Instant::now();
            let planned: Vec<Planned> = lock(&self.shared.table)
                .entries
                .iter()
                .map(|e| Planned {
                    target: e.target,
                    serial: e.serial,
                })
                .collect();
            let Some(outcomes) = self.round(&planned, started) else {
                return;
            };
            for (key, health) in self.apply(&planned, outcomes) {
                on_change(key, health);
            }
            // The next round starts an interval after this one did; after an overrun, at once.
            next = (started + self.params.interval).max(Instant::now());
        }
    }

    /// Sleep until `deadline`, a kick or a stop, whichever comes first.
    fn wait(&self, deadline: Instant) -> Woken {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Woken::Deadline;
            }
            let mut fds = [PollFd::new(&self.shared.wake, PollFlags::IN)];
            match poll(&mut fds, Some(&timespec(left))) {
                Ok(0) | Err(Errno::INTR) => {}
                Ok(_) => return self.woken(),
                Err(e) => {
                    // poll on one eventfd fails only for lack of memory; stop rather than spin.
                    log::error!("health: poll: {e}; the checker stops");
                    return Woken::Stop;
                }
            }
        }
    }

    /// The wake-up eventfd is readable: reset it and say why.
    fn woken(&self) -> Woken {
        let mut counter = [0u8; 8];
        // Fails only with EAGAIN, when another read got there first; either way it is reset.
        let _ = rustix::io::read(&self.shared.wake, &mut counter);
        if self.shared.stop.load(Ordering::Acquire) {
            Woken::Stop
        } else {
            Woken::Kick
        }
    }

    /// Probe every target of `planned` at once; each one's outcome, in order, or `None` if told
    /// to stop.
    fn round(&self, planned: &[Planned], started: Instant) -> Option<Vec<Outcome>> {
        let timeout = self.params.timeout;
        let deadline = started + timeout;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; planned.len()];
        // (index into `planned`, socket) of every probe still waiting for an answer.
        let mut pending: Vec<(usize, OwnedFd)> = Vec::with_capacity(planned.len());
        for (i, p) in planned.iter().enumerate() {
            match start(&p.target) {
                Started::Waiting(fd) => pending.push((i, fd)),
                Started::Done(outcome) => outcomes[i] = Some(outcome),
            }
        }
        let mut revents: Vec<PollFlags> = Vec::with_capacity(pending.len());
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            revents.clear();
            {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(pending.len() + 1);
                fds.push(PollFd::new(&self.shared.wake, PollFlags::IN));
                for (i, fd) in &pending {
                    fds.push(PollFd::new(fd, interest(planned[*i].target.probe)));
                }
                match poll(&mut fds, Some(&timespec(left))) {
                    Ok(0) | Err(Errno::INTR) => continue,
                    Ok(_) => {}
                    Err(e) => {
                        // Out of memory for the poll set: no verdict on what is still pending,
                        // which is the checker's failure, not the targets'.
                        for (i, _fd) in pending.drain(..) {
                            outcomes[i] = Some(Outcome::Skipped(format!("poll: {e}")));
                        }
                        break;
                    }
                }
                // A kick mid-round is dropped: the new targets wait for the next round.
                if !fds[0].revents().is_empty() && self.woken() == Woken::Stop {
                    return None;
                }
                revents.extend(fds[1..].iter().map(PollFd::revents));
            }
            // Backwards, so that swap_remove leaves the indices still to visit in place.
            for j in (0..pending.len()).rev() {
                if revents[j].is_empty() {
                    continue;
                }
                let (i, fd) = &pending[j];
                if let Some(outcome) = check(planned[*i].target.probe, fd, revents[j]) {
                    outcomes[*i] = Some(outcome);
                    pending.swap_remove(j);
                }
            }
        }
        for (i, _fd) in pending {
            outcomes[i] = Some(match planned[i].target.probe {
                Probe::Tcp => Outcome::Fail(format!("timed out after {} ms", timeout.as_millis())),
                // Silence: nothing said the port is closed.
                Probe::Udp => Outcome::Pass,
            });
        }
        let skipped: Vec<(SocketAddr, &str)> = planned
            .iter()
            .zip(&outcomes)
            .filter_map(|(p, o)| match o {
                Some(Outcome::Skipped(why)) => Some((p.target.addr, why.as_str())),
                _ => None,
            })
            .collect();
        if let Some((addr, why)) = skipped.first() {
            log::warn!(
                "health: {} of {} probes skipped this round (first: {addr}: {why}); \
                 their targets keep their state",
                skipped.len(),
                planned.len()
            );
        }
        // Every probe was settled above (at its start, by an event, or when the round ended);
        // the fallback keeps the outcomes in line with `planned` should that ever change.
        Some(
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Outcome::Skipped("no verdict".into())))
                .collect(),
        )
    }

    /// Count the round's outcomes into the table and log the transitions; the transitions, for
    /// `on_change` once the lock is released.
    fn apply(&self, planned: &[Planned], outcomes: Vec<Outcome>) -> Vec<(u64, Health)> {
        let mut changes = Vec::new();
        let mut table = lock(&self.shared.table);
        for (p, outcome) in planned.iter().zip(outcomes) {
            let Some(entry) = table.get_mut(p.target.key, p.serial) else {
                continue; // removed (or replaced) while it was being probed
            };
            if let Outcome::Fail(reason) = &outcome
                && entry.health == Health::Up
            {
                log::debug!(
                    "health: {} {} failed a probe ({} in a row): {reason}",
                    entry.target.probe,
                    entry.target.addr,
                    entry.failures.saturating_add(1)
                );
            }
            let Some(health) = entry.record(outcome, &self.params) else {
                continue;
            };
            let t = entry.target;
            match health {
                Health::Down => log::warn!(
                    "health: {} {} is down after {} failed probes: {}",
                    t.probe,
                    t.addr,
                    entry.failures,
                    entry.last_failure.as_deref().unwrap_or("?")
                ),
                Health::Up => log::info!(
                    "health: {} {} is up after {} passed probes",
                    t.probe,
                    t.addr,
                    entry.passes
                ),
            }
            changes.push((t.key, health));
        }
        changes
    }
}

/// A probe just started.
enum Started {
    /// Waiting for its answer on this socket.
    Waiting(OwnedFd),
    /// Settled already (refused or unreachable at once, or not started).
    Done(Outcome),
}

/// Open the socket and send the SYN or the datagram.
fn start(target: &Target) -> Started {
    let family = match target.addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let type_ = match target.probe {
        Probe::Tcp => SocketType::STREAM,
        Probe::Udp => SocketType::DGRAM,
    };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let fd = match rustix::net::socket_with(family, type_, flags, None) {
        Ok(fd) => fd,
        Err(e) => return Started::Done(Outcome::Skipped(format!("socket: {e}"))),
    };
    if target.probe == Probe::Udp {
        // Report every ICMP error on the socket, not only port and protocol unreachable.
        let set = match family {
            AddressFamily::INET => setsockopt(&fd, sockopt::Ipv4RecvErr, &true),
            _ => setsockopt(&fd, sockopt::Ipv6RecvErr, &true),
        };
        if let Err(e) = set {
            return Started::Done(Outcome::Skipped(format!("setsockopt(IP_RECVERR): {e}")));
        }
    }
    match (target.probe, rustix::net::connect(&fd, &target.addr)) {
        // Connecting in the background (the usual case), or at once (possible on loopback).
        (Probe::Tcp, Ok(()) | Err(Errno::INPROGRESS | Errno::INTR)) => Started::Waiting(fd),
        (Probe::Udp, Ok(())) => match rustix::net::send(&fd, UDP_PAYLOAD, SendFlags::empty()) {
            Ok(_) => Started::Waiting(fd),
            Err(e) => Started::Done(fail(target.probe, e)),
        },
        (_, Err(e)) => Started::Done(fail(target.probe, e)),
    }
}

/// The events a probe waits for (errors and hang-ups are always reported).
fn interest(probe: Probe) -> PollFlags {
    match probe {
        // Writable = the handshake is over, one way or the other.
        Probe::Tcp => PollFlags::OUT,
        Probe::Udp => PollFlags::IN,
    }
}

/// Judge a probe whose socket reported `revents`; `None` if it must wait on (a spurious
/// wake-up).
fn check(probe: Probe, fd: &OwnedFd, revents: PollFlags) -> Option<Outcome> {
    match rustix::net::sockopt::socket_error(fd) {
        Ok(Err(e)) => return Some(fail(probe, e)),
        Ok(Ok(())) => {}
        Err(e) => return Some(Outcome::Fail(format!("getsockopt(SO_ERROR): {e}"))),
    }
    match probe {
        Probe::Tcp if revents.contains(PollFlags::OUT) => Some(Outcome::Pass),
        Probe::Tcp => Some(Outcome::Fail("connection closed".into())),
        Probe::Udp => {
            let mut buf = [0u8; 64];
            match rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()) {
                // A reply, whatever it says (a truncated one included).
                Ok(_) => Some(Outcome::Pass),
                Err(Errno::AGAIN | Errno::INTR) => None,
                Err(e) => Some(fail(probe, e)),
            }
        }
    }
}

/// A failed probe, with the error in words.
fn fail(probe: Probe, e: Errno) -> Outcome {
    let reason = match e {
        Errno::CONNREFUSED => match probe {
            Probe::Tcp => "connection refused",
            Probe::Udp => "port unreachable",
        },
        Errno::HOSTUNREACH => "host unreachable",
        Errno::NETUNREACH => "network unreachable",
        Errno::HOSTDOWN => "host down",
        Errno::NETDOWN => "network down",
        Errno::CONNRESET => "connection reset",
        Errno::TIMEDOUT => "connection timed out",
        Errno::ADDRNOTAVAIL => "no local address or port available",
        Errno::PERM | Errno::ACCESS => "not permitted (a local firewall rule?)",
        _ => return Outcome::Fail(io::Error::from(e).to_string()),
    };
    Outcome::Fail(reason.into())
}

fn timespec(d: Duration) -> Timespec {
    Timespec::try_from(d).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    /// How long a test waits for a condition: long enough for a loaded CI machine, since the
    /// tests assert on what happens, never on when.
    const PATIENCE: Duration = Duration::from_secs(10);

    fn params() -> HealthParams {
        HealthParams {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            rise: 2,
            fall: 3,
        }
    }

    type Events = Arc<Mutex<Vec<(u64, Health)>>>;

    /// A checker whose transitions are recorded.
    fn checker() -> (HealthChecker, Events) {
        let events = Events::default();
        let ev = Arc::clone(&events);
        let hc = HealthChecker::spawn(params(), move |key, health| {
            ev.lock().unwrap().push((key, health));
        })
        .unwrap();
        (hc, events)
    }

    fn target(key: u64, addr: SocketAddr, probe: Probe) -> Target {
        Target { key, addr, probe }
    }

    fn status_of(hc: &HealthChecker, key: u64) -> TargetStatus {
        hc.status()
            .into_iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no target {key}"))
    }

    /// Wait until `key`'s status satisfies `cond`; the status then.
    fn wait_for(
        hc: &HealthChecker,
        key: u64,
        what: &str,
        cond: impl Fn(&TargetStatus) -> bool,
    ) -> TargetStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let s = status_of(hc, key);
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "target {key}: not {what} after {PATIENCE:?}: {s:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// A port on `ip` that nothing uses, found by binding it and letting go. It is taken
    /// below the ephemeral range (`ip_local_port_range`): a port from `bind(0)` could be handed
    /// straight back out as the source port of some other connection (this checker's own
    /// probes included, or a parallel test run's) and then no longer refuse, or refuse
    /// `tcp_down_then_up`'s later bind with `EADDRINUSE`. Below the range only an explicit bind
    /// can take it; the start is spread by process and call so parallel runs don't collide.
    fn closed_port(ip: IpAddr, probe: Probe) -> SocketAddr {
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(32768);
        let base = 10_000;
        assert!(
            low > base + 1000,
            "ephemeral ports start at {low}: no room below"
        );
        let span = low - base;
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let start = (std::process::id().wrapping_mul(7919) + call.wrapping_mul(613)) % span;
        for n in 0..span {
            let port = u16::try_from(base + (start + n) % span).unwrap();
            let free = match probe {
                Probe::Tcp => TcpListener::bind((ip, port)).is_ok(),
                Probe::Udp => UdpSocket::bind((ip, port)).is_ok(),
            };
            if free {
                return (ip, port).into();
            }
        }
        panic!("no free port on {ip} in {base}..{low}");
    }

    /// A TCP server that accepts and closes everything, so probes never fill its backlog.
    struct TcpServer {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl TcpServer {
        fn bind(addr: SocketAddr) -> TcpServer {
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5))
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            });
            TcpServer {
                addr,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for TcpServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Whether `::1` can be used; why not, if not.
    fn ipv6_loopback() -> Result<(), String> {
        TcpListener::bind((V6, 0))
            .map(drop)
            .map_err(|e| format!("cannot bind [::1]: {e}"))
    }

    #[test]
    fn params_from_config() {
        let p = HealthParams::from(HealthConfig::default());
        assert_eq!(
            p,
            HealthParams {
                interval: Duration::from_millis(1000),
                timeout: Duration::from_millis(500),
                rise: 2,
                fall: 3,
            }
        );
    }

    #[test]
    fn spawn_refuses_zero_params() {
        for p in [
            HealthParams {
                interval: Duration::ZERO,
                ..params()
            },
            HealthParams {
                timeout: Duration::ZERO,
                ..params()
            },
            HealthParams {
                rise: 0,
                ..params()
            },
            HealthParams {
                fall: 0,
                ..params()
            },
        ] {
            let e = HealthChecker::spawn(p, |_, _| {}).err().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{p:?}");
        }
    }

    #[test]
    fn rise_and_fall_count_in_a_row() {
        let p = params();
        let mut e = Entry {
            target: target(1, (V4, 1).into(), Probe::Tcp),
            serial: 1,
            health: Health::Up,
            passes: 0,
            failures: 0,
            last_failure: None,
        };
        let fail = || Outcome::Fail("x".into());
        // Two failures, a pass, two failures: never three in a row.
        for o in [fail(), fail(), Outcome::Pass, fail(), fail()] {
            assert_eq!(e.record(o, &p), None);
        }
        assert_eq!(e.record(Outcome::Skipped("s".into()), &p), None);
        assert_eq!(e.failures, 2, "a skipped probe counts neither way");
        assert_eq!(e.record(fail(), &p), Some(Health::Down));
        assert_eq!(e.record(fail(), &p), None, "already down");
        assert_eq!(e.record(Outcome::Pass, &p), None);
        assert_eq!(e.record(fail(), &p), None);
        assert_eq!(e.record(Outcome::Pass, &p), None);
        assert_eq!(e.record(Outcome::Pass, &p), Some(Health::Up));
        assert_eq!(e.record(Outcome::Pass, &p), None, "already up");
        assert_eq!((e.passes, e.failures), (3, 0));
        assert_eq!(e.last_failure.as_deref(), Some("x"));
    }

    #[test]
    fn health_tcp_listening_stays_up() {
        let server = TcpServer::bind((V4, 0).into());
        let (hc, events) = checker();
        hc.set_targets(vec![target(7, server.addr, Probe::Tcp)]);
        let s = wait_for(&hc, 7, "passed 5 probes", |s| s.passes >= 5);
        assert_eq!(s.health, Health::Up);
        assert_eq!((s.failures, s.last_failure), (0, None));
        hc.stop();
        assert!(events.lock().unwrap().is_empty());
    }

    /// Down after `fall` refusals, up after `rise` passes once something listens; one
    /// `on_change` per transition and none in between.
    fn tcp_down_then_up(ip: IpAddr) {
        let addr = closed_port(ip, Probe::Tcp);
        let (hc, events) = checker();
        hc.set_targets(vec![target(1, addr, Probe::Tcp)]);
        let s = wait_for(&hc, 1, "down", |s| s.health == Health::Down);
        // Down exactly at the fall-th failure (rise_and_fall_count_in_a_row pins that), but a
        // poll of the status may come a round or more later.
        assert!(s.failures >= params().fall, "{s:?}");
        assert_eq!(s.last_failure.as_deref(), Some("connection refused"));
        // More failures change nothing.
        wait_for(&hc, 1, "failed 2 more probes", |s| {
            s.failures >= params().fall + 2
        });

        let _server = TcpServer::bind(addr);
        let s = wait_for(&hc, 1, "up", |s| s.health == Health::Up);
        assert!(s.passes >= params().rise, "{s:?}");
        assert_eq!(s.last_failure.as_deref(), Some("connection refused"));
        wait_for(&hc, 1, "passed 3 more probes", |s| {
            s.passes >= params().rise + 3
        });
        hc.stop();
        assert_eq!(
            *events.lock().unwrap(),
            [(1, Health::Down), (1, Health::Up)],
            "on_change once per transition"
        );
    }

    #[test]
    fn health_tcp_closed_port_goes_down_then_up() {
        tcp_down_then_up(V4);
    }

    #[test]
    fn health_tcp_ipv6_closed_port_goes_down_then_up() {
        if let Err(why) = ipv6_loopback() {
            eprintln!("skipping health_tcp_ipv6_closed_port_goes_down_then_up: {why}");
            return;
        }
        tcp_down_then_up(V6);
    }

    #[test]
    fn health_tcp_silent_times_out() {
        // A listener whose accept queue is full (backlog 0 holds one connection, which we
        // make): the kernel drops further SYNs, so a probe's connect never completes.
        let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&fd, &SocketAddr::from((V4, 0))).unwrap();
        rustix::net::listen(&fd, 0).unwrap();
        let addr: SocketAddr = rustix::net::getsockname(&fd).unwrap().try_into().unwrap();
        let _queued = std::net::TcpStream::connect(addr).unwrap();
        let (hc, events) = checker();
        hc.set_targets(vec![target(3, addr, Probe::Tcp)]);
        let s = wait_for(&hc, 3, "down", |s| s.health == Health::Down);
        assert_eq!(s.last_failure.as_deref(), Some("timed out after 50 ms"));
        hc.stop();
        assert_eq!(*events.lock().unwrap(), [(3, Health::Down)]);
    }

    #[test]
    fn health_udp_bound_stays_up() {
        // Bound but never read: silence, which passes.
        let silent = UdpSocket::bind((V4, 0)).unwrap();
        // Answers every datagram: a reply, which passes too.
        let echo = UdpSocket::bind((V4, 0)).unwrap();
        echo.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let echo_addr = echo.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let echoer = thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    seen = buf[..n].to_vec();
                    echo.send_to(b"ok", from).unwrap();
                }
            }
            seen
        });
        let (hc, events) = checker();
        hc.set_targets(vec![
            target(1, silent.local_addr().unwrap(), Probe::Udp),
            target(2, echo_addr, Probe::Udp),
        ]);
        for key in [1, 2] {
            let s = wait_for(&hc, key, "passed 5 probes", |s| s.passes >= 5);
            assert_eq!((s.health, s.failures), (Health::Up, 0));
        }
        hc.stop();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(echoer.join().unwrap(), UDP_PAYLOAD);
        assert!(events.lock().unwrap().is_empty());
    }

    fn udp_closed_goes_down(ip: IpAddr) {
        let addr = closed_port(ip, Probe::Udp);
        let (hc, events) = checker();
        hc.set_targets(vec![target(9, addr, Probe::Udp)]);
        let s = wait_for(&hc, 9, "down", |s| s.health == Health::Down);
        assert_eq!(s.last_failure.as_deref(), Some("port unreachable"));
        hc.stop();
        assert_eq!(*events.lock().unwrap(), [(9, Health::Down)]);
    }

    #[test]
    fn health_udp_closed_port_goes_down() {
        udp_closed_goes_down(V4);
    }

    #[test]
    fn health_udp_ipv6_closed_port_goes_down() {
        if let Err(why) = ipv6_loopback() {
            eprintln!("skipping health_udp_ipv6_closed_port_goes_down: {why}");
            return;
        }
        udp_closed_goes_down(V6);
    }

    #[test]
    fn health_tcp_ipv6_listening_stays_up() {
        if let Err(why) = ipv6_loopback() {
            eprintln!("skipping health_tcp_ipv6_listening_stays_up: {why}");
            return;
        }
        let server = TcpServer::bind((V6, 0).into());
        let (hc, events) = checker();
        hc.set_targets(vec![target(6, server.addr, Probe::Tcp)]);
        let s = wait_for(&hc, 6, "passed 3 probes", |s| s.passes >= 3);
        assert_eq!(s.health, Health::Up);
        hc.stop();
        assert!(events.lock().unwrap().is_empty());
    }

    #[test]
    fn health_set_targets_keeps_kept_keys() {
        let closed = closed_port(V4, Probe::Tcp);
        let server = TcpServer::bind((V4, 0).into());
        let (hc, events) = checker();
        hc.set_targets(vec![
            target(1, closed, Probe::Tcp),
            target(2, server.addr, Probe::Tcp),
        ]);
        wait_for(&hc, 1, "down", |s| s.health == Health::Down);
        wait_for(&hc, 2, "passed a probe", |s| s.passes >= 1);

        // Key 1 kept (listed second now), key 2 dropped, key 3 new.
        let other = closed_port(V4, Probe::Tcp);
        hc.set_targets(vec![
            target(3, other, Probe::Tcp),
            target(1, closed, Probe::Tcp),
        ]);
        let status = hc.status();
        assert_eq!(
            status.iter().map(|s| s.key).collect::<Vec<_>>(),
            [3, 1],
            "in the order given"
        );
        assert_eq!(status[0].health, Health::Up, "a new target starts up");
        assert_eq!((status[0].passes, status[0].failures), (0, 0));
        assert_eq!(status[0].last_failure, None);
        assert_eq!(
            status[1].health,
            Health::Down,
            "a kept target keeps its health"
        );
        assert!(status[1].failures >= params().fall, "and its counters");
        assert_eq!(
            status[1].last_failure.as_deref(),
            Some("connection refused")
        );
        wait_for(&hc, 3, "down", |s| s.health == Health::Down);

        // Removed and re-added: forgotten, so it starts over (up).
        hc.set_targets(vec![target(3, other, Probe::Tcp)]);
        hc.set_targets(vec![target(1, closed, Probe::Tcp)]);
        let s = status_of(&hc, 1);
        assert_eq!((s.health, s.failures), (Health::Up, 0));
        wait_for(&hc, 1, "down again", |s| s.health == Health::Down);
        hc.stop();
        assert_eq!(
            *events.lock().unwrap(),
            [(1, Health::Down), (3, Health::Down), (1, Health::Down)]
        );
    }

    #[test]
    fn health_on_change_may_call_back_into_the_checker() {
        // on_change runs with no lock held: it can read the status.
        let slot: Arc<Mutex<Option<Arc<HealthChecker>>>> = Arc::default();
        let seen: Arc<Mutex<Vec<TargetStatus>>> = Arc::default();
        let (s2, seen2) = (Arc::clone(&slot), Arc::clone(&seen));
        let hc = Arc::new(
            HealthChecker::spawn(params(), move |_, _| {
                if let Some(hc) = &*s2.lock().unwrap() {
                    seen2.lock().unwrap().extend(hc.status());
                }
            })
            .unwrap(),
        );
        *slot.lock().unwrap() = Some(Arc::clone(&hc));
        hc.set_targets(vec![target(4, closed_port(V4, Probe::Udp), Probe::Udp)]);
        let deadline = Instant::now() + PATIENCE;
        while seen.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no on_change after {PATIENCE:?}");
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(seen.lock().unwrap()[0].health, Health::Down);
        // Break the cycle (checker → callback → slot → checker) before stopping.
        drop(slot.lock().unwrap().take());
        Arc::into_inner(hc).unwrap().stop();
    }

    #[test]
    fn health_stop_returns_mid_round() {
        // A UDP target that never answers keeps a round waiting its whole timeout (30 s); stop
        // must not wait for it.
        let silent = UdpSocket::bind((V4, 0)).unwrap();
        silent.set_read_timeout(Some(PATIENCE)).unwrap();
        let hc = HealthChecker::spawn(
            HealthParams {
                interval: Duration::from_secs(60),
                timeout: Duration::from_secs(30),
                rise: 1,
                fall: 1,
            },
            |_, _| {},
        )
        .unwrap();
        // The first targets start a round at once.
        hc.set_targets(vec![target(1, silent.local_addr().unwrap(), Probe::Udp)]);
        let mut buf = [0u8; 64];
        let got = silent.recv(&mut buf);
        let started = Instant::now();
        hc.stop();
        let took = started.elapsed();
        let n = got.expect("a probe arrives");
        assert_eq!(&buf[..n], UDP_PAYLOAD);
        // Not a timing assertion so much as a sanity bound: far below the 30 s the round
        // would otherwise have waited.
        assert!(took < Duration::from_secs(10), "stop took {took:?}");
    }

    #[test]
    fn health_stop_returns_between_rounds() {
        let hc = HealthChecker::spawn(
            HealthParams {
                interval: Duration::from_secs(60),
                ..params()
            },
            |_, _| {},
        )
        .unwrap();
        let started = Instant::now();
        drop(hc);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "drop took {took:?}");
    }
}
