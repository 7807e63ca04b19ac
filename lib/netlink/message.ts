/**
 * Netlink message framing: struct nlmsghdr, splitting a received datagram into
 * messages, and the control messages NLMSG_ERROR (errors and acks, with extended
 * ack TLVs) and NLMSG_DONE (end of a multipart dump). Pure: no I/O.
 *
 * Payload encoders/decoders for particular families live beside this module
 * (link.ts for RTM_*LINK, nsid.ts for RTM_*NSID).
 *
 * @module
 */

import { align4, decodeAttributes, HOST_LITTLE_ENDIAN, readString, readU32 } from "./attributes.ts";
import {
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
} from "./constants.ts";
import { NetlinkDecodeError } from "./errors.ts";

/** struct nlmsghdr. */
export interface NlMsgHeader {
  /** nlmsg_len: the message length including this 16-byte header. */
  readonly length: number;
  /** nlmsg_type: NLMSG_* control type or a family's message type (RTM_*). */
  readonly type: number;
  /** nlmsg_flags: NLM_F_* bits. */
  readonly flags: number;
  /** nlmsg_seq: the request's sequence number, echoed in replies. */
  readonly seq: number;
  /** nlmsg_pid: the port id of the socket a reply is addressed to (0 from the kernel to it). */
  readonly pid: number;
}

/** One message of a datagram: its header and the bytes after the header. */
export interface NetlinkMessage {
  readonly header: NlMsgHeader;
  /** The message body (nlmsg_len - 16 bytes), a view into the datagram. */
  readonly payload: Uint8Array;
  /** Offset of the header in the datagram. */
  readonly offset: number;
}

/** The header fields a caller chooses when building a request. */
export interface RequestHeader {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  /** Sender port id; 0 lets the kernel fill in the socket's own. */
  readonly pid?: number;
}

/** Encodes a complete message: header followed by `body` (padded to 4 bytes). */
export function encodeMessage(header: RequestHeader, body: Uint8Array): Uint8Array {
  const length = NLMSG_HDRLEN + body.length;
  const out = new Uint8Array(align4(length));
  const view = new DataView(out.buffer);
  view.setUint32(0, length, HOST_LITTLE_ENDIAN);
  view.setUint16(4, header.type, HOST_LITTLE_ENDIAN);
  view.setUint16(6, header.flags, HOST_LITTLE_ENDIAN);
  view.setUint32(8, header.seq >>> 0, HOST_LITTLE_ENDIAN);
  view.setUint32(12, (header.pid ?? 0) >>> 0, HOST_LITTLE_ENDIAN);
  out.set(body, NLMSG_HDRLEN);
  return out;
}

/** Decodes the 16-byte nlmsghdr at `offset` (bounds are the caller's job). */
function readHeader(view: DataView, offset: number): NlMsgHeader {
  return {
    length: view.getUint32(offset, HOST_LITTLE_ENDIAN),
    type: view.getUint16(offset + 4, HOST_LITTLE_ENDIAN),
    flags: view.getUint16(offset + 6, HOST_LITTLE_ENDIAN),
    seq: view.getUint32(offset + 8, HOST_LITTLE_ENDIAN),
    pid: view.getUint32(offset + 12, HOST_LITTLE_ENDIAN),
  };
}

/**
 * Splits one received datagram into its messages. Throws
 * {@link NetlinkDecodeError} when a length field is impossible or the datagram
 * ends in the middle of a message.
 */
export function decodeMessages(datagram: Uint8Array): NetlinkMessage[] {
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const out: NetlinkMessage[] = [];
  let offset = 0;
  while (offset < datagram.length) {
    const left = datagram.length - offset;
    if (left < NLMSG_HDRLEN) {
      throw new NetlinkDecodeError(
        `${left} byte(s) left, too short for a message header`,
        offset,
      );
    }
    const header = readHeader(view, offset);
    if (header.length < NLMSG_HDRLEN) {
      throw new NetlinkDecodeError(
        `message length ${header.length} is shorter than its header`,
        offset,
      );
    }
    if (header.length > left) {
      throw new NetlinkDecodeError(
        `message (type ${header.type}) length ${header.length} runs past the end (${left} left)`,
        offset,
      );
    }
    out.push({
      header,
      payload: datagram.subarray(offset + NLMSG_HDRLEN, offset + header.length),
      offset,
    });
    offset = Math.min(datagram.length, offset + align4(header.length));
  }
  return out;
}

/** What an NLMSG_ERROR (or the status of an NLMSG_DONE) says. */
export interface ErrorReply {
  /** Positive errno; 0 for a success ack (or a dump that ended well). */
  readonly errno: number;
  /** The header of the request this answers (NLMSG_ERROR only). */
  readonly request?: NlMsgHeader;
  /** NLMSGERR_ATTR_MSG: the kernel's explanation (or warning, with errno 0). */
  readonly extAckMessage?: string;
  /** NLMSGERR_ATTR_OFFS: offset of the offending attribute in the request. */
  readonly extAckOffset?: number;
}

function decodeExtAck(
  tlvs: Uint8Array,
  baseOffset: number,
): Pick<ErrorReply, "extAckMessage" | "extAckOffset"> {
  let extAckMessage: string | undefined;
  let extAckOffset: number | undefined;
  for (const attr of decodeAttributes(tlvs, baseOffset)) {
    if (attr.type === NLMSGERR_ATTR_MSG) extAckMessage = readString(attr);
    else if (attr.type === NLMSGERR_ATTR_OFFS) extAckOffset = readU32(attr, "NLMSGERR_ATTR_OFFS");
  }
  return { extAckMessage, extAckOffset };
}

/**
 * Decodes an NLMSG_ERROR message: `int error` (0 or -errno), the request's
 * header (the whole request unless NLM_F_CAPPED), then extended ack TLVs when
 * NLM_F_ACK_TLVS is set.
 */
export function decodeErrorMessage(msg: NetlinkMessage): ErrorReply {
  if (msg.header.type !== NLMSG_ERROR) {
    throw new NetlinkDecodeError(`message type ${msg.header.type} is not NLMSG_ERROR`, msg.offset);
  }
  const p = msg.payload;
  const base = msg.offset + NLMSG_HDRLEN;
  if (p.length < 4 + NLMSG_HDRLEN) {
    throw new NetlinkDecodeError(
      `NLMSG_ERROR body has ${p.length} byte(s), expected at least ${4 + NLMSG_HDRLEN}`,
      base,
    );
  }
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const error = view.getInt32(0, HOST_LITTLE_ENDIAN);
  const request = readHeader(view, 4);
  // `-error || 0`: an ack's 0 must not turn into -0.
  let reply: ErrorReply = { errno: -error || 0, request };
  if (msg.header.flags & NLM_F_ACK_TLVS) {
    const echoed = (msg.header.flags & NLM_F_CAPPED) ? NLMSG_HDRLEN : align4(request.length);
    const tlvStart = 4 + echoed;
    if (tlvStart > p.length) {
      throw new NetlinkDecodeError(
        `NLMSG_ERROR echoes a ${request.length}-byte request but has only ${p.length - 4} byte(s)`,
        base + 4,
      );
    }
    reply = { ...reply, ...decodeExtAck(p.subarray(tlvStart), base + tlvStart) };
  }
  return reply;
}

/**
 * Decodes an NLMSG_DONE message: an `int` status (0 or -errno) that may be
 * followed by extended ack TLVs. A body-less NLMSG_DONE counts as success.
 */
export function decodeDoneMessage(msg: NetlinkMessage): ErrorReply {
  if (msg.header.type !== NLMSG_DONE) {
    throw new NetlinkDecodeError(`message type ${msg.header.type} is not NLMSG_DONE`, msg.offset);
  }
  const p = msg.payload;
  if (p.length < 4) return { errno: 0 };
  const status = new DataView(p.buffer, p.byteOffset, 4).getInt32(0, HOST_LITTLE_ENDIAN);
  const ext = (msg.header.flags & NLM_F_ACK_TLVS)
    ? decodeExtAck(p.subarray(4), msg.offset + NLMSG_HDRLEN + 4)
    : {};
  return { errno: -status || 0, ...ext };
}
