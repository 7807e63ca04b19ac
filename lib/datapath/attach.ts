/**
 * Putting a tinyfw program instance at XDP on an interface, the same way for
 * host interfaces and containers' veths: what is there already (nothing, a
 * program an earlier tinyfw run left, or someone else's), `auto` mode (native,
 * else generic), and the atomic replacement of a left-over tinyfw program.
 * Runs in the calling thread's network namespace.
 *
 * @module
 */

import { BpfError } from "../ffi/errors.ts";
import {
  openProgram,
  progInfo,
  PROGRAM_NAME,
  xdpAttach,
  xdpDetach,
  type XdpMode,
  xdpQuery,
} from "./object.ts";

/** What is attached at XDP on an interface. */
export type XdpOccupant =
  | { readonly kind: "none" }
  /** A tinyfw program an earlier run left (or another agent's: see lib/agent_lock.ts). */
  | { readonly kind: "tinyfw"; readonly id: number; readonly mode: XdpMode }
  | { readonly kind: "foreign"; readonly id: number; readonly name: string; readonly mode: string };

/** What is attached at XDP on `ifindex`. */
export function xdpOccupant(ifindex: number): XdpOccupant {
  const q = xdpQuery(ifindex);
  const id = q.progId || q.driverId || q.skbId || q.hwId;
  if (!id) return { kind: "none" };
  const name = progInfo({ id }).name;
  if (name === PROGRAM_NAME && (q.mode === "native" || q.mode === "generic")) {
    return { kind: "tinyfw", id, mode: q.mode };
  }
  return { kind: "foreign", id, name, mode: q.mode };
}

/** Options of {@link attachProgram}. */
export interface AttachProgramOptions {
  /** `auto` tries native, then generic (a left-over program's mode, when replacing one). */
  readonly want: "auto" | XdpMode;
  /** A tinyfw program left on the interface: replaced, atomically when the mode stays. */
  readonly stale?: { readonly id: number; readonly mode: XdpMode };
  /** Told why native mode was refused before `auto` falls back to generic. */
  readonly onNativeRefused?: (e: BpfError) => void;
}

/**
 * Attaches `progFd` at XDP on `ifindex` and returns the mode used. Throws
 * BpfError when the kernel refuses; {@link attemptedMode} says in which mode.
 */
export function attachProgram(
  ifindex: number,
  progFd: number,
  opts: AttachProgramOptions,
): XdpMode {
  const { want, stale } = opts;
  if (stale) {
    const mode = want === "auto" ? stale.mode : want;
    if (mode === stale.mode) {
      const old = openProgram(stale.id);
      try {
        xdpAttach(ifindex, progFd, { mode, replaceFd: old.fd });
      } finally {
        old.close();
      }
      return mode;
    }
    // A mode change cannot be one atomic replace: detach the old, attach the new.
    xdpDetach(ifindex, stale.mode);
    xdpAttach(ifindex, progFd, { mode });
    return mode;
  }
  if (want !== "auto") {
    xdpAttach(ifindex, progFd, { mode: want });
    return want;
  }
  try {
    xdpAttach(ifindex, progFd, { mode: "native" });
    return "native";
  } catch (e) {
    if (!(e instanceof BpfError)) throw e;
    opts.onNativeRefused?.(e);
  }
  xdpAttach(ifindex, progFd, { mode: "generic" });
  return "generic";
}

/** The mode in which {@link attachProgram} failed, when it throws. */
export function attemptedMode(opts: AttachProgramOptions): XdpMode {
  if (opts.want !== "auto") return opts.want;
  return opts.stale?.mode ?? "generic";
}
