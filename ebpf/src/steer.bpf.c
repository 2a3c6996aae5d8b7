// SPDX-License-Identifier: MIT OR Apache-2.0
//
// steer: sluice's XDP program.
//
// Parses Ethernet (up to two 802.1Q / 802.1ad tags), IPv4 (options skipped via
// IHL) or IPv6 (fixed header only), then UDP or TCP for the destination port,
// and reads the action for `(proto, dst port)` from the `rules` array at index
// `RULES_UDP_BASE + port` or `RULES_TCP_BASE + port`:
//
//   REDIRECT -> bpf_redirect_map(&xsks, rx_queue_index, XDP_PASS): the frame
//               goes to the AF_XDP socket registered for the receive queue, or,
//               when that queue has no socket, on to the kernel (fail open).
//   DROP     -> XDP_DROP
//   PASS     -> XDP_PASS
//   NONE     -> XDP_PASS (no rule: the entry is still zero)
//
// An array, not a hash map: every port of both protocols has a slot (no limit
// on the number of rules), and the verifier inlines an array lookup into a
// bounds check plus an address computation, where a hash lookup is a helper
// call that hashes the key and walks a bucket, for every frame.
//
// Everything that matches no rule, everything that is not IPv4/IPv6, every
// malformed or truncated frame and every non-first IPv4 fragment goes to the
// kernel (XDP_PASS): this program never drops a frame nobody asked it to drop.
// Each outcome is counted in `counters` (per CPU, summed by user space).
//
// Shared definitions (integer types, map macros, xdp_md, bpf_map_lookup_elem)
// come from common.bpf.h; the protocol headers below are this program's own.
// No kernel or libbpf headers: see common.bpf.h.
//
// The Rust mirrors of the map value struct, the action values, the rules
// index layout and the counter indices live in ebpf/src/lib.rs; keep the two
// in sync (unit tests in lib.rs check the object's BTF/sizes).

#include "common.bpf.h"

static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IP_OFFSET_MASK 0x1FFF // fragment offset bits of iphdr.frag_off (host order)

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define bpf_ntohs(x) __builtin_bswap16(x)
#define bpf_htons(x) __builtin_bswap16(x)
#else
#define bpf_ntohs(x) (x)
#define bpf_htons(x) (x)
#endif

// Not packed: 14 bytes without padding anyway, and an aligned type lets clang
// load h_proto with one 16-bit load instead of two byte loads.
struct ethhdr {
	__u8 h_dest[6];
	__u8 h_source[6];
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

// ---- maps (mirrored in ebpf/src/lib.rs) -------------------------------------

// `rules` layout: one slot per (protocol, destination port), the port in HOST
// byte order. UDP ports first, then TCP ports.
#define RULES_PORTS 65536
#define RULES_UDP_BASE 0
#define RULES_TCP_BASE RULES_PORTS
#define RULES_ENTRIES (2 * RULES_PORTS)

enum rule_action {
	RULE_NONE = 0, // no rule (an array entry starts zeroed)
	RULE_REDIRECT = 1,
	RULE_DROP = 2,
	RULE_PASS = 3,
};

struct rule_value {
	__u32 action; // enum rule_action; any other value is treated as PASS
};

// Outcome counters: indices into `counters`.
enum counter {
	CNT_REDIRECTED = 0,        // handed to bpf_redirect_map and it returned XDP_REDIRECT
	CNT_PASSED = 1,            // IP, well-formed, no rule (or IPv4 non-first fragment)
	CNT_PASSED_BY_RULE = 2,    // a PASS rule matched
	CNT_DROPPED_BY_RULE = 3,   // a DROP rule matched
	CNT_NOT_IP = 4,            // neither IPv4 nor IPv6 (ARP, > 2 VLAN tags, ...)
	CNT_MALFORMED = 5,         // truncated or invalid header
	CNT_REDIRECT_FALLBACK = 6, // REDIRECT rule matched but no socket on this queue: passed
	CNT__MAX = 7,
};

// One action per (protocol, port): see RULES_*. Removing a rule writes
// RULE_NONE (array entries cannot be deleted).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RULES_ENTRIES);
	__type(key, __u32);
	__type(value, struct rule_value);
} rules SEC(".maps");

// AF_XDP sockets keyed by receive-queue index: queues 0..63.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// ---- program ----------------------------------------------------------------

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	// Per-CPU slot: no other CPU writes it, so no atomic needed.
	if (c)
		*c += 1;
}

static __always_inline int pass(__u32 idx)
{
	count(idx);
	return XDP_PASS;
}

SEC("xdp")
int steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cursor;
	__u16 h_proto;
	__u8 l4proto;

	if ((void *)(eth + 1) > data_end)
		return pass(CNT_MALFORMED);
	h_proto = eth->h_proto;
	cursor = eth + 1;

	// Up to two VLAN tags (802.1ad outer + 802.1Q inner, or any two of them).
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_hdr *vh = cursor;

		if (h_proto != bpf_htons(ETH_P_8021Q) && h_proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return pass(CNT_MALFORMED);
		h_proto = vh->encap_proto;
		cursor = vh + 1;
	}

	if (h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;
		__u32 ihl;

		if ((void *)(ip + 1) > data_end)
			return pass(CNT_MALFORMED);
		if ((ip->ver_ihl >> 4) != 4)
			return pass(CNT_MALFORMED);
		ihl = ip->ver_ihl & 0x0F;
		if (ihl < 5)
			return pass(CNT_MALFORMED);
		// Non-first fragments carry no L4 header: nothing to match on.
		if (ip->frag_off & bpf_htons(IP_OFFSET_MASK))
			return pass(CNT_PASSED);
		l4proto = ip->protocol;
		// ihl <= 15, so the offset is bounded for the verifier (<= 60 bytes).
		cursor = (void *)ip + ihl * 4;
		if (cursor > data_end)
			return pass(CNT_MALFORMED);
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;

		if ((void *)(ip6 + 1) > data_end)
			return pass(CNT_MALFORMED);
		if ((ip6->ver_tc_flow & bpf_htons(0xF000)) != bpf_htons(0x6000))
			return pass(CNT_MALFORMED);
		// Fixed header only: extension headers are not walked, so such
		// frames are simply not matched.
		l4proto = ip6->nexthdr;
		cursor = ip6 + 1;
	} else {
		return pass(CNT_NOT_IP);
	}

	__u32 index;

	if (l4proto == IPPROTO_UDP) {
		struct udphdr *udp = cursor;

		if ((void *)(udp + 1) > data_end)
			return pass(CNT_MALFORMED);
		index = RULES_UDP_BASE + bpf_ntohs(udp->dest);
	} else if (l4proto == IPPROTO_TCP) {
		struct tcphdr *tcp = cursor;

		if ((void *)(tcp + 1) > data_end)
			return pass(CNT_MALFORMED);
		if ((tcp->doff_res >> 4) < 5)
			return pass(CNT_MALFORMED);
		index = RULES_TCP_BASE + bpf_ntohs(tcp->dest);
	} else {
		return pass(CNT_PASSED);
	}

	// index < RULES_ENTRIES by construction, so this never fails; the
	// verifier requires the NULL check all the same.
	struct rule_value *rule = bpf_map_lookup_elem(&rules, &index);

	if (!rule)
		return pass(CNT_PASSED);

	switch (rule->action) {
	case RULE_NONE:
		return pass(CNT_PASSED);
	case RULE_REDIRECT: {
		// A queue without a socket makes the helper return XDP_PASS (the
		// low bits of flags): the frame goes to the kernel, never lost.
		long ret = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);

		count(ret == XDP_REDIRECT ? CNT_REDIRECTED : CNT_REDIRECT_FALLBACK);
		return ret;
	}
	case RULE_DROP:
		count(CNT_DROPPED_BY_RULE);
		return XDP_DROP;
	default:
		return pass(CNT_PASSED_BY_RULE);
	}
}

// The license string only gates GPL-only helpers; this program uses none
// (bpf_map_lookup_elem, bpf_redirect_map). Adding one (e.g. bpf_trace_printk
// for debugging) needs a GPL-compatible string here.
char _license[] SEC("license") = "MIT OR Apache-2.0";
