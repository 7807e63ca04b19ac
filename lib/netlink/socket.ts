/**
 * A raw NETLINK_ROUTE socket, over the libc wrappers of lib/ffi/libc.ts (this
 * module sees descriptors and byte arrays, never a pointer). Failed libc calls
 * ({@link SysError}) are turned into {@link NetlinkError} here, so callers of
 * lib/netlink only ever see NetlinkError.
 *
 * errno is thread-local, and a `nonblocking` FFI call runs on a worker thread
 * whose errno cannot be read (see lib/ffi/libc.ts). So the only call made off
 * the main thread is the poll() inside {@link libc.waitReadable}, which
 * reports readiness without consuming a pending socket error; every `recv` is
 * synchronous on the main thread, where its errno (EAGAIN, ENOBUFS...) is read.
 *
 * @module
 */

import * as libc from "../ffi/mod.ts";
import { EAGAIN, EINTR, SysError } from "../ffi/mod.ts";
import {
  AF_NETLINK,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  SOL_NETLINK,
} from "./constants.ts";
import { NetlinkError } from "./errors.ts";

const SOCKADDR_NL_LEN = 12;

/** The NetlinkError for a failed libc call (under another op name when given); other errors as they are. */
function asNetlinkError(err: unknown, op?: string): unknown {
  if (!(err instanceof SysError)) return err;
  return new NetlinkError({ op: op ?? err.op, errno: err.errno, description: err.description });
}

/** Runs a libc call, rethrowing a SysError as a NetlinkError. */
function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw asNetlinkError(err);
  }
}

/** setsockopt of a C int that is only nice to have: false when the kernel refuses it. */
function trySetsockopt(fd: number, level: number, name: number, value: number): boolean {
  try {
    libc.setsockopt(fd, level, name, value);
    return true;
  } catch (err) {
    if (err instanceof SysError) return false;
    throw err;
  }
}

/** Encodes struct sockaddr_nl. */
function sockaddrNl(pid: number, groups: number): Uint8Array<ArrayBuffer> {
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
  #fd: number;
  #buffer = new Uint8Array(64 * 1024);
  /** The kernel-assigned port id of this socket. */
  readonly portId: number;

  private constructor(fd: number, portId: number) {
    this.#fd = fd;
    this.portId = portId;
  }

  /** Creates, configures and binds a socket. Throws {@link NetlinkError}. */
  static open(options: NetlinkSocketOptions = {}): NetlinkSocket {
    const fd = call(() =>
      libc.socket(AF_NETLINK, libc.SOCK_RAW | libc.SOCK_CLOEXEC, NETLINK_ROUTE)
    );
    try {
      // Optional niceties: older kernels may lack them, which only costs detail.
      for (const opt of [NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK]) {
        trySetsockopt(fd, SOL_NETLINK, opt, 1);
      }
      const rcvbuf = options.receiveBufferBytes;
      if (rcvbuf) {
        // Best effort: SO_RCVBUFFORCE needs CAP_NET_ADMIN; SO_RCVBUF is capped by rmem_max.
        if (!trySetsockopt(fd, libc.SOL_SOCKET, libc.SO_RCVBUFFORCE, rcvbuf)) {
          trySetsockopt(fd, libc.SOL_SOCKET, libc.SO_RCVBUF, rcvbuf);
        }
      }
      const timeoutMs = options.receiveTimeoutMs ?? 5000;
      call(() => libc.setsockoptTimeval(fd, libc.SOL_SOCKET, libc.SO_RCVTIMEO, timeoutMs));
      call(() => libc.bind(fd, sockaddrNl(0, options.groups ?? 0)));
      const addr = call(() => libc.getsockname(fd));
      return new NetlinkSocket(fd, new DataView(addr.buffer, addr.byteOffset).getUint32(4, true));
    } catch (err) {
      closeQuietly(fd);
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
      try {
        libc.sendto(fd, datagram, 0, sockaddrNl(0, 0));
        return;
      } catch (err) {
        if (!(err instanceof SysError && err.errno === EINTR)) throw asNetlinkError(err);
      }
    }
  }

  /**
   * Receives one whole datagram (growing the buffer when a peek says it is
   * larger). Returns null when `dontWait` is set and nothing is queued. A
   * timed-out blocking receive throws a NetlinkError with errno EAGAIN.
   */
  #receive(dontWait: boolean): Uint8Array | null {
    const fd = this.#openFd();
    const wait = dontWait ? libc.MSG_DONTWAIT : 0;
    for (;;) {
      let size: number;
      try {
        size = libc.recv(fd, this.#buffer, libc.MSG_PEEK | libc.MSG_TRUNC | wait);
      } catch (err) {
        if (!(err instanceof SysError)) throw err;
        if (err.errno === EINTR) continue;
        if (err.errno === EAGAIN && dontWait) return null;
        throw asNetlinkError(err, err.errno === EAGAIN ? "recv (timed out)" : "recv");
      }
      if (size > this.#buffer.length) this.#buffer = new Uint8Array(size);
      let n: number;
      try {
        n = libc.recv(fd, this.#buffer, libc.MSG_DONTWAIT);
      } catch (err) {
        if (!(err instanceof SysError)) throw err;
        if (err.errno === EINTR || err.errno === EAGAIN) continue;
        throw asNetlinkError(err);
      }
      return this.#buffer.slice(0, n);
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
   * pending error such as ENOBUFS, which {@link tryReceive} then throws).
   * Rejects with the signal's reason once `signal` aborts.
   */
  async waitReadable(signal?: AbortSignal): Promise<void> {
    const fd = this.#openFd();
    try {
      await libc.waitReadable(fd, { signal }); // no timeout: true or a rejection
    } catch (err) {
      throw asNetlinkError(err, "poll");
    }
  }

  /** strerror text for an errno. */
  describeError(errno: number): string {
    return libc.strerror(errno);
  }

  /** Closes the socket; later calls are no-ops. */
  close(): void {
    if (this.#fd >= 0) closeQuietly(this.#fd);
    this.#fd = -1;
  }
}

/** close(2), ignoring a failure: the descriptor is released either way. */
function closeQuietly(fd: number): void {
  try {
    libc.close(fd);
  } catch (err) {
    if (!(err instanceof SysError)) throw err;
  }
}

/**
 * Opens a file read-only and returns its raw descriptor, for NETNSA_FD
 * (Deno's own file handles do not expose descriptors). Close it with
 * {@link closeFd}. Throws {@link NetlinkError} (op `open PATH`).
 */
export function openFd(path: string): number {
  return call(() => libc.open(path, libc.O_RDONLY));
}

/** Closes a descriptor returned by {@link openFd}. */
export function closeFd(fd: number): void {
  closeQuietly(fd);
}
