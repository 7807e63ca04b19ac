/**
 * What `tinyfw check` prints about a valid policy set: per policy its
 * selector, default action and rules, and per direction what it compiles to
 * in the data plane's maps (docs/DATAPATH.md §3–4).
 *
 * @module
 */

import {
  type CompiledDirection,
  type CompiledPolicy,
  compilePolicy,
  type Direction,
  type Policy,
  type PolicySet,
  type Rule,
  type Selector,
} from "../policy/mod.ts";

const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];

function plural(n: number, word: string, many = `${word}s`): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? word : many}`;
}

/** A selector in words: which interfaces or containers the policy is for. */
export function describeSelector(s: Selector | undefined): string {
  if (!s || (s.namespace === undefined && !s.labels && !s.interfaces)) {
    return "fallback (no selector)";
  }
  const container = s.namespace !== undefined || s.labels !== undefined;
  if (s.interfaces && container) {
    return "never selected (interfaces together with namespace/labels)";
  }
  if (s.interfaces) {
    return `${s.interfaces.length === 1 ? "interface" : "interfaces"} ${s.interfaces.join(", ")}`;
  }
  let out = "containers";
  if (s.namespace !== undefined) out += ` in namespace ${s.namespace}`;
  const labels = Object.entries(s.labels ?? {});
  if (labels.length) out += ` labelled ${labels.map(([k, v]) => `${k}=${v}`).join(", ")}`;
  return out;
}

function appliesTo(rule: Rule, dir: Direction): boolean {
  return rule.direction === dir || rule.direction === "both";
}

function describeDirection(policy: Policy, d: CompiledDirection, dir: Direction): string {
  const rules = policy.rules.filter((r) => appliesTo(r, dir)).length;
  if (rules === 0) return `${dir}: no rules (the default decides)`;
  const cidrs = d.v4.length + d.v6.length;
  const l4 = d.mode === "hash"
    ? `${plural(d.hash.length, "rule_hash entry", "rule_hash entries")} (hash mode)`
    : `${plural(d.lpm.length, "port_lpm prefix", "port_lpm prefixes")} (LPM mode)`;
  return `${dir}: ${plural(rules, "rule")}, ${
    plural(cidrs, "CIDR entry", "CIDR entries")
  } (${d.v4.length} IPv4, ${d.v6.length} IPv6), ${
    plural(d.classes, "address class", "address classes")
  }, ${l4}`;
}

/**
 * A summary of a valid set for `tinyfw check`: per policy its selector,
 * default action and rule count, per direction its compiled map entries,
 * then totals. `compiled` (from the loader) avoids compiling again; without
 * it each policy is compiled here (which throws `CompileError` for a policy
 * too large for the maps).
 */
export function summarize(set: PolicySet, compiled?: readonly CompiledPolicy[]): string {
  const all = compiled ?? set.policies.map((p) => compilePolicy(p));
  const lines: string[] = [];
  let rules = 0;
  let cidrs = 0;
  let hash = 0;
  let lpm = 0;
  let counters = 0;
  set.policies.forEach((policy, i) => {
    const c = all[i];
    rules += policy.rules.length;
    counters += c.counterCount;
    lines.push(
      `policy ${JSON.stringify(policy.name)}: ${
        describeSelector(policy.selector)
      }; default ${policy.defaultAction}; ${plural(policy.rules.length, "rule")}`,
    );
    DIRECTIONS.forEach((dir, k) => {
      const d = c.dirs[k];
      cidrs += d.v4.length + d.v6.length;
      hash += d.hash.length;
      lpm += d.lpm.length;
      lines.push(`  ${describeDirection(policy, d, dir)}`);
    });
  });
  lines.push(
    `total: ${plural(set.policies.length, "policy", "policies")}, ${plural(rules, "rule")}; ${
      plural(cidrs, "CIDR entry", "CIDR entries")
    }, ${plural(hash + lpm, "L4 entry", "L4 entries")} (${
      hash.toLocaleString("en-US")
    } rule_hash, ${lpm.toLocaleString("en-US")} port_lpm), ${plural(counters, "counter")}`,
  );
  return lines.join("\n");
}
