// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The baseline of bench/datapath.ts: an XDP program that passes everything. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int tinyfw_bench_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
