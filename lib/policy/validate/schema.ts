/**
 * The policy file schema (SPEC §3.1): checks a YAML tree field by field and
 * builds the typed `PolicySet`, reporting every problem with its location.
 * The checks of `ports`, `icmp` and `cidrs` are in `fields.ts`, the
 * keys and keywords in `keys.ts`. Warnings that concern one field or
 * one rule (host bits, duplicate ports or CIDRs, IPv4-only "everything",
 * ICMP types of the other family, ND denied, a selector that never matches)
 * are found while checking; those that compare rules or policies are in
 * `lint.ts`.
 *
 * Decisions where SPEC §3.1 is silent (docs/POLICY.md lists them):
 * - every policy needs a `name`; names (of policies and rules) are non-empty
 *   strings of at most 128 characters, without control characters or
 *   surrounding spaces;
 * - `rules` may be omitted or `[]` (the policy is its `defaultAction`); every
 *   other list and mapping (`policies`, `ports`, `cidrs`, `interfaces`,
 *   `labels`, `selector`) must not be empty: an empty `cidrs` would silently
 *   mean "any address";
 * - a port is an integer or a string: `"80"`, `"8000-8099"`;
 * - a key without a value (`ports:`) is an error, never "use the default";
 * - values are case-sensitive (`tcp`, not `TCP`; the error suggests it).
 *
 * @module
 */

import { describe, listWords, type Reporter, show, suggest, type Where } from "./report.ts";
import { entryOf, FieldValidator, LimitReached } from "./fields.ts";
import {
  ACTION_SYNONYMS,
  ACTIONS,
  AT,
  DIRECTION_SYNONYMS,
  DIRECTIONS,
  PORT_PROTOCOLS,
  PROTOCOL_SYNONYMS,
  PROTOCOLS,
} from "./keys.ts";
import {
  type Action,
  ifnameProblem,
  isNamespaceName,
  lookalikeKey,
  MAX_POLICIES,
  MAX_RULES,
  nameProblem,
  type Policy,
  type PolicySet,
  type Protocol,
  type Rule,
  type RuleDirection,
  type Selector,
} from "../model/mod.ts";
export { ifnameProblem, MAX_IFNAME_LENGTH, MAX_NAME_LENGTH } from "../model/mod.ts";
import type { YMap, YNode } from "../yaml/mod.ts";

export { entryOf } from "./fields.ts";
export { KEYS, WORDS } from "./keys.ts";

/** The names of a policy's rules so far, and where each was given. */
interface RuleNames {
  /** The look-alike form of each name (`lookalikeKey`) → its rule index. */
  index: Map<string, number>;
  offsets: number[];
  /** The name of each rule so far, by rule index. */
  names: string[];
}

/** The names of the policies so far: name (and its look-alike form) → policy index and offset. */
type PolicyNames = Map<string, { index: number; offset: number; name: string }>;

/** Per rule: the mapping it was read from (for warnings that point into it). */
export interface PolicySource {
  node: YMap;
  rules: YMap[];
}

/** A validated set and where each policy and rule came from (parallel arrays). */
export interface ValidatedSet {
  set: PolicySet;
  sources: PolicySource[];
}

/**
 * Validates a YAML tree (null: an empty document). Returns the set, or null
 * when the file has errors; every problem goes to `report`.
 */
export function validateTree(root: YNode | null, report: Reporter): ValidatedSet | null {
  return new Validator(report).file(root);
}

class Validator extends FieldValidator {
  file(root: YNode | null): ValidatedSet | null {
    const top: Where = {};
    if (root === null) {
      this.error(
        0,
        top,
        undefined,
        'the file is empty: a policy file is a mapping with a "policies" list',
      );
      return null;
    }
    if (root.kind !== "map") {
      this.error(
        root.offset,
        top,
        undefined,
        `the top level must be a mapping with a "policies" list, not ${describe(root)}`,
      );
      return null;
    }
    const found = this.keys(root, "file", top, undefined);
    const list = found[AT.file.policies];
    if (!list) {
      this.error(
        root.offset,
        top,
        undefined,
        '"policies" is missing: a policy file is a mapping with a "policies" list',
      );
      return null;
    }
    const v = list.value;
    if (v.kind !== "seq") {
      const hint = v.kind === "map" ? ' (write each policy as a list item: "- name: ...")' : "";
      this.error(
        v.offset,
        top,
        "policies",
        `must be a list of policies, not ${describe(v)}${hint}`,
      );
      return null;
    }
    if (v.items.length === 0) {
      this.error(v.offset, top, "policies", "is an empty list: give at least one policy");
      return null;
    }
    if (!this.withinLimits(v.items)) return null;
    const policies: Policy[] = [];
    const sources: PolicySource[] = [];
    const names: PolicyNames = new Map();
    try {
      for (let i = 0; i < v.items.length; i++) {
        const r = this.policy(v.items[i], i, names);
        if (r) {
          policies.push(r.policy);
          sources.push(r.source);
        }
      }
    } catch (e) {
      if (e instanceof LimitReached) return null; // reported where it was reached
      throw e;
    }
    if (this.report.errorCount > 0) return null;
    return { set: { policies }, sources };
  }

  /**
   * The capacity contract (limits.ts) for policies and rules, checked before
   * anything else so that a file past it costs no more work. CIDR entries are
   * counted as they are read (`cidrList`), which stops at the limit.
   */
  withinLimits(items: readonly YNode[]): boolean {
    const top: Where = {};
    const count = (n: number) => n.toLocaleString("en-US");
    if (items.length > MAX_POLICIES) {
      this.error(
        items[MAX_POLICIES].offset,
        top,
        "policies",
        `has ${count(items.length)} policies; a policy file holds at most ${count(MAX_POLICIES)}`,
      );
      return false;
    }
    let rules = 0;
    for (const p of items) {
      const list = p.kind === "map" ? entryOf(p, "rules")?.value : undefined;
      if (list?.kind === "seq") rules += list.items.length;
    }
    if (rules > MAX_RULES) {
      this.error(
        items[0].offset,
        top,
        "policies",
        `the file has ${count(rules)} rules in all; a policy file holds at most ${
          count(MAX_RULES)
        } (all policies together)`,
      );
      return false;
    }
    return true;
  }

  policy(
    node: YNode,
    i: number,
    names: PolicyNames,
  ): { policy: Policy; source: PolicySource } | null {
    const where: Where = { policyIndex: i };
    if (node.kind !== "map") {
      this.error(
        node.offset,
        where,
        undefined,
        `must be a mapping with "name" and "rules", not ${describe(node)}`,
      );
      return null;
    }
    const errorsBefore = this.report.errorCount;
    // The name first: every later diagnostic of the policy names it.
    const nameEntry = entryOf(node, "name");
    let name: string | undefined;
    if (!nameEntry) {
      this.error(
        node.offset,
        where,
        undefined,
        '"name" is missing: every policy needs a name (counters, logs and explain use it)',
      );
    } else {
      name = this.name(nameEntry.value, where, "name");
      if (name !== undefined) {
        where.policy = name;
        const key = lookalikeKey(name);
        const first = names.get(name) ?? names.get(key);
        if (first) {
          const line = this.report.lineOf(first.offset);
          this.error(
            nameEntry.value.offset,
            where,
            "name",
            first.name === name
              ? `${show(name)} is already the name of policy ${first.index + 1} (line ${line})`
              : `${show(name)} looks the same as ${show(first.name)}, the name of policy ${
                first.index + 1
              } (line ${line}): names must differ in more than their Unicode form`,
          );
        } else {
          const entry = { index: i, offset: nameEntry.value.offset, name };
          names.set(name, entry);
          names.set(key, entry);
        }
      }
    }
    const found = this.keys(node, "policy", where, undefined);
    const sel = found[AT.policy.selector];
    const da = found[AT.policy.defaultAction];
    const rulesEntry = found[AT.policy.rules];
    let defaultAction: Action = "allow";
    if (da) {
      defaultAction =
        this.keyword(da.value, where, "defaultAction", ACTIONS, ACTION_SYNONYMS, "an action") ??
          "allow";
    }
    let selector: Selector | undefined;
    if (sel) selector = this.selector(sel.value, where);
    const rules: Rule[] = [];
    const ruleNodes: YMap[] = [];
    if (rulesEntry) {
      const list = rulesEntry.value;
      if (list.kind !== "seq") {
        const message = list.kind === "scalar" && list.value === null
          ? "is empty: give a list of rules, or [] for none"
          : `must be a list of rules, not ${describe(list)}`;
        this.error(list.offset, where, "rules", message);
      } else {
        const ruleNames: RuleNames = { index: new Map(), offsets: [], names: [] };
        // One Where for every rule of the policy (the reporter copies it).
        const ruleWhere: Where = { policy: where.policy, policyIndex: i, ruleIndex: 0 };
        const policyName = name ?? `policy${i + 1}`;
        for (let j = 0; j < list.items.length; j++) {
          ruleWhere.ruleIndex = j;
          ruleWhere.rule = undefined;
          const r = this.rule(list.items[j], j, ruleWhere, policyName, ruleNames);
          if (r) {
            rules.push(r);
            ruleNodes.push(list.items[j] as YMap);
          }
        }
      }
    }
    if (this.report.errorCount > errorsBefore || name === undefined) return null;
    const policy: Policy = { name, defaultAction, rules };
    if (selector) policy.selector = selector;
    return { policy, source: { node, rules: ruleNodes } };
  }

  /** A policy or rule name; undefined (after an error) when invalid. */
  name(n: YNode, where: Where, field: string): string | undefined {
    if (n.kind === "scalar" && n.value === null) {
      this.error(n.offset, where, field, "is empty: give a name");
      return;
    }
    if (n.kind !== "scalar" || typeof n.value !== "string") {
      const hint = n.kind === "scalar" && n.value !== null ? ` (quote it: "${n.value}")` : "";
      this.error(n.offset, where, field, `must be a string, not ${describe(n)}${hint}`);
      return;
    }
    const v = n.value;
    const problem = nameProblem(v);
    if (problem) {
      this.error(
        n.offset,
        where,
        field,
        problem.quoted ? `${show(v)} ${problem.message}` : problem.message,
      );
      return;
    }
    return v;
  }

  /** One of a fixed set of words; undefined (after an error) otherwise. */
  keyword<T extends string>(
    n: YNode,
    where: Where,
    field: string,
    valid: readonly T[],
    synonyms: Readonly<Record<string, string>>,
    what: string,
  ): T | undefined {
    if (n.kind === "scalar" && typeof n.value === "string") {
      if ((valid as readonly string[]).includes(n.value)) return n.value as T;
    }
    const words = listWords(valid as readonly string[], "or");
    if (n.kind === "scalar" && typeof n.value === "string") {
      const s = suggest(n.value, valid, synonyms);
      this.error(
        n.offset,
        where,
        field,
        `${show(n.value)} is not ${what}: use ${words}${s ? ` (did you mean ${s}?)` : ""}`,
      );
      return;
    }
    if (n.kind === "scalar" && n.value === null) {
      this.error(n.offset, where, field, `is empty: use ${words}`);
      return;
    }
    const s = n.kind === "scalar" ? suggest(String(n.value), valid, synonyms) : undefined;
    this.error(
      n.offset,
      where,
      field,
      `must be ${words}, not ${describe(n)}${s ? ` (did you mean ${s}?)` : ""}`,
    );
  }

  selector(n: YNode, where: Where): Selector | undefined {
    if (n.kind !== "map" || n.entries.length === 0) {
      const message = n.kind === "map" || (n.kind === "scalar" && n.value === null)
        ? "is empty: remove it to make the policy the fallback, or give namespace, labels or interfaces"
        : `must be a mapping (namespace, labels, interfaces), not ${describe(n)}`;
      this.error(n.offset, where, "selector", message);
      return;
    }
    const found = this.keys(n, "selector", where, "selector");
    const ns = found[AT.selector.namespace];
    const labels = found[AT.selector.labels];
    const ifs = found[AT.selector.interfaces];
    const sel: Selector = {};
    if (ns) {
      const v = ns.value;
      if (v.kind !== "scalar" || typeof v.value !== "string" || v.value === "") {
        const what = v.kind === "scalar" && v.value === "" ? "an empty string" : describe(v);
        this.error(
          v.offset,
          where,
          "selector.namespace",
          `must be a containerd namespace name, not ${what}`,
        );
      } else {
        sel.namespace = v.value;
        if (!isNamespaceName(v.value)) {
          this.warn(
            v.offset,
            where,
            "selector.namespace",
            `${show(v.value)} never matches: containerd namespace names are letters and digits ` +
              "joined by '.', '_' or '-' (at most 76 characters)",
          );
        }
      }
    }
    if (labels) {
      const l = this.labels(labels.value, where);
      if (l) sel.labels = l;
    }
    if (ifs) {
      const l = this.interfaces(ifs.value, where);
      if (l) sel.interfaces = l;
    }
    if (sel.interfaces && (sel.namespace !== undefined || sel.labels)) {
      this.warn(
        n.offset,
        where,
        "selector",
        "never matches: a host interface has no namespace or labels and a container is not selected " +
          "by interface; use separate policies",
      );
    }
    return sel;
  }

  labels(n: YNode, where: Where): Record<string, string> | undefined {
    if (n.kind !== "map" || n.entries.length === 0) {
      const message = n.kind === "map" || (n.kind === "scalar" && n.value === null)
        ? "is empty: remove it, or give at least one label (app: web)"
        : `must be a mapping of label names to values (app: web), not ${describe(n)}`;
      this.error(n.offset, where, "selector.labels", message);
      return;
    }
    const out: Record<string, string> = {};
    const seen = new Map<string, number>();
    let ok = true;
    for (const e of n.entries) {
      if (typeof e.key !== "string" || e.key === "") {
        const hint = e.key !== null && e.key !== "" ? ` (quote it: "${e.key}")` : "";
        this.error(
          e.keyOffset,
          where,
          "selector.labels",
          `label name ${show(e.key)} must be a non-empty string${hint}`,
        );
        ok = false;
        continue;
      }
      const field = `selector.labels.${e.key}`;
      const first = seen.get(e.key);
      if (first !== undefined) {
        this.error(
          e.keyOffset,
          where,
          "selector.labels",
          `duplicate label ${show(e.key)}: it is already given on line ${
            this.report.lineOf(first)
          }`,
        );
        ok = false;
        continue;
      }
      seen.set(e.key, e.keyOffset);
      const v = e.value;
      if (v.kind === "scalar" && typeof v.value === "string") {
        out[e.key] = v.value;
        continue;
      }
      ok = false;
      if (v.kind === "scalar" && v.value === null) {
        this.error(
          v.offset,
          where,
          field,
          'is empty: give the label\'s value (or "" for an empty one)',
        );
      } else {
        const hint = v.kind === "scalar" ? ` (quote it: "${v.value}")` : "";
        this.error(v.offset, where, field, `label values are strings, not ${describe(v)}${hint}`);
      }
    }
    return ok ? out : undefined;
  }

  interfaces(n: YNode, where: Where): string[] | undefined {
    const items = this.list(n, where, "selector.interfaces", "[eth0]");
    if (!items) return;
    const out: string[] = [];
    const seen = new Map<string, number>();
    let ok = true;
    for (let k = 0; k < items.length; k++) {
      const it = items[k];
      const field = `selector.interfaces[${k}]`;
      if (it.kind !== "scalar" || typeof it.value !== "string") {
        this.error(it.offset, where, field, `must be an interface name, not ${describe(it)}`);
        ok = false;
        continue;
      }
      const problem = ifnameProblem(it.value);
      if (problem) {
        this.error(
          it.offset,
          where,
          field,
          `${show(it.value)} is not an interface name: ${problem}`,
        );
        ok = false;
        continue;
      }
      const first = seen.get(it.value);
      if (first !== undefined) {
        this.warn(
          it.offset,
          where,
          field,
          `${show(it.value)} is listed twice (also interfaces[${first}])`,
        );
      } else seen.set(it.value, k);
      out.push(it.value);
    }
    return ok ? out : undefined;
  }

  /** Rule `j` of a policy; `where` names the policy and the rule (its name is set here). */
  rule(
    node: YNode,
    j: number,
    where: Where,
    policyName: string,
    names: RuleNames,
  ): Rule | undefined {
    if (node.kind !== "map") {
      this.error(
        node.offset,
        where,
        undefined,
        `must be a mapping with at least "action", not ${describe(node)}`,
      );
      return;
    }
    const errorsBefore = this.report.errorCount;
    // The name first: every later diagnostic of the rule names it.
    const nameEntry = entryOf(node, "name");
    let name: string | undefined;
    let nameAt = node.offset;
    if (nameEntry) {
      name = this.name(nameEntry.value, where, "name");
      if (name !== undefined) {
        nameAt = nameEntry.value.offset;
        where.rule = name;
      }
    }
    const found = this.keys(node, "rule", where, undefined);
    const a = found[AT.rule.action];
    const d = found[AT.rule.direction];
    const p = found[AT.rule.protocol];
    const pe = found[AT.rule.ports];
    const ce = found[AT.rule.cidrs];
    const ie = found[AT.rule.icmp];
    name ??= `${policyName}#${j + 1}`;
    const key = lookalikeKey(name);
    const first = names.index.get(key);
    if (first !== undefined) {
      const line = this.report.lineOf(names.offsets[first]);
      const firstName = names.names[first];
      const message = firstName !== name
        ? `${show(name)} looks the same as ${show(firstName)}, the name of rule ${
          first + 1
        } (line ${line}): names must differ in more than their Unicode form`
        : nameEntry && where.rule !== undefined
        ? `${show(name)} is already the name of rule ${first + 1} (line ${line})`
        : `its default name ${show(name)} is already the name of rule ${
          first + 1
        } (line ${line}): ` +
          "name this rule or rename that one";
      this.error(nameAt, where, nameEntry ? "name" : undefined, message);
    } else {
      names.index.set(key, j);
      names.offsets[j] = nameAt;
      names.names[j] = name;
    }

    let action: Action | undefined;
    if (!a) {
      this.error(
        node.offset,
        where,
        undefined,
        '"action" is missing: every rule needs allow or deny',
      );
    } else action = this.keyword(a.value, where, "action", ACTIONS, ACTION_SYNONYMS, "an action");
    let direction: RuleDirection = "ingress";
    if (d) {
      direction =
        this.keyword(d.value, where, "direction", DIRECTIONS, DIRECTION_SYNONYMS, "a direction") ??
          "ingress";
    }
    let protocol: Protocol | undefined = "any";
    if (p) {
      protocol = this.keyword(
        p.value,
        where,
        "protocol",
        PROTOCOLS,
        PROTOCOL_SYNONYMS,
        "a protocol",
      );
    }

    const rule: Rule = { name, action: action ?? "allow", direction, protocol: protocol ?? "any" };
    if (pe) {
      if (protocol !== undefined && !PORT_PROTOCOLS.includes(protocol)) {
        const message = p
          ? `ports are only allowed with protocol tcp, udp or sctp, not ${protocol}`
          : "ports need protocol tcp, udp or sctp: without a protocol the rule matches any protocol";
        this.error(pe.keyOffset, where, "ports", message);
      }
      const ports = this.ports(pe.value, where);
      if (ports) rule.ports = ports;
    }
    if (ie) {
      if (protocol !== undefined && protocol !== "icmp" && protocol !== "icmpv6") {
        const message = p
          ? `icmp is only allowed with protocol icmp or icmpv6, not ${protocol}`
          : "icmp needs protocol icmp or icmpv6: without a protocol the rule matches any protocol";
        this.error(ie.keyOffset, where, "icmp", message);
      }
      const icmp = this.icmp(ie.value, where);
      if (icmp) {
        rule.icmp = icmp;
        if (protocol === "icmp" || protocol === "icmpv6") {
          this.icmpFamilyHints(icmp, protocol, ie.value, where, rule.action);
        }
      }
    }
    if (ce) {
      const cidrs = this.cidrList(ce.value, where);
      if (cidrs) {
        rule.cidrs = cidrs;
        if (protocol === "icmp" || protocol === "icmpv6") {
          this.cidrFamilyHint(cidrs, protocol, ce, where);
        }
      }
    }
    return this.report.errorCount > errorsBefore ? undefined : rule;
  }
}
