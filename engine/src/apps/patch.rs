//! The `patch` app: a patch cable between ports. Every frame goes out of the partner of the port
//! it came in on — port 0 ↔ port 1, 2 ↔ 3, … — unchanged; a port without a partner (the last of
//! an odd number, or the only one) sends it back out of itself. It is the port-to-port
//! forwarding baseline: what moving a frame between interfaces costs with no lookup at all (it
//! reads no byte of the frame), and a check that frames cross the shared UMEM intact.

use super::{App, Batch, Verdict};
use crate::batch::PortId;

/// Sends every frame out of the partner port, unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Patch {
    ports: u16,
}

impl Patch {
    /// A patch over `ports` ports.
    pub const fn new(ports: u16) -> Self {
        Patch { ports }
    }

    /// The port a frame that arrived on `ingress` leaves by.
    #[inline]
    pub const fn partner(&self, ingress: PortId) -> PortId {
        let p = ingress.0 ^ 1;
        if p < self.ports { PortId(p) } else { ingress }
    }
}

impl App for Patch {
    fn name(&self) -> &'static str {
        "patch"
    }

    #[inline]
    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        batch.set_all_verdicts(Verdict::TxOn(self.partner(batch.ingress())));
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn partners() {
        let p = Patch::new(3);
        assert_eq!(p.partner(PortId(0)), PortId(1));
        assert_eq!(p.partner(PortId(1)), PortId(0));
        assert_eq!(
            p.partner(PortId(2)),
            PortId(2),
            "no port 3: back out of itself"
        );
        assert_eq!(Patch::new(1).partner(PortId(0)), PortId(0));
    }

    #[test]
    fn every_frame_goes_to_the_partner_untouched() {
        let mut a = [7u8; 60];
        let mut b = [9u8; 20];
        let mut bufs: [&mut [u8]; 2] = [&mut a, &mut b];
        let mut lens = [60u32, 20];
        let mut verdicts = [Verdict::Tx; 2];
        let mut starts = [0u32, 0];
        let mut batch =
            Batch::with_room(&mut bufs, &mut starts, &mut lens, &mut verdicts, PortId(1));
        Patch::new(2).process(&mut batch);
        assert_eq!(batch.verdicts(), [Verdict::TxOn(PortId(0)); 2]);
        assert_eq!((a, b), ([7u8; 60], [9u8; 20]));
    }
}
