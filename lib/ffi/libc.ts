/**
 * The libc calls tinyfw needs (sockets, namespaces, errno), as small typed
 * wrappers that throw {@link SysError} on failure. Callers see numbers and
 * byte arrays only: pointers stay inside `lib/ffi`.
 *
 * libc is opened on first use, so importing this module needs no permission.
 *
 * errno is read from `__errno_location()` right after each synchronous call.
 * Deno runs synchronous FFI calls on the JS thread, so errno is that thread's
 * and still holds the call's value. errno is thread-local: a symbol declared
 * `nonblocking: true` runs on a Deno worker thread, and reading errno after it
 * yields the JS thread's errno, not the call's (checked: a timed-out
 * nonblocking recv left the JS thread's earlier EBADF in place of EAGAIN).
 * So the only nonblocking call here is the poll() behind {@link waitReadable},
 * which reports readiness through `revents` (without consuming a pending
 * socket error such as ENOBUFS) and re-checks a failure synchronously; every
 * recv, send and the like stays synchronous on the JS thread. To read without
 * blocking the event loop, await {@link waitReadable}, then recv with
 * MSG_DONTWAIT (as {@link recvAsync} does).
 *
 * @module
 */

import { SysError } from "./errors.ts";
import { EAGAIN, EINTR } from "./errno.ts";

export { SysError } from "./errors.ts";

/** Address families, socket types and flags (Linux x86-64 values). */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_RCVBUFFORCE = 33;
/** struct timeval options: set them with {@link setsockoptTimeval}. */
export const SO_RCVTIMEO = 20;
export const SO_SNDTIMEO = 21;
export const MSG_PEEK = 0x2;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
/** open() flags. */
export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;
/** setns()/unshare() namespace type. */
export const CLONE_NEWNET = 0x40000000;

const POLLIN = 0x1;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  vsnprintf: { parameters: ["buffer", "usize", "pointer", "buffer"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"],
    result: "isize",
  },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // open() is variadic; with O_CREAT absent the mode argument is never read, and
  // calling a variadic function with a fixed prototype is safe on x86-64.
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  unshare: { parameters: ["i32"], result: "i32" },
  getpid: { parameters: [], result: "i32" },
  gettid: { parameters: [], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  poll_nb: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  if_indextoname: { parameters: ["u32", "buffer"], result: "pointer" },
  statfs: { parameters: ["buffer", "buffer"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;
let errnoView: Deno.UnsafePointerView | null = null;

function libc(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  if (!lib) {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
    errnoView = new Deno.UnsafePointerView(lib.symbols.__errno_location()!);
  }
  return lib.symbols;
}

/** errno of the JS thread, as left by the last synchronous libc/libbpf call. */
export function errno(): number {
  libc();
  return errnoView!.getInt32();
}

/** strerror(errnum). */
export function strerror(errnum: number): string {
  const p = libc().strerror(errnum);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${errnum}`;
}

/** A {@link SysError} for `op` from the current errno (or the one given). */
export function sysError(op: string, errnum: number = errno()): SysError {
  return new SysError(op, errnum, strerror(errnum));
}

function check(op: string, ret: number | bigint): number {
  const n = Number(ret);
  if (n < 0) throw sysError(op);
  return n;
}

/** A NUL-terminated copy of `s`, in a buffer V8 never moves. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(new ArrayBuffer(bytes.length + 1));
  out.set(bytes);
  return out;
}

/**
 * Formats a printf format and x86-64 `va_list` (a pointer to a 24-byte
 * `__va_list_tag`) with vsnprintf. For libbpf's print callback; internal to
 * `lib/ffi`. The tag is copied before each use (va_copy is a plain struct copy
 * on x86-64), so a message longer than the first buffer can be formatted again.
 */
export function formatVaList(fmt: Deno.PointerObject, ap: Deno.PointerObject): string {
  const sym = libc();
  const tag = new Uint8Array(24);
  const source = new Deno.UnsafePointerView(ap);
  let buf = new Uint8Array(1024);
  for (let attempt = 0; attempt < 2; attempt++) {
    source.copyInto(tag);
    const n = sym.vsnprintf(buf, BigInt(buf.length), fmt, tag);
    if (n < 0) return Deno.UnsafePointerView.getCString(fmt);
    if (n < buf.length) return new TextDecoder().decode(buf.subarray(0, n));
    buf = new Uint8Array(n + 1);
  }
  return new TextDecoder().decode(buf.subarray(0, buf.length - 1));
}

// ---------------------------------------------------------------------------
// Sockets.

/** socket(2). Add SOCK_CLOEXEC to `type` unless the fd must survive exec. */
export function socket(domain: number, type: number, protocol: number): number {
  return check("socket", libc().socket(domain, type, protocol));
}

/** bind(2) to a raw sockaddr. */
export function bind(fd: number, addr: Uint8Array<ArrayBuffer>): void {
  check("bind", libc().bind(fd, addr, addr.length));
}

/** connect(2) to a raw sockaddr. */
export function connect(fd: number, addr: Uint8Array<ArrayBuffer>): void {
  check("connect", libc().connect(fd, addr, addr.length));
}

/** sendto(2); without `addr`, send(2). Returns the bytes sent. */
export function sendto(
  fd: number,
  data: Uint8Array,
  flags = 0,
  addr?: Uint8Array<ArrayBuffer>,
): number {
  const ret = libc().sendto(fd, data, BigInt(data.length), flags, addr ?? null, addr?.length ?? 0);
  return check("sendto", ret);
}

/**
 * recv(2) into `buf`. Returns the byte count (with MSG_TRUNC: the real size of
 * the datagram, which may exceed `buf.length`). Throws SysError, EAGAIN included.
 */
export function recv(fd: number, buf: Uint8Array<ArrayBuffer>, flags = 0): number {
  return check("recv", libc().recvfrom(fd, buf, BigInt(buf.length), flags, null, null));
}

/** recvfrom(2): the byte count and the sender's raw sockaddr. */
export function recvfrom(
  fd: number,
  buf: Uint8Array<ArrayBuffer>,
  flags = 0,
): { n: number; addr: Uint8Array } {
  const addr = new Uint8Array(128);
  const len = new Uint32Array([addr.length]);
  const n = check(
    "recvfrom",
    libc().recvfrom(fd, buf, BigInt(buf.length), flags, addr, new Uint8Array(len.buffer)),
  );
  return { n, addr: addr.slice(0, Math.min(len[0], addr.length)) };
}

/** Options of {@link recvAsync} and {@link waitReadable}. */
export interface WaitOptions {
  /** Give up after this long (resolves null / false); default: wait forever. */
  timeoutMs?: number;
  /** Abort the wait (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Waits until `fd` is readable without blocking the JS thread (poll(2) on a
 * worker thread, woken through an eventfd when `signal` aborts). Returns false
 * on timeout.
 */
export async function waitReadable(fd: number, opts: WaitOptions = {}): Promise<boolean> {
  const sym = libc();
  opts.signal?.throwIfAborted();
  const wake = check("eventfd", sym.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  const onAbort = () => sym.write(wake, new Uint8Array(new BigUint64Array([1n]).buffer), 8n);
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const fds = new Uint8Array(16);
    const view = new DataView(fds.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, POLLIN, true);
    view.setInt32(8, wake, true);
    view.setInt16(12, POLLIN, true);
    for (;;) {
      view.setInt16(6, 0, true);
      view.setInt16(14, 0, true);
      const n = await sym.poll_nb(fds, 2n, opts.timeoutMs ?? -1);
      opts.signal?.throwIfAborted();
      if (n > 0) return true;
      if (n === 0) return false;
      // errno of the worker thread is lost; a persistent error shows again here.
      const again = sym.poll(fds, 2n, 0);
      if (again < 0 && errno() !== EINTR) throw sysError("poll");
      if (again > 0) return true;
    }
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    sym.close(wake);
  }
}

/**
 * Receives one message without blocking the JS thread: waits for `fd` to be
 * readable, then recv(2)s with MSG_DONTWAIT (synchronously, so errno is
 * reliable). Returns null on timeout.
 */
export async function recvAsync(
  fd: number,
  buf: Uint8Array<ArrayBuffer>,
  opts: WaitOptions & { flags?: number } = {},
): Promise<number | null> {
  for (;;) {
    if (!await waitReadable(fd, opts)) return null;
    const n = Number(
      libc().recvfrom(fd, buf, BigInt(buf.length), (opts.flags ?? 0) | MSG_DONTWAIT, null, null),
    );
    if (n >= 0) return n;
    const e = errno();
    if (e !== EAGAIN && e !== EINTR) throw sysError("recv", e);
  }
}

/** setsockopt(2); a number is passed as a C int. */
export function setsockopt(
  fd: number,
  level: number,
  name: number,
  value: number | Uint8Array<ArrayBuffer>,
): void {
  const bytes = typeof value === "number" ? new Uint8Array(new Int32Array([value]).buffer) : value;
  check("setsockopt", libc().setsockopt(fd, level, name, bytes, bytes.length));
}

/**
 * setsockopt(2) of a struct timeval option (SO_RCVTIMEO, SO_SNDTIMEO), given
 * in milliseconds; 0 means never time out. A recv that times out throws
 * SysError EAGAIN.
 */
export function setsockoptTimeval(fd: number, level: number, name: number, ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`invalid timeout ${ms} ms`);
  const usec = Math.round(ms * 1000);
  const tv = new BigInt64Array([BigInt(Math.floor(usec / 1e6)), BigInt(usec % 1e6)]);
  setsockopt(fd, level, name, new Uint8Array(tv.buffer));
}

/** getsockopt(2) of a C int option. */
export function getsockoptInt(fd: number, level: number, name: number): number {
  const val = new Int32Array(1);
  const len = new Uint32Array([4]);
  check(
    "getsockopt",
    libc().getsockopt(
      fd,
      level,
      name,
      new Uint8Array(val.buffer),
      new Uint8Array(len.buffer),
    ),
  );
  return val[0];
}

/** getsockname(2): the socket's raw sockaddr. */
export function getsockname(fd: number): Uint8Array {
  const addr = new Uint8Array(128);
  const len = new Uint32Array([addr.length]);
  check("getsockname", libc().getsockname(fd, addr, new Uint8Array(len.buffer)));
  return addr.slice(0, Math.min(len[0], addr.length));
}

// ---------------------------------------------------------------------------
// Files and processes.

/** close(2). */
export function close(fd: number): void {
  check("close", libc().close(fd));
}

/** open(2) without O_CREAT (O_CLOEXEC is always added). */
export function open(path: string, flags = O_RDONLY): number {
  return check(`open ${path}`, libc().open(cString(path), flags | O_CLOEXEC));
}

/**
 * malloc_trim(3): gives the C heap's free memory back to the system. libbpf
 * allocates and frees a copy of the ELF and its BTF for every program
 * instance; glibc keeps what it freed unless asked.
 */
export function mallocTrim(): void {
  libc().malloc_trim(0n);
}

/** flock(2) operations. */
export const LOCK_EX = 2;
export const LOCK_NB = 4;

/** flock(2); throws SysError (EWOULDBLOCK when LOCK_NB and someone else holds the lock). */
export function flock(fd: number, operation: number): void {
  check("flock", libc().flock(fd, operation));
}

/** setns(2): moves the calling (JS) thread into the namespace `fd` refers to. */
export function setns(fd: number, nstype: number): void {
  check("setns", libc().setns(fd, nstype));
}

/** unshare(2) for the calling (JS) thread. */
export function unshare(flags: number): void {
  check("unshare", libc().unshare(flags));
}

/** getpid(2). */
export function getpid(): number {
  return libc().getpid();
}

/** gettid(2): the JS thread's id (its namespaces are /proc/thread-self/ns/). */
export function gettid(): number {
  return libc().gettid();
}

/**
 * Runs `fn` with the JS thread in the network namespace at `nsPath` (e.g.
 * `/proc/PID/ns/net` or `/run/netns/NAME`), then moves it back, even if `fn`
 * throws. Only the JS thread moves: sockets and FFI calls made synchronously
 * inside `fn` belong to that namespace; Deno's own async I/O, which runs on
 * other threads, does not. `fn` must therefore be synchronous: a returned
 * promise is rejected with a TypeError (after the thread has moved back).
 */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const target = open(nsPath);
  try {
    return inNetnsFd(target, fn);
  } finally {
    libc().close(target);
  }
}

/**
 * {@link inNetns} for a namespace already open as `nsFd` (an nsfs
 * descriptor, which the caller keeps and closes).
 */
export function inNetnsFd<T>(nsFd: number, fn: () => T): T {
  const home = open("/proc/thread-self/ns/net");
  try {
    setns(nsFd, CLONE_NEWNET);
    let result: T;
    try {
      result = fn();
    } finally {
      setns(home, CLONE_NEWNET);
    }
    if (result instanceof Promise) {
      result.catch(() => {});
      throw new TypeError("inNetns: fn must be synchronous");
    }
    return result;
  } finally {
    libc().close(home);
  }
}

/** if_nametoindex(3) in the JS thread's namespace; throws SysError (ENODEV) if absent. */
export function ifNameToIndex(name: string): number {
  const idx = libc().if_nametoindex(cString(name));
  if (idx === 0) throw sysError(`if_nametoindex ${name}`);
  return idx;
}

/** if_indextoname(3); throws SysError (ENXIO) if there is no such interface. */
export function ifIndexToName(ifindex: number): string {
  const buf = new Uint8Array(16);
  const p = libc().if_indextoname(ifindex, buf);
  if (!p) throw sysError(`if_indextoname ${ifindex}`);
  return new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
}

/** statfs(2): the file system type (`f_type`) of the file system holding `path`. */
export function statfsType(path: string): number {
  const buf = new Uint8Array(120); // struct statfs; f_type (a long) comes first
  check(`statfs ${path}`, libc().statfs(cString(path), buf));
  return Number(new DataView(buf.buffer).getBigInt64(0, true));
}
