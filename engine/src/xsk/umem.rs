//! The UMEM area: one anonymous, page-aligned mapping owned by [`UmemArea`], unmapped on drop.

use std::io;
use std::ptr::NonNull;

/// Memory shared with the kernel for one AF_XDP socket: `frame_count` frames of `frame_size`
/// bytes each. Unmapped when dropped, so it must outlive every ring that refers to it (the owner,
/// [`super::XskQueue`], declares it as its last field for that reason).
pub struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory with no thread affinity; access is coordinated by the ring
// protocol (each frame is owned by exactly one party at a time), and `UmemArea` hands out frame
// slices only through `&mut self` methods of its owner.
#[allow(unsafe_code)]
unsafe impl Send for UmemArea {}

impl UmemArea {
    /// Map `len` bytes of zeroed, pre-faulted (`MAP_POPULATE`) anonymous memory.
    pub fn new(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UMEM size is zero",
            ));
        }
        // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
        // result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(UmemArea { ptr, len })
    }

    /// Length of the area in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the area is empty (never: `new` refuses a zero size).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole area as the raw slice pointer xdpilone registers with the kernel.
    pub fn as_raw(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// Base pointer of the area.
    pub(super) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
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
