/**
 * Containers mode (SPEC §4): every container of a containerd host is
 * filtered in both directions, from before its first packet until its last
 * task ends, with the policy its labels select.
 *
 * - containerd's tasks come from {@link ContainerdWatcher}: a snapshot at
 *   start and after each reconnect (reconciled: what is new is attached, what
 *   is gone released), then events in order.
 * - A task's network namespace is opened through its pid; tasks sharing one
 *   are one workload ({@link WorkloadTable}). The host's own namespace (host
 *   network) gets nothing.
 * - The workload's veth pairs are found by namespace identity (nsid and peer
 *   ifindex, lib/containers/netns.ts). Each pair gets two program instances:
 *   on the host end (egress: what the container sends) and on the container
 *   end inside its namespace (ingress: what enters it), both learning flows so
 *   replies pass (DATAPATH.md §7).
 * - First packet: a veth whose peer is in another namespace is filtered the
 *   moment it appears (link notifications), with the policy a container
 *   without labels gets, before any task exists there. `/tasks/create`
 *   claims it and switches it to the container's own policy. A veth no task
 *   claims within `claimMs` is released (it is not a container's).
 * - Link notifications also attach veths added to a running workload, and
 *   forget those deleted.
 *
 * Everything that changes state runs through one queue, in arrival order.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { RtnetlinkClient } from "../netlink/rtnetlink.ts";
import { type LinkEvent, LinkSubscription } from "../netlink/link_subscription.ts";
import type { Link } from "../netlink/link.ts";
import type { Datapath, XdpMode } from "../datapath/object.ts";
import type { PolicySlots } from "../datapath/policy_slots.ts";
import { DIR_EGRESS, DIR_INGRESS } from "../datapath/layout.ts";
import type { ContainerIdentity } from "../policy/select.ts";
import type { Policy } from "../policy/types.ts";
import { ContainerdClient } from "../containerd/client.ts";
import type { ContainerdEvent } from "../containerd/events.ts";
import { ContainerdWatcher, type RunningTask } from "../containerd/watch.ts";
import {
  hostNetnsId,
  isForeignVeth,
  NetnsHandle,
  type NetnsId,
  nsidOf,
  vethPairsTo,
  type VethPair,
} from "./netns.ts";
import { type AttachedSide, attachSide, detachSide, InstancePool } from "./side.ts";
import {
  describeWorkload,
  identityOf,
  identityTask,
  type Task,
  taskKey,
  type Workload,
  WorkloadTable,
} from "./workloads.ts";

/** A selected policy and the slot it is installed in. */
export interface SlotSelection {
  readonly policy: Policy;
  readonly slot: number;
}

/** What containers mode needs from the agent. */
export interface ContainersOptions {
  readonly socket: string;
  /** containerd namespaces to follow; empty: all. */
  readonly namespaces: readonly string[];
  readonly xdpMode: "auto" | XdpMode;
  readonly log: Logger;
  readonly dp: Datapath;
  readonly slots: PolicySlots;
  /** The first attach id containers may use (lower ones are the host interfaces'). */
  readonly firstAttachId: number;
  /** The policy in force for a container; null identity: one without labels (unclaimed veths). */
  select(identity: ContainerIdentity | null): SlotSelection;
  /** How long a new veth without a task in its namespace stays filtered (default 10 s). */
  readonly claimMs?: number;
  /** Instances kept loaded ahead (default 4). */
  readonly spareInstances?: number;
}

/** One veth pair of a workload (or unclaimed) and the programs on its ends. */
interface PairState {
  readonly pair: VethPair;
  egress?: AttachedSide;
  ingress?: AttachedSide;
}

/** A filtered workload: its namespace, held open, and its attachments. */
interface Filtered {
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

/** Time from a containerd event to a container filtered, for one attach. */
export interface AttachLatency {
  readonly containerId: string;
  /** From the event's receipt by the agent. */
  readonly sinceReceivedMs: number;
  /** From the event's timestamp in containerd (wall clock). */
  readonly sincePublishedMs: number;
}

/** Containers mode: owns every container attachment. */
export class ContainersMode {
  readonly #o: ContainersOptions;
  readonly #log: Logger;
  readonly #rtnl: RtnetlinkClient;
  readonly #pool: InstancePool;
  readonly #table = new WorkloadTable();
  readonly #filtered = new Map<NetnsId, Filtered>();
  readonly #unclaimed = new Map<number, Unclaimed>();
  /**
   * Host ifindexes of the veths to other namespaces seen so far: only a veth
   * not seen before is new (every change of a link, XDP detach included, is
   * notified like a creation).
   */
  readonly #seenVeths = new Set<number>();
  /** Tasks in the host's namespace: known, so their exits are not mistaken for unknown ones. */
  readonly #hostTasks = new Set<string>();
  readonly #hostNetns: NetnsId;
  readonly #client: ContainerdClient;
  readonly #watcher: ContainerdWatcher;
  #links?: LinkSubscription;
  #queue: Promise<void> = Promise.resolve();
  #claimTimer?: ReturnType<typeof setInterval>;
  #stopped = false;
  /** The last 1,000 attach latencies (for metrics and benchmarks). */
  readonly latencies: AttachLatency[] = [];

  constructor(opts: ContainersOptions) {
    this.#o = opts;
    this.#log = opts.log;
    this.#rtnl = RtnetlinkClient.open();
    this.#hostNetns = hostNetnsId();
    this.#pool = new InstancePool(opts.dp, opts.slots, {
      firstId: opts.firstAttachId,
      spare: opts.spareInstances,
    });
    this.#client = ContainerdClient.connect(opts.socket);
    this.#watcher = new ContainerdWatcher(
      { socket: opts.socket, namespaces: [...opts.namespaces] },
      {
        onSnapshot: (tasks) => this.#enqueue(() => this.#reconcile(tasks)),
        onEvent: (e) => this.#enqueue(() => this.#onEvent(e)),
        onState: (state, detail) => this.#onState(state, detail),
      },
    );
  }

  /** Starts following links and containerd. Never fails for containerd being absent. */
  start(): void {
    this.#pool.refill();
    // Veths that exist already are found through their tasks, not as new ones.
    for (const l of this.#rtnl.listLinks()) if (isForeignVeth(l)) this.#seenVeths.add(l.index);
    this.#links = LinkSubscription.start((e) => void this.#enqueue(() => this.#onLink(e)));
    this.#links.done.catch((e) =>
      this.#log.error("link notifications stopped: {error}; new veths are found at task events", {
        error: String(e),
      })
    );
    this.#watcher.start();
    this.#claimTimer = setInterval(() => void this.#enqueue(() => this.#expireUnclaimed()), 1000);
  }

  /** Whether the containerd event stream is up. */
  get connected(): boolean {
    return this.#watcher.connected;
  }

  /** Workloads filtered now. */
  get workloads(): number {
    return this.#filtered.size;
  }

  /** Runs `fn` after everything queued before it; errors are logged, never thrown. */
  #enqueue(fn: () => void | Promise<void>): Promise<void> {
    const next = this.#queue.then(async () => {
      if (this.#stopped) return;
      try {
        await fn();
      } catch (e) {
        this.#log.error("containers mode: {error}", { error: errorText(e) });
      }
      // Spare instances are loaded when nothing else waits.
      try {
        this.#pool.refill();
      } catch (e) {
        this.#log.warn("could not load spare program instances: {error}", { error: errorText(e) });
      }
    });
    this.#queue = next;
    return next;
  }

  /** Resolves once everything queued so far is handled. */
  async idle(): Promise<void> {
    await this.#queue;
  }

  #onState(state: string, detail: { error?: string; retryInMs?: number }): void {
    const socket = this.#o.socket;
    if (state === "connected") {
      this.#log.info("connected to containerd at {socket}", { socket });
    } else if (state === "disconnected") {
      this.#log.warn(
        "containerd at {socket} is unreachable ({error}); filters stay, retrying in {retry} ms",
        { socket, error: detail.error ?? "stream ended", retry: detail.retryInMs ?? 0 },
      );
    } else {
      this.#log.debug("connecting to containerd at {socket}", { socket });
    }
  }

  // --- containerd ----------------------------------------------------------

  /** Reconciles with the full list of tasks: new ones attached, vanished ones released. */
  #reconcile(tasks: readonly RunningTask[]): void {
    const present = new Set(tasks.map((t) => taskKey(t.namespace, t.containerId)));
    let released = 0;
    for (const key of [...this.#table.taskKeys(), ...this.#hostTasks]) {
      if (!present.has(key)) {
        this.#taskGone(key, "not running after resync");
        released++;
      }
    }
    let added = 0;
    for (const t of tasks) {
      const key = taskKey(t.namespace, t.containerId);
      if (this.#table.netnsOf(key) !== undefined || this.#hostTasks.has(key)) continue;
      this.#taskArrived(t, null);
      added++;
    }
    this.#log.info(
      "containerd resync: {tasks} tasks, {workloads} filtered network namespaces " +
        "({added} new, {released} released)",
      { tasks: tasks.length, workloads: this.#filtered.size, added, released },
    );
  }

  async #onEvent(e: ContainerdEvent): Promise<void> {
    switch (e.type) {
      case "task-create":
      case "task-start": {
        const key = taskKey(e.namespace, e.containerId);
        if (this.#table.netnsOf(key) !== undefined || this.#hostTasks.has(key)) return;
        const container = await this.#client.getContainer(e.namespace, e.containerId);
        this.#taskArrived(
          {
            namespace: e.namespace,
            containerId: e.containerId,
            pid: e.pid,
            labels: container?.labels ?? {},
          },
          e,
        );
        return;
      }
      case "task-exit":
        // Exits of exec'd processes do not end the container.
        if (e.execId && e.execId !== e.containerId) return;
        this.#taskGone(taskKey(e.namespace, e.containerId), "task exited");
        return;
      case "task-delete":
        if (e.execId && e.execId !== e.containerId) return;
        this.#taskGone(taskKey(e.namespace, e.containerId), "task deleted");
        return;
      case "container-update": {
        const key = taskKey(e.namespace, e.containerId);
        const netns = this.#table.netnsOf(key);
        if (netns === undefined) return;
        const container = await this.#client.getContainer(e.namespace, e.containerId);
        const w = this.#table.get(netns);
        const old = w?.tasks.get(key);
        if (!w || !old || !container) return;
        w.tasks.set(key, { ...old, labels: container.labels });
        this.#reselect(this.#filtered.get(netns));
        return;
      }
      default:
        return;
    }
  }

  /** A task is running (or created): its namespace is filtered, or joined if it already is. */
  #taskArrived(task: Task, event: ContainerdEvent | null): void {
    const key = taskKey(task.namespace, task.containerId);
    let ns: NetnsHandle;
    try {
      ns = NetnsHandle.ofPid(task.pid);
    } catch (e) {
      this.#log.debug("task {task} (pid {pid}) is already gone: {error}", {
        task: key,
        pid: task.pid,
        error: errorText(e),
      });
      return;
    }
    if (ns.id === this.#hostNetns) {
      ns.close();
      this.#hostTasks.add(key);
      this.#log.info("container {id} ({namespace}) uses the host network: no attachment", {
        id: task.containerId,
        namespace: task.namespace,
      });
      return;
    }
    const { workload, created } = this.#table.add(task, ns.id);
    if (!created) {
      ns.close();
      const f = this.#filtered.get(workload.netns);
      this.#log.info("container {id} ({namespace}) joins {workload}", {
        id: task.containerId,
        namespace: task.namespace,
        workload: describeWorkload(workload),
        policy: f?.policy.name,
      });
      this.#reselect(f);
      return;
    }
    const selected = this.#o.select(identityOf(workload) ?? null);
    const f: Filtered = {
      workload,
      ns,
      nsid: nsidOf(this.#rtnl, ns.fd),
      policy: selected.policy,
      pairs: new Map(),
    };
    this.#filtered.set(ns.id, f);
    const links = this.#rtnl.listLinks();
    for (const pair of vethPairsTo(links, f.nsid)) this.#attachPair(f, pair, selected.slot);
    const t = identityTask(workload)!;
    const sides = [...f.pairs.values()];
    const latency = event ? this.#recordLatency(event, task) : undefined;
    this.#log.info(
      "filtering {workload}: policy {policy} on {ifaces}",
      {
        workload: describeWorkload(workload),
        container_id: t.containerId,
        name: t.labels["io.kubernetes.container.name"] ?? t.containerId,
        namespace: t.namespace,
        policy: f.policy.name,
        ifaces: sides.length
          ? sides.map((s) => `${s.pair.hostName}(+peer ${s.pair.peerIndex})`).join(", ")
          : "no veth yet (attached when one appears)",
        event: event?.type ?? "resync",
        latency_ms: latency?.sincePublishedMs,
        handled_ms: latency?.sinceReceivedMs,
      },
    );
  }

  #recordLatency(event: ContainerdEvent, task: Task): AttachLatency {
    const l: AttachLatency = {
      containerId: task.containerId,
      sinceReceivedMs: round2(performance.now() - event.receivedAt),
      sincePublishedMs: round2(Date.now() - event.timestamp.getTime()),
    };
    this.latencies.push(l);
    if (this.latencies.length > 1000) this.latencies.shift();
    return l;
  }

  /** A task ended: its namespace is released when it was the last one there. */
  #taskGone(key: string, why: string): void {
    if (this.#hostTasks.delete(key)) return;
    const { workload, emptied } = this.#table.remove(key);
    if (!workload) return;
    const f = this.#filtered.get(workload.netns);
    if (!f) return;
    if (!emptied) {
      this.#reselect(f);
      return;
    }
    this.#filtered.delete(workload.netns);
    this.#release(f, key, why);
  }

  /** Detaches and frees everything kept for a workload, and closes its namespace. */
  #release(f: Filtered, lastTask: string, why: string): void {
    for (const p of f.pairs.values()) this.#freePair(p);
    f.pairs.clear();
    f.ns.close();
    const [namespace, id] = splitKey(lastTask);
    this.#log.info("released {container} ({why}): policy {policy} detached", {
      container: `${namespace}/${id}`,
      container_id: id,
      namespace,
      why,
      policy: f.policy.name,
    });
  }

  /** Selects the workload's policy again (its tasks or their labels changed) and switches to it. */
  #reselect(f: Filtered | undefined): void {
    if (!f) return;
    const sel = this.#o.select(identityOf(f.workload) ?? null);
    if (sel.policy === f.policy) return;
    this.#log.info("{workload} now uses policy {policy} (was {old})", {
      workload: describeWorkload(f.workload),
      policy: sel.policy.name,
      old: f.policy.name,
    });
    f.policy = sel.policy;
    this.#o.slots.switchAttachments(this.#sideSwitches(f.pairs.values(), sel.slot));
  }

  // --- veth pairs ----------------------------------------------------------

  /** Filters both ends of `pair` for `f` (reusing an unclaimed host end), with the policy in `slot`. */
  #attachPair(f: Filtered, pair: VethPair, slot: number): void {
    const unclaimed = this.#unclaimed.get(pair.hostIndex);
    let state: PairState;
    if (unclaimed) {
      this.#unclaimed.delete(pair.hostIndex);
      state = unclaimed.state;
      if (unclaimed.policy !== f.policy) {
        this.#o.slots.switchAttachments(this.#sideSwitches([state], slot));
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

  #attachOne(ifindex: number, slot: number, dir: number, nsFd?: number): AttachedSide {
    const prog = this.#pool.take();
    try {
      this.#o.slots.configureAttachment(prog.attachId, slot, dir, { learn: true });
      return attachSide(prog, ifindex, this.#o.xdpMode, nsFd);
    } catch (e) {
      this.#pool.give(prog);
      throw e;
    }
  }

  #sideSwitches(pairs: Iterable<PairState>, slot: number) {
    const out: { attachId: number; slot: number; dir: number }[] = [];
    for (const p of pairs) {
      if (p.egress) out.push({ attachId: p.egress.prog.attachId, slot, dir: DIR_EGRESS });
      if (p.ingress) out.push({ attachId: p.ingress.prog.attachId, slot, dir: DIR_INGRESS });
    }
    return out;
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
      this.#pool.give(side.prog);
    }
    p.egress = p.ingress = undefined;
  }

  #onLink(e: LinkEvent): void {
    if (e.type === "overrun") {
      this.#rescanLinks();
      return;
    }
    if (e.type === "del") {
      this.#seenVeths.delete(e.link.index);
      this.#linkGone(e.link.index);
      return;
    }
    if (isForeignVeth(e.link) && !this.#seenVeths.has(e.link.index)) {
      this.#seenVeths.add(e.link.index);
      this.#linkSeen(e.link);
    }
  }

  /** A host-side veth to another namespace exists: filter it for its workload, or unclaimed. */
  #linkSeen(link: Link): void {
    if (this.#unclaimed.has(link.index)) return;
    for (const f of this.#filtered.values()) if (f.pairs.has(link.index)) return;
    const pair: VethPair = { hostIndex: link.index, hostName: link.name, peerIndex: link.linkIndex! };
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
    for (const index of this.#seenVeths) if (!present.has(index)) this.#seenVeths.delete(index);
    for (const l of links) {
      if (!isForeignVeth(l) || this.#seenVeths.has(l.index)) continue;
      this.#seenVeths.add(l.index);
      this.#linkSeen(l);
    }
  }

  #expireUnclaimed(): void {
    const limit = this.#o.claimMs ?? 10_000;
    for (const [index, u] of this.#unclaimed) {
      if (performance.now() - u.since < limit) continue;
      this.#unclaimed.delete(index);
      this.#freePair(u.state);
      this.#log.info("{iface}: no container runs behind it; released", { iface: u.link.name });
    }
  }

  // --- reloads -------------------------------------------------------------

  /**
   * For a policy reload: every container attachment's slot under `select`
   * (the new policies), and a commit to call once they are switched.
   */
  planSwitch(select: (identity: ContainerIdentity | null) => SlotSelection): {
    changes: { attachId: number; slot: number; dir: number }[];
    commit(): void;
  } {
    const changes: { attachId: number; slot: number; dir: number }[] = [];
    const next = new Map<Filtered | Unclaimed, Policy>();
    for (const f of this.#filtered.values()) {
      const sel = select(identityOf(f.workload) ?? null);
      changes.push(...this.#sideSwitches(f.pairs.values(), sel.slot));
      next.set(f, sel.policy);
    }
    const fallback = select(null);
    for (const u of this.#unclaimed.values()) {
      changes.push(...this.#sideSwitches([u.state], fallback.slot));
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

  /** Runs `fn` between queued changes (a reload must not interleave with an attach). */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    let result: T;
    const done = this.#enqueue(async () => {
      result = await fn();
    });
    return done.then(() => result);
  }

  /** Who an attach id filters, for drop logs: "container ns/id (egress)". */
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

  /** Stops following containerd and detaches every container (fail-open exit, SPEC §2). */
  async stop(): Promise<void> {
    clearInterval(this.#claimTimer);
    await this.#watcher.stop();
    await this.#links?.close();
    await this.#queue;
    this.#stopped = true;
    for (const u of this.#unclaimed.values()) this.#freePair(u.state);
    this.#unclaimed.clear();
    for (const f of this.#filtered.values()) {
      const t = identityTask(f.workload);
      this.#release(f, t ? taskKey(t.namespace, t.containerId) : "?/?", "agent stopping");
    }
    this.#filtered.clear();
    this.#pool.close();
    this.#client.close();
    this.#rtnl.close();
  }
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf("/");
  return [key.slice(0, i), key.slice(i + 1)];
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
