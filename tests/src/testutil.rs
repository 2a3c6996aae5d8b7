//! Helpers for this crate's privileged unit tests: checks that a namespace
//! is really gone, bounded waits.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Netns, Veth, VethOpts};

/// The inode number that identifies a network namespace.
pub(crate) fn ns_inode(fd: BorrowedFd<'_>) -> u64 {
    nix::sys::stat::fstat(fd)
        .expect("fstat on a netns fd")
        .st_ino
}

/// Whether `path` is a mount point in this process's mount namespace.
pub(crate) fn is_mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    let path = path.to_str().expect("utf-8 path");
    info.lines().any(|l| l.split(' ').nth(4) == Some(path))
}

/// How many of this process's fds refer to the network namespace `inode`.
pub(crate) fn fds_on_netns(inode: u64) -> usize {
    let want = format!("net:[{inode}]");
    fs::read_dir("/proc/self/fd")
        .expect("listing /proc/self/fd")
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.as_os_str() == want.as_str())
        .count()
}

/// Creates a veth from `observer` into `ns`. Its `observer` end vanishes
/// when — and only when — `ns` is destroyed (or the pair deleted), which
/// makes it a witness that the namespace really no longer exists. It holds
/// no reference on `ns`.
pub(crate) fn probe(observer: &Netns, name: &str, ns: &Netns) -> Veth {
    Veth::create(observer, name, ns, "probe", &VethOpts::default()).expect("creating a probe veth")
}

/// Waits (bounded) until `iface` no longer exists in `ns`.
pub(crate) fn wait_link_gone(ns: &Netns, iface: &str) {
    // Namespace teardown runs on a kernel workqueue after the last
    // reference is gone; on a loaded 2-core VM it can take a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ns.link(iface) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return,
            Err(e) => panic!("looking up {iface}: {e}"),
            Ok(_) if Instant::now() > deadline => {
                panic!(
                    "{iface} in {} still exists: its peer namespace was not destroyed",
                    ns.name()
                )
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What identifies a namespace after its `Netns` is gone.
pub(crate) struct Gone {
    name: String,
    path: std::path::PathBuf,
    inode: u64,
}

impl Gone {
    /// Records `ns` for [`Gone::assert`].
    pub(crate) fn record(ns: &Netns) -> Gone {
        Gone {
            name: ns.name().to_owned(),
            path: ns.path().to_owned(),
            inode: ns_inode(ns.fd().as_fd()),
        }
    }

    /// Asserts the namespace's file and mount are gone and no fd of this
    /// process refers to it.
    pub(crate) fn assert(&self) {
        assert!(!self.path.exists(), "{} still exists", self.path.display());
        assert!(
            !is_mounted(&self.path),
            "{} still mounted",
            self.path.display()
        );
        assert_eq!(
            fds_on_netns(self.inode),
            0,
            "fds still refer to netns {}",
            self.name
        );
    }
}
