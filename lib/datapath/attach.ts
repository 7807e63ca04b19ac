/**
 * Putting a tinyfw program instance at XDP on an interface, the same way for
 * host interfaces and containers' veths: what is there already (nothing, a
 * program an earlier tinyfw run left, or someone else's), `auto` mode (native,
 * else generic), and the atomic replacement of a left-over tinyfw program.
 * A new attachment is a BPF link (`links.ts`), which the caller pins; a
 * left-over program is switched in place, through its link when it has one
 * (the adoption of a pinned attachment), else through netlink (one left by a
 * tinyfw without links). Runs in the calling thread's network namespace.
 *
 * @module
 */

import { BpfError } from "../ffi/mod.ts";
import { createXdpLink, linkOfProgram, updateLink, type XdpLink } from "./links.ts";
import {
  openProgram,
  progInfo,
  PROGRAM_NAME,
  xdpAttach,
  type XdpMode,
  xdpQuery,
} from "./object.ts";

/** What is attached at XDP on an interface. */
export type XdpOccupant =
  | { readonly kind: "none" }
  /** A tinyfw program an earlier run left (or another agent's: see lib/agent/lock.ts). */
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
  /** `auto` tries native, then generic (a left-over program keeps its mode). */
  readonly want: "auto" | XdpMode;
  /** A tinyfw program left on the interface: replaced atomically, in its own mode. */
  readonly stale?: { readonly id: number; readonly mode: XdpMode };
  /** Told why native mode was refused before `auto` falls back to generic. */
  readonly onNativeRefused?: (e: BpfError) => void;
  /** Told when a left-over program's mode is kept although another one is wanted. */
  readonly onModeKept?: (mode: XdpMode) => void;
}

/** How a program was attached. */
export interface Attached {
  readonly mode: XdpMode;
  /** The link holding it (pin it to make it outlive the process); null: netlink (persists). */
  readonly link: XdpLink | null;
  /** True when a left-over tinyfw program was replaced. */
  readonly replaced: boolean;
}

/**
 * Attaches `progFd` at XDP on `ifindex`. Throws BpfError when the kernel
 * refuses; {@link attemptedMode} says in which mode.
 */
export function attachProgram(
  ifindex: number,
  progFd: number,
  opts: AttachProgramOptions,
): Attached {
  const { want, stale } = opts;
  if (stale) {
    // A link's (or netlink attachment's) mode cannot change in place: it is kept, so that
    // the interface is never left without a filter; `tinyfw detach` first to change it.
    if (want !== "auto" && want !== stale.mode) opts.onModeKept?.(stale.mode);
    const link = linkOfProgram(stale.id);
    if (link) {
      try {
        updateLink(link, progFd, stale.id);
      } catch (e) {
        link.close();
        throw e;
      }
      return { mode: stale.mode, link, replaced: true };
    }
    const old = openProgram(stale.id);
    try {
      xdpAttach(ifindex, progFd, { mode: stale.mode, replaceFd: old.fd });
    } finally {
      old.close();
    }
    return { mode: stale.mode, link: null, replaced: true };
  }
  if (want !== "auto") {
    return { mode: want, link: createXdpLink(progFd, ifindex, want), replaced: false };
  }
  try {
    return { mode: "native", link: createXdpLink(progFd, ifindex, "native"), replaced: false };
  } catch (e) {
    if (!(e instanceof BpfError)) throw e;
    opts.onNativeRefused?.(e);
  }
  return { mode: "generic", link: createXdpLink(progFd, ifindex, "generic"), replaced: false };
}

/** The mode in which {@link attachProgram} failed, when it throws. */
export function attemptedMode(opts: AttachProgramOptions): XdpMode {
  if (opts.want !== "auto") return opts.want;
  return opts.stale?.mode ?? "generic";
}
