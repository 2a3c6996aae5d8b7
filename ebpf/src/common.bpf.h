// SPDX-License-Identifier: MIT OR Apache-2.0
//
// common.bpf.h: the definitions steer.bpf.c and bench.bpf.c share.
//
// Integer typedefs, the libbpf-style SEC/__uint/__type macros, the few uapi
// constants and structs an XDP program needs, and the helper prototypes both
// programs call. Helpers only one program calls are declared in that program,
// so neither object carries the other's (an unused static would also trip
// -Wall -Werror).
//
// Self-contained on purpose: no kernel or libbpf headers. Everything below is
// copied from the stable uapi, so an object depends only on its .bpf.c, this
// file and the clang version (reproducible builds, and CI needs no
// libbpf-dev/linux-libc-dev to verify the committed objects).
// `cargo xtask check-ebpf` rebuilds both objects from their sources and this
// header, and refuses any #include that resolves outside ebpf/src.

#ifndef SLUICE_COMMON_BPF_H
#define SLUICE_COMMON_BPF_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

// uapi/linux/bpf.h
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_XSKMAP 17

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP,
	XDP_PASS,
	XDP_TX,
	XDP_REDIRECT,
};

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

// Helper prototypes; the numbers are the stable helper ids of uapi/linux/bpf.h.
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

#endif // SLUICE_COMMON_BPF_H
