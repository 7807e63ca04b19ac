/**
 * The reference evaluator: DATAPATH.md §2 read literally, as a loop over the
 * policy's rules (first match wins). It deliberately shares nothing with the
 * compiler, so that comparing the two (and the XDP program) finds bugs.
 *
 * @module
 */

import { contains } from "../net/mod.ts";
import type { FlowTable } from "./flows.ts";
import { type IpPacket, type ParsedPacket, parsePacket } from "./packet.ts";
import {
  type Direction,
  hasIcmpKey,
  hasPorts,
  type Policy,
  PROTOCOL_NUMBER,
  type Rule,
} from "../policy/mod.ts";
import { ND_TYPE_FIRST, ND_TYPE_LAST } from "../abi/mod.ts";

/**
 * Why a packet got its verdict. `reply`: the rules deny it, but it answers a
 * flow in the flow table (DATAPATH.md §7), so it passes.
 */
export type DecisionReason = "rule" | "default" | "nonip" | "malformed" | "nd" | "reply";

/** The verdict on one packet and what decided it. */
export interface Decision {
  /** What happens to the packet: "allow" passes it (audited and reply packets included). */
  verdict: "allow" | "deny";
  reason: DecisionReason;
  /** Index of the deciding rule (reason `rule`). */
  ruleIndex?: number;
  /** Name of the deciding rule (reason `rule`). */
  rule?: string;
  /**
   * Audit mode passed a packet that the rule (or default) of `reason` denies;
   * its counter counts it as if it were dropped.
   */
  audited?: true;
}

/** The stateful parts of a data path: flow table, learning, audit mode. */
export interface EvaluateOptions {
  /**
   * The flow table: a packet the rules deny passes when it is a reply
   * (reason `reply`). Without it, nothing is a reply.
   */
  flows?: FlowTable;
  /** Learn from what passes by a rule or the default (an ATTACH_LEARN attachment). */
  learn?: boolean;
  /** Audit mode (STATE_AUDIT): what the rules deny passes, with `audited: true`. */
  audit?: boolean;
}

/** Decides a raw Ethernet frame seen in direction `dir`. */
export function evaluate(
  policy: Policy,
  dir: Direction,
  frame: Uint8Array,
  opts: EvaluateOptions = {},
): Decision {
  return evaluateParsed(policy, dir, parsePacket(frame), opts);
}

/**
 * Decides an already parsed packet seen in direction `dir`; with `opts`, as
 * the data path does around the rules (DATAPATH.md §7-8): a denied packet is
 * first checked against the flow table, then audit mode may pass it; what
 * passes by a rule or the default (or by audit) is learned from when `learn`.
 */
export function evaluateParsed(
  policy: Policy,
  dir: Direction,
  pkt: ParsedPacket,
  opts: EvaluateOptions = {},
): Decision {
  const d = decideByRules(policy, dir, pkt);
  if (pkt.kind !== "ip" || (d.reason !== "rule" && d.reason !== "default")) return d;
  if (d.verdict === "deny") {
    if (opts.flows?.isReply(pkt)) return { verdict: "allow", reason: "reply" };
    if (!opts.audit) return d;
    if (opts.learn) opts.flows?.learn(pkt);
    return { ...d, verdict: "allow", audited: true };
  }
  if (opts.learn) opts.flows?.learn(pkt);
  return d;
}

function decideByRules(policy: Policy, dir: Direction, pkt: ParsedPacket): Decision {
  if (pkt.kind === "nonip") return { verdict: "allow", reason: "nonip" };
  if (pkt.kind === "malformed") return { verdict: "deny", reason: "malformed" };

  const t = pkt.icmpType;
  if (
    pkt.proto === PROTOCOL_NUMBER.icmpv6 && !pkt.laterFragment && t !== undefined &&
    t >= ND_TYPE_FIRST && t <= ND_TYPE_LAST
  ) {
    const named = policy.rules.some((r) =>
      appliesTo(r, dir) && r.icmp?.type === t && (r.protocol === "icmpv6" || r.protocol === "any")
    );
    if (!named) return { verdict: "allow", reason: "nd" };
  }

  for (let i = 0; i < policy.rules.length; i++) {
    const rule = policy.rules[i];
    if (ruleMatches(rule, dir, pkt)) {
      return { verdict: rule.action, reason: "rule", ruleIndex: i, rule: rule.name };
    }
  }
  return { verdict: policy.defaultAction, reason: "default" };
}

function appliesTo(rule: Rule, dir: Direction): boolean {
  return rule.direction === dir || rule.direction === "both";
}

/** True when `rule` matches `pkt` seen in direction `dir` (DATAPATH.md §2, the five conditions). */
export function ruleMatches(rule: Rule, dir: Direction, pkt: IpPacket): boolean {
  if (!appliesTo(rule, dir)) return false;

  if (rule.protocol !== "any" && PROTOCOL_NUMBER[rule.protocol] !== pkt.proto) return false;

  if (rule.cidrs && rule.cidrs.length > 0) {
    const peer = dir === "ingress" ? pkt.src : pkt.dst;
    if (!rule.cidrs.some((c) => c.family === pkt.family && contains(c, peer))) return false;
  }

  if (rule.ports && rule.ports.length > 0) {
    // A port exists only on a TCP, UDP or SCTP header that was parsed.
    if (pkt.laterFragment || !hasPorts(pkt.proto) || pkt.l4 === undefined) return false;
    const port = pkt.l4;
    if (!rule.ports.some((r) => port >= r.from && port <= r.to)) return false;
  }

  if (rule.icmp) {
    // A type exists only on an ICMP or ICMPv6 header that was parsed.
    if (pkt.laterFragment || !hasIcmpKey(pkt.proto) || pkt.icmpType === undefined) return false;
    if (pkt.icmpType !== rule.icmp.type) return false;
    if (rule.icmp.code !== undefined && pkt.icmpCode !== rule.icmp.code) return false;
  }
  return true;
}
