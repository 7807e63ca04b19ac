/**
 * libbpf.so.1 opened through Deno FFI (on first use): the symbols tinyfw
 * calls, libbpf's log routed to a sink and captured per call, and the
 * helpers every wrapper shares (errors carrying errno, libbpf's message and
 * the lines it logged; stable buffers; C strings).
 *
 * @module
 */

import { BpfError } from "../errors.ts";
import { errno, formatVaList } from "../libc.ts";
import { EINVAL } from "../errno.ts";

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

export type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

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

export function bpf(): Symbols {
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

export function bpfError(op: string, err: number): BpfError {
  const e = Math.abs(err);
  return new BpfError(op, e, libbpfStrerror(e), captured);
}

/** The lines libbpf logged since the current call began. */
export function capturedLog(): string[] {
  return captured;
}

/** The symbols, with a fresh log capture for the call about to be made. */
export function begin(): Symbols {
  const sym = bpf();
  captured = [];
  return sym;
}

/** Runs an int-returning libbpf call; libbpf 1.x returns -errno on failure. */
export function call(op: string, f: (sym: Symbols) => number): number {
  const ret = f(begin());
  if (ret < 0) throw bpfError(op, ret);
  return ret;
}

/** Runs a pointer-returning libbpf call; NULL means failure, errno says why. */
export function callPtr(op: string, f: (sym: Symbols) => Deno.PointerValue): Deno.PointerObject {
  const ret = f(begin());
  if (ret === null) throw bpfError(op, errno() || EINVAL);
  return ret;
}

export function pointerValue(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

export function cStringAt(p: Deno.PointerValue): string {
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}

/** A byte buffer with its own off-heap memory, so its address is stable. */
export function stableBytes(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(n));
}

export const INTERNAL = Symbol("libbpf handle");

export function infoByFd(op: string, fd: number, info: Uint8Array<ArrayBuffer>): void {
  const len = new Uint32Array([info.length]);
  call(op, (s) => s.bpf_obj_get_info_by_fd(fd, info, new Uint8Array(len.buffer)));
}

/** The C string at the start of `field` (a char array): up to its first NUL. */
export function cStringIn(field: Uint8Array): string {
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}
