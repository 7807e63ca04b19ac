/**
 * A raw NETLINK_ROUTE socket over libc, through Deno FFI.
 *
 * TODO(ffi): the libc symbols below belong in lib/ffi/libc.ts (the only module
 * meant to call Deno.dlopen). They live here, behind the small
 * {@link NetlinkLibc} interface, only so that this module did not have to wait
 * for it; swap {@link loadNetlinkLibc} for the shared binding when it lands.
 *
 * errno is thread-local. A symbol declared `nonblocking: true` runs on a Deno
 * worker thread, so reading `__errno_location()` after it yields the main
 * thread's errno, not the call's (checked: a timed-out nonblocking recv left
 * the main thread's earlier EBADF in place of EAGAIN). Therefore the only
 * nonblocking call is `poll`, which reports readiness through its `revents`
 * (and does not consume a pending socket error), and every `recv` is
 * synchronous on the main thread, where errno can be read.
 *
 * @module
 */

import {
  AF_NETLINK,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  SOL_NETLINK,
} from "./constants.ts";
import { NetlinkError } from "./errors.ts";

const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20;
const SO_RCVBUFFORCE = 33;
const MSG_PEEK = 0x2;
const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
const O_RDONLY = 0;
const O_CLOEXEC = 0x80000;
const EFD_NONBLOCK = 0x800;
const EFD_CLOEXEC = 0x80000;
const POLLIN = 0x1;
const EINTR = 4;
const EAGAIN = 11;
const SOCKADDR_NL_LEN = 12;

const LIBC_SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

/** The libc calls the netlink client uses (to move onto lib/ffi/libc.ts). */
export type NetlinkLibc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

let libc: NetlinkLibc | undefined;

/** Opens libc once (lazily, so pure users of this directory never need --allow-ffi). */
export function loadNetlinkLibc(): NetlinkLibc {
  libc ??= Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
  return libc;
}

/** The calling thread's errno, read right after a failed synchronous call. */
function lastErrno(c: NetlinkLibc): number {
  const ptr = c.__errno_location();
  return ptr ? new Deno.UnsafePointerView(ptr).getInt32() : 0;
}

/** strerror(errno) text. */
export function strerror(errno: number): string {
  const ptr = loadNetlinkLibc().strerror(errno);
  return ptr ? Deno.UnsafePointerView.getCString(ptr) : `errno ${errno}`;
}

function fail(c: NetlinkLibc, op: string, errno = lastErrno(c)): never {
  throw new NetlinkError({ op, errno, description: strerror(errno) });
}

function intOption(value: number): Uint8Array {
  const buf = new Uint8Array(4);
  new DataView(buf.buffer).setInt32(0, value, true);
  return buf;
}

/** Encodes struct sockaddr_nl. */
function sockaddrNl(pid: number, groups: number): Uint8Array {
  const buf = new Uint8Array(SOCKADDR_NL_LEN);
  const view = new DataView(buf.buffer);
  view.setUint16(0, AF_NETLINK, true);
  view.setUint32(4, pid, true);
  view.setUint32(8, groups, true);
  return buf;
}

/** What a request/response client needs from a socket (a fake can stand in for tests). */
export interface NetlinkTransport {
  /** The socket's port id (nl_pid), which the kernel puts in nlmsg_pid of its replies. */
  readonly portId: number;
  /** Sends one datagram to the kernel. */
  send(datagram: Uint8Array): void;
  /** Receives one datagram, waiting for it (up to the socket's receive timeout). */
  receive(): Uint8Array;
  /** strerror-style text for an errno the kernel answered with. */
  describeError?(errno: number): string;
  /** Releases the socket. */
  close(): void;
}

/** Options of {@link NetlinkSocket.open}. */
export interface NetlinkSocketOptions {
  /** Multicast groups to join at bind time (RTMGRP_* bits). Default none. */
  readonly groups?: number;
  /** Receive timeout of blocking receives, in ms; 0 waits forever. Default 5000. */
  readonly receiveTimeoutMs?: number;
  /** Kernel receive buffer to ask for, in bytes (best effort; raised with SO_RCVBUFFORCE as root). */
  readonly receiveBufferBytes?: number;
}

/** A bound NETLINK_ROUTE socket with extended acks, capped acks and strict GET checking. */
export class NetlinkSocket implements NetlinkTransport {
  readonly #libc: NetlinkLibc;
  #fd: number;
  #buffer = new Uint8Array(64 * 1024);
  /** The kernel-assigned port id of this socket. */
  readonly portId: number;

  private constructor(c: NetlinkLibc, fd: number, portId: number) {
    this.#libc = c;
    this.#fd = fd;
    this.portId = portId;
  }

  /** Creates, configures and binds a socket. Throws {@link NetlinkError}. */
  static open(options: NetlinkSocketOptions = {}): NetlinkSocket {
    const c = loadNetlinkLibc();
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) fail(c, "socket");
    try {
      // Optional niceties: older kernels may lack them, which only costs detail.
      for (const opt of [NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK]) {
        c.setsockopt(fd, SOL_NETLINK, opt, intOption(1), 4);
      }
      if (options.receiveBufferBytes) {
        const size = intOption(options.receiveBufferBytes);
        if (c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) !== 0) {
          c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
        }
      }
      const timeoutMs = options.receiveTimeoutMs ?? 5000;
      const timeval = new Uint8Array(16);
      const tv = new DataView(timeval.buffer);
      tv.setBigInt64(0, BigInt(Math.floor(timeoutMs / 1000)), true);
      tv.setBigInt64(8, BigInt((timeoutMs % 1000) * 1000), true);
      if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeval, 16) !== 0) fail(c, "setsockopt");
      if (c.bind(fd, sockaddrNl(0, options.groups ?? 0), SOCKADDR_NL_LEN) !== 0) fail(c, "bind");
      const addr = new Uint8Array(SOCKADDR_NL_LEN);
      const addrLen = intOption(SOCKADDR_NL_LEN);
      if (c.getsockname(fd, addr, addrLen) !== 0) fail(c, "getsockname");
      return new NetlinkSocket(c, fd, new DataView(addr.buffer).getUint32(4, true));
    } catch (err) {
      c.close(fd);
      throw err;
    }
  }

  #openFd(): number {
    if (this.#fd < 0) throw new Error("netlink socket is closed");
    return this.#fd;
  }

  /** Sends one datagram to the kernel (port 0). */
  send(datagram: Uint8Array): void {
    const fd = this.#openFd();
    for (;;) {
      const n = this.#libc.sendto(fd, datagram, BigInt(datagram.length), 0, sockaddrNl(0, 0), 12);
      if (n >= 0n) return;
      const errno = lastErrno(this.#libc);
      if (errno !== EINTR) fail(this.#libc, "sendto", errno);
    }
  }

  /**
   * Receives one whole datagram (growing the buffer when a peek says it is
   * larger). Returns null when `dontWait` is set and nothing is queued. A
   * timed-out blocking receive throws a NetlinkError with errno EAGAIN.
   */
  #receive(dontWait: boolean): Uint8Array | null {
    const fd = this.#openFd();
    const wait = dontWait ? MSG_DONTWAIT : 0;
    for (;;) {
      const peeked = this.#libc.recv(
        fd,
        this.#buffer,
        BigInt(this.#buffer.length),
        MSG_PEEK | MSG_TRUNC | wait,
      );
      if (peeked < 0n) {
        const errno = lastErrno(this.#libc);
        if (errno === EINTR) continue;
        if (errno === EAGAIN && dontWait) return null;
        fail(this.#libc, errno === EAGAIN ? "recv (timed out)" : "recv", errno);
      }
      if (Number(peeked) > this.#buffer.length) this.#buffer = new Uint8Array(Number(peeked));
      const n = this.#libc.recv(fd, this.#buffer, BigInt(this.#buffer.length), MSG_DONTWAIT);
      if (n < 0n) {
        const errno = lastErrno(this.#libc);
        if (errno === EINTR || errno === EAGAIN) continue;
        fail(this.#libc, "recv", errno);
      }
      return this.#buffer.slice(0, Number(n));
    }
  }

  /** Receives one datagram, waiting up to the receive timeout. */
  receive(): Uint8Array {
    return this.#receive(false)!;
  }

  /** Receives one datagram if one is queued, else returns null; never waits. */
  tryReceive(): Uint8Array | null {
    return this.#receive(true);
  }

  /**
   * Waits, off the main thread, until the socket is readable (data or a
   * pending error such as ENOBUFS) or `wakeup` is signalled. Returns true when
   * the socket is readable.
   */
  async waitReadable(wakeup: Wakeup): Promise<boolean> {
    const pollfds = new Uint8Array(16);
    const view = new DataView(pollfds.buffer);
    view.setInt32(0, this.#openFd(), true);
    view.setInt16(4, POLLIN, true);
    view.setInt32(8, wakeup.fd, true);
    view.setInt16(12, POLLIN, true);
    const ready = await this.#libc.poll(pollfds, 2n, -1);
    // A failed poll (EINTR; errno is unreadable here) is reported as "look again".
    if (ready < 0) return true;
    return view.getInt16(6, true) !== 0;
  }

  /** strerror text for an errno. */
  describeError(errno: number): string {
    return strerror(errno);
  }

  /** Closes the socket; later calls are no-ops. */
  close(): void {
    if (this.#fd >= 0) this.#libc.close(this.#fd);
    this.#fd = -1;
  }
}

/** An eventfd used to wake a pending {@link NetlinkSocket.waitReadable}. */
export class Wakeup {
  readonly #libc: NetlinkLibc;
  #fd: number;

  constructor() {
    this.#libc = loadNetlinkLibc();
    this.#fd = this.#libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.#fd < 0) fail(this.#libc, "eventfd");
  }

  /** The eventfd descriptor (-1 once closed). */
  get fd(): number {
    return this.#fd;
  }

  /** Makes the eventfd readable, which ends a pending poll on it. */
  signal(): void {
    if (this.#fd < 0) return;
    const one = new Uint8Array(8);
    new DataView(one.buffer).setBigUint64(0, 1n, true);
    this.#libc.write(this.#fd, one, 8n);
  }

  /** Closes the eventfd. Only call it once no poll is pending on it. */
  close(): void {
    if (this.#fd >= 0) this.#libc.close(this.#fd);
    this.#fd = -1;
  }
}

/**
 * Opens a file read-only and returns its raw descriptor, for NETNSA_FD
 * (Deno's own file handles do not expose descriptors). Close it with {@link closeFd}.
 */
export function openFd(path: string): number {
  const c = loadNetlinkLibc();
  const cPath = new TextEncoder().encode(path + "\0");
  const fd = c.open(cPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const errno = lastErrno(c);
    throw new NetlinkError({ op: `open ${path}`, errno, description: strerror(errno) });
  }
  return fd;
}

/** Closes a descriptor returned by {@link openFd}. */
export function closeFd(fd: number): void {
  loadNetlinkLibc().close(fd);
}
