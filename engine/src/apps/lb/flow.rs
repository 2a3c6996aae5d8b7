//! What the balancer's parts share: a flow's 5-tuple and its hash, and a backend's identity.
//! A leaf of `lb`: the Maglev table and the connection table both use it, neither uses the
//! other.

use crate::apps::forward::flow_hash as mix_flow;
use crate::wire::IpProtocol;
use std::net::IpAddr;

/// The identity of a backend, as the control plane numbers them. Stored in the table and in
/// the connection table; it is the backend's *key* ([`super::maglev::Backend::addr`]), not this id, that
/// decides its slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u32);

/// A flow's 5-tuple as the balancer sees it (addresses as on the wire from the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (the VIP).
    pub dst: IpAddr,
    /// Source port (0 for protocols without ports).
    pub src_port: u16,
    /// Destination port (0 for protocols without ports).
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: IpProtocol,
}

/// The hash a flow's [`super::maglev::Maglev::lookup`] takes: [`forward::flow_hash`](crate::apps::forward::flow_hash)
/// (source and destination address, IPv6 folded to 64 bits by xor, protocol, ports) finished
/// with MurmurHash3's 32-bit finaliser, because the lookup reduces by the *high* bits and
/// `flow_hash` asks its users to mix again. Fixed constants: deterministic across processes and
/// hosts, so every engine maps a flow to the same slot.
#[inline]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let fold = |a: IpAddr| match a {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let b = v6.to_bits();
            (b >> 64) as u64 ^ b as u64
        }
    };
    let ports = u32::from(key.src_port) << 16 | u32::from(key.dst_port);
    fmix32(mix_flow(fold(key.src), fold(key.dst), key.protocol, ports))
}

/// MurmurHash3's 32-bit finaliser: every input bit flips each output bit with probability ~½.
#[inline]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
