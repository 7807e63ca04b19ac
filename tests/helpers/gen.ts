/**
 * Seeded, reproducible generators of policies and frames for the randomized
 * compiler test and the kernel differential test. Everything derives from one
 * `Rng` (mulberry32), so a seed reproduces a failure exactly.
 *
 * Policies: 1..N rules, both families, overlapping, nested and duplicate
 * CIDRs, ports and nested/overlapping ranges, icmp rules with and without
 * code (incl. ND types), protocol any, all directions and actions.
 * Frames: biased to the policy — peer addresses on CIDR edges (first, last,
 * inside, one below, one above), ports on range edges (±1), the policy's ICMP
 * types and ND types — plus VLAN tags (0..3), IPv4 options, IPv6 extension
 * headers (up to one past the parser's bound), first and later fragments,
 * odd protocols, and truncation at every header boundary and ±1.
 *
 * @module
 */

import { mulberry32 as mulberry32Words } from "../../lib/policy/compile/classes.ts";
import { formatIp, makeCidr, parseCidr } from "../../lib/net/cidr.ts";
import {
  buildFrameDetailed,
  type FrameSpec,
  type Ipv6ExtKind,
  type Ipv6ExtSpec,
} from "../../lib/model/frame.ts";
import type {
  Action,
  Cidr,
  IcmpMatch,
  Policy,
  PortRange,
  Protocol,
  Rule,
  RuleDirection,
} from "../../lib/policy/model/types.ts";

/** mulberry32 (lib/policy/compile/classes.ts) as floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  const words = mulberry32Words(seed);
  return () => words() / 4294967296;
}

/** A seeded random source with the helpers the generators need. */
export class Rng {
  readonly #next: () => number;
  constructor(readonly seed: number) {
    this.#next = mulberry32(seed);
  }
  /** A float in [0, 1). */
  float(): number {
    return this.#next();
  }
  /** An integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#next() * (hi - lo + 1));
  }
  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.#next() < p;
  }
  /** A uniformly chosen element. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.#next() * items.length)];
  }
  /** An element chosen by weight: `[[weight, value], ...]`. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of choices) total += w;
    let x = this.#next() * total;
    for (const [w, v] of choices) {
      if ((x -= w) < 0) return v;
    }
    return choices[choices.length - 1][1];
  }
  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.#next() * 256) | 0;
    return out;
  }
}

// ---------------------------------------------------------------------------
// Policies

/** Options of `randomPolicy`. */
export interface PolicyGenOptions {
  /** Upper bound of the rule count (drawn from 1..maxRules); default 12. */
  maxRules?: number;
  /** Policy name; default `p<seed>`. */
  name?: string;
  /** Probability of a wide port range (≥ 1024 ports) per range; default 0.05. */
  wideRangeProbability?: number;
}

const ICMP4_TYPES = [0, 3, 5, 8, 11, 13];
const ICMP6_TYPES = [1, 2, 3, 128, 129, 133, 134, 135, 136, 137];
const HOT_PORTS = [0, 1, 20, 22, 23, 53, 80, 123, 443, 1024, 8080, 65535];

function randomAddr(rng: Rng, family: 4 | 6): Uint8Array {
  if (family === 4) return rng.bytes(4);
  const a = rng.bytes(16);
  if (rng.chance(0.5)) a.set([0x20, 0x01, 0x0d, 0xb8]); // keep v6 peers near each other
  return a;
}

/** A child of `c`: same leading bits, a longer prefix. */
function nestedIn(rng: Rng, c: Cidr): Cidr {
  const max = c.family === 4 ? 32 : 128;
  const len = Math.min(max, c.len + rng.int(1, c.family === 4 ? 12 : 40));
  const addr = randomAddr(rng, c.family);
  // Copy the parent's prefix bits over the random address.
  const full = c.len >> 3;
  addr.set(c.addr.subarray(0, full));
  const rest = c.len & 7;
  if (rest) {
    const mask = (0xff << (8 - rest)) & 0xff;
    addr[full] = (c.addr[full] & mask) | (addr[full] & ~mask & 0xff);
  }
  return makeCidr(c.family, addr, len);
}

function cidrPool(rng: Rng): Cidr[] {
  const pool: Cidr[] = [];
  const bases = rng.int(1, 4);
  for (let i = 0; i < bases; i++) {
    const family: 4 | 6 = rng.chance(0.55) ? 4 : 6;
    const len = family === 4 ? rng.int(6, 28) : rng.int(16, 112);
    pool.push(makeCidr(family, randomAddr(rng, family), len));
  }
  const nested = rng.int(0, 6);
  for (let i = 0; i < nested; i++) pool.push(nestedIn(rng, rng.pick(pool)));
  if (rng.chance(0.15)) pool.push(makeCidr(4, new Uint8Array(4), 0));
  if (rng.chance(0.1)) pool.push(makeCidr(6, new Uint8Array(16), 0));
  if (rng.chance(0.2)) {
    const fam: 4 | 6 = rng.chance(0.5) ? 4 : 6;
    pool.push(makeCidr(fam, randomAddr(rng, fam), fam === 4 ? 32 : 128));
  }
  if (rng.chance(0.05)) {
    const mapped = new Uint8Array(16);
    mapped.set([0xff, 0xff], 10);
    mapped.set(rng.bytes(4), 12);
    pool.push(makeCidr(6, mapped, rng.int(96, 128)));
  }
  return pool;
}

function portPool(rng: Rng, wide: number): PortRange[] {
  const pool: PortRange[] = [];
  const n = rng.int(1, 5);
  for (let i = 0; i < n; i++) {
    const p = rng.chance(0.6) ? Math.max(1, rng.pick(HOT_PORTS)) : rng.int(1, 65535);
    const kind = rng.float();
    if (kind < 0.5) pool.push({ from: p, to: p });
    else if (rng.chance(wide)) {
      const from = rng.pick([1, 1024, 32768, rng.int(1, 60000)]);
      pool.push({ from, to: rng.pick([65535, Math.min(65535, from + rng.int(1024, 20000))]) });
    } else pool.push({ from: p, to: Math.min(65535, p + rng.int(1, 40)) });
  }
  // Nested and overlapping ranges around the first ones.
  if (rng.chance(0.4)) {
    const r = rng.pick(pool);
    const from = rng.int(r.from, r.to);
    pool.push({ from, to: rng.int(from, Math.min(65535, r.to + 5)) });
  }
  return pool;
}

function randomIcmp(rng: Rng, protocol: Protocol): IcmpMatch {
  const type = rng.chance(0.9)
    ? rng.pick(protocol === "icmp" ? ICMP4_TYPES : ICMP6_TYPES)
    : rng.int(0, 255);
  return rng.chance(0.4) ? { type, code: rng.pick([0, 0, 1, 3, rng.int(0, 255)]) } : { type };
}

/** A random policy; see `PolicyGenOptions`. */
export function randomPolicy(rng: Rng, opts: PolicyGenOptions = {}): Policy {
  const name = opts.name ?? `p${rng.seed}`;
  const cidrs = cidrPool(rng);
  const ports = portPool(rng, opts.wideRangeProbability ?? 0.05);
  const count = rng.int(1, opts.maxRules ?? 12);
  const rules: Rule[] = [];
  for (let i = 0; i < count; i++) {
    const protocol = rng.weighted<Protocol>([
      [30, "tcp"],
      [18, "udp"],
      [8, "sctp"],
      [10, "icmp"],
      [12, "icmpv6"],
      [22, "any"],
    ]);
    const rule: Rule = {
      name: `${name}#${i}`,
      action: rng.pick<Action>(["allow", "deny"]),
      direction: rng.weighted<RuleDirection>([[4, "ingress"], [3, "egress"], [3, "both"]]),
      protocol,
    };
    if ((protocol === "tcp" || protocol === "udp" || protocol === "sctp") && rng.chance(0.7)) {
      rule.ports = Array.from({ length: rng.int(1, 3) }, () => rng.pick(ports));
    }
    if ((protocol === "icmp" || protocol === "icmpv6") && rng.chance(0.65)) {
      rule.icmp = randomIcmp(rng, protocol);
    }
    if (rng.chance(0.65)) rule.cidrs = Array.from({ length: rng.int(1, 3) }, () => rng.pick(cidrs));
    rules.push(rule);
  }
  return { name, defaultAction: rng.pick<Action>(["allow", "deny"]), rules };
}

/** A readable one-line-per-rule description of a policy (for failure reports). */
export function formatPolicy(policy: Policy): string {
  const lines = [`policy ${policy.name} default=${policy.defaultAction}`];
  policy.rules.forEach((r, i) => {
    const parts = [`  #${i} ${r.name}: ${r.action} ${r.direction} ${r.protocol}`];
    if (r.ports?.length) {
      parts.push(`ports=${r.ports.map((p) => p.from === p.to ? p.from : `${p.from}-${p.to}`)}`);
    }
    if (r.icmp) {
      parts.push(`icmp=${r.icmp.type}${r.icmp.code === undefined ? "" : "/" + r.icmp.code}`);
    }
    if (r.cidrs?.length) parts.push(`cidrs=${r.cidrs.map((c) => c.text).join(",")}`);
    lines.push(parts.join(" "));
  });
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// Frames

/** Options of `randomFrame`. */
export interface FrameGenOptions {
  /** Probability of truncating at a header boundary (±1); default 0.1. */
  truncateProbability?: number;
}

/** A generated frame and the spec it was built from. */
export interface GeneratedFrame {
  spec: FrameSpec;
  frame: Uint8Array;
}

/** What a policy offers to aim at. */
interface Targets {
  v4: Cidr[];
  v6: Cidr[];
  ports: PortRange[];
  icmp4: IcmpMatch[];
  icmp6: IcmpMatch[];
}

const targetCache = new WeakMap<Policy, Targets>();

function targetsOf(policy: Policy): Targets {
  let t = targetCache.get(policy);
  if (t) return t;
  t = { v4: [], v6: [], ports: [], icmp4: [], icmp6: [] };
  for (const r of policy.rules) {
    for (const c of r.cidrs ?? []) (c.family === 4 ? t.v4 : t.v6).push(c);
    t.ports.push(...(r.ports ?? []));
    if (r.icmp) (r.protocol === "icmp" ? t.icmp4 : t.icmp6).push(r.icmp);
  }
  targetCache.set(policy, t);
  return t;
}

function lastOf(c: Cidr): Uint8Array {
  const a = c.addr.slice();
  for (let bit = c.len; bit < a.length * 8; bit++) a[bit >> 3] |= 0x80 >> (bit & 7);
  return a;
}

function step(a: Uint8Array, delta: 1 | -1): Uint8Array {
  const out = a.slice();
  for (let i = out.length - 1; i >= 0; i--) {
    const v = out[i] + delta;
    out[i] = v & 0xff;
    if (v >= 0 && v <= 0xff) break;
  }
  return out;
}

function aimedAddr(rng: Rng, family: 4 | 6, cidrs: readonly Cidr[]): Uint8Array {
  if (!cidrs.length || rng.chance(0.2)) return randomAddr(rng, family);
  const c = rng.pick(cidrs);
  switch (rng.int(0, 4)) {
    case 0:
      return c.addr.slice();
    case 1:
      return lastOf(c);
    case 2:
      return step(c.addr, -1);
    case 3:
      return step(lastOf(c), 1);
    default: {
      const a = randomAddr(rng, family);
      const last = lastOf(c);
      for (let i = 0; i < a.length; i++) a[i] = c.addr[i] | (a[i] & (c.addr[i] ^ last[i]));
      return a;
    }
  }
}

function aimedPort(rng: Rng, ports: readonly PortRange[]): number {
  if (!ports.length || rng.chance(0.15)) return rng.pick([0, 1, 65535, rng.int(0, 65535)]);
  const r = rng.pick(ports);
  const v = rng.pick([r.from, r.to, r.from - 1, r.to + 1, rng.int(r.from, r.to)]);
  return Math.max(0, Math.min(65535, v));
}

const OTHER_PROTOS = [2, 4, 41, 47, 50, 59, 89, 103, 136, 253, 255];
const EXT_KINDS: Ipv6ExtKind[] = ["hbh", "routing", "dstopts", "ah", "fragment"];

function randomExtChain(rng: Rng): Ipv6ExtSpec[] {
  const n = rng.weighted([[5, 1], [3, 2], [2, 3], [1, 5], [1, 6], [1, 7]]);
  const chain: Ipv6ExtSpec[] = [];
  for (let i = 0; i < n; i++) {
    const kind = rng.pick(EXT_KINDS);
    if (kind === "fragment") {
      chain.push({
        kind,
        fragOffset: rng.chance(0.5) ? 0 : rng.int(1, 8191),
        moreFragments: rng.chance(0.5),
      });
    } else if (kind === "ah") {
      chain.push({ kind, size: 4 * rng.int(2, 8) });
    } else {
      chain.push({ kind, size: 8 * rng.int(1, 4) });
    }
  }
  return chain;
}

/** A random frame aimed at `policy`'s addresses, ports and ICMP types. */
export function randomFrame(rng: Rng, policy: Policy, opts: FrameGenOptions = {}): GeneratedFrame {
  const t = targetsOf(policy);
  const family: 4 | 6 = t.v4.length && t.v6.length
    ? (rng.chance(0.5) ? 4 : 6)
    : t.v6.length
    ? (rng.chance(0.8) ? 6 : 4)
    : (rng.chance(0.75) ? 4 : 6);
  const cidrs = family === 4 ? t.v4 : t.v6;
  const proto = rng.weighted<number>([
    [28, 6],
    [18, 17],
    [8, 132],
    [12, 1],
    [16, 58],
    [16, rng.pick(OTHER_PROTOS)],
    [2, rng.pick([0, 43, 44, 51, 60])],
  ]);
  const spec: FrameSpec = {
    family,
    proto,
    src: aimedAddr(rng, family, cidrs),
    dst: aimedAddr(rng, family, cidrs),
    sport: rng.int(0, 65535),
    dport: aimedPort(rng, t.ports),
    payloadLength: rng.weighted([[6, 0], [3, rng.int(1, 16)], [1, rng.int(17, 64)]]),
  };
  if (proto === 1 || proto === 58) {
    const named = proto === 1 ? t.icmp4 : t.icmp6;
    if (named.length && rng.chance(0.6)) {
      const m = rng.pick(named);
      spec.icmpType = m.type;
      spec.icmpCode = m.code !== undefined && rng.chance(0.7)
        ? m.code
        : rng.pick([0, 1, rng.int(0, 255)]);
    } else {
      spec.icmpType = proto === 58 && rng.chance(0.4)
        ? rng.int(133, 137)
        : rng.pick(proto === 1 ? ICMP4_TYPES : ICMP6_TYPES.concat([rng.int(0, 255)]));
      spec.icmpCode = rng.chance(0.8) ? 0 : rng.int(0, 255);
    }
  }
  const tags = rng.weighted([[60, 0], [20, 1], [12, 2], [8, 3]]);
  if (tags) {
    spec.vlans = Array.from({ length: tags }, () => ({
      tpid: rng.pick([0x8100, 0x88a8]),
      vid: rng.int(0, 4095),
    }));
  }
  if (rng.chance(0.02)) spec.etherType = rng.pick([0x0806, 0x88cc, 0x8847, 0x0800, 0x86dd]);
  if (family === 4 && rng.chance(0.15)) {
    spec.ipv4Options = Array.from({ length: 4 * rng.int(1, 10) }, () => rng.pick([1, 0, 7, 68]));
  }
  if (family === 6 && rng.chance(0.3)) spec.ipv6Ext = randomExtChain(rng);
  if (rng.chance(0.12)) {
    if (rng.chance(0.5)) spec.moreFragments = true;
    else {
      spec.fragOffset = rng.int(1, 8191);
      spec.moreFragments = rng.chance(0.5);
    }
  }
  if (rng.chance(0.01)) spec.raw = family === 4 ? { ihl: rng.int(0, 4) } : { ipVersion: 4 };

  let built = buildFrameDetailed(spec);
  if (rng.chance(opts.truncateProbability ?? 0.1)) {
    const at = rng.chance(0.1) ? rng.int(0, 14) : rng.pick(built.boundaries) + rng.int(-1, 1);
    spec.truncate = Math.max(0, at);
    built = { ...built, frame: built.frame.slice(0, spec.truncate) };
  }
  return { spec, frame: built.frame };
}

/** `count` frames for `policy` from `seed`. */
export function randomFrames(seed: number, policy: Policy, count: number): GeneratedFrame[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => randomFrame(rng, policy));
}

/** Hex dump of a frame (for failure reports). */
export function hex(frame: Uint8Array): string {
  let s = "";
  for (const b of frame) s += (b | 0x100).toString(16).slice(1);
  return s;
}

/** The spec of a generated frame as readable JSON (addresses as text). */
export function formatSpec(spec: FrameSpec): string {
  return JSON.stringify(spec, (k, v) => {
    if ((k === "src" || k === "dst") && v instanceof Uint8Array) return formatIp(v);
    if (v instanceof Uint8Array) return hex(v);
    return v;
  });
}

/**
 * A large policy for scale tests: `n` rules, each with one distinct CIDR
 * (about 70% IPv4, 10% of all nested in an earlier rule's CIDR) and one TCP or
 * UDP port, directions mixed, default deny.
 */
export function largePolicy(seed: number, n: number): Policy {
  const rng = new Rng(seed);
  const seen = new Set<string>();
  const rules: Rule[] = [];
  while (rules.length < n) {
    let cidr: Cidr;
    if (rules.length > 0 && rng.chance(0.1)) {
      cidr = nestedIn(rng, rng.pick(rules).cidrs![0]);
    } else if (rng.chance(0.7)) {
      cidr = makeCidr(
        4,
        rng.bytes(4),
        rng.weighted([[80, 32], [15, rng.int(20, 31)], [5, rng.int(8, 19)]]),
      );
    } else {
      cidr = makeCidr(
        6,
        randomAddr(rng, 6),
        rng.weighted([[70, 128], [20, 64], [10, rng.int(32, 127)]]),
      );
    }
    if (seen.has(cidr.text)) continue;
    seen.add(cidr.text);
    const port = rng.int(1, 65535);
    rules.push({
      name: `r${rules.length}`,
      action: rng.chance(0.8) ? "allow" : "deny",
      direction: rng.weighted<RuleDirection>([[5, "ingress"], [3, "egress"], [2, "both"]]),
      protocol: rng.chance(0.8) ? "tcp" : "udp",
      ports: [{ from: port, to: port }],
      cidrs: [cidr],
    });
  }
  return { name: `large${n}`, defaultAction: "deny", rules };
}

/** A compact rule description for hand-written tests: CIDRs as text, ports as numbers or pairs. */
export type RuleSpec = Partial<Omit<Rule, "cidrs" | "ports">> & {
  cidrs?: string[];
  ports?: (number | [number, number])[];
};

/**
 * A policy named `t` from compact rule descriptions. Defaults: action allow,
 * direction ingress, protocol any, name `r<index>`.
 */
export function makePolicy(defaultAction: Action, ...specs: RuleSpec[]): Policy {
  return {
    name: "t",
    defaultAction,
    rules: specs.map((s, i) => {
      const rule: Rule = {
        name: s.name ?? `r${i}`,
        action: s.action ?? "allow",
        direction: s.direction ?? "ingress",
        protocol: s.protocol ?? "any",
      };
      if (s.ports) {
        rule.ports = s.ports.map((p) =>
          Array.isArray(p) ? { from: p[0], to: p[1] } : { from: p, to: p }
        );
      }
      if (s.cidrs) rule.cidrs = s.cidrs.map((c) => parseCidr(c));
      if (s.icmp) rule.icmp = s.icmp;
      return rule;
    }),
  };
}

/** Deny by default, allow ingress TCP 8080: the stateful tests' and benchmark's server policy. */
export function webOnlyPolicy(name = "web-only"): Policy {
  return {
    name,
    defaultAction: "deny",
    rules: [{
      name: "web",
      action: "allow",
      direction: "ingress",
      protocol: "tcp",
      ports: [{ from: 8080, to: 8080 }],
    }],
  };
}
