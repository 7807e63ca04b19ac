/**
 * The vocabulary of policy files: the keys of each mapping, the keywords,
 * the synonyms behind "did you mean" suggestions, and the message for an
 * unknown key (with where the key belongs when it is in the wrong place).
 *
 * @module
 */

import { listWords, show, suggest } from "./report.ts";
import type { Action, Protocol, RuleDirection } from "../model/mod.ts";
import type { YValue } from "../yaml/mod.ts";

/** The keys of each mapping of a policy file, in documentation order. */
export const KEYS = {
  file: ["policies"],
  policy: ["name", "selector", "defaultAction", "rules"],
  selector: ["namespace", "labels", "interfaces"],
  rule: ["name", "action", "direction", "protocol", "ports", "cidrs", "icmp"],
  icmp: ["type", "code"],
} as const;

/** A kind of mapping of a policy file. */
export type Context = keyof typeof KEYS;

function indexes<K extends string>(keys: readonly K[]): Readonly<Record<K, number>> {
  return Object.fromEntries(keys.map((k, i) => [k, i])) as Record<K, number>;
}

/** Where each key's entry is in what `keys()` returns (its position in `KEYS`). */
export const AT = {
  file: indexes(KEYS.file),
  policy: indexes(KEYS.policy),
  selector: indexes(KEYS.selector),
  rule: indexes(KEYS.rule),
  icmp: indexes(KEYS.icmp),
} as const;

/** Rule and default actions. */
export const ACTIONS: readonly Action[] = ["allow", "deny"];
/** Rule directions. */
export const DIRECTIONS: readonly RuleDirection[] = ["ingress", "egress", "both"];
/** Rule protocols. */
export const PROTOCOLS: readonly Protocol[] = ["tcp", "udp", "sctp", "icmp", "icmpv6", "any"];
/** The protocols that have ports. */
export const PORT_PROTOCOLS: readonly Protocol[] = ["tcp", "udp", "sctp"];

/** Every key and keyword of the format (the fast parser interns them). */
export const WORDS: ReadonlySet<string> = new Set([
  ...Object.values(KEYS).flat(),
  ...ACTIONS,
  ...DIRECTIONS,
  ...PROTOCOLS,
]);

/** Keys people write for ours. */
export const KEY_SYNONYMS: Readonly<Record<string, string>> = {
  port: "ports",
  dport: "ports",
  dports: "ports",
  dstport: "ports",
  dstports: "ports",
  destinationport: "ports",
  destinationports: "ports",
  portrange: "ports",
  cidr: "cidrs",
  ip: "cidrs",
  ips: "cidrs",
  address: "cidrs",
  addresses: "cidrs",
  peer: "cidrs",
  peers: "cidrs",
  from: "cidrs",
  to: "cidrs",
  source: "cidrs",
  sources: "cidrs",
  destination: "cidrs",
  destinations: "cidrs",
  src: "cidrs",
  dst: "cidrs",
  proto: "protocol",
  protocols: "protocol",
  dir: "direction",
  directions: "direction",
  verdict: "action",
  actions: "action",
  default: "defaultAction",
  defaultpolicy: "defaultAction",
  defaultverdict: "defaultAction",
  policy: "policies",
  rule: "rules",
  select: "selector",
  selectors: "selector",
  match: "selector",
  label: "labels",
  matchlabels: "labels",
  ns: "namespace",
  namespaces: "namespace",
  iface: "interfaces",
  ifaces: "interfaces",
  interface: "interfaces",
  devices: "interfaces",
  icmptype: "icmp",
};

/** Words people write for the actions. */
export const ACTION_SYNONYMS: Readonly<Record<string, string>> = {
  drop: "deny",
  reject: "deny",
  block: "deny",
  refuse: "deny",
  denied: "deny",
  accept: "allow",
  permit: "allow",
  pass: "allow",
  allowed: "allow",
};
/** Words people write for the directions. */
export const DIRECTION_SYNONYMS: Readonly<Record<string, string>> = {
  in: "ingress",
  inbound: "ingress",
  input: "ingress",
  incoming: "ingress",
  out: "egress",
  outbound: "egress",
  output: "egress",
  outgoing: "egress",
  all: "both",
  any: "both",
  bidirectional: "both",
  inout: "both",
};
/** Words people write for the protocols. */
export const PROTOCOL_SYNONYMS: Readonly<Record<string, string>> = {
  icmp6: "icmpv6",
  ipv6icmp: "icmpv6",
  icmpv4: "icmp",
  all: "any",
  ip: "any",
  "*": "any",
  "6": "tcp",
  "17": "udp",
  "132": "sctp",
  "1": "icmp",
  "58": "icmpv6",
};

const MISPLACED: Record<Context, Readonly<Record<string, string>>> = {
  file: Object.fromEntries(
    KEYS.policy.map((k) => [k, 'policy fields go in an item of the "policies" list']),
  ),
  policy: {
    ...Object.fromEntries(
      KEYS.rule.filter((k) => k !== "name").map((
        k,
      ) => [k, 'rule fields go in an item of the "rules" list']),
    ),
    ...Object.fromEntries(KEYS.selector.map((k) => [k, 'it goes under "selector"'])),
    policies: "policies cannot be nested",
  },
  rule: {
    defaultAction: "it is a field of the policy",
    selector: "it is a field of the policy",
    rules: "rules cannot be nested",
    ...Object.fromEntries(KEYS.selector.map((k) => [k, `it goes under the policy's "selector"`])),
    type: 'it goes under "icmp" (icmp: { type: 8 })',
    code: 'it goes under "icmp" (icmp: { type: 3, code: 4 })',
  },
  selector: {},
  icmp: {},
};

const CONTEXT_NAMES: Record<Context, string> = {
  file: "the top level",
  policy: "a policy",
  selector: "a selector",
  rule: "a rule",
  icmp: "icmp",
};

/** The message for an unknown key of a `ctx` mapping. */
export function unknownKeyMessage(key: YValue, ctx: Context): string {
  const allowed = KEYS[ctx] as readonly string[];
  const head = `unknown key ${show(key)} in ${CONTEXT_NAMES[ctx]}`;
  if (key === "<<") return `${head}: merge keys are not supported; write the fields out`;
  if (typeof key === "string") {
    const misplaced = MISPLACED[ctx][key];
    if (misplaced) return `${head}: ${misplaced}`;
    const s = suggest(key, allowed, KEY_SYNONYMS);
    if (s && allowed.includes(s)) return `${head}; did you mean ${show(s)}?`;
  }
  if (allowed.length === 1) return `${head}: the only key is ${show(allowed[0])}`;
  return `${head}: the keys are ${listWords(allowed.map((k) => show(k)))}`;
}
