/**
 * One side of a container's veth pair filtered by one XDP program instance:
 * the host end (what the container sends: egress) or the container end,
 * inside its namespace (what enters it: ingress). Plus the pool of program
 * instances these come from, loaded ahead so that a container's start does
 * not wait for the verifier (~8 ms per instance).
 *
 * @module
 */

import { BpfError, ENODEV, ENOENT, inNetnsFd, mallocTrim } from "../ffi/mod.ts";
import {
  type AttachIds,
  attachProgram,
  type Datapath,
  linkState,
  pinLink,
  type PolicySlots,
  updateLink,
  xdpDetach,
  type XdpLink,
  type XdpMode,
  xdpOccupant,
  type XdpProgram,
} from "../datapath/mod.ts";
import { type LeftLink, unpin } from "../persist/mod.ts";

/** A program instance attached at XDP on one interface. */
export interface AttachedSide {
  readonly prog: XdpProgram;
  readonly ifindex: number;
  readonly mode: XdpMode;
  /** The container's namespace (open descriptor) for the container end; undefined: the host. */
  readonly nsFd?: number;
  /** The link holding the program; null: a netlink attachment an older tinyfw made. */
  readonly link: XdpLink | null;
  /** Where the link is pinned. */
  pin?: string;
}

/** Runs `fn` in the namespace `nsFd` refers to, or here when undefined. */
function within<T>(nsFd: number | undefined, fn: () => T): T {
  return nsFd === undefined ? fn() : inNetnsFd(nsFd, fn);
}

/**
 * Attaches `prog` at XDP on `ifindex` (in namespace `nsFd`, or the host's),
 * with a link pinned at `pin` (unpinned without one: it lives as long as this
 * process holds it). `auto` tries native, then generic. A tinyfw program an
 * earlier run left there is replaced atomically; any other program is left
 * alone and this throws, saying which.
 */
export function attachSide(
  prog: XdpProgram,
  ifindex: number,
  want: "auto" | XdpMode,
  opts: { nsFd?: number; pin?: string } = {},
): AttachedSide {
  const { nsFd, pin } = opts;
  const attached = within(nsFd, () => {
    const there = xdpOccupant(ifindex);
    if (there.kind === "foreign") {
      throw new Error(
        `ifindex ${ifindex} already has an XDP program tinyfw did not install (id ${there.id}, ` +
          `"${there.name}"); it is left alone`,
      );
    }
    // A left-over tinyfw program is replaced in its own mode, without a gap.
    const stale = there.kind === "tinyfw" ? there : undefined;
    return attachProgram(ifindex, prog.fd, { want: stale?.mode ?? want, stale });
  });
  const side: AttachedSide = { prog, ifindex, mode: attached.mode, nsFd, link: attached.link };
  if (attached.link && pin) {
    unpin(pin);
    pinLink(attached.link, pin);
    side.pin = pin;
  }
  return side;
}

/**
 * Takes over a side an earlier agent left (`left`): its link switches to
 * `prog`, atomically. `prog` reads the same attach id, configured already.
 */
export function adoptSide(prog: XdpProgram, left: LeftLink, nsFd?: number): AttachedSide {
  updateLink(left.link, prog.fd, left.progId);
  return {
    prog,
    ifindex: left.ifindex,
    mode: left.mode ?? "generic",
    nsFd,
    link: left.link,
    pin: left.pin.path,
  };
}

/** Pins `side`'s link at `path` instead of where it was (a veth claimed by its container). */
export function movePin(side: AttachedSide, path: string): void {
  if (!side.link || side.pin === path) return;
  unpin(path);
  pinLink(side.link, path);
  if (side.pin) unpin(side.pin);
  side.pin = path;
}

/**
 * Detaches `side`'s program: unpins and closes its link (or, for a netlink
 * attachment, detaches it if it is still the one attached). An interface
 * that is gone (its namespace ended, taking the veth with it) is not an
 * error. Returns whether a detach was needed.
 */
export function detachSide(side: AttachedSide): boolean {
  if (side.link) {
    let live = true;
    try {
      live = !linkState(side.link).defunct;
    } catch {
      // unknown: closed below anyway
    }
    if (side.pin) unpin(side.pin);
    side.link.close(); // the last reference: the program is detached
    return live;
  }
  try {
    within(side.nsFd, () => xdpDetach(side.ifindex, side.mode, { expectFd: side.prog.fd }));
    return true;
  } catch (e) {
    if (e instanceof BpfError && (e.errno === ENODEV || e.errno === ENOENT)) return false;
    throw e;
  }
}

/** Leaves `side` enforcing (`--keep-on-exit`): only this process's descriptors are closed. */
export function keepSide(side: AttachedSide): void {
  side.link?.close();
  side.prog.close();
}

/**
 * Program instances with their own attach ids, loaded ahead. `take` hands
 * out a loaded instance (loading one now only when none is spare); `give`
 * takes one back once it is detached: its attach entry is cleared, its
 * descriptor closed and its id reused. `refill` loads spares; the caller runs
 * it when nothing waits (after an event is handled).
 */
export class InstancePool {
  readonly #dp: Datapath;
  readonly #slots: PolicySlots;
  readonly #spare: XdpProgram[] = [];
  readonly #ids: AttachIds;
  readonly #target: number;
  #inUse = 0;

  /** Ids come from `ids` (shared with host interfaces); `spare` instances are kept loaded. */
  constructor(dp: Datapath, slots: PolicySlots, opts: { ids: AttachIds; spare?: number }) {
    this.#dp = dp;
    this.#slots = slots;
    this.#target = opts.spare ?? 4;
    this.#ids = opts.ids;
  }

  /** Instances handed out and not given back. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Instances loaded and waiting. */
  get spare(): number {
    return this.#spare.length;
  }

  /** A loaded instance whose attach entry the caller configures before attaching it. */
  take(): XdpProgram {
    const prog = this.#spare.pop() ?? this.#load();
    this.#inUse++;
    return prog;
  }

  /**
   * An instance reading attach id `id`, reserved already (a side an earlier
   * agent left, being adopted: its entry is live, so it is not cleared).
   */
  takeId(id: number): XdpProgram {
    const prog = this.#dp.instance(id);
    this.#inUse++;
    return prog;
  }

  /** Takes back a detached instance. */
  give(prog: XdpProgram): void {
    this.#inUse--;
    this.#slots.clearAttachment(prog.attachId);
    prog.close();
    this.#ids.free(prog.attachId);
  }

  /** Takes back an instance whose attachment stays (`--keep-on-exit`): its entry is kept. */
  keep(prog: XdpProgram): void {
    this.#inUse--;
    prog.close();
  }

  /** Whether `spare` instances are waiting. */
  get full(): boolean {
    return this.#spare.length >= this.#target;
  }

  /** Loads instances until `spare` are waiting. */
  refill(): void {
    while (!this.full) this.#spare.push(this.#load());
  }

  /** Loads one instance if fewer than `spare` are waiting; once full, trims the C heap. */
  refillOne(): void {
    if (this.full) return;
    this.#spare.push(this.#load());
    if (this.full) mallocTrim();
  }

  #load(): XdpProgram {
    const id = this.#ids.take();
    try {
      const prog = this.#dp.instance(id);
      this.#slots.clearAttachment(id);
      return prog;
    } catch (e) {
      this.#ids.free(id);
      throw e;
    }
  }

  /** Closes the spare instances (those handed out are their holders' to give back). */
  close(): void {
    for (const p of this.#spare.splice(0)) {
      this.#slots.clearAttachment(p.attachId);
      p.close();
      this.#ids.free(p.attachId);
    }
  }
}
