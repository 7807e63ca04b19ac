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
 * the sort. Addresses are copied once into 32-bit word arrays so that the pass
 * runs on flat typed arrays, not on scattered objects.
 *
 * Class sets are interned: equal sets get one id, whatever path reached them.
 * A set is hashed incrementally (XOR of two 30-bit random words per rule, so a
 * child's hash is its parent's XOR its new rules'); equal hashes are confirmed
 * by comparing the sets, so a hash collision costs time, never correctness.
 * The common confirmation is cheap: two nodes whose parents have the same
 * class and that add the same rules have the same set. Only other matches
 * compare whole sets, and that work is counted in the compile steps.
 *
 * @module
 */

import type { Cidr } from "../model/mod.ts";

/** A distinct CIDR and its class: one `lpm_v4`/`lpm_v6` entry. */
export interface ClassifiedCidr {
  /** Network bytes, host bits cleared (4 or 16 bytes). */
  addr: Uint8Array;
  len: number;
  /** The class id (> 0). */
  cls: number;
}

/**
 * The classes of one direction. A class is represented by a node of the
 * containment trie: its rules are the `added` rules of the node and of its
 * ancestors, plus the any-address rules.
 */
export interface AddressClasses {
  /** Distinct IPv4 and IPv6 CIDRs in (address, length) order, with classes. */
  v4: ClassifiedCidr[];
  v6: ClassifiedCidr[];
  /** Number of class ids, including class 0 (the empty set). */
  count: number;
  /** Rule numbers: the any-address rules at `[0, anyCount)`, then each node's added rules. */
  rules: Int32Array;
  /** Number of any-address rules at the start of `rules`. */
  anyCount: number;
  /** Class id → a node of that class (-1 for class 0). */
  classNode: Int32Array;
  /** Node → nearest strictly containing node, or -1. */
  parent: Int32Array;
  /** Node → its added rules, `rules[addedStart[n], addedEnd[n])`, ascending. */
  addedStart: Int32Array;
  addedEnd: Int32Array;
  /**
   * Appends to `out` `[start, end)` ranges of `rules`, each sorted ascending,
   * pairwise disjoint, whose union is the candidates of class `cls`: the
   * class's rules plus the any-address rules.
   */
  memberRanges(cls: number, out: number[]): void;
}

/** CIDRs of one family with the rule of each, in ascending rule order. */
export interface CidrsOfRules {
  cidrs: Cidr[];
  rules: number[];
}

/** mulberry32: a small seeded PRNG of unsigned 32-bit words (also the tests' generators). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Distinct CIDRs of one family, sorted, as 32-bit words. */
interface FamilyNodes {
  /** Words per address: 1 (IPv4) or 4 (IPv6). */
  width: number;
  count: number;
  /** `count * width` big-endian address words. */
  words: Uint32Array;
  lens: Uint8Array;
  /** A `Cidr` object of each node (for its bytes). */
  cidr: Cidr[];
  /** Pair index → node. */
  nodeOf: Int32Array;
}

function wordsOf(cidrs: readonly Cidr[], width: number): Uint32Array {
  const words = new Uint32Array(cidrs.length * width);
  for (let i = 0; i < cidrs.length; i++) {
    const a = cidrs[i].addr;
    for (let w = 0; w < width; w++) {
      words[i * width + w] = ((a[4 * w] << 24) | (a[4 * w + 1] << 16) | (a[4 * w + 2] << 8) |
        a[4 * w + 3]) >>> 0;
    }
  }
  return words;
}

/** Sorts and dedupes; `order` lists pair indexes in (address, length) order. */
function nodesInOrder(
  cidrs: readonly Cidr[],
  width: number,
  pairWords: Uint32Array,
  order: ArrayLike<number>,
): FamilyNodes {
  const n = cidrs.length;
  const words = new Uint32Array(n * width);
  const lens = new Uint8Array(n);
  const cidr: Cidr[] = [];
  const nodeOf = new Int32Array(n);
  let count = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k];
    let same = count > 0 && lens[count - 1] === cidrs[i].len;
    for (let w = 0; same && w < width; w++) {
      same = words[(count - 1) * width + w] === pairWords[i * width + w];
    }
    if (!same) {
      for (let w = 0; w < width; w++) words[count * width + w] = pairWords[i * width + w];
      lens[count] = cidrs[i].len;
      cidr.push(cidrs[i]);
      count++;
    }
    nodeOf[i] = count - 1;
  }
  return { width, count, words, lens, cidr, nodeOf };
}

function nodes4(cidrs: readonly Cidr[]): FamilyNodes {
  // Sort key: address * 256 + len; (key * 2^? ) has no room for the index, so
  // sort keys, then order pairs by a stable counting pass over equal keys.
  const n = cidrs.length;
  const pairWords = wordsOf(cidrs, 1);
  const keyed = new Float64Array(n);
  for (let i = 0; i < n; i++) keyed[i] = pairWords[i] * 256 + cidrs[i].len;
  const sorted = keyed.slice().sort();
  // Position of each pair in sorted order (binary search; equal keys share a node anyway).
  const order = new Int32Array(n);
  const fill = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let lo = 0;
    let hi = n - 1;
    const k = keyed[i];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] < k) lo = mid + 1;
      else hi = mid;
    }
    order[lo + fill[lo]++] = i;
  }
  return nodesInOrder(cidrs, 1, pairWords, order);
}

function nodes6(cidrs: readonly Cidr[]): FamilyNodes {
  // Native string sort on 8 address half-words + length + index (UTF-16 code
  // units compare like the big-endian numbers they hold).
  const n = cidrs.length;
  const pairWords = wordsOf(cidrs, 4);
  const keys: string[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const w = i * 4;
    keys[i] = String.fromCharCode(
      pairWords[w] >>> 16,
      pairWords[w] & 0xffff,
      pairWords[w + 1] >>> 16,
      pairWords[w + 1] & 0xffff,
      pairWords[w + 2] >>> 16,
      pairWords[w + 2] & 0xffff,
      pairWords[w + 3] >>> 16,
      pairWords[w + 3] & 0xffff,
      cidrs[i].len,
      i >>> 16,
      i & 0xffff,
    );
  }
  keys.sort();
  const order = new Int32Array(n);
  for (let k = 0; k < n; k++) order[k] = (keys[k].charCodeAt(9) << 16) | keys[k].charCodeAt(10);
  return nodesInOrder(cidrs, 4, pairWords, order);
}

/** True when node `outer` contains node `inner` (same family). */
function within(f: FamilyNodes, outer: number, inner: number): boolean {
  const len = f.lens[outer];
  if (len > f.lens[inner]) return false;
  const a = outer * f.width;
  const b = inner * f.width;
  const full = len >>> 5;
  for (let w = 0; w < full; w++) if (f.words[a + w] !== f.words[b + w]) return false;
  const rest = len & 31;
  if (rest === 0) return true;
  return ((f.words[a + full] ^ f.words[b + full]) >>> (32 - rest)) === 0;
}

/**
 * Computes the address classes of a direction.
 *
 * @param v4 IPv4 CIDRs of the direction's rules, in ascending rule order.
 * @param v6 IPv6 CIDRs, likewise.
 * @param anyAddress Rules without CIDRs (candidates of every class), ascending.
 * @param ruleCount Rule numbers are in `0..ruleCount-1`.
 * @param spend Counts compile steps (throws when the file's steps are used up).
 */
export function computeClasses(
  v4: CidrsOfRules,
  v6: CidrsOfRules,
  anyAddress: readonly number[],
  ruleCount: number,
  spend: (steps: number) => void = () => {},
): AddressClasses {
  const fams = [
    { f: nodes4(v4.cidrs), src: v4, base: 0 },
    { f: nodes6(v6.cidrs), src: v6, base: 0 },
  ];
  fams[1].base = fams[0].f.count;
  const nodeCount = fams[0].f.count + fams[1].f.count;

  // Rules of each node, CSR layout, duplicates (a rule listing a CIDR twice) dropped.
  const ruleStart = new Int32Array(nodeCount + 1);
  const lastRule = new Int32Array(nodeCount).fill(-1);
  for (const { f, src, base } of fams) {
    for (let i = 0; i < src.rules.length; i++) {
      const node = base + f.nodeOf[i];
      if (lastRule[node] === src.rules[i]) continue;
      lastRule[node] = src.rules[i];
      ruleStart[node + 1]++;
    }
  }
  for (let i = 0; i < nodeCount; i++) ruleStart[i + 1] += ruleStart[i];
  const ruleList = new Int32Array(ruleStart[nodeCount]);
  const fillAt = ruleStart.slice(0, nodeCount);
  lastRule.fill(-1);
  for (const { f, src, base } of fams) {
    for (let i = 0; i < src.rules.length; i++) {
      const node = base + f.nodeOf[i];
      if (lastRule[node] === src.rules[i]) continue;
      lastRule[node] = src.rules[i];
      ruleList[fillAt[node]++] = src.rules[i];
    }
  }

  // Per-rule random words for the set hashes (30 bits: always small integers).
  const rand = mulberry32(0x7f1f);
  const z1 = new Int32Array(ruleCount);
  const z2 = new Int32Array(ruleCount);
  for (let i = 0; i < ruleCount; i++) {
    z1[i] = rand() & 0x3fffffff;
    z2[i] = rand() & 0x3fffffff;
  }

  // The walk: parent, added rules (into `rules`), hash and class of each node.
  const anyCount = anyAddress.length;
  const rules = new Int32Array(anyCount + ruleList.length);
  rules.set(anyAddress, 0);
  let rulesLen = anyCount;
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
    // Same parent class and the same added rules: the same set, cheaply.
    const pa = parent[a] >= 0 ? cls[parent[a]] : 0;
    const pb = parent[b] >= 0 ? cls[parent[b]] : 0;
    const na = addedEnd[a] - addedStart[a];
    if (pa === pb && na === addedEnd[b] - addedStart[b]) {
      let same = true;
      for (let k = 0; k < na && same; k++) {
        same = rules[addedStart[a] + k] === rules[addedStart[b] + k];
      }
      if (same) return true;
    }
    const x = classSet(a);
    const y = classSet(b);
    spend(x.length + y.length);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  };

  for (const { f, base } of fams) {
    let sp = 0;
    for (let local = 0; local < f.count; local++) {
      const node = base + local;
      while (sp > 0 && !within(f, stack[sp - 1] - base, local)) {
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

  const entries = ({ f, base }: typeof fams[number]): ClassifiedCidr[] => {
    const out: ClassifiedCidr[] = new Array(f.count);
    for (let i = 0; i < f.count; i++) {
      out[i] = { addr: f.cidr[i].addr, len: f.lens[i], cls: cls[base + i] };
    }
    return out;
  };
  const classNode = Int32Array.from(reps);
  return {
    v4: entries(fams[0]),
    v6: entries(fams[1]),
    count: reps.length,
    rules,
    anyCount,
    classNode,
    parent,
    addedStart,
    addedEnd,
    memberRanges(c: number, out: number[]): void {
      if (anyCount) out.push(0, anyCount);
      for (let n = classNode[c]; n >= 0; n = parent[n]) {
        if (addedEnd[n] > addedStart[n]) out.push(addedStart[n], addedEnd[n]);
      }
    },
  };
}
