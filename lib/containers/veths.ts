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
import { RtnetlinkClient } from "../netlink/rtnetlink.ts";
import type { LinkEvent } from "../netlink/link_subscription.ts";
import type { Link } from "../netlink/link.ts";
import type { Datapath, XdpMode } from "../datapath/object.ts";
import type { PolicySlots } from "../datapath/policy_slots.ts";
import { DIR_EGRESS, DIR_INGRESS } from "../datapath/layout.ts";
import type { ContainerIdentity } from "../policy/select.ts";
import type { Policy } from "../policy/types.ts";
import {
  isForeignVeth,
  type NetnsHandle,
  type NetnsId,
  nsidOf,
  type VethPair,
  vethPairsTo,
} from "./netns.ts";
import { type AttachedSide, attachSide, detachSide, InstancePool } from "./side.ts";
import { describeWorkload, identityOf, type Workload } from "./workloads.ts";

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
  /** The first attach id containers may use (lower ones are the host interfaces'). */
  readonly firstAttachId: number;
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
      firstId: opts.firstAttachId,
      spare: opts.spareInstances,
    });
  }

  /** Loads the spare instances and notes the veths that exist (found through their tasks, not as new). */
  start(): void {
    this.#pool.refill();
    for (const l of this.#rtnl.listLinks()) {
      if (isForeignVeth(l)) this.#foreignVeths.set(l.index, l);
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

  /** Detaches and frees everything kept for namespace `netns`, and closes it. */
  release(netns: NetnsId): FilteredNetns | undefined {
    const f = this.#filtered.get(netns);
    if (!f) return undefined;
    this.#filtered.delete(netns);
    for (const p of f.pairs.values()) this.#freePair(p);
    f.pairs.clear();
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

  /** Filters both ends of `pair` for `f` (reusing an unclaimed host end), with the policy in `slot`. */
  #attachPair(f: FilteredNetns, pair: VethPair, slot: number): void {
    const unclaimed = this.#unclaimed.get(pair.hostIndex);
    let state: PairState;
    if (unclaimed) {
      this.#unclaimed.delete(pair.hostIndex);
      state = unclaimed.state;
      if (unclaimed.policy !== f.policy) {
        this.#o.slots.switchAttachments(sideSwitches([state], slot));
      }
    } else {
      state = { pair };
    }
    f.pairs.set(pair.hostIndex, state);
    try {
      state.egress ??= this.#attachOne(pair.hostIndex, slot, DIR_EGRESS);
      state.ingress ??= this.#attachOne(pair.peerIndex, slot, DIR_INGRESS, f.ns.fd);
    } catch (e) {
      this.#log.error("could not filter {iface} of {workload}: {error}", {
        iface: pair.hostName,
        workload: describeWorkload(f.workload),
        error: errorText(e),
      });
    }
  }

  /** A program from the pool, pointed at `slot`, attached to `ifindex` (in `nsFd`'s namespace if given). */
  #attachOne(ifindex: number, slot: number, dir: number, nsFd?: number): AttachedSide {
    const prog = this.#pool.take();
    try {
      this.#o.slots.configureAttachment(prog.attachId, slot, dir, { learn: true });
      const mode = this.#o.xdpMode === "auto" ? VETH_AUTO_MODE : this.#o.xdpMode;
      const side = attachSide(prog, ifindex, mode, nsFd);
      this.#log.debug("program {id} (attachment {attach}) on ifindex {ifindex} {where}, {mode}", {
        id: prog.id,
        attach: prog.attachId,
        ifindex,
        where: nsFd === undefined ? "here" : "in the container",
        mode: side.mode,
      });
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
          error: errorText(e),
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
      const egress = this.#attachOne(link.index, sel.slot, DIR_EGRESS);
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
        error: errorText(e),
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

  /** Who an attach id filters, for drop logs: "pod shop/web-0 egress (vethXYZ)". */
  describeAttachment(attachId: number): string | undefined {
    for (const f of this.#filtered.values()) {
      for (const p of f.pairs.values()) {
        const side = p.egress?.prog.attachId === attachId
          ? "egress"
          : p.ingress?.prog.attachId === attachId
          ? "ingress"
          : null;
        if (side) return `${describeWorkload(f.workload)} ${side} (${p.pair.hostName})`;
      }
    }
    for (const u of this.#unclaimed.values()) {
      if (u.state.egress?.prog.attachId === attachId) return `${u.link.name} (unclaimed veth)`;
    }
    return undefined;
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

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
