/**
 * Address classes (DATAPATH.md §4): for one direction, the distinct CIDRs of
 * the rules and, for each, the set of rules having a CIDR that contains it.
 *
 * The CIDRs of a family are sorted by (network address, prefix length); in
 * that order a stack holds the chain of CIDRs containing the current one, which
 * is the path from the root of a binary trie over the CIDRs to the current
 * node (with the empty trie nodes skipped). A node's class is its parent's
 * class plus the rules first seen at the node, so each node costs the number
 * of its own rules, and the whole pass is O(n log n) for the sort.
 *
 * Class sets are interned: equal sets get one id, whatever path reached them.
 * A set is hashed incrementally (XOR of two 32-bit random words per rule, so a
 * child's hash is its parent's XOR its new rules'); equal hashes are confirmed
 * by comparing the sets, so a hash collision costs time, never correctness.
 *
 * @module
 */

import type { Cidr } from "./types.ts";

/** One distinct CIDR of one family, a node of the containment trie. */
export interface CidrNode {
  cidr: Cidr;
  /** The rules having exactly this CIDR, ascending. */
  rules: number[];
  /** The nearest strictly containing CIDR node, or null. */
  parent: CidrNode | null;
  /** Rules of this node that no containing node has, ascending. */
  added: number[];
  /** The node's class id (> 0). */
  cls: number;
  /** Two 32-bit hashes of the class set (XOR of per-rule random words). */
  h1: number;
  h2: number;
}

/** The classes of one direction. */
export interface AddressClasses {
  /** IPv4 and IPv6 nodes in (address, length) order. */
  v4: CidrNode[];
  v6: CidrNode[];
  /** Number of class ids, including class 0 (the empty set). */
  count: number;
  /**
   * Appends to `out` sorted, disjoint rule lists whose union is class `cls`
   * (nothing for class 0).
   */
  collectMembers(cls: number, out: number[][]): void;
}

/** A (CIDR, rule) pair: rule `rule` has CIDR `cidr`. */
export interface CidrOfRule {
  cidr: Cidr;
  rule: number;
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
  for (let i = 0; i < full; i++) if (outer.addr[i] !== inner.addr[i]) return false;
  const rest = outer.len & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (inner.addr[full] & mask) === outer.addr[full];
}

function newNode(cidr: Cidr): CidrNode {
  return { cidr, rules: [], parent: null, added: [], cls: 0, h1: 0, h2: 0 };
}

function addRule(node: CidrNode, rule: number): void {
  const rs = node.rules;
  if (rs.length === 0 || rs[rs.length - 1] !== rule) rs.push(rule);
}

/** Distinct IPv4 CIDRs in (address, length) order. */
function nodesOf4(pairs: readonly CidrOfRule[]): CidrNode[] {
  // Key: address * 64 + len (38 bits, exact in a double). Sort, dedupe, then
  // place each pair by binary search: no hash map of non-small integers.
  const keys = new Float64Array(pairs.length);
  for (let i = 0; i < pairs.length; i++) {
    const { addr: a, len } = pairs[i].cidr;
    keys[i] = (((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0) * 64 + len;
  }
  const sorted = keys.slice().sort();
  let distinct = 0;
  for (let i = 0; i < sorted.length; i++) {
    if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[distinct++] = sorted[i];
  }
  const nodes: CidrNode[] = new Array(distinct);
  for (let i = 0; i < pairs.length; i++) {
    let lo = 0;
    let hi = distinct - 1;
    const k = keys[i];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] < k) lo = mid + 1;
      else hi = mid;
    }
    const node = nodes[lo] ??= newNode(pairs[i].cidr);
    addRule(node, pairs[i].rule);
  }
  return nodes;
}

/** Distinct IPv6 CIDRs in (address, length) order; keys are 9 UTF-16 units. */
function nodesOf6(pairs: readonly CidrOfRule[]): CidrNode[] {
  const byKey = new Map<string, CidrNode>();
  for (const { cidr, rule } of pairs) {
    const a = cidr.addr;
    const key = String.fromCharCode(
      (a[0] << 8) | a[1],
      (a[2] << 8) | a[3],
      (a[4] << 8) | a[5],
      (a[6] << 8) | a[7],
      (a[8] << 8) | a[9],
      (a[10] << 8) | a[11],
      (a[12] << 8) | a[13],
      (a[14] << 8) | a[15],
      cidr.len,
    );
    let node = byKey.get(key);
    if (!node) byKey.set(key, node = newNode(cidr));
    addRule(node, rule);
  }
  // Default sort compares UTF-16 code units: big-endian groups, then length.
  return [...byKey.keys()].sort().map((k) => byKey.get(k)!);
}

/**
 * Computes the address classes of a direction.
 *
 * @param pairs4 IPv4 (CIDR, rule) pairs in ascending rule order.
 * @param pairs6 IPv6 (CIDR, rule) pairs in ascending rule order.
 * @param ruleCount Rule numbers are in `0..ruleCount-1`.
 */
export function computeClasses(
  pairs4: readonly CidrOfRule[],
  pairs6: readonly CidrOfRule[],
  ruleCount: number,
): AddressClasses {
  const rand = mulberry32(0x7f1f);
  const z1 = new Uint32Array(ruleCount);
  const z2 = new Uint32Array(ruleCount);
  for (let i = 0; i < ruleCount; i++) {
    z1[i] = rand();
    z2[i] = rand();
  }
  const onPath = new Int32Array(ruleCount);
  const reps: (CidrNode | null)[] = [null]; // class id -> a node of that class
  const sizes: number[] = [0];
  // Hash buckets: small-integer key → first class id; chained by nextInBucket.
  const bucketHead = new Map<number, number>();
  const nextInBucket: number[] = [-1];
  const hashes1: number[] = [0];
  const hashes2: number[] = [0];

  const classSet = (node: CidrNode): number[] => {
    const out: number[] = [];
    for (let n: CidrNode | null = node; n; n = n.parent) out.push(...n.added);
    return out.sort((a, b) => a - b);
  };
  const sameSet = (a: CidrNode, b: CidrNode): boolean => {
    const x = classSet(a);
    const y = classSet(b);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  };

  const walk = (nodes: CidrNode[]): void => {
    const stack: CidrNode[] = [];
    for (const node of nodes) {
      while (stack.length && !isWithin(stack[stack.length - 1].cidr, node.cidr)) {
        for (const r of stack.pop()!.rules) onPath[r]--;
      }
      const parent = stack.length ? stack[stack.length - 1] : null;
      node.parent = parent;
      const added: number[] = [];
      for (const r of node.rules) {
        if (onPath[r] === 0) added.push(r);
        onPath[r]++;
      }
      node.added = added;
      stack.push(node);
      if (added.length === 0) {
        node.cls = parent!.cls;
        node.h1 = parent!.h1;
        node.h2 = parent!.h2;
        continue;
      }
      let h1 = parent ? parent.h1 : 0;
      let h2 = parent ? parent.h2 : 0;
      for (const r of added) {
        h1 ^= z1[r];
        h2 ^= z2[r];
      }
      node.h1 = h1 >>>= 0;
      node.h2 = h2 >>>= 0;
      const size = (parent ? sizes[parent.cls] : 0) + added.length;
      const bucket = h1 & 0x3fffffff;
      const head = bucketHead.get(bucket);
      let cls = -1;
      for (let id = head ?? -1; id >= 0; id = nextInBucket[id]) {
        if (
          hashes1[id] === h1 && hashes2[id] === h2 && sizes[id] === size &&
          sameSet(reps[id]!, node)
        ) {
          cls = id;
          break;
        }
      }
      if (cls < 0) {
        cls = reps.length;
        reps.push(node);
        sizes.push(size);
        hashes1.push(h1);
        hashes2.push(h2);
        nextInBucket.push(head ?? -1);
        bucketHead.set(bucket, cls);
      }
      node.cls = cls;
    }
    while (stack.length) for (const r of stack.pop()!.rules) onPath[r]--;
  };

  const v4 = nodesOf4(pairs4);
  const v6 = nodesOf6(pairs6);
  walk(v4);
  walk(v6);

  return {
    v4,
    v6,
    count: reps.length,
    collectMembers(cls: number, out: number[][]): void {
      for (let n = reps[cls]; n; n = n.parent) if (n.added.length) out.push(n.added);
    },
  };
}
