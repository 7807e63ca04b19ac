/**
 * Map elements by fd (lookup, update, delete, iterate, batches), map fds by
 * id and map info.
 *
 * @module
 */

import { BpfError } from "../errors.ts";
import { BPF_ANY, BPF_OBJ_NAME_LEN } from "./constants.ts";
import { StructBuffer, STRUCTS } from "./structs.ts";
import {
  begin,
  bpfError,
  call,
  capturedLog,
  cStringIn,
  infoByFd,
  libbpfStrerror,
} from "./symbols.ts";
import { ENOENT } from "../errno.ts";

// Map elements (by fd). Buffers must have the map's key/value sizes (per-CPU
// values: round_up(value_size, 8) * possible CPUs).

/** bpf_map_lookup_elem into `value`; false if the key is absent (ENOENT). */
export function mapLookupElem(
  fd: number,
  key: Uint8Array<ArrayBuffer>,
  value: Uint8Array<ArrayBuffer>,
): boolean {
  const ret = begin().bpf_map_lookup_elem(fd, key, value);
  if (ret === -ENOENT) return false;
  if (ret < 0) throw bpfError("bpf_map_lookup_elem", ret);
  return true;
}

/** bpf_map_update_elem with BPF_ANY / BPF_NOEXIST / BPF_EXIST. */
export function mapUpdateElem(
  fd: number,
  key: Uint8Array<ArrayBuffer>,
  value: Uint8Array<ArrayBuffer>,
  flags = BPF_ANY,
): void {
  call("bpf_map_update_elem", (s) => s.bpf_map_update_elem(fd, key, value, BigInt(flags)));
}

/** bpf_map_delete_elem; false if the key was absent (ENOENT). */
export function mapDeleteElem(fd: number, key: Uint8Array<ArrayBuffer>): boolean {
  const ret = begin().bpf_map_delete_elem(fd, key);
  if (ret === -ENOENT) return false;
  if (ret < 0) throw bpfError("bpf_map_delete_elem", ret);
  return true;
}

/** bpf_map_get_next_key: the key after `key` (null: the first) into `next`; false at the end. */
export function mapGetNextKey(
  fd: number,
  key: Uint8Array<ArrayBuffer> | null,
  next: Uint8Array<ArrayBuffer>,
): boolean {
  const ret = begin().bpf_map_get_next_key(fd, key, next);
  if (ret === -ENOENT) return false;
  if (ret < 0) throw bpfError("bpf_map_get_next_key", ret);
  return true;
}

/** Flags of the batch calls (struct bpf_map_batch_opts). */
export interface BatchOptions {
  /** Per element: BPF_ANY / BPF_NOEXIST / BPF_EXIST (update) or 0. */
  elemFlags?: number;
  flags?: number;
}

function batchOpts(o: BatchOptions): Uint8Array<ArrayBuffer> {
  return new StructBuffer(STRUCTS.bpf_map_batch_opts)
    .setU64("elem_flags", BigInt(o.elemFlags ?? 0))
    .setU64("flags", BigInt(o.flags ?? 0)).bytes;
}

/**
 * bpf_map_update_batch of `count` keys and values laid end to end. Returns
 * `count`; on failure throws a {@link BatchError} whose `done` says how many
 * elements were written before the failure.
 */
export function mapUpdateBatch(
  fd: number,
  keys: Uint8Array<ArrayBuffer>,
  values: Uint8Array<ArrayBuffer>,
  count: number,
  opts: BatchOptions = {},
): number {
  const n = new Uint32Array([count]);
  const ret = begin().bpf_map_update_batch(
    fd,
    keys,
    values,
    new Uint8Array(n.buffer),
    batchOpts(opts),
  );
  if (ret < 0) throw batchError("bpf_map_update_batch", ret, n[0]);
  return n[0];
}

/** bpf_map_delete_batch of `count` keys laid end to end; like {@link mapUpdateBatch}. */
export function mapDeleteBatch(
  fd: number,
  keys: Uint8Array<ArrayBuffer>,
  count: number,
  opts: BatchOptions = {},
): number {
  const n = new Uint32Array([count]);
  const ret = begin().bpf_map_delete_batch(fd, keys, new Uint8Array(n.buffer), batchOpts(opts));
  if (ret < 0) throw batchError("bpf_map_delete_batch", ret, n[0]);
  return n[0];
}

/** A failed batch call: `done` elements were processed before the failure. */
export class BatchError extends BpfError {
  /** Elements processed before the failure (the kernel's count). */
  readonly done: number;

  constructor(op: string, errno: number, description: string, log: string[], done: number) {
    super(op, errno, description, log);
    this.name = "BatchError";
    this.done = done;
  }
}

function batchError(op: string, ret: number, done: number): BatchError {
  const e = Math.abs(ret);
  return new BatchError(op, e, libbpfStrerror(e), capturedLog(), done);
}

/** bpf_map_get_fd_by_id: a new (close-on-exec) fd for a map. */
export function mapGetFdById(id: number): number {
  return call(`bpf_map_get_fd_by_id ${id}`, (s) => s.bpf_map_get_fd_by_id(id));
}

/** The parts of struct bpf_map_info tinyfw reads. */
export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

/** bpf_obj_get_info_by_fd on a map fd. */
export function mapInfo(fd: number): MapInfo {
  const info = new StructBuffer(STRUCTS.bpf_map_info);
  infoByFd("bpf_obj_get_info_by_fd (map)", fd, info.bytes);
  return {
    type: info.u32("type"),
    id: info.u32("id"),
    keySize: info.u32("key_size"),
    valueSize: info.u32("value_size"),
    maxEntries: info.u32("max_entries"),
    flags: info.u32("map_flags"),
    name: cStringIn(info.slice("name", BPF_OBJ_NAME_LEN)),
  };
}
