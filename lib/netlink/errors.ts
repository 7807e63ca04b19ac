/**
 * The two ways netlink work fails: the kernel (or a libc call) reports an
 * errno ({@link NetlinkError}), or bytes do not decode ({@link NetlinkDecodeError}).
 *
 * @module
 */

import { errnoName } from "../ffi/mod.ts";

/** The symbolic name of an errno value, e.g. 19 -> "ENODEV"; "E<n>" when unknown. */
export { errnoName };

/** What a {@link NetlinkError} is built from. */
export interface NetlinkErrorInit {
  /** The operation that failed, e.g. "socket", "RTM_GETLINK", "RTM_GETNSID". */
  readonly op: string;
  /** The positive errno value. */
  readonly errno: number;
  /** strerror() text for errno, when known. */
  readonly description?: string;
  /** The kernel's extended ack message (NLMSGERR_ATTR_MSG), when it sent one. */
  readonly extAckMessage?: string;
  /** Byte offset of the offending attribute in the request (NLMSGERR_ATTR_OFFS). */
  readonly extAckOffset?: number;
}

/**
 * A failed netlink operation: a libc call returned -1, or the kernel answered
 * with an NLMSG_ERROR (or a dump ended with a negative NLMSG_DONE).
 */
export class NetlinkError extends Error {
  /** The operation that failed. */
  readonly op: string;
  /** The positive errno value. */
  readonly errno: number;
  /** The errno's symbolic name, e.g. "ENODEV". */
  readonly code: string;
  /** The kernel's extended ack message, when it sent one. */
  readonly extAckMessage?: string;
  /** Offset of the offending attribute in the request, when the kernel said. */
  readonly extAckOffset?: number;

  constructor(init: NetlinkErrorInit) {
    const code = errnoName(init.errno);
    const what = init.description ? `${init.description} (${code})` : code;
    const ext = init.extAckMessage ? `: ${init.extAckMessage}` : "";
    super(`netlink ${init.op} failed: ${what}${ext}`);
    this.name = "NetlinkError";
    this.op = init.op;
    this.errno = init.errno;
    this.code = code;
    this.extAckMessage = init.extAckMessage;
    this.extAckOffset = init.extAckOffset;
  }
}

/** Bytes that are not a well-formed netlink message (truncated, bad lengths...). */
export class NetlinkDecodeError extends Error {
  /** Byte offset in the buffer being decoded where the problem was found. */
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(`malformed netlink data at byte ${offset}: ${message}`);
    this.name = "NetlinkDecodeError";
    this.offset = offset;
  }
}
