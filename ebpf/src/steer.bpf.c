// SPDX-License-Identifier: MIT OR Apache-2.0
//
// steer: sluice's XDP program.
//
// Three modes, chosen by user space through the one-entry `config` array
// (struct steer_config; the entry starts zeroed, i.e. in ports mode):
//
// ---- STEER_MODE_PORTS (0): port rules -----------------------------------------
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
//
// ---- STEER_MODE_FORWARD (1): the fast path of a user-space IP router ----------
//
// For every untagged IPv4/IPv6 frame with a plain header, ask the kernel's own
// FIB (bpf_fib_lookup, flags 0: FIB rules / policy routing apply, iif = the
// ingress device) whether it would forward the frame, and redirect it to the
// AF_XDP socket of the receive queue only if the answer is SUCCESS: a unicast
// route out of some device, forwarding enabled on the ingress device, and a
// resolved (NUD_VALID) neighbour for the next hop. User space therefore sees
// only frames it can forward right away (the next hop's MAC is known to the
// kernel's neighbour table); TTL / hop limit is not checked here, so frames
// about to expire reach user space too, which answers "time exceeded".
// tot_len is left 0 so the kernel does no MTU check: user space owns "packet
// too big" / "fragmentation needed" as well.
//
// Everything else goes to the kernel (XDP_PASS), which is the exception path
// of the router and already does each of those jobs right:
//   - NOT_FWDED: addressed to this host (or broadcast/multicast), or no route:
//     the host's own stack answers, or the kernel sends its unreachable;
//   - NO_NEIGH: the kernel queues the packet, resolves ARP/ND and sends it,
//     after which the next packets of the flow take the fast path;
//   - FWD_DISABLED: forwarding is off on the ingress device: the kernel treats
//     the packet as it would without sluice;
//   - BLACKHOLE / UNREACHABLE / PROHIBIT: the kernel drops it or sends its own
//     rate-limited ICMP error;
//   - UNSUPP_LWT (encapsulating routes), FRAG_NEEDED (not with tot_len 0),
//     anything else: the kernel's forwarding path handles it;
//   - non-IP (ARP), VLAN-tagged frames (the L3 ingress device is the VLAN
//     device, not this one), IPv4 with options or fragmented, IPv6 with
//     extension headers, ICMPv6 neighbour discovery (types 133-137),
//     multicast, broadcast and link-local destinations.
// Nothing is lost on this path: the frame is exactly what the kernel would
// have received without XDP. The rules map is not consulted in this mode.
//
// ---- STEER_MODE_LB (2): the front of a user-space load balancer --------------
//
// For every untagged IPv4/IPv6 frame, look its destination up in the `vips`
// hash map (struct vip_key: address, destination port, IP protocol, family)
// and redirect it to the AF_XDP socket of the receive queue on a hit; pass it
// to the kernel on a miss. The host keeps its own traffic (ARP, ND, SSH, ...)
// and the load balancer sees only what is addressed to a VIP.
//
//   TCP / UDP   -> look up (daddr, dport, proto), then the wildcard
//                  (daddr, 0, proto): a VIP with port 0 takes every port.
//   ICMP (IPv4 protocol 1) / ICMPv6 (IPv6 next header 58)
//               -> look up (daddr, 0, 1 or 58). User space inserts such a
//                  key for every VIP address, so ICMP errors about VIP flows
//                  (fragmentation needed, packet too big, unreachable) reach
//                  the load balancer. ICMPv6 neighbour discovery (types
//                  133-137) always goes to the kernel, VIP or not: it is the
//                  host's, even to a VIP address (NUD probes).
//   anything else IP (GRE, ESP, ...) -> XDP_PASS, no lookup.
//
// A hit goes through bpf_redirect_map(&xsks, rx_queue_index, XDP_PASS) as in
// the other modes: no socket on the queue -> the kernel gets it (fail open).
// The ports in the key are in network byte order, so the lookup key is built
// from the header bytes without swapping.
//
// Left to the kernel without a lookup (counted lb_kernel_only, so a VIP's
// traffic that takes this way shows up): VLAN-tagged frames (the VIP would be
// on the VLAN device), IPv4 fragments (the first, with MF, and every later
// one: only the first carries ports, so the fragments of one datagram would
// split between user space and the kernel; the kernel reassembles), and IPv6
// frames whose next header is an extension header (not walked; this includes
// the fragment header). IPv4 options are skipped (IHL). Malformed or truncated
// headers (IPv4 tot_len shorter than the header or past the frame, IPv6
// payload_len past the frame, TCP data offset < 5, a TCP/UDP/ICMP header cut
// short by the frame or by the IP length) are passed and counted malformed, as
// in the other modes. The rules map is not consulted in this mode.
//
// Every frame is counted exactly once in `counters` (per CPU, summed by user
// space), under one outcome of one mode (not_ip and malformed are shared).
//
// Shared definitions (integer types, map macros, xdp_md, bpf_map_lookup_elem)
// come from common.bpf.h; the protocol headers and bpf_fib_lookup from
// net.bpf.h. No kernel or libbpf headers: see common.bpf.h.
//
// The Rust mirrors of the map value structs, the action and mode values, the
// rules index layout and the counter indices live in ebpf/src/lib.rs; keep the
// two in sync (unit tests in lib.rs check the object's BTF/sizes).

#include "common.bpf.h"
#include "net.bpf.h"

static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

// uapi/linux/bpf.h; only this program has a hash map.
#define BPF_MAP_TYPE_HASH 1

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
	// Forward mode (NOT_IP and MALFORMED are shared with ports mode):
	CNT_FWD_REDIRECTED = 7,        // FIB SUCCESS, and bpf_redirect_map returned XDP_REDIRECT
	CNT_FWD_FALLBACK = 8,          // FIB SUCCESS but no socket on this queue: passed
	CNT_FWD_KERNEL_ONLY = 9,       // VLAN tag, IPv4 options/fragment, IPv6 ext header: passed
	CNT_FWD_LINK_SCOPE = 10,       // ND/RS/RA, multicast, broadcast, link-local dst: passed
	CNT_FIB_LOCAL_OR_NOROUTE = 11, // FIB NOT_FWDED (for this host, or no route): passed
	CNT_FIB_NO_NEIGH = 12,         // FIB NO_NEIGH (kernel resolves the next hop): passed
	CNT_FIB_FWD_DISABLED = 13,     // FIB FWD_DISABLED (forwarding off on ingress): passed
	CNT_FIB_UNREACHABLE = 14,      // FIB BLACKHOLE / UNREACHABLE / PROHIBIT: passed
	CNT_FIB_OTHER = 15,            // FIB UNSUPP_LWT, FRAG_NEEDED, error, unknown: passed
	// LB mode (NOT_IP and MALFORMED are shared):
	CNT_LB_REDIRECTED = 16,  // a VIP matched, and bpf_redirect_map returned XDP_REDIRECT
	CNT_LB_FALLBACK = 17,    // a VIP matched but no socket on this queue: passed
	CNT_LB_PASSED = 18,      // no VIP matched, ICMPv6 ND, or not TCP/UDP/ICMP: passed
	CNT_LB_KERNEL_ONLY = 19, // VLAN tag, IPv4 fragment, IPv6 extension header: passed
	CNT__MAX = 20,
};

enum steer_mode {
	STEER_MODE_PORTS = 0,   // port rules (the zeroed entry); any unknown value acts as this
	STEER_MODE_FORWARD = 1, // FIB-checked forwarding fast path
	STEER_MODE_LB = 2,      // VIP lookup for the load balancer
};

struct steer_config {
	__u32 mode; // enum steer_mode
};

// One entry (key 0): the mode, written by user space (before attaching, or at
// any time: a 4-byte array value is updated atomically).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_config);
} config SEC(".maps");

// One action per (protocol, port): see RULES_*. Removing a rule writes
// RULE_NONE (array entries cannot be deleted).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RULES_ENTRIES);
	__type(key, __u32);
	__type(value, struct rule_value);
} rules SEC(".maps");

// The VIPs of LB mode. A hash map: a VIP is a 16-byte address plus port and
// protocol, far too sparse for an array; one lookup (two for a port miss) per
// TCP/UDP frame is the price.
#define LB_MAX_VIPS 4096

enum vip_family {
	VIP_FAMILY_V4 = 4,
	VIP_FAMILY_V6 = 6,
};

// 20 bytes, no padding (user space hashes exactly these bytes: a padding byte
// left uninitialised on either side would make keys differ).
struct vip_key {
	__u8 addr[16]; // destination address, network order; IPv4 in addr[0..4], rest zero
	__u16 port;    // destination port, network byte order; 0 = every port (and ICMP)
	__u8 proto;    // IP protocol number: IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6
	__u8 family;   // enum vip_family
};
_Static_assert(sizeof(struct vip_key) == 20, "struct vip_key has no padding");

struct vip_value {
	__u32 flags; // reserved, 0
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct vip_value);
} vips SEC(".maps");

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

// Ports mode; see the file comment.
static __always_inline int steer_ports(struct xdp_md *ctx)
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

// The first 4 bytes of a UDP or TCP header.
struct l4ports {
	__u16 source;
	__u16 dest;
};

// Hands a frame the FIB called forwardable to the queue's AF_XDP socket. As in
// ports mode, a queue without a socket makes the helper return XDP_PASS: the
// kernel then forwards the frame itself.
static __always_inline int fwd_redirect(struct xdp_md *ctx)
{
	long ret = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);

	count(ret == XDP_REDIRECT ? CNT_FWD_REDIRECTED : CNT_FWD_FALLBACK);
	return ret;
}

// Forward mode; see the file comment for why everything but FIB SUCCESS is
// the kernel's.
static __always_inline int forward(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct bpf_fib_lookup fib = {};
	struct l4ports *ports;
	__u8 l4proto;

	if ((void *)(eth + 1) > data_end)
		return pass(CNT_MALFORMED);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u16 tot_len;

		if ((void *)(ip + 1) > data_end)
			return pass(CNT_MALFORMED);
		if ((ip->ver_ihl >> 4) != 4 || (ip->ver_ihl & 0x0F) < 5)
			return pass(CNT_MALFORMED);
		// The kernel drops these in ip_rcv (and counts them); user space
		// may rely on tot_len describing bytes that are there.
		tot_len = bpf_ntohs(ip->tot_len);
		if (tot_len < sizeof(*ip) || (void *)ip + tot_len > data_end)
			return pass(CNT_MALFORMED);
		// Options (IHL > 5; e.g. router alert) and fragments: rare, and
		// the kernel's job.
		if ((ip->ver_ihl & 0x0F) != 5)
			return pass(CNT_FWD_KERNEL_ONLY);
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET_MASK))
			return pass(CNT_FWD_KERNEL_ONLY);
		// Multicast (224/4), limited broadcast, link-local (169.254/16):
		// never routed by sluice (RFC 1812, RFC 3927).
		if ((ip->daddr & bpf_htonl(0xF0000000)) == bpf_htonl(0xE0000000) ||
		    ip->daddr == 0xFFFFFFFF ||
		    (ip->daddr & bpf_htonl(0xFFFF0000)) == bpf_htonl(0xA9FE0000))
			return pass(CNT_FWD_LINK_SCOPE);

		fib.family = AF_INET;
		fib.tos = ip->tos;
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = ip->daddr;
		l4proto = ip->protocol;
		ports = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return pass(CNT_MALFORMED);
		if ((ip6->ver_tc_flow & bpf_htons(0xF000)) != bpf_htons(0x6000))
			return pass(CNT_MALFORMED);
		if ((void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) > data_end)
			return pass(CNT_MALFORMED);
		l4proto = ip6->nexthdr;
		// Extension headers are not walked: hop-by-hop options (router
		// alert, MLD, jumbograms) must reach the kernel anyway. ESP is the
		// last header a router sees and is forwarded like any payload.
		switch (l4proto) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_FRAGMENT:
		case IPPROTO_AH:
		case IPPROTO_DSTOPTS:
		case IPPROTO_MH:
		case 139: // HIP
		case 140: // Shim6
		case 253: // experimentation (RFC 3692)
		case 254:
			return pass(CNT_FWD_KERNEL_ONLY);
		}
		// Multicast (ff00::/8) and link-local (fe80::/10) destinations.
		if (ip6->daddr[0] == 0xFF || (ip6->daddr[0] == 0xFE && (ip6->daddr[1] & 0xC0) == 0x80))
			return pass(CNT_FWD_LINK_SCOPE);
		// Neighbour discovery (RS 133, RA 134, NS 135, NA 136, redirect
		// 137) belongs to the kernel even to a global address (NUD probes).
		if (l4proto == IPPROTO_ICMPV6) {
			__u8 *type = (void *)(ip6 + 1);

			if ((void *)(type + 1) > data_end)
				return pass(CNT_MALFORMED);
			if (*type >= 133 && *type <= 137)
				return pass(CNT_FWD_LINK_SCOPE);
		}

		fib.family = AF_INET6;
		fib.flowinfo = ip6->ver_tc_flow & bpf_htonl(0x0FFFFFFF);
		__builtin_memcpy(fib.ipv6_src, ip6->saddr, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, ip6->daddr, sizeof(fib.ipv6_dst));
		ports = (void *)(ip6 + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD)) {
		// The L3 ingress device of a tagged frame is the VLAN device, not
		// ctx->ingress_ifindex: a lookup here would use the wrong iif.
		return pass(CNT_FWD_KERNEL_ONLY);
	} else {
		return pass(CNT_NOT_IP);
	}

	fib.l4_protocol = l4proto;
	// Ports only feed FIB rules that match on them (ip rule ... sport/dport);
	// a truncated L4 header is no reason to refuse forwarding.
	if ((l4proto == IPPROTO_UDP || l4proto == IPPROTO_TCP) && (void *)(ports + 1) <= data_end) {
		fib.sport = ports->source;
		fib.dport = ports->dest;
	}
	fib.tot_len = 0; // no MTU check: user space handles "too big"
	fib.ifindex = ctx->ingress_ifindex;

	switch (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0)) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		return fwd_redirect(ctx);
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return pass(CNT_FIB_LOCAL_OR_NOROUTE);
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return pass(CNT_FIB_NO_NEIGH);
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return pass(CNT_FIB_FWD_DISABLED);
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return pass(CNT_FIB_UNREACHABLE);
	default:
		return pass(CNT_FIB_OTHER);
	}
}

// Hands a frame to a VIP to the queue's AF_XDP socket; as in the other modes,
// a queue without a socket makes the helper return XDP_PASS.
static __always_inline int lb_redirect(struct xdp_md *ctx)
{
	long ret = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);

	count(ret == XDP_REDIRECT ? CNT_LB_REDIRECTED : CNT_LB_FALLBACK);
	return ret;
}

// LB mode; see the file comment.
static __always_inline int lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct vip_key key = {};
	void *l4;
	__u32 l4_len; // what the IP header says follows it (the frame may be padded)
	__u8 icmp_proto;

	if ((void *)(eth + 1) > data_end)
		return pass(CNT_MALFORMED);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 ihl;
		__u16 tot_len;

		if ((void *)(ip + 1) > data_end)
			return pass(CNT_MALFORMED);
		if ((ip->ver_ihl >> 4) != 4)
			return pass(CNT_MALFORMED);
		ihl = ip->ver_ihl & 0x0F;
		if (ihl < 5)
			return pass(CNT_MALFORMED);
		tot_len = bpf_ntohs(ip->tot_len);
		if (tot_len < ihl * 4 || (void *)ip + tot_len > data_end)
			return pass(CNT_MALFORMED);
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET_MASK))
			return pass(CNT_LB_KERNEL_ONLY);
		__builtin_memcpy(key.addr, &ip->daddr, sizeof(ip->daddr));
		key.family = VIP_FAMILY_V4;
		key.proto = ip->protocol;
		icmp_proto = IPPROTO_ICMP;
		// ihl <= 15, so the offset is bounded for the verifier (<= 60 bytes).
		l4 = (void *)ip + ihl * 4;
		l4_len = tot_len - ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return pass(CNT_MALFORMED);
		if ((ip6->ver_tc_flow & bpf_htons(0xF000)) != bpf_htons(0x6000))
			return pass(CNT_MALFORMED);
		if ((void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) > data_end)
			return pass(CNT_MALFORMED);
		switch (ip6->nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_FRAGMENT:
		case IPPROTO_AH:
		case IPPROTO_DSTOPTS:
		case IPPROTO_MH:
		case 139: // HIP
		case 140: // Shim6
		case 253: // experimentation (RFC 3692)
		case 254:
			return pass(CNT_LB_KERNEL_ONLY);
		}
		__builtin_memcpy(key.addr, ip6->daddr, sizeof(ip6->daddr));
		key.family = VIP_FAMILY_V6;
		key.proto = ip6->nexthdr;
		icmp_proto = IPPROTO_ICMPV6;
		l4 = ip6 + 1;
		l4_len = bpf_ntohs(ip6->payload_len);
	} else if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD)) {
		return pass(CNT_LB_KERNEL_ONLY);
	} else {
		return pass(CNT_NOT_IP);
	}

	// Each L4 header must be in the frame (for the verifier) and inside the IP
	// packet: a header read from Ethernet padding is not one (the kernel drops
	// such packets).
	if (key.proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end || l4_len < sizeof(*udp))
			return pass(CNT_MALFORMED);
		key.port = udp->dest;
	} else if (key.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end || l4_len < sizeof(*tcp))
			return pass(CNT_MALFORMED);
		if ((tcp->doff_res >> 4) < 5)
			return pass(CNT_MALFORMED);
		key.port = tcp->dest;
	} else if (key.proto == icmp_proto) {
		struct icmphdr *icmp = l4;

		if ((void *)(icmp + 1) > data_end || l4_len < sizeof(*icmp))
			return pass(CNT_MALFORMED);
		if (icmp_proto == IPPROTO_ICMPV6 && icmp->type >= 133 && icmp->type <= 137)
			return pass(CNT_LB_PASSED);
		// key.port stays 0: ICMP is keyed by address alone.
	} else {
		return pass(CNT_LB_PASSED);
	}

	if (bpf_map_lookup_elem(&vips, &key))
		return lb_redirect(ctx);
	if (key.port != 0) {
		key.port = 0; // the VIP's wildcard entry: every port of this protocol
		if (bpf_map_lookup_elem(&vips, &key))
			return lb_redirect(ctx);
	}
	return pass(CNT_LB_PASSED);
}

// "xdp.frags": the program copes with multi-buffer frames (it reads only the headers, which
// lie in the first buffer), so the kernel lets it run on links whose frames span several pages
// (a 9000-byte MTU: veth refuses a program without it) and hands such frames to AF_XDP
// sockets bound with XDP_USE_SG in several descriptors.
SEC("xdp.frags")
int steer(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct steer_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (cfg && cfg->mode == STEER_MODE_FORWARD)
		return forward(ctx);
	if (cfg && cfg->mode == STEER_MODE_LB)
		return lb(ctx);
	return steer_ports(ctx);
}

// The license string gates GPL-only helpers, and bpf_fib_lookup is one
// (gpl_only = true in net/core/filter.c): the kernel refuses to load a program
// calling it unless this string is GPL-compatible (kernel/bpf/core.c,
// license_is_gpl_compatible). "Dual MIT/GPL" is on that list; the source
// itself stays MIT OR Apache-2.0 (SPDX line above).
char _license[] SEC("license") = "Dual MIT/GPL";
