//! What the worker needs from a transport, and the one batch step that uses it.
//!
//! The worker's per-batch work — take received frames, let the app judge them, send the `Tx`
//! ones, give the rest back, count everything — is [`step`], written once against the
//! [`Transport`] trait. [`XskQueue`] implements it for real traffic; [`super::mem::MemTransport`]
//! implements it over memory so the same code can be benchmarked and unit-tested without a
//! kernel in the way.

use super::capture::{CaptureHook, Direction, Session, Tap, now_ns};
use super::stats::Local;
use crate::apps::App;
use crate::batch::{Batch, DropReason, PortId, Verdict};
use crate::wire::{EthernetFrame, MacAddr};
use crate::xsk::{Desc, Kick, MAX_BATCH, XskQueue};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A source and sink of frames that lends their bytes in place (AF_XDP, or memory in tests),
/// over one or more ports sharing one pool of frame buffers.
///
/// Contract (what [`step`] relies on): every frame [`Transport::receive`] hands out belongs to
/// the caller until the caller passes its descriptor to [`Transport::transmit`] (and it was
/// queued) or to [`Transport::recycle`]; the caller hands every frame back, exactly once.
pub trait Transport {
    /// Number of ports; valid ports are `0..port_count()`.
    fn port_count(&self) -> usize;

    /// Take up to `descs.len()` frames received on `port`; returns how many, described in
    /// `descs[..n]`.
    fn receive(&mut self, port: usize, descs: &mut [Desc]) -> usize;

    /// Lend the buffers of the frames `descs` (just received) into `out[..descs.len()]`, each
    /// the whole buffer the frame lies in, and the frame's offset in it into `starts`: the
    /// bytes before the frame are headroom it may grow into at the front, those after its
    /// `desc.len` room at the back. A descriptor the transport cannot lend gets an empty slice,
    /// start 0 and its `len` set to 0; returns how many there were. A frame sent later is
    /// described by the same buffer: its descriptor's `addr` moves by the change of start.
    fn frames_mut<'a>(
        &'a mut self,
        descs: &mut [Desc],
        out: &mut [&'a mut [u8]],
        starts: &mut [u32],
    ) -> u32;

    /// Send `descs` on `port` in order, as many as there is room for; returns how many (a
    /// prefix) and what the kick that followed did. Frames not taken are still the caller's.
    fn transmit(&mut self, port: usize, descs: &[Desc]) -> (usize, Kick);

    /// Take frames back unsent; returns how many had to wait in a stash for ring room.
    fn recycle(&mut self, descs: &[Desc]) -> u32;
}

impl Transport for XskQueue {
    #[inline]
    fn port_count(&self) -> usize {
        XskQueue::port_count(self)
    }

    #[inline]
    fn receive(&mut self, port: usize, descs: &mut [Desc]) -> usize {
        XskQueue::receive(self, port, descs)
    }

    #[inline]
    fn frames_mut<'a>(
        &'a mut self,
        descs: &mut [Desc],
        out: &mut [&'a mut [u8]],
        starts: &mut [u32],
    ) -> u32 {
        XskQueue::frames_mut(self, descs, out, starts)
    }

    #[inline]
    fn transmit(&mut self, port: usize, descs: &[Desc]) -> (usize, Kick) {
        XskQueue::transmit(self, port, descs)
    }

    #[inline]
    fn recycle(&mut self, descs: &[Desc]) -> u32 {
        XskQueue::recycle(self, descs)
    }
}

/// The worker's way into the kernel's network stack for frames an app judges
/// [`Verdict::Kernel`]: a TAP device. A frame written to it enters the stack as if received on
/// the TAP interface — routed, forwarded (the kernel resolves the neighbour and fragments if it
/// must), or delivered to a local socket — so nothing handed over is lost. Its destination MAC
/// is rewritten to the TAP's own first, or the stack would drop it as addressed to another host.
#[derive(Clone, Debug)]
pub struct KernelPath {
    fd: Arc<OwnedFd>,
    mac: MacAddr,
}

impl KernelPath {
    /// A path through the TAP device `fd` (shared: the engine keeps it open too) whose MAC
    /// is `mac`.
    pub fn new(fd: Arc<OwnedFd>, mac: MacAddr) -> Self {
        KernelPath { fd, mac }
    }

    /// Hand `frame` to the kernel; false if it could not be (too short to be Ethernet, or the
    /// write failed — the device's queue is full, say). One `write` per frame: this is the
    /// exception path, not the fast one.
    #[inline]
    pub fn send(&self, frame: &mut [u8]) -> bool {
        let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
            return false;
        };
        eth.set_dst_addr(self.mac);
        matches!(rustix::io::write(&*self.fd, frame), Ok(n) if n == frame.len())
    }
}

/// The worker's per-batch state for [`step`]: fixed scratch space, allocated once per worker
/// (about 16 KiB) so the hot loop never allocates, and the path to the kernel, if any.
pub struct Scratch {
    kernel: Option<KernelPath>,
    /// Per port: its link is down (set by the engine's link supervisor).
    ports_down: Option<Arc<[AtomicBool]>>,
    /// The packet-capture tap, when the worker has one.
    capture: Option<CaptureHook>,
    descs: [Desc; MAX_BATCH],
    starts: [u32; MAX_BATCH],
    lens: [u32; MAX_BATCH],
    verdicts: [Verdict; MAX_BATCH],
    tx: [Desc; MAX_BATCH],
    tx_port: [u8; MAX_BATCH],
    out: [Desc; MAX_BATCH],
    back: [Desc; MAX_BATCH],
}

impl Scratch {
    /// Scratch space on the heap (it is too big to move around on the stack cheaply).
    pub fn new() -> Box<Self> {
        Box::new(Scratch {
            kernel: None,
            ports_down: None,
            capture: None,
            descs: [Desc::default(); MAX_BATCH],
            starts: [0; MAX_BATCH],
            lens: [0; MAX_BATCH],
            verdicts: [Verdict::Drop(DropReason::Policy); MAX_BATCH],
            tx: [Desc::default(); MAX_BATCH],
            tx_port: [0; MAX_BATCH],
            out: [Desc::default(); MAX_BATCH],
            back: [Desc::default(); MAX_BATCH],
        })
    }
}

impl Scratch {
    /// Hand [`Verdict::Kernel`] frames to `path` (without one they are dropped as
    /// `no_kernel_path`).
    pub fn set_kernel_path(&mut self, path: KernelPath) {
        self.kernel = Some(path);
    }

    /// Follow the ports' link state: a frame for a port whose flag is set goes to the kernel
    /// path instead of a TX ring that cannot send (the kernel routes it afresh — over another
    /// port, if the routes allow). Only with a kernel path.
    pub fn set_ports_down(&mut self, down: Arc<[AtomicBool]>) {
        self.ports_down = Some(down);
    }

    /// Copy frames into `tap`'s ring while a capture is armed on it (see
    /// [`super::capture`]); costs one relaxed load per batch while none is.
    pub fn set_capture(&mut self, tap: Arc<Tap>) {
        self.capture = Some(CaptureHook::new(tap));
    }
}

/// One batch: take up to `max` (≤ [`MAX_BATCH`]) frames received on port `ingress` of `t`, run
/// `app` over them in place, transmit the frames judged [`Verdict::Tx`] (on `ingress`) or
/// [`Verdict::TxOn`] (on that port), each port's in their original order, and hand every other
/// frame back to `t`, counting all of it into `c`. Returns the number of frames received (0 when
/// there were none: nothing else happened then).
///
/// A frame the transport could not lend (empty, `len` 0) is never sent: it counts as
/// `bad_desc` and as a `truncated` drop, whatever the app said. A frame for a port `t` does not
/// have is a `no_such_port` drop. A [`Verdict::Kernel`] frame is written, as the app left it, to
/// the scratch's [`KernelPath`] and counted as `to_kernel` (then recycled: the kernel has its own
/// copy); without a path, or if the write fails, it is a `no_kernel_path` drop. A frame that finds its transmit ring full is given
/// back and counted as `tx_ring_full`. No allocation, no syscall beyond the transport's own, no
/// lock.
#[inline]
pub fn step<T: Transport, A: App + ?Sized>(
    t: &mut T,
    ingress: PortId,
    app: &mut A,
    s: &mut Scratch,
    max: usize,
    c: &mut Local,
) -> usize {
    let port = ingress.index();
    let n = t.receive(port, &mut s.descs[..max.min(MAX_BATCH)]);
    if n == 0 {
        return 0;
    }
    // The frame slices live on the stack for the app's call only; an array sized to the batch
    // (not always MAX_BATCH) keeps their initialisation off the per-packet cost.
    let descs = &mut s.descs[..n];
    let room = (&mut s.starts[..n], &mut s.lens[..n]);
    let verdicts = &mut s.verdicts[..n];
    let k = Exceptions {
        kernel: s.kernel.as_ref(),
        down: s.ports_down.as_deref(),
        capture: s.capture.as_mut().and_then(CaptureHook::active),
    };
    c.bad_desc += u64::from(match n {
        0..=32 => lend_and_process::<_, _, 32>(t, ingress, app, descs, room, verdicts, k),
        33..=64 => lend_and_process::<_, _, 64>(t, ingress, app, descs, room, verdicts, k),
        65..=128 => lend_and_process::<_, _, 128>(t, ingress, app, descs, room, verdicts, k),
        _ => lend_and_process::<_, _, MAX_BATCH>(t, ingress, app, descs, room, verdicts, k),
    });
    let ports = t.port_count();
    let has_kernel_path = s.kernel.is_some();
    let (mut ntx, mut nback) = (0, 0);
    let mut all_to_ingress = true;
    let mut rx_bytes = 0;
    for i in 0..n {
        let mut d = s.descs[i];
        rx_bytes += u64::from(d.len);
        // The descriptor holds the buffer's start (see lend_and_process); the frame is where
        // the app left it.
        let received = d;
        d.addr += u64::from(s.starts[i]);
        let dest = match s.verdicts[i] {
            _ if d.len == 0 || s.lens[i] == 0 => Err(DropReason::Truncated),
            Verdict::Tx => Ok(port),
            Verdict::TxOn(p) if p.index() < ports => Ok(p.index()),
            Verdict::TxOn(_) => Err(DropReason::NoSuchPort),
            Verdict::Kernel if !has_kernel_path => Err(DropReason::NoKernelPath),
            Verdict::Kernel => {
                // Written to the kernel path already (a failed write became a drop).
                c.to_kernel += 1;
                s.back[nback] = received;
                nback += 1;
                continue;
            }
            Verdict::Drop(reason) => Err(reason),
        };
        match dest {
            Ok(p) => {
                d.len = s.lens[i];
                s.tx[ntx] = d;
                s.tx_port[ntx] = p as u8;
                all_to_ingress &= p == port;
                ntx += 1;
            }
            Err(reason) => {
                c.count_drop(port, reason);
                s.back[nback] = received;
                nback += 1;
            }
        }
    }
    c.rx_packets += n as u64;
    c.rx_bytes += rx_bytes;
    c.batches += 1;
    c.ports[port].rx_packets += n as u64;
    c.ports[port].rx_bytes += rx_bytes;
    if ntx > 0 {
        if all_to_ingress {
            nback += send(t, port, &s.tx[..ntx], &mut s.back[nback..], c);
        } else {
            for p in 0..ports {
                let mut k = 0;
                for (d, &dp) in s.tx[..ntx].iter().zip(&s.tx_port[..ntx]) {
                    if dp as usize == p {
                        s.out[k] = *d;
                        k += 1;
                    }
                }
                if k > 0 {
                    nback += send(t, p, &s.out[..k], &mut s.back[nback..], c);
                }
            }
        }
    }
    if nback > 0 {
        c.fill_shortfall += u64::from(t.recycle(&s.back[..nback]));
    }
    n
}

/// Transmit `descs` on `port`, count it, and copy what found no room into `back`; returns how
/// many that was.
#[inline]
fn send<T: Transport>(
    t: &mut T,
    port: usize,
    descs: &[Desc],
    back: &mut [Desc],
    c: &mut Local,
) -> usize {
    let (sent, kick) = t.transmit(port, descs);
    let bytes = descs[..sent].iter().map(|d| u64::from(d.len)).sum::<u64>();
    c.tx_packets += sent as u64;
    c.tx_bytes += bytes;
    c.ports[port].tx_packets += sent as u64;
    c.ports[port].tx_bytes += bytes;
    c.kicks += u64::from(kick.kicks);
    c.kick_errors += u64::from(kick.errors);
    let unsent = &descs[sent..];
    c.tx_ring_full += unsent.len() as u64;
    back[..unsent.len()].copy_from_slice(unsent);
    unsent.len()
}

/// What [`step`] does with frames it cannot send itself, and the capture session to copy
/// frames into, if one is armed.
struct Exceptions<'a> {
    kernel: Option<&'a KernelPath>,
    down: Option<&'a [AtomicBool]>,
    capture: Option<&'a mut Session>,
}

impl Exceptions<'_> {
    #[inline]
    fn port_down(&self, port: usize) -> bool {
        self.down
            .and_then(|d| d.get(port))
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

/// Lend the frames of `descs` (at most `N`) and run `app` over them; returns how many the
/// transport could not lend. `lens` ends up holding each frame's length after the app, and
/// [`Verdict::Kernel`] frames have been written to `kernel` (or turned into drops).
#[inline(always)]
fn lend_and_process<T: Transport, A: App + ?Sized, const N: usize>(
    t: &mut T,
    ingress: PortId,
    app: &mut A,
    descs: &mut [Desc],
    (starts, lens): (&mut [u32], &mut [u32]),
    verdicts: &mut [Verdict],
    mut ex: Exceptions<'_>,
) -> u32 {
    let n = descs.len();
    let mut frames: [&mut [u8]; N] = std::array::from_fn(|_| <&mut [u8]>::default());
    let bad = t.frames_mut(descs, &mut frames[..n], starts);
    // From here on a descriptor holds its buffer's start; the frame's place in the buffer is
    // (starts, lens), which the app may move.
    for ((l, d), &st) in lens.iter_mut().zip(descs.iter_mut()).zip(starts.iter()) {
        *l = d.len;
        d.addr -= u64::from(st);
    }
    let mut batch = Batch::with_room(&mut frames[..n], starts, lens, verdicts, ingress);
    let ts = ex.capture.as_ref().map(|_| now_ns());
    if let (Some(cap), Some(ts)) = (ex.capture.as_deref_mut(), ts) {
        for i in 0..n {
            cap.record(ts, ingress.0, Direction::Rx, batch.frame(i));
        }
    }
    app.process(&mut batch);
    if let (Some(cap), Some(ts)) = (ex.capture.as_deref_mut(), ts) {
        capture_tx(cap, ts, &batch, ingress);
        cap.publish();
    }
    // The exception path, while the frames are still lent (only with a kernel path: without
    // one, `step` counts Kernel verdicts as drops and the common case pays no extra loop).
    if let Some(kernel) = ex.kernel {
        for i in 0..n {
            let v = match batch.verdict(i) {
                Verdict::TxOn(p) if ex.port_down(p.index()) => Verdict::Kernel,
                v => v,
            };
            if v == Verdict::Kernel {
                let sent = kernel.send(batch.frame_mut(i));
                batch.set_verdict(
                    i,
                    if sent {
                        Verdict::Kernel
                    } else {
                        Verdict::Drop(DropReason::NoKernelPath)
                    },
                );
            }
        }
    }
    bad
}

/// Copy the frames `batch`'s app queued for transmit into the capture (cold: only while a
/// capture that wants them is armed).
#[cold]
fn capture_tx(cap: &mut Session, ts: u64, batch: &Batch<'_, '_>, ingress: PortId) {
    if !cap.wants_tx() {
        return;
    }
    for i in 0..batch.len() {
        let port = match batch.verdict(i) {
            Verdict::Tx => ingress.0,
            Verdict::TxOn(p) => p.0,
            _ => continue,
        };
        cap.record(ts, port, Direction::Tx, batch.frame(i));
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::worker::mem::MemTransport;

    /// Sends even frames (after marking byte 0), drops odd ones as `not_ip`; tries to send an
    /// empty frame too (the step must refuse it).
    struct EvenOdd;

    impl App for EvenOdd {
        fn name(&self) -> &'static str {
            "even-odd"
        }
        fn process(&mut self, batch: &mut Batch<'_, '_>) {
            for i in 0..batch.len() {
                let Some(&index) = batch.frame(i).get(1) else {
                    batch.set_verdict(i, Verdict::Tx);
                    continue;
                };
                if index % 2 == 0 {
                    batch.frame_mut(i)[0] = 0xee;
                    batch.set_verdict(i, Verdict::Tx);
                } else {
                    batch.set_verdict(i, Verdict::Drop(DropReason::NotIp));
                }
            }
        }
    }

    fn frames(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![0, i, 2, 3, 4, 5]).collect()
    }

    #[test]
    fn step_sends_tx_frames_and_recycles_the_rest() {
        let f = frames(8);
        let templates: Vec<&[u8]> = f.iter().map(Vec::as_slice).collect();
        let mut t = MemTransport::new(&templates, 8, 2048);
        let mut s = Scratch::new();
        let mut c = Local::default();
        assert_eq!(step(&mut t, PortId(0), &mut EvenOdd, &mut s, 5, &mut c), 5);
        assert_eq!(
            step(&mut t, PortId(0), &mut EvenOdd, &mut s, 64, &mut c),
            8,
            "wraps around"
        );
        assert_eq!((t.transmitted(), t.recycled(), t.outstanding()), (7, 6, 0));
        assert_eq!((c.rx_packets, c.tx_packets, c.batches), (13, 7, 2));
        assert_eq!((c.rx_bytes, c.tx_bytes), (13 * 6, 7 * 6));
        assert_eq!(c.drops[DropReason::NotIp.index()], 6);
        assert_eq!(c.dropped(), 6);
        assert_eq!(t.frame(2)[0], 0xee, "the app wrote into the frame in place");
        assert_eq!(t.frame(3)[0], 0);
    }

    /// A transport whose TX ring takes at most `room` frames per call and whose fill ring is
    /// full, to check what `step` makes of a shortfall.
    struct Cramped {
        inner: MemTransport,
        room: usize,
    }

    impl Transport for Cramped {
        fn port_count(&self) -> usize {
            1
        }
        fn receive(&mut self, port: usize, descs: &mut [Desc]) -> usize {
            self.inner.receive(port, descs)
        }
        fn frames_mut<'a>(
            &'a mut self,
            descs: &mut [Desc],
            out: &mut [&'a mut [u8]],
            starts: &mut [u32],
        ) -> u32 {
            let bad = self.inner.frames_mut(descs, out, starts);
            starts[0] = 0;
            descs[0].len = 0; // as the AF_XDP transport does for a descriptor outside the UMEM
            out[0] = <&mut [u8]>::default();
            bad + 1
        }
        fn transmit(&mut self, port: usize, descs: &[Desc]) -> (usize, Kick) {
            let n = descs.len().min(self.room);
            let (sent, _) = self.inner.transmit(port, &descs[..n]);
            (
                sent,
                Kick {
                    kicks: 2,
                    errors: 1,
                },
            )
        }
        fn recycle(&mut self, descs: &[Desc]) -> u32 {
            self.inner.recycle(descs);
            descs.len() as u32
        }
    }

    #[test]
    fn step_counts_ring_shortfalls_and_never_sends_a_bad_frame() {
        let f = frames(8);
        let templates: Vec<&[u8]> = f.iter().map(Vec::as_slice).collect();
        let mut t = Cramped {
            inner: MemTransport::new(&templates, 8, 2048),
            room: 2,
        };
        let mut c = Local::default();
        assert_eq!(
            step(
                &mut t,
                PortId(0),
                &mut EvenOdd,
                &mut Scratch::new(),
                8,
                &mut c
            ),
            8
        );
        // Frame 0 was bad: never sent, a truncated drop. Frames 2, 4, 6 wanted out; 2 fit.
        assert_eq!(c.bad_desc, 1);
        assert_eq!(c.drops[DropReason::Truncated.index()], 1);
        assert_eq!((c.tx_packets, c.tx_ring_full), (2, 1));
        assert_eq!((c.kicks, c.kick_errors), (2, 1));
        assert_eq!(
            c.fill_shortfall, 6,
            "4 odd + 1 bad + 1 unsent went back, none fit"
        );
        assert_eq!(c.rx_bytes, 7 * 6, "a bad descriptor carries no bytes");
        assert_eq!(t.inner.outstanding(), 0, "every frame handed back");
    }

    /// Sends frame `i` to port `i % 3` (port 2 does not exist on a two-port transport), after
    /// growing it by 4 bytes; hands every fifth to the kernel.
    struct Spread;

    impl App for Spread {
        fn name(&self) -> &'static str {
            "spread"
        }
        fn process(&mut self, batch: &mut Batch<'_, '_>) {
            for i in 0..batch.len() {
                let len = batch.frame(i).len();
                batch.buffer_mut(i)[len..len + 4].copy_from_slice(b"more");
                batch.set_len(i, len + 4).unwrap();
                let v = if i % 5 == 4 {
                    Verdict::Kernel
                } else {
                    Verdict::TxOn(PortId((i % 3) as u16))
                };
                batch.set_verdict(i, v);
            }
        }
    }

    #[test]
    fn step_sends_to_each_port_and_counts_what_it_cannot() {
        let f = frames(10);
        let templates: Vec<&[u8]> = f.iter().map(Vec::as_slice).collect();
        let mut t = MemTransport::new(&templates, 10, 2048).with_ports(2);
        let mut c = Local::default();
        assert_eq!(
            step(
                &mut t,
                PortId(1),
                &mut Spread,
                &mut Scratch::new(),
                10,
                &mut c
            ),
            10
        );
        // i = 0..10: kernel for 4, 9; port 0 for 0, 3, 6; port 1 for 1, 7; port 2 for 2, 5, 8.
        assert_eq!((t.transmitted_on(0), t.transmitted_on(1)), (3, 2));
        assert_eq!(c.drops[DropReason::NoKernelPath.index()], 2);
        assert_eq!(c.drops[DropReason::NoSuchPort.index()], 3);
        assert_eq!((c.ports[1].rx_packets, c.ports[0].rx_packets), (10, 0));
        assert_eq!((c.ports[0].tx_packets, c.ports[1].tx_packets), (3, 2));
        assert_eq!(
            c.ports[0].tx_bytes,
            3 * 10,
            "sent frames carry their new length"
        );
        assert_eq!(c.tx_bytes, 5 * 10);
        assert_eq!(c.rx_bytes, 10 * 6);
        assert_eq!(t.outstanding(), 0);
        assert_eq!(
            &t.frame(3)[6..],
            b"more",
            "the transport sends the grown frame"
        );
    }

    /// Hands every frame to the kernel.
    struct ToKernel;

    impl App for ToKernel {
        fn name(&self) -> &'static str {
            "to-kernel"
        }
        fn process(&mut self, batch: &mut Batch<'_, '_>) {
            for i in 0..batch.len() {
                batch.set_verdict(i, Verdict::Kernel);
            }
        }
    }

    #[test]
    fn kernel_verdicts_reach_a_socket_through_the_tap() {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true needs root here"
            );
            eprintln!("skipping: the kernel path needs a TAP device (root)");
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let tap = crate::sys::create_tap("sktap0").unwrap();
            // Test-only: the library never shells out.
            let st = std::process::Command::new("ip")
                .args(["addr", "add", "10.8.0.1/24", "dev", "sktap0"])
                .status()
                .unwrap();
            assert!(st.success());
            let sock = std::net::UdpSocket::bind("10.8.0.1:5555").unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut frame = Vec::new();
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [0xff; 6])
                .ipv4([10, 8, 0, 2], [10, 8, 0, 1], 64)
                .udp(4444, 5555)
                .write(&mut frame, b"to the stack")
                .unwrap();
            let mut t = MemTransport::new(&[&frame], 4, 2048);
            let mut s = Scratch::new();
            s.set_kernel_path(KernelPath::new(Arc::new(tap.fd), MacAddr(tap.mac)));
            let mut c = Local::default();
            assert_eq!(step(&mut t, PortId(0), &mut ToKernel, &mut s, 1, &mut c), 1);
            assert_eq!((c.to_kernel, c.dropped(), t.outstanding()), (1, 0, 0));
            let mut buf = [0u8; 64];
            let (n, from) = sock
                .recv_from(&mut buf)
                .expect("the kernel delivered the frame");
            assert_eq!(&buf[..n], b"to the stack");
            assert_eq!(from, "10.8.0.2:4444".parse().unwrap());
            // A frame for a port whose link is down takes the kernel path too.
            let down: Arc<[AtomicBool]> = (0..2).map(|_| AtomicBool::new(false)).collect();
            s.set_ports_down(down.clone());
            down[1].store(true, Ordering::Relaxed);
            let mut t2 = MemTransport::new(&[&frame], 4, 2048).with_ports(2);
            let mut c = Local::default();
            step(&mut t2, PortId(0), &mut Spread, &mut s, 2, &mut c);
            // Spread sends frame 0 to port 0 (up) and frame 1 to port 1 (down: the kernel).
            assert_eq!(
                (t2.transmitted_on(0), t2.transmitted_on(1), c.to_kernel),
                (1, 0, 1)
            );
            let (n, _) = sock
                .recv_from(&mut buf)
                .expect("the diverted frame arrived");
            assert_eq!(&buf[..n], b"to the stack");
            // Without a path the same verdict is a counted drop.
            let mut c = Local::default();
            step(
                &mut t,
                PortId(0),
                &mut ToKernel,
                &mut Scratch::new(),
                1,
                &mut c,
            );
            assert_eq!(c.drops[DropReason::NoKernelPath.index()], 1);
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }

    /// Prepends a 4-byte tag (as an encapsulating app would) and sends the frame back.
    struct Tag;

    impl App for Tag {
        fn name(&self) -> &'static str {
            "tag"
        }
        fn process(&mut self, batch: &mut Batch<'_, '_>) {
            for i in 0..batch.len() {
                if batch.push_head(i, 4).is_ok() {
                    batch.frame_mut(i)[..4].copy_from_slice(b"TAG:");
                    batch.set_verdict(i, Verdict::Tx);
                }
            }
        }
    }

    #[test]
    fn a_frame_grown_at_the_front_is_sent_from_its_new_start() {
        let f = frames(2);
        let templates: Vec<&[u8]> = f.iter().map(Vec::as_slice).collect();
        let mut t = MemTransport::new(&templates, 2, 2048);
        let mut c = Local::default();
        assert_eq!(
            step(&mut t, PortId(0), &mut Tag, &mut Scratch::new(), 2, &mut c),
            2
        );
        assert_eq!(&t.frame(1)[..4], b"TAG:");
        assert_eq!(
            &t.frame(1)[4..],
            &f[1][..],
            "the original bytes follow the new header"
        );
        assert_eq!((c.rx_bytes, c.tx_bytes), (2 * 6, 2 * 10));
        assert_eq!(t.outstanding(), 0);
    }
}
