/**
 * Attach ids (`attach` map indexes, docs/DATAPATH.md §3): each program
 * instance reads the entry of its own id. One allocator for host interfaces
 * and containers, which also keeps the ids of the programs an earlier agent
 * left attached out of use until they are adopted or collected, so that no
 * new attachment configures an entry an old program still reads.
 *
 * @module
 */

/** The attach ids of one data path: 1..max-1 (0 is never used). */
export class AttachIds {
  readonly #used = new Set<number>();

  constructor(readonly max: number) {}

  /** Marks `id` used; false if it was already (or is out of range). */
  reserve(id: number): boolean {
    if (!Number.isInteger(id) || id < 1 || id >= this.max || this.#used.has(id)) return false;
    this.#used.add(id);
    return true;
  }

  /** The lowest free id, now used. */
  take(): number {
    for (let id = 1; id < this.max; id++) {
      if (!this.#used.has(id)) {
        this.#used.add(id);
        return id;
      }
    }
    throw new Error(`all ${this.max - 1} attachments are in use`);
  }

  /** Returns `id`. */
  free(id: number): void {
    this.#used.delete(id);
  }

  has(id: number): boolean {
    return this.#used.has(id);
  }

  get size(): number {
    return this.#used.size;
  }
}
