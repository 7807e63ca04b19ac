/**
 * Parser of raw Ethernet frames, exactly as the XDP program parses them
 * (DATAPATH.md §1). Used by the reference evaluator and by `explain`.
 *
 * @module
 */

import {
  MAX_IPV6_EXT,
  MAX_VLAN_TAGS,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "../abi/mod.ts";

/** What the parser made of a frame. */
export type ParsedPacket =
  | { kind: "nonip" }
  | { kind: "malformed"; reason: string }
  | IpPacket;

/** An IPv4 or IPv6 packet the rules decide. */
export interface IpPacket {
  kind: "ip";
  family: 4 | 6;
  /** Source address, 4 or 16 bytes. */
  src: Uint8Array;
  /** Destination address, 4 or 16 bytes. */
  dst: Uint8Array;
  /** Raw IP protocol: IPv4 protocol field, or the last IPv6 next-header value. */
  proto: number;
  /** A non-first fragment: no L4 header was parsed. */
  laterFragment: boolean;
  /** The L4 key: destination port (TCP/UDP/SCTP) or `type << 8 | code` (ICMP/ICMPv6). */
  l4?: number;
  /** Source port (TCP/UDP/SCTP). */
  sport?: number;
  /** ICMP/ICMPv6 type and code. */
  icmpType?: number;
  icmpCode?: number;
  /** TCP: the flags byte (SYN 0x02, ACK 0x10...). */
  tcpFlags?: number;
  /** ICMP echo request/reply (types 8/0) and ICMPv6 echo (128/129): the identifier. */
  echoId?: number;
}

/** EtherType of IPv4. */
export const ETH_P_IP = 0x0800;
/** EtherType of IPv6. */
export const ETH_P_IPV6 = 0x86dd;
/** EtherType (TPID) of an 802.1Q VLAN tag. */
export const ETH_P_8021Q = 0x8100;
/** EtherType (TPID) of an 802.1ad (QinQ service) VLAN tag. */
export const ETH_P_8021AD = 0x88a8;

/** IPv6 hop-by-hop options header. */
export const IPV6_HOPOPTS = 0;
/** IPv6 routing header. */
export const IPV6_ROUTING = 43;
/** IPv6 fragment header. */
export const IPV6_FRAGMENT = 44;
/** IPv6 authentication header. */
export const IPV6_AH = 51;
/** IPv6 destination options header. */
export const IPV6_DSTOPTS = 60;

/** Minimum L4 header length per raw protocol (the ones the parser reads). */
export const L4_HEADER_LEN: Readonly<Record<number, number>> = {
  [PROTO_TCP]: 20,
  [PROTO_UDP]: 8,
  [PROTO_SCTP]: 12,
  [PROTO_ICMP]: 8,
  [PROTO_ICMPV6]: 8,
};

/** True for the five IPv6 extension headers the parser walks. */
export function isIpv6ExtHeader(nh: number): boolean {
  return nh === IPV6_HOPOPTS || nh === IPV6_ROUTING || nh === IPV6_DSTOPTS ||
    nh === IPV6_AH || nh === IPV6_FRAGMENT;
}

const PROTO_NAMES: Readonly<Record<number, string>> = {
  [PROTO_TCP]: "TCP",
  [PROTO_UDP]: "UDP",
  [PROTO_SCTP]: "SCTP",
  [PROTO_ICMP]: "ICMP",
  [PROTO_ICMPV6]: "ICMPv6",
};

function malformed(reason: string): ParsedPacket {
  return { kind: "malformed", reason };
}

/** Parses one Ethernet frame per DATAPATH.md §1. Never throws. */
export function parsePacket(frame: Uint8Array): ParsedPacket {
  const end = frame.length;
  if (end < 14) return malformed(`Ethernet header needs 14 bytes, frame has ${end}`);
  let etherType = (frame[12] << 8) | frame[13];
  let off = 14;
  for (
    let tags = 0;
    (etherType === ETH_P_8021Q || etherType === ETH_P_8021AD) && tags < MAX_VLAN_TAGS;
    tags++
  ) {
    if (off + 4 > end) return malformed(`VLAN tag ${tags + 1} truncated at byte ${off}`);
    etherType = (frame[off + 2] << 8) | frame[off + 3];
    off += 4;
  }
  if (etherType === ETH_P_IP) return parseIPv4(frame, off);
  if (etherType === ETH_P_IPV6) return parseIPv6(frame, off);
  return { kind: "nonip" };
}

function parseIPv4(frame: Uint8Array, off: number): ParsedPacket {
  const end = frame.length;
  if (off + 20 > end) return malformed(`IPv4 header needs 20 bytes at byte ${off}`);
  const version = frame[off] >> 4;
  const ihl = frame[off] & 0x0f;
  if (version !== 4) return malformed(`IPv4 header has version ${version}`);
  if (ihl < 5) return malformed(`IPv4 header has IHL ${ihl} (< 5)`);
  if (off + ihl * 4 > end) return malformed(`IPv4 header with options needs ${ihl * 4} bytes`);
  const fragOffset = ((frame[off + 6] << 8) | frame[off + 7]) & 0x1fff;
  const proto = frame[off + 9];
  const src = frame.slice(off + 12, off + 16);
  const dst = frame.slice(off + 16, off + 20);
  return parseL4(frame, off + ihl * 4, 4, src, dst, proto, fragOffset !== 0);
}

function parseIPv6(frame: Uint8Array, off: number): ParsedPacket {
  const end = frame.length;
  if (off + 40 > end) return malformed(`IPv6 header needs 40 bytes at byte ${off}`);
  const version = frame[off] >> 4;
  if (version !== 6) return malformed(`IPv6 header has version ${version}`);
  const src = frame.slice(off + 8, off + 24);
  const dst = frame.slice(off + 24, off + 40);
  let nh = frame[off + 6];
  let p = off + 40;
  let later = false;
  for (let i = 0; i < MAX_IPV6_EXT && isIpv6ExtHeader(nh); i++) {
    if (p + 8 > end) return malformed(`IPv6 extension header ${nh} needs 8 bytes at byte ${p}`);
    if (nh === IPV6_FRAGMENT) {
      const fragOffset = ((frame[p + 2] << 8) | frame[p + 3]) >> 3;
      nh = frame[p];
      p += 8;
      if (fragOffset !== 0) {
        later = true;
        break;
      }
      continue;
    }
    const len = nh === IPV6_AH ? (frame[p + 1] + 2) * 4 : (frame[p + 1] + 1) * 8;
    if (p + len > end) {
      return malformed(`IPv6 extension header ${nh} needs ${len} bytes at byte ${p}`);
    }
    nh = frame[p];
    p += len;
  }
  if (!later && isIpv6ExtHeader(nh)) {
    return malformed(`more than ${MAX_IPV6_EXT} IPv6 extension headers`);
  }
  return parseL4(frame, p, 6, src, dst, nh, later);
}

function parseL4(
  frame: Uint8Array,
  p: number,
  family: 4 | 6,
  src: Uint8Array,
  dst: Uint8Array,
  proto: number,
  laterFragment: boolean,
): ParsedPacket {
  const pkt: IpPacket = { kind: "ip", family, src, dst, proto, laterFragment };
  if (laterFragment) return pkt;
  const need = L4_HEADER_LEN[proto];
  if (need === undefined) return pkt;
  if (p + need > frame.length) {
    return malformed(`${PROTO_NAMES[proto]} header needs ${need} bytes at byte ${p}`);
  }
  if (proto === PROTO_ICMP || proto === PROTO_ICMPV6) {
    pkt.icmpType = frame[p];
    pkt.icmpCode = frame[p + 1];
    pkt.l4 = (frame[p] << 8) | frame[p + 1];
    const t = frame[p];
    const echo = proto === PROTO_ICMP ? t === 8 || t === 0 : t === 128 || t === 129;
    if (echo) pkt.echoId = (frame[p + 4] << 8) | frame[p + 5];
  } else {
    pkt.sport = (frame[p] << 8) | frame[p + 1];
    pkt.l4 = (frame[p + 2] << 8) | frame[p + 3];
    if (proto === PROTO_TCP) pkt.tcpFlags = frame[p + 13];
  }
  return pkt;
}
