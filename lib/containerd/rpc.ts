/**
 * gRPC transport to containerd: a grpc-js channel over containerd's unix
 * socket, unary calls and server streams with protobufjs codecs, the
 * `containerd-namespace` metadata, and errors mapped to
 * {@link ContainerdUnavailableError} / {@link ContainerdCallError}.
 *
 * grpc-js on Deno (checked with Deno 2.9, grpc-js 1.14): works over
 * `unix:///path` through Deno's node:http2 and node:net. Notes:
 * - grpc-js reads `process.env` (GRPC_TRACE, grpc_proxy...) when imported:
 *   the process needs `--allow-env` (proxies do not apply to unix sockets).
 * - A channel keeps per-subchannel reconnect backoff (1 s growing to 120 s
 *   by default). Subchannels live in a process-wide pool unless
 *   `grpc.use_local_subchannel_pool` is set, so a new channel to the same
 *   socket would inherit a broken one's backoff. We use a local pool (the
 *   channel's subchannels go away with it) and short reconnect backoff.
 * - `Client.close()` does not end calls in flight: {@link RpcChannel.close}
 *   cancels them first, so that nothing (socket, deadline timer) outlives it.
 * - Channelz is disabled: it would keep a registry entry per channel.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { Codec, DeepPartial } from "./codec.ts";
import { ContainerdCallError, ContainerdUnavailableError, GRPC_STATUS } from "./errors.ts";

/** One RPC method: its path and the codecs of its request and response. */
export interface Method<Req, Res> {
  /** The method's name without the leading slash, e.g. "containerd.services.tasks.v1.Tasks/List". */
  readonly name: string;
  readonly request: Codec<Req>;
  readonly response: Codec<Res>;
}

/** Options of one call. */
export interface CallOptions {
  /** The containerd namespace, sent as `containerd-namespace` metadata; none for unnamespaced calls. */
  readonly namespace?: string;
  /** A deadline for unary calls, in milliseconds; {@link RpcChannelOptions.callTimeoutMs} by default. */
  readonly timeoutMs?: number;
}

/** What a server stream reports. */
export interface StreamHandlers<Res> {
  /** Each message, in order. An exception thrown here cancels the stream and ends it with that error. */
  onMessage(message: Res): void;
  /**
   * Called once when the stream is over: null when it ended normally or was
   * cancelled through {@link StreamCall.cancel}, the error otherwise.
   */
  onEnd(error: Error | null): void;
}

/** A server stream in progress. */
export interface StreamCall {
  /** Ends the stream; {@link StreamHandlers.onEnd} follows (with null). */
  cancel(): void;
}

/** Options of an {@link RpcChannel}. */
export interface RpcChannelOptions {
  /** Default deadline of unary calls, in milliseconds (10 s). */
  readonly callTimeoutMs?: number;
}

/** The longest message accepted from containerd (containerd's own default limit is 16 MiB). */
const MAX_RECEIVE_BYTES = 64 * 1024 * 1024;

const CHANNEL_OPTIONS: grpc.ClientOptions = {
  "grpc.use_local_subchannel_pool": 1,
  "grpc.enable_channelz": 0,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
  "grpc.max_receive_message_length": MAX_RECEIVE_BYTES,
};

/** The socket path of a `--containerd-socket` value: a `unix://` prefix is removed. */
export function socketPathOf(address: string): string {
  return address.startsWith("unix://") ? address.slice("unix://".length) : address;
}

/** A gRPC channel to containerd. Connects on the first call. */
export class RpcChannel {
  /** The socket path. */
  readonly socket: string;
  readonly #client: grpc.Client;
  readonly #callTimeoutMs: number;
  readonly #calls = new Set<grpc.Call>();
  #closed = false;

  constructor(socket: string, options: RpcChannelOptions = {}) {
    this.socket = socketPathOf(socket);
    this.#callTimeoutMs = options.callTimeoutMs ?? 10_000;
    this.#client = new grpc.Client(
      `unix://${this.socket}`,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    );
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Calls a unary method; rejects with a {@link ContainerdUnavailableError} or {@link ContainerdCallError}. */
  unary<Req, Res>(
    method: Method<Req, Res>,
    request: DeepPartial<Req>,
    options: CallOptions = {},
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (this.#closed) {
        reject(this.#closedError(method));
        return;
      }
      const timeoutMs = options.timeoutMs ?? this.#callTimeoutMs;
      const call = this.#client.makeUnaryRequest<DeepPartial<Req>, Res>(
        `/${method.name}`,
        (value) => Buffer.from(method.request.encode(value)),
        (bytes) => method.response.decode(bytes),
        request,
        metadataOf(options),
        { deadline: Date.now() + timeoutMs },
        (err, response) => {
          this.#calls.delete(call);
          if (err) reject(this.#errorOf(method, err));
          else if (response === undefined) reject(this.#errorOf(method, null));
          else resolve(response);
        },
      );
      this.#calls.add(call);
    });
  }

  /** Starts a server-streaming call; messages and the end are reported to `handlers`. */
  serverStream<Req, Res>(
    method: Method<Req, Res>,
    request: DeepPartial<Req>,
    handlers: StreamHandlers<Res>,
    options: CallOptions = {},
  ): StreamCall {
    if (this.#closed) {
      const error = this.#closedError(method);
      queueMicrotask(() => handlers.onEnd(error));
      return { cancel() {} };
    }
    const stream = this.#client.makeServerStreamRequest<DeepPartial<Req>, Res>(
      `/${method.name}`,
      (value) => Buffer.from(method.request.encode(value)),
      (bytes) => method.response.decode(bytes),
      request,
      metadataOf(options),
    );
    this.#calls.add(stream);
    let cancelledByUs = false;
    let handlerError: Error | null = null;
    let ended = false;
    stream.on("data", (message: Res) => {
      if (ended || handlerError) return;
      try {
        handlers.onMessage(message);
      } catch (err) {
        handlerError = err instanceof Error ? err : new Error(String(err));
        stream.cancel();
      }
    });
    // Errors also arrive as a "status" event; listening here keeps them from being thrown.
    stream.on("error", () => {});
    stream.on("status", (status: grpc.StatusObject) => {
      if (ended) return;
      ended = true;
      this.#calls.delete(stream);
      let error: Error | null = null;
      if (handlerError) error = handlerError;
      else if (status.code === GRPC_STATUS.CANCELLED && (cancelledByUs || this.#closed)) {
        error = null;
      } else if (status.code === GRPC_STATUS.OK) error = null;
      else error = this.#errorOf(method, status);
      handlers.onEnd(error);
    });
    return {
      cancel: () => {
        if (ended) return;
        cancelledByUs = true;
        stream.cancel();
      },
    };
  }

  /**
   * Cancels every call in flight and closes the channel. Pending unary
   * calls reject; streams end (with null).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const call of [...this.#calls]) call.cancel();
    this.#client.close();
  }

  #closedError(method: Method<unknown, unknown>): ContainerdCallError {
    return new ContainerdCallError(method.name, GRPC_STATUS.CANCELLED, "the client was closed");
  }

  #errorOf(
    method: Method<unknown, unknown>,
    status: Partial<grpc.StatusObject> | null,
  ): Error {
    if (status === null) {
      return new ContainerdCallError(method.name, GRPC_STATUS.INTERNAL, "empty response");
    }
    const code = status.code ?? GRPC_STATUS.UNKNOWN;
    const details = status.details ?? "";
    if (code === GRPC_STATUS.CANCELLED && this.#closed) return this.#closedError(method);
    if (code === GRPC_STATUS.UNAVAILABLE) {
      return new ContainerdUnavailableError(this.socket, unavailableReason(details), {
        cause: status,
      });
    }
    return new ContainerdCallError(method.name, code, details || "no details", { cause: status });
  }
}

function metadataOf(options: CallOptions): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (options.namespace !== undefined) metadata.set("containerd-namespace", options.namespace);
  return metadata;
}

/**
 * The useful part of grpc-js's UNAVAILABLE details, e.g. "No connection
 * established. Last error: Error: connect ENOENT /x.sock. Resolution note: "
 * becomes "connect ENOENT /x.sock".
 */
export function unavailableReason(details: string): string {
  const last = /Last error: (?:Error: )?(.*?)(?:\.? Resolution note:.*)?$/s.exec(details);
  const reason = (last ? last[1] : details).trim();
  return reason || "connection failed";
}
