/**
 * RTM_GETNSID requests and RTM_NEWNSID decoding: struct rtgenmsg (one byte,
 * padded to four) followed by NETNSA_* attributes. Pure: no I/O.
 *
 * An nsid is a number the *querying* namespace gives another namespace; it is
 * what IFLA_LINK_NETNSID reports for a veth whose peer lives over there.
 *
 * @module
 */

import {
  attributesByType,
  concatBytes,
  decodeAttributes,
  readS32,
  u32Attribute,
} from "./attributes.ts";
import {
  AF_UNSPEC,
  NETNSA_CURRENT_NSID,
  NETNSA_FD,
  NETNSA_NSID,
  NETNSA_PID,
  NLM_F_REQUEST,
  NLMSG_HDRLEN,
  RTGENMSG_ALIGNED_LEN,
  RTM_GETNSID,
  RTM_NEWNSID,
} from "./constants.ts";
import { NetlinkDecodeError } from "./errors.ts";
import { encodeMessage, type NetlinkMessage } from "./message.ts";

/** Encodes struct rtgenmsg with its padding (4 bytes). */
export function encodeRtgenmsg(family = AF_UNSPEC): Uint8Array {
  const out = new Uint8Array(RTGENMSG_ALIGNED_LEN);
  out[0] = family;
  return out;
}

/** Which namespace an RTM_GETNSID request asks about. */
export type NsidTarget = { readonly pid: number } | { readonly fd: number };

/** Encodes RTM_GETNSID for the namespace of a process (NETNSA_PID) or an open nsfs file (NETNSA_FD). */
export function encodeGetNsidRequest(seq: number, target: NsidTarget): Uint8Array {
  const value = "pid" in target ? target.pid : target.fd;
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw new RangeError(`invalid ${"pid" in target ? "pid" : "fd"} ${value}`);
  }
  const attr = u32Attribute("pid" in target ? NETNSA_PID : NETNSA_FD, value);
  return encodeMessage(
    { type: RTM_GETNSID, flags: NLM_F_REQUEST, seq },
    concatBytes([encodeRtgenmsg(), attr]),
  );
}

/** An RTM_NEWNSID reply or notification. */
export interface NsidReply {
  /** NETNSA_NSID: the nsid, or -1 (NETNSA_NSID_NOT_ASSIGNED) when none is assigned. */
  readonly nsid: number;
  /** NETNSA_CURRENT_NSID, when present (notifications to listen-all-nsid sockets). */
  readonly currentNsid?: number;
}

/** Decodes an RTM_NEWNSID message. */
export function decodeNsidMessage(msg: NetlinkMessage): NsidReply {
  if (msg.header.type !== RTM_NEWNSID) {
    throw new NetlinkDecodeError(`message type ${msg.header.type} is not RTM_NEWNSID`, msg.offset);
  }
  const base = msg.offset + NLMSG_HDRLEN;
  if (msg.payload.length < RTGENMSG_ALIGNED_LEN) {
    throw new NetlinkDecodeError(
      `RTM_NEWNSID body has ${msg.payload.length} byte(s), too short for rtgenmsg`,
      base,
    );
  }
  const attrs = attributesByType(
    decodeAttributes(msg.payload.subarray(RTGENMSG_ALIGNED_LEN), base + RTGENMSG_ALIGNED_LEN),
  );
  const nsid = attrs.get(NETNSA_NSID);
  if (!nsid) throw new NetlinkDecodeError("RTM_NEWNSID without NETNSA_NSID", msg.offset);
  const current = attrs.get(NETNSA_CURRENT_NSID);
  return {
    nsid: readS32(nsid, "NETNSA_NSID"),
    currentNsid: current ? readS32(current, "NETNSA_CURRENT_NSID") : undefined,
  };
}
