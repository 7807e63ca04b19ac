/**
 * The loaded XDP datapath: one set of shared maps ({@link Datapath}), one
 * program instance per attachment ({@link XdpProgram}), and the kernel calls
 * around them (test runs, XDP attach/detach/query, program info).
 *
 * How instances share maps: {@link Datapath.load} opens and loads the
 * embedded object once with its program disabled, which creates the maps.
 * {@link Datapath.instance} opens the same ELF again, points every map except
 * `.rodata` at the first object's (bpf_map__reuse_fd), writes the instance's
 * `attach_id` into `.rodata`, and loads: the verifier sees the constant and
 * the program reads `attach[attach_id]`. {@link Datapath.tcLearner} loads the
 * object's tc egress program (which learns flows) the same way. The `attach_id` offset comes from
 * the object's BTF (the `.rodata` DATASEC), so other read-only variables may
 * be added beside it; without BTF it must be the only 4-byte variable.
 *
 * @module
 */

import elf from "../../bpf/tinyfw.bpf.o" with { type: "bytes" };
import * as bpf from "../ffi/mod.ts";
import { close as closeFd, ENOENT, ENOTSUPP, EOPNOTSUPP } from "../ffi/mod.ts";

/** The maps of the XDP program (docs/DATAPATH.md §3). */
export const MAP_NAMES = [
  "state",
  "attach",
  "policies",
  "lpm_v4",
  "lpm_v6",
  "addr4_hash",
  "addr6_hash",
  "fast_l4",
  "rule_hash",
  "port_lpm",
  "counters",
  "stats",
  "flows",
  "events",
  "cpu_state",
] as const;

/** The name of one of the program's maps. */
export type MapName = typeof MAP_NAMES[number];

/** The XDP program's function name (`SEC("xdp")`), shown by `bpftool net show`. */
export const PROGRAM_NAME = "tinyfw_xdp";
/** The tc egress program that learns flows (`SEC("tc")`), shown by `tc filter show`. */
export const TC_PROGRAM_NAME = "tinyfw_tc_learn";
/** The object name: libbpf names the read-only data map `tinyfw.rodata` after it. */
export const OBJECT_NAME = "tinyfw";
/** The read-only variable that selects an instance's `attach` entry. */
export const ATTACH_ID_VAR = "attach_id";

/** Update modes of {@link BpfMap.update} (BPF_ANY, BPF_NOEXIST, BPF_EXIST). */
export type UpdateMode = "any" | "noexist" | "exist";

const UPDATE_FLAGS: Record<UpdateMode, number> = {
  any: bpf.BPF_ANY,
  noexist: bpf.BPF_NOEXIST,
  exist: bpf.BPF_EXIST,
};

const PER_CPU_TYPES = new Set([
  bpf.BPF_MAP_TYPE_PERCPU_HASH,
  bpf.BPF_MAP_TYPE_PERCPU_ARRAY,
  bpf.BPF_MAP_TYPE_LRU_PERCPU_HASH,
  bpf.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
]);

let cpuCount: number | undefined;

/**
 * The number of possible CPUs (/sys/devices/system/cpu/possible, e.g. "0-3"
 * or "0,2-5"): how many values a per-CPU map lookup returns.
 */
export function possibleCpus(): number {
  if (cpuCount === undefined) {
    const text = Deno.readTextFileSync("/sys/devices/system/cpu/possible").trim();
    let n = 0;
    for (const part of text.split(",")) {
      const [a, b] = part.split("-").map(Number);
      n += b === undefined ? 1 : b - a + 1;
    }
    cpuCount = n;
  }
  return cpuCount;
}

/** A u32 map key (array maps), little-endian. */
export function u32Key(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Uint32Array([n]).buffer);
}

/**
 * Sums per-CPU values field by field, reading each value as consecutive
 * little-endian u64s (`tfw_counter` → [packets, bytes]; a `stats` entry → [count]).
 */
export function sumPerCpu(values: readonly Uint8Array[]): bigint[] {
  const sums: bigint[] = [];
  for (const v of values) {
    const view = new DataView(v.buffer, v.byteOffset, v.byteLength);
    for (let i = 0; i * 8 + 8 <= v.byteLength; i++) {
      sums[i] = (sums[i] ?? 0n) + view.getBigUint64(i * 8, true);
    }
  }
  return sums;
}

function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer
    ? bytes as Uint8Array<ArrayBuffer>
    : new Uint8Array(bytes);
}

/**
 * A BPF map by fd, with its sizes. Keys and values are raw bytes (encode them
 * with `layout.ts`). On a per-CPU map a value is one CPU's value: lookups
 * return one per possible CPU, updates write the same value to every CPU.
 */
export class BpfMap {
  readonly name: string;
  readonly fd: number;
  /** enum bpf_map_type. */
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly perCpu: boolean;
  /** Bytes one CPU's value takes in a per-CPU buffer (value size rounded up to 8). */
  readonly perCpuStride: number;
  readonly #ownsFd: boolean;

  /** @param ownsFd close `fd` on {@link close} */
  constructor(fd: number, ownsFd = false) {
    const info = bpf.mapInfo(fd);
    this.fd = fd;
    this.name = info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.perCpu = PER_CPU_TYPES.has(info.type);
    this.perCpuStride = Math.ceil(info.valueSize / 8) * 8;
    this.#ownsFd = ownsFd;
  }

  /** Opens the map pinned at `path` (the returned map owns its fd). */
  static fromPin(path: string): BpfMap {
    return new BpfMap(bpf.objGet(path), true);
  }

  /** Bytes of the kernel's value buffer: the value, or one per CPU for a per-CPU map. */
  get #rawSize(): number {
    return this.perCpu ? this.perCpuStride * possibleCpus() : this.valueSize;
  }

  #key(key: Uint8Array): Uint8Array<ArrayBuffer> {
    if (key.length !== this.keySize) {
      throw new RangeError(`map ${this.name}: key of ${key.length} bytes, want ${this.keySize}`);
    }
    return own(key);
  }

  #value(value: Uint8Array): Uint8Array<ArrayBuffer> {
    if (value.length !== this.valueSize) {
      throw new RangeError(
        `map ${this.name}: value of ${value.length} bytes, want ${this.valueSize}`,
      );
    }
    if (!this.perCpu) return own(value);
    const raw = new Uint8Array(this.#rawSize);
    for (let at = 0; at < raw.length; at += this.perCpuStride) raw.set(value, at);
    return raw;
  }

  /** The value at `key`, or null. Per-CPU maps: use {@link lookupPerCpu}. */
  lookup(key: Uint8Array): Uint8Array | null {
    if (this.perCpu) throw new TypeError(`map ${this.name} is per-CPU: use lookupPerCpu`);
    const value = new Uint8Array(this.valueSize);
    return bpf.mapLookupElem(this.fd, this.#key(key), value) ? value : null;
  }

  /** One value per possible CPU at `key`, or null. */
  lookupPerCpu(key: Uint8Array): Uint8Array[] | null {
    if (!this.perCpu) throw new TypeError(`map ${this.name} is not per-CPU: use lookup`);
    const raw = new Uint8Array(this.#rawSize);
    if (!bpf.mapLookupElem(this.fd, this.#key(key), raw)) return null;
    const out: Uint8Array[] = [];
    for (let at = 0; at < raw.length; at += this.perCpuStride) {
      out.push(raw.slice(at, at + this.valueSize));
    }
    return out;
  }

  /** Writes `value` at `key` (per-CPU maps: on every CPU). */
  update(key: Uint8Array, value: Uint8Array, mode: UpdateMode = "any"): void {
    bpf.mapUpdateElem(this.fd, this.#key(key), this.#value(value), UPDATE_FLAGS[mode]);
  }

  /** Deletes `key`; false if it was absent. Array maps refuse (EINVAL). */
  delete(key: Uint8Array): boolean {
    return bpf.mapDeleteElem(this.fd, this.#key(key));
  }

  /**
   * Every key, by bpf_map_get_next_key. Deleting the key just yielded from a
   * hash map restarts the walk at the first key: collect the keys first.
   */
  *keys(): Generator<Uint8Array> {
    let prev: Uint8Array<ArrayBuffer> | null = null;
    for (;;) {
      const next = new Uint8Array(this.keySize);
      if (!bpf.mapGetNextKey(this.fd, prev, next)) return;
      yield next.slice();
      prev = next;
    }
  }

  /**
   * Writes `count` entries: `keys` holds the keys end to end, `values` the
   * values (per-CPU maps: each value written to every CPU). One batch call
   * where the kernel allows (arrays and hashes, mode "any"), else one call per
   * element (LPM tries; "noexist"/"exist", which batches do not take). Returns
   * `count`; a failure throws a BatchError whose `done` counts the entries
   * written before it.
   */
  updateBatch(
    keys: Uint8Array,
    values: Uint8Array,
    count: number,
    mode: UpdateMode = "any",
  ): number {
    this.#checkBatch(keys, count);
    if (values.length !== count * this.valueSize) {
      throw new RangeError(`map ${this.name}: ${values.length} value bytes for ${count} entries`);
    }
    if (count === 0) return 0;
    const vsize = this.perCpu ? this.#rawSize : this.valueSize;
    let raw = own(values);
    if (this.perCpu) {
      raw = new Uint8Array(count * vsize);
      for (let i = 0; i < count; i++) {
        raw.set(
          this.#value(values.subarray(i * this.valueSize, (i + 1) * this.valueSize)),
          i * vsize,
        );
      }
    }
    let done = 0;
    if (mode === "any") {
      try {
        return bpf.mapUpdateBatch(this.fd, own(keys), raw, count);
      } catch (e) {
        if (!(e instanceof bpf.BatchError) || !unsupported(e)) throw e;
        done = e.done;
      }
    }
    for (let i = done; i < count; i++) {
      try {
        bpf.mapUpdateElem(
          this.fd,
          keys.slice(i * this.keySize, (i + 1) * this.keySize),
          raw.slice(i * vsize, (i + 1) * vsize),
          UPDATE_FLAGS[mode],
        );
      } catch (e) {
        if (!(e instanceof bpf.BpfError)) throw e;
        throw new bpf.BatchError(e.op, e.errno, e.description, [...e.log], i);
      }
    }
    return count;
  }

  /**
   * Deletes `count` keys laid end to end, batched where the map type allows;
   * absent keys are skipped. Returns the number of entries deleted.
   */
  deleteBatch(keys: Uint8Array, count: number): number {
    this.#checkBatch(keys, count);
    const all = own(keys);
    let deleted = 0;
    let i = 0;
    let batched = true;
    while (i < count && batched) {
      try {
        deleted += bpf.mapDeleteBatch(this.fd, all.subarray(i * this.keySize), count - i);
        return deleted;
      } catch (e) {
        if (!(e instanceof bpf.BatchError)) throw e;
        deleted += e.done;
        i += e.done;
        if (e.errno === ENOENT) i++; // the kernel stops at an absent key: skip it
        else if (unsupported(e)) batched = false;
        else throw e;
      }
    }
    for (; i < count; i++) {
      if (bpf.mapDeleteElem(this.fd, all.slice(i * this.keySize, (i + 1) * this.keySize))) {
        deleted++;
      }
    }
    return deleted;
  }

  #checkBatch(keys: Uint8Array, count: number): void {
    if (keys.length !== count * this.keySize) {
      throw new RangeError(`map ${this.name}: ${keys.length} key bytes for ${count} entries`);
    }
  }

  /** bpf_obj_pin: pins the map at `path` on a bpffs. */
  pin(path: string): void {
    bpf.objPin(this.fd, path);
  }

  /** Closes the fd if this handle owns it (maps of a {@link Datapath} close with it). */
  close(): void {
    if (this.#ownsFd) closeFd(this.fd);
  }
}

function unsupported(e: bpf.BpfError): boolean {
  return e.errno === ENOTSUPP || e.errno === EOPNOTSUPP;
}

/** Options of {@link Datapath.load}. */
export interface LoadOptions {
  /** The ELF object; default: the embedded `bpf/tinyfw.bpf.o`. */
  elf?: Uint8Array;
  /** Capacities that differ from the ELF's (e.g. small maps in tests). */
  maxEntries?: Partial<Record<MapName, number>>;
  /**
   * A bpffs directory: each map is pinned there under its name; maps already
   * pinned there are reused (libbpf checks they are compatible, else load fails).
   */
  pinDir?: string;
}

/** A loaded program of the object (an fd of our own). */
export interface LoadedProgram {
  /** The program's fd (close-on-exec), valid until {@link close}. */
  readonly fd: number;
  /** The kernel's program id. */
  readonly id: number;
  /** Closes the fd; an attached program stays attached. */
  close(): void;
}

/** One loaded instance of the XDP program, bound to one `attach` entry. */
export interface XdpProgram extends LoadedProgram {
  /** The `attach` entry this instance reads. */
  readonly attachId: number;
}

/** The shared maps of the XDP program, and the factory of its instances. */
export class Datapath {
  readonly #elf: Uint8Array;
  #obj: bpf.BpfObject | null;
  /** The program's maps by name. */
  readonly maps: Readonly<Record<MapName, BpfMap>>;

  private constructor(elf: Uint8Array, obj: bpf.BpfObject, maps: Record<MapName, BpfMap>) {
    this.#elf = elf;
    this.#obj = obj;
    this.maps = maps;
  }

  /**
   * Opens and loads the object once, creating (or, with `pinDir`, reusing) the
   * maps. Its program is not loaded: {@link instance} loads one per attachment.
   */
  static load(opts: LoadOptions = {}): Datapath {
    const bytes = opts.elf ?? elf;
    const obj = bpf.BpfObject.openMem(bytes, { name: OBJECT_NAME });
    try {
      for (const prog of obj.programs()) prog.setAutoload(false);
      for (const name of MAP_NAMES) {
        const m = obj.findMap(name);
        if (!m) throw new Error(`XDP object has no map named ${name}`);
        const max = opts.maxEntries?.[name];
        if (max !== undefined) m.setMaxEntries(max);
        if (opts.pinDir) m.setPinPath(`${opts.pinDir}/${name}`);
      }
      for (const name of [PROGRAM_NAME, TC_PROGRAM_NAME]) {
        if (!obj.findProgram(name)) throw new Error(`XDP object has no program named ${name}`);
      }
      obj.load();
      const maps = {} as Record<MapName, BpfMap>;
      for (const name of MAP_NAMES) maps[name] = new BpfMap(obj.findMap(name)!.fd);
      return new Datapath(bytes, obj, maps);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  /** The map called `name`. */
  map(name: MapName): BpfMap {
    return this.maps[name];
  }

  /**
   * Loads a program instance that reads `attach[attachId]` and shares every
   * map of this datapath. Throws BpfError (with the verifier log) if the kernel
   * rejects the program.
   */
  instance(attachId: number): XdpProgram {
    const max = this.maps.attach.maxEntries;
    if (!Number.isInteger(attachId) || attachId < 0 || attachId >= max) {
      throw new RangeError(`attach id ${attachId} is outside 0..${max - 1}`);
    }
    return { ...this.#loadProgram(PROGRAM_NAME, attachId), attachId };
  }

  /**
   * Loads the tc egress program that learns flows from what a host sends
   * (docs/DATAPATH.md §7), sharing every map of this datapath. One instance
   * can be attached to any number of interfaces (`attachTcEgress` in
   * `tc.ts`); it reads no `attach` entry.
   */
  tcLearner(): LoadedProgram {
    return this.#loadProgram(TC_PROGRAM_NAME, 0);
  }

  /** Opens the ELF again, reuses every shared map, loads only `name`. */
  #loadProgram(name: string, attachId: number): LoadedProgram {
    const base = this.#live();
    const obj = bpf.BpfObject.openMem(this.#elf, { name: OBJECT_NAME });
    try {
      const rodata = obj.findMap(".rodata");
      if (!rodata) throw new Error("XDP object has no .rodata (no attach_id)");
      for (const m of obj.maps()) {
        if (m.name === rodata.name) continue;
        const shared = base.findMap(m.name);
        if (!shared) throw new Error(`map ${m.name} is missing from the shared object`);
        m.reuseFd(shared.fd);
      }
      let found = false;
      for (const p of obj.programs()) {
        p.setAutoload(p.name === name);
        found ||= p.name === name;
      }
      if (!found) throw new Error(`the object has no program named ${name}`);
      const data = rodata.initialValue() ?? new Uint8Array(rodata.valueSize);
      const at = attachIdOffset(obj, data.length);
      new DataView(data.buffer, data.byteOffset).setUint32(at, attachId, true);
      rodata.setInitialValue(data);
      obj.load();
      const prog = obj.findProgram(name)!;
      const id = bpf.progInfo(prog.fd).id;
      // An fd of our own, so the object (and libbpf's copies) can go now.
      const fd = bpf.progGetFdById(id);
      let open = true;
      return {
        fd,
        id,
        close() {
          if (open) closeFd(fd);
          open = false;
        },
      };
    } finally {
      obj.close();
    }
  }

  /** Pins every map under `dir` (a bpffs directory), named as in {@link MAP_NAMES}. */
  pinMaps(dir: string): void {
    for (const name of MAP_NAMES) this.maps[name].pin(`${dir}/${name}`);
  }

  /**
   * Releases the maps held by this process (programs that use them, and pins,
   * keep them alive). The {@link maps} handles are invalid afterwards: their
   * fd numbers may be reused by anything opened later.
   */
  close(): void {
    this.#obj?.close();
    this.#obj = null;
  }

  #live(): bpf.BpfObject {
    if (!this.#obj) throw new Error("datapath is closed");
    return this.#obj;
  }
}

function attachIdOffset(obj: bpf.BpfObject, rodataSize: number): number {
  const v = obj.sectionVars(".rodata").find((x) => x.name === ATTACH_ID_VAR);
  if (v) {
    if (v.size !== 4) throw new Error(`${ATTACH_ID_VAR} is ${v.size} bytes, want 4`);
    return v.offset;
  }
  if (rodataSize === 4) return 0; // no BTF: attach_id is all there is
  throw new Error(`no ${ATTACH_ID_VAR} in the object's .rodata`);
}

// ---------------------------------------------------------------------------
// Programs in the kernel.

/** Result of {@link testRun}. */
export interface TestRunResult {
  /** The program's return value (XDP_DROP 1, XDP_PASS 2, ...). */
  retval: number;
  /** Mean time per run in nanoseconds, as measured by the kernel. */
  durationNs: number;
  /** The packet as the program left it. */
  dataOut: Uint8Array;
}

/** Runs the program `progFd` on `data` in the kernel (BPF_PROG_TEST_RUN), `repeat` times. */
export function testRun(progFd: number, data: Uint8Array, repeat = 1): TestRunResult {
  const r = bpf.progTestRun(progFd, { data, repeat });
  return { retval: r.retval, durationNs: r.duration, dataOut: r.dataOut };
}

/** XDP attach modes: driver (native) or generic (skb). */
export type XdpMode = "native" | "generic";

const MODE_FLAGS: Record<XdpMode, number> = {
  native: bpf.XDP_FLAGS_DRV_MODE,
  generic: bpf.XDP_FLAGS_SKB_MODE,
};

/**
 * Attaches `progFd` at XDP on `ifindex` (netlink: it stays after the process
 * exits). Without `replaceFd` it fails with EBUSY if a program is attached;
 * with it, it atomically replaces that program and fails (EEXIST) if another
 * one is attached instead.
 */
export function xdpAttach(
  ifindex: number,
  progFd: number,
  opts: { mode: XdpMode; replaceFd?: number },
): void {
  const flags = MODE_FLAGS[opts.mode] |
    (opts.replaceFd === undefined ? bpf.XDP_FLAGS_UPDATE_IF_NOEXIST : bpf.XDP_FLAGS_REPLACE);
  bpf.xdpAttach(ifindex, progFd, flags, opts.replaceFd);
}

/**
 * Detaches the XDP program of `mode` from `ifindex`. With `expectFd`, only if
 * that program is the one attached (else EEXIST), so a foreign one is left alone.
 */
export function xdpDetach(ifindex: number, mode: XdpMode, opts: { expectFd?: number } = {}): void {
  const flags = MODE_FLAGS[mode] | (opts.expectFd === undefined ? 0 : bpf.XDP_FLAGS_REPLACE);
  bpf.xdpDetach(ifindex, flags, opts.expectFd);
}

/** What is attached at XDP on an interface (ids are 0 when absent). */
export interface XdpState {
  /** The attached program's id (0 if none, or if several modes are in use). */
  progId: number;
  mode: "none" | "native" | "generic" | "offload" | "multi";
  driverId: number;
  skbId: number;
  hwId: number;
}

const ATTACH_MODES: readonly XdpState["mode"][] = ["none", "native", "generic", "offload", "multi"];

/** bpf_xdp_query on `ifindex`. */
export function xdpQuery(ifindex: number): XdpState {
  const q = bpf.xdpQuery(ifindex);
  return {
    progId: q.progId,
    mode: ATTACH_MODES[q.attachMode] ?? "multi",
    driverId: q.drvProgId,
    skbId: q.skbProgId,
    hwId: q.hwProgId,
  };
}

/** What {@link progInfo} tells about a loaded program. */
export interface ProgramInfo {
  id: number;
  /** Up to 15 characters of the program's name ("tinyfw_xdp" for ours). */
  name: string;
  /** 16 hex digits, as bpftool prints it. */
  tag: string;
  /** enum bpf_prog_type (XDP: 6). */
  type: number;
  /** Ids of the maps the program uses. */
  mapIds: number[];
}

function withProgFd<T>(ref: { id: number } | { fd: number }, f: (fd: number) => T): T {
  if ("fd" in ref) return f(ref.fd);
  const fd = bpf.progGetFdById(ref.id);
  try {
    return f(fd);
  } finally {
    closeFd(fd);
  }
}

/** Information about a loaded program, by id or fd. Throws BpfError ENOENT for an unknown id. */
export function progInfo(ref: { id: number } | { fd: number }): ProgramInfo {
  return withProgFd(ref, (fd) => {
    const i = bpf.progInfo(fd);
    return { id: i.id, name: i.name, tag: i.tag, type: i.type, mapIds: i.mapIds };
  });
}

const attachIdOffsets = new WeakMap<Uint8Array, number>();

/**
 * The `attach_id` a loaded tinyfw program instance was built with (read from
 * its `.rodata` map), or null if the program is not a tinyfw instance. Lets a
 * restarted agent recognise the programs it left attached. The variable's
 * offset is taken from `elf` (default: the embedded object).
 */
export function programAttachId(
  ref: { id: number } | { fd: number },
  opts: { elf?: Uint8Array } = {},
): number | null {
  const bytes = opts.elf ?? elf;
  let offset = attachIdOffsets.get(bytes);
  if (offset === undefined) {
    const obj = bpf.BpfObject.openMem(bytes, { name: OBJECT_NAME });
    try {
      const rodata = obj.findMap(".rodata");
      offset = attachIdOffset(obj, rodata?.valueSize ?? 0);
    } finally {
      obj.close();
    }
    attachIdOffsets.set(bytes, offset);
  }
  const at = offset;
  return withProgFd(ref, (fd) => {
    const info = bpf.progInfo(fd);
    if (info.type !== bpf.BPF_PROG_TYPE_XDP || info.name !== PROGRAM_NAME) return null;
    for (const mapId of info.mapIds) {
      const map = new BpfMap(bpf.mapGetFdById(mapId), true);
      try {
        if (map.name !== `${OBJECT_NAME}.rodata` || map.valueSize < at + 4) continue;
        const value = map.lookup(u32Key(0));
        return value ? new DataView(value.buffer).getUint32(at, true) : null;
      } finally {
        map.close();
      }
    }
    return null;
  });
}

/** An fd of the loaded program `id` (e.g. to replace it atomically); close it when done. */
export function openProgram(id: number): { fd: number; close(): void } {
  const fd = bpf.progGetFdById(id);
  return { fd, close: () => closeFd(fd) };
}
