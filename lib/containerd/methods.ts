/**
 * The containerd RPC methods tinyfw calls, each with its codecs.
 *
 * @module
 */

import {
  codecs,
  type WireEnvelope,
  type WireGetContainerRequest,
  type WireGetContainerResponse,
  type WireGetTaskRequest,
  type WireGetTaskResponse,
  type WireListContainersRequest,
  type WireListContainersResponse,
  type WireListNamespacesRequest,
  type WireListNamespacesResponse,
  type WireListTasksRequest,
  type WireListTasksResponse,
  type WireSubscribeRequest,
} from "./codec.ts";
import type { Method } from "./rpc.ts";

/** `Events/Subscribe`: every event published after the call (server stream, not namespaced). */
export const EVENTS_SUBSCRIBE: Method<WireSubscribeRequest, WireEnvelope> = {
  name: "containerd.services.events.v1.Events/Subscribe",
  request: codecs.subscribeRequest,
  response: codecs.envelope,
};

/** `Tasks/List`: the tasks of a namespace. */
export const TASKS_LIST: Method<WireListTasksRequest, WireListTasksResponse> = {
  name: "containerd.services.tasks.v1.Tasks/List",
  request: codecs.listTasksRequest,
  response: codecs.listTasksResponse,
};

/** `Tasks/Get`: one task (or exec'd process). */
export const TASKS_GET: Method<WireGetTaskRequest, WireGetTaskResponse> = {
  name: "containerd.services.tasks.v1.Tasks/Get",
  request: codecs.getTaskRequest,
  response: codecs.getTaskResponse,
};

/** `Containers/Get`: one container's metadata. */
export const CONTAINERS_GET: Method<WireGetContainerRequest, WireGetContainerResponse> = {
  name: "containerd.services.containers.v1.Containers/Get",
  request: codecs.getContainerRequest,
  response: codecs.getContainerResponse,
};

/** `Containers/List`: the containers of a namespace. */
export const CONTAINERS_LIST: Method<WireListContainersRequest, WireListContainersResponse> = {
  name: "containerd.services.containers.v1.Containers/List",
  request: codecs.listContainersRequest,
  response: codecs.listContainersResponse,
};

/** `Namespaces/List`: every namespace (not namespaced). */
export const NAMESPACES_LIST: Method<WireListNamespacesRequest, WireListNamespacesResponse> = {
  name: "containerd.services.namespaces.v1.Namespaces/List",
  request: codecs.listNamespacesRequest,
  response: codecs.listNamespacesResponse,
};
