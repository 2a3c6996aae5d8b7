// SPDX-License-Identifier: MIT OR Apache-2.0
//
// fwd: an in-kernel XDP IPv4/IPv6 forwarder, for benchmarks only.
//
// The ceiling `cargo xtask bench --scenario forward` compares sluice's
// user-space router (`--app forward`) against: the same FIB decision, made
// and acted on without leaving the driver. Modelled on the kernel's
// samples/bpf/xdp_fwd_kern.c:
//
//   bpf_fib_lookup (flags 0: FIB rules apply, iif = ingress device, tot_len =
//   the L3 length so the kernel checks the route MTU), and on SUCCESS rewrite
//   the MACs from the lookup, decrement TTL (with an RFC 1624 incremental
//   update of the IPv4 header checksum) or hop limit, count, and
//   bpf_redirect(egress ifindex, 0).
//
// Everything else (no route, local, no neighbour, TTL/hop limit <= 1, frame
// too big, VLAN tags, IPv4 options, non-IP) is XDP_PASS: the kernel does the
// rest, as it does for steer's forward mode. Not loaded by sluice itself.
//
// Protocol headers and bpf_fib_lookup come from net.bpf.h. Rust mirrors of the
// names and counter indices live in ebpf/src/lib.rs (module `fwd`).

#include "common.bpf.h"
#include "net.bpf.h"

static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;

// ---- maps (mirrored in ebpf/src/lib.rs) -------------------------------------

enum counter {
	CNT_FWD_FRAMES = 0, // rewritten and handed to bpf_redirect
	CNT_FWD_BYTES = 1,  // their bytes (Ethernet, without FCS)
	CNT_FWD_PASSED = 2, // everything else: XDP_PASS
	CNT__MAX = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// ---- program ----------------------------------------------------------------

static __always_inline void add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	// Per-CPU slot: no other CPU writes it, so no atomic needed.
	if (c)
		*c += n;
}

static __always_inline int pass(void)
{
	add(CNT_FWD_PASSED, 1);
	return XDP_PASS;
}

// TTL - 1 and the matching checksum change: the 16-bit word holding TTL (high
// byte) and protocol drops by 0x0100, so the stored complement sum rises by
// 0x0100 with end-around carry (RFC 1624, eqn. 3; what the kernel's
// ip_decrease_ttl does).
static __always_inline void ip_decrease_ttl(struct iphdr *ip)
{
	__u32 check = ip->check;

	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xFFFF));
	ip->ttl--;
}

SEC("xdp")
int xdp_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct bpf_fib_lookup fib = {};
	struct iphdr *ip = 0;
	struct ipv6hdr *ip6 = 0;

	if ((void *)(eth + 1) > data_end)
		return pass();

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return pass();
		if (ip->ver_ihl != 0x45 || ip->ttl <= 1)
			return pass();
		fib.family = AF_INET;
		fib.tos = ip->tos;
		fib.l4_protocol = ip->protocol;
		fib.tot_len = bpf_ntohs(ip->tot_len);
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = ip->daddr;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return pass();
		if (ip6->hop_limit <= 1)
			return pass();
		fib.family = AF_INET6;
		fib.flowinfo = ip6->ver_tc_flow & bpf_htonl(0x0FFFFFFF);
		fib.l4_protocol = ip6->nexthdr;
		fib.tot_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(fib.ipv6_src, ip6->saddr, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, ip6->daddr, sizeof(fib.ipv6_dst));
	} else {
		return pass();
	}
	fib.ifindex = ctx->ingress_ifindex;

	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return pass();

	if (ip)
		ip_decrease_ttl(ip);
	else if (ip6)
		ip6->hop_limit--;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	add(CNT_FWD_FRAMES, 1);
	add(CNT_FWD_BYTES, data_end - data);
	return bpf_redirect(fib.ifindex, 0);
}

// bpf_fib_lookup is a GPL-only helper (see steer.bpf.c): the string must be
// GPL-compatible for the kernel to load the program.
char _license[] SEC("license") = "Dual MIT/GPL";
