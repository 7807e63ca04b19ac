/**
 * The built-in default policy (SPEC §3.4): the prototype's list, unchanged —
 * deny TCP to destination ports 80, 20, 21, 23, 25, 110, 143, 139, 445, 1521,
 * 161, 162, 70 in both directions, allow everything else.
 *
 * One rule per port, named after the service, rather than one rule with all
 * ports: counters, drop logs and `explain` are per rule, so an operator sees
 * at a glance *which* legacy service is being probed or used
 * (`tinyfw_rule_packets_total{rule="deny-telnet"}`) instead of one opaque
 * "legacy" counter. It costs nothing at run time: the compiled entries are the
 * same 13 exact-port keys either way, and 26 more counters are negligible.
 * The order of the prototype's list is kept.
 *
 * @module
 */

import { dump } from "js-yaml";
import type { Policy, Rule } from "./types.ts";

/** The prototype's port list, in its order, with the service each port is. */
export const DEFAULT_DENIED_TCP_PORTS: readonly { port: number; service: string }[] = [
  { port: 80, service: "http" },
  { port: 20, service: "ftp-data" },
  { port: 21, service: "ftp" },
  { port: 23, service: "telnet" },
  { port: 25, service: "smtp" },
  { port: 110, service: "pop3" },
  { port: 143, service: "imap" },
  { port: 139, service: "netbios-ssn" },
  { port: 445, service: "smb" },
  { port: 1521, service: "oracle" },
  { port: 161, service: "snmp" },
  { port: 162, service: "snmp-trap" },
  { port: 70, service: "gopher" },
];

/** Name of the built-in default policy. */
export const DEFAULT_POLICY_NAME = "default";

/** A fresh copy of the built-in default policy. */
export function defaultPolicy(): Policy {
  const rules: Rule[] = DEFAULT_DENIED_TCP_PORTS.map(({ port, service }) => ({
    name: `deny-${service}`,
    action: "deny",
    direction: "both",
    protocol: "tcp",
    ports: [{ from: port, to: port }],
  }));
  return { name: DEFAULT_POLICY_NAME, defaultAction: "allow", rules };
}

/** The default policy as a policy file (SPEC §3.1 format). */
export function defaultPolicyYaml(): string {
  const p = defaultPolicy();
  const file = {
    policies: [{
      name: p.name,
      defaultAction: p.defaultAction,
      rules: p.rules.map((r) => ({
        name: r.name,
        action: r.action,
        direction: r.direction,
        protocol: r.protocol,
        ports: r.ports!.map((pr) => pr.from === pr.to ? pr.from : `${pr.from}-${pr.to}`),
      })),
    }],
  };
  // Port lists (the sixth level: file, policies, policy, rules, rule, ports) read best inline.
  return "# tinyfw built-in default policy (SPEC §3.4): the prototype's list of legacy\n" +
    "# TCP services, denied in both directions; everything else is allowed.\n\n" +
    dump(file, { flowLevel: 5, lineWidth: 100 });
}
