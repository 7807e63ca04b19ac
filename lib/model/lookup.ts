/**
 * A reference walk of compiled tables, step by step as the XDP program does it
 * (DATAPATH.md §3, "The lookup, per packet"): longest-prefix match of the peer
 * on the class entries, then the hash-mode or LPM-mode L4 lookup. Tests use it
 * to check the compiler against the evaluator without a kernel. Not fast: it
 * builds an index per compiled direction on first use.
 *
 * @module
 */

import {
  KIND_ANY,
  KIND_EXACT,
  ND_TYPE_FIRST,
  ND_TYPE_LAST,
  PF_CIDR4,
  PF_CIDR6,
  PF_LPM_PORTS,
  PROTO_ICMPV6,
  PROTO_INDEX,
} from "../abi/mod.ts";
import { maskAddress } from "../net/mod.ts";
import {
  type AddrClassEntry,
  type CompiledDirection,
  type CompiledPolicy,
  type Direction,
  protoClassOf,
} from "../policy/mod.ts";
import type { Decision } from "./evaluate.ts";
import type { IpPacket, ParsedPacket } from "./packet.ts";

interface AddrIndex {
  lens: number[];
  byKey: Map<string, number>;
}

interface DirIndex {
  v4: AddrIndex;
  v6: AddrIndex;
  hash: Map<number, number>;
  lpm: Map<number, number>;
}

const indexes = new WeakMap<CompiledDirection, DirIndex>();

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += (b | 0x100).toString(16).slice(1);
  return s;
}

function addrIndex(entries: readonly AddrClassEntry[]): AddrIndex {
  const byKey = new Map<string, number>();
  const lens = new Set<number>();
  for (const e of entries) {
    const key = `${e.len}/${hex(maskAddress(e.addr, e.len))}`;
    if (byKey.has(key)) throw new Error(`duplicate address entry ${key}`);
    byKey.set(key, e.cls);
    lens.add(e.len);
  }
  return { lens: [...lens].sort((a, b) => b - a), byKey };
}

function hashKey(proto: number, cls: number, l4: number, kind: number): number {
  return ((cls * 256 + proto) * 65536 + l4) * 2 + kind;
}

function lpmKey(proto: number, cls: number, l4: number, l4len: number): number {
  const masked = l4len === 0 ? 0 : l4 & ((0xffff << (16 - l4len)) & 0xffff);
  return ((cls * 256 + proto) * 17 + l4len) * 65536 + masked;
}

function indexOf(cd: CompiledDirection): DirIndex {
  let ix = indexes.get(cd);
  if (ix) return ix;
  const hash = new Map<number, number>();
  for (const e of cd.hash) {
    const k = hashKey(e.proto, e.cls, e.l4, e.kind);
    if (hash.has(k)) throw new Error(`duplicate rule_hash key ${JSON.stringify(e)}`);
    hash.set(k, e.rule);
  }
  const lpm = new Map<number, number>();
  for (const e of cd.lpm) {
    const k = lpmKey(e.proto, e.cls, e.l4, e.l4len);
    if (lpm.has(k)) throw new Error(`duplicate port_lpm key ${JSON.stringify(e)}`);
    lpm.set(k, e.rule);
  }
  ix = { v4: addrIndex(cd.v4), v6: addrIndex(cd.v6), hash, lpm };
  indexes.set(cd, ix);
  return ix;
}

function classify(ix: AddrIndex, addr: Uint8Array): number {
  for (const len of ix.lens) {
    const cls = ix.byKey.get(`${len}/${hex(maskAddress(addr, len))}`);
    if (cls !== undefined) return cls;
  }
  return 0;
}

/**
 * The rule index the compiled tables give an IP packet in direction `dir`, or
 * -1 when the policy's default decides. Non-IP and malformed packets give -1.
 * (Neighbour discovery is not handled here; see `decideCompiled`.)
 */
export function lookupCompiled(
  compiled: CompiledPolicy,
  dir: Direction,
  pkt: ParsedPacket,
): number {
  if (pkt.kind !== "ip") return -1;
  const cd = compiled.dirs[dir === "ingress" ? 0 : 1];
  const ix = indexOf(cd);
  const peer = dir === "ingress" ? pkt.src : pkt.dst;

  let cls = 0;
  if (pkt.family === 4 && (cd.flags & PF_CIDR4)) cls = classify(ix.v4, peer);
  if (pkt.family === 6 && (cd.flags & PF_CIDR6)) cls = classify(ix.v6, peer);

  const proto = protoClassOf(pkt.proto);
  const bit = 1 << PROTO_INDEX[proto];
  if (cd.flags & PF_LPM_PORTS) {
    if (pkt.l4 !== undefined) {
      for (let len = 16; len >= 0; len--) {
        const rule = ix.lpm.get(lpmKey(proto, cls, pkt.l4, len));
        if (rule !== undefined) return rule;
      }
      return -1;
    }
    return ix.lpm.get(lpmKey(proto, cls, 0, 0)) ?? -1;
  }
  if (pkt.l4 !== undefined && (cd.exactProtos & bit)) {
    const rule = ix.hash.get(hashKey(proto, cls, pkt.l4, KIND_EXACT));
    if (rule !== undefined) return rule;
  }
  if (cd.anyProtos & bit) {
    const rule = ix.hash.get(hashKey(proto, cls, 0, KIND_ANY));
    if (rule !== undefined) return rule;
  }
  return -1;
}

/**
 * The whole decision the XDP program makes from the compiled tables: non-IP,
 * malformed, the neighbour-discovery bypass (`nd_named`), then `lookupCompiled`.
 */
export function decideCompiled(
  compiled: CompiledPolicy,
  dir: Direction,
  pkt: ParsedPacket,
): Decision {
  if (pkt.kind === "nonip") return { verdict: "allow", reason: "nonip" };
  if (pkt.kind === "malformed") return { verdict: "deny", reason: "malformed" };
  if (isNdBypass(compiled, dir, pkt)) return { verdict: "allow", reason: "nd" };
  const i = lookupCompiled(compiled, dir, pkt);
  if (i < 0) return { verdict: compiled.defaultAction, reason: "default" };
  const rule = compiled.policy.rules[i];
  return { verdict: rule.action, reason: "rule", ruleIndex: i, rule: rule.name };
}

function isNdBypass(compiled: CompiledPolicy, dir: Direction, pkt: IpPacket): boolean {
  const t = pkt.icmpType;
  if (
    pkt.proto !== PROTO_ICMPV6 || pkt.laterFragment || t === undefined || t < ND_TYPE_FIRST ||
    t > ND_TYPE_LAST
  ) return false;
  const cd = compiled.dirs[dir === "ingress" ? 0 : 1];
  return (cd.ndNamed & (1 << (t - ND_TYPE_FIRST))) === 0;
}
