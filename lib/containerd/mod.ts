/**
 * containerd for tinyfw: {@link ContainerdClient} (namespaces, tasks,
 * containers, events over containerd's gRPC socket) and
 * {@link ContainerdWatcher} (the subscribe / snapshot / reconnect loop of
 * containers mode). The wire layer lives in protos.ts, codec.ts, methods.ts
 * and rpc.ts.
 *
 * @module
 */

export {
  ContainerdClient,
  type ContainerdClientOptions,
  type ContainerInfo,
  type EventStream,
  type SubscribeOptions,
  type TaskInfo,
  type TaskStatus,
} from "./client.ts";
export {
  ContainerdWatcher,
  type RunningTask,
  type WatcherHandlers,
  type WatcherOptions,
  type WatcherState,
  type WatcherStateDetail,
} from "./watch.ts";
export type {
  ContainerChangeEvent,
  ContainerdEvent,
  EventBase,
  OtherEvent,
  TaskCreateEvent,
  TaskDeleteEvent,
  TaskExitEvent,
  TaskStartEvent,
} from "./events.ts";
export { type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.ts";
export { ContainerdCallError, ContainerdUnavailableError, GRPC_STATUS } from "./errors.ts";
export { socketPathOf } from "./rpc.ts";
