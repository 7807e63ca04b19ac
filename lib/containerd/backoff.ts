/**
 * Exponential retry delays: `initialMs`, doubling on each failure up to
 * `maxMs`, back to `initialMs` after a success.
 *
 * @module
 */

/** The bounds of a {@link Backoff}. */
export interface BackoffOptions {
  /** The first delay, in milliseconds (> 0). */
  readonly initialMs: number;
  /** The largest delay, in milliseconds (>= initialMs). */
  readonly maxMs: number;
}

/** The default: 100 ms doubling to 5 s. */
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 5000 };

/** A sequence of retry delays. */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  #nextMs: number;

  constructor(options: BackoffOptions = DEFAULT_BACKOFF) {
    if (!(options.initialMs > 0) || !(options.maxMs >= options.initialMs)) {
      throw new RangeError(
        `invalid backoff: initialMs must be > 0 and maxMs >= initialMs ` +
          `(got ${options.initialMs} and ${options.maxMs})`,
      );
    }
    this.#initialMs = options.initialMs;
    this.#maxMs = options.maxMs;
    this.#nextMs = options.initialMs;
  }

  /** The delay before the next retry; each call doubles the following one, up to the maximum. */
  next(): number {
    const delay = this.#nextMs;
    this.#nextMs = Math.min(this.#nextMs * 2, this.#maxMs);
    return delay;
  }

  /** Starts again from the initial delay (after a success). */
  reset(): void {
    this.#nextMs = this.#initialMs;
  }
}
