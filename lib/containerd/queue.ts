/**
 * An unbounded FIFO between a push-style producer (an event stream) and one
 * consumer that awaits items one at a time, then learns how the producer ended.
 *
 * @module
 */

/** What {@link EventQueue.next} resolves with. */
export type QueueItem<T> =
  | { readonly done: false; readonly value: T }
  | { readonly done: true; readonly error: Error | null };

/** A FIFO of items, then an end (with an error or null). */
export class EventQueue<T> {
  #items: T[] = [];
  #head = 0;
  #end: { error: Error | null } | undefined;
  #waiter: ((item: QueueItem<T>) => void) | undefined;

  /** Items waiting to be taken. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Whether {@link end} was called. */
  get ended(): boolean {
    return this.#end !== undefined;
  }

  /** Appends an item (ignored after {@link end}). */
  push(value: T): void {
    if (this.#end) return;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter({ done: false, value });
    } else {
      this.#items.push(value);
    }
  }

  /** Marks the end; items already queued are still delivered first. Later calls are ignored. */
  end(error: Error | null): void {
    if (this.#end) return;
    this.#end = { error };
    const waiter = this.#waiter;
    if (waiter && this.size === 0) {
      this.#waiter = undefined;
      waiter({ done: true, error });
    }
  }

  /** The next item, or the end once every item was taken. One caller at a time. */
  next(): Promise<QueueItem<T>> {
    if (this.#waiter) return Promise.reject(new Error("EventQueue.next: already waiting"));
    if (this.size > 0) {
      const value = this.#items[this.#head++];
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      return Promise.resolve({ done: false, value });
    }
    if (this.#end) return Promise.resolve({ done: true, error: this.#end.error });
    return new Promise((resolve) => this.#waiter = resolve);
  }
}
