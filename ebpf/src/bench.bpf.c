// SPDX-License-Identifier: MIT OR Apache-2.0
//
// bench: sluice's benchmark XDP programs.
//
//   gen_tx    the traffic generator. User space runs it with BPF_PROG_TEST_RUN
//             and BPF_F_TEST_XDP_LIVE_FRAMES: the kernel hands it a copy of a
//             template frame, it stamps the copy (flow's source port, sequence
//             number, transmit time), fixes the L4 checksum and returns XDP_TX,
//             which live-frames mode turns into a transmit out of the
//             interface given in ctx_in. Frames whose ingress_ifindex is not
//             config.ifindex are passed untouched (see "dispatcher" below).
//   drop_all  XDP_DROP and count: the "XDP_DROP floor" peer (the most any
//             AF_XDP path can reach on the receiving end).
//   pass_all  XDP_PASS and count. Attached on the receiving veth end for the
//             kernel-socket baselines: veth's ndo_xdp_xmit (what XDP_TX from
//             the other end uses) delivers only to a peer that has an XDP
//             program (or GRO) enabled.
//
// Live frames and recycled pages (Documentation/bpf/bpf_prog_run.rst): the
// kernel initialises each page of its pool with the template once; recycled
// pages are NOT rewritten, only data/data_end/data_meta are reset. So gen_tx
// sees the template, a frame it stamped earlier, or such a frame as a receiver
// left it: the receiving end runs on the generator's page (veth hands it the
// same page), and a router rewrites it in place (MACs, TTL / hop limit, IPv4
// header checksum: the kernel's forwarding path and an XDP forwarder both do).
// gen_tx therefore restores the frame's head from a copy of the template
// (config.head: its first GEN_HEAD_LEN bytes, which hold every header byte of
// any template) on every run, then writes the per-frame fields, and computes
// the L4 checksum from a precomputed sum of the template's invariant part
// (config.base_sum), never incrementally from what the frame holds. Bytes
// after the head (the payload past the stamp, at most 1514 - 56) are never
// written by gen_tx and by no receiver this project runs.
//
// The head copy: the largest of 80, 72, 64, 56 bytes that fits in the frame
// (constant-size copies, 8-byte words: the verifier sees fixed offsets behind
// one packet bounds check each). It must cover everything before the stamp
// (stamp_off <= copied length, checked; user space guarantees it: every
// template is at least headers + 16 bytes, and the headers are at most 74).
//
// Checksum: config.base_sum is the 32-bit ones-complement partial sum, over
// big-endian 16-bit words, of the pseudo-header + L4 header (checksum = 0,
// source port = 0) + payload with the stamp bytes zeroed. The variable words
// (source port, the 16-byte stamp) are added here. The program sums words as
// they sit in memory (native loads, little-endian host) and byte-swaps the
// folded base sum into that order: a ones-complement sum is byte-order
// independent up to a final swap (RFC 1071, 2.(B)). The sport and stamp
// offsets must be even relative to the L4 header (user space guarantees it),
// so their words line up with the checksum's word grid.
//
// Dispatcher: every BPF_PROG_TEST_RUN call with repeat > 1 adds the program to
// the kernel's XDP dispatcher and removes it again (bpf_prog_change_xdp), and
// each change rewrites the dispatcher image and waits for an RCU grace period:
// measured ~25 ms per call on this project's 6.18 VM. While the program is
// attached somewhere, those changes are only reference counts. User space
// therefore also attaches gen_tx in generic mode to the generator namespace's
// loopback device, where it must stay inert: hence the ingress_ifindex check.
//
// Helpers: bpf_map_lookup_elem and bpf_ktime_get_ns, both gpl_only = false in
// kernel/bpf/helpers.c, so the MIT OR Apache-2.0 licence string is fine. The
// sequence counter uses an atomic fetch-and-add (BPF_ATOMIC | BPF_FETCH), an
// instruction, not a helper; it needs -mcpu=v3 (clang) and Linux >= 5.12.
//
// Shared definitions (integer types, map macros, xdp_md, bpf_map_lookup_elem)
// come from common.bpf.h, which includes no kernel or libbpf headers, so the
// object depends only on this file, that header and the clang version. Rust
// mirrors (config struct, counter indices, names) live in ebpf/src/lib.rs; its
// tests check them against the object's BTF and this file's enumerators.

#include "common.bpf.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
// The stamp is little-endian by definition (bench/src/payload.rs) and the
// checksum code sums native words; a big-endian port needs swaps in both.
#error "bench.bpf.c assumes a little-endian target"
#endif

// Helper prototype (stable helper id of uapi/linux/bpf.h); the shared ones are
// in common.bpf.h.
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;

// bench/src/payload.rs: MAGIC, sent big-endian (bytes 5a 1c).
#define STAMP_MAGIC_BE 0x1c5a // 0x5a1c as a native (little-endian) u16 load
#define STAMP_LEN 16

// Offsets are bounded so the verifier can track packet pointers plus a
// variable offset; frames are at most 1514 bytes anyway.
#define MAX_OFFSET 2047

// Bytes of the template kept in config.head (a multiple of 8): Ethernet 14 +
// IPv6 40 + TCP 20 = 74 bytes of headers at most, rounded up.
#define GEN_HEAD_LEN 80

// ---- maps (mirrored in ebpf/src/lib.rs) -------------------------------------

// The generator's configuration, written by user space before each run.
struct gen_config {
	__u32 base_sum;   // see the file comment; big-endian word order, unfolded
	__u32 flows;      // number of flows, >= 1 (0 is treated as 1)
	__u16 base_sport; // source port of flow 0, host order
	__u16 sport_off;  // offset of the L4 source port from the frame start
	__u16 csum_off;   // offset of the L4 checksum
	__u16 stamp_off;  // offset of the 16-byte payload stamp
	__u32 flags;      // GEN_F_*
	__u32 ifindex;    // only frames "received" on this ifindex are generated
	// The template's first GEN_HEAD_LEN bytes (zero past its end), as the
	// frame holds them; u64 words so that the copy moves 8 bytes at a time.
	__u64 head[GEN_HEAD_LEN / 8];
};

enum gen_flags {
	// UDP: a computed checksum of 0 is sent as 0xffff (0 means "none" for
	// UDP/IPv4 and is invalid for UDP/IPv6). TCP sends what it computes.
	GEN_F_ZERO_CSUM_AS_FFFF = 1,
};

// Per-CPU counters, indices into `counters` (one map shared by the three
// programs; each user-space handle loads its own copy of the object).
enum counter {
	CNT_GEN_FRAMES = 0,     // gen_tx: frames stamped and returned XDP_TX
	CNT_GEN_BYTES = 1,      // gen_tx: their bytes (Ethernet, no FCS)
	CNT_GEN_BAD = 2,        // gen_tx: no config or frame too short: XDP_DROP
	CNT_DROP_FRAMES = 3,    // drop_all
	CNT_DROP_BYTES = 4,     // drop_all
	CNT_PASS_FRAMES = 5,    // pass_all
	CNT_PASS_BYTES = 6,     // pass_all
	CNT_GEN_FOREIGN = 7,    // gen_tx: frames from another interface: XDP_PASS
	CNT__MAX = 8,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

// The global sequence counter: seq of the next frame. A plain array, not per
// CPU, updated atomically: the thread running BPF_PROG_TEST_RUN may migrate
// between CPUs between (not during) batches, and several generator threads
// may share one loaded object.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// ---- programs ---------------------------------------------------------------

static __always_inline void count(__u32 frames_idx, __u64 bytes)
{
	__u32 bytes_idx = frames_idx + 1;
	__u64 *c = bpf_map_lookup_elem(&counters, &frames_idx);

	// Per-CPU slots: no other CPU writes them, so no atomics needed.
	if (c)
		*c += 1;
	c = bpf_map_lookup_elem(&counters, &bytes_idx);
	if (c)
		*c += bytes;
}

static __always_inline __u32 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

static __always_inline int bad(void)
{
	__u32 idx = CNT_GEN_BAD;
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	if (c)
		*c += 1;
	return XDP_DROP;
}

SEC("xdp")
int gen_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &zero);
	__u64 *seqp = bpf_map_lookup_elem(&gen_seq, &zero);

	if (!cfg || !seqp)
		return bad();
	if (ctx->ingress_ifindex != cfg->ifindex) {
		__u32 idx = CNT_GEN_FOREIGN;
		__u64 *c = bpf_map_lookup_elem(&counters, &idx);

		if (c)
			*c += 1;
		return XDP_PASS;
	}

	__u32 sport_off = cfg->sport_off;
	__u32 csum_off = cfg->csum_off;
	__u32 stamp_off = cfg->stamp_off;

	if (sport_off > MAX_OFFSET || csum_off > MAX_OFFSET || stamp_off > MAX_OFFSET)
		return bad();

	__u16 *sport = data + sport_off;
	__u16 *csum = data + csum_off;
	__u16 *stamp = data + stamp_off;

	if ((void *)(sport + 1) > data_end || (void *)(csum + 1) > data_end ||
	    (void *)stamp + STAMP_LEN > data_end)
		return bad();

	// Restore the head (see the file comment); largest copy that fits.
	__u32 head_len;

	if (data + 80 <= data_end) {
		__builtin_memcpy((__u64 *)data, cfg->head, 80);
		head_len = 80;
	} else if (data + 72 <= data_end) {
		__builtin_memcpy((__u64 *)data, cfg->head, 72);
		head_len = 72;
	} else if (data + 64 <= data_end) {
		__builtin_memcpy((__u64 *)data, cfg->head, 64);
		head_len = 64;
	} else if (data + 56 <= data_end) {
		__builtin_memcpy((__u64 *)data, cfg->head, 56);
		head_len = 56;
	} else {
		return bad();
	}
	if (stamp_off > head_len)
		return bad();

	__u64 seq = __sync_fetch_and_add(seqp, 1);
	__u32 flows = cfg->flows ? cfg->flows : 1;
	__u16 flow = seq % flows;
	__u16 port = cfg->base_sport + flow;
	__u64 ts = bpf_ktime_get_ns();

	// Native u16 words of the stamp, as they will sit in memory (LE layout).
	__u16 w[8] = {
		STAMP_MAGIC_BE,
		flow,
		(__u16)seq,
		(__u16)(seq >> 16),
		(__u16)ts,
		(__u16)(ts >> 16),
		(__u16)(ts >> 32),
		(__u16)(ts >> 48),
	};

	*sport = __builtin_bswap16(port);
	__u32 sum = __builtin_bswap16((__u16)fold(cfg->base_sum));
	sum += __builtin_bswap16(port);
#pragma unroll
	for (int i = 0; i < 8; i++) {
		stamp[i] = w[i];
		sum += w[i];
	}
	__u16 check = ~fold(sum);

	if (check == 0 && (cfg->flags & GEN_F_ZERO_CSUM_AS_FFFF))
		check = 0xffff;
	*csum = check;

	count(CNT_GEN_FRAMES, data_end - data);
	return XDP_TX;
}

SEC("xdp")
int drop_all(struct xdp_md *ctx)
{
	count(CNT_DROP_FRAMES, ctx->data_end - ctx->data);
	return XDP_DROP;
}

SEC("xdp")
int pass_all(struct xdp_md *ctx)
{
	count(CNT_PASS_FRAMES, ctx->data_end - ctx->data);
	return XDP_PASS;
}

// The license string only gates GPL-only helpers; these programs use none
// (bpf_map_lookup_elem, bpf_ktime_get_ns: both gpl_only = false).
char _license[] SEC("license") = "MIT OR Apache-2.0";
