/**
 * Policy selection (SPEC §3.2): which policy of a set applies to a host
 * interface (`--iface`) or to a container.
 *
 * - An interface gets the first policy whose `selector.interfaces` names it.
 * - A container gets the first policy whose selector matches it: the
 *   `namespace`, when given, equals the container's, and every label of
 *   `labels` is present on the container with the same value (the
 *   container may have more labels).
 * - Otherwise the fallback: the first policy without a selector, wherever it
 *   is in the file (a selector always wins over the fallback).
 * - Otherwise the built-in default policy.
 *
 * The built-in default comes back as one shared, deeply frozen object, so
 * callers can tell by identity which targets share a policy.
 *
 * A selector with `interfaces` never selects a container, and a selector with
 * `namespace` or `labels` never selects an interface: one with both selects
 * nothing (the validator warns). A selector without any field (possible only
 * for a set built in code; files reject it) counts as no selector.
 *
 * @module
 */

import { defaultPolicy } from "./default.ts";
import type { Policy, PolicySet, Selector } from "./types.ts";

/** What a container is selected by: its containerd namespace and labels. */
export interface ContainerIdentity {
  namespace: string;
  labels: Record<string, string>;
}

/** Why a policy was selected. */
export type SelectionReason = "selector" | "fallback" | "default";

/** A selected policy and why it was selected. */
export interface Selection {
  policy: Policy;
  reason: SelectionReason;
}

function isEmptySelector(s: Selector | undefined): boolean {
  return !s || (s.namespace === undefined && s.labels === undefined && s.interfaces === undefined);
}

function hasContainerFields(s: Selector): boolean {
  return s.namespace !== undefined || s.labels !== undefined;
}

/** True when the policy's selector names interface `ifname` (and nothing about containers). */
export function selectsInterface(policy: Policy, ifname: string): boolean {
  const s = policy.selector;
  if (!s || !s.interfaces || hasContainerFields(s)) return false;
  return s.interfaces.includes(ifname);
}

/** True when the policy's selector matches the container (and names no interfaces). */
export function selectsContainer(policy: Policy, c: ContainerIdentity): boolean {
  const s = policy.selector;
  if (isEmptySelector(s) || s!.interfaces !== undefined) return false;
  if (s!.namespace !== undefined && s!.namespace !== c.namespace) return false;
  for (const [k, v] of Object.entries(s!.labels ?? {})) {
    if (!Object.hasOwn(c.labels, k) || c.labels[k] !== v) return false;
  }
  return true;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The built-in default policy as selection returns it: one frozen instance. */
export const DEFAULT_SELECTION: Readonly<Policy> = deepFreeze(defaultPolicy());

/** The fallback of a set: its first policy without a selector, else the built-in default. */
export function fallbackSelection(set: PolicySet | null): Selection {
  const fallback = set?.policies.find((p) => isEmptySelector(p.selector));
  return fallback
    ? { policy: fallback, reason: "fallback" }
    : { policy: DEFAULT_SELECTION as Policy, reason: "default" };
}

/** The policy for host interface `ifname`, and why. */
export function selectionForInterface(set: PolicySet | null, ifname: string): Selection {
  const p = set?.policies.find((p) => selectsInterface(p, ifname));
  return p ? { policy: p, reason: "selector" } : fallbackSelection(set);
}

/** The policy for a container, and why. */
export function selectionForContainer(set: PolicySet | null, c: ContainerIdentity): Selection {
  const p = set?.policies.find((p) => selectsContainer(p, c));
  return p ? { policy: p, reason: "selector" } : fallbackSelection(set);
}

/**
 * The policy for host interface `ifname`: the first naming it in
 * `selector.interfaces`, else the fallback, else the built-in default.
 * `set` null means no policy file.
 */
export function selectForInterface(set: PolicySet | null, ifname: string): Policy {
  return selectionForInterface(set, ifname).policy;
}

/**
 * The policy for a container: the first whose selector matches its
 * namespace and labels, else the fallback, else the built-in default.
 * `set` null means no policy file.
 */
export function selectForContainer(set: PolicySet | null, c: ContainerIdentity): Policy {
  return selectionForContainer(set, c).policy;
}
