//! The `dns` app's control side: the zones the workers answer from, their reload, the workers'
//! outcome counters, and DNS over TCP.
//!
//! UDP queries take the fast path (the workers); TCP stays with the kernel's stack: a listening
//! socket bound at start-up (before privileges are dropped, since port 53 is privileged) is
//! served here by a small thread per connection, from the same zones. TCP carries what did not
//! fit in UDP (a client retries over TCP after TC=1), so it is the slow path by design: at most
//! [`MAX_TCP_CONNECTIONS`] at once, each closed after [`TCP_IDLE`] without a complete query.
//!
//! `reload` (SIGHUP, `sluice ctl reload`) reads every zone file again and swaps the new zones in
//! whole; on any error the old zones keep serving and the error names the file and line. A
//! query is answered from the old zones or the new, never lost.

use super::socket::HandlerError;
use crate::apps::dns::answer::Limits;
use crate::apps::dns::app::{DnsWorkerStats, OUTCOMES, ZonesHandle};
use crate::apps::dns::zone::{ZoneFile, Zones};
use serde_json::{Map, Value, json};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// TCP connections served at once; more are closed at once (the client retries).
pub const MAX_TCP_CONNECTIONS: usize = 64;

/// A TCP connection that has not sent a complete query for this long is closed (RFC 7766
/// suggests seconds).
pub const TCP_IDLE: Duration = Duration::from_secs(5);

/// What the engine hands the service at start.
pub struct DnsSetup {
    /// The zone files (re-read on reload).
    pub paths: Vec<PathBuf>,
    /// The zones as loaded by the preflight.
    pub zones: Zones,
    /// The TCP listener, bound while the engine still had its privileges.
    pub tcp: TcpListener,
    /// One per worker, in queue order: their outcome counters.
    pub stats: Vec<(u32, Arc<DnsWorkerStats>)>,
    /// A hot upgrade's successor: `tcp` is the predecessor's listener, which it still serves;
    /// accepting waits for [`DnsService::resume_tcp`] (after the commit), so a connection
    /// queued meanwhile is taken by whichever engine goes on serving.
    pub adopted: bool,
}

/// The dns app's control side (see the module docs).
pub struct DnsService {
    paths: Vec<PathBuf>,
    handle: ZonesHandle,
    stats: Vec<(u32, Arc<DnsWorkerStats>)>,
    tcp_counts: Arc<TcpCounts>,
    stop: Arc<AtomicBool>,
    /// Set while a successor must not accept yet (see [`DnsSetup::adopted`]).
    paused: Arc<AtomicBool>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    reload: Mutex<()>,
}

/// TCP's own counters.
#[derive(Default, Debug)]
struct TcpCounts {
    queries: AtomicU64,
    refused_connections: AtomicU64,
    active: AtomicUsize,
}

impl DnsService {
    /// Serves `setup.zones` to the workers (through [`DnsService::zones`]) and starts the TCP
    /// acceptor. Call after privileges are dropped.
    pub fn start(setup: DnsSetup) -> io::Result<Arc<DnsService>> {
        let handle = ZonesHandle::new(setup.zones);
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(setup.adopted));
        let tcp_counts = Arc::new(TcpCounts::default());
        setup.tcp.set_nonblocking(true)?;
        let acceptor = {
            let (handle, stop, counts) = (handle.clone(), stop.clone(), tcp_counts.clone());
            let paused = paused.clone();
            std::thread::Builder::new()
                .name("sluice-dns-tcp".into())
                .spawn(move || accept_loop(setup.tcp, handle, stop, &paused, counts))?
        };
        Ok(Arc::new(DnsService {
            paths: setup.paths,
            handle,
            stats: setup.stats,
            tcp_counts,
            stop,
            paused,
            acceptor: Mutex::new(Some(acceptor)),
            reload: Mutex::new(()),
        }))
    }

    /// A successor, once committed: start accepting TCP connections.
    pub fn resume_tcp(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// The zones the workers answer from.
    pub fn zones(&self) -> &ZonesHandle {
        &self.handle
    }

    /// Where the worker of `queue` publishes its counters.
    pub fn worker_stats(&self, queue: u32) -> Arc<DnsWorkerStats> {
        self.stats
            .iter()
            .find(|(q, _)| *q == queue)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// Re-reads every zone file; swaps the zones in only if all load.
    pub fn reload(&self) -> Result<Value, HandlerError> {
        let _one_at_a_time = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        let files: Vec<ZoneFile> = self.paths.iter().cloned().map(ZoneFile::from).collect();
        let zones = Zones::load(&files).map_err(|e| {
            HandlerError::Failed(format!(
                "reload refused, the loaded zones keep serving: {}",
                crate::error::chain(&e)
            ))
        })?;
        self.handle.store(zones);
        log::info!("dns: reloaded {} zone file(s)", self.paths.len());
        Ok(
            json!({"reloaded": self.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()}),
        )
    }

    /// Answer outcomes per queue and in total, and TCP's counters.
    pub fn stats_json(&self) -> Value {
        let mut total = [0u64; OUTCOMES.len()];
        let queues: Vec<Value> = self
            .stats
            .iter()
            .map(|(q, s)| {
                let c = s.read();
                for (t, v) in total.iter_mut().zip(c) {
                    *t += v;
                }
                json!({"queue": q, "outcomes": outcomes_json(&c)})
            })
            .collect();
        json!({
            "total": outcomes_json(&total),
            "queues": queues,
            "tcp": {
                "queries": self.tcp_counts.queries.load(Ordering::Relaxed),
                "refused_connections": self.tcp_counts.refused_connections.load(Ordering::Relaxed),
                "active_connections": self.tcp_counts.active.load(Ordering::Relaxed),
            },
        })
    }

    /// Per queue: the outcome counts, in [`OUTCOMES`] order (for metrics).
    pub fn outcomes(&self) -> Vec<(u32, [u64; OUTCOMES.len()])> {
        self.stats.iter().map(|(q, s)| (*q, s.read())).collect()
    }

    /// TCP queries answered since start (for metrics).
    pub fn tcp_queries(&self) -> u64 {
        self.tcp_counts.queries.load(Ordering::Relaxed)
    }

    /// Stops the TCP acceptor (connections in progress finish or time out on their own).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self
            .acceptor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

fn outcomes_json(c: &[u64; OUTCOMES.len()]) -> Value {
    let m: Map<String, Value> = OUTCOMES
        .iter()
        .zip(c)
        .map(|(name, v)| ((*name).to_string(), json!(v)))
        .collect();
    Value::Object(m)
}

/// Accepts until `stop` (not while `paused`); one thread per connection, at most
/// [`MAX_TCP_CONNECTIONS`].
fn accept_loop(
    listener: TcpListener,
    zones: ZonesHandle,
    stop: Arc<AtomicBool>,
    paused: &AtomicBool,
    counts: Arc<TcpCounts>,
) {
    while !stop.load(Ordering::Relaxed) {
        if paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match listener.accept() {
            Ok((conn, peer)) => {
                if counts.active.load(Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
                    counts.refused_connections.fetch_add(1, Ordering::Relaxed);
                    drop(conn);
                    continue;
                }
                counts.active.fetch_add(1, Ordering::Relaxed);
                let (zones, stop, counts2) = (zones.clone(), stop.clone(), counts.clone());
                let spawned = std::thread::Builder::new()
                    .name("sluice-dns-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve(conn, &zones, &stop, &counts2) {
                            log::debug!("dns: TCP {peer}: {e}");
                        }
                        counts2.active.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    counts.active.fetch_sub(1, Ordering::Relaxed);
                    counts.refused_connections.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn!("dns: accepting a TCP connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves one connection: length-prefixed queries (RFC 1035 §4.2.2), several per connection
/// (RFC 7766), until the client closes, goes idle for [`TCP_IDLE`], or the engine stops.
fn serve(
    mut conn: TcpStream,
    zones: &ZonesHandle,
    stop: &AtomicBool,
    counts: &TcpCounts,
) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(TCP_IDLE))?;
    conn.set_write_timeout(Some(TCP_IDLE))?;
    let mut query = vec![0u8; 65535];
    let mut out = vec![0u8; 2 + 65535];
    while !stop.load(Ordering::Relaxed) {
        let mut len = [0u8; 2];
        match conn.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let n = usize::from(u16::from_be_bytes(len));
        conn.read_exact(&mut query[..n])?;
        let answer = zones.load().answer(
            &query[..n],
            Limits {
                udp_payload_max: 65535,
                tcp: true,
            },
            &mut out[2..],
        );
        counts.queries.fetch_add(1, Ordering::Relaxed);
        if answer.len == 0 {
            // No reply to this message (a response, or garbage): close, as NSD does.
            let _ = conn.shutdown(Shutdown::Both);
            return Ok(());
        }
        out[..2].copy_from_slice(&(answer.len as u16).to_be_bytes());
        conn.write_all(&out[..2 + answer.len])?;
    }
    Ok(())
}

impl Drop for DnsService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
