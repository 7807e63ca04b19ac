/**
 * `tinyfw explain`: build one packet, decide it with the real XDP program in
 * the kernel (BPF_PROG_TEST_RUN, on a private copy of the data path, never the
 * running agent's), and say which rule decided.
 *
 * @module
 */

import {
  Datapath,
  type InstalledPolicy,
  PolicySlots,
  sumPerCpu,
  testRun,
  u32Key,
  type XdpProgram,
} from "../datapath/mod.ts";
import {
  COUNTERS_PER_BLOCK,
  DIR_EGRESS,
  DIR_INGRESS,
  STAT_MALFORMED,
  STAT_ND,
  STAT_NONIP,
} from "../abi/mod.ts";
import { type CompiledPolicy, compilePolicy, type Policy } from "../policy/mod.ts";
import { buildFrame, type FrameSpec } from "../model/mod.ts";
import { formatEndpoint } from "../net/mod.ts";
import type { ExplainCommand } from "../cli/mod.ts";

const XDP_DROP = 1;
const XDP_PASS = 2;

/** The answer of `explain`, also its `--json` form. */
export interface Explanation {
  verdict: "allow" | "deny";
  policy: string;
  /** The deciding rule's name, or null when the default action decided. */
  rule: string | null;
  /** What decided: a rule, the default action, or the neighbour-discovery exemption. */
  reason: "rule" | "default" | "neighbour-discovery";
  direction: "ingress" | "egress";
  packet: {
    family: 4 | 6;
    proto: string;
    src: string;
    dst: string;
    sport?: number;
    dport?: number;
    icmpType?: number;
    icmpCode?: number;
  };
}

const DEFAULT_ADDRS = {
  4: { src: "192.0.2.1", dst: "198.51.100.1" },
  6: { src: "2001:db8::1", dst: "2001:db8::2" },
} as const;

/** The packet `cmd` describes, with defaults filled in. */
export function explainedPacket(cmd: ExplainQuery): Explanation["packet"] {
  const family = cmd.family;
  const ports = cmd.proto === "tcp" || cmd.proto === "udp" || cmd.proto === "sctp";
  const icmp = cmd.proto === "icmp" || cmd.proto === "icmpv6";
  return {
    family,
    proto: cmd.proto,
    src: cmd.src ?? DEFAULT_ADDRS[family].src,
    dst: cmd.dst ?? DEFAULT_ADDRS[family].dst,
    ...(ports ? { sport: cmd.sport ?? 40000, dport: cmd.dport ?? 80 } : {}),
    ...(icmp
      ? { icmpType: cmd.icmpType ?? (cmd.proto === "icmp" ? 8 : 128), icmpCode: cmd.icmpCode ?? 0 }
      : {}),
  };
}

/** The query of one explanation: the packet and the direction it is seen in. */
export type ExplainQuery = Pick<
  ExplainCommand,
  "proto" | "family" | "src" | "dst" | "sport" | "dport" | "direction" | "icmpType" | "icmpCode"
>;

/**
 * A private data path (never the running agent's) that decides packets with
 * the real XDP program; reusable for many explanations.
 */
export class Explainer {
  readonly #dp: Datapath;
  readonly #prog: XdpProgram;
  readonly #slots: PolicySlots;
  /** The last policy explained stays installed for the next question about it. */
  #current: { compiled: CompiledPolicy; installed: InstalledPolicy } | null = null;

  private constructor(dp: Datapath) {
    this.#dp = dp;
    this.#slots = new PolicySlots(dp);
    this.#prog = dp.instance(0);
  }

  /** Loads the program with room for policies of up to `counters` counters. */
  static open(counters: number): Explainer {
    const blocks = Math.ceil(counters / COUNTERS_PER_BLOCK);
    return new Explainer(Datapath.load({ maxEntries: { attach: 1, counters: blocks } }));
  }

  /** Decides the packet of `query` under `policy` with the kernel's XDP program. */
  explain(query: ExplainQuery, policy: Policy, compiled = compilePolicy(policy)): Explanation {
    const packet = explainedPacket(query);
    const frame = buildFrame({ ...packet } as FrameSpec);
    const dir = query.direction === "egress" ? DIR_EGRESS : DIR_INGRESS;
    const installed = this.#install(compiled);
    this.#slots.configureAttachment(0, installed.slot, dir);
    const before = this.#slots.counts(installed);
    const stat = (idx: number) =>
      sumPerCpu(this.#dp.maps.stats.lookupPerCpu(u32Key(idx)) ?? [])[0] ?? 0n;
    const ndBefore = stat(STAT_ND);
    const oddBefore = stat(STAT_MALFORMED) + stat(STAT_NONIP);
    const retval = testRun(this.#prog.fd, frame).retval;
    const verdict = retval === XDP_DROP ? "deny" : retval === XDP_PASS ? "allow" : null;
    if (!verdict) throw new Error(`the XDP program returned ${retval}, neither pass nor drop`);
    // Key order as in SPEC §2: verdict, policy, rule, direction, packet (then reason).
    const result = (rule: string | null, reason: Explanation["reason"]): Explanation => ({
      verdict,
      policy: policy.name,
      rule,
      direction: query.direction,
      packet,
      reason,
    });
    if (stat(STAT_ND) > ndBefore) return result(null, "neighbour-discovery");
    if (stat(STAT_MALFORMED) + stat(STAT_NONIP) > oddBefore) {
      throw new Error("the built packet was not parsed as IP; this is a bug in tinyfw");
    }
    const counted = this.#slots.counts(installed).find((c, i) =>
      c.dir === dir && c.packets > before[i].packets
    );
    if (!counted) throw new Error("no counter moved; this is a bug in tinyfw");
    if (counted.rule < 0) return result(null, "default");
    return result(policy.rules[counted.rule].name, "rule");
  }

  #install(compiled: CompiledPolicy): InstalledPolicy {
    if (this.#current?.compiled === compiled) return this.#current.installed;
    if (this.#current) this.#slots.remove(this.#current.installed);
    this.#current = null;
    const installed = this.#slots.install(compiled);
    this.#current = { compiled, installed };
    return installed;
  }

  close(): void {
    this.#prog.close();
    this.#dp.close();
  }
}

/** Decides the packet of `cmd` under `policy` with the kernel's XDP program. */
export function explain(cmd: ExplainQuery, policy: Policy): Explanation {
  const compiled = compilePolicy(policy);
  const explainer = Explainer.open(compiled.counterCount);
  try {
    return explainer.explain(cmd, policy, compiled);
  } finally {
    explainer.close();
  }
}

/** The human-readable form of an explanation. */
export function formatExplanation(e: Explanation): string {
  const p = e.packet;
  const ports = p.dport !== undefined
    ? ` ${formatEndpoint(p.src, p.sport)} -> ${formatEndpoint(p.dst, p.dport)}`
    : "";
  const icmp = p.icmpType !== undefined
    ? ` ${p.src} -> ${p.dst} type ${p.icmpType} code ${p.icmpCode}`
    : "";
  const why = e.reason === "rule"
    ? `rule "${e.rule}"`
    : e.reason === "default"
    ? "the policy's default action (no rule matched)"
    : "IPv6 neighbour discovery, which always passes unless a rule names it";
  return [
    `${e.verdict.toUpperCase()}  ${p.proto}${ports}${icmp} (${e.direction})`,
    `  policy:  ${e.policy}`,
    `  decided: ${why}`,
  ].join("\n");
}
