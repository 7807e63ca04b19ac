/**
 * Typed wrappers over libbpf.so.1 (1.1): bpf_object life cycle, map and
 * program handles, map element calls, XDP attach/query, tc (clsact) hooks and
 * filters, ring buffers, test runs, object info and pins. Failures throw {@link BpfError} carrying the errno, libbpf's
 * message and the lines libbpf logged during the call (the verifier log of a
 * rejected program, the kernel's netlink message of a refused attach...).
 *
 * Objects, maps and programs are opaque handles: their pointers never leave
 * this module. Every buffer whose address libbpf keeps is referenced by its
 * handle for as long as libbpf may read it. libbpf is opened on first use.
 *
 * Struct layouts below are libbpf 1.1's on x86-64, checked with offsetof()
 * against /usr/include/bpf/*.h and /usr/include/linux/bpf.h.
 *
 * @module
 */

import { BpfError } from "./errors.ts";
import { cString, errno, formatVaList } from "./libc.ts";

export { BpfError } from "./errors.ts";

/** Map update flags. */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/** XDP attach flags (linux/if_link.h). */
export const XDP_FLAGS_UPDATE_IF_NOEXIST = 1;
export const XDP_FLAGS_SKB_MODE = 2;
export const XDP_FLAGS_DRV_MODE = 4;
export const XDP_FLAGS_HW_MODE = 8;
export const XDP_FLAGS_REPLACE = 16;

/** Map types tinyfw cares about (enum bpf_map_type). */
export const BPF_MAP_TYPE_HASH = 1;
export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_HASH = 5;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_MAP_TYPE_LRU_HASH = 9;
export const BPF_MAP_TYPE_LRU_PERCPU_HASH = 10;
export const BPF_MAP_TYPE_LPM_TRIE = 11;
export const BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21;
export const BPF_MAP_TYPE_RINGBUF = 27;
/** enum bpf_prog_type: tc classifier (SEC("tc")), XDP. */
export const BPF_PROG_TYPE_SCHED_CLS = 3;
export const BPF_PROG_TYPE_XDP = 6;

/** enum bpf_tc_attach_point. */
export const BPF_TC_INGRESS = 1;
export const BPF_TC_EGRESS = 2;
export const BPF_TC_CUSTOM = 4;
/** enum bpf_tc_flags. */
export const BPF_TC_F_REPLACE = 1;

const BTF_KIND_VAR = 14;
const BTF_KIND_DATASEC = 15;

const SYMBOLS = {
  libbpf_set_print: { parameters: ["function"], result: "function" },
  libbpf_strerror: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  bpf_object__open_mem: { parameters: ["buffer", "usize", "buffer"], result: "pointer" },
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  bpf_object__btf: { parameters: ["pointer"], result: "pointer" },
  bpf_object__next_map: { parameters: ["pointer", "pointer"], result: "pointer" },
  bpf_object__next_program: { parameters: ["pointer", "pointer"], result: "pointer" },
  bpf_object__find_map_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_object__find_program_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_map__name: { parameters: ["pointer"], result: "pointer" },
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  bpf_map__type: { parameters: ["pointer"], result: "i32" },
  bpf_map__key_size: { parameters: ["pointer"], result: "u32" },
  bpf_map__value_size: { parameters: ["pointer"], result: "u32" },
  bpf_map__max_entries: { parameters: ["pointer"], result: "u32" },
  bpf_map__is_internal: { parameters: ["pointer"], result: "bool" },
  bpf_map__reuse_fd: { parameters: ["pointer", "i32"], result: "i32" },
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" },
  bpf_map__set_pin_path: { parameters: ["pointer", "buffer"], result: "i32" },
  bpf_map__set_initial_value: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  bpf_map__initial_value: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_program__name: { parameters: ["pointer"], result: "pointer" },
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  bpf_program__set_autoload: { parameters: ["pointer", "bool"], result: "i32" },
  btf__find_by_name_kind: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  btf__type_by_id: { parameters: ["pointer", "u32"], result: "pointer" },
  btf__name_by_offset: { parameters: ["pointer", "u32"], result: "pointer" },
  bpf_map_update_elem: { parameters: ["i32", "buffer", "buffer", "u64"], result: "i32" },
  bpf_map_lookup_elem: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_map_get_next_key: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  bpf_map_update_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  bpf_map_delete_batch: { parameters: ["i32", "buffer", "buffer", "buffer"], result: "i32" },
  bpf_xdp_attach: { parameters: ["i32", "i32", "u32", "buffer"], result: "i32" },
  bpf_xdp_detach: { parameters: ["i32", "u32", "buffer"], result: "i32" },
  bpf_xdp_query: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  bpf_tc_hook_create: { parameters: ["buffer"], result: "i32" },
  bpf_tc_hook_destroy: { parameters: ["buffer"], result: "i32" },
  bpf_tc_attach: { parameters: ["buffer", "buffer"], result: "i32" },
  bpf_tc_detach: { parameters: ["buffer", "buffer"], result: "i32" },
  bpf_tc_query: { parameters: ["buffer", "buffer"], result: "i32" },
  ring_buffer__new: { parameters: ["i32", "function", "pointer", "buffer"], result: "pointer" },
  ring_buffer__consume: { parameters: ["pointer"], result: "i32" },
  ring_buffer__epoll_fd: { parameters: ["pointer"], result: "i32" },
  ring_buffer__free: { parameters: ["pointer"], result: "void" },
  bpf_prog_test_run_opts: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_prog_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  bpf_map_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  bpf_obj_get_info_by_fd: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  bpf_obj_pin: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_obj_get: { parameters: ["buffer"], result: "i32" },
  bpf_link_create: { parameters: ["i32", "i32", "u32", "buffer"], result: "i32" },
  bpf_link_update: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  bpf_link_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  bpf_link_get_next_id: { parameters: ["u32", "buffer"], result: "i32" },
} as const;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const PRINT_DEF = { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const;

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;
// Kept referenced forever: libbpf holds its address.
let printCallback: Deno.UnsafeCallback<typeof PRINT_DEF> | null = null;

/** A libbpf log level. */
export type LibbpfLogLevel = "warn" | "info" | "debug";
/** Receives each line libbpf logs (without the trailing newline). */
export type LibbpfLogSink = (level: LibbpfLogLevel, line: string) => void;

const LEVELS: readonly LibbpfLogLevel[] = ["warn", "info", "debug"];
let sink: LibbpfLogSink | null = null;
let wantDebug = false;
/** Lines logged since the current wrapped call began. */
let captured: string[] = [];

function onPrint(level: number, fmt: Deno.PointerValue, ap: Deno.PointerValue): number {
  const name = LEVELS[level] ?? "debug";
  if (name === "debug" && !wantDebug) return 0;
  if (!fmt || !ap) return 0;
  const text = formatVaList(fmt, ap);
  const lines = text.replace(/\n$/, "").split("\n");
  for (const line of lines) {
    captured.push(line);
    sink?.(name, line);
  }
  return text.length;
}

function bpf(): Symbols {
  if (!lib) {
    lib = Deno.dlopen("libbpf.so.1", SYMBOLS);
    printCallback = new Deno.UnsafeCallback(PRINT_DEF, onPrint);
    lib.symbols.libbpf_set_print(printCallback.pointer);
  }
  return lib.symbols;
}

/**
 * Routes libbpf's log to `fn` (null: nowhere; the default). Whatever the sink,
 * the lines logged during a failed call are attached to its BpfError.
 * `debug` also captures libbpf's (verbose) debug level.
 */
export function setLibbpfLogger(fn: LibbpfLogSink | null, opts: { debug?: boolean } = {}): void {
  sink = fn;
  wantDebug = opts.debug ?? false;
}

/** libbpf_strerror(): knows libbpf's own error numbers (4000+) as well as errno. */
export function libbpfStrerror(err: number): string {
  const buf = new Uint8Array(256);
  bpf().libbpf_strerror(Math.abs(err), buf, BigInt(buf.length));
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

function bpfError(op: string, err: number): BpfError {
  const e = Math.abs(err);
  return new BpfError(op, e, libbpfStrerror(e), captured);
}

/** The symbols, with a fresh log capture for the call about to be made. */
function begin(): Symbols {
  const sym = bpf();
  captured = [];
  return sym;
}

/** Runs an int-returning libbpf call; libbpf 1.x returns -errno on failure. */
function call(op: string, f: (sym: Symbols) => number): number {
  const ret = f(begin());
  if (ret < 0) throw bpfError(op, ret);
  return ret;
}

/** Runs a pointer-returning libbpf call; NULL means failure, errno says why. */
function callPtr(op: string, f: (sym: Symbols) => Deno.PointerValue): Deno.PointerObject {
  const ret = f(begin());
  if (ret === null) throw bpfError(op, errno() || 22);
  return ret;
}

function pointerValue(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

function cStringAt(p: Deno.PointerValue): string {
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}

/** A byte buffer with its own off-heap memory, so its address is stable. */
function stableBytes(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(n));
}

const INTERNAL = Symbol("libbpf handle");

// ---------------------------------------------------------------------------
// Objects.

/** A variable of a BTF data section (.rodata, .data, .bss). */
export interface SectionVar {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

/** Options of {@link BpfObject.openMem}. */
export interface OpenOptions {
  /** The object's name; default "tinyfw". */
  name?: string;
  /** Kernel log level for program loads (1, 2, 4 = statistics; OR-able); default 0. */
  kernelLogLevel?: number;
  /** Size of the kernel log buffer; default 1 MiB. */
  kernelLogSize?: number;
}

/** A bpf_object opened from ELF bytes (bpf_object__open_mem). */
export class BpfObject {
  #ptr: Deno.PointerObject | null;
  // libbpf reads the ELF (and stores the name pointer) until the object is closed.
  readonly #keepAlive: Uint8Array[];
  #log: Uint8Array | null = null;

  private constructor(ptr: Deno.PointerObject, keepAlive: Uint8Array[]) {
    this.#ptr = ptr;
    this.#keepAlive = keepAlive;
  }

  /**
   * Opens an object from ELF bytes. `name` names it (and prefixes its .rodata
   * map's kernel name). `kernelLogLevel` (1: verifier log, 2: verbose, 4:
   * statistics) makes the kernel log every program load into a buffer of
   * `kernelLogSize` bytes (default 1 MiB), read back with {@link kernelLog}.
   */
  static openMem(elf: Uint8Array, opts: OpenOptions = {}): BpfObject {
    const bytes = stableBytes(elf.length);
    bytes.set(elf);
    const nameBuf = cString(opts.name ?? "tinyfw");
    const keep: Uint8Array[] = [bytes, nameBuf];
    const buf = stableBytes(80); // struct bpf_object_open_opts
    const view = new DataView(buf.buffer);
    view.setBigUint64(0, 80n, true); // sz
    view.setBigUint64(8, pointerValue(nameBuf), true); // object_name
    let log: Uint8Array<ArrayBuffer> | null = null;
    if (opts.kernelLogLevel) {
      log = stableBytes(opts.kernelLogSize ?? 1 << 20);
      view.setBigUint64(56, pointerValue(log), true); // kernel_log_buf
      view.setBigUint64(64, BigInt(log.length), true); // kernel_log_size
      view.setUint32(72, opts.kernelLogLevel, true); // kernel_log_level
      keep.push(log);
    }
    keep.push(buf);
    const ptr = callPtr(
      "bpf_object__open_mem",
      (s) => s.bpf_object__open_mem(bytes, BigInt(bytes.length), buf),
    );
    const obj = new BpfObject(ptr, keep);
    obj.#log = log;
    return obj;
  }

  /** The kernel's log of the last program load, if `kernelLogLevel` was set. */
  kernelLog(): string {
    if (!this.#log) return "";
    const end = this.#log.indexOf(0);
    return new TextDecoder().decode(this.#log.subarray(0, end < 0 ? this.#log.length : end));
  }

  get #p(): Deno.PointerObject {
    if (!this.#ptr) throw new Error("bpf_object is closed");
    return this.#ptr;
  }

  /** Every map of the object, internal ones (.rodata, .bss...) included. */
  maps(): BpfObjectMap[] {
    const out: BpfObjectMap[] = [];
    for (
      let m = bpf().bpf_object__next_map(this.#p, null);
      m;
      m = bpf().bpf_object__next_map(this.#p, m)
    ) {
      out.push(new BpfObjectMap(INTERNAL, m, this));
    }
    return out;
  }

  /** The map named `name` (".rodata" finds the read-only data map), or null. */
  findMap(name: string): BpfObjectMap | null {
    const m = bpf().bpf_object__find_map_by_name(this.#p, cString(name));
    return m ? new BpfObjectMap(INTERNAL, m, this) : null;
  }

  /** Every program of the object. */
  programs(): BpfObjectProgram[] {
    const out: BpfObjectProgram[] = [];
    const s = bpf();
    for (
      let p = s.bpf_object__next_program(this.#p, null);
      p;
      p = s.bpf_object__next_program(this.#p, p)
    ) {
      out.push(new BpfObjectProgram(INTERNAL, p, this));
    }
    return out;
  }

  /** The program whose C function is `name`, or null. */
  findProgram(name: string): BpfObjectProgram | null {
    const p = bpf().bpf_object__find_program_by_name(this.#p, cString(name));
    return p ? new BpfObjectProgram(INTERNAL, p, this) : null;
  }

  /**
   * The variables of a data section (e.g. ".rodata") with their offsets, read
   * from the object's BTF. Empty when the object has no BTF or no such section.
   */
  sectionVars(section: string): SectionVar[] {
    const s = bpf();
    const btf = s.bpf_object__btf(this.#p);
    if (!btf) return [];
    const id = s.btf__find_by_name_kind(btf, cString(section), BTF_KIND_DATASEC);
    if (id < 0) return [];
    const sec = new Deno.UnsafePointerView(s.btf__type_by_id(btf, id)!);
    // struct btf_type { u32 name_off; u32 info; u32 size; } then vlen btf_var_secinfo
    const vlen = sec.getUint32(4) & 0xffff;
    const vars: SectionVar[] = [];
    for (let i = 0; i < vlen; i++) {
      const at = 12 + i * 12; // struct btf_var_secinfo { u32 type; u32 offset; u32 size; }
      const t = s.btf__type_by_id(btf, sec.getUint32(at));
      if (!t) continue;
      const tv = new Deno.UnsafePointerView(t);
      if (((tv.getUint32(4) >>> 24) & 0x1f) !== BTF_KIND_VAR) continue;
      vars.push({
        name: cStringAt(s.btf__name_by_offset(btf, tv.getUint32(0))),
        offset: sec.getUint32(at + 4),
        size: sec.getUint32(at + 8),
      });
    }
    return vars;
  }

  /** bpf_object__load: creates (or reuses) the maps, loads the enabled programs. */
  load(): void {
    try {
      call("bpf_object__load", (s) => s.bpf_object__load(this.#p));
    } catch (e) {
      // With a log buffer of ours, libbpf does not print the verifier's log: add it.
      const log = this.kernelLog();
      if (!(e instanceof BpfError) || !log) throw e;
      const lines = ["-- BEGIN PROG LOAD LOG --", ...log.replace(/\n$/, "").split("\n")];
      throw new BpfError(e.op, e.errno, e.description, [
        ...e.log,
        ...lines,
        "-- END PROG LOAD LOG --",
      ]);
    }
  }

  /** Closes the object: its programs and maps are released unless held elsewhere. */
  close(): void {
    if (!this.#ptr) return;
    bpf().bpf_object__close(this.#ptr);
    this.#ptr = null;
    this.#keepAlive.length = 0;
  }

  /** @internal for BpfObjectMap/BpfObjectProgram: the live pointer. */
  [INTERNAL](): Deno.PointerObject {
    return this.#p;
  }
}

/** A map of a {@link BpfObject}; valid while the object is open. */
export class BpfObjectMap {
  readonly #ptr: Deno.PointerObject;
  readonly #obj: BpfObject;
  /** The map's name (".rodata" for the read-only data map). */
  readonly name: string;

  /** @internal */
  constructor(token: typeof INTERNAL, ptr: Deno.PointerObject, obj: BpfObject) {
    if (token !== INTERNAL) throw new TypeError("BpfObjectMap is made by BpfObject");
    this.#ptr = ptr;
    this.#obj = obj;
    this.name = cStringAt(bpf().bpf_map__name(ptr));
  }

  get #p(): Deno.PointerObject {
    this.#obj[INTERNAL](); // throws once the object is closed
    return this.#ptr;
  }

  /** The map's fd once the object is loaded (or a fd was reused), else -1. */
  get fd(): number {
    const fd = bpf().bpf_map__fd(this.#p);
    return fd < 0 ? -1 : fd;
  }
  /** enum bpf_map_type. */
  get type(): number {
    return bpf().bpf_map__type(this.#p);
  }
  get keySize(): number {
    return bpf().bpf_map__key_size(this.#p);
  }
  get valueSize(): number {
    return bpf().bpf_map__value_size(this.#p);
  }
  get maxEntries(): number {
    return bpf().bpf_map__max_entries(this.#p);
  }
  /** True for the maps libbpf makes from data sections (.rodata, .data, .bss, .kconfig). */
  get isInternal(): boolean {
    return bpf().bpf_map__is_internal(this.#p);
  }

  /** Before load: use the existing map `fd` (libbpf dups it) instead of creating one. */
  reuseFd(fd: number): void {
    call(`bpf_map__reuse_fd ${this.name}`, (s) => s.bpf_map__reuse_fd(this.#p, fd));
  }

  /** Before load: the map's capacity. */
  setMaxEntries(n: number): void {
    call(`bpf_map__set_max_entries ${this.name}`, (s) => s.bpf_map__set_max_entries(this.#p, n));
  }

  /**
   * Before load: pin the map at `path` (libbpf reuses a compatible map already
   * pinned there, else creates and pins it; an incompatible one fails the load).
   */
  setPinPath(path: string | null): void {
    call(
      `bpf_map__set_pin_path ${this.name}`,
      (s) => s.bpf_map__set_pin_path(this.#p, path === null ? null : cString(path)),
    );
  }

  /** A copy of a data-section map's initial contents, or null for other maps. */
  initialValue(): Uint8Array | null {
    const size = new BigUint64Array(1);
    const p = bpf().bpf_map__initial_value(this.#p, new Uint8Array(size.buffer));
    if (!p) return null;
    const out = new Uint8Array(Number(size[0]));
    new Deno.UnsafePointerView(p).copyInto(out);
    return out;
  }

  /** Before load: a data-section map's contents (exactly the map's value size; libbpf copies). */
  setInitialValue(bytes: Uint8Array): void {
    const copy = stableBytes(bytes.length);
    copy.set(bytes);
    call(
      `bpf_map__set_initial_value ${this.name}`,
      (s) => s.bpf_map__set_initial_value(this.#p, copy, BigInt(copy.length)),
    );
  }
}

/** A program of a {@link BpfObject}; valid while the object is open. */
export class BpfObjectProgram {
  readonly #ptr: Deno.PointerObject;
  readonly #obj: BpfObject;
  /** The program's name (its C function name). */
  readonly name: string;

  /** @internal */
  constructor(token: typeof INTERNAL, ptr: Deno.PointerObject, obj: BpfObject) {
    if (token !== INTERNAL) throw new TypeError("BpfObjectProgram is made by BpfObject");
    this.#ptr = ptr;
    this.#obj = obj;
    this.name = cStringAt(bpf().bpf_program__name(ptr));
  }

  get #p(): Deno.PointerObject {
    this.#obj[INTERNAL]();
    return this.#ptr;
  }

  /** The program's fd once loaded, else -1. */
  get fd(): number {
    const fd = bpf().bpf_program__fd(this.#p);
    return fd < 0 ? -1 : fd;
  }

  /** Before load: whether bpf_object__load loads this program (default true). */
  setAutoload(on: boolean): void {
    call(`bpf_program__set_autoload ${this.name}`, (s) => s.bpf_program__set_autoload(this.#p, on));
  }
}

// ---------------------------------------------------------------------------
// Map elements (by fd). Buffers must have the map's key/value sizes (per-CPU
// values: round_up(value_size, 8) * possible CPUs).

/** bpf_map_lookup_elem into `value`; false if the key is absent (ENOENT). */
export function mapLookupElem(
  fd: number,
  key: Uint8Array<ArrayBuffer>,
  value: Uint8Array<ArrayBuffer>,
): boolean {
  const ret = begin().bpf_map_lookup_elem(fd, key, value);
  if (ret === -2) return false;
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
  if (ret === -2) return false;
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
  if (ret === -2) return false;
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
  const buf = new Uint8Array(24);
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, 24n, true);
  view.setBigUint64(8, BigInt(o.elemFlags ?? 0), true);
  view.setBigUint64(16, BigInt(o.flags ?? 0), true);
  return buf;
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
  return new BatchError(op, e, libbpfStrerror(e), captured, done);
}

// ---------------------------------------------------------------------------
// XDP.

function xdpAttachOpts(oldProgFd: number | undefined): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(16); // struct bpf_xdp_attach_opts
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, 16n, true);
  view.setInt32(8, oldProgFd ?? 0, true);
  return buf;
}

/** bpf_xdp_attach (netlink; the attachment outlives the process). */
export function xdpAttach(
  ifindex: number,
  progFd: number,
  flags: number,
  oldProgFd?: number,
): void {
  call(
    `bpf_xdp_attach ifindex ${ifindex}`,
    (s) => s.bpf_xdp_attach(ifindex, progFd, flags, xdpAttachOpts(oldProgFd)),
  );
}

/** bpf_xdp_detach; with XDP_FLAGS_REPLACE and `oldProgFd`, only if that program is attached. */
export function xdpDetach(ifindex: number, flags: number, oldProgFd?: number): void {
  call(
    `bpf_xdp_detach ifindex ${ifindex}`,
    (s) => s.bpf_xdp_detach(ifindex, flags, xdpAttachOpts(oldProgFd)),
  );
}

/** What bpf_xdp_query reports (0 = no program). */
export interface XdpQueryResult {
  /** The program id when exactly one mode is attached. */
  progId: number;
  drvProgId: number;
  hwProgId: number;
  skbProgId: number;
  /** XDP_ATTACHED_* (lib/netlink/constants.ts names them). */
  attachMode: number;
}

/** bpf_xdp_query. */
export function xdpQuery(ifindex: number, flags = 0): XdpQueryResult {
  const buf = new Uint8Array(32); // struct bpf_xdp_query_opts
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, 32n, true);
  call(`bpf_xdp_query ifindex ${ifindex}`, (s) => s.bpf_xdp_query(ifindex, flags, buf));
  return {
    progId: view.getUint32(8, true),
    drvProgId: view.getUint32(12, true),
    hwProgId: view.getUint32(16, true),
    skbProgId: view.getUint32(20, true),
    attachMode: view.getUint8(24),
  };
}

// ---------------------------------------------------------------------------
// tc (clsact) hooks and BPF filters, through libbpf's netlink calls. Each acts
// in the network namespace of the calling thread.

/** Where a tc hook is: an interface and ingress/egress (BPF_TC_*) of its clsact qdisc. */
export interface TcHook {
  ifindex: number;
  /** BPF_TC_INGRESS or BPF_TC_EGRESS (BPF_TC_INGRESS | BPF_TC_EGRESS: the whole qdisc). */
  attachPoint: number;
}

/** A BPF filter on a tc hook: its handle and priority (1..65535) identify it. */
export interface TcFilterId {
  handle: number;
  priority: number;
}

function tcHook(h: TcHook): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(24); // struct bpf_tc_hook
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, 24n, true); // sz
  view.setInt32(8, h.ifindex, true); // ifindex
  view.setUint32(12, h.attachPoint, true); // attach_point
  return buf; // parent @16 stays 0: the clsact qdisc's own
}

function tcOpts(
  o: { progFd?: number; flags?: number; handle?: number; priority?: number },
): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(32); // struct bpf_tc_opts
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, 32n, true); // sz
  view.setInt32(8, o.progFd ?? 0, true); // prog_fd
  view.setUint32(12, o.flags ?? 0, true); // flags
  view.setUint32(20, o.handle ?? 0, true); // handle
  view.setUint32(24, o.priority ?? 0, true); // priority
  return buf;
}

/**
 * bpf_tc_hook_create: adds a clsact qdisc to the interface. Returns true if it
 * was created, false if one was there already (EEXIST).
 */
export function tcHookCreate(hook: TcHook): boolean {
  const ret = begin().bpf_tc_hook_create(tcHook(hook));
  if (ret === -17) return false;
  if (ret < 0) throw bpfError(`bpf_tc_hook_create ifindex ${hook.ifindex}`, ret);
  return true;
}

/**
 * bpf_tc_hook_destroy. With attachPoint BPF_TC_INGRESS | BPF_TC_EGRESS it
 * deletes the clsact qdisc (and every filter on it); with one of them, it
 * deletes every filter of that hook.
 */
export function tcHookDestroy(hook: TcHook): void {
  call(
    `bpf_tc_hook_destroy ifindex ${hook.ifindex}`,
    (s) => s.bpf_tc_hook_destroy(tcHook(hook)),
  );
}

/**
 * bpf_tc_attach: a direct-action BPF filter running `progFd` on the hook.
 * `handle`/`priority` 0 let the kernel choose; with `replace` an existing
 * filter of that handle and priority is replaced, else one there fails EEXIST.
 * Returns the filter's handle and priority and the program id.
 */
export function tcAttach(
  hook: TcHook,
  opts: { progFd: number; handle?: number; priority?: number; replace?: boolean },
): TcFilterId & { progId: number } {
  const o = tcOpts({
    progFd: opts.progFd,
    handle: opts.handle,
    priority: opts.priority,
    flags: opts.replace ? BPF_TC_F_REPLACE : 0,
  });
  call(`bpf_tc_attach ifindex ${hook.ifindex}`, (s) => s.bpf_tc_attach(tcHook(hook), o));
  const view = new DataView(o.buffer);
  return {
    progId: view.getUint32(16, true),
    handle: view.getUint32(20, true),
    priority: view.getUint32(24, true),
  };
}

/** bpf_tc_detach: deletes the BPF filter `id` of the hook (ENOENT if there is none). */
export function tcDetach(hook: TcHook, id: TcFilterId): void {
  call(
    `bpf_tc_detach ifindex ${hook.ifindex}`,
    (s) => s.bpf_tc_detach(tcHook(hook), tcOpts(id)),
  );
}

/** bpf_tc_query: the id of the program of BPF filter `id`, or null if there is no such filter. */
export function tcQuery(hook: TcHook, id: TcFilterId): number | null {
  const o = tcOpts(id);
  const ret = begin().bpf_tc_query(tcHook(hook), o);
  if (ret === -2 || ret === -22) {
    // ENOENT: no filter there; EINVAL: no clsact qdisc at all (the kernel's answer).
    return null;
  }
  if (ret < 0) throw bpfError(`bpf_tc_query ifindex ${hook.ifindex}`, ret);
  return new DataView(o.buffer).getUint32(16, true);
}

// ---------------------------------------------------------------------------
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
    const opts = new Uint8Array(8); // struct ring_buffer_opts { size_t sz; }
    new DataView(opts.buffer).setBigUint64(0, 8n, true);
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

// ---------------------------------------------------------------------------
// Test runs, info, ids, pins.

/** Input of {@link progTestRun}. */
export interface TestRunInput {
  data: Uint8Array;
  /** Runs (BPF_PROG_TEST_RUN repeat); default 1. */
  repeat?: number;
  /** Room for the output packet; default data.length + 4096. */
  dataOutSize?: number;
}

/** Output of {@link progTestRun}. */
export interface TestRunOutput {
  retval: number;
  /** Mean run time per repetition, in nanoseconds (the kernel's `duration`). */
  duration: number;
  dataOut: Uint8Array;
}

/** bpf_prog_test_run_opts (BPF_PROG_TEST_RUN) of the program `fd` on a packet. */
export function progTestRun(fd: number, input: TestRunInput): TestRunOutput {
  const dataIn = stableBytes(input.data.length);
  dataIn.set(input.data);
  const dataOut = stableBytes(input.dataOutSize ?? input.data.length + 4096);
  const opts = stableBytes(80); // struct bpf_test_run_opts
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 80n, true);
  view.setBigUint64(8, pointerValue(dataIn), true);
  view.setBigUint64(16, pointerValue(dataOut), true);
  view.setUint32(24, dataIn.length, true);
  view.setUint32(28, dataOut.length, true);
  view.setUint32(60, input.repeat ?? 1, true);
  call("bpf_prog_test_run_opts", (s) => s.bpf_prog_test_run_opts(fd, opts));
  return {
    retval: view.getUint32(56, true),
    duration: view.getUint32(64, true),
    dataOut: dataOut.slice(0, view.getUint32(28, true)),
  };
}

/** bpf_prog_get_fd_by_id: a new (close-on-exec) fd for a loaded program. */
export function progGetFdById(id: number): number {
  return call(`bpf_prog_get_fd_by_id ${id}`, (s) => s.bpf_prog_get_fd_by_id(id));
}

/** bpf_map_get_fd_by_id: a new (close-on-exec) fd for a map. */
export function mapGetFdById(id: number): number {
  return call(`bpf_map_get_fd_by_id ${id}`, (s) => s.bpf_map_get_fd_by_id(id));
}

/** The parts of struct bpf_prog_info tinyfw reads. */
export interface ProgInfo {
  /** enum bpf_prog_type (BPF_PROG_TYPE_XDP = 6). */
  type: number;
  id: number;
  /** The program's tag, 16 hex digits (as bpftool prints it). */
  tag: string;
  /** Up to 15 characters of the program's name. */
  name: string;
  /** Ids of the maps the program uses. */
  mapIds: number[];
}

function infoByFd(op: string, fd: number, info: Uint8Array<ArrayBuffer>): void {
  const len = new Uint32Array([info.length]);
  call(op, (s) => s.bpf_obj_get_info_by_fd(fd, info, new Uint8Array(len.buffer)));
}

function nameAt(bytes: Uint8Array, at: number, max: number): string {
  const field = bytes.subarray(at, at + max);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

/** bpf_obj_get_info_by_fd on a program fd. */
export function progInfo(fd: number): ProgInfo {
  let mapIds = new Uint32Array(32);
  for (;;) {
    const info = stableBytes(232); // struct bpf_prog_info (linux 6.1 headers)
    const view = new DataView(info.buffer);
    const ids = new Uint8Array(mapIds.buffer);
    view.setUint32(52, mapIds.length, true); // nr_map_ids
    view.setBigUint64(56, pointerValue(ids), true); // map_ids
    infoByFd("bpf_obj_get_info_by_fd (program)", fd, info);
    const nrMaps = view.getUint32(52, true);
    if (nrMaps > mapIds.length) {
      mapIds = new Uint32Array(new ArrayBuffer(nrMaps * 4));
      continue;
    }
    return {
      type: view.getUint32(0, true),
      id: view.getUint32(4, true),
      tag: Array.from(info.subarray(8, 16), (b) => b.toString(16).padStart(2, "0")).join(""),
      name: nameAt(info, 64, 16),
      mapIds: Array.from(mapIds.subarray(0, nrMaps)),
    };
  }
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
  const info = new Uint8Array(88); // struct bpf_map_info
  const view = new DataView(info.buffer);
  infoByFd("bpf_obj_get_info_by_fd (map)", fd, info);
  return {
    type: view.getUint32(0, true),
    id: view.getUint32(4, true),
    keySize: view.getUint32(8, true),
    valueSize: view.getUint32(12, true),
    maxEntries: view.getUint32(16, true),
    flags: view.getUint32(20, true),
    name: nameAt(info, 24, 16),
  };
}

/** bpf_obj_pin: pins a map/program/link fd at a bpffs path. */
export function objPin(fd: number, path: string): void {
  call(`bpf_obj_pin ${path}`, (s) => s.bpf_obj_pin(fd, cString(path)));
}

/** bpf_obj_get: a new fd for the object pinned at `path`. */
export function objGet(path: string): number {
  return call(`bpf_obj_get ${path}`, (s) => s.bpf_obj_get(cString(path)));
}

// ---------------------------------------------------------------------------
// BPF links: an attachment held by an fd (and by its pins), gone with the last.

/** enum bpf_attach_type BPF_XDP. */
export const BPF_XDP = 37;
/** enum bpf_link_type BPF_LINK_TYPE_XDP. */
export const BPF_LINK_TYPE_XDP = 6;
/** BPF_F_REPLACE: bpf_link_update only if the link runs `old_prog_fd`. */
export const BPF_F_REPLACE = 4;

/**
 * bpf_link_create for XDP: attaches `progFd` on `ifindex` (in the calling
 * thread's network namespace) with `flags` (XDP_FLAGS_SKB_MODE/DRV_MODE), and
 * returns the link's fd.
 */
export function linkCreateXdp(progFd: number, ifindex: number, flags: number): number {
  const opts = new Uint8Array(64); // struct bpf_link_create_opts (sz, flags, ...; the rest zero)
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 64n, true);
  view.setUint32(8, flags, true);
  return call(
    `bpf_link_create (XDP) ifindex ${ifindex}`,
    (s) => s.bpf_link_create(progFd, ifindex, BPF_XDP, opts),
  );
}

/**
 * bpf_link_update: the link runs `newProgFd` from now on, atomically. With
 * `oldProgFd`, only if it runs that program now (else EPERM).
 */
export function linkUpdate(linkFd: number, newProgFd: number, oldProgFd?: number): void {
  const opts = new Uint8Array(16); // struct bpf_link_update_opts
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 16n, true);
  if (oldProgFd !== undefined) {
    view.setUint32(8, BPF_F_REPLACE, true);
    view.setUint32(12, oldProgFd, true);
  }
  call(`bpf_link_update link fd ${linkFd}`, (s) => s.bpf_link_update(linkFd, newProgFd, opts));
}

/** bpf_link_get_fd_by_id: a new (close-on-exec) fd for a link. */
export function linkGetFdById(id: number): number {
  return call(`bpf_link_get_fd_by_id ${id}`, (s) => s.bpf_link_get_fd_by_id(id));
}

/** Every link id in the kernel (bpf_link_get_next_id), in order. */
export function linkIds(): number[] {
  const ids: number[] = [];
  const next = new Uint32Array(1);
  const out = new Uint8Array(next.buffer);
  let id = 0;
  for (;;) {
    const ret = bpf().bpf_link_get_next_id(id, out);
    if (ret !== 0) break; // -ENOENT at the end
    id = next[0];
    ids.push(id);
  }
  return ids;
}

/** The parts of struct bpf_link_info tinyfw reads. */
export interface LinkInfo {
  /** enum bpf_link_type (XDP: 6). */
  type: number;
  id: number;
  progId: number;
  /** XDP links: the interface; 0 once the interface is gone (the link is defunct). */
  ifindex: number;
}

/** bpf_obj_get_info_by_fd on a link fd. */
export function linkInfo(fd: number): LinkInfo {
  const info = new Uint8Array(64); // struct bpf_link_info: type, id, prog_id, union @16
  const view = new DataView(info.buffer);
  infoByFd("bpf_obj_get_info_by_fd (link)", fd, info);
  const type = view.getUint32(0, true);
  return {
    type,
    id: view.getUint32(4, true),
    progId: view.getUint32(8, true),
    ifindex: type === BPF_LINK_TYPE_XDP ? view.getUint32(16, true) : 0,
  };
}
