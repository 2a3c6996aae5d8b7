//! sluice's XDP programs: the committed objects and the Rust mirrors of their maps.
//!
//! Three objects, each compiled from a C file in `src/` (plus the shared `common.bpf.h`, and
//! `net.bpf.h` for the two that parse packets) by `cargo xtask build-ebpf` and committed so
//! that building sluice needs no clang (`cargo xtask check-ebpf` fails when an object and its
//! sources disagree):
//!
//! - `steer.bpf.c` → [`STEER_OBJ`]: the steering program (items at the crate root), in port
//!   rules mode, forward mode or load-balancer (VIP) mode ([`CONFIG_MAP`]).
//! - `bench.bpf.c` → [`BENCH_OBJ`]: the benchmark generator `gen_tx` and the `drop_all` /
//!   `pass_all` sinks (items in [`mod@bench`]).
//! - `fwd.bpf.c` → [`FWD_OBJ`]: the benchmark-only in-kernel XDP forwarder, the ceiling of
//!   the forward scenario (items in [`mod@fwd`]).
//!
//! This crate owns the object bytes, the names the loaders look up, and `#[repr(C)]` mirrors
//! of the map key/value structs, action values and counter indices. It must never load or
//! attach anything (that is `sluice::steer` and `sluice_bench::gen`), and it has no
//! dependencies.
//!
//! Keep this file and the C sources in sync: the tests below read each object's own BTF
//! and compare sizes, member offsets and enum values with the constants here.
#![deny(unsafe_code)]

/// `#[repr(C, align(8))]` wrapper so the embedded object starts on an 8-byte boundary.
///
/// aya parses the ELF with the `object` crate, which reads its headers in place;
/// `EbpfLoader::load` documents that the buffer must be aligned (ELF64 headers have 8-byte
/// fields and every eBPF instruction is 8 bytes), and `include_bytes!` alone guarantees
/// only 1-byte alignment. This is what `aya::include_bytes_aligned!` does.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

const STEER_OBJ_ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!("steer.bpf.o"));

/// The compiled `steer.bpf.o` (ELF64 eBPF, with BTF), 8-byte aligned for aya's loader.
pub static STEER_OBJ: &[u8] = &STEER_OBJ_ALIGNED.0;

const BENCH_OBJ_ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!("bench.bpf.o"));

/// The compiled `bench.bpf.o` (ELF64 eBPF, with BTF), 8-byte aligned for aya's loader. Its
/// names and mirrors are in [`mod@bench`].
pub static BENCH_OBJ: &[u8] = &BENCH_OBJ_ALIGNED.0;

const FWD_OBJ_ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!("fwd.bpf.o"));

/// The compiled `fwd.bpf.o` (ELF64 eBPF, with BTF), 8-byte aligned for aya's loader. Its
/// names and mirrors are in [`mod@fwd`].
pub static FWD_OBJ: &[u8] = &FWD_OBJ_ALIGNED.0;

/// Name of the XDP program (the C function; its section is [`PROGRAM_SECTION`]).
pub const PROGRAM_NAME: &str = "steer";
/// ELF section of the program: `xdp.frags`, so aya loads it with `BPF_F_XDP_HAS_FRAGS` and it
/// may run on links whose frames span several pages (jumbo MTUs).
pub const PROGRAM_SECTION: &str = "xdp.frags";

/// `rules`: `BPF_MAP_TYPE_ARRAY` of [`RULES_MAX_ENTRIES`] [`RuleValue`]s, one per
/// `(protocol, destination port)`, indexed by [`rule_index`]. An entry whose action is
/// [`ACTION_NONE`] (the initial zero) is "no rule".
pub const RULES_MAP: &str = "rules";
/// `xsks`: `BPF_MAP_TYPE_XSKMAP`, receive-queue index (`u32`) → AF_XDP socket fd.
pub const XSKS_MAP: &str = "xsks";
/// `counters`: `BPF_MAP_TYPE_PERCPU_ARRAY` of `u64`, indexed by the [`counter`] constants.
pub const COUNTERS_MAP: &str = "counters";
/// `config`: `BPF_MAP_TYPE_ARRAY`, one entry (key `0u32`) → [`SteerConfig`]. Starts zeroed,
/// i.e. in [`MODE_PORTS`].
pub const CONFIG_MAP: &str = "config";
/// `vips`: `BPF_MAP_TYPE_HASH` of at most [`LB_MAX_VIPS`] entries, [`VipKey`] →
/// [`VipValue`]: the destinations [`MODE_LB`] redirects.
pub const VIPS_MAP: &str = "vips";

/// [`SteerConfig::mode`]: steer by `(protocol, destination port)` rules from [`RULES_MAP`]
/// (C `STEER_MODE_PORTS`). Any value the program does not know acts as this.
pub const MODE_PORTS: u32 = 0;
/// [`SteerConfig::mode`]: forward mode (C `STEER_MODE_FORWARD`): redirect exactly the frames
/// the kernel's FIB (`bpf_fib_lookup`) calls forwardable with a resolved neighbour; pass
/// everything else. [`RULES_MAP`] is not consulted.
pub const MODE_FORWARD: u32 = 1;
/// [`SteerConfig::mode`]: load-balancer mode (C `STEER_MODE_LB`): redirect untagged IPv4/IPv6
/// frames whose destination is in [`VIPS_MAP`] (TCP/UDP by address, port and protocol, with
/// port 0 as a per-protocol wildcard; ICMP/ICMPv6 by address, port 0); pass everything else.
/// [`RULES_MAP`] is not consulted.
pub const MODE_LB: u32 = 2;

/// Slots per protocol in [`RULES_MAP`]: one per port (C `RULES_PORTS`).
pub const RULES_PORTS: u32 = 1 << 16;
/// Index of UDP port 0 in [`RULES_MAP`] (C `RULES_UDP_BASE`).
pub const RULES_UDP_BASE: u32 = 0;
/// Index of TCP port 0 in [`RULES_MAP`] (C `RULES_TCP_BASE`).
pub const RULES_TCP_BASE: u32 = RULES_PORTS;
/// `max_entries` of [`RULES_MAP`] (C `RULES_ENTRIES`): a slot for every port of UDP and TCP,
/// so every `(proto, port)` can have a rule at once and no rule set can be too large.
pub const RULES_MAX_ENTRIES: u32 = 2 * RULES_PORTS;
/// `max_entries` of [`XSKS_MAP`]: AF_XDP sockets can be registered for queues `0..64`.
pub const XSKS_MAX_ENTRIES: u32 = 64;
/// `max_entries` of [`VIPS_MAP`] (C `LB_MAX_VIPS`): inserting a new key into a full map fails
/// with `E2BIG`.
pub const LB_MAX_VIPS: u32 = 4096;

/// IP protocol number of UDP, as taken by [`rule_index`].
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of TCP, as taken by [`rule_index`].
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of ICMP (IPv4): the [`VipKey::proto`] of an IPv4 VIP's ICMP entry.
pub const IPPROTO_ICMP: u8 = 1;
/// IPv6 next-header number of ICMPv6: the [`VipKey::proto`] of an IPv6 VIP's ICMPv6 entry.
pub const IPPROTO_ICMPV6: u8 = 58;

/// The [`RULES_MAP`] index of `(proto, port)` (`port` in host byte order); `None` for a
/// protocol other than [`IPPROTO_UDP`] and [`IPPROTO_TCP`].
pub const fn rule_index(proto: u8, port: u16) -> Option<u32> {
    let base = match proto {
        IPPROTO_UDP => RULES_UDP_BASE,
        IPPROTO_TCP => RULES_TCP_BASE,
        _ => return None,
    };
    Some(base + port as u32)
}

/// Inverse of [`rule_index`]: `(proto, port)` of a [`RULES_MAP`] index; `None` past the end.
pub const fn rule_at(index: u32) -> Option<(u8, u16)> {
    let proto = match index / RULES_PORTS {
        0 => IPPROTO_UDP,
        1 => IPPROTO_TCP,
        _ => return None,
    };
    Some((proto, (index % RULES_PORTS) as u16))
}

/// [`RuleValue::action`]: no rule; the frame is passed and counted as unmatched. Every entry
/// of [`RULES_MAP`] starts with it, and removing a rule writes it back.
pub const ACTION_NONE: u32 = 0;
/// [`RuleValue::action`]: redirect into the AF_XDP socket of the receive queue (kernel when
/// the queue has none).
pub const ACTION_REDIRECT: u32 = 1;
/// [`RuleValue::action`]: drop the frame in XDP.
pub const ACTION_DROP: u32 = 2;
/// [`RuleValue::action`]: hand the frame to the kernel.
pub const ACTION_PASS: u32 = 3;

/// Indices into [`COUNTERS_MAP`] (C `enum counter`). Each counts frames by outcome.
pub mod counter {
    /// Redirected into an AF_XDP socket (`bpf_redirect_map` returned `XDP_REDIRECT`).
    pub const REDIRECTED: u32 = 0;
    /// IP and well-formed but matched no rule (incl. non-UDP/TCP and IPv4 non-first fragments).
    pub const PASSED: u32 = 1;
    /// A `PASS` rule matched.
    pub const PASSED_BY_RULE: u32 = 2;
    /// A `DROP` rule matched.
    pub const DROPPED_BY_RULE: u32 = 3;
    /// Neither IPv4 nor IPv6 (ARP, more than two VLAN tags, ...): passed.
    pub const NOT_IP: u32 = 4;
    /// Truncated or invalid header (IHL < 5, wrong IP version, TCP data offset < 5): passed.
    pub const MALFORMED: u32 = 5;
    /// A `REDIRECT` rule matched but the receive queue has no socket: passed to the kernel.
    pub const REDIRECT_FALLBACK: u32 = 6;
    /// Forward mode: the FIB said forwardable and the frame went to the queue's AF_XDP socket.
    pub const FWD_REDIRECTED: u32 = 7;
    /// Forward mode: the FIB said forwardable but the queue has no socket: passed.
    pub const FWD_FALLBACK: u32 = 8;
    /// Forward mode: headers the fast path leaves to the kernel (VLAN tag, IPv4 options or
    /// fragment, IPv6 extension header): passed without a lookup.
    pub const FWD_KERNEL_ONLY: u32 = 9;
    /// Forward mode: ICMPv6 neighbour discovery (types 133–137), or a multicast, broadcast or
    /// link-local destination: passed without a lookup.
    pub const FWD_LINK_SCOPE: u32 = 10;
    /// Forward mode, FIB `NOT_FWDED`: addressed to this host (or broadcast), or no route.
    pub const FIB_LOCAL_OR_NOROUTE: u32 = 11;
    /// Forward mode, FIB `NO_NEIGH`: the next hop's neighbour entry is not valid; the kernel
    /// resolves it.
    pub const FIB_NO_NEIGH: u32 = 12;
    /// Forward mode, FIB `FWD_DISABLED`: forwarding is off on the ingress interface.
    pub const FIB_FWD_DISABLED: u32 = 13;
    /// Forward mode, FIB `BLACKHOLE`, `UNREACHABLE` or `PROHIBIT`.
    pub const FIB_UNREACHABLE: u32 = 14;
    /// Forward mode, any other FIB result (`UNSUPP_LWT`, `FRAG_NEEDED`, an error).
    pub const FIB_OTHER: u32 = 15;
    /// LB mode: the destination is a VIP and the frame went to the queue's AF_XDP socket.
    pub const LB_REDIRECTED: u32 = 16;
    /// LB mode: the destination is a VIP but the queue has no socket: passed.
    pub const LB_FALLBACK: u32 = 17;
    /// LB mode: no VIP matched, ICMPv6 neighbour discovery, or an IP protocol other than
    /// TCP, UDP and ICMP/ICMPv6: passed.
    pub const LB_PASSED: u32 = 18;
    /// LB mode: headers the VIP lookup leaves to the kernel (VLAN tag, IPv4 fragment, IPv6
    /// extension header): passed without a lookup.
    pub const LB_KERNEL_ONLY: u32 = 19;
    /// Number of counters (`max_entries` of the map).
    pub const LEN: u32 = 20;
}

/// Value of [`RULES_MAP`] (C `struct rule_value`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleValue {
    /// [`ACTION_NONE`], [`ACTION_REDIRECT`], [`ACTION_DROP`] or [`ACTION_PASS`]; the program
    /// treats any other value as pass (counted as passed by rule).
    pub action: u32,
}

impl RuleValue {
    /// Size in bytes, as the C struct declares it.
    pub const SIZE: usize = 4;
}

/// Value of [`CONFIG_MAP`] (C `struct steer_config`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SteerConfig {
    /// [`MODE_PORTS`], [`MODE_FORWARD`] or [`MODE_LB`].
    pub mode: u32,
}

impl SteerConfig {
    /// Size in bytes, as the C struct declares it.
    pub const SIZE: usize = 4;
}

/// [`VipKey::family`] of an IPv4 VIP (C `VIP_FAMILY_V4`).
pub const VIP_FAMILY_V4: u8 = 4;
/// [`VipKey::family`] of an IPv6 VIP (C `VIP_FAMILY_V6`).
pub const VIP_FAMILY_V6: u8 = 6;

/// Key of [`VIPS_MAP`] (C `struct vip_key`): 20 bytes, no padding.
///
/// The program builds the key of a frame from its headers and looks it up; for TCP and UDP
/// it looks up the same key with `port` 0 after a miss.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// Destination address in network order: all 16 bytes for IPv6; for IPv4 the first 4,
    /// the other 12 zero.
    pub addr: [u8; 16],
    /// Destination port in **network byte order** (`port.to_be()`), as the program copies it
    /// from the TCP/UDP header; 0 = every port of `proto`, and always 0 for ICMP/ICMPv6.
    pub port: u16,
    /// IP protocol number: [`IPPROTO_TCP`], [`IPPROTO_UDP`], [`IPPROTO_ICMP`] (IPv4) or
    /// [`IPPROTO_ICMPV6`] (IPv6); the program looks up no other.
    pub proto: u8,
    /// [`VIP_FAMILY_V4`] or [`VIP_FAMILY_V6`].
    pub family: u8,
}

impl VipKey {
    /// Size in bytes, as the C struct declares it.
    pub const SIZE: usize = 20;

    /// The struct's in-memory representation (what the map hashes), without `unsafe`.
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..16].copy_from_slice(&self.addr);
        b[16..18].copy_from_slice(&self.port.to_ne_bytes());
        b[18] = self.proto;
        b[19] = self.family;
        b
    }

    /// Inverse of [`VipKey::to_bytes`].
    pub fn from_bytes(b: [u8; Self::SIZE]) -> Self {
        Self {
            addr: b[0..16].try_into().expect("16 bytes"),
            port: u16::from_ne_bytes([b[16], b[17]]),
            proto: b[18],
            family: b[19],
        }
    }
}

/// Value of [`VIPS_MAP`] (C `struct vip_value`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipValue {
    /// Reserved: write 0. The program only tests whether the key is present.
    pub flags: u32,
}

impl VipValue {
    /// Size in bytes, as the C struct declares it.
    pub const SIZE: usize = 4;
}

/// Names and mirrors of the benchmark forwarder [`FWD_OBJ`] (`fwd.bpf.c`): `bpf_fib_lookup`,
/// and on success MAC rewrite, TTL / hop limit decrement (incremental IPv4 checksum) and
/// `bpf_redirect` to the egress interface; `XDP_PASS` otherwise.
pub mod fwd {
    /// The forwarder program (section [`SECTION`]).
    pub const PROGRAM: &str = "xdp_fwd";
    /// ELF section of the program.
    pub const SECTION: &str = "xdp";
    /// `counters`: `BPF_MAP_TYPE_PERCPU_ARRAY` of `u64`, indexed by the [`counter`]
    /// constants.
    pub const COUNTERS_MAP: &str = "counters";

    /// Indices into [`COUNTERS_MAP`] (C `enum counter` of `fwd.bpf.c`).
    pub mod counter {
        /// Frames rewritten and handed to `bpf_redirect`.
        pub const FRAMES: u32 = 0;
        /// Their bytes (Ethernet, without FCS).
        pub const BYTES: u32 = 1;
        /// Frames passed to the kernel (not forwardable here, TTL <= 1, non-IP, ...).
        pub const PASSED: u32 = 2;
        /// Number of counters (`max_entries` of the map).
        pub const LEN: u32 = 3;
    }
}

/// Names and mirrors of the benchmark object [`BENCH_OBJ`] (`bench.bpf.c`).
///
/// - [`GEN_PROGRAM`](bench::GEN_PROGRAM): the generator, run through
///   `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`; stamps each frame from
///   [`GEN_CONFIG_MAP`](bench::GEN_CONFIG_MAP) and the global counter in
///   [`GEN_SEQ_MAP`](bench::GEN_SEQ_MAP), returns `XDP_TX`.
/// - [`DROP_PROGRAM`](bench::DROP_PROGRAM) / [`PASS_PROGRAM`](bench::PASS_PROGRAM): count
///   and `XDP_DROP` / `XDP_PASS` everything.
pub mod bench {
    /// The generator program (section [`SECTION`]).
    pub const GEN_PROGRAM: &str = "gen_tx";
    /// The `XDP_DROP` sink.
    pub const DROP_PROGRAM: &str = "drop_all";
    /// The `XDP_PASS` sink.
    pub const PASS_PROGRAM: &str = "pass_all";
    /// ELF section of all three programs.
    pub const SECTION: &str = "xdp";

    /// `gen_config`: `BPF_MAP_TYPE_ARRAY`, one entry (key `0u32`) → [`GenConfig`].
    pub const GEN_CONFIG_MAP: &str = "gen_config";
    /// `gen_seq`: `BPF_MAP_TYPE_ARRAY`, one entry (key `0u32`) → `u64`, the sequence number
    /// of the next generated frame (incremented atomically by the program).
    pub const GEN_SEQ_MAP: &str = "gen_seq";
    /// `counters`: `BPF_MAP_TYPE_PERCPU_ARRAY` of `u64`, indexed by the [`counter`]
    /// constants; shared by the three programs.
    pub const COUNTERS_MAP: &str = "counters";

    /// [`GenConfig::flags`]: a computed L4 checksum of 0 is sent as `0xffff` (UDP, where 0
    /// means "no checksum" over IPv4 and is invalid over IPv6).
    pub const GEN_F_ZERO_CSUM_AS_FFFF: u32 = 1;

    /// The largest offset the program accepts in [`GenConfig`] (it rejects larger ones, so
    /// the verifier can bound packet accesses).
    pub const MAX_OFFSET: u16 = 2047;

    /// Bytes of the template kept in [`GenConfig::head`] (C `GEN_HEAD_LEN`).
    pub const GEN_HEAD_LEN: usize = 80;

    /// Indices into [`COUNTERS_MAP`] (C `enum counter`). Each `*_BYTES` follows its
    /// `*_FRAMES` and counts Ethernet bytes without FCS.
    pub mod counter {
        /// `gen_tx`: frames stamped and returned `XDP_TX`.
        pub const GEN_FRAMES: u32 = 0;
        /// `gen_tx`: their bytes.
        pub const GEN_BYTES: u32 = 1;
        /// `gen_tx`: frames dropped because the config was missing or out of the frame.
        pub const GEN_BAD: u32 = 2;
        /// `drop_all`: frames dropped.
        pub const DROP_FRAMES: u32 = 3;
        /// `drop_all`: their bytes.
        pub const DROP_BYTES: u32 = 4;
        /// `pass_all`: frames passed.
        pub const PASS_FRAMES: u32 = 5;
        /// `pass_all`: their bytes.
        pub const PASS_BYTES: u32 = 6;
        /// `gen_tx`: frames from an interface other than [`GenConfig::ifindex`](super::GenConfig::ifindex),
        /// passed untouched (the program also sits on loopback; see [`super::GenConfig::ifindex`]).
        pub const GEN_FOREIGN: u32 = 7;
        /// Number of counters (`max_entries` of the map).
        pub const LEN: u32 = 8;
    }

    /// Value of [`GEN_CONFIG_MAP`] (C `struct gen_config`): how `gen_tx` stamps a frame.
    ///
    /// Offsets count from the first byte of the Ethernet header; `sport_off` and `stamp_off`
    /// must be even relative to the L4 header (they are, for any template built by
    /// `sluice_bench::gen`), so their 16-bit words line up with the checksum's.
    ///
    /// On every run the program first copies the largest of 80, 72, 64, 56 bytes of
    /// [`head`](GenConfig::head) that fits in the frame over the frame's start, and drops the
    /// frame (counted as bad) if that copy ends before `stamp_off`; so `stamp_off` must be at
    /// most `min(frame length, 80)` rounded down to a multiple of 8.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GenConfig {
        /// 32-bit ones-complement partial sum (unfolded, over big-endian 16-bit words) of the
        /// pseudo-header, the L4 header with checksum and source port zero, and the payload
        /// with the 16 stamp bytes zero.
        pub base_sum: u32,
        /// Number of flows (source ports `base_sport .. base_sport + flows`); 0 acts as 1.
        pub flows: u32,
        /// Source port of flow 0, host order.
        pub base_sport: u16,
        /// Offset of the L4 source port.
        pub sport_off: u16,
        /// Offset of the L4 checksum.
        pub csum_off: u16,
        /// Offset of the 16-byte payload stamp (`sluice_bench::payload`).
        pub stamp_off: u16,
        /// `GEN_F_*` bits.
        pub flags: u32,
        /// Interface index the generator sends from (the `ingress_ifindex` of its `ctx_in`).
        /// Frames arriving with any other index are passed untouched: the program is also
        /// attached (generic mode) to loopback, only to keep it in the kernel's XDP
        /// dispatcher, which saves an RCU grace period per `BPF_PROG_TEST_RUN` call.
        pub ifindex: u32,
        /// The template frame's first [`GEN_HEAD_LEN`] bytes (zero past its end), in frame
        /// order: what the program restores at the start of every frame before stamping it,
        /// since live-frames mode reuses pages as a receiver left them (C: `__u64 head[10]`,
        /// the same bytes).
        pub head: [u8; GEN_HEAD_LEN],
    }

    impl Default for GenConfig {
        fn default() -> Self {
            Self {
                base_sum: 0,
                flows: 0,
                base_sport: 0,
                sport_off: 0,
                csum_off: 0,
                stamp_off: 0,
                flags: 0,
                ifindex: 0,
                head: [0; GEN_HEAD_LEN],
            }
        }
    }

    impl GenConfig {
        /// Size in bytes, as the C struct declares it.
        pub const SIZE: usize = 24 + GEN_HEAD_LEN;

        /// The struct's in-memory representation (what the map stores), without `unsafe`.
        pub fn to_bytes(self) -> [u8; Self::SIZE] {
            let mut b = [0u8; Self::SIZE];
            b[0..4].copy_from_slice(&self.base_sum.to_ne_bytes());
            b[4..8].copy_from_slice(&self.flows.to_ne_bytes());
            b[8..10].copy_from_slice(&self.base_sport.to_ne_bytes());
            b[10..12].copy_from_slice(&self.sport_off.to_ne_bytes());
            b[12..14].copy_from_slice(&self.csum_off.to_ne_bytes());
            b[14..16].copy_from_slice(&self.stamp_off.to_ne_bytes());
            b[16..20].copy_from_slice(&self.flags.to_ne_bytes());
            b[20..24].copy_from_slice(&self.ifindex.to_ne_bytes());
            b[24..].copy_from_slice(&self.head);
            b
        }

        /// Inverse of [`GenConfig::to_bytes`].
        pub fn from_bytes(b: [u8; Self::SIZE]) -> Self {
            let u16_at = |o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
            let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            Self {
                base_sum: u32_at(0),
                flows: u32_at(4),
                base_sport: u16_at(8),
                sport_off: u16_at(10),
                csum_off: u16_at(12),
                stamp_off: u16_at(14),
                flags: u32_at(16),
                ifindex: u32_at(20),
                head: b[24..].try_into().expect("GEN_HEAD_LEN bytes"),
            }
        }
    }
}

#[cfg(test)]
mod test {
    //! Checks the committed object against this file without root: a tiny ELF64 + BTF reader
    //! (no dependencies) finds the program, the maps and the C type layouts.
    use super::*;
    use std::collections::HashMap;

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }
    fn cstr(b: &[u8], o: usize) -> &str {
        let end = b[o..].iter().position(|&c| c == 0).unwrap() + o;
        std::str::from_utf8(&b[o..end]).unwrap()
    }

    struct Section<'a> {
        name: &'a str,
        data: &'a [u8],
        kind: u32,
    }

    /// Sections of a little-endian ELF64 object.
    fn sections(elf: &[u8]) -> Vec<Section<'_>> {
        assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
        assert_eq!(elf[4], 2, "not ELF64");
        assert_eq!(
            elf[5], 1,
            "not little-endian (this host is; so is the BPF target)"
        );
        assert_eq!(u16_at(elf, 18), 247, "e_machine is not EM_BPF");
        let shoff = u64_at(elf, 0x28) as usize;
        let shentsize = u16_at(elf, 0x3a) as usize;
        let shnum = u16_at(elf, 0x3c) as usize;
        let shstrndx = u16_at(elf, 0x3e) as usize;
        let hdr = |i: usize| &elf[shoff + i * shentsize..shoff + (i + 1) * shentsize];
        let data = |h: &[u8]| {
            let off = u64_at(h, 0x18) as usize;
            let size = u64_at(h, 0x20) as usize;
            if u32_at(h, 4) == 8 {
                &elf[0..0] // SHT_NOBITS
            } else {
                &elf[off..off + size]
            }
        };
        let shstr = data(hdr(shstrndx));
        (0..shnum)
            .map(|i| {
                let h = hdr(i);
                Section {
                    name: cstr(shstr, u32_at(h, 0) as usize),
                    data: data(h),
                    kind: u32_at(h, 4),
                }
            })
            .collect()
    }

    fn section<'a>(secs: &'a [Section<'a>], name: &str) -> &'a Section<'a> {
        secs.iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("object has no section {name}"))
    }

    /// Names of the global symbols defined in section `section_name`.
    fn symbols_in(elf: &[u8], section_name: &str) -> Vec<String> {
        let secs = sections(elf);
        let idx = secs.iter().position(|s| s.name == section_name).unwrap() as u16;
        let symtab = secs.iter().find(|s| s.kind == 2).expect("no SHT_SYMTAB");
        let strtab = section(&secs, ".strtab").data;
        symtab
            .data
            .chunks_exact(24)
            // STB_GLOBAL only: skips the section symbol and clang's local branch labels.
            .filter(|sym| u16_at(sym, 6) == idx && sym[4] >> 4 == 1)
            .map(|sym| cstr(strtab, u32_at(sym, 0) as usize).to_string())
            .collect()
    }

    #[derive(Debug)]
    enum BtfType {
        Struct {
            name: String,
            size: u32,
            /// (name, type id, bit offset)
            members: Vec<(String, usize, u32)>,
        },
        Ptr(usize),
        Array {
            nelems: u32,
        },
        Var {
            name: String,
            ty: usize,
        },
        Typedef {
            name: String,
        },
        Other,
    }

    /// The object's `.BTF` types, indexed by type id (0 is `void`).
    fn btf_types(elf: &[u8]) -> Vec<BtfType> {
        let secs = sections(elf);
        let btf = section(&secs, ".BTF").data;
        assert_eq!(u16_at(btf, 0), 0xeb9f, "bad BTF magic");
        let hdr_len = u32_at(btf, 4) as usize;
        let (type_off, type_len) = (u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
        let str_off = u32_at(btf, 16) as usize;
        let types = &btf[hdr_len + type_off..hdr_len + type_off + type_len];
        let strs = &btf[hdr_len + str_off..];
        let mut out = vec![BtfType::Other];
        let mut o = 0;
        while o < types.len() {
            let name = cstr(strs, u32_at(types, o) as usize).to_string();
            let info = u32_at(types, o + 4);
            let size_or_type = u32_at(types, o + 8);
            let (kind, vlen, kflag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
            o += 12;
            // Bytes of kind-specific data after the common header (see the kernel's btf.rst).
            let extra = match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => vlen * 12,
                6 | 13 => vlen * 8,
                2 | 7..=12 | 16 | 18 => 0,
                k => panic!("unknown BTF kind {k}"),
            };
            let ty = match kind {
                4 => BtfType::Struct {
                    name,
                    size: size_or_type,
                    members: (0..vlen)
                        .map(|i| {
                            let m = o + i * 12;
                            let off = u32_at(types, m + 8);
                            // With kind_flag the offset holds bitfield size << 24 | offset.
                            let off = if kflag == 1 { off & 0x00ff_ffff } else { off };
                            let mname = cstr(strs, u32_at(types, m) as usize).to_string();
                            (mname, u32_at(types, m + 4) as usize, off)
                        })
                        .collect(),
                },
                2 => BtfType::Ptr(size_or_type as usize),
                3 => BtfType::Array {
                    nelems: u32_at(types, o + 8),
                },
                14 => BtfType::Var {
                    name,
                    ty: size_or_type as usize,
                },
                8 => BtfType::Typedef { name },
                _ => BtfType::Other,
            };
            o += extra;
            out.push(ty);
        }
        out
    }

    fn btf_struct<'a>(btf: &'a [BtfType], wanted: &str) -> (u32, &'a [(String, usize, u32)]) {
        btf.iter()
            .find_map(|t| match t {
                BtfType::Struct {
                    name,
                    size,
                    members,
                } if name == wanted => Some((*size, members.as_slice())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no struct {wanted} in BTF"))
    }

    /// A `.maps` definition's `__uint(field, N)` (encoded as `int (*field)[N]`) or, for `key`
    /// and `value`, the id of the pointed-to type.
    fn map_field(btf: &[BtfType], map: &str, field: &str) -> (usize, Option<u32>) {
        let def = btf
            .iter()
            .find_map(|t| match t {
                BtfType::Var { name, ty } if name == map => Some(*ty),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no map variable {map} in BTF"));
        let BtfType::Struct { members, .. } = &btf[def] else {
            panic!("{map} is not a struct");
        };
        let (_, ty, _) = members
            .iter()
            .find(|(n, _, _)| n == field)
            .unwrap_or_else(|| panic!("{map} has no {field}"));
        let BtfType::Ptr(target) = btf[*ty] else {
            panic!("{map}.{field} is not a pointer");
        };
        match btf[target] {
            BtfType::Array { nelems } => (target, Some(nelems)),
            _ => (target, None),
        }
    }

    #[test]
    fn object_is_aligned_for_aya() {
        assert_eq!(STEER_OBJ.as_ptr() as usize % 8, 0);
    }

    #[test]
    fn object_has_program_and_maps() {
        let secs = sections(STEER_OBJ);
        let prog = section(&secs, PROGRAM_SECTION);
        assert!(!prog.data.is_empty(), "program section is empty");
        assert_eq!(prog.data.len() % 8, 0, "eBPF instructions are 8 bytes");
        for needed in [".maps", "license", ".BTF", ".BTF.ext"] {
            section(&secs, needed);
        }
        assert_eq!(symbols_in(STEER_OBJ, PROGRAM_SECTION), [PROGRAM_NAME]);
        let mut maps = symbols_in(STEER_OBJ, ".maps");
        maps.sort();
        let mut want = [CONFIG_MAP, COUNTERS_MAP, RULES_MAP, VIPS_MAP, XSKS_MAP];
        want.sort();
        assert_eq!(maps, want);
        // bpf_fib_lookup is GPL-only: the kernel refuses the program without this.
        assert_eq!(section(&secs, "license").data, b"Dual MIT/GPL\0");
    }

    #[test]
    fn object_has_no_absolute_paths() {
        // -fdebug-prefix-map must have rewritten the build directory to `.`.
        let text = String::from_utf8_lossy(STEER_OBJ);
        for marker in ["/work/", "/tmp/", "/home/", "/root/"] {
            assert!(
                !text.contains(marker),
                "object embeds a path containing {marker}"
            );
        }
    }

    #[test]
    fn struct_layouts_match_the_c_declarations() {
        assert_eq!(size_of::<RuleValue>(), RuleValue::SIZE);

        let btf = btf_types(STEER_OBJ);
        let members = |name: &str, size: usize| {
            let (s, members) = btf_struct(&btf, name);
            assert_eq!(s as usize, size, "size of struct {name}");
            members
                .iter()
                .map(|(n, _, bits)| (n.as_str(), *bits / 8))
                .collect::<Vec<_>>()
        };
        assert_eq!(members("rule_value", RuleValue::SIZE), [("action", 0)]);
        assert_eq!(size_of::<SteerConfig>(), SteerConfig::SIZE);
        assert_eq!(members("steer_config", SteerConfig::SIZE), [("mode", 0)]);

        use std::mem::offset_of;
        assert_eq!(size_of::<VipKey>(), VipKey::SIZE);
        let rust = [
            ("addr", offset_of!(VipKey, addr)),
            ("port", offset_of!(VipKey, port)),
            ("proto", offset_of!(VipKey, proto)),
            ("family", offset_of!(VipKey, family)),
        ];
        let c: Vec<(&str, usize)> = members("vip_key", VipKey::SIZE)
            .into_iter()
            .map(|(n, off)| (n, off as usize))
            .collect();
        assert_eq!(c, rust);
        assert_eq!(size_of::<VipValue>(), VipValue::SIZE);
        assert_eq!(members("vip_value", VipValue::SIZE), [("flags", 0)]);
    }

    #[test]
    fn vip_key_bytes_are_the_c_layout() {
        let key = VipKey {
            addr: std::array::from_fn(|i| 0x10 + i as u8),
            port: 443u16.to_be(),
            proto: IPPROTO_TCP,
            family: VIP_FAMILY_V6,
        };
        let b = key.to_bytes();
        assert_eq!(&b[..16], &key.addr);
        assert_eq!(&b[16..18], &[0x01, 0xbb], "port in network byte order");
        assert_eq!((b[18], b[19]), (IPPROTO_TCP, VIP_FAMILY_V6));
        assert_eq!(VipKey::from_bytes(b), key);
    }

    #[test]
    fn map_definitions_match_the_constants() {
        const ARRAY: u32 = 2;
        const PERCPU_ARRAY: u32 = 6;
        const XSKMAP: u32 = 17;
        let btf = btf_types(STEER_OBJ);
        let uint = |map, field| map_field(&btf, map, field).1.unwrap();
        assert_eq!(uint(RULES_MAP, "type"), ARRAY);
        assert_eq!(uint(RULES_MAP, "max_entries"), RULES_MAX_ENTRIES);
        assert_eq!(uint(XSKS_MAP, "type"), XSKMAP);
        assert_eq!(uint(XSKS_MAP, "max_entries"), XSKS_MAX_ENTRIES);
        assert_eq!(uint(COUNTERS_MAP, "type"), PERCPU_ARRAY);
        assert_eq!(uint(COUNTERS_MAP, "max_entries"), counter::LEN);
        let named = |map, field| match &btf[map_field(&btf, map, field).0] {
            BtfType::Struct { name, .. } | BtfType::Typedef { name } => name.clone(),
            other => panic!("{map}.{field} is {other:?}"),
        };
        assert_eq!(named(RULES_MAP, "key"), "__u32");
        assert_eq!(named(RULES_MAP, "value"), "rule_value");
        assert_eq!(uint(CONFIG_MAP, "type"), ARRAY);
        assert_eq!(uint(CONFIG_MAP, "max_entries"), 1);
        assert_eq!(named(CONFIG_MAP, "key"), "__u32");
        assert_eq!(named(CONFIG_MAP, "value"), "steer_config");
        const HASH: u32 = 1;
        assert_eq!(uint(VIPS_MAP, "type"), HASH);
        assert_eq!(uint(VIPS_MAP, "max_entries"), LB_MAX_VIPS);
        assert_eq!(named(VIPS_MAP, "key"), "vip_key");
        assert_eq!(named(VIPS_MAP, "value"), "vip_value");
    }

    /// `NAME = value` enumerators of the C source. Enums used only as constants are not in
    /// the object's BTF, so these are checked against the source; `check-ebpf` ties the
    /// source to the object.
    fn c_enumerators(source: &str, prefixes: &[&str]) -> HashMap<String, u32> {
        source
            .lines()
            .filter_map(|line| {
                let code = line.split("//").next()?.trim().trim_end_matches(',');
                let (name, value) = code.split_once(" = ")?;
                if !prefixes.iter().any(|p| name.starts_with(p)) {
                    return None;
                }
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn enum_values_match_the_c_declarations() {
        let c = c_enumerators(
            include_str!("steer.bpf.c"),
            &["RULE_", "CNT_", "STEER_MODE_", "VIP_FAMILY_"],
        );
        let want = [
            ("RULE_NONE", ACTION_NONE),
            ("RULE_REDIRECT", ACTION_REDIRECT),
            ("RULE_DROP", ACTION_DROP),
            ("RULE_PASS", ACTION_PASS),
            ("CNT_REDIRECTED", counter::REDIRECTED),
            ("CNT_PASSED", counter::PASSED),
            ("CNT_PASSED_BY_RULE", counter::PASSED_BY_RULE),
            ("CNT_DROPPED_BY_RULE", counter::DROPPED_BY_RULE),
            ("CNT_NOT_IP", counter::NOT_IP),
            ("CNT_MALFORMED", counter::MALFORMED),
            ("CNT_REDIRECT_FALLBACK", counter::REDIRECT_FALLBACK),
            ("CNT_FWD_REDIRECTED", counter::FWD_REDIRECTED),
            ("CNT_FWD_FALLBACK", counter::FWD_FALLBACK),
            ("CNT_FWD_KERNEL_ONLY", counter::FWD_KERNEL_ONLY),
            ("CNT_FWD_LINK_SCOPE", counter::FWD_LINK_SCOPE),
            ("CNT_FIB_LOCAL_OR_NOROUTE", counter::FIB_LOCAL_OR_NOROUTE),
            ("CNT_FIB_NO_NEIGH", counter::FIB_NO_NEIGH),
            ("CNT_FIB_FWD_DISABLED", counter::FIB_FWD_DISABLED),
            ("CNT_FIB_UNREACHABLE", counter::FIB_UNREACHABLE),
            ("CNT_FIB_OTHER", counter::FIB_OTHER),
            ("CNT_LB_REDIRECTED", counter::LB_REDIRECTED),
            ("CNT_LB_FALLBACK", counter::LB_FALLBACK),
            ("CNT_LB_PASSED", counter::LB_PASSED),
            ("CNT_LB_KERNEL_ONLY", counter::LB_KERNEL_ONLY),
            ("CNT__MAX", counter::LEN),
            ("STEER_MODE_PORTS", MODE_PORTS),
            ("STEER_MODE_FORWARD", MODE_FORWARD),
            ("STEER_MODE_LB", MODE_LB),
            ("VIP_FAMILY_V4", u32::from(VIP_FAMILY_V4)),
            ("VIP_FAMILY_V6", u32::from(VIP_FAMILY_V6)),
        ];
        for (name, value) in want {
            assert_eq!(c.get(name), Some(&value), "{name} in steer.bpf.c");
        }
        assert_eq!(
            c.len(),
            want.len(),
            "steer.bpf.c has enumerators not mirrored here: {c:?}"
        );
    }

    /// `#define NAME value` of a C source, as a number.
    fn c_define(source: &str, name: &str) -> u32 {
        let value = source
            .lines()
            .find_map(|l| {
                l.strip_prefix("#define ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
            })
            .unwrap_or_else(|| panic!("no #define {name}"));
        let value = value.split("//").next().unwrap().trim();
        match value.split_once(" * ") {
            // `(2 * RULES_PORTS)`: the only product the source uses.
            Some((factor, name)) => {
                let factor: u32 = factor.trim_start_matches('(').parse().unwrap();
                factor * c_define(source, name.trim_end_matches(')'))
            }
            None => value.parse().unwrap_or_else(|_| c_define(source, value)),
        }
    }

    #[test]
    fn rules_and_vips_defines_match_the_c_source() {
        let src = include_str!("steer.bpf.c");
        assert_eq!(c_define(src, "RULES_PORTS"), RULES_PORTS);
        assert_eq!(c_define(src, "RULES_UDP_BASE"), RULES_UDP_BASE);
        assert_eq!(c_define(src, "RULES_TCP_BASE"), RULES_TCP_BASE);
        assert_eq!(c_define(src, "RULES_ENTRIES"), RULES_MAX_ENTRIES);
        assert_eq!(c_define(src, "LB_MAX_VIPS"), LB_MAX_VIPS);
        let net = include_str!("net.bpf.h");
        assert_eq!(c_define(net, "IPPROTO_UDP"), u32::from(IPPROTO_UDP));
        assert_eq!(c_define(net, "IPPROTO_TCP"), u32::from(IPPROTO_TCP));
        assert_eq!(c_define(net, "IPPROTO_ICMP"), u32::from(IPPROTO_ICMP));
        assert_eq!(c_define(net, "IPPROTO_ICMPV6"), u32::from(IPPROTO_ICMPV6));
    }

    #[test]
    fn rule_index_round_trips_and_covers_the_map() {
        assert_eq!(rule_index(IPPROTO_UDP, 0), Some(0));
        assert_eq!(rule_index(IPPROTO_UDP, 53), Some(53));
        assert_eq!(rule_index(IPPROTO_TCP, 80), Some(RULES_PORTS + 80));
        assert_eq!(
            rule_index(IPPROTO_TCP, u16::MAX),
            Some(RULES_MAX_ENTRIES - 1)
        );
        assert_eq!(rule_index(1, 80), None);
        for (proto, port) in [(IPPROTO_UDP, 9000), (IPPROTO_TCP, 0), (IPPROTO_TCP, 65535)] {
            assert_eq!(
                rule_at(rule_index(proto, port).unwrap()),
                Some((proto, port))
            );
        }
        assert_eq!(rule_at(RULES_MAX_ENTRIES), None);
    }

    // ---- bench.bpf.o ------------------------------------------------------------------

    #[test]
    fn bench_object_is_aligned_for_aya() {
        assert_eq!(BENCH_OBJ.as_ptr() as usize % 8, 0);
    }

    #[test]
    fn bench_object_has_programs_and_maps() {
        let secs = sections(BENCH_OBJ);
        let prog = section(&secs, bench::SECTION);
        assert!(!prog.data.is_empty(), "program section is empty");
        assert_eq!(prog.data.len() % 8, 0, "eBPF instructions are 8 bytes");
        for needed in [".maps", "license", ".BTF", ".BTF.ext"] {
            section(&secs, needed);
        }
        let mut progs = symbols_in(BENCH_OBJ, bench::SECTION);
        progs.sort();
        let mut want = [bench::DROP_PROGRAM, bench::GEN_PROGRAM, bench::PASS_PROGRAM];
        want.sort();
        assert_eq!(progs, want);
        let mut maps = symbols_in(BENCH_OBJ, ".maps");
        maps.sort();
        let mut want = [
            bench::COUNTERS_MAP,
            bench::GEN_CONFIG_MAP,
            bench::GEN_SEQ_MAP,
        ];
        want.sort();
        assert_eq!(maps, want);
        let license = section(&secs, "license").data;
        assert_eq!(license, b"MIT OR Apache-2.0\0");
    }

    #[test]
    fn bench_object_has_no_absolute_paths() {
        let text = String::from_utf8_lossy(BENCH_OBJ);
        for marker in ["/work/", "/tmp/", "/home/", "/root/"] {
            assert!(
                !text.contains(marker),
                "object embeds a path containing {marker}"
            );
        }
    }

    #[test]
    fn gen_config_layout_matches_the_c_declaration() {
        use bench::GenConfig;
        use std::mem::offset_of;
        assert_eq!(size_of::<GenConfig>(), GenConfig::SIZE);
        let rust = [
            ("base_sum", offset_of!(GenConfig, base_sum)),
            ("flows", offset_of!(GenConfig, flows)),
            ("base_sport", offset_of!(GenConfig, base_sport)),
            ("sport_off", offset_of!(GenConfig, sport_off)),
            ("csum_off", offset_of!(GenConfig, csum_off)),
            ("stamp_off", offset_of!(GenConfig, stamp_off)),
            ("flags", offset_of!(GenConfig, flags)),
            ("ifindex", offset_of!(GenConfig, ifindex)),
            ("head", offset_of!(GenConfig, head)),
        ];
        let btf = btf_types(BENCH_OBJ);
        let (size, members) = btf_struct(&btf, "gen_config");
        assert_eq!(size as usize, GenConfig::SIZE);
        let c: Vec<(&str, usize)> = members
            .iter()
            .map(|(n, _, bits)| (n.as_str(), (*bits / 8) as usize))
            .collect();
        assert_eq!(c, rust);
        // to_bytes puts each field at its offset.
        let cfg = GenConfig {
            base_sum: 0x0403_0201,
            flows: 0x0807_0605,
            base_sport: 0x0a09,
            sport_off: 0x0c0b,
            csum_off: 0x0e0d,
            stamp_off: 0x100f,
            flags: 0x1413_1211,
            ifindex: 0x1817_1615,
            head: std::array::from_fn(|i| 0x19 + i as u8),
        };
        let b = cfg.to_bytes();
        assert_eq!(
            u32::from_ne_bytes(b[offset_of!(GenConfig, flags)..][..4].try_into().unwrap()),
            cfg.flags
        );
        assert_eq!(
            u16::from_ne_bytes(
                b[offset_of!(GenConfig, stamp_off)..][..2]
                    .try_into()
                    .unwrap()
            ),
            cfg.stamp_off
        );
        assert_eq!(&b[offset_of!(GenConfig, head)..], &cfg.head);
        assert_eq!(GenConfig::from_bytes(b), cfg);
    }

    #[test]
    fn bench_map_definitions_match_the_constants() {
        const ARRAY: u32 = 2;
        const PERCPU_ARRAY: u32 = 6;
        let btf = btf_types(BENCH_OBJ);
        let uint = |map, field| map_field(&btf, map, field).1.unwrap();
        assert_eq!(uint(bench::GEN_CONFIG_MAP, "type"), ARRAY);
        assert_eq!(uint(bench::GEN_CONFIG_MAP, "max_entries"), 1);
        assert_eq!(uint(bench::GEN_SEQ_MAP, "type"), ARRAY);
        assert_eq!(uint(bench::GEN_SEQ_MAP, "max_entries"), 1);
        assert_eq!(uint(bench::COUNTERS_MAP, "type"), PERCPU_ARRAY);
        assert_eq!(
            uint(bench::COUNTERS_MAP, "max_entries"),
            bench::counter::LEN
        );
        match &btf[map_field(&btf, bench::GEN_CONFIG_MAP, "value").0] {
            BtfType::Struct { name, .. } => assert_eq!(name, "gen_config"),
            other => panic!("gen_config value is {other:?}"),
        }
    }

    #[test]
    fn bench_enum_values_match_the_c_declarations() {
        let src = include_str!("bench.bpf.c");
        let c = c_enumerators(src, &["CNT_", "GEN_F_"]);
        let want = [
            ("CNT_GEN_FRAMES", bench::counter::GEN_FRAMES),
            ("CNT_GEN_BYTES", bench::counter::GEN_BYTES),
            ("CNT_GEN_BAD", bench::counter::GEN_BAD),
            ("CNT_DROP_FRAMES", bench::counter::DROP_FRAMES),
            ("CNT_DROP_BYTES", bench::counter::DROP_BYTES),
            ("CNT_PASS_FRAMES", bench::counter::PASS_FRAMES),
            ("CNT_PASS_BYTES", bench::counter::PASS_BYTES),
            ("CNT_GEN_FOREIGN", bench::counter::GEN_FOREIGN),
            ("CNT__MAX", bench::counter::LEN),
            ("GEN_F_ZERO_CSUM_AS_FFFF", bench::GEN_F_ZERO_CSUM_AS_FFFF),
        ];
        for (name, value) in want {
            assert_eq!(c.get(name), Some(&value), "{name} in bench.bpf.c");
        }
        assert_eq!(
            c.len(),
            want.len(),
            "bench.bpf.c has enumerators not mirrored here: {c:?}"
        );
        let max_offset = src
            .lines()
            .find_map(|l| l.strip_prefix("#define MAX_OFFSET "))
            .expect("MAX_OFFSET in bench.bpf.c");
        assert_eq!(max_offset.trim().parse::<u16>(), Ok(bench::MAX_OFFSET));
        let head_len = src
            .lines()
            .find_map(|l| l.strip_prefix("#define GEN_HEAD_LEN "))
            .expect("GEN_HEAD_LEN in bench.bpf.c");
        assert_eq!(head_len.trim().parse::<usize>(), Ok(bench::GEN_HEAD_LEN));
    }

    // ---- fwd.bpf.o --------------------------------------------------------------------

    #[test]
    fn fwd_object_has_program_map_and_gpl_compatible_license() {
        assert_eq!(FWD_OBJ.as_ptr() as usize % 8, 0);
        let secs = sections(FWD_OBJ);
        let prog = section(&secs, fwd::SECTION);
        assert!(!prog.data.is_empty(), "program section is empty");
        assert_eq!(prog.data.len() % 8, 0, "eBPF instructions are 8 bytes");
        for needed in [".maps", ".BTF", ".BTF.ext"] {
            section(&secs, needed);
        }
        assert_eq!(symbols_in(FWD_OBJ, fwd::SECTION), [fwd::PROGRAM]);
        assert_eq!(symbols_in(FWD_OBJ, ".maps"), [fwd::COUNTERS_MAP]);
        assert_eq!(section(&secs, "license").data, b"Dual MIT/GPL\0");
        let text = String::from_utf8_lossy(FWD_OBJ);
        for marker in ["/work/", "/tmp/", "/home/", "/root/"] {
            assert!(
                !text.contains(marker),
                "object embeds a path containing {marker}"
            );
        }
        let btf = btf_types(FWD_OBJ);
        assert_eq!(map_field(&btf, fwd::COUNTERS_MAP, "type").1, Some(6));
        assert_eq!(
            map_field(&btf, fwd::COUNTERS_MAP, "max_entries").1,
            Some(fwd::counter::LEN)
        );
    }

    #[test]
    fn fwd_enum_values_match_the_c_declarations() {
        let c = c_enumerators(include_str!("fwd.bpf.c"), &["CNT_"]);
        let want = [
            ("CNT_FWD_FRAMES", fwd::counter::FRAMES),
            ("CNT_FWD_BYTES", fwd::counter::BYTES),
            ("CNT_FWD_PASSED", fwd::counter::PASSED),
            ("CNT__MAX", fwd::counter::LEN),
        ];
        for (name, value) in want {
            assert_eq!(c.get(name), Some(&value), "{name} in fwd.bpf.c");
        }
        assert_eq!(
            c.len(),
            want.len(),
            "fwd.bpf.c has unmirrored enumerators: {c:?}"
        );
    }
}
