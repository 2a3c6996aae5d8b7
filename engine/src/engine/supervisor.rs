//! The link-event supervisor: what the engine does when its interfaces change under it.
//!
//! A port whose link goes down is logged; when every port is down the workers park (no ring
//! work, no failing kicks) until one is back — with several ports the others keep working, so
//! an app can fail over to them. An MTU change is logged, with a warning when frames would no
//! longer fit a UMEM frame; a port's deletion stops the engine.

use super::RunError;
use super::preflight::{L2_OVERHEAD, frame_room};
use crate::control::mirror::{LinkEvent, LinkEventKind};
use crate::xsk::XskConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Follows the link events of the engine's ports and acts on them.
pub(super) struct LinkSupervisor {
    ports: Vec<(String, u32)>,
    down: Vec<bool>,
    room: u32,
    park: Arc<AtomicBool>,
}

impl LinkSupervisor {
    /// Supervise the ports `(name, ifindex)` whose workers park on `park`.
    pub(super) fn new(ports: Vec<(String, u32)>, xsk: &XskConfig, park: Arc<AtomicBool>) -> Self {
        LinkSupervisor {
            down: vec![false; ports.len()],
            ports,
            room: frame_room(xsk),
            park,
        }
    }

    /// Act on one event; returns the error that must stop the engine, if it is one.
    pub(super) fn on_event(&mut self, ev: &LinkEvent) -> Option<RunError> {
        let p = self
            .ports
            .iter()
            .position(|(_, ifindex)| *ifindex == ev.ifindex)?;
        let iface = self.ports[p].0.clone();
        match ev.kind {
            LinkEventKind::Down => {
                self.down[p] = true;
                if self.down.iter().all(|d| *d) {
                    if !self.park.swap(true, Ordering::Relaxed) {
                        log::warn!("{iface}: link down; workers parked until it comes back");
                    }
                } else {
                    log::warn!("{iface}: link down; the other port(s) keep working");
                }
            }
            LinkEventKind::Up => {
                self.down[p] = false;
                if self.park.swap(false, Ordering::Relaxed) {
                    log::info!("{iface}: link up; workers resumed");
                } else if self.ports.len() > 1 {
                    log::info!("{iface}: link up");
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
            LinkEventKind::Deleted => return Some(RunError::InterfaceDeleted(iface)),
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
        let ports = vec![("veth0".to_string(), 7)];
        let mut s = LinkSupervisor::new(ports, &XskConfig::default(), park.clone());
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

    #[test]
    fn with_two_ports_only_both_down_parks() {
        let park = Arc::new(AtomicBool::new(false));
        let ports = vec![("a".to_string(), 7), ("b".to_string(), 9)];
        let mut s = LinkSupervisor::new(ports, &XskConfig::default(), park.clone());
        s.on_event(&ev(7, LinkEventKind::Down));
        assert!(!park.load(Ordering::Relaxed), "port b still works");
        s.on_event(&ev(9, LinkEventKind::Down));
        assert!(park.load(Ordering::Relaxed));
        s.on_event(&ev(7, LinkEventKind::Up));
        assert!(!park.load(Ordering::Relaxed));
        let e = s.on_event(&ev(9, LinkEventKind::Deleted)).unwrap();
        assert_eq!(e.to_string(), "interface b was deleted; stopped");
    }
}
