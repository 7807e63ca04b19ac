/**
 * lib/containerd/ against a real containerd 1.6 (tests/helpers/containerd.ts:
 * a private daemon in a temp dir, busybox containers). Run as root.
 *
 * - our .proto definitions match the descriptors compiled into /usr/bin/containerd
 * - the client: namespaces, tasks (default and k8s.io), labels, events in order
 * - the watcher: snapshot then events; containerd SIGKILLed and restarted; absent at start
 * - nothing is left running after close()/stop()
 */

import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import protobuf from "protobufjs";
import { protoRoot } from "../../lib/containerd/codec.ts";
import { exitsAfterStop } from "../helpers/exit_check.ts";
import {
  ContainerdClient,
  type ContainerdEvent,
  ContainerdUnavailableError,
  ContainerdWatcher,
  type RunningTask,
  type WatcherState,
  type WatcherStateDetail,
} from "../../lib/containerd/mod.ts";
import { type ContainerHandle, withContainerd } from "../helpers/containerd.ts";

const CONTAINERD_BIN = "/usr/bin/containerd";

function canRun(): boolean {
  try {
    Deno.statSync(CONTAINERD_BIN);
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

const ignore = !canRun();
const SLEEP = ["sleep", "3600"];

// ---------------------------------------------------------------------------
// Waiting for things

/** Everything a subscription or watcher reported, with a way to wait for a condition. */
class Log<T> {
  readonly items: T[] = [];
  #wake: (() => void)[] = [];

  push = (item: T): void => {
    this.items.push(item);
    for (const w of this.#wake.splice(0)) w();
  };

  /** Waits until `pred` holds (10 s at most); returns its result. */
  async until<R>(pred: (items: T[]) => R | undefined | false, what: string): Promise<R> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = pred(this.items);
      if (r !== undefined && r !== false) return r;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake.push(resolve);
        timer = setTimeout(resolve, 100);
      });
      clearTimeout(timer);
    }
  }
}

/** The events about one container, as "type" strings. */
function typesOf(events: ContainerdEvent[], id: string): string[] {
  return events.filter((e) => e.type !== "other" && e.containerId === id).map((e) => e.type);
}

// ---------------------------------------------------------------------------
// Our .proto definitions against the running containerd's

/** Enough of google/protobuf/descriptor.proto to read message and enum layouts. */
const DESCRIPTOR_PROTO = `
syntax = "proto2";
package d;
message FileDescriptorProto {
  optional string name = 1;
  optional string package = 2;
  repeated DescriptorProto message_type = 4;
  repeated EnumDescriptorProto enum_type = 5;
}
message DescriptorProto {
  optional string name = 1;
  repeated FieldDescriptorProto field = 2;
  repeated DescriptorProto nested_type = 3;
  repeated EnumDescriptorProto enum_type = 4;
}
message FieldDescriptorProto {
  optional string name = 1;
  optional int32 number = 3;
  optional int32 label = 4;
  optional int32 type = 5;
  optional string type_name = 6;
}
message EnumDescriptorProto {
  optional string name = 1;
  repeated EnumValueDescriptorProto value = 2;
}
message EnumValueDescriptorProto {
  optional string name = 1;
  optional int32 number = 2;
}
`;

interface FieldDesc {
  name: string;
  number: number;
  label: number;
  type: number;
  typeName?: string;
}
interface MessageDesc {
  name: string;
  field: FieldDesc[];
  nestedType: MessageDesc[];
  enumType: EnumDesc[];
}
interface EnumDesc {
  name: string;
  value: { name: string; number: number }[];
}
interface FileDesc {
  name: string;
  package: string;
  messageType: MessageDesc[];
  enumType: EnumDesc[];
}

/** Every containerd API FileDescriptorProto embedded (gzipped, by Go's protobuf registry) in the binary. */
function embeddedDescriptors(binary: Uint8Array): FileDesc[] {
  const type = protobuf.parse(DESCRIPTOR_PROTO).root.lookupType("d.FileDescriptorProto");
  const files: FileDesc[] = [];
  for (let i = binary.indexOf(0x1f); i >= 0; i = binary.indexOf(0x1f, i + 1)) {
    if (binary[i + 1] !== 0x8b || binary[i + 2] !== 8) continue;
    let raw: Uint8Array;
    try {
      raw = gunzipSync(binary.subarray(i, i + 256 * 1024));
    } catch {
      continue; // not a gzip stream after all
    }
    try {
      const file = type.toObject(type.decode(raw), { arrays: true }) as FileDesc;
      if (file.name?.startsWith("github.com/containerd/containerd/api/")) files.push(file);
    } catch {
      // gzip, but not a descriptor
    }
  }
  return files;
}

const SCALAR_TYPES: Record<string, number> = {
  bool: 8,
  bytes: 12,
  int32: 5,
  int64: 3,
  string: 9,
  uint32: 13,
  uint64: 4,
};
const TYPE_MESSAGE = 11;
const TYPE_ENUM = 14;
const LABEL_REPEATED = 3;

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

Deno.test({
  name: "protos: every message, field and enum we declare matches /usr/bin/containerd's",
  ignore: (() => {
    try {
      Deno.statSync(CONTAINERD_BIN);
      return false;
    } catch {
      return true;
    }
  })(),
  fn() {
    const files = embeddedDescriptors(Deno.readFileSync(CONTAINERD_BIN));
    assert.ok(files.length >= 10, `found ${files.length} descriptors in ${CONTAINERD_BIN}`);
    const messages = new Map<string, MessageDesc>();
    const enums = new Map<string, EnumDesc>();
    const walk = (prefix: string, m: MessageDesc) => {
      messages.set(`${prefix}.${m.name}`, m);
      for (const n of m.nestedType ?? []) walk(`${prefix}.${m.name}`, n);
    };
    for (const f of files) {
      for (const m of f.messageType ?? []) walk(f.package, m);
      for (const e of f.enumType ?? []) enums.set(`${f.package}.${e.name}`, e);
    }
    let checked = 0;
    const visit = (ns: protobuf.NamespaceBase) => {
      for (const obj of ns.nestedArray) {
        const full = obj.fullName.slice(1);
        if (full.startsWith("google.")) continue;
        if (obj instanceof protobuf.Type) {
          const theirs = messages.get(full);
          assert.ok(theirs, `containerd has no message ${full}`);
          for (const ours of obj.fieldsArray) {
            const f: FieldDesc | undefined = theirs.field.find((t) => camel(t.name) === ours.name);
            assert.ok(f, `containerd's ${full} has no field ${ours.name}`);
            assert.equal(f.number, ours.id, `${full}.${ours.name} number`);
            if (ours instanceof protobuf.MapField) {
              assert.equal(f.label, LABEL_REPEATED, `${full}.${ours.name} is a map`);
              assert.match(f.typeName ?? "", /Entry$/, `${full}.${ours.name} is a map`);
            } else {
              assert.equal(
                f.label === LABEL_REPEATED,
                ours.repeated,
                `${full}.${ours.name} repeated`,
              );
              const resolved = ours.resolve().resolvedType;
              if (resolved instanceof protobuf.Type) {
                assert.equal(f.type, TYPE_MESSAGE, `${full}.${ours.name} is a message`);
                assert.equal(f.typeName, resolved.fullName, `${full}.${ours.name} type`);
              } else if (resolved instanceof protobuf.Enum) {
                assert.equal(f.type, TYPE_ENUM, `${full}.${ours.name} is an enum`);
                assert.equal(f.typeName, resolved.fullName, `${full}.${ours.name} type`);
              } else {
                assert.equal(f.type, SCALAR_TYPES[ours.type], `${full}.${ours.name} type`);
              }
            }
            checked++;
          }
          visit(obj);
        } else if (obj instanceof protobuf.Enum) {
          const theirs = enums.get(full);
          assert.ok(theirs, `containerd has no enum ${full}`);
          for (const [name, value] of Object.entries(obj.values)) {
            assert.equal(
              theirs.value.find((v) => v.name === name)?.number,
              value,
              `${full}.${name}`,
            );
          }
        } else if (obj instanceof protobuf.Namespace) {
          visit(obj);
        }
      }
    };
    visit(protoRoot());
    assert.ok(checked >= 40, `checked ${checked} fields`);
  },
});

// ---------------------------------------------------------------------------
// The client

Deno.test({
  name: "client: namespaces, tasks in default and k8s.io, labels, unknown ids",
  ignore,
  async fn() {
    await withContainerd(async (cd) => {
      const a = await cd.run({
        namespace: "default",
        labels: { app: "a", tier: "web" },
        cmd: SLEEP,
      });
      const b = await cd.run({
        namespace: "k8s.io",
        labels: { "io.cri-containerd.kind": "sandbox" },
        cmd: SLEEP,
      });
      const client = ContainerdClient.connect(cd.socket);
      try {
        assert.deepEqual(await client.namespaces(), ["default", "k8s.io"]);
        assert.deepEqual(await client.listTasks("default"), [
          { namespace: "default", containerId: a.id, pid: await a.pid(), status: "running" },
        ]);
        assert.deepEqual(await client.listTasks("k8s.io"), [
          { namespace: "k8s.io", containerId: b.id, pid: await b.pid(), status: "running" },
        ]);
        assert.deepEqual(await client.getTask("k8s.io", b.id), {
          namespace: "k8s.io",
          containerId: b.id,
          pid: await b.pid(),
          status: "running",
        });
        const info = await client.getContainer("default", a.id);
        assert.deepEqual(info?.labels, { app: "a", tier: "web" });
        assert.equal(info?.runtime, "io.containerd.runc.v2");
        assert.equal(await client.getContainer("default", b.id), null, "b is in k8s.io");
        assert.equal(await client.getTask("default", "nope"), null);
        assert.deepEqual((await client.listContainers("k8s.io")).map((c) => c.id), [b.id]);
        assert.deepEqual(await client.listTasks("empty-ns"), []);
      } finally {
        client.close();
      }
    });
  },
});

Deno.test({
  name: "client: create/start/exit/delete events in order, with ids, pids, namespaces; filters",
  ignore,
  async fn() {
    await withContainerd(async (cd) => {
      const client = ContainerdClient.connect(cd.socket);
      const all = new Log<ContainerdEvent>();
      const k8s = new Log<ContainerdEvent>();
      const streams = [
        client.subscribe({}, all.push),
        client.subscribe({ namespaces: ["k8s.io"] }, k8s.push),
      ];
      try {
        // Subscriptions are registered when containerd handles them: make sure they are.
        await client.namespaces();
        await new Promise((r) => setTimeout(r, 100));
        const startedAt = Date.now();
        const a = await cd.run({ namespace: "default", cmd: SLEEP });
        const b = await cd.run({ namespace: "k8s.io", cmd: SLEEP });
        const [pidA, pidB] = [await a.pid(), await b.pid()];
        const exec = await a.exec(["true"]);
        assert.equal(exec.code, 0);
        await a.stop();
        await b.stop();
        const wanted = [
          "container-create",
          "task-create",
          "task-start",
          "task-exit",
          "task-delete",
          "container-delete",
        ];
        await all.until(
          (es) => typesOf(es, a.id).length >= 7 && typesOf(es, b.id).length >= 6,
          "every event",
        );
        // a: its exec'd process exits too (execId differs); b: the plain sequence.
        const execExit = all.items.find((e) =>
          e.type === "task-exit" && e.containerId === a.id && e.execId !== a.id
        );
        assert.ok(execExit, "the exec'd process's exit");
        const initOnly = all.items.filter((e) => e !== execExit);
        assert.deepEqual(typesOf(initOnly, a.id), wanted);
        assert.deepEqual(typesOf(all.items, b.id), wanted);
        for (const [h, pid, ns] of [[a, pidA, "default"], [b, pidB, "k8s.io"]] as const) {
          const mine: ContainerdEvent[] = all.items.filter((e) =>
            e.type !== "other" && e.containerId === h.id
          );
          assert.ok(mine.every((e) => e.namespace === ns), `namespace of ${h.id}`);
          const byType = (t: string): ContainerdEvent | undefined =>
            mine.find((e) => e.type === t && e !== execExit);
          assert.equal((byType("task-create") as { pid: number }).pid, pid);
          assert.equal((byType("task-start") as { pid: number }).pid, pid);
          const exit = byType("task-exit");
          assert.ok(exit?.type === "task-exit");
          assert.equal(exit.pid, pid);
          assert.equal(exit.execId, h.id);
          assert.equal(exit.exitStatus, 137, "SIGKILLed");
          const del = byType("task-delete");
          assert.ok(del?.type === "task-delete");
          assert.equal(del.pid, pid);
          assert.equal(del.execId, undefined);
        }
        // Timestamps are containerd's clock, receivedAt ours.
        for (const e of all.items) {
          assert.ok(e.timestamp.getTime() >= startedAt - 1000, e.topic);
          assert.ok(e.receivedAt > 0);
        }
        // The k8s.io-only subscription got b's events and none of a's.
        await k8s.until((es) => typesOf(es, b.id).length >= 6, "k8s.io events");
        assert.deepEqual(typesOf(k8s.items, b.id), wanted);
        assert.ok(k8s.items.every((e) => e.namespace === "k8s.io"));
      } finally {
        for (const s of streams) s.cancel();
        client.close();
      }
      for (const s of streams) assert.equal(await s.closed, null);
    });
  },
});

Deno.test({
  name: "client: containerd SIGKILLed ends the stream at once; calls fail with its socket named",
  ignore,
  async fn() {
    await withContainerd(async (cd) => {
      const client = ContainerdClient.connect(cd.socket);
      try {
        const stream = client.subscribe({}, () => {});
        await client.namespaces();
        const t = performance.now();
        await cd.kill();
        const err = await stream.closed;
        const ms = performance.now() - t;
        assert.ok(err instanceof ContainerdUnavailableError, String(err));
        assert.ok(ms < 2000, `stream ended ${ms} ms after the kill`);
        const callErr = await client.namespaces().catch((e) => e);
        assert.ok(callErr instanceof ContainerdUnavailableError, String(callErr));
        assert.match(callErr.message, new RegExp(`^containerd is not reachable at ${cd.socket}: `));
        // The same client works again once containerd is back (after its channel's
        // reconnect delay, at most 1 s).
        await cd.restart();
        const back = performance.now();
        let namespaces: string[] | undefined;
        while (namespaces === undefined && performance.now() - back < 3000) {
          namespaces = await client.namespaces().catch(() => undefined);
          if (namespaces === undefined) await new Promise((r) => setTimeout(r, 50));
        }
        assert.deepEqual(namespaces, []);
      } finally {
        client.close();
      }
    });
  },
});

// ---------------------------------------------------------------------------
// The watcher

type Rec =
  | { kind: "snapshot"; tasks: RunningTask[] }
  | { kind: "event"; event: ContainerdEvent }
  | { kind: "state"; state: WatcherState; detail: WatcherStateDetail };

/** Handlers that record, and the consumer's view: live tasks by "ns/id". */
class Consumer {
  readonly log = new Log<Rec>();
  /** What a consumer would hold: the snapshot, then events applied idempotently. */
  readonly live = new Map<string, { pid: number; labels: Record<string, string> }>();

  readonly handlers = {
    onSnapshot: (tasks: RunningTask[]) => {
      this.live.clear();
      for (const t of tasks) {
        this.live.set(`${t.namespace}/${t.containerId}`, { pid: t.pid, labels: { ...t.labels } });
      }
      this.log.push({ kind: "snapshot", tasks });
    },
    onEvent: (event: ContainerdEvent) => {
      const key = event.type === "other" ? "" : `${event.namespace}/${event.containerId}`;
      if (event.type === "task-create" || event.type === "task-start") {
        if (!this.live.has(key)) this.live.set(key, { pid: event.pid, labels: {} });
      } else if (event.type === "task-exit" && event.execId === event.containerId) {
        this.live.delete(key);
      } else if (event.type === "task-delete" && event.execId === undefined) {
        this.live.delete(key);
      }
      this.log.push({ kind: "event", event });
    },
    onState: (state: WatcherState, detail: WatcherStateDetail) =>
      this.log.push({ kind: "state", state, detail }),
  };

  snapshots(): RunningTask[][] {
    return this.log.items.flatMap((r) => r.kind === "snapshot" ? [r.tasks] : []);
  }

  states(): string[] {
    return this.log.items.flatMap((r) => r.kind === "state" ? [r.state] : []);
  }

  liveIds(): string[] {
    return [...this.live.keys()].sort();
  }
}

const key = (h: ContainerHandle) => `${h.namespace}/${h.id}`;

/** Waits until the consumer's live set is exactly `handles`. */
async function expectLive(consumer: Consumer, handles: ContainerHandle[], what: string) {
  const want = handles.map(key).sort();
  await consumer.log.until(
    () => JSON.stringify(consumer.liveIds()) === JSON.stringify(want),
    `${what}: live ${JSON.stringify(want)} (have ${JSON.stringify(consumer.liveIds())})`,
  );
}

Deno.test({
  name: "watcher: snapshot of containers started before it, then events",
  ignore,
  async fn() {
    await withContainerd(async (cd) => {
      const a = await cd.run({ namespace: "default", labels: { app: "a" }, cmd: SLEEP });
      const b = await cd.run({ namespace: "k8s.io", labels: { app: "b" }, cmd: SLEEP });
      const consumer = new Consumer();
      const watcher = new ContainerdWatcher({ socket: cd.socket }, consumer.handlers);
      watcher.start();
      try {
        const [snap] = await consumer.log.until(
          () => consumer.snapshots().length > 0 && consumer.snapshots(),
          "the snapshot",
        );
        assert.equal(watcher.connected, true);
        assert.deepEqual(consumer.states(), ["connecting", "connected"]);
        const byKey = new Map(snap.map((t) => [`${t.namespace}/${t.containerId}`, t]));
        assert.deepEqual(byKey.get(key(a)), {
          namespace: "default",
          containerId: a.id,
          pid: await a.pid(),
          status: "running",
          labels: { app: "a" },
        });
        assert.deepEqual(byKey.get(key(b))?.labels, { app: "b" });
        assert.equal(byKey.get(key(b))?.pid, await b.pid());
        assert.equal(snap.length, 2);
        // Then events, in order.
        const c = await cd.run({ namespace: "k8s.io", cmd: SLEEP });
        await b.stop();
        await expectLive(consumer, [a, c], "after c started and b stopped");
        const events = consumer.log.items.flatMap((r) => r.kind === "event" ? [r.event] : []);
        assert.deepEqual(typesOf(events, c.id), ["container-create", "task-create", "task-start"]);
        assert.deepEqual(typesOf(events, b.id), ["task-exit", "task-delete", "container-delete"]);
        const created = events.find((e) => e.type === "task-create" && e.containerId === c.id);
        assert.equal(created?.type === "task-create" && created.pid, await c.pid());
      } finally {
        await watcher.stop();
      }
      assert.equal(watcher.connected, false);
    });
  },
});

Deno.test({
  name: "watcher: containerd killed and restarted: disconnected, then a snapshot without what died",
  ignore,
  async fn() {
    await withContainerd(async (cd) => {
      const a = await cd.run({ namespace: "default", cmd: SLEEP });
      const b = await cd.run({ namespace: "default", cmd: SLEEP });
      const pidB = await b.pid();
      const consumer = new Consumer();
      // A 1 s retry delay: containerd is back and C runs before the watcher returns.
      const watcher = new ContainerdWatcher(
        { socket: cd.socket, backoff: { initialMs: 1000, maxMs: 1000 } },
        consumer.handlers,
      );
      watcher.start();
      try {
        await expectLive(consumer, [a, b], "first snapshot");
        const t = performance.now();
        await cd.kill();
        const disc = await consumer.log.until(
          (rs) => rs.find((r) => r.kind === "state" && r.state === "disconnected"),
          "disconnected",
        );
        const detectMs = performance.now() - t;
        assert.ok(disc.kind === "state");
        assert.match(disc.detail.error ?? "", /containerd is not reachable at/);
        assert.equal(disc.detail.retryInMs, 1000);
        assert.equal(watcher.connected, false);
        assert.ok(detectMs < 1000, `disconnect seen ${detectMs} ms after SIGKILL`);
        // While containerd is down, B's process dies (ctr cannot be used now: kill its pid,
        // a process this test started).
        Deno.kill(pidB, "SIGKILL");
        await cd.restart();
        const c = await cd.run({ namespace: "default", cmd: SLEEP });
        const snapshotsBefore = consumer.snapshots().length;
        await consumer.log.until(() => consumer.snapshots().length > snapshotsBefore, "resync");
        const last = consumer.snapshots().at(-1)!.map((t) => t.containerId).sort();
        // Normally C was started before the watcher came back, so the snapshot has it;
        // either way the consumer's state ends right.
        assert.ok(!last.includes(b.id), `b is not in the new snapshot ${last}`);
        assert.ok(last.includes(a.id));
        await expectLive(consumer, [a, c], "after the resync");
        assert.deepEqual(consumer.states().slice(-2), ["connecting", "connected"]);
        assert.equal(watcher.connected, true);
      } finally {
        await watcher.stop();
      }
    });
  },
});

Deno.test({
  name: "watcher: containerd absent at start: retries, then connects when it appears",
  ignore,
  async fn() {
    await withContainerd(async (cd) => {
      const a = await cd.run({ namespace: "k8s.io", labels: { x: "1" }, cmd: SLEEP });
      await cd.kill();
      await Deno.remove(cd.socket).catch(() => {}); // as if containerd never ran: ENOENT
      const consumer = new Consumer();
      const watcher = new ContainerdWatcher(
        {
          socket: `unix://${cd.socket}`,
          namespaces: ["k8s.io"],
          backoff: { initialMs: 50, maxMs: 200 },
        },
        consumer.handlers,
      );
      watcher.start();
      try {
        await consumer.log.until(
          () => consumer.states().filter((s) => s === "disconnected").length >= 3,
          "three failed attempts",
        );
        const errors = consumer.log.items.flatMap((r) =>
          r.kind === "state" && r.state === "disconnected" ? [r.detail] : []
        );
        assert.match(errors[0].error ?? "", /not reachable at .*: connect ENOENT/);
        assert.deepEqual(errors.slice(0, 3).map((e) => e.retryInMs), [50, 100, 200]);
        assert.equal(consumer.snapshots().length, 0);
        await cd.restart();
        await expectLive(consumer, [a], "connected after containerd appeared");
        assert.deepEqual(consumer.snapshots().at(-1)?.[0].labels, { x: "1" });
      } finally {
        await watcher.stop();
      }
    });
  },
});

// ---------------------------------------------------------------------------
// Nothing left behind
//
// Against this containerd, as tests/containerd/watch_test.ts does against
// a fake one (tests/helpers/exit_check.ts).

Deno.test({
  name: "cleanup: after close()/stop() a process using the client or watcher exits by itself",
  ignore,
  async fn() {
    await withContainerd(async (cd) => {
      await cd.run({ namespace: "default", cmd: SLEEP });
      assert.equal(await exitsAfterStop(cd.socket, "client"), true, "client");
      assert.equal(await exitsAfterStop(cd.socket, "watcher"), true, "watcher");
    });
  },
});
