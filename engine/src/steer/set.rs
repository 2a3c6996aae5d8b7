//! The steering of every port of an engine: one XDP program per interface, the same rules and
//! VIPs on each.

use super::{Counters, L4Proto, Rule, SteerError, SteerMode, Steering, VipMatch, XdpMode};

/// One [`Steering`] per port, in port order, kept in step: a rule or VIP is set on every port
/// or the call fails. Dropping it detaches every program.
pub struct SteeringSet {
    ports: Vec<Steering>,
}

impl SteeringSet {
    /// Load and attach the program to every interface of `ifaces`, in order. If one fails, the
    /// ones already attached are detached again (dropped) before the error returns.
    pub fn attach(ifaces: &[String], mode: XdpMode) -> Result<Self, SteerError> {
        let mut ports = Vec::with_capacity(ifaces.len());
        for iface in ifaces {
            ports.push(Steering::load_and_attach(iface, mode)?);
        }
        Ok(SteeringSet { ports })
    }

    /// The steering of port `i`.
    pub fn port_mut(&mut self, i: usize) -> &mut Steering {
        &mut self.ports[i]
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// True with no port (never, once attached).
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The mode the first port was attached in; the others are logged if they differ.
    pub fn granted_mode(&self) -> XdpMode {
        let first = self.ports[0].granted_mode();
        for s in &self.ports[1..] {
            if s.granted_mode() != first {
                log::warn!(
                    "{}: XDP {} mode, {}: {} mode",
                    self.ports[0].iface(),
                    first,
                    s.iface(),
                    s.granted_mode()
                );
            }
        }
        first
    }

    /// Switch every port's program to `mode` (see [`Steering::set_mode`]); stops at the first
    /// port that fails, leaving the earlier ones switched.
    pub fn set_mode(&mut self, mode: SteerMode) -> Result<(), SteerError> {
        self.ports.iter_mut().try_for_each(|s| s.set_mode(mode))
    }

    /// The mode of the first port (all ports are switched together).
    pub fn mode(&self) -> SteerMode {
        self.ports[0].mode()
    }

    /// Set `rule` on every port.
    pub fn set_rule(&mut self, rule: Rule) -> Result<(), SteerError> {
        self.ports.iter_mut().try_for_each(|s| s.set_rule(rule))
    }

    /// Remove the rule for `(proto, port)` from every port; true if any had it.
    pub fn remove_rule(&mut self, proto: L4Proto, port: u16) -> Result<bool, SteerError> {
        let mut had = false;
        for s in &mut self.ports {
            had |= s.remove_rule(proto, port)?;
        }
        Ok(had)
    }

    /// The rules (the same on every port; read from the first).
    pub fn rules(&self) -> Result<Vec<Rule>, SteerError> {
        self.ports[0].rules()
    }

    /// Set `vip` on every port (see [`Steering::set_vip`]); stops at the first port that
    /// fails, leaving the earlier ones with the VIP.
    pub fn set_vip(&mut self, vip: VipMatch) -> Result<(), SteerError> {
        self.ports.iter_mut().try_for_each(|s| s.set_vip(vip))
    }

    /// Remove `vip` from every port; true if any had it.
    pub fn remove_vip(&mut self, vip: VipMatch) -> Result<bool, SteerError> {
        let mut had = false;
        for s in &mut self.ports {
            had |= s.remove_vip(vip)?;
        }
        Ok(had)
    }

    /// The VIPs (the same on every port; read from the first), sorted.
    pub fn vips(&self) -> Result<Vec<VipMatch>, SteerError> {
        self.ports[0].vips()
    }

    /// The XDP programs' counters, summed over every port.
    pub fn counters(&self) -> Result<Counters, SteerError> {
        let mut total = Counters::default();
        for s in &self.ports {
            total.add(&s.counters()?);
        }
        Ok(total)
    }
}

impl SteeringSet {
    /// Take over every port's attachment from a predecessor (see [`Steering::adopt`]): `fds`
    /// holds, per port in order, the link and the five maps.
    pub fn adopt(
        ifaces: &[String],
        granted: XdpMode,
        prog_ids: &[u32],
        mut fds: Vec<std::os::fd::OwnedFd>,
        rules: &[Rule],
        mode: SteerMode,
    ) -> Result<Self, SteerError> {
        let per = Self::FDS_PER_PORT;
        let mut ports = Vec::with_capacity(ifaces.len());
        for (i, iface) in ifaces.iter().enumerate() {
            if fds.len() < per || prog_ids.len() <= i {
                return Err(SteerError::Object {
                    iface: iface.clone(),
                    what: "the hand-over passed too few fds for the XDP attachments".into(),
                    source: None,
                });
            }
            let rest = fds.split_off(per);
            let mine = std::mem::replace(&mut fds, rest);
            ports.push(Steering::adopt(
                iface,
                granted,
                mine,
                prog_ids[i],
                rules,
                mode,
            )?);
        }
        Ok(SteeringSet { ports })
    }

    /// Fds per port in [`SteeringSet::handover_fds`]: the link and five maps.
    pub const FDS_PER_PORT: usize = 6;

    /// Every port's link and map fds, port by port (see [`Steering::handover_fds`]).
    pub fn handover_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.ports.iter().flat_map(|s| s.handover_fds()).collect()
    }

    /// The attached program's id on every port, in order.
    pub fn program_ids(&self) -> Vec<u32> {
        self.ports.iter().map(|s| s.program_id()).collect()
    }

    /// Let go of every attachment without detaching (the successor holds the links).
    pub fn release(&mut self) {
        self.ports.iter_mut().for_each(Steering::release);
    }

    /// The adopted attachments are ours alone (see [`Steering::own_link`]).
    pub fn own_links(&mut self) {
        self.ports.iter_mut().for_each(Steering::own_link);
    }
}
