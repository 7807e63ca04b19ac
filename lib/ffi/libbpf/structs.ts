/**
 * The C structs tinyfw hands to libbpf and the kernel, each defined once:
 * the header that declares it, its size, and the offset of every field
 * tinyfw reads or writes. The wrappers encode and decode through
 * {@link StructBuffer}; `tests/ffi/libbpf/structs_test.ts` compiles a C program
 * against the installed headers and checks every size and offset here.
 *
 * The `*_opts` structs start with `size_t sz`, set to the size here: libbpf
 * accepts the size of any libbpf release that has the fields.
 *
 * @module
 */

import { stableBytes } from "./symbols.ts";

/** A struct's size and the offsets of the fields used (nested ones as `outer.inner`). */
export interface StructLayout<F extends string = string> {
  /** The header that declares it, as `#include <...>` names it. */
  readonly header: "bpf/libbpf.h" | "bpf/bpf.h" | "linux/bpf.h";
  readonly size: number;
  readonly fields: Readonly<Record<F, number>>;
}

function struct<F extends string>(
  header: StructLayout["header"],
  size: number,
  fields: Record<F, number>,
): StructLayout<F> {
  return { header, size, fields };
}

/** Every struct, by its C name. */
export const STRUCTS = {
  bpf_object_open_opts: struct("bpf/libbpf.h", 80, {
    sz: 0,
    object_name: 8,
    kernel_log_buf: 56,
    kernel_log_size: 64,
    kernel_log_level: 72,
  }),
  bpf_map_batch_opts: struct("bpf/bpf.h", 24, { sz: 0, elem_flags: 8, flags: 16 }),
  bpf_xdp_attach_opts: struct("bpf/libbpf.h", 16, { sz: 0, old_prog_fd: 8 }),
  bpf_xdp_query_opts: struct("bpf/libbpf.h", 32, {
    sz: 0,
    prog_id: 8,
    drv_prog_id: 12,
    hw_prog_id: 16,
    skb_prog_id: 20,
    attach_mode: 24,
  }),
  bpf_tc_hook: struct("bpf/libbpf.h", 24, { sz: 0, ifindex: 8, attach_point: 12, parent: 16 }),
  bpf_tc_opts: struct("bpf/libbpf.h", 32, {
    sz: 0,
    prog_fd: 8,
    flags: 12,
    prog_id: 16,
    handle: 20,
    priority: 24,
  }),
  ring_buffer_opts: struct("bpf/libbpf.h", 8, { sz: 0 }),
  bpf_test_run_opts: struct("bpf/bpf.h", 80, {
    sz: 0,
    data_in: 8,
    data_out: 16,
    data_size_in: 24,
    data_size_out: 28,
    retval: 56,
    repeat: 60,
    duration: 64,
  }),
  bpf_link_create_opts: struct("bpf/bpf.h", 64, { sz: 0, flags: 8 }),
  bpf_link_update_opts: struct("bpf/bpf.h", 16, { sz: 0, flags: 8, old_prog_fd: 12 }),
  bpf_prog_info: struct("linux/bpf.h", 232, {
    type: 0,
    id: 4,
    tag: 8,
    nr_map_ids: 52,
    map_ids: 56,
    name: 64,
  }),
  bpf_map_info: struct("linux/bpf.h", 88, {
    type: 0,
    id: 4,
    key_size: 8,
    value_size: 12,
    max_entries: 16,
    map_flags: 20,
    name: 24,
  }),
  bpf_link_info: struct("linux/bpf.h", 48, { type: 0, id: 4, prog_id: 8, "xdp.ifindex": 16 }),
} as const;

/**
 * A zeroed instance of a struct (with `sz` set when it has one), read and
 * written by field name. `stable`: off-heap memory whose address stays put,
 * for structs libbpf keeps a pointer to, or that hold pointers.
 */
export class StructBuffer<F extends string> {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;
  readonly #fields: Readonly<Record<F, number>>;

  constructor(layout: StructLayout<F>, opts: { stable?: boolean } = {}) {
    this.bytes = opts.stable ? stableBytes(layout.size) : new Uint8Array(layout.size);
    this.#view = new DataView(this.bytes.buffer);
    this.#fields = layout.fields;
    if ("sz" in layout.fields) this.#view.setBigUint64(0, BigInt(layout.size), true);
  }

  u8(field: F): number {
    return this.#view.getUint8(this.#fields[field]);
  }

  u32(field: F): number {
    return this.#view.getUint32(this.#fields[field], true);
  }

  setU32(field: F, value: number): this {
    this.#view.setUint32(this.#fields[field], value, true);
    return this;
  }

  setI32(field: F, value: number): this {
    this.#view.setInt32(this.#fields[field], value, true);
    return this;
  }

  setU64(field: F, value: bigint): this {
    this.#view.setBigUint64(this.#fields[field], value, true);
    return this;
  }

  /** `length` bytes at `field` (char arrays, tags). */
  slice(field: F, length: number): Uint8Array {
    const at = this.#fields[field];
    return this.bytes.subarray(at, at + length);
  }
}
