//! One AF_XDP ring, mapped from its socket: sluice's own, because xdpilone can only map the
//! rings of sockets it created itself (its socket and ring types have no constructor from an
//! existing fd), and a successor process must map the rings of sockets it was handed.
//!
//! The producer and consumer indices live in the shared mapping; [`Ring::map`] starts from the
//! values it finds there (never from zero), so the rings of a socket another process has been
//! using are picked up exactly where that process left them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `XDP_PGOFF_RX_RING` and friends (`include/uapi/linux/if_xdp.h`): where each ring is found
/// in the socket's mmap space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Which {
    Rx,
    Tx,
    Fill,
    Completion,
}

impl Which {
    fn pgoff(self) -> libc::off_t {
        match self {
            Which::Rx => 0,
            Which::Tx => 0x8000_0000,
            Which::Fill => 0x1_0000_0000,
            Which::Completion => 0x1_8000_0000,
        }
    }

    fn entry_size(self) -> u64 {
        match self {
            Which::Rx | Which::Tx => std::mem::size_of::<RawDesc>() as u64,
            Which::Fill | Which::Completion => 8,
        }
    }
}

/// `struct xdp_desc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RawDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// `XDP_RING_NEED_WAKEUP`.
const NEED_WAKEUP: u32 = 1;

/// A mapped ring and this side's cached view of its two indices. For a ring user space
/// produces into (fill, TX) `cached_prod` is authoritative and `cached_cons` a possibly stale
/// copy of the kernel's; for one it consumes from (RX, completion) the other way round.
pub(super) struct Ring {
    map: NonNull<u8>,
    map_len: usize,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: Option<NonNull<AtomicU32>>,
    desc: NonNull<u8>,
    mask: u32,
    size: u32,
    cached_prod: u32,
    cached_cons: u32,
}

// SAFETY: the pointers point into a mapping owned by this value; it has no thread affinity.
unsafe impl Send for Ring {}

impl Ring {
    /// Map ring `which` of socket `fd`, `size` entries (as configured on the socket, a power
    /// of two), at the offsets the kernel reports.
    pub(super) fn map(fd: BorrowedFd<'_>, which: Which, size: u32) -> io::Result<Ring> {
        if size == 0 || !size.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring size {size} is not a power of two"),
            ));
        }
        let offs = rustix::net::sockopt::xdp_mmap_offsets(fd)?;
        let off = match which {
            Which::Rx => offs.rx,
            Which::Tx => offs.tx,
            Which::Fill => offs.fr,
            Which::Completion => offs.cr,
        };
        let map_len = (off.desc + u64::from(size) * which.entry_size()) as usize;
        // SAFETY: a shared mapping of the socket's ring at the kernel's documented page offset;
        // the kernel checks the length against the ring it allocated (EINVAL if larger). The
        // result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                which.pgoff(),
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap NULL"))?;
        let at = |o: u64| {
            // SAFETY: the kernel's offsets lie inside the mapping of `map_len` bytes.
            unsafe { NonNull::new_unchecked(map.as_ptr().add(o as usize)) }
        };
        let producer = at(off.producer).cast::<AtomicU32>();
        let consumer = at(off.consumer).cast::<AtomicU32>();
        // SAFETY: both point at the ring's index words, live for the mapping.
        let (p, c) = unsafe {
            (
                producer.as_ref().load(Ordering::Acquire),
                consumer.as_ref().load(Ordering::Acquire),
            )
        };
        Ok(Ring {
            map,
            map_len,
            producer,
            consumer,
            flags: off.flags.map(|f| at(f).cast::<AtomicU32>()),
            desc: at(off.desc),
            mask: size - 1,
            size,
            cached_prod: p,
            cached_cons: c,
        })
    }

    /// Reload both cached indices from the shared memory: after another process (the
    /// predecessor of a hot upgrade) has used the ring since it was mapped here.
    pub(super) fn resync(&mut self) {
        self.cached_prod = self.prod().load(Ordering::Acquire);
        self.cached_cons = self.cons().load(Ordering::Acquire);
    }

    #[inline]
    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping, which lives as long as `self`.
        unsafe { self.producer.as_ref() }
    }

    #[inline]
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }
    }

    /// Entries in the ring right now: produced and not yet consumed (shared indices).
    #[inline]
    pub(super) fn pending(&self) -> u32 {
        self.prod()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cons().load(Ordering::Acquire))
    }

    /// True if the kernel asked to be woken (need_wakeup).
    #[inline]
    pub(super) fn needs_wakeup(&self) -> bool {
        self.flags.is_some_and(|f| {
            // SAFETY: points into the mapping.
            unsafe { f.as_ref() }.load(Ordering::Relaxed) & NEED_WAKEUP != 0
        })
    }

    // ---- producer side (fill, TX) ----

    /// Free slots, up to `want`; refreshes the kernel's consumer index only when the cached
    /// view shows fewer than `want`.
    #[inline]
    pub(super) fn free(&mut self, want: u32) -> u32 {
        let mut free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free < want {
            self.cached_cons = self.cons().load(Ordering::Acquire);
            free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        }
        free.min(want)
    }

    /// Write `addr` into the `i`-th slot after the producer index (a fill ring). `i` must be
    /// below what [`Ring::free`] granted.
    #[inline]
    pub(super) fn write_addr(&mut self, i: u32, addr: u64) {
        let slot = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot < size, inside the descriptor array of 8-byte entries; the slot is free
        // (granted by `free`), so the kernel does not read it until `submit`.
        unsafe { self.desc.cast::<u64>().as_ptr().add(slot).write(addr) }
    }

    /// Write `d` into the `i`-th slot after the producer index (a TX ring).
    #[inline]
    pub(super) fn write_desc(&mut self, i: u32, d: RawDesc) {
        let slot = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: as in `write_addr`, with 16-byte `xdp_desc` entries.
        unsafe { self.desc.cast::<RawDesc>().as_ptr().add(slot).write(d) }
    }

    /// Publish `n` written slots to the kernel.
    #[inline]
    pub(super) fn submit(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.prod().store(self.cached_prod, Ordering::Release);
    }

    // ---- consumer side (RX, completion) ----

    /// Entries ready to be consumed, up to `want`.
    #[inline]
    pub(super) fn available(&mut self, want: u32) -> u32 {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail < want {
            self.cached_prod = self.prod().load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        avail.min(want)
    }

    /// Entries ready right now (refreshing the producer index), without consuming any.
    #[inline]
    pub(super) fn ready(&self) -> u32 {
        self.prod()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cached_cons)
    }

    /// The `i`-th address after the consumer index (a completion ring).
    #[inline]
    pub(super) fn read_addr(&self, i: u32) -> u64 {
        let slot = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot < size; the entry was published by the kernel (below `available`).
        unsafe { self.desc.cast::<u64>().as_ptr().add(slot).read() }
    }

    /// The `i`-th descriptor after the consumer index (an RX ring).
    #[inline]
    pub(super) fn read_desc(&self, i: u32) -> RawDesc {
        let slot = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: as in `read_addr`.
        unsafe { self.desc.cast::<RawDesc>().as_ptr().add(slot).read() }
    }

    /// Hand `n` consumed entries back to the kernel.
    #[inline]
    pub(super) fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.cons().store(self.cached_cons, Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `map` created.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}
