/**
 * RTM_GETTFILTER dump requests and RTM_NEWTFILTER decoding: struct tcmsg
 * followed by TCA_* attributes, turned into a {@link TcFilter}. Used to see
 * which filters sit on a clsact hook (libbpf's tc calls can attach, detach and
 * query one filter, but not list them). Pure: no I/O.
 *
 * @module
 */

import {
  attributesByType,
  concatBytes,
  decodeAttributes,
  decodeNested,
  HOST_LITTLE_ENDIAN,
  readString,
  readU32,
} from "./attributes.ts";
import { AF_UNSPEC, NLM_F_DUMP, NLM_F_REQUEST } from "./constants.ts";
import { NetlinkDecodeError } from "./errors.ts";
import { encodeMessage, type NetlinkMessage } from "./message.ts";

/** rtnetlink message types of tc filters. */
export const RTM_NEWTFILTER = 44;
export const RTM_GETTFILTER = 46;
/** Size of struct tcmsg. */
export const TCMSG_LEN = 20;
/** TCA_* attributes of a filter message. */
export const TCA_KIND = 1;
export const TCA_OPTIONS = 2;
/** TCA_BPF_* attributes nested in TCA_OPTIONS of a "bpf" filter. */
export const TCA_BPF_NAME = 7;
export const TCA_BPF_ID = 11;
/** Parents of the filters of a clsact qdisc: TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS/EGRESS). */
export const TC_PARENT_CLSACT_INGRESS = 0xfffffff2;
export const TC_PARENT_CLSACT_EGRESS = 0xfffffff3;

/** One entry of a filter dump. */
export interface TcFilter {
  /** tcm_parent. */
  readonly parent: number;
  /** tcm_handle (0 for the entry that stands for a priority's classifier itself). */
  readonly handle: number;
  /** The priority ("pref"), the upper 16 bits of tcm_info. */
  readonly priority: number;
  /** The protocol, network byte order in the lower 16 bits of tcm_info (0x0003 = all). */
  readonly protocol: number;
  /** TCA_KIND: "bpf", "u32", "flower"... */
  readonly kind: string;
  /** A "bpf" filter's program name as the kernel stores it (libbpf: "NAME:[ID]"). */
  readonly bpfName?: string;
  /** A "bpf" filter's program id. */
  readonly bpfId?: number;
}

/** Encodes a dump request for the filters of `parent` on interface `ifindex`. */
export function encodeGetFilterDump(seq: number, ifindex: number, parent: number): Uint8Array {
  const msg = new Uint8Array(TCMSG_LEN);
  const view = new DataView(msg.buffer);
  view.setUint8(0, AF_UNSPEC);
  view.setInt32(4, ifindex, HOST_LITTLE_ENDIAN);
  view.setUint32(12, parent >>> 0, HOST_LITTLE_ENDIAN);
  return encodeMessage(
    { type: RTM_GETTFILTER, flags: NLM_F_REQUEST | NLM_F_DUMP, seq },
    concatBytes([msg]),
  );
}

/** Decodes an RTM_NEWTFILTER message. */
export function decodeFilterMessage(msg: NetlinkMessage): TcFilter {
  const body = msg.payload;
  if (body.length < TCMSG_LEN) {
    throw new NetlinkDecodeError(
      `tcmsg needs ${TCMSG_LEN} bytes, message body has ${body.length}`,
      msg.offset,
    );
  }
  const view = new DataView(body.buffer, body.byteOffset, TCMSG_LEN);
  const info = view.getUint32(16, HOST_LITTLE_ENDIAN);
  const attrs = attributesByType(decodeAttributes(body.subarray(TCMSG_LEN), msg.offset));
  const kindAttr = attrs.get(TCA_KIND);
  const kind = kindAttr ? readString(kindAttr) : "";
  let bpfName: string | undefined;
  let bpfId: number | undefined;
  const options = attrs.get(TCA_OPTIONS);
  if (kind === "bpf" && options) {
    const inner = attributesByType(decodeNested(options));
    const name = inner.get(TCA_BPF_NAME);
    const id = inner.get(TCA_BPF_ID);
    if (name) bpfName = readString(name);
    if (id) bpfId = readU32(id, "TCA_BPF_ID");
  }
  return {
    parent: view.getUint32(12, HOST_LITTLE_ENDIAN),
    handle: view.getUint32(8, HOST_LITTLE_ENDIAN),
    priority: info >>> 16,
    protocol: info & 0xffff,
    kind,
    ...(bpfName !== undefined ? { bpfName } : {}),
    ...(bpfId !== undefined ? { bpfId } : {}),
  };
}
