/**
 * The errno values tinyfw tests for, by name, once (Linux's numbers; the
 * kernel-internal ENOTSUPP included, which BPF returns for some unsupported
 * operations).
 *
 * @module
 */

export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
/** A hash map is full. */
export const E2BIG = 7;
export const EAGAIN = 11;
/** flock(2) with LOCK_NB when someone else holds the lock. */
export const EWOULDBLOCK = EAGAIN;
export const EACCES = 13;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
/** An LPM trie is full. */
export const ENOSPC = 28;
export const EOPNOTSUPP = 95;
/** A netlink socket's receive buffer overran: notifications were lost. */
export const ENOBUFS = 105;
/** The kernel's internal "not supported" (seen through BPF calls). */
export const ENOTSUPP = 524;
