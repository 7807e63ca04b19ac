/**
 * The rtnetlink client: link dumps and lookups, nsid lookups, and link change
 * subscriptions. Requests are synchronous (send, then receive until the reply,
 * NLMSG_DONE or NLMSG_ERROR), each matched to its sequence number and to this
 * socket's port id.
 *
 * @example
 * ```ts
 * const rtnl = RtnetlinkClient.open();
 * try {
 *   const veths = rtnl.listLinks().filter((l) => l.kind === "veth");
 *   const eth0 = rtnl.getLink("eth0"); // null when there is no eth0
 * } finally {
 *   rtnl.close();
 * }
 * ```
 *
 * @module
 */

import {
  NETNSA_NSID_NOT_ASSIGNED,
  NLM_F_DUMP_INTR,
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  RTM_NEWLINK,
  RTM_NEWNSID,
} from "./constants.ts";
import { NetlinkDecodeError, NetlinkError } from "./errors.ts";
import { decodeLinkMessage, encodeGetLinkRequest, type Link } from "./link.ts";
import {
  type LinkEvent,
  LinkSubscription,
  type LinkSubscriptionOptions,
} from "./link_subscription.ts";
import {
  decodeDoneMessage,
  decodeErrorMessage,
  decodeMessages,
  type ErrorReply,
  type NetlinkMessage,
} from "./message.ts";
import { decodeNsidMessage, encodeGetNsidRequest } from "./nsid.ts";
import { decodeFilterMessage, encodeGetFilterDump, RTM_NEWTFILTER, type TcFilter } from "./tc.ts";
import { closeFd, NetlinkSocket, type NetlinkTransport, openFd } from "./socket.ts";
import { EINTR, ENODEV } from "../ffi/mod.ts";

/** How many times a dump that the kernel marks inconsistent (NLM_F_DUMP_INTR) is retried. */
const DUMP_ATTEMPTS = 5;

/** Options of link queries. */
export interface LinkQueryOptions {
  /**
   * Query the network namespace that has this nsid (as seen from the client's
   * namespace) instead of the client's own (IFLA_TARGET_NETNSID).
   */
  readonly targetNetnsid?: number;
}

/** A synchronous rtnetlink (NETLINK_ROUTE) client. */
export class RtnetlinkClient {
  readonly #transport: NetlinkTransport;
  #seq: number;

  /** Wraps a transport; use {@link RtnetlinkClient.open} for a real socket. */
  constructor(transport: NetlinkTransport) {
    this.#transport = transport;
    this.#seq = Math.floor(Date.now() / 1000) >>> 0;
  }

  /** Opens a NETLINK_ROUTE socket in the caller's network namespace. Throws NetlinkError. */
  static open(): RtnetlinkClient {
    return new RtnetlinkClient(NetlinkSocket.open());
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0 || 1;
    return this.#seq;
  }

  #error(op: string, reply: ErrorReply): NetlinkError {
    return new NetlinkError({
      op,
      errno: reply.errno,
      description: this.#transport.describeError?.(reply.errno),
      extAckMessage: reply.extAckMessage,
      extAckOffset: reply.extAckOffset,
    });
  }

  /**
   * Sends `request` (already encoded with `seq`) and collects the data
   * messages of the reply. Returns them and whether the kernel flagged the
   * dump as interrupted. Messages with another seq or port id are skipped
   * (leftovers of an earlier request that failed half-way).
   */
  #exchange(
    op: string,
    seq: number,
    request: Uint8Array,
  ): { messages: NetlinkMessage[]; interrupted: boolean } {
    this.#transport.send(request);
    const messages: NetlinkMessage[] = [];
    let interrupted = false;
    for (;;) {
      for (const msg of decodeMessages(this.#transport.receive())) {
        const { header } = msg;
        if (header.seq !== seq || header.pid !== this.#transport.portId) continue;
        if (header.flags & NLM_F_DUMP_INTR) interrupted = true;
        switch (header.type) {
          case NLMSG_NOOP:
            continue;
          case NLMSG_ERROR: {
            const reply = decodeErrorMessage(msg);
            if (reply.errno !== 0) throw this.#error(op, reply);
            return { messages, interrupted };
          }
          case NLMSG_DONE: {
            const reply = decodeDoneMessage(msg);
            if (reply.errno !== 0) throw this.#error(op, reply);
            return { messages, interrupted };
          }
          case NLMSG_OVERRUN:
            throw new NetlinkDecodeError("NLMSG_OVERRUN: the kernel lost data", msg.offset);
          default:
            messages.push(msg);
            if (!(header.flags & NLM_F_MULTI)) return { messages, interrupted };
        }
      }
    }
  }

  /** Every link of the namespace (RTM_GETLINK dump), in ifindex order. */
  listLinks(options: LinkQueryOptions = {}): Link[] {
    for (let attempt = 1;; attempt++) {
      const seq = this.#nextSeq();
      const request = encodeGetLinkRequest({
        seq,
        target: { dump: true },
        targetNetnsid: options.targetNetnsid,
      });
      const { messages, interrupted } = this.#exchange("RTM_GETLINK dump", seq, request);
      if (!interrupted) {
        return messages.filter((m) => m.header.type === RTM_NEWLINK).map(decodeLinkMessage);
      }
      if (attempt === DUMP_ATTEMPTS) {
        throw new NetlinkError({
          op: "RTM_GETLINK dump",
          errno: EINTR,
          description: `links kept changing during ${DUMP_ATTEMPTS} dump attempts`,
        });
      }
    }
  }

  /**
   * One link by name (IFLA_IFNAME, or an alternative name) or by ifindex;
   * null when there is no such link (ENODEV). Throws RangeError for a name or
   * index no link can have, NetlinkError for any other failure.
   */
  getLink(nameOrIndex: string | number, options: LinkQueryOptions = {}): Link | null {
    const seq = this.#nextSeq();
    const target = typeof nameOrIndex === "number" ? { index: nameOrIndex } : { name: nameOrIndex };
    const request = encodeGetLinkRequest({ seq, target, targetNetnsid: options.targetNetnsid });
    try {
      const { messages } = this.#exchange("RTM_GETLINK", seq, request);
      const reply = messages.find((m) => m.header.type === RTM_NEWLINK);
      return reply ? decodeLinkMessage(reply) : null;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENODEV) return null;
      throw err;
    }
  }

  #getNsid(op: string, target: { pid: number } | { fd: number }): number {
    const seq = this.#nextSeq();
    const { messages } = this.#exchange(op, seq, encodeGetNsidRequest(seq, target));
    const reply = messages.find((m) => m.header.type === RTM_NEWNSID);
    return reply ? decodeNsidMessage(reply).nsid : NETNSA_NSID_NOT_ASSIGNED;
  }

  /**
   * The nsid this namespace gives the network namespace of process `pid`;
   * -1 when none is assigned yet. Throws NetlinkError (ESRCH for no such process).
   */
  getNsidByPid(pid: number): number {
    return this.#getNsid("RTM_GETNSID pid", { pid });
  }

  /** The nsid of the network namespace an open nsfs descriptor refers to; -1 when none is assigned. */
  getNsidByFd(fd: number): number {
    return this.#getNsid("RTM_GETNSID fd", { fd });
  }

  /**
   * The nsid of the network namespace at `path` (`/proc/PID/ns/net`,
   * `/run/netns/NAME`); -1 when none is assigned.
   */
  getNsidByPath(path: string): number {
    const fd = openFd(path);
    try {
      return this.getNsidByFd(fd);
    } finally {
      closeFd(fd);
    }
  }

  /**
   * The tc filters attached under `parent` on interface `ifindex` (e.g. a
   * clsact hook: TC_PARENT_CLSACT_EGRESS), in the kernel's order; empty when
   * there are none or no such qdisc. Throws NetlinkError (ENODEV for no such
   * interface).
   */
  listTcFilters(ifindex: number, parent: number): TcFilter[] {
    for (let attempt = 1;; attempt++) {
      const seq = this.#nextSeq();
      const { messages, interrupted } = this.#exchange(
        "RTM_GETTFILTER dump",
        seq,
        encodeGetFilterDump(seq, ifindex, parent),
      );
      if (!interrupted) {
        return messages.filter((m) => m.header.type === RTM_NEWTFILTER).map(decodeFilterMessage);
      }
      if (attempt === DUMP_ATTEMPTS) {
        throw new NetlinkError({
          op: "RTM_GETTFILTER dump",
          errno: EINTR,
          description: `filters kept changing during ${DUMP_ATTEMPTS} dump attempts`,
        });
      }
    }
  }

  /**
   * Calls `onChange` for every link notification (RTMGRP_LINK) of the
   * caller's network namespace, on a socket of its own, without blocking the
   * event loop. Close the returned subscription to stop.
   */
  subscribeLinks(
    onChange: (event: LinkEvent) => void,
    options?: LinkSubscriptionOptions,
  ): LinkSubscription {
    return LinkSubscription.start(onChange, options);
  }

  /** Closes the request socket. */
  close(): void {
    this.#transport.close();
  }
}
