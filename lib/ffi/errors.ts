/**
 * Errors raised by the FFI layer: {@link SysError} for a failed libc call,
 * {@link BpfError} (a SysError) for a failed libbpf call, with libbpf's log.
 *
 * @module
 */

import { constants as osConstants } from "node:os";

const NAMES: Map<number, string> = new Map(
  Object.entries(osConstants.errno).map(([name, value]) => [value as number, name]),
);
// Kernel-internal values that leak out of the bpf() syscall, and libbpf's own.
const EXTRA_NAMES: Record<number, string> = {
  524: "ENOTSUPP",
  4000: "LIBBPF_ERRNO__LIBELF",
  4001: "LIBBPF_ERRNO__FORMAT",
  4002: "LIBBPF_ERRNO__KVERSION",
  4003: "LIBBPF_ERRNO__ENDIAN",
  4004: "LIBBPF_ERRNO__INTERNAL",
  4005: "LIBBPF_ERRNO__RELOC",
  4006: "LIBBPF_ERRNO__LOAD",
  4007: "LIBBPF_ERRNO__VERIFY",
  4008: "LIBBPF_ERRNO__PROG2BIG",
  4009: "LIBBPF_ERRNO__KVER",
  4010: "LIBBPF_ERRNO__PROGTYPE",
  4011: "LIBBPF_ERRNO__WRNGPID",
  4012: "LIBBPF_ERRNO__INVSEQ",
  4013: "LIBBPF_ERRNO__NLPARSE",
};

/** The symbolic name of an errno value: 2 → "ENOENT"; "E<n>" when unknown. */
export function errnoName(errno: number): string {
  return EXTRA_NAMES[errno] ?? NAMES.get(errno) ?? `E${errno}`;
}

/** A failed system call (or libc function): `op: strerror (CODE)`. */
export class SysError extends Error {
  /** The call that failed, e.g. "setns" or "bpf_map_update_elem". */
  readonly op: string;
  /** The positive errno value. */
  readonly errno: number;
  /** Its symbolic name, e.g. "ENOENT". */
  readonly code: string;

  constructor(op: string, errno: number, description: string) {
    const code = errnoName(errno);
    super(`${op}: ${description} (${code})`);
    this.name = "SysError";
    this.op = op;
    this.errno = errno;
    this.code = code;
  }
}

/**
 * A failed libbpf call. The message uses libbpf_strerror (which also knows
 * libbpf's own error numbers); `log` holds what libbpf printed during the
 * call (warnings and info, e.g. the verifier log of a rejected program).
 */
export class BpfError extends SysError {
  /** libbpf's log lines printed during the failed call. */
  readonly log: readonly string[];

  constructor(op: string, errno: number, description: string, log: readonly string[] = []) {
    super(op, errno, description);
    this.name = "BpfError";
    this.log = log;
  }

  /** The verifier's log if the failure was a rejected program, else "". */
  get verifierLog(): string {
    const text = this.log.join("\n");
    const m = /-- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/.exec(text);
    return m ? m[1] : "";
  }
}
