/**
 * Interval arithmetic on the 16-bit L4 key space, for the compiler
 * (DATAPATH.md §4): normalising port lists, resolving which candidate covers
 * each elementary interval first, and splitting ranges into aligned prefixes.
 *
 * Interval lists are flat number arrays, `[from, to, rule, from, to, rule, ...]`
 * (inclusive bounds), to keep large compiles free of small objects.
 *
 * @module
 */

import type { PortRange } from "../model/mod.ts";

/** The largest L4 key. */
export const L4_MAX = 0xffff;

/**
 * Sorts, clamps to 0..65535 and merges overlapping or adjacent ranges.
 * Returns a flat `[from, to, ...]` list (no rule field).
 */
export function normalizeRanges(ranges: readonly PortRange[]): number[] {
  if (ranges.length === 1) {
    const from = Math.max(0, Math.ceil(ranges[0].from));
    const to = Math.min(L4_MAX, Math.floor(ranges[0].to));
    return from <= to ? [from, to] : [];
  }
  const clamped = ranges
    .map((r) => ({ from: Math.max(0, Math.ceil(r.from)), to: Math.min(L4_MAX, Math.floor(r.to)) }))
    .filter((r) => r.from <= r.to)
    .sort((a, b) => a.from - b.from);
  const out: number[] = [];
  for (const r of clamped) {
    const n = out.length;
    if (n && r.from <= out[n - 1] + 1) {
      if (r.to > out[n - 1]) out[n - 1] = r.to;
    } else {
      out.push(r.from, r.to);
    }
  }
  return out;
}

// A binary min-heap of packed (rule, end) numbers: rule * 2^17 + end.
const END_SPAN = 1 << 17;

function heapPush(h: number[], v: number): void {
  let i = h.length;
  h.push(v);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (h[parent] <= v) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = v;
}

function heapPop(h: number[]): void {
  const last = h.pop()!;
  const n = h.length;
  if (n === 0) return;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    const c = r < n && h[r] < h[l] ? r : l;
    if (h[c] >= last) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = last;
}

/**
 * Splits the L4 key space by the given candidate intervals and gives each
 * elementary interval to its first covering candidate, the one with the lowest
 * rule number. Adjacent intervals of the same rule are merged.
 *
 * @param flat `[from, to, rule, ...]`; intervals of one rule must not overlap.
 * @param out Where to append the result; default a new array.
 * @returns `out` with `[from, to, rule, ...]` appended: sorted, disjoint;
 *   uncovered keys absent.
 */
export function firstCoverSegments(flat: readonly number[], out: number[] = []): number[] {
  const count = flat.length / 3;
  if (count === 0) return out;
  if (count === 1) {
    out.push(flat[0], flat[1], flat[2]);
    return out;
  }
  let singleRule = true;
  for (let i = 3; i < flat.length && singleRule; i += 3) singleRule = flat[i + 2] === flat[2];
  if (singleRule) {
    const merged = mergeSorted(sortTriples(flat.slice()));
    for (let i = 0; i < merged.length; i++) out.push(merged[i]);
    return out;
  }
  const base = out.length;
  // Boundary points: every start and every end + 1.
  const order = Array.from({ length: count }, (_, i) => i).sort((a, b) =>
    flat[3 * a] - flat[3 * b]
  );
  const points: number[] = [];
  for (let i = 0; i < count; i++) points.push(flat[3 * i], flat[3 * i + 1] + 1);
  points.sort((a, b) => a - b);
  const heap: number[] = [];
  let next = 0;
  for (let pi = 0; pi < points.length; pi++) {
    const at = points[pi];
    if (pi > 0 && at === points[pi - 1]) continue;
    if (at > L4_MAX) break;
    while (next < count && flat[3 * order[next]] <= at) {
      const k = 3 * order[next++];
      heapPush(heap, flat[k + 2] * END_SPAN + flat[k + 1]);
    }
    while (heap.length && heap[0] % END_SPAN < at) heapPop(heap);
    if (!heap.length) continue;
    let until = L4_MAX;
    for (let pj = pi + 1; pj < points.length; pj++) {
      if (points[pj] > at) {
        until = points[pj] - 1;
        break;
      }
    }
    const rule = Math.floor(heap[0] / END_SPAN);
    const n = out.length;
    if (n > base && out[n - 1] === rule && out[n - 2] + 1 === at) {
      out[n - 2] = until;
    } else {
      out.push(at, until, rule);
    }
  }
  return out;
}

function sortTriples(flat: number[]): number[] {
  const idx = Array.from({ length: flat.length / 3 }, (_, i) => i).sort((a, b) =>
    flat[3 * a] - flat[3 * b]
  );
  const out: number[] = [];
  for (const i of idx) out.push(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]);
  return out;
}

function mergeSorted(flat: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < flat.length; i += 3) {
    const n = out.length;
    if (n && out[n - 1] === flat[i + 2] && out[n - 2] + 1 >= flat[i]) {
      out[n - 2] = Math.max(out[n - 2], flat[i + 1]);
    } else {
      out.push(flat[i], flat[i + 1], flat[i + 2]);
    }
  }
  return out;
}

/**
 * Calls `emit(value, prefixLen)` for each aligned prefix of the minimal cover
 * of `[from, to]` in a 16-bit space, never with a prefix shorter than `minLen`.
 */
export function forEachPrefix(
  from: number,
  to: number,
  minLen: number,
  emit: (value: number, len: number) => void,
): void {
  const maxBlockBits = 16 - minLen;
  let at = from;
  while (at <= to) {
    let bits = 0;
    while (
      bits < maxBlockBits && (at & ((1 << (bits + 1)) - 1)) === 0 &&
      at + (1 << (bits + 1)) - 1 <= to
    ) bits++;
    emit(at, 16 - bits);
    at += 1 << bits;
  }
}

/** Number of prefixes `forEachPrefix` would emit. */
export function prefixCount(from: number, to: number, minLen: number): number {
  let n = 0;
  forEachPrefix(from, to, minLen, () => n++);
  return n;
}
