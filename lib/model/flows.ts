/**
 * The flow table of the reference model: which packets count as replies
 * (docs/DATAPATH.md §7), read literally. The XDP program keeps the same table
 * in the `flows` LRU map; the stateful differential test checks that both
 * agree packet by packet.
 *
 * - Learning a packet (one the host sends, or one a learning attachment
 *   allows) records the reply it calls for: for TCP, UDP and SCTP the reverse
 *   5-tuple; for an ICMP echo request (type 8) or ICMPv6 echo request (128),
 *   an echo reply (0 / 129, code 0) with the same identifier, from the
 *   request's destination to its source. Nothing else is learned.
 * - A packet is a reply when it is TCP other than a connection's opening SYN
 *   (SYN without ACK), UDP, SCTP, or an ICMP/ICMPv6 echo reply, and its own
 *   5-tuple (for echo replies: addresses, identifier, type and code) was
 *   learned, and the flow has not been idle longer than its protocol's
 *   timeout. A reply refreshes its flow, as learning does.
 * - Later fragments, malformed and non-IP frames neither learn nor match.
 *
 * The table is global: it is not per interface or direction, like the map.
 *
 * @module
 */

import {
  FLOW_TIMEOUT_ICMP_SEC,
  FLOW_TIMEOUT_TCP_SEC,
  FLOW_TIMEOUT_UDP_SEC,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
  TCP_FLAG_ACK,
  TCP_FLAG_SYN,
} from "../abi/mod.ts";
import { type IpPacket, type ParsedPacket, parsePacket } from "./packet.ts";

/**
 * A flow as the table keys it: the 5-tuple a reply carries. For ICMP echo,
 * `sport` is the identifier and `dport` the reply's `type << 8 | code`.
 */
export interface FlowTuple {
  family: 4 | 6;
  proto: number;
  /** The reply's source address (4 or 16 bytes). */
  saddr: Uint8Array;
  /** The reply's destination address. */
  daddr: Uint8Array;
  sport: number;
  dport: number;
}

function ip(pkt: Uint8Array | ParsedPacket): IpPacket | null {
  const p = pkt instanceof Uint8Array ? parsePacket(pkt) : pkt;
  return p.kind === "ip" && !p.laterFragment && p.l4 !== undefined ? p : null;
}

/** The reply that learning `pkt` expects, or null if `pkt` calls for none. */
export function expectedReply(pkt: Uint8Array | ParsedPacket): FlowTuple | null {
  const p = ip(pkt);
  if (!p) return null;
  const tuple = (sport: number, dport: number): FlowTuple => ({
    family: p.family,
    proto: p.proto,
    saddr: p.dst,
    daddr: p.src,
    sport,
    dport,
  });
  switch (p.proto) {
    case PROTO_TCP:
    case PROTO_UDP:
    case PROTO_SCTP:
      return tuple(p.l4!, p.sport!);
    case PROTO_ICMP:
      return p.icmpType === ICMP_ECHO_REQUEST ? tuple(p.echoId!, ICMP_ECHO_REPLY << 8) : null;
    case PROTO_ICMPV6:
      return p.icmpType === ICMPV6_ECHO_REQUEST ? tuple(p.echoId!, ICMPV6_ECHO_REPLY << 8) : null;
    default:
      return null;
  }
}

/** The flow `pkt` would answer, or null if `pkt` is never a reply (e.g. a TCP SYN). */
export function replyTuple(pkt: Uint8Array | ParsedPacket): FlowTuple | null {
  const p = ip(pkt);
  if (!p) return null;
  const own = (sport: number): FlowTuple => ({
    family: p.family,
    proto: p.proto,
    saddr: p.src,
    daddr: p.dst,
    sport,
    dport: p.l4!,
  });
  switch (p.proto) {
    case PROTO_TCP:
      return ((p.tcpFlags ?? 0) & (TCP_FLAG_SYN | TCP_FLAG_ACK)) === TCP_FLAG_SYN
        ? null
        : own(p.sport!);
    case PROTO_UDP:
    case PROTO_SCTP:
      return own(p.sport!);
    case PROTO_ICMP:
      return p.icmpType === ICMP_ECHO_REPLY ? own(p.echoId!) : null;
    case PROTO_ICMPV6:
      return p.icmpType === ICMPV6_ECHO_REPLY ? own(p.echoId!) : null;
    default:
      return null;
  }
}

/** Idle time after which a flow of protocol `proto` no longer makes replies pass, in seconds. */
export function flowTimeoutSec(proto: number): number {
  if (proto === PROTO_TCP || proto === PROTO_SCTP) return FLOW_TIMEOUT_TCP_SEC;
  if (proto === PROTO_UDP) return FLOW_TIMEOUT_UDP_SEC;
  return FLOW_TIMEOUT_ICMP_SEC;
}

/** A text key for a tuple (for maps and messages). */
export function flowKey(t: FlowTuple): string {
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${t.family}/${t.proto}/${hex(t.saddr)}:${t.sport}>${hex(t.daddr)}:${t.dport}`;
}

/** Options of {@link FlowTable}. */
export interface FlowTableOptions {
  /** The clock, in seconds (default: performance.now() / 1000). */
  now?: () => number;
}

/** The model's flow table: unbounded (the map's LRU eviction is not modelled). */
export class FlowTable {
  readonly #seen = new Map<string, number>();
  readonly #now: () => number;

  constructor(opts: FlowTableOptions = {}) {
    this.#now = opts.now ?? (() => performance.now() / 1000);
  }

  /** Number of flows recorded (expired ones included until they are learned again). */
  get size(): number {
    return this.#seen.size;
  }

  /**
   * Learns from `pkt` (a frame, or a parsed packet): records the reply it
   * expects, or refreshes it. Returns false when `pkt` calls for no reply.
   */
  learn(pkt: Uint8Array | ParsedPacket): boolean {
    const t = expectedReply(pkt);
    if (!t) return false;
    this.#seen.set(flowKey(t), this.#now());
    return true;
  }

  /** True when `pkt` answers a learned flow that has not timed out (and refreshes that flow). */
  isReply(pkt: Uint8Array | ParsedPacket): boolean {
    const t = replyTuple(pkt);
    if (!t) return false;
    const key = flowKey(t);
    const seen = this.#seen.get(key);
    if (seen === undefined) return false;
    const now = this.#now();
    if (now - seen > flowTimeoutSec(t.proto)) return false;
    this.#seen.set(key, now);
    return true;
  }

  /** The keys ({@link flowKey}) of every flow recorded. */
  keys(): string[] {
    return [...this.#seen.keys()];
  }

  /** Forgets every flow. */
  clear(): void {
    this.#seen.clear();
  }
}
