/**
 * Warnings that compare rules or policies of a valid file (likely mistakes,
 * SPEC §3.2): a TCP-only rule on a port that is normally UDP (and the
 * reverse) with no rule of the policy for the other protocol on that port,
 * and policies that selection never reaches. Shadowed rules are found by
 * the compiler (`compile/compile_set.ts`).
 *
 * @module
 */

import { DEFAULT_POLICY_NAME, type Policy, type Rule } from "../model/mod.ts";
import type { Reporter, Where } from "./report.ts";
import { entryOf, type PolicySource, type ValidatedSet } from "./schema.ts";
import type { YMap, YNode } from "../yaml/mod.ts";

/** Ports that are normally UDP, with their service. */
export const NORMALLY_UDP: Readonly<Record<number, string>> = {
  53: "DNS",
  67: "DHCP",
  68: "DHCP",
  69: "TFTP",
  123: "NTP",
  137: "NetBIOS name service",
  138: "NetBIOS datagrams",
  161: "SNMP",
  162: "SNMP traps",
  500: "IKE",
  514: "syslog",
  520: "RIP",
  546: "DHCPv6",
  547: "DHCPv6",
  1812: "RADIUS",
  1813: "RADIUS accounting",
  4500: "IPsec NAT traversal",
  4789: "VXLAN",
  5353: "mDNS",
  51820: "WireGuard",
};

/** Ports that are normally TCP, with their service. */
export const NORMALLY_TCP: Readonly<Record<number, string>> = {
  20: "FTP data",
  21: "FTP",
  22: "SSH",
  23: "telnet",
  25: "SMTP",
  80: "HTTP",
  110: "POP3",
  143: "IMAP",
  179: "BGP",
  443: "HTTPS",
  445: "SMB",
  465: "SMTPS",
  587: "SMTP submission",
  993: "IMAPS",
  995: "POP3S",
  1433: "SQL Server",
  1521: "Oracle",
  2379: "etcd",
  3306: "MySQL",
  5432: "PostgreSQL",
  6379: "Redis",
  6443: "Kubernetes API",
  8080: "HTTP",
  8443: "HTTPS",
  10250: "kubelet",
  27017: "MongoDB",
};

/** Most selector pairs compared for reachability (policies are few in practice). */
const MAX_SELECTOR_COMPARISONS = 4_000_000;

/** Adds the cross-rule and cross-policy warnings of a valid set. */
export function lintSet(vs: ValidatedSet, report: Reporter): void {
  const { set, sources } = vs;
  for (let i = 0; i < set.policies.length; i++) {
    lintProtocolPorts(set.policies[i], i, sources[i], report);
  }
  lintSelection(set.policies, sources, report);
  lintDefaultName(set.policies, sources, report);
  for (let i = 0; i < set.policies.length; i++) {
    lintInterfaceEgress(set.policies[i], i, sources[i], report);
  }
}

/**
 * Egress rules of a policy that only host interfaces select: on a host
 * interface tinyfw filters what enters it (SPEC §3.1: egress is what leaves
 * a container), so such a rule never decides a packet.
 */
function lintInterfaceEgress(
  policy: Policy,
  i: number,
  src: PolicySource,
  report: Reporter,
): void {
  if (selectorKind(policy) !== "interfaces") return;
  for (let j = 0; j < policy.rules.length; j++) {
    if (policy.rules[j].direction !== "egress") continue;
    report.warn(
      valueNode(src.rules[j], "direction")?.offset ?? src.rules[j].offset,
      ruleWhere(policy, i, j),
      "direction",
      "never applies: the policy selects host interfaces only, and on a host interface " +
        "tinyfw filters what enters it (ingress); egress is what a container sends",
    );
  }
}

/**
 * A policy named like the built-in default, in a file without a fallback:
 * both can be in force at once, under one name in counters and logs.
 */
function lintDefaultName(
  policies: readonly Policy[],
  sources: readonly PolicySource[],
  report: Reporter,
): void {
  if (policies.some((p) => selectorKind(p) === "none")) return; // the built-in never applies
  const i = policies.findIndex((p) => p.name === DEFAULT_POLICY_NAME);
  if (i < 0) return;
  report.warn(
    valueNode(sources[i].node, "name")?.offset ?? sources[i].node.offset,
    { policy: policies[i].name, policyIndex: i },
    "name",
    `"${DEFAULT_POLICY_NAME}" is also the name of the built-in default policy, which applies to ` +
      "whatever this file does not select (it has no fallback); choose another name",
  );
}

function valueNode(map: YNode, key: string): YNode | undefined {
  return map.kind === "map" ? entryOf(map, key)?.value : undefined;
}

/** Where-part of a rule of policy `i`. */
export function ruleWhere(policy: Policy, i: number, j: number): Where {
  const w: Where = { policy: policy.name, policyIndex: i, ruleIndex: j };
  if (policy.rules[j].name !== `${policy.name}#${j + 1}`) w.rule = policy.rules[j].name;
  return w;
}

/** Which of the listed well-known ports each protocol's rules of the policy cover. */
function coveredWellKnown(
  rules: readonly Rule[],
  protocol: "tcp" | "udp",
  ports: number[],
): Set<number> {
  const out = new Set<number>();
  for (const r of rules) {
    if (r.protocol !== protocol && r.protocol !== "any") continue;
    if (!r.ports || r.ports.length === 0) {
      for (const p of ports) out.add(p);
      continue;
    }
    for (const pr of r.ports) {
      for (const p of ports) if (p >= pr.from && p <= pr.to) out.add(p);
    }
  }
  return out;
}

function lintProtocolPorts(policy: Policy, i: number, src: PolicySource, report: Reporter): void {
  const udpPorts = Object.keys(NORMALLY_UDP).map(Number);
  const tcpPorts = Object.keys(NORMALLY_TCP).map(Number);
  let udpCovered: Set<number> | undefined;
  let tcpCovered: Set<number> | undefined;
  for (let j = 0; j < policy.rules.length; j++) {
    const r = policy.rules[j];
    if ((r.protocol !== "tcp" && r.protocol !== "udp") || !r.ports) continue;
    const isTcp = r.protocol === "tcp";
    const table = isTcp ? NORMALLY_UDP : NORMALLY_TCP;
    for (let k = 0; k < r.ports.length; k++) {
      const pr = r.ports[k];
      if (pr.from !== pr.to || table[pr.from] === undefined) continue;
      const other = isTcp ? "UDP" : "TCP";
      const covered = isTcp
        ? (udpCovered ??= coveredWellKnown(policy.rules, "udp", udpPorts))
        : (tcpCovered ??= coveredWellKnown(policy.rules, "tcp", tcpPorts));
      if (covered.has(pr.from)) continue;
      const items = valueNode(src.rules[j], "ports");
      const at = items?.kind === "seq" ? items.items[k].offset : src.rules[j].offset;
      report.warn(
        at,
        ruleWhere(policy, i, j),
        `ports[${k}]`,
        `${pr.from} is normally ${other} (${table[pr.from]}), but the rule is ${
          isTcp ? "TCP" : "UDP"
        } only and no rule of the policy covers ${other} ${pr.from}`,
      );
    }
  }
}

function selectorKind(p: Policy): "none" | "interfaces" | "containers" | "never" {
  const s = p.selector;
  if (!s) return "none";
  const container = s.namespace !== undefined || s.labels !== undefined;
  if (s.interfaces) return container ? "never" : "interfaces";
  return "containers";
}

/** True when every container that `later` selects is selected by `earlier`. */
function containerSelectorCovers(earlier: Policy, later: Policy): boolean {
  const e = earlier.selector!;
  const l = later.selector!;
  if (e.namespace !== undefined && e.namespace !== l.namespace) return false;
  for (const [k, v] of Object.entries(e.labels ?? {})) {
    if (l.labels?.[k] !== v) return false;
  }
  return true;
}

function lintSelection(
  policies: readonly Policy[],
  sources: readonly PolicySource[],
  report: Reporter,
): void {
  const lineOf = (i: number) => report.lineOf(sources[i].node.offset);
  let fallback = -1;
  const ifaceOwner = new Map<string, number>();
  const containerPolicies: number[] = [];
  let budget = MAX_SELECTOR_COMPARISONS;
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i];
    const where: Where = { policy: p.name, policyIndex: i };
    const node = sources[i].node;
    switch (selectorKind(p)) {
      case "none":
        if (fallback >= 0) {
          report.warn(
            node.offset,
            where,
            undefined,
            `never selected: policy ${JSON.stringify(policies[fallback].name)} (line ${
              lineOf(fallback)
            }) has no selector either and is the fallback; give this one a selector`,
          );
        } else fallback = i;
        break;
      case "interfaces": {
        const list = valueNode(valueNode(node, "selector") as YMap, "interfaces");
        p.selector!.interfaces!.forEach((name, k) => {
          const owner = ifaceOwner.get(name);
          if (owner === undefined) {
            ifaceOwner.set(name, i);
            return;
          }
          if (owner === i) return; // listed twice: warned by the schema
          const at = list?.kind === "seq" ? list.items[k].offset : node.offset;
          report.warn(
            at,
            where,
            `selector.interfaces[${k}]`,
            `${JSON.stringify(name)} is already selected by policy ${
              JSON.stringify(policies[owner].name)
            } (line ${lineOf(owner)}); this policy never applies to it`,
          );
        });
        break;
      }
      case "containers": {
        for (const e of containerPolicies) {
          if (--budget < 0) break;
          if (!containerSelectorCovers(policies[e], p)) continue;
          report.warn(
            valueNode(node, "selector")?.offset ?? node.offset,
            where,
            "selector",
            `never selected: policy ${JSON.stringify(policies[e].name)} (line ${
              lineOf(e)
            }) comes first and selects every container this selector matches`,
          );
          break;
        }
        containerPolicies.push(i);
        break;
      }
      case "never":
        break; // warned by the schema
    }
  }
}
