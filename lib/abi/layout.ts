/**
 * The one definition of every binary layout and constant shared by the XDP
 * program and user space. `bpf/tinyfw.h` is generated from this file by
 * `scripts/gen-header.ts` (`tests/abi/header_test.ts` fails when it is out of date), and the
 * TypeScript encoders below read the same field lists, so the C structs and the
 * bytes user space writes cannot drift apart.
 *
 * Fields are laid out in order with natural alignment (like a C compiler does);
 * `be16` is a big-endian u16 (used inside LPM keys, where bytes are compared
 * most significant first); `u8[N]` is a byte array.
 */

export type ScalarType = "u8" | "u16" | "be16" | "u32" | "u64";
export type FieldType = ScalarType | `u8[${number}]` | `u32[${number}]` | `u64[${number}]`;

export interface FieldSpec {
  readonly name: string;
  readonly type: FieldType;
  /** One line of documentation, copied into the C header. */
  readonly doc?: string;
}

export interface Field extends FieldSpec {
  readonly offset: number;
  readonly size: number;
  readonly align: number;
}

/** A fixed-size struct: its C name, fields with offsets, and total size. */
export interface Layout {
  readonly cName: string;
  readonly doc: string;
  readonly fields: readonly Field[];
  readonly size: number;
}

const SCALAR_SIZE: Record<ScalarType | "u32", number> = {
  u8: 1,
  u16: 2,
  be16: 2,
  u32: 4,
  u64: 8,
};

function parseType(type: FieldType): { elem: ScalarType; count: number } {
  const m = /^(u8|u32|u64)\[(\d+)\]$/.exec(type);
  if (m) return { elem: m[1] as ScalarType, count: Number(m[2]) };
  return { elem: type as ScalarType, count: 0 };
}

function defineLayout(
  cName: string,
  doc: string,
  specs: readonly FieldSpec[],
): Layout {
  let offset = 0;
  let maxAlign = 1;
  const fields: Field[] = [];
  for (const spec of specs) {
    const { elem, count } = parseType(spec.type);
    const align = SCALAR_SIZE[elem];
    const size = align * (count || 1);
    offset = Math.ceil(offset / align) * align;
    fields.push({ ...spec, offset, size, align });
    offset += size;
    maxAlign = Math.max(maxAlign, align);
  }
  const size = Math.ceil(offset / maxAlign) * maxAlign;
  return { cName, doc, fields, size };
}

/** A decoded struct: scalar fields are numbers (u64: bigint), arrays are arrays. */
export type Values = Record<string, number | bigint | number[] | bigint[] | Uint8Array>;

/** Encodes `values` into `out` at `at` (fields not given stay zero). */
export function encodeInto(
  layout: Layout,
  values: Values,
  out: Uint8Array,
  at = 0,
): void {
  const view = new DataView(out.buffer, out.byteOffset + at, layout.size);
  for (const f of layout.fields) {
    const v = values[f.name];
    if (v === undefined) continue;
    const { elem, count } = parseType(f.type);
    if (count) {
      const arr = v as ArrayLike<number | bigint>;
      if (arr.length > count) {
        throw new RangeError(`${layout.cName}.${f.name}: more than ${count} elements`);
      }
      for (let i = 0; i < arr.length; i++) {
        writeScalar(view, f.offset + i * SCALAR_SIZE[elem], elem, arr[i]);
      }
    } else {
      writeScalar(view, f.offset, elem, v as number | bigint);
    }
  }
}

/** Encodes `values` into a new zero-filled buffer of the layout's size. */
export function encode(layout: Layout, values: Values): Uint8Array {
  const out = new Uint8Array(layout.size);
  encodeInto(layout, values, out);
  return out;
}

/** Decodes one struct from `bytes` at `at`. */
export function decode(layout: Layout, bytes: Uint8Array, at = 0): Values {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, layout.size);
  const out: Values = {};
  for (const f of layout.fields) {
    const { elem, count } = parseType(f.type);
    if (count) {
      if (elem === "u8") {
        out[f.name] = bytes.slice(at + f.offset, at + f.offset + count);
      } else if (elem === "u64") {
        const arr: bigint[] = [];
        for (let i = 0; i < count; i++) arr.push(view.getBigUint64(f.offset + i * 8, true));
        out[f.name] = arr;
      } else {
        const arr: number[] = [];
        for (let i = 0; i < count; i++) {
          arr.push(Number(readScalar(view, f.offset + i * 4, elem)));
        }
        out[f.name] = arr;
      }
    } else {
      out[f.name] = readScalar(view, f.offset, elem);
    }
  }
  return out;
}

function writeScalar(
  view: DataView,
  offset: number,
  type: ScalarType,
  v: number | bigint,
): void {
  switch (type) {
    case "u8":
      view.setUint8(offset, Number(v));
      break;
    case "u16":
      view.setUint16(offset, Number(v), true);
      break;
    case "be16":
      view.setUint16(offset, Number(v), false);
      break;
    case "u32":
      view.setUint32(offset, Number(v), true);
      break;
    case "u64":
      view.setBigUint64(offset, BigInt(v), true);
      break;
  }
}

function readScalar(
  view: DataView,
  offset: number,
  type: ScalarType,
): number | bigint {
  switch (type) {
    case "u8":
      return view.getUint8(offset);
    case "u16":
      return view.getUint16(offset, true);
    case "be16":
      return view.getUint16(offset, false);
    case "u32":
      return view.getUint32(offset, true);
    case "u64":
      return view.getBigUint64(offset, true);
  }
}

// ---------------------------------------------------------------------------
// Constants shared with the XDP program. Each becomes a #define in tinyfw.h.

/** Directions, as used in keys and in `tfw_attach.dir`. */
export const DIR_INGRESS = 0;
export const DIR_EGRESS = 1;

/** Verdict actions stored in `tfw_verdict.action`. */
export const ACTION_ALLOW = 0;
export const ACTION_DENY = 1;

/** Protocol classes used in rule keys: the IP protocol number, or OTHER. */
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
export const PROTO_SCTP = 132;
/** Any IP protocol other than the five above. */
export const PROTO_OTHER = 255;

/**
 * ICMPv6 neighbour discovery: types 133 (router solicitation) to 137
 * (redirect) pass unless a rule of the policy names the type.
 */
export const ND_TYPE_FIRST = 133;
export const ND_TYPE_LAST = 137;

/** `tfw_rule_key.kind`: an exact L4 key, or the any-port fallback of a class. */
export const KIND_EXACT = 0;
export const KIND_ANY = 1;

/** `tfw_policy.flags[dir]` bits. */
export const PF_CIDR4 = 1; // IPv4 peers are classified through lpm_v4
export const PF_CIDR6 = 2; // IPv6 peers are classified through lpm_v6
export const PF_LPM_PORTS = 4; // L4 keys are looked up in port_lpm, not rule_hash
export const PF_ADDR4_HASH = 8; // IPv4 peers: addr4_hash, one lookup per length in addr_lens4
export const PF_ADDR6_HASH = 16; // IPv6 peers: addr6_hash, one lookup per length in addr_lens6

/** At most this many distinct CIDR lengths are looked up by hash; more use the LPM trie. */
export const ADDR_HASH_MAX_LENS = 4;
/** Ends a list of lengths in `addr_lens4` / `addr_lens6`. */
export const ADDR_LEN_END = 0xff;

/** Up to this many exact L4 entries of a class ride along in its `tfw_class` value. */
export const CLASS_INLINE_MAX = 4;
/** `tfw_class.inline_count` when the class's decisions are in rule_hash / port_lpm instead. */
export const CLASS_NOT_INLINE = 0xffffffff;

/**
 * Counters of a policy of `ruleCount` rules: two per rule (ingress, then
 * egress), then the two of its default action, from the policy's first
 * counter on.
 */
export function policyCounterCount(ruleCount: number): number {
  return 2 * ruleCount + 2;
}

/** Where the counter of rule `rule` (null: the default action) in direction `dir` is, from the first. */
export function counterOffset(ruleCount: number, rule: number | null, dir: number): number {
  return 2 * (rule ?? ruleCount) + dir;
}

/** The rule (null: the default action) and direction of the counter at `offset` from the first. */
export function counterAt(ruleCount: number, offset: number): { rule: number | null; dir: number } {
  const rule = offset >>> 1;
  return { rule: rule === ruleCount ? null : rule, dir: offset & 1 };
}

/** Packs a decision for `fast_l4` and `tfw_class`: ((counter + 1) << 1) | action; 0 is none. */
export function packVerdict(counter: number, action: number): number {
  return ((counter + 1) * 2 + action) >>> 0;
}

/** Number of fast L4 tables (65536 entries each) in `fast_l4`; 0 in `fast_table` means none. */
export const FAST_TABLES = 16;
export const FAST_TABLE_SIZE = 65536;
/** A `fast_l4` entry: 0 = no exact entry; else ((counter + 1) << 1) | action. */
export const FAST_NONE = 0;

/** Slot 0 means "not configured" in `tfw_attach.slot`. */
export const SLOT_NONE = 0;

/** `tfw_attach.flags` bits. */
export const ATTACH_LEARN = 1; // learn flows from the packets this attachment allows (containers)

/** Indexes into the per-CPU `stats` array. */
export const STAT_NONIP = 0; // non-IP frames passed (ARP, LLDP, ...)
export const STAT_MALFORMED = 1; // dropped: too short for the headers they announce
export const STAT_ND = 2; // IPv6 neighbour discovery passed without a rule
export const STAT_UNCONFIGURED = 3; // passed: attachment has no policy yet
export const STAT_REPLY = 4; // denied by the rules but passed: a reply to an allowed flow
export const STAT_AUDIT = 5; // denied by the rules but passed: audit mode
export const STAT_COUNT = 8;

/** `tfw_state.flags` bits. */
export const STATE_AUDIT = 1; // pass what the rules deny (still counted and sampled)

/** `tfw_event.kind`: why a sample was sent. */
export const EVENT_DROP = 1; // dropped by a rule or a default action
export const EVENT_AUDIT = 2; // would have been dropped (audit mode)
/** Drop samples each CPU may send per second. */
export const SAMPLES_PER_SEC = 20;
/** Size of the `events` ring buffer, bytes (a power of two, a multiple of the page size). */
export const EVENTS_RINGBUF_SIZE = 256 * 1024;

/** Capacity of the `flows` LRU table (entries; each expected reply is one). */
export const MAX_FLOWS = 65536;
/** A flow's timestamp is rewritten at most this often (ns): no store per packet. */
export const FLOW_REFRESH_NS = 1_000_000_000;
/** Idle time after which a flow no longer makes replies pass, per protocol (seconds). */
export const FLOW_TIMEOUT_TCP_SEC = 3600; // TCP and SCTP
export const FLOW_TIMEOUT_UDP_SEC = 180;
export const FLOW_TIMEOUT_ICMP_SEC = 30; // ICMP and ICMPv6 echo
/** ICMP and ICMPv6 echo types (the id of an echo is its flow's "port"). */
export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
/** TCP flag bits (the 14th byte of the header). */
export const TCP_FLAG_SYN = 0x02;
export const TCP_FLAG_ACK = 0x10;

/** Parser bounds. */
export const MAX_VLAN_TAGS = 2;
export const MAX_IPV6_EXT = 6;

/** Bits of an LPM key that precede the address / L4 key (slot, dir, pad / proto, class). */
export const ADDR_KEY_HEAD_BITS = 32;
export const PORT_KEY_HEAD_BITS = 64;

/** Map capacities (entries). */
export const MAX_ATTACH = 4096;
export const MAX_SLOTS = 4096;
export const MAX_COUNTERS = 1 << 19;
/**
 * Counters are stored 8 to a `counters` entry: a per-CPU array allocates each
 * entry separately, and 2^19 one-counter entries took the kernel ~0.45 s to
 * create (the agent's start-up); 2^16 blocks take ~60 ms. A policy's counter
 * range starts on a block and owns its blocks whole.
 */
export const COUNTERS_PER_BLOCK = 8;
export const MAX_COUNTER_BLOCKS = MAX_COUNTERS / COUNTERS_PER_BLOCK;
/**
 * The capacity contract (docs/POLICY.md, "Limits"): the compiled entries one
 * policy file may use, all its policies and both directions together. A
 * reload writes the new file's entries beside the old one's before the
 * switch, so every map is sized for two files at these limits at once, plus
 * a reserve for the built-in default policy (installed beside a file that
 * has no fallback). The compiler refuses a file past its share
 * (`lib/policy/compile/budget.ts`), so a map can only fill up past this contract.
 */
export const FILE_MAX_ADDR_ENTRIES = 500_000; // per family: twice MAX_CIDRS (both directions)
export const FILE_MAX_RULE_ENTRIES = 1_000_000;
export const FILE_MAX_LPM_ENTRIES = 500_000;
export const MAP_RESERVE = 4096;
/** `lpm_v4`, `lpm_v6`, `addr4_hash`, `addr6_hash`: each address entry goes to a trie or a hash. */
export const MAX_ADDR_ENTRIES = 2 * FILE_MAX_ADDR_ENTRIES + MAP_RESERVE;
export const MAX_RULE_ENTRIES = 2 * FILE_MAX_RULE_ENTRIES + MAP_RESERVE;
export const MAX_LPM_ENTRIES = 2 * FILE_MAX_LPM_ENTRIES + MAP_RESERVE;

/** Index of a PROTO_* class in the `exact_protos` / `any_protos` bitmasks. */
export const PROTO_INDEX: Readonly<Record<number, number>> = {
  [PROTO_TCP]: 0,
  [PROTO_UDP]: 1,
  [PROTO_SCTP]: 2,
  [PROTO_ICMP]: 3,
  [PROTO_ICMPV6]: 4,
  [PROTO_OTHER]: 5,
};

/** Every constant above, in header order. */
export const CONSTANTS: Record<string, number> = {
  DIR_INGRESS,
  DIR_EGRESS,
  ACTION_ALLOW,
  ACTION_DENY,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  PROTO_ICMPV6,
  PROTO_SCTP,
  PROTO_OTHER,
  ND_TYPE_FIRST,
  ND_TYPE_LAST,
  KIND_EXACT,
  KIND_ANY,
  PF_CIDR4,
  PF_CIDR6,
  PF_LPM_PORTS,
  PF_ADDR4_HASH,
  PF_ADDR6_HASH,
  ADDR_HASH_MAX_LENS,
  ADDR_LEN_END,
  FAST_TABLES,
  FAST_TABLE_SIZE,
  FAST_NONE,
  CLASS_INLINE_MAX,
  CLASS_NOT_INLINE,
  SLOT_NONE,
  ATTACH_LEARN,
  STAT_NONIP,
  STAT_MALFORMED,
  STAT_ND,
  STAT_UNCONFIGURED,
  STAT_REPLY,
  STAT_AUDIT,
  STAT_COUNT,
  STATE_AUDIT,
  EVENT_DROP,
  EVENT_AUDIT,
  SAMPLES_PER_SEC,
  EVENTS_RINGBUF_SIZE,
  MAX_FLOWS,
  FLOW_REFRESH_NS,
  FLOW_TIMEOUT_TCP_SEC,
  FLOW_TIMEOUT_UDP_SEC,
  FLOW_TIMEOUT_ICMP_SEC,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_ECHO_REPLY,
  TCP_FLAG_SYN,
  TCP_FLAG_ACK,
  MAX_VLAN_TAGS,
  MAX_IPV6_EXT,
  ADDR_KEY_HEAD_BITS,
  PORT_KEY_HEAD_BITS,
  MAX_ATTACH,
  MAX_SLOTS,
  MAX_COUNTERS,
  COUNTERS_PER_BLOCK,
  MAX_COUNTER_BLOCKS,
  MAX_ADDR_ENTRIES,
  MAX_RULE_ENTRIES,
  MAX_LPM_ENTRIES,
  PIDX_TCP: PROTO_INDEX[PROTO_TCP],
  PIDX_UDP: PROTO_INDEX[PROTO_UDP],
  PIDX_SCTP: PROTO_INDEX[PROTO_SCTP],
  PIDX_ICMP: PROTO_INDEX[PROTO_ICMP],
  PIDX_ICMPV6: PROTO_INDEX[PROTO_ICMPV6],
  PIDX_OTHER: PROTO_INDEX[PROTO_OTHER],
};

// ---------------------------------------------------------------------------
// Map keys and values.

/** Value of `state[0]`: the generation that selects `tfw_attach.slot[gen]`. */
export const StateValue = defineLayout(
  "tfw_state",
  "Global switch, array index 0. Flipping gen switches every attachment at once.",
  [
    { name: "gen", type: "u32", doc: "active generation, 0 or 1" },
    { name: "flags", type: "u32", doc: "STATE_* bits" },
  ],
);

/** Value of `attach[attach_id]`. */
export const AttachValue = defineLayout(
  "tfw_attach",
  "Per attachment (array index = the program instance's attach_id).",
  [
    { name: "slot", type: "u32[2]", doc: "policy slot per generation; SLOT_NONE = unconfigured" },
    { name: "dir", type: "u32", doc: "DIR_INGRESS or DIR_EGRESS: what this hook sees" },
    { name: "flags", type: "u32", doc: "ATTACH_* bits" },
  ],
);

/** Value of `policies[slot]`. */
export const PolicyValue = defineLayout(
  "tfw_policy",
  "A compiled policy instance (array index = slot).",
  [
    {
      name: "default_counter",
      type: "u32[2]",
      doc: "counter index of the default action, per direction",
    },
    { name: "flags", type: "u8[2]", doc: "PF_* bits, per direction" },
    {
      name: "nd_named",
      type: "u8[2]",
      doc: "bit t-133 set: a rule names ICMPv6 type t (133..137), per direction",
    },
    {
      name: "exact_protos",
      type: "u8[2]",
      doc: "hash mode: bit per proto index with KIND_EXACT entries, per direction",
    },
    {
      name: "any_protos",
      type: "u8[2]",
      doc: "hash mode: bit per proto index with KIND_ANY entries, per direction",
    },
    { name: "default_action", type: "u8", doc: "ACTION_ALLOW or ACTION_DENY" },
    {
      name: "fast_table",
      type: "u8[12]",
      doc: "[dir * 6 + proto index]: 1-based fast_l4 table of class 0's exact entries, 0 = none",
    },
    {
      name: "addr_lens4",
      type: "u8[8]",
      doc: "[dir * 4 + i]: IPv4 CIDR lengths, longest first, ADDR_LEN_END-terminated",
    },
    {
      name: "addr_lens6",
      type: "u8[8]",
      doc: "[dir * 4 + i]: IPv6 CIDR lengths, longest first, ADDR_LEN_END-terminated",
    },
  ],
);

/** Key of `addr4_hash`: (slot, dir, CIDR length, masked IPv4 address). */
export const Addr4Key = defineLayout(
  "tfw_addr4_key",
  "Peer classification by hash, IPv4: one entry per CIDR, looked up once per length.",
  [
    { name: "slot", type: "u16" },
    { name: "dir", type: "u8" },
    { name: "len", type: "u8" },
    { name: "addr", type: "u8[4]", doc: "network byte order, host bits zero" },
  ],
);

/** Key of `addr6_hash`. */
export const Addr6Key = defineLayout(
  "tfw_addr6_key",
  "Peer classification by hash, IPv6.",
  [
    { name: "slot", type: "u16" },
    { name: "dir", type: "u8" },
    { name: "len", type: "u8" },
    { name: "addr", type: "u8[16]", doc: "network byte order, host bits zero" },
  ],
);

/** Key of the `lpm_v4` trie: (slot, dir) then the peer IPv4 address. */
export const LpmV4Key = defineLayout(
  "tfw_lpm_v4_key",
  "Peer classification, IPv4. prefixlen = ADDR_KEY_HEAD_BITS + CIDR length.",
  [
    { name: "prefixlen", type: "u32" },
    { name: "slot", type: "be16" },
    { name: "dir", type: "u8" },
    { name: "pad", type: "u8" },
    { name: "addr", type: "u8[4]", doc: "network byte order" },
  ],
);

/** Key of the `lpm_v6` trie. */
export const LpmV6Key = defineLayout(
  "tfw_lpm_v6_key",
  "Peer classification, IPv6. prefixlen = ADDR_KEY_HEAD_BITS + CIDR length.",
  [
    { name: "prefixlen", type: "u32" },
    { name: "slot", type: "be16" },
    { name: "dir", type: "u8" },
    { name: "pad", type: "u8" },
    { name: "addr", type: "u8[16]", doc: "network byte order" },
  ],
);

/** Value of the address maps: the address class, and its decisions when they are few. */
export const ClassValue = defineLayout(
  "tfw_class",
  "An address class: the set of CIDR rules whose CIDRs contain the address. A class with " +
    "at most CLASS_INLINE_MAX exact L4 entries carries all its decisions here (no second lookup).",
  [
    { name: "cls", type: "u32" },
    {
      name: "inline_count",
      type: "u32",
      doc: "entries used in inline_key/inline_verdict, or CLASS_NOT_INLINE",
    },
    { name: "inline_key", type: "u32[4]", doc: "proto class << 16 | L4 key" },
    { name: "inline_verdict", type: "u32[4]", doc: "((counter + 1) << 1) | action" },
    {
      name: "any_verdict",
      type: "u32[6]",
      doc: "[proto index]: the any-L4 fallback, packed as above; 0 = the default",
    },
  ],
);

/** Key of the `rule_hash` map (hash mode). */
export const RuleKey = defineLayout(
  "tfw_rule_key",
  "Hash mode lookup: exact L4 key (KIND_EXACT) or the class's any-port fallback (KIND_ANY, l4 = 0).",
  [
    { name: "slot", type: "u16" },
    { name: "dir", type: "u8" },
    { name: "proto", type: "u8", doc: "PROTO_* class" },
    { name: "cls", type: "u32" },
    { name: "l4", type: "u16", doc: "destination port, or ICMP type << 8 | code" },
    { name: "kind", type: "u16" },
  ],
);

/** Key of the `port_lpm` trie (LPM mode). */
export const PortLpmKey = defineLayout(
  "tfw_port_key",
  "LPM mode lookup. prefixlen = PORT_KEY_HEAD_BITS + L4 prefix length (0..16).",
  [
    { name: "prefixlen", type: "u32" },
    { name: "slot", type: "be16" },
    { name: "dir", type: "u8" },
    { name: "proto", type: "u8" },
    { name: "cls", type: "u32", doc: "stored little-endian; always fully inside the prefix" },
    { name: "l4", type: "be16" },
  ],
);

/** Value of `rule_hash` and `port_lpm`: what to do and which counter to bump. */
export const VerdictValue = defineLayout(
  "tfw_verdict",
  "A decision: action and the counter of the rule (or default) that made it.",
  [
    { name: "counter", type: "u32" },
    { name: "action", type: "u32" },
  ],
);

/** Per-CPU value of `counters[counter / COUNTERS_PER_BLOCK]`. */
export const CounterBlock = defineLayout(
  "tfw_counter_block",
  "Per-rule, per-direction packet and byte counts of COUNTERS_PER_BLOCK consecutive counters " +
    "(per CPU; user space sums).",
  [{
    name: "counts",
    type: `u64[${2 * COUNTERS_PER_BLOCK}]`,
    doc: "counter i of the block: packets at [2i], bytes at [2i+1]",
  }],
);

/** One drop sample, sent through the `events` ring buffer (rate-limited per CPU). */
export const EventValue = defineLayout(
  "tfw_event",
  "A sampled drop (or, in audit mode, a would-be drop).",
  [
    { name: "kind", type: "u32", doc: "EVENT_DROP or EVENT_AUDIT" },
    { name: "attach_id", type: "u32", doc: "which attachment saw it" },
    { name: "counter", type: "u32", doc: "the deciding rule's (or default's) counter" },
    { name: "bytes", type: "u32", doc: "frame length" },
    { name: "family", type: "u8", doc: "4 or 6" },
    { name: "proto", type: "u8", doc: "IP protocol" },
    { name: "dir", type: "u8", doc: "DIR_INGRESS or DIR_EGRESS" },
    { name: "has_l4", type: "u8", doc: "sport/dport (or ICMP type/code in dport) are set" },
    { name: "sport", type: "u16", doc: "source port, or the ICMP echo id (echo messages), else 0" },
    { name: "dport", type: "u16", doc: "or ICMP type << 8 | code" },
    { name: "saddr", type: "u8[16]", doc: "IPv4: first 4 bytes" },
    { name: "daddr", type: "u8[16]" },
  ],
);

/**
 * Key of the `flows` LRU table: a reply that is expected, as the reply itself
 * will carry it. Learning a packet swaps its addresses and ports; checking a
 * packet uses its own. Ports are in host byte order, as the parser reads them.
 */
export const FlowKey = defineLayout(
  "tfw_flow_key",
  "An expected reply (DATAPATH.md §7): the 5-tuple the reply carries.",
  [
    { name: "family", type: "u8", doc: "4 or 6" },
    { name: "proto", type: "u8", doc: "IP protocol: TCP, UDP, SCTP, ICMP or ICMPv6" },
    { name: "sport", type: "u16", doc: "the reply's source port, or the echo id" },
    { name: "dport", type: "u16", doc: "the reply's destination port, or echo reply type << 8" },
    { name: "pad", type: "u16", doc: "zero" },
    { name: "saddr", type: "u8[16]", doc: "the reply's source address (IPv4: first 4 bytes)" },
    { name: "daddr", type: "u8[16]", doc: "the reply's destination address" },
  ],
);

/** Value of the `flows` LRU table. */
export const FlowValue = defineLayout(
  "tfw_flow",
  "When a flow was last seen (bpf_ktime_get_coarse_ns), rewritten at most every FLOW_REFRESH_NS.",
  [{ name: "seen", type: "u64", doc: "CLOCK_MONOTONIC_COARSE, ns" }],
);

/** Per-CPU value of `cpu_state[0]`: a clock read once per jiffy, and the drop-sample window. */
export const CpuStateValue = defineLayout(
  "tfw_cpu_state",
  "Per-CPU scratch: CLOCK_MONOTONIC_COARSE read once per jiffy (reading it costs more than a " +
    "lookup), and the drop-sample budget: at most SAMPLES_PER_SEC per one-second window.",
  [
    { name: "jiffies", type: "u64", doc: "jiffies when `now` was read" },
    { name: "now", type: "u64", doc: "bpf_ktime_get_coarse_ns() at that jiffy" },
    { name: "window", type: "u64", doc: "start of the current sample window, coarse ns" },
    { name: "sent", type: "u32", doc: "samples sent in it" },
    { name: "pad", type: "u32" },
    {
      name: "spent",
      type: "u64",
      doc: "jiffies during which the budget ran out: drops then skip the clock",
    },
    {
      name: "lost",
      type: "u64",
      doc: "drop samples not sent (budget spent or ring buffer full); summed by user space",
    },
  ],
);

/** Every layout, in header order. */
export const LAYOUTS: readonly Layout[] = [
  StateValue,
  AttachValue,
  PolicyValue,
  LpmV4Key,
  LpmV6Key,
  Addr4Key,
  Addr6Key,
  ClassValue,
  RuleKey,
  PortLpmKey,
  VerdictValue,
  CounterBlock,
  EventValue,
  FlowKey,
  FlowValue,
  CpuStateValue,
];
