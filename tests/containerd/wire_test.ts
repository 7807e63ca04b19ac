/**
 * The pieces of lib/containerd/ that need no containerd: filters, backoff,
 * the event queue, message codecs, gRPC error mapping and messages.
 */

import assert from "node:assert/strict";
import { Backoff, DEFAULT_BACKOFF } from "../../lib/containerd/backoff.ts";
import { codecs, protoRoot, taskStatusName } from "../../lib/containerd/codec.ts";
import {
  ContainerdCallError,
  ContainerdUnavailableError,
  grpcStatusName,
} from "../../lib/containerd/errors.ts";
import { namespaceFilters, quoteFilterValue } from "../../lib/containerd/filters.ts";
import { EventQueue } from "../../lib/containerd/queue.ts";
import { socketPathOf, unavailableReason } from "../../lib/containerd/rpc.ts";
import { RuntimeError } from "../../lib/base/errors.ts";

Deno.test('subscribe filters: none for all namespaces, one namespace=="NS" each (OR\'d)', () => {
  assert.deepEqual(namespaceFilters(), []);
  assert.deepEqual(namespaceFilters([]), []);
  assert.deepEqual(namespaceFilters(["k8s.io"]), ['namespace=="k8s.io"']);
  assert.deepEqual(namespaceFilters(["default", "k8s.io", "default"]), [
    'namespace=="default"',
    'namespace=="k8s.io"',
  ]);
  assert.equal(quoteFilterValue('a"b\\c'), '"a\\"b\\\\c"');
});

Deno.test("backoff: 100 ms doubling to 5 s, reset to 100 ms", () => {
  const b = new Backoff(DEFAULT_BACKOFF);
  const seq = Array.from({ length: 9 }, () => b.next());
  assert.deepEqual(seq, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  b.reset();
  assert.deepEqual([b.next(), b.next()], [100, 200]);
  const small = new Backoff({ initialMs: 30, maxMs: 50 });
  assert.deepEqual([small.next(), small.next(), small.next()], [30, 50, 50]);
  assert.throws(() => new Backoff({ initialMs: 0, maxMs: 10 }), RangeError);
  assert.throws(() => new Backoff({ initialMs: 10, maxMs: 5 }), RangeError);
});

Deno.test("event queue: items in order, then the end; waiting consumer is woken", async () => {
  const q = new EventQueue<number>();
  q.push(1);
  q.push(2);
  assert.deepEqual(await q.next(), { done: false, value: 1 });
  assert.deepEqual(await q.next(), { done: false, value: 2 });
  const waiting = q.next();
  assert.deepEqual(await q.next().catch((e) => e.message), "EventQueue.next: already waiting");
  q.push(3);
  assert.deepEqual(await waiting, { done: false, value: 3 });
  const end = q.next();
  const err = new Error("gone");
  q.end(err);
  q.push(4); // ignored after the end
  assert.deepEqual(await end, { done: true, error: err });
  assert.deepEqual(await q.next(), { done: true, error: err });
});

Deno.test("event queue: items queued before the end are delivered first", async () => {
  const q = new EventQueue<string>();
  for (let i = 0; i < 3000; i++) q.push(`e${i}`);
  q.end(null);
  for (let i = 0; i < 3000; i++) assert.deepEqual(await q.next(), { done: false, value: `e${i}` });
  assert.deepEqual(await q.next(), { done: true, error: null });
  assert.equal(q.size, 0);
});

Deno.test("codecs: Tasks/List response as containerd 1.6 fills it (id, pid, status)", () => {
  const bytes = codecs.listTasksResponse.encode({
    tasks: [
      { id: "web", pid: 100, status: 2 },
      { id: "job", pid: 0, status: 3, exitStatus: 1 },
    ],
  });
  const res = codecs.listTasksResponse.decode(bytes);
  assert.equal(res.tasks.length, 2);
  assert.equal(res.tasks[0].containerId, "");
  assert.equal(res.tasks[0].id, "web");
  assert.equal(res.tasks[0].pid, 100);
  assert.equal(taskStatusName(res.tasks[0].status), "running");
  assert.equal(taskStatusName(res.tasks[1].status), "stopped");
  assert.equal(taskStatusName(99), "unknown");
});

Deno.test("codecs: Container labels map and runtime round-trip", () => {
  const bytes = codecs.getContainerResponse.encode({
    container: {
      id: "c1",
      labels: { "io.cri-containerd.kind": "sandbox", "app": "web" },
      image: "",
      runtime: { name: "io.containerd.runc.v2" },
    },
  });
  const res = codecs.getContainerResponse.decode(bytes);
  assert.deepEqual(res.container?.labels, { "io.cri-containerd.kind": "sandbox", "app": "web" });
  assert.equal(res.container?.runtime?.name, "io.containerd.runc.v2");
  // An empty message decodes with defaults.
  assert.deepEqual(codecs.listNamespacesResponse.decode(new Uint8Array()), { namespaces: [] });
});

Deno.test("protos: the services and field numbers we rely on", () => {
  const root = protoRoot();
  const field = (type: string, name: string) => root.lookupType(type).fields[name].id;
  assert.equal(field("containerd.services.events.v1.Envelope", "namespace"), 2);
  assert.equal(field("containerd.services.events.v1.Envelope", "event"), 4);
  assert.equal(field("containerd.events.TaskCreate", "pid"), 6);
  assert.equal(field("containerd.events.TaskExit", "id"), 2);
  assert.equal(field("containerd.events.TaskDelete", "id"), 5);
  assert.equal(field("containerd.v1.types.Process", "status"), 4);
  assert.equal(field("containerd.services.containers.v1.Container", "labels"), 2);
  const subscribe = root.lookupService("containerd.services.events.v1.Events").methods.Subscribe;
  assert.equal(subscribe.responseStream, true);
});

Deno.test("gRPC errors: status names, unavailable reasons, messages", () => {
  assert.equal(grpcStatusName(5), "NOT_FOUND");
  assert.equal(grpcStatusName(99), "CODE_99");
  assert.equal(
    unavailableReason(
      "No connection established. Last error: Error: connect ENOENT /x/c.sock. Resolution note: ",
    ),
    "connect ENOENT /x/c.sock",
  );
  assert.equal(unavailableReason("Connection dropped"), "Connection dropped");
  assert.equal(unavailableReason(""), "connection failed");
  const unavailable = new ContainerdUnavailableError("/run/containerd/containerd.sock", "x");
  assert.ok(unavailable instanceof RuntimeError);
  assert.equal(unavailable.exitCode, 1);
  assert.match(
    unavailable.message,
    /^containerd is not reachable at \/run\/containerd\/containerd\.sock: x/,
  );
  const call = new ContainerdCallError("a.B/C", 5, 'container "x" not found');
  assert.equal(call.codeName, "NOT_FOUND");
  assert.match(call.message, /a\.B\/C failed with NOT_FOUND: container "x" not found/);
});

Deno.test("socket paths: a unix:// prefix is removed", () => {
  assert.equal(
    socketPathOf("unix:///run/containerd/containerd.sock"),
    "/run/containerd/containerd.sock",
  );
  assert.equal(socketPathOf("/tmp/c.sock"), "/tmp/c.sock");
});
