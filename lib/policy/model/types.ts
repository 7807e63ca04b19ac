/**
 * The typed policy model of SPEC §3: what the YAML loader produces, what the
 * reference evaluator reads and what the compiler turns into map entries.
 *
 * Conventions shared by every consumer:
 * - `ports: []`, `cidrs: []` and an absent field mean the same thing: no
 *   constraint (any port, any address).
 * - Rule names are always set (the loader fills in `<policy>#<index>`).
 *
 * @module
 */

import type { Cidr } from "../../net/mod.ts";

export type { Cidr };

/** What a rule (or a policy's default) does with a packet. */
export type Action = "allow" | "deny";

/** Which direction(s) a rule applies to. */
export type RuleDirection = "ingress" | "egress" | "both";

/** A direction a packet is seen in (an attachment's direction). */
export type Direction = "ingress" | "egress";

/** A rule's protocol. `any` matches every IP protocol. */
export type Protocol = "tcp" | "udp" | "sctp" | "icmp" | "icmpv6" | "any";

/** An inclusive range of destination ports, `from <= to`, both in 1..65535. */
export interface PortRange {
  from: number;
  to: number;
}

/** An ICMP/ICMPv6 match: type, and optionally code. */
export interface IcmpMatch {
  type: number;
  code?: number;
}

/** One rule of a policy. */
export interface Rule {
  name: string;
  action: Action;
  direction: RuleDirection;
  protocol: Protocol;
  /** Destination ports (only meaningful with tcp/udp/sctp). */
  ports?: PortRange[];
  /** Peer CIDRs: the source for ingress, the destination for egress. */
  cidrs?: Cidr[];
  /** ICMP type/code (only meaningful with icmp/icmpv6). */
  icmp?: IcmpMatch;
}

/** Which containers or interfaces a policy applies to. */
export interface Selector {
  namespace?: string;
  labels?: Record<string, string>;
  interfaces?: string[];
}

/** A named, ordered list of rules and a default action. */
export interface Policy {
  name: string;
  selector?: Selector;
  defaultAction: Action;
  rules: Rule[];
}

/** Every policy of a policy file, in file order. */
export interface PolicySet {
  policies: Policy[];
}
