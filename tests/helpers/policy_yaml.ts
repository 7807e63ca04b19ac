/**
 * A typed policy set written back as a policy file (js-yaml's `dump`):
 * every field spelled out (rule names, `direction`, `protocol`,
 * `defaultAction`), CIDRs canonical, ports as numbers and `from-to` ranges,
 * lists of ports and CIDRs inline as users write them. Loading it gives the
 * same set; tests use it to make files from generated policies.
 */
import { dump } from "js-yaml";
import type { PolicySet, PortRange, Rule } from "../../lib/policy/model/types.ts";

function port(p: PortRange): number | string {
  return p.from === p.to ? p.from : `${p.from}-${p.to}`;
}

function rule(r: Rule): Record<string, unknown> {
  return {
    name: r.name,
    action: r.action,
    direction: r.direction,
    protocol: r.protocol,
    ...(r.ports?.length ? { ports: r.ports.map(port) } : {}),
    ...(r.cidrs?.length ? { cidrs: r.cidrs.map((c) => c.text) } : {}),
    ...(r.icmp ? { icmp: r.icmp.code === undefined ? { type: r.icmp.type } : r.icmp } : {}),
  };
}

/** The set as a normalised policy file. */
export function policySetToYaml(set: PolicySet): string {
  const file = {
    policies: set.policies.map((p) => ({
      name: p.name,
      ...(p.selector ? { selector: p.selector } : {}),
      defaultAction: p.defaultAction,
      rules: p.rules.map(rule),
    })),
  };
  // The fifth level (file, policies, policy, rules, rule) and deeper are written inline.
  return dump(file, { flowLevel: 5, lineWidth: -1 });
}
