/**
 * {@link ContainerdWatcher}: follows containerd (SPEC §4) — subscribes to its
 * events, takes a snapshot of every live task with its container's labels,
 * and on any failure reconnects with backoff and takes a new snapshot.
 *
 * Nothing is lost between a snapshot and the events: each connection
 * subscribes first and buffers events, then lists namespaces, tasks and
 * labels; the consumer gets the snapshot, then the buffered events, then
 * live ones, one handler call at a time. A buffered event may already be
 * reflected in the snapshot (a task created while the snapshot was taken
 * shows in both), so consumers apply events idempotently: a create/start of
 * a task they have, an exit/delete of one they do not have, are no-ops.
 *
 * @module
 */

import { describeError, getLogger } from "../base/mod.ts";
import { Backoff, type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.ts";
import { ContainerdClient, type TaskInfo, type TaskStatus } from "./client.ts";
import type { ContainerdEvent } from "./events.ts";
import { EventQueue } from "./queue.ts";

/** A task that was alive when a snapshot was taken, with its container's labels. */
export interface RunningTask {
  readonly namespace: string;
  readonly containerId: string;
  /** The init process's pid. */
  readonly pid: number;
  /** Never "stopped"; "created", "running", "paused", "pausing", or "unknown" (shim not answering). */
  readonly status: TaskStatus;
  /** The container's labels. */
  readonly labels: Readonly<Record<string, string>>;
}

/** The watcher's connection state. */
export type WatcherState = "connecting" | "connected" | "disconnected";

/** What goes with a state change. */
export interface WatcherStateDetail {
  /** Why the connection was lost or could not be made ("disconnected"). */
  readonly error?: string;
  /** When the next attempt starts ("disconnected"). */
  readonly retryInMs?: number;
}

/** What a {@link ContainerdWatcher} reports. Handlers run one at a time, in order. */
export interface WatcherHandlers {
  /**
   * After each (re)connect: every live task (init process with a pid, not
   * stopped) of the followed namespaces, with its container's labels. The
   * consumer reconciles its state against it: a task it knew that is
   * missing here is gone.
   */
  onSnapshot(tasks: RunningTask[]): void | Promise<void>;
  /** Each event after the snapshot, in order. */
  onEvent(event: ContainerdEvent): void | Promise<void>;
  /**
   * Connection state changes: "connecting" before each attempt, "connected"
   * once subscribed and the snapshot is taken (just before onSnapshot),
   * "disconnected" with the error and the retry delay. Not called by stop().
   */
  onState(state: WatcherState, detail: WatcherStateDetail): void;
}

/** Options of a {@link ContainerdWatcher}. */
export interface WatcherOptions {
  /** containerd's socket path (a `unix://` prefix is accepted). */
  readonly socket: string;
  /** The namespaces to follow; every namespace when absent or empty. */
  readonly namespaces?: readonly string[];
  /** Retry delays; 100 ms doubling to 5 s by default, reset after each successful connect. */
  readonly backoff?: BackoffOptions;
  /** Deadline of each containerd call (list, get), in milliseconds; 10 s by default. */
  readonly callTimeoutMs?: number;
}

/** How many Containers/Get calls a snapshot has in flight at once. */
const LABEL_LOOKUPS_IN_FLIGHT = 16;

const log = getLogger(["containerd", "watch"]);

/**
 * Follows containerd until stopped: connect, subscribe, snapshot, events;
 * on a broken stream or a failed call, "disconnected", wait, and again.
 * containerd need not be running at start: the watcher keeps retrying.
 * An exception from onSnapshot or onEvent is treated like a broken
 * connection (reconnect, new snapshot), so the consumer resynchronizes.
 */
export class ContainerdWatcher {
  readonly #options: WatcherOptions;
  readonly #handlers: WatcherHandlers;
  readonly #backoff: Backoff;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #connected = false;
  #client: ContainerdClient | undefined;
  #wake: (() => void) | undefined;

  constructor(options: WatcherOptions, handlers: WatcherHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF);
  }

  /** Whether a connection is up and its snapshot was taken. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Starts following containerd (in the background; never throws). Later calls do nothing. */
  start(): void {
    if (this.#loop || this.#stopping) return;
    this.#loop = this.#run().catch((err) => {
      log.error("containerd watcher failed: {error}", { error: describeError(err) });
    });
  }

  /**
   * Stops: cancels the subscription, calls in flight and any retry timer,
   * waits for a handler that is running to return. Resolves when nothing
   * is left (no timer, no socket).
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#client?.close();
    this.#wake?.();
    await this.#loop;
    this.#connected = false;
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      this.#setState("connecting", {});
      const error = await this.#session();
      this.#connected = false;
      if (this.#stopping) break;
      const retryInMs = this.#backoff.next();
      this.#setState("disconnected", { error: describeError(error), retryInMs });
      await this.#sleep(retryInMs);
    }
  }

  /** One connection: subscribe, snapshot, events until it breaks; returns why it ended. */
  async #session(): Promise<Error> {
    if (this.#stopping) return new Error("stopped");
    const client = ContainerdClient.connect(this.#options.socket, {
      callTimeoutMs: this.#options.callTimeoutMs,
    });
    this.#client = client;
    const queue = new EventQueue<ContainerdEvent>();
    const stream = client.subscribe(
      { namespaces: this.#options.namespaces },
      (event) => queue.push(event),
    );
    stream.closed.then((error) =>
      queue.end(error ?? new Error("containerd ended the event stream"))
    );
    try {
      const tasks = await this.#snapshot(client);
      if (this.#stopping) return new Error("stopped");
      this.#connected = true;
      this.#backoff.reset();
      this.#setState("connected", {});
      await this.#call("snapshot", () => this.#handlers.onSnapshot(tasks));
      while (!this.#stopping) {
        const item = await queue.next();
        if (item.done) return item.error ?? new Error("containerd ended the event stream");
        await this.#call("event", () => this.#handlers.onEvent(item.value));
      }
      return new Error("stopped");
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    } finally {
      stream.cancel();
      client.close();
      await stream.closed;
      if (this.#client === client) this.#client = undefined;
    }
  }

  /** Every live task of the followed namespaces, with labels. */
  async #snapshot(client: ContainerdClient): Promise<RunningTask[]> {
    const wanted = this.#options.namespaces ?? [];
    const namespaces = wanted.length > 0 ? [...new Set(wanted)] : await client.namespaces();
    const result: RunningTask[] = [];
    for (const namespace of namespaces) {
      const live = (await client.listTasks(namespace)).filter(isLive);
      const containers = await mapLimited(
        live,
        LABEL_LOOKUPS_IN_FLIGHT,
        (t) => client.getContainer(namespace, t.containerId),
      );
      live.forEach((task, i) => {
        const container = containers[i];
        // No container: deleted since the task list was read; its events follow.
        if (container === null) return;
        result.push({ ...task, labels: container.labels });
      });
    }
    return result;
  }

  /** Runs a handler; its exception becomes an Error that ends the session. */
  async #call(what: string, fn: () => void | Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      throw new Error(`the ${what} handler failed: ${describeError(err)}`, { cause: err });
    }
  }

  #setState(state: WatcherState, detail: WatcherStateDetail): void {
    try {
      this.#handlers.onState(state, detail);
    } catch (err) {
      log.error("containerd watcher state handler failed: {error}", { error: describeError(err) });
    }
  }

  /** Waits `ms`, or less if stop() is called. */
  #sleep(ms: number): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wake = wake;
    });
  }
}

/** A task that may have a network namespace to protect. */
function isLive(task: TaskInfo): boolean {
  return task.status !== "stopped" && task.pid > 0;
}

/** `items.map(fn)`, awaited, with at most `limit` calls in flight. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
