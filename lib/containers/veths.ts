/**
 * The programs on containers' veth pairs: for every filtered network
 * namespace, both ends of each of its veths (the host end sees what the
 * container sends: egress; the container's end, attached inside its
 * namespace, sees what enters it: ingress), both learning flows so replies
 * pass (DATAPATH.md §7). Also the veths that appear before any task runs
 * behind them ("unclaimed"): their host end is filtered at once with the
 * policy of a container without labels, until a workload claims them.
 *
 * Link notifications are fed in by the owner ({@link VethAttachments.onLink}):
 * a new veth to a filtered namespace is attached, a deleted one forgotten.
 * Every method is synchronous; the owner calls them one at a time.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { type Link, type LinkEvent, RtnetlinkClient } from "../netlink/mod.ts";
import type { AttachIds, Datapath, PolicySlots, XdpMode } from "../datapath/mod.ts";
import { DIR_EGRESS, DIR_INGRESS } from "../abi/mod.ts";
import type { LeftLink, Leftovers, PinSet, SideRecord, VethRecord } from "../persist/mod.ts";
import type { ContainerIdentity, Policy } from "../policy/mod.ts";
import {
  isForeignVeth,
  type NetnsHandle,
  type NetnsId,
  nsidOf,
  type VethPair,
  vethPairsTo,
} from "./netns.ts";
import {
  adoptSide,
  type AttachedSide,
  attachSide,
  detachSide,
  InstancePool,
  keepSide,
  movePin,
} from "./side.ts";
import {
  containerNameOf,
  describeWorkload,
  identityOf,
  identityTask,
  type Workload,
} from "./workloads.ts";
import { describeError } from "../base/mod.ts";

/**
 * The XDP mode `--xdp-mode auto` picks for containers' veths: generic. Native
 * XDP on a veth turns off GSO/TSO on its peer, and allowed TCP through a
 * filtered pair fell to 0.28 of the unfiltered throughput here, where generic
 * mode keeps 0.87 (bench/veth_throughput.ts, docs/BENCHMARKS.md).
 */
export const VETH_AUTO_MODE: XdpMode = "generic";

/** A selected policy and the slot it is installed in. */
export interface SlotSelection {
  readonly policy: Policy;
  readonly slot: number;
}

/** Picks the policy in force for a container; null: one without labels. */
export type Selector = (identity: ContainerIdentity | null) => SlotSelection;

/** What {@link VethAttachments} needs. */
export interface VethAttachmentsOptions {
  readonly dp: Datapath;
  readonly slots: PolicySlots;
  /** Attach ids, shared with the host interfaces. */
  readonly ids: AttachIds;
  /** Where every link is pinned. */
  readonly pins: PinSet;
  /** What an earlier agent left: sides adopted as their containers are found again. */
  readonly left?: Leftovers;
  /** `auto` means generic here (see {@link VETH_AUTO_MODE}). */
  readonly xdpMode: "auto" | XdpMode;
  readonly log: Logger;
  readonly select: Selector;
  /** How long a new veth without a task behind it stays filtered (default 10 s). */
  readonly claimMs?: number;
  /** Program instances kept loaded ahead (default 4). */
  readonly spareInstances?: number;
}

/** One veth pair and the programs on its ends. */
export interface PairState {
  readonly pair: VethPair;
  egress?: AttachedSide;
  ingress?: AttachedSide;
}

/** A filtered workload: its namespace (held open), the policy in force, its veth pairs by host ifindex. */
export interface FilteredNetns {
  readonly workload: Workload;
  readonly ns: NetnsHandle;
  nsid: number;
  policy: Policy;
  readonly pairs: Map<number, PairState>;
}

/** A veth that appeared before any task in its namespace. */
interface Unclaimed {
  readonly link: Link;
  readonly state: PairState;
  readonly since: number;
  policy: Policy;
}

/** Who an attachment filters, for drop records. */
export interface AttachmentOwner {
  readonly where: string;
  readonly container?: { readonly id: string; readonly name: string; readonly namespace: string };
}

/** A change of slot for one attachment, as PolicySlots.switchAttachments takes it. */
export interface SlotChange {
  attachId: number;
  slot: number;
  dir: number;
}

/** Owner of every program on containers' veths. */
export class VethAttachments {
  readonly #o: VethAttachmentsOptions;
  readonly #log: Logger;
  readonly #rtnl = RtnetlinkClient.open();
  readonly #pool: InstancePool;
  readonly #filtered = new Map<NetnsId, FilteredNetns>();
  readonly #unclaimed = new Map<number, Unclaimed>();
  /**
   * The host's veths to other namespaces, by ifindex, as the last dump or
   * notification described them: where a new workload's veths are looked up
   * (no link dump per container), and what tells a new veth from a known one
   * (every change of a link, an XDP attach or detach included, is notified
   * like a creation).
   */
  readonly #foreignVeths = new Map<number, Link>();

  constructor(opts: VethAttachmentsOptions) {
    this.#o = opts;
    this.#log = opts.log;
    this.#pool = new InstancePool(opts.dp, opts.slots, {
      ids: opts.ids,
      spare: opts.spareInstances,
    });
  }

  /**
   * Loads the spare instances and notes the veths that exist (found through
   * their tasks, not as new); adopts the unclaimed veths an earlier agent
   * left filtered, with a fresh claim window.
   */
  start(): void {
    this.#pool.refill();
    for (const l of this.#rtnl.listLinks()) {
      if (!isForeignVeth(l)) continue;
      this.#foreignVeths.set(l.index, l);
      const left = this.#o.left?.takeVeth(l.index);
      if (left) this.#adoptUnclaimed(l, left);
    }
  }

  #adoptUnclaimed(link: Link, left: LeftLink): void {
    const sel = this.#o.select(null);
    const pair: VethPair = {
      hostIndex: link.index,
      hostName: link.name,
      peerIndex: link.linkIndex!,
    };
    try {
      const egress = this.#attachOne(link.index, sel.slot, DIR_EGRESS, {
        pin: this.#o.pins.vethLink(link.index),
        left,
      });
      this.#unclaimed.set(link.index, {
        link,
        state: { pair, egress },
        since: performance.now(),
        policy: sel.policy,
      });
    } catch (e) {
      this.#log.warn("could not adopt the filter of veth {iface}: {error}", {
        iface: link.name,
        error: describeError(e),
      });
    }
  }

  /** The spare instances: whether the pool is full, and loading one more. */
  get poolFull(): boolean {
    return this.#pool.full;
  }

  refillOne(): void {
    this.#pool.refillOne();
  }

  /** Filtered namespaces. */
  get size(): number {
    return this.#filtered.size;
  }

  get(netns: NetnsId): FilteredNetns | undefined {
    return this.#filtered.get(netns);
  }

  all(): FilteredNetns[] {
    return [...this.#filtered.values()];
  }

  /**
   * Filters a new workload in namespace `ns` (kept open until {@link release}):
   * every veth pair to it, both ends, with the policy its identity selects.
   */
  filter(workload: Workload, ns: NetnsHandle): FilteredNetns {
    const selected = this.#o.select(identityOf(workload) ?? null);
    const f: FilteredNetns = {
      workload,
      ns,
      nsid: nsidOf(this.#rtnl, ns.fd),
      policy: selected.policy,
      pairs: new Map(),
    };
    this.#filtered.set(ns.id, f);
    for (const pair of vethPairsTo([...this.#foreignVeths.values()], f.nsid)) {
      this.#attachPair(f, pair, selected.slot);
    }
    return f;
  }

  /** Detaches and frees everything kept for namespace `netns` (pins included), and closes it. */
  release(netns: NetnsId): FilteredNetns | undefined {
    const f = this.#filtered.get(netns);
    if (!f) return undefined;
    this.#filtered.delete(netns);
    for (const p of f.pairs.values()) this.#freePair(p);
    f.pairs.clear();
    this.#o.pins.removeNetnsIfEmpty(netns);
    f.ns.close();
    return f;
  }

  /**
   * Selects the policy of namespace `netns` again (its tasks or their labels
   * changed) and switches its attachments to it. Returns the old policy when it changed.
   */
  reselect(netns: NetnsId): Policy | undefined {
    const f = this.#filtered.get(netns);
    if (!f) return undefined;
    const sel = this.#o.select(identityOf(f.workload) ?? null);
    if (sel.policy === f.policy) return undefined;
    const old = f.policy;
    f.policy = sel.policy;
    this.#o.slots.switchAttachments(sideSwitches(f.pairs.values(), sel.slot));
    return old;
  }

  /**
   * Filters both ends of `pair` for `f` (reusing an unclaimed host end, or
   * adopting the ends an earlier agent left), with the policy in `slot`.
   */
  #attachPair(f: FilteredNetns, pair: VethPair, slot: number): void {
    const netns = f.workload.netns;
    const pins = this.#o.pins;
    pins.ensureNetns(netns);
    const egressPin = pins.sideLink(netns, "egress", pair.hostIndex);
    const unclaimed = this.#unclaimed.get(pair.hostIndex);
    let state: PairState;
    if (unclaimed) {
      this.#unclaimed.delete(pair.hostIndex);
      state = unclaimed.state;
      if (unclaimed.policy !== f.policy) {
        this.#o.slots.switchAttachments(sideSwitches([state], slot));
      }
      if (state.egress) movePin(state.egress, egressPin);
    } else {
      state = { pair };
    }
    f.pairs.set(pair.hostIndex, state);
    const left = this.#o.left;
    try {
      state.egress ??= this.#attachOne(pair.hostIndex, slot, DIR_EGRESS, {
        pin: egressPin,
        left: left?.takeSide(netns, "egress", pair.hostIndex),
      });
      state.ingress ??= this.#attachOne(pair.peerIndex, slot, DIR_INGRESS, {
        nsFd: f.ns.fd,
        pin: pins.sideLink(netns, "ingress", pair.peerIndex),
        left: left?.takeSide(netns, "ingress", pair.peerIndex),
      });
    } catch (e) {
      this.#log.error("could not filter {iface} of {workload}: {error}", {
        iface: pair.hostName,
        workload: describeWorkload(f.workload),
        error: describeError(e),
      });
    }
  }

  /**
   * A program pointed at `slot`, attached to `ifindex` (in `nsFd`'s namespace
   * if given) with its link pinned at `pin`: from the pool, or, adopting
   * `left`, an instance of the same attach id switched in on its link.
   */
  #attachOne(
    ifindex: number,
    slot: number,
    dir: number,
    opts: { nsFd?: number; pin: string; left?: LeftLink },
  ): AttachedSide {
    const { nsFd, left } = opts;
    const prog = left ? this.#pool.takeId(left.attachId) : this.#pool.take();
    try {
      // For an adopted side this switches the old program to `slot` at once (one word).
      this.#o.slots.configureAttachment(prog.attachId, slot, dir, { learn: true });
      const mode = this.#o.xdpMode === "auto" ? VETH_AUTO_MODE : this.#o.xdpMode;
      const side = left
        ? adoptSide(prog, left, nsFd)
        : attachSide(prog, ifindex, mode, { nsFd, pin: opts.pin });
      this.#log.debug(
        `program {id} (attachment {attach}) ${
          left ? "adopted" : "on"
        } ifindex {ifindex} {where}, {mode}`,
        {
          id: prog.id,
          attach: prog.attachId,
          ifindex,
          where: nsFd === undefined ? "here" : "in the container",
          mode: side.mode,
        },
      );
      return side;
    } catch (e) {
      this.#pool.give(prog);
      throw e;
    }
  }

  /** Detaches a pair's programs (where still attached) and gives them back. */
  #freePair(p: PairState): void {
    for (const side of [p.ingress, p.egress]) {
      if (!side) continue;
      try {
        detachSide(side);
      } catch (e) {
        this.#log.warn("could not detach from ifindex {ifindex}: {error}", {
          ifindex: side.ifindex,
          error: describeError(e),
        });
      }
      this.#log.debug("program {id} (attachment {attach}) off ifindex {ifindex}", {
        id: side.prog.id,
        attach: side.prog.attachId,
        ifindex: side.ifindex,
      });
      this.#pool.give(side.prog);
    }
    p.egress = p.ingress = undefined;
  }

  // --- links -----------------------------------------------------------------

  /** A link notification from the host's namespace. */
  onLink(e: LinkEvent): void {
    if (e.type === "overrun") {
      this.#rescanLinks();
      return;
    }
    if (e.type === "del") {
      this.#foreignVeths.delete(e.link.index);
      this.#linkGone(e.link.index);
      return;
    }
    if (!isForeignVeth(e.link)) return;
    const known = this.#foreignVeths.has(e.link.index);
    this.#foreignVeths.set(e.link.index, e.link);
    if (!known) this.#linkSeen(e.link);
  }

  /** A host-side veth to another namespace appeared: filter it for its workload, or unclaimed. */
  #linkSeen(link: Link): void {
    if (this.#unclaimed.has(link.index)) return;
    for (const f of this.#filtered.values()) if (f.pairs.has(link.index)) return;
    const pair: VethPair = {
      hostIndex: link.index,
      hostName: link.name,
      peerIndex: link.linkIndex!,
    };
    for (const f of this.#filtered.values()) {
      if (f.nsid < 0) f.nsid = nsidOf(this.#rtnl, f.ns.fd);
      if (f.nsid !== link.linkNetnsid) continue;
      this.#attachPair(f, pair, this.#o.select(identityOf(f.workload) ?? null).slot);
      this.#log.info("{workload}: new interface {iface} filtered with policy {policy}", {
        workload: describeWorkload(f.workload),
        iface: link.name,
        policy: f.policy.name,
      });
      return;
    }
    const sel = this.#o.select(null);
    try {
      const egress = this.#attachOne(link.index, sel.slot, DIR_EGRESS, {
        pin: this.#o.pins.vethLink(link.index),
      });
      this.#unclaimed.set(link.index, {
        link,
        state: { pair, egress },
        since: performance.now(),
        policy: sel.policy,
      });
      this.#log.debug("{iface}: veth to another namespace, filtered with {policy} until claimed", {
        iface: link.name,
        policy: sel.policy.name,
      });
    } catch (e) {
      this.#log.warn("could not filter new veth {iface}: {error}", {
        iface: link.name,
        error: describeError(e),
      });
    }
  }

  /** A host link is gone (with its peer): forget the programs that were on the pair. */
  #linkGone(index: number): void {
    const u = this.#unclaimed.get(index);
    if (u) {
      this.#unclaimed.delete(index);
      this.#freePair(u.state);
      return;
    }
    for (const f of this.#filtered.values()) {
      const p = f.pairs.get(index);
      if (!p) continue;
      f.pairs.delete(index);
      this.#freePair(p);
      this.#log.info("{workload}: interface {iface} is gone", {
        workload: describeWorkload(f.workload),
        iface: p.pair.hostName,
      });
      return;
    }
  }

  /** After lost notifications: compare with a fresh link dump. */
  #rescanLinks(): void {
    const links = this.#rtnl.listLinks();
    const present = new Set(links.map((l) => l.index));
    const known = [
      ...this.#unclaimed.keys(),
      ...[...this.#filtered.values()].flatMap((f) => [...f.pairs.keys()]),
    ];
    for (const index of known) if (!present.has(index)) this.#linkGone(index);
    for (const index of this.#foreignVeths.keys()) {
      if (!present.has(index)) this.#foreignVeths.delete(index);
    }
    for (const l of links) {
      if (!isForeignVeth(l)) continue;
      const known = this.#foreignVeths.has(l.index);
      this.#foreignVeths.set(l.index, l);
      if (!known) this.#linkSeen(l);
    }
  }

  /** Releases the unclaimed veths older than the claim window. */
  expireUnclaimed(): void {
    const limit = this.#o.claimMs ?? 10_000;
    for (const [index, u] of this.#unclaimed) {
      if (performance.now() - u.since < limit) continue;
      this.#unclaimed.delete(index);
      this.#freePair(u.state);
      this.#log.info("{iface}: no container runs behind it; released", { iface: u.link.name });
    }
  }

  // --- reloads and reports ---------------------------------------------------

  /**
   * For a policy reload: every attachment's slot under `select` (the new
   * policies), and a commit to call once they are switched.
   */
  planSwitch(select: Selector): { changes: SlotChange[]; commit(): void } {
    const changes: SlotChange[] = [];
    const next = new Map<FilteredNetns | Unclaimed, Policy>();
    for (const f of this.#filtered.values()) {
      const sel = select(identityOf(f.workload) ?? null);
      changes.push(...sideSwitches(f.pairs.values(), sel.slot));
      next.set(f, sel.policy);
    }
    const fallback = select(null);
    for (const u of this.#unclaimed.values()) {
      changes.push(...sideSwitches([u.state], fallback.slot));
      next.set(u, fallback.policy);
    }
    return {
      changes,
      commit: () => {
        for (const [target, policy] of next) {
          if ("workload" in target && target.policy.name !== policy.name) {
            this.#log.info("{workload} now uses policy {policy} (was {old})", {
              workload: describeWorkload(target.workload),
              policy: policy.name,
              old: target.policy.name,
            });
          }
          target.policy = policy;
        }
      },
    };
  }

  /**
   * Who an attach id filters, for drop logs: "pod shop/web-0 egress
   * (vethXYZ)", and the container (id, name, containerd namespace).
   */
  describeAttachment(attachId: number): AttachmentOwner | undefined {
    for (const f of this.#filtered.values()) {
      for (const p of f.pairs.values()) {
        const side = p.egress?.prog.attachId === attachId
          ? "egress"
          : p.ingress?.prog.attachId === attachId
          ? "ingress"
          : null;
        if (!side) continue;
        const t = identityTask(f.workload);
        return {
          where: `${describeWorkload(f.workload)} ${side} (${p.pair.hostName})`,
          container: t && { id: t.containerId, name: containerNameOf(t), namespace: t.namespace },
        };
      }
    }
    for (const u of this.#unclaimed.values()) {
      if (u.state.egress?.prog.attachId === attachId) {
        return { where: `${u.link.name} (unclaimed veth)` };
      }
    }
    return undefined;
  }

  /** What the state records of every side and unclaimed veth. */
  records(): (SideRecord | VethRecord)[] {
    const out: (SideRecord | VethRecord)[] = [];
    for (const f of this.#filtered.values()) {
      const t = identityTask(f.workload);
      const container = {
        id: t?.containerId ?? "",
        name: t ? containerNameOf(t) : "",
        namespace: t?.namespace ?? "",
      };
      for (const p of f.pairs.values()) {
        for (const [side, a] of [["egress", p.egress], ["ingress", p.ingress]] as const) {
          if (!a) continue;
          out.push({
            kind: "container",
            attachId: a.prog.attachId,
            netns: f.workload.netns,
            side,
            ifindex: a.ifindex,
            hostIface: p.pair.hostName,
            mode: a.mode,
            policy: f.policy.name,
            container,
            pid: t?.pid ?? 0,
          });
        }
      }
    }
    for (const u of this.#unclaimed.values()) {
      const a = u.state.egress;
      if (!a) continue;
      out.push({
        kind: "veth",
        attachId: a.prog.attachId,
        ifindex: a.ifindex,
        iface: u.link.name,
        mode: a.mode,
        policy: u.policy.name,
      });
    }
    return out;
  }

  /**
   * Leaves every side enforcing (`--keep-on-exit`): links stay pinned, attach
   * entries as they are; only this process's descriptors are closed.
   */
  keep(): void {
    const all = [
      ...[...this.#filtered.values()].flatMap((f) => [...f.pairs.values()]),
      ...[...this.#unclaimed.values()].map((u) => u.state),
    ];
    for (const p of all) {
      for (const side of [p.ingress, p.egress]) {
        if (!side) continue;
        keepSide(side);
        this.#pool.keep(side.prog);
      }
    }
    for (const f of this.#filtered.values()) f.ns.close();
    this.#filtered.clear();
    this.#unclaimed.clear();
    this.#pool.close();
    this.#rtnl.close();
  }

  /**
   * Releases the unclaimed veths and closes the pool and the netlink socket;
   * the owner releases the filtered namespaces first (to log each).
   */
  close(): void {
    for (const u of this.#unclaimed.values()) this.#freePair(u.state);
    this.#unclaimed.clear();
    for (const netns of [...this.#filtered.keys()]) this.release(netns);
    this.#pool.close();
    this.#rtnl.close();
  }
}

/** The slot changes that point every program of `pairs` at `slot`. */
function sideSwitches(pairs: Iterable<PairState>, slot: number): SlotChange[] {
  const out: SlotChange[] = [];
  for (const p of pairs) {
    if (p.egress) out.push({ attachId: p.egress.prog.attachId, slot, dir: DIR_EGRESS });
    if (p.ingress) out.push({ attachId: p.ingress.prog.attachId, slot, dir: DIR_INGRESS });
  }
  return out;
}
