/**
 * ContainerdClient and ContainerdWatcher against a fake containerd: a grpc-js
 * server on a unix socket in a temp dir that speaks the four services we use
 * (from our own .proto definitions), so the order of snapshot and events,
 * reconnects, backoff and cleanup can be driven exactly. No privileges needed;
 * tests/containerd/client_test.ts does the same against a real containerd.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { codecs, type DeepPartial, type WireEnvelope } from "../../lib/containerd/codec.ts";
import { ContainerdClient } from "../../lib/containerd/client.ts";
import { ContainerdCallError, ContainerdUnavailableError } from "../../lib/containerd/errors.ts";
import type { ContainerdEvent } from "../../lib/containerd/events.ts";
import {
  CONTAINERS_GET,
  CONTAINERS_LIST,
  EVENTS_SUBSCRIBE,
  NAMESPACES_LIST,
  TASKS_GET,
  TASKS_LIST,
} from "../../lib/containerd/methods.ts";
import type { Method } from "../../lib/containerd/rpc.ts";
import { exitsAfterStop } from "../helpers/exit_check.ts";
import {
  ContainerdWatcher,
  type RunningTask,
  type WatcherState,
  type WatcherStateDetail,
} from "../../lib/containerd/watch.ts";

// ---------------------------------------------------------------------------
// The fake containerd

interface FakeTask {
  id: string;
  pid: number;
  /** containerd.v1.types.Status value: 1 created, 2 running, 3 stopped, 4 paused. */
  status: number;
}

interface FakeCall {
  method: string;
  namespace: string | undefined;
}

/** A grpc-js server answering like containerd 1.6 from in-memory state. */
class FakeContainerd {
  readonly socket: string;
  /** Tasks per namespace (as Tasks/List returns them: `id`, not `container_id`). */
  readonly tasks = new Map<string, FakeTask[]>();
  /** Container labels per namespace and id. */
  readonly containers = new Map<string, Map<string, Record<string, string>>>();
  /** Every call received, in order. */
  readonly calls: FakeCall[] = [];
  /** Filters of each Subscribe call. */
  readonly subscribeFilters: string[][] = [];
  /** Runs inside Tasks/List before it answers (e.g. to publish events meanwhile). */
  beforeTasksList: ((namespace: string) => void) | undefined;
  /** When set, Containers/Get never answers (to test cancellation). */
  hangContainersGet = false;
  #server: grpc.Server | undefined;
  readonly #subscribers = new Set<grpc.ServerWritableStream<unknown, DeepPartial<WireEnvelope>>>();
  readonly #hung: (() => void)[] = [];

  constructor(socket: string) {
    this.socket = socket;
  }

  /** Namespaces: those with tasks or containers. */
  get namespaceNames(): string[] {
    return [...new Set([...this.tasks.keys(), ...this.containers.keys()])];
  }

  /** Adds a container with a task. */
  addTask(namespace: string, id: string, pid: number, status = 2, labels = {}): void {
    const list = this.tasks.get(namespace) ?? [];
    list.push({ id, pid, status });
    this.tasks.set(namespace, list);
    const cs = this.containers.get(namespace) ?? new Map();
    cs.set(id, labels);
    this.containers.set(namespace, cs);
  }

  /** Number of open Subscribe streams. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Sends an event to every subscriber (filters are not applied: tests check them). */
  publish<T>(
    namespace: string,
    topic: string,
    codec: { name: string; encode(v: DeepPartial<T>): Uint8Array },
    payload: DeepPartial<T>,
  ): void {
    const envelope: DeepPartial<WireEnvelope> = {
      timestamp: { seconds: Math.floor(Date.now() / 1000), nanos: 0 },
      namespace,
      topic,
      event: { typeUrl: codec.name, value: codec.encode(payload) },
    };
    for (const s of this.#subscribers) s.write(envelope);
  }

  /** Ends every Subscribe stream with a status (as a containerd shutting down would). */
  endStreams(code = grpc.status.UNAVAILABLE): void {
    for (const s of this.#subscribers) {
      s.emit("error", { code, details: "fake containerd ended the stream" });
    }
    this.#subscribers.clear();
  }

  async start(): Promise<void> {
    await Deno.remove(this.socket).catch(() => {});
    const server = new grpc.Server();
    const record = (method: string, md: grpc.Metadata) => {
      const ns = md.get("containerd-namespace")[0];
      this.calls.push({ method, namespace: ns === undefined ? undefined : String(ns) });
      return ns === undefined ? undefined : String(ns);
    };
    const service: { [key: string]: grpc.MethodDefinition<unknown, unknown> } = {};
    const impl: grpc.UntypedServiceImplementation = {};
    const add = <Req, Res>(
      key: string,
      m: Method<Req, Res>,
      stream: boolean,
      handler: grpc.UntypedHandleCall,
    ) => {
      service[key] = {
        path: `/${m.name}`,
        requestStream: false,
        responseStream: stream,
        requestSerialize: (v) => Buffer.from(m.request.encode(v as DeepPartial<Req>)),
        requestDeserialize: (b) => m.request.decode(b),
        responseSerialize: (v) => Buffer.from(m.response.encode(v as DeepPartial<Res>)),
        responseDeserialize: (b) => m.response.decode(b),
      };
      impl[key] = handler;
    };
    type Unary<Req, Res> = (
      call: grpc.ServerUnaryCall<Req, DeepPartial<Res>>,
      cb: grpc.sendUnaryData<DeepPartial<Res>>,
    ) => void;
    const unary = <Req, Res>(key: string, m: Method<Req, Res>, h: Unary<Req, Res>) =>
      add(key, m, false, h as grpc.UntypedHandleCall);

    add(
      "Subscribe",
      EVENTS_SUBSCRIBE,
      true,
      ((call) => {
        record(EVENTS_SUBSCRIBE.name, call.metadata);
        this.subscribeFilters.push(call.request.filters);
        this.#subscribers.add(call);
        call.on("cancelled", () => this.#subscribers.delete(call));
      }) as grpc.handleServerStreamingCall<{ filters: string[] }, WireEnvelope>,
    );
    unary("NamespacesList", NAMESPACES_LIST, (call, cb) => {
      record(NAMESPACES_LIST.name, call.metadata);
      cb(null, { namespaces: this.namespaceNames.map((name) => ({ name })) });
    });
    unary("TasksList", TASKS_LIST, (call, cb) => {
      const ns = record(TASKS_LIST.name, call.metadata) ?? "";
      this.beforeTasksList?.(ns);
      cb(null, { tasks: this.tasks.get(ns) ?? [] });
    });
    unary("TasksGet", TASKS_GET, (call, cb) => {
      const ns = record(TASKS_GET.name, call.metadata) ?? "";
      const t = (this.tasks.get(ns) ?? []).find((t) => t.id === call.request.containerId);
      if (!t) cb({ code: grpc.status.NOT_FOUND, details: "task not found" }, null);
      else cb(null, { process: { id: t.id, pid: t.pid, status: t.status } });
    });
    unary("ContainersGet", CONTAINERS_GET, (call, cb) => {
      const ns = record(CONTAINERS_GET.name, call.metadata) ?? "";
      if (this.hangContainersGet) {
        this.#hung.push(() => cb({ code: grpc.status.UNAVAILABLE, details: "shutdown" }, null));
        return;
      }
      const labels = this.containers.get(ns)?.get(call.request.id);
      if (ns === "") {
        cb({ code: grpc.status.FAILED_PRECONDITION, details: "namespace is required" }, null);
      } else if (labels === undefined) {
        cb({ code: grpc.status.NOT_FOUND, details: `container "${call.request.id}": not found` });
      } else {
        cb(null, { container: { id: call.request.id, labels, runtime: { name: "fake" } } });
      }
    });
    unary("ContainersList", CONTAINERS_LIST, (call, cb) => {
      const ns = record(CONTAINERS_LIST.name, call.metadata) ?? "";
      const cs = [...(this.containers.get(ns) ?? new Map()).entries()];
      cb(null, { containers: cs.map(([id, labels]) => ({ id, labels, image: "img" })) });
    });
    server.addService(service as grpc.ServiceDefinition, impl);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(
        `unix://${this.socket}`,
        grpc.ServerCredentials.createInsecure(),
        (err) => err ? reject(err) : resolve(),
      )
    );
    this.#server = server;
  }

  /** Stops at once: open streams break, as when containerd is killed. */
  stop(): void {
    for (const answer of this.#hung.splice(0)) answer();
    this.#subscribers.clear();
    this.#server?.forceShutdown();
    this.#server = undefined;
  }
}

/** Runs `fn` with a started fake containerd in a temp dir; cleans up. */
async function withFake(fn: (fake: FakeContainerd) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tfw-fakecd-" });
  const fake = new FakeContainerd(`${dir}/containerd.sock`);
  try {
    await fake.start();
    await fn(fake);
  } finally {
    fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------
// Recording a watcher

type Rec =
  | { kind: "snapshot"; tasks: RunningTask[] }
  | { kind: "event"; event: ContainerdEvent }
  | { kind: "state"; state: WatcherState; detail: WatcherStateDetail };

/** Handlers that record everything, and a way to wait for a record. */
class Recorder {
  readonly records: Rec[] = [];
  #waiters: (() => void)[] = [];
  /** Throws from onEvent for the event types listed, once each. */
  failOn = new Set<string>();

  readonly handlers = {
    onSnapshot: (tasks: RunningTask[]) => this.#add({ kind: "snapshot", tasks }),
    onEvent: async (event: ContainerdEvent) => {
      await Promise.resolve();
      if (event.type !== "other" && this.failOn.delete(event.containerId)) {
        throw new Error(`refusing ${event.containerId}`);
      }
      this.#add({ kind: "event", event });
    },
    onState: (state: WatcherState, detail: WatcherStateDetail) =>
      this.#add({ kind: "state", state, detail }),
  };

  #add(r: Rec): void {
    this.records.push(r);
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Waits until `pred` holds for the records (2 s at most). */
  async until(pred: (records: Rec[]) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 2000;
    while (!pred(this.records)) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.compact())}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, 50);
      });
      clearTimeout(timer);
    }
  }

  /** The records as short strings, e.g. "snapshot:default/a", "event:task-start:b", "state:connected". */
  compact(): string[] {
    return this.records.map((r) => {
      if (r.kind === "snapshot") {
        return `snapshot:${r.tasks.map((t) => `${t.namespace}/${t.containerId}`).join(",")}`;
      }
      if (r.kind === "event") {
        const e = r.event;
        return `event:${e.type}:${e.type === "other" ? e.topic : e.containerId}`;
      }
      return `state:${r.state}`;
    });
  }

  count(prefix: string): number {
    return this.compact().filter((s) => s.startsWith(prefix)).length;
  }
}

// ---------------------------------------------------------------------------
// Client

Deno.test("client: namespaced calls carry containerd-namespace; 1.6 task ids", async () => {
  await withFake(async (fake) => {
    fake.addTask("default", "a", 10, 2, { app: "x" });
    fake.addTask("k8s.io", "b", 20, 1);
    const client = ContainerdClient.connect(`unix://${fake.socket}`);
    try {
      assert.deepEqual(await client.namespaces(), ["default", "k8s.io"]);
      assert.deepEqual(await client.listTasks("k8s.io"), [
        { namespace: "k8s.io", containerId: "b", pid: 20, status: "created" },
      ]);
      assert.deepEqual(await client.getTask("default", "a"), {
        namespace: "default",
        containerId: "a",
        pid: 10,
        status: "running",
      });
      assert.equal(await client.getTask("default", "nope"), null);
      assert.deepEqual(await client.getContainer("default", "a"), {
        namespace: "default",
        id: "a",
        labels: { app: "x" },
        image: "",
        runtime: "fake",
      });
      assert.equal(await client.getContainer("default", "nope"), null);
      assert.deepEqual((await client.listContainers("default")).map((c) => c.id), ["a"]);
      assert.deepEqual(fake.calls.map((c) => c.namespace), [
        undefined,
        "k8s.io",
        "default",
        "default",
        "default",
        "default",
        "default",
      ]);
    } finally {
      client.close();
    }
  });
});

Deno.test("client: errors other than NOT_FOUND are ContainerdCallErrors", async () => {
  await withFake(async (fake) => {
    const client = ContainerdClient.connect(fake.socket);
    try {
      // The fake refuses Containers/Get without a namespace, like containerd.
      const err = await client.getContainer("", "a").catch((e) => e);
      assert.ok(err instanceof ContainerdCallError, String(err));
      assert.equal(err.codeName, "FAILED_PRECONDITION");
      assert.match(err.message, /Containers\/Get failed with FAILED_PRECONDITION/);
    } finally {
      client.close();
    }
  });
});

Deno.test("client: missing socket gives ContainerdUnavailableError naming it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tfw-nocd-" });
  const client = ContainerdClient.connect(`${dir}/containerd.sock`);
  try {
    const err = await client.namespaces().catch((e) => e);
    assert.ok(err instanceof ContainerdUnavailableError, String(err));
    assert.equal(
      err.message.split(";")[0],
      `containerd is not reachable at ${dir}/containerd.sock: connect ENOENT ${dir}/containerd.sock`,
    );
    const stream = client.subscribe({}, () => {});
    assert.ok((await stream.closed) instanceof ContainerdUnavailableError);
  } finally {
    client.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client: subscribe decodes events, sends filters, ends on cancel", async () => {
  await withFake(async (fake) => {
    const client = ContainerdClient.connect(fake.socket);
    try {
      const got: ContainerdEvent[] = [];
      const stream = client.subscribe({ namespaces: ["k8s.io", "default"] }, (e) => got.push(e));
      await client.namespaces(); // the same connection: Subscribe went first
      while (fake.subscribers === 0) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(fake.subscribeFilters, [['namespace=="k8s.io"', 'namespace=="default"']]);
      const before = performance.now();
      fake.publish("k8s.io", "/tasks/start", codecs.taskStart, { containerId: "a", pid: 5 });
      while (got.length === 0) await new Promise((r) => setTimeout(r, 5));
      assert.equal(got[0].type, "task-start");
      assert.equal(got[0].namespace, "k8s.io");
      assert.ok(got[0].receivedAt >= before && got[0].receivedAt <= performance.now());
      stream.cancel();
      assert.equal(await stream.closed, null);
    } finally {
      client.close();
    }
  });
});

Deno.test("client: an exception from onEvent ends the stream with it", async () => {
  await withFake(async (fake) => {
    const client = ContainerdClient.connect(fake.socket);
    try {
      const stream = client.subscribe({}, () => {
        throw new Error("consumer broke");
      });
      await client.namespaces();
      while (fake.subscribers === 0) await new Promise((r) => setTimeout(r, 5));
      fake.publish("default", "/tasks/start", codecs.taskStart, { containerId: "a", pid: 5 });
      const err = await stream.closed;
      assert.equal(err?.message, "consumer broke");
    } finally {
      client.close();
    }
  });
});

Deno.test("client: close() ends streams (null) and rejects calls in flight", async () => {
  await withFake(async (fake) => {
    fake.hangContainersGet = true;
    const client = ContainerdClient.connect(fake.socket);
    const stream = client.subscribe({}, () => {});
    const pending = client.getContainer("default", "a").catch((e) => e);
    while (fake.calls.length < 2) await new Promise((r) => setTimeout(r, 5));
    client.close();
    assert.equal(await stream.closed, null);
    const err = await pending;
    assert.ok(err instanceof ContainerdCallError, String(err));
    assert.match(err.message, /the client was closed/);
    await assert.rejects(client.namespaces(), /the client was closed/);
  });
});

// ---------------------------------------------------------------------------
// Watcher

const FAST = { initialMs: 10, maxMs: 40 };

Deno.test("watcher: subscribe first, snapshot with labels, then buffered and live events", async () => {
  await withFake(async (fake) => {
    fake.addTask("default", "run", 100, 2, { app: "web" });
    fake.addTask("default", "made", 101, 1);
    fake.addTask("default", "paused", 102, 4);
    fake.addTask("default", "dead", 0, 3); // stopped: not in the snapshot
    fake.addTask("k8s.io", "sandbox", 200, 2, { "io.cri-containerd.kind": "sandbox" });
    // Published while the snapshot is being taken: delivered after it.
    fake.beforeTasksList = (ns) => {
      if (ns === "k8s.io") {
        fake.publish("k8s.io", "/tasks/create", codecs.taskCreate, {
          containerId: "new",
          pid: 300,
        });
      }
    };
    const rec = new Recorder();
    const watcher = new ContainerdWatcher({ socket: fake.socket, backoff: FAST }, rec.handlers);
    watcher.start();
    try {
      await rec.until((r) => r.some((x) => x.kind === "event"), "the buffered event");
      assert.equal(watcher.connected, true);
      fake.publish("k8s.io", "/tasks/start", codecs.taskStart, { containerId: "new", pid: 300 });
      fake.publish("default", "/tasks/exit", codecs.taskExit, {
        containerId: "run",
        id: "run",
        pid: 100,
        exitStatus: 137,
      });
      await rec.until((r) => r.length >= 6, "live events");
      assert.deepEqual(rec.compact(), [
        "state:connecting",
        "state:connected",
        "snapshot:default/run,default/made,default/paused,k8s.io/sandbox",
        "event:task-create:new",
        "event:task-start:new",
        "event:task-exit:run",
      ]);
      const snap = rec.records[2];
      assert.ok(snap.kind === "snapshot");
      assert.deepEqual(snap.tasks[0], {
        namespace: "default",
        containerId: "run",
        pid: 100,
        status: "running",
        labels: { app: "web" },
      });
      assert.deepEqual(snap.tasks.map((t) => t.status), [
        "running",
        "created",
        "paused",
        "running",
      ]);
      assert.deepEqual(snap.tasks[3].labels, { "io.cri-containerd.kind": "sandbox" });
      // Subscribe was the first call, all namespaces: no filter.
      assert.equal(fake.calls[0].method, EVENTS_SUBSCRIBE.name);
      assert.deepEqual(fake.subscribeFilters, [[]]);
      assert.equal(fake.calls[1].method, NAMESPACES_LIST.name);
    } finally {
      await watcher.stop();
    }
    assert.equal(watcher.connected, false);
  });
});

Deno.test("watcher: only the namespaces asked for, without Namespaces/List", async () => {
  await withFake(async (fake) => {
    fake.addTask("default", "a", 1);
    fake.addTask("k8s.io", "b", 2);
    const rec = new Recorder();
    const watcher = new ContainerdWatcher(
      { socket: fake.socket, namespaces: ["k8s.io", "absent"], backoff: FAST },
      rec.handlers,
    );
    watcher.start();
    try {
      await rec.until((r) => r.some((x) => x.kind === "snapshot"), "the snapshot");
      assert.deepEqual(rec.compact().slice(0, 3), [
        "state:connecting",
        "state:connected",
        "snapshot:k8s.io/b",
      ]);
      assert.deepEqual(fake.subscribeFilters, [['namespace=="k8s.io"', 'namespace=="absent"']]);
      assert.equal(fake.calls.some((c) => c.method === NAMESPACES_LIST.name), false);
    } finally {
      await watcher.stop();
    }
  });
});

Deno.test("watcher: a broken stream reconnects with a new snapshot; backoff resets", async () => {
  await withFake(async (fake) => {
    fake.addTask("default", "a", 1);
    const rec = new Recorder();
    const watcher = new ContainerdWatcher({ socket: fake.socket, backoff: FAST }, rec.handlers);
    watcher.start();
    try {
      await rec.until((r) => r.some((x) => x.kind === "snapshot"), "the first snapshot");
      // containerd goes away: retries back off 10, 20, 40, 40 ms...
      fake.stop();
      await rec.until(
        (r) => r.filter((x) => x.kind === "state" && x.state === "disconnected").length >= 4,
        "four failed attempts",
      );
      assert.equal(watcher.connected, false);
      const delays = rec.records.flatMap((r) =>
        r.kind === "state" && r.state === "disconnected" ? [r.detail.retryInMs] : []
      );
      assert.deepEqual(delays.slice(0, 4), [10, 20, 40, 40]);
      const first = rec.records.find((r) => r.kind === "state" && r.state === "disconnected");
      assert.ok(first?.kind === "state");
      // The fake's forced shutdown resets the stream (CANCELLED); a killed containerd
      // drops the connection (UNAVAILABLE: "not reachable").
      assert.match(
        first.detail.error ?? "",
        /Events\/Subscribe failed with CANCELLED|not reachable/,
      );
      // It comes back with different tasks: a new snapshot shows them.
      fake.tasks.clear();
      fake.addTask("default", "b", 2);
      await fake.start();
      await rec.until((r) => r.filter((x) => x.kind === "snapshot").length >= 2, "a new snapshot");
      assert.equal(
        rec.compact().filter((s) => s.startsWith("snapshot")).at(-1),
        "snapshot:default/b",
      );
      // The next failure starts from the initial delay again.
      const n = rec.records.length;
      fake.endStreams();
      await rec.until((r) => r.length > n + 1, "the next disconnect");
      const next = rec.records.slice(n).find((r) =>
        r.kind === "state" && r.state === "disconnected"
      );
      assert.ok(next?.kind === "state");
      assert.equal(next.detail.retryInMs, 10);
      await rec.until((r) => r.filter((x) => x.kind === "snapshot").length >= 3, "third snapshot");
    } finally {
      await watcher.stop();
    }
  });
});

Deno.test("watcher: a failing event handler makes it resynchronize", async () => {
  await withFake(async (fake) => {
    fake.addTask("default", "a", 1);
    const rec = new Recorder();
    rec.failOn.add("bad");
    const watcher = new ContainerdWatcher({ socket: fake.socket, backoff: FAST }, rec.handlers);
    watcher.start();
    try {
      await rec.until((r) => r.some((x) => x.kind === "snapshot"), "the snapshot");
      fake.publish("default", "/tasks/start", codecs.taskStart, { containerId: "bad", pid: 5 });
      await rec.until((r) => r.filter((x) => x.kind === "snapshot").length >= 2, "a resync");
      const disc = rec.records.find((r) => r.kind === "state" && r.state === "disconnected");
      assert.ok(disc?.kind === "state");
      assert.match(disc.detail.error ?? "", /the event handler failed: refusing bad/);
      assert.equal(rec.count("event:"), 0);
    } finally {
      await watcher.stop();
    }
  });
});

Deno.test("watcher: containerd absent at start, then appears", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tfw-latecd-" });
  const fake = new FakeContainerd(`${dir}/containerd.sock`);
  fake.addTask("default", "a", 1);
  const rec = new Recorder();
  const watcher = new ContainerdWatcher({ socket: fake.socket, backoff: FAST }, rec.handlers);
  try {
    watcher.start();
    watcher.start(); // a second start does nothing
    await rec.until((r) => r.filter((x) => x.kind === "state").length >= 4, "retries");
    assert.equal(rec.count("snapshot"), 0);
    await fake.start();
    await rec.until((r) => r.some((x) => x.kind === "snapshot"), "the snapshot");
    assert.equal(watcher.connected, true);
  } finally {
    await watcher.stop();
    fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watcher: stop() during backoff and during a hung call returns promptly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tfw-stopcd-" });
  try {
    // During a long backoff delay.
    const rec = new Recorder();
    const sleeping = new ContainerdWatcher(
      { socket: `${dir}/none.sock`, backoff: { initialMs: 60_000, maxMs: 60_000 } },
      rec.handlers,
    );
    sleeping.start();
    await rec.until((r) => r.some((x) => x.kind === "state" && x.state === "disconnected"), "x");
    let t = performance.now();
    await sleeping.stop();
    assert.ok(performance.now() - t < 1000);
    // While Containers/Get hangs in the snapshot.
    const fake = new FakeContainerd(`${dir}/containerd.sock`);
    fake.addTask("default", "a", 1);
    fake.hangContainersGet = true;
    await fake.start();
    try {
      const rec2 = new Recorder();
      const hung = new ContainerdWatcher({ socket: fake.socket, backoff: FAST }, rec2.handlers);
      hung.start();
      while (!fake.calls.some((c) => c.method === CONTAINERS_GET.name)) {
        await new Promise((r) => setTimeout(r, 5));
      }
      t = performance.now();
      await hung.stop();
      assert.ok(performance.now() - t < 1000);
      assert.equal(rec2.count("snapshot"), 0);
    } finally {
      fake.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// Nothing left behind (tests/helpers/exit_check.ts says why a child process)

Deno.test("cleanup: client.close() and watcher.stop() leave nothing that keeps a process alive", async () => {
  await withFake(async (fake) => {
    fake.addTask("default", "a", 1);
    assert.equal(await exitsAfterStop(fake.socket, "client"), true, "client");
    assert.equal(await exitsAfterStop(fake.socket, "watcher"), true, "watcher");
    // The check itself: a client never closed keeps its child alive.
    assert.equal(await exitsAfterStop(fake.socket, "leak", 500), false, "leak detected");
  });
  const dir = await Deno.makeTempDir({ prefix: "tfw-nocd-" });
  try {
    assert.equal(await exitsAfterStop(`${dir}/none.sock`, "watcher-absent"), true, "absent");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
