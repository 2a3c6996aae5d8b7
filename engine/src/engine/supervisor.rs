//! The link-event supervisor: what the engine does when its interface changes under it.
//!
//! Link down parks the workers (no ring work, no failing kicks) until the link is back; an MTU
//! change is logged, with a warning when frames would no longer fit a UMEM frame; the interface's
//! deletion stops the engine.

use super::RunError;
use super::preflight::{L2_OVERHEAD, frame_room};
use crate::control::mirror::{LinkEvent, LinkEventKind};
use crate::xsk::XskConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Follows the link events of one interface and acts on them.
pub(super) struct LinkSupervisor {
    iface: String,
    ifindex: u32,
    room: u32,
    park: Arc<AtomicBool>,
}

impl LinkSupervisor {
    /// Supervise `iface` (index `ifindex`) whose workers park on `park`.
    pub(super) fn new(iface: &str, ifindex: u32, xsk: &XskConfig, park: Arc<AtomicBool>) -> Self {
        LinkSupervisor {
            iface: iface.to_string(),
            ifindex,
            room: frame_room(xsk),
            park,
        }
    }

    /// Act on one event; returns the error that must stop the engine, if it is one.
    pub(super) fn on_event(&mut self, ev: &LinkEvent) -> Option<RunError> {
        if ev.ifindex != self.ifindex {
            return None;
        }
        let iface = &self.iface;
        match ev.kind {
            LinkEventKind::Down => {
                if !self.park.swap(true, Ordering::Relaxed) {
                    log::warn!("{iface}: link down; workers parked until it comes back");
                }
            }
            LinkEventKind::Up => {
                if self.park.swap(false, Ordering::Relaxed) {
                    log::info!("{iface}: link up; workers resumed");
                }
            }
            LinkEventKind::MtuChanged { old, new } => {
                let room = self.room;
                if new + L2_OVERHEAD > room {
                    log::warn!(
                        "{iface}: MTU changed from {old} to {new}; frames over {room} bytes no longer fit a UMEM frame and will be dropped by the kernel (restart with a larger --frame-size)"
                    );
                } else {
                    log::info!("{iface}: MTU changed from {old} to {new}");
                }
            }
            LinkEventKind::Deleted => return Some(RunError::InterfaceDeleted(iface.clone())),
        }
        None
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn ev(ifindex: u32, kind: LinkEventKind) -> LinkEvent {
        LinkEvent {
            ifindex,
            name: "veth0".into(),
            kind,
        }
    }

    #[test]
    fn down_parks_up_resumes_delete_stops() {
        let park = Arc::new(AtomicBool::new(false));
        let mut s = LinkSupervisor::new("veth0", 7, &XskConfig::default(), park.clone());
        assert!(s.on_event(&ev(8, LinkEventKind::Down)).is_none());
        assert!(
            !park.load(Ordering::Relaxed),
            "another interface's event is ignored"
        );
        assert!(s.on_event(&ev(7, LinkEventKind::Down)).is_none());
        assert!(park.load(Ordering::Relaxed));
        assert!(s.on_event(&ev(7, LinkEventKind::Up)).is_none());
        assert!(!park.load(Ordering::Relaxed));
        let mtu = LinkEventKind::MtuChanged {
            old: 1500,
            new: 9000,
        };
        assert!(s.on_event(&ev(7, mtu)).is_none());
        let e = s.on_event(&ev(7, LinkEventKind::Deleted)).unwrap();
        assert_eq!(e.to_string(), "interface veth0 was deleted; stopped");
    }
}
