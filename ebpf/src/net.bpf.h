// SPDX-License-Identifier: MIT OR Apache-2.0
//
// net.bpf.h: protocol headers and the FIB lookup helper, shared by steer.bpf.c
// and fwd.bpf.c (bench.bpf.c parses nothing and does not include it).
//
// Same rules as common.bpf.h: no kernel or libbpf headers, everything copied
// from the stable uapi (linux/if_ether.h, linux/ip.h, linux/ipv6.h,
// linux/in.h, linux/udp.h, linux/tcp.h, linux/icmp.h, linux/bpf.h), so the
// objects depend only on ebpf/src and the clang version.

#ifndef SLUICE_NET_BPF_H
#define SLUICE_NET_BPF_H

#include "common.bpf.h"

#define ETH_HLEN 14
#define ETH_ALEN 6
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60
#define IPPROTO_MH 135
#define IP_MF 0x2000          // "more fragments" bit of iphdr.frag_off (host order)
#define IP_OFFSET_MASK 0x1FFF // fragment offset bits of iphdr.frag_off (host order)
#define AF_INET 2
#define AF_INET6 10

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define bpf_ntohs(x) __builtin_bswap16(x)
#define bpf_htons(x) __builtin_bswap16(x)
#define bpf_htonl(x) __builtin_bswap32(x)
#else
#define bpf_ntohs(x) (x)
#define bpf_htons(x) (x)
#define bpf_htonl(x) (x)
#endif

// Not packed: 14 bytes without padding anyway, and an aligned type lets clang
// load h_proto with one 16-bit load instead of two byte loads.
struct ethhdr {
	__u8 h_dest[ETH_ALEN];
	__u8 h_source[ETH_ALEN];
	__u16 h_proto; // network byte order
};

struct vlan_hdr {
	__u16 tci;
	__u16 encap_proto; // network byte order
};

struct iphdr {
	__u8 ver_ihl; // version (high nibble), IHL in 32-bit words (low nibble)
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off; // flags (3 bits) + fragment offset (13 bits), network order
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct ipv6hdr {
	__u32 ver_tc_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct udphdr {
	__u16 source;
	__u16 dest;
	__u16 len;
	__u16 check;
};

struct tcphdr {
	__u16 source;
	__u16 dest;
	__u32 seq;
	__u32 ack_seq;
	__u8 doff_res; // data offset in 32-bit words (high nibble)
	__u8 flags;
	__u16 window;
	__u16 check;
	__u16 urg_ptr;
};

// ICMP and ICMPv6 share this 8-byte header, the least either kernel receive
// path (icmp_rcv, icmpv6_rcv) accepts.
struct icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest; // type-specific (echo id/sequence, next-hop MTU, ...)
};

// ---- bpf_fib_lookup (uapi/linux/bpf.h, as of Linux 6.18) --------------------

// Return values of bpf_fib_lookup (enum in uapi; > 0 means "not forwardable
// here, and this is why"). Negative values are errors (bad arguments).
#define BPF_FIB_LKUP_RET_SUCCESS 0      // forwardable, neighbour resolved: params has the MACs
#define BPF_FIB_LKUP_RET_BLACKHOLE 1    // blackhole route
#define BPF_FIB_LKUP_RET_UNREACHABLE 2  // unreachable route
#define BPF_FIB_LKUP_RET_PROHIBIT 3     // prohibit route
#define BPF_FIB_LKUP_RET_NOT_FWDED 4    // local, broadcast, multicast, or no route at all
#define BPF_FIB_LKUP_RET_FWD_DISABLED 5 // forwarding is off on the ingress device
#define BPF_FIB_LKUP_RET_UNSUPP_LWT 6   // the route needs lightweight-tunnel encapsulation
#define BPF_FIB_LKUP_RET_NO_NEIGH 7     // next hop has no valid neighbour entry
#define BPF_FIB_LKUP_RET_FRAG_NEEDED 8  // tot_len > route MTU (never with tot_len = 0)
#define BPF_FIB_LKUP_RET_NO_SRC_ADDR 9  // only with BPF_FIB_LOOKUP_SRC

// 64 bytes; offsets: family 0, l4_protocol 1, sport 2, dport 4, tot_len 6,
// ifindex 8, tos/flowinfo 12, src 16, dst 32, vlan/tbid 48, mark/smac 52,
// dmac 58. Linux 6.10 put `mark` (input, with BPF_FIB_LOOKUP_MARK) in a union
// with smac/dmac; sluice never sets that flag and zeroes the struct, so both
// readings of those bytes agree.
struct bpf_fib_lookup {
	__u8 family; // in: AF_INET / AF_INET6; out: family of the next hop
	__u8 l4_protocol; // in: for FIB rules matching on ipproto
	__u16 sport;      // in: network order, for FIB rules on ports
	__u16 dport;      // in: network order
	union {
		__u16 tot_len;    // in: L3 length for the MTU check; 0 = no check
		__u16 mtu_result; // out: the MTU, with FRAG_NEEDED
	} __attribute__((packed, aligned(2)));
	__u32 ifindex; // in: ingress device; out: egress device
	union {
		__u8 tos;        // in, AF_INET
		__u32 flowinfo;  // in, AF_INET6: network order, traffic class + flow label
		__u32 rt_metric; // out
	};
	union {
		__u32 ipv4_src;    // network order
		__u32 ipv6_src[4]; // network order
	};
	union {
		__u32 ipv4_dst;    // in: destination; out: gateway, if any
		__u32 ipv6_dst[4];
	};
	union {
		struct {
			__u16 h_vlan_proto; // out
			__u16 h_vlan_TCI;   // out
		};
		__u32 tbid; // in, with BPF_FIB_LOOKUP_DIRECT | BPF_FIB_LOOKUP_TBID
	};
	union {
		struct {
			__u32 mark; // in, with BPF_FIB_LOOKUP_MARK (Linux >= 6.10)
		};
		struct {
			__u8 smac[ETH_ALEN]; // out: egress device's MAC
			__u8 dmac[ETH_ALEN]; // out: next hop's MAC
		};
	};
};

#define FIB_AT(field, off) \
	_Static_assert(__builtin_offsetof(struct bpf_fib_lookup, field) == off, #field " offset")
_Static_assert(sizeof(struct bpf_fib_lookup) == 64, "struct bpf_fib_lookup is 64 bytes in uapi");
FIB_AT(tot_len, 6);
FIB_AT(ifindex, 8);
FIB_AT(flowinfo, 12);
FIB_AT(ipv4_src, 16);
FIB_AT(ipv6_dst, 32);
FIB_AT(tbid, 48);
FIB_AT(mark, 52);
FIB_AT(smac, 52);
FIB_AT(dmac, 58);
#undef FIB_AT

// flags 0: a full lookup through the FIB rules (policy routing), with the
// ingress device as iif, as the kernel's own forwarding path does.
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen,
			      __u32 flags) = (void *)69;

#endif // SLUICE_NET_BPF_H
