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
  encodeInto,
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
  const rules = compiled.policy.rules;
  const actions = rules.map((r) => actionCode(r.action));
  const verdict = { counter: 0, action: 0 };
  let i4 = 0, i6 = 0, ih = 0, il = 0;
  for (let dir = 0; dir < 2; dir++) {
    const cd = compiled.dirs[dir];
    for (const e of cd.v4) {
      encodeInto(LpmV4Key, {
        prefixlen: ADDR_KEY_HEAD_BITS + e.len,
        slot,
        dir,
        addr: e.addr,
      }, lpmV4.keys, i4 * LpmV4Key.size);
      if (withValues) encodeInto(ClassValue, { cls: e.cls }, lpmV4.values, i4 * ClassValue.size);
      i4++;
    }
    for (const e of cd.v6) {
      encodeInto(LpmV6Key, {
        prefixlen: ADDR_KEY_HEAD_BITS + e.len,
        slot,
        dir,
        addr: e.addr,
      }, lpmV6.keys, i6 * LpmV6Key.size);
      if (withValues) encodeInto(ClassValue, { cls: e.cls }, lpmV6.values, i6 * ClassValue.size);
      i6++;
    }
    for (const e of cd.hash) {
      encodeInto(RuleKey, {
        slot,
        dir,
        proto: e.proto,
        cls: e.cls,
        l4: e.l4,
        kind: e.kind,
      }, ruleHash.keys, ih * RuleKey.size);
      if (withValues) {
        verdict.counter = ruleCounterIndex(counterBase, e.rule, dir);
        verdict.action = actions[e.rule];
        encodeInto(VerdictValue, verdict, ruleHash.values, ih * VerdictValue.size);
      }
      ih++;
    }
    for (const e of cd.lpm) {
      encodeInto(PortLpmKey, {
        prefixlen: PORT_KEY_HEAD_BITS + e.l4len,
        slot,
        dir,
        proto: e.proto,
        cls: e.cls,
        l4: e.l4,
      }, portLpm.keys, il * PortLpmKey.size);
      if (withValues) {
        verdict.counter = ruleCounterIndex(counterBase, e.rule, dir);
        verdict.action = actions[e.rule];
        encodeInto(VerdictValue, verdict, portLpm.values, il * VerdictValue.size);
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
    default_counter: [defaultCounterIndex(counterBase, n, 0), defaultCounterIndex(counterBase, n, 1)],
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
