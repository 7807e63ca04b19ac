/**
 * The policy compiler (DATAPATH.md §4): turns a `Policy` into the entries of
 * the data plane's maps, per direction: address classes (`lpm_v4`/`lpm_v6`),
 * and per (class, protocol class) the L4 decisions, as one entry per L4 key
 * (hash mode, `rule_hash`) or as aligned L4 prefixes (LPM mode, `port_lpm`).
 *
 * Entries name rule indexes; a lookup miss means the policy's default action.
 * `lib/datapath/entries.ts` turns this into bytes.
 *
 * Readings of DATAPATH.md this compiler (and the evaluator) rely on:
 * - A rule with `ports` can only match TCP/UDP/SCTP packets and a rule with
 *   `icmp` only ICMP/ICMPv6 packets: those are the only headers with a port or
 *   a type. (Only reachable through `protocol: any`, which the validator
 *   refuses with ports/icmp.) Empty `ports`/`cidrs` lists mean "any".
 * - "Adjacent intervals with the same verdict merge" means the same rule (the
 *   same counter), not merely the same action.
 * - A rule "names" an ND type when its protocol is `icmpv6` (or `any`) and its
 *   `icmp.type` is that type; an `icmp` (v4) rule never does.
 * - LPM mode never emits a 0-length L4 prefix for an exact interval (the full
 *   range 0..65535 becomes two /1 prefixes): that key is the fallback's, and it
 *   would also match packets without an L4 key (later fragments).
 * - Address class ids are shared by both families of a direction.
 * - Rules that can never match (wrong direction, or ports/icmp on a protocol
 *   without them) add no CIDR entries and no L4 entries.
 *
 * Cost: O(n log n) for the classes (see `classes.ts`), then linear in the
 * candidates examined per class and in the entries produced. Both are
 * bounded by a {@link CompileBudget}: the entries a file may use, and a
 * number of steps.
 *
 * @module
 */

export { CompileError } from "./budget.ts";

import {
  KIND_ANY,
  KIND_EXACT,
  ND_TYPE_FIRST,
  ND_TYPE_LAST,
  PF_CIDR4,
  PF_CIDR6,
  PF_LPM_PORTS,
  policyCounterCount,
  PROTO_INDEX,
} from "../../abi/mod.ts";
import { CompileBudget } from "./budget.ts";
import { type CidrsOfRules, type ClassifiedCidr, computeClasses } from "./classes.ts";
import { forEachPrefix } from "./intervals.ts";
import { l4Decisions, type L4Table, type RuleShape, shapeOf } from "./l4.ts";
import type { Action, Direction, Policy, Rule } from "../model/mod.ts";

/** An `lpm_v4`/`lpm_v6` entry: peer CIDR (network bytes, host bits cleared) → address class. */
export type AddrClassEntry = ClassifiedCidr;

/** A `rule_hash` entry (hash mode). */
export interface HashEntry {
  /** PROTO_* class. */
  proto: number;
  cls: number;
  /** The L4 key (KIND_EXACT) or 0 (KIND_ANY). */
  l4: number;
  kind: number;
  /** Index of the deciding rule in the policy. */
  rule: number;
}

/** A `port_lpm` entry (LPM mode). */
export interface PortLpmEntry {
  proto: number;
  cls: number;
  /** First L4 key of the prefix (low `16 - l4len` bits zero). */
  l4: number;
  /** L4 prefix length 0..16; 0 is the class's any-L4 fallback. */
  l4len: number;
  rule: number;
}

/** How L4 keys are looked up in one direction. */
export type L4Mode = "hash" | "lpm";

/** The compiled form of one direction of a policy. */
export interface CompiledDirection {
  /** `hash` (rule_hash, one entry per L4 key) or `lpm` (port_lpm, prefixes). */
  mode: L4Mode;
  /** `tfw_policy.flags[dir]`: PF_CIDR4, PF_CIDR6, PF_LPM_PORTS. */
  flags: number;
  /** `tfw_policy.nd_named[dir]`: bit `t - 133` when a rule names ICMPv6 type t. */
  ndNamed: number;
  /** Hash mode: bit PROTO_INDEX[p] when there are KIND_EXACT entries for p. */
  exactProtos: number;
  /** Hash mode: bit PROTO_INDEX[p] when there are KIND_ANY entries for p. */
  anyProtos: number;
  v4: AddrClassEntry[];
  v6: AddrClassEntry[];
  /** Hash mode entries (empty in LPM mode). */
  hash: HashEntry[];
  /** LPM mode entries (empty in hash mode). */
  lpm: PortLpmEntry[];
  /** Number of address classes, class 0 included. */
  classes: number;
}

/** A policy compiled for both directions, not yet placed in a slot. */
export interface CompiledPolicy {
  policy: Policy;
  /** Counters the policy needs: 2 per rule plus 2 for the default. */
  counterCount: number;
  defaultAction: Action;
  /** Indexed by DIR_INGRESS, DIR_EGRESS. */
  dirs: [CompiledDirection, CompiledDirection];
}

/** Options of `compilePolicy`. */
export interface CompileOptions {
  /** Use this L4 mode in both directions instead of choosing by size. */
  forceMode?: L4Mode;
  /**
   * What is left of the file's share of the maps and of its compile steps,
   * taken from as the policy compiles (the file's policies share one).
   * Default: a whole file's share for this policy alone.
   */
  budget?: CompileBudget;
}

/** Above this many hash entries, LPM mode is used if it is 4× smaller. */
export const HASH_MODE_LIMIT = 65536;
/** LPM mode must be this many times smaller than hash mode to be chosen. */
export const LPM_ADVANTAGE = 4;

function appliesTo(rule: Rule, dir: Direction): boolean {
  return rule.direction === dir || rule.direction === "both";
}

/** `nd_named` bits: bit `t - 133` when a rule of `dir` names ICMPv6 type t (133..137). */
function ndNamedBits(rules: readonly Rule[], dir: Direction): number {
  let bits = 0;
  for (const r of rules) {
    if (!appliesTo(r, dir) || !r.icmp) continue;
    if (r.protocol !== "icmpv6" && r.protocol !== "any") continue;
    const t = r.icmp.type;
    if (t >= ND_TYPE_FIRST && t <= ND_TYPE_LAST) bits |= 1 << (t - ND_TYPE_FIRST);
  }
  return bits;
}

/** Compiles a policy for both directions; throws CompileError past the budget. */
export function compilePolicy(policy: Policy, opts: CompileOptions = {}): CompiledPolicy {
  const budget = opts.budget ?? new CompileBudget();
  const shapes = policy.rules.map(shapeOf);
  const dirs: [CompiledDirection, CompiledDirection] = [
    compileDirection(policy, shapes, "ingress", opts, budget),
    compileDirection(policy, shapes, "egress", opts, budget),
  ];
  return {
    policy,
    counterCount: policyCounterCount(policy.rules.length),
    defaultAction: policy.defaultAction,
    dirs,
  };
}

function compileDirection(
  policy: Policy,
  shapes: readonly RuleShape[],
  dir: Direction,
  opts: CompileOptions,
  budget: CompileBudget,
): CompiledDirection {
  const what = `policy ${JSON.stringify(policy.name)}`;
  const spend = (n: number) => budget.spend(n, what);
  const rules = policy.rules;
  const v4: CidrsOfRules = { cidrs: [], rules: [] };
  const v6: CidrsOfRules = { cidrs: [], rules: [] };
  const anyAddress: number[] = [];
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i];
    if (!appliesTo(rule, dir) || shapes[i].protos === 0) continue;
    if (!rule.cidrs || rule.cidrs.length === 0) {
      anyAddress.push(i);
      continue;
    }
    for (const cidr of rule.cidrs) {
      const fam = cidr.family === 4 ? v4 : v6;
      fam.cidrs.push(cidr);
      fam.rules.push(i);
    }
  }
  const classes = computeClasses(v4, v6, anyAddress, rules.length, spend);
  const cidrHint = "use fewer distinct CIDRs";
  budget.take("lpm_v4", classes.v4.length, what, dir, cidrHint);
  budget.take("lpm_v6", classes.v6.length, what, dir, cidrHint);
  // Entries are counted row by row, so that a file past its share stops here,
  // not after building every row.
  const totals = { hash: 0, lpm: 0 };
  const l4Hint = "use fewer distinct CIDRs or port ranges, or fewer rules without CIDRs";
  const table = l4Decisions(classes, shapes, spend, (hash, lpm) => {
    totals.hash += hash;
    totals.lpm += lpm;
    const hashOver = totals.hash > budget.left.rule_hash;
    const lpmOver = totals.lpm > budget.left.port_lpm;
    const forced = opts.forceMode;
    if (forced === "hash" ? hashOver : forced === "lpm" ? lpmOver : hashOver && lpmOver) {
      const lpm = forced === "lpm" ||
        (forced === undefined &&
          totals.lpm / budget.left.port_lpm < totals.hash / budget.left.rule_hash);
      budget.take(
        lpm ? "port_lpm" : "rule_hash",
        lpm ? totals.lpm : totals.hash,
        what,
        dir,
        l4Hint,
        { atLeast: true },
      );
    }
  });

  const mode = opts.forceMode ?? chooseMode(totals, budget);
  budget.take(
    mode === "hash" ? "rule_hash" : "port_lpm",
    mode === "hash" ? totals.hash : totals.lpm,
    what,
    dir,
    l4Hint,
  );
  const { hash, lpm, exactProtos, anyProtos } = materialize(table, mode);

  let flags = 0;
  if (classes.v4.length) flags |= PF_CIDR4;
  if (classes.v6.length) flags |= PF_CIDR6;
  if (mode === "lpm") flags |= PF_LPM_PORTS;
  return {
    mode,
    flags,
    ndNamed: ndNamedBits(rules, dir),
    exactProtos,
    anyProtos,
    v4: classes.v4,
    v6: classes.v6,
    hash,
    lpm,
    classes: classes.count,
  };
}

/**
 * Hash mode unless it takes more than 65,536 entries and more than 4× LPM
 * mode's, or more than what is left of the file's rule_hash share while LPM
 * mode fits in its port_lpm share.
 */
function chooseMode(n: { hash: number; lpm: number }, budget: CompileBudget): L4Mode {
  if (n.hash > HASH_MODE_LIMIT && n.hash > LPM_ADVANTAGE * n.lpm) return "lpm";
  if (n.hash > budget.left.rule_hash && n.lpm <= budget.left.port_lpm) return "lpm";
  return "hash";
}

/** The L4 entries of one direction in `mode`, and the hash-mode protocol bits. */
function materialize(table: L4Table, mode: L4Mode) {
  const hash: HashEntry[] = [];
  const lpm: PortLpmEntry[] = [];
  let exactProtos = 0;
  let anyProtos = 0;
  const { segs } = table;
  for (let r = 0; r < table.cls.length; r++) {
    const cls = table.cls[r];
    const proto = table.proto[r];
    const bit = 1 << PROTO_INDEX[proto];
    for (let j = table.segStart[r]; j < table.segStart[r + 1]; j += 3) {
      const rule = segs[j + 2];
      if (mode === "hash") {
        for (let l4 = segs[j]; l4 <= segs[j + 1]; l4++) {
          hash.push({ proto, cls, l4, kind: KIND_EXACT, rule });
        }
        exactProtos |= bit;
      } else {
        // Never a 0-length prefix here: that key is the fallback's, and it
        // would match packets without an L4 key.
        forEachPrefix(segs[j], segs[j + 1], 1, (l4, l4len) => {
          lpm.push({ proto, cls, l4, l4len, rule });
        });
      }
    }
    const fb = table.fallback[r];
    if (fb < 0) continue;
    if (mode === "hash") {
      hash.push({ proto, cls, l4: 0, kind: KIND_ANY, rule: fb });
      anyProtos |= bit;
    } else {
      lpm.push({ proto, cls, l4: 0, l4len: 0, rule: fb });
    }
  }
  return { hash, lpm, exactProtos, anyProtos };
}
