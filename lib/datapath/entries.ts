/**
 * Encodes a compiled policy, placed at a slot with a counter range, into the
 * binary keys and values of the data plane's maps (DATAPATH.md §3–4), packed
 * `count × size` and ready for `bpf_map_update_batch` / `delete_batch`.
 *
 * Counters: rule `i` in direction `d` is `counterBase + 2i + d`; the default
 * action in direction `d` is `counterBase + 2n + d` (n rules).
 *
 * @module
 */

import type { CompiledPolicy } from "../policy/mod.ts";
import {
  ACTION_ALLOW,
  ACTION_DENY,
  Addr4Key,
  Addr6Key,
  ADDR_HASH_MAX_LENS,
  ADDR_KEY_HEAD_BITS,
  ADDR_LEN_END,
  CLASS_INLINE_MAX,
  CLASS_NOT_INLINE,
  ClassValue,
  counterOffset,
  encode,
  FAST_TABLE_SIZE,
  KIND_EXACT,
  type Layout,
  LpmV4Key,
  LpmV6Key,
  MAX_COUNTERS,
  MAX_SLOTS,
  packVerdict,
  PF_ADDR4_HASH,
  PF_ADDR6_HASH,
  PolicyValue,
  PORT_KEY_HEAD_BITS,
  PortLpmKey,
  PROTO_INDEX,
  RuleKey,
  SLOT_NONE,
  type Values,
  VerdictValue,
} from "../abi/mod.ts";

/** Packed entries of one map. */
export interface MapEntries {
  /** `count` keys, back to back. */
  keys: Uint8Array;
  /** `count` values, back to back (empty for key-only batches). */
  values: Uint8Array;
  count: number;
}

/** Everything to write for one compiled policy in one slot. */
export interface PolicyEntries {
  slot: number;
  counterBase: number;
  counterCount: number;
  /** The `tfw_policy` value for `policies[slot]`. */
  policy: Uint8Array;
  lpmV4: MapEntries;
  lpmV6: MapEntries;
  addr4Hash: MapEntries;
  addr6Hash: MapEntries;
  ruleHash: MapEntries;
  portLpm: MapEntries;
  /** Fast L4 tables this policy fills: 1-based table id and its 65536 `fast_l4` values. */
  fast: FastTable[];
}

/** One `fast_l4` table: class 0's exact entries of one direction and protocol. */
export interface FastTable {
  table: number;
  values: Uint32Array;
}

/** The keys of one slot's entries, per map, for deletion. */
export interface PolicyKeys {
  lpmV4: MapEntries;
  lpmV6: MapEntries;
  addr4Hash: MapEntries;
  addr6Hash: MapEntries;
  ruleHash: MapEntries;
  portLpm: MapEntries;
  /** The fast tables the policy uses (free them with the slot). */
  fastTables: number[];
}

/** Options of {@link encodePolicyEntries}. */
export interface EncodeOptions {
  /**
   * Free `fast_l4` tables (1-based ids) this policy may take, in order: one per
   * direction and protocol whose class-0 exact entries then go there instead
   * of `rule_hash`. Default: none.
   */
  fastTables?: readonly number[];
  /**
   * Classify addresses by hash (one lookup per CIDR length) where a direction
   * uses few enough lengths; false: always the LPM tries. Default true.
   */
  addrHash?: boolean;
  /**
   * Carry the decisions of classes with few exact entries in their address
   * entries (one lookup instead of two). Default true.
   */
  inlineClasses?: boolean;
}

function actionCode(action: "allow" | "deny"): number {
  return action === "allow" ? ACTION_ALLOW : ACTION_DENY;
}

function checkSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot === SLOT_NONE || slot < 0 || slot >= MAX_SLOTS) {
    throw new RangeError(`policy slot must be 1..${MAX_SLOTS - 1}, not ${slot}`);
  }
}

function batch(keyLayout: Layout, valueLayout: Layout | null, count: number): MapEntries {
  return {
    keys: new Uint8Array(count * keyLayout.size),
    values: new Uint8Array(valueLayout ? count * valueLayout.size : 0),
    count,
  };
}

/** One field of a layout, its type parsed once. */
interface FieldWriter {
  name: string;
  offset: number;
  elem: "u8" | "u16" | "be16" | "u32" | "u64";
  /** 0 for a scalar, else the array length. */
  count: number;
}

/**
 * A precompiled writer for one layout: the same bytes as `encodeInto` (a unit
 * test checks it on every layout used here), without re-parsing field types
 * and creating a DataView for each of the 100,000s of entries of a big policy.
 */
export class LayoutWriter {
  readonly #fields: FieldWriter[];
  readonly size: number;
  constructor(readonly layout: Layout) {
    this.size = layout.size;
    this.#fields = layout.fields.map((f) => {
      const m = /^(u8|u32)\[(\d+)\]$/.exec(f.type);
      return {
        name: f.name,
        offset: f.offset,
        elem: (m ? m[1] : f.type) as FieldWriter["elem"],
        count: m ? Number(m[2]) : 0,
      };
    });
  }

  /** Writes `values` as entry `index` of `out` (viewed by `view`); absent fields stay as they are. */
  write(view: DataView, out: Uint8Array, index: number, values: Values): void {
    const at = index * this.size;
    for (const f of this.#fields) {
      const v = values[f.name];
      if (v === undefined) continue;
      const o = at + f.offset;
      if (f.count) {
        const arr = v as ArrayLike<number>;
        if (arr.length > f.count) {
          throw new RangeError(`${this.layout.cName}.${f.name}: more than ${f.count} elements`);
        }
        if (f.elem === "u8") out.set(arr, o);
        else for (let i = 0; i < arr.length; i++) view.setUint32(o + 4 * i, arr[i], true);
        continue;
      }
      switch (f.elem) {
        case "u8":
          view.setUint8(o, v as number);
          break;
        case "u16":
          view.setUint16(o, v as number, true);
          break;
        case "be16":
          view.setUint16(o, v as number, false);
          break;
        case "u32":
          view.setUint32(o, v as number, true);
          break;
        case "u64":
          view.setBigUint64(o, BigInt(v as number | bigint), true);
          break;
      }
    }
  }
}

const W = {
  v4Key: new LayoutWriter(LpmV4Key),
  v6Key: new LayoutWriter(LpmV6Key),
  a4Key: new LayoutWriter(Addr4Key),
  a6Key: new LayoutWriter(Addr6Key),
  cls: new LayoutWriter(ClassValue),
  ruleKey: new LayoutWriter(RuleKey),
  portKey: new LayoutWriter(PortLpmKey),
  verdict: new LayoutWriter(VerdictValue),
};

/** How one direction of a compiled policy is laid out in the maps. */
interface DirPlan {
  /** Address lookup per family: by hash (the lengths used, longest first) or by LPM trie. */
  v4Lens: number[] | null;
  v6Lens: number[] | null;
  /** PROTO_INDEX -> fast table id (hash mode, class 0, protocols with an L4 key). */
  fast: Map<number, number>;
  /** Classes (not 0) whose decisions ride in their address entries. */
  inline: Set<number>;
}

const L4_PROTO_INDEXES = new Set([0, 1, 2, 3, 4]); // tcp, udp, sctp, icmp, icmpv6

/** The distinct lengths, longest first, if few enough for hash lookups; else null. */
function hashLens(entries: readonly { len: number }[]): number[] | null {
  const lens = [...new Set(entries.map((e) => e.len))].sort((a, b) => b - a);
  return lens.length <= ADDR_HASH_MAX_LENS ? lens : null;
}

function plan(compiled: CompiledPolicy, opts: EncodeOptions): DirPlan[] {
  const freeTables = opts.fastTables ?? [];
  const addrHash = opts.addrHash ?? true;
  let next = 0;
  return compiled.dirs.map((cd) => {
    const fast = new Map<number, number>();
    if (cd.mode === "hash") {
      for (const e of cd.hash) {
        const idx = PROTO_INDEX[e.proto];
        if (e.cls !== 0 || e.kind !== KIND_EXACT || !L4_PROTO_INDEXES.has(idx) || fast.has(idx)) {
          continue;
        }
        if (next >= freeTables.length) break;
        fast.set(idx, freeTables[next++]);
      }
    }
    const inline = new Set<number>();
    if (cd.mode === "hash" && (opts.inlineClasses ?? true)) {
      const exact = new Map<number, number>();
      for (const e of cd.hash) {
        if (e.kind === KIND_EXACT) exact.set(e.cls, (exact.get(e.cls) ?? 0) + 1);
      }
      for (const e of [...cd.v4, ...cd.v6]) {
        if ((exact.get(e.cls) ?? 0) <= CLASS_INLINE_MAX) inline.add(e.cls);
      }
    }
    return {
      v4Lens: addrHash ? hashLens(cd.v4) : null,
      v6Lens: addrHash ? hashLens(cd.v6) : null,
      fast,
      inline,
    };
  });
}

function isFast(p: DirPlan, e: { proto: number; cls: number; kind: number }): boolean {
  return e.cls === 0 && e.kind === KIND_EXACT && p.fast.has(PROTO_INDEX[e.proto]);
}

/** Whether hash entry `e` lives elsewhere than rule_hash (a fast table or its class's value). */
function offHash(p: DirPlan, e: { proto: number; cls: number; kind: number }): boolean {
  return isFast(p, e) || p.inline.has(e.cls);
}

function sizes(c: CompiledPolicy, plans: DirPlan[]) {
  const n = { v4: 0, v6: 0, a4: 0, a6: 0, hash: 0, lpm: 0 };
  c.dirs.forEach((cd, d) => {
    if (plans[d].v4Lens) n.a4 += cd.v4.length;
    else n.v4 += cd.v4.length;
    if (plans[d].v6Lens) n.a6 += cd.v6.length;
    else n.v6 += cd.v6.length;
    for (const e of cd.hash) if (!offHash(plans[d], e)) n.hash++;
    n.lpm += cd.lpm.length;
  });
  return n;
}

/** The `tfw_class` values of one direction: class id and, for inline classes, its decisions. */
function classValues(
  cd: CompiledPolicy["dirs"][number],
  p: DirPlan,
  verdictOf: (rule: number) => number,
): Map<number, Values> {
  const out = new Map<number, Values>();
  for (const e of [...cd.v4, ...cd.v6]) {
    if (out.has(e.cls)) continue;
    out.set(
      e.cls,
      p.inline.has(e.cls)
        ? {
          cls: e.cls,
          inline_count: 0,
          inline_key: [],
          inline_verdict: [],
          any_verdict: [0, 0, 0, 0, 0, 0],
        }
        : { cls: e.cls, inline_count: CLASS_NOT_INLINE },
    );
  }
  for (const e of cd.hash) {
    if (!p.inline.has(e.cls)) continue;
    const v = out.get(e.cls)!;
    if (e.kind === KIND_EXACT) {
      (v.inline_key as number[]).push((e.proto << 16) | e.l4);
      (v.inline_verdict as number[]).push(verdictOf(e.rule));
      v.inline_count = (v.inline_verdict as number[]).length;
    } else {
      (v.any_verdict as number[])[PROTO_INDEX[e.proto]] = verdictOf(e.rule);
    }
  }
  return out;
}

/** Appends entries to one packed batch, key (and value) at the next index. */
class BatchWriter {
  readonly entries: MapEntries;
  readonly #k: DataView;
  readonly #v: DataView;
  #next = 0;

  constructor(
    readonly key: LayoutWriter,
    readonly value: LayoutWriter | null,
    count: number,
  ) {
    this.entries = batch(key.layout, value?.layout ?? null, count);
    this.#k = new DataView(this.entries.keys.buffer);
    this.#v = new DataView(this.entries.values.buffer);
  }

  /** Writes `key` and, unless values are left out, `value`. */
  put(key: Values, value: Values): void {
    this.key.write(this.#k, this.entries.keys, this.#next, key);
    if (this.value) this.value.write(this.#v, this.entries.values, this.#next, value);
    this.#next++;
  }
}

/** Writes every key (and, with `withValues`, value) of the slot's entries. */
function fill(
  compiled: CompiledPolicy,
  plans: DirPlan[],
  slot: number,
  counterBase: number,
  withValues: boolean,
): Omit<PolicyEntries, "slot" | "counterBase" | "counterCount" | "policy"> {
  const n = sizes(compiled, plans);
  const cls = withValues ? W.cls : null;
  const verdictW = withValues ? W.verdict : null;
  const lpmV4 = new BatchWriter(W.v4Key, cls, n.v4);
  const lpmV6 = new BatchWriter(W.v6Key, cls, n.v6);
  const addr4Hash = new BatchWriter(W.a4Key, cls, n.a4);
  const addr6Hash = new BatchWriter(W.a6Key, cls, n.a6);
  const ruleHash = new BatchWriter(W.ruleKey, verdictW, n.hash);
  const portLpm = new BatchWriter(W.portKey, verdictW, n.lpm);
  const fast: FastTable[] = [];
  const actions = compiled.policy.rules.map((r) => actionCode(r.action));
  const ruleCount = actions.length;
  // Reused value objects: one shape each, no allocation per entry.
  const addrKey = { prefixlen: 0, slot, dir: 0, addr: new Uint8Array(0) as Uint8Array };
  const hashAddrKey = { slot, dir: 0, len: 0, addr: new Uint8Array(0) as Uint8Array };
  const ruleKey = { slot, dir: 0, proto: 0, cls: 0, l4: 0, kind: 0 };
  const portKey = { prefixlen: 0, slot, dir: 0, proto: 0, cls: 0, l4: 0 };
  const verdict = { counter: 0, action: 0 };
  for (let dir = 0; dir < 2; dir++) {
    const cd = compiled.dirs[dir];
    const p = plans[dir];
    const verdictOf = (rule: number) =>
      packVerdict(counterBase + counterOffset(ruleCount, rule, dir), actions[rule]);
    const classes = withValues ? classValues(cd, p, verdictOf) : new Map<number, Values>();
    addrKey.dir =
      hashAddrKey.dir =
      ruleKey.dir =
      portKey.dir =
        dir;
    const families = [
      { list: cd.v4, byHash: p.v4Lens !== null, hash: addr4Hash, lpm: lpmV4 },
      { list: cd.v6, byHash: p.v6Lens !== null, hash: addr6Hash, lpm: lpmV6 },
    ];
    for (const f of families) {
      for (const e of f.list) {
        const clsValue = classes.get(e.cls) ?? { cls: e.cls };
        if (f.byHash) {
          hashAddrKey.len = e.len;
          hashAddrKey.addr = e.addr;
          f.hash.put(hashAddrKey, clsValue);
        } else {
          addrKey.prefixlen = ADDR_KEY_HEAD_BITS + e.len;
          addrKey.addr = e.addr;
          f.lpm.put(addrKey, clsValue);
        }
      }
    }
    const tables = new Map<number, Uint32Array>();
    for (const [idx, table] of p.fast) {
      const values = new Uint32Array(withValues ? FAST_TABLE_SIZE : 0);
      tables.set(idx, values);
      fast.push({ table, values });
    }
    const setVerdict = (rule: number) => {
      verdict.counter = counterBase + counterOffset(ruleCount, rule, dir);
      verdict.action = actions[rule];
    };
    for (const e of cd.hash) {
      if (isFast(p, e)) {
        if (withValues) tables.get(PROTO_INDEX[e.proto])![e.l4] = verdictOf(e.rule);
        continue;
      }
      if (p.inline.has(e.cls)) continue;
      ruleKey.proto = e.proto;
      ruleKey.cls = e.cls;
      ruleKey.l4 = e.l4;
      ruleKey.kind = e.kind;
      setVerdict(e.rule);
      ruleHash.put(ruleKey, verdict);
    }
    for (const e of cd.lpm) {
      portKey.prefixlen = PORT_KEY_HEAD_BITS + e.l4len;
      portKey.proto = e.proto;
      portKey.cls = e.cls;
      portKey.l4 = e.l4;
      setVerdict(e.rule);
      portLpm.put(portKey, verdict);
    }
  }
  return {
    lpmV4: lpmV4.entries,
    lpmV6: lpmV6.entries,
    addr4Hash: addr4Hash.entries,
    addr6Hash: addr6Hash.entries,
    ruleHash: ruleHash.entries,
    portLpm: portLpm.entries,
    fast,
  };
}

/** `lens` as the `addr_lens*` bytes of one direction: longest first, then ADDR_LEN_END. */
function lensBytes(lens: number[] | null): number[] {
  const out = new Array(ADDR_HASH_MAX_LENS).fill(ADDR_LEN_END);
  (lens ?? []).forEach((len, i) => out[i] = len);
  return out;
}

/**
 * Encodes `compiled` for slot `slot` (1..MAX_SLOTS-1) with counters
 * `counterBase .. counterBase + counterCount - 1`.
 */
export function encodePolicyEntries(
  compiled: CompiledPolicy,
  slot: number,
  counterBase: number,
  opts: EncodeOptions = {},
): PolicyEntries {
  checkSlot(slot);
  if (
    !Number.isInteger(counterBase) || counterBase < 0 ||
    counterBase + compiled.counterCount > MAX_COUNTERS
  ) {
    throw new RangeError(
      `counters ${counterBase}..${counterBase + compiled.counterCount - 1} exceed 0..${
        MAX_COUNTERS - 1
      }`,
    );
  }
  const plans = plan(compiled, opts);
  const n = compiled.policy.rules.length;
  const [ing, egr] = compiled.dirs;
  const flags = (d: number) =>
    compiled.dirs[d].flags | (plans[d].v4Lens ? PF_ADDR4_HASH : 0) |
    (plans[d].v6Lens ? PF_ADDR6_HASH : 0);
  const fastTable = new Array(12).fill(0);
  plans.forEach((p, d) => p.fast.forEach((table, idx) => fastTable[d * 6 + idx] = table));
  const policy = encode(PolicyValue, {
    default_counter: [
      counterBase + counterOffset(n, null, 0),
      counterBase + counterOffset(n, null, 1),
    ],
    flags: [flags(0), flags(1)],
    nd_named: [ing.ndNamed, egr.ndNamed],
    exact_protos: [ing.exactProtos, egr.exactProtos],
    any_protos: [ing.anyProtos, egr.anyProtos],
    default_action: actionCode(compiled.defaultAction),
    fast_table: fastTable,
    addr_lens4: [...lensBytes(plans[0].v4Lens), ...lensBytes(plans[1].v4Lens)],
    addr_lens6: [...lensBytes(plans[0].v6Lens), ...lensBytes(plans[1].v6Lens)],
  });
  return {
    slot,
    counterBase,
    counterCount: compiled.counterCount,
    policy,
    ...fill(compiled, plans, slot, counterBase, true),
  };
}

/**
 * The keys of every entry `encodePolicyEntries` writes for `slot` with the
 * same options, to delete them; and the fast tables it used.
 */
export function encodePolicyKeys(
  compiled: CompiledPolicy,
  slot: number,
  opts: EncodeOptions = {},
): PolicyKeys {
  checkSlot(slot);
  const plans = plan(compiled, opts);
  const { fast, ...keys } = fill(compiled, plans, slot, 0, false);
  return { ...keys, fastTables: fast.map((f) => f.table) };
}
