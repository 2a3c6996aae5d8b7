//! sluice's XDP steering program: the committed object and the Rust mirrors of its maps.
//!
//! The program lives in `src/steer.bpf.c`; `cargo xtask build-ebpf` compiles it to
//! `src/steer.bpf.o`, which is committed so that building sluice needs no clang, and
//! `cargo xtask check-ebpf` fails when the two disagree. This crate owns the object bytes
//! ([`STEER_OBJ`]), the names the loader looks up, and `#[repr(C)]` mirrors of the map
//! key/value structs, action values and counter indices. It must never load or attach
//! anything (that is `sluice::steer`), and it has no dependencies.
//!
//! Keep this file and `steer.bpf.c` in sync: the tests below read the object's own BTF
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

/// Name of the XDP program (the C function; its section is [`PROGRAM_SECTION`]).
pub const PROGRAM_NAME: &str = "steer";
/// ELF section of the program.
pub const PROGRAM_SECTION: &str = "xdp";

/// `rules`: `BPF_MAP_TYPE_HASH`, [`RuleKey`] → [`RuleValue`].
pub const RULES_MAP: &str = "rules";
/// `xsks`: `BPF_MAP_TYPE_XSKMAP`, receive-queue index (`u32`) → AF_XDP socket fd.
pub const XSKS_MAP: &str = "xsks";
/// `counters`: `BPF_MAP_TYPE_PERCPU_ARRAY` of `u64`, indexed by the [`counter`] constants.
pub const COUNTERS_MAP: &str = "counters";

/// `max_entries` of [`RULES_MAP`]: at most this many `(proto, port)` rules.
pub const RULES_MAX_ENTRIES: u32 = 4096;
/// `max_entries` of [`XSKS_MAP`]: AF_XDP sockets can be registered for queues `0..64`.
pub const XSKS_MAX_ENTRIES: u32 = 64;

/// IP protocol number of UDP, as used in [`RuleKey::proto`].
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of TCP, as used in [`RuleKey::proto`].
pub const IPPROTO_TCP: u8 = 6;

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
    /// Number of counters (`max_entries` of the map).
    pub const LEN: u32 = 7;
}

/// Key of [`RULES_MAP`] (C `struct rule_key`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleKey {
    /// IP protocol number: [`IPPROTO_UDP`] or [`IPPROTO_TCP`].
    pub proto: u8,
    /// Must be zero (the map hashes all four bytes).
    pub pad: u8,
    /// Destination port in HOST byte order.
    pub port: u16,
}

impl RuleKey {
    /// Size in bytes, as the C struct declares it.
    pub const SIZE: usize = 4;

    /// A key with the padding zeroed.
    pub const fn new(proto: u8, port: u16) -> Self {
        Self {
            proto,
            pad: 0,
            port,
        }
    }

    /// The key's in-memory representation (what the kernel hashes), without `unsafe`.
    pub const fn to_bytes(self) -> [u8; Self::SIZE] {
        let p = self.port.to_ne_bytes();
        [self.proto, self.pad, p[0], p[1]]
    }

    /// Inverse of [`RuleKey::to_bytes`].
    pub const fn from_bytes(b: [u8; Self::SIZE]) -> Self {
        Self {
            proto: b[0],
            pad: b[1],
            port: u16::from_ne_bytes([b[2], b[3]]),
        }
    }
}

/// Value of [`RULES_MAP`] (C `struct rule_value`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleValue {
    /// [`ACTION_REDIRECT`], [`ACTION_DROP`] or [`ACTION_PASS`]; the program treats any other
    /// value as pass.
    pub action: u32,
}

impl RuleValue {
    /// Size in bytes, as the C struct declares it.
    pub const SIZE: usize = 4;
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
        let mut want = [COUNTERS_MAP, RULES_MAP, XSKS_MAP];
        want.sort();
        assert_eq!(maps, want);
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
        assert_eq!(size_of::<RuleKey>(), RuleKey::SIZE);
        assert_eq!(size_of::<RuleValue>(), RuleValue::SIZE);
        assert_eq!(std::mem::offset_of!(RuleKey, proto), 0);
        assert_eq!(std::mem::offset_of!(RuleKey, pad), 1);
        assert_eq!(std::mem::offset_of!(RuleKey, port), 2);

        let btf = btf_types(STEER_OBJ);
        let members = |name: &str, size: usize| {
            let (s, members) = btf_struct(&btf, name);
            assert_eq!(s as usize, size, "size of struct {name}");
            members
                .iter()
                .map(|(n, _, bits)| (n.as_str(), *bits / 8))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            members("rule_key", RuleKey::SIZE),
            [("proto", 0), ("pad", 1), ("port", 2)]
        );
        assert_eq!(members("rule_value", RuleValue::SIZE), [("action", 0)]);
    }

    #[test]
    fn map_definitions_match_the_constants() {
        const HASH: u32 = 1;
        const PERCPU_ARRAY: u32 = 6;
        const XSKMAP: u32 = 17;
        let btf = btf_types(STEER_OBJ);
        let uint = |map, field| map_field(&btf, map, field).1.unwrap();
        assert_eq!(uint(RULES_MAP, "type"), HASH);
        assert_eq!(uint(RULES_MAP, "max_entries"), RULES_MAX_ENTRIES);
        assert_eq!(uint(XSKS_MAP, "type"), XSKMAP);
        assert_eq!(uint(XSKS_MAP, "max_entries"), XSKS_MAX_ENTRIES);
        assert_eq!(uint(COUNTERS_MAP, "type"), PERCPU_ARRAY);
        assert_eq!(uint(COUNTERS_MAP, "max_entries"), counter::LEN);
        let named = |map, field| match &btf[map_field(&btf, map, field).0] {
            BtfType::Struct { name, .. } => name.clone(),
            other => panic!("{map}.{field} is {other:?}"),
        };
        assert_eq!(named(RULES_MAP, "key"), "rule_key");
        assert_eq!(named(RULES_MAP, "value"), "rule_value");
    }

    /// `NAME = value` enumerators of the C source. Enums used only as constants are not in
    /// the object's BTF, so these are checked against the source; `check-ebpf` ties the
    /// source to the object.
    fn c_enumerators() -> HashMap<String, u32> {
        include_str!("steer.bpf.c")
            .lines()
            .filter_map(|line| {
                let code = line.split("//").next()?.trim().trim_end_matches(',');
                let (name, value) = code.split_once(" = ")?;
                if !(name.starts_with("RULE_") || name.starts_with("CNT_")) {
                    return None;
                }
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn enum_values_match_the_c_declarations() {
        let c = c_enumerators();
        let want = [
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
            ("CNT__MAX", counter::LEN),
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

    #[test]
    fn rule_key_bytes_round_trip() {
        let k = RuleKey::new(IPPROTO_UDP, 0x1234);
        let b = k.to_bytes();
        assert_eq!(b[0], IPPROTO_UDP);
        assert_eq!(b[1], 0);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 0x1234);
        assert_eq!(RuleKey::from_bytes(b), k);
    }
}
