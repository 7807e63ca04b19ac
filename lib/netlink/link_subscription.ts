/**
 * Link change notifications (RTMGRP_LINK) delivered to a callback without
 * blocking the event loop: the socket's readiness is awaited (a poll on a
 * worker thread, see lib/ffi/libc.ts waitReadable), then queued datagrams are
 * read synchronously on the main thread, where errno (ENOBUFS) can be read.
 *
 * @module
 */

import { RTM_DELLINK, RTM_NEWLINK, RTMGRP_LINK } from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import { decodeLinkMessage, type Link } from "./link.ts";
import { decodeMessages } from "./message.ts";
import { NetlinkSocket } from "./socket.ts";
import { ENOBUFS } from "../ffi/mod.ts";

/**
 * A link notification. "new" covers creation and every change (flags, MTU,
 * XDP attach/detach...); "del" is removal. "overrun" means the kernel dropped
 * notifications because the socket buffer was full: the receiver must re-list
 * links to catch up.
 */
export type LinkEvent =
  | { readonly type: "new"; readonly link: Link }
  | { readonly type: "del"; readonly link: Link }
  | { readonly type: "overrun" };

/** Options of {@link LinkSubscription.start}. */
export interface LinkSubscriptionOptions {
  /** Kernel receive buffer to ask for (default 4 MiB) so bursts do not overrun. */
  readonly receiveBufferBytes?: number;
}

/**
 * A running RTMGRP_LINK subscription. Call {@link close} to stop it; `done`
 * settles once the socket is closed, and rejects if the subscription failed
 * (a socket error, undecodable notification, or an exception thrown by the
 * callback), so callers should await or `.catch()` it.
 */
export class LinkSubscription {
  readonly #socket: NetlinkSocket;
  /** Aborted by {@link close}, which ends a pending wait. */
  readonly #stop = new AbortController();
  readonly #onChange: (event: LinkEvent) => void;
  /** Settles when the subscription has stopped and released its descriptors. */
  readonly done: Promise<void>;

  private constructor(socket: NetlinkSocket, onChange: (e: LinkEvent) => void) {
    this.#socket = socket;
    this.#onChange = onChange;
    this.done = this.#run();
  }

  /** Opens a socket bound to RTMGRP_LINK and starts delivering events. */
  static start(
    onChange: (event: LinkEvent) => void,
    options: LinkSubscriptionOptions = {},
  ): LinkSubscription {
    const socket = NetlinkSocket.open({
      groups: RTMGRP_LINK,
      receiveBufferBytes: options.receiveBufferBytes ?? 4 * 1024 * 1024,
    });
    return new LinkSubscription(socket, onChange);
  }

  get #closing(): boolean {
    return this.#stop.signal.aborted;
  }

  async #run(): Promise<void> {
    try {
      while (!this.#closing) {
        try {
          await this.#socket.waitReadable(this.#stop.signal);
        } catch (err) {
          if (this.#closing) break;
          throw err;
        }
        this.#drain();
      }
    } finally {
      this.#socket.close();
    }
  }

  /** Reads and delivers everything queued, without waiting. */
  #drain(): void {
    while (!this.#closing) {
      let datagram: Uint8Array | null;
      try {
        datagram = this.#socket.tryReceive();
      } catch (err) {
        if (err instanceof NetlinkError && err.errno === ENOBUFS) {
          this.#onChange({ type: "overrun" });
          continue;
        }
        throw err;
      }
      if (!datagram) return;
      for (const msg of decodeMessages(datagram)) {
        if (msg.header.type === RTM_NEWLINK) {
          this.#onChange({ type: "new", link: decodeLinkMessage(msg) });
        } else if (msg.header.type === RTM_DELLINK) {
          this.#onChange({ type: "del", link: decodeLinkMessage(msg) });
        }
      }
    }
  }

  /** Stops the subscription; resolves once its descriptors are closed. Idempotent. */
  async close(): Promise<void> {
    this.#stop.abort();
    await this.done.catch(() => {});
  }
}
