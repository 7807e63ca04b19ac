/**
 * Whether this process may load and attach XDP programs: it needs CAP_BPF (or
 * CAP_SYS_ADMIN) and CAP_NET_ADMIN in its effective set, which root has.
 *
 * @module
 */

import { RuntimeError } from "../base/mod.ts";

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_BPF = 39;

/** The effective capability set of this process, from /proc/self/status. */
export function effectiveCapabilities(status?: string): bigint {
  const text = status ?? Deno.readTextFileSync("/proc/self/status");
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/** The capabilities tinyfw lacks, by name (empty when it has all it needs). */
export function missingCapabilities(caps: bigint): string[] {
  const has = (bit: number) => (caps >> BigInt(bit)) & 1n;
  const missing: string[] = [];
  if (!has(CAP_BPF) && !has(CAP_SYS_ADMIN)) missing.push("CAP_BPF");
  if (!has(CAP_NET_ADMIN)) missing.push("CAP_NET_ADMIN");
  return missing;
}

/** Throws a RuntimeError naming what is missing unless this process may load and attach XDP. */
export function requireBpfPrivileges(status?: string): void {
  const missing = missingCapabilities(effectiveCapabilities(status));
  if (missing.length) {
    throw new RuntimeError(
      `tinyfw needs ${missing.join(" and ")} to load and attach XDP programs: run it as root ` +
        `(or grant those capabilities).`,
    );
  }
}
