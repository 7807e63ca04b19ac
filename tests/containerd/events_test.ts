/**
 * Decoding containerd's events (lib/containerd/events.ts): envelopes built
 * with protobufjs from our own .proto definitions, one per event type, the
 * type-URL forms, and payloads that do not decode.
 */

import assert from "node:assert/strict";
import { type Codec, codecs, type DeepPartial } from "../../lib/containerd/codec.ts";
import {
  type ContainerdEvent,
  decodeEnvelope,
  messageNameOfTypeUrl,
  timestampToDate,
} from "../../lib/containerd/events.ts";

const PUBLISHED = { seconds: 1_764_115_200, nanos: 123_456_789 };
const PUBLISHED_DATE = new Date(1_764_115_200_123);

/** The bytes of an Envelope carrying `payload` (encoded with `codec`) as an Any. */
function envelopeBytes<T>(
  codec: Codec<T>,
  payload: DeepPartial<T>,
  opts: { topic?: string; namespace?: string; typeUrl?: string } = {},
): Uint8Array {
  return codecs.envelope.encode({
    timestamp: PUBLISHED,
    namespace: opts.namespace ?? "k8s.io",
    topic: opts.topic ?? "/x",
    event: { typeUrl: opts.typeUrl ?? codec.name, value: codec.encode(payload) },
  });
}

/** Decodes envelope bytes the way the client does. */
function decode(bytes: Uint8Array, receivedAt = 42.5): ContainerdEvent {
  return decodeEnvelope(codecs.envelope.decode(bytes), receivedAt);
}

const BASE = { namespace: "k8s.io", timestamp: PUBLISHED_DATE, receivedAt: 42.5 };

Deno.test("TaskCreate decodes to task-create with container id and pid", () => {
  const bytes = envelopeBytes(codecs.taskCreate, {
    containerId: "abc",
    bundle: "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc",
    pid: 4242,
  }, { topic: "/tasks/create" });
  assert.deepEqual(decode(bytes), {
    ...BASE,
    topic: "/tasks/create",
    type: "task-create",
    containerId: "abc",
    pid: 4242,
  });
});

Deno.test("TaskStart decodes to task-start", () => {
  const bytes = envelopeBytes(codecs.taskStart, { containerId: "abc", pid: 7 }, {
    topic: "/tasks/start",
  });
  assert.deepEqual(decode(bytes), {
    ...BASE,
    topic: "/tasks/start",
    type: "task-start",
    containerId: "abc",
    pid: 7,
  });
});

Deno.test("TaskExit decodes to task-exit with exec id and exit status", () => {
  const init = envelopeBytes(codecs.taskExit, {
    containerId: "abc",
    id: "abc",
    pid: 7,
    exitStatus: 137,
    exitedAt: { seconds: 1, nanos: 0 },
  }, { topic: "/tasks/exit" });
  assert.deepEqual(decode(init), {
    ...BASE,
    topic: "/tasks/exit",
    type: "task-exit",
    containerId: "abc",
    execId: "abc",
    pid: 7,
    exitStatus: 137,
  });
  // An exec'd process: execId differs from the container id.
  const exec = decode(envelopeBytes(codecs.taskExit, {
    containerId: "abc",
    id: "exec-1",
    pid: 99,
    exitStatus: 0,
  }));
  assert.equal(exec.type, "task-exit");
  if (exec.type === "task-exit") {
    assert.equal(exec.execId, "exec-1");
    assert.notEqual(exec.execId, exec.containerId);
    assert.equal(exec.exitStatus, 0);
  }
});

Deno.test("TaskDelete decodes to task-delete; execId only for an exec'd process", () => {
  const task = decode(envelopeBytes(codecs.taskDelete, {
    containerId: "abc",
    pid: 7,
    exitStatus: 137,
  }, { topic: "/tasks/delete" }));
  assert.deepEqual(task, {
    ...BASE,
    topic: "/tasks/delete",
    type: "task-delete",
    containerId: "abc",
    pid: 7,
  });
  assert.equal("execId" in task, false);
  const exec = decode(envelopeBytes(codecs.taskDelete, { containerId: "abc", pid: 9, id: "e1" }));
  assert.equal(exec.type === "task-delete" && exec.execId, "e1");
});

Deno.test("container create/update/delete decode with the container id", () => {
  const create = decode(envelopeBytes(codecs.containerCreate, {
    id: "c1",
    image: "docker.io/library/busybox:latest",
    runtime: { name: "io.containerd.runc.v2" },
  }, { topic: "/containers/create" }));
  assert.deepEqual(create, {
    ...BASE,
    topic: "/containers/create",
    type: "container-create",
    containerId: "c1",
  });
  const update = decode(envelopeBytes(codecs.containerUpdate, {
    id: "c1",
    labels: { "io.kubernetes.pod.name": "web" },
  }, { topic: "/containers/update" }));
  assert.equal(update.type, "container-update");
  assert.equal(update.type === "container-update" && update.containerId, "c1");
  const del = decode(envelopeBytes(codecs.containerDelete, { id: "c1" }));
  assert.equal(del.type, "container-delete");
  assert.equal(del.type === "container-delete" && del.containerId, "c1");
});

Deno.test("type URLs: bare names, types.containerd.io/ and type.googleapis.com/ prefixes", () => {
  assert.equal(messageNameOfTypeUrl("containerd.events.TaskStart"), "containerd.events.TaskStart");
  assert.equal(
    messageNameOfTypeUrl("types.containerd.io/containerd.events.TaskStart"),
    "containerd.events.TaskStart",
  );
  assert.equal(
    messageNameOfTypeUrl("type.googleapis.com/containerd.events.TaskStart"),
    "containerd.events.TaskStart",
  );
  for (
    const typeUrl of [
      "types.containerd.io/containerd.events.TaskStart",
      "a/b/c/containerd.events.TaskStart",
    ]
  ) {
    const e = decode(envelopeBytes(codecs.taskStart, { containerId: "x", pid: 1 }, { typeUrl }));
    assert.equal(e.type, "task-start", typeUrl);
  }
});

Deno.test("unknown payload types become 'other' with topic and type URL", () => {
  const bytes = codecs.envelope.encode({
    timestamp: PUBLISHED,
    namespace: "default",
    topic: "/images/create",
    event: { typeUrl: "containerd.events.ImageCreate", value: new Uint8Array([10, 1, 97]) },
  });
  assert.deepEqual(decode(bytes), {
    namespace: "default",
    topic: "/images/create",
    timestamp: PUBLISHED_DATE,
    receivedAt: 42.5,
    type: "other",
    typeUrl: "containerd.events.ImageCreate",
  });
});

Deno.test("a known payload type that does not decode becomes 'other' with an error", () => {
  const bytes = codecs.envelope.encode({
    timestamp: PUBLISHED,
    namespace: "default",
    topic: "/tasks/start",
    // An undeclared field (3) with wire type 7, which does not exist: cannot be skipped.
    event: { typeUrl: "containerd.events.TaskStart", value: new Uint8Array([0x1f, 0]) },
  });
  const e = decode(bytes);
  assert.equal(e.type, "other");
  assert.equal(e.type === "other" && e.typeUrl, "containerd.events.TaskStart");
  assert.match(e.type === "other" && e.error || "", /./);
});

Deno.test("an envelope without payload or timestamp still decodes", () => {
  const e = decode(codecs.envelope.encode({ namespace: "default", topic: "/x" }));
  assert.equal(e.type, "other");
  assert.equal(e.timestamp.getTime(), 0);
});

Deno.test("timestamps: seconds and nanos to a Date (millisecond precision)", () => {
  assert.equal(timestampToDate({ seconds: 2, nanos: 999_999_999 }).getTime(), 2999);
  assert.equal(timestampToDate(null).getTime(), 0);
});
