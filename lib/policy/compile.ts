/**
 * The policy compiler (DATAPATH.md §4): turns a `Policy` into the entries of
 * the data plane's maps, per direction: address classes (`lpm_v4`/`lpm_v6`),
 * and per (class, protocol class) the L4 decisions, as one entry per L4 key
 * (hash mode, `rule_hash`) or as aligned L4 prefixes (LPM mode, `port_lpm`).
 *
 * Entries name rule indexes; a lookup miss means the policy's default action.
 * `lib/datapath/entries.ts` turns this into bytes.
 *
 * @module
 */

import {
  KIND_ANY,
  KIND_EXACT,
  PF_CIDR4,
  PF_CIDR6,
  PF_LPM_PORTS,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_INDEX,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "../datapath/layout.ts";
import {
  type AddressClasses,
  type ClassifiedCidr,
  computeClasses,
  type CidrsOfRules,
} from "./classes.ts";
import { firstCoverSegments, forEachPrefix, normalizeRanges, prefixCount } from "./intervals.ts";
import { PROTO_CLASSES } from "./protocol.ts";
import type { Action, Direction, Policy, Rule } from "./types.ts";

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
}

/** Above this many hash entries, LPM mode is used if it is 4× smaller. */
export const HASH_MODE_LIMIT = 65536;
/** LPM mode must be this many times smaller than hash mode to be chosen. */
export const LPM_ADVANTAGE = 4;

const ALL_PROTOS = 0x3f;
const PORT_PROTOS = (1 << PROTO_INDEX[PROTO_TCP]) | (1 << PROTO_INDEX[PROTO_UDP]) |
  (1 << PROTO_INDEX[PROTO_SCTP]);
const ICMP_PROTOS = (1 << PROTO_INDEX[PROTO_ICMP]) | (1 << PROTO_INDEX[PROTO_ICMPV6]);
const PROTOCOL_BITS: Readonly<Record<Rule["protocol"], number>> = {
  tcp: 1 << PROTO_INDEX[PROTO_TCP],
  udp: 1 << PROTO_INDEX[PROTO_UDP],
  sctp: 1 << PROTO_INDEX[PROTO_SCTP],
  icmp: 1 << PROTO_INDEX[PROTO_ICMP],
  icmpv6: 1 << PROTO_INDEX[PROTO_ICMPV6],
  any: ALL_PROTOS,
};
/** PROTO_INDEX order → PROTO_* value. */
const PROTO_BY_INDEX: number[] = [];
for (const p of PROTO_CLASSES) PROTO_BY_INDEX[PROTO_INDEX[p]] = p;

/** What of a rule matters to the L4 stage: where it can match and on which keys. */
interface RuleShape {
  /** Protocol classes (PROTO_INDEX bits) where the rule can match at all. */
  protos: number;
  /** `[from, to, ...]` L4 keys it matches, or null: any L4 key (a fallback). */
  l4: number[] | null;
}

function shapeOf(rule: Rule): RuleShape {
  let protos = PROTOCOL_BITS[rule.protocol];
  let l4: number[] | null = null;
  const hasPortList = !!rule.ports && rule.ports.length > 0;
  if (hasPortList) {
    protos &= PORT_PROTOS;
    l4 = normalizeRanges(rule.ports!);
  }
  if (rule.icmp) {
    protos &= ICMP_PROTOS;
    const { type, code } = rule.icmp;
    const valid = Number.isInteger(type) && type >= 0 && type <= 255 &&
      (code === undefined || (Number.isInteger(code) && code >= 0 && code <= 255));
    // ports and icmp together can never both hold: protos is then empty.
    l4 = valid ? (code === undefined ? [type << 8, (type << 8) | 0xff] : [
      (type << 8) | code,
      (type << 8) | code,
    ]) : [];
  }
  if (l4 && l4.length === 0) protos = 0;
  return { protos, l4 };
}

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
    if (t >= 133 && t <= 137) bits |= 1 << (t - 133);
  }
  return bits;
}

/** Compiles a policy for both directions. */
export function compilePolicy(policy: Policy, opts: CompileOptions = {}): CompiledPolicy {
  const shapes = policy.rules.map(shapeOf);
  const dirs: [CompiledDirection, CompiledDirection] = [
    compileDirection(policy, shapes, "ingress", opts),
    compileDirection(policy, shapes, "egress", opts),
  ];
  return {
    policy,
    counterCount: 2 * policy.rules.length + 2,
    defaultAction: policy.defaultAction,
    dirs,
  };
}

function compileDirection(
  policy: Policy,
  shapes: readonly RuleShape[],
  dir: Direction,
  opts: CompileOptions,
): CompiledDirection {
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
  const classes = computeClasses(v4, v6, anyAddress, rules.length);
  const table = l4Decisions(classes, shapes);

  let hashCount = 0;
  let lpmCount = 0;
  const { segs } = table;
  for (let r = 0; r < table.cls.length; r++) {
    for (let j = table.segStart[r]; j < table.segStart[r + 1]; j += 3) {
      hashCount += segs[j + 1] - segs[j] + 1;
      lpmCount += prefixCount(segs[j], segs[j + 1], 1);
    }
    if (table.fallback[r] >= 0) {
      hashCount++;
      lpmCount++;
    }
  }
  const mode: L4Mode = opts.forceMode ??
    (hashCount > HASH_MODE_LIMIT && hashCount > LPM_ADVANTAGE * lpmCount ? "lpm" : "hash");

  const hash: HashEntry[] = [];
  const lpm: PortLpmEntry[] = [];
  let exactProtos = 0;
  let anyProtos = 0;
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

/** L4 decisions per (class, protocol class), flat: row r has segments `segs[segStart[r], segStart[r+1])`. */
interface L4Table {
  cls: number[];
  proto: number[];
  /** The any-L4 fallback rule of the row, or -1 (the default decides). */
  fallback: number[];
  segStart: number[];
  /** `[from, to, rule, ...]` exact L4 intervals. */
  segs: number[];
}

/**
 * For each class, merges its candidate rules in rule order and feeds them to
 * the six protocol classes until each has its fallback; then resolves the L4
 * intervals of the candidates before the fallback.
 */
function l4Decisions(classes: AddressClasses, shapes: readonly RuleShape[]): L4Table {
  const table: L4Table = { cls: [], proto: [], fallback: [], segStart: [0], segs: [] };
  const buf = classes.rules;
  const fallback = [-1, -1, -1, -1, -1, -1];
  const candidates: number[][] = [[], [], [], [], [], []];
  const ranges: number[] = [];
  for (let cls = 0; cls < classes.count; cls++) {
    ranges.length = 0;
    classes.memberRanges(cls, ranges);
    let touched = 0;
    let open = ALL_PROTOS;
    const single = ranges.length === 2;
    while (open) {
      // k-way merge: ranges[2k] is the head of list k, ranges[2k+1] its end.
      let rule = 0x7fffffff;
      if (single) {
        if (ranges[0] >= ranges[1]) break;
        rule = buf[ranges[0]++];
      } else {
        let best = -1;
        for (let k = 0; k < ranges.length; k += 2) {
          if (ranges[k] < ranges[k + 1] && buf[ranges[k]] < rule) {
            rule = buf[ranges[k]];
            best = k;
          }
        }
        if (best < 0) break;
        ranges[best]++;
      }
      const shape = shapes[rule];
      const protos = shape.protos & open;
      if (!protos) continue;
      touched |= protos;
      const l4 = shape.l4;
      for (let p = 0; p < 6; p++) {
        if (!(protos & (1 << p))) continue;
        if (l4 === null) {
          fallback[p] = rule;
          open &= ~(1 << p);
        } else {
          const c = candidates[p];
          for (let j = 0; j < l4.length; j += 2) c.push(l4[j], l4[j + 1], rule);
        }
      }
    }
    for (let p = 0; touched; p++, touched >>= 1) {
      if (!(touched & 1)) continue;
      if (candidates[p].length) firstCoverSegments(candidates[p], table.segs);
      table.cls.push(cls);
      table.proto.push(PROTO_BY_INDEX[p]);
      table.fallback.push(fallback[p]);
      table.segStart.push(table.segs.length);
      candidates[p].length = 0;
      fallback[p] = -1;
    }
  }
  return table;
}
