//! The UMEM area: a `memfd` mapped shared, owned by [`UmemArea`] and unmapped on drop.
//!
//! The memory comes from a `memfd` rather than an anonymous mapping so that a successor process
//! (a hot upgrade, see [`super::XskQueue::adopt`]) can map the very same pages from the passed
//! fd: frames the kernel holds or has queued keep their bytes across the hand-over.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

/// Memory shared with the kernel for one queue's AF_XDP sockets: `frame_count` frames of
/// `frame_size` bytes each. Unmapped when dropped, so it must outlive every ring that refers to
/// it (the owner, [`super::XskQueue`], declares it as its last field for that reason).
pub struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
    memfd: OwnedFd,
}

// SAFETY: the mapping is plain memory with no thread affinity; access is coordinated by the ring
// protocol (each frame is owned by exactly one party at a time), and `UmemArea` hands out frame
// slices only through `&mut self` methods of its owner.
#[allow(unsafe_code)]
unsafe impl Send for UmemArea {}

impl UmemArea {
    /// Create a `memfd` of `len` bytes named `name` and map it shared, pre-faulted
    /// (`MAP_POPULATE`); the pages start zeroed.
    pub fn new(len: usize, name: &str) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UMEM size is zero",
            ));
        }
        let memfd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&memfd, len as u64)?;
        Self::map(memfd, len)
    }

    /// Map an existing UMEM `memfd` (one a predecessor passed over), which must be exactly
    /// `len` bytes long.
    pub fn from_memfd(memfd: OwnedFd, len: usize) -> io::Result<Self> {
        let st = rustix::fs::fstat(&memfd)?;
        if st.st_size as u64 != len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the passed UMEM is {} bytes, the configuration needs {len}",
                    st.st_size
                ),
            ));
        }
        Self::map(memfd, len)
    }

    fn map(memfd: OwnedFd, len: usize) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: a shared mapping of a memfd we own, at offset 0 for its whole length, with no
        // address hint; the result is checked against MAP_FAILED before use.
        #[allow(unsafe_code)]
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                memfd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(UmemArea { ptr, len, memfd })
    }

    /// Length of the area in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the area is empty (never: `new` refuses a zero size).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base pointer of the area.
    pub(super) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The memfd behind the area, to pass to a successor.
    pub fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; the owner drops the rings and the
        // socket (which pin the pages in the kernel) before this field.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        if rc != 0 {
            log::warn!("munmap of UMEM failed: {}", io::Error::last_os_error());
        }
    }
}
