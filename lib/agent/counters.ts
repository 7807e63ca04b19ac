/**
 * Per-rule counters as an operator sees them: packets and bytes by policy,
 * rule (or the default action), action and direction, continuing over
 * reloads and agent restarts. The kernel counts per installed slot; when a
 * slot goes (a reload, the adoption of an earlier agent's slots) its final
 * counts are carried here and added to whatever counts the same rule later.
 * The carried totals are recorded in the state (`lib/persist/state.ts`), so
 * a restarted agent continues from them too.
 *
 * @module
 */

import type { InstalledPolicy, PolicySlots } from "../datapath/mod.ts";
import type { CarriedRecord, PolicyRecord } from "../persist/mod.ts";
import { counterOffset } from "../abi/mod.ts";

/** Packets and bytes counted for one rule (or the default) of a policy, in one direction. */
export interface RuleCounter {
  policy: string;
  /** The rule's name, or null for the default action. */
  rule: string | null;
  action: "allow" | "deny";
  direction: "ingress" | "egress";
  packets: bigint;
  bytes: bigint;
}

const DIRS = ["ingress", "egress"] as const;

function key(c: Pick<RuleCounter, "policy" | "rule" | "direction">): string {
  return `${c.policy}\u0000${c.rule ?? ""}\u0000${c.direction}`;
}

/** Reads counters `base`..`base + count - 1`: packets and bytes of each. */
export type CounterReader = (base: number, count: number) => [bigint, bigint][];

/** The counts of one slot, as {@link RuleCounter}s (a row per rule, default and direction). */
function slotCounts(
  read: CounterReader,
  p: {
    policy: string;
    defaultAction: "allow" | "deny";
    rules: readonly { name: string; action: "allow" | "deny" }[];
    counterBase: number;
    counterCount: number;
  },
): RuleCounter[] {
  const all = read(p.counterBase, p.counterCount);
  const n = p.rules.length;
  const out: RuleCounter[] = [];
  for (let rule = -1; rule < n; rule++) {
    for (const dir of [0, 1]) {
      const [packets, bytes] = all[counterOffset(n, rule < 0 ? null : rule, dir)] ?? [0n, 0n];
      out.push({
        policy: p.policy,
        rule: rule < 0 ? null : p.rules[rule].name,
        action: rule < 0 ? p.defaultAction : p.rules[rule].action,
        direction: DIRS[dir],
        packets,
        bytes,
      });
    }
  }
  return out;
}

/** The counts of an installed policy. */
export function installedCounts(slots: PolicySlots, inst: InstalledPolicy): RuleCounter[] {
  const policy = inst.compiled.policy;
  return slotCounts((b, n) => slots.readCounters(b, n), {
    policy: policy.name,
    defaultAction: policy.defaultAction,
    rules: policy.rules,
    counterBase: inst.counterBase,
    counterCount: inst.compiled.counterCount,
  });
}

/** The counts of a slot recorded in the state (an earlier agent's, or for `status`). */
export function recordedCounts(read: CounterReader, r: PolicyRecord): RuleCounter[] {
  return slotCounts(read, { ...r, rules: r.rules });
}

/** The totals carried over the slots that are gone. */
export class CarriedCounters {
  readonly #carried = new Map<string, RuleCounter>();

  constructor(records: readonly CarriedRecord[] = []) {
    for (const r of records) {
      this.add([{ ...r, packets: BigInt(r.packets), bytes: BigInt(r.bytes) }]);
    }
  }

  /** Adds the final counts of a slot that goes. */
  add(counts: readonly RuleCounter[]): void {
    for (const c of counts) {
      if (!c.packets && !c.bytes) continue;
      const k = key(c);
      const total = this.#carried.get(k);
      if (total) {
        total.packets += c.packets;
        total.bytes += c.bytes;
        total.action = c.action;
      } else this.#carried.set(k, { ...c });
    }
  }

  /** The carried totals plus `live` (the slots in force), summed per rule and direction. */
  with(live: readonly RuleCounter[]): RuleCounter[] {
    const totals = new Map<string, RuleCounter>();
    for (const [k, v] of this.#carried) totals.set(k, { ...v });
    for (const c of live) {
      const k = key(c);
      const t = totals.get(k);
      if (t) {
        t.packets += c.packets;
        t.bytes += c.bytes;
        t.action = c.action;
      } else totals.set(k, { ...c });
    }
    return [...totals.values()];
  }

  records(): CarriedRecord[] {
    return [...this.#carried.values()].map((c) => ({
      policy: c.policy,
      rule: c.rule,
      action: c.action,
      direction: c.direction,
      packets: String(c.packets),
      bytes: String(c.bytes),
    }));
  }
}
