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
 *   ifindex, lib/containers/netns.ts) and filtered on both ends
 *   (lib/containers/veths.ts), including veths that appear before any task
 *   runs behind them, so the first packet is filtered.
 *
 * Everything that changes state (containerd events, link notifications,
 * reloads) runs through one queue, in arrival order.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { LinkSubscription } from "../netlink/mod.ts";
import type { AttachIds, Datapath, PolicySlots, XdpMode } from "../datapath/mod.ts";
import type { Leftovers, PinSet, SideRecord, VethRecord } from "../persist/mod.ts";
import {
  ContainerdClient,
  type ContainerdEvent,
  ContainerdWatcher,
  type RunningTask,
} from "../containerd/mod.ts";
import { hostNetnsId, NetnsHandle, type NetnsId } from "./netns.ts";
import { type AttachmentOwner, type Selector, type SlotChange, VethAttachments } from "./veths.ts";
import { describeWorkload, identityTask, type Task, taskKey, WorkloadTable } from "./workloads.ts";
import { describeError } from "../base/mod.ts";

export type { SlotSelection } from "./veths.ts";

/** What containers mode needs from the agent. */
export interface ContainersOptions {
  readonly socket: string;
  /** containerd namespaces to follow; empty: all. */
  readonly namespaces: readonly string[];
  readonly xdpMode: "auto" | XdpMode;
  readonly log: Logger;
  readonly dp: Datapath;
  readonly slots: PolicySlots;
  /** Attach ids, shared with the host interfaces. */
  readonly ids: AttachIds;
  /** Where every link is pinned. */
  readonly pins: PinSet;
  /** What an earlier agent left: adopted as containers are found again, the rest collected. */
  readonly left?: Leftovers;
  /** Called after each change of the attachments (the agent records them). */
  readonly onChange?: () => void;
  /** Called once the first list of tasks is handled (and what was left, collected). */
  readonly onSettled?: () => void;
  /** The policy in force for a container; null identity: one without labels (unclaimed veths). */
  readonly select: Selector;
  /** How long a new veth without a task in its namespace stays filtered (default 10 s). */
  readonly claimMs?: number;
  /** Instances kept loaded ahead (default 4). */
  readonly spareInstances?: number;
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
  readonly #veths: VethAttachments;
  readonly #table = new WorkloadTable();
  /** Tasks in the host's namespace: known, so their exits are not mistaken for unknown ones. */
  readonly #hostTasks = new Set<string>();
  readonly #hostNetns: NetnsId;
  readonly #client: ContainerdClient;
  readonly #watcher: ContainerdWatcher;
  #links?: LinkSubscription;
  #queue: Promise<void> = Promise.resolve();
  #claimTimer?: ReturnType<typeof setInterval>;
  #stopped = false;
  /** Queued steps not finished yet. */
  #pending = 0;
  #refillTimer?: ReturnType<typeof setTimeout>;
  /** The last connection state, and whether attempts have been failing since the last connect. */
  #state = "";
  #failing = false;
  /** The last 1,000 attach latencies (for metrics and benchmarks). */
  readonly latencies: AttachLatency[] = [];
  /** Called with each new attach latency (metrics). */
  onLatency?: (l: AttachLatency) => void;
  #settled = false;

  constructor(opts: ContainersOptions) {
    this.#o = opts;
    this.#log = opts.log;
    this.#hostNetns = hostNetnsId();
    this.#veths = new VethAttachments(opts);
    this.#client = ContainerdClient.connect(opts.socket);
    this.#watcher = new ContainerdWatcher(
      { socket: opts.socket, namespaces: [...opts.namespaces] },
      {
        onSnapshot: (tasks) => this.#enqueue(() => this.#reconcile(tasks)),
        // An event that cannot be handled (containerd did not answer a call about it)
        // goes back to the watcher, which reconnects and resyncs: nothing is left unfiltered.
        onEvent: (e) => this.#enqueue(() => this.#onEvent(e), { rethrow: true }),
        onState: (state, detail) => this.#onState(state, detail),
      },
    );
  }

  /** Starts following links and containerd. Never fails for containerd being absent. */
  start(): void {
    this.#veths.start();
    this.#links = LinkSubscription.start((e) => void this.#enqueue(() => this.#veths.onLink(e)));
    this.#links.done.catch((e) =>
      this.#log.error("link notifications stopped: {error}; new veths are found at task events", {
        error: describeError(e),
      })
    );
    this.#watcher.start();
    this.#claimTimer = setInterval(
      () => void this.#enqueue(() => this.#veths.expireUnclaimed()),
      1000,
    );
  }

  /** Whether the containerd event stream is up. */
  get connected(): boolean {
    return this.#watcher.connected;
  }

  /** Workloads filtered now. */
  get workloads(): number {
    return this.#veths.size;
  }

  /**
   * Runs `fn` after everything queued before it. Errors are logged; with
   * `rethrow` the returned promise rejects with them too (the queue goes on).
   */
  #enqueue(fn: () => void | Promise<void>, opts: { rethrow?: boolean } = {}): Promise<void> {
    this.#pending++;
    const next = this.#queue.then(async () => {
      try {
        if (!this.#stopped) {
          await fn();
          this.#o.onChange?.();
        }
      } catch (e) {
        this.#log.error("containers mode: {error}", { error: describeError(e) });
        if (opts.rethrow) throw e;
      } finally {
        this.#pending--;
        this.#scheduleRefill();
      }
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  /**
   * Loads spare program instances one at a time, each in its own macrotask
   * and only while nothing is queued, so a container event never waits
   * behind the verifier for an instance it does not need.
   */
  #scheduleRefill(): void {
    if (this.#refillTimer !== undefined || this.#stopped || this.#veths.poolFull) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      if (this.#pending > 0 || this.#stopped) return; // the queue schedules it again
      try {
        this.#veths.refillOne();
      } catch (e) {
        this.#log.warn("could not load a spare program instance: {error}", {
          error: describeError(e),
        });
        return;
      }
      this.#scheduleRefill();
    }, 0);
  }

  /** Resolves once everything queued so far is handled. */
  async idle(): Promise<void> {
    await this.#queue;
  }

  /** Logs connection state changes; repeated failed attempts only at debug level. */
  #onState(state: string, detail: { error?: string; retryInMs?: number }): void {
    const socket = this.#o.socket;
    const was = this.#state;
    this.#state = state;
    if (state === "connected") {
      this.#failing = false;
      this.#log.info("connected to containerd at {socket}", { socket });
    } else if (state === "disconnected") {
      const failedAgain = was === "connecting" && this.#failing;
      this.#failing = true;
      const message =
        "containerd at {socket} is unreachable ({error}); filters stay, retrying in {retry} ms";
      const props = { socket, error: detail.error ?? "stream ended", retry: detail.retryInMs ?? 0 };
      if (failedAgain) this.#log.debug(message, props);
      else this.#log.warn(message, props);
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
      if (this.#hostTasks.has(key)) continue;
      const known = this.#table.task(key);
      if (known?.pid === t.pid) continue;
      if (known && this.#sameNetns(key, t.pid)) {
        // Same container, new task (restarted while we were away), same namespace.
        this.#table.add(t, this.#table.netnsOf(key)!);
        continue;
      }
      if (known) {
        this.#taskGone(key, "its task was replaced");
        released++;
      }
      this.#taskArrived(t, null);
      added++;
    }
    this.#log.info(
      "containerd resync: {tasks} tasks, {workloads} filtered network namespaces " +
        "({added} new, {released} released)",
      { tasks: tasks.length, workloads: this.#veths.size, added, released },
    );
    if (!this.#settled) {
      // Every running container has been found: what an earlier agent left for the others
      // belongs to containers that ended while no agent ran.
      this.#settled = true;
      const collected = this.#o.left?.collectContainers(this.#o.pins) ?? 0;
      if (collected) {
        this.#log.info("collected {n} filters of containers that ended while no agent ran", {
          n: collected,
        });
      }
      this.#o.onSettled?.();
    }
  }

  /** Whether the first list of tasks has been handled. */
  get settled(): boolean {
    return this.#settled;
  }

  /** What the state records of every container attachment. */
  records(): (SideRecord | VethRecord)[] {
    return this.#veths.records();
  }

  /** Whether process `pid` runs in the namespace task `key` was recorded in. */
  #sameNetns(key: string, pid: number): boolean {
    try {
      const ns = NetnsHandle.ofPid(pid);
      ns.close();
      return ns.id === this.#table.netnsOf(key);
    } catch {
      return false;
    }
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
        this.#reselect(netns);
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
        error: describeError(e),
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
      this.#log.info("container {id} ({namespace}) joins {workload}", {
        id: task.containerId,
        namespace: task.namespace,
        workload: describeWorkload(workload),
        policy: this.#veths.get(workload.netns)?.policy.name,
      });
      this.#reselect(workload.netns);
      return;
    }
    let f;
    try {
      f = this.#veths.filter(workload, ns);
    } catch (e) {
      this.#table.remove(key);
      if (!this.#veths.release(ns.id)) ns.close();
      throw e;
    }
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
    this.onLatency?.(l);
    return l;
  }

  /** A task ended: its namespace is released when it was the last one there. */
  #taskGone(key: string, why: string): void {
    if (this.#hostTasks.delete(key)) return;
    const { workload, emptied } = this.#table.remove(key);
    if (!workload) return;
    if (!emptied) {
      this.#reselect(workload.netns);
      return;
    }
    this.#release(workload.netns, key, why);
  }

  /** Detaches and frees everything kept for a workload, and closes its namespace. */
  #release(netns: NetnsId, lastTask: string, why: string): void {
    const ifaces = [...this.#veths.get(netns)?.pairs.values() ?? []].map((p) => p.pair.hostName);
    const f = this.#veths.release(netns);
    if (!f) return;
    const [namespace, id] = splitKey(lastTask);
    this.#log.info("released {container} ({why}): policy {policy} detached", {
      container: `${namespace}/${id}`,
      container_id: id,
      namespace,
      why,
      policy: f.policy.name,
      ifaces: ifaces.join(", ") || "none",
    });
  }

  /** Selects the workload's policy again (its tasks or their labels changed) and switches to it. */
  #reselect(netns: NetnsId): void {
    const old = this.#veths.reselect(netns);
    if (!old) return;
    const f = this.#veths.get(netns)!;
    this.#log.info("{workload} now uses policy {policy} (was {old})", {
      workload: describeWorkload(f.workload),
      policy: f.policy.name,
      old: old.name,
    });
  }

  // --- reloads -------------------------------------------------------------

  /**
   * For a policy reload: every container attachment's slot under `select`
   * (the new policies), and a commit to call once they are switched.
   */
  planSwitch(select: Selector): { changes: SlotChange[]; commit(): void } {
    return this.#veths.planSwitch(select);
  }

  /** Runs `fn` between queued changes (a reload must not interleave with an attach). */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    let result: T;
    const done = this.#enqueue(async () => {
      result = await fn();
    });
    return done.then(() => result);
  }

  /** Who an attach id filters, for drop logs. */
  describeAttachment(attachId: number): AttachmentOwner | undefined {
    return this.#veths.describeAttachment(attachId);
  }

  /**
   * Stops following containerd and detaches every container (SPEC §2), or,
   * with `keep` (`--keep-on-exit`), leaves every container filtered.
   */
  async stop(opts: { keep?: boolean } = {}): Promise<void> {
    clearInterval(this.#claimTimer);
    await this.#watcher.stop();
    await this.#links?.close();
    await this.#queue;
    this.#stopped = true;
    clearTimeout(this.#refillTimer);
    if (opts.keep) {
      this.#veths.keep();
      this.#client.close();
      return;
    }
    for (const f of this.#veths.all()) {
      const t = identityTask(f.workload);
      const key = t ? taskKey(t.namespace, t.containerId) : "?/?";
      this.#release(f.workload.netns, key, "agent stopping");
    }
    this.#veths.close();
    this.#client.close();
  }
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf("/");
  return [key.slice(0, i), key.slice(i + 1)];
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
