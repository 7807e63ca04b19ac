/**
 * Protobuf encoding of containerd's messages: the .proto texts of
 * {@link CONTAINERD_PROTOS} parsed once by protobufjs, one named TypeScript
 * type per message we use, and a {@link Codec} per message that turns bytes
 * into those plain objects and back.
 *
 * Decoded objects carry every declared field (proto3 defaults filled in),
 * camelCase names, int64 as number, enums as numbers, maps as records.
 *
 * @module
 */

import protobuf from "protobufjs";
import { CONTAINERD_PROTOS } from "./protos.ts";

/** `google.protobuf.Timestamp`. */
export interface WireTimestamp {
  seconds: number;
  nanos: number;
}

/** `google.protobuf.Any`: a message of the type named by `typeUrl`, encoded. */
export interface WireAny {
  typeUrl: string;
  value: Uint8Array;
}

/** `containerd.services.events.v1.SubscribeRequest`. */
export interface WireSubscribeRequest {
  filters: string[];
}

/** `containerd.services.events.v1.Envelope`: one published event. */
export interface WireEnvelope {
  timestamp: WireTimestamp | null;
  namespace: string;
  topic: string;
  event: WireAny | null;
}

/** `containerd.events.TaskCreate`. */
export interface WireTaskCreate {
  containerId: string;
  bundle: string;
  checkpoint: string;
  pid: number;
}

/** `containerd.events.TaskStart`. */
export interface WireTaskStart {
  containerId: string;
  pid: number;
}

/** `containerd.events.TaskExit` (`id` is the exec id; the container id for the init process). */
export interface WireTaskExit {
  containerId: string;
  id: string;
  pid: number;
  exitStatus: number;
  exitedAt: WireTimestamp | null;
}

/** `containerd.events.TaskDelete` (`id` is the exec id, empty for the init process). */
export interface WireTaskDelete {
  containerId: string;
  pid: number;
  exitStatus: number;
  exitedAt: WireTimestamp | null;
  id: string;
}

/** `containerd.events.ContainerCreate`. */
export interface WireContainerCreate {
  id: string;
  image: string;
  runtime: { name: string } | null;
}

/** `containerd.events.ContainerUpdate`. */
export interface WireContainerUpdate {
  id: string;
  image: string;
  labels: Record<string, string>;
  snapshotKey: string;
}

/** `containerd.events.ContainerDelete`. */
export interface WireContainerDelete {
  id: string;
}

/** `containerd.v1.types.Process`: a task's process (`status` is a {@link TASK_STATUS} index). */
export interface WireProcess {
  containerId: string;
  id: string;
  pid: number;
  status: number;
  exitStatus: number;
  exitedAt: WireTimestamp | null;
}

/** `containerd.services.tasks.v1.GetRequest`. */
export interface WireGetTaskRequest {
  containerId: string;
  execId: string;
}

/** `containerd.services.tasks.v1.GetResponse`. */
export interface WireGetTaskResponse {
  process: WireProcess | null;
}

/** `containerd.services.tasks.v1.ListTasksRequest`. */
export interface WireListTasksRequest {
  filter: string;
}

/** `containerd.services.tasks.v1.ListTasksResponse`. */
export interface WireListTasksResponse {
  tasks: WireProcess[];
}

/** `containerd.services.containers.v1.Container`. */
export interface WireContainer {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: { name: string } | null;
  snapshotter: string;
  snapshotKey: string;
}

/** `containerd.services.containers.v1.GetContainerRequest`. */
export interface WireGetContainerRequest {
  id: string;
}

/** `containerd.services.containers.v1.GetContainerResponse`. */
export interface WireGetContainerResponse {
  container: WireContainer | null;
}

/** `containerd.services.containers.v1.ListContainersRequest`. */
export interface WireListContainersRequest {
  filters: string[];
}

/** `containerd.services.containers.v1.ListContainersResponse`. */
export interface WireListContainersResponse {
  containers: WireContainer[];
}

/** `containerd.services.namespaces.v1.ListNamespacesRequest`. */
export interface WireListNamespacesRequest {
  filter: string;
}

/** `containerd.services.namespaces.v1.ListNamespacesResponse`. */
export interface WireListNamespacesResponse {
  namespaces: { name: string; labels: Record<string, string> }[];
}

/** `containerd.v1.types.Status`, by enum value. */
export const TASK_STATUS = [
  "unknown",
  "created",
  "running",
  "stopped",
  "paused",
  "pausing",
] as const;

/** A task's status, as containerd reports it. */
export type TaskStatus = typeof TASK_STATUS[number];

/** The status named by a `containerd.v1.types.Status` value ("unknown" for values we do not know). */
export function taskStatusName(value: number): TaskStatus {
  return TASK_STATUS[value] ?? "unknown";
}

/** A message with any field left out, at any depth (encoding fills in proto3 defaults). */
export type DeepPartial<T> = T extends Uint8Array ? T
  : T extends readonly (infer U)[] ? DeepPartial<U>[]
  : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> }
  : T;

/** Encodes and decodes one message type. */
export interface Codec<T> {
  /** The message's full name, e.g. "containerd.events.TaskExit". */
  readonly name: string;
  /** The message's bytes for a (possibly partial) plain object. */
  encode(value: DeepPartial<T>): Uint8Array;
  /** The plain object for the message's bytes; throws on malformed input. */
  decode(bytes: Uint8Array): T;
}

const CONVERSION: protobuf.IConversionOptions = {
  longs: Number,
  enums: Number,
  defaults: true,
  arrays: true,
  objects: true,
};

let root: protobuf.Root | undefined;

/** The protobufjs Root holding every message and service of {@link CONTAINERD_PROTOS}. */
export function protoRoot(): protobuf.Root {
  if (root === undefined) {
    const r = new protobuf.Root();
    for (const file of CONTAINERD_PROTOS) protobuf.parse(file.text, r, { keepCase: false });
    r.resolveAll();
    root = r;
  }
  return root;
}

/** The {@link Codec} of a message, by full name (throws if our protos do not declare it). */
export function codec<T>(name: string): Codec<T> {
  const type = protoRoot().lookupType(name);
  return {
    name,
    encode: (value) => type.encode(type.fromObject(value as Record<string, unknown>)).finish(),
    decode: (bytes) => type.toObject(type.decode(bytes), CONVERSION) as T,
  };
}

/** The codecs of every message tinyfw sends or receives. */
export const codecs = {
  any: codec<WireAny>("google.protobuf.Any"),
  timestamp: codec<WireTimestamp>("google.protobuf.Timestamp"),
  subscribeRequest: codec<WireSubscribeRequest>("containerd.services.events.v1.SubscribeRequest"),
  envelope: codec<WireEnvelope>("containerd.services.events.v1.Envelope"),
  taskCreate: codec<WireTaskCreate>("containerd.events.TaskCreate"),
  taskStart: codec<WireTaskStart>("containerd.events.TaskStart"),
  taskExit: codec<WireTaskExit>("containerd.events.TaskExit"),
  taskDelete: codec<WireTaskDelete>("containerd.events.TaskDelete"),
  containerCreate: codec<WireContainerCreate>("containerd.events.ContainerCreate"),
  containerUpdate: codec<WireContainerUpdate>("containerd.events.ContainerUpdate"),
  containerDelete: codec<WireContainerDelete>("containerd.events.ContainerDelete"),
  getTaskRequest: codec<WireGetTaskRequest>("containerd.services.tasks.v1.GetRequest"),
  getTaskResponse: codec<WireGetTaskResponse>("containerd.services.tasks.v1.GetResponse"),
  listTasksRequest: codec<WireListTasksRequest>("containerd.services.tasks.v1.ListTasksRequest"),
  listTasksResponse: codec<WireListTasksResponse>(
    "containerd.services.tasks.v1.ListTasksResponse",
  ),
  getContainerRequest: codec<WireGetContainerRequest>(
    "containerd.services.containers.v1.GetContainerRequest",
  ),
  getContainerResponse: codec<WireGetContainerResponse>(
    "containerd.services.containers.v1.GetContainerResponse",
  ),
  listContainersRequest: codec<WireListContainersRequest>(
    "containerd.services.containers.v1.ListContainersRequest",
  ),
  listContainersResponse: codec<WireListContainersResponse>(
    "containerd.services.containers.v1.ListContainersResponse",
  ),
  listNamespacesRequest: codec<WireListNamespacesRequest>(
    "containerd.services.namespaces.v1.ListNamespacesRequest",
  ),
  listNamespacesResponse: codec<WireListNamespacesResponse>(
    "containerd.services.namespaces.v1.ListNamespacesResponse",
  ),
} as const;
