/**
 * The workload table: containerd tasks grouped by the network namespace they
 * run in. Containers that share a namespace (a Kubernetes pod: its sandbox
 * and app containers) are one workload with one attachment; the policy is
 * selected by the sandbox's labels, or outside Kubernetes by those of the
 * namespace's first container (SPEC §4). Pure bookkeeping: no I/O.
 *
 * @module
 */

import type { ContainerIdentity } from "../policy/mod.ts";
import type { NetnsId } from "./netns.ts";

/** The CRI label that tells a pod's sandbox from its app containers. */
export const CRI_KIND_LABEL = "io.cri-containerd.kind";
/** Labels worth showing in logs for Kubernetes pods. */
export const POD_NAME_LABEL = "io.kubernetes.pod.name";
export const POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace";
export const CONTAINER_NAME_LABEL = "io.kubernetes.container.name";

/** A task's name for people: its pod (namespace/name), its Kubernetes container name, or its id. */
export function containerNameOf(t: Task): string {
  const pod = t.labels[POD_NAME_LABEL];
  if (pod) return `${t.labels[POD_NAMESPACE_LABEL] ?? "?"}/${pod}`;
  return t.labels[CONTAINER_NAME_LABEL] ?? t.containerId;
}

/** A container's init task, as containerd reports it. */
export interface Task {
  /** containerd namespace ("default", "k8s.io", ...). */
  readonly namespace: string;
  readonly containerId: string;
  readonly pid: number;
  readonly labels: Readonly<Record<string, string>>;
}

/** The key of a task: its containerd namespace and container id. */
export function taskKey(namespace: string, containerId: string): string {
  return `${namespace}/${containerId}`;
}

/** The tasks sharing one network namespace, in the order they arrived. */
export interface Workload {
  readonly netns: NetnsId;
  readonly tasks: Map<string, Task>;
}

/** The task whose labels select a workload's policy: its sandbox, else its first task. */
export function identityTask(w: Workload): Task | undefined {
  let first: Task | undefined;
  for (const t of w.tasks.values()) {
    if (t.labels[CRI_KIND_LABEL] === "sandbox") return t;
    first ??= t;
  }
  return first;
}

/** What a workload's policy is selected by. */
export function identityOf(w: Workload): ContainerIdentity | undefined {
  const t = identityTask(w);
  return t && { namespace: t.namespace, labels: { ...t.labels } };
}

/** A human name for a workload in logs: the pod (namespace/name) or the identity container's id. */
export function describeWorkload(w: Workload): string {
  const t = identityTask(w);
  if (!t) return "(no task)";
  const pod = t.labels[POD_NAME_LABEL];
  if (pod) return `pod ${t.labels[POD_NAMESPACE_LABEL] ?? "?"}/${pod}`;
  return `container ${t.namespace}/${t.containerId}`;
}

/** Tasks by key and workloads by namespace: one owner for both maps. */
export class WorkloadTable {
  readonly #byNetns = new Map<NetnsId, Workload>();
  readonly #netnsOfTask = new Map<string, NetnsId>();

  /** The workload of network namespace `netns`, if any task runs there. */
  get(netns: NetnsId): Workload | undefined {
    return this.#byNetns.get(netns);
  }

  /** The namespace task `key` was recorded in. */
  netnsOf(key: string): NetnsId | undefined {
    return this.#netnsOfTask.get(key);
  }

  /** Task `key`, if recorded. */
  task(key: string): Task | undefined {
    const netns = this.#netnsOfTask.get(key);
    return netns === undefined ? undefined : this.#byNetns.get(netns)?.tasks.get(key);
  }

  /** Every workload. */
  all(): Workload[] {
    return [...this.#byNetns.values()];
  }

  /** Every recorded task key. */
  taskKeys(): string[] {
    return [...this.#netnsOfTask.keys()];
  }

  get size(): number {
    return this.#byNetns.size;
  }

  /**
   * Records `task` in namespace `netns`. `created` says whether this made a
   * new workload (the caller attaches it) or joined an existing one.
   */
  add(task: Task, netns: NetnsId): { workload: Workload; created: boolean } {
    const key = taskKey(task.namespace, task.containerId);
    const was = this.#netnsOfTask.get(key);
    if (was !== undefined && was !== netns) this.remove(key);
    let workload = this.#byNetns.get(netns);
    const created = !workload;
    if (!workload) {
      workload = { netns, tasks: new Map() };
      this.#byNetns.set(netns, workload);
    }
    workload.tasks.set(key, task);
    this.#netnsOfTask.set(key, netns);
    return { workload, created };
  }

  /**
   * Forgets task `key`. `emptied` is its workload when that was the last
   * task in its namespace (the caller releases it); undefined otherwise.
   */
  remove(key: string): { workload?: Workload; emptied: boolean } {
    const netns = this.#netnsOfTask.get(key);
    if (netns === undefined) return { emptied: false };
    this.#netnsOfTask.delete(key);
    const workload = this.#byNetns.get(netns)!;
    workload.tasks.delete(key);
    if (workload.tasks.size > 0) return { workload, emptied: false };
    this.#byNetns.delete(netns);
    return { workload, emptied: true };
  }
}
