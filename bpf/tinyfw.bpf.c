// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tinyfw's packet filter, at the XDP hook.
 *
 * Parses the frame (docs/DATAPATH.md §1), then decides it from maps that user
 * space fills from the policy (§2-3): an address class from an LPM trie, then one
 * or two hash lookups (or one LPM lookup) on (policy slot, direction, protocol,
 * class, L4 key). Nothing of the policy lives here, and no lookup loops over rules.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tinyfw.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define IPV6_HOPOPTS 0
#define IPV6_ROUTING 43
#define IPV6_FRAGMENT 44
#define IPV6_AUTH 51
#define IPV6_DSTOPTS 60

#define ND_FIRST_TYPE 133
#define ND_LAST_TYPE 137

/* Which entry of `attach` this program instance reads; set by the loader. */
const volatile __u32 attach_id = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tfw_state);
} state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ATTACH);
	__type(key, __u32);
	__type(value, struct tfw_attach);
} attach SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct tfw_policy);
} policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tfw_lpm_v4_key);
	__type(value, struct tfw_class);
} lpm_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tfw_lpm_v6_key);
	__type(value, struct tfw_class);
} lpm_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tfw_rule_key);
	__type(value, struct tfw_verdict);
} rule_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tfw_port_key);
	__type(value, struct tfw_verdict);
} port_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_COUNTERS);
	__type(key, __u32);
	__type(value, struct tfw_counter);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* What the parser extracted from a frame. */
struct packet {
	void *saddr;      /* 4 or 16 bytes inside the frame */
	void *daddr;
	__u8 family;      /* 4 or 6 */
	__u8 proto;       /* raw IP protocol number */
	__u8 later_frag;  /* a fragment other than the first: no L4 header */
	__u8 has_l4;      /* l4 holds a destination port or ICMP type << 8 | code */
	__u16 l4;
};

enum parse_result { PARSE_IP, PARSE_NONIP, PARSE_MALFORMED };

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

/* Reads the L4 key at l4 for protocols that have one (DATAPATH.md §1.6). */
static __always_inline enum parse_result parse_l4(struct packet *pkt, __u8 *l4, void *end)
{
	__u32 need;

	switch (pkt->proto) {
	case PROTO_TCP:
		need = 20;
		break;
	case PROTO_UDP:
		need = 8;
		break;
	case PROTO_SCTP:
		need = 12;
		break;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		need = 8;
		break;
	default:
		return PARSE_IP;
	}
	if ((void *)(l4 + need) > end)
		return PARSE_MALFORMED;
	if (pkt->proto == PROTO_ICMP || pkt->proto == PROTO_ICMPV6)
		pkt->l4 = ((__u16)l4[0] << 8) | l4[1];
	else
		pkt->l4 = ((__u16)l4[2] << 8) | l4[3];
	pkt->has_l4 = 1;
	return PARSE_IP;
}

static __always_inline enum parse_result parse_ipv4(struct packet *pkt, __u8 *p, void *end)
{
	__u32 ihl;

	if ((void *)(p + 20) > end)
		return PARSE_MALFORMED;
	if ((p[0] >> 4) != 4)
		return PARSE_MALFORMED;
	ihl = (p[0] & 0x0f) * 4;
	if (ihl < 20 || (void *)(p + ihl) > end)
		return PARSE_MALFORMED;
	pkt->family = 4;
	pkt->proto = p[9];
	pkt->saddr = p + 12;
	pkt->daddr = p + 16;
	pkt->later_frag = ((((__u16)p[6] << 8) | p[7]) & 0x1fff) != 0;
	if (pkt->later_frag)
		return PARSE_IP;
	return parse_l4(pkt, p + ihl, end);
}

static __always_inline int is_ipv6_ext(__u8 nh)
{
	return nh == IPV6_HOPOPTS || nh == IPV6_ROUTING || nh == IPV6_FRAGMENT ||
	       nh == IPV6_AUTH || nh == IPV6_DSTOPTS;
}

static __always_inline enum parse_result parse_ipv6(struct packet *pkt, __u8 *p, void *end)
{
	__u8 nh;
	int i;

	if ((void *)(p + 40) > end)
		return PARSE_MALFORMED;
	if ((p[0] >> 4) != 6)
		return PARSE_MALFORMED;
	pkt->family = 6;
	pkt->saddr = p + 8;
	pkt->daddr = p + 24;
	nh = p[6];
	p += 40;

#pragma unroll
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		if (!is_ipv6_ext(nh))
			break;
		if ((void *)(p + 8) > end)
			return PARSE_MALFORMED;
		if (nh == IPV6_FRAGMENT) {
			nh = p[0];
			if (((((__u16)p[2] << 8) | p[3]) >> 3) != 0) {
				pkt->later_frag = 1;
				pkt->proto = nh;
				return PARSE_IP;
			}
			p += 8;
			continue;
		}
		__u32 len = nh == IPV6_AUTH ? ((__u32)p[1] + 2) * 4 : ((__u32)p[1] + 1) * 8;

		nh = p[0];
		if ((void *)(p + len) > end)
			return PARSE_MALFORMED;
		p += len;
	}
	if (is_ipv6_ext(nh))
		return PARSE_MALFORMED;
	pkt->proto = nh;
	return parse_l4(pkt, p, end);
}

static __always_inline enum parse_result parse(struct packet *pkt, void *data, void *end)
{
	__u8 *p = data;
	__u16 ethertype;
	int i;

	if ((void *)(p + ETH_HLEN) > end)
		return PARSE_MALFORMED;
	ethertype = ((__u16)p[12] << 8) | p[13];
	p += ETH_HLEN;

#pragma unroll
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		if (ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD)
			break;
		if ((void *)(p + 4) > end)
			return PARSE_MALFORMED;
		ethertype = ((__u16)p[2] << 8) | p[3];
		p += 4;
	}
	if (ethertype == ETH_P_IP)
		return parse_ipv4(pkt, p, end);
	if (ethertype == ETH_P_IPV6)
		return parse_ipv6(pkt, p, end);
	return PARSE_NONIP;
}

static __always_inline __u8 proto_class(__u8 proto)
{
	switch (proto) {
	case PROTO_TCP:
	case PROTO_UDP:
	case PROTO_SCTP:
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		return proto;
	default:
		return PROTO_OTHER;
	}
}

static __always_inline __u8 proto_bit(__u8 cls)
{
	switch (cls) {
	case PROTO_TCP:
		return 1 << PIDX_TCP;
	case PROTO_UDP:
		return 1 << PIDX_UDP;
	case PROTO_SCTP:
		return 1 << PIDX_SCTP;
	case PROTO_ICMP:
		return 1 << PIDX_ICMP;
	case PROTO_ICMPV6:
		return 1 << PIDX_ICMPV6;
	default:
		return 1 << PIDX_OTHER;
	}
}

/* The peer's address class (DATAPATH.md §3 step 2). */
static __always_inline __u32 classify(struct packet *pkt, __u32 slot, __u32 dir, __u8 flags)
{
	void *peer = dir == DIR_INGRESS ? pkt->saddr : pkt->daddr;
	struct tfw_class *c = NULL;

	if (pkt->family == 4 && (flags & PF_CIDR4)) {
		struct tfw_lpm_v4_key k = {
			.prefixlen = ADDR_KEY_HEAD_BITS + 32,
			.slot = bpf_htons(slot),
			.dir = dir,
		};

		__builtin_memcpy(k.addr, peer, 4);
		c = bpf_map_lookup_elem(&lpm_v4, &k);
	} else if (pkt->family == 6 && (flags & PF_CIDR6)) {
		struct tfw_lpm_v6_key k = {
			.prefixlen = ADDR_KEY_HEAD_BITS + 128,
			.slot = bpf_htons(slot),
			.dir = dir,
		};

		__builtin_memcpy(k.addr, peer, 16);
		c = bpf_map_lookup_elem(&lpm_v6, &k);
	}
	return c ? c->cls : 0;
}

/* The rule (or nothing: the default) for this packet (DATAPATH.md §3 steps 3-4). */
static __always_inline struct tfw_verdict *find_verdict(struct packet *pkt, struct tfw_policy *pol,
							__u32 slot, __u32 dir)
{
	__u8 flags = pol->flags[dir];
	__u8 cls = proto_class(pkt->proto);
	__u32 addr_cls = classify(pkt, slot, dir, flags);

	if (flags & PF_LPM_PORTS) {
		struct tfw_port_key k = {
			.prefixlen = PORT_KEY_HEAD_BITS + (pkt->has_l4 ? 16 : 0),
			.slot = bpf_htons(slot),
			.dir = dir,
			.proto = cls,
			.cls = addr_cls,
			.l4 = pkt->has_l4 ? bpf_htons(pkt->l4) : 0,
		};

		return bpf_map_lookup_elem(&port_lpm, &k);
	}

	__u8 bit = proto_bit(cls);
	struct tfw_rule_key k = {
		.slot = slot,
		.dir = dir,
		.proto = cls,
		.cls = addr_cls,
	};
	struct tfw_verdict *v;

	if (pkt->has_l4 && (pol->exact_protos[dir] & bit)) {
		k.l4 = pkt->l4;
		k.kind = KIND_EXACT;
		v = bpf_map_lookup_elem(&rule_hash, &k);
		if (v)
			return v;
	}
	if (pol->any_protos[dir] & bit) {
		k.l4 = 0;
		k.kind = KIND_ANY;
		return bpf_map_lookup_elem(&rule_hash, &k);
	}
	return NULL;
}

static __always_inline int count_and_act(__u32 counter, __u32 action, __u64 bytes)
{
	struct tfw_counter *c = bpf_map_lookup_elem(&counters, &counter);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
	stat_inc(STAT_DECIDED);
	return action == ACTION_DENY ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int tinyfw_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct packet pkt = {};
	__u32 zero = 0, id = attach_id, slot, dir;
	struct tfw_state *st;
	struct tfw_attach *at;
	struct tfw_policy *pol;
	struct tfw_verdict *v;

	switch (parse(&pkt, data, end)) {
	case PARSE_NONIP:
		stat_inc(STAT_NONIP);
		return XDP_PASS;
	case PARSE_MALFORMED:
		stat_inc(STAT_MALFORMED);
		return XDP_DROP;
	default:
		break;
	}

	st = bpf_map_lookup_elem(&state, &zero);
	at = bpf_map_lookup_elem(&attach, &id);
	if (!st || !at)
		goto unconfigured;
	slot = at->slot[st->gen & 1];
	dir = at->dir & 1;
	pol = bpf_map_lookup_elem(&policies, &slot);
	if (slot == SLOT_NONE || !pol)
		goto unconfigured;

	/* Neighbour discovery passes unless a rule names its type (DATAPATH.md §2). */
	if (pkt.proto == PROTO_ICMPV6 && pkt.has_l4) {
		__u8 type = pkt.l4 >> 8;

		if (type >= ND_FIRST_TYPE && type <= ND_LAST_TYPE &&
		    !(pol->nd_named[dir] & (1 << (type - ND_FIRST_TYPE)))) {
			stat_inc(STAT_ND);
			return XDP_PASS;
		}
	}

	v = find_verdict(&pkt, pol, slot, dir);
	if (v)
		return count_and_act(v->counter, v->action, end - data);
	return count_and_act(pol->default_counter[dir], pol->default_action, end - data);

unconfigured:
	stat_inc(STAT_UNCONFIGURED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
