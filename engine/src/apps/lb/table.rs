//! The balancer's tables as the workers see them: the VIPs, each with its Maglev table, and
//! every backend a flow may be on. Built whole off the fast path from a list of
//! [`ServiceSpec`]s (the control plane's view: configuration, admin changes, health) and
//! swapped in through an [`LbHandle`]; a worker loads the current one once per batch.
//!
//! A backend is in a VIP's Maglev table only if it takes new flows ([`BackendSpec::takes_new`]:
//! weight above 0, not drained, not down). It stays in [`LbTable::backend_of`] as long as it is
//! configured, so the flows a worker's connection table remembers on it keep going (drain).
//! A backend removed from the configuration is gone from both, and the next packet of each of
//! its flows is re-hashed (remove). Backend ids are never reused by one control plane, so an
//! id remembered by a connection table can never name another backend.

pub use super::config::{Forwarding, Vip};
pub use super::flow::BackendId;
use super::maglev::{Backend, Maglev, MaglevError};
use crate::wire::IpProtocol;
use arc_swap::{ArcSwap, Guard};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

/// One backend of a [`ServiceSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Its id, unique among every backend the control plane ever had.
    pub id: BackendId,
    /// Its address.
    pub addr: IpAddr,
    /// Its Maglev weight.
    pub weight: u32,
    /// Whether it gets new flows (not drained, not down by health checks).
    pub takes_new: bool,
}

/// One VIP and its backends, as the table is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service.
    pub vip: Vip,
    /// How its packets reach the backends.
    pub forwarding: Forwarding,
    /// Its backends.
    pub backends: Vec<BackendSpec>,
}

/// A VIP in the table.
#[derive(Debug)]
pub struct VipEntry {
    /// The service.
    pub vip: Vip,
    /// How its packets reach the backends.
    pub forwarding: Forwarding,
    maglev: Maglev,
}

impl VipEntry {
    /// The Maglev table (empty when no backend takes new flows).
    pub fn maglev(&self) -> &Maglev {
        &self.maglev
    }
}

/// A backend in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendEntry {
    /// Its address.
    pub addr: IpAddr,
    /// The index of its VIP in this table.
    pub vip: u32,
}

/// The key of the VIP index: address, protocol, port (0 = every port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct VipKey {
    addr: IpAddr,
    proto: u8,
    port: u16,
}

/// A fast, unkeyed hasher for the table's maps. Their keys come from the configuration, not
/// from packets, so nobody outside can pick colliding ones; SipHash would cost more than the
/// rest of a lookup.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // fmix64's last rounds: the maps take the low bits.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// The VIPs and backends at one moment. Immutable; see the module docs.
#[derive(Debug, Default)]
pub struct LbTable {
    vips: Vec<VipEntry>,
    by_key: FxMap<VipKey, u32>,
    backends: FxMap<BackendId, BackendEntry>,
    /// Distinct VIP addresses (for ICMP errors about VIP flows).
    addresses: Vec<IpAddr>,
}

/// Why a table could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    /// A VIP's Maglev table could not be built.
    #[error("{vip}: {source}")]
    Maglev {
        /// The VIP.
        vip: Vip,
        /// Why.
        #[source]
        source: MaglevError,
    },
    /// The same VIP twice.
    #[error("{0} is listed twice")]
    DuplicateVip(Vip),
    /// The same backend id twice (ids must be unique across VIPs).
    #[error("backend id {} is used twice", .0.0)]
    DuplicateBackend(BackendId),
}

impl LbTable {
    /// Builds the table: one Maglev table of `maglev_size` slots per VIP. Costs what Maglev
    /// costs (tens of milliseconds per VIP at the default size): never on a worker.
    pub fn build(services: &[ServiceSpec], maglev_size: u32) -> Result<LbTable, TableError> {
        let mut table = LbTable::default();
        for (i, s) in services.iter().enumerate() {
            let members: Vec<Backend> = s
                .backends
                .iter()
                .map(|b| Backend {
                    id: b.id,
                    addr: b.addr,
                    weight: if b.takes_new { b.weight } else { 0 },
                })
                .collect();
            let maglev = Maglev::new(maglev_size, &members)
                .map_err(|source| TableError::Maglev { vip: s.vip, source })?;
            let index = i as u32;
            let key = VipKey {
                addr: s.vip.address,
                proto: s.vip.proto.ip_proto(),
                port: s.vip.port,
            };
            if table.by_key.insert(key, index).is_some() {
                return Err(TableError::DuplicateVip(s.vip));
            }
            for b in &s.backends {
                let entry = BackendEntry {
                    addr: b.addr,
                    vip: index,
                };
                if table.backends.insert(b.id, entry).is_some() {
                    return Err(TableError::DuplicateBackend(b.id));
                }
            }
            if !table.addresses.contains(&s.vip.address) {
                table.addresses.push(s.vip.address);
            }
            table.vips.push(VipEntry {
                vip: s.vip,
                forwarding: s.forwarding,
                maglev,
            });
        }
        Ok(table)
    }

    /// The VIP a packet to `addr`, protocol `proto`, destination port `port` belongs to: the
    /// VIP on that port, else the VIP on every port of the protocol.
    #[inline]
    pub fn vip(&self, addr: IpAddr, proto: IpProtocol, port: u16) -> Option<(u32, &VipEntry)> {
        let mut key = VipKey {
            addr,
            proto: proto.0,
            port,
        };
        let index = match self.by_key.get(&key) {
            Some(&i) => i,
            None => {
                key.port = 0;
                *self.by_key.get(&key)?
            }
        };
        Some((index, &self.vips[index as usize]))
    }

    /// Whether `addr` is the address of some VIP.
    #[inline]
    pub fn is_vip_address(&self, addr: IpAddr) -> bool {
        self.addresses.contains(&addr)
    }

    /// The backend a new flow of hash `hash` to VIP `vip` goes to; `None` if none takes new
    /// flows.
    #[inline]
    pub fn pick(&self, vip: u32, hash: u32) -> Option<BackendId> {
        self.vips.get(vip as usize)?.maglev.lookup(hash)
    }

    /// Backend `id` if it is configured on VIP `vip` (drained or down ones too).
    #[inline]
    pub fn backend_of(&self, vip: u32, id: BackendId) -> Option<BackendEntry> {
        self.backends.get(&id).copied().filter(|b| b.vip == vip)
    }

    /// The VIPs, in the order they were given.
    pub fn vips(&self) -> &[VipEntry] {
        &self.vips
    }
}

/// The current [`LbTable`], shared by the control plane (which stores new ones) and the
/// workers (which load it once per batch, lock-free).
#[derive(Clone, Debug)]
pub struct LbHandle(Arc<ArcSwap<LbTable>>);

impl LbHandle {
    /// A handle serving `table`.
    pub fn new(table: LbTable) -> Self {
        LbHandle(Arc::new(ArcSwap::from_pointee(table)))
    }

    /// The table now: one atomic load.
    #[inline]
    pub fn load(&self) -> Guard<Arc<LbTable>> {
        self.0.load()
    }

    /// Replaces the table; workers see it from their next batch.
    pub fn store(&self, table: LbTable) {
        self.0.store(Arc::new(table));
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::steer::L4Proto;
    use std::net::Ipv4Addr;

    fn vip(port: u16) -> Vip {
        Vip {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            port,
            proto: L4Proto::Tcp,
        }
    }

    fn backend(id: u32, last: u8, takes_new: bool) -> BackendSpec {
        BackendSpec {
            id: BackendId(id),
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 1, last)),
            weight: 1,
            takes_new,
        }
    }

    fn spec(port: u16, backends: Vec<BackendSpec>) -> ServiceSpec {
        ServiceSpec {
            vip: vip(port),
            forwarding: Forwarding::Dsr,
            backends,
        }
    }

    #[test]
    fn exact_port_first_then_every_port() {
        let t = LbTable::build(
            &[
                spec(0, vec![backend(1, 1, true)]),
                spec(80, vec![backend(2, 2, true)]),
            ],
            7,
        )
        .unwrap();
        let a = vip(0).address;
        assert_eq!(t.vip(a, IpProtocol::TCP, 80).unwrap().0, 1);
        assert_eq!(t.vip(a, IpProtocol::TCP, 81).unwrap().0, 0);
        assert!(t.vip(a, IpProtocol::UDP, 80).is_none());
        assert!(
            t.vip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpProtocol::TCP, 80)
                .is_none()
        );
        assert!(t.is_vip_address(a));
        assert!(!t.is_vip_address(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1))));
    }

    #[test]
    fn drained_backends_stay_known_but_get_no_new_flows() {
        let t = LbTable::build(
            &[spec(80, vec![backend(1, 1, true), backend(2, 2, false)])],
            13,
        )
        .unwrap();
        assert!((0..1000u32).all(|h| t.pick(0, h.wrapping_mul(0x9e37_79b9)) == Some(BackendId(1))));
        assert_eq!(t.backend_of(0, BackendId(2)).unwrap().vip, 0);
        // Known only under its own VIP.
        assert!(t.backend_of(1, BackendId(2)).is_none());
        assert!(t.backend_of(0, BackendId(3)).is_none());
    }

    #[test]
    fn no_backend_taking_new_flows_picks_none() {
        let t = LbTable::build(&[spec(80, vec![backend(1, 1, false)])], 7).unwrap();
        assert_eq!(t.pick(0, 12345), None);
        assert!(t.backend_of(0, BackendId(1)).is_some());
    }

    #[test]
    fn duplicates_are_refused() {
        assert_eq!(
            LbTable::build(&[spec(80, vec![]), spec(80, vec![])], 7).unwrap_err(),
            TableError::DuplicateVip(vip(80))
        );
        assert_eq!(
            LbTable::build(
                &[
                    spec(80, vec![backend(1, 1, true)]),
                    spec(81, vec![backend(1, 2, true)])
                ],
                7
            )
            .unwrap_err(),
            TableError::DuplicateBackend(BackendId(1))
        );
    }

    #[test]
    fn handle_swaps_whole_tables() {
        let h = LbHandle::new(LbTable::default());
        assert!(h.load().vips().is_empty());
        h.store(LbTable::build(&[spec(80, vec![backend(1, 1, true)])], 7).unwrap());
        assert_eq!(h.load().vips().len(), 1);
    }
}
