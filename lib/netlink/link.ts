/**
 * RTM_GETLINK requests and RTM_NEWLINK / RTM_DELLINK decoding: struct
 * ifinfomsg followed by IFLA_* attributes, turned into a {@link Link}.
 * Pure: no I/O.
 *
 * @module
 */

import {
  type Attribute,
  attributesByType,
  concatBytes,
  decodeAttributes,
  decodeNested,
  HOST_LITTLE_ENDIAN,
  readS32,
  readString,
  readU32,
  readU8,
  s32Attribute,
  stringAttribute,
  u32Attribute,
} from "./attributes.ts";
import {
  AF_UNSPEC,
  ALTIFNAME_MAX_LEN,
  IFF_UP,
  IFINFOMSG_LEN,
  IFLA_ADDRESS,
  IFLA_ALT_IFNAME,
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  IFLA_INFO_KIND,
  IFLA_INFO_SLAVE_KIND,
  IFLA_LINK,
  IFLA_LINK_NETNSID,
  IFLA_LINKINFO,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_OPERSTATE,
  IFLA_TARGET_NETNSID,
  IFLA_XDP,
  IFLA_XDP_ATTACHED,
  IFLA_XDP_DRV_PROG_ID,
  IFLA_XDP_HW_PROG_ID,
  IFLA_XDP_PROG_ID,
  IFLA_XDP_SKB_PROG_ID,
  IFNAME_MAX_LEN,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NLMSG_HDRLEN,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
} from "./constants.ts";
import { NetlinkDecodeError } from "./errors.ts";
import { encodeMessage, type NetlinkMessage } from "./message.ts";

/** struct ifinfomsg. */
export interface IfInfoMsg {
  /** ifi_family (AF_UNSPEC in requests). */
  readonly family: number;
  /** ifi_type: ARPHRD_* (1 = Ethernet, 772 = loopback). */
  readonly type: number;
  /** ifi_index: the interface index (0 in dump requests). */
  readonly index: number;
  /** ifi_flags: IFF_* bits. */
  readonly flags: number;
  /** ifi_change: IFF_* change mask (0 in requests). */
  readonly change: number;
}

/** Encodes a struct ifinfomsg; omitted fields are 0. */
export function encodeIfInfoMsg(fields: Partial<IfInfoMsg>): Uint8Array {
  const out = new Uint8Array(IFINFOMSG_LEN);
  const view = new DataView(out.buffer);
  view.setUint8(0, fields.family ?? AF_UNSPEC);
  view.setUint16(2, fields.type ?? 0, HOST_LITTLE_ENDIAN);
  view.setInt32(4, fields.index ?? 0, HOST_LITTLE_ENDIAN);
  view.setUint32(8, (fields.flags ?? 0) >>> 0, HOST_LITTLE_ENDIAN);
  view.setUint32(12, (fields.change ?? 0) >>> 0, HOST_LITTLE_ENDIAN);
  return out;
}

/** Decodes a struct ifinfomsg at the start of `bytes`. */
export function decodeIfInfoMsg(bytes: Uint8Array, baseOffset = 0): IfInfoMsg {
  if (bytes.length < IFINFOMSG_LEN) {
    throw new NetlinkDecodeError(
      `ifinfomsg needs ${IFINFOMSG_LEN} bytes, message body has ${bytes.length}`,
      baseOffset,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, IFINFOMSG_LEN);
  return {
    family: view.getUint8(0),
    type: view.getUint16(2, HOST_LITTLE_ENDIAN),
    index: view.getInt32(4, HOST_LITTLE_ENDIAN),
    flags: view.getUint32(8, HOST_LITTLE_ENDIAN),
    change: view.getUint32(12, HOST_LITTLE_ENDIAN),
  };
}

/**
 * Where an XDP program is attached: "native" (driver, XDP_ATTACHED_DRV),
 * "generic" (skb, XDP_ATTACHED_SKB), "offload" (hardware, XDP_ATTACHED_HW), or
 * "multi" (more than one of them at once).
 */
export type XdpMode = "none" | "native" | "generic" | "offload" | "multi";

/** The IFLA_XDP attributes of a link. Program ids are 0 where nothing is attached. */
export interface LinkXdp {
  readonly mode: XdpMode;
  /** IFLA_XDP_PROG_ID: the attached program; 0 when none, and 0 in "multi" mode (as the kernel). */
  readonly progId: number;
  /** IFLA_XDP_DRV_PROG_ID: the program attached in native mode. */
  readonly drvProgId: number;
  /** IFLA_XDP_SKB_PROG_ID: the program attached in generic mode. */
  readonly skbProgId: number;
  /** IFLA_XDP_HW_PROG_ID: the program offloaded to the NIC. */
  readonly hwProgId: number;
}

/** RFC 2863 operational state (IFLA_OPERSTATE, IF_OPER_*). */
export type OperState =
  | "unknown"
  | "notpresent"
  | "down"
  | "lowerlayerdown"
  | "testing"
  | "dormant"
  | "up";

const OPER_STATES: readonly OperState[] = [
  "unknown",
  "notpresent",
  "down",
  "lowerlayerdown",
  "testing",
  "dormant",
  "up",
];

const XDP_MODES: readonly XdpMode[] = ["none", "native", "generic", "offload", "multi"];

/** A network interface as rtnetlink describes it (namespace-local). */
export interface Link {
  /** ifindex, unique within the link's network namespace. */
  readonly index: number;
  /** IFLA_IFNAME. */
  readonly name: string;
  /** IFLA_LINKINFO/IFLA_INFO_KIND: the driver kind ("veth", "bridge", ...); absent for physical NICs and lo. */
  readonly kind?: string;
  /** IFLA_LINKINFO/IFLA_INFO_SLAVE_KIND: the kind of the master this link is enslaved to ("bridge", "bond"...). */
  readonly slaveKind?: string;
  /** IFLA_MTU. */
  readonly mtu: number;
  /** Administratively up (IFF_UP). */
  readonly up: boolean;
  /** IFLA_OPERSTATE: whether it can carry traffic ("up"), or why not. */
  readonly operState: OperState;
  /** ifi_flags: all IFF_* bits. */
  readonly flags: number;
  /** IFLA_ADDRESS as "aa:bb:cc:dd:ee:ff" (any length, lowercase hex). */
  readonly mac?: string;
  /** IFLA_LINK: the peer/parent ifindex (for a veth: its peer), in the namespace `linkNetnsid` names if set. */
  readonly linkIndex?: number;
  /** IFLA_LINK_NETNSID: the nsid (as seen from the queried namespace) where `linkIndex` lives. */
  readonly linkNetnsid?: number;
  /** IFLA_MASTER: ifindex of the bridge/bond this link is enslaved to. */
  readonly masterIndex?: number;
  /** The attached XDP program(s). */
  readonly xdp: LinkXdp;
}

/** Formats a hardware address as lowercase colon-separated hex. */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(":");
}

function decodeXdp(attr: Attribute | undefined): LinkXdp {
  const xdp = { mode: "none" as XdpMode, progId: 0, drvProgId: 0, skbProgId: 0, hwProgId: 0 };
  if (!attr) return xdp;
  const byType = attributesByType(decodeNested(attr));
  const attached = byType.get(IFLA_XDP_ATTACHED);
  if (attached) {
    const value = readU8(attached, "IFLA_XDP_ATTACHED");
    const mode = XDP_MODES[value];
    if (!mode) {
      throw new NetlinkDecodeError(`unknown IFLA_XDP_ATTACHED value ${value}`, attached.offset);
    }
    xdp.mode = mode;
  }
  const id = (type: number, what: string) => {
    const a = byType.get(type);
    return a ? readU32(a, what) : 0;
  };
  xdp.progId = id(IFLA_XDP_PROG_ID, "IFLA_XDP_PROG_ID");
  xdp.drvProgId = id(IFLA_XDP_DRV_PROG_ID, "IFLA_XDP_DRV_PROG_ID");
  xdp.skbProgId = id(IFLA_XDP_SKB_PROG_ID, "IFLA_XDP_SKB_PROG_ID");
  xdp.hwProgId = id(IFLA_XDP_HW_PROG_ID, "IFLA_XDP_HW_PROG_ID");
  return xdp;
}

function decodeLinkInfo(attr: Attribute | undefined): { kind?: string; slaveKind?: string } {
  if (!attr) return {};
  const byType = attributesByType(decodeNested(attr));
  const kind = byType.get(IFLA_INFO_KIND);
  const slaveKind = byType.get(IFLA_INFO_SLAVE_KIND);
  return {
    kind: kind ? readString(kind) : undefined,
    slaveKind: slaveKind ? readString(slaveKind) : undefined,
  };
}

/**
 * Decodes an RTM_NEWLINK or RTM_DELLINK message (a dump entry, a GETLINK
 * reply or a notification) into a {@link Link}. Throws
 * {@link NetlinkDecodeError} on malformed bytes or a message of another type.
 */
export function decodeLinkMessage(msg: NetlinkMessage): Link {
  const { type } = msg.header;
  if (type !== RTM_NEWLINK && type !== RTM_DELLINK) {
    throw new NetlinkDecodeError(`message type ${type} is not RTM_NEWLINK/RTM_DELLINK`, msg.offset);
  }
  const base = msg.offset + NLMSG_HDRLEN;
  const ifi = decodeIfInfoMsg(msg.payload, base);
  const attrs = attributesByType(
    decodeAttributes(msg.payload.subarray(IFINFOMSG_LEN), base + IFINFOMSG_LEN),
  );
  const nameAttr = attrs.get(IFLA_IFNAME);
  if (!nameAttr) throw new NetlinkDecodeError(`link ${ifi.index} has no IFLA_IFNAME`, msg.offset);
  const mtu = attrs.get(IFLA_MTU);
  const oper = attrs.get(IFLA_OPERSTATE);
  const address = attrs.get(IFLA_ADDRESS);
  const linkIndex = attrs.get(IFLA_LINK);
  const linkNetnsid = attrs.get(IFLA_LINK_NETNSID);
  const master = attrs.get(IFLA_MASTER);
  const operValue = oper ? readU8(oper, "IFLA_OPERSTATE") : 0;
  const { kind, slaveKind } = decodeLinkInfo(attrs.get(IFLA_LINKINFO));
  // Optional fields are left out (not set to undefined) when the kernel did not send them.
  return {
    index: ifi.index,
    name: readString(nameAttr),
    ...(kind !== undefined && { kind }),
    ...(slaveKind !== undefined && { slaveKind }),
    mtu: mtu ? readU32(mtu, "IFLA_MTU") : 0,
    up: (ifi.flags & IFF_UP) !== 0,
    operState: OPER_STATES[operValue] ?? "unknown",
    flags: ifi.flags,
    ...(address && address.payload.length > 0 && { mac: formatMac(address.payload) }),
    ...(linkIndex && { linkIndex: readS32(linkIndex, "IFLA_LINK") }),
    ...(linkNetnsid && { linkNetnsid: readS32(linkNetnsid, "IFLA_LINK_NETNSID") }),
    ...(master && { masterIndex: readU32(master, "IFLA_MASTER") }),
    xdp: decodeXdp(attrs.get(IFLA_XDP)),
  };
}

/** Which link(s) an RTM_GETLINK request asks for. */
export type GetLinkTarget =
  | { readonly dump: true }
  | { readonly index: number }
  | { readonly name: string };

/** Options of an RTM_GETLINK request. */
export interface GetLinkRequest {
  readonly seq: number;
  readonly target: GetLinkTarget;
  /** Ask about the namespace with this nsid (IFLA_TARGET_NETNSID) instead of the socket's. */
  readonly targetNetnsid?: number;
}

/**
 * Encodes an RTM_GETLINK request: a dump of every link, or one link by index
 * or by name (IFLA_IFNAME up to 15 bytes, IFLA_ALT_IFNAME up to 127 for
 * alternative names). IFLA_EXT_MASK = RTEXT_FILTER_SKIP_STATS drops the IPv6
 * per-interface statistics (~370 bytes a link) and VF statistics; IFLA_STATS and
 * IFLA_STATS64 are sent regardless.
 * Throws RangeError for a name no interface can have.
 */
export function encodeGetLinkRequest(request: GetLinkRequest): Uint8Array {
  const { target } = request;
  const attrs: Uint8Array[] = [u32Attribute(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)];
  let index = 0;
  if ("name" in target) {
    const length = new TextEncoder().encode(target.name).length;
    if (length === 0 || length > ALTIFNAME_MAX_LEN || target.name.includes("\0")) {
      throw new RangeError(`invalid interface name ${JSON.stringify(target.name)}`);
    }
    attrs.push(
      stringAttribute(length <= IFNAME_MAX_LEN ? IFLA_IFNAME : IFLA_ALT_IFNAME, target.name),
    );
  } else if ("index" in target) {
    if (!Number.isInteger(target.index) || target.index <= 0 || target.index > 0x7fffffff) {
      throw new RangeError(`invalid interface index ${target.index}`);
    }
    index = target.index;
  }
  if (request.targetNetnsid !== undefined) {
    attrs.push(s32Attribute(IFLA_TARGET_NETNSID, request.targetNetnsid));
  }
  const flags = NLM_F_REQUEST | ("dump" in target ? NLM_F_DUMP : 0);
  return encodeMessage(
    { type: RTM_GETLINK, flags, seq: request.seq },
    concatBytes([encodeIfInfoMsg({ index }), ...attrs]),
  );
}
