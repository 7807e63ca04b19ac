/**
 * bpf_object life cycle from ELF bytes: open, size and reuse maps, set
 * initial values, load, and the handles of its maps and programs.
 *
 * @module
 */

import { cString } from "../libc.ts";
import { BpfError } from "../errors.ts";
import { StructBuffer, STRUCTS } from "./structs.ts";
import { bpf, call, callPtr, cStringAt, INTERNAL, pointerValue, stableBytes } from "./symbols.ts";

const BTF_KIND_VAR = 14;
const BTF_KIND_DATASEC = 15;

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
    const o = new StructBuffer(STRUCTS.bpf_object_open_opts, { stable: true })
      .setU64("object_name", pointerValue(nameBuf));
    let log: Uint8Array<ArrayBuffer> | null = null;
    if (opts.kernelLogLevel) {
      log = stableBytes(opts.kernelLogSize ?? 1 << 20);
      o.setU64("kernel_log_buf", pointerValue(log))
        .setU64("kernel_log_size", BigInt(log.length))
        .setU32("kernel_log_level", opts.kernelLogLevel);
      keep.push(log);
    }
    keep.push(o.bytes);
    const ptr = callPtr(
      "bpf_object__open_mem",
      (s) => s.bpf_object__open_mem(bytes, BigInt(bytes.length), o.bytes),
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
