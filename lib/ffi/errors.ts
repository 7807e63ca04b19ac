/**
 * Errors raised by the FFI layer: {@link SysError} for a failed libc call,
 * {@link BpfError} (a SysError) for a failed libbpf call, with libbpf's log.
 *
 * @module
 */

// Linux errno names by value (asm-generic/errno-base.h, errno.h); "" where unused.
// (node:os has no EBADFD and names 11 EWOULDBLOCK; the kernel's header says EAGAIN.)
// deno-fmt-ignore
const NAMES: readonly string[] = [
  "", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD",
  "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV",
  "ENOTDIR", "EISDIR", "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC",
  "ESPIPE", "EROFS", "EMLINK", "EPIPE", "EDOM", "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK",
  "ENOSYS", "ENOTEMPTY", "ELOOP", "", "ENOMSG", "EIDRM", "ECHRNG", "EL2NSYNC", "EL3HLT", "EL3RST",
  "ELNRNG", "EUNATCH", "ENOCSI", "EL2HLT", "EBADE", "EBADR", "EXFULL", "ENOANO", "EBADRQC",
  "EBADSLT", "", "EBFONT", "ENOSTR", "ENODATA", "ETIME", "ENOSR", "ENONET", "ENOPKG", "EREMOTE",
  "ENOLINK", "EADV", "ESRMNT", "ECOMM", "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG", "EOVERFLOW",
  "ENOTUNIQ", "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD", "ELIBSCN", "ELIBMAX", "ELIBEXEC",
  "EILSEQ", "ERESTART", "ESTRPIPE", "EUSERS", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE",
  "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT",
  "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN", "ENETUNREACH", "ENETRESET",
  "ECONNABORTED", "ECONNRESET", "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN", "ETOOMANYREFS",
  "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE",
  "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM", "EREMOTEIO", "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE",
  "ECANCELED", "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED", "EOWNERDEAD",
  "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",
];
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
  return EXTRA_NAMES[errno] ?? (NAMES[errno] || `E${errno}`);
}

/** A failed system call (or libc function): `op: strerror (CODE)`. */
export class SysError extends Error {
  /** The call that failed, e.g. "setns" or "bpf_map_update_elem". */
  readonly op: string;
  /** The positive errno value. */
  readonly errno: number;
  /** Its symbolic name, e.g. "ENOENT". */
  readonly code: string;
  /** What the errno means (strerror, or libbpf_strerror for a BpfError). */
  readonly description: string;

  constructor(op: string, errno: number, description: string) {
    const code = errnoName(errno);
    super(`${op}: ${description} (${code})`);
    this.name = "SysError";
    this.op = op;
    this.errno = errno;
    this.code = code;
    this.description = description;
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
