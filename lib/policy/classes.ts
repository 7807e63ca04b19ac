/**
 * Address classes (DATAPATH.md §4): for one direction, the distinct CIDRs of
 * the rules and, for each, the set of rules having a CIDR that contains it.
 *
 * The CIDRs of a family are sorted by (network address, prefix length); in
 * that order a stack holds the chain of CIDRs containing the current one, which
 * is the path from the root of a binary trie over the CIDRs to the current
 * node (a path-compressed trie: only nodes that are CIDRs of some rule). A
 * node's class is its parent's class plus the rules first seen at the node, so
 * each node costs the number of its own rules and the pass is O(n log n) for
 * the sort. Nothing is allocated per node but the output entry.
 *
 * Class sets are interned: equal sets get one id, whatever path reached them.
 * A set is hashed incrementally (XOR of two 30-bit random words per rule, so a
 * child's hash is its parent's XOR its new rules'); equal hashes are confirmed
 * by comparing the sets, so a hash collision costs time, never correctness.
 *
 * @module
 */

import type { Cidr } from "./types.ts";

/** A distinct CIDR and its class: one `lpm_v4`/`lpm_v6` entry. */
export interface ClassifiedCidr {
  /** Network bytes, host bits cleared (4 or 16 bytes). */
  addr: Uint8Array;
  len: number;
  /** The class id (> 0). */
  cls: number;
}

/** The classes of one direction. */
export interface AddressClasses {
  /** Distinct IPv4 and IPv6 CIDRs in (address, length) order, with classes. */
  v4: ClassifiedCidr[];
  v6: ClassifiedCidr[];
  /** Number of class ids, including class 0 (the empty set). */
  count: number;
  /** Rule numbers; `memberRanges` points into it. */
  rules: Int32Array;
  /**
   * Appends to `out` `[start, end)` ranges of `rules`, each sorted ascending,
   * pairwise disjoint, whose union is the candidates of class `cls`: the
   * class's rules plus the `anyAddress` rules given to `computeClasses`.
   */
  memberRanges(cls: number, out: number[]): void;
}

/** CIDRs of one family with the rule of each, in ascending rule order. */
export interface CidrsOfRules {
  cidrs: Cidr[];
  rules: number[];
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function isWithin(outer: Cidr, inner: Cidr): boolean {
  if (outer.len > inner.len) return false;
  const full = outer.len >> 3;
  const a = outer.addr;
  const b = inner.addr;
  for (let i = 0; i < full; i++) if (a[i] !== b[i]) return false;
  const rest = outer.len & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[full] & mask) === a[full];
}

/** Sorted distinct CIDRs of a family: `order[k]` is a pair index, `nodeOf[pair]` its node. */
interface Distinct {
  nodes: Cidr[];
  nodeOf: Int32Array;
}

function distinct4(cidrs: readonly Cidr[]): Distinct {
  // Key: address * 64 + len (38 bits, exact in a double). Sort, dedupe, then
  // place each pair by binary search: no hash map, no per-pair allocation.
  const n = cidrs.length;
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const { addr: a, len } = cidrs[i];
    keys[i] = (((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0) * 64 + len;
  }
  const sorted = keys.slice().sort();
  let count = 0;
  for (let i = 0; i < n; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[count++] = sorted[i];
  const nodes: Cidr[] = new Array(count);
  const nodeOf = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let lo = 0;
    let hi = count - 1;
    const k = keys[i];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] < k) lo = mid + 1;
      else hi = mid;
    }
    nodeOf[i] = lo;
    nodes[lo] ??= cidrs[i];
  }
  return { nodes, nodeOf };
}

function compare6(a: Cidr, b: Cidr): number {
  const x = a.addr;
  const y = b.addr;
  for (let i = 0; i < 16; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return a.len - b.len;
}

function distinct6(cidrs: readonly Cidr[]): Distinct {
  const n = cidrs.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((i, j) => compare6(cidrs[i], cidrs[j]) || i - j);
  const nodes: Cidr[] = [];
  const nodeOf = new Int32Array(n);
  for (let k = 0; k < n; k++) {
    const c = cidrs[order[k]];
    if (!nodes.length || compare6(nodes[nodes.length - 1], c) !== 0) nodes.push(c);
    nodeOf[order[k]] = nodes.length - 1;
  }
  return { nodes, nodeOf };
}

/**
 * Computes the address classes of a direction.
 *
 * @param v4 IPv4 CIDRs of the direction's rules, in ascending rule order.
 * @param v6 IPv6 CIDRs, likewise.
 * @param anyAddress Rules without CIDRs (candidates of every class), ascending.
 * @param ruleCount Rule numbers are in `0..ruleCount-1`.
 */
export function computeClasses(
  v4: CidrsOfRules,
  v6: CidrsOfRules,
  anyAddress: readonly number[],
  ruleCount: number,
): AddressClasses {
  const d4 = distinct4(v4.cidrs);
  const d6 = distinct6(v6.cidrs);
  const n4 = d4.nodes.length;
  const nodeCount = n4 + d6.nodes.length;
  const nodeCidr = [...d4.nodes, ...d6.nodes];

  // Rules of each node, CSR layout, duplicates (a rule listing a CIDR twice) dropped.
  const ruleStart = new Int32Array(nodeCount + 1);
  const lastRule = new Int32Array(nodeCount).fill(-1);
  const families = [{ d: d4, src: v4, base: 0 }, { d: d6, src: v6, base: n4 }];
  for (const { d, src, base } of families) {
    for (let i = 0; i < src.rules.length; i++) {
      const node = base + d.nodeOf[i];
      if (lastRule[node] === src.rules[i]) continue;
      lastRule[node] = src.rules[i];
      ruleStart[node + 1]++;
    }
  }
  for (let i = 0; i < nodeCount; i++) ruleStart[i + 1] += ruleStart[i];
  const ruleList = new Int32Array(ruleStart[nodeCount]);
  const fillAt = ruleStart.slice(0, nodeCount);
  lastRule.fill(-1);
  for (const { d, src, base } of families) {
    for (let i = 0; i < src.rules.length; i++) {
      const node = base + d.nodeOf[i];
      if (lastRule[node] === src.rules[i]) continue;
      lastRule[node] = src.rules[i];
      ruleList[fillAt[node]++] = src.rules[i];
    }
  }

  // Per-rule random words for the set hashes.
  const rand = mulberry32(0x7f1f);
  const z1 = new Int32Array(ruleCount);
  const z2 = new Int32Array(ruleCount);
  for (let i = 0; i < ruleCount; i++) {
    z1[i] = rand() & 0x3fffffff;
    z2[i] = rand() & 0x3fffffff;
  }

  // The walk: parent, added rules (into `rules`), hash and class of each node.
  const anyLen = anyAddress.length;
  const rules = new Int32Array(anyLen + ruleList.length);
  rules.set(anyAddress, 0);
  let rulesLen = anyLen;
  const parent = new Int32Array(nodeCount);
  const addedStart = new Int32Array(nodeCount);
  const addedEnd = new Int32Array(nodeCount);
  const h1 = new Int32Array(nodeCount);
  const h2 = new Int32Array(nodeCount);
  const cls = new Int32Array(nodeCount);
  const onPath = new Int32Array(ruleCount);
  const stack = new Int32Array(nodeCount);
  const reps: number[] = [-1]; // class id → a node of that class
  const sizes: number[] = [0];
  const hashes1: number[] = [0];
  const hashes2: number[] = [0];
  let tableBits = 4;
  while ((1 << tableBits) < 2 * nodeCount) tableBits++;
  const table = new Int32Array(1 << tableBits); // open addressing by h1; 0 = empty
  const tableMask = (1 << tableBits) - 1;

  const classSet = (node: number): number[] => {
    const out: number[] = [];
    for (let n = node; n >= 0; n = parent[n]) {
      for (let k = addedStart[n]; k < addedEnd[n]; k++) out.push(rules[k]);
    }
    return out.sort((a, b) => a - b);
  };
  const sameSet = (a: number, b: number): boolean => {
    const x = classSet(a);
    const y = classSet(b);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  };

  for (const [from, to] of [[0, n4], [n4, nodeCount]]) {
    let sp = 0;
    for (let node = from; node < to; node++) {
      const cidr = nodeCidr[node];
      while (sp > 0 && !isWithin(nodeCidr[stack[sp - 1]], cidr)) {
        const top = stack[--sp];
        for (let k = ruleStart[top]; k < ruleStart[top + 1]; k++) onPath[ruleList[k]]--;
      }
      const up = sp > 0 ? stack[sp - 1] : -1;
      parent[node] = up;
      stack[sp++] = node;
      addedStart[node] = rulesLen;
      let x1 = up >= 0 ? h1[up] : 0;
      let x2 = up >= 0 ? h2[up] : 0;
      for (let k = ruleStart[node]; k < ruleStart[node + 1]; k++) {
        const r = ruleList[k];
        if (onPath[r]++ === 0) {
          rules[rulesLen++] = r;
          x1 ^= z1[r];
          x2 ^= z2[r];
        }
      }
      addedEnd[node] = rulesLen;
      h1[node] = x1;
      h2[node] = x2;
      const added = rulesLen - addedStart[node];
      if (added === 0) {
        cls[node] = cls[up];
        continue;
      }
      const size = (up >= 0 ? sizes[cls[up]] : 0) + added;
      let slot = x1 & tableMask;
      let id = table[slot];
      for (; id !== 0; id = table[slot = (slot + 1) & tableMask]) {
        if (
          hashes1[id] === x1 && hashes2[id] === x2 && sizes[id] === size && sameSet(reps[id], node)
        ) break;
      }
      if (id === 0) {
        id = reps.length;
        reps.push(node);
        sizes.push(size);
        hashes1.push(x1);
        hashes2.push(x2);
        table[slot] = id;
      }
      cls[node] = id;
    }
    while (sp > 0) {
      const top = stack[--sp];
      for (let k = ruleStart[top]; k < ruleStart[top + 1]; k++) onPath[ruleList[k]]--;
    }
  }

  const entry = (node: number): ClassifiedCidr => ({
    addr: nodeCidr[node].addr,
    len: nodeCidr[node].len,
    cls: cls[node],
  });
  const out4: ClassifiedCidr[] = new Array(n4);
  for (let i = 0; i < n4; i++) out4[i] = entry(i);
  const out6: ClassifiedCidr[] = new Array(nodeCount - n4);
  for (let i = n4; i < nodeCount; i++) out6[i - n4] = entry(i);

  return {
    v4: out4,
    v6: out6,
    count: reps.length,
    rules,
    memberRanges(c: number, out: number[]): void {
      if (anyLen) out.push(0, anyLen);
      for (let n = reps[c]; n >= 0; n = parent[n]) {
        if (addedEnd[n] > addedStart[n]) out.push(addedStart[n], addedEnd[n]);
      }
    },
  };
}
