/**
 * What a starting agent finds of an earlier one under its pin path
 * (docs/OPERATIONS.md, "Restarts and upgrades"): the links it left pinned,
 * the state it recorded, and the policy slots those links still enforce.
 *
 * The kernel is the truth: a pinned link whose interface is gone (defunct)
 * is collected at once; a live one is kept, with the attach id its program
 * reads (from the program itself) kept out of use, until the new agent
 * adopts it (switches it to a program of its own, atomically) or collects it
 * (an interface no longer wanted, a container that ended meanwhile). The
 * state adds what the kernel does not know: the policies and rule names
 * behind each slot (so counters continue), the mode and the container of
 * each attachment.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import {
  type AttachIds,
  linkState,
  openPinnedLink,
  programAttachId,
  type XdpLink,
  type XdpMode,
} from "../datapath/mod.ts";
import { type LinkPin, type PinSet, type Side, unpin } from "./pinset.ts";
import type { AgentState, AttachmentRecord, PolicyRecord } from "./state.ts";

/** A live link an earlier agent left, ready to be adopted. */
export interface LeftLink {
  readonly link: XdpLink;
  readonly pin: LinkPin;
  /** The attach id its program reads (kept reserved). */
  readonly attachId: number;
  readonly progId: number;
  readonly ifindex: number;
  /** The mode recorded for it (a link's mode cannot change; the state remembers it). */
  readonly mode?: XdpMode;
  readonly record?: AttachmentRecord;
}

function sideKey(netns: string, side: Side, ifindex: number): string {
  return `${netns}/${side}/${ifindex}`;
}

/** The links and slots an earlier agent left under one pin path. */
export class Leftovers {
  readonly #ids: AttachIds;
  readonly #log: Logger;
  readonly #hosts = new Map<string, LeftLink>();
  readonly #sides = new Map<string, LeftLink>();
  readonly #veths = new Map<number, LeftLink>();
  /** The slots of the earlier agent's policies (from its state). */
  readonly slots: readonly PolicyRecord[];
  /** Links collected because their interface was gone. */
  readonly defunct: number;

  private constructor(
    ids: AttachIds,
    log: Logger,
    slots: readonly PolicyRecord[],
    defunct: number,
  ) {
    this.#ids = ids;
    this.#log = log;
    this.slots = slots;
    this.defunct = defunct;
  }

  /** Opens every link pinned under `pins`, collects the defunct ones, reserves the rest's ids. */
  static find(pins: PinSet, state: AgentState | null, ids: AttachIds, log: Logger): Leftovers {
    const records = state?.attachments ?? [];
    let defunct = 0;
    const found: LeftLink[] = [];
    for (const pin of pins.links()) {
      const link = openPinnedLink(pin.path);
      if (!link) continue;
      let s;
      try {
        s = linkState(link);
      } catch {
        link.close();
        continue;
      }
      const attachId = s.defunct ? null : programAttachId({ id: s.progId });
      if (s.defunct || attachId === null || !ids.reserve(attachId)) {
        // The interface is gone (its container ended, it was deleted), or the program is not
        // a tinyfw instance: nothing to adopt.
        link.close();
        unpin(pin.path);
        if (pin.kind === "netns") pins.removeNetnsIfEmpty(pin.netns);
        defunct++;
        continue;
      }
      const record = records.find((r) => matches(r, pin));
      found.push({
        link,
        pin,
        attachId,
        progId: s.progId,
        ifindex: s.ifindex,
        mode: record?.mode,
        record,
      });
    }
    const left = new Leftovers(ids, log, state?.policies ?? [], defunct);
    for (const f of found) {
      if (f.pin.kind === "host") left.#hosts.set(f.pin.iface, f);
      else if (f.pin.kind === "veth") left.#veths.set(f.pin.ifindex, f);
      else left.#sides.set(sideKey(f.pin.netns, f.pin.side, f.pin.ifindex), f);
    }
    return left;
  }

  /** Whether anything was left to adopt. */
  get empty(): boolean {
    return this.#hosts.size + this.#sides.size + this.#veths.size === 0;
  }

  /** The link of host interface `iface` (now at `ifindex`), taken for adoption. */
  takeHost(iface: string, ifindex: number): LeftLink | undefined {
    const l = this.#hosts.get(iface);
    if (!l || l.ifindex !== ifindex) return undefined;
    this.#hosts.delete(iface);
    return l;
  }

  /** The link of a container's veth end, taken for adoption. */
  takeSide(netns: string, side: Side, ifindex: number): LeftLink | undefined {
    const key = sideKey(netns, side, ifindex);
    const l = this.#sides.get(key);
    if (l) this.#sides.delete(key);
    return l;
  }

  /** The link of an unclaimed veth's host end, taken for adoption. */
  takeVeth(ifindex: number): LeftLink | undefined {
    const l = this.#veths.get(ifindex);
    if (l) this.#veths.delete(ifindex);
    return l;
  }

  /** Whether container links are still waiting for their containers. */
  get containersPending(): boolean {
    return this.#sides.size + this.#veths.size > 0;
  }

  /**
   * Detaches the host interfaces' links nobody adopted (interfaces no longer
   * given with --iface). Returns what was collected, for their tc learners.
   */
  collectHosts(): LeftLink[] {
    const out = [...this.#hosts.values()];
    this.#hosts.clear();
    for (const l of out) this.#collect(l, `interface ${l.pin.kind === "host" ? l.pin.iface : ""}`);
    return out;
  }

  /** Detaches the container links nobody adopted: their containers ended while no agent ran. */
  collectContainers(pins: PinSet): number {
    const out = [...this.#sides.values(), ...this.#veths.values()];
    this.#sides.clear();
    this.#veths.clear();
    for (const l of out) {
      this.#collect(
        l,
        l.pin.kind === "netns" ? `container network namespace ${l.pin.netns}` : "veth",
      );
      if (l.pin.kind === "netns") pins.removeNetnsIfEmpty(l.pin.netns);
    }
    return out.length;
  }

  #collect(l: LeftLink, what: string): void {
    unpin(l.pin.path);
    l.link.close(); // the last reference: the program is detached
    this.#ids.free(l.attachId);
    this.#log.info("collected the filter an earlier run left on {what} (program {prog})", {
      what,
      prog: l.progId,
      ifindex: l.ifindex,
    });
  }
}

function matches(r: AttachmentRecord, pin: LinkPin): boolean {
  if (pin.kind === "host") return r.kind === "interface" && r.iface === pin.iface;
  if (pin.kind === "veth") return r.kind === "veth" && r.ifindex === pin.ifindex;
  return r.kind === "container" && r.netns === pin.netns && r.side === pin.side &&
    r.ifindex === pin.ifindex;
}
