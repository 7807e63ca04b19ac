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

import type { CompiledPolicy } from "../policy/compile.ts";
import {
  ACTION_ALLOW,
  ACTION_DENY,
  ADDR_KEY_HEAD_BITS,
  ClassValue,
  encode,
  type Layout,
  LpmV4Key,
  LpmV6Key,
  MAX_COUNTERS,
  MAX_SLOTS,
  PolicyValue,
  PORT_KEY_HEAD_BITS,
  PortLpmKey,
  RuleKey,
  SLOT_NONE,
  type Values,
  VerdictValue,
} from "./layout.ts";

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
  ruleHash: MapEntries;
  portLpm: MapEntries;
}

/** The keys of one slot's entries, per map, for deletion. */
export interface PolicyKeys {
  lpmV4: MapEntries;
  lpmV6: MapEntries;
  ruleHash: MapEntries;
  portLpm: MapEntries;
}

/** Counter index of rule `rule` in direction `dir` (DIR_INGRESS/DIR_EGRESS). */
export function ruleCounterIndex(counterBase: number, rule: number, dir: number): number {
  return counterBase + 2 * rule + dir;
}

/** Counter index of the default action in direction `dir` for a policy of `ruleCount` rules. */
export function defaultCounterIndex(counterBase: number, ruleCount: number, dir: number): number {
  return counterBase + 2 * ruleCount + dir;
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
  cls: new LayoutWriter(ClassValue),
  ruleKey: new LayoutWriter(RuleKey),
  portKey: new LayoutWriter(PortLpmKey),
  verdict: new LayoutWriter(VerdictValue),
};

function sizes(c: CompiledPolicy) {
  const [a, b] = c.dirs;
  return {
    v4: a.v4.length + b.v4.length,
    v6: a.v6.length + b.v6.length,
    hash: a.hash.length + b.hash.length,
    lpm: a.lpm.length + b.lpm.length,
  };
}

/** Writes every key (and, with `withValues`, value) of the slot's entries. */
function fill(
  compiled: CompiledPolicy,
  slot: number,
  counterBase: number,
  withValues: boolean,
): PolicyKeys {
  const n = sizes(compiled);
  const lpmV4 = batch(LpmV4Key, withValues ? ClassValue : null, n.v4);
  const lpmV6 = batch(LpmV6Key, withValues ? ClassValue : null, n.v6);
  const ruleHash = batch(RuleKey, withValues ? VerdictValue : null, n.hash);
  const portLpm = batch(PortLpmKey, withValues ? VerdictValue : null, n.lpm);
  const actions = compiled.policy.rules.map((r) => actionCode(r.action));
  const views = [lpmV4, lpmV6, ruleHash, portLpm].map((m) => ({
    k: new DataView(m.keys.buffer),
    v: new DataView(m.values.buffer),
  }));
  const [vV4, vV6, vHash, vLpm] = views;
  // Reused value objects: one shape each, no allocation per entry.
  const addrKey = { prefixlen: 0, slot, dir: 0, addr: new Uint8Array(0) as Uint8Array };
  const clsValue = { cls: 0 };
  const ruleKey = { slot, dir: 0, proto: 0, cls: 0, l4: 0, kind: 0 };
  const portKey = { prefixlen: 0, slot, dir: 0, proto: 0, cls: 0, l4: 0 };
  const verdict = { counter: 0, action: 0 };
  let i4 = 0, i6 = 0, ih = 0, il = 0;
  for (let dir = 0; dir < 2; dir++) {
    const cd = compiled.dirs[dir];
    addrKey.dir = ruleKey.dir = portKey.dir = dir;
    for (const e of cd.v4) {
      addrKey.prefixlen = ADDR_KEY_HEAD_BITS + e.len;
      addrKey.addr = e.addr;
      W.v4Key.write(vV4.k, lpmV4.keys, i4, addrKey);
      clsValue.cls = e.cls;
      if (withValues) W.cls.write(vV4.v, lpmV4.values, i4, clsValue);
      i4++;
    }
    for (const e of cd.v6) {
      addrKey.prefixlen = ADDR_KEY_HEAD_BITS + e.len;
      addrKey.addr = e.addr;
      W.v6Key.write(vV6.k, lpmV6.keys, i6, addrKey);
      clsValue.cls = e.cls;
      if (withValues) W.cls.write(vV6.v, lpmV6.values, i6, clsValue);
      i6++;
    }
    for (const e of cd.hash) {
      ruleKey.proto = e.proto;
      ruleKey.cls = e.cls;
      ruleKey.l4 = e.l4;
      ruleKey.kind = e.kind;
      W.ruleKey.write(vHash.k, ruleHash.keys, ih, ruleKey);
      if (withValues) {
        verdict.counter = ruleCounterIndex(counterBase, e.rule, dir);
        verdict.action = actions[e.rule];
        W.verdict.write(vHash.v, ruleHash.values, ih, verdict);
      }
      ih++;
    }
    for (const e of cd.lpm) {
      portKey.prefixlen = PORT_KEY_HEAD_BITS + e.l4len;
      portKey.proto = e.proto;
      portKey.cls = e.cls;
      portKey.l4 = e.l4;
      W.portKey.write(vLpm.k, portLpm.keys, il, portKey);
      if (withValues) {
        verdict.counter = ruleCounterIndex(counterBase, e.rule, dir);
        verdict.action = actions[e.rule];
        W.verdict.write(vLpm.v, portLpm.values, il, verdict);
      }
      il++;
    }
  }
  return { lpmV4, lpmV6, ruleHash, portLpm };
}

/**
 * Encodes `compiled` for slot `slot` (1..MAX_SLOTS-1) with counters
 * `counterBase .. counterBase + counterCount - 1`.
 */
export function encodePolicyEntries(
  compiled: CompiledPolicy,
  slot: number,
  counterBase: number,
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
  const n = compiled.policy.rules.length;
  const [ing, egr] = compiled.dirs;
  const policy = encode(PolicyValue, {
    default_counter: [
      defaultCounterIndex(counterBase, n, 0),
      defaultCounterIndex(counterBase, n, 1),
    ],
    flags: [ing.flags, egr.flags],
    nd_named: [ing.ndNamed, egr.ndNamed],
    exact_protos: [ing.exactProtos, egr.exactProtos],
    any_protos: [ing.anyProtos, egr.anyProtos],
    default_action: actionCode(compiled.defaultAction),
  });
  return {
    slot,
    counterBase,
    counterCount: compiled.counterCount,
    policy,
    ...fill(compiled, slot, counterBase, true),
  };
}

/** The keys of every entry `encodePolicyEntries` writes for `slot`, to delete them. */
export function encodePolicyKeys(compiled: CompiledPolicy, slot: number): PolicyKeys {
  checkSlot(slot);
  return fill(compiled, slot, 0, false);
}
