/**
 * The L4 stage of the compiler (DATAPATH.md §4, "Per class and protocol
 * class"): which protocol classes and L4 keys each rule can match, and, per
 * (address class, protocol class), the exact L4 intervals and the any-L4
 * fallback that decide.
 *
 * @module
 */

import {
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_INDEX,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "../../abi/mod.ts";
import type { AddressClasses } from "./classes.ts";
import { firstCoverSegments, normalizeRanges, prefixCount } from "./intervals.ts";
import { PROTO_CLASSES, type Rule } from "../model/mod.ts";

/** Every protocol class bit (PROTO_INDEX 0..5). */
export const ALL_PROTOS = 0x3f;
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
export const PROTO_BY_INDEX: number[] = [];
for (const p of PROTO_CLASSES) PROTO_BY_INDEX[PROTO_INDEX[p]] = p;

/** What of a rule matters to the L4 stage: where it can match and on which keys. */
export interface RuleShape {
  /** Protocol classes (PROTO_INDEX bits) where the rule can match at all. */
  protos: number;
  /** `[from, to, ...]` L4 keys it matches, or null: any L4 key (a fallback). */
  l4: number[] | null;
}

const isByte = (v: number) => Number.isInteger(v) && v >= 0 && v <= 255;

/**
 * The shape of a rule. Ports only exist on TCP/UDP/SCTP and ICMP types only
 * on ICMP/ICMPv6 (DATAPATH.md §2), so a rule with `ports` can only match those
 * protocol classes, a rule with `icmp` only these, and a rule with both (which
 * the validator rejects) nothing.
 */
export function shapeOf(rule: Rule): RuleShape {
  let protos = PROTOCOL_BITS[rule.protocol];
  let l4: number[] | null = null;
  if (rule.ports && rule.ports.length > 0) {
    protos &= PORT_PROTOS;
    l4 = normalizeRanges(rule.ports);
  }
  if (rule.icmp) {
    protos &= ICMP_PROTOS;
    const { type, code } = rule.icmp;
    if (!isByte(type) || (code !== undefined && !isByte(code))) l4 = [];
    else if (code === undefined) l4 = [type << 8, (type << 8) | 0xff];
    else l4 = [(type << 8) | code, (type << 8) | code];
  }
  if (l4 && l4.length === 0) protos = 0;
  return { protos, l4 };
}

/** L4 decisions per (class, protocol class), flat: row r has segments `segs[segStart[r], segStart[r+1])`. */
export interface L4Table {
  cls: number[];
  proto: number[];
  /** The any-L4 fallback rule of the row, or -1 (the default decides). */
  fallback: number[];
  segStart: number[];
  /** `[from, to, rule, ...]` exact L4 intervals. */
  segs: number[];
}

/** Rule shapes flattened into typed arrays, for the per-class loop. */
interface FlatShapes {
  protos: Uint8Array;
  /** `l4[l4Start[r], l4End[r])` holds rule r's `[from, to, ...]`; l4Start -1: any L4 key. */
  l4Start: Int32Array;
  l4End: Int32Array;
  l4: Int32Array;
}

function flatten(shapes: readonly RuleShape[]): FlatShapes {
  const n = shapes.length;
  const protos = new Uint8Array(n);
  const l4Start = new Int32Array(n);
  const l4End = new Int32Array(n);
  let total = 0;
  for (const s of shapes) total += s.l4 ? s.l4.length : 0;
  const l4 = new Int32Array(total);
  let at = 0;
  for (let r = 0; r < n; r++) {
    const s = shapes[r];
    protos[r] = s.protos;
    if (s.l4 === null) {
      l4Start[r] = l4End[r] = -1;
      continue;
    }
    l4Start[r] = at;
    l4.set(s.l4, at);
    at += s.l4.length;
    l4End[r] = at;
  }
  return { protos, l4Start, l4End, l4 };
}

/**
 * The entries one row (`segs[from, to)` and its fallback) takes in each L4
 * mode: every L4 key of its intervals (hash), or their aligned prefixes (LPM).
 */
export function rowEntries(
  segs: readonly number[],
  from: number,
  to: number,
  hasFallback: boolean,
): { hash: number; lpm: number } {
  let hash = hasFallback ? 1 : 0;
  let lpm = hash;
  for (let j = from; j < to; j += 3) {
    hash += segs[j + 1] - segs[j] + 1;
    lpm += prefixCount(segs[j], segs[j + 1], 1);
  }
  return { hash, lpm };
}

/** Longest possible containment chain (IPv6 /0../128) plus the any-address list. */
const MAX_LISTS = 130;

/**
 * For each class, merges its candidate rules in rule order and feeds them to
 * the six protocol classes until each has its fallback; then resolves the L4
 * intervals of the candidates before the fallback.
 */
export function l4Decisions(
  classes: AddressClasses,
  ruleShapes: readonly RuleShape[],
  spend: (steps: number) => void = () => {},
  onRow: (hashEntries: number, lpmEntries: number) => void = () => {},
): L4Table {
  const table: L4Table = { cls: [], proto: [], fallback: [], segStart: [0], segs: [] };
  const { classNode, parent, addedStart, addedEnd } = classes;
  // `buf` holds the any-address rules at [0, anyCount), then every node's added
  // rules at their offset + `shift` (after class 0, only the live any-address rules).
  let buf = classes.rules;
  let anyCount = classes.anyCount;
  let shift = 0;
  const shapes = flatten(ruleShapes);
  const fallback = [-1, -1, -1, -1, -1, -1];
  const candidates: number[][] = [[], [], [], [], [], []];
  const heads = new Int32Array(MAX_LISTS);
  const ends = new Int32Array(MAX_LISTS);
  for (let cls = 0; cls < classes.count; cls++) {
    // The sorted rule lists of the class: any-address rules, then up the trie.
    let lists = 0;
    if (anyCount) {
      heads[0] = 0;
      ends[0] = anyCount;
      lists = 1;
    }
    for (let n = classNode[cls]; n >= 0; n = parent[n]) {
      if (addedEnd[n] > addedStart[n]) {
        heads[lists] = addedStart[n] + shift;
        ends[lists++] = addedEnd[n] + shift;
      }
    }
    let touched = 0;
    let open = ALL_PROTOS;
    let examined = 0;
    while (open) {
      examined++;
      // k-way merge by rule number.
      let rule = 0x7fffffff;
      if (lists === 1) {
        if (heads[0] >= ends[0]) break;
        rule = buf[heads[0]++];
      } else {
        let best = -1;
        for (let k = 0; k < lists; k++) {
          if (heads[k] < ends[k] && buf[heads[k]] < rule) {
            rule = buf[heads[k]];
            best = k;
          }
        }
        if (best < 0) break;
        heads[best]++;
      }
      const protos = shapes.protos[rule] & open;
      if (!protos) continue;
      touched |= protos;
      const from = shapes.l4Start[rule];
      const to = shapes.l4End[rule];
      for (let p = 0; p < 6; p++) {
        if (!(protos & (1 << p))) continue;
        if (from < 0) {
          fallback[p] = rule;
          open &= ~(1 << p);
        } else {
          const c = candidates[p];
          for (let j = from; j < to; j += 2) c.push(shapes.l4[j], shapes.l4[j + 1], rule);
        }
      }
    }
    spend(examined);
    for (let p = 0; touched; p++, touched >>= 1) {
      if (!(touched & 1)) continue;
      const k = candidates[p].length / 3;
      if (k) {
        spend(k * (1 + Math.ceil(Math.log2(k + 1)))); // a sort and a sweep
        firstCoverSegments(candidates[p], table.segs);
      }
      table.cls.push(cls);
      table.proto.push(PROTO_BY_INDEX[p]);
      table.fallback.push(fallback[p]);
      const rowStart = table.segStart[table.segStart.length - 1];
      table.segStart.push(table.segs.length);
      const counts = rowEntries(table.segs, rowStart, table.segs.length, fallback[p] >= 0);
      candidates[p].length = 0;
      fallback[p] = -1;
      onRow(counts.hash, counts.lpm);
    }
    if (cls === 0 && anyCount) {
      ({ buf, anyCount, shift } = withLiveAnyRules(classes, table));
    }
  }
  return table;
}

/**
 * Class 0's candidates are the any-address rules alone. Those that decide
 * nothing there (shadowed by earlier any-address rules) decide nothing in any
 * class, since the rules that shadow them are candidates of every class:
 * leaving them out keeps each class's work to the rules that can matter.
 */
function withLiveAnyRules(
  classes: AddressClasses,
  table: L4Table,
): { buf: Int32Array; anyCount: number; shift: number } {
  const live = new Set<number>();
  for (let r = 0; r < table.cls.length; r++) {
    if (table.fallback[r] >= 0) live.add(table.fallback[r]);
    for (let j = table.segStart[r]; j < table.segStart[r + 1]; j += 3) live.add(table.segs[j + 2]);
  }
  const any = classes.rules.subarray(0, classes.anyCount).filter((rule) => live.has(rule));
  const buf = new Int32Array(any.length + classes.rules.length - classes.anyCount);
  buf.set(any, 0);
  buf.set(classes.rules.subarray(classes.anyCount), any.length);
  return { buf, anyCount: any.length, shift: any.length - classes.anyCount };
}
