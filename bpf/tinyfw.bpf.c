// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tinyfw's packet filter, at the XDP hook.
 *
 * Parses the frame (docs/DATAPATH.md §1), then decides it from maps that user
 * space fills from the policy (§2-3): an address class from an LPM trie, then one
 * or two hash lookups (or one LPM lookup) on (policy slot, direction, protocol,
 * class, L4 key). Nothing of the policy lives here, and no lookup loops over rules.
 *
 * What the rules deny is looked up in the flow table first (§7): a reply to a
 * flow learned in the other direction passes. Flows are learned by the tc
 * egress program below (a host's own traffic) and, on attachments flagged
 * ATTACH_LEARN, from what this program lets through. Drops (and, in audit
 * mode, would-be drops) are sampled into a ring buffer, rate-limited per CPU.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tinyfw.h"

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
	__uint(max_entries, MAX_ADDR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tfw_lpm_v4_key);
	__type(value, struct tfw_class);
} lpm_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ADDR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tfw_lpm_v6_key);
	__type(value, struct tfw_class);
} lpm_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ADDR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tfw_addr4_key);
	__type(value, struct tfw_class);
} addr4_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ADDR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tfw_addr6_key);
	__type(value, struct tfw_class);
} addr6_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FAST_TABLES * FAST_TABLE_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} fast_l4 SEC(".maps");

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
	__uint(max_entries, MAX_COUNTER_BLOCKS);
	__type(key, __u32);
	__type(value, struct tfw_counter_block);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Expected replies (DATAPATH.md §7). LRU maps are always preallocated. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct tfw_flow_key);
	__type(value, struct tfw_flow);
} flows SEC(".maps");

/* Drop samples (struct tfw_event), read by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RINGBUF_SIZE);
} events SEC(".maps");

/* Per-CPU clock cache and sample budget (index 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tfw_cpu_state);
} cpu_state SEC(".maps");

/* What the parser extracted from a frame (no pointers: it crosses function boundaries). */
struct packet {
	__u8 saddr[16];   /* IPv4: the first 4 bytes */
	__u8 daddr[16];
	__u8 family;      /* 4 or 6 */
	__u8 proto;       /* raw IP protocol number */
	__u8 later_frag;  /* a fragment other than the first: no L4 header */
	__u8 has_l4;      /* l4 holds a destination port or ICMP type << 8 | code */
	__u32 bytes;      /* frame length, for the byte counters */
	__u16 l4;
	__u16 sport;      /* TCP/UDP/SCTP source port; ICMP(v6) echo id; else 0 */
	__u8 tcp_flags;   /* TCP: the flags byte */
	__u8 pad[3];
};

enum parse_result { PARSE_IP, PARSE_NONIP, PARSE_MALFORMED };

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

/*
 * The parser is inlined into each program, but its IPv6 extension-header
 * step is a global function (one per context type), like the classifier and
 * the sampler below: each is verified once, for any arguments, instead of
 * once per path that reaches it. Offsets are from the start of the frame;
 * headers are looked for within its first 16 KiB.
 */
#define PKT_OFF_MAX 0x3fff

/*
 * The parser serves both program types: `ctx` is a struct xdp_md (XDP) or a
 * struct __sk_buff (tc), and `skb` says which. Both are constants once
 * inlined, so each program gets the accesses of its own context.
 */
static __always_inline void *ctx_data(void *ctx, const int skb)
{
	return skb ? (void *)(long)((struct __sk_buff *)ctx)->data
		   : (void *)(long)((struct xdp_md *)ctx)->data;
}

static __always_inline void *ctx_end(void *ctx, const int skb)
{
	return skb ? (void *)(long)((struct __sk_buff *)ctx)->data_end
		   : (void *)(long)((struct xdp_md *)ctx)->data_end;
}

static __always_inline int is_echo(__u8 proto, __u8 type)
{
	return proto == PROTO_ICMP ? type == ICMP_ECHO_REQUEST || type == ICMP_ECHO_REPLY
				   : type == ICMPV6_ECHO_REQUEST || type == ICMPV6_ECHO_REPLY;
}

/* Reads the L4 key at `off` for protocols that have one (DATAPATH.md §1.6). */
static __always_inline int tfw_parse_l4(void *ctx, const int skb, __u32 off, struct packet *pkt)
{
	void *data = ctx_data(ctx, skb);
	void *end = ctx_end(ctx, skb);
	__u32 need;
	__u8 *l4;

	if (!pkt)
		return PARSE_MALFORMED;
	switch (pkt->proto) {
	case PROTO_TCP:
		need = 20;
		break;
	case PROTO_SCTP:
		need = 12;
		break;
	case PROTO_UDP:
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		need = 8;
		break;
	default:
		return PARSE_IP;
	}
	if (off > PKT_OFF_MAX)
		return PARSE_MALFORMED;
	l4 = data + off;
	if ((void *)(l4 + need) > end || (void *)(l4 + 8) > end)
		return PARSE_MALFORMED;
	if (pkt->proto == PROTO_ICMP || pkt->proto == PROTO_ICMPV6) {
		pkt->l4 = ((__u16)l4[0] << 8) | l4[1];
		if (is_echo(pkt->proto, l4[0]))
			pkt->sport = ((__u16)l4[4] << 8) | l4[5];
	} else {
		pkt->sport = ((__u16)l4[0] << 8) | l4[1];
		pkt->l4 = ((__u16)l4[2] << 8) | l4[3];
		if (pkt->proto == PROTO_TCP && (void *)(l4 + 14) <= end)
			pkt->tcp_flags = l4[13];
	}
	pkt->has_l4 = 1;
	return PARSE_IP;
}

static __always_inline int is_ipv6_ext(__u32 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_FRAGMENT ||
	       nh == IPPROTO_AH || nh == IPPROTO_DSTOPTS;
}

/* One IPv6 extension header, of type `nh`, at `off`. */
struct ext_step {
	__u8 next;       /* its next-header field */
	__u8 later_frag; /* a fragment header with a non-zero offset */
};

/* Reads the extension header at `off`; returns the offset after it, or -1 if truncated. */
static __always_inline int ipv6_ext_at(void *data, void *end, __u32 off, __u32 nh,
				       struct ext_step *step)
{
	__u32 len;
	__u8 *p;

	if (!step || off > PKT_OFF_MAX)
		return -1;
	p = data + off;
	if ((void *)(p + 8) > end)
		return -1;
	step->next = p[0];
	step->later_frag = 0;
	if (nh == IPPROTO_FRAGMENT) {
		step->later_frag = ((((__u16)p[2] << 8) | p[3]) >> 3) != 0;
		return off + 8;
	}
	len = nh == IPPROTO_AH ? ((__u32)p[1] + 2) * 4 : ((__u32)p[1] + 1) * 8;
	if ((void *)(p + len) > end)
		return -1;
	return off + len;
}

/* One global function per context type: a global function's context must be its program's. */
__noinline int tfw_ipv6_ext(struct xdp_md *ctx, __u32 off, __u32 nh, struct ext_step *step)
{
	if (!ctx)
		return -1;
	return ipv6_ext_at((void *)(long)ctx->data, (void *)(long)ctx->data_end, off, nh, step);
}

__noinline int tfw_ipv6_ext_skb(struct __sk_buff *ctx, __u32 off, __u32 nh, struct ext_step *step)
{
	if (!ctx)
		return -1;
	return ipv6_ext_at((void *)(long)ctx->data, (void *)(long)ctx->data_end, off, nh, step);
}

static __always_inline int parse_ipv4(void *ctx, const int skb, struct packet *pkt, __u8 *ip,
				      __u32 l3off, void *end)
{
	__u32 ihl;

	if ((void *)(ip + 20) > end)
		return PARSE_MALFORMED;
	if ((ip[0] >> 4) != 4)
		return PARSE_MALFORMED;
	ihl = (ip[0] & 0x0f) * 4;
	if (ihl < 20 || (void *)(ip + ihl) > end)
		return PARSE_MALFORMED;
	pkt->family = 4;
	pkt->proto = ip[9];
	__builtin_memcpy(pkt->saddr, ip + 12, 4);
	__builtin_memcpy(pkt->daddr, ip + 16, 4);
	pkt->later_frag = ((((__u16)ip[6] << 8) | ip[7]) & 0x1fff) != 0;
	if (pkt->later_frag)
		return PARSE_IP;
	return tfw_parse_l4(ctx, skb, l3off + ihl, pkt);
}

static __always_inline int parse_ipv6(void *ctx, const int skb, struct packet *pkt, __u8 *ip6,
				      __u32 l3off, void *end)
{
	struct ext_step step = {};
	__u32 nh, off;
	int i, next;

	if ((void *)(ip6 + 40) > end)
		return PARSE_MALFORMED;
	if ((ip6[0] >> 4) != 6)
		return PARSE_MALFORMED;
	pkt->family = 6;
	__builtin_memcpy(pkt->saddr, ip6 + 8, 16);
	__builtin_memcpy(pkt->daddr, ip6 + 24, 16);
	nh = ip6[6];
	off = l3off + 40;

	for (i = 0; i < MAX_IPV6_EXT && is_ipv6_ext(nh); i++) {
		next = skb ? tfw_ipv6_ext_skb(ctx, off, nh, &step) : tfw_ipv6_ext(ctx, off, nh, &step);
		if (next < 0)
			return PARSE_MALFORMED;
		if (step.later_frag) {
			pkt->later_frag = 1;
			pkt->proto = step.next;
			return PARSE_IP;
		}
		off = next;
		nh = step.next;
	}
	if (is_ipv6_ext(nh))
		return PARSE_MALFORMED;
	pkt->proto = nh;
	return tfw_parse_l4(ctx, skb, off, pkt);
}

/* Parses a frame into `pkt` (DATAPATH.md §1): PARSE_IP, PARSE_NONIP or PARSE_MALFORMED. */
static __always_inline int tfw_parse(void *ctx, const int skb, struct packet *pkt)
{
	void *data = ctx_data(ctx, skb);
	void *end = ctx_end(ctx, skb);
	__u8 *p = data;
	__u32 l3off = ETH_HLEN;
	__u16 ethertype;
	int i;

	if (!pkt)
		return PARSE_MALFORMED;
	pkt->bytes = end - data;
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
		l3off += 4;
	}
	if (ethertype == ETH_P_IP)
		return parse_ipv4(ctx, skb, pkt, p, l3off, end);
	if (ethertype == ETH_P_IPV6)
		return parse_ipv6(ctx, skb, pkt, p, l3off, end);
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

static __always_inline __u8 proto_index(__u8 cls)
{
	switch (cls) {
	case PROTO_TCP:
		return PIDX_TCP;
	case PROTO_UDP:
		return PIDX_UDP;
	case PROTO_SCTP:
		return PIDX_SCTP;
	case PROTO_ICMP:
		return PIDX_ICMP;
	case PROTO_ICMPV6:
		return PIDX_ICMPV6;
	default:
		return PIDX_OTHER;
	}
}

/*
 * mask_at[t + 96]: the network-byte-order mask of a 32-bit word of which the
 * first t bits belong to the prefix (t <= 0: none, t >= 32: all). Word w of a
 * /len mask is mask_at[len + 96 - 32 * w]: a table, so no branches to verify.
 */
#define M(n) [96 + n] = __builtin_bswap32((__u32)(0xffffffffull << (32 - n)))
static const __u32 mask_at[225] = {
	[0 ... 96] = 0,
	M(1), M(2), M(3), M(4), M(5), M(6), M(7), M(8), M(9), M(10), M(11), M(12), M(13),
	M(14), M(15), M(16), M(17), M(18), M(19), M(20), M(21), M(22), M(23), M(24), M(25),
	M(26), M(27), M(28), M(29), M(30), M(31),
	[128 ... 224] = 0xffffffff,
};
#undef M

static __always_inline __u32 word_mask(__u32 len, __u32 w)
{
	return mask_at[(len + 96 - 32 * w) & 0xff];
}

/*
 * The peer's address class (DATAPATH.md §3 step 2): by hash, one lookup per
 * CIDR length the policy uses (longest first), or by the LPM trie. Global:
 * verified once on its own.
 */
__noinline int tfw_classify(struct packet *pkt, struct tfw_policy *pol, __u32 slot, __u32 dir,
			    struct tfw_class *out)
{
	struct tfw_class *c = NULL;
	__u8 *peer, flags;
	__u32 i;

	if (!pkt || !pol || !out)
		return 0;
	dir &= 1;
	flags = pol->flags[dir];
	peer = dir == DIR_INGRESS ? pkt->saddr : pkt->daddr;

	if (pkt->family == 4 && (flags & PF_CIDR4) && (flags & PF_ADDR4_HASH)) {
		struct tfw_addr4_key k = { .slot = slot, .dir = dir };
		__u32 addr;

		__builtin_memcpy(&addr, peer, 4);
		for (i = 0; i < ADDR_HASH_MAX_LENS; i++) {
			__u32 len = pol->addr_lens4[(dir * ADDR_HASH_MAX_LENS + i) & 7];
			__u32 masked;

			if (len > 32)
				break;
			masked = addr & word_mask(len, 0);
			k.len = len;
			__builtin_memcpy(k.addr, &masked, 4);
			c = bpf_map_lookup_elem(&addr4_hash, &k);
			if (c)
				break;
		}
	} else
	if (pkt->family == 6 && (flags & PF_CIDR6) && (flags & PF_ADDR6_HASH)) {
		struct tfw_addr6_key k = { .slot = slot, .dir = dir };
		__u32 addr[4];

		__builtin_memcpy(addr, peer, 16);
		for (i = 0; i < ADDR_HASH_MAX_LENS; i++) {
			__u32 len = pol->addr_lens6[(dir * ADDR_HASH_MAX_LENS + i) & 7];
			__u32 w[4];

			if (len > 128)
				break;
			w[0] = addr[0] & word_mask(len, 0);
			w[1] = addr[1] & word_mask(len, 1);
			w[2] = addr[2] & word_mask(len, 2);
			w[3] = addr[3] & word_mask(len, 3);
			k.len = len;
			__builtin_memcpy(k.addr, w, 16);
			c = bpf_map_lookup_elem(&addr6_hash, &k);
			if (c)
				break;
		}
	} else if (pkt->family == 4 && (flags & PF_CIDR4)) {
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
	if (!c)
		return 0;
	__builtin_memcpy(out, c, sizeof(*out));
	return 1;
}

/* A decision found in the maps: counter and action, or found = 0 (the default decides). */
struct decision {
	__u32 found;
	__u32 counter;
	__u32 action;
};

static __always_inline struct decision from_verdict(struct tfw_verdict *v)
{
	struct decision d = {};

	if (v) {
		d.found = 1;
		d.counter = v->counter;
		d.action = v->action;
	}
	return d;
}

/* A decision packed as ((counter + 1) << 1) | action (fast_l4, tfw_class). */
static __always_inline struct decision unpack(__u32 packed)
{
	struct decision d = { 1, (packed >> 1) - 1, packed & 1 };

	return d;
}

/* The rule for this packet, if any (DATAPATH.md §3 steps 3-4). */
static __always_inline struct decision find_rule(struct packet *pkt, struct tfw_policy *pol,
						 __u32 slot, __u32 dir)
{
	__u8 flags = pol->flags[dir];
	__u8 cls = proto_class(pkt->proto);
	/* Only policies with CIDRs for this family pay for classification. */
	__u8 need = pkt->family == 4 ? PF_CIDR4 : PF_CIDR6;
	struct tfw_class c;
	__u32 addr_cls = 0;
	struct decision none = {};
	__u8 idx = proto_index(cls);

	if ((flags & need) && tfw_classify(pkt, pol, slot, dir, &c)) {
		addr_cls = c.cls;
		if (c.inline_count <= CLASS_INLINE_MAX) {
			/* The class's few decisions came with it: no second lookup. */
			__u32 key = (__u32)cls << 16 | pkt->l4, i;

			for (i = 0; i < CLASS_INLINE_MAX && pkt->has_l4; i++) {
				if (i < c.inline_count && c.inline_key[i] == key)
					return unpack(c.inline_verdict[i]);
			}
			return idx <= PIDX_OTHER && c.any_verdict[idx] ? unpack(c.any_verdict[idx]) : none;
		}
	}

	if (flags & PF_LPM_PORTS) {
		struct tfw_port_key k = {
			.prefixlen = PORT_KEY_HEAD_BITS + (pkt->has_l4 ? 16 : 0),
			.slot = bpf_htons(slot),
			.dir = dir,
			.proto = cls,
			.cls = addr_cls,
			.l4 = pkt->has_l4 ? bpf_htons(pkt->l4) : 0,
		};

		return from_verdict(bpf_map_lookup_elem(&port_lpm, &k));
	}

	__u8 bit = 1 << idx;
	struct tfw_rule_key k = {
		.slot = slot,
		.dir = dir,
		.proto = cls,
		.cls = addr_cls,
	};
	struct tfw_verdict *v;
	__u32 ti = dir * 6 + idx, table;

	asm volatile("" : "+r"(ti)); /* keep the bound check below for the verifier */
	if (ti >= sizeof(pol->fast_table))
		return none;
	table = pol->fast_table[ti];

	if (pkt->has_l4 && addr_cls == 0 && table) {
		/* Class 0's exact entries live in an array: no hashing. */
		__u32 at = ((table - 1) % FAST_TABLES) * FAST_TABLE_SIZE + pkt->l4;
		__u32 *e = bpf_map_lookup_elem(&fast_l4, &at);

		if (e && *e != FAST_NONE)
			return unpack(*e);
	} else if (pkt->has_l4 && (pol->exact_protos[dir] & bit)) {
		k.l4 = pkt->l4;
		k.kind = KIND_EXACT;
		v = bpf_map_lookup_elem(&rule_hash, &k);
		if (v)
			return from_verdict(v);
	}
	if (pol->any_protos[dir] & bit) {
		k.l4 = 0;
		k.kind = KIND_ANY;
		return from_verdict(bpf_map_lookup_elem(&rule_hash, &k));
	}
	return none;
}

static __always_inline void count(__u32 counter, __u64 bytes)
{
	__u32 block = counter / COUNTERS_PER_BLOCK;
	struct tfw_counter_block *b = bpf_map_lookup_elem(&counters, &block);

	if (b) {
		__u32 lane = (counter % COUNTERS_PER_BLOCK) * 2;

		b->counts[lane] += 1;
		b->counts[lane + 1] += bytes;
	}
}

/* ---------------------------------------------------------------------------
 * Time. bpf_ktime_get_coarse_ns() costs more than a map lookup, and the coarse
 * clock only moves once per jiffy anyway: each CPU reads it again only when
 * jiffies (a cheap helper) has moved on.
 */

#define NS_PER_SEC 1000000000ULL

static __always_inline struct tfw_cpu_state *cpu_state_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cpu_state, &zero);
}

/* The coarse clock, read again only when jiffies (`j`) has moved on. */
static __always_inline __u64 now_at(struct tfw_cpu_state *c, __u64 j)
{
	if (j != c->jiffies) {
		c->jiffies = j;
		c->now = bpf_ktime_get_coarse_ns();
	}
	return c->now;
}

static __always_inline __u64 now_ns(struct tfw_cpu_state *c)
{
	return now_at(c, bpf_jiffies64());
}

/* ---------------------------------------------------------------------------
 * Flows (DATAPATH.md §7). A key is the 5-tuple a reply will carry: learning a
 * packet swaps its addresses and ports, checking a packet uses its own.
 */

static __always_inline __s64 flow_timeout_ns(__u8 proto)
{
	switch (proto) {
	case PROTO_TCP:
	case PROTO_SCTP:
		return FLOW_TIMEOUT_TCP_SEC * NS_PER_SEC;
	case PROTO_UDP:
		return FLOW_TIMEOUT_UDP_SEC * NS_PER_SEC;
	default:
		return FLOW_TIMEOUT_ICMP_SEC * NS_PER_SEC;
	}
}

/*
 * Learns the reply `pkt` calls for, if any: TCP, UDP, SCTP (the reverse
 * 5-tuple) and ICMP/ICMPv6 echo requests (an echo reply with the same id).
 * An existing entry is only looked up (which marks it used for the LRU) and
 * its timestamp rewritten at most every FLOW_REFRESH_NS.
 */
static __always_inline void flow_learn(struct packet *pkt)
{
	struct tfw_flow_key k = {};
	struct tfw_cpu_state *c;
	struct tfw_flow *v, nv;
	__u64 now;

	if (!pkt->has_l4 || pkt->later_frag)
		return;
	switch (pkt->proto) {
	case PROTO_TCP:
	case PROTO_UDP:
	case PROTO_SCTP:
		k.sport = pkt->l4;
		k.dport = pkt->sport;
		break;
	case PROTO_ICMP:
		if ((pkt->l4 >> 8) != ICMP_ECHO_REQUEST)
			return;
		k.sport = pkt->sport;
		k.dport = ICMP_ECHO_REPLY << 8;
		break;
	case PROTO_ICMPV6:
		if ((pkt->l4 >> 8) != ICMPV6_ECHO_REQUEST)
			return;
		k.sport = pkt->sport;
		k.dport = ICMPV6_ECHO_REPLY << 8;
		break;
	default:
		return;
	}
	c = cpu_state_get();
	if (!c)
		return;
	k.family = pkt->family;
	k.proto = pkt->proto;
	__builtin_memcpy(k.saddr, pkt->daddr, 16);
	__builtin_memcpy(k.daddr, pkt->saddr, 16);

	now = now_ns(c);
	v = bpf_map_lookup_elem(&flows, &k);
	if (v) {
		if ((__s64)(now - v->seen) > FLOW_REFRESH_NS)
			v->seen = now;
		return;
	}
	nv.seen = now;
	bpf_map_update_elem(&flows, &k, &nv, BPF_ANY);
}

/*
 * True when `pkt`, which the rules deny, answers a flow learned in the other
 * direction that has not been idle too long. Only TCP except a connection's
 * opening SYN (SYN without ACK), UDP, SCTP and ICMP/ICMPv6 echo replies are
 * looked up; nothing else is ever a reply.
 */
static __always_inline int is_reply(struct packet *pkt)
{
	struct tfw_flow_key k = {};
	struct tfw_cpu_state *c;
	struct tfw_flow *v;
	__s64 idle;
	__u64 now;

	if (!pkt->has_l4 || pkt->later_frag)
		return 0;
	switch (pkt->proto) {
	case PROTO_TCP:
		if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			return 0;
		break;
	case PROTO_UDP:
	case PROTO_SCTP:
		break;
	case PROTO_ICMP:
		if ((pkt->l4 >> 8) != ICMP_ECHO_REPLY)
			return 0;
		break;
	case PROTO_ICMPV6:
		if ((pkt->l4 >> 8) != ICMPV6_ECHO_REPLY)
			return 0;
		break;
	default:
		return 0;
	}
	k.family = pkt->family;
	k.proto = pkt->proto;
	k.sport = pkt->sport;
	k.dport = pkt->l4;
	__builtin_memcpy(k.saddr, pkt->saddr, 16);
	__builtin_memcpy(k.daddr, pkt->daddr, 16);
	v = bpf_map_lookup_elem(&flows, &k);
	c = cpu_state_get();
	if (!v || !c)
		return 0;
	now = now_ns(c);
	idle = now - v->seen;
	if (idle > flow_timeout_ns(pkt->proto))
		return 0;
	if (idle > FLOW_REFRESH_NS)
		v->seen = now;
	return 1;
}

/* ---------------------------------------------------------------------------
 * Drop samples: at most SAMPLES_PER_SEC per CPU and one-second window; the
 * rest are counted in cpu_state.lost (no extra lookup). The budget check is inline
 * and, in a flood, costs a per-CPU lookup, the jiffies helper and one
 * comparison: once the budget has run out, the rest of that jiffy skips the
 * clock. Writing a sample (a few per second) is a global function.
 */
__noinline int tfw_sample(struct packet *pkt, __u32 kind, __u32 counter, __u32 dir)
{
	struct tfw_event *e;

	if (!pkt)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->kind = kind;
	e->attach_id = attach_id;
	e->counter = counter;
	e->bytes = pkt->bytes;
	e->family = pkt->family;
	e->proto = pkt->proto;
	e->dir = dir;
	e->has_l4 = pkt->has_l4;
	e->sport = pkt->sport;
	e->dport = pkt->l4;
	__builtin_memcpy(e->saddr, pkt->saddr, 16);
	__builtin_memcpy(e->daddr, pkt->daddr, 16);
	bpf_ringbuf_submit(e, 0);
	return 1;
}

static __always_inline void sample(struct packet *pkt, __u32 kind, __u32 counter, __u32 dir)
{
	struct tfw_cpu_state *c = cpu_state_get();
	__u64 j, now;

	if (!c)
		return;
	j = bpf_jiffies64();
	if (j == c->spent)
		goto lost;
	now = now_at(c, j);
	if (now - c->window >= NS_PER_SEC) {
		c->window = now;
		c->sent = 0;
	}
	if (c->sent < SAMPLES_PER_SEC && tfw_sample(pkt, kind, counter, dir)) {
		c->sent += 1;
		return;
	}
	c->spent = j;
lost:
	c->lost += 1;
}

/*
 * A packet the rules deny (by the rule or default of `counter`): a reply
 * passes (stats[STAT_REPLY], not the rule's counter); otherwise the rule's
 * counter counts it and it is sampled; audit mode passes it (stats[STAT_AUDIT])
 * and, on a learning attachment, learns from it as from an allowed packet.
 * Else it is dropped.
 */
static __always_inline int deny(struct packet *pkt, __u32 counter, __u32 dir,
				struct tfw_state *st, struct tfw_attach *at)
{
	if (is_reply(pkt)) {
		stat_inc(STAT_REPLY);
		return XDP_PASS;
	}
	count(counter, pkt->bytes);
	if (!(st->flags & STATE_AUDIT)) {
		sample(pkt, EVENT_DROP, counter, dir);
		return XDP_DROP;
	}
	sample(pkt, EVENT_AUDIT, counter, dir);
	stat_inc(STAT_AUDIT);
	if (at->flags & ATTACH_LEARN)
		flow_learn(pkt);
	return XDP_PASS;
}

/* Decides a parsed IP packet (DATAPATH.md §2). */
static __always_inline int tfw_decide(struct packet *pkt)
{
	__u32 zero = 0, id = attach_id, slot, dir;
	struct tfw_state *st;
	struct tfw_attach *at;
	struct tfw_policy *pol;
	struct decision d;

	if (!pkt)
		return XDP_PASS;
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
	if (pkt->proto == PROTO_ICMPV6 && pkt->has_l4) {
		__u8 type = pkt->l4 >> 8;

		if (type >= ND_TYPE_FIRST && type <= ND_TYPE_LAST &&
		    !(pol->nd_named[dir] & (1 << (type - ND_TYPE_FIRST)))) {
			stat_inc(STAT_ND);
			return XDP_PASS;
		}
	}

	d = find_rule(pkt, pol, slot, dir);
	if (!d.found) {
		d.counter = pol->default_counter[dir];
		d.action = pol->default_action;
	}
	if (d.action == ACTION_DENY)
		return deny(pkt, d.counter, dir, st, at);
	count(d.counter, pkt->bytes);
	if (at->flags & ATTACH_LEARN)
		flow_learn(pkt);
	return XDP_PASS;

unconfigured:
	stat_inc(STAT_UNCONFIGURED);
	return XDP_PASS;
}

SEC("xdp")
int tinyfw_xdp(struct xdp_md *ctx)
{
	struct packet pkt = {};

	switch (tfw_parse(ctx, 0, &pkt)) {
	case PARSE_IP:
		return tfw_decide(&pkt);
	case PARSE_NONIP:
		stat_inc(STAT_NONIP);
		return XDP_PASS;
	default:
		stat_inc(STAT_MALFORMED);
		return XDP_DROP;
	}
}

/*
 * Learns flows from what the host sends on a filtered interface (tc egress),
 * so that their replies pass the XDP program. Never drops, never changes the
 * packet's contents, never ends the hook's classification. A frame that does not parse is pulled into the linear
 * part of the skb (its headers may lie beyond it) and parsed once more.
 */
SEC("tc")
int tinyfw_tc_learn(struct __sk_buff *skb)
{
	struct packet pkt = {};
	int r = tfw_parse(skb, 1, &pkt);

	if (r == PARSE_MALFORMED) {
		__u32 len = skb->len < 256 ? skb->len : 256;

		__builtin_memset(&pkt, 0, sizeof(pkt));
		if (bpf_skb_pull_data(skb, len) == 0)
			r = tfw_parse(skb, 1, &pkt);
	}
	if (r == PARSE_IP)
		flow_learn(&pkt);
	/* No verdict: the filters after this one (if any) still decide. */
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
