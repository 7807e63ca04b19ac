/**
 * {@link ContainerdClient}: the containerd calls tinyfw makes — namespaces,
 * tasks, containers and the event stream — over containerd's gRPC socket.
 *
 * ```ts
 * const client = ContainerdClient.connect("/run/containerd/containerd.sock");
 * try {
 *   for (const ns of await client.namespaces()) console.log(ns, await client.listTasks(ns));
 * } finally {
 *   client.close();
 * }
 * ```
 *
 * @module
 */

import { type TaskStatus, taskStatusName, type WireContainer, type WireProcess } from "./codec.ts";
import { ContainerdCallError, GRPC_STATUS } from "./errors.ts";
import { type ContainerdEvent, decodeEnvelope } from "./events.ts";
import { namespaceFilters } from "./filters.ts";
import {
  CONTAINERS_GET,
  CONTAINERS_LIST,
  EVENTS_SUBSCRIBE,
  NAMESPACES_LIST,
  TASKS_GET,
  TASKS_LIST,
} from "./methods.ts";
import { RpcChannel, type RpcChannelOptions } from "./rpc.ts";

export type { TaskStatus };

/** A task: the init process of a container. */
export interface TaskInfo {
  readonly namespace: string;
  readonly containerId: string;
  /** The init process's pid (0 once it is gone). */
  readonly pid: number;
  readonly status: TaskStatus;
}

/** A container's metadata. */
export interface ContainerInfo {
  readonly namespace: string;
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The image reference ("" for a container made from a bare root filesystem). */
  readonly image: string;
  /** The runtime's name, e.g. "io.containerd.runc.v2". */
  readonly runtime: string;
}

/** Which events {@link ContainerdClient.subscribe} delivers. */
export interface SubscribeOptions {
  /** Only these namespaces' events; every namespace when absent or empty. */
  readonly namespaces?: readonly string[];
}

/** An event subscription in progress. */
export interface EventStream {
  /**
   * Resolves once the stream is over: with null after {@link cancel} (or a
   * normal end), with the error when it broke (containerd gone, an
   * exception thrown by the event callback...). Never rejects.
   */
  readonly closed: Promise<Error | null>;
  /** Ends the subscription; {@link closed} resolves with null. */
  cancel(): void;
}

/** Options of {@link ContainerdClient.connect}. */
export type ContainerdClientOptions = RpcChannelOptions;

/**
 * A client of one containerd. Cheap to create: it connects on the first
 * call, and again by itself after containerd restarts. Calls made while
 * containerd is away fail at once with `ContainerdUnavailableError`; such a
 * failed attempt makes the channel wait before its next connection attempt
 * (100 ms growing to 1 s), so calls right after containerd is back may fail
 * for that long. A client that made no call meanwhile reconnects at its next
 * call. `ContainerdWatcher` (watch.ts) uses a new client per attempt.
 */
export class ContainerdClient {
  readonly #rpc: RpcChannel;

  private constructor(rpc: RpcChannel) {
    this.#rpc = rpc;
  }

  /**
   * A client of the containerd listening on `socketPath` (a `unix://`
   * prefix is accepted). Does not connect yet; a missing socket shows in
   * the first call, as a `ContainerdUnavailableError`.
   */
  static connect(socketPath: string, options?: ContainerdClientOptions): ContainerdClient {
    return new ContainerdClient(new RpcChannel(socketPath, options));
  }

  /** The socket path. */
  get socket(): string {
    return this.#rpc.socket;
  }

  /** The names of every namespace, sorted. */
  async namespaces(): Promise<string[]> {
    const res = await this.#rpc.unary(NAMESPACES_LIST, { filter: "" });
    return res.namespaces.map((ns) => ns.name).sort();
  }

  /** The tasks of a namespace (init processes, in every status). */
  async listTasks(namespace: string): Promise<TaskInfo[]> {
    const res = await this.#rpc.unary(TASKS_LIST, { filter: "" }, { namespace });
    return res.tasks.map((p) => taskInfoOf(namespace, p));
  }

  /** A container's task, or null when it has none (or no such container exists). */
  async getTask(namespace: string, containerId: string): Promise<TaskInfo | null> {
    try {
      const res = await this.#rpc.unary(TASKS_GET, { containerId }, { namespace });
      return res.process ? taskInfoOf(namespace, res.process, containerId) : null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** A container's metadata (labels...), or null when it does not exist. */
  async getContainer(namespace: string, id: string): Promise<ContainerInfo | null> {
    try {
      const res = await this.#rpc.unary(CONTAINERS_GET, { id }, { namespace });
      return res.container ? containerInfoOf(namespace, res.container) : null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** Every container of a namespace. */
  async listContainers(namespace: string): Promise<ContainerInfo[]> {
    const res = await this.#rpc.unary(CONTAINERS_LIST, { filters: [] }, { namespace });
    return res.containers.map((c) => containerInfoOf(namespace, c));
  }

  /**
   * Subscribes to containerd's events. `onEvent` is called for each, in
   * order, as soon as it arrives; an exception it throws ends the stream
   * with that error. containerd sends only events published after it
   * registered the subscription; there is no replay.
   */
  subscribe(options: SubscribeOptions, onEvent: (event: ContainerdEvent) => void): EventStream {
    let resolveClosed!: (error: Error | null) => void;
    const closed = new Promise<Error | null>((resolve) => resolveClosed = resolve);
    const call = this.#rpc.serverStream(
      EVENTS_SUBSCRIBE,
      { filters: namespaceFilters(options.namespaces) },
      {
        onMessage: (envelope) => onEvent(decodeEnvelope(envelope, performance.now())),
        onEnd: resolveClosed,
      },
    );
    return { closed, cancel: () => call.cancel() };
  }

  /**
   * Ends every call and subscription in flight (their promises reject,
   * streams resolve `closed` with null) and closes the connection. The
   * client is unusable afterwards.
   */
  close(): void {
    this.#rpc.close();
  }
}

function taskInfoOf(namespace: string, p: WireProcess, containerId?: string): TaskInfo {
  return {
    namespace,
    // containerd 1.6 fills `id` (not `container_id`) in Tasks/List.
    containerId: p.containerId || p.id || containerId || "",
    pid: p.pid,
    status: taskStatusName(p.status),
  };
}

function containerInfoOf(namespace: string, c: WireContainer): ContainerInfo {
  return {
    namespace,
    id: c.id,
    labels: { ...c.labels },
    image: c.image,
    runtime: c.runtime?.name ?? "",
  };
}

function isNotFound(err: unknown): boolean {
  return err instanceof ContainerdCallError && err.code === GRPC_STATUS.NOT_FOUND;
}
