/**
 * First-fit allocation of integer ranges in [0, capacity): the counter indexes
 * of installed policies. Freed ranges merge with their neighbours.
 *
 * @module
 */

/** A free-list allocator of contiguous ranges. */
export class RangeAllocator {
  /** Free ranges as [start, length], sorted by start, never adjacent. */
  readonly #free: [number, number][];

  constructor(capacity: number) {
    this.#free = capacity > 0 ? [[0, capacity]] : [];
  }

  /** The start of a free range of `length`, now taken; null if none is large enough. */
  allocate(length: number): number | null {
    for (let i = 0; i < this.#free.length; i++) {
      const [start, len] = this.#free[i];
      if (len < length) continue;
      if (len === length) this.#free.splice(i, 1);
      else this.#free[i] = [start + length, len - length];
      return start;
    }
    return null;
  }

  /**
   * Takes [start, start + length) out of the free list, where an earlier
   * owner left it in use; false (and nothing taken) unless all of it is free.
   */
  reserve(start: number, length: number): boolean {
    if (length <= 0) return true;
    const i = this.#free.findIndex(([s, len]) => s <= start && start + length <= s + len);
    if (i < 0) return false;
    const [s, len] = this.#free[i];
    const parts: [number, number][] = [];
    if (start > s) parts.push([s, start - s]);
    if (start + length < s + len) parts.push([start + length, s + len - start - length]);
    this.#free.splice(i, 1, ...parts);
    return true;
  }

  /** Returns [start, start + length) to the free list. */
  free(start: number, length: number): void {
    if (length <= 0) return;
    let i = 0;
    while (i < this.#free.length && this.#free[i][0] < start) i++;
    this.#free.splice(i, 0, [start, length]);
    // Merge with the next range, then with the previous one.
    const next = this.#free[i + 1];
    if (next && start + length === next[0]) {
      this.#free[i][1] += next[1];
      this.#free.splice(i + 1, 1);
    }
    const prev = this.#free[i - 1];
    if (prev && prev[0] + prev[1] === start) {
      prev[1] += this.#free[i][1];
      this.#free.splice(i, 1);
    }
  }

  /** Total free length. */
  available(): number {
    return this.#free.reduce((n, [, len]) => n + len, 0);
  }
}
