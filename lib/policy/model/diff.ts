/**
 * What changed between two versions of a policy, for the reload log: rules
 * added, removed and changed (by name), and the default action.
 *
 * @module
 */

import type { Policy, Rule } from "./types.ts";

/** The differences of one policy between two loads. */
export interface PolicyDiff {
  policy: string;
  added: string[];
  removed: string[];
  changed: string[];
  /** Rules whose position changed (first match makes order matter). */
  moved: string[];
  defaultAction?: { from: string; to: string };
}

/** A rule's content as comparable text (everything but its name). */
function ruleKey(r: Rule): string {
  return JSON.stringify({
    action: r.action,
    direction: r.direction,
    protocol: r.protocol,
    ports: r.ports ?? [],
    cidrs: (r.cidrs ?? []).map((c) => c.text),
    icmp: r.icmp ?? null,
  });
}

/** The differences between `before` and `after` (same policy name), or null if none. */
export function diffPolicy(before: Policy, after: Policy): PolicyDiff | null {
  const old = new Map(before.rules.map((r, i) => [r.name, { r, i }]));
  const now = new Map(after.rules.map((r, i) => [r.name, { r, i }]));
  const d: PolicyDiff = { policy: after.name, added: [], removed: [], changed: [], moved: [] };
  for (const [name, { r, i }] of now) {
    const o = old.get(name);
    if (!o) d.added.push(name);
    else if (ruleKey(o.r) !== ruleKey(r)) d.changed.push(name);
    else if (o.i !== i) d.moved.push(name);
  }
  for (const name of old.keys()) if (!now.has(name)) d.removed.push(name);
  if (before.defaultAction !== after.defaultAction) {
    d.defaultAction = { from: before.defaultAction, to: after.defaultAction };
  }
  const same = !d.added.length && !d.removed.length && !d.changed.length && !d.moved.length &&
    !d.defaultAction;
  return same ? null : d;
}

/** One line describing `d`, listing at most `max` rule names per kind. */
export function formatDiff(d: PolicyDiff, max = 5): string {
  const list = (names: string[]) =>
    names.slice(0, max).join(", ") + (names.length > max ? `, ... (${names.length} in all)` : "");
  const parts: string[] = [];
  if (d.added.length) parts.push(`${d.added.length} added (${list(d.added)})`);
  if (d.removed.length) parts.push(`${d.removed.length} removed (${list(d.removed)})`);
  if (d.changed.length) parts.push(`${d.changed.length} changed (${list(d.changed)})`);
  if (d.moved.length) parts.push(`${d.moved.length} moved (${list(d.moved)})`);
  if (d.defaultAction) {
    parts.push(`default action ${d.defaultAction.from} -> ${d.defaultAction.to}`);
  }
  return `policy ${d.policy}: ${parts.join("; ")}`;
}
