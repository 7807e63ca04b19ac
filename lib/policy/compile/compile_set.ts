/**
 * The compile step of loading: compiles every policy of a valid set
 * (`compilePolicy`) within one file's share of the data plane's maps
 * (`budget.ts`), reports what does not fit as an error, and warns about
 * rules that can never decide a packet.
 *
 * A rule is shadowed when no compiled entry names it: for every packet it
 * matches, an earlier rule of the policy matches first. This is exact for
 * any combination of earlier rules (it is what the data plane will do), not
 * only for a single earlier rule that covers it; the message names that rule
 * when there is one and it is found within {@link MAX_COVER_WORK} steps (a
 * step: one pair of CIDRs, ports or rules compared), so the search costs a
 * bounded time on any file.
 *
 * @module
 */

import { MAX_COUNTERS, policyCounterCount } from "../../abi/mod.ts";
import { maskAddress } from "../../net/mod.ts";
import { CompileBudget } from "./budget.ts";
import { type CompiledPolicy, CompileError, compilePolicy } from "./compile.ts";
import { type Reporter, ruleWhere, type ValidatedSet } from "../validate/mod.ts";
import type { Cidr, Policy, PortRange, Rule } from "../model/mod.ts";

/** Most steps spent naming the rules that shadow others, for the whole file. */
export const MAX_COVER_WORK = 4_000_000;

/**
 * Compiles each policy; errors for those that do not fit, warnings for
 * shadowed rules. Returns the compiled policies (in set order), or null when
 * one of them failed.
 */
export function compileSet(vs: ValidatedSet, report: Reporter): CompiledPolicy[] | null {
  const out: CompiledPolicy[] = [];
  let failed = false;
  const budget = new CompileBudget();
  const cover = { left: MAX_COVER_WORK };
  vs.set.policies.forEach((policy, i) => {
    if (failed) return; // the budget is spent: later policies would only add noise
    const where = { policy: policy.name, policyIndex: i };
    const at = vs.sources[i].node.offset;
    const counters = policyCounterCount(policy.rules.length);
    if (counters > MAX_COUNTERS) {
      report.error(
        at,
        where,
        undefined,
        `has ${policy.rules.length} rules; at most ${(MAX_COUNTERS - 2) / 2} fit the counters map`,
      );
      failed = true;
      return;
    }
    let compiled: CompiledPolicy;
    try {
      compiled = compilePolicy(policy, { budget });
    } catch (e) {
      if (!(e instanceof CompileError)) throw e;
      const detail = e.message.replace(/^policy "(?:[^"\\]|\\.)*" /, "");
      report.error(at, where, undefined, `cannot be compiled: it ${detail}`);
      failed = true;
      return;
    }
    out.push(compiled);
    warnShadowed(compiled, i, vs, report, cover);
  });
  return failed ? null : out;
}

/** The indexes of the rules that decide at least one compiled entry. */
export function decidingRules(compiled: CompiledPolicy): Uint8Array {
  const live = new Uint8Array(compiled.policy.rules.length);
  for (const d of compiled.dirs) {
    for (const e of d.hash) live[e.rule] = 1;
    for (const e of d.lpm) live[e.rule] = 1;
  }
  return live;
}

function warnShadowed(
  compiled: CompiledPolicy,
  i: number,
  vs: ValidatedSet,
  report: Reporter,
  budget: { left: number },
): void {
  const policy = compiled.policy;
  const live = decidingRules(compiled);
  const sets = new Map<number, CidrSet>(); // the CIDR sets of earlier rules, built once each
  for (let j = 0; j < live.length; j++) {
    if (live[j]) continue;
    let culprit = -1;
    for (let q = 0; q < j && budget.left > 0; q++) {
      const rq = policy.rules[q];
      const rj = policy.rules[j];
      let set = sets.get(q);
      if (!set && rq.cidrs?.length) {
        budget.left -= rq.cidrs.length;
        if (budget.left < 0) break;
        sets.set(q, set = cidrSet(rq.cidrs));
      }
      budget.left -= coverCost(rq, rj, set);
      if (budget.left < 0) break;
      if (covers(rq, rj, set)) {
        culprit = q;
        break;
      }
    }
    const message = culprit >= 0
      ? `never matches: ${
        ruleLabel(policy, culprit)
      } comes first and matches every packet this rule matches`
      : "never matches: the rules before it together match every packet this rule matches";
    report.warn(vs.sources[i].rules[j].offset, ruleWhere(policy, i, j), undefined, message);
  }
}

function ruleLabel(policy: Policy, q: number): string {
  const name = policy.rules[q].name;
  return name === `${policy.name}#${q + 1}` ? `rule ${q + 1}` : `rule ${q + 1} (${name})`;
}

/** The steps `covers(q, r, set)` takes at most, with `set` q's CIDR set (when it has CIDRs). */
function coverCost(q: Rule, r: Rule, set: CidrSet | undefined): number {
  const ports = (q.ports?.length ?? 0) * (1 + (r.ports?.length ?? 0));
  if (!set) return 1 + ports;
  return 1 + ports + (r.cidrs?.length ?? 0) * (set.lengths[0].length + set.lengths[1].length);
}

/** A rule's CIDRs for containment checks: their keys, and the prefix lengths of each family. */
interface CidrSet {
  keys: Set<string>;
  /** Distinct lengths: [IPv4, IPv6]. */
  lengths: [number[], number[]];
}

function cidrKey(family: number, addr: Uint8Array, len: number): string {
  return `${family}/${len}/${maskAddress(addr, len).join(".")}`;
}

function cidrSet(cidrs: readonly Cidr[]): CidrSet {
  const keys = new Set<string>();
  const lengths: [Set<number>, Set<number>] = [new Set(), new Set()];
  for (const c of cidrs) {
    keys.add(cidrKey(c.family, c.addr, c.len));
    lengths[c.family === 4 ? 0 : 1].add(c.len);
  }
  return { keys, lengths: [[...lengths[0]], [...lengths[1]]] };
}

/** True when a CIDR of `set` contains `c`: `c` cut to each of the set's lengths is in it. */
function inCidrSet(set: CidrSet, c: Cidr): boolean {
  for (const len of set.lengths[c.family === 4 ? 0 : 1]) {
    if (len <= c.len && set.keys.has(cidrKey(c.family, c.addr, len))) return true;
  }
  return false;
}

/**
 * True when every packet `r` matches is matched by `q` (a sufficient test, not
 * a complete one). `qCidrs`: q's CIDR set, when the caller keeps one.
 */
export function covers(q: Rule, r: Rule, qCidrs?: CidrSet): boolean {
  if (q.direction !== "both" && q.direction !== r.direction) return false;
  if (q.protocol !== "any" && q.protocol !== r.protocol) return false;
  if (q.ports?.length) {
    if (!r.ports?.length || !r.ports.every((pr) => rangeCovered(pr, q.ports!))) return false;
  }
  if (q.icmp) {
    if (!r.icmp || r.icmp.type !== q.icmp.type) return false;
    if (q.icmp.code !== undefined && r.icmp.code !== q.icmp.code) return false;
  }
  if (q.cidrs?.length) {
    if (!r.cidrs?.length) return false;
    const set = qCidrs ?? cidrSet(q.cidrs);
    if (!r.cidrs.every((c) => inCidrSet(set, c))) return false;
  }
  return true;
}

/** True when `pr` lies within the union of `ranges`. */
function rangeCovered(pr: PortRange, ranges: readonly PortRange[]): boolean {
  const sorted = [...ranges].sort((a, b) => a.from - b.from);
  let next = pr.from;
  for (const r of sorted) {
    if (r.from > next) break;
    if (r.to >= next) next = r.to + 1;
    if (next > pr.to) return true;
  }
  return next > pr.to;
}
