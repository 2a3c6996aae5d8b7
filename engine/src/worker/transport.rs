//! What the worker needs from a transport, and the one batch step that uses it.
//!
//! The worker's per-batch work — take received frames, let the app judge them, send the `Tx`
//! ones, give the rest back, count everything — is [`step`], written once against the
//! [`Transport`] trait. [`XskQueue`] implements it for real traffic; [`super::mem::MemTransport`]
//! implements it over memory so the same code can be benchmarked and unit-tested without a
//! kernel in the way.

use super::stats::Local;
use crate::apps::App;
use crate::batch::{Batch, DropReason, Verdict};
use crate::xsk::{Desc, Kick, MAX_BATCH, XskQueue};

/// A source and sink of frames that lends their bytes in place (AF_XDP, or memory in tests).
///
/// Contract (what [`step`] relies on): every frame [`Transport::receive`] hands out belongs to
/// the caller until the caller passes its descriptor to [`Transport::transmit`] (and it was
/// queued) or to [`Transport::recycle`]; the caller hands every frame back, exactly once.
pub trait Transport {
    /// Take up to `descs.len()` received frames; returns how many, described in `descs[..n]`.
    fn receive(&mut self, descs: &mut [Desc]) -> usize;

    /// Lend the bytes of the frames `descs` (just received) into `out[..descs.len()]`. A
    /// descriptor the transport cannot lend gets an empty slice and its `len` set to 0; returns
    /// how many there were.
    fn frames_mut<'a>(&'a mut self, descs: &mut [Desc], out: &mut [&'a mut [u8]]) -> u32;

    /// Send `descs` in order, as many as there is room for; returns how many (a prefix) and what
    /// the kick that followed did. Frames not taken are still the caller's.
    fn transmit(&mut self, descs: &[Desc]) -> (usize, Kick);

    /// Take frames back unsent; returns how many had to wait in a stash for ring room.
    fn recycle(&mut self, descs: &[Desc]) -> u32;
}

impl Transport for XskQueue {
    #[inline]
    fn receive(&mut self, descs: &mut [Desc]) -> usize {
        XskQueue::receive(self, descs)
    }

    #[inline]
    fn frames_mut<'a>(&'a mut self, descs: &mut [Desc], out: &mut [&'a mut [u8]]) -> u32 {
        XskQueue::frames_mut(self, descs, out)
    }

    #[inline]
    fn transmit(&mut self, descs: &[Desc]) -> (usize, Kick) {
        XskQueue::transmit(self, descs)
    }

    #[inline]
    fn recycle(&mut self, descs: &[Desc]) -> u32 {
        XskQueue::recycle(self, descs)
    }
}

/// Fixed scratch space for [`step`], allocated once per worker (about 12 KiB), so the hot loop
/// never allocates.
pub struct Scratch {
    descs: [Desc; MAX_BATCH],
    verdicts: [Verdict; MAX_BATCH],
    tx: [Desc; MAX_BATCH],
    back: [Desc; MAX_BATCH],
}

impl Scratch {
    /// Scratch space on the heap (it is too big to move around on the stack cheaply).
    pub fn new() -> Box<Self> {
        Box::new(Scratch {
            descs: [Desc::default(); MAX_BATCH],
            verdicts: [Verdict::Drop(DropReason::Policy); MAX_BATCH],
            tx: [Desc::default(); MAX_BATCH],
            back: [Desc::default(); MAX_BATCH],
        })
    }
}

/// One batch: take up to `max` (≤ [`MAX_BATCH`]) frames from `t`, run `app` over them in place,
/// transmit the frames judged [`Verdict::Tx`] in their original order and hand every other
/// frame back to `t`, counting all of it into `c`. Returns the number of frames received (0 when
/// there were none: nothing else happened then).
///
/// A frame the transport could not lend (empty, `len` 0) is never sent: it counts as
/// `bad_desc` and as a `truncated` drop, whatever the app said. A `Tx` frame that finds the
/// transmit ring full is given back and counted as `tx_ring_full`. No allocation, no syscall
/// beyond the transport's own, no lock.
#[inline]
pub fn step<T: Transport, A: App + ?Sized>(
    t: &mut T,
    app: &mut A,
    s: &mut Scratch,
    max: usize,
    c: &mut Local,
) -> usize {
    let n = t.receive(&mut s.descs[..max.min(MAX_BATCH)]);
    if n == 0 {
        return 0;
    }
    // The frame slices live on the stack for the app's call only; an array sized to the batch
    // (not always MAX_BATCH) keeps their initialisation off the per-packet cost.
    let (descs, verdicts) = (&mut s.descs[..n], &mut s.verdicts[..n]);
    c.bad_desc += u64::from(match n {
        0..=32 => lend_and_process::<_, _, 32>(t, app, descs, verdicts),
        33..=64 => lend_and_process::<_, _, 64>(t, app, descs, verdicts),
        65..=128 => lend_and_process::<_, _, 128>(t, app, descs, verdicts),
        _ => lend_and_process::<_, _, MAX_BATCH>(t, app, descs, verdicts),
    });
    let (mut ntx, mut nback) = (0, 0);
    let mut rx_bytes = 0;
    for (d, v) in s.descs[..n].iter().zip(&s.verdicts[..n]) {
        rx_bytes += u64::from(d.len);
        match *v {
            Verdict::Tx if d.len > 0 => {
                s.tx[ntx] = *d;
                ntx += 1;
                continue;
            }
            Verdict::Tx => c.drops[DropReason::Truncated.index()] += 1,
            Verdict::Drop(_) if d.len == 0 => c.drops[DropReason::Truncated.index()] += 1,
            Verdict::Drop(reason) => c.drops[reason.index()] += 1,
        }
        s.back[nback] = *d;
        nback += 1;
    }
    c.rx_packets += n as u64;
    c.rx_bytes += rx_bytes;
    c.batches += 1;
    if ntx > 0 {
        let (sent, kick) = t.transmit(&s.tx[..ntx]);
        c.tx_packets += sent as u64;
        c.tx_bytes += s.tx[..sent].iter().map(|d| u64::from(d.len)).sum::<u64>();
        c.kicks += u64::from(kick.kicks);
        c.kick_errors += u64::from(kick.errors);
        let unsent = &s.tx[sent..ntx];
        c.tx_ring_full += unsent.len() as u64;
        s.back[nback..nback + unsent.len()].copy_from_slice(unsent);
        nback += unsent.len();
    }
    if nback > 0 {
        c.fill_shortfall += u64::from(t.recycle(&s.back[..nback]));
    }
    n
}

/// Lend the frames of `descs` (at most `N`) and run `app` over them; returns how many the
/// transport could not lend.
#[inline(always)]
fn lend_and_process<T: Transport, A: App + ?Sized, const N: usize>(
    t: &mut T,
    app: &mut A,
    descs: &mut [Desc],
    verdicts: &mut [Verdict],
) -> u32 {
    let n = descs.len();
    let mut frames: [&mut [u8]; N] = std::array::from_fn(|_| <&mut [u8]>::default());
    let bad = t.frames_mut(descs, &mut frames[..n]);
    app.process(&mut Batch::new(&mut frames[..n], verdicts));
    bad
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
        assert_eq!(step(&mut t, &mut EvenOdd, &mut s, 5, &mut c), 5);
        assert_eq!(
            step(&mut t, &mut EvenOdd, &mut s, 64, &mut c),
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
        fn receive(&mut self, descs: &mut [Desc]) -> usize {
            self.inner.receive(descs)
        }
        fn frames_mut<'a>(&'a mut self, descs: &mut [Desc], out: &mut [&'a mut [u8]]) -> u32 {
            let bad = self.inner.frames_mut(descs, out);
            descs[0].len = 0; // as the AF_XDP transport does for a descriptor outside the UMEM
            out[0] = <&mut [u8]>::default();
            bad + 1
        }
        fn transmit(&mut self, descs: &[Desc]) -> (usize, Kick) {
            let n = descs.len().min(self.room);
            let (sent, _) = self.inner.transmit(&descs[..n]);
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
            step(&mut t, &mut EvenOdd, &mut Scratch::new(), 8, &mut c),
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
}
