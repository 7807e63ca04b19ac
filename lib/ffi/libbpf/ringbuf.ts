/**
 * A consumer of a BPF ring buffer map (libbpf's ring_buffer).
 *
 * @module
 */

import { StructBuffer, STRUCTS } from "./structs.ts";
import { begin, bpf, bpfError, call, callPtr } from "./symbols.ts";

// Ring buffers.

const SAMPLE_DEF = { parameters: ["pointer", "pointer", "usize"], result: "i32" } as const;

/**
 * A consumer of a BPF ring buffer map (libbpf ring_buffer). Records are
 * copied out and handed to `onSample` synchronously, on the JS thread, from
 * within {@link consume}. Wait for records with {@link epollFd} (readable
 * when there is something to consume), e.g. with libc's waitReadable.
 */
export class RingBuffer {
  #ptr: Deno.PointerObject | null;
  readonly #callback: Deno.UnsafeCallback<typeof SAMPLE_DEF>;
  readonly #onSample: (record: Uint8Array) => void;
  #failure: { error: unknown } | null = null;

  private constructor(
    ptr: Deno.PointerObject,
    callback: Deno.UnsafeCallback<typeof SAMPLE_DEF>,
    onSample: (record: Uint8Array) => void,
  ) {
    this.#ptr = ptr;
    this.#callback = callback;
    this.#onSample = onSample;
  }

  /** ring_buffer__new on the ring buffer map `mapFd`. */
  static open(mapFd: number, onSample: (record: Uint8Array) => void): RingBuffer {
    let self: RingBuffer | null = null;
    const callback = new Deno.UnsafeCallback(
      SAMPLE_DEF,
      (_ctx: Deno.PointerValue, data: Deno.PointerValue, size: number | bigint): number => {
        return self ? self.#deliver(data, Number(size)) : 0;
      },
    );
    const opts = new StructBuffer(STRUCTS.ring_buffer_opts).bytes;
    let ptr: Deno.PointerObject;
    try {
      ptr = callPtr(
        `ring_buffer__new map fd ${mapFd}`,
        (s) => s.ring_buffer__new(mapFd, callback.pointer, null, opts),
      );
    } catch (e) {
      callback.close();
      throw e;
    }
    self = new RingBuffer(ptr, callback, onSample);
    return self;
  }

  #deliver(data: Deno.PointerValue, size: number): number {
    if (!data || this.#failure) return -1;
    const record = new Uint8Array(size);
    new Deno.UnsafePointerView(data).copyInto(record);
    try {
      this.#onSample(record);
      return 0;
    } catch (error) {
      // Never let an exception cross libbpf: stop, and rethrow from consume().
      this.#failure = { error };
      return -1;
    }
  }

  get #p(): Deno.PointerObject {
    if (!this.#ptr) throw new Error("ring buffer is closed");
    return this.#ptr;
  }

  /** An epoll fd that is readable when records are waiting (owned by the ring buffer). */
  get epollFd(): number {
    return call("ring_buffer__epoll_fd", (s) => s.ring_buffer__epoll_fd(this.#p));
  }

  /**
   * Hands every waiting record to `onSample`; returns how many were consumed.
   * If `onSample` throws, consumption stops (that record counts as consumed)
   * and the exception is rethrown here.
   */
  consume(): number {
    const ret = begin().ring_buffer__consume(this.#p);
    if (this.#failure) {
      const { error } = this.#failure;
      this.#failure = null;
      throw error;
    }
    if (ret < 0) throw bpfError("ring_buffer__consume", ret);
    return ret;
  }

  /** ring_buffer__free; the callback is released with it. */
  close(): void {
    if (!this.#ptr) return;
    bpf().ring_buffer__free(this.#ptr);
    this.#ptr = null;
    this.#callback.close();
  }
}
