/**
 * IP protocol numbers and protocol classes, shared by the packet parser, the
 * evaluator and the compiler (DATAPATH.md §2, "protocol class").
 *
 * @module
 */

import {
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_OTHER,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "../../abi/mod.ts";
import type { Protocol } from "./types.ts";

/** IP protocol number of each named rule protocol (all but `any`). */
export const PROTOCOL_NUMBER: Readonly<Record<Exclude<Protocol, "any">, number>> = {
  tcp: PROTO_TCP,
  udp: PROTO_UDP,
  sctp: PROTO_SCTP,
  icmp: PROTO_ICMP,
  icmpv6: PROTO_ICMPV6,
};

/** Every protocol class, in `PROTO_INDEX` order. */
export const PROTO_CLASSES: readonly number[] = [
  PROTO_TCP,
  PROTO_UDP,
  PROTO_SCTP,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_OTHER,
];

/** The protocol class of a raw IP protocol number: itself for the five named ones, else OTHER. */
export function protoClassOf(proto: number): number {
  switch (proto) {
    case PROTO_TCP:
    case PROTO_UDP:
    case PROTO_SCTP:
    case PROTO_ICMP:
    case PROTO_ICMPV6:
      return proto;
    default:
      return PROTO_OTHER;
  }
}

/** True for the protocol classes whose L4 key is a destination port. */
export function hasPorts(protoClass: number): boolean {
  return protoClass === PROTO_TCP || protoClass === PROTO_UDP || protoClass === PROTO_SCTP;
}

/** True for the protocol classes whose L4 key is `type << 8 | code`. */
export function hasIcmpKey(protoClass: number): boolean {
  return protoClass === PROTO_ICMP || protoClass === PROTO_ICMPV6;
}

/** Parses a protocol name (`tcp`...) or a decimal number 0..255 into a number. */
export function protocolNumber(nameOrNumber: string | number): number {
  if (typeof nameOrNumber === "number") {
    if (!Number.isInteger(nameOrNumber) || nameOrNumber < 0 || nameOrNumber > 255) {
      throw new RangeError(`an IP protocol number is 0..255, not ${nameOrNumber}`);
    }
    return nameOrNumber;
  }
  const named = (PROTOCOL_NUMBER as Record<string, number>)[nameOrNumber.toLowerCase()];
  if (named !== undefined) return named;
  if (/^(0|[1-9][0-9]{0,2})$/.test(nameOrNumber) && Number(nameOrNumber) <= 255) {
    return Number(nameOrNumber);
  }
  throw new RangeError(
    `unknown protocol "${nameOrNumber}": use tcp, udp, sctp, icmp, icmpv6 or a number 0..255`,
  );
}
