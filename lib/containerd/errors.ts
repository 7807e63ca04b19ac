/**
 * The two ways a containerd call fails: containerd cannot be reached at all
 * ({@link ContainerdUnavailableError}), or it answered with a gRPC error
 * ({@link ContainerdCallError}).
 *
 * @module
 */

import { RuntimeError } from "../base/mod.ts";

/** gRPC status codes (grpc/doc/statuscodes.md) that containerd returns. */
export const GRPC_STATUS = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** The name of a gRPC status code, e.g. 5 -> "NOT_FOUND"; "CODE_<n>" when unknown. */
export function grpcStatusName(code: number): string {
  for (const [name, value] of Object.entries(GRPC_STATUS)) {
    if (value === code) return name;
  }
  return `CODE_${code}`;
}

/**
 * containerd is not reachable: the socket is missing, refuses connections,
 * or the connection broke. Retrying later may succeed.
 */
export class ContainerdUnavailableError extends RuntimeError {
  /** The socket path that was tried. */
  readonly socket: string;

  constructor(socket: string, reason: string, options?: ErrorOptions) {
    super(
      `containerd is not reachable at ${socket}: ${reason}; check that containerd runs ` +
        `and that --containerd-socket names its socket`,
      options,
    );
    this.name = "ContainerdUnavailableError";
    this.socket = socket;
  }
}

/** containerd answered a call with an error status other than "unavailable". */
export class ContainerdCallError extends RuntimeError {
  /** The method called, e.g. "containerd.services.tasks.v1.Tasks/List". */
  readonly method: string;
  /** The gRPC status code. */
  readonly code: number;
  /** The status code's name, e.g. "NOT_FOUND". */
  readonly codeName: string;
  /** containerd's own description of the failure. */
  readonly description: string;

  constructor(method: string, code: number, description: string, options?: ErrorOptions) {
    const codeName = grpcStatusName(code);
    super(`containerd call ${method} failed with ${codeName}: ${description}`, options);
    this.name = "ContainerdCallError";
    this.method = method;
    this.code = code;
    this.codeName = codeName;
    this.description = description;
  }
}
