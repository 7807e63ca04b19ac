/**
 * containerd's events as tinyfw sees them: {@link ContainerdEvent}, decoded
 * from an `Envelope` of the Events/Subscribe stream by {@link decodeEnvelope}.
 *
 * An envelope carries its payload as a `google.protobuf.Any`. containerd 1.6
 * writes bare type URLs ("containerd.events.TaskStart"); the standard form
 * ("types.containerd.io/containerd.events.TaskStart",
 * "type.googleapis.com/...") is accepted too: the type is the URL's last
 * path segment.
 *
 * @module
 */

import { type Codec, codecs, type WireEnvelope, type WireTimestamp } from "./codec.ts";
import { describeError } from "../base/mod.ts";

/** What every event carries. */
export interface EventBase {
  /** The containerd namespace the event happened in. */
  readonly namespace: string;
  /** containerd's topic, e.g. "/tasks/start". */
  readonly topic: string;
  /** When containerd published the event. */
  readonly timestamp: Date;
  /** When this process received it (`performance.now()`), for latency measurements. */
  readonly receivedAt: number;
}

/** A task (its init process) was created: the process exists, its namespaces too, it has not run yet. */
export interface TaskCreateEvent extends EventBase {
  readonly type: "task-create";
  readonly containerId: string;
  /** The init process's pid. */
  readonly pid: number;
}

/** A task's init process was started. */
export interface TaskStartEvent extends EventBase {
  readonly type: "task-start";
  readonly containerId: string;
  readonly pid: number;
}

/**
 * A process of a task exited. Published for exec'd processes too: then
 * `execId` is the exec's id; for the task's init process it equals `containerId`.
 */
export interface TaskExitEvent extends EventBase {
  readonly type: "task-exit";
  readonly containerId: string;
  /** The exited process: the exec id, or the container id for the init process. */
  readonly execId: string;
  readonly pid: number;
  readonly exitStatus: number;
}

/** A task (or, with `execId`, one exec'd process of it) was deleted. */
export interface TaskDeleteEvent extends EventBase {
  readonly type: "task-delete";
  readonly containerId: string;
  readonly pid: number;
  /** Set when an exec'd process was deleted, absent for the task itself. */
  readonly execId?: string;
}

/** A container (containerd's metadata object, not a process) was created, updated or deleted. */
export interface ContainerChangeEvent extends EventBase {
  readonly type: "container-create" | "container-update" | "container-delete";
  readonly containerId: string;
}

/** Any other event (images, snapshots, namespaces, exec, pause, OOM...). */
export interface OtherEvent extends EventBase {
  readonly type: "other";
  /** The payload's type URL as containerd sent it. */
  readonly typeUrl: string;
  /** Set when the payload was of a known type but did not decode. */
  readonly error?: string;
}

/** One containerd event. */
export type ContainerdEvent =
  | TaskCreateEvent
  | TaskStartEvent
  | TaskExitEvent
  | TaskDeleteEvent
  | ContainerChangeEvent
  | OtherEvent;

/** The fully qualified message name in a type URL: its last path segment. */
export function messageNameOfTypeUrl(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf("/");
  return slash < 0 ? typeUrl : typeUrl.slice(slash + 1);
}

/** A protobuf Timestamp as a Date (epoch when absent). */
export function timestampToDate(ts: WireTimestamp | null | undefined): Date {
  if (!ts) return new Date(0);
  return new Date(ts.seconds * 1000 + Math.floor(ts.nanos / 1e6));
}

type Decoder = (bytes: Uint8Array, base: EventBase) => ContainerdEvent;

function decoder<T>(codec: Codec<T>, build: (m: T, base: EventBase) => ContainerdEvent): Decoder {
  return (bytes, base) => build(codec.decode(bytes), base);
}

const DECODERS: ReadonlyMap<string, Decoder> = new Map([
  [
    codecs.taskCreate.name,
    decoder(codecs.taskCreate, (m, base) => ({
      ...base,
      type: "task-create",
      containerId: m.containerId,
      pid: m.pid,
    })),
  ],
  [
    codecs.taskStart.name,
    decoder(codecs.taskStart, (m, base) => ({
      ...base,
      type: "task-start",
      containerId: m.containerId,
      pid: m.pid,
    })),
  ],
  [
    codecs.taskExit.name,
    decoder(codecs.taskExit, (m, base) => ({
      ...base,
      type: "task-exit",
      containerId: m.containerId,
      execId: m.id,
      pid: m.pid,
      exitStatus: m.exitStatus,
    })),
  ],
  [
    codecs.taskDelete.name,
    decoder(codecs.taskDelete, (m, base) => ({
      ...base,
      type: "task-delete",
      containerId: m.containerId,
      pid: m.pid,
      ...(m.id ? { execId: m.id } : {}),
    })),
  ],
  [
    codecs.containerCreate.name,
    decoder(codecs.containerCreate, (m, base) => ({
      ...base,
      type: "container-create",
      containerId: m.id,
    })),
  ],
  [
    codecs.containerUpdate.name,
    decoder(codecs.containerUpdate, (m, base) => ({
      ...base,
      type: "container-update",
      containerId: m.id,
    })),
  ],
  [
    codecs.containerDelete.name,
    decoder(codecs.containerDelete, (m, base) => ({
      ...base,
      type: "container-delete",
      containerId: m.id,
    })),
  ],
]);

/**
 * The event an envelope carries. Never throws: a payload of an unknown type
 * becomes an "other" event, one that does not decode an "other" event with
 * `error` set.
 */
export function decodeEnvelope(envelope: WireEnvelope, receivedAt: number): ContainerdEvent {
  const base: EventBase = {
    namespace: envelope.namespace,
    topic: envelope.topic,
    timestamp: timestampToDate(envelope.timestamp),
    receivedAt,
  };
  const typeUrl = envelope.event?.typeUrl ?? "";
  const decode = DECODERS.get(messageNameOfTypeUrl(typeUrl));
  if (decode === undefined) return { ...base, type: "other", typeUrl };
  try {
    return decode(envelope.event?.value ?? new Uint8Array(), base);
  } catch (err) {
    const error = describeError(err);
    return { ...base, type: "other", typeUrl, error };
  }
}
