//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, section 3.4): one lookup table per VIP mapping a flow hash to a
//! backend.
//!
//! This module owns the table and its construction, and the flow hash that indexes it. It
//! never does I/O, and [`Maglev::lookup`] — the only part on the per-packet path — is one
//! multiply and one array index: no allocation, no branch on the backend set. Building a
//! table allocates (`O(M)` memory, expected `O(M log M)` steps) and belongs to the control
//! plane.
//!
//! # Construction
//!
//! Each backend gets a permutation of the table's `M` slots (M prime), `offset + j·skip mod M`
//! for `j = 0, 1, …`, where `offset = h1(key) mod M` and `skip = h2(key) mod (M−1) + 1` come
//! from two independently seeded hashes of the backend's stable key (its address, see
//! [`Backend`]). The backends then take turns, each claiming the next slot of its permutation
//! not already claimed, until the table is full. Equal weights give every backend ⌊M/N⌋ or
//! ⌈M/N⌉ slots; adding or removing one backend moves few slots of the others (the paper's
//! "minimal disruption", measured in the tests below).
//!
//! **Weights** follow Katran's `MaglevV2`: every round, each backend adds its weight to a
//! running credit, and takes a turn only when its credit reaches the largest weight (then
//! pays that much back). A backend of weight `w` thus takes `w / w_max` turns per round, and
//! ends with a share of the table close to `w / Σw`. Equal weights reduce to the paper's
//! algorithm exactly; weight 0 never takes a turn, so it is not in the table at all.
//!
//! **Determinism**: the backends are sorted by key before the population loop, and both
//! hashes are fixed-seed functions written here (FNV-1a over the key bytes, finished with
//! MurmurHash3's 64-bit finaliser — no `RandomState`, nothing per process). Two engines, on
//! any hosts, given the same backends in any order, build identical tables and so send every
//! flow to the same backend. A golden-value test pins the hash outputs.

pub use super::flow::{BackendId, flow_hash};
use std::net::IpAddr;

/// The table size the paper and Katran use: a prime well above 100 × the backend count, so
/// equal-weight shares differ by under 1% and one backend's removal moves few other slots.
pub const DEFAULT_SIZE: u32 = 65537;

/// One backend of a VIP as the table builder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The id the table hands back for flows mapped to this backend.
    pub id: BackendId,
    /// The backend's address: the stable key its permutation is hashed from (so the same
    /// address gets the same slots whatever id or position it has in the config).
    pub addr: IpAddr,
    /// Relative weight; 0 keeps the backend out of the table.
    pub weight: u32,
}

/// Why a table could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaglevError {
    /// The size must be a prime (so every `skip` in `1..M` generates a full permutation).
    #[error("Maglev table size {0} is not a prime")]
    NotPrime(u32),
    /// Two backends with one address would get one permutation and fight over it.
    #[error("backend address {0} appears more than once")]
    DuplicateAddr(IpAddr),
    /// Two backends with one id could not be told apart by the lookup.
    #[error("backend id {} appears more than once", .0.0)]
    DuplicateId(BackendId),
}

/// A built Maglev lookup table for one VIP. Immutable: a backend change builds a new table
/// (off the fast path) which the workers then swap in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    size: u32,
    /// `size` entries, or none when no backend has a weight.
    table: Box<[BackendId]>,
}

impl Maglev {
    /// Builds the table of `size` slots (a prime; [`DEFAULT_SIZE`] unless there is a reason)
    /// from `backends`, in any order. Backends of weight 0 are left out; if all are, the table
    /// is empty and every lookup answers `None`.
    pub fn new(size: u32, backends: &[Backend]) -> Result<Self, MaglevError> {
        if !is_prime(size) {
            return Err(MaglevError::NotPrime(size));
        }
        let mut sorted: Vec<Backend> = backends.to_vec();
        sorted.sort_by_key(|b| key_bytes(b.addr));
        for pair in sorted.windows(2) {
            if pair[0].addr == pair[1].addr {
                return Err(MaglevError::DuplicateAddr(pair[0].addr));
            }
        }
        let mut ids: Vec<BackendId> = sorted.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        for pair in ids.windows(2) {
            if pair[0] == pair[1] {
                return Err(MaglevError::DuplicateId(pair[0]));
            }
        }
        sorted.retain(|b| b.weight > 0);
        let Some(max_weight) = sorted.iter().map(|b| u64::from(b.weight)).max() else {
            return Ok(Maglev {
                size,
                table: Box::default(),
            });
        };

        let m = u64::from(size);
        // Per backend: (offset, skip, next index j into its permutation, weight credit).
        let mut perm: Vec<(u64, u64, u64, u64)> = sorted
            .iter()
            .map(|b| {
                let key = key_bytes(b.addr);
                let offset = hash_key(&key, SEED_OFFSET) % m;
                let skip = hash_key(&key, SEED_SKIP) % (m - 1) + 1;
                (offset, skip, 0, 0)
            })
            .collect();
        const EMPTY: u32 = u32::MAX;
        let mut slots = vec![EMPTY; size as usize];
        let mut filled = 0u64;
        'fill: loop {
            for (i, (offset, skip, next, credit)) in perm.iter_mut().enumerate() {
                *credit += u64::from(sorted[i].weight);
                if *credit < max_weight {
                    continue;
                }
                *credit -= max_weight;
                // Walk this backend's permutation to its next free slot. Since skip ∈ [1, M)
                // and M is prime, the walk visits every slot, so it ends while any is free.
                let slot = loop {
                    let c = ((*offset + *next * *skip) % m) as usize;
                    *next += 1;
                    if slots[c] == EMPTY {
                        break c;
                    }
                };
                slots[slot] = i as u32;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        let table = slots.iter().map(|&i| sorted[i as usize].id).collect();
        Ok(Maglev { size, table })
    }

    /// The backend for a flow of hash `hash` (see [`flow_hash`]); `None` if the table has no
    /// backend. One multiply and one index: the slot is `hash · M / 2³²` (Lemire's
    /// multiply-shift range reduction, which spreads 32-bit hashes over the M slots as evenly
    /// as `hash mod M` but costs no division).
    #[inline]
    pub fn lookup(&self, hash: u32) -> Option<BackendId> {
        let slot = ((u64::from(hash) * u64::from(self.size)) >> 32) as usize;
        self.table.get(slot).copied()
    }

    /// The table size M it was built with.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether no backend is in the table (all weights 0, or none given).
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The table's slots in order (empty if [`Maglev::is_empty`]): for stats and tests.
    pub fn entries(&self) -> &[BackendId] {
        &self.table
    }
}

/// Seeds of the two permutation hashes (arbitrary fixed constants; changing either remaps
/// every VIP on every engine, so they are pinned by a test).
const SEED_OFFSET: u64 = 0x6d61_676c_6576_3031; // "maglev01"
const SEED_SKIP: u64 = 0x6d61_676c_6576_3032; // "maglev02"

/// A backend's stable key: a family tag then the 16 address bytes (IPv4 zero-padded), so an
/// IPv4 address and its IPv4-mapped IPv6 form stay distinct.
fn key_bytes(addr: IpAddr) -> [u8; 17] {
    let mut k = [0u8; 17];
    match addr {
        IpAddr::V4(a) => {
            k[0] = 4;
            k[1..5].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            k[0] = 6;
            k[1..].copy_from_slice(&a.octets());
        }
    }
    k
}

/// FNV-1a (64-bit) over `seed`'s bytes then `bytes`, finished with MurmurHash3's `fmix64` so
/// the low bits (which `mod M` keeps) depend on every input bit. Two seeds give the two
/// independent hashes Maglev asks for.
fn hash_key(bytes: &[u8], seed: u64) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for &b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::apps::lb::flow::FlowKey;
    use crate::wire::IpProtocol;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn backends(n: u32) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                id: BackendId(i),
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8 + 1)),
                weight: 1,
            })
            .collect()
    }

    fn shares(t: &Maglev) -> HashMap<BackendId, usize> {
        let mut s = HashMap::new();
        for &b in t.entries() {
            *s.entry(b).or_default() += 1;
        }
        s
    }

    /// A small deterministic PRNG (splitmix64) for flows.
    fn rng(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn random_flows(n: usize) -> Vec<FlowKey> {
        let mut s = 42;
        (0..n)
            .map(|_| {
                let r = rng(&mut s);
                FlowKey {
                    src: IpAddr::V4(Ipv4Addr::from((r >> 32) as u32)),
                    dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                    src_port: r as u16,
                    dst_port: 443,
                    protocol: IpProtocol::TCP,
                }
            })
            .collect()
    }

    #[test]
    fn refuses_non_prime_sizes() {
        assert_eq!(
            Maglev::new(65536, &backends(3)),
            Err(MaglevError::NotPrime(65536))
        );
        assert_eq!(Maglev::new(1, &backends(3)), Err(MaglevError::NotPrime(1)));
        assert!(Maglev::new(251, &backends(3)).is_ok());
        assert!(Maglev::new(DEFAULT_SIZE, &backends(3)).is_ok());
    }

    #[test]
    fn refuses_duplicate_addresses_and_ids() {
        let mut b = backends(3);
        b[2].addr = b[0].addr;
        assert!(matches!(
            Maglev::new(251, &b),
            Err(MaglevError::DuplicateAddr(_))
        ));
        let mut b = backends(3);
        b[2].id = b[0].id;
        assert_eq!(
            Maglev::new(251, &b),
            Err(MaglevError::DuplicateId(BackendId(0)))
        );
    }

    #[test]
    fn balance_equal_weights() {
        for n in [3u32, 10, 100] {
            let t = Maglev::new(DEFAULT_SIZE, &backends(n)).unwrap();
            let s = shares(&t);
            assert_eq!(s.len(), n as usize);
            let mean = f64::from(DEFAULT_SIZE) / f64::from(n);
            let max = *s.values().max().unwrap() as f64;
            let min = *s.values().min().unwrap() as f64;
            println!(
                "N={n}: max/mean {:.5}, min/mean {:.5}",
                max / mean,
                min / mean
            );
            assert!(max / mean <= 1.02, "N={n}: max/mean {}", max / mean);
        }
    }

    #[test]
    fn disruption_on_removal() {
        let all = backends(10);
        let before = Maglev::new(DEFAULT_SIZE, &all).unwrap();
        let gone = BackendId(4);
        let rest: Vec<Backend> = all.iter().copied().filter(|b| b.id != gone).collect();
        let after = Maglev::new(DEFAULT_SIZE, &rest).unwrap();

        let (mut kept, mut moved) = (0usize, 0usize);
        for (a, b) in before.entries().iter().zip(after.entries()) {
            if *a != gone {
                kept += 1;
                moved += usize::from(a != b);
            }
        }
        let table_frac = moved as f64 / kept as f64;

        let (mut fk, mut fm) = (0usize, 0usize);
        for f in random_flows(100_000) {
            let h = flow_hash(&f);
            let a = before.lookup(h).unwrap();
            if a != gone {
                fk += 1;
                fm += usize::from(after.lookup(h).unwrap() != a);
            }
        }
        let flow_frac = fm as f64 / fk as f64;
        println!(
            "disruption removing 1 of 10: table entries of remaining backends moved {moved}/{kept} \
             = {:.4}%, flows {fm}/{fk} = {:.4}%",
            table_frac * 100.0,
            flow_frac * 100.0
        );
        assert!(table_frac <= 0.01, "table disruption {table_frac}");
        assert!(flow_frac <= 0.01, "flow disruption {flow_frac}");
        // The removed backend's slots all went elsewhere.
        assert!(!after.entries().contains(&gone));
    }

    #[test]
    fn weights_are_followed() {
        let mut b = backends(3);
        for (i, x) in b.iter_mut().enumerate() {
            x.weight = i as u32 + 1;
        }
        let t = Maglev::new(DEFAULT_SIZE, &b).unwrap();
        let s = shares(&t);
        let total = f64::from(DEFAULT_SIZE);
        for x in &b {
            let want = f64::from(x.weight) / 6.0;
            let got = s[&x.id] as f64 / total;
            println!("weight {}: share {:.4} (want {:.4})", x.weight, got, want);
            assert!(
                (got / want - 1.0).abs() < 0.03,
                "weight {}: {got} vs {want}",
                x.weight
            );
        }
        // Uneven weights over more backends: still within a few percent.
        let mut b = backends(10);
        for (i, x) in b.iter_mut().enumerate() {
            x.weight = [1, 5, 10, 100][i % 4];
        }
        let t = Maglev::new(DEFAULT_SIZE, &b).unwrap();
        let s = shares(&t);
        let sum: u32 = b.iter().map(|x| x.weight).sum();
        for x in &b {
            let want = f64::from(x.weight) / f64::from(sum);
            let got = s.get(&x.id).copied().unwrap_or(0) as f64 / total;
            assert!(
                (got / want - 1.0).abs() < 0.05,
                "weight {}: {got} vs {want}",
                x.weight
            );
        }
    }

    #[test]
    fn order_does_not_matter() {
        let mut b = backends(10);
        b[3].weight = 3;
        b.push(Backend {
            id: BackendId(99),
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            weight: 2,
        });
        let t1 = Maglev::new(DEFAULT_SIZE, &b).unwrap();
        b.reverse();
        b.swap(2, 7);
        let t2 = Maglev::new(DEFAULT_SIZE, &b).unwrap();
        assert_eq!(t1, t2);
    }

    #[test]
    fn zero_weights_give_an_empty_table() {
        let mut b = backends(4);
        for x in &mut b {
            x.weight = 0;
        }
        let t = Maglev::new(DEFAULT_SIZE, &b).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.lookup(0), None);
        assert_eq!(t.lookup(u32::MAX), None);
        assert!(Maglev::new(DEFAULT_SIZE, &[]).unwrap().is_empty());
        // A weight-0 backend among others is not in the table.
        b[1].weight = 1;
        b[2].weight = 1;
        let t = Maglev::new(DEFAULT_SIZE, &b).unwrap();
        assert_eq!(shares(&t).len(), 2);
        assert!(!t.entries().contains(&BackendId(0)));
    }

    #[test]
    fn lookup_covers_the_whole_table() {
        let t = Maglev::new(DEFAULT_SIZE, &backends(3)).unwrap();
        assert_eq!(t.lookup(0), Some(t.entries()[0]));
        assert_eq!(t.lookup(u32::MAX), Some(*t.entries().last().unwrap()));
    }

    /// Changing these values changes every engine's backend choice: it must be deliberate.
    #[test]
    fn hashes_are_pinned() {
        let key = key_bytes(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let pinned = (hash_key(&key, SEED_OFFSET), hash_key(&key, SEED_SKIP));
        let f = FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            src_port: 40000,
            dst_port: 80,
            protocol: IpProtocol::TCP,
        };
        let fh = flow_hash(&f);
        println!("pinned: {:#x} {:#x} {:#x}", pinned.0, pinned.1, fh);
        assert_eq!(pinned, (PIN_OFFSET, PIN_SKIP));
        assert_eq!(fh, PIN_FLOW);
    }
    const PIN_OFFSET: u64 = 0xd477_c22c_14c6_3523;
    const PIN_SKIP: u64 = 0x72df_f97d_813b_c9e2;
    const PIN_FLOW: u32 = 0x6bbe_8a80;
}
