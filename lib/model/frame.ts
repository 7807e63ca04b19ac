/**
 * Builder of Ethernet frames for tests and `tinyfw explain`: any IP protocol,
 * VLAN tags, IPv4 options, IPv6 extension-header chains, fragments, payload,
 * and truncation. Checksums are filled in (IPv4 header; TCP/UDP/ICMPv6 with
 * the pseudo-header; ICMP; SCTP CRC32c) over the untruncated frame, so the
 * frames are valid on a wire; the XDP program does not check them.
 *
 * @module
 */

import { parseIp } from "../net/mod.ts";
import {
  ETH_P_8021Q,
  ETH_P_IP,
  ETH_P_IPV6,
  IPV6_AH,
  IPV6_DSTOPTS,
  IPV6_FRAGMENT,
  IPV6_HOPOPTS,
  IPV6_ROUTING,
  L4_HEADER_LEN,
} from "./packet.ts";
import { protocolNumber } from "../policy/mod.ts";

/** One 802.1Q / 802.1ad tag. */
export interface VlanTag {
  /** Tag protocol identifier; default 0x8100. */
  tpid?: number;
  /** VLAN id 0..4095; default 1. */
  vid?: number;
  /** Priority 0..7; default 0. */
  pcp?: number;
}

/** The kinds of IPv6 extension header the builder emits. */
export type Ipv6ExtKind = "hbh" | "routing" | "dstopts" | "ah" | "fragment";

/** One IPv6 extension header. */
export interface Ipv6ExtSpec {
  kind: Ipv6ExtKind;
  /**
   * Total length in bytes. hbh/routing/dstopts: a multiple of 8, at least 8
   * (default 8); ah: a multiple of 4, at least 8 (default 16); fragment: 8.
   */
  size?: number;
  /** Fragment header: offset in 8-byte units (0..8191). */
  fragOffset?: number;
  /** Fragment header: the M (more fragments) flag. */
  moreFragments?: boolean;
}

/** What to build. Every field but `family` and `proto` has a default. */
export interface FrameSpec {
  family: 4 | 6;
  /** IP protocol (IPv6: the next header after the extension chain): name or number. */
  proto: number | string;
  /** Source address (text or bytes); default 192.0.2.1 / 2001:db8::1. */
  src?: string | Uint8Array;
  /** Destination address; default 198.51.100.1 / 2001:db8::2. */
  dst?: string | Uint8Array;
  /** TCP/UDP/SCTP ports; defaults 40000 and 80. */
  sport?: number;
  dport?: number;
  /** ICMP/ICMPv6 type and code; defaults echo request (8 / 128) and 0. */
  icmpType?: number;
  icmpCode?: number;
  /** ICMP/ICMPv6 echo identifier and sequence number (the header's bytes 4-7); default 1 and 1. */
  icmpId?: number;
  icmpSeq?: number;
  /** TCP flags byte; default SYN (0x02). */
  tcpFlags?: number;
  /** VLAN tags, outermost first (0..3 are meaningful to the parser). */
  vlans?: VlanTag[];
  /** Overrides the innermost EtherType (e.g. 0x0806 to make a non-IP frame). */
  etherType?: number;
  /** IPv4 options, zero-padded to a multiple of 4 (at most 40 bytes). */
  ipv4Options?: Uint8Array | number[];
  /** IPv6 extension headers, in order. */
  ipv6Ext?: Ipv6ExtSpec[];
  /**
   * Fragment offset (8-byte units) and more-fragments flag. IPv4: the header's
   * fields. IPv6: the first fragment header of `ipv6Ext`, one appended when there is none.
   */
  fragOffset?: number;
  moreFragments?: boolean;
  /** TTL / hop limit; default 64. */
  ttl?: number;
  /** Payload after the L4 header (or after the IP headers for other protocols). */
  payload?: Uint8Array;
  /** Zero payload of this many bytes when `payload` is not given; default 0. */
  payloadLength?: number;
  /** Cut the finished frame to this many bytes. */
  truncate?: number;
  /** Raw header overrides, to build malformed headers. */
  raw?: { ipVersion?: number; ihl?: number };
}

/** A built frame and the offsets the parser checks lengths against. */
export interface BuiltFrame {
  frame: Uint8Array;
  /** Sorted, distinct byte offsets where a header (or a header's fixed part) ends. */
  boundaries: number[];
  /** Offset of the IP header. */
  l3Offset: number;
  /** Offset of the L4 header (or payload). */
  l4Offset: number;
}

const EXT_NUMBER: Readonly<Record<Ipv6ExtKind, number>> = {
  hbh: IPV6_HOPOPTS,
  routing: IPV6_ROUTING,
  dstopts: IPV6_DSTOPTS,
  ah: IPV6_AH,
  fragment: IPV6_FRAGMENT,
};

function address(v: string | Uint8Array | undefined, family: 4 | 6, fallback: string): Uint8Array {
  const bytes = typeof v === "string" ? parseIp(v).addr : v ?? parseIp(fallback).addr;
  const size = family === 4 ? 4 : 16;
  if (bytes.length !== size) {
    throw new RangeError(`an IPv${family} frame needs ${size}-byte addresses, got ${bytes.length}`);
  }
  return bytes;
}

function extSize(e: Ipv6ExtSpec): number {
  if (e.kind === "fragment") return 8;
  const size = e.size ?? (e.kind === "ah" ? 16 : 8);
  const unit = e.kind === "ah" ? 4 : 8;
  if (size < 8 || size % unit !== 0 || size > (e.kind === "ah" ? 257 * 4 : 256 * 8)) {
    throw new RangeError(`IPv6 ${e.kind} header size ${size} is not a valid length`);
  }
  return size;
}

/** Builds a frame; see `FrameSpec`. */
export function buildFrame(spec: FrameSpec): Uint8Array {
  return buildFrameDetailed(spec).frame;
}

/** Builds a frame and reports its header boundaries (for truncation tests). */
export function buildFrameDetailed(spec: FrameSpec): BuiltFrame {
  const family = spec.family;
  const proto = protocolNumber(spec.proto);
  const src = address(spec.src, family, family === 4 ? "192.0.2.1" : "2001:db8::1");
  const dst = address(spec.dst, family, family === 4 ? "198.51.100.2" : "2001:db8::2");
  const vlans = spec.vlans ?? [];

  // IPv6 extension chain, with the top-level fragment fields folded in.
  let exts = spec.ipv6Ext ?? [];
  const wantsFrag = (spec.fragOffset ?? 0) !== 0 || spec.moreFragments === true;
  if (family === 6 && wantsFrag) {
    const i = exts.findIndex((e) => e.kind === "fragment");
    const frag: Ipv6ExtSpec = { kind: "fragment" };
    if (spec.fragOffset !== undefined) frag.fragOffset = spec.fragOffset;
    if (spec.moreFragments !== undefined) frag.moreFragments = spec.moreFragments;
    exts = i < 0 ? [...exts, frag] : exts.map((e, j) => j === i ? { ...e, ...frag } : e);
  }
  if (family === 4 && exts.length) throw new RangeError("IPv6 extension headers in an IPv4 frame");

  let options = new Uint8Array(0);
  if (spec.ipv4Options && spec.ipv4Options.length) {
    const raw = Uint8Array.from(spec.ipv4Options);
    options = new Uint8Array(Math.ceil(raw.length / 4) * 4);
    options.set(raw);
    if (options.length > 40) throw new RangeError("IPv4 options are at most 40 bytes");
  }
  const later = family === 4
    ? (spec.fragOffset ?? 0) !== 0
    : exts.some((e) => e.kind === "fragment" && (e.fragOffset ?? 0) !== 0);
  const l4Len = later ? 0 : (L4_HEADER_LEN[proto] ?? 0);
  const payload = spec.payload ?? new Uint8Array(spec.payloadLength ?? 0);

  const ipHeaderLen = family === 4 ? 20 + options.length : 40;
  const extLen = exts.reduce((n, e) => n + extSize(e), 0);
  const l3Offset = 14 + 4 * vlans.length;
  const l4Offset = l3Offset + ipHeaderLen + extLen;
  const total = l4Offset + l4Len + payload.length;
  const frame = new Uint8Array(total);
  const view = new DataView(frame.buffer);
  const boundaries: number[] = [14];

  // Ethernet and VLAN tags.
  frame.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01], 0);
  let off = 12;
  for (const tag of vlans) {
    view.setUint16(off, tag.tpid ?? ETH_P_8021Q);
    view.setUint16(off + 2, ((tag.pcp ?? 0) << 13) | ((tag.vid ?? 1) & 0x0fff));
    off += 4;
    boundaries.push(off + 2);
  }
  view.setUint16(off, spec.etherType ?? (family === 4 ? ETH_P_IP : ETH_P_IPV6));

  const ip = l3Offset;
  if (family === 4) {
    const ihl = spec.raw?.ihl ?? ipHeaderLen / 4;
    frame[ip] = ((spec.raw?.ipVersion ?? 4) << 4) | (ihl & 0x0f);
    view.setUint16(ip + 2, Math.min(0xffff, total - ip));
    view.setUint16(ip + 4, 0x1234);
    view.setUint16(
      ip + 6,
      (spec.moreFragments ? 0x2000 : 0) | ((spec.fragOffset ?? 0) & 0x1fff),
    );
    frame[ip + 8] = spec.ttl ?? 64;
    frame[ip + 9] = proto;
    frame.set(src, ip + 12);
    frame.set(dst, ip + 16);
    frame.set(options, ip + 20);
    view.setUint16(ip + 10, checksum(frame, ip, ip + ipHeaderLen, 0));
    boundaries.push(ip + 20, ip + ipHeaderLen);
  } else {
    view.setUint32(ip, ((spec.raw?.ipVersion ?? 6) << 28) >>> 0);
    view.setUint16(ip + 4, Math.min(0xffff, total - ip - 40));
    frame[ip + 6] = exts.length ? EXT_NUMBER[exts[0].kind] : proto;
    frame[ip + 7] = spec.ttl ?? 64;
    frame.set(src, ip + 8);
    frame.set(dst, ip + 24);
    boundaries.push(ip + 40);
    let p = ip + 40;
    exts.forEach((e, i) => {
      const size = extSize(e);
      frame[p] = i + 1 < exts.length ? EXT_NUMBER[exts[i + 1].kind] : proto;
      if (e.kind === "fragment") {
        view.setUint16(p + 2, ((e.fragOffset ?? 0) << 3) | (e.moreFragments ? 1 : 0));
        view.setUint32(p + 4, 0xabcd);
      } else if (e.kind === "ah") {
        frame[p + 1] = size / 4 - 2;
        view.setUint32(p + 4, 0x100); // SPI
        if (size >= 12) view.setUint32(p + 8, 1); // sequence number
      } else {
        frame[p + 1] = size / 8 - 1;
        if (e.kind === "routing") {
          frame[p + 2] = 4; // segment routing; segments left 0
        } else if (size > 2) {
          frame[p + 2] = 1; // PadN over the rest
          frame[p + 3] = size - 4;
        }
      }
      boundaries.push(p + 8, p + size);
      p += size;
    });
  }

  if (l4Len) writeL4(frame, view, l4Offset, proto, spec, payload.length);
  frame.set(payload, l4Offset + l4Len);
  if (l4Len) {
    boundaries.push(l4Offset + l4Len);
    fillL4Checksum(frame, view, family, proto, src, dst, l4Offset);
  }
  boundaries.push(total);

  const cut = spec.truncate === undefined ? frame : frame.slice(0, Math.max(0, spec.truncate));
  const sorted = [...new Set(boundaries)].sort((a, b) => a - b);
  return { frame: cut, boundaries: sorted, l3Offset, l4Offset };
}

function writeL4(
  frame: Uint8Array,
  view: DataView,
  p: number,
  proto: number,
  spec: FrameSpec,
  payloadLen: number,
): void {
  if (proto === 1 || proto === 58) {
    frame[p] = spec.icmpType ?? (proto === 1 ? 8 : 128);
    frame[p + 1] = spec.icmpCode ?? 0;
    view.setUint16(p + 4, spec.icmpId ?? 1);
    view.setUint16(p + 6, spec.icmpSeq ?? 1);
    return;
  }
  view.setUint16(p, spec.sport ?? 40000);
  view.setUint16(p + 2, spec.dport ?? 80);
  if (proto === 6) {
    view.setUint32(p + 4, 1); // sequence number
    frame[p + 12] = 5 << 4; // data offset
    frame[p + 13] = spec.tcpFlags ?? 0x02;
    view.setUint16(p + 14, 65535); // window
  } else if (proto === 17) {
    view.setUint16(p + 4, Math.min(0xffff, 8 + payloadLen));
  } else if (proto === 132) {
    view.setUint32(p + 4, 0x1); // verification tag
  }
}

function fillL4Checksum(
  frame: Uint8Array,
  view: DataView,
  family: 4 | 6,
  proto: number,
  src: Uint8Array,
  dst: Uint8Array,
  p: number,
): void {
  const end = frame.length;
  if (proto === 132) {
    view.setUint32(p + 8, crc32c(frame.subarray(p, end)), true);
    return;
  }
  const at = proto === 6 ? 16 : proto === 17 ? 6 : 2;
  if (proto === 1) {
    view.setUint16(p + at, checksum(frame, p, end, 0));
    return;
  }
  const length = end - p;
  let sum = sumWords(src, 0, src.length) + sumWords(dst, 0, dst.length);
  sum += proto + (length & 0xffff) + (family === 6 ? length >>> 16 : 0);
  let c = checksum(frame, p, end, sum);
  if (proto === 17 && c === 0) c = 0xffff;
  view.setUint16(p + at, c);
}

function sumWords(bytes: Uint8Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i + 1 < to; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if ((to - from) & 1) sum += bytes[to - 1] << 8;
  return sum;
}

/** Internet checksum of `bytes[from, to)` plus an initial partial sum. */
export function checksum(bytes: Uint8Array, from: number, to: number, initial: number): number {
  let sum = initial + sumWords(bytes, from, to);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

let crcTable: Uint32Array | undefined;

/** CRC32c (Castagnoli), as SCTP uses it. */
export function crc32c(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
