/**
 * The subset of containerd's gRPC API that tinyfw uses, as .proto text kept
 * in the source so a compiled binary needs no files beside it.
 *
 * Only the messages and fields we read or send are declared; protobuf
 * skips unknown fields, so a message here may leave out some of containerd's.
 * Field numbers, types and names are exactly those of containerd 1.6, from
 * these files of the containerd/containerd repository (release/1.6):
 *
 * - `api/services/events/v1/events.proto` — Events.Subscribe, SubscribeRequest, Envelope
 * - `api/events/task.proto` — TaskCreate, TaskStart, TaskExit, TaskDelete
 * - `api/events/container.proto` — ContainerCreate, ContainerUpdate, ContainerDelete
 * - `api/services/tasks/v1/tasks.proto` — Tasks.List, Tasks.Get
 * - `api/types/task/task.proto` — Process, Status
 * - `api/services/containers/v1/containers.proto` — Containers.Get/List, Container
 * - `api/services/namespaces/v1/namespace.proto` — Namespaces.List
 * - `google/protobuf/any.proto`, `google/protobuf/timestamp.proto`
 *
 * They were checked against the gzipped FileDescriptorProtos embedded in
 * Debian's containerd 1.6.20 binary; `tests/containerd/client_test.ts`
 * repeats that check against `/usr/bin/containerd`.
 *
 * @module
 */

/** One .proto text: a single package, as `protobufjs.parse` wants it. */
export interface ProtoFile {
  /** Where its definitions come from (paths in containerd's repository, or google's). */
  readonly source: string;
  /** The .proto text. */
  readonly text: string;
}

/** Every .proto text, parsed in this order into one protobufjs Root. */
export const CONTAINERD_PROTOS: readonly ProtoFile[] = [
  {
    source: "google/protobuf/any.proto + google/protobuf/timestamp.proto",
    text: `syntax = "proto3";
package google.protobuf;

message Any {
  string type_url = 1;
  bytes value = 2;
}

message Timestamp {
  int64 seconds = 1;
  int32 nanos = 2;
}
`,
  },
  {
    source: "api/services/events/v1/events.proto",
    text: `syntax = "proto3";
package containerd.services.events.v1;

service Events {
  rpc Subscribe(SubscribeRequest) returns (stream Envelope);
}

message SubscribeRequest {
  repeated string filters = 1;
}

message Envelope {
  google.protobuf.Timestamp timestamp = 1;
  string namespace = 2;
  string topic = 3;
  google.protobuf.Any event = 4;
}
`,
  },
  {
    source: "api/events/task.proto + api/events/container.proto",
    text: `syntax = "proto3";
package containerd.events;

message TaskCreate {
  string container_id = 1;
  string bundle = 2;
  string checkpoint = 5;
  uint32 pid = 6;
}

message TaskStart {
  string container_id = 1;
  uint32 pid = 2;
}

message TaskDelete {
  string container_id = 1;
  uint32 pid = 2;
  uint32 exit_status = 3;
  google.protobuf.Timestamp exited_at = 4;
  string id = 5;
}

message TaskExit {
  string container_id = 1;
  string id = 2;
  uint32 pid = 3;
  uint32 exit_status = 4;
  google.protobuf.Timestamp exited_at = 5;
}

message ContainerCreate {
  string id = 1;
  string image = 2;
  message Runtime {
    string name = 1;
  }
  Runtime runtime = 3;
}

message ContainerUpdate {
  string id = 1;
  string image = 2;
  map<string, string> labels = 3;
  string snapshot_key = 4;
}

message ContainerDelete {
  string id = 1;
}
`,
  },
  {
    source: "api/types/task/task.proto",
    text: `syntax = "proto3";
package containerd.v1.types;

enum Status {
  UNKNOWN = 0;
  CREATED = 1;
  RUNNING = 2;
  STOPPED = 3;
  PAUSED = 4;
  PAUSING = 5;
}

message Process {
  string container_id = 1;
  string id = 2;
  uint32 pid = 3;
  Status status = 4;
  uint32 exit_status = 9;
  google.protobuf.Timestamp exited_at = 10;
}
`,
  },
  {
    source: "api/services/tasks/v1/tasks.proto",
    text: `syntax = "proto3";
package containerd.services.tasks.v1;

service Tasks {
  rpc Get(GetRequest) returns (GetResponse);
  rpc List(ListTasksRequest) returns (ListTasksResponse);
}

message GetRequest {
  string container_id = 1;
  string exec_id = 2;
}

message GetResponse {
  containerd.v1.types.Process process = 1;
}

message ListTasksRequest {
  string filter = 1;
}

message ListTasksResponse {
  repeated containerd.v1.types.Process tasks = 1;
}
`,
  },
  {
    source: "api/services/containers/v1/containers.proto",
    text: `syntax = "proto3";
package containerd.services.containers.v1;

service Containers {
  rpc Get(GetContainerRequest) returns (GetContainerResponse);
  rpc List(ListContainersRequest) returns (ListContainersResponse);
}

message Container {
  string id = 1;
  map<string, string> labels = 2;
  string image = 3;
  message Runtime {
    string name = 1;
  }
  Runtime runtime = 4;
  string snapshotter = 6;
  string snapshot_key = 7;
}

message GetContainerRequest {
  string id = 1;
}

message GetContainerResponse {
  Container container = 1;
}

message ListContainersRequest {
  repeated string filters = 1;
}

message ListContainersResponse {
  repeated Container containers = 1;
}
`,
  },
  {
    source: "api/services/namespaces/v1/namespace.proto",
    text: `syntax = "proto3";
package containerd.services.namespaces.v1;

service Namespaces {
  rpc List(ListNamespacesRequest) returns (ListNamespacesResponse);
}

message Namespace {
  string name = 1;
  map<string, string> labels = 2;
}

message ListNamespacesRequest {
  string filter = 1;
}

message ListNamespacesResponse {
  repeated Namespace namespaces = 1;
}
`,
  },
];
